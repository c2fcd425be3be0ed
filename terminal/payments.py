"""Member payments: one-time payment codes, device certificates, split tender, offline risk limits.

Pure: ``cryptography`` (Ed25519) only; no database, no network.

A member's phone holds an Ed25519 key. Head office registers its public key and issues a device
certificate, signed with head office's payment key: who the device belongs to, until when, and how
much it may spend offline per day. The phone shows a one-time payment code as a QR:

    text    "TPP1:" + base64url(code), no padding
    code    version u8 (1) | cert_id 8 bytes | time_step u32 | counter u32 | Ed25519 signature 64 bytes
    signed  b"tillpoint-pay/1" | version | cert_id | time_step | counter

``time_step`` is unix time // 30. A till accepts a code whose step lies within 60 s plus one step of
drift of its own clock, whose signature verifies with the certificate's device key, whose
certificate is signed by a head-office key the till knows, not expired and not revoked, and whose
(cert_id, counter) it has never seen (recorded in the same transaction as the payment).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from terminal import b64url, base45
from terminal.canonical import canonical_json
from terminal.errors import Code, Rejected
from terminal.scan import SCANNER_ENDS

PREFIX = "TPP1:"
VERSION = 1
STEP_SECONDS = 30
WINDOW_STEPS = 2  # 60 s of validity ...
DRIFT_STEPS = 1  # ... plus one step of clock drift either way
BACK_SKEW_S = 300  # how far time sync may step a till's clock back, where no clock offset limit is set
_CODE = struct.Struct(">B8sII")
_DOMAIN = b"tillpoint-pay/1"
_CERT_DOMAIN = b"tillpoint-device-cert/1"


@dataclass(frozen=True, slots=True)
class DeviceCert:
    cert_id: bytes  # 8 bytes
    member_id: str
    device_key: bytes  # raw Ed25519 public key, 32 bytes
    issued_at: int  # unix seconds
    expires_at: int
    offline_cap: int  # minor units a day this device may pay while the till is offline
    issuer: str  # id of the head-office key that signed it
    signature: bytes = b""

    def body(self) -> bytes:
        doc = {
            "cert_id": self.cert_id.hex(),
            "member_id": self.member_id,
            "device_key": self.device_key.hex(),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "offline_cap": self.offline_cap,
            "issuer": self.issuer,
        }
        return _CERT_DOMAIN + canonical_json(doc)

    def to_doc(self) -> dict[str, Any]:
        return {
            "cert_id": self.cert_id.hex(),
            "member_id": self.member_id,
            "device_key": self.device_key.hex(),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "offline_cap": self.offline_cap,
            "issuer": self.issuer,
            "signature": self.signature.hex(),
        }


def cert_from_doc(doc: Mapping[str, Any]) -> DeviceCert:
    try:
        return DeviceCert(
            bytes.fromhex(doc["cert_id"]),
            str(doc["member_id"]),
            bytes.fromhex(doc["device_key"]),
            int(doc["issued_at"]),
            int(doc["expires_at"]),
            int(doc["offline_cap"]),
            str(doc["issuer"]),
            bytes.fromhex(doc["signature"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise Rejected(Code.DEVICE_CERT_UNKNOWN, f"Unreadable device certificate: {exc}") from exc


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def issue_cert(
    issuer_key: Ed25519PrivateKey,
    issuer: str,
    cert_id: bytes,
    member_id: str,
    device_key: bytes,
    issued_at: int,
    lifetime_s: int,
    offline_cap: int,
) -> DeviceCert:
    """Head office's side: a device certificate signed with its payment key."""
    cert = DeviceCert(cert_id, member_id, device_key, issued_at, issued_at + lifetime_s, offline_cap, issuer)
    return replace(cert, signature=issuer_key.sign(cert.body()))


def check_cert(cert: DeviceCert, issuers: Mapping[str, bytes], now: int, revoked: bool) -> None:
    """Raise Rejected unless ``cert`` is signed by a known head-office key, current and not revoked."""
    key = issuers.get(cert.issuer)
    if key is None:
        raise Rejected(Code.DEVICE_CERT_UNKNOWN, f"Device certificate signed by unknown key {cert.issuer!r}.")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(cert.signature, cert.body())
    except (InvalidSignature, ValueError) as exc:
        raise Rejected(Code.PAYMENT_CODE_FORGED, "The device certificate's signature is not head office's.") from exc
    if revoked:
        raise Rejected(Code.DEVICE_CERT_REVOKED)
    # issued "later" than now by less than a code's drift: a till's clock a little slow, a phone registered
    # within the last seconds (a code made on it may pay at once)
    if not cert.issued_at - DRIFT_STEPS * STEP_SECONDS <= now < cert.expires_at:
        raise Rejected(Code.DEVICE_CERT_EXPIRED)


