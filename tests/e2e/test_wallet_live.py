"""A sale rung at a till that is online shows in the member's wallet within 10 s: a real head office on
127.0.0.1 serving the wallet, a real till daemon syncing with it, the POS ringing the sale through the
till's local API, the member signed in to the wallet with a one-time code."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet.senders import FileSender
from terminal.config import validate
from terminal.daemon import Daemon
from tests.waiting import wait_until

EMAIL = "aiko@example.com"
LINES = [{"sku": "LATTE", "quantity": 3, "unit_price": 1111, "category": "coffee"}]  # 33.33: easy to spot


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[HqStore, ServerHandle, Daemon, Path]]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.upsert_member("M-A", "Aiko", "basic", 0)
    hq.set_rule("base", 1, 100)
    token = hq.add_terminal("T-LIVE", "S-001")
    outbox = tmp_path / "outbox"
    server = start_in_thread(hq, wallet_sender=FileSender(outbox))
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    assert httpx.put(f"{server.url}/v1/admin/members/M-A/contacts", json={"email": EMAIL}, headers=admin).is_success
    cfg = validate(
        {
            "terminal": {"id": "T-LIVE", "store_id": "S-001", "data_dir": str(tmp_path / "till")},
            "reader": {"devices": ["sim:"]},
            "hq": {"url": server.url, "token": token, "pull_interval": 1.0},
            "api": {"port": 0},
            "payments": {"spend_needs_proof": False},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        yield hq, server, daemon, outbox
    finally:
        daemon.stop()
        server.stop()
        hq.close()


def signed_in(url: str, outbox: Path) -> httpx.Client:
    client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=10, follow_redirects=False)
    assert client.post("/wallet/sign-in/code", data={"contact": EMAIL}).status_code == 200
    sent = wait_until(lambda: sorted(outbox.glob("*.json")), 10, "the sign-in code")
    code = json.loads(sent[-1].read_text())["code"]
    assert client.post("/wallet/sign-in", data={"contact": EMAIL, "code": code}).status_code in (200, 303)
    return client


@pytest.mark.slow
def test_a_sale_at_an_online_till_shows_in_the_wallet_within_10_s(
    chain: tuple[HqStore, ServerHandle, Daemon, Path],
) -> None:
    _, server, daemon, outbox = chain
    assert daemon.store is not None
    wait_until(lambda: daemon.store.member("M-A") is not None, 30, "the till to pull the member")  # type: ignore[union-attr]
    wallet = signed_in(server.url, outbox)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{daemon.api_server.port}",
        headers={"Authorization": f"Bearer {daemon.api_token}"},
        timeout=10,
    ) as pos:
        before = wallet.get("/wallet/activity")
        assert before.status_code == 200 and "33.33" not in before.text
        sold = pos.post("/v1/sales", json={"member_id": "M-A", "lines": LINES})
        assert sold.status_code == 200, sold.text
        rung = time.monotonic()

        def shown() -> bool:
            page = wallet.get("/wallet/activity").text
            return bool(re.search(r"33[.,]33", page))

        wait_until(shown, 10.0, "the sale in the wallet", step=0.2)
        assert time.monotonic() - rung <= 10.0
    wallet.close()
