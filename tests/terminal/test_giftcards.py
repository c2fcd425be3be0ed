"""Gift cards at the till (terminal/giftcards.py, the service's gift card section, terminal/store/giftcards.py),
with a real till store and the SUN messages of a virtual NTAG 424 DNA: sold only as a secure card of no member
within the till's stored-value policy, paying once per tap within the balance and, offline, within the offline
rules; what a refusal leaves (nothing journalled); the pure rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from terminal import giftcards as gc
from terminal import payments as pay
from terminal import vouchers as vc
from terminal.checkout import Checkout
from terminal.credentials import card_uid_hash
from terminal.errors import Code, Rejected
from terminal.model import Card, CardRead, Line, Member, utc_iso
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.session import Action, Session
from terminal.store import Store
from tests.vcard import Ntag424

MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD_KEY = bytes(range(32))
POLICY = {
    "enabled": True,
    "per_transaction": 10_000,
    "per_day": 20_000,
    "per_member_day": 15_000,
    "offline_total": 5000,
}


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(CARD_KEY, uid)


class Plastic:
    """A gift card in the customer's hand: each tap is a fresh SUN message."""

    def __init__(self, uid: bytes) -> None:
        self.tag = Ntag424(uid, MASTER)
        self.uid_hash = hash_uid(uid)
        self.card_id = gc.card_id(self.uid_hash)

    def tap(self) -> CardRead:
        return CardRead("r", "iso14443a", self.uid_hash, sun=self.tag.ndef_url(), at=time.monotonic())


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Service]:
    store = Store.open(tmp_path / "terminal.db")
    store.apply_changes([], [], [], 1, CacheDocs(topup_policy=json.dumps(POLICY)))
    store.set_state(last_sync_ok=utc_iso(time.time()))  # online: head office answered a moment ago
    service = Service(store, "T1", store_id="S1", sun_master_key=MASTER, hash_uid=hash_uid)
    yield service
    store.close()


def refused(till: Service, action: str, *args: object) -> str:
    seq = till.store.max_seq()
    with pytest.raises(Rejected) as caught:
        getattr(till, action)(*args)
    assert till.store.max_seq() == seq  # refused: nothing journalled
    return caught.value.code.value


def test_a_card_is_sold_loaded_paid_given_back_and_blocked_at_the_till(till: Service) -> None:
    card = Plastic(bytes.fromhex("04A1B2C3D4E5F6"))
    sold = till.sell_gift(card.tap(), 5000)
    assert (sold.kind, sold.card_id, sold.amount, sold.balance) == ("gift_activate", card.card_id, 5000, 5000)
    assert till.load_gift(card.tap(), 1000).balance == 6000
    paid = till.pay_gift(card.tap(), 2500, "POS-17")
    assert (paid.amount, paid.balance) == (-2500, 3500)
    assert till.refund_gift(paid.txn_id, 1000).balance == 4500
    assert refused(till, "refund_gift", paid.txn_id, 1501) == "gift_refund_invalid"  # 2,500 paid, 1,000 back
    assert refused(till, "pay_gift", card.tap(), 4501) == "gift_card_insufficient"
    till.block_gift(card.tap(), "reported lost")
    assert refused(till, "pay_gift", card.tap(), 1) == "gift_card_blocked"
    assert refused(till, "load_gift", card.tap(), 1) == "gift_card_blocked"
    kinds = [e.kind for e in till.store.unpushed(100)]
    assert kinds == ["gift_activate", "gift_load", "gift_redeem", "gift_refund", "gift_block"]
    # the sale names the read that sold it: head office takes no earlier read of the card from then on
    assert till.store.unpushed(100)[0].payload["counter"] == 1


