"""Points variants (hq/campaigns.py, docs/campaigns.md): a variant that credits points when a member is
decided into it, through ``hq.adjustments`` (once per campaign, member and occasion), on SQLite and
PostgreSQL. The spec's refusals; a run credits the treated only, once however often it reruns, with the
adjustment, the audit record and the report's counts; a check-in credits once a member, store and day within
the store's cap, never a control, blocked or erased member, whatever a stolen till credential sends; the
wallet's activity shows the credit; two runs deciding the same members at once credit once (PostgreSQL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest

from hq import campaigns, erasure, ledger, outcomes, segments
from hq.campaigns import CampaignInvalid, parse_spec
from hq.store import HqStore
from hq.wallet import views
from sync.protocol import ErrorCode
from tests.sync.test_checkin import TillKey, check_in, count, points

EVERYONE = {"kind": "visits", "days": 3660, "max": 10**9}
BONUS = 300
MORNING = datetime.fromisoformat("2026-03-01T01:00:00+00:00")  # 10:00 in Tokyo on 1 March
MEMBERS = [f"M-{n:02d}" for n in range(40)]


def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Points for coming back",
        "segment": "everyone",
        "variants": [{"variant": "pts", "points": BONUS}],
        "schedule": {"kind": "daily", "at": "09:00"},
        "timezone": "Asia/Tokyo",
        "control_share": 0.3,
        "require_consent": False,
    }
    base.update(kw)
    return base


# -- pure --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        {"variant": "a"},  # neither
        {"variant": "a", "points": 10, "coupon": {"kind": "amount_off", "value": 100}},  # both
        {"variant": "a", "points": 0},
        {"variant": "a", "points": -5},
        {"variant": "a", "points": campaigns.MAX_POINTS + 1},
        {"variant": "a", "points": "100"},
        {"variant": "a", "points": True},
        {"variant": "a", "points": 1.5},
    ],
)
def test_a_variant_has_exactly_one_offer_and_its_points_are_bounded(variant: dict[str, Any]) -> None:
    with pytest.raises(CampaignInvalid) as refused:
        parse_spec(spec(variants=[variant]))
    assert refused.value.code is ErrorCode.CAMPAIGN_MALFORMED


def test_points_variants_are_read_and_coupon_specs_keep_their_stored_text() -> None:
    held = parse_spec(spec(variants=[{"variant": "a", "points": campaigns.MAX_POINTS}]))
    assert held.variants[0].points == campaigns.MAX_POINTS and held.variants[0].coupon is None
    coupon = parse_spec(spec(variants=[{"variant": "a", "coupon": {"kind": "amount_off", "value": 100}}]))
    assert "points" not in campaigns.canonical(coupon)  # a spec stored before points variants reads the same
    with pytest.raises(CampaignInvalid) as refused:  # a flash drop's quantity bounds coupons, not credits
        parse_spec(spec(quantity=100))
    assert refused.value.code is ErrorCode.CAMPAIGN_MALFORMED
    one = campaigns.points_id_of("c", "M-1", "2026-03-01")
    assert one == campaigns.points_id_of("c", "M-1", "2026-03-01") != campaigns.points_id_of("c", "M-1", "2026-03-02")
    assert one.startswith(campaigns.POINTS_PREFIX) and not one.startswith("cmp-")


# -- through a real head office ----------------------------------------------------------------------


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    for member in MEMBERS:
        store.upsert_member(member, member, "basic", 0)
    segments.save(store.db, "everyone", "everyone", {"where": EVERYONE}, "test")
    yield store
    store.close()


def decided(hq: HqStore, campaign_id: str) -> dict[str, tuple[str, str | None]]:
    with hq.db.read() as tx:
        rows = tx.all("SELECT member_id, arm, coupon_id FROM campaign_members WHERE campaign_id = ?", [campaign_id])
    return {str(r[0]): (str(r[1]), r[2]) for r in rows}


def balances(hq: HqStore) -> dict[str, int]:
    return {m: points(hq, m) for m in MEMBERS}


def test_a_run_credits_the_treated_once_through_the_adjustments(hq: HqStore) -> None:
    campaigns.save(hq.db, "back", spec(), "test")
    done = campaigns.run_one(hq.db, "back", MORNING)
    assert done is not None
    rows = decided(hq, "back")
    treated = {m for m, (arm, _) in rows.items() if arm == "pts"}
    control = {m for m, (arm, _) in rows.items() if arm == "control"}
    assert treated and control and treated | control == set(MEMBERS)
    assert done["issued"] == {"pts": len(treated)} and done["control"] == len(control)
    assert balances(hq) == {m: BONUS if m in treated else 0 for m in MEMBERS}
    for member in treated:  # the decision names the credit; no coupon is issued
        assert rows[member][1] == campaigns.points_id_of("back", member, "2026-03-01")
    assert all(rows[m][1] is None for m in control)
    assert count(hq, "SELECT COUNT(*) FROM coupons") == 0
    with hq.db.read() as tx:
        made = tx.all("SELECT adjustment_id, member_id, points, reason, requested_by, approved_by FROM adjustments")
        logged = tx.all("SELECT actor, target, details FROM audit_log WHERE action = 'campaign_points'")
    assert {str(r[1]) for r in made} == treated
    for adjustment_id, member, moved, reason, requested_by, approved_by in made:
        assert adjustment_id == rows[str(member)][1] and int(moved) == BONUS
        assert "back" in str(reason) and "2026-03-01" in str(reason)
        assert (requested_by, approved_by) == ("campaign:back", "campaign:back")  # launched by a command
    assert sorted(str(r[1]) for r in logged) == sorted(treated) and {r[0] for r in logged} == {"campaign:back"}
    # rerun by a second timer, and by an operator for the same day: nothing is credited twice
    again = campaigns.run_one(hq.db, "back", datetime.fromisoformat("2026-03-01T05:00:00+00:00"))
    rerun = campaigns.run_one(hq.db, "back", MORNING, occasion_day=date(2026, 3, 1))
    assert again is not None and rerun is not None and again["issued"] == {} == rerun["issued"]
    assert balances(hq) == {m: BONUS if m in treated else 0 for m in MEMBERS}
    assert count(hq, "SELECT COUNT(*) FROM adjustments") == len(treated)
    # the next day is another occasion: credited again (the offer cap is one a day)
    campaigns.run_one(hq.db, "back", datetime.fromisoformat("2026-03-02T01:00:00+00:00"))
    assert balances(hq) == {m: 2 * BONUS if m in treated else 0 for m in MEMBERS}
    with hq.db.read() as tx:  # every credit is in the books: balances are the ledger's sums
        assert ledger.check(tx) == []
        assert tx.one("SELECT COUNT(*) FROM ledger_lots")[0] == 2 * len(treated)


def test_the_report_counts_a_credit_issued_and_redeemed_and_delivered_once_a_till_pulled_it(hq: HqStore) -> None:
    hq.add_terminal("T1", "S1", "token-T1")
    campaigns.save(hq.db, "back", spec(), "test")
    campaigns.run_one(hq.db, "back", MORNING)
    treated = {m for m, (arm, _) in decided(hq, "back").items() if arm == "pts"}
    arms = {a["arm"]: a for a in outcomes.campaign_report(hq.db, "back", date(2026, 3, 1))["arms"]}
    assert (arms["pts"]["issued"], arms["pts"]["redeemed"], arms["pts"]["delivered"]) == (len(treated),) * 2 + (0,)
    assert (arms["control"]["issued"], arms["control"]["redeemed"]) == (0, 0)
    cursor, pulled = 0, {}
    while True:  # the till learns the new balances by pull, as for any adjustment
        page = hq.changes(cursor, 500)
        pulled |= {m.member_id: m.points for m in page.members}
        cursor = page.cursor
        if not page.more:
            break
    hq.note_pull("T1", cursor)
    assert {m: pulled[m] for m in treated} == dict.fromkeys(treated, BONUS)
    arms = {a["arm"]: a for a in outcomes.campaign_report(hq.db, "back", date(2026, 3, 1))["arms"]}
    assert arms["pts"]["delivered"] == len(treated) and arms["control"]["delivered"] == 0


def test_the_wallet_activity_shows_the_credit(hq: HqStore) -> None:
    campaigns.save(hq.db, "back", spec(control_share=0), "test")
    campaigns.run_one(hq.db, "back", MORNING)
    shown = views.activity(hq, "M-00")
    assert [(v.kind, v.points) for v in shown] == [("bonus", BONUS)]


# -- check-ins: what a stolen till credential can and cannot make ------------------------------------


def checkin_points(hq: HqStore, **kw: Any) -> None:
    schedule = {"kind": "checkin", "max_per_store_day": 3}
    campaigns.save(hq.db, "visit", spec(schedule=schedule, timezone="UTC", **kw), "test")


def test_check_ins_and_replays_credit_at_most_once_a_store_day_within_the_cap(hq: HqStore) -> None:
    """A thief with a till's token and claim key taps every member at the door, replays the taps and signs
    code after code: each member is credited at most once a store and day, the store's cap bounds the day."""
    checkin_points(hq, control_share=0)
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 0}})  # no chain-wide cap: the store's cap alone
    stolen = TillKey(hq, "T-1")
    for _ in range(3):
        for member in MEMBERS[:10]:
            stolen.door_tap(member)
        campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    for member in MEMBERS[:12]:  # and the wallet path, with fresh codes, counts in the same cap
        try:
            check_in(hq, member, stolen.code())
        except Exception as exc:  # noqa: BLE001 - checked: only "checked in already"
            assert getattr(exc, "code", None) is ErrorCode.CHECKIN_USED
    credited = {m: p for m, p in balances(hq).items() if p}
    assert len(credited) == 3 and set(credited.values()) == {BONUS}
    assert count(hq, "SELECT COUNT(*) FROM adjustments") == 3
    # the wallet shows a points reward to the member it credited, at once
    other = TillKey(hq, "T-2", "S-2")
    done = check_in(hq, "M-30", other.code())
    assert [r.points for r in done.rewards] == [BONUS] and points(hq, "M-30") == BONUS


