"""Upgrading head office on PostgreSQL as a chain does: real ``tillpoint hq serve`` processes of this release
start on a database the release before left, while other sessions (an administrator's psql, a head office
started at the same moment, one killed half-way, one of the earlier release still serving) use it.

- A lock a migration (or the backup before it) cannot get within ``--migration-lock-wait`` stops the start
  with a stable code naming the session to look at; nothing of the migration is applied, and a start after the
  lock went migrates.
- Processes started together migrate once: one backup, one migrator; the others wait for it, then serve.
- A head office killed in the middle of a migration leaves no server process going on with it: the next start
  takes the migration over at once and applies it whole, every row kept.
- A migration copying rows locks the tables it reads first: what the earlier release writes meanwhile is in the
  copy or refused, never lost.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from hq.db.engine import Db
from hq.db.schema import MIGRATIONS, OnPostgres, migrate, open_db
from hq.errors import HqError
from tests.fixtures.hq import migrated_before
from tests.fixtures.postgres import PgServer, pg_bindir
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.ops, pytest.mark.postgres]

CONFIRM = (
    "INSERT INTO payment_confirms (code_id, member_id, terminal_id, txn_id, amount, confirmed_at) "
    "VALUES ('C-1', 'M-1', 'T1', 'T1-1', 500, '2026-01-01T00:00:00.000Z')"
)


@dataclass
class Started:
    """A ``tillpoint hq serve`` process, its output in a file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def serving(hq: Started) -> None:
    """Wait for ``hq`` to answer; its output when it stopped instead."""
    wait_until(lambda: hq.answers() or hq.proc.poll() is not None, 60, "head office serving")
    assert hq.answers(), hq.said()


def serve(tmp_path: Path, url: str, *extra: str) -> Started:
    """``tillpoint hq serve`` as an operator starts it (backups into ``tmp_path``, pg_dump on PATH)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "PATH": f"{pg_bindir()}:{os.environ['PATH']}", "TILLPOINT_HQ_BACKUP_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "tillpoint.cli", "hq", "serve", "--db", url, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--campaign-interval", "0", *extra], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Started(proc, port, log)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """``start(url, *options)``: ``serve`` a head office, killed at the test's end whatever happened."""
    started: list[Started] = []

    def one(url: str, *extra: str) -> Started:
        started.append(serve(tmp_path, url, *extra))
        return started[-1]

    yield one
    for hq in started:
        hq.kill()


def release_before(pg_server: PgServer, name: str) -> str:
    """A database of its own as the release before migration ``name`` left it, holding a payment confirmation."""
    url = pg_server.fresh_hq_database()
    db = migrated_before(url, name)
    try:
        with db.write() as tx:
            tx.run(CONFIRM)
    finally:
        db.close()
    return url


