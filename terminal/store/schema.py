"""The terminal database's schema, as sqlite-utils migrations applied in order at start."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("tillpoint.terminal")


@migrations()
def m001_cache(db: Database) -> None:
    # points = hq_points + this till's not-yet-acknowledged deltas: what the cashier sees.
    db.table("members").create(
        {"member_id": str, "display_name": str, "tier": str, "points": int, "hq_points": int, "status": str},
        pk="member_id",
    )
    db.table("cards").create({"uid_hash": str, "member_id": str, "status": str}, pk="uid_hash")
    db.table("cards").create_index(["member_id"])
    db.table("rules").create({"rule_id": str, "points": int, "per_minor": int}, pk="rule_id")


@migrations()
def m002_journal(db: Database) -> None:
    # seq is the per-terminal gapless sequence; txn_id the time-sortable UUIDv7 of the transaction.
    db.table("journal").create(
        {
            "seq": int,
            "txn_id": str,
            "terminal_id": str,
            "kind": str,
            "payload": str,
            "created_at": str,
            "pushed_at": str,
        },
        pk="seq",
        not_null={"txn_id", "terminal_id", "kind", "payload", "created_at"},
    )
    db.table("journal").create_index(["txn_id"], unique=True)
    db.table("journal").create_index(["pushed_at"])
    db.table("sales").create(
        {"txn_id": str, "member_id": str, "total": int, "points_delta": int, "voided_by": str},
        pk="txn_id",
    )


@migrations()
def m003_sync_state(db: Database) -> None:
    db.table("sync_state").create({"key": str, "value": str}, pk="key")


@migrations()
def m004_loyalty_docs(db: Database) -> None:
    # Earning rules and coupons are data sent down by head office: one JSON document each (see
    # terminal/loyalty.py and terminal/coupons.py for their shape). member_id is set for personal coupons.
    db.table("rule_docs").create({"rule_id": str, "body": str}, pk="rule_id")
    db.table("coupon_docs").create({"coupon_id": str, "member_id": str, "body": str}, pk="coupon_id")
    db.table("coupon_docs").create_index(["member_id"])


@migrations()
def m301_card_counters(db: Database) -> None:
    # The last NTAG 424 DNA SUN read counter accepted per card: a later tap must show a higher one.
    db.table("card_counters").create({"uid_hash": str, "counter": int, "updated_at": str}, pk="uid_hash")


@migrations()
def m005_loyalty_ledger(db: Database) -> None:
    # window_value: points earned (or spend) in the tier window as this till knows it.
    db.table("members").add_column("window_value", int, not_null_default=0)
    # Lots of points earned on this till: locked until available_at, gone at expires_at.
    db.table("point_lots").create(
        {"lot_id": str, "member_id": str, "points": int, "remaining": int, "available_at": str, "expires_at": str},
        pk="lot_id",
    )
    db.table("point_lots").create_index(["member_id"])
    # Coupon uses made on this till (+1 on a sale, -1 when a refund gives the use back).
    db.table("coupon_uses").create({"txn_id": str, "coupon_id": str, "member_id": str, "uses": int})
    db.table("coupon_uses").create_index(["coupon_id", "member_id"])
    # What is left of a sale after refunds, to price the next refund (pricing.SaleState + context).
    db.table("sales").add_column("state", str)
    db.execute("CREATE TABLE doc_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    db.execute("INSERT INTO doc_version (id, version) VALUES (1, 0)")
    for table in ("rule_docs", "coupon_docs", "rules"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_version AFTER {event} ON {table} "
                "BEGIN UPDATE doc_version SET version = version + 1 WHERE id = 1; END"
            )


@migrations()
def m101_sync_docs(db: Database) -> None:
    # Pulled from head office: public keys (signed by its root key), the revocation list, and head
    # office's chain-wide count of each coupon's uses; and the end-of-day reports this till sent.
    db.table("hq_keys").create({"key_id": str, "body": str, "sig": str}, pk="key_id")
    db.table("hq_revocations").create(
        {"revocation_id": str, "kind": str, "subject": str, "body": str, "sig": str}, pk="revocation_id"
    )
    db.table("hq_revocations").create_index(["kind", "subject"])
    db.table("hq_coupon_uses").create({"coupon_id": str, "uses": int}, pk="coupon_id")
    db.table("eod_reports").create(
        {
            "day": str,
            "first_seq": int,
            "last_seq": int,
            "totals": str,
            "status": str,
            "detail": str,
            "reported_at": str,
        },
        pk="day",
    )


@migrations()
def m006_payments(db: Database) -> None:
    # Stored value (minor units): what the till shows = head office's balance + this till's
    # unacknowledged deltas, as for points.
    db.table("members").add_column("stored_value", int, not_null_default=0)
    db.table("members").add_column("hq_stored_value", int, not_null_default=0)
    # Device certificates of members' phones (sent down by head office) and every payment code
    # this till accepted: (cert, counter) may pay once.
    db.table("device_certs").create({"cert_id": str, "member_id": str, "body": str}, pk="cert_id")
    db.table("payment_codes").create({"code_id": str, "txn_id": str, "created_at": str}, pk="code_id")
    # Stored-value payments taken here, for the offline limits (day = the till's local date).
    db.table("sv_payments").create(
        {"txn_id": str, "member_id": str, "amount": int, "offline": int, "day": str, "created_at": str}, pk="txn_id"
    )
    db.table("sv_payments").create_index(["member_id", "day"])


def known_names() -> set[str]:
    """Every migration this release knows (sqlite-utils lists only the pending and the applied ones)."""
    return {migration.name for migration in migrations._migrations}


@migrations()
def m007_receipts(db: Database) -> None:
    # The POS receipts sales were read from (sha256 of the raw print bytes): one sale per receipt.
    db.table("receipt_digests").create({"digest": str, "txn_id": str, "created_at": str}, pk="digest")


@migrations()
def m008_pools(db: Database) -> None:
    # Flash-drop quantity pools (docs/loyalty.md): each coupon use made here names the pool it redeemed from
    # (a refund's give-back names it too), and this till's allocation of each open pool as head office last sent
    # it, replaced whole by every pulled page that carries allocations (hq_used: head office's count of this
    # till's uses, for a till rebuilt without its own).
    db.table("coupon_uses").add_column("pool", str)
    db.table("coupon_uses").create_index(["pool"])
    db.table("pool_allocations").create({"pool_id": str, "allowed": int, "hq_used": int}, pk="pool_id")


@migrations()
def m010_topups(db: Database) -> None:
    # Top-ups sold here (docs/stored-value.md): the till's day tallies, the offline total and the void of a
    # top-up read them; head office's policy for this till comes with every pull (sync_state "topup_policy").
    db.table("topups").create(
        {
            "txn_id": str,
            "member_id": str,
            "amount": int,
            "day": str,
            "offline": int,
            "created_at": str,
            "voided_by": str,
        },
        pk="txn_id",
    )
    db.table("topups").create_index(["day", "member_id"])


@migrations()
def m011_merchant(db: Database) -> None:
    # The merchant of this till's store (docs/settlement.md): head office sends it with every pull (sync_state
    # "merchant_id"); each journal entry keeps the one the till knew when it wrote it, and carries it on the wire.
    db.table("journal").add_column("merchant_id", str)


@migrations()
def m012_vouchers(db: Database) -> None:
    # Prepaid vouchers (docs/stored-value.md, "Vouchers"): this till's stock of signed codes as head office
    # last sent it (sold_txn: sold here), the state of every sold voucher head office sends down (and this
    # till's own sales until it does), and each voucher this till redeemed or refunded: once, by primary key;
    # the offline ones count against the offline total until head office acknowledges their entries.
    db.table("voucher_stock").create(
        {
            "voucher_id": str,
            "code": str,
            "kind": str,
            "value": int,
            "sku": str,
            "expires_at": int,
            "sold_txn": str,
            "sold_at": str,
        },
        pk="voucher_id",
    )
    db.table("voucher_stock").create_index(["kind", "value", "sku"])
    db.table("voucher_states").create({"voucher_id": str, "body": str}, pk="voucher_id")
    db.table("voucher_uses").create(
        {"voucher_id": str, "txn_id": str, "action": str, "value": int, "offline": int, "created_at": str},
        pk="voucher_id",
    )
    db.table("voucher_uses").create_index(["txn_id"])


@migrations()
def m013_gift_cards(db: Database) -> None:
    # Gift cards (docs/giftcards.md): every card as head office last stated it (the changes feed), and every
    # gift card entry of this till with what it moved on its card: the balance this till works with is head
    # office's plus the entries it has not acknowledged yet.
    db.table("gift_cards").create({"card_id": str, "uid_hash": str, "body": str}, pk="card_id")
    db.table("gift_cards").create_index(["uid_hash"], unique=True)
    db.table("gift_uses").create(
        {
            "txn_id": str,
            "card_id": str,
            "action": str,
            "amount": int,
            "day": str,
            "offline": int,
            "counter": int,
            "original_txn": str,
            "created_at": str,
        },
        pk="txn_id",
    )
    db.table("gift_uses").create_index(["card_id", "day"])
    db.table("gift_uses").create_index(["original_txn"])


@migrations()
def m014_pos_requests(db: Database) -> None:
    # The POS's request ids (``request_id`` of POST /v1/sales), each with the sale recorded under it and the answer
    # given: a retry of a request whose answer was lost is answered again, not recorded twice. The newest are kept.
    db.table("pos_requests").create({"request_id": str, "txn_id": str, "answer": str}, pk="request_id")


@migrations()
def m015_receipt_numbers(db: Database) -> None:
    # The numbers of the POS receipts sales were read from, by store: a receipt of a number already sold is a reprint
    # (its bytes may differ: a COPY header, another print time) and sells nothing. The sales already recorded give
    # theirs (as numbers that never repeat in a store; a day-scoped number is prefixed by its day from now on).
    db.table("receipt_numbers").create(
        {"store_id": str, "number": str, "txn_id": str, "digest": str, "created_at": str}, pk=("store_id", "number")
    )
    db.execute(
        "INSERT OR IGNORE INTO receipt_numbers (store_id, number, txn_id, digest, created_at) "
        "SELECT json_extract(payload, '$.store_id'), trim(json_extract(payload, '$.receipt_number')), txn_id, "
        "json_extract(payload, '$.receipt_digest'), created_at FROM journal "
        "WHERE kind = 'sale' AND json_extract(payload, '$.receipt_digest') IS NOT NULL "
        "AND trim(coalesce(json_extract(payload, '$.receipt_number'), '')) != '' ORDER BY seq"
    )


@migrations()
def m016_pos_requests_body(db: Database) -> None:
    # The digest of the request each POS request id came with (its route and body): the id sent again with another
    # request is refused, not answered with the first's answer. Ids kept before have none and are checked by id alone.
    db.execute("ALTER TABLE pos_requests ADD COLUMN body TEXT NOT NULL DEFAULT ''")


@migrations()
def m017_receipt_printed(db: Database) -> None:
    # When each receipt a sale was read from says it was printed (UTC ISO; null: its time was not read): a receipt
    # too old to earn needs no row to be refused, so the rows of those printed long enough ago are deleted.
    for table in ("receipt_digests", "receipt_numbers"):
        if "printed_at" not in db.table(table).columns_dict:
            db.execute(f"ALTER TABLE {table} ADD COLUMN printed_at TEXT")
        db.execute(f"CREATE INDEX IF NOT EXISTS idx_{table}_printed_at ON {table} (printed_at)")


@migrations()
def m018_card_counters_used(db: Database) -> None:
    # The highest read counter of each card this till's own sales used (``counter`` also takes the chain's high-water
    # mark the pull brings): a payment head office confirmed is checked against these alone. A counter kept before
    # is taken as this till's own.
    if "used" not in db.table("card_counters").columns_dict:
        db.execute("ALTER TABLE card_counters ADD COLUMN used INTEGER")
        db.execute("UPDATE card_counters SET used = counter")
