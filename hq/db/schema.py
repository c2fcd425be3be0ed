"""Head office's schema, its forward-only migrations, and ``open_db`` choosing the engine by URL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from hq.db import figures
from hq.db.engine import Db, Tx, utc_now
from hq.db.sqlite import SqliteDb
from hq.errors import LockWaited, MigrationBlocked, NewerSchema, StorageFailed

log = logging.getLogger("tillpoint.hq")


def open_db(url: str, *, pool_size: int = 16) -> Db:
    """``postgresql://...`` (or ``postgres://``) opens PostgreSQL; anything else is a SQLite file path."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from hq.db.pg import PgDb  # psycopg is the optional `postgres` extra: loaded only for PostgreSQL
        except ImportError as exc:
            raise StorageFailed(
                "head office on PostgreSQL needs its driver: pip install 'tillpoint[postgres]' (the Debian package "
                f"carries it, and needs libpq5) ({exc})"
            ) from exc
        return PgDb(url, pool_size=pool_size)
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")
    return SqliteDb(url)


# -- schema ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OnPostgres:
    """A migration statement for PostgreSQL only: a storage setting SQLite has no counterpart for."""

    sql: str


Statement = str | OnPostgres


def run_statement(tx: Tx, statement: Statement) -> None:
    """One statement of a migration, on the engine it is for."""
    if isinstance(statement, OnPostgres):
        if tx.dialect != "postgres":
            return
        statement = statement.sql
    tx.run(statement)


