"""Benchmark: what opening head office's SQLite database costs now that it is checked whole (``PRAGMA
quick_check``, ``hq.db.sqlite.SqliteDb``) each time a command or ``hq serve`` opens a file that holds data.

A database of journal rows is made at each size (--sizes, in MB: 400-byte payloads under a text key, as
the journal holds them), then opened by ``SqliteDb`` and, in the same run, by a plain ``sqlite3.connect``
and one read (the floor); the median of --repeat opens of each, with the file in the page cache (a command
run again). Prints JSON, one object per size.

    .venv/bin/python bench/bench_hq_open.py [--sizes 10,100,500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hq.db.sqlite import SqliteDb

ROW_BYTES = 420


def make(path: Path, megabytes: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE journal (txn_id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
    rows = megabytes * 1_000_000 // ROW_BYTES
    conn.executemany("INSERT INTO journal VALUES (?, ?)", ((f"t{n:010d}", "x" * 400) for n in range(rows)))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def floor_open(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    conn.close()


def checked_open(path: Path) -> None:
    SqliteDb(str(path)).close()


def median_s(fn: Callable[[Path], None], path: Path, repeat: int) -> float:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(path)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"hq-{mb}.db"
            make(path, mb)
            checked_open(path)  # into the page cache once
            floor = median_s(floor_open, path, args.repeat)
            checked = median_s(checked_open, path, args.repeat)
            print(
                json.dumps(
                    {
                        "figure": "hq_open",
                        "file_mb": round(path.stat().st_size / 1e6),
                        "floor_open_ms": round(floor * 1000, 2),
                        "checked_open_ms": round(checked * 1000, 1),
                        "ms_per_gb": round((checked - floor) * 1000 / (path.stat().st_size / 1e9)),
                        "machine": {
                            "cpus": os.cpu_count(),
                            "python": platform.python_version(),
                            "load_1min": round(os.getloadavg()[0], 1),
                        },
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
