"""`tillpoint hq pool ...`: flash-drop quantity pools (docs/loyalty.md): create one, show how much of it each
till holds and has redeemed, close it."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, print_rows
from terminal.console import JsonOpt

if TYPE_CHECKING:
    from hq.pools import PoolState

app = typer.Typer(name="pool", help="Flash-drop quantity pools: create, show, close.")


def _report(state: PoolState) -> dict[str, Any]:
    return {**asdict(state), "allocated": state.allocated, "allocations": [asdict(a) for a in state.allocations]}


@app.command("create")
def create(
    pool_id: str,
    quantity: Annotated[int, typer.Argument(help="How many times the drop may be redeemed, chain-wide.")],
    chunk: Annotated[int | None, typer.Option(help="Units a till is topped up by (default: docs/loyalty.md).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Create a pool, or change its quantity (never below what tills already hold). Prints JSON."""
    from hq.pools import PoolRefused

    with hq_store(db) as store:
        try:
            print(json.dumps(_report(store.create_pool(pool_id, quantity, chunk))))
        except PoolRefused as exc:
            fail(f"{exc.code.value}: {exc}")


@app.command("show")
def show(pool_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A pool's quantity, what is allocated and redeemed, and each till's allocation."""
    from hq.pools import PoolRefused

    with hq_store(db, create=False) as store:
        try:
            report = _report(store.pool_state(pool_id))
        except PoolRefused as exc:
            fail(exc)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"pool {pool_id}: quantity {report['quantity']}, chunk {report['chunk']}, allocated {report['allocated']}, "
        f"redeemed {report['used']}{' (closed)' if report['closed'] else ''}"
    )
    print_rows(report["allocations"], ["terminal_id", "allowed", "used"])


@app.command("close")
def close(pool_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """No more grants; every till drops its allocation at its next pull. Prints JSON."""
    with hq_store(db) as store:
        closed = store.close_pool(pool_id)
    if not closed:
        fail(f"no open pool {pool_id}")
    print(json.dumps({"pool_id": pool_id, "closed": True}))
