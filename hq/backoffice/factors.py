"""The second factor of staff sign-in: a TOTP secret per account (``otp``), its recovery codes, and the chain's
policy of which roles must have one.

An account enrols from its own page: head office makes a secret (``offer``: ``otp.new_secret``, shown as a QR
code and as text and carried by the page's form, never kept unconfirmed, so no other session sees it; the form
also carries when it was made and an HMAC of both and the account under head office's secret, so a client
cannot choose its own secret nor bring back one older than ``OFFER_S``: ``bad_secret``) and keeps it only
once its owner types a code of it and the one-time enrolment code an administrator issued for the account
(``confirm``): a password alone never enrols a phone. The enrolment code (``issue_enrol_code``, audited) is
kept as a SHA-256, holds ``ENROL_CODE_S`` and is used once; a new one replaces the old. Confirming also makes
the recovery codes, shown once and kept as scrypt hashes (``staff.hash_password``). From then on signing in
asks for a code after the password (``check_code``): each try counts against the sign-in bounds as a wrong
password does (``staff.claim``), an accepted step is kept (``last_step``) so no code is used twice, a
recovery code is used once. The policy (``policy``, the ``settings`` row ``second_factor_roles``) names the
roles that must have one: such an account without one reaches only its enrolment page. A chain administrator
(or ``tillpoint hq staff reset-2fa``) removes another account's second factor (``reset``), audited."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from hq import audit, campaigns
from hq.backoffice import otp, staff
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Role
from hq.backoffice.staff import Staff
from hq.db.engine import Db, Tx

POLICY = "second_factor_roles"
"""The ``settings`` row holding the roles that must have a second factor (a JSON list; none by default)."""
MONEY_ROLES = frozenset({Role.CHAIN_ADMIN, Role.FINANCE, Role.MERCHANT_ADMIN, Role.MERCHANT_FINANCE})
"""The roles that move money (settlement, releases, gift-card clears, adjustments): what the policy is
meant for (``tillpoint hq staff require-2fa`` with no role names them)."""
ENROL_CODE_S = 24 * 3600
"""How long an enrolment code holds after it is issued: a day to hand it to its owner."""
OFFER_S = 15 * 60
"""How long the secret an enrolment page shows may be confirmed after head office made it."""


@dataclass(frozen=True, slots=True)
class Offer:
    """A secret head office made for an account's enrolment page, as its form carries it back."""

    secret: str
    made_at: int
    seal: str
    """``_seal`` of the account, the secret and ``made_at``: the secret is head office's, not the client's."""


@dataclass(frozen=True, slots=True)
class Factor:
    """An account's second factor as its page shows it."""

    enrolled_at: int | None
    """When its owner confirmed it (None: none yet)."""
    recovery_left: int


# -- the policy ----------------------------------------------------------------------------------------------


def policy(tx: Tx) -> frozenset[Role]:
    row = tx.one("SELECT value FROM settings WHERE name = ?", [POLICY])
    return frozenset() if row is None else frozenset(Role(r) for r in json.loads(str(row[0])))


def roles_of(names: list[str]) -> frozenset[Role]:
    """Role names typed (none: ``MONEY_ROLES``); ``bad_staff`` for one that is not a role."""
    unknown = [n for n in names if n not in Role._value2member_map_]
    if unknown:
        raise BackofficeRefused(Code.BAD_STAFF, f"a role is one of {', '.join(Role)}")
    return frozenset(Role(n) for n in names) if names else MONEY_ROLES


def set_policy(tx: Tx, actor: str, roles: frozenset[Role], reason: str) -> frozenset[Role]:
    """The roles that must have a second factor from now on, audited as ``staff_2fa_policy``."""
    shown = sorted(r.value for r in roles)
    tx.run(
        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [POLICY, json.dumps(shown)],
    )
    audit.append(tx, actor, "staff_2fa_policy", "", reason, {"roles": shown})
    return roles


# -- an account's factor -------------------------------------------------------------------------------------


def enrolled(tx: Tx, staff_id: str) -> bool:
    row = tx.one("SELECT 1 FROM staff_totp WHERE staff_id = ? AND confirmed_at IS NOT NULL", [staff_id])
    return row is not None


def must_enrol(tx: Tx, who: Staff) -> bool:
    """Whether the policy wants a second factor of ``who``'s role and it has none."""
    return who.role in policy(tx) and not enrolled(tx, who.staff_id)


