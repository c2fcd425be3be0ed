"""The wallet in Debian's Chromium at a phone's size (360 x 740), against a real head-office server on
127.0.0.1 with the file sender: join from a receipt's code and land signed in, see the points and a personal
coupon head office issued, show a member code a real till reads (and refuses once stale), sign out, sign in
again with the one-time code from the sender's directory. Every request stays on 127.0.0.1; the pages
pass a basic accessibility check (labels, one h1, a language, a skip link first in the focus order)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet.senders import FileSender
from sync import claims
from sync.client import SyncClient
from sync.protocol import ClaimKeyPayload, WireEntry
from terminal.errors import Code, Rejected
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import chromium, chromium_missing, too_wide
from tests.fixtures import entries
from tests.waiting import wait_until

PHONE = {"width": 360, "height": 740}
EMAIL = "rin@example.com"
A11Y = """() => {
  const fields = [...document.querySelectorAll("input:not([type=hidden]), select, textarea")];
  return {
    unlabelled: fields.filter((f) => f.labels.length === 0 && !f.getAttribute("aria-label")).map((f) => f.id),
    h1: document.querySelectorAll("h1").length,
    lang: document.documentElement.lang,
    main: document.querySelectorAll("main").length,
  };
}"""


@pytest.fixture
def head_office(tmp_path: Path) -> Iterator[tuple[HqStore, ServerHandle]]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.set_rule("base", 1, 100)
    hq.add_terminal("T1", "S1", "till-token")
    hq.upsert_member("M-OTHER", "Other", "basic", 0)
    hq.put_coupon(
        {"coupon_id": "OTHER-1", "member_id": "M-OTHER", "kind": "amount_off", "value": 700, "text": "NOT YOURS"}
    )
    server = start_in_thread(hq, wallet_sender=FileSender(tmp_path / "outbox"))
    yield hq, server
    server.stop()
    hq.close()


def claim_token(hq: HqStore, total: int = 2000) -> str:
    """An anonymous sale of T1 and its receipt's claim code (the till's claim key journaled before it)."""
    key = Ed25519PrivateKey.generate()
    public = claims.public_bytes(key)
    txn = str(uuid.uuid4())
    key_entry = ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire()
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=seq,
                txn_id=txn if kind == "sale" else f"T1-{seq}",
                kind=kind,
                payload=body,
                created_at=made,
            )
            for seq, kind, body in ((1, "claim_key", key_entry), (2, "sale", entries.sale(None, total)))
        ],
    )
    return claims.sign(key, txn, int(time.time()), 3600)


def check_page(page: Any) -> None:
    found = page.evaluate(A11Y)
    assert found["unlabelled"] == [] and found["h1"] == 1 and found["main"] == 1, found
    assert found["lang"] in ("en", "ja", "zh"), found
    assert too_wide(page, PHONE["width"]) == []


def last_code(outbox: Path) -> str:
    """The code the sender wrote (it sends after answering: wait for the file)."""

    def sent() -> list[dict[str, str]]:
        return [m for p in sorted(outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == EMAIL]

    return str(wait_until(sent, 5.0, "the sign-in code")[-1]["code"])


def test_join_see_points_and_coupon_show_the_member_code_sign_out_and_in_again(
    head_office: tuple[HqStore, ServerHandle], tmp_path: Path
) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    hq, server = head_office
    token = claim_token(hq)
    requested: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport=PHONE, locale="en-GB")
        context.on("request", lambda r: requested.append(r.url))
        page = context.new_page()
        page.set_default_timeout(10_000)

        # Join from the receipt's code, with an email address to sign in later: signed in at once.
        page.goto(f"{server.url}/join#TPJ1:{token}")
        page.fill("#name", "Rin Phone")
        page.fill("#contact", EMAIL)
        page.check("#consent")
        page.click("#submit")
        page.wait_for_selector("#result.ok")
        member_id = str(page.get_attribute("#result", "data-member-id"))
        hq.put_coupon(
            {
                "coupon_id": "RIN-WELCOME",
                "member_id": member_id,
                "kind": "amount_off",
                "value": 300,
                "text": "3.00 off your next visit",
                "ends": "2099-12-31T00:00:00Z",
            }
        )
        page.click("#wallet-link")
        page.wait_for_selector("body[data-page=overview]")
        assert page.inner_text("#points") == "20" and page.inner_text("#member-id") == member_id
        assert page.locator("#lots tbody tr").count() == 1 and "20" in page.inner_text("#lots tbody")
        assert "Rin Phone" in page.inner_text("h1")
        check_page(page)
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip"

        # The member code on the page is read by a real till, and refused once it is stale.
        code = str(page.get_attribute("#member-code", "data-code"))
        assert page.locator("#member-code svg[role=img]").count() == 1
        store = Store.open(tmp_path / "till" / "t.db")
        sync = SyncClient(store, "T1", server.url, "till-token", timeout=5)
        sync.sync_once()
        assert Service(store, "T1").read_member_code(2, code[5:]).member_id == member_id
        with pytest.raises(Rejected) as stale:
            Service(store, "T1", clock=lambda: time.time() + 180).read_member_code(2, code[5:])
        assert stale.value.code is Code.MEMBER_CODE_EXPIRED
        sync.close()
        store.close()

        # Coupons: the member's own, with its terms and its till code; never another member's.
        page.click("nav a[href='/wallet/coupons']")
        page.wait_for_selector("body[data-page=coupons]")
        assert page.locator("[data-coupon]").count() == 1
        assert "3.00 off your next visit" in page.inner_text("#coupon-RIN-WELCOME")
        assert "NOT YOURS" not in page.content() and "OTHER-1" not in page.content()
        assert str(page.get_attribute("#coupon-RIN-WELCOME .qr", "data-code")).startswith("TPC1:")
        check_page(page)
        page.click("nav a[href='/wallet/activity']")
        page.wait_for_selector("#visits")
        assert page.locator("#visits tbody tr").count() == 1 and "+20" in page.inner_text("#visits")
        check_page(page)

        # The shell is installable: the service worker is running.
        page.goto(f"{server.url}/wallet/")
        page.wait_for_selector("body[data-page=overview]")
        assert page.evaluate("async () => (await navigator.serviceWorker.ready).active.scriptURL").endswith(
            "/wallet/sw.js"
        )

        # With no network, the service worker answers with the cached offline page (nothing personal is cached).
        context.set_offline(True)
        page.goto(f"{server.url}/wallet/coupons")
        page.wait_for_selector("body[data-page=offline]")
        assert "RIN-WELCOME" not in page.content()
        check_page(page)
        context.set_offline(False)
        page.goto(f"{server.url}/wallet/")
        page.wait_for_selector("body[data-page=overview]")

        # Sign out; sign in again with the code the sender wrote.
        page.click("#sign-out")
        page.wait_for_selector("body[data-page=sign-in]")
        assert page.goto(f"{server.url}/wallet/coupons") is not None
        page.wait_for_selector("#contact-form")
        check_page(page)
        page.fill("#contact", EMAIL)
        page.click("#contact-form button")
        page.wait_for_selector("#code-form")
        check_page(page)
        page.fill("#code", last_code(tmp_path / "outbox"))
        page.click("#code-form button")
        page.wait_for_selector("body[data-page=overview]")
        assert page.inner_text("#points") == "20"

        # In Japanese, by the switch.
        page.click("footer a[hreflang=ja]")
        page.wait_for_selector("html[lang=ja]")
        assert "ポイント" in page.inner_text("main")
        check_page(page)
        context.close()
    assert requested and {urlsplit(u).hostname for u in requested if not u.startswith("data:")} == {"127.0.0.1"}
