"""A top-up from the cashier panel in Debian's Chromium, by keyboard alone, at a till a real head office
enabled: the amount typed (F8), the member (F9), F3; the panel says what was credited in three languages, the
refusal beyond the till's limit shows its code, and head office credits the top-up once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hq.store import HqStore
from tests.api.stack import chromium, chromium_missing, paired_page, running_till
from tests.fixtures.hq import HqProcess
from tests.waiting import wait_until

WAIT = 30_000  # ms


def test_a_topup_from_the_panel_by_keyboard(hq: HqProcess, tmp_path: Path) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    hq.cli("add-member", "M-1", "Aiko Tanaka")
    token = hq.add_terminal("T-PANEL")
    hq.cli("till-topups", "T-PANEL", "--enable", "--per-transaction", "5000", "--per-day", "9000",
           "--per-member-day", "9000")  # fmt: skip
    sections: dict[str, Any] = {
        "terminal": {"id": "T-PANEL"},
        "hq": {"url": hq.url, "token": token, "pull_interval": 0.3, "push_interval": 0.2},
    }
    with running_till(tmp_path, **sections) as daemon, chromium() as browser:
        store, session = daemon.store, daemon.session
        assert store is not None and session is not None
        wait_until(lambda: (store.topup_policy() or {}).get("enabled"), 20.0, "the till's pull of its policy")
        page = paired_page(browser, daemon)
        page.set_default_timeout(WAIT)

        def ask(key: str, awaiting: str, text: str) -> None:
            page.keyboard.press(key)
            wait_until(lambda: session.snapshot()["awaiting"] == awaiting, WAIT / 1000, f"awaiting {awaiting}")
            page.wait_for_selector(f"#prompt[data-for='{awaiting}']:not([hidden]) #prompt-input:focus")
            page.keyboard.type(text)
            page.keyboard.press("Enter")

        ask("F8", "total", "30.00")
        ask("F9", "member", "M-1")
        page.wait_for_selector("body[data-state='member']")
        page.wait_for_selector("#keys span[data-action='topup']:not(.off)")  # F3 is usable now
        page.keyboard.press("F3")
        page.wait_for_selector("body[data-state='done']")
        detail = page.inner_text("#done-detail")
        assert "Top-up" in detail and "30.00" in detail, detail
        page.keyboard.press("F2")
        page.wait_for_function("document.documentElement.lang === 'ja'")
        assert "チャージ" in page.inner_text("#done-detail")
        page.keyboard.press("F2")
        page.keyboard.press("F2")
        page.wait_for_function("document.documentElement.lang === 'en'")
        [entry] = [e for e in store.entries() if e.kind == "till_topup"]
        assert entry.payload["amount"] == 3000 and entry.payload["member_id"] == "M-1"

        # The next top-up beyond one transaction's limit: refused, its code shown, nothing recorded.
        page.keyboard.press("F6")
        page.wait_for_selector("body[data-state='idle']")
        ask("F8", "total", "50.01")
        ask("F9", "member", "M-1")
        page.wait_for_selector("body[data-state='member']")
        page.keyboard.press("F3")
        page.wait_for_selector("#error:not([hidden])")
        assert "[topup_limit_transaction]" in page.inner_text("#error")
        assert [e.kind for e in store.entries()] == ["till_topup"]

        def credited() -> int | None:
            admin = HqStore(hq.db)
            try:
                member = admin.member("M-1")
            finally:
                admin.close()
            return member.stored_value if member is not None and member.stored_value else None

        assert wait_until(credited, 20.0, "head office's credit") == 3000
