"""A lost answer to a till's online confirmation (``POST /v1/payments/confirm``, ``/v1/giftcards/confirm``):
head office recorded the confirmation and holds its amount back from the balance until the sale's entry
arrives; the network drops the answer (or the till stops waiting), the till falls back to its offline rules,
and when those refuse no sale is ever journalled. The till withdraws such a confirmation (``Service`` notes
it, the sync loop sends ``POST /v1/payments/withdraw`` until acknowledged), so the member's money is not held
for ever; a confirmation whose sale the till did record stays held until the entry arrives, and a till that
withdraws a confirmation and sends its sale anyway is caught as an overspend."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from terminal import giftcards as gc
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.hq import HqProcess
from tests.security.chain import STORES, SUN_MASTER, Chain, Till

DROP = b"POST /v1/payments/confirm"
TV = Basket((Line("TV", 1, 3000),))
RADIO = Basket((Line("RADIO", 1, 1500),))
ALL = Basket((Line("SOFA", 1, 5000),))


@dataclass
class DroppingNetwork:
    """A TCP relay to head office that passes every request on, and swallows the answer to a payment
    confirmation (the connection is then cut): head office did the work, the till never hears of it. ``limit``:
    how many answers it swallows (None: every one)."""

    target: tuple[str, int]
    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    limit: int | None = None
    dropping: int = 0
    dropped: int = 0
    stopping: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:  # head office down: the till's connection is refused as it would be without the relay
            _cut(client)
            return
        swallow = threading.Event()

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    if swallow.is_set():
                        self.dropped += 1
                        return  # the answer is lost on the way
                    client.sendall(data)
            except OSError:
                pass
            finally:
                _cut(client)

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if DROP in data and not swallow.is_set() and (self.limit is None or self.dropping < self.limit):
                    self.dropping += 1
                    swallow.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


def _cut(conn: socket.socket) -> None:
    """Cut a connection at once: a plain ``close`` while another thread waits in ``recv`` on it sends nothing,
    and the peer would wait for its timeout."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


@pytest.fixture
def network(chain: Chain) -> Iterator[DroppingNetwork]:
    parsed = urlparse(chain.hq.url)
    relay = DroppingNetwork((parsed.hostname or "127.0.0.1", parsed.port or 80))
    relay.start()
    yield relay
    relay.stop()


def till_behind(chain: Chain, network: DroppingNetwork, terminal_id: str) -> Till:
    """A till reaching head office through the network that drops confirmation answers; its offline limit
    for one payment is 2,000."""
    store = Store.open(chain.root / terminal_id / "terminal.db")
    client = SyncClient(store, terminal_id, network.url, chain.tokens[terminal_id], timeout=5)
    client.sync_once()
    service = Service(
        store,
        terminal_id,
        store_id=STORES[terminal_id],
        limits=pay.RiskLimits(per_transaction=2_000, per_member_day=0, terminal_total=0),
        sun_master_key=SUN_MASTER,
    )
    service.confirm_online = confirmer(client)
    return Till(terminal_id, store, client, service)


def pay_by_phone(chain: Chain, till: Till, basket: Basket) -> None:
    till.service.commit(till.service.quote("M-1", basket), Payment(None, chain.phone.next_code()))


