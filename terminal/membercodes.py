"""Signed member codes (``TPM2:``): who the member is, and on a phone, that the member is here. Pure.

Two forms, base64url without padding after ``TPM2:``::

    issued   0x01 | key id length u8 | key id | issued_at u32 | member id length u8 | member id | Ed25519 sig
             signed by head office's "member" key over b"tillpoint-member/2" + everything before the
             signature. Printed on a card or kept in the wallet: it identifies (earns), never spends.
    device   0x02 | a payment code's bytes (``terminal.payments``: version, cert id, time step, counter,
             the device's signature). Made by the member's phone a moment ago: it identifies the member
             of the device certificate and, being single-use and short-lived like a payment code, is the
             member's proof for spending in this sale.
    timed    0x03 | key id length u8 | key id | time step u32 | member id length u8 | member id | Ed25519 sig
             signed by head office's "member" key like the issued form; the time step is unix time / 30 s
             (``pay.STEP_SECONDS``). Shown by the member's wallet and made again every step: it identifies
             (earns), never spends, and a till refuses it outside the payment codes' window
             (``member_code_expired``), so a screenshot stops working within about a minute and a half.

The unsigned ``TPM1:`` codes (base64 of the member id) are refused: anybody can make one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from terminal import b64url, base45
from terminal import payments as pay
from terminal.errors import Code, Rejected

PREFIX = "TPM2:"
ISSUED, DEVICE, TIMED = 1, 2, 3
_DOMAIN = b"tillpoint-member/2"
_SIG = 64


@dataclass(frozen=True, slots=True)
class IssuedCode:
    key_id: str
    issued_at: int
    member_id: str
    signed: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class TimedCode:
    """A code head office signed for one time step (the wallet's): ``time_step`` is unix time // 30."""

    key_id: str
    time_step: int
    member_id: str
    signed: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """A fresh code from the member's device: ``payment_code`` is the same proof as a ``TPP1:`` code."""

    payment_code: str


def _short(text: str, what: str) -> bytes:
    raw = text.encode()
    if not 1 <= len(raw) <= 255:
        raise ValueError(f"a {what} is 1 to 255 bytes of UTF-8")
    return bytes([len(raw)]) + raw


def issue(key: Ed25519PrivateKey, key_id: str, member_id: str, issued_at: int, compact: bool = False) -> str:
    """Head office's side: the member's code, signed with its member key (``compact``: base45 body)."""
    body = bytes([ISSUED]) + _short(key_id, "key id") + struct.pack(">I", issued_at) + _short(member_id, "member id")
    return _text(body + key.sign(_DOMAIN + body), compact)


def issue_timed(key: Ed25519PrivateKey, key_id: str, member_id: str, now: int, compact: bool = False) -> str:
    """Head office's side, for the wallet: the member's code for the time step of ``now``."""
    body = (
        bytes([TIMED])
        + _short(key_id, "key id")
        + struct.pack(">I", now // pay.STEP_SECONDS)
        + _short(member_id, "member id")
    )
    return _text(body + key.sign(_DOMAIN + body), compact)


def device_code(device_key: Ed25519PrivateKey, cert_id: bytes, now: int, counter: int, compact: bool = False) -> str:
    """The member's phone: a member code that is also a one-time proof (made like a payment code)."""
    raw = b64url.decode(pay.make_code(device_key, cert_id, now, counter)[len(pay.PREFIX) :])
    return _text(bytes([DEVICE]) + raw, compact)


def _text(raw: bytes, compact: bool) -> str:
    return PREFIX + (base45.encode(raw) if compact else b64url.encode(raw))


def _forms(body: str) -> list[bytes]:
    """The bytes a body may stand for: base64url (the first form) when it is written in that alphabet,
    then base45; the structure of the bytes (form, lengths) tells which one was meant."""
    forms = []
    if set(body) <= pay.BASE64URL_CHARS:
        forms.append(b64url.decode)
    forms.append(base45.decode)
    out = []
    for read in forms:
        try:
            out.append(read(body))
        except ValueError:
            continue
    return out


def _take(raw: bytes, at: int) -> tuple[str, int]:
    size = raw[at]
    text = raw[at + 1 : at + 1 + size]
    if size == 0 or len(text) != size:
        raise ValueError("truncated")
    return text.decode(), at + 1 + size


def parse(body: str) -> IssuedCode | TimedCode | DeviceCode:
    """The code in a ``TPM2:`` body, written in base64url or base45; ``Rejected(malformed_code)`` when it
    is neither form of a code."""
    failure: Exception = ValueError("empty")
    for raw in _forms(body):
        try:
            return _parse(raw)
        except (ValueError, UnicodeDecodeError, IndexError, struct.error) as exc:
            failure = exc
    raise Rejected(Code.MALFORMED_CODE, "This member code is damaged or incomplete.") from failure


def _parse(raw: bytes) -> IssuedCode | TimedCode | DeviceCode:
    if raw[:1] == bytes([DEVICE]):
        if len(raw) != 1 + pay.CODE_BYTES:
            raise ValueError("wrong length")
        return DeviceCode(pay.PREFIX + b64url.encode(raw[1:]))
    if raw[:1] not in (bytes([ISSUED]), bytes([TIMED])):
        raise ValueError("unknown form")
    key_id, at = _take(raw, 1)
    (number,) = struct.unpack(">I", raw[at : at + 4])
    member_id, end = _take(raw, at + 4)
    if len(raw) != end + _SIG:
        raise ValueError("wrong length")
    if raw[0] == TIMED:
        return TimedCode(key_id, number, member_id, raw[:end], raw[end:])
    return IssuedCode(key_id, number, member_id, raw[:end], raw[end:])


def verify_issued(code: IssuedCode | TimedCode, public_key: bytes | None) -> str:
    """The member id of a code head office issued; ``Rejected(member_code_forged)`` when its signature
    is not by the named member key (``public_key``: that key, None when the till does not know it)."""
    if public_key is None:
        raise Rejected(Code.MEMBER_CODE_FORGED, f"This member code is signed by an unknown key ({code.key_id}).")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(code.signature, _DOMAIN + code.signed)
    except (InvalidSignature, ValueError) as exc:
        raise Rejected(Code.MEMBER_CODE_FORGED) from exc
    return code.member_id


def verify_timed(code: TimedCode, public_key: bytes | None, now: int) -> str:
    """The member id of a wallet's timed code: signed by the named member key (``member_code_forged``)
    and made within the payment codes' window of ``now`` (``member_code_expired``)."""
    member_id = verify_issued(code, public_key)
    step = now // pay.STEP_SECONDS
    if not step - pay.WINDOW_STEPS - pay.DRIFT_STEPS < code.time_step <= step + pay.DRIFT_STEPS:
        raise Rejected(Code.MEMBER_CODE_EXPIRED)
    return member_id
