"""Prepaid vouchers: the signed code head office issues, and the rules a till and head office apply to it.
Pure: no database, no I/O (docs/stored-value.md, "Vouchers").

A voucher is for an amount (it pays like stored value) or for a product (one unit of its sku, up to its
value). Head office makes every code and signs it with its key of purpose ``voucher``; a till only holds a
stock of them and activates one when it sells it, so a till cannot mint value. The code, base64url after
``TPV1:``::

    code     version u8 = 1 | key id length u8 | key id | voucher id 8 bytes | kind u8 (1 amount, 2 product)
             | value u64 | expires_at u32 (unix seconds) | sku length u8 | sku | Ed25519 signature 64 bytes
    signed   b"tillpoint-voucher/1" + everything before the signature

A voucher is used once, chain-wide: head office confirms a redemption online first, under a unique
constraint; offline, a till redeems only a voucher whose activation it pulled, and only up to its offline
total of voucher value not yet acknowledged (``offline_refusal``), so a voucher redeemed at two offline
tills costs the chain at most one voucher's value a till.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from terminal import b64url
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.money import MAX_AMOUNT

PREFIX = "TPV1:"
PURPOSE = "voucher"
"""The purpose of head office's key that signs voucher codes (no other key's signature is a voucher's)."""
VERSION = 1
ID_BYTES = 8
_DOMAIN = b"tillpoint-voucher/1"
_SIG = 64
MAX_TEXT = 400


class Kind(StrEnum):
    AMOUNT = "amount"
    """Pays ``value`` of a sale, like stored value."""
    PRODUCT = "product"
    """Takes one unit of ``sku`` off a sale, up to ``value``."""


_KIND_BYTE = {Kind.AMOUNT: 1, Kind.PRODUCT: 2}
_BYTE_KIND = {b: k for k, b in _KIND_BYTE.items()}


class State(StrEnum):
    """A voucher's state as head office holds it (and sends it down to every till once it was sold)."""

    STOCK = "stock"
    ACTIVE = "active"
    REDEEMED = "redeemed"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class Voucher:
    key_id: str
    voucher_id: str
    """16 hex digits."""
    kind: Kind
    value: int
    expires_at: int
    sku: str
    signed: bytes
    signature: bytes

    def to_doc(self) -> dict[str, Any]:
        return {
            "voucher_id": self.voucher_id,
            "kind": self.kind.value,
            "value": self.value,
            "sku": self.sku,
            "expires_at": self.expires_at,
        }


def issue(
    key: Ed25519PrivateKey, key_id: str, voucher_id: bytes, kind: Kind, value: int, expires_at: int, sku: str = ""
) -> str:
    """Head office's side: a voucher's code, signed with its voucher key. ``ValueError`` when a field is out
    of bounds (a product voucher names its sku, an amount voucher none)."""
    if len(voucher_id) != ID_BYTES:
        raise ValueError(f"a voucher id is {ID_BYTES} bytes")
    if not 0 < value <= MAX_AMOUNT or not 0 < expires_at < 2**32:
        raise ValueError(f"a voucher's value is 1..{MAX_AMOUNT} minor units and it expires")
    if (kind is Kind.PRODUCT) != bool(sku):
        raise ValueError("a product voucher names its sku; an amount voucher names none")
    body = (
        bytes([VERSION])
        + _short(key_id, "key id", 1)
        + voucher_id
        + bytes([_KIND_BYTE[kind]])
        + struct.pack(">QI", value, expires_at)
        + _short(sku, "sku", 0)
    )
    return PREFIX + b64url.encode(body + key.sign(_DOMAIN + body))


def _short(text: str, what: str, least: int) -> bytes:
    raw = text.encode()
    if not least <= len(raw) <= 64:
        raise ValueError(f"a {what} is {least} to 64 bytes of UTF-8")
    return bytes([len(raw)]) + raw


def parse(text: str) -> Voucher:
    """The voucher a ``TPV1:`` text carries; ``Rejected(voucher_malformed)`` when it is not one whole (a
    damaged, truncated or padded code): nothing about it is trusted before ``verify``."""
    text = text.strip()
    if not text.startswith(PREFIX) or len(text) > MAX_TEXT or not set(text[len(PREFIX) :]) <= pay.BASE64URL_CHARS:
        raise Rejected(Code.VOUCHER_MALFORMED)
    try:
        return _parse(b64url.decode(text[len(PREFIX) :]))
    except (ValueError, UnicodeDecodeError, IndexError, KeyError, struct.error) as exc:
        raise Rejected(Code.VOUCHER_MALFORMED) from exc