def state(tx: Tx, staff_id: str) -> Factor:
    row = tx.one("SELECT confirmed_at FROM staff_totp WHERE staff_id = ?", [staff_id])
    at = None if row is None or row[0] is None else int(row[0])
    return Factor(at, _unused(tx, staff_id) if at is not None else 0)


def _unused(tx: Tx, staff_id: str) -> int:
    """How many of the account's recovery codes are unused."""
    left = tx.one("SELECT COUNT(*) FROM staff_recovery_codes WHERE staff_id = ? AND used_at IS NULL", [staff_id])
    return int(left[0]) if left else 0


def _keep_recovery(tx: Tx, staff_id: str, hashes: list[str]) -> None:
    """The account's recovery codes, used or not, replaced by ``hashes``."""
    tx.run("DELETE FROM staff_recovery_codes WHERE staff_id = ?", [staff_id])
    tx.many(
        "INSERT INTO staff_recovery_codes (staff_id, slot, code_hash) VALUES (?, ?, ?)",
        [(staff_id, slot, h) for slot, h in enumerate(hashes)],
    )


def issue_enrol_code(tx: Tx, actor: str, staff_id: str, reason: str, now: int) -> tuple[str, int]:
    """A fresh one-time enrolment code for ``staff_id`` (replacing any earlier one) and when it expires,
    audited as ``staff_2fa_enrol_code`` by ``actor``; only its hash is kept. ``not_found`` for no such account,
    ``account_disabled`` for a disabled one (a code kept for it would set up a second factor for whoever holds
    the account once it is back on: disabling deletes the codes, so none is issued while it is off; the
    account's row is read locked, so a disable at the same moment comes before or after, never between),
    ``already_enrolled`` for one with a second factor (reset it first)."""
    row = tx.one(f"SELECT disabled FROM staff WHERE staff_id = ?{tx.for_update}", [staff_id])
    if row is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no staff {staff_id}")
    if row[0]:
        raise BackofficeRefused(Code.ACCOUNT_DISABLED, f"staff {staff_id} is disabled: no enrolment code for it")
    if enrolled(tx, staff_id):
        raise BackofficeRefused(Code.ALREADY_ENROLLED, f"staff {staff_id} has a second factor already")
    code, expires = otp.new_enrol_code(), now + ENROL_CODE_S
    tx.run(
        "INSERT INTO staff_enrol_codes (staff_id, code_hash, issued_by, issued_at, expires_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (staff_id) DO UPDATE SET code_hash = excluded.code_hash, issued_by = excluded.issued_by, "
        "issued_at = excluded.issued_at, expires_at = excluded.expires_at",
        [staff_id, otp.enrol_digest(code), actor, now, expires],
    )
    audit.append(tx, actor, "staff_2fa_enrol_code", staff_id, reason, {"expires_at": expires})
    return code, expires


def _seal(tx: Tx, staff_id: str, secret: str, made_at: int) -> str:
    """An HMAC-SHA256 of the account, the secret and when it was made, keyed with head office's secret
    (``campaigns.secret``: made once, never leaves head office), the message marked as an enrolment's."""
    message = f"staff_2fa_offer\x00{staff_id}\x00{secret}\x00{made_at}".encode()
    return hmac.new(campaigns.secret(tx).encode(), message, hashlib.sha256).hexdigest()


def offer(tx: Tx, staff_id: str, now: int) -> Offer:
    """A fresh secret for ``staff_id``'s enrolment page, sealed; kept nowhere."""
    secret = otp.new_secret()
    return Offer(secret, now, _seal(tx, staff_id, secret, now))


def _check_offer(tx: Tx, staff_id: str, sent: Offer, now: int) -> None:
    """``bad_secret`` unless ``sent`` is one ``offer`` made for this account no more than ``OFFER_S`` ago."""
    fresh = 0 <= now - sent.made_at <= OFFER_S
    if not (
        otp.is_secret(sent.secret)
        and fresh
        and hmac.compare_digest(sent.seal.encode(), _seal(tx, staff_id, sent.secret, sent.made_at).encode())
    ):
        raise BackofficeRefused(Code.BAD_SECRET, "the secret is not one head office made for this page lately")


def _use_enrol_code(tx: Tx, staff_id: str, typed: str, now: int) -> None:
    """The account's enrolment code used up, if ``typed`` is it and it has not expired: ``enrol_code_required``
    for none typed, ``enrol_code_bad`` for a wrong, used or expired one."""
    if not otp.recovery_typed(typed):
        raise BackofficeRefused(Code.ENROL_CODE_REQUIRED, "type the enrolment code an administrator gave you")
    used = tx.run(
        "DELETE FROM staff_enrol_codes WHERE staff_id = ? AND code_hash = ? AND expires_at > ?",
        [staff_id, otp.enrol_digest(typed), now],
    )
    if used != 1:
        raise BackofficeRefused(Code.ENROL_CODE_BAD, "the enrolment code is wrong, used or expired")


