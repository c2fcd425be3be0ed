"""Conflicts found at ingest become reconciliation items; the entries are stored all the same.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hq import ingest as ingest_module
from hq import payments
from hq.ingest import Settings
from hq.store import Effect, HqStore
from sync.protocol import ItemState, Reason, WireEntry
from terminal.topups import TopupPolicy
from tests.fixtures import entries

CREATED = "2026-03-01T10:00:00.000Z"
STORES = {"T1": "S1", "T2": "S2"}


def sale(seq: int, terminal: str = "T1", *, created: str = CREATED, kind: str = "sale", **fields: Any) -> WireEntry:
    """A sale (or a void) as the till writes it; points_delta < 0 redeems, stored_value_delta < 0 pays."""
    store_id = STORES.get(terminal, "S9")
    if kind == "void":
        payload = entries.refund(
            fields["original_txn"],
            fields.get("member_id", "M-1"),
            store_id=store_id,
            void=True,
            coupons_restored=tuple(fields.get("coupons_restored", ())),
        )
    else:
        delta = fields.pop("points_delta", 0)
        fields.setdefault("earned", max(delta, 0))
        fields.setdefault("redeemed", max(-delta, 0))
        fields["stored_value"] = -fields.pop("stored_value_delta", 0)
        if fields["stored_value"]:  # money is never spent on the POS's word: a tap of Aiko's Lite-S card
            fields.update(proof="card", tap={"uid_hash": "aa" * 32, "trust": "mac"})
        fields.setdefault("total", max(1000, fields["redeemed"] + fields["stored_value"]))
        payload = entries.sale(store_id=store_id, **fields)
    return WireEntry(
        terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind=kind, payload=payload, created_at=created
    )


def refund_of(seq: int, payload: dict[str, Any], terminal: str = "T1") -> WireEntry:
    """A till's refund entry (``payload``: ``entries.refund``) at ``seq``."""
    return WireEntry(
        terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind="refund", payload=payload, created_at=CREATED
    )


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    # These are the offline conflicts: the chain trusts its POS here and does not price sales again
    # (tests/security covers proofs and the rules).
    hq = HqStore(hq_url, Settings(clock_skew=300, write_off_points=5, spend_needs_proof=False, recompute=False))
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
        Reason.COUPON_OVERUSED,
        "T2",
        "S2",
        1,
        ItemState.OPEN,
    )
    assert item.detail["allowed"] == 1 and item.detail["use_number"] == 2
    assert store.coupon_uses("C-ONCE") == 2


def test_per_member_limits_count_each_member(store: HqStore) -> None:
    batch = [sale(n, coupons=["C-TWICE-EACH"]) for n in (1, 2, 3)] + [
        sale(4, member_id="M-2", coupons=["C-TWICE-EACH"])
    ]
    store.ingest("T1", batch)
    assert reasons(store) == [("coupon_overused", 3, "T1")]


def test_unknown_coupons_are_flagged(store: HqStore) -> None:
    store.ingest("T1", [sale(1, coupons=["C-NOPE"])])
    assert reasons(store) == [("unknown_coupon", 1, "T1")]


def test_a_void_gives_the_coupon_back_and_settles_its_sale_automatically(store: HqStore) -> None:
    store.ingest("T1", [sale(1, coupons=["C-ONCE"])])
    store.ingest("T2", [sale(1, "T2", coupons=["C-ONCE"])])
    store.ingest(
        "T2", [sale(2, "T2", kind="void", original_txn="T2-1", voided_txn_id="T2-1", coupons_restored=["C-ONCE"])]
    )
    [item] = store.items()
    assert item.state == ItemState.SETTLED_AUTO and "void T2-2" in (item.note or "")
    assert store.coupon_uses("C-ONCE") == 1


def test_balance_overspent_across_two_terminals(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-800)])
    store.ingest("T2", [sale(1, "T2", points_delta=-800)])
    [item] = store.items()
    assert (item.reason, item.terminal_id, item.detail["balance_after"], item.detail["short"]) == (
        Reason.POINTS_OVERSPENT,
        "T2",
        -600,
        600,
    )
    assert store.member("M-1").points == -600  # type: ignore[union-attr]  # facts are applied


