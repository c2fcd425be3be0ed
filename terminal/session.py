"""The cashier's session: one sale at the till, from idle to done, shared by the API, the panel and
the hotkeys (they all call the same methods, so a key press, a click and a POS request agree).

::

    idle ──identify (tap, member QR, number typed)──> member ──coupon──> coupons
     │  ^                                               │                  │
     │  └──────────── cancel (Esc) ─────────────────────┴──────────────────┤
     └──pay (anonymous sale, basket needed)─────> payment <──pay───────────┘
                                                   │  confirm (Enter, or pay again)
                                                   v
                                                  done ──next tap / basket / identify──> a new session

The basket comes from the POS (``set_basket``) or is typed in by the cashier (``set_total``).
``awaiting`` says what the cashier armed with a key: a member (tap, scan or type), a coupon (scan or
type) or the total. Every change bumps ``seq`` and goes to ``on_change`` as a JSON-ready snapshot
(the daemon emits it as a ``session`` event: the panel draws exactly that).

A refused action raises ``Rejected`` and leaves the session as it was, except that the snapshot
carries the refusal as ``error`` so the panel can show it in plain words with its code.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from sync.protocol import EntryKind
from terminal import b64url, qrcodes
from terminal import giftcards as gc
from terminal import vouchers as vc
from terminal.errors import MESSAGES, Code, Rejected
from terminal.model import (
    Basket,
    CardRead,
    GiftReceipt,
    Line,
    Member,
    MemberCodeRead,
    QrRead,
    Quote,
    Receipt,
    ReceiptRef,
    ReceiptSold,
    SaleOrder,
    VoucherReceipt,
)
from terminal.ports import Emit, Event, GiftDesk, Sales, Till
from terminal.pricing import REDEEM_MAX
from terminal.scan import SCANNER_ENDS, Kind, Refusal, Scan, classify

if TYPE_CHECKING:
    from terminal.config import Config, HotkeysSection
    from terminal.hotkeys import HotkeyListener

T = TypeVar("T")

_GIFT_PAYMENTS = (EntryKind.GIFT_REDEEM.value, EntryKind.GIFT_REFUND.value)  # what moves a sale's gift card share
PANEL_FOCUS_TTL = 15.0  # seconds a panel's "I have the keyboard" lasts unless renewed
TOTAL_SKU = "TOTAL"  # the one line of a total typed in by the cashier
# What a scanned code was, in words (by ``scan_kind``): the kinds of our codes, then the refused reads.
SCAN_KINDS = {
    "member": "member code",
    "coupon": "coupon code",
    "payment": "payment code",
    "claim": "receipt claim code",
    "voucher": "prepaid voucher",
    "unknown": "plain text, not one of our codes",
    "payment_card_refused": "bank card number",
    "foreign_payment_code": "another wallet's payment code",
    "malformed_code": "damaged or incomplete code",
    "unsupported_code_version": "code of a newer version than this till reads",
}


class State(StrEnum):
    IDLE = "idle"
    MEMBER = "member"
    COUPONS = "coupons"
    PAYMENT = "payment"
    DONE = "done"


class Awaiting(StrEnum):
    MEMBER = "member"
    COUPON = "coupon"
    TOTAL = "total"
    ENROL = "enrol"  # the next tap of an unknown card makes a new member
    GIFT_SELL = "gift_sell"  # the next tap puts the typed amount on a gift card (sold, or loaded)
    GIFT_PAY = "gift_pay"  # the next tap pays, from a gift card, what the POS still collects for the sale done


class Action(StrEnum):
    """What a key (global hotkey or panel shortcut) or ``POST /v1/session/action`` asks for."""

    IDENTIFY = "identify"
    COUPON = "coupon"
    PAY = "pay"
    CANCEL = "cancel"
    CONFIRM = "confirm"
    TOTAL = "total"
    POINTS = "points"
    NEW = "new"
    ENROL = "enrol"
    TOPUP = "topup"
    GIFT = "gift"


def scan_kind(found: Scan | Refusal) -> str:
    """A read's kind as the event stream names it: ours by kind, a refused one by its code."""
    return found.code.value if isinstance(found, Refusal) else found.kind.value


def claim_token(receipt: Receipt) -> str:
    """This sale's claim token: the transaction id (a UUIDv7) as base64url. Provisional and unsigned:
    head office accepts a claim once per transaction; a signed, expiring token replaces it."""
    raw = uuid.UUID(receipt.txn_id).bytes
    return b64url.encode(raw)


def code_body(value: str) -> str:
    """The body of a member or coupon code that carries an id: the id's UTF-8 as base64url."""
    return b64url.encode(value.encode())


def id_from_body(body: str) -> str:
    """The id a code body carries; ``Rejected(malformed_code)`` when it is not base64url of UTF-8."""
    try:
        return b64url.decode(body).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(Code.MALFORMED_CODE) from exc


def refusal_dict(code: str, message: str | None = None) -> dict[str, str]:
    try:
        text = message or MESSAGES.get(Code(code), code)
    except ValueError:
        text = message or code
    return {"code": code, "message": text}