def confirm(db: Db, who: Staff, sent: Offer, code: str, enrol_code: str, now: int) -> list[str]:
    """The secret of ``sent`` (``bad_secret`` unless head office made it for this account lately:
    ``_check_offer``) kept once ``code`` is one of its codes (``bad_code`` otherwise) and ``enrol_code`` is the
    account's (``_use_enrol_code``: used up only when the rest holds, the transaction rolled back otherwise),
    with fresh recovery codes (returned, to be shown once; their hashes kept), audited as ``staff_2fa_enrol``
    by the account."""
    codes = otp.new_recovery_codes()
    hashes = [staff.hash_password(otp.recovery_typed(c)) for c in codes]  # scrypt outside the transaction

    def run(tx: Tx) -> list[str]:
        if enrolled(tx, who.staff_id):
            raise BackofficeRefused(Code.ALREADY_ENROLLED, "this account has a second factor already")
        _check_offer(tx, who.staff_id, sent, now)
        _use_enrol_code(tx, who.staff_id, enrol_code, now)
        secret = sent.secret
        step = otp.matching_step(secret, code, now, 0)
        if isinstance(step, otp.Refusal):
            raise BackofficeRefused(Code.BAD_CODE, "the code is not one of this secret's")
        tx.run("DELETE FROM staff_totp WHERE staff_id = ?", [who.staff_id])
        tx.run(
            "INSERT INTO staff_totp (staff_id, secret, made_at, confirmed_at, last_step) VALUES (?, ?, ?, ?, ?)",
            [who.staff_id, secret, now, now, step],
        )
        _keep_recovery(tx, who.staff_id, hashes)
        audit.append(tx, who.staff_id, "staff_2fa_enrol", who.staff_id, "own second factor", {"recovery": len(codes)})
        return codes

    return db.transact(run)