def test_a_sold_card_counts_among_the_cards_this_till_hashed_and_its_other_uses_do_not(till: Service) -> None:
    """A gift card the till sold reached head office under the till's card-hash key (``Store.cards_hashed_here``:
    the daemon keeps that key rather than take up another, which would make the card unknown); loading, paying
    and blocking it hash no new card."""
    card = Plastic(bytes.fromhex("04A1B2C3D4E5F7"))
    assert till.store.cards_hashed_here() == 0
    till.sell_gift(card.tap(), 5000)
    till.load_gift(card.tap(), 1000)
    till.pay_gift(card.tap(), 500, "POS-1")
    till.block_gift(card.tap(), "reported lost")
    assert till.store.cards_hashed_here() == 1


def test_only_a_secure_card_of_no_member_within_the_policy_is_sold(till: Service) -> None:
    uid_only = CardRead("r", "iso14443a", hash_uid(bytes.fromhex("04000000000001")))
    assert refused(till, "sell_gift", uid_only, 100) == "gift_card_not_secure"
    member = Plastic(bytes.fromhex("04000000000002"))
    till.store.apply_changes([Member("M-1", "Aiko", "basic", 0)], [Card(member.uid_hash, "M-1")], [], 2)
    assert refused(till, "sell_gift", member.tap(), 100) == "gift_card_member_card"
    card = Plastic(bytes.fromhex("04000000000003"))
    assert refused(till, "sell_gift", card.tap(), 10_001) == "topup_limit_transaction"
    assert refused(till, "sell_gift", card.tap(), 0) == "gift_card_bad_amount"
    till.sell_gift(card.tap(), 10_000)
    assert refused(till, "sell_gift", card.tap(), 100) == "gift_card_active"
    assert refused(till, "load_gift", card.tap(), 5001) == "topup_limit_member_day"  # 15,000 a card a day
    other = Plastic(bytes.fromhex("04000000000004"))
    till.sell_gift(other.tap(), 10_000)
    assert refused(till, "load_gift", other.tap(), 1) == "topup_limit_day"  # 20,000 a till a day, shared
    forged = CardRead("r", "iso14443a", other.uid_hash, sun=card.tag.ndef_url())  # another card's message
    assert refused(till, "pay_gift", forged, 1) == "forged_card"


def test_a_tap_pays_once_and_a_replayed_message_never(till: Service) -> None:
    card = Plastic(bytes.fromhex("04A1B2C3D4E5F7"))
    till.sell_gift(card.tap(), 5000)
    tap = card.tap()
    till.pay_gift(tap, 100)
    assert refused(till, "pay_gift", tap, 100) == "replayed_card"  # the same message again
    older = CardRead("r", "iso14443a", card.uid_hash, sun=card.tag.ndef_url())
    till.pay_gift(card.tap(), 100)  # a later message pays
    assert refused(till, "pay_gift", older, 100) == "replayed_card"  # an earlier one, replayed late


def test_offline_a_card_pays_within_the_offline_rules_and_a_dormant_card_not_at_all(till: Service) -> None:
    till.limits = pay.RiskLimits(per_transaction=3000, per_member_day=4000, terminal_total=6000)
    card = Plastic(bytes.fromhex("04A1B2C3D4E5F8"))
    till.sell_gift(card.tap(), 9000)
    till.store.set_state(offline_since=utc_iso(time.time()))
    assert till.pay_gift(card.tap(), 3000).offline is True
    assert refused(till, "pay_gift", card.tap(), 1001) == "gift_card_limit_offline"  # 4,000 a card a day
    second = Plastic(bytes.fromhex("04A1B2C3D4E5F9"))
    till.store.set_state(offline_since=None)
    till.sell_gift(second.tap(), 5000)
    till.store.set_state(offline_since=utc_iso(time.time()))
    till.pay_gift(second.tap(), 2000)
    assert refused(till, "pay_gift", second.tap(), 1001) == "gift_card_limit_offline"  # 6,000 the till in all
    terms = gc.Terms(dormant_days=30)
    stale = gc.GiftCard(card.card_id, card.uid_hash, gc.State.ACTIVE, 100, None, "2026-01-01")
    state = pay.OfflineState(60, 0, 0, 0)
    assert gc.offline_refusal(stale, 1, gc.OfflineTally(), state, pay.RiskLimits(), terms, "2026-12-01") is (
        Code.GIFT_CARD_DORMANT
    )


