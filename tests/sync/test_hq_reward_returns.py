"""Refunds and voids of a till's sale that took rewards, at head office (docs/rewards.md), on SQLite and
PostgreSQL: what an honest refund gives back, what is quarantined, an administrator's release of it, and
which merchant accepts the points (the ledger stays balanced throughout)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hq import ledger, merchants
from hq.ingest import Settings
from hq.rewards import Held, returns_breach
from hq.store import HqStore
from sync.protocol import Reason, RefundPayload, SalePayload, WireEntry, parse_payload
from terminal import loyalty as ly
from tests.fixtures import entries
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

TENOFF = {
    "reward_id": "TENOFF",
    "reward": "coupon",
    "points": 200,
    "title": "10% off",
    "coupon": {"kind": "percent_off", "value": 10},
}
CINEMA = {"reward_id": "CINEMA", "reward": "partner_code", "points": 500, "title": "Cinema ticket"}
LATTE = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "A free latte"}
NOW = "2026-03-01T11:00:00.000Z"


def reward_sale(reward_id: str, points: int, *, goods: int = 0, paid: int = 0) -> dict[str, Any]:
    """One reward (line 0), and ``goods`` minor units of goods (line 1) of which ``paid`` points pay part."""
    lines: list[dict[str, Any]] = [{"sku": f"reward:{reward_id}", "quantity": 1, "unit_price": 0, "category": "reward"}]
    if goods:
        lines.append({"sku": "SHIRT", "quantity": 1, "unit_price": goods})
    return SalePayload.model_validate(
        {
            "member_id": "M-1",
            "store_id": "S1",
            "total": goods,
            "payable": goods - paid,
            "pos_due": goods - paid,
            "points_redeemed": points + paid,
            "points_delta": -(points + paid),
            "lines": lines,
            "local_time": entries.LOCAL_TIME,
            "proof": "pos",
            "rewards": [{"reward_id": reward_id, "points": points}],
            "reward_points": points,
        }
    ).wire()


class Till:
    def __init__(self, hq: HqStore) -> None:
        self.hq, self.seq = hq, 0

    def push(self, *items: tuple[str, dict[str, Any]]) -> list[str]:
        """Push entries in one batch; their txn ids."""
        wire = []
        for kind, payload in items:
            self.seq += 1
            txn = f"T1-{self.seq}"
            wire.append(
                WireEntry(terminal_id="T1", seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=NOW)
            )
        self.hq.ingest("T1", wire, clock=NOW)
        return [w.txn_id for w in wire]

    def next_txn(self, ahead: int = 1) -> str:
        return f"T1-{self.seq + ahead}"

    def effect(self, txn: str) -> str:
        with self.hq.db.read() as tx:
            row = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [txn])
        return str(row[0]) if row else "absent"

    def reasons(self, txn: str) -> list[str]:
        with self.hq.db.read() as tx:
            return [
                str(r[0])
                for r in tx.all(
                    "SELECT reason FROM recon_items WHERE txn_id = ? AND quarantine = 1 ORDER BY reason", [txn]
                )
            ]


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "gold", 1000)
    with store.db.write() as tx:
        merchants.add(tx, "M-F", "Franchise", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S1", "M-F", "UTC")
    yield store
    with store.db.read() as tx:
        assert ledger.check(tx) == []
    store.close()


def points(hq: HqStore) -> int:
    member = hq.member("M-1")
    assert member is not None
    return member.points


def accepted(hq: HqStore, merchant_id: str) -> int:
    with hq.db.read() as tx:
        return ledger.positions(tx, merchant_id)["points_accepted"]


def purchase(hq: HqStore) -> tuple[Any, ...]:
    with hq.db.read() as tx:
        row = tx.one("SELECT code, coupon_id, refunded_at FROM reward_purchases")
    assert row is not None
    return tuple(row)


def test_an_honest_refund_of_an_unused_coupon_reward_gives_it_all_back(hq: HqStore) -> None:
    hq.put_reward(TENOFF)
    till = Till(hq)
    (sold,) = till.push(("sale", reward_sale("TENOFF", 200, goods=1000, paid=100)))
    assert points(hq) == 700
    assert accepted(hq, merchants.CHAIN_MERCHANT) == 200 and accepted(hq, "M-F") == 100  # the chain's coupon
    coupon_id = str(purchase(hq)[1])
    (back,) = till.push(("refund", entries.refund(sold, restored=200, returned=[(0, 1)])))
    assert till.effect(back) == "applied" and points(hq) == 900
    with hq.db.read() as tx:
        assert tx.one("SELECT deleted FROM coupons WHERE coupon_id = ?", [coupon_id]) == (1,)
    assert purchase(hq)[2] is not None
    assert accepted(hq, merchants.CHAIN_MERCHANT) == 0 and accepted(hq, "M-F") == 100
    # the shirt back, with the 100 points that paid for it: allowed; a point more is not
    (over,) = till.push(("refund", entries.refund(sold, money_back=900, restored=101, returned=[(1, 1)])))
    assert till.effect(over) == "quarantined" and till.reasons(over) == [Reason.REFUND_EXCEEDS_SALE.value]
    (shirt,) = till.push(("refund", entries.refund(sold, money_back=900, restored=100, returned=[(1, 1)])))
    assert till.effect(shirt) == "applied" and points(hq) == 1000
    assert accepted(hq, merchants.CHAIN_MERCHANT) == 0 and accepted(hq, "M-F") == 0


def test_a_partner_code_sold_and_voided_in_one_push_is_held_and_its_code_never_handed_out_again(hq: HqStore) -> None:
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1", "CIN-2"])
    hq.grant_pools("T1")
    till = Till(hq)
    sold = till.next_txn()
    _, void = till.push(("sale", reward_sale("CINEMA", 500)), ("void", entries.refund(sold, restored=500, void=True)))
    assert till.effect(sold) == "applied" and till.effect(void) == "quarantined"
    assert till.reasons(void) == [Reason.REWARD_KEPT.value] and points(hq) == 500
    assert purchase(hq)[0] == "CIN-1" and accepted(hq, merchants.CHAIN_MERCHANT) == 500
    # the administrator decides for the member: the points come back, the code stays retired, the unit spent
    assert hq.release(void, "Mio", "the cinema refused the code") == "applied"
    assert points(hq) == 1000 and accepted(hq, merchants.CHAIN_MERCHANT) == 0 and accepted(hq, "M-F") == 0
    with hq.db.read() as tx:
        assert tx.one("SELECT purchase_id FROM reward_codes WHERE code = 'CIN-1'") == (f"{sold}:CINEMA",)
        assert tx.one("SELECT used FROM pool_allocations WHERE pool_id = 'reward:CINEMA' AND terminal_id = 'T1'") == (
            1,
        )
    # replaying the void changes nothing more
    hq.ingest("T1", [WireEntry(terminal_id="T1", seq=2, txn_id=void, kind="void", payload=entries.refund(
        sold, restored=500, void=True), created_at=NOW)], clock=NOW)  # fmt: skip
    assert points(hq) == 1000


def test_an_item_reward_is_the_stores_and_a_void_of_it_is_applied(hq: HqStore) -> None:
    hq.put_reward(LATTE)
    till = Till(hq)
    (sold,) = till.push(("sale", reward_sale("LATTE", 300)))
    assert accepted(hq, "M-F") == 300 and accepted(hq, merchants.CHAIN_MERCHANT) == 0  # the store's latte
    (void,) = till.push(("void", entries.refund(sold, restored=300, void=True)))
    assert till.effect(void) == "applied" and points(hq) == 1000 and accepted(hq, "M-F") == 0
    assert purchase(hq)[2] is not None


def held(reward_id: str, points: int, *, back: bool = False, kept: bool = False) -> Held:
    return Held(reward_id, points, back, kept)


def refund_of(restored: int, lines: list[int], *, void: bool = False) -> RefundPayload:
    payload = entries.refund("T1-1", restored=restored, void=void, returned=[(n, 1) for n in lines])
    parsed = parse_payload("void" if void else "refund", payload)
    assert isinstance(parsed, RefundPayload)
    return parsed


def test_returns_breach_bounds_a_refund_by_the_lines_it_returns() -> None:
    sale = SalePayload.model_validate(reward_sale("TENOFF", 200, goods=1000, paid=100))
    open_ = [held("TENOFF", 200)]
    assert returns_breach(sale, open_, refund_of(300, [0, 1]), 0) is None
    assert returns_breach(sale, open_, refund_of(100, [1]), 0) is None
    over = returns_breach(sale, open_, refund_of(101, [1]), 0)
    assert over is not None and over.reason is Reason.REFUND_EXCEEDS_SALE
    assert returns_breach(sale, open_, refund_of(300, [], void=True), 0) is None
    # an earlier refund gave back the points that paid money: only the reward's are left
    assert returns_breach(sale, open_, refund_of(200, [0]), 100) is None
    late = returns_breach(sale, open_, refund_of(1, [1]), 100)
    assert late is not None and late.reason is Reason.REFUND_EXCEEDS_SALE
    # a reward given back already gives nothing twice
    gone = returns_breach(sale, [held("TENOFF", 200, back=True)], refund_of(200, [0]), 200)
    assert gone is not None and gone.reason is Reason.REFUND_EXCEEDS_SALE
    # its coupon used: the administrator decides, unless the refund leaves its points alone
    kept = returns_breach(sale, [held("TENOFF", 200, kept=True)], refund_of(300, [], void=True), 0)
    assert kept is not None and kept.reason is Reason.REWARD_KEPT and kept.detail["kept"] == ["TENOFF"]
    assert returns_breach(sale, [held("TENOFF", 200, kept=True)], refund_of(100, [], void=True), 0) is None


def test_unspendable_holds_back_locked_and_expired_lots_as_the_till_does() -> None:
    policy = ly.LotPolicy(lock_days=14, expire_days=365)
    lots = [
        ledger.Lot("new", "M-F", 500, "2026-03-01T10:00:00.000Z", "2027-03-01T10:00:00.000Z"),
        ledger.Lot("old", "M-F", 300, "2026-01-01T10:00:00.000Z", "2027-01-01T10:00:00.000Z"),
        ledger.Lot("gone", "M-F", 200, "2025-01-01T10:00:00.000Z", "2026-01-01T10:00:00.000Z"),
    ]
    assert ledger.unspendable(lots, "2026-03-01T11:00:00.000Z", policy) == 700  # locked 500, expired 200
    assert ledger.unspendable(lots, "2026-03-15T10:00:00.000Z", policy) == 200  # the lock is over on the 14th day
    assert ledger.unspendable(lots, "2026-03-01T11:00:00.000Z", ly.LotPolicy()) == 200
