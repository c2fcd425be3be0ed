"""A receipt's claim QR (``TPJ1:``) and the goods going back: a customer who buys anonymously, returns the goods
and claims the receipt (or claims first and returns after) keeps no points for what went back.

Head office prices a claimed sale as its new member's (``hq.members.claimed``); the refunds it holds of the
sale before the claim take their share off the claim, and a refund or void that arrives after it, with no member
(the till never knew of the claim), is the claimer's and takes back what the returned units earned, never more
than the claim gave. Real head-office process, real tills' stores and sync clients."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hq import ledger
from hq.store import HqStore
from sync.client import SyncClient
from sync.protocol import WireEntry
from terminal.enrolment import ClaimSigner
from terminal.model import Basket, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess

VERSION = "join-2026-11"
BASKET = Basket((Line("SKU-1", 2, 5000, "food"), Line("SKU-2", 1, 3000, "drink")))  # 130.00: 130 points


class Till:
    def __init__(self, hq: HqProcess, root: Path, terminal_id: str) -> None:
        self.store = Store.open(root / terminal_id / "terminal.db")
        self.client = SyncClient(self.store, terminal_id, hq.url, hq.add_terminal(terminal_id))
        self.client.sync_once()
        self.service = Service(self.store, terminal_id)
        self.sign = ClaimSigner(self.store, terminal_id, root / f"{terminal_id}-claim.key")

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def till(module_hq: HqProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Till]:
    made = Till(module_hq, tmp_path, f"T-CR-{abs(hash(request.node.name)) % 10**8}")
    yield made
    made.close()


def claim(hq: HqProcess, token: str) -> httpx.Response:
    body = {"token": token, "display_name": "Kim", "consent_version": VERSION}
    return httpx.post(f"{hq.url}/v1/claims", json=body, timeout=10)


def points(hq: HqProcess, member_id: str) -> int:
    admin = HqStore(hq.db)
    try:
        held = admin.member(member_id)
        assert held is not None
        return held.points
    finally:
        admin.close()


def test_a_receipt_whose_goods_all_went_back_cannot_be_claimed(module_hq: HqProcess, till: Till) -> None:
    sale = till.service.commit(till.service.quote(None, BASKET))
    token = till.sign(sale)
    till.service.refund(sale.txn_id, {0: 2, 1: 1})  # everything back, the money back at the POS
    till.client.sync_once()
    reply = claim(module_hq, token)
    assert reply.status_code == 409 and reply.json()["code"] == "claim_used", reply.text
    assert "returned" in reply.json()["message"]


def test_a_claim_after_a_partial_return_earns_what_stayed_bought(module_hq: HqProcess, till: Till) -> None:
    sale = till.service.commit(till.service.quote(None, BASKET))
    token = till.sign(sale)
    till.service.refund(sale.txn_id, {0: 1})  # one of the two 50.00 units back
    till.client.sync_once()
    reply = claim(module_hq, token)
    assert reply.status_code == 200, reply.text
    assert reply.json()["points"] == 80  # 130 for the sale, 50 of them for the unit that went back
    assert points(module_hq, reply.json()["member_id"]) == 80


def sold_and_claimed(hq: HqProcess, till: Till) -> tuple[str, str, int]:
    """An anonymous sale of ``BASKET`` pushed and its receipt claimed: (txn id, the new member, its points)."""
    sale = till.service.commit(till.service.quote(None, BASKET))
    token = till.sign(sale)
    till.client.sync_once()
    reply = claim(hq, token)
    assert reply.status_code == 200, reply.text
    return sale.txn_id, str(reply.json()["member_id"]), int(reply.json()["points"])


def test_returns_after_the_claim_take_back_what_they_earned_and_no_more(module_hq: HqProcess, till: Till) -> None:
    txn, member, earned = sold_and_claimed(module_hq, till)
    assert earned == 130
    till.service.refund(txn, {1: 1})  # the drink back: 30 points go
    till.client.sync_once()
    assert points(module_hq, member) == 100
    till.service.refund(txn, {0: 2})  # the rest back: nothing is left of the claim
    till.client.sync_once()
    assert points(module_hq, member) == 0
    admin = HqStore(module_hq.db)
    try:
        with admin.db.read() as tx:
            rows = tx.all(
                "SELECT kind, member_id, points, effect FROM journal WHERE original_txn = ? ORDER BY seq", [txn]
            )
        assert [tuple(r) for r in rows] == [("refund", member, -30, "applied"), ("refund", member, -100, "applied")]
        with admin.db.read() as tx:
            assert ledger.check(tx) == []  # the points taken back came out of the claimer's lots
    finally:
        admin.close()


def test_a_void_after_the_claim_takes_back_every_claimed_point(module_hq: HqProcess, till: Till) -> None:
    txn, member, earned = sold_and_claimed(module_hq, till)
    assert earned == 130
    till.service.void(txn)
    till.client.sync_once()
    assert points(module_hq, member) == 0


def test_a_held_return_of_a_claimed_sale_released_by_staff_takes_back_the_claimers_points(
    module_hq: HqProcess, till: Till
) -> None:
    """The drink of a claimed sale brought back at another store's till: that till never sold it, so head office
    holds the refund for a person. Staff release it (the customer did bring it back): the refund is then the
    claimer's as if it had applied at once, and takes back the 30 points the drink earned."""
    txn, member, earned = sold_and_claimed(module_hq, till)
    assert earned == 130
    other = f"{till.client.terminal_id}-B"
    token = module_hq.add_terminal(other)
    refund = entries.refund(txn, None, store_id="S-B", money_back=3000, returned=[(1, 1)])
    entry = WireEntry(
        terminal_id=other,
        seq=1,
        txn_id=str(uuid.uuid4()),
        kind="refund",
        payload=refund,
        created_at=utc_iso(time.time()),
    )
    reply = httpx.post(
        f"{module_hq.url}/v1/journal",
        json={"terminal_id": other, "entries": [entry.model_dump()]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    admin = HqStore(module_hq.db)
    try:
        with admin.db.read() as tx:
            assert tx.one("SELECT effect FROM journal WHERE txn_id = ?", [entry.txn_id]) == ("quarantined",)
        assert points(module_hq, member) == 130  # held: nothing moved yet
        assert admin.release(entry.txn_id, "Mio", "the customer brought the drink back") == "applied"
        with admin.db.read() as tx:
            row = tx.one("SELECT member_id, points FROM journal WHERE txn_id = ?", [entry.txn_id])
            assert tuple(row or ()) == (member, -30)
            assert ledger.check(tx) == []
    finally:
        admin.close()
    assert points(module_hq, member) == 100


def test_a_refund_pushed_while_its_sale_is_being_claimed_waits_for_the_claim_and_takes_back(pg_url: str) -> None:
    """PostgreSQL, two sessions: a claim holds its sale's row while the till's refund of that sale is pushed. The
    push waits for the claim (seen in ``pg_locks``), then takes the claimed points back; without the wait it
    would read no claim and leave them."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hq import members
    from sync import claims
    from tests.fixtures import entries
    from tests.sync.test_hq_stats import Till as PushingTill
    from tests.waiting import wait_until

    hq = HqStore(pg_url)
    try:
        key = Ed25519PrivateKey.generate()
        public = claims.public_bytes(key)
        pos = PushingTill(hq, "T-RACE")
        pos.push("claim_key", {"key_id": claims.key_id_of(public).hex(), "public_key": claims.b64(public)})
        lines = [{"sku": "SKU-1", "quantity": 1, "unit_price": 4000, "category": "food"}]
        sold = pos.entry("sale", entries.sale(None, 4000, lines=lines)).model_copy(update={"txn_id": str(uuid.uuid4())})
        hq.ingest("T-RACE", [sold])
        txn = sold.txn_id
        token = "TPJ1:" + claims.sign(key, txn, int(datetime.now(UTC).timestamp()), 3600)
        refund = pos.entry("refund", entries.refund(txn, None, money_back=4000, returned=[(0, 1)]))
        pushed: list[BaseException | None] = []

        def push() -> None:
            try:
                hq.ingest("T-RACE", [refund])
                pushed.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                pushed.append(exc)

        with hq.db.write() as tx:
            claimed = members.claim(tx, token, "Kim", members.CONSENT_VERSION, datetime.now(UTC))
            assert claimed["points"] == 40
            pusher = threading.Thread(target=push)
            pusher.start()
            wait_until(lambda: waiting_for_a_lock(pg_url), 20, "the push waiting for the claim's row")
        pusher.join(30)
        assert pushed == [None]
        assert points_of(hq, str(claimed["member_id"])) == 0
    finally:
        hq.close()


def waiting_for_a_lock(url: str) -> bool:
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted").fetchone()
    return bool(row and row[0])


def points_of(hq: HqStore, member_id: str) -> int:
    held = hq.member(member_id)
    assert held is not None
    return held.points
