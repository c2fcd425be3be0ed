"""The rewards catalogue: rewards bought with points, in the member's wallet or at a till (docs/rewards.md).

A reward (``terminal.rewards``) is an ``item`` given free, a ``coupon`` issued to the member, or a partner's
voucher (``partner_code``: codes head office holds in stock and hands out once). Its document goes down to the
tills as the rule document ``reward:<id>``; a reward with a limited stock counts it in the flash-drop pool
``reward:<id>`` (``hq.pools``), so every till sells only within the allocation it was granted at pull, offline
too, and the wallet takes its units from what no till holds: the stock is never oversold.

    put / add_codes      an administrator defines a reward, loads partner codes (the pool's quantity)
    buy / refund         the wallet's purchase (points out through the ledger's spend path) and its reversal
    check / count        ingest stages of a till's sale that took rewards: quarantine a reward the catalogue
                         does not sell (at that price, or at all now), or one beyond the till's allocation, and
                         a refund or void giving back points it may not (``check_returns``); count the units,
                         record the purchase and hand out what it gives; a void gives back all but what the
                         member keeps (a handed-out partner code, a used coupon)

Points spent on rewards are a sale's spend in the ledger (``hq.ledger``): a till's as its sale's
``points_redeemed`` (``reward_points`` of them bought rewards), the wallet's as a sale entry of its own
(``reward:<purchase_id>``), given back by a refund entry, so the books balance either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hq import audit, ledger, merchants, pools, versions
from hq.db.engine import Tx
from hq.errors import HqError
from hq.ingest import NOT_APPLIED, Batch, Effect, bump_versions, payload_json
from hq.policy import Breach
from sync.protocol import ErrorCode, Reason, RefundPayload, SalePayload, VoidPayload
from terminal import loyalty as ly
from terminal.rewards import BOUGHT, PREFIX, Reward, RewardError, RewardKind, doc_id, parse_reward, pool_of, returned

CODE_PATTERN = re.compile(r"^[\x21-\x7e]{1,64}$")
MAX_CODES = 100_000
WALLET = "wallet"
TILL = "till"


class RewardRefused(HqError):
    """A reward, a purchase or a refund was refused; ``code`` is stable (``ErrorCode``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Purchase:
    purchase_id: str
    reward_id: str
    member_id: str
    points: int
    channel: str
    coupon_id: str | None
    code: str | None
    created_at: str
    refunded_at: str | None
    terminal_id: str | None = None
    txn_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Offered:
    """A reward as the wallet and the reports show it: with what is left of its stock (None: no limit)."""

    reward: Reward
    left: int | None


def unit_of(reward_id: str) -> str:
    """The unit id a reward's use is counted under in its pool (``pool_uses.coupon_id``)."""
    return PREFIX + reward_id


# -- the catalogue ------------------------------------------------------------------------------------------


def _parse(doc: dict[str, Any]) -> Reward:
    try:
        reward = parse_reward(doc)
    except RewardError as exc:
        raise RewardRefused(ErrorCode.REWARD_INVALID, str(exc)) from exc
    if reward.kind is RewardKind.PARTNER_CODE and reward.stock is not None:
        raise RewardRefused(ErrorCode.REWARD_INVALID, "a partner_code reward's stock is the codes loaded for it")
    if reward.stock == 0:
        raise RewardRefused(ErrorCode.REWARD_INVALID, "stock: at least 1 (or none for no limit)")
    return reward


def put(tx: Tx, doc: dict[str, Any], now: str, by: str = "") -> Reward:
    """Define or change a reward; its document goes down to the tills and its stock is its pool's quantity
    (never below what tills already hold: ``reward_invalid``)."""
    reward = _parse(doc)
    held = tx.one(f"SELECT kind FROM rewards WHERE reward_id = ?{tx.for_update}", [reward.reward_id])
    if held is not None and str(held[0]) != reward.kind.value:
        raise RewardRefused(ErrorCode.REWARD_INVALID, f"reward {reward.reward_id} is a {held[0]}: its kind stays")
    if reward.stock is not None:
        try:
            pools.create(tx, pool_of(reward.reward_id), reward.stock, now)
        except pools.PoolRefused as exc:
            raise RewardRefused(ErrorCode.REWARD_INVALID, str(exc)) from exc
    body = payload_json(reward.doc())
    tx.run(
        "INSERT INTO rewards (reward_id, kind, points, body, active, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reward_id) DO UPDATE SET points = excluded.points, "
        "body = excluded.body, active = excluded.active, updated_at = excluded.updated_at",
        [reward.reward_id, reward.kind.value, reward.points, body, int(reward.active), now, now],
    )
    _publish(tx, doc_id(reward.reward_id), body, now)
    audit.append(tx, by or "head office", "reward.put", reward.reward_id, "", reward.doc())
    return reward


def _publish(tx: Tx, rule_id: str, body: str, now: str) -> None:
    """The reward's document in the tills' feed (a rule document), its version kept for pricing checks."""
    tx.run(
        "INSERT INTO rule_docs (rule_id, body, version, deleted) VALUES (?, ?, 0, 0) "
        "ON CONFLICT (rule_id) DO UPDATE SET body = excluded.body, deleted = 0",
        [rule_id, body],
    )
    bump_versions(tx, "rule_docs", "rule_id", [rule_id])
    versions.remember(tx, "rule_docs", rule_id, {"body": body}, now)


def add_codes(tx: Tx, reward_id: str, codes: Sequence[str], now: str, by: str = "") -> int:
    """Load partner codes for a ``partner_code`` reward (each once; one already held is skipped); the
    reward's stock becomes every code loaded. How many were new."""
    reward = get(tx, reward_id)
    if reward.kind is not RewardKind.PARTNER_CODE:
        raise RewardRefused(ErrorCode.REWARD_INVALID, f"reward {reward_id} is not a partner_code reward")
    bad = [c for c in codes if not CODE_PATTERN.match(c)]
    if bad or not 0 < len(codes) <= MAX_CODES:
        raise RewardRefused(
            ErrorCode.REWARD_INVALID, f"1..{MAX_CODES} codes of 1..64 printable characters, no spaces; bad: {bad[:3]}"
        )
    added = tx.many_returning(
        "INSERT INTO reward_codes (reward_id, code, purchase_id, added_at) VALUES (?, ?, NULL, ?) "
        "ON CONFLICT (reward_id, code) DO NOTHING RETURNING code",
        [(reward_id, c, now) for c in dict.fromkeys(codes)],
    )
    total = tx.one("SELECT COUNT(*) FROM reward_codes WHERE reward_id = ?", [reward_id])
    pools.create(tx, pool_of(reward_id), int(total[0]) if total else 0, now)
    new = sum(row is not None for row in added)
    audit.append(
        tx, by or "head office", "reward.codes", reward_id, "", {"added": new, "held": int(total[0]) if total else 0}
    )
    return new


def get(tx: Tx, reward_id: str) -> Reward:
    row = tx.one("SELECT body FROM rewards WHERE reward_id = ?", [reward_id])
    if row is None:
        raise RewardRefused(ErrorCode.REWARD_UNKNOWN, f"no reward {reward_id!r}")
    return parse_reward(json.loads(str(row[0])))


def catalogue(tx: Tx, *, active_only: bool = False) -> list[Offered]:
    """Every reward, by points then id, with what is left of its stock for head office to hand out."""
    rows = tx.all("SELECT body FROM rewards ORDER BY points, reward_id")
    left = {
        str(p): int(q) - int(a)
        for p, q, a in tx.all(
            "SELECT p.pool_id, p.quantity, COALESCE(SUM(CASE WHEN a.terminal_id = ? THEN a.used ELSE a.allowed END), 0) "
            "FROM pools p LEFT JOIN pool_allocations a ON a.pool_id = p.pool_id "
            "WHERE p.pool_id LIKE ? GROUP BY p.pool_id, p.quantity",
            [pools.HEAD_OFFICE, PREFIX + "%"],
        )
    }
    out = []
    for (body,) in rows:
        reward = parse_reward(json.loads(str(body)))
        if active_only and not reward.active:
            continue
        pool = reward.pool_id
        out.append(Offered(reward, None if pool is None else max(0, left.get(pool, 0))))
    return out


# -- the wallet's purchase and its refund --------------------------------------------------------------------


PURCHASE_COLUMNS = (
    "purchase_id, reward_id, member_id, points, channel, coupon_id, code, created_at, refunded_at, terminal_id, txn_id"
)


def _purchase(row: Sequence[Any]) -> Purchase:
    return Purchase(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        str(row[4]),
        row[5] and str(row[5]),
        row[6] and str(row[6]),
        str(row[7]),
        row[8] and str(row[8]),
        row[9] and str(row[9]),
        row[10] and str(row[10]),
    )


def purchase(tx: Tx, purchase_id: str) -> Purchase | None:
    row = tx.one(f"SELECT {PURCHASE_COLUMNS} FROM reward_purchases WHERE purchase_id = ?", [purchase_id])
    return _purchase(row) if row is not None else None


def of_member(tx: Tx, member_id: str, limit: int = 50) -> list[Purchase]:
    rows = tx.all(
        f"SELECT {PURCHASE_COLUMNS} FROM reward_purchases WHERE member_id = ? ORDER BY created_at DESC, purchase_id "
        "LIMIT ?",
        [member_id, limit],
    )
    return [_purchase(r) for r in rows]


def buy(tx: Tx, member_id: str, reward_id: str, purchase_id: str, now: str) -> Purchase:
    """The member buys one unit of a reward with points, at head office (the wallet). The same
    ``purchase_id`` again returns the first purchase and changes nothing. Refused, writing nothing:
    ``reward_unknown`` (unknown or not offered), ``unknown_member``, ``blocked_member``,
    ``insufficient_points`` (the member's spendable points: lots still locked or expired do not pay, as at a
    till), ``reward_sold_out``."""
    held = purchase(tx, purchase_id)
    if held is not None:
        if held.member_id != member_id:
            raise RewardRefused(ErrorCode.REWARD_UNKNOWN, "that purchase is another member's")
        return held
    reward = get(tx, reward_id)
    if not reward.active:
        raise RewardRefused(ErrorCode.REWARD_UNKNOWN, f"reward {reward_id} is not offered now")
    row = tx.one(f"SELECT points, status, deleted FROM members WHERE member_id = ?{tx.for_update}", [member_id])
    if row is None or int(row[2]):
        raise RewardRefused(ErrorCode.UNKNOWN_MEMBER, f"no member {member_id}")
    if str(row[1]) != "active":
        raise RewardRefused(ErrorCode.BLOCKED_MEMBER, f"member {member_id} is {row[1]}")
    can_pay = ledger.spendable(tx, member_id, int(row[0]), now)  # locked lots held back, as a till does
    if can_pay < reward.points:
        raise RewardRefused(
            ErrorCode.INSUFFICIENT_POINTS,
            f"the reward costs {reward.points} points; the member can spend {max(0, can_pay)} now",
        )
    source = PREFIX + purchase_id
    if reward.pool_id is not None and not pools.take(tx, reward.pool_id, source, unit_of(reward_id), now):
        raise RewardRefused(ErrorCode.REWARD_SOLD_OUT, f"reward {reward_id} is sold out")
    coupon_id, code = _give(tx, reward, member_id, purchase_id, now)
    tx.run("UPDATE members SET points = points - ? WHERE member_id = ?", [reward.points, member_id])
    bump_versions(tx, "members", "member_id", [member_id])
    entry = ledger.Entry(source, "sale", member_id, merchants.CHAIN_MERCHANT, now[:10], now, spent=reward.points)
    ledger.post(tx, entry, ly.LotPolicy())
    made = Purchase(purchase_id, reward_id, member_id, reward.points, WALLET, coupon_id, code, now, None)
    _record(tx, made)
    return made


def _record(tx: Tx, made: Purchase) -> None:
    tx.run(
        f"INSERT INTO reward_purchases ({PURCHASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            made.purchase_id,
            made.reward_id,
            made.member_id,
            made.points,
            made.channel,
            made.coupon_id,
            made.code,
            made.created_at,
            made.refunded_at,
            made.terminal_id,
            made.txn_id,
        ],
    )


