"""Top-ups sold at this till, written inside ``Store.record``'s open transaction (docs/stored-value.md).

The balance, the top-up's row and its journal row commit together; the policy's limits are checked
again here against the tallies as they stand inside the transaction, so two top-ups approved at once
cannot pass a limit between them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from terminal.errors import Rejected
from terminal.ports import TopupWrite
from terminal.store import giftcards
from terminal.topups import Sold, Tally, void_refusal


def tally(conn: sqlite3.Connection, member_id: str, day: str) -> Tally:
    """What this till credited on ``day`` (in all, and to ``member_id``; voids give it back) and what it
    took offline that head office has not acknowledged; gift cards sold and loaded (``giftcards``) share the
    day's and the offline totals."""
    till_day, member_day = conn.execute(
        "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(CASE WHEN member_id = ? THEN amount ELSE 0 END), 0) "
        "FROM topups WHERE day = ? AND voided_by IS NULL",
        (member_id, day),
    ).fetchone()
    (offline,) = conn.execute(
        "SELECT COALESCE(SUM(t.amount), 0) FROM topups t JOIN journal j ON j.txn_id = t.txn_id "
        "WHERE t.offline = 1 AND j.pushed_at IS NULL"
    ).fetchone()
    gifts_day, gifts_offline = giftcards.sold_today(conn, day), giftcards.sold_offline(conn)
    return Tally(int(till_day) + gifts_day, int(member_day), int(offline) + gifts_offline)


def sold(conn: sqlite3.Connection, txn_id: str) -> Sold | None:
    row = conn.execute(
        "SELECT txn_id, member_id, amount, day, voided_by FROM topups WHERE txn_id = ?", (txn_id,)
    ).fetchone()
    return Sold(str(row[0]), str(row[1]), int(row[2]), str(row[3]), row[4]) if row else None


def write(conn: sqlite3.Connection, txn_id: str, w: TopupWrite, created_at: str) -> None:
    """Credit a top-up (checked against the policy) or take a voided one back (checked against what the
    member still holds); raises Rejected, which rolls the whole transaction back."""
    if w.voids is None:
        code = w.refusal(tally(conn, w.member_id, w.day)) if w.refusal is not None else None
        if code is not None:
            raise Rejected(code)
        conn.execute(
            "INSERT INTO topups (txn_id, member_id, amount, day, offline, created_at) VALUES (?,?,?,?,?,?)",
            (txn_id, w.member_id, w.amount, w.day, int(w.offline), created_at),
        )
    else:
        code = void_refusal(sold(conn, w.voids), w.day, _balance(conn, w.member_id))
        if code is not None:
            raise Rejected(code)
        conn.execute("UPDATE topups SET voided_by = ? WHERE txn_id = ?", (txn_id, w.voids))
    conn.execute("UPDATE members SET stored_value = stored_value + ? WHERE member_id = ?", (w.amount, w.member_id))


def _balance(conn: sqlite3.Connection, member_id: str) -> int:
    row: Any = conn.execute("SELECT stored_value FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return int(row[0]) if row else 0
