"""Receipts at head office: each sale read from a POS's printed receipt (docs/receipts.md) is indexed by
the receipt's digest, its printed number, the POS and the store, so a sale can be tied to the POS's own
record, and one printed receipt sold twice (at two tills, or twice at one) is a reconciliation item.

``record`` is an ingest stage (ordered by ``hq.push`` after the sales): it indexes the batch's sales that
name a receipt and flags ``receipt_sold_twice`` on every sale of a receipt head office already holds a sale
of (the first stays unflagged): the same digest (the same bytes printed again), or the same printed number in
the same store (a reprint, its bytes another's: a COPY line, another print time), that day in the store's time
zone for a POS whose numbers start again each day (``number_key``). A sale of a till before protocol 4 names no
scope and is compared by digest alone. A replayed push stores nothing new, so it flags nothing. On PostgreSQL a
transaction-scoped advisory lock per digest and per number (taken in order) makes two tills pushing the same
receipt at once see each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from hq.db.engine import Tx
from hq.ingest import Batch
from sync.protocol import PayloadError, Reason, SalePayload, parse_payload

RECEIPT_LOCK = 7_461_230_013
"""The seed of the PostgreSQL advisory locks (one per receipt digest, a hash of it) taken while indexing."""
COLUMNS = (
    "txn_id",
    "receipt_digest",
    "receipt_number",
    "pos_id",
    "store_id",
    "terminal_id",
    "seq",
    "day",
    "received_at",
)
DIGEST_PREFIX = 8
"""The shortest digest prefix a lookup takes (the till's log shows 12 characters)."""


class ReceiptSale(BaseModel):
    """A sale head office holds that was read from a printed receipt."""

    txn_id: str
    receipt_digest: str
    receipt_number: str | None
    pos_id: str | None
    store_id: str
    terminal_id: str
    seq: int
    day: str
    member_id: str | None
    total: int
    effect: str
    sold_twice: bool
    """Another sale of the same receipt came first (this one carries a ``receipt_sold_twice`` item)."""


@dataclass(frozen=True, slots=True)
class _Indexed:
    txn_id: str
    terminal_id: str
    seq: int


def number_key(number: str | None, scope: str | None, made: datetime, timezone: str, basket: str = "") -> str | None:
    """What keys a receipt's printed number in its store: the number less the spaces around it (scope ``store``),
    or the day the sale was made in the store's time zone and the number (``day``: the POS's numbers start again
    each day), then the ``basket`` (``basket``: its lines and total) when given. None: no number, or a sale that
    names no scope (a till before protocol 4: its digest alone). A reprint prints the same lines and total; another
    basket under a number (another register numbering alike, a POS whose numbers started again) is another
    receipt, as the till has it."""
    if number is None or not number.strip() or scope not in ("store", "day"):
        return None
    key = number.strip()
    if scope == "day":
        try:
            day = made.astimezone(ZoneInfo(timezone)).date()
        except OverflowError:
            day = made.date()
        key = f"{day.isoformat()} {key}"
    return f"{key} {basket}" if basket else key


def basket(sale: SalePayload) -> str:
    """A digest of a sale's lines and total: what a reprint of its receipt has the same."""
    lines = [line.model_dump(mode="json") for line in sale.lines]
    text = json.dumps([lines, sale.total], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record(tx: Tx, batch: Batch) -> None:
    """Index the batch's sales read from receipts; flag each one whose receipt (its digest, or its number in the
    store) already has a sale."""
    found = [(i, sale) for i in range(len(batch.entries)) if (sale := batch.sale(i)) and sale.receipt_digest]
    if not found:
        return
    keys = {
        i: key
        for i, sale in found
        if (
            key := number_key(
                sale.receipt_number, sale.receipt_scope, batch.effective[i], batch.calendar.timezone, basket(sale)
            )
        )
    }
    digests = sorted({sale.receipt_digest for _, sale in found if sale.receipt_digest})
    numbers = sorted(set(keys.values()))
    if tx.dialect == "postgres":
        for lock in sorted([*digests, *(f"n:{batch.store_id}:{key}" for key in numbers)]):
            tx.one(
                "SELECT pg_advisory_xact_lock(hashtextextended(CAST(? AS TEXT), CAST(? AS BIGINT)))",
                [lock, RECEIPT_LOCK],
            )
    first = _first_sales(tx, digests)
    first_numbers = _first_numbers(tx, batch.store_id, numbers)
    rows = []
    for i, sale in found:
        entry, digest, key = batch.entries[i], str(sale.receipt_digest), keys.get(i)
        rows.append(
            (entry.txn_id, digest, sale.receipt_number, sale.pos_id, batch.store_id, entry.terminal_id, entry.seq)
            + (batch.days[i], batch.received_at, key)
        )
        this = _Indexed(entry.txn_id, entry.terminal_id, entry.seq)
        by_digest = first.setdefault(digest, this)
        by_number = first_numbers.setdefault(key, this) if key is not None else this
        held, same = (by_digest, "digest") if by_digest is not this else (by_number, "number")
        if held is this:
            continue
        detail: dict[str, Any] = {
            "receipt_digest": digest,
            "receipt_number": sale.receipt_number,
            "pos_id": sale.pos_id,
            "first_txn": held.txn_id,
            "first_terminal": held.terminal_id,
            "first_seq": held.seq,
            "same": same,
        }
        if same == "number":
            detail["number_scope"] = sale.receipt_scope
        batch.flag(i, Reason.RECEIPT_SOLD_TWICE, **detail)
    _insert(tx, rows, (*COLUMNS, "number_key"))


def _first_sales(tx: Tx, digests: Sequence[str]) -> dict[str, _Indexed]:
    cond, params = tx.in_list("receipt_digest", list(digests))
    first: dict[str, _Indexed] = {}
    for digest, txn_id, terminal_id, seq in tx.all(
        f"SELECT receipt_digest, txn_id, terminal_id, seq FROM receipt_sales WHERE {cond} "
        "ORDER BY received_at, terminal_id, seq",
        params,
    ):
        first.setdefault(str(digest), _Indexed(str(txn_id), str(terminal_id), int(seq)))
    return first


def _first_numbers(tx: Tx, store_id: str, keys: Sequence[str]) -> dict[str, _Indexed]:
    """The first sale held of each receipt number (``number_key``) in the store."""
    if not keys:
        return {}
    cond, params = tx.in_list("number_key", list(keys))
    first: dict[str, _Indexed] = {}
    for key, txn_id, terminal_id, seq in tx.all(
        f"SELECT number_key, txn_id, terminal_id, seq FROM receipt_sales WHERE store_id = ? AND {cond} "
        "ORDER BY received_at, terminal_id, seq",
        [store_id, *params],
    ):
        first.setdefault(str(key), _Indexed(str(txn_id), str(terminal_id), int(seq)))
    return first


def _insert(tx: Tx, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] = COLUMNS) -> None:
    tx.many(
        f"INSERT INTO receipt_sales ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        "ON CONFLICT (txn_id) DO NOTHING",
        rows,
    )


def backfill(tx: Tx) -> None:
    """After the migration that added the index: the sales head office already holds that name a receipt
    (indexed in the order they were received; nothing is flagged for them)."""
    rows = []
    for txn_id, terminal_id, seq, store_id, day, received_at, payload_text in tx.all(
        "SELECT txn_id, terminal_id, seq, store_id, day, received_at, payload FROM journal "
        "WHERE kind = 'sale' AND payload LIKE ? ORDER BY received_at, terminal_id, seq",
        ["%receipt_digest%"],
    ):
        try:
            sale = parse_payload("sale", json.loads(str(payload_text)))
        except (PayloadError, ValueError):
            continue
        if isinstance(sale, SalePayload) and sale.receipt_digest:
            rows.append(
                (txn_id, sale.receipt_digest, sale.receipt_number, sale.pos_id, store_id or "", terminal_id, seq)
                + (day or "", received_at)
            )
    _insert(tx, rows)


def find(
    tx: Tx, *, digest: str | None = None, number: str | None = None, store_id: str | None = None, limit: int = 100
) -> list[ReceiptSale]:
    """The sales read from a receipt, by its digest (or a prefix of at least ``DIGEST_PREFIX`` hex digits)
    and/or its printed number (within a store, or chain-wide), first received first. ValueError without
    either, or for a digest that is not hex."""
    where: list[str] = []
    params: list[Any] = []
    if digest:
        digest = digest.lower()
        if len(digest) < DIGEST_PREFIX or len(digest) > 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"a receipt digest is {DIGEST_PREFIX} to 64 hex digits")
        where.append("r.receipt_digest LIKE ?" if len(digest) < 64 else "r.receipt_digest = ?")
        params.append(digest + "%" if len(digest) < 64 else digest)
    if number:
        where.append("r.receipt_number = ?")
        params.append(number)
    if not where:
        raise ValueError("look a receipt up by its digest or its number")
    if store_id:
        where.append("r.store_id = ?")
        params.append(store_id)
    rows = tx.all(
        "SELECT r.txn_id, r.receipt_digest, r.receipt_number, r.pos_id, r.store_id, r.terminal_id, r.seq, r.day, "
        "j.member_id, j.total, j.effect, "
        "(SELECT COUNT(*) FROM recon_items i WHERE i.txn_id = r.txn_id AND i.reason = ?) "
        "FROM receipt_sales r JOIN journal j ON j.txn_id = r.txn_id "
        f"WHERE {' AND '.join(where)} ORDER BY r.received_at, r.terminal_id, r.seq LIMIT ?",
        [Reason.RECEIPT_SOLD_TWICE.value, *params, limit],
    )
    return [
        ReceiptSale(
            txn_id=str(r[0]),
            receipt_digest=str(r[1]),
            receipt_number=None if r[2] is None else str(r[2]),
            pos_id=None if r[3] is None else str(r[3]),
            store_id=str(r[4]),
            terminal_id=str(r[5]),
            seq=int(r[6]),
            day=str(r[7]),
            member_id=None if r[8] is None else str(r[8]),
            total=int(r[9]),
            effect=str(r[10]),
            sold_twice=int(r[11]) > 0,
        )
        for r in rows
    ]


__all__ = ["ReceiptSale", "backfill", "find", "number_key", "record"]