def test_the_pure_rules() -> None:
    card = gc.GiftCard("G-0123456789abcdef", "0123456789abcdef" + "0" * 48, gc.State.ACTIVE, 500, "2026-12-31")
    assert gc.card_id(card.uid_hash) == card.card_id
    assert gc.redeem_refusal(card, 500, 0, "2026-12-31") is None
    assert gc.redeem_refusal(card, 500, 1, "2026-12-31") is Code.GIFT_CARD_INSUFFICIENT
    assert gc.redeem_refusal(card, 1, 0, "2027-01-01") is Code.GIFT_CARD_EXPIRED
    assert gc.redeem_refusal(None, 1, 0, "2026-12-01") is Code.GIFT_CARD_UNKNOWN
    assert gc.refund_refusal(None, 0, 1) is Code.GIFT_REFUND_INVALID
    assert gc.refund_refusal(300, 200, 101) is Code.GIFT_REFUND_INVALID and gc.refund_refusal(300, 200, 100) is None
    assert gc.expires_on("2028-02-29", gc.Terms(expiry_days=365)) == "2029-02-28"
    assert gc.expires_on("2026-12-01", gc.Terms()) is None
    assert gc.terms_from_doc({"expiry_days": -1}) == gc.Terms() and gc.terms_from_doc(None) == gc.Terms()
    assert gc.card_from_doc(card.to_doc()) == card
    with pytest.raises(ValueError):
        gc.card_from_doc({**card.to_doc(), "balance": "500"})
    cleared = gc.GiftCard(card.card_id, card.uid_hash, gc.State.CLEARED, 0)
    assert gc.activate_refusal(cleared, secure=True, member_card=False) is None  # a cleared card is sold again


def test_the_cards_part_of_each_return_of_a_sale() -> None:
    """``gc.sale_return``: a sale of 20.00, 15.00 of it paid by a card (P1). Each return's money beyond the member's
    account goes to the cards first, each up to what it paid and no return counted yet, in the order they paid;
    onto the card goes what the returns counted less what refunds gave back onto it already."""
    # (a) the void alone
    assert gc.sale_return([("P1", 1500, 0)], {}, 2000) == gc.SaleReturn(1500, {"P1": 1500}, (("P1", 1500),))
    # (b) the POS gave 5.00 back onto the card, then the void
    assert gc.sale_return([("P1", 1500, 500)], {}, 2000) == gc.SaleReturn(1500, {"P1": 1500}, (("P1", 1000),))
    # (c) 5.00 of lines refunded, then the void of the rest
    first = gc.sale_return([("P1", 1500, 0)], {}, 500)
    assert first == gc.SaleReturn(500, {"P1": 500}, (("P1", 500),))
    assert gc.sale_return([("P1", 1500, 500)], first.counted, 1500) == gc.SaleReturn(
        1000, {"P1": 1500}, (("P1", 1000),)
    )
    # (d) the POS gave the card all back first: the returns count its part and give it nothing more
    first = gc.sale_return([("P1", 1500, 1500)], {}, 500)
    assert first == gc.SaleReturn(500, {"P1": 500}, ())
    assert gc.sale_return([("P1", 1500, 1500)], first.counted, 1500) == gc.SaleReturn(1000, {"P1": 1500}, ())
    # two cards, in the order they paid; a return within the first card's payment gives the second nothing
    two = [("P1", 300, 0), ("P2", 700, 0)]
    assert gc.sale_return(two, {}, 200) == gc.SaleReturn(200, {"P1": 200}, (("P1", 200),))
    after = [("P1", 300, 200), ("P2", 700, 0)]  # the first return gave P1 its 2.00
    assert gc.sale_return(after, {"P1": 200}, 500) == gc.SaleReturn(
        500, {"P1": 300, "P2": 400}, (("P1", 100), ("P2", 400))
    )
    # nothing left for the cards (the account took it all), and a card counted whole already
    assert gc.sale_return(two, {}, 0) == gc.SaleReturn(0, {}, ())
    whole = [("P1", 300, 300), ("P2", 700, 700)]
    assert gc.sale_return(whole, {"P1": 300, "P2": 700}, 400) == gc.SaleReturn(0, {"P1": 300, "P2": 700}, ())


