"""terminal.backoff: the one retry delay of the readers, scanners, hotkeys and the sync loop."""

from __future__ import annotations

import pytest

from sync.client import SyncLoop
from terminal.backoff import Backoff, delay
from terminal.errors import Code, Rejected


def test_backoff_grows_with_jitter_and_caps() -> None:
    assert delay(1, 2.0, 60.0, rand=lambda: 0.0) == 1.0
    assert delay(3, 2.0, 60.0, rand=lambda: 1.0) == 8.0
    assert delay(30, 2.0, 60.0, rand=lambda: 1.0) == 60.0


def test_without_jitter_it_doubles_from_first_up_to_cap() -> None:
    assert [delay(n, 0.5, 10.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert delay(0, 0.5, 10.0) == 0.5  # no failure yet: the first delay


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999])
def test_jitter_stays_between_half_and_all(r: float) -> None:
    assert 2.0 <= delay(3, 1.0, 60.0, rand=lambda: r) <= 4.0
    assert delay(3, 1.0, 60.0, rand=lambda: r) == pytest.approx(4.0 * (0.5 + 0.5 * r))


def test_a_long_outage_does_not_overflow() -> None:
    # A reader unplugged for days counts tens of thousands of failures.
    assert delay(100_000, 0.25, 5.0) == 5.0
    assert delay(10**9, 0.25, 5.0, rand=lambda: 1.0) == 5.0


def test_backoff_counts_failures_and_resets() -> None:
    backoff = Backoff(0.25, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.next() == 0.25


def test_backoff_uses_the_random_source_it_is_given() -> None:
    draws = iter([0.0, 1.0])
    backoff = Backoff(1.0, 60.0, rand=lambda: next(draws))
    assert backoff.next() == 0.5
    assert backoff.next() == 2.0


def test_the_sync_loop_backs_off_with_the_shared_helper() -> None:
    class Failing:
        def sync_once(self, pull: bool) -> None:
            raise Rejected(Code.STORAGE_FULL)

    loop = SyncLoop(Failing(), push_interval=2.0, pull_interval=5.0, backoff_max=60.0, rand=lambda: 1.0)  # type: ignore[arg-type]
    assert [loop._round(pull=False) for _ in range(3)] == [2.0, 4.0, 8.0]
    loop.rand = lambda: 0.0
    assert loop._round(pull=False) == 8.0  # 4th failure: half of 16
