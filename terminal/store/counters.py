"""Per-card SUN read counters: a secure card's message is accepted once, then only higher counters.

``bump_counter`` runs inside the caller's open transaction (the sale's ``db.atomic()`` block) and
never commits: the counter rises exactly when the sale that used it is recorded, and a rolled-back
sale leaves the counter where it was, so the customer can tap again.

``counter`` is the highest the till knows (its own sales' and the chain's high-water mark the pull brings),
``used`` the highest its own sales used.
"""

from __future__ import annotations

import sqlite3
import time

from terminal.errors import Code, Rejected
from terminal.model import utc_iso


def last_counter(conn: sqlite3.Connection, uid_hash: str) -> int | None:
    row = conn.execute("SELECT counter FROM card_counters WHERE uid_hash = ?", (uid_hash,)).fetchone()
    return None if row is None else int(row[0])


def bump_counter(conn: sqlite3.Connection, uid_hash: str, counter: int, *, confirmed: bool = False) -> None:
    """Record ``counter`` as the card's last; ``Rejected(REPLAYED_CARD)`` unless it is higher than every counter the
    till knows for the card or, ``confirmed`` (head office confirmed the payment this read makes), than its own
    sales used: confirming, head office checked the counter against the chain's and made it the card's, which the
    pull may have brought down before the sale is recorded."""
    row = conn.execute("SELECT counter, used FROM card_counters WHERE uid_hash = ?", (uid_hash,)).fetchone()
    last = None if row is None else row[1] if confirmed else row[0]
    if last is not None and counter <= last:
        raise Rejected(
            Code.REPLAYED_CARD,
            f"This card's secure message was already used (read counter {counter}, last seen {last}): "
            "tap the card again.",
        )
    conn.execute(
        "INSERT INTO card_counters (uid_hash, counter, used, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(uid_hash) "
        "DO UPDATE SET counter = MAX(card_counters.counter, excluded.counter), used = excluded.used, "
        "updated_at = excluded.updated_at",
        (uid_hash, counter, counter, utc_iso(time.time())),
    )
