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
from sync.protocol import SalePayload
from terminal.model import Basket, EarnRule, Line, Quote

CHECKED = ("total", "discount", "points_redeemed", "points_earned", "payable")


def program_of(rule_docs: Mapping[str, Mapping[str, Any]], base: EarnRule | None = None) -> ly.Program:
    """Head office's rule documents as the program the tills run (parse once, price many sales)."""
    return ly.parse_program(rule_docs, base)


def recompute(sale: SalePayload, program: ly.Program, coupon_docs: Mapping[str, Mapping[str, Any]]) -> Quote:
    """The quote head office computes for a reported sale."""
    lines = tuple(Line(x.sku, x.quantity, x.unit_price, x.category) for x in sale.lines)
    ctx = ly.SaleContext(datetime.fromisoformat(sale.local_time), sale.store_id, sale.member_id, sale.tier)
    offers = [cp.Offer(cp.parse_coupon(cid, coupon_docs[cid])) for cid in sale.coupons if cid in coupon_docs]
    # The till checked the balance; head office prices the points the till says were paid.
    member = pricing.Member(sale.member_id, sale.tier or "", sale.points_redeemed) if sale.member_id else None
    return pricing.price(program, Basket(lines), ctx, member, offers, sale.points_redeemed)


def differences(sale: SalePayload, program: ly.Program,
                coupon_docs: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Every checked figure where the till's report and head office's price differ: (till, hq)."""
    quote = recompute(sale, program, coupon_docs)
    mine = {
        "total": quote.total, "discount": quote.discount, "points_redeemed": quote.points_redeemed,
        "points_earned": quote.points_earned, "payable": quote.payable,
    }
    theirs = {"total": sale.total, "discount": sale.discount, "points_redeemed": sale.points_redeemed,
              "points_earned": sale.points_earned, "payable": sale.payable}
    return {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}
