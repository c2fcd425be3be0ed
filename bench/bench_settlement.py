"""Benchmark: one month's settlement statements for every merchant, on PostgreSQL. Prints JSON, one object per
figure.

For each data set (``--sales``, a comma-separated list: one data set per size), a fresh schema holds a
ledger as ``ledger.Writer`` writes it, made in bulk by SQL (``generate_series``) so that millions of sales
build in minutes: S sales in the month (2026-05) at the stores of M merchants (default 400), each earning a
lot of its merchant (merchants and their lots settle a third each at issuance, redemption and reserve); one
in four redeeming 10 points of the same member's earlier lot of the month (another merchant's), one in ten
paying 300 of stored value, one in a thousand a late entry of the month before; and ``--history`` months
before it of the same size (what ``outstanding_start`` reads). ``--check`` proves the generated books with
``ledger.check``. Then, alternating for R rounds (default 3):

    statements   ``settlement.statements`` of the month: every merchant's figures and late entries (seconds)
    floor        the raw SQL aggregate a statement cannot do without: one grouped pass over the month's
                 postings by merchant and account (seconds), and statements / floor
    documents    every merchant's CSV and PDF made from them (seconds, and per statement)

    .venv/bin/python bench/bench_settlement.py [--sales 200000,1000000] [--merchants 400] [--members 100000]
        [--history 1] [--rounds 3] [--check] [--close-history]

``--close-history``: then close the months before the benchmark's, oldest first (each close keeps the
merchants' positions, ``settlement.keep_positions``), and measure the statements again: their opening reads
the positions the last close kept, not the whole history.

The PostgreSQL server is the tests' own (``tests.fixtures.postgres``), fsync on, on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from hq import ledger, merchants, settlement  # noqa: E402
from hq.store import HqStore  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

MONTH = "2026-05"
TIMINGS = ("issuance", "redemption", "reserve")
"""Merchant m settles at TIMINGS[m % 3], and so do the lots it issues (``ledger_lots.timing``)."""
MEMBERS = (
    b"INSERT INTO members (member_id, display_name, tier, points, status, version, stored_value, deleted) "
    b"SELECT owner, '', 'basic', SUM(CASE WHEN kind = 'member_points' THEN amount ELSE 0 END), 'active', 0, "
    b"SUM(CASE WHEN kind = 'member_value' THEN amount ELSE 0 END), 0 FROM ledger_postings "
    b"WHERE kind IN ('member_points', 'member_value') GROUP BY owner"
)
"""Members whose balances are their accounts: ``ledger.check`` holds over the generated books (``--check``)."""
FLOOR = (
    "SELECT p.owner, p.kind, SUM(p.amount) FROM ledger_txns t JOIN ledger_postings p "
    "ON p.ledger_txn_id = t.ledger_txn_id WHERE t.period = %s GROUP BY p.owner, p.kind"
)


def month_before(period: str, back: int) -> str:
    year, month = int(period[:4]), int(period[5:])
    n = year * 12 + month - 1 - back
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def build_sql(period: str, sales: int, merchant_count: int, members: int, late: bool) -> list[str]:
    """The month's sales as the ledger's writer books them (txns, lots, lot uses, postings), by SQL."""
    p = f"'{period}'"
    src = f"FROM generate_series(1, {sales}) AS g(n)"
    txn = f"'{period}:' || n"
    mer = f"'M-' || lpad((n % {merchant_count})::text, 3, '0')"
    prev = f"'M-' || lpad(((n - {members}) % {merchant_count})::text, 3, '0')"
    mem = f"'P-' || (n % {members})"
    timing = f"(ARRAY['issuance', 'redemption', 'reserve'])[1 + (n % {merchant_count}) % 3]"
    day = f"{p} || '-' || lpad((1 + n % 28)::text, 2, '0')"
    # a redeeming sale n spends 10 points of the same member's sale before it (n - members), of another
    # merchant when members is not a multiple of the merchants; that lot's remaining says so
    redeems = f"n % 4 = 0 AND n > {members}"
    earned, spent = "(5 + n % 20)", f"(CASE WHEN {redeems} THEN 10 ELSE 0 END)"
    taken = f"(CASE WHEN (n + {members}) % 4 = 0 AND n + {members} <= {sales} THEN 10 ELSE 0 END)"
    moved = f"CASE WHEN {'true' if late else 'false'} AND n % 1000 = 7 THEN '{month_before(period, 1)}' END"
    post = "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
    return [
        f"INSERT INTO ledger_txns (ledger_txn_id, kind, member_id, merchant_id, day, period, at, moved_from) "
        f"SELECT {txn}, 'sale', {mem}, {mer}, {day}, {p}, {day} || 'T10:00:00.000Z', {moved} {src}",
        f"INSERT INTO ledger_lots (lot_id, member_id, merchant_id, points, remaining, earned_at, earned_day, "
        f"expires_at, timing) SELECT {txn}, {mem}, {mer}, {earned}, {earned} - {taken}, {day} || 'T10:00:00.000Z', "
        f"{day}, NULL, {timing} {src}",
        f"INSERT INTO ledger_lot_uses (ledger_txn_id, purpose, lot_id, merchant_id, points, against) "
        f"SELECT {txn}, 'spend', '{period}:' || (n - {members}), {prev}, 10, NULL {src} WHERE {redeems}",
        f"{post}SELECT {txn}, 0, 'member_points', {mem}, 'points', {earned} - {spent} {src}",
        f"{post}SELECT {txn}, 1, 'merchant_issued', {mer}, 'points', -{earned} {src}",
        f"{post}SELECT {txn}, 2, 'merchant_issued', {prev}, 'points', 10 {src} WHERE {redeems}",
        f"{post}SELECT {txn}, 3, 'merchant_accepted', {mer}, 'points', 10 {src} WHERE {redeems}",
        f"{post}SELECT {txn}, 4, 'chain_points', '', 'points', -10 {src} WHERE {redeems}",
        f"{post}SELECT {txn}, 5, 'member_value', {mem}, 'value', -300 {src} WHERE n % 10 = 3",
        f"{post}SELECT {txn}, 6, 'merchant_value_accepted', {mer}, 'value', 300 {src} WHERE n % 10 = 3",
    ]


def build(url: str, sales: int, merchant_count: int, members: int, history: int) -> float:
    """A ledger of ``history`` months and the benchmark's month; seconds taken (with ANALYZE)."""
    hq = HqStore(url, backup=False)
    with hq.db.write() as tx:
        for m in range(merchant_count):
            merchants.add(tx, f"M-{m:03d}", f"Merchant {m}", 100 + m % 50, 80 + m % 40, TIMINGS[m % 3])
    hq.close()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for back in range(history, -1, -1):
            for sql in build_sql(month_before(MONTH, back), sales, merchant_count, members, late=back == 0):
                conn.execute(sql.encode())
        conn.execute(MEMBERS)
        conn.execute(b"ANALYZE")
    return time.perf_counter() - t0


