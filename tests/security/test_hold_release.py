"""An administrator ends one hold of head office's online confirmations (``tillpoint hq release-hold``,
``POST /v1/admin/holds/{txn_id}/release``; docs/payments.md, "Online confirmation"): a sale whose transaction id
another till's entry took, so its own entry can never arrive, and a till gone for good. Audited; refused when the
transaction holds nothing or its entry arrived; a sale arriving after the release is applied and its overspend
flagged.

Head office's server in a thread on 127.0.0.1 (SQLite, then PostgreSQL), the red team's office of
``test_redteam_confirmations``: Aiko (M-1) holds 9,000 of stored value, the NTAG 424 DNA gift card 4,000."""

from __future__ import annotations

import json

import httpx

from hq import audit
from terminal import giftcards as gc
from terminal.credentials import card_uid_hash
from tests.fixtures import entries
from tests.fixtures.hq import command
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
from tests.security.test_redteam_confirmations import (
    AIKO_UID,
    CARD_KEY,
    GIFT_UID,
    Office,
    local_now,
    new_txn,
    office,  # noqa: F401 - the fixture
    refused,
    sun_tap,
)


def release(at: Office, admin: str, txn_id: str, reason: str = "till T-A's sale was squatted") -> httpx.Response:
    return httpx.post(
        f"{at.server.url}/v1/admin/holds/{txn_id}/release",
        json={"reason": reason},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )


def held(at: Office, token: str, terminal_id: str | None = None) -> httpx.Response:
    return httpx.get(
        f"{at.server.url}/v1/admin/holds",
        params={"terminal_id": terminal_id} if terminal_id else None,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_a_squatted_sales_hold_is_released_by_an_administrator_audited(office: Office) -> None:  # noqa: F811
    """T-A asked head office about a sale of Aiko's 9,000; a stolen credential (T-B) pushed an entry of its own
    under that sale's transaction id, so T-A's entry is refused (``txn_id_taken``) and never ends the hold. The
    administrator releases it, saying why; Aiko pays again; a second release, and one of a transaction nobody
    asked about, hold nothing (``no_hold``)."""
    admin = office.hq.add_admin("mio")
    code, txn = office.code(), new_txn()
    assert office.confirm("T-A", "M-1", 9000, txn_id=txn, **code).status_code == 200
    office.push("T-B", "sale", entries.sale(None, 1, store_id="S-B", local_time=local_now()), txn_id=txn)
    assert refused(office.confirm("T-B", "M-1", 1, **office.code())) == "insufficient_balance"

    assert release(office, office.tokens["T-B"], txn).status_code == 403  # a till's token releases nothing
    assert held(office, office.tokens["T-B"]).status_code == 403  # ... nor reads what is held
    listed = held(office, admin).json()
    assert [{k: v for k, v in h.items() if k != "confirmed_at"} for h in listed] == [
        {"txn_id": txn, "terminal_id": "T-A", "kind": "stored_value", "member_id": "M-1", "amount": 9000}
    ], listed
    assert held(office, admin, "T-B").json() == []
    assert refused(release(office, admin, txn, reason="")) == "invalid_request"
    done = release(office, admin, txn)
    assert done.status_code == 200, done.text
    assert done.json()["released"] == [{"terminal_id": "T-A", "member_id": "M-1", "amount": 9000}]
    assert held(office, admin).json() == []  # released: nothing held any more
    assert office.confirm("T-B", "M-1", 9000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200
    assert office.stored_value("M-1") == 9000  # holding is not spending: nothing moved
    assert refused(release(office, admin, txn)) == "no_hold"
    assert refused(release(office, admin, new_txn())) == "no_hold"
    assert refused(office.confirm("T-A", "M-1", 9000, txn_id=txn, **office.code())) == "payment_code_replayed"

    with office.hq.db.read() as tx:
        records = [r for r in audit.recent(tx) if r.action == "release_hold"]
    assert [(r.actor, r.target, r.reason) for r in records] == [("mio", txn, "till T-A's sale was squatted")]
    assert records[0].details == {"released": [{"terminal_id": "T-A", "member_id": "M-1", "amount": 9000}]}
    assert audit.verify(office.hq.db).ok


def test_a_sale_arriving_after_the_release_is_applied_and_its_overspend_flagged(
    office: Office,  # noqa: F811
    hq_url: str,  # noqa: F811
) -> None:
    """The command line: T-A's hold on Aiko's 9,000 and on the gift card's 4,000 released (till T-A gone, staff
    thought); Aiko spends her 9,000 at T-B. T-A comes back and sends its sale: applied like a withdrawn one, her
    balance carried below zero and flagged ``stored_value_overspent``; releasing it again: ``hold_entry_arrived``."""
    code, txn = office.code(), new_txn()
    assert office.confirm("T-A", "M-1", 9000, txn_id=txn, **code).status_code == 200
    gift = card_uid_hash(CARD_KEY, GIFT_UID)
    asked = office.confirm_gift("T-A", gift, 4000, sun_tap(office.gift, GIFT_UID))
    assert asked.status_code == 200
    with office.hq.db.read() as tx:
        [gift_txn] = [str(r[0]) for r in tx.all("SELECT txn_id FROM gift_confirms WHERE terminal_id = 'T-A'")]

    listed = json.loads(command("hq", "holds", "--db", hq_url).stdout)  # what staff read first, oldest first
    assert [(h["txn_id"], h["kind"], h.get("member_id") or h.get("card_id"), h["amount"]) for h in listed] == [
        (txn, "stored_value", "M-1", 9000),
        (gift_txn, "gift_card", gc.card_id(gift), 4000),
    ], listed
    assert json.loads(command("hq", "holds", "--terminal", "T-B", "--db", hq_url).stdout) == []
    said = command("hq", "release-hold", txn, "--by", "mio", "--db", hq_url)
    assert said.returncode == 2  # --reason is required
    said = command("hq", "release-hold", txn, "--by", "mio", "--reason", "till T-A gone", "--db", hq_url)
    assert said.returncode == 0, said.stdout
    assert json.loads(said.stdout)["released"] == [{"terminal_id": "T-A", "member_id": "M-1", "amount": 9000}]
    said = command("hq", "release-hold", gift_txn, "--by", "mio", "--reason", "till T-A gone", "--db", hq_url)
    assert json.loads(said.stdout)["released"] == [{"terminal_id": "T-A", "card_id": gc.card_id(gift), "amount": 4000}]
    assert office.confirm_gift("T-B", gift, 4000, sun_tap(office.gift, GIFT_UID)).status_code == 200
    listed = json.loads(command("hq", "holds", "--db", hq_url).stdout)
    assert [(h["terminal_id"], h["kind"]) for h in listed] == [("T-B", "gift_card")], listed  # T-B's own, now

    spent = office.code()
    paid = {"payment_code": spent["code"], "code_id": spent["code_id"], "store_id": "S-B", "local_time": local_now()}
    office.push("T-B", "sale", entries.sale("M-1", 9000, stored_value=9000, proof="payment_code", **paid))
    assert office.stored_value("M-1") == 0
    late = {"payment_code": code["code"], "code_id": code["code_id"], "store_id": "S-A", "local_time": local_now()}
    office.push("T-A", "sale", entries.sale("M-1", 9000, stored_value=9000, proof="payment_code", **late), txn_id=txn)
    assert office.stored_value("M-1") == -9000
    flagged = {i.reason.value: i for i in office.hq.items() if i.txn_id == txn}
    assert [r for r, i in flagged.items() if i.quarantined] == []  # applied, never held
    assert flagged["stored_value_overspent"].detail["short"] == 9000, flagged

    said = command("hq", "release-hold", txn, "--by", "mio", "--reason", "again", "--db", hq_url)
    assert said.returncode == 1 and "hold_entry_arrived" in said.stdout, said.stdout
