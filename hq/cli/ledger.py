"""`tillpoint hq merchant ...` and `tillpoint hq ledger ...`: the chain's merchants, and the ledger that
proves every balance (docs/ledger.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, as_day, fail, hq_store, print_rows
from terminal.console import JsonOpt

app = typer.Typer()
merchant_app = typer.Typer(name="merchant", help="The chain's merchants: add, list, show.", no_args_is_help=True)
ledger_app = typer.Typer(name="ledger", help="The ledger of points and stored value: check, expire.")
app.add_typer(merchant_app)
app.add_typer(ledger_app)


@merchant_app.command("add")
def add(
    merchant_id: str,
    name: Annotated[str, typer.Option(help="The merchant's name.")],
    cost_per_100: Annotated[
        int | None,
        typer.Option(
            min=0, help="What it pays per 100 points its stores issue; left out: the one it has (a new merchant: 0)."
        ),
    ] = None,
    reimburse_per_100: Annotated[
        int | None,
        typer.Option(
            min=0, help="What it is paid per 100 points it accepts; left out: the one it has (a new merchant: 0)."
        ),
    ] = None,
    timing: Annotated[
        str | None,
        typer.Option(
            help="When it pays for its points: issuance, redemption or reserve (docs/settlement.md); "
            "left out: the one it has (a new merchant: issuance)."
        ),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Add a merchant, or change its name, rates (minor units per 100 points) and timing. Prints JSON."""
    from hq import merchants

    with hq_store(db) as store:
        try:
            with store.db.write() as tx:
                added = merchants.add(tx, merchant_id, name, cost_per_100, reimburse_per_100, timing)
        except merchants.MerchantError as exc:
            fail(f"{exc.code}: {exc}")
    print(json.dumps(added.as_dict()))


@merchant_app.command("list")
def list_merchants(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Every merchant and its rates."""
    from hq import merchants

    with hq_store(db, create=False) as store, store.db.read() as tx:
        rows = [m.as_dict() for m in merchants.all_merchants(tx)]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows, ["merchant_id", "name", "cost_per_100", "reimburse_per_100"])


@merchant_app.command("show")
def show(merchant_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A merchant, its stores and its positions in the ledger. Prints JSON."""
    from hq import ledger, merchants

    with hq_store(db, create=False) as store, store.db.read() as tx:
        found = merchants.get(tx, merchant_id)
        if found is None:
            fail(f"unknown_merchant: no merchant {merchant_id}")
        stores = [
            str(r[0]) for r in tx.all("SELECT store_id FROM stores WHERE merchant_id = ? ORDER BY 1", [merchant_id])
        ]
        positions = ledger.positions(tx, merchant_id)
    print(json.dumps({**found.as_dict(), "stores": stores, "positions": positions}, indent=2))


@ledger_app.command("check")
def check(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Prove the balances: every transaction sums to zero, every member's balances are its accounts and
    its lots, every merchant's position is its lots. Exit status 1 names the first failure's code."""
    from hq import ledger

    with hq_store(db, create=False) as store, store.db.read() as tx:
        failures = ledger.check(tx)
    print(json.dumps({"ok": not failures, "failures": [f.as_dict() for f in failures[:100]], "count": len(failures)}))
    if failures:
        first = failures[0]
        fail(f"{first.code.value}: {first.subject} (ledger {first.expected}, found {first.found})")


@ledger_app.command("expire")
def expire(
    as_of: Annotated[
        str, typer.Option("--as-of", help="Expire the lots expired by the end of this day (UTC; not after today).")
    ],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Expire the points lots whose expiry has come: breakage of their issuing merchants. Prints JSON."""
    from hq import ledger

    day = as_day(as_of, not_after_today=True)  # expiry cannot be undone: never points still valid today
    with hq_store(db) as store, store.db.write() as tx:
        done = ledger.expire(tx, ledger.end_of(day))
    rows = [{"member_id": e.member_id, "points": e.points, "by_merchant": e.by_merchant} for e in done]
    print(
        json.dumps(
            {"as_of": day.isoformat(), "members": len(rows), "points": sum(e.points for e in done), "expired": rows}
        )
    )
