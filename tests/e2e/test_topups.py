"""End to end: stored value sold at the till (docs/stored-value.md), against a real head-office process on
SQLite and on PostgreSQL.

Head office enables a till and sets its limits (`tillpoint hq till-topups`); the policy reaches the till with
its pull; the till sells top-ups online and offline within them, and refuses beyond; the entries reach head
office once and are credited once however often a network replays the push. A till head office did not
enable credits nothing whatever its own database says, a stolen credential credits no more than the till's
limits, and the end-of-day report of a till whose declared top-ups head office did not credit is flagged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq.store import HqStore, open_store
from sync.client import HqUnreachable, SyncClient
from sync.protocol import EntryKind, ReconItem
from terminal.errors import Code, Rejected
from terminal.model import utc_iso
from terminal.service import Service, new_txn_id
from terminal.store import Store
from tests.fixtures.hq import HqProcess
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MEMBER = "M-TOP"
LIMITS = ("--per-transaction", "5000", "--per-day", "20000", "--per-member-day", "10000", "--offline-total", "8000")


@pytest.fixture(params=["sqlite", "postgres"])
def hq_proc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HqProcess]:
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    process = HqProcess(tmp_path / "hq", db)
    process.start()
    process.cli("add-member", MEMBER, "Topup Tomo")
    yield process
    process.kill()


class Till:
    def __init__(self, root: Path, hq_proc: HqProcess, terminal_id: str = "T-TOP") -> None:
        self.terminal_id = terminal_id
        self.token = hq_proc.add_terminal(terminal_id)
        self.url = hq_proc.url
        self.store = Store.open(root / terminal_id / "terminal.db")
        self.client = SyncClient(self.store, terminal_id, hq_proc.url, self.token, timeout=5)
        self.service = Service(self.store, terminal_id)

    def refused(self, amount: int) -> str:
        with pytest.raises(Rejected) as refused:
            self.service.topup(MEMBER, amount)
        return refused.value.code.value

    def push_raw(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """What a holder of this till's credential can send, bypassing the till's own checks."""
        body = {"protocol": 2, "terminal_id": self.terminal_id, "entries": entries}
        answer = httpx.post(
            f"{self.url}/v1/journal", json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def till(tmp_path: Path, hq_proc: HqProcess) -> Iterator[Till]:
    made = Till(tmp_path / "tills", hq_proc)
    yield made
    made.close()


def hq_view(hq_proc: HqProcess) -> HqStore:
    return open_store(hq_proc.db)


def balance(hq_proc: HqProcess) -> int:
    store = hq_view(hq_proc)
    try:
        member = store.member(MEMBER)
        assert member is not None
        return member.stored_value
    finally:
        store.close()


def items(hq_proc: HqProcess, terminal_id: str) -> list[ReconItem]:
    store = hq_view(hq_proc)
    try:
        return store.items(terminal_id=terminal_id)
    finally:
        store.close()


def enable(hq_proc: HqProcess, terminal_id: str = "T-TOP") -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(hq_proc.cli("till-topups", terminal_id, "--enable", *LIMITS))
    return shown


def wire_topup(terminal_id: str, seq: int, amount: int, *, txn_id: str | None = None) -> dict[str, Any]:
    payload = {
        "member_id": MEMBER,
        "store_id": "S-001",
        "amount": amount,
        "stored_value_delta": amount,
        "local_time": "2026-12-02T10:00:00",
        "offline": False,
    }
    return {
        "terminal_id": terminal_id,
        "seq": seq,
        "txn_id": txn_id or new_txn_id(),
        "kind": EntryKind.TILL_TOPUP.value,
        "payload": payload,
        "created_at": utc_iso(time.time()),
    }


def test_a_topup_taken_offline_is_credited_once_when_the_till_syncs(hq_proc: HqProcess, till: Till) -> None:
    shown = enable(hq_proc)
    assert shown["enabled"] and shown["per_day"] == 20000
    till.client.sync_once()  # bootstrap: the member, and this till's policy
    assert till.store.topup_policy() == {k: v for k, v in shown.items() if k != "terminal_id"}
    online = till.service.topup(MEMBER, 1000)
    assert online.stored_value == 1000
    till.client.sync_once()
    assert balance(hq_proc) == 1000

    hq_proc.kill()
    with pytest.raises(HqUnreachable):
        till.client.sync_once()
    first = till.service.topup(MEMBER, 3000)
    second = till.service.topup(MEMBER, 5000)
    assert second.stored_value == 9000  # the till shows what it credited
    assert till.refused(1000) == Code.TOPUP_LIMIT_OFFLINE.value  # 8000 taken offline: the offline total
    assert balance(hq_proc) == 1000

    hq_proc.start()
    till.client.sync_once()
    assert balance(hq_proc) == 9000
    assert till.store.stored_value(MEMBER) == 9000
    assert till.service.topup(MEMBER, 1000).stored_value == 10000  # online again: the offline total is free

    # The network replays the whole journal: stored once, credited once.
    journal = [
        {
            "terminal_id": e.terminal_id,
            "seq": e.seq,
            "txn_id": e.txn_id,
            "kind": e.kind,
            "payload": e.payload,
            "created_at": e.created_at,
        }
        for e in till.store.entries(0)
    ]
    till.client.sync_once()
    replayed = till.push_raw(journal)
    assert replayed["stored"] == 0 and replayed["duplicates"] == len(journal)
    assert balance(hq_proc) == 10000
    offline = [e.payload["offline"] for e in till.store.entries(0) if e.txn_id in (first.txn_id, second.txn_id)]
    assert offline == [True, True]
    assert [i.reason for i in items(hq_proc, "T-TOP") if i.quarantined] == []
    report = json.loads(hq_proc.cli("report", "--terminal-id", "T-TOP", "--json"))
    assert sum(row["topups"] for row in report) == 10000  # the till's top-up takings, as head office credited them


def test_topups_beyond_the_limits_are_refused_at_the_till_and_quarantined_at_head_office(
    hq_proc: HqProcess, till: Till
) -> None:
    hq_proc.cli("store", "S-001", "--timezone", "Asia/Tokyo", "--day-starts", "04:00")  # its business day
    enable(hq_proc)
    till.client.sync_once()
    held = till.store.topup_policy()
    assert held is not None and (held["timezone"], held["day_starts"]) == ("Asia/Tokyo", "04:00")
    assert till.refused(5001) == Code.TOPUP_LIMIT_TRANSACTION.value
    till.service.topup(MEMBER, 5000)
    till.service.topup(MEMBER, 5000)
    assert till.refused(1) == Code.TOPUP_LIMIT_MEMBER_DAY.value
    till.client.sync_once()
    assert balance(hq_proc) == 10000

    # A stolen credential sends what the till refused: head office holds it, credits none of it.
    seq = till.store.max_seq()
    answer = till.push_raw([wire_topup("T-TOP", seq + 1, 5000), wire_topup("T-TOP", seq + 2, 5001)])
    assert answer["stored"] == 2 and answer["acked_seq"] == seq + 2
    assert balance(hq_proc) == 10000
    held = [i for i in items(hq_proc, "T-TOP") if i.quarantined]
    assert sorted(i.detail["code"] for i in held) == ["topup_limit_member_day", "topup_limit_transaction"]
    assert {i.reason.value for i in held} == {"topup_over_limit"}


def test_a_till_head_office_did_not_enable_credits_nothing_and_its_end_of_day_is_flagged(
    hq_proc: HqProcess, till: Till
) -> None:
    till.client.sync_once()
    assert till.refused(1000) == Code.TOPUP_NOT_ENABLED.value
    # The till's own database says it may (a tampered till, or one disabled since its last pull).
    till.store.set_state(
        topup_policy=json.dumps(
            {"enabled": True, "per_transaction": 5000, "per_day": 9000, "per_member_day": 9000, "offline_total": 0}
        )
    )
    taken = till.service.topup(MEMBER, 2000)
    assert taken.stored_value == 2000
    till.client.sync_once()
    assert balance(hq_proc) == 0
    assert till.store.stored_value(MEMBER) == 0  # head office's balance came back down with the pull
    assert till.store.topup_policy() == {
        "enabled": False,
        "per_transaction": 0,
        "per_day": 0,
        "per_member_day": 0,
        "offline_total": 0,
        "timezone": "UTC",
        "day_starts": "00:00",
    }
    held = [i for i in items(hq_proc, "T-TOP") if i.quarantined]
    assert [(i.reason.value, i.txn_id) for i in held] == [("topup_not_enabled", taken.txn_id)]

    results = till.client.report_eod(until=date.today() + timedelta(days=2))
    assert results and results[-1].status == "incomplete"
    assert "top-ups credited: terminal 2000, head office 0" in results[-1].mismatches
    report = json.loads(hq_proc.cli("report", "--terminal-id", "T-TOP", "--json"))
    assert [(row["topups"], row["stored_value"]) for row in report] == [(0, 2000)]  # held, not credited
    flagged = [i for i in items(hq_proc, "T-TOP") if i.reason.value == "topup_takings_mismatch"]
    assert len(flagged) == 1 and flagged[0].detail == {
        "declared": 2000,
        "credited": 0,
        "not_credited": [taken.txn_id],
    }


def test_a_void_the_same_day_takes_the_topup_back_once(hq_proc: HqProcess, till: Till) -> None:
    enable(hq_proc)
    till.client.sync_once()
    kept = till.service.topup(MEMBER, 4000)
    voided = till.service.topup(MEMBER, 3000)
    back = till.service.void_topup(voided.txn_id)
    assert back.total == -3000 and back.stored_value == 4000
    with pytest.raises(Rejected) as twice:
        till.service.void_topup(voided.txn_id)
    assert twice.value.code is Code.ALREADY_VOIDED
    till.client.sync_once()
    assert balance(hq_proc) == 4000
    # A stolen credential voids the voided top-up again: quarantined, nothing taken twice.
    seq = till.store.max_seq()
    again = {
        "terminal_id": "T-TOP",
        "seq": seq + 1,
        "txn_id": new_txn_id(),
        "kind": EntryKind.TOPUP_VOID.value,
        "payload": {
            "member_id": MEMBER,
            "store_id": "S-001",
            "original_txn": voided.txn_id,
            "amount": 3000,
            "stored_value_delta": -3000,
            "local_time": "2026-12-02T10:00:00",
        },
        "created_at": utc_iso(time.time()),
    }
    till.push_raw([again])
    assert balance(hq_proc) == 4000
    held = [i for i in items(hq_proc, "T-TOP") if i.quarantined]
    assert [(i.reason.value, i.detail["problem"]) for i in held] == [
        ("topup_void_invalid", "the top-up was voided already")
    ]
    # The member spent part of it at another till: head office's balance comes down with the pull, and the
    # rest of the top-up can no longer be voided (the money is not paid out twice).
    member = till.store.member(MEMBER)
    assert member is not None
    till.store.apply_changes([replace(member, stored_value=1000)], [], [], cursor=int(till.store.state("cursor") or 0))
    with pytest.raises(Rejected) as spent:
        till.service.void_topup(kept.txn_id)
    assert spent.value.code is Code.TOPUP_VOID_SPENT
