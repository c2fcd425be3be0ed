"""`tillpoint hq settlement ...`: statements per merchant and period (CSV, PDF, JSON) and closing periods
(docs/settlement.md). A thin shell over ``hq.settlement``. (``tillpoint hq settle`` settles a
reconciliation item by hand; this group is the merchants' money.)"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hq.cli.common import (
    DEFAULT_DB,
    AuditReasonOpt,
    ByOpt,
    DbOpt,
    as_day,
    fail,
    hq_store,
    print_rows,
    write_problem,
    write_whole,
)
from terminal.console import JsonOpt

app = typer.Typer()
settlement_app = typer.Typer(
    name="settlement",
    help="Settlement between merchants: statements, closing periods, deferred revenue.",
    no_args_is_help=True,
)
app.add_typer(settlement_app)


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    PDF = "pdf"


@settlement_app.command("statement")
def statement(
    period: Annotated[str, typer.Argument(help="The month, YYYY-MM.")],
    merchant_id: Annotated[str, typer.Argument(help="The merchant.")],
    fmt: Annotated[Format, typer.Option("--format", help="json, csv or pdf.")] = Format.JSON,
    out: Annotated[Path | None, typer.Option("--out", help="Write the document here (default: stdout).")] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """One merchant's statement for a period: the same bytes every time it is made."""
    from hq import settlement

    with hq_store(db, create=False) as store:
        try:
            found = settlement.read_statement(store.db, period, merchant_id)
        except settlement.SettlementError as exc:
            fail(exc)
    body = {Format.JSON: settlement.json_bytes, Format.CSV: settlement.to_csv, Format.PDF: settlement.to_pdf}[fmt](
        found
    )
    _write(body, out)


@settlement_app.command("statements")
def statements(
    period: Annotated[str, typer.Argument(help="The month, YYYY-MM.")],
    out_dir: Annotated[Path | None, typer.Option("--dir", help="Write each merchant's CSV and PDF here.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Every merchant's statement for a period (a table, or JSON), and with --dir each one's CSV and PDF (each
    file written whole or not at all)."""
    from hq import settlement

    with hq_store(db, create=False) as store:
        try:
            found = settlement.read_statements(store.db, period)
        except settlement.SettlementError as exc:
            fail(exc)
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for s in found:
                stem = f"settlement-{period}-{s.merchant.merchant_id}"  # an id may hold a '.': no with_suffix
                write_whole(out_dir / f"{stem}.csv", settlement.to_csv(s))
                write_whole(out_dir / f"{stem}.pdf", settlement.to_pdf(s))
        except OSError as exc:
            fail(f"{write_problem(exc)}: --dir: {out_dir} cannot be written ({exc.strerror or exc})")
    if as_json:
        print(json.dumps({"statements": [s.as_dict() for s in found], "totals": settlement.totals(found)}, indent=2))
        return
    rows = [{"merchant_id": s.merchant.merchant_id, "state": s.state, **s.money(), "late": len(s.late)} for s in found]
    print_rows(
        rows,
        [
            "merchant_id",
            "state",
            "charge",
            "reimbursement",
            "chain_margin",
            "value_accepted",
            "cash_taken",
            "net",
            "late",
        ],
    )


@settlement_app.command("close")
def close(
    period: Annotated[str, typer.Argument(help="The month, YYYY-MM.")],
    by: ByOpt,
    reason: AuditReasonOpt,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Close a period that is over by head office's clock in every store's business day (the one after the last
    closed). Its statements never change again; a late entry of it is filed under the next open period. Prints
    JSON."""
    from hq import periods, settlement

    with hq_store(db) as store:
        try:
            done = settlement.close_period(store.db, period, by, reason, store.settings.timezone)
        except periods.PeriodError as exc:
            fail(exc)
    print(json.dumps({"period": done.period, "closed_at": done.closed_at, "closed_by": done.closed_by}))


@settlement_app.command("length")
def length(
    months: Annotated[int, typer.Argument(help="Months a period spans: 1, 2, 3, 4, 6 or 12.")],
    starting: Annotated[str, typer.Option("--from", help="The first month of the first such period, YYYY-MM.")],
    by: ByOpt,
    reason: AuditReasonOpt,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Periods of MONTHS from --from on (a month each by default). --from must start a period, be open and
    hold no entries yet: a posting never changes its period. Prints JSON."""
    from hq import periods, settlement

    with hq_store(db) as store:
        try:
            settlement.set_length(store.db, starting, months, by, reason)
        except periods.PeriodError as exc:
            fail(exc)
        print(json.dumps(settlement.calendar(store.db)))


@settlement_app.command("periods")
def list_periods(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """The last period closed, the period lengths and every close."""
    from hq import settlement

    with hq_store(db, create=False) as store:
        held = settlement.calendar(store.db)
    if as_json:
        print(json.dumps(held, indent=2))
        return
    lengths = "; ".join(["1 month", *(f"{x['months']} months from {x['from']}" for x in held["lengths"])])
    print(f"closed through {held['closed_through'] or 'none'}; periods of {lengths}")
    print_rows(held["closes"], ["period", "closed_at", "closed_by", "reason"])


@settlement_app.command("deferred")
def deferred(
    as_of: Annotated[str | None, typer.Option("--as-of", help="The day's end to read (default: today, UTC).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Deferred revenue at a day's end: each merchant's outstanding points and what it paid for them already,
    members' stored value, gift card balances, vouchers sold and not used."""
    from hq import settlement

    day = as_day(as_of) if as_of else datetime.now(UTC).date()
    with hq_store(db, create=False) as store:
        held = settlement.read_deferred(store.db, day).as_dict()
    if as_json:
        print(json.dumps(held, indent=2))
        return
    print_rows(held["merchants"], ["merchant_id", "name", "timing", "outstanding", "cost_per_100", "collected"])
    print(
        f"as of {held['as_of']}: points outstanding {held['points_outstanding']}, collected for them "
        f"{held['points_collected']}, stored value {held['stored_value']}, gift cards {held['gift_cards']}, "
        f"vouchers {held['vouchers']}, money held {held['money_held']}; vouchers' part returns kept "
        f"{held['vouchers_kept']} (minor units)"
    )


def _write(body: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        try:
            write_whole(out, body)
        except OSError as exc:
            fail(f"{write_problem(exc)}: --out: {out} cannot be written ({exc.strerror or exc})")
