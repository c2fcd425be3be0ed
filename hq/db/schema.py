"""One small database interface over SQLite (sqlite3, the default) and PostgreSQL (psycopg 3, ``pg.py``).

Head office's SQL is written once, with ``?`` placeholders and only what both engines share
(``ON CONFLICT`` upserts, ``RETURNING``, ``BIGINT``/``TEXT``); a ``Tx`` adapts the rest:
placeholders, ``IN`` lists (``= ANY(?)`` on PostgreSQL), ``FOR UPDATE`` and ``executemany ... RETURNING``.

    Db.write()   a read-write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED)
    Db.read()    a consistent read-only snapshot (PostgreSQL: REPEATABLE READ READ ONLY)
    Db.transact(fn)  fn(tx) in a write transaction, retried on deadlock / serialization failure

Errors (lower-layer errors are translated here and in pg.py, never escape)::

    HqError
     +-- StorageFailed        the database failed or is unreachable (503)
          +-- IntegrityFailed a unique constraint refused a row
          +-- RetryableFailed a deadlock or serialization failure; transact() retries it
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("tillpoint.hq")
Row = tuple[Any, ...]
RETRIES = 5


class HqError(Exception):
    pass


class StorageFailed(HqError):
    pass


class IntegrityFailed(StorageFailed):
    pass


class RetryableFailed(StorageFailed):
    pass


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


# -- SQLite ---------------------------------------------------------------------------------------


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


@contextmanager
def sqlite_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise IntegrityFailed(f"head-office database refused a row: {exc}") from exc
    except sqlite3.Error as exc:
        raise StorageFailed(f"head-office database failed: {exc.__class__.__name__}: {exc}") from exc


class SqliteDb:
    """One connection guarded by a lock: SQLite has one writer anyway, and the lock keeps reads simple."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._lock = threading.RLock()
        self.path = path
        with sqlite_errors():
            self._conn = _sqlite_connect(path)

    def backup(self, label: str) -> str:
        """SQLite's online backup into ``<file>.pre-<label>-<time>`` (0600), beside the database."""
        target = f"{self.path}.pre-{label}-{backup_stamp()}"
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            with self._lock, closing(sqlite3.connect(target)) as copy:
                self._conn.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        except (OSError, sqlite3.Error) as exc:
            raise BackupFailed(f"could not back up {self.path} to {target}: {exc}") from exc
        return target

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        # IMMEDIATE takes the write lock up front, so another process writing the same file
        # makes us wait (busy timeout) instead of failing when a read turns into a write.
        with self._lock, sqlite_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTx(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock, sqlite_errors():
            self._conn.execute("BEGIN")
            try:
                yield SqliteTx(self._conn)
            finally:
                self._conn.execute("ROLLBACK")

    def transact(self, fn: Callable[[Tx], T]) -> T:
        return transact_with_retries(self, fn)


def open_db(url: str, *, pool_size: int = 16) -> Db:
    """``postgresql://...`` (or ``postgres://``) opens PostgreSQL; anything else is a SQLite file path."""
    if url.startswith(("postgresql://", "postgres://")):
        from hq.db.pg import PgDb

        return PgDb(url, pool_size=pool_size)
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")
    return SqliteDb(url)


# -- schema ---------------------------------------------------------------------------------------

# m001 is the walking skeleton's schema, written so that it is a no-op on a database that
# sqlite-utils created for it; m002 widens it for chains.
MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "m001_initial",
        [
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO counters (name, value) VALUES ('version', 0) ON CONFLICT (name) DO NOTHING",
            "CREATE TABLE IF NOT EXISTS terminals (terminal_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, "
            "token_sha256 TEXT NOT NULL, created_at TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, "
            "acked_seq BIGINT NOT NULL DEFAULT 0)",
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_terminals_token_sha256 ON terminals (token_sha256)",
            "CREATE TABLE IF NOT EXISTS members (member_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, "
            "tier TEXT NOT NULL, points BIGINT NOT NULL, status TEXT NOT NULL, version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS cards (uid_hash TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
            "status TEXT NOT NULL, version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS rules (rule_id TEXT PRIMARY KEY, points BIGINT NOT NULL, "
            "per_minor BIGINT NOT NULL, version BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS idx_members_version ON members (version)",
            "CREATE INDEX IF NOT EXISTS idx_cards_version ON cards (version)",
            "CREATE INDEX IF NOT EXISTS idx_rules_version ON rules (version)",
            "CREATE INDEX IF NOT EXISTS idx_cards_member_id ON cards (member_id)",
            # Both keys are permanent unique constraints: an entry is stored once per (terminal, seq)
            # and once per txn_id, whatever the retries.
            "CREATE TABLE IF NOT EXISTS journal (terminal_id TEXT NOT NULL, seq BIGINT NOT NULL, txn_id TEXT NOT NULL, "
            "kind TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, received_at TEXT NOT NULL, "
            "effect TEXT NOT NULL, PRIMARY KEY (terminal_id, seq))",
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_journal_txn_id ON journal (txn_id)",
        ],
    ),
    (
        "m002_chain",
        [
            "ALTER TABLE terminals ADD COLUMN next_token_sha256 TEXT",
            "ALTER TABLE terminals ADD COLUMN last_seen TEXT",
            "ALTER TABLE terminals ADD COLUMN clock_offset DOUBLE PRECISION",
            "ALTER TABLE members ADD COLUMN stored_value BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE members ADD COLUMN blocked_at TEXT",
            "ALTER TABLE members ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE cards ADD COLUMN blocked_at TEXT",
            "ALTER TABLE cards ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE rules ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE journal ADD COLUMN member_id TEXT",
            "ALTER TABLE journal ADD COLUMN store_id TEXT",
            "ALTER TABLE journal ADD COLUMN day TEXT",
            "ALTER TABLE journal ADD COLUMN total BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE journal ADD COLUMN points BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE journal ADD COLUMN stored_value BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX idx_journal_member_id ON journal (member_id)",
            "CREATE INDEX idx_journal_day ON journal (day, terminal_id)",
            "CREATE TABLE rule_docs (rule_id TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL, "
            "deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE coupons (coupon_id TEXT PRIMARY KEY, member_id TEXT, body TEXT NOT NULL, "
            "uses BIGINT NOT NULL DEFAULT 0, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE coupon_member_uses (coupon_id TEXT NOT NULL, member_id TEXT NOT NULL, "
            "uses BIGINT NOT NULL, PRIMARY KEY (coupon_id, member_id))",
            "CREATE TABLE coupon_uses (txn_id TEXT NOT NULL, coupon_id TEXT NOT NULL, member_id TEXT, "
            "released INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (txn_id, coupon_id))",
            "CREATE TABLE signing_keys (key_id TEXT PRIMARY KEY, body TEXT NOT NULL, sig TEXT NOT NULL, "
            "private_key TEXT, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE revocations (revocation_id TEXT PRIMARY KEY, body TEXT NOT NULL, sig TEXT NOT NULL, "
            "version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_rule_docs_version ON rule_docs (version)",
            "CREATE INDEX idx_coupons_version ON coupons (version)",
            "CREATE INDEX idx_signing_keys_version ON signing_keys (version)",
            "CREATE INDEX idx_revocations_version ON revocations (version)",
            "CREATE TABLE payment_codes (code_id TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, seq BIGINT NOT NULL, "
            "txn_id TEXT NOT NULL)",
            "CREATE TABLE recon_items (item_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, terminal_id TEXT NOT NULL, "
            "day TEXT NOT NULL, seq BIGINT, txn_id TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, "
            "state TEXT NOT NULL, created_at TEXT NOT NULL, settled_at TEXT, settled_by TEXT, note TEXT)",
            "CREATE INDEX idx_recon_items_terminal ON recon_items (terminal_id, day)",
            "CREATE INDEX idx_recon_items_txn ON recon_items (txn_id)",
            "CREATE TABLE eod_reports (terminal_id TEXT NOT NULL, day TEXT NOT NULL, first_seq BIGINT NOT NULL, "
            "last_seq BIGINT NOT NULL, totals TEXT NOT NULL, status TEXT NOT NULL, missing TEXT NOT NULL, "
            "mismatches TEXT NOT NULL, reported_at TEXT NOT NULL, checked_at TEXT NOT NULL, "
            "PRIMARY KEY (terminal_id, day))",
            "CREATE TABLE enrol_codes (code_sha256 TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, store_id TEXT NOT NULL, "
            "created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT)",
            "CREATE TABLE admins (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, "
            "revoked INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    # -- members made outside head office: enrolment at the till, claims by QR, erasure (hq/members.py)
    (
        "m003_members_enrolment",
        [
            "CREATE TABLE enrolments (member_id TEXT PRIMARY KEY, uid_hash TEXT NOT NULL, terminal_id TEXT NOT NULL, "
            "txn_id TEXT NOT NULL, created_at TEXT NOT NULL, merged_into TEXT)",
            "CREATE INDEX idx_enrolments_merged ON enrolments (merged_into)",
            "CREATE TABLE consents (member_id TEXT NOT NULL, wording_version TEXT NOT NULL, channel TEXT NOT NULL, "
            "given_at TEXT NOT NULL, PRIMARY KEY (member_id, wording_version, channel))",
            "CREATE TABLE claim_keys (key_id TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, public_key TEXT NOT NULL, "
            "created_at TEXT NOT NULL)",
            "CREATE TABLE claims (txn_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, points BIGINT NOT NULL, "
            "claimed_at TEXT NOT NULL)",
            "CREATE TABLE erasures (member_id TEXT PRIMARY KEY, erased_at TEXT NOT NULL, erased_by TEXT NOT NULL)",
        ],
    ),
    # -- end of members block
    # -- member payments (hq/payments.py): device certificates, member app tokens, top-ups,
    # online confirmations of payment codes.
    (
        "m003_payments",
        [
            "CREATE TABLE device_certs (cert_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, body TEXT NOT NULL, "
            "created_at TEXT NOT NULL, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_device_certs_version ON device_certs (version)",
            "CREATE INDEX idx_device_certs_member ON device_certs (member_id)",
            "CREATE TABLE member_tokens (token_sha256 TEXT PRIMARY KEY, member_id TEXT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE TABLE topups (topup_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, amount BIGINT NOT NULL, "
            "balance_after BIGINT NOT NULL, by_whom TEXT NOT NULL, note TEXT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE INDEX idx_topups_member ON topups (member_id)",
            "CREATE TABLE payment_confirms (code_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, terminal_id TEXT NOT NULL, "
            "txn_id TEXT NOT NULL, amount BIGINT NOT NULL, confirmed_at TEXT NOT NULL)",
            "CREATE INDEX idx_payment_confirms_member ON payment_confirms (member_id)",
        ],
    ),
    # -- the trust rules (hq/policy.py): quarantine, what each sale took and gave back, what
    # authorised each spend, and every secure card counter used chain-wide.
    (
        "m004_trust",
        [
            "ALTER TABLE journal ADD COLUMN original_txn TEXT",
            "ALTER TABLE journal ADD COLUMN proof TEXT",
            "ALTER TABLE journal ADD COLUMN points_spent BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX idx_journal_original_txn ON journal (original_txn)",
            "CREATE INDEX idx_journal_effect ON journal (effect)",
            "ALTER TABLE recon_items ADD COLUMN quarantine INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE cards ADD COLUMN counter BIGINT",
            "CREATE TABLE sales (txn_id TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, member_id TEXT, "
            "payable BIGINT NOT NULL, stored_value BIGINT NOT NULL, points_redeemed BIGINT NOT NULL, "
            "money_back BIGINT NOT NULL DEFAULT 0, stored_value_back BIGINT NOT NULL DEFAULT 0, "
            "points_restored BIGINT NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_sales_member ON sales (member_id)",
            "CREATE TABLE card_taps (uid_hash TEXT NOT NULL, counter BIGINT NOT NULL, terminal_id TEXT NOT NULL, "
            "txn_id TEXT NOT NULL, PRIMARY KEY (uid_hash, counter))",
            "UPDATE journal SET effect = 'quarantined' WHERE effect = 'unknown_kind'",
            "CREATE TABLE journal_lost (terminal_id TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, "
            "reason TEXT NOT NULL, reported_at TEXT NOT NULL, PRIMARY KEY (terminal_id, first_seq))",
            "CREATE TABLE quarantine_decisions (txn_id TEXT PRIMARY KEY, decision TEXT NOT NULL, by_whom TEXT NOT NULL, "
            "note TEXT NOT NULL, decided_at TEXT NOT NULL)",
        ],
    ),
    # -- head office owns time and bounds what it cannot check again: when each terminal last pulled (every
    # entry made before that was pushed by then), the device behind each code payment (its offline cap), how a
    # card proves itself once head office has verified it, and what each sale earned and refunds took back.
    (
        "m005_bounds",
        [
            "ALTER TABLE terminals ADD COLUMN last_pull TEXT",
            "ALTER TABLE journal ADD COLUMN device TEXT",
            "CREATE INDEX idx_journal_device ON journal (device, received_at)",
            "CREATE INDEX idx_journal_received ON journal (terminal_id, received_at)",
            "ALTER TABLE cards ADD COLUMN secure TEXT",
            "ALTER TABLE sales ADD COLUMN points_earned BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE sales ADD COLUMN points_clawed BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    # -- reconciliation a person can act on: each store's business day (its time zone and cut-off), every
    # version of the pricing documents (a sale is priced again with the versions it names), items read by
    # group (one cause, one till, one day) and by cursor.
    (
        "m006_signal",
        [
            "CREATE TABLE stores (store_id TEXT PRIMARY KEY, timezone TEXT NOT NULL, day_starts TEXT NOT NULL, "
            "updated_at TEXT NOT NULL)",
            "CREATE TABLE doc_versions (kind TEXT NOT NULL, doc_id TEXT NOT NULL, digest TEXT NOT NULL, body TEXT NOT NULL, "
            "first_seen TEXT NOT NULL, PRIMARY KEY (kind, doc_id, digest))",
            "CREATE INDEX idx_doc_versions_digest ON doc_versions (digest)",
            "CREATE TABLE doc_events (kind TEXT NOT NULL, doc_id TEXT NOT NULL, digest TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE INDEX idx_doc_events ON doc_events (kind, doc_id, at)",
            "CREATE INDEX idx_items_group ON recon_items (state, terminal_id, day, reason)",
            "CREATE INDEX idx_items_cursor ON recon_items (created_at, item_id)",
            "ALTER TABLE journal ADD COLUMN made_at TEXT",
            "CREATE TABLE status_changes (kind TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL, "
            "by_whom TEXT NOT NULL, reason TEXT NOT NULL, changed_at TEXT NOT NULL)",
        ],
    ),
    # The fleet view: each till's last health report (protocol 2), as it came, with head office's time.
    (
        "m007_fleet",
        [
            "CREATE TABLE terminal_health (terminal_id TEXT PRIMARY KEY, reported_at TEXT NOT NULL, body TEXT NOT NULL)",
        ],
    ),
]


class BackupFailed(HqError):
    """The copy an upgrade takes first could not be made: nothing was migrated."""


class NewerSchema(HqError):
    """The database was upgraded by a newer release than this one: refused, never written."""


MIGRATION_LOCK = 7_461_230_001
"""PostgreSQL advisory lock taken by each migration: head-office processes starting together on one
database apply each migration once."""


def migrate(db: Db, *, backup: bool = True) -> list[str]:
    """Apply the migrations this database lacks (forward only), each in its own transaction, after a
    backup of a database that already held data (``backup=False``: the operator made one); returns
    their names. Refuses (``NewerSchema``) a database a newer release migrated."""
    with db.write() as tx:
        tx.run("CREATE TABLE IF NOT EXISTS hq_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row[0] for row in tx.all("SELECT name FROM hq_migrations")}
    known = [name for name, _ in MIGRATIONS]
    unknown = sorted(done - set(known))
    if unknown:
        raise NewerSchema(
            f"this head-office database was upgraded by a newer tillpoint (migrations {', '.join(unknown)}); "
            "run that release, or restore the backup taken before the upgrade"
        )
    pending = [name for name in known if name not in done]
    if pending and done and backup:
        where = db.backup(pending[0])
        log.warning("head-office database backed up to %s before migrations %s", where, ", ".join(pending))
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        with db.write() as tx:
            if db.dialect == "postgres":
                tx.one("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
                if tx.one("SELECT name FROM hq_migrations WHERE name = ?", [name]) is not None:
                    continue  # another process applied it while this one waited
            for statement in statements:
                tx.run(statement)
            tx.run("INSERT INTO hq_migrations (name, applied_at) VALUES (?, ?)", (name, utc_now()))
        applied.append(name)
    return applied


def backup_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