def test_the_overspend_is_pinned_on_the_entry_that_crossed_zero(store: HqStore) -> None:
    store.ingest(
        "T1",
        [sale(1, points_delta=-600), sale(2, points_delta=100), sale(3, points_delta=-550), sale(4, points_delta=-100)],
    )
    assert reasons(store) == [("points_overspent", 3, "T1"), ("points_overspent", 4, "T1")]
    shorts = [i.detail["short"] for i in store.items()]
    assert shorts == [50, 100]  # seq 3 took 500 down to -50; seq 4 all of its 100


def test_small_overspends_are_written_off_automatically(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-1003)])
    [item] = store.items()
    assert item.state == ItemState.SETTLED_AUTO and "written off" in (item.note or "")


def test_stored_value_overspent(store: HqStore) -> None:
    store.ingest(
        "T1", [sale(1, stored_value_delta=-4000, code_id="D1-1"), sale(2, stored_value_delta=-4000, code_id="D1-2")]
    )
    assert reasons(store) == [("stored_value_overspent", 2, "T1")]
    assert store.member("M-1").stored_value == -3000  # type: ignore[union-attr]


def test_a_void_clawing_back_points_already_spent_is_no_payment_beyond_the_days_bound(hq_url: str) -> None:
    """A void takes back the points its sale earned, spent since (the member's debt, carried): no offline payment,
    so it is neither held by the till's day's bound on payments beyond the balances nor counted against it."""
    bound = Settings(clock_skew=300, spend_needs_proof=False, recompute=False, overspent_points_per_day=100)
    hq = HqStore(hq_url, bound)
    hq.add_terminal("T1", "S1", "t1")
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.ingest(
        "T1", [sale(1, member_id="M-2", points_delta=500, total=5000), sale(2, member_id="M-2", points_delta=-500)]
    )
    void = entries.refund("T1-1", "M-2", money_back=5000, clawed=500, store_id="S1", void=True)
    hq.ingest("T1", [WireEntry(terminal_id="T1", seq=3, txn_id="T1-3", kind="void", payload=void, created_at=CREATED)])
    assert hq.effects("T1")[3] is Effect.APPLIED
    assert hq.member("M-2").points == -500  # type: ignore[union-attr]
    hq.ingest("T1", [sale(4, member_id="M-2", points_delta=-100)])  # the day's bound is whole for a payment
    assert hq.effects("T1")[4] is Effect.APPLIED
    hq.close()


def test_a_void_clawing_back_points_spent_since_is_a_clawback_short_beside_an_overspend_in_the_same_push(
    hq_url: str,
) -> None:
    """A void takes back the points its sale earned, spent since: the member's debt, carried and flagged
    ``points_clawback_short`` (the member paid nothing), never ``points_overspent``, neither held nor counted against
    the till's day's bound. The offline payments beyond the balance in the same push are overspends as before: the
    first within the bound (applied, flagged), the second beyond it (held, the void's 500 not in ``overspent_today``)."""
    bound = Settings(clock_skew=300, spend_needs_proof=False, recompute=False, overspent_points_per_day=300)
    hq = HqStore(hq_url, bound)
    hq.add_terminal("T1", "S1", "t1")
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.ingest(
        "T1", [sale(1, member_id="M-2", points_delta=500, total=5000), sale(2, member_id="M-2", points_delta=-500)]
    )
    void = entries.refund("T1-1", "M-2", money_back=5000, clawed=500, store_id="S1", void=True)
    hq.ingest(
        "T1",
        [
            WireEntry(terminal_id="T1", seq=3, txn_id="T1-3", kind="void", payload=void, created_at=CREATED),
            sale(4, member_id="M-2", points_delta=-200),
            sale(5, member_id="M-2", points_delta=-200),
        ],
    )
    effects = hq.effects("T1")
    assert [effects[n] for n in (3, 4, 5)] == [Effect.APPLIED, Effect.APPLIED, Effect.QUARANTINED]
    found = {(i.seq, i.reason.value): i for i in hq.items(terminal_id="T1")}
    assert sorted(found) == [(3, "points_clawback_short"), (4, "points_overspent"), (5, "points_overspent")]
    claw, spent, held = (
        found[(3, "points_clawback_short")],
        found[(4, "points_overspent")],
        found[(5, "points_overspent")],
    )
    assert (claw.detail["balance_after"], claw.detail["short"], claw.quarantined, claw.state) == (
        -500,
        500,
        False,
        ItemState.OPEN,
    )
    assert (spent.detail["balance_after"], spent.detail["short"], spent.quarantined) == (-700, 200, False)
    assert held.quarantined and (held.detail["overspent_today"], held.detail["short"]) == (400, 200)
    assert hq.member("M-2").points == -700  # type: ignore[union-attr]
    hq.close()


