"""Readers driven by nfcpy (the only module that imports ``nfc``): readers pcscd cannot drive, such
as the Sony RC-S380 (``usb:054c:06c3``), PN53x boards on a serial port (``tty:USB0:pn532``), and
nfcpy's software reader ``udp:host:port`` used by the tests.

One thread per ``NfcpyReader`` owns the ``ContactlessFrontend`` and loops in ``clf.connect(rdwr=...)``,
bounded so ``stop()`` is prompt. A tag found is turned into one ``CardRead``:

    FeliCa (Type 3)   IDm as the UID; NDEF through nfcpy; a FeliCa Lite-S is mutually authenticated
                      with its card key (diversified from the configured master key with its IDm,
                      ``terminal.credentials.lite_s_card_key``) and its ID block read with a MAC over
                      a fresh challenge: ``lite_s_mac=True`` only when both check out
    Type 2 / Type 4   NFCID1 as the UID; NDEF through nfcpy; a SUN URL is carried in ``sun``

The tag stays connected until it leaves the field (nfcpy's presence check), so a card left on the
reader is one tap; ``holdoff`` makes the same card back within that many seconds one tap too.

nfcpy reports failures as ``IOError`` (errno) and ``nfc.tag.TagCommandError``; translated here:

    DriverUnavailable   no device at the path (ENODEV), no permission (EACCES), device claimed by
                        pcscd or a kernel driver (EBUSY): the message names the claimant and the fix
    ReaderGone          the device vanished or failed while in use (EIO, ENODEV during connect)
    CardGone            the tag left before its read finished (reported as a reader "error" event)
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path
from typing import Any

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt3
import nfc.tag.tt3_sony

from drivers import ndef
from drivers.errors import CardGone, DriverError, DriverUnavailable, ReaderGone
from drivers.holdoff import HoldOff
from drivers.sinks import deliver, reader_event
from terminal.backoff import Backoff
from terminal.credentials import lite_s_card_key
from terminal.model import CardRead, ReaderProblem
from terminal.ports import CardSink, ReaderSink, UidHasher

log = logging.getLogger(__name__)

SYSFS_USB = Path("/sys/bus/usb/devices")
TARGETS = ["106A", "212F"]  # ISO 14443 A (Type 2, Type 4) and FeliCa 212 kbps
MAX_BACKOFF = 5.0
LITE_S_ID_BLOCK = 0x82
# Kernel modules that grab NFC readers before nfcpy can (see systemd/tillpoint-nfc-blacklist.conf).
KERNEL_NFC_DRIVERS = {"port100", "pn533_usb", "pn533", "nfcmrvl_usb"}


def usb_claimant(vendor: int, product: int, sysfs: Path = SYSFS_USB) -> str | None:
    """The driver bound to a USB device's first interface ("port100", "usbfs" for a program using
    libusb such as pcscd's CCID driver), or None when the device is free or absent."""
    for device in sorted(sysfs.glob("*")):
        try:
            ids = (int((device / "idVendor").read_text(), 16), int((device / "idProduct").read_text(), 16))
        except (OSError, ValueError):
            continue
        if ids != (vendor, product):
            continue
        for interface in sorted(sysfs.glob(f"{device.name}:*")):
            driver = interface / "driver"
            if driver.exists():
                return driver.resolve().name
    return None


def _usb_ids(path: str) -> tuple[int, int] | None:
    parts = path.split(":")
    if parts[0] != "usb" or len(parts) != 3 or len(parts[1]) != 4:
        return None
    try:
        return int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


def busy_message(path: str, claimant: str) -> str:
    """The operator's message for a reader someone else holds, with the fix."""
    if claimant == "usbfs":
        owner = "pcscd or another program using libusb (usbfs)"
        fix = (
            "stop that program, or keep pcscd off this reader (remove it from libccid's Info.plist, see "
            "docs/readers.md), or use it as 'pcsc:' instead of 'nfcpy:'"
        )
    else:
        owner = f"kernel driver {claimant}"
        fix = (
            f"run `modprobe -r {claimant}` and install systemd/tillpoint-nfc-blacklist.conf in "
            "/etc/modprobe.d/ so it stays unloaded"
        )
    return f"nfcpy {path}: device busy/claimed by {owner}: fix: {fix}"


