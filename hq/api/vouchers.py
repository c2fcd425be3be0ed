"""Head office's voucher routes (``router``, included by ``hq.api.app.create_app``; docs/stored-value.md,
"Vouchers"):

    POST /v1/vouchers/confirm                        terminal token: a voucher's one use, before the till
                                                     approves its redemption or refund
    POST /v1/admin/terminals/{terminal_id}/vouchers  admin token: sign vouchers into a till's stock
    PUT  /v1/admin/terminals/{terminal_id}/vouchers  admin token: the till's offline total of redemptions
    GET  /v1/admin/vouchers/{voucher_id}             admin token: a voucher, its state and its use
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hq import payments, vouchers
from hq.api.deps import Admin, Store, Terminal
from hq.api.errors import ApiError, errors
from hq.errors import Refused
from sync.protocol import MAX_AMOUNT, ErrorCode, VoucherConfirmRequest
from terminal.vouchers import PURPOSE

router = APIRouter()

DAY_S = 86400


class IssueIn(BaseModel):
    count: int = Field(ge=1, le=vouchers.MAX_ISSUE)
    value: int = Field(gt=0, le=MAX_AMOUNT)
    """An amount voucher's face value (what the till sells it for and what it pays); a product voucher's
    price (what it sells for and the most it takes off one unit of its sku)."""
    sku: str = Field(default="", max_length=64)
    """A product voucher's sku; empty: an amount voucher."""
    days: int = Field(default=365, ge=1, le=10 * 366)


class OfflineTotalIn(BaseModel):
    offline_total: int = Field(ge=0, le=MAX_AMOUNT)


confirm_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.VOUCHER_MALFORMED,
    ErrorCode.VOUCHER_FORGED,
    ErrorCode.VOUCHER_EXPIRED,
    ErrorCode.VOUCHER_NOT_SOLD,
    ErrorCode.VOUCHER_USED,
    ErrorCode.VOUCHER_REFUNDED,
    ErrorCode.VOUCHER_OTHER_STORE,
)
admin_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.VOUCHER_ISSUE_INVALID)


@router.post("/v1/vouchers/confirm", responses=confirm_errors)
def confirm(store: Store, body: VoucherConfirmRequest, terminal_id: Terminal) -> dict[str, Any]:
    try:
        return store.confirm_voucher(terminal_id, body)
    except Refused as exc:
        raise ApiError(exc.code, str(exc)) from exc


@router.post("/v1/admin/terminals/{terminal_id}/vouchers", responses=admin_errors)
def issue(store: Store, terminal_id: str, body: IssueIn, name: Admin) -> dict[str, Any]:
    """Sign ``count`` vouchers into the till's stock; it pulls them and may sell them."""
    spec = vouchers.IssueSpec(body.count, body.value, int(time.time()) + body.days * DAY_S, body.sku)
    try:
        made = store.issue_vouchers(terminal_id, spec, payments.signing_key(store, PURPOSE), name)
    except Refused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    return {"terminal_id": terminal_id, "voucher_ids": made, "expires_at": spec.expires_at}


@router.put("/v1/admin/terminals/{terminal_id}/vouchers", responses=admin_errors)
def offline_total(store: Store, terminal_id: str, body: OfflineTotalIn, name: Admin) -> dict[str, Any]:
    try:
        total = store.put_voucher_offline_total(terminal_id, body.offline_total, name)
    except Refused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    return {"terminal_id": terminal_id, "offline_total": total}


@router.get("/v1/admin/vouchers/{voucher_id}", responses=admin_errors)
def show(store: Store, voucher_id: str, name: Admin) -> dict[str, Any]:
    try:
        return store.voucher(voucher_id)
    except Refused as exc:
        raise ApiError(exc.code, str(exc)) from exc
