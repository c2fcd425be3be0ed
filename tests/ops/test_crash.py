"""The crash harness, short version: 15 SIGKILLs of a selling daemon (the long run is
bench/bench_crash.py; its figures are in docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ops.crash import run_crash

KILLS = 15


def test_no_acknowledged_sale_is_lost_or_duplicated_across_kills(tmp_path: Path) -> None:
    report = run_crash(tmp_path, KILLS, seed=20261123)
    summary = json.dumps(report.as_dict(), indent=1)
    assert report.kills == KILLS
    assert report.acknowledged >= KILLS, f"too few sales to prove anything:\n{summary}"
    assert not report.lost, f"acknowledged sales lost:\n{summary}"
    assert not report.wrong_seq and not report.hq_duplicates, summary
    assert not report.local_gaps and not report.hq_gaps, summary
    assert report.local_integrity == "ok" and report.hq_integrity == "ok", summary
    assert report.journal_entries == report.hq_entries and report.final_stop_exit == 0, summary
    assert report.ok
