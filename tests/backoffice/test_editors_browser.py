"""The rule and coupon editors and staff management in Debian's Chromium against a real head-office process
on 127.0.0.1, on SQLite and PostgreSQL: marketing writes a rule, watches the preview follow each edit
(htmx, debounced), saves it, and a real till pulls it and earns exactly what the preview said; a store
manager reads the rules at a tablet's width and is refused a save posted from its own page; markup typed
into a coupon's name and description and into a rule id never runs; the pages speak Japanese and Chinese;
a chain administrator opens and closes a staff account; nothing breaks the Content-Security-Policy or
leaves 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hq.backoffice.staff import Staff
from hq.demo import DEMO_COUPONS, DEMO_RULES
from hq.store import HqStore
from sync.client import SyncClient
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import chromium, chromium_missing, too_wide
from tests.backoffice.chain import PASSWORD, chain
from tests.backoffice.test_browser import (
    DESKTOP,
    MADE_OF_MARKUP,
    MARKUP,
    TABLET,
    Watch,
    open_page,
    well_formed,
)
from tests.fixtures.hq import HqProcess

BASKET = "LATTE 2 450 coffee\nBEANS 1 1200 beans"
TILL_BASKET = Basket((Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))
EDITED_EARNED = "#preview-figures tr[data-figure=points_earned] td.edited"


@pytest.fixture
def office(hq_url: str, tmp_path: Path) -> Iterator[tuple[HqStore, dict[str, Staff], HqProcess]]:
    """The chain's database, and a head-office process serving it (a till T3 of store S1 is registered)."""
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chain(hq_url) as (hq, made):
        hq.add_terminal("T3", "S1", "till-3-token")
        process = HqProcess(tmp_path, db=hq_url)
        process.start(timeout=120)  # two shared cores: a process start may wait its turn
        for rule_id in DEMO_RULES:  # the process seeds the demo's documents: the chain's own are the test's
            hq.delete("rule_doc", rule_id)
        for coupon_id in DEMO_COUPONS:
            hq.delete("coupon", coupon_id)
        try:
            yield hq, made, process
        finally:
            process.kill()


def sign_in(page: Any, url: str, staff_id: str) -> None:
    page.goto(f"{url}/backoffice/sign-in")
    page.fill("#staff_id", staff_id)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_selector("body[data-page=home]")


REFUSED = re.compile(r"Failed to load resource: the server responded with a status of (409|422)")
LEFT = re.compile(r"^htmx:(sendAbort|afterRequest), \[object HTMLDivElement\]$")
"""htmx's report of a preview still on its way when the form was sent: the page left, the browser aborted it."""


def clean(watch: Watch) -> None:
    """Nothing went wrong but the refusals the test asked for (a page with its status: 409, 422) and a
    preview the page's own submit aborted."""
    watch.errors = [e for e in watch.errors if not REFUSED.search(e) and not LEFT.search(e)]
    watch.clean()


def harmless(page: Any, *expected: str) -> None:
    found = page.evaluate(MADE_OF_MARKUP)
    assert (found["scripts"], found["images"], found["svgs"]) == (0, 0, 0)
    for text in expected:
        assert text in found["text"], text