@dataclass(frozen=True, slots=True)
class PaymentCode:
    cert_id: bytes
    time_step: int
    counter: int
    signature: bytes

    @property
    def code_id(self) -> str:
        """What makes the code single-use: the certificate and the device's counter."""
        return f"{self.cert_id.hex()}:{self.counter}"


def _signed(cert_id: bytes, step: int, counter: int) -> bytes:
    return _DOMAIN + _CODE.pack(VERSION, cert_id, step, counter)


def make_code(device_key: Ed25519PrivateKey, cert_id: bytes, now: int, counter: int, compact: bool = False) -> str:
    """The member's device: a fresh payment code as QR text (``compact``: the body in base45, which keeps
    the code at QR version 5; see ``body_bytes``)."""
    step = now // STEP_SECONDS
    raw = _CODE.pack(VERSION, cert_id, step, counter) + device_key.sign(_signed(cert_id, step, counter))
    return PREFIX + (base45.encode(raw) if compact else b64url.encode(raw))


CODE_BYTES = _CODE.size + 64  # a payment code's bytes: version, cert id, step, counter, signature


def body_bytes(body: str, size: int | None = None) -> bytes:
    """A code body's bytes, written in base64url (the first form) or base45 (the compact one).

    base64url is tried first; a body that is not valid base64url, or (with ``size``) does not give
    ``size`` bytes that way, is read as base45. The two forms of one size differ in length (4/3 and 3/2
    characters a byte), so a fixed-size body is never ambiguous. ValueError when neither reads."""
    if set(body) <= BASE64URL_CHARS:
        try:
            raw = b64url.decode(body)
            if size is None or len(raw) == size:
                return raw
        except ValueError:
            pass
    return base45.decode(body)


BASE64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_code(text: str) -> PaymentCode:
    """Decode the QR text; anything malformed is refused with ``payment_code_malformed``."""
    if not text.startswith(PREFIX):
        raise Rejected(Code.PAYMENT_CODE_MALFORMED, "Not a tillpoint payment code.")
    body = text[len(PREFIX) :].strip(SCANNER_ENDS)  # not spaces: a space is a base45 digit
    try:
        raw = body_bytes(body, _CODE.size + 64)
    except (ValueError, TypeError) as exc:
        raise Rejected(Code.PAYMENT_CODE_MALFORMED) from exc
    if len(raw) != _CODE.size + 64:
        raise Rejected(Code.PAYMENT_CODE_MALFORMED, f"A payment code has {_CODE.size + 64} bytes, not {len(raw)}.")
    version, cert_id, step, counter = _CODE.unpack(raw[: _CODE.size])
    if version != VERSION:
        raise Rejected(Code.PAYMENT_CODE_MALFORMED, f"Unsupported payment code version {version}.")
    return PaymentCode(cert_id, step, counter, raw[_CODE.size :])


def verify_code(code: PaymentCode, cert: DeviceCert, now: int) -> None:
    """The code's signature and time window (the certificate is checked by ``check_cert``)."""
    try:
        Ed25519PublicKey.from_public_bytes(cert.device_key).verify(
            code.signature, _signed(code.cert_id, code.time_step, code.counter)
        )
    except (InvalidSignature, ValueError) as exc:
        raise Rejected(Code.PAYMENT_CODE_FORGED) from exc
    step = now // STEP_SECONDS
    if not step - WINDOW_STEPS - DRIFT_STEPS < code.time_step <= step + DRIFT_STEPS:
        raise Rejected(Code.PAYMENT_CODE_EXPIRED)


# -- split tender --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tender:
    """How a sale is paid: points (and their value), stored value, and the rest left to the POS."""

    due: int
    points: int
    points_value: int
    stored_value: int
    rest: int


