"""Gift cards at head office: each card's state and balance, every activity of a card, the chain's terms, the
online confirmation of a payment, and the ingest stage that checks and applies every gift card entry a till
sends (docs/giftcards.md).

A gift card is a secure card tied to no member; its value is head office's record (``gift_cards``), which goes
down to every till in the changes feed. A till sells (``gift_activate``) and loads (``gift_load``) value only
within its stored-value policy (``hq.topups``: the same ``per_transaction``, a ``per_day`` shared with top-ups,
``per_member_day`` counted per card), so a stolen till credential makes no more gift card value than it could
top up. A card pays (``gift_redeem``) on a tap that proves itself: a SUN read counter is used once in the chain
(``card_taps``, as a member's card), and online head office confirms the payment first against the balance less
what other tills were confirmed and have not journaled yet.

At ingest (``check``, after the top-ups), each entry in seq order:

    gift_activate   quarantined ``topup_not_enabled`` / ``topup_over_limit`` (the till's policy), or
                    ``gift_card_invalid`` (a member's card, or a gift card active or blocked already)
    gift_load       the same, and ``gift_card_invalid`` unless head office holds the card active
    gift_redeem     quarantined ``gift_proof_invalid`` (the tap does not verify, or its SUN counter was used) or
                    ``gift_card_invalid`` (no such card); beyond the balance, or of a card held blocked or
                    cleared, it is stored, applied and flagged ``gift_card_overspent`` (the till served the
                    customer offline: the loss is the chain's), up to ``Settings.overspent_per_day`` beyond the
                    cards' balances a day of head office's for the till; beyond that it is quarantined
                    ``gift_card_overspent`` (``overspent_today``): a person releases or rejects it
    gift_refund     quarantined ``gift_refund_invalid`` beyond what the card paid in that transaction of this
                    till, less earlier refunds; ``refund_exceeds_sale`` when the payment names a sale of this till
                    (``sale_ref``) and the sale's refunds, voids and card refunds would give back more than it took
    gift_block      applied: every till refuses the card once it pulls; head office alone unblocks

Head office's own changes (``unblock``, ``clear``, ``import_card``) are recorded as activities of their kinds
(``gift_unblock``, ``gift_clear``, ``gift_import``) and in the audit log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from hq import audit, ledger, topups
from hq.db.engine import Tx
from hq.errors import Refused
from hq.ingest import HQ_ACTOR as HEAD_OFFICE
from hq.ingest import (
    NOT_APPLIED,
    Batch,
    Settings,
    attested_held,
    beyond_the_days_bound,
    blocked_before,
    bump_versions,
    holding,
    payment_sale,
    sale_left_at,
    use_counter,
    withdrawn,
)
from hq.policy import Breach, CardKeys, attested_only, check_card_refund, verify_tap
from sync.protocol import (
    EntryKind,
    ErrorCode,
    GiftActivatePayload,
    GiftBlockPayload,
    GiftConfirmRequest,
    GiftLoadPayload,
    GiftPayload,
    GiftRedeemPayload,
    GiftRefundPayload,
    Reason,
    SecureTap,
    WireGiftTerms,
)
from terminal import giftcards as gc
from terminal import topups as tp
from terminal.errors import Code
from terminal.money import MAX_AMOUNT

KINDS = frozenset(
    {
        EntryKind.GIFT_ACTIVATE.value,
        EntryKind.GIFT_LOAD.value,
        EntryKind.GIFT_REDEEM.value,
        EntryKind.GIFT_REFUND.value,
        EntryKind.GIFT_BLOCK.value,
    }
)
_COLUMNS = "card_id, uid_hash, state, balance, expires_on, last_used_on, counter"
_REFUSED = {
    Code.GIFT_CARD_UNKNOWN: ErrorCode.GIFT_CARD_UNKNOWN,
    Code.GIFT_CARD_BLOCKED: ErrorCode.GIFT_CARD_BLOCKED,
    Code.GIFT_CARD_CLEARED: ErrorCode.GIFT_CARD_CLEARED,
    Code.GIFT_CARD_EXPIRED: ErrorCode.GIFT_CARD_EXPIRED,
    Code.GIFT_CARD_INSUFFICIENT: ErrorCode.GIFT_CARD_INSUFFICIENT,
    Code.GIFT_CARD_BAD_AMOUNT: ErrorCode.INVALID_REQUEST,
}


# -- reading -----------------------------------------------------------------------------------------------


def _card(row: Sequence[Any]) -> gc.GiftCard:
    return gc.GiftCard(
        str(row[0]),
        str(row[1]),
        gc.State(str(row[2])),
        int(row[3]),
        row[4] and str(row[4]),
        row[5] and str(row[5]),
        None if row[6] is None else int(row[6]),
    )


def held(tx: Tx, card_id: str, *, lock: bool = False) -> gc.GiftCard | None:
    """The card as head office holds it (``lock``: for the rest of the transaction)."""
    row = tx.one(f"SELECT {_COLUMNS} FROM gift_cards WHERE card_id = ?{tx.for_update if lock else ''}", [card_id])
    return _card(row) if row else None


def terms(tx: Tx) -> gc.Terms:
    row = tx.one("SELECT expiry_days, dormant_days FROM gift_terms WHERE id = 1")
    return gc.Terms(int(row[0]), int(row[1])) if row else gc.Terms()


def wire_terms(tx: Tx) -> WireGiftTerms:
    held_terms = terms(tx)
    return WireGiftTerms(expiry_days=held_terms.expiry_days, dormant_days=held_terms.dormant_days)


def put_terms(tx: Tx, wanted: gc.Terms, by: str, now: str) -> gc.Terms:
    """Set the chain's terms (for value sold or loaded from now on; every till learns them with its next pull)."""
    problem = wanted.problem()
    if problem is not None:
        raise Refused(ErrorCode.GIFT_CARD_INVALID, problem)
    tx.run(
        "INSERT INTO gift_terms (id, expiry_days, dormant_days, updated_at, updated_by) VALUES (1, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET expiry_days = excluded.expiry_days, dormant_days = excluded.dormant_days, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        [wanted.expiry_days, wanted.dormant_days, now, by],
    )
    audit.append(tx, by, "gift_terms", "gift_cards", "", wanted.to_doc())
    return terms(tx)