def withdraw(chain: Chain, terminal_id: str, txn_ids: list[str]) -> int:
    reply = httpx.post(
        f"{chain.hq.url}/v1/payments/withdraw",
        json={"txn_ids": txn_ids},
        headers={"Authorization": f"Bearer {chain.tokens[terminal_id]}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return int(reply.json()["withdrawn"])


def test_a_confirmation_whose_answer_was_lost_and_sale_refused_is_withdrawn(
    chain: Chain, tills: tuple[Till, Till], network: DroppingNetwork
) -> None:
    _, b = tills
    a = till_behind(chain, network, "T-A")
    try:
        with pytest.raises(Rejected) as refused:  # confirmed by head office, answer lost, 3,000 > 2,000 offline
            pay_by_phone(chain, a, TV)
        assert refused.value.code is Code.OFFLINE_LIMIT_TRANSACTION
        assert network.dropped == 1 and a.store.entries() == []
        assert len(a.store.withdrawals(10)) == 1
        a.client.sync_once()  # the withdrawal goes with the till's next round, and is forgotten once taken
        assert a.store.withdrawals(10) == []
        assert chain.balance().stored_value == 5000
        pay_by_phone(chain, b, TV)  # online at another till: nothing held any more
        b.client.sync_once()
        assert chain.balance().stored_value == 2000
    finally:
        a.close()


def test_a_confirmation_whose_sale_was_recorded_stays_held_until_the_sale_arrives(
    chain: Chain, tills: tuple[Till, Till], network: DroppingNetwork
) -> None:
    """The answer is lost but the offline rules take the payment: the till withdraws nothing, and head office
    keeps the amount back until the entry arrives, so the member cannot spend it again at another till."""
    _, b = tills
    a = till_behind(chain, network, "T-A")
    try:
        pay_by_phone(chain, a, RADIO)  # 1,500: within the offline limit, recorded as offline
        assert len(a.store.entries()) == 1 and a.store.withdrawals(10) == []
        with pytest.raises(Rejected) as refused:  # 5,000 online at B: 1,500 of it is held for A's sale
            pay_by_phone(chain, b, ALL)
        assert refused.value.code is Code.INSUFFICIENT_BALANCE
        a.client.sync_once()
        assert chain.balance().stored_value == 3500
    finally:
        a.close()


def test_a_till_withdraws_only_its_own_confirmations_and_never_a_journalled_one(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, b = tills
    pay_by_phone(chain, a, TV)  # confirmed online, recorded, not pushed yet
    txn_id = a.store.entries()[-1].txn_id
    assert withdraw(chain, "T-B", [txn_id]) == 0  # another till's confirmation: still held
    with pytest.raises(Rejected) as refused:
        pay_by_phone(chain, b, ALL)
    assert refused.value.code is Code.INSUFFICIENT_BALANCE
    a.client.sync_once()
    assert withdraw(chain, "T-A", [txn_id]) == 0  # its entry arrived: nothing to withdraw
    assert chain.balance().stored_value == 2000


def test_a_till_that_withdraws_a_confirmation_and_sends_its_sale_anyway_is_flagged(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """The bound on a dishonest till (or a member colluding with its cashier): a withdrawal frees only what
    head office held for that till's own confirmation, the code stays used, and the sale it sends after all is
    applied like any payment: the balance goes below zero, is carried, and is flagged for reconciliation."""
    a, b = tills
    pay_by_phone(chain, a, TV)  # confirmed and recorded at A ...
    txn_id = a.store.entries()[-1].txn_id
    assert withdraw(chain, "T-A", [txn_id]) == 1  # ... yet withdrawn before it was pushed
    pay_by_phone(chain, b, ALL)  # the whole 5,000 again at B
    b.client.sync_once()
    a.client.sync_once()  # A's sale arrives after all
    assert chain.balance().stored_value == -3000
    assert ("stored_value_overspent", False) in chain.reasons()
    with pytest.raises(Rejected) as refused:  # nothing more is confirmed while the balance is negative
        pay_by_phone(chain, b, RADIO)
    assert refused.value.code is Code.INSUFFICIENT_BALANCE


def test_a_withdrawn_gift_card_confirmation_frees_the_card(hq_gift: tuple[str, str, str, str, str]) -> None:
    """The gift card shape: a confirmed payment never journalled holds the card's value back from every later
    payment and from clearing the card, until its till withdraws it; another till cannot."""
    url, token, other, card_id, uid_hash = hq_gift
    tap = {"uid_hash": uid_hash, "trust": "mac"}

    def confirm(amount: int, txn_id: str | None = None) -> httpx.Response:
        body = {"card_id": card_id, "amount": amount, "txn_id": txn_id or str(uuid.uuid4()), "tap": tap}
        return httpx.post(f"{url}/v1/giftcards/confirm", json=body, headers=_bearer(token), timeout=10)

    def withdrawn(by: str, txn_id: str) -> int:
        reply = httpx.post(f"{url}/v1/payments/withdraw", json={"txn_ids": [txn_id]}, headers=_bearer(by), timeout=10)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["withdrawn"])

    lost = str(uuid.uuid4())
    assert confirm(3000, lost).status_code == 200  # the answer the network drops
    held = confirm(3000)
    assert held.status_code == 409 and held.json()["code"] == Code.GIFT_CARD_INSUFFICIENT.value
    assert withdrawn(other, lost) == 0
    assert withdrawn(token, lost) == 1 and withdrawn(token, lost) == 0  # a repeat changes nothing
    again = confirm(3000)
    assert again.status_code == 200, again.text
    assert confirm(3000, lost).status_code == 422  # a withdrawn confirmation is not confirmed again


@pytest.fixture
def hq_gift(tmp_path: Any) -> Iterator[tuple[str, str, str, str, str]]:
    process = HqProcess(tmp_path)
    store = HqStore(process.db)
    uid_hash = "cd" * 32
    try:
        token = store.add_terminal("T-G", "S-001")
        other = store.add_terminal("T-H", "S-001")
        card = store.import_gift_card(uid_hash, 5000, "Mio", "old system")
    finally:
        store.close()
    assert card.card_id == gc.card_id(uid_hash)
    process.start()
    yield process.url, token, other, card.card_id, uid_hash
    process.kill()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_confirmation_arriving_after_its_withdrawal_is_refused_and_holds_nothing(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """The withdrawal overtakes the confirmation it withdraws (head office slow past the till's timeout, a network
    delaying the request, the sync loop sending the withdrawal a moment later): head office keeps the withdrawal,
    refuses the late confirmation, and the member's whole balance stays spendable at another till."""
    _, b = tills
    txn_id = str(uuid.uuid4())
    code = chain.phone.next_code()
    assert withdraw(chain, "T-A", [txn_id]) == 0  # nothing to withdraw yet: kept all the same
    late = httpx.post(
        f"{chain.hq.url}/v1/payments/confirm",
        json={
            "member_id": "M-1",
            "amount": TV.total,
            "txn_id": txn_id,
            "code_id": pay.parse_code(code).code_id,
            "code": code,
        },
        headers={"Authorization": f"Bearer {chain.tokens['T-A']}"},
        timeout=10,
    )
    assert late.status_code == 409 and "withdrawn" in late.text, late.text
    pay_by_phone(chain, b, ALL)  # the whole 50.00, at another till
