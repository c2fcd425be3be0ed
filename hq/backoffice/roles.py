"""Who may do what in the back office: one typed table, read by one pure function. No I/O.

Every route names the ``Action`` it performs and asks ``allowed(role, action, scope)`` before it reads or
changes anything (``hq.api.backoffice``). ``scope`` says which stores the thing acted on belongs to:

    Scope(own, None)        a list or page that is not one store's (a search, the approvals): a store-wide
                            reach sees it, filtered to ``own`` by the caller
    Scope(own, frozenset)   one subject (a member: the stores it visited); a store-wide reach needs one of
                            ``own`` among them

    role            members  block  adjust  erase  approve adj.  launch  approve campaign  audit  rules  edit  staff
    chain_admin     chain    chain  chain   chain  chain         chain   chain             chain  chain  chain chain
    marketing       chain    -      -       -      -             chain   chain             -      chain  chain -
    store_manager   stores   stores stores  -      -             -       -                 -      read   -     -
    finance         chain    -      chain   -      chain         -       -                 chain  chain  -     -
    auditor         chain    -      -       -      -             -       -                 chain  chain  -     -

The rules and coupons are the whole chain's: a store manager reads them all (a list scope) and edits none.

    role            reconciliation  settle items  fleet
    chain_admin     chain           chain         chain
    marketing       -               -             -
    store_manager   stores          stores        stores
    finance         chain           chain         chain
    auditor         chain           -             chain

Reading pages (``*_read``) is granted as listed in ``PERMISSIONS``; the auditor reads and never writes.

A merchant's staff (``Staff.merchant_id`` set) hold one of ``MERCHANT_ROLES`` and reach only that merchant's
stores; the chain's own staff (no merchant) hold the others (a store manager may be either):

    role              members  block  adjust  approve adj.  reconciliation  settle  fleet  reports  rules
    merchant_admin    stores   stores stores  stores        stores          stores  stores stores   read
    merchant_finance  stores   -      stores  stores        stores          stores  stores stores   read

Nothing chain-wide by nature is theirs: erasure, campaigns, the audit log, rule edits, staff management.
The holds of online payment confirmations (``holds_read``, ``holds_release``) are the chain's: read by its
administrators, finance and the auditor, released by administrators and finance.
Settlement (``settlement_read``) is read by the chain's administrators, finance and the auditor for every
merchant, and by a merchant's admin and finance for their own merchant's statement only.
Their stores are computed in one place, ``stores_in_reach``, from the merchant's stores as head office holds
them at each request: a store moved to another merchant leaves their reach at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Role(StrEnum):
    CHAIN_ADMIN = "chain_admin"
    MARKETING = "marketing"
    STORE_MANAGER = "store_manager"
    FINANCE = "finance"
    AUDITOR = "auditor"
    MERCHANT_ADMIN = "merchant_admin"
    MERCHANT_FINANCE = "merchant_finance"


class Action(StrEnum):
    MEMBERS_READ = "members_read"
    """Search members, open a member's page."""
    MEMBERS_BLOCK = "members_block"
    """Block or unblock a member or one of its cards."""
    MEMBERS_ADJUST = "members_adjust"
    """Ask for a points or stored-value adjustment (applied once another person approves it)."""
    MEMBERS_ERASE = "members_erase"
    APPROVALS_READ = "approvals_read"
    APPROVE_ADJUSTMENT = "approve_adjustment"
    CAMPAIGNS_READ = "campaigns_read"
    CAMPAIGNS_LAUNCH = "campaigns_launch"
    """Ask for a campaign to be launched (applied once another person approves it)."""
    APPROVE_CAMPAIGN = "approve_campaign"
    AUDIT_READ = "audit_read"
    # reconciliation and the fleet
    RECON_READ = "recon_read"
    """Reconciliation items by cause, store, till and day, an item's page, end of day, the CSV export."""
    RECON_SETTLE = "recon_settle"
    """Settle an item, or a group of them, by hand with a note."""
    FLEET_READ = "fleet_read"
    """Every till with its health as reported in its pushes."""
    REPORTS_READ = "reports_read"
    """The report pages: figures by store and day (a store manager: its own stores')."""
    RULES_READ = "rules_read"
    """Read the earning rules, tier settings and coupons head office sends to the tills."""
    RULES_EDIT = "rules_edit"
    """Create, change and retire earning rules, tier settings and coupons (with the quote preview)."""
    STAFF_MANAGE = "staff_manage"
    """Create staff accounts, set their role and stores, reset passwords, disable accounts."""
    GIFTCARDS_READ = "giftcards_read"
    """Find a gift card, open its page: its state, balance, expiry and every activity."""
    GIFTCARDS_UNBLOCK = "giftcards_unblock"
    """Make a blocked gift card usable again (its value does not move)."""
    GIFTCARDS_CLEAR = "giftcards_clear"
    """Ask for a gift card's balance to be cleared (applied once another person approves it)."""
    APPROVE_GIFT_CLEAR = "approve_gift_clear"
    SETTLEMENT_READ = "settlement_read"
    """A period's settlement statements and their CSV and PDF (a merchant's staff: its merchant's only)."""
    HOLDS_READ = "holds_read"
    """What head office holds back for online payment confirmations whose sales have not arrived."""
    HOLDS_RELEASE = "holds_release"
    """End one such hold, saying why (a till gone for good, a sale whose transaction id another till took)."""


