"""Benchmark: the cost of keeping member statistics at ingest. Prints JSON, one object per figure.

    ingest     E entries (default 20,000: sales of M members, one in ten refunded in part, one in fifty
               voided) pushed through HqStore.ingest in batches of 500 from T terminals, with the
               statistics stage and without it (the stage replaced by a no-op for the measurement);
               entries/s of each and the ratio, on SQLite and on PostgreSQL (its own server, fsync on)
    stage      the statistics stage alone on the same entries, one transaction a batch, given the typed
               payloads (as ingest gives them); and the pure arithmetic alone (sales/s)
    rebuild    ``stats.rebuild`` of everything the ingest kept: seconds and journal entries/s

    .venv/bin/python bench/bench_stats.py [--engines sqlite,postgres] [--entries 20000] [--members 2000]
        [--terminals 4] [--batch 500] [--rounds 1] [--concurrent]

``--concurrent``: the terminals push at once, each from its own thread, its batches in order (the 20-till
load: ``--terminals 20 --batch 20 --concurrent``). ``--rounds R``: R ingest rounds alternating with and without
the stage, each on a fresh database, the best of each.

In process (no HTTP: bench_sync.py measures the API); sales priced again as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_ledger  # noqa: E402

from hq import push, stats  # noqa: E402
from hq.store import HqStore  # noqa: E402
from sync.protocol import RefundPayload, ReturnedUnits, SaleLine, SalePayload, VoidPayload, WireEntry, parse_payload  # noqa: E402
from terminal.canonical import base_digest  # noqa: E402
from terminal.loyalty import DEFAULT_BASE_RULE  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

PRICED_WITH = {"base": base_digest(DEFAULT_BASE_RULE.rule_id, DEFAULT_BASE_RULE.points, DEFAULT_BASE_RULE.per_minor)}
CATEGORIES = ("food", "drink", "household", "beauty")
BATCH = 500


def sale(member: str, n: int, store_id: str) -> dict[str, Any]:
    lines = [
        SaleLine(sku=f"SKU-{n % 97}", category=CATEGORIES[n % 4], quantity=1 + n % 3, unit_price=300 + n % 11),
        SaleLine(sku=f"SKU-{n % 89}", category=CATEGORIES[(n + 1) % 4], quantity=1, unit_price=500),
    ]
    total = sum(x.quantity * x.unit_price for x in lines)
    earned = total // 100
    return SalePayload(
        member_id=member,
        store_id=store_id,
        tier="basic",
        total=total,
        payable=total,
        pos_due=total,
        points_earned=earned,
        points_delta=earned,
        local_time="2026-05-01T19:00:00",
        lines=lines,
        priced_with=PRICED_WITH,
    ).wire()


def reversal(original: WireEntry, store_id: str, void: bool) -> dict[str, Any]:
    """A void of the whole sale, or a refund of its second line (500, earning 5 points)."""
    p = original.payload
    back, clawed = (int(p["payable"]), int(p["points_earned"])) if void else (500, 5)
    fields: dict[str, Any] = {
        "member_id": p["member_id"],
        "store_id": store_id,
        "original_txn": original.txn_id,
        "total": -back,
        "money_back": back,
        "pos_refund": back,
        "points_clawed": clawed,
        "points_delta": -clawed,
    }
    if void:
        return VoidPayload(**fields, voided_txn_id=original.txn_id).wire()
    return RefundPayload(**fields, returned=[ReturnedUnits(line=1, quantity=1)]).wire()


def journal(terminals: int, entries: int, members: int, batch: int = BATCH) -> dict[str, list[list[WireEntry]]]:
    """Each terminal's batches: sales, and now and then a refund or void of one of its recent sales."""
    per: dict[str, list[WireEntry]] = {f"T-{t:02d}": [] for t in range(terminals)}
    for n in range(entries):
        terminal_id = f"T-{n % terminals:02d}"
        mine = per[terminal_id]
        store_id = f"S-{n % terminals}"
        seq = len(mine) + 1
        member = f"M-{(n * 7) % members:05d}"
        kind, payload = "sale", sale(member, n, store_id)
        if n % 10 == 9 and mine and mine[-1].kind == "sale":
            last = mine[-1]
            kind = "void" if n % 50 == 49 else "refund"
            payload = reversal(last, store_id, kind == "void")
        mine.append(
            WireEntry(
                terminal_id=terminal_id,
                seq=seq,
                txn_id=f"{terminal_id}-{seq}",
                kind=kind,
                payload=payload,
                created_at=f"2026-05-{1 + n * 28 // entries:02d}T10:00:00.000Z",
            )
        )
    return {t: [e[i : i + batch] for i in range(0, len(e), batch)] for t, e in per.items()}


