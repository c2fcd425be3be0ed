"""The barcode scanners tills already have: keyboard-wedge (USB HID keyboard) and serial (CDC-ACM).

    WedgeScanner("/dev/input/by-id/usb-...-event-kbd", layout="us")   evdev, grabbed exclusively
    SerialScanner("/dev/ttyACM0", baudrate=9600)                       pyserial (also "socket://", "loop://")

A keyboard-wedge scanner types what it reads. The till opens its evdev device and *grabs* it
(EVIOCGRAB), so the scan no longer types into the POS, and reads raw key codes. Key codes are
positions on a keyboard, not characters: the scanner chooses them for the layout it is programmed
for (the factory default is US almost everywhere), and the host's own layout (JIS, AZERTY, QWERTZ)
never applies to a grabbed device. So ``layout`` is the *scanner's* layout, and a US-programmed
scanner reads right on a Japanese or French till with ``layout = "us"``; a scanner programmed for
AZERTY needs ``layout = "fr"``. The decoding is a pure function of the event stream
(``KeyDecoder.feed``), tested on recorded streams.

A scan ends at a terminator key (Enter or Tab by default, as scanners send them as a suffix) or,
for scanners with no suffix, when no key came for ``idle_timeout`` seconds.

Both scanners reopen their device with a backoff after an unplug, reporting ``ReaderEvent``s;
scanned texts are never logged (they may be payment card numbers, refused later by terminal.scan).
"""

from __future__ import annotations

import logging
import select
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.errors import DriverUnavailable
from drivers.sinks import deliver, reader_event
from terminal.backoff import Backoff
from terminal.model import QrRead
from terminal.ports import QrSink, ReaderSink

log = logging.getLogger(__name__)

# Linux input event codes (linux/input-event-codes.h); the same on every architecture.
EV_KEY = 1
KEY_TAB, KEY_ENTER, KEY_KPENTER, KEY_SPACE = 15, 28, 96, 57
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_CAPSLOCK = 42, 54, 58
KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT, KEY_RIGHTALT = 29, 97, 56, 100
KEY_DOWN, KEY_UP, KEY_REPEAT = 1, 0, 2
TERMINATOR_KEYS = {"enter": (KEY_ENTER, KEY_KPENTER), "tab": (KEY_TAB,)}
MAX_SCAN = 4096

# -- keyboard layouts -----------------------------------------------------------------------------

# Letter keys by their US (QWERTY) position.
_LETTER_CODES = dict(zip("qwertyuiopasdfghjklzxcvbnm", [*range(16, 26), *range(30, 39), *range(44, 51)], strict=True))
_KEYPAD = {
    71: "7",
    72: "8",
    73: "9",
    74: "-",
    75: "4",
    76: "5",
    77: "6",
    78: "+",
    79: "1",
    80: "2",
    81: "3",
    82: "0",
    83: ".",
    55: "*",
    98: "/",
}
_KEYPAD_DIGITS = {code: ch for code, ch in _KEYPAD.items() if ch.isdigit()}
DEAD = "\u0000"  # marks a dead key in a layout entry: "^" + DEAD
_COMBINING = {"^": "\u0302", "¨": "\u0308", "´": "\u0301", "`": "\u0300", "~": "\u0303"}

Keys = dict[int, tuple[str, str, str]]  # key code -> (plain, with Shift, with AltGr); "" = nothing


def _row(codes: Iterable[int], plain: str, shifted: str, altgr: str | None = None) -> Keys:
    codes = list(codes)
    alt = altgr if altgr is not None else " " * len(codes)
    return {c: (p.strip(), s.strip(), a.strip()) for c, p, s, a in zip(codes, plain, shifted, alt, strict=True)}


def _letters(swap: dict[str, str]) -> Keys:
    """Letter keys; ``swap`` maps a US key to the letter it carries in this layout (AZERTY: q -> a)."""
    return {code: (swap.get(k, k), swap.get(k, k).upper(), "") for k, code in _LETTER_CODES.items()}


def _us() -> Keys:
    keys = _letters({})
    keys |= _row(range(2, 14), "1234567890-=", "!@#$%^&*()_+")
    keys |= _row((26, 27, 43, 39, 40, 41, 51, 52, 53, 86), "[]\\;'`,./\\", '{}|:"~<>?|')
    return keys


