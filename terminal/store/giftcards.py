"""Gift cards at this till, written inside ``Store.record``'s open transaction (docs/giftcards.md), and the
cards as head office sends them.

Every card head office holds comes down with the changes feed (``gift_cards``: its document as head office
states it). Every gift card entry of this till is also a row of ``gift_uses`` (what it moved on the card), so
the balance this till works with is head office's and the entries it has not acknowledged yet; the figures an
entry is checked against (``figures``) are read inside the transaction that records it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from terminal import giftcards as gc
from terminal.errors import Rejected
from terminal.ports import GiftFigures, GiftWrite
from terminal.store.counted import UNCOUNTED
from terminal.topups import Tally

_SELLS = ("activate", "load")
_UNACKED = "JOIN journal j ON j.txn_id = u.txn_id WHERE j.pushed_at IS NULL"
_UNCOUNTED = f"JOIN journal j ON j.txn_id = u.txn_id WHERE {UNCOUNTED}"
"""This till's entries the card's balance as the last pull brought it does not hold (``counted.UNCOUNTED``)."""


def put_cards(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    """Head office's documents of cards (card_id, body JSON text), replacing what this till held."""
    parsed = []
    for card_id, body in rows:
        try:
            card = gc.card_from_doc(json.loads(body))
        except (ValueError, KeyError, TypeError):
            continue  # not a card document: nothing to pay with
        parsed.append((card_id, card.uid_hash, body))
    conn.executemany(
        "INSERT INTO gift_cards (card_id, uid_hash, body) VALUES (?,?,?) ON CONFLICT(card_id) DO UPDATE SET "
        "uid_hash = excluded.uid_hash, body = excluded.body",
        parsed,
    )


def held(conn: sqlite3.Connection, card_id: str) -> gc.GiftCard | None:
    """The card as head office last stated it, with this till's entries that statement does not hold: those not
    acknowledged, and those acknowledged after the pull that brought it began (a push round between two pulls)."""
    row = conn.execute("SELECT body FROM gift_cards WHERE card_id = ?", (card_id,)).fetchone()
    if row is None:
        return None
    card = gc.card_from_doc(json.loads(row[0]))
    balance = card.balance + _pending(conn, card_id)
    return replace(card, balance=balance)  # head office's read counter too: a read at or below it is refused


def sold_today(conn: sqlite3.Connection, day: str) -> int:
    """Gift card value this till sold or loaded on business day ``day`` (it shares the top-ups' limit)."""
    (total,) = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM gift_uses WHERE day = ? AND action IN (?, ?)", (day, *_SELLS)
    ).fetchone()
    return int(total)


def sold_offline(conn: sqlite3.Connection) -> int:
    """Gift card value this till sold or loaded offline that head office has not acknowledged."""
    (total,) = conn.execute(
        f"SELECT COALESCE(SUM(u.amount), 0) FROM gift_uses u {_UNACKED} AND u.offline = 1 AND u.action IN (?, ?)",
        _SELLS,
    ).fetchone()
    return int(total)


def figures(conn: sqlite3.Connection, w: GiftWrite, topups: Tally) -> GiftFigures:
    """What ``w`` is checked against, as it stands in this transaction (``topups``: the top-ups' own tally)."""
    (on_card,) = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM gift_uses WHERE card_id = ? AND day = ? AND action IN (?, ?)",
        (w.card_id, w.day, *_SELLS),
    ).fetchone()
    card_today, till_total = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN u.card_id = ? AND u.day = ? THEN -u.amount ELSE 0 END), 0), "
        f"COALESCE(SUM(-u.amount), 0) FROM gift_uses u {_UNACKED} AND u.offline = 1 AND u.action = 'redeem'",
        (w.card_id, w.day),
    ).fetchone()
    (counter,) = conn.execute("SELECT MAX(counter) FROM gift_uses WHERE card_id = ?", (w.card_id,)).fetchone()
    paid, refunded = None, 0
    if w.original_txn is not None:
        row = conn.execute(
            "SELECT -amount FROM gift_uses WHERE txn_id = ? AND card_id = ? AND action = 'redeem'",
            (w.original_txn, w.card_id),
        ).fetchone()
        paid = int(row[0]) if row else None
        (back,) = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM gift_uses WHERE original_txn = ? AND action = 'refund'",
            (w.original_txn,),
        ).fetchone()
        refunded = int(back)
    sold = Tally(topups.till_day, int(on_card), topups.offline_pending)
    return GiftFigures(
        held(conn, w.card_id),
        sold,
        gc.OfflineTally(int(card_today), int(till_total)),
        None if counter is None else int(counter),
        paid,
        refunded,
    )


def write(conn: sqlite3.Connection, txn_id: str, w: GiftWrite, topups: Tally, created_at: str) -> None:
    """Record a gift card entry of this till (checked against the figures inside this transaction); raises
    Rejected, which rolls the whole transaction back. A card sold or blocked here is this till's word on it
    until head office's comes down."""
    code = w.refusal(figures(conn, w, topups)) if w.refusal is not None else None
    if code is not None:
        raise Rejected(code)
    conn.execute(
        "INSERT INTO gift_uses (txn_id, card_id, action, amount, day, offline, counter, original_txn, created_at) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (txn_id, w.card_id, w.action, w.amount, w.day, int(w.offline), w.counter, w.original_txn, created_at),
    )
    if w.action in ("activate", "block"):
        before = held(conn, w.card_id)
        state = gc.State.ACTIVE if w.action == "activate" else gc.State.BLOCKED
        if w.action == "activate":
            card = gc.GiftCard(w.card_id, w.uid_hash, state, 0, w.expires_on, w.day)
        else:
            assert before is not None
            card = gc.GiftCard(
                w.card_id,
                w.uid_hash,
                state,
                before.balance - _pending(conn, w.card_id),
                before.expires_on,
                before.last_used_on,
                before.counter,
            )
        conn.execute(
            "INSERT INTO gift_cards (card_id, uid_hash, body) VALUES (?,?,?) ON CONFLICT(card_id) DO UPDATE SET "
            "body = excluded.body",
            (w.card_id, w.uid_hash, json.dumps(card.to_doc(), sort_keys=True)),
        )


def _pending(conn: sqlite3.Connection, card_id: str) -> int:
    (pending,) = conn.execute(
        f"SELECT COALESCE(SUM(u.amount), 0) FROM gift_uses u {_UNCOUNTED} AND u.card_id = ?", (card_id,)
    ).fetchone()
    return int(pending)
