"""The application service: identify -> quote -> commit -> void / refund.

Each state change is one ``Store.record`` call: the balance change, the points lots, the coupon
uses, the tier and the journal row commit together, and a ``Receipt`` (the approval) exists only
after that COMMIT returned. Pricing itself is pure (``terminal.pricing``); this module gathers its
inputs from the cache (rule and coupon documents, the member's lots) and writes its outputs.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeVar

import uuid6

from sync.protocol import (
    CheckinPayload,
    EnrolPayload,
    EntryKind,
    Explained,
    GiftActivatePayload,
    GiftBlockPayload,
    GiftLoadPayload,
    GiftPayload,
    GiftRedeemPayload,
    GiftRefundPayload,
    Proof,
    RefundPayload,
    RewardTaken,
    SaleLine,
    SalePayload,
    SecureTap,
    TillTopupPayload,
    TopupVoidPayload,
    VoidPayload,
    VoucherRedeemPayload,
    VoucherRefundPayload,
    VoucherSalePayload,
)
from terminal import coupons as cp
from terminal import credentials, membercodes, pricing
from terminal import giftcards as gc
from terminal import loyalty as ly
from terminal import payments as pay
from terminal import rewards as rw
from terminal import topups as tp
from terminal import vouchers as vc
from terminal.canonical import base_digest, doc_digest
from terminal.errors import Code, Rejected
from terminal.identity import Identified, Payment
from terminal.model import (
    Basket,
    Breakdown,
    Card,
    CardRead,
    GiftReceipt,
    JournalEntry,
    Line,
    Member,
    MemberCodeRead,
    Quote,
    Receipt,
    ReceiptRef,
    Status,
    VoucherReceipt,
    request_parts,
    utc_iso,
)
from terminal.money import MAX_AMOUNT
from terminal.ports import (
    Clock,
    Effects,
    GiftFigures,
    GiftWrite,
    PosRequest,
    TillStore,
    TopupWrite,
    VoucherWrite,
)
from terminal.receipts import age

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def secure_tap(tapped: Identified) -> SecureTap | None:
    """What the journal says of this tap, when it can prove itself (SUN or Lite-S MAC)."""
    trust = tapped.proof.trust
    if not trust.can_spend:
        return None
    if trust is credentials.Trust.SUN:
        return SecureTap(uid_hash=tapped.uid_hash, trust="sun", counter=tapped.proof.counter, sun=tapped.sun)
    return SecureTap(uid_hash=tapped.uid_hash, trust="mac")


def new_txn_id() -> str:
    return str(uuid6.uuid7())


def _lines_payload(basket: Basket) -> list[dict[str, object]]:
    return [
        {"sku": ln.sku, "category": ln.category, "quantity": ln.quantity, "unit_price": ln.unit_price}
        for ln in basket.lines
    ]


MAX_CLOCK_OFFSET_S = 10 * 366 * 86400
"""The largest offset from head office's clock the till takes as measured (ten years): anything further, or not a
finite number, is a corrupt or hand-edited ``hq_clock_offset``, read as never measured."""


def offset_of(value: object) -> float | None:
    """The stored ``hq_clock_offset`` as seconds, if it is a finite number within ``MAX_CLOCK_OFFSET_S``; else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        offset = float(value)
    except (ValueError, OverflowError):
        return None
    return offset if math.isfinite(offset) and abs(offset) <= MAX_CLOCK_OFFSET_S else None


MAX_UNITS = 10_000  # units of one line, as the journal's lines hold them
MAX_SKU = 64  # characters of a line's SKU and category, as the journal's lines hold them


def check_basket(basket: Basket) -> None:
    """A basket the till may price and journal: anything outside the journal's own limits would be approved
    here and then held by head office as a malformed entry."""
    if not basket.lines:
        raise Rejected(Code.EMPTY_BASKET)
    for line in basket.lines:
        if line.quantity <= 0 or line.unit_price < 0 or not line.sku:
            raise Rejected(Code.INVALID_BASKET, f"Line {line.sku!r}: quantity must be > 0 and price >= 0.")
        if line.quantity > MAX_UNITS or len(line.sku) > MAX_SKU or len(line.category) > MAX_SKU:
            raise Rejected(
                Code.INVALID_BASKET,
                f"Line {line.sku[:MAX_SKU]!r}: at most {MAX_UNITS} units, and SKU and category of at most {MAX_SKU}"
                " characters.",
            )
    if basket.total > MAX_AMOUNT:
        raise Rejected(Code.INVALID_BASKET, f"The basket's total is above {MAX_AMOUNT} minor units.")


