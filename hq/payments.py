"""Head office's side of member payments: stored value top-ups, the payment key, member app tokens,
device certificates and the online confirmation of payment codes.

Everything here runs in head-office transactions over ``HqStore.db`` (SQLite or PostgreSQL, the same
SQL). The rules a payment code follows are ``terminal.payments`` (pure): head office signs device
certificates with ``issue_cert``, and checks a code it is asked to confirm with ``verify_code``.

    top-up            a fact in head office's own ledger (``topups``): the member's balance goes up,
                      tills get it by pull. A balance made negative by offline overspend is carried
                      and recovered by the next top-up; its ``stored_value_overspent`` items (and
                      ``stored_value_clawback_short``: a till's void of a top-up spent since) then
                      settle automatically.
    payment key       an Ed25519 key of purpose "payment" in ``signing_keys``: its public half goes to
                      every till with the other signed keys (``public_key`` base64url, raw 32 bytes).
    device            ``register_device`` issues a ``DeviceCert`` for the member's device key; the
                      certificate goes down the changes feed (kind ``device_certs``); revoking puts
                      ``device:<cert_id hex>`` on the signed revocation list.
    confirmation      ``confirm`` records a code id once (``payment_confirms``, primary key) and checks
                      the member's balance less what other confirmed payments not yet pushed hold.
    holds             ``holds``: what is held back now, confirmation by confirmation, oldest first.
    release of a hold ``release_hold``: an administrator ends the hold of one transaction's confirmations
                      (members' and gift cards'), audited, as if its till had withdrawn it.

Errors: ``PaymentRefused(code)`` carries the till's own rejection code (``terminal.errors.Code``
value); ``ValueError`` for bad input.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import audit, ledger, policy
from hq.db.engine import Tx, utc_now
from hq.errors import HqError, IntegrityFailed
from hq.ingest import (
    HQ_ACTOR,
    arrived,
    attested_held,
    bump_versions,
    holding,
    note_withdrawals,
    payload_json,
    use_counter,
    withdraw_confirms,
    withdrawn,
)
from hq.store import HqStore, unb64
from sync.protocol import ConfirmRequest, EntryKind, ErrorCode, Reason, TopupPayload
from terminal import membercodes
from terminal import payments as pay
from terminal.credentials import token_digest
from terminal.errors import Code, Rejected

CERT_LIFETIME_S = 365 * 86400
OFFLINE_CAP = 10_000  # minor units a device may pay per day at a till that is offline
MAX_DEVICES = 5  # live (unrevoked) paying devices a member may hold, whichever path registers them
MAX_ISSUED_PER_DAY = 2 * MAX_DEVICES
"""Certificates a member is issued in any 24 hours, removed ones included: each one, and each removal's
revocation, goes down to every till, so setting a phone up and removing it again cannot fill their databases."""
PAYMENT_PURPOSE = "payment"
MEMBER_PURPOSE = "member"


class PaymentRefused(HqError):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True, slots=True)
class TopUp:
    topup_id: str
    member_id: str
    amount: int
    balance_after: int
    recovered: int
    """How much of a negative balance this top-up paid back."""
    settled_items: list[str]


def _member_row(tx: Tx, member_id: str) -> tuple[int, str]:
    row = tx.one(
        f"SELECT stored_value, status FROM members WHERE member_id = ? AND deleted = 0{tx.for_update}", [member_id]
    )
    if row is None:
        raise PaymentRefused(Code.UNKNOWN_MEMBER.value, f"no member {member_id}")
    return int(row[0]), str(row[1])


def spend_held(tx: Tx, member_id: str) -> bool:
    """Whether the member's spending is held: its till-made id is contested (docs/enrolment.md)."""
    row = tx.one("SELECT spend_held FROM members WHERE member_id = ?", [member_id])
    return bool(row and row[0])


# -- top-up -----------------------------------------------------------------------------------------


