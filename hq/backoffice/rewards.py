"""The rewards catalogue and the vouchers in the back office (docs/rewards.md, docs/stored-value.md), read only:
what members can buy with points and what is left of each reward's stock; the vouchers by state and kind (the
value sold and not yet used is what the chain still owes); one voucher found by its id, with its use.

Read by the roles that read the rules and coupons (``Action.RULES_READ``): the catalogue is the chain's, like
its coupons. A store-wide reach (a store manager, a merchant's staff) reads the vouchers of its stores only: sold
there, or in its tills' stock unsold; one of them found by its id also when it was used at one of its tills;
never the chain's totals nor another merchant's. Rewards are defined through the API and commands (``hq.rewards``, one path),
vouchers issued into a till's stock the same way (``hq.vouchers``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hq import rewards, vouchers
from hq.backoffice.roles import Action, Reach, reach
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.errors import Refused
from hq.store import HqStore
from terminal import vouchers as vc

VOUCHER_ID = re.compile(r"[0-9a-f]{16}")
"""A voucher's id: 16 hex digits (what the receipt and the wallet show)."""


@dataclass(frozen=True, slots=True)
class Reward:
    reward_id: str
    title: str
    kind: str
    points: int
    stock: int | None
    left: int | None
    active: bool


@dataclass(frozen=True, slots=True)
class VoucherSum:
    """The vouchers of one state and kind: how many, and their value (minor units)."""

    state: str
    kind: str
    count: int
    value: int


@dataclass(frozen=True, slots=True)
class RewardsPage:
    catalogue: list[Reward]
    vouchers: list[VoucherSum]
    outstanding: int
    """The value of vouchers sold and not yet used or refunded (``active``)."""
    query: str
    voucher: dict[str, Any] | None
    """The voucher ``query`` found (None: none asked for, or none found)."""


def _catalogue(tx: Tx) -> list[Reward]:
    return [
        Reward(
            o.reward.reward_id,
            o.reward.title,
            o.reward.kind.value,
            o.reward.points,
            o.reward.stock,
            o.left,
            o.reward.active,
        )  # fmt: skip
        for o in rewards.catalogue(tx)
    ]


_STORE = "COALESCE(sold_store, (SELECT t.store_id FROM terminals t WHERE t.terminal_id = vouchers.terminal_id))"
"""A voucher's store: where it was sold, else the store of the till whose stock holds it."""


def _reach(who: Staff) -> frozenset[str] | None:
    """The stores whose vouchers ``who`` reads (None: every voucher, the chain's reach)."""
    return None if reach(who.role, Action.RULES_READ) is Reach.CHAIN else who.stores


def _sums(tx: Tx, stores: frozenset[str] | None) -> list[VoucherSum]:
    where, params = ("1 = 1", []) if stores is None else tx.in_list(_STORE, sorted(stores))
    rows = tx.all(
        f"SELECT state, kind, COUNT(*), COALESCE(SUM(value), 0) FROM vouchers WHERE {where} GROUP BY state, kind",
        params,
    )
    order = {state.value: n for n, state in enumerate(vc.State)}
    found = [VoucherSum(str(s), str(k), int(n), int(v)) for s, k, n, v in rows]
    return sorted(found, key=lambda v: (order.get(v.state, len(order)), v.state, v.kind))


def _found(tx: Tx, voucher_id: str, stores: frozenset[str] | None) -> dict[str, Any] | None:
    """The voucher and its use, when ``stores`` reach it: sold at one, in one's stock, or used at one's till."""
    try:
        found = vouchers.report(tx, voucher_id)
    except Refused:
        return None
    if stores is None:
        return found
    row = tx.one(f"SELECT {_STORE} FROM vouchers WHERE voucher_id = ?", [voucher_id])
    used = found["use"]
    used_at = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [used["terminal_id"]]) if used else None
    held = {str(r[0]) for r in (row, used_at) if r is not None and r[0] is not None}
    return found if held & stores else None


def page(store: HqStore, who: Staff, query: str = "") -> RewardsPage:
    """The page for ``who``; ``query``: a voucher id to look up (anything but 16 hex digits finds nothing).
    A store-wide reach reads its stores' vouchers only (``_reach``)."""
    require(who, Action.RULES_READ)
    q = query.strip().lower()[:32]
    stores = _reach(who)
    with store.db.read() as tx:
        found = _found(tx, q, stores) if VOUCHER_ID.fullmatch(q) else None
        sums = _sums(tx, stores)
        owed = sum(s.value for s in sums if s.state == vc.State.ACTIVE.value)
        return RewardsPage(_catalogue(tx), sums, owed, query.strip()[:32], found)


__all__ = ["VOUCHER_ID", "Reward", "RewardsPage", "VoucherSum", "page"]
