"""drivers.nfcpy_reader through nfcpy's real ``udp:`` software reader, with cards answering on the
other side (tests/fixtures/nfc.py): nfcpy's own FeliCa Type 3 emulation (plain and Lite-S) and an
ISO-DEP target answered frame by frame in listen mode."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import nfcpy_reader, open_reader
from drivers.errors import DriverUnavailable
from drivers.holdoff import HoldOff
from drivers.ndef import first_uri
from drivers.nfcpy_reader import NfcpyReader, busy_message, open_error, usb_claimant
from terminal.credentials import CardProof, Trust, card_uid_hash, lite_s_card_key, trust_of, verify_read
from tests.fixtures.nfc import FelicaCard, IsoDepCard, free_udp_port
from tests.fixtures.pcsc import Events
from tests.vcard import Ntag424, Type4Tag, uri_message
from tests.waiting import wait_until

KEY = b"tillpoint-test-card-hash-key-0001"
MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
IDM = bytes.fromhex("012E4CDE33A85B10")
UID = bytes.fromhex("04A1B2C3D4E580")
URL = "https://tillpoint.example/m/4711"
LEFT_FIELD = 10.0  # bound: nfcpy over udp notices a FeliCa card gone within ~1 s (presence check)
WAIT = 8.0  # a FeliCa sense over udp waits up to 1 s per technology when nothing answers


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(KEY, uid)


class SeenLeaving(HoldOff):
    """The reader's debounce, counting the times the reader saw a card leave (nfcpy's on-release)."""

    released = 0
    lock = threading.Lock()

    def left(self, reader: str, at: float) -> None:
        with SeenLeaving.lock:
            SeenLeaving.released += 1
        super().left(reader, at)


class Bench:
    """One udp port: a reader on it (started on demand) and the cards the test taps."""

    def __init__(self) -> None:
        SeenLeaving.released = 0
        self.port = free_udp_port()
        self.events = Events()
        self.reader: NfcpyReader | None = None
        self.cards: list[FelicaCard | IsoDepCard] = []

    def start(self, targets: list[str], **options: object) -> NfcpyReader:
        reader = open_reader(f"nfcpy:udp:127.0.0.1:{self.port}", hash_uid, **options)
        assert isinstance(reader, NfcpyReader)
        reader.targets = targets
        reader.start(self.events.cards.put, self.events.on_reader)
        self.events.reader_event("added")
        self.reader = reader
        return reader

    def lift(self, card: FelicaCard | IsoDepCard) -> None:
        """Take the card away and wait for the reader's presence check to see it gone: a card
        back before that never left, for nfcpy as for a real reader."""
        before = SeenLeaving.released
        card.lift()
        wait_until(lambda: SeenLeaving.released > before, LEFT_FIELD, "the reader to see the card leave")

    def card(self, card: FelicaCard | IsoDepCard) -> FelicaCard | IsoDepCard:
        self.cards.append(card)
        return card

    def close(self) -> None:
        for card in self.cards:
            card.lift()
        if self.reader is not None:
            self.reader.stop()
        errors = [card.error for card in self.cards if card.error is not None]
        assert not errors, f"a card's thread failed: {errors}"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    monkeypatch.setattr(nfcpy_reader, "HoldOff", SeenLeaving)
    made = Bench()
    yield made
    made.close()


def test_a_felica_card_is_read_by_idm_with_its_ndef(bench: Bench) -> None:
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL)))
    card.tap()
    bench.start(["212F"])
    read = bench.events.card(WAIT)
    assert read.reader == f"nfcpy:udp:127.0.0.1:{bench.port}"
    assert (read.tech, read.chip, read.uid_hash) == ("felica", "felica", hash_uid(IDM))
    assert first_uri(read.ndef) == URL and read.sun is None and not read.lite_s_mac
    assert trust_of(read) is Trust.UID_ONLY


@pytest.mark.slow
def test_a_card_held_is_one_tap_and_lifted_and_tapped_again_is_a_new_one(bench: Bench) -> None:
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL)))
    card.tap()
    bench.start(["212F"])
    bench.events.card(WAIT)
    bench.events.no_card(within=1.0)  # presence checks with the card still there
    bench.lift(card)
    card.tap()
    assert bench.events.card(WAIT).uid_hash == hash_uid(IDM)


@pytest.mark.slow
def test_holdoff_makes_a_quick_return_the_same_tap(bench: Bench) -> None:
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL)))
    card.tap()
    bench.start(["212F"], holdoff=30.0)
    bench.events.card(WAIT)
    bench.lift(card)
    card.tap()
    bench.events.no_card(within=2.0)
    bench.lift(card)
    other = bench.card(FelicaCard(bench.port, bytes.fromhex("0101010101010101"), uri_message(URL)))
    other.tap()
    assert bench.events.card(WAIT).uid_hash == hash_uid(bytes.fromhex("0101010101010101"))


def test_a_felica_lite_s_with_its_diversified_key_is_a_mac_card(bench: Bench) -> None:
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL), lite_s_key=lite_s_card_key(MASTER, IDM)))
    card.tap()
    bench.start(["212F"], felica_master_key=MASTER)
    read = bench.events.card(WAIT)
    assert (read.chip, read.lite_s_mac) == ("felica_lite_s", True)
    assert first_uri(read.ndef) == URL  # read with MAC after mutual authentication
    assert verify_read(read, None, hash_uid) == CardProof(Trust.MAC)
    assert isinstance(card, FelicaCard) and card.blocks[0x92][0] == 1  # the card saw ext_auth = 1
    assert card.blocks[0x90][:3] == b"\x01\x00\x00"  # one write with MAC (WCNT 1)


def test_a_lite_s_keyed_otherwise_is_only_identified(bench: Bench) -> None:
    clone_key = lite_s_card_key(bytes(16), IDM)  # a card from another issuer, or a clone
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL), lite_s_key=clone_key))
    card.tap()
    bench.start(["212F"], felica_master_key=MASTER)
    read = bench.events.card(WAIT)
    assert (read.chip, read.lite_s_mac, read.uid_hash) == ("felica_lite_s", False, hash_uid(IDM))
    assert trust_of(read) is Trust.UID_ONLY


def test_a_lite_s_without_a_configured_key_is_only_identified(bench: Bench) -> None:
    card = bench.card(FelicaCard(bench.port, IDM, uri_message(URL), lite_s_key=lite_s_card_key(MASTER, IDM)))
    card.tap()
    bench.start(["212F"])
    read = bench.events.card(WAIT)
    assert read.lite_s_mac is False and first_uri(read.ndef) == URL


NDEF_APDUS = [
    bytes.fromhex("00A4040007D276000085010100"),  # SELECT NDEF application 2.0, Le 00
    bytes.fromhex("00A4000C02E103"),  # SELECT CC file E1 03
    bytes.fromhex("00B000000F"),  # READ BINARY: CCLEN (nfcpy asks up to 15 bytes)
]


def test_an_iso_dep_type4_target_answered_in_listen_mode(bench: Bench) -> None:
    message = uri_message(URL)
    card = bench.card(IsoDepCard(bench.port, UID, Type4Tag(message)))
    card.tap()
    bench.start(["106A"])
    read = bench.events.card(WAIT)
    assert (read.tech, read.chip, read.uid_hash, read.ndef) == ("iso14443a", "iso_dep", hash_uid(UID), message)
    assert isinstance(card, IsoDepCard)
    assert card.frames[0][0] == 0xE0  # RATS first, then ISO-DEP I-blocks
    assert card.apdus[0] == NDEF_APDUS[0] and card.apdus[1] == NDEF_APDUS[1]
    assert card.apdus[-1][:2] == b"\x00\xb0"  # the message itself comes last, by READ BINARY


def test_an_ntag424_through_nfcpy_gives_a_verifiable_sun_read(bench: Bench) -> None:
    tag = Ntag424(UID, MASTER)
    card = bench.card(IsoDepCard(bench.port, UID, lambda apdu: tag(apdu) or b"\x6d\x00"))
    card.tap()
    bench.start(["106A"])
    read = bench.events.card(WAIT)
    assert read.sun is not None and "picc_data=" in read.sun
    assert verify_read(read, MASTER, hash_uid) == CardProof(Trust.SUN, 1)


def test_a_card_pulled_mid_read_is_an_error_and_no_read(bench: Bench) -> None:
    card = bench.card(IsoDepCard(bench.port, UID, Type4Tag(uri_message(URL)), pull_after=2))
    card.tap()
    bench.start(["106A"])
    error = bench.events.reader_event("error", WAIT)
    assert "card removed during read" in error.detail and error.code == "card_removed"
    bench.events.no_card(within=1.0)


def test_a_card_whose_session_broke_off_but_stayed_on_the_reader_is_read_at_its_next_activation(bench: Bench) -> None:
    """As when the reader's thread was late on a busy machine: the card stopped waiting mid-read, and is still there."""
    card = bench.card(IsoDepCard(bench.port, UID, Type4Tag(uri_message(URL)), pull_after=2, stays=True))
    card.tap()
    bench.start(["106A"])
    error = bench.events.reader_event("error", WAIT)
    assert "card removed during read" in error.detail and error.code == "card_removed"
    read = bench.events.card(WAIT)
    assert first_uri(read.ndef) == URL and card.frames.count(card.frames[0]) >= 2  # RATS again: activated anew


