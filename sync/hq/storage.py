"""Head office's database: terminals, members, cards, earning rules and every terminal's journal.

``HqStorage`` is the small interface the API needs; ``HqStore`` implements it (and the admin verbs)
over SQLite in WAL mode with ``synchronous=FULL``. One connection guarded by a lock serves the
uvicorn threadpool; every write is one ``BEGIN IMMEDIATE`` transaction, so a push is all or nothing.
The SQL stays plain (``ON CONFLICT`` upserts, no SQLite-only functions) so that a PostgreSQL
implementation of ``HqStorage`` can follow the same statements.

Versions: one global counter numbers every change to a member, card or rule; ``changes(since)``
returns rows with a higher version. The counter is a row updated inside the writing transaction, so
writers serialise on it and versions become visible in commit order (which a PostgreSQL sequence
would not guarantee), and a cursor never skips a row that commits late.

Errors::

    HqError                 anything this module refuses
     +-- SeqConflict        an entry reuses a (terminal, seq) or txn_id with different content (409)
     +-- WrongTerminal      an entry claims another terminal than the one pushing it (403)
     +-- UnknownTerminal    a push for a terminal that was never registered
     +-- StorageFailed      the database failed (sqlite3.Error, translated here) (503)
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from sync.protocol import ChangesPage, PushResponse, WireCard, WireEntry, WireMember, WireRule
from terminal.credentials import token_digest

STATUSES = ("active", "blocked")
POINT_KINDS = ("sale", "void")

migrations = Migrations("tillpoint.hq")


class HqError(Exception):
    pass


class SeqConflict(HqError):
    def __init__(self, entry: WireEntry, held: Sequence[tuple[str, int, str]]) -> None:
        self.terminal_id, self.seq, self.txn_id = entry.terminal_id, entry.seq, entry.txn_id
        others = ", ".join(f"{t} seq {s} txn {x}" for t, s, x in held)
        super().__init__(
            f"entry {entry.terminal_id} seq {entry.seq} txn {entry.txn_id} conflicts with stored {others}; "
            "nothing of this batch was stored"
        )


class WrongTerminal(HqError):
    pass


class UnknownTerminal(HqError):
    pass


class StorageFailed(HqError):
    pass


class Effect(StrEnum):
    """What ingesting an entry did to balances; kept on the journal row for reconciliation."""

    APPLIED = "applied"
    NONE = "none"  # a sale without a member, or a zero delta
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_MEMBER = "unknown_member"
    MALFORMED = "malformed"


class HqStorage(Protocol):
    """What the API needs from head office's storage (SQLite today, PostgreSQL later)."""

    def authenticate(self, token: str) -> str | None: ...

    def ingest(self, terminal_id: str, entries: list[WireEntry]) -> PushResponse: ...

    def changes(self, since: int, limit: int = 500) -> ChangesPage: ...


# -- schema ---------------------------------------------------------------------------------------


@migrations()
def m001_initial(db: Database) -> None:
    db.table("counters").create({"name": str, "value": int}, pk="name", not_null={"value"})
    db.table("counters").insert({"name": "version", "value": 0})
    # acked_seq is the terminal's contiguous watermark, kept so a push only scans entries above it.
    db.table("terminals").create(
        {"terminal_id": str, "store_id": str, "token_sha256": str, "created_at": str, "revoked": int, "acked_seq": int},
        pk="terminal_id",
        not_null={"store_id", "token_sha256", "created_at", "revoked", "acked_seq"},
        defaults={"revoked": 0, "acked_seq": 0},
    )
    db.table("terminals").create_index(["token_sha256"], unique=True)
    _create_master_data(db)
    _create_journal(db)


def _create_master_data(db: Database) -> None:
    db.table("members").create(
        {"member_id": str, "display_name": str, "tier": str, "points": int, "status": str, "version": int},
        pk="member_id",
        not_null={"display_name", "tier", "points", "status", "version"},
    )
    db.table("cards").create(
        {"uid_hash": str, "member_id": str, "status": str, "version": int},
        pk="uid_hash",
        not_null={"member_id", "status", "version"},
    )
    db.table("rules").create(
        {"rule_id": str, "points": int, "per_minor": int, "version": int},
        pk="rule_id",
        not_null={"points", "per_minor", "version"},
    )
    for table in ("members", "cards", "rules"):
        db.table(table).create_index(["version"])
    db.table("cards").create_index(["member_id"])


