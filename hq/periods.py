"""Settlement periods: a calendar month (``YYYY-MM``) each, closed in order, and where a posting lands.

A ledger transaction belongs to the period of its business day. Closing a period (``close``, audited)
freezes it: every period up to the last one closed (``closed_through``) is closed, so no posting is ever
filed under one again. A late entry (an offline till's sale whose day falls in a closed period) is posted to
the first open period and keeps the period it belongs to in ``ledger_txns.moved_from``; its statement names it.
The merchants' rates and names are kept with the close, so a closed period's statement never changes.

Periods are closed one after the other (the first one closed may be any: all before it count as closed),
and only once they are over; both rules keep every closed statement's figures, the outstanding points at
its end too, out of reach of later postings.

Locking (PostgreSQL): a posting takes the calendar's advisory lock shared before it reads the calendar, a
close takes it exclusive, so a close waits for the pushes in flight and a push that starts after it sees the
period closed. An advisory lock, not a row lock ``FOR SHARE``: that would write the lock into the calendar's
row in every push (a multixact once two pushes hold it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from hq import audit, businessday, clockcheck, merchants
from hq.db.engine import Tx, utc_now
from hq.errors import HqError

PERIOD = re.compile(r"^([1-9]\d{3})-(0[1-9]|1[0-2])$")


class Code(StrEnum):
    """Why a period cannot be closed or read; stable, for scripts and the admin API."""

    BAD_PERIOD = "bad_period"
    PERIOD_NOT_OVER = "period_not_over"
    PERIOD_CLOSED = "period_closed"
    EARLIER_PERIOD_OPEN = "earlier_period_open"
    BAD_LENGTH = "bad_period_length"
    PERIOD_IN_USE = "period_in_use"
    CLOSE_DAMAGED = "close_damaged"
    """The rates a close froze cannot be read (a damaged database): restore it rather than guess."""
    CLOCK_SUSPECT = "clock_suspect"
    """Head office's clock disagrees with what its tills last said (``hq.clockcheck``): a close is for ever."""


class PeriodError(HqError):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.detail = message


# -- pure ------------------------------------------------------------------------------------------------


def parse(period: str) -> tuple[int, int]:
    """``YYYY-MM`` as (year, month); ``bad_period`` otherwise."""
    found = PERIOD.match(period)
    if not found:
        raise PeriodError(Code.BAD_PERIOD, f"a period is named by its first month, YYYY-MM: {period!r}")
    return int(found.group(1)), int(found.group(2))


def add_months(period: str, n: int) -> str:
    year, month = parse(period)
    i = year * 12 + month - 1 + n
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def months_between(start: str, end: str) -> int:
    (y0, m0), (y1, m1) = parse(start), parse(end)
    return (y1 * 12 + m1) - (y0 * 12 + m0)


def following(period: str) -> str:
    """The month after ``period``."""
    return add_months(period, 1)


def first_day(period: str) -> date:
    year, month = parse(period)
    return date(year, month, 1)


LENGTHS = (1, 2, 3, 4, 6, 12)
"""How many months a period may span (a divisor of a year, so periods stay aligned with it)."""


