"""Handing driver events to their consumer from the driver's own thread.

A consumer's bug must not stop a reader or a scanner: the exception is logged (with its traceback,
never with the event itself, which may carry a scanned code's text) and the driver goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from terminal.model import ReaderEvent

log = logging.getLogger("drivers")

T = TypeVar("T")


def deliver(sink: Callable[[T], object] | None, event: T, what: str) -> None:
    """Call ``sink(event)`` when there is a sink; log and swallow what it raises."""
    if sink is None:
        return
    try:
        sink(event)
    except Exception:
        log.exception("%s sink failed", what)


def reader_event(
    sink: Callable[[ReaderEvent], None] | None, reader: str, kind: str, detail: str, code: str = ""
) -> None:
    """Deliver a ``ReaderEvent`` (added, removed, error with its ``ReaderProblem`` code) stamped now."""
    deliver(sink, ReaderEvent(reader, kind, detail, time.time(), code), "reader")
