"""The nouns of the till, as frozen dataclasses. Pure: no I/O, no driver, no database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class Status(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    HELD = "held"
    """A member's only: its till-made id is contested at head office (docs/enrolment.md); it earns, its points
    and stored value are not spent (``member_spend_held``) until staff settle it."""


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    display_name: str
    tier: str
    points: int
    status: Status = Status.ACTIVE
    stored_value: int = 0  # minor units in the member's account at the group


@dataclass(frozen=True, slots=True)
class Card:
    uid_hash: str
    member_id: str
    status: Status = Status.ACTIVE
    counter: int | None = None  # the chain-wide SUN read counter high-water mark head office sent


@dataclass(frozen=True, slots=True)
class CardRead:
    """One tap, as a driver reports it. The raw UID never leaves the driver: only its keyed hash."""

    reader: str
    tech: str
    uid_hash: str
    atr: bytes = b""
    ndef: bytes | None = None
    sun: str | None = None  # the NDEF URL carrying an NTAG 424 DNA SUN message, verified by the service
    at: float = 0.0
    lite_s_mac: bool = False  # the driver read a FeliCa Lite-S with a MAC under the card's own key
    chip: str = ""  # what the driver could tell: "ultralight" (NTAG21x too), "mifare_classic_1k", "iso_dep" ...


@dataclass(frozen=True, slots=True)
class QrRead:
    scanner: str
    text: str
    at: float = 0.0


class ReaderProblem(StrEnum):
    """Why a reader reported an error (``ReaderEvent.code``); values never change meaning (docs/readers.md)."""

    CARD_REMOVED = "card_removed"
    """The card left the field before its read was complete: nothing was read, tap it again."""
    CARD_READ_FAILED = "card_read_failed"
    """The card answered, but not as a card the till reads (or its UID could not be hashed): nothing was read."""
    CARD_MUTE = "card_mute"
    """The card on the reader does not answer: present it again."""
    READER_UNAVAILABLE = "reader_unavailable"
    """pcscd is not running or the device failed: the driver reopens it by itself."""


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    """A reader appeared, vanished or failed; shown in status, never a crash."""

    reader: str
    kind: str  # "added" | "removed" | "error"
    detail: str = ""
    at: float = 0.0
    code: str = ""
    """For an error, its ``ReaderProblem``."""


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    unit_price: int
    category: str = ""

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class Basket:
    lines: tuple[Line, ...]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True, slots=True)
class EarnRule:
    """Base earning: ``points`` for every ``per_minor`` minor units spent, rounded down."""

    rule_id: str
    points: int
    per_minor: int


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """One explained line of a quote: which rule or coupon produced how many points."""

    source: str
    points: int
    text: str
    kind: str = "rule"  # "rule" (points from an earning rule) | "coupon" | "discount" | "redeem" | "cap"
    amount: int = 0  # minor units taken off the sale by this line (discounts and points paid)


@dataclass(frozen=True, slots=True)
class Quote:
    """A priced basket. ``total`` is the basket before discounts; ``payable`` what the POS still
    collects after coupon discounts and points paid; every number is explained in ``explain``."""

    member_id: str | None
    basket: Basket
    total: int
    points_earned: int
    explain: tuple[QuoteLine, ...] = ()
    discount: int = 0
    points_redeemed: int = 0
    redeem_value: int = 0
    coupons: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (coupon_id, rejection code) of coupons not used
    line_discounts: tuple[int, ...] = ()
    tier_after: str | None = None
    rewards: tuple[tuple[str, int], ...] = ()
    """(reward id, points) of the catalogue's rewards bought in this sale, each on a line of its own at
    price 0; their points are part of ``points_redeemed`` (docs/rewards.md)."""
    members_own: tuple[str, ...] = ()
    """The coupons used that are the member's own value (a personal coupon worth money off, one bought with
    points): like points spent, they need the member's proof at the commit."""

    @property
    def spends_members_value(self) -> bool:
        """Whether committing this quote takes from the member: points, or a coupon of their own."""
        return self.points_redeemed > 0 or bool(self.members_own)

    @property
    def reward_points(self) -> int:
        return sum(points for _, points in self.rewards)

    @property
    def payable(self) -> int:
        return self.total - self.discount - self.redeem_value


