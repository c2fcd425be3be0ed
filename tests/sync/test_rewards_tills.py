"""Rewards bought at the tills: a real head office (its app served by uvicorn on 127.0.0.1, SQLite, then
PostgreSQL; the end-to-end tests run it as a process of its own) and real tills (the till's store, service and
sync client over HTTP). The catalogue reaches the tills with the pull; a reward with a
limited stock sells offline only within the till's allocation; the member's proof is needed; a void gives the
points and the unit back; a stolen till credential gets nothing beyond its allocation or without proof."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import ledger, payments
from hq.api.server import start_in_thread
from hq.store import HqStore
from sync.client import SyncClient
from sync.memberapp import MemberApp
from sync.protocol import Proof, SalePayload, WireEntry
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, utc_iso
from terminal.service import Service
from terminal.store import Store

pytestmark = pytest.mark.slow

LATTE = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "A free latte", "stock": 1}
TENOFF = {
    "reward_id": "TENOFF",
    "reward": "coupon",
    "points": 200,
    "title": "10% off",
    "coupon": {"kind": "percent_off", "value": 10},
}
STORES = {"T-A": "S-A", "T-B": "S-B"}
WIDE = pay.RiskLimits(per_transaction=0, per_member_day=0, terminal_total=0)
NOTHING = Basket(())


@dataclass
class Shop:
    hq: Served
    tokens: dict[str, str]
    phone: MemberApp
    root: Path

    def read(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        store = HqStore(self.hq.db)
        try:
            with store.db.read() as tx:
                return tx.all(sql, params or [])
        finally:
            store.close()

    def points(self, member_id: str = "M-1") -> int:
        return int(self.read("SELECT points FROM members WHERE member_id = ?", [member_id])[0][0])

    def books_balance(self) -> None:
        store = HqStore(self.hq.db)
        try:
            with store.db.read() as tx:
                assert ledger.check(tx) == []
        finally:
            store.close()

    def pool(self, pool_id: str = "reward:LATTE") -> tuple[int, int]:
        """(units used chain-wide, units allocated)."""
        used = self.read("SELECT used FROM pools WHERE pool_id = ?", [pool_id])[0][0]
        allocated = self.read("SELECT COALESCE(SUM(allowed), 0) FROM pool_allocations WHERE pool_id = ?", [pool_id])
        return int(used), int(allocated[0][0])

    def push(self, terminal_id: str, seq: int, payload: dict[str, Any], txn: str | None = None) -> str:
        """What a stolen till credential sends: any sale, as the next entry of that till; its txn id."""
        txn = txn or str(uuid.uuid4())
        entry = WireEntry(
            terminal_id=terminal_id, seq=seq, txn_id=txn, kind="sale", payload=payload, created_at=utc_iso(time.time())
        )
        reply = httpx.post(
            f"{self.hq.url}/v1/journal",
            json={"terminal_id": terminal_id, "entries": [entry.model_dump()]},
            headers={"Authorization": f"Bearer {self.tokens[terminal_id]}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        return txn

    def effect(self, txn_id: str) -> str:
        return str(self.read("SELECT effect FROM journal WHERE txn_id = ?", [txn_id])[0][0])

    def quarantined(self) -> list[str]:
        return sorted(str(r[0]) for r in self.read("SELECT reason FROM recon_items WHERE quarantine = 1"))


@dataclass
class Till:
    store: Store
    client: SyncClient
    service: Service

    def buy(self, member_id: str, *rewards: str, code: str | None = None) -> str:
        quote = self.service.quote(member_id, NOTHING, rewards=rewards)
        return self.service.commit(quote, Payment(0, code)).txn_id


@dataclass(frozen=True)
class Served:
    """Head office's app served on 127.0.0.1 by uvicorn from a thread of the test, over its database."""

    url: str
    db: str


@pytest.fixture
def shop(hq_url: str, tmp_path: Path) -> Iterator[Shop]:
    served = HqStore(hq_url)
    try:
        tokens = {t: served.add_terminal(t, s) for t, s in STORES.items()}
        served.upsert_member("M-1", "Aiko", "gold", 1000)
        served.upsert_member("M-2", "Ben", "basic", 100)
        served.put_reward(LATTE)
        served.put_reward(TENOFF)
        member_token = payments.member_token(served, "M-1")
        server = start_in_thread(served)
    except BaseException:
        served.close()
        raise
    try:
        phone = MemberApp("M-1", tmp_path / "phone")
        phone.register(server.url, member_token)
        yield Shop(Served(server.url, hq_url), tokens, phone, tmp_path)
    finally:
        server.stop()
        served.close()


