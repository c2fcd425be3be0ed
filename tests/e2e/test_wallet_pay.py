"""End to end: a member sets up paying in the wallet in Chromium, loses the network, and pays at a till that has
lost head office too.

A real head-office process (the file sender for the sign-in code); the member signs in through the pages and
sets the phone up with the keyboard; a till (SQLite store, service, sync client with online confirmation)
pulls the device certificate; then the phone goes offline (the service worker serves the pay page and its
scripts, the codes are made from IndexedDB) and head office stops; the phone's own member code identifies the
member; the page's screenshot of a payment code is held up to the till's camera pipeline (OpenCV reading a video of it, zxing-cpp decoding); the till approves the payment under
its offline rules; when head office is back the sale reaches it once, with the balance right."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zxingcpp

from drivers import open_scanner
from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from terminal import payments as pay
from terminal.identity import Payment
from terminal.model import Basket, Line, QrRead, ReaderEvent
from terminal.qrcodes import qr_text
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import chromium, chromium_missing, too_wide
from tests.fixtures.hq import HqProcess
from tests.fixtures.video import write_video
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE = {"width": 360, "height": 740}
EMAIL = "pat@example.com"
FRAME = (1920, 1080)


@pytest.fixture
def hq_proc(tmp_path: Path) -> Iterator[HqProcess]:
    process = HqProcess(tmp_path / "hq", extra=("--wallet-sender", f"file:{tmp_path / 'outbox'}"))
    process.start()
    yield process
    process.kill()


def sign_in(page: Any, url: str, outbox: Path) -> None:
    page.goto(f"{url}/wallet/sign-in")
    page.fill("#contact", EMAIL)
    page.click("#contact-form button")
    page.wait_for_selector("#code-form")

    def sent() -> list[dict[str, str]]:
        return [m for p in sorted(outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == EMAIL]

    page.fill("#code", str(wait_until(sent, 5.0, "the sign-in code")[-1]["code"]))
    page.click("#code-form button")
    page.wait_for_selector("body[data-page=overview]")


def press_by_keyboard(page: Any, selector: str) -> None:
    """Tab from the top of the page to ``selector``, then Enter: the control is reachable and works by keyboard."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            page.keyboard.press("Enter")
            return
    pytest.fail(f"{selector} is not reachable with Tab")


def held_to_camera(screenshot: bytes, path: Path) -> Path:
    """A video of the phone's screen held still in front of a 1080p till camera, slightly out of focus."""
    phone = cv2.imdecode(np.frombuffer(screenshot, np.uint8), cv2.IMREAD_COLOR)
    scale = FRAME[1] * 0.95 / phone.shape[0]
    phone = cv2.resize(phone, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((FRAME[1], FRAME[0], 3), 90, np.uint8)
    top, left = (FRAME[1] - phone.shape[0]) // 2, (FRAME[0] - phone.shape[1]) // 2
    frame[top : top + phone.shape[0], left : left + phone.shape[1]] = phone
    frame = cv2.GaussianBlur(frame, (0, 0), 1.0)
    rng = np.random.default_rng(7)
    frames = [np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8) for _ in range(45)]
    return write_video(path, frames)


def read_with_camera(video: Path, timeout: float = 20.0) -> str:
    reads: queue.Queue[QrRead] = queue.Queue()
    events: list[ReaderEvent] = []
    scanner = open_scanner(f"camera:{video}")
    scanner.start(reads.put, events.append)
    try:
        return reads.get(timeout=timeout).text
    except queue.Empty:
        pytest.fail(f"the camera read no code within {timeout} s: {events}")
    finally:
        scanner.stop()