@dataclass(frozen=True, slots=True)
class Discount:
    """One amount taken off a sale by a coupon or a rule, as a receipt prints it."""

    source: str  # the coupon or rule id
    text: str
    amount: int  # minor units


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A sale's receipt lines: what the basket came to, what was taken off and by what, and who pays
    the rest. ``subtotal - sum(discounts) - points_value - stored_value == pos_due``."""

    subtotal: int  # the basket before anything is taken off
    discounts: tuple[Discount, ...]
    points_earned: int
    points_redeemed: int
    points_value: int  # what the points paid
    stored_value: int  # paid from the member's account
    stored_value_balance: int | None  # the account's balance after this sale (None: no member)
    pos_due: int  # what the POS still collects

    @staticmethod
    def of(quote: Quote, stored_value: int, stored_value_balance: int | None) -> Breakdown:
        discounts = tuple(
            Discount(x.source, x.text, x.amount) for x in quote.explain if x.kind == "discount" and x.amount
        )
        return Breakdown(
            quote.total,
            discounts,
            quote.points_earned,
            quote.points_redeemed,
            quote.redeem_value,
            stored_value,
            stored_value_balance,
            quote.payable - stored_value,
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the till approved: returned only after the COMMIT holding the journal row returned.
    ``total`` of a sale is what is paid after discounts and points; ``breakdown`` (sales only) says how."""

    txn_id: str
    seq: int
    kind: str
    member_id: str | None
    total: int
    points_delta: int
    points_balance: int | None
    created_at: str
    breakdown: Breakdown | None = None
    stored_value: int | None = None
    """The member's stored value after a top-up or its void (None for other kinds)."""
    refused: tuple[tuple[str, str], ...] = ()
    """(coupon id, code) of the coupons a sale did not use, as its quote said (a coupon named but refused, the
    member's own waiting for their proof): the sale went through without them."""
    gift_refunds: tuple[GiftReceipt, ...] = ()
    """A void's or a refund's: what went back onto each gift card that paid the sale (not in ``total``, which is
    what goes back at the POS and to the member's account)."""
    voucher_kept: int = 0
    """A void's or a refund's: the part of its money the vouchers that paid the sale had, never paid out (a used
    voucher stays used): not in ``total``, and the POS pays none of it back."""

    @staticmethod
    def of_dict(doc: dict[str, Any]) -> Receipt:
        """The receipt ``dataclasses.asdict`` made ``doc`` of (as kept for a POS's request id)."""
        part = doc.get("breakdown")
        breakdown = (
            Breakdown(**{**part, "discounts": tuple(Discount(**x) for x in part["discounts"])}) if part else None
        )
        return Receipt(
            **{
                **doc,
                "breakdown": breakdown,
                "refused": tuple((str(c), str(w)) for c, w in doc.get("refused", ())),
                "gift_refunds": tuple(GiftReceipt(**g) for g in doc.get("gift_refunds", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class GiftReceipt:
    """A gift card sold, loaded, paid with, given back onto or blocked here (docs/giftcards.md), after its
    COMMIT: ``amount`` is what moved on the card (a payment: less than zero), ``balance`` what it holds now as
    this till knows it (head office's last word and this till's entries it has not acknowledged)."""

    txn_id: str
    seq: int
    kind: str
    card_id: str
    amount: int
    balance: int
    offline: bool
    created_at: str


@dataclass(frozen=True, slots=True)
class VoucherReceipt:
    """A voucher sold, redeemed or refunded here (docs/stored-value.md, "Vouchers"), after its COMMIT.

    ``code`` (the signed ``TPV1:`` text to print as a QR) only for a sale: a voucher's code is what pays.
    A redemption tells the POS what to take off: ``value`` of the sale (an amount voucher), or one unit of
    ``sku`` up to ``value`` (a product voucher)."""

    txn_id: str
    seq: int
    kind: str
    voucher_id: str
    voucher_kind: str
    value: int
    sku: str
    expires_at: int
    offline: bool
    code: str | None = None
    member_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptRef:
    """The POS's own printed receipt a sale was made from (captured by the printer in the middle):
    head office ties the sale to the POS's record by it."""

    digest: str
    """sha256 of what the receipt prints (its print bytes less status requests, hex): one sale per receipt."""
    number: str | None = None
    """The receipt number the POS printed."""
    pos_id: str | None = None
    """Which POS printed it (the printer port's name)."""
    number_scope: Literal["store", "day"] = "store"
    """How long the POS's receipt numbers stay unique: ``store`` (never printed twice in a store) or ``day`` (they
    start again each day): a second receipt of the same ``number`` (that day) is a reprint (``receipt_reprint``)."""
    printed: datetime | None = None
    """When the receipt says it was printed (its sale's time, ``terminal.receipts.age.printed_time``); None: not
    read. Past ``[receipts] max_age_days`` it earns nothing (``receipt_too_old``)."""


@dataclass(frozen=True, slots=True)
class SaleOrder:
    """A sale as an entry point asks for it: the cashier's session (confirm, a payment code), the POS
    (``POST /v1/sales``) and the demo's sale on each tap all build one and hand it to the one path
    that commits sales (``terminal.checkout.Checkout.sell``).

    ``quote``: the price the cashier was shown, committed as it is; without one the sale is priced
    from ``member_id``, ``basket``, ``coupons`` and ``redeem``. ``stored_value``: the member's part paid
    from their account (None: as much as the balance covers after points). ``code``: a one-time code
    from the member's device (a payment code, or the fresh member code their phone showed) that
    authorises spending. ``pay_by_card``: the card of the last tap authorises it. ``receipt``: the POS's
    printed receipt the basket was read from (its digest may serve one sale only)."""

    member_id: str | None
    basket: Basket
    coupons: tuple[str, ...] = ()
    redeem: int = 0
    stored_value: int | None = 0
    code: str | None = None
    pay_by_card: bool = False
    quote: Quote | None = None
    receipt: ReceiptRef | None = None
    rewards: tuple[str, ...] = ()
    """Rewards of the catalogue the member buys with points in this sale (their proof is needed)."""
    request_id: str | None = None
    """The POS's own id of the request: a sale recorded under it is answered again, never recorded twice (a retry
    of a request whose answer was lost: the daemon killed between its COMMIT and its answer, a dropped connection)."""

    @classmethod
    def of_quote(cls, quote: Quote, *, stored_value: int | None = 0, code: str | None = None) -> SaleOrder:
        """The sale of a quote already shown (the cashier's session)."""
        return cls(
            quote.member_id,
            quote.basket,
            quote.coupons,
            quote.points_redeemed - quote.reward_points,
            stored_value=stored_value,
            code=code,
            quote=quote,
            rewards=tuple(reward_id for reward_id, _ in quote.rewards),
        )


@dataclass(frozen=True, slots=True)
class MemberCodeRead:
    """A member code the till verified: who, and the one-time proof a phone's fresh code carries."""

    member_id: str
    proof: str | None = None
    """A payment code (``TPP1:``) the member's device made a moment ago: their proof for spending."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    terminal_id: str
    seq: int
    txn_id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    pushed_at: str | None = None
    merchant_id: str | None = None
    """The merchant of the till's store when the entry was written, as head office last said (None: unknown)."""


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending sequence numbers as inclusive (first, last) runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    found: list[tuple[int, int]] = []
    for seq in seqs:
        if found and seq == found[-1][1] + 1:
            found[-1] = (found[-1][0], seq)
        else:
            found.append((seq, seq))
    return found


ASKING_PREFIX = "asking:"
"""The till's state key of a confirmation it is asking head office for (``asking:<txn_id>``, the time it asked
as value), committed before the question goes out: the transaction's journal row removes it in the same
commit; a failure turns it into a withdrawal, and so does the next start when a killed process left it
(``Store.withdraw_asked``, ``Store.settle_asked``). The sync loop never sends it: the sale may still be
being recorded."""

WITHDRAW_PREFIX = "withdraw:"
"""The till's state key of a confirmation it asked head office for and did not use (``withdraw:<txn_id>``,
the time it gave up as value): kept until head office acknowledges the withdrawal."""


def request_key(request_id: str, body: str) -> str:
    """The POS's ``request_id`` with the digest of the request it came with (its route and body), as the till keeps
    it: the id sent again with another request is refused (``request_id_reused``), never answered with the first
    request's answer. A key without a digest (a request_id alone) is checked by id alone."""
    return f"{request_id}\n{body}" if body else request_id


def request_parts(key: str) -> tuple[str, str]:
    """``(request_id, body digest)`` of a ``request_key`` (the digest empty when it has none)."""
    request_id, _, body = key.partition("\n")
    return request_id, body


def utc_iso(ts: float) -> str:
    """A timestamp as ISO 8601 UTC with milliseconds: ``2026-11-23T09:30:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ReceiptSold:
    """A sale made from a printed receipt: what the loyalty block on that receipt says."""

    receipt: Receipt
    member: Member | None
    claim: str | None
    """An anonymous sale's claim code (text of the QR)."""
    offer: str | None = None
    """The member's next personal offer."""
    tier: str | None = None
    """The member's tier and what the next one still needs."""
