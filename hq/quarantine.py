"""Quarantined entries: stored, changing no balance, until an administrator decides.

    held(tx)                        every entry held in quarantine, with the items that hold it
    release(tx, txn_id, by, note)   apply it now: its points and stored value go to the member (or wait
                                    for the member, like any entry naming one head office does not
                                    know yet); a refund counts against its sale and gives its coupons back;
                                    a gift card entry moves its card's value
    reject(tx, txn_id, by, note)    it never applies

Either way its quarantine items are settled by hand with who and why, and the decision is kept
(``quarantine_decisions``). A malformed entry cannot be applied: it can only be rejected.
"""

from __future__ import annotations

import json
from typing import Any

from hq import giftcards, members, rollup
from hq.db.engine import Tx
from hq.errors import HqError
from hq.ingest import Effect, apply_held, bump_versions, unproven_coupons_back
from hq.policy import CardKeys
from sync.protocol import GiftPayload, PayloadError, RefundPayload, parse_payload


class NotQuarantined(HqError):
    """No entry with that transaction id is held in quarantine."""


def held(tx: Tx, limit: int = 1000) -> list[dict[str, Any]]:
    rows = tx.all(
        "SELECT terminal_id, seq, txn_id, kind, member_id, day, points, stored_value, effect FROM journal "
        "WHERE effect IN (?, ?) ORDER BY received_at, terminal_id, seq LIMIT ?",
        [Effect.QUARANTINED.value, Effect.MALFORMED.value, limit],
    )
    names = ("terminal_id", "seq", "txn_id", "kind", "member_id", "day", "points", "stored_value", "effect")
    found = [dict(zip(names, r, strict=True)) for r in rows]
    for entry in found:
        entry["reasons"] = [
            str(r[0])
            for r in tx.all(
                "SELECT reason FROM recon_items WHERE txn_id = ? AND quarantine = 1 AND state = 'open' ORDER BY reason",
                [entry["txn_id"]],
            )
        ]
    return [e for e in found if e["effect"] == Effect.QUARANTINED.value or e["reasons"]]


def _entry(tx: Tx, txn_id: str) -> tuple[Any, ...]:
    row = tx.one(
        f"SELECT kind, payload, member_id, points, stored_value, effect FROM journal WHERE txn_id = ?{tx.for_update}",
        [txn_id],
    )
    if row is None or row[5] not in (Effect.QUARANTINED.value, Effect.MALFORMED.value):
        raise NotQuarantined(f"transaction {txn_id} is not held in quarantine")
    return tuple(row)


def _decide(tx: Tx, txn_id: str, decision: str, by: str, note: str, now: str) -> None:
    if not by.strip() or not note.strip():
        raise ValueError("a quarantine decision needs who and why")
    tx.run(
        "INSERT INTO quarantine_decisions (txn_id, decision, by_whom, note, decided_at) VALUES (?, ?, ?, ?, ?)",
        [txn_id, decision, by, note, now],
    )
    tx.run(
        "UPDATE recon_items SET state = 'settled_manual', settled_at = ?, settled_by = ?, note = ? "
        "WHERE txn_id = ? AND quarantine = 1 AND state = 'open'",
        [now, by, f"{decision}: {note}", txn_id],
    )


def release(tx: Tx, txn_id: str, by: str, note: str, now: str, keys: CardKeys) -> str:
    """Apply a quarantined entry now; returns its new effect. ``keys``: head office's card keys (a released gift
    card sale's read counter is taken only from a SUN message they verify, as at ingest)."""
    with rollup.one_write(tx):
        return _release(tx, txn_id, by, note, now, keys)


def _release(tx: Tx, txn_id: str, by: str, note: str, now: str, keys: CardKeys) -> str:
    kind, payload_text, member_id, points, value, effect = _entry(tx, txn_id)
    if effect == Effect.MALFORMED.value:
        raise ValueError(f"transaction {txn_id} is malformed: it cannot be applied, only rejected")
    try:
        payload = parse_payload(str(kind), json.loads(str(payload_text)))
    except PayloadError as exc:
        raise ValueError(f"transaction {txn_id} cannot be applied: {exc}") from exc
    _decide(tx, txn_id, "released", by, note, now)
    if isinstance(payload, RefundPayload) and member_id is None:  # a return of a sale claimed since is the claimer's
        member_id, points = members.claimed_return_released(tx, txn_id, payload) or (member_id, points)
    new, coupons = apply_held(tx, txn_id, payload, member_id, int(points), int(value), now)
    if isinstance(payload, GiftPayload):  # a gift card's value is its own: it moves now
        row = tx.one("SELECT terminal_id, store_id, day FROM journal WHERE txn_id = ?", [txn_id])
        assert row is not None
        where = {"terminal": str(row[0]), "store": str(row[1]), "day": str(row[2]), "at": now}
        giftcards.bump(tx, giftcards.released(tx, txn_id, payload, str(kind), where, keys))
    bump_versions(tx, "coupons", "coupon_id", coupons)
    if new is Effect.APPLIED:
        bump_versions(tx, "members", "member_id", [str(member_id)])
    return new.value


def reject(tx: Tx, txn_id: str, by: str, note: str, now: str) -> str:
    """Keep a quarantined entry from ever applying; a sale held for its proof gives the member's own coupons
    back (``hq.ingest.unproven_coupons_back``)."""
    _entry(tx, txn_id)
    _decide(tx, txn_id, "rejected", by, note, now)
    tx.run("UPDATE journal SET effect = ? WHERE txn_id = ?", [Effect.REJECTED.value, txn_id])
    bump_versions(tx, "coupons", "coupon_id", unproven_coupons_back(tx, txn_id, now))
    return Effect.REJECTED.value
