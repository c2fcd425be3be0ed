"""drivers.holdoff: the debounce both card readers (PC/SC and nfcpy) share; no reader needed."""

from __future__ import annotations

from drivers import nfcpy_reader, pcsc
from drivers.holdoff import HoldOff


def test_holdoff_rules() -> None:
    holdoff = HoldOff(1.0)
    assert holdoff.is_new_tap("r", "A", at=10.0)
    holdoff.left("r", at=12.0)
    assert not holdoff.is_new_tap("r", "A", at=12.5)  # back 0.5 s after leaving: a wobble
    holdoff.left("r", at=13.0)
    assert holdoff.is_new_tap("r", "A", at=14.5)  # 1.5 s after leaving: lifted and tapped again
    assert holdoff.is_new_tap("r", "B", at=14.6)  # another card is always a tap
    assert holdoff.is_new_tap("other reader", "B", at=14.7)
    assert HoldOff(0.0).is_new_tap("r", "A", at=1.0) and HoldOff(0.0).is_new_tap("r", "A", at=1.0)


def test_holdoff_rules_one_reader_released_each_time() -> None:
    # The nfcpy reader's pattern: every connect is followed by a release of the same tag.
    holdoff = HoldOff(1.0)
    assert holdoff.is_new_tap("nfcpy", "A", at=10.0)
    holdoff.left("nfcpy", at=11.0)
    assert not holdoff.is_new_tap("nfcpy", "A", at=11.5)
    holdoff.left("nfcpy", at=12.0)
    assert holdoff.is_new_tap("nfcpy", "A", at=13.5)
    holdoff.left("nfcpy", at=14.0)
    assert holdoff.is_new_tap("nfcpy", "B", at=14.1)


def test_a_card_that_never_left_is_the_same_tap() -> None:
    holdoff = HoldOff(1.0)
    assert holdoff.is_new_tap("r", "A", at=10.0)
    assert not holdoff.is_new_tap("r", "A", at=20.0)  # seen again without leaving (a reopened reader)
    holdoff.left("r", at=21.0)
    assert holdoff.is_new_tap("r", "A", at=22.5)


def test_leaving_an_empty_reader_changes_nothing() -> None:
    holdoff = HoldOff(1.0)
    holdoff.left("r", at=5.0)
    assert holdoff.is_new_tap("r", "A", at=5.1)


def test_both_readers_use_the_one_holdoff() -> None:
    assert pcsc.HoldOff is HoldOff and nfcpy_reader.HoldOff is HoldOff
