"""Ingest: store a terminal's journal batch exactly once, check every entry against the trust rules,
apply what passes and flag what breaks a rule.

Every entry is read with its kind's typed payload (``sync.protocol``). Offline facts are facts: an
entry that breaks an offline rule (a coupon used twice, a balance overspent) is stored, applied and
flagged. An entry that breaks a trust rule (``hq.policy``: a kind or sign its actor may not
produce, a refund of nothing or beyond its sale, spending without a valid proof, a replayed card, a
revoked device, another store) is stored and **quarantined**: it changes no balance and raises a
reconciliation item; an administrator releases or rejects it. One push is one transaction running
these stages in this order (``hq.push``, which adds the member stages of ``hq.members``), so that
concurrent pushes on PostgreSQL lock rows in one order and count correctly:

    terminal row (FOR UPDATE) -> dedupe -> typed payloads -> enrolments -> policy, members, cards
    -> prices -> proofs (payment codes, card taps) -> refunds against their sales -> journal rows
    -> sales -> member balances (sorted) -> coupon counters (sorted) -> member statistics (sorted, hq.stats)
    -> items -> versions -> watermark

Balances and coupon counters are changed with one ``UPDATE ... RETURNING`` per member or coupon
per batch; the running value before each entry is rebuilt from the returned end value, so an
overspend or an over-used coupon is pinned on the entry that crossed the line.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hq import businessday, checkins, ledger, merchants, policy, pools, rollup, stats, versions
from hq.db.engine import Tx
from hq.errors import HqError
from hq.policy import Actor, Breach, ProofLevel
from hq.recompute import differences, refund_priced
from sync.protocol import (
    AnyPayload,
    EntryKind,
    GiftPayload,
    GiftRedeemPayload,
    GiftRefundPayload,
    PayloadError,
    Proof,
    Reason,
    RefundPayload,
    SalePayload,
    TopupVoidPayload,
    VoidPayload,
    VoucherRedeemPayload,
    WireEntry,
    canonical_text,
    card_use_id,
    parse_payload,
    parse_time,
)
from terminal.loyalty import DEFAULT_BASE_RULE
from terminal.model import EarnRule, seq_ranges
from terminal.pricing import RefundResult
from terminal.rewards import spends_members_value

REVERSING_KINDS = frozenset({EntryKind.REFUND.value, EntryKind.VOID.value})
MAX_GAPS = 100
MAX_LOST = 100_000  # seqs one report of a damaged journal may name (a till's journal of years fits)
HQ_ACTOR = "head office"


class SeqConflict(HqError):
    def __init__(self, entry: WireEntry, held: Sequence[tuple[Any, ...]]) -> None:
        self.terminal_id, self.seq, self.txn_id = entry.terminal_id, entry.seq, entry.txn_id
        others = ", ".join(f"{t} seq {s} txn {x}" for t, s, x in held)
        super().__init__(
            f"entry {entry.terminal_id} seq {entry.seq} txn {entry.txn_id} conflicts with stored {others}; "
            "nothing of this batch was stored"
        )


class TxnTaken(HqError):
    """An entry names a transaction id head office holds another terminal's entry under (txn ids are unique chain
    wide): the entry can never be stored, and no entry of the pushing till's own explains it (that is a
    ``SeqConflict``). A stolen credential that learnt the id of a sale a till had not pushed yet (from its receipt)
    can get there first; the till keeps its entry, reports it lost, and goes on (``sync.client``)."""

    def __init__(self, entry: WireEntry, held_by: str, held_seq: int) -> None:
        self.terminal_id, self.seq, self.txn_id = entry.terminal_id, entry.seq, entry.txn_id
        self.held_by, self.held_seq = held_by, held_seq
        super().__init__(
            f"entry {entry.terminal_id} seq {entry.seq}: head office holds transaction {entry.txn_id} from "
            f"terminal {held_by} (its seq {held_seq}); nothing of this batch was stored"
        )


class PushLimited(HqError):
    """A terminal's entries stored today (head office's day, UTC) would pass ``Settings.push_entries_per_day`` or
    ``push_bytes_per_day``: nothing of the request is stored, the till keeps its entries and sends them again
    after ``retry_after`` seconds (the next day). Bounds what a stolen credential writes to head office's disk."""

    def __init__(self, terminal_id: str, day: str, what: str, limit: int, retry_after: int) -> None:
        self.terminal_id, self.day, self.what, self.limit, self.retry_after = terminal_id, day, what, limit, retry_after
        super().__init__(
            f"terminal {terminal_id} reached head office's bound of {limit} {what} a day for {day}; nothing of "
            f"this request was stored: send it again in {retry_after} s"
        )


def over_push_budget(settings: Settings, used: tuple[int, int], adding: tuple[int, int]) -> tuple[str, int] | None:
    """What a day's (entries, bytes) ``used`` plus ``adding`` would pass first, and its bound (pure)."""
    for what, limit, have, more in (
        ("entries", settings.push_entries_per_day, used[0], adding[0]),
        ("bytes", settings.push_bytes_per_day, used[1], adding[1]),
    ):
        if limit > 0 and more > 0 and have + more > limit:
            return what, limit
    return None


def seconds_to_next_day(received_at: str) -> int:
    """Seconds from ``received_at`` to head office's next day (UTC midnight), at least 1."""
    at = parse_time(received_at) or datetime.now(UTC)
    tomorrow = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - at).total_seconds()))


def spend_push_budget(tx: Tx, settings: Settings, terminal_id: str, received_at: str, entries: int, size: int) -> None:
    """Count ``entries`` stored (or lost ranges reported) of ``size`` bytes against the terminal's day; raises
    ``PushLimited`` (nothing counted) when they would pass its bound. The caller holds the terminal's row
    locked, so a terminal's pushes count one after the other."""
    if entries <= 0 and size <= 0:
        return
    day = received_at[:10]
    row = tx.one("SELECT entries, bytes FROM push_days WHERE terminal_id = ? AND day = ?", [terminal_id, day])
    used = (int(row[0]), int(row[1])) if row else (0, 0)
    over = over_push_budget(settings, used, (entries, size))
    if over is not None:
        raise PushLimited(terminal_id, day, over[0], over[1], seconds_to_next_day(received_at))
    if row is None:
        tx.run("DELETE FROM push_days WHERE terminal_id = ? AND day < ?", [terminal_id, day])  # a day is kept
        tx.run(
            "INSERT INTO push_days (terminal_id, day, entries, bytes, refused) VALUES (?, ?, ?, ?, 0)",
            [terminal_id, day, entries, size],
        )
    else:
        tx.run(
            "UPDATE push_days SET entries = entries + ?, bytes = bytes + ? WHERE terminal_id = ? AND day = ?",
            [entries, size, terminal_id, day],
        )


def overspent_today(tx: Tx, batch: Batch) -> tuple[int, int]:
    """What the batch's terminal's offline payments took beyond the balances they paid from (stored value and gift
    cards' value, points) on head office's day (UTC, as ``push_days`` counts it): a till's times cannot spread
    them over other days."""
    row = tx.one(
        "SELECT overspent, overspent_points FROM push_days WHERE terminal_id = ? AND day = ?",
        [batch.terminal_id, batch.received_at[:10]],
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)


def beyond_the_days_bound(tx: Tx, batch: Batch, value: int, points: int) -> tuple[bool, dict[str, int]] | None:
    """The one rule of an offline payment that took ``value`` (stored value, a gift card's, a voucher's) or
    ``points`` beyond the balances it paid from: counted against its terminal's day (``overspent_per_day``,
    ``overspent_points_per_day``; head office's day, ``overspent_today``), then None; or, when that would pass
    either bound, nothing counted and ``(points, detail)`` of the bound passed (``points``: the points' bound;
    ``detail``: ``overspent_today`` with this payment, ``overspent_per_day``): the payment is held for a person."""
    value_today, points_today = overspent_today(tx, batch)
    s = batch.settings
    for is_points, short, today, cap in (
        (False, value, value_today, s.overspent_per_day),
        (True, points, points_today, s.overspent_points_per_day),
    ):
        if short > 0 and today + short > cap:
            return is_points, {"overspent_today": today + short, "overspent_per_day": cap}
    count_overspent(tx, batch, value, points)
    return None


def count_overspent(tx: Tx, batch: Batch, value: int, points: int) -> None:
    """Count an offline payment's part beyond its balance against its terminal's day (``overspent_per_day``)."""
    tx.run(
        "INSERT INTO push_days (terminal_id, day, entries, bytes, refused, overspent, overspent_points) "
        "VALUES (?, ?, 0, 0, 0, ?, ?) ON CONFLICT (terminal_id, day) DO UPDATE SET "
        "overspent = push_days.overspent + excluded.overspent, "
        "overspent_points = push_days.overspent_points + excluded.overspent_points",
        [batch.terminal_id, batch.received_at[:10], value, points],
    )


def note_push_limited(tx: Tx, refused: PushLimited) -> None:
    """Count a refusal of the terminal's day (the fleet's metrics show it), in a transaction of its own."""
    tx.run(
        "INSERT INTO push_days (terminal_id, day, entries, bytes, refused) VALUES (?, ?, 0, 0, 1) "
        "ON CONFLICT (terminal_id, day) DO UPDATE SET refused = push_days.refused + 1",
        [refused.terminal_id, refused.day],
    )


class WrongTerminal(HqError):
    pass


class UnknownTerminal(HqError):
    pass


class CredentialRevoked(HqError):
    """The terminal's credential is revoked: checked when its token is read, and again once a push holds its row
    (a push whose token was read just before the revocation committed stores nothing after it)."""


class Effect(StrEnum):
    """What ingesting an entry did to balances; kept on the journal row for reconciliation."""

    APPLIED = "applied"
    NONE = "none"  # no member, or nothing to change
    UNKNOWN_MEMBER = "unknown_member"  # applied once head office knows the member
    MALFORMED = "malformed"  # not its kind's model: stored as it came, never applied
    QUARANTINED = "quarantined"  # broke a trust rule: no balance changed until an admin releases it
    REJECTED = "rejected"  # quarantined, then rejected by an admin: never applied


NOT_APPLIED = frozenset({Effect.MALFORMED, Effect.QUARANTINED, Effect.REJECTED})


PUSH_ENTRIES_PER_DAY = 50_000
"""The default bound on the entries head office stores of one terminal a day (``hq serve --push-entries-per-day``)."""
PUSH_BYTES_PER_DAY = 256 * 1024 * 1024
"""The default bound on their payloads' bytes (``hq serve --push-bytes-per-day``)."""


@dataclass(frozen=True, slots=True)
class Settings:
    clock_skew: float = 300.0
    """Seconds a terminal's clock may differ from head office's before it is flagged."""
    write_off_points: int = 0
    """Overspends of at most this many points are settled automatically (written off)."""
    write_off_stored_value: int = 0
    timezone: str = "UTC"
    """The chain's business-day time zone (reports group entries by day in it)."""
    recompute: bool = True
    """Price each reported sale again with head office's documents: earned points above the rules
    are quarantined, any other figure that differs is flagged."""
    spend_needs_proof: bool = True
    """Spending points or stored value needs a proof (card, payment code); off only for a chain that
    trusts its POS to vouch for the member (docs/security.md)."""
    card_keys: policy.CardKeys = policy.CardKeys()
    """The SUN master key and card-hash key, when head office holds them: SUN taps are then verified."""
    max_offline: float = 24 * 3600
    """Seconds after its last pull a till may still take a payment head office never confirmed (the till's
    own ``payments.max_offline`` default)."""
    attested_stored_value_per_day: int = 50_000
    """Stored value one terminal may take per day on card proofs head office cannot check again."""
    attested_points_per_day: int = 50_000
    overspent_per_day: int = 50_000
    """Value one terminal's offline payments (members' stored value and gift cards) may take beyond the balances
    they pay from per day head office received them (its own clock); a payment beyond it is held
    (``stored_value_overspent``, ``gift_card_overspent``) for a person, not applied: each offline payment proves
    itself by a fresh read of the card, so a stolen till credential and a card worth little would otherwise have
    the till's merchant owed whatever it wrote."""
    overspent_points_per_day: int = 50_000
    """The same for points spent beyond members' balances (``points_overspent``)."""
    push_entries_per_day: int = 0
    """Entries (and lost seq ranges reported) head office stores of one terminal a day, by its own day (UTC); beyond
    it a push is refused with ``push_limited`` and the till keeps its entries and sends them the next day. 0: no
    bound, as for a store a program opens itself (a migration, a benchmark); head office's server (``open_store``,
    ``hq serve``) bounds it by ``PUSH_ENTRIES_PER_DAY``: a busy till makes a few thousand sales a day, so a week's
    backlog fits."""
    push_bytes_per_day: int = 0
    """Bytes of entries' payloads head office stores of one terminal a day (0: no bound; the server's:
    ``PUSH_BYTES_PER_DAY``)."""


# -- pure: what an entry claims -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    member_id: str | None = None
    uid_hash: str | None = None
    points: int = 0
    stored_value: int = 0
    total: int = 0
    coupons: tuple[str, ...] = ()
    code_id: str | None = None
    original_txn: str | None = None
    restored: tuple[str, ...] | None = None
    """Coupons a refund or void gives back (``coupons_restored``); None: all of them (a void)."""
    spent_points: int = 0


def facts_of(kind: str, payload: AnyPayload | None) -> Facts:
    """The fields head office books, from the entry's typed payload (nothing for a malformed one)."""
    if payload is None:
        return Facts()
    v = payload.values()
    if isinstance(payload, SalePayload):
        return Facts(
            v.member_id,
            payload.uid_hash,
            v.points,
            v.stored_value,
            v.total,
            tuple(dict.fromkeys(payload.coupons)),
            payload.code_id,
            spent_points=payload.points_redeemed,
        )
    if isinstance(payload, RefundPayload):
        restored = None if kind == EntryKind.VOID.value else tuple(dict.fromkeys(payload.coupons_restored))
        return Facts(
            v.member_id, None, v.points, v.stored_value, v.total, original_txn=payload.original_txn, restored=restored
        )
    if isinstance(payload, TopupVoidPayload):
        return Facts(v.member_id, None, v.points, v.stored_value, v.total, original_txn=payload.original_txn)
    if isinstance(payload, GiftPayload):  # a gift card's hash is no member's card
        # a refund names the payment it gives back; a payment, the sale it paid (``sale_ref``), if it names one
        named = payload.sale_ref if isinstance(payload, GiftRedeemPayload) else getattr(payload, "original_txn", None)
        return Facts(None, None, 0, 0, v.total, original_txn=named or None)
    if isinstance(payload, VoucherRedeemPayload):  # the sale it paid part of: what that sale's returns keep of it
        return Facts(v.member_id, None, v.points, v.stored_value, v.total, original_txn=payload.sale_ref or None)
    return Facts(v.member_id, getattr(payload, "uid_hash", None), v.points, v.stored_value, v.total)


