"""Members made outside head office: enrolments at the till, claims by QR, and erasure.

    accept(tx, batch)     before classification: ``enrol`` entries create their member and link the
                          card; the same card enrolled twice is merged (``MERGE_RULE``);
                          ``claim_key`` entries register a till's claim public key
    redirect(tx, batch)   after classification: entries naming a merged-away member go to the one
                          that was kept; entries naming an erased member are stored anonymised
    claim(tx, ...)        a claim token from the sign-up page: a new member, the sale's points once
    erase(tx, ...)        a member erased: tombstones for the member and its cards and coupons, the
                          journal anonymised (member id removed, never the sale)

See docs/enrolment.md. All of it runs inside the caller's write transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from hq import ledger, profiles, rollup, stats
from hq.db.engine import Tx, utc_now
from hq.errors import HqError
from hq.ingest import (
    NOT_APPLIED,
    Batch,
    Effect,
    Item,
    apply_late_entries,
    bump_versions,
    payload_json,
    rule_documents,
    surviving_member,
)
from hq.recompute import program_of, recompute, refund_priced
from sync import claims as tokens
from sync.protocol import (
    ClaimKeyPayload,
    EnrolPayload,
    PayloadError,
    Reason,
    RefundPayload,
    SalePayload,
    VoidPayload,
    parse_payload,
    parse_time,
)
from terminal.loyalty import Program

CONSENT_VERSION = "join-2026-11"
CONSENT_TEXT = (
    "I agree that the shop group keeps my name and my purchases to credit my points and send me my "
    "coupons. I can ask for my data to be erased at any time."
)
MERGE_RULE = (
    "the member holding the card when the other enrolment reached head office keeps it (head office's "
    "order, never a till's clock); a head-office member always does"
)
HOLDS_PER_TERMINAL = 3
"""How many members' spending one terminal's contests may hold at a time (open ``enrolment_contested`` items
that hold). An honest till never contests an id (it makes each of its own once); a stolen credential enrolling
ids it learnt again freezes at most this many members until staff settle its items, and its further contests are
open items that hold nothing (``spend_held: false`` in their detail) for staff to review (docs/security.md)."""
PERSONAL_KEYS = ("member_id", "uid_hash", "display_name")
TILL_CHANNEL, WEB_CHANNEL = "till", "web"


class ClaimRefused(HqError):
    """``code``: claim_forged, claim_expired, claim_used, claim_unknown_sale, consent_required."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownMember(HqError):
    pass


# -- the batch hooks --------------------------------------------------------------------------------


def accept(tx: Tx, batch: Batch) -> None:
    """Enrolments and claim keys of a batch's new entries (typed payloads), before anything is classified."""
    for i, entry in enumerate(batch.entries):
        payload = batch.payloads[i]
        if isinstance(payload, ClaimKeyPayload):
            _register_key(tx, entry.terminal_id, payload, batch.received_at)
        elif isinstance(payload, EnrolPayload) and payload.member_id is not None:
            _enrol(tx, batch, i, payload)


def _register_key(tx: Tx, terminal_id: str, key: ClaimKeyPayload, now: str) -> None:
    try:
        if tokens.key_id_of(tokens.unb64(key.public_key)).hex() != key.key_id:
            return  # a key id that does not match its key is ignored; its tokens will not verify
    except ValueError:
        return
    tx.run(
        "INSERT INTO claim_keys (key_id, terminal_id, public_key, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key_id) DO NOTHING",
        [key.key_id, terminal_id, key.public_key, now],
    )


