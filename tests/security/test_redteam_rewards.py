"""Red team: the rewards catalogue against a dishonest cashier and a stolen till credential (docs/rewards.md).

Head office in process (SQLite, then PostgreSQL), pushed to as a till would: a sale that takes a reward, then a
void or a refund of it. Each test here failed before the hole it names was closed. The chain in
these tests trusts its POS for points (``spend_needs_proof=False``), so the member's proof is not what is
attacked: the refund games a cashier plays after a proven purchase are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from hq import ledger, merchants, settlement
from hq.ingest import Settings
from hq.rewards import RewardRefused
from hq.store import HqStore
from sync.protocol import ErrorCode, SalePayload, WireEntry
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
NOW = "2026-03-01T11:00:00.000Z"


class Till:
    """What a till credential pushes, entry by entry."""

    def __init__(self, hq: HqStore, terminal_id: str = "T1") -> None:
        self.hq = hq
        self.terminal_id = terminal_id
        self.seq = 0

    def push(self, kind: str, payload: dict[str, Any]) -> str:
        self.seq += 1
        txn = f"{self.terminal_id}-{self.seq}"
        entry = WireEntry(
            terminal_id=self.terminal_id, seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=NOW
        )
        self.hq.ingest(self.terminal_id, [entry], clock=NOW)
        return txn

    def effect(self, txn: str) -> str:
        with self.hq.db.read() as tx:
            row = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [txn])
        return str(row[0]) if row else "absent"


def reward_sale(reward_id: str, points: int, *, goods: int = 0, coupons: list[str] | None = None) -> dict[str, Any]:
    """A sale of one reward (its line first), with ``goods`` minor units of goods paid by the POS."""
    lines: list[dict[str, Any]] = [{"sku": f"reward:{reward_id}", "quantity": 1, "unit_price": 0, "category": "reward"}]
    if goods:
        lines.append({"sku": "SHIRT", "quantity": 1, "unit_price": goods})
    return SalePayload.model_validate(
        {
            "member_id": "M-1",
            "store_id": "S1",
            "total": goods,
            "payable": goods,
            "pos_due": goods,
            "points_redeemed": points,
            "points_delta": -points,
            "lines": lines,
            "coupons": coupons or [],
            "local_time": entries.LOCAL_TIME,
            "proof": "pos",
            "rewards": [{"reward_id": reward_id, "points": points}],
            "reward_points": points,
        }
    ).wire()


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "gold", 1000)
    yield store
    with store.db.read() as tx:
        assert ledger.check(tx) == []
    store.close()


def points(hq: HqStore) -> int:
    member = hq.member("M-1")
    assert member is not None
    return member.points


def purchases(hq: HqStore) -> list[tuple[Any, ...]]:
    with hq.db.read() as tx:
        return tx.all("SELECT purchase_id, code, coupon_id, refunded_at FROM reward_purchases ORDER BY created_at")


def test_redteam_a_voided_partner_code_purchase_never_lets_the_pool_sell_a_unit_without_a_code(hq: HqStore) -> None:
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1"])  # one code: the pool's quantity is 1
    assert {a.pool_id: a.allowed for a in hq.grant_pools("T1")}["reward:CINEMA"] == 1
    till = Till(hq)
    bought = till.push("sale", reward_sale("CINEMA", 500))
    assert till.effect(bought) == "applied" and purchases(hq)[0][1] == "CIN-1"  # the member sees the code
    till.push("void", entries.refund(bought, restored=500, void=True))  # the cashier voids the sale
    hq.grant_pools("T1")
    again = till.push("sale", reward_sale("CINEMA", 500))  # the next member buys the "unit" the void freed
    if till.effect(again) == "applied":
        last = purchases(hq)[-1]
        assert last[1] is not None, "an applied partner-code purchase that hands out no code: the stock was oversold"


def test_redteam_a_cashier_void_never_returns_the_points_of_a_partner_code_the_member_keeps(hq: HqStore) -> None:
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1", "CIN-2"])
    hq.grant_pools("T1")
    till = Till(hq)
    bought = till.push("sale", reward_sale("CINEMA", 500))
    code = purchases(hq)[0][1]
    assert code == "CIN-1" and points(hq) == 500
    void = till.push("void", entries.refund(bought, restored=500, void=True))
    with hq.db.read() as tx:
        still_given = tx.one("SELECT purchase_id FROM reward_codes WHERE code = ?", [code])
    assert still_given is not None and still_given[0] is not None  # the code is retired, never handed out again
    # the member holds the cinema ticket: the void must not also give the 500 points back without an administrator
    assert till.effect(void) == "quarantined" or points(hq) == 500


def test_redteam_a_refund_never_returns_the_points_of_a_reward_coupon_already_used(hq: HqStore) -> None:
    hq.put_reward(TENOFF)
    till = Till(hq)
    bought = till.push("sale", reward_sale("TENOFF", 200))
    coupon_id = str(purchases(hq)[0][2])
    assert points(hq) == 800
    till.push("sale", entries.sale(total=900, coupons=[coupon_id]))  # 10% off a 1000 shirt
    with hq.db.read() as tx:
        assert tx.one("SELECT uses FROM coupons WHERE coupon_id = ?", [coupon_id]) == (1,)
    back = till.push("refund", entries.refund(bought, restored=200, returned=[(0, 1)]))  # the reward's line
    assert till.effect(back) == "quarantined" or points(hq) == 800, "the coupon was spent and its points came back"


def test_redteam_a_refund_of_other_lines_never_returns_a_kept_rewards_points(hq: HqStore) -> None:
    hq.put_reward(TENOFF)
    till = Till(hq)
    bought = till.push("sale", reward_sale("TENOFF", 200, goods=1000))  # a shirt, and the coupon with points
    assert points(hq) == 800
    # a stolen credential (or a tampered till) returns the shirt and says the 200 points go back with it
    back = till.push("refund", entries.refund(bought, money_back=1000, restored=200, returned=[(1, 1)]))
    made = purchases(hq)[0]
    with hq.db.read() as tx:
        coupon = tx.one("SELECT deleted FROM coupons WHERE coupon_id = ?", [made[2]])
    kept = made[3] is None and coupon == (0,)
    assert not (kept and points(hq) == 1000 and till.effect(back) == "applied"), "coupon kept and its points back"


def test_redteam_a_withdrawn_reward_is_not_sold_by_a_stolen_till_credential(hq: HqStore) -> None:
    hq.put_reward(TENOFF)
    hq.put_reward({**TENOFF, "active": False})  # withdrawn: e.g. a mistake in its coupon
    till = Till(hq)
    sold = till.push("sale", reward_sale("TENOFF", 200))
    assert till.effect(sold) == "quarantined"
    assert json.dumps(purchases(hq)) == "[]"


def test_redteam_a_franchise_is_not_reimbursed_for_a_partner_code_the_chain_supplies(hq: HqStore) -> None:
    with hq.db.write() as tx:
        merchants.add(tx, "M-F", "Franchise", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S1", "M-F", "UTC")
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1"])
    hq.grant_pools("T1")
    till = Till(hq)
    bought = till.push("sale", reward_sale("CINEMA", 500))
    assert till.effect(bought) == "applied" and purchases(hq)[0][1] == "CIN-1"
    with hq.db.read() as tx:
        (period,) = tx.one("SELECT period FROM ledger_txns WHERE ledger_txn_id = ?", [bought])
    statement = settlement.read_statement(hq.db, str(period), "M-F")
    # the franchise handed over the chain's cinema code; the chain owes it nothing for the 500 points
    assert statement.figures.accepted == 0 and statement.reimbursement == 0, statement.figures


def test_redteam_the_wallet_never_spends_points_still_locked(hq: HqStore) -> None:
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.set_rule("base", 1, 100)
    hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "lock_days": 14, "expire_days": 365})
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1"])
    till = Till(hq)
    earned = till.push("sale", entries.sale("M-2", total=50000, earned=500))  # 500 points, locked for 14 days
    assert till.effect(earned) == "applied"
    with pytest.raises(RewardRefused) as refused:
        hq.buy_reward("M-2", "CINEMA", "w-locked")  # the points are not spendable yet
    assert refused.value.code is ErrorCode.INSUFFICIENT_POINTS
