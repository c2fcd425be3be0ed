"""Exactly once through a broken network: a real head-office process (SQLite and PostgreSQL) behind a
fault-injecting TCP proxy on 127.0.0.1; the till's real sync client; head office answering 500s,
connections reset before and after head office committed, bodies truncated both ways, a slow
answer past the client's timeout, head office killed mid-batch and restarted, and the daemon
itself SIGKILLed mid-push. Each ends with every entry stored exactly once and no gap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hq.store import HqStore
from sync.client import SyncClient, SyncError
from terminal.model import JournalEntry, Member
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import FaultProxy, HqProcess
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture
from tests.waiting import wait_until

ENTRIES = 60


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hq_proc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HqProcess]:
    root = tmp_path_factory.mktemp("hq")
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    process = HqProcess(root, db)
    process.start()
    yield process
    process.kill()


@pytest.fixture
def proxy(hq_proc: HqProcess) -> Iterator[FaultProxy]:
    p = FaultProxy(hq_proc.port, delay=1.5)
    yield p
    p.close()


def register(hq_proc: HqProcess, terminal_id: str, member_id: str) -> str:
    admin = HqStore(hq_proc.db)
    token = admin.add_terminal(terminal_id, "S-001")
    admin.upsert_member(member_id, "Fault Tester", "basic", 0)
    admin.close()
    return token


def fill(path: Path, terminal_id: str, member_id: str, count: int = ENTRIES) -> None:
    till = Store.open(path)
    till.apply_changes([Member(member_id, "Fault Tester", "basic", 0)], [], [], cursor=0)
    for n in range(count):
        till.record(
            JournalEntry(
                terminal_id,
                0,
                f"{terminal_id}-tx-{n}",
                "sale",
                entries.sale(member_id, 100, earned=1, store_id="S-001"),
                "2026-04-01T09:00:00.000Z",
            ),
            points=(member_id, 1),
        )
    till.close()


def assert_exactly_once(hq_proc: HqProcess, terminal_id: str, member_id: str, count: int = ENTRIES) -> None:
    hq = HqStore(hq_proc.db)
    try:
        held = hq.entries(terminal_id)
        assert [e.seq for e in held] == list(range(1, count + 1))  # every entry, no gap
        assert len({e.txn_id for e in held}) == count  # each once
        assert hq.member(member_id).points == count  # type: ignore[union-attr]  # applied once
        [info] = [t for t in hq.terminals() if t["terminal_id"] == terminal_id]
        assert (info["acked_seq"], info["max_seq"], info["entries"]) == (count, count, count)
    finally:
        hq.close()


@pytest.mark.parametrize(
    "fault", ["status500", "reset_before", "reset_after", "truncate_request", "truncate_response", "slow", "kill"]
)
def test_every_entry_arrives_exactly_once_through_the_fault(
    hq_proc: HqProcess, proxy: FaultProxy, tmp_path: Path, fault: str
) -> None:
    terminal_id, member_id = f"T-{fault}", f"M-{fault}"
    token = register(hq_proc, terminal_id, member_id)
    fill(tmp_path / "till.db", terminal_id, member_id)
    proxy.on_kill = hq_proc.kill
    proxy.only = token
    proxy.script(fault, "pass", fault, fault)
    till = Store.open(tmp_path / "till.db")
    assert till.pending_count() == ENTRIES
    client = SyncClient(till, terminal_id, proxy.url, token, timeout=1.0, batch_size=20, end_of_day=False)
    failures = 0
    for _ in range(40):
        try:
            client.sync_once(pull=False)
        except SyncError:
            failures += 1
            if hq_proc.proc is None:
                hq_proc.start()  # head office comes back after its crash
            continue
        if till.pending_count() == 0:
            break
    client.close()
    assert till.pending_count() == 0 and failures >= 3, (failures, proxy.done, proxy.actions.qsize())
    assert proxy.done[:4] == [fault, "pass", fault, fault]
    till.close()
    assert_exactly_once(hq_proc, terminal_id, member_id)


def test_the_daemon_killed_mid_push_resends_and_nothing_doubles(
    hq_proc: HqProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    terminal_id, member_id, count = "T-SIGKILL", "M-SIGKILL", 150
    token = register(hq_proc, terminal_id, member_id)
    data = tmp_path / "till"
    fill(data / "terminal.db", terminal_id, member_id, count)
    config = tmp_path / "till.toml"
    config.write_text(
        f'[terminal]\nid = "{terminal_id}"\ndata_dir = "{data}"\n[security]\ncard_key_file = "{hq_proc.key_file}"\n'
        f'[reader]\ndevices = ["sim:"]\n[api]\nenabled = false\n'
        f'[hq]\nurl = "{proxy.url}"\ntoken = "{token}"\npush_interval = 0.2\npull_interval = 0.5\nbackoff_max = 0.5\n'
        f"batch_size = 50\nend_of_day = false\n",
        encoding="utf-8",
    )
    proxy.only = token
    proxy.script("hold")  # head office answers the first batch; the till never hears it
    cmd = [sys.executable, "-m", "tillpoint.cli", "run", "--config", str(config)]
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proxy.holding.wait(30), "the daemon never pushed"
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        proxy.release.set()
        till = Store.open(data / "terminal.db")
        assert till.pending_count() == count  # nothing was marked pushed: the reply never arrived
        till.close()
        daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def drained() -> bool:
            store = Store.open(data / "terminal.db")
            try:
                return store.pending_count() == 0
            finally:
                store.close()

        wait_until(drained, 40, "the restarted daemon to drain its journal")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
    assert_exactly_once(hq_proc, terminal_id, member_id, count)
