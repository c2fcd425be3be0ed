"""The top-up policy and its limits (terminal/topups.py): the same functions decide at the till and at head
office, so what an honest till accepts, head office credits, and nothing passes a limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal import payments as pay
from terminal import topups as tp
from terminal.errors import Code, Rejected
from terminal.model import Member, utc_iso
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.store import Store

POLICY = tp.TopupPolicy(True, per_transaction=5000, per_day=12000, per_member_day=7000, offline_total=6000)
ONLINE = pay.OfflineState(None, None, 0, 0)
LIMITS = pay.RiskLimits()


def test_an_enabled_policy_bounds_every_figure() -> None:
    assert POLICY.problem() is None
    assert tp.TopupPolicy().problem() is None  # not enabled: nothing to bound
    assert tp.TopupPolicy(True, 0, 1000, 1000).problem() is not None  # no "0 = no limit"
    assert tp.TopupPolicy(True, 2000, 1000, 1000).problem() is not None  # one top-up above the day
    assert tp.TopupPolicy(True, 1000, 1000, 1001).problem() is not None
    assert tp.TopupPolicy(True, 1000, 10**13, 1000).problem() is not None


def test_the_policy_travels_as_a_document_and_a_bad_one_enables_nothing() -> None:
    assert tp.policy_from_doc(POLICY.to_doc()) == POLICY
    assert tp.policy_from_doc(None) == tp.TopupPolicy()
    assert not tp.policy_from_doc({"enabled": "yes", "per_day": 5}).enabled
    assert tp.policy_from_doc({"enabled": True, "per_day": "lots"}) == tp.TopupPolicy()


def test_each_limit_has_its_code() -> None:
    assert tp.over_limit(100, tp.TopupPolicy(), tp.Tally()) is Code.TOPUP_NOT_ENABLED
    assert tp.over_limit(0, POLICY, tp.Tally()) is Code.TOPUP_BAD_AMOUNT
    assert tp.over_limit(5001, POLICY, tp.Tally()) is Code.TOPUP_LIMIT_TRANSACTION
    assert tp.over_limit(5000, POLICY, tp.Tally(till_day=7001)) is Code.TOPUP_LIMIT_DAY
    assert tp.over_limit(5000, POLICY, tp.Tally(till_day=5000, member_day=2001)) is Code.TOPUP_LIMIT_MEMBER_DAY
    assert tp.over_limit(5000, POLICY, tp.Tally(till_day=7000, member_day=2000)) is None


def test_offline_the_till_follows_the_payment_rules_and_its_offline_total() -> None:
    fine = pay.OfflineState(60, 60, 0, 0, 1.0)
    assert tp.refusal(5000, POLICY, tp.Tally(offline_pending=1000), fine, LIMITS) is None
    assert tp.refusal(5000, POLICY, tp.Tally(offline_pending=1001), fine, LIMITS) is Code.TOPUP_LIMIT_OFFLINE
    long = pay.OfflineState(LIMITS.max_offline_s + 1, 60, 0, 0)
    assert tp.refusal(100, POLICY, tp.Tally(), long, LIMITS) is Code.OFFLINE_TOO_LONG
    assert tp.refusal(100, POLICY, tp.Tally(), pay.OfflineState(60, None, 0, 0), LIMITS) is Code.CLOCK_NOT_SYNCED
    wrong = pay.OfflineState(60, 60, 0, 0, LIMITS.max_clock_offset_s + 1.0)
    assert tp.refusal(100, POLICY, tp.Tally(), wrong, LIMITS) is Code.TILL_CLOCK_WRONG
    no_offline = tp.TopupPolicy(True, 5000, 12000, 7000, offline_total=0)
    assert tp.refusal(100, no_offline, tp.Tally(), fine, LIMITS) is Code.TOPUP_LIMIT_OFFLINE
    assert tp.refusal(100, no_offline, tp.Tally(), ONLINE, LIMITS) is None


def test_a_void_is_of_its_day_once_and_while_the_balance_holds_it() -> None:
    sold = tp.Sold("t1", "M-1", 3000, "2026-12-02")
    assert tp.void_refusal(sold, "2026-12-02", 3000) is None
    assert tp.void_refusal(None, "2026-12-02", 3000) is Code.NOT_A_TOPUP
    assert tp.void_refusal(sold, "2026-12-03", 3000) is Code.TOPUP_VOID_OTHER_DAY
    assert tp.void_refusal(sold, "2026-12-02", 2999) is Code.TOPUP_VOID_SPENT
    voided = tp.Sold("t1", "M-1", 3000, "2026-12-02", voided_by="t2")
    assert tp.void_refusal(voided, "2026-12-02", 9000) is Code.ALREADY_VOIDED


@given(st.lists(st.tuples(st.sampled_from(["M-1", "M-2", "M-3"]), st.integers(-10, 6000)), max_size=40))
def test_accepted_topups_never_pass_a_limit(attempts: list[tuple[str, int]]) -> None:
    """Whatever is tried in a day, what is accepted stays within every limit of the policy."""
    day: dict[str, int] = {}
    for member, amount in attempts:
        tally = tp.Tally(sum(day.values()), day.get(member, 0))
        if tp.over_limit(amount, POLICY, tally) is None:
            assert 0 < amount <= POLICY.per_transaction
            day[member] = day.get(member, 0) + amount
    assert sum(day.values()) <= POLICY.per_day
    assert all(v <= POLICY.per_member_day for v in day.values())


def test_the_business_day_is_the_stores_as_head_office_files_it() -> None:
    tokyo = {"timezone": "Asia/Tokyo", "day_starts": "04:00"}
    late = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo on the 2nd
    night = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)  # 01:30 on the 3rd: still the 2nd's business day
    morning = datetime(2026, 12, 2, 19, 30, tzinfo=UTC)  # 04:30 on the 3rd: the 3rd's
    assert [tp.business_day(t, tokyo) for t in (late, night, morning)] == ["2026-12-02", "2026-12-02", "2026-12-03"]
    assert tp.business_day(night, {"timezone": "Nowhere/Atlantis"}) == night.astimezone().date().isoformat()
    assert tp.business_day(night, None) == night.astimezone().date().isoformat()


def test_the_till_counts_its_day_across_midnight_when_the_stores_day_starts_later(tmp_path: Path) -> None:
    """A store whose day starts at 04:00: a top-up at 23:00 and one at 01:30 are one business day's, as head
    office counts them, so the till refuses the second beyond the day's limit; at 04:30 a new day begins."""
    clock = [datetime(2026, 12, 2, 14, 0, tzinfo=UTC).timestamp()]
    store = Store.open(tmp_path / "t.db")
    store.apply_changes([Member("M-1", "Aiko", "gold", 0)], [], [], 1)
    doc = {**POLICY.to_doc(), "per_day": 8000, "timezone": "Asia/Tokyo", "day_starts": "04:00"}
    store.apply_changes([], [], [], 2, CacheDocs(topup_policy=json.dumps(doc)))
    store.set_state(last_sync_ok=utc_iso(clock[0]))
    service = Service(store, "T-1", clock=lambda: clock[0])
    assert service.topup("M-1", 5000).stored_value == 5000
    clock[0] += 2.5 * 3600  # 01:30 the next calendar day
    store.set_state(last_sync_ok=utc_iso(clock[0]))
    with pytest.raises(Rejected) as refused:
        service.topup("M-1", 4000)
    assert refused.value.code is Code.TOPUP_LIMIT_DAY
    clock[0] += 3 * 3600  # 04:30: the next business day
    store.set_state(last_sync_ok=utc_iso(clock[0]))
    assert service.topup("M-1", 4000).stored_value == 9000
    store.close()
