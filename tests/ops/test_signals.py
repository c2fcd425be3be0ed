"""Signals to a real `tillpoint run`: SIGHUP reloads the config (a bad one is refused and the running
one stays), SIGTERM lets the commits in flight finish and stops cleanly. And to a real `tillpoint hq serve`: SIGTERM
stops it as cleanly, with exit status 0, while it serves and while it starts."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from hq.db.schema import MIGRATIONS
from tests.fixtures import forked
from tests.fixtures.hq import HqProcess, free_port, migrated_before
from tests.ops.helpers import ROOT, Api, NotifyListener, TillProcess, integrity, metric, till_config, wait_until

AIKO = "04A1B2C3D4E501"


def log_records(till: TillProcess) -> list[dict[str, object]]:
    return [json.loads(x) for x in till.log.read_text().splitlines() if x.startswith("{")]


def hup(till: TillProcess, notify: NotifyListener) -> float:
    sent = time.monotonic()
    till.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", sent, timeout=10)
    notify.wait_for("READY=1", sent, timeout=10)
    return sent


def test_sighup_reloads_and_a_bad_config_keeps_the_old(tmp_path: Path, hq: HqProcess) -> None:
    config = till_config(tmp_path, hq, hq.add_terminal("T-HUP"), "T-HUP")
    original = config.read_text()
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify, watchdog_usec=1_000_000)
    api = Api(till)
    try:
        till.start()
        wait_until(lambda: api.status()["cache"]["members"] >= 4, 20, "the cache to load")
        api.tap(AIKO)  # no [sale] auto_amount yet: identified, no sale
        wait_until(lambda: metric(api.metrics(), "tillpoint_taps_total", reader="sim:") == 1, 5, "the tap")
        assert metric(api.metrics(), "tillpoint_sales_total", kind="sale") is None
        notify.wait_for("WATCHDOG=1", timeout=5)  # the watchdog pings a healthy daemon

        config.write_text(original + "[sale]\nauto_amount = 700\n")
        hup(till, notify)
        api.tap(AIKO)
        wait_until(lambda: metric(api.metrics(), "tillpoint_sales_total", kind="sale") == 1, 15, "a sale after reload")

        config.write_text(original + "[sale]\nauto_amount = 'lots'\n")  # bad value: refused, old config stays
        sent = hup(till, notify)
        assert any(
            x.startswith("STATUS=config reload refused: config key 'sale.auto_amount'") for x in notify.lines(sent)
        )
        api.tap(AIKO)
        wait_until(lambda: metric(api.metrics(), "tillpoint_sales_total", kind="sale") == 2, 15, "old config in use")

        config.write_text("this is [not toml")
        hup(till, notify)
        config.write_bytes((original + '[receipts]\ntitle = "Fidélité"\n').encode("latin-1"))  # not UTF-8
        hup(till, notify)
        assert till.proc is not None and till.proc.poll() is None, "the daemon lives on"
        moved = re.sub(r"\[api\]\nport = \d+", f"[api]\nport = {free_port()}", original)
        config.write_text(moved.replace("push_interval = 0.1", "push_interval = 0.3") + "[sale]\nauto_amount = 700\n")
        hup(till, notify)
        assert till.proc is not None and till.proc.poll() is None
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    records = log_records(till)
    refused = [r["msg"] for r in records if str(r["msg"]).startswith("config reload refused")]
    assert len(refused) == 3 and "sale.auto_amount" in str(refused[0]) and "valid TOML" in str(refused[1])
    assert "UTF-8" in str(refused[2])
    restart = [r["msg"] for r in records if str(r["msg"]).startswith("config reloaded; these changes need a restart")]
    assert restart == ["config reloaded; these changes need a restart: api.port"]


def test_sigterm_finishes_commits_in_flight(tmp_path: Path) -> None:
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, None, None, "T-TERM"), notify)
    acked: list[tuple[str, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def sell() -> None:
        token = till.token()
        with httpx.Client(base_url=till.url, timeout=5) as http:
            while not stop.is_set():
                body = {"lines": [{"sku": "T", "quantity": 1, "unit_price": 100}]}
                try:
                    reply = http.post("/v1/sales", json=body, headers={"Authorization": f"Bearer {token}"})
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                    return
                if reply.status_code == 200:
                    acked.append((reply.json()["txn_id"], reply.json()["seq"]))

    try:
        till.start()
        sellers = [threading.Thread(target=sell) for _ in range(3)]
        for thread in sellers:
            thread.start()
        wait_until(lambda: len(acked) >= 30, 10, "sales flowing")
        sent = time.monotonic()
        assert till.stop() == 0
        took = time.monotonic() - sent
        stop.set()
        for thread in sellers:
            thread.join(timeout=10)
    finally:
        stop.set()
        till.kill()
        notify.close()
    assert took < 10 and "STOPPING=1" in notify.lines(sent)
    db = till.data / "terminal.db"
    conn = sqlite3.connect(str(db))
    journal = dict(conn.execute("SELECT txn_id, seq FROM journal").fetchall())
    conn.close()
    assert all(journal.get(txn) == seq for txn, seq in acked), "an acknowledged sale is missing after SIGTERM"
    assert sorted(journal.values()) == list(range(1, len(journal) + 1))
    assert integrity(db) == "ok" and not (till.data / "terminal.db-wal").exists()  # closed cleanly


def test_a_stop_sent_while_the_daemon_starts_ends_it_by_its_own_stop(tmp_path: Path, hq: HqProcess) -> None:
    """systemd stops or restarts a till while it starts, or just after its READY=1: the signal is taken from the
    daemon's first moment (before it locks its data directory), so it finishes starting, says READY=1, then stops
    as on any SIGTERM (STOPPING=1, exit 0), never by the signal's default death (exit -15)."""
    config = till_config(tmp_path, hq, hq.add_terminal("T-EARLYSTOP"), "T-EARLYSTOP")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    try:
        till.start(wait_ready=False)
        wait_until(lambda: (till.data / "daemon.lock").exists(), 30, "the daemon to lock its data directory")
        till.signal(signal.SIGTERM)
        assert till.stop() == 0, till.log_tail()
        assert notify.count("READY=1") == 1 and notify.count("STOPPING=1") == 1, notify.lines()
    finally:
        till.kill()
        notify.close()


