"""The second factor in Debian's Chromium against a real head-office server, on SQLite and PostgreSQL: a member
of finance sets it up from its own page (the QR code drawn in the page, the key as text, the first code typed
from an authenticator computed by pyotp), signs out, and signs in with password and code; the password alone
leaves it on the page asking for the code. Nothing loads from elsewhere and nothing errs under the CSP."""

from __future__ import annotations

import time

import pyotp

from hq.api.server import ServerHandle
from hq.backoffice import factors, otp
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.api.stack import chromium
from tests.backoffice.chain import PASSWORD
from tests.backoffice.test_browser import (
    DESKTOP,
    open_page,
    sign_in,
    well_formed,
)


def test_finance_sets_up_a_second_factor_and_signs_in_with_its_code(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    enrol_code, _ = hq.db.transact(
        lambda tx: factors.issue_enrol_code(tx, "admin", "finance", "new phone", int(time.time()))
    )
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.click("#own-second-factor")
        page.wait_for_selector("body[data-page=second-factor]")
        assert page.locator("#second-factor-qr svg[role=img] path").count() == 1
        well_formed(page, DESKTOP["width"])
        totp = pyotp.TOTP(page.inner_text("#second-factor-secret").replace(" ", ""))
        page.fill("#enrol_code", enrol_code)
        page.fill("#code", totp.now())
        page.click("#enrol")
        page.wait_for_selector("#recovery-codes")
        assert page.locator("#recovery-codes li").count() == otp.RECOVERY_CODES
        page.click("#sign-out")
        page.wait_for_selector("body[data-page=sign-in]")

        page.fill("#staff_id", "finance")
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_selector("body[data-page=sign-in-code]")
        well_formed(page, DESKTOP["width"])
        page.goto(f"{server.url}/backoffice/settlement")
        page.wait_for_selector("body[data-page=sign-in-code]")  # the password alone opens no page
        page.fill("#code", "000000" if totp.at(time.time() + otp.STEP_S) != "000000" else "111111")
        page.click("#submit-code")
        assert page.get_attribute("#error", "data-code") == "bad_code"
        page.fill("#code", totp.at(time.time() + otp.STEP_S))
        page.click("#submit-code")
        page.wait_for_selector("body[data-page=home]")
        assert page.get_attribute("#who", "data-role") == "finance"
        watch.clean()


def test_a_member_of_finance_makes_new_recovery_codes_with_a_code_of_its_app(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, team, server = office
    now = int(time.time())
    enrol_code, _ = hq.db.transact(lambda tx: factors.issue_enrol_code(tx, "admin", "finance", "new phone", now))
    offer = hq.db.transact(lambda tx: factors.offer(tx, "finance", now))
    totp = pyotp.TOTP(offer.secret)
    old = factors.confirm(hq.db, team["finance"], offer, totp.at(now), enrol_code, now)
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        page.goto(f"{server.url}/backoffice/sign-in")
        page.fill("#staff_id", "finance")
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_selector("body[data-page=sign-in-code]")
        page.fill("#code", old[0])  # signed in with a recovery code: nine left
        page.click("#submit-code")
        page.wait_for_selector("body[data-page=home]")
        page.click("#own-second-factor")
        page.wait_for_selector("body[data-page=second-factor]")
        assert page.get_attribute("#recovery-left", "data-left") == "9"
        well_formed(page, DESKTOP["width"])
        page.fill("#renew_code", old[1])  # a recovery code makes no new set
        page.click("#renew")
        page.wait_for_selector("#error")
        assert page.get_attribute("#error", "data-code") == "app_code_required"
        page.fill("#renew_code", totp.at(time.time() + otp.STEP_S))
        page.click("#renew")
        page.wait_for_selector("#recovery-codes")
        new = page.locator("#recovery-codes li").all_inner_texts()
        assert len(new) == otp.RECOVERY_CODES and not set(new) & set(old)
        assert page.locator("#notice").count() == 1
        well_formed(page, DESKTOP["width"])
        watch.clean()
    with hq.db.read() as tx:
        assert factors.state(tx, "finance").recovery_left == otp.RECOVERY_CODES
