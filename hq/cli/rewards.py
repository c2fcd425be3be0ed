"""`tillpoint hq reward ...`: the rewards catalogue (docs/rewards.md): define a reward from a JSON document,
load a partner's codes, list the catalogue with what is left, a member's purchases, refund one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, print_rows
from terminal.console import JsonOpt

app = typer.Typer(name="reward", help="The rewards catalogue: put, codes, list, purchases, refund.")
By = Annotated[str, typer.Option(help="Who does it (kept in the audit log).")]


@app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="The reward's JSON document (docs/rewards.md).")],
    by: By = "admin",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Define or change a reward; the tills receive it with their next pull. Prints JSON."""
    from hq.rewards import RewardRefused

    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"reward_invalid: {file}: {exc}")
    if not isinstance(doc, dict):
        fail(f"reward_invalid: {file}: a JSON object")
    with hq_store(db) as store:
        try:
            print(json.dumps(store.put_reward(doc, by).doc()))
        except RewardRefused as exc:
            fail(f"{exc.code.value}: {exc}")


@app.command("codes")
def codes(
    reward_id: str,
    file: Annotated[Path, typer.Argument(help="The partner's codes, one a line.")],
    by: By = "admin",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Load a partner_code reward's codes (each handed out once); its stock becomes every code loaded."""
    from hq.rewards import RewardRefused

    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"reward_invalid: {file}: {exc}")
    with hq_store(db) as store:
        try:
            added = store.add_reward_codes(reward_id, lines, by)
        except RewardRefused as exc:
            fail(f"{exc.code.value}: {exc}")
    print(json.dumps({"reward_id": reward_id, "added": added, "read": len(lines)}))


@app.command("list")
def list_rewards(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """The catalogue: each reward's kind, points, title, and the units head office may still hand out."""
    with hq_store(db, create=False) as store:
        rows = [{**o.reward.doc(), "left": "-" if o.left is None else o.left} for o in store.reward_catalogue()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_rows(rows, ["reward_id", "reward", "points", "title", "active", "left"])


@app.command("purchases")
def purchases(member_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A member's reward purchases, newest first."""
    with hq_store(db, create=False) as store:
        rows = [p.as_dict() for p in store.reward_purchases(member_id)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_rows(rows, ["purchase_id", "reward_id", "points", "channel", "code", "created_at", "refunded_at"])


@app.command("refund")
def refund(purchase_id: str, by: By = "admin", db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Give a wallet purchase back: points to the member, the unit to the stock, the coupon withdrawn."""
    from hq.rewards import RewardRefused

    with hq_store(db) as store:
        try:
            print(json.dumps(store.refund_reward(purchase_id, by).as_dict()))
        except RewardRefused as exc:
            fail(f"{exc.code.value}: {exc}")