def test_no_device_is_an_error_event_naming_the_path() -> None:
    events = Events()
    reader = NfcpyReader("usb:054c:06c3", hash_uid)
    reader.start(events.cards.put, events.on_reader)
    try:
        error = events.reader_event("error")
        assert error.reader == "nfcpy:usb:054c:06c3" and "usb:054c:06c3" in error.detail
        assert reader.readers() == []
    finally:
        reader.stop()


# --- who holds the device: sysfs and errno, no hardware -------------------------------------------


def _usb_device(root: Path, name: str, vendor: str, product: str, driver: str | None) -> None:
    device = root / name
    device.mkdir(parents=True)
    (device / "idVendor").write_text(vendor + "\n")
    (device / "idProduct").write_text(product + "\n")
    interface = root / f"{name}:1.0"
    interface.mkdir()
    if driver is not None:
        target = root / "drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        (interface / "driver").symlink_to(target)


def test_usb_claimant_names_the_bound_driver(tmp_path: Path) -> None:
    _usb_device(tmp_path, "1-1", "054c", "06c3", "port100")  # RC-S380 held by the kernel NFC stack
    _usb_device(tmp_path, "1-2", "072f", "2200", "usbfs")  # ACR122U held by pcscd through libusb
    _usb_device(tmp_path, "1-3", "04e6", "5591", None)  # free
    assert usb_claimant(0x054C, 0x06C3, tmp_path) == "port100"
    assert usb_claimant(0x072F, 0x2200, tmp_path) == "usbfs"
    assert usb_claimant(0x04E6, 0x5591, tmp_path) is None
    assert usb_claimant(0x1234, 0x5678, tmp_path) is None