def _enrol(tx: Tx, batch: Batch, i: int, p: EnrolPayload) -> None:
    e = batch.entries[i]
    assert p.member_id is not None
    member_id, uid_hash = p.member_id, p.uid_hash or ""
    if tx.one("SELECT 1 FROM members WHERE member_id = ?", [member_id]) is not None:
        _enrolled_again(tx, batch, i, member_id, uid_hash)
        return
    tx.run(
        "INSERT INTO members (member_id, display_name, tier, points, status, version, stored_value, deleted) "
        "VALUES (?, ?, ?, 0, 'active', 0, 0, 0)",
        [member_id, p.display_name, first_tier(tx)],
    )
    tx.run(
        "INSERT INTO enrolments (member_id, uid_hash, terminal_id, txn_id, created_at) VALUES (?, ?, ?, ?, ?)",
        [member_id, uid_hash, e.terminal_id, e.txn_id, e.created_at],
    )
    if p.consent:
        _consent(tx, member_id, p.consent, TILL_CHANNEL, e.created_at)

    apply_late_entries(tx, member_id, batch.received_at)  # another till's sales for it that came first
    batch.touched_members.add(member_id)
    if not uid_hash:
        return
    held = tx.one(f"SELECT member_id, deleted FROM cards WHERE uid_hash = ?{tx.for_update}", [uid_hash])
    if held is None or held[1] or held[0] == member_id:
        _link_card(tx, uid_hash, member_id)
        return
    winner, loser = str(held[0]), member_id  # MERGE_RULE: the card's holder keeps it
    moved = merge(tx, batch, winner, loser)
    _merged_item(batch, i, uid_hash, winner, loser, moved)


def _enrolled_again(tx: Tx, batch: Batch, i: int, member_id: str, uid_hash: str) -> None:
    """A second enrolment of a member id head office holds: the id stays with the first (head office's order
    of arrival, as ``MERGE_RULE``); this one makes no member and links no card. The same till enrolling the
    same card again says nothing new; from another till, or with another card, it is an open
    ``enrolment_contested`` item naming both: ids are made by one till, so one of the two is not the till
    that made it (a stolen credential that learnt the id and pushed it first with a card of its own)."""
    e = batch.entries[i]
    held = tx.one("SELECT terminal_id, uid_hash, txn_id FROM enrolments WHERE member_id = ?", [member_id])
    held_by, held_card, held_txn = (str(held[0]), str(held[1]), str(held[2])) if held else (None, None, None)
    if held_by == e.terminal_id and held_card == uid_hash:
        return
    detail = {
        "member_id": member_id,
        "held_by": held_by,
        "held_txn": held_txn,
        "held_card": held_card,
        "terminal": e.terminal_id,
        "uid_hash": uid_hash or None,
        "spend_held": _may_hold(tx, batch, member_id),
    }
    reason = Reason.ENROLMENT_CONTESTED
    batch.items.append(Item(f"{e.txn_id}:{reason.value}", e.seq, e.txn_id, batch.days[i], reason, detail))
    # Until staff settle the item: whoever holds either card, the id's value stays put, on the id it was merged
    # into if it was (its spends count there).
    if detail["spend_held"]:
        batch.touched_members.add(hold_spending(tx, member_id))


def _may_hold(tx: Tx, batch: Batch, member_id: str) -> bool:
    """Whether this terminal's contest may hold the id's spending: it holds it already, or its open contests that
    hold (this push's among them) name fewer than ``HOLDS_PER_TERMINAL`` ids. An item written before the bound
    holds (no ``spend_held`` in its detail)."""
    rows = tx.all(
        "SELECT detail FROM recon_items WHERE terminal_id = ? AND reason = ? AND state = 'open'",
        [batch.terminal_id, Reason.ENROLMENT_CONTESTED.value],
    )
    found = [json.loads(d) for (d,) in rows if isinstance(d, str)]
    found += [it.detail for it in batch.items if it.reason is Reason.ENROLMENT_CONTESTED]
    holding = {d.get("member_id") for d in found if isinstance(d, dict) and d.get("spend_held", True)}
    return member_id in holding or len(holding) < HOLDS_PER_TERMINAL


def hold_spending(tx: Tx, member_id: str) -> str:
    """Hold a contested member's spending (points and stored value) chain-wide; earning goes on. Tills learn it
    with the member (``spend_held``) and refuse ``member_spend_held``; head office refuses it online and
    quarantines a spend a till took without asking (``hq.ingest``). ``hq.reconcile.settle`` lifts it. An id
    merged away is held on the member it was merged into (``surviving_member``); returns the id held."""
    held = surviving_member(tx, member_id)
    tx.run("UPDATE members SET spend_held = 1 WHERE member_id = ?", [held])
    return held


def _merged_item(batch: Batch, i: int, uid_hash: str, winner: str, loser: str, moved: tuple[int, int]) -> None:

    e = batch.entries[i]
    day = batch.days[i]
    detail = {
        "uid_hash": uid_hash,
        "kept": winner,
        "merged": loser,
        "points_moved": moved[0],
        "stored_value_moved": moved[1],
        "rule": MERGE_RULE,
    }
    batch.items.append(
        Item(
            f"{e.txn_id}:{Reason.DUPLICATE_ENROLMENT.value}",
            e.seq,
            e.txn_id,
            day,
            Reason.DUPLICATE_ENROLMENT,
            detail,
            "settled_auto",
            f"merged {loser} into {winner}: {MERGE_RULE}",
        )
    )


