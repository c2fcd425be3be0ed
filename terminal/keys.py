"""Secrets kept in files beside, never inside, the database: the card-hash key and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from terminal.credentials import CARD_KEY_BYTES
from terminal.ownership import owned_as

log = logging.getLogger("tillpoint.keys")


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """A new secret file at ``path`` (mode 0600, its directory's owner, or the owner of the file it replaces), synced
    to disk; FileExistsError if one is, unless ``replace``.

    Written whole beside it first and then linked (or, with ``replace``, renamed) into place: a process killed, or a
    power cut, while the secret was written left an empty file at ``path`` that later starts took for the secret
    (an API token of nothing, which refuses every request)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            owned_as(handle.fileno(), path)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError when another is there: never overwritten
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_card_key(key: bytes, path: Path) -> bytes:
    """``key``, read from ``path``, when it can be a card-hash key (at least 16 bytes); else ValueError."""
    if len(key) < 16:
        raise ValueError(f"card-hash key {path} is shorter than 16 bytes")
    return key


def load_or_create_key(path: Path) -> bytes:
    """The card-hash key at ``path``; made (32 random bytes, mode 0600) the first time."""
    if not path.exists():
        write_private(path, secrets.token_bytes(CARD_KEY_BYTES))
    return check_card_key(path.read_bytes(), path)


def load_or_create_token(path: Path) -> str:
    """A bearer token stored at ``path`` (mode 0600), made the first time, and made again when the file holds none
    (left empty by a crash as it was made, by an older release, or emptied): no client can hold the token of an
    empty file, and the daemon would refuse every request of the local API. Said in the log as a warning."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32).encode())
    token = path.read_text().strip()
    if not token:
        write_private(path, secrets.token_urlsafe(32).encode(), replace=True)
        token = path.read_text().strip()
        log.warning(
            "the local API token file %s held no token (a write cut short): a new token was made there; "
            "give it to the POS and the devices that call this till's API",
            path,
        )
    return token


KEY_CHECK_LABEL = b"tillpoint card-hash key check"


def key_check(key: bytes) -> str:
    """A value that tells this card-hash key from any other without giving it away (kept in the database)."""
    return hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:32]


class KeyLost(Exception):
    """The card-hash key file is gone or is not the key this till's cards were hashed with."""


def card_key(path: Path, held_check: str | None, cards: int) -> tuple[bytes, str]:
    """The till's card-hash key and its check, made only for a till that has never hashed a card.

    ``held_check``: the check the database keeps (None: none yet); ``cards``: cards in its cache. A
    missing key on a till that has cards, or a key that is not the one its cards were hashed with, raises
    ``KeyLost``: a new random key would turn every known card into an unknown one, silently."""
    if not path.exists():
        if held_check is not None or cards:
            raise KeyLost(
                f"the card-hash key {path} is missing, and this till's database holds {cards} cards "
                "hashed with it: restore the file from backup (it is the chain's key: head office "
                "or another till has it). A new key would make every card unknown."
            )
        write_private(path, secrets.token_bytes(CARD_KEY_BYTES))
    key = load_or_create_key(path)
    check = key_check(key)
    if held_check is not None and not hmac.compare_digest(check, held_check):
        raise KeyLost(
            f"the card-hash key {path} is not the key this till's cards were hashed with: restore "
            "the right file (its check does not match the database's)"
        )
    return key, check
