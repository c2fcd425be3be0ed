"""Settlement between merchants: statements per merchant and period from the ledger, byte for byte the same
every time, closed periods that never change, and late entries of an offline till filed under the next open
period. Every test on a database runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hq import audit, ledger, merchants, periods, settlement
from hq.api.server import ServerHandle, start_in_thread
from hq.db.engine import Tx
from hq.ingest import Settings
from hq.store import HqStore
from tests.sync.test_hq_ledger import STORES, Till, made, new_member, seen
from tests.waiting import wait_until

JUNE, JULY = "2026-06", "2026-07"
AFTER_JUNE = dt.date(2026, 7, 5)
"""Days below are counted from 2026-06-01 (``test_hq_ledger.made``): 0-29 are June, 30-60 July."""


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url, Settings(clock_skew=10**9, spend_needs_proof=False, recompute=False))
    with hq.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90)
        merchants.add(tx, "M-B", "Books", cost_per_100=120, reimburse_per_100=100)
        for store_id, merchant_id in STORES.items():
            merchants.assign_store(tx, store_id, merchant_id, "UTC")
    hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "expire_days": 365})
    yield hq
    hq.close()


def stmt(hq: HqStore, period: str, merchant_id: str) -> settlement.Statement:
    return settlement.read_statement(hq.db, period, merchant_id)


def documents(hq: HqStore, period: str, merchant_id: str) -> tuple[bytes, bytes]:
    found = stmt(hq, period, merchant_id)
    return settlement.to_csv(found), settlement.to_pdf(found)


def close(hq: HqStore, period: str, today: dt.date | None = AFTER_JUNE) -> periods.Closed:
    """Close ``period`` as head office does with its clock at the start of ``today`` (UTC; None: its clock now)."""
    return settlement.close_period(hq.db, period, "Mio", "month end", now=at(today) if today else None)


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def csv_rows(body: bytes) -> dict[tuple[str, str], str]:
    return {(r[0], r[1]): r[2] for r in csv.reader(io.StringIO(body.decode()))}


# -- the pure core ---------------------------------------------------------------------------------------


def test_the_money_is_computed_once_on_each_total_and_rounded_down() -> None:
    m = merchants.Merchant("M-A", "Bakery", cost_per_100=150, reimburse_per_100=120, created_at="")
    figures = settlement.Figures(issued=333, clawed=10, accepted=77, value_accepted=500, cash_taken=200)
    s = settlement.Statement(JUNE, m, None, figures, slices=(settlement.Slice(None, issued=333, clawed=10),))
    assert s.charge == 323 * 150 // 100 == 484
    assert s.reimbursement == 77 * 120 // 100 == 92
    assert s.margin == 484 - 92
    assert s.net == 92 + 500 - 484 - 200 == -92
    rows = csv_rows(settlement.to_csv(s))
    assert rows[("settle", "merchant_pays_chain")] == "92"
    assert rows[("statement", "state")] == "open"


def test_a_negative_charge_rounds_to_the_merchants_side_as_the_docs_say() -> None:
    """Rounding down is the chain's way for a reimbursement either way and for a positive charge, not for a
    negative one: a reserve merchant whose breakage released exceeds what it issued is owed up to 1 minor unit
    more than the exact amount. Closed statements keep it, and docs/settlement.md says so (with this example)."""
    m = merchants.Merchant("M-R", "Reserve", cost_per_100=150, reimburse_per_100=150, created_at="", timing="reserve")
    released = settlement.Statement(
        JUNE, m, None, settlement.Figures(accepted=-1), slices=(settlement.Slice("reserve", breakage=1),)
    )
    assert (released.charged, released.charge) == (-1, -2)  # exactly -1.50: the chain pays 2
    assert released.reimbursement == -2  # exactly -1.50: the chain takes 2 back
    paid = settlement.Statement(JUNE, m, None, settlement.Figures(accepted=1), slices=(settlement.Slice("reserve", 1),))
    assert (paid.charge, paid.reimbursement) == (1, 1)  # exactly 1.50 each: the merchant pays 1, is paid 1
    docs = " ".join((Path(__file__).parents[2] / "docs" / "settlement.md").read_text().split())
    assert "a charge of -1 point at a `cost_per_100` of 150 is -2, exactly -1.50" in docs
    assert "towards the chain" not in docs


def test_a_period_is_placed_and_closed_in_order() -> None:
    none = periods.Calendar(None)
    assert none.place("2026-06-30") == ("2026-06", None)
    june = periods.Calendar("2026-06")
    assert june.place("2026-05-03") == ("2026-07", "2026-05")
    assert june.place("2026-07-01") == ("2026-07", None)
    assert periods.Calendar("2026-12").place("2026-12-31") == ("2027-01", "2026-12")
    refusals = {
        p: (june.refusal(p, AFTER_JUNE) or periods.PeriodError(periods.Code.BAD_PERIOD, "")).code
        for p in ("2026-05", "2026-06", "2026-07")
    }
    assert refusals == {
        "2026-05": periods.Code.PERIOD_CLOSED,
        "2026-06": periods.Code.PERIOD_CLOSED,
        "2026-07": periods.Code.PERIOD_NOT_OVER,
    }
    assert june.refusal("2026-07", dt.date(2026, 8, 1)) is None
    assert june.refusal("2026-08", dt.date(2026, 9, 1)).code is periods.Code.EARLIER_PERIOD_OPEN  # type: ignore[union-attr]
    with pytest.raises(periods.PeriodError) as bad:
        periods.parse("2026-13")
    assert bad.value.code is periods.Code.BAD_PERIOD


def test_a_name_the_pdf_font_cannot_draw_is_spelt_by_code_point() -> None:
    m = merchants.Merchant("M-J", "ベーカリー Café", 100, 90, "")
    s = settlement.Statement(JUNE, m, None, settlement.Figures())
    assert settlement.printable(m.name).endswith(" Café")
    assert settlement.to_pdf(s).startswith(b"%PDF-")
    assert "ベーカリー Café" in settlement.to_csv(s).decode()


def test_no_cell_of_a_statements_csv_is_a_formula_and_its_numbers_stay_numbers() -> None:
    m = merchants.Merchant("M-F", "=HYPERLINK(1)", 100, 200, "")
    late = settlement.Late("=cmd|' /C calc'!A0", "sale", "2026-06-30", "2026-06")  # a till's id for a late sale
    s = settlement.Statement(JUNE, m, None, settlement.Figures(accepted=100), (late,))  # a margin below zero
    cells = {(r[0], r[1]): r[2] for r in csv.reader(io.StringIO(settlement.to_csv(s).decode()))}
    assert cells[("statement", "name")] == "'=HYPERLINK(1)"
    assert ("late", "'=cmd|' /C calc'!A0") in cells
    assert cells[("money", "chain_margin")] == "-200" and cells[("money", "reimbursement")] == "200"
    with pytest.raises(merchants.MerchantError):
        merchants.check("M-A\n", "A", 100, 100)  # an id is the whole text: no newline at its end


# -- statements from the ledger ----------------------------------------------------------------------------


def test_a_statement_shows_what_each_merchant_issued_accepted_and_owes(store: HqStore) -> None:
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)  # the bakery issues 200
    a.push()
    b.sale("X", 2, earn=50, redeem=80)  # the bookshop accepts 80 of the bakery's points, issues 50
    b.sale("X", 3, pay=0, redeem=20)  # ... and 20 more
    b.push()
    a.sale("X", 40, earn=10)  # July: not June's
    a.push()
    bakery, books = stmt(store, JUNE, "M-A"), stmt(store, JUNE, "M-B")
    assert bakery.figures == settlement.Figures(issued=200, own_spent_elsewhere=100, outstanding_end=100)
    assert books.figures == settlement.Figures(issued=50, accepted=100, others_spent_here=100, outstanding_end=50)
    assert (bakery.charge, bakery.reimbursement, bakery.net) == (200, 0, -200)
    assert (books.charge, books.reimbursement, books.net) == (60, 100, 40)
    assert bakery.state == "open" and bakery.late == ()
    july = stmt(store, JULY, "M-A").figures
    assert (july.issued, july.outstanding_start, july.outstanding_end) == (10, 100, 110)
    everyone = settlement.read_statements(store.db, JUNE)
    assert [s.merchant.merchant_id for s in everyone] == ["M-A", "M-B", "chain"]
    with store.db.read() as tx:
        liability = -sum(n for (k, _), n in ledger.read_books(tx).accounts.items() if k is ledger.Kind.ISSUED)
    assert settlement.totals(everyone)["outstanding_end"] + 10 == liability == 160


def test_a_refund_takes_back_what_the_sale_issued_and_gives_back_what_it_accepted(store: HqStore) -> None:
    from tests.fixtures import entries

    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=100)
    a.push()
    txn = b.sale("X", 2, earn=40, redeem=60)
    refund = entries.refund(txn, "X", store_id="S2", money_back=500, restored=30, clawed=20)
    b.write("refund", refund, 3)
    b.push()
    books = stmt(store, JUNE, "M-B").figures
    assert (books.issued, books.clawed, books.accepted, books.others_spent_here) == (40, 20, 30, 30)
    assert stmt(store, JUNE, "M-A").figures.own_spent_elsewhere == 30


def test_statements_are_the_same_bytes_however_often_they_are_made(store: HqStore) -> None:
    new_member(store, "X", stored_value=5000)
    new_member(store, "Y")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=120, pay=300)
    b.sale("X", 2, redeem=70)
    for t in (a, b):
        t.push()
    june = documents(store, JUNE, "M-A"), documents(store, JUNE, "M-B")
    assert june == (documents(store, JUNE, "M-A"), documents(store, JUNE, "M-B"))
    a.sale("Y", 35, earn=99)  # July: activity of the same merchants, their members, later
    b.sale("X", 36, redeem=10, earn=3)
    for t in (a, b):
        t.push()
    with store.db.write() as tx:
        ledger.expire(tx, dt.datetime(2027, 12, 31, tzinfo=dt.UTC))  # breakage, filed under today's period
    assert (documents(store, JUNE, "M-A"), documents(store, JUNE, "M-B")) == june
    assert june[0][1].startswith(b"%PDF-") and b"CreationDate (D:20000101" in june[0][1]


def test_a_closed_period_never_changes_and_its_late_entries_post_to_the_next(store: HqStore) -> None:
    new_member(store, "X")
    online, offline = Till(store, "S1"), Till(store, "S1")
    online.sale("X", 3, earn=100)
    online.push()
    late = offline.sale("X", 20, earn=40)  # June 21, still in the offline till when June closes
    close(store, JUNE)
    closed_june = documents(store, JUNE, "M-A")
    store.upsert_member("X", points=0)  # an administrator's change after the close, and new rates
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery & Co", cost_per_100=500, reimburse_per_100=1)
    offline.push()  # the late entry arrives
    offline.sale("X", 33, earn=7)
    offline.push()
    assert documents(store, JUNE, "M-A") == closed_june
    with store.db.read() as tx:
        row = tx.one("SELECT day, period, moved_from FROM ledger_txns WHERE ledger_txn_id = ?", [late])
    assert tuple(row or ()) == ("2026-06-21", JULY, JUNE)
    july = stmt(store, JULY, "M-A")
    assert july.late == (settlement.Late(late, "sale", "2026-06-21", JUNE),)
    assert july.figures.issued == 47 and july.merchant.cost_per_100 == 500
    assert csv_rows(settlement.to_csv(july))[("late", late)] == "sale 2026-06-21 belongs to 2026-06"
    frozen = stmt(store, JUNE, "M-A")
    assert frozen.state == "closed" and frozen.merchant.name == "Bakery" and frozen.figures.issued == 100
    assert ledger.check.__name__ and _books_hold(store)


def test_no_period_is_closed_while_the_tills_find_head_offices_clock_wrong(store: HqStore) -> None:
    """A close is for ever: while most tills heard in the last hour find head office's clock off (its date
    could make a period look over), it is refused as ``clock_suspect``; once they agree, it closes."""
    new_member(store, "X")
    tills = [Till(store, "S1") for _ in range(3)]
    now = dt.datetime.now(dt.UTC)
    for till, offset in zip(tills, (-3e6, -3e6, 0.5), strict=True):
        seen(store, till.terminal_id, now, offset)
    with pytest.raises(periods.PeriodError) as refused:
        close(store, JUNE, None)
    assert refused.value.code is periods.Code.CLOCK_SUSPECT and "2 of the 3 tills" in str(refused.value)
    with store.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM ledger_closes") == (0,)
    for till in tills:
        seen(store, till.terminal_id, now, 0.2)
    assert close(store, JUNE, None).period == JUNE


def test_a_close_keeps_the_positions_a_later_statement_opens_with(store: HqStore) -> None:
    """A statement opens with each merchant's points outstanding: the positions the last close kept plus what
    was filed since, the same figures as every posting of the ledger's history, late entries included."""
    new_member(store, "X")
    a, b, offline = Till(store, "S1"), Till(store, "S2"), Till(store, "S2")
    a.sale("X", 3, earn=100)
    a.push()
    offline.sale("X", 20, earn=40, redeem=30)  # still offline when June closes
    close(store, JUNE)
    offline.push()  # filed under July
    b.sale("X", 35, earn=25, redeem=50)
    b.push()
    close(store, JULY, dt.date(2026, 8, 2))
    a.sale("X", 65, earn=9)  # August
    a.push()
    with store.db.read() as tx:
        kept = {(str(p), str(m)): int(n) for p, m, n in tx.all("SELECT * FROM ledger_close_positions")}
    assert kept == {(JUNE, "M-A"): 100, (JULY, "M-A"): 20, (JULY, "M-B"): 65}
    august = [settlement.to_csv(s) for s in settlement.read_statements(store.db, "2026-08")]
    assert stmt(store, "2026-08", "M-A").figures.outstanding_start == 20
    with store.db.write() as tx:  # as after closes made before positions were kept: the whole history is read
        tx.run("UPDATE ledger_closes SET positions_kept = 0")
    assert [settlement.to_csv(s) for s in settlement.read_statements(store.db, "2026-08")] == august


