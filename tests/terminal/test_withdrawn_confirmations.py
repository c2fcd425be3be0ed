"""The till notes a confirmation it asked head office for and did not use (the sale was refused or failed after
the question), for the sync loop to withdraw; a sale it recorded, or one it never asked about, notes nothing.
The question is noted before it goes out, so that a process killed before the sale is recorded leaves it for the
next start to withdraw; the sale's journal row removes the note in its own transaction."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import ASKING_PREFIX, Basket, Card, JournalEntry, Line, Member, utc_iso
from terminal.service import Service, new_txn_id
from terminal.store import Store
from tests.fixtures.clock import Clock
from tests.terminal.test_service_payments import NOW, UID1, code, till  # noqa: F401 - fixture

TV = Basket((Line("TV", 1, 2600),))  # above the offline limit of one payment (2,500)
TEA = Basket((Line("TEA", 1, 500),))


def asked(answer: bool, seen: list[str]) -> Any:
    def confirm(request: dict[str, Any]) -> bool:
        seen.append(str(request["txn_id"]))
        return answer

    return confirm


def test_a_lost_answer_then_an_offline_refusal_notes_a_withdrawal(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    service, store, clock = till
    seen: list[str] = []
    service.confirm_online = asked(False, seen)
    with pytest.raises(Rejected) as refused:
        service.commit(service.quote("M-1", TV), Payment(None, code(clock, 60)))
    assert refused.value.code is Code.OFFLINE_LIMIT_TRANSACTION
    assert store.withdrawals(10) == seen and len(seen) == 1


def test_a_sale_failing_after_head_office_confirmed_notes_a_withdrawal(
    till: tuple[Service, Store, Clock],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, store, clock = till
    seen: list[str] = []
    service.confirm_online = asked(True, seen)

    def full(*_: object, **__: object) -> None:
        raise Rejected(Code.STORAGE_FULL)

    monkeypatch.setattr(store, "record", full)
    with pytest.raises(Rejected):
        service.commit(service.quote("M-1", TEA), Payment(None, code(clock, 61)))
    assert store.withdrawals(10) == seen
    assert store.settle_asked(utc_iso(NOW)) == ([], [])  # the question's note became the withdrawal


def test_a_recorded_sale_or_one_never_asked_about_notes_nothing(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    service, store, clock = till
    seen: list[str] = []
    service.confirm_online = asked(False, seen)
    service.commit(service.quote("M-1", TEA), Payment(None, code(clock, 62)))  # lost answer, taken offline
    store.set_state(offline_since=utc_iso(NOW - 60))  # offline: head office is not asked
    with pytest.raises(Rejected):
        service.commit(service.quote("M-1", TV), Payment(None, code(clock, 63)))
    assert len(seen) == 1 and store.withdrawals(10) == []


def test_the_start_withdraws_a_question_never_recorded_and_drops_a_recorded_one(
    till: tuple[Service, Store, Clock],  # noqa: F811
) -> None:
    service, store, clock = till
    service.confirm_online = asked(True, [])
    recorded = service.commit(service.quote("M-1", TEA), Payment(None, code(clock, 64))).txn_id
    lost = new_txn_id()
    store.note_asking(lost, utc_iso(NOW))  # asked, then the process was killed before the sale was recorded
    store.set_state(**{ASKING_PREFIX + recorded: utc_iso(NOW)})  # a note its journal row outlived
    assert store.withdrawals(10) == []  # a question still open is never withdrawn by the sync loop
    assert store.settle_asked(utc_iso(NOW + 60)) == ([lost], [recorded])
    assert store.withdrawals(10) == [lost]
    assert store.state(ASKING_PREFIX + lost) is None and store.state(ASKING_PREFIX + recorded) is None
    assert store.settle_asked(utc_iso(NOW + 120)) == ([], [])


def test_the_disk_a_kill_leaves_after_head_office_confirmed_holds_the_question(
    till: tuple[Service, Store, Clock],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The moment head office's answer arrives, the question is on disk; the recorded sale takes it off."""
    service, store, clock = till
    left = tmp_path / "killed.db"
    seen: list[str] = []

    def confirmed_then_killed(request: dict[str, Any]) -> bool:
        seen.append(str(request["txn_id"]))
        with closing(sqlite3.connect(left)) as copy:
            store.db.conn.backup(copy)  # what the disk holds if the power goes now
        return True

    service.confirm_online = confirmed_then_killed
    receipt = service.commit(service.quote("M-1", TEA), Payment(None, code(clock, 65)))
    assert seen == [receipt.txn_id] and store.withdrawals(10) == []
    assert store.settle_asked(utc_iso(NOW)) == ([], [])  # this process recorded it: nothing to withdraw
    killed = Store.open(left)
    try:
        assert killed.entries() == [] and killed.withdrawals(10) == []
        assert killed.settle_asked(utc_iso(NOW + 60)) == (seen, [])  # the next start of the killed till
        assert killed.withdrawals(10) == seen
    finally:
        killed.close()


def test_the_note_comes_back_when_the_journal_row_is_rolled_back(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    """The note's removal is part of the journal row's transaction: a row refused inside it keeps the note."""
    _, store, _ = till
    txn_id = new_txn_id()
    store.note_asking(txn_id, utc_iso(NOW))
    entry = JournalEntry("T-1", 0, txn_id, "enrol", {}, utc_iso(NOW))
    with pytest.raises(Rejected) as refused:  # refused after the journal row was written, in the same transaction
        store.record(entry, enrol=(Member("M-9", "Nine", "basic", 0), Card(UID1, "M-9")))
    assert refused.value.code is Code.CARD_ALREADY_ENROLLED
    assert store.entries() == [] and store.state(ASKING_PREFIX + txn_id) == utc_iso(NOW)
    assert store.withdraw_asked(txn_id, utc_iso(NOW + 1)) and store.withdrawals(10) == [txn_id]
    assert not store.withdraw_asked(txn_id, utc_iso(NOW + 2))  # once
