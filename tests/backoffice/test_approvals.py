"""Four eyes, on SQLite and PostgreSQL: an adjustment or a campaign launch is stored pending and changes
nothing; a different person whose role may approve it applies it through its service, exactly once (two
approvers at once on PostgreSQL: one applies it, the other is told it was decided); the requester can
decide neither way; a store manager cannot ask outside its stores; every step is in the audit chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hq import audit, segments
from hq.backoffice import approvals, team
from hq.backoffice import members as bo_members
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.backoffice.chain import chain

CAMPAIGN = {
    "name": "Welcome back",
    "segment": "everyone",
    "variants": [{"variant": "yen100", "coupon": {"kind": "amount_off", "value": 100}}],
    "schedule": {"kind": "daily", "at": "09:00"},
}


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff]]]:
    with chain(hq_url) as made:
        yield made


def balances(hq: HqStore, member_id: str) -> tuple[int, int]:
    member = hq.member(member_id)
    assert member is not None
    return member.points, member.stored_value


def refused(code: Code, call: object) -> None:
    with pytest.raises(BackofficeRefused) as caught:
        assert callable(call)
        call()
    assert caught.value.code is code, caught.value


def test_an_adjustment_applies_once_when_someone_else_approves_it(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    before = balances(hq, "M-S1")
    asked = bo_members.ask_adjustment(hq, staff["manager"], "M-S1", 500, 1200, "goodwill: broken machine")
    assert asked.state == approvals.PENDING and balances(hq, "M-S1") == before

    refused(
        Code.OWN_REQUEST, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["manager"], asked.request_id))
    )
    refused(Code.FORBIDDEN, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["market"], asked.request_id)))
    refused(
        Code.FORBIDDEN, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["auditor"], asked.request_id))
    )
    assert balances(hq, "M-S1") == before

    done = hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id, "checked the receipt"))
    assert done.state == approvals.APPROVED and done.decided_by == "finance"
    assert balances(hq, "M-S1") == (before[0] + 500, before[1] + 1200)
    refused(
        Code.ALREADY_DECIDED, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], asked.request_id))
    )
    assert balances(hq, "M-S1") == (before[0] + 500, before[1] + 1200)

    with hq.db.read() as tx:
        actions = [(r.actor, r.action, r.target) for r in reversed(audit.recent(tx))]
    assert actions == [("manager", "request_adjustment", "M-S1"), ("finance", "approve_adjustment", "M-S1")]
    assert audit.verify(hq.db).ok


def test_the_requester_can_neither_approve_nor_reject_and_a_rejection_changes_nothing(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    hq, staff = office
    before = balances(hq, "M-S2")
    asked = bo_members.ask_adjustment(hq, staff["finance"], "M-S2", -10, 0, "points given twice")
    refused(
        Code.OWN_REQUEST, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id))
    )
    refused(
        Code.OWN_REQUEST,
        lambda: hq.db.transact(lambda tx: approvals.reject(tx, staff["finance"], asked.request_id, "no")),
    )
    refused(
        Code.REASON_REQUIRED,
        lambda: hq.db.transact(lambda tx: approvals.reject(tx, staff["admin"], asked.request_id, " ")),
    )
    done = hq.db.transact(lambda tx: approvals.reject(tx, staff["admin"], asked.request_id, "they were not"))
    assert done.state == approvals.REJECTED and balances(hq, "M-S2") == before
    refused(
        Code.ALREADY_DECIDED,
        lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["admin2"], asked.request_id)),
    )


def test_a_store_manager_asks_only_for_its_stores_members_and_always_with_a_reason(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    hq, staff = office
    refused(Code.FORBIDDEN, lambda: bo_members.ask_adjustment(hq, staff["manager"], "M-S2", 100, 0, "a favour"))
    refused(Code.REASON_REQUIRED, lambda: bo_members.ask_adjustment(hq, staff["manager"], "M-S1", 100, 0, "   "))
    refused(Code.BAD_AMOUNT, lambda: bo_members.ask_adjustment(hq, staff["manager"], "M-S1", 0, 0, "nothing"))
    refused(Code.FORBIDDEN, lambda: bo_members.ask_adjustment(hq, staff["auditor"], "M-S1", 1, 0, "auditors read"))
    refused(Code.NOT_FOUND, lambda: bo_members.ask_adjustment(hq, staff["admin"], "M-NONE", 1, 0, "nobody"))
    with hq.db.read() as tx:
        assert approvals.listed(tx) == []


def test_an_adjustment_never_takes_more_than_the_balance_holds(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    points, _ = balances(hq, "M-S1")
    asked = bo_members.ask_adjustment(hq, staff["admin"], "M-S1", -(points + 1), 0, "clawback")
    refused(
        Code.BELOW_ZERO, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id))
    )
    with hq.db.read() as tx:
        assert approvals.get(tx, asked.request_id).state == approvals.PENDING
    assert balances(hq, "M-S1")[0] == points


def test_a_campaign_launch_waits_for_a_second_person(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 1000000}}, "test")
    refused(
        Code.CAMPAIGN_INVALID,
        lambda: hq.db.transact(
            lambda tx: approvals.ask(tx, staff["market"], approvals.CAMPAIGN, "bad", None, {"spec": {}}, "x")
        ),
    )
    refused(
        Code.FORBIDDEN,
        lambda: hq.db.transact(
            lambda tx: approvals.ask(
                tx, staff["manager"], approvals.CAMPAIGN, "welcome", None, {"spec": CAMPAIGN}, "spring"
            )
        ),
    )
    asked = hq.db.transact(
        lambda tx: approvals.ask(
            tx, staff["market"], approvals.CAMPAIGN, "welcome", None, {"spec": CAMPAIGN}, "spring push"
        )
    )
    with hq.db.read() as tx:
        assert tx.one("SELECT 1 FROM campaigns WHERE campaign_id = 'welcome'") is None
    refused(
        Code.OWN_REQUEST, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["market"], asked.request_id))
    )
    refused(
        Code.FORBIDDEN, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id))
    )
    done = hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], asked.request_id))
    assert done.state == approvals.APPROVED
    with hq.db.read() as tx:
        row = tx.one("SELECT state, created_by FROM campaigns WHERE campaign_id = 'welcome'")
    assert row == ("active", "market")


def test_a_launch_never_replaces_a_stored_campaign(office: tuple[HqStore, dict[str, Staff]]) -> None:
    """Staff who may ask for launches cannot change a running campaign's offer, control share or quantity by
    asking to "launch" it again, nor does approving a launch asked for before someone stored a campaign under
    its id replace that one: ``campaign_exists``, nothing changed, the request still pending."""
    from hq import campaigns

    hq, staff = office
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 1000000}}, "test")

    def ask(campaign_id: str, spec: dict[str, object]) -> approvals.Request:
        return hq.db.transact(
            lambda tx: approvals.ask(tx, staff["market"], approvals.CAMPAIGN, campaign_id, None, {"spec": spec}, "go")
        )

    first = ask("welcome", CAMPAIGN)
    hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], first.request_id))
    richer = {
        **CAMPAIGN,
        "control_share": 0,
        "variants": [{"variant": "big", "coupon": {"kind": "amount_off", "value": 5000}}],
    }
    refused(Code.CAMPAIGN_EXISTS, lambda: ask("welcome", richer))
    campaigns.change_state(hq.db, "welcome", "paused")
    refused(Code.CAMPAIGN_EXISTS, lambda: ask("welcome", richer))
    stale = ask("spring", richer)
    campaigns.save(hq.db, "spring", CAMPAIGN, "ops")  # stored by an administrator meanwhile
    refused(
        Code.CAMPAIGN_EXISTS, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], stale.request_id))
    )
    with hq.db.read() as tx:
        assert campaigns.spec_of(tx, "welcome") == campaigns.spec_of(tx, "spring") == campaigns.parse_spec(CAMPAIGN)
        assert approvals.get(tx, stale.request_id).state == approvals.PENDING


def test_two_approvers_at_once_apply_it_exactly_once(pg_url: str) -> None:
    with chain(pg_url) as (hq, staff):
        before = balances(hq, "M-S1")
        asked = bo_members.ask_adjustment(hq, staff["manager"], "M-S1", 40, 0, "two clicks")
        outcomes: list[str] = []
        start = threading.Barrier(2)

        def approve(who: Staff) -> None:
            start.wait(10)
            try:
                hq.db.transact(lambda tx: approvals.approve(tx, who, asked.request_id))
                outcomes.append("approved")
            except BackofficeRefused as exc:
                outcomes.append(exc.code.value)

        threads = [threading.Thread(target=approve, args=(staff[w],)) for w in ("admin", "finance")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["already_decided", "approved"]
        assert balances(hq, "M-S1") == (before[0] + 40, before[1])
        with hq.db.read() as tx:
            assert tx.one("SELECT COUNT(*) FROM adjustments WHERE member_id = 'M-S1'") == (1,)


def test_a_points_campaign_credits_in_the_name_of_whoever_approved_its_launch(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    from datetime import UTC, datetime, timedelta

    from hq import campaigns

    hq, staff = office
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 1000000}}, "test")
    points_spec = {
        **CAMPAIGN,
        "variants": [{"variant": "pts", "points": 250}],
        "control_share": 0,
        "require_consent": False,
    }
    asked = hq.db.transact(
        lambda tx: approvals.ask(tx, staff["market"], approvals.CAMPAIGN, "welcome", None, {"spec": points_spec}, "pts")
    )
    hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], asked.request_id))
    before = balances(hq, "M-S1")
    now = datetime.now(UTC).replace(hour=10)
    assert campaigns.run_one(hq.db, "welcome", now) is not None
    assert balances(hq, "M-S1") == (before[0] + 250, before[1])
    with hq.db.read() as tx:
        made = tx.all("SELECT requested_by, approved_by FROM adjustments WHERE member_id = 'M-S1'")
    assert made == [("campaign:welcome", "admin")]
    # changed since by a command, without a second person: the credit names no approver it did not have
    campaigns.save(hq.db, "welcome", {**points_spec, "variants": [{"variant": "pts", "points": 900}]}, "ops")
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 0}})
    rerun = campaigns.run_one(hq.db, "welcome", now, occasion_day=now.date() - timedelta(days=1))
    assert rerun is not None
    with hq.db.read() as tx:
        later = tx.all("SELECT approved_by FROM adjustments WHERE member_id = 'M-S1' AND points = 900")
    assert later == [("campaign:welcome",)]


def test_an_account_whose_password_the_requester_set_does_not_decide_its_request(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    """An administrator who made an account, or reset its password, knows that password: the account is the
    administrator's second pair of hands, not a second person. Its request is ``own_request`` to that account
    until someone else sets the password (another administrator here), and nothing moves before."""
    hq, staff = office
    before = balances(hq, "M-S1")
    made = {"staff_id": "shadow", "name": "Shadow", "role": "finance", "password": "a password I know", "reason": "r"}
    shadow = team.create(hq, staff["admin"], made)
    asked = bo_members.ask_adjustment(hq, staff["admin"], "M-S1", 0, 5000, "refund by hand")
    for who in (shadow, staff["finance"]):
        if who is staff["finance"]:
            team.reset_password(hq, staff["admin"], "finance", {"password": "another I know", "reason": "forgot"})
        refused(Code.OWN_REQUEST, lambda w=who: hq.db.transact(lambda tx: approvals.approve(tx, w, asked.request_id)))
        refused(
            Code.OWN_REQUEST,
            lambda w=who: hq.db.transact(lambda tx: approvals.reject(tx, w, asked.request_id, "no")),
        )
    assert balances(hq, "M-S1") == before
    team.reset_password(hq, staff["admin2"], "finance", {"password": "only finance knows", "reason": "handed over"})
    done = hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id))
    assert done.state == approvals.APPROVED and balances(hq, "M-S1") == (before[0], before[1] + 5000)


def test_an_account_set_by_an_account_the_requester_set_does_not_decide_its_request_either(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    """The administrator makes a second administrator with a password it knows, and as that one resets
    finance's password: finance's account is still the first administrator's hands (``own_request``)."""
    hq, staff = office
    made = {"staff_id": "proxy", "name": "Proxy", "role": "chain_admin", "password": "a password I know"}
    proxy = team.create(hq, staff["admin"], {**made, "reason": "cover"})
    team.reset_password(hq, proxy, "finance", {"password": "another I know", "reason": "forgot"})
    asked = bo_members.ask_adjustment(hq, staff["admin"], "M-S1", 0, 5000, "refund by hand")
    refused(
        Code.OWN_REQUEST, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["finance"], asked.request_id))
    )
    with hq.db.read() as tx:
        assert approvals.get(tx, asked.request_id).state == approvals.PENDING


