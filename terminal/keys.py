"""Secrets kept in files beside, never inside, the database: the card-hash key and API tokens."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from terminal.credentials import CARD_KEY_BYTES


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def load_or_create_key(path: Path) -> bytes:
    """The card-hash key at ``path``; made (32 random bytes, mode 0600) the first time."""
    if not path.exists():
        _write_private(path, secrets.token_bytes(CARD_KEY_BYTES))
    key = path.read_bytes()
    if len(key) < 16:
        raise ValueError(f"card-hash key {path} is shorter than 16 bytes")
    return key


def load_or_create_token(path: Path) -> str:
    """A bearer token stored at ``path`` (mode 0600), made the first time."""
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()
