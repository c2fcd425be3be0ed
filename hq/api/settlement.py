"""Settlement routes (administrator token): statements per merchant and period (JSON, CSV, PDF), and
closing a period (audited). A thin shell over ``hq.settlement``; docs/settlement.md."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from hq import settlement
from hq.api.deps import Admin, Store
from hq.api.errors import ApiError, errors
from hq.periods import PeriodError
from sync.protocol import ErrorCode

router = APIRouter(tags=["settlement"])
T = TypeVar("T")
Period = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", description="a month, YYYY-MM")]
MerchantId = Annotated[str, Path(min_length=1, max_length=64)]
MEDIA = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


class CloseRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class LengthRequest(BaseModel):
    starting: str = Field(pattern=r"^\d{4}-\d{2}$", description="the first month of the first such period")
    months: int = Field(ge=1, le=12, description="1, 2, 3, 4, 6 or 12")
    reason: str = Field(min_length=1, max_length=500)


read_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.BAD_PERIOD,
    ErrorCode.UNKNOWN_MERCHANT,
    ErrorCode.CLOSE_DAMAGED,
)
close_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.BAD_PERIOD,
    ErrorCode.PERIOD_NOT_OVER,
    ErrorCode.PERIOD_CLOSED,
    ErrorCode.EARLIER_PERIOD_OPEN,
)


@router.get("/v1/admin/settlement/deferred", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def deferred(
    store: Store,
    admin: Admin,
    as_of: Annotated[date | None, Query(description="the day's end to read, YYYY-MM-DD (default: today, UTC)")] = None,
) -> dict[str, Any]:
    """Deferred revenue at a day's end: each merchant's outstanding points and what it paid for them already,
    members' stored value, gift card balances, vouchers sold and not used."""
    return settlement.read_deferred(store.db, as_of or datetime.now(UTC).date()).as_dict()


@router.get("/v1/admin/settlement/periods", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def periods(store: Store, admin: Admin) -> dict[str, Any]:
    """The last period closed, and every close: who, when, why."""
    return settlement.calendar(store.db)


@router.post("/v1/admin/settlement/periods/{period}/close", responses=close_errors)
def close(store: Store, period: Period, body: Annotated[CloseRequest, Body()], admin: Admin) -> dict[str, Any]:
    """Close a period that is over by head office's clock in every store's business day (the one after the last
    closed): its statements never change again; a late
    entry of it is filed under the next open period."""
    try:
        done = settlement.close_period(store.db, period, admin, body.reason, store.settings.timezone)
    except PeriodError as exc:
        raise ApiError(ErrorCode(exc.code.value), exc.detail) from exc
    return {"period": done.period, "closed_at": done.closed_at, "closed_by": done.closed_by, "reason": done.reason}


length_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.BAD_PERIOD,
    ErrorCode.BAD_PERIOD_LENGTH,
    ErrorCode.PERIOD_CLOSED,
    ErrorCode.PERIOD_IN_USE,
)


@router.put("/v1/admin/settlement/periods/length", responses=length_errors)
def set_length(store: Store, body: Annotated[LengthRequest, Body()], admin: Admin) -> dict[str, Any]:
    """Periods of ``months`` from ``starting`` on: it must start a period, be open and hold no entries yet."""
    try:
        settlement.set_length(store.db, body.starting, body.months, admin, body.reason)
    except PeriodError as exc:
        raise ApiError(ErrorCode(exc.code.value), exc.detail) from exc
    return settlement.calendar(store.db)


@router.get("/v1/admin/settlement/{period}", responses=read_errors)
def statements(store: Store, period: Period, admin: Admin) -> dict[str, Any]:
    """Every merchant's statement for the period, and what they sum to."""
    found = _read(lambda: settlement.read_statements(store.db, period))
    return {"period": period, "statements": [s.as_dict() for s in found], "totals": settlement.totals(found)}


@router.get("/v1/admin/settlement/{period}/{merchant_id}", responses=read_errors)
def statement(
    store: Store, period: Period, merchant_id: MerchantId, admin: Admin, format: Literal["json", "csv", "pdf"] = "json"
) -> Response:
    """One merchant's statement (``?format=csv|pdf``: the document, the same bytes every time)."""
    found = _read(lambda: settlement.read_statement(store.db, period, merchant_id))
    if format == "json":
        return Response(settlement.json_bytes(found), media_type="application/json")
    body = settlement.to_csv(found) if format == "csv" else settlement.to_pdf(found)
    name = f"settlement-{period}-{merchant_id}.{format}"
    return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _read(read: Callable[[], T]) -> T:
    try:
        return read()
    except settlement.SettlementError as exc:
        raise ApiError(ErrorCode(exc.code.value), exc.detail) from exc
