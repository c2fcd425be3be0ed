"""The protocols the core needs from the outside world; drivers, stores and clients implement them.

And the seams inside the till: each part sees the others only through the small protocol here that
names what it uses.

    TillStore     what ``Service`` needs of the local database            (``terminal.store.Store``)
    SyncStore     what the sync client needs of it                        (``terminal.store.Store``)
    ClaimJournal  what the claim signer needs of it                       (``terminal.store.Store``)
    SaleDesk      what the one sale path needs of the service             (``terminal.service.Service``)
    Till          what the cashier's session reads from the service       (``terminal.service.Service``)
    Ledger        what the local API prices and reverses with             (``terminal.service.Service``)
    CardDesk      what enrolment at the till needs of the service         (``terminal.service.Service``)
    Sales         the one path that commits a sale, as the session sees it (``terminal.checkout.Checkout``)
    EnrolArm      whether the cashier armed "new member"                  (``terminal.session.Session``)
    Cashier       the session as the local API drives it                  (``terminal.session.Session``)
    PosTill       the daemon as the local API sees it                     (``terminal.daemon.Daemon``)
    ReceiptDesk   what the printer in the middle hands receipts to        (``terminal.receipts.desk.Desk``)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from terminal.coupons import Offer
from terminal.errors import Code, Rejected
from terminal.giftcards import GiftCard, OfflineTally
from terminal.identity import Identified, Payment
from terminal.loyalty import Lot
from terminal.model import (
    Basket,
    Card,
    CardRead,
    EarnRule,
    GiftReceipt,
    JournalEntry,
    Line,
    Member,
    MemberCodeRead,
    QrRead,
    Quote,
    ReaderEvent,
    Receipt,
    ReceiptRef,
    SaleOrder,
    VoucherReceipt,
)
from terminal.receipts.escpos import Captured
from terminal.rewards import Reward
from terminal.topups import Sold, Tally

CardSink = Callable[[CardRead], None]
ReaderSink = Callable[[ReaderEvent], None]
QrSink = Callable[[QrRead], object]  # what it returns is for the caller who held the code up (sim)
UidHasher = Callable[[bytes], str]


class CardReader(Protocol):
    """A source of taps. ``start`` returns at once; events arrive on the sinks from the reader's thread."""

    name: str

    def start(self, on_card: CardSink, on_reader: ReaderSink) -> None: ...

    def stop(self) -> None: ...

    def readers(self) -> list[str]:
        """Names of the readers present right now."""
        ...


class QrScanner(Protocol):
    name: str

    def start(self, on_qr: QrSink, on_reader: ReaderSink) -> None: ...

    def stop(self) -> None: ...


class Clock(Protocol):
    """The time: ``time.time``, ``time.monotonic``, or a clock a test moves by hand."""

    def __call__(self) -> float:
        """Seconds (since the epoch for a wall clock)."""
        ...


