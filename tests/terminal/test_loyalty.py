"""Earning rules, tiers, redemption and lots: table-driven, one row per rule kind and policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from terminal import loyalty as ly
from terminal.model import Basket, EarnRule, Line

SAT_9AM = datetime(2026, 11, 21, 9, 0)  # a Saturday
MON_9AM = datetime(2026, 11, 23, 9, 0)
SAT_3PM = datetime(2026, 11, 21, 15, 0)
BASE = EarnRule("base", 1, 100)

COFFEE = Line("LATTE", 2, 450, "coffee")  # 900
BEANS = Line("BEANS", 1, 1200, "beans")  # 1200
BASKET = Basket((COFFEE, BEANS))


def ctx(at: datetime = MON_9AM, tier: str | None = "basic", store: str = "S-001") -> ly.SaleContext:
    return ly.SaleContext(at, store, "M-1", tier)


def earned(docs: dict[str, Any], context: ly.SaleContext, basket: Basket = BASKET) -> tuple[int, list[str]]:
    program = ly.parse_program(docs, BASE)
    points, lines = ly.earn(program, basket, [line.amount for line in basket.lines], context)
    assert points == sum(x.points for x in lines)  # the explanation adds up to the total
    return points, [x.source for x in lines]


COFFEE_WEEKEND = {
    "kind": "campaign",
    "multiplier_pct": 200,
    "categories": ["coffee"],
    "weekdays": [5, 6],
    "hours": ["07:00", "11:00"],
}


@pytest.mark.parametrize(
    ("docs", "context", "points", "sources"),
    [
        ({}, ctx(), 21, ["base"]),  # 2100 minor at 1 pt / 100, rounded down
        ({"b2": {"kind": "base", "points": 3, "per_minor": 200, "priority": 1}}, ctx(), 31, ["b2"]),  # 6300/200
        ({"gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 150}}, ctx(tier="gold"), 31, ["base", "gold"]),
        ({"gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 150}}, ctx(tier="basic"), 21, ["base"]),
        ({"cw": COFFEE_WEEKEND}, ctx(SAT_9AM), 30, ["base", "cw"]),  # +9 on the coffee's 9 points
        ({"cw": COFFEE_WEEKEND}, ctx(MON_9AM), 21, ["base"]),  # not a weekend
        ({"cw": COFFEE_WEEKEND}, ctx(SAT_3PM), 21, ["base"]),  # weekend, but afternoon
        ({"bonus": {"kind": "sku_bonus", "points": 50, "skus": ["LATTE"]}}, ctx(), 121, ["base", "bonus"]),  # per unit
        (
            {"bonus": {"kind": "sku_bonus", "points": 50, "skus": ["LATTE"], "per_unit": False}},
            ctx(),
            71,
            ["base", "bonus"],
        ),
        ({"bonus": {"kind": "sku_bonus", "points": 50, "skus": ["NONE"]}}, ctx(), 21, ["base"]),
        ({"s": {"kind": "campaign", "multiplier_pct": 300, "stores": ["S-002"]}}, ctx(), 21, ["base"]),
        ({"s": {"kind": "campaign", "multiplier_pct": 300, "stores": ["S-001"]}}, ctx(), 63, ["base", "s"]),
        ({"d": {"kind": "campaign", "multiplier_pct": 200, "starts": "2026-12-01"}}, ctx(), 21, ["base"]),
        ({"d": {"kind": "campaign", "multiplier_pct": 200, "ends": "2026-11-23T09:00"}}, ctx(), 21, ["base"]),
        ({"d": {"kind": "campaign", "multiplier_pct": 200, "ends": "2026-11-23T09:01"}}, ctx(), 42, ["base", "d"]),
        ({"cap": {"kind": "cap", "cap": 10}}, ctx(), 10, ["base", "cap"]),
        # stack: both campaigns add; replace: the later one drops the earlier; stop: ends evaluation
        (
            {
                "a": {"kind": "campaign", "multiplier_pct": 200, "priority": 1},
                "b": {"kind": "campaign", "multiplier_pct": 300, "priority": 2},
            },
            ctx(),
            84,
            ["base", "a", "b"],
        ),
        (
            {
                "a": {"kind": "campaign", "multiplier_pct": 200, "priority": 1},
                "b": {"kind": "campaign", "multiplier_pct": 300, "priority": 2, "mode": "replace"},
            },
            ctx(),
            63,
            ["base", "b"],
        ),
        (
            {
                "a": {"kind": "campaign", "multiplier_pct": 200, "priority": 1, "mode": "stop"},
                "b": {"kind": "campaign", "multiplier_pct": 300, "priority": 2},
            },
            ctx(),
            42,
            ["base", "a"],
        ),
    ],
    ids=lambda v: "" if not isinstance(v, int) else str(v),
)
def test_earning_rules(docs: dict[str, Any], context: ly.SaleContext, points: int, sources: list[str]) -> None:
    assert earned(docs, context) == (points, sources)


def test_night_hours_wrap_midnight() -> None:
    night = {"n": {"kind": "campaign", "multiplier_pct": 200, "hours": ["22:00", "02:00"]}}
    assert earned(night, ctx(datetime(2026, 11, 23, 23, 30)))[0] == 42
    assert earned(night, ctx(datetime(2026, 11, 23, 1, 59)))[0] == 42
    assert earned(night, ctx(datetime(2026, 11, 23, 2, 0)))[0] == 21


def test_anonymous_earns_nothing() -> None:
    program = ly.parse_program({}, BASE)
    assert ly.earn(program, BASKET, [2100, 0], ly.SaleContext(MON_9AM, "S-001")) == (0, ())


def test_coupon_points_come_after_campaigns_and_before_the_cap() -> None:
    program = ly.parse_program({"cap": {"kind": "cap", "cap": 100}}, BASE)
    extra = [ly.CouponPoints("DOUBLE", multiplier_pct=200), ly.CouponPoints("BONUS", bonus=500)]
    points, lines = ly.earn(program, BASKET, [2100, 0], ctx(), extra)
    assert points == 100
    assert [(x.source, x.points) for x in lines] == [("base", 21), ("BONUS", 500), ("DOUBLE", 21), ("cap", -442)]


@pytest.mark.parametrize(
    "doc",
    [
        {"kind": "nope"},
        {"kind": "campaign", "mode": "sometimes"},
        {"kind": "campaign", "multiplier_pct": -1},
        {"kind": "campaign", "weekdays": [7]},
        {"kind": "campaign", "hours": ["25:00", "26:00"]},
        {"kind": "base", "per_minor": 0},
        {"kind": "campaign", "starts": "tomorrow"},
        {"kind": "campaign", "multiplier_pct": 1.5},
    ],
)
def test_bad_rule_documents_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(ly.DocumentError):
        ly.parse_program({"r": doc})


LADDER = ly.Ladder((ly.TierLevel("basic", 0), ly.TierLevel("silver", 500), ly.TierLevel("gold", 2000)))


@pytest.mark.parametrize(
    ("current", "value", "after_sale", "after_review"),
    [
        ("basic", 0, "basic", "basic"),
        ("basic", 499, "basic", "basic"),
        ("basic", 500, "silver", "silver"),
        ("basic", 2500, "gold", "gold"),
        ("gold", 100, "gold", "silver"),  # a review drops one level at most
        ("silver", 100, "silver", "basic"),
        ("gold", 2000, "gold", "gold"),
    ],
)
def test_tiers(current: str, value: int, after_sale: str, after_review: str) -> None:
    assert ly.upgrade(current, value, LADDER) == after_sale
    assert ly.review_tier(current, value, LADDER) == after_review


POLICY = ly.Redemption(unit_points=100, unit_value=50, min_points=200, max_points=1000, max_pct=50)


@pytest.mark.parametrize(
    ("points", "balance", "due", "code"),
    [
        (0, 0, 1000, None),
        (200, 500, 1000, None),
        (150, 500, 1000, "points_not_whole_units"),
        (100, 500, 1000, "points_below_minimum"),
        (1100, 5000, 10000, "points_above_maximum"),
        (400, 300, 1000, "insufficient_points"),
        (1000, 5000, 900, "points_exceed_sale"),  # 1000 pt = 500, more than 50 % of 900
    ],
)
def test_redemption_limits(points: int, balance: int, due: int, code: str | None) -> None:
    assert ly.redemption_refusal(points, balance, due, POLICY) == code


@pytest.mark.parametrize(
    ("balance", "due", "most"),
    [(5000, 10000, 1000), (5000, 900, 900), (5000, 850, 800), (150, 10000, 0), (250, 10000, 200), (5000, 0, 0)],
)
def test_max_redeemable(balance: int, due: int, most: int) -> None:
    assert ly.max_redeemable(balance, due, POLICY) == most
    assert ly.redemption_refusal(most, balance, due, POLICY) is None


def test_lots_lock_expire_and_spend_oldest_first() -> None:
    policy = ly.LotPolicy(lock_days=7, expire_days=365)
    day0 = datetime(2026, 1, 1)
    a = ly.new_lot("a", 100, day0, policy)
    b = ly.new_lot("b", 50, day0 + timedelta(days=10), policy)
    assert ly.lot_state([a, b], day0 + timedelta(days=8)) == ly.LotState(available=100, locked=50, expired=0)
    assert ly.lot_state([a, b], day0 + timedelta(days=366)) == ly.LotState(available=50, locked=0, expired=100)
    later = day0 + timedelta(days=20)
    assert ly.consume([b, a], 120, later) == [("a", 100), ("b", 20)]  # a expires first
    with pytest.raises(ValueError):
        ly.consume([a, b], 151, later)
    assert ly.expire([a, b], day0 + timedelta(days=366)) == [("a", 100)]


@pytest.mark.parametrize(
    ("amount", "weights", "parts"),
    [
        (2, [1, 1, 1], [1, 1, 0]),
        (10, [1, 1, 1], [1, 1, 1]),
        (10, [2, 3, 5], [2, 3, 5]),
        (3, [1, 1, 1, 1], [1, 1, 1, 0]),
        (0, [5, 5], [0, 0]),
        (100, [30, 70], [30, 70]),
        (500, [30, 70], [30, 70]),
        (7, [0, 10, 0], [0, 7, 0]),
    ],
)
def test_allocate_is_exact(amount: int, weights: list[int], parts: list[int]) -> None:
    assert ly.allocate(amount, weights) == parts
