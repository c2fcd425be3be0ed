"""A till daemon with demo data, and Debian's Chromium driven by Playwright: shared by the panel
tests (tests/e2e/test_panel_*.py, tests/api/) and bench/bench_panel.py.

Chromium is never downloaded: Playwright drives the Debian package's /usr/bin/chromium with the
flags that work headless as root (``CHROMIUM_FLAGS``: no sandbox, since Chromium's sandbox refuses to run
as root; no GPU, QUIC, first-run page or background network, so nothing but the page under test reaches
the network); one Chromium a test module, each test's pages in contexts of their own (fresh profiles).
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.config import Config, validate
from terminal.credentials import card_uid_hash
from terminal.daemon import Daemon
from terminal.keys import load_or_create_key
from terminal.model import Card, EarnRule, Member
from tests.fixtures.codes import install_member_key, member_code
from tests.ports import closed_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PACKAGE = "chromium (apt-get install chromium)"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

AIKO_UID = bytes.fromhex("04A1B2C3D4E501")
BEN_CODE = member_code("M-2")  # Ben's member QR, signed by head office (identify-only)
RULES = {
    "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 50},
    "coffee": {"kind": "campaign", "multiplier_pct": 200, "categories": ["coffee"], "text": "double on coffee"},
}
COUPONS = {
    "WELCOME": {"kind": "amount_off", "value": 300, "text": "3.00 welcome"},
    "BIGSPEND": {"kind": "amount_off", "value": 500, "min_spend": 10000, "member_id": "M-1", "text": "5.00 off 100.00"},
}


SUN_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")  # the chain's NTAG 424 DNA master key (tests)


def till_config(root: Path, device: str = "sim:", **sections: dict[str, Any]) -> Config:
    """A till whose head office does not answer (offline: the panel's banner shows it); it verifies
    NTAG 424 DNA cards made with ``SUN_MASTER``."""
    (root / "sun.key").write_bytes(SUN_MASTER)
    raw: dict[str, Any] = {
        "terminal": {"id": "T-PANEL", "data_dir": str(root / "till"), "currency": "EUR"},
        "security": {"card_key_file": str(root / "card-hash.key")},
        "reader": {"devices": [device], "sun_key_file": str(root / "sun.key")},
        "hq": {
            "url": f"http://127.0.0.1:{closed_port()}",
            "token": "t",
            "push_interval": 0.2,
            "pull_interval": 60,
            "backoff_max": 0.5,
            "timeout": 0.5,
        },
        "api": {"port": 0},
        "hotkeys": {"devices": [str(root / "no-keyboard")]},
        "panel": {"join_url": "https://members.example/join"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return validate(raw)


def seed(daemon: Daemon) -> None:
    store = daemon.store
    assert store is not None
    key = load_or_create_key(daemon.config.card_key_path)
    members = [Member("M-1", "Aiko Tanaka", "gold", 1200), Member("M-2", "Ben Okafor", "basic", 0)]
    store.apply_changes(members, [Card(card_uid_hash(key, AIKO_UID), "M-1")], [EarnRule("base", 1, 100)], 1)
    store.put_docs("rule_docs", dict(RULES))
    store.put_docs("coupon_docs", dict(COUPONS))
    install_member_key(store)


@contextmanager
def running_till(root: Path, device: str = "sim:", **sections: dict[str, Any]) -> Iterator[Daemon]:
    load_or_create_key(root / "card-hash.key")
    daemon = Daemon(till_config(root, device, **sections))
    daemon.start()
    try:
        seed(daemon)
        yield daemon
    finally:
        daemon.stop()


def base_url(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.api_server.port}"


def pairing_code(daemon: Daemon) -> str:
    """What `tillpoint pair` shows on the till's console: a code asked for with the till's own token."""
    reply = httpx.post(
        f"{base_url(daemon)}/v1/pair/code", json={}, headers={"Authorization": f"Bearer {daemon.api_token}"}, timeout=5
    )
    reply.raise_for_status()
    return str(reply.json()["code"])


def chromium_missing() -> str | None:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        return f"Debian's Chromium is not installed: the panel tests need the Debian package {CHROMIUM_PACKAGE}"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    return None


class _Shared:
    """The Playwright and Chromium of the browser modules running, launched by the first test that asks (``chromium``)."""

    driver: Any = None
    browser: Any = None


def stop_chromium() -> None:
    browser, driver = _Shared.browser, _Shared.driver
    _Shared.browser = _Shared.driver = None
    try:
        if browser is not None:
            browser.close()
    finally:
        if driver is not None:
            driver.stop()


atexit.register(stop_chromium)


def playwright() -> Any:
    """This test process's Playwright (its sync API runs once a process), started by the first test that asks;
    a test that needs a Chromium of other flags launches its own from it, and closes it."""
    if _Shared.driver is None:
        from playwright.sync_api import sync_playwright

        _Shared.driver = sync_playwright().start()
    return _Shared.driver


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright; yields the Browser. One Chromium serves a run of browser
    modules (launched by its first test that asks, again if it died; ``stop_chromium`` ends it, as the tests'
    conftest does before a module that drives none, and the process's end); each test opens its own contexts (a context is a fresh
    profile: no cookie, storage or cache of another test's), and those it leaves open are closed after it."""
    missing = chromium_missing()
    if missing:  # a failure saying what to install, not Playwright's trace
        pytest.fail(missing)
    if _Shared.browser is None or not _Shared.browser.is_connected():
        # Playwright gives every launch a fresh temporary profile (it refuses --user-data-dir here).
        _Shared.browser = playwright().chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
    browser = _Shared.browser
    try:
        yield browser
    finally:
        for context in list(browser.contexts):
            context.close()


# The elements that stick out past the window outside any scrolling box: what a failed width check names.
_WIDEST = """(width) => document.documentElement.scrollWidth <= width ? [] : [
  `page ${document.documentElement.scrollWidth}`,
  ...[...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > width)
    .filter((e) => { for (let a = e.parentElement; a; a = a.parentElement) {
        if (["auto", "scroll", "hidden"].includes(getComputedStyle(a).overflowX)) return false; } return true; })
    .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
    .slice(0, 12)]"""


def too_wide(page: Any, width: int) -> list[str]:
    """What makes the page wider than `width` pixels, once its style sheets have loaded (empty when nothing).

    A page is measured only after its load event: measured before, a slow style sheet leaves the page unstyled and
    its tables as wide as their contents."""
    page.wait_for_load_state("load")
    return list(page.evaluate(_WIDEST, width))


def paired_page(browser: Any, daemon: Daemon, width: int = 1024, height: int = 600) -> Any:
    """A panel page paired by keyboard: the code typed, Enter."""
    # bypass_csp: the panel forbids eval (its CSP), which Playwright's wait_for_function needs.
    page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)
    page.set_default_timeout(10_000)
    page.goto(f"{base_url(daemon)}/panel/")
    page.wait_for_selector("#pair-code:focus")
    page.keyboard.type(pairing_code(daemon))
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-state='idle'][data-stream='open']")
    return page
