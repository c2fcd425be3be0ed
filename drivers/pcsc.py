"""PC/SC readers through pcscd, with pyscard's low-level ``smartcard.scard`` API (the only module
that imports ``smartcard``).

One monitor thread per ``PcscReader`` owns one PC/SC context. It lists the readers matching the
glob, waits in ``SCardGetStatusChange`` for at most ``poll_interval`` (so ``stop()`` is prompt), and
when a card arrives it connects, reads the UID with GET DATA (``FF CA 00 00 00``) and reports a
``CardRead`` carrying only the UID's keyed hash. A card held on the reader is one tap: a new tap
needs the card to leave (or pcscd's per-reader event counter to move).

pyscard reports failures as SCARD_* return codes (and ``scard.error`` for bad calls); they are
translated here, at the boundary:

    DriverError                         any other SCARD_* code, scard.error
     +-- DriverUnavailable              SCARD_E_NO_SERVICE (pcscd not running), sharing violation
     +-- ReaderGone                     reader unplugged or unknown, pcscd stopped or restarted
     +-- CardGone                       card removed, reset, mute or unpowered before the read ended
     +-- ProtocolError                  unusable answer: SW other than 90 00, bad ATR, no protocol

Nothing here crashes the till: lost service or readers become ``ReaderEvent``s ("removed", "error")
and the monitor reconnects with a capped backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any

from smartcard import scard

from drivers.errors import CardGone, DriverError, DriverUnavailable, ProtocolError, ReaderGone
from terminal.model import CardRead, ReaderEvent
from terminal.ports import CardSink, ReaderSink, UidHasher

log = logging.getLogger(__name__)

GET_UID = bytes.fromhex("FFCA000000")  # PC/SC part 3 GET DATA: CLA FF, INS CA, P1 00 (UID), Le 00
SW_OK = b"\x90\x00"
# pcsc-lite's pseudo reader: its state changes when a reader is plugged or unplugged.
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
MAX_BACKOFF = 5.0

# PC/SC part 3 ATR of a contactless storage card: 3B 8F 80 01 80 4F 0C A0 00 00 03 06, then SS
# (the card's standard) and the card name; see PC/SC part 3 supplemental document.
_PART3_PREFIX = bytes.fromhex("3B8F8001804F0CA000000306")
_PART3_TECH = {0x03: "iso14443a", 0x07: "iso14443b", 0x0B: "iso15693", 0x11: "felica"}

Transmit = Callable[[bytes], bytes]

_CARD_GONE = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNRESPONSIVE_CARD,
    scard.SCARD_E_NOT_TRANSACTED,  # what pcsc-lite returns when the reader's transmit fails
}
_READER_GONE = {
    scard.SCARD_E_READER_UNAVAILABLE,
    scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_F_COMM_ERROR,  # the socket to pcscd broke: pcscd stopped or restarted
    scard.SCARD_E_INVALID_HANDLE,  # a context or card handle from before a pcscd restart
    scard.SCARD_E_NO_READERS_AVAILABLE,
}
_UNAVAILABLE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SHARING_VIOLATION, scard.SCARD_E_NO_ACCESS}
_PROTOCOL = {
    scard.SCARD_E_PROTO_MISMATCH,
    scard.SCARD_E_INVALID_ATR,
    scard.SCARD_E_CARD_UNSUPPORTED,
    scard.SCARD_W_UNSUPPORTED_CARD,
    scard.SCARD_E_INSUFFICIENT_BUFFER,
}
_CODE_NAMES = {
    getattr(scard, n): n for n in dir(scard) if n.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_", "SCARD_P_"))
}


def read_uid(transmit: Transmit) -> bytes:
    """The card's UID, read with PC/SC GET DATA through ``transmit`` (command APDU -> response)."""
    response = transmit(GET_UID)
    if not response:
        # A present card always answers at least SW1 SW2; nothing at all means it left the field
        # (vpcd, for one, reports success with no data when its card disconnects mid-command).
        raise CardGone("no answer to GET DATA: card left the field")
    if len(response) < 2:
        raise ProtocolError(f"GET DATA (UID) answer too short: {response.hex().upper()}")
    data, sw = response[:-2], response[-2:]
    if sw != SW_OK:
        raise ProtocolError(f"GET DATA (UID) refused: SW {sw.hex().upper()}")
    if not data:
        raise ProtocolError("GET DATA (UID) returned an empty UID")
    return data


def tech_from_atr(atr: bytes) -> str:
    """Contactless technology named by a PC/SC part 3 ATR; ISO 14443 A unless the ATR says more."""
    if atr.startswith(_PART3_PREFIX) and len(atr) > len(_PART3_PREFIX):
        return _PART3_TECH.get(atr[len(_PART3_PREFIX)], "iso14443a")
    return "iso14443a"


