"""The loyalty side of a transaction, written inside ``Store.record``'s open transaction.

Every function takes the connection of that transaction and never commits: a sale's lots, coupon
uses, tier and sale state become durable together with its journal row, or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from terminal.errors import Code, Rejected
from terminal.loyalty import Lot
from terminal.model import request_parts
from terminal.ports import Effects  # what the transaction applies (defined with the store's port)
from terminal.store import giftcards, topups, vouchers
from terminal.store.counted import UNCOUNTED
from terminal.store.counters import bump_counter


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at is not None else None


def lots(conn: sqlite3.Connection, member_id: str, now: datetime) -> list[Lot]:
    """The member's lots on this till that can still matter at ``now``: with points left, and locked or
    expiring. A lot already unlocked that never expires is head office's balance like any other point,
    so it is not read (a regular customer's history no longer slows each of their sales)."""
    rows = conn.execute(
        "SELECT lot_id, points, remaining, available_at, expires_at FROM point_lots WHERE member_id = ? "
        "AND remaining > 0 AND (available_at > ? OR expires_at IS NOT NULL)",
        (member_id, _iso(now)),
    ).fetchall()
    return [
        Lot(lot_id, points, remaining, datetime.fromisoformat(avail), datetime.fromisoformat(exp) if exp else None)
        for lot_id, points, remaining, avail, exp in rows
    ]


def spendable(conn: sqlite3.Connection, member_id: str, now: datetime) -> int | None:
    """The member's points that can pay now: the balance less this till's lots still locked or expired."""
    row = conn.execute("SELECT points FROM members WHERE member_id = ?", (member_id,)).fetchone()
    if row is None:
        return None
    return int(row[0]) - held(lots(conn, member_id, now), now)


def held(member_lots: list[Lot], now: datetime) -> int:
    """Points of this till's lots that cannot pay now: still locked, or expired."""
    return sum(
        lot.remaining
        for lot in member_lots
        if now < lot.available_at or (lot.expires_at is not None and now >= lot.expires_at)
    )


def coupon_uses(conn: sqlite3.Connection, coupon_id: str, member_id: str | None) -> tuple[int, int]:
    """Uses of a coupon made on this till: not in head office's count the last pull brought (``UNCOUNTED``; that
    count holds the others), and by ``member_id`` (all of them)."""
    total, mine = conn.execute(
        f"SELECT COALESCE(SUM(CASE WHEN {UNCOUNTED} THEN u.uses END), 0), "
        "COALESCE(SUM(CASE WHEN u.member_id IS ? THEN u.uses END), 0) "
        "FROM coupon_uses u LEFT JOIN journal j ON j.txn_id = u.txn_id WHERE u.coupon_id = ?",
        (member_id, coupon_id),
    ).fetchone()
    return int(total), int(mine)


def pool_headroom(conn: sqlite3.Connection, pool_ids: list[str]) -> dict[str, int]:
    """Units of this till's allocation of each pool not yet redeemed here (absent: no allocation held).

    What this till has used of a pool is the larger of two lower bounds: its own uses (net of the ones
    refunds gave back), and head office's count of them plus those not yet acknowledged (a till rebuilt
    from a damaged file no longer holds all of its own)."""
    if not pool_ids:
        return {}
    marks = ",".join("?" * len(pool_ids))
    held = conn.execute(
        f"SELECT pool_id, allowed, hq_used FROM pool_allocations WHERE pool_id IN ({marks})", pool_ids
    ).fetchall()
    local = {
        str(pool): (int(net), int(unacked))
        for pool, net, unacked in conn.execute(
            "SELECT u.pool, COALESCE(SUM(u.uses), 0), COALESCE(SUM(CASE WHEN j.pushed_at IS NULL THEN u.uses END), 0) "
            f"FROM coupon_uses u LEFT JOIN journal j ON j.txn_id = u.txn_id WHERE u.pool IN ({marks}) GROUP BY u.pool",
            pool_ids,
        ).fetchall()
    }
    found = {}
    for pool_id, allowed, hq_used in held:
        net, unacked = local.get(str(pool_id), (0, 0))
        found[str(pool_id)] = int(allowed) - max(net, int(hq_used) + unacked)
    return found


def _check_pools(conn: sqlite3.Connection, pools: tuple[tuple[str, str], ...]) -> None:
    """Every pooled coupon of the sale takes a unit of this till's allocation of its pool."""
    wanted: dict[str, int] = {}
    for _, pool_id in pools:
        wanted[pool_id] = wanted.get(pool_id, 0) + 1
    headroom = pool_headroom(conn, sorted(wanted))
    for pool_id, units in wanted.items():
        if headroom.get(pool_id, 0) < units:  # a reward's stock is a pool too (terminal.rewards)
            raise Rejected(
                Code.REWARD_ALLOCATION_USED if pool_id.startswith("reward:") else Code.COUPON_ALLOCATION_USED
            )


def _pool_of(conn: sqlite3.Connection, fx: Effects, coupon_id: str, uses: int) -> str | None:
    """The pool a coupon use counts against: a sale's from its coupon document, a give-back's from the use
    it gives back (so a refund returns the unit to the pool it was taken from, whatever the document says now)."""
    if uses > 0:
        return dict(fx.coupon_pools).get(coupon_id)
    if fx.state_of is None:
        return None
    row = conn.execute(
        "SELECT pool FROM coupon_uses WHERE txn_id = ? AND coupon_id = ? AND uses > 0", (fx.state_of, coupon_id)
    ).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else None


def apply(conn: sqlite3.Connection, txn_id: str, fx: Effects, spendable_now: int | None) -> None:
    """Write ``fx`` for transaction ``txn_id``; raises Rejected (rolling the whole transaction
    back) when the points or a coupon were used up by another sale since the quote."""
    if fx.spend_points and (spendable_now is None or spendable_now < fx.spend_points):
        raise Rejected(Code.INSUFFICIENT_POINTS)
    if fx.topup is not None:
        topups.write(conn, txn_id, fx.topup, _iso(fx.now) or "")
    if fx.voucher is not None:
        vouchers.write(conn, txn_id, fx.voucher, _iso(fx.now) or "")
    if fx.gift is not None:
        giftcards.write(conn, txn_id, fx.gift, topups.tally(conn, "", fx.gift.day), _iso(fx.now) or "")
    _stored_value(conn, txn_id, fx)
    for coupon_id, global_limit, member_limit, stated, stated_mine, personal in fx.coupon_limits:
        total, mine = coupon_uses(conn, coupon_id, fx.member_id)
        row = conn.execute("SELECT uses FROM hq_coupon_uses WHERE coupon_id = ?", (coupon_id,)).fetchone()
        chain = int(row[0]) if row else 0  # head office's count, which holds this till's acknowledged uses
        used = max(stated, chain) + total
        if global_limit and used >= global_limit:
            raise Rejected(Code.COUPON_USED_UP)
        by_member = max(stated_mine + mine, used) if personal else stated_mine + mine  # one member's: all its uses
        if member_limit and by_member >= member_limit:
            raise Rejected(Code.COUPON_ALREADY_USED)
    _check_pools(conn, fx.coupon_pools)
    for lot_id, taken in fx.spend_lots:
        conn.execute("UPDATE point_lots SET remaining = remaining - ? WHERE lot_id = ?", (taken, lot_id))
    for lot_id, back in fx.restore_lots:
        conn.execute("UPDATE point_lots SET remaining = MIN(points, remaining + ?) WHERE lot_id = ?", (back, lot_id))
    if fx.claw_lot is not None:
        lot_id, clawed = fx.claw_lot
        conn.execute(
            "UPDATE point_lots SET remaining = MAX(0, remaining - ?), points = MAX(0, points - ?) WHERE lot_id = ?",
            (clawed, clawed, lot_id),
        )
    if fx.new_lot is not None and fx.member_id is not None and fx.new_lot.points > 0:
        lot = fx.new_lot
        conn.execute(
            "INSERT INTO point_lots (lot_id, member_id, points, remaining, available_at, expires_at) VALUES (?,?,?,?,?,?)",
            (lot.lot_id, fx.member_id, lot.points, lot.remaining, _iso(lot.available_at), _iso(lot.expires_at)),
        )
    conn.executemany(
        "INSERT INTO coupon_uses (txn_id, coupon_id, member_id, uses, pool) VALUES (?,?,?,?,?)",
        [(txn_id, c, fx.member_id, uses, _pool_of(conn, fx, c, uses)) for c, uses in fx.coupon_uses],
    )
    if fx.member_id is not None and (fx.window_delta or fx.tier):
        conn.execute(
            "UPDATE members SET window_value = window_value + ?, tier = COALESCE(?, tier) WHERE member_id = ?",
            (fx.window_delta, fx.tier, fx.member_id),
        )
    if fx.sale_state is not None:
        conn.execute("UPDATE sales SET state = ? WHERE txn_id = ?", (json.dumps(fx.sale_state), fx.state_of or txn_id))


REQUESTS_KEPT = 10_000
"""The POS request ids a till answers again: far more than a retry could come after (the oldest are dropped)."""


def keep_request(conn: sqlite3.Connection, request_id: str, txn_id: str, answer: str) -> None:
    """Keep the POS's ``request_id`` (a ``request_key``: with its request's digest) with the sale ``txn_id`` recorded
    under it and the answer given, in the sale's transaction; an id another sale took first (the same request at the
    same moment) refuses this one."""
    request_id, body = request_parts(request_id)
    if conn.execute("SELECT 1 FROM pos_requests WHERE request_id = ?", (request_id,)).fetchone():
        raise Rejected(Code.REQUEST_IN_FLIGHT)
    conn.execute(
        "INSERT INTO pos_requests (request_id, txn_id, answer, body) VALUES (?,?,?,?)",
        (request_id, txn_id, answer, body),
    )
    conn.execute("DELETE FROM pos_requests WHERE rowid <= (SELECT MAX(rowid) FROM pos_requests) - ?", (REQUESTS_KEPT,))


RECEIPT_TABLES = ("receipt_digests", "receipt_numbers")
"""The rows that stop a receipt earning twice, each with the time its receipt prints (``printed_at``)."""


def forget_receipts(conn: sqlite3.Connection, before: str, batch: int) -> int:
    """Delete at most ``batch`` rows of each of ``RECEIPT_TABLES`` whose receipt was printed before ``before`` (UTC
    ISO: such a receipt is refused as too old, rows or none); rows of a receipt whose time was not read stay."""
    deleted = 0
    for table in RECEIPT_TABLES:
        deleted += conn.execute(
            f"DELETE FROM {table} WHERE rowid IN "
            f"(SELECT rowid FROM {table} WHERE printed_at < ? ORDER BY printed_at LIMIT ?)",
            (before, batch),
        ).rowcount
    return deleted


def check_unchanged(conn: sqlite3.Connection, fx: Effects) -> None:
    """A return is priced from the sale as it was read; inside the COMMIT the sale must still be so (the
    local API serves each request on its own thread: two returns of one sale may race)."""
    if fx.state_was is None or fx.state_of is None:
        return
    row = conn.execute("SELECT state, voided_by FROM sales WHERE txn_id = ?", (fx.state_of,)).fetchone()
    if row is not None and row[1] is not None:
        raise Rejected(Code.ALREADY_VOIDED)
    if row is None or row[0] is None or json.loads(row[0]) != fx.state_was:
        raise Rejected(Code.SALE_CHANGED)


def _unreprinted(conn: sqlite3.Connection, txn_id: str, store_id: str, number: str) -> str:
    """The key the receipt ``number`` of the sale ``txn_id`` (its journal row written) is kept under; raises
    ``receipt_reprint`` when a sale of the store holds the number with the same lines and total: a reprint prints
    the receipt's lines again. Another basket under a number sold (another register numbering alike, a POS whose
    numbers started again) is another receipt: kept under the number and its sale's id, and its own reprints are
    refused as the first's are."""
    rows = conn.execute(
        "SELECT txn_id FROM receipt_numbers WHERE store_id = ? AND (number = ? OR (number > ? AND number < ?))",
        (store_id, number, number + "#", number + "$"),
    ).fetchall()
    if not rows:
        return number
    basket = _basket(conn, txn_id)
    if basket is None or any(_basket(conn, str(r[0])) in (basket, None) for r in rows):
        raise Rejected(Code.RECEIPT_REPRINT)
    return f"{number}#{txn_id}"


def _basket(conn: sqlite3.Connection, txn_id: str) -> str | None:
    """The lines and total of the sale ``txn_id`` as its journal holds them (None: no such entry)."""
    row = conn.execute("SELECT payload FROM journal WHERE txn_id = ?", (txn_id,)).fetchone()
    if row is None:
        return None
    payload = json.loads(row[0])
    return json.dumps([payload.get("lines"), payload.get("total")], sort_keys=True)


def _stored_value(conn: sqlite3.Connection, txn_id: str, fx: Effects) -> None:
    """The stored-value side: balance, the code's single use, and the offline tally."""
    if fx.payment_code is not None:
        if conn.execute("SELECT 1 FROM payment_codes WHERE code_id = ?", (fx.payment_code,)).fetchone():
            raise Rejected(Code.PAYMENT_CODE_REPLAYED)
        conn.execute(
            "INSERT INTO payment_codes (code_id, txn_id, created_at) VALUES (?,?,?)",
            (fx.payment_code, txn_id, _iso(fx.now)),
        )
    if fx.sun_counter is not None:
        bump_counter(conn, *fx.sun_counter, confirmed=fx.sun_confirmed)
    if fx.receipt_digest is not None:
        if conn.execute("SELECT 1 FROM receipt_digests WHERE digest = ?", (fx.receipt_digest,)).fetchone():
            raise Rejected(Code.RECEIPT_ALREADY_USED)
        conn.execute(
            "INSERT INTO receipt_digests (digest, txn_id, created_at, printed_at) VALUES (?,?,?,?)",
            (fx.receipt_digest, txn_id, _iso(fx.now), fx.receipt_printed),
        )
    if fx.receipt_number is not None:  # the same receipt printed again, its bytes another's (a COPY header)
        conn.execute(
            "INSERT INTO receipt_numbers (store_id, number, txn_id, digest, created_at, printed_at) VALUES (?,?,?,?,?,?)",
            (
                fx.receipt_number[0],
                _unreprinted(conn, txn_id, *fx.receipt_number),
                txn_id,
                fx.receipt_digest,
                _iso(fx.now),
                fx.receipt_printed,
            ),
        )
    if not fx.stored_value or fx.member_id is None:
        return
    if fx.stored_value > 0:
        row = conn.execute("SELECT stored_value FROM members WHERE member_id = ?", (fx.member_id,)).fetchone()
        if row is None or int(row[0]) < fx.stored_value:
            raise Rejected(Code.INSUFFICIENT_BALANCE)
    conn.execute(
        "UPDATE members SET stored_value = stored_value - ? WHERE member_id = ?", (fx.stored_value, fx.member_id)
    )
    day = fx.now.date().isoformat() if fx.now else ""
    conn.execute(
        "INSERT INTO sv_payments (txn_id, member_id, amount, offline, day, created_at) VALUES (?,?,?,?,?,?)",
        (txn_id, fx.member_id, fx.stored_value, int(fx.offline), day, _iso(fx.now)),
    )