def open_error(path: str, error: OSError, sysfs: Path = SYSFS_USB) -> DriverUnavailable:
    """Why ``ContactlessFrontend(path)`` failed, as the operator needs to read it."""
    ids = _usb_ids(path)
    claimant = usb_claimant(*ids, sysfs=sysfs) if ids else None
    if error.errno == errno.EBUSY or (claimant is not None and error.errno == errno.ENODEV):
        return DriverUnavailable(busy_message(path, claimant or "another program"))
    if error.errno == errno.EACCES:
        return DriverUnavailable(
            f"nfcpy {path}: permission denied on the USB device: fix: install systemd/60-tillpoint-readers.rules "
            "in /etc/udev/rules.d/, run `udevadm control --reload` and replug the reader"
        )
    if error.errno == errno.ENODEV:
        return DriverUnavailable(f"nfcpy {path}: no reader found there (is it plugged in? `lsusb` lists it)")
    return DriverUnavailable(f"nfcpy {path}: cannot open the reader: {error}")


def open_frontend(path: str) -> Any:
    """nfcpy's ContactlessFrontend on ``path``; DriverUnavailable with the fix when it cannot be had."""
    try:
        return nfc.ContactlessFrontend(path)
    except OSError as error:
        raise open_error(path, error) from error


def tag_uid(tag: Any) -> bytes:
    return bytes(tag.idm) if isinstance(tag, nfc.tag.tt3.Type3Tag) else bytes(tag.identifier)


def tag_chip(tag: Any) -> str:
    if isinstance(tag, nfc.tag.tt3_sony.FelicaLiteS):
        return "felica_lite_s"
    if isinstance(tag, nfc.tag.tt3_sony.FelicaLite):
        return "felica_lite"
    if isinstance(tag, nfc.tag.tt3.Type3Tag):
        return "felica"
    kind = str(tag.TYPE)
    return {"Type2Tag": "type2", "Type4Tag": "iso_dep", "Type1Tag": "type1"}.get(kind, kind.lower())


def tag_tech(tag: Any) -> str:
    return "felica" if isinstance(tag, nfc.tag.tt3.Type3Tag) else "iso14443a"


def lite_s_mac_read(tag: Any, master_key: bytes | None) -> bool:
    """Mutually authenticate a FeliCa Lite-S with its diversified card key, then read the ID block
    with a MAC over nfcpy's fresh random challenge: True when the card proved it holds the key."""
    if master_key is None or not isinstance(tag, nfc.tag.tt3_sony.FelicaLiteS):
        return False
    idm = bytes(tag.idm)
    if not tag.authenticate(lite_s_card_key(master_key, idm)):
        return False
    block = tag.read_with_mac(LITE_S_ID_BLOCK)  # None when the MAC does not match
    return block is not None and bytes(block[:8]) == idm


def tag_message(tag: Any) -> bytes | None:
    """The tag's NDEF message (read with MAC on an authenticated Lite-S), or None. nfcpy answers
    None as well when the read broke off: a tag gone by then raises CardGone, no half read."""
    if tag.ndef is not None and tag.ndef.is_readable:
        return bytes(tag.ndef.octets)
    if not tag.is_present:
        raise CardGone("the tag left the field before its NDEF was read")
    return None


