"""How old a printed receipt is, and which receipts' rows a till may forget. Pure.

A receipt earns only while it is young: one whose printed time (``patterns.time`` read with the template's
``time_format``) is more than ``[receipts] max_age_days`` before now (head office's time as the till last
measured it: ``Service.hq_now``) is refused (``receipt_too_old``). So the rows that stop a receipt earning twice (its digest, its number) are needed only as
long as the receipt could still earn: past ``max_age_days`` and ``MARGIN_DAYS`` more (the POS's or the till's clock
a little wrong, the store's time zone) a reprint is refused by its age alone, and the rows can go. A receipt whose
time was not read is never too old, and its rows are never forgotten.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

MARGIN_DAYS = 2.0
"""Days a receipt's rows outlive the age past which it is refused."""

PRUNE_BATCH = 500
"""Rows deleted in one transaction: a sale waits for one batch at most, never for the whole pruning."""


def printed_time(text: str | None, time_format: str | None) -> datetime | None:
    """The time ``text`` (what ``patterns.time`` read) prints, by ``time_format`` (``strptime``): naive (the POS's
    wall clock) unless the format reads a UTC offset; None when there is no text or format, or the text does not fit
    the format."""
    if not text or not time_format:
        return None
    try:
        return datetime.strptime(text.strip(), time_format)
    except ValueError:
        return None


EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
"""The moments a printed time is kept within: a time the calendar holds only in its own zone (year 1 east of UTC,
year 9999 west of it) has no UTC instant to keep or prune by, and is as old, or as young, as these."""


def in_zone(printed: datetime, zone: tzinfo) -> datetime:
    """``printed`` as a UTC moment within ``EARLIEST`` and ``LATEST``: a naive (wall clock) time is taken in
    ``zone``, the store's."""
    moment = printed if printed.tzinfo is not None else printed.replace(tzinfo=zone)
    return min(max(moment, EARLIEST), LATEST).astimezone(UTC)


def too_old(printed: datetime | None, now: datetime, max_age_days: float) -> bool:
    """A receipt printed at ``printed`` may no longer earn at ``now`` (``max_age_days`` 0: no age limit)."""
    return printed is not None and max_age_days > 0 and now - printed > timedelta(days=max_age_days)


def forget_before(now: datetime, max_age_days: float) -> datetime | None:
    """The printed time before which a receipt's rows may be deleted at ``now``: a receipt printed earlier is refused
    as too old, whatever the rows say; None when receipts have no age limit (nothing is deleted)."""
    if max_age_days <= 0:
        return None
    return now - timedelta(days=max_age_days + MARGIN_DAYS)


__all__ = ["EARLIEST", "LATEST", "MARGIN_DAYS", "PRUNE_BATCH", "forget_before", "in_zone", "printed_time", "too_old"]
