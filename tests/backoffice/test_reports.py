"""The report pages against a real head office on 127.0.0.1, on SQLite and PostgreSQL: sales pushed through
ingest at two stores over several days (members earning, redeeming, paying with stored value, using coupons;
anonymous sales; points expiring); each report's numbers, read from the page as Chromium has it, equal what SQL
written here independently finds in the database; each chart is drawn (a canvas of non-zero size) under the
Content-Security-Policy and nothing is asked of any host but 127.0.0.1; a store manager sees its own store's
figures only and is refused another store's, even by editing the address; bad periods are refused with their
code."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import campaigns, ledger, segments
from hq import reports as hq_reports
from hq.api.server import ServerHandle, start_in_thread
from hq.backoffice import reports as bo_reports
from hq.backoffice.staff import Staff
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.api.stack import chromium, chromium_missing, too_wide
from tests.backoffice.chain import PASSWORD, chain
from tests.backoffice.test_browser import DESKTOP, TABLET, open_page, sign_in
from tests.fixtures import entries

DAYS_BACK = 5
NOW = datetime.now(UTC).replace(microsecond=0)
"""The module's moment: the trade and the periods asked for are days of it (a run across midnight keeps them)."""
EARLIER = min(timedelta(minutes=5), NOW - NOW.replace(hour=0, minute=0, second=0))
"""How long before ``NOW`` each day's trade is made: never into the day before (a run just after midnight)."""
CAMPAIGN = {
    "name": "Come back <b>soon</b>",
    "segment": "everyone",
    "variants": [{"variant": "v100", "coupon": {"kind": "amount_off", "value": 100}}],
    "schedule": {"kind": "daily", "at": "00:00"},
    "timezone": "UTC",
    "control_share": 0.0,
}
EXPIRE_DAYS = 2
Figures = dict[str, dict[str, list[int]]]


def push(hq: HqStore, terminal: str, body: dict[str, Any], made: datetime, kind: str = "sale") -> str:
    """One entry of ``terminal`` made at ``made``, pushed as its till pushes it; returns its txn id."""
    seq = len(hq.entries(terminal)) + 1
    txn_id = f"{terminal}-{seq}"
    entry = WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=txn_id,
        kind=kind,
        payload=body,
        created_at=made.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )
    assert hq.ingest(terminal, [entry]).acked_seq == seq
    return txn_id


def trade(hq: HqStore) -> None:
    """Several days of trade at S1 (T1) and S2 (T2), then the expiry run: the lots of the oldest days expire."""
    # the chain trusts its POS and does not price sales again (the trust rules are tested in tests/security)
    hq.settings = dataclasses.replace(hq.settings, spend_needs_proof=False, recompute=False)
    hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "expire_days": EXPIRE_DAYS})
    hq.put_coupon({"coupon_id": "C-TEN", "limits": {"global": 1000}})
    hq.upsert_member("M-A", "Ann Value", "basic", 200, stored_value=5000)  # head office's own lot and float
    now = NOW
    for back in range(DAYS_BACK):
        made = now - timedelta(days=back) - EARLIER
        push(hq, "T1", entries.sale("M-S1", 1000 + 100 * back, store_id="S1", earned=10 + back), made)
        push(hq, "T2", entries.sale("M-S2", 2000, store_id="S2", earned=20, coupons=["C-TEN"]), made)
        if back % 2 == 0:
            push(hq, "T2", entries.sale(None, 500 + back, store_id="S2"), made)
        if back in (1, 3):  # the POS's word for the member's money is held until an administrator releases it
            body = entries.sale("M-A", 900, store_id="S1", earned=9, redeemed=5, stored_value=300)
            assert hq.release(push(hq, "T1", body, made), "admin", "the member paid at the desk") == "applied"
    with hq.db.write() as tx:
        assert ledger.expire(tx, datetime.now(UTC))  # the lots of the days more than EXPIRE_DAYS ago
        tx.many(
            "INSERT INTO consents (member_id, wording_version, channel, given_at) VALUES (?, 'v1', 'marketing', ?)",
            [(m, "2026-01-01T00:00:00Z") for m in ("M-S1", "M-S2", "M-A")],
        )
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**6}}, "test")
    campaigns.save(hq.db, "back", CAMPAIGN, "test")
    assert campaigns.run_one(hq.db, "back", now) is not None
    with hq.db.read() as tx:
        row = tx.one("SELECT coupon_id FROM campaign_members WHERE member_id = 'M-S1'")
    assert row is not None  # M-S1 brings its campaign coupon to the till (the POS vouches for her: trusted here)
    push(hq, "T1", entries.sale("M-S1", 1500, store_id="S1", earned=15, coupons=[str(row[0])], proof="pos"), now)
    # gift cards of an earlier system, one of them cleared: the gift cards' float is what the other holds
    hq.import_gift_card("ab" * 32, 4000, "Mio", "the earlier system's card 1")
    retired = hq.import_gift_card("cd" * 32, 2500, "Mio", "the earlier system's card 2")
    hq.clear_gift_card(retired.card_id, "Mio", "retired")


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff], ServerHandle]]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chain(hq_url) as (hq, made):
        trade(hq)
        server = start_in_thread(hq)
        try:
            yield hq, made, server
        finally:
            server.stop()


