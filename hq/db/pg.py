"""Head office on PostgreSQL (psycopg 3 with a connection pool), for chains.

The same statements as on SQLite (see ``sqlite.py``); ``?`` placeholders become ``%s`` here (``%b``, sent in
binary, when the placeholder has a cast).
Writers run READ COMMITTED and lock what they count (the terminal row, member and coupon rows,
the version counter) in one fixed order, so concurrent pushes of different terminals never see
a stale count; a deadlock or serialization failure is retried by ``Db.transact``.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from hq.db.engine import Row, Tx, backup_stamp, transact_with_retries
from hq.errors import BackupFailed, IntegrityFailed, LockWaited, RetryableFailed, StorageFailed, StorageProblem

T = TypeVar("T")
log = logging.getLogger("tillpoint.hq")


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's: one with an explicit cast (``?::bigint[]``, the arrays of a bulk upsert)
    goes in binary (``%b``: no text to quote and parse for each element of a big array), the others as text
    (``%s``: the server infers their type)."""
    return sql.replace("?::", "%b::").replace("?", "%s")


class PgTx:
    dialect = "postgres"
    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(_pg_sql(sql), tuple(params))
            return list(cur.fetchall()) if cur.description else []

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with self.conn.cursor() as cur:
            cur.execute(_pg_sql(sql), tuple(params))
            row: Row | None = cur.fetchone() if cur.description else None
            return row

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(_pg_sql(sql), tuple(params))
            return cur.rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])

    def many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        if not rows:
            return []
        found: list[Row | None] = []
        with self.conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows], returning=True)
            while True:
                found.append(cur.fetchone())
                if not cur.nextset():
                    break
        return found

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def add_returning(
        self, table: str, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> dict[str, Row]:
        if not rows:
            return {}
        keys = sorted(str(r[0]) for r in rows)
        # Lock in key order first, so concurrent batches touching the same rows cannot deadlock.
        self.all(f"SELECT 1 FROM {table} WHERE {key} = ANY(?) ORDER BY {key} FOR UPDATE", [keys])
        unnest = ", ".join(f"unnest(?::bigint[]) AS d{n}" for n in range(len(columns)))
        sets = ", ".join(f"{c} = t.{c} + v.d{n}" for n, c in enumerate(columns))
        sql = (
            f"UPDATE {table} AS t SET {sets} FROM (SELECT unnest(?::text[]) AS k, {unnest}) AS v "
            f"WHERE t.{key} = v.k RETURNING t.{key}, {', '.join(f't.{c}' for c in columns)}"
        )
        params = [[str(r[0]) for r in rows], *[[int(r[n + 1]) for r in rows] for n in range(len(columns))]]
        return {str(r[0]): tuple(r[1:]) for r in self.all(sql, params)}

    def set_values(self, table: str, key: str, column: str, pairs: Sequence[tuple[str, int]]) -> None:
        if not pairs:
            return
        ordered = sorted(pairs)
        self.run(
            f"UPDATE {table} AS t SET {column} = v.val FROM (SELECT unnest(?::text[]) AS k, "
            f"unnest(?::bigint[]) AS val) AS v WHERE t.{key} = v.k",
            [[k for k, _ in ordered], [v for _, v in ordered]],
        )


def storage_problem(exc: psycopg.Error) -> StorageProblem:
    """What kind of failure, from its SQLSTATE: 53100 disk full, 25006 a read-only transaction (a standby),
    XX001 / XX002 damaged data or index."""
    state = exc.sqlstate or ""
    if state == "53100":
        return "storage_full"
    if state == "25006":
        return "storage_read_only"
    if state in ("XX001", "XX002"):
        return "storage_damaged"
    return "storage_failed"


@contextmanager
def _pg_errors() -> Iterator[None]:
    try:
        yield
    except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
        raise RetryableFailed(f"head-office database: {exc.__class__.__name__}") from exc
    except pg_errors.LockNotAvailable as exc:  # not retried here: its till asks again, after its backoff
        raise StorageFailed(
            f"head-office database: a lock held elsewhere for over {LOCK_WAIT_MS / 1000:g} s (another session's "
            "open transaction?)"
        ) from exc
    except pg_errors.IntegrityError as exc:
        raise IntegrityFailed(f"head-office database refused a row: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageFailed(
            f"head-office database failed: {exc.__class__.__name__}: {exc}", storage_problem(exc)
        ) from exc
    except PoolTimeout as exc:
        raise StorageFailed("head-office database: no connection available in time") from exc


WAIT_S = 3.0
"""Seconds a request waits for a connection of the pool: a till gives up after 5 s (its ``[hq] timeout``), so
with PostgreSQL down it must hear ``storage_unavailable`` (503, retried later) before that, not time out."""
LOCK_WAIT_MS = 2500
"""How long a statement of head office waits for a lock (PostgreSQL's ``lock_timeout``). Head office's own
transactions hold their locks for well under a second; one held longer is someone else's (an administrator's
session left open in psql, a long ``ALTER TABLE``). Without a bound a push waited on it as long as it was held,
past its till's timeout, keeping a connection of the pool, and the till's retries then took every connection:
one locked row of one till stopped every till. Now the push hears ``storage_unavailable`` and is tried again.
A migration at start waits on its own connection, with its own bound (``PgDb.migrating``)."""


def _bounded(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")


class PgDb:
    dialect = "postgres"

    def __init__(self, conninfo: str, *, pool_size: int = 16, timeout: float = 10.0, wait: float = WAIT_S) -> None:
        """``timeout``: for the first connection at start; ``wait``: for a connection of the pool, per request
        (PostgreSQL down: a request fails within it, before a till's own timeout gives up on it)."""
        self.conninfo = conninfo
        self.timeout = timeout
        self._checking = threading.Lock()
        with _pg_errors():
            self.pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                timeout=wait,
                kwargs={"autocommit": True},
                configure=_bounded,
                open=False,
                name="tillpoint-hq",
            )
            self.pool.open(wait=True, timeout=timeout)

    def close(self) -> None:
        self.pool.close()

    def backup(self, label: str) -> str:
        """``pg_dump --format=custom`` of the database into ``$TILLPOINT_HQ_BACKUP_DIR`` (default: the
        working directory, head office's state directory under systemd), restorable with pg_restore."""
        return _dump(self.conninfo, label, None)

    @contextmanager
    def migrating(self, lock_wait: float) -> Iterator[PgMigrator]:
        """A connection of its own holding ``MIGRATION_LOCK``; another head office holding it is waited for, as
        long as it migrates (said once, with who it is)."""
        with _pg_errors():
            conn = psycopg.connect(
                self.conninfo, autocommit=True, application_name=MIGRATOR, connect_timeout=max(1, round(self.timeout))
            )
        try:
            with _pg_errors():
                _take_migration_lock(conn, lock_wait)
            yield PgMigrator(conn, self.conninfo, lock_wait)
        finally:
            conn.close()  # the lock goes with the session

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with _pg_errors(), self._connection() as conn, conn.transaction():
            yield PgTx(conn)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with _pg_errors(), self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgTx(conn)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool. One PostgreSQL dropped (a restart, a crash and its recovery) fails its
        request; the others idle in the pool went with it, so the pool checks them then and replaces the dead
        ones: one request fails after a restart, not one for each connection the pool held."""
        with self.pool.connection() as conn:
            try:
                yield conn
            finally:
                if conn.broken:
                    self._check_pool()

    def _check_pool(self) -> None:
        if not self._checking.acquire(blocking=False):
            return  # another request is checking them
        try:
            self.pool.check()
        except (psycopg.Error, PoolTimeout):
            pass  # PostgreSQL still down: the next requests say so (storage_unavailable)
        finally:
            self._checking.release()

    def transact(self, fn: Callable[[Tx], T]) -> T:
        return transact_with_retries(self, fn)


MIGRATION_LOCK = 7_461_230_001
"""The advisory lock the process migrating a database holds, on its session, from its first look at what is
applied to the end of the fill-in: head-office processes starting together on one database migrate it once
(one backup, one migrator), the others waiting for it. Releases before took the same lock per migration
(``pg_advisory_xact_lock``), so a process of either kind waits for the other."""
MIGRATOR = "tillpoint-hq migration"
"""The migrating session's ``application_name``, as ``pg_stat_activity`` shows it."""
CONNECTION_CHECK_MS = 1000
"""How often the migrating session's server process checks that head office is still there
(``client_connection_check_interval``, PostgreSQL 14 on). A head office killed in the middle of a migration
leaves a server process that would go on with the statement it was given (a copy of millions of rows: minutes),
holding the migration's locks; it now stops within a second, its transaction rolled back, and the next start
migrates at once."""


def _take_migration_lock(conn: psycopg.Connection[Any], lock_wait: float) -> None:
    """Take ``MIGRATION_LOCK`` on ``conn``, waiting for a migrator that holds it however long it takes; then bound
    the session's lock waits to ``lock_wait`` seconds."""
    try:
        conn.execute(f"SET client_connection_check_interval = {CONNECTION_CHECK_MS}")
    except pg_errors.UndefinedObject:
        pass  # before PostgreSQL 14: a killed migrator's statement runs to its end first
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK]).fetchone()
    if not (row and row[0]):
        log.warning("waiting for the migration another head office is running on this database (%s)", _migrator(conn))
        conn.execute("SET lock_timeout = 0")
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    conn.execute(f"SET lock_timeout = {_ms(lock_wait)}")


