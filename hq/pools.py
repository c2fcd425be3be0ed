"""Flash-drop quantity pools: a chain-wide quantity N of one offer, redeemed at most N times even while
tills are offline (docs/loyalty.md, "Flash drops").

A coupon whose document carries ``"pool": "<pool_id>"`` redeems from the pool. Head office never lets a
till redeem on trust: each till holds an **allocation** (``allowed``, cumulative) and redeems only within
it, offline too. The invariant, kept under the pool row's lock (``tx.for_update``) by every writer:

    sum of allowed over all tills <= quantity

``grant`` runs when a till pulls: for each open pool, a till whose headroom (allowed - used) fell below
half a chunk is topped up to a chunk of headroom, never beyond what is left unallocated. Ingest counts
every redemption against (pool, terminal) in the push's own transaction (``count``); a void or refund that
gives the coupon back gives the unit back (``release``). A till that redeemed beyond its allowance (only
a stolen credential can: an honest till refuses first) is flagged by ingest and granted nothing more.

Allocation a till holds stays held while it is offline: head office cannot know whether it was redeemed
until the till pushes. Closing a pool (``close``) stops every grant and takes every allocation off the
tills at their next pull.

The chunk: given at creation, or ``default_chunk``: a quarter of an even share per registered till,
``max(1, N // (4 * tills))``, capped at ``MAX_DEFAULT_CHUNK``. A quarter share lets a busy till come back
for more several times before the pool runs dry, while what sits idle on tills that stay offline is
small; the cap keeps one till from holding a large slice of a big drop.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from hq.db.engine import Tx
from hq.errors import HqError
from sync.protocol import ErrorCode

MAX_DEFAULT_CHUNK = 100
MAX_QUANTITY = 10_000_000
POOL_ID_MAX = 128


class PoolRefused(HqError):
    """Creating or changing a pool was refused; ``code`` is stable (``pool_invalid``, ``pool_below_allocated``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Allocation:
    pool_id: str
    terminal_id: str
    allowed: int
    used: int

    @property
    def headroom(self) -> int:
        return self.allowed - self.used


@dataclass(frozen=True, slots=True)
class PoolState:
    pool_id: str
    quantity: int
    chunk: int
    closed: bool
    used: int
    """Redemptions chain-wide, net of give-backs (may pass ``quantity`` only through a flagged till)."""
    allocations: tuple[Allocation, ...]

    @property
    def allocated(self) -> int:
        return sum(a.allowed for a in self.allocations)


@dataclass(frozen=True, slots=True)
class Counted:
    """One redemption counted: its number among the till's and among the chain's uses of the pool."""

    pool_id: str
    terminal_use: int
    allowed: int
    chain_use: int
    quantity: int

    @property
    def beyond_allocation(self) -> bool:
        return self.terminal_use > self.allowed

    @property
    def beyond_quantity(self) -> bool:
        return self.chain_use > self.quantity


# -- pure: the arithmetic ---------------------------------------------------------------------------


def default_chunk(quantity: int, tills: int) -> int:
    """A quarter of an even share per till, at least 1, at most ``MAX_DEFAULT_CHUNK``."""
    return min(MAX_DEFAULT_CHUNK, max(1, quantity // (4 * max(1, tills))))


def ceiling(quantity: int, chunk: int, tills: int) -> int:
    """The most one till is ever allowed of a pool: twice an even share, at least a chunk. What bounds a
    stolen till credential that redeems, pulls and redeems again: the other tills' share stays theirs."""
    return min(quantity, max(chunk, -(-2 * quantity // max(1, tills))))


def top_up(quantity: int, chunk: int, allocated: int, allowed: int, used: int, most: int | None = None) -> int:
    """Units to add to a till's allowance: when its headroom fell below half a chunk, up to a chunk of
    headroom, never beyond what the pool has not allocated (so the sum of allowances stays <= quantity)
    nor beyond the till's ceiling (``most``). A till that redeemed beyond its allowance gets nothing."""
    headroom = allowed - used
    if headroom < 0 or 2 * headroom >= chunk:
        return 0
    room = quantity - allocated if most is None else min(quantity - allocated, most - allowed)
    return max(0, min(chunk - headroom, room))


def pool_of(body_json: str) -> str | None:
    """The pool a stored coupon document names (None: not pooled, or not a pool id)."""
    try:
        pool = json.loads(body_json).get("pool")
    except (ValueError, AttributeError):
        return None
    return pool if isinstance(pool, str) and 0 < len(pool) <= POOL_ID_MAX else None


def _check(pool_id: str, quantity: int, chunk: int | None) -> None:
    if not 0 < len(pool_id) <= POOL_ID_MAX or pool_id != pool_id.strip():
        raise PoolRefused(ErrorCode.POOL_INVALID, f"a pool id has 1..{POOL_ID_MAX} characters, got {pool_id!r}")
    if not 0 < quantity <= MAX_QUANTITY:
        raise PoolRefused(ErrorCode.POOL_INVALID, f"a pool's quantity is 1..{MAX_QUANTITY}, got {quantity}")
    if chunk is not None and not 0 < chunk <= quantity:
        raise PoolRefused(ErrorCode.POOL_INVALID, f"a pool's chunk is 1..quantity ({quantity}), got {chunk}")


# -- head office's tables ---------------------------------------------------------------------------


def create(tx: Tx, pool_id: str, quantity: int, now: str, chunk: int | None = None) -> PoolState:
    """Create a pool (idempotent for the same quantity). Changing the quantity of an existing pool is
    allowed down to what is already allocated to tills or used chain-wide, never below
    (``pool_below_allocated``)."""
    _check(pool_id, quantity, chunk)
    row = tx.one(f"SELECT quantity, chunk, used FROM pools WHERE pool_id = ?{tx.for_update}", [pool_id])
    if row is None:
        tills = tx.one("SELECT COUNT(*) FROM terminals WHERE revoked = 0")
        size = chunk if chunk is not None else default_chunk(quantity, int(tills[0]) if tills else 0)
        tx.run(
            "INSERT INTO pools (pool_id, quantity, chunk, used, created_at, closed) VALUES (?, ?, ?, 0, ?, 0) "
            "ON CONFLICT (pool_id) DO NOTHING",
            [pool_id, quantity, size, now],
        )
        return state(tx, pool_id)
    allocated = max(_allocated(tx, pool_id), int(row[2]))
    if quantity < allocated:
        raise PoolRefused(
            ErrorCode.POOL_BELOW_ALLOCATED,
            f"pool {pool_id}: {allocated} units are already allocated to tills or used; "
            "the quantity may not go below it",
        )
    if quantity != int(row[0]) or (chunk is not None and chunk != int(row[1])):
        tx.run(
            "UPDATE pools SET quantity = ?, chunk = ? WHERE pool_id = ?",
            [quantity, chunk if chunk is not None else min(int(row[1]), quantity), pool_id],
        )
    return state(tx, pool_id)


def close(tx: Tx, pool_id: str) -> bool:
    """No more grants; every till drops its allocation at its next pull. False: no such open pool."""
    return tx.run("UPDATE pools SET closed = 1 WHERE pool_id = ? AND closed = 0", [pool_id]) > 0


def _allocated(tx: Tx, pool_id: str) -> int:
    row = tx.one("SELECT COALESCE(SUM(allowed), 0) FROM pool_allocations WHERE pool_id = ?", [pool_id])
    return int(row[0]) if row else 0


def _held(tx: Tx, terminal_id: str) -> dict[str, tuple[int, int]]:
    """This till's (allowed, used) per pool; a blocked allocation shows no headroom ever again."""
    rows = tx.all("SELECT pool_id, allowed, used, blocked FROM pool_allocations WHERE terminal_id = ?", [terminal_id])
    return {str(p): (int(a), max(int(u), int(a) + 1) if int(b) else int(u)) for p, a, u, b in rows}


def _tills(tx: Tx) -> int:
    row = tx.one("SELECT COUNT(*) FROM terminals WHERE revoked = 0")
    return int(row[0]) if row else 0


def wanted(tx: Tx, terminal_id: str) -> list[str]:
    """The open pools this till's allocation of needs a top-up from, as far as a read without a lock shows
    (``grant`` computes again under the pool's lock); most pulls need none and write nothing."""
    pools = tx.all("SELECT pool_id, quantity, chunk FROM pools WHERE closed = 0 ORDER BY pool_id")
    if not pools:
        return []
    held = _held(tx, terminal_id)
    totals = {
        str(p): int(n)
        for p, n in tx.all("SELECT pool_id, SUM(allowed) FROM pool_allocations GROUP BY pool_id")  # one scan
    }
    tills = _tills(tx)
    return [
        str(pool_id)
        for pool_id, quantity, chunk in pools
        if top_up(
            int(quantity),
            int(chunk),
            totals.get(str(pool_id), 0),
            *held.get(str(pool_id), (0, 0)),
            ceiling(int(quantity), int(chunk), tills),
        )
        > 0
    ]


def allocations(tx: Tx, terminal_id: str) -> list[Allocation]:
    """This till's allocations of the open pools."""
    rows = tx.all(
        "SELECT a.pool_id, a.allowed, a.used FROM pool_allocations a JOIN pools p ON p.pool_id = a.pool_id "
        "WHERE a.terminal_id = ? AND p.closed = 0 ORDER BY a.pool_id",
        [terminal_id],
    )
    return [Allocation(str(p), terminal_id, int(a), int(u)) for p, a, u in rows]


def grant(tx: Tx, terminal_id: str, now: str) -> list[Allocation]:
    """Top up this till's allocation of every open pool that needs it; returns its allocations of the open
    pools. A pool is read without a lock first; one that needs a top-up is locked and read again, so
    concurrent pulls (several head-office processes) never allocate past the quantity."""
    for pool_id in wanted(tx, terminal_id):
        _grant_one(tx, pool_id, terminal_id, now)
    return allocations(tx, terminal_id)


def _grant_one(tx: Tx, pool_id: str, terminal_id: str, now: str) -> int:
    """Under the pool row's lock: the top-up, computed again from what is committed now."""
    row = tx.one(f"SELECT quantity, chunk, closed FROM pools WHERE pool_id = ?{tx.for_update}", [pool_id])
    if row is None or int(row[2]):
        return 0
    mine = tx.one(
        "SELECT allowed, used, blocked FROM pool_allocations WHERE pool_id = ? AND terminal_id = ?",
        [pool_id, terminal_id],
    )
    if mine is not None and int(mine[2]):
        return 0  # it redeemed beyond its allowance once: voids of its own sales do not lift that
    allowed, used = (int(mine[0]), int(mine[1])) if mine else (0, 0)
    quantity, chunk = int(row[0]), int(row[1])
    more = top_up(quantity, chunk, _allocated(tx, pool_id), allowed, used, ceiling(quantity, chunk, _tills(tx)))
    if more > 0:
        tx.run(
            "INSERT INTO pool_allocations (pool_id, terminal_id, allowed, used, updated_at) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (pool_id, terminal_id) DO UPDATE SET allowed = pool_allocations.allowed + excluded.allowed, "
            "updated_at = excluded.updated_at",
            [pool_id, terminal_id, more, now],
        )
    return more


def count(tx: Tx, terminal_id: str, uses: Sequence[tuple[str, str, str]], now: str) -> list[Counted | None]:
    """Count redemptions ``(txn_id, coupon_id, pool_id)`` of one terminal, in order; each answer says which
    use of the till's and of the chain's it was (None: that use was counted before, nothing counted twice).

    Pool rows are locked before allocation rows, in pool-id order, as ``grant`` locks them."""
    fresh = tx.many_returning(
        "INSERT INTO pool_uses (txn_id, coupon_id, pool_id, terminal_id, released) VALUES (?, ?, ?, ?, 0) "
        "ON CONFLICT (txn_id, coupon_id) DO NOTHING RETURNING pool_id",
        [(txn, coupon, pool, terminal_id) for txn, coupon, pool in uses],
    )
    groups: dict[str, list[int]] = defaultdict(list)
    for n, row in enumerate(fresh):
        if row is not None:
            groups[uses[n][2]].append(n)
    answers: list[Counted | None] = [None] * len(uses)
    for pool_id in sorted(groups):
        indexes = groups[pool_id]
        chain = tx.one(
            "UPDATE pools SET used = used + ? WHERE pool_id = ? RETURNING used, quantity", [len(indexes), pool_id]
        )
        mine = tx.one(
            "INSERT INTO pool_allocations (pool_id, terminal_id, allowed, used, updated_at) VALUES (?, ?, 0, ?, ?) "
            "ON CONFLICT (pool_id, terminal_id) DO UPDATE SET used = pool_allocations.used + excluded.used, "
            "updated_at = excluded.updated_at RETURNING used, allowed",
            [pool_id, terminal_id, len(indexes), now],
        )
        assert mine is not None
        chain_use = int(chain[0]) - len(indexes) if chain else 0
        quantity = int(chain[1]) if chain else 0  # a pool head office never created: every use is beyond it
        terminal_use, allowed = int(mine[0]) - len(indexes), int(mine[1])
        for n in indexes:
            chain_use, terminal_use = chain_use + 1, terminal_use + 1
            answers[n] = Counted(pool_id, terminal_use, allowed, chain_use, quantity)
        if int(mine[0]) > allowed:  # beyond its allowance: no more grants for this till, whatever it voids
            tx.run(
                "UPDATE pool_allocations SET blocked = 1 WHERE pool_id = ? AND terminal_id = ?", [pool_id, terminal_id]
            )
    return answers


def strand(tx: Tx, terminal_id: str, now: str) -> None:
    """A revoked till keeps only what it used: the rest of its allowances go back to the pools (its pushes
    are refused from now on, so it cannot redeem them anyway)."""
    tx.run(
        "UPDATE pool_allocations SET allowed = CASE WHEN used > 0 THEN used ELSE 0 END, updated_at = ? "
        "WHERE terminal_id = ? AND allowed > used",
        [now, terminal_id],
    )


def release(tx: Tx, original_txn: str, only: Sequence[str] | None, now: str) -> list[str]:
    """Give back the pool units of ``original_txn``'s coupons (all, or ``only`` those) to the till that
    redeemed them; returns the pools given back to. Each unit is given back once."""
    rows = tx.all(
        "SELECT coupon_id, pool_id, terminal_id FROM pool_uses WHERE txn_id = ? AND released = 0 ORDER BY pool_id",
        [original_txn],
    )
    back = []
    for coupon_id, pool_id, terminal_id in rows:
        if only is not None and coupon_id not in only:
            continue
        tx.run("UPDATE pools SET used = used - 1 WHERE pool_id = ?", [pool_id])
        tx.run(
            "UPDATE pool_allocations SET used = used - 1, updated_at = ? WHERE pool_id = ? AND terminal_id = ?",
            [now, pool_id, terminal_id],
        )
        tx.run("UPDATE pool_uses SET released = 1 WHERE txn_id = ? AND coupon_id = ?", [original_txn, coupon_id])
        back.append(str(pool_id))
    return back


def state(tx: Tx, pool_id: str) -> PoolState:
    """A pool's quantity, chunk, redemptions chain-wide and each till's allocation (for reports)."""
    row = tx.one("SELECT quantity, chunk, closed, used FROM pools WHERE pool_id = ?", [pool_id])
    if row is None:
        raise PoolRefused(ErrorCode.NOT_FOUND, f"no pool {pool_id!r}")
    tills = tx.all(
        "SELECT terminal_id, allowed, used FROM pool_allocations WHERE pool_id = ? ORDER BY terminal_id", [pool_id]
    )
    return PoolState(
        pool_id,
        int(row[0]),
        int(row[1]),
        bool(row[2]),
        int(row[3]),
        tuple(Allocation(pool_id, str(t), int(a), int(u)) for t, a, u in tills),
    )


HEAD_OFFICE = "head office"
"""The holder, among a pool's allocations, of the units head office hands out itself (the wallet's rewards)."""


def take(tx: Tx, pool_id: str, txn_id: str, unit_id: str, now: str) -> bool:
    """Head office takes one unit of a pool for itself (``txn_id``, ``unit_id``: what a give-back names),
    under the pool row's lock: from what it holds, else from what no till holds, so the sum of allowances
    stays <= quantity. False: the pool is closed, unknown or all of it is allocated."""
    row = tx.one(f"SELECT quantity, closed FROM pools WHERE pool_id = ?{tx.for_update}", [pool_id])
    if row is None or int(row[1]):
        return False
    mine = tx.one(
        "SELECT allowed, used FROM pool_allocations WHERE pool_id = ? AND terminal_id = ?", [pool_id, HEAD_OFFICE]
    )
    more = 0 if mine is not None and int(mine[0]) > int(mine[1]) else 1
    if more and _allocated(tx, pool_id) >= int(row[0]):
        return False
    tx.run(
        "INSERT INTO pool_allocations (pool_id, terminal_id, allowed, used, updated_at) VALUES (?, ?, ?, 1, ?) "
        "ON CONFLICT (pool_id, terminal_id) DO UPDATE SET allowed = pool_allocations.allowed + ?, "
        "used = pool_allocations.used + 1, updated_at = excluded.updated_at",
        [pool_id, HEAD_OFFICE, more, now, more],
    )
    tx.run("UPDATE pools SET used = used + 1 WHERE pool_id = ?", [pool_id])
    tx.run(
        "INSERT INTO pool_uses (txn_id, coupon_id, pool_id, terminal_id, released) VALUES (?, ?, ?, ?, 0)",
        [txn_id, unit_id, pool_id, HEAD_OFFICE],
    )
    return True
