"""Head office's administration routes (administrator token): the fleet, reconciliation reports and
items, stores' business days, quarantine decisions, blocking members and cards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from hq import fleet
from hq.api.deps import NEXT_CURSOR, Admin, Limit, Store, Subject
from hq.api.errors import ApiError, errors
from hq.businessday import BadCalendar
from hq.errors import Refused
from hq.profiles import ProfileChange, ProfileRefused, parse_consent
from hq.quarantine import NotQuarantined
from hq.receipts import ReceiptSale
from hq.reconcile import BadCursor, UnknownItem, report_csv
from sync.protocol import ErrorCode, GroupPage, ItemState, Reason, ReconItem, TopupLimits, WireTopupPolicy
from terminal.topups import TopupPolicy

router = APIRouter()
T = TypeVar("T")


class SettleRequest(BaseModel):
    note: str = Field(min_length=1, max_length=500)


class BlockRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class GroupSettleRequest(BaseModel):
    terminal_id: str = Field(min_length=1, max_length=128)
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    reason: Reason
    note: str = Field(min_length=1, max_length=500)


class StoreCalendar(BaseModel):
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Asia/Tokyo")
    day_starts: str = Field(
        "00:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="When the business day starts, local HH:MM (04:00: a sale at 01:30 is the day before's)",
    )


class ProfileIn(BaseModel):
    """A change of a member's profile; what is not given stays as it is."""

    birthday: str | None = Field(None, max_length=10, description="YYYY-MM-DD; an empty string removes it")
    attributes: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=32, description="name -> value (an empty value removes it)"
    )
    consents: list[Annotated[str, Field(max_length=80)]] = Field(
        default_factory=list, max_length=4, description="CHANNEL:VERSION given now, e.g. marketing:v2"
    )
    withdraw: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=4, description="channels whose consent is withdrawn now"
    )


admin_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN)
profile_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.UNKNOWN_MEMBER,
    ErrorCode.BAD_BIRTHDAY,
    ErrorCode.UNKNOWN_ATTRIBUTE,
    ErrorCode.BAD_ATTRIBUTE_VALUE,
    ErrorCode.BAD_CONSENT,
)


@router.get("/v1/admin/members/{member_id}/profile", responses=profile_errors, tags=["members"])
def get_profile(store: Store, member_id: Subject, admin: Admin) -> dict[str, Any]:
    """The member's birthday, attributes and consents (marketing: whether it holds now)."""
    return _profile(lambda: store.profile(member_id))


@router.put("/v1/admin/members/{member_id}/profile", responses=profile_errors, tags=["members"])
def put_profile(store: Store, member_id: Subject, body: Annotated[ProfileIn, Body()], admin: Admin) -> dict[str, Any]:
    """Change the member's profile: every part is checked before any is written."""

    def change() -> dict[str, Any]:
        return store.update_profile(
            member_id,
            ProfileChange(
                birthday=body.birthday or None,
                clear_birthday=body.birthday == "",
                attributes=dict(body.attributes),
                consents=tuple(parse_consent(c) for c in body.consents),
                withdraw=tuple(body.withdraw),
            ),
        )

    return _profile(change)


@router.get(
    "/v1/admin/members/{member_id}/stats",
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_MEMBER, ErrorCode.INVALID_REQUEST),
    tags=["members"],
)
def member_stats(
    store: Store,
    member_id: Subject,
    admin: Admin,
    as_of: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
) -> dict[str, Any]:
    """The member's statistics as of a business day (default today): see docs/members.md."""
    try:
        return _profile(lambda: store.member_stats(member_id, as_of).as_dict())
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


def _profile(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except ProfileRefused as exc:
        raise ApiError(ErrorCode(exc.code), str(exc)) from exc


topup_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.TOPUP_POLICY_INVALID)