_ACTIVITY = ("event_id", "kind", "amount", "balance_after", "terminal_id", "store_id", "day", "at", "by", "note")


def activities(tx: Tx, card_id: str, last: int | None = None) -> list[dict[str, Any]]:
    """The card's activities, oldest first (``last``: only the latest so many)."""
    rows = tx.all(
        "SELECT event_id, kind, amount, balance_after, terminal_id, store_id, day, at, by_whom, note, n "
        "FROM gift_card_events WHERE card_id = ? ORDER BY n DESC LIMIT ?",
        [card_id, last if last is not None else 2**62],
    )
    return [dict(zip(_ACTIVITY, r[:-1], strict=True)) for r in reversed(rows)]


def report(tx: Tx, card_id: str) -> dict[str, Any]:
    """A card, who keeps it in a wallet, and every activity of it, oldest first. Raises Refused (``not_found``)."""
    card = held(tx, card_id)
    if card is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no gift card {card_id}")
    holder = tx.one("SELECT member_id FROM gift_card_holders WHERE card_id = ?", [card_id])
    return {**card.to_doc(), "holder": holder and str(holder[0]), "activity": activities(tx, card_id)}


def listing(tx: Tx, limit: int = 1000) -> list[dict[str, Any]]:
    rows = tx.all(f"SELECT {_COLUMNS} FROM gift_cards ORDER BY card_id LIMIT ?", [limit])
    return [_card(r).to_doc() for r in rows]


# -- writing -----------------------------------------------------------------------------------------------


def _write(tx: Tx, card: gc.GiftCard) -> str:
    """Store the card's new state, and its feed document; returns its id (for the version bump). Who sold it
    and when is its activity's (``gift_card_events``)."""
    body = json.dumps(card.to_doc(), sort_keys=True)
    tx.run(
        "INSERT INTO gift_cards (card_id, uid_hash, state, balance, expires_on, last_used_on, counter, body, "
        "version, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0) "
        "ON CONFLICT (card_id) DO UPDATE SET state = excluded.state, balance = excluded.balance, "
        "expires_on = excluded.expires_on, last_used_on = excluded.last_used_on, counter = excluded.counter, "
        "body = excluded.body",
        [
            card.card_id,
            card.uid_hash,
            card.state.value,
            card.balance,
            card.expires_on,
            card.last_used_on,
            card.counter,
            body,
        ],
    )
    return card.card_id


def _event(
    tx: Tx, event_id: str, card: gc.GiftCard, kind: EntryKind, amount: int, moment: str, **where: str | None
) -> None:
    """One activity of the card, numbered after the card's last (the card's row is locked: one at a time)."""
    tx.run(
        "INSERT INTO gift_card_events (event_id, card_id, n, kind, amount, balance_after, terminal_id, store_id, "
        "day, at, by_whom, note) VALUES (?, ?, (SELECT COALESCE(MAX(n), 0) + 1 FROM gift_card_events WHERE "
        "card_id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            event_id,
            card.card_id,
            card.card_id,
            kind.value,
            amount,
            card.balance,
            where.get("terminal"),
            where.get("store"),
            where.get("day"),
            moment,
            where.get("by"),
            where.get("note") or "",
        ],
    )


def bump(tx: Tx, touched: set[str]) -> None:
    """New feed versions for the cards that changed (last in the transaction, as every bump)."""
    bump_versions(tx, "gift_cards", "card_id", touched)


def apply(
    tx: Tx, payload: GiftPayload, kind: EntryKind, txn_id: str, where: dict[str, str], chain_terms: gc.Terms
) -> str:
    """What a till's gift card entry does to its card (checked already, or released by an administrator);
    returns the card's id. ``where``: terminal, store, day (head office's business day) and at."""
    card = held(tx, payload.card_id, lock=True)
    day, note = where["day"], ""
    if isinstance(payload, GiftActivatePayload):
        # a new card, or one cleared; a sale onto a card still holding value is quarantined, and if an
        # administrator releases it, the value the till took adds to what the card holds (a blocked card stays so)
        again = card is None or card.state is gc.State.CLEARED
        if card is not None and again and card.balance:
            card = _left_over(tx, card, txn_id, where)
        after = gc.GiftCard(
            payload.card_id,
            payload.uid_hash,
            gc.State.BLOCKED if card is not None and card.state is gc.State.BLOCKED else gc.State.ACTIVE,
            payload.amount + (0 if card is None or again else card.balance),
            gc.expires_on(day, chain_terms),
            day,
            max((c for c in (card.counter if card else None, payload.counter) if c is not None), default=None),
        )
        amount = payload.amount
        if again:  # a card sold again is the buyer's: it leaves the wallet of whoever kept it before
            tx.run("DELETE FROM gift_card_holders WHERE card_id = ?", [payload.card_id])
    elif card is None:  # a released payment, refund or block of a card head office never held
        raise Refused(ErrorCode.GIFT_CARD_UNKNOWN, f"no gift card {payload.card_id}")
    elif isinstance(payload, GiftLoadPayload):
        expires = gc.expires_on(day, chain_terms)
        state = gc.State.ACTIVE if card.state is gc.State.CLEARED else card.state  # a released load: value again
        after = gc.GiftCard(
            card.card_id, card.uid_hash, state, card.balance + payload.amount, expires, day, card.counter
        )
        amount = payload.amount
    elif isinstance(payload, GiftRedeemPayload):
        after = _with(card, balance=card.balance - payload.amount, used=day, counter=payload.tap.counter)
        amount = -payload.amount
    elif isinstance(payload, GiftRefundPayload):
        after = _with(card, balance=card.balance + payload.amount, used=day)
        if card.state is gc.State.CLEARED:  # paid while it held value, cleared since: the refund is value again
            after = replace(after, state=gc.State.ACTIVE, expires_on=gc.expires_on(day, chain_terms))
        amount = payload.amount
    else:
        after = _with(card, state=gc.State.BLOCKED)
        amount = 0
        if isinstance(payload, GiftBlockPayload):
            note = payload.reason[:200]  # why the till blocked it, kept with the activity
    _write(tx, after)
    _event(tx, txn_id, after, kind, amount, where["at"], **where, note=note)
    ledger.post_gift(tx, txn_id, kind.value, after.card_id, amount, where)
    return after.card_id


def _left_over(tx: Tx, card: gc.GiftCard, txn_id: str, where: dict[str, str]) -> gc.GiftCard:
    """A cleared card sold again still holds a balance (a payment a till took offline after the clear, below
    zero): head office clears it to the chain's breakage first, as its own ``gift_clear``, so that the buyer's
    card holds what the buyer paid and the ledger follows."""
    emptied = _cleared(card)
    note = "left on the card when it was sold again"
    event_id = f"{txn_id}:left"
    _event(tx, event_id, emptied, EntryKind.GIFT_CLEAR, -card.balance, where["at"], **where, by=HEAD_OFFICE, note=note)
    ledger.post_gift(tx, event_id, EntryKind.GIFT_CLEAR.value, card.card_id, -card.balance, where)
    audit.append(
        tx, HEAD_OFFICE, EntryKind.GIFT_CLEAR.value, card.card_id, note, {"amount": -card.balance, "balance": 0}
    )
    return emptied


def _with(
    card: gc.GiftCard,
    *,
    balance: int | None = None,
    state: gc.State | None = None,
    used: str | None = None,
    counter: int | None = None,
) -> gc.GiftCard:
    """The card changed as named; a read counter only ever rises (its high-water mark)."""
    highest = max((c for c in (card.counter, counter) if c is not None), default=None)
    return gc.GiftCard(
        card.card_id,
        card.uid_hash,
        state or card.state,
        card.balance if balance is None else balance,
        card.expires_on,
        used or card.last_used_on,
        highest,
    )


# -- head office's own changes -----------------------------------------------------------------------------


def unblock(tx: Tx, card_id: str, by: str, reason: str, now: str) -> gc.GiftCard:
    """Make a blocked card usable again (``gift_unblock``)."""
    card = held(tx, card_id, lock=True)
    if card is None or card.state is not gc.State.BLOCKED:
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} is not a blocked gift card")
    return _own(tx, _with(card, state=gc.State.ACTIVE), EntryKind.GIFT_UNBLOCK, 0, by, reason, now)


