"""Head office's check of a sale a till reported: price it again with the same pure rules.

The till journals each sale with its lines, local time, store, tier, coupons and points paid.
Head office holds the same rule and coupon documents it sent down, runs ``terminal.pricing`` on
the reported facts, and names every figure that differs. A difference is not refused (an offline
sale is a fact); it is reported for reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sync.protocol import RefundPayload, SalePayload
from terminal import coupons as cp
from terminal import loyalty as ly
from terminal import pricing
from terminal.model import Basket, EarnRule, Line, Quote

CHECKED = ("total", "discount", "points_redeemed", "points_earned", "payable")


def program_of(rule_docs: Mapping[str, Mapping[str, Any]], base: EarnRule | None = None) -> ly.Program:
    """Head office's rule documents as the program the tills run (parse once, price many sales)."""
    return ly.parse_program(rule_docs, base)


def sale_context(sale: SalePayload) -> ly.SaleContext:
    """The sale's context as the rules see it: the store's wall-clock time (an offset a till wrote is
    dropped, as the till's own pricing never has one), store, member, tier."""
    local = datetime.fromisoformat(sale.local_time).replace(tzinfo=None)
    return ly.SaleContext(local, sale.store_id, sale.member_id, sale.tier)


def recompute(sale: SalePayload, program: ly.Program, coupon_docs: Mapping[str, Mapping[str, Any]]) -> Quote:
    """The quote head office computes for a reported sale."""
    lines = tuple(Line(x.sku, x.quantity, x.unit_price, x.category) for x in sale.lines)
    ctx = sale_context(sale)
    # Use limits and flash-drop pools are not checked again here: ingest counts them (hq.pools).
    offers = [cp.offer_again(cp.parse_coupon(cid, coupon_docs[cid])) for cid in sale.coupons if cid in coupon_docs]
    # The till checked the balance; head office prices the points the till says were paid as money (the
    # points that bought rewards of the catalogue are checked against the catalogue, hq.rewards).
    paid = sale.points_redeemed - sale.reward_points
    member = pricing.Member(sale.member_id, sale.tier or "", paid) if sale.member_id else None
    return pricing.price(program, Basket(lines), ctx, member, offers, paid)


def differences(
    sale: SalePayload, program: ly.Program, coupon_docs: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[int, int]]:
    """Every checked figure where the till's report and head office's price differ: (till, hq)."""
    quote = recompute(sale, program, coupon_docs)
    mine = {
        "total": quote.total,
        "discount": quote.discount,
        "points_redeemed": quote.points_redeemed + sale.reward_points,
        "points_earned": quote.points_earned,
        "payable": quote.payable,
    }
    theirs = {
        "total": sale.total,
        "discount": sale.discount,
        "points_redeemed": sale.points_redeemed,
        "points_earned": sale.points_earned,
        "payable": sale.payable,
    }
    return {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}


def refund_priced(
    sale: SalePayload,
    earlier: Sequence[RefundPayload],
    refund: RefundPayload,
    program: ly.Program,
    coupon_docs: Mapping[str, Mapping[str, Any]],
) -> pricing.RefundResult:
    """What head office's rules give and take back for ``refund`` of ``sale``, after the ``earlier`` refunds
    (the points they take back, the coupons they give back): the basket that stays is priced again, as the
    till does (``terminal.pricing.refund``)."""
    lines = tuple(Line(x.sku, x.quantity, x.unit_price, x.category) for x in sale.lines)
    state = pricing.SaleState(
        Basket(lines), sale.payable, sale.points_earned, sale.points_redeemed - sale.reward_points, tuple(sale.coupons)
    )
    ctx = sale_context(sale)
    used = [cp.parse_coupon(cid, coupon_docs[cid]) for cid in sale.coupons if cid in coupon_docs]
    for before in earlier:
        state = pricing.refund(program, state, _returned(before), ctx, used).after
    return pricing.refund(program, state, _returned(refund), ctx, used)


def _returned(refund: RefundPayload) -> dict[int, int]:
    units: dict[int, int] = {}
    for x in refund.returned:
        units[x.line] = units.get(x.line, 0) + x.quantity
    return units
