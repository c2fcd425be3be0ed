"""The rewards catalogue and the vouchers in the back office (docs/rewards.md, docs/stored-value.md), read only:
what members can buy with points and what is left of each reward's stock; the vouchers by state and kind (the
value sold and not yet used is what the chain still owes); one voucher found by its id, with its use.

Read by the roles that read the rules and coupons (``Action.RULES_READ``): the catalogue and the vouchers are
the chain's, like its coupons. Rewards are defined through the API and commands (``hq.rewards``, one path),
vouchers issued into a till's stock the same way (``hq.vouchers``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hq import rewards, vouchers
from hq.backoffice.roles import Action
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


def _sums(tx: Tx) -> list[VoucherSum]:
    rows = tx.all("SELECT state, kind, COUNT(*), COALESCE(SUM(value), 0) FROM vouchers GROUP BY state, kind")
    order = {state.value: n for n, state in enumerate(vc.State)}
    found = [VoucherSum(str(s), str(k), int(n), int(v)) for s, k, n, v in rows]
    return sorted(found, key=lambda v: (order.get(v.state, len(order)), v.state, v.kind))


def page(store: HqStore, who: Staff, query: str = "") -> RewardsPage:
    """The page for ``who``; ``query``: a voucher id to look up (anything but 16 hex digits finds nothing)."""
    require(who, Action.RULES_READ)
    q = query.strip().lower()[:32]
    with store.db.read() as tx:
        found = None
        if VOUCHER_ID.fullmatch(q):
            try:
                found = vouchers.report(tx, q)
            except Refused:
                found = None
        sums = _sums(tx)
        owed = sum(s.value for s in sums if s.state == vc.State.ACTIVE.value)
        return RewardsPage(_catalogue(tx), sums, owed, query.strip()[:32], found)


__all__ = ["VOUCHER_ID", "Reward", "RewardsPage", "VoucherSum", "page"]