def _ms(seconds: float) -> int:
    """A bound in PostgreSQL's milliseconds; never 0, which would be no bound at all."""
    return max(1, round(seconds * 1000))


def _migrator(conn: psycopg.Connection[Any]) -> str:
    """The session holding ``MIGRATION_LOCK``, as an operator finds it in ``pg_stat_activity``."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, host(a.client_addr), EXTRACT(EPOCH FROM now() - a.backend_start)::int "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint * 4294967296 + l.objid::bigint = %s",
        [MIGRATION_LOCK],
    ).fetchone()
    if row is None:
        return "its session has just ended"
    pid, name, host, seconds = row
    who = f"{name or 'no application name'} from {host or 'a local socket'}"
    return f"PostgreSQL session {pid}, {who}, connected {seconds} s ago"


def _open_transactions(conn: psycopg.Connection[Any], limit: int = 3) -> str:
    """The other sessions of the database with the oldest open transactions (one of them holds the lock a
    statement waited for), as ``pg_stat_activity`` shows them: what an operator ends or waits for."""
    try:
        rows = conn.execute(
            "SELECT pid, application_name, host(client_addr), state, EXTRACT(EPOCH FROM now() - xact_start)::int, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 80) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
            "ORDER BY xact_start LIMIT %s",
            [limit],
        ).fetchall()
    except psycopg.Error as exc:
        return f"the sessions could not be read: {exc.__class__.__name__}"
    if not rows:
        return "no other session has a transaction open now"
    return "; ".join(
        f"pid {pid} ({name or 'no application name'} from {host or 'a local socket'}, {state}, open {seconds} s: "
        f"{query})"
        for pid, name, host, state, seconds, query in rows
    )


class PgMigrator:
    """``PgDb.migrating``'s ``Db``: the connection holding the migration lock, every transaction on it; a lock
    waited for longer than ``lock_wait`` seconds is ``LockWaited``, naming the sessions to look at."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any], conninfo: str, lock_wait: float) -> None:
        self.conn = conn
        self.conninfo = conninfo
        self.lock_wait = lock_wait

    @contextmanager
    def _waits(self) -> Iterator[None]:
        try:
            yield
        except pg_errors.LockNotAvailable as exc:
            holders = _open_transactions(self.conn)
            raise LockWaited(
                f"head-office database: a lock held by another session for over {self.lock_wait:g} s ({holders})",
                self.lock_wait,
                holders,
            ) from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with _pg_errors(), self._waits(), self.conn.transaction():
            yield PgTx(self.conn)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with _pg_errors(), self._waits(), self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgTx(self.conn)

    def transact(self, fn: Callable[[Tx], T]) -> T:
        return transact_with_retries(self, fn)

    def backup(self, label: str) -> str:
        """As ``PgDb.backup``; ``pg_dump`` waits for the tables' locks ``lock_wait`` seconds at most."""
        return _dump(self.conninfo, label, self.lock_wait)

    @contextmanager
    def migrating(self, lock_wait: float) -> Iterator[PgMigrator]:
        yield self

    def close(self) -> None:
        """Nothing: ``PgDb.migrating`` closes the connection when its block ends."""


