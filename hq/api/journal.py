"""Head office's sync routes: a terminal pushes its journal and health, pulls changes and snapshots,
and asks where head office holds its journal."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hq import campaigns
from hq.api.deps import Clock, Store, Terminal
from hq.api.errors import ApiError, errors
from hq.errors import HqError
from hq.store import HqStore
from sync.protocol import (
    MAX_SEQ,
    SNAPSHOT_KINDS,
    ChangesPage,
    EntryKind,
    ErrorCode,
    JournalState,
    LostReport,
    PushRequest,
    PushResponse,
    SnapshotInfo,
    SnapshotPage,
    TillHealth,
    WireAllocation,
    WireTopupPolicy,
    protocol_problem,
)

router = APIRouter()
MAX_CHANGES_LIMIT = 5000
DEFAULT_CHANGES_LIMIT = 500
MAX_SNAPSHOT_LIMIT = 50_000


def _check_push(terminal_id: str, body: PushRequest) -> None:
    problem = protocol_problem(body.protocol)
    if problem is not None:
        raise ApiError(ErrorCode.UNSUPPORTED_PROTOCOL, problem)
    claimed = {body.terminal_id, *(entry.terminal_id for entry in body.entries)}
    if claimed != {terminal_id}:
        others = ", ".join(sorted(claimed - {terminal_id}))
        raise ApiError(ErrorCode.WRONG_TERMINAL, f"this token is terminal {terminal_id}; it may not push for {others}")


push_errors = errors(
    ErrorCode.UNSUPPORTED_PROTOCOL,
    ErrorCode.BAD_ENCODING,
    ErrorCode.UNAUTHORIZED,
    ErrorCode.CREDENTIAL_REVOKED,
    ErrorCode.WRONG_TERMINAL,
    ErrorCode.UNKNOWN_TERMINAL,
    ErrorCode.SEQ_CONFLICT,
    ErrorCode.TXN_ID_TAKEN,
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.PUSH_LIMITED,
)

log = logging.getLogger("tillpoint.hq")


@router.post("/v1/journal", response_model=PushResponse, responses=push_errors)
def push(store: Store, body: PushRequest, terminal_id: Terminal, clock: Clock = None) -> PushResponse:
    _check_push(terminal_id, body)
    answer = store.ingest(terminal_id, body.entries, clock)
    if any(e.kind == EntryKind.CHECKIN.value for e in body.entries):
        _reward_checkins(store)
    return answer


def _reward_checkins(store: HqStore) -> None:
    """Door check-ins just pushed get their reward now, after the journal's transaction; one that fails here
    is decided by the campaign timer's next tick (a check-in is decided once, whoever comes first)."""
    try:
        campaigns.reward_pending(store.db, datetime.now(UTC))
    except HqError as exc:
        log.warning("deciding check-in rewards failed (the campaign timer tries again): %s", exc)


pull_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED)


@router.post(
    "/v1/terminal/health",
    status_code=204,
    response_class=Response,
    responses=errors(ErrorCode.UNSUPPORTED_PROTOCOL, ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
)
def terminal_health(store: Store, body: TillHealth, terminal_id: Terminal, clock: Clock = None) -> Response:
    """The fleet view: a till's version, readers, backlog, disk and last error (protocol 2)."""
    problem = protocol_problem(body.protocol)
    if problem is not None:
        raise ApiError(ErrorCode.UNSUPPORTED_PROTOCOL, problem)
    store.put_health(terminal_id, body, clock)
    return Response(status_code=204)


@router.get("/v1/journal/state", response_model=JournalState, responses=pull_errors)
def journal_state(store: Store, terminal_id: Terminal, clock: Clock = None) -> JournalState:
    """Where head office holds this terminal's journal: a till rebuilt from a damaged file asks first."""
    store.flag_clock(terminal_id, clock)
    return store.journal_state(terminal_id)


@router.post(
    "/v1/journal/lost",
    response_model=JournalState,
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED, ErrorCode.PUSH_LIMITED),
)
def journal_lost(store: Store, body: LostReport, terminal_id: Terminal) -> JournalState:
    """Seq ranges this till can never send (its journal was damaged): an item, and the watermark moves on."""
    try:
        return store.report_lost(terminal_id, [(a, b) for a, b in body.ranges], body.reason)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc)) from exc


@router.get("/v1/changes", response_model=ChangesPage, responses=pull_errors)
def changes(
    store: Store,
    terminal_id: Terminal,
    since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = DEFAULT_CHANGES_LIMIT,
    clock: Clock = None,
) -> ChangesPage:
    store.flag_clock(terminal_id, clock)
    store.note_pull(terminal_id, since)
    # This till's allocations of the flash-drop pools, topped up as it pulls (hq/pools.py); the rest of the
    # page is the chain-wide feed. Over-large pages are capped rather than refused: the cursor makes the rest
    # reachable.
    # Its top-up policy too (hq/topups.py), whole on every page: a till sells top-ups only as head office says.
    # And its store's merchant (hq/merchants.py): the till refuses another merchant's coupons.
    held = [WireAllocation(pool_id=a.pool_id, allowed=a.allowed, used=a.used) for a in store.grant_pools(terminal_id)]
    topup_policy = WireTopupPolicy.model_validate(store.topup_policy_doc(terminal_id))
    page = store.changes(since, min(limit, MAX_CHANGES_LIMIT))
    # And its voucher stock (hq/vouchers.py), whole on every page: the signed codes it may sell.
    stock = store.voucher_stock(terminal_id)
    update = {
        "allocations": held,
        "topup_policy": topup_policy,
        "merchant_id": store.terminal_merchant(terminal_id),
        "voucher_stock": stock,
        "gift_terms": store.gift_terms(),  # the chain's gift card terms (hq/giftcards.py)
    }
    return page.model_copy(update=update)


@router.get("/v1/snapshot", response_model=SnapshotInfo, responses=pull_errors)
def snapshot(store: Store, terminal_id: Terminal) -> SnapshotInfo:
    return store.snapshot_info()


@router.get(
    "/v1/snapshot/{kind}",
    response_model=SnapshotPage,
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED, ErrorCode.NOT_FOUND),
)
def snapshot_kind(
    store: Store,
    kind: str,
    terminal_id: Terminal,
    after: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = 5000,
) -> Response:
    if kind not in SNAPSHOT_KINDS:
        raise ApiError(ErrorCode.NOT_FOUND, f"no snapshot kind {kind!r}; kinds: {', '.join(SNAPSHOT_KINDS)}")
    page = store.snapshot_rows(kind, after, min(limit, MAX_SNAPSHOT_LIMIT))
    return Response(json.dumps(page, separators=(",", ":")), media_type="application/json")
