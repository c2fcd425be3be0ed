"""`tillpoint doctor`: is this till fit to sell? Each check gives a verdict in plain words.

    config      the config file parses and validates; the card key and head-office token are there
    pcscd       pcscd answers on its socket (when a PC/SC reader is configured)
    readers     each configured reader lists its devices
    camera      each configured camera device exists and can be opened
    scanner     each other scanner: a known kind, its device there and readable
    printer     the printer in the middle: the real printer answers (target), the POS's side can be had
                (listen), each receipt template reads
    database    SQLite integrity_check of the terminal database; journal entries waiting
    disk        free space where the database lives
    head office reachable, accepts this terminal's token, and its clock agrees with ours
    hq store    head office registered this terminal for the store the config names
    hq card key this till's card-hash key is the one head office hashes cards with (their checks compared)
    daemon      the local API of a running daemon answers

Verdicts: ok, warn, fail, skip. Exit code: 0 all ok, 1 a warning, 2 a failure (Nagios style, so a
monitoring agent can run it as is). A failure of a till set up wrong carries a stable ``code``
(``terminal.errors.SetupCode``). Nothing here writes: the database is opened read-only.
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import shutil
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from sync.protocol import TerminalInfo
from terminal import config as config_mod
from terminal import payments as pay
from terminal.config import CameraSettings, Config
from terminal.configfiles import read_key_file, read_template
from terminal.errors import ApiUrlInvalid, ConfigError, ConfigFileError, SetupCode
from terminal.keys import key_check
from terminal.localhttp import local_client

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
DISK_FAIL = 50 * 2**20  # below this the next sales may be refused with storage_full
DISK_WARN = 500 * 2**20
SKEW_WARN = 30.0  # seconds; coupon windows and payment codes are checked against the till's clock
SKEW_FAIL = 300.0
OFFLINE_WARN = 3600.0


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: Verdict
    words: str
    code: str = ""
    """A stable code (``SetupCode``) for a failure a monitoring agent may act on; ``""``: none."""

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def ok(name: str, words: str) -> Check:
    return Check(name, Verdict.OK, words)


def warn(name: str, words: str) -> Check:
    return Check(name, Verdict.WARN, words)


def fail(name: str, words: str, code: SetupCode | None = None) -> Check:
    """A failure; with a ``code``, its words begin with it (``code: ...``), as the daemon's refusals do."""
    return Check(name, Verdict.FAIL, f"{code.value}: {words}" if code else words, code.value if code else "")


def skip(name: str, words: str) -> Check:
    return Check(name, Verdict.SKIP, words)


def exit_code(checks: list[Check]) -> int:
    verdicts = {c.verdict for c in checks}
    return 2 if Verdict.FAIL in verdicts else 1 if Verdict.WARN in verdicts else 0


def render(checks: list[Check]) -> list[str]:
    lines = [f"{c.verdict.value.upper():<4}  {c.name:<11} {c.words}" for c in checks]
    worst = exit_code(checks)
    lines.append(
        [
            "This till looks healthy.",
            "This till works, but see the warnings above.",
            "This till has a problem: see FAIL above.",
        ][worst]
    )
    return lines


def run_checks(path: Path | None, timeout: float = 5.0) -> list[Check]:
    """Every check, in order; a config that does not load stops the rest (nothing to check against)."""
    cfg, first = check_config(path)
    if cfg is None:
        return [first]
    checks = [
        first,
        *check_secrets(cfg),
        *check_key_files(cfg),
        *check_pcsc(cfg),
        *check_cameras(cfg),
        *check_scanners(cfg),
        *check_printer(cfg, timeout),
        check_database(cfg),
        check_disk(cfg),
        *check_hq(cfg, timeout),
        check_daemon(cfg, timeout),
    ]
    return checks


# -- config ------------------------------------------------------------------------------------------


