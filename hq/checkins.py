"""Check-ins (docs/checkin.md): a member's visit to a store without a sale, once per member, store and day.

Two ways in, one record: the wallet's scan of a till's rotating code (``hq.wallet.checkin``: the code is
checked here against the till that signed it, ``till_of``), and a tap on a till's door reader (a journal
entry of kind ``checkin``, recorded by ingest). Both call ``record``:

    record(tx, visit)        the ``checkins`` row, keyed by (member, store, store's business day): the
                             first one of the day inserts it and adds its visit to the member's statistics
                             (``hq.stats.checkin_visit``) in the same transaction; any later one changes
                             nothing (concurrent ones wait on the key, then find it: exactly one is new)
    claim_reward(tx, visit)  marks the row's reward decided, once (False: decided already); the caller,
                             ``hq.campaigns.reward_checkin``, decides the check-in campaigns in that transaction
    pending(tx)              door check-ins whose reward is still to decide

Nothing here moves a balance: a check-in campaign's reward is a personal coupon, issued on the one path
coupons take, or a points variant's credit, through ``hq.adjustments`` (both decided by ``hq.campaigns``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hq import stats
from hq.db.engine import Tx
from terminal import b64url

Source = Literal["wallet", "door"]
PENDING_BATCH = 500


@dataclass(frozen=True, slots=True)
class Till:
    """A registered, not revoked till and the claim key it signs check-in codes with."""

    terminal_id: str
    store_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Visit:
    member_id: str
    store_id: str
    day: str
    """The store's business day of ``at``."""
    at: str
    """When, as head office holds it (UTC, ISO 8601 with milliseconds, like a sale's ``made_at``)."""
    terminal_id: str
    source: Source
    txn_id: str | None = None
    """The door tap's journal entry (None: a wallet scan)."""


def till_of(tx: Tx, key_id: bytes) -> Till | None:
    """The till whose claim key has this id, if it is registered, its credential not revoked, and it is the
    till's newest key: a key replaced (its file deleted or damaged at the till, maybe copied) signs no more
    door codes once head office holds the next one, while receipts it signed stay claimable (hq/members.py)."""
    row = tx.one(
        "SELECT k.terminal_id, t.store_id, k.public_key, t.revoked FROM claim_keys k "
        "JOIN terminals t ON t.terminal_id = k.terminal_id WHERE k.key_id = ? AND NOT EXISTS ("
        "SELECT 1 FROM claim_keys n WHERE n.terminal_id = k.terminal_id AND n.created_at > k.created_at)",
        [key_id.hex()],
    )
    if row is None or row[3]:
        return None
    try:
        return Till(str(row[0]), str(row[1]), b64url.decode(str(row[2])))
    except ValueError:
        return None


def record(tx: Tx, visit: Visit) -> bool:
    """The visit, once per member, store and day; True when it is the first of that day (its visit counted)."""
    added = tx.run(
        "INSERT INTO checkins (member_id, store_id, day, at, terminal_id, source, txn_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (member_id, store_id, day) DO NOTHING",
        [visit.member_id, visit.store_id, visit.day, visit.at, visit.terminal_id, visit.source, visit.txn_id],
    )
    if added:
        stats.checkin_visit(tx, visit.member_id, visit.day, visit.store_id, visit.at)
    return bool(added)


def claim_reward(tx: Tx, visit: Visit, now: str) -> bool:
    """Mark the visit's reward decided; False when it was decided already (by another request or the timer)."""
    return bool(
        tx.run(
            "UPDATE checkins SET rewarded_at = ? WHERE member_id = ? AND store_id = ? AND day = ? "
            "AND rewarded_at IS NULL",
            [now, visit.member_id, visit.store_id, visit.day],
        )
    )


_VISIT = "member_id, store_id, day, at, terminal_id, source, txn_id"


def _visit(row: Sequence[Any]) -> Visit:
    source: Source = "door" if row[5] == "door" else "wallet"
    return Visit(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), source, row[6])


def pending(tx: Tx, limit: int = PENDING_BATCH) -> list[Visit]:
    """Check-ins whose reward is still to decide (door taps ingest recorded), oldest day first."""
    rows = tx.all(
        f"SELECT {_VISIT} FROM checkins WHERE rewarded_at IS NULL ORDER BY day, member_id, store_id LIMIT ?",
        [limit],
    )
    return [_visit(r) for r in rows]


def visits_of(tx: Tx, member_id: str, limit: int = 20) -> list[Visit]:
    """The member's latest check-ins (the wallet shows them)."""
    rows = tx.all(
        f"SELECT {_VISIT} FROM checkins WHERE member_id = ? ORDER BY at DESC LIMIT ?",
        [member_id, limit],
    )
    return [_visit(r) for r in rows]


__all__ = ["Till", "Visit", "claim_reward", "pending", "record", "till_of", "visits_of"]
