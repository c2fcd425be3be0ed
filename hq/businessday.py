"""Head office owns time: each store's business day, and when an entry was made as head office holds it.

Pure (no I/O). A store's business day runs from its cut-off (``day_starts``, e.g. 04:00: a sale at
01:30 on Saturday belongs to Friday's day) in its time zone. An entry's time is the till's clock,
corrected by the offset head office measured on the request that brought it when that offset is
beyond the allowed skew, and then held between the till's last pull (a till pushes what it has
before it pulls) and its arrival. docs/reconciliation.md tells the whole rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class BadCalendar(ValueError):
    """A time zone or a cut-off head office cannot use."""


@dataclass(frozen=True, slots=True)
class BusinessDay:
    """A store's calendar: its IANA time zone and the minute of the local day its business day starts."""

    timezone: str = "UTC"
    starts: int = 0

    def of(self, moment: datetime) -> str:
        """The business day ``moment`` belongs to (a moment at the calendar's very edge falls on its UTC day)."""
        try:
            local = moment.astimezone(ZoneInfo(self.timezone)) - timedelta(minutes=self.starts)
        except OverflowError:
            return moment.date().isoformat()
        return local.date().isoformat()

    def start(self, moment: datetime) -> datetime:
        """When the business day holding ``moment`` began, in ``moment``'s time zone."""
        zone = ZoneInfo(self.timezone)
        shifted = moment.astimezone(zone) - timedelta(minutes=self.starts)
        midnight = datetime(shifted.year, shifted.month, shifted.day, tzinfo=zone)
        return (midnight + timedelta(minutes=self.starts)).astimezone(moment.tzinfo)

    @property
    def day_starts(self) -> str:
        return f"{self.starts // 60:02d}:{self.starts % 60:02d}"


def calendar(timezone: str, day_starts: str = "00:00") -> BusinessDay:
    """A checked calendar. Raises BadCalendar naming what is wrong."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadCalendar(f"unknown time zone {timezone!r} (an IANA name such as Asia/Tokyo)") from exc
    found = _HHMM.match(day_starts)
    if found is None:
        raise BadCalendar(f"day_starts {day_starts!r} is not HH:MM between 00:00 and 23:59")
    return BusinessDay(timezone, int(found[1]) * 60 + int(found[2]))


def corrected(created: datetime, offset: float | None, skew: float) -> datetime:
    """The till's time corrected by the clock offset measured on its request (till minus head office),
    when that offset is beyond the allowed skew; a clock within it is taken as it is."""
    if offset is None or abs(offset) <= skew:
        return created
    try:
        return created - timedelta(seconds=offset)
    except OverflowError:
        return created


def effective(
    created: datetime | None, offset: float | None, skew: float, last_pull: datetime | None, received: datetime
) -> datetime:
    """When head office holds the entry was made: the corrected till time, never before the till's last
    pull nor after the entry arrived (an entry with no readable time: when it arrived)."""
    if created is None:
        return received
    moment = corrected(created, offset, skew)
    if last_pull is not None and moment < last_pull:
        moment = last_pull
    return min(moment, received)