def lock_waiters(url: str, statement: str) -> list[int]:
    """The server processes whose statement starts with ``statement`` and waits for a lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s",
            [f"{statement}%"],
        ).fetchall()
    return [int(r[0]) for r in rows]


def alive(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is not None


def applied(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT name FROM hq_migrations").fetchall()}


def columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
            [table],
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_a_lock_held_by_an_admin_stops_the_upgrade_saying_whose_and_a_start_after_it_migrates(
    pg_server: PgServer, tmp_path: Path, start: Callable[..., Started]
) -> None:
    url = release_before(pg_server, "m042_confirms_withdrawn")
    admin = psycopg.connect(url, application_name="psql")  # BEGIN; LOCK TABLE members; (and off to a meeting)
    try:
        admin.execute("LOCK TABLE members IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        backup = start(url, "--migration-lock-wait", "1")
        backup.proc.wait(timeout=30)  # pg_dump waited for the lock as long as it was held
        said = backup.said()
        assert backup.proc.returncode == 1 and said.startswith("backup_failed: cannot start head office"), said
        assert f"pid {admin.info.backend_pid} (psql" in said and "Traceback" not in said, said
        assert time.monotonic() - started < 30
        assert not list(tmp_path.glob("hq-pre-*"))  # no half dump left
        admin.rollback()

        admin.execute("SELECT * FROM gift_confirms FOR UPDATE")  # m042's third statement needs the table
        blocked = start(url, "--no-backup", "--migration-lock-wait", "1")
        blocked.proc.wait(timeout=30)
        said = blocked.said()
        assert blocked.proc.returncode == 1 and said.startswith("migration_blocked: cannot start head office"), said
        assert "migration m042_confirms_withdrawn waited 1 s" in said and "nothing of it was applied" in said, said
        assert f"pid {admin.info.backend_pid} (psql" in said and "SELECT * FROM gift_confirms FOR UPDATE" in said
        assert "pg_terminate_backend" in said and "Traceback" not in said, said
        assert "m042_confirms_withdrawn" not in applied(url)
        assert "withdrawn_at" not in columns(url, "payment_confirms")  # its first statement rolled back too
        admin.rollback()

        serving(start(url, "--no-backup"))  # the lock gone: the next start migrates
        assert {"m042_confirms_withdrawn", "m043_confirm_withdrawals"} <= applied(url)
        assert "withdrawn_at" in columns(url, "payment_confirms")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT code_id, amount, withdrawn_at FROM payment_confirms").fetchall() == [
                ("C-1", 500, None)
            ]
    finally:
        admin.close()


def test_head_offices_started_together_take_one_backup_and_migrate_once(
    pg_server: PgServer, tmp_path: Path, start: Callable[..., Started]
) -> None:
    """systemd starts a worker on each host at once: the first migrates (held half-way here by an admin's lock),
    the second waits for it, saying whom it waits for, and serves once it is done; one backup."""
    url = release_before(pg_server, "m042_confirms_withdrawn")
    admin = psycopg.connect(url)
    try:
        admin.execute("SELECT * FROM gift_confirms FOR UPDATE")
        first = start(url, "--migration-lock-wait", "60")
        wait_until(lambda: lock_waiters(url, "ALTER TABLE gift_confirms"), 60, "the first start migrating m042")
        second = start(url, "--migration-lock-wait", "60")
        wait_until(lambda: "waiting for the migration another head office" in second.said(), 60, "the second waiting")
        assert second.proc.poll() is None and not second.answers()
        admin.rollback()
        serving(first)
        serving(second)
        assert len(list(tmp_path.glob("hq-pre-m042_confirms_withdrawn-*.dump"))) == 1, first.said() + second.said()
        assert "tillpoint-hq migration" in second.said()  # whom it waited for, as pg_stat_activity shows it
        assert {"m042_confirms_withdrawn", "m043_confirm_withdrawals"} <= applied(url)
    finally:
        admin.close()


def migrate_together(url: str, processes: int) -> list[HqError]:
    """``migrate`` by ``processes`` stores at the same instant (threads: the race is the database's); what failed."""
    dbs = [open_db(url, pool_size=1) for _ in range(processes)]
    together = threading.Barrier(processes)
    failed: list[HqError] = []

    def start(db: Db) -> None:
        together.wait(30)
        try:
            migrate(db, backup=False)
        except HqError as exc:  # the test's to see
            failed.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for db in dbs:
        db.close()
    return failed


def test_head_offices_started_together_on_a_new_database_make_it_once(pg_server: PgServer) -> None:
    """Four head offices opening one empty database at once (three rounds, as one may miss the moment): each made
    ``hq_migrations`` on finding none, and all but one failed to start on a duplicate key of PostgreSQL's
    catalog."""
    for _ in range(3):
        url = pg_server.fresh_schema()
        assert migrate_together(url, 4) == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM hq_migrations").fetchone() == (len(MIGRATIONS),)


def test_a_head_office_killed_half_way_through_a_migration_is_taken_over_by_the_next_start(
    pg_server: PgServer, start: Callable[..., Started]
) -> None:
    """A SIGKILLed head office's PostgreSQL server process went on with the statement it had been given, holding the
    migration's locks: with a copy of millions of rows, minutes during which every next start failed on them. It
    now ends within a second (``client_connection_check_interval``), and the next start applies the migration
    whole. A wait for an admin's lock stands in here for the long statement."""
    url = release_before(pg_server, "m042_confirms_withdrawn")
    admin = psycopg.connect(url)
    try:
        admin.execute("SELECT * FROM gift_confirms FOR UPDATE")  # holds the migration half-way, as a big copy would
        killed = start(url, "--no-backup", "--migration-lock-wait", "60")
        (orphan,) = wait_until(lambda: lock_waiters(url, "ALTER TABLE gift_confirms"), 60, "m042 half-way")
        killed.kill()  # SIGKILL (systemd's, after TimeoutStopSec), the admin's lock still held
        again = start(url, "--no-backup", "--migration-lock-wait", "60")
        wait_until(lambda: not alive(url, orphan), 10, "the killed head office's server process to end")
        taking_over = wait_until(
            lambda: lock_waiters(url, "ALTER TABLE gift_confirms") or again.proc.poll() is not None,
            60,
            "the next start at m042's third statement",
        )
        assert again.proc.poll() is None, again.said()
        assert orphan not in taking_over
        admin.rollback()
        serving(again)
        assert {"m042_confirms_withdrawn", "m043_confirm_withdrawals"} <= applied(url)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT code_id, amount, withdrawn_at FROM payment_confirms").fetchall() == [
                ("C-1", 500, None)
            ]
    finally:
        admin.close()


def test_daily_rows_an_earlier_release_writes_during_the_copy_are_kept(pg_server: PgServer) -> None:
    """A rolling upgrade: a head office of the release before m041 still ingests while this release's migrates.
    Its statistics written after m041's copy read the daily rows went with the old tables (an acknowledged
    sale's visit lost); the migration now locks them first, so such a write is either in the copy or refused
    (storage_unavailable, sent again)."""
    url = pg_server.fresh_hq_database()
    db = migrated_before(url, "m041_day_rows")
    try:
        with db.write() as tx:
            tx.run(
                "INSERT INTO member_days (member_id, day, store_id, visits, spend) VALUES ('M-1', '2026-02-01', 'S1', 1, 100)"
            )
            tx.run(
                "INSERT INTO member_category_days (member_id, day, category, spend, quantity) "
                "VALUES ('M-1', '2026-02-01', 'food', 100, 1)"
            )
    finally:
        db.close()
    earlier = psycopg.connect(url)  # the earlier release's ingest of a sale, mid-transaction
    earlier.execute("UPDATE member_days SET visits = visits + 1, spend = spend + 50 WHERE member_id = 'M-1'")
    failed: list[HqError] = []

    def upgrade() -> None:
        migrating = open_db(url, pool_size=1)
        try:
            migrate(migrating, backup=False)
        except HqError as exc:  # seen by the test below
            failed.append(exc)
        finally:
            migrating.close()

    thread = threading.Thread(target=upgrade)
    thread.start()
    try:
        wait_until(lambda: failed or lock_waiters(url, ""), 30, "the migration waiting for the sale's lock")
        earlier.commit()  # the sale acknowledged to its till
    finally:
        thread.join(60)
        earlier.close()
    assert not failed, failed
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT visits, spend FROM member_days WHERE member_id = 'M-1'").fetchall() == [(2, 150)]
        assert conn.execute("SELECT spend FROM member_category_days WHERE member_id = 'M-1'").fetchall() == [(100,)]


def test_a_migration_that_copies_rows_locks_the_tables_it_reads_first() -> None:
    """Each migration filling a table from others' rows locks those others on PostgreSQL before it reads them
    (ACCESS EXCLUSIVE when it drops them: a lock taken weaker and made stronger later can deadlock with a
    writer), so an earlier release still serving cannot write a row the copy misses."""
    for name, statements in MIGRATIONS:
        made: set[str] = set()
        locked: dict[str, str] = {}
        for statement in statements:
            sql = statement.sql if isinstance(statement, OnPostgres) else statement
            if lock := re.fullmatch(r"LOCK TABLE ([\w, ]+) IN ([A-Z ]+) MODE", sql):
                assert isinstance(statement, OnPostgres), (name, sql)
                locked |= {table.strip(): lock.group(2) for table in lock.group(1).split(",")}
            if create := re.match(r"CREATE (?:TABLE|VIEW)(?: IF NOT EXISTS)? (\w+)", sql):
                made.add(create.group(1))
            if drop := re.match(r"DROP TABLE (\w+)", sql):
                assert locked.get(drop.group(1), "ACCESS EXCLUSIVE") == "ACCESS EXCLUSIVE", (name, sql)
            if re.match(r"(INSERT|UPDATE|DELETE)\b", sql) and re.search(r"\bSELECT\b", sql):
                read = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql)) - made
                assert read <= set(locked), f"{name} copies from {sorted(read - set(locked))} without locking them"