def block(tx: Tx, card_id: str, by: str, reason: str, now: str) -> gc.GiftCard:
    """Block a card head office holds active (``gift_block`` of head office's own: a holder reported it lost)."""
    card = held(tx, card_id, lock=True)
    if card is None or card.state is not gc.State.ACTIVE:
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} is not an active gift card")
    return _own(tx, _with(card, state=gc.State.BLOCKED), EntryKind.GIFT_BLOCK, 0, by, reason, now)


def raise_counter(tx: Tx, card: gc.GiftCard, counter: int) -> gc.GiftCard:
    """The card's read counter high-water mark raised to a read head office used itself (the wallet's): the
    tills learn it with their next pull and refuse that read and every earlier one."""
    after = _with(card, counter=counter)
    if after.counter != card.counter:
        _write(tx, after)
        bump(tx, {card.card_id})
    return after


def confirmed_unjournaled(tx: Tx, card_id: str) -> int:
    """What head office confirmed for till payments of the card whose entries have not arrived yet."""
    pending = tx.one(
        f"SELECT COALESCE(SUM(c.amount), 0) FROM gift_confirms c WHERE c.card_id = ? AND {holding('c')}", [card_id]
    )
    return int(pending[0]) if pending else 0


def last_activity(tx: Tx, card_id: str) -> int:
    """The number of the card's last activity (0: none): it moves with every change of the card."""
    row = tx.one("SELECT COALESCE(MAX(n), 0) FROM gift_card_events WHERE card_id = ?", [card_id])
    return int(row[0]) if row else 0


def clearable(tx: Tx, card_id: str, activity: int, *, lock: bool = False) -> gc.GiftCard:
    """The card, if it holds value, nothing happened to it since its activity number ``activity`` (a clear
    asked for and approved later clears the card that was asked about, not a balance that moved, even away
    and back), and no payment head office confirmed is still on its way. Raises Refused."""
    card = held(tx, card_id, lock=lock)  # locked when applying: a push waits for the clear, or the clear for it
    if card is None or not _holds_value(card):
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} is not a gift card holding value")
    if last_activity(tx, card_id) != activity:
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} changed since the clear was asked for")
    if confirmed_unjournaled(tx, card_id):
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} has a payment on its way from a till")
    return card


def clear(tx: Tx, card_id: str, by: str, reason: str, now: str) -> gc.GiftCard:
    """Take a card's balance to zero (``gift_clear``): expired value, a card retired; it may be sold again."""
    card = held(tx, card_id, lock=True)
    if card is None or not _holds_value(card):
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} is not a gift card holding value")
    return _own(tx, _cleared(card), EntryKind.GIFT_CLEAR, -card.balance, by, reason, now)


def _holds_value(card: gc.GiftCard) -> bool:
    """Something to clear: an active card, or a blocked or cleared one whose balance is not zero (a payment
    a till took offline after the clear leaves it below zero: clearing writes that off)."""
    return card.state is gc.State.ACTIVE or card.balance != 0


def _cleared(card: gc.GiftCard) -> gc.GiftCard:
    """The card with nothing on it: cleared (it may be sold again), but a blocked card stays blocked (lost or
    stolen: no till sells it again until head office unblocks it)."""
    state = gc.State.BLOCKED if card.state is gc.State.BLOCKED else gc.State.CLEARED
    return gc.GiftCard(card.card_id, card.uid_hash, state, 0, None, card.last_used_on, card.counter)


EXPIRY_GRACE_DAYS = 1
"""Days after a card's last valid day before head office clears it: a till west of head office may still be
on that day (its business day is its store's), and takes the card until it ends there."""


def expire(tx: Tx, today: date, now: str) -> list[gc.GiftCard]:
    """Clear the value of every card whose last valid day ended more than ``EXPIRY_GRACE_DAYS`` before
    ``today`` (head office's ``gift_clear``, by ``head office``, noting the day it expired): the tills refuse
    it already; clearing ends the chain's liability for it. Cards of chains without expiry never expire.
    Idempotent: a cleared card holds nothing."""
    before = (today - timedelta(days=EXPIRY_GRACE_DAYS)).isoformat()
    due = [
        str(r[0])
        for r in tx.all(
            "SELECT card_id FROM gift_cards WHERE expires_on IS NOT NULL AND expires_on < ? AND balance > 0 "
            "AND state <> ? ORDER BY card_id",
            [before, gc.State.CLEARED.value],
        )
    ]
    done = []
    for card_id in due:
        card = held(tx, card_id, lock=True)  # locked, then read again: a load meanwhile moved its expiry
        if card is None or card.balance <= 0 or card.expires_on is None or card.expires_on >= before:
            continue
        note = f"expired after {card.expires_on}"
        done.append(_own(tx, _cleared(card), EntryKind.GIFT_CLEAR, -card.balance, HEAD_OFFICE, note, now))
    return done


