"""Head office's gift card routes (``router``, included by ``hq.api.app.create_app``; docs/giftcards.md):

POST /v1/giftcards/confirm                 terminal token: a gift card payment, before the till approves it
GET  /v1/giftcards/{card_id}               terminal token: the card's state and balance (a balance check)
GET  /v1/admin/giftcards/{card_id}         admin token: the card and every activity of it
POST /v1/admin/giftcards/{card_id}/unblock admin token: a blocked card usable again (``gift_unblock``)
POST /v1/admin/giftcards/{card_id}/clear   admin token: its balance to zero (``gift_clear``)
POST /v1/admin/giftcards                   admin token: a card of an earlier system (``gift_import``)
GET/PUT /v1/admin/giftcard-terms           admin token: the chain's expiry and dormancy
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hq.api.deps import Admin, Store, Terminal
from hq.api.errors import ApiError, errors
from hq.errors import Refused
from sync.protocol import MAX_AMOUNT, ErrorCode, GiftConfirmRequest, WireGiftTerms
from terminal import giftcards as gc

router = APIRouter()


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class ImportIn(BaseModel):
    uid_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    amount: int = Field(ge=0, le=MAX_AMOUNT)
    source: str = Field(default="", max_length=200)
    """The earlier system's reference for the card."""


confirm_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.GIFT_CARD_UNKNOWN,
    ErrorCode.GIFT_CARD_BLOCKED,
    ErrorCode.GIFT_CARD_CLEARED,
    ErrorCode.GIFT_CARD_EXPIRED,
    ErrorCode.GIFT_CARD_INSUFFICIENT,
    ErrorCode.REPLAYED_CARD,
    ErrorCode.FORGED_CARD,
    ErrorCode.ATTESTED_HOLD_LIMIT,
)
admin_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.GIFT_CARD_INVALID)


def _refused(exc: Refused) -> ApiError:
    return ApiError(exc.code, str(exc))


@router.post("/v1/giftcards/confirm", responses=confirm_errors)
def confirm(store: Store, body: GiftConfirmRequest, terminal_id: Terminal) -> dict[str, Any]:
    try:
        return store.confirm_gift(terminal_id, body)
    except Refused as exc:
        raise _refused(exc) from exc


@router.get("/v1/giftcards/{card_id}", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.NOT_FOUND))
def balance(store: Store, card_id: str, terminal_id: Terminal) -> dict[str, Any]:
    """The card's state and balance: not its activity nor who keeps it in a wallet (the back office's; no till
    needs them, and a till's credential would link the chain's gift cards to its members)."""
    try:
        shown = store.gift_card(card_id)
    except Refused as exc:
        raise _refused(exc) from exc
    return {k: v for k, v in shown.items() if k not in ("activity", "holder")}


@router.get("/v1/admin/giftcards/{card_id}", responses=admin_errors)
def show(store: Store, card_id: str, name: Admin) -> dict[str, Any]:
    try:
        return store.gift_card(card_id)
    except Refused as exc:
        raise _refused(exc) from exc


@router.post("/v1/admin/giftcards/{card_id}/unblock", responses=admin_errors)
def unblock(store: Store, card_id: str, body: ReasonIn, name: Admin) -> dict[str, Any]:
    try:
        return store.unblock_gift_card(card_id, name, body.reason).to_doc()
    except Refused as exc:
        raise _refused(exc) from exc


@router.post("/v1/admin/giftcards/{card_id}/clear", responses=admin_errors)
def clear(store: Store, card_id: str, body: ReasonIn, name: Admin) -> dict[str, Any]:
    try:
        return store.clear_gift_card(card_id, name, body.reason).to_doc()
    except Refused as exc:
        raise _refused(exc) from exc


@router.post("/v1/admin/giftcards", responses=admin_errors)
def import_card(store: Store, body: ImportIn, name: Admin) -> dict[str, Any]:
    try:
        return store.import_gift_card(body.uid_hash, body.amount, name, body.source).to_doc()
    except Refused as exc:
        raise _refused(exc) from exc


@router.get("/v1/admin/giftcard-terms", responses=admin_errors)
def get_terms(store: Store, name: Admin) -> WireGiftTerms:
    return store.gift_terms()


@router.put("/v1/admin/giftcard-terms", responses=admin_errors)
def put_terms(store: Store, body: WireGiftTerms, name: Admin) -> WireGiftTerms:
    try:
        store.put_gift_terms(gc.Terms(body.expiry_days, body.dormant_days), name)
    except Refused as exc:
        raise _refused(exc) from exc
    return store.gift_terms()
