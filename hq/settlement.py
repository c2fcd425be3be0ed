"""Settlement statements: per merchant and period, what its stores issued and accepted, what it owes the
chain or the chain owes it, read from the ledger alone, as CSV and PDF that are the same bytes every time.

    statement(tx, period, merchant_id)   one merchant's statement (``SettlementError`` says why not)
    statements(tx, period)               every merchant's, from one set of grouped reads
    to_csv(statement) / to_pdf(statement)   the documents, byte for byte reproducible

A period's figures are the ledger transactions filed under it (``ledger_txns.period``; a late entry of a
closed period is filed under the first open one and listed on the statement with the period it belongs to,
``hq.periods``). A closed period's statement uses the names and rates frozen by its close, so it never
changes; an open period's is provisional and uses the merchants' current rates.

The points economics (``docs/settlement.md``), every amount in the chain's minor currency units, computed
once on a figure's total and rounded down (``merchants.money_for``):

    charge         the points its timing charges x cost_per_100 / 100                        merchant -> chain
                   (each lot by the timing the merchant had when it was issued: ``Slice``)
                     issuance:   points issued - points clawed back by refunds
                     redemption: points of its lots used up, wherever (spent net of refunds, or repaying
                                 an overdraft): not what its stores accepted
                     reserve:    points issued - clawed - breakage (what expired is released back to it)
    reimbursement  points accepted (net of refunds) x reimburse_per_100 / 100               chain -> merchant
    chain margin   charge - reimbursement
    net            reimbursement + stored value accepted - charge - cash taken for top-ups  (> 0: chain pays)

The documents carry no time of making: what is in them is what the ledger holds, and nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from hq import merchants, periods
from hq.db.engine import Db, Tx
from hq.errors import HqError
from hq.ledger import Kind
from hq.web import safe_cell

PDF_DATE = datetime(2000, 1, 1, tzinfo=UTC)
"""The creation date every PDF states: a statement's bytes depend on the ledger alone."""


class Code(StrEnum):
    """Why a statement cannot be made; stable, for scripts and the admin API."""

    BAD_PERIOD = "bad_period"
    UNKNOWN_MERCHANT = "unknown_merchant"
    CLOSE_DAMAGED = "close_damaged"


class SettlementError(HqError):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.detail = message


# -- pure: figures, money, documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """One merchant's points and stored value in one period (points unless named ``value``/``cash``)."""

    issued: int = 0
    """Points of the lots its stores' sales earned (the chain's also: points given back as new lots)."""
    clawed: int = 0
    """Points of its lots that refunds and voids took back."""
    accepted: int = 0
    """Points members spent at its stores, net of what refunds gave back."""
    own_spent_elsewhere: int = 0
    """Points of its lots spent at other merchants' stores (net of refunds)."""
    others_spent_here: int = 0
    """Points of other merchants' lots spent at its stores (net of refunds)."""
    breakage: int = 0
    """Points of its lots that expired or were forfeited."""
    outstanding_start: int = 0
    """Points of its lots members held when the period began (its points liability)."""
    outstanding_end: int = 0
    """... and when it ended."""
    value_accepted: int = 0
    """Stored value members paid at its stores, gift card payments and vouchers redeemed there (minor units)."""
    cash_taken: int = 0
    """Cash its tills took for stored value they topped up, gift cards and vouchers they sold (minor units)."""
    vouchers_kept: int = 0
    """Of the vouchers it accepted, the part returns of their sales kept (``voucher_kept``): no longer owed to it,
    the chain's breakage, and taken off ``value_accepted`` already (minor units; said, not counted again)."""


MONEY_FIGURES = ("value_accepted", "cash_taken", "vouchers_kept")
"""The figures in minor units, not points: a statement shows them under ``money`` (``Statement.money``, beside what
they make ``net``), in its JSON as in its CSV and PDF, never among the points."""