def contiguous(watermark: int, seqs: Iterable[int]) -> tuple[int, list[tuple[int, int]]]:
    """The highest seq reachable from ``watermark`` without a hole, and the holes (first, last).

    ``seqs`` are the stored seqs above ``watermark``, ascending; everything up to it is stored.
    """
    acked, prev, gaps = watermark, watermark, []
    for seq in seqs:
        if seq > prev + 1:
            gaps.append((prev + 1, seq - 1))
        elif not gaps:
            acked = seq
        prev = seq
    return acked, gaps


def payload_json(payload: dict[str, Any]) -> str:
    """How head office stores a payload or document: canonical JSON text."""
    try:
        return canonical_text(payload)
    except ValueError:  # a lone surrogate cannot be stored as UTF-8: keep it escaped, nothing lost
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))


# -- the batch -----------------------------------------------------------------------------------

P = TypeVar("P")
"""A payload model (``Batch.standing``)."""


@dataclass
class Item:
    item_id: str
    seq: int | None
    txn_id: str | None
    day: str
    reason: Reason
    detail: dict[str, Any]
    state: str = "open"
    note: str | None = None
    quarantined: bool = False


@dataclass
class Batch:
    terminal_id: str
    store_id: str
    received_at: str
    settings: Settings
    entries: list[WireEntry]
    payloads: list[AnyPayload | None] = field(default_factory=list)
    facts: list[Facts] = field(default_factory=list)
    created: list[datetime | None] = field(default_factory=list)
    effective: list[datetime] = field(default_factory=list)
    """When head office holds each entry was made: the till's time, but never before the terminal's last
    pull (a till pushes everything it has before it pulls) nor after it was received."""
    last_pull: datetime | None = None
    offset: float | None = None
    """The till's clock minus head office's, measured on the request that brought the batch."""
    calendar: businessday.BusinessDay = businessday.BusinessDay()
    """The store's business day (its time zone and cut-off): ``days`` are in it."""
    days: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    proofs: list[ProofLevel | None] = field(default_factory=list)
    devices: list[str | None] = field(default_factory=list)
    """The device behind each payment head office did not confirm online (its offline cap bounds it)."""
    items: list[Item] = field(default_factory=list)
    touched_members: set[str] = field(default_factory=set)
    touched_coupons: set[str] = field(default_factory=set)
    touched_cards: set[str] = field(default_factory=set)
    spending: set[int] = field(default_factory=set)
    """The sales that spend the member's value (points, stored value, a personal coupon): their proof counts."""
    actor: Actor = Actor.TERMINAL
    _documents: versions.Documents | None = None
    _coupons: dict[str, tuple[Any, ...]] | None = None
    _payments: dict[str, str | None] | None = None

    def flag(self, i: int, reason: Reason, subject: str = "", **detail: Any) -> Item:
        e = self.entries[i]
        item = Item(f"{e.txn_id}:{reason.value}:{subject}".rstrip(":"), e.seq, e.txn_id, self.days[i], reason, detail)
        self.items.append(item)
        return item

    def quarantine(self, i: int, breach: Breach) -> Item:
        """The entry broke a trust rule: stored, no balance changes, an item to release or reject."""
        item = self.flag(i, breach.reason, breach.subject, **breach.detail)
        item.quarantined = True
        if self.effects[i] is not Effect.MALFORMED:
            self.effects[i] = Effect.QUARANTINED
        member_id = self.facts[i].member_id
        if member_id:  # the till showed the entry's effect: it must pull head office's balance
            self.touched_members.add(member_id)
        return item

    def coupon_rows(self, tx: Tx) -> dict[str, tuple[Any, ...]]:
        """(coupon_id, body, deleted) of each coupon the batch's entries name, read once a push (pricing, proofs
        and the use counts all read them; no stage of a push changes a coupon's document)."""
        if self._coupons is None:
            named = {c for f in self.facts for c in f.coupons}
            self._coupons = _lookup(tx, "SELECT coupon_id, body, deleted FROM coupons WHERE {cond}", "coupon_id", named)
        return self._coupons

    def documents(self, tx: Tx) -> versions.Documents:
        """The pricing documents and their versions, read once a batch."""
        if self._documents is None:
            self._documents = versions.Documents(tx, window=self.settings.max_offline, slack=self.settings.clock_skew)
        return self._documents

    def payments_held(self, tx: Tx) -> dict[str, str | None]:
        """The sale each gift card payment of this till head office holds names (``sale_ref``), of those the
        batch's card refunds give back: read once a push."""
        if self._payments is None:
            named = {p.original_txn for p in self.payloads if isinstance(p, GiftRefundPayload)}
            rows = _lookup(
                tx, "SELECT txn_id, original_txn, payload, terminal_id, kind FROM journal WHERE {cond}", "txn_id", named
            )
            self._payments = {
                txn: _named_sale(row[1], row[2])
                for txn, row in rows.items()
                if row[3] == self.terminal_id and row[4] == EntryKind.GIFT_REDEEM.value
            }
        return self._payments

    def standing(self, upto: int, kind: type[P]) -> Iterator[tuple[int, P]]:
        """The entries of the batch before ``upto`` whose payload is a ``kind`` and that stand (applied, or waiting
        for their member: not held, not a duplicate), with their index."""
        for j in range(upto):
            payload = self.payloads[j]
            if isinstance(payload, kind) and self.effects[j] not in NOT_APPLIED:
                yield j, payload

    def sale(self, i: int) -> SalePayload | None:
        payload = self.payloads[i]
        return payload if isinstance(payload, SalePayload) and self.effects[i] is not Effect.MALFORMED else None


def _named_sale(original_txn: Any, payload: Any) -> str | None:
    """The sale a stored gift card payment names: its ``original_txn``, or for one stored before head office kept
    it there, its payload's ``sale_ref``."""
    if original_txn:
        return str(original_txn)
    try:
        named = json.loads(str(payload)).get("sale_ref")
    except (ValueError, AttributeError):
        return None
    return str(named) if named else None


def new_entries(tx: Tx, terminal_id: str, entries: list[WireEntry]) -> tuple[list[WireEntry], int]:
    """The entries not stored yet (ascending seq) and how many were duplicates. Raises, for the first entry in seq
    order that cannot be stored, SeqConflict (the terminal holds another entry at its seq or under its txn id) or
    TxnTaken (only another terminal's entry holds its txn id)."""
    seen: dict[int, WireEntry] = {}
    by_txn: dict[str, WireEntry] = {}
    for e in entries:
        prior = seen.get(e.seq) or by_txn.get(e.txn_id)
        if prior is not None and (prior.seq, prior.txn_id) != (e.seq, e.txn_id):
            raise SeqConflict(e, [(prior.terminal_id, prior.seq, prior.txn_id)])
        seen[e.seq], by_txn[e.txn_id] = e, e
    unique = sorted(seen.values(), key=lambda e: e.seq)
    held = _held(tx, terminal_id, unique)
    fresh = []
    for e in unique:
        mine = [h for h in held if (h[0] == e.terminal_id and h[1] == e.seq) or h[2] == e.txn_id]
        if mine == [(e.terminal_id, e.seq, e.txn_id)]:
            continue
        if any(h[0] == e.terminal_id for h in mine):
            raise SeqConflict(e, mine)
        if mine:
            raise TxnTaken(e, str(mine[0][0]), int(mine[0][1]))
        fresh.append(e)
    return fresh, len(entries) - len(fresh)


def _held(tx: Tx, terminal_id: str, entries: list[WireEntry]) -> list[tuple[Any, ...]]:
    if not entries:
        return []
    by_seq, p1 = tx.in_list("seq", [e.seq for e in entries])
    by_txn, p2 = tx.in_list("txn_id", [e.txn_id for e in entries])
    rows = tx.all(
        f"SELECT terminal_id, seq, txn_id FROM journal WHERE terminal_id = ? AND {by_seq}", [terminal_id, *p1]
    )
    rows += tx.all(f"SELECT terminal_id, seq, txn_id FROM journal WHERE {by_txn}", p2)
    return list(dict.fromkeys(tuple(r) for r in rows))


def _lookup(tx: Tx, sql: str, column: str, keys: set[str]) -> dict[str, tuple[Any, ...]]:
    if not keys:
        return {}
    cond, params = tx.in_list(column, sorted(keys))
    return {row[0]: tuple(row) for row in tx.all(sql.format(cond=cond), params)}


def read_payloads(batch: Batch) -> None:
    """Each entry's typed payload; one that is not its kind's model is noted, never guessed at."""
    received = parse_time(batch.received_at)
    assert received is not None
    for entry in batch.entries:
        created = parse_time(entry.created_at)
        batch.created.append(created)
        batch.devices.append(None)
        batch.effective.append(
            businessday.effective(created, batch.offset, batch.settings.clock_skew, batch.last_pull, received)
        )
        batch.days.append(batch.calendar.of(batch.effective[-1]))
        batch.proofs.append(None)
        try:
            payload: AnyPayload | None = parse_payload(entry.kind, entry.payload)
            problem = None
        except PayloadError as exc:
            payload, problem = None, exc
        batch.payloads.append(payload)
        batch.facts.append(facts_of(entry.kind, payload))
        batch.effects.append(Effect.NONE)
        i = len(batch.effects) - 1
        # A kind its actor may never produce is refused as that (kind_not_allowed, in classify), whatever its body.
        if problem is not None and not problem.unknown and policy.check_actor(batch.actor, entry.kind, None) is None:
            batch.effects[i] = Effect.MALFORMED
            batch.quarantine(i, Breach(Reason.MALFORMED_ENTRY, "payload", {"problem": str(problem)}))


def _clock_detail(batch: Batch, i: int) -> dict[str, Any]:
    """What an entry's clock flag shows: the till's time, head office's, and how it got there."""
    return {
        "terminal_time": batch.entries[i].created_at,
        "effective": _utc_text(batch.effective[i]),
        "measured_offset_seconds": batch.offset,
        "received_at": batch.received_at,
        "last_pull": _utc_text(batch.last_pull) if batch.last_pull else None,
    }


def classify(tx: Tx, batch: Batch) -> None:
    """Per entry: who may produce it, its store, its clock, and every offline rule it breaks that needs
    no counting (blocked cards and members); then its effect."""
    members = _lookup(
        tx,
        "SELECT member_id, status, blocked_at, deleted FROM members WHERE {cond}",
        "member_id",
        {f.member_id for f in batch.facts if f.member_id},
    )
    cards = _lookup(
        tx,
        "SELECT uid_hash, member_id, status, blocked_at, deleted FROM cards WHERE {cond}",
        "uid_hash",
        {f.uid_hash for f in batch.facts if f.uid_hash},
    )
    received = parse_time(batch.received_at)
    assert received is not None
    for i, (entry, facts) in enumerate(zip(batch.entries, batch.facts, strict=True)):
        created = batch.created[i]
        if created is None:
            batch.flag(
                i, Reason.MALFORMED_ENTRY, "created_at", problem=f"created_at {entry.created_at!r} is not ISO 8601"
            )
        elif (off := (created - batch.effective[i]).total_seconds()) > batch.settings.clock_skew:
            batch.flag(i, Reason.CLOCK_AHEAD, ahead_seconds=round(off, 1), **_clock_detail(batch, i))
        elif -off > batch.settings.clock_skew:
            batch.flag(i, Reason.CLOCK_BEHIND, behind_seconds=round(-off, 1), **_clock_detail(batch, i))
        if batch.effects[i] is Effect.MALFORMED:
            continue
        payload = batch.payloads[i]
        breach = policy.check_actor(batch.actor, entry.kind, payload) or policy.check_store(payload, batch.store_id)
        if breach is not None:
            batch.quarantine(i, breach)
            continue
        batch.effects[i] = _effect(batch, i, entry, facts, members, cards)


def _effect(
    batch: Batch,
    i: int,
    entry: WireEntry,
    facts: Facts,
    members: dict[str, tuple[Any, ...]],
    cards: dict[str, tuple[Any, ...]],
) -> Effect:
    if facts.uid_hash:
        _check_card(batch, i, entry, cards.get(facts.uid_hash))
    if facts.member_id is None:
        return Effect.NONE
    member = members.get(facts.member_id)
    if member is None or member[3]:
        batch.flag(
            i, Reason.UNKNOWN_MEMBER, member_id=facts.member_id, points=facts.points, stored_value=facts.stored_value
        )
        return Effect.UNKNOWN_MEMBER
    if member[1] == "blocked" and blocked_before(member[2], batch.effective[i]):
        batch.flag(i, Reason.MEMBER_BLOCKED, member_id=facts.member_id, blocked_at=member[2])
    return Effect.APPLIED if facts.points or facts.stored_value else Effect.NONE


def _check_card(batch: Batch, i: int, entry: WireEntry, card: tuple[Any, ...] | None) -> None:
    if card is None or card[4]:
        batch.flag(i, Reason.UNKNOWN_CARD, uid_hash=batch.facts[i].uid_hash)
    elif card[2] == "blocked" and blocked_before(card[3], batch.effective[i]):
        batch.flag(i, Reason.CARD_BLOCKED, uid_hash=card[0], member_id=card[1], blocked_at=card[3])


def blocked_before(blocked_at: str | None, made: datetime) -> bool:
    """Blocked at head office before the entry was made, as head office holds it (unknown block time counts
    as before)."""
    blocked = parse_time(blocked_at or "")
    return blocked is None or blocked <= made


