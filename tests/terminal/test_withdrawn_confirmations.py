"""The till notes a confirmation it asked head office for and did not use (the sale was refused or failed after
the question), for the sync loop to withdraw; a sale it recorded, or one it never asked about, notes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.clock import Clock
from tests.terminal.test_service_payments import NOW, code, till  # noqa: F401 - fixture

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


def test_a_recorded_sale_or_one_never_asked_about_notes_nothing(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    service, store, clock = till
    seen: list[str] = []
    service.confirm_online = asked(False, seen)
    service.commit(service.quote("M-1", TEA), Payment(None, code(clock, 62)))  # lost answer, taken offline
    store.set_state(offline_since=utc_iso(NOW - 60))  # offline: head office is not asked
    with pytest.raises(Rejected):
        service.commit(service.quote("M-1", TV), Payment(None, code(clock, 63)))
    assert len(seen) == 1 and store.withdrawals(10) == []
