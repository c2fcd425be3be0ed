"""Receipts at head office (hq/receipts.py): each sale read from a POS's printed receipt is indexed by its
digest, printed number, POS and store; one receipt sold twice (at two tills, or twice at one: its digest, or its
number in the store by the scope the till names) is a ``receipt_sold_twice`` item on the later sale; a replayed
push flags nothing; a sale is found by receipt through the store, the admin API and `tillpoint hq receipt`. Every
test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.receipts import number_key
from hq.store import HqStore
from sync.client import PUSH_HELD, SyncClient
from sync.protocol import PROTOCOL_VERSION, Reason, WireEntry, as_spoken, entry_protocol
from terminal.checkout import Checkout
from terminal.model import Basket, Line, ReceiptRef, SaleOrder
from terminal.service import Service
from terminal.store import Store
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
        "same": "digest",
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
        tx.run("DELETE FROM hq_migrations WHERE name IN ('m013_receipts', 'm055_receipt_number_key')")
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


def test_a_receipt_number_is_keyed_by_its_scope_in_the_store_s_time_zone() -> None:
    """The pure rule: the number less its spaces (``store``), or the day in the store's zone and the number
    (``day``); nothing for a sale without a number or of a till that names no scope (its digest alone)."""
    from datetime import UTC, datetime

    late = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo
    assert number_key(" 01-0042 ", "store", late, "Asia/Tokyo") == "01-0042"
    assert number_key("0042", "day", late, "Asia/Tokyo") == "2026-03-01 0042"
    assert number_key("0042", "day", late.replace(hour=15), "Asia/Tokyo") == "2026-03-02 0042"  # 00:30 the next day
    assert number_key("0042", "day", late.replace(hour=15), "UTC") == "2026-03-01 0042"
    assert number_key("0042", None, late, "UTC") is None  # a till before protocol 4
    assert number_key("  ", "store", late, "UTC") is None and number_key(None, "day", late, "UTC") is None
    scoped = entries.sale(None, 1200) | {"receipt_digest": digest("r"), "receipt_number": "1", "receipt_scope": "day"}
    assert entry_protocol("sale", scoped) == 1 and PROTOCOL_VERSION == 4  # a till speaking 3 sends it without
    assert as_spoken("sale", scoped, 3) == {k: v for k, v in scoped.items() if k != "receipt_scope"}
    assert as_spoken("sale", scoped, 4) == scoped


def pushed(
    http: httpx.Client, terminal: str, *sold: tuple[int, str, str, str | None, str], total: int = 1200
) -> dict[str, Any]:
    """Push a till's receipt sales (seq, receipt bytes, number, scope, created_at) of ``total`` each as the till
    does."""
    wire = []
    for seq, receipt, number, scope, created in sold:
        payload = entries.sale("M-0001", total, earned=total // 100, store_id=STORES[terminal])
        payload |= {"receipt_digest": digest(receipt), "receipt_number": number, "pos_id": "POS-1"}
        payload |= {"receipt_scope": scope} if scope else {}
        entry = {"terminal_id": terminal, "seq": seq, "txn_id": f"{terminal}-{seq}", "kind": "sale"}
        wire.append(entry | {"payload": payload, "created_at": created})
    response = http.post(
        "/v1/journal",
        json={"protocol": PROTOCOL_VERSION, "terminal_id": terminal, "entries": wire},
        headers={"Authorization": f"Bearer token-{terminal}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_reprint_sold_at_another_till_of_the_store_is_flagged_by_its_number(
    store: HqStore, http: httpx.Client
) -> None:
    """A cashier reprints a member's receipt at the next till (a COPY line, another print time: other bytes) to
    earn its points again: the later sale is ``receipt_sold_twice`` by its number (the balances stand, as for one
    of the same digest). Two POS numbering alike are told apart by the register printed in the number; a POS
    whose numbers start again each day by the day in the store's zone; a till before protocol 4 by digest alone;
    another store's numbers are its own."""
    store.set_store("S1", "Asia/Tokyo")
    store.upsert_member("M-0001")
    night, after_midnight = "2026-03-01T14:30:00.000Z", "2026-03-01T15:30:00.000Z"  # 23:30 and 00:30 in Tokyo
    pushed(http, "T1", (1, "r-42", "01-0042", "store", CREATED), (2, "d-7", "0007", "day", night))
    pushed(http, "T1", (3, "old-9", "0009", None, CREATED))
    pushed(
        http,
        "T2",
        (1, "r-42 COPY 10:05", " 01-0042", "store", CREATED),  # the reprint, sold again at the next till
        (2, "r-42 COPY 10:07", "01-0042", "store", CREATED),
        (3, "r-42 register 2", "02-0042", "store", CREATED),  # the other POS's own 42
        (4, "d-7 next day", "0007", "day", after_midnight),  # the next day's 7 (a UTC day would call it a reprint)
        (5, "d-7 COPY", "0007", "day", night),
        (6, "old-9 COPY", "0009", None, CREATED),  # a till that names no scope: the digest alone
    )
    pushed(http, "T3", (1, "r-42 other store", "01-0042", "store", CREATED))
    # a register numbering as the first one does (its own 01-0042, another basket): another receipt, not a reprint
    pushed(http, "T2", (7, "r-42 of the other register", "01-0042", "store", CREATED), total=1500)
    flagged = dict(sold_twice(store))
    assert sorted(flagged) == ["T2-1", "T2-2", "T2-5"]
    assert flagged["T2-1"] == {
        "receipt_digest": digest("r-42 COPY 10:05"),
        "receipt_number": " 01-0042",
        "pos_id": "POS-1",
        "first_txn": "T1-1",
        "first_terminal": "T1",
        "first_seq": 1,
        "same": "number",
        "number_scope": "store",
    }
    assert flagged["T2-2"]["first_txn"] == "T1-1" and flagged["T2-5"]["first_txn"] == "T1-2"
    held = store.member("M-0001")
    assert held is not None and held.points == 12 * 10 + 15  # the balances stand: the staff settle the items
    found = store.receipt_sales(number="01-0042", store_id="S1")
    assert [(r.txn_id, r.sold_twice) for r in found] == [("T1-1", False), ("T2-2", True), ("T2-7", False)]
    again = pushed(http, "T2", (1, "r-42 COPY 10:05", " 01-0042", "store", CREATED))  # a replay flags nothing
    assert again["acked_seq"] == 7 and len(sold_twice(store)) == 3


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


