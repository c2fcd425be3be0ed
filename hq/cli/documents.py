"""`tillpoint hq ...`: master data tills pull: coupons, earning rules, signing keys, the revocation list, deletions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from hq import documents
from hq.cli.common import DEFAULT_DB, DbOpt, fail, hq_store, read_json
from terminal.console import JsonOpt, show_json

app = typer.Typer()


def _readable(body: Any, key: str, check: Callable[[str, dict[str, Any]], None]) -> None:
    """A document the tills would ignore is refused, with the field and code an editor would show."""
    if not isinstance(body, dict) or not isinstance(body.get(key), str) or not body[key]:
        fail(f"a document is a JSON object with a string {key}")
    try:
        check(body[key], body)
    except documents.DocumentInvalid as exc:
        fail(f"the tills would not read this document: {exc}")


@app.command("put-coupon")
def put_coupon(file: Path, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Store a coupon JSON document (its coupon_id, member_id for personal ones, limits); print its id."""
    body = read_json(file)
    _readable(body, "coupon_id", documents.check_coupon)
    with hq_store(db) as store:
        coupon_id = store.put_coupon(body)
    if as_json:
        show_json({"coupon_id": coupon_id})
    else:
        print(coupon_id)


@app.command("put-rule")
def put_rule(file: Path, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Store an earning-rule JSON document (its rule_id); print its id."""
    body = read_json(file)
    _readable(body, "rule_id", documents.check_rule)
    with hq_store(db) as store:
        rule_id = store.put_rule_doc(body)
    if as_json:
        show_json({"rule_id": rule_id})
    else:
        print(rule_id)


@app.command("delete")
def delete(kind: str, item_id: str, db: DbOpt = DEFAULT_DB) -> None:
    """Delete a member, card, rule, rule_doc, coupon, key or revocation (tills get a tombstone)."""
    with hq_store(db) as store:
        if not store.delete(kind, item_id):
            fail(f"no live {kind} {item_id}")


@app.command("add-key")
def add_key(purpose: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Make an Ed25519 signing key for PURPOSE (qr, payment_code, ...); tills get its public half. Prints its id."""
    with hq_store(db) as store:
        key_id = store.create_signing_key(purpose)
    if as_json:
        show_json({"purpose": purpose, "key_id": key_id})
    else:
        print(key_id)


@app.command("revoke-subject")
def revoke_subject(kind: str, subject: str, reason: str = "", db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Put KIND:SUBJECT (a card hash, a key id, a payment device...) on the signed revocation list."""
    with hq_store(db) as store:
        revocation_id = store.revoke(kind, subject, reason)
    if as_json:
        show_json({"revocation_id": revocation_id})
    else:
        print(revocation_id)
