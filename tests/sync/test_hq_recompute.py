"""Head office and the till compute the same quote from the same documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hq.recompute import differences, program_of
from sync.protocol import SalePayload
from terminal import pricing
from terminal.model import Basket, EarnRule, Line, Member
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries

BASE = EarnRule("base", 1, 100)
RULES = {
    "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 60},
    "gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 150},
    "coffee": {"kind": "campaign", "multiplier_pct": 200, "categories": ["coffee"], "hours": ["06:00", "23:00"]},
    "beans": {"kind": "sku_bonus", "points": 25, "skus": ["BEANS"]},
    "cap": {"kind": "cap", "cap": 400},
}
COUPONS = {
    "P10": {"kind": "percent_off", "value": 10},
    "A300": {"kind": "amount_off", "value": 300, "min_spend": 1000},
    "FREEMUFFIN": {"kind": "free_item", "skus": ["MUFFIN"]},
    "B2G1": {"kind": "buy_x_get_y", "buy": 2, "get": 1, "categories": ["coffee"]},
    "EXCL": {"kind": "amount_off", "value": 900, "exclusive": True},
    "BONUS": {"kind": "bonus_points", "value": 40},
    "DOUBLE": {"kind": "points_multiplier", "value": 200, "member_id": "M-1"},
}
ITEMS = [("LATTE", 450, "coffee"), ("MUFFIN", 300, "bakery"), ("BEANS", 1200, "beans"), ("MILK", 150, "dairy")]

baskets = st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(1, 4)), min_size=1, max_size=4).map(
    lambda xs: Basket(tuple(Line(sku, q, price, cat) for (sku, price, cat), q in xs))
)


@settings(max_examples=60, deadline=None)
@given(
    basket=baskets,
    codes=st.lists(st.sampled_from(sorted(COUPONS)), max_size=4),
    redeem=st.booleans(),
    gold=st.booleans(),
)
@pytest.mark.slow
def test_head_office_recomputes_what_the_till_reported(
    tmp_path_factory: object, basket: Basket, codes: list[str], redeem: bool, gold: bool
) -> None:
    path = Path(tmp_path_factory.mktemp("till")) / "t.db"  # type: ignore[attr-defined]
    store = Store.open(path)
    try:
        store.apply_changes([Member("M-1", "Aiko", "gold" if gold else "basic", 2000)], [], [BASE], 1)
        store.put_docs("rule_docs", dict(RULES))
        store.put_docs("coupon_docs", dict(COUPONS))
        service = Service(store, "T-1", clock=lambda: 1_790_000_000.0, spend_needs_proof=False)
        service.commit(service.quote("M-1", basket, codes, pricing.REDEEM_MAX if redeem else 0))
        payload = store.entries()[-1].payload
    finally:
        store.close()
    assert differences(SalePayload.model_validate(payload), program_of(RULES, BASE), COUPONS) == {}


def test_a_tampered_report_is_named() -> None:
    payload = entries.sale(
        "M-1",
        900,
        earned=99,
        tier="basic",
        local_time="2026-11-23T09:00:00",
        lines=[{"sku": "LATTE", "quantity": 2, "unit_price": 450, "category": "coffee"}],
    )
    assert differences(SalePayload.model_validate(payload), program_of(RULES, BASE), COUPONS) == {
        "points_earned": (99, 18)
    }
