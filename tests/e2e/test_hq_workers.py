"""Head office on more than one process, against one real PostgreSQL: two `hq serve` processes behind
a round-robin balancer take pushes from 20 tills at once, one of them is killed mid-way, and every
entry is still stored exactly once, with both processes answering the same report; `--workers 2`
runs two processes on one port; a SQLite head office refuses `--workers`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import psutil

from hq.store import HqStore
from sync.client import SyncClient, SyncError
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess, tillpoint
from tests.fixtures.postgres import pg_server, pg_url  # noqa: F401 - fixtures
from tests.fixtures.roundrobin import RoundRobin
from tests.waiting import wait_until

TILLS = 20
PER_TILL = 120
BATCH = 20


def seed_tills(tmp: Path, hq: HqStore) -> dict[str, tuple[Store, str]]:
    tills: dict[str, tuple[Store, str]] = {}
    for t in range(TILLS):
        terminal_id, store_id = f"T-W{t:02d}", f"S-W{t % 4}"
        token = hq.add_terminal(terminal_id, store_id)
        till = Store.open(tmp / f"{terminal_id}.db")
        made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        with till.db.atomic():  # seeding: the daemon writes one durable transaction per sale
            for n in range(PER_TILL):
                till.db.conn.execute(
                    "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) VALUES (?,?,?,?,?,?)",
                    (
                        n + 1,
                        f"{terminal_id}-{n}",
                        terminal_id,
                        "sale",
                        json.dumps(entries.sale(None, 1000 + n, store_id=store_id)),
                        made,
                    ),
                )
        tills[terminal_id] = (till, token)
    return tills


def push_until_done(till: Store, client: SyncClient, errors: list[str]) -> None:
    for _ in range(200):  # bounded: a batch lost to the killed process is sent again
        try:
            client.push_all()
        except SyncError as exc:
            errors.append(type(exc).__name__)
        if till.pending_count() == 0:
            return


def report(url: str, headers: dict[str, str]) -> object:
    reply = httpx.get(f"{url}/v1/admin/reconciliation", params={"format": "json"}, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_two_head_office_processes_store_every_entry_once(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    a, b = HqProcess(tmp_path, pg_url), HqProcess(tmp_path, pg_url)
    a.start()
    b.start()
    admin = HqStore(pg_url)
    tills = seed_tills(tmp_path, admin)
    balancer = RoundRobin([a.port, b.port])
    clients = {
        tid: SyncClient(till, tid, balancer.url, token, timeout=10, batch_size=BATCH, end_of_day=False)
        for tid, (till, token) in tills.items()
    }
    errors: list[str] = []
    total = TILLS * PER_TILL
    try:
        threads = [
            threading.Thread(target=push_until_done, args=(tills[tid][0], clients[tid], errors)) for tid in tills
        ]
        for thread in threads:
            thread.start()
        # Kill one process once a third is in: its in-flight batches fail and are sent again.
        wait_until(lambda: sum(admin.journal_count(tid) for tid in tills) >= total // 3, 60, "a third stored")
        a.kill()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert all(till.pending_count() == 0 for till, _ in tills.values())
        assert balancer.chosen[b.port] > 0 and balancer.chosen[a.port] > 0  # both took pushes
        counts = {tid: admin.journal_count(tid) for tid in tills}
        assert counts == dict.fromkeys(tills, PER_TILL)  # every entry once, none twice
        assert admin.items() == []  # nothing flagged: no duplicate, no gap, no seq conflict

        a.start()  # back: both processes must answer the same
        token = a.cli("admin-token", "auditor").strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        first, second = report(a.url, headers), report(b.url, headers)
        assert first == second and first
    finally:
        balancer.close()
        for client in clients.values():
            client.close()
        for till, _ in tills.values():
            till.close()
        admin.close()
        a.kill()
        b.kill()


def worker_processes(pid: int) -> list[psutil.Process]:
    """The worker processes under uvicorn's supervisor (not its multiprocessing helpers)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue  # gone meanwhile
    return found


def test_workers_serve_one_port_from_several_processes(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    hq = HqProcess(tmp_path, pg_url, extra=("--workers", "2"))
    hq.start()
    try:
        assert hq.proc is not None
        pid = hq.proc.pid
        wait_until(lambda: len(worker_processes(pid)) >= 2, 30, "two worker processes")
        workers = worker_processes(pid)
        token = hq.add_terminal("T-WK", "S-1")
        for _ in range(40):  # bounded: new connections land on both workers
            reply = httpx.get(f"{hq.url}/v1/journal/state", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert reply.status_code == 200 and reply.json()["acked_seq"] == 0
        pids = {w.pid for w in workers if w.is_running()}
        assert len(pids) >= 2
        workers[0].kill()  # the supervisor starts another; the port keeps answering
        wait_until(
            lambda: len([w for w in worker_processes(pid) if w.pid not in pids]) >= 1,
            30,
            "a worker started in place of the killed one",
        )
        assert httpx.get(f"{hq.url}/v1/health", timeout=5).status_code == 200
    finally:
        if hq.proc is not None and hq.proc.poll() is None:
            for child in psutil.Process(hq.proc.pid).children(recursive=True):
                child.kill()
        hq.kill()


def test_workers_need_postgresql(tmp_path: Path) -> None:
    done = tillpoint("hq", "serve", "--db", str(tmp_path / "hq.db"), "--workers", "2", "--port", "1")
    assert done.returncode == 1
    assert "needs head office on PostgreSQL" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "hq.db").exists()  # refused before anything was made
