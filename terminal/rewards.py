"""The rewards catalogue's documents, read the same way by the till and by head office (docs/rewards.md).

A reward is bought with points: an ``item`` (a product given free), a ``coupon`` issued to the member, or a
``partner_code`` (a partner's voucher: a code head office holds in stock and hands out once). Head office
keeps the catalogue and sends each reward down with the rule documents (id ``reward:<reward_id>``); a
reward with a limited stock redeems from the flash-drop pool ``reward:<reward_id>``, so a till sells it only
within the allocation head office granted it, offline too. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from terminal.coupons import Coupon, parse_coupon
from terminal.loyalty import DocumentError

PREFIX = "reward:"
BOUGHT = "R-"
"""The id prefix of a personal coupon a member bought with points (``R-<purchase id>``, in the wallet or at a
till): it is their points in another form, so a till applies it only when presented and with the member's
proof (a secure tap, a code from their phone), never by the member's number alone."""
"""The prefix of a reward's rule-document id, of its pool id and of the line a till sells it on."""
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
MAX_POINTS = 10_000_000
MAX_STOCK = 10_000_000
MAX_TITLE = 80


class RewardKind(StrEnum):
    ITEM = "item"
    COUPON = "coupon"
    PARTNER_CODE = "partner_code"


class RewardError(ValueError):
    """A reward document that is not one: the till ignores it, head office refuses it (``reward_invalid``)."""


@dataclass(frozen=True, slots=True)
class Reward:
    reward_id: str
    kind: RewardKind
    points: int
    """What it costs, in whole points."""
    title: str
    sku: str | None = None
    """``item``: the product given free."""
    coupon: str | None = None
    """``coupon``: the coupon document issued to the member (canonical JSON, without id or member)."""
    stock: int | None = None
    """Units chain-wide (None: no limit). A ``partner_code`` reward's stock is the codes head office holds."""
    active: bool = True

    @property
    def pool_id(self) -> str | None:
        """The pool its stock is counted in; None when it has no limit."""
        return pool_of(self.reward_id) if self.stock is not None or self.kind is RewardKind.PARTNER_CODE else None

    @property
    def line_sku(self) -> str:
        """The sku of the line a till sells it on, at price 0 (never the item's own sku: a bonus rule on the
        item must not earn points on a reward)."""
        return PREFIX + self.reward_id

    def doc(self) -> dict[str, Any]:
        """The document the tills receive (and head office stores as the reward's rule document)."""
        out: dict[str, Any] = {
            "kind": "reward",
            "reward_id": self.reward_id,
            "reward": self.kind.value,
            "points": self.points,
            "title": self.title,
            "active": self.active,
        }
        if self.sku is not None:
            out["sku"] = self.sku
        if self.coupon is not None:
            out["coupon"] = json.loads(self.coupon)
        if self.stock is not None:
            out["stock"] = self.stock
        return out


def members_value(coupon: Coupon) -> bool:
    """Whether using ``coupon`` spends its member's value, so the sale needs the member's proof as points
    do: one bought with points (``BOUGHT``), or a personal coupon worth money off (``Coupon.members_own``)."""
    return coupon.coupon_id.startswith(BOUGHT) or coupon.members_own


def spends_members_value(coupon_id: str, doc: Mapping[str, Any]) -> bool:
    """``members_value`` of a coupon document as stored; a personal one that does not parse counts as
    the member's value (the safe side), as does any id bought with points."""
    try:
        return members_value(parse_coupon(coupon_id, doc))
    except (DocumentError, TypeError, ValueError):
        return coupon_id.startswith(BOUGHT) or bool(doc.get("member_id"))


def pool_of(reward_id: str) -> str:
    return PREFIX + reward_id


def returned(line_skus: Sequence[str], lines: Iterable[int]) -> set[str]:
    """The rewards whose line (sku ``reward:<id>``) is among ``lines``, indexes into a sale's ``line_skus``:
    what a refund returning those lines gives back."""
    return {line_skus[n][len(PREFIX) :] for n in lines if 0 <= n < len(line_skus) and line_skus[n].startswith(PREFIX)}