def test_marketing_edits_a_rule_watches_the_preview_and_the_till_earns_it(
    office: tuple[HqStore, dict[str, Staff], HqProcess], tmp_path: Path
) -> None:
    hq, _, process = office
    store = Store.open(tmp_path / "till" / "t.db")
    sync = SyncClient(store, "T3", process.url, "till-3-token", timeout=10)
    service = Service(store, "T3", store_id="S1")
    try:
        sync.sync_once()
        assert service.quote("M-S1", TILL_BASKET).points_earned == 21
        with chromium() as browser:
            page, watch = open_page(browser, DESKTOP)
            sign_in(page, process.url, "market")
            page.click('header nav a[href="/backoffice/rules"]')
            page.wait_for_selector("body[data-page=rules] #no-documents")
            page.click("#new-document")
            page.wait_for_selector("body[data-page=rule-editor]")
            page.wait_for_load_state("load")  # htmx has bound the form
            well_formed(page, DESKTOP["width"])
            page.fill("#f-rule_id", "coffee-3x")
            page.select_option("#f-kind", "campaign")
            page.fill("#f-categories", "coffee")
            page.fill("#f-member", "M-S1")
            page.fill("#f-store", "S1")
            page.fill("#f-multiplier_pct", "300")
            page.fill("#f-basket", BASKET)
            page.wait_for_selector(f'{EDITED_EARNED}[data-value="39"]')  # 21 + the coffee's 9 points twice more
            assert page.get_attribute("#preview-figures tr[data-figure=points_earned] td.current", "data-value") == "21"
            page.fill("#f-multiplier_pct", "2x")  # a mistake is named in the preview, nothing is saved
            page.wait_for_selector('#preview .field-error[data-field=multiplier_pct][data-code="not_whole"]')
            page.fill("#f-multiplier_pct", "250")
            page.wait_for_selector(f'{EDITED_EARNED}[data-value="34"]')  # 9 * 150 % = 13 more
            earned = int(page.get_attribute(EDITED_EARNED, "data-value") or "0")
            payable = int(page.get_attribute("#preview-figures tr[data-figure=payable] td.edited", "data-value") or "0")
            page.fill("#f-reason", "winter push")
            page.click("#save")
            page.wait_for_selector("body[data-page=rules] #notice")
            assert page.locator("#documents tr[data-id=coffee-3x]").count() == 1
            well_formed(page, DESKTOP["width"])
            clean(watch)

        sync.sync_once()  # the till pulls the saved rule
        quote = service.quote("M-S1", TILL_BASKET)
        assert (quote.points_earned, quote.payable) == (earned, payable) == (34, 2100)
        before = hq.member("M-S1").points  # type: ignore[union-attr]
        assert service.commit(quote).points_delta == 34
        assert sync.sync_once().pushed == 1
        assert hq.member("M-S1").points == before + 34  # type: ignore[union-attr]
        assert hq.quarantined() == []
    finally:
        sync.close()
        store.close()


def test_a_store_manager_reads_at_a_tablets_width_and_cannot_save_even_from_its_page(
    office: tuple[HqStore, dict[str, Staff], HqProcess],
) -> None:
    hq, _, process = office
    hq.put_rule_doc({"rule_id": "cap-1", "kind": "cap", "cap": 500, "text": "At most 500"})
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, process.url, "manager")
        assert page.locator('header nav a[href="/backoffice/staff"]').count() == 0
        page.click('header nav a[href="/backoffice/rules"]')
        page.wait_for_selector("body[data-page=rules] #read-only")
        assert page.locator("#new-document, form.retire").count() == 0
        well_formed(page, TABLET["width"])
        page.click("#documents a")
        page.wait_for_selector("body[data-page=rule-editor] #read-only")
        assert page.is_disabled("#f-cap") and page.input_value("#f-cap") == "500"
        assert page.locator("#save, #f-basket").count() == 0
        well_formed(page, TABLET["width"])
        csrf = page.input_value("input[name=csrf]")
        reply = page.request.post(
            f"{process.url}/backoffice/rules/save",
            form={"csrf": csrf, "rule_id": "cap-1", "kind": "cap", "cap": "1", "editing": "cap-1", "reason": "r"},
            headers={"Origin": process.url},
        )
        assert reply.status == 403 and 'data-code="forbidden"' in reply.text()
        clean(watch)
    with hq.db.read() as tx:
        row = tx.one("SELECT body FROM rule_docs WHERE rule_id = 'cap-1'")
    assert row is not None and '"cap":500' in str(row[0]).replace(" ", "")


