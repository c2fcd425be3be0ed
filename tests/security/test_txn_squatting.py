"""Red team: a stolen till credential squats another till's transaction id. Journal txn ids are unique chain-wide;
one printed on a receipt of a sale a till recorded offline and has not pushed yet can be pushed first under the
stolen credential. Head office refuses the real entry with its own code (``txn_id_taken``, naming the terminal that
holds the id), and the till keeps it, lists it in ``push_refused``, reports it lost (a ``journal_lost`` item naming
the txn and that terminal) and goes on: its later entries reach head office, and nothing is renumbered as if its
own database had gone back. Head office flags the terminal holding the id (a ``txn_id_contested`` item, once a txn).

Head office's app on 127.0.0.1 (SQLite, then PostgreSQL), two tills' stores and sync clients."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.store import HqStore
from sync.client import SyncClient
from sync.protocol import PROTOCOL_VERSION, ErrorCode, PushRequest, WireEntry
from terminal.daemon import store_status
from terminal.model import JournalEntry, utc_iso
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

TOKENS = {"T-A": "t-a-token", "T-B": "t-b-token"}
TAKEN = "txn_id_taken"  # the stable code head office refuses such an entry with


@dataclass
class Office:
    hq: HqStore
    server: ServerHandle

    def held(self, terminal_id: str) -> list[tuple[int, str]]:
        with self.hq.db.read() as tx:
            rows = tx.all("SELECT seq, txn_id FROM journal WHERE terminal_id = ? ORDER BY seq", [terminal_id])
        return [(int(s), str(t)) for s, t in rows]

    def client(self, store: Store, terminal_id: str) -> SyncClient:
        return SyncClient(store, terminal_id, self.server.url, TOKENS[terminal_id], end_of_day=False, timeout=10)


@pytest.fixture
def office(hq_url: str) -> Iterator[Office]:  # noqa: F811 - the fixture
    hq = HqStore(hq_url, Settings(recompute=False))
    for terminal_id, token in TOKENS.items():
        hq.add_terminal(terminal_id, "S-001", token)
    server = start_in_thread(hq)
    try:
        yield Office(hq, server)
    finally:
        server.stop()
        hq.close()


@pytest.fixture
def till_a(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "a" / "terminal.db")
    yield store
    store.close()


@pytest.fixture
def till_b(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "b" / "terminal.db")
    yield store
    store.close()


def sell(till: Store, terminal_id: str, total: int = 500, txn_id: str | None = None) -> JournalEntry:
    entry = JournalEntry(
        terminal_id,
        0,
        txn_id or str(uuid.uuid4()),
        "sale",
        entries.sale(None, total, store_id="S-001"),
        utc_iso(time.time()),
    )
    return till.record(entry)[0]


def push_all(office: Office, till: Store, terminal_id: str) -> int:
    sync = office.client(till, terminal_id)
    try:
        return sync.push_all()
    finally:
        sync.close()


def squat(office: Office, till_b: Store, txn_id: str) -> None:
    """The stolen credential of till B pushes an entry of its own under ``txn_id`` (read off A's receipt)."""
    sell(till_b, "T-B", 1, txn_id=txn_id)
    assert push_all(office, till_b, "T-B") >= 1


def test_an_entry_pushed_first_under_a_tills_txn_id_holds_back_only_that_entry(
    office: Office, till_a: Store, till_b: Store
) -> None:
    first, receipt, third = (sell(till_a, "T-A", 100 * n) for n in (1, 2, 3))  # rung while A is offline
    squat(office, till_b, receipt.txn_id)

    wire = [
        WireEntry(
            terminal_id="T-A", seq=e.seq, txn_id=e.txn_id, kind=e.kind, payload=e.payload, created_at=e.created_at
        )
        for e in (first, receipt, third)
    ]
    refused = httpx.post(
        f"{office.server.url}/v1/journal",
        content=PushRequest(protocol=PROTOCOL_VERSION, terminal_id="T-A", entries=wire).model_dump_json(),
        headers={"Authorization": f"Bearer {TOKENS['T-A']}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert refused.status_code == 409
    answer = refused.json()
    assert answer["code"] == TAKEN, answer
    assert (answer["code"], answer["seq"], answer["txn_id"], answer["held_by"]) == (TAKEN, 2, receipt.txn_id, "T-B")
    assert office.held("T-A") == []  # refused whole

    assert push_all(office, till_a, "T-A") == 3
    assert office.held("T-A") == [(1, first.txn_id), (3, third.txn_id)]
    assert till_a.pending_count() == 0
    assert [(e.seq, e.txn_id) for e in till_a.entries()] == [(e.seq, e.txn_id) for e in (first, receipt, third)]
    assert till_a.state("journal_renumbered_at") is None  # not taken for its own database going back
    refused_here = store_status(till_a)["push_refused"]
    assert [(r["seq"], r["txn_id"], r["code"], r["held_by"]) for r in refused_here] == [
        (2, receipt.txn_id, TAKEN, "T-B")
    ]
    state = office.hq.journal_state("T-A")
    assert (state.acked_seq, state.lost) == (3, [(2, 2)])
    [item] = [i for i in office.hq.items(terminal_id="T-A") if i.reason == "journal_lost"]
    told = json.dumps(item.model_dump(mode="json"))
    assert receipt.txn_id in told and "T-B" in told and TAKEN in told

    later = sell(till_a, "T-A")
    assert push_all(office, till_a, "T-A") == 1  # its later entries go on reaching head office
    assert office.held("T-A")[-1] == (4, later.txn_id)


def test_a_till_whose_database_went_back_tells_the_two_refusals_apart(
    office: Office, till_a: Store, till_b: Store, tmp_path: Path
) -> None:
    """Its database went back (an older copy restored) and the stolen credential squats a sale rung after: the seq
    head office holds another entry at is renumbered, the squatted txn id is refused alone, and the rest go on."""
    first = sell(till_a, "T-A")
    copy = tmp_path / "restored.db"
    with closing(sqlite3.connect(copy)) as backup:
        till_a.db.conn.backup(backup)  # the copy restored later: seq 1 rung, nothing pushed
    second = sell(till_a, "T-A")
    assert push_all(office, till_a, "T-A") == 2
    restored = Store.open(copy)
    try:
        squatted, after = sell(restored, "T-A"), sell(restored, "T-A")  # seqs 2 and 3 again, new sales
        squat(office, till_b, squatted.txn_id)
        push_all(office, restored, "T-A")
        assert restored.pending_count() == 0
        assert restored.state("journal_renumbered_at") is not None
        moved = {e.txn_id: e.seq for e in restored.entries()}
        assert moved[squatted.txn_id] > 2 and moved[after.txn_id] > moved[squatted.txn_id]
        assert office.held("T-A") == [(1, first.txn_id), (2, second.txn_id), (moved[after.txn_id], after.txn_id)]
        refused = store_status(restored)["push_refused"]
        assert [(r["txn_id"], r["code"], r["held_by"]) for r in refused] == [(squatted.txn_id, TAKEN, "T-B")]
        state = office.hq.journal_state("T-A")  # the refused entry, and the seq its renumbering left unused
        assert (state.acked_seq, state.lost) == (moved[after.txn_id], [(3, 3), (4, 4)])
        assert moved[squatted.txn_id] == 4
    finally:
        restored.close()


def test_a_squatted_entry_met_while_looking_for_where_the_journal_went_back_is_not_that_place(
    till_a: Store,
) -> None:
    """Head office refused a batch as ``seq_conflict`` and, while the till pushes its entries one by one to find where
    its database went back, another terminal's entry takes the txn id of the first (two pushes racing): that entry is
    refused alone and reported lost, and the one head office holds another entry at is where the journal parts."""
    squatted, conflicting = sell(till_a, "T-A"), sell(till_a, "T-A")
    lost: list[dict[str, object]] = []

    def hq(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/journal/state":
            return httpx.Response(200, json={"acked_seq": 0, "max_seq": 2})
        if request.url.path == "/v1/journal/lost":
            lost.append(json.loads(request.content))
            return httpx.Response(200, json={"acked_seq": 1, "max_seq": 2, "lost": [[1, 1]]})
        seqs = [e["seq"] for e in json.loads(gzip.decompress(request.content))["entries"]]
        if seqs[0] == 1 and len(seqs) == 1:
            body = {"code": TAKEN, "message": "taken", "seq": 1, "txn_id": squatted.txn_id, "held_by": "T-B"}
            return httpx.Response(409, json=body)
        if seqs[0] in (1, 2):
            return httpx.Response(409, json={"code": ErrorCode.SEQ_CONFLICT.value, "message": "held"})
        return httpx.Response(200, json={"acked_seq": seqs[-1], "stored": len(seqs), "duplicates": 0})

    sync = SyncClient(till_a, "T-A", "http://hq.test", "tok", transport=httpx.MockTransport(hq), end_of_day=False)
    assert sync.push_once() >= 1
    assert [r["txn_id"] for r in json.loads(till_a.state("push_refused") or "[]")] == [squatted.txn_id]
    assert len(lost) == 1 and lost[0]["ranges"] == [[1, 1]] and "T-B" in str(lost[0]["reason"])
    renumbered = {e.txn_id: e.seq for e in till_a.entries()}
    assert renumbered[squatted.txn_id] == 1 and renumbered[conflicting.txn_id] == 3  # parted at seq 2, not 1
    assert till_a.pending_count() == 0


def test_the_terminal_holding_a_contested_txn_id_is_flagged_once(office: Office, till_a: Store, till_b: Store) -> None:
    """A's entry refused as ``txn_id_taken`` opens a ``txn_id_contested`` item against B, the terminal holding the
    id, naming both terminals and the txn, so staff see which till to suspect; the same refusal again (the till
    pushing once more, a replay of it) opens nothing more. A itself is flagged by nothing of it."""
    receipt = sell(till_a, "T-A", 200)
    squat(office, till_b, receipt.txn_id)
    wire = WireEntry(
        terminal_id="T-A",
        seq=receipt.seq,
        txn_id=receipt.txn_id,
        kind=receipt.kind,
        payload=receipt.payload,
        created_at=receipt.created_at,
    )
    for _ in range(2):
        refused = httpx.post(
            f"{office.server.url}/v1/journal",
            content=PushRequest(protocol=PROTOCOL_VERSION, terminal_id="T-A", entries=[wire]).model_dump_json(),
            headers={"Authorization": f"Bearer {TOKENS['T-A']}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert refused.status_code == 409 and refused.json()["code"] == TAKEN
    contested = [i for i in office.hq.items() if i.reason == "txn_id_contested"]
    assert [(i.terminal_id, i.txn_id, i.seq, i.state) for i in contested] == [("T-B", receipt.txn_id, 1, "open")]
    assert contested[0].detail == {
        "held_by": "T-B",
        "held_seq": 1,
        "held_kind": "sale",
        "refused_terminal": "T-A",
        "refused_seq": receipt.seq,
        "code": TAKEN,
    }
    assert push_all(office, till_a, "T-A") == 1  # the till moves past it; still one item
    assert len([i for i in office.hq.items() if i.reason == "txn_id_contested"]) == 1
    assert [i.reason for i in office.hq.items(terminal_id="T-A")] == ["journal_lost"]
