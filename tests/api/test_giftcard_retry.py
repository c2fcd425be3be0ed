"""A POS's retry of a gift card's sale or load whose answer it never got, through a real till daemon's local API
(SQLite store, service, HTTP on 127.0.0.1): sent again with the same ``request_id``, it is answered as it was, before
the tap is looked for (gone after a restart, or a minute later), and the card is loaded once; an id another kind of
request used is ``request_id_used``, and the id sent with another request (another amount) ``request_id_reused``.
A voucher's sale sent again after a kill: tests/ops/test_pos_retry.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.credentials import card_uid_hash
from terminal.daemon import Daemon
from terminal.model import CardRead, utc_iso
from terminal.ports import CacheDocs
from tests.api.stack import SUN_MASTER, base_url, running_till
from tests.vcard import Ntag424

POLICY = {
    "enabled": True,
    "per_transaction": 10_000,
    "per_day": 20_000,
    "per_member_day": 15_000,
    "offline_total": 20_000,
}


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Daemon]:
    with running_till(tmp_path) as daemon:
        assert daemon.store is not None
        daemon.store.apply_changes([], [], [], 2, CacheDocs(topup_policy=json.dumps(POLICY)))
        yield daemon


def test_a_card_sold_and_loaded_under_a_request_id_is_answered_again_and_loaded_once(
    till: Daemon, tmp_path: Path
) -> None:
    assert till.store is not None
    card = Ntag424(bytes.fromhex("04D1E2F3A4B5C6"), SUN_MASTER)
    uid_hash = card_uid_hash((tmp_path / "card-hash.key").read_bytes(), card.uid)

    def tap() -> None:
        # Head office answered a moment ago (the clock checked): the sync loop may find it gone since, and the till then
        # sells offline, within the policy's offline total: either way the card is sold.
        till.store.set_state(last_sync_ok=utc_iso(time.time()))
        till.on_card(CardRead("sim", "iso14443a", uid_hash, sun=card.ndef_url(), at=time.monotonic()))

    with httpx.Client(base_url=base_url(till), headers={"Authorization": f"Bearer {till.api_token}"}) as api:

        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            return api.post(path, json=body)

        tap()
        sold = post("/v1/giftcards/sell", {"amount": 3000, "request_id": "LANE2-41"})
        assert sold.status_code == 200, sold.text
        till.last_read = None  # the tap is gone (a restart, or a minute passed): the retry still gets its answer
        again = post("/v1/giftcards/sell", {"amount": 3000, "request_id": "LANE2-41"})
        assert again.status_code == 200 and again.json() == sold.json(), again.text
        load = post("/v1/giftcards/load", {"amount": 1000, "request_id": "LANE2-41"})
        assert load.status_code == 409 and load.json()["code"] == "request_id_used", load.text

        tap()
        loaded = post("/v1/giftcards/load", {"amount": 1000, "request_id": "LANE2-42"})
        assert loaded.status_code == 200 and loaded.json()["balance"] == 4000, loaded.text
        tap()  # a fresh tap at hand: the retry still loads nothing
        again = post("/v1/giftcards/load", {"amount": 1000, "request_id": "LANE2-42"})
        assert again.status_code == 200 and again.json() == loaded.json(), again.text
        # The id sent with another request (another amount) is refused, not answered with the first one's answer:
        # the POS would print a load of 20.00 the card never had.
        other = post("/v1/giftcards/load", {"amount": 2000, "request_id": "LANE2-42"})
        assert other.status_code == 409 and other.json()["code"] == "request_id_reused", other.text
        bad = post("/v1/giftcards/load", {"amount": 2000, "request_id": "LANE2\n42"})
        assert bad.status_code == 422 and "request_id" in bad.text, bad.text
        sale = post("/v1/sales", {"lines": [{"sku": "X", "quantity": 1, "unit_price": 100}], "request_id": "LANE2-42"})
        assert sale.status_code == 409 and sale.json()["code"] == "request_id_used", sale.text
        balance = api.get("/v1/giftcards/balance")
        assert balance.status_code == 200 and balance.json()["balance"] == 4000, balance.text

        # A payment by the card and a refund onto it, each sent again: paid once, given back once.
        tap()
        paid = post("/v1/giftcards/pay", {"amount": 1500, "sale_ref": "R-7", "request_id": "LANE2-43"})
        assert paid.status_code == 200 and paid.json()["balance"] == 2500, paid.text
        till.last_read = None
        again = post("/v1/giftcards/pay", {"amount": 1500, "sale_ref": "R-7", "request_id": "LANE2-43"})
        assert again.status_code == 200 and again.json() == paid.json(), again.text
        back = post(f"/v1/giftcards/{paid.json()['txn_id']}/refund", {"amount": 500, "request_id": "LANE2-44"})
        assert back.status_code == 200 and back.json()["balance"] == 3000, back.text
        again = post(f"/v1/giftcards/{paid.json()['txn_id']}/refund", {"amount": 500, "request_id": "LANE2-44"})
        assert again.status_code == 200 and again.json() == back.json(), again.text
        other = post(f"/v1/giftcards/{paid.json()['txn_id']}/refund", {"amount": 400, "request_id": "LANE2-44"})
        assert other.status_code == 409 and other.json()["code"] == "request_id_reused", other.text
        other = post(f"/v1/giftcards/{paid.json()['txn_id']}/refund", {"amount": 500, "request_id": "LANE2-43"})
        assert other.status_code == 409 and other.json()["code"] == "request_id_used", other.text
        tap()
        balance = api.get("/v1/giftcards/balance")
        assert balance.status_code == 200 and balance.json()["balance"] == 3000, balance.text
    kinds = [e.kind for e in till.store.entries() if e.kind.startswith("gift_")]
    assert kinds == ["gift_activate", "gift_load", "gift_redeem", "gift_refund"]