def check(url: str) -> dict[str, Any]:
    hq = HqStore(url, backup=False)
    try:
        with hq.db.read() as tx:
            took, failures = timed(lambda: ledger.check(tx))
    finally:
        hq.close()
    return {"books_hold": not failures, "check_seconds": round(took, 1)}


def close_history(url: str, history: int) -> dict[str, Any]:
    """Close every month before the benchmark's, oldest first, as a finance team closes each month: each close
    keeps the merchants' positions (the first reads the whole ledger before it, the others the month since)."""
    hq = HqStore(url, backup=False)
    took: list[float] = []
    try:
        for back in range(history, 0, -1):
            period = month_before(MONTH, back)
            seconds, _ = timed(lambda p=period: settlement.close_period(hq.db, p, "bench", "month end"))
            took.append(seconds)
    finally:
        hq.close()
    return {
        "figure": "statements_after_closes",
        "closes": len(took),
        "first_close_seconds": round(took[0], 2) if took else None,
        "last_close_seconds": round(took[-1], 2) if took else None,
    }


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(url: str, rounds: int) -> dict[str, Any]:
    hq = HqStore(url, backup=False)
    best: dict[str, float] = {}
    found: list[settlement.Statement] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(rounds):  # alternating: the best of each is the figure
                took, found = timed(lambda: settlement.read_statements(hq.db, MONTH))
                best["statements"] = min(best.get("statements", took), took)
                took, _ = timed(lambda: conn.execute(FLOOR.encode(), [MONTH]).fetchall())
                best["floor"] = min(best.get("floor", took), took)
        took, docs = timed(lambda: [(settlement.to_csv(s), settlement.to_pdf(s)) for s in found])
        best["documents"] = took
    finally:
        hq.close()
    return {
        "statements_seconds": round(best["statements"], 3),
        "floor_seconds": round(best["floor"], 3),
        "statements_over_floor": round(best["statements"] / best["floor"], 2),
        "documents_seconds": round(best["documents"], 3),
        "ms_per_document_pair": round(1000 * best["documents"] / max(1, len(found)), 2),
        "pdf_bytes_median": sorted(len(p) for _, p in docs)[len(docs) // 2] if docs else 0,
        "statements": len(found),
        "late_entries": sum(len(s.late) for s in found),
        "net_total": sum(s.net for s in found),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", default="200000,1000000", help="sales in the month, one data set per size")
    parser.add_argument("--merchants", type=int, default=400)
    parser.add_argument("--members", type=int, default=99_991, help="not a multiple of --merchants")
    parser.add_argument("--history", type=int, default=1, help="months of the same size before the month")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="prove the generated books with ledger.check")
    parser.add_argument(
        "--close-history",
        action="store_true",
        help="then close the months before, keeping their positions, and measure again",
    )
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": round(os.getloadavg()[0], 1)}
    pg = PgServer(durable=True).start()
    try:
        for sales in (int(s) for s in args.sales.split(",")):
            url = pg.fresh_schema()
            built = build(url, sales, args.merchants, args.members, args.history)
            with psycopg.connect(url) as conn:
                row = conn.execute(b"SELECT COUNT(*) FROM ledger_postings").fetchone()
            figures = {
                "figure": "statements",
                "engine": "postgresql (fsync on)",
                "sales_in_month": sales,
                "months_before": args.history,
                "merchants": args.merchants,
                "postings_total": int(row[0]) if row else 0,
                "build_seconds": round(built, 1),
            }
            if args.check:
                figures |= check(url)
            print(json.dumps(figures | measure(url, args.rounds) | machine), flush=True)
            if args.close_history:
                closed = close_history(url, args.history)
                print(json.dumps(figures | closed | measure(url, args.rounds) | machine), flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
