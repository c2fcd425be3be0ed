"""The wallet's Rewards page against a real head-office app on 127.0.0.1: in Debian's Chromium at a phone's
size (a purchase with the stock going down, a partner code shown once, words in Japanese), and over HTTP
for what a browser would not do (a form from another site, no session, a made-up purchase id, a double
submit, another member's purchase id). Every request stays on 127.0.0.1."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

from hq import audit, ledger
from tests.api.stack import chromium, chromium_missing
from tests.sync.test_wallet_api import AIKO, BEN, Wallet, error_code, sign_in, wallet  # noqa: F401 - fixture
from tests.sync.test_wallet_browser import PHONE, check_page
from tests.sync.test_wallet_gifts_browser import sign_in as sign_in_page

LATTE = {
    "reward_id": "LATTE",
    "reward": "item",
    "sku": "LATTE-M",
    "points": 50,
    "title": "<b>Latte</b> on us",  # shown as text, never as markup
    "stock": 3,
}
CINEMA = {"reward_id": "CINEMA", "reward": "partner_code", "points": 60, "title": "Cinema ticket"}


def points(held: Wallet, member_id: str = "M-A") -> int:
    member = held.hq.member(member_id)
    assert member is not None
    return member.points


def books_balance(held: Wallet) -> None:
    with held.hq.db.read() as tx:
        assert ledger.check(tx) == []


@pytest.mark.browser
def test_a_member_buys_rewards_in_the_browser_and_the_stock_goes_down(wallet: Wallet) -> None:  # noqa: F811
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    wallet.hq.put_reward(LATTE)
    wallet.hq.put_reward(CINEMA)
    wallet.hq.add_reward_codes("CINEMA", ["CIN-7QX2"])
    requested: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport=PHONE, locale="en-GB")
        context.on("request", lambda r: requested.append(r.url))
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{wallet.url}/wallet/sign-in")
        sign_in_page(page, wallet, AIKO)
        page.click("nav >> text=Rewards")
        page.wait_for_url(f"{wallet.url}/wallet/rewards")
        assert page.inner_text("#balance") == "You have 120 points to spend."
        assert page.inner_text("#reward-LATTE h2") == "<b>Latte</b> on us"
        assert page.get_attribute("#reward-LATTE .left", "data-left") == "3"
        check_page(page)

        page.click("#reward-LATTE form.buy button")
        page.wait_for_url(re.compile(r".*/wallet/rewards\?bought=w-.*"))
        assert page.locator("#notice").count() == 1
        assert page.inner_text("#balance") == "You have 70 points to spend."
        assert page.get_attribute("#reward-LATTE .left", "data-left") == "2"  # the stock went down
        assert page.locator(".purchase[data-reward=LATTE] a").count() == 1  # its coupon is with the coupons
        check_page(page)

        page.click("#reward-CINEMA form.buy button")
        page.wait_for_url(re.compile(r".*/wallet/rewards\?bought=w-.*"))
        assert page.inner_text(".purchase[data-reward=CINEMA] .partner-code") == "CIN-7QX2"
        assert "This reward is sold out." in page.inner_text("#reward-CINEMA")  # the one code is handed out
        assert "Not enough points yet" in page.inner_text("#reward-LATTE")  # 10 points left
        page.goto(f"{wallet.url}/wallet/coupons")
        assert "<b>Latte</b> on us" in page.inner_text("main")
        page.goto(f"{wallet.url}/wallet/rewards?lang=ja")
        assert page.inner_text("h1") == "特典交換" and "10" in page.inner_text("#balance")
        check_page(page)
        context.close()
    assert points(wallet) == 10
    assert requested and all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested
    books_balance(wallet)


def test_the_buy_form_refuses_what_a_curious_tab_or_another_site_sends(wallet: Wallet) -> None:  # noqa: F811
    wallet.hq.put_reward(LATTE)
    form = {"purchase": "w-" + "a" * 20}
    with httpx.Client(base_url=wallet.url, timeout=10) as anonymous:
        reply = anonymous.post("/wallet/rewards/LATTE/buy", data=form, headers={"Origin": wallet.url})
        assert reply.status_code == 303 and reply.headers["location"] == "/wallet/sign-in"
    with wallet.client() as aiko, wallet.client() as ben:
        sign_in(wallet, aiko)
        sign_in(wallet, ben, BEN)
        elsewhere = aiko.post("/wallet/rewards/LATTE/buy", data=form, headers={"Origin": "https://evil.example"})
        assert elsewhere.status_code == 403 and points(wallet) == 120
        made_up = aiko.post("/wallet/rewards/LATTE/buy", data={"purchase": "x"})
        assert error_code(made_up) == "invalid_request" and points(wallet) == 120
        first = aiko.post("/wallet/rewards/LATTE/buy", data=form)
        again = aiko.post("/wallet/rewards/LATTE/buy", data=form)  # the same form sent twice: one purchase
        assert first.status_code == again.status_code == 303
        assert points(wallet) == 70 and wallet.hq.reward_catalogue()[0].left == 2
        theirs = ben.post("/wallet/rewards/LATTE/buy", data=form)  # Aiko's purchase id, from Ben's session
        assert error_code(theirs) == "reward_unknown" and points(wallet, "M-B") == 50
        short = ben.post("/wallet/rewards/LATTE/buy", data={"purchase": "w-" + "b" * 20})
        assert short.status_code == 303 and points(wallet, "M-B") == 0  # Ben has exactly 50
        broke = ben.post("/wallet/rewards/LATTE/buy", data={"purchase": "w-" + "c" * 20})
        assert broke.status_code == 409 and error_code(broke) == "insufficient_points"
        page = ben.get("/wallet/rewards")
        assert "&lt;b&gt;Latte&lt;/b&gt; on us" in page.text and "<b>Latte</b>" not in page.text
    assert wallet.hq.reward_catalogue()[0].left == 1
    books_balance(wallet)


def test_the_admin_api_defines_rewards_loads_codes_and_refunds(wallet: Wallet) -> None:  # noqa: F811
    admin = wallet.admin
    url = wallet.url
    reply = httpx.put(f"{url}/v1/admin/rewards/LATTE", json={k: v for k, v in LATTE.items() if k != "reward_id"})
    assert reply.status_code == 401  # no administrator token
    reply = httpx.put(f"{url}/v1/admin/rewards/LATTE", json={**LATTE, "points": -1}, headers=admin)
    assert reply.status_code == 422 and reply.json()["code"] == "reward_invalid"
    reply = httpx.put(f"{url}/v1/admin/rewards/CINEMA", json=CINEMA, headers=admin)
    assert reply.status_code == 200, reply.text
    reply = httpx.post(f"{url}/v1/admin/rewards/CINEMA/codes", json={"codes": ["A-1", "A-2", "A-1"]}, headers=admin)
    assert reply.json() == {"reward_id": "CINEMA", "added": 2}
    listed = httpx.get(f"{url}/v1/admin/rewards", headers=admin).json()
    assert [(r["reward_id"], r["left"]) for r in listed] == [("CINEMA", 2)]
    made = wallet.hq.buy_reward("M-A", "CINEMA", "w-" + "d" * 20)
    bought = httpx.get(f"{url}/v1/admin/rewards/purchases", params={"member_id": "M-A"}, headers=admin).json()
    assert [p["code"] for p in bought] == [made.code]
    reply = httpx.post(f"{url}/v1/admin/rewards/purchases/{made.purchase_id}/refund", headers=admin)
    assert reply.status_code == 200 and reply.json()["refunded_at"] and points(wallet) == 120
    reply = httpx.post(f"{url}/v1/admin/rewards/purchases/{made.purchase_id}/refund", headers=admin)
    assert reply.status_code == 409 and reply.json()["code"] == "reward_not_refundable"
    with wallet.hq.db.read() as tx:
        actions = [r.action for r in audit.recent(tx)]
    assert {"reward.put", "reward.codes", "reward.refund"} <= set(actions)
    books_balance(wallet)
