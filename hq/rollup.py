"""The report roll-up: head office's figures summed by business day, store and till (``report_days``).

The back office's reports (``hq.reports``) read a month of a chain in a few thousand rows from here, instead
of every sale of the month and its postings. Each figure is added in the transaction that makes it count,
at the one place that does:

    sales, amount             a sale's journal entry counting (effect ``applied`` or ``none``)
    topped_up                 a till top-up (or its void) applied
    paid                      stored value a counted sale, refund or void paid with (minus: given back)
    coupons, coupons_campaign a counted sale's coupon uses (and those a campaign issued); a refund that gives
                              a use back takes it off its sale's day again
    points_issued             the ledger's writer making a lot (its journal entry's store and till; head
                              office's own lots under store ``""``)
    points_redeemed           the ledger's writer posting a sale's, refund's or void's accepted points
    points_expired            the ledger's writer expiring lots (under the lot's store, till ``""``)
    member_points, member_value  every ledger transaction's change of the members' accounts (store ``"*"``):
                              a day's balance is the sum of every day up to it
    gift_value                every ledger transaction's change of the gift cards' value (store ``"*"``, till
                              ``""``): the gift cards' float, summed the same way
    voucher_value             the same of the vouchers' value (sold, not yet redeemed or refunded): their float
    active, visits, spend     the statistics' daily rows (``member_days``) with a visit, as ``hq.stats`` writes,
                              merges and forgets them (till ``""``: the rows have no till)

The journal's figures are added by ``count`` (called by ingest when an entry comes to count), the ledger's
by its ``Writer`` through ``add``. ``REBUILD`` holds the same figures as statements over the whole history:
``check`` compares them with what was added, ``rebuild`` writes them afresh (the migration that made the
table filled it with them). Keyed by till, so two tills of one store never wait for each other's row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from hq.db.engine import Tx
from hq.db.figures import REBUILD
from hq.db.upsert import Upsert, upsert

CHAIN = "*"
"""The store of figures kept for the whole chain (the members' balances)."""
HEAD_OFFICE = ""
"""The store (and till) of what the ledger posted with no till behind it."""
COUNTED = ("applied", "none")
"""Journal effects that count (as ``hq.stats.COUNTED``)."""
JOURNAL_KINDS = frozenset({"sale", "refund", "void", "till_topup", "topup_void"})
"""The journal kinds with figures of their own."""

Key = tuple[str, str, str, str]
"""(day, store, till, figure)."""

ADD = Upsert(
    "report_days",
    ("day", "store_id", "terminal_id", "figure", "amount"),
    ("text", "text", "text", "text", "bigint"),
    "ON CONFLICT (day, store_id, terminal_id, figure) DO UPDATE SET amount = report_days.amount + excluded.amount",
)


_HELD: dict[int, dict[Key, int]] = {}
"""The deltas of transactions inside ``one_write``, by the transaction's id (a transaction is one thread's)."""


@contextmanager
def one_write(tx: Tx) -> Iterator[None]:
    """Every ``add`` of the block (the ledger's, the statistics', the journal's) goes into one upsert at its
    end, in key order: a transaction locks its roll-up rows at one moment and in one order, so two of them
    (two pushes, a push and a release) never wait for each other in a circle. Nested blocks are the outer
    one's. Nothing is written if the block raises (its transaction rolls back anyway)."""
    if id(tx) in _HELD:
        yield
        return
    _HELD[id(tx)] = defaultdict(int)
    try:
        yield
        held = _HELD.pop(id(tx))
        _write(tx, held)
    finally:
        _HELD.pop(id(tx), None)


def add(tx: Tx, deltas: Mapping[Key, int]) -> None:
    """Add ``deltas`` to the roll-up: at the end of the ``one_write`` block ``tx`` is in, else now; in key
    order, zeros left out."""
    held = _HELD.get(id(tx))
    if held is None:
        _write(tx, deltas)
        return
    for key, n in deltas.items():
        held[key] += n


def _write(tx: Tx, deltas: Mapping[Key, int]) -> None:
    upsert(tx, ADD, [(*key, n) for key, n in sorted(deltas.items()) if n])


# -- pure: what a journal entry adds -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counted:
    """A journal entry that came to count, as the roll-up reads it."""

    day: str
    store: str
    terminal: str
    kind: str
    effect: str
    total: int
    stored_value: int
    coupons: int = 0
    campaign_coupons: int = 0


def journal_figures(e: Counted) -> dict[str, int]:
    """The figures one counted entry adds (``effect`` one of ``COUNTED``)."""
    out: dict[str, int] = {}
    if e.kind == "sale":
        out |= {"sales": 1, "amount": e.total, "coupons": e.coupons, "coupons_campaign": e.campaign_coupons}
    if e.kind in ("till_topup", "topup_void") and e.effect == "applied":
        out["topped_up"] = e.stored_value
    if e.kind in ("sale", "refund", "void"):
        out["paid"] = -e.stored_value
    return {f: n for f, n in out.items() if n}


def journal_deltas(entries: Iterable[Counted]) -> dict[Key, int]:
    out: dict[Key, int] = defaultdict(int)
    for e in entries:
        for figure, n in journal_figures(e).items():
            out[(e.day, e.store, e.terminal, figure)] += n
    return out


# -- pure: what a member's day adds ----------------------------------------------------------------------

MEMBER_FIGURES = ("active", "visits", "spend")
"""The figures of the statistics' daily rows: members with a visit, their visits, their spend."""
DayRow = tuple[str, str, int, int]
"""A member's row of ``member_days``: (day, store, visits, spend)."""


def member_day_figures(visits: int, spend: int) -> dict[str, int]:
    """What one member's day at a store adds: a member with a visit, the visits and the spend; nothing
    without a visit (a day whose visit a refund took back)."""
    return {"active": 1, "visits": visits, "spend": spend} if visits > 0 else {}


def member_day_deltas(before: Iterable[DayRow], after: Iterable[DayRow]) -> dict[Key, int]:
    """What moved from the member rows ``before`` to ``after`` (the same members' rows, read around a change)."""
    out: dict[Key, int] = defaultdict(int)
    for rows, sign in ((before, -1), (after, 1)):
        for day, store, visits, spend in rows:
            for figure, n in member_day_figures(visits, spend).items():
                out[(day, store, "", figure)] += sign * n
    return {k: n for k, n in out.items() if n}


MEMBER_DAY_TABLES = ("member_day_rows", "member_day_rows_recent")
"""Where ``member_days`` reads the stores' daily rows from (``hq.stats.DAY_TABLES``)."""


def member_rows(tx: Tx, member_ids: Sequence[str]) -> list[DayRow]:
    """The members' rows of ``member_days``, as ``member_day_deltas`` reads them (locked: a push adding to
    one of them waits until the caller's change is done)."""
    cond, params = tx.in_list("member_id", list(member_ids))
    rows = [
        (str(d), str(s), int(v), int(n))
        for table in MEMBER_DAY_TABLES  # the tables under the view: a view of two is not locked FOR UPDATE
        for d, s, v, n in tx.all(
            f"SELECT day, item, visits, spend FROM {table} WHERE {cond} AND kind = 's' "
            f"ORDER BY member_id, day, item{tx.for_update}",
            params,
        )
    ]
    return sorted(rows)


def refill(tx: Tx, figures: Sequence[str]) -> None:
    """Write ``figures`` afresh from their statements (after a rebuild of what they sum)."""
    _hold_table(tx)
    cond, params = tx.in_list("figure", list(figures))
    tx.run(f"DELETE FROM report_days WHERE {cond}", params)
    for figure in figures:
        upsert(
            tx,
            ADD,
            [(str(d), str(st), str(t), str(f), int(n)) for d, st, t, f, n in tx.all(REBUILD[figure]) if int(n or 0)],
        )


# -- the journal's figures ------------------------------------------------------------------------------


def coupon_counts(tx: Tx, txn_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Of each sale of ``txn_ids``, its coupon uses not given back, and those of them a campaign issued."""
    if not txn_ids:
        return {}
    cond, params = tx.in_list("u.txn_id", list(txn_ids))
    rows = tx.all(
        "SELECT u.txn_id, COUNT(*), SUM(CASE WHEN EXISTS (SELECT 1 FROM campaign_members cm "
        "WHERE cm.coupon_id = u.coupon_id) THEN 1 ELSE 0 END) FROM coupon_uses u "
        f"WHERE u.released = 0 AND {cond} GROUP BY u.txn_id",
        params,
    )
    return {str(t): (int(n), int(c or 0)) for t, n, c in rows}


def count(tx: Tx, txn_ids: Sequence[str]) -> None:
    """The journal entries ``txn_ids`` have just come to count (stored counting, or released, or applied
    late): add their figures. Entries that do not count (yet) are left out."""
    if not txn_ids:
        return
    cond, params = tx.in_list("txn_id", list(txn_ids))
    rows = tx.all(
        "SELECT txn_id, day, store_id, terminal_id, kind, effect, total, stored_value FROM journal "
        f"WHERE effect IN ('applied', 'none') AND {cond}",
        params,
    )
    coupons = coupon_counts(tx, [str(r[0]) for r in rows if r[4] == "sale"])
    add(tx, journal_deltas(_counted(r, coupons.get(str(r[0]), (0, 0))) for r in rows))


def _counted(row: Sequence[object], coupons: tuple[int, int]) -> Counted:
    _txn, day, store, terminal, kind, effect, total, value = row
    return Counted(
        str(day),
        str(store),
        str(terminal),
        str(kind),
        str(effect),
        int(str(total or 0)),
        int(str(value or 0)),
        *coupons,
    )


def coupons_given_back(tx: Tx, sale_txn: str, given: Sequence[str]) -> None:
    """A refund or void gave back the coupon uses ``given`` of the sale ``sale_txn``: if the sale counts,
    they leave its day's figures (called before the uses are marked given back)."""
    if not given:
        return
    row = tx.one(
        "SELECT day, store_id, terminal_id, effect FROM journal WHERE txn_id = ? AND kind = 'sale'", [sale_txn]
    )
    if row is None or row[3] not in COUNTED:
        return
    cond, params = tx.in_list("coupon_id", list(given))
    campaign = tx.one(f"SELECT COUNT(DISTINCT coupon_id) FROM campaign_members WHERE {cond}", params)
    key = (str(row[0]), str(row[1]), str(row[2]))
    add(tx, {(*key, "coupons"): -len(given), (*key, "coupons_campaign"): -int(campaign[0] if campaign else 0)})


def campaign_decisions_gone(tx: Tx, member_id: str) -> None:
    """The member's campaign decisions are about to be deleted (erasure): the uses of coupons only they made
    campaign coupons leave ``coupons_campaign`` on their sales' days (they stay in ``coupons``)."""
    rows = tx.all(
        "SELECT j.day, j.store_id, j.terminal_id, COUNT(*) FROM coupon_uses u JOIN journal j ON j.txn_id = u.txn_id "
        "WHERE u.released = 0 AND j.kind = 'sale' AND j.effect IN ('applied', 'none') "
        "AND u.coupon_id IN (SELECT cm.coupon_id FROM campaign_members cm WHERE cm.member_id = ?) "
        "AND NOT EXISTS (SELECT 1 FROM campaign_members c2 WHERE c2.coupon_id = u.coupon_id AND c2.member_id <> ?) "
        "GROUP BY j.day, j.store_id, j.terminal_id",
        [member_id, member_id],
    )
    add(tx, {(str(d), str(st), str(t), "coupons_campaign"): -int(n) for d, st, t, n in rows})


# -- reading, checking, rebuilding -------------------------------------------------------------------------

FIGURES = tuple(REBUILD)


def rebuilt(tx: Tx) -> dict[Key, int]:
    """Every figure from the journal and the ledger, as the statements of ``REBUILD`` find it."""
    out: dict[Key, int] = {}
    for sql in REBUILD.values():
        for day, store, terminal, figure, n in tx.all(sql):
            if int(n or 0):
                out[(str(day), str(store), str(terminal), str(figure))] = int(n)
    return out


def held(tx: Tx) -> dict[Key, int]:
    """What the roll-up holds (zeros left out)."""
    rows = tx.all("SELECT day, store_id, terminal_id, figure, amount FROM report_days WHERE amount <> 0")
    return {(str(d), str(s), str(t), str(f)): int(n) for d, s, t, f, n in rows}


@dataclass(frozen=True, slots=True)
class Difference:
    key: Key
    held: int
    rebuilt: int


def compare(held_rows: Mapping[Key, int], rebuilt_rows: Mapping[Key, int]) -> list[Difference]:
    """Where the roll-up and its rebuild disagree, in key order."""
    keys = sorted(set(held_rows) | set(rebuilt_rows))
    return [
        Difference(k, held_rows.get(k, 0), rebuilt_rows.get(k, 0))
        for k in keys
        if held_rows.get(k, 0) != rebuilt_rows.get(k, 0)
    ]


def check(tx: Tx) -> list[Difference]:
    """The roll-up against its rebuild from the journal and the ledger; empty when they agree."""
    return compare(held(tx), rebuilt(tx))


def _hold_table(tx: Tx) -> None:
    """PostgreSQL: no push adds to the table between its rows deleted and written again (SQLite has one
    writer at a time anyway)."""
    if tx.dialect == "postgres":
        tx.run("LOCK TABLE report_days IN SHARE ROW EXCLUSIVE MODE")


def rebuild(tx: Tx) -> int:
    """Write the roll-up afresh from the journal and the ledger; the rows written."""
    _hold_table(tx)
    tx.run("DELETE FROM report_days")
    rows = sorted(rebuilt(tx).items())
    upsert(tx, ADD, [(*k, n) for k, n in rows])
    return len(rows)


def read(
    tx: Tx, first: str, last: str, figures: Sequence[str], stores: Sequence[str] | None
) -> list[tuple[str, str, str, int]]:
    """``(day, store, figure, sum)`` of the figures over the days ``first`` to ``last`` (both included), for
    ``stores`` (None: every store and head office's own); sums of zero left out."""
    fcond, fparams = tx.in_list("figure", list(figures))
    scond, sparams = ("1 = 1", []) if stores is None else tx.in_list("store_id", list(stores))
    rows = tx.all(
        "SELECT day, store_id, figure, SUM(amount) FROM report_days WHERE day >= ? AND day <= ? "
        f"AND {fcond} AND {scond} GROUP BY day, store_id, figure",
        [first, last, *fparams, *sparams],
    )
    return [(str(d), str(s), str(f), int(n)) for d, s, f, n in rows if n]


def balance_moves(tx: Tx, figure: str, last: str) -> dict[str, int]:
    """What moved the chain's ``figure`` (``member_points``, ``member_value``, ``gift_value``, ``voucher_value``) on
    each day up to
    ``last``."""
    rows = tx.all(
        "SELECT day, SUM(amount) FROM report_days WHERE store_id = ? AND figure = ? AND day <= ? GROUP BY day",
        [CHAIN, figure, last],
    )
    return {str(d): int(n or 0) for d, n in rows}


__all__ = [
    "ADD",
    "CHAIN",
    "COUNTED",
    "FIGURES",
    "HEAD_OFFICE",
    "JOURNAL_KINDS",
    "MEMBER_FIGURES",
    "REBUILD",
    "Counted",
    "DayRow",
    "Difference",
    "Key",
    "add",
    "balance_moves",
    "campaign_decisions_gone",
    "check",
    "compare",
    "count",
    "coupon_counts",
    "coupons_given_back",
    "held",
    "journal_deltas",
    "journal_figures",
    "member_day_deltas",
    "member_day_figures",
    "member_rows",
    "one_write",
    "read",
    "rebuild",
    "rebuilt",
    "refill",
]
