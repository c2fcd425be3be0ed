"""`tillpoint hq ...`: entries the trust rules hold in quarantine: list them, release or reject one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, console, fail, hq_store, print_rows
from terminal.console import JsonOpt, show_json

if TYPE_CHECKING:
    from hq.store import HqStore

app = typer.Typer()


def _decide(decision: Callable[[HqStore], str], db: str, txn_id: str = "", as_json: bool = False) -> None:
    from hq.quarantine import NotQuarantined

    with hq_store(db) as store:
        try:
            effect = decision(store)
        except (NotQuarantined, ValueError) as exc:
            fail(exc)
    if as_json:
        show_json({"txn_id": txn_id, "now": effect})
    else:
        console.print(f"now {effect}")


@app.command("quarantine")
def quarantine(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Entries held in quarantine (stored, changing no balance) and the rules they broke."""
    with hq_store(db, create=False) as store:
        rows = store.quarantined()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_rows(rows, ["txn_id", "terminal_id", "seq", "kind", "member_id", "points", "stored_value", "reasons"])


@app.command("release")
def release(
    txn_id: str,
    by: Annotated[str, typer.Option(help="Who decides.")],
    note: Annotated[str, typer.Option(help="Why.")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Apply a quarantined entry now: its points and stored value go to the member."""
    _decide(lambda store: store.release(txn_id, by, note), db, txn_id, as_json)


@app.command("reject")
def reject(
    txn_id: str,
    by: Annotated[str, typer.Option(help="Who decides.")],
    note: Annotated[str, typer.Option(help="Why.")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Keep a quarantined entry from ever applying."""
    _decide(lambda store: store.reject(txn_id, by, note), db, txn_id, as_json)
