"""`tillpoint hq giftcard ...`: gift cards (docs/giftcards.md): show a card and its activity, list the cards,
unblock, clear, attach to and detach from a member's wallet, import a card of an earlier system, and the chain's expiry and dormancy terms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, ByOpt, DbOpt, as_day, card_hash, fail, hq_store, print_rows
from terminal.console import JsonOpt

app = typer.Typer(name="giftcard", help="Gift cards: show, list, unblock, clear, attach, detach, import, terms.")

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept with the card's activity and in the audit log).")]


@app.command("show")
def show(card_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A gift card (G-...): its state, balance, expiry and every activity of it. Prints JSON."""
    from hq.errors import Refused

    with hq_store(db, create=False) as store:
        try:
            shown = store.gift_card(card_id)
        except Refused as exc:
            fail(exc)
    print(json.dumps(shown, indent=2))


@app.command("list")
def listing(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Every gift card: id, state, balance, expiry, last used."""
    with hq_store(db, create=False) as store:
        rows = store.gift_cards()
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows, ["card_id", "state", "balance", "expires_on", "last_used_on"])


@app.command("unblock")
def unblock(card_id: str, by: ByOpt, reason: ReasonOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Make a blocked gift card usable again (every till learns it with its next pull). Prints JSON."""
    from hq.errors import Refused

    with hq_store(db) as store:
        try:
            card = store.unblock_gift_card(card_id, by, reason)
        except Refused as exc:
            fail(exc)
    print(json.dumps(card.to_doc()))


@app.command("clear")
def clear(card_id: str, by: ByOpt, reason: ReasonOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Take a gift card's balance to zero (expired value, a card retired); it may be sold again. Prints JSON."""
    from hq.errors import Refused

    with hq_store(db) as store:
        try:
            card = store.clear_gift_card(card_id, by, reason)
        except Refused as exc:
            fail(exc)
    print(json.dumps(card.to_doc()))


@app.command("attach")
def attach(
    card_id: str, member_id: str, by: ByOpt, reason: ReasonOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False
) -> None:
    """Keep a gift card staff saw in a member's wallet (a FeliCa Lite-S card; an NTAG 424 DNA card's holder
    taps it with their phone). Prints JSON."""
    from hq.errors import Refused

    with hq_store(db) as store:
        try:
            card = store.attach_gift_card(card_id, member_id, by, reason)
        except Refused as exc:
            fail(exc)
    print(json.dumps({**card.to_doc(), "holder": member_id}))


@app.command("detach")
def detach(card_id: str, by: ByOpt, reason: ReasonOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Take a gift card out of the member's wallet that holds it (it keeps its value). Prints JSON."""
    from hq.errors import Refused

    with hq_store(db) as store:
        try:
            member_id = store.detach_gift_card(card_id, by, reason)
        except Refused as exc:
            fail(exc)
    print(json.dumps({"card_id": card_id, "detached_from": member_id}))


@app.command("expire")
def expire(
    as_of: Annotated[str, typer.Option("--as-of", help="Clear the value expired before this day (UTC).")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Clear the value of every gift card past its expiry (the server's timer does it too). Prints JSON."""
    from hq import giftcards

    day = as_day(as_of, not_after_today=True)  # clearing cannot be undone: never value still valid today
    with hq_store(db) as store, store.db.write() as tx:
        done = giftcards.expire(tx, day, store.now())
    print(json.dumps({"as_of": day.isoformat(), "cleared": [c.to_doc() for c in done]}))


@app.command("import")
def import_card(
    card: Annotated[
        str,
        typer.Argument(
            metavar="CARD",
            help="The card's keyed hash (64 hex digits), or with --card-key-file its hex UID (hashed as hq add-card does).",
        ),
    ],
    amount: Annotated[int, typer.Argument(help="The balance the earlier system held, in minor units.")],
    by: ByOpt,
    source: Annotated[str, typer.Option(help="The earlier system's reference for the card.")] = "",
    card_key_file: Annotated[
        Path | None, typer.Option(help="The chain's card-hash key: CARD is then the card's hex UID.")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Bring in a card of an earlier system with its balance (``gift_import``). Prints JSON."""
    from hq.errors import Refused

    uid_hash = card if card_key_file is None else card_hash(card, card_key_file)
    with hq_store(db) as store:
        try:
            imported = store.import_gift_card(uid_hash, amount, by, source)
        except Refused as exc:
            fail(exc)
    print(json.dumps(imported.to_doc()))


@app.command("terms")
def terms(
    expiry_days: Annotated[
        int | None, typer.Option(help="Days value stays usable after the card was last sold or loaded (0: no expiry).")
    ] = None,
    dormant_days: Annotated[
        int | None, typer.Option(help="Days unused after which a card pays only while head office answers (0: never).")
    ] = None,
    by: Annotated[str, typer.Option(help="Who sets them.")] = "admin",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Show the chain's gift card terms, or set them (both are kept when one is given). Prints JSON."""
    from hq.errors import Refused
    from terminal.giftcards import Terms

    with hq_store(db) as store:
        held = store.gift_terms()
        if expiry_days is not None or dormant_days is not None:
            wanted = Terms(
                held.expiry_days if expiry_days is None else expiry_days,
                held.dormant_days if dormant_days is None else dormant_days,
            )
            try:
                store.put_gift_terms(wanted, by)
            except Refused as exc:
                fail(exc)
            held = store.gift_terms()
    print(json.dumps(held.model_dump()))
