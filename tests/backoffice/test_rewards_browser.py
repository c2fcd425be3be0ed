"""The rewards catalogue and the vouchers in the back office, in Debian's Chromium against a real head-office
server on 127.0.0.1, on SQLite and PostgreSQL: marketing reads every reward with its stock left and the vouchers
by state and kind, each number what the test's own SQL finds, the value sold and not used among them; finds a
voucher by its id and reads its use; a reward's name made of markup never runs, nor a query of markup; a
browser without a session is sent to sign in; the page is well formed at 1280 x 800 and a tablet's width, in English and Chinese."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.payments import signing_key
from hq.store import HqStore
from hq.vouchers import IssueSpec
from sync.protocol import VoucherConfirmRequest, WireEntry
from terminal import vouchers as vc
from tests.api.stack import chromium, chromium_missing
from tests.backoffice.chain import chain
from tests.backoffice.test_browser import DESKTOP, MADE_OF_MARKUP, MARKUP, TABLET, open_page, sign_in, well_formed
from tests.backoffice.test_web import signed_in
from tests.fixtures import entries

LATTE = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": MARKUP[1], "stock": 3}
TENOFF = {
    "reward_id": "TENOFF",
    "reward": "coupon",
    "points": 200,
    "title": "10% off",
    "coupon": {"kind": "percent_off", "value": 10, "text": "10% off"},
}
READ = """() => ({
  rewards: [...document.querySelectorAll('#catalogue tbody tr')].map(r => [r.dataset.reward,
    ...[...r.querySelectorAll('td[data-n]')].map(c => c.dataset.n)]),
  vouchers: [...document.querySelectorAll('#vouchers tbody tr')].map(r => [r.dataset.state, r.dataset.kind,
    ...[...r.querySelectorAll('td[data-n]')].map(c => Number(c.dataset.n))]),
  outstanding: Number(document.querySelector('#outstanding').dataset.n),
})"""


def sell(hq: HqStore, code: str) -> None:
    """T1 sells the voucher, as its journal entry says."""
    seq = len(hq.entries("T1")) + 1
    payload = entries.voucher_sale(code, local_time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    entry = WireEntry(terminal_id="T1", seq=seq, txn_id=f"T1-{seq}-v", kind="voucher_sale", payload=payload,
                      created_at=made)  # fmt: skip
    assert hq.ingest("T1", [entry]).acked_seq == seq


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, ServerHandle, list[str]]]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chain(hq_url) as (hq, _):
        hq.put_reward(LATTE, "Mio")
        hq.put_reward(TENOFF, "Mio")
        expires = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
        hq.issue_vouchers("T1", IssueSpec(4, 2500, expires), signing_key(hq, vc.PURPOSE), "Mio")
        codes = hq.voucher_stock("T1").codes
        for code in codes[:3]:
            sell(hq, code)  # three sold, one left in stock
        used = vc.parse(codes[0]).voucher_id
        hq.confirm_voucher("T2", VoucherConfirmRequest(action="redeem", txn_id="T2-9", code=codes[0]))
        server = start_in_thread(hq)
        try:
            yield hq, server, [vc.parse(c).voucher_id for c in codes] + [used]
        finally:
            server.stop()


def expected(hq: HqStore) -> dict[str, Any]:
    """The page's numbers, by the test's own SQL."""
    with hq.db.read() as tx:
        sums = tx.all("SELECT state, kind, COUNT(*), SUM(value) FROM vouchers GROUP BY state, kind")
        owed = tx.one("SELECT COALESCE(SUM(value), 0) FROM vouchers WHERE state = 'active'")
    assert owed is not None
    return {
        "vouchers": sorted([str(s), str(k), int(n), int(v)] for s, k, n, v in sums),
        "outstanding": int(owed[0]),
    }


def test_marketing_reads_the_catalogue_and_the_vouchers_and_finds_one(
    office: tuple[HqStore, ServerHandle, list[str]],
) -> None:
    hq, server, ids = office
    want = expected(hq)
    assert want["outstanding"] == 2 * 2500 and len(want["vouchers"]) == 3  # stock 1, sold 2, used 1
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "market")
        page.click('header nav a[href="/backoffice/rewards"]')
        page.wait_for_selector("body[data-page=rewards]")
        data = page.evaluate(READ)
        assert data["rewards"] == [["TENOFF", "200", "", ""], ["LATTE", "300", "3", "3"]]  # by points
        assert sorted(data["vouchers"]) == want["vouchers"] and data["outstanding"] == want["outstanding"]
        made = page.evaluate(MADE_OF_MARKUP)
        assert (made["scripts"], made["images"], made["svgs"]) == (0, 0, 0) and MARKUP[1] in made["text"]
        well_formed(page, DESKTOP["width"])
        page.fill("#voucher", ids[0].upper())  # the id, in any case
        page.click("#voucher-search button")
        page.wait_for_selector(f"#voucher-found[data-voucher='{ids[0]}']")
        assert page.get_attribute("#voucher-found dd[data-state]", "data-state") == "redeemed"
        assert "T2" in page.inner_text("#voucher-found")
        page.fill("#voucher", "0" * 16)
        page.click("#voucher-search button")
        page.wait_for_selector("#voucher-missing")
        watch.clean()

        tablet, watch2 = open_page(browser, TABLET, "zh-CN")
        sign_in(tablet, server.url, "auditor")
        tablet.goto(f"{server.url}/backoffice/rewards?voucher={ids[3]}")
        assert "奖励与预付券" in tablet.inner_text("h1")
        assert tablet.get_attribute("#voucher-found dd[data-state]", "data-state") == "stock"
        well_formed(tablet, TABLET["width"])
        watch2.clean()


def test_without_a_session_it_asks_to_sign_in_and_a_query_of_markup_finds_nothing(
    office: tuple[HqStore, ServerHandle, list[str]],
) -> None:
    _, server, _ = office
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        sent = anonymous.get("/backoffice/rewards")
    assert sent.status_code == 303 and sent.headers["location"].startswith("/backoffice/sign-in")
    client, _ = signed_in(server.url, "manager")  # every role reads the chain's catalogue, as its coupons
    shown = client.get("/backoffice/rewards", params={"voucher": MARKUP[0]})
    assert shown.status_code == 200 and 'id="voucher-missing"' in shown.text
    assert MARKUP[0] not in shown.text and "&lt;script&gt;" in shown.text


def test_a_store_manager_reads_its_stores_vouchers_never_the_chains_totals_or_another_stores(
    office: tuple[HqStore, ServerHandle, list[str]],
) -> None:
    """S2's till holds two vouchers of its own stock. S1's store manager reads the vouchers of S1 (sold there,
    or in its tills' stock) by state and kind and what S1 still owes, as the test's own SQL finds them: not
    S2's stock, nor the chain's total; finds S1's voucher redeemed at S2, and not S2's by its id."""
    hq, server, ids = office
    expires = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
    hq.issue_vouchers("T2", IssueSpec(2, 4000, expires), signing_key(hq, vc.PURPOSE), "Mio")
    theirs = vc.parse(hq.voucher_stock("T2").codes[0]).voucher_id
    with hq.db.read() as tx:
        sums = tx.all(
            "SELECT state, kind, COUNT(*), SUM(value) FROM vouchers WHERE terminal_id = 'T1' GROUP BY state, kind"
        )
        owed = tx.one("SELECT COALESCE(SUM(value), 0) FROM vouchers WHERE terminal_id = 'T1' AND state = 'active'")
        everything = tx.one("SELECT COUNT(*) FROM vouchers")
    assert owed is not None and everything == (6,)
    client, _ = signed_in(server.url, "manager")
    shown = client.get("/backoffice/rewards").text
    rows = re.findall(r'<tr data-state="(\w+)" data-kind="(\w+)">.*?data-n="(\d+)".*?data-n="(\d+)"', shown)
    assert sorted([s, k, int(n), int(v)] for s, k, n, v in rows) == sorted(
        [str(s), str(k), int(n), int(v)] for s, k, n, v in sums
    )
    assert f'id="outstanding" data-n="{int(owed[0])}"' in shown
    found = client.get("/backoffice/rewards", params={"voucher": ids[0]}).text
    assert f'data-voucher="{ids[0]}"' in found  # S1's, redeemed at S2
    missing = client.get("/backoffice/rewards", params={"voucher": theirs}).text
    assert 'id="voucher-missing"' in missing and f'data-voucher="{theirs}"' not in missing
    admin, _ = signed_in(server.url, "admin")
    assert f'data-voucher="{theirs}"' in admin.get("/backoffice/rewards", params={"voucher": theirs}).text
