"""Ingest: store a terminal's journal batch exactly once and flag what breaks a rule.

Offline entries are facts: every new entry is stored and applied (its points and stored value go
to the member's balance) even when it breaks a rule; the break becomes a reconciliation item
(``sync.protocol.Reason``). One push is one transaction, in this order, so that concurrent pushes
on PostgreSQL lock rows in one order and count correctly:

    terminal row (FOR UPDATE) -> dedupe -> journal rows -> member balances (sorted)
    -> payment codes (sorted) -> coupon counters (sorted) -> items -> version counter -> watermark

Balances and coupon counters are changed with one ``UPDATE ... RETURNING`` per member or coupon
per batch; the running value before each entry is rebuilt from the returned end value, so an
overspend or an over-used coupon is pinned on the entry that crossed the line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sync.hq.db import HqError, Tx
from sync.hq.recompute import differences
from sync.protocol import PushResponse, Reason, WireEntry
from terminal.model import EarnRule

KNOWN_KINDS = frozenset({"sale", "void", "refund", "payment", "enrol", "adjust", "topup", "claim_key"})
REVERSING_KINDS = frozenset({"void", "refund"})
MAX_GAPS = 100
HQ_ACTOR = "head office"


class SeqConflict(HqError):
    def __init__(self, entry: WireEntry, held: Sequence[tuple[Any, ...]]) -> None:
        self.terminal_id, self.seq, self.txn_id = entry.terminal_id, entry.seq, entry.txn_id
        others = ", ".join(f"{t} seq {s} txn {x}" for t, s, x in held)
        super().__init__(
            f"entry {entry.terminal_id} seq {entry.seq} txn {entry.txn_id} conflicts with stored {others}; "
            "nothing of this batch was stored"
        )


class WrongTerminal(HqError):
    pass


class UnknownTerminal(HqError):
    pass


class Effect(StrEnum):
    """What ingesting an entry did to balances; kept on the journal row for reconciliation."""

    APPLIED = "applied"
    NONE = "none"  # no member, or nothing to change
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_MEMBER = "unknown_member"
    MALFORMED = "malformed"


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
    """Price each reported sale again with head office's documents and flag any figure that differs."""


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
    """Coupons a refund or void gives back (``coupons_restored``); None: not said (a void gives all back)."""
    problem: str | None = None


def _opt_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _opt_int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key, 0)
    if value is None:
        return 0
    # bool is an int subclass; True must not become one point.
    if type(value) is not int:
        raise ValueError(f"{key} must be an integer")
    return value


def _coupon_ids(payload: dict[str, Any], key: str = "coupons") -> tuple[str, ...]:
    raw = payload.get(key) or []
    if not isinstance(raw, list):
        raise ValueError(f"{key} must be a list")
    ids = [c.get("coupon_id") if isinstance(c, dict) else c for c in raw]
    named = [c for c in ids if isinstance(c, str)]
    if len(named) != len(ids):
        raise ValueError("coupons must be coupon ids")
    return tuple(dict.fromkeys(named))  # a coupon counts once per transaction


def facts_of(entry: WireEntry) -> Facts:
    """Read the fields head office checks; anything else in the payload stays opaque."""
    p = entry.payload
    try:
        original = _opt_str(p, "original_txn") or _opt_str(p, "voided_txn_id")
        return Facts(
            member_id=_opt_str(p, "member_id"), uid_hash=_opt_str(p, "uid_hash"),
            points=_opt_int(p, "points_delta"), stored_value=_opt_int(p, "stored_value_delta"),
            total=_opt_int(p, "total"), coupons=_coupon_ids(p), code_id=_opt_str(p, "code_id"),
            original_txn=original,
            restored=_coupon_ids(p, "coupons_restored") if "coupons_restored" in p else None,
        )
    except ValueError as exc:
        return Facts(problem=str(exc))


def parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day_of(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


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
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- the batch -----------------------------------------------------------------------------------


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


@dataclass
class Batch:
    terminal_id: str
    store_id: str
    received_at: str
    settings: Settings
    entries: list[WireEntry]
    facts: list[Facts] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    touched_members: set[str] = field(default_factory=set)
    touched_coupons: set[str] = field(default_factory=set)

    def flag(self, i: int, reason: Reason, subject: str = "", **detail: Any) -> Item:
        e = self.entries[i]
        item = Item(f"{e.txn_id}:{reason.value}:{subject}".rstrip(":"), e.seq, e.txn_id, self.days[i], reason, detail)
        self.items.append(item)
        return item


def new_entries(tx: Tx, terminal_id: str, entries: list[WireEntry]) -> tuple[list[WireEntry], int]:
    """The entries not stored yet (ascending seq) and how many were duplicates. Raises SeqConflict."""
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
        if mine:
            raise SeqConflict(e, mine)
        fresh.append(e)
    return fresh, len(entries) - len(fresh)


def _held(tx: Tx, terminal_id: str, entries: list[WireEntry]) -> list[tuple[Any, ...]]:
    if not entries:
        return []
    by_seq, p1 = tx.in_list("seq", [e.seq for e in entries])
    by_txn, p2 = tx.in_list("txn_id", [e.txn_id for e in entries])
    rows = tx.all(f"SELECT terminal_id, seq, txn_id FROM journal WHERE terminal_id = ? AND {by_seq}", [terminal_id, *p1])
    rows += tx.all(f"SELECT terminal_id, seq, txn_id FROM journal WHERE {by_txn}", p2)
    return list(dict.fromkeys(tuple(r) for r in rows))


def _lookup(tx: Tx, sql: str, column: str, keys: set[str]) -> dict[str, tuple[Any, ...]]:
    if not keys:
        return {}
    cond, params = tx.in_list(column, sorted(keys))
    return {row[0]: tuple(row) for row in tx.all(sql.format(cond=cond), params)}


def classify(tx: Tx, batch: Batch) -> None:
    """Per entry: its day, its effect, and every rule it breaks that needs no counting."""
    batch.facts = [facts_of(e) for e in batch.entries]
    members = _lookup(tx, "SELECT member_id, status, blocked_at, deleted FROM members WHERE {cond}", "member_id",
                      {f.member_id for f in batch.facts if f.member_id})
    cards = _lookup(tx, "SELECT uid_hash, member_id, status, blocked_at, deleted FROM cards WHERE {cond}", "uid_hash",
                    {f.uid_hash for f in batch.facts if f.uid_hash})
    received = parse_time(batch.received_at)
    assert received is not None
    for i, (entry, facts) in enumerate(zip(batch.entries, batch.facts, strict=True)):
        created = parse_time(entry.created_at)
        batch.days.append(day_of(created or received, batch.settings.timezone))
        if created is None:
            batch.flag(i, Reason.MALFORMED_ENTRY, "created_at", problem=f"created_at {entry.created_at!r} is not ISO 8601")
        elif (created - received).total_seconds() > batch.settings.clock_skew:
            batch.flag(i, Reason.CLOCK_AHEAD, ahead_seconds=round((created - received).total_seconds(), 1),
                       received_at=batch.received_at)
        batch.effects.append(_effect(batch, i, entry, facts, members, cards))


def _effect(batch: Batch, i: int, entry: WireEntry, facts: Facts,
            members: dict[str, tuple[Any, ...]], cards: dict[str, tuple[Any, ...]]) -> Effect:
    if entry.kind not in KNOWN_KINDS:
        return Effect.UNKNOWN_KIND
    if facts.problem:
        batch.flag(i, Reason.MALFORMED_ENTRY, "payload", problem=facts.problem)
        return Effect.MALFORMED
    if facts.uid_hash:
        _check_card(batch, i, entry, cards.get(facts.uid_hash))
    if facts.member_id is None:
        return Effect.NONE
    member = members.get(facts.member_id)
    if member is None or member[3]:
        batch.flag(i, Reason.UNKNOWN_MEMBER, member_id=facts.member_id, points=facts.points,
                   stored_value=facts.stored_value)
        return Effect.UNKNOWN_MEMBER
    if member[1] == "blocked" and _blocked_before(member[2], entry.created_at):
        batch.flag(i, Reason.MEMBER_BLOCKED, member_id=facts.member_id, blocked_at=member[2])
    return Effect.APPLIED if facts.points or facts.stored_value else Effect.NONE


def _check_card(batch: Batch, i: int, entry: WireEntry, card: tuple[Any, ...] | None) -> None:
    if card is None or card[4]:
        batch.flag(i, Reason.UNKNOWN_CARD, uid_hash=batch.facts[i].uid_hash)
    elif card[2] == "blocked" and _blocked_before(card[3], entry.created_at):
        batch.flag(i, Reason.CARD_BLOCKED, uid_hash=card[0], member_id=card[1], blocked_at=card[3])


def _blocked_before(blocked_at: str | None, created_at: str) -> bool:
    """Blocked at head office before the entry was made (unknown block time counts as before)."""
    blocked, created = parse_time(blocked_at or ""), parse_time(created_at)
    return blocked is None or created is None or blocked <= created


def check_prices(tx: Tx, batch: Batch) -> None:
    """Price every reported sale again with head office's rule and coupon documents (``recompute``):
    a figure that differs is flagged, never refused."""
    sales = [i for i, e in enumerate(batch.entries) if e.kind == "sale" and batch.effects[i] is not Effect.MALFORMED
             and "lines" in e.payload and "local_time" in e.payload]
    if not batch.settings.recompute or not sales:
        return
    rule_docs = {str(r[0]): json.loads(r[1]) for r in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")}
    row = tx.one("SELECT rule_id, points, per_minor FROM rules WHERE rule_id = 'base' AND deleted = 0")
    base = EarnRule(str(row[0]), int(row[1]), int(row[2])) if row else None
    found = _lookup(tx, "SELECT coupon_id, body FROM coupons WHERE deleted = 0 AND {cond}", "coupon_id",
                    {c for i in sales for c in batch.facts[i].coupons})
    coupons = {k: json.loads(v[1]) for k, v in found.items()}
    for i in sales:
        try:
            diff = differences(batch.entries[i].payload, rule_docs, coupons, base)
        except Exception as exc:  # noqa: BLE001 - a sale head office cannot price is a fact to look at, not a failed push
            batch.flag(i, Reason.PRICE_MISMATCH, "unpriced", problem=f"head office could not price it: {exc!r}"[:300])
            continue
        if diff:
            batch.flag(i, Reason.PRICE_MISMATCH, figures={k: {"terminal": a, "head_office": b} for k, (a, b) in diff.items()})


JOURNAL_COLUMNS = ("terminal_id", "seq", "txn_id", "kind", "payload", "created_at", "received_at", "effect", "member_id",
                   "store_id", "day", "total", "points", "stored_value")


def store_journal(tx: Tx, batch: Batch) -> None:
    rows = []
    for e, f, effect, day in zip(batch.entries, batch.facts, batch.effects, batch.days, strict=True):
        rows.append((e.terminal_id, e.seq, e.txn_id, e.kind, payload_json(e.payload), e.created_at,
                     batch.received_at, effect.value, f.member_id, batch.store_id, day, f.total, f.points,
                     f.stored_value))
    tx.insert_rows("journal", JOURNAL_COLUMNS, rows)


def apply_balances(tx: Tx, batch: Batch) -> None:
    """Add each applied entry's points and stored value; flag entries that took a balance below zero."""
    per_member: dict[str, list[int]] = defaultdict(list)
    for i, (facts, effect) in enumerate(zip(batch.facts, batch.effects, strict=True)):
        if effect is Effect.APPLIED and facts.member_id:
            per_member[facts.member_id].append(i)
    sums = {m: (sum(batch.facts[i].points for i in idx), sum(batch.facts[i].stored_value for i in idx))
            for m, idx in per_member.items()}
    ends = tx.add_returning("members", "member_id", ("points", "stored_value"),
                            [(m, p, v) for m, (p, v) in sums.items()])
    for member_id in sorted(per_member):
        end = ends[member_id]
        points_sum, value_sum = sums[member_id]
        batch.touched_members.add(member_id)
        _flag_overspends(batch, per_member[member_id], int(end[0]) - points_sum, int(end[1]) - value_sum)


def _flag_overspends(batch: Batch, indexes: list[int], points: int, value: int) -> None:
    s = batch.settings
    for i in indexes:
        f = batch.facts[i]
        points, value = points + f.points, value + f.stored_value
        if f.points < 0 and points < 0:
            short = min(-points, -f.points)
            item = batch.flag(i, Reason.POINTS_OVERSPENT, member_id=f.member_id, balance_after=points, short=short)
            _write_off(item, short, s.write_off_points)
        if f.stored_value < 0 and value < 0:
            short = min(-value, -f.stored_value)
            item = batch.flag(i, Reason.STORED_VALUE_OVERSPENT, member_id=f.member_id, balance_after=value, short=short)
            _write_off(item, short, s.write_off_stored_value)


def _write_off(item: Item, short: int, tolerance: int) -> None:
    if short <= tolerance:
        item.state, item.note = "settled_auto", f"written off: {short} within the tolerance of {tolerance}"


def check_payment_codes(tx: Tx, batch: Batch) -> None:
    """A payment code (device id + counter) is good once, chain-wide; a second use is a replay."""
    uses = sorted((f.code_id, i) for i, f in enumerate(batch.facts) if f.code_id and batch.effects[i] is not Effect.UNKNOWN_KIND)
    rows = [(code, batch.terminal_id, batch.entries[i].seq, batch.entries[i].txn_id) for code, i in uses]
    stored = tx.many_returning(
        "INSERT INTO payment_codes (code_id, terminal_id, seq, txn_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (code_id) DO NOTHING RETURNING code_id", rows,
    )
    replays = [(code, i) for (code, i), row in zip(uses, stored, strict=True) if row is None]
    first = _lookup(tx, "SELECT code_id, terminal_id, seq, txn_id FROM payment_codes WHERE {cond}", "code_id",
                    {code for code, _ in replays})
    for code, i in replays:
        held = first[code]
        batch.flag(i, Reason.PAYMENT_CODE_REPLAYED, code, code_id=code, first_terminal=held[1], first_seq=held[2],
                   first_txn=held[3])


def count_coupons(tx: Tx, batch: Batch) -> None:
    """Count every coupon use chain-wide and per member; flag uses beyond the coupon's limits."""
    uses = [(c, i) for i, f in enumerate(batch.facts)
            if batch.effects[i] not in (Effect.UNKNOWN_KIND, Effect.MALFORMED) for c in f.coupons]
    docs = _lookup(tx, "SELECT coupon_id, body, deleted FROM coupons WHERE {cond}", "coupon_id", {c for c, _ in uses})
    known = [(c, i) for c, i in uses if c in docs and not docs[c][2]]
    for c, i in uses:
        if (c, i) not in known:
            batch.flag(i, Reason.UNKNOWN_COUPON, c, coupon_id=c)
    limits = {c: _limits(docs[c][1]) for c, _ in known}
    _count(tx, batch, known, limits, per_member=False)
    _count(tx, batch, [(c, i) for c, i in known if batch.facts[i].member_id], limits, per_member=True)
    tx.many(
        "INSERT INTO coupon_uses (txn_id, coupon_id, member_id) VALUES (?, ?, ?) ON CONFLICT (txn_id, coupon_id) DO NOTHING",
        [(batch.entries[i].txn_id, c, batch.facts[i].member_id) for c, i in known],
    )


def _limits(body_json: str) -> dict[str, int]:
    try:
        limits = json.loads(body_json).get("limits") or {}
    except (ValueError, AttributeError):
        return {}
    return {k: v for k, v in limits.items() if k in ("global", "per_member") and type(v) is int}


def _count(tx: Tx, batch: Batch, uses: list[tuple[str, int]], limits: dict[str, dict[str, int]], *, per_member: bool) -> None:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for c, i in uses:
        groups[(c, batch.facts[i].member_id or "") if per_member else (c, "")].append(i)
    keys = sorted(groups)
    if per_member:
        sql = ("INSERT INTO coupon_member_uses (coupon_id, member_id, uses) VALUES (?, ?, ?) ON CONFLICT (coupon_id, "
               "member_id) DO UPDATE SET uses = coupon_member_uses.uses + excluded.uses RETURNING uses")
        ends = tx.many_returning(sql, [(c, m, len(groups[(c, m)])) for c, m in keys])
    else:
        ends = tx.many_returning("UPDATE coupons SET uses = uses + ? WHERE coupon_id = ? RETURNING uses",
                                 [(len(groups[k]), k[0]) for k in keys])
        batch.touched_coupons.update(c for c, _ in keys)
    limit_name = "per_member" if per_member else "global"
    for (coupon, member), end in zip(keys, ends, strict=True):
        assert end is not None
        limit = limits[coupon].get(limit_name)
        count = int(end[0]) - len(groups[(coupon, member)])
        for i in groups[(coupon, member)]:
            count += 1
            if limit is not None and count > limit:
                batch.flag(i, Reason.COUPON_OVERUSED, f"{coupon}:{limit_name}", coupon_id=coupon, limit=limit_name,
                           allowed=limit, use_number=count, member_id=batch.facts[i].member_id)


def reverse(tx: Tx, batch: Batch) -> None:
    """A void or refund gives back the coupon uses it restores; a void also settles the open items
    of the sale it cancels (what it broke no longer happened)."""
    for i, (entry, facts) in enumerate(zip(batch.entries, batch.facts, strict=True)):
        if entry.kind not in REVERSING_KINDS or not facts.original_txn or batch.effects[i] is Effect.MALFORMED:
            continue
        _release_coupons(tx, batch, facts.original_txn, facts.restored)
        if entry.kind != "void":
            continue
        tx.run(
            "UPDATE recon_items SET state = 'settled_auto', settled_at = ?, settled_by = ?, note = ? "
            "WHERE txn_id = ? AND state = 'open'",
            (batch.received_at, HQ_ACTOR, f"reversed by {entry.kind} {entry.txn_id} (seq {entry.seq})",
             facts.original_txn),
        )
        for item in batch.items:
            if item.txn_id == facts.original_txn and item.state == "open":
                item.state, item.note = "settled_auto", f"reversed by {entry.kind} {entry.txn_id} (seq {entry.seq})"


def _release_coupons(tx: Tx, batch: Batch, original_txn: str, only: tuple[str, ...] | None) -> None:
    rows = tx.all("SELECT coupon_id, member_id FROM coupon_uses WHERE txn_id = ? AND released = 0 ORDER BY coupon_id",
                  [original_txn])
    for coupon_id, member_id in rows:
        if only is not None and coupon_id not in only:
            continue
        tx.run("UPDATE coupons SET uses = uses - 1 WHERE coupon_id = ?", [coupon_id])
        if member_id:
            tx.run("UPDATE coupon_member_uses SET uses = uses - 1 WHERE coupon_id = ? AND member_id = ?",
                   [coupon_id, member_id])
        batch.touched_coupons.add(coupon_id)
        tx.run("UPDATE coupon_uses SET released = 1 WHERE txn_id = ? AND coupon_id = ?", [original_txn, coupon_id])


def save_items(tx: Tx, store_id: str, terminal_id: str, items: list[Item], now: str) -> int:
    """Insert reconciliation items; an item id already held is kept as it is. Returns how many are new."""
    rows = [(it.item_id, store_id, terminal_id, it.day, it.seq, it.txn_id, it.reason.value,
             json.dumps(it.detail, sort_keys=True), it.state, now,
             now if it.state != "open" else None, HQ_ACTOR if it.state != "open" else None, it.note)
            for it in items]
    added = tx.many_returning(
        "INSERT INTO recon_items (item_id, store_id, terminal_id, day, seq, txn_id, reason, detail, state, created_at, "
        "settled_at, settled_by, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (item_id) DO NOTHING RETURNING item_id", rows,
    )
    return sum(row is not None for row in added)


def next_versions(tx: Tx, count: int) -> int:
    """Reserve ``count`` versions; returns the first. Taken last in a writing transaction, so the
    counter's row lock is held only to the commit and versions become visible in commit order."""
    row = tx.one("UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value", [count])
    assert row is not None
    return int(row[0]) - count + 1


def bump_versions(tx: Tx, table: str, key: str, ids: Iterable[str]) -> None:
    ordered = sorted(ids)
    if not ordered:
        return
    first = next_versions(tx, len(ordered))
    tx.set_values(table, key, "version", [(k, first + n) for n, k in enumerate(ordered)])


def advance(tx: Tx, terminal_id: str, watermark: int) -> tuple[int, list[tuple[int, int]]]:
    seqs = tx.all("SELECT seq FROM journal WHERE terminal_id = ? AND seq > ? ORDER BY seq", [terminal_id, watermark])
    acked, gaps = contiguous(watermark, (int(row[0]) for row in seqs))
    if acked != watermark:
        tx.run("UPDATE terminals SET acked_seq = ? WHERE terminal_id = ?", [acked, terminal_id])
    return acked, gaps[:MAX_GAPS]


def clock_item(terminal_id: str, clock: str | None, received_at: str, settings: Settings) -> tuple[float | None, Item | None]:
    """The terminal's clock offset from its ``X-Tillpoint-Clock`` header, and an item if beyond the skew."""
    theirs, ours = parse_time(clock or ""), parse_time(received_at)
    if theirs is None or ours is None:
        return None, None
    offset = round((theirs - ours).total_seconds(), 3)
    if abs(offset) <= settings.clock_skew:
        return offset, None
    day = day_of(ours, settings.timezone)
    item = Item(f"clock:{terminal_id}:{day}", None, None, day, Reason.CLOCK_SKEW,
                {"offset_seconds": offset, "allowed_seconds": settings.clock_skew, "terminal_clock": clock})
    return offset, item


def ingest(tx: Tx, settings: Settings, terminal_id: str, entries: list[WireEntry], received_at: str,
           clock: str | None = None) -> PushResponse:
    """Store a batch of one terminal's journal and apply each new entry once (one transaction)."""
    held = tx.one(f"SELECT store_id, acked_seq FROM terminals WHERE terminal_id = ?{tx.for_update}", [terminal_id])
    if held is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not registered")
    store_id, watermark = str(held[0]), int(held[1])
    fresh, duplicates = new_entries(tx, terminal_id, entries)
    batch = Batch(terminal_id, store_id, received_at, settings, fresh)
    from sync.hq import members  # enrolments, merges and erasures (imports this module)

    members.accept(tx, batch)
    classify(tx, batch)
    members.redirect(tx, batch)
    check_prices(tx, batch)
    store_journal(tx, batch)
    apply_balances(tx, batch)
    check_payment_codes(tx, batch)
    count_coupons(tx, batch)
    reverse(tx, batch)
    offset, skew = clock_item(terminal_id, clock, received_at, settings)
    flagged = save_items(tx, store_id, terminal_id, batch.items + ([skew] if skew else []), received_at)
    bump_versions(tx, "members", "member_id", batch.touched_members)
    bump_versions(tx, "coupons", "coupon_id", batch.touched_coupons)
    acked, gaps = advance(tx, terminal_id, watermark)
    tx.run("UPDATE terminals SET last_seen = ?, clock_offset = COALESCE(?, clock_offset) WHERE terminal_id = ?",
           [received_at, offset, terminal_id])
    return PushResponse(acked_seq=acked, stored=len(fresh), duplicates=duplicates, gaps=gaps, flagged=flagged)
