"""The terminal's head-office client: push the journal, pull changes, in the background.

    SyncError                    anything that stopped one round of sync; the till keeps selling
     +-- HqUnreachable           connect/read/write timeouts, refused or reset connections (httpx.TransportError)
     +-- HqRejected(status, code) head office refused the request (4xx with an ErrorBody)
     +-- HqFailed(status)        head office failed (5xx) or answered something unreadable

httpx errors are translated here, at the boundary, and never escape. Tests inject an
``httpx.BaseTransport`` instead of flags.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from sync.protocol import ChangesPage, PushRequest, PushResponse, WireEntry
from terminal.model import Card, EarnRule, JournalEntry, Member, Status, utc_iso
from terminal.ports import SyncStore

log = logging.getLogger("tillpoint.sync")

MAX_PAGES_PER_PULL = 10_000


class SyncError(Exception):
    pass


class HqUnreachable(SyncError):
    pass


class HqRejected(SyncError):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code = status, code
        super().__init__(f"head office refused ({status} {code}): {message}")


class HqFailed(SyncError):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"head office failed ({status}): {detail}")


def _now_iso() -> str:
    return utc_iso(time.time())


def _wire(entry: JournalEntry) -> WireEntry:
    return WireEntry(
        terminal_id=entry.terminal_id,
        seq=entry.seq,
        txn_id=entry.txn_id,
        kind=entry.kind,
        payload=entry.payload,
        created_at=entry.created_at,
    )


def _error(response: httpx.Response) -> SyncError:
    if response.status_code >= 500:
        return HqFailed(response.status_code, response.text[:200])
    try:
        body = response.json()
        return HqRejected(response.status_code, str(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return HqRejected(response.status_code, "unknown", response.text[:200])


@dataclass(frozen=True, slots=True)
class SyncResult:
    pushed: int
    pulled: int


class SyncClient:
    def __init__(
        self,
        store: SyncStore,
        terminal_id: str,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        verify: str | bool = True,
        batch_size: int = 500,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.terminal_id = terminal_id
        self.batch_size = batch_size
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise HqUnreachable(f"head office unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            raise _error(response)
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise HqFailed(response.status_code, "response is not JSON") from exc
        return body

    def push_once(self) -> int:
        """Push one batch of unacknowledged entries; returns how many became acknowledged."""
        entries = self.store.unpushed(self.batch_size)
        if not entries:
            return 0
        request = PushRequest(terminal_id=self.terminal_id, entries=[_wire(e) for e in entries])
        body = self._call("POST", "/v1/journal", content=request.model_dump_json(), headers=_JSON)
        try:
            reply = PushResponse.model_validate(body)
        except ValidationError as exc:
            raise HqFailed(200, f"unreadable push reply: {exc}") from exc
        if reply.gaps:
            log.warning("head office reports gaps %s; unacknowledged entries will be resent", reply.gaps)
        return self.store.mark_pushed(reply.acked_seq, _now_iso())

    def push_all(self, max_batches: int = 10_000) -> int:
        total = 0
        for _ in range(max_batches):
            acked = self.push_once()
            total += acked
            if acked == 0:
                break
        return total

    def pull_once(self, limit: int = 1000) -> int:
        """Pull every change since the stored cursor, page by page; each page commits with its cursor."""
        count = 0
        for _ in range(MAX_PAGES_PER_PULL):
            since = int(self.store.state("cursor") or 0)
            body = self._call("GET", "/v1/changes", params={"since": since, "limit": limit})
            try:
                page = ChangesPage.model_validate(body)
            except ValidationError as exc:
                raise HqFailed(200, f"unreadable changes page: {exc}") from exc
            self.store.apply_changes(*_page_models(page), cursor=page.cursor)
            count += len(page.members) + len(page.cards) + len(page.rules)
            if not page.more:
                break
        return count

    def sync_once(self, pull: bool = True) -> SyncResult:
        """One round: push everything, then pull (so pulled balances include what was just pushed)."""
        try:
            pushed = self.push_all()
            pulled = self.pull_once() if pull else 0
        except SyncError as exc:
            self._mark_offline(exc)
            raise
        self.store.set_state(last_sync_ok=_now_iso(), offline_since=None, last_error=None)
        return SyncResult(pushed, pulled)

    def _mark_offline(self, exc: SyncError) -> None:
        since = self.store.state("offline_since") or _now_iso()
        self.store.set_state(offline_since=since, last_error=str(exc)[:300])


_JSON = {"Content-Type": "application/json"}


def _page_models(page: ChangesPage) -> tuple[list[Member], list[Card], list[EarnRule]]:
    members = [Member(m.member_id, m.display_name, m.tier, m.points, Status(m.status)) for m in page.members]
    cards = [Card(c.uid_hash, c.member_id, Status(c.status)) for c in page.cards]
    rules = [EarnRule(r.rule_id, r.points, r.per_minor) for r in page.rules]
    return members, cards, rules


def backoff(failures: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2**(failures-1))."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return ceiling * (0.5 + 0.5 * rand())


class SyncLoop:
    """Runs ``sync_once`` in its own thread: every push interval, at once when woken by a commit,
    pulling every pull interval, and backing off with jitter while head office is unreachable."""

    def __init__(self, client: SyncClient, push_interval: float, pull_interval: float, backoff_max: float) -> None:
        self.client = client
        self.push_interval = push_interval
        self.pull_interval = pull_interval
        self.backoff_max = backoff_max
        self.failures = 0
        self.last_progress = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self.on_result: list[Callable[[SyncResult | SyncError], None]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _round(self, pull: bool) -> float:
        try:
            result: SyncResult | SyncError = self.client.sync_once(pull=pull)
            self.failures = 0
            delay = self.push_interval
        except SyncError as exc:
            result = exc
            self.failures += 1
            delay = backoff(self.failures, self.push_interval, self.backoff_max)
            log.info("sync failed (%s); retrying in %.1fs", exc, delay)
        self.last_progress = time.monotonic()
        for listener in self.on_result:
            listener(result)
        return delay

    def _run(self) -> None:
        last_pull = 0.0
        while not self._stop.is_set():
            pull = time.monotonic() - last_pull >= self.pull_interval or self.failures > 0
            delay = self._round(pull)
            if pull and self.failures == 0:
                last_pull = time.monotonic()
            # While head office is failing, a commit must not cut the backoff short.
            (self._stop if self.failures else self._wake).wait(delay)
            self._wake.clear()