def _take(raw: bytes, at: int) -> tuple[str, int]:
    size = raw[at]
    text = raw[at + 1 : at + 1 + size]
    if len(text) != size:
        raise ValueError("truncated")
    return text.decode(), at + 1 + size


def _parse(raw: bytes) -> Voucher:
    if raw[:1] != bytes([VERSION]):
        raise ValueError("unknown version")
    key_id, at = _take(raw, 1)
    voucher_id = raw[at : at + ID_BYTES]
    kind = _BYTE_KIND[raw[at + ID_BYTES]]
    value, expires_at = struct.unpack(">QI", raw[at + ID_BYTES + 1 : at + ID_BYTES + 13])
    sku, end = _take(raw, at + ID_BYTES + 13)
    if len(raw) != end + _SIG or not key_id or len(voucher_id) != ID_BYTES:
        raise ValueError("wrong length")
    if (kind is Kind.PRODUCT) != bool(sku) or not 0 < value <= MAX_AMOUNT:
        raise ValueError("inconsistent")
    return Voucher(key_id, voucher_id.hex(), kind, value, expires_at, sku, raw[:end], raw[end:])


def verify(voucher: Voucher, keys: Mapping[str, bytes], now: int | None = None) -> Voucher:
    """The voucher, when head office's voucher key named in it signed it (``keys``: the voucher keys by id;
    ``voucher_forged`` otherwise: a code made by anyone else, or signed by a key of another purpose) and,
    given ``now``, it has not expired (``voucher_expired``)."""
    public = keys.get(voucher.key_id)
    if public is None:
        raise Rejected(Code.VOUCHER_FORGED, f"This voucher is signed by an unknown key ({voucher.key_id}).")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(voucher.signature, _DOMAIN + voucher.signed)
    except (InvalidSignature, ValueError) as exc:
        raise Rejected(Code.VOUCHER_FORGED) from exc
    if now is not None and now >= voucher.expires_at:
        raise Rejected(Code.VOUCHER_EXPIRED)
    return voucher


def read(text: str, keys: Mapping[str, bytes], now: int | None = None) -> Voucher:
    """``parse`` then ``verify``."""
    return verify(parse(text), keys, now)


# -- the till's rules ------------------------------------------------------------------------------


def state_of(doc: Mapping[str, Any] | None) -> State | None:
    """The state a pulled voucher document states (None: the till holds none, or an unreadable one)."""
    try:
        return State(str((doc or {})["state"]))
    except (KeyError, ValueError):
        return None


def held_refusal(state: State | None, used_here: bool) -> Code | None:
    """Why the till refuses a voucher from what it already knows, online or not: used here, or head office
    said it was redeemed or refunded."""
    if state is State.REFUNDED:  # refunded here too: say so, not merely "used"
        return Code.VOUCHER_REFUNDED
    if used_here or state is State.REDEEMED:
        return Code.VOUCHER_USED
    return None


def offline_refusal(
    value: int, state: State | None, pending: int, offline_total: int, offline: pay.OfflineState, limits: pay.RiskLimits
) -> Code | None:
    """Why a redemption of ``value`` may not be taken while head office is unreachable: the till must have
    pulled the voucher's activation, be within the offline rules of account payments (how long offline, the
    clock), and stay within its offline total of voucher value not acknowledged yet (``pending``)."""
    if state is not State.ACTIVE:
        return Code.VOUCHER_NOT_ACTIVE
    code = pay.clock_refusal(offline, limits)
    if code is not None:
        return code
    if pending + value > offline_total:
        return Code.VOUCHER_LIMIT_OFFLINE
    return None


def takes_off(kind: str, value: int, sku: str, lines: Iterable[tuple[str, int]]) -> int:
    """What a voucher takes off a sale whose basket has ``lines`` (sku, unit price): an amount voucher its value; a
    product voucher one unit of its sku at most its value, when the basket holds it (else nothing: the POS takes
    it off). The POS collects no more than the rest of what it is due, whatever a voucher's value beyond it."""
    if kind == Kind.AMOUNT.value:
        return value
    prices = [price for line_sku, price in lines if line_sku == sku]
    return max(0, min(prices[0], value)) if prices else 0


def discount(voucher: Voucher, unit_price: int) -> int:
    """What a product voucher takes off one unit of its sku priced ``unit_price``: the price, at most the
    voucher's value."""
    return max(0, min(unit_price, voucher.value))
