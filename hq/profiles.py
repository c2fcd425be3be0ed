"""Member profiles: birthday, the attributes a chain configures, marketing consent.

    check_birthday(text, today)        pure: a real date, not in the future (``bad_birthday``)
    check_attribute(rules, name, v)    pure: a name the chain configured, a value it allows
                                       (``unknown_attribute``, ``bad_attribute_value``)
    parse_consent("marketing:v2")      pure: (channel, wording version) (``bad_consent``)
    attribute_rules(tx) / set_attribute_rule(tx, rule)   the chain's attributes, kept as data
                                       (``profile_attributes``: allowed values or a pattern)
    profile(tx, member_id)             birthday, attributes, consents
    update(tx, member_id, change, ...) the one way a profile changes: an administrator, or the join page

Marketing consent is a ``consents`` row of channel ``marketing`` with the wording version the member
saw; withdrawing it sets ``withdrawn_at`` (the row stays: what was agreed and when). Erasure deletes the
profile, the attributes and the consents (``hq.members.erase``). All of it runs in the caller's transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hq.db.engine import Tx
from hq.errors import HqError

MARKETING = "marketing"
CONSENT_CHANNELS = (MARKETING,)
MARKETING_VERSION = "marketing-2026-12"
MARKETING_TEXT = (
    "Send me offers and news by e-mail or in the app, chosen from what I buy. I can withdraw this at any time."
)
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_VALUE = 64


class ProfileRefused(HqError):
    """``code``: bad_birthday, unknown_attribute, bad_attribute_value, bad_consent, unknown_member."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """An attribute the chain collects: its allowed values, or a pattern a value must match whole.
    ``members_set``: members give it on the join page; otherwise staff set it, and a member's own change
    naming it is refused (``unknown_attribute``), so no member puts themselves into a segment built on it."""

    name: str
    label: str
    allowed: tuple[str, ...] = ()
    pattern: str | None = None
    members_set: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "allowed": list(self.allowed),
            "pattern": self.pattern,
            "members_set": self.members_set,
        }


DEFAULT_RULES = (
    AttributeRule("age_band", "Age", ("under-20", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")),
    AttributeRule("postcode", "Postcode", pattern=r"[0-9]{3}-?[0-9]{4}"),
    AttributeRule("preferred_store", "Your usual store", pattern=r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"),
    AttributeRule("language", "Language", ("ja", "en", "zh", "ko")),
)
"""What a new head office collects until the chain configures its own (``set_attribute_rule``)."""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What to change; what is not named stays as it is."""

    birthday: str | None = None
    clear_birthday: bool = False
    attributes: dict[str, str] = field(default_factory=dict)
    """name -> value; an empty value removes the attribute."""
    consents: tuple[tuple[str, str], ...] = ()
    """(channel, wording version) given now."""
    withdraw: tuple[str, ...] = ()
    """Channels whose consent is withdrawn now."""


# -- pure -------------------------------------------------------------------------------------------


def check_birthday(text: str, today: date) -> date:
    """A birthday: ``YYYY-MM-DD``, a real date, not after ``today`` nor before 1900."""
    try:
        born = date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        born = None
    if born is None:
        raise ProfileRefused("bad_birthday", f"birthday {text!r} is not a date (YYYY-MM-DD)")
    if born > today or born.year < 1900:
        raise ProfileRefused("bad_birthday", f"birthday {text} is in the future or before 1900")
    return born


def check_attribute(rules: dict[str, AttributeRule], name: str, value: str) -> None:
    """A value for an attribute the chain configured (an empty value removes it)."""
    rule = rules.get(name)
    if rule is None:
        known = ", ".join(sorted(rules)) or "none"
        raise ProfileRefused("unknown_attribute", f"attribute {name!r} is not one the chain collects ({known})")
    if value == "":
        return
    if len(value) > MAX_VALUE:
        raise ProfileRefused("bad_attribute_value", f"{name}: a value of at most {MAX_VALUE} characters")
    if rule.allowed and value not in rule.allowed:
        raise ProfileRefused("bad_attribute_value", f"{name}: {value!r} is not one of {', '.join(rule.allowed)}")
    if rule.pattern is not None and re.fullmatch(rule.pattern, value) is None:
        raise ProfileRefused("bad_attribute_value", f"{name}: {value!r} does not match {rule.pattern}")


def check_rule(rule: AttributeRule) -> AttributeRule:
    if NAME.fullmatch(rule.name) is None:
        raise ProfileRefused("unknown_attribute", f"attribute name {rule.name!r}: lower case, digits and _")
    if bool(rule.allowed) == (rule.pattern is not None):
        raise ProfileRefused("bad_attribute_value", f"attribute {rule.name}: give allowed values or a pattern")
    if rule.pattern is not None:
        try:
            re.compile(rule.pattern)
        except re.error as exc:
            raise ProfileRefused("bad_attribute_value", f"attribute {rule.name}: bad pattern: {exc}") from exc
    return rule


def parse_consent(text: str) -> tuple[str, str]:
    """``CHANNEL:VERSION`` (e.g. ``marketing:v2``)."""
    channel, _, version = text.partition(":")
    if channel not in CONSENT_CHANNELS or VERSION.fullmatch(version) is None:
        raise ProfileRefused(
            "bad_consent", f"consent {text!r}: CHANNEL:VERSION with a channel of {', '.join(CONSENT_CHANNELS)}"
        )
    return channel, version


def parse_attribute(text: str) -> tuple[str, str]:
    """``NAME=VALUE``."""
    name, eq, value = text.partition("=")
    if not eq:
        raise ProfileRefused("unknown_attribute", f"attribute {text!r}: NAME=VALUE")
    return name.strip(), value.strip()


