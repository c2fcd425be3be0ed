"""Global hotkeys: the burst filter on recorded event streams (a person's key presses, a barcode
scanner's bursts on the same keyboard port), the key map, and the evdev listener's degraded states."""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.hotkeys import (
    DEFAULT_KEYS,
    KEY_CODES,
    BurstFilter,
    Chord,
    Hit,
    HotkeyListener,
    Unavailable,
    detect,
    parse_chord,
    parse_keymap,
)
from tests.fixtures.evdev import PipeDevice

KEYMAP = parse_keymap(DEFAULT_KEYS)
F9, F10, F11, ESC, ENTER = KEY_CODES["F9"], KEY_CODES["F10"], KEY_CODES["F11"], KEY_CODES["ESC"], KEY_CODES["ENTER"]
CTRL, SHIFT = 29, 42
# US layout key codes of what a scanner types
CODES = {
    **dict(zip("1234567890", range(2, 12), strict=False)),
    **dict(zip("qwertyuiop", range(16, 26), strict=False)),
    **dict(zip("asdfghjkl", range(30, 39), strict=False)),
    **dict(zip("zxcvbnm", range(44, 51), strict=False)),
}

Events = list[tuple[int, int, float]]


def press(code: int, at: float, hold: float = 0.09) -> Events:
    """A person's key press: down, held ~90 ms, up."""
    return [(code, 1, at), (code, 0, at + hold)]


def scan(text: str, at: float, per_key: float = 0.004, suffix: int | None = ENTER, extra: Iterable[int] = ()) -> Events:
    """What a keyboard-wedge scanner types: each key down/up within a few ms, then Enter."""
    events: Events = []
    t = at
    codes = [*extra, *(CODES[ch] for ch in text.lower())] + ([suffix] if suffix else [])
    for code in codes:
        events += [(code, 1, t), (code, 0, t + per_key / 2)]
        t += per_key
    return events


def actions(events: Events, gap: float = 0.04) -> list[str]:
    return [hit.action for hit in detect(sorted(events, key=lambda e: e[2]), KEYMAP, gap)]


def test_a_person_pressing_the_hotkeys() -> None:
    events = press(F9, 0.0) + press(F10, 2.0) + press(F11, 4.0) + press(ESC, 6.0)
    assert actions(events) == ["identify", "coupon", "pay", "cancel"]


def test_a_scan_is_never_a_hotkey_even_with_esc_or_function_keys_inside() -> None:
    # GS1 data with ESC, a scanner with an F10 prefix, a scan ending in F11 instead of Enter.
    events = scan("0104012345", 1.0, extra=[ESC]) + scan("abc123", 3.0, extra=[F10]) + scan("999", 5.0, suffix=F11)
    events += scan("coupon", 7.0, extra=[F9, F9])
    assert actions(events) == []


def test_hotkeys_right_before_and_after_a_scan_still_count() -> None:
    events = press(F9, 0.0) + scan("4006381333931", 0.3) + press(F11, 0.5)
    assert actions(events) == ["identify", "pay"]


def test_a_hotkey_that_starts_a_burst_is_part_of_the_scan() -> None:
    events = [(F9, 1, 1.0), (F9, 0, 1.002)] + scan("12345", 1.005)
    assert actions(events) == []


def test_a_slow_scanner_still_reads_as_a_burst_within_the_gap() -> None:
    assert actions(scan("12345", 0.0, per_key=0.025, extra=[ESC])) == []
    # A gap shorter than the scanner's key interval would let its ESC through: the gap is configurable.
    assert actions(scan("12345", 0.0, per_key=0.025, extra=[ESC]), gap=0.02) == ["cancel"]


def test_holding_a_key_is_one_press_and_releases_do_not_count() -> None:
    events = [(F11, 1, 0.0)] + [(F11, 2, 0.5 + i * 0.033) for i in range(20)] + [(F11, 0, 1.2)]
    assert actions(events) == ["pay"]


def test_modifiers_make_a_different_chord() -> None:
    keymap = parse_keymap({"identify": "Ctrl+F9", "pay": "F9"})
    held = [(CTRL, 1, 0.0), (F9, 1, 0.02), (F9, 0, 0.1), (CTRL, 0, 0.15)]
    assert [h.action for h in detect(held, keymap)] == ["identify"]
    assert [h.action for h in detect([(F9, 1, 1.0), (F9, 0, 1.1)], keymap)] == ["pay"]
    # Shift is held by a scanner for capitals: a modifier is not a key of the burst on its own.
    assert [h.action for h in detect([(SHIFT, 1, 0.0), (SHIFT, 0, 0.01), (F9, 1, 0.02)], keymap)] == ["pay"]


