"""The role table, exhaustively: every role, every action, every kind of scope, against the table the issue
asks for written out again here; and what the table promises as a whole (the auditor never writes, a store
manager never reaches beyond its stores)."""

from __future__ import annotations

import itertools

import pytest

from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import (
    CHAIN_ROLES,
    MERCHANT_ROLES,
    PERMISSIONS,
    WRITES,
    Action,
    Reach,
    Role,
    Scope,
    allowed,
    fits,
    may,
    stores_in_reach,
)
from hq.backoffice.staff import Staff, require

A = Action
EXPECTED: dict[Role, dict[Action, str]] = {
    Role.CHAIN_ADMIN: dict.fromkeys(Action, "chain"),
    Role.MARKETING: {
        A.MEMBERS_READ: "chain",
        A.APPROVALS_READ: "chain",
        A.CAMPAIGNS_READ: "chain",
        A.CAMPAIGNS_LAUNCH: "chain",
        A.APPROVE_CAMPAIGN: "chain",
        A.REPORTS_READ: "chain",
        A.RULES_READ: "chain",
        A.RULES_EDIT: "chain",
    },
    Role.STORE_MANAGER: {
        A.MEMBERS_READ: "stores",
        A.MEMBERS_BLOCK: "stores",
        A.MEMBERS_ADJUST: "stores",
        A.APPROVALS_READ: "stores",
        A.RECON_READ: "stores",
        A.RECON_SETTLE: "stores",
        A.FLEET_READ: "stores",
        A.REPORTS_READ: "stores",
        A.RULES_READ: "stores",
    },
    Role.FINANCE: {
        A.MEMBERS_READ: "chain",
        A.MEMBERS_ADJUST: "chain",
        A.APPROVALS_READ: "chain",
        A.APPROVE_ADJUSTMENT: "chain",
        A.AUDIT_READ: "chain",
        A.RECON_READ: "chain",
        A.RECON_SETTLE: "chain",
        A.FLEET_READ: "chain",
        A.REPORTS_READ: "chain",
        A.RULES_READ: "chain",
        A.GIFTCARDS_READ: "chain",
        A.GIFTCARDS_UNBLOCK: "chain",
        A.GIFTCARDS_CLEAR: "chain",
        A.APPROVE_GIFT_CLEAR: "chain",
        A.SETTLEMENT_READ: "chain",
        A.HOLDS_READ: "chain",
        A.HOLDS_RELEASE: "chain",
    },
    Role.AUDITOR: {
        A.MEMBERS_READ: "chain",
        A.APPROVALS_READ: "chain",
        A.CAMPAIGNS_READ: "chain",
        A.AUDIT_READ: "chain",
        A.RECON_READ: "chain",
        A.FLEET_READ: "chain",
        A.REPORTS_READ: "chain",
        A.RULES_READ: "chain",
        A.GIFTCARDS_READ: "chain",
        A.SETTLEMENT_READ: "chain",
        A.HOLDS_READ: "chain",
    },
    Role.MERCHANT_ADMIN: {
        A.MEMBERS_READ: "stores",
        A.MEMBERS_BLOCK: "stores",
        A.MEMBERS_ADJUST: "stores",
        A.APPROVALS_READ: "stores",
        A.APPROVE_ADJUSTMENT: "stores",
        A.RECON_READ: "stores",
        A.RECON_SETTLE: "stores",
        A.FLEET_READ: "stores",
        A.REPORTS_READ: "stores",
        A.RULES_READ: "stores",
        A.SETTLEMENT_READ: "stores",
    },
    Role.MERCHANT_FINANCE: {
        A.MEMBERS_READ: "stores",
        A.MEMBERS_ADJUST: "stores",
        A.APPROVALS_READ: "stores",
        A.APPROVE_ADJUSTMENT: "stores",
        A.RECON_READ: "stores",
        A.RECON_SETTLE: "stores",
        A.FLEET_READ: "stores",
        A.REPORTS_READ: "stores",
        A.RULES_READ: "stores",
        A.SETTLEMENT_READ: "stores",
    },
}
OWN = frozenset({"S1", "S2"})
SCOPES = {
    "list": Scope(OWN, None),
    "own store": Scope(OWN, frozenset({"S2"})),
    "own and other": Scope(OWN, frozenset({"S2", "S9"})),
    "other store": Scope(OWN, frozenset({"S9"})),
    "no store": Scope(OWN, frozenset()),
    "no own stores": Scope(frozenset(), frozenset({"S1"})),
}
INSIDE = {"list", "own store", "own and other"}


@pytest.mark.parametrize(("role", "action", "scope"), list(itertools.product(Role, Action, SCOPES)))
def test_allowed_is_the_table_for_every_role_action_and_scope(role: Role, action: Action, scope: str) -> None:
    reach = EXPECTED[role].get(action)
    want = reach == "chain" or (reach == "stores" and scope in INSIDE)
    assert allowed(role, action, SCOPES[scope]) is want
    assert may(role, action) is (reach is not None)


def test_the_table_has_every_role_and_nothing_else() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert {r: {a: x.value for a, x in t.items()} for r, t in PERMISSIONS.items()} == EXPECTED