def import_card(tx: Tx, uid_hash: str, amount: int, by: str, source: str, now: str) -> gc.GiftCard:
    """A card of an earlier system, with the balance it held there (``gift_import``); refused for a card head
    office holds already, or a member's card."""
    if len(uid_hash) != 64 or any(c not in "0123456789abcdef" for c in uid_hash) or not 0 <= amount <= MAX_AMOUNT:
        raise Refused(ErrorCode.GIFT_CARD_INVALID, "a card's keyed hash (64 hex digits) and an amount 0..MAX")
    card_id = gc.card_id(uid_hash)
    if held(tx, card_id) is not None or _member_card(tx, uid_hash):
        raise Refused(ErrorCode.GIFT_CARD_INVALID, f"{card_id} is a gift card or a member's card already")
    day = now[:10]
    card = gc.GiftCard(card_id, uid_hash, gc.State.ACTIVE, amount, gc.expires_on(day, terms(tx)), day)
    return _own(tx, card, EntryKind.GIFT_IMPORT, amount, by, source, now)


def _own(tx: Tx, card: gc.GiftCard, kind: EntryKind, amount: int, by: str, note: str, now: str) -> gc.GiftCard:
    if not by.strip():
        raise Refused(ErrorCode.GIFT_CARD_INVALID, "say who makes the change")
    _write(tx, card)
    event_id = f"HQ-{secrets.token_hex(8)}"
    _event(tx, event_id, card, kind, amount, now, by=by, note=note[:200], day=now[:10])
    ledger.post_gift(tx, event_id, kind.value, card.card_id, amount, {"at": now, "day": now[:10]})
    audit.append(tx, by, kind.value, card.card_id, note[:200], {"amount": amount, "balance": card.balance})
    bump(tx, {card.card_id})
    return card


def _member_card(tx: Tx, uid_hash: str) -> bool:
    return tx.one("SELECT 1 FROM cards WHERE uid_hash = ? AND deleted = 0", [uid_hash]) is not None


# -- online confirmation -----------------------------------------------------------------------------------


def confirm(tx: Tx, settings: Settings, terminal_id: str, request: GiftConfirmRequest, now: str) -> dict[str, Any]:
    """Record a till's gift card payment before it approves it, or raise Refused with the till's code. The same
    terminal and transaction asking again is a retry and gets the same answer."""
    if withdrawn(tx, terminal_id, request.txn_id):
        raise Refused(ErrorCode.INVALID_REQUEST, f"transaction {request.txn_id} was withdrawn by its till")
    repeat = tx.one(
        "SELECT terminal_id, card_id, amount, withdrawn_at FROM gift_confirms WHERE txn_id = ?", [request.txn_id]
    )
    if repeat is not None:
        asked = (str(repeat[0]), str(repeat[1]), int(repeat[2]), repeat[3])
        if asked == (terminal_id, request.card_id, request.amount, None):
            return {"confirmed": True, "card_id": request.card_id, "repeat": True}
        raise Refused(ErrorCode.INVALID_REQUEST, f"transaction {request.txn_id} was confirmed for another payment")
    attested = attested_only(request.tap, settings.card_keys)
    on_word = attested_held(tx, terminal_id) if attested else 0  # the till's row before the card's: a push's order
    card = held(tx, request.card_id, lock=True)
    if card is not None and card.uid_hash != request.tap.uid_hash:
        card = None
    pending = confirmed_unjournaled(tx, request.card_id)
    code = gc.redeem_refusal(card, request.amount, pending, now[:10])
    if code is not None:
        raise Refused(_REFUSED.get(code, ErrorCode.INVALID_REQUEST), code.value)
    assert card is not None
    if gc.replayed(request.tap.counter, card.counter):  # online, a counter must rise: a skimmed message fails
        raise Refused(ErrorCode.REPLAYED_CARD, "this card has paid with a later message")
    problem = _tap_problem(tx, settings, card, request.tap, terminal_id, request.txn_id)
    if problem is not None:
        raise Refused(ErrorCode(problem[0]), problem[1])
    if attested and on_word + request.amount > settings.attested_stored_value_per_day:
        raise Refused(
            ErrorCode.ATTESTED_HOLD_LIMIT, "this till holds as much as it may on card reads head office cannot check"
        )
    tx.run(
        "INSERT INTO gift_confirms (txn_id, card_id, terminal_id, amount, confirmed_at, attested_open) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [request.txn_id, request.card_id, terminal_id, request.amount, now, int(attested)],
    )
    if request.tap.counter is not None:  # every till learns the new high-water mark with its next pull
        bump(tx, {_write(tx, _with(card, counter=request.tap.counter))})
    return {"confirmed": True, "card_id": card.card_id, "balance": card.balance - pending}


