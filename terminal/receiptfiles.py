"""Captured receipts on disk: kept as ``DIGEST.bin`` (read by a template) or ``unread/DIGEST.bin`` with
``DIGEST.code`` (flagged), readable again with ``tillpoint receipt try``; pruned by age and total size.

Keeping a receipt never stops printing: the printer in the middle forwards the bytes before the parser sees
them, and a directory that cannot be written (read-only, full, gone) is a logged event with a stable code
(``receipts_dir_read_only``, ``receipts_dir_full``, ``receipts_dir_failed``), said once when it starts and
once when receipts are kept again, and counted.

Retention (``[receipts] keep_days``, ``keep_max_mb``): a receipt older than ``keep_days`` (by the time its
file was written) is deleted; then, while the receipts kept weigh more than ``keep_max_mb``, the oldest go
first. A receipt's ``.bin`` and ``.code`` go together. ``Keeper`` prunes when it starts, once a day, and as
soon as what it wrote since takes the total over the cap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from terminal.errors import DISK_FULL
from terminal.ports import Emit
from terminal.receipts.escpos import Captured

log = logging.getLogger("tillpoint.receipts")

DAY = 24 * 3600.0
UNREAD = "unread"
SUFFIXES = (".bin", ".code")


@dataclass(frozen=True, slots=True)
class Retention:
    days: float = 30.0
    """A receipt older than this many days is deleted; 0: no age limit."""
    max_bytes: int = 200 * 1024 * 1024
    """The receipts kept weigh at most this; the oldest go first; 0: no cap."""


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning did."""

    removed: int
    removed_bytes: int
    kept: int
    kept_bytes: int


@dataclass(frozen=True, slots=True)
class _Kept:
    """One kept receipt: its files (``.bin``, and ``.code`` for an unread one), when written, how big."""

    files: tuple[Path, ...]
    mtime: float
    size: int


def _receipts(directory: Path) -> list[_Kept]:
    """The receipts kept under ``directory`` (read and unread), oldest first."""
    found: list[_Kept] = []
    for where in (directory, directory / UNREAD):
        groups: dict[str, list[Path]] = {}
        try:
            entries = list(where.iterdir())
        except OSError:
            continue
        for path in entries:
            if path.suffix in SUFFIXES and path.is_file():
                groups.setdefault(path.stem, []).append(path)
        for paths in groups.values():
            try:
                stats = [p.stat() for p in paths]
            except OSError:  # deleted meanwhile
                continue
            found.append(_Kept(tuple(paths), max(s.st_mtime for s in stats), sum(s.st_size for s in stats)))
    return sorted(found, key=lambda k: (k.mtime, k.files[0].name))


def prune(directory: Path, retention: Retention, now: float) -> Pruned:
    """Delete the receipts kept under ``directory`` that are older than ``retention.days`` at ``now``, then
    the oldest until they weigh at most ``retention.max_bytes``. A file that cannot be deleted is logged and
    counted as kept."""
    kept = _receipts(directory)
    total = sum(k.size for k in kept)
    removed = removed_bytes = 0
    oldest = now - retention.days * DAY if retention.days else None
    for receipt in kept:
        too_old = oldest is not None and receipt.mtime < oldest
        too_big = bool(retention.max_bytes) and total > retention.max_bytes
        if not too_old and not too_big:
            break  # oldest first: every later one is newer, and the total is under the cap
        if _remove(receipt):
            removed, removed_bytes, total = removed + 1, removed_bytes + receipt.size, total - receipt.size
    return Pruned(removed, removed_bytes, len(kept) - removed, total)


def _remove(receipt: _Kept) -> bool:
    try:
        for path in receipt.files:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot delete kept receipt %s: %s", receipt.files[0].name, exc)
        return False
    return True


