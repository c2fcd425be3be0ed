"""`tillpoint hq ...` commands for member payments (the ``payments`` area of ``hq.cli``):

topup MEMBER AMOUNT [--by NAME] [--note WHY] [--topup-id ID]   add stored value (minor units)
member-token MEMBER                 a member app token (device registration, balance); shown once
devices [MEMBER]                    device certificates and whether they are revoked
revoke-device CERT_ID [--reason]    put device:CERT_ID on the signed revocation list
release-hold TXN --by NAME --reason WHY [--terminal T]   end what head office holds back for one transaction's
                                    online confirmations (a member's stored value, a gift card's balance)
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, AuditReasonOpt, ByOpt, DbOpt, fail, hq_store
from terminal.console import JsonOpt, show_json

app = typer.Typer()


@app.command("topup")
def topup(
    member_id: str,
    amount: int,
    by: str = "cli",
    note: str = "",
    topup_id: Annotated[str | None, typer.Option(help="Idempotency key: a retry changes nothing.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Add AMOUNT (minor units) to MEMBER's stored value; a negative balance is recovered first. Prints JSON."""
    from hq import payments

    with hq_store(db) as store:
        try:
            done = payments.topup(store, member_id, amount, by, note, topup_id)
        except (payments.PaymentRefused, ValueError) as exc:
            fail(exc)
    print(
        json.dumps(
            {
                "topup_id": done.topup_id,
                "member_id": member_id,
                "amount": amount,
                "balance": done.balance_after,
                "recovered": done.recovered,
                "settled_items": done.settled_items,
            }
        )
    )


@app.command("member-token")
def member_token(member_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Print a member app token for MEMBER (registers devices, reads the balance); shown once."""
    from hq import payments

    with hq_store(db) as store:
        try:
            token = payments.member_token(store, member_id)
        except payments.PaymentRefused as exc:
            fail(exc)
    if as_json:
        show_json({"member_id": member_id, "token": token})
    else:
        print(token)


@app.command("member-code")
def member_code(member_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Print MEMBER's signed member code (TPM2:...) for a printed card: it identifies, never spends."""
    from hq import payments

    with hq_store(db) as store:
        try:
            code = payments.member_code(store, member_id)
        except payments.PaymentRefused as exc:
            fail(exc)
    if as_json:
        show_json({"member_id": member_id, "member_code": code})
    else:
        print(code)


@app.command("devices")
def devices(
    member_id: Annotated[str | None, typer.Argument()] = None, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False
) -> None:
    """Device certificates (of MEMBER): id, member, expiry, offline cap, revoked. Prints JSON."""
    from hq import payments

    with hq_store(db, create=False) as store:
        rows = payments.devices(store, member_id)
    print(json.dumps(rows, indent=2))


@app.command("revoke-device")
def revoke_device(cert_id: str, reason: str = "", db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Revoke a member's device: tills refuse its payment codes once they pull the list."""
    from hq import payments

    with hq_store(db) as store:
        try:
            revocation_id = payments.revoke_device(store, cert_id, reason)
        except payments.PaymentRefused as exc:
            fail(exc)
    if as_json:
        show_json({"revocation_id": revocation_id})
    else:
        print(revocation_id)


@app.command("holds")
def holds(
    terminal: Annotated[str | None, typer.Option("--terminal", help="Only this till's confirmations.")] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """What head office holds back for online confirmations whose entries have not arrived (members' stored value,
    gift cards), oldest first: txn_id, terminal_id, kind, member_id or card_id, amount, confirmed_at. The list to
    read before release-hold. Prints JSON."""
    from hq import payments

    with hq_store(db, create=False) as store:
        rows = payments.holds(store, terminal)
    print(json.dumps(rows, indent=2))


@app.command("release-hold")
def release_hold(
    txn_id: str,
    by: ByOpt,
    reason: AuditReasonOpt,
    terminal: Annotated[
        str | None, typer.Option("--terminal", help="Only this till's confirmation of the transaction.")
    ] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """End what head office holds back for TXN's online confirmations whose entries have not arrived (a member's
    stored value, a gift card's balance): a till gone for good, a sale another till's entry took the id of. The
    sale, if it arrives later, is applied and an overspend flagged. Audited. Prints JSON."""
    from hq import payments

    with hq_store(db, create=False) as store:
        try:
            done = payments.release_hold(store, txn_id, by, reason, terminal)
        except payments.PaymentRefused as exc:
            fail(f"{exc.code}: {exc}")
        except ValueError as exc:
            fail(exc)
    print(json.dumps(done))