def _fr() -> Keys:
    keys = _letters({"q": "a", "w": "z", "a": "q", "z": "w"})
    keys |= _row(range(2, 14), "&é\"'(-è_çà)=", "1234567890°+", " ~#{[|`\\^@]}")
    keys |= _row((39, 40, 41, 43, 50, 51, 52, 53, 86), "mù²*,;:!<", "M% µ?./§>")
    keys[26] = ("^" + DEAD, "¨" + DEAD, "")
    keys[27] = ("$", "£", "¤")
    keys[41] = ("²", "", "")
    return keys


def _de() -> Keys:
    keys = _letters({"y": "z", "z": "y"})
    keys |= _row(range(2, 13), "1234567890ß", '!"§$%&/()=?', " ²³   {[]}\\")
    keys |= _row((26, 27, 39, 40, 43, 51, 52, 53, 86), "ü+öä#,.-<", "Ü*ÖÄ';:_>", " ~      |")
    keys[13] = ("´" + DEAD, "`" + DEAD, "")
    keys[41] = ("^" + DEAD, "°", "")
    keys[16] = ("q", "Q", "@")
    keys[18] = ("e", "E", "€")
    return keys


def _jp() -> Keys:
    keys = _letters({})
    keys |= _row(range(2, 11), "123456789", "!\"#$%&'()")
    keys |= _row((11, 12, 13, 124, 26, 27, 39, 40, 43, 51, 52, 53, 89), "0-^\\@[;:],./\\", " =~|`{+*}<>?_")
    return keys


LAYOUTS: dict[str, Keys] = {"us": _us(), "fr": _fr(), "de": _de(), "jp": _jp()}


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown keyboard layout {layout!r} (known: {', '.join(LAYOUTS)})")
    return layout


# -- decoding key events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyEvent:
    code: int
    value: int  # 1 down, 0 up, 2 autorepeat
    at: float


def _alt_code(digits: str) -> str:
    """Alt + keypad digits (some scanners' layout-free mode): 0-prefixed is Windows-1252, else CP437."""
    number = int(digits) % 256
    if number < 128:
        return chr(number)
    return bytes([number]).decode("cp1252" if digits.startswith("0") else "cp437", errors="replace")


class KeyDecoder:
    """Turns one scanner's key events into scanned texts (pure: feed it events, get texts)."""

    def __init__(
        self, layout: str = "us", terminators: Sequence[str] = ("enter", "tab"), idle_timeout: float = 0.25
    ) -> None:
        self.keys = LAYOUTS[check_layout(layout)]
        self.terminators = {code for name in terminators for code in TERMINATOR_KEYS[name]}
        self.idle_timeout = idle_timeout
        self.shift: set[int] = set()
        self.ctrl: set[int] = set()
        self.alt = False
        self.altgr = False
        self.caps = False
        self.alt_digits = ""
        self.dead = ""
        self.buffer: list[str] = []
        self.last_at: float | None = None

    def feed(self, code: int, value: int, at: float) -> list[str]:
        """One key event; returns the scans it completed (usually none, at a terminator one)."""
        done = self.flush(at)
        if self._modifier(code, value) or value != KEY_DOWN:
            return done
        self.last_at = at
        if code in self.terminators:
            return done + self._finish()
        if self.ctrl:
            return done  # Ctrl combinations are scanner commands, not text
        if self.alt and code in _KEYPAD_DIGITS:
            self.alt_digits += _KEYPAD_DIGITS[code]
            return done
        self._type(self._char(code))
        return done

    def flush(self, now: float) -> list[str]:
        """The scan in progress, when no key came for ``idle_timeout`` seconds (scanners with no suffix)."""
        if (
            self.idle_timeout > 0
            and self.buffer
            and self.last_at is not None
            and now - self.last_at > self.idle_timeout
        ):
            return self._finish()
        return []

    def _modifier(self, code: int, value: int) -> bool:
        down = value != KEY_UP
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            (self.shift.add if down else self.shift.discard)(code)
        elif code in (KEY_LEFTCTRL, KEY_RIGHTCTRL):
            (self.ctrl.add if down else self.ctrl.discard)(code)
        elif code == KEY_RIGHTALT:
            self.altgr = down
        elif code == KEY_LEFTALT:
            self.alt = down
            if not down and self.alt_digits:
                self._type(_alt_code(self.alt_digits))
                self.alt_digits = ""
        elif code == KEY_CAPSLOCK:
            if value == KEY_DOWN:
                self.caps = not self.caps
        else:
            return False
        return True

    def _char(self, code: int) -> str:
        if code == KEY_SPACE:
            return " "
        if code in _KEYPAD:
            return _KEYPAD[code]
        plain, shifted, altgr = self.keys.get(code, ("", "", ""))
        if self.altgr:
            return altgr
        upper = bool(self.shift)
        if self.caps and plain.isalpha() and len(plain) == 1:
            upper = not upper
        return shifted if upper else plain

    def _type(self, char: str) -> None:
        if not char:
            return
        if char.endswith(DEAD):
            self.dead = char[:-1]
            return
        if self.dead:
            accent, self.dead = self.dead, ""
            if char == " ":
                char = accent
            else:
                combined = unicodedata.normalize("NFC", char + _COMBINING.get(accent, ""))
                char = combined if len(combined) == 1 else accent + char
        if len(self.buffer) < MAX_SCAN:
            self.buffer.append(char)

    def _finish(self) -> list[str]:
        text, self.buffer, self.dead = "".join(self.buffer), [], ""
        return [text] if text else []


