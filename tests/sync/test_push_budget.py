"""A terminal's daily bound at head office (``push_limited``): a stolen till credential cannot fill head office's
disk with stored entries or lost-seq reports, and an honest till that reaches the bound loses nothing: its
entries wait in its journal and go the next day. Head office's real app on 127.0.0.1, on SQLite and on
PostgreSQL, its clock set by the test; a real till store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from hq import fleet
from hq.api.server import ServerHandle, start_in_thread
from hq.ingest import Settings
from hq.store import HqStore
from sync.client import HqRejected, SyncClient
from sync.protocol import PROTOCOL_VERSION, ErrorCode, PushRequest, WireEntry
from terminal.model import JournalEntry
from terminal.store import Store
from tests.fixtures import entries

TOKEN = "t-budget-token"
DAY_ONE = "2026-03-01T22:59:30.000Z"  # an hour, less 30 s, before head office's next day
DAY_TWO = "2026-03-02T08:00:00.000Z"


class Clock:
    def __init__(self) -> None:
        self.now = DAY_ONE

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hq_store(hq_url: str, clock: Clock) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(recompute=False, push_entries_per_day=5, push_bytes_per_day=20_000), clock=clock)
    store.add_terminal("T-B", "S-001", TOKEN)
    yield store
    store.close()


@pytest.fixture
def server(hq_store: HqStore) -> Iterator[ServerHandle]:
    handle = start_in_thread(hq_store, "127.0.0.1", 0, timeout=10)
    yield handle
    handle.stop()


@pytest.fixture
def till(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.open(tmp_path_factory.mktemp("till") / "terminal.db")
    yield store
    store.close()


def sale() -> JournalEntry:
    return JournalEntry("T-B", 0, str(uuid.uuid4()), "sale", entries.sale(None, 500, store_id="S-001"), DAY_ONE)


def held(hq_store: HqStore) -> list[int]:
    with hq_store.db.read() as tx:
        return [int(r[0]) for r in tx.all("SELECT seq FROM journal WHERE terminal_id = 'T-B' ORDER BY seq")]


def test_a_till_past_its_daily_bound_is_refused_and_sends_the_rest_the_next_day(
    till: Store, server: ServerHandle, hq_store: HqStore, clock: Clock
) -> None:
    for _ in range(8):
        till.record(sale())
    sync = SyncClient(till, "T-B", server.url, TOKEN, end_of_day=False, batch_size=3, timeout=30)
    try:
        with pytest.raises(HqRejected) as refused:
            sync.push_all()  # three fit the day's five; the next three would not
        assert (refused.value.status, refused.value.code) == (429, ErrorCode.PUSH_LIMITED.value)
        assert held(hq_store) == [1, 2, 3] and till.pending_count() == 5  # nothing lost: kept in the journal
        again = hq_store.ingest("T-B", hq_store.entries("T-B"))  # a retry of what head office holds costs nothing
        assert (again.stored, again.duplicates) == (0, 3)

        more = PushRequest(
            protocol=PROTOCOL_VERSION,
            terminal_id="T-B",
            entries=[
                WireEntry(terminal_id="T-B", seq=s, txn_id=f"x-{s}", kind="sale", payload={}, created_at=DAY_ONE)
                for s in (4, 5, 6)
            ],
        )
        answer = httpx.post(
            f"{server.url}/v1/journal",
            content=more.model_dump_json(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 429 and answer.json()["code"] == "push_limited"
        assert answer.headers["Retry-After"] == "3630"  # head office's next day
        lost = httpx.post(
            f"{server.url}/v1/journal/lost",
            json={"ranges": [[100 + n, 100 + n] for n in range(3)], "reason": "made up"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert lost.status_code == 429 and lost.json()["code"] == "push_limited"  # reports count too
        assert held(hq_store) == [1, 2, 3] and hq_store.journal_state("T-B").lost == []

        text = fleet.exposition(hq_store.fleet)[0].decode()
        assert 'tillpoint_hq_terminal_pushed_entries_today{store="S-001",terminal="T-B"} 3.0' in text
        assert 'tillpoint_hq_terminal_push_refused_today{store="S-001",terminal="T-B"} 3.0' in text

        clock.now = DAY_TWO
        assert sync.push_all() == 5  # the next day: the rest, each once
    finally:
        sync.close()
    assert held(hq_store) == list(range(1, 9)) and till.pending_count() == 0
    [row] = [r for r in hq_store.fleet() if r["terminal_id"] == "T-B"]
    assert (row["pushed_entries_today"], row["push_refused_today"]) == (5, 0)


def test_bytes_are_bounded_too(till: Store, server: ServerHandle, hq_store: HqStore) -> None:
    big = JournalEntry(
        "T-B",
        0,
        str(uuid.uuid4()),
        "sale",
        entries.sale(None, 300, store_id="S-001", lines=[{"sku": "S" * 64, "quantity": 1, "unit_price": 1}] * 300),
        DAY_ONE,
    )
    till.record(sale())
    sync = SyncClient(till, "T-B", server.url, TOKEN, end_of_day=False, timeout=30)
    try:
        assert sync.push_all() == 1
        till.record(big)  # more than the day's 20,000 bytes (300 lines of about 100 bytes)
        with pytest.raises(HqRejected) as refused:
            sync.push_all()
        assert refused.value.code == ErrorCode.PUSH_LIMITED.value
    finally:
        sync.close()
    assert held(hq_store) == [1] and till.pending_count() == 1


def test_end_of_day_reports_count_against_the_bound(till: Store, server: ServerHandle, hq_store: HqStore) -> None:
    """A report of a day head office holds none of is a new row: a stolen credential naming made-up days, each
    with totals as large as a request may be, wrote to head office's disk without end."""
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def report(day: str, kinds: int = 1) -> httpx.Response:
        totals = {f"k{n:05d}": {"count": 1, "total": 1} for n in range(kinds)}
        body = {"terminal_id": "T-B", "day": day, "first_seq": 1, "last_seq": 0, "totals": totals}
        return httpx.post(f"{server.url}/v1/eod", json=body, headers=auth, timeout=30)

    big = report("1999-01-01", kinds=1000)  # about 30,000 bytes: more than the day's 20,000
    assert (big.status_code, big.json()["code"]) == (429, "push_limited")
    answers = [report(f"20{n:02d}-01-01").status_code for n in range(8)]
    assert answers == [200] * 5 + [429] * 3  # the day's five entries
    with hq_store.db.read() as tx:
        days = [str(r[0]) for r in tx.all("SELECT day FROM eod_reports WHERE terminal_id = 'T-B' ORDER BY day")]
    assert days == [f"20{n:02d}-01-01" for n in range(5)]
    [row] = [r for r in hq_store.fleet() if r["terminal_id"] == "T-B"]
    assert row["push_refused_today"] == 4


def test_a_till_whose_end_of_day_passes_the_bound_goes_on_and_reports_it_the_next_day(
    till: Store, server: ServerHandle, hq_store: HqStore, clock: Clock
) -> None:
    for _ in range(5):
        till.record(sale())
    sync = SyncClient(till, "T-B", server.url, TOKEN, timeout=30)
    try:
        assert sync.push_all() == 5  # the day's five entries: the end-of-day report would be the sixth
        sync.sync_once()  # the round goes on: the report waits
        with hq_store.db.read() as tx:
            assert tx.all("SELECT day FROM eod_reports WHERE terminal_id = 'T-B'") == []
        assert till.state("offline_since") is None
        clock.now = DAY_TWO
        sync.sync_once()
    finally:
        sync.close()
    with hq_store.db.read() as tx:
        [(status,)] = tx.all("SELECT status FROM eod_reports WHERE terminal_id = 'T-B'")
    assert status == "complete"
