"""Benchmark: the store <-> head office sync at chain scale. Prints JSON, one object per figure.

    drain      a till with N offline entries (default 10,000) pushes them all to a head-office
               process (SQLite), gzip batches of 500, until none is pending        target <= 10 s
    ingest     T terminals (default 20) push E entries each at once to a head-office process on
               PostgreSQL (its own server, fsync on); entries stored per second    target >= 2,000/s
    apply      M member changes (default 1,000,000) applied to a till's cache, in the pages the
               client applies (5,000 rows, one transaction each)                  target >= 20,000 rows/s
    bootstrap  a new till loads B members and their cards (default 1,000,000 each) from a head-office
               process on PostgreSQL through /v1/snapshot, with its resumable bookkeeping   target <= 60 s

    processes  the ingest against one and against two head-office processes (hq serve --workers 2)
               on the same PostgreSQL, in one run: entries/s of each and the ratio

    .venv/bin/python bench/bench_sync.py [--only drain,ingest,processes,apply,bootstrap] [--entries 10000]
        [--terminals 20] [--per-terminal 2000] [--members 1000000] [--bootstrap-members 1000000]

Needs Debian's postgresql (initdb/pg_ctl) for ingest and bootstrap; each run starts its own server.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq.store import HqStore  # noqa: E402
from sync.client import SyncClient  # noqa: E402
from sync.protocol import PushRequest, SaleLine, SalePayload, WireEntry  # noqa: E402
from terminal.canonical import base_digest  # noqa: E402
from terminal.loyalty import DEFAULT_BASE_RULE  # noqa: E402
from terminal.model import Member, Status  # noqa: E402
from terminal.store import Store  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def hq_process(db: str, workers: int = 1) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tillpoint.cli",
            "hq",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, 15)  # the supervisor and its workers
        proc.wait(20)


PRICED_WITH = {"base": base_digest(DEFAULT_BASE_RULE.rule_id, DEFAULT_BASE_RULE.points, DEFAULT_BASE_RULE.per_minor)}
"""The versions a till names: head office's default base rule (it holds no other document here)."""


def entry_payload(member: str, n: int, store_id: str = "S-1") -> dict[str, Any]:
    """A sale as the till journals it (its typed payload): head office prices it again (base rule: 1 point per 100)."""
    price = 1250 + n % 7
    return SalePayload(
        member_id=member,
        store_id=store_id,
        tier="basic",
        total=price,
        payable=price,
        pos_due=price,
        points_earned=12,
        points_delta=12,
        local_time="2026-05-01T19:00:00",
        lines=[SaleLine(sku="SKU-1", category="food", quantity=1, unit_price=price)],
        priced_with=PRICED_WITH,
    ).wire()


def bench_drain(tmp: Path, entries: int) -> dict[str, Any]:
    db = str(tmp / "drain-hq.db")
    hq = HqStore(db)
    token = hq.add_terminal("T-DRAIN", "S-1")
    for m in range(100):
        hq.upsert_member(f"M-{m:03d}", f"Member {m}", "basic", 0)
    hq.set_rule("base", 1, 100)
    hq.close()
    till = Store.open(tmp / "drain-till.db")
    t0 = time.perf_counter()
    with till.db.atomic():  # seeding only: the daemon writes one durable transaction per sale
        for n in range(entries):
            till.db.conn.execute(
                "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) VALUES (?,?,?,?,?,?)",
                (
                    n + 1,
                    f"tx-{n}",
                    "T-DRAIN",
                    "sale",
                    json.dumps(entry_payload(f"M-{n % 100:03d}", n)),
                    "2026-05-01T10:00:00.000Z",
                ),
            )
    seed = time.perf_counter() - t0
    with hq_process(db) as url:
        client = SyncClient(till, "T-DRAIN", url, token, timeout=30, batch_size=500, end_of_day=False)
        t0 = time.perf_counter()
        pushed = client.push_all()
        took = time.perf_counter() - t0
        client.close()
    assert pushed == entries and till.pending_count() == 0
    till.close()
    hq = HqStore(db)
    assert hq.items() == [], "every benchmark entry must be one head office applies"
    hq.close()
    floor = drain_floor(tmp, entries)
    return {
        "figure": "drain",
        "entries": entries,
        "seconds": round(took, 2),
        "entries_per_s": round(entries / took),
        "batch": 500,
        "hq_storage": "sqlite",
        "seed_s": round(seed, 2),
        "floor_seconds": round(floor, 2),
        "floor_over_drain": round(took / floor, 2),
        "target": "<= 10 s",
    }


