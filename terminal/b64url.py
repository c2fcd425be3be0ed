"""Base64url without padding (RFC 4648 section 5), the one encoding of every code, key, token and cursor
tillpoint makes. Pure.

``decode`` accepts text with or without its padding and raises ``ValueError`` (``binascii.Error``) for
text that is not base64url."""

from __future__ import annotations

import base64


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
