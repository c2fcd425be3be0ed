"""Coupons: every kind, every rejection code, the best combination, and properties of pricing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal import coupons as cp
from terminal import loyalty as ly
from terminal import pricing as pr
from terminal.errors import Code, Rejected
from terminal.model import Basket, EarnRule, Line

MON_9AM = datetime(2026, 11, 23, 9, 0)
LATTE = Line("LATTE", 2, 450, "coffee")  # 900
MUFFIN = Line("MUFFIN", 3, 300, "bakery")  # 900
BEANS = Line("BEANS", 1, 1200, "beans")  # 1200
BASKET = Basket((LATTE, MUFFIN, BEANS))  # 3000
PROGRAM = ly.parse_program(
    {"redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 100}},
    EarnRule("base", 1, 100),
)
MEMBER_CTX = ly.SaleContext(MON_9AM, "S-001", "M-1", "silver")
ANON_CTX = ly.SaleContext(MON_9AM, "S-001")


def coupon(doc: dict[str, Any], coupon_id: str = "C") -> cp.Coupon:
    return cp.parse_coupon(coupon_id, doc)


@pytest.mark.parametrize(
    ("doc", "discounts"),
    [
        ({"kind": "amount_off", "value": 300}, (90, 90, 120)),  # shared in proportion
        ({"kind": "amount_off", "value": 5000}, (900, 900, 1200)),  # never more than the basket
        ({"kind": "amount_off", "value": 300, "target": "items", "skus": ["BEANS"]}, (0, 0, 300)),
        ({"kind": "percent_off", "value": 10}, (90, 90, 120)),
        ({"kind": "percent_off", "value": 15, "target": "items", "categories": ["coffee"]}, (135, 0, 0)),
        ({"kind": "percent_off", "value": 50, "target": "cheapest"}, (0, 150, 0)),  # half a muffin
        ({"kind": "free_item", "skus": ["LATTE", "MUFFIN"]}, (0, 300, 0)),  # cheapest matching unit
        ({"kind": "buy_x_get_y", "buy": 2, "get": 1, "categories": ["bakery"]}, (0, 300, 0)),
        ({"kind": "buy_x_get_y", "buy": 1, "get": 1, "skus": ["LATTE", "MUFFIN"]}, (0, 600, 0)),  # 5 units: 2 free
    ],
)
def test_discount_kinds(doc: dict[str, Any], discounts: tuple[int, ...]) -> None:
    applied = cp.apply([coupon(doc)], BASKET)
    assert applied.line_discounts == discounts
    assert applied.by_coupon["C"] == sum(discounts)


def test_points_coupons_add_points() -> None:
    offers = [
        cp.Offer(coupon({"kind": "bonus_points", "value": 200}, "B")),
        cp.Offer(coupon({"kind": "points_multiplier", "value": 300}, "X3")),
    ]
    quote = pr.price(PROGRAM, BASKET, MEMBER_CTX, pr.Member("M-1", "silver", 0), offers)
    assert quote.points_earned == 30 + 200 + 60
    assert {(x.source, x.points) for x in quote.explain} == {("base", 30), ("B", 200), ("X3", 60)}


@pytest.mark.parametrize(
    ("doc", "offer", "context", "code"),
    [
        ({"starts": "2026-12-01"}, {}, MEMBER_CTX, "coupon_not_yet_valid"),
        ({"ends": "2026-11-01"}, {}, MEMBER_CTX, "coupon_expired"),
        ({"weekdays": [5, 6]}, {}, MEMBER_CTX, "coupon_wrong_day"),
        ({"hours": ["12:00", "14:00"]}, {}, MEMBER_CTX, "coupon_wrong_time"),
        ({"stores": ["S-999"]}, {}, MEMBER_CTX, "coupon_wrong_store"),
        ({"merchant_id": "M-B"}, {}, replace(MEMBER_CTX, merchant_id="M-A"), "coupon_other_merchant"),
        ({"merchant_id": "M-A"}, {}, replace(MEMBER_CTX, merchant_id="M-A"), None),
        ({"merchant_id": "M-B"}, {}, MEMBER_CTX, None),  # a till that does not know its merchant yet
        ({}, {}, replace(MEMBER_CTX, merchant_id="M-A"), None),  # a chain-wide coupon
        ({"member_only": True}, {}, ANON_CTX, "coupon_members_only"),
        ({"member_id": "M-2"}, {}, MEMBER_CTX, "coupon_not_this_member"),
        ({"tiers": ["gold"]}, {}, MEMBER_CTX, "coupon_wrong_tier"),
        ({"single_use": True}, {"used": 1}, MEMBER_CTX, "coupon_used_up"),
        ({"limits": {"global": 5}}, {"used": 5}, MEMBER_CTX, "coupon_used_up"),
        ({"limits": {"per_member": 1}}, {"used_by_member": 1}, MEMBER_CTX, "coupon_already_used"),
        ({"min_spend": 3001}, {}, MEMBER_CTX, "coupon_min_spend"),
        ({"required_skus": ["CAKE"]}, {}, MEMBER_CTX, "coupon_required_items"),
        ({"limits": {"global": 5}}, {"used": 4}, MEMBER_CTX, None),
        ({"min_spend": 3000, "member_id": "M-1", "tiers": ["silver"]}, {}, MEMBER_CTX, None),
    ],
)
def test_refusal_codes(doc: dict[str, Any], offer: dict[str, int], context: ly.SaleContext, code: str | None) -> None:
    c = coupon({"kind": "amount_off", "value": 100, **doc})
    assert cp.refusal(cp.Offer(c, **offer), BASKET, context) == code
    if code is not None:
        assert Code(code)  # every refusal is a stable, known code


def test_not_applicable_and_not_combinable() -> None:
    offers = [
        cp.Offer(coupon({"kind": "amount_off", "value": 100, "target": "items", "skus": ["CAKE"]}, "NOCAKE")),
        cp.Offer(coupon({"kind": "amount_off", "value": 100}, "A100")),
        cp.Offer(coupon({"kind": "amount_off", "value": 1000, "exclusive": True}, "EX1000")),
        cp.Offer(coupon({"kind": "amount_off", "value": 500, "exclusive": True}, "EX500")),
    ]
    quote = pr.price(PROGRAM, BASKET, MEMBER_CTX, pr.Member("M-1", "silver", 0), offers)
    assert quote.coupons == ("EX1000",)
    assert quote.discount == 1000
    assert dict(quote.refused) == {
        "NOCAKE": "coupon_not_combinable",
        "A100": "coupon_not_combinable",
        "EX500": "coupon_not_combinable",
    }
    alone = pr.price(PROGRAM, BASKET, MEMBER_CTX, None, offers[:1])
    assert alone.refused == (("NOCAKE", "coupon_not_applicable"),) and alone.discount == 0


def test_combinable_beat_a_smaller_exclusive() -> None:
    offers = [
        cp.Offer(coupon({"kind": "percent_off", "value": 20}, "P20")),
        cp.Offer(coupon({"kind": "amount_off", "value": 200}, "A200")),
        cp.Offer(coupon({"kind": "amount_off", "value": 700, "exclusive": True}, "EX700")),
    ]
    quote = pr.price(PROGRAM, BASKET, MEMBER_CTX, None, offers)
    assert quote.coupons == ("A200", "P20") and quote.discount == 800  # 600 + 200 > 700


@pytest.mark.parametrize(
    ("redeem", "balance", "code"),
    [
        (150, 1000, Code.POINTS_NOT_WHOLE_UNITS),
        (2000, 1000, Code.INSUFFICIENT_POINTS),
        (4000, 9999, Code.POINTS_EXCEED_SALE),
    ],
)
def test_redeem_refusals(redeem: int, balance: int, code: Code) -> None:
    with pytest.raises(Rejected) as info:
        pr.price(PROGRAM, BASKET, MEMBER_CTX, pr.Member("M-1", "silver", balance), redeem=redeem)
    assert info.value.code is code


def test_anonymous_cannot_redeem() -> None:
    with pytest.raises(Rejected) as info:
        pr.price(PROGRAM, BASKET, ANON_CTX, None, redeem=100)
    assert info.value.code is Code.NO_MEMBER


def test_points_paid_earn_nothing() -> None:
    quote = pr.price(PROGRAM, BASKET, MEMBER_CTX, pr.Member("M-1", "silver", 1000), redeem=1000)
    assert (quote.redeem_value, quote.payable, quote.points_earned) == (1000, 2000, 20)


# -- properties ------------------------------------------------------------------------------

lines = st.lists(
    st.builds(
        Line,
        st.sampled_from(["A", "B", "C", "D"]),
        st.integers(1, 5),
        st.integers(0, 5000),
        st.sampled_from(["x", "y", ""]),
    ),
    min_size=1,
    max_size=5,
).map(lambda ls: Basket(tuple(ls)))

coupon_docs = st.one_of(
    st.builds(lambda v: {"kind": "amount_off", "value": v}, st.integers(0, 10_000)),
    st.builds(
        lambda v, s: {"kind": "amount_off", "value": v, "target": "items", "skus": s},
        st.integers(0, 5000),
        st.lists(st.sampled_from("ABCD"), max_size=2),
    ),
    st.builds(
        lambda v, t: {"kind": "percent_off", "value": v, "target": t, "categories": ["x"]},
        st.integers(1, 100),
        st.sampled_from(["basket", "items", "cheapest"]),
    ),
    st.builds(lambda s: {"kind": "free_item", "skus": s}, st.lists(st.sampled_from("ABCD"), min_size=1, max_size=2)),
    st.builds(
        lambda b, g: {"kind": "buy_x_get_y", "buy": b, "get": g, "categories": ["x", "y"]},
        st.integers(1, 3),
        st.integers(1, 2),
    ),
    st.builds(lambda v: {"kind": "bonus_points", "value": v}, st.integers(0, 500)),
    st.builds(lambda v: {"kind": "points_multiplier", "value": v}, st.integers(100, 400)),
)
offer_lists = st.lists(st.tuples(coupon_docs, st.booleans(), st.integers(0, 3000)), max_size=5).map(
    lambda docs: [
        cp.Offer(coupon({**d, "exclusive": ex, "min_spend": ms}, f"C{i}")) for i, (d, ex, ms) in enumerate(docs)
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    basket=lines,
    offers=offer_lists,
    balance=st.integers(0, 20_000),
    redeem_max=st.booleans(),
    seed=st.randoms(use_true_random=False),
)
def test_pricing_properties(basket: Basket, offers: list[cp.Offer], balance: int, redeem_max: bool, seed: Any) -> None:
    member = pr.Member("M-1", "silver", balance)
    quote = pr.price(PROGRAM, basket, MEMBER_CTX, member, offers, pr.REDEEM_MAX if redeem_max else 0)
    numbers = [
        quote.total,
        quote.discount,
        quote.points_earned,
        quote.points_redeemed,
        quote.redeem_value,
        quote.payable,
        *quote.line_discounts,
    ]
    assert all(type(n) is int for n in numbers)  # integers only, no float anywhere
    assert quote.payable >= 0 and quote.points_earned >= 0
    # a discount never exceeds the line it applies to, and the lines add up
    assert all(0 <= d <= line.amount for d, line in zip(quote.line_discounts, basket.lines, strict=True))
    assert quote.discount == sum(quote.line_discounts)
    assert sum(x.amount for x in quote.explain if x.kind == "discount") == quote.discount
    assert quote.points_redeemed <= balance
    # the order coupons are presented in never changes the result
    shuffled = list(offers)
    seed.shuffle(shuffled)
    assert pr.price(PROGRAM, basket, MEMBER_CTX, member, shuffled, pr.REDEEM_MAX if redeem_max else 0) == quote


@settings(max_examples=200, deadline=None)
@given(basket=lines, offers=offer_lists, balance=st.integers(0, 20_000), data=st.data())
def test_refunds_give_back_exactly_what_the_sale_took(
    basket: Basket, offers: list[cp.Offer], balance: int, data: st.DataObject
) -> None:
    quote = pr.price(PROGRAM, basket, MEMBER_CTX, pr.Member("M-1", "silver", balance), offers, pr.REDEEM_MAX)
    state = pr.SaleState(basket, quote.payable, quote.points_earned, quote.points_redeemed, quote.coupons)
    used = [o.coupon for o in offers]
    money = clawed = restored = 0
    restored_coupons: list[str] = []
    # return the basket in random partial steps, then whatever is left
    while any(line.quantity for line in state.basket.lines):
        returned = {i: data.draw(st.integers(0, line.quantity)) for i, line in enumerate(state.basket.lines)}
        if not any(returned.values()):
            returned = {i: line.quantity for i, line in enumerate(state.basket.lines)}
        result = pr.refund(PROGRAM, state, returned, MEMBER_CTX, used)
        assert min(result.money_back, result.points_clawed, result.points_restored) >= 0  # nothing gained
        money, clawed, restored = (
            money + result.money_back,
            clawed + result.points_clawed,
            restored + result.points_restored,
        )
        restored_coupons += result.coupons_restored
        state = result.after
    # refund(sale) puts every balance back where it was before the sale
    assert (money, clawed, restored) == (quote.payable, quote.points_earned, quote.points_redeemed)
    assert sorted(restored_coupons) == sorted(quote.coupons)