@dataclass(frozen=True, slots=True)
class Calendar:
    closed_through: str | None
    """The last period closed (every period up to it is closed); None: none closed yet."""
    lengths: tuple[tuple[str, int], ...] = ()
    """(first period, months each) from that month on, oldest first; before the first, a month each."""

    def span(self, month: str) -> tuple[str, int]:
        """The (anchor, months) that applies to ``month``."""
        found = ("", 1)
        for anchor, months in self.lengths:
            if anchor <= month:
                found = (anchor, months)
        return found

    def period_of(self, day: str) -> str:
        """The period of a business day (``YYYY-MM-DD``), named by its first month."""
        month = day[:7]
        anchor, months = self.span(month)
        if months == 1:
            return month
        return add_months(anchor, months_between(anchor, month) // months * months)

    def following(self, period: str) -> str:
        return add_months(period, self.span(period)[1])

    def is_start(self, period: str) -> bool:
        return self.period_of(f"{period}-01") == period

    def is_closed(self, period: str) -> bool:
        return self.closed_through is not None and period <= self.closed_through

    def place(self, day: str) -> tuple[str, str | None]:
        """The period a posting of business day ``day`` is filed under, and the closed period it belongs to
        when that is not the same (a late entry)."""
        own = self.period_of(day)
        if self.closed_through is None or own > self.closed_through:
            return own, None
        return self.following(self.closed_through), own

    def check(self, period: str) -> None:
        """``bad_period`` unless ``period`` is a month that starts a period."""
        parse(period)
        if not self.is_start(period):
            raise PeriodError(
                Code.BAD_PERIOD, f"{period} does not start a period (it is in {self.period_of(period + '-01')})"
            )

    def refusal(self, period: str, today: date) -> PeriodError | None:
        """Why ``period`` cannot be closed on ``today`` (None: it can)."""
        try:
            self.check(period)
        except PeriodError as exc:
            return exc
        if first_day(self.following(period)) > today:
            return PeriodError(
                Code.PERIOD_NOT_OVER,
                f"{period} is not over yet: it can be closed from {first_day(self.following(period))}",
            )
        if self.is_closed(period):
            return PeriodError(Code.PERIOD_CLOSED, f"{period} is closed already")
        if self.closed_through is not None and period != self.following(self.closed_through):
            due = self.following(self.closed_through)
            return PeriodError(Code.EARLIER_PERIOD_OPEN, f"close {due} first (periods close in order)")
        return None

    def length_refusal(self, starting: str, months: int) -> PeriodError | None:
        """Why periods of ``months`` cannot start at ``starting`` (None: they can); entries filed from then on
        are checked by the caller."""
        if months not in LENGTHS:
            return PeriodError(Code.BAD_LENGTH, f"a period is {', '.join(map(str, LENGTHS))} months")
        try:
            self.check(starting)
        except PeriodError as exc:
            return exc
        if self.is_closed(starting):
            return PeriodError(Code.PERIOD_CLOSED, f"{starting} is closed already")
        return None


# -- the tables ------------------------------------------------------------------------------------------


class Lock(StrEnum):
    NONE = ""
    POSTING = "pg_advisory_xact_lock_shared"
    """Held by a posting transaction: a close waits for it."""
    CLOSE = "pg_advisory_xact_lock"


CALENDAR_LOCK = 7_461_230_026
"""The advisory lock key of the settlement calendar (``calendar``)."""


def calendar(tx: Tx, lock: Lock = Lock.NONE) -> Calendar:
    """The calendar; on PostgreSQL held against a close (``Lock.POSTING``) or for one (``Lock.CLOSE``)."""
    if lock is not Lock.NONE and tx.dialect == "postgres":
        tx.one(f"SELECT {lock.value}(?)", [CALENDAR_LOCK])
    row = tx.one("SELECT closed_through FROM ledger_calendar WHERE id = 1")
    lengths = tuple((str(r[0]), int(r[1])) for r in tx.all("SELECT anchor, months FROM ledger_lengths ORDER BY anchor"))
    return Calendar(str(row[0]) if row and row[0] else None, lengths)


def set_length(tx: Tx, starting: str, months: int, actor: str, reason: str) -> Calendar:
    """Periods of ``months`` from ``starting`` on (audited): it must start a period, not be closed, and hold
    no entries yet, so that no posting ever changes its period."""
    held = calendar(tx, Lock.CLOSE)
    refused = held.length_refusal(starting, months)
    if refused is not None:
        raise refused
    row = tx.one("SELECT MIN(period) FROM ledger_txns WHERE period >= ?", [starting])
    if row and row[0]:
        raise PeriodError(Code.PERIOD_IN_USE, f"entries are filed under {row[0]} already: start later")
    tx.run("DELETE FROM ledger_lengths WHERE anchor >= ?", [starting])
    tx.run("INSERT INTO ledger_lengths (anchor, months) VALUES (?, ?)", [starting, months])
    audit.append(tx, actor, "set_period_length", starting, reason, {"months": months})
    return calendar(tx)


def calendars(tx: Tx, zone: str) -> list[businessday.BusinessDay]:
    """Every calendar a business day is kept by: the chain's zone (``hq serve --timezone``, the stores without
    a calendar of their own) and each store's."""
    found = [businessday.BusinessDay(zone)]
    for row in tx.all("SELECT DISTINCT timezone, day_starts FROM stores"):
        try:
            found.append(businessday.calendar(str(row[0]), str(row[1])))
        except businessday.BadCalendar:
            continue  # a calendar head office cannot read files nothing: it ends no day
    return found


def today(tx: Tx, zone: str, now: datetime) -> date:
    """Head office's business day at ``now``: the earliest one still running in any store (a period is over
    once it is over everywhere, or a store's last sales of it would be late entries of the next)."""
    return min(date.fromisoformat(c.of(now)) for c in calendars(tx, zone))


def over_at(tx: Tx, zone: str, day: date) -> datetime:
    """When business day ``day`` has started in every store (UTC)."""
    starts = []
    for c in calendars(tx, zone):
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(c.timezone))
        starts.append(c.start(local + timedelta(minutes=c.starts)).astimezone(UTC))
    return max(starts)