def test_a_void_of_a_topup_spent_since_is_a_clawback_short_beside_an_overspend_in_the_same_push(hq_url: str) -> None:
    """The same for stored value: a till's void of its top-up the member spent since (at another till, offline)
    takes the balance below zero, flagged ``stored_value_clawback_short``, neither held nor counted against the day's
    bound; the payments beyond the balance in the same push are overspends, bounded as before. The next top-up that
    recovers the negative balance settles both the clawback's item and the overspend's, not the held payment's: it
    took nothing, and waits for a person."""
    bound = Settings(clock_skew=300, spend_needs_proof=False, recompute=False, overspent_per_day=300)
    hq = HqStore(hq_url, bound)
    hq.add_terminal("T1", "S1", "t1")
    hq.add_terminal("T2", "S2", "t2")
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.upsert_card("dd" * 32, "M-2")
    hq.put_topup_policy("T1", TopupPolicy(True, 5000, 8000, 8000, 8000), "Mio")

    def topup(seq: int, kind: str, delta: int, original: str | None = None) -> WireEntry:
        payload: dict[str, Any] = {
            "member_id": "M-2",
            "store_id": "S1",
            "amount": abs(delta),
            "stored_value_delta": delta,
            "local_time": entries.LOCAL_TIME,
        }
        payload.update({"original_txn": original} if original else {})
        return WireEntry(terminal_id="T1", seq=seq, txn_id=f"T1-{seq}", kind=kind, payload=payload, created_at=CREATED)

    def paid(seq: int, terminal: str, amount: int) -> WireEntry:
        tap = {
            "uid_hash": "dd" * 32,
            "trust": "mac",
        }  # a tap of Ben's Lite-S card: money is never spent on the POS's word
        payload = entries.sale("M-2", amount, store_id=STORES[terminal], stored_value=amount, proof="card", tap=tap)
        return WireEntry(
            terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind="sale", payload=payload, created_at=CREATED
        )

    hq.ingest("T1", [topup(1, "till_topup", 3000)])
    hq.ingest("T2", [paid(1, "T2", 3000)])
    hq.ingest("T1", [topup(2, "topup_void", -3000, "T1-1"), paid(3, "T1", 200), paid(4, "T1", 200)])
    effects = hq.effects("T1")
    assert [effects[n] for n in (2, 3, 4)] == [Effect.APPLIED, Effect.APPLIED, Effect.QUARANTINED]
    found = {(i.seq, i.reason.value): i for i in hq.items(terminal_id="T1")}
    assert sorted(found) == [
        (2, "stored_value_clawback_short"),
        (3, "stored_value_overspent"),
        (4, "stored_value_overspent"),
    ]
    claw = found[(2, "stored_value_clawback_short")]
    spent, held = found[(3, "stored_value_overspent")], found[(4, "stored_value_overspent")]
    assert (claw.detail["balance_after"], claw.detail["short"], claw.quarantined) == (-3000, 3000, False)
    assert (spent.detail["balance_after"], spent.detail["short"], spent.quarantined) == (-3200, 200, False)
    assert held.quarantined and (held.detail["overspent_today"], held.detail["short"]) == (400, 200)
    assert hq.member("M-2").stored_value == -3200  # type: ignore[union-attr]
    payments.topup(hq, "M-2", 3200, "Mio")
    states = {i.reason.value: i.state for i in hq.items(terminal_id="T1") if not i.quarantined}
    assert states == {
        "stored_value_clawback_short": ItemState.SETTLED_AUTO,
        "stored_value_overspent": ItemState.SETTLED_AUTO,
    }
    [still] = [i for i in hq.items(terminal_id="T1") if i.quarantined]
    assert (still.seq, still.state) == (4, ItemState.OPEN) and hq.effects("T1")[4] is Effect.QUARANTINED
    hq.close()


