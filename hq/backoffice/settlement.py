"""Settlement in the back office (docs/settlement.md, docs/backoffice.md): a period's statements, one per
merchant, with the chain's totals, and each statement as the CSV and PDF the commands make (byte for byte:
``hq.settlement.to_csv`` and ``to_pdf``).

The chain's finance, its administrators and the auditor read every merchant's statement; a merchant's own
staff (``merchant_admin``, ``merchant_finance``) read their merchant's only, never the chain's totals, and a
statement of another merchant (an edited address) is ``forbidden``. Reading changes nothing. Closing a period
stays a command and an API call (``tillpoint hq settlement close``): it is final.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hq import periods, settlement
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Reach, reach
from hq.backoffice.staff import Staff
from hq.store import HqStore

_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")
FORMATS = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@dataclass(frozen=True, slots=True)
class SettlementView:
    period: str
    state: str
    """``open`` (the statements are provisional) or ``closed`` (final)."""
    statements: list[settlement.Statement]
    totals: dict[str, int] | None
    """The chain's side (every merchant's statement summed); None for a merchant's own staff."""
    closed_through: str | None
    closes: list[dict[str, Any]] = field(default_factory=list)


def _reach(who: Staff) -> Reach:
    found = reach(who.role, Action.SETTLEMENT_READ)
    if found is None:
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not read settlement")
    return found


def _mine(who: Staff, merchant_id: str) -> bool:
    """Whether ``who`` may read ``merchant_id``'s statement: the chain's roles any, a merchant's staff its own."""
    return _reach(who) is Reach.CHAIN or (who.merchant_id is not None and who.merchant_id == merchant_id)


def period_of(text: str, today: date) -> str:
    """The period asked for (``YYYY-MM``, the month a period starts in); by default the one today is in."""
    if not text:
        return today.strftime("%Y-%m")
    if not _PERIOD.fullmatch(text):
        raise BackofficeRefused(Code.BAD_PERIOD, "a period is YYYY-MM")
    return text


def _refused(exc: settlement.SettlementError) -> BackofficeRefused:
    code = Code.UNKNOWN_MERCHANT if exc.code is settlement.Code.UNKNOWN_MERCHANT else Code.BAD_PERIOD
    return BackofficeRefused(code, exc.detail)


def view(store: HqStore, who: Staff, asked: str, today: date) -> SettlementView:
    """The statements of the period ``asked`` (default: today's) that ``who`` may read."""
    chain_wide = _reach(who) is Reach.CHAIN
    with store.db.read() as tx:
        held = periods.calendar(tx)
        period = held.period_of(period_of(asked, today) + "-01")
        try:
            found = settlement.statements(tx, period)
        except settlement.SettlementError as exc:
            raise _refused(exc) from exc
        closes = [
            {"period": c.period, "closed_at": c.closed_at, "closed_by": c.closed_by, "reason": c.reason}
            for c in periods.closes(tx)
        ]
    mine = [s for s in found if _mine(who, s.merchant.merchant_id)]
    state = "closed" if held.is_closed(period) else "open"
    totals = settlement.totals(found) if chain_wide else None
    return SettlementView(period, state, mine, totals, held.closed_through, closes if chain_wide else [])


def document(store: HqStore, who: Staff, period: str, merchant_id: str, fmt: str) -> tuple[str, bytes]:
    """One merchant's statement as ``csv`` or ``pdf``: (file name, the bytes the commands write)."""
    if fmt not in FORMATS:
        raise BackofficeRefused(Code.NOT_FOUND, "a statement is csv or pdf")
    if not _PERIOD.fullmatch(period):
        raise BackofficeRefused(Code.BAD_PERIOD, "a period is YYYY-MM")
    if not _mine(who, merchant_id):
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not read {merchant_id}'s statement")
    try:
        found = settlement.read_statement(store.db, period, merchant_id)
    except settlement.SettlementError as exc:
        raise _refused(exc) from exc
    body = settlement.to_csv(found) if fmt == "csv" else settlement.to_pdf(found)
    return f"statement-{period}-{merchant_id}.{fmt}", body


__all__ = ["FORMATS", "SettlementView", "document", "period_of", "view"]