# -- storage ----------------------------------------------------------------------------------------


def attribute_rules(tx: Tx, *, for_members: bool = False) -> dict[str, AttributeRule]:
    """The attributes the chain collects (``for_members``: only those members give themselves)."""
    rows = tx.all("SELECT name, label, allowed, pattern, members_set FROM profile_attributes ORDER BY name")
    rules = {
        str(r[0]): AttributeRule(
            str(r[0]), str(r[1]), tuple(json.loads(str(r[2]))), None if r[3] is None else str(r[3]), bool(r[4])
        )
        for r in rows
    }
    return {name: rule for name, rule in rules.items() if rule.members_set or not for_members}


def known_member(tx: Tx, member_id: str, *, lock: bool = False) -> None:
    """``ProfileRefused`` unknown_member unless head office holds the member (not erased); ``lock``: its row,
    until the transaction ends."""
    lock_row = tx.for_update if lock else ""
    if tx.one(f"SELECT 1 FROM members WHERE member_id = ? AND deleted = 0{lock_row}", [member_id]) is None:
        raise ProfileRefused("unknown_member", f"no member {member_id}")


def set_attribute_rule(tx: Tx, rule: AttributeRule, now: str) -> None:
    check_rule(rule)
    tx.run(
        "INSERT INTO profile_attributes (name, label, allowed, pattern, members_set, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET label = excluded.label, "
        "allowed = excluded.allowed, pattern = excluded.pattern, members_set = excluded.members_set, "
        "updated_at = excluded.updated_at",
        [rule.name, rule.label, json.dumps(list(rule.allowed)), rule.pattern, int(rule.members_set), now],
    )


def seed_rules(tx: Tx, now: str) -> None:
    """The default attributes, once (a chain that configured its own keeps them)."""
    if tx.one("SELECT 1 FROM profile_attributes") is None:
        for rule in DEFAULT_RULES:
            set_attribute_rule(tx, rule, now)


def profile(tx: Tx, member_id: str) -> dict[str, Any]:
    row = tx.one("SELECT birthday, updated_at FROM member_profiles WHERE member_id = ?", [member_id])
    attributes = tx.all("SELECT name, value FROM member_attributes WHERE member_id = ? ORDER BY name", [member_id])
    consents = tx.all(
        "SELECT channel, wording_version, given_at, withdrawn_at FROM consents WHERE member_id = ? "
        "ORDER BY given_at, channel",
        [member_id],
    )
    return {
        "member_id": member_id,
        "birthday": None if row is None or row[0] is None else str(row[0]),
        "attributes": {str(n): str(v) for n, v in attributes},
        "consents": [
            {"channel": str(c), "wording_version": str(v), "given_at": str(g), "withdrawn_at": w}
            for c, v, g, w in consents
        ],
        "marketing": any(str(c) == MARKETING and w is None for c, _, _, w in consents),
        "updated_at": None if row is None else str(row[1]),
    }


def update(
    tx: Tx, member_id: str, change: ProfileChange, today: date, now: str, *, by_member: bool = False
) -> dict[str, Any]:
    """Check every part of the change, then apply it all (nothing is written when a part is refused).
    ``by_member``: the member's own change (the join page): staff-only attributes are not theirs to set."""
    known_member(tx, member_id, lock=True)
    born = check_birthday(change.birthday, today) if change.birthday is not None else None
    rules = attribute_rules(tx, for_members=by_member)
    for name, value in sorted(change.attributes.items()):
        check_attribute(rules, name, value)
    for channel, version in change.consents:
        parse_consent(f"{channel}:{version}")
    for channel in change.withdraw:
        if channel not in CONSENT_CHANNELS:
            raise ProfileRefused("bad_consent", f"no consent channel {channel!r}")
    if born is not None or change.clear_birthday:
        birthday = born.isoformat() if born is not None else None
        tx.run(
            "INSERT INTO member_profiles (member_id, birthday, birth_md, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (member_id) DO UPDATE SET birthday = excluded.birthday, birth_md = excluded.birth_md, "
            "updated_at = excluded.updated_at",
            [member_id, birthday, birthday[5:] if birthday else None, now],
        )
    else:
        tx.run(
            "INSERT INTO member_profiles (member_id, birthday, birth_md, updated_at) VALUES (?, NULL, NULL, ?) "
            "ON CONFLICT (member_id) DO UPDATE SET updated_at = excluded.updated_at",
            [member_id, now],
        )
    for name, value in sorted(change.attributes.items()):
        if value == "":
            tx.run("DELETE FROM member_attributes WHERE member_id = ? AND name = ?", [member_id, name])
        else:
            tx.run(
                "INSERT INTO member_attributes (member_id, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (member_id, name) DO UPDATE SET value = excluded.value",
                [member_id, name, value],
            )
    for channel in change.withdraw:
        tx.run(
            "UPDATE consents SET withdrawn_at = ? WHERE member_id = ? AND channel = ? AND withdrawn_at IS NULL",
            [now, member_id, channel],
        )
    for channel, version in change.consents:
        tx.run(
            "INSERT INTO consents (member_id, wording_version, channel, given_at, withdrawn_at) "
            "VALUES (?, ?, ?, ?, NULL) ON CONFLICT (member_id, wording_version, channel) "
            "DO UPDATE SET given_at = excluded.given_at, withdrawn_at = NULL",
            [member_id, version, channel, now],
        )
    return profile(tx, member_id)


def forget(tx: Tx, member_id: str) -> None:
    """Erasure: the member's profile and attributes go (its consents go with the member's other data)."""
    tx.run("DELETE FROM member_attributes WHERE member_id = ?", [member_id])
    tx.run("DELETE FROM member_profiles WHERE member_id = ?", [member_id])
