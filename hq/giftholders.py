"""Gift cards in a member's wallet (docs/giftcards.md, "In the member's wallet").

A gift card stays a bearer card: whoever holds it pays with it, and no till needs to know a holder. A member
may keep cards in the wallet to see their balance and activity, and to block one that is lost or stolen.

    read_tap   the card whose SUN URL the member's phone opened (an NTAG 424 DNA card's NDEF URL points at
               ``/wallet/giftcard``): its message genuine under the chain's key, its read counter above every
               counter the chain has seen of it (a URL out of a browser's history, a skimmed message, is worth
               nothing once the card was read again), a card head office holds; nothing is used by reading
    attach     the same, then its counter used once in the chain (``card_taps``, as a till's tap; the card's
               high-water mark rises and goes down to the tills), and the card kept for the member: refused
               for a card in another member's wallet, blocked or cleared
    attach_by_staff  a card staff saw (a FeliCa Lite-S card, whose phone read head office cannot check):
               by card id, audited; ``detach_by_staff`` the other way
    detach     the member lets the card go (it keeps its value)
    block      the card's holder reports it lost: head office blocks it (``gift_block``, by the member) and
               every till refuses it once it pulls; only head office unblocks it
    held_by    the member's cards with their last activities

A card sold again (``gift_activate`` of a cleared card) leaves its old holder's wallet (``giftcards.apply``); an
erased member's cards leave the wallet (``hq.members.erase``). (A merge needs none: the member merged away is
new at head office, its enrolment just arrived, and has no wallet yet.)
Refusals are ``Refused`` with a ``sync.protocol.ErrorCode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hq import audit, giftcards
from hq.db.engine import Tx
from hq.errors import Refused
from hq.ingest import use_counter
from hq.policy import CardKeys
from sync.protocol import ErrorCode
from terminal import credentials
from terminal import giftcards as gc
from terminal.errors import Rejected

WALLET = "wallet"
"""The terminal recorded with a read counter the wallet used (``card_taps``)."""
RECENT = 5
"""Activities shown with each card in the wallet."""


@dataclass(frozen=True, slots=True)
class Tapped:
    """A card read from its SUN URL: the card head office holds, and the read's counter."""

    card: gc.GiftCard
    counter: int
    holder: str | None


@dataclass(frozen=True, slots=True)
class Held:
    """A card in a member's wallet."""

    card: gc.GiftCard
    attached_at: str
    activities: list[dict[str, Any]]


def holder_of(tx: Tx, card_id: str) -> str | None:
    row = tx.one("SELECT member_id FROM gift_card_holders WHERE card_id = ?", [card_id])
    return None if row is None else str(row[0])


def highest_counter(tx: Tx, card: gc.GiftCard) -> int:
    """The highest read counter of the card the chain has seen: paid with at a till, or used in the wallet."""
    row = tx.one("SELECT MAX(counter) FROM card_taps WHERE uid_hash = ?", [card.uid_hash])
    seen = [c for c in (card.counter, row[0] if row else None) if c is not None]
    return max((int(c) for c in seen), default=-1)


def read_tap(tx: Tx, keys: CardKeys, url: str, *, lock: bool = False) -> Tapped:
    """The gift card of a SUN URL, checked; nothing is used. Raises Refused: ``sun_keys_missing`` (head office
    holds no card keys), ``forged_card`` (no SUN message, or one that does not verify), ``gift_card_unknown``
    (not a card head office holds), ``replayed_card`` (a read at or below one the chain has seen)."""
    if keys.sun_master_key is None or keys.hash_uid is None:
        raise Refused(ErrorCode.SUN_KEYS_MISSING, "head office holds no SUN key to check a card's message")
    try:
        message = credentials.sun_from_url(url)
        if message is None:
            raise credentials.ForgedCard("the URL carries no SUN message")
        found = credentials.verify_sun(message.picc_enc, message.cmac, keys.sun_master_key, message.mac_input)
    except Rejected as exc:
        raise Refused(ErrorCode.FORGED_CARD, exc.message) from exc
    card = giftcards.held(tx, gc.card_id(keys.hash_uid(found.uid)), lock=lock)
    if card is None:
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, "head office holds no gift card of this card")
    if found.counter <= highest_counter(tx, card):
        raise Refused(ErrorCode.REPLAYED_CARD, "this read of the card was used already: tap the card again")
    return Tapped(card, found.counter, holder_of(tx, card.card_id))


