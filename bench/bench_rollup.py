"""Benchmark: what keeping the report roll-up costs ingest. Prints JSON, one object per figure.

    ingest     the journal of bench_ledger.py (sales of members at the stores of three merchants, one in four
               redeeming points, one in ten refunded in part, one in fifty voided) pushed through
               HqStore.ingest in batches of 500 from T terminals, with the roll-up kept and without it
               (``hq.rollup.add`` replaced by a no-op for the measurement: the ledger, the statistics and
               every other stage run in both), each on a fresh database, alternating for R rounds: the best
               entries/s of each and their ratio; then ``rollup.check`` over what the last run left (seconds,
               and whether it equals its statements)

Two settings, both reported: ``tuned`` (bench_ledger's defaults: 10,000 entries, 2,000 members, 6 terminals)
and ``untuned`` (6,000 entries, 20,000 members, 12 terminals; written down with this benchmark and never used
to choose anything).

    .venv/bin/python bench/bench_rollup.py [--engines postgres,sqlite] [--rounds 3] [--settings tuned,untuned]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_ledger  # noqa: E402

from hq import rollup  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

SETTINGS = {
    "tuned": {"entries": 10_000, "members": 2_000, "terminals": 6},
    "untuned": {"entries": 6_000, "members": 20_000, "terminals": 12},
}


def bench_engine(engine: str, url_of: Any, setting: str, rounds: int) -> dict[str, Any]:
    spec = SETTINGS[setting]
    batches = bench_ledger.journal(spec["terminals"], spec["entries"], spec["members"])
    kept = rollup.add
    best: dict[str, float] = {}
    last = None
    for round_ in range(rounds):  # alternating, each on a fresh database: the best of each is the figure
        for label in ("without_rollup", "with_rollup"):
            hq = bench_ledger.fresh(url_of(f"{setting}{label}{round_}"), spec["terminals"], spec["members"])
            try:
                if label == "without_rollup":
                    rollup.add = lambda tx, deltas: None  # type: ignore[assignment]
                took = bench_ledger.ingest(hq, batches)
            finally:
                rollup.add = kept  # type: ignore[assignment]
            best[label] = min(best.get(label, took), took)
            if label == "with_rollup" and round_ == rounds - 1:
                last = hq  # what the check reads
            else:
                hq.close()
    figures: dict[str, Any] = {"figure": "ingest", "engine": engine, "setting": setting, **spec, "rounds": rounds}
    for label, took in best.items():
        figures[f"{label}_entries_per_s"] = round(spec["entries"] / took)
    figures["with_over_without"] = round(best["with_rollup"] / best["without_rollup"], 3)
    assert last is not None
    with last.db.read() as tx:
        figures["rollup_rows"] = int(tx.one("SELECT COUNT(*) FROM report_days")[0])  # type: ignore[index]
        t0 = time.perf_counter()
        differences = rollup.check(tx)
        figures["check_seconds"] = round(time.perf_counter() - t0, 3)
    figures["equals_its_statements"] = not differences
    last.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="postgres,sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default="tuned,untuned")
    args = parser.parse_args()
    engines = args.engines.split(",")

    def machine() -> dict[str, Any]:
        return {"cpus": os.cpu_count(), "python": platform.python_version(), "load": round(os.getloadavg()[0], 1)}

    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            if "postgres" in engines:
                pg = PgServer(durable=True).start()
                try:
                    row = bench_engine(
                        "postgresql (fsync on)", lambda label, pg=pg: pg.fresh_schema(), setting, args.rounds
                    )
                    print(json.dumps(row | machine()), flush=True)
                finally:
                    pg.stop()
            if "sqlite" in engines:
                row = bench_engine("sqlite", lambda label: str(Path(tmp) / f"{label}.db"), setting, args.rounds)
                print(json.dumps(row | machine()), flush=True)


if __name__ == "__main__":
    main()
