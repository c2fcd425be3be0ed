"""Claim tokens: the receipt's ``TPJ1:`` code that lets a customer join (or claim) a sale's points.

Pure (cryptography only); shared by the till that signs and head office that verifies.

A token is compact binary, base64url without padding::

    version   1 byte   (1)
    key_id    8 bytes  first 8 bytes of SHA-256 of the till's claim public key
    txn_id   16 bytes  the sale's UUID
    issued   4 bytes   unix seconds, big-endian
    expires  4 bytes   unix seconds, big-endian
    sig     64 bytes   Ed25519 over b"TPJ1" + the 33 bytes above

Each till makes its own Ed25519 claim key and registers the public half by its journal (an entry of
kind ``claim_key``, authenticated like every entry by the terminal's credential), so the till signs
offline and head office can check every token of that till once the journal arrived. Single use is
head office's part: a sale is claimed once (docs/enrolment.md).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from terminal import b64url

VERSION = 1
DOMAIN = b"TPJ1"
_HEAD = struct.Struct(">B8s16sII")
SIG_LEN = 64
TOKEN_LEN = _HEAD.size + SIG_LEN
TTL = 30 * 24 * 3600
"""How long a till's claim code lives. Head office also bounds a claim by when it received the sale (``SLACK``
more): the expiry is the signer's word, and whoever holds a till's key signs any."""
SLACK = 24 * 3600


class ClaimTokenError(ValueError):
    """Malformed, badly signed or expired; ``reason`` is ``forged`` or ``expired``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClaimToken:
    key_id: bytes
    txn_id: str
    issued_at: int
    expires_at: int
    signed: bytes
    sig: bytes


b64 = b64url.encode
unb64 = b64url.decode


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:8]


def sign(key: Ed25519PrivateKey, txn_id: str, issued_at: int, ttl: int) -> str:
    """The token body (without ``TPJ1:``) for sale ``txn_id``, valid ``ttl`` seconds from ``issued_at``."""
    head = _HEAD.pack(VERSION, key_id_of(public_bytes(key)), uuid.UUID(txn_id).bytes, issued_at, issued_at + ttl)
    return b64(head + key.sign(DOMAIN + head))


def parse(text: str) -> ClaimToken:
    """A token body, or ``TPJ1:<body>``, or a URL ending in ``#TPJ1:<body>``; ClaimTokenError(forged) if malformed."""
    body = text.strip().rsplit("#", 1)[-1].removeprefix("TPJ1:")
    try:
        raw = unb64(body)
    except ValueError as exc:
        raise ClaimTokenError("forged", "This is not a claim code.") from exc
    if len(raw) != TOKEN_LEN or raw[0] != VERSION:
        raise ClaimTokenError("forged", "This is not a claim code of ours.")
    _, key_id, txn, issued, expires = _HEAD.unpack(raw[: _HEAD.size])
    return ClaimToken(key_id, str(uuid.UUID(bytes=txn)), issued, expires, raw[: _HEAD.size], raw[_HEAD.size :])


def verify(token: ClaimToken, public_key: bytes, now: float) -> None:
    """Raises ClaimTokenError: ``forged`` (wrong key or signature), ``expired``."""
    if key_id_of(public_key) != token.key_id:
        raise ClaimTokenError("forged", "This claim code was not signed by that till.")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(token.sig, DOMAIN + token.signed)
    except InvalidSignature as exc:
        raise ClaimTokenError("forged", "This claim code's signature is not valid.") from exc
    if now > token.expires_at:
        raise ClaimTokenError("expired", "This claim code has expired.")


__all__ = ["ClaimToken", "ClaimTokenError", "key_id_of", "parse", "public_bytes", "sign", "verify"]