def drain_floor(tmp: Path, entries: int, batch: int = 500) -> float:
    """The floor under drain: the same rows written straight into SQLite as head office opens it (WAL,
    synchronous=FULL), one transaction a batch with the balance updates; no HTTP, no parsing, no checks."""
    import sqlite3

    conn = sqlite3.connect(str(tmp / "floor.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, txn_id TEXT UNIQUE, payload TEXT)")
    conn.execute("CREATE TABLE members (member_id TEXT PRIMARY KEY, points INTEGER)")
    conn.executemany("INSERT INTO members VALUES (?, 0)", [(f"M-{m:03d}",) for m in range(100)])
    rows = [(n + 1, f"tx-{n}", json.dumps(entry_payload(f"M-{n % 100:03d}", n))) for n in range(entries)]
    t0 = time.perf_counter()
    for start in range(0, entries, batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO journal VALUES (?, ?, ?)", rows[start : start + batch])
        conn.executemany(
            "UPDATE members SET points = points + 12 WHERE member_id = ?",
            [(f"M-{n % 100:03d}",) for n in range(start, min(start + batch, entries))],
        )
        conn.execute("COMMIT")
    took = time.perf_counter() - t0
    conn.close()
    return took


def bench_ingest(
    pg: PgServer, terminals: int, per_terminal: int, workers: int = 1, floor: bool = True
) -> dict[str, Any]:
    url = pg.fresh_schema()
    hq = HqStore(url)
    tokens = {f"T-{t:02d}": hq.add_terminal(f"T-{t:02d}", f"S-{t % 5}") for t in range(terminals)}
    for m in range(1000):
        hq.upsert_member(f"M-{m:04d}", f"Member {m}", "basic", 0)
    hq.set_rule("base", 1, 100)
    hq.close()
    batch = 500
    bodies: dict[str, list[bytes]] = {}
    for t, terminal_id in enumerate(tokens):
        bodies[terminal_id] = []
        for start in range(0, per_terminal, batch):
            entries = [
                WireEntry(
                    terminal_id=terminal_id,
                    seq=n + 1,
                    txn_id=f"{terminal_id}-{n}",
                    kind="sale",
                    payload=entry_payload(f"M-{(n * 7 + t) % 1000:04d}", n, f"S-{t % 5}"),
                    created_at="2026-05-01T10:00:00.000Z",
                )
                for n in range(start, min(start + batch, per_terminal))
            ]
            raw = PushRequest(terminal_id=terminal_id, entries=entries).model_dump_json().encode()
            bodies[terminal_id].append(gzip.compress(raw, 6))
    errors: list[str] = []
    with hq_process(url, workers) as base:

        def push(terminal_id: str) -> None:
            headers = {
                "Authorization": f"Bearer {tokens[terminal_id]}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            }
            with httpx.Client(base_url=base, timeout=120) as http:
                for body in bodies[terminal_id]:
                    reply = http.post("/v1/journal", content=body, headers=headers)
                    if reply.status_code != 200:
                        errors.append(reply.text)

        threads = [threading.Thread(target=push, args=(t,)) for t in tokens]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        took = time.perf_counter() - t0
    hq = HqStore(url)
    stored = sum(hq.journal_count(t) for t in tokens)
    flagged = len(hq.items())
    hq.close()
    total = terminals * per_terminal
    assert not errors and stored == total and flagged == 0, (errors[:3], stored, flagged)
    figures = {
        "figure": "ingest",
        "terminals": terminals,
        "entries": total,
        "seconds": round(took, 2),
        "entries_per_s": round(total / took),
        "batch": batch,
        "hq_storage": "postgresql (fsync on)",
        "hq_processes": workers,
        "sales_priced_again": True,
        "trust_rules_checked": True,
        "target": ">= 2,000 entries/s",
    }
    if floor:
        took_floor = ingest_floor(url, bodies)
        figures |= {"floor_entries_per_s": round(total / took_floor), "floor_over_ingest": round(took / took_floor, 2)}
    return figures


def bench_processes(pg: PgServer, terminals: int, per_terminal: int) -> dict[str, Any]:
    """The same ingest against one and against two head-office processes (``--workers``), in one run."""
    one = bench_ingest(pg, terminals, per_terminal, workers=1, floor=False)
    two = bench_ingest(pg, terminals, per_terminal, workers=2, floor=False)
    return {
        "figure": "ingest_processes",
        "terminals": terminals,
        "entries": one["entries"],
        "one_process_entries_per_s": one["entries_per_s"],
        "two_processes_entries_per_s": two["entries_per_s"],
        "two_over_one": round(two["entries_per_s"] / one["entries_per_s"], 2),
    }


def ingest_floor(url: str, bodies: dict[str, list[bytes]]) -> float:
    """The floor under ingest, in the same server: each batch's rows written straight into PostgreSQL from as
    many threads (one transaction a batch: COPY of the journal rows, one UPDATE ... FROM unnest of the
    balances), with no HTTP, no parsing into models, no checks. Seconds for all of them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE floor_journal (terminal_id TEXT, seq BIGINT, txn_id TEXT, kind TEXT, payload TEXT, "
            "created_at TEXT, PRIMARY KEY (terminal_id, seq))"
        )
    work = {t: [json.loads(gzip.decompress(b))["entries"] for b in batches] for t, batches in bodies.items()}

    def write(terminal_id: str) -> None:
        with psycopg.connect(url) as conn:
            for entries in work[terminal_id]:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy("COPY floor_journal FROM STDIN") as copy:
                        for e in entries:
                            copy.write_row(
                                (
                                    e["terminal_id"],
                                    e["seq"],
                                    e["txn_id"],
                                    e["kind"],
                                    json.dumps(e["payload"]),
                                    e["created_at"],
                                )
                            )
                    members = [e["payload"]["member_id"] for e in entries]
                    points = [e["payload"]["points_delta"] for e in entries]
                    cur.execute(
                        "UPDATE members m SET points = m.points + d.p FROM (SELECT id, SUM(p) AS p FROM "
                        "unnest(%s::text[], %s::bigint[]) AS u(id, p) GROUP BY id) d WHERE m.member_id = d.id",
                        (members, points),
                    )

    threads = [threading.Thread(target=write, args=(t,)) for t in work]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def bench_apply(tmp: Path, members: int) -> dict[str, Any]:
    till = Store.open(tmp / "apply-till.db")
    page = 5000
    t0 = time.perf_counter()
    for start in range(0, members, page):
        rows = [
            Member(f"M-{n:07d}", f"Member {n}", "gold" if n % 10 == 0 else "basic", n % 5000, Status.ACTIVE)
            for n in range(start, min(start + page, members))
        ]
        till.apply_changes(rows, [], [], cursor=start + len(rows))
    took = time.perf_counter() - t0
    assert till.counts()["members"] == members
    till.close()
    return {
        "figure": "apply",
        "rows": members,
        "seconds": round(took, 2),
        "rows_per_s": round(members / took),
        "page": page,
        "target": ">= 20,000 rows/s",
    }


def seed_pg_members(url: str, members: int) -> None:
    import psycopg

    HqStore(url).close()  # the schema
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY members (member_id, display_name, tier, points, status, version, stored_value, deleted) FROM STDIN"
        ) as copy:
            for n in range(members):
                copy.write_row((f"M-{n:07d}", f"Member {n}", "basic", n % 5000, "active", n + 1, 0, 0))
        with cur.copy("COPY cards (uid_hash, member_id, status, version, deleted) FROM STDIN") as copy:
            for n in range(members):
                copy.write_row((f"{n:064x}", f"M-{n:07d}", "active", members + n + 1, 0))
        cur.execute("UPDATE counters SET value = %s WHERE name = 'version'", (2 * members,))
        cur.execute("ANALYZE")


def bench_bootstrap(pg: PgServer, tmp: Path, members: int) -> dict[str, Any]:
    url = pg.fresh_schema()
    t0 = time.perf_counter()
    seed_pg_members(url, members)
    seed = time.perf_counter() - t0
    hq = HqStore(url)
    token = hq.add_terminal("T-NEW", "S-1")
    hq.close()
    till = Store.open(tmp / "bootstrap-till.db")
    with hq_process(url) as base:
        client = SyncClient(till, "T-NEW", base, token, timeout=120, end_of_day=False)
        t0 = time.perf_counter()
        loaded = client.bootstrap()
        took = time.perf_counter() - t0
        client.close()
    counts = till.counts()
    till.close()
    assert counts["members"] == members and counts["cards"] == members, counts
    return {
        "figure": "bootstrap",
        "members": members,
        "cards": members,
        "rows": loaded,
        "seconds": round(took, 2),
        "rows_per_s": round(loaded / took),
        "page": 10_000,
        "hq_storage": "postgresql",
        "seed_s": round(seed, 1),
        "target": "<= 60 s for 1,000,000 members",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="drain,ingest,processes,apply,bootstrap")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--per-terminal", type=int, default=2000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--bootstrap-members", type=int, default=1_000_000)
    args = parser.parse_args()
    only = set(args.only.split(","))
    machine = {"python": platform.python_version(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg = PgServer(durable=True).start() if only & {"ingest", "processes", "bootstrap"} else None
        try:
            if "drain" in only:
                print(json.dumps(bench_drain(tmp, args.entries) | machine), flush=True)
            if "ingest" in only and pg:
                print(json.dumps(bench_ingest(pg, args.terminals, args.per_terminal) | machine), flush=True)
            if "processes" in only and pg:
                print(json.dumps(bench_processes(pg, args.terminals, args.per_terminal) | machine), flush=True)
            if "apply" in only:
                print(json.dumps(bench_apply(tmp, args.members) | machine), flush=True)
            if "bootstrap" in only and pg:
                print(json.dumps(bench_bootstrap(pg, tmp, args.bootstrap_members) | machine), flush=True)
        finally:
            if pg:
                pg.stop()


if __name__ == "__main__":
    main()
