"""Earning rules, tiers, points as money and the points ledger: pure functions over data.

Rules arrive from head office as JSON documents (``parse_rule``); the till and head office evaluate
them with the same functions, so both compute the same points. Every amount is an integer (minor
units, points); every division rounds down (``floor_div``), the member never gets a fraction.

Earning order (fixed; docs/loyalty.md has worked examples):

  1. base        the base rate on the *eligible amount*: the basket after coupon discounts, less the
                 part paid with points (points pay nothing that earns points). One base rule: the
                 active one with the lowest (priority, rule_id); the skeleton's base rule otherwise.
  2. tier        the member's tier multiplier on the base points (extra = base * (pct - 100) / 100).
  3. campaigns   ``campaign`` (multiplier on the base points of the matching lines) and ``sku_bonus``
                 (fixed points per unit or per sale of a SKU) rules, in (priority, rule_id) order.
                 Each has a mode: ``stack`` adds its points; ``replace`` drops the campaign points
                 produced so far and keeps its own; ``stop`` adds its points and ends step 3.
  4. coupons     points multiplier coupons (on the base points) and bonus points coupons.
  5. cap         the lowest active ``cap`` rule limits the points of the sale; a negative line says so.

A rule that is not active (date range, weekday, time of day, store) is skipped silently; a line of
the quote names every rule that produced points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from terminal.model import Basket, EarnRule, Line, QuoteLine
from terminal.money import floor_div


class Mode(StrEnum):
    STACK = "stack"
    REPLACE = "replace"
    STOP = "stop"


class RuleKind(StrEnum):
    BASE = "base"
    TIER = "tier"
    CAMPAIGN = "campaign"
    SKU_BONUS = "sku_bonus"
    CAP = "cap"


class DocumentError(ValueError):
    """A rule or coupon document that does not make sense; head office must not send it."""


@dataclass(frozen=True, slots=True)
class SaleContext:
    """Where and when a sale happens, and for whom. ``at`` is the store's local wall-clock time."""

    at: datetime
    store_id: str
    member_id: str | None = None
    tier: str | None = None
    merchant_id: str | None = None
    """The merchant the till's store belongs to (head office's ``hq.merchants``); None: not known yet."""


@dataclass(frozen=True, slots=True)
class When:
    """When a rule or coupon applies: [starts, ends) local time, weekdays (0 = Monday), daily hours
    [from, to) as minutes after midnight, and stores. Empty means no limit."""

    starts: datetime | None = None
    ends: datetime | None = None
    weekdays: frozenset[int] = frozenset()
    hours: tuple[int, int] | None = None
    stores: frozenset[str] = frozenset()

    def refusal(self, ctx: SaleContext) -> str | None:
        """Why the moment or place does not fit: a coupon rejection code, or None when it fits."""
        if self.starts is not None and ctx.at < self.starts:
            return "coupon_not_yet_valid"
        if self.ends is not None and ctx.at >= self.ends:
            return "coupon_expired"
        if self.weekdays and ctx.at.weekday() not in self.weekdays:
            return "coupon_wrong_day"
        if self.hours is not None:
            minute = ctx.at.hour * 60 + ctx.at.minute
            start, end = self.hours
            inside = start <= minute < end if start <= end else (minute >= start or minute < end)
            if not inside:
                return "coupon_wrong_time"
        if self.stores and ctx.store_id not in self.stores:
            return "coupon_wrong_store"
        return None


@dataclass(frozen=True, slots=True)
class Scope:
    """Which lines something applies to: by SKU or category; empty = every line."""

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not self.skus and not self.categories

    def matches(self, line: Line) -> bool:
        return self.everything or line.sku in self.skus or line.category in self.categories


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    kind: RuleKind
    text: str = ""
    priority: int = 100
    mode: Mode = Mode.STACK
    when: When = When()
    scope: Scope = Scope()
    points: int = 0  # base: points per ``per_minor``; sku_bonus: the bonus
    per_minor: int = 100
    multiplier_pct: int = 100  # tier / campaign: 200 = double
    tier: str = ""
    per_unit: bool = True  # sku_bonus: per unit bought, or once per sale
    cap: int = 0