def _books_hold(hq: HqStore) -> bool:
    with hq.db.read() as tx:
        return ledger.check(tx) == []


def test_closing_is_audited_in_order_and_refused_with_a_code(store: HqStore) -> None:
    done = close(store, JUNE)
    assert (done.period, done.closed_by) == (JUNE, "Mio")
    with store.db.read() as tx:
        last = audit.recent(tx, 1)[0]
    assert (last.actor, last.action, last.target, last.reason) == ("Mio", "close_period", JUNE, "month end")
    codes = {}
    for period, today in (
        (JUNE, AFTER_JUNE),
        ("2026-05", AFTER_JUNE),
        (JULY, AFTER_JUNE),
        ("2026-08", dt.date(2026, 9, 2)),
        ("2026-6", AFTER_JUNE),
    ):
        with pytest.raises(periods.PeriodError) as refused:
            close(store, period, today)
        codes[period] = refused.value.code.value
    assert codes == {
        JUNE: "period_closed",
        "2026-05": "period_closed",
        JULY: "period_not_over",
        "2026-08": "earlier_period_open",
        "2026-6": "bad_period",
    }
    assert settlement.calendar(store.db)["closed_through"] == JUNE
    assert stmt(store, "2026-05", "M-A").state == "closed"  # before the first close: closed by it