def sold_counter(payload: GiftActivatePayload, keys: CardKeys) -> tuple[GiftActivatePayload, str | None]:
    """The sale with the read counter head office takes from it, and why it took none: the counter of a SUN
    message of this card and read that verifies with head office's keys; with no keys, the till's word (as a
    payment's tap is then). Without this, a stolen till credential could sell a card at counter 0xFFFFFF: every
    till would then refuse every genuine tap of it as a replay."""
    if payload.counter is None:
        return payload, None
    tap = SecureTap(uid_hash=payload.uid_hash, trust="sun", counter=payload.counter, sun=payload.sun)
    _, breach = verify_tap(tap, keys)
    if breach is None:
        return payload, None
    problem = str(breach.detail.get("problem", "the SUN message does not verify"))
    return payload.model_copy(update={"counter": None, "sun": None}), f"the read counter was not taken: {problem}"


def _tap_problem(
    tx: Tx, settings: Settings, card: gc.GiftCard, tap: SecureTap, terminal_id: str, txn_id: str
) -> tuple[str, str] | None:
    """Why the tap proves nothing: a MAC read claimed of a card head office has seen prove itself with SUN (its
    read counter, taken only from messages that verified when head office holds the keys), a SUN message that does
    not verify (when head office holds the keys), or a read counter the chain used already (it is used from now
    on); None when it may pay."""
    keys = settings.card_keys
    if tap.trust != "sun" and card.counter is not None and keys.sun_master_key is not None:
        return ErrorCode.FORGED_CARD.value, "a card that proves itself with SUN, claimed as a MAC read"
    _, breach = verify_tap(tap, keys)
    if breach is not None:
        return ErrorCode.FORGED_CARD.value, str(breach.detail.get("problem", "the tap does not verify"))
    if tap.counter is None:
        return None
    if use_counter(tx, tap.uid_hash, tap.counter, terminal_id, txn_id) is not None:
        return ErrorCode.REPLAYED_CARD.value, "this card message was already used in the chain"
    return None


# -- the ingest stage --------------------------------------------------------------------------------------


def check(tx: Tx, batch: Batch) -> set[str]:
    """Check and apply every gift card entry of the batch in seq order; the cards whose feed row changed."""
    touched: set[str] = set()
    chain_terms = terms(tx)
    policy = topups.policy(tx, batch.terminal_id)
    for i, entry in enumerate(batch.entries):
        payload = batch.payloads[i]
        if entry.kind not in KINDS or batch.effects[i] in NOT_APPLIED or not isinstance(payload, GiftPayload):
            continue
        breach = _breach(tx, batch, i, payload, policy)
        if breach is not None and not _applied_all_the_same(breach):
            batch.quarantine(i, breach)
            continue
        if isinstance(payload, GiftActivatePayload):
            payload, unproven = sold_counter(payload, batch.settings.card_keys)
            if unproven is not None:  # sold all the same (the buyer paid); its counter is not taken
                batch.flag(i, Reason.GIFT_PROOF_INVALID, payload.card_id, card_id=payload.card_id, problem=unproven)
        where = {
            "terminal": batch.terminal_id,
            "store": batch.store_id,
            "day": batch.days[i],
            "at": batch.received_at,
        }
        touched.add(apply(tx, payload, EntryKind(entry.kind), entry.txn_id, where, chain_terms))
        if breach is not None:
            batch.flag(i, breach.reason, breach.subject, **breach.detail)
    return touched


def _breach(tx: Tx, batch: Batch, i: int, payload: GiftPayload, policy: tp.TopupPolicy) -> Breach | None:
    card = held(tx, payload.card_id)
    if isinstance(payload, GiftActivatePayload | GiftLoadPayload):
        breach = _over_policy(tx, batch, i, payload, policy)
        if breach is not None:
            return breach
        if isinstance(payload, GiftActivatePayload):
            code = gc.activate_refusal(card, secure=True, member_card=_member_card(tx, payload.uid_hash))
        else:
            code = gc.usable_refusal(card, batch.days[i])
        return _invalid(payload, code)
    if isinstance(payload, GiftRedeemPayload):
        return _redeem_breach(tx, batch, i, payload, card)
    if isinstance(payload, GiftRefundPayload):
        return _refund_breach(tx, batch, i, payload)
    assert isinstance(payload, GiftBlockPayload)
    return _invalid(payload, Code.GIFT_CARD_UNKNOWN if card is None else None)


def _invalid(payload: GiftPayload, code: Code | None) -> Breach | None:
    if code is None:
        return None
    return Breach(Reason.GIFT_CARD_INVALID, payload.card_id, {"card_id": payload.card_id, "code": code.value})


def _over_policy(
    tx: Tx, batch: Batch, i: int, payload: GiftActivatePayload | GiftLoadPayload, policy: tp.TopupPolicy
) -> Breach | None:
    """The till's stored-value policy (``hq.topups``): the card counts as the member."""
    tally = _tally(tx, batch, i, payload.card_id)
    code = tp.over_limit(payload.amount, policy, tally)
    received = topups.received_today(tx, batch, i)
    if code is None and received + payload.amount > policy.per_day + policy.offline_total:
        code = Code.TOPUP_LIMIT_DAY
    if code is None:
        return None
    reason = Reason.TOPUP_NOT_ENABLED if code is Code.TOPUP_NOT_ENABLED else Reason.TOPUP_OVER_LIMIT
    detail = {
        "code": code.value,
        "amount": payload.amount,
        "card_id": payload.card_id,
        "day": batch.days[i],
        "sold_that_day": tally.till_day,
        "sold_on_card_that_day": tally.member_day,
        "received_today": received,
        **policy.to_doc(),
    }
    return Breach(reason, "", detail)