def _give(tx: Tx, reward: Reward, member_id: str, purchase_id: str, now: str) -> tuple[str | None, str | None]:
    """What the purchase hands the member: a personal single-use coupon (an item: the item free; a coupon:
    the catalogue's), or a partner code taken from stock once. (coupon id, partner code)."""
    if reward.kind is RewardKind.PARTNER_CODE:
        row = tx.one(
            "SELECT code FROM reward_codes WHERE reward_id = ? AND purchase_id IS NULL ORDER BY code LIMIT 1",
            [reward.reward_id],
        )
        if row is None:
            raise RewardRefused(ErrorCode.REWARD_SOLD_OUT, f"reward {reward.reward_id} has no code left")
        tx.run(
            "UPDATE reward_codes SET purchase_id = ? WHERE reward_id = ? AND code = ?",
            [purchase_id, reward.reward_id, row[0]],
        )
        return None, str(row[0])
    if reward.kind is RewardKind.ITEM:
        body: dict[str, Any] = {"kind": "free_item", "target": "items", "skus": [reward.sku]}
    else:
        body = json.loads(reward.coupon or "{}")
    coupon_id = f"{BOUGHT}{purchase_id}"[:128]
    body = {**body, "coupon_id": coupon_id, "member_id": member_id, "single_use": True, "text": reward.title}
    text = payload_json(body)
    tx.run(
        "INSERT INTO coupons (coupon_id, member_id, body, uses, version, deleted) VALUES (?, ?, ?, 0, 0, 0)",
        [coupon_id, member_id, text],
    )
    bump_versions(tx, "coupons", "coupon_id", [coupon_id])
    versions.remember(tx, "coupons", coupon_id, {"body": text}, now)
    return coupon_id, None


