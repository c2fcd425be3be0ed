"""The rows that stop a printed receipt earning twice are bounded: a receipt printed more than ``max_age_days`` ago
earns nothing (``receipt_too_old``), so its rows are deleted past that and a margin, in batches; a reprint of a
receipt whose rows are gone is still refused; a pruning that fails or stops half way deletes nothing else."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from terminal.errors import Rejected
from terminal.model import Basket, Line, ReceiptRef
from terminal.ports import CacheDocs
from terminal.receiptrows import RowKeeper, prune_rows
from terminal.receipts.age import MARGIN_DAYS, printed_time
from terminal.service import Service
from terminal.store import Store
from terminal.topups import business_day

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def till(store: Store, at: datetime = NOW) -> Service:
    return Service(store, "T-1", clock=lambda: at.timestamp(), receipt_max_age_days=7)


def sell(svc: Service, digest: str, printed: datetime | None, number: str | None = "0042") -> str:
    ref = ReceiptRef(digest, number, "POS-1", "store", printed.replace(tzinfo=None) if printed else None)
    try:
        svc.commit(svc.quote("M-1", Basket((Line("SKU-1", 1, 1000),))), receipt=ref)
    except Rejected as exc:
        return exc.code.value
    return "sold"


def rows(store: Store) -> tuple[int, int]:
    conn = store.db.conn
    return (
        int(conn.execute("SELECT count(*) FROM receipt_digests").fetchone()[0]),
        int(conn.execute("SELECT count(*) FROM receipt_numbers").fetchone()[0]),
    )


def test_a_receipt_printed_longer_ago_than_it_may_earn_is_refused(service: Service) -> None:
    """The time a template reads (``time_format``) gives the receipt's age; past ``max_age_days`` nothing is sold."""
    assert printed_time("2026-12-02 10:30", "%Y-%m-%d %H:%M") == datetime(2026, 12, 2, 10, 30)
    assert printed_time("02/12/2026", "%Y-%m-%d %H:%M") is None
    svc = till(service.store)
    before = service.store.pending_count()
    assert sell(svc, "a" * 64, NOW - timedelta(days=8), "0001") == "receipt_too_old"
    assert service.store.pending_count() == before and rows(service.store) == (0, 0)
    assert sell(svc, "b" * 64, NOW - timedelta(days=6), "0002") == "sold"
    assert sell(svc, "c" * 64, None, "0003") == "sold"  # a receipt whose time was not read is never too old


def test_a_reprint_after_its_rows_were_pruned_still_earns_nothing(service: Service) -> None:
    """Sold on the day, its rows pruned ten days later: the same bytes and a COPY of it are refused by their age."""
    printed = NOW - timedelta(hours=1)
    assert sell(till(service.store), "d" * 64, printed) == "sold"
    assert sell(till(service.store, NOW + timedelta(days=3)), "d" * 64, printed) == "receipt_already_used"
    later = NOW + timedelta(days=7 + MARGIN_DAYS + 1)
    assert prune_rows(service.store.forget_receipts, 7, later.timestamp()) == 2
    assert rows(service.store) == (0, 0)
    sold = service.store.pending_count()
    assert sell(till(service.store, later), "d" * 64, printed) == "receipt_too_old"
    assert sell(till(service.store, later), "e" * 64, printed) == "receipt_too_old"  # a COPY: other bytes
    assert service.store.pending_count() == sold


def test_only_rows_too_old_to_matter_go_in_batches_and_a_stopped_pruning_leaves_the_rest(service: Service) -> None:
    """Old rows go batch by batch, each its own transaction; young rows, rows without a time and the journal stay."""
    store = service.store
    svc = till(store)
    for i in range(5):
        assert sell(svc, f"{i:064x}", NOW - timedelta(days=1), f"N{i}") == "sold"
    assert sell(svc, "f" * 64, None, "N-untimed") == "sold"
    journal = store.pending_count()
    later = (NOW + timedelta(days=7 + MARGIN_DAYS)).timestamp()
    calls: list[int] = []
    stop = threading.Event()

    def forget(before: str, batch: int) -> int:
        calls.append(batch)
        done = store.forget_receipts(before, batch)
        stop.set()  # killed after its first batch
        return done

    assert prune_rows(forget, 7, later, batch=2, stop=stop) == 4
    assert calls == [2] and rows(store) == (4, 4)
    assert prune_rows(store.forget_receipts, 7, later, batch=2) == 6  # the next pruning goes on
    assert rows(store) == (1, 1) and store.pending_count() == journal
    assert sell(till(store, NOW + timedelta(days=1)), "f" * 64, None, "N-other") == "receipt_already_used"