@dataclass(frozen=True, slots=True)
class TierLevel:
    tier: str
    threshold: int


@dataclass(frozen=True, slots=True)
class Ladder:
    """Tiers reached by points *earned* (or money spent) over a rolling window of ``window_days``.

    Upgrade: as soon as the window's value reaches a level's threshold (at the till, in the sale).
    Downgrade (``review_tier``): at a review, a member whose window value is below their tier's
    threshold drops one level at a time, never more than one per review."""

    levels: tuple[TierLevel, ...] = (TierLevel("basic", 0),)
    measure: str = "earned"  # "earned" points or "spend" in minor units
    window_days: int = 365


@dataclass(frozen=True, slots=True)
class Redemption:
    """Points as money: ``unit_points`` points pay ``unit_value`` minor units; a sale may use between
    ``min_points`` and ``max_points`` (0 = no maximum) and pay at most ``max_pct`` % of the amount due
    after coupons. Points are spent in whole units."""

    unit_points: int = 100
    unit_value: int = 100
    min_points: int = 100
    max_points: int = 0
    max_pct: int = 100


@dataclass(frozen=True, slots=True)
class LotPolicy:
    """Earned points are held for ``lock_days`` before they can be spent and expire after
    ``expire_days`` (0 = never). Spending takes the lots that expire first."""

    lock_days: int = 0
    expire_days: int = 0


@dataclass(frozen=True, slots=True)
class Program:
    """Everything head office says about earning and spending points, parsed and ready."""

    rules: tuple[Rule, ...] = ()
    ladder: Ladder = Ladder()
    redemption: Redemption = Redemption()
    lots: LotPolicy = LotPolicy()


# -- parsing the documents head office sends ---------------------------------------------------


