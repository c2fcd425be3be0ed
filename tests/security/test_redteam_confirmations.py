"""Red team: head office's online confirmation and its withdrawal (``POST /v1/payments/confirm``,
``/v1/giftcards/confirm``, ``/v1/vouchers/confirm``, ``/v1/payments/withdraw``; docs/payments.md, "Online
confirmation") against a stolen till credential and a replaying network.

Head office's server in a thread on 127.0.0.1 (SQLite, then PostgreSQL), holding the chain's SUN and card-hash
keys, card reads it cannot check bounded at 5,000 a till; the attacker speaks HTTP with a till's token. Each test
states what happened to every balance it touches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import payments
from hq.api.server import ServerHandle, start_in_thread
from hq.db.schema import MIGRATIONS, run_statement
from hq.ingest import Settings
from hq.policy import CardKeys
from hq.store import HqStore
from hq.vouchers import IssueSpec
from sync.protocol import WireEntry
from terminal import giftcards as gc
from terminal import payments as pay
from terminal import vouchers as vc
from terminal.credentials import card_uid_hash
from tests.fixtures import entries
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
from tests.vcard import Ntag424

MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD_KEY = bytes(range(32))
AIKO_UID, GIFT_UID = bytes.fromhex("04A1B2C3D4E511"), bytes.fromhex("04A1B2C3D4E522")
BEN_CARD, LITE_GIFT = "ab" * 32, "cd" * 32  # FeliCa Lite-S: a MAC read is the till's word
ATTESTED = 5000
STORES = {"T-A": "S-A", "T-B": "S-B"}


@dataclass
class Office:
    hq: HqStore
    server: ServerHandle
    tokens: dict[str, str]
    aiko: Ntag424
    gift: Ntag424
    phone: Ed25519PrivateKey
    cert_id: bytes
    seqs: dict[str, int]
    codes: int = 0

    def post(self, terminal_id: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[terminal_id]}"}
        return httpx.post(f"{self.server.url}{path}", json=body, headers=headers, timeout=10)

    def confirm(self, terminal_id: str, member_id: str, amount: int, **proof: Any) -> httpx.Response:
        body = {"member_id": member_id, "amount": amount, "txn_id": proof.pop("txn_id", None) or new_txn(), **proof}
        return self.post(terminal_id, "/v1/payments/confirm", body)

    def confirm_gift(
        self, terminal_id: str, uid_hash: str, amount: int, tap: dict[str, Any], txn_id: str | None = None
    ) -> httpx.Response:
        body = {"card_id": gc.card_id(uid_hash), "amount": amount, "txn_id": txn_id or new_txn(), "tap": tap}
        return self.post(terminal_id, "/v1/giftcards/confirm", body)

    def withdraw(self, terminal_id: str, *txn_ids: str) -> int:
        reply = self.post(terminal_id, "/v1/payments/withdraw", {"txn_ids": list(txn_ids)})
        assert reply.status_code == 200, reply.text
        return int(reply.json()["withdrawn"])

    def push(self, terminal_id: str, kind: str, payload: dict[str, Any], txn_id: str | None = None) -> str:
        self.seqs[terminal_id] += 1
        txn_id = txn_id or new_txn()
        entry = WireEntry(
            terminal_id=terminal_id,
            seq=self.seqs[terminal_id],
            txn_id=txn_id,
            kind=kind,
            payload=payload,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        reply = self.post(terminal_id, "/v1/journal", {"terminal_id": terminal_id, "entries": [entry.model_dump()]})
        assert reply.status_code == 200, reply.text
        return txn_id

    def code(self) -> dict[str, str]:
        self.codes += 1
        text = pay.make_code(self.phone, self.cert_id, int(time.time()), self.codes)
        return {"code": text, "code_id": pay.parse_code(text).code_id}

    def stored_value(self, member_id: str) -> int:
        member = self.hq.member(member_id)
        assert member is not None
        return member.stored_value

    def gift_balance(self, uid_hash: str) -> int:
        return int(self.hq.gift_card(gc.card_id(uid_hash))["balance"])

    def held(self, txn_id: str) -> list[str]:
        return [i.reason.value for i in self.hq.items() if i.txn_id == txn_id and i.quarantined]

    def withdrawals_kept(self, terminal_id: str) -> list[str]:
        with self.hq.db.read() as tx:
            rows = tx.all("SELECT txn_id FROM confirm_withdrawals WHERE terminal_id = ?", [terminal_id])
        return [str(r[0]) for r in rows]


def new_txn() -> str:
    return str(uuid.uuid4())


def sun_tap(card: Ntag424, uid: bytes) -> dict[str, Any]:
    """A fresh read of a NTAG 424 DNA: its SUN message, genuine and never used."""
    url = card.ndef_url()
    return {"uid_hash": card_uid_hash(CARD_KEY, uid), "trust": "sun", "counter": card.counter, "sun": url}


def mac(uid_hash: str) -> dict[str, Any]:
    return {"uid_hash": uid_hash, "trust": "mac"}


def refused(reply: httpx.Response) -> str:
    assert reply.status_code >= 400, reply.text
    return str(reply.json()["code"])


def local_now() -> str:
    return datetime.now().isoformat(timespec="seconds")


@pytest.fixture
def office(hq_url: str) -> Iterator[Office]:  # noqa: F811 - the fixture
    keys = CardKeys(MASTER, lambda uid: card_uid_hash(CARD_KEY, uid))
    hq = HqStore(hq_url, Settings(card_keys=keys, attested_stored_value_per_day=ATTESTED))
    tokens = {t: hq.add_terminal(t, s) for t, s in STORES.items()}
    hq.upsert_member("M-1", "Aiko", "basic", 0, stored_value=10_000)
    hq.upsert_member("M-2", "Ben", "basic", 0, stored_value=20_000)
    hq.upsert_card(card_uid_hash(CARD_KEY, AIKO_UID), "M-1")
    hq.upsert_card(BEN_CARD, "M-2")
    hq.import_gift_card(card_uid_hash(CARD_KEY, GIFT_UID), 5000, "Mio", "old system")
    hq.import_gift_card(LITE_GIFT, 5000, "Mio", "old system")
    phone = Ed25519PrivateKey.generate()
    cert = payments.register_device(hq, "M-1", pay.public_bytes(phone).hex())
    made = Office(
        hq,
        start_in_thread(hq),
        tokens,
        Ntag424(AIKO_UID, MASTER),
        Ntag424(GIFT_UID, MASTER),
        phone,
        cert.cert_id,
        dict.fromkeys(STORES, 0),
    )
    # Aiko's card and the gift card have paid at T-A with a SUN message: head office has seen both prove themselves.
    tap = sun_tap(made.aiko, AIKO_UID)
    made.push("T-A", "sale", entries.sale("M-1", 1000, stored_value=1000, proof="card", tap=tap, store_id="S-A"))
    gift = sun_tap(made.gift, GIFT_UID)
    fields = {"card_id": gc.card_id(gift["uid_hash"]), "uid_hash": gift["uid_hash"], "store_id": "S-A"}
    made.push("T-A", "gift_redeem", {**fields, "amount": 1000, "tap": gift, "local_time": local_now()})
    assert (made.stored_value("M-1"), made.gift_balance(gift["uid_hash"])) == (9000, 4000)
    try:
        yield made
    finally:
        made.server.stop()
        hq.close()


def test_a_mac_read_of_a_members_card_that_proved_itself_with_sun_holds_nothing(office: Office) -> None:
    """A stolen credential knows every card's hash (the tills pull them) but holds no SUN message: a Lite-S MAC read
    claimed of a card head office has seen prove itself with SUN would hold the member's whole balance on its word."""
    assert refused(office.confirm("T-B", "M-1", 9000, card=mac(card_uid_hash(CARD_KEY, AIKO_UID)))) == "forged_card"
    assert office.confirm("T-A", "M-1", 9000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200


def test_a_mac_read_of_a_gift_card_that_proved_itself_with_sun_pays_nothing(office: Office) -> None:
    """The gift card shape, online and in the journal: a made-up MAC read of a NTAG 424 DNA gift card neither holds
    its balance nor spends it; the holder's next genuine tap pays it all."""
    gift = card_uid_hash(CARD_KEY, GIFT_UID)
    assert refused(office.confirm_gift("T-B", gift, 4000, mac(gift))) == "forged_card"
    fields = {"card_id": gc.card_id(gift), "uid_hash": gift, "store_id": "S-B", "local_time": local_now()}
    drained = office.push("T-B", "gift_redeem", {**fields, "amount": 4000, "tap": mac(gift)})
    assert office.held(drained) == ["gift_proof_invalid"] and office.gift_balance(gift) == 4000
    assert office.confirm_gift("T-A", gift, 4000, sun_tap(office.gift, GIFT_UID)).status_code == 200


def test_another_tills_entry_naming_a_confirmed_transaction_releases_nothing(office: Office) -> None:
    """A stolen credential that learnt a transaction id another till asked head office about (a receipt of a sale
    recorded while that till's answer was lost) pushes an entry of its own under that id: the hold is that till's
    sale's, and stays until that till's entry arrives or that till withdraws it."""
    txn = new_txn()
    assert office.confirm("T-A", "M-1", 9000, txn_id=txn, **office.code()).status_code == 200
    office.push("T-B", "sale", entries.sale(None, 500, store_id="S-B", local_time=local_now()), txn_id=txn)
    assert office.withdraw("T-B", txn) == 0
    assert refused(office.confirm("T-B", "M-1", 1, **office.code())) == "insufficient_balance"
    assert office.stored_value("M-1") == 9000


def test_a_card_payment_journals_no_more_than_head_office_confirmed(office: Office) -> None:
    """A dishonest cashier, or a stolen credential holding a fresh card message, asks head office to confirm a small
    payment (the customer's tap) and journals a larger one under the same transaction: the member's card and the
    gift card alike. Head office quarantines the entry (``payment_exceeds_confirmed``) and no balance moves; an entry
    within what was confirmed is applied."""
    gift = card_uid_hash(CARD_KEY, GIFT_UID)
    tap, txn = sun_tap(office.aiko, AIKO_UID), new_txn()
    assert office.confirm("T-B", "M-1", 500, card=tap, txn_id=txn).status_code == 200
    paid = {"proof": "card", "tap": tap, "store_id": "S-B", "local_time": local_now()}
    inflated = office.push("T-B", "sale", entries.sale("M-1", 9000, stored_value=9000, **paid), txn_id=txn)
    assert office.held(inflated) == ["payment_exceeds_confirmed"] and office.stored_value("M-1") == 9000
    lite, txn = mac(BEN_CARD), new_txn()  # a Lite-S read: the confirmation is keyed by its transaction
    assert office.confirm("T-B", "M-2", 100, card=lite, txn_id=txn).status_code == 200
    paid = {"proof": "card", "tap": lite, "store_id": "S-B", "local_time": local_now()}
    inflated = office.push("T-B", "sale", entries.sale("M-2", 4000, stored_value=4000, **paid), txn_id=txn)
    assert office.held(inflated) == ["payment_exceeds_confirmed"] and office.stored_value("M-2") == 20_000

    tap, txn = sun_tap(office.gift, GIFT_UID), new_txn()
    assert office.confirm_gift("T-B", gift, 300, tap, txn_id=txn).status_code == 200
    fields = {"card_id": gc.card_id(gift), "uid_hash": gift, "store_id": "S-B", "local_time": local_now()}
    inflated = office.push("T-B", "gift_redeem", {**fields, "amount": 4000, "tap": tap}, txn_id=txn)
    assert office.held(inflated) == ["payment_exceeds_confirmed"] and office.gift_balance(gift) == 4000
    [item] = [i for i in office.hq.items() if i.txn_id == inflated]
    assert (item.detail["confirmed"], item.detail["paid"]) == (300, 4000)

    tap, txn = sun_tap(office.aiko, AIKO_UID), new_txn()  # within what was confirmed: applied
    assert office.confirm("T-A", "M-1", 700, card=tap, txn_id=txn).status_code == 200
    paid = {"proof": "card", "tap": tap, "store_id": "S-A", "local_time": local_now()}
    office.push("T-A", "sale", entries.sale("M-1", 700, stored_value=700, **paid), txn_id=txn)
    assert office.held(txn) == [] and office.stored_value("M-1") == 8300


def test_what_a_till_holds_on_card_reads_head_office_cannot_check_is_bounded(office: Office) -> None:
    """Ben's card and a gift card are FeliCa Lite-S: a MAC read is the till's word, and a stolen credential can make
    up as many as it likes. Head office holds at most ``attested_stored_value_per_day`` for one till's confirmations
    on such reads whose entries have not arrived, so it cannot hold every member's balance (and every such gift
    card) for ever; what it then sends is spending, bounded per day at ingest."""
    assert office.confirm("T-B", "M-2", 3000, card=mac(BEN_CARD)).status_code == 200
    assert refused(office.confirm("T-B", "M-2", 2001, card=mac(BEN_CARD))) == "attested_hold_limit"
    assert refused(office.confirm_gift("T-B", LITE_GIFT, 2001, mac(LITE_GIFT))) == "attested_hold_limit"
    lost = new_txn()
    assert office.confirm("T-B", "M-2", 2000, card=mac(BEN_CARD), txn_id=lost).status_code == 200
    assert office.withdraw("T-B", lost) == 1  # a withdrawn hold makes room again
    assert office.confirm_gift("T-B", LITE_GIFT, 2000, mac(LITE_GIFT)).status_code == 200
    # Ben's card still pays online at another till, within what that till may hold on such reads
    assert office.confirm("T-A", "M-2", ATTESTED, card=mac(BEN_CARD)).status_code == 200
    assert (office.stored_value("M-2"), office.gift_balance(LITE_GIFT)) == (20_000, 5000)


def test_revoking_a_stolen_credential_frees_what_it_held(office: Office) -> None:
    """Holding is not spending: a thief with a skimmed message (read off the card in a pocket, never used) and a
    till's credential holds a member's whole balance or a gift card's for as long as it sends nothing. Revoking the
    credential lets go of every hold of its confirmations whose entries head office does not hold."""
    aiko, gift = card_uid_hash(CARD_KEY, AIKO_UID), card_uid_hash(CARD_KEY, GIFT_UID)
    assert office.confirm("T-B", "M-1", 9000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200
    assert office.confirm_gift("T-B", gift, 4000, sun_tap(office.gift, GIFT_UID)).status_code == 200
    assert refused(office.confirm("T-A", "M-1", 1, card=sun_tap(office.aiko, AIKO_UID))) == "insufficient_balance"
    assert office.hq.revoke_terminal("T-B")
    assert office.confirm("T-A", "M-1", 9000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200
    assert office.confirm_gift("T-A", gift, 4000, sun_tap(office.gift, GIFT_UID)).status_code == 200
    assert (office.stored_value("M-1"), office.gift_balance(gift)) == (9000, 4000)
    assert refused(office.confirm("T-B", "M-1", 1, card=mac(aiko))) == "credential_revoked"


def test_a_withdrawn_confirmation_frees_no_proof_and_no_voucher(office: Office) -> None:
    """Withdrawing lets go of the amount, never of what proved the payment: the code, the card message and a
    voucher's one use stay used, at this till and every other."""
    code, txn = office.code(), new_txn()
    assert office.confirm("T-A", "M-1", 2000, txn_id=txn, **code).status_code == 200
    assert office.withdraw("T-A", txn) == 1
    assert refused(office.confirm("T-B", "M-1", 2000, **code)) == "payment_code_replayed"
    assert refused(office.confirm("T-A", "M-1", 2000, **code)) == "payment_code_replayed"
    tap, txn = sun_tap(office.aiko, AIKO_UID), new_txn()
    assert office.confirm("T-A", "M-1", 2000, card=tap, txn_id=txn).status_code == 200
    assert office.withdraw("T-A", txn) == 1
    assert refused(office.confirm("T-B", "M-1", 2000, card=tap)) == "replayed_card"
    spec = IssueSpec(1, 2500, int((datetime.now(UTC) + timedelta(days=30)).timestamp()))
    office.hq.issue_vouchers("T-A", spec, payments.signing_key(office.hq, vc.PURPOSE), "Mio")
    voucher = office.hq.voucher_stock("T-A").codes[0]
    read = vc.parse(voucher)
    sold = {"voucher_id": read.voucher_id, "code": voucher, "kind": read.kind.value, "value": read.value}
    office.push(
        "T-A", "voucher_sale", sold | {"sku": read.sku, "store_id": "S-A", "local_time": local_now(), "amount": 2500}
    )
    used = new_txn()
    body = {"action": "redeem", "txn_id": used, "code": voucher}
    assert office.post("T-A", "/v1/vouchers/confirm", body).status_code == 200
    assert office.withdraw("T-A", used) == 0  # a voucher's use is not a hold
    again = office.post("T-B", "/v1/vouchers/confirm", {**body, "txn_id": new_txn()})
    assert refused(again) == "voucher_used"
    assert office.stored_value("M-1") == 9000


def test_a_confirmation_replayed_after_its_sale_arrived_holds_nothing(office: Office) -> None:
    """A network replaying a till's confirmation, then its withdrawal, after the sale's entry arrived: the
    confirmation is the same answer (a retry) and holds nothing more; the withdrawal withdraws nothing."""
    code, txn = office.code(), new_txn()
    asked = {"member_id": "M-1", "amount": 3000, "txn_id": txn, **code}
    assert office.post("T-A", "/v1/payments/confirm", asked).status_code == 200
    paid = {"payment_code": code["code"], "code_id": code["code_id"], "store_id": "S-A", "local_time": local_now()}
    office.push("T-A", "sale", entries.sale("M-1", 3000, stored_value=3000, proof="payment_code", **paid), txn_id=txn)
    assert office.stored_value("M-1") == 6000
    again = office.post("T-A", "/v1/payments/confirm", asked)
    assert again.status_code == 200 and again.json().get("repeat") is True
    assert office.withdraw("T-A", txn) == 0 and office.withdraw("T-A", txn) == 0
    assert office.confirm("T-B", "M-1", 6000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200
    assert office.stored_value("M-1") == 6000


def test_a_confirmation_asked_again_for_more_or_for_another_member_is_no_retry(office: Office) -> None:
    """The same till and transaction asking again with the same code, for a larger amount or naming another
    member: not the retry of a lost answer but another payment. Head office refuses it (as a gift card's), so a
    till never takes "confirmed" for an amount head office neither checked against the balance nor holds."""
    code, txn = office.code(), new_txn()
    asked = {"member_id": "M-1", "amount": 1000, "txn_id": txn, **code}
    assert office.post("T-A", "/v1/payments/confirm", asked).status_code == 200
    assert refused(office.post("T-A", "/v1/payments/confirm", {**asked, "amount": 9000})) == "payment_code_replayed"
    assert refused(office.post("T-A", "/v1/payments/confirm", {**asked, "member_id": "M-2"})) == "payment_code_replayed"
    again = office.post("T-A", "/v1/payments/confirm", asked)  # the retry of a lost answer
    assert again.status_code == 200 and again.json().get("repeat") is True
    # What head office holds of Aiko's 9,000 is still the 1,000 it confirmed: another till may take the rest.
    assert office.confirm("T-B", "M-1", 8000, card=sun_tap(office.aiko, AIKO_UID)).status_code == 200
    assert office.stored_value("M-1") == 9000


def test_withdrawals_of_made_up_transactions_do_not_fill_head_offices_disk(office: Office) -> None:
    """A stolen credential withdraws made-up transaction ids, 100 a request, as often as it likes. Head office keeps a
    withdrawal apart only for a transaction it has heard nothing of from that till (a confirmation the withdrawal
    overtook), and at most the newest 1,000 a till; those still refuse a confirmation that lands after them, and
    another till's are untouched. A confirmation's own row says it was withdrawn: nothing more is kept for it."""
    overtaken = new_txn()
    assert office.withdraw("T-A", overtaken) == 0  # the honest shape: the confirmation is still on its way
    made_up = [new_txn() for _ in range(1300)]
    for first in range(0, len(made_up), 100):
        assert office.withdraw("T-B", *made_up[first : first + 100]) == 0
    kept = office.withdrawals_kept("T-B")
    assert len(kept) == 1000 and set(made_up[-100:]) <= set(kept)
    assert office.withdrawals_kept("T-A") == [overtaken]
    late = office.confirm("T-A", "M-1", 2000, txn_id=overtaken, **office.code())
    assert refused(late) == "payment_code_replayed" and "withdrawn" in late.text
    late = office.confirm("T-B", "M-1", 2000, txn_id=made_up[-1], **office.code())
    assert refused(late) == "payment_code_replayed" and "withdrawn" in late.text

    asked = new_txn()  # a confirmation whose answer was lost, withdrawn: its own row keeps the withdrawal
    assert office.confirm("T-A", "M-1", 2000, txn_id=asked, **office.code()).status_code == 200
    assert office.withdraw("T-A", asked) == 1
    assert office.withdrawals_kept("T-A") == [overtaken]
    again = office.confirm("T-A", "M-1", 2000, txn_id=asked, **office.code())  # asked again, with another code
    assert refused(again) == "payment_code_replayed" and "withdrawn" in again.text
    assert office.stored_value("M-1") == 9000
    assert office.confirm("T-B", "M-1", 9000, **office.code()).status_code == 200  # nothing held


def test_what_an_earlier_release_kept_beyond_the_bound_goes_with_the_upgrade(office: Office) -> None:
    """Withdrawals an earlier release kept without bound: the migration keeps the newest 1,000 of each till."""
    with office.hq.db.write() as tx:
        tx.many(
            "INSERT INTO confirm_withdrawals (terminal_id, txn_id, withdrawn_at) VALUES (?, ?, ?)",
            [("T-B", f"old-{n:05d}", f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z") for n in range(1500)]
            + [("T-A", "old-a", "2025-01-01T00:00:00.000Z")],
        )
    with office.hq.db.write() as tx:
        for statement in dict(MIGRATIONS)["m045_withdrawals_kept"]:
            run_statement(tx, statement)
    assert sorted(office.withdrawals_kept("T-B")) == [f"old-{n:05d}" for n in range(500, 1500)]
    assert office.withdrawals_kept("T-A") == ["old-a"]