def test_the_filter_decides_only_after_the_gap() -> None:
    flt = BurstFilter(KEYMAP, gap=0.04)
    assert flt.feed(F9, 1, 10.0) == []
    assert flt.flush(10.03) == []  # a scan could still follow
    assert flt.flush(10.05) == [Hit("identify", 10.0)]
    assert flt.flush(10.06) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([*CODES.values(), F9, F10, F11, ESC]), min_size=2, max_size=40),
    st.floats(min_value=0.001, max_value=0.035),
    st.sampled_from([ENTER, None]),
)
def test_no_burst_ever_yields_a_hotkey(codes: list[int], per_key: float, suffix: int | None) -> None:
    events: Events = []
    for i, code in enumerate([*codes, *([suffix] if suffix else [])]):
        events += [(code, 1, i * per_key), (code, 0, i * per_key + per_key / 3)]
    assert actions(events) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([F9, F10, F11, ESC]), st.floats(min_value=0.05, max_value=3)), max_size=10))
def test_spaced_presses_are_all_hotkeys(presses: list[tuple[int, float]]) -> None:
    t, events, want = 0.0, [], []
    for code, pause in presses:
        t += pause
        events += press(code, t, hold=0.03)
        want.append({F9: "identify", F10: "coupon", F11: "pay", ESC: "cancel"}[code])
    assert actions(events) == want


def test_key_names() -> None:
    assert parse_chord("F9") == Chord(67)
    assert parse_chord("esc") == parse_chord("Escape") == Chord(1)
    assert parse_chord("Ctrl+Shift+F12") == Chord(88, frozenset({"CTRL", "SHIFT"}))
    for bad in ("F99", "Hyper+F9", "", "Ctrl+"):
        with pytest.raises(ValueError):
            parse_chord(bad)
    with pytest.raises(ValueError, match="bound to both"):
        parse_keymap({"identify": "F9", "pay": "f9"})
    assert parse_keymap({"identify": "", "pay": "F11"}) == {Chord(87): "pay"}


# -- the listener ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.actions: queue.Queue[str] = queue.Queue()
        self.statuses: list[dict[str, Any]] = []
        self.changed = threading.Event()

    def action(self, name: str) -> None:
        self.actions.put(name)

    def status(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)
        self.changed.set()

    def wait_state(self, state: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.statuses:
                if s["state"] == state:
                    return s
            self.changed.wait(0.05)
            self.changed.clear()
        raise AssertionError(f"no {state!r} status; saw {self.statuses}")


def listener(rec: Recorder, devices: list[str], **kw: Any) -> HotkeyListener:
    return HotkeyListener(devices, KEYMAP, rec.action, on_status=rec.status, **kw)


def test_the_listener_reads_hotkeys_and_ignores_scans() -> None:
    rec = Recorder()
    board = PipeDevice("/dev/input/event7")
    hk = listener(rec, ["/dev/input/event7"], opener=lambda p: board)
    hk.start()
    try:
        assert rec.wait_state("listening")["devices"] == ["/dev/input/event7"]
        board.send(scan("12345", 0.0, extra=[ESC]), offset=time.time())
        # A person's key comes well after the scan's last key (more than the 40 ms gap): that pause
        # is what makes F9 a hotkey and not part of the burst; it is the subject, not a readiness wait.
        time.sleep(0.2)
        board.send(press(F9, 0.0), offset=time.time())
        assert rec.actions.get(timeout=2) == "identify"
        assert rec.actions.empty()
        board.unplug()
        assert "unplugged" in rec.wait_state("no_device")["detail"]
        assert board.closed
    finally:
        hk.stop()
    assert hk.status["state"] == "stopped"


def test_no_permission_is_a_clear_status() -> None:
    rec = Recorder()

    def denied(path: str) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    hk = listener(rec, ["/dev/input/event3"], opener=denied)
    hk.start()
    try:
        detail = rec.wait_state("no_permission")["detail"]
        assert "/dev/input/event3" in detail and "input" in detail
    finally:
        hk.stop()


def test_no_keyboard_and_a_missing_device_are_clear_statuses(tmp_path: Path) -> None:
    rec = Recorder()
    hk = listener(rec, ["auto"], lister=lambda: [])
    hk.start()
    try:
        assert "no keyboard" in rec.wait_state("no_device")["detail"]
    finally:
        hk.stop()
    rec = Recorder()
    hk = listener(rec, [str(tmp_path / "event9")])  # the real evdev opener, a path that does not exist
    hk.start()
    try:
        assert "event9" in rec.wait_state("no_device")["detail"]
    finally:
        hk.stop()


def test_without_python_evdev_the_listener_says_so_and_stops_trying() -> None:
    rec = Recorder()

    def missing(path: str) -> Any:
        raise Unavailable("python-evdev is not installed (pip install 'tillpoint[wedge]')")

    hk = listener(rec, ["/dev/input/event1"], opener=missing)
    hk.start()
    assert "evdev" in rec.wait_state("unavailable")["detail"]
    assert hk._thread is not None
    hk._thread.join(2)
    assert not hk._thread.is_alive()
    hk.stop()
