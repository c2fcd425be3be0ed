"""Card identifiers and their keyed hashes. Pure: hmac/hashlib only.

A card UID (or FeliCa IDm) is stored and sent only as HMAC-SHA256 under the chain's card-hash
key. The key lives in its own file, outside the database, so a copied database does not give
away which physical cards belong to whom.
"""

from __future__ import annotations

import hashlib
import hmac

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
