"""Gift cards in the wallet (docs/giftcards.md, "In the member's wallet") in Debian's Chromium at a phone's size,
against a real head-office server on 127.0.0.1 holding the chain's card keys: a virtual NTAG 424 DNA card whose
NDEF URL points at the wallet is "held to the phone" (the browser opens the URL a read gives). Aiko keeps the
card, sees its balance and activity; the same URL again is refused; Ben's fresh read says the card is in
another wallet; signed out, a read shows the balance only; Aiko blocks the lost card and head office and the
tills' feed have it blocked; in Japanese too. Every request stays on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hq.api.server import start_in_thread
from hq.wallet.senders import FileSender
from tests.api.stack import chromium, chromium_missing
from tests.sync.test_hq_giftcards import Card, Chain
from tests.sync.test_wallet_api import AIKO, BEN, Wallet
from tests.sync.test_wallet_browser import PHONE, check_page
from tests.sync.test_wallet_gifts_browser import sign_in


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[tuple[Wallet, Chain]]:
    chain = Chain(str(tmp_path / "hq.db"))
    hq = chain.store
    hq.upsert_member("M-A", "Aiko", "basic", 0)
    hq.upsert_member("M-B", "Ben", "basic", 0)
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    outbox = tmp_path / "outbox"
    server = start_in_thread(hq, wallet_sender=FileSender(outbox))
    for member, email in (("M-A", AIKO), ("M-B", BEN)):
        reply = httpx.put(f"{server.url}/v1/admin/members/{member}/contacts", json={"email": email}, headers=admin)
        assert reply.status_code == 200, reply.text
    yield Wallet(hq, server, outbox, admin, tmp_path), chain
    server.stop()
    hq.close()


def test_a_member_keeps_a_tapped_gift_card_sees_it_and_blocks_it_when_lost(
    wallet: tuple[Wallet, Chain],
) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    held, chain = wallet
    card = Card(bytes.fromhex("04B1C2D3E4F501"))
    card.tag.base_url = f"{held.url}/wallet/giftcard"  # the URL the chain's issuing tool wrote on the card
    chain.sell("T1", card, 5000)
    requested: list[str] = []
    with chromium() as browser:
        aiko = browser.new_context(viewport=PHONE, locale="en-GB")
        aiko.on("request", lambda r: requested.append(r.url))
        page = aiko.new_page()
        page.set_default_timeout(10_000)
        # signed out, a read shows the balance and the way to keep it, nothing more
        page.goto(card.tag.ndef_url())
        assert page.locator("#giftcard-balance").get_attribute("data-amount") == "5000"
        assert page.locator("#keep").count() == 0 and page.locator("#giftcard-sign-in").count() == 1
        page.goto(f"{held.url}/wallet/sign-in")
        sign_in(page, held, AIKO)
        url = card.tag.ndef_url()
        page.goto(url)
        assert page.locator("#giftcard-state").get_attribute("data-state") == "active"
        check_page(page)
        page.click("#keep")
        page.wait_for_url(f"{held.url}/wallet/giftcards")
        mine = page.locator(f"#gc-{card.card_id}")
        assert mine.locator(".balance").get_attribute("data-amount") == "5000"
        assert mine.locator("tr[data-kind=gift_activate]").count() == 1
        check_page(page)
        assert chain.card(card)["holder"] == "M-A"
        # the same URL again (the browser's history): used, refused with its code
        page.goto(url)
        assert page.locator("#error").get_attribute("data-code") == "replayed_card"
        assert page.locator("#keep").count() == 0
        # Ben's own fresh read of the card: it is in another member's wallet
        ben = browser.new_context(viewport=PHONE, locale="en-GB")
        ben.on("request", lambda r: requested.append(r.url))
        other = ben.new_page()
        other.set_default_timeout(10_000)
        other.goto(f"{held.url}/wallet/sign-in")
        sign_in(other, held, BEN)
        other.goto(card.tag.ndef_url())
        assert other.locator("#giftcard-held").count() == 1 and other.locator("#keep").count() == 0
        other.goto(f"{held.url}/wallet/giftcards")
        assert other.locator("#no-giftcards").count() == 1
        ben.close()
        # lost: Aiko blocks it; head office holds it blocked and the tills' feed says so
        page.goto(f"{held.url}/wallet/giftcards")
        page.locator(f"#gc-{card.card_id} form.block button").click()
        page.wait_for_url(f"{held.url}/wallet/giftcards")
        assert page.locator(f"#gc-{card.card_id}").get_attribute("data-state") == "blocked"
        assert page.locator(f"#gc-{card.card_id} form.block").count() == 0
        assert chain.card(card)["state"] == "blocked"
        [fed] = [c for c in chain.store.changes(0, 1000).gift_cards if c.card_id == card.card_id]
        assert fed.body["state"] == "blocked"
        # in Japanese
        page.goto(f"{held.url}/wallet/giftcards?lang=ja")
        assert "ギフトカード" in page.locator("h1").inner_text()
        assert "利用停止中" in page.locator(f"#gc-{card.card_id} .state").inner_text()
        check_page(page)
        # out of the wallet; the card keeps its value
        page.locator(f"#gc-{card.card_id} form.detach button").click()
        page.wait_for_url(f"{held.url}/wallet/giftcards")
        assert page.locator("#no-giftcards").count() == 1
        assert chain.card(card)["balance"] == 5000 and chain.card(card)["holder"] is None
        aiko.close()
    assert requested and all(urlsplit(u).hostname == "127.0.0.1" for u in requested), requested


def test_a_form_from_another_site_or_without_a_session_changes_no_card(wallet: tuple[Wallet, Chain]) -> None:
    held, chain = wallet
    card = Card(bytes.fromhex("04B1C2D3E4F502"))
    chain.sell("T1", card, 3000)
    tap = urlsplit(card.tag.ndef_url()).query
    with httpx.Client(base_url=held.url, timeout=10, follow_redirects=False) as client:
        foreign = client.post("/wallet/giftcards/attach", data={"tap": tap}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        nobody = client.post("/wallet/giftcards/attach", data={"tap": tap}, headers={"Origin": held.url})
        assert 'data-code="wallet_sign_in_required"' in nobody.text
        block = client.post(f"/wallet/giftcards/{card.card_id}/block", headers={"Origin": held.url})
        assert block.status_code == 303 and block.headers["location"] == "/wallet/sign-in"
    assert chain.card(card)["holder"] is None and chain.card(card)["state"] == "active"
    # the read was not used by any of them: it still keeps the card for a signed-in member
    with held.client() as client:
        asked = client.post("/wallet/sign-in/code", data={"contact": AIKO})
        assert asked.status_code == 200
        assert client.post("/wallet/sign-in", data={"contact": AIKO, "code": held.last_code(AIKO)}).status_code == 303
        kept = client.post("/wallet/giftcards/attach", data={"tap": tap})
        assert kept.status_code == 303, kept.text
        junk = client.post("/wallet/giftcards/attach", data={"tap": "<script>"})
        assert 'data-code="forged_card"' in junk.text and "<script>" not in junk.text
        wrong = client.post(f"/wallet/giftcards/{card.card_id}/unblock")
        assert 'data-code="not_found"' in wrong.text
    assert chain.card(card)["holder"] == "M-A"
