"""Every way a sale is rung commits it through the one sale path (``terminal.checkout.Checkout.sell``).

A real till daemon (SQLite store, service, session, local API over HTTP): the demo's sale on a tap,
the POS's ``POST /v1/sales``, the cashier session's confirm and a member's payment code each record
one sale. ``Checkout.sell`` and ``Service.commit`` are wrapped (the originals still do the work) to
see, per thread, that each commit happened inside the one path: an entry point that called the
service's commit itself, or priced and paid its own way, fails here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal import payments as pay
from terminal.checkout import Checkout
from terminal.daemon import Daemon
from terminal.errors import Code, Rejected
from terminal.identity import Identified, Payment
from terminal.model import Basket, JournalEntry, Line, Quote, Receipt, ReceiptRef, SaleOrder
from terminal.service import Service
from tests.api.stack import AIKO_UID, base_url, running_till
from tests.fixtures.codes import install_member_key
from tests.waiting import wait_until

PHONE = Ed25519PrivateKey.generate()
PAY_KEY = Ed25519PrivateKey.generate()
CERT = pay.issue_cert(
    PAY_KEY,
    "K-pay",
    bytes.fromhex("00000000000000c1"),
    "M-1",
    pay.public_bytes(PHONE),
    int(time.time()) - 60,
    86_400,
    5000,
)
LINES = [{"sku": "LATTE", "quantity": 2, "unit_price": 450, "category": "coffee"}]


class Paths:
    """What went through the one path, and whether each commit did."""

    def __init__(self) -> None:
        self.orders: list[SaleOrder] = []
        self.commits: list[bool] = []  # per commit: inside Checkout.sell on that thread
        self._inside = threading.local()

    def depth(self) -> int:
        return int(getattr(self._inside, "depth", 0))

    def enter(self, order: SaleOrder) -> None:
        self.orders.append(order)
        self._inside.depth = self.depth() + 1

    def leave(self) -> None:
        self._inside.depth = self.depth() - 1


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    seen = Paths()
    sell, commit = Checkout.sell, Service.commit

    def watched_sell(self: Checkout, order: SaleOrder, refused: Any = None) -> Receipt:
        seen.enter(order)
        try:
            return sell(self, order, refused)
        finally:
            seen.leave()

    def watched_commit(
        self: Service,
        quote: Quote,
        payment: Payment | None = None,
        tapped: Identified | None = None,
        receipt: ReceiptRef | None = None,
        request_id: str | None = None,
    ) -> Receipt:
        seen.commits.append(seen.depth() > 0)
        return commit(self, quote, payment, tapped, receipt, request_id)

    monkeypatch.setattr(Checkout, "sell", watched_sell)
    monkeypatch.setattr(Service, "commit", watched_commit)
    return seen


@pytest.fixture
def till(tmp_path: Path, paths: Paths) -> Iterator[Daemon]:
    """A till whose every tap rings a demo sale, holding head office's payment key and the
    certificate of Aiko's phone (so the phone's payment codes are checked offline)."""
    with running_till(tmp_path, sale={"auto_amount": 700}) as daemon:
        store = daemon.store
        assert store is not None
        install_member_key(store, PAY_KEY, "K-pay")
        with store.db.conn:
            store.db.conn.execute(
                "UPDATE hq_keys SET body = replace(body, '\"member\"', '\"payment\"') WHERE key_id = 'K-pay'"
            )
        store.put_device_certs({CERT.cert_id.hex(): CERT.to_doc()})
        yield daemon


def sales(daemon: Daemon) -> list[JournalEntry]:
    assert daemon.store is not None
    return [e for e in daemon.store.entries() if e.kind == "sale"]


def post(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = client.post(path, json=body or {})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_every_entry_point_commits_through_the_one_sale_path(till: Daemon, paths: Paths) -> None:
    headers = {"Authorization": f"Bearer {till.api_token}"}
    with httpx.Client(base_url=base_url(till), headers=headers, timeout=10) as client:
        # 1. The demo: a tap rings a sale by itself (on the reader's thread).
        till.tap_sim(AIKO_UID)
        wait_until(lambda: len(sales(till)) == 1, what="the demo's sale on the tap")
        wait_until(lambda: till.session is not None and till.session.snapshot()["member"] is not None)
        post(client, "/v1/session/new")

        # 2. The POS: POST /v1/sales.
        pos = post(client, "/v1/sales", {"member_id": "M-2", "lines": LINES})
        assert pos["kind"] == "sale"

        # 3. The cashier's session: identify, basket, pay, confirm.
        post(client, "/v1/session/identify", {"member_id": "M-2"})
        post(client, "/v1/session/basket", {"lines": LINES})
        post(client, "/v1/session/pay", {"redeem": 0})
        assert post(client, "/v1/session/commit")["state"] == "done"

        # 4. A member's payment code, scanned in the payment step: the sale is recorded at once.
        post(client, "/v1/session/identify", {"member_id": "M-1"})
        post(client, "/v1/session/basket", {"lines": LINES})
        post(client, "/v1/session/pay", {"redeem": 0})
        code = pay.make_code(PHONE, CERT.cert_id, int(time.time()), 1)
        assert post(client, "/v1/session/scan", {"text": code})["state"] == "done"

        # 5. A receipt the POS printed (the printer in the middle): the session's member, then anonymous.
        assert till.session is not None
        post(client, "/v1/session/identify", {"member_id": "M-2"})
        digest = "ab" * 32
        sold = till.session.receipt_sale(Basket(tuple(Line(**x) for x in LINES)), ReceiptRef(digest, "R-1", "POS-1"))
        assert sold.member is not None and sold.claim is None
        assert sold.tier is not None and sold.tier.startswith(f"Tier: {sold.member.tier}")
        # a dishonest cashier cannot attach the same receipt to a second sale
        with pytest.raises(Rejected) as twice:
            till.session.receipt_sale(Basket(tuple(Line(**x) for x in LINES)), ReceiptRef(digest, "R-1", "POS-1"))
        assert twice.value.code is Code.RECEIPT_ALREADY_USED

    recorded = sales(till)
    assert len(recorded) == 5
    # (six commits: the second sale of the same receipt was refused inside its transaction)
    assert paths.commits == [True] * 6, "a sale was committed outside Checkout.sell"
    assert len(paths.orders) == 6
    # The path priced what the POS, the demo and the receipts asked for, and committed the quotes the
    # cashier saw.
    assert [o.quote is None for o in paths.orders] == [True, True, False, False, True, True]
    assert recorded[4].payload["receipt_digest"] == digest and recorded[4].payload["receipt_number"] == "R-1"
    assert recorded[4].payload["pos_id"] == "POS-1" and recorded[3].payload["receipt_digest"] is None
    # One path, one journal shape: the same fields in every sale's entry, whoever rang it.
    shapes = {frozenset(entry.payload) for entry in recorded}
    assert len(shapes) == 1, shapes
    by = [(e.payload["member_id"], e.payload["total"], e.payload["paid_by"]) for e in recorded]
    assert by == [
        ("M-1", 700, "pos"),
        ("M-2", 900, "pos"),
        ("M-2", 900, "pos"),
        ("M-1", 900, "payment_code"),
        ("M-2", 900, "pos"),
    ]
    # The till's last tap (Aiko's card) goes with her sales, whichever entry point rang them.
    assert recorded[0].payload["uid_hash"] and recorded[3].payload["uid_hash"] == recorded[0].payload["uid_hash"]
    assert recorded[1].payload["uid_hash"] is None


def test_a_refused_pos_sale_is_an_event_and_records_nothing(till: Daemon, paths: Paths) -> None:
    with pytest.raises(Rejected):
        till.sell("M-404", Basket((Line("LATTE", 1, 450, "coffee"),)))
    assert sales(till) == [] and paths.commits == [] and len(paths.orders) == 1
    assert any(e["type"] == "rejected" and e["code"] == "unknown_member" for e in till.events_after(0))


def test_the_pos_quote_holds_a_personal_coupon_back_without_the_members_proof(till: Daemon, paths: Paths) -> None:
    """Through the local API: on Aiko's number alone her own 5.00 off (``BIGSPEND``) is held back with
    ``proof_needed``, in the quote and in the sale; with her phone's payment code it applies."""
    big = [{"sku": "TV", "quantity": 1, "unit_price": 12000, "category": "av"}]
    headers = {"Authorization": f"Bearer {till.api_token}"}
    with httpx.Client(base_url=base_url(till), headers=headers, timeout=10) as client:
        typed = post(client, "/v1/quote", {"member_id": "M-1", "lines": big})
        assert typed["coupons"] == [] and ["BIGSPEND", Code.PROOF_NEEDED.value] in typed["refused"]
        refused = client.post("/v1/sales", json={"member_id": "M-1", "lines": big, "coupons": ["BIGSPEND"]})
        assert refused.status_code == 409 and refused.json()["code"] == Code.PROOF_NEEDED.value
        without = post(client, "/v1/sales", {"member_id": "M-1", "lines": big, "coupons": ["NOPE"]})
        assert without["total"] == 12000  # rung without them, and the receipt says which and why
        assert sorted(map(tuple, without["refused"])) == [("BIGSPEND", "proof_needed"), ("NOPE", "unknown_coupon")]
        code = pay.make_code(PHONE, CERT.cert_id, int(time.time()), 7)
        shown = post(client, "/v1/quote", {"member_id": "M-1", "lines": big, "payment_code": code})
        assert shown["coupons"] == ["BIGSPEND"] and shown["payable"] == 11500
        sold = post(client, "/v1/sales", {"member_id": "M-1", "lines": big, "payment_code": code, "stored_value": 0})
    assert sold["kind"] == "sale" and sold["refused"] == []
    entry = sales(till)[-1]
    assert entry.payload["coupons"] == ["BIGSPEND"] and entry.payload["proof"] == "payment_code"