def rule_documents(tx: Tx) -> tuple[dict[str, Any], EarnRule]:
    """Head office's earning-rule documents and base rule, as the tills have them (the same default)."""
    rule_docs = {str(r[0]): json.loads(r[1]) for r in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")}
    row = tx.one("SELECT rule_id, points, per_minor FROM rules WHERE rule_id = 'base' AND deleted = 0")
    return rule_docs, (EarnRule(str(row[0]), int(row[1]), int(row[2])) if row else DEFAULT_BASE_RULE)


def check_prices(tx: Tx, batch: Batch) -> None:
    """Price every reported sale again with the document versions it names (``hq.versions``):
    earned points above those rules are quarantined; any other figure that differs is flagged. A sale
    naming versions head office never issued is priced with the current documents and flagged."""
    sales = [i for i in range(len(batch.entries)) if batch.sale(i) is not None and batch.effects[i] not in NOT_APPLIED]
    if not batch.settings.recompute or not sales:
        return
    documents = batch.documents(tx)
    documents.load([s for i in sales if (s := batch.sale(i)) is not None])
    named = {c for i in sales for c in batch.facts[i].coupons}
    current_coupons = {k: json.loads(v[1]) for k, v in batch.coupon_rows(tx).items() if k in named and not v[2]}
    tiers = _lookup(
        tx,
        "SELECT member_id, tier FROM members WHERE deleted = 0 AND {cond}",
        "member_id",
        {batch.facts[i].member_id or "" for i in sales} - {""},
    )
    for i in sales:
        sale = batch.sale(i)
        assert sale is not None
        priced = documents.for_sale(sale, current_coupons, batch.effective[i])
        if priced.unknown:
            batch.flag(i, Reason.UNKNOWN_DOC_VERSION, versions=list(priced.unknown))
        try:
            if isinstance(priced.program, Exception):
                raise priced.program
            diff = differences(_as_head_office_sees(batch, i, sale, tiers), priced.program, priced.coupons)
        except Exception as exc:  # noqa: BLE001 - a sale head office cannot price is a fact to look at, not a failed push
            batch.flag(i, Reason.PRICE_MISMATCH, "unpriced", problem=f"head office could not price it: {exc!r}"[:300])
            if (breach := policy.check_points(sale, None)) is not None:
                batch.quarantine(i, breach)
            continue
        earned = diff.pop("points_earned", None)
        if earned is not None and (breach := policy.check_points(sale, earned[1])) is not None:
            batch.quarantine(i, breach)
        elif earned is not None:
            diff["points_earned"] = earned
        if diff and not priced.unknown:  # versions head office never issued: flagged above, not compared
            batch.flag(
                i,
                Reason.PRICE_MISMATCH,
                figures={k: {"terminal": a, "head_office": b} for k, (a, b) in diff.items()},
                versions="named" if priced.named else "current",
            )


LOCAL_TIME_SLACK = 14 * 3600  # a store's wall clock is within 14 hours of UTC, wherever it is


def _as_head_office_sees(batch: Batch, i: int, sale: SalePayload, tiers: dict[str, tuple[Any, ...]]) -> SalePayload:
    """The sale as head office prices it: in the member's tier as head office holds it (a till cannot
    raise it), and at the store time the till reported only when that agrees with when head office holds
    the sale was made (else at that time: an old campaign cannot be chosen by a date)."""
    changes: dict[str, Any] = {}
    member = tiers.get(batch.facts[i].member_id or "")
    if member is not None and member[1] and member[1] != sale.tier:
        changes["tier"] = str(member[1])
    made = batch.effective[i]
    local = datetime.fromisoformat(sale.local_time).replace(tzinfo=None)
    if (
        abs((local - made.astimezone(UTC).replace(tzinfo=None)).total_seconds())
        > LOCAL_TIME_SLACK + batch.settings.clock_skew
    ):
        chain_time = made.astimezone(ZoneInfo(batch.calendar.timezone)).replace(tzinfo=None)
        changes["local_time"] = chain_time.isoformat(timespec="seconds")
    return sale.model_copy(update=changes) if changes else sale


# -- refunds and voids against their sales --------------------------------------------------------------


def check_reversals(tx: Tx, batch: Batch) -> None:
    """A refund or void names a sale head office holds (or an earlier entry of this batch) and gives
    back at most what that sale took, less earlier refunds; to the same member."""
    wanted = {
        f.original_txn for i, f in enumerate(batch.facts) if f.original_txn and batch.entries[i].kind in REVERSING_KINDS
    }
    held = _lookup(tx, SALE_LEFT_SQL + " WHERE s.{cond}", "txn_id", {t for t in wanted if t})
    left = {txn: stored_left(tx, txn, row) for txn, row in held.items()}
    pricer, merchant_of = _RefundPricer(tx, batch), merchants.resolver(tx)
    for i, entry in enumerate(batch.entries):
        sale = batch.sale(i)
        if sale is not None:
            left[entry.txn_id] = _batch_sale_left(batch, i, sale)
            pricer.sales[entry.txn_id] = sale
            continue
        refund = batch.payloads[i]
        if not isinstance(refund, RefundPayload) or batch.effects[i] in NOT_APPLIED:
            continue
        before = left.get(refund.original_txn)
        if before is not None:  # what the gift cards' own refunds gave back of it so far, this batch's before it too
            before = replace(before, cards_refunded=cards_refunded(tx, batch, i, refund.original_txn, before))
        breach = _reversal_breach(pricer, before, refund, batch.facts[i].member_id, entry.terminal_id)
        sale_row = held.get(refund.original_txn)  # None: a sale of this very batch, of the refund's own store
        if sale_row is not None and before is not None:
            breach = breach or _other_merchant(merchant_of, batch.store_id, refund.original_txn, sale_row[SALE_STORE])
        if breach is not None:
            batch.quarantine(i, breach)
        elif before is not None:
            left[refund.original_txn] = policy.after_refund(before, refund)
            pricer.earlier.setdefault(refund.original_txn, []).append(refund)


def _other_merchant(merchant_of: Callable[[str], str], store_id: str, sale_txn: str, sale_store: Any) -> Breach | None:
    """A refund or void at store ``store_id`` of another merchant than its sale's store ``sale_store`` (both
    merchants as head office holds them now, ``merchant_of``): held for a person. It would give the member back
    what the sale took at the expense of the refunding store's merchant while the sale's merchant keeps what it was
    owed for it (docs/settlement.md): with a stolen till credential of one merchant, another merchant's sales
    refunded again and again move money between them."""
    sale_merchant, here = merchant_of(str(sale_store)), merchant_of(store_id)
    if sale_merchant == here:
        return None
    detail = {"original_txn": sale_txn, "sale_store": str(sale_store), "sale_merchant": sale_merchant, "merchant": here}
    return Breach(Reason.REFUND_OTHER_MERCHANT, sale_txn, detail)


SALE_LEFT_SQL = (
    "SELECT s.txn_id, s.member_id, s.payable, s.stored_value, s.points_redeemed, j.effect, s.money_back, "
    "s.stored_value_back, s.points_restored, s.points_earned, s.points_clawed, s.terminal_id, j.store_id FROM sales s "
    "JOIN journal j ON j.txn_id = s.txn_id"
)
"""A held sale's row: what ``_sale_left`` reads (columns 0 to 11), then the store it was rung at (``SALE_STORE``)."""
SALE_STORE = 12


def _reversal_breach(
    pricer: _RefundPricer, left: policy.SaleLeft | None, refund: RefundPayload, member_id: str | None, terminal_id: str
) -> Breach | None:
    """What is wrong with a refund or void against its sale (``left``: what the sale has left), if anything:
    it names a sale head office holds, of its member, gives back no more money, stored value or points than
    the sale took; a void comes from the till that made the sale; a refund returns only units the sale has,
    takes back the points the rules take back and gives back only the coupons they give back (one head
    office cannot price is held, unless it returns every unit)."""
    breach = policy.check_reversal(left, refund, member_id)
    if breach is not None or left is None:
        return breach
    if isinstance(refund, VoidPayload):
        return policy.check_void_till(left, refund, True, terminal_id) or policy.check_clawback(
            left, refund, True, None
        )
    sale = pricer.sale_of(refund)
    earlier = pricer.earlier.get(refund.original_txn, [])
    if sale is not None and (beyond := policy.check_units([x.quantity for x in sale.lines], earlier, refund)):
        return beyond
    priced = pricer.price(refund)
    if priced is not None:
        return policy.check_clawback(left, refund, False, priced.points_clawed) or policy.check_coupons_back(
            refund, False, priced.coupons_restored
        )
    # Not priced (a document head office no longer holds, a sale it cannot read): a refund that, with those
    # before it, returns every unit takes back every point the sale keeps and gives its coupons back, as a
    # void; any other is held for a person to decide, not taken on the till's word.
    whole = sale is not None and policy.returns_everything(sale, [*earlier, refund])
    if not whole and pricer.checks:
        return policy.unpriced_refund(left, refund)
    give = tuple(sale.coupons) if whole and sale is not None else ()
    return policy.check_clawback(left, refund, whole, None) or policy.check_coupons_back(refund, False, give)


class _RefundPricer:
    """What head office's rules take back for a partial refund: the sale and the refunds before it,
    priced again (read once per sale and batch)."""

    def __init__(self, tx: Tx, batch: Batch) -> None:
        self.tx, self.batch = tx, batch
        self.sales: dict[str, SalePayload] = {}
        self.earlier: dict[str, list[RefundPayload]] = {}
        self._coupons: dict[str, Any] = {}

    @property
    def checks(self) -> bool:
        """Head office prices refunds again (off only in tests that trust the tills' figures)."""
        return self.batch.settings.recompute

    def sale_of(self, refund: RefundPayload) -> SalePayload | None:
        """The sale ``refund`` reverses (of this batch, or stored; None: not held or unreadable)."""
        return self.sales.get(refund.original_txn) or self._stored_sale(refund.original_txn)

    def price(self, refund: RefundPayload) -> RefundResult | None:
        """What the rules take and give back for ``refund`` (None: a void, or head office cannot price it)."""
        if isinstance(refund, VoidPayload) or not self.batch.settings.recompute:
            return None
        sale = self.sale_of(refund)
        if sale is None:
            return None
        try:
            documents = self.batch.documents(self.tx)
            documents.load([sale])
            priced = documents.for_sale(sale, self._coupon_docs(sale))  # the versions the sale was priced with
            if isinstance(priced.program, Exception):
                return None
            earlier = self.earlier.get(refund.original_txn, [])
            return refund_priced(sale, earlier, refund, priced.program, priced.coupons)
        except Exception:  # noqa: BLE001 - a refund head office cannot price: its caller holds it for a person
            return None

    def _stored_sale(self, txn_id: str) -> SalePayload | None:
        rows = self.tx.all(
            "SELECT kind, payload FROM journal WHERE txn_id = ? OR (original_txn = ? AND effect IN "
            "(?, ?, ?)) ORDER BY terminal_id, seq",
            [txn_id, txn_id, Effect.APPLIED.value, Effect.NONE.value, Effect.UNKNOWN_MEMBER.value],
        )
        sale, earlier = None, []
        for kind, text in rows:
            try:
                payload = parse_payload(str(kind), json.loads(str(text)))
            except (PayloadError, ValueError):
                continue
            if isinstance(payload, SalePayload):
                sale = payload
            elif isinstance(payload, RefundPayload):
                earlier.append(payload)
        if sale is not None:
            self.sales[txn_id] = sale
            self.earlier[txn_id] = earlier + self.earlier.get(txn_id, [])
        return sale

    def _coupon_docs(self, sale: SalePayload) -> dict[str, Any]:
        wanted = set(sale.coupons) - set(self._coupons)
        if wanted:
            found = _lookup(self.tx, "SELECT coupon_id, body FROM coupons WHERE {cond}", "coupon_id", wanted)
            self._coupons.update({k: json.loads(v[1]) for k, v in found.items()})
        return self._coupons


def _sale_left(row: tuple[Any, ...]) -> policy.SaleLeft:
    applied = row[5] in (Effect.APPLIED.value, Effect.NONE.value)  # not held, not waiting for its member
    return policy.SaleLeft(
        row[1],
        int(row[2]),
        int(row[3]),
        int(row[4]),
        applied,
        int(row[6]),
        int(row[7]),
        int(row[8]),
        int(row[9]),
        int(row[10]),
        str(row[11]) if row[11] is not None else None,
    )


def stored_left(tx: Tx, txn_id: str, row: Sequence[Any]) -> policy.SaleLeft:
    """What a sale head office holds (its ``SALE_LEFT_SQL`` row) took and what its refunds gave back, with the
    part of its stored value written off since, and what its refunds and voids said went onto its gift cards
    (``gift_cards``). Not what the cards' own refunds gave back: ``cards_refunded``."""
    left = _written_off(tx, txn_id, _sale_left(tuple(row)))
    rows = tx.all(
        "SELECT payload FROM journal WHERE original_txn = ? AND kind IN (?, ?) AND effect NOT IN (?, ?, ?)",
        [txn_id, *sorted(REVERSING_KINDS), *(e.value for e in sorted(NOT_APPLIED))],
    )
    declared = 0
    for (text,) in rows:
        try:
            declared += int(json.loads(str(text)).get("gift_cards", 0) or 0)
        except (ValueError, TypeError, AttributeError):
            continue  # stored as it came: a malformed one counts nothing (and was never applied)
    return replace(left, gift_cards_back=declared) if declared else left


def sale_left_at(tx: Tx, batch: Batch, upto: int, sale_txn: str) -> policy.SaleLeft | None:
    """What sale ``sale_txn`` took and what every route gave back of it before entry ``upto`` of the batch: held
    (the sale, its refunds and voids, the gift cards' refunds), and the batch's entries before it that count
    (None: head office holds no such sale)."""
    left = None
    for j in range(upto):
        sale = batch.sale(j)
        if sale is not None and batch.entries[j].txn_id == sale_txn:
            left = _batch_sale_left(batch, j, sale)
    if left is None:
        row = tx.one(SALE_LEFT_SQL + " WHERE s.txn_id = ?", [sale_txn])
        left = stored_left(tx, sale_txn, tuple(row)) if row is not None else None
    if left is None:
        return None
    for _, refund in batch.standing(upto, RefundPayload):
        if refund.original_txn == sale_txn:
            left = policy.after_refund(left, refund)
    return replace(left, cards_refunded=cards_refunded(tx, batch, upto, sale_txn, left))


def cards_refunded(tx: Tx, batch: Batch, upto: int, sale_txn: str, left: policy.SaleLeft) -> int:
    """What the gift cards' refunds (``gift_refund``) gave back of the payments naming sale ``sale_txn`` at the
    till that made it: those head office applied (the cards' activity), and the batch's before entry ``upto``."""
    if left.terminal_id is None:
        return 0
    row = tx.one(
        "SELECT COALESCE(SUM(e.amount), 0) FROM journal p JOIN journal r ON r.original_txn = p.txn_id "
        "JOIN gift_card_events e ON e.event_id = r.txn_id WHERE p.original_txn = ? AND p.kind = ? "
        "AND p.terminal_id = ? AND r.kind = ? AND e.kind = ?",
        [
            sale_txn,
            EntryKind.GIFT_REDEEM.value,
            left.terminal_id,
            EntryKind.GIFT_REFUND.value,
            EntryKind.GIFT_REFUND.value,
        ],
    )
    back = int(row[0]) if row else 0
    if batch.terminal_id != left.terminal_id:
        return back
    paid: dict[str, str | None] = {}  # the batch's payments so far that stand: the sale each names
    for j in range(upto):
        entry = batch.payloads[j]
        if batch.effects[j] in NOT_APPLIED:
            continue
        if isinstance(entry, GiftRedeemPayload):
            paid[batch.entries[j].txn_id] = entry.sale_ref or None
        elif isinstance(entry, GiftRefundPayload):
            named = paid.get(entry.original_txn) or batch.payments_held(tx).get(entry.original_txn)
            back += entry.amount if named == sale_txn else 0
    return back


def payment_sale(tx: Tx, batch: Batch, upto: int, payment_txn: str) -> str | None:
    """The sale a gift card payment of the batch's till names (``sale_ref``): one of the batch before entry
    ``upto`` that stands, or one head office holds (None: it names none, or there is no such payment)."""
    for j in range(upto):
        if batch.entries[j].txn_id == payment_txn:
            payment = batch.payloads[j]
            if isinstance(payment, GiftRedeemPayload) and batch.effects[j] not in NOT_APPLIED:
                return payment.sale_ref or None
            return None
    return batch.payments_held(tx).get(payment_txn)


def _batch_sale_left(batch: Batch, i: int, sale: SalePayload) -> policy.SaleLeft:
    """Entry ``i`` of the batch, a sale, as returns of it find it (nothing returned yet)."""
    return policy.SaleLeft(
        batch.facts[i].member_id,
        sale.payable,
        sale.stored_value,
        sale.points_redeemed,
        batch.effects[i] in (Effect.APPLIED, Effect.NONE),
        points_earned=sale.points_earned,
        terminal_id=batch.entries[i].terminal_id,
    )


def _written_off(tx: Tx, txn_id: str, left: policy.SaleLeft) -> policy.SaleLeft:
    """The sale with the part of its stored value beyond the member's balance (its ``stored_value_overspent``
    item's ``short``: the chain's loss) that an approved adjustment wrote off since it arrived: the part of each
    adjustment that lifted the member's balance from below zero. That part was never the member's money, and a
    refund giving it back after the write-off would make value out of nothing; a top-up that paid the shortfall
    back is the member's money, and writes nothing off. As ``hq.giftcards._written_off`` for a gift card."""
    if left.stored_value <= 0 or left.member_id is None:
        return left
    item = tx.one(
        "SELECT detail FROM recon_items WHERE txn_id = ? AND reason = ?", [txn_id, Reason.STORED_VALUE_OVERSPENT.value]
    )
    short = int(json.loads(str(item[0])).get("short", 0)) if item is not None else 0
    arrived_at = tx.one("SELECT received_at FROM journal WHERE txn_id = ?", [txn_id]) if short > 0 else None
    if arrived_at is None:
        return left
    rows = tx.all(
        "SELECT stored_value, stored_value_after FROM adjustments WHERE member_id = ? AND stored_value > 0 "
        "AND created_at >= ?",
        [left.member_id, str(arrived_at[0])],
    )
    cleared = sum(min(int(added), max(0, int(added) - int(after))) for added, after in rows)
    return replace(left, stored_value_written_off=min(short, cleared)) if cleared else left


SALE_COLUMNS = (
    "txn_id",
    "terminal_id",
    "member_id",
    "payable",
    "stored_value",
    "points_redeemed",
    "money_back",
    "stored_value_back",
    "points_restored",
    "points_earned",
    "points_clawed",
)


def record_sales(tx: Tx, batch: Batch) -> None:
    """Keep what each sale took, and add what each refund that counts gave back (``sales``)."""
    rows = []
    for i, entry in enumerate(batch.entries):
        sale = batch.sale(i)
        if sale is not None:
            rows.append(
                (
                    entry.txn_id,
                    entry.terminal_id,
                    batch.facts[i].member_id,
                    sale.payable,
                    sale.stored_value,
                    sale.points_redeemed,
                    0,
                    0,
                    0,
                    sale.points_earned,
                    0,
                )
            )
    tx.insert_rows("sales", SALE_COLUMNS, rows)
    for i, refund in enumerate(batch.payloads):
        if isinstance(refund, RefundPayload) and batch.effects[i] not in NOT_APPLIED:
            add_reversal(tx, refund)


WAITING_SQL = (
    "SELECT txn_id, kind, payload, member_id, points, stored_value, terminal_id, store_id, day, seq, effect "
    "FROM journal WHERE {cond} ORDER BY terminal_id, seq"
)
"""The entries that name a batch's sales (``{cond}``: on ``original_txn``), the held ones among them picked
by their effect afterwards: a condition on it would let PostgreSQL's planner read them through the effect
index wherever its statistics, taken before the held entries grew to thousands, think them few, and every
push would read every held entry of the chain."""


def release_waiting(tx: Tx, batch: Batch) -> None:
    """Refunds that arrived before their sale (held as ``refund_unknown_sale``) are checked again now
    that the sale is here, and applied when they pass: the result does not depend on arrival order."""
    sales = [e.txn_id for i, e in enumerate(batch.entries) if batch.sale(i) is not None]
    if not sales:
        return
    cond, params = tx.in_list("original_txn", sales)
    rows = tx.all(WAITING_SQL.format(cond=cond), params)
    held_rows = (r[:-1] for r in rows if r[-1] == Effect.QUARANTINED.value)
    for txn_id, kind, payload_text, member_id, points, value, terminal_id, store_id, day, seq in held_rows:
        terminal = str(terminal_id)
        holds = {
            str(r[0])
            for r in tx.all(
                "SELECT reason FROM recon_items WHERE txn_id = ? AND quarantine = 1 AND state = 'open'", [txn_id]
            )
        }
        refund = parse_payload(str(kind), json.loads(str(payload_text)))
        if holds != {Reason.REFUND_UNKNOWN_SALE.value} or not isinstance(refund, RefundPayload):
            continue
        row = tx.one(SALE_LEFT_SQL + " WHERE s.txn_id = ?", [refund.original_txn])
        if row is None:
            continue
        left = stored_left(tx, refund.original_txn, tuple(row))
        # every card refund of the batch is stored by now
        left = replace(left, cards_refunded=cards_refunded(tx, batch, 0, refund.original_txn, left))
        breach = _reversal_breach(_RefundPricer(tx, batch), left, refund, member_id, terminal)
        breach = breach or _other_merchant(merchants.resolver(tx), str(store_id), refund.original_txn, row[SALE_STORE])
        if breach is not None:  # still held, now for what it breaks against the sale that came
            held = Item(
                f"{txn_id}:{breach.reason.value}:{breach.subject}".rstrip(":"),
                int(seq),
                str(txn_id),
                str(day),
                breach.reason,
                breach.detail,
                quarantined=True,
            )
            save_items(tx, str(store_id), terminal, [held], batch.received_at)
            _settle_unknown_sale(tx, batch, str(txn_id), f"its sale arrived later; held for {breach.reason.value}")
            continue
        _apply_released(tx, batch, str(txn_id), refund, member_id, int(points), int(value))


def _apply_released(
    tx: Tx, batch: Batch, txn_id: str, refund: RefundPayload, member_id: str | None, points: int, value: int
) -> None:
    effect, coupons = apply_held(tx, txn_id, refund, member_id, points, value, batch.received_at)
    if effect is Effect.APPLIED and member_id:
        batch.touched_members.add(member_id)
    batch.touched_coupons.update(coupons)
    _settle_unknown_sale(tx, batch, txn_id, "its sale arrived later; checked against it and applied")


def _settle_unknown_sale(tx: Tx, batch: Batch, txn_id: str, note: str) -> None:
    """The ``refund_unknown_sale`` item of a refund whose sale has come: settled by head office."""
    tx.run(
        "UPDATE recon_items SET state = 'settled_auto', settled_at = ?, settled_by = ?, note = ? WHERE txn_id = ? "
        "AND reason = ? AND quarantine = 1 AND state = 'open'",
        [batch.received_at, HQ_ACTOR, note, txn_id, Reason.REFUND_UNKNOWN_SALE.value],
    )


def apply_held(
    tx: Tx, txn_id: str, payload: AnyPayload, member_id: str | None, points: int, value: int, now: str
) -> tuple[Effect, list[str]]:
    """Apply an entry held until now (released by an administrator, or a refund whose sale arrived): its
    balances go to its member (or wait for the member, like any entry naming one head office does not know
    yet); a refund counts against its sale, gives its coupons back and books the vouchers' part it kept as a
    first ingest does (``book_return_kept``, an item made at ``now`` for a claim beyond). Returns its effect
    and the coupons whose counts changed (the caller moves their versions, and the member's)."""
    known = (
        member_id is not None
        and tx.one("SELECT 1 FROM members WHERE member_id = ? AND deleted = 0", [member_id]) is not None
    )
    effect = (
        Effect.APPLIED
        if known and (points or value)
        else Effect.UNKNOWN_MEMBER
        if member_id and not known
        else Effect.NONE
    )
    if effect is Effect.APPLIED:
        tx.run(
            "UPDATE members SET points = points + ?, stored_value = stored_value + ? WHERE member_id = ?",
            [points, value, member_id],
        )
    coupons: list[str] = []
    if isinstance(payload, RefundPayload):
        add_reversal(tx, payload)
        only = None if isinstance(payload, VoidPayload) else tuple(payload.coupons_restored)
        coupons = _release_coupons(tx, payload.original_txn, only)
        if payload.voucher_kept:  # booked and flagged as at a first ingest (``book_return_kept``)
            row = tx.one("SELECT store_id, day, received_at, terminal_id, seq FROM journal WHERE txn_id = ?", [txn_id])
            if row is not None:
                where = {"store": str(row[0]), "day": str(row[1]), "at": str(row[2])}
                item = book_return_kept(tx, txn_id, int(row[4]), str(row[3]), payload, where)
                if item is not None:
                    save_items(tx, str(row[0]), str(row[3]), [item], now)
    tx.run("UPDATE journal SET effect = ? WHERE txn_id = ?", [effect.value, txn_id])
    ledger.post_journal(tx, [txn_id])
    rollup.count(tx, [txn_id])
    if effect in STATS_EFFECTS:
        stats.apply(tx, [txn_id])
    return effect, coupons


def apply_late_entries(tx: Tx, member_id: str, now: str) -> None:
    """Entries stored for this member before head office knew it are applied now (a member registered by
    an administrator, or enrolled by a till, later), and their unknown_member items settle automatically."""
    with rollup.one_write(tx):
        _apply_late_entries(tx, member_id, now)


LATE_SQL = "SELECT txn_id, points, stored_value, effect FROM journal WHERE member_id = ?"
"""A member's entries, locked, those waiting for the member picked by their effect afterwards (see
``WAITING_SQL``: with the effect in the query, each enrolment could read every waiting entry of the chain)."""


def _apply_late_entries(tx: Tx, member_id: str, now: str) -> None:
    mine = tx.all(LATE_SQL + tx.for_update, [member_id])
    rows = [r for r in mine if r[3] == Effect.UNKNOWN_MEMBER.value]
    if not rows:
        return
    points, value = sum(int(r[1]) for r in rows), sum(int(r[2]) for r in rows)
    tx.run(
        "UPDATE members SET points = points + ?, stored_value = stored_value + ? WHERE member_id = ?",
        [points, value, member_id],
    )
    txns = [str(r[0]) for r in rows]
    cond, params = tx.in_list("txn_id", txns)
    tx.run(f"UPDATE journal SET effect = ? WHERE {cond}", [Effect.APPLIED.value, *params])
    ledger.post_journal(tx, sorted(txns))  # UUIDv7: in the order they were made
    rollup.count(tx, txns)
    stats.apply(tx, txns)
    tx.run(
        f"UPDATE recon_items SET state = 'settled_auto', settled_at = ?, settled_by = ?, note = ? "
        f"WHERE reason = 'unknown_member' AND state = 'open' AND {cond}",
        [now, HQ_ACTOR, "member registered at head office later; entry applied", *params],
    )


def backfill_sales(tx: Tx) -> None:
    """After the migration that added ``sales``: what each sale held already took and gave back."""
    for txn_id, terminal_id, member_id, payload_text, _effect in tx.all(
        "SELECT txn_id, terminal_id, member_id, payload, effect FROM journal WHERE kind = 'sale' ORDER BY seq"
    ):
        try:
            sale = parse_payload("sale", json.loads(str(payload_text)))
        except (PayloadError, ValueError):
            continue
        assert isinstance(sale, SalePayload)
        tx.insert_rows(
            "sales",
            SALE_COLUMNS,
            [
                (
                    txn_id,
                    terminal_id,
                    member_id,
                    sale.payable,
                    sale.stored_value,
                    sale.points_redeemed,
                    0,
                    0,
                    0,
                    sale.points_earned,
                    0,
                )
            ],
        )
    for txn_id, kind, payload_text, effect in tx.all(
        "SELECT txn_id, kind, payload, effect FROM journal WHERE kind IN ('refund', 'void') ORDER BY seq"
    ):
        try:
            refund = parse_payload(str(kind), json.loads(str(payload_text)))
        except (PayloadError, ValueError):
            continue
        assert isinstance(refund, RefundPayload)
        tx.run("UPDATE journal SET original_txn = ? WHERE txn_id = ?", [refund.original_txn, txn_id])
        if effect not in {e.value for e in NOT_APPLIED}:
            add_reversal(tx, refund)


def add_reversal(tx: Tx, refund: RefundPayload) -> None:
    tx.run(
        "UPDATE sales SET money_back = money_back + ?, stored_value_back = stored_value_back + ?, "
        "points_restored = points_restored + ?, points_clawed = points_clawed + ? WHERE txn_id = ?",
        [
            refund.money_back,
            refund.stored_value_delta,
            refund.points_restored,
            refund.points_clawed,
            refund.original_txn,
        ],
    )


# -- proofs: what authorised each spend ------------------------------------------------------------------


KEPT = ":voucher_kept"
"""The suffix of a return's ledger transaction of the vouchers' part it kept (``keep_vouchers``)."""


def book_kept(tx: Tx, batch: Batch) -> None:
    """The vouchers' part each return of the batch that stands kept (``voucher_kept``), booked (``keep_vouchers``);
    a return that says they kept more than they paid its sale is flagged ``voucher_kept_beyond``."""
    for i, entry in enumerate(batch.entries):
        refund = batch.payloads[i]
        if not isinstance(refund, RefundPayload) or not refund.voucher_kept or batch.effects[i] in NOT_APPLIED:
            continue
        where = {"store": batch.store_id, "day": batch.days[i], "at": batch.received_at}
        item = book_return_kept(tx, entry.txn_id, entry.seq, entry.terminal_id, refund, where)
        if item is not None:
            batch.items.append(item)


def book_return_kept(
    tx: Tx, txn_id: str, seq: int, terminal_id: str, refund: RefundPayload, where: dict[str, str]
) -> Item | None:
    """The one path of a return's kept vouchers' part, at its first ingest (``book_kept``) and when it is applied
    later (``apply_held``: released from quarantine, or its sale arrived): booked (``keep_vouchers``), and the
    item ``voucher_kept_beyond`` (subject its sale) for what it said the vouchers kept beyond what they paid."""
    beyond = keep_vouchers(tx, txn_id, terminal_id, refund, where)
    if not beyond:
        return None
    reason, subject = Reason.VOUCHER_KEPT_BEYOND, refund.original_txn
    detail = {"original_txn": subject, "kept": refund.voucher_kept, "booked": refund.voucher_kept - beyond}
    return Item(f"{txn_id}:{reason.value}:{subject}", seq, txn_id, where["day"], reason, detail)


def keep_vouchers(tx: Tx, txn_id: str, terminal_id: str, refund: RefundPayload, where: dict[str, str]) -> int:
    """Book the vouchers' part return ``txn_id`` (of till ``terminal_id``) kept of its sale (``voucher_kept``: never paid out, the goods came
    back): what the merchants accepted for the vouchers that paid the sale (their redemptions at the sale's till
    naming it, ``sale_ref``) and the sale's other returns did not keep yet is no longer owed to them; the chain keeps
    it (``ledger.post_voucher_kept``). Only the sale's own till knows what its vouchers paid: a return from another
    keeps nothing. Returns what the return said the vouchers kept beyond that (booked nowhere): a till's word moves
    no money that vouchers did not pay its own sale."""
    if refund.voucher_kept <= 0:
        return 0
    sale = tx.one(
        "SELECT s.terminal_id, j.seq FROM sales s JOIN journal j ON j.txn_id = s.txn_id WHERE s.txn_id = ?",
        [refund.original_txn],
    )
    if sale is None or str(sale[0]) != terminal_id:
        return refund.voucher_kept
    paid = [
        str(r[0])
        for r in tx.all(
            "SELECT txn_id FROM journal WHERE original_txn = ? AND kind = ? AND terminal_id = ?",
            [refund.original_txn, EntryKind.VOUCHER_REDEEM.value, terminal_id],
        )
    ]
    # A redemption stored before head office kept the sale it names in ``original_txn``: its payload's ``sale_ref``
    # (the till's redemptions after the sale, of those).
    paid += [
        str(txn)
        for txn, text in tx.all(
            "SELECT txn_id, payload FROM journal WHERE terminal_id = ? AND seq > ? AND kind = ? AND original_txn IS NULL",
            [terminal_id, int(sale[1]), EntryKind.VOUCHER_REDEEM.value],
        )
        if _named_sale(None, text) == refund.original_txn
    ]
    returns = tx.all(
        "SELECT txn_id FROM journal WHERE original_txn = ? AND kind IN (?, ?)",
        [refund.original_txn, *sorted(REVERSING_KINDS)],
    )
    sources = paid + [str(r[0]) + KEPT for r in returns]
    left: list[tuple[str, int]] = []
    if paid:
        cond, params = tx.in_list("ledger_txn_id", sources)
        rows = tx.all(
            f"SELECT owner, SUM(amount) FROM ledger_postings WHERE kind = ? AND {cond} GROUP BY owner ORDER BY owner",
            [ledger.Kind.VALUE_ACCEPTED.value, *params],
        )
        left = [(str(owner), int(n)) for owner, n in rows if int(n) > 0]
    taken, want = [], refund.voucher_kept
    for merchant, n in left:
        take = min(n, want)
        taken.append((merchant, take))
        want -= take
    ledger.post_voucher_kept(tx, txn_id + KEPT, taken, where)
    return want


def check_proofs(tx: Tx, batch: Batch) -> None:
    """Every sale that spends names a proof head office accepts: a payment code it verifies (and that
    was never used before, chain-wide), or a secure card tap of the member's card whose counter was
    never used before, chain-wide (verified when head office holds the card keys; else bounded per
    terminal and day). Secure taps that only identified are recorded too, and their reuse flagged."""
    settings = batch.settings
    personal = _personal_coupons(tx, batch)
    for i in range(len(batch.entries)):
        sale = batch.sale(i)
        if sale is None or batch.effects[i] in NOT_APPLIED:
            continue
        theirs = personal & set(sale.coupons)
        if sale.spends or theirs:
            batch.spending.add(i)
        breach = policy.check_proof_named(sale, settings.spend_needs_proof, theirs)
        if breach is not None:
            batch.quarantine(i, breach)
            continue
        if i in batch.spending and sale.proof is Proof.PAYMENT_CODE:
            batch.proofs[i] = ProofLevel.PAYMENT_CODE
            device = _device(tx, sale)
            breach = policy.check_payment_code(sale, batch.effective[i], device) or _code_amount(
                tx, batch, i, sale, device
            )
            if breach is not None:
                batch.quarantine(i, breach)
        elif i in batch.spending and sale.proof is Proof.POS:
            batch.proofs[i] = ProofLevel.POS
        elif i in batch.spending and sale.proof is Proof.CARD and sale.tap is not None:
            breach = _card_amount(tx, batch, i, sale)
            if breach is not None:
                batch.quarantine(i, breach)
    _check_taps(tx, batch)
    check_payment_codes(tx, batch)
    _blocked_member_spent(tx, batch)
    _held_member_spent(tx, batch)


def _personal_coupons(tx: Tx, batch: Batch) -> set[str]:
    """The batch's coupons that are a member's own value (a campaign's personal coupon worth money off, a
    reward bought with points: ``rewards.spends_members_value``), so a sale using one needs the member's
    proof as points do."""
    used = {c for i in range(len(batch.entries)) if (sale := batch.sale(i)) is not None for c in sale.coupons}
    found = batch.coupon_rows(tx)
    return {c for c in used if spends_members_value(c, json.loads(found[c][1]) if c in found else {})}


def _code_amount(tx: Tx, batch: Batch, i: int, sale: SalePayload, device: policy.DeviceFacts) -> Breach | None:
    """A code head office confirmed pays at most what it confirmed, at that till, for that member. One it
    never saw (the till was offline; the code itself binds no amount) is bounded as an honest till bounds
    it: the device's offline cap per till and day, and no later than the till's offline limit after its
    last pull."""
    row = tx.one("SELECT terminal_id, member_id, amount FROM payment_confirms WHERE code_id = ?", [sale.code_id])
    if row is not None:
        if (str(row[0]), str(row[1])) != (batch.terminal_id, sale.member_id) or sale.stored_value > int(row[2]):
            return Breach(
                Reason.PAYMENT_EXCEEDS_CONFIRMED,
                sale.code_id or "",
                {"confirmed": int(row[2]), "paid": sale.stored_value, "confirmed_terminal": str(row[0])},
            )
        return None
    cert = str((device.cert_doc or {}).get("cert_id", ""))
    batch.devices[i] = cert
    cap = int((device.cert_doc or {}).get("offline_cap", 0))
    held = tx.one(
        "SELECT COALESCE(SUM(-stored_value), 0) FROM journal WHERE device = ? AND terminal_id = ? "
        "AND day = ? AND effect NOT IN (?, ?, ?)",
        [cert, batch.terminal_id, batch.days[i], *sorted(e.value for e in NOT_APPLIED)],
    )
    spent = (int(held[0]) if held else 0) + sum(
        -batch.facts[j].stored_value
        for j in range(i)
        if batch.devices[j] == cert and batch.days[j] == batch.days[i] and batch.effects[j] not in NOT_APPLIED
    )
    late = (
        batch.last_pull is not None
        and (batch.effective[i] - batch.last_pull).total_seconds()
        > batch.settings.max_offline + batch.settings.clock_skew
    )
    if spent + sale.stored_value <= cap and not late:
        return None
    return Breach(
        Reason.OFFLINE_CAP_EXCEEDED,
        cert,
        {
            "cert_id": cert,
            "offline_cap": cap,
            "paid_offline_that_day": spent + sale.stored_value,
            "hours_after_last_pull": round((batch.effective[i] - batch.last_pull).total_seconds() / 3600, 1)
            if batch.last_pull
            else None,
        },
    )


def _card_amount(tx: Tx, batch: Batch, i: int, sale: SalePayload) -> Breach | None:
    """A card payment head office confirmed online pays at most what it confirmed, at that till, for that member:
    the confirmation of this tap (its read counter), or any of this till's confirmations of this transaction. The
    tap was shown for the confirmed amount; a larger one journaled under it is a dishonest till's or a stolen
    credential's. One head office never confirmed (an offline payment) is bounded by the card rules as before."""
    assert sale.tap is not None
    txn_id = batch.entries[i].txn_id
    rows = tx.all(
        "SELECT terminal_id, member_id, amount FROM payment_confirms WHERE code_id = ? "
        "OR (terminal_id = ? AND txn_id = ?)",
        [card_use_id(sale.tap, txn_id), batch.terminal_id, txn_id],
    )
    for terminal_id, member_id, amount in rows:
        if (str(terminal_id), str(member_id)) != (batch.terminal_id, sale.member_id) or sale.stored_value > int(amount):
            return Breach(
                Reason.PAYMENT_EXCEEDS_CONFIRMED,
                card_use_id(sale.tap, txn_id),
                {"confirmed": int(amount), "paid": sale.stored_value, "confirmed_terminal": str(terminal_id)},
            )
    return None


def _device(tx: Tx, sale: SalePayload) -> policy.DeviceFacts:
    cert_id = (sale.code_id or "").partition(":")[0]
    row = tx.one("SELECT body FROM device_certs WHERE cert_id = ? AND deleted = 0", [cert_id])
    revoked = tx.one("SELECT body FROM revocations WHERE revocation_id = ? AND deleted = 0", [f"device:{cert_id}"])
    return policy.DeviceFacts(
        json.loads(row[0]) if row else None, str(json.loads(revoked[0]).get("revoked_at")) if revoked else None
    )


def _check_taps(tx: Tx, batch: Batch) -> None:
    taps = [(i, sale) for i in range(len(batch.entries)) if (sale := batch.sale(i)) is not None and sale.tap]
    cards = _lookup(
        tx,
        "SELECT uid_hash, member_id, secure, status, blocked_at FROM cards WHERE deleted = 0 AND {cond}",
        "uid_hash",
        {sale.tap.uid_hash for _, sale in taps if sale.tap},
    )
    for i, sale in taps:
        assert sale.tap is not None
        pays = i in batch.spending and sale.proof in (Proof.CARD, None)  # None: a coupon's tap (check_proof_named)
        card = cards.get(sale.tap.uid_hash)
        if pays and batch.effects[i] not in NOT_APPLIED:
            level, breach = policy.check_card_tap(
                sale.tap, card[1] if card else None, sale.member_id, batch.settings.card_keys, card[2] if card else None
            )
            batch.proofs[i] = level
            breach = (
                breach
                or _blocked_card_paid(tx, batch, i, card)
                or policy.check_attested(
                    level,
                    _attested_today(tx, batch, i),
                    sale,
                    (batch.settings.attested_stored_value_per_day, batch.settings.attested_points_per_day),
                )
            )
            if breach is not None:
                batch.quarantine(i, breach)
            elif level is ProofLevel.VERIFIED_CARD and card is not None and card[2] != "sun":
                # verified once: from now on this card proves itself with SUN, and a "MAC read" of it is made up
                tx.run("UPDATE cards SET secure = 'sun' WHERE uid_hash = ?", [card[0]])
                cards[card[0]] = (*card[:2], "sun", *card[3:])
        if sale.tap.counter is not None:
            _use_counter(tx, batch, i, sale, pays)


def _blocked_card_paid(tx: Tx, batch: Batch, i: int, card: tuple[Any, ...] | None) -> Breach | None:
    """A card head office had blocked before the sale was made that paid at a till that had not learnt of the
    block yet (offline, or not pulled since): the thief of a card reported lost or stolen spends nothing of its
    member's. The sale is quarantined ``card_blocked`` (for a person to release or reject) instead of only flagged
    by ``classify``. A payment head office confirmed online was authorised while the card was live."""
    if card is None or card[3] != "blocked" or not blocked_before(card[4], batch.effective[i]):
        return None
    if _confirmed_online(tx, batch, i):
        return None
    txn_id = batch.entries[i].txn_id
    batch.items[:] = [it for it in batch.items if not (it.txn_id == txn_id and it.reason is Reason.CARD_BLOCKED)]
    return Breach(
        Reason.CARD_BLOCKED, "", {"uid_hash": card[0], "member_id": card[1], "blocked_at": card[4], "paid": True}
    )


def _confirmed_online(tx: Tx, batch: Batch, i: int) -> bool:
    """Whether head office confirmed entry ``i``'s payment online for its till (and it was not withdrawn): it checked
    the card and the member then."""
    return (
        tx.one(
            "SELECT 1 FROM payment_confirms WHERE terminal_id = ? AND txn_id = ? AND withdrawn_at IS NULL",
            [batch.terminal_id, batch.entries[i].txn_id],
        )
        is not None
    )


def _blocked_member_spent(tx: Tx, batch: Batch) -> None:
    """A member head office had blocked before the sale was made (``classify`` flagged ``member_blocked``) whose value
    a till that had not learnt of the block let be spent (offline, or not pulled since): quarantined, so nothing of
    the member's moves until a person decides (a member blocked because their card or phone was stolen does not pay
    for the thief). A payment head office confirmed online was authorised while the member was active."""
    blocked = {it.txn_id for it in batch.items if it.reason is Reason.MEMBER_BLOCKED}
    for i in sorted(batch.spending):
        txn_id = batch.entries[i].txn_id
        if txn_id not in blocked or batch.effects[i] in NOT_APPLIED or _confirmed_online(tx, batch, i):
            continue
        flagged = [it for it in batch.items if it.txn_id == txn_id and it.reason is Reason.MEMBER_BLOCKED]
        if flagged:
            batch.items[:] = [it for it in batch.items if it not in flagged]
            batch.quarantine(i, Breach(Reason.MEMBER_BLOCKED, "", {**flagged[0].detail, "paid": True}))


def surviving_member(tx: Tx, member_id: str) -> str:
    """The member id whose value ``member_id`` is now: the one it was merged into (a merge moves every id merged
    into it along, so one step is the last), else itself. A spend hold is on it (docs/enrolment.md)."""
    row = tx.one("SELECT merged_into FROM enrolments WHERE member_id = ? AND merged_into IS NOT NULL", [member_id])
    return str(row[0]) if row else member_id


def _held_member_spent(tx: Tx, batch: Batch) -> None:
    """A spend of a member whose till-made id is contested (``hq.members.hold_spending``) that head office did not
    confirm online (an offline till that had not pulled the hold, or a credential that skipped the till's check):
    quarantined ``member_spend_held``, so neither card moves the id's value until a person decides. Earning
    goes on; a payment head office confirmed online was authorised before the hold."""
    spends = [i for i in sorted(batch.spending) if batch.facts[i].member_id and batch.effects[i] not in NOT_APPLIED]
    if not spends:
        return
    cond, params = tx.in_list("member_id", sorted({batch.facts[i].member_id for i in spends}))
    held = {str(r[0]) for r in tx.all(f"SELECT member_id FROM members WHERE spend_held = 1 AND {cond}", params)}
    for i in spends:  # one read a push; the few spends of a held member asked whether head office confirmed them
        member_id = batch.facts[i].member_id
        if member_id in held and not _confirmed_online(tx, batch, i):
            batch.quarantine(i, Breach(Reason.MEMBER_SPEND_HELD, member_id, {"member_id": member_id, "paid": True}))


def day_start(batch: Batch) -> str:
    """The start of head office's business day of this push, as UTC text (how ``received_at`` is stored)."""
    received = parse_time(batch.received_at)
    assert received is not None
    return _utc_text(batch.calendar.start(received))


def _attested_today(tx: Tx, batch: Batch, i: int) -> tuple[int, int]:
    """Stored value and points this terminal took on attested card proofs in the entries head office
    received today (its own clock: a till's times cannot spread them over other days)."""
    row = tx.one(
        "SELECT COALESCE(SUM(-stored_value), 0), COALESCE(SUM(points_spent), 0) FROM journal "
        "WHERE terminal_id = ? AND received_at >= ? AND proof = ? AND effect NOT IN (?, ?, ?)",
        [batch.terminal_id, day_start(batch), ProofLevel.ATTESTED_CARD.value, *sorted(e.value for e in NOT_APPLIED)],
    )
    value, points = (int(row[0]), int(row[1])) if row else (0, 0)
    for j in range(i):
        if batch.proofs[j] is ProofLevel.ATTESTED_CARD and batch.effects[j] not in NOT_APPLIED:
            value, points = value - batch.facts[j].stored_value, points + batch.facts[j].spent_points
    return value, points


def _use_counter(tx: Tx, batch: Batch, i: int, sale: SalePayload, pays: bool) -> None:
    """A SUN counter serves one transaction chain-wide; the card's high-water mark goes to every till."""
    entry, tap = batch.entries[i], sale.tap
    assert tap is not None and tap.counter is not None
    first = use_counter(tx, tap.uid_hash, tap.counter, entry.terminal_id, entry.txn_id)
    if first is not None:
        breach = Breach(
            Reason.CARD_REPLAYED,
            f"{tap.uid_hash[:16]}:{tap.counter}",
            {
                "uid_hash": tap.uid_hash,
                "counter": tap.counter,
                "first_terminal": first[0],
                "first_txn": first[1],
                "paid": pays,
            },
        )
        if pays and batch.effects[i] not in NOT_APPLIED:
            batch.quarantine(i, breach)
        else:
            batch.flag(i, breach.reason, breach.subject, **breach.detail)
    if tx.run(
        "UPDATE cards SET counter = ? WHERE uid_hash = ? AND (counter IS NULL OR counter < ?)",
        [tap.counter, tap.uid_hash, tap.counter],
    ):
        batch.touched_cards.add(tap.uid_hash)


def use_counter(tx: Tx, uid_hash: str, counter: int, terminal_id: str, txn_id: str) -> tuple[str, str] | None:
    """Use a SUN read counter of a card once in the chain (``card_taps``): None when it is this transaction's
    (now, or already), else the (terminal, txn) that used it first."""
    stored = tx.many_returning(
        "INSERT INTO card_taps (uid_hash, counter, terminal_id, txn_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (uid_hash, counter) DO NOTHING RETURNING txn_id",
        [(uid_hash, counter, terminal_id, txn_id)],
    )
    if stored[0] is not None:
        return None
    first = tx.one("SELECT terminal_id, txn_id FROM card_taps WHERE uid_hash = ? AND counter = ?", [uid_hash, counter])
    return None if first is None or str(first[1]) == txn_id else (str(first[0]), str(first[1]))


def check_payment_codes(tx: Tx, batch: Batch) -> None:
    """A payment code (device id + counter) is good once, chain-wide: a second use is a replay, and a
    replay that paid is quarantined (the member pays once)."""
    uses = sorted((f.code_id, i) for i, f in enumerate(batch.facts) if f.code_id)
    rows = [(code, batch.terminal_id, batch.entries[i].seq, batch.entries[i].txn_id) for code, i in uses]
    stored = tx.many_returning(
        "INSERT INTO payment_codes (code_id, terminal_id, seq, txn_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (code_id) DO NOTHING RETURNING code_id",
        rows,
    )
    replays = [(code, i) for (code, i), row in zip(uses, stored, strict=True) if row is None]
    first = _lookup(
        tx,
        "SELECT code_id, terminal_id, seq, txn_id FROM payment_codes WHERE {cond}",
        "code_id",
        {code for code, _ in replays},
    )
    for code, i in replays:
        held = first[code]
        breach = Breach(
            Reason.PAYMENT_CODE_REPLAYED,
            code,
            {"code_id": code, "first_terminal": held[1], "first_seq": held[2], "first_txn": held[3]},
        )
        if batch.effects[i] in NOT_APPLIED:
            batch.flag(i, breach.reason, breach.subject, **breach.detail)
        else:
            batch.quarantine(i, breach)


JOURNAL_COLUMNS = (
    "terminal_id",
    "seq",
    "txn_id",
    "kind",
    "payload",
    "created_at",
    "received_at",
    "effect",
    "member_id",
    "store_id",
    "day",
    "total",
    "points",
    "stored_value",
    "original_txn",
    "proof",
    "points_spent",
    "device",
    "made_at",
    "merchant_id",
)


def _utc_text(moment: datetime) -> str:
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # at the calendar's very edge: as it is
        pass
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def store_journal(tx: Tx, batch: Batch) -> None:
    rows = []
    for i, (e, f, effect, day, proof) in enumerate(
        zip(batch.entries, batch.facts, batch.effects, batch.days, batch.proofs, strict=True)
    ):
        rows.append(
            (
                e.terminal_id,
                e.seq,
                e.txn_id,
                e.kind,
                payload_json(e.payload),
                e.created_at,
                batch.received_at,
                effect.value,
                f.member_id,
                batch.store_id,
                day,
                f.total,
                f.points,
                f.stored_value,
                f.original_txn,
                proof.value if proof else None,
                f.spent_points,
                batch.devices[i],
                _utc_text(batch.effective[i]),
                e.merchant_id,
            )
        )
    tx.insert_rows("journal", JOURNAL_COLUMNS, rows)


def count_stats(tx: Tx, batch: Batch) -> None:
    """The members' statistics (``hq.stats``): every sale, refund and void of the batch that counts, in
    this transaction, so a sale is in its member's statistics as soon as head office holds it."""
    counted = [
        i
        for i, (e, effect) in enumerate(zip(batch.entries, batch.effects, strict=True))
        if effect in STATS_EFFECTS and e.kind in STATS_KINDS
    ]
    typed = {
        batch.entries[i].txn_id: p
        for i, p in enumerate(batch.payloads)
        if isinstance(p, SalePayload | RefundPayload) and batch.effects[i] is not Effect.MALFORMED
    }
    stats.apply(tx, [batch.entries[i].txn_id for i in counted], typed)


def record_checkins(tx: Tx, batch: Batch) -> None:
    """Door taps (``checkin`` entries) of members head office knows: a visit each, once per member, store and
    day (``hq.checkins.record``, with its statistics); their rewards are decided after the push
    (``hq.campaigns.reward_pending``), outside the journal's transaction."""
    for i, (entry, effect) in enumerate(zip(batch.entries, batch.effects, strict=True)):
        member_id = batch.facts[i].member_id  # after redirect: a member merged away counts for the one kept
        if entry.kind != EntryKind.CHECKIN.value or effect not in STATS_EFFECTS or member_id is None:
            continue
        at = _utc_text(batch.effective[i])
        visit = checkins.Visit(member_id, batch.store_id, batch.days[i], at, batch.terminal_id, "door", entry.txn_id)
        checkins.record(tx, visit)


STATS_EFFECTS = frozenset({Effect.APPLIED, Effect.NONE})
STATS_KINDS = frozenset({EntryKind.SALE.value, *REVERSING_KINDS})


def apply_balances(tx: Tx, batch: Batch) -> None:
    """Add each applied entry's points and stored value; flag entries that took a balance below zero."""
    per_member: dict[str, list[int]] = defaultdict(list)
    for i, (facts, effect) in enumerate(zip(batch.facts, batch.effects, strict=True)):
        if effect is Effect.APPLIED and facts.member_id:
            per_member[facts.member_id].append(i)
    sums = {
        m: (sum(batch.facts[i].points for i in idx), sum(batch.facts[i].stored_value for i in idx))
        for m, idx in per_member.items()
    }
    ends = tx.add_returning(
        "members", "member_id", ("points", "stored_value"), [(m, p, v) for m, (p, v) in sums.items()]
    )
    for member_id in sorted(per_member):
        end = ends[member_id]
        points_sum, value_sum = sums[member_id]
        batch.touched_members.add(member_id)
        _flag_overspends(batch, per_member[member_id], int(end[0]) - points_sum, int(end[1]) - value_sum)


def bound_overspends(tx: Tx, batch: Batch) -> None:
    """Hold each offline payment that would take its member's points or stored value further below zero than its
    terminal's day allows (``overspent_per_day``, ``overspent_points_per_day``; head office's day, ``push_days``):
    a stolen till credential and a member's card (each payment proving itself by a fresh read) would otherwise
    have the till's merchant owed, and reimbursed for points, whatever it wrote. Within the bound the payment is
    applied and flagged as before (``apply_balances``); a payment head office confirmed online was checked then.
    Only a sale that spends is a payment (``batch.spending``): a return clawing back points spent since leaves the
    member a debt, carried and flagged ``points_clawback_short`` (a void of a top-up spent since,
    ``stored_value_clawback_short``), and neither is held nor counts against the bound."""
    spending = [
        i
        for i, f in enumerate(batch.facts)
        if i in batch.spending
        and batch.effects[i] is Effect.APPLIED
        and f.member_id
        and (f.points < 0 or f.stored_value < 0)
    ]
    if not spending:
        return
    members = sorted({f.member_id for f in batch.facts if f.member_id})
    cond, params = tx.in_list("member_id", members)
    held = {
        str(r[0]): [int(r[1]), int(r[2])]
        for r in tx.all(f"SELECT member_id, points, stored_value FROM members WHERE {cond}", params)
    }
    for i, f in enumerate(batch.facts):
        if batch.effects[i] is not Effect.APPLIED or not f.member_id or f.member_id not in held:
            continue
        now = held[f.member_id]
        points, value = now[0] + f.points, now[1] + f.stored_value
        short_points = min(-points, -f.points) if f.points < 0 and points < 0 else 0
        short = min(-value, -f.stored_value) if f.stored_value < 0 and value < 0 else 0
        if (short or short_points) and i in batch.spending and not _confirmed_online(tx, batch, i):
            over = beyond_the_days_bound(tx, batch, short, short_points)
            if over is not None:
                is_points, detail = over
                reason = Reason.POINTS_OVERSPENT if is_points else Reason.STORED_VALUE_OVERSPENT
                beyond = (
                    {"balance_after": points, "short": short_points}
                    if is_points
                    else {"balance_after": value, "short": short}
                )
                batch.quarantine(i, Breach(reason, "", {"member_id": f.member_id, **beyond, **detail}))
                continue
        now[0], now[1] = points, value


def _flag_overspends(batch: Batch, indexes: list[int], points: int, value: int) -> None:
    """Flag each entry of ``indexes`` (one member's, in order, from ``points`` and ``value`` before the batch) that
    took a balance below zero, with the part it took beyond the balance (``short``)."""
    s = batch.settings
    for i in indexes:
        f = batch.facts[i]
        points, value = points + f.points, value + f.stored_value
        if f.points < 0 and points < 0:
            short = min(-points, -f.points)
            reason = _short_reason(batch, i, Reason.POINTS_OVERSPENT, Reason.POINTS_CLAWBACK_SHORT)
            item = batch.flag(i, reason, member_id=f.member_id, balance_after=points, short=short)
            _write_off(item, short, s.write_off_points)
        if f.stored_value < 0 and value < 0:
            short = min(-value, -f.stored_value)
            reason = _short_reason(batch, i, Reason.STORED_VALUE_OVERSPENT, Reason.STORED_VALUE_CLAWBACK_SHORT)
            item = batch.flag(i, reason, member_id=f.member_id, balance_after=value, short=short)
            _write_off(item, short, s.write_off_stored_value)


def _short_reason(batch: Batch, i: int, overspent: Reason, clawback: Reason) -> Reason:
    """Why entry ``i`` took a balance below zero: a payment (a sale that spends, ``batch.spending``, as
    ``bound_overspends`` counts it) overspent it; anything else is a return taking back what the member had spent
    since (a refund or void clawing back the points its sale earned, a till's void of its top-up): their debt, no
    payment."""
    return overspent if i in batch.spending else clawback


def _write_off(item: Item, short: int, tolerance: int) -> None:
    if short <= tolerance:
        item.state, item.note = "settled_auto", f"written off: {short} within the tolerance of {tolerance}"


def count_coupons(tx: Tx, batch: Batch) -> None:
    """Count every coupon use chain-wide and per member (quarantined sales too: the coupon left the
    till); flag uses beyond the coupon's limits."""
    uses = [(c, i) for i, f in enumerate(batch.facts) if batch.effects[i] is not Effect.MALFORMED for c in f.coupons]
    docs = batch.coupon_rows(tx)
    offered = _offered(tx, {c for c, _ in uses if c in docs and docs[c][2]})
    known = [(c, i) for c, i in uses if c in docs and (not docs[c][2] or c in offered)]
    for c, i in uses:
        if (c, i) not in known:
            batch.flag(i, Reason.UNKNOWN_COUPON, c, coupon_id=c)
    foreign = _other_members(batch, [(c, i, _named_in(docs[c][1], "member_id")) for c, i in known])
    counted = [(c, i) for c, i in known if (c, i) not in foreign]
    limits = {c: _limits(docs[c][1]) for c, _ in counted}
    _count(tx, batch, counted, limits, per_member=False)
    _count(tx, batch, [(c, i) for c, i in counted if batch.facts[i].member_id], limits, per_member=True)
    tx.many(
        "INSERT INTO coupon_uses (txn_id, coupon_id, member_id) VALUES (?, ?, ?) ON CONFLICT (txn_id, coupon_id) DO NOTHING",
        [(batch.entries[i].txn_id, c, batch.facts[i].member_id) for c, i in counted],
    )
    _count_pools(tx, batch, [(c, i, pools.pool_of(docs[c][1])) for c, i in known])
    _other_merchants(tx, batch, [(c, i, _named_in(docs[c][1], "merchant_id")) for c, i in known])


def _offered(tx: Tx, deleted: set[str]) -> set[str]:
    """Of coupons deleted at head office, those held by a gift link nobody has claimed yet (docs/wallet.md): still
    their member's, so a use by a till that had not pulled the hold counts, and the claim is refused."""
    return set(_lookup(tx, "SELECT coupon_id FROM gifts WHERE state = 'offered' AND {cond}", "coupon_id", deleted))


def _other_members(batch: Batch, uses: list[tuple[str, int, str | None]]) -> set[tuple[str, int]]:
    """A member's personal coupon named by a sale of another member, or of none: a till refuses it
    (``coupon_not_this_member``), so this is a dishonest till or a stolen credential. Flagged, and not counted
    as a use: the coupon stays its member's (else any till's credential could use up any member's coupons)."""
    found: set[tuple[str, int]] = set()
    for coupon, i, owner in uses:
        sale = batch.sale(i)
        if owner is None or sale is None or owner in (sale.member_id, batch.facts[i].member_id):
            continue
        found.add((coupon, i))
        batch.flag(
            i, Reason.COUPON_OTHER_MEMBER, coupon, coupon_id=coupon, coupon_member=owner, sale_member=sale.member_id
        )
    return found


def _named_in(body_json: str, field: str) -> str | None:
    """The coupon document's ``field`` (``member_id``: a personal coupon's member; ``merchant_id``: its issuer)."""
    try:
        found = json.loads(body_json).get(field)
    except (ValueError, AttributeError):
        return None
    return str(found) if found else None


def _other_merchants(tx: Tx, batch: Batch, uses: list[tuple[str, int, str | None]]) -> None:
    """A merchant's coupon redeemed at another merchant's store: a till that knows its merchant refuses it
    (``coupon_other_merchant``), so this is a till that did not know it yet, or a dishonest one. Flagged and
    counted all the same (the coupon left the till)."""
    owned = [(c, i, m) for c, i, m in uses if m is not None]
    if not owned:
        return
    here = merchants.resolver(tx)(batch.store_id)
    for coupon, i, owner in owned:
        if owner != here:
            batch.flag(
                i, Reason.COUPON_OTHER_MERCHANT, coupon, coupon_id=coupon, merchant_id=owner, store_merchant=here
            )


def check_merchants(tx: Tx, batch: Batch) -> None:
    """An entry that names another merchant than its store's (``WireEntry.merchant_id``): flagged; it is
    booked to its store's merchant as head office holds it, whatever the till says."""
    named = [(i, e.merchant_id) for i, e in enumerate(batch.entries) if e.merchant_id is not None]
    if not named:
        return
    here = merchants.resolver(tx)(batch.store_id)
    for i, claimed in named:
        if claimed != here:
            batch.flag(i, Reason.MERCHANT_MISMATCH, str(claimed), merchant_id=claimed, store_merchant=here)


def _count_pools(tx: Tx, batch: Batch, uses: list[tuple[str, int, str | None]]) -> None:
    """Count each pooled coupon's use against (pool, this terminal); flag a use beyond the till's allowance
    (only a stolen credential gets there: an honest till refuses first) or beyond the pool's quantity."""
    pooled = [(c, i, pool) for c, i, pool in uses if pool is not None]
    if not pooled:
        return
    counted = pools.count(
        tx, batch.terminal_id, [(batch.entries[i].txn_id, c, pool) for c, i, pool in pooled], batch.received_at
    )
    for (coupon, i, pool), use in zip(pooled, counted, strict=True):
        if use is None:
            continue
        if use.beyond_allocation:
            batch.flag(
                i,
                Reason.POOL_ALLOCATION_EXCEEDED,
                f"{pool}:{coupon}",
                pool_id=pool,
                coupon_id=coupon,
                allowed=use.allowed,
                use_number=use.terminal_use,
            )
        if use.beyond_quantity:
            batch.flag(
                i,
                Reason.POOL_OVERUSED,
                f"{pool}:{coupon}",
                pool_id=pool,
                coupon_id=coupon,
                quantity=use.quantity,
                use_number=use.chain_use,
            )


def _limits(body_json: str) -> dict[str, int]:
    try:
        limits = json.loads(body_json).get("limits") or {}
    except (ValueError, AttributeError):
        return {}
    return {k: v for k, v in limits.items() if k in ("global", "per_member") and type(v) is int}


def _count(
    tx: Tx, batch: Batch, uses: list[tuple[str, int]], limits: dict[str, dict[str, int]], *, per_member: bool
) -> None:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for c, i in uses:
        groups[(c, batch.facts[i].member_id or "") if per_member else (c, "")].append(i)
    keys = sorted(groups)
    if per_member:
        sql = (
            "INSERT INTO coupon_member_uses (coupon_id, member_id, uses) VALUES (?, ?, ?) ON CONFLICT (coupon_id, "
            "member_id) DO UPDATE SET uses = coupon_member_uses.uses + excluded.uses RETURNING uses"
        )
        ends = tx.many_returning(sql, [(c, m, len(groups[(c, m)])) for c, m in keys])
    else:
        ends = tx.many_returning(
            "UPDATE coupons SET uses = uses + ? WHERE coupon_id = ? RETURNING uses",
            [(len(groups[k]), k[0]) for k in keys],
        )
        batch.touched_coupons.update(c for c, _ in keys)
    limit_name = "per_member" if per_member else "global"
    for (coupon, member), end in zip(keys, ends, strict=True):
        assert end is not None
        limit = limits[coupon].get(limit_name)
        count = int(end[0]) - len(groups[(coupon, member)])
        for i in groups[(coupon, member)]:
            count += 1
            if limit is not None and count > limit:
                batch.flag(
                    i,
                    Reason.COUPON_OVERUSED,
                    f"{coupon}:{limit_name}",
                    coupon_id=coupon,
                    limit=limit_name,
                    allowed=limit,
                    use_number=count,
                    member_id=batch.facts[i].member_id,
                )


def count_figures(tx: Tx, batch: Batch) -> None:
    """The report roll-up (``hq.rollup``): the figures of every entry of the batch stored counting, in this
    transaction (after the coupon uses are written, before a refund in the batch gives one back)."""
    counted = [
        i
        for i, effect in enumerate(batch.effects)
        if effect.value in rollup.COUNTED and batch.entries[i].kind in rollup.JOURNAL_KINDS
    ]
    with_coupons = [
        batch.entries[i].txn_id for i in counted if batch.entries[i].kind == "sale" and batch.facts[i].coupons
    ]
    coupons = rollup.coupon_counts(tx, with_coupons)
    rollup.add(
        tx,
        rollup.journal_deltas(
            rollup.Counted(
                batch.days[i],
                batch.store_id,
                batch.entries[i].terminal_id,
                batch.entries[i].kind,
                batch.effects[i].value,
                batch.facts[i].total,
                batch.facts[i].stored_value,
                *coupons.get(batch.entries[i].txn_id, (0, 0)),
            )
            for i in counted
        ),
    )


def reverse(tx: Tx, batch: Batch) -> None:
    """A void or refund that counts gives back the coupon uses it restores; a void also settles the open
    items of the sale it cancels (what it broke no longer happened)."""
    for i, (entry, facts) in enumerate(zip(batch.entries, batch.facts, strict=True)):
        if entry.kind not in REVERSING_KINDS or not facts.original_txn or batch.effects[i] in NOT_APPLIED:
            continue
        batch.touched_coupons.update(_release_coupons(tx, facts.original_txn, facts.restored))
        pools.release(tx, facts.original_txn, facts.restored, batch.received_at)
        if entry.kind != "void":
            continue
        note = f"reversed by {entry.kind} {entry.txn_id} (seq {entry.seq})"
        tx.run(
            "UPDATE recon_items SET state = 'settled_auto', settled_at = ?, settled_by = ?, note = ? "
            "WHERE txn_id = ? AND state = 'open' AND quarantine = 0",
            (batch.received_at, HQ_ACTOR, note, facts.original_txn),
        )
        for item in batch.items:
            if item.txn_id == facts.original_txn and item.state == "open" and not item.quarantined:
                item.state, item.note = "settled_auto", note


WITHDRAWALS_KEPT = 1000
"""Withdrawals of transactions head office had heard nothing of, kept a till at most (the newest): what refuses a
confirmation that lands after its withdrawal (``note_withdrawals``). An honest till has a few at a time."""


def withdrawn(tx: Tx, terminal_id: str, txn_id: str) -> bool:
    """Whether the till withdrew its confirmation of ``txn_id`` (``hq.payments.withdraw``), even before asking
    for it: a confirmation it asks for late is refused, not held. A confirmation's own row says it was withdrawn;
    a withdrawal that overtook its confirmation is kept apart (``note_withdrawals``)."""
    row = tx.one(
        "SELECT 1 FROM confirm_withdrawals WHERE terminal_id = ? AND txn_id = ? "
        "UNION ALL SELECT 1 FROM payment_confirms WHERE terminal_id = ? AND txn_id = ? AND withdrawn_at IS NOT NULL "
        "UNION ALL SELECT 1 FROM gift_confirms WHERE terminal_id = ? AND txn_id = ? AND withdrawn_at IS NOT NULL",
        [terminal_id, txn_id] * 3,
    )
    return row is not None


def note_withdrawals(tx: Tx, terminal_id: str, txn_ids: list[str], at: str) -> None:
    """Keep the till's withdrawals of transactions head office has heard nothing of from it (no confirmation, whose
    row says it was withdrawn, and no entry, after which a confirmation holds nothing): each is a confirmation the
    withdrawal overtook (head office slow past the till's timeout), refused when it lands (``withdrawn``). Only the
    newest ``WITHDRAWALS_KEPT`` of a till are kept, so a stolen credential withdrawing made-up transaction ids, 100
    a request, cannot grow head office's tables without bound."""
    asked = list(dict.fromkeys(txn_ids))
    if not asked:
        return
    cond, params = tx.in_list("txn_id", asked)
    known = {
        str(r[0])
        for r in tx.all(
            f"SELECT txn_id FROM payment_confirms WHERE terminal_id = ? AND {cond} "
            f"UNION SELECT txn_id FROM gift_confirms WHERE terminal_id = ? AND {cond} "
            f"UNION SELECT txn_id FROM journal WHERE terminal_id = ? AND {cond}",
            [terminal_id, *params] * 3,
        )
    }
    tx.many(
        "INSERT INTO confirm_withdrawals (terminal_id, txn_id, withdrawn_at) VALUES (?, ?, ?) "
        "ON CONFLICT (terminal_id, txn_id) DO NOTHING",
        [(terminal_id, txn_id, at) for txn_id in asked if txn_id not in known],
    )
    edge = tx.one(  # the newest beyond what is kept
        "SELECT withdrawn_at, txn_id FROM confirm_withdrawals WHERE terminal_id = ? "
        "ORDER BY withdrawn_at DESC, txn_id DESC LIMIT 1 OFFSET ?",
        [terminal_id, WITHDRAWALS_KEPT],
    )
    if edge is not None:
        tx.run(
            "DELETE FROM confirm_withdrawals WHERE terminal_id = ? AND (withdrawn_at < ? OR (withdrawn_at = ? AND "
            "txn_id <= ?))",
            [terminal_id, edge[0], edge[0], edge[1]],
        )


CONFIRMS = ("payment_confirms", "gift_confirms")
"""Head office's online confirmations, members' stored value (``hq.payments``) and gift cards (``hq.giftcards``):
each holds its amount back from the balance until its entry arrives or its till withdraws it."""


def arrived(alias: str) -> str:
    """SQL: the entry of confirmation ``alias`` is in the journal, sent by the till that asked (an entry of another
    till naming the same transaction is not its sale: it releases nothing)."""
    return f"EXISTS (SELECT 1 FROM journal j WHERE j.terminal_id = {alias}.terminal_id AND j.txn_id = {alias}.txn_id)"


def holding(alias: str) -> str:
    """SQL: confirmation ``alias`` still holds its amount back: not withdrawn, and its entry not arrived."""
    return f"{alias}.withdrawn_at IS NULL AND NOT {arrived(alias)}"


def withdraw_confirms(tx: Tx, terminal_id: str, txn_ids: list[str] | None, at: str) -> int:
    """End the holds of the till's confirmations of ``txn_ids`` whose entries have not arrived: the one way a hold
    ends before its entry (``hq.payments.withdraw``: the till did not record those sales; None: every one of the
    till's, its credential revoked). The code or card message each used stays used. Returns how many ended."""
    done = 0
    for table in CONFIRMS:
        if txn_ids is None:
            done += tx.run(
                f"UPDATE {table} SET withdrawn_at = ? WHERE terminal_id = ? AND {holding(table)}", [at, terminal_id]
            )
            continue
        for txn_id in dict.fromkeys(txn_ids):
            done += tx.run(
                f"UPDATE {table} SET withdrawn_at = ? WHERE terminal_id = ? AND txn_id = ? AND {holding(table)}",
                [at, terminal_id, txn_id],
            )
    return done


def attested_held(tx: Tx, terminal_id: str) -> int:
    """What head office holds back for the till's confirmations on card reads it cannot check again (a Lite-S MAC
    read, a SUN tap without the keys), members' and gift cards' together. The till's row is locked, so two such
    confirmations cannot both pass the bound; confirmations whose entries arrived, or that were withdrawn, are
    closed on the way, so the count reads only those still open."""
    tx.one(f"SELECT 1 FROM terminals WHERE terminal_id = ?{tx.for_update}", [terminal_id])
    held = 0
    for table in CONFIRMS:
        tx.run(
            f"UPDATE {table} SET attested_open = 0 WHERE terminal_id = ? AND attested_open = 1 "
            f"AND (withdrawn_at IS NOT NULL OR {arrived(table)})",
            [terminal_id],
        )
        row = tx.one(
            f"SELECT COALESCE(SUM(amount), 0) FROM {table} WHERE terminal_id = ? AND attested_open = 1", [terminal_id]
        )
        held += int(row[0]) if row else 0
    return held


PROOF_REASONS = frozenset(
    {
        Reason.PROOF_MISSING.value,
        Reason.PROOF_INVALID.value,
        Reason.PAYMENT_CODE_REPLAYED.value,  # a proof used before stands for nobody
        Reason.CARD_REPLAYED.value,
    }
)


def unproven_coupons_back(tx: Tx, txn_id: str, now: str) -> list[str]:
    """A sale held for its proof and rejected: the member's own coupons it named (``spends_members_value``)
    were never the member's spend, so their uses and flash-drop units go back (a stolen till credential
    naming members' coupons without their proof burns none). Other coupons' uses stand: the till gave their
    discount. Returns the coupons given back."""
    cond, params = tx.in_list("reason", sorted(PROOF_REASONS))
    held = tx.one(f"SELECT 1 FROM recon_items WHERE txn_id = ? AND quarantine = 1 AND {cond}", [txn_id, *params])
    if held is None:
        return []
    rows = tx.all(
        "SELECT u.coupon_id, c.body FROM coupon_uses u LEFT JOIN coupons c ON c.coupon_id = u.coupon_id "
        "WHERE u.txn_id = ? AND u.released = 0",
        [txn_id],
    )
    own = tuple(str(c) for c, body in rows if spends_members_value(str(c), json.loads(body) if body else {}))
    if not own:
        return []
    pools.release(tx, txn_id, own, now)
    return _release_coupons(tx, txn_id, own)


def _release_coupons(tx: Tx, original_txn: str, only: tuple[str, ...] | None) -> list[str]:
    """Give back the coupon uses of ``original_txn`` (all, or ``only`` those); the coupons released."""
    rows = tx.all(
        "SELECT coupon_id, member_id FROM coupon_uses WHERE txn_id = ? AND released = 0 ORDER BY coupon_id",
        [original_txn],
    )
    given = [str(c) for c, _ in rows if only is None or c in only]
    rollup.coupons_given_back(tx, original_txn, given)
    released = []
    for coupon_id, member_id in rows:
        if only is not None and coupon_id not in only:
            continue
        tx.run("UPDATE coupons SET uses = uses - 1 WHERE coupon_id = ?", [coupon_id])
        if member_id:
            tx.run(
                "UPDATE coupon_member_uses SET uses = uses - 1 WHERE coupon_id = ? AND member_id = ?",
                [coupon_id, member_id],
            )
        released.append(str(coupon_id))
        tx.run("UPDATE coupon_uses SET released = 1 WHERE txn_id = ? AND coupon_id = ?", [original_txn, coupon_id])
    return released


def save_items(tx: Tx, store_id: str, terminal_id: str, items: list[Item], now: str) -> int:
    """Insert reconciliation items; an item id already held is kept as it is. Returns how many are new."""
    rows = [
        (
            it.item_id,
            store_id,
            terminal_id,
            it.day,
            it.seq,
            it.txn_id,
            it.reason.value,
            json.dumps(it.detail, sort_keys=True),
            it.state,
            now,
            now if it.state != "open" else None,
            HQ_ACTOR if it.state != "open" else None,
            it.note,
            int(it.quarantined),
        )
        for it in items
    ]
    added = tx.many_returning(
        "INSERT INTO recon_items (item_id, store_id, terminal_id, day, seq, txn_id, reason, detail, state, created_at, "
        "settled_at, settled_by, note, quarantine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (item_id) DO NOTHING RETURNING item_id",
        rows,
    )
    return sum(row is not None for row in added)


def next_versions(tx: Tx, count: int) -> int:
    """Reserve ``count`` versions; returns the first. Taken last in a writing transaction, so the
    counter's row lock is held only to the commit and versions become visible in commit order."""
    row = tx.one("UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value", [count])
    assert row is not None
    return int(row[0]) - count + 1


def bump_versions(tx: Tx, table: str, key: str, ids: Iterable[str]) -> dict[str, int]:
    """Give each row a new version of the changes feed, in key order; the versions given."""
    ordered = sorted(ids)
    if not ordered:
        return {}
    first = next_versions(tx, len(ordered))
    given = [(k, first + n) for n, k in enumerate(ordered)]
    tx.set_values(table, key, "version", given)
    return dict(given)


def advance(tx: Tx, terminal_id: str, watermark: int) -> tuple[int, list[tuple[int, int]]]:
    """Move the terminal's watermark over every seq held, or reported lost by the till."""
    seqs = {
        int(r[0]) for r in tx.all("SELECT seq FROM journal WHERE terminal_id = ? AND seq > ?", [terminal_id, watermark])
    }
    for first, last in tx.all(
        "SELECT first_seq, last_seq FROM journal_lost WHERE terminal_id = ? AND last_seq > ?", [terminal_id, watermark]
    ):
        seqs.update(range(max(int(first), watermark + 1), int(last) + 1))
    acked, gaps = contiguous(watermark, sorted(seqs))
    if acked != watermark:
        tx.run("UPDATE terminals SET acked_seq = ? WHERE terminal_id = ?", [acked, terminal_id])
    return acked, gaps[:MAX_GAPS]


def journal_state(tx: Tx, terminal_id: str) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]:
    """(acked seq, highest seq held, gaps below it, ranges reported lost) of a terminal's journal."""
    held = tx.one("SELECT acked_seq FROM terminals WHERE terminal_id = ?", [terminal_id])
    if held is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not registered")
    acked = int(held[0])
    top = tx.one("SELECT COALESCE(MAX(seq), 0) FROM journal WHERE terminal_id = ?", [terminal_id])
    lost = [
        (int(a), int(b))
        for a, b in tx.all(
            "SELECT first_seq, last_seq FROM journal_lost WHERE terminal_id = ? ORDER BY first_seq", [terminal_id]
        )
    ]
    highest = max([int(top[0]) if top else 0, *(b for _, b in lost), acked])
    seqs = [
        int(r[0])
        for r in tx.all("SELECT seq FROM journal WHERE terminal_id = ? AND seq > ? ORDER BY seq", [terminal_id, acked])
    ]
    return acked, highest, contiguous(acked, seqs)[1][:MAX_GAPS], lost


