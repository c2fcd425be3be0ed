"""Earning rules: pure functions from a basket and a member to points, explained line by line."""

from __future__ import annotations

from terminal.model import Basket, EarnRule, Member, Quote, QuoteLine
from terminal.money import floor_div


def base_points(rule: EarnRule, amount: int) -> int:
    """Points for ``amount`` minor units: rounded down, never negative."""
    if amount <= 0:
        return 0
    return floor_div(amount * rule.points, rule.per_minor)


def quote(member: Member | None, basket: Basket, rule: EarnRule) -> Quote:
    """Price a basket and the points it earns; an anonymous basket earns nothing."""
    total = basket.total
    if member is None:
        return Quote(None, basket, total, 0, ())
    points = base_points(rule, total)
    line = QuoteLine(rule.rule_id, points, f"{rule.points} pt per {rule.per_minor} minor units")
    return Quote(member.member_id, basket, total, points, (line,))