def test_a_payment_code_replayed_at_another_terminal_is_quarantined(store: HqStore) -> None:
    store.ingest("T1", [sale(1, stored_value_delta=-10, code_id="DEV9-17")])
    store.ingest(
        "T2",
        [
            sale(1, "T2", stored_value_delta=-10, code_id="DEV9-17"),
            sale(2, "T2", stored_value_delta=-10, code_id="DEV9-17"),
        ],
    )
    items = store.items()
    assert [(i.reason, i.terminal_id, i.seq, i.quarantined) for i in items] == [
        (Reason.PAYMENT_CODE_REPLAYED, "T2", 1, True),
        (Reason.PAYMENT_CODE_REPLAYED, "T2", 2, True),
    ]
    assert items[0].detail["first_terminal"] == "T1"
    assert store.member("M-1").stored_value == 5000 - 10  # type: ignore[union-attr]  # the member pays once


def test_blocked_and_unknown_cards_and_members(store: HqStore) -> None:
    store.upsert_member("M-3", "Chen", "basic", 0, status="blocked")
    store.ingest(
        "T1",
        [
            sale(1, created=dt.datetime.now(dt.UTC).isoformat(), uid_hash="bb" * 32),
            sale(2, uid_hash="cc" * 32),
            sale(3, member_id="M-404", points_delta=40),
            sale(4, created=dt.datetime.now(dt.UTC).isoformat(), member_id="M-3"),
            sale(5, uid_hash="aa" * 32),
        ],
    )
    assert reasons(store) == [
        ("card_blocked", 1, "T1"),
        ("unknown_card", 2, "T1"),
        ("unknown_member", 3, "T1"),
        ("member_blocked", 4, "T1"),
    ]


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
    # sale 2's time is corrected by the measured offset (half an hour slow): off by as much, flagged
    assert found == {(Reason.CLOCK_AHEAD, 1), (Reason.CLOCK_BEHIND, 2), (Reason.CLOCK_SKEW, None)}
    behind = next(i for i in store.items() if i.reason == Reason.CLOCK_BEHIND)
    assert 1700 < behind.detail["behind_seconds"] < 1900 and behind.detail["effective"].startswith("2026-03-01T10:")
    skew = next(i for i in store.items() if i.reason == Reason.CLOCK_SKEW)
    assert -1900 < skew.detail["offset_seconds"] < -1700
    assert store.terminals()[0]["clock_offset"] == pytest.approx(skew.detail["offset_seconds"], abs=5)


def test_malformed_payloads_are_stored_and_quarantined(store: HqStore) -> None:
    typed_as_text = {**sale(1).payload, "points_delta": "12"}
    store.ingest(
        "T1",
        [
            WireEntry(terminal_id="T1", seq=1, txn_id="T1-1", kind="sale", payload=typed_as_text, created_at=CREATED),
            sale(2, created="yesterday", points_delta=1),
        ],
    )
    assert reasons(store) == [("malformed_entry", 1, "T1"), ("malformed_entry", 2, "T1")]
    assert store.journal_count("T1") == 2
    assert store.effects("T1")[1] == Effect.MALFORMED
    assert [i.quarantined for i in store.items()] == [True, False]  # a bad time is flagged, the sale stands


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
        ItemState.SETTLED_MANUAL,
        "Mio (store manager)",
        "customer paid the difference in cash",
    )
    with pytest.raises(ValueError, match="already settled"):
        store.settle(item.item_id, "someone", "again")
    assert store.items(state="open") == []