def report_lost(
    tx: Tx, terminal_id: str, ranges: list[tuple[int, int]], reason: str, now: str, settings: Settings
) -> None:
    """A till says it can never send these seqs (its journal was damaged): head office keeps the report,
    opens one ``journal_lost`` item, and counts them as held, so the terminal's watermark moves on."""
    held = tx.one(f"SELECT store_id FROM terminals WHERE terminal_id = ?{tx.for_update}", [terminal_id])
    if held is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not registered")
    kept: list[tuple[int, int]] = []
    if any(first > last for first, last in ranges):
        raise ValueError("a range's first seq is after its last")
    if sum(last - first + 1 for first, last in ranges) > MAX_LOST:
        raise ValueError(f"a report names at most {MAX_LOST} seqs")
    spend_push_budget(tx, settings, terminal_id, now, len(ranges), len(reason.encode()))  # rows it may keep
    for first, last in sorted(ranges):
        have = {
            int(r[0])
            for r in tx.all(
                "SELECT seq FROM journal WHERE terminal_id = ? AND seq BETWEEN ? AND ?", [terminal_id, first, last]
            )
        }
        for a, b in seq_ranges([s for s in range(first, last + 1) if s not in have]):
            tx.run(
                "INSERT INTO journal_lost (terminal_id, first_seq, last_seq, reason, reported_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal_id, first_seq) DO NOTHING",
                [terminal_id, a, b, reason, now],
            )
            kept.append((a, b))
    if kept:
        day = store_calendar(tx, str(held[0]), settings).of(parse_time(now) or datetime.now(UTC))
        item = Item(
            f"lost:{terminal_id}:{kept[0][0]}-{kept[-1][1]}",
            kept[0][0],
            None,
            day,
            Reason.JOURNAL_LOST,
            {"ranges": [list(r) for r in kept], "entries": sum(b - a + 1 for a, b in kept), "reason": reason},
        )
        save_items(tx, str(held[0]), terminal_id, [item], now)
    watermark = tx.one("SELECT acked_seq FROM terminals WHERE terminal_id = ?", [terminal_id])
    advance(tx, terminal_id, int(watermark[0]) if watermark else 0)