# m001 is the walking skeleton's schema, written so that it is a no-op on a database that
# sqlite-utils created for it; m002 widens it for chains.
#
# A migration that fills a table from rows of tables it did not make locks those first on PostgreSQL
# (``LOCK TABLE``: SHARE, or ACCESS EXCLUSIVE for a table it drops): an earlier release's head office may still
# be serving (a rolling upgrade), and a row it wrote after the copy read its tables would be missing from what
# the copy made, or gone with a table dropped. Locked, its writes wait, and are refused (storage_unavailable,
# sent again) until the migration commits. SQLite's migration holds the one write lock anyway.
MIGRATIONS: list[tuple[str, list[Statement]]] = [
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
    # Closing the loop (hq/stats.py, hq/segments.py): each member's profile and attributes, and the statistics
    # kept at ingest in the sale's own transaction. Visits and spend are kept per business day and store (and
    # spend per category per day), so any window (30/90/365 days, or a campaign's) is a sum over days: exact,
    # with no decay job. A sale adds one visit and its net spend to the day it was made on; a void takes both
    # back on that day, a refund takes back what it returned. member_totals holds the lifetime figures.
    (
        "m008_member_stats",
        [
            "CREATE TABLE member_profiles (member_id TEXT PRIMARY KEY, birthday TEXT, birth_md TEXT, "
            "updated_at TEXT NOT NULL)",
            "CREATE INDEX idx_member_profiles_birth_md ON member_profiles (birth_md)",
            "CREATE TABLE member_attributes (member_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (member_id, name))",
            "CREATE INDEX idx_member_attributes ON member_attributes (name, value)",
            "ALTER TABLE consents ADD COLUMN withdrawn_at TEXT",
            "CREATE TABLE member_totals (member_id TEXT PRIMARY KEY, first_visit TEXT, last_visit TEXT, "
            "visits BIGINT NOT NULL DEFAULT 0, spend BIGINT NOT NULL DEFAULT 0, "
            "coupons_redeemed BIGINT NOT NULL DEFAULT 0, updated_at TEXT NOT NULL)",
            "CREATE INDEX idx_member_totals_last_visit ON member_totals (last_visit)",
            "CREATE TABLE member_days (member_id TEXT NOT NULL, day TEXT NOT NULL, store_id TEXT NOT NULL, "
            "visits BIGINT NOT NULL, spend BIGINT NOT NULL, PRIMARY KEY (member_id, day, store_id))",
            "CREATE INDEX idx_member_days_day ON member_days (day, member_id)",
            "CREATE TABLE member_category_days (member_id TEXT NOT NULL, day TEXT NOT NULL, category TEXT NOT NULL, "
            "spend BIGINT NOT NULL, quantity BIGINT NOT NULL, PRIMARY KEY (member_id, day, category))",
            "CREATE INDEX idx_member_category_days ON member_category_days (category, day)",
        ],
    ),
    # The profile attributes a chain collects (hq/profiles.py): allowed values (a JSON list) or a pattern a
    # value must match whole; seeded with the defaults when this migration is applied. Statistics are
    # found by member id, and a merge or a visit taken back reads a member's counted sales.
    (
        "m009_profile_attributes",
        [
            "CREATE TABLE profile_attributes (name TEXT PRIMARY KEY, label TEXT NOT NULL, allowed TEXT NOT NULL, "
            "pattern TEXT, updated_at TEXT NOT NULL)",
            "CREATE INDEX idx_member_category_days_member ON member_category_days (member_id, category)",
        ],
    ),
    # Segments as data (hq/segments.py, docs/segments.md): each definition as canonical JSON; version counts
    # its changes.
    (
        "m010_segments",
        [
            "CREATE TABLE segments (segment_id TEXT PRIMARY KEY, name TEXT NOT NULL, definition TEXT NOT NULL, "
            "created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version BIGINT NOT NULL)",
        ],
    ),
    # Campaigns (hq/campaigns.py, docs/campaigns.md): each campaign's spec as canonical JSON; one row per run of
    # its schedule; one row per member and occasion it was decided for (the arm: a variant, or the control
    # group), which is what makes issuing idempotent and what measurement reads. The chain-wide holdout's
    # periods; the changes version each till last pulled from (what reached the tills).
    (
        "m011_campaigns",
        [
            "CREATE TABLE campaigns (campaign_id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, "
            "state TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
            "version BIGINT NOT NULL)",
            "CREATE TABLE campaign_runs (campaign_id TEXT NOT NULL, run_key TEXT NOT NULL, day TEXT NOT NULL, "
            "started_at TEXT NOT NULL, finished_at TEXT, counts TEXT NOT NULL, PRIMARY KEY (campaign_id, run_key))",
            "CREATE TABLE campaign_members (campaign_id TEXT NOT NULL, member_id TEXT NOT NULL, occasion TEXT NOT NULL, "
            "arm TEXT NOT NULL, coupon_id TEXT, day TEXT NOT NULL, until_day TEXT NOT NULL, issued_at TEXT NOT NULL, "
            "version BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (campaign_id, member_id, occasion))",
            "CREATE INDEX idx_campaign_members_member ON campaign_members (member_id, day)",
            "CREATE INDEX idx_campaign_members_coupon ON campaign_members (coupon_id)",
            "CREATE TABLE holdout_periods (period_id TEXT PRIMARY KEY, starts TEXT NOT NULL, ends TEXT NOT NULL, "
            "share_bp INTEGER NOT NULL, seed TEXT NOT NULL)",
            "ALTER TABLE terminals ADD COLUMN pulled_version BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    # Flash-drop quantity pools (hq/pools.py, docs/loyalty.md): a chain-wide quantity, each till's allocation
    # (allowed: granted in all, never more than the quantity summed over tills; used: its redemptions, net of
    # give-backs; blocked: it once redeemed beyond its allowance, and gets no more), and every redemption counted
    # once, with the till that made it.
    (
        "m012_pools",
        [
            "CREATE TABLE pools (pool_id TEXT PRIMARY KEY, quantity BIGINT NOT NULL, chunk BIGINT NOT NULL, "
            "used BIGINT NOT NULL DEFAULT 0, created_at TEXT NOT NULL, closed INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE pool_allocations (pool_id TEXT NOT NULL, terminal_id TEXT NOT NULL, allowed BIGINT NOT NULL, "
            "used BIGINT NOT NULL, updated_at TEXT NOT NULL, blocked INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (pool_id, terminal_id))",
            "CREATE INDEX idx_pool_allocations_terminal ON pool_allocations (terminal_id)",
            "CREATE TABLE pool_uses (txn_id TEXT NOT NULL, coupon_id TEXT NOT NULL, pool_id TEXT NOT NULL, "
            "terminal_id TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (txn_id, coupon_id))",
        ],
    ),
    # Receipts (hq/receipts.py, docs/receipts.md): each sale read from a POS's printed receipt, by the
    # receipt's digest and printed number, the POS and the store; filled from the journal when applied.
    (
        "m013_receipts",
        [
            "CREATE TABLE receipt_sales (txn_id TEXT PRIMARY KEY, receipt_digest TEXT NOT NULL, receipt_number TEXT, "
            "pos_id TEXT, store_id TEXT NOT NULL, terminal_id TEXT NOT NULL, seq BIGINT NOT NULL, day TEXT NOT NULL, "
            "received_at TEXT NOT NULL)",
            "CREATE INDEX idx_receipt_sales_digest ON receipt_sales (receipt_digest, received_at)",
            "CREATE INDEX idx_receipt_sales_number ON receipt_sales (receipt_number, store_id)",
        ],
    ),
    # The chain's scale (docs/performance.md, bench/bench_scale.py): every statistics row is written at ingest,
    # so an index no query reads costs every sale. Members' statistics are found through the primary keys
    # (member_id first); no query orders or filters on the last visit or on a category's days.
    (
        "m014_scale_indexes",
        [
            "DROP INDEX IF EXISTS idx_member_totals_last_visit",
            "DROP INDEX IF EXISTS idx_member_category_days_member",
            "DROP INDEX IF EXISTS idx_member_category_days",
        ],
    ),
    # The member's wallet (hq/wallet/, docs/wallet.md): each member's contacts (an email address or a phone
    # number, one member each) that sign-in codes go to; each one-time code as a digest with its expiry, its
    # wrong attempts and its use; each session as the digest of its cookie's token. Self-contained: it reads
    # no table of another migration.
    (
        "m015_wallet",
        [
            "CREATE TABLE member_contacts (kind TEXT NOT NULL, contact TEXT NOT NULL, member_id TEXT NOT NULL, "
            "created_at TEXT NOT NULL, set_by TEXT NOT NULL, PRIMARY KEY (kind, contact))",
            "CREATE INDEX idx_member_contacts_member ON member_contacts (member_id)",
            "CREATE TABLE wallet_codes (code_id TEXT PRIMARY KEY, contact TEXT NOT NULL, member_id TEXT, "
            "code_sha256 TEXT NOT NULL, source TEXT NOT NULL, created_at BIGINT NOT NULL, "
            "expires_at BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, used_at BIGINT)",
            "CREATE INDEX idx_wallet_codes_contact ON wallet_codes (contact, created_at)",
            "CREATE INDEX idx_wallet_codes_source ON wallet_codes (source, created_at)",
            "CREATE TABLE wallet_sessions (token_sha256 TEXT PRIMARY KEY, member_id TEXT NOT NULL, via TEXT NOT NULL, "
            "created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, ended_at BIGINT)",
            "CREATE INDEX idx_wallet_sessions_member ON wallet_sessions (member_id)",
        ],
    ),
    # Passing a coupon on (hq/wallet/gifts.py, docs/wallet.md): each gift link as the digest of its token, the
    # coupon it holds (and that coupon's document when offered, to give back), the giver, the window, and how
    # it ended (claimed by a receiver into a new coupon, or returned). At most one live gift a coupon.
    (
        "m016_gifts",
        [
            "CREATE TABLE gifts (token_sha256 TEXT PRIMARY KEY, coupon_id TEXT NOT NULL, giver TEXT NOT NULL, "
            "body TEXT NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
            "receiver TEXT, new_coupon_id TEXT, ended_at BIGINT)",
            "CREATE UNIQUE INDEX idx_gifts_live ON gifts (coupon_id) WHERE state = 'offered'",
            "CREATE INDEX idx_gifts_due ON gifts (state, expires_at)",
            "CREATE INDEX idx_gifts_giver ON gifts (giver)",
            "CREATE INDEX idx_gifts_receiver ON gifts (receiver)",
        ],
    ),
    # Check-ins (hq/checkins.py, docs/checkin.md): one row a member, store and store's business day, whether it
    # came from the wallet's scan of a till's code or from a tap on a door reader (the key is what makes a visit
    # and its reward once a day); rewarded_at is set in the transaction that decides the check-in campaigns for
    # it (NULL: a door tap ingest recorded, still to decide). A check-in campaign counts its rewards per store
    # and day by occasion.
    (
        "m017_checkin",
        [
            "CREATE TABLE checkins (member_id TEXT NOT NULL, store_id TEXT NOT NULL, day TEXT NOT NULL, "
            "at TEXT NOT NULL, terminal_id TEXT NOT NULL, source TEXT NOT NULL, txn_id TEXT, rewarded_at TEXT, "
            "PRIMARY KEY (member_id, store_id, day))",
            "CREATE INDEX idx_checkins_pending ON checkins (day) WHERE rewarded_at IS NULL",
            "CREATE INDEX idx_checkins_store_day ON checkins (store_id, day)",
            "CREATE INDEX idx_campaign_members_occasion ON campaign_members (campaign_id, occasion)",
        ],
    ),
    # The back office (hq/backoffice/, docs/backoffice.md): staff accounts (scrypt hashes), their sessions (the
    # digest of the cookie's token, a CSRF token each) and failed sign-ins by account and address; the audit log,
    # each record chained to the one before by its hash, and its head (one row, locked by each append);
    # four-eyes requests; the adjustments they applied (hq/adjustments.py); members found by name.
    (
        "m019_backoffice",
        [
            "CREATE TABLE staff (staff_id TEXT PRIMARY KEY, name TEXT NOT NULL, password TEXT NOT NULL, "
            "role TEXT NOT NULL, stores TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, "
            "updated_at TEXT NOT NULL)",
            "CREATE TABLE staff_sessions (token_sha256 TEXT PRIMARY KEY, staff_id TEXT NOT NULL, csrf TEXT NOT NULL, "
            "created_at BIGINT NOT NULL, seen_at BIGINT NOT NULL)",
            "CREATE INDEX idx_staff_sessions_staff ON staff_sessions (staff_id)",
            "CREATE TABLE staff_signin_failures (subject TEXT NOT NULL, at BIGINT NOT NULL)",
            "CREATE INDEX idx_staff_signin_failures ON staff_signin_failures (subject, at)",
            "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, "
            "action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
            "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{'0' * 64}')",
            "CREATE TABLE approvals (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, "
            "stores TEXT NOT NULL, payload TEXT NOT NULL, reason TEXT NOT NULL, requested_by TEXT NOT NULL, "
            "requested_at TEXT NOT NULL, state TEXT NOT NULL, decided_by TEXT, decided_at TEXT, note TEXT, result TEXT)",
            "CREATE INDEX idx_approvals_state ON approvals (state, requested_at)",
            "CREATE TABLE adjustments (adjustment_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, points BIGINT NOT NULL, "
            "stored_value BIGINT NOT NULL, points_after BIGINT NOT NULL, stored_value_after BIGINT NOT NULL, "
            "reason TEXT NOT NULL, requested_by TEXT NOT NULL, approved_by TEXT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE INDEX idx_adjustments_member ON adjustments (member_id)",
            "CREATE INDEX idx_members_name ON members (lower(display_name))",
        ],
    ),
    # Rolled windows (hq/stats.py, docs/segments.md): each member's visits, spend and spend of every category
    # together over the last 30, 60, 90, 180 and 365 days, and the day of the last visit, kept beside the lifetime figures as of one business
    # day (stats_windows.day), with each category's spend over the same windows: a segment over those windows
    # on that day reads one row a member instead of a row a visit day. NULL day: not built yet (segments read
    # the daily rows). Ingest adds to them in the sale's transaction; rolling to the next day adds the day
    # that enters and takes away each day that leaves, from the daily rows.
    (
        "m020_windows",
        [
            "ALTER TABLE member_totals ADD COLUMN last_day TEXT",
            *[
                f"ALTER TABLE member_totals ADD COLUMN {kind}{days} BIGINT NOT NULL DEFAULT 0"
                for days in (30, 60, 90, 180, 365)
                for kind in ("visits_", "spend_", "category_spend_")
            ],
            "CREATE TABLE member_category_windows (member_id TEXT NOT NULL, category TEXT NOT NULL, "
            "spend_30 BIGINT NOT NULL DEFAULT 0, spend_60 BIGINT NOT NULL DEFAULT 0, "
            "spend_90 BIGINT NOT NULL DEFAULT 0, spend_180 BIGINT NOT NULL DEFAULT 0, "
            "spend_365 BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (member_id, category))",
            "CREATE TABLE stats_windows (id INTEGER PRIMARY KEY, day TEXT)",
            "INSERT INTO stats_windows (id, day) VALUES (1, NULL)",
        ],
    ),
    # Top-ups sold at tills (hq/topups.py, docs/stored-value.md): each till's policy, set by an administrator
    # and sent down with every pull (a till with no row is not enabled); the day's tallies are read from the
    # journal, so its top-ups and their voids are indexed by terminal and business day.
    (
        "m021_topups",
        [
            "CREATE TABLE till_topup_policies (terminal_id TEXT PRIMARY KEY, enabled INTEGER NOT NULL, "
            "per_transaction BIGINT NOT NULL, per_day BIGINT NOT NULL, per_member_day BIGINT NOT NULL, "
            "offline_total BIGINT NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)",
            "CREATE INDEX idx_journal_topups ON journal (terminal_id, day) WHERE kind IN ('till_topup', 'topup_void')",
        ],
    ),
    # Merchants and the ledger (hq/merchants.py, hq/ledger.py, docs/ledger.md): every store belongs to a
    # merchant (the chain's own, ``chain``, unless set); a coupon to one merchant or (NULL) to the chain. Each
    # balance change posts one ledger transaction whose postings sum to zero per unit; points live in lots of
    # the merchant that issued them. Balances held before the ledger are opening transactions: the points a
    # lot of the chain's that never expires (or an overdraft if negative), the stored value against the float.
    (
        "m022_ledger",
        [
            OnPostgres("LOCK TABLE members IN SHARE MODE"),
            "CREATE TABLE merchants (merchant_id TEXT PRIMARY KEY, name TEXT NOT NULL, cost_per_100 BIGINT NOT NULL, "
            "reimburse_per_100 BIGINT NOT NULL, created_at TEXT NOT NULL)",
            "INSERT INTO merchants (merchant_id, name, cost_per_100, reimburse_per_100, created_at) "
            "VALUES ('chain', 'The chain', 0, 0, '')",
            "ALTER TABLE stores ADD COLUMN merchant_id TEXT NOT NULL DEFAULT 'chain'",
            "ALTER TABLE coupons ADD COLUMN merchant_id TEXT",
            "CREATE TABLE ledger_txns (ledger_txn_id TEXT PRIMARY KEY, kind TEXT NOT NULL, member_id TEXT, "
            "merchant_id TEXT NOT NULL, day TEXT NOT NULL, period TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE INDEX idx_ledger_txns_member ON ledger_txns (member_id, kind)",
            "CREATE INDEX idx_ledger_txns_period ON ledger_txns (period, merchant_id)",
            "CREATE TABLE ledger_postings (ledger_txn_id TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL, "
            "owner TEXT NOT NULL, unit TEXT NOT NULL, amount BIGINT NOT NULL, PRIMARY KEY (ledger_txn_id, n))",
            "CREATE INDEX idx_ledger_postings_account ON ledger_postings (owner, kind)",
            "CREATE TABLE ledger_lots (lot_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, merchant_id TEXT NOT NULL, "
            "points BIGINT NOT NULL, remaining BIGINT NOT NULL, earned_at TEXT NOT NULL, earned_day TEXT NOT NULL, "
            "expires_at TEXT)",
            "CREATE INDEX idx_ledger_lots_member ON ledger_lots (member_id) WHERE remaining > 0",
            "CREATE INDEX idx_ledger_lots_expiry ON ledger_lots (expires_at) WHERE remaining > 0",
            "CREATE TABLE ledger_lot_uses (ledger_txn_id TEXT NOT NULL, purpose TEXT NOT NULL, lot_id TEXT NOT NULL, "
            "merchant_id TEXT NOT NULL, points BIGINT NOT NULL, against TEXT, "
            "PRIMARY KEY (ledger_txn_id, purpose, lot_id))",
            "CREATE INDEX idx_ledger_lot_uses_against ON ledger_lot_uses (against) WHERE against IS NOT NULL",
            "INSERT INTO ledger_txns (ledger_txn_id, kind, member_id, merchant_id, day, period, at) "
            "SELECT 'open:' || member_id, 'opening', member_id, 'chain', '', '', '' FROM members "
            "WHERE points <> 0 OR stored_value <> 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'open:' || member_id, 0, 'member_points', member_id, 'points', points FROM members WHERE points <> 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'open:' || member_id, 1, 'merchant_issued', 'chain', 'points', -points FROM members WHERE points > 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'open:' || member_id, 1, 'member_overdraft', member_id, 'points', -points FROM members "
            "WHERE points < 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'open:' || member_id, 2, 'member_value', member_id, 'value', stored_value FROM members "
            "WHERE stored_value <> 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'open:' || member_id, 3, 'chain_float', '', 'value', -stored_value FROM members "
            "WHERE stored_value <> 0",
            "INSERT INTO ledger_lots (lot_id, member_id, merchant_id, points, remaining, earned_at, earned_day, "
            "expires_at) SELECT 'open:' || member_id, member_id, 'chain', points, points, '', '', NULL FROM members "
            "WHERE points > 0",
        ],
    ),
    # The back office's reports (hq/reports.py, docs/reports.md) read the ledger by business day: points issued by
    # the day their lots were earned, redeemed and expired by the day of their transaction.
    (
        "m024_reports",
        [
            "CREATE INDEX idx_ledger_lots_earned_day ON ledger_lots (earned_day)",
            "CREATE INDEX idx_ledger_txns_day ON ledger_txns (day, kind)",
        ],
    ),
    # Settlement periods (hq/periods.py, hq/settlement.py, docs/settlement.md): the calendar (every period up to
    # ``closed_through`` is closed; a month each, or ``months`` from each ``anchor`` on), each close with the
    # merchants' names and rates it froze, and the closed period a late entry belongs to when it was filed under
    # the first open one (``moved_from``).
    (
        "m026_periods",
        [
            "CREATE TABLE ledger_calendar (id INTEGER PRIMARY KEY, closed_through TEXT)",
            "INSERT INTO ledger_calendar (id, closed_through) VALUES (1, NULL)",
            "CREATE TABLE ledger_closes (period TEXT PRIMARY KEY, closed_at TEXT NOT NULL, closed_by TEXT NOT NULL, "
            "reason TEXT NOT NULL, rates TEXT NOT NULL)",
            "CREATE TABLE ledger_lengths (anchor TEXT PRIMARY KEY, months INTEGER NOT NULL)",
            "ALTER TABLE ledger_txns ADD COLUMN moved_from TEXT",
            "CREATE INDEX idx_ledger_txns_moved ON ledger_txns (period, merchant_id) WHERE moved_from IS NOT NULL",
            # the merchant an entry named on the wire (NULL: an older till, or one that did not know it yet)
            "ALTER TABLE journal ADD COLUMN merchant_id TEXT",
        ],
    ),
    # Prepaid vouchers (hq/vouchers.py, docs/stored-value.md "Vouchers"): every code head office issued, with
    # the till whose stock it is and its state; the states of sold vouchers, versioned for the changes feed
    # (stock never leaves head office but to its own till); one use per voucher (a redemption or a refund)
    # under its primary key; each till's offline total of voucher redemptions.
    (
        "m027_vouchers",
        [
            "CREATE TABLE vouchers (voucher_id TEXT PRIMARY KEY, code TEXT NOT NULL, kind TEXT NOT NULL, "
            "value BIGINT NOT NULL, sku TEXT NOT NULL, expires_at BIGINT NOT NULL, terminal_id TEXT NOT NULL, "
            "issued_at TEXT NOT NULL, issued_by TEXT NOT NULL, state TEXT NOT NULL, sold_txn TEXT, "
            "sold_terminal TEXT, sold_store TEXT, sold_at TEXT, member_id TEXT)",
            "CREATE INDEX idx_vouchers_stock ON vouchers (terminal_id, state)",
            "CREATE TABLE voucher_states (voucher_id TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL, "
            "deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_voucher_states_version ON voucher_states (version)",
            "CREATE TABLE voucher_uses (voucher_id TEXT PRIMARY KEY, action TEXT NOT NULL, txn_id TEXT NOT NULL, "
            "terminal_id TEXT NOT NULL, used_at TEXT NOT NULL)",
            "CREATE TABLE voucher_tills (terminal_id TEXT PRIMARY KEY, offline_total BIGINT NOT NULL, "
            "updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)",
        ],
    ),
    # The rewards catalogue (hq/rewards.py, docs/rewards.md): each reward (its document also goes down to the
    # tills as the rule document ``reward:<id>``), the partner codes held in stock and handed out once, and
    # every purchase, in the wallet or at a till (a till's is keyed by its sale, once).
    (
        "m028_rewards",
        [
            "CREATE TABLE rewards (reward_id TEXT PRIMARY KEY, kind TEXT NOT NULL, points BIGINT NOT NULL, "
            "body TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE TABLE reward_codes (reward_id TEXT NOT NULL, code TEXT NOT NULL, purchase_id TEXT, "
            "added_at TEXT NOT NULL, PRIMARY KEY (reward_id, code))",
            "CREATE INDEX idx_reward_codes_free ON reward_codes (reward_id, code) WHERE purchase_id IS NULL",
            "CREATE TABLE reward_purchases (purchase_id TEXT PRIMARY KEY, reward_id TEXT NOT NULL, "
            "member_id TEXT NOT NULL, points BIGINT NOT NULL, channel TEXT NOT NULL, terminal_id TEXT, txn_id TEXT, "
            "coupon_id TEXT, code TEXT, created_at TEXT NOT NULL, refunded_at TEXT)",
            "CREATE UNIQUE INDEX idx_reward_purchases_txn ON reward_purchases (txn_id, reward_id)",
            "CREATE INDEX idx_reward_purchases_member ON reward_purchases (member_id, created_at)",
        ],
    ),
    # Merchant staff (docs/backoffice.md "Merchant staff"): a staff account may belong to one merchant
    # (NULL: the chain's own staff) and then reaches only that merchant's stores.
    (
        "m029_merchant_staff",
        [
            "ALTER TABLE staff ADD COLUMN merchant_id TEXT",
            "CREATE INDEX idx_staff_merchant ON staff (merchant_id)",
        ],
    ),
    # Rolled windows built in chunks (hq/stats.py ``build_chunk``, docs/members.md): a build of every member's
    # windows (the first time, a roll over many days or back) runs one transaction a chunk of members, so
    # pushes wait for a chunk, never the whole build. While it runs, ``day`` is NULL (segments read the daily
    # rows), ``building_day`` is the day it builds them as of and ``built_to`` the last member id built (NULL:
    # none yet), where a build a stopped process left goes on from.
    (
        "m030_windows_build",
        [
            "ALTER TABLE stats_windows ADD COLUMN building_day TEXT",
            "ALTER TABLE stats_windows ADD COLUMN built_to TEXT",
        ],
    ),
    # Gift cards (hq/giftcards.py, docs/giftcards.md): each card's state and balance, versioned for the changes
    # feed (every till holds every card); every activity of a card, whatever made it (a till's entry, or head
    # office's own unblock, clear or import); each till payment head office confirmed before the till approved
    # it (its balance is held back until the entry arrives); the chain's terms.
    (
        "m031_gift_cards",
        [
            "CREATE TABLE gift_cards (card_id TEXT PRIMARY KEY, uid_hash TEXT NOT NULL UNIQUE, state TEXT NOT NULL, "
            "balance BIGINT NOT NULL, expires_on TEXT, last_used_on TEXT, counter BIGINT, body TEXT NOT NULL, "
            "version BIGINT NOT NULL, "
            "deleted INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX idx_gift_cards_version ON gift_cards (version)",
            "CREATE TABLE gift_card_events (event_id TEXT PRIMARY KEY, card_id TEXT NOT NULL, n BIGINT NOT NULL, "
            "kind TEXT NOT NULL, amount BIGINT NOT NULL, balance_after BIGINT NOT NULL, terminal_id TEXT, "
            "store_id TEXT, day TEXT, at TEXT NOT NULL, by_whom TEXT, note TEXT NOT NULL DEFAULT '')",
            "CREATE UNIQUE INDEX idx_gift_card_events_card ON gift_card_events (card_id, n)",
            "CREATE TABLE gift_confirms (txn_id TEXT PRIMARY KEY, card_id TEXT NOT NULL, terminal_id TEXT NOT NULL, "
            "amount BIGINT NOT NULL, confirmed_at TEXT NOT NULL)",
            "CREATE INDEX idx_gift_confirms_card ON gift_confirms (card_id)",
            "CREATE TABLE gift_terms (id INTEGER PRIMARY KEY, expiry_days INTEGER NOT NULL, dormant_days INTEGER "
            "NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)",
        ],
    ),
    # The report roll-up (hq/rollup.py, docs/reports.md): head office's figures by business day, store, till and
    # figure, kept in the transactions that make them count, so a report reads a few rows a store and day
    # rather than every sale. Filled here from the journal and the ledger with the statements that define it.
    (
        "m032_report_days",
        [
            OnPostgres(
                "LOCK TABLE journal, coupon_uses, campaign_members, ledger_txns, ledger_postings, ledger_lots, "
                "ledger_lot_uses, member_days IN SHARE MODE"
            ),
            "CREATE TABLE report_days (day TEXT NOT NULL, store_id TEXT NOT NULL, terminal_id TEXT NOT NULL, "
            "figure TEXT NOT NULL, amount BIGINT NOT NULL, PRIMARY KEY (day, store_id, terminal_id, figure))",
            "CREATE INDEX idx_report_days_figure ON report_days (store_id, figure, day)",
            *(
                f"INSERT INTO report_days (day, store_id, terminal_id, figure, amount) {sql}"
                for sql in figures.REBUILD.values()
            ),
        ],
    ),
    # Gift card value past its expiry is cleared by head office's timer (hq/giftcards.py ``expire``): the cards
    # found by their last valid day.
    (
        "m033_gift_expiry",
        ["CREATE INDEX idx_gift_cards_expires ON gift_cards (expires_on)"],
    ),
    # When each merchant pays for its points (hq/merchants.py ``Timing``, docs/settlement.md): at issuance, as
    # every merchant did before, at redemption, or against a reserve.
    (
        "m034_settlement_timing",
        ["ALTER TABLE merchants ADD COLUMN timing TEXT NOT NULL DEFAULT 'issuance'"],
    ),
    # A member keeps gift cards in the wallet (hq/giftholders.py, docs/giftcards.md): one member a card, found by
    # the member too; the card itself stays a bearer card (no till needs the holder).
    (
        "m035_gift_holders",
        [
            "CREATE TABLE gift_card_holders (card_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
            "attached_at TEXT NOT NULL)",
            "CREATE INDEX idx_gift_card_holders_member ON gift_card_holders (member_id)",
        ],
    ),
    # Gift card value in the ledger (hq/ledger.py ``gift_postings``, docs/ledger.md): each card's account opens at
    # the balance head office held, against the chain's float, as the members' balances opened in m023.
    (
        "m036_gift_ledger",
        [
            OnPostgres("LOCK TABLE gift_cards IN SHARE MODE"),
            "INSERT INTO ledger_txns (ledger_txn_id, kind, member_id, merchant_id, day, period, at) "
            "SELECT 'giftopen:' || card_id, 'gift_opening', '', 'chain', '', '', '' FROM gift_cards WHERE balance <> 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'giftopen:' || card_id, 0, 'gift_value', card_id, 'value', balance FROM gift_cards "
            "WHERE balance <> 0",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT 'giftopen:' || card_id, 1, 'chain_float', '', 'value', -balance FROM gift_cards "
            "WHERE balance <> 0",
        ],
    ),
    (
        # The report roll-up's gift card float: what the ledger holds on the gift cards, day by day (a database
        # that made report_days after the figure existed has it already: it is written afresh).
        "m037_gift_float",
        [
            OnPostgres("LOCK TABLE ledger_txns, ledger_postings IN SHARE MODE"),
            "DELETE FROM report_days WHERE figure = 'gift_value'",
            f"INSERT INTO report_days (day, store_id, terminal_id, figure, amount) {figures.REBUILD['gift_value']}",
        ],
    ),
    # Each lot keeps the settlement timing its merchant had when the lot was issued (hq/settlement.py, docs/
    # settlement.md): a merchant that changes its timing pays for each lot once, by the timing it was issued under.
    # Lots issued before have none (NULL): they settle by the timing of the statement's period, as they did.
    ("m038_lot_timing", ["ALTER TABLE ledger_lots ADD COLUMN timing TEXT"]),
    # Each merchant's outstanding points at the end of a closed period, kept by its close (hq/settlement.py
    # ``keep_positions``): a statement's opening reads them and the postings filed since, not the whole ledger's
    # history. Closes made before keep none (``positions_kept`` 0): statements after them read every posting.
    (
        "m039_close_positions",
        [
            "CREATE TABLE ledger_close_positions (period TEXT NOT NULL, merchant_id TEXT NOT NULL, "
            "outstanding BIGINT NOT NULL, PRIMARY KEY (period, merchant_id))",
            "ALTER TABLE ledger_closes ADD COLUMN positions_kept INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    # Room on each page of member_totals for the row's next version (PostgreSQL): a sale updates its member's
    # row, and with room on the page the update is a heap-only tuple (HOT), so it writes one page and no index
    # entry, instead of a page of each version and the key's index leaf. The table is written again now so its
    # pages have the room (CLUSTER: a lock on the table for the seconds it takes).
    (
        "m040_totals_room",
        [
            OnPostgres("ALTER TABLE member_totals SET (fillfactor = 80)"),
            OnPostgres("CLUSTER member_totals USING member_totals_pkey"),
        ],
    ),
    # A member's daily rows in one table: the day's row of each store visited (kind 's', item: the store) and
    # of each category bought (kind 'c', item: the category), under one key, so a sale's rows sit side by side
    # in one leaf of one index instead of a leaf of each of two big indexes (a page image each after a
    # checkpoint: docs/performance.md). member_days and member_category_days stay, as views: what reads them
    # is unchanged; what writes goes to member_day_rows. The index by day holds the stores' rows only (what
    # the segments over a span of days and the figures read).
    (
        "m041_day_rows",
        [
            OnPostgres("LOCK TABLE member_days, member_category_days IN ACCESS EXCLUSIVE MODE"),
            "CREATE TABLE member_day_rows (member_id TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL, "
            "item TEXT NOT NULL, visits BIGINT NOT NULL, spend BIGINT NOT NULL, quantity BIGINT NOT NULL, "
            "PRIMARY KEY (member_id, day, kind, item))",
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT member_id, day, 's', store_id, visits, spend, 0 FROM member_days",
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT member_id, day, 'c', category, 0, spend, quantity FROM member_category_days",
            "DROP TABLE member_days",
            "DROP TABLE member_category_days",
            "CREATE VIEW member_days AS SELECT member_id, day, item AS store_id, visits, spend FROM member_day_rows "
            "WHERE kind = 's'",
            "CREATE VIEW member_category_days AS SELECT member_id, day, item AS category, spend, quantity "
            "FROM member_day_rows WHERE kind = 'c'",
            "CREATE INDEX idx_member_day_rows_day ON member_day_rows (day, member_id) WHERE kind = 's'",
        ],
    ),
    # A till withdraws a confirmation it asked for and did not use (the answer was lost and its offline rules
    # refused, or the sale failed): head office stops holding its amount back (hq/payments.py ``withdraw``).
    (
        "m042_confirms_withdrawn",
        [
            "ALTER TABLE payment_confirms ADD COLUMN withdrawn_at TEXT",
            "CREATE INDEX idx_payment_confirms_txn ON payment_confirms (txn_id)",
            "ALTER TABLE gift_confirms ADD COLUMN withdrawn_at TEXT",
        ],
    ),
    # A till's withdrawal kept even when it arrives before the confirmation it withdraws (a slow request the
    # till gave up on): that confirmation, when it comes, is refused instead of holding its amount for good.
    (
        "m043_confirm_withdrawals",
        [
            "CREATE TABLE confirm_withdrawals (terminal_id TEXT NOT NULL, txn_id TEXT NOT NULL, "
            "withdrawn_at TEXT NOT NULL, PRIMARY KEY (terminal_id, txn_id))",
        ],
    ),
    # A confirmation on a card read head office cannot check again (a Lite-S MAC read, a SUN tap without the
    # keys) is the till's word: what one till holds back on such reads at a time is bounded (hq/ingest.py
    # ``attested_held``). ``attested_open`` is 1 from such a confirmation until head office counts it as arrived
    # or withdrawn; the partial indexes keep that count to the few still open.
    (
        "m044_attested_holds",
        [
            "ALTER TABLE payment_confirms ADD COLUMN attested_open INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE gift_confirms ADD COLUMN attested_open INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX idx_payment_confirms_attested ON payment_confirms (terminal_id) WHERE attested_open = 1",
            "CREATE INDEX idx_gift_confirms_attested ON gift_confirms (terminal_id) WHERE attested_open = 1",
        ],
    ),
    # A till's withdrawals of transactions head office had heard nothing of are kept, the newest 1,000 a till
    # (hq/ingest.py ``note_withdrawals``, ``WITHDRAWALS_KEPT``): a stolen credential withdrew made-up transaction
    # ids, 100 a request, and each was kept for good. What an earlier release kept beyond that goes now.
    (
        "m045_withdrawals_kept",
        [
            OnPostgres("LOCK TABLE confirm_withdrawals IN SHARE MODE"),  # an earlier release's writes wait for it
            "DELETE FROM confirm_withdrawals WHERE (terminal_id, txn_id) IN (SELECT terminal_id, txn_id FROM "
            "(SELECT terminal_id, txn_id, ROW_NUMBER() OVER (PARTITION BY terminal_id "
            "ORDER BY withdrawn_at DESC, txn_id DESC) AS n FROM confirm_withdrawals) ranked WHERE n > 1000)",
        ],
    ),
    # An attribute the chain keeps for its own use (a win-back list, a staff note of a band) is set by staff
    # only: members_set = 0 leaves it off the join page, and a member's own join naming it is refused.
    (
        "m046_staff_attributes",
        ["ALTER TABLE profile_attributes ADD COLUMN members_set INTEGER NOT NULL DEFAULT 1"],
    ),
    # The report roll-up keeps the vouchers' float beside the gift cards' (``voucher_value``, store "*": what
    # vouchers sold and not yet redeemed or refunded hold, docs/reports.md), written here for the vouchers the
    # ledger booked before it, as ``m037_gift_float`` did for the gift cards.
    (
        "m047_voucher_float",
        [
            OnPostgres("LOCK TABLE ledger_txns, ledger_postings IN SHARE MODE"),
            "DELETE FROM report_days WHERE figure = 'voucher_value'",
            f"INSERT INTO report_days (day, store_id, terminal_id, figure, amount) {figures.REBUILD['voucher_value']}",
        ],
    ),
    # Each time the join page found a contact another member's (``wallet_contact_taken``), the client address it
    # came from (hq/wallet/signin.py ``MAX_TAKEN_FROM``): a few a quarter hour an address, so that a receipt, or a
    # stolen till credential's made-up ones, does not tell which contacts of a list are members. Kept for the
    # window only, as the sign-in codes; no contact is kept.
    (
        "m048_contact_probes",
        [
            "CREATE TABLE contact_probes (source TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE INDEX idx_contact_probes_source ON contact_probes (source, created_at)",
        ],
    ),
    # The approvals page and each decision read who last set an account's password from the audit log by
    # ``target`` (hq/audit.py ``last_actor``, the newest record first): without an index each read walked the
    # whole log, which only grows.
    (
        "m049_audit_target",
        ["CREATE INDEX idx_audit_log_target ON audit_log (target, seq)"],
    ),
    # What head office stored of each terminal's pushes on its day (UTC): entries, their payloads' bytes, and the
    # pushes refused for passing the day's bound (hq/ingest.py ``spend_push_budget``, ``push_limited``), so that a
    # stolen till credential cannot fill the disk. A terminal's earlier days go when its next day starts.
    (
        "m050_push_days",
        [
            "CREATE TABLE push_days (terminal_id TEXT NOT NULL, day TEXT NOT NULL, entries BIGINT NOT NULL, "
            "bytes BIGINT NOT NULL, refused BIGINT NOT NULL, PRIMARY KEY (terminal_id, day))"
        ],
    ),
    # The addresses each staff account signed in from (hq/backoffice/staff.py ``KNOWN_S``): the account-wide bound
    # on wrong passwords from many addresses closes the account to new addresses only, so a guesser who knows
    # an administrator's id cannot lock the administrator out of the back office from where they work.
    (
        "m051_staff_known_sources",
        [
            "CREATE TABLE staff_known_sources (staff_id TEXT NOT NULL, source TEXT NOT NULL, "
            "seen_at BIGINT NOT NULL, PRIMARY KEY (staff_id, source))"
        ],
    ),
    # Each wrong wallet sign-in code typed for a contact, whatever the address (hq/wallet/signin.py
    # ``MAX_MISSES``): ten a day, and no code works nor is sent for that contact until the day has passed them,
    # so that a botnet does not get fifteen guesses a quarter hour at each member's code. Kept a day, and
    # deleted with the member's contacts at erasure.
    (
        "m052_wallet_code_misses",
        [
            "CREATE TABLE wallet_code_misses (contact TEXT NOT NULL, at BIGINT NOT NULL)",
            "CREATE INDEX idx_wallet_code_misses ON wallet_code_misses (contact, at)",
        ],
    ),
    # A member whose till-made id is contested (an open ``enrolment_contested`` item, hq/members.py): its spending
    # is held, chain-wide, until staff settle the item; earning goes on. It reaches the tills with the member.
    (
        "m053_member_spend_held",
        ["ALTER TABLE members ADD COLUMN spend_held INTEGER NOT NULL DEFAULT 0"],
    ),
    # What each terminal's offline payments took beyond the balances they paid from on head office's day (stored
    # value and gift cards' value, points), bounded by ``overspent_per_day`` (hq/ingest.py): a stolen till
    # credential with a card worth little would otherwise have its merchant owed whatever it wrote.
    (
        "m054_push_days_overspent",
        [
            "ALTER TABLE push_days ADD COLUMN overspent BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE push_days ADD COLUMN overspent_points BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    # A receipt's number as its POS keeps it unique (hq/receipts.py, docs/receipts.md): the printed number, with the
    # day in the store's time zone for a POS whose numbers start again each day. Only sales that name their scope
    # (protocol 4) have one: those held before were compared by digest alone, and still are.
    (
        "m055_receipt_number_key",
        [
            "ALTER TABLE receipt_sales ADD COLUMN number_key TEXT",
            "CREATE INDEX idx_receipt_sales_number_key ON receipt_sales (store_id, number_key, received_at)",
        ],
    ),
    # The held ids travel whole on every changes page (a till that bootstrapped learns them there): read by a
    # partial index, which holds the few held members only.
    (
        "m056_members_spend_held_index",
        ["CREATE INDEX idx_members_spend_held ON members (member_id) WHERE spend_held = 1 AND deleted = 0"],
    ),
    # The browsers each member signed in on with a code (hq/wallet/signin.py ``remember_device``: the digest of
    # the device cookie's token), and the lane of each code and wrong code: a known browser's own, or the one
    # every other browser shares. Wrong codes and codes asked for elsewhere count in the shared lane only, so
    # whoever knows a member's contact cannot keep the member out of the wallet on the member's own phone.
    (
        "m057_wallet_known_devices",
        [
            "CREATE TABLE wallet_known_devices (device_sha256 TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
            "created_at BIGINT NOT NULL)",
            "CREATE INDEX idx_wallet_known_devices_member ON wallet_known_devices (member_id, created_at)",
            "ALTER TABLE wallet_codes ADD COLUMN lane TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE wallet_code_misses ADD COLUMN lane TEXT NOT NULL DEFAULT ''",
        ],
    ),
    # A second factor for staff sign-in (hq/backoffice/factors.py): an account's TOTP secret (``confirmed_at``
    # NULL while its owner has not yet typed a code from it) and the highest 30 s step a code was accepted for
    # (a code is used at most once); its recovery codes as scrypt hashes, each used once; a session that has
    # passed the password and waits for the code (``stage``).
    (
        "m058_staff_second_factor",
        [
            "CREATE TABLE staff_totp (staff_id TEXT PRIMARY KEY, secret TEXT NOT NULL, made_at BIGINT NOT NULL, "
            "confirmed_at BIGINT, last_step BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE staff_recovery_codes (staff_id TEXT NOT NULL, slot INTEGER NOT NULL, "
            "code_hash TEXT NOT NULL, used_at BIGINT, PRIMARY KEY (staff_id, slot))",
            "ALTER TABLE staff_sessions ADD COLUMN stage TEXT",
        ],
    ),
    # The one-time code an administrator issues for an account's enrolment in a second factor
    # (hq/backoffice/factors.py): its SHA-256, who issued it and until when it holds; one per account, removed
    # when used. A secret no longer waits unconfirmed in ``staff_totp``: the enrolment page carries it.
    (
        "m059_staff_enrol_codes",
        [
            "CREATE TABLE staff_enrol_codes (staff_id TEXT PRIMARY KEY, code_hash TEXT NOT NULL, "
            "issued_by TEXT NOT NULL, issued_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
            "DELETE FROM staff_totp WHERE confirmed_at IS NULL",
        ],
    ),
    # The daily rows of the last few days in a table of their own (hq/stats.py ``RECENT_TABLE``): small, so the
    # leaves of its key a push adds to stay in memory, where the big table's are spread over gigabytes
    # (docs/performance.md). ``recent_from`` is its first day (NULL: none yet; every row stays in
    # member_day_rows until head office's timer first folds, ``fold_recent``). The views read both tables.
    (
        "m060_recent_day_rows",
        [
            OnPostgres("LOCK TABLE member_day_rows IN SHARE MODE"),
            "ALTER TABLE stats_windows ADD COLUMN recent_from TEXT",
            "CREATE TABLE member_day_rows_recent (member_id TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL, "
            "item TEXT NOT NULL, visits BIGINT NOT NULL, spend BIGINT NOT NULL, quantity BIGINT NOT NULL, "
            "PRIMARY KEY (member_id, day, kind, item))",
            "CREATE INDEX idx_member_day_rows_recent_day ON member_day_rows_recent (day, member_id) WHERE kind = 's'",
            "DROP VIEW member_days",
            "DROP VIEW member_category_days",
            "CREATE VIEW member_days AS SELECT member_id, day, item AS store_id, visits, spend FROM member_day_rows "
            "WHERE kind = 's' UNION ALL SELECT member_id, day, item, visits, spend FROM member_day_rows_recent "
            "WHERE kind = 's'",
            "CREATE VIEW member_category_days AS SELECT member_id, day, item AS category, spend, quantity "
            "FROM member_day_rows WHERE kind = 'c' UNION ALL SELECT member_id, day, item, spend, quantity "
            "FROM member_day_rows_recent WHERE kind = 'c'",
        ],
    ),
    # The lifetime figures of the sales added since head office's timer last folded them (hq/stats.py
    # ``RECENT_TOTALS``): a push adds to this small table, not to rows of member_totals spread over its pages;
    # a member's figures are its two rows added up. Empty when made: member_totals holds everything so far.
    (
        "m061_recent_totals",
        [
            "CREATE TABLE member_totals_recent (member_id TEXT PRIMARY KEY, first_visit TEXT, last_visit TEXT, "
            "visits BIGINT NOT NULL DEFAULT 0, spend BIGINT NOT NULL DEFAULT 0, "
            "coupons_redeemed BIGINT NOT NULL DEFAULT 0)",
        ],
    ),
]


SEEDED = ("m004_trust", "m006_signal", "m013_receipts", "m009_profile_attributes")
"""Migrations whose data head office fills in after them, in this order (``HqStore``: the sales' trust, the
versions held when the history began, the receipts' index, the profile attributes collected). Applying one
also records it in ``hq_seeds`` in the same transaction; the transaction that fills it in removes the row. So
a process stopped between the two fills it in at its next open, and a database only migrated (``migrate``,
no store opened on it) gets its data, with its own clock, from the first store that opens it."""

MIGRATION_LOCK_WAIT_S = 60.0
"""Seconds a migration's statement, the fill-in after it and the backup before them wait for a lock another
session holds, by default (``tillpoint hq serve --migration-lock-wait``): head office's own transactions hold
theirs for well under a second, a report or a campaign run of an earlier release still serving for seconds.
A request's statements wait far less (``hq.db.pg.LOCK_WAIT_MS``): they are sent again; a start is not. While a
migration waits for a table, what else asks for that table waits behind it (requests of processes still
serving hear ``storage_unavailable`` and are sent again)."""


@dataclass
class Migrated:
    """What one ``migrate`` did: the migrations it applied, the data it filled in after them (``SEEDED``) and where
    the backup before them went (None: none taken)."""

    applied: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    backup: str | None = None


Seeder = Callable[[Tx, str], None]
"""What fills in the data a migration of ``SEEDED`` left: ``(tx, name)``, in a transaction of its own."""


def migrate(
    db: Db,
    *,
    backup: bool = True,
    lock_wait: float = MIGRATION_LOCK_WAIT_S,
    seed: Seeder | None = None,
    done: Migrated | None = None,
) -> list[str]:
    """Apply the migrations this database lacks (forward only), each in its own transaction, after a
    backup of a database that already held data (``backup=False``: the operator made one), then fill in what
    they left (``seed``: each of ``SEEDED`` pending, in a transaction of its own); returns the migrations'
    names. Refuses (``NewerSchema``) a database a newer release migrated.

    One process migrates a database at a time (``Db.migrating``): processes starting together take one backup
    and apply each migration once, the others waiting for the one migrating, then finding nothing left to do.
    A step that waited ``lock_wait`` seconds for a lock another session holds is ``MigrationBlocked`` and left
    undone whole (a migration is one transaction); those before it stay applied, and a start after the lock
    went applies the rest."""
    done = done if done is not None else Migrated()
    if _current(db, seeded=seed is not None):
        return []  # no lock for a database as it should be: every process of a chain starts this way
    with db.migrating(lock_wait) as migrator:
        done.applied = _migrate(migrator, backup=backup, report=done)
        if seed is not None:
            for name in seeds_pending(migrator):
                with _step(f"filling in the data {name} left"):
                    _fill(migrator, seed, name)
                done.filled.append(name)
    return done.applied


def lacking(db: Db) -> list[str]:
    """The migrations of this release a database that holds head office's schema lacks, in order; [] for a
    database that holds all of them, and for one that holds nothing yet (a new database is made whole by any
    command). ``NewerSchema`` for a database a newer release migrated. Read without the migration lock."""
    with db.read() as tx:
        if "hq_migrations" not in _tables(tx):
            return []
        applied = {str(row[0]) for row in tx.all("SELECT name FROM hq_migrations")}
    _refuse_newer(applied)
    return [name for name, _ in MIGRATIONS if name not in applied] if applied else []


def _fill(db: Db, seed: Seeder, name: str) -> None:
    db.transact(lambda tx: seed(tx, name))


def _current(db: Db, *, seeded: bool) -> bool:
    """Whether the database holds every migration (and, ``seeded``, nothing is left to fill in), read without
    the migration lock; ``NewerSchema`` for a database a newer release migrated."""
    with db.read() as tx:
        tables = _tables(tx)
        if not {"hq_migrations", "hq_seeds"} <= tables:
            return False
        done = {str(row[0]) for row in tx.all("SELECT name FROM hq_migrations")}
        unfilled = seeded and tx.one("SELECT name FROM hq_seeds LIMIT 1") is not None
    _refuse_newer(done)
    return done == {name for name, _ in MIGRATIONS} and not unfilled


def _migrate(db: Db, *, backup: bool, report: Migrated) -> list[str]:
    """``migrate``'s work, on the migrating ``Db``."""
    with _step("reading which migrations are applied"), db.write() as tx:
        _refuse_foreign(tx)
        tx.run("CREATE TABLE IF NOT EXISTS hq_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {str(row[0]) for row in tx.all("SELECT name FROM hq_migrations")}
    _refuse_newer(done)
    # after the check: a newer release's database is left as it is
    with _step("making the fill-in's table"), db.write() as tx:
        tx.run("CREATE TABLE IF NOT EXISTS hq_seeds (name TEXT PRIMARY KEY)")
    pending = [name for name, _ in MIGRATIONS if name not in done]
    if pending and done and backup:
        where = report.backup = db.backup(pending[0])
        log.warning("head-office database backed up to %s before migrations %s", where, ", ".join(pending))
    if not done:  # a new database: made whole in one transaction (one commit, not one per migration)
        with _step("making the new database's schema"):
            return db.transact(partial(_apply, migrations=MIGRATIONS))
    applied = []
    for name, statements in MIGRATIONS:
        if name not in done:
            with _step(f"migration {name}"):
                applied += db.transact(partial(_apply, migrations=[(name, statements)]))
    return applied


@contextmanager
def _step(step: str) -> Iterator[None]:
    """``step`` of a migration that waited its bound for a lock: ``MigrationBlocked``, saying what to do."""
    try:
        yield
    except LockWaited as exc:
        raise MigrationBlocked(
            f"{step} waited {exc.waited:g} s for a lock another session holds and was rolled back: nothing of it "
            f"was applied. Sessions with the oldest open transactions: {exc.holders}. End the one holding it "
            "(psql: SELECT pg_terminate_backend(PID)) or let it finish, then start head office again "
            "(tillpoint hq migrate, or serve, --migration-lock-wait S: how long a migration waits)"
        ) from exc


def _refuse_newer(done: set[str]) -> None:
    unknown = sorted(done - {name for name, _ in MIGRATIONS})
    if unknown:
        raise NewerSchema(
            f"this head-office database was upgraded by a newer tillpoint (migrations {', '.join(unknown)}); "
            "run that release, or restore the backup taken before the upgrade"
        )


def _tables(tx: Tx) -> set[str]:
    """The tables (and views) of head office's schema."""
    if tx.dialect == "postgres":
        rows = tx.all("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        rows = tx.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return {str(r[0]) for r in rows}


def _refuse_foreign(tx: Tx) -> None:
    """A database that holds tables but never had head office's migrations (a till's ``terminal.db`` given as
    ``--db``, another program's schema) is not head office's: ``StorageFailed``, and nothing is added to it."""
    tables = _tables(tx)
    if tables and "hq_migrations" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise StorageFailed(f"not a head-office database: it holds other tables ({shown}) and none of head office's")


def _apply(tx: Tx, migrations: list[tuple[str, list[Statement]]]) -> list[str]:
    """Apply those of ``migrations`` the database lacks in ``tx`` (read again in it: a process of an earlier
    release, which took the migration lock per migration, may have applied one meanwhile); returns their names."""
    done = {row[0] for row in tx.all("SELECT name FROM hq_migrations")}
    todo = [(name, statements) for name, statements in migrations if name not in done]
    for name, statements in todo:
        for statement in statements:
            run_statement(tx, statement)
        tx.run("INSERT INTO hq_migrations (name, applied_at) VALUES (?, ?)", (name, utc_now()))
        if name in SEEDED:
            tx.run("INSERT INTO hq_seeds (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [name])
    return [name for name, _ in todo]


def seeds_pending(db: Db) -> list[str]:
    """The migrations whose data is still to be filled in (``SEEDED``), in their order."""
    with db.read() as tx:
        pending = {str(row[0]) for row in tx.all("SELECT name FROM hq_seeds")}
    return [name for name in SEEDED if name in pending]


def take_seed(tx: Tx, name: str) -> bool:
    """Remove ``name``'s row from ``hq_seeds`` in ``tx``, which then fills it in; False when another process
    took it first (on PostgreSQL a second one waits for the first's commit, then finds no row)."""
    return tx.run("DELETE FROM hq_seeds WHERE name = ?", [name]) == 1
