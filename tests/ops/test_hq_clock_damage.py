"""Head office's timer against a wrong clock, damaged values and a full disk: what cannot be undone (a campaign
run, points expired) waits while its clock jumped ahead or went back; one value that no longer parses costs a
tick, not the timer (its thread went on neither expiring points nor running campaigns, with nothing counted); a
run refused by a full disk leaves nothing half issued and is made whole by a tick once there is room."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hq import campaigns, segments, stats
from hq.scheduler import CampaignTimer
from hq.store import HqStore
from tests.sync.segment_population import generate, load
from tests.waiting import wait_until

EVERYONE = {"where": {"kind": "visits", "days": 3660, "max": 10**9}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HqStore]:
    made = HqStore(str(tmp_path / "hq.db"))
    made.add_terminal("T1", "S1")
    load(made.db, generate(seed=11, size=40))
    segments.save(made.db, "everyone", "everyone", EVERYONE, "test")
    yield made
    made.close()


def heard(store: HqStore, at: dt.datetime) -> None:
    """The till's last push or pull, at ``at`` by head office's clock, agreeing with it."""
    with store.db.write() as tx:
        tx.run(
            "UPDATE terminals SET last_seen = ?, clock_offset = 0 WHERE terminal_id = 'T1'",
            [at.isoformat(timespec="milliseconds").replace("+00:00", "Z")],
        )


def offer(schedule: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "An offer",
        "segment": "everyone",
        "variants": [{"variant": "v", "coupon": {"kind": "amount_off", "value": 100}}],
        "schedule": schedule,
        "timezone": "UTC",
        "control_share": 0.0,
        "require_consent": False,
    }


def test_a_clock_twenty_days_ahead_runs_no_campaign_early(store: HqStore) -> None:
    """A virtual machine restored, a date typed wrong: the timer's first tick, before any till spoke again, finds
    head office a day past its last till and waits; once a till agrees with that time it runs."""
    real = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    planned = (real + dt.timedelta(days=10)).replace(tzinfo=None)
    campaigns.save(store.db, "later", offer({"kind": "once", "at": planned.isoformat(timespec="minutes")}), "test")
    heard(store, real)
    ahead = real + dt.timedelta(days=20)
    timer = CampaignTimer(store.db, now=lambda: ahead)
    assert timer.tick() == [] and timer.clock_doubts == 1
    assert campaigns.show(store.db, "later")["runs"] == []
    heard(store, ahead)  # a till's pull at that time, agreeing with it: the time is real
    assert [r["campaign_id"] for r in timer.tick()] == ["later"]


def test_a_clock_gone_back_a_day_runs_no_daily_campaign_again(store: HqStore) -> None:
    """Today's daily run done, then the clock goes back a day (a snapshot restored, a wrong NTP answer): no run
    for yesterday's occasion, which would give every member a second coupon the same real day."""
    campaigns.save(store.db, "daily", offer({"kind": "daily", "at": "00:00"}), "test")
    real = dt.datetime.now(dt.UTC)
    heard(store, real)
    today = CampaignTimer(store.db, now=lambda: real).tick()
    assert [r["run_key"] for r in today] == [real.date().isoformat()], today
    back = CampaignTimer(store.db, now=lambda: real - dt.timedelta(days=1))
    assert back.tick() == [] and back.clock_doubts == 1
    assert [r["run_key"] for r in campaigns.show(store.db, "daily")["runs"]] == [real.date().isoformat()]


def test_the_timer_outlives_a_value_that_no_longer_parses(store: HqStore) -> None:
    stats.roll_windows(store.db, dt.date.today())
    with store.db.write() as tx:  # a torn write, a hand edit: the members' windows' day is not a date
        tx.run("UPDATE stats_windows SET day = 'garbage'")
    timer = CampaignTimer(store.db, interval=0.05).start()
    try:
        wait_until(lambda: timer.failures >= 2, 20, "the timer ticking again after a failed tick")
        assert timer._thread.is_alive()
    finally:
        timer.stop()


def test_a_campaign_due_on_a_full_disk_issues_nothing_then_everything_once_there_is_room(small_disk: Path) -> None:
    """Head office's disk fills up as a daily campaign falls due: the tick issues no coupon and records no
    decision, counts the failure and goes on; once there is room again, the next tick issues every member's coupon, and the one after nothing more."""
    from tests.ops.helpers import fill

    made = HqStore(str(small_disk / "hq.db"))
    try:
        made.add_terminal("T1", "S1")
        load(made.db, generate(seed=11, size=40))
        segments.save(made.db, "everyone", "everyone", EVERYONE, "test")
        campaigns.save(made.db, "daily", offer({"kind": "daily", "at": "00:00"}), "test")
        real = dt.datetime.now(dt.UTC)
        heard(made, real)
        timer = CampaignTimer(made.db, now=lambda: real)

        def decided() -> tuple[int, int]:
            with made.db.read() as tx:
                found = tx.one("SELECT COUNT(*) FROM campaign_members WHERE campaign_id = 'daily'")
                coupons = tx.one("SELECT COUNT(*) FROM coupons WHERE coupon_id LIKE 'CMP-%'")
            assert found is not None and coupons is not None
            return int(found[0]), int(coupons[0])

        filler = fill(small_disk)
        refused = timer.tick()
        assert all("error" in run for run in refused), refused
        assert timer.failures >= 1 and decided() == (0, 0)
        filler.unlink()
        [run] = timer.tick()
        assert "error" not in run, run
        members, coupons = decided()
        assert members == run["targeted"] > 0 and coupons == members
        assert [r for r in timer.tick() if r.get("issued")] == [] and decided() == (members, coupons)
    finally:
        made.close()


def test_a_clock_that_jumps_hours_ahead_under_a_running_timer_waits_for_a_till_to_confirm_it(hq_url: str) -> None:
    """Head office runs, its till heard a moment ago; its clock then jumps ten hours ahead (a time zone taken for
    UTC, a bad NTP answer). Less than a day past the till, and no till heard since: the till comparisons alone
    find nothing wrong. The timer sees its clock moved ten hours while it waited one minute and waits, running
    nothing that cannot be undone, until a till speaks after the jump and agrees with that time."""
    made = HqStore(hq_url)
    try:
        made.add_terminal("T1", "S1")
        load(made.db, generate(seed=11, size=40))
        segments.save(made.db, "everyone", "everyone", EVERYONE, "test")
        real = dt.datetime.now(dt.UTC).replace(microsecond=0)
        planned = (real + dt.timedelta(hours=5)).replace(tzinfo=None, second=0)
        campaigns.save(made.db, "later", offer({"kind": "once", "at": planned.isoformat(timespec="minutes")}), "t")
        heard(made, real)
        clock = {"wall": real, "mono": 1000.0}
        timer = CampaignTimer(made.db, now=lambda: clock["wall"], monotonic=lambda: clock["mono"])
        assert timer.tick() == [] and timer.clock_doubts == 0  # nothing due yet, the clock trusted
        clock["wall"], clock["mono"] = real + dt.timedelta(hours=10), 1060.0  # one minute later: ten hours on
        assert timer.tick() == [] and timer.clock_doubts == 1
        assert timer.tick() == [] and timer.clock_doubts == 2  # still no till heard since the jump
        assert campaigns.show(made.db, "later")["runs"] == []
        heard(made, clock["wall"])  # a till's pull after the jump, agreeing with it: the time is real
        assert [r["campaign_id"] for r in timer.tick()] == ["later"]
    finally:
        made.close()
