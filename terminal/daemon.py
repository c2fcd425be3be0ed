"""Wiring: config -> store, service, readers, sync loop and local API. Thin on purpose.

Events (taps, members, sales, rejections, reader and sync changes) go to subscribers and into a
bounded ring that the local API serves, so the demo, the panel and tests all watch the same thing.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from drivers import open_reader
from drivers.errors import DriverError
from sync.client import SyncClient, SyncError, SyncLoop, SyncResult
from terminal.config import Config
from terminal.credentials import card_uid_hash
from terminal.errors import Code, Rejected
from terminal.keys import load_or_create_key, load_or_create_token
from terminal.model import Basket, CardRead, Line, ReaderEvent, Receipt, utc_iso
from terminal.ports import CardReader
from terminal.service import Identified, Service
from terminal.store import Store

log = logging.getLogger("tillpoint.daemon")

Event = dict[str, Any]


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def hq_token(config: Config) -> str:
    if config.hq.token:
        return config.hq.token
    if config.hq.token_file:
        with open(config.hq.token_file, encoding="utf-8") as handle:
            return handle.read().strip()
    return ""


class Daemon:
    def __init__(self, config: Config, *, hq_transport: Any = None) -> None:
        self.config = config
        self.hq_transport = hq_transport
        self.store: Store | None = None
        self.service: Service | None = None
        self.readers: list[CardReader] = []
        self.reader_state: dict[str, str] = {}
        self.sync: SyncLoop | None = None
        self.api_server: Any = None
        self.identified: Identified | None = None
        self.api_token = ""
        self.subscribers: list[Callable[[Event], None]] = []
        self.events: deque[Event] = deque(maxlen=500)
        self._event_ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        key = load_or_create_key(cfg.card_key_path)
        self.store = Store.open(cfg.db_path)
        self.service = Service(self.store, cfg.terminal.id)
        self.service.on_commit.append(self._committed)
        self.api_token = load_or_create_token(cfg.api_token_path)
        self._start_sync()
        self._start_readers(lambda uid: card_uid_hash(key, uid))
        if cfg.api.enabled:
            from terminal.api.server import start_api

            self.api_server = start_api(self, cfg.api.host, cfg.api.port)
        sd_notify("READY=1")
        self.emit({"type": "started", "terminal": cfg.terminal.id})

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        for reader in self.readers:
            reader.stop()
        if self.api_server is not None:
            self.api_server.stop()
        if self.sync is not None:
            self.sync.stop()
            self.sync.client.close()
        if self.store is not None:
            self.store.close()

    def _start_sync(self) -> None:
        token = hq_token(self.config)
        if not token:
            log.warning("no head-office token configured: sync is off, sales stay in the journal")
            return
        hq = self.config.hq
        assert self.store is not None
        client = SyncClient(
            self.store, self.config.terminal.id, hq.url, token,
            timeout=hq.timeout, verify=hq.ca_file or True, batch_size=hq.batch_size, transport=self.hq_transport,
        )
        self.sync = SyncLoop(client, hq.push_interval, hq.pull_interval, hq.backoff_max)
        self.sync.on_result.append(self._synced)
        self.sync.start()

    def _start_readers(self, hasher: Callable[[bytes], str]) -> None:
        for spec in self.config.reader.devices:
            try:
                reader = open_reader(spec, hasher)
            except DriverError as exc:
                self.emit({"type": "reader", "reader": spec, "kind": "error", "detail": str(exc)})
                continue
            self.readers.append(reader)
            reader.start(self.on_card, self.on_reader)

    # -- events ----------------------------------------------------------------------------------

    def emit(self, event: Event) -> Event:
        with self._lock:
            event = {"id": next(self._event_ids), "at": utc_iso(time.time()), **event}
            self.events.append(event)
        for subscriber in list(self.subscribers):
            subscriber(event)
        return event

    def events_after(self, after: int) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e["id"] > after]

    def on_reader(self, event: ReaderEvent) -> None:
        self.reader_state[event.reader] = event.kind
        self.emit({"type": "reader", "reader": event.reader, "kind": event.kind, "detail": event.detail})

    def on_card(self, read: CardRead) -> None:
        assert self.service is not None
        try:
            found = self.service.identify(read)
        except Rejected as exc:
            self.emit({"type": "rejected", "reader": read.reader, "code": exc.code.value, "message": exc.message})
            return
        self.identified = found
        m = found.member
        self.emit({"type": "member", "reader": read.reader, "member_id": m.member_id,
                   "name": m.display_name, "tier": m.tier, "points": m.points})
        if self.config.sale.auto_amount > 0:
            self.sell(m.member_id, Basket((Line("DEMO", 1, self.config.sale.auto_amount, "demo"),)))

    def sell(self, member_id: str | None, basket: Basket) -> Receipt:
        assert self.service is not None
        try:
            return self.service.commit(self.service.quote(member_id, basket))
        except Rejected as exc:
            self.emit({"type": "rejected", "code": exc.code.value, "message": exc.message})
            raise

    def _committed(self, receipt: Receipt) -> None:
        self.emit({"type": receipt.kind, **asdict(receipt)})
        if self.sync is not None:
            self.sync.wake()

    def _synced(self, result: SyncResult | SyncError) -> None:
        if isinstance(result, SyncError):
            self.emit({"type": "sync", "ok": False, "error": str(result)})
        elif result.pushed or result.pulled:
            self.emit({"type": "sync", "ok": True, "pushed": result.pushed, "pulled": result.pulled})

    # -- queries ---------------------------------------------------------------------------------

    def tap_sim(self, uid: bytes) -> None:
        sims = [r for r in self.readers if r.name.startswith("sim:")]
        if not sims:
            raise Rejected(Code.READER_UNAVAILABLE, "No simulated reader is configured on this till.")
        sims[0].tap(uid)  # type: ignore[attr-defined]

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        info = store_status(self.store)
        info["terminal_id"] = self.config.terminal.id
        info["readers"] = [{"name": name, "state": state} for name, state in self.reader_state.items()]
        info["sync_enabled"] = self.sync is not None
        return info


def store_status(store: Store) -> dict[str, Any]:
    """What ``tillpoint status`` shows, read from the database alone (works with no daemon)."""
    return {
        "pending": store.pending_count(),
        "last_sync_ok": store.state("last_sync_ok"),
        "offline_since": store.state("offline_since"),
        "last_error": store.state("last_error"),
        "cache": store.counts(),
    }
