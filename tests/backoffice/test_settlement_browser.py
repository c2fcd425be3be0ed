"""Settlement in the back office (docs/settlement.md), in Debian's Chromium against a real head office on
127.0.0.1, on SQLite and PostgreSQL: two merchants (North holds S1, South S2) trade through ingest (North's
members earn at S1 and spend at South's S2). The chain's finance reads the period's statements, each row the
figures the settlement commands compute, the chain's totals, and downloads a statement as CSV and PDF, the
same bytes the command writes; a closed period says so and lists its close; in Japanese at a tablet's width.
North's finance reads North's statement only, never the totals, and South's download is refused; roles without
settlement neither see the page nor reach it; a bad period and an unknown merchant are refused with their codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hq import periods, settlement
from hq.api.server import ServerHandle, start_in_thread
from hq.backoffice.staff import Staff
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.api.stack import chromium, chromium_missing
from tests.backoffice.chain import chain, with_merchants
from tests.backoffice.test_browser import DESKTOP, TABLET, open_page, sign_in, well_formed
from tests.backoffice.test_web import code_of, signed_in
from tests.fixtures import entries


def push(hq: HqStore, terminal: str, body: dict[str, Any]) -> None:
    seq = len(hq.entries(terminal)) + 1
    made = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    entry = WireEntry(
        terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind="sale", payload=body, created_at=made
    )
    assert hq.ingest(terminal, [entry]).acked_seq == seq


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff], ServerHandle]]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chain(hq_url) as (hq, made):
        made |= with_merchants(hq)
        hq.settings = dataclasses.replace(hq.settings, spend_needs_proof=False, recompute=False)
        push(hq, "T1", entries.sale("M-S1", 2000, store_id="S1", earned=200))  # North issues
        push(hq, "T2", entries.sale("M-S1", 1000, store_id="S2", redeemed=50))  # South accepts North's points
        push(hq, "T2", entries.sale("M-S2", 3000, store_id="S2", earned=30))
        server = start_in_thread(hq)
        try:
            yield hq, made, server
        finally:
            server.stop()


def this_period() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def row(page: Any, merchant_id: str) -> dict[str, str]:
    found = page.locator(f"#statements tr[data-merchant='{merchant_id}']")
    cells = ("issued", "accepted", "breakage", "charge", "reimbursement", "value-accepted", "cash-taken")
    out = {c: found.locator(f"td.{c}").inner_text() for c in cells}
    out["net"] = found.get_attribute("data-net") or ""
    return out


def shown(stmt: settlement.Statement) -> dict[str, str]:
    """What a statement's row shows (points with thousands separators, money as the page formats it)."""
    from hq.web import money

    f = stmt.figures
    return {
        "issued": f"{f.issued:,}",
        "accepted": f"{f.accepted:,}",
        "breakage": f"{f.breakage:,}",
        "charge": money(stmt.charge),
        "reimbursement": money(stmt.reimbursement),
        "value-accepted": money(f.value_accepted),
        "cash-taken": money(f.cash_taken),
        "net": str(stmt.net),
    }


def test_finance_reads_every_statement_and_downloads_the_commands_bytes_and_a_closed_period_says_so(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    period = this_period()
    found = {s.merchant.merchant_id: s for s in settlement.read_statements(hq.db, period)}
    assert (found["north"].figures.issued, found["south"].figures.accepted) == (200, 50)  # the trade above
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.click('header nav a[href="/backoffice/settlement"]')
        page.wait_for_selector("body[data-page=settlement]")
        assert page.get_attribute("#settlement", "data-period") == period
        assert page.get_attribute("#settlement", "data-state") == "open"
        assert sorted(page.locator("#statements tbody tr").evaluate_all("rs => rs.map(r => r.dataset.merchant)")) == (
            sorted(found)
        )
        for merchant_id, stmt in found.items():
            assert row(page, merchant_id) == shown(stmt), merchant_id
        totals = settlement.totals(found.values())
        assert page.get_attribute("#totals td.net", "data-amount") == str(totals["net"])
        well_formed(page, DESKTOP["width"])
        for fmt, make in (("csv", settlement.to_csv), ("pdf", settlement.to_pdf)):
            with page.expect_download() as got:
                page.click(f"#statements tr[data-merchant=south] a.{fmt}")
            assert got.value.suggested_filename == f"statement-{period}-south.{fmt}"
            assert Path(got.value.path()).read_bytes() == make(found["south"])  # the command's bytes
        # an earlier month, closed: final, and its close listed
        earlier = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        with hq.db.write() as tx:
            periods.close(tx, earlier, "Fin Ance", "month end", "UTC", datetime.now(UTC))
        page.goto(f"{server.url}/backoffice/settlement?period={earlier}")
        assert page.get_attribute("#settlement", "data-state") == "closed"
        assert "month end" in page.inner_text("#closes")
        watch.clean()
        page.context.close()
        page, watch = open_page(browser, TABLET, "ja-JP")
        sign_in(page, server.url, "auditor")
        page.goto(f"{server.url}/backoffice/settlement?lang=ja")
        assert "精算" in page.inner_text("h1") and page.locator("#statements tbody tr").count() == len(found)
        well_formed(page, TABLET["width"])
        watch.clean()
        page.context.close()


def test_a_merchants_finance_reads_its_own_statement_only_and_other_roles_none(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    _, _, server = office
    period = this_period()
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "north-finance")
        page.click('header nav a[href="/backoffice/settlement"]')
        page.wait_for_selector("body[data-page=settlement]")
        assert page.locator("#statements tbody tr").evaluate_all("rs => rs.map(r => r.dataset.merchant)") == ["north"]
        assert page.locator("#totals").count() == 0 and page.locator("#closes").count() == 0
        reply = page.goto(f"{server.url}/backoffice/settlement/{period}/south/statement.csv")
        assert reply is not None and reply.status == 403
        watch.clean()
        page.context.close()
    client, _ = signed_in(server.url, "north-finance")
    assert client.get(f"/backoffice/settlement/{period}/north/statement.csv").status_code == 200
    assert code_of(client.get(f"/backoffice/settlement/{period}/chain/statement.pdf")) == "forbidden"
    for staff_id in ("manager", "market"):
        other, _ = signed_in(server.url, staff_id)
        assert 'href="/backoffice/settlement"' not in other.get("/backoffice/").text
        assert other.get("/backoffice/settlement").status_code == 403
        assert other.get(f"/backoffice/settlement/{period}/north/statement.csv").status_code == 403
    finance, _ = signed_in(server.url, "finance")
    for asked, code in (("period=2026-13", "bad_period"), ("period=%3Cb%3E", "bad_period")):
        reply = finance.get(f"/backoffice/settlement?{asked}")
        assert reply.status_code == 422 and code_of(reply) == code, asked
    assert code_of(finance.get(f"/backoffice/settlement/{period}/nobody/statement.csv")) == "unknown_merchant"
    assert finance.get(f"/backoffice/settlement/{period}/north/statement.xls").status_code == 404