def test_the_pos_pays_back_no_more_than_it_collected_across_a_sales_returns() -> None:
    """``gc.pos_collected``, ``gc.pos_return``: a sale of 50.00 a voucher paid 10.00 of, a card 15.00, the POS 25.00.
    The POS's part of each return is within what it collected less what earlier returns had it pay back; the
    rest, the voucher's part, is kept (given back last, never in money)."""
    assert gc.pos_collected(5000, 1500, 1000) == 2500
    assert gc.pos_collected(3000, 0, 1000 + 9000) == 0  # a voucher worth more than was left: the POS took nothing
    # 20.00 of lines (the card had 15.00 of it first), 20.00 more, then the void of the last 10.00
    first = gc.pos_return(500, 2500, 0)
    assert first == gc.PosReturn(500, 0, 500)
    second = gc.pos_return(2000, 2500, first.paid_back)
    assert second == gc.PosReturn(2000, 0, 2500)
    assert gc.pos_return(1000, 2500, second.paid_back) == gc.PosReturn(0, 1000, 2500)
    # a return across the bound: the POS its last 5.00, the voucher's 10.00 kept
    assert gc.pos_return(1500, 2500, 2000) == gc.PosReturn(500, 1000, 2500)
    # no voucher: the bound is what the returns add up to anyway, nothing kept
    assert gc.pos_return(2500, 2500, 0) == gc.PosReturn(2500, 0, 2500)
    assert gc.pos_return(0, 2500, 2500) == gc.PosReturn(0, 0, 2500)


def test_what_a_voucher_takes_off_a_sale() -> None:
    """``vc.takes_off``: an amount voucher its value; a product voucher one unit of its sku in the basket, at most
    its value; nothing when the basket holds none."""
    lines = [("COFFEE-1", 300), ("CAKE", 500)]
    assert vc.takes_off("amount", 1000, "", lines) == 1000
    assert vc.takes_off("product", 450, "COFFEE-1", lines) == 300
    assert vc.takes_off("product", 250, "COFFEE-1", lines) == 250
    assert vc.takes_off("product", 450, "TEA-1", lines) == 0


# -- the cashier's gift card key (terminal/session.py) ---------------------------------------------------