def test_the_auditor_reads_and_never_writes() -> None:
    assert not any(may(Role.AUDITOR, action) for action in WRITES)
    assert all(action.value.endswith("_read") for action in PERMISSIONS[Role.AUDITOR])


def test_a_store_manager_never_reaches_beyond_its_stores() -> None:
    assert set(PERMISSIONS[Role.STORE_MANAGER].values()) == {Reach.STORES}
    for action in Action:
        assert not allowed(Role.STORE_MANAGER, action, SCOPES["other store"])
        assert not allowed(Role.STORE_MANAGER, action, SCOPES["no store"])


def test_money_moved_by_hand_is_asked_for_and_approved_by_roles_that_can_be_two_people() -> None:
    """Every role that may ask for an adjustment or a launch has another role that may approve it."""
    pairs = (
        (A.MEMBERS_ADJUST, A.APPROVE_ADJUSTMENT),
        (A.CAMPAIGNS_LAUNCH, A.APPROVE_CAMPAIGN),
        (A.GIFTCARDS_CLEAR, A.APPROVE_GIFT_CLEAR),
    )
    for ask, approve in pairs:
        askers = [r for r in Role if may(r, ask)]
        assert askers and all(any(may(o, approve) for o in Role) for _ in askers)


CHAIN_WIDE_BY_NATURE = {
    A.MEMBERS_ERASE,
    A.CAMPAIGNS_READ,
    A.CAMPAIGNS_LAUNCH,
    A.APPROVE_CAMPAIGN,
    A.AUDIT_READ,
    A.RULES_EDIT,
    A.STAFF_MANAGE,
    A.GIFTCARDS_READ,  # a gift card's value is the chain's, of no store
    A.GIFTCARDS_UNBLOCK,
    A.GIFTCARDS_CLEAR,
    A.APPROVE_GIFT_CLEAR,
    A.HOLDS_READ,  # what head office holds back of members' and gift cards' value: the chain's
    A.HOLDS_RELEASE,
}


@pytest.mark.parametrize("role", sorted(MERCHANT_ROLES))
def test_a_merchants_roles_reach_only_stores_and_nothing_chain_wide_by_nature(role: Role) -> None:
    assert set(PERMISSIONS[role].values()) == {Reach.STORES}
    for action in CHAIN_WIDE_BY_NATURE:
        assert not may(role, action), (role, action)
    for action in Action:
        assert not allowed(role, action, SCOPES["other store"])


def test_which_roles_fit_a_merchants_staff_and_the_chains() -> None:
    assert {Role.MERCHANT_ADMIN, Role.MERCHANT_FINANCE, Role.STORE_MANAGER} == MERCHANT_ROLES
    assert set(Role) == CHAIN_ROLES | MERCHANT_ROLES and {Role.STORE_MANAGER} == CHAIN_ROLES & MERCHANT_ROLES
    for role in Role:
        assert fits(role, None) is (role in CHAIN_ROLES)
        assert fits(role, "north") is (role in MERCHANT_ROLES)


HELD = frozenset({"S1", "S3"})


@pytest.mark.parametrize(
    ("role", "assigned", "merchant", "want"),
    [
        (Role.CHAIN_ADMIN, frozenset(), None, frozenset()),
        (Role.STORE_MANAGER, frozenset({"S1", "S2"}), None, frozenset({"S1", "S2"})),
        (Role.MERCHANT_ADMIN, frozenset(), "north", HELD),
        (Role.MERCHANT_FINANCE, frozenset({"S9"}), "north", HELD),
        (Role.STORE_MANAGER, frozenset({"S1", "S2"}), "north", frozenset({"S1"})),
        (Role.FINANCE, frozenset(), "north", frozenset()),
        (Role.CHAIN_ADMIN, frozenset(), "north", frozenset()),
    ],
)
def test_the_stores_in_reach(role: Role, assigned: frozenset[str], merchant: str | None, want: frozenset[str]) -> None:
    """A merchant's staff reach the merchant's stores as held now; a store manager of a merchant, only those of
    its stores the merchant still holds; a chain role given a merchant (a row edited by hand) reaches nothing."""
    assert stores_in_reach(role, assigned, merchant, HELD if merchant else frozenset()) == want


def test_every_service_refuses_through_one_check_by_the_subjects_stores() -> None:
    """``staff.require``: a store manager reaches its own store's subjects and the lists kept within its reach,
    never another store's subject nor the chain's own (no store); a chain role reaches all of them."""
    manager = Staff("sm", "Store", Role.STORE_MANAGER, frozenset({"S1"}))
    admin = Staff("ca", "Chain", Role.CHAIN_ADMIN, frozenset())
    require(manager, Action.MEMBERS_READ, frozenset({"S1", "S2"}))  # a member who shopped at its store
    require(manager, Action.MEMBERS_READ)  # a list: filtered to its stores by the page
    for target in (frozenset({"S2"}), frozenset()):
        with pytest.raises(BackofficeRefused) as refused:
            require(manager, Action.MEMBERS_READ, target)
        assert refused.value.code is Code.FORBIDDEN
    with pytest.raises(BackofficeRefused):
        require(manager, Action.STAFF_MANAGE)  # no reach at all
    for target in (None, frozenset(), frozenset({"S2"})):
        require(admin, Action.STAFF_MANAGE, target)
