"""drivers.pcsc reading what is on the card: ATRs, Type 2 and Type 4 NDEF, NTAG 424 DNA SUN, several
readers, debounce. Through a real pcscd with vpcd and the virtual cards of tests/vcard.py, and byte
by byte with a scripted transmit."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import ndef as ndef_codec
from drivers.errors import CardGone, ProtocolError
from drivers.pcsc import (
    GET_UID,
    PcscReader,
    parse_atr,
    read_card,
    read_type2_ndef,
    read_type4_ndef,
)
from terminal.credentials import CardProof, ForgedCard, Trust, card_uid_hash, verify_read
from terminal.errors import Code, Rejected
from terminal.model import CardRead
from terminal.store import Store
from terminal.store.counters import bump_counter
from tests.drivers.script import Script
from tests.fixtures.pcsc import CardFactory, Events, Pcscd
from tests.vcard import (
    ISO_DEP_ATR,
    STORAGE_ATR,
    ULTRALIGHT_ATR,
    Ntag424,
    Type2Tag,
    Type4Tag,
    part3_atr,
    type2_memory,
    uri_message,
)

KEY = b"tillpoint-test-card-hash-key-0001"
MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
UID = bytes.fromhex("04A22B1C5D6E80")
URL = "https://tillpoint.example/m/4711"
SECOND_SLOT = "Virtual PCD 00 01"  # vpcd's second slot: its card connects to port 35964


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(KEY, uid)


def read_binary_t2(page: int) -> bytes:
    return bytes([0xFF, 0xB0, 0x00, page, 0x10])


@pytest.fixture
def events(pcscd: Pcscd) -> Iterator[Events]:
    seen = Events()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.1)
    reader.start(seen.cards.put, seen.on_reader)
    seen.reader_event("added")
    yield seen
    reader.stop()


# --- through pcscd + vpcd ---------------------------------------------------------------------


def test_a_uid_only_card_reads_no_ndef(events: Events, virtual_card: CardFactory) -> None:
    card = virtual_card(uid=UID, atr=STORAGE_ATR, insert=True)  # MIFARE Classic 1K: no NDEF read
    read = events.card()
    assert (read.chip, read.tech, read.ndef, read.sun) == ("mifare_classic_1k", "iso14443a", None, None)
    assert card.apdus == [GET_UID]


def test_an_ntag21x_with_an_ndef_url(events: Events, virtual_card: CardFactory) -> None:
    message = uri_message(URL)  # 26 bytes: the TLV ends in page 11
    card = virtual_card(uid=UID, atr=ULTRALIGHT_ATR, handler=Type2Tag(type2_memory(message)), insert=True)
    read = events.card()
    assert read.uid_hash == hash_uid(UID) and read.chip == "ultralight"
    assert read.ndef == message and ndef_codec.first_uri(read.ndef) == URL and read.sun is None
    assert card.apdus == [GET_UID, read_binary_t2(3), read_binary_t2(7), read_binary_t2(11)]


def test_a_type4_card_with_ndef(events: Events, virtual_card: CardFactory) -> None:
    message = uri_message(URL + "/" + "x" * 120)  # 150 bytes: three READ BINARY of at most MLe 0x3B
    card = virtual_card(uid=UID, atr=ISO_DEP_ATR, handler=Type4Tag(message), insert=True)
    read = events.card()
    assert (read.chip, read.ndef) == ("iso_dep", message)
    assert card.apdus == [
        GET_UID,
        bytes.fromhex("00A4040007D276000085010100"),
        bytes.fromhex("00A4000C02E103"),
        bytes.fromhex("00B000000F"),
        bytes.fromhex("00A4000C02E104"),
        bytes.fromhex("00B0000002"),
        bytes.fromhex("00B000023B"),
        bytes.fromhex("00B0003D3B"),
        bytes.fromhex("00B00078") + bytes([len(message) - 2 * 0x3B]),
    ]


def test_an_iso_dep_card_without_ndef_is_read_by_uid(events: Events, virtual_card: CardFactory) -> None:
    card = virtual_card(uid=UID, atr=ISO_DEP_ATR, insert=True)  # answers 6D 00 to SELECT
    read = events.card()
    assert (read.chip, read.ndef) == ("iso_dep", None)
    assert card.apdus == [GET_UID, bytes.fromhex("00A4040007D276000085010100")]


@pytest.fixture
def till_db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "terminal.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def _spend(conn: sqlite3.Connection, read: CardRead) -> CardProof:
    """What the service does with a tap before a payment: verify, then raise the counter in the
    sale's transaction."""
    proof = verify_read(read, MASTER, hash_uid)
    with conn:
        assert proof.counter is not None
        bump_counter(conn, read.uid_hash, proof.counter)
    return proof


