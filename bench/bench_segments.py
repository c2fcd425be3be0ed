"""Benchmark: previews of representative segments over a generated population, beside the floor.

A population of N members (seeded): tiers, statuses, a few erased; a birthday for 80%; marketing consent
for 60%; member_days over the year before the reference day (a visit every 2-8 weeks on average for 85% of
members, at one of 20 stores) and member_category_days (1-3 of 12 categories per visit day). Then, for each
segment, the best of ``--repeat`` runs of

  count      the compiled segment's COUNT(*) (``hq.segments.count``)
  preview    count + a sample of 20 (``hq.segments.preview``: what the admin route and command run)
  floor      a hand-written SQL query giving the same count, run in the same process on the same database

with ``ratio`` = count / floor. The counts of the compiled and the hand-written queries must be equal.

    .venv/bin/python bench/bench_segments.py [--members 100000] [--engines sqlite,postgres] [--repeat 3]

PostgreSQL: needs Debian's postgresql (initdb/pg_ctl); the run starts its own server (fsync on).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq import segments, stats  # noqa: E402
from hq.db.engine import Tx  # noqa: E402
from hq.store import HqStore  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

AS_OF = date(2026, 3, 1)
STORES = [f"S{n:02d}" for n in range(20)]
CATEGORIES = ["wine", "coffee", "bakery", "toys", "fruit", "fish", "meat", "cheese", "tea", "beer", "sweets", "soap"]
ELIGIBLE = (
    "m.deleted = 0 AND m.status <> 'blocked' AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.member_id = m.member_id)"
)

SEGMENTS: dict[str, dict[str, Any]] = {
    "likely_next_month": {
        "kind": "all_of",
        "conditions": [{"kind": "rfm", "recency": [4, 5], "frequency": [3, 5]}, {"kind": "consent"}],
    },
    "dormant_90_days": {"kind": "lapsed", "days": 90},
    "birthday_this_week": {
        "kind": "all_of",
        "conditions": [{"kind": "birthday_within", "days": 7}, {"kind": "consent"}],
    },
    "wine_lovers": {"kind": "category_affinity", "category": "wine", "days": 365, "min_share": 0.3},
}


def _floors(dialect: str) -> dict[str, tuple[str, list[Any]]]:
    first = (AS_OF - timedelta(days=364)).isoformat()
    last = AS_OF.isoformat()
    lapsed_from = (AS_OF - timedelta(days=89)).isoformat()
    birthdays = segments.birthday_days(AS_OF, 7)
    by_id = 'member_id COLLATE "C"' if dialect == "postgres" else "member_id"
    consent = "EXISTS (SELECT 1 FROM consents k WHERE k.member_id = m.member_id AND k.channel = 'marketing' AND k.withdrawn_at IS NULL)"
    return {
        "likely_next_month": (
            "WITH a AS (SELECT d.member_id, MAX(CASE WHEN d.visits > 0 THEN d.day END) AS last_day, "
            "SUM(d.visits) AS v, SUM(d.spend) AS s FROM member_days d JOIN members m ON m.member_id = d.member_id "
            f"WHERE d.day >= ? AND d.day <= ? AND {ELIGIBLE} GROUP BY d.member_id HAVING SUM(d.visits) > 0), "
            f"r AS (SELECT member_id, NTILE(5) OVER (ORDER BY last_day, {by_id}) AS r, "
            f"NTILE(5) OVER (ORDER BY v, {by_id}) AS f FROM a) "
            f"SELECT COUNT(*) FROM r JOIN members m ON m.member_id = r.member_id WHERE r.r >= 4 AND r.f >= 3 AND {consent}",
            [first, last],
        ),
        "dormant_90_days": (
            "SELECT COUNT(*) FROM (SELECT member_id FROM member_days WHERE visits > 0 AND day <= ? "
            f"GROUP BY member_id HAVING MAX(day) < ?) t JOIN members m ON m.member_id = t.member_id WHERE {ELIGIBLE}",
            [last, lapsed_from],
        ),
        "birthday_this_week": (
            "SELECT COUNT(*) FROM member_profiles p JOIN members m ON m.member_id = p.member_id "
            f"WHERE p.birth_md IN ({', '.join('?' for _ in birthdays)}) AND {consent} AND {ELIGIBLE}",
            list(birthdays),
        ),
        "wine_lovers": (
            "SELECT COUNT(*) FROM (SELECT member_id FROM member_category_days WHERE day >= ? AND day <= ? "
            "GROUP BY member_id HAVING SUM(spend) > 0 AND "
            "SUM(CASE WHEN category = 'wine' THEN spend ELSE 0 END) * 10000 >= 3000 * SUM(spend)) t "
            f"JOIN members m ON m.member_id = t.member_id WHERE {ELIGIBLE}",
            [first, last],
        ),
    }


def population(n: int, seed: int = 11) -> dict[str, list[tuple[Any, ...]]]:
    rnd = random.Random(seed)
    rows: dict[str, list[tuple[Any, ...]]] = {
        k: [] for k in ("members", "profiles", "consents", "days", "cats", "erasures")
    }
    start = AS_OF - timedelta(days=364)
    for i in range(n):
        mid = f"M{i:07d}"
        status = "blocked" if rnd.random() < 0.01 else "active"
        rows["members"].append((mid, "x", rnd.choice(("basic", "silver", "gold")), 0, status, 1, 0))
        if rnd.random() < 0.005:
            rows["erasures"].append((mid, "2026-01-01T00:00:00Z", "bench"))
        if rnd.random() < 0.8:
            born = date(1950, 1, 1) + timedelta(days=rnd.randrange(365 * 55))
            rows["profiles"].append((mid, born.isoformat(), born.isoformat()[5:], "2026-01-01T00:00:00Z"))
        if rnd.random() < 0.6:
            rows["consents"].append((mid, "v1", "marketing", "2026-01-01T00:00:00Z", None))
        if rnd.random() < 0.15:
            continue
        gap = rnd.choice((14, 21, 30, 45, 60))
        day = rnd.randrange(gap)
        home = rnd.choice(STORES)
        favourite = rnd.choice(CATEGORIES)
        while day < 365:
            when = (start + timedelta(days=day)).isoformat()
            spend = rnd.randint(300, 12_000)
            store = home if rnd.random() < 0.8 else rnd.choice(STORES)
            rows["days"].append((mid, when, stats.STORE_ROW, store, 1, spend, 0))
            cats = {favourite, *rnd.sample(CATEGORIES, rnd.randint(0, 2))}
            for category in cats:
                rows["cats"].append((mid, when, stats.CATEGORY_ROW, category, 0, spend // len(cats), 1))
            day += max(1, int(rnd.expovariate(1 / gap)))
    return rows


def load(store: HqStore, rows: dict[str, list[tuple[Any, ...]]]) -> float:
    started = time.perf_counter()
    tables = {
        "members": ("members", ["member_id", "display_name", "tier", "points", "status", "version", "deleted"]),
        "profiles": ("member_profiles", ["member_id", "birthday", "birth_md", "updated_at"]),
        "consents": ("consents", ["member_id", "wording_version", "channel", "given_at", "withdrawn_at"]),
        "days": ("member_day_rows", list(stats.DAY_ROW_COLUMNS)),
        "cats": ("member_day_rows", list(stats.DAY_ROW_COLUMNS)),
        "erasures": ("erasures", ["member_id", "erased_at", "erased_by"]),
    }
    for key, (table, columns) in tables.items():
        data = rows[key]
        for at in range(0, len(data), 200_000):
            with store.db.write() as tx:
                tx.insert_rows(table, columns, data[at : at + 200_000])
    with store.db.write() as tx:
        tx.run("ANALYZE")
    return time.perf_counter() - started


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def bench_engine(store: HqStore, repeat: int) -> dict[str, Any]:
    floors = _floors(store.db.dialect)
    out: dict[str, Any] = {}
    for name, where in SEGMENTS.items():
        definition = segments.parse_definition({"where": where})

        def counted(tx: Tx, d: segments.SegmentDefinition = definition) -> int:
            return segments.count(tx, d, AS_OF)

        def previewed(tx: Tx, d: segments.SegmentDefinition = definition) -> dict[str, Any]:
            return segments.preview(tx, d, AS_OF, 20)

        def floor(tx: Tx, name: str = name) -> int:
            sql, params = floors[name]
            row = tx.one(sql, params)
            return int(row[0]) if row else 0

        def run(fn: Callable[[Tx], Any]) -> Any:
            with store.db.read() as tx:
                return fn(tx)

        count_s, n = best(lambda: run(counted), repeat)
        preview_s, _ = best(lambda: run(previewed), repeat)
        floor_s, m = best(lambda: run(floor), repeat)
        if n != m:
            raise AssertionError(f"{name}: the segment counts {n}, the hand-written query {m}")
        out[name] = {
            "members": n,
            "count_s": round(count_s, 3),
            "preview_s": round(preview_s, 3),
            "floor_s": round(floor_s, 3),
            "ratio": round(count_s / floor_s, 2) if floor_s else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the PostgreSQL server is stopped too
    started = time.perf_counter()
    rows = population(args.members)
    generated = time.perf_counter() - started
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "cpus": 2},
        "members": args.members,
        "member_days": len(rows["days"]),
        "member_category_days": len(rows["cats"]),
        "generate_s": round(generated, 1),
    }
    for engine in args.engines.split(","):
        pg = PgServer(durable=True).start() if engine == "postgres" else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                store = HqStore(pg.fresh_schema() if pg else str(Path(tmp) / "hq.db"), backup=False)
                try:
                    loaded = load(store, rows)
                    report[engine] = {"load_s": round(loaded, 1), **bench_engine(store, args.repeat)}
                finally:
                    store.close()
        finally:
            if pg:
                pg.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
