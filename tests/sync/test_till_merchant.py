"""Tills learn their merchant with the pull, keep it in their store, refuse another merchant's coupons, and
write it into every journal entry; head office flags another merchant's coupon used at a store, and an entry
naming another merchant than its store's. Real head-office server (in a thread) on SQLite and PostgreSQL,
real till stores, services and sync clients."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hq import merchants
from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.store import HqStore
from sync.client import SyncClient, _page_docs, _page_models
from sync.protocol import ChangesPage, WireEntry
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries

COUPONS = {
    "C-BAKERY": {"coupon_id": "C-BAKERY", "kind": "amount_off", "value": 100, "merchant_id": "M-A"},
    "C-BOOKS": {"coupon_id": "C-BOOKS", "kind": "amount_off", "value": 100, "merchant_id": "M-B"},
    "C-CHAIN": {"coupon_id": "C-CHAIN", "kind": "amount_off", "value": 100},
}


@dataclass
class Chain:
    hq: HqStore
    server: ServerHandle
    tokens: dict[str, str]
    tmp: Path


@dataclass
class Till:
    store: Store
    client: SyncClient
    service: Service

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def chain(tmp_path: Path, hq_url: str) -> Iterator[Chain]:
    hq = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))
    hq.set_rule("base", 1, 100)
    hq.upsert_member("M-1", "Aiko", "gold", 0)
    with hq.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery")
        merchants.add(tx, "M-B", "Books")
        merchants.assign_store(tx, "S-A", "M-A", "UTC")
        merchants.assign_store(tx, "S-B", "M-B", "UTC")
    for doc in COUPONS.values():
        hq.put_coupon(doc)
    tokens = {"T-A": hq.add_terminal("T-A", "S-A"), "T-B": hq.add_terminal("T-B", "S-B")}
    server = start_in_thread(hq)
    yield Chain(hq, server, tokens, tmp_path)
    server.stop()
    hq.close()


def open_till(chain: Chain, terminal_id: str, store_id: str, sync: bool = True) -> Till:
    store = Store.open(chain.tmp / terminal_id / "t.db")
    client = SyncClient(store, terminal_id, chain.server.url, chain.tokens[terminal_id], timeout=5)
    if sync:
        client.sync_once()
    return Till(store, client, Service(store, terminal_id, store_id=store_id))


def refusals(till: Till, *coupons: str) -> dict[str, str]:
    quote = till.service.quote("M-1", Basket((Line("BREAD", 1, 1500),)), list(coupons))
    return dict(quote.refused)


def items(hq: HqStore, terminal_id: str) -> list[tuple[str, str]]:
    with hq.db.read() as tx:
        rows = tx.all(
            "SELECT txn_id, reason FROM recon_items WHERE terminal_id = ? ORDER BY txn_id, reason", [terminal_id]
        )
    return [(str(r[0]), str(r[1])) for r in rows]


def test_a_till_learns_its_merchant_and_refuses_another_merchants_coupon(chain: Chain) -> None:
    bakery = open_till(chain, "T-A", "S-A")
    try:
        assert bakery.store.merchant_id() == "M-A"
        assert refusals(bakery, "C-BAKERY", "C-BOOKS", "C-CHAIN") == {"C-BOOKS": "coupon_other_merchant"}
        with chain.hq.db.write() as tx:  # the store moves to the bookshop: the next pull says so
            merchants.assign_store(tx, "S-A", "M-B", "UTC")
        bakery.client.sync_once()
        assert bakery.store.merchant_id() == "M-B"
        assert refusals(bakery, "C-BAKERY", "C-BOOKS") == {"C-BAKERY": "coupon_other_merchant"}
    finally:
        bakery.close()


def older_page(chain: Chain, terminal_id: str) -> ChangesPage:
    """What an older head office answers: the page without the merchant."""
    got = httpx.get(
        f"{chain.server.url}/v1/changes",
        headers={"Authorization": f"Bearer {chain.tokens[terminal_id]}"},
        timeout=10,
    )
    assert got.status_code == 200 and got.json()["merchant_id"] == "M-A"
    return ChangesPage.model_validate({k: v for k, v in got.json().items() if k != "merchant_id"})


def test_a_till_that_does_not_know_its_merchant_takes_any_coupon_and_keeps_what_it_knows(chain: Chain) -> None:
    till = open_till(chain, "T-A", "S-A", sync=False)
    try:
        page = older_page(chain, "T-A")
        till.store.apply_changes(*_page_models(page), cursor=page.cursor, docs=_page_docs(page))
        assert till.store.merchant_id() is None
        assert refusals(till, "C-BOOKS") == {}  # an older head office: the till cannot tell, head office flags
        till.client.sync_once()
        assert refusals(till, "C-BOOKS") == {"C-BOOKS": "coupon_other_merchant"}
        till.store.apply_changes(*_page_models(page), cursor=page.cursor, docs=_page_docs(page))
        assert till.store.merchant_id() == "M-A"  # a page without it leaves the one held
    finally:
        till.close()


def test_every_entry_carries_the_merchant_the_till_knew_on_the_wire(chain: Chain) -> None:
    bakery = open_till(chain, "T-A", "S-A")
    try:
        quote = bakery.service.quote("M-1", Basket((Line("BREAD", 1, 1500),)), ["C-BAKERY"])
        sale = bakery.service.commit(quote)
        assert [e.merchant_id for e in bakery.store.unpushed(10)] == ["M-A"]
        bakery.client.sync_once()
        with chain.hq.db.read() as tx:
            row = tx.one("SELECT merchant_id FROM journal WHERE txn_id = ?", [sale.txn_id])
        assert row is not None and row[0] == "M-A"
        assert items(chain.hq, "T-A") == []  # its own merchant's coupon, at its own store: nothing to say
    finally:
        bakery.close()


def test_head_office_flags_another_merchants_coupon_from_a_dishonest_till(chain: Chain) -> None:
    """A till credential that pushes what an honest till refuses: the bookshop's coupon at the bakery, and
    an entry claiming to be the bookshop's. Both stored and flagged; the books stay the store's merchant's."""
    sale = entries.sale("M-1", 1500, store_id="S-A", coupons=["C-BOOKS"])
    pushed = [
        WireEntry(
            terminal_id="T-A", seq=1, txn_id="T-A-1", kind="sale", payload=sale, created_at="2026-06-02T10:00:00Z"
        ),
        WireEntry(
            terminal_id="T-A",
            seq=2,
            txn_id="T-A-2",
            kind="sale",
            payload=entries.sale("M-1", 800, store_id="S-A", earned=8),
            created_at="2026-06-02T10:01:00Z",
            merchant_id="M-B",
        ),
    ]
    body = {"terminal_id": "T-A", "entries": [e.model_dump() for e in pushed]}
    answer = httpx.post(
        f"{chain.server.url}/v1/journal",
        json=body,
        headers={"Authorization": f"Bearer {chain.tokens['T-A']}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 2
    assert items(chain.hq, "T-A") == [("T-A-1", "coupon_other_merchant"), ("T-A-2", "merchant_mismatch")]
    with chain.hq.db.read() as tx:
        booked = tx.one("SELECT merchant_id FROM ledger_txns WHERE ledger_txn_id = 'T-A-2'")
    assert booked is not None and booked[0] == "M-A"


def test_an_older_till_journal_gains_the_column_and_its_entries_carry_no_merchant(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store.open(path)
    store.close()
    with sqlite3.connect(path) as conn:  # the journal as m010 left it, with an entry written then
        conn.execute("ALTER TABLE journal DROP COLUMN merchant_id")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_merchant'")
        conn.execute(
            "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) "
            "VALUES (1, 'T-1', 'T-A', 'sale', '{}', '2026-06-01T00:00:00Z')"
        )
    again = Store.open(path)
    try:
        assert [(e.txn_id, e.merchant_id) for e in again.unpushed(10)] == [("T-1", None)]
    finally:
        again.close()
