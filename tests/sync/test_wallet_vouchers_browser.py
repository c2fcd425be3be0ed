"""A voucher sold to a member shows in their wallet (docs/stored-value.md, "Vouchers"), in Debian's Chromium at
a phone's size, against a real head-office server on 127.0.0.1 and a real till (Store, SyncClient, Service):
Aiko sees the voucher sold to her with its QR, in English and Japanese; Ben, and a voucher sold to nobody,
never; once redeemed at the till it is gone. Every request stays on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hq.erasure import erase_member
from hq.payments import signing_key
from hq.vouchers import IssueSpec
from sync.client import SyncClient
from sync.confirm import voucher_confirmer
from terminal.service import Service
from terminal.store import Store
from terminal.vouchers import PURPOSE
from tests.api.stack import chromium, chromium_missing
from tests.sync.test_wallet_api import AIKO, BEN, Wallet, wallet  # noqa: F401 - fixture
from tests.sync.test_wallet_browser import PHONE, check_page
from tests.sync.test_wallet_gifts_browser import sign_in


def test_a_voucher_sold_to_a_member_shows_in_their_wallet_only(wallet: Wallet, tmp_path: Path) -> None:  # noqa: F811
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    token = wallet.hq.add_terminal("T-W", "S-001")
    spec = IssueSpec(2, 3000, int(time.time()) + 86400)
    wallet.hq.issue_vouchers("T-W", spec, signing_key(wallet.hq, PURPOSE), "Mio")
    till = Store.open(tmp_path / "till" / "terminal.db")
    client = SyncClient(till, "T-W", wallet.url, token, timeout=5)
    try:
        client.sync_once()
        service = Service(till, "T-W")
        service.confirm_voucher = voucher_confirmer(client)  # as the daemon wires it
        hers = service.sell_voucher(3000, None, member_id="M-A")
        nobodys = service.sell_voucher(3000, None)
        client.sync_once()
        requested: list[str] = []
        with chromium() as browser:
            for email, locale, shown in (
                (AIKO, "en-GB", "Pays 30.00"),
                (BEN, "en-GB", None),
                (AIKO, "ja-JP", "30.00 分"),
            ):
                context = browser.new_context(viewport=PHONE, locale=locale)
                context.on("request", lambda r: requested.append(r.url))
                page = context.new_page()
                page.set_default_timeout(10_000)
                page.goto(f"{wallet.url}/wallet/sign-in")
                sign_in(page, wallet, email)
                page.goto(f"{wallet.url}/wallet/coupons")
                assert page.locator(f"#voucher-{nobodys.voucher_id}").count() == 0
                mine = page.locator(f"#voucher-{hers.voucher_id}")
                if shown is None:
                    assert mine.count() == 0
                else:
                    assert shown in mine.inner_text() and mine.locator("svg[role=img]").count() == 1
                check_page(page)
                context.close()
            service.redeem_voucher(hers.code or "")
            client.sync_once()
            context = browser.new_context(viewport=PHONE, locale="en-GB")
            page = context.new_page()
            page.goto(f"{wallet.url}/wallet/sign-in")
            sign_in(page, wallet, AIKO)
            page.goto(f"{wallet.url}/wallet/coupons")
            assert page.locator(f"#voucher-{hers.voucher_id}").count() == 0  # used: no longer in the wallet
            context.close()
        assert requested and all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested
        # Erased, Aiko is named by no voucher and no voucher sale; the voucher itself is untouched.
        assert erase_member(wallet.hq, "M-A", "privacy desk")["vouchers_unnamed"] == 1
        assert wallet.hq.voucher(hers.voucher_id)["member_id"] is None
        sale = next(e for e in wallet.hq.entries("T-W") if e.txn_id == hers.txn_id)
        assert sale.payload["member_id"] is None and sale.payload["amount"] == 3000
    finally:
        client.close()
        till.close()