def first_tier(tx: Tx) -> str:
    """The tier a new member starts in: the lowest of head office's ladder (never what a till says)."""

    docs, base = rule_documents(tx)
    try:
        return program_of(docs, base).ladder.levels[0].tier
    except Exception:  # noqa: BLE001 - head office's own ladder does not parse: the default ladder's first tier
        return program_of({}, base).ladder.levels[0].tier


def _link_card(tx: Tx, uid_hash: str, member_id: str) -> None:
    tx.run(
        "INSERT INTO cards (uid_hash, member_id, status, version, deleted) VALUES (?, ?, 'active', 0, 0) "
        "ON CONFLICT (uid_hash) DO UPDATE SET member_id = excluded.member_id, status = 'active', deleted = 0",
        [uid_hash, member_id],
    )
    _bump(tx, "cards", "uid_hash", [uid_hash])


def merge(tx: Tx, batch: Batch, winner: str, loser: str) -> tuple[int, int]:
    """Move ``loser``'s balances, cards, sales, claims and consents to ``winner``; ``loser`` becomes a
    tombstone. Returns the (points, stored value) moved."""
    row = tx.one("SELECT points, stored_value FROM members WHERE member_id = ?", [loser])
    points, value = (int(row[0]), int(row[1])) if row else (0, 0)
    tx.run(
        "UPDATE members SET points = points + ?, stored_value = stored_value + ? WHERE member_id = ?",
        [points, value, winner],
    )
    tx.run("UPDATE members SET points = 0, stored_value = 0, deleted = 1 WHERE member_id = ?", [loser])
    ledger.merge(tx, winner, loser, batch.received_at)
    tx.run("UPDATE enrolments SET merged_into = ? WHERE member_id = ? OR merged_into = ?", [winner, loser, loser])
    cards = [str(r[0]) for r in tx.all("SELECT uid_hash FROM cards WHERE member_id = ? AND deleted = 0", [loser])]
    tx.run("UPDATE cards SET member_id = ? WHERE member_id = ? AND deleted = 0", [winner, loser])
    tx.run("UPDATE journal SET member_id = ? WHERE member_id = ?", [winner, loser])
    tx.run("UPDATE sales SET member_id = ? WHERE member_id = ?", [winner, loser])
    tx.run("UPDATE claims SET member_id = ? WHERE member_id = ?", [winner, loser])
    tx.run(
        "INSERT INTO consents (member_id, wording_version, channel, given_at) SELECT ?, wording_version, channel, "
        "given_at FROM consents WHERE member_id = ? ON CONFLICT DO NOTHING",
        [winner, loser],
    )
    tx.run("DELETE FROM consents WHERE member_id = ?", [loser])
    stats.move(tx, loser, winner)
    _bump(tx, "cards", "uid_hash", cards)
    batch.touched_members.update((winner, loser))
    return points, value


def redirect(tx: Tx, batch: Batch) -> None:
    """Entries naming a member merged away count for the member kept; entries naming an erased member
    are kept without the member (anonymised); either way no ``unknown_member`` item."""

    lost = {f.member_id for i, f in enumerate(batch.facts) if batch.effects[i] is Effect.UNKNOWN_MEMBER}
    if not lost:
        return
    merged = _merged_into(tx, lost)
    cond, params = tx.in_list("member_id", sorted(lost))
    erased = {str(r[0]) for r in tx.all(f"SELECT member_id FROM erasures WHERE {cond}", params)}
    for i, facts in enumerate(batch.facts):
        if batch.effects[i] is not Effect.UNKNOWN_MEMBER or facts.member_id not in (merged.keys() | erased):
            continue
        entry = batch.entries[i]
        if facts.member_id in erased:
            batch.facts[i] = replace(facts, member_id=None, uid_hash=None, points=0, stored_value=0)
            batch.entries[i] = entry.model_copy(update={"payload": anonymised(entry.kind, entry.payload)})
            batch.effects[i] = Effect.NONE
        else:
            batch.facts[i] = replace(facts, member_id=merged[str(facts.member_id)])
            batch.effects[i] = Effect.APPLIED if facts.points or facts.stored_value else Effect.NONE
        batch.items[:] = [
            it for it in batch.items if not (it.txn_id == entry.txn_id and it.reason is Reason.UNKNOWN_MEMBER)
        ]


