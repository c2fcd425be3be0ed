"""Delays between attempts: the one backoff of the readers, scanners, hotkeys and sync loops.

Pure: the number of the attempt that just failed in, seconds to wait out. Jitter, where wanted,
comes from a random source the caller hands in, so a test can pin it.

    delay(1, first=0.5, cap=10)   0.5, then 1, 2, 4, 8, 10, 10, ...
    delay(3, 2, 60, rand=random)  between half and all of 8
"""

from __future__ import annotations

from collections.abc import Callable

Rand = Callable[[], float]
"""A source of floats in [0, 1), such as ``random.random``."""

_MAX_DOUBLINGS = 64  # 2**64 times any sane first delay is far past any cap; avoids float overflow


def delay(attempt: int, first: float, cap: float, rand: Rand | None = None) -> float:
    """Seconds to wait after ``attempt`` failures in a row (1 is the first failure): ``first``
    doubled once per further failure, at most ``cap``. With ``rand``: between half and all of it."""
    ceiling = min(cap, first * 2.0 ** min(max(0, attempt - 1), _MAX_DOUBLINGS))
    if rand is None:
        return float(ceiling)
    return float(ceiling * (0.5 + 0.5 * rand()))


class Backoff:
    """Counts failures in a row for a retry loop: ``next()`` after a failure, ``reset()`` after a success."""

    def __init__(self, first: float, cap: float, rand: Rand | None = None) -> None:
        self.first = first
        self.cap = cap
        self.rand = rand
        self.failures = 0

    def next(self) -> float:
        """Count one more failure; the delay to wait before the next attempt."""
        self.failures += 1
        return delay(self.failures, self.first, self.cap, self.rand)

    def reset(self) -> None:
        self.failures = 0
