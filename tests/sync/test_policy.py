"""The trust rules as pure functions (hq/policy.py): the table of who may produce what, refunds
against their sale, points against the rules, and what a card tap or a payment code proves."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import policy
from hq.policy import Actor, CardKeys, DeviceFacts, ProofLevel, SaleLeft
from sync.protocol import (
    EntryKind,
    PayloadError,
    Reason,
    RefundPayload,
    SalePayload,
    SecureTap,
    VoidPayload,
    parse_payload,
)
from terminal import payments as pay
from terminal.credentials import card_uid_hash
from tests.fixtures import entries
from tests.vcard import Ntag424

MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD_KEY = bytes(range(32))
UID = bytes.fromhex("04A1B2C3D4E5F6")
KEYS = CardKeys(MASTER, lambda uid: card_uid_hash(CARD_KEY, uid))


def test_a_terminal_writes_only_its_kinds_and_signs() -> None:
    assert set(policy.MAY_PRODUCE[Actor.TERMINAL]) == {
        EntryKind.SALE,
        EntryKind.REFUND,
        EntryKind.VOID,
        EntryKind.ENROL,
        EntryKind.CLAIM_KEY,
        EntryKind.TILL_TOPUP,
        EntryKind.TOPUP_VOID,
        EntryKind.CHECKIN,
        EntryKind.VOUCHER_SALE,
        EntryKind.VOUCHER_REDEEM,
        EntryKind.VOUCHER_REFUND,
        EntryKind.GIFT_ACTIVATE,
        EntryKind.GIFT_LOAD,
        EntryKind.GIFT_REDEEM,
        EntryKind.GIFT_REFUND,
        EntryKind.GIFT_BLOCK,
    }
    for own in ("gift_unblock", "gift_clear", "gift_import"):  # head office's own changes of a gift card
        breach = policy.check_actor(Actor.TERMINAL, own, None)
        assert breach is not None and breach.reason is Reason.KIND_NOT_ALLOWED
    checkin = parse_payload("checkin", {"member_id": "M-1", "store_id": "S1"})
    assert checkin.values().points == 0 and checkin.values().stored_value == 0  # a visit creates no value
    assert policy.check_actor(Actor.TERMINAL, "checkin", checkin) is None
    assert policy.check_store(checkin, "S2") is not None  # a door tap names its till's store
    for kind in ("topup", "adjust", "payment", "anything"):
        breach = policy.check_actor(Actor.TERMINAL, kind, None)
        assert breach is not None and breach.reason is Reason.KIND_NOT_ALLOWED
    enrol = parse_payload("enrol", {**entries.enrol("E-1"), "points_delta": 10})
    breach = policy.check_actor(Actor.TERMINAL, "enrol", enrol)
    assert breach is not None and (breach.reason, breach.subject) == (Reason.SIGN_NOT_ALLOWED, "points")
    assert policy.check_actor(Actor.TERMINAL, "sale", parse_payload("sale", entries.sale())) is None
    topup = parse_payload("topup", {"member_id": "M-1", "amount": 100})
    assert policy.check_actor(Actor.ADMIN, "topup", topup) is None
    assert policy.check_actor(Actor.TERMINAL, "topup", topup) is not None
    assert policy.check_actor(Actor.MEMBER_APP, "sale", None) is not None
    # A till's top-up only raises stored value, its void only lowers it (its limits: hq.topups).
    sold = {
        "member_id": "M-1",
        "store_id": "S1",
        "amount": 100,
        "stored_value_delta": 100,
        "local_time": "2026-12-02T10:00:00",
    }
    assert policy.check_actor(Actor.TERMINAL, "till_topup", parse_payload("till_topup", sold)) is None
    undone = {**sold, "original_txn": "t1", "stored_value_delta": -100}
    assert policy.check_actor(Actor.TERMINAL, "topup_void", parse_payload("topup_void", undone)) is None
    with pytest.raises(PayloadError):  # a top-up that lowers a balance, or a void that raises one, is no model
        parse_payload("till_topup", {**sold, "amount": -100, "stored_value_delta": -100})
    with pytest.raises(PayloadError):
        parse_payload("topup_void", {**undone, "stored_value_delta": 100})


def test_refunds_return_at_most_what_their_sale_took() -> None:
    left = SaleLeft("M-1", payable=1000, stored_value=600, points_redeemed=300, applied=True)
    ok = RefundPayload.model_validate(entries.refund("s1", money_back=1000, stored_value=600, restored=300))
    assert policy.check_reversal(left, ok, "M-1") is None
    after = SaleLeft("M-1", 1000, 600, 300, True, money_back=500, stored_value_back=0, points_restored=0)
    more = RefundPayload.model_validate(entries.refund("s1", money_back=600, stored_value=600, restored=301))
    breach = policy.check_reversal(after, more, "M-1")
    assert breach is not None and breach.reason is Reason.REFUND_EXCEEDS_SALE
    assert set(breach.detail) == {"original_txn", "money_back", "points_restored"}
    assert policy.check_reversal(None, ok, "M-1").reason is Reason.REFUND_UNKNOWN_SALE  # type: ignore[union-attr]
    assert policy.check_reversal(left, ok, "M-2").reason is Reason.REFUND_WRONG_MEMBER  # type: ignore[union-attr]
    held = SaleLeft("M-1", 1000, 600, 300, applied=False)
    clawback_only = RefundPayload.model_validate(entries.refund("s1", money_back=100, clawed=5))
    assert policy.check_reversal(held, clawback_only, "M-1") is None  # taking back is always allowed
    assert policy.check_reversal(held, ok, "M-1") is not None  # giving back what a held sale never took is not


def test_a_sale_gift_cards_paid_gives_back_by_all_routes_together_at_most_what_it_took() -> None:
    # a sale of 1000, 400 of it paid by a gift card: the card's refund and a void naming it are one refund
    left = SaleLeft(None, payable=1000, stored_value=0, points_redeemed=0, applied=True)
    void = VoidPayload.model_validate(entries.refund("T1-1", None, money_back=1000, gift_cards=400, void=True))
    assert policy.check_reversal(replace(left, cards_refunded=400), void, None) is None
    cash = VoidPayload.model_validate(entries.refund("T1-1", None, money_back=1000, void=True))
    breach = policy.check_reversal(replace(left, cards_refunded=400), cash, None)
    assert breach is not None and breach.reason is Reason.REFUND_EXCEEDS_SALE
    assert breach.detail["all_routes"] == {
        "returned": 1400,
        "sale_took": 1000,
        "pos_refund": 1000,
        "stored_value": 0,
        "gift_cards": 400,
    }
    voided = SaleLeft(None, 1000, 0, 0, True, money_back=1000, gift_cards_back=400, cards_refunded=150)
    assert policy.check_card_refund(voided, "T1-1", "T1-2", 250) is None  # the rest the void said the card gets
    beyond = policy.check_card_refund(voided, "T1-1", "T1-2", 251)
    assert beyond is not None and beyond.detail["all_routes"]["returned"] == 1001
    refunded = SaleLeft(None, 1000, 0, 0, True, money_back=700)  # 700 through the POS already
    assert policy.check_card_refund(refunded, "T1-1", "T1-2", 300) is None
    assert policy.check_card_refund(refunded, "T1-1", "T1-2", 301) is not None


def test_earned_points_are_bounded_by_the_rules() -> None:
    sale = SalePayload.model_validate(entries.sale(earned=50))
    assert policy.check_points(sale, 50) is None and policy.check_points(sale, 60) is None
    assert policy.check_points(sale, 49).reason is Reason.POINTS_ABOVE_RULES  # type: ignore[union-attr]
    assert policy.check_points(sale, None) is not None  # head office could not price it: held
    assert policy.check_points(SalePayload.model_validate(entries.sale()), None) is None  # nothing earned


def test_spending_names_a_proof() -> None:
    pos = SalePayload.model_validate(entries.sale(redeemed=100, proof="pos"))
    assert policy.check_proof_named(pos, spend_needs_proof=True).reason is Reason.PROOF_MISSING  # type: ignore[union-attr]
    assert policy.check_proof_named(pos, spend_needs_proof=False) is None
    anonymous = SalePayload.model_validate(entries.sale(None, redeemed=100, proof="pos"))
    assert policy.check_proof_named(anonymous, spend_needs_proof=False) is not None
    assert policy.check_proof_named(SalePayload.model_validate(entries.sale()), True) is None


def _sun_tap(tag: Ntag424, uid_hash: str | None = None) -> SecureTap:
    url = tag.ndef_url()
    return SecureTap(uid_hash=uid_hash or card_uid_hash(CARD_KEY, UID), trust="sun", counter=tag.counter, sun=url)


def test_a_sun_tap_is_verified_when_head_office_holds_the_keys() -> None:
    tap = _sun_tap(Ntag424(UID, MASTER))
    assert policy.check_card_tap(tap, "M-1", "M-1", KEYS) == (ProofLevel.VERIFIED_CARD, None)
    assert policy.check_card_tap(tap, "M-1", "M-1", CardKeys()) == (ProofLevel.ATTESTED_CARD, None)
    level, breach = policy.check_card_tap(tap, "M-2", "M-1", KEYS)
    assert breach is not None and breach.reason is Reason.PROOF_INVALID  # another member's card
    other = _sun_tap(Ntag424(bytes.fromhex("04000000000001"), MASTER), tap.uid_hash)  # a genuine message, wrong card
    assert policy.check_card_tap(other, "M-1", "M-1", KEYS)[1] is not None
    wrong_counter = tap.model_copy(update={"counter": (tap.counter or 0) + 5})
    assert policy.check_card_tap(wrong_counter, "M-1", "M-1", KEYS)[1] is not None
    no_message = tap.model_copy(update={"sun": None})
    assert policy.check_card_tap(no_message, "M-1", "M-1", KEYS)[1] is not None


@pytest.mark.parametrize(
    "spent,allowed", [((0, 0), True), ((49_000, 0), True), ((49_500, 0), False), ((0, 50_000), False)]
)
def test_attested_proofs_are_bounded_per_day(spent: tuple[int, int], allowed: bool) -> None:
    sale = SalePayload.model_validate(
        entries.sale(
            total=2000, redeemed=1, stored_value=1000, proof="card", tap={"uid_hash": "ab" * 32, "trust": "mac"}
        )
    )
    breach = policy.check_attested(ProofLevel.ATTESTED_CARD, spent, sale, (50_000, 50_000))
    assert (breach is None) is allowed
    assert policy.check_attested(ProofLevel.VERIFIED_CARD, (10**9, 10**9), sale, (0, 0)) is None


def test_a_payment_code_is_checked_against_the_sale_and_the_revocation() -> None:
    issuer, phone = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = int(time.time())
    cert = pay.issue_cert(issuer, "K-1", b"\x01" * 8, "M-1", pay.public_bytes(phone), now - 60, 3600, 1000)
    code = pay.make_code(phone, cert.cert_id, now, 3)
    created = datetime.fromtimestamp(now, UTC)
    sale = SalePayload.model_validate(
        entries.sale(stored_value=500, proof="payment_code", payment_code=code, code_id=pay.parse_code(code).code_id)
    )
    device = DeviceFacts(cert.to_doc(), None)
    assert policy.check_payment_code(sale, created, device) is None
    later = datetime.fromtimestamp(now + 3600, UTC)
    assert policy.check_payment_code(sale, later, device).reason is Reason.PROOF_INVALID  # type: ignore[union-attr]
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5))
    revoked = policy.check_payment_code(sale, created, DeviceFacts(cert.to_doc(), before))
    assert revoked is not None and revoked.reason is Reason.DEVICE_REVOKED
    after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 5))
    assert policy.check_payment_code(sale, created, DeviceFacts(cert.to_doc(), after)) is None
    bens = sale.model_copy(update={"member_id": "M-2"})
    assert policy.check_payment_code(bens, created, device).reason is Reason.PROOF_INVALID  # type: ignore[union-attr]
    assert policy.check_payment_code(sale, created, DeviceFacts(None, None)) is not None


def test_a_refund_gives_back_only_the_coupons_the_rules_give_back() -> None:
    claims = RefundPayload.model_validate(entries.refund("s1", coupons_restored=("c1", "c2")))
    assert policy.check_coupons_back(claims, False, ("c1", "c2", "c3")) is None
    breach = policy.check_coupons_back(claims, False, ("c1",))
    assert breach is not None and breach.reason is Reason.REFUND_EXCEEDS_SALE
    assert breach.detail["coupons_restored"] == {"returned": ["c2"], "rules_give": ["c1"]}
    assert policy.check_coupons_back(claims, False, ()) is not None  # a refund that returns nothing
    assert policy.check_coupons_back(claims, True, ()) is None  # a void gives back every coupon of its sale
    assert policy.check_coupons_back(claims, False, None) is None  # head office could not price it


def test_a_refund_returns_only_units_its_sale_has() -> None:
    def back(*returned: tuple[int, int]) -> RefundPayload:
        return RefundPayload.model_validate(entries.refund("s1", returned=list(returned)))

    bought = [2, 1]
    assert policy.check_units(bought, [back((0, 1))], back((0, 1), (1, 1))) is None
    over = policy.check_units(bought, [back((0, 1))], back((0, 2)))
    assert over is not None and over.reason is Reason.REFUND_EXCEEDS_SALE
    assert over.detail["units"] == {"0": {"returned": 3, "sale_took": 2}}
    missing = policy.check_units(bought, [], back((5, 1)))
    assert missing is not None and missing.detail["units"] == {"5": {"returned": 1, "sale_took": 0}}
    sale = SalePayload.model_validate(entries.sale(total=200, lines=[{"sku": "A", "quantity": 2, "unit_price": 100}]))
    assert not policy.returns_everything(sale, [back((0, 1))])
    assert policy.returns_everything(sale, [back((0, 1)), back((0, 1))])
