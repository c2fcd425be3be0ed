"""Head office's campaign timer: every ``interval`` seconds, in a background thread of the server, run
the campaigns whose schedule is due (``hq.campaigns.run_due``), after giving back the gifts of coupons
nobody claimed in time (``hq.wallet.gifts.expire``), expiring the points lots whose expiry has come
(``hq.ledger.expire``: breakage of their issuing merchants), clearing gift card value past its expiry
(``hq.giftcards.expire``) and deciding the rewards of door check-ins still pending
(``hq.campaigns.reward_pending``).

Runs are idempotent, so several servers (workers, hosts) may each run a timer on one database: the
decisions are keyed, and the member rows are locked while they are taken. A run that fails is logged
and counted, and the next tick tries again; a tick never overlaps the one before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hq import campaigns, clockcheck, giftcards, ledger, stats
from hq.db.engine import Db
from hq.errors import HqError
from hq.wallet import gifts

log = logging.getLogger("tillpoint.hq.campaigns")


def system_now() -> datetime:
    return datetime.now(UTC)


class CampaignTimer:
    def __init__(
        self,
        db: Db,
        interval: float = 60.0,
        now: Callable[[], datetime] = system_now,
        skew: float = clockcheck.DEFAULT_SKEW,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("a campaign timer's interval is above 0 seconds")
        self.db, self.interval, self.now, self.skew, self.monotonic = db, interval, now, skew, monotonic
        self._seen: tuple[datetime, float] | None = None  # the last tick's clock and monotonic clock
        self._jumped: datetime | None = None  # the clock jumped ahead: a till heard from then on confirms it
        self.ticks = 0
        self.failures = 0
        self.clock_doubts = 0  # ticks that skipped what cannot be undone (``hq.clockcheck``)
        self._doubt: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hq-campaigns", daemon=True)

    def tick(self) -> list[dict[str, Any]]:
        """One pass: every due campaign run; a failure is logged and counted, never raised."""
        self.ticks += 1
        now = self.now()
        if not self._clock_trusted(now):  # every step below acts on "now", and none can be taken back
            return []
        try:  # gifts nobody claimed in time go back to their givers
            self.db.transact(lambda tx: gifts.expire(tx, int(now.timestamp())))
        except HqError as exc:
            self.failures += 1
            log.error("giving back expired gifts failed (tried again in %.0f s): %s", self.interval, exc)
        try:  # points lots whose expiry has come: breakage of their issuers, tills learn it at their next pull
            self.db.transact(lambda tx: ledger.expire(tx, now))
        except HqError as exc:
            self.failures += 1
            log.error("expiring points failed (tried again in %.0f s): %s", self.interval, exc)
        try:  # gift card value past its expiry: cleared (the tills refuse it already)
            self.db.transact(lambda tx: giftcards.expire(tx, now.astimezone(UTC).date(), ledger.utc_text(now)))
        except HqError as exc:
            self.failures += 1
            log.error("clearing expired gift cards failed (tried again in %.0f s): %s", self.interval, exc)
        try:  # door check-ins whose reward a push could not decide
            campaigns.reward_pending(self.db, now)
        except HqError as exc:
            self.failures += 1
            log.error("deciding check-in rewards failed (tried again in %.0f s): %s", self.interval, exc)
        try:  # the members' windows follow the day (segments previewed today read them)
            stats.roll_windows(self.db, now.astimezone(UTC).date())
        except HqError as exc:
            self.failures += 1
            log.error("rolling the members' windows failed (tried again in %.0f s): %s", self.interval, exc)
        try:
            done = campaigns.run_due(self.db, now)
        except (HqError, ValueError) as exc:
            self.failures += 1
            log.error("campaign run failed (tried again in %.0f s): %s", self.interval, exc)
            return []
        for run in done:
            if "error" in run:
                self.failures += 1
                log.error("campaign %s failed (tried again next tick): %s", run["campaign_id"], run["error"])
            else:
                log.info("campaign %s run %s: %s", run["campaign_id"], run["run_key"], run)
        return done

    def _clock_trusted(self, now: datetime) -> bool:
        """Whether the timer may act on ``now`` (gifts given back, points expired, gift card value cleared,
        check-in rewards decided, the members' windows rolled, campaigns run: none can be undone): not while
        head office's clock disagrees with its tills (said once when that starts, and once when it ends)."""
        self._note_jump(now)
        try:
            with self.db.read() as tx:
                found = clockcheck.doubt(tx, now, self.skew)
                if found is None and self._jumped is not None:
                    found = clockcheck.unconfirmed(tx, self._jumped)
                    self._jumped = self._jumped if found is not None else None
        except HqError as exc:
            found = f"the tills' last contacts could not be read: {exc}"
        if found is not None:
            self.clock_doubts += 1
            if self._doubt is None:
                log.error("the timer waits (no expiry, no campaign run, no windows rolled): %s", found)
        elif self._doubt is not None:
            log.warning("head office's clock agrees with its tills again: the timer goes on")
        self._doubt = found
        return found is None

    def _note_jump(self, now: datetime) -> None:
        """Whether the clock moved further ahead since the last tick than the monotonic clock did, by more than
        the allowed skew (a jump, not the time that passed): then only a till heard after it confirms it."""
        mono = self.monotonic()
        if self._seen is not None:
            was, then = self._seen
            expected = was + timedelta(seconds=mono - then)  # the clock now, had it not jumped
            if (now - expected).total_seconds() > self.skew:
                self._jumped = expected + timedelta(seconds=self.skew)  # later than any contact before the jump
        self._seen = (now, mono)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # damage no step names (a stored value that no longer parses): the timer goes on
                self.failures += 1
                log.exception("the timer's tick failed (tried again in %.0f s)", self.interval)
            self._stop.wait(self.interval)

    def start(self) -> CampaignTimer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
