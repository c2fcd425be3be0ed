"""Running head office's API: in the foreground (``tillpoint hq serve``) or in a background thread
(the embedded demo, tests)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import NamedTuple

import uvicorn

from hq.api.app import create_app
from hq.demo import seed_demo
from hq.store import HqStore
from hq.wallet.senders import Sender

log = logging.getLogger("tillpoint.hq")


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
    noted: list[int] | None = None,
) -> str | None:
    """Run head office in the foreground until SIGINT/SIGTERM (what ``tillpoint hq serve`` calls), and return the
    name of the signal that stopped it, once the requests in flight are answered (None: it stopped otherwise).

    Uvicorn takes SIGINT and SIGTERM while it serves, and after its graceful shutdown puts the handlers it found
    back and raises the signal again: with the default ones there, the process died of SIGTERM (exit status 143,
    a failure to systemd on every stop and restart) before the caller closed the database. Here the handlers it
    finds note the signal instead, so ``serve`` returns and the command ends as on any stop, with status 0.

    ``noted``: the list the caller's own handlers note the signals in until now (``hq serve``'s start-up); one
    noted there before these handlers are set stops the server as one noted here."""
    config = uvicorn.Config(
        create_app(store),
        host=host,
        port=port,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    received: list[int] = noted if noted is not None else []

    def note(sig: int, _frame: FrameType | None) -> None:
        received.append(sig)  # no lock taken: a handler runs between two steps of whatever the main thread does
        server.should_exit = True  # one before uvicorn takes the signals: it starts, then stops at once

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    if received:  # noted by the caller's handlers, after it last looked
        server.should_exit = True
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signal.Signals(received[0]).name if received else None


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


def start_in_thread(
    store: HqStore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    timeout: float = 10.0,
    wallet_sender: Sender | None = None,
) -> ServerHandle:
    """Serve ``store`` from a daemon thread (embedded demo, tests); port 0 picks a free port;
    ``wallet_sender`` sends the wallet's sign-in codes (``hq.api.app.create_app``).

    Returns once the socket is bound, or raises RuntimeError / TimeoutError within ``timeout``.
    Uvicorn only installs signal handlers in the main thread, so the caller's handlers stay.
    """
    app = create_app(store, wallet_sender)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
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