def _create_journal(db: Database) -> None:
    # Both keys are permanent unique constraints: an entry is stored once per (terminal, seq)
    # and once per txn_id, whatever the retries.
    db.table("journal").create(
        {
            "terminal_id": str,
            "seq": int,
            "txn_id": str,
            "kind": str,
            "payload": str,
            "created_at": str,
            "received_at": str,
            "effect": str,
        },
        pk=("terminal_id", "seq"),
        not_null={"txn_id", "kind", "payload", "created_at", "received_at", "effect"},
    )
    db.table("journal").create_index(["txn_id"], unique=True)


# -- small pure helpers ---------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def contiguous(watermark: int, seqs: Iterable[int]) -> tuple[int, list[tuple[int, int]]]:
    """The highest seq reachable from ``watermark`` without a hole, and the holes (first, last).

    ``seqs`` are the stored seqs above ``watermark``, ascending; everything up to it is stored.
    """
    acked, prev, gaps = watermark, watermark, []
    for seq in seqs:
        if seq > prev + 1:
            gaps.append((prev + 1, seq - 1))
        elif not gaps:
            acked = seq
        prev = seq
    return acked, gaps


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")


def _effect_of(entry: WireEntry) -> tuple[Effect, str | None, int]:
    """Classify an entry before touching balances: (effect if the member exists, member, delta)."""
    if entry.kind not in POINT_KINDS:
        return Effect.UNKNOWN_KIND, None, 0
    member_id, delta = entry.payload.get("member_id"), entry.payload.get("points_delta")
    # bool is an int subclass; True must not become one point.
    if not isinstance(member_id, str | None) or type(delta) is not int:
        return Effect.MALFORMED, None, 0
    if member_id is None or delta == 0:
        return Effect.NONE, None, 0
    return Effect.APPLIED, member_id, delta


def _payload_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageFailed(f"head-office database failed: {exc.__class__.__name__}: {exc}") from exc


# -- rows the changes feed returns ----------------------------------------------------------------

_MEMBER_COLUMNS = "member_id, display_name, tier, points, status"
_CARD_COLUMNS = "uid_hash, member_id, status"
_RULE_COLUMNS = "rule_id, points, per_minor"


def _wire_member(row: Sequence[Any]) -> WireMember:
    member_id, display_name, tier, points, status = row[:5]
    return WireMember(member_id=member_id, display_name=display_name, tier=tier, points=points, status=status)


def _wire_card(row: Sequence[Any]) -> WireCard:
    return WireCard(uid_hash=row[0], member_id=row[1], status=row[2])


def _wire_rule(row: Sequence[Any]) -> WireRule:
    return WireRule(rule_id=row[0], points=row[1], per_minor=row[2])


def _page(since: int, limit: int, rows: list[tuple[int, WireMember | WireCard | WireRule]]) -> ChangesPage:
    rows.sort(key=lambda pair: pair[0])
    taken = rows[:limit]
    page = ChangesPage(cursor=taken[-1][0] if taken else since, more=len(rows) > limit)
    for _, item in taken:
        if isinstance(item, WireMember):
            page.members.append(item)
        elif isinstance(item, WireCard):
            page.cards.append(item)
        else:
            page.rules.append(item)
    return page


# -- the store ------------------------------------------------------------------------------------