def test_a_period_closes_only_once_it_is_over_in_every_store_and_the_chains_zone(store: HqStore) -> None:
    """A close is for ever and the rest of a period not over would be late entries of the next: head office
    judges "over" by its own clock in every store's business day (a store in Los Angeles, cut-off 02:00) and in
    the zone it serves (New York), and says from when the period can be closed."""
    with store.db.write() as tx:
        merchants.assign_store(tx, "S-LA", "M-A", "UTC")
    store.set_store("S-LA", "America/Los_Angeles", "02:00")
    opens = dt.datetime(2026, 7, 1, 9, tzinfo=dt.UTC)  # 02:00 on 1 July in Los Angeles (PDT, UTC-7)
    for now in (dt.datetime(2026, 7, 1, tzinfo=dt.UTC), opens - dt.timedelta(minutes=1)):
        with pytest.raises(periods.PeriodError) as refused:
            settlement.close_period(store.db, JUNE, "Mio", "early", "America/New_York", now=now)
        assert refused.value.code is periods.Code.PERIOD_NOT_OVER
        assert "from 2026-07-01T09:00Z" in str(refused.value) and "business day 2026-07-01" in str(refused.value)
    with store.db.read() as tx:
        assert periods.today(tx, "America/New_York", opens) == dt.date(2026, 7, 1)
        assert periods.today(tx, "Pacific/Honolulu", opens) == dt.date(2026, 6, 30)  # 23:00 there: not over
        assert tx.one("SELECT COUNT(*) FROM ledger_closes") == (0,)
    assert settlement.close_period(store.db, JUNE, "Mio", "month end", "America/New_York", now=opens).period == JUNE


def test_a_merchant_added_after_a_close_has_no_statement_for_it(store: HqStore) -> None:
    close(store, JUNE)
    with store.db.write() as tx:
        merchants.add(tx, "M-C", "Cafe")
    with pytest.raises(settlement.SettlementError) as refused:
        stmt(store, JUNE, "M-C")
    assert refused.value.code is settlement.Code.UNKNOWN_MERCHANT
    assert stmt(store, JULY, "M-C").figures == settlement.Figures()


