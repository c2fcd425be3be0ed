"""The terminal's head-office client: enrol, push the journal, pull changes, bootstrap, end of day.

    SyncError                    anything that stopped one round of sync; the till keeps selling
     +-- HqUnreachable           connect/read/write timeouts, refused or reset connections, TLS failures
     |                           (httpx.TransportError)
     +-- HqRejected(status, code) head office refused the request (4xx with an ErrorBody)
     +-- HqFailed(status)        head office failed (5xx), answered something unreadable, or sent a
                                 key or revocation whose signature does not check

httpx errors are translated here, at the boundary, and never escape. Tests inject an
``httpx.BaseTransport`` instead of flags.

Every request carries the terminal's clock (``X-Tillpoint-Clock``) so head office can flag a
till whose clock is off; pushes are gzip-compressed. A pull applies each page together with its
cursor; a bootstrap stores each snapshot page together with where it got to, so both resume
after an interruption.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from sync.protocol import (
    CLOCK_HEADER,
    MAX_WITHDRAWALS,
    PROTOCOL_VERSION,
    SIGNED_TOMBSTONES,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_KINDS,
    ChangesPage,
    EnrolRequest,
    EnrolResponse,
    EodReport,
    EodResult,
    ErrorCode,
    ItemState,
    JournalState,
    LostReport,
    PushRequest,
    PushResponse,
    Reason,
    ReconItem,
    SnapshotInfo,
    TerminalInfo,
    TillHealth,
    WireEntry,
    WireMember,
    as_spoken,
    canonical_json,
    canonical_text,
    day_totals,
    entry_protocol,
    signed_id_matches,
    spoken_protocol,
)
from terminal import b64url
from terminal.backoff import Rand
from terminal.backoff import delay as backoff_delay
from terminal.errors import MESSAGES, Code, Rejected
from terminal.model import WITHDRAW_PREFIX, Card, EarnRule, JournalEntry, Member, Status, seq_ranges, utc_iso
from terminal.ownership import owned_as
from terminal.ports import CacheDocs, Clock, SyncStore

log = logging.getLogger("tillpoint.sync")
PUSH_NOW_BATCHES = 2
"""Batches ``push_now`` sends at most: the entry just recorded is among the last, and a backlog is the loop's."""

MAX_PAGES_PER_PULL = 10_000
SNAPSHOT_PAGE = 10_000
EOD_CHUNK = 1000
MAX_PROBES = 1000  # unsent entries pushed one by one, at most, to find where a journal that went back parts
PUSH_MAX_BYTES = 4 * 1024 * 1024
"""A push's entries as JSON, at most (a single entry may be larger): head office refuses a body that inflates past
32 MiB (``body_too_large``), and a backlog of large sales (hundreds of lines each) reaches that long before
``hq.batch_size`` entries."""
CREDENTIAL_REFUSED = "credential_refused"
"""The till's state: since when head office has refused this till's credential (401), or unset."""
REFUSED_KEPT = 20  # entries head office refused even alone, kept in the till's state for status
PUSH_HELD = "push_held"
"""The till's state: the first journal entry it holds because head office speaks an older protocol than the entry
needs (``entry_protocol``; JSON: seq, txn_id, kind, needs, speaks, since), or unset."""


def held_message(raw: str | None) -> str | None:
    """What ``push_held`` (the till's state) says, in words for ``tillpoint status``, ``sync`` and ``doctor``."""
    try:
        held = json.loads(raw) if raw else None
        if not isinstance(held, dict):
            return None
        return (
            f"journal entries from seq {held['seq']} on ({held['kind']} {held['txn_id']} first) are held since "
            f"{held['since']}: the entry needs head office's protocol {held['needs']}, head office speaks "
            f"{held['speaks']}; upgrade head office (docs/deploy.md, Upgrades): they are kept here and sent then"
        )
    except (ValueError, TypeError, KeyError):
        return str(raw)


Progress = Callable[[str, int, int], None]
"""progress(kind, rows done of that kind, rows of that kind)"""


class SyncError(Exception):
    pass


class HqUnreachable(SyncError):
    pass


class EnrolCodeMalformed(SyncError):
    """An enrolment code that is not one (4 to 64 characters): refused before anything is sent."""


class HqRejected(SyncError):
    def __init__(self, status: int, code: str, message: str, named: dict[str, Any] | None = None) -> None:
        self.status, self.code, self.message = status, code, message
        self.named: dict[str, Any] = named or {}
        """The refusal's other fields (``txn_id_taken``: the entry's ``seq`` and ``txn_id``, ``held_by``)."""
        super().__init__(f"head office refused ({status} {code}): {message}")


class HqFailed(SyncError):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"head office failed ({status}): {detail}")


def _now_iso() -> str:
    return utc_iso(time.time())


def wire_entry(entry: JournalEntry, spoken: int = PROTOCOL_VERSION) -> WireEntry:
    """``entry`` as sent to a head office speaking ``spoken`` (``as_spoken``)."""
    return WireEntry(
        terminal_id=entry.terminal_id,
        seq=entry.seq,
        txn_id=entry.txn_id,
        kind=entry.kind,
        payload=as_spoken(entry.kind, entry.payload, spoken),
        created_at=entry.created_at,
        merchant_id=entry.merchant_id,
    )


def wire_bytes(entries: list[JournalEntry]) -> int:
    """The size of ``entries`` in a push's JSON body (with the comma between them)."""
    return sum(len(wire_entry(e).model_dump_json().encode()) + 1 for e in entries)


def fitting(entries: list[JournalEntry], max_bytes: int) -> list[JournalEntry]:
    """The longest head of ``entries`` whose JSON fits in ``max_bytes``; the first entry whatever its size."""
    size = 0
    for count, entry in enumerate(entries):
        size += wire_bytes([entry])
        if size > max_bytes and count:
            return entries[:count]
    return entries