def test_an_ntag424_sun_card_verifies_and_its_counter_rises(
    pcscd: Pcscd, events: Events, virtual_card: CardFactory, till_db: sqlite3.Connection
) -> None:
    tag = Ntag424(UID, MASTER)
    card = virtual_card(uid=UID, atr=ISO_DEP_ATR, handler=tag, insert=True)
    first = events.card()
    assert first.sun is not None and first.sun.startswith("https://tillpoint.example/c?picc_data=")
    assert _spend(till_db, first) == CardProof(Trust.SUN, 1)
    card.remove()
    assert pcscd.wait_card(present=False)
    card.insert()
    second = events.card()
    assert second.sun != first.sun
    assert _spend(till_db, second) == CardProof(Trust.SUN, 2)


def test_a_replayed_sun_message_is_rejected(
    pcscd: Pcscd, events: Events, virtual_card: CardFactory, till_db: sqlite3.Connection
) -> None:
    genuine = virtual_card(uid=UID, atr=ISO_DEP_ATR, handler=Ntag424(UID, MASTER), insert=True)
    recorded = events.card()
    _spend(till_db, recorded)
    genuine.remove()
    assert pcscd.wait_card(present=False)
    # A clone with the same UID replaying the NDEF message it sniffed: valid MAC, old counter.
    assert recorded.ndef is not None
    virtual_card(uid=UID, atr=ISO_DEP_ATR, handler=Type4Tag(recorded.ndef), insert=True)
    replay = events.card()
    assert replay.sun == recorded.sun
    with pytest.raises(Rejected) as caught:
        _spend(till_db, replay)
    assert caught.value.code is Code.REPLAYED_CARD


def test_a_tampered_sun_message_is_rejected(events: Events, virtual_card: CardFactory) -> None:
    tag = Ntag424(UID, MASTER)
    url = tag.ndef_url()
    tampered = url.replace("cmac=", "cmac=0")[:-1]  # shift the MAC by one hex digit
    virtual_card(uid=UID, atr=ISO_DEP_ATR, handler=Type4Tag(uri_message(tampered)), insert=True)
    read = events.card()
    with pytest.raises(ForgedCard) as caught:
        verify_read(read, MASTER, hash_uid)
    assert caught.value.code is Code.FORGED_CARD


def test_a_card_pulled_during_the_ndef_read(pcscd: Pcscd, events: Events, virtual_card: CardFactory) -> None:
    message = uri_message(URL)
    card = virtual_card(uid=UID, atr=ULTRALIGHT_ATR, handler=Type2Tag(type2_memory(message)), pull_on=read_binary_t2(7))
    card.insert()
    error = events.reader_event("error")
    assert error.reader == pcscd.reader and "card removed during read" in error.detail
    assert card.apdus == [GET_UID, read_binary_t2(3), read_binary_t2(7)]
    events.no_card(within=0.5)