def topup(store: HqStore, member_id: str, amount: int, by: str, note: str = "", topup_id: str | None = None) -> TopUp:
    """Add ``amount`` to the member's stored value; idempotent by ``topup_id`` (a retried request
    with the same id changes nothing and gets the same answer)."""
    fact = TopupPayload(member_id=member_id, amount=amount, note=note[:200]) if amount > 0 else None
    if fact is None or policy.check_actor(policy.Actor.ADMIN, EntryKind.TOPUP, fact) is not None:
        raise ValueError("a top-up is a positive amount in minor units, added by an administrator")
    topup_id = topup_id or f"TU-{secrets.token_hex(8)}"

    def run(tx: Tx) -> TopUp:
        held = tx.one("SELECT member_id, amount, balance_after FROM topups WHERE topup_id = ?", [topup_id])
        if held is not None:
            if (held[0], int(held[1])) != (member_id, amount):
                raise ValueError(f"top-up {topup_id} was already recorded with other content")
            return TopUp(topup_id, member_id, amount, int(held[2]), 0, [])
        before, _ = _member_row(tx, member_id)
        after = before + amount
        tx.run("UPDATE members SET stored_value = ? WHERE member_id = ?", [after, member_id])
        tx.run(
            "INSERT INTO topups (topup_id, member_id, amount, balance_after, by_whom, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [topup_id, member_id, amount, after, by, note, utc_now()],
        )
        ledger.post_topup(tx, topup_id, member_id, amount, utc_now())
        settled = _settle_overspends(tx, member_id, topup_id) if before < 0 <= after else []
        bump_versions(tx, "members", "member_id", [member_id])
        audit.append(tx, by, "topup", member_id, note, {"topup_id": topup_id, "amount": amount, "balance_after": after})
        return TopUp(topup_id, member_id, amount, after, min(amount, max(0, -before)), settled)

    return store.db.transact(run)


NEGATIVE_VALUE_REASONS = (Reason.STORED_VALUE_OVERSPENT.value, Reason.STORED_VALUE_CLAWBACK_SHORT.value)
"""The items of a stored-value balance taken below zero (an overspend, a top-up's void spent since): a top-up that
recovers the balance settles them."""


def _settle_overspends(tx: Tx, member_id: str, topup_id: str) -> list[str]:
    """The negative balance is recovered: its open stored-value overspend and clawback items settle automatically.
    A payment held beyond its till's day's bound (quarantined) took nothing from the balance: its item stays open
    until a person releases or rejects it."""
    cond, params = tx.in_list("reason", list(NEGATIVE_VALUE_REASONS))
    rows = tx.all(f"SELECT item_id, detail FROM recon_items WHERE {cond} AND state = 'open' AND quarantine = 0", params)
    ids = [str(r[0]) for r in rows if json.loads(r[1]).get("member_id") == member_id]
    note = f"negative balance recovered from top-up {topup_id}"
    tx.many(
        "UPDATE recon_items SET state = 'settled_auto', settled_at = ?, settled_by = ?, note = ? WHERE item_id = ?",
        [(utc_now(), HQ_ACTOR, note, item_id) for item_id in ids],
    )
    return ids


def topups(store: HqStore, member_id: str) -> list[dict[str, Any]]:
    with store.db.read() as tx:
        rows = tx.all(
            "SELECT topup_id, amount, balance_after, by_whom, note, created_at FROM topups "
            "WHERE member_id = ? ORDER BY created_at, topup_id",
            [member_id],
        )
    names = ("topup_id", "amount", "balance_after", "by", "note", "created_at")
    return [dict(zip(names, r, strict=True)) for r in rows]


# -- member app tokens ------------------------------------------------------------------------------


def member_token(store: HqStore, member_id: str) -> str:
    """A bearer token for the member app of ``member_id`` (device registration, balance); shown once."""
    token = secrets.token_urlsafe(32)

    def save(tx: Tx) -> None:
        _member_row(tx, member_id)
        tx.run(
            "INSERT INTO member_tokens (token_sha256, member_id, created_at) VALUES (?, ?, ?)",
            [token_digest(token), member_id, utc_now()],
        )

    store.db.transact(save)
    return token


def forget_tokens(tx: Tx, member_id: str) -> int:
    """Delete every member-app token of the member (signing out everywhere, an erasure): a stolen phone's
    app can no longer register a device or read the balance; the member's app needs a new token."""
    return tx.run("DELETE FROM member_tokens WHERE member_id = ?", [member_id])


def member_of_token(store: HqStore, token: str) -> str | None:
    """The member a member-app token is of; None for an unknown token, or one of a member blocked or deleted
    (its app can then neither register a paying key nor read the member's code)."""
    with store.db.read() as tx:
        row = tx.one(
            "SELECT t.member_id FROM member_tokens t JOIN members m ON m.member_id = t.member_id "
            "WHERE t.token_sha256 = ? AND m.deleted = 0 AND m.status = 'active'",
            [token_digest(token)],
        )
    return str(row[0]) if row else None


# -- the payment key and device certificates ----------------------------------------------------------


def payment_key(store: HqStore) -> tuple[str, Ed25519PrivateKey]:
    """Head office's active payment key (made on first use): (key id, private key)."""
    return signing_key(store, PAYMENT_PURPOSE)


def signing_key(store: HqStore, purpose: str) -> tuple[str, Ed25519PrivateKey]:
    """Head office's active signing key for ``purpose`` (made on first use): (key id, private key)."""
    found = _find_key(store, purpose)
    if found is None:
        store.create_signing_key(purpose)
        found = _find_key(store, purpose)
    assert found is not None
    return found


def member_code(store: HqStore, member_id: str, now: int | None = None) -> str:
    """The member's signed code (``TPM2:``) to print on a card or keep in the wallet: it identifies the
    member at any till of the chain (offline too) and never spends."""
    if store.member(member_id) is None:
        raise PaymentRefused(Code.UNKNOWN_MEMBER.value, f"no member {member_id}")
    key_id, key = signing_key(store, MEMBER_PURPOSE)
    return membercodes.issue(key, key_id, member_id, int(time.time()) if now is None else now)


def _find_key(store: HqStore, purpose: str) -> tuple[str, Ed25519PrivateKey] | None:
    with store.db.read() as tx:
        rows = tx.all(
            "SELECT key_id, body, private_key FROM signing_keys WHERE deleted = 0 AND private_key IS NOT NULL"
        )
    live = [
        (json.loads(body).get("created_at", ""), key_id, private)
        for key_id, body, private in rows
        if json.loads(body).get("purpose") == purpose and json.loads(body).get("status") == "active"
    ]
    if not live:
        return None
    _, key_id, private = max(live)
    return str(key_id), Ed25519PrivateKey.from_private_bytes(unb64(str(private)))


def register_device(
    store: HqStore,
    member_id: str,
    device_key_hex: str,
    *,
    lifetime_s: int = CERT_LIFETIME_S,
    offline_cap: int = OFFLINE_CAP,
    now: int | None = None,
) -> pay.DeviceCert:
    """Issue a certificate for the member's device key; it reaches the tills by pull. A member holding
    ``MAX_DEVICES`` live devices is refused (``wallet_too_many_devices``) on every path (wallet, member
    app, administrator): each device has its own offline cap, so more devices would mean more to spend
    at offline tills."""
    try:
        device_key = bytes.fromhex(device_key_hex)
    except ValueError as exc:
        raise ValueError("device_key must be hex") from exc
    if len(device_key) != 32:
        raise ValueError("device_key must be a raw Ed25519 public key (32 bytes)")
    if lifetime_s <= 0 or offline_cap < 0:
        raise ValueError("lifetime must be positive and the offline cap not negative")
    key_id, private = payment_key(store)
    cert = pay.issue_cert(
        private,
        key_id,
        secrets.token_bytes(8),
        member_id,
        device_key,
        int(time.time()) if now is None else now,
        lifetime_s,
        offline_cap,
    )

    def save(tx: Tx) -> None:
        _member_row(tx, member_id)  # locks the member's row: two registrations cannot both pass the count
        if _live_devices(tx, member_id) >= MAX_DEVICES:
            raise PaymentRefused(
                ErrorCode.WALLET_TOO_MANY_DEVICES.value,
                f"member {member_id} has {MAX_DEVICES} paying devices: revoke one",
            )
        if _issued_today(tx, member_id) >= MAX_ISSUED_PER_DAY:
            raise PaymentRefused(
                ErrorCode.WALLET_TOO_MANY_DEVICES.value,
                f"member {member_id} was issued {MAX_ISSUED_PER_DAY} paying devices in 24 hours: try again tomorrow",
            )
        tx.run(
            "INSERT INTO device_certs (cert_id, member_id, body, created_at, version, deleted) "
            "VALUES (?, ?, ?, ?, 0, 0)",
            [cert.cert_id.hex(), member_id, payload_json(cert.to_doc()), utc_now()],
        )
        bump_versions(tx, "device_certs", "cert_id", [cert.cert_id.hex()])

    store.db.transact(save)
    return cert


