"""Erasing a member: the member's data in one transaction (``hq.members.erase``), then its payment
devices revoked (``hq.payments.forget_devices``). What the ``erase`` command and the erasure route call."""

from __future__ import annotations

from hq import members, payments
from hq.db.engine import utc_now
from hq.store import HqStore


def erase_member(store: HqStore, member_id: str, by: str) -> dict[str, int]:
    """Erase a member (see ``members.erase``) and revoke the payment devices it registered;
    ``members.UnknownMember`` when there is no such member."""
    done = store.db.transact(lambda tx: members.erase(tx, member_id, by, utc_now()))
    return {**done, "devices_revoked": payments.forget_devices(store, member_id)}
