"""Head office's routes for a terminal's credential and its own view: health, enrolment, rotation,
its registration (store, card-key check), its flagged items, end of day."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hq.api.deps import Clock, Limit, Store, Terminal
from hq.api.errors import ApiError, errors
from sync.protocol import (
    PROTOCOL_VERSION,
    EnrolRequest,
    EnrolResponse,
    EodReport,
    EodResult,
    ErrorCode,
    ItemState,
    ReconItem,
    TerminalInfo,
)

router = APIRouter()
FLAGS_SHOWN = 200


@router.get("/v1/health")
def health(request: Request, store: Store) -> dict[str, Any]:
    # The root public key is public: a terminal configured with a bare token pins it on first use.
    return {"status": "ok", "time": store.now(), "protocol": PROTOCOL_VERSION, "root_key": request.app.state.root_key}


@router.post(
    "/v1/enrol",
    response_model=EnrolResponse,
    responses=errors(ErrorCode.ENROL_CODE_INVALID, ErrorCode.ENROL_WRONG_STORE),
)
def enrol(store: Store, body: EnrolRequest) -> EnrolResponse:
    return store.enrol(body.code, body.terminal_id, body.store_id)


@router.get(
    "/v1/terminal",
    response_model=TerminalInfo,
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
)
def terminal(store: Store, terminal_id: Terminal) -> TerminalInfo:
    """This terminal as head office holds it: its store, and the check of the card-hash key head office hashes
    cards with (never the key), so that `tillpoint doctor` can tell a till set up with another store or key."""
    return TerminalInfo(
        terminal_id=terminal_id,
        store_id=store.store_of(terminal_id) or "",
        card_key_check=store.settings.card_keys.key_check,
    )


@router.post(
    "/v1/credentials/rotate",
    response_model=EnrolResponse,
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
)
def rotate(store: Store, terminal_id: Terminal) -> EnrolResponse:
    token = store.rotate(terminal_id)
    return EnrolResponse(
        terminal_id=terminal_id,
        store_id=store.store_of(terminal_id) or "",
        token=token,
        root_key=store.root_public_key(),
    )


@router.get(
    "/v1/flags",
    response_model=list[ReconItem],
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED),
)
def flags(
    store: Store, terminal_id: Terminal, state: ItemState | None = None, limit: Limit = FLAGS_SHOWN
) -> list[ReconItem]:
    """This terminal's items, the newest ``limit`` (what the till shows; head office holds them all)."""
    return store.items(terminal_id=terminal_id, state=state.value if state else None, limit=limit, newest=True)


@router.post(
    "/v1/eod",
    response_model=EodResult,
    responses=errors(
        ErrorCode.UNAUTHORIZED, ErrorCode.CREDENTIAL_REVOKED, ErrorCode.WRONG_TERMINAL, ErrorCode.PUSH_LIMITED
    ),
)
def eod(store: Store, body: EodReport, terminal_id: Terminal, clock: Clock = None) -> EodResult:
    if body.terminal_id != terminal_id:
        raise ApiError(ErrorCode.WRONG_TERMINAL, f"this token is terminal {terminal_id}")
    store.flag_clock(terminal_id, clock)
    return store.eod(body)
