"""The double-entry ledger of points and stored value, the points lots and their expiry, and the check.

Every change of a member's points or stored value posts one ledger transaction (``ledger_txns``) whose
postings (``ledger_postings``) sum to zero per unit: points, and stored value in the chain's minor units.
A journal entry's transaction is keyed by its ``txn_id`` (a replayed push posts nothing); an
administrator's action by its own id. docs/ledger.md draws the accounts and the postings of each kind.

The module has a pure core (the accounts, the posting rules of each entry kind, the order lots are
spent in, the balance test) and, below it, the few functions that read and write the tables, each
called inside the caller's transaction, so a posting commits or rolls back with the effect it books.

Points are held in lots at head office: each earn is a lot of the merchant whose store issued it,
expiring like the till's (``terminal.loyalty.new_lot``: the entry's time plus the points policy's
``expire_days``). A spend takes the lots that expire first and records which merchant's lots it took
(``ledger_lot_uses``); points spent beyond the lots (an offline overspend) are the member's overdraft,
paid back from the next lots the member earns. Expiry (``expire``) posts each lot's rest as breakage
of its issuing merchant.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from hq import merchants, periods, rollup
from hq.db.engine import Tx, utc_now
from hq.errors import HqError
from sync.protocol import Payload, PayloadError, RefundPayload, SalePayload, VoidPayload, parse_payload, parse_time
from terminal import loyalty as ly
from terminal.rewards import returned as reward_lines

# -- pure: accounts and postings -------------------------------------------------------------------


class Unit(StrEnum):
    POINTS = "points"
    VALUE = "value"
    """Stored value, in the chain's minor currency units."""


class Kind(StrEnum):
    """An account's kind; its owner is a member, a merchant, or the chain (owner ``""``)."""

    MEMBER_POINTS = "member_points"
    MEMBER_OVERDRAFT = "member_overdraft"
    """Points a member spent beyond its lots (offline): what its next lots pay back first."""
    MEMBER_VALUE = "member_value"
    ISSUED = "merchant_issued"
    """Minus the points of the merchant's lots members still hold: the merchant's points liability."""
    ACCEPTED = "merchant_accepted"
    """Points members spent at the merchant's stores (what the merchant is reimbursed for)."""
    BREAKAGE = "merchant_breakage"
    """Points of the merchant's lots that expired or were forfeited."""
    VALUE_ACCEPTED = "merchant_value_accepted"
    """Stored value members paid at the merchant's stores (what the chain owes the merchant)."""
    MERCHANT_CASH = "merchant_cash"
    """Cash a merchant's tills took for stored value they topped up."""
    CHAIN_POINTS = "chain_points"
    """Points that left circulation (spent or expired): the counterpart of accepted and breakage."""
    CHAIN_FLOAT = "chain_float"
    """Money head office took for stored value it topped up."""
    CHAIN_FORFEITED = "chain_forfeited"
    """Stored value of erased members, kept by the chain."""
    GIFT_VALUE = "gift_value"
    """A gift card's value (owner: the card id): a bearer card's stored value, the chain's liability to its holder."""
    GIFT_BREAKAGE = "gift_breakage"
    """Gift card value head office cleared (expired, a card retired), kept by the chain."""
    VOUCHER_VALUE = "voucher_value"
    """A prepaid voucher's value (owner: the voucher id): sold by one merchant's till, redeemed at any store."""
    VOUCHER_BREAKAGE = "voucher_breakage"
    """Voucher value a return of the sale it paid kept (``voucher_kept``: the goods came back, the used voucher
    was never paid out): no longer owed to the merchant that accepted it, kept by the chain."""


CHAIN = ""


class Unbalanced(HqError):
    """A posting rule produced a transaction that does not sum to zero: a bug, never booked."""


@dataclass(frozen=True, slots=True, order=True)
class Account:
    kind: Kind
    owner: str


@dataclass(frozen=True, slots=True)
class Posting:
    account: Account
    unit: Unit
    amount: int


def member_points(member_id: str) -> Account:
    return Account(Kind.MEMBER_POINTS, member_id)


def overdraft(member_id: str) -> Account:
    return Account(Kind.MEMBER_OVERDRAFT, member_id)


def issued(merchant_id: str) -> Account:
    return Account(Kind.ISSUED, merchant_id)


def points(account: Account, amount: int) -> Posting:
    return Posting(account, Unit.POINTS, amount)


def combine(postings: Iterable[Posting]) -> list[Posting]:
    """One posting per (account, unit), in a stable order, without zeros."""
    sums: dict[tuple[str, str, str], int] = defaultdict(int)
    for p in postings:
        sums[(p.account.kind.value, p.account.owner, p.unit.value)] += p.amount
    return [Posting(Account(Kind(k), o), Unit(u), n) for (k, o, u), n in sorted(sums.items()) if n]


def unbalanced(postings: Iterable[Posting]) -> dict[Unit, int]:
    """The units whose postings do not sum to zero (empty: balanced)."""
    sums: dict[Unit, int] = defaultdict(int)
    for p in postings:
        sums[p.unit] += p.amount
    return {u: n for u, n in sums.items() if n}


# -- pure: lots --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    merchant_id: str
    remaining: int
    earned_at: str
    expires_at: str | None


@dataclass(frozen=True, slots=True)
class Use:
    """``points`` taken from (or given back to) a lot of ``merchant_id``."""

    lot_id: str
    merchant_id: str
    points: int


def spend_order(lot: Lot) -> tuple[str, str, str]:
    """The till's order (``terminal.loyalty``): the lot that expires first, then the oldest."""
    return (lot.expires_at or "9999", lot.earned_at, lot.lot_id)


def take(lots: Iterable[Lot], amount: int, at: str, first: str | None = None) -> tuple[list[Use], int]:
    """Which lots pay ``amount`` at ``at`` (lot ``first`` before the others, then the till's order;
    lots expired by then are not spent) and what the lots cannot pay (the overdraft)."""
    live = [lot for lot in lots if lot.remaining > 0 and (lot.expires_at is None or lot.expires_at > at)]
    live.sort(key=lambda lot: (lot.lot_id != first, spend_order(lot)))
    uses, left = [], amount
    for lot in live:
        if left == 0:
            break
        n = min(left, lot.remaining)
        uses.append(Use(lot.lot_id, lot.merchant_id, n))
        left -= n
    return uses, left


