"""The SQLite engine (sqlite3, the default): one connection, WAL, a lock per transaction."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hq.db.engine import Row, Tx, backup_stamp, transact_with_retries
from hq.errors import BackupFailed, IntegrityFailed, StorageFailed, StorageProblem

T = TypeVar("T")


class SqliteTx:
    dialect = "sqlite"
    for_update = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, tuple(params)).fetchone()
        return row

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        # sqlite3's executemany cannot return rows; in-process statements are cheap one by one.
        return [self.conn.execute(sql, tuple(row)).fetchone() for row in rows]

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if not values:
            return "0 = 1", []
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def add_returning(
        self, table: str, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> dict[str, Row]:
        sets = ", ".join(f"{c} = {c} + ?" for c in columns)
        sql = f"UPDATE {table} SET {sets} WHERE {key} = ? RETURNING {key}, {', '.join(columns)}"
        found = {}
        for row in sorted(rows, key=lambda r: r[0]):
            got = self.conn.execute(sql, (*row[1:], row[0])).fetchone()
            if got is not None:
                found[str(got[0])] = tuple(got[1:])
        return found

    def set_values(self, table: str, key: str, column: str, pairs: Sequence[tuple[str, int]]) -> None:
        self.conn.executemany(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", [(v, k) for k, v in sorted(pairs)])


def _sqlite_connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:  # readable by head office's user only, whatever the umask (WAL and -shm files follow it)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


LOW_DISK = 1 << 20
"""Bytes free under which an I/O error of the database is taken for a full disk (SQLite may then fail to
make its shared-memory file, and says 'disk I/O error')."""
HINTS: dict[StorageProblem, str] = {
    "storage_full": "free space on the disk that holds it",
    "storage_read_only": "head office must be able to write the file and its directory",
    "storage_damaged": "restore the latest backup (docs/deploy.md)",
    "storage_failed": "",
}


def storage_problem(exc: sqlite3.Error, path: str | None) -> StorageProblem:
    """What kind of failure ``exc`` is, from SQLite's code and the state of the file's directory."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    folder = Path(path).resolve().parent if path and path != ":memory:" else None
    if name.startswith("SQLITE_FULL"):
        return "storage_full"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
        return "storage_damaged"
    if name.startswith("SQLITE_READONLY"):
        return "storage_read_only"
    if folder is not None and name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR")):
        try:  # the directory's state says which; one that cannot be read says nothing
            if shutil.disk_usage(folder).free < LOW_DISK:
                return "storage_full"
            file = Path(path or "")
            writable = os.access(folder, os.W_OK) and (not file.exists() or os.access(file, os.W_OK))
            if not writable or os.statvfs(folder).f_flag & os.ST_RDONLY:
                return "storage_read_only"
        except OSError:
            pass
    return "storage_failed"


@contextmanager
def sqlite_errors(path: str | None = None) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise IntegrityFailed(f"head-office database refused a row: {exc}") from exc
    except sqlite3.Error as exc:
        problem = storage_problem(exc, path)
        hint = f" ({HINTS[problem]})" if HINTS[problem] else ""
        raise StorageFailed(f"head-office database failed: {exc.__class__.__name__}: {exc}{hint}", problem) from exc


def os_problem(exc: OSError) -> StorageProblem:
    """What kind of failure making the database's directory or file is, from its errno."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "storage_full"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "storage_read_only"
    return "storage_failed"


def quick_check(conn: sqlite3.Connection) -> str | None:
    """Why the open database is damaged (SQLite's quick_check, the first problems it names), or None."""
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
    return "; ".join(problems[:5]) or None


def _emptied(path: str) -> bool:
    """A database file that is there but holds nothing, not even in its WAL: SQLite would take it for a new
    database and head office would serve, or a command report on, an empty chain in place of the one it held
    (head office sets a new file's WAL mode as it opens it, which writes its first page: only a crash in that
    instant would leave one)."""
    try:
        if path == ":memory:" or Path(path).stat().st_size > 0:
            return False
    except OSError:  # not there (a new database), or unreadable (opening it says what is wrong)
        return False
    try:
        return Path(f"{path}-wal").stat().st_size == 0
    except OSError:
        return True


class SqliteDb:
    """One connection guarded by a lock: SQLite has one writer anyway, and the lock keeps reads simple."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._lock = threading.RLock()
        self.path = path
        if _emptied(path):
            raise StorageFailed(
                f"head-office database {path} is an empty file (0 bytes): a copy or restore cut short, or a file "
                f"emptied? {HINTS['storage_damaged']}; to start a new head office instead, remove the empty file",
                "storage_damaged",
            )
        held = path != ":memory:" and Path(path).exists() and Path(path).stat().st_size > 0
        try:
            with sqlite_errors(path):
                self._conn = _sqlite_connect(path)
                damage = quick_check(self._conn) if held else None  # a file that held data: read whole first
        except OSError as exc:  # its directory or file could not be made
            problem = os_problem(exc)
            hint = f" ({HINTS[problem]})" if HINTS[problem] else ""
            raise StorageFailed(f"head-office database {path}: {exc}{hint}", problem) from exc
        if damage is not None:
            self._conn.close()
            raise StorageFailed(
                f"head-office database {path} is damaged: {damage} ({HINTS['storage_damaged']})", "storage_damaged"
            )

    def backup(self, label: str) -> str:
        """SQLite's online backup into ``<file>.pre-<label>-<time>`` (0600), beside the database. One that fails
        (a full disk) removes the file it made: an empty or cut copy is not left to pass for a backup."""
        target = f"{self.path}.pre-{label}-{backup_stamp()}"
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # never another's file
        except OSError as exc:
            raise BackupFailed(f"could not back up {self.path} to {target}: {exc}") from exc
        try:
            with self._lock, closing(sqlite3.connect(target)) as copy:
                self._conn.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        except BaseException as exc:
            for made in (target, f"{target}-journal"):
                Path(made).unlink(missing_ok=True)
            if isinstance(exc, OSError | sqlite3.Error):
                raise BackupFailed(f"could not back up {self.path} to {target}: {exc}") from exc
            raise
        return target

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        # IMMEDIATE takes the write lock up front, so another process writing the same file
        # makes us wait (busy timeout) instead of failing when a read turns into a write.
        with self._lock, sqlite_errors(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTx(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite ends it itself on some errors (a full disk: SQLITE_FULL)
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock, sqlite_errors(self.path):
            self._conn.execute("BEGIN")
            try:
                yield SqliteTx(self._conn)
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def transact(self, fn: Callable[[Tx], T]) -> T:
        return transact_with_retries(self, fn)

    @contextmanager
    def migrating(self, lock_wait: float) -> Iterator[SqliteDb]:
        """SQLite: this connection as it is. Each migration's ``BEGIN IMMEDIATE`` already waits for another
        process's (up to the busy timeout), and the migration reads what is applied again inside it."""
        yield self
