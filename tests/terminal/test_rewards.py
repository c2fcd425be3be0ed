"""The rewards catalogue's documents (terminal/rewards.py, pure): what parses, what is refused and why, and
how a till picks the rewards out of its rule documents."""

from __future__ import annotations

from typing import Any

import pytest

from terminal import loyalty as ly
from terminal.rewards import RewardError, RewardKind, catalogue, kept_once_bought, not_returnable, parse_reward

ITEM = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "A latte", "stock": 5}


def test_a_reward_document_round_trips() -> None:
    reward = parse_reward(ITEM)
    assert (reward.kind, reward.points, reward.pool_id, reward.line_sku) == (
        RewardKind.ITEM,
        300,
        "reward:LATTE",
        "reward:LATTE",
    )
    assert parse_reward(reward.doc()) == reward
    unlimited = parse_reward({**ITEM, "stock": None})
    assert unlimited.pool_id is None
    code = parse_reward({"reward_id": "CIN", "reward": "partner_code", "points": 9, "title": "Cinema"})
    assert code.pool_id == "reward:CIN"  # a partner's codes are always a stock


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"reward_id": ""}, "reward_id"),
        ({"reward_id": "x" * 49}, "reward_id"),
        ({"reward_id": "a b"}, "reward_id"),
        ({"reward": "cash"}, "reward"),
        ({"points": 0}, "points"),
        ({"points": True}, "points"),
        ({"points": "300"}, "points"),
        ({"title": "  "}, "title"),
        ({"title": "x" * 81}, "title"),
        ({"sku": None}, "sku"),
        ({"stock": -1}, "stock"),
        ({"stock": 1.5}, "stock"),
        ({"active": "yes"}, "active"),
        ({"reward": "coupon"}, "coupon"),
        ({"reward": "coupon", "coupon": {"kind": "percent_off", "value": 101}}, "coupon"),
        ({"reward": "coupon", "coupon": {"kind": "amount_off", "value": 1, "pool": "P"}}, "coupon"),
    ],
)
def test_a_bad_document_names_what_is_wrong(change: dict[str, Any], named: str) -> None:
    with pytest.raises(RewardError, match=named):
        parse_reward({**ITEM, **change})


def test_the_till_reads_rewards_from_its_rule_documents_and_earning_skips_them() -> None:
    docs: dict[str, Any] = {
        "reward:LATTE": parse_reward(ITEM).doc(),
        "reward:BAD": {"kind": "reward", "reward_id": "BAD", "reward": "item", "points": -1},
        "reward:OTHER": parse_reward({**ITEM, "reward_id": "OTHER2"}).doc(),  # filed under another id
        "base": {"kind": "base", "points": 1, "per_minor": 100},
    }
    assert list(catalogue(docs)) == ["LATTE"]
    program = ly.parse_program({k: v for k, v in docs.items() if k != "reward:BAD"})
    assert [r.rule_id for r in program.rules] == ["base"]


COUPON = {
    "reward_id": "TENOFF",
    "reward": "coupon",
    "points": 200,
    "title": "10% off",
    "coupon": {"kind": "percent_off", "value": 10},
}
PARTNER = {"reward_id": "CINEMA", "reward": "partner_code", "points": 900, "title": "Cinema"}


def test_only_an_item_reward_goes_back_with_its_line() -> None:
    item, coupon, partner = parse_reward(ITEM), parse_reward(COUPON), parse_reward(PARTNER)
    assert not kept_once_bought(item)
    assert kept_once_bought(coupon) and kept_once_bought(partner)
    assert kept_once_bought(None)  # a reward the till no longer holds: the safe side
    withdrawn = parse_reward({**PARTNER, "active": False})
    assert kept_once_bought(withdrawn)  # withdrawing it changes nothing about the codes handed out


def test_the_rewards_a_return_would_give_back_that_the_member_keeps() -> None:
    held = {r.reward_id: r for r in map(parse_reward, (ITEM, COUPON, PARTNER))}
    assert not_returnable([], held) == ()
    assert not_returnable(["LATTE"], held) == ()
    assert not_returnable(["TENOFF", "LATTE", "CINEMA"], held) == ("CINEMA", "TENOFF")
    assert not_returnable(["GONE", "LATTE"], held) == ("GONE",)
    assert not_returnable(iter(["CINEMA", "CINEMA"]), held) == ("CINEMA",)  # any iterable, once each
