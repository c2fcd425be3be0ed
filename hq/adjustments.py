"""Points and stored value put right by hand: head office's ``adjust`` fact (``sync.protocol.AdjustPayload``).

An adjustment is checked against the trust rules like any entry (``hq.policy``: an administrator may produce
``adjust``), carries its reason, and never takes more than a balance holds (``BelowZero``; one that adds may leave a
balance an offline overspend made negative still below zero). It is applied in the
caller's transaction (the back office applies it when a second person approves it, in the transaction that
records the approval), once per ``adjustment_id``; tills get the new balance by pull.

    adjustments   one row per adjustment: the movement, the balances after it, who asked, who approved, why
"""

from __future__ import annotations

from dataclasses import dataclass

from hq import ledger, policy
from hq.db.engine import Tx, utc_now
from hq.errors import HqError
from hq.ingest import bump_versions
from sync.protocol import AdjustPayload, EntryKind


class AdjustRefused(HqError):
    """An adjustment the rules do not allow (its message says which)."""


class UnknownMember(AdjustRefused):
    pass


class BelowZero(AdjustRefused):
    pass


class MerchantPointsOnly(AdjustRefused):
    """A merchant's staff adjusted stored value (the member's money, which the chain holds), or took more
    points than its own merchant's lots hold for the member."""


@dataclass(frozen=True, slots=True)
class Adjusted:
    adjustment_id: str
    member_id: str
    points: int
    stored_value: int
    points_after: int
    stored_value_after: int


def fact(member_id: str, points: int, stored_value: int, reason: str, merchant: str | None = None) -> AdjustPayload:
    """The adjustment as the trust rules read it; ``AdjustRefused`` when they refuse it. ``merchant``: the
    merchant whose staff asked for it (None: the chain's staff), which adjusts points only."""
    if merchant is not None and stored_value:
        raise MerchantPointsOnly(f"a merchant's staff adjusts points only; stored value is the chain's ({merchant})")
    try:
        made = AdjustPayload(member_id=member_id, points=points, stored_value=stored_value, reason=reason)
    except ValueError as exc:
        raise AdjustRefused(str(exc)) from exc
    breach = policy.check_actor(policy.Actor.ADMIN, EntryKind.ADJUST, made)
    if breach is not None:
        raise AdjustRefused(f"{breach.reason}: {breach.detail}")
    return made


def apply(
    tx: Tx, adjustment_id: str, made: AdjustPayload, requested_by: str, approved_by: str, merchant: str | None = None
) -> Adjusted:
    """Move the member's balances by ``made`` in ``tx``; the same id again changes nothing. ``merchant``: the
    merchant whose staff asked (None: the chain's). A merchant's adjustment is booked to it: points it adds
    are its own lot, which it pays for as for points its stores give, and it takes back at most what its own
    lots hold for the member; it never moves stored value (``MerchantPointsOnly``)."""
    held = tx.one(
        "SELECT member_id, points, stored_value, points_after, stored_value_after FROM adjustments "
        "WHERE adjustment_id = ?",
        [adjustment_id],
    )
    if held is not None:
        return Adjusted(adjustment_id, str(held[0]), int(held[1]), int(held[2]), int(held[3]), int(held[4]))
    row = tx.one(
        f"SELECT points, stored_value FROM members WHERE member_id = ? AND deleted = 0{tx.for_update}", [made.member_id]
    )
    if row is None:
        raise UnknownMember(f"no member {made.member_id}")
    points, value = int(row[0]) + made.points, int(row[1]) + made.stored_value
    if (made.points < 0 and points < 0) or (made.stored_value < 0 and value < 0):  # taking more than is there
        raise BelowZero(f"the adjustment would leave {points} points and {value} stored value")
    now = utc_now()
    if merchant is not None:
        _merchant_may(tx, merchant, made, now)
    tx.run("UPDATE members SET points = ?, stored_value = ? WHERE member_id = ?", [points, value, made.member_id])
    ledger.adjust(
        tx, made.member_id, made.points, made.stored_value, now, adjustment_id, merchant or ledger.CHAIN_MERCHANT
    )
    tx.run(
        "INSERT INTO adjustments (adjustment_id, member_id, points, stored_value, points_after, stored_value_after, "
        "reason, requested_by, approved_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            adjustment_id,
            made.member_id,
            made.points,
            made.stored_value,
            points,
            value,
            made.reason,
            requested_by,
            approved_by,
            utc_now(),
        ],
    )
    bump_versions(tx, "members", "member_id", [made.member_id])
    return Adjusted(adjustment_id, made.member_id, made.points, made.stored_value, points, value)


def _merchant_may(tx: Tx, merchant: str, made: AdjustPayload, now: str) -> None:
    if made.stored_value:
        raise MerchantPointsOnly(f"a merchant's staff adjusts points only; stored value is the chain's ({merchant})")
    if made.points >= 0:
        return
    own = sum(
        lot.remaining
        for lot in ledger.lots_of(tx, made.member_id)
        if lot.merchant_id == merchant and (lot.expires_at is None or lot.expires_at > now)
    )
    if -made.points > own:
        raise MerchantPointsOnly(f"{merchant}'s lots hold {own} points of this member; it may take back no more")


def of_member(tx: Tx, member_id: str) -> list[dict[str, object]]:
    rows = tx.all(
        "SELECT adjustment_id, points, stored_value, reason, requested_by, approved_by, created_at FROM adjustments "
        "WHERE member_id = ? ORDER BY created_at DESC",
        [member_id],
    )
    names = ("adjustment_id", "points", "stored_value", "reason", "requested_by", "approved_by", "created_at")
    return [dict(zip(names, r, strict=True)) for r in rows]


__all__ = [
    "AdjustRefused",
    "Adjusted",
    "BelowZero",
    "MerchantPointsOnly",
    "UnknownMember",
    "apply",
    "fact",
    "of_member",
]