def test_a_failing_pruning_deletes_nothing_and_the_till_sells_on(service: Service) -> None:
    """The disk full or read-only while pruning (a write refused): logged, nothing deleted, the next sale sold."""
    store = service.store
    assert sell(till(store), "1" * 64, NOW - timedelta(days=1), "0001") == "sold"
    store.db.conn.execute("CREATE TRIGGER full BEFORE DELETE ON receipt_digests BEGIN SELECT RAISE(ABORT, 'full'); END")
    keeper = RowKeeper(store.forget_receipts, 7, clock=lambda: (NOW + timedelta(days=30)).timestamp())
    assert keeper.prune() == 0 and keeper.failing == "receipt_rows_prune_failed"
    assert rows(store) == (1, 1)  # the batch rolled back whole: its numbers' rows too
    assert sell(till(store, NOW + timedelta(days=30)), "2" * 64, NOW + timedelta(days=30), "0002") == "sold"


def test_a_till_clock_a_year_ahead_neither_refuses_todays_receipts_nor_prunes_their_rows(service: Service) -> None:
    """The last sync measured this till's clock a year ahead of head office's: receipts are aged, and their rows
    pruned, by head office's time as last measured, so today's receipt sells and its row stops its reprint."""
    store = service.store
    ahead = 365 * 86400.0
    store.set_state(hq_clock_offset=str(ahead))
    wrong = NOW + timedelta(seconds=ahead)  # what this till's clock says
    svc = till(store, wrong)
    assert abs(svc.hq_now() - NOW.timestamp()) < 1
    assert sell(svc, "9" * 64, NOW - timedelta(hours=1), "0009") == "sold"
    keeper = RowKeeper(store.forget_receipts, 7, clock=svc.hq_now)
    assert keeper.prune() == 0 and rows(store) == (1, 1)
    assert sell(svc, "9" * 64, NOW - timedelta(hours=1), "0009") == "receipt_already_used"


CORRUPT_OFFSETS: list[object] = [
    "nan",
    "-NaN",
    "inf",
    "-Infinity",
    "a minute",
    "1e400",  # beyond a float: inf
    "9" * 400,
    str(11 * 365 * 86400.0),  # eleven years: no clock is that far off
    "-4e11",
    float("inf"),  # a REAL, as SQLite keeps it
    -1e300,
    b"\xff\x00",  # a BLOB
]