def _issued_today(tx: Tx, member_id: str) -> int:
    since = ledger.utc_text(datetime.now(UTC) - timedelta(days=1))  # written as utc_now writes created_at
    row = tx.one("SELECT COUNT(*) FROM device_certs WHERE member_id = ? AND created_at > ?", [member_id, since])
    return int(row[0]) if row else 0


def _live_devices(tx: Tx, member_id: str) -> int:
    row = tx.one(
        "SELECT COUNT(*) FROM device_certs d WHERE d.member_id = ? AND d.deleted = 0 AND NOT EXISTS "
        "(SELECT 1 FROM revocations r WHERE r.deleted = 0 AND r.revocation_id = 'device:' || d.cert_id)",
        [member_id],
    )
    return int(row[0]) if row else 0


def devices(store: HqStore, member_id: str | None = None) -> list[dict[str, Any]]:
    """Device certificates (of one member), with whether each is revoked."""
    with store.db.read() as tx:
        where, params = ("member_id = ? AND ", [member_id]) if member_id else ("", [])
        rows = tx.all(f"SELECT body FROM device_certs WHERE {where}deleted = 0 ORDER BY created_at", params)
        revoked = {
            str(r[0])
            for r in tx.all(
                "SELECT revocation_id FROM revocations WHERE deleted = 0 AND revocation_id LIKE ?", ["device:%"]
            )
        }
    docs = [dict(json.loads(r[0])) for r in rows]
    return [dict(d, revoked=f"device:{d['cert_id']}" in revoked) for d in docs]


def revoke_devices(store: HqStore, member_id: str, reason: str) -> int:
    """Revoke every live paying phone of the member; returns how many."""
    live = [str(d["cert_id"]) for d in devices(store, member_id) if not d["revoked"]]
    for cert_id in live:
        revoke_device(store, cert_id, reason)
    return len(live)


def revoke_device(store: HqStore, cert_id_hex: str, reason: str = "") -> str:
    """Put the device on the signed revocation list every till pulls."""
    with store.db.read() as tx:
        if tx.one("SELECT 1 FROM device_certs WHERE cert_id = ?", [cert_id_hex]) is None:
            raise PaymentRefused(Code.DEVICE_CERT_UNKNOWN.value, f"no device certificate {cert_id_hex}")
    return store.revoke("device", cert_id_hex, reason)


# -- online confirmation ----------------------------------------------------------------------------


def forget_devices(store: HqStore, member_id: str) -> int:
    """After an erasure: the member's payment devices go on the revocation list and their member-app
    tokens are deleted, so nothing the member held can pay or register again."""
    revoked = 0
    for device in devices(store, member_id):
        if not device.get("revoked"):
            revoke_device(store, str(device["cert_id"]), "member erased")
            revoked += 1
    store.db.transact(lambda tx: forget_tokens(tx, member_id))
    return revoked


