"""What the wallet's pages show, read from head office's own tables for one member.

    overview      the member, tier and the progress to the next tier (the ladder of the rule documents, over
                  its window), points and their lots (earned by each sale, spendable from, expiring at:
                  the points policy), stored value
    activity      the member's recent sales, refunds, voids, check-ins and adjustments (campaign points included)
    coupons       the member's own coupons only (``coupons.member_id``), with their terms and the code a
                  till scans (``TPC1:`` + base64url of the coupon id)
    member_code   the member code signed for the current 30 s step (``terminal.membercodes`` form 3)

Lots are head office's reading of the journal (the till keeps the ledger itself): each counted sale's
earned points make a lot, the lots each sale spent (``lots_spent``) are taken off; the balance shown is
head office's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hq import adjustments, checkins, payments
from hq.db.engine import Tx
from hq.ingest import rule_documents
from hq.recompute import program_of
from hq.store import HqStore
from hq.wallet import gifts
from terminal import b64url, membercodes
from terminal import loyalty as ly
from terminal.scan import Kind, envelope

COUNTED = ("applied", "none")
RECENT = 20


@dataclass(frozen=True, slots=True)
class TierProgress:
    tier: str
    next_tier: str | None
    needed: int
    """What the member still needs in the window to reach ``next_tier`` (points or minor units)."""
    value: int
    threshold: int
    measure: str
    window_days: int

    @property
    def percent(self) -> int:
        return 100 if not self.threshold else min(100, self.value * 100 // self.threshold)


@dataclass(frozen=True, slots=True)
class LotView:
    earned_on: str
    points: int
    remaining: int
    available_from: str
    expires_on: str | None


@dataclass(frozen=True, slots=True)
class Overview:
    member_id: str
    display_name: str
    points: int
    stored_value: int
    progress: TierProgress
    lots: list[LotView]


@dataclass(frozen=True, slots=True)
class Visit:
    at: str
    kind: str
    store_id: str
    total: int
    paid: int
    points: int


@dataclass(frozen=True, slots=True)
class CouponView:
    coupon_id: str
    text: str
    kind: str
    value: int | None
    starts: str | None
    ends: str | None
    min_spend: int | None
    used: bool
    code: str
    transferable: bool = False
    """It may be passed on (its ``transfer`` allows another move) and is not used."""


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _sales(tx: Tx, member_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(txn id, time, payload) of the member's counted sales, oldest first. ``points_earned`` is what the
    sale earned: the till's figure, or for a sale claimed on the join page (anonymous at the till) what
    head office credited (``journal.points``)."""
    rows = tx.all(
        "SELECT txn_id, COALESCE(made_at, created_at), payload, points FROM journal WHERE member_id = ? "
        "AND kind = 'sale' AND effect IN ('applied', 'none') ORDER BY created_at",
        [member_id],
    )
    out = []
    for txn, at, text, credited in rows:
        sale = json.loads(text)
        earned = int(sale.get("points_earned", 0))
        out.append((str(txn), str(at), {**sale, "points_earned": earned if earned > 0 else max(0, int(credited))}))
    return out


def _progress(
    tier: str, program: ly.Program, sales: list[tuple[str, str, dict[str, Any]]], now: datetime
) -> TierProgress:
    ladder = program.ladder
    since = now - timedelta(days=ladder.window_days)
    key = "points_earned" if ladder.measure == "earned" else None
    value = 0
    for _, at, sale in sales:
        if _when(at) >= since:
            value += int(sale.get(key, 0)) if key else int(sale.get("total", 0)) - int(sale.get("discount", 0))
    step = ly.next_tier(tier, value, ladder)
    if step is None:
        return TierProgress(tier, None, 0, value, 0, ladder.measure, ladder.window_days)
    name, needed = step
    return TierProgress(tier, name, needed, value, value + needed, ladder.measure, ladder.window_days)


def _lots(program: ly.Program, sales: list[tuple[str, str, dict[str, Any]]], now: datetime) -> list[LotView]:
    lots = {txn: ly.new_lot(txn, int(s.get("points_earned", 0)), _when(at), program.lots) for txn, at, s in sales}
    remaining = {txn: lot.points for txn, lot in lots.items()}
    for _, _, sale in sales:
        for lot_id, taken in sale.get("lots_spent", []):
            if lot_id in remaining:
                remaining[lot_id] = max(0, remaining[lot_id] - int(taken))
    shown = [
        LotView(
            _when(at).date().isoformat(),
            lot.points,
            remaining[txn],
            lot.available_at.date().isoformat(),
            lot.expires_at.date().isoformat() if lot.expires_at else None,
        )
        for txn, at, _ in sales
        if (lot := lots[txn]).points > 0 and remaining[txn] > 0 and (lot.expires_at is None or lot.expires_at > now)
    ]
    return sorted(shown, key=lambda v: (v.expires_on or "9999", v.earned_on))


