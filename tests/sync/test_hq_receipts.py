"""Receipts at head office (hq/receipts.py): each sale read from a POS's printed receipt is indexed by its
digest, printed number, POS and store; one receipt sold twice (at two tills, or twice at one) is a
``receipt_sold_twice`` item on the later sale; a replayed push flags nothing; a sale is found by receipt
through the store, the admin API and `tillpoint hq receipt`. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import Reason, WireEntry
from tests.fixtures import entries

CREATED = "2026-03-01T10:00:00.000Z"
STORES = {"T1": "S1", "T2": "S1", "T3": "S2"}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sale(terminal: str, seq: int, receipt: str | None, number: str | None = None, total: int = 1200) -> WireEntry:
    payload: dict[str, Any] = entries.sale(None, total, store_id=STORES[terminal])
    if receipt is not None:
        payload |= {"receipt_digest": digest(receipt), "receipt_number": number, "pos_id": f"POS-{terminal}"}
    return WireEntry(
        terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind="sale", payload=payload, created_at=CREATED
    )


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url, Settings(recompute=False))
    for terminal, store_id in STORES.items():
        hq.add_terminal(terminal, store_id, f"token-{terminal}")
    yield hq
    hq.close()


def sold_twice(store: HqStore) -> list[tuple[str | None, dict[str, Any]]]:
    return [(i.txn_id, i.detail) for i in store.items(reason=Reason.RECEIPT_SOLD_TWICE.value)]


def test_one_receipt_sold_at_two_tills_is_flagged_on_the_later_sale(store: HqStore) -> None:
    assert store.ingest("T1", [sale("T1", 1, "r-1", "0001")]).flagged == 0
    assert store.ingest("T2", [sale("T2", 1, "r-1", "0001")]).flagged == 1
    ((txn, detail),) = sold_twice(store)
    assert txn == "T2-1"
    assert detail == {
        "receipt_digest": digest("r-1"),
        "receipt_number": "0001",
        "pos_id": "POS-T2",
        "first_txn": "T1-1",
        "first_terminal": "T1",
        "first_seq": 1,
    }
    assert store.ingest("T3", [sale("T3", 1, "r-1", "0001")]).flagged == 1  # another store: the same receipt
    assert [t for t, _ in sold_twice(store)] == ["T2-1", "T3-1"]
    assert all(d["first_txn"] == "T1-1" for _, d in sold_twice(store))


def test_one_receipt_sold_twice_at_one_till_is_flagged_in_one_batch_and_across_batches(store: HqStore) -> None:
    reply = store.ingest("T1", [sale("T1", 1, "r-1"), sale("T1", 2, "r-2"), sale("T1", 3, "r-1")])
    assert reply.flagged == 1
    assert store.ingest("T1", [sale("T1", 4, "r-2")]).flagged == 1
    assert sorted((t, d["first_txn"]) for t, d in sold_twice(store)) == [("T1-3", "T1-1"), ("T1-4", "T1-2")]


def test_a_replayed_push_flags_nothing(store: HqStore) -> None:
    first = [sale("T1", 1, "r-1"), sale("T1", 2, "r-1")]
    assert store.ingest("T1", first).flagged == 1
    again = store.ingest("T1", first)
    assert (again.stored, again.duplicates, again.flagged) == (0, 2, 0)
    assert store.ingest("T2", [sale("T2", 1, "r-9")]).flagged == 0
    assert store.ingest("T2", [sale("T2", 1, "r-9")]).flagged == 0  # its own sale, sent again
    assert [t for t, _ in sold_twice(store)] == ["T1-2"]
    with store.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM receipt_sales") == (3,)


def test_sales_without_a_receipt_are_not_indexed_and_never_flagged(store: HqStore) -> None:
    assert store.ingest("T1", [sale("T1", 1, None), sale("T1", 2, None)]).flagged == 0
    with store.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM receipt_sales") == (0,)


def test_a_sale_is_found_by_receipt_number_digest_or_digest_prefix(store: HqStore) -> None:
    store.ingest("T1", [sale("T1", 1, "r-1", "0001", 1200), sale("T1", 2, "r-2", "0002", 800)])
    store.ingest("T3", [sale("T3", 1, "r-3", "0001", 500), sale("T3", 2, "r-1", "0001", 1200)])
    by_number = store.receipt_sales(number="0001")
    assert [(r.txn_id, r.store_id, r.total, r.sold_twice) for r in by_number] == [
        ("T1-1", "S1", 1200, False),
        ("T3-1", "S2", 500, False),
        ("T3-2", "S2", 1200, True),
    ]
    assert [r.txn_id for r in store.receipt_sales(number="0001", store_id="S2")] == ["T3-1", "T3-2"]
    full = store.receipt_sales(digest=digest("r-1"))
    assert [r.txn_id for r in full] == ["T1-1", "T3-2"]
    assert full[0].pos_id == "POS-T1" and full[0].seq == 1 and full[0].effect == "none" and full[0].day
    assert [r.txn_id for r in store.receipt_sales(digest=digest("r-2")[:12].upper())] == ["T1-2"]
    assert store.receipt_sales(digest=digest("r-2"), number="0001") == []
    for bad in ({}, {"digest": "abc"}, {"digest": "zz" * 8}, {"store_id": "S1"}):
        with pytest.raises(ValueError):
            store.receipt_sales(**bad)


def test_the_index_is_built_from_the_journal_when_the_migration_is_applied(hq_url: str) -> None:
    hq = HqStore(hq_url, Settings(recompute=False))
    hq.add_terminal("T1", "S1", "t")
    hq.ingest("T1", [sale("T1", 1, "r-1", "0001"), sale("T1", 2, None), sale("T1", 3, "r-2", "0002")])
    with hq.db.write() as tx:  # the database as it was before m013_receipts
        tx.run("DROP TABLE receipt_sales")
        tx.run("DELETE FROM hq_migrations WHERE name = 'm013_receipts'")
    hq.close()
    again = HqStore(hq_url, Settings(recompute=False), backup=False)
    try:
        assert [r.txn_id for r in again.receipt_sales(number="0002")] == ["T1-3"]
        assert [r.txn_id for r in again.receipt_sales(digest=digest("r-1"))] == ["T1-1"]
        assert again.ingest("T1", [sale("T1", 4, "r-1")]).flagged == 1  # later sales are checked against it
    finally:
        again.close()


@pytest.fixture
def http(store: HqStore) -> Iterator[httpx.Client]:
    handle: ServerHandle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    with httpx.Client(base_url=handle.url, timeout=5, trust_env=False) as client:
        yield client
    handle.stop()


def test_an_admin_looks_a_sale_up_by_receipt_and_a_till_cannot(store: HqStore, http: httpx.Client) -> None:
    store.ingest("T1", [sale("T1", 1, "r-1", "0001")])
    store.ingest("T2", [sale("T2", 1, "r-1", "0001")])
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    got = http.get("/v1/admin/receipts", params={"number": "0001", "store_id": "S1"}, headers=admin)
    assert got.status_code == 200, got.text
    assert [(r["txn_id"], r["sold_twice"]) for r in got.json()] == [("T1-1", False), ("T2-1", True)]
    by_digest = http.get("/v1/admin/receipts", params={"digest": digest("r-1")[:8]}, headers=admin).json()
    assert [r["receipt_digest"] for r in by_digest] == [digest("r-1")] * 2
    refused = http.get("/v1/admin/receipts", headers=admin)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"
    assert http.get("/v1/admin/receipts", params={"digest": "nothex!!"}, headers=admin).status_code == 422
    till = http.get("/v1/admin/receipts", params={"number": "0001"}, headers={"Authorization": "Bearer token-T1"})
    assert till.status_code == 403 and till.json()["code"] == "forbidden"


def test_the_receipt_command(store: HqStore, hq_url: str) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    store.ingest("T1", [sale("T1", 1, "r-1", "0001"), sale("T1", 2, "r-1", "0001")])
    runner = CliRunner()
    shown = runner.invoke(app, ["receipt", "--number", "0001", "--json", "--db", hq_url])
    assert shown.exit_code == 0, shown.output
    assert [(r["txn_id"], r["sold_twice"]) for r in json.loads(shown.output)] == [("T1-1", False), ("T1-2", True)]
    table = runner.invoke(app, ["receipt", "--digest", digest("r-1"), "--db", hq_url])
    assert table.exit_code == 0 and "T1-2" in table.output
    refused = runner.invoke(app, ["receipt", "--db", hq_url])
    assert refused.exit_code == 1 and "digest or its number" in refused.output


def test_one_receipt_pushed_by_two_tills_at_once_is_flagged_exactly_once(store: HqStore) -> None:
    """Concurrent pushes (PostgreSQL: two transactions at once; a lock per receipt makes the later one see
    the first): each receipt sold at both tills is one item, never none and never two."""
    from concurrent.futures import ThreadPoolExecutor

    rounds = 12
    with ThreadPoolExecutor(2) as pool:
        for n in range(1, rounds + 1):
            a = pool.submit(store.ingest, "T1", [sale("T1", n, f"same-{n}")])
            b = pool.submit(store.ingest, "T2", [sale("T2", n, f"same-{n}")])
            assert a.result().flagged + b.result().flagged == 1, n
    flagged = sold_twice(store)
    assert len(flagged) == rounds
    assert sorted(d["receipt_digest"] for _, d in flagged) == sorted(digest(f"same-{n}") for n in range(1, rounds + 1))