def _tally(tx: Tx, batch: Batch, i: int, card_id: str) -> tp.Tally:
    """Stored value this till sold on entry ``i``'s business day (top-ups and gift cards: ``hq.topups``), and
    on this card that day."""
    day = batch.days[i]
    on_card = tx.one(
        "SELECT COALESCE(SUM(amount), 0) FROM gift_card_events WHERE card_id = ? AND terminal_id = ? AND day = ? "
        "AND kind IN (?, ?)",
        [card_id, batch.terminal_id, day, *topups.GIFT_SALES],
    )
    card_day = int(on_card[0]) if on_card else 0
    for j in topups.earlier(batch, i):
        earlier = batch.payloads[j]
        if batch.days[j] == day and isinstance(earlier, GiftActivatePayload | GiftLoadPayload):
            card_day += earlier.amount if earlier.card_id == card_id else 0
    return tp.Tally(topups.tally(tx, batch, i, "").till_day, card_day)


def _redeem_breach(tx: Tx, batch: Batch, i: int, payload: GiftRedeemPayload, card: gc.GiftCard | None) -> Breach | None:
    if card is None or card.uid_hash != payload.uid_hash:
        return _invalid(payload, Code.GIFT_CARD_UNKNOWN)
    confirmed = tx.one(
        "SELECT terminal_id, card_id, amount FROM gift_confirms WHERE txn_id = ?", [batch.entries[i].txn_id]
    )
    if confirmed is not None:  # confirmed online: at most that, at that till, from that card
        asked = (str(confirmed[0]), str(confirmed[1]), int(confirmed[2]))
        if asked[:2] != (batch.terminal_id, payload.card_id) or payload.amount > asked[2]:
            shown = {
                "card_id": payload.card_id,
                "confirmed": asked[2],
                "paid": payload.amount,
                "confirmed_terminal": asked[0],
                "confirmed_card": asked[1],
            }
            return Breach(Reason.PAYMENT_EXCEEDS_CONFIRMED, payload.card_id, shown)
    if confirmed is None:  # taken offline: its tap is checked now, and its counter used
        problem = _tap_problem(tx, batch.settings, card, payload.tap, batch.terminal_id, batch.entries[i].txn_id)
        if problem is not None:
            shown = {"card_id": payload.card_id, "code": problem[0], "problem": problem[1]}
            return Breach(Reason.GIFT_PROOF_INVALID, payload.card_id, shown)
        blocked = _blocked_at(tx, card)
        if blocked is not None and blocked_before(blocked, batch.effective[i]):
            # a card reported lost or stolen, paying at a till that had not pulled the block: its holder's value
            # stays on it until a person decides
            shown = {"card_id": payload.card_id, "code": Code.GIFT_CARD_BLOCKED.value, "blocked_at": blocked}
            return Breach(Reason.GIFT_CARD_INVALID, payload.card_id, shown)
    overspent = None
    if card.state is not gc.State.ACTIVE:
        overspent = f"the card is {card.state.value}"
    elif payload.amount > card.balance:
        overspent = "beyond the card's balance"
    if overspent is None:
        return None
    detail: dict[str, Any] = {
        "card_id": payload.card_id,
        "amount": payload.amount,
        "balance_before": card.balance,
        "balance_after": card.balance - payload.amount,
        "problem": overspent,
    }
    if confirmed is None:  # taken offline: what it takes beyond the balance counts towards the till's day's bound
        detail |= _overspent_today(tx, batch, payload.amount - max(0, card.balance)) or {}
    return Breach(Reason.GIFT_CARD_OVERSPENT, payload.card_id, detail)


def _applied_all_the_same(breach: Breach) -> bool:
    """An overspend within the till's day's bound is stored, applied and flagged; any other breach is held."""
    return breach.reason is Reason.GIFT_CARD_OVERSPENT and OVERSPENT_TODAY not in breach.detail


OVERSPENT_TODAY = "overspent_today"
"""In a ``gift_card_overspent`` item: what the till's payments took beyond the cards' balances that day, this one's
included, beyond ``overspent_per_day``: the payment is held."""


def _overspent_today(tx: Tx, batch: Batch, beyond: int) -> dict[str, int] | None:
    """The till's day's overspend with ``beyond`` more, when it passes the bound (None: it does not, and it is
    counted). The day is head office's (``ingest.overspent_today``): a till's times cannot spread its payments over
    other days."""
    over = beyond_the_days_bound(tx, batch, beyond, 0) if beyond > 0 else None
    return over[1] if over is not None else None


