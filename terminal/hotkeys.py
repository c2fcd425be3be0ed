"""Global hotkeys on the POS keyboard: F9 identify, F10 coupon, F11 pay, Esc cancel (configurable).

The listener reads the keyboard's evdev device *without grabbing it*: the POS keeps every key. It
drives the same session actions as the panel, and stays silent while the panel says it has the
keyboard (the panel handles its own keys then, so one press is never two actions).

A barcode scanner on the same keyboard port types whole codes as fast bursts of keys ending in Enter,
and a scanned code may contain what looks like a hotkey (ESC in GS1 data, function keys some
scanners send as prefixes). A hotkey counts only when it stands alone: no other key came within
``gap`` seconds before it, and none comes within ``gap`` after it. People do not type that fast
(30-60 ms between keys for a fast typist, more between a look at the screen and F9); scanners type
a key every 1-20 ms. The decision waits ``gap`` after the key, so an action starts ~40 ms late.
``BurstFilter`` and ``detect`` are pure (events in, actions out) and are tested on event streams.

The evdev part degrades: python-evdev missing, no keyboard device, no permission to read it (the
service user needs the ``input`` group), a keyboard unplugged: each is a clear ``status`` and a retry,
never a crash.
"""

from __future__ import annotations

import errno
import logging
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from terminal.backoff import Backoff

log = logging.getLogger(__name__)

EV_KEY = 1
KEY_DOWN, KEY_UP, KEY_REPEAT = 1, 0, 2
DEFAULT_KEYS = {"identify": "F9", "coupon": "F10", "pay": "F11", "cancel": "Esc"}
DEFAULT_GAP = 0.04

# Linux input key codes (linux/input-event-codes.h) of the keys worth binding.
KEY_CODES: dict[str, int] = {
    "ESC": 1,
    "ENTER": 28,
    "KPENTER": 96,
    "TAB": 15,
    "BACKSPACE": 14,
    "SPACE": 57,
    **{f"F{n}": 58 + n for n in range(1, 11)},
    "F11": 87,
    "F12": 88,
    **{f"F{n}": 170 + n for n in range(13, 25)},
    "PAUSE": 119,
    "SCROLLLOCK": 70,
    "SYSRQ": 99,
    "INSERT": 110,
    "DELETE": 111,
    "HOME": 102,
    "END": 107,
    "PAGEUP": 104,
    "PAGEDOWN": 109,
    "UP": 103,
    "DOWN": 108,
    "LEFT": 105,
    "RIGHT": 106,
    **{f"KP{n}": c for n, c in zip(range(10), (82, 79, 80, 81, 75, 76, 77, 71, 72, 73), strict=True)},
    "KPPLUS": 78,
    "KPMINUS": 74,
    "KPASTERISK": 55,
    "KPSLASH": 98,
}
ALIASES = {"ESCAPE": "ESC", "RETURN": "ENTER", "DEL": "DELETE", "INS": "INSERT", "PGUP": "PAGEUP", "PGDN": "PAGEDOWN"}
MODIFIERS: dict[str, tuple[int, ...]] = {"CTRL": (29, 97), "SHIFT": (42, 54), "ALT": (56, 100), "META": (125, 126)}
MODIFIER_OF = {code: name for name, codes in MODIFIERS.items() for code in codes}


@dataclass(frozen=True, slots=True)
class Chord:
    """A key with the modifiers that must be held (and no others)."""

    code: int
    mods: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Hit:
    action: str
    at: float


def parse_chord(text: str) -> Chord:
    """``"F9"``, ``"Esc"``, ``"Ctrl+F9"``, ``"Shift+Alt+Pause"`` -> a Chord; ValueError for an unknown key."""
    parts = [p.strip().upper() for p in text.split("+")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"empty key in {text!r}")
    *mods, key = parts
    key = ALIASES.get(key, key)
    if key not in KEY_CODES:
        raise ValueError(f"unknown key {text!r} (e.g. F9, Esc, Ctrl+F9, Pause, KP0)")
    bad = [m for m in mods if m not in MODIFIERS]
    if bad:
        raise ValueError(f"unknown modifier {bad[0]!r} in {text!r} (Ctrl, Shift, Alt, Meta)")
    return Chord(KEY_CODES[key], frozenset(mods))


