"""PC/SC readers through pcscd, with pyscard's low-level ``smartcard.scard`` API (the only module
that imports ``smartcard``).

One monitor thread per ``PcscReader`` owns one PC/SC context. It lists the readers matching the
glob, waits in ``SCardGetStatusChange`` for at most ``poll_interval`` (so ``stop()`` is prompt), and
when a card arrives it connects and reads:

    ATR          PC/SC part 3 storage-card ATRs name the chip (MIFARE Classic 1K/4K, Ultralight and
                 NTAG21x, FeliCa ...); "3B 8n 80 01 ..." is an ISO 14443-4 (ISO-DEP) card
    UID / IDm    GET DATA ``FF CA 00 00 00``; only its keyed hash leaves the driver
    Type 2 NDEF  Ultralight/NTAG21x: READ BINARY ``FF B0 00 <page> 10``, CC in page 3, TLVs from page 4
    Type 4 NDEF  ISO-DEP: SELECT the NDEF application D2760000850101, SELECT CC E1 03, READ it,
                 SELECT the NDEF file, READ BINARY its 2-byte length, then the message in MLe chunks

and reports one ``CardRead``. An NTAG 424 DNA's SUN URL is carried in ``CardRead.sun`` unverified:
the keys belong to the service (``terminal.credentials.verify_read``), not to a driver. A card held
on the reader is one tap: a new tap needs the card to leave (or pcscd's per-reader event counter to
move); with ``holdoff`` > 0 the same card presented again within that many seconds of leaving the
field is the same tap (a card wobbling at the edge of the field).

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
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from smartcard import scard

from drivers import ndef
from drivers.errors import CardGone, DriverError, DriverUnavailable, ProtocolError, ReaderGone
from drivers.holdoff import HoldOff
from drivers.sinks import deliver, reader_event
from terminal.backoff import Backoff
from terminal.model import CardRead, ReaderProblem
from terminal.ports import CardSink, ReaderSink, UidHasher

log = logging.getLogger(__name__)

GET_UID = bytes.fromhex("FFCA000000")  # PC/SC part 3 GET DATA: CLA FF, INS CA, P1 00 (UID), Le 00
SW_OK = b"\x90\x00"
# pcsc-lite's pseudo reader: its state changes when a reader is plugged or unplugged.
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
MAX_BACKOFF = 5.0

# PC/SC part 3 ATR of a contactless storage card: 3B 8F 80 01 80 4F 0C A0 00 00 03 06, then SS
# (the card's standard) and NN (the card name, 2 bytes); see PC/SC part 3 supplemental document.
_PART3_PREFIX = bytes.fromhex("3B8F8001804F0CA000000306")
_PART3_TECH = {0x03: "iso14443a", 0x07: "iso14443b", 0x0B: "iso15693", 0x11: "felica"}
_PART3_CHIP = {
    0x0001: "mifare_classic_1k",
    0x0002: "mifare_classic_4k",
    0x0003: "ultralight",  # readers report NTAG21x as Ultralight too: both are NFC Forum Type 2
    0x0026: "mifare_mini",
    0x0036: "mifare_plus",
    0x0037: "mifare_plus",
    0x0038: "mifare_plus",
    0x0039: "mifare_plus",
    0x003A: "ultralight_c",
    0x003B: "felica",
}
_TYPE2_CHIPS = {"ultralight", "ultralight_c"}
# ISO 14443-4 card (ISO-DEP: DESFire, NTAG 424 DNA, payment and ID cards): 3B 8n 80 01, then n
# historical bytes (from the ATS for type A, from ATQB for type B) and TCK.
_ISO_DEP_TD = bytes.fromhex("8001")  # TD1 80 (T=0 follows), TD2 01 (T=1)

# Type 4 Tag commands (NFC Forum T4T 2.0 over ISO 7816-4).
SELECT_NDEF_APP = bytes.fromhex("00A4040007D276000085010100")
SELECT_CC = bytes.fromhex("00A4000C02E103")
READ_CC = bytes.fromhex("00B000000F")
TYPE2_READ = 16  # READ BINARY on a Type 2 tag returns 4 pages
TYPE2_MAX_AREA = 2048  # bytes of TLV area we are ready to read (NTAG216: 868)
TYPE4_MAX_MESSAGE = 4096

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
    uid = command(transmit, GET_UID, "GET DATA (UID)")
    if not uid:
        raise ProtocolError("GET DATA (UID) returned an empty UID")
    return uid


@dataclass(frozen=True, slots=True)
class AtrInfo:
    tech: str  # radio technology: iso14443a, iso14443b, iso15693, felica
    chip: str  # what the card is, as far as the ATR says (see _PART3_CHIP), "iso_dep" or "unknown"
    tag_type: int | None  # the NFC Forum tag type whose NDEF the driver reads: 2, 4 or None


def parse_atr(atr: bytes) -> AtrInfo:
    """What a contactless card's ATR (as a PC/SC reader builds it) says about the card."""
    if atr.startswith(_PART3_PREFIX) and len(atr) >= len(_PART3_PREFIX) + 3:
        standard = atr[len(_PART3_PREFIX)]
        name = int.from_bytes(atr[len(_PART3_PREFIX) + 1 : len(_PART3_PREFIX) + 3], "big")
        chip = _PART3_CHIP.get(name, "unknown")
        return AtrInfo(_PART3_TECH.get(standard, "iso14443a"), chip, 2 if chip in _TYPE2_CHIPS else None)
    if len(atr) >= 5 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == _ISO_DEP_TD:
        # Type B cards put ATQB's 7 bytes and MBLI in the historical bytes: 8 of them.
        return AtrInfo("iso14443b" if atr[1] & 0x0F == 8 else "iso14443a", "iso_dep", 4)
    return AtrInfo("iso14443a", "unknown", None)