def confirm(store: HqStore, terminal_id: str, request: ConfirmRequest, now: int | None = None) -> dict[str, Any]:
    """Confirm a spend a till is about to approve, or raise ``PaymentRefused``.

    The proof is checked here as at ingest: a code's signature, time window and device (not revoked,
    the member's own), or a card tap of the member's card whose SUN message verifies when head office
    holds the keys and whose read counter was never used in the chain (it is used now). A proof is
    confirmed once; the same (terminal, txn_id) asking again for the same member and amount gets the same answer
    (a retry), for another amount or member ``payment_code_replayed``."""
    use_id, member_id, amount, txn_id = request.use_id, request.member_id, request.amount, request.txn_id
    at = int(time.time()) if now is None else now

    def run(tx: Tx) -> dict[str, Any]:
        if withdrawn(tx, terminal_id, txn_id):
            raise PaymentRefused(_replayed(request), f"transaction {txn_id} was withdrawn by its till")
        held = tx.one(
            "SELECT terminal_id, txn_id, withdrawn_at, member_id, amount FROM payment_confirms WHERE code_id = ?",
            [use_id],
        )
        if held is not None:
            # a retry asks what it asked: the same amount for the same member (more is another payment)
            if (held[0], held[1], held[2], held[3], int(held[4])) == (terminal_id, txn_id, None, member_id, amount):
                return {"confirmed": True, "code_id": use_id, "repeat": True}
            raise PaymentRefused(_replayed(request), f"{use_id} was confirmed for another payment")
        tap = request.card
        opens = tap is not None and amount > 0 and policy.attested_only(tap, store.settings.card_keys)
        on_word = attested_held(tx, terminal_id) if opens else 0  # the till's row first, as a push locks it
        if request.card is not None:
            _check_card(tx, store, terminal_id, request)
        else:
            if tx.one("SELECT 1 FROM payment_codes WHERE code_id = ?", [use_id]) is not None:
                raise PaymentRefused(Code.PAYMENT_CODE_REPLAYED.value, f"code {use_id} was already used")
            _check_device(tx, use_id, member_id, request.code, at)
        balance, status = _member_row(tx, member_id)
        if status != "active":
            raise PaymentRefused(Code.BLOCKED_MEMBER.value)
        if spend_held(tx, member_id):
            raise PaymentRefused(Code.MEMBER_SPEND_HELD.value, f"{member_id} is contested: its spending is held")
        pending = tx.one(
            f"SELECT COALESCE(SUM(c.amount), 0) FROM payment_confirms c WHERE c.member_id = ? AND {holding('c')}",
            [member_id],
        )
        available = balance - int(pending[0] if pending else 0)
        if amount > available:
            raise PaymentRefused(Code.INSUFFICIENT_BALANCE.value, f"balance {available} does not cover {amount}")
        if opens and on_word + amount > store.settings.attested_stored_value_per_day:
            raise PaymentRefused(
                Code.ATTESTED_HOLD_LIMIT.value,
                "this till holds as much as it may on card reads head office cannot check",
            )
        tx.run(
            "INSERT INTO payment_confirms (code_id, member_id, terminal_id, txn_id, amount, confirmed_at, attested_open) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [use_id, member_id, terminal_id, txn_id, amount, utc_now(), int(opens)],
        )
        return {"confirmed": True, "code_id": use_id, "balance": available - amount}

    try:
        return store.db.transact(run)
    except IntegrityFailed as exc:  # the same proof confirmed by another till at this very moment
        raise PaymentRefused(_replayed(request), f"{use_id} was confirmed for another payment") from exc


def withdraw(store: HqStore, terminal_id: str, txn_ids: list[str]) -> int:
    """A till withdraws confirmations it asked for and did not use: head office stops holding their amounts
    back (stored value and gift cards). Only the caller's own, and only while head office holds no entry of
    the transaction; the code or card message stays used. Returns how many were withdrawn now (a repeat: 0)."""
    now = utc_now()

    def run(tx: Tx) -> int:
        done = withdraw_confirms(tx, terminal_id, txn_ids, now)
        note_withdrawals(tx, terminal_id, txn_ids, now)  # kept before its confirmation: a slow one is then refused
        return done

    return store.db.transact(run)


