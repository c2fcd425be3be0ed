"""Member statistics kept at ingest (hq/stats.py): the pure arithmetic, then through a real head office
on SQLite and PostgreSQL, where what ingest kept must equal ``rebuild()`` from the journal."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hq import checkins, rollup, segments, stats
from hq.db.engine import Tx
from hq.erasure import erase_member
from hq.ingest import TxnTaken
from hq.store import HqStore
from hq.wallet import checkin
from sync import checkins as codes
from sync.protocol import RefundPayload, SalePayload, VoidPayload, WireEntry
from tests.fixtures import entries
from tests.sync.test_checkin import TillKey

CREATED = "2026-01-0{}T10:00:00.000Z"


def lines(*spec: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"sku": f"SKU-{i}", "category": c, "quantity": q, "unit_price": p} for i, (c, q, p) in enumerate(spec)]


def sale_payload(**kw: Any) -> SalePayload:
    body = entries.sale(**kw)
    return SalePayload.model_validate(body)


def refund_payload(original: str = "X", **kw: Any) -> RefundPayload:
    body = entries.refund(original, **kw)
    return VoidPayload.model_validate(body) if kw.get("void") else RefundPayload.model_validate(body)


# -- pure -----------------------------------------------------------------------------------------------


BASKET = lines(("food", 2, 300), ("drink", 1, 400))  # 1000


def test_a_sale_is_one_visit_its_net_spend_and_its_categories() -> None:
    got = stats.figures(sale_payload(total=1000, lines=BASKET, coupons=["C1", "C1", "C2"]))
    assert got == stats.Figures(1, 1000, 2, (("drink", 400, 1), ("food", 600, 2)))


def test_spend_is_the_total_after_discounts_before_the_tender_split() -> None:
    body = entries.sale(total=1000, lines=BASKET, redeemed=200)
    body.update(discount=100, payable=700, pos_due=700, line_discounts=[60, 0])
    sale = SalePayload.model_validate(body)
    got = stats.figures(sale)
    assert got.spend == 900  # points paid 200 of it: still spend
    assert got.categories == (("drink", 400, 1), ("food", 540, 2))  # only the line's own discount


def test_a_void_takes_everything_back() -> None:
    sale = sale_payload(total=1000, lines=BASKET, coupons=["C1"])
    assert stats.figures(sale, [refund_payload(void=True)]) == stats.NOTHING


def test_a_partial_refund_takes_back_what_it_returned_and_keeps_the_visit() -> None:
    sale = sale_payload(total=1000, lines=BASKET, coupons=["C1", "C2"])
    got = stats.figures(sale, [refund_payload(money_back=300, returned=[(0, 1)], coupons_restored=("C2",))])
    assert got == stats.Figures(1, 700, 1, (("drink", 400, 1), ("food", 300, 1)))


def test_the_whole_sale_refunded_takes_back_the_visit_in_any_order() -> None:
    sale = sale_payload(total=1000, lines=BASKET)
    parts = [refund_payload(returned=[(0, 1)]), refund_payload(returned=[(0, 1), (1, 1)])]
    assert stats.figures(sale, parts) == stats.figures(sale, parts[::-1]) == stats.NOTHING


def test_a_difference_of_figures_is_what_a_refund_changes() -> None:
    sale = sale_payload(total=1000, lines=BASKET)
    before = stats.figures(sale)
    after = stats.figures(sale, [refund_payload(returned=[(1, 1)])])
    assert after.minus(before) == stats.Figures(0, -400, 0, (("drink", -400, -1),))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(1, 2)), max_size=5),
    st.randoms(use_true_random=False),
)
def test_figures_do_not_depend_on_the_order_of_refunds(returns: list[tuple[int, int]], rnd: Any) -> None:
    sale = sale_payload(total=1000, lines=BASKET)
    refunds = [refund_payload(returned=[r]) for r in returns]
    shuffled = list(refunds)
    rnd.shuffle(shuffled)
    got = stats.figures(sale, refunds)
    assert got == stats.figures(sale, shuffled)
    assert 0 <= got.spend <= 1000 and got.visits in (0, 1)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["food", "drink", "wine"]), st.integers(1, 5), st.integers(0, 900)),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(0, 200), max_size=7),
    st.lists(st.sampled_from(["C1", "C2", "C3"]), max_size=4),
    st.integers(0, 300),
)
def test_a_sale_nothing_was_returned_from_counts_as_one_with_a_refund_returning_nothing(
    spec: list[tuple[str, int, int]], discounts: list[int], coupons: list[str], discount: int
) -> None:
    """The figures of a sale with no refund (its own quicker path) are those the general path gives it with a
    refund that returned no unit and restored no coupon."""
    basket = lines(*spec)
    total = sum(q * p for _, q, p in spec)
    body = entries.sale(total=total, lines=basket, coupons=coupons)
    discount = min(discount, total)
    body.update(discount=discount, payable=total - discount, pos_due=total - discount, line_discounts=discounts)
    sale = SalePayload.model_validate(body)
    assert stats.figures(sale) == stats.figures(sale, [refund_payload()])


def test_a_window_of_n_days_ends_with_the_reference_day_as_segments_count_it() -> None:
    assert stats.window_start("2026-03-31", 30) == "2026-03-02"
    assert stats.window_start("2026-03-31", 1) == "2026-03-31"
    assert segments.window(date(2026, 3, 31), 30) == (stats.window_start("2026-03-31", 30), "2026-03-31")


# -- through a real head office -------------------------------------------------------------------------


class Till:
    """A terminal pushing by hand, one entry a push unless told."""

    def __init__(self, hq: HqStore, terminal_id: str, store_id: str = "S1") -> None:
        self.hq, self.terminal_id, self.seq = hq, terminal_id, 0
        hq.add_terminal(terminal_id, store_id, f"token-{terminal_id}")

    def entry(self, kind: str, payload: dict[str, Any], day: int = 1) -> WireEntry:
        self.seq += 1
        return WireEntry(
            terminal_id=self.terminal_id,
            seq=self.seq,
            txn_id=f"{self.terminal_id}-{self.seq}",
            kind=kind,
            payload=payload,
            created_at=CREATED.format(day),
        )

    def push(self, kind: str, payload: dict[str, Any], day: int = 1) -> str:
        e = self.entry(kind, payload, day)
        self.hq.ingest(self.terminal_id, [e])
        return e.txn_id


def snapshot(hq: HqStore) -> dict[str, list[tuple[Any, ...]]]:
    with hq.db.read() as tx:
        return stats.snapshot(tx)


def rolled_up(hq: HqStore) -> list[rollup.Difference]:
    """Where the report roll-up differs from its statements (its members figures sum the daily rows)."""
    with hq.db.read() as tx:
        return rollup.check(tx)


def rebuilt(hq: HqStore) -> dict[str, list[tuple[Any, ...]]]:
    hq.db.transact(stats.rebuild)
    return snapshot(hq)


def scenario(hq: HqStore) -> HqStore:
    """Sales, partial and full refunds, a void, coupon uses, a quarantined and released sale, a merge and
    an erasure, through the real ingest path."""
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    hq.upsert_member("M-3", "Chie", "basic", 0)
    hq.put_coupon({"coupon_id": "C1", "kind": "amount_off", "amount": 100}, "C1")
    hq.upsert_card("c" * 64, "M-1")
    t1, t2 = Till(hq, "T1"), Till(hq, "T2", "S2")
    t1.push("sale", entries.sale("M-1", 1000, lines=BASKET, coupons=["C1"]), day=1)
    s2 = t1.push("sale", entries.sale("M-1", 500, lines=lines(("food", 5, 100))), day=2)
    t1.push("refund", entries.refund(s2, "M-1", money_back=200, returned=[(0, 2)]), day=3)
    s3 = t2.push("sale", entries.sale("M-1", 700, store_id="S2"), day=3)
    t2.push("refund", entries.refund(s3, "M-1", store_id="S2", money_back=700, returned=[(0, 1)]), day=4)
    hq.db.transact(stats.fold_totals)  # the timer's daily fold: M-1's later figures go beside the folded ones
    s4 = t2.push("sale", entries.sale("M-2", 300, store_id="S2", coupons=["C1"]), day=4)
    t2.push("void", entries.refund(s4, "M-2", store_id="S2", void=True), day=4)
    t1.push("sale", entries.sale("M-3", 900), day=5)
    t1.push("sale", entries.sale(None, 400), day=5)  # anonymous: nobody's statistics
    # A batch holding a sale and its void.
    batch = [t1.entry("sale", entries.sale("M-2", 250), 6)]
    batch.append(t1.entry("void", entries.refund(batch[0].txn_id, "M-2", void=True), 6))
    hq.ingest("T1", batch)
    # Another store's sale from T1: quarantined (wrong store) until released.
    held = t1.push("sale", entries.sale("M-1", 800, store_id="S9"), day=6)
    assert stats_of(hq, "M-1").visits == 2
    hq.release(held, "admin", "checked with the store")
    assert stats_of(hq, "M-1").visits == 3
    # A merge: E-4's sale waits for its member; its enrolment names M-1's card, so E-4 merges into M-1.
    t2.push("sale", entries.sale("E-4", 600, store_id="S2"), day=7)
    t2.push("enrol", entries.enrol("E-4", "c" * 64, store_id="S2"), day=7)
    # An erasure.
    erase_member(hq, "M-3", "admin")
    return hq


def stats_of(hq: HqStore, member_id: str, day: str = "2026-01-07") -> stats.MemberStats:
    with hq.db.read() as tx:
        return stats.member_stats(tx, member_id, day)


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    yield store
    store.close()


def daily(snap: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The lifetime and daily figures of a snapshot (without the rolled windows)."""
    return {
        "member_totals": [row[:6] for row in snap["member_totals"]],
        "member_days": snap["member_days"],
        "member_category_days": snap["member_category_days"],
    }


def windows(hq: HqStore) -> dict[str, Any]:
    """Each member's last visit day and rolled windows, and each category's windows."""
    snap = snapshot(hq)
    return {
        "totals": {row[0]: row[6:] for row in snap["member_totals"]},
        "categories": {(row[0], row[1]): row[2:] for row in snap["member_category_windows"]},
    }


def roll(hq: HqStore, day: str, *, chunk: int = stats.BUILD_CHUNK, back: bool = False) -> int:
    """Roll as head office does: a build runs one transaction a chunk of ``chunk`` members."""
    return stats.roll_windows(hq.db, date.fromisoformat(day), chunk=chunk, back=back)


def test_incremental_statistics_equal_a_rebuild_from_the_journal(hq: HqStore) -> None:
    assert roll(hq, "2026-01-05") == 1  # built: the windows are kept through the whole scenario
    scenario(hq)
    kept = snapshot(hq)
    assert kept == rebuilt(hq)
    assert daily(kept) == EXPECTED
    # As of Jan 5: M-1's visits of Jan 1 and 2 (Jan 3's was refunded whole); Jan 6 and 7 are after it.
    assert windows(hq) == {
        "totals": {"M-1": ("2026-01-02", *[2, 1300, 1300] * 5), "M-2": (None, *[0, 0, 0] * 5)},
        "categories": {("M-1", "drink"): (400,) * 5, ("M-1", "food"): (900,) * 5},
    }


def test_a_replayed_push_or_a_borrowed_txn_id_changes_no_statistic(hq: HqStore) -> None:
    """A replaying network sends a till's push again; a stolen credential of another till sends a bigger sale
    under a txn id head office holds already. The push's own payloads stand in for the journal's in the stage,
    so neither may count: the statistics stay as they were and equal a rebuild."""
    assert roll(hq, "2026-01-05") == 1
    scenario(hq)
    till = Till(hq, "T9", "S1")
    sale = till.entry("sale", entries.sale("M-1", 1200, lines=lines(("food", 4, 300))), day=4)
    hq.ingest("T9", [sale])
    kept = snapshot(hq)
    hq.ingest("T9", [sale])  # the same push again
    borrowed = Till(hq, "T8", "S1").entry("sale", entries.sale("M-1", 90_000, lines=lines(("food", 300, 300))), 4)
    with pytest.raises(TxnTaken):  # refused whole: nothing of the push is stored
        hq.ingest("T8", [borrowed.model_copy(update={"txn_id": sale.txn_id})])
    assert snapshot(hq) == kept
    assert rebuilt(hq) == kept


def test_rolling_the_windows_forward_equals_building_them_on_that_day(hq: HqStore) -> None:
    roll(hq, "2026-01-05")
    scenario(hq)
    assert roll(hq, "2026-01-07") == 2 and snapshot(hq) == rebuilt(hq)
    assert windows(hq)["totals"]["M-1"] == ("2026-01-07", *[4, 2700, 2700] * 5)
    assert roll(hq, "2026-01-20") == 13 and roll(hq, "2026-02-01") == 12  # day by day
    assert roll(hq, "2026-01-25") == 0  # never back
    # Feb 1: the 30 days start on Jan 3, so the visits of Jan 1 (drink 400, food 600) and Jan 2 (food 300)
    # have left them.
    got = windows(hq)
    assert got["totals"]["M-1"] == ("2026-01-07", 2, 1400, 1400, *[4, 2700, 2700] * 4)
    assert got["categories"] == {
        ("M-1", ""): (1400,) * 5,
        ("M-1", "drink"): (0, 400, 400, 400, 400),
        ("M-1", "food"): (0, 900, 900, 900, 900),
    }
    assert snapshot(hq) == rebuilt(hq)
    assert roll(hq, "2027-01-08") == 341  # over a year: built, and every window is empty
    assert windows(hq) == {
        "totals": {"M-1": ("2026-01-07", *[0, 0, 0] * 5), "M-2": (None, *[0, 0, 0] * 5)},
        "categories": {},
    }
    assert snapshot(hq) == rebuilt(hq)


EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "member_totals": [
        ("M-1", "2026-01-01T10:00:00.000Z", "2026-01-07T10:00:00.000Z", 4, 2700, 1),
        ("M-2", None, None, 0, 0, 0),
    ],
    "member_days": [
        ("M-1", "2026-01-01", "S1", 1, 1000),
        ("M-1", "2026-01-02", "S1", 1, 300),
        ("M-1", "2026-01-06", "S1", 1, 800),
        ("M-1", "2026-01-07", "S2", 1, 600),
    ],
    "member_category_days": [
        ("M-1", "2026-01-01", "drink", 400, 1),
        ("M-1", "2026-01-01", "food", 600, 2),
        ("M-1", "2026-01-02", "food", 300, 3),
        ("M-1", "2026-01-06", "", 800, 1),
        ("M-1", "2026-01-07", "", 600, 1),
    ],
}


def test_the_reader_gives_windows_categories_stores_and_the_average_basket(hq: HqStore) -> None:
    scenario(hq)
    got = stats_of(hq, "M-1", "2026-01-07")
    assert got.visits == 4 and got.spend == 2700 and got.average_basket == 675
    assert got.spend_by_window == {30: 2700, 90: 2700, 365: 2700}
    assert got.spend_by_category == {"": 1400, "drink": 400, "food": 900}
    assert got.stores_visited == ["S1", "S2"]
    assert got.coupons_redeemed == 1
    late = stats_of(hq, "M-1", "2026-02-04")  # the 30 days ending with Feb 4 begin on Jan 6
    assert late.visits_by_window[30] == 2 and late.spend_by_window[30] == 1400
    later = stats_of(hq, "M-1", "2026-02-05")  # ... and with Feb 5, on Jan 7: Jan 6 has left
    assert later.visits_by_window[30] == 1 and later.spend_by_window[30] == 600


def merge(tx: Tx, loser: str, winner: str) -> None:
    """What a merge does to the journal and the statistics (hq.members.merge)."""
    tx.run("UPDATE journal SET member_id = ? WHERE member_id = ?", [winner, loser])
    stats.move(tx, loser, winner)


@pytest.mark.parametrize("recent_from", [None, "2026-01-08"])
def test_check_ins_are_visits_not_spend_and_a_rebuild_equals_what_ingest_kept(
    hq: HqStore, recent_from: str | None
) -> None:
    """Also with the days of the check-ins kept in the recent table (``recent_from``): the merge's one visit a
    day is taken from the table that holds the day."""
    roll(hq, "2026-01-09")  # the rolled windows are kept through it all, check-ins and the merge included
    if recent_from is not None:
        fold(hq, recent_from)
    scenario(hq)
    door = Till(hq, "T3", "S3")
    door.push("checkin", {"member_id": "M-1", "store_id": "S3", "reader": "door"}, day=8)
    door.push("checkin", {"member_id": "M-1", "store_id": "S3", "reader": "door"}, day=8)  # again: one visit
    door.push("checkin", {"member_id": "M-2", "store_id": "S3"}, day=9)
    till = TillKey(hq, "T4", "S1")  # a wallet scan of a till's code, 9 January 12:00 UTC
    noon = datetime(2026, 1, 9, 12, tzinfo=UTC).timestamp()
    hq.db.transact(lambda tx: checkin.check_in(tx, hq.settings, "M-1", till.code(codes.step_of(noon)), noon))
    assert rolled_up(hq) == []  # the report roll-up's members figures, before a rebuild writes them afresh
    assert snapshot(hq) == rebuilt(hq)
    got = stats_of(hq, "M-1", "2026-01-09")
    assert (got.visits, got.spend, got.average_basket) == (6, 2700, 450)
    assert got.last_visit == "2026-01-09T12:00:00.000Z" and got.stores_visited == ["S1", "S2", "S3"]
    assert got.visits_by_window[30] == 6 and got.spend_by_window[30] == 2700
    # Two members who both checked in at S3 on 8 January merge: one visit that day, still what a rebuild finds.
    hq.db.transact(
        lambda tx: checkins.record(tx, checkins.Visit("M-2", "S3", "2026-01-08", CREATED.format(8), "T3", "door"))
    )
    hq.db.transact(lambda tx: merge(tx, "M-2", "M-1"))
    assert rolled_up(hq) == []
    kept = snapshot(hq)
    assert kept == rebuilt(hq)
    assert ("M-1", "2026-01-08", "S3", 1, 0) in kept["member_days"] and ("M-1", "2026-01-09", "S3", 1, 0) in kept[
        "member_days"
    ]
    assert stats_of(hq, "M-1", "2026-01-09").visits == 7
    assert windows(hq)["totals"]["M-1"] == ("2026-01-09", *[7, 2700, 2700] * 5)
    hq.db.transact(lambda tx: stats.forget(tx, "M-1"))  # erasure: its check-ins go with its statistics
    assert rolled_up(hq) == []
    with hq.db.read() as tx:
        assert tx.all("SELECT * FROM checkins WHERE member_id = ?", ["M-1"]) == []


def test_first_and_last_visits_taken_back_in_one_push_are_found_again_and_read_further_only_when_needed(
    hq: HqStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One push voids or refunds whole the first or last visits of several members: each one's span is found
    again from the ``SPAN_STEP`` first and last sales read for all of them at once, check-ins included; only a
    member every one of whose sales so read was voided, and who has more, is read further (a longer step)."""
    members = ("M-1", "M-2", "M-3", "M-4", "M-5")
    for m in members:
        hq.upsert_member(m, m, "basic", 0)
    till = Till(hq, "T1")
    made = {m: [till.push("sale", entries.sale(m, 100 * day), day=day) for day in range(1, 8)] for m in members}
    for member_id, at in (("M-1", "2026-01-02T08:00:00.000Z"), ("M-3", "2026-01-06T12:00:00.000Z")):
        visit = checkins.Visit(member_id, "S3", at[:10], at, "T3", "door")
        hq.db.transact(lambda tx, v=visit: checkins.record(tx, v))  # a door tap hours from a sale
    taken = [
        till.entry("void", entries.refund(made["M-1"][0], "M-1", void=True), 8),  # the first: now the door tap
        till.entry("refund", entries.refund(made["M-2"][6], "M-2", money_back=700, returned=[(0, 1)]), 8),
        till.entry("void", entries.refund(made["M-3"][6], "M-3", void=True), 8),  # the last: now the door tap
        *(till.entry("void", entries.refund(txn, "M-4", void=True), 8) for txn in made["M-4"][2:]),  # last five
        till.entry("void", entries.refund(made["M-5"][3], "M-5", void=True), 8),  # neither end
    ]
    further: list[str] = []
    kept = stats._spans_of

    def read_further(
        tx: Tx, moved: Mapping[str, tuple[bool, bool]], step: int
    ) -> dict[str, tuple[str | None, str | None] | None]:
        if step > stats.SPAN_STEP:
            further.extend(sorted(moved))
        return kept(tx, moved, step)

    monkeypatch.setattr(stats, "_spans_of", read_further)
    hq.ingest("T1", taken)
    assert further == ["M-4"]
    spans = {m: (s.first_visit, s.last_visit) for m in members if (s := stats_of(hq, m, "2026-01-09"))}
    assert spans == {
        "M-1": ("2026-01-02T08:00:00.000Z", CREATED.format(7)),
        "M-2": (CREATED.format(1), CREATED.format(6)),
        "M-3": (CREATED.format(1), "2026-01-06T12:00:00.000Z"),
        "M-4": (CREATED.format(1), CREATED.format(2)),
        "M-5": (CREATED.format(1), CREATED.format(7)),
    }
    assert rolled_up(hq) == []
    assert snapshot(hq) == rebuilt(hq)


def test_a_push_that_fails_while_finding_spans_again_leaves_everything_as_it_was(
    hq: HqStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The span is found again inside the push's transaction: a push that fails there (a full disk, a killed
    process) keeps neither its void nor any statistic of it; sent again, it counts once."""
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    till = Till(hq, "T1")
    till.push("sale", entries.sale("M-1", 100), day=1)
    last = till.push("sale", entries.sale("M-1", 300), day=2)
    before = snapshot(hq)
    void = till.entry("void", entries.refund(last, "M-1", void=True), 3)

    def full(*_: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(stats, "_spans_of", full)
    with pytest.raises(OSError):
        hq.ingest("T1", [void])
    assert snapshot(hq) == before
    with hq.db.read() as tx:
        assert tx.all("SELECT txn_id FROM journal WHERE kind = 'void'") == []
    monkeypatch.undo()
    hq.ingest("T1", [void])
    got = stats_of(hq, "M-1")
    assert (got.visits, got.last_visit) == (1, CREATED.format(1))
    assert snapshot(hq) == rebuilt(hq)


def test_a_push_taking_back_both_ends_counts_a_sale_read_from_both_ends_with_its_refunds_once(hq: HqStore) -> None:
    """One push voids a member's first and last sales: the sale between them, read from both ends, has its
    partial refund counted once (twice, it would return both its units and lose its visit)."""
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    till = Till(hq, "T1")
    first = till.push("sale", entries.sale("M-1", 100), day=1)
    middle = till.push("sale", entries.sale("M-1", 600, lines=lines(("food", 2, 300))), day=2)
    last = till.push("sale", entries.sale("M-1", 300), day=3)
    till.push("refund", entries.refund(middle, "M-1", money_back=300, returned=[(0, 1)]), day=4)
    hq.ingest(
        "T1",
        [till.entry("void", entries.refund(txn, "M-1", void=True), 5) for txn in (first, last)],
    )
    got = stats_of(hq, "M-1")
    assert (got.first_visit, got.last_visit, got.visits) == (CREATED.format(2), CREATED.format(2), 1)
    assert snapshot(hq) == rebuilt(hq)


def test_a_push_taking_back_the_only_visits_of_hundreds_of_members_reads_their_spans_in_steps(hq: HqStore) -> None:
    """Voids of 300 members' only sales in one push: both ends of each moved, more queries than SQLite takes in
    one compound select, so the spans are read ``SPAN_MEMBERS`` members a statement."""
    till = Till(hq, "T1")
    members = [f"M-{n:03}" for n in range(300)]
    for m in members:
        hq.upsert_member(m, m, "basic", 0)
    made = [till.entry("sale", entries.sale(m, 100 + n), day=2) for n, m in enumerate(members)]
    hq.ingest("T1", made)
    assert len(members) > stats.SPAN_MEMBERS
    hq.ingest(
        "T1",
        [till.entry("void", entries.refund(e.txn_id, m, void=True), 3) for e, m in zip(made, members, strict=True)],
    )
    gone = [stats_of(hq, m) for m in members]
    assert {(s.visits, s.spend, s.first_visit, s.last_visit) for s in gone} == {(0, 0, None, None)}
    assert rolled_up(hq) == []
    assert snapshot(hq) == rebuilt(hq)


def test_erasure_leaves_no_statistics_and_no_profile(hq: HqStore) -> None:
    scenario(hq)
    with hq.db.read() as tx:
        for table in (*stats.STATS_TABLES, *stats.STATS_STORED, "member_profiles", "member_attributes", "consents"):
            assert tx.all(f"SELECT * FROM {table} WHERE member_id = ?", ["M-3"]) == [], table
        assert tx.all("SELECT * FROM member_totals WHERE member_id = ?", ["E-4"]) == []  # merged away


def test_a_quarantined_sale_counts_only_once_released(hq: HqStore) -> None:
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    till = Till(hq, "T1")
    held = till.push("sale", entries.sale("M-1", 800, store_id="S9"))
    assert snapshot(hq) == {
        "member_totals": [],
        "member_days": [],
        "member_category_days": [],
        "member_category_windows": [],
    }
    assert rebuilt(hq)["member_totals"] == []
    hq.release(held, "admin", "the store moved")
    assert stats_of(hq, "M-1").spend == 800
    assert snapshot(hq) == rebuilt(hq)


def test_both_engines_keep_the_same_statistics(tmp_path: Path, pg_url: str) -> None:
    got = []
    for url in (str(tmp_path / "hq.db"), pg_url):
        store = HqStore(url)
        try:
            got.append(snapshot(scenario(store)))
        finally:
            store.close()
    assert got[0] == got[1]


# -- random sequences -----------------------------------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("sale"), st.sampled_from(["M-1", "M-2", None]), st.integers(1, 3), st.integers(1, 5)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(0, 1), st.integers(1, 2)),
    st.tuples(st.just("void"), st.integers(0, 20), st.just(0), st.just(0)),
    st.tuples(st.just("checkin"), st.sampled_from(["M-1", "M-2", "M-9"]), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("fold"), st.just(0), st.just(0), st.just(0)),  # the lifetime figures folded
    st.tuples(st.just("merge"), st.sampled_from(["M-1", "M-2"]), st.just(0), st.just(0)),  # into the other
    st.tuples(st.just("erase"), st.sampled_from(["M-1", "M-2"]), st.just(0), st.just(0)),
    st.tuples(st.just("rebuild"), st.just(0), st.just(0), st.just(0)),  # then ingest keeps adding
)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, min_size=1, max_size=14), st.integers(1, 4))
def test_random_sequences_rebuild_to_what_ingest_kept(
    fresh_url: Callable[[], str], steps: list[tuple[Any, ...]], batch: int
) -> None:
    hq = HqStore(fresh_url())
    try:
        hq.upsert_member("M-1", "Aiko", "basic", 0)
        hq.upsert_member("M-2", "Ben", "basic", 0)
        till = Till(hq, "T1")
        sales: list[tuple[str, str | None, int]] = []
        pending: list[WireEntry] = []
        for kind, a, b, c in steps:
            if kind == "fold":
                if pending:
                    hq.ingest("T1", pending)
                    pending = []
                hq.db.transact(stats.fold_totals)
                continue
            if kind in ("merge", "erase", "rebuild"):
                if pending:
                    hq.ingest("T1", pending)
                    pending = []
                if kind == "merge":
                    hq.db.transact(lambda tx, loser=a: merge(tx, loser, "M-2" if loser == "M-1" else "M-1"))
                elif kind == "erase":
                    erase_member(hq, a, "admin")
                else:
                    hq.db.transact(stats.rebuild)
                continue
            if kind == "checkin":  # a door tap: a visit once a member, store and day
                e = till.entry("checkin", {"member_id": a, "store_id": "S1", "reader": "door"}, day=b)
            elif kind == "sale":
                e = till.entry("sale", entries.sale(a, 100 * (b + c), lines=lines(("x", b, 100), ("y", c, 100))))
                sales.append((e.txn_id, a, b + c))
            elif sales:
                txn, member, _ = sales[a % len(sales)]
                if kind == "void":
                    e = till.entry("void", entries.refund(txn, member, void=True))
                else:
                    e = till.entry("refund", entries.refund(txn, member, returned=[(b, c)]))
            else:
                continue
            pending.append(e)
            if len(pending) >= batch:
                hq.ingest("T1", pending)
                pending = []
        if pending:
            hq.ingest("T1", pending)
        assert rolled_up(hq) == []
        assert snapshot(hq) == rebuilt(hq)
    finally:
        hq.close()


MEMBERS = [f"M-{n}" for n in range(1, 6)]

dated = st.one_of(
    st.tuples(
        st.just("sale"),
        st.sampled_from(MEMBERS),
        st.integers(1, 3),
        st.one_of(st.sampled_from([-60, -59, -30, -29, -1, 0, 1]), st.integers(-70, 5)),  # days from the rolled day
    ),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(0, 1), st.integers(1, 2)),
    st.tuples(st.just("void"), st.integers(0, 20), st.just(0), st.just(0)),
    st.tuples(st.just("roll"), st.one_of(st.integers(0, 2), st.integers(0, 16)), st.just(0), st.just(0)),
    # a build begun (more than 14 days ahead, or back) and left to the chunks, which come one by one between
    # the pushes; a check-in is a push too
    st.tuples(st.just("build"), st.sampled_from([15, 20, 40, -3, -20]), st.just(0), st.just(0)),
    st.tuples(st.just("chunk"), st.integers(1, 2), st.just(0), st.just(0)),
    st.tuples(st.just("chunk"), st.just(1), st.just(0), st.just(0)),
    st.tuples(st.just("checkin"), st.sampled_from(MEMBERS), st.integers(-40, 2), st.just(0)),
    st.tuples(st.just("fold"), st.integers(-70, 3), st.just(0), st.just(0)),  # the recent table's first day
    st.tuples(st.just("merge"), st.sampled_from(MEMBERS), st.sampled_from(MEMBERS), st.just(0)),
    st.tuples(st.just("erase"), st.sampled_from(MEMBERS), st.just(0), st.just(0)),
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(dated, min_size=1, max_size=24), st.integers(1, 2))
def test_random_sales_days_and_rolls_keep_the_windows_a_rebuild_gives(
    fresh_url: Callable[[], str], steps: list[tuple[Any, ...]], chunk: int
) -> None:
    """Sales on days before and after the rolled day (often on a window's first day or the day before it),
    refunds, voids and check-ins of any of them, and rolls of 0 to 16 days (up to 14 day by day, more
    built): the windows are always what building them gives. Builds run a chunk of 1 or 2 members a
    transaction, and pushes come between the chunks: once the build ends, the windows are what one build
    from scratch gives; while it runs, no day is rolled (segments read the daily rows). Folds of the recent
    days' table to any day around them come between too: every day's rows end in the table of its day."""
    hq = HqStore(fresh_url())
    try:
        for member in MEMBERS:
            hq.upsert_member(member, member, "basic", 0)
        till, door = Till(hq, "T1"), Till(hq, "T2")
        rolled = date(2026, 3, 5)
        roll(hq, rolled.isoformat(), chunk=chunk)
        sales: list[tuple[str, str]] = []
        for kind, a, b, c in steps:
            if kind == "roll":
                rolled += timedelta(days=a)
                roll(hq, rolled.isoformat(), chunk=chunk)
            elif kind == "build":
                rolled += timedelta(days=a)
                hq.db.transact(lambda tx, day=rolled: stats.roll(tx, day, back=True))
                assert state(hq).building == rolled
            elif kind == "chunk":
                for _ in range(a):
                    hq.db.transact(lambda tx: stats.build_chunk(tx, chunk))
            elif kind == "fold":
                fold(hq, (rolled + timedelta(days=a)).isoformat())
            elif kind == "merge":
                if a != b:
                    hq.db.transact(lambda tx, loser=a, winner=b: merge(tx, loser, winner))
            elif kind == "erase":
                erase_member(hq, a, "admin")
            elif kind == "checkin":
                made = (rolled + timedelta(days=b)).isoformat()
                e = door.entry("checkin", {"member_id": a, "store_id": "S1", "reader": "door"})
                hq.ingest("T2", [e.model_copy(update={"created_at": f"{made}T10:00:00.000Z"})])
            elif kind == "sale":
                made = (rolled + timedelta(days=c)).isoformat()  # on the edges of windows, before and after
                e = till.entry("sale", entries.sale(a, 100 * b, lines=lines(("x", b, 100))))
                hq.ingest("T1", [e.model_copy(update={"created_at": f"{made}T10:00:00.000Z"})])
                sales.append((e.txn_id, a))
            elif sales:
                txn, member = sales[a % len(sales)]
                body = (
                    entries.refund(txn, member, void=True)
                    if kind == "void"
                    else entries.refund(txn, member, returned=[(0, c)])
                )
                hq.ingest("T1", [till.entry(kind, body)])
            held = state(hq)
            assert held.day is None if held.building is not None else held.day == rolled
        roll(hq, rolled.isoformat(), chunk=chunk)  # a build under way is finished
        assert state(hq) == stats.WindowsState(rolled)
        kept, first_day = days_kept(hq), recent_of(hq)
        if first_day is not None:  # each day's rows in the one table its day belongs to
            first = first_day.isoformat()
            assert all(d < first for d in kept["member_day_rows"]) and all(d >= first for d in kept[stats.RECENT_TABLE])
        assert snapshot(hq) == rebuilt(hq) and days_kept(hq) == kept
    finally:
        hq.close()


def state(hq: HqStore) -> stats.WindowsState:
    """The windows' state, without the recent days' table's first day (``recent_of``: every roll folds too)."""
    with hq.db.read() as tx:
        return dataclasses.replace(stats.windows_state(tx), recent_from=None)


def recent_of(hq: HqStore) -> date | None:
    with hq.db.read() as tx:
        return stats.windows_state(tx).recent_from


def sales_racing(hq: HqStore, start: date, step: Callable[[str], object]) -> None:
    """Two members' 120 sales on the 40 days from ``start`` pushed by a till on another thread while ``step``
    is called here for each of the 40 days after ``start`` (a roll, a fold): the pushes all end, none failed."""
    import threading

    hq.upsert_member("M-1", "Aiko", "basic", 0)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    till = Till(hq, "T1")
    errors: list[BaseException] = []

    def push() -> None:
        try:
            for n in range(120):  # each sale on one of the next 40 days
                made = (start + timedelta(days=n % 40)).isoformat()
                e = till.entry("sale", entries.sale(f"M-{1 + n % 2}", 100, lines=lines(("x", 1, 100))))
                hq.ingest("T1", [e.model_copy(update={"created_at": f"{made}T10:00:00.000Z"})])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pusher = threading.Thread(target=push)
    pusher.start()
    for n in range(1, 41):
        step((start + timedelta(days=n)).isoformat())
    pusher.join(timeout=300)
    assert not pusher.is_alive() and errors == []


@pytest.mark.slow
def test_rolls_racing_pushes_on_postgres_keep_the_windows_exact(pg_url: str) -> None:
    """A till pushes sales of the days being rolled into while another connection rolls day by day: each
    sale is added to the windows by its push or by the roll, never both, never neither (the push holds the
    rolled day until it commits; the roll waits for it)."""

    hq = HqStore(pg_url)
    try:
        start = date(2026, 3, 1)
        roll(hq, start.isoformat())
        sales_racing(hq, start, lambda day: roll(hq, day))  # each sale entering as the roll passes its day
        kept = snapshot(hq)
        assert kept == rebuilt(hq)
        last_day, visits_30, _, _, visits_60, *_ = windows(hq)["totals"]["M-1"]
        assert (last_day, visits_30, visits_60) == ("2026-04-08", 42, 60)  # M-1's 60 sales: on even days 0..38
    finally:
        hq.close()