@dataclass(frozen=True, slots=True)
class Slice:
    """A merchant's lots issued under one settlement timing, and what happened to them in one period (points).
    Each lot keeps the timing its merchant had when it was issued, so a merchant that changes its timing pays
    for each lot once; ``timing`` None: lots issued before lots kept theirs, settled by the timing of the
    statement's period (frozen by its close), as they always were."""

    timing: str | None
    issued: int = 0
    clawed: int = 0
    """Taken back by refunds and voids."""
    breakage: int = 0
    """Expired or forfeited."""
    consumed: int = 0
    """Used up: spent wherever (less what refunds gave back), or repaying an overdraft."""


@dataclass(frozen=True, slots=True)
class Late:
    """A late entry: filed under this period, belonging to the closed period ``belongs_to``."""

    txn_id: str
    kind: str
    day: str
    belongs_to: str


@dataclass(frozen=True, slots=True)
class Statement:
    period: str
    merchant: merchants.Merchant
    closed_at: str | None
    """When the period was closed (its statement is final); None: open, the statement is provisional."""
    figures: Figures
    late: tuple[Late, ...] = field(default=())
    months: int = 1
    """How many months the period spans (from ``period`` on)."""
    slices: tuple[Slice, ...] = field(default=())
    """Its lots by the timing each was issued under (``read_slices``): what ``charged`` is computed from."""

    @property
    def consumed(self) -> int:
        """Points of its lots members used up in the period, wherever: what a merchant at redemption pays for."""
        return sum(x.consumed for x in self.slices)

    @property
    def charged_by_timing(self) -> dict[str, int]:
        """The points charged for its lots of each timing (lots issued before lots kept theirs: the statement's)."""
        out: dict[str, int] = defaultdict(int)
        for x in self.slices:
            timing = x.timing or self.merchant.timing
            out[timing] += charged_points(x, timing)
        return dict(out)

    @property
    def state(self) -> str:
        return "closed" if self.closed_at else "open"

    @property
    def charged(self) -> int:
        """The points the merchant pays for in this period: each of its lots by the timing it was issued under."""
        return sum(self.charged_by_timing.values())

    @property
    def mixed(self) -> bool:
        """Lots of more than one timing were charged: the statement says what each timing charged."""
        return len([n for n in self.charged_by_timing.values() if n]) > 1

    @property
    def prints_charged(self) -> bool:
        """A merchant at issuance whose lots all settled at issuance prints no timing and no charged points, so
        the documents of periods closed before timings existed stay the same bytes."""
        f = self.figures
        return self.merchant.timing != merchants.Timing.ISSUANCE or self.charged != f.issued - f.clawed

    @property
    def charge(self) -> int:
        return merchants.money_for(self.charged, self.merchant.cost_per_100)

    @property
    def reimbursement(self) -> int:
        return merchants.money_for(self.figures.accepted, self.merchant.reimburse_per_100)

    @property
    def margin(self) -> int:
        return self.charge - self.reimbursement

    @property
    def net(self) -> int:
        """What the chain pays the merchant (negative: what the merchant pays the chain)."""
        return self.reimbursement + self.figures.value_accepted - self.charge - self.figures.cash_taken

    def as_dict(self) -> dict[str, Any]:
        m = self.merchant
        timing = {"timing": m.timing} if self.prints_charged else {}
        charged = {"charged": self.charged} if self.prints_charged else {}
        if self.mixed:
            charged |= {f"charged_at_{t}": n for t, n in sorted(self.charged_by_timing.items()) if n}
        return {
            "period": self.period,
            "months": self.months,
            "merchant_id": m.merchant_id,
            "name": m.name,
            "cost_per_100": m.cost_per_100,
            "reimburse_per_100": m.reimburse_per_100,
            **timing,
            "state": self.state,
            "closed_at": self.closed_at,
            "points": {f.name: getattr(self.figures, f.name) for f in fields(Figures) if f.name not in MONEY_FIGURES}
            | charged,
            "money": self.money(),
            "late": [{"txn_id": x.txn_id, "kind": x.kind, "day": x.day, "belongs_to": x.belongs_to} for x in self.late],
        }

    def money(self) -> dict[str, int]:
        """The money figures; ``vouchers_kept`` only when returns kept some (a statement without any prints the
        same bytes as before it existed)."""
        kept = {"vouchers_kept": self.figures.vouchers_kept} if self.figures.vouchers_kept else {}
        return {
            "charge": self.charge,
            "reimbursement": self.reimbursement,
            "chain_margin": self.margin,
            "value_accepted": self.figures.value_accepted,
            **kept,
            "cash_taken": self.figures.cash_taken,
            "net": self.net,
        }


