"""Card identifiers and their keyed hashes; card trust levels and SUN / MAC checks. Pure: hmac,
hashlib and ``cryptography`` only.

A card UID (or FeliCa IDm) is stored and sent only as HMAC-SHA256 under the chain's card-hash
key. The key lives in its own file, outside the database, so a copied database does not give
away which physical cards belong to whom.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from terminal.errors import MESSAGES, Code, Rejected
from terminal.model import CardRead

CARD_KEY_BYTES = 32


def card_uid_hash(key: bytes, uid: bytes) -> str:
    """The keyed hash of a card identifier, as lowercase hex."""
    if len(key) < 16:
        raise ValueError("card-hash key must be at least 16 bytes")
    if not uid:
        raise ValueError("empty card UID")
    return hmac.new(key, uid, hashlib.sha256).hexdigest()


def parse_uid(text: str) -> bytes:
    """A UID typed or printed as hex ("04:A2:2B:1C", "04a22b1c") into bytes."""
    cleaned = text.replace(":", "").replace(" ", "").replace("-", "")
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise ValueError(f"card UID {text!r} is not hexadecimal") from exc
    if not 4 <= len(uid) <= 10:
        raise ValueError(f"card UID {text!r} must be 4 to 10 bytes")
    return uid


def token_digest(token: str) -> str:
    """How a bearer token is stored: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- cards that cannot be cloned ------------------------------------------------------------------
#
# Trust levels: a UID or IDm is printed in clear on every read and anyone can copy it, so a card known
# only by it identifies a member and earns points (a copy gains nothing it could take); spending needs
# a credential that cannot be replayed. Drivers carry what they read; the
# service verifies it here, with the keys, and stores the SUN read counter in the sale's transaction.
#
#   NTAG 424 DNA SUN (NXP AN12196): the card's NDEF URL holds PICCData encrypted (AES-128-CBC, zero IV)
#   under SDMMetaReadKey - tag byte, 7-byte UID, 3-byte little-endian SDMReadCtr - and a MAC: AES-CMAC
#   under the session key CMAC(SDMFileReadKey, SV2 = 3C C3 00 01 00 80 || UID || SDMReadCtr), of the
#   URL text between SDMMACInputOffset and SDMMACOffset, keeping the odd-numbered bytes (8 of 16).
#   Keys (NXP AN10922 AES-128 diversification of one master key): the meta-read key is shared by
#   every card (the till must decrypt before it knows the UID); the file-read (MAC) key is per card.

SUN_META_LABEL = b"tillpoint SDMMetaRead"
SUN_FILE_LABEL = b"tillpoint SDMFileRead"
LITE_S_LABEL = b"tillpoint FeliCaLiteS"
_SV2_PREFIX = bytes.fromhex("3CC300010080")
_PICC_TAG_UID = 0x80  # PICCDataTag bit 7: UID mirrored
_PICC_TAG_CTR = 0x40  # PICCDataTag bit 6: SDMReadCtr mirrored
SUN_PICC_PARAMS = ("picc_data", "e", "p")
SUN_MAC_PARAMS = ("cmac", "c", "m")


class Trust(IntEnum):
    """What a card read proves; compare with ``<``: only MAC and SUN may spend."""

    UID_ONLY = 0  # UID / IDm: identifies and earns, cannot pay (a UID is copied in a second)
    MAC = 1  # FeliCa Lite-S read with a MAC over a fresh challenge, under the card's own key
    SUN = 2  # NTAG 424 DNA SUN message: AES MAC and a read counter that must rise

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def can_spend(self) -> bool:
        return self >= Trust.MAC