def test_two_readers_at_once(pcscd: Pcscd, virtual_card: CardFactory) -> None:
    seen = Events()
    reader = PcscReader("Virtual PCD*", hash_uid, poll_interval=0.1)
    reader.start(seen.cards.put, seen.on_reader)
    try:
        added = {seen.reader_event("added").reader, seen.reader_event("added").reader}
        assert added == {pcscd.reader, SECOND_SLOT}
        other = bytes.fromhex("04010203040506")
        slot2 = virtual_card(uid=other, port=pcscd.card_port + 1, insert=True)
        assert seen.card().reader == SECOND_SLOT
        virtual_card(uid=UID, insert=True)
        read = seen.card()
        assert (read.reader, read.uid_hash) == (pcscd.reader, hash_uid(UID))
        slot2.remove()
    finally:
        reader.stop()


def test_the_reader_vanishes_and_comes_back(pcscd: Pcscd, virtual_card: CardFactory) -> None:
    seen = Events()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.1)
    reader.start(seen.cards.put, seen.on_reader)
    try:
        seen.reader_event("added")
        pcscd.stop()  # pcscd gone: every reader vanishes
        assert seen.reader_event("removed").reader == pcscd.reader
        pcscd.start()
        assert seen.reader_event("added", timeout=10).reader == pcscd.reader
        message = uri_message(URL)
        virtual_card(uid=UID, atr=ULTRALIGHT_ATR, handler=Type2Tag(type2_memory(message)), insert=True)
        assert seen.card().ndef == message
    finally:
        reader.stop()
        if pcscd.process is None:
            pcscd.start()


def test_holdoff_makes_a_quick_lift_and_return_one_tap(pcscd: Pcscd, virtual_card: CardFactory) -> None:
    seen = Events()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.1, holdoff=30.0)
    reader.start(seen.cards.put, seen.on_reader)
    try:
        seen.reader_event("added")
        card = virtual_card(uid=UID, insert=True)
        seen.card()
        card.remove()
        assert pcscd.wait_card(present=False)
        card.insert()
        assert card.wait_for_apdu(2)  # read again by the driver, but the same tap
        seen.no_card(within=0.5)
        card.remove()
        assert pcscd.wait_card(present=False)
        virtual_card(uid=bytes.fromhex("04999999999999"), insert=True)  # another card: a new tap
        assert seen.card().uid_hash == hash_uid(bytes.fromhex("04999999999999"))
    finally:
        reader.stop()


# --- ATRs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atr", "tech", "chip", "tag_type"),
    [
        (STORAGE_ATR, "iso14443a", "mifare_classic_1k", None),  # part 3, SS 03, NN 0001
        (part3_atr(0x0002), "iso14443a", "mifare_classic_4k", None),  # NN 0002
        (ULTRALIGHT_ATR, "iso14443a", "ultralight", 2),  # NN 0003: Ultralight and NTAG21x
        (part3_atr(0x003A), "iso14443a", "ultralight_c", 2),  # NN 003A
        (part3_atr(0x003B, standard=0x11), "felica", "felica", None),  # SS 11 FeliCa, NN 003B
        (part3_atr(0x0042), "iso14443a", "unknown", None),  # a name we do not know
        (ISO_DEP_ATR, "iso14443a", "iso_dep", 4),  # 3B 81 80 01 80 80: ISO 14443-4 A (DESFire, 424)
        (bytes.fromhex("3B888001000000007781810079"), "iso14443b", "iso_dep", 4),  # 8 historical bytes: B
        (bytes.fromhex("3B0200"), "iso14443a", "unknown", None),  # not contactless at all
    ],
)
def test_parse_atr(atr: bytes, tech: str, chip: str, tag_type: int | None) -> None:
    info = parse_atr(atr)
    assert (info.tech, info.chip, info.tag_type) == (tech, chip, tag_type)


# --- byte level, no pcscd ----------------------------------------------------------------------------


