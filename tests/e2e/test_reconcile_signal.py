"""Reconciliation a person can act on, and head office owning time, against a real head-office process:
thousands of items read as one group with a count, every item reached once through cursor pages (CLI and
HTTP), a summary per cause, a group settled at once; members and cards blocked and unblocked from the
command line and refused at the till after its pull; a till three days slow has its sales filed under
head office's day and names its clock when a member's payment code is refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hq.ingest import Settings
from hq.store import HqStore
from sync.client import SyncClient
from sync.protocol import WireEntry
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess, tillpoint

MANY = 2500  # more than the 1,000 a page holds


@pytest.fixture
def hq(module_hq: HqProcess) -> HqProcess:
    return module_hq


def flood(hq: HqProcess, terminal_id: str, store_id: str, n: int) -> None:
    """``n`` sales to a member head office does not know: one ``unknown_member`` item each (not priced
    again: that is another test's)."""
    admin = HqStore(hq.db, Settings(recompute=False))
    try:
        made = utc_iso(time.time())
        batch = [
            WireEntry(
                terminal_id=terminal_id,
                seq=s,
                txn_id=f"{terminal_id}-{s}",
                kind="sale",
                created_at=made,
                payload=entries.sale("M-NOBODY", 1000, store_id=store_id),
            )
            for s in range(1, n + 1)
        ]
        for start in range(0, n, 500):
            admin.ingest(terminal_id, batch[start : start + 500])
    finally:
        admin.close()


def cli(hq: HqProcess, *args: str) -> tuple[str, str]:
    done = tillpoint("hq", *args, "--db", hq.db)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout, done.stderr


def test_thousands_of_items_are_one_group_and_every_item_is_reached_once(hq: HqProcess) -> None:
    hq.add_terminal("T-FLOOD", "S-FLOOD")
    flood(hq, "T-FLOOD", "S-FLOOD", MANY)
    groups = json.loads(cli(hq, "groups", "--terminal-id", "T-FLOOD", "--json")[0])
    assert [(g["reason"], g["count"], g["state"]) for g in groups] == [("unknown_member", MANY, "open")]
    summary = json.loads(cli(hq, "summary", "--store-id", "S-FLOOD", "--json")[0])
    assert summary == {"unknown_member": {"open": MANY, "quarantined": 0, "settled_auto": 0, "settled_manual": 0}}

    seen: list[str] = []
    after: list[str] = []
    for _ in range(10):  # bounded: 3 pages expected
        out, err = cli(hq, "items", "--terminal-id", "T-FLOOD", "--limit", "1000", "--json", *after)
        seen += [i["item_id"] for i in json.loads(out)]
        if "more:" not in err:
            break
        after = ["--after", err.split("--after", 1)[1].strip()]
    assert len(seen) == MANY and len(set(seen)) == MANY  # every item once: the page end is said, not silent

    token = cli(hq, "admin-token", "Mio")[0].strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    api_seen: list[str] = []
    params: dict[str, str | int] = {"terminal_id": "T-FLOOD", "limit": 700}
    for _ in range(10):
        reply = httpx.get(f"{hq.url}/v1/admin/items", params=params, headers=headers, timeout=30)
        assert reply.status_code == 200
        api_seen += [i["item_id"] for i in reply.json()]
        if "x-next-cursor" not in reply.headers:
            break
        params["after"] = reply.headers["x-next-cursor"]
    assert sorted(api_seen) == sorted(seen)
    bad = httpx.get(f"{hq.url}/v1/admin/items", params={"after": "not-a-cursor"}, headers=headers, timeout=10)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    grouped = httpx.get(
        f"{hq.url}/v1/admin/item-groups", params={"terminal_id": "T-FLOOD"}, headers=headers, timeout=10
    ).json()
    assert [g["count"] for g in grouped["groups"]] == [MANY] and grouped["next_cursor"] is None

    day = groups[0]["day"]
    out, _ = cli(
        hq,
        "settle-group",
        "--terminal-id",
        "T-FLOOD",
        "--day",
        day,
        "--reason",
        "unknown_member",
        "--by",
        "Mio",
        "--note",
        "test sales of a till in the workshop",
    )
    assert f"settled {MANY} item(s)" in out
    after_settle = json.loads(cli(hq, "summary", "--store-id", "S-FLOOD", "--json")[0])
    assert after_settle["unknown_member"]["open"] == 0 and after_settle["unknown_member"]["settled_manual"] == MANY


def test_head_office_blocks_and_unblocks_members_and_cards_and_tills_follow(hq: HqProcess, tmp_path: Path) -> None:
    token = hq.add_terminal("T-BLK", "S-BLK")
    store = Store.open(tmp_path / "till" / "t.db")
    client = SyncClient(store, "T-BLK", hq.url, token)
    service = Service(store, "T-BLK")
    try:
        client.sync_once()
        assert service.member("M-0001").member_id == "M-0001"
        blocked = json.loads(cli(hq, "block", "member", "M-0001", "--by", "Mio", "--reason", "fraud suspected")[0])
        assert blocked["status"] == "blocked" and blocked["changed"]
        client.sync_once()
        with pytest.raises(Rejected) as refused:
            service.member("M-0001")
        assert refused.value.code is Code.BLOCKED_MEMBER
        cli(hq, "unblock", "member", "M-0001", "--by", "Mio", "--reason", "cleared")
        client.sync_once()
        assert service.member("M-0001").member_id == "M-0001"

        admin = HqStore(hq.db)
        with admin.db.read() as tx:
            row = tx.one("SELECT uid_hash FROM cards WHERE member_id = 'M-0002' AND deleted = 0")
        admin.close()
        assert row is not None and store.card(str(row[0])).status.value == "active"  # type: ignore[union-attr]
        cli(hq, "block", "card", str(row[0]), "--by", "Mio", "--reason", "reported lost")
        client.sync_once()
        assert store.card(str(row[0])).status.value == "blocked"  # type: ignore[union-attr]
        unknown = tillpoint("hq", "block", "member", "M-NOT-THERE", "--by", "Mio", "--reason", "x", "--db", hq.db)
        assert unknown.returncode == 1 and "no member M-NOT-THERE" in unknown.stdout
        no_reason = tillpoint("hq", "block", "member", "M-0003", "--by", "Mio", "--reason", " ", "--db", hq.db)
        assert no_reason.returncode == 1 and "who and why" in no_reason.stdout
    finally:
        client.close()
        store.close()


def test_a_till_three_days_slow_is_corrected_and_names_its_clock(hq: HqProcess, tmp_path: Path) -> None:
    slow = 3 * 86400.0
    clock = lambda: time.time() - slow  # noqa: E731 - the till PC's wrong clock
    hq.cli("add-member", "M-SLOW", "Slow Sam")
    hq.cli("topup", "M-SLOW", "5000", "--by", "Mio")
    member_token = hq.cli("member-token", "M-SLOW").strip().splitlines()[-1]
    phone = tmp_path / "phone"
    done = tillpoint("member", "register", "M-SLOW", "--hq", hq.url, "--token", member_token, "--state-dir", str(phone))
    assert done.returncode == 0, done.stderr

    token = hq.add_terminal("T-SLOW", "S-SLOW")
    hq.cli("store", "S-SLOW", "--timezone", "UTC", "--day-starts", "00:00")
    store = Store.open(tmp_path / "till" / "t.db")
    client = SyncClient(store, "T-SLOW", hq.url, token, clock=clock)
    service = Service(store, "T-SLOW", clock=clock, store_id="S-SLOW")
    try:
        client.sync_once()
        assert client.hq_clock_offset is not None and abs(client.hq_clock_offset + slow) < 60
        assert abs(float(store.state("hq_clock_offset") or 0) + slow) < 60
        code = tillpoint("member", "code", "M-SLOW", "--state-dir", str(phone), "--quiet").stdout.strip()
        quote = service.quote("M-SLOW", Basket((Line("ITEM", 1, 800),)))
        with pytest.raises(Rejected) as refused:
            service.commit(quote, Payment(code=code))
        assert refused.value.code is Code.TILL_CLOCK_WRONG, refused.value  # not device_cert_expired
        assert "behind" in refused.value.message

        service.commit(service.quote("M-SLOW", Basket((Line("ITEM", 1, 800),))))  # a sale that pays at the POS
        client.sync_once()
    finally:
        client.close()
        store.close()
    today = datetime.now(UTC).date().isoformat()
    rows = json.loads(cli(hq, "report", "--terminal-id", "T-SLOW", "--format", "json")[0])
    assert [(r["day"], r["entries"]) for r in rows if r["entries"]] == [(today, 1)]  # head office's day, not 3 days ago
    stats = json.loads(cli(hq, "stats", "show", "M-SLOW", "--json")[0])  # the member's visit: that day too
    assert stats["visits"] == 1 and (stats["last_visit"] or "")[:10] == today, stats
    groups = json.loads(cli(hq, "groups", "--terminal-id", "T-SLOW", "--json")[0])
    assert {g["reason"] for g in groups} >= {"clock_skew", "clock_behind"}
