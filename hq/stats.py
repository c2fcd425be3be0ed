"""Member statistics, kept at ingest in the sale's own transaction and rebuildable from the journal.

The journal is the truth. A sale *counts* when its journal row names a member and its effect is
``applied`` or ``none`` (head office knew the member and nothing holds the entry); a refund or void
counts when its effect is ``applied`` or ``none``, and it acts on the sale it names (for that sale's
member, on that sale's business day and store). Quarantined, malformed, rejected entries and entries
waiting for their member count for nothing until they are applied.

What a sale contributes is a pure function of the sale and the set of its reversals that count
(``figures``), so the result does not depend on the order in which they arrive:

    visits      1, or 0 once the sale is voided or every unit of every line was refunded
    spend       the merchandise total after discounts: ``total - discount`` of the sale (before the split
                between stored value, points and the POS), less what refunds took back: a refund takes
                back ``floor(spend * returned gross / total)`` of the units returned so far, all of it
                once everything is returned; 0 once voided
    categories  per category of its lines: the line's amount less its own line discount (``line_discounts``,
                so the basket-level discount is not spread over categories) and its quantity, less the
                units returned (``floor(line spend * returned / quantity)``); nothing once voided
    coupons     the distinct coupons the sale used, less those a refund gave back; 0 once voided

``apply(tx, txn_ids)`` is the one stage: whenever entries start to count (ingest, a quarantined entry
released, a refund whose sale arrived, an entry waiting for its member, a claimed sale) it adds, per
sale concerned, ``figures(after) - figures(before)`` to the tables (``member_totals`` with its small table of
the lifetime figures since the daily fold, ``RECENT_TOTALS``; ``member_days``, ``member_category_days``). ``rebuild(tx)`` computes the same tables from the journal. ``move`` (a member
merged into another) and ``forget`` (erasure) keep the tables equal to a rebuild.

A check-in (``checkins``: one row a member, store and business day, from the wallet's scan of a till's code
or a door reader's tap, docs/checkin.md) is a visit and nothing else: one visit on its day and store, and its
time widens the first and last visit; no spend, no category, no coupon. ``checkin_visit`` adds it when
``hq.checkins`` records the row; a rebuild reads the rows with the journal's sales.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from hq import rollup
from hq.db.engine import Db, Tx, utc_now
from hq.db.upsert import Upsert, upsert, upsert_together
from sync.protocol import PayloadError, RefundPayload, SalePayload, VoidPayload, parse_payload

log = logging.getLogger(__name__)

COUNTED = ("applied", "none")
"""The effects of a journal entry that counts (see ``hq.ingest.Effect``)."""
WINDOWS = (30, 90, 365)
ROLLED = (30, 60, 90, 180, 365)
"""The windows kept rolled per member as of one business day (``stats_windows``, migration m020_windows)."""
ROLL_STEPS = 14
"""A roll over more days than this builds the windows again from the daily rows instead of day by day."""
WINDOW_KINDS = ("visits", "spend", "category_spend")
"""What each rolled window keeps in ``member_totals``: visits, spend and the spend of every category together
(the whole a category's share is of)."""
WINDOW_COLUMNS = tuple(f"{kind}_{days}" for days in ROLLED for kind in WINDOW_KINDS)
CATEGORY_WINDOW_COLUMNS = tuple(f"spend_{days}" for days in ROLLED)
STATS_TABLES = ("member_totals", "member_days", "member_category_days", "member_category_windows")
"""What the statistics read as: ``member_days`` and ``member_category_days`` are views of ``member_day_rows``."""
RECENT_TABLE = "member_day_rows_recent"
"""The daily rows of the last few days (on and after ``stats_windows.recent_from``): a small table whose pages
stay in memory, so a push adds today's rows there, not into leaves of the big table's key spread over its
gigabytes. Head office's timer moves the rows of older days into ``member_day_rows`` once a day
(``fold_recent``); ``member_days`` and ``member_category_days`` read both (migration m060_recent_day_rows)."""
DAY_TABLES = ("member_day_rows", RECENT_TABLE)
RECENT_TOTALS = "member_totals_recent"
"""The lifetime figures (visits, spend, coupons, first and last visit) of the sales added since head office's
timer last folded them into ``member_totals`` (``fold_totals``, once a day): a push adds to a small table
whose pages stay in memory, not to a row of ``member_totals`` on a page of its own (a million members' rows
are spread over a gigabyte, and the first change of a page after a checkpoint writes all of it to the WAL).
A member's lifetime figures are the two rows added up (``lifetime``): counts summed, the earlier first visit,
the later last visit. The rolled windows and the last visit day stay in ``member_totals``
(migration m061_recent_totals)."""
STATS_STORED = ("member_totals", RECENT_TOTALS, *DAY_TABLES, "member_category_windows")
"""The tables the statistics are stored in (what a rebuild empties and writes)."""
RECENT_DAYS = 2
"""Days before today (UTC) whose rows stay in the recent table after a fold: a till offline overnight, or a
store east or west of UTC, still adds to the small table."""
STORE_ROW, CATEGORY_ROW = "s", "c"
"""``member_day_rows.kind``: a store's row of a member's day (visits and spend) or a category's (spend, quantity)."""


# -- pure: what one sale contributes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What one sale contributes to its member's statistics (or a difference of two such)."""

    visits: int = 0
    spend: int = 0
    coupons: int = 0
    categories: tuple[tuple[str, int, int], ...] = ()
    """(category, spend, quantity), sorted by category."""

    def minus(self, other: Figures) -> Figures:
        if other.empty:
            return self
        cats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for name, spend, qty in self.categories:
            cats[name][0] += spend
            cats[name][1] += qty
        for name, spend, qty in other.categories:
            cats[name][0] -= spend
            cats[name][1] -= qty
        return Figures(
            self.visits - other.visits,
            self.spend - other.spend,
            self.coupons - other.coupons,
            tuple((n, s, q) for n, (s, q) in sorted(cats.items()) if s or q),
        )

    @property
    def empty(self) -> bool:
        return not (self.visits or self.spend or self.coupons or self.categories)


NOTHING = Figures()


def net_spend(sale: SalePayload) -> int:
    """The sale's spend: the merchandise total after every discount, before the tender split."""
    return sale.total - sale.discount


def returned_units(sale: SalePayload, refunds: Iterable[RefundPayload]) -> list[int]:
    """Units returned so far per line of the sale (capped at the line's quantity)."""
    back = [0] * len(sale.lines)
    for refund in refunds:
        for r in refund.returned:
            if r.line < len(back):
                back[r.line] += r.quantity
    return [min(b, line.quantity) for b, line in zip(back, sale.lines, strict=True)]


def figures(sale: SalePayload | None, refunds: Sequence[RefundPayload] = ()) -> Figures:
    """What ``sale`` contributes given the reversals of it that count (nothing when ``sale`` is None)."""
    if sale is None or any(isinstance(r, VoidPayload) for r in refunds):
        return NOTHING
    if not refunds:
        return _unreturned(sale)
    back = returned_units(sale, refunds)
    whole = all(b >= line.quantity for b, line in zip(back, sale.lines, strict=True))
    spend = net_spend(sale)
    if whole:
        spend = 0
    elif sale.total > 0:
        gross_back = sum(b * line.unit_price for b, line in zip(back, sale.lines, strict=True))
        spend -= spend * gross_back // sale.total
    cats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, (line, b) in enumerate(zip(sale.lines, back, strict=True)):
        line_spend = line.quantity * line.unit_price - (sale.line_discounts[i] if i < len(sale.line_discounts) else 0)
        line_spend -= line_spend * b // line.quantity if line.quantity else 0
        cats[line.category][0] += line_spend
        cats[line.category][1] += line.quantity - b
    restored = {c for r in refunds for c in r.coupons_restored}
    coupons = len({c for c in sale.coupons if c not in restored}) if sale.coupons else 0
    return Figures(
        0 if whole else 1,
        spend,
        coupons,
        tuple((n, s, q) for n, (s, q) in sorted(cats.items()) if s or q),
    )


def _unreturned(sale: SalePayload) -> Figures:
    """``figures`` of a sale nothing was returned from (most sales, and every new one): the same figures,
    without the returned units' arithmetic."""
    cats: dict[str, list[int]] = {}
    discounts = sale.line_discounts
    whole = True
    for i, line in enumerate(sale.lines):
        line_spend = line.quantity * line.unit_price - (discounts[i] if i < len(discounts) else 0)
        whole = whole and line.quantity <= 0
        held = cats.get(line.category)
        if held is None:
            cats[line.category] = [line_spend, line.quantity]
        else:
            held[0] += line_spend
            held[1] += line.quantity
    return Figures(
        0 if whole else 1,
        0 if whole else net_spend(sale),
        len(set(sale.coupons)),
        tuple((n, s, q) for n, (s, q) in sorted(cats.items()) if s or q),
    )


# -- the stage ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleRow:
    """A counted sale as the journal holds it: whose, where, when."""

    txn_id: str
    member_id: str
    day: str
    store_id: str
    made_at: str
    sale: SalePayload


def _no_totals() -> list[int]:
    return [0] * (3 + len(WINDOW_COLUMNS))


def slot(window: int, kind: str) -> int:
    """Where the ``window``-th rolled window's ``kind`` is in a totals row of ``Deltas``."""
    return 3 + len(WINDOW_KINDS) * window + WINDOW_KINDS.index(kind)


def _no_category_windows() -> list[int]:
    return [0] * len(ROLLED)


@dataclass
class Deltas:
    """What to add to the tables, gathered over many sales, written in key order. ``rolled``: the day the
    windows are rolled to, or a build under way builds them as of (None: they are not kept), read under a
    share lock by the one who adds (``held_deltas``)."""

    rolled: date | None = None
    recent_from: str | None = None
    """The first day whose rows are kept in the recent table (``RECENT_TABLE``; None: none are)."""
    totals: dict[str, list[int]] = field(default_factory=lambda: defaultdict(_no_totals))
    """visits, spend, coupons, then each rolled window's ``WINDOW_KINDS`` (``WINDOW_COLUMNS``, see ``slot``)."""
    first_last: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_day: dict[str, str] = field(default_factory=dict)
    """The latest day, up to the rolled day, on which a sale added a visit."""
    days: dict[tuple[str, str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    categories: dict[tuple[str, str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    category_windows: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(_no_category_windows)
    )
    lost_visit: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Members whose sales lost their visit, and those sales' times."""
    lost_day: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Members whose sales lost their visit on a day up to the rolled day, and those days."""
    counted: set[str] = field(default_factory=set)
    """Members with a sale that counts among those added: each has a lifetime row, even when its figures add
    up to nothing (a sale voided in the push that brought it)."""

    def add_visit(self, member_id: str, day: str, store_id: str, at: str) -> None:
        """A check-in: one visit, no spend."""
        t = self.totals[member_id]
        t[0] += 1
        first, last = self.first_last.get(member_id, (at, at))
        self.first_last[member_id] = (min(first, at), max(last, at))
        self.days[(member_id, day, store_id)][0] += 1
        age = windows_age(self.rolled, day) if self.rolled is not None else None
        if age is None:
            return
        for i, days in enumerate(ROLLED):
            if age < days:
                t[slot(i, "visits")] += 1
        self.last_day[member_id] = max(self.last_day.get(member_id, day), day)

    def add(self, row: SaleRow, delta: Figures) -> None:
        m = row.member_id
        t = self.totals[m]
        self.counted.add(m)  # a member with a counted sale has a lifetime row, even when it was voided
        if delta.empty:
            return
        t[0] += delta.visits
        t[1] += delta.spend
        t[2] += delta.coupons
        if delta.visits > 0:
            first, last = self.first_last.get(m, (row.made_at, row.made_at))
            self.first_last[m] = (min(first, row.made_at), max(last, row.made_at))
        elif delta.visits < 0:
            self.lost_visit[m].add(row.made_at)
        if delta.visits or delta.spend:
            d = self.days[(m, row.day, row.store_id)]
            d[0] += delta.visits
            d[1] += delta.spend
        for name, spend, qty in delta.categories:
            c = self.categories[(m, row.day, name)]
            c[0] += spend
            c[1] += qty
        self._add_windows(row, delta, t)

    def _add_windows(self, row: SaleRow, delta: Figures, t: list[int]) -> None:
        """The sale's day is in a rolled window of ``days`` when it is one of the ``days`` days ending with the
        rolled day (both included, as a segment's window)."""
        if self.rolled is None:
            return
        age = windows_age(self.rolled, row.day)
        if age is None:
            return
        m = row.member_id
        for i, days in enumerate(ROLLED):
            if age < days:
                t[slot(i, "visits")] += delta.visits
                t[slot(i, "spend")] += delta.spend
                t[slot(i, "category_spend")] += sum(spend for _, spend, _ in delta.categories)
        if delta.visits > 0:
            self.last_day[m] = max(self.last_day.get(m, row.day), row.day)
        elif delta.visits < 0:
            self.lost_day[m].add(row.day)
        for name, spend, _qty in delta.categories:
            w = self.category_windows[(m, name)]
            for i, days in enumerate(ROLLED):
                if age < days:
                    w[i] += spend


def windows_age(rolled: date, day: str) -> int | None:
    """How many days ``day`` is before the rolled day, or None when it is after it (or no day)."""
    try:
        age = (rolled - date.fromisoformat(day)).days
    except ValueError:
        return None
    return age if age >= 0 else None


def checkin_visit(tx: Tx, member_id: str, day: str, store_id: str, at: str) -> None:
    """A check-in ``hq.checkins`` has just recorded (its row is new): its visit, in the same transaction."""
    deltas = held_deltas(tx)
    deltas.add_visit(member_id, day, store_id, at)
    write(tx, deltas)


def _checkins(tx: Tx, where: str = "1 = 1", params: Sequence[Any] = ()) -> list[tuple[str, str, str, str]]:
    rows = tx.all(
        f"SELECT member_id, day, store_id, at FROM checkins WHERE {where} ORDER BY member_id, day, store_id", params
    )
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def _payload(kind: str, text: str) -> Any:
    try:
        return parse_payload(kind, json.loads(text))
    except (PayloadError, ValueError):
        return None


def _sale_rows(tx: Tx, txn_ids: Sequence[str], known: Mapping[str, Any] | None = None) -> dict[str, SaleRow]:
    """The counted sales among ``txn_ids`` (``known``: payloads already read, by txn id, not parsed again)."""
    if not txn_ids:
        return {}
    cond, params = tx.in_list("txn_id", list(txn_ids))
    rows = tx.all(
        f"SELECT txn_id, member_id, day, store_id, COALESCE(made_at, created_at), payload, effect FROM journal "
        f"WHERE {cond} AND kind = 'sale' AND member_id IS NOT NULL",
        params,
    )
    found = {}
    for txn_id, member_id, day, store_id, made_at, text, effect in rows:
        if effect not in COUNTED:
            continue
        sale = (known or {}).get(str(txn_id)) or _payload("sale", str(text))
        if isinstance(sale, SalePayload):
            found[str(txn_id)] = SaleRow(str(txn_id), str(member_id), str(day), str(store_id), str(made_at), sale)
    return found


def _reversals(
    tx: Tx, sale_txns: Sequence[str], known: Mapping[str, Any] | None = None
) -> dict[str, list[tuple[str, RefundPayload]]]:
    """The counted refunds and voids of each sale: (txn_id, payload)."""
    found: dict[str, list[tuple[str, RefundPayload]]] = defaultdict(list)
    if not sale_txns:
        return found
    cond, params = tx.in_list("original_txn", list(sale_txns))
    rows = tx.all(  # the effect is checked here: a condition on it would lead SQLite to the effect index
        f"SELECT original_txn, txn_id, kind, payload, effect FROM journal WHERE {cond} "
        f"AND kind IN ('refund', 'void') ORDER BY txn_id",
        params,
    )
    for original, txn_id, kind, text, effect in rows:
        if effect not in COUNTED:
            continue
        refund = (known or {}).get(str(txn_id)) or _payload(str(kind), str(text))
        if isinstance(refund, RefundPayload):
            found[str(original)].append((str(txn_id), refund))
    return found


def apply(tx: Tx, txn_ids: Iterable[str], known: Mapping[str, Any] | None = None) -> int:
    """Entries that now count (their journal rows already say so): add what they change. One call per
    transaction and stage (``known``: typed payloads the caller holds, by txn id, so they are not parsed
    again); returns how many sales were read."""
    entries = sorted(set(txn_ids))
    if not entries:
        return 0
    new = set(entries)
    held, reversals = _concerned(tx, entries, known)
    if not held:  # no member's sale among them (anonymous sales, enrolments ...): nothing to add, no lock
        return 0
    deltas = held_deltas(tx)
    for txn_id in sorted(held):
        row = held[txn_id]
        mine = reversals.get(txn_id, [])
        before = figures(None if txn_id in new else row.sale, [r for t, r in mine if t not in new])
        deltas.add(row, figures(row.sale, [r for _, r in mine]).minus(before))
    write(tx, deltas)
    return len(held)


def _concerned(
    tx: Tx, entries: Sequence[str], known: Mapping[str, Any] | None
) -> tuple[dict[str, SaleRow], dict[str, list[tuple[str, RefundPayload]]]]:
    """The counted sales the entries are or reverse, and the counted reversals of each, in one read (one
    round trip a push): what ``_sale_rows`` and ``_reversals`` read, for the sales the entries name."""
    known = known or {}
    cond, params = tx.in_list("e.txn_id", list(entries))
    mine = [t for t in entries if t in known]  # payloads the caller holds: not read again
    sale_known, sale_params = tx.in_list("j.txn_id", mine) if mine else ("1 = 0", [])
    reversal_known, reversal_params = tx.in_list("r.txn_id", mine) if mine else ("1 = 0", [])
    rows = tx.all(
        "WITH s AS (SELECT DISTINCT CASE WHEN e.kind = 'sale' THEN e.txn_id ELSE e.original_txn END AS txn_id "
        f"FROM journal e WHERE {cond} AND (e.kind = 'sale' OR (e.kind IN ('refund', 'void') "
        "AND e.original_txn IS NOT NULL AND e.original_txn <> ''))) "
        "SELECT 0, j.txn_id, j.member_id, j.day, j.store_id, COALESCE(j.made_at, j.created_at), "
        f"CASE WHEN {sale_known} THEN NULL ELSE j.payload END, j.effect, j.kind FROM s JOIN journal j "
        "ON j.txn_id = s.txn_id WHERE j.kind = 'sale' AND j.member_id IS NOT NULL "
        f"UNION ALL SELECT 1, r.original_txn, r.txn_id, NULL, NULL, NULL, CASE WHEN {reversal_known} THEN NULL "
        "ELSE r.payload END, r.effect, r.kind FROM s JOIN journal r ON r.original_txn = s.txn_id "
        "WHERE r.kind IN ('refund', 'void')",
        [*params, *sale_params, *reversal_params],
    )
    held: dict[str, SaleRow] = {}
    for _, txn_id, member_id, day, store_id, made_at, text, effect, _kind in (r for r in rows if r[0] == 0):
        sale = (known.get(str(txn_id)) or _payload("sale", str(text))) if effect in COUNTED else None
        if isinstance(sale, SalePayload):
            held[str(txn_id)] = SaleRow(str(txn_id), str(member_id), str(day), str(store_id), str(made_at), sale)
    found: dict[str, list[tuple[str, RefundPayload]]] = defaultdict(list)
    for _, original, txn_id, _m, _d, _s, text, effect, kind in sorted((r for r in rows if r[0] == 1), key=_by_txn):
        if effect not in COUNTED or str(original) not in held:
            continue
        refund = known.get(str(txn_id)) or _payload(str(kind), str(text))
        if isinstance(refund, RefundPayload):
            found[str(original)].append((str(txn_id), refund))
    return held, found


def _by_txn(row: Sequence[Any]) -> str:
    return str(row[2])


# Adding a row of lifetime figures to a member's: counts add up, first and last visits widen.
def _widen(column: str, op: str, table: str = "member_totals") -> str:
    return (
        f"{column} = CASE WHEN excluded.{column} IS NOT NULL AND ({table}.{column} IS NULL "
        f"OR excluded.{column} {op} {table}.{column}) THEN excluded.{column} ELSE {table}.{column} END"
    )


def _sum(column: str, table: str = "member_totals") -> str:
    return f"{column} = {table}.{column} + excluded.{column}"


_LIFETIME = ("visits", "spend", "coupons_redeemed")


LIFETIME_COLUMNS = ("first_visit", "last_visit", *_LIFETIME)
"""A member's lifetime figures, in ``member_totals`` and ``RECENT_TOTALS`` alike."""


def _totals(lifetime: bool, windows: bool, table: str = "member_totals") -> Upsert:
    """Adding to ``member_totals`` (or to ``RECENT_TOTALS``): the lifetime figures, the rolled windows (with the
    last visit day up to the rolled day), or both (a merge, a fold)."""
    days = ("last_day",) if windows else ()
    sums = (_LIFETIME if lifetime else ()) + (WINDOW_COLUMNS if windows else ())
    spans = ("first_visit", "last_visit") if lifetime else ()
    stamp = ("updated_at",) if table == "member_totals" else ()
    columns = ("member_id", *spans, *days, *sums, *stamp)
    types = ("text", *["text"] * (len(spans) + len(days)), *["bigint"] * len(sums), *["text"] * len(stamp))
    sets = [_widen(c, "<" if c == "first_visit" else ">", table) for c in (*spans, *days)]
    sets += [_sum(c, table) for c in sums] + [f"{c} = excluded.{c}" for c in stamp]
    return Upsert(table, columns, types, "ON CONFLICT (member_id) DO UPDATE SET " + ", ".join(sets))


TOTALS = _totals(lifetime=True, windows=True)
TOTALS_LIFETIME = _totals(lifetime=True, windows=False)
TOTALS_WINDOWS = _totals(lifetime=False, windows=True)
RECENT_LIFETIME = _totals(lifetime=True, windows=False, table=RECENT_TOTALS)


DAY_ROW_COLUMNS = ("member_id", "day", "kind", "item", "visits", "spend", "quantity")


def _day_rows_upsert(table: str) -> Upsert:
    return Upsert(
        table,
        DAY_ROW_COLUMNS,
        ("text", "text", "text", "text", "bigint", "bigint", "bigint"),
        f"ON CONFLICT (member_id, day, kind, item) DO UPDATE SET visits = {table}.visits + excluded.visits, "
        f"spend = {table}.spend + excluded.spend, quantity = {table}.quantity + excluded.quantity",
    )


DAY_ROWS = _day_rows_upsert("member_day_rows")
RECENT_DAY_ROWS = _day_rows_upsert(RECENT_TABLE)
CATEGORY_WINDOWS = Upsert(
    "member_category_windows",
    ("member_id", "category", *CATEGORY_WINDOW_COLUMNS),
    ("text", "text", *["bigint"] * len(ROLLED)),
    "ON CONFLICT (member_id, category) DO UPDATE SET "
    + ", ".join(f"{c} = member_category_windows.{c} + excluded.{c}" for c in CATEGORY_WINDOW_COLUMNS),
)
_CATEGORY_WINDOWS_EMPTY = " AND ".join(f"{c} = 0" for c in CATEGORY_WINDOW_COLUMNS)


def _lifetime_rows(deltas: Deltas) -> list[tuple[Any, ...]]:
    """The ``RECENT_TOTALS`` rows of ``deltas`` in key order: members with a counted sale or a visit among them."""
    n = len(_LIFETIME)
    return [
        (m, *deltas.first_last.get(m, (None, None)), *t[:n])
        for m, t in sorted(deltas.totals.items())
        if m in deltas.counted or m in deltas.first_last or any(t[:n])
    ]


def _window_rows(deltas: Deltas, now: str) -> list[tuple[Any, ...]]:
    """The ``member_totals`` rows of ``deltas`` in key order: members whose rolled windows or last visit day move
    (a sale on or before the day the windows are rolled to, a roll)."""
    n = len(_LIFETIME)
    return [
        (m, deltas.last_day.get(m), *t[n:], now)
        for m, t in sorted(deltas.totals.items())
        if m in deltas.last_day or any(t[n:])
    ]


def by_table(rows: Sequence[tuple[Any, ...]], recent_from: str | None) -> tuple[list[Any], list[Any]]:
    """Daily rows (their day second) split by where they are kept: before ``recent_from`` in
    ``member_day_rows``, on and after it in the recent table (None: no recent table yet, all in the first)."""
    if recent_from is None:
        return list(rows), []
    return [r for r in rows if r[1] < recent_from], [r for r in rows if r[1] >= recent_from]


def day_rows(deltas: Deltas) -> list[tuple[Any, ...]]:
    """The ``member_day_rows`` rows of ``deltas`` in key order: each store's and each category's of a day."""
    stores = [((m, d, STORE_ROW, s), (v, n, 0)) for (m, d, s), (v, n) in deltas.days.items()]
    categories = [((m, d, CATEGORY_ROW, c), (0, n, q)) for (m, d, c), (n, q) in deltas.categories.items()]
    return [(*k, *v) for k, v in sorted(stores + categories)]


def write(tx: Tx, deltas: Deltas, now: str | None = None) -> None:
    """Add the deltas, in key order (concurrent pushes lock rows in one order); rows left at zero go. The tables'
    rows go in one statement (``upsert_together``: one round trip on PostgreSQL): the lifetime figures to
    ``RECENT_TOTALS``, the rolled windows to ``member_totals`` (only for members whose windows move)."""
    now = now or utc_now()
    windows = sorted((k, v) for k, v in deltas.category_windows.items() if any(v))
    older, recent = by_table(day_rows(deltas), deltas.recent_from)
    now_held = upsert_together(
        tx,
        [
            (RECENT_LIFETIME, _lifetime_rows(deltas)),
            (TOTALS_WINDOWS, _window_rows(deltas, now)),
            (CATEGORY_WINDOWS, [(*k, *v) for k, v in windows]),
        ],
        ([(DAY_ROWS, older), (RECENT_DAY_ROWS, recent)], "member_id, day, kind, item, visits, spend"),
    )
    _roll_days(tx, deltas.days, [(m, d, i, v, n) for m, d, k, i, v, n in now_held if k == STORE_ROW])
    for table, rows in zip(DAY_TABLES, (older, recent), strict=True):
        tx.many(
            f"DELETE FROM {table} WHERE member_id = ? AND day = ? AND kind = ? AND item = ? AND visits = 0 "
            "AND spend = 0 AND quantity = 0",
            [r[:4] for r in rows if min(r[4:]) < 0],
        )
    tx.many(
        f"DELETE FROM member_category_windows WHERE member_id = ? AND category = ? AND {_CATEGORY_WINDOWS_EMPTY}",
        [k for k, v in windows if min(v) < 0],
    )
    _mend_spans(tx, _span_moved(tx, deltas.lost_visit))
    if deltas.rolled is not None and deltas.lost_day:
        _last_day_lost(tx, deltas.lost_day, deltas.rolled)


def _roll_days(tx: Tx, added: Mapping[tuple[str, str, str], list[int]], held: Sequence[Sequence[Any]]) -> None:
    """The report roll-up's members figures (``hq.rollup``): each daily row as it was (what it holds now less
    what was just added) and as it is."""
    before, after = [], []
    for member_id, day, store_id, visits, spend in held:
        v, n = added[(str(member_id), str(day), str(store_id))]
        before.append((str(day), str(store_id), int(visits) - v, int(spend) - n))
        after.append((str(day), str(store_id), int(visits), int(spend)))
    rollup.add(tx, rollup.member_day_deltas(before, after))


def _last_day_lost(tx: Tx, lost: Mapping[str, set[str]], rolled: date) -> None:
    """Members whose last visit day (up to the rolled day) lost its visit: found again in their daily rows."""
    cond, params = tx.in_list("member_id", sorted(lost))
    held = {str(r[0]): r[1] for r in tx.all(f"SELECT member_id, last_day FROM member_totals WHERE {cond}", params)}
    for member_id in sorted(lost):
        if member_id in held and held[member_id] in lost[member_id]:
            tx.run(
                "UPDATE member_totals SET last_day = (SELECT MAX(day) FROM member_days WHERE member_id = ? "
                "AND visits > 0 AND day <= ?) WHERE member_id = ?",
                [member_id, rolled.isoformat(), member_id],
            )


SPAN_ENDS = ("first_visit", "last_visit")


def _span_moved(tx: Tx, lost: Mapping[str, set[str]]) -> dict[str, tuple[bool, bool]]:
    """The members whose first or last visit may have gone, and which of the two: a sale that lost its visit
    was made at that very time. (A sale strictly between them leaves both standing: the sales made then
    still count; so does the other end.)"""
    if not lost:
        return {}
    spans = {m: (life.first_visit, life.last_visit) for m, life in lifetimes(tx, sorted(lost)).items()}
    moved: dict[str, tuple[bool, bool]] = {}
    for m in sorted(lost):
        ends = tuple(t is not None and str(t) in lost[m] for t in spans[m]) if m in spans else (True, True)
        if any(ends):
            moved[m] = (ends[0], ends[1])
    return moved


def _mend_spans(tx: Tx, moved: Mapping[str, tuple[bool, bool]]) -> None:
    """Set the first or last visit that moved (``moved``: by member, which of the two) to the one found again,
    one statement a set of ends and table: in both of a member's lifetime rows (``RECENT_TOTALS``'s, made by
    sales not yet folded, may hold the very time that went)."""
    spans = _spans(tx, moved)
    by_ends: dict[tuple[bool, bool], list[tuple[Any, ...]]] = defaultdict(list)
    for member_id, ends in sorted(moved.items()):
        found = [at for at, gone in zip(spans[member_id], ends, strict=True) if gone]
        by_ends[ends].append((*found, member_id))
    for ends, rows in sorted(by_ends.items()):
        columns = ", ".join(f"{end} = ?" for end, gone in zip(SPAN_ENDS, ends, strict=True) if gone)
        for table in ("member_totals", RECENT_TOTALS):
            tx.many(f"UPDATE {table} SET {columns} WHERE member_id = ?", rows)


def _spans(tx: Tx, moved: Mapping[str, tuple[bool, bool]], step: int = 0) -> dict[str, tuple[str | None, str | None]]:
    """The first and last time of each member's sales and check-ins that still count a visit, at the ends asked
    for (``moved``: by member, first and last; an end not asked for comes back None), read together: one
    statement for up to ``SPAN_MEMBERS`` members, each member's ``step`` first or last sales by time
    (``SPAN_STEP`` at first) with their counted reversals, and the first and last of its check-ins. A member
    none of whose sales so read still counts a visit at an end, and who may have more, is read again with a
    step eight times as long."""
    step = step or SPAN_STEP
    members = sorted(moved)
    found: dict[str, tuple[str | None, str | None] | None] = {}
    for start in range(0, len(members), SPAN_MEMBERS):
        found |= _spans_of(tx, {m: moved[m] for m in members[start : start + SPAN_MEMBERS]}, step)
    further = {m: moved[m] for m, span in found.items() if span is None}
    done = {m: span for m, span in found.items() if span is not None}
    return done | (_spans(tx, further, step * 8) if further else {})


SPAN_STEP = 4
"""Sales ``_spans`` reads from each end of a member's history at first: most often the first still counts."""

SPAN_MEMBERS = 200
"""Members ``_spans_of`` reads in one statement: two queries each, within SQLite's 500 of a compound select."""


def _spans_of(
    tx: Tx, moved: Mapping[str, tuple[bool, bool]], step: int
) -> dict[str, tuple[str | None, str | None] | None]:
    """``_spans`` of up to ``SPAN_MEMBERS`` members: one statement, a query a member and end asked for; None for
    a member to read further."""
    members = sorted(moved)
    at = "COALESCE(made_at, created_at)"
    ends: list[str] = []
    params: list[Any] = []
    for member_id in members:
        for end, order in enumerate(("", " DESC")):
            if moved[member_id][end]:
                ends.append(
                    f"SELECT * FROM (SELECT {end} AS e, member_id, txn_id, {at} AS at, payload, effect FROM journal "
                    f"WHERE member_id = ? AND kind = 'sale' ORDER BY {at}{order}, txn_id{order} LIMIT ?) AS e{len(ends)}"
                )
                params += [member_id, step]
    checkin_cond, checkin_params = tx.in_list("member_id", members)
    rows = tx.all(
        f"WITH c AS ({' UNION ALL '.join(ends)}) "
        "SELECT 0, e, member_id, txn_id, at, payload, effect, NULL FROM c "
        "UNION ALL SELECT 1, NULL, c.member_id, r.original_txn, r.txn_id, r.payload, r.effect, r.kind "
        "FROM c JOIN journal r ON r.original_txn = c.txn_id WHERE r.kind IN ('refund', 'void') "
        "UNION ALL SELECT 2, NULL, member_id, MIN(at), MAX(at), NULL, NULL, NULL FROM checkins "
        f"WHERE {checkin_cond} GROUP BY member_id",
        [*params, *checkin_params],
    )
    sales: dict[tuple[str, int], list[tuple[str, str, str, str]]] = defaultdict(list)
    reversals: dict[str, dict[str, RefundPayload]] = defaultdict(dict)  # by txn id: a sale read at both ends
    door: dict[str, tuple[str, str]] = {}
    for part, end, member_id, a, b, text, effect, kind in rows:
        if part == 0:
            sales[(str(member_id), int(end))].append((str(b), str(a), str(text), str(effect)))
        elif part == 1 and effect in COUNTED and isinstance(refund := _payload(str(kind), str(text)), RefundPayload):
            reversals[str(a)][str(b)] = refund
        elif part == 2:
            door[str(member_id)] = (str(a), str(b))
    found: dict[str, tuple[str | None, str | None] | None] = {}
    for member_id in members:
        asked = moved[member_id]
        read = [sorted(sales[(member_id, end)], reverse=end == 1) for end in (0, 1)]
        first, last = (_counted_visit(read[end], reversals) if asked[end] else None for end in (0, 1))
        if any(asked[end] and seen is None and len(read[end]) >= step for end, seen in enumerate((first, last))):
            found[member_id] = None  # every sale read at that end was voided: read further
            continue
        tapped = door.get(member_id, ())
        firsts, lasts = [t for t in (first, *tapped[:1]) if t], [t for t in (last, *tapped[1:]) if t]
        found[member_id] = (min(firsts) if asked[0] and firsts else None, max(lasts) if asked[1] and lasts else None)
    return found


def _counted_visit(
    sales: Sequence[tuple[str, str, str, str]], reversals: Mapping[str, Mapping[str, RefundPayload]]
) -> str | None:
    """The time of the first of ``sales`` ((time, txn id, payload, effect), in the order to look in) that
    still counts a visit."""
    for at, txn_id, text, effect in sales:
        sale = _payload("sale", text) if effect in COUNTED else None
        mine = [p for _, p in sorted(reversals.get(txn_id, {}).items())]
        if isinstance(sale, SalePayload) and figures(sale, mine).visits > 0:
            return at
    return None


def visit_span(tx: Tx, member_id: str) -> tuple[str | None, str | None]:
    """The first and last time of the member's sales and check-ins that still count a visit (``_spans``)."""
    return _spans(tx, {member_id: (True, True)})[member_id]


# -- merges, erasure, rebuild ------------------------------------------------------------------------


def move(tx: Tx, loser: str, winner: str) -> None:
    """A member merged into another: the loser's statistics are added to the winner's, then removed. Its
    check-ins become the winner's, but one a store and day: a day both checked in at a store stays one visit."""
    now = utc_now()
    state = windows_state(tx, hold=True)  # both members' windows are as of one day: no roll in between
    fold_totals(tx, [loser, winner])  # each member's lifetime figures in its one row, then added up below
    winner_before = rollup.member_rows(tx, [winner])
    copied = ", ".join(TOTALS.columns[1:-1])
    both = [
        (day, store)
        for _, day, store, _ in _checkins(tx, "member_id = ?", [loser])
        if _checked_in(tx, winner, store, day)
    ]
    tx.run(
        "UPDATE checkins SET member_id = ? WHERE member_id = ? AND NOT EXISTS (SELECT 1 FROM checkins w "
        "WHERE w.member_id = ? AND w.store_id = checkins.store_id AND w.day = checkins.day)",
        [winner, loser, winner],
    )
    tx.run(
        f"INSERT INTO member_totals ({', '.join(TOTALS.columns)}) "
        f"SELECT ?, {copied}, ? FROM member_totals WHERE member_id = ? " + TOTALS.on_conflict,
        [winner, now, loser],
    )
    for spec in (DAY_ROWS, RECENT_DAY_ROWS):  # a day's rows of both members are kept in the same table
        tx.run(
            f"INSERT INTO {spec.table} ({', '.join(DAY_ROW_COLUMNS)}) "
            f"SELECT ?, {', '.join(DAY_ROW_COLUMNS[1:])} FROM {spec.table} WHERE member_id = ? " + spec.on_conflict,
            [winner, loser],
        )
    moved = ", ".join(CATEGORY_WINDOW_COLUMNS)
    tx.run(
        f"INSERT INTO member_category_windows (member_id, category, {moved}) "
        f"SELECT ?, category, {moved} FROM member_category_windows WHERE member_id = ? " + CATEGORY_WINDOWS.on_conflict,
        [winner, loser],
    )
    forget(tx, loser)
    if both:
        _one_visit_a_day(tx, winner, both, state.day)
    rollup.add(tx, rollup.member_day_deltas(winner_before, rollup.member_rows(tx, [winner])))
    if state.building is not None:  # the loser's windows may not be built yet: the winner's from its daily rows
        build_windows(tx, state.building, Members(one=winner))


def _checked_in(tx: Tx, member_id: str, store_id: str, day: str) -> bool:
    found = tx.one(
        "SELECT 1 FROM checkins WHERE member_id = ? AND store_id = ? AND day = ?", [member_id, store_id, day]
    )
    return found is not None


def _one_visit_a_day(tx: Tx, member_id: str, both: Sequence[tuple[str, str]], rolled: date | None) -> None:
    """After a merge: the visits of the check-ins the two members had on the same store and day, counted twice
    by the move, are counted once (the loser's row is gone), and the visit span is read again; so are the
    windows as of ``rolled`` (None: none complete; a build under way builds the winner from its daily rows)."""
    for table in DAY_TABLES:  # the day's row is in one of them
        tx.many(
            f"UPDATE {table} SET visits = visits - 1 WHERE member_id = ? AND day = ? AND kind = ? AND item = ?",
            [(member_id, day, STORE_ROW, store) for day, store in both],
        )
        tx.run(
            f"DELETE FROM {table} WHERE member_id = ? AND kind = ? AND visits = 0 AND spend = 0",
            [member_id, STORE_ROW],
        )
    first, last = visit_span(tx, member_id)
    tx.run(
        "UPDATE member_totals SET visits = visits - ?, first_visit = ?, last_visit = ? WHERE member_id = ?",
        [len(both), first, last, member_id],
    )
    for day, _store in both:  # the day keeps a visit, so the last visit day stands
        age = windows_age(rolled, day) if rolled is not None else None
        held = [f"visits_{days} = visits_{days} - 1" for days in ROLLED if age is not None and age < days]
        if held:
            tx.run(f"UPDATE member_totals SET {', '.join(held)} WHERE member_id = ?", [member_id])


def forget(tx: Tx, member_id: str) -> int:
    """Every statistics row of the member goes, its check-ins too (erasure; a merged-away member). Returns
    rows deleted. Holds the windows' day: a roll running meanwhile would write the member's rows again."""
    windows_day(tx, hold=True)
    tx.run("DELETE FROM checkins WHERE member_id = ?", [member_id])
    gone = [
        row
        for table in DAY_TABLES
        for row in tx.all(
            f"DELETE FROM {table} WHERE member_id = ? RETURNING day, kind, item, visits, spend", [member_id]
        )
    ]
    rows = [(str(d), str(i), int(v), int(n)) for d, k, i, v, n in gone if k == STORE_ROW]  # the report's too
    rollup.add(tx, rollup.member_day_deltas(rows, []))
    others = [t for t in STATS_STORED if t not in DAY_TABLES]
    return len(gone) + sum(tx.run(f"DELETE FROM {table} WHERE member_id = ?", [member_id]) for table in others)


def compute(tx: Tx) -> Deltas:
    """Every statistic, from the journal's sales and the check-ins."""
    sales = [
        str(r[0])
        for r in tx.all(
            "SELECT txn_id FROM journal WHERE kind = 'sale' AND member_id IS NOT NULL AND effect IN (?, ?) "
            "ORDER BY txn_id",
            list(COUNTED),
        )
    ]
    deltas = Deltas()
    for start in range(0, len(sales), 500):
        chunk = sales[start : start + 500]
        held = _sale_rows(tx, chunk)
        reversals = _reversals(tx, sorted(held))
        for txn_id in sorted(held):
            row = held[txn_id]
            deltas.add(row, figures(row.sale, [r for _, r in reversals.get(txn_id, [])]))
    for member_id, day, store_id, at in _checkins(tx):
        deltas.add_visit(member_id, day, store_id, at)
    return deltas


def rebuild(tx: Tx) -> dict[str, int]:
    """Recompute every statistic from the journal, replacing the tables (one transaction), the rolled
    windows from the daily rows as of the day they were rolled to (a build under way: its day, and it ends
    here); returns the rows written per table."""
    state = windows_state(tx, update=True)
    rolled = state.building or state.day
    deltas = compute(tx)
    for table in STATS_STORED:
        tx.run(f"DELETE FROM {table}")
    now = utc_now()
    spans = deltas.first_last  # widened only by sales that still count a visit
    tx.insert_rows(
        "member_totals",
        ("member_id", "first_visit", "last_visit", "visits", "spend", "coupons_redeemed", "updated_at"),
        [(m, *spans.get(m, (None, None)), t[0], t[1], t[2], now) for m, t in sorted(deltas.totals.items())],
    )
    kept = [r for r in day_rows(deltas) if any(r[4:])]
    for table, rows in zip(DAY_TABLES, by_table(kept, _iso(state.recent_from)), strict=True):
        tx.insert_rows(table, DAY_ROW_COLUMNS, rows)
    days = [r for r in kept if r[2] == STORE_ROW]
    cats = [r for r in kept if r[2] == CATEGORY_ROW]
    windows = 0
    if rolled is not None:
        windows = build_windows(tx, rolled)
        _rolled_to(tx, rolled)
        _analyze(tx)
    rollup.refill(tx, rollup.MEMBER_FIGURES)
    return {
        "member_totals": len(deltas.totals),
        "member_days": len(days),
        "member_category_days": len(cats),
        "member_category_windows": windows,
    }


# -- the rolled windows ------------------------------------------------------------------------------


WINDOWS_LOCK = 7_461_230_019
"""The advisory lock key of the rolled windows' day (``windows_day``)."""
BUILD_CHUNK = 5_000
"""Members a build covers per transaction (``build_chunk``): pushes wait at most for one chunk."""


@dataclass(frozen=True, slots=True)
class WindowsState:
    """The row of ``stats_windows``: ``day`` the windows are as of (None: not built, or a build under way);
    during a build, ``building`` the day it builds them as of and ``built_to`` the last member id it has built
    (None: none yet; the members up to it in the database's order are built, the others wait for their chunk)."""

    day: date | None
    building: date | None = None
    built_to: str | None = None
    recent_from: date | None = None
    """The first day whose daily rows are kept in the recent table (``RECENT_TABLE``); None: none are."""


def windows_state(tx: Tx, *, hold: bool = False, update: bool = False) -> WindowsState:
    """The rolled windows' state. ``hold``: on PostgreSQL, a share lock on it until the transaction ends, so
    no roll or chunk of a build moves it while this transaction adds to the windows (``update``: the
    exclusive lock a roll, a chunk of a build or a rebuild takes). SQLite's one writer holds everything.

    The lock is a transaction-level advisory lock, taken before the row is read (read committed: the read
    then sees the state the last roll or chunk committed, and every later statement sees what the pushes
    that held the lock before committed). A row lock ``FOR SHARE`` would do the same, but every push taking
    it writes the row's lock into the table (a multixact once two pushes hold it), and a push pays that in
    every transaction; an advisory lock lives only in memory."""
    if tx.dialect == "postgres" and (hold or update):
        tx.one(f"SELECT {'pg_advisory_xact_lock' if update else 'pg_advisory_xact_lock_shared'}(?)", [WINDOWS_LOCK])
    row = tx.one("SELECT day, building_day, built_to, recent_from FROM stats_windows WHERE id = 1")
    if row is None:
        return WindowsState(None)
    return WindowsState(_day(row[0]), _day(row[1]), None if row[2] is None else str(row[2]), _day(row[3]))


def _day(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def windows_day(tx: Tx, *, hold: bool = False, update: bool = False) -> date | None:
    """The business day the rolled windows are as of (None: not built, or a build under way: segments then
    read the daily rows); ``hold`` and ``update`` lock it as ``windows_state`` does."""
    return windows_state(tx, hold=hold, update=update).day


def held_deltas(tx: Tx) -> Deltas:
    """Deltas for a transaction that adds to the statistics, the windows' state held until it ends: every
    change goes to the windows as of the rolled day, or, while a build is under way, as of its day. A member
    the build has built (up to its cursor) needs it; one it has not gets it in vain and harmlessly: the chunk
    that covers the member later sets its windows from the daily rows alone, this transaction's included
    (committed before that chunk can take the exclusive lock), so no member needs to be placed against the
    cursor here (nor the database's collation, which orders the chunks, asked)."""
    state = windows_state(tx, hold=True)
    return Deltas(rolled=state.building or state.day, recent_from=_iso(state.recent_from))


@dataclass(frozen=True, slots=True)
class Members:
    """The members a build covers: those above ``after`` (None: from the first) up to ``upto`` included
    (None: to the last), or only ``one``."""

    after: str | None = None
    upto: str | None = None
    one: str | None = None

    def where(self, column: str) -> tuple[str, list[str]]:
        """The condition on ``column`` (a member id) and its parameters."""
        if self.one is not None:
            return f"{column} = ?", [self.one]
        parts: list[str] = []
        params: list[str] = []
        if self.after is not None:
            parts.append(f"{column} > ?")
            params.append(self.after)
        if self.upto is not None:
            parts.append(f"{column} <= ?")
            params.append(self.upto)
        return (" AND ".join(parts) or "1 = 1"), params


EVERY_MEMBER = Members()


def _in_window(column: str) -> str:
    return f"SUM(CASE WHEN day >= ? THEN {column} ELSE 0 END)"


def build_windows(tx: Tx, rolled: date, members: Members = EVERY_MEMBER) -> int:
    """The rolled windows and last visit day as of ``rolled`` of ``members`` (default: every member), from the
    daily rows (a rebuild, a chunk of a build, a merged member during a build). Returns the category window
    rows written."""
    day = rolled.isoformat()
    starts = [(rolled - timedelta(days=days - 1)).isoformat() for days in ROLLED]
    zeros = ", ".join(f"{c} = 0" for c in WINDOW_COLUMNS)
    mine, mine_params = members.where("member_id")
    theirs, their_params = members.where("member_totals.member_id")
    tx.run(  # a member whose lifetime figures are all in the recent table has its windows' row too
        f"INSERT INTO member_totals (member_id, updated_at) SELECT member_id, ? FROM {RECENT_TOTALS} "
        f"WHERE {mine} ON CONFLICT (member_id) DO NOTHING",
        [utc_now(), *mine_params],
    )
    tx.run(f"UPDATE member_totals SET last_day = NULL, {zeros} WHERE {mine}", mine_params)
    tx.run(f"DELETE FROM member_category_windows WHERE {mine}", mine_params)
    for table, kinds in (("member_days", ("visits", "spend")), ("member_category_days", ("category_spend",))):
        columns = [f"{kind}_{days}" for days in ROLLED for kind in kinds]
        sums = ", ".join(
            f"{_in_window(kind.removeprefix('category_'))} AS {kind}_{days}" for days in ROLLED for kind in kinds
        )
        tx.run(
            f"UPDATE member_totals SET ({', '.join(columns)}) = ({', '.join('x.' + c for c in columns)}) "
            f"FROM (SELECT member_id, {sums} FROM {table} WHERE {mine} AND day >= ? AND day <= ? "
            f"GROUP BY member_id) x WHERE member_totals.member_id = x.member_id AND {theirs}",
            [*[start for start in starts for _ in kinds], *mine_params, starts[-1], day, *their_params],
        )
    tx.run(
        "UPDATE member_totals SET last_day = x.last_day FROM (SELECT member_id, MAX(day) AS last_day "
        f"FROM member_days WHERE {mine} AND visits > 0 AND day <= ? GROUP BY member_id) x "
        f"WHERE member_totals.member_id = x.member_id AND {theirs}",
        [*mine_params, day, *their_params],
    )
    written = tx.run(
        f"INSERT INTO member_category_windows (member_id, category, {', '.join(CATEGORY_WINDOW_COLUMNS)}) "
        f"SELECT member_id, category, {', '.join(_in_window('spend') for _ in ROLLED)} FROM member_category_days "
        f"WHERE {mine} AND day >= ? AND day <= ? GROUP BY member_id, category HAVING SUM(spend) <> 0",
        [*starts, *mine_params, starts[-1], day],
    )
    return written


def _analyze(tx: Tx) -> None:
    """After the windows of every member were built: the planner's figures for their rows are stale."""
    if tx.dialect == "postgres":
        tx.run("ANALYZE member_totals")
        tx.run("ANALYZE member_category_windows")


def roll(tx: Tx, to: date, *, back: bool = False) -> int:
    """Roll the windows forward to the business day ``to``, in this transaction when it is a few days: each
    day that enters is added and each day that leaves a window is taken away, from the daily rows. Over more
    than ``ROLL_STEPS`` days, or the first time, a build from the daily rows is begun as of ``to``
    (``begin_build``), left to ``build_chunk`` (``roll_windows`` runs both). Never back, unless ``back`` (an
    operator, after a clock that ran ahead): then a build as of ``to`` is begun. A build under way (one a
    stopped process left) is carried on when ``to`` is its day, or before it without ``back``; any other day
    begins a new one. Returns the days moved (0: already there; 1 for a build that starts from no complete
    day, as the first time)."""
    state = windows_state(tx, update=True)
    if state.building is not None:
        if state.building != to and (back or to > state.building):
            begin_build(tx, to)
        return 1
    rolled = state.day
    if back and rolled is not None and to < rolled:
        begin_build(tx, to)
        return (rolled - to).days
    if rolled is not None and to <= rolled:
        return 0
    if rolled is None or (to - rolled).days > ROLL_STEPS:
        begin_build(tx, to)
        return (to - rolled).days if rolled is not None else 1
    steps = (to - rolled).days
    for n in range(1, steps + 1):
        _step(tx, rolled + timedelta(days=n))
    _rolled_to(tx, to)
    return steps


def begin_build(tx: Tx, day: date) -> None:
    """A build of the windows as of ``day`` begins (its caller holds the exclusive lock): no member built yet,
    and no day the windows are complete as of, so segments read the daily rows until it ends."""
    tx.run("UPDATE stats_windows SET day = NULL, building_day = ?, built_to = NULL WHERE id = 1", [day.isoformat()])


BuildStep = Literal["idle", "more", "done"]
"""What ``build_chunk`` did: no build was under way, a chunk was built and more are left, the last was built."""


def build_chunk(tx: Tx, size: int = BUILD_CHUNK) -> BuildStep:
    """The next ``size`` members (in member id order, after the cursor) of the build under way, with the
    exclusive lock held for this chunk only: pushes wait for one chunk, never the whole build. A member whose
    first sale comes after the chunk that covers its id is added to by its push, as every member is during a
    build (``held_deltas``). The last chunk (no member after it) covers every id beyond the cursor and sets
    the day."""
    state = windows_state(tx, update=True)
    if state.building is None:
        return "idle"
    after = Members(after=state.built_to)
    cond, params = after.where("member_id")
    ends = [  # the size-th member after the cursor in each table a member's rows may be in (its index's order)
        row[0]
        for table in ("member_totals", RECENT_TOTALS)
        if (
            row := tx.one(
                f"SELECT member_id FROM {table} WHERE {cond} ORDER BY member_id LIMIT 1 OFFSET ?", [*params, size - 1]
            )
        )
    ]
    upto = str(min(ends)) if ends else None  # at most ``size`` members of each table
    build_windows(tx, state.building, Members(after=state.built_to, upto=upto))
    if upto is None:
        _rolled_to(tx, state.building)
        return "done"
    tx.run("UPDATE stats_windows SET built_to = ? WHERE id = 1", [upto])
    return "more"


def _rolled_to(tx: Tx, day: date) -> None:
    """The windows are complete as of ``day`` (a roll, the last chunk of a build, a rebuild)."""
    tx.run("UPDATE stats_windows SET day = ?, building_day = NULL, built_to = NULL WHERE id = 1", [day.isoformat()])


def roll_windows(db: Db, to: date, *, back: bool = False, chunk: int = BUILD_CHUNK) -> int:
    """Roll the windows to ``to`` (``roll``) and carry out any build it begins or finds under way (left by a
    process that stopped), one transaction a chunk of ``chunk`` members, then fold the recent days' table to
    ``to`` (``fold_recent_days``); returns the days ``roll`` moved. The timer, the command and a campaign's run
    all roll through here. Windows found after ``to`` stay; those more
    than ``ZONES_APART`` after it (a clock that ran ahead) are logged once a process and day with what to do."""
    moved = db.transact(lambda tx: roll(tx, to, back=back))
    while (step := db.transact(lambda tx: build_chunk(tx, chunk))) == "more":
        pass
    if step == "done":  # outside the lock: pushes need not wait for the planner's figures
        db.transact(_analyze)
    fold_recent_days(db, to)  # the days gone by leave the small table pushes add to
    if not back and moved == 0:
        with db.read() as tx:
            rolled = windows_day(tx)
        said = _AHEAD_LOGGED.setdefault(db, set())
        if rolled is not None and rolled > to + ZONES_APART and (rolled, to) not in said:
            said.add((rolled, to))
            log.warning("%s", ahead_hint(rolled, to))
    return moved


ZONES_APART = timedelta(days=2)
"""How far apart two local days of one moment can be (UTC+14 and UTC-12): windows ahead of the day asked by up
to that were rolled by a campaign run to its own local day (a campaign in Tokyo runs at 06:00 on the day after
UTC's), not by a clock that ran ahead, and are not named. Windows that far ahead by a clock wait for the day."""

FOLD_CHUNK = 500
"""Members whose rows of recent days a first fold moves per statement (``fold_recent``)."""


def fold_recent(tx: Tx, to: date) -> int:
    """Keep the rows of the days from ``to`` on in the recent table (``RECENT_TABLE``) and those before it in
    ``member_day_rows``, moving what that changes (under the windows' exclusive lock: no push adds rows while
    they move, and each push reads where a day's rows go under the shared one). Never back: a ``to`` before
    the recent table's first day leaves everything (a clock that ran ahead, or a fold already done today).
    The first fold moves the rows of days from ``to`` on out of ``member_day_rows``: those of each member
    with a store's row on such a day (every day a member has rows, a store's row is one of them). Returns
    the rows moved."""
    state = windows_state(tx, update=True)
    day = to.isoformat()
    columns = ", ".join(DAY_ROW_COLUMNS)
    moved = 0
    if state.recent_from is None:
        members = [
            str(r[0])
            for r in tx.all(
                "SELECT DISTINCT member_id FROM member_day_rows WHERE kind = ? AND day >= ? ORDER BY member_id",
                [STORE_ROW, day],
            )
        ]
        for start in range(0, len(members), FOLD_CHUNK):
            cond, params = tx.in_list("member_id", members[start : start + FOLD_CHUNK])
            rows = tx.all(f"DELETE FROM member_day_rows WHERE {cond} AND day >= ? RETURNING {columns}", [*params, day])
            upsert(tx, RECENT_DAY_ROWS, sorted(tuple(r) for r in rows))
            moved += len(rows)
    elif to > state.recent_from:
        rows = tx.all(f"DELETE FROM {RECENT_TABLE} WHERE day < ? RETURNING {columns}", [day])
        upsert(tx, DAY_ROWS, sorted(tuple(r) for r in rows))
        moved = len(rows)
    else:
        return 0
    tx.run("UPDATE stats_windows SET recent_from = ? WHERE id = 1", [day])
    fold_totals(tx)
    return moved


def fold_totals(tx: Tx, members: Sequence[str] | None = None) -> int:
    """The lifetime figures in ``RECENT_TOTALS`` removed and added into ``member_totals`` (``members``: only
    theirs; None: everyone's, the daily fold), in one statement each way: what a member's two rows add up to
    (``lifetime``) does not change. The rows added are those the delete took: a merge folds under the windows'
    shared lock, which a push or a check-in of one of its members holds too, and a row read first and deleted
    after lost what such a push committed in between (PostgreSQL, read committed); deleted first, the row is
    locked until the fold commits, and a push waits to add its figures after it. Returns the rows folded."""
    cond, params = tx.in_list("member_id", list(members)) if members is not None else ("1 = 1", [])
    taken = tx.all(
        f"DELETE FROM {RECENT_TOTALS} WHERE {cond} RETURNING member_id, {', '.join(LIFETIME_COLUMNS)}", params
    )
    now = utc_now()
    upsert(tx, TOTALS_LIFETIME, sorted((*r, now) for r in taken))
    return len(taken)


def fold_recent_days(db: Db, today: date) -> int:
    """The daily fold (``roll_windows``, so the timer's, the command's and a campaign run's): the rows of the
    ``RECENT_DAYS`` days before ``today`` and after stay in the recent table, older ones go to
    ``member_day_rows`` (``fold_recent``, one transaction)."""
    to = today - timedelta(days=RECENT_DAYS)
    with db.read() as tx:  # most ticks: already folded today, and no exclusive lock for pushes to wait on
        done = windows_state(tx).recent_from
    if done is not None and to <= done:
        return 0
    return db.transact(lambda tx: fold_recent(tx, to))


_AHEAD_LOGGED: weakref.WeakKeyDictionary[Db, set[tuple[date, date]]] = weakref.WeakKeyDictionary()
"""(windows' day, day asked) already logged by this process, by database: one line, not one per timer tick. Keyed
by the database object itself, not its ``id``: an id is reused once its object is gone, and a database opened
later (a test's next, a store opened again) inherited what an earlier one had said and logged nothing."""


def ahead_hint(rolled: date, asked: date) -> str:
    """What to say of windows rolled to a day after the one asked: segments on the days before it read the
    daily rows (slower, as exact), until an operator builds them again as of the right day."""
    return (
        f"the members' windows are as of {rolled.isoformat()}, after {asked.isoformat()}: a clock ran ahead? "
        f"Segments read the daily rows until `tillpoint hq stats roll --back --to {asked.isoformat()}` builds "
        "them again as of that day"
    )


def _step(tx: Tx, day: date) -> None:
    """The windows as of ``day``, from those as of the day before: ``day`` enters every window, and the
    day ``days`` before it leaves each window of ``days``. Written as any change is (``write``: upserts
    through the primary keys, whatever the size of the tables)."""
    deltas = Deltas()
    entering = day.isoformat()
    members, categories = _day_rows(tx, entering)
    for member_id, (visits, spend) in members.items():
        t = deltas.totals[member_id]
        for i in range(len(ROLLED)):
            t[slot(i, "visits")] += visits
            t[slot(i, "spend")] += spend
        if visits > 0:
            deltas.last_day[member_id] = entering
    for (member_id, category), spend in categories.items():
        w = deltas.category_windows[(member_id, category)]
        t = deltas.totals[member_id]
        for i in range(len(ROLLED)):
            w[i] += spend
            t[slot(i, "category_spend")] += spend
    for i, days in enumerate(ROLLED):
        members, categories = _day_rows(tx, (day - timedelta(days=days)).isoformat())
        for member_id, (visits, spend) in members.items():
            t = deltas.totals[member_id]
            t[slot(i, "visits")] -= visits
            t[slot(i, "spend")] -= spend
        for (member_id, category), spend in categories.items():
            deltas.category_windows[(member_id, category)][i] -= spend
            deltas.totals[member_id][slot(i, "category_spend")] -= spend
    write(tx, deltas)


DAY_PAGE = 5000


def _day_rows(tx: Tx, day: str) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], int]]:
    """One business day's daily rows: each member's visits and spend (through the index on the day), and
    each of those members' spend per category that day (through the primary key, a page of members at a
    time: a category row exists only beside a daily row, as a category's spend comes with a visit)."""
    members = {
        str(r[0]): (int(r[1]), int(r[2]))
        for r in tx.all(
            "SELECT member_id, SUM(visits), SUM(spend) FROM member_days WHERE day = ? GROUP BY member_id", [day]
        )
    }
    categories: dict[tuple[str, str], int] = {}
    ids = sorted(members)
    for start in range(0, len(ids), DAY_PAGE):
        cond, params = tx.in_list("member_id", ids[start : start + DAY_PAGE])
        rows = tx.all(
            f"SELECT member_id, category, SUM(spend) FROM member_category_days WHERE {cond} AND day = ? "
            "GROUP BY member_id, category",
            [*params, day],
        )
        categories.update({(str(r[0]), str(r[1])): int(r[2]) for r in rows if int(r[2])})
    return members, categories


# -- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A member's lifetime figures: its row of ``member_totals`` and its row of ``RECENT_TOTALS`` added up."""

    first_visit: str | None = None
    last_visit: str | None = None
    visits: int = 0
    spend: int = 0
    coupons_redeemed: int = 0

    def plus(self, row: Sequence[Any]) -> Lifetime:
        """This and a row of ``LIFETIME_COLUMNS``."""
        first, last, visits, spend, coupons = row
        firsts = [str(t) for t in (self.first_visit, first) if t is not None]
        lasts = [str(t) for t in (self.last_visit, last) if t is not None]
        return Lifetime(
            min(firsts) if firsts else None,
            max(lasts) if lasts else None,
            self.visits + int(visits),
            self.spend + int(spend),
            self.coupons_redeemed + int(coupons),
        )


def lifetimes(tx: Tx, members: Sequence[str] | None = None) -> dict[str, Lifetime]:
    """The lifetime figures of ``members`` (None: of every member with any), by member id: only members with a
    row in either table."""
    cond, params = tx.in_list("member_id", list(members)) if members is not None else ("1 = 1", [])
    columns = ", ".join(LIFETIME_COLUMNS)
    found: dict[str, Lifetime] = {}
    for table in ("member_totals", RECENT_TOTALS):
        for member_id, *row in tx.all(f"SELECT member_id, {columns} FROM {table} WHERE {cond}", params):
            found[str(member_id)] = found.get(str(member_id), Lifetime()).plus(row)
    return found


def lifetime(tx: Tx, member_id: str) -> Lifetime | None:
    """One member's lifetime figures (None: no sale or visit of it ever counted)."""
    return lifetimes(tx, [member_id]).get(member_id)


LIVE_LAST_VISIT = (
    "CASE WHEN r.last_visit IS NOT NULL AND (t.last_visit IS NULL OR r.last_visit > t.last_visit) "
    "THEN r.last_visit ELSE t.last_visit END"
)
"""In SQL, with ``member_totals t`` and ``RECENT_TOTALS r`` left joined to a member (``live_joins``): its last
visit."""
LIVE_VISITS = "(COALESCE(t.visits, 0) + COALESCE(r.visits, 0))"
"""In SQL, with the same joins: its lifetime visits."""


def live_joins(member_id: str) -> str:
    """The joins ``LIVE_LAST_VISIT`` and ``LIVE_VISITS`` read, for the member id column ``member_id``."""
    return (
        f"LEFT JOIN member_totals t ON t.member_id = {member_id} "
        f"LEFT JOIN {RECENT_TOTALS} r ON r.member_id = {member_id}"
    )


@dataclass(frozen=True, slots=True)
class MemberStats:
    """A member's statistics as of a business day (see docs/members.md for each figure)."""

    member_id: str
    as_of: str
    first_visit: str | None
    last_visit: str | None
    visits: int
    spend: int
    coupons_redeemed: int
    average_basket: int
    visits_by_window: dict[int, int]
    spend_by_window: dict[int, int]
    spend_by_category: dict[str, int]
    quantity_by_category: dict[str, int]
    stores_visited: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "as_of": self.as_of,
            "first_visit": self.first_visit,
            "last_visit": self.last_visit,
            "visits": self.visits,
            "spend": self.spend,
            "coupons_redeemed": self.coupons_redeemed,
            "average_basket": self.average_basket,
            **{f"visits_{n}": self.visits_by_window[n] for n in WINDOWS},
            **{f"spend_{n}": self.spend_by_window[n] for n in WINDOWS},
            "spend_by_category": self.spend_by_category,
            "quantity_by_category": self.quantity_by_category,
            "stores_visited": self.stores_visited,
        }


def window_start(as_of: str, days: int) -> str:
    """The first day of a window of ``days``: the ``days`` business days ending with ``as_of`` count, as in
    segments (``hq.segments.window``) and the rolled windows."""
    return (date.fromisoformat(as_of) - timedelta(days=days - 1)).isoformat()


def member_stats(tx: Tx, member_id: str, as_of_day: str) -> MemberStats:
    """The member's statistics as of the business day ``as_of_day`` (lifetime figures count everything
    up to now; a window of N days counts the N days ending with ``as_of_day``)."""
    life = lifetime(tx, member_id) or Lifetime()
    by_visits, by_spend = {}, {}
    for n in WINDOWS:
        row = tx.one(
            "SELECT COALESCE(SUM(visits), 0), COALESCE(SUM(spend), 0) FROM member_days "
            "WHERE member_id = ? AND day >= ? AND day <= ?",
            [member_id, window_start(as_of_day, n), as_of_day],
        )
        assert row is not None
        by_visits[n], by_spend[n] = int(row[0]), int(row[1])
    cats = tx.all(
        "SELECT category, SUM(spend), SUM(quantity) FROM member_category_days WHERE member_id = ? "
        "GROUP BY category ORDER BY category",
        [member_id],
    )
    stores = tx.all(
        "SELECT store_id FROM member_days WHERE member_id = ? GROUP BY store_id HAVING SUM(visits) > 0 "
        "ORDER BY store_id",
        [member_id],
    )
    return MemberStats(
        member_id,
        as_of_day,
        life.first_visit,
        life.last_visit,
        life.visits,
        life.spend,
        life.coupons_redeemed,
        life.spend // life.visits if life.visits > 0 else 0,
        by_visits,
        by_spend,
        {str(c[0]): int(c[1]) for c in cats},
        {str(c[0]): int(c[2]) for c in cats},
        [str(s[0]) for s in stores],
    )


def _live_totals(tx: Tx) -> list[tuple[Any, ...]]:
    """``member_totals`` as a member's figures read: its lifetime figures those of ``lifetime`` (a member with a
    lifetime row only shows no windows and no last visit day)."""
    windows = {
        str(r[0]): tuple(r[1:])
        for r in tx.all(f"SELECT member_id, last_day, {', '.join(WINDOW_COLUMNS)} FROM member_totals")
    }
    none = (None, *[0] * len(WINDOW_COLUMNS))
    return [
        (m, life.first_visit, life.last_visit, life.visits, life.spend, life.coupons_redeemed, *windows.get(m, none))
        for m, life in sorted(lifetimes(tx).items())
    ]


def snapshot(tx: Tx) -> dict[str, list[tuple[Any, ...]]]:
    """The statistics tables as they are, sorted (without ``updated_at``): for comparing with a rebuild."""
    return {
        "member_totals": _live_totals(tx),
        "member_category_windows": [
            tuple(r)
            for r in tx.all(
                f"SELECT member_id, category, {', '.join(CATEGORY_WINDOW_COLUMNS)} FROM member_category_windows "
                "ORDER BY member_id, category"
            )
        ],
        "member_days": [
            tuple(r)
            for r in tx.all(
                "SELECT member_id, day, store_id, visits, spend FROM member_days ORDER BY member_id, day, store_id"
            )
        ],
        "member_category_days": [
            tuple(r)
            for r in tx.all(
                "SELECT member_id, day, category, spend, quantity FROM member_category_days "
                "ORDER BY member_id, day, category"
            )
        ],
    }
