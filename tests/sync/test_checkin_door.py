"""The door reader and the till's check-in code, with a real till daemon and a real head-office server on
127.0.0.1: a FeliCa card tapped on the till's second reader (nfcpy's ``udp:`` software reader, the card
emulated by nfcpy on the other side) is a check-in journalled at the till, pushed, counted once as a visit
and rewarded once by head office, never the cashier's member; the till's code from its local API (no token)
is checked by head office against the claim key the till journalled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet import checkin
from sync import checkins as codes
from terminal.config import validate
from terminal.credentials import card_uid_hash
from terminal.daemon import Daemon
from tests.fixtures.nfc import FelicaCard, free_udp_port
from tests.sync.test_checkin import checkin_campaign, count
from tests.vcard import uri_message
from tests.waiting import wait_until

KEY = b"tillpoint-door-test-card-hash-key"
IDM = bytes.fromhex("012E4CDE33A85B77")
STORE = "S-CHK"


@pytest.fixture
def door(tmp_path: Path) -> Iterator[tuple[HqStore, ServerHandle, Daemon, int]]:
    key_file = tmp_path / "card-hash.key"
    key_file.write_bytes(KEY)
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.upsert_member("M-A", "Aiko", "basic", 0)
    hq.upsert_card(card_uid_hash(KEY, IDM), "M-A")
    checkin_campaign(hq)
    token = hq.add_terminal("T-DOOR", STORE)
    server = start_in_thread(hq)
    port = free_udp_port()
    cfg = validate(
        {
            "terminal": {"id": "T-DOOR", "store_id": STORE, "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(key_file)},
            "reader": {"devices": ["sim:"]},
            "door": {"devices": [f"nfcpy:udp:127.0.0.1:{port}"]},
            "checkin": {"wallet_url": "https://wallet.example"},
            "hq": {"url": server.url, "token": token, "pull_interval": 0.5, "push_interval": 0.2},
            "api": {"port": 0},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        yield hq, server, daemon, port
    finally:
        daemon.stop()
        server.stop()
        hq.close()


def events(daemon: Daemon, kind: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events_after(0) if e["type"] == kind]


@pytest.mark.slow
def test_a_tap_on_the_door_reader_is_a_visit_once_and_its_reward_once(
    door: tuple[HqStore, ServerHandle, Daemon, int],
) -> None:
    hq, _, daemon, port = door
    assert daemon.store is not None
    wait_until(lambda: daemon.store.card(card_uid_hash(KEY, IDM)) is not None, 30, "the till to pull the card")  # type: ignore[union-attr]
    card = FelicaCard(port, IDM, uri_message("https://tillpoint.example/m/1"))
    card.tap()
    try:
        wait_until(lambda: events(daemon, "checkin"), 20, "the door tap's check-in")
    finally:
        card.lift()
    assert card.error is None
    assert events(daemon, "checkin")[0]["member_id"] == "M-A"
    assert daemon.last_tap.get() is None and not events(daemon, "member")  # the door is not the counter
    wait_until(lambda: count(hq, "SELECT COUNT(*) FROM checkins WHERE rewarded_at IS NOT NULL") == 1, 20, "the visit")
    with hq.db.read() as tx:
        row = tx.one("SELECT member_id, store_id, terminal_id, source FROM checkins")
    assert row is not None and tuple(row) == ("M-A", STORE, "T-DOOR", "door")
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id = 'M-A'") == 1
    assert count(hq, "SELECT COUNT(*) FROM journal WHERE kind = 'checkin' AND effect = 'none'") >= 1
    # The till's rotating code, from its local API with no token: a link to the wallet, checked by head office.
    api = f"http://127.0.0.1:{daemon.api_server.port}"  # type: ignore[union-attr]
    shown = httpx.get(f"{api}/v1/checkin/code", timeout=10).json()
    assert shown["link"] == f"https://wallet.example/wallet/checkin?c={shown['code']}"
    assert shown["svg"].startswith("<svg") and 1 <= shown["renew_in"] <= 30
    assert shown["step"] == codes.step_of(time.time()) or shown["step"] == codes.step_of(time.time()) - 1
    wait_until(lambda: count(hq, "SELECT COUNT(*) FROM claim_keys WHERE terminal_id = 'T-DOOR'") == 1, 20, "the key")
    with hq.db.read() as tx:
        till = checkin.till_of_code(tx, shown["link"], time.time())
    assert (till.terminal_id, till.store_id) == ("T-DOOR", STORE)
    with pytest.raises(checkin.CheckinRefused) as used:  # the door's visit already counts for today
        hq.db.transact(lambda tx: checkin.check_in(tx, hq.settings, "M-A", shown["code"], time.time()))
    assert used.value.code.value == "checkin_used"
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id = 'M-A'") == 1
