"""drivers.wedge: key-event streams as a scanner sends them, decoded by the same function the device
loop calls; the loop itself on a pipe-backed device; serial scanners on a real pseudo-terminal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import DriverUnavailable
from drivers.sim import SimScanner
from drivers.wedge import (
    KEY_ENTER,
    KEY_KPENTER,
    KEY_LEFTSHIFT,
    KEY_TAB,
    LAYOUTS,
    KeyDecoder,
    LineSplitter,
    SerialScanner,
    WedgeScanner,
    decode_events,
    open_evdev,
)
from terminal.model import QrRead
from tests.fixtures.evdev import PipeDevice
from tests.fixtures.events import Recorder
from tests.waiting import wait_until

Event = tuple[int, int, float]
SHIFT = KEY_LEFTSHIFT
# Key codes from linux/input-event-codes.h, by the US key cap they sit under.
K = {
    "1": 2,
    "2": 3,
    "0": 11,
    "-": 12,
    "=": 13,
    "q": 16,
    "w": 17,
    "e": 18,
    "t": 20,
    "y": 21,
    "p": 25,
    "[": 26,
    "a": 30,
    "s": 31,
    "b": 48,
    "m": 50,
    ";": 39,
    "'": 40,
    ",": 51,
    ".": 52,
    "/": 53,
    "z": 44,
    "space": 57,
    "capslock": 58,
    "lalt": 56,
    "ralt": 100,
    "kp0": 82,
    "kp5": 76,
    "kp8": 72,
    "lctrl": 29,
}


def press(*keys: str | tuple[str, ...], t0: float = 100.0, step: float = 0.003) -> list[Event]:
    """Key strokes as a scanner sends them: a tuple is modifiers + key (("shift", "t") is Shift+T)."""
    events: list[Event] = []
    t = t0
    for stroke in keys:
        *mods, key = stroke if isinstance(stroke, tuple) else (stroke,)
        codes = [SHIFT if m == "shift" else K[m] for m in mods]
        main = {"enter": KEY_ENTER, "tab": KEY_TAB, "kpenter": KEY_KPENTER}.get(key) or K[key]
        events += [(c, 1, t) for c in codes] + [(main, 1, t), (main, 0, t)] + [(c, 0, t) for c in reversed(codes)]
        t += step
    return events


# "TPM1:Ab-_" as a US-programmed scanner types it: the key codes a US keyboard uses for each character.
US_TPM1 = press(
    ("shift", "t"),
    ("shift", "p"),
    ("shift", "m"),
    "1",
    ("shift", ";"),
    ("shift", "a"),
    "b",
    "-",
    ("shift", "-"),
    "enter",
)


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("us", "TPM1:Ab-_"),  # right: the scanner's own layout
        ("fr", "TP?&MQb)°"),  # what an AZERTY host would make of the same keys
        ("de", "TPM1ÖAbß?"),  # ... a QWERTZ host
        ("jp", "TPM1+Ab-="),  # ... a JIS host
    ],
)
def test_the_scanner_layout_decides_not_the_host(layout: str, expected: str) -> None:
    # The device is grabbed and read as raw key codes, so the till's own layout never applies:
    # ``layout`` must be the one the scanner is programmed for; the others show why.
    assert decode_events(US_TPM1, layout) == [expected]


def test_scanners_programmed_for_other_layouts() -> None:
    # An AZERTY-programmed scanner types digits with Shift, ':' on the '.' key, 'q' on the 'a' key.
    azerty = press(("shift", "t"), ("shift", "p"), ("shift", ";"), ("shift", "1"), ".", "a", ("shift", "2"), "enter")
    assert decode_events(azerty, "fr") == ["TPM1:q2"]
    # QWERTZ: 'z' and 'y' swapped, ':' is Shift+'.', '-' on the '/' key, '_' Shift+'/'.
    qwertz = press(("shift", "y"), "z", ("shift", "."), "/", ("shift", "/"), "enter")
    assert decode_events(qwertz, "de") == ["Zy:-_"]
    # JIS: ':' has its own key (the US apostrophe), '@' sits on '[', '"' is Shift+2.
    jis = press(("shift", "t"), ("shift", "p"), ("shift", "m"), "1", "'", "[", ("shift", "2"), "enter")
    assert decode_events(jis, "jp") == ['TPM1:@"']


def test_terminators() -> None:
    assert decode_events(press("a", "enter", "b", "kpenter", "s", "tab")) == ["a", "b", "s"]
    # Only Enter configured: Tab is no terminator (and types nothing); the scan still ends on Enter.
    assert decode_events(press("a", "tab", "b", "enter"), terminators=("enter",)) == ["ab"]
    # An empty scan (a stray Enter) is no scan.
    assert decode_events(press("enter", "enter")) == []


def test_a_scanner_with_no_suffix_ends_on_silence() -> None:
    decoder = KeyDecoder(idle_timeout=0.1)
    for code, value, at in press("a", "b", t0=10.0):
        assert decoder.feed(code, value, at) == []
    assert decoder.flush(10.05) == []
    assert decoder.flush(10.2) == ["ab"]
    # The next key after a silence starts a new scan; the old one comes out first.
    decoder = KeyDecoder(idle_timeout=0.1)
    out = [s for c, v, t in press("a", t0=1.0) + press("b", t0=2.0) for s in decoder.feed(c, v, t)]
    assert out == ["a"] and decoder.flush(3.0) == ["b"]


def test_key_repeat_and_key_up_type_nothing() -> None:
    events = [(K["a"], 1, 0.0), (K["a"], 2, 0.01), (K["a"], 2, 0.02), (K["a"], 0, 0.03), (KEY_ENTER, 1, 0.04)]
    assert decode_events(events) == ["a"]


def test_caps_lock_alt_codes_altgr_and_dead_keys() -> None:
    assert decode_events(press("capslock", "a", ("shift", "b"), "1", "enter")) == ["Ab1"]
    # Alt + keypad digits: the layout-free mode some scanners offer ("ALT mode").
    alt = [(K["lalt"], 1, 0.0), *press("kp5", "kp8", t0=0.0), (K["lalt"], 0, 0.01), *press("enter", t0=0.02)]
    assert decode_events(alt) == [":"]
    assert decode_events(press(("ralt", "0"), "enter"), "fr") == ["@"]
    assert decode_events(press(("ralt", "q"), "enter"), "de") == ["@"]
    # AZERTY's ^ is a dead key: ^ then space is "^", ^ then e is "ê".
    assert decode_events(press("[", "space", "[", "e", "enter"), "fr") == ["^ê"]
    # Ctrl combinations are scanner commands, not text.
    assert decode_events(press(("lctrl", "b"), "a", "enter")) == ["a"]


# Inverse of the US table, for round trips of any text a US scanner can type.
_US_KEYS = {
    ch: (code, shifted)
    for code, keys in LAYOUTS["us"].items()
    for shifted, ch in ((False, keys[0]), (True, keys[1]))
    if ch
}


@given(st.text(alphabet=sorted(set(_US_KEYS) | {" "}), min_size=1, max_size=60).filter(lambda s: s.strip() == s))
def test_any_printable_ascii_round_trips_on_the_us_layout(text: str) -> None:
    events: list[Event] = []
    for ch in text:
        code, shifted = (57, False) if ch == " " else _US_KEYS[ch]
        mods = [(SHIFT, 1, 0.0)] if shifted else []
        events += mods + [(code, 1, 0.0), (code, 0, 0.0)] + ([(SHIFT, 0, 0.0)] if shifted else [])
    events.append((KEY_ENTER, 1, 0.0))
    assert decode_events(events) == [text]


def test_serial_lines() -> None:
    splitter = LineSplitter(idle_timeout=0.1)
    assert splitter.feed(b"TPM1:a", 1.0) == []
    assert splitter.feed(b"bc\r\nTPC1:x\r", 1.01) == ["TPM1:abc", "TPC1:x"]
    assert splitter.feed(b"\nno-suffix", 1.02) == []
    assert splitter.flush(1.05) == []
    assert splitter.flush(1.2) == ["no-suffix"]
    assert splitter.feed("caf\u00e9\n".encode(), 2.0) == ["caf\u00e9"]


# -- the device loops -----------------------------------------------------------------------------


@pytest.fixture
def recorder() -> Recorder[QrRead]:
    return Recorder("QrRead")


def test_wedge_loop_reads_scans_and_survives_an_unplug(recorder: Recorder[QrRead]) -> None:
    devices: list[PipeDevice] = []

    def opener(path: str) -> Any:
        if len(devices) == 1 and devices[0].gone:
            devices.append(PipeDevice())
            return devices[-1]
        if devices:
            raise DriverUnavailable(f"cannot open {path}: No such device")
        devices.append(PipeDevice())
        return devices[-1]

    scanner = WedgeScanner("/dev/input/by-id/usb-scanner-event-kbd", layout="us", opener=opener)
    scanner.backoff_first = 0.05
    scanner.start(recorder.items.put, recorder.on_reader)
    try:
        assert "grabbed" in recorder.event("added").detail
        devices[0].send(US_TPM1)
        read = recorder.next()
        assert (read.scanner, read.text) == ("wedge:/dev/input/by-id/usb-scanner-event-kbd", "TPM1:Ab-_")
        devices[0].unplug()
        assert "unplugged" in recorder.event("removed").detail
        recorder.event("added")
        devices[1].send(press("a", "enter"))
        assert recorder.next().text == "a"
    finally:
        scanner.stop()


def test_a_missing_evdev_device_is_unavailable() -> None:
    with pytest.raises(DriverUnavailable, match="/dev/input/by-id/nothing-here|evdev"):
        open_evdev("/dev/input/by-id/nothing-here")


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    yield master, name
    try:
        os.close(master)
    except OSError:
        pass


def test_serial_scanner_on_a_pseudo_terminal(pty: tuple[int, str], recorder: Recorder[QrRead]) -> None:
    master, name = pty
    scanner = SerialScanner(name, baudrate=115200)
    scanner.start(recorder.items.put, recorder.on_reader)
    try:
        assert "115200 baud" in recorder.event("added").detail
        os.write(master, b"TPJ1:receipt-42\r\n")
        read = recorder.next()
        assert (read.scanner, read.text) == (f"serial:{name}", "TPJ1:receipt-42")
        before = scanner.last_progress  # the daemon's watchdog reads it: it moves while the loop runs
        wait_until(lambda: scanner.last_progress > before, 5, "the serial loop to go round")
        assert scanner.last_progress > before
        os.close(master)  # the scanner's USB cable pulled
        assert "unplugged" in recorder.event("removed").detail
        recorder.event("error")
    finally:
        scanner.stop()


def test_sim_scanner(recorder: Recorder[QrRead]) -> None:
    scanner = SimScanner()
    scanner.start(recorder.items.put, recorder.on_reader)
    try:
        recorder.event("added")
        scanner.scan("TPM1:demo")
        assert recorder.next().text == "TPM1:demo"
    finally:
        scanner.stop()