def refund(tx: Tx, purchase_id: str, now: str, by: str = "") -> Purchase:
    """Give a wallet purchase back: its points return to the lots they came from, its coupon is withdrawn and
    its stock unit goes back to the pool. A partner code is retired, never handed out again (the member has
    seen it), so its unit stays spent. ``reward_not_refundable``: refunded already, its coupon was used, or
    bought at a till (that sale is voided at the till)."""
    row = tx.one(f"SELECT {PURCHASE_COLUMNS} FROM reward_purchases WHERE purchase_id = ?{tx.for_update}", [purchase_id])
    if row is None:
        raise RewardRefused(ErrorCode.NOT_FOUND, f"no purchase {purchase_id!r}")
    made = _purchase(row)
    if made.refunded_at is not None or made.channel != WALLET:
        raise RewardRefused(
            ErrorCode.REWARD_NOT_REFUNDABLE, f"purchase {purchase_id}: refunded already, or a till's (void its sale)"
        )
    if made.coupon_id is not None and not _withdraw(tx, made.coupon_id, now):
        raise RewardRefused(ErrorCode.REWARD_NOT_REFUNDABLE, f"purchase {purchase_id}: its coupon was used")
    source = PREFIX + purchase_id
    if made.code is None:
        pools.release(tx, source, None, now)
    tx.run("UPDATE members SET points = points + ? WHERE member_id = ?", [made.points, made.member_id])
    bump_versions(tx, "members", "member_id", [made.member_id])
    back = ledger.Entry(
        f"{source}:refund", "refund", made.member_id, merchants.CHAIN_MERCHANT, now[:10], now,
        restored=made.points, original=source,
    )  # fmt: skip
    ledger.post(tx, back, ly.LotPolicy())
    tx.run("UPDATE reward_purchases SET refunded_at = ? WHERE purchase_id = ?", [now, purchase_id])
    audit.append(
        tx, by or "head office", "reward.refund", purchase_id, "", {"member_id": made.member_id, "points": made.points}
    )
    return purchase(tx, purchase_id) or made