def test_whoever_set_the_requesters_password_does_not_decide_its_request(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    """The administrator resets finance's password, signs in as finance with it and asks for stored value by
    hand: the request is the administrator's own hands as much as finance's, so the administrator neither
    approves nor rejects it (``own_request``) and nothing moves; once finance has set a password of its own,
    the request it asks next is the administrator's to decide."""
    hq, staff = office
    before = balances(hq, "M-S1")
    team.reset_password(hq, staff["admin"], "finance", {"password": "a password I know", "reason": "forgot"})
    asked = bo_members.ask_adjustment(hq, staff["finance"], "M-S1", 0, 50000, "goodwill")
    refused(
        Code.OWN_REQUEST, lambda: hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], asked.request_id))
    )
    refused(
        Code.OWN_REQUEST,
        lambda: hq.db.transact(lambda tx: approvals.reject(tx, staff["admin"], asked.request_id, "no")),
    )
    assert balances(hq, "M-S1") == before
    with hq.db.read() as tx:
        assert approvals.get(tx, asked.request_id).state == approvals.PENDING
    done = hq.db.transact(lambda tx: approvals.approve(tx, staff["admin2"], asked.request_id))  # a second person
    assert done.state == approvals.APPROVED and balances(hq, "M-S1") == (before[0], before[1] + 50000)
    mine = "only finance knows this"
    change = {"current_password": "a password I know", "new_password": mine, "new_password_again": mine}
    team.change_own_password(hq, staff["finance"], change, "127.0.0.1", int(time.time()))
    later = bo_members.ask_adjustment(hq, staff["finance"], "M-S1", 0, 100, "goodwill")
    assert (
        hq.db.transact(lambda tx: approvals.approve(tx, staff["admin"], later.request_id)).state == approvals.APPROVED
    )
