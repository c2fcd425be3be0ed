"""Campaigns (hq/campaigns.py): the pure schedule (midnight, time zones, leap days), the arms, the spec's
refusals; then through a real head office on SQLite and PostgreSQL: issuing is idempotent, control and
held-out members never receive the offer, the cap holds across campaigns issuing at once, erasure takes a
member out of every future run, and what is issued reaches a till's next pull."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hq import campaigns, members, segments, stats
from hq.campaigns import CampaignInvalid, Daily, birthday_occasions, due, parse_spec
from hq.db.engine import utc_now
from hq.store import HqStore
from sync.protocol import ErrorCode
from terminal.coupons import parse_coupon
from tests.fixtures import entries
from tests.sync.segment_population import AS_OF, Population, eligible, generate, load

EVERYONE = {"kind": "visits", "days": 3660, "max": 10**9}


def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Welcome back",
        "segment": "everyone",
        "variants": [
            {"variant": "yen100", "coupon": {"kind": "amount_off", "value": 100}},
            {"variant": "bonus", "coupon": {"kind": "bonus_points", "value": 50}},
        ],
        "schedule": {"kind": "daily", "at": "09:00"},
        "timezone": "Asia/Tokyo",
        "control_share": 0.2,
    }
    base.update(kw)
    return base


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- pure --------------------------------------------------------------------------------------------


def test_a_daily_run_is_due_from_its_local_time_on_its_local_day() -> None:
    tokyo = parse_spec(spec())
    assert due(tokyo, at("2026-03-01T23:59:00Z")) is None  # 08:59 on 2 March in Tokyo
    found = due(tokyo, at("2026-03-02T00:00:00Z"))  # 09:00 on 2 March in Tokyo
    assert found is not None and (found.run_key, found.day) == ("2026-03-02", date(2026, 3, 2))
    # late in the UTC day it is already the next day in Tokyo: the local day decides, not UTC's
    late = due(tokyo, at("2026-03-02T15:30:00Z"))  # 00:30 on 3 March in Tokyo: before 09:00
    assert late is None
    ny = parse_spec(spec(timezone="America/New_York"))
    found = due(ny, at("2026-03-02T03:00:00Z"))  # 22:00 on 1 March in New York
    assert found is not None and found.day == date(2026, 3, 1)


def test_a_run_at_midnight_belongs_to_the_new_day() -> None:
    midnight = parse_spec(spec(schedule={"kind": "daily", "at": "00:00"}))
    assert due(midnight, at("2026-03-01T14:59:59Z")).day == date(2026, 3, 1)  # type: ignore[union-attr]
    assert due(midnight, at("2026-03-01T15:00:00Z")).day == date(2026, 3, 2)  # type: ignore[union-attr]


def test_once_runs_from_its_local_moment_and_the_window_bounds_every_run() -> None:
    once = parse_spec(spec(schedule={"kind": "once", "at": "2026-03-05T10:00"}))
    assert due(once, at("2026-03-05T00:59:00Z")) is None
    assert due(once, at("2026-03-05T01:00:00Z")).run_key == "once"  # type: ignore[union-attr]
    bounded = parse_spec(spec(starts="2026-03-03", ends="2026-03-04"))
    assert due(bounded, at("2026-03-02T01:00:00Z")) is None
    assert due(bounded, at("2026-03-03T01:00:00Z")) is not None
    assert due(bounded, at("2026-03-05T01:00:00Z")) is None


def test_a_leap_day_birthday_is_kept_on_28_february_in_other_years() -> None:
    assert ("02-29", "birthday:2027") in birthday_occasions(date(2027, 2, 28), 0)
    assert ("02-29", "birthday:2028") not in birthday_occasions(date(2028, 2, 28), 0)
    assert ("02-29", "birthday:2028") in birthday_occasions(date(2028, 2, 29), 0)
    # three days late (a run missed) still serves it, under the same occasion: no second offer
    assert ("02-29", "birthday:2027") in birthday_occasions(date(2027, 3, 3), 0)
    # ahead of the day, across the year end: the birthday's own year names the occasion
    assert ("01-01", "birthday:2027") in birthday_occasions(date(2026, 12, 29), 3)


def test_arms_are_stable_and_in_proportion() -> None:
    s = parse_spec(
        spec(
            control_share=0.25,
            variants=[
                {"variant": "a", "weight": 3, "coupon": {"kind": "amount_off", "value": 100}},
                {"variant": "b", "weight": 1, "coupon": {"kind": "amount_off", "value": 200}},
            ],
        )
    )
    ids = [f"M-{n}" for n in range(20_000)]
    arms = [campaigns.arm_of("c1", s, m) for m in ids]
    assert arms == [campaigns.arm_of("c1", s, m) for m in ids]
    share = {a: arms.count(a) / len(arms) for a in ("control", "a", "b")}
    assert abs(share["control"] - 0.25) < 0.015
    assert abs(share["a"] - 0.75 * 0.75) < 0.015 and abs(share["b"] - 0.75 * 0.25) < 0.015
    other = [campaigns.arm_of("c2", s, m) for m in ids]  # another campaign draws its own control group
    assert sum(1 for x, y in zip(arms, other, strict=True) if (x == "control") != (y == "control")) > 1000


@pytest.mark.parametrize(
    "change",
    [
        {"timezone": "Mars/Olympus"},
        {"schedule": {"kind": "weekly"}},
        {"schedule": {"kind": "daily", "at": "25:00"}},
        {"variants": []},
        {"variants": [{"variant": "control", "coupon": {"kind": "amount_off", "value": 1}}]},
        {"variants": [{"variant": "a", "coupon": {"kind": "mystery", "value": 1}}]},
        {"variants": [{"variant": "a", "coupon": {"kind": "amount_off", "value": 1, "member_id": "M-1"}}]},
        {"variants": [{"variant": "a", "coupon": {"kind": "percent_off", "value": 400}}]},
        {"control_share": 0.9},
        {"starts": "2026-03-05", "ends": "2026-03-01"},
        {"quantity": 0},
        {"surprise": True},
    ],
)
def test_a_bad_spec_is_refused_with_its_code(change: dict[str, Any]) -> None:
    with pytest.raises(CampaignInvalid) as refused:
        parse_spec(spec(**change))
    assert refused.value.code is ErrorCode.CAMPAIGN_MALFORMED


# -- through a real head office ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(seed=11, size=400)


@pytest.fixture
def hq(hq_url: str, population: Population) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    load(store.db, population)
    segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
    yield store
    store.close()


def decided(hq: HqStore, campaign_id: str | None = None) -> list[tuple[str, str, str, str | None, str]]:
    with hq.db.read() as tx:
        rows = tx.all(
            "SELECT campaign_id, member_id, arm, coupon_id, occasion FROM campaign_members"
            + (" WHERE campaign_id = ?" if campaign_id else "")
            + " ORDER BY campaign_id, member_id, occasion",
            [campaign_id] if campaign_id else [],
        )
    return [(str(r[0]), str(r[1]), str(r[2]), r[3], str(r[4])) for r in rows]


def consenting(population: Population) -> set[str]:
    return {m for m, channel, withdrawn in population.consents if channel == "marketing" and withdrawn is None}


MORNING = at("2026-03-01T01:00:00Z")  # 10:00 in Tokyo on 1 March


def test_a_run_decides_every_member_once_and_issues_only_to_the_treated(hq: HqStore, population: Population) -> None:
    campaigns.save(hq.db, "welcome", spec(), "test")
    first = campaigns.run_one(hq.db, "welcome", MORNING)
    assert first is not None
    rows = decided(hq, "welcome")
    targeted = eligible(population) & consenting(population)
    assert {m for _, m, *_ in rows} == targeted  # consent is required by default
    assert first["targeted"] == len(targeted) and sum(first["issued"].values()) + first["control"] == len(targeted)
    control = [r for r in rows if r[2] == "control"]
    assert control and all(r[3] is None for r in control)
    treated = [r for r in rows if r[2] != "control"]
    assert all(r[3] is not None for r in treated)
    # the coupons are personal, valid for the campaign's days from the local day of issue, and tills parse them
    with hq.db.read() as tx:
        coupons = {
            str(r[0]): (r[1], json.loads(str(r[2]))) for r in tx.all("SELECT coupon_id, member_id, body FROM coupons")
        }
    for _, member_id, _arm, coupon_id, _ in treated:
        owner, body = coupons[str(coupon_id)]
        assert owner == member_id and body["member_id"] == member_id and body["campaign"] == "welcome"
        assert (body["starts"], body["ends"]) == ("2026-03-01", "2026-03-08")
        assert parse_coupon(str(coupon_id), body).member_id == member_id
    control_ids = {m for _, m, arm, *_ in control}
    assert not control_ids & {owner for owner, _ in coupons.values()}
    # a rerun, later the same day or by a second timer, decides and issues nothing again
    again = campaigns.run_one(hq.db, "welcome", at("2026-03-01T05:00:00Z"))
    assert again is not None and again["issued"] == {} and again["already"] == len(targeted)
    assert decided(hq, "welcome") == rows
    with hq.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM coupons")[0] == len(treated)  # type: ignore[index]


def test_the_next_pull_carries_the_coupons_and_the_report_counts_what_reached_a_till(hq: HqStore) -> None:
    from hq import outcomes

    hq.add_terminal("T1", "S1", "token-T1")
    campaigns.save(hq.db, "welcome", spec(), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    treated = {r[3] for r in decided(hq) if r[3]}
    before = outcomes.campaign_report(hq.db, "welcome", date(2026, 3, 1))
    assert sum(a["delivered"] for a in before["arms"]) == 0
    cursor, pulled = 0, set()
    while True:  # a till pulls every page, naming what it applied
        hq.note_pull("T1", cursor)
        page = hq.changes(cursor, 500)
        pulled |= {c.coupon_id for c in page.coupons}
        cursor = page.cursor
        if not page.more:
            break
    hq.note_pull("T1", cursor)
    assert treated <= pulled
    after = outcomes.campaign_report(hq.db, "welcome", date(2026, 3, 1))
    assert sum(a["delivered"] for a in after["arms"]) == len(treated)
    assert {a["arm"]: a["delivered"] for a in after["arms"]}["control"] == 0
    # a till claiming to have applied versions not issued yet cannot mark tomorrow's coupons delivered
    hq.note_pull("T1", 10**12)
    campaigns.run_one(hq.db, "welcome", at("2026-03-02T01:00:00Z"))
    later = outcomes.campaign_report(hq.db, "welcome", date(2026, 3, 2))
    assert sum(a["delivered"] for a in later["arms"]) == len(treated)


def test_held_out_members_receive_no_campaign_at_all(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.3, "days": 90}, "offer_cap": {"max": 0}})
    campaigns.save(hq.db, "a", spec(), "test")
    campaigns.save(hq.db, "b", spec(name="Other"), "test")
    done = campaigns.run_due(hq.db, MORNING)
    assert [d["campaign_id"] for d in done] == ["a", "b"] and all(d["held_out"] > 0 for d in done)
    with hq.db.read() as tx:
        (period,) = campaigns.periods(tx)
    got = {m for _, m, *_ in decided(hq)}
    assert got and not any(period.holds(m) for m in got)
    assert done[0]["held_out"] == done[1]["held_out"]  # one chain-wide holdout, the same members for both


def test_the_offer_cap_holds_across_campaigns_run_at_once(hq_url: str, population: Population) -> None:
    store = HqStore(hq_url)
    try:
        load(store.db, population)
        segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
        campaigns.save_settings(store.db, {"offer_cap": {"max": 1, "days": 1}})
        for n in range(4):
            campaigns.save(store.db, f"c{n}", spec(name=f"C{n}", control_share=0.0), "test")
        errors: list[BaseException] = []

        def go(campaign_id: str) -> None:
            try:
                campaigns.run_one(store.db, campaign_id, MORNING)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(f"c{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        offers: dict[str, int] = {}
        for _, member_id, arm, coupon_id, _ in decided(store):
            if arm != "control":
                assert coupon_id is not None
                offers[member_id] = offers.get(member_id, 0) + 1
        assert offers and max(offers.values()) == 1
        # the next day the cap has room again
        nxt = campaigns.run_one(store.db, "c0", at("2026-03-02T01:00:00Z"))
        assert nxt is not None and sum(nxt["issued"].values()) > 0
    finally:
        store.close()


def test_offers_stamped_under_a_clock_that_ran_ahead_do_not_hold_the_cap(hq: HqStore, population: Population) -> None:
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 1, "days": 1}})
    campaigns.save(hq.db, "daily", spec(control_share=0.0), "test")
    first = campaigns.run_one(hq.db, "daily", MORNING)
    ahead = campaigns.run_one(hq.db, "daily", at("2027-03-01T01:00:00Z"))  # the clock a year ahead, for one run
    fixed = campaigns.run_one(hq.db, "daily", at("2026-03-02T01:00:00Z"))  # and corrected
    assert first is not None and ahead is not None and fixed is not None
    offered = sum(first["issued"].values())
    assert offered > 0 and sum(ahead["issued"].values()) == offered
    assert fixed["capped"] == 0 and sum(fixed["issued"].values()) == offered  # a day later, every member again


def test_a_run_stopped_half_way_leaves_a_record_of_every_decision_it_committed(
    hq: HqStore, population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaigns, "CHUNK", 40)
    campaigns.save(hq.db, "welcome", spec(), "test")
    pages = campaigns._pages

    def first_page_then_stopped(*args: Any) -> Iterator[list[tuple[str, str]]]:
        yield next(pages(*args))
        raise KeyboardInterrupt  # the process is stopped once its first chunk has committed

    monkeypatch.setattr(campaigns, "_pages", first_page_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        campaigns.run_one(hq.db, "welcome", MORNING)
    first = len(decided(hq, "welcome"))
    monkeypatch.setattr(campaigns, "_pages", pages)
    rerun = campaigns.run_one(hq.db, "welcome", MORNING)
    assert rerun is not None and rerun["already"] == first > 0
    with hq.db.read() as tx:
        (row,) = tx.all("SELECT counts, finished_at FROM campaign_runs WHERE campaign_id = 'welcome'")
    counts = json.loads(str(row[0]))
    assert row[1] is not None
    assert counts["control"] + sum(counts["issued"].values()) == len(decided(hq, "welcome")) > first


def test_birthday_campaigns_serve_the_leap_day_once(hq: HqStore, population: Population) -> None:
    campaigns.save(
        hq.db, "bday", spec(schedule={"kind": "birthday", "at": "06:00"}, control_share=0.0, timezone="UTC"), "test"
    )
    campaigns.run_one(hq.db, "bday", at("2027-02-28T07:00:00Z"))
    campaigns.run_one(hq.db, "bday", at("2027-03-01T07:00:00Z"))  # 1 March: its own birthdays, and catch-up
    rows = decided(hq, "bday")
    leap = {m for m, md in population.birth_md.items() if md == "02-29"} & eligible(population) & consenting(population)
    feb28 = (
        {m for m, md in population.birth_md.items() if md == "02-28"} & eligible(population) & consenting(population)
    )
    got = {(m, occ) for _, m, _, _, occ in rows}
    assert leap and {(m, "birthday:2027") for m in leap} <= got
    assert {(m, "birthday:2027") for m in feb28} <= got
    assert len(rows) == len({m for _, m, *_ in rows})  # nobody twice in one year


def test_after_visit_serves_each_last_visit_once(hq: HqStore, population: Population) -> None:
    campaigns.save(hq.db, "lapse", spec(schedule={"kind": "after_visit", "days": 30}, control_share=0.0), "test")
    day = AS_OF
    with hq.db.read() as tx:
        last = {m: str(life.last_visit) for m, life in stats.lifetimes(tx).items()}
    campaigns.run_one(hq.db, "lapse", at(f"{day.isoformat()}T01:00:00Z"))
    rows = decided(hq, "lapse")
    assert rows
    for _, member_id, _, _, occasion in rows:
        assert occasion == f"visit:{last[member_id]}"
        gap = (day - date.fromisoformat(last[member_id])).days
        assert 30 <= gap <= 30 + campaigns.CATCH_UP_DAYS


def test_after_visit_serves_a_last_visit_on_the_day_it_is_days_old(hq_url: str) -> None:
    """Ingest keeps ``last_visit`` as the sale's time (``2026-03-01T03:00:00.000Z``), not a day: a visit 30
    days before the run's day is served that day, not the day after."""
    store = HqStore(hq_url)
    try:
        store.add_terminal("T1", "S1", "token-T1")
        store.upsert_member("M-1", "Aiko", "basic", 0)
        sale = entries.wire_sale("M-1", 1000, "2026-03-01T03:00:00.000Z")
        store.ingest("T1", [sale])
        segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
        lapse = spec(
            schedule={"kind": "after_visit", "days": 30}, timezone="UTC", control_share=0.0, require_consent=False
        )
        campaigns.save(store.db, "lapse", lapse, "test")
        early = campaigns.run_one(store.db, "lapse", at("2026-03-30T07:00:00Z"))  # 29 days after the visit
        assert early is not None and early["targeted"] == 0
        done = campaigns.run_one(store.db, "lapse", at("2026-03-31T07:00:00Z"))  # 30 days after
        assert done is not None and done["targeted"] == 1
        assert [r[4] for r in decided(store, "lapse")] == ["visit:2026-03-01T03:00:00.000Z"]
    finally:
        store.close()