def _attachable(tx: Tx, card: gc.GiftCard, member_id: str) -> bool:
    """True when the card is the member's already; raises Refused when it cannot be."""
    if card.state is gc.State.BLOCKED:
        raise Refused(ErrorCode.GIFT_CARD_BLOCKED, f"{card.card_id} is blocked")
    if card.state is gc.State.CLEARED:
        raise Refused(ErrorCode.GIFT_CARD_CLEARED, f"{card.card_id} was cleared")
    if tx.one("SELECT 1 FROM members WHERE member_id = ? AND deleted = 0", [member_id]) is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no member {member_id}")
    holder = holder_of(tx, card.card_id)
    if holder is not None and holder != member_id:
        raise Refused(ErrorCode.GIFT_CARD_HELD, f"{card.card_id} is in another member's wallet")
    return holder == member_id


def _keep(tx: Tx, card_id: str, member_id: str, now: str) -> None:
    tx.run(
        "INSERT INTO gift_card_holders (card_id, member_id, attached_at) VALUES (?, ?, ?) "
        "ON CONFLICT (card_id) DO NOTHING",
        [card_id, member_id, now],
    )
    if holder_of(tx, card_id) != member_id:  # pragma: no cover - the card's row lock orders attaches
        raise Refused(ErrorCode.GIFT_CARD_HELD, f"{card_id} is in another member's wallet")


def attach(tx: Tx, keys: CardKeys, url: str, member_id: str, now: str) -> gc.GiftCard:
    """Keep the card of a fresh SUN read in the member's wallet, using the read (see ``read_tap``)."""
    tapped = read_tap(tx, keys, url, lock=True)
    card = tapped.card
    if _attachable(tx, card, member_id):
        return card
    if use_counter(tx, card.uid_hash, tapped.counter, WALLET, f"{WALLET}-{member_id}-{tapped.counter}") is not None:
        raise Refused(ErrorCode.REPLAYED_CARD, "this read of the card was used already: tap the card again")
    card = giftcards.raise_counter(tx, card, tapped.counter)
    _keep(tx, card.card_id, member_id, now)
    return card


def attach_by_staff(tx: Tx, card_id: str, member_id: str, by: str, reason: str, now: str) -> gc.GiftCard:
    """Keep a card staff saw in the member's wallet (audited)."""
    if not by.strip() or not reason.strip():
        raise Refused(ErrorCode.GIFT_CARD_INVALID, "say who attaches the card and why")
    card = giftcards.held(tx, card_id, lock=True)
    if card is None:
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, f"no gift card {card_id}")
    if not _attachable(tx, card, member_id):
        _keep(tx, card.card_id, member_id, now)
        audit.append(tx, by, "gift_attach", card.card_id, reason[:200], {"member_id": member_id})
    return card


def detach_by_staff(tx: Tx, card_id: str, by: str, reason: str) -> str:
    """Take a card out of whichever wallet holds it (audited); returns the member it left."""
    if not by.strip() or not reason.strip():
        raise Refused(ErrorCode.GIFT_CARD_INVALID, "say who detaches the card and why")
    holder = holder_of(tx, card_id)
    if holder is None:
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, f"{card_id} is in no member's wallet")
    detach(tx, card_id, holder)
    audit.append(tx, by, "gift_detach", card_id, reason[:200], {"member_id": holder})
    return holder


def detach(tx: Tx, card_id: str, member_id: str) -> None:
    """The member lets the card go; Refused ``gift_card_unknown`` when it is not in the member's wallet."""
    gone = tx.many_returning(
        "DELETE FROM gift_card_holders WHERE card_id = ? AND member_id = ? RETURNING card_id", [(card_id, member_id)]
    )
    if gone[0] is None:
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, f"{card_id} is not in your wallet")


def block(tx: Tx, card_id: str, member_id: str, now: str) -> gc.GiftCard:
    """The holder reports the card lost or stolen: blocked at head office, refused by every till once it pulls."""
    if holder_of(tx, card_id) != member_id:
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, f"{card_id} is not in your wallet")
    return giftcards.block(tx, card_id, f"member {member_id}", "reported lost or stolen in the wallet", now)


def held_by(tx: Tx, member_id: str) -> list[Held]:
    """The member's cards, latest attached first, each with its last activities."""
    rows = tx.all(
        "SELECT card_id, attached_at FROM gift_card_holders WHERE member_id = ? ORDER BY attached_at DESC, card_id",
        [member_id],
    )
    found = []
    for card_id, attached_at in rows:
        card = giftcards.held(tx, str(card_id))
        if card is not None:
            found.append(Held(card, str(attached_at), giftcards.activities(tx, card.card_id, RECENT)))
    return found