HOLD_COLUMNS = {"payment_confirms": "member_id", "gift_confirms": "card_id"}
"""What each table of confirmations holds back: a member's stored value, a gift card's balance."""


HOLD_KINDS = {"payment_confirms": "stored_value", "gift_confirms": "gift_card"}


def holds(store: HqStore, terminal_id: str | None = None) -> list[dict[str, Any]]:
    """What head office holds back now for online confirmations whose entries have not arrived, oldest first (of
    one till when ``terminal_id`` is given): each ``{txn_id, terminal_id, kind, member_id | card_id, amount,
    confirmed_at}``, ``kind`` ``stored_value`` (a member's) or ``gift_card``. What an administrator reads before
    ``release_hold``: a hold hours old whose till is up and pushing is a sale that will never arrive."""
    found: list[dict[str, Any]] = []
    with store.db.read() as tx:
        for table, column in HOLD_COLUMNS.items():
            where, params = ("c.terminal_id = ? AND ", [terminal_id]) if terminal_id is not None else ("", [])
            for row in tx.all(
                f"SELECT c.txn_id, c.terminal_id, c.{column}, c.amount, c.confirmed_at FROM {table} c "
                f"WHERE {where}{holding('c')}",
                params,
            ):
                found.append(
                    {
                        "txn_id": str(row[0]),
                        "terminal_id": str(row[1]),
                        "kind": HOLD_KINDS[table],
                        column: str(row[2]),
                        "amount": int(row[3]),
                        "confirmed_at": str(row[4]),
                    }
                )
    return sorted(found, key=lambda h: (h["confirmed_at"], h["txn_id"], h["terminal_id"]))


def release_hold(store: HqStore, txn_id: str, by: str, reason: str, terminal_id: str | None = None) -> dict[str, Any]:
    """An administrator ends what head office holds back for the online confirmations of ``txn_id`` (of
    ``terminal_id`` only, when given) whose entries have not arrived: a till gone for good that is still to be
    kept, or a sale whose transaction id another till's entry took (``txn_id_taken``), so that its own entry can
    never arrive. The hold ends as a till's withdrawal ends it (``withdrawn_at``): the code or card message
    stays used, a confirmation of the same transaction asked again is refused, and the sale, if it does arrive,
    is applied and a balance it takes below zero carried and flagged (``stored_value_overspent``,
    ``gift_card_overspent``). Audited (``release_hold``) in the transaction of the change.

    Refused: ``no_hold`` when head office holds nothing back for the transaction (no confirmation of it, or its
    hold ended already), ``hold_entry_arrived`` when its entry arrived from the till that asked."""
    if not by.strip() or not reason.strip():
        raise ValueError("a release of a hold says who and why (--by, --reason)")
    now = utc_now()

    def run(tx: Tx) -> dict[str, Any]:
        rows: list[tuple[str, str, str, int, bool, bool]] = []
        for table, column in HOLD_COLUMNS.items():
            where, params = (
                ("txn_id = ?", [txn_id])
                if terminal_id is None
                else (
                    "txn_id = ? AND terminal_id = ?",
                    [txn_id, terminal_id],
                )
            )
            for row in tx.all(
                f"SELECT terminal_id, {column}, amount, withdrawn_at IS NOT NULL, {arrived(table)} FROM {table} "
                f"WHERE {where} ORDER BY terminal_id{tx.for_update}",
                params,
            ):
                rows.append((table, str(row[0]), str(row[1]), int(row[2]), bool(row[3]), bool(row[4])))
        still = [r for r in rows if not r[4] and not r[5]]
        if not still:
            if any(r[5] for r in rows):
                raise PaymentRefused(
                    ErrorCode.HOLD_ENTRY_ARRIVED.value,
                    f"the entry of transaction {txn_id} arrived from the till that asked: nothing is held for it",
                )
            raise PaymentRefused(
                ErrorCode.NO_HOLD.value,
                f"head office holds nothing back for transaction {txn_id}"
                + (" (its hold ended already)" if rows else " (no online confirmation of it)"),
            )
        released = []
        for table, till, subject, amount, _, _ in still:
            column = HOLD_COLUMNS[table]
            tx.run(
                f"UPDATE {table} SET withdrawn_at = ? WHERE txn_id = ? AND terminal_id = ? AND {column} = ? "
                "AND withdrawn_at IS NULL",
                [now, txn_id, till, subject],
            )
            released.append({"terminal_id": till, column: subject, "amount": amount})
        audit.append(tx, by, "release_hold", txn_id, reason, {"released": released})
        return {"txn_id": txn_id, "released": released, "released_at": now, "by": by}

    return store.db.transact(run)