def fresh(url: str, terminals: int, members: int) -> HqStore:
    hq = HqStore(url, backup=False)
    for t in range(terminals):
        hq.add_terminal(f"T-{t:02d}", f"S-{t}")
    with hq.db.write() as tx:
        tx.insert_rows(
            "members",
            ("member_id", "display_name", "tier", "points", "status", "version", "stored_value", "deleted"),
            [(f"M-{m:05d}", f"Member {m}", "basic", 0, "active", 0, 0, 0) for m in range(members)],
        )
    return hq


def bench_engine(
    engine: str,
    url_of: Callable[[str], str],
    entries: int,
    members: int,
    terminals: int,
    rounds: int = 1,
    batch: int = BATCH,
    concurrent: bool = False,
) -> list[dict[str, Any]]:
    batches = journal(terminals, entries, members, batch)
    figures: dict[str, Any] = {"figure": "ingest", "engine": engine, "entries": entries, "members": members}
    figures |= {"terminals": terminals, "batch": batch, "concurrent": concurrent, "rounds": rounds}
    best, with_hq = bench_ledger.best_of_rounds(
        rounds,
        ("without_stats", "with_stats"),
        lambda label: fresh(url_of(label), terminals, members),
        lambda: patch.object(push, "count_stats", lambda tx, batch: None),
        lambda hq: bench_ledger.ingest(hq, batches, concurrent),
    )
    for label, took in best.items():
        figures[f"{label}_entries_per_s"] = round(entries / took)
    figures["with_over_without"] = round(best["with_stats"] / best["without_stats"], 3)
    out = [figures]
    # The stage alone: the arithmetic, then the SQL of each batch in its own transaction, in batches of 500 of
    # each terminal whatever the pushes' size: replayed over a journal that holds every entry already, a refund
    # applied in a later batch than its sale would count twice (ingest applies it before its refund arrives).
    batches = journal(terminals, entries, members)
    txns = [[e.txn_id for e in b] for bs in batches.values() for b in bs]
    typed = {
        e.txn_id: parse_payload(e.kind, e.payload) for bs in batches.values() for b in bs for e in b
    }  # ingest hands the stage the payloads it read
    with with_hq.db.read() as tx:
        snapshot = stats.snapshot(tx)
    t0 = time.perf_counter()
    deltas = 0
    for b in batches.values():
        for batch in b:
            for e in batch:
                if e.kind == "sale":
                    stats.figures(SalePayload.model_validate(e.payload))
                    deltas += 1
    pure = time.perf_counter() - t0
    with_hq.db.transact(lambda tx: [tx.run(f"DELETE FROM {t}") for t in stats.STATS_STORED])
    t0 = time.perf_counter()
    for chunk in txns:
        with_hq.db.transact(lambda tx, chunk=chunk: stats.apply(tx, chunk, typed))  # type: ignore[misc]
    stage = time.perf_counter() - t0
    with with_hq.db.read() as tx:
        assert stats.snapshot(tx) == snapshot, "the stage alone kept other figures"
    out.append(
        {
            "figure": "stage",
            "engine": engine,
            "entries": entries,
            "pure_sales_per_s": round(deltas / pure),
            "stage_entries_per_s": round(entries / stage),
        }
    )
    t0 = time.perf_counter()
    counts = with_hq.rebuild_stats()
    took = time.perf_counter() - t0
    with with_hq.db.read() as tx:
        assert stats.snapshot(tx) == snapshot, "rebuild differs from what ingest kept"
    out.append(
        {
            "figure": "rebuild",
            "engine": engine,
            "entries": entries,
            "seconds": round(took, 2),
            "entries_per_s": round(entries / took),
            **counts,
        }
    )
    with_hq.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--terminals", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="ingest rounds, alternating; the best of each")
    parser.add_argument("--batch", type=int, default=BATCH, help="entries a push")
    parser.add_argument("--concurrent", action="store_true", help="the terminals push at once, a thread each")
    args = parser.parse_args()
    more = (args.rounds, args.batch, args.concurrent)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in engines:
            for row in bench_engine(
                "sqlite",
                lambda label: str(Path(tmp) / f"{label}.db"),
                args.entries,
                args.members,
                args.terminals,
                *more,
            ):
                print(json.dumps(row | machine), flush=True)
        if "postgres" in engines:
            pg = PgServer(durable=True).start()
            try:
                for row in bench_engine(
                    "postgresql (fsync on)",
                    lambda label: pg.fresh_schema(),
                    args.entries,
                    args.members,
                    args.terminals,
                    *more,
                ):
                    print(json.dumps(row | machine), flush=True)
            finally:
                pg.stop()


if __name__ == "__main__":
    main()
