"""Erasing a member: the member's data in one transaction (``hq.members.erase``), then its payment
devices revoked (``hq.payments.forget_devices``); its wallet contacts go and its wallet sessions end in the
same transaction (``hq.wallet.signin.forget``). What the ``erase`` command and the erasure route call."""

from __future__ import annotations

import time

from hq import audit, members, payments, rollup, vouchers
from hq.db.engine import Tx, utc_now
from hq.store import HqStore
from hq.wallet import signin


def erase_member(store: HqStore, member_id: str, by: str, reason: str = "") -> dict[str, int]:
    """Erase a member (see ``members.erase``) and revoke the payment devices it registered;
    ``members.UnknownMember`` when there is no such member. Who and why go to the audit log in the
    erasure's transaction."""

    def erase(tx: Tx) -> dict[str, int]:
        with rollup.one_write(tx):  # its statistics', ledger's and campaigns' figures leave the reports at once
            done = members.erase(tx, member_id, by, utc_now())
        done = {**done, "vouchers_unnamed": vouchers.forget_member(tx, member_id)}
        signin.forget(tx, member_id, int(time.time()))
        audit.append(tx, by, "erase_member", member_id, reason, dict(done))
        return done

    done = store.db.transact(erase)
    return {**done, "devices_revoked": payments.forget_devices(store, member_id)}
