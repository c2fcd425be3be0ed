"""Who may do what: the trust rules head office checks every entry against. Pure: no database, no I/O.

Only head office creates value. A till reports facts (sales, refunds and voids of sales, enrolments)
and payments authorised by a proof; an administrator adds stored value; nobody else writes entries
that move balances. Per actor, ``MAY_PRODUCE`` names the entry kinds and the signs of each value::

    actor        kind        points     stored value
    terminal     sale        any (1)    <= 0 (2)
                 refund      any (3)    >= 0 (3)
                 void        any (3)    >= 0 (3)
                 enrol       0          0
                 claim_key   0          0
                 till_topup  0          > 0 (4)
                 topup_void  0          < 0 (4)
                 checkin     0          0      (a door tap: a visit; head office grants any reward)
                 voucher_*   0          0      (6)
    admin        topup       0          > 0
                 adjust      any        any     (5)
    member app   (none: it registers devices and reads its balances)
    head office  (none as entries: claims, merges and settlements are its own acts)

    (1) earned points at most what head office's rules give the reported basket (``points_above_rules``)
    (2) spending points or stored value needs a proof (``proof_missing`` / ``proof_invalid``)
    (3) a refund names a sale and returns at most what that sale took, less earlier refunds
    (4) only a till head office enabled, within its limits; a void undoes its own top-up of that day (hq.topups)
    (5) with a reason, approved by a second person, never taking a balance below zero (``hq.adjustments``)
    (6) a sale of a voucher of the till's own stock; a redemption or refund of a voucher head office signed
        and holds sold, used once (``hq.vouchers``)

An entry that breaks a rule is stored and quarantined: it changes no balance and raises a
reconciliation item with a stable ``Reason``; an administrator releases or rejects it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from sync.protocol import (
    EntryKind,
    Payload,
    Proof,
    Reason,
    RefundPayload,
    SalePayload,
    SecureTap,
    parse_time,
)
from terminal import credentials
from terminal import payments as pay
from terminal.errors import Code, Rejected


class Actor(StrEnum):
    TERMINAL = "terminal"
    ADMIN = "admin"
    MEMBER_APP = "member_app"
    HEAD_OFFICE = "head_office"


class Sign(Enum):
    ZERO = "0"
    POSITIVE = "> 0"
    NOT_NEGATIVE = ">= 0"
    NOT_POSITIVE = "<= 0"
    ANY = "any"

    def allows(self, value: int) -> bool:
        return _ALLOWS[self](value)


_ALLOWS: dict[Sign, Callable[[int], bool]] = {
    Sign.ZERO: lambda v: v == 0,
    Sign.POSITIVE: lambda v: v > 0,
    Sign.NOT_NEGATIVE: lambda v: v >= 0,
    Sign.NOT_POSITIVE: lambda v: v <= 0,
    Sign.ANY: lambda v: True,
}


@dataclass(frozen=True, slots=True)
class Allowed:
    points: Sign
    stored_value: Sign


MAY_PRODUCE: dict[Actor, dict[EntryKind, Allowed]] = {
    Actor.TERMINAL: {
        EntryKind.SALE: Allowed(Sign.ANY, Sign.NOT_POSITIVE),
        EntryKind.REFUND: Allowed(Sign.ANY, Sign.NOT_NEGATIVE),
        EntryKind.VOID: Allowed(Sign.ANY, Sign.NOT_NEGATIVE),
        EntryKind.ENROL: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.CLAIM_KEY: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.TILL_TOPUP: Allowed(Sign.ZERO, Sign.POSITIVE),
        EntryKind.TOPUP_VOID: Allowed(Sign.ZERO, Sign.NOT_POSITIVE),
        EntryKind.CHECKIN: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.VOUCHER_SALE: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.VOUCHER_REDEEM: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.VOUCHER_REFUND: Allowed(Sign.ZERO, Sign.ZERO),
        # Gift card value is the card's, never a member's (hq/giftcards.py bounds it).
        EntryKind.GIFT_ACTIVATE: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_LOAD: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_REDEEM: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_REFUND: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_BLOCK: Allowed(Sign.ZERO, Sign.ZERO),
    },
    Actor.ADMIN: {
        EntryKind.TOPUP: Allowed(Sign.ZERO, Sign.POSITIVE),
        EntryKind.ADJUST: Allowed(Sign.ANY, Sign.ANY),
        EntryKind.GIFT_UNBLOCK: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_CLEAR: Allowed(Sign.ZERO, Sign.ZERO),
        EntryKind.GIFT_IMPORT: Allowed(Sign.ZERO, Sign.ZERO),
    },
    Actor.MEMBER_APP: {},
    Actor.HEAD_OFFICE: {},
}


@dataclass(frozen=True, slots=True)
class Breach:
    """A rule an entry breaks: the reason, what it is about, and the figures."""

    reason: Reason
    subject: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def check_actor(actor: Actor, kind: str, payload: Payload | None) -> Breach | None:
    """Whether ``actor`` may produce an entry of ``kind`` with these values."""
    known = EntryKind._value2member_map_.get(kind)
    allowed = MAY_PRODUCE[actor].get(known) if isinstance(known, EntryKind) else None
    if allowed is None:
        return Breach(Reason.KIND_NOT_ALLOWED, kind, {"actor": actor.value, "kind": kind})
    if payload is None:
        return None
    values = payload.values()
    for name, sign, value in (
        ("points", allowed.points, values.points),
        ("stored_value", allowed.stored_value, values.stored_value),
    ):
        if not sign.allows(value):
            return Breach(
                Reason.SIGN_NOT_ALLOWED,
                name,
                {"actor": actor.value, "kind": kind, "value": name, "amount": value, "allowed": sign.value},
            )
    return None


def check_store(payload: Payload | None, store_id: str) -> Breach | None:
    """An entry must name the store its terminal belongs to."""
    named = getattr(payload, "store_id", None)
    if named is None or named == store_id:
        return None
    return Breach(Reason.WRONG_STORE, "", {"entry_store": named, "terminal_store": store_id})


# -- refunds and voids ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleLeft:
    """What a sale took, what earlier refunds gave back, and whether its balances were applied."""

    member_id: str | None
    payable: int
    stored_value: int
    points_redeemed: int
    applied: bool
    money_back: int = 0
    stored_value_back: int = 0
    points_restored: int = 0
    points_earned: int = 0
    points_clawed: int = 0
    terminal_id: str | None = None
    """The till that made the sale (None: not known)."""
    stored_value_written_off: int = 0
    """The part of the stored value it took beyond the member's balance (flagged ``stored_value_overspent``) that
    an approved adjustment wrote off since: never the member's money, so no refund gives it back."""
    gift_cards_back: int = 0
    """What its refunds and voids said went back onto the gift cards that paid it (their ``gift_cards``, a part of
    ``money_back``: a void's own card refunds, and those the POS made before it)."""
    cards_refunded: int = 0
    """What the gift cards' refunds gave back of the payments naming it (``sale_ref``) at its till, whichever entry
    carried them (``gift_refund``): the same money as ``gift_cards_back`` when a void says so, counted once."""


