"""Device drivers, chosen by name from a registry; each SDK is imported lazily in its own module.

open_reader("sim:")                  simulated reader (demo, tests)
open_reader("pcsc:")                 every PC/SC reader pcscd offers
open_reader("pcsc:ACS ACR122U*")     PC/SC readers whose name matches the glob
open_reader("auto:")                 PC/SC when pcscd has a reader, else the simulator
open_reader("nfcpy:usb:054c:06c3")   a reader driven by nfcpy (Sony RC-S380; also "nfcpy:tty:USB0:pn532",
                                     "nfcpy:udp:127.0.0.1:54321" for nfcpy's software reader)
Reader options: holdoff=seconds (debounce), felica_master_key=bytes (nfcpy: FeliCa Lite-S MAC reads).

open_scanner("camera:/dev/video0")   a camera (also "camera:0", "camera:file.avi", "camera:rtsp://...")
open_scanner("wedge:/dev/input/by-id/usb-...-event-kbd")   a keyboard-wedge scanner, grabbed
open_scanner("serial:/dev/ttyACM0")  a serial (CDC-ACM) scanner
open_scanner("sim:")                 simulated scanner (demo, tests)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.errors import DriverError, DriverUnavailable
from terminal.ports import CardReader, QrScanner, UidHasher

ReaderFactory = Callable[[str, UidHasher, dict[str, Any]], CardReader]


def _sim(arg: str, hash_uid: UidHasher, options: dict[str, Any]) -> CardReader:
    from drivers.sim import SimReader

    return SimReader(hash_uid, name=f"sim:{arg}" if arg else "sim:")


def _pcsc(arg: str, hash_uid: UidHasher, options: dict[str, Any]) -> CardReader:
    try:
        from drivers.pcsc import PcscReader
    except ImportError as exc:  # pyscard is the pcsc extra: an install without it has no PC/SC readers
        raise DriverUnavailable(f"pyscard is not installed ({exc}): pip install 'tillpoint[pcsc]'") from exc

    return PcscReader(arg or "*", hash_uid, holdoff=options.get("holdoff") or 0.0)


def _nfcpy(arg: str, hash_uid: UidHasher, options: dict[str, Any]) -> CardReader:
    try:
        from drivers.nfcpy_reader import NfcpyReader
    except ImportError as exc:
        raise DriverUnavailable(f"nfcpy is not installed ({exc}): pip install 'tillpoint[nfc]'") from exc

    return NfcpyReader(
        arg or "usb",
        hash_uid,
        holdoff=options.get("holdoff") or 0.0,
        felica_master_key=options.get("felica_master_key"),
    )


def _auto(arg: str, hash_uid: UidHasher, options: dict[str, Any]) -> CardReader:
    try:
        reader = _pcsc(arg, hash_uid, options)
        if reader.readers():
            return reader
    except DriverError:
        pass
    return _sim(arg, hash_uid, options)


READERS: dict[str, ReaderFactory] = {"sim": _sim, "pcsc": _pcsc, "auto": _auto, "nfcpy": _nfcpy}


def open_reader(spec: str, hash_uid: UidHasher, **options: Any) -> CardReader:
    """Open a reader by its ``kind:argument`` name; an unknown kind raises DriverUnavailable."""
    kind, _, arg = spec.partition(":")
    factory = READERS.get(kind)
    if factory is None:
        raise DriverUnavailable(f"unknown reader kind {kind!r} (known: {', '.join(sorted(READERS))})")
    return factory(arg, hash_uid, options)


ScannerFactory = Callable[[str, dict[str, Any]], QrScanner]
# The options each scanner kind takes; open_scanner passes a kind only its own, so one [scanner]
# config section can serve every kind.
CAMERA_OPTIONS = ("resolution", "fps", "formats", "dedupe_window", "roi", "motion_threshold")
WEDGE_OPTIONS = ("layout", "terminators", "idle_timeout")
SERIAL_OPTIONS = ("baudrate", "idle_timeout")


def _pick(options: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in names and v is not None}


def _camera(arg: str, options: dict[str, Any]) -> QrScanner:
    from drivers.camera import CameraScanner, Controls

    picked = _pick(options, CAMERA_OPTIONS)
    own = (options.get("cameras") or {}).get(f"camera:{arg}")
    if own is None:
        return CameraScanner(arg, **picked)
    if own.resolution is not None:
        picked["resolution"] = own.resolution
    if own.fps is not None:
        picked["fps"] = own.fps
    return CameraScanner(arg, controls=Controls(own.exposure, own.focus, own.gain), **picked)


def _wedge(arg: str, options: dict[str, Any]) -> QrScanner:
    from drivers.wedge import WedgeScanner

    return WedgeScanner(arg, **_pick(options, WEDGE_OPTIONS))


def _serial(arg: str, options: dict[str, Any]) -> QrScanner:
    from drivers.wedge import SerialScanner

    return SerialScanner(arg, **_pick(options, SERIAL_OPTIONS))


def _sim_scanner(arg: str, options: dict[str, Any]) -> QrScanner:
    from drivers.sim import SimScanner

    return SimScanner(name=f"sim:{arg}" if arg else "sim:")


SCANNERS: dict[str, ScannerFactory] = {"camera": _camera, "wedge": _wedge, "serial": _serial, "sim": _sim_scanner}


def open_scanner(spec: str, **options: Any) -> QrScanner:
    """Open a scanner by its ``kind:argument`` name; not started yet (call ``start``).

    Options (each kind uses its own, ignores the others; None means the driver's default):
    camera: resolution=(w, h), fps, formats, dedupe_window, roi=(x, y, w, h) fractions, motion_threshold,
    cameras={spec: terminal.config.CameraSettings} (that camera's resolution, fps, exposure, focus, gain);
    wedge: layout, terminators, idle_timeout; serial: baudrate, idle_timeout.
    An unknown kind, an empty argument or a bad option raises DriverUnavailable; a device that is
    missing is not an error here: the scanner reports it as a ReaderEvent and keeps retrying.
    """
    kind, _, arg = spec.partition(":")
    factory = SCANNERS.get(kind)
    if factory is None:
        raise DriverUnavailable(f"unknown scanner kind {kind!r} (known: {', '.join(sorted(SCANNERS))})")
    if not arg and kind != "sim":
        raise DriverUnavailable(f"scanner {spec!r} names no device (e.g. {kind}:/dev/...)")
    try:
        return factory(arg, options)
    except ValueError as exc:  # a bad layout, format or terminator name
        raise DriverUnavailable(f"scanner {spec!r}: {exc}") from exc


__all__ = ["DriverError", "READERS", "SCANNERS", "open_reader", "open_scanner"]