def _dump(conninfo: str, label: str, lock_wait: float | None) -> str:
    """``pg_dump --format=custom`` of the database into ``$TILLPOINT_HQ_BACKUP_DIR`` (default: the working
    directory); ``lock_wait``: seconds it waits for a table's lock (``None``: as long as it takes)."""
    directory = Path(os.environ.get("TILLPOINT_HQ_BACKUP_DIR") or os.getcwd())
    target = directory / f"hq-pre-{label}-{backup_stamp()}.dump"
    dump = _pg_dump()
    if dump is None:
        raise BackupFailed(
            "pg_dump was not found (Debian: postgresql-client); install it, or back up yourself and "
            "start once with --no-backup"
        )
    bound = [] if lock_wait is None else [f"--lock-wait-timeout={_ms(lock_wait)}"]
    try:
        done = subprocess.run(
            [dump, "--format=custom", *bound, "--file", str(target), "--dbname", conninfo],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        target.unlink(missing_ok=True)  # pg_dump killed at the timeout: its cut file is not a backup
        raise BackupFailed(f"pg_dump failed: {exc}") from exc
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        said = done.stderr.strip()[-500:]
        if lock_wait is not None and "timeout" in said and "LOCK TABLE" in said:  # --lock-wait-timeout ran out
            raise BackupFailed(
                f"pg_dump waited {lock_wait:g} s for a table's lock that another session holds ({_holders(conninfo)}); "
                "nothing was migrated: end that session or let it finish, then start again"
            )
        raise BackupFailed(f"pg_dump failed: {said}")
    os.chmod(target, 0o600)
    return str(target)


def _holders(conninfo: str) -> str:
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            return _open_transactions(conn)
    except psycopg.Error as exc:
        return f"the sessions could not be read: {exc.__class__.__name__}"


def _pg_dump() -> str | None:
    """pg_dump on PATH (Debian's wrapper picks the server's version), else the newest one installed."""
    found = shutil.which("pg_dump")
    if found:
        return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=lambda p: int(Path(p).parts[-3]))
    return versions[-1] if versions else None