@router.get("/v1/admin/terminals/{terminal_id}/topups", response_model=WireTopupPolicy, responses=topup_errors)
def get_topup_policy(store: Store, terminal_id: str, name: Admin) -> WireTopupPolicy:
    """Whether this till may sell top-ups, its limits, and its store's business day (docs/stored-value.md)."""
    try:
        return WireTopupPolicy.model_validate(store.topup_policy_doc(terminal_id))
    except Refused as exc:
        raise ApiError(exc.code, exc.detail) from exc


@router.put("/v1/admin/terminals/{terminal_id}/topups", response_model=WireTopupPolicy, responses=topup_errors)
def put_topup_policy(store: Store, terminal_id: str, body: TopupLimits, name: Admin) -> WireTopupPolicy:
    """Enable or disable a till for top-ups and set its limits; it reaches the till with its next pull."""
    wanted = TopupPolicy(body.enabled, body.per_transaction, body.per_day, body.per_member_day, body.offline_total)
    try:
        store.put_topup_policy(terminal_id, wanted, name)
    except Refused as exc:
        raise ApiError(exc.code, exc.detail) from exc
    return WireTopupPolicy.model_validate(store.topup_policy_doc(terminal_id))


@router.get("/v1/admin/terminals", responses=admin_errors)
def terminals(store: Store, admin: Admin) -> list[dict[str, Any]]:
    """The fleet: each till's journal position, version, readers, backlog, clock, disk, last error."""
    return store.fleet()


@router.get("/metrics", responses=admin_errors, response_class=PlainTextResponse)
def metrics(store: Store, admin: Admin) -> Response:
    """The fleet as Prometheus gauges (scrape with the administrator token as a bearer token)."""
    body, content_type = fleet.exposition(store.fleet)
    return Response(body, media_type=content_type)


@router.get("/v1/admin/reconciliation", responses=admin_errors)
def reconciliation(
    store: Store,
    admin: Admin,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    rows = store.report(store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)
    if format == "csv":
        return PlainTextResponse(report_csv(rows), media_type="text/csv")
    return JSONResponse(rows)


page_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.INVALID_REQUEST)


@router.get("/v1/admin/items", response_model=list[ReconItem], responses=page_errors)
def items(
    store: Store,
    response: Response,
    admin: Admin,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day: str | None = None,
    state: ItemState | None = None,
    reason: Reason | None = None,
    after: str | None = None,
    limit: Limit = 500,
) -> list[ReconItem]:
    """Items oldest first, a page at a time: ``X-Next-Cursor`` (pass as ``after``) when there are more."""
    found, cursor = _paged(
        lambda: store.item_page(
            after=after,
            limit=limit,
            store_id=store_id,
            terminal_id=terminal_id,
            day=day,
            state=state.value if state else None,
            reason=reason.value if reason else None,
        )
    )
    if cursor is not None:
        response.headers[NEXT_CURSOR] = cursor
    return found


@router.get("/v1/admin/item-groups", response_model=GroupPage, responses=page_errors)
def item_groups(
    store: Store,
    admin: Admin,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day: str | None = None,
    state: ItemState | None = None,
    reason: Reason | None = None,
    after: str | None = None,
    limit: Limit = 100,
) -> GroupPage:
    """Items grouped: one row per cause, terminal, business day and state with its count (newest day
    first); ``/v1/admin/items`` with the same terminal, day and reason expands one."""
    return _paged(
        lambda: store.item_groups(
            after=after,
            limit=limit,
            store_id=store_id,
            terminal_id=terminal_id,
            day=day,
            state=state.value if state else None,
            reason=reason.value if reason else None,
        )
    )


@router.get("/v1/admin/items/summary", responses=admin_errors)
def item_summary(
    store: Store,
    admin: Admin,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
) -> dict[str, dict[str, int]]:
    """Per cause: how many items are open (and of those held in quarantine), settled automatically, by hand."""
    return store.item_summary(store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)


@router.post("/v1/admin/item-groups/settle", responses=page_errors)
def settle_group(store: Store, body: Annotated[GroupSettleRequest, Body()], admin: Admin) -> dict[str, int]:
    """Settle by hand every open item of one group (not those holding an entry in quarantine)."""
    try:
        return {"settled": store.settle_group(body.terminal_id, body.day, body.reason.value, admin, body.note)}
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


