"""The loyalty engine through the service and a real SQLite store: what is written, atomically."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from terminal import pricing
from terminal.errors import Code, Rejected
from terminal.model import Basket, EarnRule, Line, Member
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.clock import Clock

MON_9AM = datetime(2026, 11, 23, 9, 0).timestamp()  # local time, as the till's clock reads it
DAY = 86_400.0
NEW_CARD = "c0" * 32  # a card's keyed hash
BASKET = Basket((Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))  # 2100

RULES = {
    "tiers": {"kind": "tiers", "levels": [{"tier": "basic", "threshold": 0}, {"tier": "silver", "threshold": 100}]},
    "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 100},
    "points_policy": {"kind": "points_policy", "lock_days": 7, "expire_days": 365},
    "silver": {"kind": "tier", "tier": "silver", "multiplier_pct": 200},
}
COUPONS = {
    "WELCOME": {"kind": "amount_off", "value": 500, "single_use": True},
    "COFFEE10": {
        "kind": "percent_off",
        "value": 10,
        "target": "items",
        "categories": ["coffee"],
        "limits": {"per_member": 1},
    },
    "MINE": {"kind": "bonus_points", "value": 50, "member_id": "M-1"},
}


@pytest.fixture
def till(tmp_path: Path) -> tuple[Service, Store, Clock]:
    store = Store.open(tmp_path / "t.db")
    store.apply_changes(
        [Member("M-1", "Aiko", "basic", 1000), Member("M-2", "Ben", "basic", 0)], [], [EarnRule("base", 1, 100)], 1
    )
    store.put_docs("rule_docs", dict(RULES))
    store.put_docs("coupon_docs", dict(COUPONS))
    clock = Clock(MON_9AM)
    # Loyalty arithmetic: the chain trusts its POS for points here (tests/terminal/test_service_payments.py
    # and tests/security cover the proofs).
    return Service(store, "T-1", clock=clock, spend_needs_proof=False), store, clock


def test_sale_with_coupons_and_points_writes_everything_at_once(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    quote = service.quote("M-1", BASKET, coupons=["WELCOME", "COFFEE10", "NOPE"], redeem=500)
    assert quote.coupons == ("COFFEE10", "MINE", "WELCOME")  # the personal coupon comes by itself
    assert dict(quote.refused) == {"NOPE": "unknown_coupon"}
    assert (quote.discount, quote.redeem_value, quote.payable) == (590, 500, 1010)
    receipt = service.commit(quote)
    assert receipt.points_balance == 1000 - 500 + quote.points_earned
    entry = store.entries()[-1]
    assert entry.payload["coupons"] == ["COFFEE10", "MINE", "WELCOME"]
    assert entry.payload["points_delta"] == quote.points_earned - 500
    # single-use and per-member limits now hold on this till
    again = service.quote("M-1", BASKET, coupons=["WELCOME", "COFFEE10"])
    assert dict(again.refused) == {"WELCOME": "coupon_used_up", "COFFEE10": "coupon_already_used"}


def test_a_stale_quote_cannot_spend_twice(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    first = service.quote("M-1", BASKET, redeem=1000)
    second = service.quote("M-1", BASKET, redeem=1000)
    service.commit(first)
    before = len(store.entries())
    with pytest.raises(Rejected) as info:
        service.commit(second)
    assert info.value.code is Code.INSUFFICIENT_POINTS
    assert len(store.entries()) == before  # nothing of the refused sale was written


def test_a_stale_quote_cannot_reuse_a_single_use_coupon(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    first = service.quote("M-2", BASKET, coupons=["WELCOME"])
    second = service.quote("M-1", BASKET, coupons=["WELCOME"])
    service.commit(first)
    with pytest.raises(Rejected) as info:
        service.commit(second)
    assert info.value.code is Code.COUPON_USED_UP


def test_earned_points_are_locked_then_spendable(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    sale = service.commit(service.quote("M-2", BASKET))
    assert sale.points_balance == 21
    with pytest.raises(Rejected) as info:
        service.quote("M-2", BASKET, redeem=pricing.REDEEM_MAX) and service.quote("M-2", BASKET, redeem=100)
    assert info.value.code is Code.INSUFFICIENT_POINTS  # locked for 7 days
    clock.now += 8 * DAY
    assert (
        service.quote("M-2", Basket((Line("X", 1, 10_000),)), redeem=pricing.REDEEM_MAX).points_redeemed == 0
    )  # < min
    clock.now += 400 * DAY
    lots, _, spendable = store.member_ledger("M-2", datetime.fromtimestamp(clock.now))
    assert spendable == 0 and lots[0].remaining == 21  # expired: no longer spendable


def test_tier_upgrade_counts_points_earned(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    big = Basket((Line("TV", 1, 12_000),))
    quote = service.quote("M-2", big)
    assert quote.tier_after == "silver"
    service.commit(quote)
    member = store.member("M-2")
    assert member is not None and member.tier == "silver"
    # the next sale earns the silver multiplier
    assert [x.source for x in service.quote("M-2", big).explain] == ["base", "silver"]


def test_partial_refunds_then_void_restore_the_balance(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    quote = service.quote("M-1", BASKET, coupons=["WELCOME"], redeem=500)
    sale = service.commit(quote)
    first = service.refund(sale.txn_id, {0: 1})
    second = service.refund(sale.txn_id, {0: 1})
    rest = service.void(sale.txn_id)
    member = store.member("M-1")
    assert member is not None and member.points == 1000
    assert -(first.total + second.total + rest.total) == quote.payable
    assert store.coupon_uses("WELCOME", "M-1") == (0, 0)  # the single-use coupon is usable again
    with pytest.raises(Rejected) as info:
        service.refund(sale.txn_id, {1: 1})
    assert info.value.code is Code.ALREADY_VOIDED


def test_refund_more_than_bought_is_refused(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    sale = service.commit(service.quote("M-1", BASKET))
    said = []
    for returned in ({0: 3}, {5: 1}, {}):
        with pytest.raises(Rejected) as info:
            service.refund(sale.txn_id, returned)
        assert info.value.code is Code.INVALID_REFUND
        said.append(info.value.message)
    # the line named as the refund names it (from 0, as the API and `tillpoint refund --line` take it)
    last = len(BASKET.lines) - 1
    assert said[0].startswith("Line 0 (") and said[1] == f"No line 5 in this sale (its lines are 0 to {last})."


def test_clawback_of_spent_points_goes_negative(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    big = Basket((Line("TV", 1, 100_000),))
    sale = service.commit(service.quote("M-2", big))  # earns 1000 points
    clock.now += 8 * DAY  # past the lock
    gift = Basket((Line("GIFT", 1, 1000),))
    spend = service.commit(service.quote("M-2", gift, redeem=1000))  # pays it all with points
    assert spend.points_balance == 0
    back = service.void(sale.txn_id)
    assert back.points_balance == -1000  # the debt is carried, not ignored
    assert store.entries()[-1].payload["points_clawed"] == sale.points_delta


def test_enrol_an_unknown_card_offline_then_earn(till: tuple[Service, Store, Clock]) -> None:
    from terminal.model import CardRead

    service, store, _ = till
    read = CardRead("sim:", "iso14443a", NEW_CARD)
    found = service.enrol(read, "Chika", consent="v1")
    assert found.member.member_id.startswith("E-") and found.member.tier == "basic"
    assert service.identify(read).member.member_id == found.member.member_id
    sale = service.commit(service.quote(found.member.member_id, BASKET))
    assert sale.points_balance == 21
    assert [e.kind for e in store.entries()] == ["enrol", "sale"]
    assert store.entries()[0].payload["uid_hash"] == NEW_CARD
    with pytest.raises(Rejected) as info:
        service.enrol(read)
    assert info.value.code is Code.CARD_ALREADY_ENROLLED
    assert len(store.entries()) == 2


def test_an_anonymous_stale_quote_cannot_reuse_a_single_use_coupon(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    store.put_docs("coupon_docs", {"ONCE": {"kind": "amount_off", "value": 100, "single_use": True}})
    first = service.quote(None, BASKET, coupons=["ONCE"])
    second = service.quote(None, BASKET, coupons=["ONCE"])
    service.commit(first)
    with pytest.raises(Rejected) as info:
        service.commit(second)
    assert info.value.code is Code.COUPON_USED_UP


def test_a_use_head_office_acknowledged_counts_until_a_pull_brings_its_count(
    till: tuple[Service, Store, Clock],
) -> None:
    """Between the push that hands a coupon's use to head office and the pull that brings head office's count of
    it back (up to ``pull_interval``), the use still counts: a single-use coupon is not used a second time there."""
    service, store, _ = till
    body = {"kind": "amount_off", "value": 100, "limits": {"global": 2}}
    store.put_docs("coupon_docs", {"TWICE": body})
    service.commit(service.quote(None, BASKET, coupons=["TWICE"]))
    store.mark_pushed(store.max_seq(), "2026-03-02T09:00:00Z")  # a push round; the pull comes later
    service.commit(service.quote(None, BASKET, coupons=["TWICE"]))  # the second use of two
    assert dict(service.quote(None, BASKET, coupons=["TWICE"]).refused) == {"TWICE": "coupon_used_up"}

    # A pull after both are acknowledged brings head office's count (2), which holds both: neither counts twice,
    # and a coupon head office gave more uses to is usable again.
    acked = store.max_seq()
    store.mark_pushed(acked, "2026-03-02T09:00:05Z")
    docs = CacheDocs(coupons=[("TWICE", None, json.dumps({**body, "limits": {"global": 3}}), 2)])
    store.apply_changes([], [], [], 2, docs, counted_seq=acked)
    assert "TWICE" in service.quote(None, BASKET, coupons=["TWICE"]).coupons