def _withdraw(tx: Tx, coupon_id: str, now: str) -> bool:
    """Take back an issued coupon not used yet (its tombstone goes down to the tills); False if it was used."""
    if tx.run("UPDATE coupons SET deleted = 1 WHERE coupon_id = ? AND deleted = 0 AND uses = 0", [coupon_id]) != 1:
        return False
    bump_versions(tx, "coupons", "coupon_id", [coupon_id])
    versions.forget(tx, "coupons", coupon_id, now)
    return True


def _used(tx: Tx, coupon_id: str) -> bool:
    row = tx.one("SELECT uses FROM coupons WHERE coupon_id = ?", [coupon_id])
    return row is not None and int(row[0]) > 0


def _line_skus(tx: Tx, txn_id: str) -> list[str]:
    row = tx.one("SELECT payload FROM journal WHERE txn_id = ?", [txn_id])
    try:
        return [str(line["sku"]) for line in json.loads(str(row[0]))["lines"]] if row else []
    except (ValueError, KeyError, TypeError):
        return []


# -- a till's sales that took rewards: ingest stages (ordered by hq.push) -------------------------------------


def _taking(batch: Batch) -> list[tuple[int, SalePayload]]:
    out = []
    for i in range(len(batch.entries)):
        sale = batch.sale(i)
        if sale is not None and sale.rewards and batch.effects[i] not in NOT_APPLIED:
            out.append((i, sale))
    return out


