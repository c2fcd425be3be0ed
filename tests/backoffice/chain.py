"""A small chain for the back-office tests: two stores with a till each, a member who shops at each, and a
staff account of every role (a store manager of S1). Members come to their stores by real sales pushed
through ingest, as tills push them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from hq import merchants
from hq.backoffice import staff
from hq.backoffice.staff import Staff
from hq.db.engine import Tx
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.fixtures import entries

PASSWORD = "a long staff password"
STAFF = {
    "admin": ("Ada Admin", "chain_admin", []),
    "admin2": ("Ben Admin", "chain_admin", []),
    "market": ("Mia Marketing", "marketing", []),
    "manager": ("Sam Manager", "store_manager", ["S1"]),
    "finance": ("Fin Ance", "finance", []),
    "auditor": ("Aud Itor", "auditor", []),
}


def sale(hq: HqStore, terminal: str, member_id: str, total: int = 1000) -> None:
    """A sale of ``member_id`` at ``terminal`` (T1 in S1, T2 in S2), pushed as the till pushes it."""
    seq = len(hq.entries(terminal)) + 1
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    store_id = {"T1": "S1", "T2": "S2"}[terminal]
    body = entries.sale(member_id, total, store_id=store_id, earned=total // 100)
    entry = WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=f"{terminal}-{seq}-{member_id}",
        kind="sale",
        payload=body,
        created_at=made,
    )
    pushed = hq.ingest(terminal, [entry])
    assert pushed.acked_seq == seq, pushed


def set_up(hq: HqStore) -> dict[str, Staff]:
    hq.set_rule("base", 1, 100)
    hq.add_terminal("T1", "S1", "till-1-token")
    hq.add_terminal("T2", "S2", "till-2-token")
    hq.upsert_member("M-S1", "Aiko Ishi", "basic", 0)
    hq.upsert_member("M-S2", "Bo Ni", "basic", 0)
    hq.upsert_card("a" * 64, "M-S1")
    hq.upsert_card("b" * 64, "M-S2")
    sale(hq, "T1", "M-S1", 2500)
    sale(hq, "T2", "M-S2", 4000)
    made = {}
    for staff_id, (name, role, stores) in STAFF.items():
        account = staff.check_account(staff_id, name, role, stores)
        made[staff_id] = hq.db.transact(lambda tx, a=account: staff.add(tx, a, PASSWORD))
    return made


MERCHANT_STAFF = {
    "north-admin": ("Nora North", "merchant_admin", [], "north"),
    "north-finance": ("Ned North", "merchant_finance", [], "north"),
    "north-manager": ("Nils North", "store_manager", ["S1", "S2"], "north"),
    "south-finance": ("Sue South", "merchant_finance", [], "south"),
}
"""A merchant's staff: ``north`` holds S1, ``south`` holds S2 (``with_merchants``). North's store manager is
given both stores: it reaches only the one its merchant holds."""


def with_merchants(hq: HqStore) -> dict[str, Staff]:
    """Merchants ``north`` (store S1) and ``south`` (store S2), and the accounts of ``MERCHANT_STAFF``."""

    def made(tx: Tx) -> dict[str, Staff]:
        merchants.add(tx, "north", "North Ltd", 100, 80)
        merchants.add(tx, "south", "South Ltd", 100, 80)
        merchants.assign_store(tx, "S1", "north", "UTC")
        merchants.assign_store(tx, "S2", "south", "UTC")
        accounts = {}
        for staff_id, (name, role, stores, merchant) in MERCHANT_STAFF.items():
            account = staff.check_account(staff_id, name, role, stores, merchant)
            accounts[staff_id] = staff.add(tx, account, PASSWORD)
        return accounts

    return hq.db.transact(made)


@contextmanager
def chain(url: str) -> Iterator[tuple[HqStore, dict[str, Staff]]]:
    hq = HqStore(url)
    try:
        yield hq, set_up(hq)
    finally:
        hq.close()
