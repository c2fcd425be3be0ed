"""The whole cashier flow in Debian's Chromium, by keyboard alone: pairing, total, a card tapped
through the real pcscd + vpcd stack, a coupon, points, payment, approval; then a member QR read
through the real OpenCV capture path from a generated video; an anonymous sale with the customer's
claim QR; the three languages and a small second screen.

Screenshots of each state go to a temporary directory, or to docs/screenshots/ with
TILLPOINT_SCREENSHOTS=1 (how the committed ones are made).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers import open_scanner
from terminal.daemon import Daemon
from tests.api.stack import AIKO_UID, BEN_CODE, SUN_MASTER, chromium, chromium_missing, paired_page, running_till
from tests.fixtures.video import blank, concat, still, write_video
from tests.vcard import ISO_DEP_ATR, Ntag424

pytestmark = pytest.mark.pcsc
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("TILLPOINT_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path / "screenshots"


@pytest.fixture
def till(tmp_path: Path, pcscd: Any) -> Iterator[Daemon]:
    problem = chromium_missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    with running_till(tmp_path, f"pcsc:{pcscd.reader}") as daemon:
        yield daemon


def shot(page: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(150)  # let the last frame paint
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    small(path)


def small(path: Path) -> None:
    """A 64-colour palette keeps the committed screenshots small and still sharp (flat UI colours)."""
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)


def state(page: Any, name: str, timeout: float = 10_000) -> None:
    page.wait_for_selector(f"body[data-state='{name}']", timeout=timeout)


def ask(page: Any, key: str, text: str) -> None:
    """Press a shortcut, wait for its prompt to have the keyboard, type, Enter."""
    page.keyboard.press(key)
    page.wait_for_selector("#prompt-input:focus")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_cashier_flow_by_keyboard_alone(till: Daemon, virtual_card: Any, tmp_path: Path, shots: Path) -> None:
    store = till.store
    assert store is not None
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 600}, bypass_csp=True)
        page.set_default_timeout(10_000)
        from tests.api.stack import base_url, pairing_code

        page.goto(f"{base_url(till)}/panel/")
        page.wait_for_selector("#pair-code:focus")
        shot(page, shots, "01-pairing")
        page.keyboard.type("000000" if pairing_code(till) != "000000" else "111111")  # a wrong code first
        page.keyboard.press("Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "pairing_refused" in page.inner_text("#error")
        page.fill("#pair-code", "")
        page.keyboard.type(pairing_code(till))
        page.keyboard.press("Enter")
        state(page, "idle")
        page.wait_for_selector("#customer-qr:not([hidden])")  # the join QR
        page.wait_for_selector("#offline:not([hidden])")  # head office does not answer
        shot(page, shots, "02-idle")

        # The POS shows 25.00: the cashier types it in, then identifies the customer by a tap of her
        # secure card (NTAG 424 DNA): it proves she is here, so her points may pay.
        ask(page, "F8", "25.00")
        page.wait_for_function("document.querySelector('#t-payable').textContent.includes('25.00')")
        page.keyboard.press("F9")
        page.wait_for_selector("#prompt-input:focus")
        card = virtual_card(uid=AIKO_UID, atr=ISO_DEP_ATR, handler=Ntag424(AIKO_UID, SUN_MASTER))
        card.insert()
        state(page, "member")
        assert page.inner_text("#member-name") == "Aiko Tanaka"
        assert "1,200 pt" in page.inner_text("#member-points")
        assert "card" in page.inner_text("#member-id")
        shot(page, shots, "03-member")
        card.remove()

        # A coupon that does not exist: refused in plain words with its code; then a good one.
        ask(page, "F10", "NOPE")
        page.wait_for_selector("#error:not([hidden])")
        assert "[unknown_coupon]" in page.inner_text("#error")
        shot(page, shots, "04-refused")
        page.keyboard.press("Escape")
        page.wait_for_selector("#prompt", state="hidden")
        ask(page, "F10", "WELCOME")
        state(page, "coupons")
        page.wait_for_selector("#offers li.applied[data-coupon='WELCOME']")
        assert "[coupon_min_spend]" in page.inner_text("#offers li[data-coupon='BIGSPEND']")
        assert page.inner_text("#t-payable").endswith("22.00")
        shot(page, shots, "05-coupons")

        # Pay: points as money by default, F4 toggles them, Esc backs out, F11 again comes back.
        page.keyboard.press("F11")
        state(page, "payment")
        page.wait_for_function("document.querySelector('#t-redeem').textContent.includes('pt')")
        paying = page.inner_text("#t-payable")
        page.keyboard.press("F4")
        page.wait_for_function(f"document.querySelector('#t-payable').textContent !== {paying!r}")
        assert page.inner_text("#t-payable").endswith("22.00")
        page.keyboard.press("F4")
        page.wait_for_function(f"document.querySelector('#t-payable').textContent === {paying!r}")
        page.keyboard.press("Escape")
        state(page, "coupons")
        page.keyboard.press("F11")
        state(page, "payment")
        shot(page, shots, "06-payment")
        page.keyboard.press("Enter")
        state(page, "done")
        assert page.inner_text("#done .approved") == "Approved"
        [entry] = store.entries()
        assert entry.kind == "sale" and entry.payload["member_id"] == "M-1"
        assert entry.payload["coupons"] == ["WELCOME"] and entry.payload["points_redeemed"] == 1100
        assert entry.payload["proof"] == "card" and entry.payload["tap"]["counter"] == 1
        page.wait_for_function("document.querySelector('#offline').textContent.includes('1 sales')")
        shot(page, shots, "07-done")

        # Next customer: the member QR on their phone, read by the camera (a generated video).
        video = write_video(
            tmp_path / "ben.avi", concat(still(BEN_CODE, (640, 480), 1.5, seed=3), blank((640, 480), 0.5))
        )
        scanner = open_scanner(f"camera:{video}")
        scanner.start(till.on_qr, till.on_reader)
        try:
            state(page, "member")
            page.wait_for_function("document.querySelector('#member-name').textContent === 'Ben Okafor'")
        finally:
            scanner.stop()
        assert "QR" in page.inner_text("#member-id")
        # A slow network between the panel and the till: the amount's request takes 0.4 s, and the cashier
        # presses F11 (pay) at once after Enter. The till must see the amount first, as it was typed first.
        page.evaluate("""() => { const real = window.fetch;
            window.fetch = (url, init) => String(url).includes('/v1/session/total')
              ? new Promise((done) => setTimeout(done, 400)).then(() => real(url, init)) : real(url, init); }""")
        ask(page, "F8", "12.50")
        page.keyboard.press("F11")
        state(page, "payment")
        assert page.inner_text("#t-payable").endswith("12.50")
        page.keyboard.press("F11")  # pay again is confirm
        state(page, "done")
        assert [e.payload["member_id"] for e in store.entries()] == ["M-1", "M-2"]

        # An anonymous sale: no member; the customer gets the QR to claim its points.
        page.keyboard.press("F6")
        state(page, "idle")
        ask(page, "F8", "8.00")
        page.keyboard.press("F11")
        state(page, "payment")
        page.keyboard.press("Enter")
        state(page, "done")
        page.wait_for_selector("#customer-qr:not([hidden])")
        assert page.get_attribute("#qr-img", "alt").startswith("https://members.example/join#TPJ1:")
        shot(page, shots, "08-done-claim-qr")

        # Japanese, Chinese, back to English: one key.
        page.keyboard.press("F2")
        page.wait_for_function("document.documentElement.lang === 'ja'")
        assert page.inner_text("#done .approved") == "承認されました"
        shot(page, shots, "09-done-ja")
        page.keyboard.press("F2")
        page.wait_for_function("document.documentElement.lang === 'zh'")
        assert page.inner_text("#done .approved") == "已批准"
        shot(page, shots, "10-done-zh")
        page.keyboard.press("F2")
        page.wait_for_function("document.documentElement.lang === 'en'")

        # The same panel on a small second screen.
        page.set_viewport_size({"width": 480, "height": 320})
        page.keyboard.press("F6")
        state(page, "idle")
        page.keyboard.press("F9")
        page.wait_for_selector("#prompt-input:focus")
        page.keyboard.type("M-1")
        page.keyboard.press("Enter")
        state(page, "member")
        box = page.locator("#member-name").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 480
        shot(page, shots, "11-small-screen")


def test_the_panel_survives_a_reload_and_keeps_its_pairing(till: Daemon) -> None:
    with chromium() as browser:
        page = paired_page(browser, till)
        page.reload()
        page.wait_for_selector("body[data-state='idle'][data-stream='open']")
        assert page.is_hidden("#pairing")
        # A revoked device is back to pairing at its next request.
        [device] = till.pairing.devices()
        assert till.pairing.revoke(device["device_id"])
        page.reload()
        page.wait_for_selector("body[data-state='pairing']")
