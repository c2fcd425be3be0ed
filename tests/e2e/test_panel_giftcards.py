"""Gift cards from the cashier panel in Debian's Chromium, by keyboard and real secure-card taps: a virtual
NTAG 424 DNA and a virtual FeliCa Lite-S (its MAC read with the chain's key) held to the till's nfcpy ``udp:``
reader, a real head office holding the chain's card keys.

The amount typed (F8), the gift card key (F1), a tap: the card is sold. A sale confirmed (F11, Enter), F1 and a
tap: the card pays what the POS collects, head office confirming first, and the panel shows what is left for
the POS. A card tapped with nothing armed shows its balance. A Lite-S is sold too, and one sale is paid by
both cards in turn. Head office ends with the card's balance, and a
member's card tapped while the key is armed is refused with its code, never sold and never identified."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal import giftcards as gc
from terminal.credentials import card_uid_hash, lite_s_card_key
from terminal.daemon import Daemon
from tests.api.stack import AIKO_UID, SUN_MASTER, base_url, chromium, chromium_missing, paired_page, running_till
from tests.fixtures.hq import HqProcess
from tests.fixtures.nfc import FelicaCard, IsoDepCard, free_udp_port
from tests.vcard import Ntag424, uri_message
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e]
WAIT = 30_000  # ms
GIFT_UID = bytes.fromhex("04C1D2E3F40602")
FELICA_MASTER = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")  # the chain's FeliCa Lite-S master key (tests)
LITE_S_IDM = bytes.fromhex("0123456789ABCDEF")


def tap(card: IsoDepCard | FelicaCard, daemon: Daemon) -> None:
    """The card held to the reader until the till saw it, then taken off."""
    since = time.monotonic()
    card.tap()
    try:
        wait_until(lambda: daemon.last_read is not None and daemon.last_read[1] >= since, 20, "the till to see the tap")
    finally:
        card.lift()


def answering(tag: Ntag424) -> Any:
    return lambda apdu: tag(apdu) or b"\x6d\x00"


def test_a_gift_card_sold_and_paying_from_the_panel(tmp_path: Path) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    (tmp_path / "sun.key").write_bytes(SUN_MASTER)
    (tmp_path / "felica.key").write_bytes(FELICA_MASTER)
    hq = HqProcess(tmp_path / "hq", extra=("--sun-key-file", str(tmp_path / "sun.key")))
    hq.start()
    try:
        token = hq.add_terminal("T-PANEL")
        hq.cli("till-topups", "T-PANEL", "--enable", "--per-transaction", "10000", "--per-day", "50000",
               "--per-member-day", "20000")  # fmt: skip
        hq.cli("voucher", "issue", "T-PANEL", "--value", "500")  # a 5.00 voucher in the till's stock
        port = free_udp_port()
        sections: dict[str, Any] = {
            "terminal": {"id": "T-PANEL"},
            "security": {"card_key_file": str(hq.key_file)},
            # debounce 0: the same card again within a second or two
            "reader": {"debounce": 0, "felica_key_file": str(tmp_path / "felica.key")},
            "scanner": {"devices": ["sim:"]},  # the scanner's reads handed to the till as a camera's are
            "hq": {"url": hq.url, "token": token, "pull_interval": 0.3, "push_interval": 0.2, "timeout": 2.0},
        }
        with (
            running_till(tmp_path / "till", f"nfcpy:udp:127.0.0.1:{port}", **sections) as daemon,
            chromium() as browser,
        ):
            store, session = daemon.store, daemon.session
            assert store is not None and session is not None
            wait_until(lambda: (store.topup_policy() or {}).get("enabled"), 20.0, "the till's pull of its policy")
            genuine = Ntag424(GIFT_UID, SUN_MASTER)
            plastic = IsoDepCard(port, GIFT_UID, answering(genuine))
            card_id = gc.card_id(card_uid_hash(hq.key, GIFT_UID))
            lite_s = FelicaCard(
                port,
                LITE_S_IDM,
                uri_message("https://example.com/g"),
                lite_s_key=lite_s_card_key(FELICA_MASTER, LITE_S_IDM),
            )
            page = paired_page(browser, daemon)
            page.set_default_timeout(WAIT)

            def typed_total(text: str) -> None:
                page.keyboard.press("F8")
                page.wait_for_selector("#prompt[data-for='total']:not([hidden]) #prompt-input:focus")
                page.keyboard.type(text)
                page.keyboard.press("Enter")
                page.wait_for_selector("#t-payable:not(:empty)")
                wait_until(lambda: (session.snapshot()["basket"] or {}).get("source") == "typed", 10, "the total")

            # Sold: 30.00 typed, F1, the card tapped. Nothing to type at that prompt: it waits for the tap.
            typed_total("30.00")
            page.keyboard.press("F1")
            page.wait_for_selector("#prompt[data-for='gift_sell']:not([hidden])")
            assert "30.00" in page.inner_text("#prompt-label") and page.is_hidden("#prompt-input")
            tap(plastic, daemon)
            page.wait_for_selector("body[data-state='done']")
            detail = page.inner_text("#done-detail")
            assert "Gift card sold" in detail and "30.00" in detail, detail
            assert card_id in page.inner_text("#gift-card")

            # A sale of 12.00, confirmed: F1 and a tap pay it from the card; nothing is left for the POS.
            typed_total("12.00")
            page.keyboard.press("F11")
            page.wait_for_selector("body[data-state='payment']")
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-state='done']")
            page.wait_for_selector("#keys span[data-action='gift']:not(.off)")
            page.keyboard.press("F1")
            page.wait_for_selector("#prompt[data-for='gift_pay']:not([hidden])")
            assert "12.00" in page.inner_text("#prompt-label")
            tap(plastic, daemon)
            page.wait_for_selector("#gift-done li[data-kind='gift_redeem']")
            paid = page.inner_text("#gift-done")
            assert "12.00" in paid and "18.00" in paid and "offline" not in paid, paid
            assert "0.00" in page.inner_text("#t-payable")
            page.wait_for_selector("#keys span[data-action='gift'].off")  # nothing left to pay
            [entry] = [e for e in store.entries() if e.kind == "gift_redeem"]
            sale = next(e for e in store.entries() if e.kind == "sale")
            assert entry.payload["sale_ref"] == sale.txn_id and entry.payload["confirmed"] is True
            page.keyboard.press("F2")
            page.wait_for_function("document.documentElement.lang === 'ja'")
            assert "ギフトカード" in page.inner_text("#gift-box")
            page.keyboard.press("F2")
            page.keyboard.press("F2")
            page.wait_for_function("document.documentElement.lang === 'en'")

            # The balance check: a tap with nothing armed shows what the card holds.
            page.keyboard.press("F6")
            page.wait_for_selector("body[data-state='idle']")
            page.wait_for_selector("#gift-box", state="hidden")
            tap(plastic, daemon)
            page.wait_for_selector("#gift-box:not([hidden])")
            assert "18.00" in page.inner_text("#gift-card")

            # A FeliCa Lite-S sold with 10.00; a sale of 25.00 paid by both cards: 18.00, then the 7.00 left.
            page.keyboard.press("F6")
            typed_total("10.00")
            page.keyboard.press("F1")
            page.wait_for_selector("#prompt[data-for='gift_sell']:not([hidden])")
            tap(lite_s, daemon)
            page.wait_for_selector("body[data-state='done']")
            assert "Gift card sold" in page.inner_text("#done-detail")
            typed_total("25.00")
            page.keyboard.press("F11")
            page.wait_for_selector("body[data-state='payment']")
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-state='done']")
            page.keyboard.press("F1")
            page.wait_for_selector("#prompt[data-for='gift_pay']:not([hidden])")
            tap(plastic, daemon)
            page.wait_for_selector("#gift-done li[data-kind='gift_redeem']")
            assert "7.00" in page.inner_text("#t-payable") and "7.00" in page.inner_text("#prompt-label")
            tap(lite_s, daemon)
            page.wait_for_selector("#gift-done li[data-kind='gift_redeem']:nth-child(2)")
            assert "0.00" in page.inner_text("#t-payable")
            assert [(d["amount"], d["balance"]) for d in session.snapshot()["gift"]["done"]] == [
                (-1800, 0),
                (-700, 300),
            ]
            two = [e for e in store.entries() if e.kind == "gift_redeem"][-2:]
            assert [e.payload["tap"]["trust"] for e in two] == ["sun", "mac"]

            # A voucher the till sold, scanned after a sale of 8.00: it pays 5.00 of it, and the panel says so.
            def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {daemon.api_token}"}
                answer = httpx.post(f"{base_url(daemon)}{path}", json=body, headers=headers, timeout=10)
                assert answer.status_code in (200, 202), answer.text
                result: dict[str, Any] = answer.json()
                return result

            page.keyboard.press("F6")
            code = call("/v1/vouchers/sell", {"value": 500})["code"]
            typed_total("8.00")
            page.keyboard.press("F11")
            page.wait_for_selector("body[data-state='payment']")
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-state='done']")
            scanned = call("/v1/sim/scan", {"text": code})  # the camera's read, as the scanner hands it over
            assert (scanned["result"], scanned["voucher"]["off"]) == ("voucher_redeemed", 500), scanned
            page.wait_for_selector("#vouchers li")
            assert "5.00 off this sale" in page.inner_text("#vouchers")
            assert "3.00" in page.inner_text("#t-payable")

            # A member's card tapped while the key is armed: refused with its code, not sold, not identified.
            page.keyboard.press("F6")
            typed_total("5.00")
            page.keyboard.press("F1")
            page.wait_for_selector("#prompt[data-for='gift_sell']:not([hidden])")
            member_tag = Ntag424(AIKO_UID, SUN_MASTER)
            before = len(store.entries())
            tap(IsoDepCard(port, AIKO_UID, answering(member_tag)), daemon)
            page.wait_for_selector("#error:not([hidden])")
            assert "[gift_card_member_card]" in page.inner_text("#error")
            assert len(store.entries()) == before and session.snapshot()["member"] is None
            page.keyboard.press("Escape")
            page.wait_for_selector("#prompt", state="hidden")

            admin = hq.cli("admin-token", "panel-test").strip().splitlines()[-1]

            def at_head_office(card: str, balance: int) -> dict[str, Any] | None:
                shown = httpx.get(
                    f"{hq.url}/v1/admin/giftcards/{card}", headers={"Authorization": f"Bearer {admin}"}, timeout=5
                )
                body: dict[str, Any] = shown.json()
                return body if shown.status_code == 200 and body.get("balance") == balance else None

            held = wait_until(lambda: at_head_office(card_id, 0), 30.0, "head office to hold the card's activity")
            assert [a["kind"] for a in held["activity"]] == ["gift_activate", "gift_redeem", "gift_redeem"], json.dumps(
                held
            )
            lite_id = gc.card_id(card_uid_hash(hq.key, LITE_S_IDM))
            wait_until(lambda: at_head_office(lite_id, 300), 30.0, "head office to hold the Lite-S card's activity")
    finally:
        hq.kill()
