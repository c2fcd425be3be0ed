"""A reward bought from the cashier panel in Debian's Chromium at 1280x800, at a till of a real head office
that trusts its POS to vouch for the member (``--trust-pos``): the member typed in (F9), the reward's button,
Pay twice; head office counts the stock unit once and the member's points once, and its books balance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hq import ledger
from hq.store import HqStore
from tests.api.stack import chromium, chromium_missing, paired_page, running_till, too_wide
from tests.fixtures.hq import HqProcess
from tests.waiting import wait_until

WAIT = 30_000  # ms
LATTE = {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "Latte on us", "stock": 2}


def at_head_office(hq: HqProcess, sql: str) -> Any:
    store = HqStore(hq.db)
    try:
        with store.db.read() as tx:
            return tx.one(sql)
    finally:
        store.close()


def test_a_reward_from_the_panel(tmp_path: Path) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    hq = HqProcess(tmp_path / "office", extra=("--trust-pos",))
    admin = HqStore(hq.db)
    try:
        token = admin.add_terminal("T-PANEL", "S-001")
        admin.upsert_member("M-1", "Aiko Tanaka", "gold", 1200)
        admin.put_reward(LATTE)
    finally:
        admin.close()
    hq.start(timeout=120)  # a loaded machine is slow, not wrong
    sections: dict[str, Any] = {
        "hq": {"url": hq.url, "token": token, "pull_interval": 0.3, "push_interval": 0.2},
        "payments": {"spend_needs_proof": False},
    }
    try:
        with running_till(tmp_path, **sections) as daemon, chromium() as browser:
            store, session = daemon.store, daemon.session
            assert store is not None and session is not None
            wait_until(lambda: store.pool_headroom(["reward:LATTE"]).get("reward:LATTE"), 20.0, "the allocation")
            page = paired_page(browser, daemon, 1280, 800)
            page.set_default_timeout(WAIT)
            page.keyboard.press("F9")
            wait_until(lambda: session.snapshot()["awaiting"] == "member", WAIT / 1000, "awaiting the member")
            page.wait_for_selector("#prompt[data-for='member']:not([hidden]) #prompt-input:focus")
            page.keyboard.type("M-1")
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-state='member']")
            page.click("#rewards li[data-reward='LATTE'] button")
            page.wait_for_selector("#rewards li[data-reward='LATTE'] button[aria-pressed='true']")
            assert "300 pt" in page.inner_text("#t-redeem")
            assert too_wide(page, 1280) == []
            page.keyboard.press("F11")
            page.wait_for_selector("body[data-state='payment']")
            page.keyboard.press("F11")  # pay again is confirm
            page.wait_for_selector("body[data-state='done']")
            [sale] = [e for e in store.entries() if e.kind == "sale"]
            assert sale.payload["rewards"] == [{"reward_id": "LATTE", "points": 300}]
            wait_until(lambda: at_head_office(hq, "SELECT COUNT(*) FROM reward_purchases") == (1,), 20.0, "head office")
        assert at_head_office(hq, "SELECT points FROM members WHERE member_id = 'M-1'") == (900,)
        assert at_head_office(hq, "SELECT used FROM pools WHERE pool_id = 'reward:LATTE'") == (1,)
        assert at_head_office(hq, "SELECT COUNT(*) FROM recon_items WHERE quarantine = 1") == (0,)
        check = HqStore(hq.db)
        try:
            with check.db.read() as tx:
                assert ledger.check(tx) == []
        finally:
            check.close()
    finally:
        hq.kill()
