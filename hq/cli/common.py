"""`tillpoint hq ...`: head-office administration, a thin shell over ``HqStore``.

``register(hq_app)`` adds these commands to the ``hq`` group of the ``tillpoint`` CLI:

    enrol-code TERMINAL --store-id S   a one-time code the till redeems for its own credential
    rotate TERMINAL --store-id S       a fresh enrolment code; the till's current token works until it is used
    revoke TERMINAL                    refuse the terminal's credential at once
    admin-token NAME                   a token for /v1/admin (reports, settling items)
    terminals                          every terminal: how far behind, last seen, clock offset
    report [--store-id] [--terminal-id] [--day-from] [--day-to] [--json | --csv]
    groups [--state open] ...          items by cause, terminal and business day, with counts (read this first)
    items [--reason R --day D ...]     reconciliation items one by one, a page at a time (--after CURSOR)
    summary                            open and settled items per cause
    settle ITEM --by NAME --note WHY   settle an item by hand
    settle-group --terminal-id T --day D --reason R --by NAME --note WHY   settle a whole group
    store STORE [--timezone TZ --day-starts HH:MM] / stores   each store's business day
    block|unblock member|card ID --by NAME --reason WHY   stop (or allow again) a member or a card
    quarantine / release TXN / reject TXN --by NAME --note WHY   entries held by the trust rules
    put-coupon FILE / put-rule FILE    store a coupon or earning-rule JSON document
    delete KIND ID                     delete a member, card, rule, rule_doc, coupon, key or revocation
    add-key PURPOSE / revoke-subject KIND SUBJECT   signing keys and the revocation list
    erase MEMBER [--by NAME]           erase a member (tombstones to tills, sales kept anonymised)

Every command that prints data takes ``--json`` (one JSON document on stdout); those that print JSON
anyway (block, store, erase, topup, devices) accept it too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hq.store import HqStore

UNBOUNDED = 10_000  # columns of output that is not a terminal: wide enough that nothing is ever cut


def make_console(stderr: bool = False) -> Console:
    """The CLI's console: a terminal's own width on a terminal; elsewhere (a pipe, a file, a log) as wide
    as the text, so that no id is cut and no line is wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNBOUNDED, soft_wrap=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> Table:
    """A table that never cuts a value: ids stay on one line (folded, whole, only on a terminal narrower
    than one id), other columns wrap."""
    shown = Table(title=title)
    for name in columns:
        shown.add_column(name, no_wrap=_is_id(name), overflow="fold")
    for row in rows:
        shown.add_row(*row)
    return shown


def _is_id(column: str) -> bool:
    return column.endswith("id") or column in ("card UID", "txn", "item", "day", "seq", "seqs")


def show_json(data: Any) -> None:
    """One JSON document on stdout: what every ``--json`` prints."""
    print(json.dumps(data, indent=2))