def tech_from_atr(atr: bytes) -> str:
    """Contactless technology named by a PC/SC part 3 ATR; ISO 14443 A unless the ATR says more."""
    return parse_atr(atr).tech


def command(transmit: Transmit, apdu: bytes, what: str) -> bytes:
    """Send one APDU; the response data on SW 90 00, else ProtocolError (CardGone on no answer)."""
    return response_data(transmit(apdu), what)


def response_data(response: bytes, what: str) -> bytes:
    if not response:
        # A present card always answers at least SW1 SW2; nothing at all means it left the field
        # (vpcd, for one, reports success with no data when its card disconnects mid-command).
        raise CardGone(f"no answer to {what}: card left the field")
    if len(response) < 2:
        raise ProtocolError(f"{what} answer too short: {response.hex().upper()}")
    if response[-2:] != SW_OK:
        raise ProtocolError(f"{what} refused: SW {response[-2:].hex().upper()}")
    return response[:-2]


def read_type2_ndef(transmit: Transmit) -> bytes | None:
    """The NDEF message of a Type 2 tag, or None when it holds none (not formatted, empty)."""
    first = command(transmit, bytes([0xFF, 0xB0, 0x00, 3, TYPE2_READ]), "READ BINARY page 3")
    cc = ndef.type2_cc(first[:4])
    if cc is None or not cc.readable:
        return None
    area, limit = first[4:], min(cc.data_size, TYPE2_MAX_AREA)
    while True:
        try:
            return ndef.type2_message(area, limit)
        except ndef.NeedMore as more:
            if more.size > limit or len(area) >= limit:
                raise ProtocolError("Type 2 TLV area ends inside a TLV") from more
        page = 4 + len(area) // 4
        area += command(transmit, bytes([0xFF, 0xB0, 0x00, page, TYPE2_READ]), f"READ BINARY page {page}")


def _read_binary(transmit: Transmit, offset: int, size: int) -> bytes:
    apdu = b"\x00\xb0" + offset.to_bytes(2, "big") + bytes([size & 0xFF])
    data = command(transmit, apdu, f"READ BINARY at {offset}")
    if not data:
        raise ProtocolError(f"READ BINARY at {offset} returned no data")
    return data


def read_type4_ndef(transmit: Transmit) -> bytes | None:
    """The NDEF message of a Type 4 tag, or None when it has no NDEF application or file."""
    response = transmit(SELECT_NDEF_APP)
    if len(response) >= 2 and response[-2:] != SW_OK:
        return None  # 6A 82, 6D 00 ...: an ISO-DEP card without NDEF (a DESFire used for something else)
    response_data(response, "SELECT NDEF application")
    command(transmit, SELECT_CC, "SELECT CC file")
    cc = ndef.type4_cc(command(transmit, READ_CC, "READ BINARY CC"))
    if not cc.readable:
        return None
    command(transmit, b"\x00\xa4\x00\x0c\x02" + cc.file_id, "SELECT NDEF file")
    length = int.from_bytes(_read_binary(transmit, 0, 2)[:2], "big")
    if length > min(cc.max_size - 2, TYPE4_MAX_MESSAGE):
        raise ProtocolError(f"NDEF length {length} exceeds the file size {cc.max_size}")
    chunk = max(1, min(cc.max_read, 0xFF))
    message = b""
    while len(message) < length:
        message += _read_binary(transmit, 2 + len(message), min(chunk, length - len(message)))
    return message[:length]


@dataclass(frozen=True, slots=True)
class CardData:
    uid: bytes
    atr: AtrInfo
    ndef: bytes | None


