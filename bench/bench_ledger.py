"""Benchmark: the cost of posting the ledger at ingest. Prints JSON, one object per figure.

    ingest     E entries (default 10,000: sales of M members at the stores of three merchants, one in four
               redeeming points, one in ten refunded in part, one in fifty voided) pushed through
               HqStore.ingest in batches of 500 from T terminals, with the ledger's posting and without it
               (``ledger.post_journal`` replaced by a no-op for the measurement), each on a fresh database,
               alternating for R rounds (default 3): the best entries/s of each and their ratio; then
               ``ledger.check`` over the books the last run left
               (seconds, and whether they hold)
    expire     ``ledger.expire`` of every lot the run left (lots/s)

    .venv/bin/python bench/bench_ledger.py [--engines postgres,sqlite] [--entries 10000] [--members 2000] [--rounds 3]
        [--terminals 6] [--batch 500] [--concurrent]

``--concurrent``: the terminals push at once, each from its own thread, its batches in order (the 20-till
load: ``--terminals 20 --concurrent``, on PostgreSQL; the figure is entries/s from the first push to the
last one's commit). Without it one push at a time, terminal after terminal.

In process (no HTTP); sales are not priced again and spends need no proof (the same for both runs), so
that only the ledger differs between them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq import ledger, merchants, push  # noqa: E402
from hq.ingest import Settings  # noqa: E402
from hq.store import HqStore  # noqa: E402
from sync.protocol import RefundPayload, ReturnedUnits, SaleLine, SalePayload, VoidPayload, WireEntry  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

BATCH = 500
MERCHANTS = ("M-A", "M-B", merchants.CHAIN_MERCHANT)
SETTINGS = Settings(clock_skew=10**9, spend_needs_proof=False, recompute=False)


def sale(member: str, n: int, store_id: str) -> dict[str, Any]:
    lines = [SaleLine(sku=f"SKU-{n % 97}", quantity=1 + n % 3, unit_price=300 + n % 11)]
    lines.append(SaleLine(sku=f"SKU-{n % 89}", quantity=1, unit_price=500))
    total = sum(x.quantity * x.unit_price for x in lines)
    redeemed = 5 if n % 4 == 3 else 0
    earned = total // 100
    return SalePayload(
        member_id=member,
        store_id=store_id,
        tier="basic",
        total=total,
        payable=total - redeemed,
        pos_due=total - redeemed,
        points_earned=earned,
        points_redeemed=redeemed,
        points_delta=earned - redeemed,
        proof="pos" if redeemed else None,
        local_time="2026-05-01T19:00:00",
        lines=lines,
    ).wire()


def reversal(original: WireEntry, store_id: str, void: bool) -> dict[str, Any]:
    """A void of the whole sale, or a refund of its second line (500, earning 5 points)."""
    p = original.payload
    back = int(p["payable"]) if void else 500
    clawed, restored = (int(p["points_earned"]), int(p["points_redeemed"])) if void else (5, 0)
    fields: dict[str, Any] = {
        "member_id": p["member_id"],
        "store_id": store_id,
        "original_txn": original.txn_id,
        "total": -back,
        "money_back": back,
        "pos_refund": back,
        "points_clawed": clawed,
        "points_restored": restored,
        "points_delta": restored - clawed,
    }
    if void:
        return VoidPayload(**fields, voided_txn_id=original.txn_id).wire()
    return RefundPayload(**fields, returned=[ReturnedUnits(line=1, quantity=1)]).wire()


def journal(terminals: int, entries: int, members: int, batch: int = BATCH) -> dict[str, list[list[WireEntry]]]:
    """Each terminal's batches: sales, and now and then a refund or void of one of its recent sales."""
    per: dict[str, list[WireEntry]] = {f"T-{t:02d}": [] for t in range(terminals)}
    for n in range(entries):
        terminal_id = f"T-{n % terminals:02d}"
        mine, store_id, seq = per[terminal_id], f"S-{n % terminals}", len(per[terminal_id]) + 1
        kind, payload = "sale", sale(f"M-{(n * 7) % members:05d}", n, store_id)
        if n % 10 == 9 and mine and mine[-1].kind == "sale":
            kind = "void" if n % 50 == 49 else "refund"
            payload = reversal(mine[-1], store_id, kind == "void")
        created = f"2026-05-{1 + n * 28 // entries:02d}T10:00:00.000Z"
        mine.append(
            WireEntry(
                terminal_id=terminal_id,
                seq=seq,
                txn_id=f"{terminal_id}-{seq}",
                kind=kind,
                payload=payload,
                created_at=created,
            )
        )
    return {t: [e[i : i + batch] for i in range(0, len(e), batch)] for t, e in per.items()}


def fresh(url: str, terminals: int, members: int) -> HqStore:
    hq = HqStore(url, SETTINGS, backup=False)
    hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "expire_days": 10})
    with hq.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", 100, 90)
        merchants.add(tx, "M-B", "Books", 120, 100)
        for t in range(terminals):
            merchants.assign_store(tx, f"S-{t}", MERCHANTS[t % len(MERCHANTS)], "UTC")
        tx.insert_rows(
            "members",
            ("member_id", "display_name", "tier", "points", "status", "version", "stored_value", "deleted"),
            [(f"M-{m:05d}", f"Member {m}", "basic", 0, "active", 0, 0, 0) for m in range(members)],
        )
    for t in range(terminals):
        hq.add_terminal(f"T-{t:02d}", f"S-{t}")
    return hq


