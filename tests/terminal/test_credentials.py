"""terminal.credentials: SUN (NXP AN12196), AES key diversification (NXP AN10922), trust levels.

The fixed vectors are the application notes' own worked examples; the rest are round trips through
an independent card-side implementation (tests/vcard.py's NTAG 424 DNA model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.credentials import (
    CardProof,
    ForgedCard,
    SunResult,
    Trust,
    aes_cmac,
    card_uid_hash,
    decrypt_picc_data,
    diversify_aes128,
    lite_s_card_key,
    require_spend,
    sdm_mac,
    sun_file_read_key,
    sun_from_url,
    sun_meta_read_key,
    trust_of,
    verify_read,
    verify_sun,
)
from terminal.errors import Code, Rejected
from terminal.model import CardRead
from tests.vcard import Ntag424

ZERO_KEY = bytes(16)
MASTER = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
HASH_KEY = b"tillpoint-test-card-hash-key-0001"
UID = bytes.fromhex("04A1B2C3D4E580")


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(HASH_KEY, uid)


# --- NXP AN12196 worked examples ------------------------------------------------------------------


def test_an12196_picc_data_decrypts_to_uid_and_counter() -> None:
    # AN12196 "SUN message with encrypted PICC data": e=EF963FF7828658A599F3041510671E88 under an
    # all-zero SDMMetaReadKey is C7 | 04DE5F1EACC040 | 3D0000 | random: UID and SDMReadCtr 61.
    result = decrypt_picc_data(bytes.fromhex("EF963FF7828658A599F3041510671E88"), ZERO_KEY)
    assert result.uid == bytes.fromhex("04DE5F1EACC040")
    assert result.counter == 0x3D


def test_an12196_session_key_and_truncated_mac() -> None:
    uid, counter = bytes.fromhex("04DE5F1EACC040"), 0x3D
    # SV2 = 3CC3 0001 0080 || UID || SDMReadCtr (LE); KSesSDMFileReadMAC given in the note.
    session = aes_cmac(ZERO_KEY, bytes.fromhex("3CC300010080") + uid + bytes.fromhex("3D0000"))
    assert session == bytes.fromhex("3FB5F6E3A807A03D5E3570ACE393776F")
    # CMAC over an empty MAC input, odd bytes kept: c=94EED9EE65337086.
    assert sdm_mac(ZERO_KEY, uid, counter) == bytes.fromhex("94EED9EE65337086")


def test_an12196_mac_over_encrypted_file_data_uses_the_url_text() -> None:
    url = (
        "https://www.my424dna.com/?picc_data=FDE4AFA99B5C820A2C1BB0F1C792D0EB"
        "&enc=94592FDE69FA06E8E3B6CA686A22842B&cmac=C48B89C17A233B2C"
    )
    message = sun_from_url(url)
    assert message is not None
    assert message.mac_input == b"94592FDE69FA06E8E3B6CA686A22842B&cmac="
    picc = decrypt_picc_data(message.picc_enc, ZERO_KEY)
    assert (picc.uid, picc.counter) == (bytes.fromhex("04958CAA5C5E80"), 1)
    assert sdm_mac(ZERO_KEY, picc.uid, picc.counter, message.mac_input) == message.cmac


# --- NXP AN10922 ----------------------------------------------------------------------------------


def test_an10922_aes128_example() -> None:
    # AN10922 AES-128 example: M = UID 04782E21801D80 || AID 3042F5 || SysID "NXP Abu".
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    data = bytes.fromhex("04782E21801D803042F54E585020416275")
    assert diversify_aes128(master, data) == bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")


def test_an10922_full_block_uses_k1_not_plain_cmac_padding() -> None:
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    # 31 bytes of input fill the two blocks exactly: no padding, subkey K1 = plain CMAC of 0x01||M.
    assert diversify_aes128(master, bytes(range(31))) == aes_cmac(master, b"\x01" + bytes(range(31)))
    # Shorter input: padded to 32 bytes, which plain CMAC would not do.
    assert diversify_aes128(master, b"\x07") != aes_cmac(master, b"\x01\x07")


@pytest.mark.parametrize(("master", "data"), [(bytes(15), b"x"), (bytes(16), b""), (bytes(16), bytes(32))])
def test_an10922_refuses_bad_sizes(master: bytes, data: bytes) -> None:
    with pytest.raises(ValueError):
        diversify_aes128(master, data)


def test_keys_are_per_card_and_per_purpose() -> None:
    other = bytes.fromhex("04A1B2C3D4E581")
    keys = {
        sun_meta_read_key(MASTER),
        sun_file_read_key(MASTER, UID),
        sun_file_read_key(MASTER, other),
        lite_s_card_key(MASTER, bytes(8)),
    }
    assert len(keys) == 4 and all(len(k) == 16 for k in keys)


# --- SUN round trips with the virtual NTAG 424 DNA ------------------------------------------------


def test_a_genuine_sun_message_verifies_with_its_counter() -> None:
    card = Ntag424(UID, MASTER)
    card.counter = 41
    url = card.ndef_url()  # the card's reading raises its counter to 42
    message = sun_from_url(url)
    assert message is not None
    result = verify_sun(message.picc_enc, message.cmac, MASTER, message.mac_input)
    assert (result.uid, result.counter) == (UID, 42)


@given(counter=st.integers(0, 0xFFFFFE), uid=st.binary(min_size=7, max_size=7))
@settings(max_examples=40, deadline=None)
def test_every_counter_and_uid_round_trips(counter: int, uid: bytes) -> None:
    card = Ntag424(uid, MASTER)
    card.counter = counter
    message = sun_from_url(card.ndef_url())
    assert message is not None
    assert verify_sun(message.picc_enc, message.cmac, MASTER) == SunResult(uid, counter + 1)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("index", [0, 5, 15])
def test_a_tampered_picc_data_is_forged(index: int) -> None:
    message = sun_from_url(Ntag424(UID, MASTER).ndef_url())
    assert message is not None
    with pytest.raises(ForgedCard) as caught:
        verify_sun(_flip(message.picc_enc, index), message.cmac, MASTER)
    assert caught.value.code is Code.FORGED_CARD


@pytest.mark.parametrize("index", [0, 7])
def test_a_tampered_mac_is_forged(index: int) -> None:
    message = sun_from_url(Ntag424(UID, MASTER).ndef_url())
    assert message is not None
    with pytest.raises(ForgedCard, match="MAC"):
        verify_sun(message.picc_enc, _flip(message.cmac, index), MASTER)


def test_a_card_keyed_by_another_master_is_forged() -> None:
    message = sun_from_url(Ntag424(UID, bytes(16)).ndef_url())
    assert message is not None
    with pytest.raises(ForgedCard):
        verify_sun(message.picc_enc, message.cmac, MASTER)


def test_the_mac_of_one_card_does_not_fit_another() -> None:
    # A clone that knows the shared meta-read key but not card A's MAC key forges PICC data for A.
    genuine = Ntag424(UID, MASTER)
    impostor = Ntag424(UID, MASTER, file_read_key=sun_file_read_key(MASTER, bytes(7)))
    assert sun_from_url(genuine.ndef_url()) is not None
    forged = sun_from_url(impostor.ndef_url())
    assert forged is not None
    with pytest.raises(ForgedCard, match="MAC"):
        verify_sun(forged.picc_enc, forged.cmac, MASTER)


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("https://t.example/c?picc_data=00112233445566778899AABBCCDDEEFF&cmac=0011223344556677", True),
        ("https://t.example/c?e=00112233445566778899AABBCCDDEEFF&c=0011223344556677", True),
        ("https://t.example/c?uid=04A1B2C3D4E580", False),
        ("https://t.example/c", False),
        ("https://t.example/c?picc_data=00112233445566778899AABBCCDDEEFF", False),
    ],
)
def test_sun_from_url_finds_the_parameters(url: str, found: bool) -> None:
    assert (sun_from_url(url) is not None) is found


@pytest.mark.parametrize(
    "url",
    [
        "https://t.example/c?picc_data=XYZ&cmac=0011223344556677",  # not hex
        "https://t.example/c?picc_data=0011&cmac=0011223344556677",  # PICC data too short
        "https://t.example/c?picc_data=00112233445566778899AABBCCDDEEFF&cmac=00",  # MAC too short
    ],
)
def test_malformed_sun_parameters_are_forged(url: str) -> None:
    with pytest.raises(ForgedCard):
        sun_from_url(url)


# --- trust levels ---------------------------------------------------------------------------------


def _read(uid: bytes = UID, sun: str | None = None, mac: bool = False) -> CardRead:
    return CardRead("r", "iso14443a", hash_uid(uid), b"", None, sun, 0.0, mac)


def test_trust_levels_are_ordered() -> None:
    assert Trust.UID_ONLY < Trust.MAC < Trust.SUN
    assert [t.label for t in Trust] == ["uid_only", "mac", "sun"]
    assert not Trust.UID_ONLY.can_spend and Trust.MAC.can_spend and Trust.SUN.can_spend


def test_trust_of_what_a_read_claims() -> None:
    assert trust_of(_read()) is Trust.UID_ONLY
    assert trust_of(_read(mac=True)) is Trust.MAC
    assert trust_of(_read(sun="https://t.example/?e=00&c=00")) is Trust.SUN


def test_verify_read_of_a_sun_card_gives_its_counter() -> None:
    card = Ntag424(UID, MASTER)
    proof = verify_read(_read(sun=card.ndef_url()), MASTER, hash_uid)
    assert proof == CardProof(Trust.SUN, 1)
    require_spend(proof)


def test_verify_read_refuses_a_sun_message_copied_to_another_card() -> None:
    url = Ntag424(UID, MASTER).ndef_url()
    with pytest.raises(ForgedCard, match="another card"):
        verify_read(_read(uid=bytes.fromhex("04000000000001"), sun=url), MASTER, hash_uid)


def test_verify_read_without_a_master_key_only_identifies() -> None:
    proof = verify_read(_read(sun=Ntag424(UID, MASTER).ndef_url()), None, hash_uid)
    assert proof == CardProof(Trust.UID_ONLY)
    with pytest.raises(Rejected) as caught:
        require_spend(proof)
    assert caught.value.code is Code.CARD_CANNOT_PAY


def test_verify_read_of_a_sun_url_without_parameters_is_forged() -> None:
    with pytest.raises(ForgedCard):
        verify_read(_read(sun="https://t.example/c"), MASTER, hash_uid)


def test_a_uid_only_card_cannot_spend_and_a_mac_card_can() -> None:
    with pytest.raises(Rejected) as caught:
        require_spend(verify_read(_read(), MASTER, hash_uid))
    assert caught.value.code is Code.CARD_CANNOT_PAY
    require_spend(verify_read(_read(mac=True), MASTER, hash_uid))


def test_parse_master_key() -> None:
    from terminal.credentials import parse_master_key

    assert parse_master_key(MASTER) == MASTER
    assert parse_master_key(MASTER.hex().upper().encode() + b"\n") == MASTER
    for bad in (b"", b"00" * 15, b"zz" * 16, bytes(17)):
        with pytest.raises(ValueError):
            parse_master_key(bad)
