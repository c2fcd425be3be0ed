"""Checking in by scanning a till's rotating QR, end to end: a real head-office process and a real till
process (``tillpoint hq serve``, ``tillpoint run``) on 127.0.0.1; the till's door display (its panel's
check-in page) in Debian's Chromium, its QR read from the screen with zxing-cpp; the link it carries opened
by a phone (Chromium at 360 x 740) that signs in with the code head office sent and checks in: the visit and
the check-in campaign's coupon, once; the same QR again is refused (``checkin_used``), and the display's
next code is a new one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hq import campaigns, segments, stats
from hq.store import HqStore
from hq.wallet import signin
from tests.api.stack import CHROMIUM, CHROMIUM_FLAGS, chromium_missing, playwright
from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import NotifyListener, TillProcess, till_config
from tests.sync.test_wallet_browser import PHONE, check_page
from tests.waiting import wait_until

EMAIL = "rin.checkin@example.com"  # not a demo contact (head office seeds its demo members)
REWARD = {"kind": "amount_off", "value": 150, "text": "1.50 off for checking in"}


def seed(db: str) -> str:
    """A member with a contact, a check-in campaign, the till registered; the till's token."""
    hq = HqStore(db)
    try:
        hq.upsert_member("M-A", "Aiko", "basic", 0)
        hq.db.transact(lambda tx: signin.set_contact(tx, "M-A", signin.contact_of(EMAIL), "test", 0, take=True))
        segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**9}}, "t")
        spec = {
            "name": "Check in",
            "segment": "everyone",
            "variants": [{"variant": "coupon", "coupon": REWARD}],
            "schedule": {"kind": "checkin"},
            "control_share": 0,
            "require_consent": False,
        }
        campaigns.save(hq.db, "door", spec, "test")
        campaigns.change_state(hq.db, "door", "active")
        return hq.add_terminal("T-E2E", "S-001")
    finally:
        hq.close()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[HqProcess, TillProcess, Path]]:
    outbox = tmp_path / "outbox"
    hq = HqProcess(tmp_path, extra=("--wallet-sender", f"file:{outbox}"))
    token = seed(hq.db)
    hq.start()
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, hq, token, terminal_id="T-E2E"), notify)
    till.start()
    try:
        yield hq, till, outbox
    finally:
        till.stop()
        notify.close()
        hq.kill()


# A phone browser's BarcodeDetector (Chrome on Android has one; Chromium on desktop Linux has none): this
# stand-in answers what the camera sees with the text the test read from the display's screen with zxing-cpp.
DETECTOR = """window.BarcodeDetector = class {
  constructor(options) { window.__detectorFormats = options.formats; }
  async detect(source) {
    window.__detectedFrom = source.tagName + ":" + (source.srcObject ? source.srcObject.getVideoTracks().length : 0);
    return window.__seen ? [{rawValue: window.__seen, format: "qr_code"}] : [];
  }
};"""


@contextmanager
def browser_with_a_camera() -> Iterator[Any]:
    """Debian's Chromium with a fake camera (a test pattern) that pages may open without a prompt."""
    flags = [*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    browser = playwright().chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
    try:
        yield browser
    finally:
        browser.close()


def read_qr(png: bytes) -> set[str]:
    """The texts of the codes in a screenshot (zxing-cpp may find one code twice: a set)."""
    import zxingcpp
    from PIL import Image

    return {str(found.text) for found in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))}


def last_code(outbox: Path) -> str:
    def sent() -> list[dict[str, str]]:
        return [m for p in sorted(outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == EMAIL]

    return str(wait_until(sent, 10.0, "the sign-in code")[-1]["code"])


def visits(db: str, member_id: str) -> int:
    """The member's lifetime visits (``stats.lifetime``: its two rows added up)."""
    hq = HqStore(db)
    try:
        with hq.db.read() as tx:
            return (stats.lifetime(tx, member_id) or stats.Lifetime()).visits
    finally:
        hq.close()


def count(db: str, sql: str) -> int:
    hq = HqStore(db)
    try:
        with hq.db.read() as tx:
            row = tx.one(sql)
        return int(row[0]) if row else 0
    finally:
        hq.close()


def display_link(page: Any) -> str:
    """The link in the QR the door display shows, read from the screen."""
    page.wait_for_selector("#checkin-qr svg")
    read: set[str] = set()
    for _ in range(5):  # the display draws the next code every 30 s: read again if it did while this one was read
        carried = page.get_attribute("#checkin-qr", "data-link")
        read = read_qr(page.locator("#checkin-qr").screenshot())
        if read == {carried} and page.get_attribute("#checkin-qr", "data-link") == carried:
            return str(carried)
    raise AssertionError(f"the display shows {read}, its page says {carried}")


def test_a_phone_checks_in_by_the_tills_rotating_qr_once(chain: tuple[HqProcess, TillProcess, Path]) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    hq, till, outbox = chain
    printed = tillpoint("checkin-code", "--json", "--config", str(till.config))  # the till's command
    assert printed.returncode == 0, printed.stderr
    shown = json.loads(printed.stdout)
    assert shown["link"] == f"{hq.url}/wallet/checkin?c={shown['code']}" and 1 <= shown["renew_in"] <= 30
    drawn = tillpoint("checkin-code", "--config", str(till.config))
    assert drawn.returncode == 0 and any(block in drawn.stdout for block in "\u2580\u2584\u2588"), drawn.stdout
    assert any(line.startswith(f"{hq.url}/wallet/checkin?c=") and len(line) > 140 for line in drawn.stdout.splitlines())
    requested: list[str] = []
    with browser_with_a_camera() as browser:
        display = browser.new_page(viewport={"width": 800, "height": 800})
        display.set_default_timeout(10_000)
        display.goto(f"{till.url}/panel/checkin.html")
        link = display_link(display)
        assert link.startswith(f"{hq.url}/wallet/checkin?c=")
        step = int(str(display.get_attribute("#checkin-qr", "data-step")))
        # The till journals its claim key with its first code: head office checks codes against it.
        wait_until(lambda: count(hq.db, "SELECT COUNT(*) FROM claim_keys") == 1, 20, "the till's key at head office")

        phone = browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True)
        phone.on("request", lambda r: requested.append(r.url))
        page = phone.new_page()
        page.set_default_timeout(10_000)
        page.goto(link)  # what the phone's camera app opens
        page.click("#checkin-sign-in")
        page.fill("#contact", EMAIL)
        page.click("#contact-form button")
        page.fill("#code", last_code(outbox))
        page.click("#code-form button")
        page.wait_for_selector("#checkin-submit")  # back on the link's page, signed in
        assert page.get_attribute("#checkin-store", "data-store") == "S-001"
        check_page(page)
        assert count(hq.db, "SELECT COUNT(*) FROM checkins") == 0  # nothing until the member presses it
        page.click("#checkin-submit")
        page.wait_for_selector("#checked-in")
        assert "1.50 off for checking in" in page.inner_text("#rewards")
        check_page(page)
        page.click("#rewards a")
        page.wait_for_selector("body[data-page=coupons]")
        assert "1.50 off for checking in" in page.inner_text("main")

        page.goto(link)  # the same QR again, the same day
        page.click("#checkin-submit")
        page.wait_for_selector("#error")
        assert page.get_attribute("#error", "data-code") == "checkin_used"

        # The display draws the next step's code by itself: a new code, still refused for today.
        wait_until(
            lambda: int(str(display.get_attribute("#checkin-qr", "data-step"))) > step, 45, "the display's next code"
        )
        fresh = display_link(display)
        assert fresh != link
        page.goto(fresh)
        page.click("#checkin-submit")
        page.wait_for_selector("#error")
        assert page.get_attribute("#error", "data-code") == "checkin_used"

        # The check-in page itself: the code pasted (this browser has no BarcodeDetector: no camera button) ...
        page.goto(f"{hq.url}/wallet/checkin")
        assert page.evaluate("() => 'BarcodeDetector' in window") is False and page.is_hidden("#checkin-camera")
        page.fill("#checkin-code", fresh)
        page.click("#checkin-submit")
        page.wait_for_selector("#error")
        assert page.get_attribute("#error", "data-code") == "checkin_used"
        # ... and, where the browser has one, the camera: the page opens it, the detector's text is sent.
        page.add_init_script(DETECTOR)
        page.goto(f"{hq.url}/wallet/checkin")
        page.wait_for_selector("#checkin-camera:not([hidden])")
        page.click("#checkin-camera")
        page.wait_for_selector("#checkin-video:not([hidden])")
        page.evaluate("(text) => { window.__seen = text; }", display_link(display))
        page.wait_for_selector("#error")
        assert page.get_attribute("#error", "data-code") == "checkin_used"  # the camera's code reached head office
        assert page.url == f"{hq.url}/wallet/checkin"
    assert count(hq.db, "SELECT COUNT(*) FROM checkins") == 1
    assert count(hq.db, "SELECT COUNT(*) FROM coupons WHERE member_id = 'M-A'") == 1
    assert visits(hq.db, "M-A") == 1
    assert all(url.startswith(hq.url) for url in requested), [u for u in requested if not u.startswith(hq.url)]