@router.get("/v1/admin/receipts", response_model=list[ReceiptSale], responses=page_errors, tags=["receipts"])
def receipt_sales(
    store: Store,
    admin: Admin,
    digest: Annotated[str | None, Query(min_length=8, max_length=64, pattern=r"^[0-9a-fA-F]+$")] = None,
    number: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    store_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Limit = 100,
) -> list[ReceiptSale]:
    """The sales read from a POS's printed receipt, by its digest (or a prefix of 8 or more hex digits)
    and/or the number printed on it (within a store with ``store_id``), first received first; ``sold_twice``
    marks each one flagged ``receipt_sold_twice``. ``invalid_request`` without a digest or a number."""
    try:
        return store.receipt_sales(digest=digest, number=number, store_id=store_id, limit=limit)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


@router.get("/v1/admin/stores", responses=admin_errors)
def stores(store: Store, admin: Admin) -> list[dict[str, str | None]]:
    return store.stores()


@router.put("/v1/admin/stores/{store_id}", responses=page_errors)
def set_store(
    store: Store,
    store_id: Annotated[str, Path(min_length=1, max_length=128)],
    body: Annotated[StoreCalendar, Body()],
    admin: Admin,
) -> dict[str, str]:
    """Set a store's time zone and business-day cut-off: new entries are filed by it."""
    try:
        return store.set_store(store_id, body.timezone, body.day_starts)
    except BadCalendar as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


@router.get("/v1/admin/quarantine", responses=admin_errors)
def quarantined(store: Store, admin: Admin) -> list[dict[str, Any]]:
    """Entries held in quarantine: stored, changing no balance until released or rejected."""
    return store.quarantined()


decide_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)


@router.post("/v1/admin/quarantine/{txn_id}/release", responses=decide_errors)
def release(store: Store, txn_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> dict[str, str]:
    """Apply a quarantined entry now (who: the admin; why: the note)."""
    return {"txn_id": txn_id, "effect": _decide(lambda: store.release(txn_id, admin, body.note))}


@router.post("/v1/admin/quarantine/{txn_id}/reject", responses=decide_errors)
def reject(store: Store, txn_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> dict[str, str]:
    """Keep a quarantined entry from ever applying."""
    return {"txn_id": txn_id, "effect": _decide(lambda: store.reject(txn_id, admin, body.note))}


@router.post(
    "/v1/admin/items/{item_id}/settle",
    response_model=ReconItem,
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
)
def settle(store: Store, item_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> ReconItem:
    try:
        return store.settle(item_id, admin, body.note)
    except UnknownItem as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


def _block_routes(kind: str) -> None:
    errors_ = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.INVALID_REQUEST)

    @router.post(f"/v1/admin/{kind}s/{{subject}}/block", responses=errors_, name=f"block_{kind}")
    def block(store: Store, subject: Subject, body: Annotated[BlockRequest, Body()], admin: Admin) -> dict[str, Any]:
        """Block it (a card by its keyed hash): tills refuse it once they pull; head office flags entries
        made after the block by its own time. Who and why are kept."""
        return _blocking(lambda: store.set_blocked(kind, subject, True, admin, body.reason))

    @router.post(f"/v1/admin/{kind}s/{{subject}}/unblock", responses=errors_, name=f"unblock_{kind}")
    def unblock(store: Store, subject: Subject, body: Annotated[BlockRequest, Body()], admin: Admin) -> dict[str, Any]:
        return _blocking(lambda: store.set_blocked(kind, subject, False, admin, body.reason))


for _kind in ("member", "card"):
    _block_routes(_kind)


def _paged(read: Callable[[], T]) -> T:
    try:
        return read()
    except BadCursor as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


def _blocking(change: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return change()
    except LookupError as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except ValueError as exc:  # no who or why (blank, or only spaces of any kind)
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


def _decide(decision: Callable[[], str]) -> str:
    try:
        return decision()
    except NotQuarantined as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc
