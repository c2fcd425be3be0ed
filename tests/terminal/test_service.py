from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from terminal.errors import Code, Rejected
from terminal.model import Basket, CardRead, JournalEntry, Line
from terminal.service import Service
from tests.terminal.conftest import uid_hash


def tap(uid_hex: str) -> CardRead:
    return CardRead("sim:", "iso14443a", uid_hash(uid_hex))


def basket(*amounts: int) -> Basket:
    return Basket(tuple(Line(f"SKU{i}", 1, a) for i, a in enumerate(amounts)))


def test_identify_known_card(service: Service) -> None:
    found = service.identify(tap("04000001"))
    assert found.member.member_id == "M-1"
    assert found.member.points == 100


@pytest.mark.parametrize(
    ("uid", "code"),
    [
        ("04999999", Code.UNKNOWN_CARD),
        ("04000002", Code.BLOCKED_CARD),
        ("04000003", Code.BLOCKED_MEMBER),
        ("04000004", Code.UNKNOWN_MEMBER),
    ],
)
def test_identify_rejections_write_nothing(service: Service, uid: str, code: Code) -> None:
    with pytest.raises(Rejected) as info:
        service.identify(tap(uid))
    assert info.value.code is code
    assert service.store.entries() == []


def test_quote_rounds_down(service: Service) -> None:
    quote = service.quote("M-1", basket(1299, 250))
    assert quote.total == 1549
    assert quote.points_earned == 15
    assert quote.explain[0].source == "base"


def test_anonymous_quote_earns_nothing(service: Service) -> None:
    assert service.quote(None, basket(5000)).points_earned == 0


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ((), Code.EMPTY_BASKET),
        ((Line("A", 0, 100),), Code.INVALID_BASKET),
        ((Line("A", 1, -5),), Code.INVALID_BASKET),
        ((Line("A", 10_001, 1),), Code.INVALID_BASKET),  # more units than a journal line holds
        ((Line("A" * 65, 1, 100),), Code.INVALID_BASKET),
        ((Line("A", 1, 100, "c" * 65),), Code.INVALID_BASKET),
    ],
)
def test_bad_baskets(service: Service, lines: tuple[Line, ...], code: Code) -> None:
    with pytest.raises(Rejected) as info:
        service.quote("M-1", Basket(lines))
    assert info.value.code is code


def test_commit_writes_balance_and_journal_together(service: Service) -> None:
    receipt = service.commit(service.quote("M-1", basket(1000)))
    assert (receipt.seq, receipt.points_delta, receipt.points_balance) == (1, 10, 110)
    assert service.store.member("M-1").points == 110
    [entry] = service.store.entries()
    assert entry.txn_id == receipt.txn_id and entry.kind == "sale" and entry.terminal_id == "T-1"
    assert entry.payload["points_delta"] == 10 and entry.payload["lines"][0]["unit_price"] == 1000


def test_seq_is_gapless_and_txn_ids_sort_by_time(service: Service) -> None:
    receipts = [service.commit(service.quote("M-1", basket(100 * i))) for i in range(1, 6)]
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5]
    assert len({r.txn_id for r in receipts}) == 5


def test_void_claws_back_once(service: Service) -> None:
    sale = service.commit(service.quote("M-2", basket(2500)))
    voided = service.void(sale.txn_id)
    assert voided.points_delta == -25 and voided.points_balance == 0 and voided.seq == 2
    with pytest.raises(Rejected) as info:
        service.void(sale.txn_id)
    assert info.value.code is Code.ALREADY_VOIDED


@pytest.mark.parametrize("second", ["void", "refund"])
def test_two_returns_of_one_sale_read_before_either_commits_give_back_once(
    service: Service, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    """The local API serves each request on its own thread: a second return may read the sale before the
    first commits. It is priced from what it read; inside its COMMIT the sale no longer is so: refused,
    nothing of it written (the race made deterministic: the second return is handed the sale as it was)."""
    sale = service.commit(service.quote("M-2", basket(2500, 1500)))
    as_read, row_as_read = service.store.sale_state(sale.txn_id), service.store.sale(sale.txn_id)
    service.void(sale.txn_id)  # the first return commits
    after_first = (service.store.member("M-2").points, len(service.store.entries()))
    monkeypatch.setattr(service.store, "sale_state", lambda txn_id: as_read)
    monkeypatch.setattr(service.store, "sale", lambda txn_id: row_as_read)
    with pytest.raises(Rejected) as info:
        service.void(sale.txn_id) if second == "void" else service.refund(sale.txn_id, {0: 1})
    assert info.value.code is Code.ALREADY_VOIDED
    assert (service.store.member("M-2").points, len(service.store.entries())) == after_first


def test_a_refund_priced_from_a_sale_another_refund_changed_is_refused(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    sale = service.commit(service.quote("M-2", basket(2500, 1500)))
    as_read = service.store.sale_state(sale.txn_id)
    service.refund(sale.txn_id, {0: 1})  # the first refund commits: the sale's state changed
    after_first = (service.store.member("M-2").points, len(service.store.entries()))
    monkeypatch.setattr(service.store, "sale_state", lambda txn_id: as_read)
    with pytest.raises(Rejected) as info:
        service.refund(sale.txn_id, {0: 1})  # priced as if line 0 were still there
    assert info.value.code is Code.SALE_CHANGED
    assert (service.store.member("M-2").points, len(service.store.entries())) == after_first


def test_void_unknown(service: Service) -> None:
    with pytest.raises(Rejected) as info:
        service.void("nope")
    assert info.value.code is Code.UNKNOWN_TRANSACTION


def test_void_after_points_spent_goes_negative(service: Service) -> None:
    # Nothing can be gained by buying and refunding: the claw-back is never skipped.
    sale = service.commit(service.quote("M-2", basket(1000)))
    spend = JournalEntry("T-1", 0, "spend-1", "adjust", {"member_id": "M-2", "points_delta": -10}, "t")
    service.store.record(spend, points=("M-2", -10))
    assert service.void(sale.txn_id).points_balance == -10


def test_commit_listeners_see_only_durable_receipts(service: Service) -> None:
    seen = []
    service.on_commit.append(lambda r: seen.append(service.store.entries()[-1].txn_id == r.txn_id))
    service.commit(service.quote("M-1", basket(100)))
    assert seen == [True]


def test_a_tap_stands_for_its_member_a_while(service: Service) -> None:
    """``LastTap``: the last card tap is the member at the till (and their proof) for ``max_age`` seconds."""
    from terminal.checkout import LastTap

    now = [1000.0]
    last = LastTap(max_age=300, clock=lambda: now[0])
    assert last.get() is None
    found = service.identify(tap("04000001"))
    last.set(found)
    now[0] += 299
    assert last.get() is found
    now[0] += 2
    assert last.get() is None  # an unused tap of five minutes ago stands for nobody
    last.set(found)
    assert last.get() is found  # a new tap stands again


def test_a_days_receipt_numbers_are_the_stores_day_not_the_utc_date(service: Service) -> None:
    """A POS whose numbers start again each day, in a store in Tokyo: 02:13 and 10:13 there are one day (17:13 and
    01:13 UTC, two UTC dates), so the second sale of its 0042 with the same lines is a reprint, as head office
    keys the number (the date in the store's time zone)."""
    import json

    from terminal.model import ReceiptRef
    from terminal.ports import CacheDocs

    service.store.apply_changes([], [], [], 9, CacheDocs(topup_policy=json.dumps({"timezone": "Asia/Tokyo"})))
    night = datetime(2026, 9, 21, 17, 13, tzinfo=UTC).timestamp()  # 02:13 on the 22nd in Tokyo
    sold = []
    for at, digest in ((night, "a" * 64), (night + 8 * 3600, "b" * 64)):  # 10:13 on the 22nd, 01:13 UTC the 22nd
        till = Service(service.store, "T-1", clock=lambda at=at: at)
        try:
            till.commit(till.quote("M-1", basket(1000)), receipt=ReceiptRef(digest, "0042", "POS-1", "day"))
            sold.append("sold")
        except Rejected as exc:
            sold.append(exc.code.value)
    assert sold == ["sold", "receipt_reprint"]


def test_a_receipt_whose_number_was_sold_is_a_reprint_whatever_its_bytes(service: Service, tmp_path: Path) -> None:
    """One sale per receipt: the same digest is ``receipt_already_used``; the same number at the store with other
    bytes (a COPY header, another print time) and the same lines is ``receipt_reprint``, another basket under the
    number another receipt; a template with no number has the digest only;
    numbers that start again each day are the day's. A refusal records nothing."""
    from terminal.model import ReceiptRef

    def sell(ref: ReceiptRef, svc: Service = service, basket_total: int = 1000) -> str:
        try:
            svc.commit(svc.quote("M-1", basket(basket_total)), receipt=ref)
        except Rejected as exc:
            return exc.code.value
        return "sold"

    d = [f"{i:064x}" for i in range(10)]
    assert sell(ReceiptRef(d[0], "0042", "POS-1")) == "sold"
    assert sell(ReceiptRef(d[0], "0042", "POS-1")) == "receipt_already_used"  # the same bytes again
    assert sell(ReceiptRef(d[1], "0042", "POS-1")) == "receipt_reprint"  # its copy
    assert sell(ReceiptRef(d[1], " 0042 ", "POS-2")) == "receipt_reprint"  # printed at another POS of the store
    assert sell(ReceiptRef(d[1], "0043", "POS-1")) == "sold"
    # another register numbering alike (or a POS whose numbers started again): another basket is another receipt,
    # sold, and its own copy is a reprint
    assert sell(ReceiptRef(d[7], "0042", "POS-2"), basket_total=1500) == "sold"
    assert sell(ReceiptRef(d[8], "0042", "POS-2"), basket_total=1500) == "receipt_reprint"
    assert sell(ReceiptRef(d[9], "0042", "POS-1")) == "receipt_reprint"
    assert sell(ReceiptRef(d[2], None, "POS-1")) == "sold"  # no number read: the digest alone
    assert sell(ReceiptRef(d[2], None, "POS-1")) == "receipt_already_used"
    assert sell(ReceiptRef(d[3], "0042", "POS-1", "day")) == "sold"  # a day's numbers are not the store's
    assert sell(ReceiptRef(d[4], "0042", "POS-1", "day")) == "receipt_reprint"
    tomorrow = Service(service.store, "T-1", clock=lambda: 1_790_000_000.0 + 86_400)
    assert sell(ReceiptRef(d[5], "0042", "POS-1", "day"), tomorrow) == "sold"
    other = Service(service.store, "T-1", clock=lambda: 1_790_000_000.0, store_id="S-002")
    assert sell(ReceiptRef(d[6], "0043", "POS-1"), other) == "sold"  # another store's numbers are its own
    assert [e.payload["receipt_number"] for e in service.store.entries()] == [
        "0042",
        "0043",
        "0042",
        None,
        "0042",
        "0042",
        "0043",
    ]
    # head office compares each number with the store's other tills' by its scope (none without a number)
    assert [e.payload.get("receipt_scope") for e in service.store.entries()] == [
        "store",
        "store",
        "store",
        None,
        "day",
        "day",
        "store",
    ]
    assert service.store.member("M-1").points == 175  # seven sales earned, the refusals nothing


def test_the_receipt_numbers_of_the_sales_recorded_before_the_upgrade_are_reprints_after_it(tmp_path: Path) -> None:
    """m015_receipt_numbers takes the numbers of the receipt sales the journal holds."""
    import sqlite3

    from terminal.model import ReceiptRef
    from terminal.store import Store

    store = Store.open(tmp_path / "t.db")
    svc = Service(store, "T-1", clock=lambda: 1_790_000_000.0)
    svc.commit(svc.quote(None, basket(500)), receipt=ReceiptRef("a" * 64, "0042", "POS-1"))
    svc.commit(svc.quote(None, basket(500)), receipt=ReceiptRef("b" * 64, None, "POS-1"))
    store.close()
    conn = sqlite3.connect(tmp_path / "t.db")  # as a database of the release before
    with conn:
        conn.execute("DROP TABLE receipt_numbers")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m015_receipt_numbers', 'm017_receipt_printed')")
    conn.close()
    store = Store.open(tmp_path / "t.db")
    try:
        svc = Service(store, "T-1", clock=lambda: 1_790_000_000.0)
        with pytest.raises(Rejected) as info:
            svc.commit(svc.quote(None, basket(500)), receipt=ReceiptRef("c" * 64, "0042", "POS-1"))
        assert info.value.code is Code.RECEIPT_REPRINT
        svc.commit(svc.quote(None, basket(500)), receipt=ReceiptRef("c" * 64, "0043", "POS-1"))
    finally:
        store.close()