def test_type2_ndef_read_byte_by_byte() -> None:
    script = Script(
        # READ BINARY: CLA FF (reader pseudo-APDU), INS B0, P1 00, P2 03 (page 3 = CC), Le 10 (4 pages)
        (
            "FF B0 00 03 10",
            # CC E1 10 12 00 (NDEF 1.0, 144-byte area, free read); page 4: TLV 03 10 (NDEF, 16 bytes), D1 01
            # (record header MB ME SR TNF 1, type length 1); page 5: payload length 0C, type 55 ("U"),
            # 04 (https://), "t"; page 6: ".exa"; SW 90 00
            "E1 10 12 00  03 10 D1 01  0C 55 04 74  2E 65 78 61  90 00",
        ),
        # READ BINARY from page 7: the rest of the TLV ("mple/m" + terminator FE)
        ("FF B0 00 07 10", "6D 70 6C 65  2F 6D FE 00  00 00 00 00  00 00 00 00  90 00"),
    )
    message = read_type2_ndef(script)
    assert message == bytes.fromhex("D1010C5504") + b"t.example/m"
    assert ndef_codec.first_uri(message) == "https://t.example/m"
    assert script.finished()


def test_type2_skips_lock_control_tlvs_and_reads_3_byte_lengths() -> None:
    body = bytes(300)
    script = Script(
        # READ BINARY page 3: CC (area 0x3E * 8 = 496 bytes); Lock Control TLV 01 03 A0 10 44;
        # NDEF TLV 03 FF 01 2C (3-byte length: 300 bytes) ...
        ("FF B0 00 03 10", "E1 10 3E 00  01 03 A0 10  44 03 FF 01  2C 00 00 00  90 00"),
    )
    pages = [(f"FF B0 00 {page:02X} 10", "00" * 16 + " 90 00") for page in range(7, 7 + 4 * 19, 4)]
    script.frames += [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in pages]
    assert read_type2_ndef(script) == body
    assert script.finished()


@pytest.mark.parametrize(
    ("page3", "why"),
    [
        ("00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  90 00", "CC byte 0 is not E1: not NDEF formatted"),
        ("E1 10 12 00  FE 00 00 00  00 00 00 00  00 00 00 00  90 00", "terminator TLV first: empty tag"),
        ("E1 10 12 00  03 00 FE 00  00 00 00 00  00 00 00 00  90 00", None),  # empty NDEF TLV: b""
        ("E1 10 12 F0  03 0F D1 01  0B 55 04 74  2E 65 78 61  90 00", "CC byte 3 F0: read access refused"),
    ],
)
def test_type2_tags_without_a_message(page3: str, why: str | None) -> None:
    script = Script(("FF B0 00 03 10", page3))  # READ BINARY page 3 (CC + first data pages)
    assert read_type2_ndef(script) == (None if why else b"")
    assert script.finished()


def test_type2_overrunning_tlv_is_a_protocol_error() -> None:
    # CC says an area of 16 bytes; the NDEF TLV claims 0x40 bytes.
    script = Script(("FF B0 00 03 10", "E1 10 02 00  03 40 D1 01  0B 55 04 74  2E 65 78 61  90 00"))
    with pytest.raises(ProtocolError, match="overruns"):
        read_type2_ndef(script)


def test_type4_ndef_read_byte_by_byte() -> None:
    script = Script(
        # SELECT by name: CLA 00 INS A4 P1 04 P2 00, Lc 07, AID D2 76 00 00 85 01 01 (NDEF app 2.0), Le 00
        ("00 A4 04 00 07 D2 76 00 00 85 01 01 00", "90 00"),
        # SELECT by file id, first or only, no FCI (P2 0C): Lc 02, E1 03 = capability container
        ("00 A4 00 0C 02 E1 03", "90 00"),
        # READ BINARY offset 0000, Le 0F: the 15-byte CC
        (
            "00 B0 00 00 0F",
            # CCLEN 000F, mapping 2.0, MLe 0004, MLc 00FF, NDEF file TLV 04 06: file E104, max 0100,
            # read access 00 (free), write access 00; SW 90 00
            "00 0F 20 00 04 00 FF 04 06 E1 04 01 00 00 00 90 00",
        ),
        # SELECT the NDEF file E1 04 named by the CC
        ("00 A4 00 0C 02 E1 04", "90 00"),
        # READ BINARY offset 0, Le 02: NLEN = 0009
        ("00 B0 00 00 02", "00 09 90 00"),
        # READ BINARY offset 2, Le 04 (MLe): first 4 message bytes
        ("00 B0 00 02 04", "D1 01 05 55 90 00"),
        # offset 6, Le 04
        ("00 B0 00 06 04", "04 61 2E 62 90 00"),
        # offset 10, Le 01: the last byte
        ("00 B0 00 0A 01", "63 90 00"),
    )
    message = read_type4_ndef(script)
    assert ndef_codec.first_uri(message) == "https://a.bc"
    assert script.finished()