def check_config(path: Path | None) -> tuple[Config | None, Check]:
    """The file loads and validates, and leaves out no key whose default contradicts what the till holds
    (``config.check_held``: the daemon refuses such a file as ``config_incomplete`` or ``store_mismatch``)."""
    source = str(path or os.environ.get(config_mod.ENV_CONFIG) or "")
    try:
        cfg = config_mod.load(path)
        config_mod.check_held(cfg, config_mod.held_by(cfg, _held_state(cfg.db_path).get))
    except ConfigError as exc:
        said = f"{source or 'config'}: {exc}. Fix the file; the daemon will not start."
        return None, Check("config", Verdict.FAIL, said, exc.code.value if exc.code else "")
    if not source:
        return cfg, warn("config", "no config file (--config or $TILLPOINT_CONFIG): running on built-in defaults")
    return cfg, ok("config", f"{source} is valid (terminal {cfg.terminal.id}, store {cfg.terminal.store_id})")


def check_secrets(cfg: Config) -> list[Check]:
    found = [_check_card_key(cfg.card_key_path, _held_key_check(cfg.db_path))]
    token = cfg.hq_token_path  # where the daemon reads it: the file named, else the one enrolment writes
    if cfg.hq.token:
        found.append(ok("hq token", "set in the config file"))
    elif os.access(token, os.R_OK):
        found.append(_check_token_mode(token))
    elif cfg.hq.token_file:
        found.append(fail("hq token", f"{token} is missing or unreadable: sync cannot log in"))
    elif cfg.hq.enrol_code:
        found.append(ok("hq token", f"none yet: the daemon enrols with its enrolment code and keeps it in {token}"))
    else:
        found.append(warn("hq token", f"none configured (nor in {token}): sync is off and sales stay in the journal"))
    return found


def check_key_files(cfg: Config) -> list[Check]:
    """The secure cards' master key files the config names, read as the daemon's start reads them
    (``configfiles.read_key_file``): one missing, unreadable or cut short stops the start."""
    found = []
    for name, key, path in (
        ("sun key", "reader.sun_key_file", cfg.reader.sun_key_file),
        ("felica key", "reader.felica_key_file", cfg.reader.felica_key_file),
    ):
        if not path:
            continue
        try:
            read_key_file(path, key)
        except ConfigFileError as exc:
            found.append(fail(name, f"{exc}; the daemon will not start"))
            continue
        found.append(ok(name, f"{path} holds a 16-byte key ({key})"))
    return found


def _check_token_mode(token: Path) -> Check:
    """The credential is a bearer token: whoever reads it pushes sales and takes stored value as this till."""
    try:
        mode = token.stat().st_mode
    except OSError as exc:
        return fail("hq token", f"{token} cannot be read ({exc})")
    if mode & stat.S_IRWXO:
        return warn(
            "hq token",
            f"{token} is readable by every user, who could act as this till at head office: chmod 0600 it "
            "(and ask head office for a new credential if others could read it: tillpoint sync --now --rotate)",
        )
    return ok("hq token", f"{token} is readable")