def overview(store: HqStore, member_id: str, now: datetime) -> Overview | None:
    member = store.member(member_id)
    if member is None:
        return None
    with store.db.read() as tx:
        docs, base = rule_documents(tx)
        sales = _sales(tx, member_id)
    program = program_of(docs, base)
    return Overview(
        member.member_id,
        member.display_name,
        member.points,
        member.stored_value,
        _progress(member.tier, program, sales, now),
        _lots(program, sales, now),
    )


def activity(store: HqStore, member_id: str, limit: int = RECENT) -> list[Visit]:
    """The member's latest sales, refunds and voids, check-ins (a visit with no money: docs/checkin.md) and
    the points and stored value head office credited or took (``hq.adjustments``: a campaign's points, an
    approved adjustment)."""
    with store.db.read() as tx:
        visited = checkins.visits_of(tx, member_id, limit)
        moved = adjustments.of_member(tx, member_id)
        rows = tx.all(
            "SELECT kind, COALESCE(made_at, created_at), store_id, payload, points FROM journal WHERE member_id = ? "
            "AND kind IN ('sale', 'refund', 'void') AND effect IN ('applied', 'none') "
            "ORDER BY created_at DESC LIMIT ?",
            [member_id, limit],
        )
    out = []
    for kind, at, store_id, text, points in rows:
        body = json.loads(text)
        out.append(
            Visit(
                _when(str(at)).strftime("%Y-%m-%d %H:%M"),
                str(kind),
                str(store_id or body.get("store_id") or ""),
                int(body.get("total", 0)),
                int(body.get("payable", body.get("refund", 0)) or 0),
                int(points or 0),
            )
        )
    out += [Visit(_when(v.at).strftime("%Y-%m-%d %H:%M"), "checkin", v.store_id, 0, 0, 0) for v in visited]
    out += [_credit(a) for a in moved[:limit]]
    return sorted(out, key=lambda v: v.at, reverse=True)[:limit]


def _credit(adjusted: dict[str, object]) -> Visit:
    """An adjustment as a line of the activity: ``bonus`` when a campaign credited it, else ``adjust`` (its
    reason is head office's own note and is not shown)."""
    kind = "bonus" if str(adjusted["requested_by"]).startswith("campaign:") else "adjust"
    at = _when(str(adjusted["created_at"])).strftime("%Y-%m-%d %H:%M")
    return Visit(at, kind, "", int(str(adjusted["stored_value"])), 0, int(str(adjusted["points"])))


def coupon_code(coupon_id: str) -> str:
    """What a till scans for a coupon (``terminal.session.id_from_body`` reads it back)."""
    return envelope(Kind.COUPON, b64url.encode(coupon_id.encode()))


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def coupons(store: HqStore, member_id: str, now: datetime) -> list[CouponView]:
    """The member's own coupons that have not ended; another member's never (``member_id`` is the key)."""
    with store.db.read() as tx:
        rows = tx.all(
            "SELECT c.coupon_id, c.body, COALESCE(u.uses, 0) FROM coupons c LEFT JOIN coupon_member_uses u "
            "ON u.coupon_id = c.coupon_id AND u.member_id = c.member_id "
            "WHERE c.member_id = ? AND c.deleted = 0 ORDER BY c.coupon_id",
            [member_id],
        )
    out = []
    for coupon_id, text, uses in rows:
        body = json.loads(text)
        if str(body.get("member_id")) != member_id:
            continue
        ends = _text(body.get("ends"))
        if ends is not None and _ended(ends, now):
            continue
        limits = body.get("limits") if isinstance(body.get("limits"), dict) else {}
        once = bool(body.get("single_use")) or limits.get("per_member") == 1 or limits.get("global") == 1
        out.append(
            CouponView(
                str(coupon_id),
                _text(body.get("text")) or str(coupon_id),
                str(body.get("kind", "")),
                _number(body.get("value")),
                _text(body.get("starts")),
                ends,
                _number(body.get("min_spend")),
                once and int(uses) > 0,
                coupon_code(str(coupon_id)),
                _movable(body) and int(uses) == 0,
            )
        )
    return out


def _movable(body: dict[str, Any]) -> bool:
    terms = gifts.transfer_of(body)
    return terms is not None and terms.times >= 1


def _ended(ends: str, now: datetime) -> bool:
    try:
        return _when(ends) < now
    except ValueError:
        return False


def member_code(store: HqStore, member_id: str, now: int) -> str:
    """The member code for the step of ``now``, signed with head office's member key (made on first use)."""
    key_id, key = payments.signing_key(store, payments.MEMBER_PURPOSE)
    return membercodes.issue_timed(key, key_id, member_id, now)


__all__ = [
    "CouponView",
    "LotView",
    "Overview",
    "TierProgress",
    "Visit",
    "activity",
    "coupons",
    "member_code",
    "overview",
]
