"""drivers.pcsc: through a real pcscd with the vpcd virtual reader and a virtual card, and byte by
byte with a scripted transmit (no pcscd)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from smartcard import scard

from drivers import open_reader, pcsc
from drivers.errors import CardGone, DriverError, DriverUnavailable, ProtocolError, ReaderGone
from drivers.pcsc import GET_UID, PcscReader, error_for, is_new_tap, read_uid, tech_from_atr
from terminal.credentials import card_uid_hash
from tests.drivers.script import Script
from tests.fixtures.pcsc import WAIT, CardFactory, Events, Pcscd
from tests.vcard import STORAGE_ATR
from tests.waiting import wait_until

KEY = b"tillpoint-test-card-hash-key-0001"
UID = bytes.fromhex("04A22B1C5D6E80")
OTHER_UID = bytes.fromhex("04112233445566")


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(KEY, uid)


@pytest.fixture
def events(pcscd: Pcscd) -> Iterator[Events]:
    """A started reader for the virtual reader only, opened through the driver registry."""
    seen = Events()
    reader = open_reader(f"pcsc:{pcscd.reader}", hash_uid)
    assert isinstance(reader, PcscReader)
    reader.poll_interval = 0.1
    reader.start(seen.cards.put, seen.on_reader)
    added = seen.reader_event("added")  # the monitor watches the reader before the test acts
    assert added.reader == pcscd.reader
    yield seen
    reader.stop()


# --- through pcscd + vpcd ---------------------------------------------------------------------


def test_a_tap_is_one_card_read_with_the_keyed_uid_hash(
    pcscd: Pcscd, events: Events, virtual_card: CardFactory
) -> None:
    card = virtual_card(uid=UID)
    card.insert()
    read = events.card()
    assert read.reader == pcscd.reader
    assert read.uid_hash == hash_uid(UID) and UID.hex() not in read.uid_hash
    assert (read.tech, read.atr, read.ndef, read.sun) == ("iso14443a", STORAGE_ATR, None, None)
    assert abs(read.at - time.time()) < WAIT
    assert card.apdus == [GET_UID]  # FF CA 00 00 00, sent once
    assert [e.kind for e in events.history] == ["added"]


def test_a_card_held_on_the_reader_is_one_tap(events: Events, virtual_card: CardFactory) -> None:
    card = virtual_card(uid=UID)
    card.insert()
    events.card()
    events.no_card(within=1.2)  # three pcscd polling rounds with the card still present
    assert card.apdus == [GET_UID]
    assert card.inserted


def test_removed_and_presented_again_is_a_second_tap(pcscd: Pcscd, events: Events, virtual_card: CardFactory) -> None:
    card = virtual_card(uid=UID)
    card.insert()
    first = events.card()
    card.remove()
    assert pcscd.wait_card(present=False), "pcscd never saw the card leave"
    other = virtual_card(uid=OTHER_UID)
    other.insert()
    second = events.card()
    assert (first.uid_hash, second.uid_hash) == (hash_uid(UID), hash_uid(OTHER_UID))
    other.remove()
    assert pcscd.wait_card(present=False)
    card.insert()
    assert events.card().uid_hash == hash_uid(UID)
    assert card.apdus == [GET_UID, GET_UID]


def test_a_card_pulled_mid_read_is_an_error_and_no_read(
    pcscd: Pcscd, events: Events, virtual_card: CardFactory
) -> None:
    card = virtual_card(uid=UID, pull_on=GET_UID)  # closes its socket instead of answering
    card.insert()
    error = events.reader_event("error")
    assert error.reader == pcscd.reader
    assert "card removed during read" in error.detail and error.code == "card_removed"  # the POS reads the code
    assert card.pulled.is_set() and card.apdus == [GET_UID]
    events.no_card(within=0.5)


def test_a_card_refusing_get_data_is_an_error_and_no_read(events: Events, virtual_card: CardFactory) -> None:
    card = virtual_card(uid=UID, handler=lambda apdu: bytes.fromhex("6A81") if apdu == GET_UID else None)
    card.insert()
    error = events.reader_event("error")
    assert "card read failed" in error.detail and "6A81" in error.detail
    events.no_card(within=0.5)


def test_pcscd_restart_removes_and_adds_the_reader_and_taps_still_work(
    pcscd: Pcscd, events: Events, virtual_card: CardFactory
) -> None:
    pcscd.restart()
    events.reader_event("removed")
    events.reader_event("added", timeout=10)  # first reconnect attempt is one poll interval later
    kinds = [e.kind for e in events.history if e.reader == pcscd.reader]
    assert kinds == ["added", "removed", "added"]
    card = virtual_card(uid=UID)
    card.insert()
    assert events.card().uid_hash == hash_uid(UID)


def test_no_pcscd_is_an_error_event_then_the_reader_recovers(
    pcscd: Pcscd, virtual_card: CardFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[float] = []  # every PC/SC context the driver tried to open: its reconnect attempts
    real_context = pcsc._context

    def counting() -> Any:
        attempts.append(time.monotonic())
        return real_context()

    monkeypatch.setattr(pcsc, "_context", counting)
    seen = Events()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.1)
    pcscd.stop()
    try:
        assert reader.readers() == []
        reader.start(seen.cards.put, seen.on_reader)
        error = seen.reader_event("error")
        assert error.reader == f"pcsc:{pcscd.reader}" and "pcscd" in error.detail
        assert error.code == "reader_unavailable"
        tried = len(attempts)
        wait_until(lambda: len(attempts) >= tried + 3, 10, "a few reconnect attempts while pcscd is down")
        pcscd.start()
        assert seen.reader_event("added", timeout=10).reader == pcscd.reader
        card = virtual_card(uid=UID)
        card.insert()
        assert seen.card().uid_hash == hash_uid(UID)
        assert [e.kind for e in seen.history].count("error") == 1  # one event per outage, not per retry
    finally:
        reader.stop()
        if pcscd.process is None:
            pcscd.start()


def test_readers_lists_only_names_matching_the_glob(pcscd: Pcscd) -> None:
    assert PcscReader("No Such Reader*", hash_uid).readers() == []
    assert PcscReader("Virtual PCD * 00", hash_uid).readers() == [pcscd.reader]
    assert pcscd.reader in PcscReader("*", hash_uid).readers()


def test_stop_ends_the_monitor_thread(pcscd: Pcscd) -> None:
    seen = Events()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.25)
    reader.start(seen.cards.put, seen.on_reader)
    seen.reader_event("added")
    reader.stop()
    assert not [t for t in threading.enumerate() if t.name == f"{reader.name} monitor"]
    assert seen.history[-1].kind == "removed"


def _state(*flags: int, counter: int = 0) -> int:
    state = counter << 16  # pcsc-lite's card event counter lives in the high 16 bits
    for flag in flags:
        state |= flag
    return state


EMPTY, PRESENT, MUTE, CHANGED = (
    scard.SCARD_STATE_EMPTY,
    scard.SCARD_STATE_PRESENT,
    scard.SCARD_STATE_MUTE,
    scard.SCARD_STATE_CHANGED,
)


@pytest.mark.parametrize(
    ("previous", "state", "tap"),
    [
        (scard.SCARD_STATE_UNAWARE, _state(PRESENT, CHANGED, counter=1), True),  # first sight, card on it
        (_state(EMPTY, counter=2), _state(PRESENT, CHANGED, counter=3), True),  # presented
        (_state(PRESENT, counter=3), _state(PRESENT, CHANGED, counter=3), False),  # still held
        (_state(PRESENT, counter=3), _state(PRESENT, scard.SCARD_STATE_INUSE, counter=3), False),  # in use
        (_state(PRESENT, counter=3), _state(PRESENT, CHANGED, counter=5), True),  # off and on between polls
        (_state(PRESENT, counter=3), _state(EMPTY, CHANGED, counter=4), False),  # removed
        (_state(EMPTY, counter=4), _state(PRESENT, MUTE, CHANGED, counter=5), False),  # mute: no ATR
    ],
    ids=["first-sight", "presented", "held", "in-use", "re-presented", "removed", "mute"],
)
def test_is_new_tap(previous: int, state: int, tap: bool) -> None:
    assert is_new_tap(previous, state) is tap


# --- byte level, no pcscd -----------------------------------------------------------------------


def test_read_uid_sends_get_data_and_returns_the_uid() -> None:
    script = Script(
        (
            # GET DATA: CLA FF (PC/SC pseudo-APDU for the reader), INS CA, P1 00 (UID), P2 00, Le 00 (all)
            bytes.fromhex("FF CA 00 00 00"),
            # 7-byte UID 04 A2 2B 1C 5D 6E 80, then SW1 SW2 90 00 (success)
            bytes.fromhex("04 A2 2B 1C 5D 6E 80 90 00"),
        )
    )
    assert read_uid(script) == UID
    assert script.finished() and script.sent == [bytes([0xFF, 0xCA, 0x00, 0x00, 0x00])]


def test_read_uid_of_a_4_byte_uid() -> None:
    script = Script(
        (
            bytes.fromhex("FF CA 00 00 00"),  # GET DATA, UID
            bytes.fromhex("DE AD BE EF 90 00"),  # 4-byte NUID DE AD BE EF, SW 90 00
        )
    )
    assert read_uid(script) == bytes.fromhex("DEADBEEF")


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (bytes.fromhex("6A 81"), ProtocolError, "6A81"),  # SW 6A 81: function not supported
        (bytes.fromhex("63 00"), ProtocolError, "6300"),  # SW 63 00: reader says the read failed
        (bytes.fromhex("90 00"), ProtocolError, "empty UID"),  # success with no UID bytes
        (bytes.fromhex("90"), ProtocolError, "too short"),  # one byte: not even SW1 SW2
        (b"", CardGone, "left the field"),  # no answer at all: the card went away
    ],
)
def test_read_uid_rejects_unusable_answers(response: bytes, error: type[DriverError], text: str) -> None:
    script = Script((bytes.fromhex("FF CA 00 00 00"), response))  # GET DATA, UID
    with pytest.raises(error, match=text):
        read_uid(script)
    assert script.finished()


def test_read_uid_lets_transport_errors_through() -> None:
    def transmit(apdu: bytes) -> bytes:
        assert apdu == bytes.fromhex("FF CA 00 00 00")  # GET DATA, UID
        raise error_for(scard.SCARD_W_REMOVED_CARD, "SCardTransmit")

    with pytest.raises(CardGone, match="SCARD_W_REMOVED_CARD"):
        read_uid(transmit)


@pytest.mark.parametrize(
    ("atr", "tech"),
    [
        (STORAGE_ATR, "iso14443a"),  # part 3, SS 03: ISO 14443 A part 3 (MIFARE Classic 1K)
        (bytes.fromhex("3B8F8001804F0CA00000030611003B0000000042"), "felica"),  # SS 11: FeliCa
        (bytes.fromhex("3B8F8001804F0CA0000003060700000000000068"), "iso14443b"),  # SS 07: ISO 14443 B
        (bytes.fromhex("3B8180018080"), "iso14443a"),  # ISO 14443-4 card, no part 3 header
    ],
)
def test_tech_from_atr(atr: bytes, tech: str) -> None:
    assert tech_from_atr(atr) == tech


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (scard.SCARD_E_NO_SERVICE, DriverUnavailable),
        (scard.SCARD_E_SHARING_VIOLATION, DriverUnavailable),
        (scard.SCARD_F_COMM_ERROR, ReaderGone),
        (scard.SCARD_E_SERVICE_STOPPED, ReaderGone),
        (scard.SCARD_E_READER_UNAVAILABLE, ReaderGone),
        (scard.SCARD_E_UNKNOWN_READER, ReaderGone),
        (scard.SCARD_W_REMOVED_CARD, CardGone),
        (scard.SCARD_E_NO_SMARTCARD, CardGone),
        (scard.SCARD_E_NOT_TRANSACTED, CardGone),
        (scard.SCARD_W_UNRESPONSIVE_CARD, CardGone),
        (scard.SCARD_E_PROTO_MISMATCH, ProtocolError),
        (scard.SCARD_W_UNSUPPORTED_CARD, ProtocolError),
    ],
)
def test_scard_codes_map_to_driver_errors(code: int, error: type[DriverError]) -> None:
    mapped = error_for(code, "SCardSomething")
    assert type(mapped) is error
    assert str(mapped).startswith("SCardSomething: ") and f"0x{code:08X}" in str(mapped)


def test_every_scard_error_code_becomes_a_driver_error_naming_it() -> None:
    names = [n for n in dir(scard) if n.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_", "SCARD_P_"))]
    assert len(names) > 40
    for name in names:
        mapped = error_for(getattr(scard, name), "call")
        assert isinstance(mapped, DriverError)
        assert "SCARD_" in str(mapped)
