"""The files the config names, read as the daemon's start reads them: a master key file (``reader.sun_key_file``,
``reader.felica_key_file``) and a receipt template (``receipts.templates``). One path for both the start and
``tillpoint doctor``: a file the start refuses (``ConfigFileError``, naming the key and the file) is the one
doctor fails with the same words."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from terminal.credentials import parse_master_key
from terminal.errors import ConfigFileError, Rejected

if TYPE_CHECKING:
    from terminal.receipts.templates import Template


def why(exc: Exception) -> str:
    """Why a file could not be read: an OS error's reason alone (its file is named beside it), else the error."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def read_key_file(path: str, key: str = "reader.sun_key_file") -> bytes | None:
    """A 16-byte master key file (raw, or 32 hex digits); None when no file is configured."""
    if not path:
        return None
    try:
        return parse_master_key(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigFileError(key, f"a readable file of 16 raw bytes or 32 hex digits ({path}: {why(exc)})") from exc
    except ValueError as exc:
        raise ConfigFileError(key, f"a file of 16 raw bytes or 32 hex digits ({path}: {exc})") from exc


def read_template(path: str) -> Template:
    """The receipt template of ``path`` (one of ``receipts.templates``), read and parsed."""
    from terminal.receipts.templates import load_template

    try:
        return load_template(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, Rejected) as exc:
        raise ConfigFileError("receipts.templates", f"a readable receipt template ({path}: {why(exc)})") from exc