class Service:
    def __init__(
        self,
        store: TillStore,
        terminal_id: str,
        clock: Clock = time.time,
        store_id: str = "S-001",
        *,
        sun_master_key: bytes | None = None,
        hash_uid: Callable[[bytes], str] | None = None,
        limits: pay.RiskLimits = pay.RiskLimits(),
        spend_needs_proof: bool = True,
        receipt_max_age_days: float = 0.0,
    ) -> None:
        self.sun_master_key = sun_master_key
        self.receipt_max_age_days = receipt_max_age_days
        """``[receipts] max_age_days``: a receipt printed longer ago earns nothing (``receipt_too_old``); 0: no limit."""
        self.hash_uid = hash_uid
        self.limits = limits
        self.spend_needs_proof = spend_needs_proof
        """Points may be redeemed only with a proof (a device code, a secure card); off only where the
        chain trusts its POS to vouch for the member. Stored value always needs a proof."""
        self.store = store
        self.terminal_id = terminal_id
        self.store_id = store_id
        self.clock = clock
        self.on_commit: list[Callable[[Receipt], None]] = []
        self.confirm_online: Callable[[dict[str, Any]], bool] | None = None
        """Head office's confirmation of a payment-code payment while the till is online (set by the
        daemon): called with {code_id, member_id, amount, txn_id, code}; raises Rejected when head
        office refuses, returns False when it cannot be reached (then the offline rules apply)."""
        self.confirm_gift: Callable[[dict[str, Any]], bool] | None = None
        """Head office's confirmation of a gift card payment (set by the daemon): called with {card_id, amount,
        txn_id, tap}; raises Rejected when head office refuses, returns False when it cannot be reached."""
        self.confirm_voucher: Callable[[dict[str, Any]], bool] | None = None
        """Head office's confirmation of a voucher's one use (set by the daemon): called with {action, txn_id,
        code}; raises Rejected when head office refuses, returns False when it cannot be reached."""
        self.push_now: Callable[[], bool] | None = None
        """Pushes the journal to head office at once (set by the daemon; False when it did not take it): a voucher
        sold online reaches head office before its code is handed over, so a till that never pulled it can have
        its use confirmed a moment later."""
        self._program: tuple[int, ly.Program, dict[str, str]] | None = None
        self._active_rules: tuple[tuple[int, datetime, str], ly.Active] | None = None
        self._used_taps: deque[tuple[str, int | None, float]] = deque(maxlen=1000)  # secure taps a sale used
        self._asked: set[str] = set()  # transactions head office was asked to confirm, not recorded yet
        self._bad_offset: str | None = None  # repr of the unreadable ``hq_clock_offset`` last logged (said once)

    # -- identify --------------------------------------------------------------------------------

    def identify(self, read: CardRead) -> Identified:
        """The member behind a tap, or a rejection: unknown card, blocked card, blocked member."""
        card = self.store.card(read.uid_hash)
        if card is None:
            raise Rejected(Code.UNKNOWN_CARD)
        if card.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_CARD)
        member = self.store.member(card.member_id)
        if member is None:
            raise Rejected(Code.UNKNOWN_MEMBER, "This card's member is not in the till's cache yet.")
        if member.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_MEMBER)
        proof = credentials.CardProof(credentials.Trust.UID_ONLY)
        if self.hash_uid is not None:
            proof = credentials.verify_read(read, self.sun_master_key, self.hash_uid)
        last = self.store.card_counter(read.uid_hash) if proof.counter is not None else None
        if proof.counter is not None and last is not None and proof.counter <= last:
            # A message the chain has seen used: the card is identified, it proves nothing more.
            return Identified(
                member, card, credentials.CardProof(credentials.Trust.UID_ONLY), read.uid_hash, read.at, replayed=True
            )
        return Identified(member, card, proof, read.uid_hash, read.at, read.sun)

    def enrol(self, read: CardRead, display_name: str = "", consent: str | None = None) -> Identified:
        """Make a new member for an unknown card, on the spot and offline too: a member id made by
        this till (time-sortable, unique), the card linked by its keyed hash, an ``enrol`` journal
        entry, all in one transaction. Head office accepts it on sync (and merges duplicates)."""
        if self.store.card(read.uid_hash) is not None:
            raise Rejected(Code.CARD_ALREADY_ENROLLED)
        member_id = f"E-{new_txn_id()}"
        now = self.clock()
        tier = self.program().ladder.levels[0].tier
        payload = EnrolPayload(
            member_id=member_id,
            uid_hash=read.uid_hash,
            display_name=display_name,
            tier=tier,
            store_id=self.store_id,
            consent=consent,
        )
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), "enrol", payload.wire(), utc_iso(now))
        member = Member(member_id, display_name or "New member", tier, 0)
        self.store.record(entry, enrol=(member, Card(read.uid_hash, member_id)))
        return Identified(
            member, Card(read.uid_hash, member_id), credentials.CardProof(credentials.Trust.UID_ONLY), read.uid_hash
        )

    def check_in(self, found: Identified, reader: str) -> JournalEntry:
        """A member tapped the door reader: a ``checkin`` journal entry (a visit, no value), offline too; head
        office counts one visit and grants a check-in campaign's reward once per member, store and day."""
        payload = CheckinPayload(
            member_id=found.member.member_id,
            store_id=self.store_id,
            uid_hash=found.uid_hash or None,
            reader=reader[:200],
        )
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), "checkin", payload.wire(), utc_iso(self.clock()))
        stored, _ = self.store.record(entry)
        return stored

    def member(self, member_id: str) -> Member:
        member = self.store.member(member_id)
        if member is None:
            raise Rejected(Code.UNKNOWN_MEMBER)
        if member.status is Status.BLOCKED:
            raise Rejected(Code.BLOCKED_MEMBER)
        return member

    # -- rules and coupons from the cache ----------------------------------------------------------

    def now(self) -> datetime:
        """The store's local wall-clock time (the till PC's time zone): what rules and coupons see."""
        return datetime.fromtimestamp(self.clock())

    def _receipt_printed(self, receipt: ReceiptRef | None) -> datetime | None:
        """When ``receipt`` says it was printed (its wall clock in the store's time zone), None when it does not say;
        ``receipt_too_old`` when that is more than ``receipt_max_age_days`` ago."""
        if receipt is None or receipt.printed is None:
            return None
        policy = self.store.topup_policy() if receipt.printed.tzinfo is None else None
        printed = age.in_zone(receipt.printed, _store_zone(policy))
        back = self.clock_back() if self.receipt_max_age_days > 0 else 0
        if pay.clock_went_back(back, self.limits):  # an old receipt would look young, its rows maybe pruned
            raise Rejected(
                Code.TILL_CLOCK_WRONG,
                f"This till's clock reads {back / 60:.0f} min earlier than a time it already recorded: set the time "
                "on this PC, then print the receipt again.",
            )
        if age.too_old(printed, datetime.fromtimestamp(self.hq_now(), UTC), self.receipt_max_age_days):
            raise Rejected(
                Code.RECEIPT_TOO_OLD,
                f"The receipt was printed {printed.isoformat()}, more than {self.receipt_max_age_days:g} days ago.",
            )
        return printed

    def program(self) -> ly.Program:
        """The parsed rule documents, parsed again only when head office changed them."""
        version = self.store.doc_version()
        if self._program is None or self._program[0] != version:
            docs = {}
            for rule_id, doc in self.store.rule_docs().items():
                try:
                    ly.parse_program({rule_id: doc})
                    docs[rule_id] = doc
                except (ly.DocumentError, KeyError, TypeError) as exc:
                    log.warning("rule document %s ignored: %s", rule_id, exc)
            base = self.store.earn_rule()
            versions = {
                "base": base_digest(base.rule_id, base.points, base.per_minor),
                **{f"rule:{k}": doc_digest(v) for k, v in docs.items()},
            }
            self._program = (version, ly.parse_program(docs, base), versions)
        return self._program[1]

    def _priced_with(self, coupon_texts: dict[str, str]) -> dict[str, str]:
        """The versions of the documents a sale is priced with: the base rule, every rule document in the
        program, the coupons used (head office prices the sale again with exactly these)."""
        self.program()
        assert self._program is not None
        return {**self._program[2], **{f"coupon:{k}": doc_digest(json.loads(v)) for k, v in coupon_texts.items()}}

    def _active(self, ctx: ly.SaleContext) -> ly.Active:
        """The active rules, computed once a minute per store (rules change by the minute at most)."""
        program = self.program()
        key = (id(program), ctx.at.replace(second=0, microsecond=0), ctx.store_id)
        if self._active_rules is None or self._active_rules[0] != key:
            self._active_rules = (key, ly.active_rules(program, ctx))
        return self._active_rules[1]

    def offers(
        self, coupon_ids: Sequence[str], member_id: str | None, proven: bool = False
    ) -> tuple[list[cp.Offer], list[tuple[str, str]]]:
        """The coupons presented plus the member's personal ones, with the uses this till knows, and the
        coupons left out with their code. A personal coupon worth money off is the member's value, like their
        points (``rewards.members_value``): the commit asks for the member's proof for one (``_authorise``),
        and one not presented applies only when the sale already holds that proof (``proven``); otherwise it
        is left out as ``proof_needed``, so a number typed at the till does not spend the member's offers. A
        personal points coupon pays into the member's account: it applies as earning does. A coupon bought
        with points (``rewards.BOUGHT``) applies only when presented: knowing the member, or a coupon id a
        till could derive, is not enough to spend their points in that form."""
        proven = proven or not self.spend_needs_proof  # a chain that trusts its POS takes its word for points too
        texts = self.store.coupon_texts(coupon_ids, member_id)
        presented = set(coupon_ids)
        texts = {c: t for c, t in texts.items() if c in presented or not c.startswith(rw.BOUGHT)}
        unknown = [(cid, Code.UNKNOWN_COUPON.value) for cid in sorted(set(coupon_ids)) if cid not in texts]
        parsed: list[tuple[cp.Coupon, int, int]] = []
        for coupon_id, text in sorted(texts.items()):
            try:
                found = _parse_coupon(coupon_id, text)
            except (ly.DocumentError, TypeError, ValueError) as exc:
                log.warning("coupon document %s ignored: %s", coupon_id, exc)
                unknown.append((coupon_id, Code.UNKNOWN_COUPON.value))
                continue
            if rw.members_value(found[0]) and coupon_id not in presented and not proven:
                unknown.append((coupon_id, Code.PROOF_NEEDED.value))
                continue
            parsed.append(found)
        uses = self.store.coupon_uses_many([coupon.coupon_id for coupon, _, _ in parsed], member_id)
        pools = {coupon.pool for coupon, _, _ in parsed if coupon.pool is not None}
        headroom = self.store.pool_headroom(pools) if pools else {}
        offers: list[cp.Offer] = []
        for coupon, known, known_mine in parsed:
            local, mine, chain = uses.get(coupon.coupon_id, (0, 0, 0))
            room = headroom.get(coupon.pool) if coupon.pool is not None else None
            used = max(known, chain) + local
            # A personal coupon's every use is its member's: what other tills used of it counts too.
            by_member = max(known_mine + mine, used) if coupon.member_id is not None else known_mine + mine
            offers.append(cp.Offer(coupon, used, by_member, room))
        return offers, unknown

    @staticmethod
    def _coupon_pools(texts: dict[str, str]) -> tuple[tuple[str, str], ...]:
        """The pooled coupons among those a sale uses, with their pool, for the check at commit."""
        pooled = []
        for coupon_id, text in sorted(texts.items()):
            pool = _parse_coupon(coupon_id, text)[0].pool
            if pool is not None:
                pooled.append((coupon_id, pool))
        return tuple(pooled)

    def _coupon_limits(self, texts: dict[str, str]) -> tuple[tuple[str, int, int, int, int, bool], ...]:
        """Each coupon's limits, the uses its document states and whether it is one member's, for the check
        at commit."""
        limits = []
        for coupon_id, text in sorted(texts.items()):
            coupon, stated, stated_mine = _parse_coupon(coupon_id, text)
            personal = coupon.member_id is not None
            limits.append((coupon_id, coupon.limit_global, coupon.limit_per_member, stated, stated_mine, personal))
        return tuple(limits)

    def tier_progress(self, member_id: str) -> str | None:
        """The member's tier and what the next one still needs, as a receipt prints it."""
        member = self.store.member(member_id)
        if member is None:
            return None
        _, window, _ = self.store.member_ledger(member_id, self.now())
        ladder = self.program().ladder
        found = ly.next_tier(member.tier, window, ladder)
        if found is None:
            return f"Tier: {member.tier}"
        tier, needed = found
        unit = "points" if ladder.measure == "earned" else "to spend"
        return f"Tier: {member.tier}, {needed} {unit} to {tier}"

    def _pricing_member(self, member: Member, now: datetime) -> pricing.Member:
        _, window, spendable = self.store.member_ledger(member.member_id, now)
        return pricing.Member(member.member_id, member.tier, max(0, spendable or 0), window)

    # -- quote, commit -------------------------------------------------------------------------------

    def quote(
        self,
        member_id: str | None,
        basket: Basket,
        coupons: Sequence[str] = (),
        redeem: int = 0,
        rewards: Sequence[str] = (),
        proven: bool = False,
    ) -> Quote:
        """Price a basket: the best usable coupons, points paid (``pricing.REDEEM_MAX`` for all that
        may be), points earned, each explained; coupons that cannot apply say why. ``rewards``: rewards of
        the catalogue bought with points, each on a line of its own at price 0 (docs/rewards.md).
        ``proven``: the sale holds the member's proof (``may_spend``), so their personal coupons apply
        without being presented (``offers``)."""
        taken = self._rewards(rewards, member_id)
        if taken:
            basket = Basket(basket.lines + tuple(Line(r.line_sku, 1, 0, "reward") for r in taken))
        check_basket(basket)
        member = self.member(member_id) if member_id else None
        now = self.now()
        ctx = ly.SaleContext(
            now,
            self.store_id,
            member.member_id if member else None,
            member.tier if member else None,
            self.store.merchant_id(),
        )
        offers, unknown = self.offers(coupons, member.member_id if member else None, proven)
        who = self._pricing_member(member, now) if member else None
        cost = sum(r.points for r in taken)
        if who is not None and cost:
            if who.balance < cost:
                raise Rejected(Code.INSUFFICIENT_POINTS, f"The rewards cost {cost} points; {who.balance} can be spent.")
            who = replace(who, balance=who.balance - cost)  # what is left may pay money
        quote = pricing.price(self.program(), basket, ctx, who, offers, redeem, self._active(ctx))
        own = {o.coupon.coupon_id for o in offers if rw.members_value(o.coupon)}
        if own & set(quote.coupons):
            quote = replace(quote, members_own=tuple(c for c in quote.coupons if c in own))
        if taken:
            quote = replace(
                quote,
                points_redeemed=quote.points_redeemed + cost,
                rewards=tuple((r.reward_id, r.points) for r in taken),
            )
        if unknown:
            quote = _with_refused(quote, unknown)
        return quote

    def rewards(self) -> dict[str, rw.Reward]:
        """The rewards catalogue head office sent (the rule documents ``reward:<id>``)."""
        return rw.catalogue(self.store.rule_docs())

    def _rewards(self, reward_ids: Sequence[str], member_id: str | None) -> tuple[rw.Reward, ...]:
        """The rewards a sale buys: offered now, for a member, within this till's allocation of each stock."""
        if not reward_ids:
            return ()
        if member_id is None:
            raise Rejected(Code.NO_MEMBER, "A reward is bought with a member's points.")
        if len(set(reward_ids)) != len(reward_ids):
            raise Rejected(Code.INVALID_BASKET, "One unit of each reward per sale.")
        catalogue = self.rewards()
        taken = tuple(catalogue.get(r) for r in reward_ids)
        found = tuple(r for r in taken if r is not None and r.active)
        if len(found) != len(taken):
            raise Rejected(Code.REWARD_UNKNOWN)
        pools = [r.pool_id for r in found if r.pool_id is not None]
        headroom = self.store.pool_headroom(pools) if pools else {}
        if any(headroom.get(p, 0) < 1 for p in pools):
            raise Rejected(Code.REWARD_ALLOCATION_USED)
        return found

    def _reward_pools(self, quote: Quote) -> tuple[tuple[str, str], ...]:
        """(unit, pool) of the rewards with a limited stock a sale buys: each takes a unit of this till's
        allocation, checked again inside the transaction like a pooled coupon's."""
        if not quote.rewards:
            return ()
        catalogue = self.rewards()
        pooled = [(r, catalogue[r].pool_id) for r, _ in quote.rewards if r in catalogue]
        return tuple((rw.PREFIX + reward_id, pool) for reward_id, pool in pooled if pool is not None)

    def commit(
        self,
        quote: Quote,
        payment: Payment | None = None,
        tapped: Identified | None = None,
        receipt: ReceiptRef | None = None,
        request_id: str | None = None,
    ) -> Receipt:
        """Record the sale; returns only after its journal row (and every effect) is durable.

        Points, coupon uses, stored value and one-time codes are checked again inside the
        transaction: a quote made stale by a sale at the same moment is refused, never approved
        twice. ``payment``: the member's stored-value part and what authorises it. ``tapped``: the
        card tap that identified the member, if any: its hash goes in the journal for head office's
        card checks; a secure card's tap authorises spending in this sale and its read counter is
        stored with it (and journalled, so head office sees it used chain-wide). ``receipt``: the POS's
        printed receipt the basket was read from; a second sale of the same receipt is refused
        (``receipt_already_used``) inside the transaction. ``request_id``: the POS's id of the request, kept with
        the sale and its receipt in the same transaction (``recorded`` answers it again)."""
        txn_id = new_txn_id()
        return self._withdrawn_unless_recorded(
            txn_id, lambda: self._commit(txn_id, quote, payment, tapped, receipt, request_id)
        )

    def recorded(self, request_id: str, kind: str = EntryKind.SALE.value) -> Receipt | None:
        done = self.answered(request_id, kind)
        return Receipt.of_dict(done) if done is not None else None

    def answered(self, request_id: str, kind: str) -> dict[str, Any] | None:
        """The answer kept with the POS's ``request_id`` (a sale, a top-up, a gift card sold or loaded, a voucher
        sold: one space of ids), when it recorded a ``kind`` of entry; ``request_id_used`` when another kind,
        ``request_id_reused`` when ``request_id`` (a ``request_key``) came with another request than the kept one."""
        kept = self.store.request_answer(request_id)
        if kept is None:
            return None
        done: dict[str, Any] = json.loads(kept[0])
        pos_id, body = request_parts(request_id)
        if done.get("kind") != kind:
            raise Rejected(
                Code.REQUEST_ID_USED,
                f"request_id {pos_id!r} already names a {done.get('kind')} ({done.get('txn_id')}).",
            )
        if body and kept[1] and body != kept[1]:
            raise Rejected(
                Code.REQUEST_ID_REUSED,
                f"request_id {pos_id!r} already names a {done.get('kind')} ({done.get('txn_id')}) asked with another "
                "body: a request sent again is sent as it was; a new request takes an id of its own.",
            )
        return done

    def _commit(
        self,
        txn_id: str,
        quote: Quote,
        payment: Payment | None,
        tapped: Identified | None,
        receipt: ReceiptRef | None,
        request_id: str | None = None,
    ) -> Receipt:
        now = self.now()
        printed = self._receipt_printed(receipt)
        if tapped is not None and tapped.member.member_id != quote.member_id:
            tapped = None
        # A secure card's tap serves one sale: once its read counter is used, the same tap only
        # identifies (a second sale, or paying again, needs the card on the reader again).
        tapped = self._fresh(tapped)
        if payment is not None and payment.card is not None:
            payment = replace(payment, card=self._fresh(payment.card))
        paid = self._authorise(quote, payment, tapped, now, txn_id)
        created = utc_iso(self.clock())
        program = self.program()
        delta = quote.points_earned - quote.points_redeemed
        spent: list[tuple[str, int]] = []
        # Use limits are checked again inside the transaction (a stale quote cannot use a coupon twice).
        used = self.store.coupon_texts(quote.coupons, None)
        limits = self._coupon_limits(used)
        pooled = self._coupon_pools(used) + self._reward_pools(quote)
        member = self.store.member(quote.member_id) if quote.member_id is not None else None
        if quote.member_id is not None:
            spent = self._spend_plan(quote.member_id, quote.points_redeemed, now)
            grew = quote.points_earned if program.ladder.measure == "earned" else quote.payable
            fx = Effects(
                member_id=quote.member_id,
                spend_points=quote.points_redeemed,
                spend_lots=tuple((lot, n) for lot, n in spent if lot != HQ_LOT),
                new_lot=ly.new_lot(txn_id, quote.points_earned, now, program.lots),
                coupon_uses=tuple((c, 1) for c in quote.coupons) + tuple((rw.PREFIX + r, 1) for r, _ in quote.rewards),
                coupon_limits=limits,
                coupon_pools=pooled,
                window_delta=grew,
                tier=quote.tier_after if member is not None and quote.tier_after != member.tier else None,
                now=now,
            )
        else:
            fx = Effects(
                coupon_uses=tuple((c, 1) for c in quote.coupons), coupon_limits=limits, coupon_pools=pooled, now=now
            )
        state = _sale_state(quote, now, self.store_id, member, spent)
        state["stored_value"] = paid.tender.stored_value
        sun = (paid.tap.uid_hash, paid.tap.counter) if paid.tap is not None and paid.tap.counter is not None else None
        fx = replace(
            fx,
            sale_state=state,
            stored_value=paid.tender.stored_value,
            payment_code=paid.code_id,
            offline=paid.offline,
            sun_counter=sun,
            sun_confirmed=paid.card_confirmed,
            receipt_digest=receipt.digest if receipt is not None else None,
            receipt_number=_receipt_number(
                self.store_id,
                receipt,
                now,
                self.store.topup_policy() if receipt is not None and receipt.number_scope == "day" else None,
            ),
            receipt_printed=utc_iso(printed.timestamp()) if printed is not None else None,
        )
        payload = self._sale_payload(quote, paid, state, tapped, spent, now, self._priced_with(used))
        if receipt is not None:
            numbered = receipt.number is not None and bool(receipt.number.strip())
            payload = payload.model_copy(
                update={
                    "receipt_digest": receipt.digest,
                    "receipt_number": receipt.number,
                    "pos_id": receipt.pos_id,
                    # head office compares the number with the store's other tills' (docs/receipts.md)
                    "receipt_scope": receipt.number_scope if numbered else None,
                }
            )
        entry = JournalEntry(self.terminal_id, 0, txn_id, "sale", payload.wire(), created)
        points = (quote.member_id, delta) if quote.member_id else None
        sale = {"member_id": quote.member_id, "total": quote.total, "points_delta": delta}

        def answer(stored: JournalEntry, balance: int | None) -> Receipt:
            account = self.store.stored_value(quote.member_id) if quote.member_id is not None else None
            breakdown = Breakdown.of(quote, paid.tender.stored_value, account)
            return _receipt(stored, quote.payable, delta, balance, breakdown, quote.refused)

        if request_id is not None:  # the answer is kept in the sale's own transaction: it is there if the sale is
            kept = PosRequest(request_id, lambda stored, balance: json.dumps(asdict(answer(stored, balance))))
            fx = replace(fx, request=kept)
        stored, balance = self.store.record(entry, points=points, sale=sale, effects=fx)
        for tap in (tapped, payment.card if payment is not None else None):
            if tap is not None and tap.proof.trust.can_spend:
                self._used_taps.append((tap.uid_hash, tap.proof.counter, tap.at))
        return self._told(answer(stored, balance))

    def _sale_payload(
        self,
        quote: Quote,
        paid: _Paid,
        state: dict[str, Any],
        tapped: Identified | None,
        spent: list[tuple[str, int]],
        now: datetime,
        priced_with: dict[str, str],
    ) -> SalePayload:
        return SalePayload(
            member_id=quote.member_id,
            store_id=self.store_id,
            total=quote.total,
            discount=quote.discount,
            payable=quote.payable,
            points_earned=quote.points_earned,
            points_redeemed=quote.points_redeemed,
            points_delta=quote.points_earned - quote.points_redeemed,
            coupons=list(quote.coupons),
            lines=[
                SaleLine(sku=x.sku, category=x.category, quantity=x.quantity, unit_price=x.unit_price)
                for x in quote.basket.lines
            ],
            line_discounts=list(quote.line_discounts),
            explain=[Explained(source=x.source, kind=x.kind, points=x.points, amount=x.amount) for x in quote.explain],
            tier=state["tier"],
            tier_after=quote.tier_after,
            lots_spent=spent,
            local_time=now.isoformat(timespec="seconds"),
            uid_hash=tapped.uid_hash if tapped is not None else None,
            stored_value=paid.tender.stored_value,
            stored_value_delta=-paid.tender.stored_value,
            pos_due=paid.tender.rest,
            code_id=paid.code_id,
            paid_by=paid.method,
            offline=paid.offline,
            tap=paid.tap,
            payment_code=paid.code_text,
            proof=paid.proof,
            priced_with=priced_with,
            rewards=[RewardTaken(reward_id=r, points=p) for r, p in quote.rewards],
            reward_points=quote.reward_points,
        )

    def _fresh(self, tap: Identified | None) -> Identified | None:
        """``tap`` as it may be used now: a secure read (a SUN counter, or a Lite-S MAC read: one physical
        tap) that already served a sale proves nothing more than a UID."""
        if (
            tap is None
            or not tap.proof.trust.can_spend
            or (tap.uid_hash, tap.proof.counter, tap.at) not in self._used_taps
        ):
            return tap
        return replace(tap, proof=credentials.CardProof(credentials.Trust.UID_ONLY))

    def _authorise(
        self, quote: Quote, payment: Payment | None, tapped: Identified | None, now: datetime, txn_id: str = ""
    ) -> _Paid:
        """Check what authorises the member's spending (points or stored value); the single-use parts
        (a code, a card's read counter) are recorded by the commit. Knowing the member is not enough:
        spending needs a proof unless ``spend_needs_proof`` is off (then points only, on the POS's word)."""
        payment = payment or Payment()
        wants_value = payment.stored_value is None or payment.stored_value > 0
        spends = wants_value or quote.spends_members_value
        card = payment.card if payment.card is not None else tapped
        if not spends:
            return self._taking_nothing(quote, payment, card)
        if quote.member_id is None:
            raise Rejected(Code.NO_MEMBER, "Paying from a member's account needs the member.")
        held = self.store.member(quote.member_id)
        if held is not None and held.status is Status.HELD:  # its id is contested: it earns, it does not spend
            raise Rejected(Code.MEMBER_SPEND_HELD)
        proof = self._proof(quote, payment, card, wants_value)
        balance = self.store.stored_value(quote.member_id)
        tender = pay.split(quote.payable, 0, 0, balance, payment.stored_value)
        offline = self.offline_state(quote.member_id, now)
        confirm = self.confirm_online if proof.proof is not Proof.POS and offline.offline_for_s is None else None
        confirmed = confirm is not None and self._ask(
            confirm, self._confirmation(quote.member_id, tender.stored_value, txn_id, proof)
        )
        if confirm is not None and not confirmed:
            offline = self.offline_state(quote.member_id, now, unreachable=True)
        refusal = pay.offline_refusal(tender.stored_value, offline, self.limits, proof.cap)
        if refusal is not None:
            raise Rejected(refusal)
        card_confirmed = confirmed and proof.proof is Proof.CARD  # head office checked the card's read counter
        return replace(proof, tender=tender, offline=offline.offline_for_s is not None, card_confirmed=card_confirmed)

    def _taking_nothing(self, quote: Quote, payment: Payment, card: Identified | None) -> _Paid:
        """A sale that takes nothing of the member's. A code from the member's phone that came with it (the
        code that identified them) is checked and used up all the same, so it cannot stand for them in the next
        customer's sale; nothing is asked of head office (no amount to hold)."""
        paid = _Paid(pay.split(quote.payable, 0, 0, 0, 0), tap=secure_tap(card) if card is not None else None)
        if payment.code is None:
            return paid
        if quote.member_id is None:
            raise Rejected(Code.NO_MEMBER, "A member's code needs the member.")
        code_id, _ = self._check_code(payment.code, quote.member_id)
        return replace(paid, code_id=code_id, proof=Proof.PAYMENT_CODE, code_text=payment.code)

    def _proof(self, quote: Quote, payment: Payment, card: Identified | None, wants_value: bool) -> _Paid:
        """What authorises this spend: a device's one-time code, a secure card of the member, or (points
        only, where the chain trusts its POS) nothing."""
        assert quote.member_id is not None
        empty = pay.split(0, 0, 0, 0, 0)
        if payment.code is not None:
            code_id, cap = self._check_code(payment.code, quote.member_id)
            return _Paid(
                empty,
                code_id,
                method="payment_code",
                proof=Proof.PAYMENT_CODE,
                code_text=payment.code,
                cap=cap,
                tap=secure_tap(card) if card is not None else None,
            )
        if card is not None and card.proof.trust.can_spend:
            if card.member.member_id != quote.member_id:
                raise Rejected(Code.CARD_CANNOT_PAY, "This card belongs to another member.")
            return _Paid(empty, method=f"card_{card.proof.trust.label}", proof=Proof.CARD, tap=secure_tap(card))
        if payment.card is not None and payment.card.replayed:
            raise Rejected(Code.REPLAYED_CARD)
        if payment.card is not None:
            credentials.require_spend(payment.card.proof)  # a card asked to pay that cannot: refused
        if wants_value or self.spend_needs_proof:
            if card is not None and card.replayed:
                raise Rejected(Code.REPLAYED_CARD)
            raise Rejected(Code.PROOF_NEEDED)
        return _Paid(empty, method="points", proof=Proof.POS)

    def _ask(self, confirm: Callable[[dict[str, Any]], bool], request: dict[str, Any]) -> bool:
        """Ask head office to confirm a spend. The question is noted durably first (``Store.note_asking``), so
        that a process killed before the sale is recorded leaves a note for the next start to withdraw; the
        sale's journal row removes it (``Store.record``)."""
        txn_id = str(request["txn_id"])
        self.store.note_asking(txn_id, utc_iso(self.clock()))
        self._asked.add(txn_id)
        return confirm(request)

    def _withdrawn_unless_recorded(self, txn_id: str, record: Callable[[], _T]) -> _T:
        """Run ``record`` (a spend that may ask head office to confirm ``txn_id``). When it fails after head office
        was asked (the offline rules refused after the answer was lost, a stale quote, a full disk), head office
        may hold the amount for a sale that never comes: the question's note becomes a withdrawal, which the sync
        loop sends (``SyncClient.withdraw_once``) until head office acknowledges it. When even that cannot be
        written, the note stays and the daemon's next start withdraws it (``Store.settle_asked``)."""
        try:
            return record()
        except BaseException:
            if txn_id in self._asked:
                self._withdraw_asked(txn_id)
            raise
        finally:
            self._asked.discard(txn_id)

    def _withdraw_asked(self, txn_id: str) -> None:
        try:
            self.store.withdraw_asked(txn_id, utc_iso(self.clock()))
        except Rejected as exc:  # the spend's own refusal is what the caller hears
            log.error("could not note the withdrawal of %s (withdrawn at the next start): %s", txn_id, exc)

    @staticmethod
    def _confirmation(member_id: str, amount: int, txn_id: str, proof: _Paid) -> dict[str, Any]:
        asked: dict[str, Any] = {"member_id": member_id, "amount": amount, "txn_id": txn_id}
        if proof.proof is Proof.PAYMENT_CODE:
            return {**asked, "code_id": proof.code_id, "code": proof.code_text}
        assert proof.tap is not None
        return {**asked, "card": proof.tap.wire()}

    def read_member_code(self, version: int, body: str) -> MemberCodeRead:
        """A scanned member code (``TPM<version>:<body>``), verified offline: one head office signed
        identifies the member; one the member's phone made a moment ago identifies them and is their
        proof for spending. Unsigned (version 1) and forged codes are refused."""
        if version != 2:
            raise Rejected(Code.MEMBER_CODE_UNSIGNED)
        code = membercodes.parse(body)
        if isinstance(code, membercodes.DeviceCode):
            cert, _ = self._device_code(code.payment_code)
            return MemberCodeRead(cert.member_id, code.payment_code)
        key = self.store.member_keys().get(code.key_id)
        if isinstance(code, membercodes.TimedCode):
            return MemberCodeRead(self._timed_member(code, key))
        return MemberCodeRead(membercodes.verify_issued(code, key))

    def _timed_member(self, code: membercodes.TimedCode, key: bytes | None) -> str:
        """The member of a wallet's timed code, checked on this till's clock (a wrong clock is named)."""

        def check(now: int) -> None:
            membercodes.verify_timed(code, key, now)

        self._check_time(check, (Code.MEMBER_CODE_EXPIRED,))
        return code.member_id

    def may_spend(self, member_id: str, tapped: Identified | None = None, code: str | None = None) -> bool:
        """Whether this sale holds the member's proof for spending points (or needs none): a fresh secure tap
        of their card, or a code of their phone still in its time and not used at this till; never while head
        office holds the member's spending (its id contested: ``Status.HELD``)."""
        held = self.store.member(member_id)
        if held is not None and held.status is Status.HELD:
            return False
        if not self.spend_needs_proof:
            return True
        if code is not None:
            return self.code_stands(member_id, code)
        fresh = self._fresh(tapped)
        return fresh is not None and fresh.member.member_id == member_id and fresh.proof.trust.can_spend

    def code_stands(self, member_id: str, code: str) -> bool:
        """Whether the phone code ``code`` is the member's, in its time window and unused at this till."""
        try:
            code_id, _ = self._check_code(code, member_id)
        except Rejected:
            return False
        return not self.store.payment_code_used(code_id)

    def _device_code(self, text: str) -> tuple[pay.DeviceCert, pay.PaymentCode]:
        """A device's one-time code checked offline: its certificate (head office's, current, not
        revoked) and its signature and time window."""
        code = pay.parse_code(text)
        doc = self.store.device_cert(code.cert_id.hex())
        if doc is None:
            raise Rejected(Code.DEVICE_CERT_UNKNOWN)
        cert = pay.cert_from_doc(doc)
        revoked = self.store.revoked("device", cert.cert_id.hex())

        def check(now: int) -> None:
            pay.check_cert(cert, self.store.payment_keys(), now, revoked)
            pay.verify_code(code, cert, now)

        self._check_time(check, (Code.DEVICE_CERT_EXPIRED, Code.PAYMENT_CODE_EXPIRED))
        return cert, code

    def _check_time(self, check: Callable[[int], None], expired: tuple[Code, ...]) -> None:
        """Run a check that depends on the time on this till's clock; a refusal in ``expired`` is blamed on
        the clock when the clock is known to be wrong (``_blame_clock``)."""
        try:
            check(int(self.clock()))
        except Rejected as exc:
            if exc.code in expired:
                self._blame_clock(exc, check)
            raise

    def clock_offset(self) -> float | None:
        """This till's clock minus head office's, as the last sync found it (None: never measured). A stored value
        that is no finite number within ``MAX_CLOCK_OFFSET_S`` (NaN, infinite, text, a corrupt row) is read as
        never measured, and logged once: the till ages receipts and checks times by its own clock meanwhile."""
        value: object = self.store.state("hq_clock_offset")
        if value is None or value == "":
            return None
        offset = offset_of(value)
        if offset is None and repr(value) != self._bad_offset:
            self._bad_offset = repr(value)
            log.warning(
                "hq_clock_offset %.40r is not a clock offset (a finite number of seconds within %d days): read as "
                "never measured until the next sync measures it",
                value,
                MAX_CLOCK_OFFSET_S // 86400,
            )
        return offset

    def hq_now(self) -> float:
        """Now by head office's clock as far as this till knows it: its own clock less the offset the last sync
        measured (its own clock when never measured)."""
        return self.clock() - (self.clock_offset() or 0.0)

    def rows_now(self) -> float:
        """The time the receipts' rows are pruned at (``terminal.receiptrows``): the earlier of this till's clock and
        head office's as last measured, so a row goes only when both find its receipt too old. A till clock set
        ahead is corrected by the offset; an offset that says head office is ahead (its answer's ``Date`` wrong or
        forged, or measured before this till's clock was put right) deletes no younger row than the till's own."""
        return min(self.clock(), self.hq_now())

    def _blame_clock(self, refused: Rejected, check: Callable[[int], None]) -> None:
        """A time check failed: when this till's clock is known to be off and the check passes at head
        office's time, the real cause is the clock (``till_clock_wrong``), not the member's code. A clock
        gone back behind a time this till recorded is wrong however the check would fare."""
        back = self.clock_back()
        if pay.clock_went_back(back, self.limits):
            raise Rejected(
                Code.TILL_CLOCK_WRONG,
                f"This till's clock reads {back / 60:.0f} min earlier than its last contact with head "
                "office: set the time on this PC, then scan again.",
            ) from refused
        offset = self.clock_offset()
        if not pay.clock_wrong(offset, self.limits) or offset is None:
            return
        try:
            check(int(self.clock() - offset))
        except Rejected:
            return
        ahead = "ahead of" if offset > 0 else "behind"
        raise Rejected(
            Code.TILL_CLOCK_WRONG,
            f"This till's clock is {abs(offset) / 60:.0f} min {ahead} head "
            "office's: set the time on this PC, then scan again.",
        ) from refused

    def _check_code(self, text: str, member_id: str) -> tuple[str, int]:
        """Verify a payment code offline; its single-use id and the device's offline cap."""
        cert, code = self._device_code(text)
        if cert.member_id != member_id:
            raise Rejected(Code.PAYMENT_CODE_FORGED, "This payment code belongs to another member.")
        return code.code_id, cert.offline_cap

    def offline_state(self, member_id: str, now: datetime, unreachable: bool = False) -> pay.OfflineState:
        """How long head office has been unreachable and what was paid offline since (``unreachable``:
        head office just failed to answer, though the last sync was fine)."""
        offline_since = self.store.state("offline_since")
        last_ok = self.store.state("last_sync_ok")
        at = self.clock()
        offline_for = int(at - _epoch(offline_since)) if offline_since else (None if last_ok and not unreachable else 0)
        if offline_for is None:
            return pay.OfflineState(None, None, 0, 0)
        clock_age = int(at - _epoch(last_ok)) if last_ok else None
        member_today, terminal_total = self.store.offline_paid(member_id, now.date().isoformat())
        back = clock_back(self.store, at)  # a clock gone back makes both ages meaningless: refused on its own
        offset = self.clock_offset()
        return pay.OfflineState(max(0, offline_for), clock_age, member_today, terminal_total, offset, back)

    def clock_back(self) -> int:
        """How far this till's clock reads before the last time it recorded itself (``terminal.payments.
        clock_back``): its last successful sync, or the start of the outage."""
        return clock_back(self.store, self.clock())

    def _spend_plan(self, member_id: str, points: int, now: datetime) -> list[tuple[str, int]]:
        """Which lots pay ``points``: this till's lots that expire first, then head office's balance."""
        if points <= 0:
            return []
        lots, _, spendable = self.store.member_ledger(member_id, now)
        local = ly.lot_state(lots, now).available
        hq = max(0, (spendable or 0) - local)
        pool = [*lots, ly.Lot(HQ_LOT, hq, hq, datetime.min, None)]
        try:
            return ly.consume(pool, points, now)
        except ValueError as exc:
            raise Rejected(Code.INSUFFICIENT_POINTS) from exc

    # -- void and refund ------------------------------------------------------------------------------

    def void(self, txn_id: str, request_id: str | None = None) -> Receipt:
        """Reverse a sale of this till: whatever is left of it is returned (see ``refund``); refused
        (``reward_not_returnable``) while it holds a reward the member keeps (``terminal.rewards.not_returnable``).

        Whichever door it comes through (the cashier's panel, the POS's API, ``tillpoint void``), the gift cards
        that paid the sale get back their part of it in the void's own transaction, as in every return of the sale
        (``_reverse``); the POS pays back only the rest, within what it collected (``pos_refund``, the receipt's
        ``total`` with the account's part), and the receipt lists the cards' refunds. A voucher that paid part of
        the sale stays used: its part is never paid out (the receipt's ``voucher_kept``). ``request_id``: the POS's id
        of the request, kept with the void's receipt in its transaction: sent again, the same receipt (another id on
        the voided sale is ``already_voided``)."""
        if request_id is not None:
            done = self.recorded(request_id, EntryKind.VOID.value)
            if done is not None:
                return done
        with self.store.together():
            voided = self._reverse(txn_id, None, "void")
            if request_id is not None:
                self.store.keep_request(request_id, voided.txn_id, json.dumps(asdict(voided)))
        return self._told(voided)

    def refund(self, txn_id: str, returned: dict[int, int], request_id: str | None = None) -> Receipt:
        """Return ``returned`` units (line index -> units) of a sale: money and redeemed points go
        back, earned points are clawed back (the balance may go negative: the debt is carried and
        settled by later earning), coupon uses come back when the coupon no longer applies. An ``item`` reward's
        line gives back its points and unit; the line of a reward the member keeps (a coupon or a partner's code)
        is never returned (``reward_not_returnable``), the other lines are. The money goes back as a void's does:
        the account's part, then the gift cards' (in the refund's own transaction), then the POS's within what it
        collected; the vouchers' part last, never paid out. ``request_id``: the POS's id of the request, kept with
        the refund's receipt (the cards' refunds in it) in its transaction: sent again, the same receipt, nothing
        refunded twice."""
        if request_id is not None:
            done = self.recorded(request_id, EntryKind.REFUND.value)
            if done is not None:
                return done
        if not returned or not any(returned.values()):
            raise Rejected(Code.INVALID_REFUND, "Say which units are returned.")
        with self.store.together():
            refunded = self._reverse(txn_id, returned, "refund")
            if request_id is not None:
                self.store.keep_request(request_id, refunded.txn_id, json.dumps(asdict(refunded)))
        return self._told(refunded)

    def _reverse(self, txn_id: str, returned: dict[int, int] | None, kind: str) -> Receipt:
        """The return recorded (its listeners not told yet; inside the caller's ``together``). Its money goes back
        to the member's account first, then to the gift cards that paid the sale (their payments name it,
        ``sale_ref``: ``gc.sale_return``, each within what the sale's returns did not count for it yet, the
        counts kept in the sale's state, ``gift_counted``), each card's refund recorded in the same transaction,
        and the POS pays back the rest, within what it collected for the sale (its due less the cards' and the
        vouchers' payments) less what the sale's returns had it pay back already (kept in the sale's state,
        ``pos_refunded``, ``gc.pos_return``); what is beyond is the vouchers' part, kept (``voucher_kept``)."""
        sale = self.store.sale(txn_id)
        if sale is None:
            raise Rejected(Code.UNKNOWN_TRANSACTION)
        if sale["voided_by"]:
            raise Rejected(Code.ALREADY_VOIDED)
        raw = self.store.sale_state(txn_id)
        if raw is None:
            raise Rejected(Code.NOT_A_SALE)
        state = _state_from(raw)
        if not any(line.quantity for line in state.basket.lines):
            raise Rejected(Code.NOTHING_TO_REFUND)
        everything = {i: line.quantity for i, line in enumerate(state.basket.lines) if line.quantity}
        member_id = sale["member_id"]
        at = datetime.fromisoformat(raw["at"])
        ctx = ly.SaleContext(at, raw["store_id"], member_id, raw.get("tier"), self.store.merchant_id())
        used = [cp.parse_coupon(cid, doc) for cid, doc in self.store.coupon_docs(state.coupons, None).items()]
        result = pricing.refund(self.program(), state, returned or everything, ctx, used)
        kept, rewards_back = _rewards_back(raw, state, returned or everything)
        keeps = rw.not_returnable((reward_id for reward_id, _ in rewards_back), self.rewards())
        if keeps:  # the member keeps them: their points and unit never come back at a till
            what = "refund the other lines" if kind == "refund" else "refund the sale's other lines instead"
            raise Rejected(
                Code.REWARD_NOT_RETURNABLE,
                f"The member keeps {', '.join(keeps)} (a coupon or a partner's code): {what}; only head office"
                " can give its points back.",
            )
        restored = result.points_restored + sum(points for _, points in rewards_back)
        delta = restored - result.points_clawed
        spent = [(str(lot), int(n)) for lot, n in raw.get("lots_spent", [])]
        restore, left = _give_back(spent, restored)
        sv_left = int(raw.get("stored_value", 0))
        sv_back = min(result.money_back, sv_left)  # money goes back to the account first
        # Then the gift cards that paid the sale, each its part not counted by the sale's earlier returns (less what
        # was given back onto it already: the POS's own refunds of the card count), and the POS pays back the rest.
        counted = {str(k): int(v) for k, v in raw.get("gift_counted", {}).items()}
        payments = self.store.gift_payments_of(txn_id)
        cards = gc.sale_return(payments, counted, result.money_back - sv_back)
        gift_back = cards.cards
        # Then the POS, within what it collected itself: the vouchers that paid the sale stay used, their part is
        # never paid back in money.
        lines = [(str(x["sku"]), int(x["unit_price"])) for x in raw["lines"]]
        vouchers = sum(vc.takes_off(kind, value, sku, lines) for kind, value, sku in self.store.vouchers_of(txn_id))
        rest, paid_back = result.money_back - sv_back - gift_back, _int(raw.get("pos_refunded"))
        due = self.store.sale_due(txn_id)
        by_cards = sum(paid for _, paid, _ in payments)
        collected = paid_back + rest if due is None else gc.pos_collected(due, by_cards, vouchers)
        pos = gc.pos_return(rest, collected, paid_back)
        new_raw = {
            **raw,
            **_state_dict(result.after),
            "lots_spent": left,
            "stored_value": sv_left - sv_back,
            "rewards": kept,
            **({"gift_counted": cards.counted} if cards.counted else {}),
            **({"pos_refunded": pos.paid_back} if pos.paid_back else {}),
        }
        program = self.program()
        shrink = result.points_clawed if program.ladder.measure == "earned" else result.money_back
        fx = Effects(
            member_id=member_id,
            restore_lots=tuple((lot, n) for lot, n in restore if lot != HQ_LOT),
            claw_lot=(txn_id, result.points_clawed) if result.points_clawed else None,
            coupon_uses=tuple((c, -1) for c in result.coupons_restored)
            + tuple((rw.PREFIX + reward_id, -1) for reward_id, _ in rewards_back),
            window_delta=-shrink,
            sale_state=new_raw,
            state_of=txn_id,
            state_was=raw,
            now=self.now(),
            stored_value=-sv_back,
        )
        fields: dict[str, Any] = {
            "member_id": member_id,
            "store_id": self.store_id,
            "original_txn": txn_id,
            "returned": [{"line": i, "quantity": q} for i, q in sorted((returned or everything).items()) if q],
            "total": -result.money_back,
            "money_back": result.money_back,
            "points_clawed": result.points_clawed,
            "points_restored": restored,
            "points_delta": delta,
            "coupons_restored": list(result.coupons_restored),
            "stored_value_delta": sv_back,
            "gift_cards": gift_back,
            "voucher_kept": pos.voucher_kept,
            "pos_refund": pos.pos_refund,
        }
        payload = (VoidPayload(**fields, voided_txn_id=txn_id) if kind == "void" else RefundPayload(**fields)).wire()
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), kind, payload, utc_iso(self.clock()))
        stored, balance = self.store.record(
            entry,
            points=(member_id, delta) if member_id else None,
            voids=txn_id if kind == "void" else None,
            effects=fx,
        )
        gifts = tuple(self.refund_gift(payment, amount) for payment, amount in cards.onto_cards)
        back = _receipt(stored, -(sv_back + pos.pos_refund), delta, balance)
        return replace(back, gift_refunds=gifts, voucher_kept=pos.voucher_kept)

    # -- top-ups ------------------------------------------------------------------------------------

    def topup(self, member_id: str, amount: int, request_id: str | None = None) -> Receipt:
        """Sell ``amount`` of stored value to the member: the POS took the money. Head office's policy for
        this till decides, within its limits, and offline within the offline rules (``terminal.topups``);
        the limits are checked inside the transaction that credits the balance and journals the entry.
        ``request_id``: the POS's id of the request, kept with the top-up and its receipt (``recorded``)."""
        if not 0 < amount <= MAX_AMOUNT:
            raise Rejected(Code.TOPUP_BAD_AMOUNT)
        member = self.member(member_id)
        now = self.now()
        doc = self.store.topup_policy()
        policy, day = tp.policy_from_doc(doc), self._business_day(doc)
        offline = self.offline_state(member.member_id, now)

        def refusal(tally: tp.Tally) -> Code | None:
            return tp.refusal(amount, policy, tally, offline, self.limits)

        taken_offline = offline.offline_for_s is not None
        payload = TillTopupPayload(
            member_id=member.member_id,
            store_id=self.store_id,
            amount=amount,
            stored_value_delta=amount,
            local_time=now.isoformat(timespec="seconds"),
            offline=taken_offline,
        )
        write = TopupWrite(member.member_id, amount, day, taken_offline, refusal=refusal)
        return self._record_topup(EntryKind.TILL_TOPUP, payload.wire(), write, now, amount, request_id)

    def void_topup(self, txn_id: str, request_id: str | None = None) -> Receipt:
        """Void a top-up of this till: the whole amount, on the business day it was sold, while the member's
        balance here still holds it (checked inside the transaction); the POS pays the money back. ``request_id``:
        the POS's id of the request, kept with the void and its receipt: sent again, the same receipt."""
        if request_id is not None:
            done = self.recorded(request_id, EntryKind.TOPUP_VOID.value)
            if done is not None:
                return done
        sold = self.store.topup(txn_id)
        if sold is None:
            raise Rejected(Code.NOT_A_TOPUP)
        now = self.now()
        payload = TopupVoidPayload(
            member_id=sold.member_id,
            store_id=self.store_id,
            original_txn=txn_id,
            amount=sold.amount,
            stored_value_delta=-sold.amount,
            local_time=now.isoformat(timespec="seconds"),
        )
        write = TopupWrite(sold.member_id, -sold.amount, self._business_day(self.store.topup_policy()), voids=txn_id)
        return self._record_topup(EntryKind.TOPUP_VOID, payload.wire(), write, now, -sold.amount, request_id)

    def _business_day(self, doc: dict[str, Any] | None) -> str:
        """Today's business day as head office files this till's entries (its store's calendar)."""
        return tp.business_day(datetime.fromtimestamp(self.clock(), UTC), doc)

    def _record_topup(
        self,
        kind: EntryKind,
        payload: dict[str, Any],
        write: TopupWrite,
        now: datetime,
        total: int,
        request_id: str | None = None,
    ) -> Receipt:
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), kind.value, payload, utc_iso(self.clock()))

        def answer(stored: JournalEntry) -> Receipt:
            account = self.store.stored_value(write.member_id)
            return Receipt(
                stored.txn_id,
                stored.seq,
                stored.kind,
                write.member_id,
                total,
                0,
                None,
                stored.created_at,
                None,
                account,
            )

        fx = self._answering(Effects(member_id=write.member_id, now=now, topup=write), request_id, answer)
        stored, _ = self.store.record(entry, effects=fx)
        return self._told(answer(stored))

    # -- vouchers ----------------------------------------------------------------------------------

    def sell_voucher(
        self, value: int | None, sku: str | None, member_id: str | None = None, request_id: str | None = None
    ) -> VoucherReceipt:
        """Sell a voucher of this till's stock (docs/stored-value.md, "Vouchers"): an amount voucher of
        ``value``, or a product voucher of ``sku``; the POS took its value. Offline too: the stock is head
        office's, signed, and each code is sold once. ``member_id``: the member whose wallet shows it.
        ``request_id``: the POS's id of the request, kept with the sale and its answer (``answered``)."""
        if (value is None) == (sku is None):
            raise Rejected(Code.VOUCHER_BAD_REQUEST)
        if member_id is not None:
            member_id = self.member(member_id).member_id
        kind = vc.Kind.AMOUNT if sku is None else vc.Kind.PRODUCT
        text = self.store.voucher_in_stock(kind.value, value, sku, int(self.clock()))
        if text is None:
            raise Rejected(Code.VOUCHER_OUT_OF_STOCK)
        voucher = vc.read(text, self.store.voucher_keys())
        now = self.now()
        offline = self.offline_state("", now).offline_for_s is not None
        payload = VoucherSalePayload(
            **self._voucher_fields(voucher, text, now, offline), amount=voucher.value, member_id=member_id
        )
        state = {**voucher.to_doc(), "state": vc.State.ACTIVE.value, "store_id": self.store_id}
        write = VoucherWrite("sell", voucher.voucher_id, voucher.value, json.dumps(state), offline)
        sold = self._record_voucher(
            EntryKind.VOUCHER_SALE, payload.wire(), write, voucher, code=text, member=member_id, request_id=request_id
        )
        if not sold.offline and self.push_now is not None:
            self.push_now()  # the sale stands whatever head office says: not taken now, the sync loop pushes it
        return sold

    def redeem_voucher(self, text: str, sale_ref: str = "", request_id: str | None = None) -> VoucherReceipt:
        """Use a voucher: head office's signature and expiry checked here, its one use confirmed by head
        office first while it answers; offline only a voucher this till holds as sold, within its offline
        total. What the POS takes off: ``value`` of the sale, or one unit of ``sku`` up to ``value``.
        ``request_id``: the POS's id of the request, kept with the answer (``answered``)."""
        voucher = vc.read(text, self.store.voucher_keys(), int(self.clock()))
        state = self._voucher_known(voucher)
        txn_id, now = new_txn_id(), self.now()
        request = {"action": "redeem", "txn_id": txn_id, "code": text.strip()}
        confirmed = self._voucher_online(request, now, ask_anyway=state is None)
        offline = not confirmed
        pending_total = self.store.voucher_offline()[1]

        def refusal(pending: int) -> Code | None:
            if confirmed:
                return None
            return vc.offline_refusal(
                voucher.value, state, pending, pending_total, self.offline_state("", now, unreachable=True), self.limits
            )

        payload = VoucherRedeemPayload(
            **self._voucher_fields(voucher, text.strip(), now, offline), sale_ref=sale_ref, confirmed=confirmed
        )
        doc = json.dumps({**voucher.to_doc(), "state": vc.State.REDEEMED.value})
        write = VoucherWrite("redeem", voucher.voucher_id, voucher.value, doc, offline, refusal)
        return self._record_voucher(
            EntryKind.VOUCHER_REDEEM, payload.wire(), write, voucher, txn_id=txn_id, request_id=request_id
        )

    def refund_voucher(self, text: str, request_id: str | None = None) -> VoucherReceipt:
        """Refund an unused voucher at the store that sold it (the POS pays its value back): only while head
        office answers, which records the refund as the voucher's one use; every till then refuses it.
        ``request_id``: as ``redeem_voucher``."""
        voucher = vc.read(text, self.store.voucher_keys())
        self._voucher_known(voucher)
        held = self.store.voucher_state(voucher.voucher_id) or {}
        if held.get("store_id") not in (None, self.store_id):
            raise Rejected(Code.VOUCHER_OTHER_STORE)
        txn_id, now = new_txn_id(), self.now()
        if not self._voucher_online({"action": "refund", "txn_id": txn_id, "code": text.strip()}, now):
            raise Rejected(Code.VOUCHER_REFUND_OFFLINE)
        payload = VoucherRefundPayload(**self._voucher_fields(voucher, text.strip(), now, False), amount=voucher.value)
        doc = json.dumps({**voucher.to_doc(), "state": vc.State.REFUNDED.value, "store_id": self.store_id})
        write = VoucherWrite("refund", voucher.voucher_id, voucher.value, doc)
        return self._record_voucher(
            EntryKind.VOUCHER_REFUND, payload.wire(), write, voucher, txn_id=txn_id, request_id=request_id
        )

    def _voucher_known(self, voucher: vc.Voucher) -> vc.State | None:
        """The voucher's state as this till knows it; refused when that already says it was used."""
        state = vc.state_of(self.store.voucher_state(voucher.voucher_id))
        if self.store.revoked("voucher", voucher.voucher_id):
            state = vc.State.REFUNDED
        use = self.store.voucher_use(voucher.voucher_id)
        if use == "refund":  # refunded here: whatever a pull in flight brought meanwhile, it is refunded
            state = vc.State.REFUNDED
        code = vc.held_refusal(state, use is not None)
        if code is not None:
            raise Rejected(code)
        return state

    def _voucher_online(self, request: dict[str, Any], now: datetime, ask_anyway: bool = False) -> bool:
        """Whether head office confirmed the use (Rejected when it refused); False when this till is offline
        or head office did not answer. ``ask_anyway``: a voucher this till has not seen sold, which its offline
        rules refuse, is asked of head office even while the till counts itself offline (its sync loop backing
        off may not have seen head office come back): one bounded question instead of a sure refusal."""
        if self.confirm_voucher is None:
            return False
        if self.offline_state("", now).offline_for_s is not None and not ask_anyway:
            return False
        return self.confirm_voucher(request)

    def _voucher_fields(self, voucher: vc.Voucher, text: str, now: datetime, offline: bool) -> dict[str, Any]:
        return {
            "voucher_id": voucher.voucher_id,
            "code": text,
            "kind": voucher.kind.value,
            "value": voucher.value,
            "sku": voucher.sku,
            "store_id": self.store_id,
            "local_time": now.isoformat(timespec="seconds"),
            "offline": offline,
        }

    def _record_voucher(
        self,
        kind: EntryKind,
        payload: dict[str, Any],
        write: VoucherWrite,
        voucher: vc.Voucher,
        *,
        txn_id: str | None = None,
        code: str | None = None,
        member: str | None = None,
        request_id: str | None = None,
    ) -> VoucherReceipt:
        entry = JournalEntry(self.terminal_id, 0, txn_id or new_txn_id(), kind.value, payload, utc_iso(self.clock()))

        def answer(stored: JournalEntry) -> VoucherReceipt:
            return VoucherReceipt(
                stored.txn_id,
                stored.seq,
                stored.kind,
                voucher.voucher_id,
                voucher.kind.value,
                voucher.value,
                voucher.sku,
                voucher.expires_at,
                write.offline,
                code,
                member,
            )

        stored, _ = self.store.record(
            entry, effects=self._answering(Effects(now=self.now(), voucher=write), request_id, answer)
        )
        return answer(stored)

    @staticmethod
    def _answering(
        fx: Effects, request_id: str | None, answer: Callable[[JournalEntry], Receipt | VoucherReceipt | GiftReceipt]
    ) -> Effects:
        """``fx`` keeping the POS's ``request_id`` with the answer, in the entry's own transaction (as a sale's,
        ``_commit``): a retry is answered with it, nothing recorded twice."""
        if request_id is None:
            return fx
        return replace(fx, request=PosRequest(request_id, lambda stored, _: json.dumps(asdict(answer(stored)))))

    # -- gift cards (docs/giftcards.md) ------------------------------------------------------------------

    def gift_card(self, read: CardRead) -> gc.GiftCard:
        """The gift card of a tap, with the balance this till knows (head office's, and its own entries head
        office has not acknowledged). Refused: ``gift_card_unknown``."""
        card = self.store.gift_card(gc.card_id(read.uid_hash))
        if card is None or card.uid_hash != read.uid_hash:
            raise Rejected(Code.GIFT_CARD_UNKNOWN)
        return card

    def sell_gift(self, read: CardRead, amount: int, request_id: str | None = None) -> GiftReceipt:
        """Sell the tapped card as a gift card with ``amount`` on it (the POS took it): a secure card of no
        member, within this till's stored-value policy (``terminal.topups``, the card in the member's place),
        offline within the offline rules and the policy's offline total. ``request_id``: the POS's id of the
        request, kept with the entry and its answer (``answered``)."""
        _amount(amount)
        proof = self._gift_proof(read)
        member_card = self.store.card(read.uid_hash) is not None
        doc, now = self.store.topup_policy(), self.now()
        day, offline = self._business_day(doc), self.offline_state("", now)
        terms = gc.terms_from_doc(self.store.gift_terms())

        def refusal(f: GiftFigures) -> Code | None:
            return (
                gc.amount_refusal(amount)
                or gc.activate_refusal(f.card, secure=proof.trust.can_spend, member_card=member_card)
                or tp.refusal(amount, tp.policy_from_doc(doc), f.sold, offline, self.limits)
            )

        write = GiftWrite(
            "activate",
            gc.card_id(read.uid_hash),
            read.uid_hash,
            amount,
            day,
            offline.offline_for_s is not None,
            proof.counter,
            expires_on=gc.expires_on(day, terms),
            refusal=refusal,
        )
        sun = proof.trust is credentials.Trust.SUN
        fields: dict[str, Any] = {"amount": amount, "trust": "sun" if sun else "mac"}
        if sun and proof.counter is not None:
            fields["counter"] = proof.counter  # head office takes no earlier read of the card from now on
            if read.sun:
                fields["sun"] = read.sun  # what lets head office check that counter
        return self._record_gift(EntryKind.GIFT_ACTIVATE, read.uid_hash, write, now, fields, request_id=request_id)

    def load_gift(self, read: CardRead, amount: int, request_id: str | None = None) -> GiftReceipt:
        """Load ``amount`` (the POS took it) onto an active gift card, within the till's stored-value policy
        (``request_id``: as ``sell_gift``)."""
        _amount(amount)
        doc, now = self.store.topup_policy(), self.now()
        day, offline = self._business_day(doc), self.offline_state("", now)

        def refusal(f: GiftFigures) -> Code | None:
            return (
                gc.amount_refusal(amount)
                or gc.usable_refusal(f.card, day)
                or tp.refusal(amount, tp.policy_from_doc(doc), f.sold, offline, self.limits)
            )

        card = self.gift_card(read)
        write = GiftWrite(
            "load", card.card_id, card.uid_hash, amount, day, offline.offline_for_s is not None, refusal=refusal
        )
        return self._record_gift(
            EntryKind.GIFT_LOAD, read.uid_hash, write, now, {"amount": amount}, request_id=request_id
        )

    def pay_gift(self, read: CardRead, amount: int, sale_ref: str = "", request_id: str | None = None) -> GiftReceipt:
        """Let the tapped gift card pay ``amount`` of the sale ``sale_ref`` the POS rings (several cards may pay
        one sale). The tap must prove itself and serve once; head office confirms first while it answers (the
        card's balance less what other tills were confirmed); offline, the balance this till knows within the
        offline rules of account payments, and never a dormant card. ``request_id``: as ``sell_gift``."""
        _amount(amount)
        card = self.gift_card(read)
        proof = self._gift_proof(read)
        credentials.require_spend(proof)
        tap = self._gift_tap(read, proof)
        txn_id = new_txn_id()
        receipt = self._withdrawn_unless_recorded(
            txn_id, lambda: self._pay_gift(read, card, proof, tap, amount, sale_ref, txn_id, request_id)
        )
        self._used_taps.append((read.uid_hash, proof.counter, read.at))
        return receipt

    def _pay_gift(
        self,
        read: CardRead,
        card: gc.GiftCard,
        proof: credentials.CardProof,
        tap: SecureTap,
        amount: int,
        sale_ref: str,
        txn_id: str,
        request_id: str | None = None,
    ) -> GiftReceipt:
        now = self.now()
        day = self._business_day(self.store.topup_policy())
        code = gc.redeem_refusal(card, amount, 0, day)
        if code is not None:
            raise Rejected(code)
        confirmed = self._gift_online(
            {"card_id": card.card_id, "amount": amount, "txn_id": txn_id, "tap": tap.wire()}, now
        )
        offline = self.offline_state("", now, unreachable=not confirmed)
        terms = gc.terms_from_doc(self.store.gift_terms())

        def refusal(f: GiftFigures) -> Code | None:
            # Head office confirming checked the read counter against its own, used it for this payment and made it
            # the card's counter, which the pull may have brought down since: this till checks head office's counter
            # only offline, and its own uses of the card always.
            chain = f.card.counter if f.card is not None and not confirmed else None
            if gc.replayed(proof.counter, f.counter, chain):
                return Code.REPLAYED_CARD
            refused = gc.redeem_refusal(f.card, amount, 0, day)
            if refused is not None or confirmed or f.card is None:
                return refused
            return gc.offline_refusal(f.card, amount, f.offline, offline, self.limits, terms, day)

        write = GiftWrite(
            "redeem", card.card_id, card.uid_hash, -amount, day, not confirmed, proof.counter, refusal=refusal
        )
        fields = {"amount": amount, "tap": tap.wire(), "sale_ref": sale_ref, "confirmed": confirmed}
        return self._record_gift(
            EntryKind.GIFT_REDEEM, read.uid_hash, write, now, fields, txn_id=txn_id, request_id=request_id
        )

    def refund_gift(self, txn_id: str, amount: int, request_id: str | None = None) -> GiftReceipt:
        """Give back onto the card what it paid in ``txn_id`` (a gift card payment of this till), or part of
        it, less what earlier refunds gave back: the POS refunded the sale it paid. ``request_id``: as
        ``sell_gift``."""
        _amount(amount)
        paid = self.store.gift_payment(txn_id)
        if paid is None:
            raise Rejected(Code.GIFT_REFUND_INVALID)
        card_id, uid_hash, _ = paid
        now = self.now()
        day = self._business_day(self.store.topup_policy())

        def refusal(f: GiftFigures) -> Code | None:
            return gc.refund_refusal(f.paid, f.refunded, amount)

        write = GiftWrite("refund", card_id, uid_hash, amount, day, original_txn=txn_id, refusal=refusal)
        return self._record_gift(
            EntryKind.GIFT_REFUND,
            uid_hash,
            write,
            now,
            {"amount": amount, "original_txn": txn_id},
            request_id=request_id,
        )

    def block_gift(self, read: CardRead, reason: str = "") -> GiftReceipt:
        """Block the tapped gift card (reported lost or stolen): every till refuses it once it pulls; head
        office alone unblocks it."""
        card = self.gift_card(read)
        if card.state is gc.State.BLOCKED:
            raise Rejected(Code.GIFT_CARD_BLOCKED)
        now = self.now()
        write = GiftWrite("block", card.card_id, card.uid_hash, 0, self._business_day(self.store.topup_policy()))
        return self._record_gift(EntryKind.GIFT_BLOCK, read.uid_hash, write, now, {"reason": reason[:200]})

    def _gift_proof(self, read: CardRead) -> credentials.CardProof:
        """What the tap proves (a SUN message that does not verify is ``forged_card``)."""
        if self.hash_uid is None:
            return credentials.CardProof(credentials.Trust.UID_ONLY)
        return credentials.verify_read(read, self.sun_master_key, self.hash_uid)

    def _gift_tap(self, read: CardRead, proof: credentials.CardProof) -> SecureTap:
        """The tap as the journal carries it; a Lite-S read that already paid proves nothing more."""
        if proof.trust is credentials.Trust.SUN:
            return SecureTap(uid_hash=read.uid_hash, trust="sun", counter=proof.counter, sun=read.sun)
        if (read.uid_hash, None, read.at) in self._used_taps:
            raise Rejected(Code.REPLAYED_CARD)
        return SecureTap(uid_hash=read.uid_hash, trust="mac")

    def _gift_online(self, request: dict[str, Any], now: datetime) -> bool:
        """Whether head office confirmed the payment (Rejected when it refused); False when this till is
        offline or head office did not answer."""
        if self.confirm_gift is None or self.offline_state("", now).offline_for_s is not None:
            return False
        return self._ask(self.confirm_gift, request)

    def _record_gift(
        self,
        kind: EntryKind,
        uid_hash: str,
        write: GiftWrite,
        now: datetime,
        fields: dict[str, Any],
        *,
        txn_id: str | None = None,
        request_id: str | None = None,
    ) -> GiftReceipt:
        payload = _GIFT_PAYLOADS[kind](
            card_id=write.card_id,
            uid_hash=uid_hash,
            store_id=self.store_id,
            local_time=now.isoformat(timespec="seconds"),
            offline=write.offline,
            **fields,
        )
        entry = JournalEntry(
            self.terminal_id, 0, txn_id or new_txn_id(), kind.value, payload.wire(), utc_iso(self.clock())
        )

        def answer(stored: JournalEntry) -> GiftReceipt:
            card = self.store.gift_card(write.card_id)  # inside the entry's transaction too: its balance after it
            return GiftReceipt(
                stored.txn_id,
                stored.seq,
                stored.kind,
                write.card_id,
                write.amount,
                card.balance if card is not None else 0,
                write.offline,
                stored.created_at,
            )

        stored, _ = self.store.record(entry, effects=self._answering(Effects(now=now, gift=write), request_id, answer))
        return answer(stored)

    def _told(self, receipt: Receipt) -> Receipt:
        """``receipt``, once the listeners were told of it."""
        for listener in self.on_commit:
            listener(receipt)
        return receipt