def test_after_visit_reads_the_last_visit_from_both_rows_of_lifetime_figures(hq_url: str) -> None:
    """A member's last visit is the later of its folded row's (``member_totals``) and the row of sales since the
    fold (``stats.RECENT_TOTALS``): a member back since the fold is not served for the folded visit, and is
    served for the new one when it is 30 days old; a member whose only visit is not folded yet is served (the
    run's own fold has nothing to do: the day was folded before those sales came)."""
    store = HqStore(hq_url)
    try:
        store.add_terminal("T1", "S1", "token-T1")
        for member in ("M-1", "M-2"):
            store.upsert_member(member, member, "basic", 0)
        store.ingest("T1", [entries.wire_sale("M-1", 1000, "2026-03-01T03:00:00.000Z")])
        stats.fold_recent_days(store.db, date(2026, 3, 31))  # the run's day folded: the sales below wait
        store.ingest("T1", [entries.wire_sale("M-1", 500, "2026-03-20T03:00:00.000Z", seq=2)])
        store.ingest("T1", [entries.wire_sale("M-2", 700, "2026-03-01T04:00:00.000Z", seq=3)])
        segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
        lapse = spec(
            schedule={"kind": "after_visit", "days": 30}, timezone="UTC", control_share=0.0, require_consent=False
        )
        campaigns.save(store.db, "lapse", lapse, "test")
        done = campaigns.run_one(store.db, "lapse", at("2026-03-31T07:00:00Z"))
        assert done is not None and done["targeted"] == 1
        assert [(r[1], r[4]) for r in decided(store, "lapse")] == [("M-2", "visit:2026-03-01T04:00:00.000Z")]
        later = campaigns.run_one(store.db, "lapse", at("2026-04-19T07:00:00Z"))
        assert later is not None and later["targeted"] == 1
        assert ("M-1", "visit:2026-03-20T03:00:00.000Z") in [(r[1], r[4]) for r in decided(store, "lapse")]
    finally:
        store.close()