def error_for(code: int, what: str) -> DriverError:
    """The driver error for a SCARD_* return code of the call ``what``."""
    name = _CODE_NAMES.get(code, "SCARD_?")
    text = f"{what}: {scard.SCardGetErrorMessage(code).rstrip('.')} ({name} 0x{code & 0xFFFFFFFF:08X})"
    if code == scard.SCARD_E_NO_SERVICE:
        return DriverUnavailable(f"{text}; is pcscd running?")
    for codes, kind in (
        (_CARD_GONE, CardGone),
        (_READER_GONE, ReaderGone),
        (_UNAVAILABLE, DriverUnavailable),
        (_PROTOCOL, ProtocolError),
    ):
        if code in codes:
            return kind(text)
    return DriverError(text)


def _raw(what: str, function: Callable[..., Any], *args: Any) -> list[Any]:
    """One pyscard call as [return code, results...]; pyscard's own exception becomes DriverError."""
    try:
        result = function(*args)
    except scard.error as exc:
        raise DriverError(f"{what}: {exc}") from exc
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _call(what: str, function: Callable[..., Any], *args: Any) -> list[Any]:
    """One pyscard call's results; a return code other than success raises its DriverError."""
    code, *values = _raw(what, function, *args)
    if code != scard.SCARD_S_SUCCESS:
        raise error_for(code, what)
    return values


@contextmanager
def _context() -> Iterator[int]:
    (hcontext,) = _call("SCardEstablishContext", scard.SCardEstablishContext, scard.SCARD_SCOPE_USER)
    try:
        yield hcontext
    finally:
        scard.SCardReleaseContext(hcontext)  # after a pcscd restart it is already gone: ignore


def _list_readers(hcontext: int) -> list[str]:
    code, names = _raw("SCardListReaders", scard.SCardListReaders, hcontext, [])
    if code == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []  # a live pcscd with nothing plugged in
    if code != scard.SCARD_S_SUCCESS:
        raise error_for(code, "SCardListReaders")
    return list(names)


def _transmit(hcard: int, protocol: int, apdu: bytes) -> bytes:
    (response,) = _call("SCardTransmit", scard.SCardTransmit, hcard, protocol, list(apdu))
    return bytes(response)


def read_card_uid(hcontext: int, reader: str) -> bytes:
    """Connect to the card on ``reader``, read its UID, and leave the card as it was."""
    hcard, protocol = _call(
        "SCardConnect",
        scard.SCardConnect,
        hcontext,
        reader,
        scard.SCARD_SHARE_SHARED,
        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
    )
    try:
        return read_uid(lambda apdu: _transmit(hcard, protocol, apdu))
    finally:
        scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)  # a pulled card has no handle left


def _counter(state: int) -> int:
    # pcsc-lite keeps a per-reader card event counter in the high 16 bits of the event state:
    # a card removed and presented again between two polls still moves it.
    return (state >> 16) & 0xFFFF


def is_new_tap(previous: int, state: int) -> bool:
    """Whether a reader's event state (after ``previous``) is a card newly presented: one tap."""
    if not state & scard.SCARD_STATE_PRESENT or state & scard.SCARD_STATE_MUTE:
        return False
    return not previous & scard.SCARD_STATE_PRESENT or _counter(previous) != _counter(state)