def charged_points(x: Slice, timing: str) -> int:
    """The points a merchant pays in a period for its lots of ``x`` issued under ``timing``."""
    if timing == merchants.Timing.REDEMPTION:
        return x.consumed  # its own lots, used up wherever: not what its stores accepted (a chain reward, an overdraft)
    if timing == merchants.Timing.RESERVE:
        return x.issued - x.clawed - x.breakage
    return x.issued - x.clawed


def rows(stmt: Statement) -> list[tuple[str, str, str]]:
    """The statement as (section, item, value) rows: what both documents print, in this order. A merchant at
    issuance (every statement made before timings existed) prints no timing and no charged points, so the
    documents of periods closed then stay the same bytes."""
    d = stmt.as_dict()
    head = [("statement", k, "" if d[k] is None else str(d[k])) for k in HEAD if k in d]
    points = [("points", k, str(v)) for k, v in d["points"].items()]
    money = [("money", k, str(v)) for k, v in d["money"].items()]
    who = "chain_pays_merchant" if stmt.net >= 0 else "merchant_pays_chain"
    settle = [("settle", who, str(abs(stmt.net))), ("late", "entries", str(len(stmt.late)))]
    late = [("late", x.txn_id, f"{x.kind} {x.day} belongs to {x.belongs_to}") for x in stmt.late]
    return head + points + money + settle + late


HEAD = (
    "merchant_id",
    "name",
    "period",
    "months",
    "state",
    "closed_at",
    "cost_per_100",
    "reimburse_per_100",
    "timing",
)


_NUMBER = re.compile(r"-?[0-9]+")


def _cell(text: str) -> str:
    """A statement's cell: a number as it is, any other text never a formula (a late entry's transaction id
    comes from a till; a merchant's name from a person)."""
    return text if _NUMBER.fullmatch(text) else str(safe_cell(text))


def to_csv(stmt: Statement) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "item", "value"])
    writer.writerows([_cell(c) for c in row] for row in rows(stmt))
    return out.getvalue().encode("utf-8")


def printable(text: str) -> str:
    """Text the PDF's built-in font can draw (Latin-1); other characters as their code points (U+30D9):
    the CSV keeps the name as it is."""
    return "".join(c if ord(c) < 256 else f"U+{ord(c):04X}" for c in text)


