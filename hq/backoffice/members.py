"""The members pages' reading and their changes, each checked against the role table first.

search     by member id (exact), name (prefix, case-folded: ``idx_members_name``), email or phone (the
           wallet's contacts, exact after normalising) or card (the 64-hex hash of its UID, or the UID
           itself when head office holds the chain's card-hash key)
stores_of  the stores a member belongs to: those it visited (``member_days``) and the one whose till
           enrolled it. A store manager finds and acts on the members of their own stores only.
page       profile, tier and progress, points and their lots with expiry, stored value, cards, recent
           sales and visits, adjustments, pending requests
block / adjust (asks for approval) / erase   each audited in the transaction of its change
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hq import adjustments, erasure, giftholders, stats
from hq import members as hq_members
from hq.backoffice import approvals, staff
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Reach, Scope, allowed, reach
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.store import HqStore, set_blocked
from hq.wallet import signin, views

LIMIT = 50
_UID_HASH = re.compile(r"[0-9a-f]{64}")
_UID = re.compile(r"(?:[0-9a-f]{2}){4}|(?:[0-9a-f]{2}){7}|(?:[0-9a-f]{2}){10}")
HashUid = Callable[[bytes], str]


@dataclass(frozen=True, slots=True)
class Found:
    member_id: str
    name: str
    tier: str
    status: str
    points: int
    stored_value: int


def stores_of(tx: Tx, member_id: str) -> frozenset[str]:
    rows = tx.all(
        "SELECT DISTINCT store_id FROM member_days WHERE member_id = ? UNION "
        "SELECT t.store_id FROM enrolments e JOIN terminals t ON t.terminal_id = e.terminal_id WHERE e.member_id = ?",
        [member_id, member_id],
    )
    return frozenset(str(r[0]) for r in rows)


def _ids(tx: Tx, query: str, hash_uid: HashUid | None) -> list[str]:
    """Member ids matching ``query`` by each key, id first."""
    q = query.strip()
    if not q:
        return []
    found = [str(r[0]) for r in tx.all("SELECT member_id FROM members WHERE member_id = ? AND deleted = 0", [q])]
    low = q.lower()
    found += [
        str(r[0])
        for r in tx.all(
            "SELECT member_id FROM members WHERE lower(display_name) >= ? AND lower(display_name) < ? AND deleted = 0 "
            "ORDER BY lower(display_name), member_id LIMIT ?",
            [low, low + "\U0010ffff", LIMIT * 4],
        )
    ]
    try:
        contact = signin.contact_of(q)
        found += [
            str(r[0])
            for r in tx.all(
                "SELECT member_id FROM member_contacts WHERE kind = ? AND contact = ?", [contact.kind, contact.value]
            )
        ]
    except signin.WalletRefused:
        pass
    hashes = [low] if _UID_HASH.fullmatch(low) else []
    if hash_uid is not None and _UID.fullmatch(low):  # a card's UID as printed or read (4, 7 or 10 bytes)
        hashes.append(hash_uid(bytes.fromhex(low)))
    for uid_hash in hashes:
        found += [
            str(r[0]) for r in tx.all("SELECT member_id FROM cards WHERE uid_hash = ? AND deleted = 0", [uid_hash])
        ]
    return list(dict.fromkeys(found))


def stores_of_each(tx: Tx, member_ids: list[str]) -> dict[str, frozenset[str]]:
    """``stores_of`` for several members in one statement."""
    days, days_params = tx.in_list("member_id", member_ids)
    enrolled, enrolled_params = tx.in_list("e.member_id", member_ids)
    found: dict[str, set[str]] = {m: set() for m in member_ids}
    for member_id, store_id in tx.all(
        f"SELECT DISTINCT member_id, store_id FROM member_days WHERE {days} UNION SELECT e.member_id, t.store_id "
        f"FROM enrolments e JOIN terminals t ON t.terminal_id = e.terminal_id WHERE {enrolled}",
        [*days_params, *enrolled_params],
    ):
        found[str(member_id)].add(str(store_id))
    return {m: frozenset(s) for m, s in found.items()}


def search(tx: Tx, who: Staff, query: str, hash_uid: HashUid | None = None) -> list[Found]:
    """The members ``query`` finds that ``who`` may see (a store manager: its stores' members);
    ``hash_uid``: the chain's card-hash function, when head office holds the key (a UID is then found too).
    Three statements whatever the number found: the ids, their stores (for a store-wide reach only), their rows."""
    require(who, Action.MEMBERS_READ, None)
    ids = _ids(tx, query, hash_uid)
    if ids and reach(who.role, Action.MEMBERS_READ) is not Reach.CHAIN:
        stores = stores_of_each(tx, ids)
        ids = [m for m in ids if allowed(who.role, Action.MEMBERS_READ, Scope(who.stores, stores[m]))]
    if not ids:
        return []
    cond, params = tx.in_list("member_id", ids)
    rows = {
        str(r[0]): Found(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), int(r[5]))
        for r in tx.all(
            f"SELECT member_id, display_name, tier, status, points, stored_value FROM members WHERE {cond}", params
        )
    }
    return [rows[m] for m in ids if m in rows][:LIMIT]


@dataclass(frozen=True, slots=True)
class MemberPage:
    found: Found
    stores: frozenset[str]
    blocked_at: str | None
    overview: views.Overview | None
    visits: list[views.Visit]
    totals: dict[str, Any]
    cards: list[dict[str, Any]]
    adjustments: list[dict[str, object]]
    pending: list[approvals.Request]
    gift_cards: list[giftholders.Held] | None = None
    """The gift cards the member keeps in the wallet, for a role that reads gift cards (None: not shown)."""


def _totals(tx: Tx, member_id: str) -> dict[str, Any]:
    life = stats.lifetime(tx, member_id)
    names = ("first_visit", "last_visit", "visits", "spend")
    return {n: getattr(life, n) for n in names} if life else dict.fromkeys(names)


def page(store: HqStore, who: Staff, member_id: str) -> MemberPage:
    with store.db.read() as tx:
        row = tx.one(
            "SELECT member_id, display_name, tier, status, points, stored_value, blocked_at FROM members "
            "WHERE member_id = ? AND deleted = 0",
            [member_id],
        )
        if row is None:
            raise BackofficeRefused(Code.NOT_FOUND, "no such member")
        stores = stores_of(tx, member_id)
        require(who, Action.MEMBERS_READ, stores)
        cards = [
            {"uid_hash": str(c[0]), "status": str(c[1])}
            for c in tx.all(
                "SELECT uid_hash, status FROM cards WHERE member_id = ? AND deleted = 0 ORDER BY uid_hash", [member_id]
            )
        ]
        made = adjustments.of_member(tx, member_id)
        asked = approvals.of_subject(tx, approvals.ADJUSTMENT, member_id)
        pending = [r for r in asked if r.state == approvals.PENDING and approvals.concerns(who, r)]
        if who.merchant_id is not None:  # another merchant's adjustments and the chain's are not theirs to read
            mine = {r.request_id for r in asked if approvals.concerns(who, r)}
            made = [a for a in made if a["adjustment_id"] in mine]
        totals = _totals(tx, member_id)
        gifts = giftholders.held_by(tx, member_id) if allowed(who.role, Action.GIFTCARDS_READ, Scope()) else None
    found = Found(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]))
    overview = views.overview(store, member_id, datetime.now(UTC))
    visits = views.activity(store, member_id)
    if reach(who.role, Action.MEMBERS_READ) is Reach.STORES:  # another store's (merchant's) visits are not theirs
        stores = stores & who.stores
        visits = [v for v in visits if v.store_id in who.stores]
    return MemberPage(found, stores, row[6], overview, visits, totals, cards, made, pending, gifts)


# -- changes -----------------------------------------------------------------------------------------------


def _member_stores(tx: Tx, member_id: str) -> frozenset[str]:
    if tx.one("SELECT 1 FROM members WHERE member_id = ? AND deleted = 0", [member_id]) is None:
        raise BackofficeRefused(Code.NOT_FOUND, "no such member")
    return stores_of(tx, member_id)


def _blocked_by_own_merchant(tx: Tx, who: Staff, kind: str, subject: str) -> None:
    """A merchant's staff unblock only what their own merchant's staff blocked (``forbidden``): a block of the
    chain's (its staff, an administrator's token, a command, a till) or of another merchant's is not theirs to
    lift, though the member shops at their stores. Nothing blocked: nothing to refuse."""
    row = tx.one(
        "SELECT by_whom FROM status_changes WHERE kind = ? AND subject = ? AND status = 'blocked' "
        "ORDER BY changed_at DESC LIMIT 1",
        [kind, subject],
    )
    held = tx.one(
        f"SELECT status FROM {'cards' if kind == 'card' else 'members'} WHERE "
        f"{'uid_hash' if kind == 'card' else 'member_id'} = ?",
        [subject],
    )
    if held is None or str(held[0]) != "blocked":
        return
    blocker = staff.get(tx, str(row[0])) if row is not None else None
    if blocker is None or blocker.merchant_id != who.merchant_id:
        raise BackofficeRefused(Code.FORBIDDEN, "a merchant's staff unblock only what their own merchant blocked")


def block(store: HqStore, who: Staff, kind: str, subject: str, blocked: bool, reason: str) -> dict[str, Any]:
    """Block or unblock a member or a card (``kind``), in the member's stores only for a store manager; a
    merchant's staff unblock only what their own merchant's staff blocked."""
    why = approvals.reason_of(reason)

    def change(tx: Tx) -> dict[str, Any]:
        owner = subject
        if kind == "card":
            row = tx.one("SELECT member_id FROM cards WHERE uid_hash = ? AND deleted = 0", [subject])
            if row is None:
                raise BackofficeRefused(Code.NOT_FOUND, "no such card")
            owner = str(row[0])
        require(who, Action.MEMBERS_BLOCK, _member_stores(tx, owner))
        if not blocked and who.merchant_id is not None:
            _blocked_by_own_merchant(tx, who, kind, subject)
        done = set_blocked(tx, kind, subject, blocked, who.staff_id, why, store.now())  # audited there
        return {**done, "member_id": owner}

    return store.db.transact(change)


def ask_adjustment(
    store: HqStore, who: Staff, member_id: str, points: int, stored_value: int, reason: str
) -> approvals.Request:
    """A pending adjustment of the member's points and/or stored value (applied when someone else approves).
    A merchant's staff adjusts points only, booked to its merchant (the request carries ``merchant_id``)."""

    def change(tx: Tx) -> approvals.Request:
        stores = _member_stores(tx, member_id)
        payload: dict[str, object] = {"member_id": member_id, "points": points, "stored_value": stored_value}
        if who.merchant_id is not None:
            payload["merchant_id"] = who.merchant_id
        return approvals.ask(tx, who, approvals.ADJUSTMENT, member_id, stores, payload, reason)

    return store.db.transact(change)


def erase(store: HqStore, who: Staff, member_id: str, reason: str) -> dict[str, int]:
    why = approvals.reason_of(reason)
    with store.db.read() as tx:
        require(who, Action.MEMBERS_ERASE, _member_stores(tx, member_id))

    try:
        return erasure.erase_member(store, member_id, who.staff_id, why)  # audited there
    except hq_members.UnknownMember as exc:
        raise BackofficeRefused(Code.NOT_FOUND, "no such member") from exc


__all__ = [
    "Found",
    "MemberPage",
    "ask_adjustment",
    "block",
    "erase",
    "page",
    "search",
    "stores_of",
    "stores_of_each",
]