@pytest.mark.parametrize("value", CORRUPT_OFFSETS, ids=lambda v: repr(v)[:16])
def test_a_corrupt_clock_offset_is_no_measurement_logged_once_and_the_till_sells_on(
    service: Service, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    """The measured offset written into the till's database as something that is no finite number within ten years
    (a corrupt row, a hand edit): the till reads it as never measured, says so once, and ages receipts and prunes
    their rows by its own clock."""
    store = service.store
    store.db.conn.execute(
        "INSERT INTO sync_state (key, value) VALUES ('hq_clock_offset', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [value],
    )
    svc = till(store)
    with caplog.at_level(logging.WARNING, logger="terminal.service"):
        assert svc.clock_offset() is None
        assert svc.hq_now() == NOW.timestamp() and svc.rows_now() == NOW.timestamp()
        assert sell(svc, "6" * 64, NOW - timedelta(hours=1), "0006") == "sold"
        assert sell(svc, "5" * 64, NOW - timedelta(days=8), "0005") == "receipt_too_old"
        assert RowKeeper(store.forget_receipts, 7, clock=svc.rows_now).prune() == 0 and rows(store) == (1, 1)
    said = [r for r in caplog.records if "hq_clock_offset" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]


def test_an_offset_within_ten_years_is_still_read(service: Service) -> None:
    """The bound is wide: a till clock nine years off (a dead CMOS battery) is still corrected by the offset."""
    store = service.store
    ahead = 9 * 365 * 86400.0
    store.db.conn.execute("INSERT INTO sync_state (key, value) VALUES ('hq_clock_offset', ?)", [str(-ahead)])
    svc = till(store)
    assert svc.clock_offset() == -ahead and svc.hq_now() == NOW.timestamp() + ahead


def test_a_printed_time_beyond_the_calendar_in_utc_is_aged_and_kept_without_failing_the_sale(service: Service) -> None:
    """A POS stream printing the last minute of year 9999 west of UTC (``%z``), or the first of year 1 east of it:
    a time with no UTC instant. The first sells and its rows are kept; the second is refused as too old; neither
    fails the receipt (an exception the desk does not answer: no sale, no refusal, only a traceback)."""
    store = service.store
    svc = till(store)
    last = printed_time("9999-12-31 23:59 -2359", "%Y-%m-%d %H:%M %z")
    first = printed_time("0001-01-01 00:00 +2359", "%Y-%m-%d %H:%M %z")
    assert last is not None and first is not None
    assert sell_aware(svc, "7" * 64, last, "0007") == "sold"
    assert sell_aware(svc, "8" * 64, first, "0008") == "receipt_too_old"
    assert prune_rows(store.forget_receipts, 7, (NOW + timedelta(days=30)).timestamp()) == 0
    assert rows(store) == (1, 1)
    assert sell_aware(svc, "7" * 64, last, "0007") == "receipt_already_used"


def sell_aware(svc: Service, digest: str, printed: datetime, number: str) -> str:
    """``sell`` with the printed time as the template read it, its UTC offset kept."""
    return sell_ref(svc, ReceiptRef(digest, number, "POS-1", "store", printed))


def test_a_store_time_zone_naming_no_zone_here_ages_receipts_by_the_tills_own(service: Service) -> None:
    """Head office's policy names a time zone this till's database holds as a directory of zones ("America"), or
    as no file at all: a naive printed time is the till's own zone, a day's receipt number the till's date, a
    business day the till's, and no receipt fails (an OSError the desk does not answer)."""
    store = service.store
    for n, zone in enumerate(("America", "A" * 300)):
        store.apply_changes([], [], [], 9 + n, CacheDocs(topup_policy=json.dumps({"timezone": zone})))
        svc = till(store)
        ref = ReceiptRef(f"{n:064x}", f"D{n}", "POS-1", "day", (NOW - timedelta(days=1)).replace(tzinfo=None))
        assert sell_ref(svc, ref) == "sold"
        assert business_day(NOW, {"timezone": zone}) == NOW.astimezone().date().isoformat()
    old = ReceiptRef("e" * 64, "D9", "POS-1", "day", (NOW - timedelta(days=9)).replace(tzinfo=None))
    assert sell_ref(till(store), old) == "receipt_too_old"
    assert rows(store) == (2, 2)


def sell_ref(svc: Service, ref: ReceiptRef) -> str:
    """The sale of one unit read from ``ref``: "sold", or the code it was refused with."""
    try:
        svc.commit(svc.quote("M-1", Basket((Line("SKU-1", 1, 1000),))), receipt=ref)
    except Rejected as exc:
        return exc.code.value
    return "sold"


def test_a_till_clock_set_back_refuses_dated_receipts_instead_of_letting_an_old_one_look_young(
    service: Service,
) -> None:
    """A cashier sets the till's clock back four days while it is offline: a receipt printed ten days ago, whose
    rows were pruned, would look six days old and earn again. The till knows its clock reads before a time it
    already recorded, so a dated receipt is refused (``till_clock_wrong``) until the clock is put right; a receipt
    whose time is not read is not aged and sells."""
    store = service.store
    assert sell(till(store), "7" * 64, NOW - timedelta(hours=1), "0070") == "sold"  # recorded at NOW
    old = NOW - timedelta(days=10)
    assert sell(till(store), "8" * 64, old, "0080") == "receipt_too_old"
    back = till(store, NOW - timedelta(days=4))
    assert sell(back, "8" * 64, old, "0080") == "till_clock_wrong"
    assert sell(back, "6" * 64, None, "0060") == "sold"
    assert sell(till(store, NOW + timedelta(minutes=5)), "8" * 64, old, "0080") == "receipt_too_old"
