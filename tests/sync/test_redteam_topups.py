"""Top-up limits at head office against a till that names a member by an id merged into another member."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import WireEntry
from terminal.topups import TopupPolicy
from tests.fixtures import entries

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CARD = "c" * 64


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Till:
    def __init__(self, url: str) -> None:
        self.clock = NOW
        self.store = HqStore(url, Settings(), clock=lambda: iso(self.clock))
        self.store.add_terminal("T1", "S1", "t1")
        self.store.upsert_member("M-1", "Aiko", "basic", 0)
        self.store.upsert_card(CARD, "M-1")
        # per_member_day (3000) well below per_day (9000)
        self.store.put_topup_policy("T1", TopupPolicy(True, 3000, 9000, 3000, 0), "Mio")
        self.seq = 0

    def push(self, kind: str, payload: dict[str, Any]) -> str:
        self.seq += 1
        txn = f"T1-{self.seq}"
        entry = WireEntry(terminal_id="T1", seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=iso(NOW))
        self.store.ingest("T1", [entry], clock=iso(NOW))
        return txn

    def topup(self, member_id: str, amount: int) -> str:
        return self.push(
            "till_topup",
            {
                "member_id": member_id,
                "store_id": "S1",
                "amount": amount,
                "stored_value_delta": amount,
                "local_time": NOW.replace(tzinfo=None).isoformat(timespec="seconds"),
            },
        )

    def value(self, member_id: str) -> int:
        member = self.store.member(member_id)
        assert member is not None
        return member.stored_value


@pytest.fixture
def till(hq_url: str) -> Iterator[Till]:
    made = Till(hq_url)
    yield made
    made.store.close()


def test_per_member_day_holds_for_ids_merged_into_the_member(till: Till) -> None:
    till.topup("M-1", 3000)  # the member's whole per_member_day
    assert till.value("M-1") == 3000
    for alias in ("E-ALIAS-1", "E-ALIAS-2"):
        till.push("enrol", entries.enrol(alias, CARD))  # the card's holder keeps it: the alias merges into M-1
        till.topup(alias, 3000)
    assert till.value("M-1") == 3000, "credited beyond per_member_day to one member at one till in one day"


def test_one_push_credits_at_most_per_day_whatever_days_the_till_dates_its_topups(till: Till) -> None:
    till.clock = NOW - timedelta(days=2, hours=1)
    till.store.note_pull("T1")  # the till's last pull, before it was taken away (a weekend)
    till.clock = NOW
    for n in (2, 3):
        till.store.upsert_member(f"M-{n}", f"Member {n}", "basic", 0)
    wire = []
    for back in range(3):  # today and the two days before, as the till's clock says
        made = NOW - timedelta(days=back)
        for n in (1, 2, 3):  # 3000 to each of three members: 9000, the whole per_day, each day
            till.seq += 1
            payload = {
                "member_id": f"M-{n}",
                "store_id": "S1",
                "amount": 3000,
                "stored_value_delta": 3000,
                "local_time": made.replace(tzinfo=None).isoformat(timespec="seconds"),
            }
            wire.append(
                WireEntry(
                    terminal_id="T1",
                    seq=till.seq,
                    txn_id=f"T1-{till.seq}",
                    kind="till_topup",
                    payload=payload,
                    created_at=iso(made),
                )
            )
    till.store.ingest("T1", wire, clock=iso(NOW))
    credited = sum(till.value(f"M-{n}") for n in (1, 2, 3))
    assert credited <= 9000, f"one push of a till that has not pulled for two days credited {credited}, per_day is 9000"