class _Backoff:
    """Delays between reconnect attempts: poll interval, doubling, capped at MAX_BACKOFF."""

    def __init__(self, first: float) -> None:
        self.first = first
        self.delay = first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, MAX_BACKOFF)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class PcscReader:
    """Every PC/SC reader whose name matches ``pattern`` (an fnmatch glob; "*" is all readers)."""

    def __init__(self, pattern: str, hash_uid: UidHasher, poll_interval: float = 0.25) -> None:
        self.name = f"pcsc:{pattern}"
        self.pattern = pattern or "*"
        self.poll_interval = poll_interval
        self._hash_uid = hash_uid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_card: CardSink, on_reader: ReaderSink) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} is already started")
        # A fresh event per run: a monitor that outlived stop()'s join (stuck in a driver call)
        # must still see its own stop flag set and end, not resume next to the new one.
        self._stop = threading.Event()
        monitor = _Monitor(self, on_card, on_reader, self._stop)
        self._thread = threading.Thread(target=monitor.run, name=f"{self.name} monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # The monitor wakes at least every poll_interval; a card read in flight adds little.
            self._thread.join(timeout=max(1.0, 4 * self.poll_interval))
            self._thread = None

    def readers(self) -> list[str]:
        try:
            with _context() as hcontext:
                return self.matching(_list_readers(hcontext))
        except (DriverUnavailable, ReaderGone):
            return []

    def matching(self, names: list[str]) -> list[str]:
        return [name for name in names if fnmatchcase(name, self.pattern)]

    def make_read(self, reader: str, uid: bytes, atr: bytes) -> CardRead:
        return CardRead(reader, tech_from_atr(atr), self._hash_uid(uid), atr, None, None, time.time())


class _Monitor:
    """The reader's thread: one PC/SC context at a time, rebuilt whenever pcscd goes away."""

    def __init__(
        self, reader: PcscReader, on_card: CardSink, on_reader: ReaderSink, stopping: threading.Event
    ) -> None:
        self.reader = reader
        self.on_card = on_card
        self.on_reader = on_reader
        self.stopping = stopping
        self.states: dict[str, int] = {}  # reader name -> last event state we acted on
        self.pnp_state = scard.SCARD_STATE_UNAWARE
        self.backoff = _Backoff(reader.poll_interval)
        self.last_error: str | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with _context() as hcontext:
                    self.watch(hcontext)
            except DriverError as exc:
                self.lost(str(exc))
            except Exception as exc:  # a bug here must not silence the till's reader for good
                log.exception("PC/SC monitor failed")
                self.lost(f"internal error: {exc!r}")
            self.stopping.wait(self.backoff.next())
        self.forget_readers("reader stopped")

    def watch(self, hcontext: int) -> None:
        while not self.stopping.is_set():
            self.sync_readers(_list_readers(hcontext))
            self.backoff.reset()
            self.last_error = None
            for name, state, atr in self.wait_for_change(hcontext):
                self.on_state(hcontext, name, state, bytes(atr))

    def wait_for_change(self, hcontext: int) -> list[tuple[str, int, list[int]]]:
        """Reader states that changed within one poll interval (bounded, so stop() is prompt)."""
        query = [*self.states.items(), (PNP_NOTIFICATION, self.pnp_state)]
        timeout_ms = int(self.reader.poll_interval * 1000)
        code, changed = _raw("SCardGetStatusChange", scard.SCardGetStatusChange, hcontext, timeout_ms, query)
        if code == scard.SCARD_E_TIMEOUT:
            return []
        if code in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
            # A reader left between listing and waiting: the next listing drops it.
            self.stopping.wait(self.reader.poll_interval)
            return []
        if code != scard.SCARD_S_SUCCESS:
            raise error_for(code, "SCardGetStatusChange")
        for name, state, _atr in changed:
            if name == PNP_NOTIFICATION:
                self.pnp_state = state & ~scard.SCARD_STATE_CHANGED
        return [entry for entry in changed if entry[0] in self.states]

    def sync_readers(self, names: list[str]) -> None:
        present = self.reader.matching(names)
        for name in [name for name in self.states if name not in present]:
            del self.states[name]
            self.emit_reader(name, "removed", "reader unplugged")
        for name in [name for name in present if name not in self.states]:
            self.states[name] = scard.SCARD_STATE_UNAWARE  # returns at once with the real state
            self.emit_reader(name, "added", "PC/SC reader")

    def on_state(self, hcontext: int, name: str, state: int, atr: bytes) -> None:
        previous = self.states[name]
        self.states[name] = state & ~scard.SCARD_STATE_CHANGED
        if state & scard.SCARD_STATE_MUTE and not previous & scard.SCARD_STATE_MUTE:
            self.emit_reader(name, "error", "card does not answer (mute): present it again")
        if is_new_tap(previous, state):
            self.read(hcontext, name, atr)

    def read(self, hcontext: int, name: str, atr: bytes) -> None:
        # A lost pcscd shows here as a failed read; the next listing then raises and reconnects.
        try:
            uid = read_card_uid(hcontext, name)
        except CardGone as exc:
            self.emit_reader(name, "error", f"card removed during read: {exc}")
            return
        except DriverError as exc:
            self.emit_reader(name, "error", f"card read failed: {exc}")
            return
        self.report(name, uid, atr)

    def report(self, name: str, uid: bytes, atr: bytes) -> None:
        try:
            read = self.reader.make_read(name, uid, atr)
        except Exception as exc:  # the hasher belongs to the caller (a missing key, say)
            log.exception("hashing the UID failed")
            self.emit_reader(name, "error", f"card read failed: cannot hash the UID: {exc!r}")
            return
        self.emit_card(read)

    def lost(self, detail: str) -> None:
        self.forget_readers(detail)
        if detail != self.last_error:  # one event per outage, not one per retry
            self.last_error = detail
            self.emit_reader(self.reader.name, "error", detail)

    def forget_readers(self, detail: str) -> None:
        for name in list(self.states):
            del self.states[name]
            self.emit_reader(name, "removed", detail)

    def emit_card(self, read: CardRead) -> None:
        try:
            self.on_card(read)
        except Exception:  # the consumer's bug must not stop the reader
            log.exception("card sink failed")

    def emit_reader(self, reader: str, kind: str, detail: str) -> None:
        try:
            self.on_reader(ReaderEvent(reader, kind, detail, time.time()))
        except Exception:
            log.exception("reader sink failed")
