"""Passing a coupon on in Debian's Chromium at a phone's size, against a real head-office server on
127.0.0.1: Aiko (one browser context) passes a coupon on and reads the link; Ben (another context, not
signed in) opens it, signs in from it with the code from the sender's directory, comes back to it and
claims it; Aiko's coupons page no longer shows it, Ben's does. Every request stays on 127.0.0.1."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.stack import chromium, chromium_missing
from tests.sync.test_wallet_api import AIKO, BEN, Wallet, wallet  # noqa: F401 - fixture
from tests.sync.test_wallet_browser import PHONE, check_page
from tests.sync.test_wallet_gifts_api import GIFT


def sign_in(page: Any, held: Wallet, email: str) -> None:
    page.fill("#contact", email)
    page.click("#contact-form button[type=submit]")
    page.fill("#code", held.last_code(email))
    page.click("#code-form button[type=submit]")


def test_a_member_passes_a_coupon_on_and_a_friend_claims_it_in_the_browser(wallet: Wallet) -> None:  # noqa: F811
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    wallet.hq.put_coupon(GIFT)
    requested: list[str] = []
    with chromium() as browser:
        contexts = [browser.new_context(viewport=PHONE, locale="en-GB") for _ in range(2)]
        for context in contexts:
            context.on("request", lambda r: requested.append(r.url))
        aiko, ben = (context.new_page() for context in contexts)
        for page in (aiko, ben):
            page.set_default_timeout(10_000)

        aiko.goto(f"{wallet.url}/wallet/sign-in")
        sign_in(aiko, wallet, AIKO)
        aiko.goto(f"{wallet.url}/wallet/coupons")
        aiko.click("#coupon-GIFT-A .pass-on button")
        link = aiko.input_value("#gift-link")
        assert link.startswith(f"{wallet.url}/wallet/gift/")
        check_page(aiko)
        aiko.goto(f"{wallet.url}/wallet/coupons")
        assert aiko.locator("#coupon-GIFT-A").count() == 0 and aiko.locator("#waiting-GIFT-A").count() == 1
        check_page(aiko)

        ben.goto(link)
        assert "2.00 off, pass it on" in ben.inner_text("#gift-coupon")
        check_page(ben)
        ben.click("#gift-sign-in")
        sign_in(ben, wallet, BEN)
        ben.wait_for_url(link)
        ben.click("#claim")
        ben.wait_for_url(f"{wallet.url}/wallet/coupons?claimed=1")
        assert ben.locator("#notice").count() == 1 and "2.00 off, pass it on" in ben.inner_text("main")
        check_page(ben)

        aiko.reload()
        assert "2.00 off, pass it on" not in aiko.inner_text("main")
        for context in contexts:
            context.close()
    assert requested and all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested
