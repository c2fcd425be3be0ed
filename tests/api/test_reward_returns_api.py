"""The till's local API and cashier session refuse to give back a reward the member keeps (docs/rewards.md): a
real till daemon (SQLite store, service, session, local API over HTTP on 127.0.0.1). A void of a sale that took a
``partner_code`` or ``coupon`` reward, or a refund returning its line, is a 409 ``reward_not_returnable`` and
writes nothing; the other lines are refunded; an ``item`` reward goes back with its line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.daemon import Daemon
from terminal.errors import Code, Rejected
from terminal.ports import CacheDocs
from terminal.rewards import parse_reward
from terminal.session import Session
from tests.api.stack import base_url, running_till

CINEMA = parse_reward({"reward_id": "CINEMA", "reward": "partner_code", "points": 400, "title": "Cinema"})
TENOFF = parse_reward(
    {
        "reward_id": "TENOFF",
        "reward": "coupon",
        "points": 200,
        "title": "10%",
        "coupon": {"kind": "percent_off", "value": 10},
    }
)
LATTE = parse_reward({"reward_id": "LATTE", "reward": "item", "sku": "L", "points": 300, "title": "Latte"})
TEA = [{"sku": "TEA", "quantity": 2, "unit_price": 450, "category": "drink"}]


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Daemon]:
    # The member's proof is not what these tests are about: the POS's word spends points here.
    with running_till(tmp_path, payments={"spend_needs_proof": False}) as daemon:
        store = daemon.store
        assert store is not None
        store.put_docs("rule_docs", {f"reward:{r.reward_id}": r.doc() for r in (CINEMA, TENOFF, LATTE)})
        store.apply_changes([], [], [], 2, docs=CacheDocs(allocations=[("reward:CINEMA", 2, 0)]))
        yield daemon


@pytest.fixture
def client(till: Daemon) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {till.api_token}"}
    with httpx.Client(base_url=base_url(till), headers=headers, timeout=10) as client:
        yield client


def ok(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = client.post(path, json=body or {})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def kinds(till: Daemon) -> list[str]:
    assert till.store is not None
    return [e.kind for e in till.store.entries()]


def points(till: Daemon) -> int:
    assert till.service is not None
    return till.service.member("M-1").points


def test_the_pos_is_refused_a_void_or_a_refund_of_a_kept_reward(till: Daemon, client: httpx.Client) -> None:
    before = points(till)
    sale = ok(client, "/v1/sales", {"member_id": "M-1", "lines": TEA, "rewards": ["CINEMA", "TENOFF"]})
    txn = sale["txn_id"]
    after = points(till)
    assert after < before
    for path, body in (
        (f"/v1/sales/{txn}/void", {}),
        (f"/v1/sales/{txn}/refund", {"lines": {"1": 1}}),  # the partner code's line
        (f"/v1/sales/{txn}/refund", {"lines": {"2": 1}}),  # the coupon reward's line
        (f"/v1/sales/{txn}/refund", {"lines": {"0": 2, "2": 1}}),  # hidden among the goods
    ):
        reply = client.post(path, json=body)
        assert reply.status_code == 409, reply.text
        refusal = reply.json()
        assert refusal["code"] == "reward_not_returnable"
        assert "CINEMA" in refusal["message"] or "TENOFF" in refusal["message"]
    assert kinds(till) == ["sale"] and points(till) == after
    assert till.store is not None and till.store.pool_headroom(["reward:CINEMA"]) == {"reward:CINEMA": 1}
    back = ok(client, f"/v1/sales/{txn}/refund", {"lines": {"0": 2}})  # the tea is refunded as usual
    assert back["total"] == -900 and kinds(till) == ["sale", "refund"]
    assert till.store.pool_headroom(["reward:CINEMA"]) == {"reward:CINEMA": 1}


def test_an_item_reward_is_refunded_and_voided_as_before(till: Daemon, client: httpx.Client) -> None:
    before = points(till)
    txn = ok(client, "/v1/sales", {"member_id": "M-1", "lines": TEA, "rewards": ["LATTE"]})["txn_id"]
    assert points(till) < before
    back = ok(client, f"/v1/sales/{txn}/refund", {"lines": {"1": 1}})
    assert back["points_delta"] == 300
    ok(client, f"/v1/sales/{txn}/void")
    assert kinds(till) == ["sale", "refund", "void"] and points(till) == before


def test_the_cashier_session_shows_the_refusal_of_a_void(till: Daemon, client: httpx.Client) -> None:
    session = till.session
    assert isinstance(session, Session)
    session.identify("M-1", "typed")
    session.add_reward("TENOFF")
    session.pay(0)
    assert session.confirm()["state"] == "done"
    with pytest.raises(Rejected) as caught:
        session.void()
    assert caught.value.code is Code.REWARD_NOT_RETURNABLE
    snap = session.snapshot()
    assert snap["error"]["code"] == "reward_not_returnable" and snap["voided"] is None
    assert kinds(till) == ["sale"]