def test_the_cashier_sells_loads_and_pays_with_gift_cards_by_a_key_and_a_tap(till: Service) -> None:
    """The amount typed, the gift card key, a tap: the card is sold (or, a gift card already, loaded). After
    a sale, the key and a tap pay what the POS still collects, card after card; a void gives each card back
    what it paid once the sale is voided. A refused tap journals nothing and leaves the key armed for another card."""
    session = Session(till, Checkout(till), gifts=till)
    first, second = Plastic(bytes.fromhex("04B1B2C3D4E5F1")), Plastic(bytes.fromhex("04B1B2C3D4E5F2"))
    member = Plastic(bytes.fromhex("04B1B2C3D4E5F3"))
    till.store.apply_changes([Member("M-1", "Aiko", "basic", 0)], [Card(member.uid_hash, "M-1")], [], 2)

    with pytest.raises(Rejected) as caught:
        session.press(Action.GIFT)  # nothing typed: nothing to put on a card
    assert caught.value.code is Code.SESSION_BUSY and not session.wants_gift_tap()
    session.set_total(2000)
    snap = session.press(Action.GIFT)
    assert snap["awaiting"] == "gift_sell" and session.wants_gift_tap()
    with pytest.raises(Rejected) as caught:
        session.gift_tap(member.tap())  # a member's card is never sold as a gift card
    assert caught.value.code is Code.GIFT_CARD_MEMBER_CARD and till.store.max_seq() == 0
    assert session.snapshot()["awaiting"] == "gift_sell"  # still armed: tap the right card
    snap = session.gift_tap(first.tap())
    assert snap["state"] == "done" and snap["awaiting"] is None
    assert [(d["kind"], d["amount"], d["balance"]) for d in snap["gift"]["done"]] == [("gift_activate", 2000, 2000)]
    assert snap["gift"]["card"]["card_id"] == first.card_id and "uid_hash" not in json.dumps(snap["gift"])

    session.set_total(500)  # a new session: the same card loaded
    session.press(Action.GIFT)
    snap = session.gift_tap(first.tap())
    assert [(d["kind"], d["balance"]) for d in snap["gift"]["done"]] == [("gift_load", 2500)]
    session.set_total(4000)
    session.press(Action.GIFT)
    session.gift_tap(second.tap())  # a second card sold with 4,000

    # A sale of 5,000: the first card pays all it holds (2,500), the second the rest.
    session.set_total(5000)
    with pytest.raises(Rejected):
        session.gift_tap(first.tap())  # nothing armed
    session.pay()
    with pytest.raises(Rejected) as caught:
        session.press(Action.GIFT)  # the sale is confirmed first: the card pays what the POS collects
    assert caught.value.code is Code.SESSION_BUSY
    sale = session.confirm()["receipt"]
    assert session.snapshot()["left"] == 5000
    assert session.press(Action.GIFT)["awaiting"] == "gift_pay"
    snap = session.gift_tap(first.tap())
    assert (snap["left"], snap["awaiting"]) == (2500, "gift_pay")  # still armed: 2,500 to go
    with pytest.raises(Rejected) as caught:
        session.gift_tap(first.tap())  # the first card holds nothing more
    assert caught.value.code is Code.GIFT_CARD_INSUFFICIENT
    snap = session.gift_tap(second.tap())
    assert (snap["left"], snap["awaiting"]) == (0, None)
    assert [(d["kind"], d["amount"], d["balance"]) for d in snap["gift"]["done"]] == [
        ("gift_redeem", -2500, 0),
        ("gift_redeem", -2500, 1500),
    ]
    paid = [e for e in till.store.unpushed(100) if e.kind == "gift_redeem"]
    assert [e.payload["sale_ref"] for e in paid] == [sale["txn_id"]] * 2
    with pytest.raises(Rejected):
        session.press(Action.GIFT)  # nothing left to pay

    # The customer changes their mind: the sale is voided, then each card gets back what it paid.
    snap = session.void()
    assert snap["voided"] is not None
    assert [(d["kind"], d["amount"]) for d in snap["gift"]["done"]] == [("gift_refund", 2500), ("gift_refund", 2500)]
    assert till.gift_card(first.tap()).balance == 2500 and till.gift_card(second.tap()).balance == 4000
    kinds = [e.kind for e in till.store.unpushed(100)]
    assert kinds[-3:] == ["void", "gift_refund", "gift_refund"]


def test_a_gift_card_tapped_with_nothing_armed_shows_its_balance(till: Service) -> None:
    session = Session(till, Checkout(till), gifts=till)
    card = Plastic(bytes.fromhex("04B1B2C3D4E5F4"))
    till.sell_gift(card.tap(), 1200)
    snap = session.show_gift_card(till.gift_card(card.tap()))
    assert snap["gift"]["card"] == {"card_id": card.card_id, "balance": 1200, "state": "active", "expires_on": None}
    assert snap["left"] is None and snap["gift"]["done"] == []


