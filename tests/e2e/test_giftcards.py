"""End to end: gift cards (docs/giftcards.md) with two running tills of two stores, each driven through its
local API as a POS drives it, a real head-office process (SQLite or PostgreSQL) holding the chain's card keys,
and one virtual NTAG 424 DNA (one read counter, as a real card) tapped on the first till's nfcpy ``udp:`` reader
and through the real pcscd + vpcd stack on the second's.

A card is sold at one till and pays at the other store's till with a real secure-card tap, head office
confirming first; a recorded card message replayed at the first till is refused at once; the card pays
offline within the offline rules while head office is down and the payment reaches head office once; a
refund goes back onto the card; a card blocked at a till is refused everywhere once the tills pull."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal import giftcards as gc
from terminal.config import validate
from terminal.credentials import card_uid_hash
from terminal.daemon import Daemon
from tests.fixtures.hq import HqProcess
from tests.fixtures.nfc import IsoDepCard, free_udp_port
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture
from tests.vcard import ISO_DEP_ATR, Ntag424
from tests.waiting import wait_until

pytestmark = [pytest.mark.pcsc, pytest.mark.e2e, pytest.mark.slow]
SUN_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
GIFT_UID = bytes.fromhex("04C1D2E3F40501")
START_S = 120.0


class Replayed(Ntag424):
    """A clone: it answers every read with one message recorded from the genuine card."""

    def __init__(self, uid: bytes, master: bytes, url: str) -> None:
        super().__init__(uid, master)
        self.recorded = url

    def ndef_url(self) -> str:
        return self.recorded


@pytest.fixture(params=["sqlite", "postgres"])
def head_office(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HqProcess]:
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    (tmp_path / "sun.key").write_bytes(SUN_MASTER)
    keys = ("--sun-key-file", str(tmp_path / "sun.key"), "--card-key-file", str(tmp_path / "hq" / "card-hash.key"))
    process = HqProcess(tmp_path / "hq", db, extra=keys)  # it makes its card-hash key file at that path
    process.start(START_S)
    yield process
    process.kill()


class Till:
    """A running till daemon, driven through its local API like a POS."""

    def __init__(self, root: Path, hq: HqProcess, terminal_id: str, store_id: str, reader: str) -> None:
        token = hq.add_terminal(terminal_id, store_id)
        hq.cli(
            "till-topups",
            terminal_id,
            "--enable",
            "--per-transaction",
            "10000",
            "--per-day",
            "50000",
            "--per-member-day",
            "20000",
            "--offline-total",
            "5000",
        )
        root.mkdir(parents=True)
        (root / "sun.key").write_bytes(SUN_MASTER)
        cfg = validate(
            {
                "terminal": {"id": terminal_id, "data_dir": str(root / "data"), "store_id": store_id},
                "security": {"card_key_file": str(hq.key_file)},
                # no debounce: a clone of the same card comes to the reader right after the card left it
                "reader": {"devices": [reader], "sun_key_file": str(root / "sun.key"), "debounce": 0},
                "hq": {
                    "url": hq.url,
                    "token": token,
                    "push_interval": 0.2,
                    "pull_interval": 0.3,
                    "backoff_max": 0.5,
                    "timeout": 2.0,
                },
                "api": {"port": 0},
                "hotkeys": {"devices": [str(root / "no-keyboard")]},
            }
        )
        self.daemon = Daemon(cfg)
        self.daemon.start()

    @property
    def url(self) -> str:
        assert self.daemon.api_server is not None
        return f"http://127.0.0.1:{self.daemon.api_server.port}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.daemon.api_token}"}
        return httpx.request(method, f"{self.url}{path}", json=body or {}, headers=headers, timeout=20)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.call(method, path, body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def refused(self, path: str, body: dict[str, Any]) -> str:
        answer = self.call("POST", path, body)
        assert answer.status_code == 409, answer.text
        return str(answer.json()["code"])

    def pushed(self) -> bool:
        store = self.daemon.store
        assert store is not None
        return store.unpushed(10) == []

    def knows(self, card_id: str, **expected: Any) -> bool:
        store = self.daemon.store
        assert store is not None
        card = store.gift_card(card_id)
        return card is not None and all(getattr(card, k) == v for k, v in expected.items())

    def stop(self) -> None:
        self.daemon.stop()


def tapped(till: Till, since: float) -> bool:
    return till.daemon.last_read is not None and till.daemon.last_read[1] >= since


def tap(card: Any, till: Till) -> None:
    """Put the card on the till's reader (a vpcd card, or an nfcpy card in the field) and take it off once the
    till saw the tap."""
    since = time.monotonic()
    put, take = (card.insert, card.remove) if hasattr(card, "insert") else (card.tap, card.lift)
    put()
    try:
        wait_until(lambda: tapped(till, since), 20, f"{till.daemon.config.terminal.id} to see the tap")
    finally:
        take()


def answering(handler: Ntag424) -> Any:
    return lambda apdu: handler(apdu) or b"\x6d\x00"


def test_a_gift_card_sold_at_one_store_pays_at_another_once_online_and_offline(
    tmp_path: Path, head_office: HqProcess, pcscd: Any, virtual_card: Any
) -> None:
    port = free_udp_port()
    with ExitStack() as stack:
        a = Till(tmp_path / "a", head_office, "T-A", "S-001", f"nfcpy:udp:127.0.0.1:{port}")
        stack.callback(a.stop)
        b = Till(tmp_path / "b", head_office, "T-B", "S-002", f"pcsc:{pcscd.reader}")
        stack.callback(b.stop)
        genuine = Ntag424(GIFT_UID, SUN_MASTER)
        at_a = IsoDepCard(port, GIFT_UID, answering(genuine))  # the same card, held to A's reader
        plastic = virtual_card(uid=GIFT_UID, atr=ISO_DEP_ATR, handler=genuine)  # and to B's
        card_id = gc.card_id(card_uid_hash(head_office.key, GIFT_UID))

        # Sold at A: the POS took 50.00.
        tap(at_a, a)
        sold = a.ok("POST", "/v1/giftcards/sell", {"amount": 5000})
        assert (sold["kind"], sold["card_id"], sold["balance"]) == ("gift_activate", card_id, 5000)
        wait_until(a.pushed, 30, "A to push the sale")
        wait_until(lambda: b.knows(card_id, balance=5000), 30, "B to pull the card")
        # The sale carried its tap's SUN message: head office checked it with its keys and took its read
        # counter (a counter it could not check would be flagged ``gift_proof_invalid`` and not taken).
        assert json.loads(head_office.cli("items", "--terminal-id", "T-A", "--json")) == []
        assert b.knows(card_id, counter=genuine.counter)  # an earlier read of the card is refused from now on

        # Paid at B, another store, with a fresh tap: head office confirms first.
        tap(plastic, b)
        assert b.ok("GET", "/v1/giftcards/balance")["balance"] == 5000
        shown = [e for e in b.daemon.events_after(0) if e["type"] in ("gift_card", "member", "rejected")]
        assert shown[-1]["type"] == "gift_card" and shown[-1]["balance"] == 5000  # its balance, never a member
        paid = b.ok("POST", "/v1/giftcards/pay", {"amount": 1800, "sale_ref": "POS-B-1"})
        assert (paid["amount"], paid["balance"], paid["offline"]) == (-1800, 3200, False)
        recorded = genuine.ndef_url()  # a message read off the card by a skimmer, never used at a till

        # The recorded message, replayed at B by a clone after the genuine card paid at A with a later one.
        tap(at_a, a)
        a.ok("POST", "/v1/giftcards/pay", {"amount": 200})
        clone = virtual_card(uid=GIFT_UID, atr=ISO_DEP_ATR, handler=Replayed(GIFT_UID, SUN_MASTER, recorded))
        tap(clone, b)
        assert b.refused("/v1/giftcards/pay", {"amount": 3000}) == "replayed_card"

        # Head office goes down: B takes a payment offline within the offline rules, and no more.
        wait_until(lambda: a.pushed() and b.pushed(), 30, "both tills to push")
        wait_until(lambda: b.knows(card_id, balance=3000), 30, "B to pull A's payment")
        head_office.kill()
        tap(clone, b)  # offline, B refuses the skimmed message by the read counter head office told it of
        assert b.refused("/v1/giftcards/pay", {"amount": 100}) == "replayed_card"
        tap(plastic, b)
        offline = b.ok("POST", "/v1/giftcards/pay", {"amount": 1000})
        assert (offline["offline"], offline["balance"]) == (True, 2000)
        tap(plastic, b)
        assert b.refused("/v1/giftcards/pay", {"amount": 9000}) == "gift_card_insufficient"
        back = b.ok("POST", f"/v1/giftcards/{offline['txn_id']}/refund", {"amount": 400})
        assert back["balance"] == 2400
        head_office.start(START_S)
        wait_until(b.pushed, 60, "B to push what it took offline")

        shown = httpx.get(
            f"{head_office.url}/v1/admin/giftcards/{card_id}",
            headers={"Authorization": f"Bearer {admin_token(head_office)}"},
            timeout=10,
        ).json()
        assert shown["balance"] == 5000 - 1800 - 200 - 1000 + 400
        assert [a_["kind"] for a_ in shown["activity"]] == [
            "gift_activate",
            "gift_redeem",
            "gift_redeem",
            "gift_redeem",
            "gift_refund",
        ]

        # Blocked at B (reported lost): A refuses the card once it pulls.
        tap(plastic, b)
        b.ok("POST", "/v1/giftcards/block", {"reason": "reported lost"})
        wait_until(lambda: a.knows(card_id, state=gc.State.BLOCKED), 30, "A to pull the block")
        tap(at_a, a)
        assert a.refused("/v1/giftcards/pay", {"amount": 100}) == "gift_card_blocked"


def admin_token(hq: HqProcess) -> str:
    return hq.cli("admin-token", "e2e").strip().splitlines()[-1]
