"""The back office in Debian's Chromium against a real head-office server on 127.0.0.1, on SQLite and
PostgreSQL: each role signs in through the form and finds only its own sections; a store manager is refused
another store's member; a store manager asks for an adjustment, finance approves it, the member's page
shows it; the pages work at 1280 x 800 and at a tablet's width, in English, Japanese and Chinese, under the
Content-Security-Policy (htmx searches as one types, no error in the console); and markup typed into every
field the back office shows again (a name, a search, every reason and note, a staff id, a campaign's name)
never runs: no
dialog opens and no element is made of it."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from hq import segments
from hq.api.server import ServerHandle
from hq.backoffice import staff
from hq.backoffice.roles import Action, Role, may
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.api.stack import chromium, too_wide
from tests.backoffice.chain import PASSWORD, STAFF, sale

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
SECTIONS = {
    "members": Action.MEMBERS_READ,
    "campaigns": Action.CAMPAIGNS_READ,
    "approvals": Action.APPROVALS_READ,
    "audit": Action.AUDIT_READ,
    "holds": Action.HOLDS_READ,
}
MARKUP = ('<script>alert("s")</script>', '"><img src=x onerror=alert("i")>', "'><svg onload=alert('v')>")
MADE_OF_MARKUP = """() => ({
  scripts: [...document.scripts].filter((s) => s.textContent.includes("alert")).length,
  images: document.querySelectorAll("img[src=x], img[onerror]").length,
  svgs: document.querySelectorAll("svg[onload]").length,
  text: document.body.innerText,
})"""
STRUCTURE = """() => ({
  unlabelled: [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
    .filter((f) => f.labels.length === 0 && !f.getAttribute("aria-label")).map((f) => f.id || f.name),
  h1: document.querySelectorAll("h1").length,
  main: document.querySelectorAll("main").length,
  lang: document.documentElement.lang,
  skip: document.querySelector("a.skip") === document.querySelector("body a"),
})"""


def well_formed(page: Any, width: int) -> None:
    """Every field labelled, one h1 and one main, a language, the skip link first, nothing wider than the
    window."""
    found = page.evaluate(STRUCTURE)
    assert found == {"unlabelled": [], "h1": 1, "main": 1, "lang": found["lang"], "skip": True}, found
    assert found["lang"] in ("en", "ja", "zh")
    assert too_wide(page, width) == []


CAMPAIGN = {
    "segment": "everyone",
    "variants": [{"variant": "yen100", "coupon": {"kind": "amount_off", "value": 100}}],
    "schedule": {"kind": "daily", "at": "09:00"},
}
REFUSAL = re.compile(r"Failed to load resource: the server responded with a status of (401|403|429)")
"""A refusal is a page with its status (the tests look for it): Chromium reports the status, nothing ran."""


class Watch:
    """What a page did that it must not: dialogs, console errors (CSP violations among them), requests
    leaving 127.0.0.1."""

    def __init__(self, context: Any) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        context.on("request", lambda r: self.hosts.add(urlsplit(r.url).hostname or ""))
        context.on("page", self.watch)

    def watch(self, page: Any) -> None:
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" and not REFUSAL.search(m.text) else None,
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def clean(self) -> None:
        assert self.dialogs == [] and self.errors == [], (self.dialogs, self.errors)
        assert self.hosts <= {"127.0.0.1"}, self.hosts


def open_page(browser: Any, viewport: dict[str, int], locale: str = "en-GB") -> tuple[Any, Watch]:
    context = browser.new_context(viewport=viewport, locale=locale)
    watch = Watch(context)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page, watch


def sign_in(page: Any, url: str, staff_id: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/backoffice/sign-in")
    page.fill("#staff_id", staff_id)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_selector("body[data-page=home]")


def test_each_role_signs_in_and_finds_only_its_sections(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    _, _, server = office
    with chromium() as browser:
        for staff_id, (_, role_name, _) in STAFF.items():
            role = Role(role_name)
            page, watch = open_page(browser, DESKTOP)
            page.goto(f"{server.url}/backoffice/members")
            page.wait_for_selector("body[data-page=sign-in]")  # no session: the sign-in page
            sign_in(page, server.url, staff_id)
            assert page.get_attribute("#who", "data-role") == role.value
            for section, action in SECTIONS.items():
                shown = page.locator(f'header nav a[href="/backoffice/{section}"]').count() == 1
                assert shown is may(role, action), (staff_id, section)
                page.goto(f"{server.url}/backoffice/{section}")
                if may(role, action):
                    page.wait_for_selector(f"body[data-page={section}]")
                    well_formed(page, DESKTOP["width"])
                else:
                    assert page.get_attribute("#error", "data-code") == "forbidden", (staff_id, section)
                page.goto(f"{server.url}/backoffice/")
            page.goto(f"{server.url}/backoffice/members/M-S2")
            if role is Role.STORE_MANAGER:
                assert page.get_attribute("#error", "data-code") == "forbidden"
                assert "Bo Ni" not in page.inner_text("body")
            elif may(role, Action.MEMBERS_READ):
                assert page.inner_text("#member-id") == "M-S2"
                well_formed(page, DESKTOP["width"])
            assert too_wide(page, DESKTOP["width"]) == []
            page.click("#sign-out")
            page.wait_for_selector("body[data-page=sign-in] #notice")
            watch.clean()
            page.context.close()


def test_a_manager_asks_finance_approves_and_the_member_page_shows_it(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    points_before = hq.member("M-S1").points  # type: ignore[union-attr]
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, server.url, "manager")
        page.click('header nav a[href="/backoffice/members"]')
        page.wait_for_selector("body[data-page=members]")
        page.wait_for_load_state("load")  # htmx has bound the field: a value typed before would send nothing
        page.fill("#q", "aik")  # htmx asks for the results as one types
        page.wait_for_selector("#found a[href='/backoffice/members/M-S1']")
        page.click("#found a[href='/backoffice/members/M-S1']")
        page.wait_for_selector("body[data-page=member]")
        assert page.locator("#lots tbody tr").count() == 1 and page.inner_text("#visit-count") == "1"
        assert "S1" in page.inner_text("#stores") and page.locator("#erase").count() == 0
        well_formed(page, TABLET["width"])
        page.fill("#adjust-points", "300")
        page.fill("#adjust-reason", "machine ate the card")
        page.click("#adjust-submit")
        page.wait_for_selector("#notice")
        assert "AR-" in page.inner_text("#notice") and page.locator("#pending li").count() == 1
        assert page.inner_text("#points") == str(points_before)
        watch.clean()

        finance, watch2 = open_page(browser, DESKTOP, "ja-JP")
        sign_in(finance, server.url, "finance")
        assert finance.get_attribute("html", "lang") == "ja" and "承認" in finance.inner_text("header")
        finance.click('header nav a[href="/backoffice/approvals"]')
        finance.wait_for_selector("#requests tr[data-kind=adjustment] button.approve")
        finance.click("#requests tr[data-kind=adjustment] button.approve")
        finance.wait_for_selector("#no-requests")
        finance.goto(f"{server.url}/backoffice/members/M-S1?lang=zh")
        assert finance.get_attribute("html", "lang") == "zh" and "积分" in finance.inner_text("body")
        assert "销售" in finance.inner_text("#recent") and "正常" in finance.inner_text("#status")
        well_formed(finance, DESKTOP["width"])
        assert finance.inner_text("#points") == str(points_before + 300)
        assert "machine ate the card" in finance.inner_text("#adjustments")
        watch2.clean()


def test_markup_in_every_field_is_shown_as_text_and_never_runs(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 1000000}}, "test")
    for n, text in enumerate(MARKUP):
        hq.upsert_member(f"M-X{n}", f"Xena {text}", "basic", 0)
        hq.upsert_card(f"c{n}" * 32, f"M-X{n}")
        sale(hq, "T1", f"M-X{n}")
        account = staff.check_account(f"odd{n}", f"Odd {text}", "chain_admin", [])
        hq.db.transact(lambda tx, a=account: staff.add(tx, a, PASSWORD))
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)

        def harmless(where: str, *expected: str) -> None:
            found = page.evaluate(MADE_OF_MARKUP)
            assert (found["scripts"], found["images"], found["svgs"]) == (0, 0, 0), where
            for text in expected:
                assert text in found["text"], (where, text)

        for n, text in enumerate(MARKUP):
            page.goto(f"{server.url}/backoffice/sign-in")
            page.fill("#staff_id", text)  # a failed sign-in shows the id typed again
            page.fill("#password", "wrong password!")
            page.click("#submit")
            page.wait_for_selector("#error[data-code=bad_credentials]")
            assert page.input_value("#staff_id") == text
            harmless("sign-in")
            sign_in(page, server.url, f"odd{n}")
            harmless("staff name", f"Odd {text}")

            page.goto(f"{server.url}/backoffice/members")
            page.fill("#q", text)
            page.press("#q", "Enter")
            page.wait_for_selector("#no-results")
            assert page.input_value("#q") == text
            harmless("search")
            page.fill("#q", "Xena")
            page.press("#q", "Enter")
            page.wait_for_selector(f"#found a[href='/backoffice/members/M-X{n}']")
            harmless("results", f"Xena {text}")

            page.goto(f"{server.url}/backoffice/members/M-X{n}")
            page.fill("#adjust-points", "5")
            page.fill("#adjust-reason", f"adjust {text}")
            page.click("#adjust-submit")
            page.wait_for_selector("#pending li")
            harmless("member page", f"Xena {text}", f"adjust {text}")
            page.fill("#block-reason", f"block {text}")
            page.click("#block-submit")
            page.wait_for_selector("#status.status-blocked")
            page.fill("#cards input[name=reason]", f"card {text}")
            page.click("#cards button")
            page.wait_for_selector("#cards .status-blocked")

            page.goto(f"{server.url}/backoffice/campaigns")
            page.fill("#launch-id", f"c{n}")
            page.fill("#launch-spec", json.dumps({**CAMPAIGN, "name": f"camp {text}"}))
            page.fill("#launch-reason", f"launch {text}")
            page.click("#launch-submit")
            page.wait_for_selector("#waiting li")
            harmless("campaign request", f"launch {text}")

            sign_in(page, server.url, "admin")
            page.goto(f"{server.url}/backoffice/approvals")
            harmless("approvals", f"adjust {text}", f"camp {text}", f"launch {text}")
            page.click("#requests tr[data-kind=campaign] button.approve")
            page.wait_for_selector("#notice")
            row = page.locator("#requests tr[data-kind=adjustment]").first
            row.locator("input[name=note]").fill(f"note {text}")
            row.locator("button.reject").click()
            page.wait_for_selector("#notice")
            harmless("decided", f"note {text}")
            page.goto(f"{server.url}/backoffice/campaigns")
            page.wait_for_selector(f"#campaigns tr[data-id=c{n}]")
            harmless("campaigns", f"camp {text}")
            page.goto(f"{server.url}/backoffice/members/M-X{n}")
            page.fill("#erase-reason", f"erase {text}")
            page.fill("#erase-confirm", f"M-X{n}")
            page.click("#erase-submit")
            page.wait_for_selector("#notice")
            page.goto(f"{server.url}/backoffice/audit")
            harmless("audit", f"block {text}", f"card {text}", f"erase {text}", f"note {text}")
            assert page.get_attribute("#chain", "data-ok") == "1"
        assert json.dumps(watch.dialogs) == "[]"
        watch.clean()