def check_void_till(left: SaleLeft, refund: RefundPayload, is_void: bool, terminal_id: str) -> Breach | None:
    """A void undoes a sale of the till that voids it (a till voids only what it sold; a refund, at any till)."""
    if not is_void or left.terminal_id is None or left.terminal_id == terminal_id:
        return None
    return Breach(
        Reason.VOID_OTHER_TILL,
        refund.original_txn,
        {"original_txn": refund.original_txn, "sale_till": left.terminal_id, "void_till": terminal_id},
    )


def check_clawback(left: SaleLeft, refund: RefundPayload, is_void: bool, rules_take: int | None) -> Breach | None:
    """A refund takes back at least the points the rules take back for what is returned (``rules_take``,
    head office's own pricing; None: it could not price it); a void takes back all the sale still keeps."""
    keeps = left.points_earned - left.points_clawed
    needed = keeps if is_void else rules_take
    if needed is None or refund.points_clawed >= min(needed, keeps):
        return None
    return Breach(
        Reason.REFUND_KEEPS_POINTS,
        refund.original_txn,
        {"original_txn": refund.original_txn, "clawed": refund.points_clawed, "rules_take": min(needed, keeps)},
    )


def _units_back(refunds: Sequence[RefundPayload]) -> dict[int, int]:
    back: dict[int, int] = {}
    for refund in refunds:
        for x in refund.returned:
            back[x.line] = back.get(x.line, 0) + x.quantity
    return back