def check(tx: Tx, batch: Batch) -> None:
    """Quarantine a sale that took a reward the catalogue does not hold at that price or has withdrawn
    (``active: false``), or one with a limited stock beyond this till's allocation (in seq order: the batch's
    earlier sales count); then a refund or void of such a sale that gives back points it may not
    (``check_returns``)."""
    _check_sales(tx, batch)
    check_returns(tx, batch)


def _check_sales(tx: Tx, batch: Batch) -> None:
    taking = _taking(batch)
    if not taking:
        return
    wanted = sorted({r.reward_id for _, sale in taking for r in sale.rewards})
    cond, params = tx.in_list("reward_id", wanted)
    known = {
        str(r[0]): parse_reward(json.loads(str(r[1])))
        for r in tx.all(f"SELECT reward_id, body FROM rewards WHERE {cond}", params)
    }
    held = {
        str(p): (int(a), int(u), bool(b))
        for p, a, u, b in tx.all(
            "SELECT pool_id, allowed, used, blocked FROM pool_allocations WHERE terminal_id = ?", [batch.terminal_id]
        )
    }
    taken: dict[str, int] = {}
    for i, sale in taking:
        breach = _breach(sale, known, held, taken)
        if breach is not None:
            batch.quarantine(i, breach)
            continue
        for r in sale.rewards:
            pool = known[r.reward_id].pool_id
            if pool is not None:
                taken[pool] = taken.get(pool, 0) + 1


def _breach(
    sale: SalePayload, known: dict[str, Reward], held: dict[str, tuple[int, int, bool]], taken: dict[str, int]
) -> Breach | None:
    for r in sale.rewards:
        reward = known.get(r.reward_id)
        if reward is None or not reward.active or reward.points != r.points or sale.member_id is None:
            price = reward.points if reward is not None else None
            offered = reward is not None and reward.active
            detail: dict[str, Any] = {"points": r.points, "catalogue_points": price, "offered": offered}
            return Breach(Reason.REWARD_INVALID, r.reward_id, detail)
        pool = reward.pool_id
        if pool is None:
            continue
        allowed, used, blocked = held.get(pool, (0, 0, False))
        if blocked or used + taken.get(pool, 0) + 1 > allowed:
            detail = {"pool_id": pool, "allowed": allowed, "used": used + taken.get(pool, 0)}
            return Breach(Reason.REWARD_ALLOCATION_EXCEEDED, r.reward_id, detail)
    return None


def count(tx: Tx, batch: Batch) -> None:
    """For the applied sales that took rewards: count each unit against this till's allocation (once: a
    replayed push counts nothing), record the purchase and hand out its coupon or partner code; for an applied
    void or refund of such a sale that gives back its points, give back the units and withdraw what it gave."""
    now = batch.received_at
    for i, sale in _taking(batch):
        if batch.effects[i] is not Effect.APPLIED or sale.member_id is None:
            continue
        txn_id = batch.entries[i].txn_id
        for r in sale.rewards:
            _took(tx, batch.terminal_id, txn_id, sale.member_id, r.reward_id, r.points, now)
    for i, payload in enumerate(batch.payloads):
        if isinstance(payload, RefundPayload) and batch.effects[i] is Effect.APPLIED and payload.points_restored > 0:
            _given_back(tx, payload, now)


def released(tx: Tx, txn_id: str, now: str) -> None:
    """A quarantined sale an administrator released and head office applied: its rewards are counted against
    the till's allocation (one beyond it blocks the till for that stock, as ``hq.pools`` does) and handed out."""
    row = tx.one("SELECT terminal_id, payload, effect FROM journal WHERE txn_id = ? AND kind = 'sale'", [txn_id])
    if row is None or str(row[2]) != Effect.APPLIED.value:
        return
    try:
        sale = SalePayload.model_validate(json.loads(str(row[1])))
    except ValueError:
        return
    for r in sale.rewards:
        if sale.member_id is not None and tx.one("SELECT 1 FROM rewards WHERE reward_id = ?", [r.reward_id]):
            _took(tx, str(row[0]), txn_id, sale.member_id, r.reward_id, r.points, now)