def open_till(shop: Shop, terminal_id: str) -> Till:
    store = Store.open(shop.root / terminal_id / "terminal.db")
    client = SyncClient(store, terminal_id, shop.hq.url, shop.tokens[terminal_id], timeout=5)
    client.sync_once()  # the catalogue and this till's allocations come with the pull
    return Till(store, client, Service(store, terminal_id, store_id=STORES[terminal_id], limits=WIDE))


@pytest.fixture
def tills(shop: Shop) -> Iterator[tuple[Till, Till]]:
    pair = (open_till(shop, "T-A"), open_till(shop, "T-B"))
    yield pair
    for till in pair:
        till.client.close()
        till.store.close()


def refused(expected: Code, call: Any, /, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(Rejected) as info:
        call(*args, **kwargs)
    assert info.value.code is expected, info.value


def test_a_reward_bought_with_points_at_two_offline_tills_with_stock_for_one(
    shop: Shop, tills: tuple[Till, Till]
) -> None:
    a, b = tills
    assert set(a.service.rewards()) == {"LATTE", "TENOFF"}  # the catalogue came down with the pull
    assert a.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 1}
    assert b.store.pool_headroom(["reward:LATTE"]) == {}  # the one unit is held by the other till
    # Both tills are offline from here on: neither pushes nor pulls.
    refused(Code.PROOF_NEEDED, a.buy, "M-1", "LATTE")  # knowing the member id never spends points
    assert a.store.entries() == []
    sold = a.buy("M-1", "LATTE", code=shop.phone.next_code())
    refused(Code.REWARD_ALLOCATION_USED, b.buy, "M-1", "LATTE", code=shop.phone.next_code())
    refused(Code.REWARD_ALLOCATION_USED, a.buy, "M-1", "LATTE", code=shop.phone.next_code())
    assert b.store.entries() == [] and len(a.store.entries()) == 1
    payload = a.store.entries()[0].payload
    assert payload["rewards"] == [{"reward_id": "LATTE", "points": 300}] and payload["points_redeemed"] == 300
    # Back online: head office counts the one unit, once, and the points once.
    a.client.sync_once()
    b.client.sync_once()
    a.client.sync_once()
    assert shop.points() == 700
    assert shop.pool() == (1, 1)
    assert shop.read("SELECT channel, terminal_id, txn_id FROM reward_purchases") == [("till", "T-A", sold)]
    assert shop.quarantined() == []
    shop.books_balance()


def test_a_coupon_reward_is_issued_by_head_office_and_a_void_of_an_item_reward_gives_back_points_and_stock(
    shop: Shop, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    sold = a.buy("M-1", "LATTE", code=shop.phone.next_code())
    assert a.service.member("M-1").points == 700
    a.client.sync_once()
    assert shop.points() == 700 and shop.pool() == (1, 1)
    a.service.void(sold)
    assert a.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 1}  # the unit is this till's again
    assert a.service.member("M-1").points == 1000
    a.client.sync_once()
    assert shop.points() == 1000 and shop.pool() == (0, 1)
    assert shop.read("SELECT COUNT(*) FROM reward_purchases WHERE refunded_at IS NULL")[0][0] == 0
    # A coupon reward is the member's once bought: issued by head office, sent down to every till, never voided
    # at a till (tests/sync/test_rewards_till_returns.py).
    a.buy("M-1", "TENOFF", code=shop.phone.next_code())
    a.client.sync_once()
    assert shop.points() == 800
    issued = shop.read("SELECT coupon_id FROM reward_purchases WHERE reward_id = 'TENOFF'")[0][0]
    body = shop.read("SELECT member_id, deleted FROM coupons WHERE coupon_id = ?", [issued])
    assert body == [("M-1", 0)]
    assert shop.quarantined() == []
    shop.books_balance()


