"""`tillpoint hq ...`: terminals and their credentials: enrolment codes, rotation, revocation, administrator tokens, the fleet,
and which tills may sell top-ups (``till-topups``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, StoreOpt, console, fail, hq_store, print_rows, terminal_store
from terminal.console import JsonOpt, show_json

app = typer.Typer()


MAX_ENROL_HOURS = 24 * 366
"""The longest an enrolment code may stay valid: a year (a code never used is a way in while it lives)."""


@app.command("enrol-code")
def enrol_code(
    terminal_id: str,
    store_id: StoreOpt = None,
    hours: float = 72.0,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Print a one-time enrolment code for a terminal (valid HOURS; shown once)."""
    if not 0 < hours <= MAX_ENROL_HOURS:  # NaN too
        fail(f"invalid_request: --hours {hours}: a code is valid for more than 0 and at most {MAX_ENROL_HOURS} hours")
    with hq_store(db) as store:
        store_id = terminal_store(store, terminal_id, store_id)
        code = store.enrol_code(terminal_id, store_id, hours)
    if as_json:
        show_json({"terminal_id": terminal_id, "store_id": store_id, "enrol_code": code, "valid_hours": hours})
    else:
        print(code)


@app.command("rotate")
def rotate(
    terminal_id: str,
    store_id: StoreOpt = None,
    hours: float = 72.0,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Re-key a terminal: print a new enrolment code; its current credential works until the code is used."""
    enrol_code(terminal_id, store_id, hours, db, as_json)


@app.command("revoke")
def revoke(
    terminal_id: str,
    by: Annotated[str, typer.Option("--by", help="Who revokes it (the audit log names them).")] = "cli",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Refuse a terminal's credential from now on (a new enrolment code lets it back in); the members its
    contested enrolments held spend again, unless another terminal's contest holds them too (audited)."""
    with hq_store(db) as store:
        if not store.revoke_terminal(terminal_id, by):
            fail(f"no terminal {terminal_id}")
    if as_json:
        show_json({"terminal_id": terminal_id, "revoked": True})
    else:
        console.print(f"revoked {terminal_id}")


@app.command("admin-token")
def admin_token(name: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Print an administrator token for /v1/admin (shown once); NAME is who settles items."""
    with hq_store(db) as store:
        token = store.add_admin(name)
    if as_json:
        show_json({"name": name, "token": token})
    else:
        print(token)


@app.command("terminals")
def terminals(db: DbOpt = DEFAULT_DB, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The fleet: each till's version, readers, backlog, clock offset, free disk, last error, uptime."""
    with hq_store(db, create=False) as store:
        rows = store.fleet()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["readers"] = ", ".join(f"{r['name']}: {r['state']}" for r in row["readers"]) or None
    print_rows(
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


@app.command("till-topups")
def till_topups(
    terminal_id: str,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Let this till sell top-ups, or stop it.")
    ] = None,
    per_transaction: Annotated[int | None, typer.Option(help="Most one top-up may be (minor units).")] = None,
    per_day: Annotated[int | None, typer.Option(help="Most this till may sell in one business day.")] = None,
    per_member_day: Annotated[
        int | None, typer.Option(help="Most one member may top up here in one business day.")
    ] = None,
    offline_total: Annotated[
        int | None, typer.Option(help="Most taken offline until head office acknowledges it (0: none).")
    ] = None,
    by: Annotated[str, typer.Option(help="Who sets it.")] = "admin",
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Show or set a till's top-up policy (it reaches the till with its next pull); prints it as JSON."""
    from hq.errors import Refused
    from terminal.topups import TopupPolicy

    with hq_store(db, create=False) as store:
        try:
            shown = store.topup_policy_doc(terminal_id)  # not_found for a terminal head office does not hold
            if (enable, per_transaction, per_day, per_member_day, offline_total) != (None,) * 5:
                held = store.topup_policy(terminal_id)
                wanted = TopupPolicy(
                    held.enabled if enable is None else enable,
                    _or(per_transaction, held.per_transaction),
                    _or(per_day, held.per_day),
                    _or(per_member_day, held.per_member_day),
                    _or(offline_total, held.offline_total),
                )
                store.put_topup_policy(terminal_id, wanted, by)
                shown = store.topup_policy_doc(terminal_id)
        except Refused as exc:
            fail(exc)
    show_json({"terminal_id": terminal_id, **shown})


def _or(given: int | None, held: int) -> int:
    return held if given is None else given
