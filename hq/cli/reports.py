"""`tillpoint hq reports ...`: the report roll-up the back office's reports read (docs/reports.md)."""

from __future__ import annotations

import json

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store
from terminal.console import JsonOpt

app = typer.Typer()
reports_app = typer.Typer(name="reports", help="The report roll-up: check it, rebuild it.", no_args_is_help=True)
app.add_typer(reports_app)


@reports_app.command("check")
def check(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Compare the roll-up with the journal and the ledger it sums. Prints JSON; exit status 1 names the
    first figure that differs."""
    from hq import rollup

    with hq_store(db, create=False) as store, store.db.read() as tx:
        found = rollup.check(tx)
    rows = [
        {
            "day": d.key[0],
            "store": d.key[1],
            "terminal": d.key[2],
            "figure": d.key[3],
            "held": d.held,
            "rebuilt": d.rebuilt,
        }
        for d in found[:100]
    ]
    print(json.dumps({"ok": not found, "differences": rows, "count": len(found)}))
    if found:
        first = found[0]
        fail(
            f"rollup_differs: {first.key[3]} of {first.key[1] or 'head office'} on {first.key[0]} "
            f"(held {first.held}, rebuilt {first.rebuilt})"
        )


@reports_app.command("rebuild")
def rebuild(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Write the roll-up afresh from the journal and the ledger (after restoring a table by hand, say).
    Prints JSON."""
    from hq import rollup

    with hq_store(db) as store, store.db.write() as tx:
        rows = rollup.rebuild(tx)
    print(json.dumps({"rows": rows}))