def _error(response: httpx.Response) -> SyncError:
    if response.status_code >= 500:
        return HqFailed(response.status_code, response.text[:200])
    try:
        body = response.json()
        named = {k: v for k, v in body.items() if k not in ("code", "message")}
        return HqRejected(response.status_code, str(body["code"]), str(body["message"]), named)
    except (ValueError, KeyError, TypeError, AttributeError):
        return HqRejected(response.status_code, "unknown", response.text[:200])


@functools.cache
def public_tls() -> ssl.SSLContext:
    """What httpx verifies with for ``verify=True`` (the public CAs), made once per process: making it reads
    the CA bundle, about 30 ms of CPU for each client otherwise. An ``SSLContext`` is shared safely."""
    return httpx.create_ssl_context()


def tls_verify(ca_file: str) -> ssl.SSLContext:
    """Verify head office against ``ca_file`` (a private CA) if given, else the public CAs."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else public_tls()


def _verifying(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """A client's ``verify``: a CA file's context, the shared public one for True, else as given."""
    if isinstance(verify, str):
        return tls_verify(verify)
    return public_tls() if verify is True else verify


def _request(http: httpx.Client, method: str, url: str, **kwargs: Any) -> dict[str, Any] | list[Any]:
    try:
        response = http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise HqUnreachable(f"head office unreachable: {exc.__class__.__name__}: {exc}") from exc
    if response.status_code == 204:
        return {}
    if response.status_code != 200:
        raise _error(response)
    try:
        body: dict[str, Any] | list[Any] = response.json()
    except ValueError as exc:
        raise HqFailed(response.status_code, "response is not JSON") from exc
    return body


def _parse(model: type[Any], body: Any, what: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HqFailed(200, f"unreadable {what}: {exc}") from exc


def enrol(
    base_url: str,
    code: str,
    terminal_id: str | None = None,
    *,
    store_id: str | None = None,
    verify: ssl.SSLContext | bool = True,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> EnrolResponse:
    """Redeem a one-time enrolment code for this terminal's own credential; a code of another store than
    ``store_id`` is refused (``HqRejected`` 409 ``enrol_wrong_store``) and stays unused."""
    try:
        request = EnrolRequest(code=code, terminal_id=terminal_id, store_id=store_id)
    except ValidationError as exc:  # a code cut short or pasted with more: nothing is sent
        raise EnrolCodeMalformed(
            f"{ErrorCode.ENROL_CODE_INVALID.value}: an enrolment code has 4 to 64 characters, as `tillpoint hq "
            f"enrol-code` prints it (got {len(code)}); nothing was sent to head office"
        ) from exc
    with httpx.Client(base_url=base_url, timeout=timeout, verify=_verifying(verify), transport=transport) as http:
        body = _request(http, "POST", "/v1/enrol", json=request.model_dump(exclude_none=True))
    reply: EnrolResponse = _parse(EnrolResponse, body, "enrolment reply")
    return reply


def terminal_info(
    base_url: str,
    token: str,
    *,
    verify: ssl.SSLContext | bool = True,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> TerminalInfo:
    """``GET /v1/terminal``: this terminal as head office registered it (its store, the check of head office's
    card-hash key). Raises ``SyncError``."""
    with httpx.Client(base_url=base_url, timeout=timeout, verify=_verifying(verify), transport=transport) as http:
        body = _request(http, "GET", "/v1/terminal", headers={"Authorization": f"Bearer {token}"})
    info: TerminalInfo = _parse(TerminalInfo, body, "terminal registration")
    return info


def read_token_file(path: Path) -> str:
    """The credential in ``path`` ("" when it cannot be read: the token in use stays)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def write_token_file(path: Path, token: str) -> None:
    """Replace the credential file atomically (mode 0600, fsync'd): a crash leaves the old or the new token.

    The new file keeps the owner of the one it replaces (else of its directory): an operator's ``sudo tillpoint
    sync --now --rotate`` or ``sudo tillpoint enrol`` wrote it as root's, and the daemon, running as its own user,
    could no longer read its credential (head office had retired the old one; the next start failed on it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        owned_as(handle.fileno(), path)
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_signature(root_key: str, body: dict[str, Any], sig: str) -> bool:
    """An Ed25519 signature by head office's root key over the canonical JSON of ``body``."""
    try:
        canonical = canonical_json(body)
    except ValueError:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(b64url.decode(root_key)).verify(b64url.decode(sig), canonical)
    except (InvalidSignature, ValueError):
        return False
    return True


_NOT_STORED = {
    Code.STORAGE_FULL: "the till's disk is full: what this round sent or got could not be stored (sales wait, "
    "nothing is lost; it goes on once there is room)",
    Code.STORAGE_FAILED: "the till's database could not store what this round sent or got",
}