# -- the command and the admin API ------------------------------------------------------------------------


def test_the_commands_close_and_print_statements(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    db = ["--db", str(tmp_path / "hq.db")]
    HqStore(str(tmp_path / "hq.db")).close()  # head office's database (a command would make it, and say so)
    run = CliRunner().invoke
    assert run(app, ["merchant", "add", "M-A", "--name", "Bakery", *db]).exit_code == 0
    for dotted in ("Shop.1", "Shop.2"):  # a merchant id may hold a '.': each still has its own files
        assert run(app, ["merchant", "add", dotted, "--name", dotted, *db]).exit_code == 0
    first = run(app, ["settlement", "statement", JUNE, "M-A", "--format", "csv", *db])
    assert first.exit_code == 0 and "merchant_id,M-A" in first.output
    out = tmp_path / "june.pdf"
    assert run(app, ["settlement", "statement", JUNE, "M-A", "--format", "pdf", "--out", str(out), *db]).exit_code == 0
    assert out.read_bytes().startswith(b"%PDF-")
    nowhere = str(tmp_path / "no-such-dir" / "june.pdf")  # a mistyped path: one line, no traceback
    lost = run(app, ["settlement", "statement", JUNE, "M-A", "--format", "pdf", "--out", nowhere, *db])
    assert lost.exit_code == 1 and "cannot_write: --out" in lost.output and "Traceback" not in lost.output
    taken = tmp_path / "a-file"
    taken.write_text("")
    blocked = run(app, ["settlement", "statements", JUNE, "--dir", str(taken), *db])
    assert blocked.exit_code == 1 and "cannot_write: --dir" in blocked.output and "cannot be written" in blocked.output
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")  # not over by head office's clock: no day says so
    early = run(app, ["settlement", "close", this_month, "--by", "Mio", "--reason", "early", *db])
    assert early.exit_code == 1 and "period_not_over" in early.output and "can be closed once" in early.output
    later = run(app, ["settlement", "close", this_month, "--by", "M", "--reason", "r", "--today", "2999-01-01", *db])
    assert later.exit_code == 2 and "--today" in later.output
    closing = ["settlement", "close", JUNE, "--by", "Mio", "--reason", "month end", *db]
    assert run(app, closing).exit_code == 0
    again = run(app, closing)
    assert again.exit_code == 1 and "period_closed" in again.output
    listed = json.loads(run(app, ["settlement", "periods", "--json", *db]).output)
    assert listed["closed_through"] == JUNE and listed["closes"][0]["closed_by"] == "Mio"
    quarters = ["settlement", "length", "3", "--from", "2026-10", "--by", "Mio", "--reason", "quarterly", *db]
    assert run(app, quarters).exit_code == 0
    shown = run(app, ["settlement", "periods", *db])  # the table says what the JSON says, lengths included
    assert shown.exit_code == 0 and "closed through 2026-06" in shown.output
    assert "3 months from 2026-10" in shown.output and "month end" in shown.output
    made = run(app, ["settlement", "statements", JUNE, "--dir", str(tmp_path / "out"), "--json", *db])
    assert made.exit_code == 0 and json.loads(made.output)["statements"][0]["state"] == "closed"
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:6] == [
        "settlement-2026-06-M-A.csv",
        "settlement-2026-06-M-A.pdf",
        "settlement-2026-06-Shop.1.csv",
        "settlement-2026-06-Shop.1.pdf",
        "settlement-2026-06-Shop.2.csv",
        "settlement-2026-06-Shop.2.pdf",
    ]
    unknown = run(app, ["settlement", "statement", JUNE, "M-Z", *db])
    assert unknown.exit_code == 1 and "unknown_merchant" in unknown.output


@pytest.fixture
def http(store: HqStore) -> Iterator[httpx.Client]:
    handle: ServerHandle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    with httpx.Client(base_url=handle.url, timeout=10, trust_env=False) as client:
        yield client
    handle.stop()