def parse_keymap(actions: Mapping[str, str]) -> dict[Chord, str]:
    """``{"identify": "F9", ...}`` -> ``{Chord: "identify"}``; a key bound twice is a ValueError.
    An empty key leaves the action without a global hotkey."""
    keymap: dict[Chord, str] = {}
    for action, text in actions.items():
        if not text:
            continue
        chord = parse_chord(text)
        if chord in keymap:
            raise ValueError(f"{text!r} is bound to both {keymap[chord]!r} and {action!r}")
        keymap[chord] = action
    return keymap


class BurstFilter:
    """Hotkeys out of a stream of key events, ignoring keys that are part of a fast burst (a scan).

    Pure and single-threaded: ``feed(code, value, at)`` for every EV_KEY event, ``flush(now)`` when no
    event came for a while; both return the hotkeys decided so far."""

    def __init__(self, keymap: Mapping[Chord, str], gap: float = DEFAULT_GAP) -> None:
        self.keymap = dict(keymap)
        self.gap = gap
        self.held: set[str] = set()
        self.last_key: float | None = None  # time of the last non-modifier key press
        self.pending: Hit | None = None
        self._down: set[int] = set()  # modifier key codes held

    def feed(self, code: int, value: int, at: float) -> list[Hit]:
        if code in MODIFIER_OF:
            self._modifier(code, value)
            return []
        if value != KEY_DOWN:
            return []  # releases and autorepeat: holding F9 is one press
        decided = self.flush(at)
        in_burst = self.last_key is not None and at - self.last_key < self.gap
        if self.pending is not None:
            self.pending = None  # another key within the gap: the hotkey started a burst
        self.last_key = at
        action = self.keymap.get(Chord(code, frozenset(self.held)))
        if action is not None and not in_burst:
            self.pending = Hit(action, at)
        return decided

    def flush(self, now: float) -> list[Hit]:
        """The pending hotkey, once ``gap`` passed without another key."""
        if self.pending is not None and now - self.pending.at >= self.gap:
            hit, self.pending = self.pending, None
            return [hit]
        return []

    def _modifier(self, code: int, value: int) -> None:
        name = MODIFIER_OF[code]
        if value == KEY_DOWN:
            self._down.add(code)
            self.held.add(name)
        elif value == KEY_UP:
            self._down.discard(code)
            if not any(c in self._down for c in MODIFIERS[name]):
                self.held.discard(name)


def detect(
    events: Iterable[tuple[int, int, float]], keymap: Mapping[Chord, str], gap: float = DEFAULT_GAP
) -> list[Hit]:
    """Every hotkey in a finished stream of ``(code, value, at)`` key events."""
    flt = BurstFilter(keymap, gap)
    hits: list[Hit] = []
    last = 0.0
    for code, value, at in events:
        hits += flt.feed(code, value, at)
        last = at
    return hits + flt.flush(last + 2 * gap)  # the stream ended: nothing follows the last key


# -- the evdev listener -----------------------------------------------------------------------------


class Device(Protocol):
    path: str

    def fileno(self) -> int: ...

    def read(self) -> Iterable[Any]: ...

    def close(self) -> None: ...


Opener = Callable[[str], Device]
Lister = Callable[[], list[str]]


class Unavailable(Exception):
    """The listener cannot run at all (python-evdev missing): retrying changes nothing."""


def open_evdev(path: str) -> Device:
    try:
        import evdev
    except ImportError as exc:
        raise Unavailable("python-evdev is not installed (pip install 'tillpoint[wedge]')") from exc
    return cast(Device, evdev.InputDevice(path))


def list_keyboards() -> list[str]:
    """Input devices that have F9 and letter keys: keyboards (and keyboard-wedge scanners)."""
    try:
        import evdev
    except ImportError as exc:
        raise Unavailable("python-evdev is not installed (pip install 'tillpoint[wedge]')") from exc
    found = []
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except OSError:
            continue
        try:
            keys = dev.capabilities().get(EV_KEY, [])
        finally:
            dev.close()
        if KEY_CODES["F9"] in keys and 30 in keys:  # 30: KEY_A
            found.append(path)
    return sorted(found)