def _held_state(db: Path) -> dict[str, str]:
    """The sync state the till's database keeps (read-only; empty when there is no readable database)."""
    if not db.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM sync_state") if v is not None}
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def _held_key_check(db: Path) -> tuple[str | None, int]:
    """The card-key check the till's database keeps, and how many cards its cache holds (read-only)."""
    if not db.exists():
        return None, 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM sync_state WHERE key = 'card_key_check'").fetchone()
            cards = int(conn.execute("SELECT COUNT(*) FROM cards").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None, 0
    return (str(row[0]) if row else None), cards


def _check_card_key(key: Path, held: tuple[str | None, int] = (None, 0)) -> Check:
    check, cards = held
    if not key.exists():
        if check is not None or cards:
            return fail(
                "card key",
                f"{key} is missing and the database holds {cards} cards hashed with it: "
                "restore it from backup; the daemon will not start without it",
            )
        return warn(
            "card key",
            f"{key} does not exist yet: the daemon makes a new one, which only works "
            "if head office hashes cards with the same key",
        )
    try:
        size, mode = key.stat().st_size, key.stat().st_mode
    except OSError as exc:
        return fail("card key", f"{key} cannot be read ({exc})")
    if size < 16:
        return fail("card key", f"{key} is {size} bytes; a card key needs at least 16")
    if check is not None and key_check(key.read_bytes()) != check:
        return fail(
            "card key",
            f"{key} is not the key this till's cards were hashed with (its check differs "
            "from the database's): restore the right file",
        )
    if mode & (stat.S_IRWXO):
        return warn("card key", f"{key} is readable by every user: chmod 0640 (or 0600) it")
    return ok("card key", f"{key} present" + (" and hashes this till's cards" if check else ""))


# -- devices -----------------------------------------------------------------------------------------


def _kinds(specs: list[str]) -> set[str]:
    return {spec.partition(":")[0] for spec in specs}


def check_pcsc(cfg: Config) -> list[Check]:
    """pcscd when a reader needs it, then each reader: the till's, then the door's (``[door]``)."""
    specs = [*cfg.reader.devices, *cfg.door.devices]
    checks: list[Check] = []
    if _kinds(specs) & {"pcsc", "auto"}:
        checks.append(check_pcscd())
    for spec in cfg.reader.devices:
        checks.append(check_reader(spec))
    for spec in cfg.door.devices:
        found = check_reader(spec)
        checks.append(replace(found, name=f"door {found.name}"))
    return checks


def check_pcscd() -> Check:
    path = os.environ.get("PCSCLITE_CSOCK_NAME", PCSCD_SOCKET)
    if not os.path.exists(path):
        return fail("pcscd", f"pcscd is not running (no socket {path}): systemctl enable --now pcscd.socket")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
    except OSError as exc:
        return fail("pcscd", f"pcscd does not answer on {path} ({exc.strerror or exc}): systemctl restart pcscd")
    return ok("pcscd", f"answers on {path}")


def check_reader(spec: str) -> Check:
    name = f"reader {spec}"
    kind = spec.partition(":")[0]
    if kind == "sim":
        return warn(name, "a simulated reader: no real card can be read (fine for a demo)")
    if kind == "nfcpy":
        return check_nfcpy(name, spec.partition(":")[2])
    try:
        from drivers import open_reader

        reader = open_reader(spec, lambda uid: "")
        devices = reader.readers()
    except ImportError as exc:
        return fail(name, f"the driver's library is not installed ({exc.name}): reinstall with the pcsc extra")
    except Exception as exc:  # noqa: BLE001 - a driver's own error, in its words
        return fail(name, f"cannot be opened: {exc}")
    if kind == "auto" and reader.name.startswith("sim:"):
        return warn(name, "no PC/SC reader found, so the daemon would use its simulated reader")
    if not devices:
        return warn(
            name, "no reader plugged in (or pcscd has no driver for it): plug it in, then check `journalctl -u pcscd`"
        )
    return ok(name, f"sees {', '.join(devices)}")


def check_nfcpy(name: str, path: str, timeout: float = 5.0) -> Check:
    """An nfcpy reader is seen only by opening it (nfcpy lists nothing it has not opened, and pcscd never
    drives it): opened and closed again. What stops it is the driver's own words, which name the owner
    (a kernel module such as port100, a program using libusb), the udev rule or `lsusb`; a warning, as a
    PC/SC reader not plugged in is, since a running daemon holds its own reader."""

    def probe() -> str:
        try:
            from drivers.errors import DriverUnavailable
            from drivers.nfcpy_reader import open_frontend
        except ImportError as exc:
            return f"!the nfcpy library is not installed ({exc.name}): reinstall tillpoint"
        try:
            open_frontend(path or "usb").close()
        except DriverUnavailable as exc:
            return f"!{exc}"
        return f"nfcpy opens {path or 'usb'}"

    found = _bounded(probe, timeout)
    if found is None:
        return warn(name, f"nfcpy took more than {timeout:.0f} s to open it: replug the reader")
    return warn(name, found[1:]) if found.startswith("!") else ok(name, found)


def check_printer(cfg: Config, timeout: float = 5.0) -> list[Check]:
    """The printer in the middle (``[printer]``): the real printer answers where ``target`` says, the POS's
    side (``listen``) can be had, and each ``[receipts] templates`` file is a template (the daemon refuses to
    start on one that is not)."""
    printer = cfg.printer
    if not printer.listen:
        return [skip("printer", "no printer in the middle ([printer] listen is empty)")]
    checks = [check_printer_end("printer", printer.target, min(timeout, printer.connect_timeout))]
    checks.append(check_printer_listen(printer.listen))
    checks += [check_template(path) for path in cfg.receipts.templates]
    if cfg.receipts.attach and not cfg.receipts.templates:
        checks.append(warn("receipts", "attach = true but no template: no receipt is read, so none becomes a sale"))
    return checks


def _port_words(path: str, exc: OSError, what: str) -> tuple[Verdict, str]:
    if exc.errno == errno.ENOENT:
        return Verdict.FAIL, f"no such device {path}: is the {what} plugged in and switched on?"
    if exc.errno == errno.EACCES:
        group = "dialout" if "tty" in path else "lp"
        return Verdict.FAIL, f"this user may not open {path} (the {group} group, DeviceAllow=)"
    if exc.errno == errno.EBUSY:
        return Verdict.WARN, f"{path} is busy: held by the running daemon, or another program (`fuser {path}`)"
    return Verdict.FAIL, f"cannot open {path}: {exc.strerror or exc}"


def check_printer_end(name: str, spec: str, timeout: float) -> Check:
    """The real printer: connected to (or its device opened) and closed again, as the daemon's probe does."""

    def probe() -> str:
        from drivers.printer import open_link

        kind, _, rest = spec.partition(":")
        try:
            open_link(spec, timeout).close()
        except OSError as exc:
            if kind == "tcp":
                why = "no answer in time" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
                return (
                    f"!{spec} does not answer ({why}): is the printer switched on, and at that address? Until it "
                    "answers the daemon does not listen, so the POS's connections are refused"
                )
            verdict, words = _port_words(rest.split(":")[0] if kind == "serial" else rest, exc, "printer")
            return ("!" if verdict is Verdict.FAIL else "?") + words
        return f"{spec} answers"

    found = _bounded(probe, timeout + 1)
    if found is None:
        return fail(name, f"{spec} did not answer within {timeout:.0f} s: is the printer switched on?")
    return _answered(name, found)


def _answered(name: str, said: str) -> Check:
    """A bounded probe's answer as a check: ``!`` and its words fail, ``?`` and its words warn, other words pass."""
    if said.startswith("!"):
        return fail(name, said[1:])
    return warn(name, said[1:]) if said.startswith("?") else ok(name, said)


def check_printer_listen(spec: str) -> Check:
    """The POS's side: a tcp address of this PC, or the serial port or gadget device the POS's cable reaches."""
    name = "printer listen"
    kind, _, rest = spec.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
                sock.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return ok(name, f"{spec}: the port is taken (by the running daemon, if it runs: `ss -ltnp`)")
            return fail(name, f"{spec}: {host} is not an address of this PC ({exc.strerror or exc})")
        return ok(name, f"{spec} can be listened on")
    path = rest.split(":")[0] if kind == "serial" else rest
    if path.startswith("/dev/") and not os.path.exists(path):
        gadget = " (load the printer gadget: `modprobe g_printer`)" if "g_printer" in path else ""
        return fail(name, f"no such device {path}: is the POS's cable plugged in here?{gadget}")
    return ok(name, f"{spec} is there")


def check_template(path: str) -> Check:
    """A receipt template read as the daemon's start reads it (``configfiles.read_template``)."""
    name = f"template {Path(path).name}"
    try:
        template = read_template(path)
    except ConfigFileError as exc:
        return fail(name, f"{exc}; the daemon will not start")
    return ok(name, f"{template.name} ({template.language}, {template.width} characters a line)")


def _scanner_specs(cfg: Config) -> list[str]:
    section = getattr(cfg, "scanner", None)
    return list(getattr(section, "devices", []) or [])


def check_scanners(cfg: Config) -> list[Check]:
    """Each scanner that is not a camera (those: ``check_cameras``): a kind the drivers know, and a device
    that is there and this user may open (the daemon would report it as a reader error and keep retrying)."""
    from drivers import SCANNERS

    checks: list[Check] = []
    for spec in _scanner_specs(cfg):
        kind, _, path = spec.partition(":")
        name = f"scanner {spec}"
        if kind == "camera":
            continue
        if kind == "sim":
            checks.append(warn(name, "a simulated scanner: no real code can be read (fine for a demo)"))
            continue
        if kind not in SCANNERS:
            checks.append(fail(name, f"unknown scanner kind {kind!r} (known: {', '.join(sorted(SCANNERS))})"))
            continue
        if not path.startswith("/dev/"):  # a pyserial URL (socket://...): nothing to look at here
            checks.append(ok(name, "not a device file: not checked"))
        elif not os.path.exists(path):
            checks.append(fail(name, f"no such device {path}: is the scanner plugged in?"))
        elif not os.access(path, os.R_OK):
            group = "input" if kind == "wedge" else "dialout"
            checks.append(fail(name, f"this user may not read {path} (the {group} group, or a udev rule)"))
        else:
            checks.append(ok(name, f"{path} is there"))
    return checks


def check_cameras(cfg: Config) -> list[Check]:
    cameras = [s for s in _scanner_specs(cfg) if s.startswith("camera:")]
    if not cameras:
        present = sorted(str(p) for p in Path("/dev").glob("video*"))
        return [
            skip("camera", "no camera scanner configured" + (f" ({', '.join(present)} present)" if present else ""))
        ]
    section = cfg.scanner
    return [
        check_camera(
            spec.partition(":")[2], settings=section.cameras.get(spec), resolution=section.resolution, fps=section.fps
        )
        for spec in cameras
    ]


def check_camera(
    device: str,
    timeout: float = 5.0,
    settings: CameraSettings | None = None,
    resolution: tuple[int, int] | None = None,
    fps: float | None = None,
) -> Check:
    """Opens the camera with its configured controls and says what it reports for each (a control the
    camera ignores is a warning: the setting has no effect on this model)."""
    name = f"camera {_shown(device)}"
    node = f"/dev/video{device.strip()}" if device.strip().isdigit() else device
    if node.startswith("/dev/"):
        if not os.path.exists(node):
            present = sorted(str(p) for p in Path("/dev").glob("video*"))
            there = f"present: {', '.join(present)}" if present else "no /dev/video* on this machine"
            return fail(name, f"no such device {node}: is the camera plugged in? ({there})")
        if not os.access(node, os.R_OK | os.W_OK):
            return fail(name, f"{node} exists but this user may not open it (video group, DeviceAllow=)")
    if settings is not None:
        resolution = settings.resolution or resolution
        fps = settings.fps or fps
    opened = _bounded(lambda: _grab_frame(device, settings, resolution, fps), timeout)
    if opened is None:
        return fail(name, f"opening it took more than {timeout:.0f} s")
    return _answered(name, opened)


def _shown(device: str) -> str:
    """A camera as status lines show it: an IP camera's URL without its credentials (user:password@)."""
    try:
        from drivers.camera import describe, parse_source
    except ImportError:
        return device
    try:
        return describe(parse_source(device))
    except Exception:  # noqa: BLE001 - an empty spec: check_camera says what is wrong with it
        return device


def _grab_frame(
    device: str, settings: CameraSettings | None, resolution: tuple[int, int] | None, fps: float | None
) -> str:
    """What the camera gives and reports; "!" leads a failure, "?" a warning (a control ignored)."""
    try:
        from drivers.camera import Controls, apply_controls, capture_report, open_capture, parse_source
        from drivers.errors import DriverUnavailable
    except ImportError:
        return "present (OpenCV not installed here, so no frame was read)"
    try:
        capture = open_capture(parse_source(device), resolution, fps)
    except DriverUnavailable as exc:
        return f"!{exc}"
    try:
        controls = Controls(settings.exposure, settings.focus, settings.gain) if settings else Controls()
        reports = capture_report(capture, resolution, fps) + apply_controls(capture, controls)
        good, frame = capture.read()
        if not good or frame is None:
            if parse_source(device).kind == "file":
                return "!opens but holds no video frame: a file cut short or written empty; record it again"
            return (
                "!opens but gives no picture: another program may be reading it (`fuser` on its /dev/video node), "
                "or it is not the camera's capture node (`v4l2-ctl --list-devices` lists each camera's nodes)"
            )
        shape = frame.shape
        said = "; ".join(str(r) for r in reports) or "no control configured"
        reported = _reported(capture)
        text = f"gives {shape[1]}x{shape[0]} frames; {said}; reports {reported}"
        return ("?" if any(not r.applied for r in reports) else "") + text
    finally:
        capture.release()


def _reported(capture: Any) -> str:
    """Every control the camera reports, as OpenCV reads it (-1 or 0 where the driver has none)."""
    import cv2

    props = {
        "fps": cv2.CAP_PROP_FPS,
        "auto_exposure": cv2.CAP_PROP_AUTO_EXPOSURE,
        "exposure": cv2.CAP_PROP_EXPOSURE,
        "autofocus": cv2.CAP_PROP_AUTOFOCUS,
        "focus": cv2.CAP_PROP_FOCUS,
        "gain": cv2.CAP_PROP_GAIN,
    }
    return ", ".join(f"{name} {float(capture.get(prop)):g}" for name, prop in props.items())


def _bounded(work: Callable[[], str], timeout: float) -> str | None:
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


# -- storage -----------------------------------------------------------------------------------------


def check_database(cfg: Config) -> Check:
    path = cfg.db_path
    if not path.exists():
        return warn("database", f"{path} does not exist yet (the daemon makes it at its first start)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
            pending = _pending(conn)
            resent, refused = _sync_state(conn, "journal_resent"), _sync_state(conn, "push_refused")
            held = _sync_state(conn, "push_held")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        problems, pending, resent, refused, held = [str(exc)], None, None, None, None
    # a read-only file system, whoever asks; files of another user only when they kept this user out
    unwritable = _unwritable(path, users=pending is None and bool(problems))
    if unwritable:
        return fail(
            "database",
            f"{path} cannot be written ({unwritable}): the daemon cannot start or record a sale; "
            "remount the file system read-write, or give the files back to the daemon's user",
        )
    if problems:
        return fail(
            "database",
            f"{path} is damaged ({'; '.join(problems[:3])}): restart the daemon and it "
            "rebuilds the file, keeping the journal, and pulls the cache again",
        )
    if _named(refused):
        return warn(
            "database",
            f"head office refuses journal entries of this till even alone: {_named(refused)}; "
            "they are kept in this journal and were reported to head office as a journal_lost item naming each txn",
        )
    if held:
        from sync.client import held_message

        return warn("database", f"{held_message(held)}")
    resends = f", {resent} entries sent again after head office lost them" if resent else ""
    return ok("database", f"{path}: integrity ok" + (f", {pending}" if pending else "") + resends)


def _named(refused: str | None) -> str:
    """The entries of the till's ``push_refused`` state, by seq, txn and why (``body_too_large``, or
    ``txn_id_taken`` and the terminal whose entry holds the txn id at head office)."""
    try:
        entries = json.loads(refused or "[]")
        return ", ".join(f"seq {r['seq']} (txn {r['txn_id']}, {_why(r)})" for r in entries)
    except (ValueError, TypeError, KeyError):
        return str(refused or "")


def _why(refused: dict[str, object]) -> str:
    held_by = refused.get("held_by")
    return f"{refused.get('code')}" + (f" by terminal {held_by}" if held_by else "")


def _sync_state(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _unwritable(path: Path, users: bool) -> str:
    """Why the daemon could not write the database at ``path`` (and its journal files beside it), or ``""``:
    a read-only file system, or (``users``) a file or directory this user may not write."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not users:
        return ""
    for part in (path.parent, path, *(path.with_name(path.name + side) for side in ("-wal", "-shm"))):
        if part.exists() and not os.access(part, os.W_OK):
            return f"{part} is not writable by this user"
    return ""


def _pending(conn: sqlite3.Connection) -> str:
    try:
        count, oldest = conn.execute("SELECT COUNT(*), MIN(created_at) FROM journal WHERE pushed_at IS NULL").fetchone()
    except sqlite3.Error:
        return ""
    return f"{count} journal entries waiting for head office" + (f" (oldest {oldest})" if count else "")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(cfg: Config) -> Check:
    where = _existing(cfg.data_dir.resolve())
    usage = shutil.disk_usage(where)
    free = f"{usage.free / 2**20:,.0f} MiB free of {usage.total / 2**20:,.0f} MiB on {where}"
    if usage.free < DISK_FAIL:
        return fail("disk", f"{free}: sales will soon be refused (storage_full); free some space")
    if usage.free < DISK_WARN or usage.free < usage.total * 0.05:
        return warn("disk", f"{free}: getting low")
    return ok("disk", free)


# -- head office and the daemon ------------------------------------------------------------------------


def _token(cfg: Config) -> str:
    if cfg.hq.token:
        return cfg.hq.token
    try:
        return cfg.hq_token_path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def check_hq(cfg: Config, timeout: float) -> list[Check]:
    url = cfg.hq.url
    try:
        with httpx.Client(base_url=url, timeout=timeout, verify=cfg.hq.ca_file or True) as client:
            before = time.time()
            health = client.get("/v1/health")
            after = time.time()
            if health.status_code != 200:
                answered = f"head office answered {health.status_code} to /v1/health"
                return [
                    fail("head office", f"{url} answered {health.status_code} to /v1/health"),
                    *_unchecked(answered),
                ]
            token = _token(cfg)
            login = _token_check(client, token)
            checks = [ok("head office", f"{url} answers"), clock_check(health.json().get("time"), (before + after) / 2)]
            if login.verdict is not Verdict.OK:
                return [*checks, login, *_unchecked("head office does not take this till's token")]
            return [*checks, login, *_setup_checks(client, cfg, token)]
    except httpx.HTTPError as exc:
        return [
            fail(
                "head office",
                f"{url} cannot be reached ({exc.__class__.__name__}: {exc}); sales go on "
                "offline, but check the network, the firewall and hq.url",
            ),
            *_unchecked("head office cannot be reached"),
        ]


def _unchecked(why: str) -> list[Check]:
    """The checks against head office's registration of this till, not made (``why``)."""
    return [skip("hq store", f"not checked: {why}"), skip("hq card key", f"not checked: {why}")]


def _setup_checks(client: httpx.Client, cfg: Config, token: str) -> list[Check]:
    """This till's store and card-hash key against head office's registration of it (``GET /v1/terminal``)."""
    reply = client.get("/v1/terminal", headers={"Authorization": f"Bearer {token}"})
    if reply.status_code == 404:
        return _unchecked("head office is of an older release (no GET /v1/terminal): upgrade it")
    if reply.status_code != 200:
        return _unchecked(f"head office answered {reply.status_code} to GET /v1/terminal")
    try:
        info = TerminalInfo.model_validate(reply.json())
    except ValueError:
        return _unchecked("head office's answer to GET /v1/terminal is unreadable")
    return [store_check(cfg.terminal.store_id, info.store_id), card_key_check(cfg.card_key_path, info.card_key_check)]


def store_check(configured: str, registered: str) -> Check:
    if configured == registered:
        return ok("hq store", f"head office registered this terminal for store {registered}, as configured")
    return fail(
        "hq store",
        f"head office registered this terminal for store {registered}, and terminal.store_id is {configured}: "
        "head office holds every sale of this till in quarantine (wrong_store); correct terminal.store_id",
        SetupCode.STORE_MISMATCH,
    )


def card_key_check(key: Path, hq_check: str | None) -> Check:
    """This till's card-hash key against the check of head office's (``terminal.keys.key_check``: neither key
    leaves its machine)."""
    if hq_check is None:
        return skip("hq card key", "not checked: head office was started without the card-hash key (--card-key-file)")
    try:
        mine = key_check(key.read_bytes())
    except FileNotFoundError:
        return fail(
            "hq card key",
            f"{key} does not exist: the daemon would make a new key, which is not head office's, and know no "
            "card; install the chain's key file (the one head office serves with)",
            SetupCode.CARD_KEY_MISMATCH,
        )
    except OSError as exc:
        return skip("hq card key", f"not checked: {key} cannot be read ({exc.strerror or exc})")
    if hmac.compare_digest(mine, hq_check):
        return ok("hq card key", f"{key} is the card-hash key head office hashes cards with")
    return fail(
        "hq card key",
        f"{key} is not the card-hash key head office hashes cards with: this till hashes every card differently "
        "and identifies no member; install the chain's key file (the one head office serves with)",
        SetupCode.CARD_KEY_MISMATCH,
    )


def clock_check(hq_time: Any, local: float) -> Check:
    try:
        skew = datetime.fromisoformat(str(hq_time)).timestamp() - local
    except ValueError:
        return warn("clock", f"head office sent no readable time ({hq_time!r})")
    words = f"{abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} head office"
    if abs(skew) > SKEW_FAIL:
        return fail("clock", f"this till's clock is {words}: turn on time sync (timedatectl set-ntp true)")
    if abs(skew) > SKEW_WARN:
        return warn("clock", f"this till's clock is {words}: check time sync (timedatectl)")
    return ok("clock", f"this till's clock is {words}")


def _token_check(client: httpx.Client, token: str) -> Check:
    if not token:
        return skip("hq login", "no token configured")
    reply = client.get(
        "/v1/changes", params={"since": 10**15, "limit": 1}, headers={"Authorization": f"Bearer {token}"}
    )
    if reply.status_code == 200:
        return ok("hq login", "head office accepts this terminal's token")
    if reply.status_code == 401:
        return fail(
            "hq login",
            "head office refuses this terminal's token (wrong or revoked): ask head office to re-key the "
            "terminal (tillpoint hq rotate TERMINAL: an enrolment code)",
        )
    return warn("hq login", f"head office answered {reply.status_code} to a login check")


def check_daemon(cfg: Config, timeout: float) -> Check:
    if not cfg.api.enabled:
        return skip("daemon", "local API disabled in the config")
    # where the running daemon says its API is (demo --api-port, port 0), else the config's (its Unix socket only)
    try:
        url, socket = cfg.local_api()
    except ApiUrlInvalid as exc:
        return warn("daemon", f"{exc.code}: {exc}")
    try:
        with local_client(socket) as client:
            reply = client.get(f"{url}/v1/status", timeout=timeout)
        status = reply.json()
    except (httpx.HTTPError, ValueError):
        where = f"the Unix socket {socket}" if socket else url
        return warn("daemon", f"no daemon answers on {where}: systemctl status tillpoint")
    if status.get("sync_error") and "Rejected" in str(status.get("sync_error")):
        return fail(
            "daemon",
            f"running, but sync fails on this till: {status['sync_error']} ({status.get('pending')} entries waiting)",
        )
    if status.get("sync_crashes"):
        return warn("daemon", f"running; its sync loop crashed {status['sync_crashes']} times: see the journal")
    back = status.get("clock_back_s")
    if isinstance(back, int) and pay.clock_went_back(
        back, pay.RiskLimits(max_clock_offset_s=cfg.payments.max_clock_offset)
    ):
        return fail(
            "daemon",
            f"running, but this till's clock reads {back / 3600:.1f} h earlier than its last contact with "
            "head office: offline payments are refused (till_clock_wrong); set the time (timedatectl)",
        )
    since = status.get("offline_since")
    if since:
        age = time.time() - datetime.fromisoformat(since).timestamp()
        if age > OFFLINE_WARN:
            return warn(
                "daemon",
                f"running, but offline from head office for {age / 3600:.1f} h "
                f"({status.get('pending')} entries waiting)",
            )
    return ok(
        "daemon",
        f"running on {f'the Unix socket {socket}' if socket else url}, {status.get('pending')} entries waiting",
    )
