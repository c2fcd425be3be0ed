"""`tillpoint hq ...`: members and cards: block or unblock one, erase a member, its wallet contacts."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, console, fail, hq_store
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


@app.command("profile")
def profile(
    member_id: str,
    birthday: Annotated[str | None, typer.Option(help="YYYY-MM-DD ('' removes it).")] = None,
    attr: Annotated[list[str] | None, typer.Option("--attr", help="NAME=VALUE (NAME= removes it); repeat.")] = None,
    consent: Annotated[list[str] | None, typer.Option(help="CHANNEL:VERSION given now, e.g. marketing:v2.")] = None,
    withdraw_consent: Annotated[list[str] | None, typer.Option(help="CHANNEL whose consent is withdrawn.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Show a member's profile, or change it: birthday, the attributes the chain collects, marketing
    consent. Prints JSON."""
    from hq.profiles import ProfileChange, ProfileRefused, parse_attribute, parse_consent

    with hq_store(db) as store:
        try:
            if birthday is None and not attr and not consent and not withdraw_consent:
                done = store.profile(member_id)
            else:
                change = ProfileChange(
                    birthday=birthday or None,
                    clear_birthday=birthday == "",
                    attributes=dict(parse_attribute(a) for a in attr or []),
                    consents=tuple(parse_consent(c) for c in consent or []),
                    withdraw=tuple(withdraw_consent or []),
                )
                done = store.update_profile(member_id, change)
        except ProfileRefused as exc:
            fail(f"{exc.code}: {exc}")
    print(json.dumps(done))


@app.command("attribute")
def attribute(
    name: str,
    label: Annotated[str, typer.Option(help="What the join page calls it.")],
    allowed: Annotated[str | None, typer.Option(help="The allowed values, comma separated.")] = None,
    pattern: Annotated[str | None, typer.Option(help="A pattern a value matches whole.")] = None,
    staff_only: Annotated[
        bool | None,
        typer.Option(
            "--staff-only/--members-set",
            help="Set by staff only (not on the join page, refused from members), or given by members; "
            "neither: as the attribute is now (a new one: given by members).",
        ),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Configure an attribute the chain collects on member profiles (allowed values or a pattern).
    Prints JSON: every attribute."""
    from hq.profiles import AttributeRule, ProfileRefused

    values = tuple(v.strip() for v in (allowed or "").split(",") if v.strip())
    with hq_store(db) as store:
        if staff_only is None:  # a change of its label or values keeps who sets it
            held = {str(r["name"]): bool(r["members_set"]) for r in store.attribute_rules()}
            staff_only = not held.get(name, True)
        rule = AttributeRule(name, label, values, pattern, members_set=not staff_only)
        try:
            store.set_attribute_rule(rule)
        except ProfileRefused as exc:
            fail(f"{exc.code}: {exc}")
        print(json.dumps(store.attribute_rules()))


stats_app = typer.Typer(help="Member statistics kept at ingest: rebuild them from the journal, show a member's.")
app.add_typer(stats_app, name="stats")


@stats_app.command("rebuild")
def stats_rebuild(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Compute every member statistic again from the journal, in one transaction. Prints the rows per table."""
    with hq_store(db) as store:
        done = store.rebuild_stats()
    if as_json:
        print(json.dumps(done))
    else:
        console.print(" ".join(f"{table}={count}" for table, count in done.items()))


@stats_app.command("roll")
def stats_roll(
    to: Annotated[
        str | None, typer.Option(help="The business day to roll to (YYYY-MM-DD; default: today in UTC).")
    ] = None,
    back: Annotated[bool, typer.Option(help="Build them as of an earlier day (after a clock that ran ahead).")] = False,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Roll each member's windows (visits and spend over 30, 60, 90, 180, 365 days) to a business day: head
    office's timer and each campaign run do it; segments on that day read them. A build (the first time, over
    14 days, back) runs a chunk of members a transaction, and one a stopped process left is finished."""
    try:
        day = date.fromisoformat(to) if to is not None else None
    except ValueError as exc:
        fail(f"--to {to!r} is not a day (YYYY-MM-DD): {exc}")
    with hq_store(db) as store:
        asked = day or store.moment().date()
        got = store.roll_windows(asked, back=back)
    if as_json:
        print(json.dumps(got))
        return
    console.print(f"windows as of {got['as_of']} (moved {got['days']} {'day' if got['days'] == 1 else 'days'})")
    if got["as_of"] is not None and got["as_of"] > asked.isoformat():
        from hq.stats import ahead_hint

        console.print(ahead_hint(date.fromisoformat(got["as_of"]), asked))


@stats_app.command("show")
def stats_show(
    member_id: str,
    as_of: Annotated[str | None, typer.Option(help="The business day windows end on (default: today).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """A member's statistics: last visit, visits and spend over 30/90/365 days, by category, stores,
    average basket, coupons redeemed."""
    from hq.profiles import ProfileRefused

    with hq_store(db, create=False) as store:
        try:
            got = store.member_stats(member_id, as_of).as_dict()
        except ValueError as exc:
            fail(f"--as-of {as_of!r} is not a day (YYYY-MM-DD): {exc}")
        except ProfileRefused as exc:
            fail(f"{exc.code}: {exc}")
    if as_json:
        print(json.dumps(got))
        return
    for key, value in got.items():
        console.print(f"{key:22} {value}")


@app.command("contact")
def contact(
    member_id: str,
    email: Annotated[str | None, typer.Option(help="The member's email address (wallet sign-in codes).")] = None,
    phone: Annotated[str | None, typer.Option(help="The member's phone number: + country code and number.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Set (or with no option, show) the member's contacts for wallet sign-in; a contact another member
    has moves to this one (docs/wallet.md). Prints JSON."""
    import time

    from hq.db.engine import Tx
    from hq.wallet import signin

    with hq_store(db) as store:
        if store.member(member_id) is None:
            fail(f"no member {member_id}")
        try:
            wanted = [signin.contact_of(text) for text in (email, phone) if text]
        except signin.WalletRefused as exc:
            fail(f"{exc.code.value}: {exc}")
        now = int(time.time())

        def save(tx: Tx) -> dict[str, str]:
            return signin.give_contacts(tx, member_id, wanted, "command line", "", now)

        print(json.dumps({"member_id": member_id, **store.db.transact(save)}))