def test_a_check_in_campaign_crediting_points_needs_the_store_day_cap(hq: HqStore) -> None:
    """Without ``max_per_store_day`` a thief with one till's token would credit points to every member it names
    at the door, each day (to members of its own making too, joined from its own receipts): such a campaign is
    refused; with the cap, or with coupons (worth nothing until a sale uses them under the rules), it is not."""
    with pytest.raises(CampaignInvalid) as refused:
        campaigns.save(hq.db, "visit", spec(schedule={"kind": "checkin"}, timezone="UTC"), "test")
    assert refused.value.code is ErrorCode.CAMPAIGN_MALFORMED and "max_per_store_day" in str(refused.value)
    with pytest.raises(CampaignInvalid):  # points beside a coupon variant credit as much
        coupon = {"variant": "c", "coupon": {"kind": "amount_off", "value": 100}}
        parse_spec(spec(schedule={"kind": "checkin"}, variants=[coupon, {"variant": "p", "points": 5}]))
    parse_spec(
        spec(schedule={"kind": "checkin"}, variants=[{"variant": "c", "coupon": {"kind": "bonus_points", "value": 50}}])
    )
    checkin_points(hq)


def test_a_check_in_campaign_stored_uncapped_before_the_rule_credits_nothing(hq: HqStore) -> None:
    """A points check-in campaign stored by an earlier release without ``max_per_store_day`` is read by
    today's rules where it is served: a stolen till naming every member at the door credits nobody, and no
    writer stores such a spec again; saved again with the cap it is served within it."""
    uncapped = spec(schedule={"kind": "checkin"}, timezone="UTC", control_share=0)
    stamp = "2026-01-01T00:00:00.000Z"
    hq.db.transact(  # as an earlier release stored it
        lambda tx: tx.run(
            "INSERT INTO campaigns (campaign_id, name, spec, state, created_by, created_at, updated_at, version) "
            "VALUES ('visit', 'old', ?, 'active', 'test', ?, ?, 1)",
            [json.dumps(uncapped), stamp, stamp],
        )
    )
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 0}})
    stolen = TillKey(hq, "T-1")
    for member in MEMBERS[:10]:
        stolen.door_tap(member)
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    assert check_in(hq, MEMBERS[10], stolen.code()).rewards == []
    assert count(hq, "SELECT COUNT(*) FROM adjustments") == 0 and not any(balances(hq).values())
    with pytest.raises(CampaignInvalid) as refused:  # nor can a spec skip the rules on its way in
        hq.db.transact(
            lambda tx: campaigns.put(tx, "other", campaigns.CampaignSpec.model_validate(uncapped), "test", stamp)
        )
    assert refused.value.code is ErrorCode.CAMPAIGN_MALFORMED
    with hq.db.read() as tx, pytest.raises(CampaignInvalid):
        campaigns.spec_of(tx, "visit")
    # campaign list and show say it is not served, and why
    shown, (listed,) = campaigns.show(hq.db, "visit"), campaigns.all_campaigns(hq.db)
    for told in (shown, listed):
        assert told["served"] is False and told["not_served"]["code"] == "campaign_malformed"
        assert "max_per_store_day" in told["not_served"]["reason"]
    checkin_points(hq, control_share=0)  # saved again with the cap: served within it
    assert campaigns.show(hq.db, "visit")["served"] is True
    for member in MEMBERS[11:20]:
        stolen.door_tap(member)
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    assert count(hq, "SELECT COUNT(*) FROM adjustments") == 3