def _merged_into(tx: Tx, member_ids: set[Any]) -> dict[str, str]:
    cond, params = tx.in_list("member_id", sorted(str(m) for m in member_ids))
    return {
        str(r[0]): str(r[1])
        for r in tx.all(
            f"SELECT member_id, merged_into FROM enrolments WHERE merged_into IS NOT NULL AND {cond}", params
        )
    }


# -- claims ------------------------------------------------------------------------------------------


def claim(
    tx: Tx,
    text: str,
    display_name: str,
    consent_version: str,
    now: datetime,
    profile: profiles.ProfileChange | None = None,
) -> dict[str, Any]:
    """Redeem a claim token: a new member with the sale's points, once, and the profile the member filled
    in (birthday, attributes, marketing consent). Raises ClaimRefused, or ProfileRefused (nothing is kept)."""
    if consent_version != CONSENT_VERSION:
        raise ClaimRefused("consent_required", "Please read and accept the current terms to join.")
    try:
        token = tokens.parse(text)
        key = tx.one("SELECT terminal_id, public_key FROM claim_keys WHERE key_id = ?", [token.key_id.hex()])
        if key is None:  # a till's key arrives with its journal: an unsynced till looks the same as a forger
            raise ClaimRefused("claim_unknown_sale", "This receipt has not reached us yet. Please try again later.")
        tokens.verify(token, tokens.unb64(str(key[1])), now.timestamp())
    except tokens.ClaimTokenError as exc:
        raise ClaimRefused(f"claim_{exc.reason}", str(exc)) from exc
    sale = tx.one(
        "SELECT terminal_id, kind, member_id, payload, effect, received_at FROM journal "
        f"WHERE txn_id = ?{tx.for_update}",
        [token.txn_id],
    )
    if sale is None:
        raise ClaimRefused("claim_unknown_sale", "This sale has not reached us yet. Please try again in a few minutes.")
    if sale[0] != key[0] or sale[1] != "sale":
        raise ClaimRefused("claim_forged", "This claim code does not match its sale.")
    received = parse_time(str(sale[5]))
    if received is None or now.timestamp() > received.timestamp() + tokens.TTL + tokens.SLACK:
        # from when head office received the sale (its own clock), not the expiry the code names
        raise ClaimRefused("claim_expired", "This claim code has expired.")
    if sale[2] is not None or tx.one("SELECT 1 FROM claims WHERE txn_id = ?", [token.txn_id]) is not None:
        raise ClaimRefused("claim_used", "The points of this receipt have already been claimed.")
    if tx.one("SELECT 1 FROM journal WHERE kind = 'void' AND original_txn = ?", [token.txn_id]):
        raise ClaimRefused("claim_used", "This sale was cancelled at the till: it has no points to claim.")
    if sale[4] != "none":  # held by the trust rules (quarantined, rejected, malformed): nothing to claim from it
        raise ClaimRefused("claim_used", "This sale is being checked by the shop: it has no points to claim now.")
    try:
        payload = parse_payload("sale", json.loads(str(sale[3])))
    except PayloadError as exc:
        raise ClaimRefused("claim_forged", "This sale's record cannot be read: it has no points to claim.") from exc
    assert isinstance(payload, SalePayload)
    member_id = f"J-{uuid.uuid4().hex[:20]}"
    returned = returns_held(tx, token.txn_id)
    if returned and everything_returned(payload, returned):
        raise ClaimRefused("claim_used", "Everything on this receipt was returned: it has no points to claim.")
    priced = claimed(tx, payload, member_id)
    taken = sum(points_taken_back(priced, returned[:k], r) for k, r in enumerate(returned))
    points = max(0, priced.sale.points_earned - taken)
    at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tx.run(
        "INSERT INTO claims (txn_id, member_id, points, claimed_at) VALUES (?, ?, ?, ?)",
        [token.txn_id, member_id, points, at],
    )
    tx.run(
        "INSERT INTO members (member_id, display_name, tier, points, status, version, stored_value, deleted) "
        "VALUES (?, ?, ?, ?, 'active', 0, 0, 0)",
        [member_id, display_name, first_tier(tx), points],
    )
    tx.run(
        "UPDATE journal SET member_id = ?, points = ?, effect = 'applied' WHERE txn_id = ?",
        [member_id, points, token.txn_id],
    )
    ledger.post_journal(tx, [token.txn_id])
    stats.apply(tx, [token.txn_id])
    _consent(tx, member_id, consent_version, WEB_CHANNEL, at)
    if profile is not None:
        profiles.update(tx, member_id, profile, now.date(), at, by_member=True)
    _bump(tx, "members", "member_id", [member_id])
    return {"member_id": member_id, "display_name": display_name, "points": points, "txn_id": token.txn_id}


