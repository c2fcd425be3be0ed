"""Benchmark: building every member's rolled windows while tills push. Prints JSON, one object per figure.

    build      the windows of M members (default 100,000) built from their daily rows (about 25 visit days
               a member over a year and a half, two categories a visit: millions of rows) as of a day, in one
               transaction (a chunk as large as every member: how every build ran before m030) and in chunks
               of C members a transaction (one build per size given, the first ``stats.BUILD_CHUNK``); meanwhile a thread pushes
               sales continuously through ``HqStore.ingest`` (P sales a push, members across the whole
               range): the build's seconds, how many pushes it saw, and the longest and the median time a
               push took during it, beside the median of a push with no build running
    checked    after the last build, the windows equal one build from scratch (``stats.build_windows``, in a
               transaction rolled back)

    .venv/bin/python bench/bench_windows_build.py [--members 100000] [--chunks 5000,20000,2000] [--per-push 5]

PostgreSQL only (the tests' own server from ``tests.fixtures.postgres``, fsync on): SQLite has one writer,
so a push waits for whichever transaction writes, a chunk of a build as much as anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq import stats  # noqa: E402
from hq.db.engine import Tx  # noqa: E402
from hq.store import HqStore  # noqa: E402
from sync.protocol import WireEntry  # noqa: E402
from tests.fixtures import entries  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

AS_OF = date(2026, 3, 1)
PUSHED_ON = AS_OF - timedelta(days=5)
"""The business day of the pushed sales: inside every window of both builds."""
VISIT_DAYS = 25
"""Visit days a member, spread over 540 days before the reference day."""


def fill(hq: HqStore, members: int) -> dict[str, int]:
    """Members, their daily rows and lifetime totals, written by SQL (the windows are what is measured)."""
    with hq.db.write() as tx:
        tx.run(
            "INSERT INTO members (member_id, display_name, tier, points, status, version, stored_value, deleted) "
            "SELECT 'M-' || lpad(m::text, 7, '0'), 'x', 'basic', 0, 'active', 0, 0, 0 "
            "FROM generate_series(0, ? - 1) m",
            [members],
        )
        tx.run(
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT 'M-' || lpad(m::text, 7, '0'), to_char(?::date - mod(m * 37 + k * 211, 540), 'YYYY-MM-DD'), "
            "'s', 'S' || mod(k, 3), 1, 500 + mod(m + k, 900), 0 FROM generate_series(0, ? - 1) m, "
            "generate_series(1, ?) k ON CONFLICT DO NOTHING",
            [AS_OF.isoformat(), members, VISIT_DAYS],
        )
        tx.run(
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT member_id, day, 'c', c, 0, SUM(spend) / 2, SUM(visits) FROM member_days, "
            "(VALUES ('food'), ('drink')) AS v(c) GROUP BY member_id, day, c"
        )
        tx.run(
            "INSERT INTO member_totals (member_id, first_visit, last_visit, visits, spend, coupons_redeemed, "
            "updated_at) SELECT member_id, MIN(day), MAX(day), SUM(visits), SUM(spend), 0, '2026-01-01' "
            "FROM member_days GROUP BY member_id"
        )
        tx.run("ANALYZE")
        counts = {t: int(tx.one(f"SELECT COUNT(*) FROM {t}")[0]) for t in ("member_days", "member_category_days")}
    return counts


class Pusher(threading.Thread):
    """Pushes sales continuously, one ``ingest`` a push, and keeps how long each took and when it ended."""

    def __init__(self, hq: HqStore, members: int, per_push: int) -> None:
        super().__init__(name="pusher", daemon=True)
        self.hq, self.members, self.per_push = hq, members, per_push
        self.seq, self.stop = 0, threading.Event()
        self.took: list[tuple[float, float]] = []
        """(when it ended, how long it took) of each push."""
        self.error: BaseException | None = None
        hq.add_terminal("T-01", "S1", "token-T-01")

    def batch(self) -> list[WireEntry]:
        out = []
        for _ in range(self.per_push):
            self.seq += 1
            member = f"M-{(self.seq * 7919) % self.members:07d}"  # across the whole range of ids
            body = entries.sale(member, 800, lines=[{"sku": "A", "category": "food", "quantity": 1, "unit_price": 800}])
            out.append(
                WireEntry(
                    terminal_id="T-01",
                    seq=self.seq,
                    txn_id=f"T-01-{self.seq}",
                    kind="sale",
                    payload=body,
                    created_at=f"{PUSHED_ON.isoformat()}T10:00:00.000Z",
                )
            )
        return out

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.batch()
                t0 = time.perf_counter()
                self.hq.ingest("T-01", batch)
                t1 = time.perf_counter()
                self.took.append((t1, t1 - t0))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def during(self, start: float, end: float) -> list[float]:
        """How long each push took that was under way at some time between ``start`` and ``end``."""
        return [took for ended, took in self.took if ended >= start and ended - took <= end]


def build(hq: HqStore, pusher: Pusher, day: date, chunk: int) -> dict[str, Any]:
    """A build as of ``day`` (back from the day the windows are as of) with pushes running."""
    t0 = time.perf_counter()
    stats.roll_windows(hq.db, day, back=True, chunk=chunk)
    t1 = time.perf_counter()
    waits = pusher.during(t0, t1)
    return {
        "chunk": chunk,
        "build_s": round(t1 - t0, 2),
        "pushes_during": len(waits),
        "push_max_s": round(max(waits), 3) if waits else None,
        "push_median_s": round(statistics.median(waits), 3) if waits else None,
    }


def idle_pushes(pusher: Pusher, seconds: float) -> float:
    """The median push with no build running, over ``seconds``."""
    t0 = time.perf_counter()
    pusher.stop.wait(seconds)
    return round(statistics.median(pusher.during(t0, time.perf_counter()) or [0.0]), 3)


class _Undone(Exception):
    """Raised inside a transaction to roll it back."""


def windows_of(tx: Tx) -> list[tuple[Any, ...]]:
    columns = ", ".join(stats.WINDOW_COLUMNS)
    rows = tx.all(f"SELECT member_id, last_day, {columns} FROM member_totals ORDER BY member_id")
    cats = ", ".join(stats.CATEGORY_WINDOW_COLUMNS)
    rows += tx.all(f"SELECT member_id, category, {cats} FROM member_category_windows ORDER BY member_id, category")
    return [tuple(r) for r in rows]


def exact(hq: HqStore, day: date) -> bool:
    """The windows kept (built in chunks while pushes came) equal one build from scratch (rolled back)."""
    with hq.db.read() as tx:
        kept = windows_of(tx)
    fresh: list[tuple[Any, ...]] = []
    try:
        with hq.db.write() as tx:
            stats.build_windows(tx, day)
            fresh = windows_of(tx)
            raise _Undone
    except _Undone:
        pass
    return kept == fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--chunks", default=f"{stats.BUILD_CHUNK},20000,2000", help="chunk sizes, one build each")
    parser.add_argument("--per-push", type=int, default=5)
    args = parser.parse_args()
    pg = PgServer(durable=True).start()
    try:
        hq = HqStore(pg.fresh_schema(), backup=False)
        t0 = time.perf_counter()
        rows = fill(hq, args.members)
        filled_s = time.perf_counter() - t0
        sizes = [int(n) for n in args.chunks.split(",")]
        stats.roll_windows(hq.db, AS_OF, chunk=sizes[0])  # built once first: every run below builds again
        pusher = Pusher(hq, args.members, args.per_push)
        pusher.start()
        idle = idle_pushes(pusher, 10)
        whole = build(hq, pusher, AS_OF - timedelta(days=1), args.members + 1)
        between = idle_pushes(pusher, 5)
        chunked = [build(hq, pusher, AS_OF - timedelta(days=2 + n), size) for n, size in enumerate(sizes)]
        pusher.stop.set()
        pusher.join()
        if pusher.error is not None:
            raise pusher.error
        out = {
            "figure": "windows_build",
            "engine": "postgresql (fsync on)",
            "members": args.members,
            **rows,
            "fill_s": round(filled_s, 1),
            "per_push": args.per_push,
            "push_median_idle_s": idle,
            "push_median_between_s": between,
            "one_transaction": whole,
            "chunked": chunked,
            "exact": exact(hq, AS_OF - timedelta(days=1 + len(sizes))),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": os.getloadavg()[0]},
        }
        print(json.dumps(out))
        hq.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