Event = dict[str, Any]
"""One of the daemon's events (JSON-ready): taps, members, sales, refusals, reader and sync changes."""
Emit = Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class CacheDocs:
    """Head-office documents of one pulled page, bodies as JSON text (their shape belongs to
    loyalty, coupons and credentials; the sync layer stores them as they come)."""

    rule_docs: list[tuple[str, str]] = field(default_factory=list)
    """(rule_id, body)"""
    coupons: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    """(coupon_id, member_id, body, uses counted by head office)"""
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    """(key_id, body, signature by head office's root key)"""
    revocations: list[tuple[str, str, str]] = field(default_factory=list)
    """(revocation_id "kind:subject", body, signature)"""
    device_certs: list[tuple[str, str]] = field(default_factory=list)
    """(cert_id hex, body): member devices' certificates, signed by head office's payment key"""
    deleted: list[tuple[str, str]] = field(default_factory=list)
    """(kind, id) tombstones: member, card, rule, rule_doc, coupon, device_cert, voucher, gift_card"""
    signed_deleted: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, id, deleted_at) tombstones of a key or a revocation, signature checked by the sync client: each
    takes off only a key made, or a revocation made, no later than its deletion (a replayed old one takes off
    nothing made since)"""
    spend_held: list[str] | None = None
    """Every member id whose spending head office holds, replacing what the till held as held; None: the page
    carries none (the held ones stay)"""
    allocations: list[tuple[str, int, int]] | None = None
    """(pool_id, allowed, used as head office counts it): this till's whole allocation of every open pool,
    replacing what it held; None: the page carries none (the held ones stay)"""
    topup_policy: str | None = None
    """Head office's top-up policy for this till (JSON text), replacing what it held; None: the page
    carries none (the held one stays)"""
    merchant_id: str | None = None
    """The merchant of this till's store, replacing what it held; None: the page carries none (the held one
    stays)"""
    vouchers: list[tuple[str, str]] = field(default_factory=list)
    """(voucher_id, body): sold vouchers' states, chain-wide"""
    voucher_stock: tuple[int, list[str]] | None = None
    """(offline total, codes): this till's whole unsold voucher stock, replacing what it held; None: the page
    carries none"""
    gift_cards: list[tuple[str, str]] = field(default_factory=list)
    """(card_id, body): gift cards as head office holds them, chain-wide"""
    gift_terms: str | None = None
    """The chain's gift card terms (JSON text), replacing what it held; None: the page carries none"""