def test_sigterm_stops_a_single_process_head_office_cleanly(tmp_path: Path) -> None:
    """``systemctl stop`` of head office on one process (the unit's ``hq serve``): SIGTERM lets the requests in
    flight finish, closes the database and exits 0, never by the signal's default death (exit -15, which systemd
    logs as a failure on every stop and restart)."""
    hq = HqProcess(tmp_path)
    hq.start()
    try:
        assert hq.proc is not None
        assert httpx.get(f"{hq.url}/v1/health", timeout=5).status_code == 200
        hq.proc.send_signal(signal.SIGTERM)
        status = hq.proc.wait(timeout=20)
        said = hq.proc.stderr.read().decode() if hq.proc.stderr is not None else ""
        assert status == 0, f"head office exited {status} on SIGTERM:\n{said[-2000:]}"
        assert "head office stopped (SIGTERM)" in said, said[-2000:]
        assert not Path(f"{hq.db}-wal").exists(), "head office left its database open"  # before a reader opens it
        assert integrity(Path(hq.db)) == "ok"
    finally:
        hq.kill()


def holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has the file ``path`` open."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fds):
        try:
            if os.readlink(fds / fd) == str(path):
                return True
        except FileNotFoundError:  # closed meanwhile
            pass
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_sent_while_head_office_migrates_lets_the_migration_finish_and_ends_it_before_serving(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """``systemctl stop`` (or a Ctrl-C) while head office starts on a database of the release before: it backs it
    up and migrates it, then closes it and exits 0 without serving, never by the signal's default death (exit -15)
    with a backup or a migration cut midway. The test holds the database's write lock, so the process, once it has
    the database open, waits at its first write of the migration for it: the stop is sent there, the lock let go."""
    db = tmp_path / "hq" / "hq.db"
    migrated_before(str(db), MIGRATIONS[-1][0]).close()
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    proc = forked.start(
        ["hq", "serve", "--db", str(db), "--port", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: proc.poll() is not None or holds_open(proc.pid, db), 30, "head office to open its database")
        proc.send_signal(sig)
        holder.close()  # the lock let go: the migration goes on
        status = proc.wait(timeout=60)
        said = proc.stderr.read().decode() if proc.stderr is not None else ""
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0, f"head office exited {status} on {sig.name} while it started:\n{said[-2000:]}"
    assert f"head office stopped ({sig.name}) before serving" in said and "head office on" not in said, said[-2000:]
    assert not Path(f"{db}-wal").exists(), "head office left its database open"
    assert integrity(db) == "ok"
    conn = sqlite3.connect(str(db))
    applied = {row[0] for row in conn.execute("SELECT name FROM hq_migrations")}
    conn.close()
    assert applied == {name for name, _ in MIGRATIONS}, "the migration was not applied whole"
    backups = sorted(db.parent.glob("hq.db.pre-*"))
    assert len(backups) == 1 and integrity(backups[0]) == "ok", backups  # the backup before it, whole
    copy = sqlite3.connect(str(backups[0]))
    assert len(copy.execute("SELECT name FROM hq_migrations").fetchall()) == len(MIGRATIONS) - 1
    copy.close()


STORM = """
import os, subprocess, sys
from terminal.cli import _signal_waiter

wait = _signal_waiter()
storm = subprocess.Popen(
    [sys.executable, "-c", "import os, signal\\nfor _ in range(300000):\\n os.kill(%d, signal.SIGTERM)" % os.getpid()]
)
while storm.poll() is None:  # the main thread busy in Python code, as a daemon's start is
    pass
wait()
print("stopped", storm.returncode)
"""


def test_a_storm_of_signals_never_hangs_the_handler_taken_inside_itself() -> None:
    """A second signal runs its handler inside the first one's (Python runs handlers between any two steps of the
    main thread). The daemon's handler took a lock (``threading.Event.set``), and SIGTERM twice while the daemon
    started (systemd's stop, then the operator's) hung it on the lock it held itself. Three hundred thousand
    SIGTERMs, sent by another process: the wait must return, with no deadlock nor recursion error."""
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", STORM], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, done.stdout.strip()) == (0, "stopped 0"), done.stderr[-2000:]
