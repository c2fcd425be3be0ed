"""How head office's API says no: ``ApiError``, the ``ErrorBody`` every refusal is, the error codes a
route documents in OpenAPI, and the handlers that turn storage and validation errors into codes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hq.errors import HqError, StorageFailed
from hq.ingest import PushLimited, SeqConflict, TxnTaken, UnknownTerminal, WrongTerminal
from hq.store import CredentialRevoked, EnrolmentRefused, EnrolmentWrongStore
from sync.asgi import validation_message
from sync.protocol import ERROR_STATUS, ErrorBody, ErrorCode

log = logging.getLogger("tillpoint.hq")

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
_STORAGE_ERRORS: dict[type[HqError], ErrorCode] = {
    SeqConflict: ErrorCode.SEQ_CONFLICT,
    TxnTaken: ErrorCode.TXN_ID_TAKEN,
    PushLimited: ErrorCode.PUSH_LIMITED,
    WrongTerminal: ErrorCode.WRONG_TERMINAL,
    UnknownTerminal: ErrorCode.UNKNOWN_TERMINAL,
    CredentialRevoked: ErrorCode.CREDENTIAL_REVOKED,
    EnrolmentRefused: ErrorCode.ENROL_CODE_INVALID,
    EnrolmentWrongStore: ErrorCode.ENROL_WRONG_STORE,
    StorageFailed: ErrorCode.STORAGE_UNAVAILABLE,
}


class ApiError(Exception):
    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = ERROR_STATUS[code][0]
        self.code, self.message, self.headers = code, message, headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **named: Any
) -> JSONResponse:
    """An ``ErrorBody``; ``named``: its optional fields (``txn_id_taken``: the entry and the terminal holding it)."""
    body = ErrorBody(code=code, message=message, **named).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def errors(*codes: ErrorCode, with_model: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` naming every error code a route can answer (``with_model``: and the
    ``ErrorBody`` schema of the answer)."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, ErrorCode.INVALID_REQUEST, ErrorCode.INTERNAL, ErrorCode.STORAGE_UNAVAILABLE):
        status, meaning = ERROR_STATUS[code]
        by_status.setdefault(status, []).append(f"`{code.value}`: {meaning}")
    return {
        status: ({"model": ErrorBody} if with_model else {}) | {"description": "; ".join(lines)}
        for status, lines in sorted(by_status.items())
    }


StoragePage = Callable[[Request, ErrorCode], Response]
"""A page that says the database failed, in its area's own look (the back office's, the wallet's)."""


def code_of(exc: HqError) -> ErrorCode:
    """The code of a head-office error by its class or the nearest class above it that has one (a deadlock
    still failing after its retries is a ``StorageFailed`` too: ``storage_unavailable``)."""
    for kind in type(exc).__mro__:
        found = _STORAGE_ERRORS.get(kind)
        if found is not None:
            return found
    return ErrorCode.INTERNAL


def install_error_handlers(app: FastAPI, pages: dict[str, StoragePage] | None = None) -> None:
    """The handlers; ``pages``: for a path under one of its prefixes, a storage failure answers a request that
    accepts HTML (a person's browser) with that area's page rather than the API's JSON (a program, or a page's
    own script)."""
    storage_pages = dict(pages or {})

    @app.exception_handler(ApiError)
    def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(HqError)
    def storage_error(request: Request, exc: HqError) -> Response:
        code = code_of(exc)
        status = ERROR_STATUS[code][0]
        if status >= 500:
            log.error("request failed: %s", exc)
        if code is ErrorCode.STORAGE_UNAVAILABLE and "text/html" in request.headers.get("accept", ""):
            for prefix, page in storage_pages.items():  # a browser's page; a script's fetch keeps the JSON
                if request.url.path.startswith(prefix):
                    return page(request, code)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, PushLimited):  # the till sends its entries again the next day
            headers = {"Retry-After": str(exc.retry_after)}
        if isinstance(exc, TxnTaken):  # the till needs which of its entries, and whose entry holds its txn id
            return error_response(status, code, str(exc), headers, seq=exc.seq, txn_id=exc.txn_id, held_by=exc.held_by)
        return error_response(status, code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, ErrorCode.INVALID_REQUEST, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    # Starlette still re-raises after this response, so uvicorn logs the traceback once.
    @app.exception_handler(Exception)
    def internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, ErrorCode.INTERNAL, "head office hit an internal error; retry later")
