"""The rows that stop a printed receipt earning twice (``receipt_digests``, ``receipt_numbers``), kept bounded.

A receipt printed more than ``[receipts] max_age_days`` ago is refused (``receipt_too_old``) whatever the rows say,
so its rows are deleted ``terminal.receipts.age.MARGIN_DAYS`` after that: when the till starts, then once a day.
They go in batches of ``PRUNE_BATCH`` rows a table, each its own short transaction, so a sale waits for one batch
at most; a pruning stopped half way (the till killed, the disk full or read-only) has deleted whole batches of such
rows and nothing else, and the next one goes on. A failed pruning is logged (``receipt_rows_prune_failed``) and
the till sells on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from terminal.errors import Rejected
from terminal.model import utc_iso
from terminal.receipts.age import PRUNE_BATCH, forget_before

log = logging.getLogger("tillpoint.receipts")

DAY = 86400.0
FAILED = "receipt_rows_prune_failed"


def prune_rows(
    forget: Callable[[str, int], int],
    max_age_days: float,
    now: float,
    *,
    batch: int = PRUNE_BATCH,
    pause: float = 0.005,
    stop: threading.Event | None = None,
) -> int:
    """Delete, batch after batch, the rows of the receipts too old at ``now`` to earn (``forget_before``); the rows
    deleted. ``pause``: seconds between two batches, for the sales waiting on the store."""
    before = forget_before(datetime.fromtimestamp(now, UTC), max_age_days)
    if before is None:
        return 0
    cutoff, deleted = utc_iso(before.timestamp()), 0
    while stop is None or not stop.is_set():
        done = forget(cutoff, batch)
        deleted += done
        if done < batch:
            break
        time.sleep(pause)
    return deleted


class RowKeeper:
    """Prunes the receipts' rows when the till starts and then once a day (a thread)."""

    def __init__(
        self, forget: Callable[[str, int], int], max_age_days: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.forget, self.max_age_days, self.clock = forget, max_age_days, clock
        self.last_prune: float | None = None
        self.deleted = 0
        self.failing: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prune(self) -> int:
        """Prune now; a failure (the disk full or read-only, the store busy) is logged once and left for the next day."""
        now = self.clock()
        self.last_prune = now
        try:
            done = prune_rows(self.forget, self.max_age_days, now, stop=self._stop)
        except Rejected as exc:
            if self.failing is None:
                log.error("%s: old receipts' rows not deleted (%s); sales go on", FAILED, exc, extra={"code": FAILED})
            self.failing = FAILED
            return 0
        self.failing = None
        self.deleted += done
        if done:
            log.info("deleted the rows of %d receipt(s) too old to earn", done)
        return done

    def tick(self) -> None:
        last = self.last_prune
        if last is None or self.clock() - last >= DAY:
            self.prune()

    def start(self, every: float = 600.0) -> None:
        """Prune in a thread now, then check every ``every`` seconds whether a day has passed."""
        self._thread = threading.Thread(target=self._run, args=(every,), name="receipt-rows-prune", daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never let a pruning bug end the thread that keeps the rows bounded
                log.exception("pruning receipts' rows failed")
            if self._stop.wait(every):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


__all__ = ["FAILED", "RowKeeper", "prune_rows"]
