"""Head office's member-payment routes (``router``, included by ``hq.api.app.create_app``).

    POST /v1/devices                        member app token (or admin token + member_id): register the
                                            device's Ed25519 public key -> its DeviceCert document
    GET  /v1/members/me                     member app token: balance, points, devices
    POST /v1/payments/confirm               terminal token: confirm a payment-code payment before approval
    POST /v1/payments/withdraw              terminal token: withdraw confirmations the till did not use
    POST /v1/admin/topups                   admin token: add stored value to a member
    POST /v1/admin/devices/{cert_id}/revoke admin token: revoke a device (revocation list)
    GET  /v1/admin/holds                    admin token: what head office holds back for confirmations whose
                                            entries have not arrived, oldest first (``?terminal_id=``)
    POST /v1/admin/holds/{txn_id}/release   admin token: end what head office holds back for one transaction's
                                            online confirmations (members' and gift cards'), audited

A member app token is what ``tillpoint hq member-token MEMBER`` prints: in the demo it stands for the
member having logged in to the app; a real deployment would put the chain's own member login here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from hq import payments
from hq.api.deps import Admin, Store, Terminal
from hq.api.errors import ApiError, errors
from hq.store import HqStore
from sync.protocol import MAX_AMOUNT, ConfirmRequest, ErrorCode, WithdrawRequest
from terminal.errors import Rejected

router = APIRouter()


class DeviceRequest(BaseModel):
    device_key: str = Field(min_length=64, max_length=64, description="raw Ed25519 public key, hex")
    member_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Needed with an admin token; with a member token it must be the token's member if given."""
    offline_cap: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, description="admin only")
    lifetime_s: int | None = Field(default=None, ge=1, le=10 * 366 * 86400, description="admin only")


class TopUpRequest(BaseModel):
    member_id: str = Field(min_length=1, max_length=128)
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    topup_id: str | None = Field(default=None, min_length=1, max_length=128)
    note: str = Field(default="", max_length=200)


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=200)


class ReleaseHoldRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200, description="why (kept in the audit log)")
    terminal_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="only this till's confirmation of the transaction"
    )


def who(request: Request, authorization: Annotated[str | None, Header()] = None) -> tuple[str, str]:
    """("member", member_id) or ("admin", name) from the bearer token."""
    store: HqStore = request.app.state.store
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorCode.UNAUTHORIZED, "an 'Authorization: Bearer <token>' header is required")
    member = payments.member_of_token(store, token)
    if member is not None:
        return "member", member
    name = store.authenticate_admin(token)
    if name is not None:
        return "admin", name
    raise ApiError(ErrorCode.UNAUTHORIZED, "unknown member app or administrator token")


Who = Annotated[tuple[str, str], Depends(who)]


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """These routes' OpenAPI ``responses``: the codes and what they mean, without the body schema."""
    return errors(*codes, with_model=False)


def refused(exc: payments.PaymentRefused | Rejected | ValueError) -> ApiError:
    if isinstance(exc, ValueError):
        return ApiError(ErrorCode.INVALID_REQUEST, str(exc))
    code = exc.code if isinstance(exc, payments.PaymentRefused) else exc.code.value
    known = ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.INVALID_REQUEST
    return ApiError(known, str(exc))


@router.post(
    "/v1/devices",
    responses=_errors(
        ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_MEMBER, ErrorCode.WALLET_TOO_MANY_DEVICES
    ),
)
def register_device(store: Store, body: DeviceRequest, caller: Who) -> dict[str, Any]:
    role, name = caller
    if role == "member" and (
        body.member_id not in (None, name) or body.offline_cap is not None or body.lifetime_s is not None
    ):
        raise ApiError(ErrorCode.FORBIDDEN, "a member token registers devices of its own member only")
    member_id = name if role == "member" else body.member_id
    if not member_id:
        raise ApiError(ErrorCode.INVALID_REQUEST, "member_id is needed with an administrator token")
    try:
        cert = payments.register_device(
            store,
            member_id,
            body.device_key,
            lifetime_s=body.lifetime_s or payments.CERT_LIFETIME_S,
            offline_cap=payments.OFFLINE_CAP if body.offline_cap is None else body.offline_cap,
        )
    except (payments.PaymentRefused, ValueError) as exc:
        raise refused(exc) from exc
    return cert.to_doc()


