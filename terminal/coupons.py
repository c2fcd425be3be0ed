"""Coupons: validation and application, pure functions over coupon documents from head office.

Kinds: ``amount_off`` (value = minor units), ``percent_off`` (value = percent; target basket, items
(SKUs/categories) or the cheapest matching item), ``free_item`` (one unit of the cheapest matching
item), ``buy_x_get_y`` (for every buy+get matching units, the get cheapest are free),
``bonus_points`` (value = points) and ``points_multiplier`` (value = percent of the base points,
200 = double).

Application order is fixed, whatever order coupons are presented in: free_item, buy_x_get_y,
percent_off, amount_off (each group by coupon id), then the points coupons. Each discount works on
what earlier discounts left of a line, so no discount exceeds what it applies to and no line goes
below zero; a percentage rounds down per line; an amount off a group of lines is shared in
proportion (``loyalty.allocate``).

Checks, in order, each with a stable code: validity window (``coupon_not_yet_valid``,
``coupon_expired``), weekday (``coupon_wrong_day``), hours (``coupon_wrong_time``), store
(``coupon_wrong_store``), merchant (``coupon_other_merchant``: a merchant's coupon at another merchant's
till; a chain-wide coupon, or a till that does not know its merchant yet, passes), member only (``coupon_members_only``), one member
(``coupon_not_this_member``), tier (``coupon_wrong_tier``), global use limit (``coupon_used_up``),
this till's allocation of the coupon's flash-drop pool (``coupon_allocation_used``: none held, or all of it
redeemed here), per-member limit (``coupon_already_used``), minimum spend on the basket before discounts
(``coupon_min_spend``), required items (``coupon_required_items``), and after application a coupon
that takes nothing off and adds no points is ``coupon_not_applicable``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from terminal.loyalty import CouponPoints, DocumentError, SaleContext, Scope, When, allocate, parse_scope, parse_when
from terminal.model import Basket


class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"
    PERCENT_OFF = "percent_off"
    FREE_ITEM = "free_item"
    BUY_X_GET_Y = "buy_x_get_y"
    BONUS_POINTS = "bonus_points"
    POINTS_MULTIPLIER = "points_multiplier"


class Target(StrEnum):
    BASKET = "basket"
    ITEMS = "items"
    CHEAPEST = "cheapest"


APPLY_ORDER = {
    CouponKind.FREE_ITEM: 0,
    CouponKind.BUY_X_GET_Y: 1,
    CouponKind.PERCENT_OFF: 2,
    CouponKind.AMOUNT_OFF: 3,
    CouponKind.BONUS_POINTS: 4,
    CouponKind.POINTS_MULTIPLIER: 5,
}
POINTS_KINDS = {CouponKind.BONUS_POINTS, CouponKind.POINTS_MULTIPLIER}


@dataclass(frozen=True, slots=True)
class Coupon:
    coupon_id: str
    kind: CouponKind
    value: int = 0
    target: Target = Target.BASKET
    scope: Scope = Scope()
    buy: int = 0
    get: int = 0
    when: When = When()
    min_spend: int = 0
    required_skus: frozenset[str] = frozenset()
    member_only: bool = False
    member_id: str | None = None
    tiers: frozenset[str] = frozenset()
    limit_global: int = 0  # 0 = no limit; single-use coupons have 1
    limit_per_member: int = 0
    exclusive: bool = False
    text: str = ""
    pool: str | None = None
    """The flash-drop quantity pool this coupon redeems from (head office's ``hq.pools``): a till redeems
    it only within the allocation head office granted it."""
    merchant_id: str | None = None
    """The merchant whose stores alone take this coupon; None: the whole chain's."""

    @property
    def needs_member(self) -> bool:
        return self.member_only or self.member_id is not None or bool(self.tiers) or self.kind in POINTS_KINDS

    @property
    def members_own(self) -> bool:
        """A personal coupon whose worth goes to whoever pays the basket (money off, an item): the member's
        value, spent only on their proof. One of points kinds pays into the member's own account, so
        knowing the member uses it, as knowing them earns points."""
        return self.member_id is not None and self.kind not in POINTS_KINDS


@dataclass(frozen=True, slots=True)
class Offer:
    """A coupon offered for a sale, with the uses known to the till (head office's count + local)."""

    coupon: Coupon
    used: int = 0
    used_by_member: int = 0
    pool_headroom: int | None = None
    """For a pooled coupon: units of this till's allocation not yet redeemed here; None when the till
    holds no allocation of the pool (never granted, or the pool is closed)."""


def offer_again(coupon: Coupon) -> Offer:
    """A coupon a sale already used, priced again (a refund's remaining lines, head office's check): its use
    and its pool's unit were taken when the sale was made, so no use limit or allocation is checked again."""
    return Offer(coupon, pool_headroom=None if coupon.pool is None else 1)


@dataclass(frozen=True, slots=True)
class Applied:
    """The effect of a set of coupons on a basket."""

    line_discounts: tuple[int, ...]
    by_coupon: Mapping[str, int]  # coupon id -> minor units taken off
    points: tuple[CouponPoints, ...]

    @property
    def discount(self) -> int:
        return sum(self.line_discounts)


def _pos_int(doc: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DocumentError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


POOL_ID_MAX = 128


def parse_pool(coupon_id: str, doc: Mapping[str, Any]) -> str | None:
    """The coupon's pool id (``"pool": "FLASH-1"``), None when it has none."""
    if "pool" not in doc or doc["pool"] is None:
        return None
    pool = doc["pool"]
    if not isinstance(pool, str) or not 0 < len(pool) <= POOL_ID_MAX or pool != pool.strip():
        raise DocumentError(
            f"coupon {coupon_id}: pool must be a pool id (1..{POOL_ID_MAX} characters, no surrounding spaces), "
            f"got {pool!r}"
        )
    return pool


def parse_coupon(coupon_id: str, doc: Mapping[str, Any]) -> Coupon:
    """A coupon document, e.g. ``{"kind": "percent_off", "value": 10, "target": "items",
    "categories": ["coffee"], "ends": "2026-12-31", "limits": {"per_member": 1}}``."""
    try:
        kind = CouponKind(str(doc.get("kind")))
        target = Target(doc.get("target", "basket"))
    except ValueError as exc:
        raise DocumentError(f"coupon {coupon_id}: {exc}") from exc
    value = _pos_int(doc, "value")
    if kind is CouponKind.PERCENT_OFF and not 0 < value <= 100:
        raise DocumentError(f"coupon {coupon_id}: percent_off value must be 1..100")
    limits = doc.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise DocumentError(f"coupon {coupon_id}: limits must be an object")
    buy, get = _pos_int(doc, "buy"), _pos_int(doc, "get")
    if kind is CouponKind.BUY_X_GET_Y and (buy < 1 or get < 1):
        raise DocumentError(f"coupon {coupon_id}: buy_x_get_y needs buy >= 1 and get >= 1")
    member_id = doc.get("member_id")
    return Coupon(
        coupon_id,
        kind,
        value,
        target,
        parse_scope(doc),
        buy,
        get,
        parse_when(doc),
        _pos_int(doc, "min_spend"),
        frozenset(doc.get("required_skus") or ()),
        bool(doc.get("member_only", False)),
        str(member_id) if member_id else None,
        frozenset(doc.get("tiers") or ()),
        1 if doc.get("single_use") else _pos_int(limits, "global"),
        _pos_int(limits, "per_member"),
        bool(doc.get("exclusive", False)),
        str(doc.get("text", "")),
        parse_pool(coupon_id, doc),
        str(doc["merchant_id"]) if doc.get("merchant_id") else None,
    )


def refusal(offer: Offer, basket: Basket, ctx: SaleContext) -> str | None:
    """Why a coupon cannot be used on this sale (a stable code), or None if it may be tried."""
    coupon = offer.coupon
    if (code := coupon.when.refusal(ctx)) is not None:
        return code
    if coupon.merchant_id is not None and ctx.merchant_id is not None and coupon.merchant_id != ctx.merchant_id:
        return "coupon_other_merchant"
    if coupon.needs_member and ctx.member_id is None:
        return "coupon_members_only"
    if coupon.member_id is not None and coupon.member_id != ctx.member_id:
        return "coupon_not_this_member"
    if coupon.tiers and ctx.tier not in coupon.tiers:
        return "coupon_wrong_tier"
    if coupon.limit_global and offer.used >= coupon.limit_global:
        return "coupon_used_up"
    if coupon.pool is not None and (offer.pool_headroom is None or offer.pool_headroom < 1):
        return "coupon_allocation_used"
    if coupon.limit_per_member and offer.used_by_member >= coupon.limit_per_member:
        return "coupon_already_used"
    if coupon.min_spend and basket.total < coupon.min_spend:
        return "coupon_min_spend"
    if coupon.required_skus and not coupon.required_skus <= {line.sku for line in basket.lines}:
        return "coupon_required_items"
    return None


def _matching(coupon: Coupon, basket: Basket, nets: Sequence[int]) -> list[int]:
    """Indexes of the lines a coupon may touch (whole basket for basket-wide coupons)."""
    everything = coupon.target is Target.BASKET and coupon.kind in {CouponKind.AMOUNT_OFF, CouponKind.PERCENT_OFF}
    return [i for i, line in enumerate(basket.lines) if nets[i] > 0 and (everything or coupon.scope.matches(line))]


def _cheapest_units(basket: Basket, indexes: Iterable[int], units: int) -> dict[int, int]:
    """The ``units`` cheapest units among the lines: line index -> units taken (ties: first line)."""
    taken: dict[int, int] = {}
    for i in sorted(indexes, key=lambda i: (basket.lines[i].unit_price, i)):
        if units <= 0:
            break
        take = min(units, basket.lines[i].quantity)
        taken[i] = take
        units -= take
    return taken


def _line_cuts(coupon: Coupon, basket: Basket, nets: Sequence[int]) -> dict[int, int]:
    """Minor units this coupon takes off each line, given what is left of the lines (``nets``)."""
    idx = _matching(coupon, basket, nets)
    if not idx:
        return {}
    if coupon.kind is CouponKind.FREE_ITEM:
        taken = _cheapest_units(basket, idx, 1)
        return {i: min(n * basket.lines[i].unit_price, nets[i]) for i, n in taken.items()}
    if coupon.kind is CouponKind.BUY_X_GET_Y:
        units = sum(basket.lines[i].quantity for i in idx)
        free = units // (coupon.buy + coupon.get) * coupon.get
        taken = _cheapest_units(basket, idx, free)
        return {i: min(n * basket.lines[i].unit_price, nets[i]) for i, n in taken.items()}
    if coupon.kind is CouponKind.PERCENT_OFF:
        if coupon.target is Target.CHEAPEST:
            i = min(idx, key=lambda i: (basket.lines[i].unit_price, i))
            return {i: min(basket.lines[i].unit_price, nets[i]) * coupon.value // 100}
        return {i: nets[i] * coupon.value // 100 for i in idx}
    if coupon.kind is CouponKind.AMOUNT_OFF:
        shares = allocate(coupon.value, [nets[i] for i in idx])
        return dict(zip(idx, shares, strict=True))
    return {}


def apply(coupons: Iterable[Coupon], basket: Basket) -> Applied:
    """Apply coupons in the fixed order; the result does not depend on the order given."""
    nets = [line.amount for line in basket.lines]
    by_coupon: dict[str, int] = {}
    points: list[CouponPoints] = []
    for coupon in sorted(coupons, key=lambda c: (APPLY_ORDER[c.kind], c.coupon_id)):
        if coupon.kind is CouponKind.BONUS_POINTS:
            points.append(CouponPoints(coupon.coupon_id, bonus=coupon.value, text=coupon.text or f"+{coupon.value} pt"))
            continue
        if coupon.kind is CouponKind.POINTS_MULTIPLIER:
            text = coupon.text or f"points x{coupon.value}%"
            points.append(CouponPoints(coupon.coupon_id, multiplier_pct=coupon.value, text=text))
            continue
        cuts = _line_cuts(coupon, basket, nets)
        for i, cut in cuts.items():
            nets[i] -= cut
        by_coupon[coupon.coupon_id] = sum(cuts.values())
    discounts = tuple(line.amount - net for line, net in zip(basket.lines, nets, strict=True))
    return Applied(discounts, by_coupon, tuple(points))