def test_the_chain_wide_offer_cap_bounds_check_in_credits_across_stores(hq: HqStore) -> None:
    checkin_points(hq, control_share=0)
    first, second = TillKey(hq, "T-1"), TillKey(hq, "T-2", "S-2")
    assert [r.points for r in check_in(hq, "M-00", first.code()).rewards] == [BONUS]
    assert check_in(hq, "M-00", second.code()).rewards == []  # one offer a member a day by default
    assert points(hq, "M-00") == BONUS


def test_control_blocked_and_erased_members_get_nothing(hq: HqStore) -> None:
    checkin_points(hq, control_share=0.5)
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 0}})
    key = hq.db.transact(campaigns.secret)
    held = parse_spec(spec(schedule={"kind": "checkin", "max_per_store_day": 3}, timezone="UTC", control_share=0.5))
    control = [m for m in MEMBERS if campaigns.arm_of("visit", held, m, key) == "control"]
    treated = [m for m in MEMBERS if m not in control]
    assert control and len(treated) >= 2
    till = TillKey(hq, "T-1")
    assert check_in(hq, control[0], till.code()).rewards == []
    hq.set_blocked("member", treated[0], True, "test", "lost card reported as stolen")
    erasure.erase_member(hq, treated[1], "test", "asked to be forgotten")
    for member in (control[0], treated[0], treated[1]):
        till.door_tap(member)  # a stolen credential naming them at the door
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    now = campaigns.parse_now(None)
    day = now.date().isoformat()
    for member in (control[0], treated[0], treated[1]):  # decided directly, as any path would
        hq.db.transact(lambda tx, m=member: campaigns.reward_checkin(tx, m, "S-OTHER", day, now))
    assert count(hq, "SELECT COUNT(*) FROM adjustments") == 0
    assert points(hq, control[0]) == 0 and points(hq, treated[0]) == 0
    assert count(hq, "SELECT COUNT(*) FROM campaign_members WHERE member_id IN (?, ?)", treated[0], treated[1]) == 0
    assert count(hq, "SELECT COUNT(*) FROM campaign_members WHERE member_id = ? AND arm = 'control'", control[0]) >= 1


