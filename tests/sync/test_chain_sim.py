"""The chain simulator (bench/chain_sim.py) in its quick mode on SQLite: campaigns run through a real head
office and real tills on one simulated clock, and the report recovers the effect the simulator planted;
control members never redeem (the till refuses the coupons they name); every sale reaches head office once.
Also: head office's own dates follow the clock it is given (what the simulation relies on)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hq import profiles
from hq.store import HqStore

ROOT = Path(__file__).resolve().parents[2]
QUICK = ("--quick", "--members", "900", "--holdout", "0", "--redeem", "0.5", "--seed", "11")
"""Large enough that a planted +150 % visit rate is told apart from nothing; no holdout, whose draw is
random by design, so the run is the same every time."""


def simulate(where: Path, *args: str) -> dict[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chain_sim.py"), *QUICK, *args, "--keep", str(where)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events: dict[str, list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        event = json.loads(line)
        events.setdefault(event["event"], []).append(event)
    return events


def hq_rows(where: Path, sql: str) -> list[tuple[Any, ...]]:
    store = HqStore(str(where / "hq" / "hq.db"), backup=False)
    try:
        with store.db.read() as tx:
            return tx.all(sql)
    finally:
        store.close()


@pytest.mark.slow
def test_the_report_recovers_the_planted_uplift_and_every_sale_arrives_once(tmp_path: Path) -> None:
    events = simulate(tmp_path, "--uplift", "1.5")
    truth = {t["variant"]: t for t in events["truth"]}
    big = truth["big"]
    assert big["decisions"] > 100
    assert big["low"] <= big["planted"] <= big["high"], big
    assert big["low"] > 0, big  # the interval tells the effect apart from none
    assert truth["small"]["low"] <= truth["small"]["planted"] <= truth["small"]["high"], truth["small"]
    checks = events["checks"][0]
    # every sale rung at a till reached head office, exactly once
    (journal,) = hq_rows(tmp_path, "SELECT COUNT(*), COUNT(DISTINCT txn_id) FROM journal WHERE kind = 'sale'")
    assert journal[0] == journal[1] == checks["sales_simulated"] == checks["journal_at_head_office"]
    # control members tried coupons (theirs never issued, or another member's) and the tills refused them all
    assert checks["control_tries"] > 0 and checks["control_accepted"] == 0
    assert set(checks["control_refused"]) <= {"unknown_coupon", "coupon_not_this_member"}
    assert sum(checks["control_refused"].values()) == checks["control_tries"]
    (used,) = hq_rows(
        tmp_path,
        "SELECT COUNT(*) FROM coupon_uses cu JOIN campaign_members cm ON cm.member_id = cu.member_id "
        "WHERE cm.arm = 'control' AND cu.coupon_id LIKE 'cmp-%'",
    )
    assert used[0] == 0
    # what the tills applied is what head office counts as redeemed
    arms = {a["arm"]: a for a in events["report"][0]["report"]["arms"]}
    assert {v: arms[v]["redeemed"] for v in ("big", "small")} == checks["redeemed_simulated"]
    assert checks["treated_refused"] == 0


@pytest.mark.slow
def test_with_no_planted_effect_the_interval_holds_zero(tmp_path: Path) -> None:
    events = simulate(tmp_path, "--uplift", "0")
    for truth in events["truth"]:
        assert truth["planted"] == 0.0
        assert truth["low"] < 0.0 < truth["high"], truth


def test_head_office_dates_follow_its_clock(tmp_path: Path) -> None:
    """A birthday after head office's today is refused, and a member's statistics default to its day."""
    store = HqStore(str(tmp_path / "hq.db"), clock=lambda: "2020-06-01T10:00:00.000Z", backup=False)
    try:
        store.upsert_member("M-1", "A", "basic", 0)
        with pytest.raises(profiles.ProfileRefused) as refused:
            store.update_profile("M-1", profiles.ProfileChange(birthday="2021-01-01"))
        assert refused.value.code == "bad_birthday"
        assert store.update_profile("M-1", profiles.ProfileChange(birthday="2019-01-01"))["birthday"] == "2019-01-01"
        assert store.member_stats("M-1").as_of == "2020-06-01"
        assert store.moment() == datetime(2020, 6, 1, 10, tzinfo=UTC)
    finally:
        store.close()