@router.get("/v1/members/me", responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def me(store: Store, caller: Who) -> dict[str, Any]:
    role, member_id = caller
    if role != "member":
        raise ApiError(ErrorCode.FORBIDDEN, "a member app token is needed")
    member = store.member(member_id)
    if member is None:
        raise ApiError(ErrorCode.UNKNOWN_MEMBER, f"no member {member_id}")
    return {
        **member.model_dump(),
        "devices": payments.devices(store, member_id),
        "member_code": payments.member_code(store, member_id),
    }


confirm_errors = _errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.PAYMENT_CODE_REPLAYED,
    ErrorCode.PAYMENT_CODE_FORGED,
    ErrorCode.PAYMENT_CODE_EXPIRED,
    ErrorCode.DEVICE_CERT_UNKNOWN,
    ErrorCode.DEVICE_CERT_REVOKED,
    ErrorCode.DEVICE_CERT_EXPIRED,
    ErrorCode.INSUFFICIENT_BALANCE,
    ErrorCode.UNKNOWN_MEMBER,
    ErrorCode.BLOCKED_MEMBER,
    ErrorCode.REPLAYED_CARD,
    ErrorCode.FORGED_CARD,
    ErrorCode.CARD_CANNOT_PAY,
    ErrorCode.ATTESTED_HOLD_LIMIT,
)


@router.post("/v1/payments/confirm", responses=confirm_errors)
def confirm(store: Store, body: ConfirmRequest, terminal_id: Terminal) -> dict[str, Any]:
    try:
        return payments.confirm(store, terminal_id, body)
    except (payments.PaymentRefused, Rejected, ValueError) as exc:
        raise refused(exc) from exc


@router.post("/v1/payments/withdraw", responses=_errors(ErrorCode.UNAUTHORIZED))
def withdraw(store: Store, body: WithdrawRequest, terminal_id: Terminal) -> dict[str, int]:
    return {"withdrawn": payments.withdraw(store, terminal_id, body.txn_ids)}


@router.post(
    "/v1/admin/topups", responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_MEMBER)
)
def topup(store: Store, body: TopUpRequest, name: Admin) -> dict[str, Any]:
    try:
        done = payments.topup(store, body.member_id, body.amount, name, body.note, body.topup_id)
    except (payments.PaymentRefused, ValueError) as exc:
        raise refused(exc) from exc
    return {
        "topup_id": done.topup_id,
        "member_id": done.member_id,
        "amount": done.amount,
        "balance": done.balance_after,
        "recovered": done.recovered,
        "settled_items": done.settled_items,
    }


@router.post(
    "/v1/admin/devices/{cert_id}/revoke",
    responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.DEVICE_CERT_UNKNOWN),
)
def revoke(store: Store, cert_id: str, body: RevokeRequest, name: Admin) -> dict[str, Any]:
    try:
        return {"revocation_id": payments.revoke_device(store, cert_id, body.reason or f"by {name}")}
    except payments.PaymentRefused as exc:
        raise refused(exc) from exc


@router.get("/v1/admin/holds", responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def holds(store: Store, name: Admin, terminal_id: str | None = None) -> list[dict[str, Any]]:
    """What head office holds back for online confirmations whose entries have not arrived, oldest first."""
    return payments.holds(store, terminal_id)


@router.post(
    "/v1/admin/holds/{txn_id}/release",
    responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NO_HOLD, ErrorCode.HOLD_ENTRY_ARRIVED),
)
def release_hold(store: Store, txn_id: str, body: ReleaseHoldRequest, name: Admin) -> dict[str, Any]:
    """End the hold of a transaction's online confirmations whose entries have not arrived (docs/payments.md)."""
    try:
        return payments.release_hold(store, txn_id, name, body.reason, body.terminal_id)
    except (payments.PaymentRefused, ValueError) as exc:
        raise refused(exc) from exc