def contest(tx: Tx, taken: TxnTaken, now: str) -> int:
    """A ``txn_id_taken`` refusal: open a ``txn_id_contested`` item against the terminal whose entry holds the
    transaction id, naming both terminals and the txn, so that staff see which till to suspect (the holder got
    there first under another till's receipt, or the refused one pushes made-up entries under the holder's ids).
    Once a txn (the item's id is the txn's); returns 1 when the item is new."""
    held = tx.one(
        "SELECT COALESCE(j.store_id, t.store_id), COALESCE(j.day, ?), j.seq, j.kind FROM journal j "
        "JOIN terminals t ON t.terminal_id = j.terminal_id WHERE j.terminal_id = ? AND j.txn_id = ?",
        [now[:10], taken.held_by, taken.txn_id],
    )
    if held is None:
        return 0
    detail = {
        "held_by": taken.held_by,
        "held_seq": int(held[2]),
        "held_kind": str(held[3]),
        "refused_terminal": taken.terminal_id,
        "refused_seq": taken.seq,
        "code": "txn_id_taken",
    }
    item = Item(f"contested:{taken.txn_id}", int(held[2]), taken.txn_id, str(held[1]), Reason.TXN_ID_CONTESTED, detail)
    return save_items(tx, str(held[0]), taken.held_by, [item], now)