def _took(tx: Tx, terminal_id: str, txn_id: str, member_id: str, reward_id: str, points: int, now: str) -> None:
    reward = get(tx, reward_id)
    if reward.pool_id is not None:
        pools.count(tx, terminal_id, [(txn_id, unit_of(reward_id), reward.pool_id)], now)
    purchase_id = f"{txn_id}:{reward_id}"
    if purchase(tx, purchase_id) is not None:
        return
    coupon_id, code = None, None
    if reward.kind is not RewardKind.ITEM:  # an item was handed over at the till
        try:
            coupon_id, code = _give(tx, reward, member_id, purchase_id, now)
        except RewardRefused:  # no code left: the pool prevents it; the purchase stays visible without one
            pass
    made = Purchase(purchase_id, reward_id, member_id, points, TILL, coupon_id, code, now, None, terminal_id, txn_id)
    _record(tx, made)


def _given_back(tx: Tx, refund: RefundPayload, now: str) -> None:
    """A reward goes back with its line (a void returns every line): its stock unit to the till's
    allocation, its coupon withdrawn, the purchase marked refunded. What the member keeps stays as it is: a
    handed-out partner code (retired, its unit stays spent: it is never handed out again) and a used coupon
    (``check_returns`` quarantined a refund that gives back their points)."""
    original_txn = refund.original_txn
    rows = tx.all(
        f"SELECT {PURCHASE_COLUMNS} FROM reward_purchases WHERE txn_id = ? AND refunded_at IS NULL ORDER BY reward_id",
        [original_txn],
    )
    if not rows:
        return
    made = [_purchase(r) for r in rows]
    if not isinstance(refund, VoidPayload):
        back = returned(_line_skus(tx, original_txn), [x.line for x in refund.returned])
        made = [m for m in made if m.reward_id in back]
    for m in made:
        if m.code is not None or (
            m.coupon_id is not None and not _withdraw(tx, m.coupon_id, now) and _used(tx, m.coupon_id)
        ):
            continue
        pools.release(tx, original_txn, [unit_of(m.reward_id)], now)
        tx.run("UPDATE reward_purchases SET refunded_at = ? WHERE purchase_id = ?", [now, m.purchase_id])


# -- refunds and voids of a till's sale that took rewards ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Held:
    """A reward a sale took, as a refund of that sale finds it."""

    reward_id: str
    points: int
    back: bool
    """Given back already, by an earlier refund."""
    kept: bool
    """What it gave stays with the member whatever the refund says: its coupon was used, or its partner code
    was handed out (the member has seen it)."""


def returns_breach(
    sale: SalePayload, held: Sequence[Held], refund: RefundPayload, restored_before: int
) -> Breach | None:
    """Pure: the points a refund (or void) of ``sale`` may give back are the points that paid money and no
    earlier refund gave back, plus those of the rewards whose lines it returns (a void returns all) that no
    earlier refund gave back (``restored_before``: every point earlier refunds of the sale gave back).
    Beyond that: ``reward_kept`` when the rest is the points of rewards the member keeps (an administrator
    decides), else ``refund_exceeds_sale``."""
    if isinstance(refund, VoidPayload):
        returning = {r.reward_id for r in sale.rewards}
    else:
        returning = returned([line.sku for line in sale.lines], [x.line for x in refund.returned])
    rewards_before = sum(h.points for h in held if h.back)
    paid_money = sale.points_redeemed - sale.reward_points
    free = max(0, paid_money - max(0, restored_before - rewards_before))
    now = [h for h in held if not h.back and h.reward_id in returning]
    givable = sum(h.points for h in now if not h.kept)
    kept = [h for h in now if h.kept]
    if refund.points_restored <= free + givable:
        return None
    detail: dict[str, Any] = {
        "original_txn": refund.original_txn,
        "points_restored": refund.points_restored,
        "may_restore": free + givable,
    }
    if kept and refund.points_restored <= free + givable + sum(h.points for h in kept):
        return Breach(Reason.REWARD_KEPT, kept[0].reward_id, {**detail, "kept": [h.reward_id for h in kept]})
    return Breach(Reason.REFUND_EXCEEDS_SALE, refund.original_txn, detail)