def split(due: int, points: int, points_value: int, balance: int, want_stored_value: int | None) -> Tender:
    """Split ``due`` (after coupons): the points part is already priced (``points_value``); stored
    value pays what the member asks (None = as much as the balance covers); the POS takes the rest.
    The parts always add up to ``due``."""
    if points_value > due or points_value < 0 or due < 0:
        raise Rejected(Code.INVALID_TENDER, "The points part exceeds what is due.")
    left = due - points_value
    cover = min(left, max(0, balance)) if want_stored_value is None else want_stored_value
    if cover < 0 or cover > left:
        raise Rejected(Code.INVALID_TENDER, "The stored-value part exceeds what is due.")
    if cover > balance:
        raise Rejected(Code.INSUFFICIENT_BALANCE)
    return Tender(due, points, points_value, cover, left - cover)


# -- offline risk limits -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits on stored-value payments taken while head office is unreachable (0 = no limit)."""

    per_transaction: int = 5_000
    per_member_day: int = 10_000
    terminal_total: int = 100_000  # all offline payments on this till since the last sync
    max_offline_s: int = 24 * 3600  # refuse offline payments once offline longer than this
    max_clock_age_s: int = 7 * 24 * 3600  # since the till's clock was last checked against head office
    max_clock_offset_s: int = 300  # how far the till's clock may be from head office's when last checked


@dataclass(frozen=True, slots=True)
class OfflineState:
    offline_for_s: int | None  # None: head office reachable now
    clock_age_s: int | None  # None: never checked
    member_today: int  # stored value this member paid offline today on this till
    terminal_total: int  # stored value paid offline on this till since the last sync
    clock_offset_s: float | None = None  # this till's clock minus head office's, when last checked
    clock_back_s: int = 0  # how far the till's clock reads before a time it recorded itself (see clock_back)


def clock_wrong(offset_s: float | None, limits: RiskLimits) -> bool:
    """Whether head office found this till's clock further off than the limit allows."""
    return bool(limits.max_clock_offset_s) and offset_s is not None and abs(offset_s) > limits.max_clock_offset_s


def clock_back(now: float, *seen: float | None) -> int:
    """How many seconds the till's clock (``now``) reads before the latest of the times it recorded itself
    (``seen``: its last successful sync, the start of an outage); 0 when it reads later."""
    latest = max((at for at in seen if at is not None), default=now)
    return max(0, int(latest - now))


def clock_went_back(back_s: int, limits: RiskLimits) -> bool:
    """Whether a clock reading ``back_s`` before a time this till already saw is known to be wrong: further
    back than time sync may step a clock it puts right (``max_clock_offset_s``, or ``BACK_SKEW_S`` when that
    is 0). Time offline and the age of the clock check cannot be measured on such a clock."""
    return back_s > (limits.max_clock_offset_s or BACK_SKEW_S)


def clock_refusal(state: OfflineState, limits: RiskLimits) -> Code | None:
    """The offline rules on time that every offline spend and top-up shares: how long offline, how old the
    clock check, and a clock known to be wrong (measured off by head office, or gone back)."""
    if limits.max_offline_s and (state.offline_for_s or 0) > limits.max_offline_s:
        return Code.OFFLINE_TOO_LONG
    if limits.max_clock_age_s and (state.clock_age_s is None or state.clock_age_s > limits.max_clock_age_s):
        return Code.CLOCK_NOT_SYNCED
    if clock_wrong(state.clock_offset_s, limits) or clock_went_back(state.clock_back_s, limits):
        return Code.TILL_CLOCK_WRONG
    return None


def offline_refusal(amount: int, state: OfflineState, limits: RiskLimits, device_cap: int | None) -> Code | None:
    """Why an offline payment of ``amount`` must be refused, or None. Online payments pass."""
    if state.offline_for_s is None or amount <= 0:
        return None
    code = clock_refusal(state, limits)
    if code is not None:
        return code
    if limits.per_transaction and amount > limits.per_transaction:
        return Code.OFFLINE_LIMIT_TRANSACTION
    spent = state.member_today + amount
    if (limits.per_member_day and spent > limits.per_member_day) or (device_cap is not None and spent > device_cap):
        return Code.OFFLINE_LIMIT_MEMBER_DAY
    if limits.terminal_total and state.terminal_total + amount > limits.terminal_total:
        return Code.OFFLINE_LIMIT_TERMINAL
    return None