def _replayed(request: ConfirmRequest) -> str:
    return (Code.REPLAYED_CARD if request.card is not None else Code.PAYMENT_CODE_REPLAYED).value


def _check_card(tx: Tx, store: HqStore, terminal_id: str, request: ConfirmRequest) -> None:
    """The tap is of the member's card, proves itself the way head office has seen the card do (a card seen with
    SUN is not taken as a MAC read), its SUN message genuine (when head office holds the keys), and its read
    counter unused in the chain: it is used from now on (``card_taps``)."""
    tap = request.card
    assert tap is not None
    row = tx.one("SELECT member_id, status, secure FROM cards WHERE uid_hash = ? AND deleted = 0", [tap.uid_hash])
    if row is not None and row[1] == "blocked":
        raise PaymentRefused(Code.CARD_CANNOT_PAY.value, "this card is blocked")
    _, breach = policy.check_card_tap(
        tap,
        str(row[0]) if row else None,
        request.member_id,
        store.settings.card_keys,
        str(row[2]) if row and row[2] is not None else None,
    )
    if breach is not None:
        forged = breach.detail.get("problem", "") != "the card is not this member's"
        raise PaymentRefused((Code.FORGED_CARD if forged else Code.CARD_CANNOT_PAY).value, str(breach.detail))
    if tap.counter is None:
        return
    if use_counter(tx, tap.uid_hash, tap.counter, terminal_id, request.txn_id) is not None:
        raise PaymentRefused(Code.REPLAYED_CARD.value, "this card message was already used in the chain")
    if tx.run(
        "UPDATE cards SET counter = ? WHERE uid_hash = ? AND (counter IS NULL OR counter < ?)",
        [tap.counter, tap.uid_hash, tap.counter],
    ):
        bump_versions(tx, "cards", "uid_hash", [tap.uid_hash])


def _check_device(tx: Tx, code_id: str, member_id: str, code_text: str | None, at: int) -> None:
    cert_hex = code_id.partition(":")[0]
    row = tx.one("SELECT body FROM device_certs WHERE cert_id = ? AND deleted = 0", [cert_hex])
    if row is None:
        raise PaymentRefused(Code.DEVICE_CERT_UNKNOWN.value)
    cert = pay.cert_from_doc(json.loads(row[0]))
    if cert.member_id != member_id:
        raise PaymentRefused(Code.PAYMENT_CODE_FORGED.value, "this payment code belongs to another member")
    if tx.one("SELECT 1 FROM revocations WHERE revocation_id = ? AND deleted = 0", [f"device:{cert_hex}"]):
        raise PaymentRefused(Code.DEVICE_CERT_REVOKED.value)
    if not cert.issued_at <= at < cert.expires_at:
        raise PaymentRefused(Code.DEVICE_CERT_EXPIRED.value)
    try:
        code = pay.parse_code(code_text or "")
        if code.code_id != code_id:
            raise Rejected(Code.PAYMENT_CODE_FORGED, "the code is not the one named by code_id")
        pay.verify_code(code, cert, at)
    except Rejected as exc:
        raise PaymentRefused(exc.code.value, exc.message) from exc