@dataclass(frozen=True)
class CardPaid:
    """A sale rung at the panel and paid, up to the card's balance, by a gift card (F1 and a tap)."""

    session: Session
    card: Plastic
    sale: dict[str, Any]
    """The sale's receipt as the panel shows it."""
    snap: dict[str, Any]
    """The panel after the card's tap."""

    @property
    def payment(self) -> dict[str, Any]:
        """The card's payment as the panel lists it."""
        done: dict[str, Any] = self.snap["gift"]["done"][-1]
        return done


def card_paid_sale(till: Service, uid: str, balance: int, total: int) -> CardPaid:
    """A gift card ``uid`` sold with ``balance``, then a sale of ``total`` rung at the panel that it pays."""
    session = Session(till, Checkout(till), gifts=till)
    card = Plastic(bytes.fromhex(uid))
    till.sell_gift(card.tap(), balance)
    session.set_total(total)
    session.pay()
    sale = session.confirm()["receipt"]
    session.press(Action.GIFT)
    return CardPaid(session, card, sale, session.gift_tap(card.tap()))


@pytest.mark.parametrize("elsewhere", ["void", "refund"])
def test_a_void_the_till_refuses_gives_no_gift_card_anything_back(till: Service, elsewhere: str) -> None:
    """The sale the gift cards paid was voided, or refunded whole, by the POS (``POST /v1/sales/{txn}/void``,
    ``tillpoint refund``) before the cashier pressed void: the void is refused, and no card gets its payment
    back on top of what was given back (the POS's void or refund gave the card its payment back, as the panel's
    void would)."""
    paid = card_paid_sale(till, "04B1B2C3D4E5F5", 3000, 2000)
    session, card, sale = paid.session, paid.card, paid.sale
    assert paid.snap["left"] == 0
    if elsewhere == "void":
        till.void(sale["txn_id"])
    else:
        till.refund(sale["txn_id"], {0: 1})
    seq = till.store.max_seq()

    with pytest.raises(Rejected) as caught:
        session.void()

    assert caught.value.code in (Code.ALREADY_VOIDED, Code.NOTHING_TO_REFUND)
    # the POS's void or refund of the whole sale gave the payment back onto the card, once
    assert till.gift_card(card.tap()).balance == 3000
    assert till.store.max_seq() == seq  # nothing journalled
    assert [d["kind"] for d in session.snapshot()["gift"]["done"]] == ["gift_redeem"]


@pytest.mark.parametrize("before", [2000, 500])
def test_a_card_the_pos_already_gave_its_payment_back_gets_nothing_more_from_the_void(
    till: Service, before: int
) -> None:
    """The POS gave the card's payment back onto it (``POST /v1/giftcards/{txn}/refund``), whole or in part, before
    the sale was voided: the void gives the card the rest of its payment and no more, and the POS pays back what
    the card did not pay."""
    sold = card_paid_sale(till, "04B1B2C3D4E5F6", 3000, 2000)
    session, card = sold.session, sold.card
    till.refund_gift(sold.payment["txn_id"], before)

    snap = session.void()

    assert snap["voided"] is not None and snap["error"] is None
    assert till.gift_card(card.tap()).balance == 3000  # once, not twice
    assert snap["voided"]["total"] == 0  # the card paid it all: nothing back at the POS
    refunds = [e for e in till.store.unpushed(100) if e.kind == "gift_refund"]
    assert [e.payload["amount"] for e in refunds] == [before] + ([2000 - before] if before < 2000 else [])