def test_the_admin_api_serves_statements_and_closes_periods(store: HqStore, http: httpx.Client) -> None:
    new_member(store, "X")
    till = Till(store, "S1")
    till.sale("X", 2, earn=150)
    till.push()
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    got = http.get(f"/v1/admin/settlement/{JUNE}/M-A", params={"format": "csv"}, headers=admin)
    assert got.status_code == 200 and got.content == documents(store, JUNE, "M-A")[0]
    pdf = http.get(f"/v1/admin/settlement/{JUNE}/M-A", params={"format": "pdf"}, headers=admin)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content == documents(store, JUNE, "M-A")[1]
    whole = http.get(f"/v1/admin/settlement/{JUNE}", headers=admin).json()
    assert whole["totals"]["charge"] == 150 and len(whole["statements"]) == 3
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    early = http.post(f"/v1/admin/settlement/periods/{this_month}/close", json={"reason": "early"}, headers=admin)
    assert (early.status_code, early.json()["code"]) == (409, "period_not_over"), early.text
    closed = http.post(f"/v1/admin/settlement/periods/{JUNE}/close", json={"reason": "month end"}, headers=admin)
    assert closed.status_code == 200 and closed.json()["closed_by"] == "Mio"
    again = http.post(f"/v1/admin/settlement/periods/{JUNE}/close", json={"reason": "again"}, headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "period_closed")
    unknown = http.get(f"/v1/admin/settlement/{JUNE}/M-Z", headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_merchant")
    month = http.get("/v1/admin/settlement/2026-13/M-A", headers=admin)
    assert (month.status_code, month.json()["code"]) == (400, "bad_period")


def test_a_till_or_no_token_reads_no_statement_and_closes_nothing(store: HqStore, http: httpx.Client) -> None:
    """A stolen till credential is not an administrator's."""
    store.add_terminal("T-1", "S1", "till-token-0123456789")
    for headers in ({}, {"Authorization": "Bearer till-token-0123456789"}):
        assert http.get(f"/v1/admin/settlement/{JUNE}/M-A", headers=headers).status_code in (401, 403)
        shut = http.post(f"/v1/admin/settlement/periods/{JUNE}/close", json={"reason": "x"}, headers=headers)
        assert shut.status_code in (401, 403)
    assert settlement.calendar(store.db)["closed_through"] is None


def test_a_close_that_fails_halfway_closes_nothing(store: HqStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit record is written last, in the close's transaction: when it fails, the calendar, the frozen
    rates and the postings filed afterwards are as if the close was never asked for."""
    new_member(store, "X")
    offline = Till(store, "S1")
    offline.sale("X", 4, earn=30)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(audit, "append", broken)
    with pytest.raises(RuntimeError):
        close(store, JUNE)
    monkeypatch.undo()
    assert settlement.calendar(store.db) == {"closed_through": None, "lengths": [], "closes": []}
    offline.push()
    june = stmt(store, JUNE, "M-A")
    assert (june.state, june.figures.issued, june.late) == ("open", 30, ())


def test_a_close_whose_positions_fail_to_be_kept_closes_nothing(
    store: HqStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The positions are kept in the close's transaction: when keeping them fails after its rows were written,
    neither the close nor any position stays, and a later close keeps them as if nothing had happened."""
    new_member(store, "X")
    till = Till(store, "S1")
    till.sale("X", 4, earn=30)
    till.push()
    kept = settlement.keep_positions

    def broken(tx: Tx, period: str) -> int:
        kept(tx, period)  # the rows are written, then the disk goes
        raise RuntimeError("disk gone")

    monkeypatch.setattr(settlement, "keep_positions", broken)
    with pytest.raises(RuntimeError):
        close(store, JUNE)
    monkeypatch.undo()
    assert settlement.calendar(store.db)["closed_through"] is None
    with store.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM ledger_close_positions") == (0,)
    close(store, JUNE)
    with store.db.read() as tx:
        assert tx.all("SELECT merchant_id, outstanding FROM ledger_close_positions") == [("M-A", 30)]
    assert stmt(store, JUNE, "M-A").state == "closed"


# -- periods of several months ------------------------------------------------------------------------------


def test_periods_of_several_months_are_named_by_their_first_month() -> None:
    quarters = periods.Calendar(None, (("2026-07", 3),))
    assert [quarters.period_of(d) for d in ("2026-06-30", "2026-07-01", "2026-09-30", "2026-10-01")] == [
        "2026-06",
        "2026-07",
        "2026-07",
        "2026-10",
    ]
    assert (quarters.following("2026-06"), quarters.following("2026-07")) == ("2026-07", "2026-10")
    assert quarters.refusal("2026-08", dt.date(2027, 1, 1)).code is periods.Code.BAD_PERIOD  # type: ignore[union-attr]
    assert quarters.refusal("2026-07", dt.date(2026, 9, 30)).code is periods.Code.PERIOD_NOT_OVER  # type: ignore[union-attr]
    assert quarters.refusal("2026-07", dt.date(2026, 10, 1)) is None
    closed = periods.Calendar("2026-07", (("2026-07", 3),))
    assert closed.place("2026-08-15") == ("2026-10", "2026-07")
    assert closed.length_refusal("2027-01", 5).code is periods.Code.BAD_LENGTH  # type: ignore[union-attr]


def test_a_chain_settles_by_quarter_from_a_month_with_no_entries_yet(store: HqStore) -> None:
    new_member(store, "X")
    till = Till(store, "S1")
    till.sale("X", 3, earn=10)  # June
    till.push()
    with pytest.raises(periods.PeriodError) as used:
        settlement.set_length(store.db, JUNE, 3, "Mio", "quarters")
    assert used.value.code is periods.Code.PERIOD_IN_USE
    settlement.set_length(store.db, JULY, 3, "Mio", "quarters from the third")
    with store.db.read() as tx:
        assert audit.recent(tx, 1)[0].action == "set_period_length"
    till.sale("X", 31, earn=20)  # July 2
    till.sale("X", 70, earn=40)  # August 10
    till.push()
    quarter = stmt(store, JULY, "M-A")
    assert (quarter.months, quarter.figures.issued) == (3, 60)
    assert csv_rows(settlement.to_csv(quarter))[("statement", "months")] == "3"
    with pytest.raises(settlement.SettlementError) as inside:
        stmt(store, "2026-08", "M-A")
    assert inside.value.code is settlement.Code.BAD_PERIOD
    close(store, JUNE)
    with pytest.raises(periods.PeriodError) as early:
        close(store, JULY, dt.date(2026, 9, 30))
    assert early.value.code is periods.Code.PERIOD_NOT_OVER
    close(store, JULY, dt.date(2026, 10, 1))
    assert settlement.calendar(store.db)["lengths"] == [{"from": JULY, "months": 3}]


def advisory_waiters(store: HqStore) -> int:
    """Transactions waiting for an advisory lock (PostgreSQL), seen from a connection of their own."""
    with store.db.read() as tx:
        row = tx.one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    return int(row[0]) if row else 0


def test_a_close_waits_for_a_push_in_flight_and_the_push_stays_in_its_period(store: HqStore) -> None:
    """A push holds the calendar while it posts (its advisory lock on PostgreSQL, the one writer on SQLite): a close
    asked meanwhile waits for it, so the push's June entry is in June's closed statement, never after it."""
    import threading

    done: list[periods.Closed] = []
    with store.db.write() as tx:
        assert periods.calendar(tx, periods.Lock.POSTING).place("2026-06-20") == (JUNE, None)
        closing = threading.Thread(target=lambda: done.append(close(store, JUNE)))
        closing.start()
        if store.db.dialect == "postgres":  # the close is seen waiting for the calendar's lock
            assert wait_until(lambda: advisory_waiters(store) > 0, timeout=30)
        else:  # SQLite: the close waits for the one writer, which this transaction is
            closing.join(timeout=1.0)
        waited = closing.is_alive()
        tx.run(
            "INSERT INTO ledger_txns (ledger_txn_id, kind, member_id, merchant_id, day, period, at) "
            "VALUES ('T-in-flight', 'sale', 'X', 'M-A', '2026-06-20', ?, '2026-06-20T10:00:00Z')",
            [JUNE],
        )
        tx.run(
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) VALUES "
            "('T-in-flight', 0, 'merchant_accepted', 'M-A', 'points', 5), "
            "('T-in-flight', 1, 'chain_points', '', 'points', -5)"
        )
    closing.join(timeout=30)
    assert waited and done and done[0].period == JUNE
    assert stmt(store, JUNE, "M-A").figures.accepted == 5


def test_a_damaged_close_record_is_a_clear_error_not_a_guess(store: HqStore) -> None:
    close(store, JUNE)
    with store.db.write() as tx:
        tx.run("UPDATE ledger_closes SET rates = '[{\"merchant_id\": 7' WHERE period = ?", [JUNE])
    with pytest.raises(settlement.SettlementError) as damaged:
        stmt(store, JUNE, "M-A")
    assert damaged.value.code is settlement.Code.CLOSE_DAMAGED


# -- when each merchant pays for its points, and the deferred revenue ------------------------------------------


def test_each_timing_charges_its_own_points() -> None:
    x = settlement.Slice(None, issued=300, clawed=20, breakage=25, consumed=100)
    assert settlement.charged_points(x, "issuance") == 280
    assert settlement.charged_points(x, "redemption") == 100  # its own lots used up, read from the lot uses
    assert settlement.charged_points(x, "reserve") == 255  # what expired is released back to it
    with pytest.raises(merchants.MerchantError) as bad:
        merchants.check("M-A", "Bakery", 100, 90, "weekly")
    assert bad.value.code == "bad_timing"


def test_a_merchant_at_redemption_pays_as_its_points_are_spent_and_one_at_reserve_gets_breakage_back(
    store: HqStore,
) -> None:
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90, timing="redemption")
        merchants.add(tx, "M-B", "Books", cost_per_100=120, reimburse_per_100=100, timing="reserve")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)  # the bakery issues 200: it pays nothing yet
    a.push()
    b.sale("X", 2, earn=50, redeem=100)  # 100 of them spent at the bookshop: the bakery pays for those
    b.push()
    bakery, books, chain = stmt(store, JUNE, "M-A"), stmt(store, JUNE, "M-B"), stmt(store, JUNE, "chain")
    assert (bakery.charged, bakery.charge, bakery.reimbursement) == (100, 100, 0)
    assert (books.charged, books.charge, books.reimbursement) == (50, 60, 100)
    rows = csv_rows(settlement.to_csv(bakery))
    assert rows[("statement", "timing")] == "redemption" and rows[("points", "charged")] == "100"
    assert ("statement", "timing") not in csv_rows(settlement.to_csv(chain))  # issuance prints as it always did
    with store.db.write() as tx:  # a year on: what is left of both merchants' lots expires
        ledger.expire(tx, ledger.end_of(dt.date(2027, 6, 10)))
    later_a, later_b = stmt(store, "2027-06", "M-A"), stmt(store, "2027-06", "M-B")
    assert (later_a.figures.breakage, later_a.charge) == (100, 0)  # at redemption, expiry costs it nothing
    assert (later_b.figures.breakage, later_b.charged, later_b.charge) == (50, -50, -60)  # released back


