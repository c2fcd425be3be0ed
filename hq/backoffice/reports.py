"""The report pages' reading: the period and stores a request asks for, checked against the role table, and
the figures of ``hq.reports`` for them (docs/reports.md).

A store manager reads its own stores only: asking for no store is asking for its stores, asking for another
store (an edited address) is ``forbidden``; the chain's own figures (outstanding points, the float, what head
office posted with no store) are for chain-wide roles. A period is two days ``YYYY-MM-DD``, the first not
after the last, at most ``hq.reports.MAX_DAYS`` long; otherwise ``bad_period``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hq import reports, web
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Reach, Scope, allowed, reach
from hq.backoffice.staff import Staff
from hq.store import HqStore
from hq.web import safe_cell

NAMES = ("sales", "members", "points", "value", "coupons", "campaigns")
"""The report pages, in the order the navigation shows them."""
DEFAULT_DAYS = 14
MONEY = frozenset({"amount", "spend", "topped_up", "paid", "float", "gift_float", "voucher_float", "vouchers_kept"})
"""Figures in minor currency units (the others are counts or points)."""
_STORE_ID = 64
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Table:
    """One figure's table as the page shows it: a row of cells a day, the stores' totals (None for a balance)."""

    rows: list[tuple[str, list[str]]]
    totals: list[str] | None


BALANCES = frozenset({"outstanding", "float", "gift_float", "voucher_float", "vouchers_kept"})
"""Figures that are a balance at each day's end (no total over the period)."""


def _cell(n: int, money: bool) -> str:
    return web.money(n) if money else f"{n:,}"


def tables(found: reports.Grid) -> dict[str, Table]:
    """Every figure of ``found`` as table cells, formatted once here rather than cell by cell in the template."""
    out = {}
    for figure in found.figures:
        money, by = figure in MONEY, found.values[figure]
        columns = [by[s] for s in found.stores]
        rows = [(day, [_cell(col[i], money) for col in columns]) for i, day in enumerate(found.days)]
        totals = None if figure in BALANCES else [_cell(sum(col), money) for col in columns]
        out[figure] = Table(rows, totals)
    return out


@dataclass(frozen=True, slots=True)
class ReportPage:
    name: str
    wanted: reports.Filter
    stores: list[str]
    """The stores the reader may pick from."""
    picked: list[str]
    """The stores asked for (empty: every store the reader may see)."""
    grid: reports.Grid | None = None
    campaigns: list[dict[str, Any]] = field(default_factory=list)


def _day(text: str, fallback: date) -> date:
    if not text:
        return fallback
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BackofficeRefused(Code.BAD_PERIOD, "a day is YYYY-MM-DD") from exc


def period_of(first: str, last: str, today: date) -> tuple[date, date]:
    """The days asked for (``from``/``to``); by default the last ``DEFAULT_DAYS`` days up to ``today``."""
    end = _day(last.strip(), today)
    if first.strip():
        start = _day(first.strip(), end)
    else:
        try:
            start = end - timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError as exc:  # the default two weeks would begin before the calendar's first day
            raise BackofficeRefused(Code.BAD_PERIOD, "the period begins before the calendar does") from exc
    if start > end or (end - start).days + 1 > reports.MAX_DAYS:
        raise BackofficeRefused(Code.BAD_PERIOD, f"the period is one day to {reports.MAX_DAYS} days, first to last")
    return start, end


def stores_for(who: Staff, asked: Sequence[str]) -> frozenset[str] | None:
    """The stores a report reads for ``who``: those asked for, each one ``who`` may read; none asked: every
    store (None) for a chain-wide role, its own for a store manager."""
    picked = frozenset(s.strip()[:_STORE_ID] for s in asked if s.strip())
    found = reach(who.role, Action.REPORTS_READ)
    if found is None:
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not read reports")
    if not picked:
        return who.stores if found is Reach.STORES else None
    for store_id in picked:
        if not allowed(who.role, Action.REPORTS_READ, Scope(who.stores, frozenset({store_id}))):
            raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not read store {store_id}'s figures")
    return picked


def build(store: HqStore, who: Staff, name: str, query: Mapping[str, Any], today: date) -> ReportPage:
    """The report ``name`` for ``who`` over what ``query`` asks (``from``, ``to``, ``store`` repeated)."""
    if name not in NAMES:
        raise BackofficeRefused(Code.NOT_FOUND, "no such report")
    first, last = period_of(str(query.get("from", "")), str(query.get("to", "")), today)
    stores = stores_for(who, list(query.get("store", [])))
    wanted = reports.Filter(first, last, stores)
    with store.db.read() as tx:
        known = reports.known_stores(tx)
        if name == "campaigns":
            return ReportPage(name, wanted, known, [], campaigns=reports.campaigns(tx, wanted))
        found = reports.read(tx, name, wanted)
    mine = known if reach(who.role, Action.REPORTS_READ) is Reach.CHAIN else sorted(who.stores)
    return ReportPage(name, wanted, mine, sorted(stores or ()), grid=found)


CSV_COLUMNS = ("day", "store_id", "figure", "value", "unit")
"""A report's download: a row per day, store and figure (store ``""``: head office's own, ``*``: the chain's)."""


def csv_of(found: reports.Grid) -> str:
    """The grid as CSV, the page's figures and no other (pure): money in minor units (``unit`` says which),
    every text cell formula-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for figure in found.figures:
        unit = "minor_units" if figure in MONEY else "number"
        for store_id in found.stores:
            for day, value in zip(found.days, found.values[figure][store_id], strict=True):
                writer.writerow([day, safe_cell(store_id), figure, value, unit])
    return out.getvalue()


def download(store: HqStore, who: Staff, name: str, query: Mapping[str, Any], today: date) -> tuple[str, str]:
    """The report ``name`` as ``build`` reads it for ``who``, as CSV: (file name, body). The campaign results
    have their own (``tillpoint hq campaign report ID --format csv``, the API)."""
    shown = build(store, who, name, query, today)
    if shown.grid is None:
        raise BackofficeRefused(Code.NOT_FOUND, "this report has no download here")
    first, last = shown.wanted.first.isoformat(), shown.wanted.last.isoformat()
    return f"{name}-{first}-{last}.csv", csv_of(shown.grid)


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_DAYS",
    "MONEY",
    "NAMES",
    "ReportPage",
    "Table",
    "build",
    "csv_of",
    "download",
    "period_of",
    "stores_for",
    "tables",
]