@dataclass(frozen=True)
class Claimed:
    """An anonymous sale as its claimer's (a new member's tier, no coupons or points spent, ``sale.points_earned``
    what head office's rules give it) and those rules (None: they do not parse, and the sale earns nothing)."""

    sale: SalePayload
    program: Program | None


def claimed(tx: Tx, sale: SalePayload, member_id: str) -> Claimed:
    """``sale`` priced again with head office's rules as its claimer's (an anonymous sale earned nothing at the
    till; what the till said it earned is not taken on trust). The rules are read once."""
    docs, base = rule_documents(tx)
    try:
        program: Program | None = program_of(docs, base)
    except Exception:  # noqa: BLE001 - rules head office cannot read: the default ladder's tier, no points
        program = None
    tier = program.ladder.levels[0].tier if program is not None else first_tier(tx)
    update = {"member_id": member_id, "coupons": [], "points_redeemed": 0, "reward_points": 0, "tier": tier}
    as_member = sale.model_copy(update={**update, "points_earned": 0})
    if program is None:
        return Claimed(as_member, None)
    try:
        earned = max(0, recompute(as_member, program, {}).points_earned)
    except Exception:  # noqa: BLE001 - a sale head office cannot price earns nothing rather than failing the claim
        earned = 0
    return Claimed(as_member.model_copy(update={"points_earned": earned}), program)


def returns_held(tx: Tx, txn_id: str) -> list[RefundPayload]:
    """The refunds and voids of sale ``txn_id`` head office holds and counts (not held for a person), in their
    tills' order."""
    rows = tx.all(
        "SELECT kind, payload FROM journal WHERE original_txn = ? AND kind IN ('refund', 'void') "
        "AND effect IN ('applied', 'none') ORDER BY terminal_id, seq",
        [txn_id],
    )
    held = []
    for kind, text in rows:
        try:
            payload = parse_payload(str(kind), json.loads(str(text)))
        except (PayloadError, ValueError):
            continue
        if isinstance(payload, RefundPayload):
            held.append(payload)
    return held


def everything_returned(sale: SalePayload, returned: list[RefundPayload]) -> bool:
    """A void, or refunds that between them return every unit of the sale."""
    if any(isinstance(r, VoidPayload) for r in returned):
        return True
    back: dict[int, int] = {}
    for refund in returned:
        for x in refund.returned:
            back[x.line] = back.get(x.line, 0) + x.quantity
    return all(back.get(i, 0) >= line.quantity for i, line in enumerate(sale.lines))


def points_taken_back(claim: Claimed, earlier: list[RefundPayload], refund: RefundPayload) -> int:
    """What ``refund`` takes back of a claimed sale's points, after the ``earlier`` refunds: the basket that stays
    priced again with head office's rules; a void takes what is left. A sale head office cannot price again
    gives back all it has left."""
    if isinstance(refund, VoidPayload) or claim.program is None:
        return claim.sale.points_earned
    try:
        return max(0, refund_priced(claim.sale, earlier, refund, claim.program, {}).points_clawed)
    except Exception:  # noqa: BLE001 - what cannot be priced again keeps nothing
        return claim.sale.points_earned


@dataclass(frozen=True, slots=True)
class ClaimedSale:
    """A sale a member claimed from its receipt: who, the points the claim gave, the sale as the till sent it."""

    claimer: str
    gave: int
    sale: SalePayload