def store_calendar(tx: Tx, store_id: str, settings: Settings) -> businessday.BusinessDay:
    """The store's business day as head office set it (``tillpoint hq store``), else the chain's time zone
    with days from midnight."""
    row = tx.one("SELECT timezone, day_starts FROM stores WHERE store_id = ?", [store_id])
    try:
        return businessday.calendar(str(row[0]), str(row[1])) if row else businessday.calendar(settings.timezone)
    except businessday.BadCalendar:
        return businessday.BusinessDay()


def measure_clock(clock: str | None, received_at: str) -> float | None:
    """The terminal's clock minus head office's (seconds), from its ``X-Tillpoint-Clock`` header."""
    theirs, ours = parse_time(clock or ""), parse_time(received_at)
    if theirs is None or ours is None:
        return None
    try:
        return round((theirs - ours).total_seconds(), 3)
    except OverflowError:
        return None


def clock_item(
    terminal_id: str, offset: float | None, received_at: str, settings: Settings, calendar: businessday.BusinessDay
) -> Item | None:
    """One item per terminal and business day whose clock was found beyond the allowed skew."""
    ours = parse_time(received_at)
    if offset is None or ours is None or abs(offset) <= settings.clock_skew:
        return None
    clock = (ours + timedelta(seconds=offset)).isoformat() if abs(offset) < 1e9 else None
    day = calendar.of(ours)
    item = Item(
        f"clock:{terminal_id}:{day}",
        None,
        None,
        day,
        Reason.CLOCK_SKEW,
        {"offset_seconds": offset, "allowed_seconds": settings.clock_skew, "terminal_clock": clock},
    )
    return item