def decode_events(
    events: Iterable[tuple[int, int, float]],
    layout: str = "us",
    terminators: Sequence[str] = ("enter", "tab"),
    idle_timeout: float = 0.25,
) -> list[str]:
    """Every scan in a recorded stream of (key code, value, timestamp), the idle one at the end included."""
    decoder = KeyDecoder(layout, terminators, idle_timeout)
    scans: list[str] = []
    last = 0.0
    for code, value, at in events:
        scans += decoder.feed(code, value, at)
        last = at
    return scans + decoder.flush(last + idle_timeout + 1.0)


class LineSplitter:
    """Serial scanners send the text and a CR and/or LF; a scanner with no suffix ends on silence."""

    def __init__(self, idle_timeout: float = 0.25) -> None:
        self.idle_timeout = idle_timeout
        self.buffer = bytearray()
        self.last_at: float | None = None

    def feed(self, data: bytes, at: float) -> list[str]:
        scans = self.flush(at)
        for byte in data:
            if byte in b"\r\n":
                scans += self._finish()
            elif len(self.buffer) < MAX_SCAN:
                self.buffer.append(byte)
        if data:
            self.last_at = at
        return scans

    def flush(self, now: float) -> list[str]:
        if (
            self.idle_timeout > 0
            and self.buffer
            and self.last_at is not None
            and now - self.last_at > self.idle_timeout
        ):
            return self._finish()
        return []

    def _finish(self) -> list[str]:
        raw, self.buffer = bytes(self.buffer), bytearray()
        return [raw.decode("utf-8", errors="replace")] if raw else []


# -- the device loops -----------------------------------------------------------------------------


class InputDevice(Protocol):
    """What the wedge loop needs of ``evdev.InputDevice`` (tests give it a pipe-backed stand-in)."""

    def fileno(self) -> int: ...

    def read(self) -> Iterable[Any]: ...

    def grab(self) -> None: ...

    def close(self) -> None: ...


class _Scanner:
    """The thread, backoff and events shared by both scanner kinds."""

    poll = 0.1  # seconds a loop waits for input before it looks at stop() and idle scans

    def __init__(self, name: str, backoff_first: float = 0.5, backoff_max: float = 10.0) -> None:
        self.name = name
        self.backoff_first, self.backoff_max = backoff_first, backoff_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_qr: QrSink | None = None
        self._on_reader: ReaderSink | None = None
        self._last_problem: str | None = None
        self.last_progress = time.monotonic()
        """When (time.monotonic) the loop last went round; it does at least every ``backoff_max`` s."""

    def start(self, on_qr: QrSink, on_reader: ReaderSink) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} is already started")
        self._on_qr, self._on_reader = on_qr, on_reader
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _run(self, stopping: threading.Event) -> None:
        backoff = Backoff(self.backoff_first, self.backoff_max)
        while not stopping.is_set():
            self.last_progress = time.monotonic()
            try:
                detail = self.read_device(stopping)
            except DriverUnavailable as exc:
                self.problem("error", str(exc))
            except Exception as exc:
                log.exception("%s failed", self.name)
                self.problem("error", f"internal error: {exc!r}")
            else:
                backoff.reset()
                if not stopping.is_set():
                    self.problem("removed", detail)
            stopping.wait(backoff.next())

    def read_device(self, stopping: threading.Event) -> str:
        """Open the device, read until it goes away; returns why. DriverUnavailable if it cannot open."""
        raise NotImplementedError

    def opened(self, detail: str) -> None:
        self._last_problem = None
        self.emit_reader("added", detail)

    def problem(self, kind: str, detail: str) -> None:
        if detail != self._last_problem:
            self._last_problem = detail
            self.emit_reader(kind, detail)

    def emit_scans(self, texts: Iterable[str]) -> None:
        for text in texts:
            deliver(self._on_qr, QrRead(self.name, text, time.time()), "QR")

    def emit_reader(self, kind: str, detail: str) -> None:
        reader_event(self._on_reader, self.name, kind, detail)