class ForgedCard(Rejected):
    """A secure message that does not decrypt or whose MAC is wrong: a clone, a tamper, a wrong key."""

    def __init__(self, detail: str) -> None:
        super().__init__(Code.FORGED_CARD, f"{MESSAGES[Code.FORGED_CARD]} ({detail})")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SunMessage:
    """The SUN parameters found in an NDEF URL."""

    picc_enc: bytes  # 16 bytes: encrypted PICCData
    cmac: bytes  # 8 bytes: truncated SDM MAC
    mac_input: bytes = b""  # the URL text the MAC covers (empty when SDMMACInputOffset = SDMMACOffset)


@dataclass(frozen=True, slots=True)
class SunResult:
    uid: bytes
    counter: int


@dataclass(frozen=True, slots=True)
class CardProof:
    """What the service learned from one tap: its trust level, and the SUN counter to store."""

    trust: Trust
    counter: int | None = None


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _aes_cbc(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(16)))
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B, RFC 4493), 16 bytes."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def _double(block: bytes) -> bytes:
    # Multiplication by x in GF(2^128): the CMAC subkey step.
    value = int.from_bytes(block, "big") << 1
    if block[0] & 0x80:
        value ^= 0x87
    return (value & ((1 << 128) - 1)).to_bytes(16, "big")


def diversify_aes128(master: bytes, data: bytes) -> bytes:
    """NXP AN10922 AES-128 key diversification: CMAC over 0x01 || data, padded to 32 bytes.

    Unlike plain CMAC, the input is always padded to two blocks (80 00 ...), with subkey K2 when
    padding was added and K1 when ``data`` filled 31 bytes exactly."""
    if len(master) != 16:
        raise ValueError("AN10922 AES-128 diversification needs a 16-byte master key")
    if not 1 <= len(data) <= 31:
        raise ValueError("diversification input must be 1 to 31 bytes")
    k1 = _double(_aes_ecb(master, bytes(16)))
    k2 = _double(k1)
    block = b"\x01" + data
    padded = len(block) < 32
    if padded:
        block += b"\x80" + bytes(31 - len(block))
    last = bytes(a ^ b for a, b in zip(block[16:], k2 if padded else k1, strict=True))
    return _aes_cbc(master, block[:16] + last)[16:]


def sun_meta_read_key(master: bytes) -> bytes:
    """The SDMMetaReadKey every card of the chain shares (it decrypts PICCData before the UID is known)."""
    return diversify_aes128(master, SUN_META_LABEL)


def sun_file_read_key(master: bytes, uid: bytes) -> bytes:
    """The card's own SDMFileReadKey (its MAC key), diversified from the master key with its UID."""
    return diversify_aes128(master, uid + SUN_FILE_LABEL)


def lite_s_card_key(master: bytes, idm: bytes) -> bytes:
    """A FeliCa Lite-S card's own 16-byte card key (CK), diversified from the master key with its IDm."""
    return diversify_aes128(master, idm + LITE_S_LABEL)


def decrypt_picc_data(picc_enc: bytes, meta_read_key: bytes) -> SunResult:
    """UID and SDMReadCtr from encrypted PICCData; anything else than a mirrored 7-byte UID and
    counter is refused (a wrong key decrypts to noise and fails here or at the MAC)."""
    if len(picc_enc) != 16:
        raise ForgedCard("PICC data must be 16 bytes")
    plain = _aes_cbc(meta_read_key, picc_enc, decrypt=True)
    tag = plain[0]
    if tag & (_PICC_TAG_UID | _PICC_TAG_CTR) != _PICC_TAG_UID | _PICC_TAG_CTR or tag & 0x0F != 7:
        raise ForgedCard("PICC data does not decrypt to a UID and a read counter")
    return SunResult(plain[1:8], int.from_bytes(plain[8:11], "little"))