def test_after_visit_counts_a_visit_from_a_till_whose_clock_is_a_week_ahead_when_head_office_held_it(
    hq_url: str,
) -> None:
    """A till whose clock runs a week ahead stamps its sale a week late: head office keeps the visit at the
    time it holds the sale was made (the till's clock corrected, never after it arrived), so the member's
    last visit is not pinned a week ahead, and a 30-day lapse campaign serves them 30 days after the real
    visit, once; its rerun, and a head office whose own clock ran a day ahead, serve nobody again."""
    store = HqStore(hq_url)
    try:
        store.add_terminal("T1", "S1", "token-T1")
        store.upsert_member("M-1", "Aiko", "basic", 0)
        now = datetime.now(UTC)
        ahead = (now + timedelta(days=7)).isoformat().replace("+00:00", "Z")
        store.ingest("T1", [entries.wire_sale("M-1", 1000, ahead)], clock=ahead)
        with store.db.read() as tx:
            last_visit = (stats.lifetime(tx, "M-1") or stats.Lifetime()).last_visit
        held = datetime.fromisoformat(str(last_visit).replace("Z", "+00:00"))
        assert abs((held - now).total_seconds()) < 600, last_visit  # the real moment, not the till's week ahead
        segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
        lapse = spec(
            schedule={"kind": "after_visit", "days": 30}, timezone="UTC", control_share=0.0, require_consent=False
        )
        campaigns.save(store.db, "lapse", lapse, "test")
        visit_day = held.date()
        early = campaigns.run_one(store.db, "lapse", at(f"{visit_day + timedelta(days=29)}T23:00:00Z"))
        assert early is not None and early["targeted"] == 0
        served = campaigns.run_one(store.db, "lapse", at(f"{visit_day + timedelta(days=30)}T07:00:00Z"))
        assert served is not None and served["targeted"] == 1
        for later in (30, 31):  # the day's rerun, and the next day's run (head office a day ahead, then set right)
            again = campaigns.run_one(store.db, "lapse", at(f"{visit_day + timedelta(days=later)}T12:00:00Z"))
            assert again is not None and again["targeted"] - again["already"] == 0, again
        assert [r[4] for r in decided(store, "lapse")] == [f"visit:{last_visit}"]
    finally:
        store.close()


