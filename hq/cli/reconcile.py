"""`tillpoint hq ...`: reconciliation: the report, items one by one and by group, their summary, settling by hand,
the sales read from a POS's printed receipt."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, console, fail, hq_store, more, print_rows
from terminal.console import JsonOpt, show_json

app = typer.Typer()


@app.command("report")
def report(
    db: DbOpt = DEFAULT_DB,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (for a spreadsheet) instead of a table.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", hidden=True, help="Deprecated: --json or --csv.")] = None,
) -> None:
    """Reconciliation by store, terminal and day: entries, sums, open and settled items, end of day."""
    from hq.reconcile import REPORT_COLUMNS, report_csv

    if fmt is not None:  # the old spelling still works, and says what replaces it
        if fmt not in ("table", "json", "csv"):
            fail(f"--format takes table, json or csv (use --json or --csv), not {fmt!r}")
        typer.echo(f"--format is deprecated: use {'--' + fmt if fmt != 'table' else 'no option'}", err=True)
        as_json, as_csv = as_json or fmt == "json", as_csv or fmt == "csv"
    if as_json and as_csv:
        fail("--json or --csv, not both")
    with hq_store(db, create=False) as store:
        rows = store.report(store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)
    if as_json:
        show_json(rows)
    elif as_csv:
        print(report_csv(rows), end="")
    else:
        print_rows(rows, list(REPORT_COLUMNS))


@app.command("items")
def items(
    db: DbOpt = DEFAULT_DB,
    state: str | None = None,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day: str | None = None,
    reason: str | None = None,
    after: Annotated[str | None, typer.Option(help="The cursor a previous page printed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reconciliation items one by one, oldest first, a page at a time (state: open, settled_auto,
    settled_manual). `hq groups` shows them by cause, terminal and day first."""
    from hq.reconcile import BadCursor

    with hq_store(db, create=False) as store:
        try:
            page, cursor = store.item_page(
                after=after,
                limit=limit,
                state=state,
                store_id=store_id,
                terminal_id=terminal_id,
                day=day,
                reason=reason,
            )
        except BadCursor as exc:
            fail(exc)
    found = [i.model_dump(mode="json") for i in page]
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        print_rows(found, ["item_id", "terminal_id", "day", "seq", "reason", "state", "detail", "settled_by", "note"])
    more(cursor)


@app.command("groups")
def groups(
    db: DbOpt = DEFAULT_DB,
    state: str | None = "open",
    store_id: str | None = None,
    terminal_id: str | None = None,
    day: str | None = None,
    reason: str | None = None,
    after: Annotated[str | None, typer.Option(help="The cursor a previous page printed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Items grouped: one row per cause, terminal and business day with its count (newest day first;
    open ones unless --state says otherwise). Expand one with `hq items --terminal-id T --day D --reason R`."""
    from hq.reconcile import BadCursor

    with hq_store(db, create=False) as store:
        try:
            page = store.item_groups(
                after=after,
                limit=limit,
                state=state or None,
                store_id=store_id,
                terminal_id=terminal_id,
                day=day,
                reason=reason,
            )
        except BadCursor as exc:
            fail(exc)
    rows = [g.model_dump(mode="json") for g in page.groups]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows, ["store_id", "terminal_id", "day", "reason", "state", "count", "quarantined"])
    more(page.next_cursor)


@app.command("summary")
def summary(
    db: DbOpt = DEFAULT_DB,
    store_id: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """How many items are open per cause (and of those held in quarantine), settled automatically, by hand."""
    with hq_store(db, create=False) as store:
        found = store.item_summary(store_id=store_id, day_from=day_from, day_to=day_to)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    print_rows(
        [{"reason": k, **v} for k, v in found.items()],
        ["reason", "open", "quarantined", "settled_auto", "settled_manual"],
    )


@app.command("settle-group")
def settle_group(
    terminal_id: Annotated[str, typer.Option()],
    day: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()],
    by: Annotated[str, typer.Option(help="Who settles it.")],
    note: Annotated[str, typer.Option(help="Why, and how it was settled.")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Settle by hand every open item of one group (those holding an entry in quarantine are released or
    rejected one by one)."""
    with hq_store(db) as store:
        try:
            n = store.settle_group(terminal_id, day, reason, by, note)
        except ValueError as exc:
            fail(exc)
    if as_json:
        show_json({"terminal_id": terminal_id, "day": day, "reason": reason, "settled": n})
    else:
        console.print(f"settled {n} item(s) of {reason} at {terminal_id} on {day}")


@app.command("settle")
def settle(
    item_id: str,
    by: Annotated[str, typer.Option(help="Who settles it.")],
    note: Annotated[str, typer.Option(help="Why, and how it was settled.")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Settle a reconciliation item by hand."""
    from hq.reconcile import UnknownItem

    with hq_store(db) as store:
        try:
            item = store.settle(item_id, by, note)
        except (UnknownItem, ValueError) as exc:
            fail(exc)
    if as_json:
        show_json(item.model_dump(mode="json"))
    else:
        console.print(f"{item.item_id}: {item.state.value} by {item.settled_by}: {item.note}")


@app.command("receipt")
def receipt(
    db: DbOpt = DEFAULT_DB,
    digest: Annotated[
        str | None, typer.Option(help="The receipt's sha256 digest, or 8 or more of its first digits.")
    ] = None,
    number: Annotated[str | None, typer.Option(help="The receipt number the POS printed.")] = None,
    store_id: str | None = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The sales read from a POS's printed receipt, by its digest and/or printed number, first received
    first (`sold_twice`: a `receipt_sold_twice` item was raised on it)."""
    with hq_store(db) as store:
        try:
            found = store.receipt_sales(digest=digest, number=number, store_id=store_id, limit=limit)
        except ValueError as exc:
            fail(exc)
    rows = [r.model_dump(mode="json") for r in found]
    if as_json:
        show_json(rows)
        return
    print_rows(
        rows,
        [
            "receipt_number",
            "pos_id",
            "store_id",
            "terminal_id",
            "seq",
            "day",
            "txn_id",
            "total",
            "effect",
            "sold_twice",
        ],
    )
