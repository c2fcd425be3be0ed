"""`tillpoint hq ...`: members and cards: block or unblock one, erase a member."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store
from terminal.console import JsonOpt

app = typer.Typer()


def _block_command(blocked: bool) -> None:
    verb = "block" if blocked else "unblock"

    @app.command(verb)
    def change(
        kind: Annotated[str, typer.Argument(help="member or card")],
        subject: Annotated[str, typer.Argument(help="The member id, or the card's keyed hash.")],
        by: Annotated[str, typer.Option(help="Who decides.")],
        reason: Annotated[str, typer.Option(help="Why.")],
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        if kind not in ("member", "card"):
            fail(f"{verb} a member or a card, not {kind!r}")
        with hq_store(db) as store:
            try:
                done = store.set_blocked(kind, subject, blocked, by, reason)
            except (LookupError, ValueError) as exc:
                fail(exc)
        print(json.dumps(done))  # JSON either way (--json is accepted, as everywhere)

    change.__doc__ = (
        f"{verb.capitalize()} a member or a card: tills pull it; head office checks entries against "
        "the time it was blocked by its own clock. Who and why are kept. Prints JSON."
    )


for _blocked in (True, False):
    _block_command(_blocked)


@app.command("erase")
def erase(
    member_id: str,
    by: Annotated[str, typer.Option(help="Who asked for it.")] = "head office",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Erase a member: its cards and personal coupons go, its sales stay anonymised; tills get tombstones.
    Prints JSON."""
    from hq.erasure import erase_member
    from hq.members import UnknownMember

    with hq_store(db) as store:
        try:
            done = erase_member(store, member_id, by)
        except UnknownMember as exc:
            fail(exc)
    print(json.dumps({"member_id": member_id, **done}))
