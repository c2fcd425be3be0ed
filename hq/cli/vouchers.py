"""`tillpoint hq voucher ...`: prepaid vouchers (docs/stored-value.md, "Vouchers"): sign vouchers into a
till's stock, set its offline total of redemptions, show a voucher or a till's vouchers."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, print_rows
from terminal.console import JsonOpt

app = typer.Typer(name="voucher", help="Prepaid vouchers: issue to a till's stock, offline total, show, list.")


@app.command("issue")
def issue(
    terminal_id: str,
    count: Annotated[int, typer.Option(help="How many vouchers to sign into the till's stock.")] = 1,
    value: Annotated[
        int, typer.Option(help="Minor units: an amount voucher's face value, a product voucher's price.")
    ] = 0,
    sku: Annotated[str, typer.Option(help="A product voucher's sku (none: an amount voucher).")] = "",
    days: Annotated[int, typer.Option(help="Days until the vouchers expire.")] = 365,
    by: Annotated[str, typer.Option(help="Who issues them (kept with each voucher).")] = "admin",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Sign vouchers with head office's voucher key into TERMINAL's stock: the till pulls them and may sell
    them (and only them). Prints JSON."""
    from hq.errors import Refused
    from hq.payments import signing_key
    from hq.vouchers import IssueSpec
    from terminal.vouchers import PURPOSE

    spec = IssueSpec(count, value, int(time.time()) + days * 86400, sku)
    with hq_store(db) as store:
        try:
            made = store.issue_vouchers(terminal_id, spec, signing_key(store, PURPOSE), by)
        except Refused as exc:
            fail(exc)
    print(json.dumps({"terminal_id": terminal_id, "voucher_ids": made, "expires_at": spec.expires_at}))


@app.command("offline-total")
def offline_total(
    terminal_id: str,
    total: Annotated[int, typer.Argument(help="Minor units of voucher redemptions the till may take offline.")],
    by: Annotated[str, typer.Option(help="Who sets it.")] = "admin",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Set TERMINAL's offline total of voucher redemptions not yet acknowledged (0: none offline). Prints JSON."""
    from hq.errors import Refused

    with hq_store(db, create=False) as store:
        try:
            print(
                json.dumps(
                    {
                        "terminal_id": terminal_id,
                        "offline_total": store.put_voucher_offline_total(terminal_id, total, by),
                    }
                )
            )
        except Refused as exc:
            fail(exc)


@app.command("show")
def show(voucher_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A voucher: its value, the till whose stock it is, its state, where it was sold and its use. JSON."""
    from hq.errors import Refused

    with hq_store(db, create=False) as store:
        try:
            print(json.dumps(store.voucher(voucher_id), indent=2))
        except Refused as exc:
            fail(exc)


@app.command("list")
def listing(
    terminal: Annotated[str | None, typer.Option(help="Only this till's vouchers.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Vouchers (at most 1000), by id: their till, state and sale."""
    with hq_store(db, create=False) as store:
        rows = store.vouchers(terminal)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_rows(rows, ["voucher_id", "kind", "value", "sku", "terminal_id", "state", "sold_store", "sold_txn"])
