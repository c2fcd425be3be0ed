"""Head office's HTTP API (protocol version 1, see ``sync.protocol``) and helpers to run it.

    GET  /v1/health      no auth               {"status": "ok", "time": ISO 8601 UTC}
    POST /v1/journal     Bearer terminal token  PushRequest -> PushResponse
    GET  /v1/changes     Bearer terminal token  ?since=N&limit=M -> ChangesPage (limit capped at 5000)

Every error is an ``ErrorBody`` with a stable code:

    400 unsupported_protocol   PushRequest.protocol is not one this server speaks
    401 unauthorized           missing, malformed, unknown or revoked bearer token
    403 wrong_terminal         the body or an entry names another terminal than the token's
    403 unknown_terminal       the token's terminal has no registration to push into
    404 not_found / 405 method_not_allowed / other 4xx http_error
    409 seq_conflict           an entry reuses a stored (terminal, seq) or txn_id; nothing stored
    422 invalid_request        the body or a parameter does not match the schema
    503 storage_unavailable    the database failed; the terminal retries later
    500 internal               a bug

Storage calls are synchronous, so endpoints are plain ``def`` and run in the threadpool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Annotated, NamedTuple

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync.hq.demo import seed_demo
from sync.hq.storage import HqError, HqStorage, HqStore, SeqConflict, StorageFailed, UnknownTerminal, WrongTerminal, utc_now
from sync.protocol import PROTOCOL_VERSION, ChangesPage, ErrorBody, PushRequest, PushResponse

log = logging.getLogger("tillpoint.hq")

MAX_CHANGES_LIMIT = 5000
DEFAULT_CHANGES_LIMIT = 500

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
_STORAGE_ERRORS: dict[type[HqError], tuple[int, str]] = {
    SeqConflict: (409, "seq_conflict"),
    WrongTerminal: (403, "wrong_terminal"),
    UnknownTerminal: (403, "unknown_terminal"),
    StorageFailed: (503, "storage_unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(code=code, message=message).model_dump(), status_code=status, headers=headers)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("an 'Authorization: Bearer <terminal token>' header is required")
    return token.strip()


def _store(request: Request) -> HqStorage:
    store: HqStorage = request.app.state.store
    return store


def authenticated_terminal(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The terminal id of the request's bearer token; 401 otherwise."""
    terminal_id = _store(request).authenticate(_bearer_token(authorization))
    if terminal_id is None:
        raise _unauthorized("unknown or revoked terminal token")
    return terminal_id


Terminal = Annotated[str, Depends(authenticated_terminal)]


def _check_push(terminal_id: str, body: PushRequest) -> None:
    if body.protocol != PROTOCOL_VERSION:
        raise ApiError(400, "unsupported_protocol", f"protocol {body.protocol} unsupported; use {PROTOCOL_VERSION}")
    claimed = {body.terminal_id, *(entry.terminal_id for entry in body.entries)}
    if claimed != {terminal_id}:
        others = ", ".join(sorted(claimed - {terminal_id}))
        raise ApiError(403, "wrong_terminal", f"this token is terminal {terminal_id}; it may not push for {others}")


def _validation_message(exc: RequestValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()]
    return "; ".join(parts)[:500] or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(HqError)
    def storage_error(_: Request, exc: HqError) -> JSONResponse:
        status, code = _STORAGE_ERRORS.get(type(exc), (500, "internal"))
        if status >= 500:
            log.error("push/pull failed: %s", exc)
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    # Starlette still re-raises after this response, so uvicorn logs the traceback once.
    @app.exception_handler(Exception)
    def internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "head office hit an internal error; retry later")


def create_app(store: HqStorage) -> FastAPI:
    """The head-office API over ``store``."""
    # No interactive docs: this API faces every store's network, and docs/ describes it.
    app = FastAPI(title="tillpoint head office", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    _install_error_handlers(app)

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "time": utc_now()}

    @app.post("/v1/journal", response_model=PushResponse)
    def push(body: PushRequest, terminal_id: Terminal) -> PushResponse:
        _check_push(terminal_id, body)
        return store.ingest(terminal_id, body.entries)

    @app.get("/v1/changes", response_model=ChangesPage)
    def changes(
        terminal_id: Terminal,
        since: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1)] = DEFAULT_CHANGES_LIMIT,
    ) -> ChangesPage:
        # Over-large pages are capped rather than refused: the cursor makes the rest reachable.
        return store.changes(since, min(limit, MAX_CHANGES_LIMIT))

    return app


# -- running it -----------------------------------------------------------------------------------


def prepare(store: HqStore, seed_card_key: bytes | None = None, terminals: Iterable[tuple[str, str, str]] = ()) -> None:
    """Seed the demo data if a card key is given, and register (terminal_id, store_id, token) triples."""
    if seed_card_key is not None:
        seed_demo(store, seed_card_key)
    for terminal_id, store_id, token in terminals:
        store.add_terminal(terminal_id, store_id, token)


def serve(
    db_path: str,
    host: str,
    port: int,
    seed_card_key: bytes | None = None,
    terminals: Iterable[tuple[str, str, str]] = (),
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
) -> None:
    """Run head office in the foreground until SIGINT/SIGTERM (what ``tillpoint hq serve`` calls)."""
    store = HqStore(db_path)
    try:
        prepare(store, seed_card_key, terminals)
        config = uvicorn.Config(
            create_app(store), host=host, port=port, log_level=log_level,
            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        )
        uvicorn.Server(config).run()
    finally:
        store.close()


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


def start_in_thread(store: HqStorage, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> ServerHandle:
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