def test_an_erased_member_leaves_the_reports_and_every_future_run(hq: HqStore) -> None:
    campaigns.save(hq.db, "welcome", spec(control_share=0.0), "test")
    campaigns.run_one(hq.db, "welcome", MORNING)
    victim = decided(hq)[0][1]
    hq.db.transact(lambda tx: members.erase(tx, victim, "test", utc_now()))
    assert victim not in {m for _, m, *_ in decided(hq)}
    campaigns.run_one(hq.db, "welcome", at("2026-03-02T01:00:00Z"))
    assert victim not in {m for _, m, *_ in decided(hq)}
    with hq.db.read() as tx:
        assert tx.all("SELECT coupon_id FROM coupons WHERE member_id = ? AND deleted = 0", [victim]) == []


def test_a_paused_or_ended_campaign_does_not_run(hq: HqStore) -> None:
    campaigns.save(hq.db, "welcome", spec(), "test")
    campaigns.change_state(hq.db, "welcome", "paused")
    assert campaigns.run_due(hq.db, MORNING) == []
    campaigns.change_state(hq.db, "welcome", "ended")
    with pytest.raises(CampaignInvalid) as refused:
        campaigns.change_state(hq.db, "welcome", "active")
    assert refused.value.code is ErrorCode.CAMPAIGN_ENDED
    with pytest.raises(CampaignInvalid):
        campaigns.save(hq.db, "welcome", spec(name="changed"), "test")
    assert decided(hq) == []