def check_units(quantities: Sequence[int], earlier: Sequence[RefundPayload], refund: RefundPayload) -> Breach | None:
    """A refund returns only lines its sale has (``quantities``: units bought per line), and with the refunds
    before it no more units of a line than were bought."""
    before, now = _units_back(earlier), _units_back([refund])
    beyond = {
        str(line): {
            "returned": before.get(line, 0) + units,
            "sale_took": quantities[line] if line < len(quantities) else 0,
        }
        for line, units in sorted(now.items())
        if line >= len(quantities) or before.get(line, 0) + units > quantities[line]
    }
    if not beyond:
        return None
    return Breach(
        Reason.REFUND_EXCEEDS_SALE, refund.original_txn, {"original_txn": refund.original_txn, "units": beyond}
    )


def returns_everything(sale: SalePayload, refunds: Sequence[RefundPayload]) -> bool:
    """The refunds together return every unit of every line of the sale."""
    back = _units_back(refunds)
    return all(back.get(i, 0) >= line.quantity for i, line in enumerate(sale.lines))


def check_coupons_back(refund: RefundPayload, is_void: bool, rules_give: Sequence[str] | None) -> Breach | None:
    """A refund gives back only the coupon uses the rules give back for what it returns (``rules_give``, head
    office's own pricing of the basket that stays; None: it could not price it): a coupon the basket that
    stays still qualifies for stays used. A void gives back every coupon of its sale."""
    if is_void or rules_give is None:
        return None
    beyond = sorted(set(refund.coupons_restored) - set(rules_give))
    if not beyond:
        return None
    return Breach(
        Reason.REFUND_EXCEEDS_SALE,
        refund.original_txn,
        {"original_txn": refund.original_txn, "coupons_restored": {"returned": beyond, "rules_give": list(rules_give)}},
    )


def unpriced_refund(left: SaleLeft, refund: RefundPayload) -> Breach:
    """A partial refund head office could not price: what its rules take back is unknown, so the till's
    figure is not taken; a person decides (``refund_keeps_points``, ``rules_take`` None)."""
    keeps = left.points_earned - left.points_clawed
    return Breach(
        Reason.REFUND_KEEPS_POINTS,
        refund.original_txn,
        {"original_txn": refund.original_txn, "clawed": refund.points_clawed, "rules_take": None, "keeps": keeps},
    )


def check_reversal(left: SaleLeft | None, refund: RefundPayload, member_id: str | None) -> Breach | None:
    """A refund or void returns at most what its sale took, less earlier refunds, and takes back at most the points
    it earned, to that sale's member
    (``member_id``: the refund's member as head office knows it, after merges and erasures); and with every other
    route that gave the sale back (the gift cards' refunds of payments naming it: ``all_routes``), no more than
    the sale took."""
    if left is None:
        return Breach(Reason.REFUND_UNKNOWN_SALE, refund.original_txn, {"original_txn": refund.original_txn})
    if member_id != left.member_id:
        return Breach(
            Reason.REFUND_WRONG_MEMBER,
            refund.original_txn,
            {"original_txn": refund.original_txn, "sale_member": left.member_id, "refund_member": member_id},
        )
    over = {
        "money_back": (left.money_back + refund.money_back, left.payable, 0),
        "stored_value": (
            left.stored_value_back + refund.stored_value_delta,
            left.stored_value,
            left.stored_value_written_off,
        ),
        "points_restored": (left.points_restored + refund.points_restored, left.points_redeemed, 0),
    }
    if left.applied:  # no more points taken back than an applied sale earned: a void of a sale that earned nothing
        # taking 5,000 would be the member's debt (``points_clawback_short``), the member having spent nothing
        over["points_clawed"] = (left.points_clawed + refund.points_clawed, left.points_earned, 0)
    beyond: dict[str, dict[str, int]] = {
        k: {"returned": a, "sale_took": b} | ({"written_off": w} if w else {})
        for k, (a, b, w) in over.items()
        if a > b - w
    }
    if "money_back" not in beyond and (routes := _routes_beyond(after_refund(left, refund))):
        beyond["all_routes"] = routes
    if not left.applied and (refund.stored_value_delta or refund.points_restored):
        beyond["sale_not_applied"] = {"returned": refund.points_restored + refund.stored_value_delta, "sale_took": 0}
    if beyond:
        return Breach(Reason.REFUND_EXCEEDS_SALE, refund.original_txn, {"original_txn": refund.original_txn, **beyond})
    return None


def after_refund(left: SaleLeft, refund: RefundPayload) -> SaleLeft:
    """The sale as it is left once ``refund`` (or a void) of it is taken."""
    return replace(
        left,
        money_back=left.money_back + refund.money_back,
        stored_value_back=left.stored_value_back + refund.stored_value_delta,
        points_restored=left.points_restored + refund.points_restored,
        points_clawed=left.points_clawed + refund.points_clawed,
        gift_cards_back=left.gift_cards_back + refund.gift_cards,
    )