@pytest.mark.parametrize("door", ["panel", "pos"])
def test_a_void_by_any_door_gives_each_gift_card_its_payment_back_once_and_the_pos_only_its_own(
    till: Service, door: str
) -> None:
    """A sale of 50.00 the cashier rang, 30.00 of it paid by a gift card (F1 and a tap), the rest by the POS.
    Voided at the panel, or by the POS (``POST /v1/sales/{txn}/void``, ``tillpoint void``: the service's void): the
    sale is voided once, the card gets its 30.00 back onto it in the void's own transaction, and the void says the
    POS pays back 20.00, not 50.00; the card's payment cannot be given back again, nor the sale voided again."""
    sold = card_paid_sale(till, "04B1B2C3D4E5F7", 3000, 5000)
    session, card, sale, paid = sold.session, sold.card, sold.sale, sold.payment
    assert (paid["amount"], sold.snap["left"]) == (-3000, 2000)

    voided = session.void()["voided"] if door == "panel" else asdict(till.void(sale["txn_id"]))

    assert voided["total"] == -2000  # what the POS collected, and no more, goes back at the POS
    assert [(g["kind"], g["card_id"], g["amount"]) for g in voided["gift_refunds"]] == [
        ("gift_refund", card.card_id, 3000)
    ]
    assert till.gift_card(card.tap()).balance == 3000
    entries = till.store.unpushed(100)
    void = next(e for e in entries if e.kind == "void")
    assert (void.payload["money_back"], void.payload["gift_cards"], void.payload["pos_refund"]) == (5000, 3000, 2000)
    assert [e.kind for e in entries][-2:] == ["void", "gift_refund"]
    assert refused(till, "refund_gift", paid["txn_id"], 1) == "gift_refund_invalid"  # given back once
    assert refused(till, "void", sale["txn_id"]) == "already_voided"
    assert till.gift_card(card.tap()).balance == 3000


def test_a_payment_pushed_before_the_next_pull_still_comes_off_the_balance(till: Service) -> None:
    """A push round hands the sale or payment to head office; till the pull brings the card's new balance
    (``pull_interval`` later) the till still counts it on the balance it last pulled: a card sold here is not empty
    in between, and a payment cannot be spent again."""
    card = Plastic(bytes.fromhex("04B1B2C3D4E5F7"))
    till.sell_gift(card.tap(), 3000)
    till.store.mark_pushed(till.store.max_seq(), utc_iso(time.time()))
    assert till.gift_card(card.tap()).balance == 3000  # sold here and pushed: not 0 until the pull
    held = {**till.gift_card(card.tap()).to_doc(), "balance": 3000}
    till.store.apply_changes([], [], [], 3, CacheDocs(gift_cards=[(card.card_id, json.dumps(held))]), 1)
    assert till.gift_card(card.tap()).balance == 3000  # head office's word, which holds the sale

    till.pay_gift(card.tap(), 2000, "POS-18")
    till.store.mark_pushed(till.store.max_seq(), utc_iso(time.time()))  # a push round; the pull comes later
    assert till.gift_card(card.tap()).balance == 1000
    assert refused(till, "pay_gift", card.tap(), 1500) == "gift_card_insufficient"

    # The pull brings head office's balance, which holds the payment: it comes off once.
    pulled = json.dumps({**held, "balance": 1000})
    till.store.apply_changes([], [], [], 4, CacheDocs(gift_cards=[(card.card_id, pulled)]), till.store.max_seq())
    assert till.gift_card(card.tap()).balance == 1000


def test_a_payment_head_office_confirmed_is_taken_when_the_pull_brought_its_read_counter_first(till: Service) -> None:
    """Confirming a payment, head office makes the tap's read counter the card's, and the till's pull (every
    ``pull_interval``, on its own thread) may bring that counter down before the till records the payment it was
    told to take: the payment is taken all the same, never refused as a replay of itself; the same message again
    is refused."""
    card = Plastic(bytes.fromhex("04B1B2C3D4E5FA"))
    till.sell_gift(card.tap(), 3000)
    till.store.mark_pushed(till.store.max_seq(), utc_iso(time.time()))
    held = {**till.gift_card(card.tap()).to_doc(), "balance": 3000}
    till.store.apply_changes([], [], [], 3, CacheDocs(gift_cards=[(card.card_id, json.dumps(held))]), 1)

    def confirmed_then_pulled(request: dict[str, Any]) -> bool:
        pulled = json.dumps({**held, "counter": request["tap"]["counter"]})  # head office's card after confirming
        till.store.apply_changes([], [], [], 4, CacheDocs(gift_cards=[(card.card_id, pulled)]), till.store.max_seq())
        return True

    till.confirm_gift = confirmed_then_pulled
    tap = card.tap()
    paid = till.pay_gift(tap, 1000, "POS-19")
    assert (paid.amount, paid.balance, paid.offline) == (-1000, 2000, False)
    assert till.gift_card(tap).counter == till.store.unpushed(10)[-1].payload["tap"]["counter"]
    assert refused(till, "pay_gift", tap, 100) == "replayed_card"


