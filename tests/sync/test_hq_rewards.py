"""The rewards catalogue at head office (hq/rewards.py): defining rewards, the wallet's purchase (points out
through the ledger, stock out of the reward's pool, a coupon or a partner code handed out once), its refund,
and every refusal writing nothing. On SQLite and PostgreSQL; the ledger's check runs after each test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hq import ledger, pools
from hq.ingest import Settings
from hq.rewards import RewardRefused
from hq.store import HqStore
from sync.protocol import ErrorCode
from tests.fixtures.hq import command

LATTE = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "A free latte", "stock": 3}
TENOFF = {
    "reward_id": "TENOFF",
    "reward": "coupon",
    "points": 200,
    "title": "10% off",
    "coupon": {"kind": "percent_off", "value": 10},
}
CINEMA = {"reward_id": "CINEMA", "reward": "partner_code", "points": 500, "title": "Cinema ticket"}


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "gold", 1000)
    store.upsert_member("M-2", "Ben", "basic", 100)
    yield store
    with store.db.read() as tx:
        assert ledger.check(tx) == []  # every purchase and refund leaves the books balanced
    store.close()


def points(hq: HqStore, member_id: str) -> int:
    member = hq.member(member_id)
    assert member is not None
    return member.points


def left(hq: HqStore, reward_id: str) -> int | None:
    return {o.reward.reward_id: o.left for o in hq.reward_catalogue()}[reward_id]


def written(hq: HqStore) -> tuple[Any, ...]:
    """Everything a purchase writes, counted."""
    with hq.db.read() as tx:
        return tuple(
            tx.one(f"SELECT COUNT(*) FROM {table}")
            for table in ("reward_purchases", "ledger_txns", "pool_uses", "coupons", "ledger_postings")
        ) + (tx.one("SELECT COALESCE(SUM(allowed), 0), COALESCE(SUM(used), 0) FROM pool_allocations"),)


def refused(code: ErrorCode, call: Any, *args: Any) -> None:
    with pytest.raises(RewardRefused) as info:
        call(*args)
    assert info.value.code is code, info.value


def test_defining_rewards_publishes_them_to_the_tills_and_refuses_bad_ones(hq: HqStore) -> None:
    since = hq.changes(0).cursor
    hq.put_reward(LATTE)
    hq.put_reward(TENOFF)
    docs = {d.rule_id: d.body for d in hq.changes(since).rule_docs}
    assert docs["reward:LATTE"]["reward"] == "item" and docs["reward:LATTE"]["stock"] == 3
    assert docs["reward:TENOFF"]["coupon"] == {"kind": "percent_off", "value": 10}
    assert hq.pool_state("reward:LATTE").quantity == 3
    for bad in (
        {**LATTE, "points": 0},
        {**LATTE, "reward_id": "has space"},
        {**LATTE, "sku": None},
        {**LATTE, "stock": 0},
        {**TENOFF, "coupon": {"kind": "nonsense"}},
        {**TENOFF, "coupon": {"kind": "amount_off", "value": 1, "member_id": "M-2"}},
        {**CINEMA, "stock": 10},
        {**LATTE, "reward": "coupon", "coupon": {"kind": "amount_off", "value": 1}},  # its kind stays
    ):
        refused(ErrorCode.REWARD_INVALID, hq.put_reward, bad)
    assert hq.pool_state("reward:LATTE").quantity == 3


def test_a_wallet_purchase_spends_points_takes_stock_and_issues_the_item_as_a_coupon(hq: HqStore) -> None:
    hq.put_reward(LATTE)
    made = hq.buy_reward("M-1", "LATTE", "p1")
    assert (made.points, made.channel, made.code) == (300, "wallet", None)
    assert points(hq, "M-1") == 700 and left(hq, "LATTE") == 2
    coupons = {c.coupon_id: c for c in hq.changes(0).coupons}
    body = coupons[str(made.coupon_id)].body
    assert body["member_id"] == "M-1" and body["kind"] == "free_item" and body["skus"] == ["LATTE-M"]
    assert body["single_use"] is True
    assert hq.buy_reward("M-1", "LATTE", "p1") == made  # the same purchase again (a double submit): once
    assert points(hq, "M-1") == 700 and left(hq, "LATTE") == 2
    with hq.db.read() as tx:
        spent = ledger.balances_of(tx, "M-1")
    assert spent[ledger.Kind.MEMBER_POINTS] == 700


def test_insufficient_points_is_refused_with_a_stable_code_and_writes_nothing(hq: HqStore) -> None:
    hq.put_reward(LATTE)
    before = written(hq)
    refused(ErrorCode.INSUFFICIENT_POINTS, hq.buy_reward, "M-2", "LATTE", "p2")
    assert written(hq) == before and points(hq, "M-2") == 100 and left(hq, "LATTE") == 3
    refused(ErrorCode.REWARD_UNKNOWN, hq.buy_reward, "M-1", "NOPE", "p3")
    refused(ErrorCode.UNKNOWN_MEMBER, hq.buy_reward, "M-9", "LATTE", "p4")
    hq.upsert_member("M-1", status="blocked")
    refused(ErrorCode.BLOCKED_MEMBER, hq.buy_reward, "M-1", "LATTE", "p5")
    hq.put_reward({**LATTE, "active": False})
    hq.upsert_member("M-1", status="active")
    refused(ErrorCode.REWARD_UNKNOWN, hq.buy_reward, "M-1", "LATTE", "p6")
    assert written(hq) == before


def test_stock_is_never_oversold_between_the_wallet_and_the_tills(hq: HqStore) -> None:
    hq.put_reward({**LATTE, "stock": 2, "points": 10})
    hq.add_terminal("T2", "S1", "t2")
    granted = {a.pool_id: a.allowed for a in hq.grant_pools("T1")}
    assert granted["reward:LATTE"] >= 1  # a till holds part of the stock for its offline sales
    free = 2 - granted["reward:LATTE"]
    for n in range(free):
        hq.buy_reward("M-1", "LATTE", f"w{n}")
    refused(ErrorCode.REWARD_SOLD_OUT, hq.buy_reward, "M-1", "LATTE", "w-last")
    state = hq.pool_state("reward:LATTE")
    assert state.allocated <= state.quantity == 2


def test_concurrent_purchases_of_the_last_units_never_oversell(hq: HqStore) -> None:
    hq.put_reward({**LATTE, "stock": 3, "points": 10})
    for n in range(3, 11):
        hq.upsert_member(f"M-{n}", "Someone", "basic", 100)
    outcomes: list[str] = []
    gate = threading.Barrier(8)

    def buy(n: int) -> None:
        gate.wait()
        try:
            hq.buy_reward(f"M-{n}", "LATTE", f"race-{n}")
            outcomes.append("bought")
        except RewardRefused as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(3, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["bought"] * 3 + ["reward_sold_out"] * 5
    assert left(hq, "LATTE") == 0 and hq.pool_state("reward:LATTE").used == 3


def test_partner_codes_are_handed_out_once_each_and_run_out(hq: HqStore) -> None:
    hq.put_reward(CINEMA)
    refused(ErrorCode.REWARD_SOLD_OUT, hq.buy_reward, "M-1", "CINEMA", "c0")  # no codes loaded yet
    assert hq.add_reward_codes("CINEMA", ["CIN-0001", "CIN-0002", "CIN-0001"]) == 2
    assert hq.add_reward_codes("CINEMA", ["CIN-0002"]) == 0  # a code held already is not added twice
    refused(ErrorCode.REWARD_INVALID, hq.add_reward_codes, "CINEMA", ["has space"])
    refused(ErrorCode.REWARD_INVALID, hq.add_reward_codes, "CINEMA", [])
    hq.upsert_member("M-2", points=1000)
    first = hq.buy_reward("M-1", "CINEMA", "c1")
    second = hq.buy_reward("M-2", "CINEMA", "c2")
    assert {first.code, second.code} == {"CIN-0001", "CIN-0002"}
    refused(ErrorCode.REWARD_SOLD_OUT, hq.buy_reward, "M-1", "CINEMA", "c3")
    assert points(hq, "M-1") == 500


def test_a_refund_gives_back_points_and_stock_and_withdraws_the_coupon_once(hq: HqStore) -> None:
    hq.put_reward(TENOFF | {"stock": 5})
    made = hq.buy_reward("M-1", "TENOFF", "r1")
    assert points(hq, "M-1") == 800 and left(hq, "TENOFF") == 4
    back = hq.refund_reward("r1")
    assert back.refunded_at is not None
    assert points(hq, "M-1") == 1000 and left(hq, "TENOFF") == 5
    assert str(made.coupon_id) in {t.id for t in hq.changes(0).deleted if t.kind == "coupon"}
    refused(ErrorCode.REWARD_NOT_REFUNDABLE, hq.refund_reward, "r1")
    refused(ErrorCode.NOT_FOUND, hq.refund_reward, "nope")
    assert points(hq, "M-1") == 1000


def test_a_partner_code_refund_returns_the_points_but_never_hands_the_code_out_again(hq: HqStore) -> None:
    hq.put_reward(CINEMA)
    hq.add_reward_codes("CINEMA", ["CIN-1", "CIN-2"])
    first = hq.buy_reward("M-1", "CINEMA", "k1")
    hq.refund_reward("k1")
    assert points(hq, "M-1") == 1000
    again = hq.buy_reward("M-1", "CINEMA", "k2")
    assert again.code != first.code
    refused(ErrorCode.REWARD_SOLD_OUT, hq.buy_reward, "M-1", "CINEMA", "k3")


def test_the_head_office_holder_never_takes_beyond_the_pool(hq: HqStore) -> None:
    hq.put_reward({**LATTE, "stock": 1, "points": 1})
    with hq.db.write() as tx:
        assert pools.take(tx, "reward:LATTE", "x", "u", "2026-01-01T00:00:00Z")
        assert not pools.take(tx, "reward:LATTE", "y", "u", "2026-01-01T00:00:00Z")


@pytest.mark.slow
def test_the_commands_define_rewards_and_refuse_truncated_or_corrupt_input(
    hq: HqStore, hq_url: str, tmp_path: Path
) -> None:
    good = tmp_path / "latte.json"
    good.write_text(json.dumps(LATTE), encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(LATTE)[:40], encoding="utf-8")  # a file cut short
    done = command("hq", "reward", "put", str(cut), "--db", hq_url)
    assert done.returncode != 0 and "reward_invalid" in done.stderr + done.stdout
    assert hq.reward_catalogue() == []
    done = command("hq", "reward", "put", str(good), "--by", "Mio", "--db", hq_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reward_id"] == "LATTE"
    hq.put_reward(CINEMA)
    codes = tmp_path / "codes.txt"
    codes.write_bytes(b"CIN-1\nCIN 2 has spaces\n")
    done = command("hq", "reward", "codes", "CINEMA", str(codes), "--db", hq_url)
    assert done.returncode != 0 and "reward_invalid" in done.stderr + done.stdout
    codes.write_bytes(b"CIN-1\n\xff\xfe\n")  # not text at all
    done = command("hq", "reward", "codes", "CINEMA", str(codes), "--db", hq_url)
    assert done.returncode != 0 and "reward_invalid" in done.stderr + done.stdout
    with hq.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM reward_codes") == (0,)  # nothing of a refused file was loaded
    codes.write_text("CIN-1\nCIN-2\n", encoding="utf-8")
    done = command("hq", "reward", "codes", "CINEMA", str(codes), "--db", hq_url)
    assert json.loads(done.stdout) == {"reward_id": "CINEMA", "added": 2, "read": 2}
    done = command("hq", "reward", "list", "--json", "--db", hq_url)
    assert {r["reward_id"]: r["left"] for r in json.loads(done.stdout)} == {"LATTE": 3, "CINEMA": 2}
