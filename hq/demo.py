"""Demo members and cards for head office, one per thing a cashier should see happen on a tap.

``seed_demo`` is idempotent and safe to run at every start: it (re)writes the demo members' names,
tiers and statuses, their cards and the base earning rule, but an existing member keeps the points
balance it has earned since, because those balances are facts pushed by the tills.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hq.db.engine import Tx
from hq.store import HqStore
from hq.wallet import signin
from terminal.credentials import card_uid_hash

BASE_RULE_ID = "base"
BASE_RULE_POINTS = 1
BASE_RULE_PER_MINOR = 100


DEMO_CONTACTS = {"M-0001": "aiko@example.com", "M-0002": "ben@example.com"}
"""Demo members' email addresses: sign in to the wallet (``/wallet/``) with one; the code is on the console."""


@dataclass(frozen=True, slots=True)
class DemoCard:
    uid: str
    """The card UID as printed/typed hex; head office only ever stores its keyed hash."""
    member_id: str
    display_name: str
    tier: str
    card_status: str
    member_status: str
    points: int
    """Initial balance, used only when the member does not exist yet."""
    note: str
    """What happens on a tap, for the demo's instructions."""


DEMO_CARDS: tuple[DemoCard, ...] = (
    DemoCard("04A1B2C3D4E501", "M-0001", "Aiko Tanaka", "gold", "active", "active", 1200, "earns points"),
    DemoCard("04A1B2C3D4E502", "M-0002", "Ben Carter", "silver", "active", "active", 300, "earns points"),
    DemoCard("04A1B2C3D4E503", "M-0003", "Chen Wei", "basic", "blocked", "active", 0, "refused: card blocked"),
    DemoCard("04A1B2C3D4E504", "M-0004", "Dana Kim", "basic", "active", "blocked", 50, "refused: member blocked"),
)


DEMO_RULES: dict[str, dict[str, Any]] = {
    "tiers": {
        "kind": "tiers",
        "levels": [
            {"tier": "basic", "threshold": 0},
            {"tier": "silver", "threshold": 500},
            {"tier": "gold", "threshold": 2000},
        ],
        "window_days": 365,
    },
    "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 50},
    "points_policy": {"kind": "points_policy", "lock_days": 0, "expire_days": 730},
    "tier-silver": {"kind": "tier", "tier": "silver", "multiplier_pct": 125, "text": "silver +25%"},
    "tier-gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 150, "text": "gold +50%"},
    "coffee-weekend": {
        "kind": "campaign",
        "multiplier_pct": 200,
        "categories": ["coffee"],
        "weekdays": [5, 6],
        "hours": ["07:00", "11:00"],
        "text": "double points on coffee, weekend mornings",
    },
    "beans-bonus": {
        "kind": "sku_bonus",
        "points": 50,
        "skus": ["BEANS-1KG"],
        "per_unit": False,
        "text": "+50 pt for a bag of beans",
    },
    "cap": {"kind": "cap", "cap": 5000, "text": "at most 5000 pt per sale"},
}
DEMO_COUPONS: dict[str, dict[str, Any]] = {
    "WELCOME": {
        "kind": "amount_off",
        "value": 200,
        "member_only": True,
        "limits": {"per_member": 1},
        "text": "2.00 off, welcome",
    },
    "COFFEE10": {
        "kind": "percent_off",
        "value": 10,
        "target": "items",
        "categories": ["coffee"],
        "text": "10% off coffee",
    },
    "BIG-SPEND": {
        "kind": "amount_off",
        "value": 1000,
        "min_spend": 5000,
        "exclusive": True,
        "limits": {"global": 100},
        "text": "10.00 off from 50.00",
    },
    "AIKO-BDAY": {
        "kind": "bonus_points",
        "value": 300,
        "member_id": "M-0001",
        "limits": {"global": 1},
        "text": "birthday: +300 pt",
    },
}


def seed_demo(store: HqStore, card_key: bytes) -> None:
    """Write the demo members, their cards (UIDs hashed under ``card_key``), the base rule, the demo
    earning rules and coupons (documents as in docs/loyalty.md) and two members' wallet contacts."""
    for card in DEMO_CARDS:
        _seed_member(store, card)
        store.upsert_card(card_uid_hash(card_key, bytes.fromhex(card.uid)), card.member_id, card.card_status)
    store.set_rule(BASE_RULE_ID, BASE_RULE_POINTS, BASE_RULE_PER_MINOR)
    for rule_id, body in DEMO_RULES.items():
        store.put_rule_doc(body, rule_id)
    for coupon_id, body in DEMO_COUPONS.items():
        store.put_coupon(body, coupon_id)
    now = int(time.time())
    for member_id, email in DEMO_CONTACTS.items():
        _seed_contact(store, member_id, signin.contact_of(email), now)


def _seed_contact(store: HqStore, member_id: str, contact: signin.Contact, now: int) -> None:
    def save(tx: Tx) -> None:
        signin.set_contact(tx, member_id, contact, "demo", now, take=True)

    store.db.transact(save)


def _seed_member(store: HqStore, card: DemoCard) -> None:
    held = store.member(card.member_id)
    points = card.points if held is None else held.points
    store.upsert_member(card.member_id, card.display_name, card.tier, points, card.member_status)
