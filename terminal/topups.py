"""Top-ups sold at the till: head office's per-till policy and its limits, checked with the same functions
by the till (before it approves) and by head office (when the entry arrives). Pure: no database, no I/O.

The policy is head office's (``tillpoint hq till-topups``), sent down with every pull; a till's own
configuration has no say. Every limit is in minor units, per till:

    enabled           head office enabled this till for top-ups
    per_transaction   one top-up
    per_day           all of this till's top-ups in one business day (voids give room back)
    per_member_day    one member's top-ups at this till in one business day
    offline_total     top-ups taken while head office is unreachable and not acknowledged yet (0: none offline)

An enabled till has every online limit above zero: nothing here means "no limit", so a stolen till
credential can credit at most ``per_day`` a business day at that till, and no more than
``per_member_day`` to any one member.

A void of a top-up (``void_refusal``) is the whole amount, at the till that sold it, on the business day
it was sold, while the member's balance at the till still holds it: value already spent is not paid out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from terminal import payments as pay
from terminal.errors import Code
from terminal.money import MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class TopupPolicy:
    enabled: bool = False
    per_transaction: int = 0
    per_day: int = 0
    per_member_day: int = 0
    offline_total: int = 0

    def problem(self) -> str | None:
        """Why head office may not hold this policy for a till; None when it may."""
        limits = (self.per_transaction, self.per_day, self.per_member_day, self.offline_total)
        if any(not 0 <= n <= MAX_AMOUNT for n in limits):
            return f"every limit is 0..{MAX_AMOUNT} minor units"
        if not self.enabled:
            return None
        if min(self.per_transaction, self.per_day, self.per_member_day) <= 0:
            return "an enabled till needs per_transaction, per_day and per_member_day above zero"
        if self.per_transaction > self.per_day or self.per_member_day > self.per_day:
            return "per_transaction and per_member_day may not exceed per_day"
        return None

    def to_doc(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "per_transaction": self.per_transaction,
            "per_day": self.per_day,
            "per_member_day": self.per_member_day,
            "offline_total": self.offline_total,
        }


def policy_from_doc(doc: Mapping[str, Any] | None) -> TopupPolicy:
    """The policy a document states; anything unreadable is a till not enabled."""
    if not doc:
        return TopupPolicy()
    try:
        numbers = [int(doc.get(k, 0)) for k in ("per_transaction", "per_day", "per_member_day", "offline_total")]
        return TopupPolicy(doc.get("enabled") is True, *numbers)
    except (TypeError, ValueError, AttributeError):
        return TopupPolicy()


def policy_zone(doc: Mapping[str, Any] | None) -> ZoneInfo | None:
    """The store's time zone the policy carries; None without one, or when it names none this till's time zone
    database holds as a zone (unknown, not a normalised key, a directory of zones, a name too long for a file)."""
    try:
        return ZoneInfo(str((doc or {})["timezone"]))
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def business_day(moment: datetime, doc: Mapping[str, Any] | None) -> str:
    """The business day of ``moment`` (an aware time) in the store's calendar the policy carries (its time
    zone, and the local HH:MM its day starts), as head office files entries; without one, the local date."""
    zone = policy_zone(doc)
    if zone is None:
        return moment.astimezone().date().isoformat()
    try:
        hours, minutes = (int(x) for x in str((doc or {}).get("day_starts", "00:00")).split(":"))
        return (moment.astimezone(zone) - timedelta(hours=hours, minutes=minutes)).date().isoformat()
    except (ValueError, TypeError, OverflowError):
        return moment.astimezone().date().isoformat()


@dataclass(frozen=True, slots=True)
class Tally:
    """What this till already credited: today in all, today to this member, and offline not yet acknowledged."""

    till_day: int = 0
    member_day: int = 0
    offline_pending: int = 0


def over_limit(amount: int, policy: TopupPolicy, tally: Tally) -> Code | None:
    """Why a top-up of ``amount`` breaks the till's policy (online and offline alike), or None."""
    if not policy.enabled:
        return Code.TOPUP_NOT_ENABLED
    if not 0 < amount <= MAX_AMOUNT:
        return Code.TOPUP_BAD_AMOUNT
    if amount > policy.per_transaction:
        return Code.TOPUP_LIMIT_TRANSACTION
    if tally.till_day + amount > policy.per_day:
        return Code.TOPUP_LIMIT_DAY
    if tally.member_day + amount > policy.per_member_day:
        return Code.TOPUP_LIMIT_MEMBER_DAY
    return None


def refusal(
    amount: int, policy: TopupPolicy, tally: Tally, offline: pay.OfflineState, limits: pay.RiskLimits
) -> Code | None:
    """The till's check: the policy's limits, and while head office is unreachable the same offline rules
    as account payments (how long offline, the clock) plus the policy's offline total."""
    code = over_limit(amount, policy, tally)
    if code is not None or offline.offline_for_s is None:
        return code
    refused = pay.clock_refusal(offline, limits)
    if refused is not None:
        return refused
    if tally.offline_pending + amount > policy.offline_total:
        return Code.TOPUP_LIMIT_OFFLINE
    return None


@dataclass(frozen=True, slots=True)
class Sold:
    """A top-up as the till holds it, for its void."""

    txn_id: str
    member_id: str
    amount: int
    day: str
    voided_by: str | None = None


def void_refusal(sold: Sold | None, today: str, balance: int) -> Code | None:
    """Why the till may not void this top-up now (``balance``: the member's stored value at the till)."""
    if sold is None:
        return Code.NOT_A_TOPUP
    if sold.voided_by:
        return Code.ALREADY_VOIDED
    if sold.day != today:
        return Code.TOPUP_VOID_OTHER_DAY
    if balance < sold.amount:
        return Code.TOPUP_VOID_SPENT
    return None