def test_insufficient_points_at_the_till_is_refused_and_writes_nothing(shop: Shop, tills: tuple[Till, Till]) -> None:
    a, _ = tills
    refused(Code.INSUFFICIENT_POINTS, a.buy, "M-2", "LATTE", code=shop.phone.next_code())
    refused(Code.REWARD_UNKNOWN, a.buy, "M-1", "NOPE", code=shop.phone.next_code())
    refused(Code.NO_MEMBER, a.service.quote, None, NOTHING, rewards=["TENOFF"])
    assert a.store.entries() == [] and a.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 1}
    a.client.sync_once()
    assert shop.points("M-2") == 100 and shop.pool() == (0, 1)


def _reward_sale(reward_id: str, points: int, code: str | None = None) -> dict[str, Any]:
    """A sale of one reward as a till writes it; ``code``: the member's payment code (their proof), else the
    POS's word, which head office does not take as a proof."""
    return SalePayload(
        member_id="M-1",
        store_id="S-B",
        total=0,
        payable=0,
        points_redeemed=points,
        points_delta=-points,
        lines=[{"sku": f"reward:{reward_id}", "quantity": 1, "unit_price": 0, "category": "reward"}],  # type: ignore[list-item]
        local_time=dt.datetime.now().isoformat(timespec="seconds"),
        proof=Proof.PAYMENT_CODE if code else Proof.POS,
        payment_code=code,
        code_id=pay.parse_code(code).code_id if code else None,
        rewards=[{"reward_id": reward_id, "points": points}],  # type: ignore[list-item]
        reward_points=points,
    ).wire()


def test_a_stolen_till_credential_takes_no_reward_beyond_its_allocation_or_without_proof(
    shop: Shop, tills: tuple[Till, Till]
) -> None:
    phone = shop.phone
    beyond = shop.push("T-B", 1, _reward_sale("LATTE", 300, phone.next_code()))  # T-B holds none of the one unit
    no_proof = shop.push("T-B", 2, _reward_sale("TENOFF", 200))  # the member's id alone
    cheap = shop.push("T-B", 3, _reward_sale("TENOFF", 1, phone.next_code()))  # at a price of its own
    unknown = shop.push("T-B", 4, _reward_sale("GOLDBAR", 1, phone.next_code()))
    assert {shop.effect(t) for t in (beyond, no_proof, cheap, unknown)} == {"quarantined"}
    assert shop.quarantined() == ["proof_missing", "reward_allocation_exceeded", "reward_invalid", "reward_invalid"]
    assert shop.points() == 1000 and shop.pool() == (0, 1)
    assert shop.read("SELECT COUNT(*) FROM reward_purchases")[0][0] == 0
    assert shop.read("SELECT COUNT(*) FROM coupons WHERE member_id = 'M-1'")[0][0] == 0
    shop.books_balance()
    # An administrator who releases the sale beyond the allocation applies it whole: the points move, the unit is
    # counted, and the till is blocked for that stock (granted nothing more).
    admin = HqStore(shop.hq.db)
    try:
        assert admin.release(beyond, "Mio", "the customer did get the latte") == "applied"
    finally:
        admin.close()
    assert shop.points() == 700 and shop.pool()[0] == 1
    assert shop.read("SELECT reward_id, terminal_id FROM reward_purchases") == [("LATTE", "T-B")]
    assert shop.read("SELECT blocked FROM pool_allocations WHERE terminal_id = 'T-B'") == [(1,)]
    shop.books_balance()


def test_a_till_killed_after_the_sale_pushes_it_once_and_a_replay_counts_nothing(
    shop: Shop, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    sold = a.buy("M-1", "LATTE", code=shop.phone.next_code())
    a.client.close()
    a.store.close()  # the till stops before it pushed: the sale is in its journal file only
    again = open_till(shop, "T-A")  # started again on the same file: it pushes, then pulls
    try:
        assert shop.points() == 700 and shop.pool() == (1, 1)
        entry = again.store.entries()[0]
        assert entry.txn_id == sold
        shop.push("T-A", entry.seq, entry.payload, txn=sold)  # the same entry replayed by whoever holds it
        assert shop.points() == 700 and shop.pool() == (1, 1)
        assert shop.read("SELECT COUNT(*) FROM reward_purchases")[0][0] == 1
        assert again.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 0}
        refused(Code.REWARD_ALLOCATION_USED, again.buy, "M-1", "LATTE", code=shop.phone.next_code())
    finally:
        again.client.close()
        again.store.close()
    shop.books_balance()