def kept_once_bought(reward: Reward | None) -> bool:
    """Whether the member keeps a reward whatever becomes of the sale that bought it, so a till never gives back
    its points or its unit: a ``partner_code`` (head office hands a code out as the sale arrives, and a code
    once shown is retired) or a ``coupon`` (it may be used already, at any till). Only an ``item`` goes back
    with its line. A reward the till no longer holds in its catalogue is kept: the safe side."""
    return reward is None or reward.kind is not RewardKind.ITEM


def not_returnable(reward_ids: Iterable[str], rewards: Mapping[str, Reward]) -> tuple[str, ...]:
    """Those of ``reward_ids`` (the rewards whose lines a refund or void would return) that the member keeps
    (``kept_once_bought``), sorted: the till refuses such a refund or void (``reward_not_returnable``), as head
    office would quarantine it (``reward_kept``)."""
    return tuple(sorted({r for r in reward_ids if kept_once_bought(rewards.get(r))}))


def doc_id(reward_id: str) -> str:
    return PREFIX + reward_id


def _int(doc: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RewardError(f"{key}: an integer {low}..{high}, got {value!r}")
    return value


def _text(doc: Mapping[str, Any], key: str, most: int) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not 0 < len(value.strip()) <= most:
        raise RewardError(f"{key}: a text of 1..{most} characters, got {value!r}")
    return value.strip()


def _coupon(doc: Mapping[str, Any]) -> str:
    coupon = doc.get("coupon")
    if not isinstance(coupon, Mapping) or not isinstance(coupon.get("kind"), str):
        raise RewardError("coupon: a coupon document (an object with its kind) for a reward of kind coupon")
    if {"coupon_id", "member_id", "pool"} & set(coupon):
        raise RewardError("coupon: head office sets the coupon's id and member; a reward's coupon has no pool")
    try:
        parse_coupon("reward", coupon)  # the coupon must be one the tills can redeem
    except (DocumentError, KeyError, TypeError, ValueError) as exc:
        raise RewardError(f"coupon: {exc}") from exc
    return json.dumps(coupon, sort_keys=True, separators=(",", ":"))


def parse_reward(doc: Mapping[str, Any]) -> Reward:
    """A reward document, e.g. ``{"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300,
    "title": "A free latte", "stock": 500}``; ``RewardError`` says what is wrong."""
    reward_id = doc.get("reward_id")
    if not isinstance(reward_id, str) or not ID_PATTERN.match(reward_id):
        raise RewardError(f"reward_id: 1..48 letters, digits, '_', '.', '-', got {reward_id!r}")
    try:
        kind = RewardKind(str(doc.get("reward")))
    except ValueError as exc:
        raise RewardError(f"reward: one of {', '.join(k.value for k in RewardKind)}") from exc
    points = _int(doc, "points", 1, MAX_POINTS)
    title = _text(doc, "title", MAX_TITLE)
    sku = _text(doc, "sku", 64) if kind is RewardKind.ITEM else None
    coupon = _coupon(doc) if kind is RewardKind.COUPON else None
    stock = None if doc.get("stock") is None else _int(doc, "stock", 0, MAX_STOCK)
    active = doc.get("active", True)
    if not isinstance(active, bool):
        raise RewardError(f"active: true or false, got {active!r}")
    return Reward(reward_id, kind, points, title, sku, coupon, stock, active)


def catalogue(rule_docs: Mapping[str, Mapping[str, Any]]) -> dict[str, Reward]:
    """The rewards among the rule documents a till holds (one that does not parse is left out)."""
    found = {}
    for rule_id, doc in rule_docs.items():
        if not rule_id.startswith(PREFIX) or doc.get("kind") != "reward":
            continue
        try:
            reward = parse_reward(doc)
        except RewardError:
            continue
        if doc_id(reward.reward_id) == rule_id:
            found[reward.reward_id] = reward
    return found
