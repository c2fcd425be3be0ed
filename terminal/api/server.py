"""Run an ASGI app with uvicorn in a background thread (the daemon's API, an embedded head office)."""

from __future__ import annotations

import os
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from sync.asgi import bind


class ThreadedServer:
    """A uvicorn server in its own thread; ``port`` 0 picks a free port, read back after start."""

    def __init__(self, app: Starlette, host: str, port: int, uds: str | None = None) -> None:
        # Open event streams end at stop (app.state.on_stop); the grace period bounds anything else.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            uds=uds,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self.app = app
        self.uds = uds
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"http-{port}", daemon=True)
        self.host = host
        self.port = port
        self._sockets: list[socket.socket] | None = None

    def _run(self) -> None:
        self.server.run(sockets=self._sockets)

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        """Listen and serve; ``PortBusy`` (before any thread starts) when the port is taken."""
        if not self.uds:
            self._sockets = [bind(self.host, self.port)]
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        if self.uds:
            os.chmod(self.uds, 0o660)  # uvicorn makes it 0666: only the service's user and group
        else:
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # [api] host = "::1": a URL's IPv6 is bracketed
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        for hook in getattr(self.app.state, "on_stop", []):
            hook()
        self.server.should_exit = True
        self.thread.join(timeout)


def start_api(app: Starlette, host: str, port: int) -> ThreadedServer:
    return ThreadedServer(app, host, port).start()


class ApiServers:
    """The local API's listeners (TCP and/or a Unix socket) serving one app; ``port`` is the TCP one's."""

    def __init__(self, servers: list[ThreadedServer]) -> None:
        self.servers = servers

    @property
    def port(self) -> int:
        return next((s.port for s in self.servers if not s.uds), 0)

    @property
    def url(self) -> str:
        return next((s.url for s in self.servers if not s.uds), "")

    def stop(self, timeout: float = 5.0) -> None:
        for server in self.servers:
            server.stop(timeout)


def start_api_servers(app: Starlette, host: str, port: int, unix_socket: str = "") -> ApiServers:
    """The local API (``terminal.api.app.create_app``) on ``host:port`` (none when ``host`` is empty)
    and/or on a Unix socket, one app."""
    servers = []
    if unix_socket:
        if os.path.exists(unix_socket):
            os.unlink(unix_socket)  # a stale socket of a previous run
        servers.append(ThreadedServer(app, host or "127.0.0.1", 0, uds=unix_socket).start())
    if host:
        servers.append(ThreadedServer(app, host, port).start())
    return ApiServers(servers)