def test_a_roll_that_dies_halfway_leaves_the_windows_as_they_were(hq: HqStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A roll over several days is one transaction: a failure on its second day (a killed process, a full
    disk) leaves the windows and their day as before, and the next roll does the whole of it."""
    roll(hq, "2026-01-05")
    scenario(hq)
    before = snapshot(hq)
    real_step, steps = stats._step, []

    def dying(tx: Any, day: date) -> None:
        steps.append(day)
        if len(steps) == 2:
            raise OSError("No space left on device")
        real_step(tx, day)

    monkeypatch.setattr(stats, "_step", dying)
    with pytest.raises(OSError):
        roll(hq, "2026-01-08")
    assert snapshot(hq) == before
    with hq.db.read() as tx:
        assert stats.windows_day(tx) == date(2026, 1, 5)
    monkeypatch.setattr(stats, "_step", real_step)
    assert roll(hq, "2026-01-08") == 3 and snapshot(hq) == rebuilt(hq)


# -- the recent days' rows apart ------------------------------------------------------------------------


def fold(hq: HqStore, day: str) -> int:
    return hq.db.transact(lambda tx: stats.fold_recent(tx, date.fromisoformat(day)))


def days_kept(hq: HqStore) -> dict[str, set[str]]:
    """The days each table of daily rows holds rows of."""
    with hq.db.read() as tx:
        return {t: {str(r[0]) for r in tx.all(f"SELECT DISTINCT day FROM {t}")} for t in stats.DAY_TABLES}


def test_the_recent_days_rows_kept_apart_read_add_merge_and_erase_as_one_table(hq: HqStore) -> None:
    """Daily rows of the days from the recent table's first day on are kept in it, older ones in
    ``member_day_rows``: pushes add to the table of their sale's day, refunds and voids take back from it,
    a merge moves each of both tables' rows, an erasure takes both; every figure, the views, the windows and
    the report roll-up are what they are without it (the scenario's expected figures), and a rebuild writes
    the same rows into the same tables. A fold moves the days that left the recent span, never back."""
    roll(hq, "2026-01-05")
    fold(hq, "2026-01-03")
    scenario(hq)
    kept = snapshot(hq)
    assert daily(kept) == EXPECTED and rolled_up(hq) == []
    before, after = {f"2026-01-0{d}" for d in (1, 2)}, {f"2026-01-0{d}" for d in range(3, 8)}
    held = days_kept(hq)
    assert held["member_day_rows"] <= before and held[stats.RECENT_TABLE] <= after
    assert held["member_day_rows"] and held[stats.RECENT_TABLE]
    assert kept == rebuilt(hq) and days_kept(hq) == held  # a rebuild keeps each day in its table
    moved = fold(hq, "2026-01-07")  # the rows of day 6 (days 3 to 5 kept none: refunded, voided, erased)
    assert moved > 0 and snapshot(hq) == kept and rolled_up(hq) == []
    held = days_kept(hq)
    assert max(held["member_day_rows"]) == "2026-01-06" and held[stats.RECENT_TABLE] == {"2026-01-07"}
    assert fold(hq, "2026-01-02") == 0 and fold(hq, "2026-01-07") == 0  # never back; nothing twice
    assert recent_of(hq) == date(2026, 1, 7)
    assert snapshot(hq) == rebuilt(hq) and days_kept(hq) == held


def test_the_first_fold_moves_the_recent_days_rows_already_kept(hq: HqStore) -> None:
    """Before the first fold every row is in ``member_day_rows`` (a database upgraded with today's sales in
    it): the first fold moves those of the days from its first recent day on, store and category rows, and
    the figures stay as they were."""
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    till = Till(hq, "T1")
    for day in (1, 2, 4, 5):
        till.push("sale", entries.sale("M-1", 100 * day, lines=lines(("food", 1, 100 * day))), day=day)
    before = snapshot(hq)
    assert days_kept(hq) == {"member_day_rows": {f"2026-01-0{d}" for d in (1, 2, 4, 5)}, stats.RECENT_TABLE: set()}
    assert fold(hq, "2026-01-03") == 4  # the store's and the category's row of days 4 and 5
    assert days_kept(hq) == {
        "member_day_rows": {"2026-01-01", "2026-01-02"},
        stats.RECENT_TABLE: {"2026-01-04", "2026-01-05"},
    }
    assert snapshot(hq) == before == rebuilt(hq) and rolled_up(hq) == []


def test_head_offices_timer_keeps_the_last_days_rows_in_the_recent_table(hq: HqStore) -> None:
    """The timer's tick folds with the windows' roll: the rows of today (UTC) and the ``RECENT_DAYS`` days
    before it in the recent table, older ones in ``member_day_rows``."""
    from hq.scheduler import CampaignTimer

    hq.upsert_member("M-1", "Aiko", "basic", 0)
    till = Till(hq, "T1")
    now = datetime.now(UTC)
    for age in range(4):
        made = (now - timedelta(days=age)).date().isoformat()
        e = till.entry("sale", entries.sale("M-1", 100, lines=lines(("x", 1, 100))))
        hq.ingest("T1", [e.model_copy(update={"created_at": f"{made}T12:00:00.000Z"})])
    timer = CampaignTimer(hq.db, now=lambda: now)
    timer.tick()
    assert timer.failures == 0
    first = now.date() - timedelta(days=stats.RECENT_DAYS)
    assert recent_of(hq) == first
    held = days_kept(hq)
    assert held["member_day_rows"] == {(now.date() - timedelta(days=3)).isoformat()}
    assert held[stats.RECENT_TABLE] == {(first + timedelta(days=n)).isoformat() for n in range(3)}
    rows = lifetime_rows(hq, "M-1")  # the lifetime figures folded with the days
    assert rows[stats.RECENT_TOTALS] is None and rows["member_totals"] is not None and rows["member_totals"][2] == 4


def test_a_fold_that_dies_halfway_moves_nothing(hq: HqStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fold is one transaction: one that fails after taking the rows out of one table (a full disk, a
    killed process) leaves both tables and the first recent day as they were; the next fold does it all."""
    fold(hq, "2026-01-01")
    scenario(hq)
    before, held = snapshot(hq), days_kept(hq)

    def full(*_: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(stats, "upsert", full)
    with pytest.raises(OSError):
        fold(hq, "2026-01-05")
    assert snapshot(hq) == before and days_kept(hq) == held
    assert recent_of(hq) == date(2026, 1, 1)
    monkeypatch.undo()
    assert fold(hq, "2026-01-05") > 0 and snapshot(hq) == before
    assert max(days_kept(hq)["member_day_rows"]) < "2026-01-05"


def lifetime_rows(hq: HqStore, member_id: str) -> dict[str, tuple[Any, ...] | None]:
    """The member's row of lifetime figures in each table that keeps them."""
    with hq.db.read() as tx:
        return {
            table: tx.one(f"SELECT {', '.join(stats.LIFETIME_COLUMNS)} FROM {table} WHERE member_id = ?", [member_id])
            for table in ("member_totals", stats.RECENT_TOTALS)
        }


def test_a_push_adds_lifetime_figures_to_the_small_table_and_the_daily_fold_moves_them(hq: HqStore) -> None:
    """A push adds a member's visits, spend, coupons and visit span to ``RECENT_TOTALS``, not to its row of
    ``member_totals`` (a page of a big table each); what the member's figures read is the two rows added up;
    the fold moves them into ``member_totals`` and they read the same. A void that takes back the last visit
    finds the earlier one again in both rows, and a rebuild gives the same figures at each step."""
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    hq.put_coupon({"coupon_id": "C1", "kind": "amount_off", "amount": 100}, "C1")
    till = Till(hq, "T1")
    till.push("sale", entries.sale("M-1", 1000, lines=BASKET, coupons=["C1"]), day=1)
    first = stats_of(hq, "M-1")
    assert (first.visits, first.spend, first.coupons_redeemed) == (1, 1000, 1)
    assert first.first_visit is not None and first.first_visit == first.last_visit
    assert lifetime_rows(hq, "M-1") == {
        "member_totals": None,
        stats.RECENT_TOTALS: (first.first_visit, first.first_visit, 1, 1000, 1),
    }
    before = snapshot(hq)
    assert hq.db.transact(stats.fold_totals) == 1
    assert lifetime_rows(hq, "M-1") == {
        "member_totals": (first.first_visit, first.first_visit, 1, 1000, 1),
        stats.RECENT_TOTALS: None,
    }
    assert snapshot(hq) == before and stats_of(hq, "M-1") == first
    second = till.push("sale", entries.sale("M-1", 500, lines=lines(("food", 5, 100))), day=2)
    both = stats_of(hq, "M-1")
    assert (both.visits, both.spend, both.first_visit) == (2, 1500, first.first_visit)
    assert both.last_visit is not None and both.last_visit > str(first.last_visit)
    assert lifetime_rows(hq, "M-1")[stats.RECENT_TOTALS] == (both.last_visit, both.last_visit, 1, 500, 0)
    assert snapshot(hq) == rebuilt(hq)
    hq.db.transact(lambda tx: [tx.run(f"DELETE FROM {t}") for t in ("member_totals", stats.RECENT_TOTALS)])
    hq.db.transact(stats.rebuild)  # the rebuild writes every figure into member_totals: back to the split
    till.push("void", entries.refund(second, "M-1", void=True), day=2)
    assert stats_of(hq, "M-1") == first
    till.push("sale", entries.sale("M-1", 300), day=3)
    till.push("void", entries.refund(f"T1-{till.seq}", "M-1", void=True), day=3)
    assert stats_of(hq, "M-1") == first  # the void found the first visit again in the row the sale made
    assert snapshot(hq) == rebuilt(hq)


class _AtSecondStatement:
    """A transaction that calls ``before`` just before its second statement (in a fold: after the first took the
    small table's rows, before they are added into ``member_totals``)."""

    def __init__(self, tx: Tx, before: Callable[[], None]) -> None:
        self._tx, self._before, self._statements = tx, before, 0

    def __getattr__(self, name: str) -> Any:
        held = getattr(self._tx, name)
        if name not in ("run", "all", "one", "many"):
            return held

        def statement(*args: Any, **kw: Any) -> Any:
            self._statements += 1
            if self._statements == 2:
                self._before()
            return held(*args, **kw)

        return statement


def _disk_full() -> None:
    raise OSError("No space left on device")


def test_a_fold_of_lifetime_figures_that_dies_halfway_moves_nothing(hq: HqStore) -> None:
    """The fold adds the small table's rows into ``member_totals`` and then empties it, in one transaction: one
    that fails between the two (a full disk, a killed process) counts nothing twice and loses nothing; the next
    fold does it all."""
    scenario(hq)
    before = snapshot(hq)
    with hq.db.read() as tx:
        waiting = tx.one(f"SELECT COUNT(*) FROM {stats.RECENT_TOTALS}")
    assert waiting is not None and int(waiting[0]) > 0
    with pytest.raises(OSError):
        hq.db.transact(lambda tx: stats.fold_totals(_AtSecondStatement(tx, _disk_full)))  # type: ignore[arg-type]
    assert snapshot(hq) == before
    assert hq.db.transact(stats.fold_totals) == int(waiting[0])
    assert snapshot(hq) == before == rebuilt(hq)


def test_rows_an_earlier_release_wrote_to_the_old_table_for_a_recent_day_still_count_once_folded(
    hq: HqStore,
) -> None:
    """During a rolling upgrade an earlier release, not knowing the recent table, may add a recent day's row to
    ``member_day_rows`` while this one adds the same key's to the recent table: the views sum both, and the
    fold that moves that day adds them into one row."""
    fold(hq, "2026-01-01")
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    Till(hq, "T1").push("sale", entries.sale("M-1", 300, lines=lines(("food", 1, 300))), day=2)
    with hq.db.write() as tx:  # what the earlier release's push of another sale that day wrote
        tx.run("INSERT INTO member_day_rows VALUES ('M-1', '2026-01-02', 's', 'S1', 1, 200, 0)")
    figures = stats_of(hq, "M-1")
    assert (figures.visits_by_window[30], figures.spend_by_window[30]) == (2, 500)
    fold(hq, "2026-01-05")
    with hq.db.read() as tx:
        assert tx.all("SELECT visits, spend FROM member_day_rows WHERE kind = 's'") == [(2, 500)]
        assert tx.all(f"SELECT COUNT(*) FROM {stats.RECENT_TABLE}") == [(0,)]
    assert stats_of(hq, "M-1").visits_by_window[30] == 2


@pytest.mark.slow
def test_folds_racing_pushes_on_postgres_lose_and_double_nothing(pg_url: str) -> None:
    """A till pushes sales of days around the recent table's first day while another connection folds day by
    day: each row lands in the table its day belongs to when it is written, and the fold moves the rest; the
    figures are a rebuild's and no day's rows are in both tables."""

    hq = HqStore(pg_url)
    try:
        start = date(2026, 3, 1)
        fold(hq, start.isoformat())
        sales_racing(hq, start, lambda day: fold(hq, day))
        held = days_kept(hq)
        assert not held["member_day_rows"] & held[stats.RECENT_TABLE]
        assert all(day < "2026-04-10" for day in held["member_day_rows"])
        assert snapshot(hq) == rebuilt(hq)
    finally:
        hq.close()


@pytest.mark.slow
def test_a_check_in_of_the_winner_during_a_merge_on_postgres_keeps_its_visit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge folds both members' lifetime rows under the windows' shared lock, which a push or a check-in of
    the winner on another connection holds too: a check-in committed while the merge folds counts its visit
    once, whether it lands before the fold took the winner's row or after (it then waits for the merge)."""
    hq = HqStore(pg_url)
    try:
        hq.upsert_member("M-1", "Aiko", "basic", 0)
        hq.upsert_card("c" * 64, "M-1")
        t1, t2 = Till(hq, "T1"), Till(hq, "T2", "S2")
        t1.push("sale", entries.sale("M-1", 1000), day=1)
        t2.push("sale", entries.sale("E-4", 600, store_id="S2"), day=2)  # waits for its member
        visit = checkins.Visit("M-1", "S3", "2026-01-03", CREATED.format(3), "T3", "door")
        recorded: list[bool] = []
        other = threading.Thread(target=lambda: recorded.append(hq.db.transact(lambda o: checkins.record(o, visit))))

        def check_in_meanwhile() -> None:
            """On another connection: up to a second, or until it ends (it may wait for a lock the merge holds,
            within head office's lock timeout)."""
            other.start()
            other.join(timeout=1)

        real = stats.fold_totals

        def folding(tx: Tx, members: Any = None) -> int:
            if members is None:
                return real(tx, members)
            return real(_AtSecondStatement(tx, check_in_meanwhile), members)  # type: ignore[arg-type]

        monkeypatch.setattr(stats, "fold_totals", folding)
        t2.push("enrol", entries.enrol("E-4", "c" * 64, store_id="S2"), day=2)  # E-4 merges into M-1
        other.join(timeout=60)
        assert not other.is_alive() and recorded == [True]
        assert stats_of(hq, "M-1").visits == 3
        assert snapshot(hq) == rebuilt(hq)
    finally:
        hq.close()


# -- builds in chunks -----------------------------------------------------------------------------------


def many_members(hq: HqStore, count: int) -> Till:
    """``count`` members with sales on days across a year before 2026-03-05 (and one after it)."""
    till = Till(hq, "T1")
    for n in range(count):
        member = f"M-{n:03d}"
        hq.upsert_member(member, member, "basic", 0)
        for age in (n % 7, 29 + n % 3, 89 + n % 5, 200, 364, 400, -1):
            made = (date(2026, 3, 5) - timedelta(days=age)).isoformat()
            body = entries.sale(member, 100 + n, lines=lines((f"c{n % 3}", 1, 100 + n)))
            e = till.entry("sale", body)
            hq.ingest("T1", [e.model_copy(update={"created_at": f"{made}T10:00:00.000Z"})])
    return till


def dated_sale(till: Till, member: str, day: date, amount: int = 250) -> str:
    e = till.entry("sale", entries.sale(member, amount, lines=lines(("x", 1, amount))))
    till.hq.ingest(till.terminal_id, [e.model_copy(update={"created_at": f"{day.isoformat()}T10:00:00.000Z"})])
    return e.txn_id


def test_a_build_stopped_between_chunks_or_inside_one_is_finished_by_the_next_roll(
    hq: HqStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build (a process killed between its chunks, or a chunk that fails halfway) leaves its cursor where
    the last chunk that committed put it, no day rolled; pushes meanwhile add to the windows as of the build's
    day (those of members beyond the cursor are set again by their chunk); the next roll to that day goes on
    from the cursor, one to another day builds again, and either ends as one build from scratch."""
    till = many_members(hq, 10)
    day = date(2026, 3, 5)
    hq.db.transact(lambda tx: stats.roll(tx, day))  # begun: the process then stops between chunks
    assert state(hq) == stats.WindowsState(None, day, None)
    for _ in range(2):
        assert hq.db.transact(lambda tx: stats.build_chunk(tx, 3)) == "more"
    assert state(hq) == stats.WindowsState(None, day, "M-005")
    for member in ("M-001", "M-005", "M-006", "M-009", "M-100"):  # built, the last built, not yet, a new one
        dated_sale(till, member, day - timedelta(days=3))
    refund = entries.refund(f"T1-{till.seq}", "M-100", money_back=100, returned=[(0, 1)])
    till.push("void", entries.refund("T1-1", "M-000", void=True))
    till.push("refund", refund)
    real, calls = stats.build_windows, []

    def dying(tx: Tx, rolled: date, members: stats.Members = stats.EVERY_MEMBER) -> int:
        calls.append(members)
        real(tx, rolled, members)
        raise OSError("No space left on device")  # after the chunk's rows were written: all rolled back

    monkeypatch.setattr(stats, "build_windows", dying)
    with pytest.raises(OSError):
        roll(hq, day.isoformat(), chunk=3)
    assert calls == [stats.Members(after="M-005", upto="M-008")]
    assert state(hq) == stats.WindowsState(None, day, "M-005")
    monkeypatch.setattr(stats, "build_windows", real)
    dated_sale(till, "M-007", day)
    assert roll(hq, day.isoformat(), chunk=3) == 1 and state(hq) == stats.WindowsState(day)
    assert snapshot(hq) == rebuilt(hq)
    # Stopped again, then a roll to a later day: a new build as of that day, from the first member.
    later = day + timedelta(days=30)
    hq.db.transact(lambda tx: stats.roll(tx, later))
    hq.db.transact(lambda tx: stats.build_chunk(tx, 4))
    dated_sale(till, "M-002", later)
    dated_sale(till, "M-008", later)
    assert roll(hq, (later + timedelta(days=1)).isoformat(), chunk=4) == 1
    assert state(hq) == stats.WindowsState(later + timedelta(days=1))
    assert snapshot(hq) == rebuilt(hq)


def test_a_merge_across_the_cursor_of_a_build_keeps_the_windows_exact(hq: HqStore) -> None:
    """During a build, members merge: a built winner takes the windows of a loser not built yet from the
    daily rows; a winner not built yet is built by its chunk; both check in at one store the same day."""
    many_members(hq, 9)
    day = date(2026, 3, 5)
    hq.db.transact(lambda tx: stats.roll(tx, day))
    hq.db.transact(lambda tx: stats.build_chunk(tx, 4))  # M-000 .. M-003 built
    door = Till(hq, "T9", "S3")
    for member in ("M-001", "M-007"):
        door.push("checkin", {"member_id": member, "store_id": "S3", "reader": "door"}, day=1)
    hq.db.transact(lambda tx: merge(tx, "M-007", "M-001"))  # into a built member
    hq.db.transact(lambda tx: merge(tx, "M-002", "M-008"))  # into one not built
    hq.db.transact(lambda tx: merge(tx, "M-003", "M-000"))  # both built
    assert state(hq).built_to == "M-003"
    assert roll(hq, day.isoformat(), chunk=4) == 1
    assert snapshot(hq) == rebuilt(hq)


@pytest.mark.slow
def test_a_push_during_a_build_on_postgres_waits_for_a_chunk_not_the_build(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build stops before its third chunk until a push of another connection has committed: the push
    never waits for the rest of the build (were the build one transaction, the push would wait for the lock
    it holds and the build for the push, and the build gives up waiting). Then the pushes of a thread
    race the chunks of another build. Both end as one build from scratch."""
    import threading

    hq = HqStore(pg_url)
    try:
        till = many_members(hq, 12)
        day = date(2026, 3, 5)
        chunks, first_two, pushed, waited = [], threading.Event(), threading.Event(), []
        real = stats.build_chunk

        def held(tx: Tx, size: int = stats.BUILD_CHUNK) -> stats.BuildStep:
            chunks.append(size)
            if len(chunks) == 3:  # two chunks committed; this one has not taken the lock yet
                first_two.set()
                waited.append(pushed.wait(timeout=60))
            return real(tx, size)

        monkeypatch.setattr(stats, "build_chunk", held)
        builder = threading.Thread(target=roll, args=(hq, day.isoformat()), kwargs={"chunk": 2})
        builder.start()
        assert first_two.wait(timeout=120)
        for member in ("M-000", "M-003", "M-004", "M-011"):  # built, the cursor, beyond it
            dated_sale(till, member, day - timedelta(days=1))
        till.push("void", entries.refund("T1-2", "M-000", void=True))
        pushed.set()
        builder.join(timeout=300)
        assert not builder.is_alive() and waited == [True] and len(chunks) == 7
        assert state(hq) == stats.WindowsState(day) and snapshot(hq) == rebuilt(hq)
        monkeypatch.setattr(stats, "build_chunk", real)

        # A thread pushes sales of members on both sides of the cursor while another builds, a member a chunk.
        started, done, errors = threading.Event(), threading.Event(), []

        def push() -> None:
            try:
                n = 0
                while not done.is_set() or n < 20:
                    dated_sale(till, f"M-{n % 13:03d}", day + timedelta(days=30 - n % 3), 100 + n)
                    n += 1
                    started.set()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                started.set()

        pusher = threading.Thread(target=push)
        pusher.start()
        assert started.wait(timeout=120)
        roll(hq, (day + timedelta(days=30)).isoformat(), chunk=1)
        done.set()
        pusher.join(timeout=300)
        assert not pusher.is_alive() and errors == []
        assert snapshot(hq) == rebuilt(hq)
    finally:
        hq.close()


def test_a_head_office_migrated_to_chunked_builds_keeps_its_rolled_day(hq_url: str) -> None:
    """A head office whose windows were rolled before m030_windows_build: the day stands, no build is under
    way, and the next roll steps from it."""
    from hq.db.schema import MIGRATIONS, migrate
    from tests.fixtures.hq import migrated_before

    names = [name for name, _ in MIGRATIONS]
    before = names.index("m030_windows_build")
    db = migrated_before(hq_url, "m030_windows_build")
    try:
        with db.write() as tx:
            tx.run("UPDATE stats_windows SET day = '2026-03-05' WHERE id = 1")
        assert migrate(db, backup=False) == names[before:]  # m030_windows_build and what came after it
        with db.read() as tx:
            assert stats.windows_state(tx) == stats.WindowsState(date(2026, 3, 5))
        assert stats.roll_windows(db, date(2026, 3, 7)) == 2
    finally:
        db.close()


def test_a_head_office_upgraded_to_the_recent_days_table_reads_its_rows_as_before_and_folds_them(hq_url: str) -> None:
    """A database of the release before m060_recent_day_rows, its daily rows all in ``member_day_rows``
    (today's too): once migrated the views read the same rows, pushes go on adding to ``member_day_rows`` until
    the first fold, and the first roll moves the recent days' rows into the recent table, both kinds."""
    from hq.db.schema import MIGRATIONS, migrate
    from tests.fixtures.hq import migrated_before

    names = [name for name, _ in MIGRATIONS]
    db = migrated_before(hq_url, "m060_recent_day_rows")
    rows = [
        ("M-1", "2026-03-01", "s", "S1", 1, 500, 0),
        ("M-1", "2026-03-01", "c", "food", 0, 500, 2),
        ("M-1", "2026-03-06", "s", "S1", 1, 300, 0),
        ("M-1", "2026-03-06", "c", "wine", 0, 300, 1),
        ("M-2", "2026-03-07", "s", "S2", 2, 900, 0),
    ]
    try:
        with db.write() as tx:
            tx.insert_rows("member_day_rows", stats.DAY_ROW_COLUMNS, rows)
            before = {t: sorted(tuple(r) for r in tx.all(f"SELECT * FROM {t}")) for t in stats.STATS_TABLES[1:3]}
        assert migrate(db, backup=False) == names[names.index("m060_recent_day_rows") :]
        with db.read() as tx:
            assert {
                t: sorted(tuple(r) for r in tx.all(f"SELECT * FROM {t}")) for t in stats.STATS_TABLES[1:3]
            } == before
            assert stats.windows_state(tx).recent_from is None
        stats.roll_windows(db, date(2026, 3, 7))  # the first roll: folds to two days before
        with db.read() as tx:
            assert sorted(tuple(r) for r in tx.all(f"SELECT * FROM {stats.RECENT_TABLE}")) == sorted(rows[2:])
            assert sorted(tuple(r) for r in tx.all("SELECT * FROM member_day_rows")) == sorted(rows[:2])
            assert {
                t: sorted(tuple(r) for r in tx.all(f"SELECT * FROM {t}")) for t in stats.STATS_TABLES[1:3]
            } == before
            assert stats.windows_state(tx).recent_from == date(2026, 3, 5)
    finally:
        db.close()


def test_a_head_office_upgraded_to_the_lifetime_table_reads_its_figures_as_before_and_folds_new_ones(
    hq_url: str,
) -> None:
    """A database of the release before m061_recent_totals, every lifetime figure in ``member_totals``: once
    migrated a member's figures read the same, a push adds to the small table beside them, and the fold adds
    that into the member's row, windows untouched."""
    from hq.db.schema import MIGRATIONS, migrate
    from tests.fixtures.hq import migrated_before

    names = [name for name, _ in MIGRATIONS]
    db = migrated_before(hq_url, "m061_recent_totals")
    try:
        with db.write() as tx:
            tx.run(
                "INSERT INTO member_totals (member_id, first_visit, last_visit, visits, spend, coupons_redeemed, "
                "last_day, visits_30, spend_30, updated_at) VALUES ('M-1', '2026-03-01T10:00:00.000Z', "
                "'2026-03-06T10:00:00.000Z', 2, 800, 1, '2026-03-06', 2, 800, 'x')"
            )
        assert migrate(db, backup=False) == names[names.index("m061_recent_totals") :]
        with db.read() as tx:
            assert stats.lifetimes(tx) == {
                "M-1": stats.Lifetime("2026-03-01T10:00:00.000Z", "2026-03-06T10:00:00.000Z", 2, 800, 1)
            }
        with db.write() as tx:  # a push's figures, as ``write`` adds them
            deltas = stats.Deltas()
            deltas.add_visit("M-1", "2026-03-08", "S1", "2026-03-08T09:00:00.000Z")
            stats.write(tx, deltas)
        expected = stats.Lifetime("2026-03-01T10:00:00.000Z", "2026-03-08T09:00:00.000Z", 3, 800, 1)
        with db.read() as tx:
            assert stats.lifetimes(tx) == {"M-1": expected}
            assert tx.one("SELECT visits, visits_30, spend_30 FROM member_totals WHERE member_id = 'M-1'") == (
                2,
                2,
                800,
            )
        assert db.transact(stats.fold_totals) == 1
        with db.read() as tx:
            assert stats.lifetimes(tx) == {"M-1": expected}
            assert tx.one("SELECT visits, visits_30, spend_30 FROM member_totals WHERE member_id = 'M-1'") == (
                3,
                2,
                800,
            )
            assert tx.one(f"SELECT COUNT(*) FROM {stats.RECENT_TOTALS}") == (0,)
    finally:
        db.close()


def test_windows_left_ahead_by_a_clock_are_logged_once_with_the_fix(
    hq: HqStore, caplog: pytest.LogCaptureFixture
) -> None:
    stats.roll_windows(hq.db, date(2027, 3, 1))  # a tick under a clock a year ahead
    with caplog.at_level("WARNING", logger="hq.stats"):
        for _ in range(3):  # the corrected clock's ticks: the windows stay, and are named once
            assert stats.roll_windows(hq.db, date(2026, 3, 2)) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "hq.stats"]
    assert len(said) == 1 and "roll --back --to 2026-03-02" in said[0] and "2027-03-01" in said[0]
    with hq.db.read() as tx:
        assert stats.windows_day(tx) == date(2027, 3, 1)
