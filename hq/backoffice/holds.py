"""The holds of online payment confirmations in the back office (docs/payments.md, "Online confirmation"): what
head office holds back of members' stored value and gift cards' balances for sales whose entries have not
arrived, and the release of one, saying why.

Both go through ``hq.payments`` (one path: the functions ``tillpoint hq holds`` and ``hq release-hold`` call),
which writes the audit record of a release in its transaction. A hold is the chain's money, not a store's: every
action here reaches the whole chain.
"""

from __future__ import annotations

from typing import Any

from hq import payments
from hq.backoffice import approvals
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action
from hq.backoffice.staff import Staff, require
from hq.store import HqStore

REFUSALS = {"no_hold": Code.NO_HOLD, "hold_entry_arrived": Code.HOLD_ENTRY_ARRIVED}


def listed(store: HqStore, who: Staff) -> list[dict[str, Any]]:
    """Every hold now, oldest first (``hq.payments.holds``)."""
    require(who, Action.HOLDS_READ, frozenset())
    return payments.holds(store)


def release(store: HqStore, who: Staff, txn_id: str, terminal_id: str, reason: str) -> dict[str, Any]:
    """End the hold of ``txn_id``'s confirmation by ``terminal_id`` (audited as ``release_hold`` by the staff
    member's id). Refused: ``no_hold``, ``hold_entry_arrived`` (``hq.payments.release_hold``)."""
    require(who, Action.HOLDS_RELEASE, frozenset())
    why = approvals.reason_of(reason)
    try:
        return payments.release_hold(store, txn_id, who.staff_id, why, terminal_id or None)
    except payments.PaymentRefused as exc:
        raise BackofficeRefused(REFUSALS.get(exc.code, Code.NOT_FOUND), str(exc)) from exc


__all__ = ["listed", "release"]