@dataclass(frozen=True, slots=True)
class _Paid:
    tender: pay.Tender
    code_id: str | None = None
    offline: bool = False
    method: str = "pos"
    proof: Proof | None = None
    code_text: str | None = None
    cap: int | None = None  # the paying device's own offline cap
    tap: SecureTap | None = None  # the secure tap journalled with the sale (its counter stored with it)
    card_confirmed: bool = False  # head office confirmed the spend on this tap: it checked and used the read counter


def _receipt(
    entry: JournalEntry,
    total: int,
    delta: int,
    balance: int | None,
    breakdown: Breakdown | None = None,
    refused: tuple[tuple[str, str], ...] = (),
) -> Receipt:
    member_id = entry.payload.get("member_id")
    return Receipt(
        entry.txn_id,
        entry.seq,
        entry.kind,
        member_id,
        total,
        delta,
        balance,
        entry.created_at,
        breakdown,
        None,
        refused,
    )


def clock_back(store: TillStore, now: float) -> int:
    """How far ``now`` reads before the times this till's clock recorded in ``store``: its last successful
    sync, the start of the current outage and its newest journal entry (what ``tillpoint status`` shows as
    ``clock_back_s``)."""
    seen = [store.state(key) for key in ("last_sync_ok", "offline_since")] + [store.latest_entry_at()]
    return pay.clock_back(now, *(_epoch(text) for text in seen if text))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _amount(amount: int) -> None:
    code = gc.amount_refusal(amount)
    if code is not None:
        raise Rejected(code)


