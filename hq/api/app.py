"""Head office's HTTP API (protocol version 1, see ``sync.protocol`` and docs/protocol.md) and helpers to run it.

    GET  /v1/health                   no auth
    GET  /v1/openapi.json             no auth: the machine-readable protocol, error codes included
    POST /v1/enrol                    one-time code -> the terminal's own credential
    POST /v1/credentials/rotate       terminal token -> a new token (the old one works until the new one is used)
    POST /v1/journal                  terminal token; body may be gzip (Content-Encoding: gzip)
    GET  /v1/changes                  terminal token; ?since=N&limit=M (limit capped at 5000)
    GET  /v1/snapshot, /v1/snapshot/{kind}   terminal token; bootstrap of a new terminal
    POST /v1/eod                      terminal token; end-of-day totals -> complete / what is missing
    GET  /v1/flags                    terminal token; the reconciliation items of this terminal
    GET  /v1/journal/state            terminal token; acked and highest seq held, gaps, ranges reported lost
    POST /v1/journal/lost             terminal token; seq ranges the till can never send (a damaged journal)
    POST /v1/terminal/health          terminal token (protocol 2); version, readers, backlog, disk, last error
    GET  /v1/admin/terminals          admin token; the fleet: journal position, health report, ages
    GET  /metrics                     admin token; the fleet as Prometheus gauges (deploy/prometheus/)
    GET  /v1/admin/reconciliation     admin token; report by store, terminal, day (?format=json|csv)
    GET  /v1/admin/items              admin token; reconciliation items, a page at a time (X-Next-Cursor, ?after=)
    GET  /v1/admin/item-groups        admin token; items by cause, terminal, business day, state, with counts
    GET  /v1/admin/items/summary      admin token; open / settled per cause
    POST /v1/admin/items/{id}/settle  admin token; settle by hand (who = the admin, why = note)
    POST /v1/admin/item-groups/settle admin token; settle a whole group by hand
    GET  /v1/admin/stores, PUT /v1/admin/stores/{id}   admin token; each store's time zone and day cut-off
    POST /v1/admin/members/{id}/block, /unblock, /v1/admin/cards/{hash}/block, /unblock   admin token
    GET  /v1/admin/quarantine         admin token; entries held in quarantine (no balance changed)
    POST /v1/admin/quarantine/{txn}/release, /reject   admin token; apply it now, or never
    POST /v1/payments/confirm, /v1/devices, GET /v1/members/me, POST /v1/admin/topups,
    POST /v1/admin/devices/{cert_id}/revoke   member payments (``hq.api.payments``)

Every error is an ``ErrorBody`` whose code is one of ``sync.protocol.ErrorCode``.
Storage calls are synchronous, so endpoints are plain ``def`` and run in the threadpool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import uvicorn
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from hq import fleet
from hq.businessday import BadCalendar
from hq.demo import seed_demo
from hq.quarantine import NotQuarantined
from hq.reconcile import MAX_PAGE, BadCursor, UnknownItem, report_csv
from hq.store import (
    CredentialRevoked,
    EnrolmentRefused,
    HqError,
    HqStore,
    SeqConflict,
    StorageFailed,
    UnknownTerminal,
    WrongTerminal,
    utc_now,
)
from sync.asgi import BodyGuard
from sync.protocol import (
    CLOCK_HEADER,
    ERROR_STATUS,
    MAX_SEQ,
    PROTOCOL_VERSION,
    SNAPSHOT_KINDS,
    ChangesPage,
    EnrolRequest,
    EnrolResponse,
    EodReport,
    EodResult,
    ErrorBody,
    ErrorCode,
    GroupPage,
    ItemState,
    JournalState,
    LostReport,
    PushRequest,
    PushResponse,
    Reason,
    ReconItem,
    SnapshotInfo,
    SnapshotPage,
    TillHealth,
    protocol_problem,
)

log = logging.getLogger("tillpoint.hq")

MAX_CHANGES_LIMIT = 5000
DEFAULT_CHANGES_LIMIT = 500
MAX_SNAPSHOT_LIMIT = 50_000
MAX_BODY = 32 * 1024 * 1024

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
_STORAGE_ERRORS: dict[type[HqError], ErrorCode] = {
    SeqConflict: ErrorCode.SEQ_CONFLICT,
    WrongTerminal: ErrorCode.WRONG_TERMINAL,
    UnknownTerminal: ErrorCode.UNKNOWN_TERMINAL,
    CredentialRevoked: ErrorCode.CREDENTIAL_REVOKED,
    EnrolmentRefused: ErrorCode.ENROL_CODE_INVALID,
    StorageFailed: ErrorCode.STORAGE_UNAVAILABLE,
}


class ApiError(Exception):
    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = ERROR_STATUS[code][0]
        self.code, self.message, self.headers = code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(code=code, message=message).model_dump(), status_code=status, headers=headers)


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` naming every error code a route can answer."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, ErrorCode.INVALID_REQUEST, ErrorCode.INTERNAL, ErrorCode.STORAGE_UNAVAILABLE):
        status, meaning = ERROR_STATUS[code]
        by_status.setdefault(status, []).append(f"`{code.value}`: {meaning}")
    return {
        status: {"model": ErrorBody, "description": "; ".join(lines)} for status, lines in sorted(by_status.items())
    }


# -- authentication -------------------------------------------------------------------------------


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "an 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def _store(request: Request) -> HqStore:
    store: HqStore = request.app.state.store
    return store


def authenticated_terminal(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The terminal id of the request's bearer token; 401 otherwise."""
    terminal_id = _store(request).authenticate(_bearer_token(authorization))
    if terminal_id is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "unknown terminal token", {"WWW-Authenticate": "Bearer"})
    return terminal_id


