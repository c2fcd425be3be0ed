"""What the benchmarks share: timing a call n times, and a nearest-rank percentile.

Imported by the bench scripts as ``from stats import ...`` (a script's own folder is on its path).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def nearest_rank(values: list[float], q: float) -> float:
    """The value below which a fraction ``q`` of ``values`` lies (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    """Seconds each of ``fn(0)`` ... ``fn(n - 1)`` took."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out