def ingest(hq: HqStore, batches: dict[str, list[list[WireEntry]]], concurrent: bool = False) -> float:
    if concurrent:
        return ingest_at_once(hq, batches)
    t0 = time.perf_counter()
    for i in range(max(len(b) for b in batches.values())):
        for terminal_id, mine in batches.items():
            if i < len(mine):
                hq.ingest(terminal_id, mine[i])
    return time.perf_counter() - t0


def ingest_at_once(hq: HqStore, batches: dict[str, list[list[WireEntry]]]) -> float:
    """Every terminal pushing its batches in order from its own thread, all started together; seconds from the
    start to the last commit. A push that fails fails the run."""
    start, failed = threading.Barrier(len(batches) + 1), []

    def terminal(terminal_id: str, mine: list[list[WireEntry]]) -> None:
        start.wait()
        try:
            for one in mine:
                hq.ingest(terminal_id, one)
        except Exception as exc:  # noqa: BLE001 - reported below, the run is void
            failed.append(exc)

    threads = [threading.Thread(target=terminal, args=item) for item in batches.items()]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - t0
    if failed:
        raise RuntimeError(f"{len(failed)} pushes failed: {failed[0]!r}")
    return took


def best_of_rounds(
    rounds: int,
    labels: tuple[str, str],
    fresh_store: Callable[[str], HqStore],
    stage_off: Callable[[], AbstractContextManager[Any]],
    run: Callable[[HqStore], float],
) -> tuple[dict[str, float], HqStore]:
    """``rounds`` rounds alternating without the stage (``labels[0]``, ``stage_off`` held) and with it
    (``labels[1]``), each on a fresh database: the best time of each, and the last database with the stage,
    still open (the caller reads it, then closes it)."""
    best: dict[str, float] = {}
    kept: HqStore | None = None
    for round_ in range(rounds):
        for label in labels:
            hq = fresh_store(f"{label}{round_}")
            with stage_off() if label == labels[0] else nullcontext():
                took = run(hq)
            best[label] = min(best.get(label, took), took)
            if label == labels[1] and round_ == rounds - 1:
                kept = hq
            else:
                hq.close()
    assert kept is not None, "no round ran"
    return best, kept


def bench_engine(
    engine: str,
    url_of: Callable[[str], str],
    entries: int,
    members: int,
    terminals: int,
    rounds: int,
    batch: int = BATCH,
    concurrent: bool = False,
) -> list[dict[str, Any]]:
    batches = journal(terminals, entries, members, batch)
    figures: dict[str, Any] = {"figure": "ingest", "engine": engine, "entries": entries, "members": members}
    figures |= {"terminals": terminals, "batch": batch, "concurrent": concurrent}
    best, with_hq = best_of_rounds(
        rounds,
        ("without_ledger", "with_ledger"),
        lambda label: fresh(url_of(label), terminals, members),
        lambda: patch.object(push.ledger, "post_journal", lambda tx, txn_ids: 0),
        lambda hq: ingest(hq, batches, concurrent),
    )
    for label, took in best.items():
        figures[f"{label}_entries_per_s"] = round(entries / took)
    figures["rounds"] = rounds
    figures["without_over_with"] = round(best["with_ledger"] / best["without_ledger"], 3)
    with with_hq.db.read() as tx:
        figures["postings"] = int(tx.one("SELECT COUNT(*) FROM ledger_postings")[0])  # type: ignore[index]
        t0 = time.perf_counter()
        failures = ledger.check(tx)
        figures["check_seconds"] = round(time.perf_counter() - t0, 3)
    figures["books_hold"] = not failures
    out = [figures]
    with with_hq.db.read() as tx:
        lots = int(tx.one("SELECT COUNT(*) FROM ledger_lots WHERE remaining > 0")[0])  # type: ignore[index]
    t0 = time.perf_counter()
    with_hq.db.transact(lambda tx: ledger.expire(tx, datetime(2027, 1, 1, tzinfo=UTC)))
    took = time.perf_counter() - t0
    with with_hq.db.read() as tx:
        hold = not ledger.check(tx)
    out.append(
        {"figure": "expire", "engine": engine, "lots": lots, "lots_per_s": round(lots / took), "books_hold": hold}
    )
    with_hq.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="postgres,sqlite")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--terminals", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="entries a push")
    parser.add_argument("--concurrent", action="store_true", help="the terminals push at once, a thread each")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": round(os.getloadavg()[0], 1)}
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "postgres" in engines:
            pg = PgServer(durable=True).start()
            try:
                for row in bench_engine(
                    "postgresql (fsync on)",
                    lambda label: pg.fresh_schema(),
                    args.entries,
                    args.members,
                    args.terminals,
                    args.rounds,
                    args.batch,
                    args.concurrent,
                ):
                    print(json.dumps(row | machine), flush=True)
            finally:
                pg.stop()
        if "sqlite" in engines:
            for row in bench_engine(
                "sqlite",
                lambda label: str(Path(tmp) / f"{label}.db"),
                args.entries,
                args.members,
                args.terminals,
                args.rounds,
                args.batch,
                args.concurrent,
            ):
                print(json.dumps(row | machine), flush=True)


if __name__ == "__main__":
    main()