def read_card(transmit: Transmit, atr: bytes) -> CardData:
    """Everything the till wants from one card: its UID, then its NDEF message when it has one."""
    uid = read_uid(transmit)
    info = parse_atr(atr)
    message = None
    if info.tag_type == 2:
        message = read_type2_ndef(transmit)
    elif info.tag_type == 4:
        message = read_type4_ndef(transmit)
    return CardData(uid, info, message)


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


def read_card_on(hcontext: int, reader: str, atr: bytes) -> CardData:
    """Connect to the card on ``reader``, read it, and leave the card as it was."""
    hcard, protocol = _call(
        "SCardConnect",
        scard.SCardConnect,
        hcontext,
        reader,
        scard.SCARD_SHARE_SHARED,
        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
    )
    try:
        return read_card(lambda apdu: _transmit(hcard, protocol, apdu), atr)
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


class PcscReader:
    """Every PC/SC reader whose name matches ``pattern`` (an fnmatch glob; "*" is all readers)."""

    def __init__(self, pattern: str, hash_uid: UidHasher, poll_interval: float = 0.25, holdoff: float = 0.0) -> None:
        self.name = f"pcsc:{pattern}"
        self.pattern = pattern or "*"
        self.poll_interval = poll_interval
        self.holdoff = holdoff
        self._hash_uid = hash_uid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress = time.monotonic()
        """Monotonic time of the monitor's last turn (at least every poll interval while it runs)."""

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

    def make_read(self, reader: str, card: CardData, atr: bytes) -> CardRead:
        return CardRead(
            reader,
            card.atr.tech,
            self._hash_uid(card.uid),
            atr,
            card.ndef,
            ndef.sun_url(card.ndef),
            time.time(),
            chip=card.atr.chip,
        )


class _Monitor:
    """The reader's thread: one PC/SC context at a time, rebuilt whenever pcscd goes away."""

    def __init__(self, reader: PcscReader, on_card: CardSink, on_reader: ReaderSink, stopping: threading.Event) -> None:
        self.reader = reader
        self.on_card = on_card
        self.on_reader = on_reader
        self.stopping = stopping
        self.states: dict[str, int] = {}  # reader name -> last event state we acted on
        self.pnp_state = scard.SCARD_STATE_UNAWARE
        self.backoff = Backoff(reader.poll_interval, MAX_BACKOFF)
        self.last_error: str | None = None
        self.holdoff = HoldOff(reader.holdoff)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.reader.last_progress = time.monotonic()  # a reconnect attempt is progress too
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
            self.reader.last_progress = time.monotonic()
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
            self.emit_reader(name, "error", "card does not answer (mute): present it again", ReaderProblem.CARD_MUTE)
        if not state & scard.SCARD_STATE_PRESENT:
            self.holdoff.left(name, time.monotonic())
        if is_new_tap(previous, state):
            self.read(hcontext, name, atr)

    def read(self, hcontext: int, name: str, atr: bytes) -> None:
        # A lost pcscd shows here as a failed read; the next listing then raises and reconnects.
        try:
            card = read_card_on(hcontext, name, atr)
        except CardGone as exc:
            self.emit_reader(name, "error", f"card removed during read: {exc}", ReaderProblem.CARD_REMOVED)
            return
        except DriverError as exc:
            self.emit_reader(name, "error", f"card read failed: {exc}", ReaderProblem.CARD_READ_FAILED)
            return
        self.report(name, card, atr)

    def report(self, name: str, card: CardData, atr: bytes) -> None:
        try:
            read = self.reader.make_read(name, card, atr)
        except Exception as exc:  # the hasher belongs to the caller (a missing key, say)
            log.exception("hashing the UID failed")
            self.emit_reader(
                name, "error", f"card read failed: cannot hash the UID: {exc!r}", ReaderProblem.CARD_READ_FAILED
            )
            return
        if self.holdoff.is_new_tap(name, read.uid_hash, time.monotonic()):
            self.emit_card(read)
        else:
            log.debug("same card again on %s within the hold-off: not a new tap", name)

    def lost(self, detail: str) -> None:
        self.forget_readers(detail)
        if detail != self.last_error:  # one event per outage, not one per retry
            self.last_error = detail
            self.emit_reader(self.reader.name, "error", detail, ReaderProblem.READER_UNAVAILABLE)

    def forget_readers(self, detail: str) -> None:
        for name in list(self.states):
            del self.states[name]
            self.emit_reader(name, "removed", detail)

    def emit_card(self, read: CardRead) -> None:
        deliver(self.on_card, read, "card")

    def emit_reader(self, reader: str, kind: str, detail: str, code: str = "") -> None:
        reader_event(self.on_reader, reader, kind, detail, code)