def test_concurrent_terminals_count_one_coupon_exactly(store: HqStore) -> None:
    # Eight terminals push at once, each using the single-use coupon: seven uses are over the limit.
    for n in range(3, 11):
        store.add_terminal(f"T{n}", "S9", f"t{n}")
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: store.ingest(f"T{n}", [sale(1, f"T{n}", coupons=["C-ONCE"], points_delta=-200)]), range(3, 11)
            )
        )
    found = store.items()
    assert sum(i.reason == Reason.COUPON_OVERUSED for i in found) == 7
    assert sum(i.reason == Reason.POINTS_OVERSPENT for i in found) == 3  # 1000 covers five of eight
    assert store.coupon_uses("C-ONCE") == 8
    assert store.member("M-1").points == 1000 - 8 * 200  # type: ignore[union-attr]


def test_points_above_the_rules_are_quarantined_and_other_differences_flagged(hq_url: str) -> None:
    store = HqStore(hq_url)
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "gold", 1000)
    store.set_rule("base", 1, 100)
    priced = {
        "total": 1250,
        "lines": [{"sku": "SKU-1", "category": "food", "quantity": 1, "unit_price": 1250}],
        "local_time": "2026-03-01T19:00:00",
        "tier": "gold",
    }
    fewer = WireEntry(
        terminal_id="T1",
        seq=3,
        txn_id="T1-3",
        kind="sale",
        created_at=CREATED,
        payload=entries.sale(earned=5, **priced),
    )  # type: ignore[arg-type]
    store.ingest("T1", [sale(1, earned=12, **priced), sale(2, earned=40, **priced), fewer])
    found = {(i.reason, i.seq): i for i in store.items()}
    assert set(found) == {(Reason.POINTS_ABOVE_RULES, 2), (Reason.PRICE_MISMATCH, 3)}
    assert found[(Reason.POINTS_ABOVE_RULES, 2)].detail == {"terminal": 40, "head_office": 12}
    assert found[(Reason.POINTS_ABOVE_RULES, 2)].quarantined
    assert found[(Reason.PRICE_MISMATCH, 3)].detail["figures"] == {"points_earned": {"terminal": 5, "head_office": 12}}
    assert store.effects("T1") == {1: Effect.APPLIED, 2: Effect.QUARANTINED, 3: Effect.APPLIED}
    assert store.member("M-1").points == 1000 + 12 + 5  # type: ignore[union-attr]  # at most what the rules give
    store.close()


def test_a_refund_that_arrives_before_its_sale_waits_and_then_applies(store: HqStore) -> None:
    refund = refund_of(2, entries.refund("T1-1", money_back=700, restored=300, store_id="S1"))
    store.ingest("T1", [refund])  # seq 1 (the sale) is still on its way
    [held] = store.items()
    assert (held.reason, held.quarantined) == (Reason.REFUND_UNKNOWN_SALE, True)
    assert store.member("M-1").points == 1000  # type: ignore[union-attr]
    store.ingest("T1", [sale(1, points_delta=-300, coupons=["C-TWICE-EACH"])])
    [settled] = store.items()
    assert (settled.state, settled.settled_by) == (ItemState.SETTLED_AUTO, "head office")
    assert store.member("M-1").points == 1000  # type: ignore[union-attr]  # spent 300, given back 300
    assert store.effects("T1") == {1: Effect.APPLIED, 2: Effect.APPLIED}


def test_a_refund_that_arrives_before_its_sale_is_checked_against_it_when_it_comes(store: HqStore) -> None:
    over = refund_of(2, entries.refund("T1-1", money_back=5000, restored=300, store_id="S1"))  # beyond the sale
    store.ingest("T1", [over])
    store.ingest("T1", [sale(1, points_delta=-300)])
    held = {i.reason: i for i in store.items() if i.txn_id == "T1-2"}
    assert held[Reason.REFUND_UNKNOWN_SALE].state is ItemState.SETTLED_AUTO  # its sale is known now
    over = held[Reason.REFUND_EXCEEDS_SALE]  # still held, for what it breaks against that sale
    assert over.state is ItemState.OPEN and over.quarantined and over.detail["money_back"]["returned"] == 5000
    assert store.effects("T1") == {1: Effect.APPLIED, 2: Effect.QUARANTINED}
    assert store.member("M-1").points == 700  # type: ignore[union-attr]  # the sale's spend, nothing given back