def to_pdf(stmt: Statement) -> bytes:
    """One A4 page (more if the late entries need them), built-in font, a fixed creation date."""
    from fpdf import FPDF  # one library for one document format, loaded when a PDF is asked for

    pdf = FPDF(format="A4")
    pdf.set_creation_date(PDF_DATE)
    pdf.set_producer("tillpoint")
    pdf.set_title(printable(f"Settlement {stmt.period} {stmt.merchant.merchant_id}"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(
        0, 10, printable(f"Settlement statement {stmt.period}: {stmt.merchant.name}"), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("Helvetica", size=9)
    section = ""
    for sec, item, value in rows(stmt):
        if sec != section:
            section = sec
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(0, 8, sec, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=9)
        pdf.cell(70, 5, printable(item))
        pdf.cell(0, 5, printable(value), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


# -- reading the ledger ------------------------------------------------------------------------------------

POSTINGS = (
    "SELECT p.owner, p.kind, SUM(p.amount) FROM ledger_txns t JOIN ledger_postings p "
    "ON p.ledger_txn_id = t.ledger_txn_id WHERE t.period = ? AND p.kind IN (?, ?, ?, ?, ?){only} "
    "GROUP BY p.owner, p.kind"
)
ISSUED_BEFORE = (
    "SELECT p.owner, SUM(p.amount) FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id "
    "WHERE t.period {upto} ? AND p.kind = ?{since}{only} GROUP BY p.owner"
)
"""The ``merchant_issued`` postings filed under the periods before (or up to) one, after a kept close's."""
LOT_ISSUED = (
    "SELECT l.merchant_id, l.timing, SUM(l.points) FROM ledger_txns t JOIN ledger_lots l "
    "ON l.lot_id = t.ledger_txn_id{restored} WHERE t.period = ?{only} GROUP BY l.merchant_id, l.timing"
)
"""Points of the lots each merchant's stores issued in a period (``restored``: the lots refunds gave back as the
chain's), by the timing each lot was issued under."""
LOT_USES = (
    "SELECT u.merchant_id, l.timing, u.purpose, SUM(u.points) FROM ledger_txns t JOIN ledger_lot_uses u "
    "ON u.ledger_txn_id = t.ledger_txn_id LEFT JOIN ledger_lots l ON l.lot_id = u.lot_id "
    "WHERE t.period = ?{only} GROUP BY u.merchant_id, l.timing, u.purpose"
)
"""Points of each merchant's lots taken in a period, by purpose and by the timing each lot was issued under."""
USES = (
    "SELECT u.merchant_id, t.merchant_id, SUM(u.points) FROM ledger_txns t JOIN ledger_lot_uses u "
    "ON u.ledger_txn_id = t.ledger_txn_id WHERE t.period = ? AND u.purpose IN ('spend', 'restore') "
    "AND u.merchant_id <> t.merchant_id GROUP BY u.merchant_id, t.merchant_id"
)
"""Points of one merchant's lots spent at another's stores (net of refunds)."""
LATE = (
    "SELECT merchant_id, ledger_txn_id, kind, day, moved_from FROM ledger_txns "
    "WHERE period = ? AND moved_from IS NOT NULL{only} ORDER BY merchant_id, ledger_txn_id"
)
KINDS = (Kind.ISSUED, Kind.ACCEPTED, Kind.BREAKAGE, Kind.VALUE_ACCEPTED, Kind.MERCHANT_CASH)
KEPT = (
    "SELECT p.owner, SUM(p.amount) FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id "
    "WHERE t.period = ? AND t.kind = 'voucher_kept' AND p.kind = ?{only} GROUP BY p.owner"
)
"""What returns filed in a period kept of the vouchers each merchant accepted (taken off its value accepted)."""


def _only(column: str, merchant_id: str | None) -> tuple[str, list[str]]:
    return (f" AND {column} = ?", [merchant_id]) if merchant_id else ("", [])


def read_slices(tx: Tx, period: str, merchant_id: str | None = None) -> dict[str, tuple[Slice, ...]]:
    """Every merchant's ``Slice`` s for ``period`` (or one merchant's): its lots issued and taken in the period,
    by the timing each lot was issued under."""
    out: dict[str, dict[str | None, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    only, arg = _only("l.merchant_id", merchant_id)
    for restored in ("", " || ':restored'"):
        for owner, timing, n in tx.all(LOT_ISSUED.format(restored=restored, only=only), [period, *arg]):
            out[str(owner)][_timing(timing)]["issued"] += int(n)
    only, arg = _only("u.merchant_id", merchant_id)
    for owner, timing, purpose, n in tx.all(LOT_USES.format(only=only), [period, *arg]):
        figure = USE_FIGURE.get(str(purpose))
        if figure:
            out[str(owner)][_timing(timing)][figure] += int(n)
    return {m: tuple(Slice(t, **v) for t, v in sorted(by.items(), key=lambda kv: kv[0] or "")) for m, by in out.items()}


USE_FIGURE = {
    "claw": "clawed",
    "spend": "consumed",
    "restore": "consumed",
    "repay": "consumed",
    "expire": "breakage",
    "forfeit": "breakage",
}
"""A lot use's purpose -> the ``Slice`` figure it counts in."""


def _timing(held: object) -> str | None:
    return None if held is None else str(held)


def read_figures(
    tx: Tx, period: str, merchant_id: str | None = None, slices: dict[str, tuple[Slice, ...]] | None = None
) -> dict[str, Figures]:
    """Every merchant's figures for ``period`` (or one merchant's), from a few grouped reads (``slices``: the
    period's ``read_slices``, when read already)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    only, arg = _only("p.owner", merchant_id)
    for owner, kind, n in tx.all(POSTINGS.format(only=only), [period, *(k.value for k in KINDS), *arg]):
        _posting(out[str(owner)], Kind(str(kind)), int(n))
    for owner, n in tx.all(KEPT.format(only=only), [period, Kind.VALUE_ACCEPTED.value, *arg]):
        out[str(owner)]["vouchers_kept"] = -int(n)
    for owner, n in outstanding(tx, period, merchant_id).items():
        out[owner]["outstanding_start"] = n
    for owner, parts in (read_slices(tx, period, merchant_id) if slices is None else slices).items():
        out[owner]["issued"] += sum(x.issued for x in parts)
        out[owner]["clawed"] += sum(x.clawed for x in parts)
    for lot_owner, accepted_by, n in tx.all(USES, [period]):
        out[str(lot_owner)]["own_spent_elsewhere"] += int(n)
        out[str(accepted_by)]["others_spent_here"] += int(n)
    return {m: _figures(v) for m, v in out.items() if merchant_id is None or m == merchant_id}


def _posting(into: dict[str, int], kind: Kind, amount: int) -> None:
    if kind is Kind.ISSUED:
        into["outstanding_change"] = -amount
    elif kind is Kind.ACCEPTED:
        into["accepted"] = amount
    elif kind is Kind.BREAKAGE:
        into["breakage"] = amount
    elif kind is Kind.VALUE_ACCEPTED:
        into["value_accepted"] = amount
    elif kind is Kind.MERCHANT_CASH:
        into["cash_taken"] = -amount


def _figures(raw: dict[str, int]) -> Figures:
    start = raw.get("outstanding_start", 0)
    end = start + raw.get("outstanding_change", 0)
    names = {f.name for f in fields(Figures)}
    return replace(Figures(**{k: v for k, v in raw.items() if k in names}), outstanding_end=end)


def outstanding(tx: Tx, period: str, merchant_id: str | None = None, *, through: bool = False) -> dict[str, int]:
    """Each merchant's outstanding points (its ``merchant_issued`` negated) when ``period`` began (``through``:
    when it ended): the positions the last close before it kept, plus what was filed since; every posting of the
    ledger's history when no close kept them."""
    row = tx.one("SELECT MAX(period) FROM ledger_closes WHERE period < ? AND positions_kept = 1", [period])
    kept = str(row[0]) if row and row[0] else None
    out: dict[str, int] = defaultdict(int)
    if kept is not None:
        only, arg = _only("merchant_id", merchant_id)
        for m, n in tx.all(
            f"SELECT merchant_id, outstanding FROM ledger_close_positions WHERE period = ?{only}", [kept, *arg]
        ):
            out[str(m)] += int(n)
    only, arg = _only("p.owner", merchant_id)
    since, after = (" AND t.period > ?", [kept]) if kept is not None else ("", [])
    sql = ISSUED_BEFORE.format(upto="<=" if through else "<", since=since, only=only)
    for owner, n in tx.all(sql, [period, Kind.ISSUED.value, *after, *arg]):
        out[str(owner)] -= int(n)
    return dict(out)


def keep_positions(tx: Tx, period: str) -> int:
    """Keep each merchant's outstanding points at the end of ``period``, just closed (nothing is filed under a
    closed period again, and periods close in order, so they never change); returns the rows kept."""
    held = sorted((m, n) for m, n in outstanding(tx, period, through=True).items() if n)
    tx.insert_rows(
        "ledger_close_positions", ("period", "merchant_id", "outstanding"), [(period, m, n) for m, n in held]
    )
    tx.run("UPDATE ledger_closes SET positions_kept = 1 WHERE period = ?", [period])
    return len(held)


def read_late(tx: Tx, period: str, merchant_id: str | None = None) -> dict[str, tuple[Late, ...]]:
    only, arg = _only("merchant_id", merchant_id)
    found: dict[str, list[Late]] = defaultdict(list)
    for m, txn, kind, day, belongs in tx.all(LATE.format(only=only), [period, *arg]):
        found[str(m)].append(Late(str(txn), str(kind), str(day), str(belongs)))
    return {m: tuple(v) for m, v in found.items()}


# -- statements --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    closed_at: str | None
    """When the period closed; None: open."""
    merchants: list[merchants.Merchant]
    """The merchants as the close froze them; open: the current ones."""
    months: int


def _terms(tx: Tx, period: str) -> Terms:
    held = periods.calendar(tx)
    held.check(period)
    months = held.span(period)[1]
    done = periods.closing(tx, period)
    if done is not None:
        return Terms(done.closed_at, list(done.rates), months)
    return Terms(None, merchants.all_merchants(tx), months)


def statement(tx: Tx, period: str, merchant_id: str) -> Statement:
    terms = _terms_checked(tx, period)
    found = next((m for m in terms.merchants if m.merchant_id == merchant_id), None)
    if found is None:
        raise SettlementError(Code.UNKNOWN_MERCHANT, f"no merchant {merchant_id} in {period}")
    slices = read_slices(tx, period, merchant_id)
    figures = read_figures(tx, period, merchant_id, slices).get(merchant_id, Figures())
    late = read_late(tx, period, merchant_id).get(merchant_id, ())
    return Statement(period, found, terms.closed_at, figures, late, terms.months, slices.get(merchant_id, ()))


def statements(tx: Tx, period: str) -> list[Statement]:
    """Every merchant's statement for ``period``, in merchant order."""
    terms = _terms_checked(tx, period)
    slices = read_slices(tx, period)
    figures, late = read_figures(tx, period, slices=slices), read_late(tx, period)
    return [
        Statement(
            period,
            m,
            terms.closed_at,
            figures.get(m.merchant_id, Figures()),
            late.get(m.merchant_id, ()),
            terms.months,
            slices.get(m.merchant_id, ()),
        )
        for m in terms.merchants
    ]


def _terms_checked(tx: Tx, period: str) -> Terms:
    try:
        return _terms(tx, period)
    except periods.PeriodError as exc:
        code = Code.CLOSE_DAMAGED if exc.code is periods.Code.CLOSE_DAMAGED else Code.BAD_PERIOD
        raise SettlementError(code, exc.detail) from exc


def totals(found: Iterable[Statement]) -> dict[str, int]:
    """The chain's side of a period: what all merchants' statements sum to."""
    out: dict[str, int] = defaultdict(int)
    for s in found:
        for k, v in s.money().items():
            out[k] += v
        out["outstanding_end"] += s.figures.outstanding_end
    return dict(out)


# -- the service the commands and the admin API call -------------------------------------------------------


def close_period(
    db: Db, period: str, actor: str, reason: str, zone: str = "UTC", now: datetime | None = None
) -> periods.Closed:
    """Close ``period`` (audited) once it is over by head office's clock (``now``: the clock's now) in every
    store's business day and the chain's ``zone``; ``periods.PeriodError`` says why not."""
    with db.write() as tx:
        done = periods.close(tx, period, actor, reason, zone, now or datetime.now(UTC))
        keep_positions(tx, period)
        return done


def set_length(db: Db, starting: str, months: int, actor: str, reason: str) -> periods.Calendar:
    """Periods of ``months`` from ``starting`` on (audited); ``periods.PeriodError`` says why not."""
    with db.write() as tx:
        return periods.set_length(tx, starting, months, actor, reason)


def read_statement(db: Db, period: str, merchant_id: str) -> Statement:
    with db.read() as tx:
        return statement(tx, period, merchant_id)


def read_statements(db: Db, period: str) -> list[Statement]:
    with db.read() as tx:
        return statements(tx, period)


def calendar(db: Db) -> dict[str, Any]:
    """The last period closed and every close (who, when, why)."""
    with db.read() as tx:
        held, done = periods.calendar(tx), periods.closes(tx)
    return {
        "closed_through": held.closed_through,
        "lengths": [{"from": anchor, "months": months} for anchor, months in held.lengths],
        "closes": [
            {"period": c.period, "closed_at": c.closed_at, "closed_by": c.closed_by, "reason": c.reason} for c in done
        ],
    }


def json_bytes(stmt: Statement) -> bytes:
    return json.dumps(stmt.as_dict(), sort_keys=True, separators=(",", ":")).encode()


# -- deferred revenue: what the chain holds for points, stored value and gift cards not yet used -------------


@dataclass(frozen=True, slots=True)
class DeferredLine:
    """One merchant's outstanding points at the end of a day, and what it paid for them already."""

    merchant_id: str
    name: str
    timing: str
    outstanding: int
    """Points of its lots members held (its points liability)."""
    cost_per_100: int
    collected: int
    """Minor units it paid for those points already (its lots issued at issuance or reserve), which the chain
    holds until they are spent or expire; nothing for its lots issued at redemption (paid as they are spent)."""


@dataclass(frozen=True, slots=True)
class Deferred:
    as_of: str
    merchants: tuple[DeferredLine, ...]
    stored_value: int
    """Members' stored value (the ledger's ``member_value`` accounts)."""
    gift_cards: int
    """Gift card balances (each card's balance after its last activity of the day or before; none below 0)."""
    vouchers: int = 0
    """Vouchers sold and not yet redeemed or refunded (each one's ``voucher_value`` account at the day's end; none
    below 0: a voucher redeemed twice offline is the chain's loss, not money held)."""
    vouchers_kept: int = 0
    """The vouchers' part of sales their returns kept (``voucher_kept``), which no merchant is owed any more: the
    chain's (``voucher_breakage``), not money held for anyone."""

    def as_dict(self) -> dict[str, Any]:
        lines = [{f.name: getattr(x, f.name) for f in fields(DeferredLine)} for x in self.merchants]
        return {
            "as_of": self.as_of,
            "merchants": lines,
            "points_outstanding": sum(x.outstanding for x in self.merchants),
            "points_collected": sum(x.collected for x in self.merchants),
            "stored_value": self.stored_value,
            "gift_cards": self.gift_cards,
            "vouchers": self.vouchers,
            "vouchers_kept": self.vouchers_kept,
            "money_held": sum(x.collected for x in self.merchants)
            + self.stored_value
            + self.gift_cards
            + self.vouchers,
        }


def collected_for(outstanding: dict[str | None, int], m: merchants.Merchant) -> int:
    """What a merchant paid already for its outstanding points, by the timing each of its lots was issued under
    (``outstanding``: points by timing; None, lots issued before lots kept theirs: its timing now). Lots at
    issuance and reserve were paid for when issued; lots at redemption are paid for as they are spent."""
    paid = sum(n for t, n in outstanding.items() if (t or m.timing) != merchants.Timing.REDEMPTION)
    return merchants.money_for(paid, m.cost_per_100)


HELD_BY_TIMING = (
    "SELECT l.merchant_id, l.timing, SUM(l.points) FROM ledger_lots l WHERE l.timing IS NOT NULL "
    "AND l.earned_day <= ? GROUP BY l.merchant_id, l.timing"
)
TAKEN_BY_TIMING = (
    "SELECT l.merchant_id, l.timing, SUM(u.points) FROM ledger_lot_uses u JOIN ledger_txns t "
    "ON t.ledger_txn_id = u.ledger_txn_id JOIN ledger_lots l ON l.lot_id = u.lot_id "
    "WHERE l.timing IS NOT NULL AND t.day <= ? GROUP BY l.merchant_id, l.timing"
)
"""What the lots that kept their timing held at the end of a day: their points, less what was taken from them."""


def outstanding_by_timing(tx: Tx, day: str, outstanding: dict[str, int]) -> dict[str, dict[str | None, int]]:
    """Each merchant's ``outstanding`` points at the end of ``day`` split by the timing their lots were issued
    under (None: lots issued before lots kept theirs)."""
    out: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for sql, sign in ((HELD_BY_TIMING, 1), (TAKEN_BY_TIMING, -1)):
        for m, timing, n in tx.all(sql, [day]):
            out[str(m)][str(timing)] += sign * int(n)
    for m, total in outstanding.items():
        out[m][None] = total - sum(n for t, n in out[m].items() if t is not None)
    return out


def deferred(tx: Tx, as_of: date) -> Deferred:
    """The chain's deferred revenue at the end of ``as_of`` (a business day, as the ledger files them): each
    merchant's outstanding points and what it paid for them, members' stored value, gift card balances, vouchers
    sold and not used. Read from the ledger and the gift cards' activity alone, so a past day reads as it stood
    then."""
    day = as_of.isoformat()
    issued: dict[str, int] = dict(
        tx.all(
            "SELECT p.owner, SUM(p.amount) FROM ledger_postings p JOIN ledger_txns t "
            "ON t.ledger_txn_id = p.ledger_txn_id WHERE p.kind = ? AND t.day <= ? GROUP BY p.owner",
            [Kind.ISSUED.value, day],
        )
    )
    value = tx.one(
        "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p JOIN ledger_txns t "
        "ON t.ledger_txn_id = p.ledger_txn_id WHERE p.kind = ? AND t.day <= ?",
        [Kind.MEMBER_VALUE.value, day],
    )
    cards = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN e.balance_after > 0 THEN e.balance_after ELSE 0 END), 0) "
        "FROM gift_card_events e WHERE e.n = (SELECT MAX(x.n) FROM gift_card_events x WHERE x.card_id = e.card_id "
        "AND COALESCE(x.day, substr(x.at, 1, 10)) <= ?)",
        [day],
    )
    vouchers = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN v.held > 0 THEN v.held ELSE 0 END), 0) FROM (SELECT SUM(p.amount) AS held "
        "FROM ledger_postings p JOIN ledger_txns t ON t.ledger_txn_id = p.ledger_txn_id "
        "WHERE p.kind = ? AND t.day <= ? GROUP BY p.owner) v",
        [Kind.VOUCHER_VALUE.value, day],
    )
    kept = tx.one(
        "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p JOIN ledger_txns t "
        "ON t.ledger_txn_id = p.ledger_txn_id WHERE p.kind = ? AND t.day <= ?",
        [Kind.VOUCHER_BREAKAGE.value, day],
    )
    outstanding = {str(m): -int(n or 0) for m, n in issued.items()}
    split = outstanding_by_timing(tx, day, outstanding)
    lines = []
    for m in merchants.all_merchants(tx):
        held = outstanding.get(m.merchant_id, 0)
        by_timing = split.get(m.merchant_id, {None: held})
        lines.append(DeferredLine(m.merchant_id, m.name, m.timing, held, m.cost_per_100, collected_for(by_timing, m)))
    return Deferred(
        day,
        tuple(lines),
        int(value[0]) if value else 0,
        int(cards[0]) if cards else 0,
        int(vouchers[0]) if vouchers else 0,
        int(kept[0]) if kept else 0,
    )


def read_deferred(db: Db, as_of: date) -> Deferred:
    with db.read() as tx:
        return deferred(tx, as_of)