# -- what the database holds, by SQL of this test's own ---------------------------------------------------


def period() -> tuple[str, list[str]]:
    today = NOW.date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(DAYS_BACK + 1, -2, -1)]
    return f"from={days[0]}&to={days[-1]}", days


def table(days: list[str], cells: dict[tuple[str, str], int], stores: set[str]) -> dict[str, list[int]]:
    return {s: [cells.get((s, d), 0) for d in days] for s in sorted(stores)}


def expected(hq: HqStore, days: list[str]) -> dict[str, Figures]:
    """Every report's figures by store and day, from the journal, the sales, the statistics and the ledger."""
    store_of: dict[str, str] = {}
    counts: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[str, set[str]] = defaultdict(set)
    active: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(report_figure: str, store: str, day: str, n: int) -> None:
        counts[report_figure][(store, day)] += n
        seen[report_figure.split(".")[0]].add(store)

    with hq.db.read() as tx:
        for txn_id, store, day, total, member, earned, redeemed, paid in tx.all(
            "SELECT j.txn_id, t.store_id, j.day, j.total, j.member_id, s.points_earned, s.points_redeemed, "
            "s.stored_value FROM journal j JOIN terminals t ON t.terminal_id = j.terminal_id "
            "LEFT JOIN sales s ON s.txn_id = j.txn_id WHERE j.kind = 'sale' AND j.effect IN ('applied', 'none')"
        ):
            store_of[str(txn_id)] = str(store)
            add("sales.sales", store, day, 1)
            add("sales.amount", store, day, int(total))
            add("value.paid", store, day, int(paid or 0))
            add("value.topped_up", store, day, 0)
            add("coupons.redeemed", store, day, 0)  # a store that sold shows its coupons, none or some
            add("coupons.campaign", store, day, 0)
            if member is not None:
                active[(store, day)].add(str(member))
                add("points.issued", store, day, int(earned or 0))
                add("points.redeemed", store, day, int(redeemed or 0))
                add("points.expired", store, day, 0)
        for store, day, visits, spend in tx.all("SELECT store_id, day, visits, spend FROM member_days"):
            add("members.visits", store, day, int(visits))
            add("members.spend", store, day, int(spend))
        for lot_id, day, n in tx.all("SELECT lot_id, earned_day, points FROM ledger_lots"):
            if str(lot_id) not in store_of:  # head office's own lots: no till behind them
                add("points.issued", hq_reports.HEAD_OFFICE, day, int(n))
                add("points.redeemed", hq_reports.HEAD_OFFICE, day, 0)
                add("points.expired", hq_reports.HEAD_OFFICE, day, 0)
        for lot_id, day, n in tx.all(
            "SELECT u.lot_id, t.day, u.points FROM ledger_lot_uses u JOIN ledger_txns t "
            "ON t.ledger_txn_id = u.ledger_txn_id WHERE u.purpose = 'expire'"
        ):
            add("points.expired", store_of.get(str(lot_id), hq_reports.HEAD_OFFICE), day, int(n))
        for _coupon, store, day, campaign in tx.all(
            "SELECT u.coupon_id, t.store_id, j.day, (SELECT COUNT(*) FROM campaign_members m "
            "WHERE m.coupon_id = u.coupon_id) FROM coupon_uses u JOIN journal j ON j.txn_id = u.txn_id "
            "JOIN terminals t ON t.terminal_id = j.terminal_id WHERE u.released = 0"
        ):
            add("coupons.redeemed", store, day, 1)
            add("coupons.campaign", store, day, 1 if campaign else 0)
        balances = {}
        for figure, kind in (
            ("outstanding", "member_points"),
            ("float", "member_value"),
            ("gift_float", "gift_value"),
            ("voucher_float", "voucher_value"),
            ("vouchers_kept", "voucher_breakage"),
        ):
            balances[figure] = [
                int(
                    tx.one(
                        "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_postings p JOIN ledger_txns t "
                        "ON t.ledger_txn_id = p.ledger_txn_id WHERE p.kind = ? AND t.day <= ?",
                        [kind, day],
                    )[0]  # type: ignore[index]
                )
                for day in days
            ]
        held = tx.one("SELECT SUM(points), SUM(stored_value) FROM members")
        gift_held = tx.one("SELECT SUM(balance) FROM gift_cards")
        arms = {
            str(arm): {"targeted": int(n), "issued": int(issued), "redeemed": 0}
            for arm, n, issued in tx.all(
                "SELECT arm, COUNT(*), COUNT(coupon_id) FROM campaign_members WHERE campaign_id = 'back' GROUP BY arm"
            )
        }
        for (arm,) in tx.all(
            "SELECT m.arm FROM campaign_members m JOIN coupon_uses u ON u.coupon_id = m.coupon_id "
            "WHERE m.campaign_id = 'back' AND u.released = 0"
        ):
            arms[str(arm)]["redeemed"] += 1
    assert held is not None and balances["outstanding"][-1] == held[0] and balances["float"][-1] == held[1]
    assert gift_held is not None and balances["gift_float"][-1] == gift_held[0] == 4000
    for (store, day), who in active.items():
        add("members.active", store, day, len(who))
    found: dict[str, Figures] = defaultdict(dict)
    for key, cells in counts.items():
        report, figure = key.split(".")
        found[report][figure] = table(days, cells, seen[report])
    found["points"]["outstanding"] = {hq_reports.CHAIN: balances["outstanding"]}
    found["value"]["float"] = {hq_reports.CHAIN: balances["float"]}
    found["value"]["gift_float"] = {hq_reports.CHAIN: balances["gift_float"]}
    found["value"]["voucher_float"] = {hq_reports.CHAIN: balances["voucher_float"]}
    found["value"]["vouchers_kept"] = {hq_reports.CHAIN: balances["vouchers_kept"]}
    found["campaigns"] = arms  # type: ignore[assignment]
    return found


def same_stores(want: Figures) -> Figures:
    """``want`` with every figure over the same stores (a store with no figure of a kind shows zeros)."""
    days = len(next(iter(next(iter(want.values())).values())))
    stores = {s for by in want.values() for s in by}
    return {f: {s: by.get(s, [0] * days) for s in sorted(stores)} for f, by in want.items()}


# -- the pages in Chromium ---------------------------------------------------------------------------------

READ = "() => JSON.parse(document.getElementById('report-data').textContent)"
CHARTS = """() => [...document.querySelectorAll('.chart')].map((el) => {
  const c = el.querySelector('canvas');
  return {figure: el.dataset.figure || 'campaigns', drawn: el.dataset.drawn === '1',
          width: c ? c.getBoundingClientRect().width : 0, height: c ? c.getBoundingClientRect().height : 0};
})"""


def drawn(page: Any, figures: tuple[str, ...] | list[str]) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('.chart')].every((el) => el.dataset.drawn === '1')")
    charts = page.evaluate(CHARTS)
    assert sorted(c["figure"] for c in charts) == sorted(figures)
    assert all(c["drawn"] and c["width"] > 100 and c["height"] > 100 for c in charts), charts


def test_each_report_shows_what_the_database_holds_as_a_table_and_a_drawn_chart(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    query, days = period()
    want = expected(hq, days)
    assert sum(want["points"]["expired"]["S1"]) > 0 and sum(want["points"]["redeemed"]["S1"]) == 10
    assert sum(want["coupons"]["redeemed"]["S2"]) == DAYS_BACK and sum(want["value"]["paid"]["S1"]) == 600
    # today: a member's sale and an anonymous one, and the chain's own sale, made when the fixture ran (the day
    # after ``NOW`` when the run crossed midnight between the module's import and this test)
    with hq.db.read() as tx:
        made = tx.one("SELECT day FROM journal WHERE txn_id = 'T2-1-M-S2'")  # the chain's own sale at S2
    assert made is not None and made[0] in days[-2:]
    assert want["sales"]["sales"]["S2"][-2] == 2 + (made[0] == days[-2])
    assert sum(want["sales"]["sales"]["S2"][-2:]) == 3
    assert want["coupons"]["campaign"]["S1"][-2] == 1  # today: M-S1's campaign coupon
    with chromium() as browser:
        for viewport in (DESKTOP, TABLET):
            page, watch = open_page(browser, viewport)
            sign_in(page, server.url, "admin")
            for name in ("sales", "members", "points", "value", "coupons"):
                page.goto(f"{server.url}/backoffice/reports/{name}?{query}")
                page.wait_for_selector(f"#report[data-report={name}]")
                data = page.evaluate(READ)
                assert data["days"] == days
                assert data["figures"] == same_stores(want[name]), name
                drawn(page, list(data["figures"]))
                assert too_wide(page, viewport["width"]) == [], (name, viewport)
                if name == "value":  # the table shows the same figures, money in major units
                    assert page.locator("#figure-paid tfoot td[data-store=S1]").inner_text() == "6.00"
                if name == "value" and viewport is DESKTOP:  # and its download has them, money in minor units
                    with page.expect_download() as got:
                        page.click("#download")
                    assert from_csv(Path(got.value.path()).read_text(encoding="utf-8"), days) == data["figures"]
            page.goto(f"{server.url}/backoffice/reports/campaigns?{query}")
            (held,) = page.evaluate(READ)["campaigns"]
            found = {a["arm"]: {k: a[k] for k in ("targeted", "issued", "redeemed")} for a in held["arms"]}
            assert found == want["campaigns"] and found["v100"]["redeemed"] == 1
            assert page.locator("#campaign-results tbody tr").count() == 1
            assert "Come back <b>soon</b>" in page.inner_text("#campaign-results")  # shown as text, never markup
            drawn(page, ["campaigns"])
            watch.clean()
            page.context.close()


def test_a_store_manager_sees_its_own_stores_figures_only_whatever_the_address_says(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    query, days = period()
    want = expected(hq, days)
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, server.url, "manager")
        page.click('header nav a[href="/backoffice/reports/sales"]')
        page.wait_for_selector("#report[data-report=sales]")
        for name in ("sales", "members", "points", "value", "coupons"):
            page.goto(f"{server.url}/backoffice/reports/{name}?{query}")
            data = page.evaluate(READ)
            assert data["stores"] == ["S1"], (name, data["stores"])
            for figure, by in data["figures"].items():
                assert by == {"S1": want[name][figure].get("S1", [0] * len(days))}, (name, figure)
            assert not {"outstanding", "float", "gift_float", "voucher_float", "vouchers_kept"} & set(data["figures"])
            drawn(page, list(data["figures"]))
            for edited in ("store=S2", "store=S1&store=S2", "store=S3"):
                reply = page.goto(f"{server.url}/backoffice/reports/{name}?{query}&{edited}")
                assert reply is not None and reply.status == 403, (name, edited)
                assert page.get_attribute("#error", "data-code") == "forbidden"
                assert page.locator("#report-data").count() == 0
            page.goto(f"{server.url}/backoffice/reports/{name}?{query}&store=S1")
            assert page.evaluate(READ)["stores"] == ["S1"]
        reply = page.goto(f"{server.url}/backoffice/reports/campaigns")
        assert reply is not None and reply.status == 403
        assert page.locator("header nav a[href='/backoffice/reports/campaigns']").count() == 0
        watch.clean()
        page.context.close()


# -- over HTTP: periods, stores, roles ---------------------------------------------------------------------


def from_csv(text: str, days: list[str]) -> Figures:
    """A report's CSV read back as the page's figures (figure -> store -> a value a day of ``days``)."""
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(bo_reports.CSV_COLUMNS)
    found: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for day, store_id, figure, value, unit in rows[1:]:
        assert unit == ("minor_units" if figure in bo_reports.MONEY else "number")
        found[figure][store_id][day] = int(value)
    return {f: {s: [by[d] for d in days] for s, by in stores.items()} for f, stores in found.items()}


def test_each_report_downloads_as_csv_the_figures_its_page_shows_to_that_reader(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    query, days = period()
    want = expected(hq, days)
    admin = signed_in(server.url, "admin")
    for name in ("sales", "members", "points", "value", "coupons"):
        reply = admin.get(f"/backoffice/reports/{name}.csv?{query}")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv"), name
        assert reply.headers["content-disposition"] == f'attachment; filename="{name}-{days[0]}-{days[-1]}.csv"'
        assert from_csv(reply.text, days) == same_stores(want[name]), name
    manager = signed_in(server.url, "manager")
    mine = from_csv(manager.get(f"/backoffice/reports/sales.csv?{query}").text, days)
    assert mine and all(set(by) == {"S1"} for by in mine.values())
    assert manager.get(f"/backoffice/reports/sales.csv?{query}&store=S2").status_code == 403
    assert admin.get(f"/backoffice/reports/campaigns.csv?{query}").status_code == 404
    assert admin.get("/backoffice/reports/sales.csv?from=2026-13-01").status_code == 422
    assert httpx.get(f"{server.url}/backoffice/reports/sales.csv", trust_env=False).status_code == 303


def test_a_reports_csv_cell_is_never_a_formula_and_money_says_its_unit() -> None:
    g = hq_reports.Grid(("amount", "sales"), ("2026-03-01",), ("=HYPERLINK(1)", "S1"))
    g.values.update({"amount": {"=HYPERLINK(1)": [5], "S1": [7]}, "sales": {"=HYPERLINK(1)": [1], "S1": [2]}})
    assert bo_reports.csv_of(g).splitlines() == [
        "day,store_id,figure,value,unit",
        "2026-03-01,'=HYPERLINK(1),amount,5,minor_units",
        "2026-03-01,S1,amount,7,minor_units",
        "2026-03-01,'=HYPERLINK(1),sales,1,number",
        "2026-03-01,S1,sales,2,number",
    ]


def signed_in(url: str, staff_id: str) -> httpx.Client:
    client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=30, trust_env=False)
    reply = client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": PASSWORD})
    assert reply.status_code == 303
    return client


@pytest.fixture
def plain(hq_url: str) -> Iterator[ServerHandle]:
    with chain(hq_url) as (hq, _):
        server = start_in_thread(hq)
        try:
            yield server
        finally:
            server.stop()


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-13-01",
        "from=yesterday",
        "to=2026-02-30",
        "from=2026-03-02&to=2026-03-01",
        "from=2025-01-01&to=2026-01-02",
        "from=%3Cscript%3E",
        "from=20260301",
        "to=0001-01-01",  # the default two weeks before it are before the calendar's first day
    ],
)
def test_a_bad_period_is_refused_with_its_code_and_shows_no_figures(plain: ServerHandle, query: str) -> None:
    client = signed_in(plain.url, "finance")
    reply = client.get(f"/backoffice/reports/sales?{query}")
    assert reply.status_code == 422 and 'data-code="bad_period"' in reply.text
    assert "report-data" not in reply.text and "<script>" not in reply.text
    assert client.get(f"/backoffice/reports/sales.csv?{query}").status_code == 422


