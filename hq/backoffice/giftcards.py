"""Gift cards in the back office (docs/giftcards.md, docs/backoffice.md): find a card, read its page, unblock
it, and ask for its balance to be cleared (four eyes: ``hq.backoffice.approvals``).

A gift card belongs to no member and no store: its value is the chain's, so every action here reaches the
whole chain, and a store-wide role has none of them. Every change goes through ``hq.giftcards`` (one path:
the same functions the commands call), which writes the card's activity and the audit record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hq import giftcards
from hq.backoffice import approvals
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.errors import Refused
from hq.store import HqStore

LIMIT = 50
_QUERY = re.compile(r"(?:[Gg]-)?[0-9A-Fa-f]{0,64}")


@dataclass(frozen=True, slots=True)
class Found:
    card_id: str
    state: str
    balance: int
    expires_on: str | None
    last_used_on: str | None


def search(tx: Tx, who: Staff, query: str) -> list[Found]:
    """Cards whose id (``G-`` and 16 hex digits) or card hash begins with ``query`` (case does not matter);
    the newest activity first when ``query`` is empty. Anything but ``G-`` and hex digits finds nothing."""
    require(who, Action.GIFTCARDS_READ, frozenset())
    q = query.strip()
    if q and not _QUERY.fullmatch(q):
        return []
    if not q:
        rows = tx.all(
            "SELECT card_id, state, balance, expires_on, last_used_on FROM gift_cards "
            "ORDER BY COALESCE(last_used_on, '') DESC, card_id LIMIT ?",
            [LIMIT],
        )
    else:
        lower = q.lower()
        card = "G-" + lower[2:] if lower.startswith("g-") else "G-" + lower  # ids are G- and the hash's start
        rows = tx.all(
            "SELECT card_id, state, balance, expires_on, last_used_on FROM gift_cards "
            "WHERE card_id LIKE ? OR uid_hash LIKE ? ORDER BY card_id LIMIT ?",
            [card + "%", lower + "%", LIMIT],
        )
    return [Found(str(r[0]), str(r[1]), int(r[2]), r[3], r[4]) for r in rows]


@dataclass(frozen=True, slots=True)
class CardPage:
    card: dict[str, Any]
    activity: list[dict[str, Any]]
    pending: list[approvals.Request]


def page(store: HqStore, who: Staff, card_id: str) -> CardPage:
    require(who, Action.GIFTCARDS_READ, frozenset())
    with store.db.read() as tx:
        try:
            found = giftcards.report(tx, card_id)
        except Refused as exc:
            raise BackofficeRefused(Code.NOT_FOUND, "no such gift card") from exc
        pending = [r for r in approvals.listed(tx) if r.kind == approvals.GIFT_CLEAR and r.subject == card_id]
    activity = list(reversed(found.pop("activity")))  # the newest first
    return CardPage(found, activity, pending)


def unblock(store: HqStore, who: Staff, card_id: str, reason: str) -> dict[str, Any]:
    """Make a blocked card usable again (``gift_unblock``; audited by ``hq.giftcards``)."""
    require(who, Action.GIFTCARDS_UNBLOCK, frozenset())
    why = approvals.reason_of(reason)

    def change(tx: Tx) -> dict[str, Any]:
        try:
            return giftcards.unblock(tx, card_id, who.staff_id, why, store.now()).to_doc()
        except Refused as exc:
            raise BackofficeRefused(Code.GIFT_CARD_INVALID, str(exc)) from exc

    return store.db.transact(change)


def ask_clear(store: HqStore, who: Staff, card_id: str, reason: str) -> approvals.Request:
    """A pending clear of the card's balance as it is now (applied when someone else approves, and only if
    nothing happened to the card meanwhile: its last activity is still the one asked about)."""

    def change(tx: Tx) -> approvals.Request:
        card = giftcards.held(tx, card_id)
        if card is None:
            raise BackofficeRefused(Code.NOT_FOUND, "no such gift card")
        payload = {"card_id": card_id, "balance": card.balance, "activity": giftcards.last_activity(tx, card_id)}
        return approvals.ask(tx, who, approvals.GIFT_CLEAR, card_id, None, payload, reason)

    return store.db.transact(change)


__all__ = ["LIMIT", "CardPage", "Found", "ask_clear", "page", "search", "unblock"]
