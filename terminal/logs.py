"""Logging for a service under systemd: levels, structured fields, journald-friendly lines, and no
personal data in any of them.

    setup(level="info", fmt="auto")     one stderr handler for every logger (tillpoint, drivers, uvicorn)

Formats::

    journal  <6>tillpoint.daemon: sale approved seq=12 txn_id=0190...   journald reads the <N> prefix as
             the priority (SyslogLevelPrefix=, on by default), so `journalctl -p warning` works
    json     {"ts": ..., "level": "info", "logger": ..., "msg": ..., "seq": 12, ...} one object a line
    text     2026-11-23 09:30:00,123 INFO tillpoint.daemon: sale approved seq=12 ...
    auto     journal when stderr is connected to the journal ($JOURNAL_STREAM), else text

Structured fields are the ``extra=`` of a logging call: ``log.info("sale approved", extra={"seq": 12})``.

``Redact`` runs on every record before it is formatted, whatever the caller passed: card UIDs (and
FeliCa IDm), payment card numbers (PAN: 13-19 digits that pass the Luhn check) and e-mail addresses
in the message, the arguments and the traceback are replaced by ``[card-uid]``, ``[pan]`` and
``[email]``; fields whose key names personal data (``name``, ``display_name``, ``uid``, ``email``,
``phone``, ...) are replaced by ``[redacted]``. Member ids, seqs and txn ids are not personal data
and stay, so an incident can still be traced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, TextIO

from terminal.scan import is_card_number

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "journal", "json", "text")

# Keys of structured fields that always hold personal data or card secrets.
SENSITIVE_KEYS = frozenset(
    {
        "name",
        "display_name",
        "member_name",
        "email",
        "phone",
        "address",
        "birthdate",
        "birthday",
        "uid",
        "card_uid",
        "idm",
        "pan",
        "card_number",
        "qr",
        "qr_text",
        "text",
        "code_text",
    }
)

# 4-, 7- and 10-byte ISO 14443 UIDs and 8-byte FeliCa IDm, as hex (optionally with ':' between bytes).
# A UUID's groups are excluded by refusing neighbours that are hex, '-' or word characters.
_HEX_ID = re.compile(
    r"(?<![0-9A-Za-z_-])(?:[0-9A-Fa-f]{20}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{8}"
    r"|(?:[0-9A-Fa-f]{2}:){3,9}[0-9A-Fa-f]{2})(?![0-9A-Za-z_-])"
)
_UID_WORD = re.compile(r"(?i)\b(uid|idm|card)(\s*[=:]\s*|\s+)(?:0x)?[0-9A-Fa-f:]{6,}")
_DIGITS = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

_handler: logging.Handler | None = None


def _hex_id(match: re.Match[str]) -> str:
    text = match.group(0)
    has_digit = any(c.isdigit() for c in text)
    has_letter = any(c.isalpha() for c in text)
    # An all-digit run is an amount or a count far more often than a UID; plain words are words.
    return "[card-uid]" if (has_digit and has_letter) or ":" in text else text


def _pan(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[pan]" if is_card_number(digits) else match.group(0)


def redact(text: str) -> str:
    """``text`` without card UIDs, PANs or e-mail addresses."""
    text = _EMAIL.sub("[email]", text)
    text = _UID_WORD.sub(lambda m: f"{m.group(1)}{m.group(2)}[card-uid]", text)
    text = _DIGITS.sub(_pan, text)
    return _HEX_ID.sub(_hex_id, text)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller attached with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class Redact(logging.Filter):
    """Rewrites each record so that no card UID, PAN or personal field can be formatted from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a caller's bad format string still gets logged
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in fields_of(record).items():
            setattr(record, key, "[redacted]" if key.lower() in SENSITIVE_KEYS else _clean(value))
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def _pairs(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
    return (" " + " ".join(parts)) if parts else ""


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message key=value ...``; every line of a traceback keeps the prefix."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        text = f"{record.name}: {record.msg}{_pairs(fields_of(record))}"
        if record.exc_text:
            text += "\n" + record.exc_text
        return "\n".join(prefix + line for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.msg,
            **fields_of(record),
        }
        if record.exc_text:
            body["exc"] = record.exc_text
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.msg}"
        text += _pairs(fields_of(record))
        return text + ("\n" + record.exc_text if record.exc_text else "")


def stderr_is_journal(stream: TextIO = sys.stderr) -> bool:
    """systemd sets $JOURNAL_STREAM to the device:inode of the journal socket it gave us."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return bool(wanted) and wanted == f"{st.st_dev}:{st.st_ino}"


def formatter(fmt: str, stream: TextIO = sys.stderr) -> logging.Formatter:
    if fmt == "auto":
        fmt = "journal" if stderr_is_journal(stream) else "text"
    return {"journal": JournalFormatter, "json": JsonFormatter}.get(fmt, TextFormatter)()


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records, redacted, to ``stream`` (stderr); safe to call again (SIGHUP)."""
    global _handler
    if level not in LEVELS or fmt not in FORMATS:
        raise ValueError(f"log level must be one of {LEVELS} and format one of {FORMATS}")
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redact())
    handler.setFormatter(formatter(fmt, stream or sys.stderr))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _handler = handler
    adopt("uvicorn", "uvicorn.error", "uvicorn.access")
    return handler


def adopt(*names: str) -> None:
    """Route loggers that a library configured with handlers of its own (uvicorn does, each time a
    server is made) through ours, so that their records are redacted and formatted too."""
    if _handler is None:
        return
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