def _write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a full disk leaves no half-written receipt behind."""
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        part.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise


def problem_code(exc: OSError) -> str:
    """The stable code of a receipts directory that cannot be written."""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "receipts_dir_read_only"
    if exc.errno in DISK_FULL:
        return "receipts_dir_full"
    return "receipts_dir_failed"


class Keeper:
    """Keeps each captured receipt's bytes (the desk's ``Keep``) and prunes them (``Retention``).

    ``clock`` gives the time (``time.time``; a test gives its own); ``emit`` gets an event ``receipts``
    when keeping starts failing (state ``keep_failed`` and its code) and when it works again (``kept``)."""

    def __init__(
        self,
        directory: Path,
        retention: Retention = Retention(),
        *,
        clock: Callable[[], float] = time.time,
        emit: Emit | None = None,
    ) -> None:
        self.directory, self.retention, self.clock, self.emit = directory, retention, clock, emit
        self.failures = 0
        """Receipts that could not be kept (printed all the same)."""
        self.failing: str | None = None
        """The code of the current failure to keep; None while receipts are kept."""
        self._known = False  # whether the state (kept, or failing) was said yet
        self.last_prune: float | None = None
        self.last: Pruned | None = None
        self._since = 0  # bytes written since the last pruning
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, receipt: Captured, refused: str | None) -> None:
        self.keep(receipt, refused)

    def keep(self, receipt: Captured, refused: str | None) -> bool:
        """Write ``receipt`` (with the refusal ``code`` of one no template read); False when it could not be."""
        where = self.directory / UNREAD if refused else self.directory
        try:
            where.mkdir(parents=True, exist_ok=True)
            _write(where / f"{receipt.digest}.bin", receipt.raw)
            if refused:
                _write(where / f"{receipt.digest}.code", (refused + "\n").encode())
        except OSError as exc:
            self.failures += 1
            self._failed(receipt.digest[:12], exc)
            return False
        self._kept()
        with self._lock:
            self._since += len(receipt.raw)
            over = bool(self.retention.max_bytes) and self._since + (self.last.kept_bytes if self.last else 0) > (
                self.retention.max_bytes
            )
        if over:
            self.prune()
        return True

    def check(self) -> bool:
        """Whether receipts can be kept now (a file written and deleted); said as keeping a receipt would be:
        an event ``receipts`` (``kept``, or ``keep_failed`` and its code) when the state is first known or
        changes."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".check"
            _write(probe, b"ok\n")
            probe.unlink()
        except OSError as exc:
            self._failed("(check)", exc)
            return False
        self._kept()
        return True

    def _failed(self, what: str, exc: OSError) -> None:
        code = problem_code(exc)
        if self.failing == code:
            log.debug("receipt %s not kept (%s): %s", what, code, exc)
            return
        self.failing, self._known = code, True
        log.error(
            "%s: cannot keep captured receipts in %s (%s); printing goes on, receipts are not kept",
            code,
            self.directory,
            exc,
            extra={"code": code},
        )
        if self.emit is not None:
            self.emit({"type": "receipts", "state": "keep_failed", "code": code, "detail": str(exc)})

    def _kept(self) -> None:
        if self.failing is None and self._known:
            return
        if self.failing is not None:
            log.warning("receipts are kept in %s again (after %s)", self.directory, self.failing)
        self.failing, self._known = None, True
        if self.emit is not None:
            self.emit({"type": "receipts", "state": "kept", "code": None, "detail": ""})

    def prune(self) -> Pruned:
        """Prune now (``prune``), at the keeper's clock."""
        now = self.clock()
        done = prune(self.directory, self.retention, now)
        with self._lock:
            self.last_prune, self.last, self._since = now, done, 0
        if done.removed:
            log.info(
                "pruned %d kept receipt(s), %d bytes; %d kept, %d bytes",
                done.removed,
                done.removed_bytes,
                done.kept,
                done.kept_bytes,
            )
        return done

    def tick(self) -> Pruned | None:
        """Prune when a day has passed since the last pruning (or none was made); None when not yet."""
        last = self.last_prune
        if last is not None and self.clock() - last < DAY:
            return None
        return self.prune()

    def start(self, every: float = 600.0) -> None:
        """Check the directory can be written and prune now, then check every ``every`` seconds whether a day
        has passed (a thread)."""
        self.check()
        self.tick()
        self._thread = threading.Thread(target=self._run, args=(every,), name="receipts-prune", daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.tick()
            except Exception:  # never let a pruning bug end the thread that keeps the directory bounded
                log.exception("pruning kept receipts failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


__all__ = ["Keeper", "Pruned", "Retention", "problem_code", "prune"]