def test_the_gift_card_key_sells_the_amount_typed_never_the_pos_basket(till: Service) -> None:
    """F1 before a sale with the POS's basket of goods in (not a total typed with F8) arms nothing: the POS took
    that money for the goods, and a card sold or loaded with it would hold it as well."""
    session = Session(till, Checkout(till), gifts=till)
    session.set_basket([Line("LATTE", 2, 450, "coffee")])
    with pytest.raises(Rejected) as caught:
        session.press(Action.GIFT)
    assert caught.value.code is Code.SESSION_BUSY and not session.wants_gift_tap()
    assert till.store.max_seq() == 0
    # Typed, armed, and then the POS sends its basket before the tap: the tap sells nothing either.
    session.set_total(2000)
    session.press(Action.GIFT)
    session.set_basket([Line("LATTE", 2, 450, "coffee")])
    with pytest.raises(Rejected):
        session.gift_tap(Plastic(bytes.fromhex("04B1B2C3D4E5F8")).tap())
    assert till.store.max_seq() == 0


def test_a_void_and_what_it_gives_back_onto_the_cards_are_one_transaction(
    till: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card's refund refused inside the void (the disk, a bug): the sale is not voided and nothing is journalled,
    so the void can be asked again; never a void whose card kept its payment."""
    session = Session(till, Checkout(till), gifts=till)
    card = Plastic(bytes.fromhex("04B1B2C3D4E5F8"))
    till.sell_gift(card.tap(), 3000)
    session.set_total(2000)
    session.pay()
    sale = session.confirm()["receipt"]
    session.press(Action.GIFT)
    session.gift_tap(card.tap())

    def failing(txn_id: str, amount: int) -> object:
        raise Rejected(Code.STORAGE_FULL)

    monkeypatch.setattr(till, "refund_gift", failing)
    assert refused(till, "void", sale["txn_id"]) == "storage_full"
    assert till.store.sale(sale["txn_id"])["voided_by"] is None  # type: ignore[index]
    monkeypatch.undo()
    assert till.void(sale["txn_id"]).gift_refunds[0].amount == 2000
    assert till.gift_card(card.tap()).balance == 3000


def test_a_sale_or_load_of_a_card_under_the_pos_request_id_is_recorded_once(till: Service) -> None:
    """The POS's ``request_id`` is kept with the card's sale or load and its answer, in the entry's own
    transaction: the answer is given again (``answered``) and a second request under the id loads nothing; an id
    of another kind of request (a load's, a sale's) is ``request_id_used``."""
    card = Plastic(bytes.fromhex("04B1B2C3D4E5F9"))
    sold = till.sell_gift(card.tap(), 3000, request_id="POS-9/1")
    assert till.answered("POS-9/1", "gift_activate") == asdict(sold)
    loaded = till.load_gift(card.tap(), 1000, request_id="POS-9/2")
    assert till.answered("POS-9/2", "gift_load") == asdict(loaded) and loaded.balance == 4000
    assert refused(till, "load_gift", card.tap(), 1000, "POS-9/2") == "request_in_flight"  # the same at once
    assert till.gift_card(card.tap()).balance == 4000  # loaded once
    assert refused(till, "answered", "POS-9/2", "gift_activate") == "request_id_used"
    assert refused(till, "recorded", "POS-9/1") == "request_id_used"  # a sale's retry never gets a card's answer
    assert till.answered("POS-9/3", "gift_load") is None
