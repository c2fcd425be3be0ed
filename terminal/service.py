"""The application service: identify -> quote -> commit -> void.

Each state change is one ``Store.record`` call: the balance change and the journal row commit
together, and a ``Receipt`` (the approval) exists only after that COMMIT returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import uuid6

from terminal import loyalty
from terminal.errors import Code, Rejected
from terminal.model import Basket, Card, CardRead, JournalEntry, Member, Quote, Receipt, Status, utc_iso
from terminal.store import Store

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Identified:
    member: Member
    card: Card


def new_txn_id() -> str:
    return str(uuid6.uuid7())


def _lines_payload(basket: Basket) -> list[dict[str, object]]:
    return [
        {"sku": ln.sku, "category": ln.category, "quantity": ln.quantity, "unit_price": ln.unit_price}
        for ln in basket.lines
    ]


def check_basket(basket: Basket) -> None:
    if not basket.lines:
        raise Rejected(Code.EMPTY_BASKET)
    for line in basket.lines:
        if line.quantity <= 0 or line.unit_price < 0 or not line.sku:
            raise Rejected(Code.INVALID_BASKET, f"Line {line.sku!r}: quantity must be > 0 and price >= 0.")


class Service:
    def __init__(self, store: Store, terminal_id: str, clock: Clock = time.time) -> None:
        self.store = store
        self.terminal_id = terminal_id
        self.clock = clock
        self.on_commit: list[Callable[[Receipt], None]] = []

    def identify(self, read: CardRead) -> Identified:
        """The member behind a tap, or a rejection: unknown card, blocked card, blocked member."""
        card = self.store.card(read.uid_hash)
        if card is None:
            raise Rejected(Code.UNKNOWN_CARD)
        if card.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_CARD)
        member = self.store.member(card.member_id)
        if member is None:
            raise Rejected(Code.UNKNOWN_MEMBER, "This card's member is not in the till's cache yet.")
        if member.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_MEMBER)
        return Identified(member, card)

    def member(self, member_id: str) -> Member:
        member = self.store.member(member_id)
        if member is None:
            raise Rejected(Code.UNKNOWN_MEMBER)
        if member.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_MEMBER)
        return member

    def quote(self, member_id: str | None, basket: Basket) -> Quote:
        check_basket(basket)
        member = self.member(member_id) if member_id else None
        return loyalty.quote(member, basket, self.store.earn_rule())

    def commit(self, quote: Quote) -> Receipt:
        """Record the sale; returns only after its journal row is durable."""
        txn_id, created = new_txn_id(), utc_iso(self.clock())
        payload = {
            "member_id": quote.member_id,
            "total": quote.total,
            "points_delta": quote.points_earned,
            "lines": _lines_payload(quote.basket),
            "explain": [{"source": x.source, "points": x.points} for x in quote.explain],
        }
        entry = JournalEntry(self.terminal_id, 0, txn_id, "sale", payload, created)
        points = (quote.member_id, quote.points_earned) if quote.member_id else None
        sale = {"member_id": quote.member_id, "total": quote.total, "points_delta": quote.points_earned}
        stored, balance = self.store.record(entry, points=points, sale=sale)
        return self._approved(stored, quote.total, quote.points_earned, balance)

    def void(self, txn_id: str) -> Receipt:
        """Reverse a sale of this till: its points are clawed back (the balance may go negative)."""
        sale = self.store.sale(txn_id)
        if sale is None:
            raise Rejected(Code.UNKNOWN_TRANSACTION)
        if sale["voided_by"]:
            raise Rejected(Code.ALREADY_VOIDED)
        delta, member_id = -int(sale["points_delta"]), sale["member_id"]
        payload = {"member_id": member_id, "total": -sale["total"], "points_delta": delta, "voided_txn_id": txn_id}
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), "void", payload, utc_iso(self.clock()))
        stored, balance = self.store.record(entry, points=(member_id, delta) if member_id else None, voids=txn_id)
        return self._approved(stored, -sale["total"], delta, balance)

    def _approved(self, entry: JournalEntry, total: int, delta: int, balance: int | None) -> Receipt:
        member_id = entry.payload.get("member_id")
        receipt = Receipt(entry.txn_id, entry.seq, entry.kind, member_id, total, delta, balance, entry.created_at)
        for listener in self.on_commit:
            listener(receipt)
        return receipt
