"""The holds of online payment confirmations in the back office, in Debian's Chromium against a real head-office
server on 127.0.0.1, on SQLite and PostgreSQL (the red team's office of ``tests/security/test_redteam_confirmations``):
finance reads what head office holds back for T-A's confirmed payments whose sales have not arrived, releases one
saying why (audited under its own id), and the member's money pays again; the auditor reads and releases nothing;
marketing is refused; a release of a hold already ended is ``no_hold``; markup in a reason is text; the page is well
formed at 1280 x 800 and at a tablet's width in Japanese."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq import audit
from hq.backoffice import staff
from hq.backoffice.roles import Action, Role, may
from hq.db.engine import Tx
from terminal import giftcards as gc
from terminal.credentials import card_uid_hash
from tests.api.stack import chromium, chromium_missing
from tests.backoffice.chain import PASSWORD
from tests.backoffice.test_browser import DESKTOP, MADE_OF_MARKUP, MARKUP, TABLET, open_page, sign_in, well_formed
from tests.backoffice.test_web import code_of, signed_in
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
from tests.security.test_redteam_confirmations import (
    CARD_KEY,
    GIFT_UID,
    Office,
    new_txn,
    office,  # noqa: F401 - the fixture
    refused,
    sun_tap,
)

ACCOUNTS = {"fin": ("Fin Ance", "finance"), "aud": ("Aud Itor", "auditor"), "mkt": ("Mia Marketing", "marketing")}


@pytest.fixture
def held(office: Office) -> Iterator[tuple[Office, str, str]]:  # noqa: F811
    """T-A's confirmed payments whose sales have not arrived: Aiko's 90.00 and 40.00 of the gift card; the staff
    accounts of ``ACCOUNTS``. Yields (office, the payment's txn, the gift card's txn)."""
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)

    def made(tx: Tx) -> None:
        for staff_id, (name, role) in ACCOUNTS.items():
            staff.add(tx, staff.check_account(staff_id, name, role, [], None), PASSWORD)

    office.hq.db.transact(made)
    txn = new_txn()
    assert office.confirm("T-A", "M-1", 9000, txn_id=txn, **office.code()).status_code == 200
    gift = card_uid_hash(CARD_KEY, GIFT_UID)
    assert office.confirm_gift("T-A", gift, 4000, sun_tap(office.gift, GIFT_UID)).status_code == 200
    with office.hq.db.read() as tx:
        [gift_txn] = [str(r[0]) for r in tx.all("SELECT txn_id FROM gift_confirms WHERE terminal_id = 'T-A'")]
    yield office, txn, gift_txn


def test_finance_releases_a_hold_saying_why_and_the_member_pays_again(held: tuple[Office, str, str]) -> None:
    at, txn, gift_txn = held
    url = at.server.url
    assert refused(at.confirm("T-B", "M-1", 1, **at.code())) == "insufficient_balance"  # all 90.00 held
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, url, "fin")
        page.click('header nav a[href="/backoffice/holds"]')
        page.wait_for_selector("body[data-page=holds]")
        rows = page.locator("#holds tbody tr")
        assert rows.count() == 2
        assert [rows.nth(n).get_attribute("data-txn") for n in (0, 1)] == [txn, gift_txn]  # oldest first
        row = page.inner_text(f"#holds tr[data-txn='{txn}']")
        assert all(part in row for part in ("T-A", "member's stored value", "M-1", "90.00")), row
        assert gc.card_id(card_uid_hash(CARD_KEY, GIFT_UID)) in page.inner_text(f"#holds tr[data-txn='{gift_txn}']")
        well_formed(page, DESKTOP["width"])
        page.fill(f"#holds tr[data-txn='{txn}'] input[name=reason]", MARKUP[1])
        page.click(f"#holds tr[data-txn='{txn}'] button")
        page.wait_for_selector("#notice")
        assert (
            page.locator("#holds tbody tr").count() == 1 and page.locator(f"#holds tr[data-txn='{txn}']").count() == 0
        )
        made = page.evaluate(MADE_OF_MARKUP)
        assert (made["scripts"], made["images"], made["svgs"]) == (0, 0, 0)
        watch.clean()

        tablet, watch2 = open_page(browser, TABLET, "ja-JP")
        sign_in(tablet, url, "fin")
        tablet.goto(f"{url}/backoffice/holds")
        assert "保留中の支払い" in tablet.inner_text("h1") and "ギフトカード" in tablet.inner_text("#holds")
        well_formed(tablet, TABLET["width"])
        watch2.clean()
    assert at.confirm("T-B", "M-1", 9000, **at.code()).status_code == 200  # the released 90.00 pays
    with at.hq.db.read() as tx:
        records = [r for r in audit.recent(tx) if r.action == "release_hold"]
    assert [(r.actor, r.target, r.reason) for r in records] == [("fin", txn, MARKUP[1])]
    assert records[0].details == {"released": [{"terminal_id": "T-A", "member_id": "M-1", "amount": 9000}]}
    assert audit.verify(at.hq.db).ok


def test_only_finance_and_administrators_release_and_an_ended_hold_is_no_hold(held: tuple[Office, str, str]) -> None:
    """Over HTTP, as a tab that edits its forms would: the auditor reads the list and its release is ``forbidden``;
    marketing reads nothing; finance's release without a reason is ``reason_required``, a second release of the
    same hold ``no_hold``; each refusal changes nothing."""
    at, txn, _ = held
    url = at.server.url
    for staff_id, (_, role_name) in ACCOUNTS.items():
        role = Role(role_name)
        client, csrf = signed_in(url, staff_id)
        page = client.get("/backoffice/holds")
        if not may(role, Action.HOLDS_READ):
            assert page.status_code == 403 and code_of(page) == "forbidden" and txn not in page.text, staff_id
        else:
            assert page.status_code == 200 and txn in page.text, staff_id
            assert ("/release" in page.text) is may(role, Action.HOLDS_RELEASE), staff_id
        form = {"csrf": csrf, "terminal_id": "T-A", "reason": "till gone"}
        if not may(role, Action.HOLDS_RELEASE):
            reply = client.post(f"/backoffice/holds/{txn}/release", data=form)
            assert reply.status_code == 403 and code_of(reply) == "forbidden", staff_id
        client.close()
    assert len(_holds(at)) == 2  # nothing released

    client, csrf = signed_in(url, "fin")
    reply = client.post(f"/backoffice/holds/{txn}/release", data={"csrf": csrf, "terminal_id": "T-A", "reason": " "})
    assert reply.status_code == 422 and code_of(reply) == "reason_required"
    assert len(_holds(at)) == 2
    reply = client.post(f"/backoffice/holds/{txn}/release", data={"csrf": csrf, "terminal_id": "T-A", "reason": "gone"})
    assert reply.status_code == 303, reply.text[:300]
    reply = client.post(f"/backoffice/holds/{txn}/release", data={"csrf": csrf, "terminal_id": "T-A", "reason": "gone"})
    assert reply.status_code == 409 and code_of(reply) == "no_hold"
    reply = client.post(f"/backoffice/holds/{txn}/release", data={"terminal_id": "T-A", "reason": "no token"})
    assert reply.status_code == 403 and code_of(reply) == "bad_csrf"
    client.close()
    assert len(_holds(at)) == 1


def _holds(at: Office) -> list[dict[str, object]]:
    from hq import payments

    return payments.holds(at.hq)