_GIFT_PAYLOADS: dict[EntryKind, type[GiftPayload]] = {
    EntryKind.GIFT_ACTIVATE: GiftActivatePayload,
    EntryKind.GIFT_LOAD: GiftLoadPayload,
    EntryKind.GIFT_REDEEM: GiftRedeemPayload,
    EntryKind.GIFT_REFUND: GiftRefundPayload,
    EntryKind.GIFT_BLOCK: GiftBlockPayload,
}

HQ_LOT = "hq"
"""The pseudo-lot of points head office holds for the member (its own lots are its business)."""


@functools.lru_cache(maxsize=65536)
def _parse_coupon(coupon_id: str, text: str) -> tuple[cp.Coupon, int, int]:
    """A stored coupon document: the coupon, and the uses head office counted (in all, by its member)."""
    doc = json.loads(text)
    return cp.parse_coupon(coupon_id, doc), _int(doc.get("used")), _int(doc.get("used_by_member"))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _with_refused(quote: Quote, extra: list[tuple[str, str]]) -> Quote:
    return replace(quote, refused=tuple(sorted([*quote.refused, *extra])))


def _store_zone(policy: dict[str, Any] | None) -> tzinfo:
    """The store's time zone (the calendar head office's policy carries); without one, the till's own."""
    return tp.policy_zone(policy) or datetime.now().astimezone().tzinfo or UTC


