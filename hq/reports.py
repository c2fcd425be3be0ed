"""Head office's figures by store and day, for the back office's report pages (docs/reports.md).

Each figure is read where head office keeps it, so every number has one source:

    sales        the journal: counted sales (effect ``applied`` or ``none``), their number and amount
    members      the statistics' daily rows (``member_days``, kept at ingest): members with a visit, visits, spend
    points       the ledger: points issued (lots earned), redeemed (accepted at the store, net of refunds),
                 expired (lots of the store's issue, on the day they expired); outstanding for the chain
    value        the journal: stored value sold at the tills (net of voids) and paid with (net of refunds);
                 the ledger: the float (members' stored value) at each day's end for the chain
    coupons      ``coupon_uses`` kept at ingest: coupons redeemed, and those of them a campaign issued
    campaigns    ``hq.outcomes.report`` of each campaign as of the period's last day

A report is a ``Grid``: the period's days down, the stores across, one whole number per figure in each cell
(money and stored value in minor units). Figures head office keeps for the chain only (outstanding points, the
float) are the column ``CHAIN`` and read for chain-wide roles only. What the ledger posts without a store (an
administrator's adjustment, a campaign's points, a restored lot) is the column ``HEAD_OFFICE``. ``grid`` and
``running`` are pure; the readers take a ``Tx`` and a ``Filter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hq import outcomes
from hq.db.engine import Tx

COUNTED = ("applied", "none")
"""Journal effects that count (as ``hq.stats.COUNTED``)."""
HEAD_OFFICE = ""
"""The store of what the ledger posted with no till behind it."""
CHAIN = "*"
"""The column of a figure kept for the whole chain."""
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class Filter:
    """The period (both days included, business days as head office keeps them) and the stores; ``stores``
    None: every store and head office's own postings."""

    first: date
    last: date
    stores: frozenset[str] | None = None

    def days(self) -> list[str]:
        n = (self.last - self.first).days + 1
        return [(self.first + timedelta(days=i)).isoformat() for i in range(n)]


@dataclass(frozen=True, slots=True)
class Grid:
    """Figures by day and store: ``values[figure][store]`` is one number per day of ``days``."""

    figures: tuple[str, ...]
    days: tuple[str, ...]
    stores: tuple[str, ...]
    values: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def total(self, figure: str, store: str) -> int:
        return sum(self.values[figure][store])

    def data(self) -> dict[str, Any]:
        """What the page carries for its charts (and what a test reads back)."""
        return {"days": list(self.days), "stores": list(self.stores), "figures": self.values}


# -- pure -------------------------------------------------------------------------------------------------


def grid(figures: Sequence[str], days: Sequence[str], rows: Iterable[Sequence[Any]]) -> Grid:
    """A grid from rows ``(day, store, value of each figure...)``; days outside ``days`` are left out, a
    store is a column once one of its rows is in, NULL is 0."""
    at = {d: i for i, d in enumerate(days)}
    values: dict[str, dict[str, list[int]]] = {f: {} for f in figures}
    for day, store, *numbers in rows:
        i = at.get(str(day))
        if i is None:
            continue
        for figure, n in zip(figures, numbers, strict=True):
            values[figure].setdefault(str(store), [0] * len(days))[i] += int(n or 0)
    stores = sorted({s for by in values.values() for s in by})
    for by in values.values():
        for s in stores:
            by.setdefault(s, [0] * len(days))
    return Grid(tuple(figures), tuple(days), tuple(stores), {f: dict(sorted(by.items())) for f, by in values.items()})


def running(now: int, after: dict[str, int], days: Sequence[str]) -> list[int]:
    """A balance at the end of each of ``days`` from its value ``now`` and what moved it on each later day
    (``after``: day -> the sum of its changes, for the days after the first asked)."""
    out = []
    for day in days:
        out.append(now - sum(n for d, n in after.items() if d > day))
    return out


def merged(*grids: Grid) -> Grid:
    """Grids of the same days side by side (their figures together, the union of their stores)."""
    days = grids[0].days
    stores = sorted({s for g in grids for s in g.stores})
    values: dict[str, dict[str, list[int]]] = {}
    for g in grids:
        for figure, by in g.values.items():
            values[figure] = {s: by.get(s, [0] * len(days)) for s in stores}
    return Grid(tuple(f for g in grids for f in g.figures), days, tuple(stores), values)


