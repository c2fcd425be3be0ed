"""Benchmark: issuing a campaign of personal coupons, and a till pulling them, beside the floor.

Two populations, made with different settings (the second is never tuned on):

  tuned    N members (seeded), 95 % with marketing consent; a ``once`` campaign with one variant and a
           5 % control group: about 0.9 N coupons.
  other    N members of another seed, 70 % consent, a chain-wide holdout of 5 %, an offer cap of one a
           day with an earlier campaign already issued to a third of them, and a daily campaign with
           three weighted variants and a 10 % control group.

For each, on each engine:

  issue      ``hq.campaigns.run_one``: the segment evaluated once, then, per chunk of 2,000 members and in
             one transaction each, the member rows locked, the decisions, the coupons and their versions
  floor      the same rows, made beforehand, written in bulk in the same chunks (coupons at new versions of
             the feed, the two version-history rows, campaign_members; PostgreSQL: COPY), in the same
             process on the same database: the database's own cost
  rerun      ``run_one`` again: nothing to issue (what idempotency costs)
  pull       ``HqStore.changes`` pages of 500 from the version before the campaign to the end (a till's
             next pull), against the floor: the same ``SELECT ... WHERE version > ? ORDER BY version
             LIMIT 501`` on the coupons table alone

    .venv/bin/python bench/bench_campaigns.py [--members 110000] [--engines sqlite,postgres]

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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq import campaigns, segments  # noqa: E402
from hq.ingest import next_versions  # noqa: E402
from hq.store import HqStore  # noqa: E402
from terminal.canonical import canonical_text, doc_digest  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

DAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CHUNK = campaigns.CHUNK


def populate(store: HqStore, n: int, seed: int, consent: float) -> None:
    rnd = random.Random(seed)
    members, consents = [], []
    for i in range(n):
        mid = f"M{seed:02d}{i:07d}"
        members.append((mid, "x", rnd.choice(("basic", "silver", "gold")), 0, "active", i + 1, 0))
        if rnd.random() < consent:
            consents.append((mid, "v1", "marketing", "2026-01-01T00:00:00Z", None))
    for at in range(0, n, 100_000):
        with store.db.write() as tx:
            tx.insert_rows(
                "members",
                ["member_id", "display_name", "tier", "points", "status", "version", "deleted"],
                members[at : at + 100_000],
            )
            tx.insert_rows(
                "consents",
                ["member_id", "wording_version", "channel", "given_at", "withdrawn_at"],
                [c for c in consents if members[at][0] <= c[0] <= members[min(at + 100_000, n) - 1][0]],
            )
    with store.db.write() as tx:  # each row its own version, as the one write path gives them
        tx.run("UPDATE counters SET value = ? WHERE name = 'version'", [n])
        tx.run("ANALYZE")
    segments.save(
        store.db, "everyone", "everyone", {"where": {"kind": "tier", "tiers": ["basic", "silver", "gold"]}}, "bench"
    )


def tuned_spec() -> dict[str, Any]:
    return {
        "name": "Spring drop",
        "segment": "everyone",
        "variants": [{"variant": "yen300", "coupon": {"kind": "amount_off", "value": 300, "min_spend": 2000}}],
        "schedule": {"kind": "once", "at": "2026-03-02T09:00"},
        "timezone": "Asia/Tokyo",
        "control_share": 0.05,
    }


def other_spec() -> dict[str, Any]:
    return {
        "name": "Daily nudges",
        "segment": "everyone",
        "variants": [
            {"variant": "pct10", "weight": 2, "coupon": {"kind": "percent_off", "value": 10}},
            {"variant": "bonus", "weight": 1, "coupon": {"kind": "bonus_points", "value": 80}},
            {"variant": "free", "weight": 1, "coupon": {"kind": "free_item", "categories": ["coffee"]}},
        ],
        "schedule": {"kind": "daily", "at": "08:30"},
        "timezone": "Asia/Tokyo",
        "control_share": 0.1,
    }


def prepare_other(store: HqStore) -> None:
    """The holdout, the cap, and an earlier campaign that reached a third of the members 13 hours before."""
    campaigns.save_settings(store.db, {"holdout": {"share": 0.05, "days": 90}, "offer_cap": {"max": 1, "days": 1}})
    with store.db.read() as tx:
        ids = [str(r[0]) for r in tx.all("SELECT member_id FROM members ORDER BY member_id")]
    earlier = [(m,) for i, m in enumerate(ids) if i % 3 == 0]
    with store.db.write() as tx:
        tx.many(
            "INSERT INTO campaign_members (campaign_id, member_id, occasion, arm, coupon_id, day, until_day, issued_at) "
            f"VALUES ('earlier', ?, 'once', 'a', NULL, '{DAY.isoformat()}', '2026-03-09', '2026-03-01T12:00:00.000Z')",
            earlier,
        )


def floor(store: HqStore, rows: list[tuple[str, str]], spec: campaigns.CampaignSpec) -> float:
    """The same rows a run writes, made beforehand and written plainly in the same chunks: the database's
    own cost (the segment, the locks, the arms and the coupon documents are the run's overhead)."""
    variant = spec.variants[0]
    now = "2026-03-02T01:00:00.000Z"
    chunks = []
    for at in range(0, len(rows), CHUNK):
        decided, coupons, versions, events = [], [], [], []
        for member_id, occasion in rows[at : at + CHUNK]:
            cid = "floor-" + campaigns.coupon_id_of("floor", member_id, occasion)
            body = campaigns.coupon_body("floor", spec, variant, member_id, cid, DAY)
            text, digest = canonical_text(body), doc_digest(body)
            decided.append((member_id, occasion, "a", cid, DAY.isoformat(), "2026-03-09", now))
            coupons.append((cid, member_id, text))
            versions.append((cid, digest, text, now))
            events.append((cid, digest, now))
        chunks.append((decided, coupons, versions, events))
    started = time.perf_counter()
    for decided, coupons, versions, events in chunks:
        with store.db.write() as tx:
            first = next_versions(tx, len(coupons))
            tx.insert_rows(
                "coupons",
                ["coupon_id", "member_id", "body", "uses", "version", "deleted"],
                [(c, m, b, 0, first + n, 0) for n, (c, m, b) in enumerate(coupons)],
            )
            tx.insert_rows(
                "doc_versions", ["kind", "doc_id", "digest", "body", "first_seen"], [("coupon", *v) for v in versions]
            )
            tx.insert_rows("doc_events", ["kind", "doc_id", "digest", "at"], [("coupon", *e) for e in events])
            tx.insert_rows(
                "campaign_members",
                [
                    "campaign_id",
                    "member_id",
                    "occasion",
                    "arm",
                    "coupon_id",
                    "day",
                    "until_day",
                    "issued_at",
                    "version",
                ],
                [("floor", *d, first + n) for n, d in enumerate(decided)],
            )
    return time.perf_counter() - started


def pull(store: HqStore, since: int) -> tuple[float, int]:
    started, cursor, coupons = time.perf_counter(), since, 0
    while True:
        page = store.changes(cursor, 500)
        coupons += len(page.coupons)
        cursor = page.cursor
        if not page.more:
            return time.perf_counter() - started, coupons


def pull_floor(store: HqStore, since: int) -> tuple[float, int]:
    started, cursor, coupons = time.perf_counter(), since, 0
    while True:
        with store.db.read() as tx:
            rows = tx.all(
                "SELECT coupon_id, member_id, body, uses, version FROM coupons WHERE version > ? ORDER BY version LIMIT ?",
                [cursor, 501],
            )
        for row in rows[:500]:
            json.loads(row[2])
        coupons += len(rows[:500])
        if len(rows) <= 500:
            return time.perf_counter() - started, coupons
        cursor = int(rows[499][4])


def version(store: HqStore) -> int:
    with store.db.read() as tx:
        row = tx.one("SELECT value FROM counters WHERE name = 'version'")
    return int(row[0]) if row else 0


def bench_one(store: HqStore, name: str, data: dict[str, Any]) -> dict[str, Any]:
    campaigns.save(store.db, name, data, "bench")
    spec = campaigns.parse_spec(data)
    before = version(store)
    started = time.perf_counter()
    done = campaigns.run_one(store.db, name, NOW)
    issue_s = time.perf_counter() - started
    assert done is not None
    issued = sum(done["issued"].values())
    with store.db.read() as tx:
        treated = [
            (str(r[0]), str(r[1]))
            for r in tx.all(
                "SELECT member_id, occasion FROM campaign_members WHERE campaign_id = ? AND coupon_id IS NOT NULL "
                "ORDER BY member_id",
                [name],
            )
        ]
    assert len(treated) == issued
    pull_s, pulled = pull(store, before)
    pull_floor_s, floor_pulled = pull_floor(store, before)
    assert pulled == floor_pulled == issued, (pulled, floor_pulled, issued)
    started = time.perf_counter()
    again = campaigns.run_one(store.db, name, NOW)
    rerun_s = time.perf_counter() - started
    assert again is not None and again["issued"] == {}
    floor_s = floor(store, treated, spec)
    return {
        "run": {k: v for k, v in done.items() if k not in ("campaign_id", "day")},
        "issued": issued,
        "issue_s": round(issue_s, 2),
        "floor_s": round(floor_s, 2),
        "issue_over_floor": round(issue_s / floor_s, 2),
        "coupons_per_s": round(issued / issue_s),
        "rerun_s": round(rerun_s, 2),
        "pull_s": round(pull_s, 2),
        "pull_floor_s": round(pull_floor_s, 2),
        "pull_over_floor": round(pull_s / pull_floor_s, 2),
        "pulled_per_s": round(pulled / pull_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=110_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the PostgreSQL server is stopped too
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "cpus": 2},
        "members": args.members,
    }
    for engine in args.engines.split(","):
        pg = PgServer(durable=True).start() if engine == "postgres" else None
        try:
            for setting in ("tuned", "other"):
                with tempfile.TemporaryDirectory() as tmp:
                    store = HqStore(pg.fresh_schema() if pg else str(Path(tmp) / "hq.db"), backup=False)
                    try:
                        if setting == "tuned":
                            populate(store, args.members, seed=1, consent=0.95)
                            found = bench_one(store, "spring", tuned_spec())
                        else:
                            populate(store, args.members, seed=2, consent=0.7)
                            prepare_other(store)
                            found = bench_one(store, "nudges", other_spec())
                        report.setdefault(engine, {})[setting] = found
                        print(json.dumps({"engine": engine, "setting": setting, **found}), flush=True)
                    finally:
                        store.close()
        finally:
            if pg:
                pg.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
