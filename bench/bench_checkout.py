"""Benchmark: identify + quote + commit on a terminal cache of N members (default 100,000).

Prints JSON: p50/p99 (ms) of each step and of the whole checkout, and durable commits per second.
Runs against a real on-disk database in WAL mode with synchronous=FULL, as the daemon does.

    .venv/bin/python bench/bench_checkout.py [--members 100000] [--sales 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from stats import nearest_rank

from terminal.credentials import card_uid_hash
from terminal.model import Basket, Card, CardRead, EarnRule, Line, Member
from terminal.service import Service
from terminal.store import Store

KEY = b"bench-card-key-0123456789abcdef!"


def uid(i: int) -> bytes:
    return b"\x04" + i.to_bytes(6, "big")


def seed(store: Store, members: int) -> None:
    page = 20_000
    for start in range(0, members, page):
        ids = range(start, min(start + page, members))
        store.apply_changes(
            [Member(f"M-{i:07d}", f"Member {i}", "basic", 0) for i in ids],
            [Card(card_uid_hash(KEY, uid(i)), f"M-{i:07d}") for i in ids],
            [EarnRule("base", 1, 100)] if start == 0 else [],
            cursor=start,
        )


def run(members: int, sales: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        t0 = time.perf_counter()
        seed(store, members)
        seed_s = time.perf_counter() - t0
        service = Service(store, "T-BENCH")
        rng = random.Random(7)
        steps: dict[str, list[float]] = {"identify": [], "quote": [], "commit": [], "checkout": []}
        basket = Basket((Line("SKU-1", 2, 450, "food"), Line("SKU-2", 1, 1299, "drink")))
        started = time.perf_counter()
        for _ in range(sales):
            read = CardRead("bench", "iso14443a", card_uid_hash(KEY, uid(rng.randrange(members))))
            a = time.perf_counter()
            found = service.identify(read)
            b = time.perf_counter()
            quote = service.quote(found.member.member_id, basket)
            c = time.perf_counter()
            service.commit(quote)
            d = time.perf_counter()
            for name, value in (("identify", b - a), ("quote", c - b), ("commit", d - c), ("checkout", d - a)):
                steps[name].append(value)
        elapsed = time.perf_counter() - started
        store.close()
    return {
        "benchmark": "checkout",
        "members": members,
        "sales": sales,
        "seed_seconds": round(seed_s, 2),
        **{
            f"{name}_ms": {
                "p50": round(nearest_rank(v, 0.50) * 1000, 4),
                "p99": round(nearest_rank(v, 0.99) * 1000, 4),
                "mean": round(statistics.fmean(v) * 1000, 4),
            }
            for name, v in steps.items()
        },
        "commits_per_s": round(sales / elapsed, 1),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--sales", type=int, default=2_000)
    args = parser.parse_args()
    print(json.dumps(run(args.members, args.sales), indent=2))


if __name__ == "__main__":
    main()