console = make_console()
DbOpt = Annotated[str, typer.Option("--db", help="Head-office database: a SQLite file or postgresql://...")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
DEFAULT_DB = "var/hq/hq.db"


def open_store(
    db: str,
    *,
    clock_skew: float = 300.0,
    timezone: str = "UTC",
    write_off_points: int = 0,
    write_off_stored_value: int = 0,
    sun_key_file: Path | None = None,
    card_key_file: Path | None = None,
    trust_pos: bool = False,
    backup: bool = True,
) -> HqStore:
    """Head office's store with its settings; the card keys let it verify SUN taps (docs/security.md)."""
    from hq.policy import CardKeys
    from hq.store import HqStore, Settings
    from terminal.credentials import card_uid_hash, parse_master_key

    sun = parse_master_key(sun_key_file.read_bytes()) if sun_key_file else None
    card_key = card_key_file.read_bytes() if card_key_file else None
    keys = CardKeys(sun, (lambda uid: card_uid_hash(card_key, uid)) if card_key else None)
    return HqStore(
        db,
        Settings(
            clock_skew=clock_skew,
            timezone=timezone,
            write_off_points=write_off_points,
            write_off_stored_value=write_off_stored_value,
            card_keys=keys,
            spend_needs_proof=not trust_pos,
        ),
        backup=backup,
    )


@contextmanager
def hq_store(db: str) -> Iterator[HqStore]:
    """The store for one command, closed however the command ends (a database this release cannot open,
    or whose upgrade backup failed, is said in one line)."""
    from hq.db.schema import BackupFailed, NewerSchema

    try:
        store = open_store(db)
    except (NewerSchema, BackupFailed) as exc:
        fail(f"cannot open head office's database: {exc}")
    try:
        yield store
    finally:
        store.close()


def fail(message: object) -> NoReturn:
    """A refused command: the reason in red, exit status 1."""
    console.print(f"[red]{message}[/]")
    raise typer.Exit(1)


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    console.print(table(columns, ([_cell(row.get(c)) for c in columns] for row in rows)))


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return "-" if value is None else str(value)


def _more(cursor: str | None) -> None:
    """Say that there is more, and how to read it (on stderr: stdout stays the page itself)."""
    if cursor is not None:
        typer.echo(f"more: run again with --after {cursor}", err=True)


def _block_command(hq_app: typer.Typer, blocked: bool) -> None:
    verb = "block" if blocked else "unblock"

    @hq_app.command(verb)
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


def register(hq_app: typer.Typer) -> None:
    @hq_app.command("enrol-code")
    def enrol_code(
        terminal_id: str,
        store_id: Annotated[str, typer.Option()] = "S-001",
        hours: float = 72.0,
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Print a one-time enrolment code for a terminal (valid HOURS; shown once)."""
        with hq_store(db) as store:
            code = store.enrol_code(terminal_id, store_id, hours)
        if as_json:
            show_json({"terminal_id": terminal_id, "store_id": store_id, "enrol_code": code, "valid_hours": hours})
        else:
            print(code)

    @hq_app.command("rotate")
    def rotate(
        terminal_id: str,
        store_id: Annotated[str, typer.Option()] = "S-001",
        hours: float = 72.0,
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Re-key a terminal: print a new enrolment code; its current credential works until the code is used."""
        enrol_code(terminal_id, store_id, hours, db, as_json)

    @hq_app.command("revoke")
    def revoke(terminal_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
        """Refuse a terminal's credential from now on (a new enrolment code lets it back in)."""
        with hq_store(db) as store:
            if not store.revoke_terminal(terminal_id):
                fail(f"no terminal {terminal_id}")
        if as_json:
            show_json({"terminal_id": terminal_id, "revoked": True})
        else:
            console.print(f"revoked {terminal_id}")

    @hq_app.command("admin-token")
    def admin_token(name: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
        """Print an administrator token for /v1/admin (shown once); NAME is who settles items."""
        with hq_store(db) as store:
            token = store.add_admin(name)
        if as_json:
            show_json({"name": name, "token": token})
        else:
            print(token)

    @hq_app.command("terminals")
    def terminals(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """The fleet: each till's version, readers, backlog, clock offset, free disk, last error, uptime."""
        with hq_store(db) as store:
            rows = store.fleet()
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        for row in rows:
            row["readers"] = ", ".join(f"{r['name']}: {r['state']}" for r in row["readers"]) or None
        _print_rows(
            rows,
            [
                "terminal_id",
                "store_id",
                "version",
                "pending",
                "backlog_seconds",
                "silent_seconds",
                "clock_offset",
                "free_disk_bytes",
                "readers",
                "last_error",
                "uptime_seconds",
                "revoked",
            ],
        )

    @hq_app.command("quarantine")
    def quarantine(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Entries held in quarantine (stored, changing no balance) and the rules they broke."""
        with hq_store(db) as store:
            rows = store.quarantined()
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        _print_rows(rows, ["txn_id", "terminal_id", "seq", "kind", "member_id", "points", "stored_value", "reasons"])

    @hq_app.command("release")
    def release(
        txn_id: str,
        by: Annotated[str, typer.Option(help="Who decides.")],
        note: Annotated[str, typer.Option(help="Why.")],
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Apply a quarantined entry now: its points and stored value go to the member."""
        _decide(lambda store: store.release(txn_id, by, note), db, txn_id, as_json)

    @hq_app.command("reject")
    def reject(
        txn_id: str,
        by: Annotated[str, typer.Option(help="Who decides.")],
        note: Annotated[str, typer.Option(help="Why.")],
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Keep a quarantined entry from ever applying."""
        _decide(lambda store: store.reject(txn_id, by, note), db, txn_id, as_json)

    @hq_app.command("report")
    def report(
        db: DbOpt = DEFAULT_DB,
        store_id: str | None = None,
        terminal_id: str | None = None,
        day_from: str | None = None,
        day_to: str | None = None,
        as_json: JsonOpt = False,
        as_csv: Annotated[
            bool, typer.Option("--csv", help="Print CSV (for a spreadsheet) instead of a table.")
        ] = False,
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
        with hq_store(db) as store:
            rows = store.report(store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)
        if as_json:
            show_json(rows)
        elif as_csv:
            print(report_csv(rows), end="")
        else:
            _print_rows(rows, list(REPORT_COLUMNS))

    @hq_app.command("items")
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

        with hq_store(db) as store:
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
            _print_rows(
                found, ["item_id", "terminal_id", "day", "seq", "reason", "state", "detail", "settled_by", "note"]
            )
        _more(cursor)

    @hq_app.command("groups")
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

        with hq_store(db) as store:
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
            _print_rows(rows, ["store_id", "terminal_id", "day", "reason", "state", "count", "quarantined"])
        _more(page.next_cursor)

    @hq_app.command("summary")
    def summary(
        db: DbOpt = DEFAULT_DB,
        store_id: str | None = None,
        day_from: str | None = None,
        day_to: str | None = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """How many items are open per cause (and of those held in quarantine), settled automatically, by hand."""
        with hq_store(db) as store:
            found = store.item_summary(store_id=store_id, day_from=day_from, day_to=day_to)
        if as_json:
            print(json.dumps(found, indent=2))
            return
        _print_rows(
            [{"reason": k, **v} for k, v in found.items()],
            ["reason", "open", "quarantined", "settled_auto", "settled_manual"],
        )

    @hq_app.command("settle-group")
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

    @hq_app.command("store")
    def store_calendar(
        store_id: str,
        timezone: Annotated[str | None, typer.Option(help="IANA time zone, e.g. Asia/Tokyo.")] = None,
        day_starts: Annotated[str, typer.Option(help="When the business day starts (HH:MM).")] = "00:00",
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a store's business day, or set its time zone and cut-off (new entries are filed by it).
        Prints JSON."""
        from hq.businessday import BadCalendar

        with hq_store(db) as store:
            if timezone is None:
                found = [s for s in store.stores() if s["store_id"] == store_id]
                if not found:
                    fail(f"no store {store_id}: give --timezone to set one up")
                print(json.dumps(found[0]))
                return
            try:
                print(json.dumps(store.set_store(store_id, timezone, day_starts)))
            except BadCalendar as exc:
                fail(exc)

    @hq_app.command("stores")
    def stores(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Every store and the business day its entries are filed by."""
        with hq_store(db) as store:
            rows = store.stores()
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            _print_rows(list(rows), ["store_id", "timezone", "day_starts", "updated_at"])

    for blocked in (True, False):
        _block_command(hq_app, blocked)

    @hq_app.command("settle")
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

    @hq_app.command("put-coupon")
    def put_coupon(file: Path, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
        """Store a coupon JSON document (its coupon_id, member_id for personal ones, limits); print its id."""
        with hq_store(db) as store:
            coupon_id = store.put_coupon(json.loads(file.read_text(encoding="utf-8")))
        if as_json:
            show_json({"coupon_id": coupon_id})
        else:
            print(coupon_id)

    @hq_app.command("put-rule")
    def put_rule(file: Path, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
        """Store an earning-rule JSON document (its rule_id); print its id."""
        with hq_store(db) as store:
            rule_id = store.put_rule_doc(json.loads(file.read_text(encoding="utf-8")))
        if as_json:
            show_json({"rule_id": rule_id})
        else:
            print(rule_id)

    @hq_app.command("delete")
    def delete(kind: str, item_id: str, db: DbOpt = DEFAULT_DB) -> None:
        """Delete a member, card, rule, rule_doc, coupon, key or revocation (tills get a tombstone)."""
        with hq_store(db) as store:
            if not store.delete(kind, item_id):
                fail(f"no live {kind} {item_id}")

    @hq_app.command("add-key")
    def add_key(purpose: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
        """Make an Ed25519 signing key for PURPOSE (qr, payment_code, ...); tills get its public half. Prints its id."""
        with hq_store(db) as store:
            key_id = store.create_signing_key(purpose)
        if as_json:
            show_json({"purpose": purpose, "key_id": key_id})
        else:
            print(key_id)

    @hq_app.command("revoke-subject")
    def revoke_subject(
        kind: str, subject: str, reason: str = "", db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False
    ) -> None:
        """Put KIND:SUBJECT (a card hash, a key id, a payment device...) on the signed revocation list."""
        with hq_store(db) as store:
            revocation_id = store.revoke(kind, subject, reason)
        if as_json:
            show_json({"revocation_id": revocation_id})
        else:
            print(revocation_id)

    @hq_app.command("erase")
    def erase(
        member_id: str,
        by: Annotated[str, typer.Option(help="Who asked for it.")] = "head office",
        db: DbOpt = DEFAULT_DB,
        as_json: JsonOpt = False,
    ) -> None:
        """Erase a member: its cards and personal coupons go, its sales stay anonymised; tills get tombstones.
        Prints JSON."""
        from hq.api.join import erase_member
        from hq.members import UnknownMember

        with hq_store(db) as store:
            try:
                done = erase_member(store, member_id, by)
            except UnknownMember as exc:
                fail(exc)
        print(json.dumps({"member_id": member_id, **done}))

    from hq.cli.payments import register as register_payments

    register_payments(hq_app)