def test_each_role_reads_the_reports_its_table_allows(plain: ServerHandle) -> None:
    for staff_id, sales, results in (
        ("admin", 200, 200),
        ("market", 200, 200),
        ("manager", 200, 403),
        ("finance", 200, 403),
        ("auditor", 200, 200),
    ):
        client = signed_in(plain.url, staff_id)
        assert client.get("/backoffice/reports/sales").status_code == sales, staff_id
        assert client.get("/backoffice/reports/campaigns").status_code == results, staff_id
        assert client.get("/backoffice/reports/nothing").status_code == 404
    anonymous = httpx.Client(base_url=plain.url, trust_env=False)
    assert anonymous.get("/backoffice/reports/sales").status_code == 303  # sign in first


def test_a_year_at_most_and_the_default_period_is_the_last_two_weeks(plain: ServerHandle) -> None:
    client = signed_in(plain.url, "auditor")
    today = datetime.now(UTC).date()
    reply = client.get("/backoffice/reports/members")
    assert reply.status_code == 200
    assert f'data-from="{today - timedelta(days=13)}" data-to="{today}"' in reply.text
    first = date(2024, 1, 1)
    last = first + timedelta(days=hq_reports.MAX_DAYS - 1)
    assert client.get(f"/backoffice/reports/sales?from={first}&to={last}").status_code == 200
    assert client.get(f"/backoffice/reports/sales?from={first}&to={last + timedelta(days=1)}").status_code == 422
    assert (
        client.get("/backoffice/reports/sales.csv?from=0001-01-01&to=0001-01-02").status_code == 200
    )  # the first days


