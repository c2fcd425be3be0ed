"""Head office's check of top-ups sold at tills (hq/topups.py), on SQLite and PostgreSQL, with head office's
clock in the test's hands: each business day has its own limit, a void of another day's top-up undoes nothing,
and a voided top-up gives its day's room back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import ReconItem, WireEntry
from terminal.topups import TopupPolicy

DAY1 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Chain:
    def __init__(self, url: str) -> None:
        self.clock = DAY1
        self.store = HqStore(url, Settings(), clock=lambda: iso(self.clock))
        self.store.add_terminal("T1", "S1", "t1")
        self.store.upsert_member("M-1", "Aiko", "basic", 0)
        self.store.put_topup_policy("T1", TopupPolicy(True, 5000, 8000, 8000, 0), "Mio")
        self.seq = 0

    def push(self, kind: str, amount: int, original: str | None = None) -> str:
        self.seq += 1
        payload: dict[str, Any] = {
            "member_id": "M-1",
            "store_id": "S1",
            "amount": amount,
            "stored_value_delta": -amount if original else amount,
            "local_time": self.clock.replace(tzinfo=None).isoformat(timespec="seconds"),
        }
        if original:
            payload["original_txn"] = original
        txn = f"T1-{self.seq}"
        entry = WireEntry(
            terminal_id="T1", seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=iso(self.clock)
        )
        self.store.ingest("T1", [entry], clock=iso(self.clock))
        return txn

    def balance(self) -> int:
        member = self.store.member("M-1")
        assert member is not None
        return member.stored_value

    def held(self) -> list[ReconItem]:
        return [i for i in self.store.items(terminal_id="T1") if i.quarantined]


@pytest.fixture
def chain(hq_url: str) -> Iterator[Chain]:
    made = Chain(hq_url)
    yield made
    made.store.close()


def test_each_business_day_has_its_own_limit_and_a_void_gives_room_back(chain: Chain) -> None:
    first = chain.push("till_topup", 5000)
    chain.push("till_topup", 3000)
    over = chain.push("till_topup", 1)  # 8001 that day
    assert chain.balance() == 8000
    assert [(i.txn_id, i.detail["code"]) for i in chain.held()] == [(over, "topup_limit_day")]
    chain.push("topup_void", 5000, original=first)  # the same day: undone, and its room comes back
    assert chain.balance() == 3000
    chain.push("till_topup", 5000)
    assert chain.balance() == 8000
    chain.clock = DAY2
    chain.push("till_topup", 5000)  # a new business day: a new limit
    assert chain.balance() == 13000 and len(chain.held()) == 1


def test_a_void_of_another_days_topup_or_a_second_void_undoes_nothing(chain: Chain) -> None:
    sold = chain.push("till_topup", 4000)
    chain.clock = DAY2
    late = chain.push("topup_void", 4000, original=sold)  # a cashier "voids" yesterday's top-up for cash
    assert chain.balance() == 4000
    [held] = chain.held()
    assert (held.txn_id, held.reason.value) == (late, "topup_void_invalid")
    assert held.detail["problem"] == "the top-up was credited on 2026-12-01, the void is of 2026-12-02"
    today = chain.push("till_topup", 2000)
    chain.push("topup_void", 2000, original=today)
    again = chain.push("topup_void", 2000, original=today)
    assert chain.balance() == 4000
    assert (again, "the top-up was voided already") in {(i.txn_id, i.detail["problem"]) for i in chain.held()}
    wrong = chain.push("till_topup", 1000)
    bigger = chain.push("topup_void", 1500, original=wrong)  # more than it sold
    assert chain.balance() == 5000
    problems = {(i.txn_id, i.detail["problem"]) for i in chain.held()}
    assert (bigger, "the void names another member or amount than its top-up") in problems and len(problems) == 3
