"""`tillpoint hq staff ...` and `tillpoint hq audit verify`: the back office's staff accounts and its audit
log (docs/backoffice.md). Passwords are read from the terminal (asked twice) or, with ``--password-stdin``,
as one line of standard input; never from the command line."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, print_rows
from terminal.console import JsonOpt

if TYPE_CHECKING:
    from collections.abc import Callable

    from hq.backoffice.staff import Staff
    from hq.db.engine import Tx

app = typer.Typer()
staff_app = typer.Typer(
    name="staff",
    help="Back-office staff accounts: add, list, disable, passwd, unlock, reset-2fa, enrol-2fa-code, require-2fa.",
    no_args_is_help=True,
)
audit_app = typer.Typer(name="audit", help="The back office's audit log: verify its hash chain.", no_args_is_help=True)
app.add_typer(staff_app)
app.add_typer(audit_app)
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="Read the password as one line of standard input.")]
ReasonOpt = Annotated[str, typer.Option(help="Why (kept in the audit log).")]
ACTOR = "command line"
"""Who the audit log names for a change made with these commands (whoever may run them on head office's host)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Again", hide_input=True) != first:
        fail("the two passwords differ")
    return str(first)


def _shown(who: Staff) -> dict[str, object]:
    return {
        "staff_id": who.staff_id,
        "name": who.name,
        "role": who.role.value,
        "stores": sorted(who.stores),
        "merchant": who.merchant_id,
        "disabled": who.disabled,
    }


def _audited(tx: Tx, who: Staff, action: str, reason: str, known: int | None = None) -> Staff:
    """``who`` after the change, recorded in the audit log in the change's transaction; ``known``: how many
    addresses it signed in from the change forgot (``details.known_sources``)."""
    from hq import audit

    details: dict[str, object] = {"role": who.role.value, "stores": sorted(who.stores), "merchant": who.merchant_id}
    if known is not None:
        details["known_sources"] = known
    audit.append(tx, ACTOR, action, who.staff_id, reason, details)
    return who


def _forgetting(tx: Tx, staff_id: str, change: Callable[[Tx, str], Staff], action: str, reason: str) -> Staff:
    """A change that forgets the addresses the account signed in from (``staff.forget_sources``: disabling
    it, resetting its password), audited with how many it forgot."""
    from hq.backoffice import staff

    known = staff.known_sources(tx, staff_id)
    return _audited(tx, change(tx, staff_id), action, reason, known)


@staff_app.command("add")
def add(
    staff_id: str,
    name: Annotated[str, typer.Option(help="The name people read.")],
    role: Annotated[
        str,
        typer.Option(
            help="chain_admin, marketing, store_manager, finance or auditor; "
            "for a merchant's staff merchant_admin, merchant_finance or store_manager."
        ),
    ],
    store: Annotated[
        list[str] | None, typer.Option("--store", help="A store manager's store (repeat for more).")
    ] = None,
    merchant: Annotated[
        str | None, typer.Option("--merchant", help="The merchant whose staff this is (none: the chain's own).")
    ] = None,
    password_stdin: StdinOpt = False,
    reason: ReasonOpt = "account opened",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Add a staff account. Prints JSON."""
    from hq.backoffice import staff
    from hq.backoffice.errors import BackofficeRefused

    password = _password(password_stdin)
    with hq_store(db) as hq:
        try:
            account = staff.check_account(staff_id, name, role, list(store or []), staff.merchant_of(merchant))
            made = hq.db.transact(lambda tx: _audited(tx, staff.add(tx, account, password), "staff_add", reason))
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps(_shown(made)))


@staff_app.command("list")
def listed(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Every staff account."""
    from hq.backoffice import staff

    with hq_store(db, create=False) as hq, hq.db.read() as tx:
        rows = [_shown(s) for s in staff.listed(tx)]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows, ["staff_id", "name", "role", "stores", "merchant", "disabled"])


@staff_app.command("disable")
def disable(
    staff_id: str, reason: ReasonOpt = "account closed", db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False
) -> None:
    """Stop an account from signing in; its sessions end at once. Prints JSON."""
    from hq.backoffice import staff
    from hq.backoffice.errors import BackofficeRefused

    with hq_store(db) as hq:
        try:
            done = hq.db.transact(lambda tx: _forgetting(tx, staff_id, staff.disable, "staff_disable", reason))
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps(_shown(done)))


