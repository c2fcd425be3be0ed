"""Per-card SUN read counters: a secure card's message is accepted once, then only higher counters.

``bump_counter`` runs inside the caller's open transaction (the sale's ``db.atomic()`` block) and
never commits: the counter rises exactly when the sale that used it is recorded, and a rolled-back
sale leaves the counter where it was, so the customer can tap again.
"""

from __future__ import annotations

import sqlite3
import time

from terminal.errors import Code, Rejected
from terminal.model import utc_iso


def last_counter(conn: sqlite3.Connection, uid_hash: str) -> int | None:
    row = conn.execute("SELECT counter FROM card_counters WHERE uid_hash = ?", (uid_hash,)).fetchone()
    return None if row is None else int(row[0])


def bump_counter(conn: sqlite3.Connection, uid_hash: str, counter: int) -> None:
    """Record ``counter`` as the card's last; ``Rejected(REPLAYED_CARD)`` unless it is higher."""
    last = last_counter(conn, uid_hash)
    if last is not None and counter <= last:
        raise Rejected(
            Code.REPLAYED_CARD,
            f"This card's secure message was already used (read counter {counter}, last seen {last}): "
            "tap the card again.",
        )
    conn.execute(
        "INSERT INTO card_counters (uid_hash, counter, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(uid_hash) DO UPDATE SET counter = excluded.counter, updated_at = excluded.updated_at",
        (uid_hash, counter, utc_iso(time.time())),
    )
