"""The quote: coupons, points as money and earning put together, explained line by line. Pure.

``price`` is what the till runs for every quote and what head office runs to check a sale a till
reported (``hq.recompute`` recomputes with the same function and the same documents).

Choosing coupons: every offered coupon that passes its checks is a candidate. The candidates that
combine are applied together (adding a coupon never raises what the customer pays, so all of them is
the best such set); each exclusive coupon is also tried alone. The option worth most to the customer
wins: money off plus the money value of the points the coupons add (at the redemption rate); ties go
to fewer coupons, then to the smallest coupon ids. Offers are sorted first, so the order in which
coupons are presented never changes the result.

Refunds (``refund``): the sale is priced again without the returned units, with the sale's own
moment, store, tier and coupons (use limits and dates are not checked again). What changed is given
back: money, points redeemed, and the uses of coupons that no longer apply; points earned are clawed
back. A refund never gives points or money that the sale did not take, so buying and returning gains
nothing (the balance may go negative when clawed-back points were spent: see docs/loyalty.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from terminal import coupons as cp
from terminal import loyalty as ly
from terminal.errors import Code, Rejected
from terminal.model import Basket, Line, Quote, QuoteLine

REDEEM_MAX = -1
"""``redeem=REDEEM_MAX`` uses as many points as the policy and the balance allow."""


@dataclass(frozen=True, slots=True)
class Member:
    """What pricing needs of the member at hand."""

    member_id: str
    tier: str
    balance: int  # points spendable now
    window_value: int = 0  # points earned (or spend) in the tier window so far


@dataclass(frozen=True, slots=True)
class _Option:
    coupons: tuple[cp.Coupon, ...]
    applied: cp.Applied
    points_from: frozenset[str]  # the coupons that add points
    benefit: int


def _evaluate(
    program: ly.Program, prep: ly.Prepared, basket: Basket, ctx: ly.SaleContext, chosen: tuple[cp.Coupon, ...]
) -> _Option:
    """An option's worth to the customer: money off plus the money value (at the redemption rate)
    of the points its coupons add, before the per-sale cap. Earning rules other than the base rate
    do not depend on which coupons are chosen beyond the amounts, so they are left out here."""
    applied = cp.apply(chosen, basket)
    base = ly.base_points(prep.base, basket.total - applied.discount) if prep.base is not None else 0
    by_coupon = {c.source: ly.coupon_extra(base, c) for c in applied.points} if prep.base is not None else {}
    benefit = applied.discount + ly.redeem_value(sum(by_coupon.values()), program.redemption)
    return _Option(chosen, applied, frozenset(k for k, v in by_coupon.items() if v), benefit)


def _choose(
    program: ly.Program, prep: ly.Prepared, basket: Basket, ctx: ly.SaleContext, usable: list[cp.Coupon]
) -> _Option:
    combinable = tuple(c for c in usable if not c.exclusive)
    options = [combinable] + [(c,) for c in usable if c.exclusive]
    evaluated = [_evaluate(program, prep, basket, ctx, option) for option in options]
    return min(evaluated, key=lambda o: (-o.benefit, len(o.coupons), sorted(c.coupon_id for c in o.coupons)))


def choose_coupons(
    program: ly.Program,
    basket: Basket,
    ctx: ly.SaleContext,
    offers: Sequence[cp.Offer],
    prep: ly.Prepared | None = None,
) -> tuple[_Option, list[tuple[str, str]]]:
    """The best usable combination and, for every other offer, why it was not used."""
    refused: list[tuple[str, str]] = []
    usable: list[cp.Coupon] = []
    seen: set[str] = set()
    for offer in sorted(offers, key=lambda o: o.coupon.coupon_id):
        if offer.coupon.coupon_id in seen:
            continue
        seen.add(offer.coupon.coupon_id)
        code = cp.refusal(offer, basket, ctx)
        if code is None:
            usable.append(offer.coupon)
        else:
            refused.append((offer.coupon.coupon_id, code))
    prep = prep or ly.prepare(program, basket, ctx)
    best = _choose(program, prep, basket, ctx, usable)
    # A chosen coupon that takes nothing off and adds no points is not applicable; drop it (it
    # changed nothing, so the others stay as they are).
    kept = tuple(
        c for c in best.coupons if best.applied.by_coupon.get(c.coupon_id, 0) > 0 or c.coupon_id in best.points_from
    )
    kept_ids = {c.coupon_id for c in kept}
    tried = {c.coupon_id for c in best.coupons}
    for c in usable:
        if c.coupon_id not in kept_ids:
            refused.append((c.coupon_id, "coupon_not_applicable" if c.coupon_id in tried else "coupon_not_combinable"))
    if len(kept) != len(best.coupons):
        best = _evaluate(program, prep, basket, ctx, kept)
    return best, sorted(refused)


def price(
    program: ly.Program,
    basket: Basket,
    ctx: ly.SaleContext,
    member: Member | None,
    offers: Sequence[cp.Offer] = (),
    redeem: int = 0,
    active: ly.Active | None = None,
) -> Quote:
    """Price a basket for a member (or anonymously): coupons, points paid, points earned.
    ``active``: ``loyalty.active_rules(program, ctx)`` when the caller caches it."""
    prep = ly.prepare(program, basket, ctx, active)
    option, refused = choose_coupons(program, basket, ctx, offers, prep)
    discount = option.applied.discount
    due = basket.total - discount
    points_used = _points_to_use(program.redemption, member, due, redeem)
    value = ly.redeem_value(points_used, program.redemption)
    nets = [line.amount - d for line, d in zip(basket.lines, option.applied.line_discounts, strict=True)]
    eligible = [n - part for n, part in zip(nets, ly.allocate(value, nets), strict=True)]
    earned, earn_lines = ly.earn(prep, basket, eligible, ctx, option.applied.points)
    explain: list[QuoteLine] = [
        QuoteLine(c.coupon_id, 0, c.text or c.kind.value.replace("_", " "), kind="discount", amount=amount)
        for c in option.coupons
        if (amount := option.applied.by_coupon.get(c.coupon_id, 0))
    ]
    if points_used:
        explain.append(QuoteLine("points", -points_used, f"{points_used} pt paid", kind="redeem", amount=value))
    explain.extend(earn_lines)
    tier_after = None
    if member is not None:
        grown = member.window_value + (
            earned if program.ladder.measure == "earned" else basket.total - discount - value
        )
        tier_after = ly.upgrade(member.tier, grown, program.ladder)
    return Quote(
        member.member_id if member else None,
        basket,
        basket.total,
        earned,
        tuple(explain),
        discount,
        points_used,
        value,
        tuple(sorted(c.coupon_id for c in option.coupons)),
        tuple(refused),
        option.applied.line_discounts,
        tier_after,
    )


def _points_to_use(policy: ly.Redemption, member: Member | None, due: int, redeem: int) -> int:
    if redeem == 0:
        return 0
    if member is None:
        raise Rejected(Code.NO_MEMBER, "Points can only be paid by an identified member.")
    if redeem == REDEEM_MAX:
        return ly.max_redeemable(member.balance, due, policy)
    code = ly.redemption_refusal(redeem, member.balance, due, policy)
    if code is not None:
        raise Rejected(Code(code))
    return redeem


# -- refunds -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleState:
    """What is left of a sale after earlier refunds: enough to price the next refund."""

    basket: Basket
    payable: int
    earned: int
    redeemed: int
    coupons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RefundResult:
    money_back: int
    points_clawed: int  # earned points taken back
    points_restored: int  # redeemed points given back
    coupons_restored: tuple[str, ...]
    after: SaleState


def remaining_basket(basket: Basket, returned: dict[int, int]) -> Basket:
    """The basket less ``returned`` units (line index -> units); refuses more than was bought."""
    lines: list[Line] = []
    for i, line in enumerate(basket.lines):
        back = returned.get(i, 0)
        if back < 0 or back > line.quantity:
            raise Rejected(Code.INVALID_REFUND, f"Line {i} ({line.sku}): {back} of {line.quantity} units.")
        lines.append(replace(line, quantity=line.quantity - back))
    unknown = set(returned) - set(range(len(basket.lines)))
    if unknown:
        last = len(basket.lines) - 1  # the lines as the refund names them: from 0, as the API and --line do
        raise Rejected(Code.INVALID_REFUND, f"No line {min(unknown)} in this sale (its lines are 0 to {last}).")
    return Basket(tuple(lines))


def refund(
    program: ly.Program,
    state: SaleState,
    returned: dict[int, int],
    ctx: ly.SaleContext,
    used_coupons: Sequence[cp.Coupon],
) -> RefundResult:
    """Price what stays after returning ``returned`` units and give back the difference."""
    rest = remaining_basket(state.basket, returned)
    kept = [line for line in rest.lines if line.quantity > 0]
    if not kept:
        after = SaleState(rest, 0, 0, 0, ())
        return RefundResult(state.payable, state.earned, state.redeemed, state.coupons, after)
    lean = Basket(tuple(kept))
    offers = [cp.offer_again(c) for c in used_coupons if c.coupon_id in state.coupons]
    option, _ = choose_coupons(program, lean, replace(ctx), offers)
    due = lean.total - option.applied.discount
    redeemed = min(state.redeemed, ly.max_redeemable(state.redeemed, due, program.redemption))
    value = ly.redeem_value(redeemed, program.redemption)
    nets = [line.amount - d for line, d in zip(lean.lines, option.applied.line_discounts, strict=True)]
    eligible = [n - part for n, part in zip(nets, ly.allocate(value, nets), strict=True)]
    earned, _ = ly.earn(program, lean, eligible, ctx, option.applied.points)
    earned = min(earned, state.earned)  # a refund never gives points
    payable = min(due - value, state.payable)  # nor asks for money
    still = tuple(sorted(c.coupon_id for c in option.coupons))
    after = SaleState(rest, payable, earned, redeemed, still)
    return RefundResult(
        state.payable - payable,
        state.earned - earned,
        state.redeemed - redeemed,
        tuple(c for c in state.coupons if c not in still),
        after,
    )
