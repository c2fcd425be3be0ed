"""`tillpoint hq ...`: stores and the business day each one's entries are filed by."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, print_rows
from terminal.console import JsonOpt

app = typer.Typer()


@app.command("store")
def store_calendar(
    store_id: str,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone, e.g. Asia/Tokyo.")] = None,
    day_starts: Annotated[
        str | None,
        typer.Option(help="When the business day starts (HH:MM); left out: the store's (a new store: 00:00)."),
    ] = None,
    merchant: Annotated[str | None, typer.Option(help="Give the store to this merchant (hq merchant add).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Show a store's business day, or set its time zone and cut-off (new entries are filed by it), or
    give it to a merchant (its new entries are that merchant's). Prints JSON."""
    from hq import merchants
    from hq.businessday import BadCalendar

    with hq_store(db) as store:
        if merchant is not None:
            try:
                with store.db.write() as tx:
                    merchants.assign_store(tx, store_id, merchant, timezone or store.settings.timezone)
            except merchants.MerchantError as exc:
                fail(f"{exc.code}: {exc}")
            if timezone is None and day_starts is None:
                print(json.dumps({"store_id": store_id, "merchant_id": merchant}))
                return
        found = [s for s in store.stores() if s["store_id"] == store_id]
        if timezone is None and day_starts is None:
            if not found:
                fail(f"no store {store_id}: give --timezone to set one up")
            print(json.dumps(found[0]))
            return
        if timezone is None:  # a new cut-off only: the store keeps its time zone
            if not found:
                fail(f"no store {store_id}: give --timezone to set one up")
            timezone = str(found[0]["timezone"])
        if day_starts is None:  # a new time zone only: the store keeps its cut-off
            day_starts = str(found[0]["day_starts"]) if found else "00:00"
        try:
            print(json.dumps(store.set_store(store_id, timezone, day_starts)))
        except BadCalendar as exc:
            fail(exc)


@app.command("stores")
def stores(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every store and the business day its entries are filed by."""
    with hq_store(db, create=False) as store:
        rows = store.stores()
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(list(rows), ["store_id", "timezone", "day_starts", "updated_at"])