def test_a_released_refund_counts_against_its_sale_and_gives_its_coupons_back(store: HqStore) -> None:
    store.ingest("T1", [sale(1, points_delta=-300, coupons=["C-ONCE"])])
    assert store.coupon_uses("C-ONCE") == 1
    wrong = entries.refund("T1-1", money_back=700, restored=300, coupons_restored=("C-ONCE",), store_id="S2")
    store.ingest("T1", [refund_of(2, wrong)])
    assert [(i.reason, i.quarantined) for i in store.items()] == [(Reason.WRONG_STORE, True)]
    assert (store.member("M-1").points, store.coupon_uses("C-ONCE")) == (700, 1)  # type: ignore[union-attr]
    assert store.release("T1-2", "Mio", "the refund was rung at the other store's till") == "applied"
    assert (store.member("M-1").points, store.coupon_uses("C-ONCE")) == (1000, 0)  # type: ignore[union-attr]
    again = entries.refund("T1-1", money_back=700, restored=300, store_id="S1")
    store.ingest("T1", [refund_of(3, again)])
    assert Reason.REFUND_EXCEEDS_SALE in {i.reason for i in store.items()}  # the released one counted
    assert store.member("M-1").points == 1000  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="who and why"):
        store.reject("T1-3", "Mio", "")


def test_a_partial_refund_head_office_cannot_price_is_held_and_a_whole_one_applies(
    hq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hq = HqStore(hq_url, Settings(clock_skew=10**9, spend_needs_proof=False))  # head office prices refunds again
    hq.add_terminal("T1", "S1", "t1")
    hq.upsert_member("M-1", "Aiko", "gold", 1000)
    two = [{"sku": "ITEM", "quantity": 2, "unit_price": 500}]
    hq.ingest("T1", [sale(1, lines=two, total=1000)])

    def cannot(*args: Any) -> Any:
        raise ValueError("a document head office no longer holds")

    monkeypatch.setattr(ingest_module, "refund_priced", cannot)  # this layer's seam: pricing fails
    one = entries.refund("T1-1", money_back=500, store_id="S1", returned=[(0, 1)])
    both = entries.refund("T1-1", money_back=1000, store_id="S1", returned=[(0, 2)])
    hq.ingest("T1", [refund_of(2, one)])
    held = [i for i in hq.items() if i.reason is Reason.REFUND_KEEPS_POINTS]
    assert len(held) == 1 and held[0].quarantined and held[0].detail["rules_take"] is None
    hq.ingest("T1", [refund_of(3, both)])
    assert hq.effects("T1") == {1: Effect.NONE, 2: Effect.QUARANTINED, 3: Effect.NONE}  # no points moved
    hq.close()


def test_a_void_clawing_back_more_than_its_sale_earned_is_held_not_a_members_debt(hq_url: str) -> None:
    """A cashier (or a stolen credential) voids a sale that earned nothing and says the void takes back 5,000
    points: a return takes back at most what its sale still keeps, so the void is held (``refund_exceeds_sale``),
    not applied as the member's ``points_clawback_short`` debt; a void taking back what its sale earned applies."""
    hq = HqStore(hq_url, Settings(clock_skew=300, spend_needs_proof=False, recompute=False))
    hq.add_terminal("T1", "S1", "t1")
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.ingest("T1", [sale(1, member_id="M-2", total=5000), sale(2, member_id="M-2", points_delta=300, total=3000)])
    beyond = entries.refund("T1-1", "M-2", money_back=5000, clawed=5000, store_id="S1", void=True)
    earned = entries.refund("T1-2", "M-2", money_back=3000, clawed=300, store_id="S1", void=True)
    hq.ingest(
        "T1",
        [
            WireEntry(terminal_id="T1", seq=3, txn_id="T1-3", kind="void", payload=beyond, created_at=CREATED),
            WireEntry(terminal_id="T1", seq=4, txn_id="T1-4", kind="void", payload=earned, created_at=CREATED),
        ],
    )
    assert [hq.effects("T1")[n] for n in (3, 4)] == [Effect.QUARANTINED, Effect.APPLIED]
    assert hq.member("M-2").points == 0  # type: ignore[union-attr]
    assert [(i.seq, i.reason.value) for i in hq.items(terminal_id="T1")] == [(3, "refund_exceeds_sale")]
    hq.close()
