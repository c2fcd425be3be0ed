"""Head office's storage: terminals and their credentials, master data, the journal, the changes feed.

``HqStore(url)`` runs over SQLite (a file path, the default: one command, no server) or PostgreSQL
(``postgresql://...``, for chains) through ``hq.db`` (``open_db``); the statements are the same on both.
A push runs through ``push.py`` (the stages in ``ingest.py``), end of day and reconciliation in
``reconcile.py``. ``open_store`` makes one with the options of ``hq serve``.

Versions: one global counter numbers every change to a member, card, rule, document, key or
revocation; ``changes(since)`` returns rows with a higher version, deleted rows as tombstones. The
counter is a row updated last in each writing transaction, so writers serialise on it only up to
their commit and versions become visible in commit order: a cursor never skips a row that commits
late.

Errors::

    HqError                    anything this module refuses
     +-- SeqConflict           an entry reuses a (terminal, seq) or txn_id with different content (409)
     +-- TxnTaken              an entry names a txn_id another terminal's entry holds (409 txn_id_taken)
     +-- WrongTerminal         an entry claims another terminal than the one pushing it (403)
     +-- UnknownTerminal       a push for a terminal that was never registered (403)
     +-- CredentialRevoked     a revoked terminal's token (401)
     +-- EnrolmentRefused      an unknown, expired or used enrolment code (401)
     +-- EnrolmentWrongStore   a code of another store than the till names (409; the code stays unused)
     +-- StorageFailed         the database failed (503)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hq import (
    audit,
    businessday,
    giftcards,
    giftholders,
    ledger,
    merchants,
    pools,
    profiles,
    push,
    quarantine,
    receipts,
    reconcile,
    rewards,
    stats,
    topups,
    versions,
    vouchers,
)
from hq import ingest as ingest_mod
from hq.db.engine import Db, Tx, utc_now
from hq.db.schema import MIGRATION_LOCK_WAIT_S, Migrated, lacking, migrate, open_db, take_seed
from hq.errors import HqError, IntegrityFailed, KeyFileInvalid, MigrationNeeded, Refused, StorageFailed
from hq.ingest import (
    PUSH_BYTES_PER_DAY,
    PUSH_ENTRIES_PER_DAY,
    CredentialRevoked,
    Effect,
    PushLimited,
    SeqConflict,
    Settings,
    TxnTaken,
    UnknownTerminal,
    WrongTerminal,
    bump_versions,
    contest,
    contiguous,
    note_push_limited,
    payload_json,
    withdraw_confirms,
)
from hq.policy import CardKeys
from sync.protocol import (
    SIGNED_TOMBSTONES,
    SNAPSHOT_COLUMNS,
    ChangesPage,
    EnrolResponse,
    EodReport,
    EodResult,
    ErrorCode,
    GiftConfirmRequest,
    GroupPage,
    JournalState,
    PushResponse,
    ReconItem,
    SnapshotInfo,
    SnapshotPage,
    TillHealth,
    Tombstone,
    VoucherConfirmRequest,
    WireCard,
    WireCoupon,
    WireDeviceCert,
    WireEntry,
    WireGiftCard,
    WireGiftTerms,
    WireKey,
    WireMember,
    WireRevocation,
    WireRule,
    WireRuleDoc,
    WireVoucher,
    WireVoucherStock,
    canonical_json,
    parse_time,
    tombstone_body,
)
from terminal import b64url
from terminal import giftcards as gc
from terminal.credentials import card_uid_hash, parse_master_key, token_digest
from terminal.keys import check_card_key, key_check
from terminal.rewards import Reward
from terminal.topups import TopupPolicy

__all__ = [
    "CredentialRevoked",
    "Effect",
    "EnrolmentRefused",
    "EnrolmentWrongStore",
    "HqError",
    "HqStore",
    "SeqConflict",
    "Settings",
    "StorageFailed",
    "TxnTaken",
    "UnknownTerminal",
    "WrongTerminal",
    "canonical_json",
    "contiguous",
    "open_store",
    "utc_now",
]

log = logging.getLogger("tillpoint.hq")

STATUSES = ("active", "blocked")
CHAIN_TIMEZONE = "chain_timezone"
"""The ``settings`` row of the zone head office serves with (``HqStore.keep_chain_timezone``)."""
T = TypeVar("T")
Also = Callable[[Tx], object]
"""More work for the transaction of a change (its audit record)."""
ENROL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class EnrolmentRefused(HqError):
    pass


class EnrolmentWrongStore(HqError):
    """The enrolment code is for another store than the till named: refused, the code left unused (409)."""


b64 = b64url.encode
unb64 = b64url.decode


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")


# -- the changes feed: one spec per kind ------------------------------------------------------------

FeedRow = tuple[int, Any]


def _member(r: Sequence[Any]) -> WireMember:
    return WireMember(
        member_id=r[0], display_name=r[1], tier=r[2], points=r[3], status=r[4], stored_value=r[5], spend_held=bool(r[6])
    )


def _card(r: Sequence[Any]) -> WireCard:
    return WireCard(uid_hash=r[0], member_id=r[1], status=r[2], counter=r[3])


def _rule(r: Sequence[Any]) -> WireRule:
    return WireRule(rule_id=r[0], points=r[1], per_minor=r[2])


def _rule_doc(r: Sequence[Any]) -> WireRuleDoc:
    return WireRuleDoc(rule_id=r[0], body=json.loads(r[1]))


def _coupon(r: Sequence[Any]) -> WireCoupon:
    return WireCoupon(coupon_id=r[0], member_id=r[1], body=json.loads(r[2]), uses=r[3])


def _key(r: Sequence[Any]) -> WireKey:
    return WireKey(key_id=r[0], body=json.loads(r[1]), sig=r[2])


def _revocation(r: Sequence[Any]) -> WireRevocation:
    return WireRevocation(revocation_id=r[0], body=json.loads(r[1]), sig=r[2])


def _device_cert(r: Sequence[Any]) -> WireDeviceCert:
    return WireDeviceCert(cert_id=r[0], member_id=r[1], body=json.loads(r[2]))


def _voucher(r: Sequence[Any]) -> WireVoucher:
    return WireVoucher(voucher_id=r[0], body=json.loads(r[1]))


def _gift_card(r: Sequence[Any]) -> WireGiftCard:
    return WireGiftCard(card_id=r[0], body=json.loads(r[1]))


def _tombstone(kind: str, r: Sequence[Any]) -> Tombstone:
    """A deleted row's tombstone; a key's or a revocation's with the deletion head office signed (a row deleted
    by an earlier release still holds the key or the revocation itself: its tombstone goes unsigned)."""
    if kind in SIGNED_TOMBSTONES:
        body = json.loads(r[1])
        if "tombstone" in body:
            return Tombstone(kind=kind, id=r[0], body=body, sig=r[2])  # type: ignore[arg-type]
    return Tombstone(kind=kind, id=r[0])  # type: ignore[arg-type]


# (page attribute, table, key column, tombstone kind, row -> wire model)
FEED: tuple[tuple[str, str, str, str, Callable[[Sequence[Any]], Any]], ...] = (
    ("members", "members", "member_id", "member", _member),
    ("cards", "cards", "uid_hash", "card", _card),
    ("rules", "rules", "rule_id", "rule", _rule),
    ("rule_docs", "rule_docs", "rule_id", "rule_doc", _rule_doc),
    ("coupons", "coupons", "coupon_id", "coupon", _coupon),
    ("keys", "signing_keys", "key_id", "key", _key),
    ("revocations", "revocations", "revocation_id", "revocation", _revocation),
    ("device_certs", "device_certs", "cert_id", "device_cert", _device_cert),
    ("vouchers", "voucher_states", "voucher_id", "voucher", _voucher),
    ("gift_cards", "gift_cards", "card_id", "gift_card", _gift_card),
)
FEED_BY_KIND = {spec[0]: spec for spec in FEED}
HELD = "spend_held = 1 AND deleted = 0"
"""The members whose spending is held (indexed: ``m056_members_spend_held_index``)."""
FEED_COLUMNS = {**SNAPSHOT_COLUMNS, "members": (*SNAPSHOT_COLUMNS["members"], "spend_held")}
"""The columns of each kind in the changes feed: the snapshot's, and a member's spend hold (docs/enrolment.md)."""
TABLE_OF_TOMBSTONE = {spec[3]: spec for spec in FEED}


def _page(since: int, limit: int, rows: list[tuple[int, str, Any]]) -> ChangesPage:
    rows.sort(key=lambda row: row[0])
    taken = rows[:limit]
    page = ChangesPage(cursor=taken[-1][0] if taken else since, more=len(rows) > limit)
    for _, attr, item in taken:
        getattr(page, attr).append(item)
    return page


class HqStore:
    """Head office's storage. Safe to share between threads (and processes, through the database)."""

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        *,
        pool_size: int = 16,
        backup: bool = True,
        migration_lock_wait: float = MIGRATION_LOCK_WAIT_S,
        clock: Callable[[], str] = utc_now,
        upgrade: bool = True,
    ) -> None:
        """``upgrade=False``: a database lacking migrations of this release is refused (``MigrationNeeded``) rather
        than migrated (every ``tillpoint hq`` command but ``migrate`` and ``serve``); a new one is still made."""
        self.settings = settings or Settings()
        self.now = clock
        """Head office's time (UTC, ISO with milliseconds and Z): the system clock, or a simulated one."""
        self.migrated = Migrated()
        """What opening it migrated (``hq.db.schema.migrate``)."""
        self.db: Db = open_db(url, pool_size=pool_size)
        try:
            pending = [] if upgrade else lacking(self.db)
            if pending:
                raise MigrationNeeded(
                    f"head office's database lacks {len(pending)} migration(s) of this release ({', '.join(pending)})",
                    pending,
                )
            migrate(self.db, backup=backup, lock_wait=migration_lock_wait, seed=self._seed, done=self.migrated)
        except BaseException:
            self.db.close()
            raise
        self._seen: dict[str, float] = {}
        self._seen_lock = threading.Lock()

    def _seed(self, tx: Tx, name: str) -> None:
        """Fill in what migration ``name`` left to head office (``schema.SEEDED``), in the transaction that takes
        its pending row."""
        if not take_seed(tx, name):
            return
        if name == "m004_trust":
            ingest_mod.backfill_sales(tx)
        elif name == "m006_signal":  # the versions held when the history began
            versions.seed(tx, self.now())
        elif name == "m013_receipts":  # the sales read from receipts held before the index
            receipts.backfill(tx)
        elif name == "m009_profile_attributes":  # the attributes collected until the chain sets its own
            profiles.seed_rules(tx, self.now())

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def moment(self) -> datetime:
        """Head office's time now (``now``) as an aware UTC datetime."""
        return datetime.fromisoformat(self.now().replace("Z", "+00:00"))

    def close(self) -> None:
        self.db.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.db.read() as tx:
            return tx.all(sql, params)

    # -- terminals and credentials ------------------------------------------------------------

    def add_terminal(self, terminal_id: str, store_id: str, token: str | None = None) -> str:
        """Register a terminal, or give an existing one a new token; returns the token (shown once).

        Only the token's digest is stored. A terminal cannot move to another store: its journal
        belongs to the store it was registered for. Re-keying does not lift a revocation.
        """
        token = token or secrets.token_urlsafe(32)

        def save(tx: Tx) -> None:
            _check_store(tx, terminal_id, store_id)
            tx.run(
                "INSERT INTO terminals (terminal_id, store_id, token_sha256, created_at, revoked, acked_seq) "
                "VALUES (?, ?, ?, ?, 0, 0) ON CONFLICT (terminal_id) DO UPDATE SET token_sha256 = excluded.token_sha256, "
                "next_token_sha256 = NULL",
                [terminal_id, store_id, token_digest(token), self.now()],
            )

        try:
            self.db.transact(save)
        except IntegrityFailed as exc:
            raise ValueError("that token is already used by another terminal") from exc
        return token

    def holds_terminal(self, terminal_id: str) -> bool:
        """Whether head office registered ``terminal_id`` (revoked or not)."""
        return bool(self._read("SELECT 1 FROM terminals WHERE terminal_id = ?", [terminal_id]))

    def terminal_revoked(self, terminal_id: str) -> bool | None:
        """Whether ``terminal_id``'s credential is revoked; ``None`` when head office holds no such terminal."""
        rows = self._read("SELECT revoked FROM terminals WHERE terminal_id = ?", [terminal_id])
        return bool(rows[0][0]) if rows else None

    def revoke_terminal(self, terminal_id: str, by: str = "cli") -> bool:
        """Refuse the terminal's credential from now on; False if no such terminal. What it held of the
        flash-drop pools and had not used goes back to them, and what head office held back for its online
        confirmations whose entries have not arrived is let go (a stolen credential holds no member's balance or
        gift card past its revocation; a sale the till recorded and sends after a new enrolment is applied like
        any withdrawn one). Its contests hold no member's spending any more (``reconcile.end_terminal_holds``,
        audited as ``by``'s): a member another terminal's open contest also holds stays held. Its enrolment codes
        not used yet are void: only a code made after the revocation lets the terminal in again (a copy of an older
        one would lift it)."""
        with self.db.write() as tx:
            found = (
                tx.run(
                    "UPDATE terminals SET revoked = 1, next_token_sha256 = NULL WHERE terminal_id = ?", [terminal_id]
                )
                == 1
            )
            tx.run("DELETE FROM enrol_codes WHERE terminal_id = ? AND used_at IS NULL", [terminal_id])
            pools.strand(tx, terminal_id, self.now())
            withdraw_confirms(tx, terminal_id, None, self.now())
            if found:
                reconcile.end_terminal_holds(tx, terminal_id, by)
            return found

    def enrol_code(self, terminal_id: str, store_id: str, hours: float = 72.0) -> str:
        """A one-time code that enrols (or re-enrols) ``terminal_id`` of ``store_id``; shown once."""
        code = "".join(secrets.choice(ENROL_ALPHABET) for _ in range(16))
        expires = (self.moment() + timedelta(hours=hours)).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self.db.write() as tx:
            _check_store(tx, terminal_id, store_id)
            tx.run(
                "INSERT INTO enrol_codes (code_sha256, terminal_id, store_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [token_digest(code), terminal_id, store_id, self.now(), expires],
            )
        return "-".join(code[i : i + 4] for i in range(0, 16, 4))

    def enrol(self, code: str, terminal_id: str | None = None, store_id: str | None = None) -> EnrolResponse:
        """Redeem a one-time code for the terminal's own credential. An enrolment lifts a revocation:
        issuing a code is the administrator's decision to let this terminal in again. A till that names its
        store (``store_id``) is refused, and the code left unused, when the code is another store's: its every
        entry would name a store its terminal is not of (``wrong_store``). So is a code of another store than the
        one the terminal belongs to (two codes of a new terminal made for two stores, one of them used)."""
        token = secrets.token_urlsafe(32)
        now = self.now()

        def redeem(tx: Tx) -> tuple[str, str]:
            row = tx.one(
                f"SELECT terminal_id, store_id, expires_at, used_at FROM enrol_codes WHERE code_sha256 = ?"
                f"{tx.for_update}",
                [token_digest(normalise_code(code))],
            )
            if row is None or row[3] is not None or row[2] < now[:19] + "Z":
                raise EnrolmentRefused("unknown, expired or already used enrolment code")
            if terminal_id and terminal_id != row[0]:  # the code is good: the till names itself otherwise
                raise EnrolmentRefused(
                    f"this enrolment code was made for another terminal, not {terminal_id}: set the till's "
                    "[terminal] id to the one head office made it for"
                )
            held = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [row[0]])
            if held is not None and held[0] != row[1]:  # two codes of a new terminal, for two stores: one used
                raise EnrolmentRefused(
                    f"this code enrols terminal {row[0]} for store {row[1]}, and the terminal belongs to store "
                    f"{held[0]}: ask for a code of store {held[0]}"
                )
            if store_id is not None and store_id != row[1]:
                raise EnrolmentWrongStore(
                    f"this code enrols terminal {row[0]} for store {row[1]}, and the till is configured for store "
                    f"{store_id}: correct terminal.store_id in the till's config (or ask for a code for store "
                    f"{store_id}); the code is still valid"
                )
            tx.run(
                "UPDATE enrol_codes SET used_at = ? WHERE code_sha256 = ?", [now, token_digest(normalise_code(code))]
            )
            tx.run(
                "INSERT INTO terminals (terminal_id, store_id, token_sha256, created_at, revoked, acked_seq) "
                "VALUES (?, ?, ?, ?, 0, 0) ON CONFLICT (terminal_id) DO UPDATE SET token_sha256 = excluded.token_sha256, "
                "next_token_sha256 = NULL, revoked = 0",
                [row[0], row[1], token_digest(token), now],
            )
            return str(row[0]), str(row[1])

        tid, sid = self.db.transact(redeem)
        return EnrolResponse(terminal_id=tid, store_id=sid, token=token, root_key=self.root_public_key())

    def rotate(self, terminal_id: str) -> str:
        """A new token for the terminal. The old one stays valid until the new one is first used, so
        a terminal that crashes before saving the new token is not locked out."""
        token = secrets.token_urlsafe(32)
        with self.db.write() as tx:
            tx.run(
                "UPDATE terminals SET next_token_sha256 = ? WHERE terminal_id = ?", [token_digest(token), terminal_id]
            )
        return token

    def authenticate(self, token: str) -> str | None:
        """The terminal this bearer token belongs to; None if unknown. Raises CredentialRevoked."""
        digest = token_digest(token)
        rows = self._read(
            "SELECT terminal_id, revoked, token_sha256 FROM terminals WHERE token_sha256 = ? OR next_token_sha256 = ?",
            [digest, digest],
        )
        if not rows:
            return None
        terminal_id, revoked, current = rows[0]
        if revoked:
            raise CredentialRevoked(f"terminal {terminal_id}'s credential was revoked")
        if current != digest:
            # First use of a rotated token: it replaces the old one for good.
            with self.db.write() as tx:
                tx.run(
                    "UPDATE terminals SET token_sha256 = next_token_sha256, next_token_sha256 = NULL "
                    "WHERE terminal_id = ? AND next_token_sha256 = ?",
                    [terminal_id, digest],
                )
        return str(terminal_id)

    def note_pull(self, terminal_id: str, since: int = 0) -> None:
        """The terminal pulls: a till pushes everything it has before it pulls, so no entry it makes later
        can honestly carry an earlier time than this (``ingest`` checks). A till asks ``since`` the last
        version it applied: what reached it (campaign reports count coupons delivered by it)."""
        # One statement: a till cannot claim more than head office has issued (what campaign reports count).
        self.db.transact(
            lambda tx: tx.run(
                "UPDATE terminals SET last_pull = ?, pulled_version = CASE WHEN pulled_version >= ? THEN pulled_version "
                "ELSE (SELECT CASE WHEN c.value < ? THEN c.value ELSE ? END FROM counters c WHERE c.name = 'version') "
                "END WHERE terminal_id = ?",
                [self.now(), since, since, since, terminal_id],
            )
        )

    def touch(self, terminal_id: str, clock_offset: float | None = None) -> None:
        """Note that a terminal was seen (at most every 30 s per terminal: pulls are frequent)."""
        now = time.monotonic()
        with self._seen_lock:
            if now - self._seen.get(terminal_id, -1e9) < 30:
                return
            self._seen[terminal_id] = now
        with self.db.write() as tx:
            tx.run(
                "UPDATE terminals SET last_seen = ?, clock_offset = COALESCE(?, clock_offset) WHERE terminal_id = ?",
                [self.now(), clock_offset, terminal_id],
            )

    def terminals(self) -> list[dict[str, Any]]:
        """Every terminal with what head office holds of its journal: who is offline or behind."""
        rows = self._read(
            "SELECT t.terminal_id, t.store_id, t.revoked, t.acked_seq, t.last_seen, t.clock_offset, "
            "(SELECT MAX(seq) FROM journal j WHERE j.terminal_id = t.terminal_id), "
            "(SELECT COUNT(*) FROM journal j WHERE j.terminal_id = t.terminal_id) FROM terminals t ORDER BY t.terminal_id"
        )
        names = ("terminal_id", "store_id", "revoked", "acked_seq", "last_seen", "clock_offset", "max_seq", "entries")
        out = []
        for row in rows:
            info = dict(zip(names, row, strict=True))
            info["revoked"], info["max_seq"] = bool(info["revoked"]), int(info["max_seq"] or 0)
            out.append(info)
        return out

    def put_health(self, terminal_id: str, health: TillHealth, clock: str | None) -> None:
        """Keep a till's health report (the latest only) with head office's time of receipt."""
        self.flag_clock(terminal_id, clock)
        with self.db.write() as tx:
            tx.run(
                "INSERT INTO terminal_health (terminal_id, reported_at, body) VALUES (?, ?, ?) "
                "ON CONFLICT (terminal_id) DO UPDATE SET reported_at = excluded.reported_at, body = excluded.body",
                [terminal_id, self.now(), health.model_dump_json()],
            )

    def fleet(self, now: str | None = None) -> list[dict[str, Any]]:
        """Every terminal with its journal position and its last health report, ages measured at ``now``."""
        at = now or self.now()
        with self.db.read() as tx:
            reports = {
                str(r[0]): (str(r[1]), str(r[2]))
                for r in tx.all("SELECT terminal_id, reported_at, body FROM terminal_health")
            }
            pushed = {
                str(r[0]): (int(r[1]), int(r[2]), int(r[3]))
                for r in tx.all("SELECT terminal_id, entries, bytes, refused FROM push_days WHERE day = ?", [at[:10]])
            }
        rows = []
        for info in self.terminals():
            today = pushed.get(info["terminal_id"], (0, 0, 0))
            info.update(pushed_entries_today=today[0], pushed_bytes_today=today[1], push_refused_today=today[2])
            rows.append(fleet_row(info, reports.get(info["terminal_id"]), at))
        return rows

    def store_of(self, terminal_id: str) -> str | None:
        rows = self._read("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
        return str(rows[0][0]) if rows else None

    # -- administrators ---------------------------------------------------------------------------

    def add_admin(self, name: str) -> str:
        """An administrator token (reports, settling items); shown once."""
        token = secrets.token_urlsafe(32)
        with self.db.write() as tx:
            tx.run(
                "INSERT INTO admins (name, token_sha256, created_at, revoked) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256, revoked = 0",
                [name, token_digest(token), self.now()],
            )
        return token

    def authenticate_admin(self, token: str) -> str | None:
        rows = self._read("SELECT name FROM admins WHERE token_sha256 = ? AND revoked = 0", [token_digest(token)])
        return str(rows[0][0]) if rows else None

    # -- keys and signatures --------------------------------------------------------------------

    def _root_key(self, tx: Tx) -> Ed25519PrivateKey:
        row = tx.one("SELECT value FROM settings WHERE name = 'root_key'")
        if row is None:
            raw = Ed25519PrivateKey.generate().private_bytes_raw()
            tx.run(
                "INSERT INTO settings (name, value) VALUES ('root_key', ?) ON CONFLICT (name) DO NOTHING", [b64(raw)]
            )
            row = tx.one("SELECT value FROM settings WHERE name = 'root_key'")
            assert row is not None
        return Ed25519PrivateKey.from_private_bytes(unb64(str(row[0])))

    def root_public_key(self) -> str:
        """Head office's root public key (base64url raw Ed25519): it signs keys and revocations."""
        with self.db.write() as tx:
            key = self._root_key(tx)
        return b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _signed(self, tx: Tx, body: dict[str, Any]) -> tuple[str, str]:
        return payload_json(body), b64(self._root_key(tx).sign(canonical_json(body)))

    def create_signing_key(self, purpose: str) -> str:
        """A new Ed25519 key pair for ``purpose`` (e.g. "qr", "payment_code"); the public half goes
        down to every till, signed by the root key. Returns the key id."""
        private = Ed25519PrivateKey.generate()
        key_id = f"K-{secrets.token_hex(4)}"
        body = {
            "key_id": key_id,
            "alg": "ed25519",
            "purpose": purpose,
            "status": "active",
            "created_at": self.now(),
            "public_key": b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
        }

        def save(tx: Tx) -> None:
            text, sig = self._signed(tx, body)
            tx.run(
                "INSERT INTO signing_keys (key_id, body, sig, private_key, version, deleted) VALUES (?, ?, ?, ?, 0, 0)",
                [key_id, text, sig, b64(private.private_bytes_raw())],
            )
            bump_versions(tx, "signing_keys", "key_id", [key_id])

        self.db.transact(save)
        return key_id

    def retire_key(self, key_id: str) -> bool:
        def save(tx: Tx) -> bool:
            row = tx.one("SELECT body FROM signing_keys WHERE key_id = ? AND deleted = 0", [key_id])
            if row is None:
                return False
            body = dict(json.loads(row[0]), status="retired")
            text, sig = self._signed(tx, body)
            tx.run("UPDATE signing_keys SET body = ?, sig = ? WHERE key_id = ?", [text, sig, key_id])
            bump_versions(tx, "signing_keys", "key_id", [key_id])
            return True

        return self.db.transact(save)

    def revoke(self, kind: str, subject: str, reason: str = "") -> str:
        """Add ``kind:subject`` to the revocation list every till pulls; returns its id."""
        revocation_id = f"{kind}:{subject}"
        body = {"kind": kind, "subject": subject, "reason": reason, "revoked_at": self.now()}

        def save(tx: Tx) -> None:
            text, sig = self._signed(tx, body)
            tx.run(
                "INSERT INTO revocations (revocation_id, body, sig, version, deleted) VALUES (?, ?, ?, 0, 0) "
                "ON CONFLICT (revocation_id) DO UPDATE SET body = excluded.body, sig = excluded.sig, deleted = 0",
                [revocation_id, text, sig],
            )
            bump_versions(tx, "revocations", "revocation_id", [revocation_id])

        self.db.transact(save)
        return revocation_id

    # -- master data ----------------------------------------------------------------------------

    def upsert_member(
        self,
        member_id: str,
        display_name: str | None = None,
        tier: str | None = None,
        points: int | None = None,
        status: str | None = None,
        stored_value: int | None = None,
    ) -> None:
        """Create a member, or change only the fields given (None: as it is; a new member starts at
        0 points and stored value, tier ``basic``, active). Balances, lots and tier survive an update."""
        if status is not None:
            _check_status(status)

        def save(tx: Tx) -> None:
            held = tx.one(
                f"SELECT display_name, tier, points, status, stored_value, blocked_at, deleted FROM members "
                f"WHERE member_id = ?{tx.for_update}",
                [member_id],
            )
            old = held if held is not None and not held[6] else (display_name or "", "basic", 0, "active", 0, None, 0)
            new_status = status if status is not None else str(old[3])
            values = {
                "display_name": display_name if display_name is not None else old[0],
                "tier": tier if tier is not None else old[1],
                "points": points if points is not None else int(old[2]),
                "status": new_status,
                "stored_value": stored_value if stored_value is not None else int(old[4]),
                "blocked_at": _blocked_at(held[5] if held else None, held and held[3], new_status, self.now()),
                "deleted": 0,
            }
            if _write_row(tx, "members", "member_id", member_id, values, held):
                before = (int(held[2]), int(held[4])) if held is not None else (0, 0)  # a tombstone keeps its own
                after = (
                    points if points is not None else int(old[2]),
                    stored_value if stored_value is not None else int(old[4]),
                )
                ledger.adjust(tx, member_id, after[0] - before[0], after[1] - before[1], self.now())
                if held is None or held[6]:
                    ingest_mod.apply_late_entries(tx, member_id, self.now())
                bump_versions(tx, "members", "member_id", [member_id])

        self.db.transact(save)

    def upsert_card(self, uid_hash: str, member_id: str, status: str = "active") -> None:
        _check_status(status)
        if self.member(member_id) is None:
            raise ValueError(f"no member {member_id} for card {uid_hash[:12]}...")

        def save(tx: Tx) -> None:
            held = tx.one(
                f"SELECT member_id, status, blocked_at, deleted FROM cards WHERE uid_hash = ?{tx.for_update}",
                [uid_hash],
            )
            values = {
                "member_id": member_id,
                "status": status,
                "blocked_at": _blocked_at(held[2] if held else None, held and held[1], status, self.now()),
                "deleted": 0,
            }
            if _write_row(tx, "cards", "uid_hash", uid_hash, values, held):
                bump_versions(tx, "cards", "uid_hash", [uid_hash])

        self.db.transact(save)

    def set_rule(self, rule_id: str, points: int, per_minor: int) -> None:
        WireRule(rule_id=rule_id, points=points, per_minor=per_minor)  # same bounds as on the wire
        self._put("rules", "rule_id", rule_id, {"points": points, "per_minor": per_minor, "deleted": 0})

    def put_rule_doc(self, body: dict[str, Any], rule_id: str | None = None, also: Also | None = None) -> str:
        """Store an earning-rule document as it is (the tills read it); its id is ``body["rule_id"]``.
        ``also`` runs in the same transaction (the back office's audit record of the change)."""
        rule_id = rule_id or body.get("rule_id")
        if not isinstance(rule_id, str) or not rule_id:
            raise ValueError("a rule document needs a string rule_id")
        self._put("rule_docs", "rule_id", rule_id, {"body": payload_json(body), "deleted": 0}, also)
        return rule_id

    def put_coupon(self, body: dict[str, Any], coupon_id: str | None = None, also: Also | None = None) -> str:
        """Store a coupon document as it is; its use limits are ``body["limits"]`` ({"global", "per_member"}).
        ``also`` runs in the same transaction."""
        coupon_id = coupon_id or body.get("coupon_id")
        if not isinstance(coupon_id, str) or not coupon_id:
            raise ValueError("a coupon document needs a string coupon_id")
        member_id = body.get("member_id")
        if member_id is not None and not isinstance(member_id, str):
            raise ValueError("a coupon's member_id must be a string")
        merchant_id = body.get("merchant_id")  # the merchant whose tills alone take it (docs/ledger.md)
        if merchant_id is not None and not isinstance(merchant_id, str):
            raise ValueError("a coupon's merchant_id must be a string")
        fields = {"member_id": member_id, "merchant_id": merchant_id, "body": payload_json(body), "deleted": 0}
        self._put("coupons", "coupon_id", coupon_id, fields, also)
        return coupon_id

    def delete(self, kind: str, item_id: str, also: Also | None = None) -> bool:
        """Delete a member, card, rule, rule_doc, coupon, key or revocation: a tombstone goes down the
        feed. Deleting a member deletes its cards. ``also`` runs in the same transaction, once deleted."""
        attr, table, key, _, _ = TABLE_OF_TOMBSTONE[kind]

        def save(tx: Tx) -> bool:
            if tx.run(f"UPDATE {table} SET deleted = 1 WHERE {key} = ? AND deleted = 0", [item_id]) != 1:
                return False
            if kind in SIGNED_TOMBSTONES:  # the tills take it off only on head office's signature
                text, sig = self._signed(tx, tombstone_body(kind, item_id, self.now()))
                tx.run(f"UPDATE {table} SET body = ?, sig = ? WHERE {key} = ?", [text, sig, item_id])
            cards = []
            if table == "members":
                cards = [
                    str(r[0])
                    for r in tx.all("SELECT uid_hash FROM cards WHERE member_id = ? AND deleted = 0", [item_id])
                ]
                tx.many("UPDATE cards SET deleted = 1 WHERE uid_hash = ?", [(c,) for c in cards])
                bump_versions(tx, "cards", "uid_hash", cards)
            if also is not None:
                also(tx)
            bump_versions(tx, table, key, [item_id])
            versions.forget(tx, table, item_id, self.now())  # from now on no sale can be priced with it
            return True

        return self.db.transact(save)

    def _put(self, table: str, key: str, key_value: str, values: dict[str, Any], also: Also | None = None) -> None:
        def save(tx: Tx) -> None:
            names = list(values)
            held = tx.one(f"SELECT {', '.join(names)} FROM {table} WHERE {key} = ?{tx.for_update}", [key_value])
            if also is not None:
                also(tx)
            if _write_row(tx, table, key, key_value, values, held):
                bump_versions(tx, table, key, [key_value])
                versions.remember(tx, table, key_value, values, self.now())  # every version issued stays

        self.db.transact(save)

    def member(self, member_id: str) -> WireMember | None:
        rows = self._read(
            f"SELECT {', '.join(FEED_COLUMNS['members'])} FROM members WHERE member_id = ? AND deleted = 0",
            [member_id],
        )
        return _member(rows[0]) if rows else None

    # -- profiles and statistics ------------------------------------------------------------------

    def profile(self, member_id: str) -> dict[str, Any]:
        """The member's birthday, attributes and consents (``profiles.ProfileRefused`` unknown_member)."""
        with self.db.read() as tx:
            profiles.known_member(tx, member_id)
            return profiles.profile(tx, member_id)

    def update_profile(self, member_id: str, change: profiles.ProfileChange) -> dict[str, Any]:
        """Change a member's profile as an administrator (a member's own join goes through ``members.claim``);
        refusals are ``profiles.ProfileRefused`` with a stable code."""
        today = self.moment().astimezone(UTC).date()
        return self.db.transact(lambda tx: profiles.update(tx, member_id, change, today, self.now()))

    def attribute_rules(self, *, for_members: bool = False) -> list[dict[str, Any]]:
        """The attributes the chain collects (``for_members``: those the join page asks members for)."""
        with self.db.read() as tx:
            return [r.as_dict() for r in profiles.attribute_rules(tx, for_members=for_members).values()]

    def set_attribute_rule(self, rule: profiles.AttributeRule) -> None:
        self.db.transact(lambda tx: profiles.set_attribute_rule(tx, rule, self.now()))

    def member_stats(self, member_id: str, as_of: str | None = None) -> stats.MemberStats:
        """The member's statistics as of a business day (default: today in the chain's time zone);
        ``profiles.ProfileRefused`` unknown_member for a member head office does not hold (or erased)."""
        day = as_of or businessday.BusinessDay(self.settings.timezone).of(self.moment())
        with self.db.read() as tx:
            profiles.known_member(tx, member_id)
            return stats.member_stats(tx, member_id, day)

    def rebuild_stats(self) -> dict[str, int]:
        """Every member statistic computed again from the journal, in one transaction."""
        return self.db.transact(stats.rebuild)

    def roll_windows(self, to: date | None = None, *, back: bool = False) -> dict[str, Any]:
        """Roll the members' rolled windows to the business day ``to`` (default: today in UTC, as a
        segment's default reference day; a build of every member runs a chunk of members a transaction, and
        one a stopped process left is finished); what moved and the day they are as of."""
        day = to or self.moment().date()
        moved = stats.roll_windows(self.db, day, back=back)
        with self.db.read() as tx:
            rolled = stats.windows_day(tx)
        return {"days": moved, "as_of": rolled.isoformat() if rolled else None}

    def coupon_uses(self, coupon_id: str) -> int:
        rows = self._read("SELECT uses FROM coupons WHERE coupon_id = ?", [coupon_id])
        return int(rows[0][0]) if rows else 0

    # -- top-ups sold at tills (hq/topups.py) -----------------------------------------------------

    def topup_policy(self, terminal_id: str) -> TopupPolicy:
        """The till's top-up policy."""
        with self.db.read() as tx:
            return topups.policy(tx, terminal_id)

    def topup_policy_doc(self, terminal_id: str) -> dict[str, Any]:
        """The till's top-up policy with its store's business day, as it goes down with every pull. Refused
        ``not_found`` for a terminal head office does not hold (not a disabled policy of nobody)."""
        with self.db.read() as tx:
            store_id = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
            if store_id is None:
                raise Refused(ErrorCode.NOT_FOUND, f"no terminal {terminal_id}")
            held = topups.policy(tx, terminal_id)
            day = ingest_mod.store_calendar(tx, str(store_id[0]), self.settings)
        return {**held.to_doc(), "timezone": day.timezone, "day_starts": day.day_starts}

    def terminal_merchant(self, terminal_id: str) -> str:
        """The merchant of the till's store, as it goes down with every pull (a store without one: the chain's)."""
        with self.db.read() as tx:
            row = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
            return merchants.resolver(tx)(str(row[0]) if row else "")

    def put_topup_policy(self, terminal_id: str, policy: TopupPolicy, by: str) -> TopupPolicy:
        return self.db.transact(lambda tx: topups.put_policy(tx, terminal_id, policy, by, self.now()))

    # -- flash-drop pools (hq/pools.py) -----------------------------------------------------------

    def create_pool(self, pool_id: str, quantity: int, chunk: int | None = None) -> pools.PoolState:
        return self.db.transact(lambda tx: pools.create(tx, pool_id, quantity, self.now(), chunk))

    def close_pool(self, pool_id: str) -> bool:
        return self.db.transact(lambda tx: pools.close(tx, pool_id))

    def grant_pools(self, terminal_id: str) -> list[pools.Allocation]:
        """The till pulls: top up its allocations; its allocations of every open pool. A pull that needs no
        top-up (most of them) only reads."""
        with self.db.read() as tx:
            if not pools.wanted(tx, terminal_id):
                return pools.allocations(tx, terminal_id)
        return self.db.transact(lambda tx: pools.grant(tx, terminal_id, self.now()))

    def pool_state(self, pool_id: str) -> pools.PoolState:
        with self.db.read() as tx:
            return pools.state(tx, pool_id)

    # -- prepaid vouchers (hq/vouchers.py) ---------------------------------------------------------

    def issue_vouchers(
        self, terminal_id: str, spec: vouchers.IssueSpec, signer: tuple[str, Ed25519PrivateKey], by: str
    ) -> list[str]:
        """Sign vouchers into a till's stock (``signer``: head office's voucher key); their ids."""
        return self.db.transact(lambda tx: vouchers.issue(tx, signer, terminal_id, spec, by, self.now()))

    def put_voucher_offline_total(self, terminal_id: str, total: int, by: str) -> int:
        return self.db.transact(lambda tx: vouchers.put_offline_total(tx, terminal_id, total, by, self.now()))

    def voucher_stock(self, terminal_id: str) -> WireVoucherStock:
        with self.db.read() as tx:
            return vouchers.stock(tx, terminal_id)

    def confirm_voucher(self, terminal_id: str, request: VoucherConfirmRequest) -> dict[str, Any]:
        """Record a voucher's one use before a till approves it (``hq.errors.Refused`` when it may not)."""
        try:
            return self.db.transact(lambda tx: vouchers.confirm(tx, terminal_id, request, self.now()))
        except IntegrityFailed as exc:  # another till confirmed it at this very moment
            raise Refused(ErrorCode.VOUCHER_USED, "the voucher was used") from exc

    def voucher(self, voucher_id: str) -> dict[str, Any]:
        with self.db.read() as tx:
            return vouchers.report(tx, voucher_id)

    def vouchers(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return vouchers.listing(tx, terminal_id)

    # -- gift cards (hq/giftcards.py, docs/giftcards.md) ---------------------------------------------

    def gift_terms(self) -> WireGiftTerms:
        with self.db.read() as tx:
            return giftcards.wire_terms(tx)

    def put_gift_terms(self, wanted: gc.Terms, by: str) -> gc.Terms:
        return self.db.transact(lambda tx: giftcards.put_terms(tx, wanted, by, self.now()))

    def confirm_gift(self, terminal_id: str, request: GiftConfirmRequest) -> dict[str, Any]:
        """Record a gift card payment before a till approves it (``hq.errors.Refused`` when it may not)."""
        try:
            return self.db.transact(lambda tx: giftcards.confirm(tx, self.settings, terminal_id, request, self.now()))
        except IntegrityFailed as exc:  # the same card message confirmed by another till at this very moment
            raise Refused(ErrorCode.REPLAYED_CARD, "this card message was already used in the chain") from exc

    def gift_card(self, card_id: str) -> dict[str, Any]:
        with self.db.read() as tx:
            return giftcards.report(tx, card_id)

    def gift_cards(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return giftcards.listing(tx, limit)

    def unblock_gift_card(self, card_id: str, by: str, reason: str) -> gc.GiftCard:
        return self.db.transact(lambda tx: giftcards.unblock(tx, card_id, by, reason, self.now()))

    def clear_gift_card(self, card_id: str, by: str, reason: str) -> gc.GiftCard:
        return self.db.transact(lambda tx: giftcards.clear(tx, card_id, by, reason, self.now()))

    def import_gift_card(self, uid_hash: str, amount: int, by: str, source: str) -> gc.GiftCard:
        return self.db.transact(lambda tx: giftcards.import_card(tx, uid_hash, amount, by, source, self.now()))

    def attach_gift_card(self, card_id: str, member_id: str, by: str, reason: str) -> gc.GiftCard:
        return self.db.transact(lambda tx: giftholders.attach_by_staff(tx, card_id, member_id, by, reason, self.now()))

    def detach_gift_card(self, card_id: str, by: str, reason: str) -> str:
        return self.db.transact(lambda tx: giftholders.detach_by_staff(tx, card_id, by, reason))

    # -- journal --------------------------------------------------------------------------------

    # -- the rewards catalogue (hq/rewards.py, docs/rewards.md) -----------------------------------------

    def put_reward(self, doc: dict[str, Any], by: str = "") -> Reward:
        return self.db.transact(lambda tx: rewards.put(tx, doc, self.now(), by))

    def add_reward_codes(self, reward_id: str, codes: list[str], by: str = "") -> int:
        return self.db.transact(lambda tx: rewards.add_codes(tx, reward_id, codes, self.now(), by))

    def reward_catalogue(self, *, active_only: bool = False) -> list[rewards.Offered]:
        with self.db.read() as tx:
            return rewards.catalogue(tx, active_only=active_only)

    def buy_reward(self, member_id: str, reward_id: str, purchase_id: str) -> rewards.Purchase:
        return self.db.transact(lambda tx: rewards.buy(tx, member_id, reward_id, purchase_id, self.now()))

    def refund_reward(self, purchase_id: str, by: str = "") -> rewards.Purchase:
        return self.db.transact(lambda tx: rewards.refund(tx, purchase_id, self.now(), by))

    def reward_purchases(self, member_id: str) -> list[rewards.Purchase]:
        with self.db.read() as tx:
            return rewards.of_member(tx, member_id)

    def ingest(self, terminal_id: str, entries: list[WireEntry], clock: str | None = None) -> PushResponse:
        """Store a batch of one terminal's journal in one transaction and apply each new entry once.

        A duplicate (same terminal, seq and txn_id) is counted and skipped, so a retried batch
        gets the same answer and applies nothing twice. A conflicting entry raises
        ``SeqConflict`` (``TxnTaken`` when only another terminal's entry holds its txn_id) and the
        whole batch is rolled back: nothing stored is ever overwritten.
        """
        foreign = sorted({e.terminal_id for e in entries} - {terminal_id})
        if foreign:
            raise WrongTerminal(f"terminal {terminal_id} cannot push entries of {', '.join(foreign)}")

        def run(tx: Tx) -> PushResponse:
            received = self.now()
            reply = push.ingest(tx, self.settings, terminal_id, entries, received, clock)
            if reply.stored:
                reconcile.recheck_days(tx, terminal_id, reply.acked_seq, received)
            return reply

        try:
            try:
                return self.db.transact(run)
            except IntegrityFailed:
                pass  # only a concurrent push of the same txn_id by another terminal gets here: once more, it is seen
            try:
                return self.db.transact(run)  # (``TxnTaken`` now, naming the entry and the terminal)
            except IntegrityFailed as exc:
                raise SeqConflict(entries[0], []) from exc
        except TxnTaken as taken:  # the batch is rolled back; the holder is flagged in a transaction of its own
            refusal, now = taken, self.now()
            try:
                self.db.transact(lambda tx: contest(tx, refusal, now))
            except StorageFailed as exc:  # the till still hears txn_id_taken; the next refusal opens the item
                log.warning("could not open the txn_id_contested item of %s: %s", taken.txn_id, exc)
            raise
        except PushLimited as limited:
            self._note_limited(limited)
            raise

    def _note_limited(self, limited: PushLimited) -> None:
        """A request refused for the terminal's daily bound: counted for the fleet's metrics, and logged."""
        log.warning("%s", limited)
        try:
            self.db.transact(lambda tx: note_push_limited(tx, limited))
        except StorageFailed as exc:  # the till still hears push_limited
            log.warning("could not count the refusal of terminal %s: %s", limited.terminal_id, exc)

    def journal_state(self, terminal_id: str) -> JournalState:
        """Where head office holds this terminal's journal (a rebuilt till asks before it records anything)."""
        with self.db.read() as tx:
            acked, highest, gaps, lost = ingest_mod.journal_state(tx, terminal_id)
        return JournalState(acked_seq=acked, max_seq=highest, gaps=gaps, lost=lost)

    def report_lost(self, terminal_id: str, ranges: list[tuple[int, int]], reason: str) -> JournalState:
        """The till can never send these seqs: recorded, an item opened, the watermark moves on."""
        try:
            self.db.transact(
                lambda tx: ingest_mod.report_lost(tx, terminal_id, ranges, reason, self.now(), self.settings)
            )
        except PushLimited as limited:
            self._note_limited(limited)
            raise
        return self.journal_state(terminal_id)

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
        return {int(seq): Effect(effect) for seq, effect in rows}

    # -- changes feed and snapshot ----------------------------------------------------------------

    def changes(self, since: int, limit: int = 500) -> ChangesPage:
        """Everything changed after version ``since``, oldest first, at most ``limit`` rows."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows: list[tuple[int, str, Any]] = []
        with self.db.read() as tx:
            # Each table gives at most limit + 1 rows: enough to fill the page and to know if more remain.
            for attr, table, _key, kind, wire in FEED:
                cols = ", ".join(FEED_COLUMNS[attr])
                sql = f"SELECT {cols}, version, deleted FROM {table} WHERE version > ? ORDER BY version LIMIT ?"
                for row in tx.all(sql, [since, limit + 1]):
                    item = _tombstone(kind, row) if row[-1] else wire(row)
                    rows.append((int(row[-2]), "deleted" if row[-1] else attr, item))
            # Every held id, in the same read as the rows: a till that bootstrapped learns the holds the
            # snapshot's columns do not carry (docs/enrolment.md).
            held = [str(r[0]) for r in tx.all(f"SELECT member_id FROM members WHERE {HELD} ORDER BY member_id")]
        return _page(since, limit, rows).model_copy(update={"spend_held": held})

    def snapshot_info(self) -> SnapshotInfo:
        with self.db.read() as tx:
            version = tx.one("SELECT value FROM counters WHERE name = 'version'")
            counts = {
                attr: int(tx.all(f"SELECT COUNT(*) FROM {table} WHERE deleted = 0")[0][0]) for attr, table, *_ in FEED
            }
        assert version is not None
        return SnapshotInfo(version=int(version[0]), counts=counts)

    def snapshot_rows(self, kind: str, after: str, limit: int) -> dict[str, Any]:
        """Live rows of one kind with a key above ``after``, by key: a ``SnapshotPage`` as a plain dict
        (a million members are not worth a million model objects)."""
        if kind not in FEED_BY_KIND:
            raise KeyError(kind)
        _, table, key, _, _ = FEED_BY_KIND[kind]
        columns = SNAPSHOT_COLUMNS[kind]
        rows = self._read(
            f"SELECT {', '.join(columns)} FROM {table} WHERE deleted = 0 AND {key} > ? ORDER BY {key} LIMIT ?",
            [after, limit + 1],
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "kind": kind,
            "columns": list(columns),
            "rows": [list(r) for r in rows],
            "next": str(rows[-1][0]) if more else None,
        }

    def snapshot_page(self, kind: str, after: str = "", limit: int = 5000) -> SnapshotPage:
        return SnapshotPage.model_validate(self.snapshot_rows(kind, after, limit))

    # -- end of day and reconciliation ------------------------------------------------------------

    def eod(self, report: EodReport) -> EodResult:
        """Record and check a till's end-of-day report. Each report counts against the terminal's daily bound as
        an entry of its size (``push_limited`` beyond it, nothing kept): a report of a day head office holds none
        of is a new row, so a stolen credential naming made-up days would fill head office's disk otherwise."""
        now = self.now()

        def record(tx: Tx) -> EodResult:
            held = tx.one(f"SELECT 1 FROM terminals WHERE terminal_id = ?{tx.for_update}", [report.terminal_id])
            if held is None:
                raise UnknownTerminal(f"terminal {report.terminal_id} is not registered")
            size = len(report.model_dump_json().encode())
            ingest_mod.spend_push_budget(tx, self.settings, report.terminal_id, now, 1, size)
            return reconcile.record_eod(tx, report, now)

        try:
            return self.db.transact(record)
        except PushLimited as limited:
            self._note_limited(limited)
            raise

    def flag_clock(self, terminal_id: str, clock: str | None) -> None:
        """Check a terminal's reported clock outside a push (pulls, end of day)."""
        now = self.now()
        offset = ingest_mod.measure_clock(clock, now)
        store_id = self.store_of(terminal_id)
        if offset is not None and abs(offset) > self.settings.clock_skew and store_id is not None:
            with self.db.write() as tx:
                calendar = ingest_mod.store_calendar(tx, store_id, self.settings)
                item = ingest_mod.clock_item(terminal_id, offset, now, self.settings, calendar)
                ingest_mod.save_items(tx, store_id, terminal_id, [item] if item else [], now)
        if offset is not None:
            self.touch(terminal_id, offset)

    def items(self, **filters: Any) -> list[ReconItem]:
        with self.db.read() as tx:
            return reconcile.items(tx, **filters)

    def item_page(
        self, *, after: str | None = None, limit: int = 100, **filters: str | None
    ) -> tuple[list[ReconItem], str | None]:
        """A page of items and the next page's cursor (``reconcile.BadCursor`` for one not given here)."""
        with self.db.read() as tx:
            return reconcile.item_page(tx, after=after, limit=limit, **filters)

    def item_groups(self, *, after: str | None = None, limit: int = 100, **filters: str | None) -> GroupPage:
        with self.db.read() as tx:
            return reconcile.group_page(tx, after=after, limit=limit, **filters)

    def item_summary(self, **filters: str | None) -> dict[str, dict[str, int]]:
        with self.db.read() as tx:
            return reconcile.summary(tx, **filters)

    def settle_group(self, terminal_id: str, day: str, reason: str, by: str, note: str) -> int:
        return self.db.transact(lambda tx: reconcile.settle_group(tx, terminal_id, day, reason, by, note, self.now()))

    # -- stores' business days, blocking ---------------------------------------------------------

    def set_store(self, store_id: str, timezone: str, day_starts: str = "00:00") -> dict[str, str]:
        """Set a store's time zone and business-day cut-off (``businessday.BadCalendar`` if unusable).
        Entries already filed keep their day; new ones are filed by it."""
        day = businessday.calendar(timezone, day_starts)
        now = self.now()
        with self.db.write() as tx:
            tx.run(
                "INSERT INTO stores (store_id, timezone, day_starts, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (store_id) DO UPDATE SET timezone = excluded.timezone, "
                "day_starts = excluded.day_starts, updated_at = excluded.updated_at",
                [store_id, day.timezone, day.day_starts, now],
            )
        return {"store_id": store_id, "timezone": day.timezone, "day_starts": day.day_starts, "updated_at": now}

    def keep_chain_timezone(self) -> None:
        """Keep the zone head office serves with (``hq serve --timezone``): the business day of every store
        without a calendar of its own, which the commands run beside it read (``follow_chain_timezone``)."""
        self.db.transact(
            lambda tx: tx.run(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [CHAIN_TIMEZONE, self.settings.timezone],
            )
        )

    def follow_chain_timezone(self) -> None:
        """Take the zone head office last served with as this store's (a command's), when one was kept."""
        with self.db.read() as tx:
            row = tx.one("SELECT value FROM settings WHERE name = ?", [CHAIN_TIMEZONE])
        if row is not None:
            self.settings = dataclasses.replace(self.settings, timezone=str(row[0]))

    def stores(self) -> list[dict[str, str | None]]:
        """Every store with terminals or a calendar, and the calendar its entries are filed by."""
        with self.db.read() as tx:
            set_up = {
                str(r[0]): (str(r[1]), str(r[2]), str(r[3]))
                for r in tx.all("SELECT store_id, timezone, day_starts, updated_at FROM stores")
            }
            known = {str(r[0]) for r in tx.all("SELECT DISTINCT store_id FROM terminals")} | set(set_up)
        default = (self.settings.timezone, "00:00", "")
        return [
            {
                "store_id": s,
                "timezone": set_up.get(s, default)[0],
                "day_starts": set_up.get(s, default)[1],
                "updated_at": set_up.get(s, default)[2] or None,
            }
            for s in sorted(known)
        ]

    def set_blocked(self, kind: str, subject: str, blocked: bool, by: str, reason: str) -> dict[str, Any]:
        """Block or unblock a member or a card (``kind``: member, card): tills pull it; entries head office
        holds were made after the block (by its own time) break ``member_blocked`` / ``card_blocked``.
        Who and why are kept. Raises LookupError for an unknown one, ValueError without who or why."""
        now = self.now()
        return self.db.transact(lambda tx: set_blocked(tx, kind, subject, blocked, by, reason, now))

    def settle(self, item_id: str, by: str, note: str) -> ReconItem:
        return self.db.transact(lambda tx: reconcile.settle(tx, item_id, by, note, self.now()))

    def quarantined(self) -> list[dict[str, Any]]:
        """Entries held in quarantine (changing no balance), with the reasons that hold them."""
        with self.db.read() as tx:
            return quarantine.held(tx)

    def release(self, txn_id: str, by: str, note: str) -> str:
        """Apply a quarantined entry (an administrator's decision, with who and why); its new effect."""

        def run(tx: Tx) -> str:
            effect = quarantine.release(tx, txn_id, by, note, self.now(), self.settings.card_keys)
            rewards.released(tx, txn_id, self.now())  # a sale's rewards count and are handed out once applied
            return effect

        return self.db.transact(run)

    def reject(self, txn_id: str, by: str, note: str) -> str:
        return self.db.transact(lambda tx: quarantine.reject(tx, txn_id, by, note, self.now()))

    def report(self, **filters: Any) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return reconcile.report(tx, **filters)

    def receipt_sales(
        self, *, digest: str | None = None, number: str | None = None, store_id: str | None = None, limit: int = 100
    ) -> list[receipts.ReceiptSale]:
        """The sales read from a printed receipt, by its digest (or a prefix) and/or its printed number, in
        the order head office received them (ValueError without either)."""
        with self.db.read() as tx:
            return receipts.find(tx, digest=digest, number=number, store_id=store_id, limit=limit)


# -- helpers inside write transactions ------------------------------------------------------------


def _check_store(tx: Tx, terminal_id: str, store_id: str) -> None:
    held = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
    if held is not None and held[0] != store_id:
        raise ValueError(f"terminal {terminal_id} belongs to store {held[0]}, not {store_id}")


def set_blocked(tx: Tx, kind: str, subject: str, blocked: bool, by: str, reason: str, now: str) -> dict[str, Any]:
    """``HqStore.set_blocked`` in the caller's transaction (the back office records it in its audit log there)."""
    if not by.strip() or not reason.strip():
        raise ValueError("blocking or unblocking needs who and why")
    table, key = {"member": ("members", "member_id"), "card": ("cards", "uid_hash")}[kind]
    status = "blocked" if blocked else "active"
    owner = "member_id" if kind == "card" else key
    held = tx.one(
        f"SELECT status, blocked_at, {owner} FROM {table} WHERE {key} = ? AND deleted = 0{tx.for_update}", [subject]
    )
    if held is None:
        raise LookupError(f"no {kind} {subject}")
    changed = str(held[0]) != status
    if changed:
        tx.run(
            f"UPDATE {table} SET status = ?, blocked_at = ? WHERE {key} = ?",
            [status, _blocked_at(held[1], held[0], status, now), subject],
        )
        bump_versions(tx, table, key, [subject])
    tx.run(
        "INSERT INTO status_changes (kind, subject, status, by_whom, reason, changed_at) VALUES (?, ?, ?, ?, ?, ?)",
        [kind, subject, status, by, reason, now],
    )
    audit.append(tx, by, f"{'block' if blocked else 'unblock'}_{kind}", subject, reason, {"member_id": str(held[2])})
    return {"kind": kind, "subject": subject, "status": status, "changed": changed, "by": by, "at": now}


def _blocked_at(held_at: str | None, held_status: Any, status: str, now: str) -> str | None:
    if status != "blocked":
        return None
    return held_at if held_status == "blocked" and held_at else now


def _write_row(
    tx: Tx, table: str, key: str, key_value: str, values: dict[str, Any], held: tuple[Any, ...] | None
) -> bool:
    """Upsert a row (its version is bumped by the caller, last); False if nothing changed."""
    names = list(values)
    if held is not None and tuple(held[: len(names)]) == tuple(values.values()):
        return False
    columns = [key, *names, "version"]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names)
    tx.run(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
        [key_value, *values.values(), 0],
    )
    return True


def fleet_row(info: dict[str, Any], report: tuple[str, str] | None, now: str) -> dict[str, Any]:
    """One terminal's line of the fleet view: its journal position, its last health report, and the
    ages an alert needs (seconds since it was last heard of, age of its oldest unpushed entry)."""
    at = parse_time(now)
    row = dict(info)
    row["silent_seconds"] = _age(at, info.get("last_seen"))
    if report is None:
        row.update(
            version=None,
            protocol=None,
            readers=[],
            pending=None,
            backlog_seconds=None,
            free_disk_bytes=None,
            last_error=None,
            uptime_seconds=None,
            loop_crashes=None,
            reported_at=None,
        )
        return row
    reported_at, body = report
    health = TillHealth.model_validate_json(body)
    row.update(
        version=health.version,
        protocol=health.protocol,
        readers=[r.model_dump() for r in health.readers],
        pending=health.pending,
        backlog_seconds=_age(at, health.oldest_pending_at, info.get("clock_offset")) if health.pending else 0,
        free_disk_bytes=health.free_disk_bytes,
        last_error=health.last_error,
        uptime_seconds=_age(at, health.started_at, info.get("clock_offset")),
        loop_crashes=health.loop_crashes,
        reported_at=reported_at,
    )
    return row


def _age(now: datetime | None, then: str | None, offset: float | None = None) -> float | None:
    """Seconds from ``then`` (a till's time when ``offset`` is its clock offset) to head office's ``now``."""
    when = parse_time(then or "")
    if now is None or when is None:
        return None
    try:
        return round((now - when).total_seconds() + float(offset or 0.0), 1)
    except OverflowError:
        return None


def read_key_file(path: Path | None, option: str, parse: Callable[[bytes, Path], bytes]) -> bytes | None:
    """The key ``parse`` reads from the file at ``path`` (None: none given); ``KeyFileInvalid`` naming ``option``
    when the file cannot be read or holds no valid key."""
    if path is None:
        return None
    try:
        return parse(path.read_bytes(), path)
    except OSError as exc:
        raise KeyFileInvalid(f"{option}: {path} cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise KeyFileInvalid(f"{option}: {path}: {exc}") from exc


def open_store(
    db: str,
    *,
    clock_skew: float = 300.0,
    timezone: str = "UTC",
    write_off_points: int = 0,
    write_off_stored_value: int = 0,
    sun_key_file: Path | None = None,
    card_key_file: Path | None = None,
    trust_pos: bool = False,
    push_entries_per_day: int = PUSH_ENTRIES_PER_DAY,
    push_bytes_per_day: int = PUSH_BYTES_PER_DAY,
    backup: bool = True,
    migration_lock_wait: float = MIGRATION_LOCK_WAIT_S,
    upgrade: bool = True,
) -> HqStore:
    """Head office's store with its settings; the card keys let it verify SUN taps (docs/security.md). A key file
    that cannot be read or holds no valid key raises ``KeyFileInvalid``."""
    sun = read_key_file(sun_key_file, "--sun-key-file", lambda data, _: parse_master_key(data))
    card_key = read_key_file(card_key_file, "--card-key-file", check_card_key)
    keys = CardKeys(
        sun,
        (lambda uid: card_uid_hash(card_key, uid)) if card_key else None,
        key_check(card_key) if card_key else None,
    )
    return HqStore(
        db,
        Settings(
            clock_skew=clock_skew,
            timezone=timezone,
            write_off_points=write_off_points,
            write_off_stored_value=write_off_stored_value,
            card_keys=keys,
            spend_needs_proof=not trust_pos,
            push_entries_per_day=push_entries_per_day,
            push_bytes_per_day=push_bytes_per_day,
        ),
        backup=backup,
        migration_lock_wait=migration_lock_wait,
        upgrade=upgrade,
    )
