"""Conflicts found at ingest become reconciliation items; the entries are stored all the same.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sync.hq.ingest import Settings
from sync.hq.storage import Effect, HqStore
from sync.protocol import ItemState, Reason, WireEntry

CREATED = "2026-03-01T10:00:00.000Z"


def sale(seq: int, terminal: str = "T1", *, created: str = CREATED, kind: str = "sale", **payload: Any) -> WireEntry:
    payload.setdefault("member_id", "M-1")
    return WireEntry(terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind=kind, payload=payload,
                     created_at=created)


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url, Settings(clock_skew=300, write_off_points=5))
    hq.add_terminal("T1", "S1", "t1")
    hq.add_terminal("T2", "S2", "t2")
    hq.upsert_member("M-1", "Aiko", "gold", 1000, stored_value=5000)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.put_coupon({"coupon_id": "C-ONCE", "limits": {"global": 1}})
    hq.put_coupon({"coupon_id": "C-TWICE-EACH", "limits": {"global": 100, "per_member": 2}})
    hq.upsert_card("aa" * 32, "M-1")
    hq.upsert_card("bb" * 32, "M-1", status="blocked")
    yield hq
    hq.close()


def reasons(store: HqStore, **filters: Any) -> list[tuple[str, int | None, str]]:
    return [(i.reason.value, i.seq, i.terminal_id) for i in store.items(**filters)]


def test_a_single_use_coupon_used_at_two_stores_is_flagged_on_the_second_use(store: HqStore) -> None:
    assert store.ingest("T1", [sale(1, coupons=["C-ONCE"])]).flagged == 0
    reply = store.ingest("T2", [sale(1, "T2", coupons=["C-ONCE"])])
    assert (reply.stored, reply.flagged) == (1, 1)
    [item] = store.items()
    assert (item.reason, item.terminal_id, item.store_id, item.seq, item.state) == (
        Reason.COUPON_OVERUSED, "T2", "S2", 1, ItemState.OPEN)
    assert item.detail["allowed"] == 1 and item.detail["use_number"] == 2
    assert store.coupon_uses("C-ONCE") == 2


def test_per_member_limits_count_each_member(store: HqStore) -> None:
    batch = [sale(n, coupons=["C-TWICE-EACH"]) for n in (1, 2, 3)] + [sale(4, member_id="M-2", coupons=["C-TWICE-EACH"])]
    store.ingest("T1", batch)
    assert reasons(store) == [("coupon_overused", 3, "T1")]


def test_unknown_coupons_are_flagged(store: HqStore) -> None:
    store.ingest("T1", [sale(1, coupons=["C-NOPE"])])
    assert reasons(store) == [("unknown_coupon", 1, "T1")]


def test_a_void_gives_the_coupon_back_and_settles_its_sale_automatically(store: HqStore) -> None:
    store.ingest("T1", [sale(1, coupons=["C-ONCE"])])
    store.ingest("T2", [sale(1, "T2", coupons=["C-ONCE"])])
    store.ingest("T2", [sale(2, "T2", kind="void", original_txn="T2-1", voided_txn_id="T2-1", coupons_restored=["C-ONCE"])])
    [item] = store.items()
    assert item.state == ItemState.SETTLED_AUTO and "void T2-2" in (item.note or "")
    assert store.coupon_uses("C-ONCE") == 1


def test_balance_overspent_across_two_terminals(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-800, points_redeemed=800)])
    store.ingest("T2", [sale(1, "T2", points_delta=-800, points_redeemed=800)])
    [item] = store.items()
    assert (item.reason, item.terminal_id, item.detail["balance_after"], item.detail["short"]) == (
        Reason.POINTS_OVERSPENT, "T2", -600, 600)
    assert store.member("M-1").points == -600  # type: ignore[union-attr]  # facts are applied


def test_the_overspend_is_pinned_on_the_entry_that_crossed_zero(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-600), sale(2, points_delta=100), sale(3, points_delta=-550),
                        sale(4, points_delta=-100)])
    assert reasons(store) == [("points_overspent", 3, "T1"), ("points_overspent", 4, "T1")]
    shorts = [i.detail["short"] for i in store.items()]
    assert shorts == [50, 100]  # seq 3 took 500 down to -50; seq 4 all of its 100


def test_small_overspends_are_written_off_automatically(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-1003)])
    [item] = store.items()
    assert item.state == ItemState.SETTLED_AUTO and "written off" in (item.note or "")


def test_stored_value_overspent(store: HqStore) -> None:
    store.ingest("T1", [sale(1, kind="payment", stored_value_delta=-4000, code_id="D1-1"),
                        sale(2, kind="payment", stored_value_delta=-4000, code_id="D1-2")])
    assert reasons(store) == [("stored_value_overspent", 2, "T1")]
    assert store.member("M-1").stored_value == -3000  # type: ignore[union-attr]


def test_a_payment_code_replayed_at_another_terminal(store: HqStore) -> None:
    store.ingest("T1", [sale(1, kind="payment", stored_value_delta=-10, code_id="DEV9-17")])
    store.ingest("T2", [sale(1, "T2", kind="payment", stored_value_delta=-10, code_id="DEV9-17"),
                        sale(2, "T2", kind="payment", stored_value_delta=-10, code_id="DEV9-17")])
    items = store.items()
    assert [(i.reason, i.terminal_id, i.seq) for i in items] == [
        (Reason.PAYMENT_CODE_REPLAYED, "T2", 1), (Reason.PAYMENT_CODE_REPLAYED, "T2", 2)]
    assert items[0].detail["first_terminal"] == "T1"


def test_blocked_and_unknown_cards_and_members(store: HqStore) -> None:
    store.upsert_member("M-3", "Chen", "basic", 0, status="blocked")
    store.ingest("T1", [
        sale(1, created=dt.datetime.now(dt.UTC).isoformat(), uid_hash="bb" * 32),
        sale(2, uid_hash="cc" * 32),
        sale(3, member_id="M-404", points_delta=40),
        sale(4, created=dt.datetime.now(dt.UTC).isoformat(), member_id="M-3"),
        sale(5, uid_hash="aa" * 32),
    ])
    assert reasons(store) == [("card_blocked", 1, "T1"), ("unknown_card", 2, "T1"), ("unknown_member", 3, "T1"),
                              ("member_blocked", 4, "T1")]


def test_a_card_blocked_after_the_sale_is_no_conflict(store: HqStore) -> None:
    store.upsert_card("aa" * 32, "M-1", status="blocked")  # blocked now; the sale was made in March
    store.ingest("T1", [sale(1, uid_hash="aa" * 32)])
    assert reasons(store) == []


def test_a_member_registered_later_gets_the_points_and_the_item_settles(store: HqStore) -> None:
    store.ingest("T1", [sale(1, member_id="M-NEW", points_delta=40), sale(2, member_id="M-NEW", points_delta=2)])
    assert store.effects("T1") == {1: Effect.UNKNOWN_MEMBER, 2: Effect.UNKNOWN_MEMBER}
    store.upsert_member("M-NEW", "Newcomer", "basic", 0)
    assert store.member("M-NEW").points == 42  # type: ignore[union-attr]
    assert {i.state for i in store.items()} == {ItemState.SETTLED_AUTO}
    assert store.effects("T1") == {1: Effect.APPLIED, 2: Effect.APPLIED}


def test_clock_ahead_and_clock_skew(store: HqStore) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    wrong_clock = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).isoformat()
    store.ingest("T1", [sale(1, created=future)], clock=wrong_clock)
    store.ingest("T1", [sale(2)], clock=wrong_clock)  # the same day's skew item is not repeated
    found = {(i.reason, i.seq) for i in store.items()}
    assert found == {(Reason.CLOCK_AHEAD, 1), (Reason.CLOCK_SKEW, None)}
    skew = next(i for i in store.items() if i.reason == Reason.CLOCK_SKEW)
    assert -1900 < skew.detail["offset_seconds"] < -1700
    assert store.terminals()[0]["clock_offset"] == pytest.approx(skew.detail["offset_seconds"], abs=5)


def test_malformed_payloads_are_stored_and_flagged(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta="12"), sale(2, created="yesterday", points_delta=1)])
    assert reasons(store) == [("malformed_entry", 1, "T1"), ("malformed_entry", 2, "T1")]
    assert store.journal_count("T1") == 2


def test_retried_batches_open_no_second_item(store: HqStore) -> None:
    batch = [sale(1, points_delta=-2000)]
    store.ingest("T1", batch)
    assert store.ingest("T1", batch).flagged == 0
    assert len(store.items()) == 1


def test_settling_by_hand_keeps_who_and_why(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-2000)])
    [item] = store.items(state="open")
    with pytest.raises(ValueError):
        store.settle(item.item_id, "", "no name")
    settled = store.settle(item.item_id, "Mio (store manager)", "customer paid the difference in cash")
    assert (settled.state, settled.settled_by, settled.note) == (
        ItemState.SETTLED_MANUAL, "Mio (store manager)", "customer paid the difference in cash")
    with pytest.raises(ValueError, match="already settled"):
        store.settle(item.item_id, "someone", "again")
    assert store.items(state="open") == []


def test_concurrent_terminals_count_one_coupon_exactly(store: HqStore) -> None:
    # Eight terminals push at once, each using the single-use coupon: seven uses are over the limit.
    for n in range(3, 11):
        store.add_terminal(f"T{n}", "S9", f"t{n}")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.ingest(f"T{n}", [sale(1, f"T{n}", coupons=["C-ONCE"], points_delta=-200)]),
                      range(3, 11)))
    found = store.items()
    assert sum(i.reason == Reason.COUPON_OVERUSED for i in found) == 7
    assert sum(i.reason == Reason.POINTS_OVERSPENT for i in found) == 3  # 1000 covers five of eight
    assert store.coupon_uses("C-ONCE") == 8
    assert store.member("M-1").points == 1000 - 8 * 200  # type: ignore[union-attr]


def test_a_sale_head_office_prices_differently_is_flagged(store: HqStore) -> None:
    store.set_rule("base", 1, 100)
    priced = {"total": 1250, "discount": 0, "payable": 1250, "points_redeemed": 0, "points_delta": 12,
              "lines": [{"sku": "SKU-1", "category": "food", "quantity": 1, "unit_price": 1250}],
              "local_time": "2026-03-01T19:00:00", "store_id": "S1", "tier": "gold", "coupons": []}
    store.ingest("T1", [sale(1, points_earned=12, **priced), sale(2, points_earned=40, **priced)])
    [item] = store.items()
    assert (item.reason, item.seq) == (Reason.PRICE_MISMATCH, 2)
    assert item.detail["figures"] == {"points_earned": {"terminal": 40, "head_office": 12}}
    assert store.member("M-1").points == 1000 + 24  # type: ignore[union-attr]  # the till's figures stand
