"""The door of both HTTP servers (head office and the till's local API): every request body is capped
before it is read, inflated when gzip is allowed, and refused when it is JSON the application would
choke on. The application then sees only bodies it can parse.

    413 body_too_large   Content-Length above the cap (refused unread), or more bytes than the cap
                         arrive (plain or inflated gzip alike)
    400 bad_encoding     a Content-Encoding other than identity (or gzip where allowed); corrupt gzip
    422 invalid_request  JSON with NaN or Infinity, a number beyond 64 bits, a lone surrogate, nested deeper than
                         64 levels, or not UTF-8

Error bodies are ``{"code", "message"}``, as everywhere else in both APIs.

``bind`` opens both servers' listening socket before any thread starts, so a busy port is a
``PortBusy`` naming it.
"""

from __future__ import annotations

import errno
import json
import socket
import zlib
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terminal.canonical import strict_loads
from terminal.errors import PortBusy, TerminalError

if TYPE_CHECKING:  # FastAPI is imported by the servers, not by every command that only binds a port
    from fastapi.exceptions import RequestValidationError

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _answer(send: Send, refused: Refused) -> None:
    body = json.dumps({"code": refused.code, "message": refused.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """ASGI middleware: cap, inflate and check request bodies (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_size: int, *, gzip: bool = False) -> None:
        self.app, self.max_size, self.gzip = app, max_size, gzip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send)
            return
        try:
            headers, body = await self._body(scope, receive)
        except Refused as refused:
            await _answer(send, refused)
            return
        if body is None:
            return  # the client went away mid-body: nothing to answer, nothing done
        await self.app(dict(scope, headers=headers), _replay(body, receive), send)

    async def _body(self, scope: Scope, receive: Receive) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        found = dict(scope["headers"])
        self._check_length(found.get(b"content-length"))
        encoding = found.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity") and not (self.gzip and encoding == b"gzip"):
            raise Refused(400, "bad_encoding", f"unsupported Content-Encoding {encoding.decode(errors='replace')!r}")
        body = await self._read(receive)
        if body is None:
            return [], None
        if encoding == b"gzip":
            body = self._inflate(body)
        if _is_json(found.get(b"content-type", b"")) and body:
            try:
                strict_loads(body)
            except ValueError as exc:
                raise Refused(422, "invalid_request", f"the body is not JSON this API accepts: {exc}") from exc
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        return kept + [(b"content-length", str(len(body)).encode())], body

    def _check_length(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            length = int(value)
        except ValueError as exc:
            raise Refused(400, "bad_encoding", "Content-Length is not a number") from exc
        if length > self.max_size:
            raise Refused(413, "body_too_large", f"the body is larger than {self.max_size} bytes")

    async def _read(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_size:
                raise Refused(413, "body_too_large", f"the body is larger than {self.max_size} bytes")
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _inflate(self, body: bytes) -> bytes:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, self.max_size + 1)
        except zlib.error as exc:
            raise Refused(400, "bad_encoding", f"corrupt gzip body: {exc}") from exc
        if len(data) > self.max_size or inflater.unconsumed_tail:
            raise Refused(413, "body_too_large", f"the body inflates to more than {self.max_size} bytes")
        if not inflater.eof:
            raise Refused(400, "bad_encoding", "truncated gzip body")
        return data


def _is_json(content_type: bytes) -> bool:
    """``application/json`` or any ``+json`` type, in any case: what a framework will parse as JSON."""
    media = content_type.split(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _replay(data: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()

    return replay


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), ready for the server to listen on.
    Bound here, before any thread starts, so that a busy port is a ``PortBusy`` naming it."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise TerminalError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart is not refused
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(host, port) from exc
        raise TerminalError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def validation_message(exc: RequestValidationError) -> str:
    """A body that failed its schema in one line: each field's place and what is wrong with it (both APIs
    answer it as 422 ``invalid_request``)."""
    parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()]
    return "; ".join(parts)[:500] or "invalid request"