def expiry(earned_at: datetime, policy: ly.LotPolicy) -> str | None:
    """When a lot earned at ``earned_at`` expires: exactly as the till's ``new_lot`` says."""
    return utc_text(earned_at + timedelta(days=policy.expire_days)) if policy.expire_days else None


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- pure: what each entry kind posts ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """What an applied entry (or an administrator's action) changes, as the ledger books it."""

    source: str
    kind: str
    member_id: str
    merchant_id: str
    day: str
    at: str
    earned: int = 0
    spent: int = 0
    clawed: int = 0
    restored: int = 0
    value: int = 0
    original: str | None = None
    chain: int = 0
    """Of ``spent`` (a sale) or ``restored`` (a refund, a void): the points of rewards the chain's catalogue
    supplies (a coupon, a partner code), accepted by the chain's merchant whichever store took them."""
    store: str = ""
    """A journal entry's store and till (the report roll-up's keys); ``""`` for head office's own."""
    terminal: str = ""
    own_lots: bool = False
    """Points taken come out of the entry's merchant's own lots only (a merchant's adjustment: it takes back
    what it gave, never another merchant's points)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """How an entry kind posts: whether it moves points (through lots), and the account that takes the
    other side of its stored value (owned by the entry's merchant, or by the chain)."""

    points: bool
    value_counter: Kind | None
    merchant_owned: bool = True


RULES: dict[str, Rule] = {
    "sale": Rule(points=True, value_counter=Kind.VALUE_ACCEPTED),
    "refund": Rule(points=True, value_counter=Kind.VALUE_ACCEPTED),
    "void": Rule(points=True, value_counter=Kind.VALUE_ACCEPTED),
    "topup": Rule(points=False, value_counter=Kind.CHAIN_FLOAT, merchant_owned=False),
    "adjust": Rule(points=True, value_counter=Kind.CHAIN_FLOAT, merchant_owned=False),
    "till_topup": Rule(points=False, value_counter=Kind.MERCHANT_CASH),
    "topup_void": Rule(points=False, value_counter=Kind.MERCHANT_CASH),
}
"""One row per entry kind that changes balances; a kind absent here posts nothing."""
REDEEMING = ("sale", "refund", "void")
"""The journal kinds whose accepted points are the store's redeemed points in the reports."""


def value_postings(entry: Entry, rule: Rule) -> list[Posting]:
    if not entry.value or rule.value_counter is None:
        return []
    owner = entry.merchant_id if rule.merchant_owned else CHAIN
    return [
        Posting(Account(Kind.MEMBER_VALUE, entry.member_id), Unit.VALUE, entry.value),
        Posting(Account(rule.value_counter, owner), Unit.VALUE, -entry.value),
    ]


GIFT_COUNTER: dict[str, Kind] = {
    "gift_activate": Kind.MERCHANT_CASH,
    "gift_load": Kind.MERCHANT_CASH,
    "gift_redeem": Kind.VALUE_ACCEPTED,
    "gift_refund": Kind.VALUE_ACCEPTED,
    "gift_clear": Kind.GIFT_BREAKAGE,
    "gift_import": Kind.CHAIN_FLOAT,
}
"""The account on the other side of a gift card activity that moves its value: a till's sale or load against
the cash its merchant took, a payment or its refund against what the merchant accepted (as a member's stored
value), a clear against the chain's breakage, an import against the chain's float. Block and unblock move none."""


def gift_postings(card_id: str, kind: str, amount: int, merchant_id: str) -> list[Posting]:
    """A gift card activity that changed the card's balance by ``amount``."""
    counter = GIFT_COUNTER.get(kind)
    if counter is None or not amount:
        return []
    owner = CHAIN if counter in (Kind.GIFT_BREAKAGE, Kind.CHAIN_FLOAT) else merchant_id
    return [
        Posting(Account(Kind.GIFT_VALUE, card_id), Unit.VALUE, amount),
        Posting(Account(counter, owner), Unit.VALUE, -amount),
    ]


VOUCHER_COUNTER: dict[str, Kind] = {
    "voucher_sale": Kind.MERCHANT_CASH,
    "voucher_redeem": Kind.VALUE_ACCEPTED,
    "voucher_refund": Kind.MERCHANT_CASH,
}
"""The account on the other side of a voucher's value (``hq.vouchers``): its sale against the cash the selling
merchant's till took, its redemption against what the redeeming merchant accepted (what the chain owes it), its
refund against the cash the selling store paid back."""


def voucher_postings(voucher_id: str, kind: str, amount: int, merchant_id: str) -> list[Posting]:
    """A voucher's sale (``amount`` > 0), redemption or refund (< 0) at ``merchant_id``'s store."""
    counter = VOUCHER_COUNTER.get(kind)
    if counter is None or not amount:
        return []
    return [
        Posting(Account(Kind.VOUCHER_VALUE, voucher_id), Unit.VALUE, amount),
        Posting(Account(counter, merchant_id), Unit.VALUE, -amount),
    ]


def kept_postings(taken: Sequence[tuple[str, int]]) -> list[Posting]:
    """A return kept the vouchers' part of its sale (``voucher_kept``): each merchant that accepted them for the sale
    (``taken``: merchant, amount) is no longer owed that part, which the chain keeps."""
    out = [Posting(Account(Kind.VALUE_ACCEPTED, merchant), Unit.VALUE, -amount) for merchant, amount in taken if amount]
    return (
        [*out, Posting(Account(Kind.VOUCHER_BREAKAGE, CHAIN), Unit.VALUE, -sum(p.amount for p in out))] if out else []
    )


def earn_postings(member_id: str, merchant_id: str, amount: int) -> list[Posting]:
    return [points(member_points(member_id), amount), points(issued(merchant_id), -amount)]


def spend_postings(
    member_id: str, uses: Sequence[Use], short: int, accepted_by: str | None, chain: int = 0
) -> list[Posting]:
    """Points leaving a member: each lot's issuer is discharged, the shortfall is overdraft; points
    spent at a till (``accepted_by``) are the accepting merchant's, against the chain, but for ``chain`` of
    them (rewards the chain supplies), the chain's merchant's."""
    total = sum(u.points for u in uses) + short
    out = [points(member_points(member_id), -total), points(overdraft(member_id), short)]
    out += [points(issued(u.merchant_id), u.points) for u in uses]
    if accepted_by is not None:
        out += accept_postings(accepted_by, total, chain)
    return out


def accept_postings(accepted_by: str, total: int, chain: int) -> list[Posting]:
    """``total`` points accepted (negative: an acceptance reversed) by ``accepted_by``, ``chain`` of them by
    the chain's merchant instead; against the chain's points."""
    by_chain = max(0, min(chain, total)) if total >= 0 else -max(0, min(chain, -total))
    return [
        points(Account(Kind.ACCEPTED, accepted_by), total - by_chain),
        points(Account(Kind.ACCEPTED, CHAIN_MERCHANT), by_chain),
        points(Account(Kind.CHAIN_POINTS, CHAIN), -total),
    ]


def repay_postings(member_id: str, uses: Sequence[Use]) -> list[Posting]:
    """New lots paying back the member's overdraft (its balance does not move)."""
    total = sum(u.points for u in uses)
    return [points(overdraft(member_id), -total), *(points(issued(u.merchant_id), u.points) for u in uses)]


def breakage_postings(member_id: str, uses: Sequence[Use]) -> list[Posting]:
    """Lots expiring (or forfeited): the member loses them, each issuer books its breakage."""
    out = [points(member_points(member_id), -sum(u.points for u in uses))]
    for u in uses:
        out += [points(issued(u.merchant_id), u.points), points(Account(Kind.BREAKAGE, u.merchant_id), u.points)]
        out.append(points(Account(Kind.CHAIN_POINTS, CHAIN), -u.points))
    return out


def restore_postings(
    member_id: str, uses: Sequence[Use], fresh: int, owed: int, accepted_by: str, chain: int = 0
) -> list[Posting]:
    """Points a refund gives back: into the lots the sale spent (``uses``), then paying the member's
    overdraft (``owed``), the rest as new points of the chain (``fresh``: a sale older than the ledger);
    the accepting merchant's acceptance is reversed (the chain's merchant's for ``chain`` of them: rewards
    the chain supplies)."""
    total = sum(u.points for u in uses) + fresh + owed
    out = [points(member_points(member_id), total), points(issued(CHAIN_MERCHANT), -fresh)]
    out += [points(overdraft(member_id), -owed), *(points(issued(u.merchant_id), -u.points) for u in uses)]
    out += accept_postings(accepted_by, -total, chain)
    return out


CHAIN_MERCHANT = merchants.CHAIN_MERCHANT


def give_back(spent: Sequence[Use], amount: int) -> tuple[list[Use], int]:
    """Split ``amount`` over what a sale spent, last spent first (like the till); and the rest."""
    out, left = [], amount
    for u in reversed(spent):
        n = min(left, u.points)
        if n:
            out.append(replace(u, points=n))
            left -= n
    return out, left


# -- reading entries --------------------------------------------------------------------------------


def entry_of(row: Sequence[Any], merchant_of: Callable[[str], str], chain: int = 0) -> Entry | None:
    """A journal row (txn_id, kind, member_id, store_id, terminal_id, day, points, stored_value, points_spent,
    payload, original_txn, made_at) as the ledger books it (``chain``: its points of rewards the chain
    supplies); None for a kind that moves nothing."""
    txn_id, kind, member_id, store_id, terminal_id, day, net, value, spent, payload, original, made_at = row
    if kind not in RULES or member_id is None:
        return None
    earned = spent_ = clawed = restored = 0
    if kind == "sale":  # earned = net + spent: a claimed receipt's points are the journal's, not the payload's
        spent_ = int(spent or 0)
        earned = int(net) + spent_
    elif kind in ("refund", "void"):
        clawed, restored = _refund_points(str(payload), int(net))
    merchant_id, orig = merchant_of(str(store_id)), str(original) if original else None
    base = (str(txn_id), str(kind), str(member_id), merchant_id, str(day), str(made_at))
    return Entry(
        *base, earned, spent_, clawed, restored, int(value), orig, chain, store=str(store_id), terminal=str(terminal_id)
    )


def _refund_points(payload: str, net: int) -> tuple[int, int]:
    try:
        refund = parse_payload("refund", {k: v for k, v in json.loads(payload).items() if k != "voided_txn_id"})
    except (PayloadError, ValueError, AttributeError):
        refund = None
    if isinstance(refund, RefundPayload) and refund.points_delta == net:
        return refund.points_clawed, refund.points_restored
    return max(0, -net), max(0, net)


# -- writing -----------------------------------------------------------------------------------------


JOURNAL_ROW = (
    "SELECT txn_id, kind, member_id, store_id, terminal_id, day, points, stored_value, points_spent, payload, "
    "original_txn, made_at FROM journal WHERE effect = 'applied' AND {cond}"
)


def post_journal(tx: Tx, txn_ids: Sequence[str]) -> int:
    """Post the applied journal entries ``txn_ids`` (in this order) not posted yet; how many posted."""
    if not txn_ids:
        return 0
    cond, params = tx.in_list("txn_id", list(txn_ids))
    rows = {str(r[0]): r for r in tx.all(JOURNAL_ROW.format(cond=cond), params)}
    merchant_of = merchants.resolver(tx)
    chain = chain_points(tx, list(rows.values()))
    found = [entry_of(rows[t], merchant_of, chain.get(t, 0)) for t in txn_ids if t in rows]
    todo = [e for e in found if e is not None]
    if not todo:
        return 0
    writer = Writer(tx, {e.member_id for e in todo}, [e.source for e in todo])
    policy = lot_policy(tx)
    posted = sum(writer.post(e, policy) for e in todo)
    writer.flush()
    return posted


REWARDS_FIELD = '"rewards"'
"""A sale's payload names its rewards in this field (a sale without rewards is sent without it)."""
CHAIN_SUPPLIED = ("coupon", "partner_code")
"""The reward kinds the chain's catalogue supplies (an item is the store's own stock, its merchant's)."""


def chain_points(tx: Tx, rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """Of each journal row (``JOURNAL_ROW``) that is a sale, the points it spent on rewards the chain supplies;
    of each refund or void of such a sale, the points of those rewards whose lines it returns (a void: all),
    at most what it restores. Rows without either are absent."""
    sales: dict[str, SalePayload] = {}
    reversing: dict[str, tuple[str, str, str]] = {}
    for txn_id, kind, *_, payload, original, _made in rows:
        if kind == "sale" and REWARDS_FIELD in str(payload):  # most sales take none: not parsed
            parsed = _payload("sale", str(payload))
            if isinstance(parsed, SalePayload) and parsed.rewards:
                sales[str(txn_id)] = parsed
        elif kind in ("refund", "void") and original:
            reversing[str(txn_id)] = (str(kind), str(payload), str(original))
    wanted = sorted({o for *_, o in reversing.values()} - set(sales))
    if wanted:
        cond, params = tx.in_list("txn_id", wanted)
        for txn_id, payload in tx.all(f"SELECT txn_id, payload FROM journal WHERE kind = 'sale' AND {cond}", params):
            parsed = _payload("sale", str(payload)) if REWARDS_FIELD in str(payload) else None
            if isinstance(parsed, SalePayload) and parsed.rewards:
                sales[str(txn_id)] = parsed
    if not sales:
        return {}
    refunds: dict[str, tuple[RefundPayload, str]] = {}
    for txn_id, (kind, payload, original) in reversing.items():
        parsed = _payload(kind, payload) if original in sales else None
        if isinstance(parsed, RefundPayload) and parsed.points_restored:
            refunds[txn_id] = (parsed, original)
    cond, params = tx.in_list("reward_id", sorted({r.reward_id for s in sales.values() for r in s.rewards}))
    kinds = {str(k): str(v) for k, v in tx.all(f"SELECT reward_id, kind FROM rewards WHERE {cond}", params)}

    def of(sale: SalePayload, ids: Iterable[str]) -> int:
        wanted = set(ids)
        return sum(r.points for r in sale.rewards if r.reward_id in wanted and kinds.get(r.reward_id) in CHAIN_SUPPLIED)

    out = {t: of(s, (r.reward_id for r in s.rewards)) for t, s in sales.items()}
    for txn_id, (refund, original) in refunds.items():
        sale = sales.get(original)
        if sale is None:
            continue
        ids = (
            {r.reward_id for r in sale.rewards}
            if isinstance(refund, VoidPayload)
            else reward_lines([line.sku for line in sale.lines], [x.line for x in refund.returned])
        )
        out[txn_id] = min(refund.points_restored, of(sale, ids))
    return {t: n for t, n in out.items() if n}


def _payload(kind: str, text: str) -> Payload | None:
    try:
        return parse_payload(kind, json.loads(text))
    except (PayloadError, ValueError, AttributeError):
        return None


def lot_policy(tx: Tx) -> ly.LotPolicy:
    """The chain's points policy (lock and expiry days), read the way the tills read it."""
    docs = {str(r[0]): json.loads(r[1]) for r in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")}
    pol = {k: d for k, d in docs.items() if isinstance(d, dict) and d.get("kind") == "points_policy"}
    try:
        return ly.parse_program(pol, None).lots
    except Exception:  # noqa: BLE001 - a policy the tills cannot read either: lots that never expire
        return ly.LotPolicy()


def post(tx: Tx, entry: Entry, policy: ly.LotPolicy) -> int:
    """Post one entry on its own; 0 if already posted."""
    writer = Writer(tx, [entry.member_id], [entry.source])
    posted = writer.post(entry, policy)
    writer.flush()
    return posted


POSTING_COLUMNS = ("ledger_txn_id", "n", "kind", "owner", "unit", "amount")
TXN_COLUMNS = ("ledger_txn_id", "kind", "member_id", "merchant_id", "day", "period", "at", "moved_from")
LOT_COLUMNS = (
    "lot_id",
    "member_id",
    "merchant_id",
    "points",
    "remaining",
    "earned_at",
    "earned_day",
    "expires_at",
    "timing",
)
USE_COLUMNS = ("ledger_txn_id", "purpose", "lot_id", "merchant_id", "points", "against")
SPENT_BY_SALE = (
    "SELECT u.lot_id, u.merchant_id, SUM(u.points), l.remaining, l.earned_at, l.expires_at FROM ledger_lot_uses u "
    "JOIN ledger_lots l ON l.lot_id = u.lot_id "
    "WHERE (u.ledger_txn_id = ? AND u.purpose = 'spend') OR (u.purpose = 'restore' AND u.against = ?) "
    "GROUP BY u.lot_id, u.merchant_id, l.remaining, l.expires_at, l.earned_at HAVING SUM(u.points) > 0 "
    "ORDER BY COALESCE(l.expires_at, '9999'), l.earned_at, u.lot_id"
)


class Writer:
    """The one path every posting takes: the ledger's writes of one call, kept in memory and written in a few
    statements (``flush``). The lots and overdrafts of the members it posts for are read once (the lots
    locked), and kept current as entries take from them, so a batch reads what its own entries did."""

    def __init__(self, tx: Tx, members: Iterable[str], sources: Sequence[str] = ()) -> None:
        self.tx = tx
        self.lots: dict[str, dict[str, Lot]] = {}
        self.owed: dict[str, int] = defaultdict(int)
        self.held = self._held(sources)
        self.checked = set(sources)
        self.txns: list[tuple[Any, ...]] = []
        self.postings: list[tuple[Any, ...]] = []
        self.new_lots: dict[str, tuple[Any, ...]] = {}
        self.taken: dict[str, int] = defaultdict(int)
        self.uses: list[tuple[Any, ...]] = []
        self.opened: dict[str, Entry] = {}
        self.rolled: dict[rollup.Key, int] = defaultdict(int)
        self.expired: list[tuple[str, str, int]] = []
        """(day, lot, points) of lots expired, for the roll-up under the store of each lot."""
        self._calendar: periods.Calendar | None = None
        self._timings: dict[str, str] | None = None
        self._load(sorted(set(members)))

    def _held(self, sources: Sequence[str]) -> set[str]:
        if not sources:
            return set()
        cond, params = self.tx.in_list("ledger_txn_id", list(sources))
        return {str(r[0]) for r in self.tx.all(f"SELECT ledger_txn_id FROM ledger_txns WHERE {cond}", params)}

    def _load(self, members: list[str]) -> None:
        members = [m for m in members if m not in self.lots]
        if not members:
            return
        for m in members:
            self.lots[m] = {}
        cond, params = self.tx.in_list("member_id", members)
        for r in self.tx.all(
            "SELECT member_id, lot_id, merchant_id, remaining, earned_at, expires_at FROM ledger_lots "
            f"WHERE remaining > 0 AND {cond} ORDER BY lot_id{self.tx.for_update}",
            params,
        ):
            self.lots[str(r[0])][str(r[1])] = Lot(str(r[1]), str(r[2]), int(r[3]), str(r[4]), r[5] and str(r[5]))
        cond, params = self.tx.in_list("owner", members)
        for owner, n in self.tx.all(
            f"SELECT owner, SUM(amount) FROM ledger_postings WHERE kind = ? AND {cond} GROUP BY owner",
            [Kind.MEMBER_OVERDRAFT.value, *params],
        ):
            self.owed[str(owner)] = int(n)

    def open(self, entry: Entry) -> bool:
        """Start the entry's ledger transaction; False if it was posted already (a replay)."""
        if entry.source not in self.checked:
            self.held |= self._held([entry.source])
            self.checked.add(entry.source)
        if entry.source in self.held:
            return False
        self.held.add(entry.source)
        self.opened[entry.source] = e = entry
        period, moved_from = self.calendar().place(e.day)
        self.txns.append((e.source, e.kind, e.member_id, e.merchant_id, e.day, period, e.at, moved_from))
        return True

    def calendar(self) -> periods.Calendar:
        """The settlement calendar, read (and held against a close) once per writer: a late entry of a
        closed period is filed under the first open one."""
        if self._calendar is None:
            self._calendar = periods.calendar(self.tx, periods.Lock.POSTING)
        return self._calendar

    def book(self, source: str, postings: Iterable[Posting]) -> None:
        out = combine(postings)
        if unbalanced(out):
            raise Unbalanced(f"ledger transaction {source} does not balance: {unbalanced(out)}")
        self.postings += [
            (source, n, p.account.kind.value, p.account.owner, p.unit.value, p.amount) for n, p in enumerate(out)
        ]
        for p in out:
            if p.account.kind is Kind.MEMBER_OVERDRAFT:
                self.owed[p.account.owner] += p.amount
        e = self.opened[source]
        for p in out:
            if p.account.kind in (Kind.MEMBER_POINTS, Kind.MEMBER_VALUE):
                self.rolled[(e.day, rollup.CHAIN, e.terminal, p.account.kind.value)] += p.amount
            elif p.account.kind in (Kind.GIFT_VALUE, Kind.VOUCHER_VALUE):
                self.rolled[(e.day, rollup.CHAIN, rollup.HEAD_OFFICE, p.account.kind.value)] += p.amount
            elif p.account.kind is Kind.ACCEPTED and e.kind in REDEEMING and e.terminal:
                self.rolled[(e.day, e.store, e.terminal, "points_redeemed")] += p.amount

    def member_lots(self, member_id: str) -> list[Lot]:
        self._load([member_id])
        return [lot for lot in self.lots[member_id].values() if lot.remaining > 0]

    def use(
        self, member_id: str, source: str, uses: Sequence[Use], sign: int, purpose: str, against: str | None = None
    ) -> None:
        """Take (sign 1) or give back (sign -1) points of lots, and keep what was taken for settlement."""
        held = self.lots[member_id]
        for u in uses:
            if u.lot_id in held:
                held[u.lot_id] = replace(held[u.lot_id], remaining=held[u.lot_id].remaining - sign * u.points)
            self.taken[u.lot_id] += sign * u.points
            self.uses.append((source, purpose, u.lot_id, u.merchant_id, sign * u.points, against))
            if purpose == "expire":
                self.expired.append((self.opened[source].day, u.lot_id, sign * u.points))

    def new_lot(self, member_id: str, lot: Lot, day: str) -> None:
        self._load([member_id])
        self.lots[member_id][lot.lot_id] = lot
        e = self.opened.get(lot.lot_id)  # a lot an entry earned is keyed by it; a restored lot is head office's
        self.rolled[(day, e.store, e.terminal, "points_issued") if e else (day, "", "", "points_issued")] += (
            lot.remaining
        )
        self.new_lots[lot.lot_id] = (
            lot.lot_id,
            member_id,
            lot.merchant_id,
            lot.remaining,
            lot.remaining,
            lot.earned_at,
            day,
            lot.expires_at,
            self.timing(lot.merchant_id),
        )

    def timing(self, merchant_id: str) -> str:
        """The merchant's settlement timing now, kept on each lot it issues: the lot is paid for by the timing
        in force when it was issued, whatever the merchant settles at later (read once per writer)."""
        if self._timings is None:
            self._timings = {str(m): str(t) for m, t in self.tx.all("SELECT merchant_id, timing FROM merchants")}
        return self._timings.get(merchant_id, merchants.Timing.ISSUANCE.value)

    def post(self, entry: Entry, policy: ly.LotPolicy) -> int:
        """Post one entry (the one path every balance change takes into the ledger); 0 if already posted."""
        rule = RULES[entry.kind]
        if not self.open(entry):
            return 0
        postings = value_postings(entry, rule)
        if rule.points:
            postings += self._points(entry, policy)
        self.book(entry.source, postings)
        return 1

    def _points(self, e: Entry, policy: ly.LotPolicy) -> list[Posting]:
        """Restore, claw, spend, then earn (and pay any overdraft back from the new lot)."""
        out: list[Posting] = []
        if e.restored:
            out += self._restore(e)
        if e.clawed:
            out += self.consume(e, e.clawed, None, first=e.original)
        if e.spent:
            out += self.consume(e, e.spent, e.merchant_id, chain=e.chain)
        if e.earned > 0:
            out += self._earn(e, policy, sum(p.amount for p in out if p.account == overdraft(e.member_id)))
        return out

    def consume(
        self, e: Entry, amount: int, accepted_by: str | None, first: str | None = None, chain: int = 0
    ) -> list[Posting]:
        held = self.member_lots(e.member_id)
        if e.own_lots:
            held = [lot for lot in held if lot.merchant_id == e.merchant_id]
        uses, short = take(held, amount, e.at, first)
        self.use(e.member_id, e.source, uses, 1, "spend" if accepted_by else "claw")
        return spend_postings(e.member_id, uses, short, accepted_by, chain)

    def _earn(self, e: Entry, policy: ly.LotPolicy, owed_now: int) -> list[Posting]:
        """A new lot of the entry's merchant; it pays the member's overdraft first (``owed_now``: what this
        very entry added to it)."""
        made = parse_time(e.at) or datetime.now(UTC)
        self.new_lot(e.member_id, Lot(e.source, e.merchant_id, e.earned, e.at, expiry(made, policy)), e.day)
        out = earn_postings(e.member_id, e.merchant_id, e.earned)
        owed = self.owed[e.member_id] + owed_now
        if owed > 0:
            uses = [Use(e.source, e.merchant_id, min(owed, e.earned))]
            self.use(e.member_id, e.source, uses, 1, "repay")
            out += repay_postings(e.member_id, uses)
        return out

    def _restore(self, e: Entry) -> list[Posting]:
        """Give points back into the lots the original sale spent and no refund gave back yet (even a lot
        expired since: the next expiry run takes them again, as the till does), then pay the member's
        overdraft, then the rest as new points of the chain."""
        self.flush()  # the sale and earlier refunds of it may be in this very batch
        original = e.original or ""
        rows = self.tx.all(SPENT_BY_SALE, [original, original])
        held = self.lots[e.member_id]
        for r in rows:  # a lot spent to nothing was not read with the member's lots
            held.setdefault(str(r[0]), Lot(str(r[0]), str(r[1]), int(r[3]), str(r[4]), r[5] and str(r[5])))
        spent = [Use(str(r[0]), str(r[1]), int(r[2])) for r in rows]
        back, rest = give_back(spent, e.restored)
        self.use(e.member_id, e.source, back, -1, "restore", e.original)
        owed = min(rest, max(0, self.owed[e.member_id]))
        if rest - owed:
            self.new_lot(e.member_id, Lot(f"{e.source}:restored", CHAIN_MERCHANT, rest - owed, e.at, None), e.day)
        return restore_postings(e.member_id, back, rest - owed, owed, e.merchant_id, e.chain)

    def flush(self) -> None:
        """Write what is queued: transactions, new lots (as they stand now), lots taken from, uses, postings."""
        tx = self.tx
        tx.insert_rows("ledger_txns", TXN_COLUMNS, self.txns)
        fresh = [(*row[:4], self._remaining(str(row[0]), int(row[3])), *row[5:]) for row in self.new_lots.values()]
        tx.insert_rows("ledger_lots", LOT_COLUMNS, fresh)
        changed = sorted((lot, n) for lot, n in self.taken.items() if lot not in self.new_lots and n)
        tx.many("UPDATE ledger_lots SET remaining = remaining - ? WHERE lot_id = ?", [(n, lot) for lot, n in changed])
        tx.insert_rows("ledger_lot_uses", USE_COLUMNS, self.uses)
        tx.insert_rows("ledger_postings", POSTING_COLUMNS, self.postings)
        self._roll_expired()
        rollup.add(tx, self.rolled)
        self.txns, self.postings, self.uses = [], [], []
        self.rolled, self.expired = defaultdict(int), []
        self.new_lots, self.taken = {}, defaultdict(int)

    def _roll_expired(self) -> None:
        """Expired points go to the roll-up under the store whose entry earned each lot (head office's own
        lots under ``""``), till ``""``: an expiry run is head office's."""
        if not self.expired:
            return
        cond, params = self.tx.in_list("txn_id", sorted({lot for _, lot, _ in self.expired}))
        store = {str(t): str(s) for t, s in self.tx.all(f"SELECT txn_id, store_id FROM journal WHERE {cond}", params)}
        for day, lot, n in self.expired:
            self.rolled[(day, store.get(lot, rollup.HEAD_OFFICE), "", "points_expired")] += n

    def _remaining(self, lot_id: str, points: int) -> int:
        return points - self.taken.get(lot_id, 0)


def lots_of(tx: Tx, member_id: str) -> list[Lot]:
    return Writer(tx, [member_id]).member_lots(member_id)


def unspendable(lots: Iterable[Lot], at: str, policy: ly.LotPolicy) -> int:
    """Points of ``lots`` that cannot pay at ``at``: still locked (``lock_days`` after they were earned, as
    the till's lots are) or expired. The member's balance less these is what a till lets them spend."""
    now = parse_time(at)
    if now is None:
        raise ValueError(f"not a time: {at!r}")
    lock = timedelta(days=policy.lock_days)
    out = 0
    for lot in lots:
        earned = parse_time(lot.earned_at)
        expired = lot.expires_at is not None and lot.expires_at <= at
        if expired or (earned is not None and now < earned + lock):
            out += lot.remaining
    return out


def spendable(tx: Tx, member_id: str, balance: int, at: str) -> int:
    """What of ``balance`` (the member's points) can pay at ``at``: its lots still locked or expired held back."""
    return balance - unspendable(lots_of(tx, member_id), at, lot_policy(tx))


# -- administrators' actions ---------------------------------------------------------------------------


def post_topup(tx: Tx, topup_id: str, member_id: str, amount: int, at: str) -> int:
    """An administrator's top-up (``hq.payments.topup``): the member's stored value against the chain's float."""
    entry = Entry(f"topup:{topup_id}", "topup", member_id, CHAIN_MERCHANT, at[:10], at, value=amount)
    return post(tx, entry, ly.LotPolicy())


def post_gift(tx: Tx, source: str, kind: str, card_id: str, amount: int, where: dict[str, str]) -> int:
    """A gift card activity (``hq.giftcards``: a till's entry applied, or head office's own change), keyed by
    its entry's or event's id; ``where``: its ``at`` and business ``day``, and the ``store`` that names the
    merchant (none: head office's own, the chain's)."""
    store_id = where.get("store") or ""
    merchant = merchants.resolver(tx)(store_id) if store_id else CHAIN_MERCHANT
    return _post_value(tx, source, kind, merchant, gift_postings(card_id, kind, amount, merchant), where)


def post_voucher(tx: Tx, source: str, kind: str, voucher_id: str, amount: int, where: dict[str, str]) -> int:
    """A voucher's sale, redemption or refund at a till (``hq.vouchers``), keyed by its entry's id; ``where``: its
    ``at``, business ``day`` and the ``store`` that names the merchant."""
    merchant = merchants.resolver(tx)(where["store"])
    return _post_value(tx, source, kind, merchant, voucher_postings(voucher_id, kind, amount, merchant), where)


def post_voucher_kept(tx: Tx, source: str, taken: Sequence[tuple[str, int]], where: dict[str, str]) -> int:
    """The vouchers' part a return kept (``hq.ingest.keep_vouchers``), keyed ``<return's txn>:voucher_kept``: off
    what each merchant in ``taken`` accepted for the sale, to the chain's voucher breakage."""
    merchant = merchants.resolver(tx)(where["store"])
    return _post_value(tx, source, "voucher_kept", merchant, kept_postings(taken), where)


def _post_value(tx: Tx, source: str, kind: str, merchant: str, postings: list[Posting], where: dict[str, str]) -> int:
    at = where["at"]
    if not postings:
        return 0
    writer = Writer(tx, [], [source])
    if not writer.open(Entry(source, kind, "", merchant, where.get("day") or at[:10], at)):
        return 0
    writer.book(source, postings)
    writer.flush()
    return 1


def adjust(
    tx: Tx,
    member_id: str,
    points_delta: int,
    value_delta: int,
    at: str | None = None,
    action_id: str | None = None,
    merchant: str = CHAIN_MERCHANT,
) -> int:
    """An administrator set or moved a member's balances (``HqStore.upsert_member``, the back office's
    ``hq.adjustments``, keyed by its ``action_id``): points added are a lot of ``merchant`` (the chain's, or
    the merchant whose staff made the adjustment: it pays for them as for points its stores give), points
    taken come out of the member's lots like a claw; stored value against the chain's float, and only by the
    chain (``ValueError`` for a merchant's)."""
    if not (points_delta or value_delta):
        return 0
    if value_delta and merchant != CHAIN_MERCHANT:
        raise ValueError("only the chain adjusts stored value")
    at = at or utc_now()
    source = f"adjust:{action_id}" if action_id else f"adjust:{member_id}:{secrets.token_hex(8)}"
    entry = Entry(source, "adjust", member_id, merchant, at[:10], at, value=value_delta)
    entry = replace(
        entry, earned=max(points_delta, 0), clawed=max(-points_delta, 0), own_lots=merchant != CHAIN_MERCHANT
    )
    return post(tx, entry, lot_policy(tx))


def balances_of(tx: Tx, owner: str) -> dict[Kind, int]:
    """Every account balance of one owner (a member or a merchant), by kind."""
    rows = tx.all("SELECT kind, SUM(amount) FROM ledger_postings WHERE owner = ? GROUP BY kind", [owner])
    return {Kind(str(r[0])): int(r[1]) for r in rows if int(r[1])}


def merge(tx: Tx, winner: str, loser: str, at: str) -> None:
    """Members merged (``hq.members.merge``): the loser's accounts and lots move to the winner."""
    held = balances_of(tx, loser)
    moved = [k for k in (Kind.MEMBER_POINTS, Kind.MEMBER_OVERDRAFT, Kind.MEMBER_VALUE) if held.get(k)]
    tx.run("UPDATE ledger_lots SET member_id = ? WHERE member_id = ?", [winner, loser])
    if not moved:
        return
    entry = Entry(f"merge:{loser}", "merge", winner, CHAIN_MERCHANT, at[:10], at)
    writer = Writer(tx, [], [entry.source])
    if writer.open(entry):
        out = []
        for k in moved:
            unit = Unit.VALUE if k is Kind.MEMBER_VALUE else Unit.POINTS
            out += [Posting(Account(k, loser), unit, -held[k]), Posting(Account(k, winner), unit, held[k])]
        writer.book(entry.source, out)
        writer.flush()


def forfeit(tx: Tx, member_id: str, at: str) -> None:
    """An erased member's balances end: its lots are breakage of their issuers, its overdraft is written
    off, its stored value is the chain's."""
    entry = Entry(f"erase:{member_id}", "erase", member_id, CHAIN_MERCHANT, at[:10], at)
    writer = Writer(tx, [member_id], [entry.source])
    lots = writer.member_lots(member_id)
    held = balances_of(tx, member_id)
    if not (lots or held) or not writer.open(entry):
        return
    uses = [Use(lot.lot_id, lot.merchant_id, lot.remaining) for lot in lots]
    writer.use(member_id, entry.source, uses, 1, "forfeit")
    owed, value = held.get(Kind.MEMBER_OVERDRAFT, 0), held.get(Kind.MEMBER_VALUE, 0)
    out = breakage_postings(member_id, uses) + [
        points(member_points(member_id), owed),
        points(overdraft(member_id), -owed),
    ]
    out += [Posting(Account(Kind.MEMBER_VALUE, member_id), Unit.VALUE, -value)]
    out += [Posting(Account(Kind.CHAIN_FORFEITED, CHAIN), Unit.VALUE, value)]
    writer.book(entry.source, out)
    writer.flush()


# -- expiry ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expired:
    member_id: str
    points: int
    by_merchant: dict[str, int]


def end_of(day: date) -> datetime:
    """The last millisecond of ``day`` (UTC): ``expire(tx, end_of(day))`` expires what expired on it."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, milliseconds=-1)


def expire(tx: Tx, now: datetime) -> list[Expired]:
    """Expire every lot whose expiry moment has come by ``now`` (the till's rule: expired once
    ``now >= expires_at``) and that still holds points: breakage of its issuer, the member's balance
    lowered and its version moved (tills learn it with their next pull). Locks the members, then their
    lots, in the order a push takes them."""
    until = utc_text(now)
    due = sorted(
        {
            str(r[0])
            for r in tx.all(
                "SELECT DISTINCT member_id FROM ledger_lots WHERE remaining > 0 AND expires_at IS NOT NULL "
                "AND expires_at <= ?",
                [until],
            )
        }
    )
    if not due:
        return []
    cond, params = tx.in_list("member_id", due)
    tx.all(f"SELECT member_id FROM members WHERE {cond} ORDER BY member_id{tx.for_update}", params)
    writer, run = Writer(tx, due), secrets.token_hex(4)
    done = [x for x in (_expire_member(writer, m, until, run) for m in due) if x.points]
    writer.flush()
    tx.many("UPDATE members SET points = points - ? WHERE member_id = ?", [(x.points, x.member_id) for x in done])
    _bump_members(tx, [x.member_id for x in done])
    return done


def _expire_member(writer: Writer, member_id: str, until: str, run: str) -> Expired:
    lots = writer.member_lots(member_id)
    uses = [
        Use(x.lot_id, x.merchant_id, x.remaining) for x in lots if x.expires_at is not None and x.expires_at <= until
    ]
    total = sum(u.points for u in uses)
    if not total:
        return Expired(member_id, 0, {})
    source = f"expire:{member_id}:{until}:{run}"
    writer.checked.add(source)  # a new run's own key: nothing to look up
    writer.open(Entry(source, "expire", member_id, CHAIN_MERCHANT, until[:10], until))
    writer.use(member_id, source, uses, 1, "expire")
    writer.book(source, breakage_postings(member_id, uses))
    by: dict[str, int] = defaultdict(int)
    for u in uses:
        by[u.merchant_id] += u.points
    return Expired(member_id, total, dict(by))


def _bump_members(tx: Tx, member_ids: list[str]) -> None:
    """New versions of the members in the changes feed, in key order: the tills pull their lowered balances."""
    if not member_ids:
        return
    row = tx.one("UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value", [len(member_ids)])
    assert row is not None
    first = int(row[0]) - len(member_ids) + 1
    tx.many(
        "UPDATE members SET version = ? WHERE member_id = ?", [(first + n, m) for n, m in enumerate(sorted(member_ids))]
    )


# -- the check -------------------------------------------------------------------------------------------


class Code(StrEnum):
    """Why the check failed; stable, for scripts and monitoring."""

    UNBALANCED = "ledger_unbalanced"
    MEMBER_POINTS = "member_points_differ"
    MEMBER_VALUE = "member_value_differ"
    MEMBER_LOTS = "member_lots_differ"
    MERCHANT_LOTS = "merchant_lots_differ"
    LIABILITY = "liability_differs"
    GIFT_VALUE = "gift_value_differs"
    CLOSE_POSITIONS = "close_positions_differ"
    """A close's kept points outstanding (``ledger_close_positions``) are not the postings filed up to it."""


@dataclass(frozen=True, slots=True)
class Failure:
    code: Code
    subject: str
    expected: int
    found: int

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "subject": self.subject, "expected": self.expected, "found": self.found}


@dataclass(frozen=True, slots=True)
class Books:
    """What the check compares, read in one transaction."""

    unbalanced: list[tuple[str, str, int]]
    members: dict[str, tuple[int, int]]
    """member -> (points, stored value) as head office shows them (the members table)."""
    accounts: dict[tuple[Kind, str], int]
    member_lots: dict[str, int]
    merchant_lots: dict[str, int]
    gift_cards: dict[str, int] = field(default_factory=dict)
    """gift card -> its balance as head office holds it (``gift_cards``)."""
    issued_by_period: dict[tuple[str, str], int] = field(default_factory=dict)
    """(period filed under, merchant) -> the sum of its ``merchant_issued`` postings."""
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    """closed period whose close kept positions -> merchant -> the points outstanding it kept."""


def compare(books: Books) -> list[Failure]:
    """Every failure, in a stable order: unbalanced transactions first, then members, then merchants."""
    out = [Failure(Code.UNBALANCED, f"{t}:{u}", 0, n) for t, u, n in books.unbalanced]
    acc = books.accounts
    for m in sorted(set(books.members) | {o for k, o in acc if k in MEMBER_KINDS}):
        shown_points, shown_value = books.members.get(m, (0, 0))
        ledger_points, ledger_value = acc.get((Kind.MEMBER_POINTS, m), 0), acc.get((Kind.MEMBER_VALUE, m), 0)
        if shown_points != ledger_points:
            out.append(Failure(Code.MEMBER_POINTS, m, ledger_points, shown_points))
        if shown_value != ledger_value:
            out.append(Failure(Code.MEMBER_VALUE, m, ledger_value, shown_value))
        backed = ledger_points + acc.get((Kind.MEMBER_OVERDRAFT, m), 0)
        if backed != books.member_lots.get(m, 0):
            out.append(Failure(Code.MEMBER_LOTS, m, backed, books.member_lots.get(m, 0)))
    issuers = {o for k, o in acc if k is Kind.ISSUED} | set(books.merchant_lots)
    for merchant in sorted(issuers):
        position = -acc.get((Kind.ISSUED, merchant), 0)
        if position != books.merchant_lots.get(merchant, 0):
            out.append(Failure(Code.MERCHANT_LOTS, merchant, position, books.merchant_lots.get(merchant, 0)))
    positions = -sum(n for (k, _), n in acc.items() if k is Kind.ISSUED)
    liability = sum(n for (k, _), n in acc.items() if k in (Kind.MEMBER_POINTS, Kind.MEMBER_OVERDRAFT))
    if positions != liability:
        out.append(Failure(Code.LIABILITY, "chain", liability, positions))
    for card in sorted(set(books.gift_cards) | {o for k, o in acc if k is Kind.GIFT_VALUE}):
        held, booked = books.gift_cards.get(card, 0), acc.get((Kind.GIFT_VALUE, card), 0)
        if held != booked:
            out.append(Failure(Code.GIFT_VALUE, card, booked, held))
    return out + compare_kept(books)


def compare_kept(books: Books) -> list[Failure]:
    """Each close's kept positions against the ``merchant_issued`` postings filed up to its period."""
    out: list[Failure] = []
    for period, kept in sorted(books.kept.items()):
        due: dict[str, int] = defaultdict(int)
        for (filed, owner), n in books.issued_by_period.items():
            if filed <= period:
                due[owner] -= n
        for merchant in sorted(set(kept) | {m for m, n in due.items() if n}):
            if kept.get(merchant, 0) != due.get(merchant, 0):
                out.append(
                    Failure(Code.CLOSE_POSITIONS, f"{period}:{merchant}", due.get(merchant, 0), kept.get(merchant, 0))
                )
    return out


MEMBER_KINDS = frozenset({Kind.MEMBER_POINTS, Kind.MEMBER_VALUE, Kind.MEMBER_OVERDRAFT})


def read_books(tx: Tx) -> Books:
    unbalanced_rows = tx.all(
        "SELECT ledger_txn_id, unit, SUM(amount) FROM ledger_postings GROUP BY ledger_txn_id, unit "
        "HAVING SUM(amount) <> 0 ORDER BY ledger_txn_id, unit"
    )
    members = {str(r[0]): (int(r[1]), int(r[2])) for r in tx.all("SELECT member_id, points, stored_value FROM members")}
    accounts = {
        (Kind(str(r[0])), str(r[1])): int(r[2])
        for r in tx.all("SELECT kind, owner, SUM(amount) FROM ledger_postings GROUP BY kind, owner")
    }
    lots = tx.all("SELECT member_id, merchant_id, SUM(remaining) FROM ledger_lots GROUP BY member_id, merchant_id")
    member_lots: dict[str, int] = defaultdict(int)
    merchant_lots: dict[str, int] = defaultdict(int)
    for member_id, merchant_id, n in lots:
        member_lots[str(member_id)] += int(n)
        merchant_lots[str(merchant_id)] += int(n)
    cards = {str(r[0]): int(r[1]) for r in tx.all("SELECT card_id, balance FROM gift_cards")}
    by_period = {
        (str(r[0]), str(r[1])): int(r[2])
        for r in tx.all(
            "SELECT t.period, p.owner, SUM(p.amount) FROM ledger_postings p JOIN ledger_txns t "
            "ON t.ledger_txn_id = p.ledger_txn_id WHERE p.kind = ? GROUP BY t.period, p.owner",
            [Kind.ISSUED.value],
        )
    }
    kept: dict[str, dict[str, int]] = {
        str(r[0]): {} for r in tx.all("SELECT period FROM ledger_closes WHERE positions_kept = 1")
    }
    for period, merchant, n in tx.all("SELECT period, merchant_id, outstanding FROM ledger_close_positions"):
        if str(period) in kept:  # what statements open with
            kept[str(period)][str(merchant)] = int(n)
    return Books(
        [(str(a), str(b), int(c)) for a, b, c in unbalanced_rows],
        members,
        accounts,
        member_lots,
        merchant_lots,
        cards,
        by_period,
        kept,
    )


def check(tx: Tx) -> list[Failure]:
    """The ledger proves the balances: every transaction sums to zero per unit, every member's balances
    are its accounts' sums and its lots back them, every merchant's points position is its lots, the
    merchants' positions sum to the chain's outstanding liability, and every gift card's balance is its
    account's sum. Empty: all hold."""
    return compare(read_books(tx))


def positions(tx: Tx, merchant_id: str) -> dict[str, int]:
    """A merchant's accounts (points issued and still held, accepted, breakage; stored value accepted)."""
    held = balances_of(tx, merchant_id)
    return {
        "points_outstanding": -held.get(Kind.ISSUED, 0),
        "points_accepted": held.get(Kind.ACCEPTED, 0),
        "points_breakage": held.get(Kind.BREAKAGE, 0),
        "value_accepted": held.get(Kind.VALUE_ACCEPTED, 0),
        "cash_taken": -held.get(Kind.MERCHANT_CASH, 0),
    }
