"""Head office's check of a sale a till reported: price it again with the same pure rules.

The till journals each sale with its lines, local time, store, tier, coupons and points paid.
Head office holds the same rule and coupon documents it sent down, runs ``terminal.pricing`` on
the reported facts, and names every figure that differs. A difference is not refused (an offline
sale is a fact); it is reported for reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from terminal import coupons as cp
from terminal import loyalty as ly
from terminal import pricing
from terminal.model import Basket, EarnRule, Line, Quote

CHECKED = ("total", "discount", "points_redeemed", "points_earned", "payable")


def recompute(
    payload: Mapping[str, Any],
    rule_docs: Mapping[str, Mapping[str, Any]],
    coupon_docs: Mapping[str, Mapping[str, Any]],
    base: EarnRule | None = None,
) -> Quote:
    """The quote head office computes for a reported ``sale`` payload."""
    lines = tuple(
        Line(x["sku"], int(x["quantity"]), int(x["unit_price"]), x.get("category", "")) for x in payload["lines"]
    )
    member_id = payload.get("member_id")
    tier = payload.get("tier")
    at = datetime.fromisoformat(payload["local_time"])
    ctx = ly.SaleContext(at, payload.get("store_id", ""), member_id, tier)
    program = ly.parse_program(rule_docs, base)
    used = [str(c) for c in payload.get("coupons", [])]
    offers = [cp.Offer(cp.parse_coupon(cid, coupon_docs[cid])) for cid in used if cid in coupon_docs]
    redeemed = int(payload.get("points_redeemed", 0))
    # The till checked the balance; head office prices the points the till says were paid.
    member = pricing.Member(member_id, tier or "", redeemed) if member_id else None
    return pricing.price(program, Basket(lines), ctx, member, offers, redeemed)


def differences(
    payload: Mapping[str, Any],
    rule_docs: Mapping[str, Mapping[str, Any]],
    coupon_docs: Mapping[str, Mapping[str, Any]],
    base: EarnRule | None = None,
) -> dict[str, tuple[int, int]]:
    """Every checked figure where the till's report and head office's price differ: (till, hq)."""
    quote = recompute(payload, rule_docs, coupon_docs, base)
    mine = {
        "total": quote.total, "discount": quote.discount, "points_redeemed": quote.points_redeemed,
        "points_earned": quote.points_earned, "payable": quote.payable,
    }
    return {k: (int(payload.get(k, 0)), v) for k, v in mine.items() if int(payload.get(k, 0)) != v}