def authenticated_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    name = _store(request).authenticate_admin(_bearer_token(authorization))
    if name is None:
        raise ApiError(ErrorCode.FORBIDDEN, "an administrator token is needed for /v1/admin")
    return name


Terminal = Annotated[str, Depends(authenticated_terminal)]
Admin = Annotated[str, Depends(authenticated_admin)]
Clock = Annotated[str | None, Header(alias=CLOCK_HEADER, description="The terminal's UTC time, ISO 8601")]


def _check_push(terminal_id: str, body: PushRequest) -> None:
    problem = protocol_problem(body.protocol)
    if problem is not None:
        raise ApiError(ErrorCode.UNSUPPORTED_PROTOCOL, problem)
    claimed = {body.terminal_id, *(entry.terminal_id for entry in body.entries)}
    if claimed != {terminal_id}:
        others = ", ".join(sorted(claimed - {terminal_id}))
        raise ApiError(ErrorCode.WRONG_TERMINAL, f"this token is terminal {terminal_id}; it may not push for {others}")


# -- the application ------------------------------------------------------------------------------


def _validation_message(exc: RequestValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()]
    return "; ".join(parts)[:500] or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(HqError)
    def storage_error(_: Request, exc: HqError) -> JSONResponse:
        code = _STORAGE_ERRORS.get(type(exc), ErrorCode.INTERNAL)
        status = ERROR_STATUS[code][0]
        if status >= 500:
            log.error("request failed: %s", exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, ErrorCode.INVALID_REQUEST, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    # Starlette still re-raises after this response, so uvicorn logs the traceback once.
    @app.exception_handler(Exception)
    def internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, ErrorCode.INTERNAL, "head office hit an internal error; retry later")


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


def create_app(store: HqStore) -> FastAPI:
    """The head-office API over ``store``."""
    app = FastAPI(
        title="tillpoint head office",
        version=f"protocol {PROTOCOL_VERSION}",
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
        description="Store <-> head office sync protocol. Error bodies are "
        "{code, message}; codes: " + ", ".join(c.value for c in ErrorCode),
    )
    app.state.store = store
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=1)  # fast; JSON still shrinks ~5x
    app.add_middleware(BodyGuard, max_size=MAX_BODY, gzip=True)  # every body capped before it is read
    _install_error_handlers(app)
    _terminal_routes(app, store)
    _sync_routes(app, store)
    _admin_routes(app, store)
    from hq.api import payments as payments_api  # imports this module: only once it is loaded

    payments_api.register(app, store)
    from hq.api import join  # the sign-up page, claims and erasure; imports this module too

    join.register(app, store)
    return app