def test_a_campaign_on_an_unknown_segment_is_refused(tmp_path: Path) -> None:
    store = HqStore(str(tmp_path / "hq.db"))
    try:
        with pytest.raises(segments.UnknownSegment):
            campaigns.save(store.db, "welcome", spec(segment="nobody"), "test")
    finally:
        store.close()


def test_once_is_not_repeated_by_later_timers(hq: HqStore) -> None:
    campaigns.save(hq.db, "drop", spec(schedule={"kind": "once", "at": "2026-03-01T09:30"}), "test")
    first = campaigns.run_due(hq.db, MORNING)
    assert len(first) == 1
    assert campaigns.run_due(hq.db, at("2026-03-02T01:00:00Z")) == []
    assert Daily(kind="daily").at == "06:00"
    (run,) = campaigns.show(hq.db, "drop")["runs"]  # one run, finished, its record what the first call did
    assert run["run_key"] == "once" and run["finished_at"] is not None
    assert run["counts"]["issued"] == first[0]["issued"]


def test_a_campaign_coupon_works_only_for_its_member_in_its_days_and_once() -> None:
    """A dishonest cashier cannot move an offer to another member, nor use it after its days or twice."""
    from terminal.coupons import Offer, refusal
    from terminal.loyalty import SaleContext
    from terminal.model import Basket, Line

    s = parse_spec(spec())
    coupon_id = campaigns.coupon_id_of("welcome", "M-1", "2026-03-01")
    body = campaigns.coupon_body("welcome", s, s.variants[0], "M-1", coupon_id, date(2026, 3, 1))
    coupon = parse_coupon(coupon_id, body)
    basket = Basket((Line("SKU-1", 1, 1000),))

    def why(member: str | None, day: str, used_by_member: int = 0) -> str | None:
        ctx = SaleContext(datetime.fromisoformat(f"{day}T12:00"), "S1", member)
        return refusal(Offer(coupon, used_by_member=used_by_member), basket, ctx)

    assert why("M-1", "2026-03-01") is None and why("M-1", "2026-03-07") is None
    assert why("M-2", "2026-03-02") == "coupon_not_this_member"
    assert why(None, "2026-03-02") == "coupon_members_only"
    assert why("M-1", "2026-03-08") == "coupon_expired"
    assert why("M-1", "2026-02-28") == "coupon_not_yet_valid"
    assert why("M-1", "2026-03-02", used_by_member=1) == "coupon_already_used"


def test_a_run_cut_half_way_resumes_without_issuing_twice(hq: HqStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Head office killed (or its disk full) in the middle of a run: what committed stays, the rerun does the rest."""
    from hq.errors import StorageFailed

    monkeypatch.setattr(campaigns, "CHUNK", 25)
    campaigns.save(hq.db, "welcome", spec(), "test")
    real = campaigns._decide_chunk
    calls = {"n": 0}

    def failing(tx: Any, **kw: Any) -> campaigns.RunCounts:
        calls["n"] += 1
        if calls["n"] == 3:
            raise StorageFailed("database or disk is full")
        return real(tx, **kw)

    monkeypatch.setattr(campaigns, "_decide_chunk", failing)
    with pytest.raises(StorageFailed):
        campaigns.run_one(hq.db, "welcome", MORNING)
    half = decided(hq, "welcome")
    assert len(half) == 50  # two chunks committed, the third rolled back whole
    monkeypatch.setattr(campaigns, "_decide_chunk", real)
    rest = campaigns.run_one(hq.db, "welcome", MORNING)
    assert rest is not None and rest["already"] == 50
    rows = decided(hq, "welcome")
    assert len(rows) == len({m for _, m, *_ in rows}) == rest["targeted"]
    with hq.db.read() as tx:
        coupons = tx.one("SELECT COUNT(*) FROM coupons")[0]  # type: ignore[index]
        finished = tx.one("SELECT finished_at FROM campaign_runs WHERE campaign_id = 'welcome'")[0]  # type: ignore[index]
    assert coupons == sum(1 for r in rows if r[3] is not None) and finished is not None


@pytest.mark.parametrize(
    ("zone", "first", "second", "day"),
    [
        # the day head office came back (14:00 in Tokyo), then the next day's run at 09:00:30
        ("Asia/Tokyo", "2026-03-01T05:00:00Z", "2026-03-02T00:00:30Z", "2026-03-02"),
        # a tick 30 s earlier in its minute than the day before
        ("Asia/Tokyo", "2026-03-01T00:00:40Z", "2026-03-02T00:00:10Z", "2026-03-02"),
        # 09:00 in Berlin on the day the clocks go forward: 23 hours after 09:00 the day before
        ("Europe/Berlin", "2026-03-28T08:00:20Z", "2026-03-29T07:00:05Z", "2026-03-29"),
    ],
)
def test_a_daily_campaign_is_not_capped_by_its_own_offer_of_the_day_before(
    hq: HqStore, population: Population, zone: str, first: str, second: str, day: str
) -> None:
    """One offer a day means one each local day: a run that came late (head office down until the afternoon,
    a timer tick later in its minute) or a 23-hour day does not hold every member's cap over the next run."""
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 1, "days": 1}})
    campaigns.save(hq.db, "daily", spec(control_share=0.0, timezone=zone), "test")
    day1 = campaigns.run_one(hq.db, "daily", at(first))
    day2 = campaigns.run_one(hq.db, "daily", at(second))
    assert day1 is not None and day2 is not None and day2["day"] == day
    offered = sum(day1["issued"].values())
    assert offered > 0
    assert day2["capped"] == 0 and sum(day2["issued"].values()) == offered
    # another campaign an hour after the late run still finds each member's cap used by it
    campaigns.save(
        hq.db,
        "other",
        spec(control_share=0.0, timezone=zone, schedule={"kind": "once", "at": "2000-01-01T00:00"}),
        "test",
    )
    other = campaigns.run_one(hq.db, "other", at(second) + timedelta(hours=1))
    assert other is not None and other["capped"] == offered and other["issued"] == {}


