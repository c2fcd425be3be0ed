"""A simulated card reader that ships with the package, for the demo and for tests of other layers.

``tap(uid)`` behaves like a card held to a real reader: the UID is hashed inside the driver and
a ``CardRead`` is delivered on the reader's own thread, so callers see the same threading as with
pcscd.
"""

from __future__ import annotations

import queue
import threading
import time

from terminal.model import CardRead, QrRead, ReaderEvent
from terminal.ports import CardSink, QrSink, ReaderSink, UidHasher

SIM_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


class SimReader:
    def __init__(self, hash_uid: UidHasher, name: str = "sim:") -> None:
        self.name = name
        self._hash_uid = hash_uid
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.last_progress = time.monotonic()
        """Monotonic time of the reader loop's last turn (the daemon's watchdog reads it)."""

    def start(self, on_card: CardSink, on_reader: ReaderSink) -> None:
        on_reader(ReaderEvent(self.name, "added", "simulated reader", time.time()))
        self._thread = threading.Thread(target=self._run, args=(on_card,), name="sim-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=2)

    def readers(self) -> list[str]:
        return [self.name]

    def tap(self, uid: bytes) -> None:
        """Present a card with this UID once."""
        self._queue.put(uid)

    def _run(self, on_card: CardSink) -> None:
        while True:
            self.last_progress = time.monotonic()
            try:
                uid = self._queue.get(timeout=1.0)  # wakes every second so the watchdog sees it alive
            except queue.Empty:
                continue
            if uid is None:
                return
            read = CardRead(self.name, "iso14443a", self._hash_uid(uid), SIM_ATR, None, None, time.time())
            on_card(read)


class Delivered:
    """A code held up to the simulated scanner: done once the till has handled it, with what its
    ``on_qr`` sink returned (the daemon's: what the code was and what happened)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.result: object = None

    def set(self, result: object) -> None:
        self.result = result
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class SimScanner:
    """A simulated QR / barcode scanner: ``scan(text)`` delivers a ``QrRead`` on the scanner's own thread."""

    def __init__(self, name: str = "sim:") -> None:
        self.name = name
        self._queue: queue.Queue[tuple[str, Delivered] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self, on_qr: QrSink, on_reader: ReaderSink) -> None:
        on_reader(ReaderEvent(self.name, "added", "simulated scanner", time.time()))
        self._thread = threading.Thread(target=self._run, args=(on_qr,), name="sim-scanner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=2)

    def scan(self, text: str) -> Delivered:
        """Present a code with this text once; the handle says when (and how) the till handled it."""
        delivered = Delivered()
        self._queue.put((text, delivered))
        return delivered

    def _run(self, on_qr: QrSink) -> None:
        while (item := self._queue.get()) is not None:
            text, delivered = item
            result: object = None
            try:
                result = on_qr(QrRead(self.name, text, time.time()))
            finally:
                delivered.set(result)
