"""Check-in codes: the rotating QR a till (or a door display) shows, that a member's wallet scans to check in.

Pure (cryptography only); shared by the till that signs and head office that verifies (docs/checkin.md).

A code is compact binary, base64url without padding (103 characters), usually inside a link to head
office's wallet (``https://hq.example/wallet/checkin?c=<code>``) so a phone's camera app opens it::

    version   1 byte   (1)
    key_id    8 bytes  first 8 bytes of SHA-256 of the till's claim public key (sync.claims)
    step      4 bytes  unix seconds // 30, big-endian
    sig      64 bytes  Ed25519 over b"TPK1" + the 13 bytes above + terminal id + NUL + store id

The till signs offline with the claim key it already has (registered at head office by its journal, an
entry of kind ``claim_key``). The terminal and the store are signed but not sent: head office finds them
from the key id (its ``claim_keys`` and ``terminals`` rows), so a code cannot name another store than its
till's. Head office accepts the current step and the one before it (a till's clock a little behind, a
member who took a few seconds): a code lives 30 to 60 seconds. Once per member, store and day is head
office's part (``hq.checkins``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.claims import key_id_of, public_bytes
from terminal import b64url

VERSION = 1
DOMAIN = b"TPK1"
PREFIX = "TPK1:"
STEP_SECONDS = 30
STEPS_ACCEPTED = 2
"""The current step and the one before it."""
_HEAD = struct.Struct(">B8sI")
SIG_LEN = 64
CODE_LEN = _HEAD.size + SIG_LEN
LINK_PATH = "/wallet/checkin"


class CheckinCodeError(ValueError):
    """Malformed, badly signed or expired; ``reason`` is ``forged`` or ``expired``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckinCode:
    key_id: bytes
    step: int
    head: bytes
    sig: bytes


def step_of(now: float) -> int:
    return int(now) // STEP_SECONDS


def _signed(head: bytes, terminal_id: str, store_id: str) -> bytes:
    return DOMAIN + head + terminal_id.encode() + b"\x00" + store_id.encode()


def sign(key: Ed25519PrivateKey, terminal_id: str, store_id: str, step: int) -> str:
    """The code (base64url, no prefix) of this till for time step ``step``."""
    head = _HEAD.pack(VERSION, key_id_of(public_bytes(key)), step)
    return b64url.encode(head + key.sign(_signed(head, terminal_id, store_id)))


def link(base_url: str, code: str) -> str:
    """The link a QR carries: head office's wallet check-in page with the code."""
    return f"{base_url.rstrip('/')}{LINK_PATH}?c={quote(code, safe='')}"


def _body(text: str) -> str:
    text = text.strip()
    if "?" in text or text.startswith(("http://", "https://")):
        values = parse_qs(urlsplit(text).query).get("c")
        text = values[-1] if values else ""
    return text.removeprefix(PREFIX)


def parse(text: str) -> CheckinCode:
    """A code, ``TPK1:<code>``, or a link with ``?c=<code>``; CheckinCodeError(forged) if malformed."""
    try:
        raw = b64url.decode(_body(text))
    except ValueError as exc:
        raise CheckinCodeError("forged", "This is not a check-in code.") from exc
    if len(raw) != CODE_LEN or raw[0] != VERSION:
        raise CheckinCodeError("forged", "This is not a check-in code of ours.")
    _, key_id, step = _HEAD.unpack(raw[: _HEAD.size])
    return CheckinCode(key_id, step, raw[: _HEAD.size], raw[_HEAD.size :])


def verify(code: CheckinCode, public_key: bytes, terminal_id: str, store_id: str, now: float) -> None:
    """Raises CheckinCodeError: ``forged`` (another key, another till or store, a bad signature), ``expired``
    (not the current step nor the one before it, by head office's clock)."""
    if key_id_of(public_key) != code.key_id:
        raise CheckinCodeError("forged", "This check-in code was not signed by that till.")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(code.sig, _signed(code.head, terminal_id, store_id))
    except InvalidSignature as exc:
        raise CheckinCodeError("forged", "This check-in code's signature is not valid.") from exc
    current = step_of(now)
    if not current - STEPS_ACCEPTED < code.step <= current:
        raise CheckinCodeError("expired", "This check-in code has expired: scan the one the till shows now.")


__all__ = ["CheckinCode", "CheckinCodeError", "link", "parse", "sign", "step_of", "verify"]