class NfcpyReader:
    """One nfcpy reader at ``path`` (``usb``, ``usb:054c:06c3``, ``tty:USB0:pn532``, ``udp:host:port``)."""

    def __init__(
        self,
        path: str,
        hash_uid: UidHasher,
        *,
        holdoff: float = 0.0,
        felica_master_key: bytes | None = None,
        interval: float = 0.1,
        targets: list[str] | None = None,
    ) -> None:
        self.path = path or "usb"
        self.name = f"nfcpy:{self.path}"
        self.holdoff = holdoff
        self.interval = interval
        self.targets = targets or TARGETS
        self._hash_uid = hash_uid
        self._felica_master_key = felica_master_key
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._present = False
        self.last_progress = time.monotonic()
        """Monotonic time of the loop's last turn (the daemon's watchdog reads it)."""

    def start(self, on_card: CardSink, on_reader: ReaderSink) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} is already started")
        self._stop = threading.Event()
        loop = _Loop(self, on_card, on_reader, self._stop)
        self._thread = threading.Thread(target=loop.run, name=f"{self.name} loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, 4 * self.interval))
            self._thread = None

    def readers(self) -> list[str]:
        return [self.name] if self._present else []

    def make_read(self, tag: Any) -> CardRead:
        mac = lite_s_mac_read(tag, self._felica_master_key)
        message = tag_message(tag)
        return CardRead(
            self.name,
            tag_tech(tag),
            self._hash_uid(tag_uid(tag)),
            b"",
            message,
            ndef.sun_url(message),
            time.time(),
            lite_s_mac=mac,
            chip=tag_chip(tag),
        )


class _Loop:
    """The reader's thread: open the frontend (with backoff), then connect to one tag at a time."""

    def __init__(
        self, reader: NfcpyReader, on_card: CardSink, on_reader: ReaderSink, stopping: threading.Event
    ) -> None:
        self.reader = reader
        self.on_card = on_card
        self.on_reader = on_reader
        self.stopping = stopping
        self.holdoff = HoldOff(reader.holdoff)
        self.last_error: str | None = None
        self.backoff = Backoff(reader.interval, MAX_BACKOFF)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.reader.last_progress = time.monotonic()
            try:
                clf = open_frontend(self.reader.path)
            except DriverError as exc:
                self.failed(str(exc))
                continue
            try:
                self.serve(clf)
            finally:
                clf.close()
                self.gone("reader stopped" if self.stopping.is_set() else "reader lost")

    def failed(self, detail: str) -> None:
        if detail != self.last_error:  # one event per outage, not one per retry
            self.last_error = detail
            self.emit_reader("error", detail, ReaderProblem.READER_UNAVAILABLE)
        self.stopping.wait(self.backoff.next())

    def serve(self, clf: Any) -> None:
        self.reader._present, self.last_error = True, None
        self.backoff.reset()
        self.emit_reader("added", f"nfcpy {clf.device}")
        options = {
            "targets": self.reader.targets,
            "on-connect": self.on_connect,
            "on-release": self.on_release,
            "iterations": 1,
            "interval": self.reader.interval,
            "beep-on-connect": False,
        }
        while not self.stopping.is_set():
            self.reader.last_progress = time.monotonic()
            try:
                result = clf.connect(rdwr=options, terminate=self.stopping.is_set)
            except OSError as exc:  # nfcpy lets some device errors through; most it logs and returns False
                gone = str(ReaderGone(f"nfcpy {self.reader.path}: {exc}"))
                self.emit_reader("error", gone, ReaderProblem.READER_UNAVAILABLE)
                return
            if result is False and not self.stopping.is_set():
                failed = f"nfcpy {self.reader.path}: the device failed; reopening it"
                self.emit_reader("error", failed, ReaderProblem.READER_UNAVAILABLE)
                return

    def on_connect(self, tag: Any) -> bool:
        try:
            read = self.reader.make_read(tag)
        except (CardGone, nfc.tag.TagCommandError, nfc.clf.CommunicationError) as exc:
            self.emit_reader("error", f"card removed during read: {exc}", ReaderProblem.CARD_REMOVED)
            return True  # wait for the tag to leave: one error per tap, not one per poll
        except Exception as exc:  # a bug or the caller's hasher must not stop the reader
            log.exception("reading the tag failed")
            self.emit_reader("error", f"card read failed: {exc!r}", ReaderProblem.CARD_READ_FAILED)
            return True
        if self.holdoff.is_new_tap(self.reader.name, read.uid_hash, time.monotonic()):
            self.emit_card(read)
        return True  # keep the tag until it leaves: a card left on the reader is one tap

    def on_release(self, tag: Any) -> bool:
        self.holdoff.left(self.reader.name, time.monotonic())
        return True

    def gone(self, detail: str) -> None:
        if self.reader._present:
            self.reader._present = False
            self.emit_reader("removed", detail)

    def emit_card(self, read: CardRead) -> None:
        deliver(self.on_card, read, "card")

    def emit_reader(self, kind: str, detail: str, code: str = "") -> None:
        reader_event(self.on_reader, self.reader.name, kind, detail, code)