def reset(tx: Tx, actor: str, staff_id: str, reason: str) -> Staff:
    """``staff_id``'s second factor and recovery codes removed and its sessions ended, audited as
    ``staff_2fa_reset`` by ``actor``: its owner enrols again at their next sign-in. ``not_found`` for no such
    account, ``no_second_factor`` for one without. The callers refuse an administrator's own (``team``)."""
    held = staff.get(tx, staff_id)
    if held is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no staff {staff_id}")
    if tx.one("SELECT 1 FROM staff_totp WHERE staff_id = ?", [staff_id]) is None:
        raise BackofficeRefused(Code.NO_SECOND_FACTOR, f"staff {staff_id} has no second factor")
    tx.run("DELETE FROM staff_totp WHERE staff_id = ?", [staff_id])
    tx.run("DELETE FROM staff_recovery_codes WHERE staff_id = ?", [staff_id])
    tx.run("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
    audit.append(tx, actor, "staff_2fa_reset", staff_id, reason, {"role": held.role.value})
    return held


# -- signing in ----------------------------------------------------------------------------------------------


def check_code(db: Db, staff_id: str, code: str, source: str, now: int) -> Staff | Code:
    """The account, once ``code`` (a TOTP code, or else a recovery code) is right: the sign-in complete
    (``staff.signed_in``). Every try is counted first as a wrong password is (``locked_out`` past the bounds,
    the code not even tried) and taken back when right; ``bad_code`` or ``code_used`` (a code of a step
    already accepted, or older) otherwise, the try staying counted."""
    locked = db.transact(lambda tx: staff.claim(tx, staff_id, source, now))
    if locked is not None:
        return locked
    if otp.is_totp(code):
        return db.transact(lambda tx: _totp(tx, staff_id, code, source, now))
    return _recovery(db, staff_id, otp.recovery_typed(code), source, now)


def _done(tx: Tx, staff_id: str, source: str, now: int) -> Staff:
    staff.take_back(tx, staff_id, source, now)
    return staff.signed_in(tx, staff_id, source, now)


def _totp(tx: Tx, staff_id: str, code: str, source: str, now: int) -> Staff | Code:
    refused = _take_step(tx, staff_id, code, now)
    return refused if refused is not None else _done(tx, staff_id, source, now)


def _take_step(tx: Tx, staff_id: str, code: str, now: int) -> Code | None:
    """None once ``code`` is a code of the account's secret for a step after the last one taken, that step now
    taken (so the code is not used again); ``bad_code`` or ``code_used`` otherwise."""
    row = tx.one(
        f"SELECT secret, last_step FROM staff_totp WHERE staff_id = ? AND confirmed_at IS NOT NULL{tx.for_update}",
        [staff_id],
    )
    if row is None:
        return Code.BAD_CODE
    step = otp.matching_step(str(row[0]), code, now, int(row[1]))
    if isinstance(step, otp.Refusal):
        return Code(step.value)
    if tx.run("UPDATE staff_totp SET last_step = ? WHERE staff_id = ? AND last_step < ?", [step, staff_id, step]) != 1:
        return Code.CODE_USED  # another sign-in took this step meanwhile
    return None


def _recovery(db: Db, staff_id: str, typed: str, source: str, now: int) -> Staff | Code:
    """A recovery code: checked against each unused hash outside any transaction (scrypt), then marked used
    if still unused (a code sent twice at once signs in once), audited as ``staff_2fa_recovery``."""
    rows = db.transact(
        lambda tx: tx.all(
            "SELECT slot, code_hash FROM staff_recovery_codes WHERE staff_id = ? AND used_at IS NULL ORDER BY slot",
            [staff_id],
        )
    )
    slots = [int(r[0]) for r in rows if typed and staff.check_password(typed, str(r[1]))]
    if not slots:
        return Code.BAD_CODE

    def use(tx: Tx) -> Staff | Code:
        used = tx.run(
            "UPDATE staff_recovery_codes SET used_at = ? WHERE staff_id = ? AND slot = ? AND used_at IS NULL",
            [now, staff_id, slots[0]],
        )
        if used != 1:
            return Code.CODE_USED
        audit.append(tx, staff_id, "staff_2fa_recovery", staff_id, "recovery code", {"left": _unused(tx, staff_id)})
        return _done(tx, staff_id, source, now)

    return db.transact(use)


# -- new recovery codes ------------------------------------------------------------------------------------


def renew_recovery(db: Db, who: Staff, code: str, source: str, now: int) -> list[str] | Code:
    """Fresh recovery codes for ``who`` (returned, to be shown once; their hashes kept) in place of every one it
    had, used or not, once ``code`` is a code of its authenticator app for a step not yet taken (the step is
    taken: the code is not used again). A recovery code does not renew them (``app_code_required``): whoever
    signs in with one has lost the phone or holds someone's codes, and a fresh set would outlast both; a lost
    phone is an administrator's reset. Each try counts against the sign-in bounds as a code typed at sign-in
    does (``locked_out`` past them, the code not tried) and is taken back when right; ``bad_code``,
    ``code_used`` or ``no_second_factor`` otherwise. The code is checked before the new codes are hashed
    (scrypt, outside any transaction), and they replace the old in one transaction of their own, audited as
    ``staff_2fa_recovery_renew`` by the account with how many unused codes they replaced: a process stopped
    between the two has taken the code's step and left the old codes as they were."""
    if not otp.is_totp(code):
        return Code.APP_CODE_REQUIRED
    locked = db.transact(lambda tx: staff.claim(tx, who.staff_id, source, now))
    if locked is not None:
        return locked

    def check(tx: Tx) -> Code | None:
        if not enrolled(tx, who.staff_id):
            return Code.NO_SECOND_FACTOR
        refused = _take_step(tx, who.staff_id, code, now)
        if refused is None:
            staff.take_back(tx, who.staff_id, source, now)
        return refused

    refused = db.transact(check)
    if refused is not None:
        return refused
    codes = otp.new_recovery_codes()
    hashes = [staff.hash_password(otp.recovery_typed(c)) for c in codes]

    def keep(tx: Tx) -> list[str]:
        replaced = _unused(tx, who.staff_id)
        _keep_recovery(tx, who.staff_id, hashes)
        details = {"recovery": len(codes), "replaced_unused": replaced}
        audit.append(tx, who.staff_id, "staff_2fa_recovery_renew", who.staff_id, "own recovery codes", details)
        return codes

    return db.transact(keep)


__all__ = [
    "ENROL_CODE_S",
    "MONEY_ROLES",
    "OFFER_S",
    "POLICY",
    "Factor",
    "Offer",
    "check_code",
    "confirm",
    "enrolled",
    "must_enrol",
    "issue_enrol_code",
    "offer",
    "policy",
    "renew_recovery",
    "reset",
    "roles_of",
    "set_policy",
    "state",
]
