"""Passing a coupon on to a friend (docs/wallet.md, "Passing a coupon on"). Every function takes a
transaction and ``now`` (unix seconds), so that the rules can be tested without waiting.

    transferable  a personal coupon whose document says ``"transfer": {"times": N, "claim_hours": H}``:
                  it may move N more times in all; a gift link stays claimable H hours (default 72)
    offer         the holder makes a link: a random token (only its sha256 is stored); while offered the
                  coupon is held: a tombstone goes down the changes feed, so no till takes it from anyone
    claim         another signed-in member, within the window, takes it: a new coupon id for the receiver
                  (``gift_coupon_id``: from the old id and the move number), the same terms, ``times``
                  one less; the old coupon stays deleted; a token works once
    expire        gifts past their window go back to the giver (the coupon again, at a new version)
    take_back     the giver ends its gift before anyone claims it (the same as expiring it now)

Coupons change only on the one path they take to the tills: the row at a new version of the changes feed
(``bump_versions``, taken last) and each version issued remembered (``hq.versions``). Refusals are
``GiftRefused(code)`` with a ``sync.protocol.ErrorCode``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from hq import versions
from hq.db.engine import Row, Tx
from hq.errors import HqError
from hq.ingest import bump_versions, payload_json
from sync.protocol import ErrorCode

DEFAULT_CLAIM_HOURS = 72
MAX_OFFERS_PER_DAY = 20
"""Links a member makes in any 24 hours: each one, and each taking back, is kept (the gift and the coupon's
versions), so passing a coupon on and taking it back in a loop cannot fill head office's database."""
MAX_CLAIM_HOURS = 24 * 30
OFFERED, CLAIMED, RETURNED = "offered", "claimed", "returned"


