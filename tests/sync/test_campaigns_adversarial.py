"""Campaigns and flash drops against a hostile or unlucky world: a member erased in the middle of a run,
campaigns in two time zones at one instant, the cap and the arms, a spec another host wrote, the timer's
reruns, a till that sees every coupon, a stolen till credential draining a drop, a revoked till, hostile
names in the command line's output and in the chart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hq import campaigns, members, outcomes, segments
from hq.db.engine import utc_now
from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import Reason
from tests.sync.segment_population import Population, generate, load
from tests.sync.test_campaigns import EVERYONE, MORNING, at, spec
from tests.sync.test_hq_pools import held, reasons, sale


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(seed=11, size=200)


@pytest.fixture
def hq(tmp_path: Path, population: Population) -> Iterator[HqStore]:
    store = HqStore(str(tmp_path / "hq" / "hq.db"))
    load(store.db, population)
    segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
    yield store
    store.close()


def test_the_timer_does_not_rerun_a_finished_day_and_a_rerun_adds_to_the_record(hq: HqStore) -> None:
    campaigns.save(hq.db, "welcome", spec(), "test")
    (first,) = campaigns.run_due(hq.db, MORNING)
    assert sum(first["issued"].values()) > 0
    assert campaigns.run_due(hq.db, at("2026-03-01T01:01:00Z")) == []  # the next tick: that day is done
    again = campaigns.run_one(hq.db, "welcome", MORNING, occasion_day=date(2026, 3, 1))  # an operator's rerun
    assert again is not None and again["issued"] == {}
    (run,) = campaigns.show(hq.db, "welcome")["runs"]
    assert run["counts"]["issued"] == first["issued"]  # the record keeps what the first run did
    assert run["counts"]["targeted"] == 2 * first["targeted"]


def test_a_member_erased_during_a_run_gets_nothing(hq: HqStore, monkeypatch: pytest.MonkeyPatch) -> None:
    campaigns.save(hq.db, "welcome", spec(control_share=0.0), "test")
    real = campaigns._pages
    victim: list[str] = []

    def pages(db: Any, s: Any, day: date) -> Iterator[list[tuple[str, str]]]:
        for chunk in real(db, s, day):
            if not victim:  # erased after the segment was read, before its chunk is decided
                victim.append(chunk[0][0])
                db.transact(lambda tx: members.erase(tx, victim[0], "dpo", utc_now()))
            yield chunk

    monkeypatch.setattr(campaigns, "_pages", pages)
    done = campaigns.run_one(hq.db, "welcome", MORNING)
    assert done is not None and done["gone"] == 1
    with hq.db.read() as tx:
        assert tx.all("SELECT coupon_id FROM coupons WHERE member_id = ? AND deleted = 0", victim) == []
        assert tx.all("SELECT arm FROM campaign_members WHERE member_id = ?", victim) == []


def test_erasure_blanks_the_kept_versions_of_the_members_coupons(hq: HqStore) -> None:
    campaigns.save(hq.db, "welcome", spec(control_share=0.0), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    with hq.db.read() as tx:
        member_id = str(tx.one("SELECT member_id FROM campaign_members WHERE coupon_id IS NOT NULL")[0])  # type: ignore[index]
    hq.db.transact(lambda tx: members.erase(tx, member_id, "dpo", utc_now()))
    with hq.db.read() as tx:
        left = tx.all("SELECT body FROM doc_versions WHERE body LIKE ?", [f"%{member_id}%"])
        others = tx.one("SELECT COUNT(*) FROM doc_versions WHERE kind = 'coupon' AND body <> '{}'")
    assert left == [] and others is not None and int(others[0]) > 0  # only the erased member's are blanked


def test_campaigns_in_two_time_zones_share_one_holdout(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.3, "days": 90}, "offer_cap": {"max": 0}})
    campaigns.save(hq.db, "a-tokyo", spec(timezone="Asia/Tokyo"), "test")
    campaigns.save(
        hq.db, "b-ny", spec(name="NY", timezone="America/New_York", schedule={"kind": "daily", "at": "00:00"}), "test"
    )
    campaigns.run_due(hq.db, at("2026-03-02T03:00:00Z"))  # 2 March in Tokyo, 1 March in New York
    campaigns.run_due(hq.db, at("2026-03-03T03:00:00Z"))
    with hq.db.read() as tx:
        (period,) = campaigns.periods(tx)
        offered = {str(r[0]) for r in tx.all("SELECT member_id FROM campaign_members WHERE arm <> 'control'")}
    assert offered and not any(period.holds(m) for m in offered)


def test_holdout_periods_follow_each_other_and_a_changed_holdout_starts_a_new_one(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.5, "days": 30}, "offer_cap": {"max": 0}})
    campaigns.save(hq.db, "welcome", spec(), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    campaigns.run_one(hq.db, "welcome", at("2026-04-05T01:00:00Z"))  # past the first period's end
    with hq.db.read() as tx:
        first, second = campaigns.periods(tx)
    assert first.ends == second.starts and first.seed != second.seed
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.0, "days": 90}, "offer_cap": {"max": 0}}, date(2026, 4, 10))
    later = campaigns.run_one(hq.db, "welcome", at("2026-04-11T01:00:00Z"))
    assert later is not None and later["held_out"] == 0  # share 0 takes effect the day it is set
    with hq.db.read() as tx:
        assert campaigns.periods(tx)[-1].ends == date(2026, 4, 10)


def test_the_control_group_cannot_be_computed_from_what_tills_see(hq: HqStore) -> None:
    campaigns.save(hq.db, "welcome", spec(control_share=0.5), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    s = campaigns.parse_spec(spec(control_share=0.5))
    with hq.db.read() as tx:
        rows = tx.all("SELECT member_id, arm FROM campaign_members WHERE campaign_id = 'welcome'")
        key = campaigns.secret(tx)
    guessed = sum(1 for m, arm in rows if campaigns.arm_of("welcome", s, str(m)) == arm)
    assert guessed < 0.8 * len(rows)  # without the chain's secret, about half right: a coin toss
    assert all(campaigns.arm_of("welcome", s, str(m), key) == arm for m, arm in rows)


def test_the_cap_keeps_capped_members_out_of_both_arms(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 1, "days": 1}})
    campaigns.save(hq.db, "a-first", spec(control_share=0.0), "test")
    campaigns.save(hq.db, "b-second", spec(name="B", control_share=0.3), "test")
    done = {d["campaign_id"]: d for d in campaigns.run_due(hq.db, MORNING)}
    b = done["b-second"]
    assert b["issued"] == {} and b["control"] == 0 and b["capped"] > 0


def test_the_cap_holds_across_time_zones(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 1, "days": 1}})
    campaigns.save(hq.db, "a-tokyo", spec(control_share=0.0, timezone="Asia/Tokyo"), "test")
    campaigns.save(
        hq.db,
        "b-ny",
        spec(name="NY", control_share=0.0, timezone="America/New_York", schedule={"kind": "daily", "at": "00:00"}),
        "test",
    )
    done = {d["campaign_id"]: d for d in campaigns.run_due(hq.db, at("2026-03-02T03:00:00Z"))}
    assert sum(done["a-tokyo"]["issued"].values()) > 0
    assert done["b-ny"]["issued"] == {} and done["b-ny"]["capped"] == done["a-tokyo"]["targeted"]


def test_a_spec_this_host_cannot_read_stops_no_other_campaign(hq: HqStore) -> None:
    from hq.scheduler import CampaignTimer

    campaigns.save(hq.db, "a-bad", spec(), "test")
    campaigns.save(hq.db, "b-good", spec(name="Good"), "test")
    bad = json.dumps({**spec(), "timezone": "Europe/Nowhere"})  # what another host's time zone data accepted
    hq.db.transact(lambda tx: tx.run("UPDATE campaigns SET spec = ? WHERE campaign_id = 'a-bad'", [bad]))
    timer = CampaignTimer(hq.db, 60, now=lambda: MORNING)
    failed, good = timer.tick()
    assert failed["campaign_id"] == "a-bad" and "timezone" in failed["error"] and timer.failures == 1
    assert good["campaign_id"] == "b-good" and sum(good["issued"].values()) > 0


def test_a_template_cannot_make_a_personal_offer_reusable_by_accident() -> None:
    s = campaigns.parse_spec(
        spec(variants=[{"variant": "a", "coupon": {"kind": "amount_off", "value": 1, "limits": {"global": 500}}}])
    )
    body = campaigns.coupon_body("c", s, s.variants[0], "M-1", "cmp-c-x", date(2026, 3, 1))
    assert body["limits"] == {"global": 500, "per_member": 1}
    twice = campaigns.parse_spec(
        spec(variants=[{"variant": "a", "coupon": {"kind": "amount_off", "value": 1, "limits": {"per_member": 2}}}])
    )
    assert campaigns.coupon_body("c", twice, twice.variants[0], "M-1", "x", date(2026, 3, 1))["limits"] == {
        "per_member": 2
    }


def test_hostile_names_are_refused_or_shown_as_text(hq: HqStore, tmp_path: Path) -> None:
    with pytest.raises(campaigns.CampaignInvalid):
        campaigns.parse_spec(spec(name="bell\x07"))  # would break the chart's XML
    from typer.testing import CliRunner

    from hq.cli import app

    campaigns.save(hq.db, "welcome", spec(name="Sale [/] [link=https://evil.example]click[/link]"), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    done = CliRunner().invoke(
        app, ["campaign", "report", "welcome", "--as-of", "2026-03-05", "--db", str(tmp_path / "hq" / "hq.db")]
    )
    assert done.exit_code == 0, done.output
    assert "Sale [/] [link=https://evil.example]click[/link]" in done.output
    svg = outcomes.as_svg(outcomes.campaign_report(hq.db, "welcome", date(2026, 3, 5)))
    assert "evil.example]click" in svg and "<a " not in svg


# -- flash drops against a stolen credential ----------------------------------------------------------


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[HqStore]:
    store = HqStore(str(tmp_path / "drop.db"), Settings(spend_needs_proof=False, recompute=False))
    for n in range(1, 5):
        store.add_terminal(f"T{n}", "S1", f"t{n}")
    store.upsert_member("M-1", "Aiko", "gold", 0)
    store.put_coupon({"coupon_id": "FLASH", "kind": "amount_off", "value": 100, "pool": "DROP"})
    yield store
    store.close()


def test_a_stolen_credential_redeeming_and_pulling_again_gets_at_most_its_ceiling(drop: HqStore) -> None:
    drop.create_pool("DROP", 20, chunk=2)
    seq = 0
    for _ in range(20):  # redeem everything allowed, pull, again
        drop.grant_pools("T1")
        allowed, used = held(drop).get("T1", (0, 0))
        for _ in range(allowed - used):
            seq += 1
            drop.ingest("T1", [sale("T1", seq)])
    ceiling = 2 * 20 // 4  # twice an even share of four tills
    assert held(drop)["T1"] == (ceiling, ceiling)
    assert drop.grant_pools("T2")[0].allowed > 0  # the honest tills' share stays theirs


def test_a_void_does_not_lift_the_block_of_a_till_that_went_beyond_its_allowance(drop: HqStore) -> None:
    drop.create_pool("DROP", 10, chunk=2)
    drop.grant_pools("T1")
    drop.ingest("T1", [sale("T1", n) for n in range(1, 6)])  # 3 beyond the allowance of 2
    assert [r for r, _ in reasons(drop)] == [Reason.POOL_ALLOCATION_EXCEEDED.value] * 3
    drop.ingest("T1", [sale("T1", 5 + n, kind="void", original_txn=f"T1-{n}") for n in (1, 2, 3)])
    assert drop.grant_pools("T1")[0].allowed == 2  # still blocked


def test_a_revoked_till_gives_back_what_it_did_not_use(drop: HqStore) -> None:
    drop.create_pool("DROP", 10, chunk=5)
    assert [a.allowed for a in drop.grant_pools("T1")] == [5]  # a chunk, its ceiling (twice an even share of 4)
    drop.ingest("T1", [sale("T1", 1)])
    drop.revoke_terminal("T1")
    assert drop.pool_state("DROP").allocated == 1  # what it used stays counted, the rest is back
    assert drop.grant_pools("T2")[0].allowed == 5


def test_a_head_office_clock_in_doubt_runs_no_campaign_early(tmp_path: Path) -> None:
    """Head office's clock jumps 400 days ahead for a moment: a one-off campaign planned ten months ahead is
    not run then (it would be recorded as done, and never run when planned), nor are the windows rolled to
    next year; it runs at its own moment."""
    import datetime as dt

    from hq.scheduler import CampaignTimer

    store = HqStore(str(tmp_path / "hq.db"))
    try:
        store.add_terminal("T1", "S1")
        load(store.db, generate(seed=11, size=40))
        segments.save(store.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**9}}, "t")
        real = dt.datetime.now(dt.UTC)
        planned = (real + dt.timedelta(days=300)).replace(tzinfo=None, microsecond=0, second=0)
        once = {
            "name": "New year",
            "segment": "everyone",
            "variants": [{"variant": "v", "coupon": {"kind": "amount_off", "value": 100}}],
            "schedule": {"kind": "once", "at": planned.isoformat(timespec="minutes")},
            "timezone": "UTC",
            "control_share": 0.0,
        }
        campaigns.save(store.db, "newyear", once, "test")
        with store.db.write() as tx:  # the till was heard a moment ago, agreeing with head office
            tx.run(
                "UPDATE terminals SET last_seen = ?, clock_offset = 0 WHERE terminal_id = 'T1'",
                [real.isoformat().replace("+00:00", "Z")],
            )
        timer = CampaignTimer(store.db, now=lambda: real + dt.timedelta(days=400))
        assert timer.tick() == [] and timer.clock_doubts == 1
        assert campaigns.show(store.db, "newyear")["runs"] == []
        with store.db.read() as tx:
            windows = tx.one("SELECT day FROM stats_windows WHERE id = 1")
        assert windows is None or windows[0] is None or str(windows[0]) <= real.date().isoformat()
        due = dt.datetime.combine(planned.date(), planned.time(), dt.UTC) + dt.timedelta(minutes=1)
        (ran,) = campaigns.run_due(store.db, due)  # at its own moment it runs
        assert ran["campaign_id"] == "newyear" and ran["issued"]
    finally:
        store.close()