def _receipt_number(
    store_id: str, receipt: ReceiptRef | None, now: datetime, policy: dict[str, Any] | None
) -> tuple[str, str] | None:
    """What keys a receipt's number: the store's (numbers that start again each day: that day's) number. The day is
    the date in the store's time zone (the calendar head office's policy carries), as head office keys it
    (``hq.receipts.number_key``); without one, the till's own local date."""
    if receipt is None or receipt.number is None or not receipt.number.strip():
        return None
    number = receipt.number.strip()
    if receipt.number_scope != "day":
        return store_id, number
    zone = tp.policy_zone(policy)
    try:
        day = now.astimezone(zone).date() if zone is not None else now.astimezone().date()
    except OverflowError:
        day = now.astimezone().date()
    return store_id, f"{day.isoformat()} {number}"


def _sale_state(
    quote: Quote, now: datetime, store_id: str, member: Member | None, spent: list[tuple[str, int]]
) -> dict[str, Any]:
    # ``redeemed``: the points that paid money (a refund prices them again); the rewards' points are kept apart
    # and go back when a reward's line is returned.
    redeemed = quote.points_redeemed - quote.reward_points
    state = pricing.SaleState(quote.basket, quote.payable, quote.points_earned, redeemed, quote.coupons)
    return {
        **_state_dict(state),
        "rewards": [list(x) for x in quote.rewards],
        "at": now.isoformat(timespec="seconds"),
        "store_id": store_id,
        "tier": member.tier if member else None,
        "lots_spent": [list(x) for x in spent],
    }