def test_a_code_made_in_the_wallet_with_no_network_pays_at_an_offline_till_through_its_camera(
    hq_proc: HqProcess, tmp_path: Path
) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    hq_proc.cli("add-member", "M-PAT", "Pat Phone")
    hq_proc.cli("topup", "M-PAT", "5000", "--by", "Mio")
    hq_proc.cli("contact", "M-PAT", "--email", EMAIL)
    terminal_token = hq_proc.add_terminal("T-CAM")
    requested: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="en-GB")
        context.on("request", lambda r: requested.append(r.url))
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, hq_proc.url, tmp_path / "outbox")
        page.click("nav a[href='/wallet/pay']")
        page.wait_for_selector("#pay[data-state=setup]")
        assert page.evaluate("async () => !!(await navigator.serviceWorker.ready).active")
        press_by_keyboard(page, "#pay-setup-button")
        page.wait_for_selector("#pay[data-state=ready]")
        assert page.evaluate("() => document.activeElement.id") == "pay-new"
        assert too_wide(page, PHONE["width"]) == []
        online_code = str(page.get_attribute("#pay-code", "data-code"))
        cert_id = pay.parse_code(online_code).cert_id.hex()

        till = Store.open(tmp_path / "till" / "t.db")
        client = SyncClient(till, "T-CAM", hq_proc.url, terminal_token, timeout=3)
        client.sync_once()  # the member, the balance, the payment key, the browser's certificate
        assert till.device_cert(cert_id) is not None and till.stored_value("M-PAT") == 5000
        service = Service(till, "T-CAM")
        service.confirm_online = confirmer(client)

        # No network for the phone, and head office gone for the till.
        context.set_offline(True)
        hq_proc.kill()
        page.goto(f"{hq_proc.url}/wallet/pay")  # answered by the service worker
        page.wait_for_selector("#pay[data-state=ready]")
        page.wait_for_selector("#pay-offline:not([hidden])")
        offline_code = str(page.get_attribute("#pay-code", "data-code"))
        assert pay.parse_code(offline_code).counter > pay.parse_code(online_code).counter

        # The member code the phone makes itself identifies the member at the till, neither side online.
        page.click("#pay-switch")
        page.wait_for_selector("#pay-code[data-kind=member][data-code^='TPM2:']")
        found = zxingcpp.read_barcodes(cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_GRAYSCALE))
        assert len(found) == 1 and found[0].text.startswith("TPM2:")
        identified = service.read_member_code(2, found[0].text[5:])
        assert identified.member_id == "M-PAT" and identified.proof is not None

        page.click("#pay-switch")
        page.wait_for_selector("#pay-code[data-kind=pay][data-code^='TPP1:']")
        for _ in range(2):  # the page renews the code at each 30 s step: read again if it did during the screenshot
            code = str(page.get_attribute("#pay-code", "data-code"))
            shot = page.screenshot()
            if page.get_attribute("#pay-code", "data-code") == code:
                break
        assert pay.parse_code(code).counter > pay.parse_code(identified.proof).counter
        found = zxingcpp.read_barcodes(cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_GRAYSCALE))
        assert [b.text for b in found] == [qr_text(code)]  # the same bytes in base45, as the till's own codes
        seen = read_with_camera(held_to_camera(shot, tmp_path / "counter.avi"))
        assert pay.parse_code(seen) == pay.parse_code(code)

        receipt = service.commit(service.quote("M-PAT", Basket((Line("BENTO", 1, 1200),))), Payment(1200, seen))
        assert receipt.total == 1200 and till.stored_value("M-PAT") == 3800

        hq_proc.start()
        client.sync_once()
        client.close()
        till.close()
    assert {u.split("/")[2] for u in requested} == {f"127.0.0.1:{hq_proc.port}"}  # nothing from anywhere else
    hq = HqStore(hq_proc.db)
    try:
        sales = [
            (e.kind, e.payload["stored_value"], e.payload["code_id"], e.payload["offline"]) for e in hq.entries("T-CAM")
        ]
        assert sales == [("sale", 1200, pay.parse_code(code).code_id, True)]  # taken under the offline rules
        assert hq.member("M-PAT").stored_value == 3800  # type: ignore[union-attr]
        assert not [i for i in hq.items() if i.state.value == "open"]
    finally:
        hq.close()