def _blocked_at(tx: Tx, card: gc.GiftCard) -> str | None:
    """When head office's record blocked ``card`` (its last ``gift_block``, by head office's time), if it is blocked."""
    if card.state is not gc.State.BLOCKED:
        return None
    row = tx.one(
        "SELECT MAX(at) FROM gift_card_events WHERE card_id = ? AND kind = ?",
        [card.card_id, EntryKind.GIFT_BLOCK.value],
    )
    return str(row[0]) if row and row[0] is not None else None


def _refund_breach(tx: Tx, batch: Batch, i: int, payload: GiftRefundPayload) -> Breach | None:
    """Only what the card paid in that transaction of this till, less earlier refunds, goes back; and of a payment
    naming a sale of this till (``sale_ref``), only while all that sale's refunds, voids and card refunds together
    give back no more than it took (``refund_exceeds_sale``: the POS gave the card's part back already)."""
    paid = _paid(tx, batch, i, payload)
    refunded = _refunded(tx, batch, i, payload.original_txn)
    written_off = _written_off(tx, payload) if paid is not None else 0
    if gc.refund_refusal(None if paid is None else paid - written_off, refunded, payload.amount) is None:
        sale_txn = payment_sale(tx, batch, i, payload.original_txn)
        left = sale_left_at(tx, batch, i, sale_txn) if sale_txn else None
        if sale_txn is None or left is None or left.terminal_id != batch.terminal_id:
            return None
        return check_card_refund(left, sale_txn, payload.original_txn, payload.amount)
    detail = {
        "card_id": payload.card_id,
        "original_txn": payload.original_txn,
        "amount": payload.amount,
        "paid": paid,
        "refunded_before": refunded,
        "written_off": written_off,
    }
    return Breach(Reason.GIFT_REFUND_INVALID, payload.original_txn, detail)


def _written_off(tx: Tx, payload: GiftRefundPayload) -> int:
    """The part of the payment beyond what the card held (the chain's loss, flagged ``gift_card_overspent``)
    that head office wrote off since, by a clear of the card below zero (by hand, or when it was sold again):
    that part was never value, and giving it back after the write-off would make value out of nothing."""
    row = tx.one(
        "SELECT n, amount, balance_after FROM gift_card_events WHERE event_id = ? AND card_id = ? AND kind = ?",
        [payload.original_txn, payload.card_id, EntryKind.GIFT_REDEEM.value],
    )
    if row is None:  # a payment earlier in this push: nothing cleared since
        return 0
    paid = -int(row[1])
    uncovered = paid - min(max(int(row[2]) + paid, 0), paid)
    if uncovered <= 0:
        return 0
    cleared = tx.one(
        "SELECT COALESCE(SUM(amount), 0) FROM gift_card_events WHERE card_id = ? AND n > ? AND kind = ? AND amount > 0",
        [payload.card_id, int(row[0]), EntryKind.GIFT_CLEAR.value],
    )
    return min(uncovered, int(cleared[0]) if cleared else 0)


def _paid(tx: Tx, batch: Batch, i: int, payload: GiftRefundPayload) -> int | None:
    for j, earlier in batch.standing(i, GiftRedeemPayload):
        if batch.entries[j].txn_id == payload.original_txn and earlier.card_id == payload.card_id:
            return earlier.amount
    row = tx.one(
        "SELECT -amount FROM gift_card_events WHERE event_id = ? AND card_id = ? AND terminal_id = ? AND kind = ?",
        [payload.original_txn, payload.card_id, batch.terminal_id, EntryKind.GIFT_REDEEM.value],
    )
    return int(row[0]) if row else None


def _refunded(tx: Tx, batch: Batch, i: int, original_txn: str) -> int:
    """What earlier refunds of a gift card payment gave back: held (the card's activity), and earlier in the batch."""
    row = tx.one(
        "SELECT COALESCE(SUM(e.amount), 0) FROM gift_card_events e JOIN journal j ON j.txn_id = e.event_id "
        "WHERE j.original_txn = ? AND j.kind = ? AND e.kind = ?",
        [original_txn, EntryKind.GIFT_REFUND.value, EntryKind.GIFT_REFUND.value],
    )
    before = int(row[0]) if row else 0
    return before + sum(e.amount for _, e in batch.standing(i, GiftRefundPayload) if e.original_txn == original_txn)


def released(tx: Tx, txn_id: str, payload: GiftPayload, kind: str, where: dict[str, str], keys: CardKeys) -> set[str]:
    """An administrator released a quarantined gift card entry: it applies now; the cards changed. A sale's read
    counter is taken only as at ingest (``sold_counter``): releasing the money a till took vouches for no read."""
    if isinstance(payload, GiftActivatePayload):
        payload, _ = sold_counter(payload, keys)
    return {apply(tx, payload, EntryKind(kind), txn_id, where, terms(tx))}