def _terminal_routes(app: FastAPI, store: HqStore) -> None:
    root_key = store.root_public_key()

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        # The root public key is public: a terminal configured with a bare token pins it on first use.
        return {"status": "ok", "time": utc_now(), "protocol": PROTOCOL_VERSION, "root_key": root_key}

    @app.post("/v1/enrol", response_model=EnrolResponse, responses=_errors(ErrorCode.ENROL_CODE_INVALID))
    def enrol(body: EnrolRequest) -> EnrolResponse:
        return store.enrol(body.code, body.terminal_id)

    @app.post(
        "/v1/credentials/rotate",
        response_model=EnrolResponse,
        responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
    )
    def rotate(terminal_id: Terminal) -> EnrolResponse:
        token = store.rotate(terminal_id)
        return EnrolResponse(
            terminal_id=terminal_id,
            store_id=store.store_of(terminal_id) or "",
            token=token,
            root_key=store.root_public_key(),
        )

    @app.get(
        "/v1/flags",
        response_model=list[ReconItem],
        responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
    )
    def flags(terminal_id: Terminal, state: ItemState | None = None, limit: Limit = FLAGS_SHOWN) -> list[ReconItem]:
        """This terminal's items, the newest ``limit`` (what the till shows; head office holds them all)."""
        return store.items(terminal_id=terminal_id, state=state.value if state else None, limit=limit, newest=True)

    @app.post(
        "/v1/eod",
        response_model=EodResult,
        responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED, ErrorCode.WRONG_TERMINAL),
    )
    def eod(body: EodReport, terminal_id: Terminal, clock: Clock = None) -> EodResult:
        if body.terminal_id != terminal_id:
            raise ApiError(ErrorCode.WRONG_TERMINAL, f"this token is terminal {terminal_id}")
        store.flag_clock(terminal_id, clock)
        return store.eod(body)