def _dt(value: Any, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError as exc:
        raise DocumentError(f"{key}: expected an ISO date or date-time, got {value!r}") from exc


def _minutes(text: str, key: str) -> int:
    try:
        hours, minutes = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise DocumentError(f"{key}: expected HH:MM, got {text!r}") from exc
    if not (0 <= hours <= 24 and 0 <= minutes < 60):
        raise DocumentError(f"{key}: {text!r} is not a time of day")
    return hours * 60 + minutes


def _int(doc: Mapping[str, Any], key: str, default: int, low: int = 0) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DocumentError(f"{key}: expected an integer >= {low}, got {value!r}")
    return value


_NOTHING: frozenset[str] = frozenset()
_WHEN_KEYS = frozenset({"hours", "weekdays", "starts", "ends", "stores"})
_ALWAYS = When()


def _strings(doc: Mapping[str, Any], key: str) -> frozenset[str]:
    value = doc.get(key)
    if not value:
        return _NOTHING
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DocumentError(f"{key}: expected a list of strings")
    return frozenset(value)


def parse_when(doc: Mapping[str, Any]) -> When:
    if _WHEN_KEYS.isdisjoint(doc.keys()):
        return _ALWAYS
    hours = doc.get("hours")
    span = None
    if hours:
        if not isinstance(hours, list) or len(hours) != 2:
            raise DocumentError('hours: expected ["HH:MM", "HH:MM"]')
        span = (_minutes(str(hours[0]), "hours"), _minutes(str(hours[1]), "hours"))
    weekdays = doc.get("weekdays") or []
    if not isinstance(weekdays, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in weekdays):
        raise DocumentError("weekdays: expected a list of 0 (Monday) .. 6 (Sunday)")
    return When(
        _dt(doc.get("starts"), "starts"),
        _dt(doc.get("ends"), "ends"),
        frozenset(weekdays),
        span,
        _strings(doc, "stores"),
    )


def parse_scope(doc: Mapping[str, Any]) -> Scope:
    return Scope(_strings(doc, "skus"), _strings(doc, "categories"))


def parse_rule(rule_id: str, doc: Mapping[str, Any]) -> Rule:
    """One earning rule document, e.g. ``{"kind": "campaign", "multiplier_pct": 200,
    "categories": ["coffee"], "weekdays": [5, 6], "hours": ["07:00", "11:00"]}``."""
    try:
        kind = RuleKind(str(doc.get("kind")))
        mode = Mode(doc.get("mode", "stack"))
    except ValueError as exc:
        raise DocumentError(f"rule {rule_id}: {exc}") from exc
    per_minor = _int(doc, "per_minor", 100, low=1)
    rule = Rule(
        rule_id,
        kind,
        str(doc.get("text", "")),
        _int(doc, "priority", 100),
        mode,
        parse_when(doc),
        parse_scope(doc),
        _int(doc, "points", 0),
        per_minor,
        _int(doc, "multiplier_pct", 100),
        str(doc.get("tier", "")),
        bool(doc.get("per_unit", True)),
        _int(doc, "cap", 0),
    )
    return rule if rule.text else replace(rule, text=_default_text(rule))


DEFAULT_BASE_RULE = EarnRule("base", 1, 100)
"""The base rule of a chain that has set none (1 point per 100 minor units): the till's and head office's."""


def parse_program(docs: Mapping[str, Mapping[str, Any]], base: EarnRule | None = None) -> Program:
    """Rule documents by id into a Program. Special ids: ``tiers`` (the ladder), ``redemption``
    and ``points_policy``; every other document is an earning rule. ``base`` (the skeleton's
    base rule table) is the base rule when no ``base`` document is active."""
    rules: list[Rule] = []
    ladder, redemption, lots = Ladder(), Redemption(), LotPolicy()
    for rule_id, doc in sorted(docs.items()):
        kind = doc.get("kind")
        if kind == "tiers":
            levels = tuple(
                TierLevel(str(level["tier"]), _int(level, "threshold", 0)) for level in doc.get("levels", [])
            )
            if not levels:
                raise DocumentError("tiers: at least one level")
            ladder = Ladder(
                tuple(sorted(levels, key=lambda x: x.threshold)),
                str(doc.get("measure", "earned")),
                _int(doc, "window_days", 365, low=1),
            )
        elif kind == "redemption":
            redemption = Redemption(
                _int(doc, "unit_points", 100, low=1),
                _int(doc, "unit_value", 100, low=1),
                _int(doc, "min_points", 0),
                _int(doc, "max_points", 0),
                min(100, _int(doc, "max_pct", 100)),
            )
        elif kind == "points_policy":
            lots = LotPolicy(_int(doc, "lock_days", 0), _int(doc, "expire_days", 0))
        elif kind == "reward":
            continue  # the rewards catalogue (terminal.rewards) travels with the rules but earns nothing
        else:
            rules.append(parse_rule(rule_id, doc))
    if base is not None:
        # The skeleton's base rule sorts after every base document of default priority.
        rules.append(
            Rule(base.rule_id, RuleKind.BASE, "base rate", 10_000, points=base.points, per_minor=base.per_minor)
        )
    return Program(tuple(sorted(rules, key=lambda r: (r.priority, r.rule_id))), ladder, redemption, lots)


# -- earning ---------------------------------------------------------------------------------


def base_points(rule: EarnRule | Rule, amount: int) -> int:
    """Points for ``amount`` minor units at a base rate: rounded down, never negative."""
    if amount <= 0:
        return 0
    return floor_div(amount * rule.points, rule.per_minor)


def _extra(points: int, pct: int) -> int:
    """The extra points a multiplier of ``pct`` % adds to ``points`` (rounded down, never < 0)."""
    return max(0, floor_div(points * (pct - 100), 100)) if pct > 100 else 0


def _active(rule: Rule, ctx: SaleContext) -> bool:
    return rule.when.refusal(ctx) is None


@dataclass(frozen=True, slots=True)
class CouponPoints:
    """What the chosen coupons add to earning (from terminal.coupons)."""

    source: str
    multiplier_pct: int = 100
    bonus: int = 0
    text: str = ""


def coupon_extra(base: int, coupon: CouponPoints) -> int:
    """Points a points coupon adds: its multiplier applies to the base points only."""
    return _extra(base, coupon.multiplier_pct) + coupon.bonus


@dataclass(frozen=True, slots=True)
class Active:
    """The rules that apply at one moment and store, with the campaign rules indexed by SKU and
    category so a basket finds its rules without testing every rule against every line."""

    rules: tuple[Rule, ...]
    by_sku: Mapping[str, tuple[int, ...]]  # sku -> positions in ``rules``
    by_category: Mapping[str, tuple[int, ...]]
    everywhere: tuple[int, ...]  # campaign rules with no SKU or category limit


def active_rules(program: Program, ctx: SaleContext) -> Active:
    """The rules that apply at ``ctx``'s moment and store (constant within a minute)."""
    rules = tuple(r for r in program.rules if _active(r, ctx))
    by_sku: dict[str, list[int]] = {}
    by_category: dict[str, list[int]] = {}
    everywhere: list[int] = []
    for pos, rule in enumerate(rules):
        if rule.kind not in (RuleKind.CAMPAIGN, RuleKind.SKU_BONUS):
            continue
        if rule.scope.everything:
            everywhere.append(pos)
        for sku in rule.scope.skus:
            by_sku.setdefault(sku, []).append(pos)
        for category in rule.scope.categories:
            by_category.setdefault(category, []).append(pos)
    return Active(
        rules,
        {k: tuple(v) for k, v in by_sku.items()},
        {k: tuple(v) for k, v in by_category.items()},
        tuple(everywhere),
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A program narrowed to one sale (its moment, store, tier and lines), so that pricing several
    coupon combinations re-does only the arithmetic. Rules matching no line are dropped: they
    could produce no points."""

    base: Rule | None
    tier: Rule | None
    campaigns: tuple[tuple[Rule, tuple[int, ...], int, str], ...]  # rule, matching lines, units, text
    cap: Rule | None
    tier_name: str | None


def prepare(program: Program, basket: Basket, ctx: SaleContext, active: Active | None = None) -> Prepared:
    """Narrow ``program`` to one sale; ``active`` (from ``active_rules``) may be passed in when the
    caller caches it."""
    if ctx.member_id is None:
        return Prepared(None, None, (), None, None)
    active = active_rules(program, ctx) if active is None else active
    rules = active.rules
    base = next((r for r in rules if r.kind is RuleKind.BASE), None)
    tier = next((r for r in rules if r.kind is RuleKind.TIER and r.tier == ctx.tier), None)
    lines_of: dict[int, list[int]] = {pos: list(range(len(basket.lines))) for pos in active.everywhere}
    for i, line in enumerate(basket.lines):
        for pos in {*active.by_sku.get(line.sku, ()), *active.by_category.get(line.category, ())}:
            if pos not in active.everywhere:
                lines_of.setdefault(pos, []).append(i)
    campaigns = []
    for pos in sorted(lines_of):
        rule, idx = rules[pos], tuple(sorted(lines_of[pos]))
        campaigns.append((rule, idx, sum(basket.lines[i].quantity for i in idx), rule.text))
    caps = [r for r in rules if r.kind is RuleKind.CAP]
    cap = min(caps, key=lambda r: (r.cap, r.rule_id)) if caps else None
    return Prepared(base, tier, tuple(campaigns), cap, ctx.tier)


def earn(
    program: Program | Prepared,
    basket: Basket,
    eligible: Sequence[int],
    ctx: SaleContext,
    coupon_points: Iterable[CouponPoints] = (),
) -> tuple[int, tuple[QuoteLine, ...]]:
    """Points earned by a member's sale: the total and its explanation, one line per rule.

    ``eligible[i]`` is the amount of line i that earns points (after discounts and points paid)."""
    prep = program if isinstance(program, Prepared) else prepare(program, basket, ctx)
    base_rule = prep.base
    if base_rule is None:
        return 0, ()
    lines: list[QuoteLine] = []
    base = base_points(base_rule, sum(eligible))
    lines.append(
        QuoteLine(base_rule.rule_id, base, base_rule.text or f"{base_rule.points} pt per {base_rule.per_minor}")
    )
    total = base
    tier_rule = prep.tier
    if tier_rule is not None and (extra := _extra(base, tier_rule.multiplier_pct)):
        lines.append(
            QuoteLine(tier_rule.rule_id, extra, tier_rule.text or f"{prep.tier_name} x{tier_rule.multiplier_pct}%")
        )
        total += extra
    campaign = _campaigns(prep, base_rule, eligible)
    lines.extend(campaign)
    total += sum(x.points for x in campaign)
    for cp in sorted(coupon_points, key=lambda c: c.source):
        points = coupon_extra(base, cp)
        if points:
            lines.append(QuoteLine(cp.source, points, cp.text, kind="coupon"))
            total += points
    cap = prep.cap
    if cap is not None and total > cap.cap:
        lines.append(QuoteLine(cap.rule_id, cap.cap - total, cap.text or f"at most {cap.cap} pt per sale", kind="cap"))
        total = cap.cap
    return total, tuple(lines)


def _default_text(rule: Rule) -> str:
    """What a rule's line says on the receipt when head office gave it no text."""
    if rule.kind is RuleKind.CAMPAIGN:
        return f"x{rule.multiplier_pct}% on {', '.join(sorted(rule.scope.skus | rule.scope.categories)) or 'all'}"
    if rule.kind is RuleKind.SKU_BONUS:
        return f"+{rule.points} pt bonus"
    if rule.kind is RuleKind.TIER:
        return f"{rule.tier} x{rule.multiplier_pct}%"
    if rule.kind is RuleKind.CAP:
        return f"at most {rule.cap} pt per sale"
    return f"{rule.points} pt per {rule.per_minor}"


def _campaigns(prep: Prepared, base_rule: Rule, eligible: Sequence[int]) -> list[QuoteLine]:
    out: list[QuoteLine] = []
    for rule, idx, units, text in prep.campaigns:
        if rule.kind is RuleKind.CAMPAIGN:
            matched = sum([eligible[i] for i in idx])
            points = _extra(base_points(base_rule, matched), rule.multiplier_pct)
        else:
            points = rule.points * (units if rule.per_unit else 1)
        if not points:
            continue
        if rule.mode is Mode.REPLACE:
            out.clear()
        out.append(QuoteLine(rule.rule_id, points, text))
        if rule.mode is Mode.STOP:
            break
    return out


# -- tiers -------------------------------------------------------------------------------------


def tier_for(value: int, ladder: Ladder) -> str:
    """The highest level whose threshold ``value`` (earned points or spend in the window) reaches."""
    reached = [level for level in ladder.levels if value >= level.threshold]
    return reached[-1].tier if reached else ladder.levels[0].tier


def next_tier(current: str, value: int, ladder: Ladder) -> tuple[str, int] | None:
    """The next tier above ``current`` and how much window value it still needs; None at the top."""
    rank = _rank(current, ladder)
    if rank + 1 >= len(ladder.levels):
        return None
    level = ladder.levels[rank + 1]
    return level.tier, max(0, level.threshold - value)


def _rank(tier: str, ladder: Ladder) -> int:
    names = [level.tier for level in ladder.levels]
    return names.index(tier) if tier in names else 0


def upgrade(current: str, value: int, ladder: Ladder) -> str:
    """The tier after a sale: up when the window's value reached a higher threshold, never down."""
    reached = tier_for(value, ladder)
    return reached if _rank(reached, ladder) > _rank(current, ladder) else current


def review_tier(current: str, value: int, ladder: Ladder) -> str:
    """The tier after a periodic review: at most one level down when below the current threshold."""
    rank = _rank(current, ladder)
    if value >= ladder.levels[rank].threshold or rank == 0:
        return upgrade(current, value, ladder)
    return ladder.levels[rank - 1].tier


# -- points as money ---------------------------------------------------------------------------


def redeem_value(points: int, policy: Redemption) -> int:
    """Minor units that ``points`` pay (whole units only)."""
    return (points // policy.unit_points) * policy.unit_value


def max_redeemable(balance: int, due: int, policy: Redemption) -> int:
    """The most points a sale may use: bounded by the balance, the maximum, and max_pct of ``due``."""
    limit_value = floor_div(max(0, due) * policy.max_pct, 100)
    units = min(max(0, balance) // policy.unit_points, limit_value // policy.unit_value)
    if policy.max_points:
        units = min(units, policy.max_points // policy.unit_points)
    points = units * policy.unit_points
    return points if points >= policy.min_points else 0


def redemption_refusal(points: int, balance: int, due: int, policy: Redemption) -> str | None:
    """Why ``points`` cannot be used on this sale: a stable code, or None."""
    if points <= 0:
        return None
    if points % policy.unit_points:
        return "points_not_whole_units"
    if points < policy.min_points:
        return "points_below_minimum"
    if policy.max_points and points > policy.max_points:
        return "points_above_maximum"
    if points > balance:
        return "insufficient_points"
    if redeem_value(points, policy) > floor_div(max(0, due) * policy.max_pct, 100):
        return "points_exceed_sale"
    return None


# -- the points ledger ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lot:
    """Points earned by one transaction: spendable from ``available_at``, gone at ``expires_at``."""

    lot_id: str
    points: int
    remaining: int
    available_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LotState:
    available: int
    locked: int
    expired: int


def new_lot(lot_id: str, points: int, at: datetime, policy: LotPolicy) -> Lot:
    expires = at + timedelta(days=policy.expire_days) if policy.expire_days else None
    return Lot(lot_id, points, points, at + timedelta(days=policy.lock_days), expires)


def lot_state(lots: Iterable[Lot], now: datetime) -> LotState:
    available = locked = expired = 0
    for lot in lots:
        if lot.expires_at is not None and now >= lot.expires_at:
            expired += lot.remaining
        elif now < lot.available_at:
            locked += lot.remaining
        else:
            available += lot.remaining
    return LotState(available, locked, expired)


def _spend_order(lot: Lot) -> tuple[datetime, datetime, str]:
    return (lot.expires_at or datetime.max, lot.available_at, lot.lot_id)


def consume(lots: Iterable[Lot], points: int, now: datetime) -> list[tuple[str, int]]:
    """Which lots pay ``points``: spendable lots, the first to expire first. Raises ValueError if
    the spendable lots do not hold enough (the caller checks the balance first)."""
    taken: list[tuple[str, int]] = []
    left = points
    usable = [
        lot
        for lot in lots
        if lot.remaining > 0 and lot.available_at <= now and (lot.expires_at is None or now < lot.expires_at)
    ]
    for lot in sorted(usable, key=_spend_order):
        if left == 0:
            break
        take = min(left, lot.remaining)
        taken.append((lot.lot_id, take))
        left -= take
    if left:
        raise ValueError(f"{left} points more than the spendable lots hold")
    return taken


def expire(lots: Iterable[Lot], now: datetime) -> list[tuple[str, int]]:
    """The lots (and how many points) that have expired by ``now`` and still hold points."""
    return [
        (lot.lot_id, lot.remaining)
        for lot in lots
        if lot.remaining > 0 and lot.expires_at is not None and now >= lot.expires_at
    ]


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount`` over ``weights`` in proportion, exactly (largest remainder, ties to the
    first line): the parts add up to ``amount`` and none exceeds its weight when amount <= sum."""
    total = sum(weights)
    if total <= 0 or amount <= 0:
        return [0] * len(weights)
    amount = min(amount, total)
    shares = [amount * w // total for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in remainders[: amount - sum(shares)]:
        shares[i] += 1
    return shares
