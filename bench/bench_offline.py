"""Benchmark: how fast a till approves sales while head office is unreachable, as its backlog grows,
beside the same till online. Prints JSON.

A daemon in this process (simulated reader, no API), sync every 0.1 s with backoff up to 0.2 s (the
operations tests' settings: the harshest retry rate); sales rung through ``Daemon.sell``, 50 members.
Online: a head office in a thread on 127.0.0.1. Offline: a closed port.

    .venv/bin/python bench/bench_offline.py [--sales 1500] [--window 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq.api.server import start_in_thread  # noqa: E402
from hq.store import HqStore  # noqa: E402
from terminal.config import validate  # noqa: E402
from terminal.daemon import Daemon  # noqa: E402
from terminal.model import Basket, EarnRule, Line, Member  # noqa: E402
from tests.fixtures.hq import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402


def run(root: Path, online: bool, sales: int, window: int) -> dict[str, object]:
    hq = HqStore(str(root / "hq.db"))
    token = hq.add_terminal("T-BENCH", "S-001")
    members = [Member(f"M-{i}", "m", "basic", 1000) for i in range(50)]
    for m in members:
        hq.upsert_member(m.member_id, "m", "basic", 1000)
    server = start_in_thread(hq) if online else None
    url = server.url if server else f"http://127.0.0.1:{free_port()}"
    cfg = validate(
        {
            "terminal": {"id": "T-BENCH", "data_dir": str(root / "till")},
            "reader": {"devices": []},
            "hq": {"url": url, "token": token, "push_interval": 0.1, "backoff_max": 0.2},
            "api": {"enabled": False},
            "hotkeys": {"enabled": False},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    store = daemon.store
    assert store is not None
    if online:
        wait_until(lambda: store.counts()["members"] == 50, 30, "the cache pulled")
    else:
        store.apply_changes(members, [], [EarnRule("base", 1, 100)], 1)
    basket = Basket((Line("A", 1, 1250),))
    rates, began = [], time.perf_counter()
    for n in range(sales):
        daemon.sell(f"M-{n % 50}", basket)
        if (n + 1) % window == 0:
            now = time.perf_counter()
            rates.append(round(window / (now - began)))
            began = now
    pending = store.pending_count()
    daemon.stop()
    if server:
        server.stop()
    hq.close()
    return {
        "head_office": "reachable" if online else "unreachable",
        "sales_per_s_by_window": rates,
        "backlog_at_end": pending,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=1500)
    parser.add_argument("--window", type=int, default=300)
    args = parser.parse_args()
    out = {
        "benchmark": "offline",
        "sales": args.sales,
        "window": args.window,
        "machine": {"python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        out["online"] = run(Path(a), True, args.sales, args.window)
        out["offline"] = run(Path(b), False, args.sales, args.window)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
