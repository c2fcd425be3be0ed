"""The campaigns page's reading and the one change it makes: asking for a campaign's launch, which applies
when a second person approves it (``approvals``, kind ``campaign``). Editing campaigns comes later; the spec
is the JSON document ``tillpoint hq campaign put`` reads (docs/campaigns.md)."""

from __future__ import annotations

from typing import Any

from hq import campaigns as hq_campaigns
from hq.backoffice import approvals
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Scope, allowed
from hq.backoffice.staff import Staff
from hq.db.engine import Tx
from hq.store import HqStore
from terminal.canonical import strict_loads

MAX_SPEC = 32 * 1024


def listed(tx: Tx, who: Staff) -> list[dict[str, Any]]:
    """Every campaign (id, name, state, who made it, when it changed, and whether it is served: one today's
    rules refuse is not, ``not_served`` saying why); chain-wide roles only."""
    if not allowed(who.role, Action.CAMPAIGNS_READ, Scope(who.stores, frozenset())):
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not read campaigns")
    keys = ("campaign_id", "name", "state", "created_by", "updated_at")
    return [{**{k: c[k] for k in keys}, **hq_campaigns.service(c)} for c in hq_campaigns.listed(tx)]


def ask_launch(store: HqStore, who: Staff, campaign_id: str, text: str, reason: str) -> approvals.Request:
    """A pending launch of the campaign ``text`` (its JSON spec) under ``campaign_id``."""
    if len(text) > MAX_SPEC:
        raise BackofficeRefused(Code.CAMPAIGN_INVALID, "a campaign spec has at most 32 KiB")
    try:
        spec = strict_loads(text.encode("utf-8", "surrogatepass"))  # no NaN, no lone surrogate: as the APIs read JSON
    except ValueError as exc:
        raise BackofficeRefused(Code.CAMPAIGN_INVALID, f"the spec is not JSON: {exc}") from exc
    payload = {"spec": spec}
    return store.db.transact(lambda tx: approvals.ask(tx, who, approvals.CAMPAIGN, campaign_id, None, payload, reason))


__all__ = ["ask_launch", "listed"]
