"""A reward the member keeps is never given back at a till: a real head office served on 127.0.0.1 (SQLite, then
PostgreSQL) and a real till (its store, service and sync client over HTTP). A ``partner_code`` reward (head office hands its
code out as the sale arrives) or a ``coupon`` reward (its coupon may be used anywhere) stays bought: the till
refuses a void of its sale and a refund of its line (``reward_not_returnable``), writing nothing, so head office
never has to quarantine it (``reward_kept``). The other lines are refunded as usual, and an ``item`` reward still
goes back with its line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.store import HqStore
from terminal.errors import Code
from terminal.identity import Payment
from terminal.model import Basket, Line
from tests.sync import test_rewards_tills as base
from tests.sync.test_rewards_tills import Shop, Till, open_till, refused

pytestmark = pytest.mark.slow
shop = base.shop  # the head office of those tests (a fixture), on each engine

CINEMA = {"reward_id": "CINEMA", "reward": "partner_code", "points": 400, "title": "Cinema ticket"}
TEA = Basket((Line("TEA", 2, 450, "drink"),))


@pytest.fixture
def till(shop: Shop) -> Iterator[Till]:
    admin = HqStore(shop.hq.db)
    try:
        admin.put_reward(CINEMA)
        admin.add_reward_codes("CINEMA", ["CIN-0001", "CIN-0002"])
    finally:
        admin.close()
    till = open_till(shop, "T-A")  # its pull brings the catalogue and an allocation of each stock
    try:
        yield till
    finally:
        till.client.close()
        till.store.close()


def sell(shop: Shop, till: Till, basket: Basket, *rewards: str) -> str:
    quote = till.service.quote("M-1", basket, rewards=rewards)
    return till.service.commit(quote, Payment(0, shop.phone.next_code())).txn_id


def unchanged(till: Till, entries: int, points: int, headroom: dict[str, int]) -> None:
    """Nothing was journaled, no point and no unit came back."""
    assert len(till.store.entries()) == entries
    assert till.service.member("M-1").points == points
    assert till.store.pool_headroom(headroom) == headroom


def test_a_partner_code_reward_is_kept_and_the_other_lines_are_refunded(shop: Shop, till: Till) -> None:
    assert till.service.rewards()["CINEMA"].kind == "partner_code"
    sold = sell(shop, till, TEA, "CINEMA")  # line 0: the tea; line 1: the reward
    till.client.sync_once()
    code = shop.read("SELECT code FROM reward_purchases WHERE reward_id = 'CINEMA'")[0][0]
    assert code in {"CIN-0001", "CIN-0002"}  # handed out as the sale arrived
    points, headroom = till.service.member("M-1").points, till.store.pool_headroom(["reward:CINEMA"])
    entries = len(till.store.entries())
    # The cashier voids the whole sale, or refunds the reward's line, or both lines at once: refused each time.
    refused(Code.REWARD_NOT_RETURNABLE, till.service.void, sold)
    refused(Code.REWARD_NOT_RETURNABLE, till.service.refund, sold, {1: 1})
    refused(Code.REWARD_NOT_RETURNABLE, till.service.refund, sold, {0: 2, 1: 1})
    unchanged(till, entries, points, headroom)
    # The tea is refunded as usual; the ticket stays the member's.
    back = till.service.refund(sold, {0: 2})
    assert back.total == -900
    till.client.sync_once()
    assert shop.effect(back.txn_id) == "applied"
    assert shop.quarantined() == []
    assert shop.points() == till.service.member("M-1").points
    assert shop.read("SELECT refunded_at FROM reward_purchases WHERE reward_id = 'CINEMA'") == [(None,)]
    assert shop.read("SELECT used FROM pools WHERE pool_id = 'reward:CINEMA'") == [(1,)]
    # What is left of the sale is the reward alone: still not voided, and a second look changes nothing.
    entries = len(till.store.entries())
    refused(Code.REWARD_NOT_RETURNABLE, till.service.void, sold)
    refused(Code.REWARD_NOT_RETURNABLE, till.service.refund, sold, {1: 1})
    unchanged(till, entries, till.service.member("M-1").points, headroom)
    shop.books_balance()


def test_a_coupon_reward_is_kept_even_before_head_office_saw_the_sale(shop: Shop, till: Till) -> None:
    points = till.service.member("M-1").points
    sold = sell(shop, till, Basket(()), "TENOFF")  # offline: nothing pushed yet
    assert till.service.member("M-1").points == points - 200
    refused(Code.REWARD_NOT_RETURNABLE, till.service.void, sold)
    refused(Code.REWARD_NOT_RETURNABLE, till.service.refund, sold, {0: 1})
    unchanged(till, 1, points - 200, {})
    till.client.sync_once()
    issued = shop.read("SELECT coupon_id FROM reward_purchases WHERE reward_id = 'TENOFF'")[0][0]
    assert shop.read("SELECT member_id, deleted FROM coupons WHERE coupon_id = ?", [issued]) == [("M-1", 0)]
    assert shop.points() == points - 200 and shop.quarantined() == []
    shop.books_balance()


def test_a_till_started_again_on_its_file_still_refuses(shop: Shop, till: Till) -> None:
    sold = sell(shop, till, TEA, "CINEMA")
    till.client.close()
    till.store.close()  # stopped before it pushed; it knows the reward's kind from its own file
    again = open_till(shop, "T-A")
    try:
        refused(Code.REWARD_NOT_RETURNABLE, again.service.void, sold)
        assert [e.kind for e in again.store.entries()] == ["sale"]
    finally:
        again.client.close()
        again.store.close()
    assert shop.quarantined() == []


def test_an_item_reward_still_goes_back_with_its_line_but_not_a_coupon_bought_with_it(shop: Shop, till: Till) -> None:
    sold = sell(shop, till, Basket(()), "LATTE", "TENOFF")  # line 0: the latte; line 1: the coupon reward
    till.client.sync_once()
    assert shop.points() == 500 and shop.pool() == (1, 1)
    refused(Code.REWARD_NOT_RETURNABLE, till.service.void, sold)  # the coupon reward is kept
    assert till.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 0}
    back = till.service.refund(sold, {0: 1})  # the latte goes back: its points and its unit
    assert back.points_delta == 300
    assert till.store.pool_headroom(["reward:LATTE"]) == {"reward:LATTE": 1}
    assert till.service.member("M-1").points == 800
    till.client.sync_once()
    assert shop.effect(back.txn_id) == "applied" and shop.quarantined() == []
    assert shop.points() == 800 and shop.pool() == (0, 1)
    refunded = shop.read("SELECT reward_id FROM reward_purchases WHERE refunded_at IS NOT NULL")
    assert refunded == [("LATTE",)]
    shop.books_balance()