def _routes_beyond(left: SaleLeft) -> dict[str, int] | None:
    """What every route gave back of a sale, if together more than it took (its payable): the POS's money
    (``pos_refund``), the member's account (``stored_value``) and the gift cards (each card refund counted once:
    what the refunds and voids said went onto the cards, or what the cards' refunds gave back, the larger)."""
    cards = max(left.gift_cards_back, left.cards_refunded)
    pos = left.money_back - left.gift_cards_back - left.stored_value_back
    returned = pos + left.stored_value_back + cards
    if returned <= left.payable:
        return None
    return {
        "returned": returned,
        "sale_took": left.payable,
        "pos_refund": pos,
        "stored_value": left.stored_value_back,
        "gift_cards": cards,
    }


def check_card_refund(left: SaleLeft, sale_txn: str, payment_txn: str, amount: int) -> Breach | None:
    """A gift card's refund of a payment that names a sale (``sale_ref``) gives back, with everything that sale's
    refunds and voids and the other card refunds gave back, at most what the sale took: a sale refunded through
    the POS, card part included, does not give the card its payment back as well."""
    routes = _routes_beyond(replace(left, cards_refunded=left.cards_refunded + amount))
    if routes is None:
        return None
    detail = {"original_txn": sale_txn, "payment_txn": payment_txn, "amount": amount, "all_routes": routes}
    return Breach(Reason.REFUND_EXCEEDS_SALE, sale_txn, detail)


# -- points against the rules --------------------------------------------------------------------------


def check_points(sale: SalePayload, rules_give: int | None) -> Breach | None:
    """Earned points above what head office's rules give the reported basket (None: it could not price it)."""
    if sale.points_earned <= 0 or (rules_give is not None and sale.points_earned <= rules_give):
        return None
    return Breach(Reason.POINTS_ABOVE_RULES, "", {"terminal": sale.points_earned, "head_office": rules_give})


# -- proofs of spending ----------------------------------------------------------------------------------


class ProofLevel(StrEnum):
    """How far head office could check what authorised a spend (the journal's ``proof`` column)."""

    VERIFIED_CARD = "card"
    ATTESTED_CARD = "card_attested"  # a Lite-S MAC, or a SUN message without head office holding the keys
    PAYMENT_CODE = "payment_code"
    POS = "pos"


def check_proof_named(
    sale: SalePayload, spend_needs_proof: bool, personal_coupons: AbstractSet[str] = frozenset()
) -> Breach | None:
    """A sale that spends names what authorised it (or the chain trusts its POS). ``personal_coupons``:
    the coupons it used that are a member's own, which spend that member's value as points do."""
    if not sale.spends and not personal_coupons:
        return None
    if sale.member_id is None:
        return Breach(Reason.PROOF_MISSING, "", {"problem": "spending without a member"})
    if sale.proof is None and not sale.spends and sale.tap is not None:
        return None  # a till of an earlier release names no proof for a coupon: its card tap is checked as one
    if sale.proof is None or (sale.proof is Proof.POS and (spend_needs_proof or sale.stored_value)):
        # The POS's word can stand for points where the chain trusts it; never for the member's money.
        detail: dict[str, Any] = {
            "points_redeemed": sale.points_redeemed,
            "stored_value": sale.stored_value,
            "proof": sale.proof,
        }
        if personal_coupons:
            detail["personal_coupons"] = sorted(personal_coupons)
        return Breach(Reason.PROOF_MISSING, "", detail)
    return None


