"""End to end: a virtual card tapped through real pcscd + pyscard becomes a sale in the journal and
reaches a real head-office process on 127.0.0.1 exactly once."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq.demo import DEMO_RULES
from sync.client import wire_entry
from sync.protocol import PushRequest, PushResponse
from terminal.config import validate
from terminal.daemon import Daemon
from tests.fixtures.hq import HqProcess
from tests.waiting import wait_until

AIKO = bytes.fromhex("04A1B2C3D4E501")  # demo member M-0001, gold, 1200 points
# A demo sale of 10.00 for Aiko under the demo rules (hq/demo.py): base 10 + gold +50 % 5 + her
# personal birthday coupon (+300, single use) = 315 points.
EARNED = 315
AFTER = 1200 + EARNED
BLOCKED_CARD = bytes.fromhex("04A1B2C3D4E503")
BLOCKED_MEMBER = bytes.fromhex("04A1B2C3D4E504")
UNKNOWN = bytes.fromhex("04FFFFFFFFFF01")
pytestmark = pytest.mark.pcsc


class Watched:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        daemon.subscribers.append(self.events.put)

    def next(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.events.get(timeout=left)
            if event["type"] in types:
                return event
        raise AssertionError(f"no {types} event")


def member_points(hq: HqProcess, token: str, member_id: str) -> int:
    found = None
    since = 0
    for _ in range(100):
        page = httpx.get(
            f"{hq.url}/v1/changes",
            params={"since": since, "limit": 500},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        for m in page["members"]:
            if m["member_id"] == member_id:
                found = m["points"]
        since = page["cursor"]
        if not page["more"]:
            break
    assert found is not None
    return int(found)


@pytest.fixture
def till(tmp_path: Path, hq: HqProcess, pcscd: Any) -> Iterator[tuple[Watched, str]]:
    token = hq.add_terminal("T-E2E")
    cfg = validate(
        {
            "terminal": {"id": "T-E2E", "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(hq.key_file)},
            "reader": {"devices": [f"pcsc:{pcscd.reader}"]},
            "hq": {"url": hq.url, "token": token, "push_interval": 0.2, "pull_interval": 0.5, "backoff_max": 0.5},
            "api": {"enabled": False},
            "sale": {"auto_amount": 1000},
        }
    )
    daemon = Daemon(cfg)
    watched = Watched(daemon)
    daemon.start()
    wait_until(
        lambda: (
            daemon.store.counts()["cards"] >= 4
            and len(daemon.store.rule_docs()) >= len(DEMO_RULES)
            and "AIKO-BDAY" in daemon.store.coupon_docs([], "M-0001")
        ),
        what="the first pull of the demo data",
    )
    yield watched, token
    daemon.stop()


def test_tap_becomes_a_sale_that_reaches_head_office_once(till, hq: HqProcess, virtual_card) -> None:  # type: ignore[no-untyped-def]
    watched, token = till
    card = virtual_card(uid=AIKO)
    card.insert()
    member = watched.next("member", "rejected")
    assert member["type"] == "member" and member["member_id"] == "M-0001" and member["points"] == 1200
    sale = watched.next("sale")
    assert sale["points_delta"] == EARNED and sale["points_balance"] == AFTER and sale["seq"] == 1
    card.remove()
    store = watched.daemon.store
    wait_until(lambda: store.pending_count() == 0, what="the sale to be acknowledged")
    assert member_points(hq, token, "M-0001") == AFTER
    # The till's balance after the next pull is head office's, with nothing counted twice.
    wait_until(lambda: store.member("M-0001").points == AFTER, what="pulled balance")

    # The same batch pushed again (a retry after a lost reply) is stored once and gets the same answer.
    [entry] = store.entries()
    batch = PushRequest(
        terminal_id="T-E2E",
        entries=[wire_entry(entry)],  # as the till's sync client sends it
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    replies = [
        PushResponse.model_validate(
            httpx.post(f"{hq.url}/v1/journal", content=batch.model_dump_json(), headers=headers, timeout=5).json()
        )
        for _ in range(2)
    ]
    assert [(r.acked_seq, r.stored, r.duplicates) for r in replies] == [(1, 0, 1), (1, 0, 1)]
    assert member_points(hq, token, "M-0001") == AFTER


def test_head_office_down_never_blocks_a_sale(till, hq: HqProcess, virtual_card) -> None:  # type: ignore[no-untyped-def]
    watched, token = till
    store = watched.daemon.store
    hq.kill()
    card = virtual_card(uid=AIKO)
    card.insert()
    sale = watched.next("sale")
    assert sale["points_balance"] == AFTER  # approved with head office down
    card.remove()
    wait_until(lambda: store.state("offline_since"), what="offline to be noticed")
    assert store.pending_count() == 1
    hq.start()
    wait_until(lambda: store.pending_count() == 0, timeout=20, what="the entry to drain after head office is back")
    assert store.state("offline_since") is None
    assert member_points(hq, token, "M-0001") == AFTER
    # Exactly once at head office, however many retries the outage caused.
    held = httpx.post(
        f"{hq.url}/v1/journal",
        headers={"Authorization": f"Bearer {token}"},
        json={"terminal_id": "T-E2E", "entries": []},
        timeout=5,
    ).json()
    assert held["acked_seq"] == 1


@pytest.mark.parametrize(
    ("uid", "code"),
    [(UNKNOWN, "unknown_card"), (BLOCKED_CARD, "blocked_card"), (BLOCKED_MEMBER, "blocked_member")],
)
def test_rejected_cards_write_no_sale(till, virtual_card, uid: bytes, code: str) -> None:  # type: ignore[no-untyped-def]
    watched, _ = till
    card = virtual_card(uid=uid)
    card.insert()
    rejected = watched.next("rejected", "member", "sale")
    assert rejected["type"] == "rejected" and rejected["code"] == code
    card.remove()
    assert watched.daemon.store.entries() == []
