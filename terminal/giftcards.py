"""Gift cards: secure cards sold at the till with value on them, tied to no member (docs/giftcards.md). Pure:
no database, no I/O; the till decides with these functions before it approves, and head office with the same
ones when the entry arrives.

A gift card is a card that proves itself (NTAG 424 DNA SUN or FeliCa Lite-S MAC, ``terminal.credentials``): a
UID anyone can copy would let a copy spend the value. Its id is derived from the card's keyed hash, so two
tills that sell the same card offline name the same card. Its value is head office's record, which every till
holds a copy of from its pulls:

    active    may be loaded and pay (until its expiry; when dormant, only while head office answers)
    blocked   reported lost or stolen at a till, or by head office: refused everywhere; head office unblocks
    cleared   its balance was taken to zero (expired, retired); may be sold again

Selling and loading make value, so they are bounded like top-ups: only on a till head office enabled for
selling stored value, within that till's policy (``terminal.topups``), the card counting as the member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from terminal import payments as pay
from terminal.errors import Code
from terminal.money import MAX_AMOUNT

PREFIX = "G-"


def card_id(uid_hash: str) -> str:
    """The gift card id of the card with this keyed hash."""
    return PREFIX + uid_hash[:16]


class State(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Terms:
    """The chain's terms for gift cards (head office's, sent with every pull): value expires ``expiry_days``
    after the card was last sold or loaded (0: never); a card unused for ``dormant_days`` pays only while
    head office answers (0: never dormant)."""

    expiry_days: int = 0
    dormant_days: int = 0

    def problem(self) -> str | None:
        if not 0 <= self.expiry_days <= 36_500 or not 0 <= self.dormant_days <= 36_500:
            return "expiry_days and dormant_days are 0..36500"
        return None

    def to_doc(self) -> dict[str, int]:
        return {"expiry_days": self.expiry_days, "dormant_days": self.dormant_days}


def terms_from_doc(doc: Mapping[str, Any] | None) -> Terms:
    """The terms a document states; anything unreadable is the default (no expiry, never dormant)."""
    try:
        terms = Terms(int((doc or {}).get("expiry_days", 0)), int((doc or {}).get("dormant_days", 0)))
    except (TypeError, ValueError, AttributeError):
        return Terms()
    return terms if terms.problem() is None else Terms()


@dataclass(frozen=True, slots=True)
class GiftCard:
    """A gift card as head office last stated it (and as the till holds it until the next pull)."""

    card_id: str
    uid_hash: str
    state: State
    balance: int
    expires_on: str | None = None
    """The last day its value may be used (ISO date); None: no expiry."""
    last_used_on: str | None = None
    """The business day of its last activity (sold, loaded, paid, given back)."""
    counter: int | None = None
    """The highest SUN read counter head office has seen the card pay with: a message at or below it is a
    replay (a skimmed message is worthless once the card paid again)."""

    def to_doc(self) -> dict[str, Any]:
        return {
            "card_id": self.card_id,
            "uid_hash": self.uid_hash,
            "state": self.state.value,
            "balance": self.balance,
            "expires_on": self.expires_on,
            "last_used_on": self.last_used_on,
            "counter": self.counter,
        }


def card_from_doc(doc: Mapping[str, Any]) -> GiftCard:
    """A card from its document (head office's feed row, or the till's own copy). Raises ValueError."""
    state = State(str(doc["state"]))
    balance = doc["balance"]
    if not isinstance(balance, int) or isinstance(balance, bool):
        raise ValueError("balance is not a whole number")
    expires, used, counter = doc.get("expires_on"), doc.get("last_used_on"), doc.get("counter")
    if counter is not None and (not isinstance(counter, int) or isinstance(counter, bool)):
        raise ValueError("counter is not a whole number")
    return GiftCard(
        str(doc["card_id"]),
        str(doc["uid_hash"]),
        state,
        balance,
        str(expires) if expires else None,
        str(used) if used else None,
        counter,
    )


def replayed(counter: int | None, *seen: int | None) -> bool:
    """Whether a SUN read counter is at or below one already seen (a message used, or skimmed, before)."""
    highest = max((c for c in seen if c is not None), default=None)
    return counter is not None and highest is not None and counter <= highest


def expires_on(day: str, terms: Terms) -> str | None:
    """The last day of value sold or loaded on business day ``day``."""
    if terms.expiry_days <= 0:
        return None
    return (date.fromisoformat(day) + timedelta(days=terms.expiry_days)).isoformat()


def dormant(card: GiftCard, today: str, terms: Terms) -> bool:
    """Whether the card went unused for the chain's dormancy period."""
    if terms.dormant_days <= 0 or card.last_used_on is None:
        return False
    return date.fromisoformat(today) - date.fromisoformat(card.last_used_on) >= timedelta(days=terms.dormant_days)


def amount_refusal(amount: int) -> Code | None:
    return None if 0 < amount <= MAX_AMOUNT else Code.GIFT_CARD_BAD_AMOUNT


def activate_refusal(card: GiftCard | None, *, secure: bool, member_card: bool) -> Code | None:
    """Why this card may not be sold as a gift card now: it must prove itself, belong to no member, and not
    be an active or blocked gift card already (a cleared one may be sold again)."""
    if not secure:
        return Code.GIFT_CARD_NOT_SECURE
    if member_card:
        return Code.GIFT_CARD_MEMBER_CARD
    if card is not None and card.state is State.ACTIVE:
        return Code.GIFT_CARD_ACTIVE
    if card is not None and card.state is State.BLOCKED:
        return Code.GIFT_CARD_BLOCKED
    return None


