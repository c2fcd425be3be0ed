"""Gift cards in the back office, in Debian's Chromium against a real head-office server on 127.0.0.1, on
SQLite and PostgreSQL: finance finds a card a till blocked, reads its activity and unblocks it; asks for its
balance to be cleared, cannot approve its own request, and the chain administrator's approval clears it; a
clear asked for a balance that moved since is refused and the card keeps its value; the roles without gift
cards are refused and the auditor only reads; markup in a reason never runs; the pages are well formed at
1280 x 800 and a tablet's width, in English and Japanese; every step is in the audit chain."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hq import audit, giftcards
from hq.api.server import ServerHandle, start_in_thread
from hq.backoffice.roles import Action, Role, may
from hq.backoffice.staff import Staff
from hq.store import HqStore
from sync.protocol import WireEntry
from terminal.topups import TopupPolicy
from tests.api.stack import chromium, chromium_missing
from tests.backoffice.chain import STAFF, chain
from tests.backoffice.test_browser import DESKTOP, MADE_OF_MARKUP, MARKUP, TABLET, open_page, sign_in, well_formed
from tests.backoffice.test_web import code_of, signed_in

LOST = "c" * 64
"""The card hash of a card sold before the chain used tillpoint, and reported lost at a till."""
SPARE = "d" * 64


def card_of(uid_hash: str) -> str:
    return "G-" + uid_hash[:16]


def till_entry(hq: HqStore, kind: str, uid_hash: str, **fields: object) -> None:
    """An entry of T1 (store S1) about the card, pushed as the till pushes it."""
    seq = len(hq.entries("T1")) + 1
    now = time.gmtime()
    payload = {
        "card_id": card_of(uid_hash),
        "uid_hash": uid_hash,
        "store_id": "S1",
        "local_time": time.strftime("%Y-%m-%dT%H:%M:%S", now),
        **fields,
    }
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", now)
    entry = WireEntry(terminal_id="T1", seq=seq, txn_id=f"T1-{seq}-gift", kind=kind, payload=payload, created_at=made)
    assert hq.ingest("T1", [entry]).acked_seq == seq


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff], ServerHandle]]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chain(hq_url) as (hq, made):
        now = hq.now()
        with hq.db.write() as tx:
            giftcards.import_card(tx, LOST, 5000, "Mio", "the earlier system", now)
            giftcards.import_card(tx, SPARE, 3000, "Mio", "the earlier system", now)
        hq.put_topup_policy("T1", TopupPolicy(True, 10_000, 20_000, 15_000, 5_000), "Mio")
        till_entry(hq, "gift_block", LOST, reason="reported lost")
        server = start_in_thread(hq)
        try:
            yield hq, made, server
        finally:
            server.stop()


def test_finance_unblocks_a_card_asks_to_clear_it_and_another_person_approves(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    lost = card_of(LOST)
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.click('header nav a[href="/backoffice/giftcards"]')
        page.wait_for_selector("body[data-page=giftcards]")
        well_formed(page, DESKTOP["width"])
        page.fill("#q", lost[:8].upper())  # the id's start, in any case
        page.click("#search button")
        page.wait_for_selector(f"#found a[href='/backoffice/giftcards/{lost}']")
        assert page.locator("#found tbody tr").count() == 1  # the other card's id starts otherwise
        page.click(f"#found a[href='/backoffice/giftcards/{lost}']")
        page.wait_for_selector("body[data-page=giftcard]")
        assert page.inner_text("#state") == "blocked" and page.inner_text("#balance") == "50.00"
        assert page.inner_text("#holder") == "-"  # in no member's wallet
        assert [page.get_attribute(f"#activity tbody tr:nth-child({n})", "data-kind") for n in (1, 2)] == [
            "gift_block",
            "gift_import",
        ]
        assert "reported lost" in page.inner_text("#activity")
        well_formed(page, DESKTOP["width"])
        page.fill("#unblock-reason", MARKUP[0])  # found again: markup in a reason is text
        page.click("#unblock-submit")
        page.wait_for_selector("#notice")
        assert page.inner_text("#state") == "active" and page.locator("#unblock").count() == 0
        made = page.evaluate(MADE_OF_MARKUP)
        assert (made["scripts"], made["images"], made["svgs"]) == (0, 0, 0) and MARKUP[0] in made["text"]
        page.fill("#clear-reason", "the customer asked for it to be retired")
        page.click("#clear-submit")
        page.wait_for_selector("#notice")
        assert "AR-" in page.inner_text("#notice") and page.locator("#pending li").count() == 1
        assert page.inner_text("#balance") == "50.00"  # nothing moves before someone else approves
        page.goto(f"{server.url}/backoffice/approvals")
        page.wait_for_selector("#requests tr[data-kind=gift_clear]")
        assert page.locator("#requests tr[data-kind=gift_clear] button.approve").count() == 0  # not one's own
        watch.clean()

        admin, watch2 = open_page(browser, TABLET, "ja-JP")
        sign_in(admin, server.url, "admin")
        assert "ギフトカード" in admin.inner_text("header")
        admin.click('header nav a[href="/backoffice/approvals"]')
        admin.wait_for_selector("#requests tr[data-kind=gift_clear] button.approve")
        admin.click("#requests tr[data-kind=gift_clear] button.approve")
        admin.wait_for_selector("#no-requests")
        admin.goto(f"{server.url}/backoffice/giftcards/{lost}")
        assert admin.inner_text("#balance") == "0.00" and admin.get_attribute("#state", "class") == "status-cleared"
        assert admin.get_attribute("#activity tbody tr:nth-child(1)", "data-kind") == "gift_clear"
        assert admin.locator("#clear").count() == 0
        well_formed(admin, TABLET["width"])
        watch2.clean()
    held = hq.gift_card(lost)
    assert (held["state"], held["balance"]) == ("cleared", 0)
    with hq.db.read() as tx:
        records = [(r.action, r.target) for r in audit.recent(tx)]
    assert audit.verify(hq.db).ok
    for action in ("gift_unblock", "request_gift_clear", "approve_gift_clear", "gift_clear"):
        assert (action, lost) in records, action


def test_a_clear_is_refused_once_the_balance_moved_and_the_card_keeps_its_value(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    spare = card_of(SPARE)
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.goto(f"{server.url}/backoffice/giftcards/{spare}")
        page.fill("#clear-reason", "looks abandoned")
        page.click("#clear-submit")
        page.wait_for_selector("#notice")
        till_entry(hq, "gift_load", SPARE, amount=2000)  # a customer loads it meanwhile
        admin, watch2 = open_page(browser, DESKTOP)
        sign_in(admin, server.url, "admin")
        admin.goto(f"{server.url}/backoffice/approvals")
        admin.click("#requests tr[data-kind=gift_clear] button.approve")
        admin.wait_for_selector("#error")
        assert admin.get_attribute("#error", "data-code") == "gift_card_invalid"
        admin.goto(f"{server.url}/backoffice/giftcards/{spare}")
        assert admin.inner_text("#balance") == "50.00" and admin.inner_text("#state") == "active"
        refused = [e for e in watch2.errors if "status of 409" in e]
        assert len(refused) == 1  # the refusal itself, a page with its status; nothing else went wrong
        watch2.errors = [e for e in watch2.errors if e not in refused]
        watch.clean()
        watch2.clean()
    assert hq.gift_card(spare)["balance"] == 5000


def test_only_the_roles_with_gift_cards_see_them_and_the_auditor_only_reads(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    lost, spare = card_of(LOST), card_of(SPARE)
    hq.attach_gift_card(spare, "M-S1", "Mio", "shown at the desk")  # in Aiko's wallet (a member of S1)
    with chromium() as browser:
        for staff_id in ("finance", "auditor", "market", "manager"):  # the administrator's is the first test's
            role = Role(STAFF[staff_id][1])
            page, watch = open_page(browser, DESKTOP)
            sign_in(page, server.url, staff_id)
            shown = page.locator('header nav a[href="/backoffice/giftcards"]').count() == 1
            assert shown is may(role, Action.GIFTCARDS_READ), staff_id
            page.goto(f"{server.url}/backoffice/giftcards/{lost}")
            if not may(role, Action.GIFTCARDS_READ):
                assert page.get_attribute("#error", "data-code") == "forbidden", staff_id
                assert "reported lost" not in page.inner_text("body")
            else:
                assert page.inner_text("#card-id") == lost
                assert (page.locator("#unblock").count() == 1) is may(role, Action.GIFTCARDS_UNBLOCK), staff_id
                assert (page.locator("#clear").count() == 1) is may(role, Action.GIFTCARDS_CLEAR), staff_id
            if may(role, Action.MEMBERS_READ):  # the member's page lists its wallet's cards to gift card roles only
                page.goto(f"{server.url}/backoffice/members/M-S1")
                listed = page.locator(f"#member-gift-cards tr[data-card='{spare}']").count() == 1
                assert listed is may(role, Action.GIFTCARDS_READ), staff_id
                if listed:
                    page.goto(f"{server.url}/backoffice/giftcards/{spare}")
                    assert page.inner_text("#holder") == "M-S1"
            watch.clean()
            page.context.close()


def test_a_request_to_clear_is_never_approved_by_who_asked_and_a_changed_card_refuses_a_second_clear(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """Over HTTP, as a tab that edits its forms would: the asker's own approval is refused (``own_request``)
    and changes nothing; a card cleared once refuses another request to clear it; an unblock of a card
    that is not blocked is refused (``gift_card_invalid``); the auditor's unblock is ``forbidden``."""
    hq, _, server = office
    lost = card_of(LOST)
    finance, csrf = signed_in(server.url, "finance")
    asked = finance.post(f"/backoffice/giftcards/{lost}/clear", data={"csrf": csrf, "reason": "retired"})
    assert asked.status_code == 303
    request_id = asked.headers["location"].split("request=")[1]
    own = finance.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": csrf})
    assert own.status_code == 403 and code_of(own) == "own_request"
    marketing, _ = signed_in(server.url, "market")  # reads approvals, but no gift card: the request is not shown
    listed = marketing.get("/backoffice/approvals")
    assert listed.status_code == 200 and request_id not in listed.text and lost not in listed.text
    assert hq.gift_card(lost)["balance"] == 5000
    admin, admin_csrf = signed_in(server.url, "admin")
    assert admin.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": admin_csrf}).status_code == 303
    again = finance.post(f"/backoffice/giftcards/{lost}/clear", data={"csrf": csrf, "reason": "twice"})
    assert again.status_code == 409 and code_of(again) == "gift_card_invalid"
    spare = card_of(SPARE)
    not_blocked = finance.post(f"/backoffice/giftcards/{spare}/unblock", data={"csrf": csrf, "reason": "why not"})
    assert not_blocked.status_code == 409 and code_of(not_blocked) == "gift_card_invalid"
    auditor, auditor_csrf = signed_in(server.url, "auditor")
    refused = auditor.post(f"/backoffice/giftcards/{spare}/unblock", data={"csrf": auditor_csrf, "reason": "x"})
    assert refused.status_code == 403 and code_of(refused) == "forbidden"
    assert hq.gift_card(spare)["balance"] == 3000