def test_a_device_held_by_a_kernel_driver_names_it_and_the_fix(tmp_path: Path) -> None:
    _usb_device(tmp_path, "1-1", "054c", "06c3", "port100")
    for code in (errno.EBUSY, errno.ENODEV):  # nfcpy says ENODEV when the interface is taken
        error = open_error("usb:054c:06c3", OSError(code, "x"), tmp_path)
        assert isinstance(error, DriverUnavailable)
        assert str(error).startswith("nfcpy usb:054c:06c3: device busy/claimed by kernel driver port100: fix: ")
        assert "modprobe -r port100" in str(error) and "tillpoint-nfc-blacklist.conf" in str(error)


def test_a_device_held_by_pcscd_says_so(tmp_path: Path) -> None:
    _usb_device(tmp_path, "1-2", "072f", "2200", "usbfs")
    error = open_error("usb:072f:2200", OSError(errno.EBUSY, "busy"), tmp_path)
    assert "device busy/claimed by pcscd or another program using libusb" in str(error)
    assert "'pcsc:'" in str(error)
    assert busy_message("usb", "pn533_usb").endswith("so it stays unloaded")


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.EACCES, "60-tillpoint-readers.rules"),
        (errno.ENODEV, "no reader found"),
        (errno.EIO, "cannot open the reader"),
    ],
)
def test_other_open_errors(tmp_path: Path, code: int, text: str) -> None:
    assert text in str(open_error("usb:054c:06c3", OSError(code, "x"), tmp_path))


def test_open_reader_knows_nfcpy() -> None:
    reader = open_reader("nfcpy:udp:127.0.0.1:1", hash_uid, holdoff=0.5, felica_master_key=MASTER)
    assert isinstance(reader, NfcpyReader)
    assert (reader.name, reader.holdoff) == ("nfcpy:udp:127.0.0.1:1", 0.5)


def test_the_blacklist_and_udev_rules_cover_the_readers() -> None:
    root = Path(__file__).resolve().parents[2] / "systemd"
    blacklist = (root / "tillpoint-nfc-blacklist.conf").read_text()
    from drivers.nfcpy_reader import KERNEL_NFC_DRIVERS

    listed = {line.split()[1] for line in blacklist.splitlines() if line.startswith("blacklist ")}
    assert listed >= KERNEL_NFC_DRIVERS
    rules = (root / "60-tillpoint-readers.rules").read_text()
    assert 'ATTR{idVendor}=="054c", ATTR{idProduct}=="06c3", MODE="0660", GROUP="tillpoint"' in rules