def _epoch(text: str) -> int | None:
    at = parse_time(text)
    return int(at.timestamp()) if at is not None else None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What head office holds about the device a payment code names."""

    cert_doc: dict[str, Any] | None
    revoked_at: str | None


def check_payment_code(sale: SalePayload, made: datetime, device: DeviceFacts) -> Breach | None:
    """The code in the sale is the member's device's, signed, current when the sale was made (as head
    office holds it: ``made``), and not from a device revoked before it."""
    assert sale.payment_code is not None
    at = int(made.timestamp())
    try:
        code = pay.parse_code(sale.payment_code)
        if device.cert_doc is None:
            raise Rejected(Code.DEVICE_CERT_UNKNOWN)
        cert = pay.cert_from_doc(device.cert_doc)
        if cert.member_id != sale.member_id or code.code_id != sale.code_id:
            raise Rejected(Code.PAYMENT_CODE_FORGED, "the code is another member's or another code's")
        pay.verify_code(code, cert, at)
        if not cert.issued_at <= at < cert.expires_at:
            raise Rejected(Code.DEVICE_CERT_EXPIRED)
    except Rejected as exc:
        return Breach(Reason.PROOF_INVALID, "payment_code", {"code": exc.code.value, "problem": exc.message})
    revoked = _epoch(device.revoked_at) if device.revoked_at else None
    if revoked is not None and revoked <= at:
        return Breach(
            Reason.DEVICE_REVOKED, cert.cert_id.hex(), {"cert_id": cert.cert_id.hex(), "revoked_at": device.revoked_at}
        )
    return None


@dataclass(frozen=True, slots=True)
class CardKeys:
    """The chain's card keys head office holds (either may be missing: SUN taps are then only attested)."""

    sun_master_key: bytes | None = None
    hash_uid: Callable[[bytes], str] | None = None
    key_check: str | None = None
    """The card-hash key's check (``terminal.keys.key_check``): what a till compares its own key with."""


def check_card_tap(
    tap: SecureTap, card_member: str | None, member_id: str | None, keys: CardKeys, card_secure: str | None = None
) -> tuple[ProofLevel, Breach | None]:
    """A secure tap: its card is the member's, it proves itself the way head office has seen it do
    (``card_secure``: "sun" once a SUN message of it verified), and its SUN message is genuine when head
    office can tell."""
    if card_member is None or card_member != member_id:
        return ProofLevel.ATTESTED_CARD, Breach(
            Reason.PROOF_INVALID, "card", {"uid_hash": tap.uid_hash, "problem": "the card is not this member's"}
        )
    if card_secure == "sun" and tap.trust != "sun":
        return ProofLevel.ATTESTED_CARD, Breach(
            Reason.PROOF_INVALID, "card", {"uid_hash": tap.uid_hash, "problem": "a SUN card claimed as a MAC read"}
        )
    return verify_tap(tap, keys)


def attested_only(tap: SecureTap, keys: CardKeys) -> bool:
    """Whether the tap is the till's word alone: a Lite-S MAC read, or a SUN tap when head office holds no keys."""
    return tap.trust != "sun" or keys.sun_master_key is None or keys.hash_uid is None


def verify_tap(tap: SecureTap, keys: CardKeys) -> tuple[ProofLevel, Breach | None]:
    """A secure tap's own proof: its SUN message genuine and of this card and read, when head office holds the
    keys (a Lite-S MAC read, or a SUN tap without the keys, is attested by the till alone)."""
    master, hash_uid = keys.sun_master_key, keys.hash_uid
    if attested_only(tap, keys) or master is None or hash_uid is None:
        return ProofLevel.ATTESTED_CARD, None
    assert tap.counter is not None
    try:
        message = credentials.sun_from_url(tap.sun or "")
        if message is None:
            raise credentials.ForgedCard("the URL carries no SUN message")
        found = credentials.verify_sun(message.picc_enc, message.cmac, master, message.mac_input)
    except Rejected as exc:
        return ProofLevel.VERIFIED_CARD, Breach(
            Reason.PROOF_INVALID, "card", {"uid_hash": tap.uid_hash, "problem": exc.message}
        )
    if not hmac.compare_digest(hash_uid(found.uid), tap.uid_hash) or found.counter != tap.counter:
        return ProofLevel.VERIFIED_CARD, Breach(
            Reason.PROOF_INVALID,
            "card",
            {"uid_hash": tap.uid_hash, "problem": "the SUN message is another card's, or another read's"},
        )
    return ProofLevel.VERIFIED_CARD, None


def check_attested(
    level: ProofLevel, spent_today: tuple[int, int], sale: SalePayload, caps: tuple[int, int]
) -> Breach | None:
    """Spending on a proof head office cannot check again is bounded per terminal and day: (stored value, points)."""
    if level is not ProofLevel.ATTESTED_CARD:
        return None
    value, points = spent_today[0] + sale.stored_value, spent_today[1] + sale.points_redeemed
    if value <= caps[0] and points <= caps[1]:
        return None
    return Breach(
        Reason.PROOF_UNVERIFIED,
        "",
        {"stored_value_today": value, "points_today": points, "cap_stored_value": caps[0], "cap_points": caps[1]},
    )