def widened(found: Grid, stores: Iterable[str]) -> Grid:
    """``found`` with a column (of zeros where it had none) for each of ``stores`` too."""
    days = found.days
    every = sorted(set(found.stores) | set(stores))
    zeros = [0] * len(days)
    values = {f: {s: by.get(s, zeros) for s in every} for f, by in found.values.items()}
    return Grid(found.figures, days, tuple(every), values)


def read(tx: Tx, name: str, wanted: Filter) -> Grid:
    """The report ``name`` (one of ``GRIDS``), with a column for every store asked for."""
    quick(tx)
    found = GRIDS[name](tx, wanted)
    return found if wanted.stores is None else widened(found, wanted.stores)


# -- reading ------------------------------------------------------------------------------------------------


def quick(tx: Tx) -> None:
    """No JIT compilation for the report's statements (PostgreSQL): each reads the period's rows and probes
    by key, which the planner over-costs; compiling them took longer than running them."""
    if tx.dialect == "postgres":
        tx.run("SET LOCAL jit = off")


def _stores(tx: Tx, column: str, wanted: Filter) -> tuple[str, list[Any]]:
    if wanted.stores is None:
        return "1 = 1", []
    return tx.in_list(column, sorted(wanted.stores))


def _period(wanted: Filter) -> list[Any]:
    return [wanted.first.isoformat(), wanted.last.isoformat()]


def sales(tx: Tx, wanted: Filter) -> Grid:
    """Counted sales: how many and their amount (the till's total, in minor units)."""
    cond, params = _stores(tx, "store_id", wanted)
    rows = tx.all(
        "SELECT day, store_id, COUNT(*), SUM(total) FROM journal WHERE day >= ? AND day <= ? AND kind = 'sale' "
        f"AND effect IN ('applied', 'none') AND {cond} GROUP BY day, store_id",
        [*_period(wanted), *params],
    )
    return grid(("sales", "amount"), wanted.days(), rows)


def members(tx: Tx, wanted: Filter) -> Grid:
    """Members with a visit that counts on the day at the store, their visits and their spend."""
    cond, params = _stores(tx, "store_id", wanted)
    rows = tx.all(
        "SELECT day, store_id, COUNT(*), SUM(visits), SUM(spend) FROM member_days WHERE day >= ? AND day <= ? "
        f"AND visits > 0 AND {cond} GROUP BY day, store_id",
        [*_period(wanted), *params],
    )
    return grid(("active", "visits", "spend"), wanted.days(), rows)


def points(tx: Tx, wanted: Filter) -> Grid:
    """Points issued, redeemed (net of what refunds gave back) and expired, by the store of each.

    Each is read from the rows of the period's days (by index) and, for each of those, its own postings, lot
    or journal row by key: the statements never read the ledger beyond the period."""
    cond, params = _stores(tx, "store_id", wanted)
    period = _period(wanted)
    issued = tx.all(
        "SELECT earned_day, store_id, SUM(points) FROM (SELECT l.earned_day, l.points, "
        f"COALESCE((SELECT j.store_id FROM journal j WHERE j.txn_id = l.lot_id), '{HEAD_OFFICE}') AS store_id "
        f"FROM ledger_lots l WHERE l.earned_day >= ? AND l.earned_day <= ?) x WHERE {cond} "
        "GROUP BY earned_day, store_id",
        [*period, *params],
    )
    redeemed = tx.all(
        "SELECT day, store_id, SUM((SELECT SUM(p.amount) FROM ledger_postings p WHERE p.ledger_txn_id = j.txn_id "
        "AND p.kind = 'merchant_accepted')) FROM journal j WHERE day >= ? AND day <= ? "
        f"AND kind IN ('sale', 'refund', 'void') AND {cond} GROUP BY day, store_id",
        [*period, *params],
    )
    expired = tx.all(
        "SELECT day, store_id, SUM(points) FROM (SELECT t.day, u.points, "
        f"COALESCE((SELECT j.store_id FROM journal j WHERE j.txn_id = u.lot_id), '{HEAD_OFFICE}') AS store_id "
        "FROM ledger_txns t JOIN ledger_lot_uses u ON u.ledger_txn_id = t.ledger_txn_id AND u.purpose = 'expire' "
        f"WHERE t.day >= ? AND t.day <= ? AND t.kind = 'expire') x WHERE {cond} GROUP BY day, store_id",
        [*period, *params],
    )
    days = wanted.days()
    found = merged(
        grid(("issued",), days, issued), grid(("redeemed",), days, redeemed), grid(("expired",), days, expired)
    )
    return found if wanted.stores is not None else merged(found, _chain_balance(tx, wanted, "points", "outstanding"))


