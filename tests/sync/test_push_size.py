"""Pushes sized to what head office takes. A backlog of large sales (hundreds of lines each) reaches head office's
body cap (``body_too_large``) long before ``hq.batch_size`` entries: the till caps each push by its JSON size too,
halves a batch head office still refuses, down to one entry, and keeps to the smaller size. An entry head office
refuses even alone is kept in the till's journal, listed in its status and reported to head office (a
``journal_lost`` item naming its txn), and the entries after it go on.

Head office's real app on 127.0.0.1 with its body cap lowered to 64 KiB, so a backlog of a few hundred KiB
stands for one of tens of MiB; a real till store."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import hq.api.app
from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.store import HqStore
from sync.client import HqRejected, SyncClient, fitting, wire_bytes
from sync.protocol import ErrorCode
from terminal.daemon import store_status
from terminal.model import JournalEntry
from terminal.store import Store
from tests.fixtures import entries

CAP = 64 * 1024
TOKEN = "t-big-token"


def sale_entry(lines: int) -> JournalEntry:
    """A sale of ``lines`` lines, SKUs and categories at the protocol's 64 characters (~190 bytes a line)."""
    basket = [
        {"sku": f"{n:05d}".ljust(64, "S"), "quantity": 1, "unit_price": 199, "category": "C" * 64} for n in range(lines)
    ]
    payload = entries.sale(None, 199 * lines, store_id="S-001", lines=basket)
    return JournalEntry("T-BIG", 0, str(uuid.uuid4()), "sale", payload, "2026-03-01T11:00:00.000Z")


@pytest.fixture
def hq_store(tmp_path: Path) -> Iterator[HqStore]:
    store = HqStore(str(tmp_path / "hq.db"), Settings(recompute=False))
    store.add_terminal("T-BIG", "S-001", TOKEN)
    yield store
    store.close()


@pytest.fixture
def server(hq_store: HqStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerHandle]:
    monkeypatch.setattr(hq.api.app, "MAX_BODY", CAP)  # read when the app is made
    handle = start_in_thread(hq_store, "127.0.0.1", 0, timeout=10)
    yield handle
    handle.stop()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "terminal.db")
    yield store
    store.close()


def record(till: Store, *sizes: int) -> None:
    for lines in sizes:
        till.record(sale_entry(lines))


def client(till: Store, url: str) -> SyncClient:
    return SyncClient(till, "T-BIG", url, TOKEN, end_of_day=False, timeout=30)


def held_seqs(hq_store: HqStore) -> list[int]:
    with hq_store.db.read() as tx:
        return [int(r[0]) for r in tx.all("SELECT seq FROM journal WHERE terminal_id = 'T-BIG' ORDER BY seq")]


def test_a_batch_is_cut_to_its_json_size_keeping_at_least_one_entry(till: Store) -> None:
    record(till, *([1] * 10), 100)
    small, large = till.entries(0, 1)[0], till.entries(10, 1)[0]
    one = wire_bytes([small])
    assert len(fitting([small] * 10, 3 * one + one // 2)) == 3
    assert len(fitting([small] * 10, 10 * one)) == 10
    assert fitting([large, small], one) == [large]  # the first entry goes whatever its size
    assert fitting([], one) == []


def test_a_push_keeps_to_its_size_cap(till: Store) -> None:
    record(till, *([20] * 30))  # ~4 KiB each
    bodies: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(gzip.decompress(request.content))
        bodies.append(len(json.dumps(body["entries"], separators=(",", ":"))))
        top = body["entries"][-1]["seq"]
        return httpx.Response(200, json={"acked_seq": top, "stored": len(body["entries"]), "duplicates": 0})

    sync = SyncClient(till, "T-BIG", "http://hq.test", "tok", transport=httpx.MockTransport(handler), end_of_day=False)
    sync.push_max_bytes = 16 * 1024
    assert sync.push_all() == 30
    assert len(bodies) > 1 and max(bodies) <= 16 * 1024


def test_a_backlog_larger_than_head_office_takes_at_once_drains(
    till: Store, server: ServerHandle, hq_store: HqStore
) -> None:
    record(till, *([20] * 60))  # ~250 KiB of journal: four times head office's cap, in one batch by count
    sync = client(till, server.url)
    try:
        assert sync.push_all() == 60
    finally:
        sync.close()
    assert held_seqs(hq_store) == list(range(1, 61))
    assert till.pending_count() == 0
    assert sync.push_max_bytes < CAP  # the pushes after the refusal kept to the smaller size


def test_an_entry_head_office_refuses_even_alone_is_reported_and_the_rest_go_on(
    till: Store, server: ServerHandle, hq_store: HqStore
) -> None:
    record(till, 1, 1, 500, 1, 1)  # seq 3: ~95 KiB, more than head office takes in a body
    big = till.entries(2, 1)[0]
    sync = client(till, server.url)
    try:
        sync.push_all()
        assert sync.push_once() == 0  # nothing left: the refused entry is not sent again and again
    finally:
        sync.close()
    assert held_seqs(hq_store) == [1, 2, 4, 5]
    assert till.pending_count() == 0
    assert [e.seq for e in till.entries(0, 10)] == [1, 2, 3, 4, 5]  # kept in the till's journal
    refused = store_status(till)["push_refused"]
    assert [(r["seq"], r["txn_id"], r["code"]) for r in refused] == [(3, big.txn_id, ErrorCode.BODY_TOO_LARGE.value)]
    state = hq_store.journal_state("T-BIG")
    assert (state.acked_seq, state.lost) == (5, [(3, 3)])
    [item] = [i for i in hq_store.items() if i.reason == "journal_lost"]
    assert big.txn_id in json.dumps(item.model_dump(mode="json"))

    sync = client(till, server.url)
    try:
        sync.flags()  # the item is open: the till goes on showing the refused entry
        assert [r["seq"] for r in store_status(till)["push_refused"]] == [3]
        hq_store.settle(item.item_id, "ops", "rung again by hand at head office")
        sync.flags()  # settled by head office's staff: the till stops showing it
    finally:
        sync.close()
    assert store_status(till)["push_refused"] == []
    assert [e.seq for e in till.entries(0, 10)] == [1, 2, 3, 4, 5]  # still in the journal


def test_a_refusal_that_is_not_about_size_is_not_halved(till: Store) -> None:
    record(till, 1, 1, 1, 1)
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(gzip.decompress(request.content))["entries"]))
        return httpx.Response(403, json={"code": "credential_revoked", "message": "revoked"})

    sync = SyncClient(till, "T-BIG", "http://hq.test", "tok", transport=httpx.MockTransport(handler), end_of_day=False)
    with pytest.raises(HqRejected):
        sync.push_once()
    assert sizes == [4]