def _said(exc: Exception) -> str:
    """A failed round as status and doctor show it: a refusal of the till's own database says what it means for
    sync (its generic message speaks of a sale, which a round does not record)."""
    if isinstance(exc, Rejected) and exc.code in _NOT_STORED:
        detail = "" if exc.message == MESSAGES.get(exc.code) else f" ({exc.message})"
        return f"{exc.code.value}: {_NOT_STORED[exc.code]}{detail}"
    return str(exc)


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
        verify: ssl.SSLContext | str | bool = True,
        batch_size: int = 500,
        push_max_bytes: int = PUSH_MAX_BYTES,
        transport: httpx.BaseTransport | None = None,
        save_token: Callable[[str], None] | None = None,
        load_token: Callable[[], str] | None = None,
        rotate_after_days: float = 0.0,
        end_of_day: bool = True,
        clock: Clock = time.time,
        health: Callable[[int], TillHealth] | None = None,
    ) -> None:
        self.store = store
        self.health = health
        """Builds this till's health report for the fleet view (given the protocol spoken); None: none sent."""
        self.protocol: int | None = None
        """The protocol spoken with head office, learnt from its ``/v1/health`` at the first round."""
        self.terminal_id = terminal_id
        self.batch_size = batch_size
        self.push_max_bytes = push_max_bytes
        """A push's entries as JSON, at most; lowered for this process's life when head office refuses a body (413)."""
        self.save_token = save_token
        self.load_token = load_token
        """Reads the credential's file again: a token another process rotated (``tillpoint sync --rotate``
        while the daemon runs) is taken up at head office's first refusal of the old one."""
        self.rotate_after_days = rotate_after_days
        self.end_of_day = end_of_day
        self.clock = clock
        self._lock = threading.Lock()
        self._unreachable = False
        self.hq_clock_offset: float | None = None
        """This till's clock minus head office's, from the ``Date`` of head office's last answer."""
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=_verifying(verify),
            transport=transport,
            event_hooks={"response": [self._saw_date]},
        )

    def _saw_date(self, response: httpx.Response) -> None:
        """Head office owns time: each answer's ``Date`` tells how far this till's clock is off."""
        try:
            told = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
        except (TypeError, ValueError):
            return
        if told.tzinfo is not None:
            self.hq_clock_offset = round(self.clock() - told.timestamp(), 1)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = {CLOCK_HEADER: utc_iso(self.clock()), **kwargs.pop("headers", {})}
        try:
            return _request(self.http, method, url, headers=headers, **kwargs)
        except HqRejected as exc:
            if exc.status != 401 or not self._token_rotated_elsewhere():
                raise
        return _request(self.http, method, url, headers=headers, **kwargs)

    def _token_rotated_elsewhere(self) -> bool:
        """Head office refused the credential: whether the file holds another one (then it is used from now)."""
        token = self.load_token() if self.load_token is not None else ""
        if not token or self.http.headers.get("Authorization") == f"Bearer {token}":
            return False
        log.warning("head office refused this till's credential; the credential file holds a newer one: using it")
        self.http.headers["Authorization"] = f"Bearer {token}"
        return True

    # -- push -------------------------------------------------------------------------------------

    def push_once(self) -> int:
        """Push one batch of unacknowledged entries (at most ``batch_size`` of them, ``push_max_bytes`` of JSON);
        returns how many became acknowledged. A batch head office refuses as ``seq_conflict`` (it holds other
        entries at this till's seqs) is put right first (``_journal_went_back``), then pushed again; one it refuses
        as ``txn_id_taken`` (another terminal's entry holds the transaction id of one of this till's) is not this
        till's database going back (``_push_halving``)."""
        entries = self._within_protocol(self.store.unpushed(self.batch_size))
        if not entries:
            return 0
        try:
            return self._push_halving(entries)
        except HqRejected as exc:
            if exc.code != ErrorCode.SEQ_CONFLICT.value or not self._journal_went_back():
                raise
        return self._push_halving(self._within_protocol(self.store.unpushed(self.batch_size)))

    def _within_protocol(self, entries: list[JournalEntry]) -> list[JournalEntry]:
        """The head of ``entries`` head office reads as they are: up to the first that needs a newer protocol than it
        speaks (``entry_protocol``: a return carrying ``gift_cards`` or ``voucher_kept``, which a head office of the
        release before quarantines as malformed). That entry, and every one after it (head office acknowledges a
        till's journal in order), stays unsent in the journal, nothing lost: held, in ``push_held`` (status, doctor)
        and the log, until head office announces the protocol (asked again each round while one is held); then
        they go in order."""
        spoken = self.protocol or PROTOCOL_VERSION
        first = next((n for n, e in enumerate(entries) if entry_protocol(e.kind, e.payload) > spoken), None)
        if first == 0 and self.protocol is not None:  # head office may have been upgraded since: ask it again
            self._learn_protocol()
            spoken = self.protocol or PROTOCOL_VERSION
            first = next((n for n, e in enumerate(entries) if entry_protocol(e.kind, e.payload) > spoken), None)
        if first is None:
            if self.store.state(PUSH_HELD) is not None:
                log.warning("head office speaks protocol %s now: the journal entries held for it are sent", spoken)
                self.store.set_state(**{PUSH_HELD: None})
            return entries
        if first == 0:
            self._hold(entries[0], spoken)
        return entries[:first]

    def _hold(self, entry: JournalEntry, spoken: int) -> None:
        """Keep ``entry`` (and those after it) for a head office that reads it: said once in the log, kept in state."""
        held = json.loads(self.store.state(PUSH_HELD) or "{}")
        if held.get("seq") == entry.seq and held.get("speaks") == spoken:
            return
        needs = entry_protocol(entry.kind, entry.payload)
        log.error(
            "journal seq %s (%s %s) needs head office's protocol %s; head office speaks %s: it and the entries after "
            "it are kept in this journal and sent once head office is upgraded",
            entry.seq,
            entry.kind,
            entry.txn_id,
            needs,
            spoken,
        )
        since = held.get("since") or _now_iso()
        state = {"seq": entry.seq, "txn_id": entry.txn_id, "kind": entry.kind, "needs": needs, "speaks": spoken}
        self.store.set_state(**{PUSH_HELD: json.dumps(state | {"since": since})})

    def _sized(self, entries: list[JournalEntry]) -> tuple[list[JournalEntry], bytes]:
        """The head of ``entries`` that fits in ``push_max_bytes``, and its request's JSON. Entries are measured
        one by one only when the whole batch does not fit (a backlog of large sales)."""
        raw = self._request_json(entries)
        if len(raw) <= self.push_max_bytes or len(entries) == 1:
            return entries, raw
        entries = fitting(entries, self.push_max_bytes)
        return entries, self._request_json(entries)

    def _push_halving(self, entries: list[JournalEntry]) -> int:
        """Push the head of ``entries`` that fits; a body head office finds too large (413) goes again as its first
        half, down to one entry, and the pushes after it keep to the smaller size. A batch refused for one entry
        whose transaction id another terminal's entry holds (``txn_id_taken``, naming it) goes again as the
        entries before it, and that entry, once first, is refused even alone. An entry head office refuses even
        alone is ``_refused_alone``."""
        entries, raw = self._sized(entries)
        while True:
            try:
                return self._push(entries, raw)
            except HqRejected as exc:
                taken = _taken_at(exc, entries)
                if taken == 0:
                    return self._refused_alone(entries[0], exc)
                if taken is not None:
                    entries = entries[:taken]
                    raw = self._request_json(entries)
                    continue
                if exc.status != 413 or (len(entries) == 1 and exc.code != ErrorCode.BODY_TOO_LARGE.value):
                    raise
                if len(entries) == 1:
                    return self._refused_alone(entries[0], exc)
            entries = entries[: len(entries) // 2]
            raw = self._request_json(entries)
            self.push_max_bytes = min(self.push_max_bytes, len(raw))
            log.warning("head office refused a push as too large: %d entries at a time now", len(entries))

    def _refused_alone(self, entry: JournalEntry, exc: HqRejected) -> int:
        """An entry head office refuses even alone can never reach it, and would hold every entry after it back for
        good: one larger than head office takes (``body_too_large``), or one whose transaction id head office holds
        another terminal's entry under (``txn_id_taken``: a credential that learnt the id, from a receipt, pushed
        first). It stays in this till's journal, is kept in ``push_refused`` (status), and is reported to head
        office as seqs this till cannot send are (a ``journal_lost`` item naming the txn, and the terminal that
        holds it), so head office's watermark, and this till's backlog, move on past it."""
        size, at = wire_bytes([entry]), _now_iso()
        refused = {"seq": entry.seq, "txn_id": entry.txn_id, "kind": entry.kind, "bytes": size, "code": exc.code}
        if exc.code == ErrorCode.TXN_ID_TAKEN.value:
            holder = str(exc.named.get("held_by") or "?")[:128]
            refused["held_by"] = holder
            what = f"entry {entry.txn_id} ({entry.kind}): head office holds this transaction id from terminal {holder}"
        else:
            what = f"entry {entry.txn_id} ({entry.kind}, {size} bytes) is larger than head office accepts"
        log.error("journal seq %s refused even alone (%s): %s; reported, and kept here", entry.seq, exc.code, what)
        self._keep_refused(refused | {"at": at})
        reason = f"{exc.code}: {what}; it is kept in the till's journal"
        state = self._tell_lost([(entry.seq, entry.seq)], reason[:300])
        if state.acked_seq < entry.seq - 1:  # seqs before it neither side holds (renumbered away): never coming
            state = self._report_lost([(state.acked_seq + 1, entry.seq - 1)], _NEITHER) or state
        return self.store.mark_pushed(min(state.acked_seq, entry.seq), at)

    def _keep_refused(self, refused: dict[str, Any]) -> None:
        """Add an entry head office refused to ``push_refused`` (the till's status shows it), the newest kept."""
        kept = [r for r in json.loads(self.store.state("push_refused") or "[]") if r.get("seq") != refused["seq"]]
        self.store.set_state(push_refused=json.dumps([*kept, refused][-REFUSED_KEPT:]))

    def _journal_went_back(self) -> bool:
        """This till's database went back (its WAL lost or cut at a damaged frame, an older copy restored): it
        gave again seqs head office holds other entries at. Its unpushed entries up to head office's highest
        seq are pushed one by one, in order; from the first head office refuses, they and every later one take
        new seqs above everything either side holds. Entries it recorded before going back and had not sent
        are gone from both sides (nothing names them). An entry refused alone as ``txn_id_taken`` on the way is not
        where it went back: another terminal holds its transaction id (``_refused_alone``). False when no entry of
        the till's explains the refusal (it stays refused: an operator looks)."""
        state = _parse(JournalState, self._call("GET", "/v1/journal/state"), "journal state")
        explained = False
        for entry in self.store.unpushed(MAX_PROBES):
            if entry.seq > state.max_seq or entry_protocol(entry.kind, entry.payload) > (
                self.protocol or PROTOCOL_VERSION
            ):
                return explained
            try:
                self._push([entry])
            except HqRejected as exc:
                if _taken_at(exc, [entry]) == 0:
                    self._refused_alone(entry, exc)
                    explained = True
                    continue
                if exc.code != ErrorCode.SEQ_CONFLICT.value:
                    raise
                moved = self.store.renumber_unpushed(entry.seq, state.max_seq)
                log.error(
                    "head office holds other entries at this till's seqs: its database went back; %d unsent "
                    "entries renumbered from seq %s to %s-%s (entries made before it went back and never sent are "
                    "lost)",
                    len(moved),
                    moved[0][0] if moved else entry.seq,
                    moved[0][1] if moved else "-",
                    moved[-1][1] if moved else "-",
                )
                self.store.set_state(journal_renumbered_at=_now_iso())
                return bool(moved) or explained
        return explained

    def _request_json(self, entries: list[JournalEntry]) -> bytes:
        request = PushRequest(
            protocol=self.protocol or PROTOCOL_VERSION,
            terminal_id=self.terminal_id,
            entries=[wire_entry(e, self.protocol or PROTOCOL_VERSION) for e in entries],
        )
        return request.model_dump_json().encode()

    def _push(self, entries: list[JournalEntry], raw: bytes | None = None) -> int:
        """Push ``entries`` (``raw``: their request's JSON, when already made); how many became acknowledged. Only
        entries it sent are marked: head office's watermark may stand above them at seqs where it holds other
        entries (this till's database went back), and this till's entries there have not reached it."""
        body = gzip.compress(raw or self._request_json(entries), compresslevel=6)
        reply: PushResponse = _parse(
            PushResponse,
            self._call("POST", "/v1/journal", content=body, headers={**_JSON, "Content-Encoding": "gzip"}),
            "push reply",
        )
        if reply.gaps:
            self._resend_gaps(reply.gaps)
        if self.store.state("offline_since") is not None:
            self.store.set_state(offline_since=None, last_error=None)  # head office answered: online again
        return self.store.mark_pushed(min(reply.acked_seq, entries[-1].seq), _now_iso())

    def _resend_gaps(self, gaps: list[tuple[int, int]]) -> None:
        """Head office misses these seqs. Those this till holds and had marked acknowledged (head office's
        database went back: restored from a backup) are marked unsent, so the next push sends them again; those
        it no longer holds are reported lost."""
        resent = self.store.unmark_pushed(gaps)
        if resent:
            log.warning(
                "head office no longer holds %d entries it had acknowledged (in seqs %s): sending them again",
                resent,
                gaps,
            )
        self._report_lost(gaps, _NEITHER)

    def _report_lost(self, gaps: list[tuple[int, int]], reason: str) -> JournalState | None:
        """Seqs neither head office nor this till holds can never be sent: say so (an item at head office)
        instead of waiting for them forever."""
        lost: list[int] = []
        for first, last in gaps:
            held = self.store.held_seqs(first, last)  # once a range: a hole may span thousands of seqs
            lost += [seq for seq in range(first, last + 1) if seq not in held]
        if not lost:
            return None
        ranges = seq_ranges(sorted(lost))
        log.error("journal seqs %s are lost (neither here nor at head office): reported", ranges)
        return self._tell_lost(ranges, reason)

    def _tell_lost(self, ranges: list[tuple[int, int]], reason: str) -> JournalState:
        """Tell head office these seqs will never come (``POST /v1/journal/lost``); where its journal stands."""
        body = LostReport(ranges=ranges[:100], reason=reason)
        state: JournalState = _parse(
            JournalState, self._call("POST", "/v1/journal/lost", json=body.model_dump()), "lost reply"
        )
        return state

    def recover_seq(self) -> None:
        """After a rebuild from a damaged file: learn where head office holds the journal, report what
        neither side holds any more, and let the till record again above everything either side saw."""
        if not self.store.recovering:
            return
        state = _parse(JournalState, self._call("GET", "/v1/journal/state"), "journal state")
        top = max(self.store.max_seq(), state.max_seq)
        held_hq = {
            s for s in range(state.acked_seq + 1, state.max_seq + 1) if not any(a <= s <= b for a, b in state.gaps)
        }
        missing = [
            s for s in range(state.acked_seq + 1, top + 1) if s not in held_hq and s not in self.store.held_seqs(s, s)
        ]
        if missing:
            self._report_lost(seq_ranges(missing), "this till's database was damaged; these rows were unreadable")
        self.store.finish_recovery(top)
        log.warning(
            "journal recovered after a rebuild: head office holds up to %s, next seq above %s", state.max_seq, top
        )

    def push_now(self, wait: float) -> bool:
        """Push what is unacknowledged at once, outside the loop's rounds (a voucher sold online, so that another
        till can have its use confirmed a moment later). False, and the loop pushes it later, when a round holds
        the client longer than ``wait`` seconds, head office was unreachable at the last round, or it did not
        take the push now."""
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            if self._unreachable:
                return False
            self._probe_if_unreachable()
            self.push_all(PUSH_NOW_BATCHES)
        except SyncError as exc:
            log.info("push at once failed (%s); the sync loop pushes it", exc)
            return False
        finally:
            self._lock.release()
        return True

    def push_all(self, max_batches: int = 10_000) -> int:
        total = 0
        for _ in range(max_batches):
            acked = self.push_once()
            total += acked
            if acked == 0:
                break
        return total

    # -- pull -------------------------------------------------------------------------------------

    def root_key(self) -> str:
        """Head office's root public key: pinned at enrolment, else trusted on first use (over TLS)."""
        pinned = self.store.state("hq_root_key")
        if pinned:
            return pinned
        health = self._call("GET", "/v1/health")
        key = str(health.get("root_key") or "")
        if not key:
            raise HqFailed(200, "head office did not publish its root key")
        self.store.set_state(hq_root_key=key)
        return key

    def pull_once(self, limit: int = 1000) -> int:
        """Pull every change since the stored cursor, page by page; each page commits with its cursor. The last
        page also notes how far this till's journal was acknowledged before the pull began: head office's coupon
        counts it brought hold those entries' uses, not the ones acknowledged since (``Store.apply_changes``)."""
        if self.store.state("cursor") is None:
            return self.bootstrap()
        acked = int(self.store.state("hq_acked_seq") or 0)
        count = 0
        for _ in range(MAX_PAGES_PER_PULL):
            since = int(self.store.state("cursor") or 0)
            page: ChangesPage = _parse(
                ChangesPage, self._call("GET", "/v1/changes", params={"since": since, "limit": limit}), "changes page"
            )
            self._check_page(page)
            counted = None if page.more else acked
            self.store.apply_changes(
                *_page_models(page), cursor=page.cursor, docs=_page_docs(page), counted_seq=counted
            )
            count += page.size()
            if not page.more:
                break
        return count

    def _check_page(self, page: ChangesPage) -> None:
        """Every key, revocation and signed tombstone of the page is head office's, under the id it signed;
        otherwise nothing of the page is applied. A tombstone of a key or a revocation without a signature (an
        earlier head office's, or a network's) is not applied (``_page_docs``): the till keeps what it holds."""
        signed: list[tuple[str, str, dict[str, Any], str]] = [("keys", k.key_id, k.body, k.sig) for k in page.keys]
        signed += [("revocations", r.revocation_id, r.body, r.sig) for r in page.revocations]
        signed += [
            (t.kind, t.id, t.body, t.sig)
            for t in page.deleted
            if t.kind in SIGNED_TOMBSTONES and t.body is not None and t.sig is not None
        ]
        if not signed:
            return
        root = self.root_key()
        for kind, item_id, body, sig in signed:
            if not check_signature(root, body, sig):
                raise HqFailed(200, f"signature of {body} does not check against the pinned root key")
            if not signed_id_matches(kind, item_id, body):
                raise HqFailed(200, f"{kind} {item_id} carries the signed body of another: {body}")

    def bootstrap(self, progress: Progress | None = None, page_size: int = SNAPSHOT_PAGE) -> int:
        """Load a new terminal's cache from head office's snapshot, kind by kind, resumable; then
        continue with the changes feed from the snapshot's version."""
        state = self.store.state
        if state("bootstrap_version") is None:
            info: SnapshotInfo = _parse(SnapshotInfo, self._call("GET", "/v1/snapshot"), "snapshot info")
            self.store.set_state(
                bootstrap_version=str(info.version),
                bootstrap_kind=SNAPSHOT_KINDS[0],
                bootstrap_after="",
                bootstrap_done="0",
                bootstrap_counts=json.dumps(info.counts),
            )
        counts: dict[str, int] = json.loads(state("bootstrap_counts") or "{}")
        kind, after = state("bootstrap_kind") or "done", state("bootstrap_after") or ""
        done, loaded = int(state("bootstrap_done") or 0), 0
        # The next page downloads while this one is written: head office's and the till's work overlap.
        with ThreadPoolExecutor(1, thread_name_prefix="bootstrap") as ahead:
            pending = ahead.submit(self._fetch_snapshot, kind, after, page_size) if kind in SNAPSHOT_KINDS else None
            for _ in range(MAX_PAGES_PER_PULL * 10):
                if pending is None:
                    break
                rows, following = pending.result()
                kind_after = (kind, following) if following is not None else (_next_kind(kind), "")
                pending = (
                    ahead.submit(self._fetch_snapshot, *kind_after, page_size)
                    if kind_after[0] in SNAPSHOT_KINDS
                    else None
                )
                done = self._store_snapshot_page(kind, rows, following, done)
                loaded += len(rows)
                if progress is not None:
                    progress(kind, done if following is not None else counts.get(kind, 0), counts.get(kind, 0))
                kind, done = kind_after[0], done if following is not None else 0
        self.store.finish_bootstrap(int(state("bootstrap_version") or 0))
        return loaded + self.pull_once()

    def _fetch_snapshot(self, kind: str, after: str, page_size: int) -> tuple[list[list[Any]], str | None]:
        body = self._call("GET", f"/v1/snapshot/{kind}", params={"after": after, "limit": page_size})
        if (
            not isinstance(body, dict)
            or body.get("kind") != kind
            or tuple(body.get("columns", ())) != SNAPSHOT_COLUMNS[kind]
        ):
            raise HqFailed(200, f"unexpected snapshot page for {kind}")
        following = body.get("next")
        return body["rows"], None if following is None else str(following)

    def _store_snapshot_page(self, kind: str, rows: list[list[Any]], following: str | None, done: int) -> int:
        """Verify and store one page with the position it reaches; returns the rows done of its kind."""
        if kind in ("keys", "revocations"):
            root = self.root_key()
            for row in rows:
                body = json.loads(row[1])
                if not check_signature(root, body, row[2]):
                    raise HqFailed(200, f"signature of {kind} {row[0]} does not check against the pinned root key")
                if not signed_id_matches(kind, str(row[0]), body):
                    raise HqFailed(200, f"{kind} {row[0]} carries the signed body of another: {body}")
        if following is None:
            position = {"bootstrap_kind": _next_kind(kind), "bootstrap_after": "", "bootstrap_done": "0"}
        else:
            position = {"bootstrap_kind": kind, "bootstrap_after": following, "bootstrap_done": str(done + len(rows))}
        self.store.bootstrap_rows(kind, rows, position)
        return done + len(rows)

    # -- end of day, flags, credentials -----------------------------------------------------------------

    def report_eod(self, until: date | None = None, max_days: int = 7) -> list[EodResult]:
        """Report each business day (local time) before ``until`` (default today) whose entries head
        office acknowledged and that was not reported yet, oldest first."""
        until = until or datetime.fromtimestamp(self.clock()).date()
        results = []
        for _ in range(max_days):
            found = self._next_day(until)
            if found is None:
                break
            day, first, entries = found
            totals = day_totals((e.kind, e.payload) for e in entries)
            report = EodReport(
                terminal_id=self.terminal_id, day=day, first_seq=first, last_seq=entries[-1].seq, totals=totals
            )
            result: EodResult = _parse(
                EodResult,
                self._call("POST", "/v1/eod", content=report.model_dump_json(), headers=_JSON),
                "end-of-day reply",
            )
            self.store.record_eod(
                day,
                first,
                report.last_seq,
                json.dumps(report.model_dump()["totals"]),
                result.status,
                result.model_dump_json(),
            )
            results.append(result)
        return results

    def _next_day(self, until: date) -> tuple[str, int, list[JournalEntry]] | None:
        """The first day not fully reported: (day, its first seq, its entries), once all are acknowledged.
        A day reported early (``tillpoint reconcile --eod``) is reported again whole, from its first seq."""
        after = int(self.store.state("eod_last_seq") or 0)
        head = self.store.entries(after, 1)
        if not head or head[0].pushed_at is None:
            return None
        day = _local_day(head[0].created_at)
        if day >= until.isoformat():
            return None
        first = self.store.eod_first_seq(day) or head[0].seq
        in_day: list[JournalEntry] = []
        cursor = first - 1
        while True:
            chunk = self.store.entries(cursor, EOD_CHUNK)
            for entry in chunk:
                if entry.seq > after and _local_day(entry.created_at) > day:
                    return day, first, in_day
                if entry.pushed_at is None:
                    return None  # report once head office holds the whole day
                in_day.append(entry)
            if len(chunk) < EOD_CHUNK:
                return day, first, in_day
            cursor = chunk[-1].seq

    def flags(self) -> list[ReconItem]:
        """What head office flagged for this terminal; kept in the cache for offline display."""
        body = self._call("GET", "/v1/flags")
        if not isinstance(body, list):
            raise HqFailed(200, "unreadable flags: not a list")
        items = []
        for item in body:
            try:
                items.append(ReconItem.model_validate(item))
            except ValidationError as exc:
                # a head office newer than this till (a reason this release does not know): the flag is
                # head office's to show; the round goes on (flags are a display, not the sync)
                log.warning("a flag this till cannot read was left out: %s", str(exc).splitlines()[0])
        self.store.set_state(hq_flags=json.dumps([i.model_dump(mode="json") for i in items]), hq_flags_at=_now_iso())
        self._forget_settled_refusals(items)
        return items

    def _forget_settled_refusals(self, items: Sequence[ReconItem]) -> None:
        """Entries head office refused even alone stay in ``push_refused`` (status, doctor) until head office's
        staff settle the ``journal_lost`` item that names their seq; then the till stops showing them. One
        whose item is not among the flags the till holds (older than those shown) is kept."""
        settled = [i for i in items if i.reason is Reason.JOURNAL_LOST and i.state is not ItemState.OPEN]
        kept = json.loads(self.store.state("push_refused") or "[]")
        left = [r for r in kept if not any(_names_seq(i, r.get("seq")) for i in settled)]
        if len(left) != len(kept):
            self.store.set_state(push_refused=json.dumps(left) if left else None)

    def rotate_credential(self) -> None:
        """Get a new token, save it, then use it (head office drops the old one at its first use)."""
        if self.save_token is None:
            raise SyncError("no place to save a rotated token")
        reply: EnrolResponse = _parse(EnrolResponse, self._call("POST", "/v1/credentials/rotate"), "rotation reply")
        self.save_token(reply.token)
        self.http.headers["Authorization"] = f"Bearer {reply.token}"
        self.store.set_state(token_rotated_at=_now_iso())

    def _rotation_due(self) -> bool:
        if self.rotate_after_days <= 0 or self.save_token is None:
            return False
        last = self.store.state("token_rotated_at")
        if last is None:
            self.store.set_state(token_rotated_at=_now_iso())
            return False
        age = self.clock() - datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
        return age > self.rotate_after_days * 86400

    # -- one round ----------------------------------------------------------------------------------

    def sync_once(self, pull: bool = True) -> SyncResult:
        """One round: push everything, then pull (so pulled balances include what was just pushed),
        report finished days, fetch flags, rotate the credential when due."""
        with self._lock:
            try:
                self._probe_if_unreachable()
                self.recover_seq()
                pushed = self.push_all()
                self.withdraw_once()
                pulled = self.pull_once() if pull else 0
                if pull:
                    self._housekeeping()
            except SyncError as exc:
                self._unreachable = isinstance(exc, HqUnreachable)
                self._mark_offline(exc)
                raise
            self._unreachable = False
            offset = None if self.hq_clock_offset is None else str(self.hq_clock_offset)
            self.store.set_state(  # on the till's own clock, the one its offline rules read (``Service``)
                last_sync_ok=utc_iso(self.clock()),
                offline_since=None,
                last_error=None,
                hq_clock_offset=offset,
                **{CREDENTIAL_REFUSED: None},
            )
            return SyncResult(pushed, pulled)

    def withdraw_once(self) -> int:
        """Tell head office of confirmations this till asked for and did not use (``Service``: the sale was
        refused or failed after the question); each is forgotten once head office acknowledged it. Returns
        how many head office released. A head office without the route keeps them held (logged)."""
        txn_ids = self.store.withdrawals(MAX_WITHDRAWALS)
        if not txn_ids:
            return 0
        try:
            answer = self._call("POST", "/v1/payments/withdraw", json={"txn_ids": txn_ids})
        except HqRejected as exc:
            log.warning("head office did not take this till's withdrawn confirmations: %s", exc)
            return 0
        self.store.set_state(**{WITHDRAW_PREFIX + txn_id: None for txn_id in txn_ids})
        released = answer.get("withdrawn", 0) if isinstance(answer, dict) else 0
        return int(released) if isinstance(released, int) else 0

    def _probe_if_unreachable(self) -> None:
        """After head office could not be reached, a small request first: while it stays unreachable, no
        round reads and compresses a batch of the backlog only to fail (that work slowed offline selling
        down as the backlog grew). The first round also learns which protocol head office speaks."""
        if self._unreachable or self.protocol is None:
            self._learn_protocol()

    def _learn_protocol(self) -> None:
        """Which protocol head office speaks (its ``/v1/health``): this till speaks the lower of the two."""
        health = self._call("GET", "/v1/health")
        announced = health.get("protocol") if isinstance(health, dict) else None
        self.protocol = spoken_protocol(announced if isinstance(announced, int) else 1)

    def report_health(self) -> bool:
        """Send this till's health report (protocol 2 and later); False when head office is older."""
        if self.health is None or (self.protocol or PROTOCOL_VERSION) < 2:
            return False
        report = self.health(self.protocol or PROTOCOL_VERSION)
        self._call("POST", "/v1/terminal/health", content=report.model_dump_json(), headers=_JSON)
        return True

    def _housekeeping(self) -> None:
        try:
            self.report_health()
        except (HqRejected, HqFailed) as exc:  # the fleet view misses a report; the till's sync goes on
            log.warning("head office did not take this till's health report: %s", exc)
        if self.end_of_day:
            try:
                self.report_eod()
            except HqRejected as exc:  # past head office's daily bound: the days not reported go the next day
                if exc.code != ErrorCode.PUSH_LIMITED.value:
                    raise
                log.warning("head office did not take this till's end-of-day report today: %s", exc)
        self.flags()
        if self._rotation_due():
            self.rotate_credential()

    def _mark_offline(self, exc: SyncError) -> None:
        """A failed round: offline since its first failure (what the offline rules read), and whether head office
        refused this till's credential (``credential_refused``: no waiting brings the till back; it must be
        enrolled again), which ``tillpoint status`` shows apart from an outage."""
        now = utc_iso(self.clock())
        since = self.store.state("offline_since") or now
        refused = (self.store.state(CREDENTIAL_REFUSED) or now) if credential_refused(exc) else None
        self.store.set_state(offline_since=since, last_error=str(exc)[:300], **{CREDENTIAL_REFUSED: refused})


_JSON = {"Content-Type": "application/json"}
_NEITHER = "head office misses these seqs and this till's journal no longer holds them"


def _local_day(created_at: str) -> str:
    try:
        moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return "0000-00-00"
    return moment.astimezone().date().isoformat()


def _next_kind(kind: str) -> str:
    index = SNAPSHOT_KINDS.index(kind) + 1
    return SNAPSHOT_KINDS[index] if index < len(SNAPSHOT_KINDS) else "done"


def _page_models(page: ChangesPage) -> tuple[list[Member], list[Card], list[EarnRule]]:
    members = [
        Member(m.member_id, m.display_name, m.tier, m.points, _member_status(m), m.stored_value) for m in page.members
    ]
    cards = [Card(c.uid_hash, c.member_id, Status(c.status), c.counter) for c in page.cards]
    rules = [EarnRule(r.rule_id, r.points, r.per_minor) for r in page.rules]
    return members, cards, rules


def _member_status(member: WireMember) -> Status:
    """A member's status at the till: head office's, and ``held`` for an active member whose spending it holds."""
    return Status.HELD if member.spend_held and member.status == Status.ACTIVE.value else Status(member.status)


def _doc(body: dict[str, Any]) -> str:
    return canonical_text(body)


def _page_docs(page: ChangesPage) -> CacheDocs:
    return CacheDocs(
        rule_docs=[(d.rule_id, _doc(d.body)) for d in page.rule_docs],
        coupons=[(c.coupon_id, c.member_id, _doc(c.body), c.uses) for c in page.coupons],
        keys=[(k.key_id, _doc(k.body), k.sig) for k in page.keys],
        revocations=[(r.revocation_id, _doc(r.body), r.sig) for r in page.revocations],
        device_certs=[(d.cert_id, _doc(d.body)) for d in page.device_certs],
        deleted=[(t.kind, t.id) for t in page.deleted if t.kind not in SIGNED_TOMBSTONES],
        signed_deleted=[
            (t.kind, t.id, str(t.body["deleted_at"]))
            for t in page.deleted
            if t.kind in SIGNED_TOMBSTONES and t.body is not None and t.sig is not None
        ],
        spend_held=page.spend_held,
        allocations=None if page.allocations is None else [(a.pool_id, a.allowed, a.used) for a in page.allocations],
        topup_policy=None if page.topup_policy is None else _doc(page.topup_policy.model_dump()),
        merchant_id=page.merchant_id,
        vouchers=[(v.voucher_id, _doc(v.body)) for v in page.vouchers],
        gift_cards=[(g.card_id, _doc(g.body)) for g in page.gift_cards],
        gift_terms=None if page.gift_terms is None else _doc(page.gift_terms.model_dump()),
        voucher_stock=None
        if page.voucher_stock is None
        else (page.voucher_stock.offline_total, page.voucher_stock.codes),
    )


def _taken_at(exc: HqRejected, entries: list[JournalEntry]) -> int | None:
    """Where in ``entries`` the entry head office refused as ``txn_id_taken`` is (None: another refusal, or one
    that names none of them)."""
    if exc.code != ErrorCode.TXN_ID_TAKEN.value:
        return None
    seq, txn_id = exc.named.get("seq"), exc.named.get("txn_id")
    return next((i for i, e in enumerate(entries) if (e.seq, e.txn_id) == (seq, txn_id)), None)


def _names_seq(item: ReconItem, seq: object) -> bool:
    """Whether a ``journal_lost`` item's ranges hold ``seq``."""
    ranges = item.detail.get("ranges")
    if not isinstance(seq, int) or not isinstance(ranges, list):
        return False
    return any(isinstance(r, list) and len(r) == 2 and r[0] <= seq <= r[1] for r in ranges)


def credential_refused(exc: BaseException) -> bool:
    """Head office refused the till's credential (revoked, replaced by a rotation elsewhere, a wrong token file)."""
    return isinstance(exc, HqRejected) and exc.status == 401


class SyncLoop:
    """Runs ``sync_once`` in its own thread: every push interval, at once when woken by a commit,
    pulling every pull interval, and backing off with jitter while head office is unreachable.

    Nothing ends the thread but ``stop``. Head office failing (``SyncError``) or the till's own store
    refusing (a full disk: ``Rejected``) is an expected state: kept in ``last_error``, retried with
    backoff, and still progress for the watchdog. Anything else is a bug: logged with its traceback,
    counted in ``crashes``, retried with backoff, and *not* progress, so a loop that keeps crashing
    stops feeding systemd's watchdog and the daemon is restarted."""

    def __init__(
        self,
        client: SyncClient,
        push_interval: float,
        pull_interval: float,
        backoff_max: float,
        rand: Rand = random.random,
    ) -> None:
        self.client = client
        self.push_interval = push_interval
        self.pull_interval = pull_interval
        self.backoff_max = backoff_max
        self.rand = rand  # the backoff's jitter
        self.failures = 0
        self.crashes = 0
        self.last_error: str | None = None
        """The last round's failure, kept in memory (a full disk cannot record it in the database)."""
        self.refused = False
        """The last round's failure was head office refusing the credential (logged as an error once)."""
        self.last_progress = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self.on_result: list[Callable[[SyncResult | Exception], None]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _round(self, pull: bool) -> float:
        expected = True
        try:
            result: SyncResult | Exception = self.client.sync_once(pull=pull)
            self.failures, self.last_error = 0, None
        except (SyncError, Rejected) as exc:
            result = exc
            if credential_refused(exc) and not self.refused:
                log.error(
                    "head office refuses this till's credential (%s): the till cannot sync until it is enrolled "
                    "again (`tillpoint hq enrol-code %s` at head office, then `tillpoint enrol CODE` on this till; "
                    "no restart needed); its sales stay in its journal meanwhile",
                    exc,
                    self.client.terminal_id,
                )
            else:
                log.info("sync failed (%s)", _said(exc))
        except Exception as exc:
            result, expected = exc, False
            self.crashes += 1
            log.exception("sync round crashed (%d so far)", self.crashes)
        self.refused = credential_refused(result) if isinstance(result, Exception) else False
        if isinstance(result, Exception):
            self.failures += 1
            self.last_error = f"{type(result).__name__}: {_said(result)}"[:300]
        if expected:
            self.last_progress = time.monotonic()
        for listener in self.on_result:
            try:
                listener(result)
            except Exception:
                log.exception("a sync listener failed")
        if not self.failures:
            return self.push_interval
        # Jittered, so tills that lost head office together do not all come back at once.
        return backoff_delay(self.failures, self.push_interval, self.backoff_max, self.rand)

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
