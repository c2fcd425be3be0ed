"""A member's stored-value payment that took the balance below zero (two offline tills paying the same balance) is
the chain's loss; once an approved adjustment writes that loss off (the negative balance cleared by hand), a refund
of that payment gives back only the part the member's value covered, or a top-up paid back since: the rest was
never the member's money, and the write-off took it off the books already. As gift cards do
(tests/security/test_gift_writeoff.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hq import adjustments, payments
from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import ReconItem, WireEntry
from tests.fixtures import entries
from tests.fixtures.books import books_balanced

CARD = "cd" * 32


class Chain:
    def __init__(self, url: str) -> None:
        self.store = HqStore(url, Settings(spend_needs_proof=False, recompute=False))
        self.seqs = {"T1": 0, "T2": 0}
        for terminal in self.seqs:
            self.store.add_terminal(terminal, "S1", terminal.lower())
        self.store.upsert_member("M-1", "Aiko", "basic", 0)
        self.store.upsert_card(CARD, "M-1")

    def push(self, terminal: str, kind: str, payload: dict[str, object]) -> str:
        self.seqs[terminal] += 1
        txn = f"{terminal}-{uuid.uuid4().hex[:12]}"
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        entry = WireEntry(
            terminal_id=terminal, seq=self.seqs[terminal], txn_id=txn, kind=kind, payload=payload, created_at=at
        )
        self.store.ingest(terminal, [entry])
        return txn

    def pay(self, terminal: str, amount: int) -> str:
        tap = {"uid_hash": CARD, "trust": "mac"}
        return self.push(terminal, "sale", entries.sale("M-1", amount, stored_value=amount, proof="card", tap=tap))

    def refund(self, terminal: str, sale: str, amount: int) -> str:
        return self.push(terminal, "refund", entries.refund(sale, money_back=amount, stored_value=amount))

    def adjust(self, amount: int, reason: str) -> None:
        made = adjustments.fact("M-1", 0, amount, reason)
        with self.store.db.write() as tx:
            adjustments.apply(tx, f"ADJ-{uuid.uuid4().hex[:8]}", made, "Mio", "Ken")

    def balance(self) -> int:
        member = self.store.member("M-1")
        assert member is not None
        return member.stored_value

    def held(self, txn: str) -> list[ReconItem]:
        return [i for i in self.store.items() if i.txn_id == txn and i.quarantined]


@pytest.fixture
def chain(hq_url: str) -> Iterator[Chain]:
    made = Chain(hq_url)
    with books_balanced(made.store):
        yield made


def test_a_refund_of_an_overspent_payment_written_off_since_makes_no_value(chain: Chain) -> None:
    chain.adjust(1000, "opening balance")
    chain.pay("T1", 1000)
    late = chain.pay("T2", 600)  # offline, on the balance T2 last pulled: -600, flagged
    assert chain.balance() == -600
    chain.adjust(600, "overspend written off")  # approved: the chain takes the loss
    assert chain.balance() == 0
    held = chain.refund("T2", late, 600)  # the goods come back
    assert chain.balance() == 0  # no value out of nothing
    [item] = chain.held(held)
    assert item.reason.value == "refund_exceeds_sale"
    assert item.detail["stored_value"] == {"returned": 600, "sale_took": 600, "written_off": 600}


def test_a_partly_covered_payment_gives_back_what_the_balance_held_after_a_write_off(chain: Chain) -> None:
    chain.adjust(300, "opening balance")
    paid = chain.pay("T2", 1000)  # 300 the balance held, 700 beyond it
    assert chain.balance() == -700
    chain.adjust(700, "overspend written off")
    assert chain.held(chain.refund("T2", paid, 1000))
    assert chain.held(chain.refund("T2", paid, 300)) == []  # what the member's value paid
    assert chain.balance() == 300


def test_an_overspend_paid_back_by_a_top_up_is_given_back_whole(chain: Chain) -> None:
    chain.adjust(500, "goodwill, before the payment: writes nothing of it off")
    chain.pay("T1", 500)
    late = chain.pay("T2", 400)
    assert chain.balance() == -400
    payments.topup(chain.store, "M-1", 400, "Mio")  # the member paid the shortfall
    assert chain.held(chain.refund("T2", late, 400)) == []
    assert chain.balance() == 400