def test_a_closed_period_keeps_the_timing_it_closed_with(store: HqStore) -> None:
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90, timing="redemption")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)
    a.push()
    b.sale("X", 2, redeem=30)
    b.push()
    close(store, JUNE)
    closed = documents(store, JUNE, "M-A")
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90, timing="issuance")
    assert documents(store, JUNE, "M-A") == closed
    assert stmt(store, JUNE, "M-A").charge == 30 and stmt(store, JULY, "M-A").merchant.timing == "issuance"


def test_the_deferred_revenue_reads_the_ledger_and_the_gift_cards_as_they_stood(
    store: HqStore, http: httpx.Client
) -> None:
    from hq import giftcards

    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90, timing="redemption")
        merchants.add(tx, "M-B", "Books", cost_per_100=120, reimburse_per_100=100, timing="reserve")
    new_member(store, "X", stored_value=900)
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)
    a.push()
    b.sale("X", 2, earn=50, redeem=100, pay=300)
    b.push()
    a.sale("X", 40, earn=10)  # in July
    a.push()
    with store.db.write() as tx:
        giftcards.import_card(tx, "e" * 64, 4200, "Mio", "the earlier system", store.now())
    june = settlement.read_deferred(store.db, dt.date(2026, 6, 30)).as_dict()
    by = {m["merchant_id"]: m for m in june["merchants"]}
    assert (by["M-A"]["outstanding"], by["M-A"]["collected"]) == (100, 0)  # paid for as spent: nothing yet
    assert (by["M-B"]["outstanding"], by["M-B"]["collected"]) == (50, 60)
    # The 900 of stored value an administrator gave is posted on the day it was given (today), the 300 paid in
    # June on its day: the day's end reads what the ledger holds for the days up to it.
    assert june["points_outstanding"] == 150 and june["stored_value"] == -300
    assert june["gift_cards"] == 0  # imported after that day
    today = settlement.read_deferred(store.db, dt.datetime.now(dt.UTC).date()).as_dict()
    with store.db.read() as tx:
        held = tx.one("SELECT SUM(points), SUM(stored_value) FROM members")
    assert (today["points_outstanding"], today["stored_value"]) == (int(held[0]), int(held[1]))  # type: ignore[index]
    assert today["gift_cards"] == 4200 and today["money_held"] == 60 + 600 + 4200
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    got = http.get("/v1/admin/settlement/deferred", params={"as_of": "2026-06-30"}, headers=admin)
    assert got.status_code == 200 and got.json() == june
    assert http.get("/v1/admin/settlement/deferred").status_code == 401