class HotkeyListener:
    """Reads keyboards (``devices``: paths, or ``["auto"]``) and calls ``on_action(action)``."""

    def __init__(
        self,
        devices: Sequence[str],
        keymap: Mapping[Chord, str],
        on_action: Callable[[str], None],
        *,
        gap: float = DEFAULT_GAP,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        opener: Opener = open_evdev,
        lister: Lister = list_keyboards,
        retry_max: float = 30.0,
    ) -> None:
        self.devices = list(devices) or ["auto"]
        self.keymap = dict(keymap)
        self.on_action = on_action
        self.gap = gap
        self.on_status = on_status
        self.opener = opener
        self.lister = lister
        self.retry_max = retry_max
        self.status: dict[str, Any] = {"state": "stopped", "detail": "", "devices": []}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress = time.monotonic()

    name = "hotkeys"

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="hotkeys", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._set("stopped", "")

    def _set(self, state: str, detail: str, devices: Sequence[str] = ()) -> None:
        new = {"state": state, "detail": detail, "devices": list(devices)}
        if new == self.status:
            return
        self.status = new
        (log.info if state in ("listening", "stopped") else log.warning)("hotkeys %s %s", state, detail)
        if self.on_status is not None:
            self.on_status(dict(new))

    def _run(self) -> None:
        backoff = Backoff(0.5, self.retry_max)
        while not self._stopping.is_set():
            self.last_progress = time.monotonic()
            try:
                opened = self._open()
            except Unavailable as exc:
                self._set("unavailable", str(exc))
                return
            if opened:
                backoff.reset()
                self._pump(opened)
            if self._stopping.wait(backoff.next()):
                return

    def _paths(self) -> list[str]:
        paths = [p for p in self.devices if p != "auto"]
        if "auto" in self.devices:
            paths += [p for p in self.lister() if p not in paths]
        return paths

    def _open(self) -> list[Device]:
        paths = self._paths()
        if not paths:
            self._set("no_device", "no keyboard input device found (/dev/input/event*)")
            return []
        opened: list[Device] = []
        problems: list[tuple[str, str]] = []
        for path in paths:
            try:
                opened.append(self.opener(path))
            except PermissionError:
                problems.append(
                    (
                        "no_permission",
                        f"no permission to read {path}: add the service user to the "
                        "'input' group (systemd: SupplementaryGroups=input)",
                    )
                )
            except (FileNotFoundError, OSError) as exc:
                problems.append(("no_device", f"{path}: {exc.strerror or exc}"))
        if not opened:
            self._set(*problems[0])
            return []
        self._set("listening", "", [d.path for d in opened])
        return opened

    def _pump(self, devices: list[Device]) -> None:
        flt = BurstFilter(self.keymap, self.gap)
        try:
            while not self._stopping.is_set() and devices:
                self.last_progress = time.monotonic()
                ready, _, _ = select.select(devices, [], [], self.gap / 2)
                for device in ready:
                    if not self._read(device, flt):
                        devices.remove(device)
                        device.close()
                self._fire(flt.flush(time.monotonic()))
        finally:
            for device in devices:
                device.close()
        if not self._stopping.is_set():
            self._set("no_device", "the keyboard was unplugged; waiting for it")

    def _read(self, device: Device, flt: BurstFilter) -> bool:
        try:
            for event in device.read():
                if event.type == EV_KEY:
                    # evdev timestamps are wall-clock; the filter only compares them with each other
                    # and with flush(), which uses the monotonic clock: convert at the edge.
                    at = time.monotonic() - (time.time() - event.timestamp())
                    self._fire(flt.feed(event.code, event.value, at))
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.EBADF, errno.EIO):
                return False
            raise
        return True

    def _fire(self, hits: list[Hit]) -> None:
        for hit in hits:
            try:
                self.on_action(hit.action)
            except Exception:  # an action refused by the session is shown there; the listener goes on
                log.debug("hotkey %s refused", hit.action, exc_info=True)


def evdev_installed() -> bool:
    try:
        import evdev  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["BurstFilter", "Chord", "DEFAULT_KEYS", "Hit", "HotkeyListener", "detect", "parse_chord", "parse_keymap"]
