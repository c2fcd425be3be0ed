"""Vouchers at this till, written inside ``Store.record``'s open transaction (docs/stored-value.md,
"Vouchers"), and this till's stock as head office sends it.

A voucher of the stock is sold once (its row is marked in the same transaction as the journal entry); a
voucher is used once here (the primary key of ``voucher_uses``), and an offline redemption is checked
again against the offline total as it stands inside the transaction, so two redemptions approved at once
cannot pass it between them.
"""

from __future__ import annotations

import sqlite3

from terminal import vouchers as vc
from terminal.errors import Code, Rejected
from terminal.ports import VoucherWrite


def offline_pending(conn: sqlite3.Connection) -> int:
    """Voucher value this till redeemed offline whose entries head office has not acknowledged."""
    (pending,) = conn.execute(
        "SELECT COALESCE(SUM(u.value), 0) FROM voucher_uses u JOIN journal j ON j.txn_id = u.txn_id "
        "WHERE u.offline = 1 AND u.action = 'redeem' AND j.pushed_at IS NULL"
    ).fetchone()
    return int(pending)


def write(conn: sqlite3.Connection, txn_id: str, w: VoucherWrite, created_at: str) -> None:
    """Sell a voucher of the stock, or record its one use here; raises Rejected, which rolls the whole
    transaction back."""
    if w.action == "sell":
        sold = conn.execute(
            "UPDATE voucher_stock SET sold_txn = ?, sold_at = ? WHERE voucher_id = ? AND sold_txn IS NULL",
            (txn_id, created_at, w.voucher_id),
        ).rowcount
        if sold != 1:
            raise Rejected(Code.VOUCHER_OUT_OF_STOCK)
    else:
        code = w.refusal(offline_pending(conn)) if w.refusal is not None else None
        if code is not None:
            raise Rejected(code)
        try:
            conn.execute(
                "INSERT INTO voucher_uses (voucher_id, txn_id, action, value, offline, created_at) VALUES (?,?,?,?,?,?)",
                (w.voucher_id, txn_id, w.action, w.value, int(w.offline), created_at),
            )
        except sqlite3.IntegrityError as exc:
            raise Rejected(Code.VOUCHER_USED) from exc
    conn.execute(
        "INSERT INTO voucher_states (voucher_id, body) VALUES (?, ?) ON CONFLICT(voucher_id) DO UPDATE SET body = "
        "excluded.body",
        (w.voucher_id, w.state_doc),
    )


def put_stock(conn: sqlite3.Connection, codes: list[str]) -> None:
    """Head office's whole stock for this till: new codes are added, unsold ones it no longer lists are
    dropped; what this till sold stays (its entry may not have reached head office yet)."""
    listed: dict[str, tuple[str, vc.Voucher]] = {}
    for code in codes:
        try:
            voucher = vc.parse(code)
        except Rejected:
            continue  # not a code: nothing to sell from it
        listed[voucher.voucher_id] = (code, voucher)
    conn.executemany(
        "INSERT INTO voucher_stock (voucher_id, code, kind, value, sku, expires_at) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT(voucher_id) DO NOTHING",
        [(vid, code, v.kind.value, v.value, v.sku, v.expires_at) for vid, (code, v) in listed.items()],
    )
    held = [r[0] for r in conn.execute("SELECT voucher_id FROM voucher_stock WHERE sold_txn IS NULL")]
    conn.executemany("DELETE FROM voucher_stock WHERE voucher_id = ?", [(v,) for v in held if v not in listed])
