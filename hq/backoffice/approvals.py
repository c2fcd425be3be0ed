"""Four eyes: a change that moves money or points by hand, or launches a campaign, is asked for by one
staff member and applied only when a different one, whose role may approve that kind, approves it.

    kind          asked for with              approved with            applied by
    adjustment    members_adjust (member's)   approve_adjustment       hq.adjustments.apply
    campaign      campaigns_launch            approve_campaign         hq.campaigns.put
    gift_clear    giftcards_clear             approve_gift_clear       hq.giftcards.clear

A request is stored ``pending`` with what it would do (checked by the same rules when asked for and
again when applied), its reason and the stores it concerns. Approving locks the request's row, applies
the change through its service and marks it ``approved`` in one transaction, so it applies exactly once
whoever clicks twice; rejecting marks it ``rejected`` and changes nothing else. The requester can
neither approve nor reject their own, nor can an account whose password the requester set last (made it
with one, or reset it: the requester knows it), until someone else sets it, nor the one who set the
requester's password last (they could have asked as the requester). Every step writes an audit record in its own transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hq import adjustments, audit, campaigns, giftcards
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action
from hq.backoffice.staff import PASSWORD_SET, Staff, require
from hq.db.engine import Tx, utc_now
from hq.errors import HqError, Refused
from terminal.canonical import canonical_text

ADJUSTMENT, CAMPAIGN, GIFT_CLEAR = "adjustment", "campaign", "gift_clear"
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
ASK: dict[str, Action] = {
    ADJUSTMENT: Action.MEMBERS_ADJUST,
    CAMPAIGN: Action.CAMPAIGNS_LAUNCH,
    GIFT_CLEAR: Action.GIFTCARDS_CLEAR,
}
READ: dict[str, Action] = {GIFT_CLEAR: Action.GIFTCARDS_READ}
"""Kinds whose requests only roles that read their subject see (besides ``approvals_read``): marketing reads
approvals but no gift card."""
APPROVE: dict[str, Action] = {
    ADJUSTMENT: Action.APPROVE_ADJUSTMENT,
    CAMPAIGN: Action.APPROVE_CAMPAIGN,
    GIFT_CLEAR: Action.APPROVE_GIFT_CLEAR,
}


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    kind: str
    subject: str
    stores: frozenset[str] | None
    """The stores the subject belongs to (a member's); None for a chain-wide change (a campaign)."""
    payload: dict[str, Any]
    reason: str
    requested_by: str
    requested_at: str
    state: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None


_COLUMNS = "request_id, kind, subject, stores, payload, reason, requested_by, requested_at, state, decided_by, decided_at, note"


def _request(row: tuple[Any, ...]) -> Request:
    stores = json.loads(str(row[3]))
    return Request(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        None if stores is None else frozenset(stores),
        json.loads(str(row[4])),
        str(row[5]),
        str(row[6]),
        str(row[7]),
        str(row[8]),
        row[9],
        row[10],
        row[11],
    )


def reason_of(text: str) -> str:
    reason = " ".join(text.split())
    if not reason or len(reason) > 200:
        raise BackofficeRefused(Code.REASON_REQUIRED, "a reason of 1 to 200 characters is required")
    return reason


def _check(tx: Tx, kind: str, subject: str, payload: dict[str, Any], reason: str) -> None:
    """What the request would do passes its service's rules (checked again when applied)."""
    if kind == CAMPAIGN:
        _new_campaign(tx, subject)
    try:
        if kind == GIFT_CLEAR:
            giftcards.clearable(tx, subject, int(payload["activity"]))
        elif kind == ADJUSTMENT:
            adjustments.fact(
                subject, int(payload["points"]), int(payload["stored_value"]), reason, payload.get("merchant_id")
            )
        else:
            campaigns.check_id(subject)
            campaigns.parse_spec(payload.get("spec"))
    except campaigns.CampaignInvalid as exc:
        raise BackofficeRefused(Code.CAMPAIGN_INVALID, exc.detail) from exc
    except adjustments.MerchantPointsOnly as exc:
        raise BackofficeRefused(Code.MERCHANT_POINTS_ONLY, str(exc)) from exc
    except adjustments.AdjustRefused as exc:
        raise BackofficeRefused(Code.BAD_AMOUNT, str(exc)) from exc
    except Refused as exc:
        raise BackofficeRefused(Code.GIFT_CARD_INVALID, str(exc)) from exc


def _new_campaign(tx: Tx, campaign_id: str) -> None:
    """A launch starts a new campaign: one under an id head office holds (running, paused or ended) is refused
    when asked for and when approved, so an approval of a "launch" never replaces a running campaign's offer,
    segment, control share or quantity, nor a change made since it was asked for (changing a stored campaign
    is an administrator's ``tillpoint hq campaign put``)."""
    if tx.one(f"SELECT 1 FROM campaigns WHERE campaign_id = ?{tx.for_update}", [campaign_id]) is not None:
        raise BackofficeRefused(Code.CAMPAIGN_EXISTS, f"campaign {campaign_id} exists already")


def ask(
    tx: Tx, who: Staff, kind: str, subject: str, stores: frozenset[str] | None, payload: dict[str, Any], reason: str
) -> Request:
    """Store a pending request (``forbidden`` when ``who`` may not ask for it there)."""
    require(who, ASK[kind], frozenset() if stores is None else stores)
    reason = reason_of(reason)
    _check(tx, kind, subject, payload, reason)
    request_id = f"AR-{secrets.token_hex(8)}"
    now = utc_now()
    shown = None if stores is None else sorted(stores)
    tx.run(
        f"INSERT INTO approvals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
        [request_id, kind, subject, json.dumps(shown), canonical_text(payload), reason, who.staff_id, now, PENDING],
    )
    audit.append(tx, who.staff_id, f"request_{kind}", subject, reason, {"request_id": request_id, **payload})
    return get(tx, request_id)


def get(tx: Tx, request_id: str, lock: bool = False) -> Request:
    row = tx.one(f"SELECT {_COLUMNS} FROM approvals WHERE request_id = ?{tx.for_update if lock else ''}", [request_id])
    if row is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no request {request_id[:64]}")
    return _request(row)


def of_subject(tx: Tx, kind: str, subject: str) -> list[Request]:
    """Every request of ``kind`` about ``subject`` (a member's adjustments), newest first."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM approvals WHERE kind = ? AND subject = ? ORDER BY requested_at DESC", [kind, subject]
    )
    return [_request(r) for r in rows]


def listed(tx: Tx, state: str | None = PENDING, limit: int = 200) -> list[Request]:
    where, params = ("WHERE state = ?", [state]) if state else ("", [])
    rows = tx.all(f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY requested_at DESC LIMIT ?", [*params, limit])
    return [_request(r) for r in rows]


def concerns(who: Staff, held: Request) -> bool:
    """Whether ``held`` is on ``who``'s side: a merchant's staff see and decide only their own merchant's
    requests (an adjustment it pays for, ``merchant_id``), never another merchant's nor the chain's (its stored
    value, its points), though the member shops at their stores too; the chain's own staff every request."""
    return who.merchant_id is None or held.payload.get("merchant_id") == who.merchant_id


def hands(tx: Tx, who: Staff) -> frozenset[str]:
    """The staff ids whose requests are ``who``'s own: its own, that of whoever set its password last (made
    the account with one, or reset it: that person knows it), until someone else sets it, and so on up (whoever
    set that person's password could have set this one as them)."""
    return hands_of(tx, who.staff_id)


def hands_of(tx: Tx, staff_id: str) -> frozenset[str]:
    """``hands`` of the account ``staff_id``: the people who may have acted as it (itself, whoever set its
    password last, and so on up)."""
    found, at = {staff_id}, staff_id
    while (setter := audit.last_actor(tx, at, PASSWORD_SET)) is not None and setter not in found:
        found.add(setter)
        at = setter
    return frozenset(found)


def own_hands(tx: Tx, who: Staff, held: Request, mine: frozenset[str] | None = None) -> bool:
    """Whether one person may have both asked for ``held`` and be deciding it as ``who``: the requester is among
    ``who``'s hands, or ``who`` (or whoever set its password) set the requester's password and so could have
    asked as the requester (``mine``: ``hands(tx, who)``, when the caller has it)."""
    return bool((hands(tx, who) if mine is None else mine) & hands_of(tx, held.requested_by))


def _decidable(tx: Tx, who: Staff, request_id: str) -> Request:
    held = get(tx, request_id, lock=True)
    if held.state != PENDING:
        raise BackofficeRefused(Code.ALREADY_DECIDED, f"request {request_id} was {held.state} already")
    if own_hands(tx, who, held):
        raise BackofficeRefused(Code.OWN_REQUEST, "a request is decided by someone other than who asked for it")
    require(who, APPROVE[held.kind], frozenset() if held.stores is None else held.stores)
    if not concerns(who, held):
        raise BackofficeRefused(Code.FORBIDDEN, "a merchant's staff decide their own merchant's requests only")
    return held


def _apply(tx: Tx, held: Request, by: str) -> dict[str, Any]:
    if held.kind == CAMPAIGN:
        _new_campaign(tx, held.subject)
    try:
        if held.kind == GIFT_CLEAR:  # the card as it was asked about, locked: nothing happened to it since
            giftcards.clearable(tx, held.subject, int(held.payload["activity"]), lock=True)
            card = giftcards.clear(tx, held.subject, held.requested_by, held.reason, utc_now())
            return {"state": card.state.value, "balance": card.balance}
        if held.kind == ADJUSTMENT:
            merchant = held.payload.get("merchant_id")
            made = adjustments.fact(
                held.subject, int(held.payload["points"]), int(held.payload["stored_value"]), held.reason, merchant
            )
            done = adjustments.apply(tx, held.request_id, made, held.requested_by, by, merchant)
            return {"points_after": done.points_after, "stored_value_after": done.stored_value_after}
        spec = campaigns.parse_spec(held.payload.get("spec"))
        return {"state": campaigns.put(tx, held.subject, spec, held.requested_by, utc_now())["state"]}
    except adjustments.BelowZero as exc:
        raise BackofficeRefused(Code.BELOW_ZERO, str(exc)) from exc
    except adjustments.MerchantPointsOnly as exc:
        raise BackofficeRefused(Code.MERCHANT_POINTS_ONLY, str(exc)) from exc
    except campaigns.CampaignInvalid as exc:
        raise BackofficeRefused(Code.CAMPAIGN_INVALID, exc.detail) from exc
    except Refused as exc:
        raise BackofficeRefused(Code.GIFT_CARD_INVALID, str(exc)) from exc
    except HqError as exc:
        raise BackofficeRefused(Code.NOT_FOUND, str(exc)) from exc


def _decide(
    tx: Tx, who: Staff, request_id: str, note: str, state: str, change: Callable[[Tx, Request], dict[str, Any]]
) -> Request:
    held = _decidable(tx, who, request_id)
    result = change(tx, held)
    tx.run(
        "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, note = ?, result = ? WHERE request_id = ?",
        [state, who.staff_id, utc_now(), note, canonical_text(result), request_id],
    )
    verb = {APPROVED: "approve", REJECTED: "reject"}[state]
    details = {"request_id": request_id, **result}
    audit.append(tx, who.staff_id, f"{verb}_{held.kind}", held.subject, note or held.reason, details)
    return get(tx, request_id)


def approve(tx: Tx, who: Staff, request_id: str, note: str = "") -> Request:
    """Apply the request through its service and mark it approved, in ``tx``."""
    return _decide(tx, who, request_id, note.strip()[:200], APPROVED, lambda t, held: _apply(t, held, who.staff_id))


def reject(tx: Tx, who: Staff, request_id: str, note: str) -> Request:
    return _decide(tx, who, request_id, reason_of(note), REJECTED, lambda t, held: {})


__all__ = [
    "ADJUSTMENT",
    "APPROVE",
    "ASK",
    "CAMPAIGN",
    "GIFT_CLEAR",
    "READ",
    "Request",
    "approve",
    "ask",
    "concerns",
    "hands",
    "hands_of",
    "get",
    "listed",
    "of_subject",
    "own_hands",
    "reject",
]
