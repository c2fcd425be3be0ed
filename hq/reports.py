"""Head office's figures by store and day, for the back office's report pages (docs/reports.md).

Every figure is read from the report roll-up (``hq.rollup``: sums by day, store and till,
kept in the transactions that make each figure count, and checked against the journal and the ledger), so a
month of a chain is a few thousand rows:

    sales        counted sales (effect ``applied`` or ``none``): their number and amount
    members      the statistics' daily rows (``member_days``): members with a visit, their visits and spend
    points       points issued (lots earned), redeemed (accepted at the store, net of refunds), expired (lots of
                 the store's issue, on the day they expired); for the chain, what members hold at each day's end
    value        stored value sold at the tills (net of voids) and paid with (net of refunds); for the chain,
                 the float (members' stored value), the gift cards' float (the value gift cards hold) and the
                 vouchers' (sold, not yet redeemed or refunded) at each day's end, and what returns kept of
                 the vouchers that paid their sales (the chain's voucher breakage) by then
    coupons      coupons redeemed in counted sales (net of refunds), and those of them a campaign issued
    campaigns    ``hq.outcomes.report`` of each campaign as of the period's last day

A report is a ``Grid``: the period's days down, the stores across, one whole number per figure in each cell
(money and stored value in minor units). Figures head office keeps for the chain only (outstanding points, the
float) are the column ``CHAIN`` and read for chain-wide roles only. What the ledger posts without a store (an
administrator's adjustment, a campaign's points, a restored lot) is the column ``HEAD_OFFICE``. ``grid`` and
``cumulative`` are pure; the readers take a ``Tx`` and a ``Filter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hq import outcomes, rollup
from hq.db.engine import Tx

HEAD_OFFICE = rollup.HEAD_OFFICE
"""The store of what the ledger posted with no till behind it."""
CHAIN = rollup.CHAIN
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


def cumulative(moves: Mapping[str, int], days: Sequence[str]) -> list[int]:
    """A balance at the end of each of ``days`` (in order) from what moved it on each day (``moves``: day -> the
    sum of its changes, every day up to the last asked): the sum of the moves up to the day."""
    out, total, pending = [], 0, sorted(moves.items())
    i = 0
    for day in days:
        while i < len(pending) and pending[i][0] <= day:
            total += pending[i][1]
            i += 1
        out.append(total)
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
    """The report ``name`` (one of ``GRIDS``), with a column for every store asked for (none asked for: every
    store head office knows), zeros where it had nothing."""
    quick(tx)
    found = GRIDS[name](tx, wanted)
    return widened(found, known_stores(tx) if wanted.stores is None else wanted.stores)


# -- reading ------------------------------------------------------------------------------------------------


def quick(tx: Tx) -> None:
    """No JIT compilation for the report's statements (PostgreSQL): each reads the period's rows and probes
    by key, which the planner over-costs; compiling them took longer than running them."""
    if tx.dialect == "postgres":
        tx.run("SET LOCAL jit = off")


def rolled(tx: Tx, wanted: Filter, figures: Mapping[str, str]) -> Grid:
    """The report's ``figures`` (its name -> the roll-up's) by day and store, from the roll-up."""
    stores = None if wanted.stores is None else sorted(wanted.stores)
    found = rollup.read(tx, wanted.first.isoformat(), wanted.last.isoformat(), list(figures.values()), stores)
    column = {f: i for i, f in enumerate(figures.values())}
    rows = []
    for day, store, figure, n in found:
        numbers = [0] * len(figures)
        numbers[column[figure]] = n
        rows.append((day, store, *numbers))
    return grid(tuple(figures), wanted.days(), rows)


def sales(tx: Tx, wanted: Filter) -> Grid:
    """Counted sales: how many and their amount (the till's total, in minor units)."""
    return rolled(tx, wanted, {"sales": "sales", "amount": "amount"})


def members(tx: Tx, wanted: Filter) -> Grid:
    """Members with a visit that counts on the day at the store, their visits and their spend."""
    return rolled(tx, wanted, {"active": "active", "visits": "visits", "spend": "spend"})


def points(tx: Tx, wanted: Filter) -> Grid:
    """Points issued, redeemed (net of what refunds gave back) and expired, by the store of each; for the
    chain, the points members hold at each day's end."""
    found = rolled(tx, wanted, {"issued": "points_issued", "redeemed": "points_redeemed", "expired": "points_expired"})
    return (
        found
        if wanted.stores is not None
        else merged(found, _chain_balance(tx, wanted, "member_points", "outstanding"))
    )


def value(tx: Tx, wanted: Filter) -> Grid:
    """Stored value sold at the tills (less voided top-ups) and paid with (less what refunds gave back); for the
    chain, what members hold, what gift cards hold and what vouchers sold and not used hold at each day's end."""
    found = rolled(tx, wanted, {"topped_up": "topped_up", "paid": "paid"})
    if wanted.stores is not None:
        return found
    members_hold = _chain_balance(tx, wanted, "member_value", "float")
    cards_hold = _chain_balance(tx, wanted, "gift_value", "gift_float")
    vouchers_hold = _chain_balance(tx, wanted, "voucher_value", "voucher_float")
    return merged(found, members_hold, cards_hold, vouchers_hold, _vouchers_kept(tx, wanted))


def _vouchers_kept(tx: Tx, wanted: Filter) -> Grid:
    """What returns kept of the vouchers that paid their sales, by each day's end (the ledger's
    ``voucher_breakage``, as the deferred revenue's ``vouchers_kept``): read from the ledger's few such
    transactions (``<txn>:voucher_kept``), not the roll-up."""
    days = wanted.days()
    rows = tx.all(
        "SELECT t.day, SUM(p.amount) FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id "
        "WHERE p.kind = 'voucher_breakage' AND t.day <= ? GROUP BY t.day",
        [days[-1]],
    )
    moves = {str(d): int(n or 0) for d, n in rows}
    return Grid(("vouchers_kept",), tuple(days), (CHAIN,), {"vouchers_kept": {CHAIN: cumulative(moves, days)}})


def _chain_balance(tx: Tx, wanted: Filter, account: str, figure: str) -> Grid:
    """The members' or the gift cards' ``account`` (the ledger's, which ``tillpoint hq ledger check`` proves equal
    to what they hold) at the end of each day: the sum of what moved it on every day up to it."""
    days = wanted.days()
    return Grid(
        (figure,),
        tuple(days),
        (CHAIN,),
        {figure: {CHAIN: cumulative(rollup.balance_moves(tx, account, days[-1]), days)}},
    )


def coupons(tx: Tx, wanted: Filter) -> Grid:
    """Coupons redeemed in counted sales (less those a refund gave back), and those of them a campaign issued."""
    return rolled(tx, wanted, {"redeemed": "coupons", "campaign": "coupons_campaign"})


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
    "cumulative",
    "grid",
    "known_stores",
    "members",
    "merged",
    "points",
    "rolled",
    "quick",
    "read",
    "sales",
    "value",
    "widened",
]