@dataclass
class _Sale:
    """The mutable part of one session (guarded by the session's lock)."""

    state: State = State.IDLE
    awaiting: Awaiting | None = None
    member: Member | None = None
    via: str = ""
    basket: Basket | None = None
    basket_source: str = ""
    coupons: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)
    """Rewards of the catalogue the member buys with points in this sale (docs/rewards.md)."""
    redeem: int = 0
    quote: Quote | None = None
    receipt: Receipt | None = None
    voided: Receipt | None = None
    error: dict[str, str] | None = None
    notice: str = ""
    proof: str | None = None
    """A one-time code the member's phone showed to identify them (a fresh member code): their proof
    for spending points or balance in this sale."""
    gift_card: dict[str, Any] | None = None
    """The gift card last tapped or used in this session, as this till knows it (never its tag's uid hash)."""
    gifts: list[GiftReceipt] = field(default_factory=list)
    """Gift cards sold, loaded or paid with in this session (several cards may pay one sale)."""
    vouchers: list[tuple[VoucherReceipt, int]] = field(default_factory=list)
    """Vouchers used in this session, each with what it took off the sale done (0: the POS takes it off)."""


class Session:
    """One cashier session; thread-safe (readers, scanners, hotkeys and the API call it)."""

    def __init__(
        self,
        till: Till,
        sales: Sales,
        *,
        currency: str = "EUR",
        exponent: int = 2,
        join_url: str = "",
        redeem_default: str = "max",
        on_change: Callable[[dict[str, Any]], object] | None = None,
        make_claim_token: Callable[[Receipt], str] = claim_token,
        coupon_of_code: Callable[[str], str] = id_from_body,
        gifts: GiftDesk | None = None,
    ) -> None:
        self.till = till
        self.gifts = gifts
        """Gift cards sold, loaded and paid with by a tap the cashier armed (the gift card key); None: none here."""
        self.sales = sales
        """The one path that commits a sale (``terminal.checkout.Checkout``): confirm and a payment code."""
        self.currency = {"code": currency, "exponent": exponent}
        self.join_url = join_url
        self.redeem_default = REDEEM_MAX if redeem_default == "max" else 0
        self.on_change = on_change
        self.make_claim_token = make_claim_token
        # A coupon code's body -> the coupon id it stands for (member codes are signed: the till reads them).
        self.coupon_of_code = coupon_of_code
        self.seq = 0
        self._sale = _Sale()
        self._lock = threading.RLock()
        self._qr_cache: dict[str, str] = {}
        self.panel_focus_until = 0.0  # monotonic time until which a panel says it has the keyboard

    # -- who has the keyboard ------------------------------------------------------------------------

    def panel_focus(self, focused: bool, ttl: float = PANEL_FOCUS_TTL) -> None:
        """A panel got or lost the keyboard; it says so again every few seconds while it has it."""
        self.panel_focus_until = time.monotonic() + ttl if focused else 0.0

    def panel_has_focus(self) -> bool:
        return time.monotonic() < self.panel_focus_until

    def hotkey(self, action: str) -> None:
        """A global hotkey: ignored while a panel has the keyboard (it acts on the key itself)."""
        if self.panel_has_focus():
            return
        try:
            self.press(action)
        except Rejected:
            pass  # shown in the snapshot's error

    # -- reading -----------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._sale.state

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        s = self._sale
        return {
            "seq": self.seq,
            "state": s.state.value,
            "awaiting": s.awaiting.value if s.awaiting else None,
            "member": _member_dict(s.member, s.via, self._may_spend() if s.member else False),
            "basket": _basket_dict(s.basket, s.basket_source),
            "coupons": list(s.coupons),
            "offers": self._offers(),
            "rewards": list(s.rewards),
            "catalogue": self._catalogue(),
            "redeem": s.redeem,
            "quote": _quote_dict(s.quote),
            "receipt": asdict(s.receipt) if s.receipt else None,
            "voided": asdict(s.voided) if s.voided else None,
            "customer_qr": self._customer_qr(),
            "gift": self._gift_dict(),
            "vouchers": [{**_voucher_dict(v), "off": off} for v, off in s.vouchers],
            "left": self._left() if s.receipt is not None and s.receipt.kind == EntryKind.SALE.value else None,
            "error": s.error,
            "notice": s.notice,
            "currency": self.currency,
        }

    def _catalogue(self) -> list[dict[str, Any]]:
        """The rewards the identified member may buy here (the cashier's buttons), cheapest first."""
        if self._sale.member is None:
            return []
        offered = sorted((r for r in self.till.rewards().values() if r.active), key=lambda r: (r.points, r.reward_id))
        return [{"reward_id": r.reward_id, "title": r.title, "points": r.points} for r in offered]

    def add_reward(self, reward_id: str) -> dict[str, Any]:
        """The member buys a reward with points in this sale (their proof is asked for at the payment)."""
        with self._lock:
            s = self._sale
            if s.state in (State.PAYMENT, State.DONE):
                self._refuse(Code.SESSION_BUSY, "Rewards go in before the payment.")
            if s.member is None:
                self._refuse(Code.NO_MEMBER, "Identify the member first: a reward is bought with their points.")
            if reward_id not in s.rewards:
                s.rewards.append(reward_id)
                try:
                    self._requote()
                except Rejected:
                    s.rewards.remove(reward_id)
                    self._requote()
                    raise
            s.error, s.awaiting = None, None
            return self._changed()

    def remove_reward(self, reward_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._sale
            if s.state in (State.PAYMENT, State.DONE):
                self._refuse(Code.SESSION_BUSY, "Rewards change before the payment only.")
            if reward_id in s.rewards:
                s.rewards.remove(reward_id)
            s.error = None
            self._requote()
            return self._changed()

    def _offers(self) -> list[dict[str, Any]]:
        """Coupons of this sale: the member's own and those presented, each usable or not, and why."""
        s = self._sale
        if s.member is None and not s.coupons:
            return []
        member_id = s.member.member_id if s.member else None
        try:
            offers, unknown = self.till.offers(s.coupons, member_id, self._may_spend())
        except Rejected:
            return []
        refused = dict(s.quote.refused) if s.quote else {}
        applied = set(s.quote.coupons) if s.quote else set()
        rows = [self._offer_row(o.coupon.coupon_id, o.coupon.text, applied, refused) for o in offers]
        rows += [
            {"coupon_id": cid, "text": "", "usable": False, "applied": False, **_why(code)} for cid, code in unknown
        ]
        return rows

    def _offer_row(self, coupon_id: str, text: str, applied: set[str], refused: dict[str, str]) -> dict[str, Any]:
        row: dict[str, Any] = {"coupon_id": coupon_id, "text": text, "applied": coupon_id in applied}
        if coupon_id in refused:
            return {**row, "usable": False, **_why(refused[coupon_id])}
        pending = self._sale.quote is None
        return {
            **row,
            "usable": None if pending else True,
            "code": None,
            "message": "Checked once the basket is in." if pending else "",
        }

    def _customer_qr(self) -> dict[str, str] | None:
        """The customer's QR: claim this sale's points (an anonymous sale done), else join (idle)."""
        s = self._sale
        text, kind = "", ""
        if s.state is State.DONE and s.receipt is not None and s.member is None and s.voided is None:
            text, kind = qrcodes.claim_code(self.make_claim_token(s.receipt), self.join_url or None), "claim"
        elif s.state is State.IDLE and s.member is None and self.join_url:
            text, kind = self.join_url, "join"
        if not text:
            return None
        if text not in self._qr_cache:
            self._qr_cache = {text: qrcodes.svg(text, scale=4.0)}  # keep one: it changes once a sale
        return {"kind": kind, "text": text, "svg": self._qr_cache[text]}

    def claim_png(self) -> bytes | None:
        """The receipt's claim QR as a PNG for the printer; None unless an anonymous sale is done."""
        with self._lock:
            qr = self._customer_qr()
        return qrcodes.png(qr["text"]) if qr and qr["kind"] == "claim" else None

    # -- the cashier's actions ---------------------------------------------------------------------

    def press(self, action: Action | str) -> dict[str, Any]:
        """A key or button: what it means depends on the state (pay twice is confirm, Esc backs out)."""
        act = Action(action)
        handlers: dict[Action, Callable[[], dict[str, Any]]] = {
            Action.IDENTIFY: lambda: self.arm(Awaiting.MEMBER),
            Action.COUPON: lambda: self.arm(Awaiting.COUPON),
            Action.TOTAL: lambda: self.arm(Awaiting.TOTAL),
            Action.PAY: lambda: self.confirm() if self._sale.state is State.PAYMENT else self.pay(),
            Action.CONFIRM: self.confirm,
            Action.CANCEL: self.cancel,
            Action.POINTS: self.toggle_points,
            Action.NEW: self.reset,
            Action.ENROL: lambda: self.arm(Awaiting.ENROL),
            Action.TOPUP: self.topup,
            Action.GIFT: self.gift,
        }
        return handlers[act]()

    def arm(self, awaiting: Awaiting) -> dict[str, Any]:
        with self._lock:
            s = self._sale
            if s.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "Finish or cancel the payment first (Enter or Esc).")
            if s.state is State.DONE:
                self._sale = s = _Sale()
            s.awaiting, s.error = awaiting, None
            return self._changed()

    def wants_enrol(self) -> bool:
        """The cashier pressed "new member": the next unknown card is enrolled (terminal.enrolment)."""
        return self._sale.awaiting is Awaiting.ENROL

    def identify(self, member_id: str, via: str = "typed", proof: str | None = None) -> dict[str, Any]:
        """Identify the customer by member id (typed, or resolved from a tap or a member code).
        ``proof``: the fresh code the member's phone showed, if that is how they were identified."""
        with self._lock:
            s = self._sale
            if s.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "A payment is in progress: finish or cancel it first.")
            member = self._call(lambda: self.till.member(member_id))
            if s.state is State.DONE:
                self._sale = s = _Sale()
            s.member, s.via, s.awaiting, s.error, s.redeem, s.proof = member, via, None, None, 0, proof
            s.state = State.COUPONS if s.coupons else State.MEMBER
            self._requote()
            return self._changed()

    def refused_tap(self, code: str, message: str) -> dict[str, Any]:
        """A tap the service refused (unknown or blocked card): shown, nothing else changes."""
        with self._lock:
            self._sale.error = refusal_dict(code, message)
            return self._changed()

    def set_basket(self, lines: Sequence[Line], source: str = "pos") -> dict[str, Any]:
        with self._lock:
            s = self._sale
            if s.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "A payment is in progress: finish or cancel it first.")
            basket = Basket(tuple(lines))
            if s.state is State.DONE:
                self._sale = s = _Sale()
            previous = (s.basket, s.basket_source)
            s.basket, s.basket_source = basket, source
            try:
                self._requote()
            except Rejected:
                s.basket, s.basket_source = previous
                raise
            if s.awaiting is Awaiting.TOTAL:
                s.awaiting = None
            s.error = None
            return self._changed()

    def receipt_sale(self, basket: Basket, ref: ReceiptRef) -> ReceiptSold:
        """A receipt the POS printed (captured by the printer in the middle) is this session's basket,
        and the sale is recorded through the one sale path: for the member identified at the till (with
        the coupons applied), else anonymous with a claim code. The POS took the payment already."""
        with self._lock:
            s = self._sale
            if s.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "A payment is in progress: finish or cancel it first.")
            if s.state is State.DONE:
                self._sale = s = _Sale()
            member = s.member
            order = SaleOrder(member.member_id if member else None, basket, tuple(s.coupons), receipt=ref)
            receipt = self._call(lambda: self.sales.sell(order))
            offers = self._offers() if member is not None else []
            s.basket, s.basket_source = basket, "receipt"
            s.receipt, s.state, s.error, s.awaiting = receipt, State.DONE, None, None
            claim = progress = None
            if member is None:
                claim = qrcodes.claim_code(self.make_claim_token(receipt), self.join_url or None)
            else:
                progress = self.till.tier_progress(member.member_id)
            self._changed()
            offer = next((str(x["text"]) for x in offers if x["text"] and x["coupon_id"] not in order.coupons), None)
            return ReceiptSold(receipt, member, claim, offer or None, progress)

    def set_total(self, amount: int) -> dict[str, Any]:
        """Cashier-only mode: the total read off the POS screen and typed in."""
        if amount <= 0:
            self._refuse(Code.INVALID_BASKET, "Type the total to pay, above zero.")
        return self.set_basket([Line(TOTAL_SKU, 1, amount, "")], source="typed")

    def apply_coupon(self, text: str) -> dict[str, Any]:
        """A coupon typed or scanned: a coupon code (``TPC1:``) or a coupon id as printed."""
        return self._add_coupon(self._coupon_id(text))

    def _add_coupon(self, coupon_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._sale
            if s.state in (State.PAYMENT, State.DONE):
                self._refuse(Code.SESSION_BUSY, "Coupons go in before the payment.")
            if coupon_id in s.coupons:
                s.awaiting = None
                return self._changed()
            s.coupons.append(coupon_id)
            try:
                self._requote()
            except Rejected:
                s.coupons.remove(coupon_id)
                raise
            refused = dict(s.quote.refused) if s.quote else {}
            if refused.get(coupon_id) == Code.UNKNOWN_COUPON.value or (s.quote is None and not self._known(coupon_id)):
                s.coupons.remove(coupon_id)
                self._requote()
                self._refuse(Code.UNKNOWN_COUPON, f"No coupon {coupon_id!r} on this till.")
            s.state, s.awaiting = State.COUPONS, None
            s.error = refusal_dict(refused[coupon_id]) if coupon_id in refused else None
            return self._changed()

    def remove_coupon(self, coupon_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._sale
            if s.state in (State.PAYMENT, State.DONE):
                self._refuse(Code.SESSION_BUSY, "Coupons change before the payment only.")
            if coupon_id in s.coupons:
                s.coupons.remove(coupon_id)
            if not s.coupons and s.state is State.COUPONS:
                s.state = State.MEMBER if s.member else State.IDLE
            s.error = None
            self._requote()
            return self._changed()

    def pay(self, redeem: int | None = None) -> dict[str, Any]:
        """To the payment step: points paid (``redeem``: points, -1 as many as allowed, default by
        config), what the POS still collects. Nothing is recorded before ``confirm``."""
        with self._lock:
            s = self._sale
            if s.state is State.DONE:
                self._refuse(Code.SESSION_BUSY, "This sale is done: start the next one.")
            if s.basket is None and not s.rewards:
                self._refuse(Code.NO_BASKET)
            default = self.redeem_default if s.member and s.member.points > 0 and self._may_spend() else 0
            wanted = redeem if redeem is not None else default
            s.redeem = wanted if s.member else 0
            try:
                self._requote()
            except Rejected as exc:
                if redeem is not None:
                    s.redeem = 0
                    self._requote()
                    s.error = refusal_dict(exc.code.value, exc.message)
                    raise
                s.redeem = 0  # the default could not be used (points locked, below minimum): pay none
                self._requote()
            s.state, s.awaiting = State.PAYMENT, None
            return self._changed()

    def pay_with_code(self, text: str) -> dict[str, Any]:
        """The member's one-time payment code: their account pays what is left after points, and
        the sale is recorded at once (the code is single-use and expires within a minute)."""
        with self._lock:
            s = self._sale
            if s.state is not State.PAYMENT or s.quote is None:
                self._refuse(Code.SESSION_BUSY, "Press Pay first, then scan the member's payment code.")
            order = SaleOrder.of_quote(s.quote, stored_value=None, code=text)
            receipt = self._call(lambda: self.sales.sell(order))
            s.receipt, s.state, s.error, s.awaiting = receipt, State.DONE, None, None
            return self._changed()

    def toggle_points(self) -> dict[str, Any]:
        with self._lock:
            if self._sale.state is not State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "Points are chosen in the payment step.")
            return self.pay(0 if self._sale.redeem else REDEEM_MAX)

    def confirm(self) -> dict[str, Any]:
        """Record the sale (one durable commit); the approval shows only after it returned. Points
        are spent on the member's proof: their secure card's tap, or the fresh code their phone showed."""
        with self._lock:
            s = self._sale
            if s.state is not State.PAYMENT or s.quote is None:
                if s.awaiting is not None:
                    self._refuse(Code.SESSION_BUSY, "Type or scan what is asked, or press Esc.")
                self._refuse(Code.SESSION_BUSY, "Nothing to confirm: press Pay first.")
            # The phone's code goes with the sale whatever it takes, while it is good: used up, it cannot stand for
            # the member again. One whose window passed while the basket was rung only identified them.
            code = (
                s.proof
                if s.proof is not None and s.member and self.sales.code_stands(s.member.member_id, s.proof)
                else None
            )
            order = SaleOrder.of_quote(s.quote, code=code)
            receipt = self._call(lambda: self.sales.sell(order))
            s.receipt, s.state, s.error, s.awaiting = receipt, State.DONE, None, None
            return self._changed()

    def topup(self) -> dict[str, Any]:
        """Sell stored value to the identified member: the amount typed as the total, which the POS took
        (docs/stored-value.md); never a basket the POS sent (its money paid for goods). Head office's limits for this
        till decide; a refusal shows its code."""
        with self._lock:
            s = self._sale
            if s.state in (State.PAYMENT, State.DONE) or s.awaiting is not None:
                self._refuse(
                    Code.SESSION_BUSY, "A top-up starts from a new sale: identify the member, type the amount."
                )
            if s.member is None or s.basket is None:
                self._refuse(Code.SESSION_BUSY, "A top-up needs the member identified and the amount typed.")
            if s.basket_source != "typed":  # the POS took the basket's money for its goods
                self._refuse(Code.SESSION_BUSY, "A top-up is the amount typed (the total key), not the POS's basket.")
            member_id, amount = s.member.member_id, s.basket.total
            receipt = self._call(lambda: self.till.topup(member_id, amount))
            s.receipt, s.state, s.error = receipt, State.DONE, None
            return self._changed()

    def void(self) -> dict[str, Any]:
        """Void the sale (or top-up) just done (the customer changed their mind at the till)."""
        with self._lock:
            s = self._sale
            if s.state is not State.DONE or s.receipt is None or s.voided is not None:
                self._refuse(Code.SESSION_BUSY, "Only the sale just done can be voided here.")
            txn = s.receipt.txn_id
            undo = self.till.void_topup if s.receipt.kind == EntryKind.TILL_TOPUP.value else self.till.void
            # The till's one void (``Service.void``, the POS's API's too): the sale is voided once or not at all (a
            # sale the POS voided or refunded already is refused), and in the same transaction each gift card that
            # paid it gets back what it paid and was not given back already; a voucher that paid part of it stays
            # used, and the POS pays back only what it collected (the receipt's ``voucher_kept``).
            s.voided = self._call(lambda: undo(txn))
            s.error = None
            self._show_gift_refunds(s.voided.gift_refunds)
            return self._changed()

    # -- gift cards (docs/giftcards.md) --------------------------------------------------------------

    def gift(self) -> dict[str, Any]:
        """The gift card key. After a sale with money left for the POS to collect: the next tapped gift card
        pays as much of it as the card holds (tap more cards for the rest). Otherwise, with an amount typed:
        the next tapped card is sold as a gift card with it, or, already one, loaded with it (the POS took it)."""
        with self._lock:
            s = self._sale
            self._gift_desk()
            if s.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "Confirm the sale first: a gift card pays what the POS collects.")
            if s.state is State.DONE and self._left() > 0:
                s.awaiting = Awaiting.GIFT_PAY
            elif s.state is State.DONE or s.basket is None or s.basket_source != "typed":  # a POS basket paid goods
                self._refuse(Code.SESSION_BUSY, "Type the amount to put on the gift card first.")
            else:
                s.awaiting = Awaiting.GIFT_SELL
            s.error = None
            return self._changed()

    def use_voucher(self, text: str) -> tuple[VoucherReceipt, int]:
        """A voucher scanned, used once now. After a sale with money left for the POS to collect it pays part of
        that sale (an amount voucher up to what is left, a product voucher one unit of its product in the basket)
        and says so; otherwise the POS takes what it says off the sale it rings. Returns it with what it took off."""
        with self._lock:
            s = self._sale
            left = self._left()
            sale = s.receipt.txn_id if left > 0 and s.receipt is not None else ""
            used = self._call(lambda: self.till.redeem_voucher(text, sale))
            off = min(left, _voucher_off(used, s.basket)) if sale else 0
            s.vouchers.append((used, off))
            if s.awaiting is Awaiting.GIFT_PAY and self._left() <= 0:
                s.awaiting = None
            s.error = None
            self._changed()
            return used, off

    def wants_gift_tap(self) -> bool:
        """The cashier armed the gift card key: the next tap is the gift card (never a member's identification)."""
        return self._sale.awaiting in (Awaiting.GIFT_SELL, Awaiting.GIFT_PAY)

    def gift_tap(self, read: CardRead) -> dict[str, Any]:
        """The tap the gift card key armed. Refused (``Rejected``, shown in the snapshot): the key stays armed
        for another card, or Esc."""
        with self._lock:
            s = self._sale
            gifts = self._gift_desk()
            if s.awaiting is Awaiting.GIFT_SELL and s.basket is not None and s.basket_source == "typed":
                amount = s.basket.total
                card = self._call(lambda: _gift_card_or_none(gifts, read))
                sells = card is None or card.state is gc.State.CLEARED
                done = self._call(lambda: gifts.sell_gift(read, amount) if sells else gifts.load_gift(read, amount))
                s.state, s.awaiting = State.DONE, None
            elif s.awaiting is Awaiting.GIFT_PAY and s.receipt is not None:
                card = self._call(lambda: gifts.gift_card(read))
                amount, sale = min(card.balance, self._left()), s.receipt.txn_id
                if amount <= 0:
                    self._refuse(Code.GIFT_CARD_INSUFFICIENT, "This gift card holds nothing to pay with.")
                done = self._call(lambda: gifts.pay_gift(read, amount, sale))
            else:
                self._refuse(Code.SESSION_BUSY, "Press the gift card key first.")
            s.gifts.append(done)
            if self._left() <= 0 and s.awaiting is Awaiting.GIFT_PAY:
                s.awaiting = None
            s.gift_card = {"card_id": done.card_id, "balance": done.balance, "offline": done.offline}
            s.error = None
            return self._changed()

    def show_gift_card(self, card: gc.GiftCard) -> dict[str, Any]:
        """A gift card tapped with nothing armed: its balance and state are shown (the balance check)."""
        with self._lock:
            s = self._sale
            shown = {"card_id": card.card_id, "balance": card.balance, "state": card.state.value}
            s.gift_card = {**shown, "expires_on": card.expires_on}
            s.error = None
            return self._changed()

    def _gift_desk(self) -> GiftDesk:
        if self.gifts is None:
            self._refuse(Code.SESSION_BUSY, "This till takes no gift cards.")
        return self.gifts

    def _left(self) -> int:
        """What the POS still collects for the sale done here, after the gift cards and vouchers that paid it."""
        s = self._sale
        if s.state is not State.DONE or s.receipt is None or s.voided is not None:
            return 0
        if s.receipt.kind != EntryKind.SALE.value:
            return 0
        due = s.receipt.breakdown.pos_due if s.receipt.breakdown is not None else s.receipt.total
        paid = sum(g.amount for g in s.gifts if g.kind in _GIFT_PAYMENTS) - sum(off for _, off in s.vouchers)
        return max(0, due + paid)

    def _show_gift_refunds(self, refunds: Sequence[GiftReceipt]) -> None:
        """What the void gave back onto the gift cards, each in place of that card's payment of the sale (a payment
        the POS had given back onto its card already got nothing more, and stays shown)."""
        s = self._sale
        for refund in refunds:
            paid = [g for g in s.gifts if g.kind == EntryKind.GIFT_REDEEM.value and g.card_id == refund.card_id]
            if paid:
                s.gifts[s.gifts.index(paid[0])] = refund
            else:
                s.gifts.append(refund)

    def _gift_dict(self) -> dict[str, Any]:
        """The gift card shown, and what gift cards did in this session."""
        s = self._sale
        fields = ("kind", "card_id", "amount", "balance", "offline", "txn_id")
        return {"card": s.gift_card, "done": [{name: getattr(g, name) for name in fields} for g in s.gifts]}

    def cancel(self) -> dict[str, Any]:
        """Esc: drop what was armed, else leave the payment step, else start over (nothing recorded)."""
        with self._lock:
            s = self._sale
            if s.awaiting is not None:
                s.awaiting, s.error = None, None
            elif s.state is State.PAYMENT:
                s.redeem, s.error = 0, None
                s.state = State.COUPONS if s.coupons else State.MEMBER if s.member else State.IDLE
                self._requote()
            else:
                self._sale = _Sale()
            return self._changed()

    def reset(self) -> dict[str, Any]:
        with self._lock:
            if self._sale.state is State.PAYMENT:
                self._refuse(Code.SESSION_BUSY, "A payment is in progress: finish or cancel it first.")
            self._sale = _Sale()
            return self._changed()

    def scan(self, text: str) -> dict[str, Any]:
        """A code read by a scanner: a member code identifies, a coupon code applies; what was armed
        decides for a plain printed id. Card numbers and other wallets' codes are refused unkept."""
        return self._scan(classify(text), text)[2]

    def scan_report(self, text: str) -> dict[str, Any]:
        """``scan``, told to whoever held the code up: what it was (its kind, never its text: a payment
        code is a secret) and what happened: ``member_identified`` (with the member), ``coupon_added``
        (with the coupon and, when it cannot be used in this sale, why), ``paid`` (with the receipt), or
        ``refused`` with the stable code and message."""
        found = classify(text)
        kind = scan_kind(found)
        report: dict[str, Any] = {"kind": kind, "what": SCAN_KINDS.get(kind, kind)}
        try:
            result, detail, _ = self._scan(found, text)
        except Rejected as exc:
            return report | {"result": "refused", "code": exc.code.value, "message": exc.message}
        return report | {"result": result, **detail}

    def _scan(self, found: Scan | Refusal, text: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(what the scan did, its details, the snapshot); ``Rejected`` when refused."""
        if isinstance(found, Refusal):
            self._refuse(found.code)
        if found.kind is Kind.MEMBER:
            read: MemberCodeRead = self._call(lambda: self.till.read_member_code(found.version, found.body))
            return self._identified(self.identify(read.member_id, via="code", proof=read.proof))
        if found.kind is Kind.COUPON or (found.kind is Kind.UNKNOWN and self._sale.awaiting is Awaiting.COUPON):
            coupon_id = self._coupon_id(text if found.kind is Kind.COUPON else found.body)
            snap = self._add_coupon(coupon_id)
            return "coupon_added", {"coupon_id": coupon_id, "error": snap["error"]}, snap
        if found.kind is Kind.UNKNOWN and self._sale.awaiting is Awaiting.MEMBER:
            return self._identified(self.identify(found.body, via="code"))
        if found.kind is Kind.PAYMENT:
            snap = self.pay_with_code(text.strip(SCANNER_ENDS))
            return "paid", {"receipt": snap["receipt"]}, snap
        if found.kind is Kind.VOUCHER:
            used, off = self.use_voucher(text.strip())
            return "voucher_redeemed", {"voucher": {**_voucher_dict(used), "off": off}}, self._changed()
        what = "a receipt's claim code" if found.kind is Kind.CLAIM else "not one of ours"
        self._refuse(Code.UNKNOWN_CODE, f"This code is {what}.")

    @staticmethod
    def _identified(snap: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        member = snap["member"] or {}
        shown = {k: member.get(k) for k in ("member_id", "name", "tier", "points", "via")}
        return "member_identified", {"member": shown}, snap

    # -- internals ---------------------------------------------------------------------------------

    def _coupon_id(self, text: str) -> str:
        found = classify(text.strip())
        if isinstance(found, Refusal):
            self._refuse(found.code)
        if found.kind is Kind.COUPON:
            return self.coupon_of_code(found.body)
        if found.kind is not Kind.UNKNOWN or not found.body.strip():
            self._refuse(Code.UNKNOWN_COUPON, "That is not a coupon.")
        return found.body.strip()

    def _known(self, coupon_id: str) -> bool:
        member_id = self._sale.member.member_id if self._sale.member else None
        offers, _ = self.till.offers([coupon_id], member_id)
        return any(o.coupon.coupon_id == coupon_id for o in offers)

    def _requote(self) -> None:
        s = self._sale
        if s.basket is None and not s.rewards:
            s.quote = None
            return
        member_id = s.member.member_id if s.member else None
        basket = s.basket or Basket(())  # only rewards: no goods
        proven = self._may_spend()
        s.quote = self._call(
            lambda: self.till.quote(member_id, basket, list(s.coupons), s.redeem, list(s.rewards), proven=proven)
        )

    def _may_spend(self) -> bool:
        s = self._sale
        return s.member is not None and self.sales.may_spend(s.member.member_id, s.proof)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Rejected as exc:
            self._sale.error = refusal_dict(exc.code.value, exc.message)
            self._changed()
            raise

    def _refuse(self, code: Code, message: str | None = None) -> NoReturn:
        exc = Rejected(code, message)
        with self._lock:
            self._sale.error = refusal_dict(code.value, exc.message)
            self._changed()
        raise exc

    def _changed(self) -> dict[str, Any]:
        self.seq += 1
        snap = self._snapshot()
        if self.on_change is not None:
            self.on_change(snap)
        return snap


def _gift_card_or_none(gifts: GiftDesk, read: CardRead) -> gc.GiftCard | None:
    """The gift card of a tap, or None for a card that is no gift card yet (it may be sold as one)."""
    try:
        return gifts.gift_card(read)
    except Rejected as exc:
        if exc.code is Code.GIFT_CARD_UNKNOWN:
            return None
        raise


def _voucher_dict(used: VoucherReceipt) -> dict[str, Any]:
    return {k: getattr(used, k) for k in ("txn_id", "voucher_id", "voucher_kind", "value", "sku", "offline")}


def _voucher_off(used: VoucherReceipt, basket: Basket | None) -> int:
    """What a voucher takes off a sale of ``basket`` (``vc.takes_off``)."""
    lines = [(x.sku, x.unit_price) for x in basket.lines] if basket is not None else []
    return vc.takes_off(used.voucher_kind, used.value, used.sku, lines)


def _why(code: str) -> dict[str, Any]:
    return refusal_dict(code)


def _member_dict(member: Member | None, via: str, can_spend: bool) -> dict[str, Any] | None:
    if member is None:
        return None
    return {
        "member_id": member.member_id,
        "name": member.display_name,
        "tier": member.tier,
        "points": member.points,
        "balance": None,
        "via": via,
        "can_spend": can_spend,
    }


def _basket_dict(basket: Basket | None, source: str) -> dict[str, Any] | None:
    if basket is None:
        return None
    lines = [
        {"sku": x.sku, "quantity": x.quantity, "unit_price": x.unit_price, "category": x.category, "amount": x.amount}
        for x in basket.lines
    ]
    return {"lines": lines, "total": basket.total, "source": source}


def _quote_dict(quote: Quote | None) -> dict[str, Any] | None:
    if quote is None:
        return None
    explain = [
        {"source": x.source, "kind": x.kind, "points": x.points, "amount": x.amount, "text": x.text}
        for x in quote.explain
    ]
    refused = [{"coupon_id": cid, **refusal_dict(code)} for cid, code in quote.refused]
    return {
        "total": quote.total,
        "discount": quote.discount,
        "points_earned": quote.points_earned,
        "points_redeemed": quote.points_redeemed,
        "redeem_value": quote.redeem_value,
        "payable": quote.payable,
        "coupons": list(quote.coupons),
        "refused": refused,
        "explain": explain,
        "tier_after": quote.tier_after,
    }


# -- wiring into the daemon --------------------------------------------------------------------------

log = logging.getLogger(__name__)
PANEL_KEYS = {
    "total": "F8",
    "points": "F4",
    "confirm": "Enter",
    "language": "F2",
    "new": "F6",
    "topup": "F3",
    "gift": "F1",
}


def follow(session: Session, event: Event) -> None:
    """A daemon event the session acts on: a member identified by a tap, a tap refused."""
    kind = event.get("type")
    try:
        if kind == "member" and event.get("member_id"):
            session.identify(str(event["member_id"]), via="card")
        elif kind == "rejected" and event.get("reader"):
            session.refused_tap(str(event["code"]), str(event.get("message", "")))
    except Rejected:
        pass  # the snapshot carries the refusal


def on_qr(emit: Emit, session: Session | None, read: QrRead) -> dict[str, Any]:
    """A scanner read a code: the session gets the text, the event stream only its kind. Returns what
    the code was and what happened (``Session.scan_report``), for whoever held it up."""
    kind = scan_kind(classify(read.text))
    emit({"type": "scan", "scanner": read.scanner, "kind": kind})
    if session is None:
        return {"kind": kind, "what": SCAN_KINDS.get(kind, kind), "result": "ignored"}
    return session.scan_report(read.text)


def start_hotkeys(config: HotkeysSection, session: Session, emit: Emit) -> HotkeyListener | None:
    """The global hotkey listener, when enabled (started); its status changes become ``hotkeys`` events."""
    from terminal.hotkeys import HotkeyListener, parse_keymap

    if not config.enabled:
        return None
    try:
        keymap = parse_keymap(config.keymap())
    except ValueError as exc:
        emit({"type": "hotkeys", "state": "error", "detail": str(exc), "devices": []})
        return None
    listener = HotkeyListener(
        config.devices,
        keymap,
        session.hotkey,
        gap=config.burst_gap_ms / 1000,
        on_status=lambda status: _emit_status(emit, status),
    )
    listener.start()
    return listener


def _emit_status(emit: Emit, status: dict[str, Any]) -> None:
    emit({"type": "hotkeys", **status})


def panel_config(config: Config) -> dict[str, Any]:
    """What the panel needs to draw itself: keys, language, currency (no personal data)."""
    panel_keys = {str(action): key for action, key in config.panel.keys.items()}
    keys = {**PANEL_KEYS, **panel_keys, **config.hotkeys.keymap()}
    return {
        "keys": keys,
        "language": config.panel.language,
        "languages": ["en", "ja", "zh"],
        "currency": {"code": config.terminal.currency, "exponent": config.terminal.currency_exponent},
        "terminal_id": config.terminal.id,
        "hotkeys": config.hotkeys.enabled,
    }


__all__ = [
    "Action",
    "Awaiting",
    "Session",
    "State",
    "Till",
    "claim_token",
    "ReceiptSold",
    "code_body",
    "follow",
    "id_from_body",
    "on_qr",
    "panel_config",
    "start_hotkeys",
]
