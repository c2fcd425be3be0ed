"""Demo members and cards for head office, one per thing a cashier should see happen on a tap.

``seed_demo`` is idempotent and safe to run at every start: it (re)writes the demo members' names,
tiers and statuses, their cards and the base earning rule, but an existing member keeps the points
balance it has earned since, because those balances are facts pushed by the tills.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.hq.storage import HqStore
from terminal.credentials import card_uid_hash

BASE_RULE_ID = "base"
BASE_RULE_POINTS = 1
BASE_RULE_PER_MINOR = 100


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


def seed_demo(store: HqStore, card_key: bytes) -> None:
    """Write the demo members, their cards (UIDs hashed under ``card_key``) and the base rule."""
    for card in DEMO_CARDS:
        _seed_member(store, card)
        store.upsert_card(card_uid_hash(card_key, bytes.fromhex(card.uid)), card.member_id, card.card_status)
    store.set_rule(BASE_RULE_ID, BASE_RULE_POINTS, BASE_RULE_PER_MINOR)


def _seed_member(store: HqStore, card: DemoCard) -> None:
    held = store.member(card.member_id)
    points = card.points if held is None else held.points
    store.upsert_member(card.member_id, card.display_name, card.tier, points, card.member_status)
