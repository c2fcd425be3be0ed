"""The terminal's SQLite database: cache, journal and sync state, behind a small verb-named API.

One connection, guarded by a lock, in WAL mode with ``synchronous=FULL``: a sale's balance change
and its journal row are written in one ``db.atomic()`` block, and the caller approves the sale
only after that block's COMMIT returned. SQLite errors are translated here: a full disk becomes
``Rejected(STORAGE_FULL)``, anything else ``Rejected(STORAGE_FAILED)``; nothing half-written stays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from terminal import b64url
from terminal.errors import DISK_FULL, Code, Rejected
from terminal.giftcards import GiftCard
from terminal.loyalty import DEFAULT_BASE_RULE, Lot
from terminal.model import (
    ASKING_PREFIX,
    WITHDRAW_PREFIX,
    Card,
    EarnRule,
    JournalEntry,
    Member,
    Status,
    request_parts,
    seq_ranges,
    utc_iso,
)
from terminal.ownership import owned_as
from terminal.ports import CacheDocs, Effects
from terminal.store import giftcards, ledger, pages, topups, vouchers
from terminal.store.counted import COUNTED_SEQ, UNCOUNTED
from terminal.store.schema import known_names, migrations
from terminal.topups import Sold, Tally
from terminal.vouchers import PURPOSE

log = logging.getLogger("tillpoint.store")

MAX_SEQ = 2**53
"""The largest seq a journal row may carry (``sync.protocol.MAX_SEQ``: head office refuses anything above)."""

DEFAULT_RULE = DEFAULT_BASE_RULE
SEQ_FLOOR, SEQ_CHECK = "seq_floor", "seq_check_needed"
RESENT = "journal_resent"
"""Entries head office asked for again after it had acknowledged them (``unmark_pushed``), ever."""
JOURNAL_KINDS = frozenset({"sale", "refund", "void", "enrol", "claim_key", "checkin"})


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only, whatever the umask (SQLite gives its WAL
    and shared-memory files the same mode); an existing file keeps its mode. A new file is its directory's
    owner's: an operator's ``sudo tillpoint sync --now`` before the daemon's first start made it root's, and the
    daemon, as the service user, could not open it (SQLite, run by root, gives the WAL the file's owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        owned_as(fd, path.parent)
    finally:
        os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    if str(path) != ":memory:":  # SQLite's name for a database in memory: no file of that name in the directory
        create_private(path)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # The cache is read at every tap and quote: map it (no read() call per page) and keep 32 MB of
    # pages in SQLite's own cache. A lookup in a 1 GB cache of a chain then costs tens of microseconds.
    conn.execute("PRAGMA mmap_size=1073741824")
    conn.execute("PRAGMA cache_size=-32768")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _storage_error(exc: sqlite3.Error) -> Rejected:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return Rejected(Code.STORAGE_FULL)
    return Rejected(Code.STORAGE_FAILED, f"The till could not record this ({exc}).")


LOW_DISK = 1 << 20
"""Bytes free under which an I/O error opening the database is taken for a full disk: SQLite cannot make the
WAL and shared-memory files a clean stop removed, and says only 'disk I/O error'."""


def _disk_full(exc: sqlite3.Error | OSError, path: Path) -> bool:
    """Whether ``exc``, met opening or rebuilding the database at ``path``, comes of a full disk."""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return exc.errno in DISK_FULL
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return True
    if code not in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return False
    try:
        return shutil.disk_usage(path.resolve().parent).free < LOW_DISK
    except OSError:
        return False


def _open_error(exc: sqlite3.Error, path: Path) -> Rejected:
    """A SQLite error opening the database at start as a refusal: a full disk is ``storage_full``, however SQLite
    says it (a restarted till whose disk filled up met 'disk I/O error' and said ``storage_failed``)."""
    if _disk_full(exc, path):
        return Rejected(
            Code.STORAGE_FULL, f"The till's disk is full: its database {path} cannot be opened ({exc}); free space."
        )
    return _storage_error(exc)


def _member(row: sqlite3.Row | tuple[Any, ...] | None) -> Member | None:
    if row is None:
        return None
    member_id, name, tier, points, status = row
    return Member(member_id, name, tier, points, Status(status))


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    seq, txn_id, terminal_id, kind, payload, created_at, pushed_at, merchant_id = row
    return JournalEntry(terminal_id, seq, txn_id, kind, json.loads(payload), created_at, pushed_at, merchant_id)


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.RLock()
        self.seq_floor = int(self.state(SEQ_FLOOR) or 0)
        """No entry gets a seq at or below this (after a rebuild: what the journal or head office had)."""
        self.recovering = self.state(SEQ_CHECK) is not None
        """Rebuilt from a damaged file: nothing is recorded until head office said where its journal stands."""
        self.damaged: str | None = None
        """Why SQLite found the file damaged while it was open (a bad sector, a page overwritten under it): every
        later read or write may fail the same way, and only a start rebuilds it (``check_and_repair``)."""
        self.on_damage: Callable[[str], None] | None = None
        """Called once, with why, when the file is first found damaged while open (the daemon stops for a restart)."""

    rebuilt: Rebuild | None = None
    """Set by ``open(repair=True)`` when it found the file damaged and rebuilt it."""

    @classmethod
    def open(cls, path: str | Path, *, repair: bool = False) -> Store:
        """Open (creating if needed) and migrate the database at ``path``. With ``repair`` (the
        daemon's start) the file is integrity-checked first and rebuilt if damaged (``rebuild``)."""
        report = check_and_repair(Path(path)) if repair else None
        try:
            db = Database(_connect(Path(path)))
            upgrade(Path(path), db)
        except sqlite3.Error as exc:
            raise _open_error(exc, Path(path)) from exc
        store = cls(db)
        store.rebuilt = report
        return store

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def _failed(self, exc: sqlite3.Error) -> Rejected:
        """A SQLite error of the open file as a refusal; a damaged file is noted (``damaged``) and said once to
        ``on_damage``. Only SQLite's own codes say so here: a "malformed JSON" of a row's payload is not."""
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return _storage_error(exc)
        first, self.damaged = self.damaged is None, str(exc)
        if first and self.on_damage is not None:
            self.on_damage(str(exc))
        return Rejected(
            Code.STORAGE_FAILED,
            f"The till's database is damaged ({exc}): nothing was recorded; the till restarts to rebuild it.",
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self.db.atomic():
                    yield self.db.conn
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.db.conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

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

    def card_counter(self, uid_hash: str) -> int | None:
        """The highest SUN read counter used for this card, here or (pulled) anywhere in the chain."""
        rows = self._read("SELECT counter FROM card_counters WHERE uid_hash = ?", [uid_hash])
        return int(rows[0][0]) if rows else None

    def earn_rule(self) -> EarnRule:
        rows = self._read("SELECT rule_id, points, per_minor FROM rules WHERE rule_id = 'base'")
        return EarnRule(*rows[0]) if rows else DEFAULT_RULE

    def counts(self) -> dict[str, int]:
        names = ("members", "cards", "rules")
        return {name: self._read(f"SELECT COUNT(*) FROM {name}")[0][0] for name in names}

    def cards_hashed_here(self) -> int:
        """The cards this till put into the chain under its own card-hash key: its enrolments and the gift cards
        it sold (their keyed hashes, head office keeps them as the till sent them)."""
        rows = self._read("SELECT COUNT(*) FROM journal WHERE kind IN ('enrol', 'gift_activate')")
        return int(rows[0][0])

    # -- transactions ------------------------------------------------------------------------

    def record(
        self,
        entry: JournalEntry,
        points: tuple[str, int] | None = None,
        sale: dict[str, Any] | None = None,
        voids: str | None = None,
        effects: Effects | None = None,
        enrol: tuple[Member, Card] | None = None,
    ) -> tuple[JournalEntry, int | None]:
        """Write one transaction atomically: the member's points change, the sale row, the
        journal row (its seq assigned here, gapless), the voided sale's mark, and the end of the
        transaction's ``asking:`` note (its confirmation is now used). Returns the stored entry and
        the member's new balance, after COMMIT."""
        if self.recovering:
            raise Rejected(Code.TILL_RECOVERING)
        with self._write() as conn:
            if effects is not None:
                ledger.check_unchanged(conn, effects)  # a return priced from a sale another return changed since
            seq = max(int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]), self.seq_floor) + 1
            merchant = _get_state(conn, MERCHANT_ID)  # the entry carries the merchant the till knew when it wrote it
            stored = JournalEntry(
                entry.terminal_id, seq, entry.txn_id, entry.kind, entry.payload, entry.created_at, None, merchant
            )
            conn.execute(
                "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at, merchant_id) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    seq,
                    stored.txn_id,
                    stored.terminal_id,
                    stored.kind,
                    json.dumps(stored.payload),
                    stored.created_at,
                    merchant,
                ),
            )
            _set_state(conn, ASKING_PREFIX + stored.txn_id, None)
            if enrol is not None:
                member, card = enrol
                if conn.execute("SELECT 1 FROM cards WHERE uid_hash = ?", (card.uid_hash,)).fetchone():
                    raise Rejected(Code.CARD_ALREADY_ENROLLED)
                conn.execute(
                    "INSERT INTO members (member_id, display_name, tier, points, hq_points, status) VALUES (?,?,?,?,?,?)",
                    (member.member_id, member.display_name, member.tier, 0, 0, member.status.value),
                )
                conn.execute(
                    "INSERT INTO cards (uid_hash, member_id, status) VALUES (?,?,?)",
                    (card.uid_hash, card.member_id, card.status.value),
                )
            spendable = None
            if effects is not None and effects.member_id is not None and effects.now is not None:
                spendable = ledger.spendable(conn, effects.member_id, effects.now)
            balance = _add_points(conn, *points) if points else None
            if sale is not None:
                conn.execute(
                    "INSERT INTO sales (txn_id, member_id, total, points_delta) VALUES (?,?,?,?)",
                    (entry.txn_id, sale["member_id"], sale["total"], sale["points_delta"]),
                )
            if voids is not None:
                marked = conn.execute(
                    "UPDATE sales SET voided_by = ? WHERE txn_id = ? AND voided_by IS NULL", (entry.txn_id, voids)
                )
                if marked.rowcount != 1:  # voided by another request since it was read: nothing of this one stays
                    raise Rejected(Code.ALREADY_VOIDED)
            if effects is not None:
                ledger.apply(conn, entry.txn_id, effects, spendable)
                if effects.request is not None:
                    ledger.keep_request(
                        conn, effects.request.request_id, entry.txn_id, effects.request.answer(stored, balance)
                    )
        return stored, balance

    @contextmanager
    def together(self) -> Iterator[None]:
        """One transaction around several ``record`` calls (each a savepoint inside it): all of them are kept, at
        its COMMIT, or none (an exception raised inside rolls every one back)."""
        with self._write():
            yield

    def keep_request(self, request_id: str, txn_id: str, answer: str) -> None:
        with self._write() as conn:
            ledger.keep_request(conn, request_id, txn_id, answer)

    def forget_receipts(self, before: str, batch: int) -> int:
        """One batch of ``ledger.forget_receipts``, in a transaction of its own: the rows deleted, of both tables
        together (fewer than ``batch``: neither has any left to delete)."""
        with self._write() as conn:
            return ledger.forget_receipts(conn, before, batch)

    def request_answer(self, request_id: str) -> tuple[str, str] | None:
        rows = self._read("SELECT answer, body FROM pos_requests WHERE request_id = ?", [request_parts(request_id)[0]])
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    # -- loyalty -------------------------------------------------------------------------------

    def doc_version(self) -> int:
        """Moves whenever a rule or coupon document (or the base rule) changes."""
        return int(self._read("SELECT version FROM doc_version WHERE id = 1")[0][0])

    def rule_docs(self) -> dict[str, dict[str, Any]]:
        return {rule_id: json.loads(body) for rule_id, body in self._read("SELECT rule_id, body FROM rule_docs")}

    def coupon_docs(self, coupon_ids: Iterable[str], member_id: str | None) -> dict[str, dict[str, Any]]:
        """The coupons asked for by id, and every personal coupon of ``member_id``."""
        return {cid: json.loads(text) for cid, text in self.coupon_texts(coupon_ids, member_id).items()}

    def coupon_texts(self, coupon_ids: Iterable[str], member_id: str | None) -> dict[str, str]:
        """As ``coupon_docs``, the documents as stored (JSON text)."""
        ids = sorted(set(coupon_ids))
        marks = ",".join("?" * len(ids))
        sql = f"SELECT coupon_id, body FROM coupon_docs WHERE coupon_id IN ({marks})"
        params: list[Any] = list(ids)
        if member_id is not None:
            sql += " UNION SELECT coupon_id, body FROM coupon_docs WHERE member_id = ?"
            params.append(member_id)
        return dict(self._read(sql, params))

    def coupon_uses_many(self, coupon_ids: list[str], member_id: str | None) -> dict[str, tuple[int, int, int]]:
        """Uses of each coupon: (made on this till and not in head office's count the last pull brought, made by
        ``member_id`` on this till, chain-wide as head office counted them at the last pull); absent =
        none. Head office's count includes the uses this till had pushed before that pull, hence the split
        (``ledger.coupon_uses``)."""
        if not coupon_ids:
            return {}
        marks = ",".join("?" * len(coupon_ids))
        rows = self._read(
            f"SELECT u.coupon_id, COALESCE(SUM(CASE WHEN {UNCOUNTED} THEN u.uses END), 0), "
            "COALESCE(SUM(CASE WHEN u.member_id IS ? THEN u.uses END), 0) "
            f"FROM coupon_uses u LEFT JOIN journal j ON j.txn_id = u.txn_id WHERE u.coupon_id IN ({marks}) "
            "GROUP BY u.coupon_id",
            [member_id, *coupon_ids],
        )
        found = {coupon_id: (int(total), int(mine), 0) for coupon_id, total, mine in rows}
        for coupon_id, uses in self._read(
            f"SELECT coupon_id, uses FROM hq_coupon_uses WHERE coupon_id IN ({marks})", coupon_ids
        ):
            total, mine, _ = found.get(coupon_id, (0, 0, 0))
            found[coupon_id] = (total, mine, int(uses))
        return found

    def pool_headroom(self, pool_ids: Iterable[str]) -> dict[str, int]:
        """Units of this till's allocation of each pool not yet redeemed here (absent: none held)."""
        with self._lock:
            try:
                return ledger.pool_headroom(self.db.conn, sorted(set(pool_ids)))
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def pool_allocations(self) -> dict[str, tuple[int, int]]:
        """This till's allocations as head office last sent them: pool id -> (allowed, used by its count)."""
        rows = self._read("SELECT pool_id, allowed, hq_used FROM pool_allocations ORDER BY pool_id")
        return {str(p): (int(a), int(u)) for p, a, u in rows}

    def coupon_uses(self, coupon_id: str, member_id: str | None) -> tuple[int, int]:
        with self._lock:
            return ledger.coupon_uses(self.db.conn, coupon_id, member_id)

    def put_docs(self, table: str, docs: dict[str, dict[str, Any] | None]) -> None:
        """Write rule (``rule_docs``) or coupon (``coupon_docs``) documents; None deletes one."""
        key = {"rule_docs": "rule_id", "coupon_docs": "coupon_id"}[table]
        with self._write() as conn:
            for doc_id, body in docs.items():
                if body is None:
                    conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (doc_id,))
                elif table == "coupon_docs":
                    conn.execute(
                        "INSERT INTO coupon_docs (coupon_id, member_id, body) VALUES (?,?,?) ON CONFLICT(coupon_id) "
                        "DO UPDATE SET member_id = excluded.member_id, body = excluded.body",
                        (doc_id, body.get("member_id"), json.dumps(body)),
                    )
                else:
                    conn.execute(
                        "INSERT INTO rule_docs (rule_id, body) VALUES (?,?) ON CONFLICT(rule_id) "
                        "DO UPDATE SET body = excluded.body",
                        (doc_id, json.dumps(body)),
                    )

    def member_ledger(self, member_id: str, now: datetime) -> tuple[list[Lot], int, int | None]:
        """The member's lots on this till, tier window value, and points spendable ``now``."""
        with self._lock:
            conn = self.db.conn
            row = conn.execute("SELECT window_value, points FROM members WHERE member_id = ?", (member_id,)).fetchone()
            if row is None:
                return [], 0, None
            lots = ledger.lots(conn, member_id, now)
            return lots, int(row[0]), int(row[1]) - ledger.held(lots, now)

    # -- payments --------------------------------------------------------------------------------

    def stored_value(self, member_id: str) -> int:
        rows = self._read("SELECT stored_value FROM members WHERE member_id = ?", [member_id])
        return int(rows[0][0]) if rows else 0

    def device_cert(self, cert_id_hex: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM device_certs WHERE cert_id = ?", [cert_id_hex])
        return dict(json.loads(rows[0][0])) if rows else None

    def put_device_certs(self, certs: dict[str, dict[str, Any] | None]) -> None:
        """Device certificates by cert id (hex); None deletes one."""
        with self._write() as conn:
            for cert_id, doc in certs.items():
                if doc is None:
                    conn.execute("DELETE FROM device_certs WHERE cert_id = ?", (cert_id,))
                else:
                    conn.execute(
                        "INSERT INTO device_certs (cert_id, member_id, body) VALUES (?,?,?) ON CONFLICT(cert_id) "
                        "DO UPDATE SET member_id = excluded.member_id, body = excluded.body",
                        (cert_id, doc.get("member_id"), json.dumps(doc)),
                    )

    def payment_keys(self) -> dict[str, bytes]:
        """Head office's payment-signing public keys (Ed25519, raw) by key id."""
        return self._keys("payment")

    def member_keys(self) -> dict[str, bytes]:
        """Head office's member-code signing public keys (Ed25519, raw) by key id."""
        return self._keys("member")

    def voucher_keys(self) -> dict[str, bytes]:
        """Head office's voucher-signing public keys (Ed25519, raw) by key id."""
        return self._keys(PURPOSE)

    def voucher_state(self, voucher_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM voucher_states WHERE voucher_id = ?", [voucher_id])
        try:
            doc = json.loads(rows[0][0]) if rows else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def voucher_in_stock(self, kind: str, value: int | None, sku: str | None, now: int) -> str | None:
        rows = self._read(
            "SELECT code FROM voucher_stock WHERE sold_txn IS NULL AND kind = ? AND expires_at > ? "
            "AND (? IS NULL OR value = ?) AND (? IS NULL OR sku = ?) ORDER BY expires_at, voucher_id LIMIT 1",
            [kind, now, value, value, sku, sku],
        )
        return str(rows[0][0]) if rows else None

    def voucher_use(self, voucher_id: str) -> str | None:
        found = self._read("SELECT action FROM voucher_uses WHERE voucher_id = ?", [voucher_id])
        return str(found[0][0]) if found else None

    def voucher_offline(self) -> tuple[int, int]:
        total = self.state(VOUCHER_OFFLINE_TOTAL)
        with self._lock:
            pending = vouchers.offline_pending(self.db.conn)
        return pending, int(total) if total and total.isdigit() else 0

    def voucher_stock(self) -> list[dict[str, Any]]:
        """This till's unsold stock by kind, value and sku, with how many of each (for ``status``)."""
        rows = self._read(
            "SELECT kind, value, sku, COUNT(*) FROM voucher_stock WHERE sold_txn IS NULL GROUP BY kind, value, sku "
            "ORDER BY kind, value, sku"
        )
        return [{"kind": k, "value": int(v), "sku": s, "count": int(n)} for k, v, s, n in rows]

    def _keys(self, purpose: str) -> dict[str, bytes]:
        keys: dict[str, bytes] = {}
        for key_id, body in self._read("SELECT key_id, body FROM hq_keys"):
            doc = json.loads(body)
            if doc.get("purpose") == purpose and doc.get("status", "active") == "active":
                keys[key_id] = _raw_key(str(doc["public_key"]))
        return keys

    def offline_paid(self, member_id: str, day: str) -> tuple[int, int]:
        """Stored value paid offline here: by the member on ``day``, and by anyone since the last
        sync (entries head office has not acknowledged)."""
        mine = self._read(
            "SELECT COALESCE(SUM(amount), 0) FROM sv_payments WHERE offline = 1 AND member_id = ? AND day = ?",
            [member_id, day],
        )[0][0]
        total = self._read(
            "SELECT COALESCE(SUM(p.amount), 0) FROM sv_payments p JOIN journal j ON j.txn_id = p.txn_id "
            "WHERE p.offline = 1 AND j.pushed_at IS NULL"
        )[0][0]
        return int(mine), int(total)

    def merchant_id(self) -> str | None:
        """The merchant of this till's store as head office last said (None: not known yet)."""
        return self.state(MERCHANT_ID)

    def topup_policy(self) -> dict[str, Any] | None:
        """Head office's top-up policy for this till as last pulled (None: none pulled)."""
        text = self.state(TOPUP_POLICY)
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def gift_card(self, card_id: str) -> GiftCard | None:
        """A gift card as head office last stated it, with this till's entries it has not acknowledged."""
        with self._lock:
            try:
                return giftcards.held(self.db.conn, card_id)
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def gift_terms(self) -> dict[str, Any] | None:
        """The chain's gift card terms as last pulled (None: none pulled)."""
        text = self.state(GIFT_TERMS)
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def gift_payment(self, txn_id: str) -> tuple[str, str, int] | None:
        """A gift card payment of this till: (card id, card hash, amount paid)."""
        rows = self._read(
            "SELECT u.card_id, c.uid_hash, -u.amount FROM gift_uses u JOIN gift_cards c ON c.card_id = u.card_id "
            "WHERE u.txn_id = ? AND u.action = 'redeem'",
            [txn_id],
        )
        return (str(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None

    def gift_payments_of(self, sale_txn: str) -> list[tuple[str, int, int]]:
        """This till's gift card payments of its sale ``sale_txn`` (those naming it as their ``sale_ref``), in the
        order they were made: (payment txn, what it paid, what refunds gave back onto the card since)."""
        rows = self._read(
            "SELECT u.txn_id, -u.amount, (SELECT COALESCE(SUM(r.amount), 0) FROM gift_uses r "
            "WHERE r.original_txn = u.txn_id AND r.action = 'refund') "
            "FROM gift_uses u JOIN journal j ON j.txn_id = u.txn_id "
            "WHERE u.action = 'redeem' AND json_extract(j.payload, '$.sale_ref') = ? ORDER BY j.seq",
            [sale_txn],
        )
        return [(str(txn), int(paid), int(back)) for txn, paid, back in rows]

    def vouchers_of(self, sale_txn: str) -> list[tuple[str, int, str]]:
        """The vouchers this till redeemed naming its sale ``sale_txn`` (``sale_ref``): they paid part of it. Each
        (kind, value, sku) as its entry states, in the order they were used."""
        rows = self._read(
            "SELECT json_extract(j.payload, '$.kind'), u.value, COALESCE(json_extract(j.payload, '$.sku'), '') "
            "FROM voucher_uses u JOIN journal j ON j.txn_id = u.txn_id "
            "WHERE u.action = 'redeem' AND json_extract(j.payload, '$.sale_ref') = ? ORDER BY j.seq",
            [sale_txn],
        )
        return [(str(kind), int(value), str(sku)) for kind, value, sku in rows]

    def sale_due(self, sale_txn: str) -> int | None:
        """What the POS was due for this till's sale ``sale_txn`` as it was recorded (its ``payable`` less what the
        member's account paid: ``pos_due``), before any gift card or voucher paid part of it; None: no such sale."""
        rows = self._read(
            "SELECT json_extract(payload, '$.payable') - COALESCE(json_extract(payload, '$.stored_value'), 0) "
            "FROM journal WHERE txn_id = ? AND kind = 'sale'",
            [sale_txn],
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def topup_tally(self, member_id: str, day: str) -> Tally:
        with self._lock:
            try:
                return topups.tally(self.db.conn, member_id, day)
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def topup(self, txn_id: str) -> Sold | None:
        with self._lock:
            try:
                return topups.sold(self.db.conn, txn_id)
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def sale_state(self, txn_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT state FROM sales WHERE txn_id = ?", [txn_id])
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def sale(self, txn_id: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT txn_id, member_id, total, points_delta, voided_by FROM sales WHERE txn_id = ?", [txn_id]
        )
        if not rows:
            return None
        return dict(zip(("txn_id", "member_id", "total", "points_delta", "voided_by"), rows[0], strict=True))

    # -- journal and sync ----------------------------------------------------------------------

    def unpushed(self, limit: int) -> list[JournalEntry]:
        rows = self._read(
            "SELECT seq, txn_id, terminal_id, kind, payload, created_at, pushed_at, merchant_id FROM journal "
            "WHERE pushed_at IS NULL ORDER BY seq LIMIT ?",
            [limit],
        )
        return [_entry(row) for row in rows]

    def entries(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]:
        rows = self._read(
            "SELECT seq, txn_id, terminal_id, kind, payload, created_at, pushed_at, merchant_id FROM journal "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            [after_seq, limit],
        )
        return [_entry(row) for row in rows]

    def pending_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM journal WHERE pushed_at IS NULL")[0][0])

    def mark_pushed(self, up_to_seq: int, at: str) -> int:
        """Mark every entry up to ``up_to_seq`` as acknowledged by head office (and remember how far that is)."""
        with self._write() as conn:
            cur = conn.execute("UPDATE journal SET pushed_at = ? WHERE seq <= ? AND pushed_at IS NULL", (at, up_to_seq))
            _set_state(conn, "hq_acked_seq", str(up_to_seq))
            return cur.rowcount

    def unmark_pushed(self, ranges: list[tuple[int, int]]) -> int:
        """Head office no longer holds these seqs (its database was restored from a backup): the entries of them
        this journal holds and had marked acknowledged are to be sent again. Returns how many; they are added to
        ``journal_resent`` (shown in status and the metrics), in the same transaction."""
        with self._write() as conn:
            cleared = sum(
                conn.execute(
                    "UPDATE journal SET pushed_at = NULL WHERE seq BETWEEN ? AND ? AND pushed_at IS NOT NULL",
                    (first, last),
                ).rowcount
                for first, last in ranges
            )
            if cleared:
                row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (RESENT,)).fetchone()
                _set_state(conn, RESENT, str(int(row[0] if row else 0) + cleared))
            return cleared

    def held_seqs(self, first: int, last: int) -> set[int]:
        """The seqs from ``first`` to ``last`` this till's journal holds."""
        return {int(r[0]) for r in self._read("SELECT seq FROM journal WHERE seq BETWEEN ? AND ?", [first, last])}

    def max_seq(self) -> int:
        return max(int(self._read("SELECT COALESCE(MAX(seq), 0) FROM journal")[0][0]), self.seq_floor)

    def renumber_unpushed(self, from_seq: int, above: int) -> list[tuple[int, int]]:
        """The unpushed entries from ``from_seq`` on take new seqs, in their order, above ``above`` and above
        every seq this journal holds; later entries go on above them. For a database that went back (its WAL
        lost or cut at a damaged frame, an older copy restored): head office holds other entries at the seqs
        it gave again. Returns the (old, new) pairs."""
        with self._write() as conn:
            top = max(
                above, self.seq_floor, int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])
            )
            olds = [
                int(r[0])
                for r in conn.execute(
                    "SELECT seq FROM journal WHERE pushed_at IS NULL AND seq >= ? ORDER BY seq", (from_seq,)
                )
            ]
            moved = [(old, top + i) for i, old in enumerate(olds, 1)]
            conn.executemany("UPDATE journal SET seq = ? WHERE seq = ?", [(new, old) for old, new in moved])
            floor = max(self.seq_floor, above)
            _set_state(conn, SEQ_FLOOR, str(floor))
        self.seq_floor = floor
        return moved

    def finish_recovery(self, floor: int) -> None:
        """Head office said where the journal stands: seqs go on above ``floor``, recording resumes."""
        with self._write() as conn:
            self.seq_floor = max(self.seq_floor, floor)
            _set_state(conn, SEQ_FLOOR, str(self.seq_floor))
            _set_state(conn, SEQ_CHECK, None)
        self.recovering = False

    def apply_changes(
        self,
        members: list[Member],
        cards: list[Card],
        rules: list[EarnRule],
        cursor: int,
        docs: CacheDocs | None = None,
        counted_seq: int | None = None,
    ) -> None:
        """Apply one page of head-office changes and its cursor in one transaction.

        Head office's balance already holds every entry it acknowledged; the till adds back the
        deltas of its own entries not yet acknowledged, so a pull never loses a local sale.
        ``counted_seq`` (the last page of a pull): this till's entries up to it were acknowledged before the pull
        began, so head office's coupon counts the pull brought hold their uses (``ledger.coupon_uses``)."""
        with self._write() as conn:
            _put_members(
                conn, [(m.member_id, m.display_name, m.tier, m.points, m.status.value, m.stored_value) for m in members]
            )
            _put_cards(conn, [(c.uid_hash, c.member_id, c.status.value, c.counter) for c in cards])
            _put_rules(conn, [(r.rule_id, r.points, r.per_minor) for r in rules])
            if docs is not None:
                _put_docs(conn, docs)
            _set_state(conn, "cursor", str(cursor))
            if counted_seq is not None:
                _set_state(conn, COUNTED_SEQ, str(counted_seq))

    def bootstrap_rows(self, kind: str, rows: list[list[Any]], position: dict[str, str]) -> None:
        """Store one snapshot page (columns as ``sync.protocol.SNAPSHOT_COLUMNS``) with the
        bootstrap's position, in one transaction: an interrupted bootstrap resumes after it."""
        with self._write() as conn:
            if kind == "members":
                _put_members(conn, [(r[0], r[1], r[2], r[3], r[4], r[5] if len(r) > 5 else 0) for r in rows])
            elif kind == "cards":
                _put_cards(conn, [(r[0], r[1], r[2], r[3] if len(r) > 3 else None) for r in rows])
            elif kind == "rules":
                _put_rules(conn, [(r[0], r[1], r[2]) for r in rows])
            elif kind == "rule_docs":
                _put_docs(conn, CacheDocs(rule_docs=[(r[0], r[1]) for r in rows]))
            elif kind == "coupons":
                _put_docs(conn, CacheDocs(coupons=[(r[0], r[1], r[2], int(r[3])) for r in rows]))
            elif kind == "keys":
                _put_docs(conn, CacheDocs(keys=[(r[0], r[1], r[2]) for r in rows]))
            elif kind == "revocations":
                _put_docs(conn, CacheDocs(revocations=[(r[0], r[1], r[2]) for r in rows]))
            elif kind == "device_certs":
                _put_docs(conn, CacheDocs(device_certs=[(r[0], r[2]) for r in rows]))
            elif kind == "vouchers":
                _put_docs(conn, CacheDocs(vouchers=[(r[0], r[1]) for r in rows]))
            elif kind == "gift_cards":
                _put_docs(conn, CacheDocs(gift_cards=[(r[0], r[1]) for r in rows]))
            else:
                raise ValueError(f"unknown snapshot kind {kind!r}")
            for key, value in position.items():
                _set_state(conn, key, value)

    def finish_bootstrap(self, version: int) -> None:
        """The snapshot is loaded: continue with the changes feed after its version."""
        with self._write() as conn:
            _set_state(conn, "cursor", str(version))
            conn.execute("DELETE FROM sync_state WHERE key LIKE 'bootstrap_%'")

    def record_eod(self, day: str, first_seq: int, last_seq: int, totals: str, status: str, detail: str) -> None:
        """Keep the end-of-day report sent for ``day`` and head office's answer."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO eod_reports (day, first_seq, last_seq, totals, status, detail, reported_at) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(day) DO UPDATE SET last_seq = excluded.last_seq, "
                "totals = excluded.totals, status = excluded.status, detail = excluded.detail, "
                "reported_at = excluded.reported_at",
                (day, first_seq, last_seq, totals, status, detail, utc_iso(time.time())),
            )
            held = conn.execute("SELECT value FROM sync_state WHERE key = 'eod_last_seq'").fetchone()
            _set_state(conn, "eod_last_seq", str(max(last_seq, int(held[0]) if held else 0)))

    def eod_first_seq(self, day: str) -> int | None:
        rows = self._read("SELECT first_seq FROM eod_reports WHERE day = ?", [day])
        return int(rows[0][0]) if rows else None

    def eod_reports(self, limit: int = 14) -> list[dict[str, Any]]:
        """The latest end-of-day reports, newest first."""
        rows = self._read(
            "SELECT day, first_seq, last_seq, status, detail, reported_at FROM eod_reports ORDER BY day DESC LIMIT ?",
            [limit],
        )
        names = ("day", "first_seq", "last_seq", "status", "detail", "reported_at")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def signing_key(self, key_id: str) -> dict[str, Any] | None:
        """A head-office public key (``{"alg", "public_key", "purpose", "status", ...}``), signature
        already checked by the sync client against the pinned root key."""
        rows = self._read("SELECT body FROM hq_keys WHERE key_id = ?", [key_id])
        return dict(json.loads(rows[0][0])) if rows else None

    def revoked(self, kind: str, subject: str) -> bool:
        """Whether head office's revocation list holds ``kind:subject``."""
        return bool(self._read("SELECT 1 FROM hq_revocations WHERE kind = ? AND subject = ?", [kind, subject]))

    def state(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM sync_state WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def payment_code_used(self, code_id: str) -> bool:
        """Whether a sale of this till used the phone code ``code_id`` (device id and counter)."""
        return bool(self._read("SELECT 1 FROM payment_codes WHERE code_id = ?", [code_id]))

    def latest_entry_at(self) -> str | None:
        """When this till's clock said its newest journal entry was made (None: no entry)."""
        rows = self._read("SELECT created_at FROM journal ORDER BY seq DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def withdrawals(self, limit: int) -> list[str]:
        """Transactions whose confirmation this till asked for and did not use, to tell head office (the
        oldest first); one the journal holds after all is not among them."""
        rows = self._read(
            "SELECT substr(s.key, ?) FROM sync_state s WHERE s.key LIKE ? AND NOT EXISTS "
            "(SELECT 1 FROM journal j WHERE j.txn_id = substr(s.key, ?)) ORDER BY s.value LIMIT ?",
            [len(WITHDRAW_PREFIX) + 1, WITHDRAW_PREFIX + "%", len(WITHDRAW_PREFIX) + 1, limit],
        )
        return [str(r[0]) for r in rows]

    def note_asking(self, txn_id: str, at: str) -> None:
        """Note, durably, that head office is about to be asked to confirm ``txn_id`` (``ASKING_PREFIX``):
        committed before the question goes out, so that a process killed before the sale is recorded leaves
        the note for ``settle_asked``."""
        with self._write() as conn:
            _set_state(conn, ASKING_PREFIX + txn_id, at)

    def withdraw_asked(self, txn_id: str, at: str) -> bool:
        """The spend asked about ``txn_id`` failed: its ``asking:`` note becomes a withdrawal for the sync loop
        (``withdrawals``), in one transaction. False (nothing written) when no such note is left: the sale's
        journal row removed it, or the question was never noted."""
        with self._write() as conn:
            return _give_up(conn, txn_id, at)

    def settle_asked(self, at: str) -> tuple[list[str], list[str]]:
        """At the daemon's start, before it sells: the ``asking:`` notes a previous process left (killed between
        the question and the sale's commit). A transaction the journal holds was recorded after all: its note
        is dropped; any other becomes a withdrawal. Returns (withdrawn, dropped) transaction ids."""
        withdrawn: list[str] = []
        dropped: list[str] = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT substr(key, ?) FROM sync_state WHERE key LIKE ? ORDER BY value, key",
                (len(ASKING_PREFIX) + 1, ASKING_PREFIX + "%"),
            ).fetchall()
            for (txn_id,) in rows:
                (withdrawn if _give_up(conn, str(txn_id), at) else dropped).append(str(txn_id))
        return withdrawn, dropped

    def set_state(self, **values: str | None) -> None:
        with self._write() as conn:
            for key, value in values.items():
                _set_state(conn, key, value)

    def integrity_ok(self) -> bool:
        return bool(self._read("PRAGMA quick_check")[0][0] == "ok")


_SIDE_FILES = ("-wal", "-shm", "-journal")
UPGRADE_BACKUPS_KEPT = 2
"""Copies taken before an upgrade that are kept (the newest); older ones are removed after a new one."""


def upgrade(path: Path, db: Database) -> list[str]:
    """Apply the schema migrations this file lacks, forward only, after a copy of a file that already
    held data (``terminal.db.pre-<migration>-<time>``, 0600). A file that a newer release migrated is
    refused (``Code.STORAGE_NEWER``), never written: a downgrade must restore that copy instead."""
    applied = {m.name for m in migrations.applied(db)}
    unknown = sorted(applied - known_names())
    if unknown:
        raise Rejected(
            Code.STORAGE_NEWER,
            f"{path} was upgraded by a newer tillpoint (migrations {', '.join(unknown)}): "
            "run that release, or restore the copy taken before the upgrade "
            f"({path.name}.pre-*)",
        )
    pending = [m.name for m in migrations.pending(db)]
    if pending and applied and str(path) != ":memory:":
        target = path.with_name(f"{path.name}.pre-{pending[0]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}")
        try:
            create_private(target)
            with closing(sqlite3.connect(target)) as copy:
                db.conn.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        except (OSError, sqlite3.Error) as exc:  # a full disk: no half copy left, nothing migrated
            for part in (target, *(target.with_name(target.name + side) for side in _SIDE_FILES)):
                part.unlink(missing_ok=True)
            full = isinstance(exc, OSError) and exc.errno in DISK_FULL or "full" in str(exc)
            raise Rejected(
                Code.STORAGE_FULL if full else Code.STORAGE_FAILED,
                f"could not copy {path} before upgrading it ({exc}): nothing was migrated",
            ) from exc
        log.warning("terminal database backed up to %s before migrations %s", target, ", ".join(pending))
        copies = sorted(
            (p for p in path.parent.glob(f"{path.name}.pre-*") if not p.name.endswith(_SIDE_FILES)),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in copies[:-UPGRADE_BACKUPS_KEPT]:
            for part in (old, *(old.with_name(old.name + side) for side in _SIDE_FILES)):
                part.unlink(missing_ok=True)
    migrations.apply(db)
    return pending


def _raw_key(text: str) -> bytes:
    """A raw 32-byte key as head office publishes it (base64url, no padding) or as hex."""
    if len(text) == 64:
        return bytes.fromhex(text)
    return b64url.decode(text)


def _add_points(conn: sqlite3.Connection, member_id: str, delta: int) -> int | None:
    conn.execute("UPDATE members SET points = points + ? WHERE member_id = ?", (delta, member_id))
    row = conn.execute("SELECT points FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return int(row[0]) if row else None


def _pending_by_member(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """Points and stored value of this till's entries head office has not acknowledged yet, per
    member (one query per page, not per member)."""
    rows = conn.execute(
        "SELECT json_extract(payload, '$.member_id'), SUM(json_extract(payload, '$.points_delta')), "
        "SUM(COALESCE(json_extract(payload, '$.stored_value_delta'), 0)) FROM journal "
        "WHERE pushed_at IS NULL GROUP BY 1"
    ).fetchall()
    return {str(m): (int(p or 0), int(v or 0)) for m, p, v in rows if m is not None}


def _put_members(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int, str, int]]) -> None:
    if not rows:
        return
    pending = _pending_by_member(conn)
    conn.executemany(
        "INSERT INTO members (member_id, display_name, tier, points, hq_points, status, stored_value, hq_stored_value) "
        "VALUES (?,?,?,?,?,?,?,?) "
        "ON CONFLICT(member_id) DO UPDATE SET display_name=excluded.display_name, tier=excluded.tier, "
        "points=excluded.points, hq_points=excluded.hq_points, status=excluded.status, "
        "stored_value=excluded.stored_value, hq_stored_value=excluded.hq_stored_value",
        [
            (m, name, tier, points + pending.get(m, (0, 0))[0], points, status, sv + pending.get(m, (0, 0))[1], sv)
            for m, name, tier, points, status, sv in rows
        ],
    )


def _put_cards(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int | None]]) -> None:
    conn.executemany(
        "INSERT INTO cards (uid_hash, member_id, status) VALUES (?,?,?) ON CONFLICT(uid_hash) DO UPDATE "
        "SET member_id=excluded.member_id, status=excluded.status",
        [row[:3] for row in rows],
    )
    # The chain's high-water mark of each secure card's read counter: a message at or below it was
    # used somewhere in the chain and is refused here too (``counters.bump_counter``).
    conn.executemany(
        "INSERT INTO card_counters (uid_hash, counter, updated_at) VALUES (?, ?, ?) ON CONFLICT(uid_hash) DO UPDATE "
        "SET counter = MAX(card_counters.counter, excluded.counter), updated_at = excluded.updated_at",
        [(row[0], row[3], utc_iso(time.time())) for row in rows if row[3] is not None],
    )


def _put_rules(conn: sqlite3.Connection, rows: list[tuple[str, int, int]]) -> None:
    conn.executemany(
        "INSERT INTO rules (rule_id, points, per_minor) VALUES (?,?,?) ON CONFLICT(rule_id) DO UPDATE "
        "SET points=excluded.points, per_minor=excluded.per_minor",
        rows,
    )


_TOMBSTONES = {
    "member": [("members", "member_id")],
    "card": [("cards", "uid_hash")],
    "rule": [("rules", "rule_id")],
    "rule_doc": [("rule_docs", "rule_id")],
    "coupon": [("coupon_docs", "coupon_id"), ("hq_coupon_uses", "coupon_id")],
    "key": [("hq_keys", "key_id")],
    "revocation": [("hq_revocations", "revocation_id")],
    "device_cert": [("device_certs", "cert_id")],
    "voucher": [("voucher_states", "voucher_id")],
    "gift_card": [("gift_cards", "card_id")],
}


TOPUP_POLICY = "topup_policy"
MERCHANT_ID = "merchant_id"
VOUCHER_OFFLINE_TOTAL = "voucher_offline_total"
GIFT_TERMS = "gift_terms"


def _put_docs(conn: sqlite3.Connection, docs: CacheDocs) -> None:
    if docs.topup_policy is not None:  # the whole policy: it replaces the one held
        _set_state(conn, TOPUP_POLICY, docs.topup_policy)
    if docs.merchant_id is not None:
        _set_state(conn, MERCHANT_ID, docs.merchant_id)
    if docs.voucher_stock is not None:  # the whole stock, and the offline total with it
        _set_state(conn, VOUCHER_OFFLINE_TOTAL, str(docs.voucher_stock[0]))
        vouchers.put_stock(conn, docs.voucher_stock[1])
    conn.executemany(
        "INSERT INTO voucher_states (voucher_id, body) VALUES (?,?) ON CONFLICT(voucher_id) DO UPDATE SET body = "
        "excluded.body",
        docs.vouchers,
    )
    giftcards.put_cards(conn, docs.gift_cards)
    if docs.gift_terms is not None:
        _set_state(conn, GIFT_TERMS, docs.gift_terms)
    if docs.spend_held is not None:  # every held id, whole: a member not named spends again
        held = json.dumps(sorted(set(docs.spend_held)))
        conn.execute(
            "UPDATE members SET status = 'active' WHERE status = 'held' AND member_id NOT IN "
            "(SELECT value FROM json_each(?))",
            (held,),
        )
        conn.execute(
            "UPDATE members SET status = 'held' WHERE status = 'active' AND member_id IN (SELECT value FROM json_each(?))",
            (held,),
        )
    if docs.allocations is not None:  # the whole current state: a pool not named is no longer held
        conn.execute("DELETE FROM pool_allocations")
        conn.executemany("INSERT INTO pool_allocations (pool_id, allowed, hq_used) VALUES (?,?,?)", docs.allocations)
    conn.executemany(
        "INSERT INTO rule_docs (rule_id, body) VALUES (?,?) ON CONFLICT(rule_id) DO UPDATE SET body = excluded.body",
        docs.rule_docs,
    )
    conn.executemany(
        "INSERT INTO coupon_docs (coupon_id, member_id, body) VALUES (?,?,?) ON CONFLICT(coupon_id) "
        "DO UPDATE SET member_id = excluded.member_id, body = excluded.body",
        [(c, m, body) for c, m, body, _ in docs.coupons],
    )
    conn.executemany(
        "INSERT INTO hq_coupon_uses (coupon_id, uses) VALUES (?,?) ON CONFLICT(coupon_id) DO UPDATE SET uses = excluded.uses",
        [(c, uses) for c, _, _, uses in docs.coupons],
    )
    conn.executemany(
        "INSERT INTO hq_keys (key_id, body, sig) VALUES (?,?,?) ON CONFLICT(key_id) DO UPDATE SET body = excluded.body, "
        "sig = excluded.sig",
        docs.keys,
    )
    revocations = []
    for revocation_id, body, sig in docs.revocations:
        parsed = json.loads(body)
        revocations.append((revocation_id, str(parsed.get("kind", "")), str(parsed.get("subject", "")), body, sig))
    conn.executemany(
        "INSERT INTO hq_revocations (revocation_id, kind, subject, body, sig) VALUES (?,?,?,?,?) "
        "ON CONFLICT(revocation_id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, "
        "body = excluded.body, sig = excluded.sig",
        revocations,
    )
    conn.executemany(
        "INSERT INTO device_certs (cert_id, member_id, body) VALUES (?,?,?) ON CONFLICT(cert_id) "
        "DO UPDATE SET member_id = excluded.member_id, body = excluded.body",
        [(cert_id, json.loads(body).get("member_id"), body) for cert_id, body in docs.device_certs],
    )
    for kind, item_id in docs.deleted:
        for table, key in _TOMBSTONES.get(kind, []):
            conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (item_id,))
    for kind, item_id, deleted_at in docs.signed_deleted:
        table, key = _TOMBSTONES[kind][0]
        held = conn.execute(f"SELECT body FROM {table} WHERE {key} = ?", (item_id,)).fetchone()
        if held is not None and _made_by(json.loads(held[0]), deleted_at):
            conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (item_id,))


def _made_by(body: dict[str, Any], deleted_at: str) -> bool:
    """Whether a held key or revocation was made no later than ``deleted_at`` (head office's times both)."""
    made = _utc(str(body.get("revoked_at", body.get("created_at", ""))))
    deleted = _utc(deleted_at)
    return made is not None and deleted is not None and made <= deleted


def _utc(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def _give_up(conn: sqlite3.Connection, txn_id: str, at: str) -> bool:
    """In the caller's transaction: the ``asking:`` note of ``txn_id`` is removed and, unless the journal holds
    the transaction, replaced by its ``withdraw:`` note (given up at ``at``). Whether a withdrawal was noted."""
    if _get_state(conn, ASKING_PREFIX + txn_id) is None:
        return False
    _set_state(conn, ASKING_PREFIX + txn_id, None)
    if conn.execute("SELECT 1 FROM journal WHERE txn_id = ?", (txn_id,)).fetchone() is not None:
        return False
    _set_state(conn, WITHDRAW_PREFIX + txn_id, at)
    return True


def _set_state(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM sync_state WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


# -- damage: integrity check at open, rebuild of a damaged file --------------------------------------
#
# Every readable row of every table is salvaged into a fresh file (this till's journal, sales, lots,
# coupon uses and counters are facts only it holds); the sync cursors are then reset, so head office
# sends the whole cache again and overwrites what was salvaged of it. The journal is read by SQL where
# SQLite still reaches it and page by page where it does not (``terminal.store.pages``); its index names
# the rows whose pages are gone, reported by seq. The damaged file is kept beside the new one as
# <name>.damaged-<time>, never deleted. A rebuilt till records nothing until head office has said where
# its journal stands (``Store.recovering``): a seq is never given twice.

_NOT_COPIED = {"_sqlite_migrations", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"}
_MAX_PROBE = 5_000_000  # rowids tried one by one when a table's last page is unreadable
_MAX_MISSES = 20_000  # ... stopping after this many absent rowids in a row


@dataclass(frozen=True, slots=True)
class Rebuild:
    reason: str
    kept_as: str
    salvaged: dict[str, int]
    unreadable: dict[str, int]  # rowids (about one a row) that could not be read, by table
    journal_lost: tuple[tuple[int, int], ...] = ()
    """Seq ranges (first, last) the journal's index names but whose rows could not be read."""


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in str(exc)


def damage(path: Path) -> str | None:
    """Why the database file at ``path`` is damaged (SQLite's quick_check), or None if it is sound."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(str(path), timeout=10)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if _is_corruption(exc):
            return str(exc)
        raise _open_error(exc, path) from exc
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return "; ".join(problems[:5]) or None


def check_and_repair(path: Path) -> Rebuild | None:
    """Finish a rebuild a power cut interrupted; then rebuild ``path`` if it is damaged."""
    try:
        _finish_rebuild(path)
        reason = damage(path)
        return rebuild(path, reason) if reason is not None else None
    except (sqlite3.Error, OSError) as exc:
        if _disk_full(exc, path):
            raise Rejected(
                Code.STORAGE_FULL,
                f"The till's disk is full: the damaged database {path} could not be rebuilt ({exc}); it is kept as "
                "it is, and rebuilt at the first start with room for a copy of it: free space.",
            ) from exc
        raise Rejected(Code.STORAGE_FAILED, f"The damaged database {path} could not be rebuilt ({exc}).") from exc


def rebuild(path: Path, reason: str) -> Rebuild:
    """Copy every readable row of ``path`` into a fresh database, reset the sync cursors, keep the
    damaged file aside and swap the fresh one in. A power cut at any point leaves the damaged file
    (rebuilt again at the next open) or a finished copy (swapped in at the next open)."""
    fresh = _sibling(path, ".rebuilding")
    _remove_db(fresh)
    try:
        conn = _connect(fresh)
        try:
            new = Database(conn)
            migrations.apply(new)
            salvaged, unreadable, lost = _salvage(path, conn, new)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        if _sibling(fresh, "-wal").exists():  # the last close folds the WAL in; anything else is unsafe
            raise OSError(f"{fresh}-wal was left behind")
    except BaseException:
        _remove_db(fresh)  # a copy begun, never finished: not left to fill the disk (a full one, often)
        raise
    kept = _swap(path, fresh)
    return Rebuild(reason, str(kept), salvaged, {k: v for k, v in unreadable.items() if v}, lost)


def _salvage(
    path: Path, conn: sqlite3.Connection, new: Database
) -> tuple[dict[str, int], dict[str, int], tuple[tuple[int, int], ...]]:
    salvaged: dict[str, int] = {}
    unreadable: dict[str, int] = {}
    old = _open_damaged(path)
    try:
        img = pages.image(path)
        tables = _common_tables(old, conn)
        if "journal" not in {t for t, _ in tables}:  # the schema is gone: the journal's pages may not be
            tables.append(("journal", _columns(conn, "journal")))
        with new.atomic():  # the copy and its completion mark commit together, or not at all
            for table, columns in tables:
                if table == "journal":
                    rows, lost = _journal_rows(old, img, columns), 0
                else:
                    rows, lost = _readable_rows(old, table, columns)
                kept = _insert_valid(conn, table, columns, rows)
                salvaged[table], unreadable[table] = kept, lost + len(rows) - kept
            held = {int(r[0]) for r in conn.execute("SELECT seq FROM journal")}
            named = _journal_index_seqs(img)
            missing = sorted(named - held)
            unreadable["journal"] = len(missing)
            # No cursor (and no half-done snapshot) makes the sync client bootstrap the cache afresh.
            conn.execute("DELETE FROM sync_state WHERE key LIKE '%cursor%' OR key LIKE 'bootstrap%'")
            acked = conn.execute("SELECT value FROM sync_state WHERE key = 'hq_acked_seq'").fetchone()
            floor = max([*held, *named, int(acked[0]) if acked else 0, 0])
            _set_state(conn, SEQ_FLOOR, str(floor))
            _set_state(conn, SEQ_CHECK, "1")
            _set_state(conn, "rebuilt_at", utc_iso(time.time()))
    finally:
        old.close()
    return salvaged, unreadable, tuple(seq_ranges(missing))


def _insert_valid(conn: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> int:
    """Copy the rows the fresh schema accepts; a row a damaged page garbled (a NULL where none may be, a
    duplicate key) is left out and counted, never the reason the rebuild fails. Returns how many were kept."""
    marks = ",".join("?" * len(columns))
    names = ",".join(f'"{c}"' for c in columns)
    sql = f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({marks})'
    conn.execute("SAVEPOINT salvage_table")
    try:
        conn.executemany(sql, rows)
        conn.execute("RELEASE salvage_table")
        return len(rows)
    except sqlite3.DatabaseError:
        conn.execute("ROLLBACK TO salvage_table")
        conn.execute("RELEASE salvage_table")
    kept = 0
    for row in rows:  # the slow way, only for a table that holds a garbled row
        try:
            conn.execute(sql, row)
            kept += 1
        except sqlite3.DatabaseError:
            continue
    return kept


def _open_damaged(path: Path) -> sqlite3.Connection:
    """The damaged file, read-only (its WAL too), with a schema SQLite would refuse still read."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("PRAGMA writable_schema = ON")  # a schema entry pointing past the end is then skipped
    except sqlite3.DatabaseError:
        pass
    return conn


def _journal_rows(old: sqlite3.Connection, img: pages.Image, columns: list[str]) -> list[tuple[Any, ...]]:
    """Every journal row SQL still reaches, and every other one whose page survived (found by its shape)."""
    select = "SELECT " + ",".join(f'"{c}"' for c in columns) + ' FROM "journal"'
    try:
        found = old.execute(select).fetchall()
    except sqlite3.DatabaseError:
        found = []
    by_seq = {int(r[0]): tuple(r) for r in found if _valid_journal_row(dict(zip(columns, r, strict=True)))}
    schema_order = ("seq", "txn_id", "terminal_id", "kind", "payload", "created_at", "pushed_at", "merchant_id")
    for cell in _journal_cells(img):
        if cell.rowid in by_seq or not 0 < cell.rowid <= MAX_SEQ:
            continue
        padded = (cell.rowid, *cell.values[1:], None)[: len(schema_order)]  # a row written before m011 has 7
        values = dict(zip(schema_order, padded, strict=True))
        by_seq[cell.rowid] = tuple(values[c] for c in columns)
    return [by_seq[k] for k in sorted(by_seq)]


def _journal_cells(img: pages.Image) -> list[pages.Cell]:
    found: dict[int, pages.Cell] = {}
    for number in sorted(img.pages):
        try:
            cells = list(pages.leaf_cells(img, number))
        except pages.Bad:
            continue
        for cell in cells:
            if _looks_like_journal(cell.values) and (cell.rowid not in found or cell.values[6] is not None):
                found[cell.rowid] = cell  # a copy already marked pushed is the later one
    return list(found.values())


def _valid_journal_row(row: dict[str, Any]) -> bool:
    """A journal row read by SQL from a damaged file is kept only if it has the shape the till writes."""
    seq = row.get("seq")
    return (
        isinstance(seq, int)
        and 0 < seq <= MAX_SEQ
        and _looks_like_journal(
            (
                None,
                row.get("txn_id"),
                row.get("terminal_id"),
                row.get("kind"),
                row.get("payload"),
                row.get("created_at"),
                row.get("pushed_at"),
            )
        )
    )


def _looks_like_journal(v: tuple[Any, ...]) -> bool:
    """A journal record: 7 values, or 8 since m011 (the merchant, text or NULL)."""
    if len(v) == 8:
        if not (v[7] is None or isinstance(v[7], str)):
            return False
        v = v[:7]
    if len(v) != 7 or v[0] is not None or v[3] not in JOURNAL_KINDS:
        return False
    if not all(isinstance(x, str) for x in v[1:6]) or not (v[6] is None or isinstance(v[6], str)):
        return False
    if any("\x00" in x for x in v[1:7] if x is not None):  # SQLite reads past a cut file's end as zeros
        return False
    try:
        return isinstance(json.loads(v[4]), dict)
    except ValueError:
        return False


def _journal_index_seqs(img: pages.Image) -> set[int]:
    """The seqs the journal's txn_id index names (its entries end with the row's seq)."""
    roots = [r[3] for r in pages.schema(img) if r[0] == "index" and r[2] == "journal" and "txn_id" in str(r[4])]
    seqs: set[int] = set()
    for root in roots:  # (txn_id, seq): anything else is a garbled entry, not a seq
        seqs.update(
            e[1]
            for e in pages.index_entries(img, root)
            if len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int) and 0 < e[1] <= MAX_SEQ
        )
    return seqs


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]


def _common_tables(old: sqlite3.Connection, new: sqlite3.Connection) -> list[tuple[str, list[str]]]:
    try:
        names = [str(r[0]) for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
    except sqlite3.DatabaseError:
        return []  # the schema page itself is gone: nothing can be salvaged by SQL
    found = []
    for table in names:
        if table in _NOT_COPIED:
            continue
        wanted = set(_columns(new, table))
        try:
            columns = [c for c in _columns(old, table) if c in wanted]
        except sqlite3.DatabaseError:
            continue
        if columns:
            found.append((table, columns))
    return found


def _readable_rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> tuple[list[tuple[Any, ...]], int]:
    """Every row of ``table`` that can still be read: all at once, else rowid by rowid."""
    select = "SELECT " + ",".join(f'"{c}"' for c in columns) + f' FROM "{table}"'
    try:
        return conn.execute(select).fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    try:
        top: int | None = conn.execute(f'SELECT MAX(rowid) FROM "{table}"').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = None
    rows: list[tuple[Any, ...]] = []
    lost = streak = 0  # streak: rowids in a row that gave nothing (absent or unreadable)
    for rowid in range(1, (top if top is not None else _MAX_PROBE) + 1):
        try:
            row = conn.execute(select + " WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.OperationalError:
            break  # no rowid (a WITHOUT ROWID table): whatever was readable at once is all we get
        except sqlite3.DatabaseError:
            row, lost = None, lost + 1
        streak = 0 if row is not None else streak + 1
        if row is not None:
            rows.append(row)
        elif top is None and streak > _MAX_MISSES:
            break
    return rows, lost


def _swap(path: Path, fresh: Path) -> Path:
    kept = _sibling(path, f".damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    if path.exists():
        os.link(path, kept)
    for suffix in ("-wal", "-shm"):  # the old WAL must never meet the new file
        side = _sibling(path, suffix)
        if side.exists():
            os.replace(side, _sibling(kept, suffix))
    os.replace(fresh, path)
    _fsync_dir(path.parent)
    return kept


def _finish_rebuild(path: Path) -> None:
    fresh = _sibling(path, ".rebuilding")
    if not fresh.exists():
        return
    try:
        conn = sqlite3.connect(str(fresh), timeout=10)
        try:
            done = conn.execute("SELECT value FROM sync_state WHERE key = 'rebuilt_at'").fetchone() is not None
        finally:
            conn.close()  # the last connection folds the WAL back into the file
    except sqlite3.DatabaseError:
        done = False
    if done and not _sibling(fresh, "-wal").exists():
        _swap(path, fresh)
    else:
        _remove_db(fresh)


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        _sibling(path, suffix).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