WRITES = frozenset(
    {
        Action.MEMBERS_BLOCK,
        Action.MEMBERS_ADJUST,
        Action.MEMBERS_ERASE,
        Action.APPROVE_ADJUSTMENT,
        Action.CAMPAIGNS_LAUNCH,
        Action.APPROVE_CAMPAIGN,
        Action.RECON_SETTLE,
        Action.RULES_EDIT,
        Action.STAFF_MANAGE,
        Action.GIFTCARDS_UNBLOCK,
        Action.GIFTCARDS_CLEAR,
        Action.APPROVE_GIFT_CLEAR,
        Action.HOLDS_RELEASE,
    }
)
"""The actions that change something (each leaves a record in the audit log)."""


class Reach(Enum):
    STORES = "stores"
    """Only what belongs to the staff member's own stores."""
    CHAIN = "chain"


@dataclass(frozen=True, slots=True)
class Scope:
    own: frozenset[str] = frozenset()
    """The staff member's stores (a store manager's; empty for the others)."""
    target: frozenset[str] | None = None
    """The stores of the subject acted on; None for a list (filtered to ``own`` for a store-wide reach)."""


_C, _S = Reach.CHAIN, Reach.STORES
PERMISSIONS: dict[Role, dict[Action, Reach]] = {
    Role.CHAIN_ADMIN: dict.fromkeys(Action, _C),
    Role.MARKETING: {
        Action.MEMBERS_READ: _C,
        Action.APPROVALS_READ: _C,
        Action.CAMPAIGNS_READ: _C,
        Action.CAMPAIGNS_LAUNCH: _C,
        Action.APPROVE_CAMPAIGN: _C,
        Action.REPORTS_READ: _C,
        Action.RULES_READ: _C,
        Action.RULES_EDIT: _C,
    },
    Role.STORE_MANAGER: {
        Action.MEMBERS_READ: _S,
        Action.MEMBERS_BLOCK: _S,
        Action.MEMBERS_ADJUST: _S,
        Action.APPROVALS_READ: _S,
        Action.RECON_READ: _S,
        Action.RECON_SETTLE: _S,
        Action.FLEET_READ: _S,
        Action.REPORTS_READ: _S,
        Action.RULES_READ: _S,
    },
    Role.FINANCE: {
        Action.MEMBERS_READ: _C,
        Action.MEMBERS_ADJUST: _C,
        Action.APPROVALS_READ: _C,
        Action.APPROVE_ADJUSTMENT: _C,
        Action.AUDIT_READ: _C,
        Action.RECON_READ: _C,
        Action.RECON_SETTLE: _C,
        Action.FLEET_READ: _C,
        Action.REPORTS_READ: _C,
        Action.RULES_READ: _C,
        Action.GIFTCARDS_READ: _C,
        Action.GIFTCARDS_UNBLOCK: _C,
        Action.GIFTCARDS_CLEAR: _C,
        Action.APPROVE_GIFT_CLEAR: _C,
        Action.SETTLEMENT_READ: _C,
        Action.HOLDS_READ: _C,
        Action.HOLDS_RELEASE: _C,
    },
    Role.AUDITOR: {
        Action.MEMBERS_READ: _C,
        Action.APPROVALS_READ: _C,
        Action.CAMPAIGNS_READ: _C,
        Action.AUDIT_READ: _C,
        Action.RECON_READ: _C,
        Action.FLEET_READ: _C,
        Action.REPORTS_READ: _C,
        Action.RULES_READ: _C,
        Action.GIFTCARDS_READ: _C,
        Action.SETTLEMENT_READ: _C,
        Action.HOLDS_READ: _C,
    },
    Role.MERCHANT_ADMIN: {
        Action.MEMBERS_READ: _S,
        Action.MEMBERS_BLOCK: _S,
        Action.MEMBERS_ADJUST: _S,
        Action.APPROVALS_READ: _S,
        Action.APPROVE_ADJUSTMENT: _S,
        Action.RECON_READ: _S,
        Action.RECON_SETTLE: _S,
        Action.FLEET_READ: _S,
        Action.REPORTS_READ: _S,
        Action.RULES_READ: _S,
        Action.SETTLEMENT_READ: _S,
    },
    Role.MERCHANT_FINANCE: {
        Action.MEMBERS_READ: _S,
        Action.MEMBERS_ADJUST: _S,
        Action.APPROVALS_READ: _S,
        Action.APPROVE_ADJUSTMENT: _S,
        Action.RECON_READ: _S,
        Action.RECON_SETTLE: _S,
        Action.FLEET_READ: _S,
        Action.REPORTS_READ: _S,
        Action.RULES_READ: _S,
        Action.SETTLEMENT_READ: _S,
    },
}