# -- the pure parts ----------------------------------------------------------------------------------------


def test_a_grid_puts_each_row_in_its_day_and_store_and_a_balance_sums_the_days_up_to_each() -> None:
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    rows = [("2026-03-01", "S1", 2, 10), ("2026-03-03", "S2", 1, None), ("2026-02-28", "S1", 9, 9)]
    g = hq_reports.grid(("n", "amount"), days, rows)
    assert g.stores == ("S1", "S2")
    assert g.values == {"n": {"S1": [2, 0, 0], "S2": [0, 0, 1]}, "amount": {"S1": [10, 0, 0], "S2": [0, 0, 0]}}
    moves = {"2026-02-27": 80, "2026-03-02": 5, "2026-03-01": 8, "2026-03-04": 7}  # the 4th is after the last day
    assert hq_reports.cumulative(moves, days) == [88, 93, 93]
    assert hq_reports.cumulative({}, days) == [0, 0, 0]
    assert hq_reports.Filter(date(2026, 2, 27), date(2026, 3, 1)).days() == ["2026-02-27", "2026-02-28", "2026-03-01"]


def test_markup_in_a_store_asked_for_comes_back_as_text_only(plain: ServerHandle) -> None:
    client = signed_in(plain.url, "admin")
    reply = client.get("/backoffice/reports/sales", params={"store": ['"><script>alert(1)</script>', "S1"]})
    assert reply.status_code == 200
    assert "<script>alert" not in reply.text and "%3Cscript%3Ealert" in reply.text  # in the tabs' links, encoded
    manager = signed_in(plain.url, "manager")
    refused = manager.get("/backoffice/reports/sales", params={"store": "<img src=x onerror=alert(1)>"})
    assert refused.status_code == 403 and "<img src=x" not in refused.text