@staff_app.command("unlock")
def unlock(staff_id: str, reason: ReasonOpt = "sign-in unlocked", db: DbOpt = DEFAULT_DB) -> None:
    """Let an account be tried again from every address: its failed sign-ins are forgotten. Prints JSON."""
    from hq import audit
    from hq.backoffice import staff
    from hq.backoffice.errors import BackofficeRefused

    def run(tx: Tx) -> int:
        forgotten = staff.unlock(tx, staff_id)
        audit.append(tx, ACTOR, "staff_unlock", staff_id, reason, {"failures": forgotten})
        return forgotten

    with hq_store(db) as hq:
        try:
            forgotten = hq.db.transact(run)
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps({"staff_id": staff_id, "failures": forgotten}))


@staff_app.command("passwd")
def passwd(
    staff_id: str, password_stdin: StdinOpt = False, reason: ReasonOpt = "password changed", db: DbOpt = DEFAULT_DB
) -> None:
    """Set an account's password; its sessions end and its failed sign-ins and the addresses it signed in from
    are forgotten."""
    from hq.backoffice import staff
    from hq.backoffice.errors import BackofficeRefused

    password = _password(password_stdin)
    with hq_store(db) as hq:
        try:
            hq.db.transact(
                lambda tx: _forgetting(
                    tx, staff_id, lambda tx, sid: staff.set_password(tx, sid, password), "staff_passwd", reason
                )
            )
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps({"staff_id": staff_id, "password": "changed"}))


@staff_app.command("reset-2fa")
def reset_2fa(staff_id: str, reason: ReasonOpt = "second factor reset", db: DbOpt = DEFAULT_DB) -> None:
    """Remove an account's second factor and recovery codes (a lost phone); its sessions end and its owner
    sets one up again at the next sign-in. Prints JSON."""
    from hq.backoffice import factors
    from hq.backoffice.errors import BackofficeRefused

    with hq_store(db) as hq:
        try:
            hq.db.transact(lambda tx: factors.reset(tx, ACTOR, staff_id, reason))
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps({"staff_id": staff_id, "second_factor": "reset"}))


@staff_app.command("enrol-2fa-code")
def enrol_2fa_code(staff_id: str, reason: ReasonOpt = "second factor enrolment", db: DbOpt = DEFAULT_DB) -> None:
    """Issue a one-time code its owner types to set up a second factor (a password alone cannot); it holds a
    day and replaces any earlier one. Prints JSON with the code, shown this once."""
    from hq.backoffice import factors
    from hq.backoffice.errors import BackofficeRefused

    with hq_store(db) as hq:
        try:
            code, expires = hq.db.transact(
                lambda tx: factors.issue_enrol_code(tx, ACTOR, staff_id, reason, int(time.time()))
            )
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps({"staff_id": staff_id, "enrol_code": code, "expires_at": expires}))


@staff_app.command("require-2fa")
def require_2fa(
    role: Annotated[
        list[str] | None, typer.Argument(help="Roles that must have one (none given: those moving money).")
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="No role must have one.")] = False,
    reason: ReasonOpt = "second factor policy",
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Set which roles must have a second factor: such an account without one reaches only the page that sets
    it up, right after its password. Prints JSON."""
    from hq.backoffice import factors
    from hq.backoffice.errors import BackofficeRefused

    with hq_store(db) as hq:
        try:
            roles = frozenset() if none else factors.roles_of(list(role or []))
            hq.db.transact(lambda tx: factors.set_policy(tx, ACTOR, roles, reason))
        except BackofficeRefused as exc:
            fail(exc)
    print(json.dumps({"roles": sorted(r.value for r in roles)}))


@audit_app.command("verify")
def verify(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Walk the audit log's hash chain: exit 0 and its head when it holds, else exit 1 naming the first
    broken record."""
    from hq import audit

    with hq_store(db, create=False) as hq:
        verdict = audit.verify(hq.db)
    shown = {
        "ok": verdict.ok,
        "records": verdict.records,
        "head": verdict.head,
        "broken": verdict.broken,
        "why": verdict.why,
    }
    if as_json:
        print(json.dumps(shown))
    elif verdict.ok:
        print(f"the audit chain holds: {verdict.records} records, head {verdict.head}")
    else:
        print(f"the audit chain is broken at record {verdict.broken}: {verdict.why}")
    if not verdict.ok:
        raise typer.Exit(1)