def sdm_mac(file_read_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """The 8-byte SDM MAC a card computes (AN12196): CMAC under the SV2 session key, odd bytes."""
    session = aes_cmac(file_read_key, _SV2_PREFIX + uid + counter.to_bytes(3, "little"))
    return aes_cmac(session, mac_input)[1::2]


def verify_sun(picc_enc: bytes, cmac: bytes, master_key: bytes, mac_input: bytes = b"") -> SunResult:
    """Check a SUN message against the chain's master key; raises ForgedCard.

    The caller must still require the counter to rise (``terminal.store.counters.bump_counter``)."""
    result = decrypt_picc_data(picc_enc, sun_meta_read_key(master_key))
    expected = sdm_mac(sun_file_read_key(master_key, result.uid), result.uid, result.counter, mac_input)
    if len(cmac) != 8 or not hmac.compare_digest(expected, cmac):
        raise ForgedCard("SUN MAC does not match")
    return result


def _hex_param(value: str, size: int, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ForgedCard(f"SUN parameter {name} is not hexadecimal") from exc
    if len(raw) != size:
        raise ForgedCard(f"SUN parameter {name} must be {size} bytes")
    return raw


def _find_param(url: str, names: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of ``names`` in the query: (value, offset of the value in ``url``)."""
    query_at = url.find("?")
    if query_at < 0:
        return None
    offset = query_at + 1
    for part in url[query_at + 1 :].split("&"):
        name, _, value = part.partition("=")
        if name in names:
            return value, offset + len(name) + 1
        offset += len(part) + 1
    return None


def sun_from_url(url: str) -> SunMessage | None:
    """The SUN parameters of an NDEF URL (``picc_data``/``e`` and ``cmac``/``c``; an ``enc`` part
    makes the MAC cover the text from the enc value up to the cmac value, as in AN12196), or None
    when the URL carries no SUN message."""
    picc = _find_param(url, SUN_PICC_PARAMS)
    mac = _find_param(url, SUN_MAC_PARAMS)
    if picc is None or mac is None:
        return None
    enc = _find_param(url, ("enc",))
    mac_input = url[enc[1] : mac[1]].encode() if enc is not None and enc[1] < mac[1] else b""
    return SunMessage(_hex_param(picc[0], 16, "picc_data"), _hex_param(mac[0], 8, "cmac"), mac_input)


def trust_of(read: CardRead) -> Trust:
    """The trust level a read claims; SUN is only worth it after ``verify_read`` succeeded."""
    if read.sun:
        return Trust.SUN
    if read.lite_s_mac:
        return Trust.MAC
    return Trust.UID_ONLY


def verify_read(read: CardRead, sun_master_key: bytes | None, hash_uid: Callable[[bytes], str]) -> CardProof:
    """Verify what a tap carries and say what it proves.

    A SUN URL must decrypt and MAC under the master key, and its UID must be the card's (else
    ForgedCard); the proof then holds the counter the caller stores with ``bump_counter`` in the
    same transaction as the sale. With no master key configured a SUN card is only identified."""
    claimed = trust_of(read)
    if claimed is not Trust.SUN:
        return CardProof(claimed)
    if sun_master_key is None:
        return CardProof(Trust.UID_ONLY)
    assert read.sun is not None
    message = sun_from_url(read.sun)
    if message is None:
        raise ForgedCard("the card's URL has no SUN parameters")
    result = verify_sun(message.picc_enc, message.cmac, sun_master_key, message.mac_input)
    if not hmac.compare_digest(hash_uid(result.uid), read.uid_hash):
        raise ForgedCard("the SUN message belongs to another card")
    return CardProof(Trust.SUN, result.counter)


def require_spend(proof: CardProof) -> None:
    """Refuse spending (points, balance, card-bound single-use coupons) on a card that cannot prove itself."""
    if not proof.trust.can_spend:
        raise Rejected(Code.CARD_CANNOT_PAY)


def parse_master_key(data: bytes) -> bytes:
    """A 16-byte AES master key as kept in its key file: 16 raw bytes, or 32 hex digits (whitespace ok)."""
    if len(data) == 16:
        return data
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("a master key file holds 16 raw bytes or 32 hex digits") from exc
    if len(key) != 16:
        raise ValueError(f"a master key is 16 bytes, this one has {len(key)}")
    return key
