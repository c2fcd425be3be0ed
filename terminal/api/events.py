"""The event stream: Server-Sent Events of reader, scanner, sale, sync and session events.

``EventHub.publish`` is one of the daemon's subscribers: it is called from whatever thread emitted
the event (a reader, a scanner, the sync loop, a request) and hands the event to every connected
client's asyncio queue with ``call_soon_threadsafe``; it never blocks the emitter. A client that
falls ``queue_size`` events behind is disconnected (its stream ends) and resumes where it was with
``Last-Event-ID`` (or ``?after=``) from the daemon's ring of recent events, so a slow panel never
holds memory or delays a sale.

Wire format (text/event-stream)::

    id: 42
    data: {"id": 42, "at": "...", "type": "member", ...}

    : keepalive                    (a comment every ``heartbeat`` seconds)

Every event is a ``message`` (no ``event:`` field), its JSON carries ``type``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

Event = dict[str, Any]
_CLOSE: Event = {"type": "__close__"}


def sse(event: Event) -> bytes:
    """One event in the text/event-stream format."""
    data = json.dumps(event, separators=(",", ":"), default=str)
    return f"id: {event.get('id', '')}\ndata: {data}\n\n".encode()


class _Client:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, types: frozenset[str]) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self.types = types
        self.overflowed = False

    def offer(self, event: Event) -> None:
        """Runs on the client's loop."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the stream ends; the client resumes from the ring


class EventHub:
    """Fans the daemon's events out to SSE clients."""

    def __init__(
        self,
        backlog: Callable[[int], Iterable[Event]],
        *,
        max_clients: int = 16,
        queue_size: int = 256,
        heartbeat: float = 15.0,
    ) -> None:
        self.backlog = backlog
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    def full(self) -> bool:
        return len(self._clients) >= self.max_clients

    def publish(self, event: Event) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.types and event.get("type") not in client.types and event is not _CLOSE:
                continue
            try:
                client.loop.call_soon_threadsafe(client.offer, event)
            except RuntimeError:  # that client's loop is closed: it is gone
                self._drop(client)

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self.closed = True
        self.publish(_CLOSE)

    def _drop(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)

    async def stream(self, after: int, types: Iterable[str] = ()) -> AsyncIterator[bytes]:
        """The events after ``after`` (-1: none, live ones only), then live ones, until the client
        goes or the hub closes."""
        client = _Client(asyncio.get_running_loop(), self.queue_size, frozenset(types))
        with self._lock:
            self._clients.add(client)
        try:
            replayed = max(after, 0)  # live events up to here were in the backlog already
            yield b": connected\n\n"  # flushes the headers so the client knows it is connected
            for event in self.backlog(after) if after >= 0 else ():
                replayed = max(replayed, event["id"])
                if not client.types or event.get("type") in client.types:
                    yield sse(event)
            while not self.closed:
                try:
                    event = await asyncio.wait_for(client.queue.get(), self.heartbeat)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event is _CLOSE or client.overflowed:
                    return
                if event.get("id", 0) > replayed:
                    yield sse(event)
        finally:
            self._drop(client)