def check_returns(tx: Tx, batch: Batch) -> None:
    """Quarantine a refund or void of a sale that took rewards when it gives back more points than
    ``returns_breach`` allows: the reward points of lines it does not return (a forged refund of other
    lines), or those of a reward the member keeps (a used coupon, a partner code handed out). The batch's
    earlier sales and refunds count."""
    in_batch: dict[str, SalePayload] = {}
    restored: dict[str, int] = {}
    back: dict[str, set[str]] = {}
    for i, entry in enumerate(batch.entries):
        sale = batch.sale(i)
        if sale is not None:
            if sale.rewards and batch.effects[i] not in NOT_APPLIED:
                in_batch[entry.txn_id] = sale
            continue
        refund = batch.payloads[i]
        if not isinstance(refund, RefundPayload) or batch.effects[i] in NOT_APPLIED or refund.points_restored <= 0:
            continue
        original = refund.original_txn
        found = _sale_of(tx, original, in_batch)
        if found is None:
            continue
        sale, held, before = found
        gone = back.get(original, set())
        held = [Held(h.reward_id, h.points, h.back or h.reward_id in gone, h.kept) for h in held]
        breach = returns_breach(sale, held, refund, before + restored.get(original, 0))
        if breach is not None:
            batch.quarantine(i, breach)
            continue
        restored[original] = restored.get(original, 0) + refund.points_restored
        if isinstance(refund, VoidPayload):
            back.setdefault(original, set()).update(h.reward_id for h in held if not h.kept)
        else:
            lines = returned([line.sku for line in sale.lines], [x.line for x in refund.returned])
            back.setdefault(original, set()).update(h.reward_id for h in held if not h.kept and h.reward_id in lines)


def _sale_of(tx: Tx, txn_id: str, in_batch: dict[str, SalePayload]) -> tuple[SalePayload, list[Held], int] | None:
    """A sale that took rewards (of this batch, or held), the rewards as it holds them, and the points its
    earlier refunds gave back; None for a sale without rewards."""
    sale = in_batch.get(txn_id)
    before = 0
    if sale is None:
        row = tx.one(
            "SELECT j.payload, s.points_restored FROM journal j JOIN sales s ON s.txn_id = j.txn_id "
            "WHERE j.txn_id = ? AND j.kind = 'sale'",
            [txn_id],
        )
        # Most refunds are of sales without rewards, whose stored payload never names them (the field is left
        # out when empty): those are not parsed again here, on every refund of every push.
        if row is None or '"rewards"' not in str(row[0]):
            return None
        try:
            sale = SalePayload.model_validate(json.loads(str(row[0])))
        except ValueError:
            return None
        before = int(row[1])
    if not sale.rewards:
        return None
    made = {
        p.reward_id: p
        for p in map(_purchase, tx.all(f"SELECT {PURCHASE_COLUMNS} FROM reward_purchases WHERE txn_id = ?", [txn_id]))
    }
    coupons = [p.coupon_id for p in made.values() if p.coupon_id is not None]
    used: set[str] = set()
    if coupons:
        cond, params = tx.in_list("coupon_id", coupons)
        used = {str(r[0]) for r in tx.all(f"SELECT coupon_id FROM coupons WHERE {cond} AND uses > 0", params)}
    cond, params = tx.in_list("reward_id", [r.reward_id for r in sale.rewards])
    kinds = {str(k): str(v) for k, v in tx.all(f"SELECT reward_id, kind FROM rewards WHERE {cond}", params)}
    held = []
    for r in sale.rewards:
        p = made.get(r.reward_id)
        if p is None:  # not handed out yet (a sale of this batch): a partner code will be
            kept = kinds.get(r.reward_id) == RewardKind.PARTNER_CODE.value
            held.append(Held(r.reward_id, r.points, False, kept))
        else:
            kept = p.code is not None or p.coupon_id in used
            held.append(Held(r.reward_id, r.points, p.refunded_at is not None, kept))
    return sale, held, before
