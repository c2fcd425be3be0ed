"""Upgrading head office on PostgreSQL as a chain does, while a head office of the earlier release still serves
(a rolling upgrade): a migration copying rows locks the tables it reads first, so what the earlier release
writes meanwhile is in the copy or refused, never lost.
"""

from __future__ import annotations

import re
import threading

import psycopg
import pytest

from hq.db.schema import MIGRATIONS, OnPostgres, migrate, open_db
from hq.errors import HqError
from tests.fixtures.hq import migrated_before
from tests.fixtures.postgres import PgServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.ops, pytest.mark.postgres]


def lock_waiters(url: str, statement: str) -> list[int]:
    """The server processes whose statement starts with ``statement`` and waits for a lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s",
            [f"{statement}%"],
        ).fetchall()
    return [int(r[0]) for r in rows]


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