def test_windows_a_campaign_east_of_utc_rolled_to_its_own_day_are_not_taken_for_a_clock_ahead(
    hq: HqStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A campaign in Tokyo at 06:00 runs at 21:00 UTC the day before and rolls the windows to its own local day;
    the timer's next tick asks for UTC's day, one earlier. Nothing ran ahead: no warning tells the operator to
    build the windows again backwards (a whole build, for nothing)."""
    from hq import stats
    from hq.scheduler import CampaignTimer

    campaigns.save(hq.db, "early", spec(schedule={"kind": "daily", "at": "06:00"}), "test")
    moments = iter([at("2026-03-01T21:00:30Z"), at("2026-03-01T21:01:30Z"), at("2026-03-01T21:02:30Z")])
    timer = CampaignTimer(hq.db, now=lambda: next(moments))
    with caplog.at_level("WARNING"):
        (ran,) = timer.tick()
        assert ran["day"] == "2026-03-02" and timer.tick() == [] and timer.tick() == []
    with hq.db.read() as tx:
        assert stats.windows_day(tx) == date(2026, 3, 2)
    assert timer.failures == 0
    assert not [r.getMessage() for r in caplog.records if r.levelno >= 30], caplog.text


def test_a_once_missed_by_head_office_runs_when_it_is_back_with_coupons_valid_from_then(hq: HqStore) -> None:
    """A one-off planned for 5 March, head office down until the 20th: it runs when head office is back, and
    its coupons are valid for their ``valid_days`` from that day (not gone a week before they were issued),
    each member measured from the day it was decided; past the campaign's ``ends`` it does not run at all."""
    campaigns.save(hq.db, "drop", spec(schedule={"kind": "once", "at": "2026-03-05T10:00"}), "test")
    campaigns.save(hq.db, "ended", spec(schedule={"kind": "once", "at": "2026-03-05T10:00"}, ends="2026-03-10"), "test")
    done = campaigns.run_due(hq.db, at("2026-03-20T01:00:00Z"))  # 10:00 on 20 March in Tokyo
    assert [(r["campaign_id"], r["run_key"], r["day"]) for r in done] == [("drop", "once", "2026-03-20")]
    with hq.db.read() as tx:
        bodies = [json.loads(str(r[0])) for r in tx.all("SELECT body FROM coupons")]
        days = {(str(r[0]), str(r[1])) for r in tx.all("SELECT DISTINCT day, until_day FROM campaign_members")}
        (first_stamp,) = tx.one("SELECT MIN(issued_at) FROM campaign_members")  # type: ignore[misc]
    assert str(first_stamp) >= "2026-03-19T15:00:00.000Z"  # the offer counts in the cap from the day it was made
    assert bodies and {(b["starts"], b["ends"]) for b in bodies} == {("2026-03-20", "2026-03-27")}
    assert days == {("2026-03-20", "2026-03-27")}
    assert campaigns.run_due(hq.db, at("2026-03-21T01:00:00Z")) == []  # once is once


def test_a_holdout_drawn_under_a_clock_a_year_ahead_never_overlaps_the_periods_drawn_after_it(hq: HqStore) -> None:
    """A check-in decided at ingest (head office's clock a year ahead: pushes are taken whatever the clock) draws
    the holdout period of next year; once the clock is right, the periods drawn day after day end where that
    one starts, so no day is in two periods and the members held out do not change within a period."""
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.3, "days": 30}})
    settings = campaigns.settings_of(hq.db)

    def draw(day: date) -> campaigns.Period | None:
        return hq.db.transact(lambda tx: campaigns.holdout_period(tx, settings, day))

    draw(date(2026, 3, 1))
    ahead = draw(date(2027, 3, 1))  # the clock a year ahead, for a moment
    day = date(2026, 3, 2)
    while day <= date(2027, 4, 30):  # the clock set right: a run each day
        held = draw(day)
        assert held is not None and held.starts <= day < held.ends
        if ahead is not None and ahead.starts <= day < ahead.ends:
            assert held == ahead  # the period drawn ahead holds its days, with its members
        day += timedelta(days=1)
    with hq.db.read() as tx:
        spans = [(p.starts, p.ends) for p in campaigns.periods(tx)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # none overlaps the next


def test_a_once_at_a_time_a_daylight_saving_gap_skips_runs_when_the_wall_clock_passes_it_as_a_daily_does() -> None:
    """02:30 does not exist in Berlin on 29 March 2026 (02:00 becomes 03:00): a run at 02:30 that day is due
    from 03:00 local time, whether it is a daily run or a one-off; in the repeated hour of 25 October a one-off
    at 02:30 runs at the first 02:30, once."""
    daily = parse_spec(spec(timezone="Europe/Berlin", schedule={"kind": "daily", "at": "02:30"}))
    once = parse_spec(spec(timezone="Europe/Berlin", schedule={"kind": "once", "at": "2026-03-29T02:30"}))
    assert due(daily, at("2026-03-29T00:59:00Z")) is None and due(once, at("2026-03-29T00:59:00Z")) is None
    for schedule in (daily, once):  # 03:00:30 local time, summer time
        found = due(schedule, at("2026-03-29T01:00:30Z"))
        assert found is not None and found.day == date(2026, 3, 29)
    autumn = parse_spec(spec(timezone="Europe/Berlin", schedule={"kind": "once", "at": "2026-10-25T02:30"}))
    assert due(autumn, at("2026-10-25T00:29:00Z")) is None  # 02:29 summer time
    found = due(autumn, at("2026-10-25T00:30:00Z"))  # the first 02:30
    assert found is not None and found.run_key == "once" and found.day == date(2026, 10, 25)
    # a leap day's one-off is due on its day, in a leap year only (the spec refuses 29 February 2027)
    leap = parse_spec(spec(timezone="Europe/Berlin", schedule={"kind": "once", "at": "2028-02-29T09:00"}))
    assert due(leap, at("2028-02-29T07:59:00Z")) is None and due(leap, at("2028-02-29T08:00:00Z")) is not None
    with pytest.raises(CampaignInvalid):
        parse_spec(spec(schedule={"kind": "once", "at": "2027-02-29T09:00"}))