def value(tx: Tx, wanted: Filter) -> Grid:
    """Stored value sold at the tills (less voided top-ups) and paid with (less what refunds gave back)."""
    cond, params = _stores(tx, "store_id", wanted)
    rows = tx.all(
        "SELECT day, store_id, "
        "SUM(CASE WHEN kind IN ('till_topup', 'topup_void') AND effect = 'applied' THEN stored_value ELSE 0 END), "
        "SUM(CASE WHEN kind IN ('sale', 'refund', 'void') AND effect IN ('applied', 'none') THEN -stored_value "
        "ELSE 0 END) FROM journal WHERE day >= ? AND day <= ? "
        f"AND kind IN ('till_topup', 'topup_void', 'sale', 'refund', 'void') AND {cond} GROUP BY day, store_id",
        [*_period(wanted), *params],
    )
    found = grid(("topped_up", "paid"), wanted.days(), rows)
    return found if wanted.stores is not None else merged(found, _chain_balance(tx, wanted, "stored_value", "float"))


_BALANCES = {"points": "member_points", "stored_value": "member_value"}


def _chain_balance(tx: Tx, wanted: Filter, column: str, figure: str) -> Grid:
    """The members' ``column`` at the end of each day: what they hold now less what moved it on later days
    (the ledger's account of the same name; ``tillpoint hq ledger check`` proves them equal)."""
    row = tx.one(f"SELECT COALESCE(SUM({column}), 0) FROM members")
    now = int(row[0]) if row else 0
    after = {
        str(d): int(n or 0)
        for d, n in tx.all(
            "SELECT t.day, SUM((SELECT SUM(p.amount) FROM ledger_postings p WHERE p.ledger_txn_id = t.ledger_txn_id "
            "AND p.kind = ?)) FROM ledger_txns t WHERE t.day > ? GROUP BY t.day",
            [_BALANCES[column], wanted.first.isoformat()],
        )
    }
    days = wanted.days()
    return Grid((figure,), tuple(days), (CHAIN,), {figure: {CHAIN: running(now, after, days)}})


def coupons(tx: Tx, wanted: Filter) -> Grid:
    """Coupons redeemed in counted sales (less those a refund gave back), and those of them a campaign issued."""
    cond, params = _stores(tx, "store_id", wanted)
    rows = tx.all(
        "SELECT day, store_id, SUM((SELECT COUNT(*) FROM coupon_uses u WHERE u.txn_id = j.txn_id AND u.released = 0)), "
        "SUM((SELECT COUNT(*) FROM coupon_uses u WHERE u.txn_id = j.txn_id AND u.released = 0 AND EXISTS "
        "(SELECT 1 FROM campaign_members cm WHERE cm.coupon_id = u.coupon_id))) FROM journal j "
        f"WHERE day >= ? AND day <= ? AND kind = 'sale' AND effect IN ('applied', 'none') AND {cond} "
        "GROUP BY day, store_id",
        [*_period(wanted), *params],
    )
    return grid(("redeemed", "campaign"), wanted.days(), rows)


def campaigns(tx: Tx, wanted: Filter) -> list[dict[str, Any]]:
    """Each campaign's results as of the period's last day (``hq.outcomes.report``): its arms."""
    ids = [str(r[0]) for r in tx.all("SELECT campaign_id FROM campaigns ORDER BY campaign_id")]
    return [outcomes.report(tx, campaign_id, wanted.last) for campaign_id in ids]


def known_stores(tx: Tx) -> list[str]:
    """Every store head office knows of (its tills' and its settings')."""
    rows = tx.all("SELECT store_id FROM terminals UNION SELECT store_id FROM stores")
    return sorted({str(r[0]) for r in rows})


GRIDS = {"sales": sales, "members": members, "points": points, "value": value, "coupons": coupons}

__all__ = [
    "CHAIN",
    "GRIDS",
    "HEAD_OFFICE",
    "MAX_DAYS",
    "Filter",
    "Grid",
    "campaigns",
    "coupons",
    "grid",
    "known_stores",
    "members",
    "merged",
    "points",
    "quick",
    "read",
    "running",
    "sales",
    "value",
    "widened",
]
