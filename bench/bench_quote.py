"""Benchmark: quote latency with a chain-sized cache.

1,000,000 members, 5,000,000 coupons (about 5 personal coupons per member plus 10,000 general ones;
each quote presents 15 general codes, so about 20 coupons are candidates for the member at hand) and
200 earning rules of every kind. Measures ``Service.quote`` in-process (cache lookups, coupon checks,
best combination, redemption, earning) and prints JSON: p50/p99/mean in ms.

    .venv/bin/python bench/bench_quote.py [--members 1000000] [--coupons 5000000] [--quotes 3000]

The database is built once per size in a temporary directory (or --db FILE to keep it).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from terminal import pricing
from terminal.model import Basket, EarnRule, Line
from terminal.service import Service
from terminal.store import Store

TIERS = ["basic", "silver", "gold"]
CATEGORIES = ["coffee", "bakery", "beans", "dairy", "snacks", "drinks", "fruit", "household"]
GENERAL = 10_000


def rules(rng: random.Random) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {
        "tiers": {"kind": "tiers", "levels": [{"tier": t, "threshold": i * 1000} for i, t in enumerate(TIERS)]},
        "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 50},
        "points_policy": {"kind": "points_policy", "lock_days": 1, "expire_days": 365},
        "cap": {"kind": "cap", "cap": 5000},
        "tier-silver": {"kind": "tier", "tier": "silver", "multiplier_pct": 125},
        "tier-gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 150},
    }
    for i in range(194):
        kind = "campaign" if i % 2 else "sku_bonus"
        doc: dict[str, Any] = {"kind": kind, "priority": i, "mode": rng.choice(["stack", "stack", "replace"])}
        if kind == "campaign":
            doc |= {"multiplier_pct": rng.choice([150, 200, 300]), "categories": [rng.choice(CATEGORIES)]}
        else:
            doc |= {"points": rng.randint(5, 50), "skus": [f"SKU{rng.randrange(2000)}"]}
        if i % 3 == 0:
            doc["weekdays"] = rng.sample(range(7), 3)
        if i % 5 == 0:
            doc["hours"] = ["07:00", "11:00"]
        if i % 7 == 0:
            doc["stores"] = [f"S-{rng.randrange(50):03d}", "S-001"]
        docs[f"rule-{i:03d}"] = doc
    return docs


def coupon_body(rng: random.Random, member_id: str | None) -> dict[str, Any]:
    kind = rng.choice(["amount_off", "percent_off", "free_item", "buy_x_get_y", "bonus_points", "points_multiplier"])
    doc: dict[str, Any] = {"kind": kind, "ends": "2027-12-31"}
    if kind == "amount_off":
        doc |= {"value": rng.choice([100, 200, 500]), "min_spend": rng.choice([0, 1000, 3000])}
    elif kind == "percent_off":
        doc |= {"value": rng.choice([5, 10, 20]), "target": "items", "categories": [rng.choice(CATEGORIES)]}
    elif kind == "free_item":
        doc |= {"skus": [f"SKU{rng.randrange(2000)}"]}
    elif kind == "buy_x_get_y":
        doc |= {"buy": 2, "get": 1, "categories": [rng.choice(CATEGORIES)]}
    elif kind == "bonus_points":
        doc |= {"value": rng.choice([50, 100])}
    else:
        doc |= {"value": 200}
    doc["exclusive"] = rng.random() < 0.2
    if member_id:
        doc |= {"member_id": member_id, "single_use": True}
    else:
        doc["limits"] = {"per_member": 1}
    return doc


def build(path: Path, members: int, coupons: int, rng: random.Random) -> dict[str, float]:
    began = time.perf_counter()
    store = Store.open(path)
    store.apply_changes([], [], [EarnRule("base", 1, 100)], cursor=0)
    conn = store.db.conn
    with conn:
        conn.executemany(
            "INSERT INTO members (member_id, display_name, tier, points, hq_points, status) VALUES (?,?,?,?,?,?)",
            ((f"M-{i:07d}", f"Member {i}", TIERS[i % 3], i % 5000, i % 5000, "active") for i in range(members)),
        )
    t_members = time.perf_counter() - began

    def rows() -> Iterator[tuple[str, str | None, str]]:
        templates = [json.dumps(coupon_body(rng, "{m}")) for _ in range(64)]
        for i in range(coupons - GENERAL):
            member = f"M-{rng.randrange(members):07d}"
            yield f"P{i:08d}", member, templates[i % 64].replace("{m}", member)
        for i in range(GENERAL):
            yield f"G{i:05d}", None, json.dumps(coupon_body(rng, None))

    with conn:
        conn.executemany("INSERT INTO coupon_docs (coupon_id, member_id, body) VALUES (?,?,?)", rows())
    store.put_docs("rule_docs", dict(rules(rng)))
    store.close()
    return {"members_s": round(t_members, 1), "total_s": round(time.perf_counter() - began, 1)}


def basket(rng: random.Random) -> Basket:
    return Basket(
        tuple(
            Line(f"SKU{rng.randrange(2000)}", rng.randint(1, 3), rng.randint(100, 3000), rng.choice(CATEGORIES))
            for _ in range(rng.randint(2, 8))
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--coupons", type=int, default=5_000_000)
    parser.add_argument("--quotes", type=int, default=3000)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "terminal.db"
        built = build(path, args.members, args.coupons, rng) if not path.exists() else {"reused": 1.0}
        store = Store.open(path)
        # Wednesday 09:30 local: morning-hour rules are active.
        service = Service(store, "T-BENCH", clock=lambda: time.mktime((2026, 11, 25, 9, 30, 0, 0, 0, -1)))
        samples: list[float] = []
        candidates: list[int] = []
        for n in range(args.quotes + 200):
            member_id = f"M-{rng.randrange(args.members):07d}"
            codes = [f"G{rng.randrange(GENERAL):05d}" for _ in range(15)]
            items = basket(rng)
            began = time.perf_counter()
            quote = service.quote(member_id, items, codes, redeem=pricing.REDEEM_MAX)
            elapsed = (time.perf_counter() - began) * 1000
            if n == 199:
                gc.freeze()  # as the daemon does once started (terminal/daemon.py)
            if n >= 200:  # warm-up
                samples.append(elapsed)
                candidates.append(len(quote.coupons) + len(quote.refused))
        store.close()
    samples.sort()
    result = {
        "benchmark": "quote",
        "members": args.members,
        "coupons": args.coupons,
        "rules": 200,
        "quotes": args.quotes,
        "coupons_considered_per_quote": round(statistics.mean(candidates), 1),
        "build": built,
        "quote_ms": {
            "p50": round(samples[len(samples) // 2], 3),
            "p99": round(samples[int(len(samples) * 0.99)], 3),
            "mean": round(statistics.mean(samples), 3),
        },
        "machine": {"python": platform.python_version(), "cpus": len(__import__("os").sched_getaffinity(0))},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