class SyncStore(Protocol):
    """What the sync client needs from the local store: the journal and the cache's write side."""

    def unpushed(self, limit: int) -> list[JournalEntry]: ...

    def entries(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]: ...

    def mark_pushed(self, up_to_seq: int, at: str) -> int: ...

    def withdrawals(self, limit: int) -> list[str]: ...

    @property
    def recovering(self) -> bool:
        """Rebuilt from a damaged file: nothing is recorded until ``finish_recovery``."""
        ...

    def unmark_pushed(self, ranges: list[tuple[int, int]]) -> int:
        """Entries at these seqs head office acknowledged but no longer holds are to be sent again; how many."""
        ...

    def held_seqs(self, first: int, last: int) -> set[int]: ...

    def max_seq(self) -> int: ...

    def finish_recovery(self, floor: int) -> None: ...

    def renumber_unpushed(self, from_seq: int, above: int) -> list[tuple[int, int]]:
        """The unpushed entries from ``from_seq`` on take new seqs above ``above`` (head office holds other
        entries at their seqs: this database went back); (old, new) pairs."""
        ...

    def apply_changes(
        self,
        members: list[Member],
        cards: list[Card],
        rules: list[EarnRule],
        cursor: int,
        docs: CacheDocs | None = None,
        counted_seq: int | None = None,
    ) -> None: ...

    def bootstrap_rows(self, kind: str, rows: list[list[Any]], position: dict[str, str]) -> None:
        """Store one snapshot page (rows in ``sync.protocol.SNAPSHOT_COLUMNS`` order) and where the
        bootstrap got to, in one transaction."""
        ...

    def finish_bootstrap(self, version: int) -> None: ...

    def record_eod(self, day: str, first_seq: int, last_seq: int, totals: str, status: str, detail: str) -> None: ...

    def eod_first_seq(self, day: str) -> int | None: ...

    def state(self, key: str) -> str | None: ...

    def set_state(self, **values: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class TopupWrite:
    """A top-up sold here (``amount`` > 0) or the void of one (``voids``: its txn, ``amount`` < 0), checked
    again inside the transaction that records it: ``refusal`` sees the tallies as they are at COMMIT."""

    member_id: str
    amount: int
    day: str
    offline: bool = False
    voids: str | None = None
    refusal: Callable[[Tally], Code | None] | None = None


@dataclass(frozen=True, slots=True)
class VoucherWrite:
    """A voucher of this till's stock sold (``action`` "sell"), or a voucher used here ("redeem", "refund"),
    checked again inside the transaction that records it: a voucher is sold once and used once at this till,
    and ``refusal`` sees this till's offline redemptions not yet acknowledged as they are at COMMIT."""

    action: str
    voucher_id: str
    value: int
    state_doc: str
    """The voucher's state after this (JSON text), as the till holds it until head office's comes down."""
    offline: bool = False
    refusal: Callable[[int], Code | None] | None = None


@dataclass(frozen=True, slots=True)
class GiftFigures:
    """What a gift card entry is checked against inside the transaction that records it."""

    card: GiftCard | None
    """Head office's last word on the card, with this till's entries it has not acknowledged."""
    sold: Tally
    """Stored value this till sold today (top-ups and gift cards), on this card today, and offline unacknowledged."""
    offline: OfflineTally
    """What gift cards paid here offline, unacknowledged: this card today, every card."""
    counter: int | None
    """The highest SUN read counter of this card this till used (None: none)."""
    paid: int | None = None
    """A refund: what the card paid in the payment it names (None: no gift card payment here by that number)."""
    refunded: int = 0
    """A refund: what earlier refunds of that payment gave back."""


@dataclass(frozen=True, slots=True)
class GiftWrite:
    """A gift card entry of this till, checked again inside the transaction that records it: ``refusal`` sees
    the figures as they are at COMMIT, so two entries approved at once cannot pass a limit or a balance."""

    action: str
    """``activate``, ``load``, ``redeem``, ``refund`` or ``block``."""
    card_id: str
    uid_hash: str
    amount: int
    """What moves on the card's balance (a payment: less than zero)."""
    day: str
    offline: bool = False
    counter: int | None = None
    original_txn: str | None = None
    expires_on: str | None = None
    refusal: Callable[[GiftFigures], Code | None] | None = None


@dataclass(frozen=True, slots=True)
class PosRequest:
    """The POS's id of the request a sale answers, kept in the sale's transaction with the answer it was given
    (``answer`` makes its JSON there, from the stored entry and the member's new balance)."""

    request_id: str
    answer: Callable[[JournalEntry, int | None], str]


@dataclass(frozen=True, slots=True)
class Effects:
    """What a sale, void or refund changes besides the journal row and the points balance."""

    member_id: str | None = None
    spend_points: int = 0  # points redeemed: the member must hold them spendable at COMMIT time
    spend_lots: tuple[tuple[str, int], ...] = ()  # local lots paying them (the rest is head office's)
    new_lot: Lot | None = None
    restore_lots: tuple[tuple[str, int], ...] = ()  # lots given back points by a refund
    claw_lot: tuple[str, int] | None = None  # (lot id, points) taken back from a refunded sale's lot
    coupon_uses: tuple[tuple[str, int], ...] = ()  # (coupon id, +1 used / -1 given back)
    coupon_limits: tuple[tuple[str, int, int, int, int, bool], ...] = ()
    """(coupon id, global limit, per-member limit, uses the document states, the member's uses it states)"""
    coupon_pools: tuple[tuple[str, str], ...] = ()
    """(coupon id, pool id) of the pooled coupons a sale uses: each takes a unit of this till's allocation,
    checked again inside the transaction (a refund's give-back finds the pool on the sale's own use)"""
    window_delta: int = 0
    tier: str | None = None
    sale_state: dict[str, Any] | None = field(default=None)
    state_of: str | None = None  # the sale whose state a refund updates
    state_was: dict[str, Any] | None = None
    """the sale's state the refund or void was priced from: refused (``sale_changed``, ``already_voided``) when
    another return changed it before this one's COMMIT (two returns of one sale at the same moment)"""
    now: datetime | None = None  # local time of the sale, for lots locked or expired
    stored_value: int = 0  # stored value paid (> 0) or given back (< 0)
    payment_code: str | None = None  # the one-time code's id: may pay once
    offline: bool = False  # taken while head office was unreachable (counts against the limits)
    sun_counter: tuple[str, int] | None = None  # (uid hash, read counter) of a SUN card that paid
    sun_confirmed: bool = False  # head office confirmed the card's payment, its read counter checked against its own
    receipt_digest: str | None = None  # the POS receipt the sale was read from: one sale per receipt
    receipt_number: tuple[str, str] | None = None
    """(store id, the receipt's number, prefixed by the day for numbers that start again each day): one sale per
    number, a second is a reprint (``receipt_reprint``)"""
    receipt_printed: str | None = None
    """When the receipt says it was printed (UTC ISO): its rows are deleted once it is too old to earn (None: kept)"""
    topup: TopupWrite | None = None  # a top-up sold here, or its void
    voucher: VoucherWrite | None = None  # a voucher sold, redeemed or refunded here
    gift: GiftWrite | None = None  # a gift card sold, loaded, paid with, given back onto or blocked here
    request: PosRequest | None = None  # the POS's request id a sale answers: one sale per id


class ClaimJournal(Protocol):
    """What the claim signer needs of the local store: a journal row, and where it noted its key."""

    def record(self, entry: JournalEntry) -> tuple[JournalEntry, int | None]: ...

    def state(self, key: str) -> str | None: ...

    def set_state(self, **values: str | None) -> None: ...


class TillStore(ClaimJournal, Protocol):
    """What ``terminal.service.Service`` needs of the local store: the cache it prices with, and the
    one transaction that records a sale, void, refund or enrolment with all its effects."""

    def latest_entry_at(self) -> str | None:
        """When the till's clock said its newest journal entry was made (None: no entry)."""
        ...

    def payment_code_used(self, code_id: str) -> bool:
        """Whether a sale of this till used the phone code ``code_id``."""
        ...

    def request_answer(self, request_id: str) -> tuple[str, str] | None:
        """The answer (JSON) given to the POS's request ``request_id`` (a ``request_key``: its id is looked up), when
        one was recorded under it (a sale, a return, a top-up or its void, a gift card's or a voucher's request),
        with the digest of the request it came with ('' when none was kept)."""
        ...

    def keep_request(self, request_id: str, txn_id: str, answer: str) -> None:
        """Keep the POS's ``request_id`` with the entry ``txn_id`` recorded under it and the ``answer`` given (inside
        ``together``, with the entry: kept at its COMMIT or not at all); ``request_in_flight`` when it is taken."""
        ...

    def note_asking(self, txn_id: str, at: str) -> None:
        """Note durably that head office is about to be asked to confirm ``txn_id`` (``record`` of the
        transaction's journal row removes the note)."""
        ...

    def withdraw_asked(self, txn_id: str, at: str) -> bool:
        """The spend asked about ``txn_id`` failed: its note becomes a withdrawal (False: no note was left)."""
        ...

    def record(
        self,
        entry: JournalEntry,
        points: tuple[str, int] | None = None,
        sale: dict[str, Any] | None = None,
        voids: str | None = None,
        effects: Effects | None = None,
        enrol: tuple[Member, Card] | None = None,
    ) -> tuple[JournalEntry, int | None]: ...

    def member(self, member_id: str) -> Member | None: ...

    def card(self, uid_hash: str) -> Card | None: ...

    def card_counter(self, uid_hash: str) -> int | None: ...

    def earn_rule(self) -> EarnRule: ...

    def doc_version(self) -> int: ...

    def rule_docs(self) -> dict[str, dict[str, Any]]: ...

    def coupon_docs(self, coupon_ids: Iterable[str], member_id: str | None) -> dict[str, dict[str, Any]]: ...

    def coupon_texts(self, coupon_ids: Iterable[str], member_id: str | None) -> dict[str, str]: ...

    def coupon_uses_many(self, coupon_ids: list[str], member_id: str | None) -> dict[str, tuple[int, int, int]]: ...

    def pool_headroom(self, pool_ids: Iterable[str]) -> dict[str, int]:
        """Units of this till's allocation of each pool not yet redeemed here; a pool it holds no
        allocation of is absent."""
        ...

    def member_ledger(self, member_id: str, now: datetime) -> tuple[list[Lot], int, int | None]: ...

    def stored_value(self, member_id: str) -> int: ...

    def device_cert(self, cert_id_hex: str) -> dict[str, Any] | None: ...

    def payment_keys(self) -> dict[str, bytes]: ...

    def member_keys(self) -> dict[str, bytes]: ...

    def revoked(self, kind: str, subject: str) -> bool: ...

    def voucher_keys(self) -> dict[str, bytes]:
        """Head office's voucher-signing public keys (Ed25519, raw) by key id."""
        ...

    def voucher_state(self, voucher_id: str) -> dict[str, Any] | None:
        """The voucher's state as this till knows it (head office's, or its own sale's); None: unknown."""
        ...

    def voucher_in_stock(self, kind: str, value: int | None, sku: str | None, now: int) -> str | None:
        """The code of an unsold, unexpired voucher of this till's stock of that kind and value (or sku)."""
        ...

    def voucher_use(self, voucher_id: str) -> str | None:
        """How this till used the voucher already ("redeem", "refund"), None when it did not."""
        ...

    def voucher_offline(self) -> tuple[int, int]:
        """(voucher value this till redeemed offline that head office has not acknowledged, the offline
        total head office allows it)."""
        ...

    def offline_paid(self, member_id: str, day: str) -> tuple[int, int]: ...

    def topup_policy(self) -> dict[str, Any] | None:
        """Head office's top-up policy for this till as last pulled (None: none pulled)."""
        ...

    def merchant_id(self) -> str | None:
        """The merchant of this till's store as head office last said (None: not known yet)."""
        ...

    def topup_tally(self, member_id: str, day: str) -> Tally: ...

    def gift_card(self, card_id: str) -> GiftCard | None: ...

    def gift_terms(self) -> dict[str, Any] | None: ...

    def gift_payment(self, txn_id: str) -> tuple[str, str, int] | None: ...

    def gift_payments_of(self, sale_txn: str) -> list[tuple[str, int, int]]: ...

    def vouchers_of(self, sale_txn: str) -> list[tuple[str, int, str]]: ...

    def sale_due(self, sale_txn: str) -> int | None: ...

    def together(self) -> AbstractContextManager[None]:
        """One transaction around several ``record`` calls: all kept at its COMMIT, or none."""
        ...

    def topup(self, txn_id: str) -> Sold | None: ...

    def sale(self, txn_id: str) -> dict[str, Any] | None: ...

    def sale_state(self, txn_id: str) -> dict[str, Any] | None: ...


# -- the seams inside the till ------------------------------------------------------------------------


class Pricing(Protocol):
    def quote(
        self,
        member_id: str | None,
        basket: Basket,
        coupons: Sequence[str] = (),
        redeem: int = 0,
        rewards: Sequence[str] = (),
        proven: bool = False,
    ) -> Quote: ...


class SaleDesk(Pricing, Protocol):
    """What the one sale path needs of the service: a price, and the durable commit."""

    def commit(
        self,
        quote: Quote,
        payment: Payment | None = None,
        tapped: Identified | None = None,
        receipt: ReceiptRef | None = None,
        request_id: str | None = None,
    ) -> Receipt: ...

    def may_spend(self, member_id: str, tapped: Identified | None = None, code: str | None = None) -> bool: ...

    def code_stands(self, member_id: str, code: str) -> bool:
        """Whether the phone code ``code`` is the member's, in its time window and unused at this till."""
        ...


class Till(Pricing, Protocol):
    """What the cashier's session reads from the service (a sale is committed by ``Sales``)."""

    def member(self, member_id: str) -> Member: ...

    def void(self, txn_id: str) -> Receipt: ...

    def topup(self, member_id: str, amount: int) -> Receipt: ...

    def void_topup(self, txn_id: str) -> Receipt: ...

    def redeem_voucher(self, text: str, sale_ref: str = "") -> VoucherReceipt:
        """Use a voucher (its ``TPV1:`` code): what the POS takes off the sale."""
        ...

    def read_member_code(self, version: int, body: str) -> MemberCodeRead: ...

    def offers(
        self, coupon_ids: Sequence[str], member_id: str | None, proven: bool = False
    ) -> tuple[list[Offer], list[tuple[str, str]]]: ...

    def tier_progress(self, member_id: str) -> str | None:
        """The member's tier and what the next one still needs (a receipt's loyalty block)."""
        ...

    def rewards(self) -> Mapping[str, Reward]:
        """The rewards catalogue head office sent (docs/rewards.md)."""
        ...


class GiftDesk(Protocol):
    """What the cashier's session sells, loads and pays with on a tapped gift card (docs/giftcards.md)."""

    def gift_card(self, read: CardRead) -> GiftCard:
        """The gift card of a tap, with its balance as this till knows it (``gift_card_unknown``: none)."""
        ...

    def sell_gift(self, read: CardRead, amount: int, request_id: str | None = None) -> GiftReceipt: ...

    def load_gift(self, read: CardRead, amount: int, request_id: str | None = None) -> GiftReceipt: ...

    def pay_gift(
        self, read: CardRead, amount: int, sale_ref: str = "", request_id: str | None = None
    ) -> GiftReceipt: ...

    def refund_gift(self, txn_id: str, amount: int, request_id: str | None = None) -> GiftReceipt: ...


class Ledger(Pricing, GiftDesk, Protocol):
    """What the local API prices, voids and refunds with (a sale goes through ``PosTill.pos_sale``)."""

    def void(self, txn_id: str, request_id: str | None = None) -> Receipt: ...

    def refund(self, txn_id: str, returned: dict[int, int], request_id: str | None = None) -> Receipt: ...

    def recorded(self, request_id: str, kind: str = "sale") -> Receipt | None:
        """The receipt of the ``kind`` of entry (a sale, a top-up) recorded under the POS's request id
        ``request_id`` (None: none was; ``request_id_used`` when it names another kind)."""
        ...

    def answered(self, request_id: str, kind: str) -> dict[str, Any] | None:
        """The answer given to the POS's request ``request_id`` that recorded a ``kind`` of entry (a gift card sold
        or loaded, a voucher sold), as it was given (None: none was; ``request_id_used`` when another kind)."""
        ...

    def topup(self, member_id: str, amount: int, request_id: str | None = None) -> Receipt:
        """Credit ``amount`` the POS took to the member's stored value (docs/stored-value.md); ``request_id``: the
        POS's id of the request (``recorded`` answers it again)."""
        ...

    def void_topup(self, txn_id: str, request_id: str | None = None) -> Receipt: ...

    def sell_voucher(
        self, value: int | None, sku: str | None, member_id: str | None = None, request_id: str | None = None
    ) -> VoucherReceipt:
        """Sell a voucher of this till's stock (the POS took its value): its code, to print; ``request_id``: the
        POS's id of the request (``answered`` answers it again)."""
        ...

    def redeem_voucher(self, text: str, sale_ref: str = "", request_id: str | None = None) -> VoucherReceipt: ...

    def refund_voucher(self, text: str, request_id: str | None = None) -> VoucherReceipt: ...

    def block_gift(self, read: CardRead, reason: str = "") -> GiftReceipt: ...


class CardDesk(Protocol):
    """What enrolment at the till needs of the service: who a card is, and a new member for one."""

    def identify(self, read: CardRead) -> Identified: ...

    def enrol(self, read: CardRead, display_name: str = "", consent: str | None = None) -> Identified: ...


class Sales(Protocol):
    """The one path that commits a sale (``terminal.checkout.Checkout``), as the session sees it."""

    def sell(self, order: SaleOrder, refused: Callable[[Rejected], object] | None = None) -> Receipt: ...

    def code_stands(self, member_id: str, code: str) -> bool:
        """Whether the member's phone code is still good (its window, unused at this till)."""
        ...

    def may_spend(self, member_id: str, code: str | None = None) -> bool:
        """Whether this sale holds the member's proof for spending points (the last tap, ``code``), or
        needs none."""
        ...


class EnrolArm(Protocol):
    def wants_enrol(self) -> bool:
        """The cashier armed "new member": the next unknown card is enrolled."""
        ...


class Cashier(Protocol):
    """The cashier's session as the local API drives it; each call returns the new snapshot."""

    def snapshot(self) -> dict[str, Any]: ...

    def identify(self, member_id: str, via: str = "typed", proof: str | None = None) -> dict[str, Any]: ...

    def scan(self, text: str) -> dict[str, Any]: ...

    def press(self, action: str) -> dict[str, Any]: ...

    def set_basket(self, lines: Sequence[Line], source: str = "pos") -> dict[str, Any]: ...

    def set_total(self, amount: int) -> dict[str, Any]: ...

    def apply_coupon(self, text: str) -> dict[str, Any]: ...

    def remove_coupon(self, coupon_id: str) -> dict[str, Any]: ...

    def add_reward(self, reward_id: str) -> dict[str, Any]: ...

    def remove_reward(self, reward_id: str) -> dict[str, Any]: ...

    def pay(self, redeem: int | None = None) -> dict[str, Any]: ...

    def confirm(self) -> dict[str, Any]: ...

    def void(self) -> dict[str, Any]: ...

    def cancel(self) -> dict[str, Any]: ...

    def reset(self) -> dict[str, Any]: ...

    def claim_png(self) -> bytes | None: ...


class PosTill(Protocol):
    """The daemon as the local API sees it: its state, its events, the POS's sales, the simulators."""

    api_token: str
    subscribers: list[Callable[[Event], None]]

    def emit(self, event: Event) -> Event: ...

    def status(self) -> dict[str, Any]: ...

    def events_after(self, after: int) -> list[Event]: ...

    def metrics_exposition(self) -> tuple[bytes, str]: ...

    def member_for_sale(self, member_id: str | None, tapped: bool = False) -> str | None: ...

    def gift_tap(self) -> CardRead:
        """The last card tap, for a gift card action (``gift_card_not_tapped`` when none is recent)."""
        ...

    def pos_sale(self, order: SaleOrder) -> Receipt:
        """A sale the POS rang: through the one sale path; a refusal is also an event."""
        ...

    def pos_quote(self, order: SaleOrder) -> Quote:
        """The price the one sale path would give ``order`` now (the last tap and its code count as the
        member's proof, as they would for the sale)."""
        ...

    def tap_sim(self, uid: bytes) -> None: ...

    def scan_sim(self, text: str, timeout: float = 5.0) -> dict[str, Any]: ...

    def panel_config(self) -> dict[str, Any]: ...

    def panel_focus(self, focused: bool) -> None: ...

    def checkin_code(self) -> dict[str, Any]:
        """The till's check-in code for the current 30 s step: code, link, step, renew_in, svg."""
        ...


class StreamParser(Protocol):
    """A receipt parser for one print stream (``terminal.receipts.escpos.ReceiptParser``)."""

    def feed(self, data: bytes) -> list[Captured]: ...

    @property
    def position(self) -> int:
        """Stream offset up to which every byte has been read (a command not all there starts here)."""
        ...

    def gap(self) -> None:
        """Bytes of the stream were lost: the receipt in progress is damaged."""
        ...

    def close(self) -> Captured | None: ...

    @property
    def failures(self) -> int:
        """Receipts the parser failed on (a bug): each was skipped to its boundary and comes out flagged."""
        ...

    @property
    def failure(self) -> str:
        """The last failure's traceback."""
        ...

    @property
    def printed(self) -> int:
        """Text and line feeds read so far (status queries print nothing)."""
        ...

    @property
    def at_boundary(self) -> bool:
        """Whether the stream read so far ends between commands (none waits for its rest)."""
        ...

    def idle(self) -> Captured | None:
        """The POS printed nothing for a while: on a stream that has shown no cut (a printer without a cutter),
        the receipt in progress ends and comes out; None otherwise."""
        ...

    def resume(self, at: int, failed: bytes, failure: str) -> None:
        """Take the stream over at offset ``at`` from a parser that failed: ``failed`` (the bytes it failed on)
        begins a receipt skipped to its boundary, which comes out flagged."""
        ...


class ReceiptDesk(Protocol):
    """What the printer in the middle (``drivers.printer``) hands the receipts it captured to."""

    def parser(self) -> StreamParser:
        """A parser for a new connection, set up for the POS's printer (code pages)."""
        ...

    def captured(self, receipt: Captured) -> bytes | None:
        """A receipt the POS printed: kept, read and attached to the sale; the bytes to print before
        its cut (the loyalty block), or None. Of a receipt that was not cut (a printer without a cutter), the block
        is a slip of its own, fed out to be torn off."""
        ...