@dataclass(frozen=True, slots=True)
class Closed:
    period: str
    closed_at: str
    closed_by: str
    reason: str
    rates: tuple[merchants.Merchant, ...]
    """Every merchant with its name and rates as they were when the period closed."""


def close(tx: Tx, period: str, actor: str, reason: str, zone: str, now: datetime) -> Closed:
    """Close ``period`` (in the caller's transaction, with its audit record) once it is over at ``now`` (head
    office's clock, which the tills must not doubt) in every store's business day and the chain's ``zone``;
    ``PeriodError`` says why not."""
    held = calendar(tx, Lock.CLOSE)
    refused = held.refusal(period, today(tx, zone, now))
    if refused is not None:
        if refused.code is Code.PERIOD_NOT_OVER:
            end = first_day(held.following(period))
            when = over_at(tx, zone, end).isoformat(timespec="minutes").replace("+00:00", "Z")
            raise PeriodError(
                Code.PERIOD_NOT_OVER,
                f"{period} is not over yet: it can be closed once business day {end} has started in every store, "
                f"from {when}",
            )
        raise refused
    suspect = clockcheck.doubt(tx, datetime.now(UTC), clockcheck.DEFAULT_SKEW)
    if suspect is not None:
        raise PeriodError(Code.CLOCK_SUSPECT, suspect)
    rates = tuple(merchants.all_merchants(tx))
    done = Closed(period, utc_now(), actor, reason, rates)
    tx.run(
        "INSERT INTO ledger_closes (period, closed_at, closed_by, reason, rates) VALUES (?, ?, ?, ?, ?)",
        [period, done.closed_at, actor, reason, json.dumps([m.as_dict() for m in rates], sort_keys=True)],
    )
    tx.run("UPDATE ledger_calendar SET closed_through = ? WHERE id = 1", [period])
    audit.append(tx, actor, "close_period", period, reason, {"merchants": len(rates)})
    return done


def closed(tx: Tx, period: str) -> Closed | None:
    row = tx.one("SELECT period, closed_at, closed_by, reason, rates FROM ledger_closes WHERE period = ?", [period])
    if row is None:
        return None
    try:
        rates = tuple(merchants.Merchant(**m) for m in json.loads(str(row[4])))
    except (ValueError, TypeError) as exc:
        raise PeriodError(Code.CLOSE_DAMAGED, f"the close of {period} cannot be read: {exc}") from exc
    return Closed(str(row[0]), str(row[1]), str(row[2]), str(row[3]), rates)


def closes(tx: Tx) -> list[Closed]:
    """Every close, oldest first, without the rates it froze (``closed`` reads them)."""
    rows = tx.all("SELECT period, closed_at, closed_by, reason FROM ledger_closes ORDER BY period")
    return [Closed(str(r[0]), str(r[1]), str(r[2]), str(r[3]), ()) for r in rows]


def closing(tx: Tx, period: str) -> Closed | None:
    """The close that froze ``period``: its own, or for a period before the first close, the first one."""
    row = tx.one("SELECT MIN(period) FROM ledger_closes WHERE period >= ?", [period])
    return closed(tx, str(row[0])) if row and row[0] else None
