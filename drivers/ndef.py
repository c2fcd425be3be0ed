"""NDEF as tags store it: the NFC Forum Type 2 TLV area, the Type 4 capability container, and the
message itself (decoded with ``ndeflib``). Pure functions over bytes, shared by the PC/SC and nfcpy
drivers; the APDUs that fetch the bytes live in the drivers.

Errors: a malformed capability container raises ``ProtocolError``; an area that ends before the
NDEF TLV does raises ``NeedMore`` (the caller reads further and tries again).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import ndef

from drivers.errors import ProtocolError
from terminal.credentials import SUN_MAC_PARAMS, SUN_PICC_PARAMS

TLV_NULL, TLV_LOCK, TLV_MEMORY, TLV_NDEF, TLV_PROPRIETARY, TLV_TERMINATOR = 0x00, 0x01, 0x02, 0x03, 0xFD, 0xFE
T2_CC_MAGIC = 0xE1  # Type 2 capability container byte 0: NDEF formatted
T4_NDEF_FILE_TLV = 0x04  # Type 4 CC: NDEF File Control TLV
T4_FREE_ACCESS = 0x00


class NeedMore(Exception):
    """The TLV area read so far ends inside a TLV: ``size`` bytes are needed in all."""

    def __init__(self, size: int) -> None:
        super().__init__(f"need {size} bytes of the TLV area")
        self.size = size


@dataclass(frozen=True, slots=True)
class Type2Cc:
    version: int
    data_size: int  # bytes of the data area (CC byte 2 times 8)
    readable: bool


@dataclass(frozen=True, slots=True)
class Type4Cc:
    mapping_version: int
    max_read: int  # MLe: the most bytes one READ BINARY may return
    file_id: bytes  # the NDEF file's id, usually E1 04
    max_size: int  # the NDEF file's size, NLEN included
    readable: bool


def type2_cc(cc: bytes) -> Type2Cc | None:
    """The Type 2 capability container (page 3), or None when the tag is not NDEF formatted."""
    if len(cc) < 4:
        raise ProtocolError(f"Type 2 capability container too short: {cc.hex().upper()}")
    if cc[0] != T2_CC_MAGIC:
        return None
    return Type2Cc(cc[1], cc[2] * 8, cc[3] >> 4 == 0)


def _tlv_length(area: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the value) of the TLV whose tag is at ``at``; 1- or 3-byte length."""
    if at + 2 > len(area):
        raise NeedMore(at + 2)
    if area[at + 1] != 0xFF:
        return area[at + 1], at + 2
    if at + 4 > len(area):
        raise NeedMore(at + 4)
    return int.from_bytes(area[at + 2 : at + 4], "big"), at + 4


def type2_message(area: bytes, limit: int) -> bytes | None:
    """The first NDEF message of a Type 2 data area (bytes from page 4 on), or None when the
    TLVs end (terminator, or the area's ``limit``) without one. Raises NeedMore."""
    at = 0
    while at < limit:
        if at >= len(area):
            raise NeedMore(at + 1)
        tag = area[at]
        if tag == TLV_NULL:
            at += 1
            continue
        if tag == TLV_TERMINATOR:
            return None
        length, value_at = _tlv_length(area, at)
        if tag == TLV_NDEF:
            if value_at + length > limit:
                raise ProtocolError(f"NDEF TLV of {length} bytes overruns the {limit}-byte data area")
            if value_at + length > len(area):
                raise NeedMore(value_at + length)
            return area[value_at : value_at + length]
        at = value_at + length
    return None


def type4_cc(cc: bytes) -> Type4Cc:
    """The Type 4 capability container file (E1 03): mapping version, MLe, the NDEF file TLV."""
    if len(cc) < 15 or cc[7] != T4_NDEF_FILE_TLV or cc[8] < 6:
        raise ProtocolError(f"Type 4 capability container not understood: {cc.hex().upper()}")
    return Type4Cc(
        mapping_version=cc[2],
        max_read=int.from_bytes(cc[3:5], "big"),
        file_id=cc[9:11],
        max_size=int.from_bytes(cc[11:13], "big"),
        readable=cc[13] == T4_FREE_ACCESS,
    )


def records(message: bytes) -> list[ndef.Record]:
    """The records of an NDEF message; an undecodable message has none."""
    try:
        return list(ndef.message_decoder(message))
    except ndef.DecodeError:
        return []


def first_uri(message: bytes | None) -> str | None:
    """The first URI record's text (IRI form: ``?e=..&c=..`` kept as written), if any."""
    for record in records(message or b""):
        if isinstance(record, ndef.UriRecord):
            return str(record.iri)
    return None


def sun_url(message: bytes | None) -> str | None:
    """The message's URL when it carries an NTAG 424 DNA SUN message (PICC data and a MAC); the
    service verifies it (``terminal.credentials.verify_read``), the driver only carries it."""
    url = first_uri(message)
    if url is None:
        return None
    names = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if names & set(SUN_PICC_PARAMS) and names & set(SUN_MAC_PARAMS):
        return url
    return None
