"""Run an ASGI app with uvicorn in a background thread (the daemon's API, an embedded head office)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    """A uvicorn server in its own thread; ``port`` 0 picks a free port, read back after start."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, name=f"http-{port}", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_api(daemon: Any, host: str, port: int) -> ThreadedServer:
    from terminal.api.app import create_app

    return ThreadedServer(create_app(daemon), host, port).start()