def test_type4_without_ndef_application() -> None:
    # SELECT NDEF application -> 6A 82 (not found): an ISO-DEP card used for something else
    script = Script(("00 A4 04 00 07 D2 76 00 00 85 01 01 00", "6A 82"))
    assert read_type4_ndef(script) is None
    assert script.finished()


def test_type4_read_protected_ndef_is_not_read() -> None:
    script = Script(
        ("00 A4 04 00 07 D2 76 00 00 85 01 01 00", "90 00"),  # SELECT NDEF application
        ("00 A4 00 0C 02 E1 03", "90 00"),  # SELECT CC
        # READ CC: read access 80 (proprietary: needs authentication) -> nothing more is sent
        ("00 B0 00 00 0F", "00 0F 20 00 3B 00 34 04 06 E1 04 00 FF 80 00 90 00"),
    )
    assert read_type4_ndef(script) is None
    assert script.finished()


def test_type4_nlen_beyond_the_file_is_a_protocol_error() -> None:
    script = Script(
        ("00 A4 04 00 07 D2 76 00 00 85 01 01 00", "90 00"),  # SELECT NDEF application
        ("00 A4 00 0C 02 E1 03", "90 00"),  # SELECT CC
        ("00 B0 00 00 0F", "00 0F 20 00 3B 00 34 04 06 E1 04 00 20 00 00 90 00"),  # CC: file max 0x20
        ("00 A4 00 0C 02 E1 04", "90 00"),  # SELECT NDEF file
        ("00 B0 00 00 02", "01 00 90 00"),  # NLEN 0x0100 > 0x20 - 2
    )
    with pytest.raises(ProtocolError, match="exceeds"):
        read_type4_ndef(script)


def test_type4_card_gone_mid_read() -> None:
    script = Script(
        ("00 A4 04 00 07 D2 76 00 00 85 01 01 00", "90 00"),  # SELECT NDEF application
        ("00 A4 00 0C 02 E1 03", ""),  # SELECT CC: no answer at all, the card left
    )
    with pytest.raises(CardGone):
        read_type4_ndef(script)


def test_read_card_of_an_ntag424_carries_the_sun_url_unverified() -> None:
    tag = Ntag424(UID, MASTER)

    def transmit(apdu: bytes) -> bytes:
        return UID + b"\x90\x00" if apdu == GET_UID else tag(apdu) or b"\x6d\x00"

    card = read_card(transmit, ISO_DEP_ATR)
    url = ndef_codec.sun_url(card.ndef)
    assert card.uid == UID and url is not None and "picc_data=" in url
    assert ndef_codec.sun_url(uri_message(URL)) is None  # a plain URL is no SUN message


def test_ndef_tlv_parser_asks_for_more() -> None:
    with pytest.raises(ndef_codec.NeedMore) as more:
        ndef_codec.type2_message(bytes.fromhex("03 20 D1"), 144)
    assert more.value.size == 2 + 0x20
    with pytest.raises(ndef_codec.NeedMore):
        ndef_codec.type2_message(bytes.fromhex("03 FF"), 144)  # 3-byte length cut short
    assert ndef_codec.type2_message(bytes.fromhex("00 00 FD 01 AA 03 01 EE FE"), 144) == b"\xee"
    assert ndef_codec.type2_message(bytes(16), 16) is None  # only NULL TLVs up to the limit
