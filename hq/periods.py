"""Settlement periods: a calendar month (``YYYY-MM``) each, closed in order, and where a posting lands.

A ledger transaction belongs to the period of its business day. Closing a period (``close``, audited)
freezes it: every period up to the last one closed (``closed_through``) is closed, so no posting is ever
filed under one again. A late entry (an offline till's sale whose day falls in a closed period) is posted to
the first open period and keeps the period it belongs to in ``ledger_txns.moved_from``; its statement names it.
The merchants' rates and names are kept with the close, so a closed period's statement never changes.

Periods are closed one after the other (the first one closed may be any: all before it count as closed),
and only once they are over; both rules keep every closed statement's figures, the outstanding points at
its end too, out of reach of later postings.

Locking: a posting reads the calendar row with ``FOR SHARE`` (PostgreSQL), a close takes it ``FOR UPDATE``,
so a close waits for the pushes in flight and a push that starts after it sees the period closed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from hq import audit, merchants
from hq.db.engine import Tx, utc_now
from hq.errors import HqError

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class Code(StrEnum):
    """Why a period cannot be closed or read; stable, for scripts and the admin API."""

    BAD_PERIOD = "bad_period"
    PERIOD_NOT_OVER = "period_not_over"
    PERIOD_CLOSED = "period_closed"
    EARLIER_PERIOD_OPEN = "earlier_period_open"


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
        raise PeriodError(Code.BAD_PERIOD, f"a period is a month, YYYY-MM: {period!r}")
    return int(found.group(1)), int(found.group(2))


def period_of(day: str) -> str:
    """The period of a business day (``YYYY-MM-DD``)."""
    return day[:7]


def following(period: str) -> str:
    year, month = parse(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def first_day(period: str) -> date:
    year, month = parse(period)
    return date(year, month, 1)


@dataclass(frozen=True, slots=True)
class Calendar:
    closed_through: str | None
    """The last period closed (every period up to it is closed); None: none closed yet."""

    def is_closed(self, period: str) -> bool:
        return self.closed_through is not None and period <= self.closed_through

    def place(self, day: str) -> tuple[str, str | None]:
        """The period a posting of business day ``day`` is filed under, and the closed period it belongs to
        when that is not the same (a late entry)."""
        own = period_of(day)
        if self.closed_through is None or own > self.closed_through:
            return own, None
        return following(self.closed_through), own

    def refusal(self, period: str, today: date) -> PeriodError | None:
        """Why ``period`` cannot be closed on ``today`` (None: it can)."""
        if first_day(following(period)) > today:
            return PeriodError(Code.PERIOD_NOT_OVER, f"{period} is not over yet")
        if self.is_closed(period):
            return PeriodError(Code.PERIOD_CLOSED, f"{period} is closed already")
        if self.closed_through is not None and period != following(self.closed_through):
            return PeriodError(
                Code.EARLIER_PERIOD_OPEN, f"close {following(self.closed_through)} first (periods close in order)"
            )
        return None


# -- the tables ------------------------------------------------------------------------------------------


class Lock(StrEnum):
    NONE = ""
    POSTING = " FOR SHARE"
    """Held by a posting transaction: a close waits for it."""
    CLOSE = " FOR UPDATE"


def calendar(tx: Tx, lock: Lock = Lock.NONE) -> Calendar:
    """The calendar; on PostgreSQL held against a close (``Lock.POSTING``) or for one (``Lock.CLOSE``)."""
    held = lock.value if tx.dialect == "postgres" else ""
    row = tx.one(f"SELECT closed_through FROM ledger_calendar WHERE id = 1{held}")
    return Calendar(str(row[0]) if row and row[0] else None)


@dataclass(frozen=True, slots=True)
class Closed:
    period: str
    closed_at: str
    closed_by: str
    reason: str
    rates: tuple[merchants.Merchant, ...]
    """Every merchant with its name and rates as they were when the period closed."""


def close(tx: Tx, period: str, actor: str, reason: str, today: date) -> Closed:
    """Close ``period`` (in the caller's transaction, with its audit record); ``PeriodError`` says why not."""
    refused = calendar(tx, Lock.CLOSE).refusal(period, today)
    if refused is not None:
        raise refused
    held = tuple(merchants.all_merchants(tx))
    done = Closed(period, utc_now(), actor, reason, held)
    tx.run(
        "INSERT INTO ledger_closes (period, closed_at, closed_by, reason, rates) VALUES (?, ?, ?, ?, ?)",
        [period, done.closed_at, actor, reason, json.dumps([m.as_dict() for m in held], sort_keys=True)],
    )
    tx.run("UPDATE ledger_calendar SET closed_through = ? WHERE id = 1", [period])
    audit.append(tx, actor, "close_period", period, reason, {"merchants": len(held)})
    return done


def closed(tx: Tx, period: str) -> Closed | None:
    row = tx.one("SELECT period, closed_at, closed_by, reason, rates FROM ledger_closes WHERE period = ?", [period])
    if row is None:
        return None
    rates = tuple(merchants.Merchant(**m) for m in json.loads(str(row[4])))
    return Closed(str(row[0]), str(row[1]), str(row[2]), str(row[3]), rates)


def closes(tx: Tx) -> list[Closed]:
    """Every close, oldest first."""
    rows = tx.all("SELECT period FROM ledger_closes ORDER BY period")
    return [c for c in (closed(tx, str(r[0])) for r in rows) if c is not None]


def closing(tx: Tx, period: str) -> Closed | None:
    """The close that froze ``period``: its own, or for a period before the first close, the first one."""
    row = tx.one("SELECT MIN(period) FROM ledger_closes WHERE period >= ?", [period])
    return closed(tx, str(row[0])) if row and row[0] else None
