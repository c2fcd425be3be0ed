"""The whole cashier flow in Debian's Chromium, by keyboard alone: pairing, total, a card tapped
through the real pcscd + vpcd stack, a coupon, points, payment, approval; then a member QR read
through the real OpenCV capture path from a generated video; an anonymous sale with the customer's
claim QR; the three languages and a small second screen.

Screenshots of each state go to a temporary directory, or to docs/screenshots/ with
TILLPOINT_SCREENSHOTS=1 (how the committed ones are made).

Every keystroke waits for what the one before did, on the till and on the page: the panel opens
its prompt at the key press, before the till has armed it, so typing at once can race a request
still in flight (an earlier key's late answer redraws the prompt and empties what was typed). So
``ask`` types only once the till's session awaits that input and the page has drawn that snapshot.
Every wait is bounded, and generously (``WAIT``): a loaded machine is slow, not wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers import open_scanner
from terminal.daemon import Daemon
from tests.api.stack import AIKO_UID, BEN_CODE, SUN_MASTER, chromium, chromium_missing, paired_page, running_till
from tests.fixtures.video import blank, concat, still, write_video
from tests.vcard import ISO_DEP_ATR, Ntag424
from tests.waiting import wait_until

pytestmark = pytest.mark.pcsc
ROOT = Path(__file__).resolve().parents[2]
WAIT = 30_000  # ms: the bound of any one wait for the page or the till
ASKS = {"F8": "total", "F9": "member", "F10": "coupon"}  # the keys that open a prompt, and for what


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
    painted(page)
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


def painted(page: Any) -> None:
    """Two animation frames later: what the last render drew is on screen."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def state(page: Any, name: str, timeout: float = WAIT) -> None:
    page.wait_for_selector(f"body[data-state='{name}']", timeout=timeout)


def drawn(page: Any, till: Daemon, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Wait until the till's session satisfies ``check``, then until the page has drawn that
    snapshot (or a later one); returns the snapshot."""
    assert till.session is not None
    session = till.session

    def matching() -> dict[str, Any] | None:
        snap = session.snapshot()
        return snap if check(snap) else None

    snap: dict[str, Any] = wait_until(matching, WAIT / 1000, f"the till's session: {what}")
    page.wait_for_function(f"Number(document.body.dataset.seq) >= {snap['seq']}", timeout=WAIT)
    return snap


def armed(page: Any, till: Daemon, key: str) -> None:
    """Press a prompt's key; return once the till awaits that input and the page's prompt,
    drawn from the till's snapshot, has the keyboard."""
    page.keyboard.press(key)
    drawn(page, till, lambda s: s["awaiting"] == ASKS[key], f"awaiting {ASKS[key]}")
    page.wait_for_selector(f"#prompt[data-for='{ASKS[key]}']:not([hidden]) #prompt-input:focus", timeout=WAIT)


def ask(page: Any, till: Daemon, key: str, text: str) -> None:
    """Press a shortcut, wait for the till to arm its prompt, type, Enter."""
    armed(page, till, key)
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_cashier_flow_by_keyboard_alone(till: Daemon, virtual_card: Any, tmp_path: Path, shots: Path) -> None:
    store = till.store
    assert store is not None
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 600}, bypass_csp=True)
        page.set_default_timeout(WAIT)
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
        ask(page, till, "F8", "25.00")
        page.wait_for_function("document.querySelector('#t-payable').textContent.includes('25.00')")
        armed(page, till, "F9")  # the till awaits a member before the card comes: no tap races the key
        card = virtual_card(uid=AIKO_UID, atr=ISO_DEP_ATR, handler=Ntag424(AIKO_UID, SUN_MASTER))
        card.insert()
        state(page, "member")
        assert page.inner_text("#member-name") == "Aiko Tanaka"
        assert "1,200 pt" in page.inner_text("#member-points")
        assert "card" in page.inner_text("#member-id")
        shot(page, shots, "03-member")
        card.remove()

        # A coupon that does not exist: refused in plain words with its code; then a good one.
        ask(page, till, "F10", "NOPE")
        drawn(page, till, lambda s: bool(s["error"]), "the coupon refused")
        page.wait_for_selector("#error:not([hidden])")
        assert "[unknown_coupon]" in page.inner_text("#error")
        shot(page, shots, "04-refused")
        page.keyboard.press("Escape")
        drawn(page, till, lambda s: s["awaiting"] is None and s["state"] == "member", "the prompt dropped")
        page.wait_for_selector("#prompt", state="hidden")
        ask(page, till, "F10", "WELCOME")
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
        ask(page, till, "F8", "12.50")
        page.keyboard.press("F11")
        state(page, "payment")
        assert page.inner_text("#t-payable").endswith("12.50")
        page.keyboard.press("F11")  # pay again is confirm
        state(page, "done")
        assert [e.payload["member_id"] for e in store.entries()] == ["M-1", "M-2"]

        # An anonymous sale: no member; the customer gets the QR to claim its points.
        page.keyboard.press("F6")
        state(page, "idle")
        ask(page, till, "F8", "8.00")
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
        ask(page, till, "F9", "M-1")
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