class HqStore:
    """Head office's SQLite storage. Safe to share between threads."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        with _translated():
            self._conn = _connect(path)
            migrations.apply(Database(self._conn))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so another process writing the same file
        # makes us wait (busy timeout) instead of failing when a read turns into a write.
        with self._lock, _translated():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        # Several SELECTs that must see one committed state (the changes feed) share a read transaction.
        with self._lock, _translated():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.rollback()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, _translated():
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- terminals ----------------------------------------------------------------------------

    def add_terminal(self, terminal_id: str, store_id: str, token: str | None = None) -> str:
        """Register a terminal, or give an existing one a new token; returns the token (shown once).

        Only the token's digest is stored. A terminal cannot move to another store: its journal
        belongs to the store it was registered for. Re-keying does not lift a revocation.
        """
        token = token or secrets.token_urlsafe(32)
        with self._write() as conn:
            held = conn.execute("SELECT store_id FROM terminals WHERE terminal_id = ?", (terminal_id,)).fetchone()
            if held is not None and held[0] != store_id:
                raise ValueError(f"terminal {terminal_id} belongs to store {held[0]}, not {store_id}")
            try:
                self._save_terminal(conn, terminal_id, store_id, token_digest(token))
            except sqlite3.IntegrityError as exc:
                raise ValueError("that token is already used by another terminal") from exc
        return token

    @staticmethod
    def _save_terminal(conn: sqlite3.Connection, terminal_id: str, store_id: str, digest: str) -> None:
        conn.execute(
            "INSERT INTO terminals (terminal_id, store_id, token_sha256, created_at, revoked, acked_seq) "
            "VALUES (?, ?, ?, ?, 0, 0) "
            "ON CONFLICT (terminal_id) DO UPDATE SET token_sha256 = excluded.token_sha256",
            (terminal_id, store_id, digest, utc_now()),
        )

    def revoke_terminal(self, terminal_id: str) -> bool:
        """Refuse the terminal's credential from now on; False if no such terminal."""
        with self._write() as conn:
            cursor = conn.execute("UPDATE terminals SET revoked = 1 WHERE terminal_id = ?", (terminal_id,))
            return cursor.rowcount == 1

    def authenticate(self, token: str) -> str | None:
        """The terminal this bearer token belongs to, or None if unknown or revoked."""
        # The lookup is by SHA-256 digest, so its timing tells nothing useful about stored tokens.
        rows = self._read(
            "SELECT terminal_id FROM terminals WHERE token_sha256 = ? AND revoked = 0", [token_digest(token)]
        )
        return rows[0][0] if rows else None

    # -- master data ----------------------------------------------------------------------------

    def upsert_member(
        self, member_id: str, display_name: str, tier: str, points: int = 0, status: str = "active"
    ) -> None:
        _check_status(status)
        self._upsert("members", "member_id", member_id, display_name=display_name, tier=tier, points=points, status=status)

    def upsert_card(self, uid_hash: str, member_id: str, status: str = "active") -> None:
        _check_status(status)
        if self.member(member_id) is None:
            raise ValueError(f"no member {member_id} for card {uid_hash[:12]}...")
        self._upsert("cards", "uid_hash", uid_hash, member_id=member_id, status=status)

    def set_rule(self, rule_id: str, points: int, per_minor: int) -> None:
        WireRule(rule_id=rule_id, points=points, per_minor=per_minor)  # same bounds as on the wire
        self._upsert("rules", "rule_id", rule_id, points=points, per_minor=per_minor)

    def _upsert(self, table: str, key: str, key_value: str, **values: Any) -> None:
        """Write a row with a fresh version; an unchanged row keeps its version (no feed noise)."""
        names = list(values)
        with self._write() as conn:
            held = conn.execute(
                f"SELECT {', '.join(names)} FROM {table} WHERE {key} = ?", (key_value,)
            ).fetchone()
            if held == tuple(values.values()):
                return
            columns = [key, *names, "version"]
            updates = ", ".join(f"{name} = excluded.{name}" for name in [*names, "version"])
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
                (key_value, *values.values(), _next_version(conn)),
            )

    def member(self, member_id: str) -> WireMember | None:
        rows = self._read(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE member_id = ?", [member_id])
        return _wire_member(rows[0]) if rows else None

    # -- journal --------------------------------------------------------------------------------

    def ingest(self, terminal_id: str, entries: list[WireEntry]) -> PushResponse:
        """Store a batch of one terminal's journal in one transaction and apply each new entry once.

        A duplicate (same terminal, seq and txn_id) is counted and skipped, so a retried batch
        gets the same answer and applies nothing twice. A conflicting entry raises
        ``SeqConflict`` and the whole batch is rolled back: nothing stored is ever overwritten.
        """
        foreign = sorted({e.terminal_id for e in entries} - {terminal_id})
        if foreign:
            raise WrongTerminal(f"terminal {terminal_id} cannot push entries of {', '.join(foreign)}")
        received_at = utc_now()
        with self._write() as conn:
            watermark = _watermark(conn, terminal_id)
            stored = sum(_store_entry(conn, entry, received_at) for entry in entries)
            acked, gaps = _advance(conn, terminal_id, watermark)
        return PushResponse(acked_seq=acked, stored=stored, duplicates=len(entries) - stored, gaps=gaps)

    def journal_count(self, terminal_id: str) -> int:
        return int(self._read("SELECT COUNT(*) FROM journal WHERE terminal_id = ?", [terminal_id])[0][0])

    def entries(self, terminal_id: str) -> list[WireEntry]:
        rows = self._read(
            "SELECT terminal_id, seq, txn_id, kind, payload, created_at FROM journal "
            "WHERE terminal_id = ? ORDER BY seq",
            [terminal_id],
        )
        return [
            WireEntry(terminal_id=t, seq=s, txn_id=x, kind=k, payload=json.loads(p), created_at=c)
            for t, s, x, k, p, c in rows
        ]

    def effects(self, terminal_id: str) -> dict[int, Effect]:
        """What each stored entry did to balances, by seq (ops and reconciliation)."""
        rows = self._read("SELECT seq, effect FROM journal WHERE terminal_id = ? ORDER BY seq", [terminal_id])
        return {seq: Effect(effect) for seq, effect in rows}

    # -- changes feed ---------------------------------------------------------------------------

    def changes(self, since: int, limit: int = 500) -> ChangesPage:
        """Members, cards and rules changed after version ``since``, oldest first, at most ``limit``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows: list[tuple[int, WireMember | WireCard | WireRule]] = []
        with self._snapshot() as conn:
            # Each table gives at most limit + 1 rows: enough to fill the page and to know if more remain.
            for table, columns, wire in _FEED:
                sql = f"SELECT {columns}, version FROM {table} WHERE version > ? ORDER BY version LIMIT ?"
                rows += [(row[-1], wire(row)) for row in conn.execute(sql, (since, limit + 1))]
        return _page(since, limit, rows)


_FEED = (
    ("members", _MEMBER_COLUMNS, _wire_member),
    ("cards", _CARD_COLUMNS, _wire_card),
    ("rules", _RULE_COLUMNS, _wire_rule),
)


# -- ingest steps (inside the push transaction) ---------------------------------------------------


def _next_version(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'version'")
    return int(conn.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()[0])


def _watermark(conn: sqlite3.Connection, terminal_id: str) -> int:
    row = conn.execute("SELECT acked_seq FROM terminals WHERE terminal_id = ?", (terminal_id,)).fetchone()
    if row is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not registered")
    return int(row[0])


def _store_entry(conn: sqlite3.Connection, entry: WireEntry, received_at: str) -> bool:
    """Insert one entry and apply it; False if it is already stored. Raises SeqConflict."""
    held = conn.execute(
        "SELECT terminal_id, seq, txn_id FROM journal WHERE (terminal_id = ? AND seq = ?) OR txn_id = ?",
        (entry.terminal_id, entry.seq, entry.txn_id),
    ).fetchall()
    if held == [(entry.terminal_id, entry.seq, entry.txn_id)]:
        return False
    if held:
        raise SeqConflict(entry, held)
    effect = _apply(conn, entry)
    conn.execute(
        "INSERT INTO journal (terminal_id, seq, txn_id, kind, payload, created_at, received_at, effect) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.terminal_id, entry.seq, entry.txn_id, entry.kind, _payload_json(entry.payload),
         entry.created_at, received_at, effect.value),
    )
    return True


def _apply(conn: sqlite3.Connection, entry: WireEntry) -> Effect:
    """Apply an entry's points to its member's balance, bumping the member's version."""
    effect, member_id, delta = _effect_of(entry)
    if effect is not Effect.APPLIED:
        return effect
    if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (member_id,)).fetchone() is None:
        # Offline entries are facts: the entry is kept with this effect even though no balance
        # could change, so reconciliation can see and settle it.
        return Effect.UNKNOWN_MEMBER
    conn.execute(
        "UPDATE members SET points = points + ?, version = ? WHERE member_id = ?",
        (delta, _next_version(conn), member_id),
    )
    return Effect.APPLIED


def _advance(conn: sqlite3.Connection, terminal_id: str, watermark: int) -> tuple[int, list[tuple[int, int]]]:
    seqs = conn.execute(
        "SELECT seq FROM journal WHERE terminal_id = ? AND seq > ? ORDER BY seq", (terminal_id, watermark)
    ).fetchall()
    acked, gaps = contiguous(watermark, (row[0] for row in seqs))
    if acked != watermark:
        conn.execute("UPDATE terminals SET acked_seq = ? WHERE terminal_id = ?", (acked, terminal_id))
    return acked, gaps