def open_evdev(path: str) -> InputDevice:
    """The evdev device at ``path``, grabbed; DriverUnavailable with the reason otherwise."""
    try:
        import evdev
    except ImportError as exc:
        raise DriverUnavailable(
            "keyboard-wedge scanners need the evdev package: pip install 'tillpoint[wedge]'"
        ) from exc
    try:
        device: InputDevice = evdev.InputDevice(path)
    except OSError as exc:
        raise DriverUnavailable(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        device.grab()  # EVIOCGRAB: the scan no longer types into the POS
    except OSError as exc:
        device.close()
        raise DriverUnavailable(f"cannot grab {path} (another program holds it?): {exc.strerror or exc}") from exc
    return device


class WedgeScanner(_Scanner):
    """A keyboard-wedge scanner's evdev device, grabbed; implements ``terminal.ports.QrScanner``."""

    def __init__(
        self,
        path: str,
        *,
        layout: str = "us",
        terminators: Sequence[str] = ("enter", "tab"),
        idle_timeout: float = 0.25,
        name: str | None = None,
        opener: Callable[[str], InputDevice] = open_evdev,
    ) -> None:
        super().__init__(name or f"wedge:{path}")
        self.path = path
        self.layout = check_layout(layout)
        self.terminators = tuple(terminators)
        for t in self.terminators:
            if t not in TERMINATOR_KEYS:
                raise ValueError(f"unknown terminator {t!r} (known: {', '.join(TERMINATOR_KEYS)})")
        self.idle_timeout = idle_timeout
        self.opener = opener

    def read_device(self, stopping: threading.Event) -> str:
        device = self.opener(self.path)
        try:
            self.opened(f"keyboard-wedge scanner, {self.layout} layout, grabbed")
            return self.pump(device, KeyDecoder(self.layout, self.terminators, self.idle_timeout), stopping)
        finally:
            try:
                device.close()
            except OSError:
                pass

    def pump(self, device: InputDevice, decoder: KeyDecoder, stopping: threading.Event) -> str:
        while not stopping.is_set():
            try:
                ready, _, _ = select.select([device.fileno()], [], [], self.poll)
                events = list(device.read()) if ready else []
            except OSError as exc:  # ENODEV: unplugged
                return f"scanner unplugged: {exc.strerror or exc}"
            self.last_progress = time.monotonic()
            for event in events:
                if event.type == EV_KEY:
                    self.emit_scans(decoder.feed(event.code, event.value, event.timestamp()))
            self.emit_scans(decoder.flush(time.time()))
        return "stopped"


class SerialScanner(_Scanner):
    """A serial (USB CDC-ACM, RS-232) scanner through pyserial; any pyserial URL works too."""

    def __init__(self, port: str, *, baudrate: int = 9600, idle_timeout: float = 0.25, name: str | None = None) -> None:
        super().__init__(name or f"serial:{port}")
        self.port = port
        self.baudrate = baudrate
        self.idle_timeout = idle_timeout

    def read_device(self, stopping: threading.Event) -> str:
        import serial

        try:
            port = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self.poll)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverUnavailable(f"cannot open {self.port}: {exc}") from exc
        try:
            self.opened(f"serial scanner at {self.baudrate} baud")
            return self.pump(port, LineSplitter(self.idle_timeout), stopping)
        finally:
            port.close()

    def pump(self, port: Any, splitter: LineSplitter, stopping: threading.Event) -> str:
        import serial

        while not stopping.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                return f"scanner unplugged: {exc}"
            self.last_progress = time.monotonic()
            now = time.time()
            self.emit_scans(splitter.feed(data, now) if data else splitter.flush(now))
        return "stopped"


__all__ = ["KeyDecoder", "LAYOUTS", "LineSplitter", "SerialScanner", "WedgeScanner", "decode_events"]
