"""Head office on PostgreSQL (psycopg 3 with a connection pool), for chains.

The same statements as on SQLite (see ``sqlite.py``); ``?`` placeholders become ``%s`` here.
Writers run READ COMMITTED and lock what they count (the terminal row, member and coupon rows,
the version counter) in one fixed order, so concurrent pushes of different terminals never see
a stale count; a deadlock or serialization failure is retried by ``Db.transact``.
"""

from __future__ import annotations

import glob
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
from hq.errors import BackupFailed, IntegrityFailed, RetryableFailed, StorageFailed, StorageProblem

T = TypeVar("T")


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


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
one locked row of one till stopped every till. Now the push hears ``storage_unavailable`` and is tried again."""


def _bounded(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")


class PgDb:
    dialect = "postgres"

    def __init__(self, conninfo: str, *, pool_size: int = 16, timeout: float = 10.0, wait: float = WAIT_S) -> None:
        """``timeout``: for the first connection at start; ``wait``: for a connection of the pool, per request
        (PostgreSQL down: a request fails within it, before a till's own timeout gives up on it)."""
        self.conninfo = conninfo
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
        directory = Path(os.environ.get("TILLPOINT_HQ_BACKUP_DIR") or os.getcwd())
        target = directory / f"hq-pre-{label}-{backup_stamp()}.dump"
        dump = _pg_dump()
        if dump is None:
            raise BackupFailed(
                "pg_dump was not found (Debian: postgresql-client); install it, or back up yourself and "
                "start once with --no-backup"
            )
        try:
            done = subprocess.run(
                [dump, "--format=custom", "--file", str(target), "--dbname", self.conninfo],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupFailed(f"pg_dump failed: {exc}") from exc
        if done.returncode != 0:
            raise BackupFailed(f"pg_dump failed: {done.stderr.strip()[-500:]}")
        os.chmod(target, 0o600)
        return str(target)

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


def _pg_dump() -> str | None:
    """pg_dump on PATH (Debian's wrapper picks the server's version), else the newest one installed."""
    found = shutil.which("pg_dump")
    if found:
        return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=lambda p: int(Path(p).parts[-3]))
    return versions[-1] if versions else None