def test_the_commands_set_a_timing_and_print_the_deferred_revenue(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    db = ["--db", str(tmp_path / "hq.db")]
    HqStore(str(tmp_path / "hq.db")).close()  # head office's database (a command would make it, and say so)
    run = CliRunner().invoke
    added = run(
        app, ["merchant", "add", "M-A", "--name", "Bakery", "--cost-per-100", "150", "--timing", "reserve", *db]
    )
    assert added.exit_code == 0 and json.loads(added.output)["timing"] == "reserve"
    renamed = run(app, ["merchant", "add", "M-A", "--name", "Bakery & Co", "--cost-per-100", "150", *db])
    assert json.loads(renamed.output)["timing"] == "reserve"  # a change of name keeps the timing
    rated = run(app, ["merchant", "add", "M-A", "--name", "Bakery", "--reimburse-per-100", "120", *db])
    assert json.loads(rated.output)["cost_per_100"] == 150  # a rate left out is the one it has
    switched = json.loads(
        run(app, ["merchant", "add", "M-A", "--name", "Bakery", "--timing", "redemption", *db]).output
    )
    assert (switched["timing"], switched["cost_per_100"], switched["reimburse_per_100"]) == ("redemption", 150, 120)
    assert run(app, ["merchant", "add", "M-A", "--name", "Bakery", "--timing", "reserve", *db]).exit_code == 0
    bad = run(app, ["merchant", "add", "M-A", "--name", "Bakery", "--timing", "weekly", *db])
    assert bad.exit_code == 1 and "bad_timing" in bad.output
    shown = run(app, ["settlement", "deferred", "--as-of", "2026-06-30", "--json", *db])
    assert shown.exit_code == 0
    held = json.loads(shown.output)
    assert held["as_of"] == "2026-06-30" and {m["merchant_id"]: m["timing"] for m in held["merchants"]} == {
        "M-A": "reserve",
        "chain": "issuance",
    }
    wrong = run(app, ["settlement", "deferred", "--as-of", "30/06/2026", *db])
    assert wrong.exit_code == 1 and "bad_day" in wrong.output


def test_at_redemption_an_overdraft_is_paid_by_the_merchant_whose_lot_repays_it(store: HqStore) -> None:
    """Points spent beyond the member's lots (offline) are no merchant's until a lot repays them: the
    bookshop that accepted them is not charged, the bakery whose later lot repaid them is."""
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=90, timing="redemption")
        merchants.add(tx, "M-B", "Books", cost_per_100=120, reimburse_per_100=100, timing="redemption")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    b.sale("X", 1, redeem=50)  # an offline overspend at the bookshop: no lot behind it
    b.push()
    a.sale("X", 2, earn=200)  # the bakery's lot repays the overdraft first
    a.push()
    bakery, books = stmt(store, JUNE, "M-A"), stmt(store, JUNE, "M-B")
    assert (books.figures.accepted, books.consumed, books.charge) == (50, 0, 0)
    assert (bakery.consumed, bakery.charge) == (50, 50)
    assert bakery.figures.outstanding_end == 150


# -- a merchant that changes its timing pays for each lot once, by the timing it was issued under -----------


def _timing(hq: HqStore, merchant_id: str, timing: str) -> None:
    with hq.db.write() as tx:
        held = merchants.get(tx, merchant_id)
        assert held is not None
        merchants.add(tx, merchant_id, held.name, held.cost_per_100, held.reimburse_per_100, timing)


def test_points_issued_at_issuance_are_not_paid_again_when_spent_after_a_switch_to_redemption(
    store: HqStore,
) -> None:
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)  # the bakery, at issuance, pays for these 200 in June
    a.push()
    _timing(store, "M-A", "redemption")  # mid-month
    b.sale("X", 2, redeem=60)
    b.push()
    a.sale("X", 3, earn=50)  # a lot at redemption: paid as it is spent
    a.push()
    b.sale("X", 4, redeem=100)  # oldest first: all from the lot paid at issuance
    b.push()
    june = stmt(store, JUNE, "M-A")
    assert june.charged_by_timing == {"issuance": 200, "redemption": 0}
    assert (june.charged, june.charge, june.consumed) == (200, 200, 160)  # the whole month at redemption: 160
    rows = csv_rows(settlement.to_csv(june))
    assert (rows[("statement", "timing")], rows[("points", "charged")]) == ("redemption", "200")
    deferred = settlement.read_deferred(store.db, dt.date(2026, 6, 30)).as_dict()
    held = next(m for m in deferred["merchants"] if m["merchant_id"] == "M-A")
    assert (held["outstanding"], held["collected"]) == (90, 40)  # paid for the 40 left of the issuance lot only
    close(store, JUNE)
    closed = documents(store, JUNE, "M-A")
    b.sale("X", 40, redeem=90)  # July: the 40 left of the lot paid at issuance, and the 50 of the lot at redemption
    b.push()
    july = stmt(store, JULY, "M-A")
    assert (july.charged_by_timing, july.charged) == ({"issuance": 0, "redemption": 50}, 50)  # not 90
    assert june.charged + july.charged == 250  # every point it issued, spent, paid for once
    _timing(store, "M-A", "issuance")
    assert documents(store, JUNE, "M-A") == closed
    assert stmt(store, JULY, "M-A").charged == 50  # the lot issued at redemption is still paid as spent