class GiftRefused(HqError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Transfer:
    times: int
    claim_hours: int


@dataclass(frozen=True, slots=True)
class Offer:
    token: str
    coupon_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Gift:
    coupon_id: str
    giver: str
    body: dict[str, Any]
    state: str
    expires_at: int
    receiver: str | None
    new_coupon_id: str | None


def transfer_of(body: dict[str, Any]) -> Transfer | None:
    """The coupon's transfer terms, or None when it may not be passed on (no or a malformed ``transfer``)."""
    held = body.get("transfer")
    if not isinstance(held, dict):
        return None
    times, hours = _count(held.get("times")), _count(held.get("claim_hours", DEFAULT_CLAIM_HOURS))
    if times is None or hours is None or not 1 <= hours <= MAX_CLAIM_HOURS:
        return None
    return Transfer(times, hours)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def gift_coupon_id(coupon_id: str, move: int) -> str:
    """The receiver's coupon id: the same old coupon and move number always give the same id."""
    return "gift-" + hashlib.sha256(f"{coupon_id}\x00{move}".encode()).hexdigest()[:24]


def _stamp(now: int) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ended(body: dict[str, Any], now: int) -> bool:
    """The coupon's ``ends`` (a day, or a moment) is before ``now``."""
    ends = body.get("ends")
    if not isinstance(ends, str) or not ends:
        return False
    try:
        if len(ends) == 10:
            return date.fromisoformat(ends) < datetime.fromtimestamp(now, UTC).date()
        at = datetime.fromisoformat(ends.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() < now


# -- offering -----------------------------------------------------------------------------------------


def offer(tx: Tx, member_id: str, coupon_id: str, now: int) -> Offer:
    """Make a gift link for the member's own coupon and hold the coupon (a tombstone to the tills)."""
    row = tx.one(f"SELECT member_id, body, deleted, uses FROM coupons WHERE coupon_id = ?{tx.for_update}", [coupon_id])
    live = tx.one("SELECT giver FROM gifts WHERE coupon_id = ? AND state = ?", [coupon_id, OFFERED])
    if live is not None and str(live[0]) == member_id:
        raise GiftRefused(ErrorCode.GIFT_OFFERED, "the coupon is already offered: one link at a time")
    if row is None or row[0] != member_id or row[2]:
        raise GiftRefused(ErrorCode.GIFT_UNKNOWN, "no such coupon of yours")
    body = json.loads(str(row[1]))
    terms = _check_offer(tx, body, coupon_id, member_id, int(row[3]), now)
    made = tx.one("SELECT COUNT(*) FROM gifts WHERE giver = ? AND created_at > ?", [member_id, now - 86400])
    if made is not None and int(made[0]) >= MAX_OFFERS_PER_DAY:
        raise GiftRefused(ErrorCode.GIFT_TOO_MANY, f"at most {MAX_OFFERS_PER_DAY} gift links a day")
    token = secrets.token_urlsafe(32)
    expires_at = now + terms.claim_hours * 3600
    tx.run(
        "INSERT INTO gifts (token_sha256, coupon_id, giver, body, state, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [digest(token), coupon_id, member_id, str(row[1]), OFFERED, now, expires_at],
    )
    tx.run("UPDATE coupons SET deleted = 1 WHERE coupon_id = ?", [coupon_id])
    versions.forget(tx, "coupons", coupon_id, _stamp(now))  # no sale is priced with it while it is held
    bump_versions(tx, "coupons", "coupon_id", [coupon_id])
    return Offer(token, coupon_id, expires_at)


def _check_offer(tx: Tx, body: dict[str, Any], coupon_id: str, member_id: str, uses: int, now: int) -> Transfer:
    if str(body.get("member_id")) != member_id:
        raise GiftRefused(ErrorCode.GIFT_UNKNOWN, "no such coupon of yours")
    terms = transfer_of(body)
    if terms is None:
        raise GiftRefused(ErrorCode.GIFT_NOT_TRANSFERABLE, "this coupon cannot be passed on")
    if terms.times < 1:
        raise GiftRefused(ErrorCode.GIFT_USED_UP, "this coupon has moved as often as its campaign allows")
    if uses > 0 or _used(tx, coupon_id, member_id):
        raise GiftRefused(ErrorCode.GIFT_COUPON_USED, "this coupon was used at a till")
    if ended(body, now):
        raise GiftRefused(ErrorCode.GIFT_EXPIRED, "this coupon has ended")
    return terms


def _used(tx: Tx, coupon_id: str, member_id: str) -> bool:
    """Head office counted a use of the coupon (by anyone, or by the member)."""
    held = tx.one(
        "SELECT c.uses, COALESCE(u.uses, 0) FROM coupons c LEFT JOIN coupon_member_uses u "
        "ON u.coupon_id = c.coupon_id AND u.member_id = ? WHERE c.coupon_id = ?",
        [member_id, coupon_id],
    )
    return held is not None and (int(held[0]) > 0 or int(held[1]) > 0)


# -- reading and claiming -------------------------------------------------------------------------------


def read(tx: Tx, token: str, *, lock: bool = False) -> Gift:
    """The gift of a link (``gift_unknown`` for a token head office never gave)."""
    row = tx.one(
        "SELECT coupon_id, giver, body, state, expires_at, receiver, new_coupon_id FROM gifts "
        f"WHERE token_sha256 = ?{tx.for_update if lock else ''}",
        [digest(token)],
    )
    if row is None:
        raise GiftRefused(ErrorCode.GIFT_UNKNOWN, "no such gift link")
    coupon_id, giver, body, state, expires_at, receiver, new_id = row
    return Gift(str(coupon_id), str(giver), json.loads(str(body)), str(state), int(expires_at), receiver, new_id)


def claim(tx: Tx, token: str, member_id: str, now: int) -> str:
    """Move the gift's coupon to ``member_id``: its new coupon id. Once a token, within its window."""
    gift = read(tx, token, lock=True)
    if gift.state == CLAIMED:
        raise GiftRefused(ErrorCode.GIFT_CLAIMED, "this gift was claimed already")
    if gift.state != OFFERED or now >= gift.expires_at:
        raise GiftRefused(ErrorCode.GIFT_EXPIRED, "this gift link has expired: the coupon went back")
    if gift.giver == member_id:
        raise GiftRefused(ErrorCode.GIFT_OWN, "you cannot claim your own gift")
    if tx.one("SELECT 1 FROM members WHERE member_id = ? AND deleted = 0", [member_id]) is None:
        raise GiftRefused(ErrorCode.GIFT_UNKNOWN, "no such member")
    if _used(tx, gift.coupon_id, gift.giver):  # by a till that had not pulled the tombstone yet
        raise GiftRefused(ErrorCode.GIFT_COUPON_USED, "the giver used this coupon at a till meanwhile")
    terms = transfer_of(gift.body)
    assert terms is not None  # checked when offered, and the body kept since
    move = (_count(gift.body["transfer"].get("moved", 0)) or 0) + 1
    new_id = gift_coupon_id(gift.coupon_id, move)
    body = dict(gift.body)
    body.update(
        coupon_id=new_id,
        member_id=member_id,
        transfer={**gift.body["transfer"], "times": terms.times - 1, "moved": move},
    )
    done = tx.run(
        "UPDATE gifts SET state = ?, receiver = ?, new_coupon_id = ?, ended_at = ? WHERE token_sha256 = ? AND state = ?",
        [CLAIMED, member_id, new_id, now, digest(token), OFFERED],
    )
    if done != 1:  # another claim took it first (SQLite has no row lock to wait on)
        raise GiftRefused(ErrorCode.GIFT_CLAIMED, "this gift was claimed already")
    text = payload_json(body)
    tx.run(
        "INSERT INTO coupons (coupon_id, member_id, body, uses, version, deleted) VALUES (?, ?, ?, 0, 0, 0)",
        [new_id, member_id, text],
    )
    versions.remember(tx, "coupons", new_id, {"body": text}, _stamp(now))
    bump_versions(tx, "coupons", "coupon_id", [new_id])
    return new_id


# -- giving back ----------------------------------------------------------------------------------------


def expire(tx: Tx, now: int) -> int:
    """Every gift past its window goes back to its giver: the coupon live again, at a new version."""
    rows = tx.all(
        f"SELECT token_sha256, coupon_id, body FROM gifts WHERE state = ? AND expires_at <= ?{tx.for_update}",
        [OFFERED, now],
    )
    return len(_give_back_rows(tx, rows, now))


def take_back(tx: Tx, member_id: str, coupon_id: str, now: int) -> None:
    """The giver ends its own gift before anyone claims it: the link dies, the coupon is the giver's again."""
    row = tx.one(
        f"SELECT token_sha256, body FROM gifts WHERE coupon_id = ? AND giver = ? AND state = ?{tx.for_update}",
        [coupon_id, member_id, OFFERED],
    )
    if row is None:
        raise GiftRefused(ErrorCode.GIFT_UNKNOWN, "no gift of yours waits for this coupon")
    if _give_back(tx, str(row[0]), coupon_id, str(row[1]), now):
        bump_versions(tx, "coupons", "coupon_id", [coupon_id])


def take_back_all(tx: Tx, member_id: str, now: int) -> int:
    """Every gift of the member nobody claimed yet ends, its coupon the member's again (a stolen phone's links
    die with its session when the member signs out everywhere); returns how many."""
    rows = tx.all(
        f"SELECT token_sha256, coupon_id, body FROM gifts WHERE giver = ? AND state = ?{tx.for_update}",
        [member_id, OFFERED],
    )
    _give_back_rows(tx, rows, now)
    return len(rows)


def _give_back_rows(tx: Tx, rows: list[Row], now: int) -> list[str]:
    """``_give_back`` each (token, coupon, body) row; the coupons made live again, at a new version."""
    back = [str(c) for t, c, b in rows if _give_back(tx, str(t), str(c), str(b), now)]
    bump_versions(tx, "coupons", "coupon_id", back)
    return back


def _give_back(tx: Tx, token_sha256: str, coupon_id: str, body: str, now: int) -> bool:
    """End the gift as returned and make its coupon live again (the version is the caller's to bump)."""
    tx.run("UPDATE gifts SET state = ?, ended_at = ? WHERE token_sha256 = ?", [RETURNED, now, token_sha256])
    if tx.run("UPDATE coupons SET deleted = 0 WHERE coupon_id = ? AND deleted = 1", [coupon_id]) != 1:
        return False
    versions.remember(tx, "coupons", coupon_id, {"body": body}, _stamp(now))
    return True


@dataclass(frozen=True, slots=True)
class Waiting:
    coupon_id: str
    body: dict[str, Any]
    expires_at: int


def offered_by(tx: Tx, member_id: str) -> list[Waiting]:
    """The member's gifts nobody claimed yet: the coupon, its document, until when the link works."""
    rows = tx.all(
        "SELECT coupon_id, body, expires_at FROM gifts WHERE giver = ? AND state = ? ORDER BY coupon_id",
        [member_id, OFFERED],
    )
    return [Waiting(str(c), json.loads(str(b)), int(e)) for c, b, e in rows]


__all__ = [
    "DEFAULT_CLAIM_HOURS",
    "Gift",
    "GiftRefused",
    "Offer",
    "Transfer",
    "Waiting",
    "claim",
    "digest",
    "ended",
    "expire",
    "gift_coupon_id",
    "offer",
    "offered_by",
    "read",
    "take_back",
    "take_back_all",
    "transfer_of",
]