def _sync_routes(app: FastAPI, store: HqStore) -> None:
    push_errors = _errors(
        ErrorCode.UNSUPPORTED_PROTOCOL,
        ErrorCode.BAD_ENCODING,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.CREDENTIAL_REVOKED,
        ErrorCode.WRONG_TERMINAL,
        ErrorCode.UNKNOWN_TERMINAL,
        ErrorCode.SEQ_CONFLICT,
        ErrorCode.BODY_TOO_LARGE,
    )

    @app.post("/v1/journal", response_model=PushResponse, responses=push_errors)
    def push(body: PushRequest, terminal_id: Terminal, clock: Clock = None) -> PushResponse:
        _check_push(terminal_id, body)
        return store.ingest(terminal_id, body.entries, clock)

    pull_errors = _errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED)

    @app.post(
        "/v1/terminal/health",
        status_code=204,
        response_class=Response,
        responses=_errors(ErrorCode.UNSUPPORTED_PROTOCOL, ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
    )
    def terminal_health(body: TillHealth, terminal_id: Terminal, clock: Clock = None) -> Response:
        """The fleet view: a till's version, readers, backlog, disk and last error (protocol 2)."""
        problem = protocol_problem(body.protocol)
        if problem is not None:
            raise ApiError(ErrorCode.UNSUPPORTED_PROTOCOL, problem)
        store.put_health(terminal_id, body, clock)
        return Response(status_code=204)

    @app.get("/v1/journal/state", response_model=JournalState, responses=pull_errors)
    def journal_state(terminal_id: Terminal, clock: Clock = None) -> JournalState:
        """Where head office holds this terminal's journal: a till rebuilt from a damaged file asks first."""
        store.flag_clock(terminal_id, clock)
        return store.journal_state(terminal_id)

    @app.post("/v1/journal/lost", response_model=JournalState, responses=pull_errors)
    def journal_lost(body: LostReport, terminal_id: Terminal) -> JournalState:
        """Seq ranges this till can never send (its journal was damaged): an item, and the watermark moves on."""
        try:
            return store.report_lost(terminal_id, [(a, b) for a, b in body.ranges], body.reason)
        except ValueError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    @app.get("/v1/changes", response_model=ChangesPage, responses=pull_errors)
    def changes(
        terminal_id: Terminal,
        since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = DEFAULT_CHANGES_LIMIT,
        clock: Clock = None,
    ) -> ChangesPage:
        store.flag_clock(terminal_id, clock)
        store.note_pull(terminal_id)
        # Over-large pages are capped rather than refused: the cursor makes the rest reachable.
        return store.changes(since, min(limit, MAX_CHANGES_LIMIT))

    @app.get("/v1/snapshot", response_model=SnapshotInfo, responses=pull_errors)
    def snapshot(terminal_id: Terminal) -> SnapshotInfo:
        return store.snapshot_info()

    @app.get(
        "/v1/snapshot/{kind}",
        response_model=SnapshotPage,
        responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED, ErrorCode.NOT_FOUND),
    )
    def snapshot_kind(
        kind: str,
        terminal_id: Terminal,
        after: Annotated[str, Query(max_length=256)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = 5000,
    ) -> Response:
        if kind not in SNAPSHOT_KINDS:
            raise ApiError(ErrorCode.NOT_FOUND, f"no snapshot kind {kind!r}; kinds: {', '.join(SNAPSHOT_KINDS)}")
        page = store.snapshot_rows(kind, after, min(limit, MAX_SNAPSHOT_LIMIT))
        return Response(json.dumps(page, separators=(",", ":")), media_type="application/json")


def _admin_routes(app: FastAPI, store: HqStore) -> None:
    admin_errors = _errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN)

    @app.get("/v1/admin/terminals", responses=admin_errors)
    def terminals(admin: Admin) -> list[dict[str, Any]]:
        """The fleet: each till's journal position, version, readers, backlog, clock, disk, last error."""
        return store.fleet()

    @app.get("/metrics", responses=admin_errors, response_class=PlainTextResponse)
    def metrics(admin: Admin) -> Response:
        """The fleet as Prometheus gauges (scrape with the administrator token as a bearer token)."""
        body, content_type = fleet.exposition(store.fleet)
        return Response(body, media_type=content_type)

    @app.get("/v1/admin/reconciliation", responses=admin_errors)
    def reconciliation(
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

    page_errors = _errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.INVALID_REQUEST)

    @app.get("/v1/admin/items", response_model=list[ReconItem], responses=page_errors)
    def items(
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

    @app.get("/v1/admin/item-groups", response_model=GroupPage, responses=page_errors)
    def item_groups(
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

    @app.get("/v1/admin/items/summary", responses=admin_errors)
    def item_summary(
        admin: Admin,
        store_id: str | None = None,
        terminal_id: str | None = None,
        day_from: str | None = None,
        day_to: str | None = None,
    ) -> dict[str, dict[str, int]]:
        """Per cause: how many items are open (and of those held in quarantine), settled automatically, by hand."""
        return store.item_summary(store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)

    @app.post("/v1/admin/item-groups/settle", responses=page_errors)
    def settle_group(body: Annotated[GroupSettleRequest, Body()], admin: Admin) -> dict[str, int]:
        """Settle by hand every open item of one group (not those holding an entry in quarantine)."""
        try:
            return {"settled": store.settle_group(body.terminal_id, body.day, body.reason.value, admin, body.note)}
        except ValueError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    @app.get("/v1/admin/stores", responses=admin_errors)
    def stores(admin: Admin) -> list[dict[str, str | None]]:
        return store.stores()

    @app.put("/v1/admin/stores/{store_id}", responses=page_errors)
    def set_store(
        store_id: Annotated[str, Path(min_length=1, max_length=128)],
        body: Annotated[StoreCalendar, Body()],
        admin: Admin,
    ) -> dict[str, str]:
        """Set a store's time zone and business-day cut-off: new entries are filed by it."""
        try:
            return store.set_store(store_id, body.timezone, body.day_starts)
        except BadCalendar as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    @app.get("/v1/admin/quarantine", responses=admin_errors)
    def quarantined(admin: Admin) -> list[dict[str, Any]]:
        """Entries held in quarantine: stored, changing no balance until released or rejected."""
        return store.quarantined()

    decide_errors = _errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)

    @app.post("/v1/admin/quarantine/{txn_id}/release", responses=decide_errors)
    def release(txn_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> dict[str, str]:
        """Apply a quarantined entry now (who: the admin; why: the note)."""
        return {"txn_id": txn_id, "effect": _decide(lambda: store.release(txn_id, admin, body.note))}

    @app.post("/v1/admin/quarantine/{txn_id}/reject", responses=decide_errors)
    def reject(txn_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> dict[str, str]:
        """Keep a quarantined entry from ever applying."""
        return {"txn_id": txn_id, "effect": _decide(lambda: store.reject(txn_id, admin, body.note))}

    @app.post(
        "/v1/admin/items/{item_id}/settle",
        response_model=ReconItem,
        responses=_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
    )
    def settle(item_id: str, body: Annotated[SettleRequest, Body()], admin: Admin) -> ReconItem:
        try:
            return store.settle(item_id, admin, body.note)
        except UnknownItem as exc:
            raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
        except ValueError as exc:
            raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    for kind in ("member", "card"):
        _block_routes(app, store, kind)


def _block_routes(app: FastAPI, store: HqStore, kind: str) -> None:
    errors = _errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.INVALID_REQUEST)

    @app.post(f"/v1/admin/{kind}s/{{subject}}/block", responses=errors, name=f"block_{kind}")
    def block(subject: Subject, body: Annotated[BlockRequest, Body()], admin: Admin) -> dict[str, Any]:
        """Block it (a card by its keyed hash): tills refuse it once they pull; head office flags entries
        made after the block by its own time. Who and why are kept."""
        return _blocking(lambda: store.set_blocked(kind, subject, True, admin, body.reason))

    @app.post(f"/v1/admin/{kind}s/{{subject}}/unblock", responses=errors, name=f"unblock_{kind}")
    def unblock(subject: Subject, body: Annotated[BlockRequest, Body()], admin: Admin) -> dict[str, Any]:
        return _blocking(lambda: store.set_blocked(kind, subject, False, admin, body.reason))


NEXT_CURSOR = "X-Next-Cursor"
FLAGS_SHOWN = 200
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Subject = Annotated[str, Path(min_length=1, max_length=128)]
T = TypeVar("T")


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


# -- running it -----------------------------------------------------------------------------------


def prepare(store: HqStore, seed_card_key: bytes | None = None, terminals: Iterable[tuple[str, str, str]] = ()) -> None:
    """Seed the demo data if a card key is given, and register (terminal_id, store_id, token) triples."""
    if seed_card_key is not None:
        seed_demo(store, seed_card_key)
    for terminal_id, store_id, token in terminals:
        store.add_terminal(terminal_id, store_id, token)


def serve(
    store: HqStore,
    host: str,
    port: int,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "warning",
) -> None:
    """Run head office in the foreground until SIGINT/SIGTERM (what ``tillpoint hq serve`` calls)."""
    config = uvicorn.Config(
        create_app(store),
        host=host,
        port=port,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run()


class ServerHandle(NamedTuple):
    """A head office running in a background thread; unpacks as (server, thread, port)."""

    server: uvicorn.Server
    thread: threading.Thread
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(store: HqStore, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> ServerHandle:
    """Serve ``store`` from a daemon thread (embedded demo, tests); port 0 picks a free port.

    Returns once the socket is bound, or raises RuntimeError / TimeoutError within ``timeout``.
    Uvicorn only installs signal handlers in the main thread, so the caller's handlers stay.
    """
    config = uvicorn.Config(create_app(store), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_run_quietly, args=(server,), name=f"hq-{host}:{port}", daemon=True)
    thread.start()
    _wait_started(server, thread, timeout)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return ServerHandle(server, thread, int(bound), host)


def _run_quietly(server: uvicorn.Server) -> None:
    # uvicorn calls sys.exit() when it cannot bind; in a thread that must end the thread, not
    # surface as an unhandled exception. _wait_started sees the dead thread and raises instead.
    try:
        server.run()
    except SystemExit as exc:
        log.error("head office server stopped at startup (exit status %s)", exc.code)


def _wait_started(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"head office failed to start on {server.config.host}:{server.config.port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout)
            raise TimeoutError(f"head office did not start within {timeout}s")
        time.sleep(0.01)