def usable_refusal(card: GiftCard | None, today: str) -> Code | None:
    """Why the card can be neither loaded nor pay: unknown, blocked, cleared, or past its expiry."""
    if card is None:
        return Code.GIFT_CARD_UNKNOWN
    if card.state is State.BLOCKED:
        return Code.GIFT_CARD_BLOCKED
    if card.state is State.CLEARED:
        return Code.GIFT_CARD_CLEARED
    if card.expires_on is not None and today > card.expires_on:
        return Code.GIFT_CARD_EXPIRED
    return None


def redeem_refusal(card: GiftCard | None, amount: int, spent_since: int, today: str) -> Code | None:
    """Why the card may not pay ``amount`` (``spent_since``: what it paid at this till that head office's
    balance does not show yet)."""
    code = amount_refusal(amount) or usable_refusal(card, today)
    if code is not None:
        return code
    assert card is not None
    if amount > card.balance - spent_since:
        return Code.GIFT_CARD_INSUFFICIENT
    return None


@dataclass(frozen=True, slots=True)
class OfflineTally:
    """What this till let gift cards pay while head office did not answer, not yet acknowledged: this card's
    today, and every card's in all."""

    card_today: int = 0
    till_total: int = 0


def offline_refusal(
    card: GiftCard,
    amount: int,
    tally: OfflineTally,
    offline: pay.OfflineState,
    limits: pay.RiskLimits,
    terms: Terms,
    today: str,
) -> Code | None:
    """The offline rules of a gift card payment: those of account payments (how long offline, the clock, the
    per-day and till totals), with the card in the member's place; a dormant card pays only online."""
    if dormant(card, today, terms):
        return Code.GIFT_CARD_DORMANT
    state = replace(offline, member_today=tally.card_today, terminal_total=tally.till_total)
    code = pay.offline_refusal(amount, state, limits, None)
    if code in (Code.OFFLINE_LIMIT_MEMBER_DAY, Code.OFFLINE_LIMIT_TERMINAL):
        return Code.GIFT_CARD_LIMIT_OFFLINE
    return code


def refund_refusal(paid: int | None, refunded: int, amount: int) -> Code | None:
    """Why ``amount`` may not go back on the card: more than the payment ``paid`` (None: no gift card payment
    of this till by that number) less what earlier refunds gave back."""
    code = amount_refusal(amount)
    if code is not None:
        return code
    if paid is None or amount > paid - refunded:
        return Code.GIFT_REFUND_INVALID
    return None


@dataclass(frozen=True)
class SaleReturn:
    """What a return of a sale (a void, a refund of lines) gives the gift cards that paid it (``sale_return``)."""

    cards: int
    """The cards' part of the return's money (its ``gift_cards``): the POS pays back the rest, less the account's."""
    counted: dict[str, int]
    """Per payment (its txn id), what the sale's returns counted for it so far, this one included."""
    onto_cards: tuple[tuple[str, int], ...]
    """What goes back onto each card now (payment txn, amount), in the order they paid."""


def sale_return(payments: Sequence[tuple[str, int, int]], counted: Mapping[str, int], most: int) -> SaleReturn:
    """The gift cards' part of a return of a sale, ``most`` being its money beyond the member's account.

    ``payments`` are the card payments of the sale, in the order they paid: (payment txn, what it paid, what refunds
    gave back onto the card since, the POS's own and the sale's earlier returns' alike); ``counted`` what the
    sale's earlier returns counted for each. Each card in turn has for its share what it paid and no return counted
    yet, within what the return has left after the cards before it; what goes onto the card now is what the returns
    counted for it, this one's share included, less what refunds gave back onto it already (a card the POS gave its
    payment back to gets nothing twice, and its share still comes off what the POS pays back)."""
    part, after, onto = 0, dict(counted), []
    for txn_id, paid, refunded in payments:
        before = max(0, counted.get(txn_id, 0))
        share = max(0, min(paid - before, most - part))
        part += share
        if share:
            after[txn_id] = before + share
        owed = before + share - refunded
        if owed > 0:
            onto.append((txn_id, owed))
    return SaleReturn(part, after, tuple(onto))


def pos_collected(due: int, cards: int, vouchers: int) -> int:
    """What the POS itself collected for a sale: what it was due (the sale's payable less the member's account)
    less what the gift cards and the vouchers that paid the sale took off it (never below nothing)."""
    return max(0, due - cards - vouchers)


@dataclass(frozen=True)
class PosReturn:
    """How the rest of a return's money (beyond the member's account and the gift cards) goes (``pos_return``)."""

    pos_refund: int
    """What the POS pays back."""
    voucher_kept: int
    """What the vouchers that paid the sale had of it: never paid out (a used voucher stays used)."""
    paid_back: int
    """What the sale's returns had the POS pay back so far, this one included."""


def pos_return(rest: int, collected: int, paid_back: int) -> PosReturn:
    """The POS pays back ``rest`` of a return, within what it collected for the sale (``pos_collected``) less what
    the sale's earlier returns had it pay back (``paid_back``); what is beyond was the vouchers' part of the sale,
    which the returns give back last and never in money."""
    refund = max(0, min(rest, collected - paid_back))
    return PosReturn(refund, max(0, rest) - refund, max(0, paid_back) + refund)
