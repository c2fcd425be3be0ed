"""A voucher sold at one merchant's store and redeemed at another's (docs/stored-value.md, "Vouchers";
docs/settlement.md): the selling merchant's till took the cash, the redeeming merchant handed the goods over.
Each merchant's settlement statement carries it: the seller's ``cash_taken``, the redeemer's
``value_accepted``, so the chain collects the cash from the one and pays the other. A voucher the ledger never
saw sold (before it booked vouchers) moves nothing when used; a refund gives the seller's cash back; a second
redemption (two offline tills) is owed to its merchant too, the voucher's account below zero (the chain's loss)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from hq import ledger, merchants, reports, rollup, settlement
from hq.db.schema import migrate
from hq.ingest import Settings
from hq.payments import signing_key
from hq.store import HqStore
from hq.vouchers import IssueSpec
from terminal import vouchers as vc
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
from tests.security.test_redteam_vouchers import NOW, STAMP, Till

PERIOD = NOW.strftime("%Y-%m")


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url, Settings(), clock=lambda: STAMP)
    for terminal, shop in (("T1", "S1"), ("T2", "S2"), ("T3", "S3")):
        store.add_terminal(terminal, shop, terminal.lower())
    with store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
        merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S1", "M-A", "UTC")
        merchants.assign_store(tx, "S2", "M-B", "UTC")
        merchants.assign_store(tx, "S3", "M-B", "UTC")
    yield store
    with store.db.read() as tx:
        assert ledger.check(tx) == []
    store.close()


def codes(hq: HqStore, count: int) -> list[str]:
    spec = IssueSpec(count, 2500, int((NOW + timedelta(days=30)).timestamp()))
    hq.issue_vouchers("T1", spec, signing_key(hq, vc.PURPOSE), "Mio")
    return hq.voucher_stock("T1").codes


def money(hq: HqStore) -> dict[str, tuple[int, int]]:
    with hq.db.read() as tx:
        found = settlement.statements(tx, PERIOD)
    return {
        s.merchant.merchant_id: (s.figures.value_accepted, s.figures.cash_taken)
        for s in found
        if s.merchant.merchant_id != "chain"
    }


def test_a_voucher_sold_by_one_merchant_and_redeemed_at_another_settles_between_them(hq: HqStore) -> None:
    first, second, third = codes(hq, 3)
    bakery, books, other = Till(hq, "T1", "S1"), Till(hq, "T2", "S2"), Till(hq, "T3", "S3")
    for n, code in enumerate((first, second, third)):
        bakery.push("voucher_sale", code, f"SOLD-{n}", amount=2500)
    assert money(hq) == {"M-A": (0, 7500), "M-B": (0, 0)}  # the bakery's till took 75.00
    books.push("voucher_redeem", first, "USE-1", sale_ref="R-1")  # 25.00 of books handed over
    assert money(hq) == {"M-A": (0, 7500), "M-B": (2500, 0)}  # the chain owes the bookshop 25.00
    bakery.push("voucher_refund", second, "BACK-1", amount=2500)  # the bakery paid 25.00 back before use
    assert money(hq) == {"M-A": (0, 5000), "M-B": (2500, 0)}
    books.push("voucher_redeem", third, "USE-2", sale_ref="R-2")
    other.push("voucher_redeem", third, "USE-3", sale_ref="R-3")  # a second offline till: flagged, owed too
    assert money(hq) == {"M-A": (0, 5000), "M-B": (7500, 0)}
    with hq.db.read() as tx:
        assert ledger.balances_of(tx, vc.parse(third).voucher_id) == {ledger.Kind.VOUCHER_VALUE: -2500}
    books.seq = 0
    books.push("voucher_redeem", first, "USE-1", sale_ref="R-1")  # a replayed push books nothing twice
    assert money(hq) == {"M-A": (0, 5000), "M-B": (7500, 0)}


def test_a_voucher_sold_before_the_ledger_booked_vouchers_moves_nothing_when_used(hq: HqStore) -> None:
    [code] = codes(hq, 1)
    Till(hq, "T1", "S1").push("voucher_sale", code, "SOLD-OLD", amount=2500)
    with hq.db.write() as tx:  # as a head office before vouchers were booked left it
        tx.run("DELETE FROM ledger_postings WHERE ledger_txn_id = 'SOLD-OLD'")
        tx.run("DELETE FROM ledger_txns WHERE ledger_txn_id = 'SOLD-OLD'")
    Till(hq, "T2", "S2").push("voucher_redeem", code, "USE-OLD", sale_ref="R-9")
    assert money(hq) == {"M-A": (0, 0), "M-B": (0, 0)}


def test_the_voucher_account_is_its_value_outstanding(hq: HqStore) -> None:
    first, second = codes(hq, 2)
    bakery = Till(hq, "T1", "S1")
    bakery.push("voucher_sale", first, "SOLD-A", amount=2500)
    bakery.push("voucher_sale", second, "SOLD-B", amount=2500)
    Till(hq, "T2", "S2").push("voucher_redeem", first, "USE-A", sale_ref="R-1")
    with hq.db.read() as tx:
        books = ledger.read_books(tx).accounts
    held = {o: n for (k, o), n in books.items() if k is ledger.Kind.VOUCHER_VALUE and n}
    assert held == {vc.parse(second).voucher_id: 2500}


def test_a_voucher_redeemed_after_its_expiry_is_quarantined_and_nobody_is_owed_it(hq_url: str) -> None:  # noqa: F811
    """A till refuses an expired voucher; a stolen credential pushes a redemption of one anyway, a day after its
    expiry by head office's clock. It is quarantined ``voucher_redeemed_expired``: the voucher is not used, and
    the redeeming merchant is owed nothing (the value stays the voucher's, the chain's liability until it is
    cleared). A redemption within the till's allowed clock skew of the expiry is taken."""
    now = [STAMP]
    hq = HqStore(hq_url, Settings(), clock=lambda: now[0])
    try:
        hq.add_terminal("T1", "S1", "t1")
        hq.add_terminal("T2", "S2", "t2")
        with hq.db.write() as tx:
            merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
            merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
            merchants.assign_store(tx, "S1", "M-A", "UTC")
            merchants.assign_store(tx, "S2", "M-B", "UTC")
        expiry = NOW + timedelta(days=30)
        hq.issue_vouchers("T1", IssueSpec(2, 2500, int(expiry.timestamp())), signing_key(hq, vc.PURPOSE), "Mio")
        late, just = hq.voucher_stock("T1").codes
        bakery, books = Till(hq, "T1", "S1"), Till(hq, "T2", "S2")
        bakery.push("voucher_sale", late, "SOLD-1", amount=2500)
        bakery.push("voucher_sale", just, "SOLD-2", amount=2500)
        after = (expiry + timedelta(days=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        now[0] = after
        books.push("voucher_redeem", late, "USE-LATE", at=after, sale_ref="R-1")
        with hq.db.read() as tx:
            [(effect,)] = tx.all("SELECT effect FROM journal WHERE txn_id = 'USE-LATE'")
            reasons = [str(r[0]) for r in tx.all("SELECT reason FROM recon_items WHERE txn_id = 'USE-LATE'")]
            assert tx.all("SELECT 1 FROM voucher_uses WHERE txn_id = 'USE-LATE'") == []
            assert ledger.balances_of(tx, vc.parse(late).voucher_id) == {ledger.Kind.VOUCHER_VALUE: 2500}
            assert ledger.check(tx) == []
        assert effect == "quarantined" and reasons == ["voucher_redeemed_expired"], (effect, reasons)
        within = (expiry + timedelta(seconds=60)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        now[0] = within
        books.push("voucher_redeem", just, "USE-JUST", at=within, sale_ref="R-2")  # a till a minute slow
        with hq.db.read() as tx:
            assert tx.all("SELECT txn_id FROM voucher_uses WHERE txn_id = 'USE-JUST'") == [("USE-JUST",)]
            assert ledger.balances_of(tx, "M-B").get(ledger.Kind.VALUE_ACCEPTED) == 2500  # owed the one in time
            assert ledger.check(tx) == []
    finally:
        hq.close()


def test_the_deferred_revenue_holds_the_vouchers_sold_and_not_used(hq: HqStore) -> None:
    """The cash a till took for a voucher is money the chain holds for value not used yet, as for stored value and
    gift cards: in the deferred revenue until the voucher is redeemed or refunded. A voucher redeemed twice offline
    (its account below zero, the chain's loss) is not money held."""
    used, refunded, kept, twice = codes(hq, 4)
    bakery, books, other = Till(hq, "T1", "S1"), Till(hq, "T2", "S2"), Till(hq, "T3", "S3")
    for n, code in enumerate((used, refunded, kept, twice)):
        bakery.push("voucher_sale", code, f"SOLD-{n}", amount=2500)
    books.push("voucher_redeem", used, "USE-1", sale_ref="R-1")
    bakery.push("voucher_refund", refunded, "BACK-1", amount=2500)
    books.push("voucher_redeem", twice, "USE-2", sale_ref="R-2")
    other.push("voucher_redeem", twice, "USE-3", sale_ref="R-3")
    held = settlement.read_deferred(hq.db, NOW.date()).as_dict()
    assert held["vouchers"] == 2500  # the one kept, whole
    assert held["money_held"] == sum(m["collected"] for m in held["merchants"]) + held["stored_value"] + 2500
    assert settlement.read_deferred(hq.db, NOW.date() - timedelta(days=1)).as_dict()["vouchers"] == 0


def test_the_json_statement_keeps_money_out_of_the_points(hq: HqStore, hq_url: str) -> None:  # noqa: F811
    """The statement as JSON (the command's default, the admin API's) has the same sections as its CSV: the cash
    its tills took and the value its stores accepted are minor units, in ``money`` beside what they make ``net``,
    never among the points."""
    from typer.testing import CliRunner

    from hq.cli import app

    sold, _ = codes(hq, 2)
    Till(hq, "T1", "S1").push("voucher_sale", sold, "SOLD-1", amount=2500)
    Till(hq, "T2", "S2").push("voucher_redeem", sold, "USE-1", sale_ref="R-1")
    run = CliRunner().invoke
    read = {}
    for merchant in ("M-A", "M-B"):
        shown = run(app, ["settlement", "statement", PERIOD, merchant, "--db", hq_url])
        assert shown.exit_code == 0, shown.output
        read[merchant] = json.loads(shown.output)
    for statement in read.values():
        assert not {"value_accepted", "cash_taken"} & set(statement["points"])
    assert (read["M-A"]["money"]["cash_taken"], read["M-B"]["money"]["value_accepted"]) == (2500, 2500)
    assert (read["M-A"]["money"]["net"], read["M-B"]["money"]["net"]) == (-2500, 2500)
    csv_text = run(app, ["settlement", "statement", PERIOD, "M-A", "--format", "csv", "--db", hq_url]).output
    cells = {(r[0], r[1]) for r in csv.reader(io.StringIO(csv_text))}
    for section in ("points", "money"):  # each figure in the same section of both documents
        assert {k for s, k in cells if s == section} == set(read["M-A"][section])


def test_the_value_report_shows_what_vouchers_sold_and_not_used_hold(hq: HqStore) -> None:
    """The back office's value report has the vouchers' float beside the members' and the gift cards' (the report
    roll-up's ``voucher_value``): what vouchers sold and not yet redeemed or refunded hold at each day's end. A head
    office upgraded with vouchers booked already gets it from the migration."""
    first, second, third = codes(hq, 3)
    bakery = Till(hq, "T1", "S1")
    for n, code in enumerate((first, second, third)):
        bakery.push("voucher_sale", code, f"SOLD-{n}", amount=2500)
    Till(hq, "T2", "S2").push("voucher_redeem", first, "USE-1", sale_ref="R-1")
    bakery.push("voucher_refund", second, "BACK-1", amount=2500)
    wanted = reports.Filter(NOW.date() - timedelta(days=1), NOW.date())

    def voucher_float() -> list[int]:
        with hq.db.read() as tx:
            assert rollup.check(tx) == []
            return reports.value(tx, wanted).values["voucher_float"][reports.CHAIN]

    assert voucher_float() == [0, 2500]
    assert settlement.read_deferred(hq.db, NOW.date()).as_dict()["vouchers"] == 2500  # the same money held
    with hq.db.write() as tx:  # as the release before the vouchers' float left it
        tx.run("DELETE FROM report_days WHERE figure = 'voucher_value'")
        tx.run("DELETE FROM hq_migrations WHERE name = 'm047_voucher_float'")
    assert migrate(hq.db) == ["m047_voucher_float"]
    assert voucher_float() == [0, 2500]