def test_points_issued_at_redemption_are_still_paid_for_when_spent_after_a_switch_to_issuance(
    store: HqStore,
) -> None:
    _timing(store, "M-A", "redemption")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)
    a.push()
    assert stmt(store, JUNE, "M-A").charged == 0
    _timing(store, "M-A", "issuance")
    b.sale("X", 40, redeem=100)  # July, at issuance now: these points were never paid for
    b.push()
    july = stmt(store, JULY, "M-A")
    assert (july.figures.issued, july.charged, july.charge) == (0, 100, 100)  # the month's timing alone: 0
    rows = csv_rows(settlement.to_csv(july))  # a merchant at issuance charged other than its issued: says so
    assert (rows[("statement", "timing")], rows[("points", "charged")]) == ("issuance", "100")


def test_breakage_is_released_only_for_lots_issued_at_reserve_and_a_mixed_month_says_what_each_timing_charged(
    store: HqStore,
) -> None:
    _timing(store, "M-B", "redemption")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)
    a.push()
    b.sale("X", 1, earn=80)  # the bookshop's lot, at redemption: never paid for
    b.push()
    _timing(store, "M-A", "reserve")
    _timing(store, "M-B", "reserve")  # a merchant moving to reserve just before its lots expire
    a.sale("X", 2, earn=50)
    a.push()
    june = stmt(store, JUNE, "M-A")
    assert june.charged_by_timing == {"issuance": 200, "reserve": 50} and june.mixed
    rows = csv_rows(settlement.to_csv(june))
    assert (rows[("points", "charged_at_issuance")], rows[("points", "charged_at_reserve")]) == ("200", "50")
    assert rows[("points", "charged")] == "250"
    with store.db.write() as tx:  # a year on, both lots expire
        ledger.expire(tx, ledger.end_of(dt.date(2027, 6, 10)))
    later = stmt(store, "2027-06", "M-A")
    assert (later.figures.breakage, later.charged) == (250, -50)  # the month's timing alone released 250
    books = stmt(store, "2027-06", "M-B")
    assert (books.figures.breakage, books.charged, books.charge) == (80, 0, 0)  # nothing back for unpaid points


def test_lots_issued_before_lots_kept_their_timing_settle_by_the_periods_timing(store: HqStore) -> None:
    _timing(store, "M-A", "redemption")
    new_member(store, "X")
    a, b = Till(store, "S1"), Till(store, "S2")
    a.sale("X", 1, earn=200)
    a.push()
    b.sale("X", 2, redeem=30)
    b.push()
    with store.db.write() as tx:  # as the migration leaves the lots issued before it
        tx.run("UPDATE ledger_lots SET timing = NULL")
    assert stmt(store, JUNE, "M-A").charged == 30
    _timing(store, "M-A", "issuance")
    assert stmt(store, JUNE, "M-A").charged == 200  # an open period: the merchant's timing now, as before
    close(store, JUNE)
    closed = documents(store, JUNE, "M-A")
    _timing(store, "M-A", "redemption")
    assert documents(store, JUNE, "M-A") == closed  # a closed one: the timing its close froze


switches = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 300)),
        st.tuples(st.just("spend"), st.integers(1, 300)),
        st.tuples(st.just("timing"), st.sampled_from(["issuance", "redemption"])),
        st.tuples(st.just("days"), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(switches)
@example([("earn", 100), ("days", 40), ("timing", "redemption"), ("spend", 100)])  # paid twice without lot timings
@example([("timing", "redemption"), ("earn", 100), ("days", 40), ("timing", "issuance"), ("spend", 60)])  # never
def test_whatever_the_timing_switches_every_point_spent_is_paid_for_once(
    store: HqStore, steps: list[tuple[str, Any]]
) -> None:
    """A merchant switching between issuance and redemption at random, mid-month and across months, each month
    closed when it is over (a close freezes the timing it had): once its member has spent every point, the
    merchant's charges over all periods are exactly the points it issued."""
    run = uuid.uuid4().hex[:8]
    merchant, store_id, member = f"M-{run}", f"S-{run}", f"X-{run}"
    with store.db.write() as tx:
        merchants.add(tx, merchant, "Bakery", cost_per_100=100, reimburse_per_100=90)
        merchants.assign_store(tx, store_id, merchant, "UTC")
    new_member(store, member)
    till, day, held, issued = Till(store, store_id), _first_open_day(store), 0, 0
    for step, n in steps:
        if step == "earn":
            till.sale(member, day, earn=n)
            held, issued = held + n, issued + n
        elif step == "spend" and held:
            till.sale(member, day, redeem=min(n, held))
            held -= min(n, held)
        elif step == "timing":
            till.push()
            _timing(store, merchant, str(n))
        elif step == "days":
            till.push()
            day += int(n)
            _close_before(store, made(day)[:7])
        till.push()
    if held:
        till.sale(member, day, redeem=held)
        till.push()
    with store.db.read() as tx:
        filed = [str(r[0]) for r in tx.all("SELECT DISTINCT period FROM ledger_txns WHERE merchant_id = ?", [merchant])]
    assert sum(stmt(store, p, merchant).charged for p in filed) == issued


def _first_open_day(hq: HqStore) -> int:
    """The first day (counted from 2026-06-01) of the first period not closed."""
    held = settlement.calendar(hq.db)["closed_through"]
    first = dt.date.fromisoformat(f"{periods.following(held) if held else JUNE}-01")
    return (first - dt.date(2026, 6, 1)).days


def _close_before(hq: HqStore, period: str) -> None:
    """Close every period before ``period``, in order, as a finance team closes each month once it is over."""
    while True:
        held = settlement.calendar(hq.db)["closed_through"]
        following = periods.following(held) if held else JUNE
        if following >= period:
            return
        settlement.close_period(hq.db, following, "Mio", "month end", now=at(dt.date(2200, 1, 1)))
