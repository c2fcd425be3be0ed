"""A member checks in from the wallet by scanning a till's rotating code (docs/checkin.md).

    till_of_code(tx, text, now) -> Till     the till that signed the code, now; CheckinRefused otherwise:
                                            ``checkin_forged`` (not a code, an unknown or revoked till, a bad
                                            signature), ``checkin_expired`` (not this step nor the one before)
    check_in(tx, settings, member, text, now) -> CheckedIn
                                            the code checked again, the visit recorded once per member, store
                                            and the store's business day (``checkin_used`` the second time),
                                            and the store's check-in campaigns decided for it, in one
                                            transaction: its reward (a personal coupon, or points credited) is the member's once

Another member scanning the same code checks in too: the code proves someone saw the till's screen within
the last minute; who it is comes from the wallet's session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from hq import campaigns, checkins
from hq.db.engine import Tx
from hq.errors import Refused
from hq.ingest import Settings, store_calendar
from sync import checkins as codes
from sync.protocol import ErrorCode

_REASONS = {"forged": ErrorCode.CHECKIN_FORGED, "expired": ErrorCode.CHECKIN_EXPIRED}


class CheckinRefused(Refused):
    """A check-in refused; ``code`` says why, stably."""


@dataclass(frozen=True, slots=True)
class Reward:
    coupon_id: str
    """The coupon's id, or the adjustment id of points credited (``points`` > 0)."""
    text: str
    points: int = 0


@dataclass(frozen=True, slots=True)
class CheckedIn:
    store_id: str
    day: str
    rewards: list[Reward]


def till_of_code(tx: Tx, text: str, now: float) -> checkins.Till:
    """The registered, not revoked till that signed ``text`` (a code, ``TPK1:`` code or link) for now."""
    try:
        code = codes.parse(text)
        till = checkins.till_of(tx, code.key_id)
        if till is None:
            raise codes.CheckinCodeError("forged", "No registered till of ours signs with this key.")
        codes.verify(code, till.public_key, till.terminal_id, till.store_id, now)
    except codes.CheckinCodeError as exc:
        raise CheckinRefused(_REASONS[exc.reason], str(exc)) from exc
    return till


def check_in(tx: Tx, settings: Settings, member_id: str, text: str, now: float) -> CheckedIn:
    till = till_of_code(tx, text, now)
    moment = datetime.fromtimestamp(now, UTC)
    day = store_calendar(tx, till.store_id, settings).of(moment)
    at = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    visit = checkins.Visit(member_id, till.store_id, day, at, till.terminal_id, "wallet")
    if not checkins.record(tx, visit):
        raise CheckinRefused(ErrorCode.CHECKIN_USED, f"checked in at {till.store_id} on {day} already")
    checkins.claim_reward(tx, visit, at)
    given = campaigns.reward_checkin(tx, member_id, till.store_id, day, moment)
    return CheckedIn(till.store_id, day, [_reward_of(tx, c) for c in given])


def _reward_of(tx: Tx, reward_id: str) -> Reward:
    credited = tx.one("SELECT points FROM adjustments WHERE adjustment_id = ?", [reward_id])
    if credited is not None:
        return Reward(reward_id, f"{int(credited[0]):+,}", int(credited[0]))
    return Reward(reward_id, _text_of(tx, reward_id))


def _text_of(tx: Tx, coupon_id: str) -> str:
    row = tx.one("SELECT body FROM coupons WHERE coupon_id = ?", [coupon_id])
    try:
        text = json.loads(str(row[0])).get("text") if row else None
    except ValueError:
        text = None
    return text if isinstance(text, str) and text else coupon_id


__all__ = ["CheckedIn", "CheckinRefused", "Reward", "check_in", "till_of_code"]
