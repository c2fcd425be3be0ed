"""Bounded waiting for something another thread or process does.

The rule in these tests: never sleep and then assert that something happened. Wait for a signal
with a bound instead: ``wait_until(check, timeout, what)``, a recorder's ``next()``/``event()``
(tests/fixtures/events.py), an ``Event.wait(timeout)``, a line the server writes when it is ready
(the event stream's ": connected", READY=1 on the notify socket), or a fake clock
(tests/fixtures/clock.py) when the code takes one. Bounds are generous: a loaded machine is slow,
not wrong. A sleep is fine only when the time itself is the subject (a slow card, a pause between
keys, a window in which nothing may happen), with a comment saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition", step: float = 0.05) -> Any:
    """The first truthy value of ``check()``; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