# -- PostgreSQL: two runs at once ----------------------------------------------------------------------


def test_two_runs_deciding_the_same_members_at_once_credit_once(pg_url: str) -> None:
    stores = [HqStore(pg_url), HqStore(pg_url)]
    try:
        for member in MEMBERS:
            stores[0].upsert_member(member, member, "basic", 0)
        segments.save(stores[0].db, "everyone", "everyone", {"where": EVERYONE}, "test")
        campaigns.save(stores[0].db, "back", spec(control_share=0), "test")
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def go(store: HqStore, day: date | None) -> None:
            try:
                start.wait()
                campaigns.run_one(store.db, "back", MORNING, occasion_day=day)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=go, args=(stores[0], None)),  # the timer
            threading.Thread(target=go, args=(stores[1], date(2026, 3, 1))),  # an operator's rerun, same day
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert balances(stores[0]) == dict.fromkeys(MEMBERS, BONUS)
        assert count(stores[0], "SELECT COUNT(*) FROM adjustments") == len(MEMBERS)
        assert count(stores[0], "SELECT COUNT(*) FROM audit_log WHERE action = 'campaign_points'") == len(MEMBERS)
    finally:
        for store in stores:
            store.close()


def test_a_check_in_rewarded_by_two_processes_at_once_credits_once(pg_url: str) -> None:
    stores = [HqStore(pg_url), HqStore(pg_url)]
    try:
        stores[0].upsert_member("M-00", "M-00", "basic", 0)
        segments.save(stores[0].db, "everyone", "everyone", {"where": EVERYONE}, "test")
        checkin_points(stores[0], control_share=0)
        now = campaigns.parse_now(None)
        day = now.date().isoformat()
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def go(store: HqStore) -> None:
            try:
                start.wait()
                store.db.transact(lambda tx: campaigns.reward_checkin(tx, "M-00", "S-1", day, now))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert points(stores[0], "M-00") == BONUS
        assert count(stores[0], "SELECT COUNT(*) FROM adjustments") == 1
    finally:
        for store in stores:
            store.close()
