"""A reward of the catalogue bought through the cashier's session (the panel's buttons) on a real Service and
SQLite store: the identified member's points pay for it, never without their proof, within this till's
allocation of the reward's stock; a void gives it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.checkout import Checkout
from terminal.errors import Code, Rejected
from terminal.model import EarnRule, Member
from terminal.ports import CacheDocs
from terminal.rewards import parse_reward
from terminal.service import Service
from terminal.session import Session
from terminal.store import Store

NOW = 1_790_000_000.0
LATTE = parse_reward({"reward_id": "LATTE", "reward": "item", "sku": "L", "points": 300, "title": "Latte", "stock": 9})
CAKE = parse_reward({"reward_id": "CAKE", "reward": "item", "sku": "C", "points": 5000, "title": "Cake"})
GONE = parse_reward({"reward_id": "GONE", "reward": "item", "sku": "G", "points": 1, "title": "Old", "active": False})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "terminal.db")
    store.apply_changes([Member("M-1", "Aiko", "gold", 1200)], [], [EarnRule("base", 1, 100)], 1)
    store.put_docs("rule_docs", {f"reward:{r.reward_id}": r.doc() for r in (LATTE, CAKE, GONE)})
    store.apply_changes([], [], [], 2, docs=CacheDocs(allocations=[("reward:LATTE", 1, 0)]))
    yield store
    store.close()


def session_of(service: Service) -> Session:
    return Session(service, Checkout(service))


def refused(code: Code, fn: object, *args: object) -> None:
    with pytest.raises(Rejected) as caught:
        fn(*args)  # type: ignore[operator]
    assert caught.value.code is code, caught.value


def test_the_cashier_adds_a_reward_and_the_member_pays_with_points(store: Store) -> None:
    trusting = Service(store, "T-1", clock=lambda: NOW, spend_needs_proof=False)
    session = session_of(trusting)
    refused(Code.NO_MEMBER, session.add_reward, "LATTE")  # no member yet: nothing to buy it with
    snap = session.identify("M-1", "typed")
    assert [r["reward_id"] for r in snap["catalogue"]] == ["LATTE", "CAKE"]  # active ones, cheapest first
    snap = session.add_reward("LATTE")
    assert snap["rewards"] == ["LATTE"] and snap["quote"]["points_redeemed"] == 300 and snap["quote"]["payable"] == 0
    refused(Code.INSUFFICIENT_POINTS, session.add_reward, "CAKE")
    assert session.snapshot()["rewards"] == ["LATTE"]  # the refused one is not kept
    refused(Code.REWARD_UNKNOWN, session.add_reward, "GONE")
    session.pay(0)
    snap = session.confirm()
    assert snap["state"] == "done"
    sale = store.entries()[-1].payload
    assert sale["rewards"] == [{"reward_id": "LATTE", "points": 300}] and sale["points_delta"] == -300
    assert trusting.member("M-1").points == 900
    assert store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 0}
    session.void()
    assert trusting.member("M-1").points == 1200
    assert store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 1}


def test_the_member_id_typed_never_spends_points_on_a_reward(store: Store) -> None:
    service = Service(store, "T-1", clock=lambda: NOW)  # spending needs the member's proof
    session = session_of(service)
    session.identify("M-1", "typed")
    session.add_reward("LATTE")
    session.pay(0)
    refused(Code.PROOF_NEEDED, session.confirm)
    assert store.entries() == [] and service.member("M-1").points == 1200


def test_a_till_without_allocation_left_refuses_the_reward(store: Store) -> None:
    store.apply_changes([], [], [], 3, docs=CacheDocs(allocations=[]))  # the pool's allocation taken away
    session = session_of(Service(store, "T-1", clock=lambda: NOW, spend_needs_proof=False))
    session.identify("M-1", "typed")
    refused(Code.REWARD_ALLOCATION_USED, session.add_reward, "LATTE")
    assert session.snapshot()["rewards"] == [] and store.entries() == []
