"""Flash-drop pools at the till: a pooled coupon redeems only within this till's allocation, at quote time
(the pure core, given the headroom) and again inside the sale's write transaction."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from terminal import coupons as cp
from terminal.errors import Code, Rejected
from terminal.loyalty import DocumentError, SaleContext
from terminal.model import Basket, EarnRule, Line, Member
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.clock import Clock
from tests.terminal.test_service_loyalty import MON_9AM

BASKET = Basket((Line("LATTE", 1, 450, "coffee"),))
FLASH = {"kind": "amount_off", "value": 100, "pool": "DROP-1"}
PERSONAL = {"kind": "amount_off", "value": 50, "pool": "DROP-1", "member_id": "M-1"}
CTX = SaleContext(datetime(2026, 11, 23, 9), "S-1", "M-1", "basic")


# -- the pure core ------------------------------------------------------------------------------------


def test_the_pool_is_parsed_and_a_bad_one_is_named() -> None:
    assert cp.parse_coupon("F", FLASH).pool == "DROP-1"
    assert cp.parse_coupon("F", {"kind": "amount_off", "value": 1}).pool is None
    for bad in (7, "", " DROP", "x" * 129, ["DROP-1"], True):
        with pytest.raises(DocumentError, match=r"coupon F: pool must be a pool id"):
            cp.parse_coupon("F", {**FLASH, "pool": bad})


@pytest.mark.parametrize(
    ("headroom", "refused"),
    [(None, "coupon_allocation_used"), (0, "coupon_allocation_used"), (-2, "coupon_allocation_used"), (1, None)],
)
def test_a_pooled_coupon_needs_headroom_in_this_tills_allocation(headroom: int | None, refused: str | None) -> None:
    offer = cp.Offer(cp.parse_coupon("F", FLASH), pool_headroom=headroom)
    assert cp.refusal(offer, BASKET, CTX) == refused


def test_a_coupon_without_a_pool_ignores_allocations() -> None:
    offer = cp.Offer(cp.parse_coupon("F", {"kind": "amount_off", "value": 100}), pool_headroom=None)
    assert cp.refusal(offer, BASKET, CTX) is None


# -- the till's store and service ----------------------------------------------------------------------


@pytest.fixture
def till(tmp_path: Path) -> tuple[Service, Store]:
    store = Store.open(tmp_path / "t.db")
    store.apply_changes([Member("M-1", "Aiko", "basic", 0)], [], [EarnRule("base", 1, 100)], 1)
    store.put_docs("coupon_docs", {"FLASH": dict(FLASH)})
    return Service(store, "T-1", clock=Clock(MON_9AM), spend_needs_proof=False), store


def allot(store: Store, allowed: int, used: int = 0, cursor: int = 2) -> None:
    """A pulled page carrying this till's allocations (the whole state)."""
    store.apply_changes([], [], [], cursor, docs=CacheDocs(allocations=[("DROP-1", allowed, used)] if allowed else []))


def sell(service: Service) -> str:
    quote = service.quote("M-1", BASKET, ["FLASH"])
    if quote.refused:
        return dict(quote.refused)["FLASH"]
    assert quote.coupons == ("FLASH",)
    return service.commit(quote).txn_id


def test_no_allocation_held_refuses_the_pooled_coupon(till: tuple[Service, Store]) -> None:
    service, store = till
    assert sell(service) == "coupon_allocation_used"  # offline before the first grant: the safe side
    assert store.entries() == []


def test_a_till_redeems_exactly_its_allocation_then_refuses(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 3)
    sold = [sell(service) for _ in range(5)]
    assert sold[3:] == ["coupon_allocation_used"] * 2
    assert len(store.entries()) == 3
    allot(store, 4, cursor=3)  # head office granted one more
    assert sell(service) != "coupon_allocation_used"
    assert sell(service) == "coupon_allocation_used"


def test_a_page_without_the_pool_takes_the_allocation_away(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 3)
    allot(store, 0, cursor=3)  # the pool was closed: its allocation is no longer listed
    assert store.pool_allocations() == {}
    assert sell(service) == "coupon_allocation_used"
    store.apply_changes([], [], [], 4, docs=CacheDocs())  # a page carrying no allocations keeps what is held
    allot(store, 3, cursor=5)
    store.apply_changes([], [], [], 6, docs=CacheDocs())
    assert store.pool_allocations() == {"DROP-1": (3, 0)}


def test_two_stale_quotes_cannot_both_take_the_last_unit(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 1)
    quotes = [service.quote("M-1", BASKET, ["FLASH"]) for _ in range(2)]
    assert all(q.coupons == ("FLASH",) for q in quotes)  # both quoted while one unit was left
    results: list[str] = []
    start = threading.Barrier(2)

    def commit(n: int) -> None:
        start.wait(timeout=10)
        try:
            results.append(service.commit(quotes[n]).txn_id)
        except Rejected as exc:
            results.append(exc.code.value)

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2
    assert results.count(Code.COUPON_ALLOCATION_USED.value) == 1
    assert len(store.entries()) == 1


def test_two_pooled_coupons_in_one_sale_take_two_units(till: tuple[Service, Store]) -> None:
    service, store = till
    store.put_docs("coupon_docs", {"MINE": dict(PERSONAL)})
    allot(store, 1)
    quote = service.quote("M-1", BASKET, ["FLASH"])
    assert set(quote.coupons) == {"FLASH", "MINE"}  # each alone fits the one unit left
    with pytest.raises(Rejected) as info:
        service.commit(quote)
    assert info.value.code is Code.COUPON_ALLOCATION_USED


def test_a_void_gives_the_unit_back(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 1)
    txn = sell(service)
    assert sell(service) == "coupon_allocation_used"
    service.void(txn)
    assert store.pool_headroom(["DROP-1"]) == {"DROP-1": 1}
    assert sell(service) != "coupon_allocation_used"


def test_the_unit_goes_back_to_the_pool_it_was_taken_from(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 1)
    txn = sell(service)
    store.put_docs("coupon_docs", {"FLASH": {**FLASH, "pool": "DROP-2"}})  # the document changed since
    service.void(txn)
    assert store.pool_headroom(["DROP-1"]) == {"DROP-1": 1}


def test_a_rebuilt_till_counts_head_offices_figure_of_its_uses(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 5, used=4)  # its own uses were lost with a damaged file; head office counted 4
    assert store.pool_headroom(["DROP-1"]) == {"DROP-1": 1}
    assert sell(service) != "coupon_allocation_used"
    assert sell(service) == "coupon_allocation_used"


def test_a_partial_refund_keeps_a_pooled_coupon_that_still_applies(till: tuple[Service, Store]) -> None:
    service, store = till
    allot(store, 1)
    two = Basket((Line("LATTE", 1, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))
    quote = service.quote("M-1", two, ["FLASH"])
    assert quote.coupons == ("FLASH",)
    sold = service.commit(quote)
    service.refund(sold.txn_id, {1: 1})  # the beans go back; the coupon still applies to the latte
    assert store.entries()[-1].payload["coupons_restored"] == []
    assert store.entries()[-1].payload["money_back"] == 1200
    assert store.pool_headroom(["DROP-1"]) == {"DROP-1": 0}