def claimed_sale(tx: Tx, txn_id: str) -> ClaimedSale | None:
    """Sale ``txn_id`` when a member claimed it from its receipt. Its journal row is locked first, as a claim
    locks it: a claim and a return of one sale never pass each other unseen."""
    row = tx.one(  # waits for a claim of it in progress, then reads what that claim wrote
        f"SELECT member_id, payload FROM journal WHERE txn_id = ? AND kind = 'sale'{tx.for_update}", [txn_id]
    )
    if row is None or row[0] is None:  # an anonymous sale nobody claimed (or its claimer was erased since)
        return None
    claim = tx.one("SELECT points FROM claims WHERE txn_id = ?", [txn_id])
    if claim is None:  # a member's own sale: a return of it naming no member is a breach already held
        return None
    try:
        bought = parse_payload("sale", json.loads(str(row[1])))
    except (PayloadError, ValueError):
        return None
    assert isinstance(bought, SalePayload)
    return ClaimedSale(str(row[0]), int(claim[0]), bought)


def taken_from_claimer(tx: Tx, found: ClaimedSale, txn_id: str) -> int:
    """The points the returns of sale ``txn_id`` head office applied took back from its claimer."""
    row = tx.one(
        "SELECT COALESCE(SUM(points), 0) FROM journal WHERE original_txn = ? AND member_id = ? AND effect = 'applied'",
        [txn_id, found.claimer],
    )
    return -int(row[0]) if row else 0


def claimers_share(tx: Tx, found: ClaimedSale, earlier: list[RefundPayload], taken: int, refund: RefundPayload) -> int:
    """What ``refund`` takes back from the claimer: what its units earned, never more than the claim gave less
    what ``taken`` already took back."""
    return min(points_taken_back(claimed(tx, found.sale, found.claimer), earlier, refund), max(0, found.gave - taken))


def claimed_returns(tx: Tx, batch: Batch) -> None:
    """A refund or void with no member, of a sale a member claimed from its receipt, is that member's: it takes
    back the points the returned units earned them (the till that refunded did not know of the claim)."""
    seen: dict[str, list[RefundPayload]] = {}
    taken: dict[str, int] = {}
    for i, refund in enumerate(batch.payloads):
        facts = batch.facts[i]
        if not isinstance(refund, RefundPayload) or batch.effects[i] in NOT_APPLIED or facts.member_id is not None:
            continue
        found = claimed_sale(tx, refund.original_txn)
        if found is None:
            continue
        earlier = seen.setdefault(refund.original_txn, returns_held(tx, refund.original_txn))
        if refund.original_txn not in taken:  # what refunds of this sale took back from the claimer before
            taken[refund.original_txn] = taken_from_claimer(tx, found, refund.original_txn)
        back = claimers_share(tx, found, earlier, taken[refund.original_txn], refund)
        earlier.append(refund)
        taken[refund.original_txn] += back
        batch.facts[i] = replace(facts, member_id=found.claimer, points=-back)
        batch.effects[i] = Effect.APPLIED if back else Effect.NONE


def claimed_return_released(tx: Tx, txn_id: str, refund: RefundPayload) -> tuple[str, int] | None:
    """A held return with no member, of a claimed sale, released by staff: it is the claimer's as if it had
    applied at once (``claimed_returns``). Writes the claimer and the points taken back on its journal row and
    returns them; None when its sale was not claimed."""
    found = claimed_sale(tx, refund.original_txn)
    if found is None:
        return None
    taken = taken_from_claimer(tx, found, refund.original_txn)
    back = claimers_share(tx, found, returns_held(tx, refund.original_txn), taken, refund)
    tx.run("UPDATE journal SET member_id = ?, points = ? WHERE txn_id = ?", [found.claimer, -back, txn_id])
    return found.claimer, -back


def _consent(tx: Tx, member_id: str, version: str, channel: str, at: str) -> None:
    tx.run(
        "INSERT INTO consents (member_id, wording_version, channel, given_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [member_id, version, channel, at],
    )


def consents(tx: Tx, member_id: str) -> list[dict[str, str]]:
    rows = tx.all(
        "SELECT wording_version, channel, given_at FROM consents WHERE member_id = ? ORDER BY given_at", [member_id]
    )
    return [{"wording_version": str(r[0]), "channel": str(r[1]), "given_at": str(r[2])} for r in rows]


# -- erasure -----------------------------------------------------------------------------------------


