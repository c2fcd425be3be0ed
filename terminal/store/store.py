"""The terminal's SQLite database: cache, journal and sync state, behind a small verb-named API.

One connection, guarded by a lock, in WAL mode with ``synchronous=FULL``: a sale's balance change
and its journal row are written in one ``db.atomic()`` block, and the caller approves the sale
only after that block's COMMIT returned. SQLite errors are translated here: a full disk becomes
``Rejected(STORAGE_FULL)``, anything else ``Rejected(STORAGE_FAILED)``; nothing half-written stays.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from terminal.errors import Code, Rejected
from terminal.model import Card, EarnRule, JournalEntry, Member, Status
from terminal.store.schema import migrations

DEFAULT_RULE = EarnRule("base", 1, 100)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _storage_error(exc: sqlite3.Error) -> Rejected:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return Rejected(Code.STORAGE_FULL)
    return Rejected(Code.STORAGE_FAILED, f"The till could not record this ({exc}).")


def _member(row: sqlite3.Row | tuple[Any, ...] | None) -> Member | None:
    if row is None:
        return None
    member_id, name, tier, points, status = row
    return Member(member_id, name, tier, points, Status(status))


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    seq, txn_id, terminal_id, kind, payload, created_at, pushed_at = row
    return JournalEntry(terminal_id, seq, txn_id, kind, json.loads(payload), created_at, pushed_at)


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            db = Database(_connect(Path(path)))
            migrations.apply(db)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc
        return cls(db)

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self.db.atomic():
                    yield self.db.conn
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.db.conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc

    # -- cache -------------------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        rows = self._read(
            "SELECT member_id, display_name, tier, points, status FROM members WHERE member_id = ?",
            [member_id],
        )
        return _member(rows[0] if rows else None)

    def card(self, uid_hash: str) -> Card | None:
        rows = self._read("SELECT uid_hash, member_id, status FROM cards WHERE uid_hash = ?", [uid_hash])
        return Card(rows[0][0], rows[0][1], Status(rows[0][2])) if rows else None

    def earn_rule(self) -> EarnRule:
        rows = self._read("SELECT rule_id, points, per_minor FROM rules WHERE rule_id = 'base'")
        return EarnRule(*rows[0]) if rows else DEFAULT_RULE

    def counts(self) -> dict[str, int]:
        names = ("members", "cards", "rules")
        return {name: self._read(f"SELECT COUNT(*) FROM {name}")[0][0] for name in names}

    # -- transactions ------------------------------------------------------------------------

    def record(
        self,
        entry: JournalEntry,
        points: tuple[str, int] | None = None,
        sale: dict[str, Any] | None = None,
        voids: str | None = None,
    ) -> tuple[JournalEntry, int | None]:
        """Write one transaction atomically: the member's points change, the sale row, the
        journal row (its seq assigned here, gapless), and the voided sale's mark. Returns the
        stored entry and the member's new balance, after COMMIT."""
        with self._write() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM journal").fetchone()[0]
            stored = JournalEntry(entry.terminal_id, seq, entry.txn_id, entry.kind, entry.payload, entry.created_at)
            conn.execute(
                "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) VALUES (?,?,?,?,?,?)",
                (seq, stored.txn_id, stored.terminal_id, stored.kind, json.dumps(stored.payload), stored.created_at),
            )
            balance = _add_points(conn, *points) if points else None
            if sale is not None:
                conn.execute(
                    "INSERT INTO sales (txn_id, member_id, total, points_delta) VALUES (?,?,?,?)",
                    (entry.txn_id, sale["member_id"], sale["total"], sale["points_delta"]),
                )
            if voids is not None:
                conn.execute("UPDATE sales SET voided_by = ? WHERE txn_id = ?", (entry.txn_id, voids))
        return stored, balance

    def sale(self, txn_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT txn_id, member_id, total, points_delta, voided_by FROM sales WHERE txn_id = ?", [txn_id])
        if not rows:
            return None
        return dict(zip(("txn_id", "member_id", "total", "points_delta", "voided_by"), rows[0], strict=True))

    # -- journal and sync ----------------------------------------------------------------------

    def unpushed(self, limit: int) -> list[JournalEntry]:
        rows = self._read(
            "SELECT seq, txn_id, terminal_id, kind, payload, created_at, pushed_at FROM journal "
            "WHERE pushed_at IS NULL ORDER BY seq LIMIT ?",
            [limit],
        )
        return [_entry(row) for row in rows]

    def entries(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]:
        rows = self._read(
            "SELECT seq, txn_id, terminal_id, kind, payload, created_at, pushed_at FROM journal "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            [after_seq, limit],
        )
        return [_entry(row) for row in rows]

    def pending_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM journal WHERE pushed_at IS NULL")[0][0])

    def mark_pushed(self, up_to_seq: int, at: str) -> int:
        """Mark every entry up to ``up_to_seq`` as acknowledged by head office."""
        with self._write() as conn:
            cur = conn.execute("UPDATE journal SET pushed_at = ? WHERE seq <= ? AND pushed_at IS NULL", (at, up_to_seq))
            return cur.rowcount

    def apply_changes(self, members: list[Member], cards: list[Card], rules: list[EarnRule], cursor: int) -> None:
        """Apply one page of head-office changes and its cursor in one transaction.

        Head office's balance already holds every entry it acknowledged; the till adds back the
        deltas of its own entries not yet acknowledged, so a pull never loses a local sale."""
        with self._write() as conn:
            for m in members:
                pending = _pending_points(conn, m.member_id)
                conn.execute(
                    "INSERT INTO members (member_id, display_name, tier, points, hq_points, status) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT(member_id) DO UPDATE SET display_name=excluded.display_name, tier=excluded.tier, "
                    "points=excluded.points, hq_points=excluded.hq_points, status=excluded.status",
                    (m.member_id, m.display_name, m.tier, m.points + pending, m.points, m.status.value),
                )
            conn.executemany(
                "INSERT INTO cards (uid_hash, member_id, status) VALUES (?,?,?) ON CONFLICT(uid_hash) DO UPDATE "
                "SET member_id=excluded.member_id, status=excluded.status",
                [(c.uid_hash, c.member_id, c.status.value) for c in cards],
            )
            conn.executemany(
                "INSERT INTO rules (rule_id, points, per_minor) VALUES (?,?,?) ON CONFLICT(rule_id) DO UPDATE "
                "SET points=excluded.points, per_minor=excluded.per_minor",
                [(r.rule_id, r.points, r.per_minor) for r in rules],
            )
            _set_state(conn, "cursor", str(cursor))

    def state(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM sync_state WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def set_state(self, **values: str | None) -> None:
        with self._write() as conn:
            for key, value in values.items():
                _set_state(conn, key, value)

    def integrity_ok(self) -> bool:
        return self._read("PRAGMA quick_check")[0][0] == "ok"


def _add_points(conn: sqlite3.Connection, member_id: str, delta: int) -> int | None:
    conn.execute("UPDATE members SET points = points + ? WHERE member_id = ?", (delta, member_id))
    row = conn.execute("SELECT points FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return int(row[0]) if row else None


def _pending_points(conn: sqlite3.Connection, member_id: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(json_extract(payload, '$.points_delta')), 0) FROM journal "
        "WHERE pushed_at IS NULL AND json_extract(payload, '$.member_id') = ?",
        (member_id,),
    ).fetchone()
    return int(row[0])


def _set_state(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM sync_state WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