def test_markup_in_a_coupons_name_and_description_and_a_rule_id_never_runs(
    office: tuple[HqStore, dict[str, Staff], HqProcess],
) -> None:
    _, _, process = office
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, process.url, "market")
        for n, text in enumerate(MARKUP):
            page.goto(f"{process.url}/backoffice/rules/edit")
            page.fill("#f-rule_id", text)
            page.select_option("#f-kind", "cap")
            page.fill("#f-cap", "100")
            page.fill("#f-reason", "r")
            page.click("#save")
            page.wait_for_selector('.field-error[data-code="bad_id"]')
            assert (
                page.input_value("#f-rule_id") == text
                and page.get_attribute("#error", "data-code") == "document_invalid"
            )
            harmless(page)

            page.goto(f"{process.url}/backoffice/coupons/edit")
            page.wait_for_load_state("load")
            page.fill("#f-coupon_id", f"X-{n}")
            page.select_option("#f-kind", "amount_off")
            page.fill("#f-value", "100")
            page.fill("#f-text", f"name {text}")
            page.fill("#f-description", f"about {text}")
            page.fill("#f-member", "M-S1")
            page.fill("#f-basket", "LATTE 1 450 coffee")
            page.wait_for_selector('#preview-figures tr[data-figure=discount] td.edited[data-value="100"]')
            harmless(page, f"name {text}")  # the preview explains the discount by the coupon's name
            page.fill("#f-reason", f"why {text}")
            page.click("#save")
            page.wait_for_selector(f"body[data-page=coupons] #documents tr[data-id=X-{n}]")
            harmless(page, f"name {text}")
            page.goto(f"{process.url}/backoffice/coupons/edit?id=X-{n}")
            assert page.input_value("#f-description") == f"about {text}"
            harmless(page)
        clean(watch)


@pytest.mark.parametrize(("lang", "word"), [("ja", "ルール"), ("zh", "规则")])
def test_the_editor_speaks_japanese_and_chinese(
    office: tuple[HqStore, dict[str, Staff], HqProcess], lang: str, word: str
) -> None:
    _, _, process = office
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, process.url, "admin")
        page.goto(f"{process.url}/backoffice/rules/edit?lang={lang}")
        assert page.get_attribute("html", "lang") == lang and word in page.inner_text("body")
        well_formed(page, TABLET["width"])
        page.goto(f"{process.url}/backoffice/staff")
        assert page.get_attribute("html", "lang") == lang
        well_formed(page, TABLET["width"])
        clean(watch)


def test_a_chain_admin_opens_and_closes_a_staff_account_on_the_page(
    office: tuple[HqStore, dict[str, Staff], HqProcess],
) -> None:
    _, _, process = office
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, process.url, "admin")
        page.click('header nav a[href="/backoffice/staff"]')
        page.wait_for_selector("body[data-page=staff]")
        well_formed(page, TABLET["width"])
        page.fill("#add-id", "kai")
        page.fill("#add-name", f"Kai {MARKUP[1]}")
        page.select_option("#add-role", "store_manager")
        page.fill("#add-stores", "S1")
        page.fill("#add-password", "kai's long password")
        page.fill("#add-reason", "hired")
        page.click("#add-submit")
        page.wait_for_selector("#accounts tr[data-id=kai][data-role=store_manager][data-disabled=no]")
        harmless(page, f"Kai {MARKUP[1]}")
        section = page.locator("section.staff-account[data-id=kai]")
        section.locator("form.disable input[name=reason]").fill("left")
        section.locator("form.disable button").click()
        page.wait_for_selector("#accounts tr[data-id=kai][data-disabled=yes]")
        other = page.locator("section.staff-account[data-id=admin2]")
        other.locator("form.disable input[name=reason]").fill("left")
        other.locator("form.disable button").click()
        page.wait_for_selector("#accounts tr[data-id=admin2][data-disabled=yes]")
        mine = page.locator("section.staff-account[data-id=admin]")
        mine.locator("form.disable input[name=reason]").fill("me")
        mine.locator("form.disable button").click()
        page.wait_for_selector("#error[data-code=last_admin]")
        assert too_wide(page, TABLET["width"]) == []
        clean(watch)