def _rewards_back(
    raw: dict[str, Any], state: pricing.SaleState, returned: dict[int, int]
) -> tuple[list[list[Any]], list[tuple[str, int]]]:
    """The rewards a refund gives back (their line is returned: their points and their stock unit), and
    those the sale keeps."""
    lines = {line.sku: i for i, line in enumerate(state.basket.lines) if line.quantity}
    kept: list[list[Any]] = []
    back: list[tuple[str, int]] = []
    for reward_id, points in raw.get("rewards", []):
        if returned.get(lines.get(rw.PREFIX + str(reward_id), -1), 0) > 0:
            back.append((str(reward_id), int(points)))
        else:
            kept.append([reward_id, points])
    return kept, back


def _state_dict(state: pricing.SaleState) -> dict[str, Any]:
    return {
        "lines": _lines_payload(state.basket),
        "payable": state.payable,
        "earned": state.earned,
        "redeemed": state.redeemed,
        "coupons": list(state.coupons),
    }


def _state_from(raw: dict[str, Any]) -> pricing.SaleState:
    lines = tuple(Line(x["sku"], x["quantity"], x["unit_price"], x.get("category", "")) for x in raw["lines"])
    return pricing.SaleState(Basket(lines), raw["payable"], raw["earned"], raw["redeemed"], tuple(raw["coupons"]))


def _give_back(spent: list[tuple[str, int]], points: int) -> tuple[list[tuple[str, int]], list[list[Any]]]:
    """Split ``points`` given back over the lots that paid them, last spent first; what stays spent."""
    restore: list[tuple[str, int]] = []
    left: list[list[Any]] = [[lot, n] for lot, n in spent]
    for item in reversed(left):
        if points <= 0:
            break
        back = min(points, int(item[1]))
        restore.append((str(item[0]), back))
        item[1] = int(item[1]) - back
        points -= back
    return restore, [x for x in left if x[1] > 0]
