"""Merchants: the tenants of the chain, each owning stores (and their terminals), and each paying for the
points its stores issue and reimbursed for the points its stores accept.

Rates are integers in the chain's minor currency units per 100 points (``cost_per_100``,
``reimburse_per_100``): 150 is 1.50 per 100 points. An amount of money for a number of points is
computed once per settlement figure, on its total, rounded down (``money_for``), never per entry, so a
statement is exact and reproducible. Every store without a merchant belongs to the chain's own merchant
(``chain``), which the migration creates.

Each merchant settles its points at one ``Timing`` (docs/settlement.md): at issuance (it pays for the points
its stores issue; the chain keeps what expires), at redemption (it pays for its points as members spend them,
anywhere; what expires costs it nothing), or against a reserve (it funds its outstanding points as they are
issued, and what expires is released back to it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from hq.db.engine import Tx, utc_now
from hq.errors import HqError

CHAIN_MERCHANT = "chain"
MERCHANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_RATE = 1_000_000


class MerchantError(HqError):
    """A merchant that cannot be added or used; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Timing(StrEnum):
    ISSUANCE = "issuance"
    REDEMPTION = "redemption"
    RESERVE = "reserve"


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    cost_per_100: int
    """What the merchant pays the chain per 100 points its stores issue (minor units)."""
    reimburse_per_100: int
    """What the chain pays the merchant per 100 points its stores accept (minor units)."""
    created_at: str
    timing: str = Timing.ISSUANCE.value
    """When it pays for its points (``Timing``); a close made before timings existed froze none: issuance."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def money_for(points: int, rate_per_100: int) -> int:
    """Minor units for ``points`` at ``rate_per_100``, rounded down (exact integer arithmetic): a negative amount
    away from zero, so a negative charge (-1 point at 150: -2) favours the merchant by up to 1 minor unit."""
    return points * rate_per_100 // 100


def check(merchant_id: str, name: str, cost_per_100: int, reimburse_per_100: int, timing: str = "issuance") -> None:
    if not MERCHANT_ID.fullmatch(merchant_id):  # (match with "$" let "M-A\n" through)
        raise MerchantError("bad_merchant_id", f"a merchant id is 1-64 letters, digits, '_', '.', '-': {merchant_id!r}")
    if not name.strip() or len(name) > 200:
        raise MerchantError("bad_merchant_name", "a merchant's name is 1-200 characters")
    for rate in (cost_per_100, reimburse_per_100):
        if not 0 <= rate <= MAX_RATE:
            raise MerchantError("bad_rate", f"a rate is 0-{MAX_RATE} minor units per 100 points")
    if timing not in {t.value for t in Timing}:
        raise MerchantError("bad_timing", f"a merchant settles at {', '.join(t.value for t in Timing)}: {timing!r}")


def add(
    tx: Tx,
    merchant_id: str,
    name: str,
    cost_per_100: int | None = None,
    reimburse_per_100: int | None = None,
    timing: str | None = None,
) -> Merchant:
    """Add a merchant, or change its name, rates and timing (they apply to statements not yet closed); a rate
    or ``timing`` None: the one it has (a new merchant's: 0, issuance)."""
    held = get(tx, merchant_id)
    if cost_per_100 is None:
        cost_per_100 = held.cost_per_100 if held else 0
    if reimburse_per_100 is None:
        reimburse_per_100 = held.reimburse_per_100 if held else 0
    if timing is None:
        timing = held.timing if held else Timing.ISSUANCE.value
    check(merchant_id, name, cost_per_100, reimburse_per_100, timing)
    tx.run(
        "INSERT INTO merchants (merchant_id, name, cost_per_100, reimburse_per_100, created_at, timing) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (merchant_id) DO UPDATE SET name = excluded.name, cost_per_100 = excluded.cost_per_100, "
        "reimburse_per_100 = excluded.reimburse_per_100, timing = excluded.timing",
        [merchant_id, name, cost_per_100, reimburse_per_100, utc_now(), timing],
    )
    found = get(tx, merchant_id)
    assert found is not None
    return found


def get(tx: Tx, merchant_id: str) -> Merchant | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM merchants WHERE merchant_id = ?", [merchant_id])
    return _merchant(row) if row else None


def all_merchants(tx: Tx) -> list[Merchant]:
    return [_merchant(r) for r in tx.all(f"SELECT {_COLUMNS} FROM merchants ORDER BY merchant_id")]


_COLUMNS = "merchant_id, name, cost_per_100, reimburse_per_100, created_at, timing"


def _merchant(row: tuple[Any, ...]) -> Merchant:
    return Merchant(str(row[0]), str(row[1]), int(row[2]), int(row[3]), str(row[4]), str(row[5]))


def assign_store(tx: Tx, store_id: str, merchant_id: str, timezone: str) -> None:
    """Give a store to a merchant (a store head office had no row for gets the chain's calendar)."""
    if get(tx, merchant_id) is None:
        raise MerchantError("unknown_merchant", f"no merchant {merchant_id}")
    tx.run(
        "INSERT INTO stores (store_id, timezone, day_starts, updated_at, merchant_id) VALUES (?, ?, '00:00', ?, ?) "
        "ON CONFLICT (store_id) DO UPDATE SET merchant_id = excluded.merchant_id, updated_at = excluded.updated_at",
        [store_id, timezone, utc_now(), merchant_id],
    )


def resolver(tx: Tx) -> Callable[[str], str]:
    """store id -> its merchant, read once per store per call (stores without a row are the chain's)."""
    known: dict[str, str] = {}

    def merchant_of(store_id: str) -> str:
        if store_id not in known:
            row = tx.one("SELECT merchant_id FROM stores WHERE store_id = ?", [store_id])
            known[store_id] = str(row[0]) if row and row[0] else CHAIN_MERCHANT
        return known[store_id]

    return merchant_of