MERCHANT_ROLES = frozenset({Role.MERCHANT_ADMIN, Role.MERCHANT_FINANCE, Role.STORE_MANAGER})
"""The roles a merchant's staff may hold (every action of theirs reaches stores, never the chain)."""
CHAIN_ROLES = frozenset(Role) - {Role.MERCHANT_ADMIN, Role.MERCHANT_FINANCE}
"""The roles the chain's own staff may hold."""


def fits(role: Role, merchant_id: str | None) -> bool:
    """Whether a staff account of ``merchant_id`` (None: the chain's own) may hold ``role``."""
    return role in (CHAIN_ROLES if merchant_id is None else MERCHANT_ROLES)


def stores_in_reach(
    role: Role, assigned: frozenset[str], merchant_id: str | None, merchant_stores: frozenset[str]
) -> frozenset[str]:
    """The stores a staff member acts within: a chain member of staff, its assigned stores (a store manager's;
    none for the chain-wide roles); a merchant's, the merchant's stores now (a store manager: those of its
    assigned stores the merchant still holds). A role that does not fit the merchant reaches nothing."""
    if merchant_id is None:
        return assigned
    if not fits(role, merchant_id):
        return frozenset()
    return assigned & merchant_stores if role is Role.STORE_MANAGER else merchant_stores


def reach(role: Role, action: Action) -> Reach | None:
    """How far ``role`` may do ``action``; None: not at all."""
    return PERMISSIONS[role].get(action)


def allowed(role: Role, action: Action, scope: Scope) -> bool:
    """Whether ``role`` may do ``action`` on what ``scope`` describes."""
    found = reach(role, action)
    if found is Reach.CHAIN:
        return True
    if found is Reach.STORES:
        return scope.target is None or bool(scope.target & scope.own)
    return False


def may(role: Role, action: Action) -> bool:
    """Whether ``role`` may do ``action`` anywhere at all (what the navigation shows)."""
    return reach(role, action) is not None


__all__ = [
    "CHAIN_ROLES",
    "MERCHANT_ROLES",
    "WRITES",
    "Action",
    "Reach",
    "Role",
    "Scope",
    "allowed",
    "fits",
    "may",
    "reach",
    "stores_in_reach",
]