def anonymised(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A journal payload without who: the member id, the card hash, the secure tap and the name go;
    the sale stays, still its kind's model (an unreadable payload keeps only what is not personal)."""
    try:
        typed = parse_payload(kind, payload)
    except PayloadError:
        return {k: v for k, v in payload.items() if k not in PERSONAL_KEYS}
    blank: dict[str, Any] = {k: None for k in ("member_id", "uid_hash", "tap") if k in type(typed).model_fields}
    if "display_name" in type(typed).model_fields:
        blank["display_name"] = ""
    return typed.model_copy(update=blank).wire()


def _stored(payload: dict[str, Any]) -> str:

    return payload_json(payload)


def erase(tx: Tx, member_id: str, by: str, now: str) -> dict[str, int]:
    """Erase a member: tombstones for it, its cards and personal coupons; its sales anonymised; the gifts
    naming it deleted (a pending one dies: nothing goes back to an erased giver)."""
    if tx.one(f"SELECT 1 FROM members WHERE member_id = ?{tx.for_update}", [member_id]) is None:
        raise UnknownMember(f"no member {member_id}")
    cards = [str(r[0]) for r in tx.all("SELECT uid_hash FROM cards WHERE member_id = ?", [member_id])]
    coupons = [str(r[0]) for r in tx.all("SELECT coupon_id FROM coupons WHERE member_id = ?", [member_id])]
    ledger.forfeit(tx, member_id, now)
    tx.run(
        "UPDATE members SET display_name = '', points = 0, stored_value = 0, deleted = 1 WHERE member_id = ?",
        [member_id],
    )
    tx.run("UPDATE cards SET deleted = 1 WHERE member_id = ?", [member_id])
    tx.run("UPDATE coupons SET deleted = 1, body = '{}' WHERE member_id = ?", [member_id])
    # the versions of its personal coupons head office kept for pricing name it too (campaign offers ...)
    where, params = tx.in_list("doc_id", coupons)
    tx.run(f"UPDATE doc_versions SET body = '{{}}' WHERE kind = 'coupon' AND {where}", params)
    tx.run("UPDATE coupon_uses SET member_id = NULL WHERE member_id = ?", [member_id])
    tx.run("DELETE FROM coupon_member_uses WHERE member_id = ?", [member_id])
    rows = tx.all("SELECT terminal_id, seq, kind, payload FROM journal WHERE member_id = ?", [member_id])
    tx.many(
        "UPDATE journal SET member_id = NULL, payload = ? WHERE terminal_id = ? AND seq = ?",
        [(_stored(anonymised(str(k), json.loads(str(p)))), t, s) for t, s, k, p in rows],
    )
    tx.run("UPDATE sales SET member_id = NULL WHERE member_id = ?", [member_id])
    tx.run("UPDATE enrolments SET uid_hash = '' WHERE member_id = ?", [member_id])
    tx.run("DELETE FROM consents WHERE member_id = ?", [member_id])
    rollup.campaign_decisions_gone(tx, member_id)  # its campaign coupons' uses stay coupons, not campaigns'
    tx.run("DELETE FROM campaign_members WHERE member_id = ?", [member_id])  # its decisions leave the reports
    # its gifts: a pending one dies (its coupon, held, is erased above), and no record names it any more
    tx.run("DELETE FROM gifts WHERE giver = ? OR receiver = ?", [member_id, member_id])
    # the gift cards in its wallet leave it (bearer cards: they keep their value for whoever holds them)
    let_go = tx.run("DELETE FROM gift_card_holders WHERE member_id = ?", [member_id])
    stats.forget(tx, member_id)
    profiles.forget(tx, member_id)
    tx.run(
        "INSERT INTO erasures (member_id, erased_at, erased_by) VALUES (?, ?, ?) ON CONFLICT (member_id) DO NOTHING",
        [member_id, now, by],
    )
    _bump(tx, "members", "member_id", [member_id])
    _bump(tx, "cards", "uid_hash", cards)
    _bump(tx, "coupons", "coupon_id", coupons)
    return {"cards": len(cards), "coupons": len(coupons), "sales_anonymised": len(rows), "gift_cards_let_go": let_go}


def _bump(tx: Tx, table: str, key: str, ids: list[str]) -> None:

    bump_versions(tx, table, key, ids)


__all__ = [
    "CONSENT_TEXT",
    "CONSENT_VERSION",
    "ClaimRefused",
    "UnknownMember",
    "accept",
    "claim",
    "erase",
    "merge",
    "redirect",
    "utc_now",
]
