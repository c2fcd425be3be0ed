"""The rewards catalogue's administration (administrator token; docs/rewards.md): thin over ``hq.rewards``.

GET  /v1/admin/rewards                          every reward, with what is left of its stock
PUT  /v1/admin/rewards/{id}                     {reward, points, title, sku | coupon, stock?, active?}
POST /v1/admin/rewards/{id}/codes               {codes: [...]}: a partner_code reward's stock
GET  /v1/admin/rewards/purchases?member_id=M    a member's purchases, newest first
POST /v1/admin/rewards/purchases/{id}/refund    give a wallet purchase back (points, stock)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field

from hq.api.deps import Admin, Store
from hq.api.errors import ApiError, errors
from hq.rewards import MAX_CODES, RewardRefused
from sync.protocol import ErrorCode
from terminal.rewards import ID_PATTERN

router = APIRouter()
T = TypeVar("T")

RewardId = Annotated[str, Path(min_length=1, max_length=48, pattern=ID_PATTERN.pattern)]
PurchaseId = Annotated[str, Path(min_length=1, max_length=300)]
REWARD_CODES = (ErrorCode.REWARD_INVALID, ErrorCode.REWARD_UNKNOWN)
read_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN)
write_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, *REWARD_CODES)
refund_errors = errors(
    ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.REWARD_NOT_REFUNDABLE
)


class CodesIn(BaseModel):
    codes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=MAX_CODES)


@router.get("/v1/admin/rewards", responses=read_errors)
def list_rewards(store: Store, admin: Admin) -> list[dict[str, Any]]:
    """Every reward, by points then id, with ``left``: the units head office may still hand out (None: no
    limit; units held by tills for their offline sales are not counted)."""
    return [{**o.reward.doc(), "left": o.left} for o in store.reward_catalogue()]


@router.put("/v1/admin/rewards/{reward_id}", responses=write_errors)
def put_reward(
    store: Store, reward_id: RewardId, body: Annotated[dict[str, Any], Body()], admin: Admin
) -> dict[str, Any]:
    """Define or change a reward; it reaches the tills with their next pull."""
    return _reward(lambda: store.put_reward({**body, "reward_id": reward_id}, admin).doc())


@router.post("/v1/admin/rewards/{reward_id}/codes", responses=write_errors)
def add_codes(store: Store, reward_id: RewardId, body: Annotated[CodesIn, Body()], admin: Admin) -> dict[str, Any]:
    """Load partner codes (each handed out once; one held already is skipped)."""
    return {"reward_id": reward_id, "added": _reward(lambda: store.add_reward_codes(reward_id, body.codes, admin))}


@router.get("/v1/admin/rewards/purchases", responses=read_errors)
def purchases(
    store: Store, admin: Admin, member_id: Annotated[str, Query(min_length=1, max_length=128)]
) -> list[dict[str, Any]]:
    return [p.as_dict() for p in store.reward_purchases(member_id)]


@router.post("/v1/admin/rewards/purchases/{purchase_id}/refund", responses=refund_errors)
def refund(store: Store, purchase_id: PurchaseId, admin: Admin) -> dict[str, Any]:
    """Give a wallet purchase back: its points, its stock unit, its coupon withdrawn (a till's sale is
    voided at the till)."""
    return _reward(lambda: store.refund_reward(purchase_id, admin).as_dict())


def _reward(call: Callable[[], T]) -> T:
    try:
        return call()
    except RewardRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc
