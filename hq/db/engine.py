"""The storage-engine protocol every head-office module writes against: ``Db`` and its ``Tx``.

Head office's SQL is written once, with ``?`` placeholders and only what both engines share
(``ON CONFLICT`` upserts, ``RETURNING``, ``BIGINT``/``TEXT``); a ``Tx`` adapts the rest:
placeholders, ``IN`` lists (``= ANY(?)`` on PostgreSQL), ``FOR UPDATE`` and ``executemany ... RETURNING``.

    Db.write()   a read-write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED)
    Db.read()    a consistent read-only snapshot (PostgreSQL: REPEATABLE READ READ ONLY)
    Db.transact(fn)  fn(tx) in a write transaction, retried on deadlock / serialization failure
    Db.migrating(w)  this process as the database's one migrator (another one migrating is waited for), on a
                     ``Db`` whose statements wait for a lock ``w`` seconds at most

The engines (``hq.db.sqlite``, ``hq.db.pg``) translate their drivers' errors into ``hq.errors``; none
escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from hq.errors import RetryableFailed

T = TypeVar("T")
Row = tuple[Any, ...]
RETRIES = 5


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Tx(Protocol):
    dialect: str
    for_update: str

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement; returns the row count."""
        ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        """Execute once per row; the first returned row of each (None when nothing matched)."""
        ...

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A ``column IN (...)`` condition and its parameters."""
        ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert new rows in bulk (PostgreSQL: COPY); a unique violation raises IntegrityFailed."""
        ...

    def add_returning(
        self, table: str, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> dict[str, Row]:
        """``UPDATE table SET c = c + delta`` for each (key, *deltas) row, locking rows in key order;
        returns the new values by key (absent keys are missing from the answer)."""
        ...

    def set_values(self, table: str, key: str, column: str, pairs: Sequence[tuple[str, int]]) -> None:
        """``UPDATE table SET column = value WHERE key = k`` for each (k, value), in key order."""
        ...


class Db(Protocol):
    dialect: str

    def write(self) -> AbstractContextManager[Tx]: ...

    def read(self) -> AbstractContextManager[Tx]: ...

    def transact(self, fn: Callable[[Tx], T]) -> T: ...

    def backup(self, label: str) -> str:
        """A full copy of the database before an upgrade; returns where it went (``BackupFailed``)."""
        ...

    def migrating(self, lock_wait: float) -> AbstractContextManager[Db]:
        """This process as the one that migrates the database, until the block ends: another process migrating it
        is waited for first (PostgreSQL: an advisory lock on a connection of its own, gone with the connection
        if the process dies). The ``Db`` it gives runs the migrations and their fill-in; its statements wait
        ``lock_wait`` seconds at most for a lock another session holds (``LockWaited``), its backup as long."""
        ...

    def close(self) -> None: ...


def transact_with_retries(db: Db, fn: Callable[[Tx], T]) -> T:
    for attempt in range(RETRIES):
        try:
            with db.write() as tx:
                return fn(tx)
        except RetryableFailed:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def backup_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