@pytest.mark.parametrize("copy", [False, True], ids=["same-bytes", "a-reprint"])
def test_one_receipt_pushed_by_two_tills_at_once_is_flagged_exactly_once(store: HqStore, copy: bool) -> None:
    """Concurrent pushes (PostgreSQL: two transactions at once; a lock per receipt, and per number in the store,
    makes the later one see the first): each receipt sold at both tills (or its reprint, by its number) is one
    item, never none and never two."""
    from concurrent.futures import ThreadPoolExecutor

    def numbered(terminal: str, n: int) -> WireEntry:
        entry = sale(terminal, n, f"same-{n}" + (f" COPY {terminal}" if copy else ""), f"{n:04d}")
        return entry.model_copy(update={"payload": entry.payload | {"receipt_scope": "store"}})

    rounds = 12
    with ThreadPoolExecutor(2) as pool:
        for n in range(1, rounds + 1):
            a = pool.submit(store.ingest, "T1", [numbered("T1", n)])
            b = pool.submit(store.ingest, "T2", [numbered("T2", n)])
            assert a.result().flagged + b.result().flagged == 1, n
    flagged = sold_twice(store)
    assert len(flagged) == rounds
    assert sorted(d["receipt_number"] for _, d in flagged) == [f"{n:04d}" for n in range(1, rounds + 1)]
    assert {d["same"] for _, d in flagged} == {"number" if copy else "digest"}


class _ReleaseBefore(httpx.BaseTransport):
    """Between a till and a real head office: it answers as the release before (protocol 3 in ``/v1/health``), whose
    sale has no ``receipt_scope``: an entry carrying one it would quarantine as malformed (kept in ``carrying``, not
    passed on)."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.carrying: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health":
            return httpx.Response(200, json={"status": "ok", "time": "", "protocol": 3, "root_key": ""})
        if request.url.path == "/v1/journal":
            body = json.loads(gzip.decompress(request.content))
            assert body["protocol"] == 3
            self.carrying += [e["seq"] for e in body["entries"] if "receipt_scope" in e["payload"]]
            if self.carrying:
                return httpx.Response(422, json={"code": "invalid_request", "message": "malformed"})
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_a_till_ahead_of_its_head_office_sends_its_receipt_sales_without_their_scope_holding_nothing(
    store: HqStore, tmp_path: Path
) -> None:
    """A till of this release syncing with a head office of the release before (protocol 3): a sale read from a
    numbered receipt goes without its ``receipt_scope`` (that head office compares it by digest alone, as it always
    did), and so does every sale after it; nothing is held in the till's journal (it held them all, for days: its
    members' spending there unseen by the other tills), the till's own journal keeps the scope."""
    till_store = Store.open(tmp_path / "terminal.db")
    till = Service(till_store, "T1", store_id="S1")
    between = _ReleaseBefore()
    server = start_in_thread(store, "127.0.0.1", 0)
    sync = SyncClient(till_store, "T1", server.url, "token-T1", transport=between, end_of_day=False)
    try:
        basket = Basket((Line("A", 1, 1200),))
        Checkout(till).sell(SaleOrder(None, basket, receipt=ReceiptRef(digest("r-42"), "01-0042", "POS-1")))
        Checkout(till).sell(SaleOrder(None, basket))
        pushed_now = sync.sync_once(pull=False).pushed
        held, left = till_store.state(PUSH_HELD), till_store.pending_count()
        kept = [e.payload.get("receipt_scope") for e in till_store.entries()]
    finally:
        sync.close()
        server.stop()
        till_store.close()
    assert (pushed_now, held, left, between.carrying) == (2, None, 0, [])
    assert kept == ["store", None]
    assert store.items() == []
