"""Staff accounts: who signs in to the back office, with which role, for a store manager which stores, and
for a merchant's staff which merchant (``merchant_id``; None: the chain's own staff).

Passwords are kept as scrypt hashes (``hashlib.scrypt`` of the standard library: n=2**14, r=8, p=1, a 16-byte
random salt, a 32-byte key; the parameters are stored with each hash, so they can be raised later). A wrong
password counts against the account from that address, against the address and against the account from
everywhere (``staff_signin_failures``), each within ``WINDOW_S``: five for the account from one address close
it to that address, fifty from an address close the address, and twenty for the account from all addresses
close it to every address it has not signed in from in ``KNOWN_S`` (``staff_known_sources``), until the
window has passed them or an administrator unlocks it (``unlock``). No one locks an account out of the
address its owner works from. An unknown account costs as much time as a known one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace

from hq import merchants
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import CHAIN_ROLES, MERCHANT_ROLES, Action, Role, Scope, allowed, fits, stores_in_reach
from hq.db.engine import Db, Tx, utc_now

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_LEN = 2**14, 8, 1, 32
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
WINDOW_S = 15 * 60
PAIR_FAILURES = 5
"""Wrong passwords for one account from one address (an IPv6 /64) in ``WINDOW_S``: then that address may not
try that account for the rest of the window."""
SOURCE_FAILURES = 50
"""Wrong passwords from one address, whatever the account: then that address may try none."""
ACCOUNT_FAILURES = 20
"""Wrong passwords for one account from all addresses (a guesser spreading over many): then only addresses the
account signed in from (``KNOWN_S``) may try it, each still within its ``PAIR_FAILURES``."""
KNOWN_S = 90 * 86400
"""How long an address the account signed in from stays one it may always be tried from."""
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
PASSWORD_SET = ("staff_add", "staff_passwd")
"""The audit records of an account's password being set (made with one, or reset): whoever made the newest
knows it (``approvals``: that person's request is never that account's to decide)."""


@dataclass(frozen=True, slots=True)
class Staff:
    staff_id: str
    name: str
    role: Role
    stores: frozenset[str]
    disabled: bool = False
    merchant_id: str | None = None
    """The merchant whose staff this is (None: the chain's own staff)."""


# -- passwords ---------------------------------------------------------------------------------------


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=KEY_LEN)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$key`` (base64)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(key).decode(),
        ]
    )


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        made = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(made, base64.b64decode(key))


@functools.cache
def _dummy() -> str:
    """Checked against when the account does not exist: the answer takes as long as for one that does.
    Made at the first such sign-in, not at import (every head-office command would pay one scrypt)."""
    return hash_password(secrets.token_urlsafe(16))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise BackofficeRefused(Code.BAD_STAFF, f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def require(who: Staff, action: Action, target: frozenset[str] | None = None) -> None:
    """Refuse (``forbidden``) unless ``who`` may do ``action`` on a subject of the stores ``target``: None for a
    list (what is shown is kept within the staff member's reach), ``frozenset()`` for the chain's own (of no
    store: a store-wide reach never covers it). Every back-office service checks its caller with this."""
    if not allowed(who.role, action, Scope(who.stores, target)):
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not {action}")


# -- the staff table --------------------------------------------------------------------------------


_COLUMNS = "staff_id, name, role, stores, disabled, merchant_id"


def _staff(row: tuple[object, ...]) -> Staff:
    return Staff(
        str(row[0]),
        str(row[1]),
        Role(str(row[2])),
        frozenset(json.loads(str(row[3]))),
        bool(row[4]),
        None if row[5] is None else str(row[5]),
    )


def get(tx: Tx, staff_id: str) -> Staff | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM staff WHERE staff_id = ?", [staff_id])
    return None if row is None else _staff(row)


def listed(tx: Tx) -> list[Staff]:
    return [_staff(r) for r in tx.all(f"SELECT {_COLUMNS} FROM staff ORDER BY staff_id")]


def merchant_stores(tx: Tx, merchant_id: str) -> frozenset[str]:
    """The stores head office holds for ``merchant_id`` now."""
    return frozenset(str(r[0]) for r in tx.all("SELECT store_id FROM stores WHERE merchant_id = ?", [merchant_id]))


def in_reach(tx: Tx, who: Staff) -> Staff:
    """``who`` as it acts now: its ``stores`` are the stores in its reach (``roles.stores_in_reach``), read
    from the merchant's stores as head office holds them at this moment."""
    held = frozenset() if who.merchant_id is None else merchant_stores(tx, who.merchant_id)
    return replace(who, stores=stores_in_reach(who.role, who.stores, who.merchant_id, held))


def check_merchant(tx: Tx, merchant_id: str | None) -> None:
    """A merchant an account may belong to: one head office knows, not the chain's own (whose staff have none)."""
    if merchant_id is None:
        return
    if merchant_id == merchants.CHAIN_MERCHANT or merchants.get(tx, merchant_id) is None:
        raise BackofficeRefused(Code.UNKNOWN_MERCHANT, f"no merchant {merchant_id} (the chain's own staff have none)")


def merchant_of(text: str | None) -> str | None:
    """A merchant typed in a form or on the command line (blank: none)."""
    found = (text or "").strip()
    return found or None


def check_account(staff_id: str, name: str, role: str, stores: list[str], merchant_id: str | None = None) -> Staff:
    """A new account's fields, checked: an id of lower-case letters, digits, ``.``, ``_``, ``-``; a known
    role; stores for a store manager and only for one; a role a merchant's staff may hold for one of them
    (``roles.MERCHANT_ROLES``), a chain role for the chain's own staff."""
    if not _ID.fullmatch(staff_id):
        raise BackofficeRefused(Code.BAD_STAFF, "a staff id is 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    if not name.strip() or len(name) > 200:
        raise BackofficeRefused(Code.BAD_STAFF, "a name has 1 to 200 characters")
    if role not in Role._value2member_map_:
        raise BackofficeRefused(Code.BAD_STAFF, f"a role is one of {', '.join(Role)}")
    if (role == Role.STORE_MANAGER) != bool(stores):
        raise BackofficeRefused(Code.BAD_STAFF, "a store manager has stores (--store), and only a store manager")
    if not fits(Role(role), merchant_id):
        allowed = sorted(MERCHANT_ROLES if merchant_id else CHAIN_ROLES)
        whose = "a merchant's staff" if merchant_id else "the chain's own staff"
        raise BackofficeRefused(Code.BAD_STAFF, f"{whose} hold one of {', '.join(allowed)}")
    return Staff(staff_id, name.strip(), Role(role), frozenset(stores), merchant_id=merchant_id)


def add(tx: Tx, account: Staff, password: str) -> Staff:
    check_new_password(password)
    check_merchant(tx, account.merchant_id)
    if get(tx, account.staff_id) is not None:
        raise BackofficeRefused(Code.BAD_STAFF, f"staff {account.staff_id} exists already")
    now = utc_now()
    tx.run(
        "INSERT INTO staff (staff_id, name, password, role, stores, disabled, created_at, updated_at, merchant_id) "
        "VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
        [
            account.staff_id,
            account.name,
            hash_password(password),
            account.role.value,
            json.dumps(sorted(account.stores)),
            now,
            now,
            account.merchant_id,
        ],
    )
    return account


def _held(tx: Tx, staff_id: str) -> Staff:
    found = get(tx, staff_id)
    if found is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no staff {staff_id}")
    return found


def _keeps_an_admin(tx: Tx, staff_id: str) -> None:
    """Some other enabled chain administrator remains (locked, so two at once cannot both leave)."""
    rows = tx.all(
        f"SELECT staff_id FROM staff WHERE role = ? AND disabled = 0 ORDER BY staff_id{tx.for_update}",
        [Role.CHAIN_ADMIN.value],
    )
    if not any(str(row[0]) != staff_id for row in rows):
        raise BackofficeRefused(Code.LAST_ADMIN, "the last enabled chain administrator stays one")


def disable(tx: Tx, staff_id: str) -> Staff:
    """The account can no longer sign in, its sessions end now and the addresses it signed in from are
    forgotten (``forget_sources``: enabled again, it is one of none), its enrolment code too
    (``drop_enrol_code``). The last enabled chain administrator cannot be disabled (``last_admin``): someone
    must be able to manage the staff."""
    held = _held(tx, staff_id)
    if held.role is Role.CHAIN_ADMIN and not held.disabled:
        _keeps_an_admin(tx, staff_id)
    tx.run("UPDATE staff SET disabled = 1, updated_at = ? WHERE staff_id = ?", [utc_now(), staff_id])
    tx.run("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
    forget_sources(tx, staff_id)
    drop_enrol_code(tx, staff_id)
    return _held(tx, staff_id)


def known_sources(tx: Tx, staff_id: str) -> int:
    """How many addresses head office holds as ones the account signed in from (``staff_known_sources``)."""
    row = tx.one("SELECT COUNT(*) FROM staff_known_sources WHERE staff_id = ?", [staff_id])
    return int(row[0]) if row else 0


def forget_sources(tx: Tx, staff_id: str) -> int:
    """The addresses the account signed in from are forgotten (how many were): past ``ACCOUNT_FAILURES`` none
    may try it until its owner signs in again. Done when the account is disabled and when an administrator
    resets its password (whoever held it may have signed in from anywhere); the callers audit the count."""
    held = known_sources(tx, staff_id)
    tx.run("DELETE FROM staff_known_sources WHERE staff_id = ?", [staff_id])
    return held


def drop_enrol_code(tx: Tx, staff_id: str) -> None:
    """The account's outstanding enrolment code (``factors.issue_enrol_code``) is deleted: one issued before
    the account was disabled or its password reset by an administrator would set up a second factor for
    whoever holds the account afterwards. Its owner asks for a new one."""
    tx.run("DELETE FROM staff_enrol_codes WHERE staff_id = ?", [staff_id])


def set_role(tx: Tx, staff_id: str, role: str, stores: list[str], merchant_id: str | None = None) -> Staff:
    """A new role (and a store manager's stores, and the merchant, None: the chain's own); the account's
    sessions end, so the next page it opens is under the new role. The last enabled chain administrator
    keeps that role (``last_admin``)."""
    held = _held(tx, staff_id)
    wanted = check_account(held.staff_id, held.name, role, stores, merchant_id)
    check_merchant(tx, wanted.merchant_id)
    if held.role is Role.CHAIN_ADMIN and wanted.role is not Role.CHAIN_ADMIN and not held.disabled:
        _keeps_an_admin(tx, staff_id)
    tx.run(
        "UPDATE staff SET role = ?, stores = ?, merchant_id = ?, updated_at = ? WHERE staff_id = ?",
        [wanted.role.value, json.dumps(sorted(wanted.stores)), wanted.merchant_id, utc_now(), staff_id],
    )
    tx.run("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
    return _held(tx, staff_id)


def set_password(tx: Tx, staff_id: str, password: str, *, own: bool = False) -> Staff:
    """A new password; the account's sessions end and its failed sign-ins are forgotten. Set by an
    administrator (not ``own``), the addresses it signed in from are forgotten too (``forget_sources``), and
    its enrolment code (``drop_enrol_code``): the old password's holder may have signed in from anywhere, or
    been handed the code. Its owner changing it keeps them."""
    check_new_password(password)
    _held(tx, staff_id)
    tx.run(
        "UPDATE staff SET password = ?, updated_at = ? WHERE staff_id = ?",
        [hash_password(password), utc_now(), staff_id],
    )
    tx.run("DELETE FROM staff_sessions WHERE staff_id = ?", [staff_id])
    _forget_failures(tx, staff_id)
    if not own:
        forget_sources(tx, staff_id)
        drop_enrol_code(tx, staff_id)
    return _held(tx, staff_id)


def _forget_failures(tx: Tx, staff_id: str) -> int:
    """The account's failed sign-ins, from everywhere and from each address, are forgotten (how many: each is
    counted once for the account and once for it from its address)."""
    pair = _pair(staff_id, "")
    (held,) = tx.one("SELECT COUNT(*) FROM staff_signin_failures WHERE subject = ?", [f"staff:{staff_id}"]) or (0,)
    tx.run(
        "DELETE FROM staff_signin_failures WHERE subject = ? OR substr(subject, 1, CAST(? AS INTEGER)) = ?",
        [f"staff:{staff_id}", len(pair), pair],
    )
    return int(held)


def unlock(tx: Tx, staff_id: str) -> int:
    """The account may be tried again from every address: its failed sign-ins are forgotten (an address's own
    count, ``SOURCE_FAILURES``, stays). Returns how many were; ``not_found`` for no such account. The caller
    records who did it and why (``team.unlock``, ``tillpoint hq staff unlock``)."""
    _held(tx, staff_id)
    return _forget_failures(tx, staff_id)


def failures(tx: Tx, staff_id: str, now: int) -> int:
    """The account's wrong passwords from all addresses in the window now (``ACCOUNT_FAILURES`` of them close
    it to addresses it has not signed in from)."""
    return _failures(tx, f"staff:{staff_id}", now)


# -- signing in ------------------------------------------------------------------------------------


def _failures(tx: Tx, subject: str, now: int) -> int:
    row = tx.one("SELECT COUNT(*) FROM staff_signin_failures WHERE subject = ? AND at > ?", [subject, now - WINDOW_S])
    return int(row[0]) if row else 0


SIGN_IN_LOCK = 0x5349474E
"""The seed of the PostgreSQL advisory locks (one per counted subject, a hash of it) a sign-in takes while it
counts the failures and claims its try."""


def _pair(staff_id: str, source: str) -> str:
    """The subject of the account's failures from one address (a staff id holds no ``@``)."""
    return f"pair:{staff_id}@{source}"


def _subjects(staff_id: str, source: str) -> list[str]:
    return [_pair(staff_id, source), f"source:{source}", f"staff:{staff_id}"]


def _known(tx: Tx, staff_id: str, source: str, now: int) -> bool:
    row = tx.one(
        "SELECT 1 FROM staff_known_sources WHERE staff_id = ? AND source = ? AND seen_at > ?",
        [staff_id, source, now - KNOWN_S],
    )
    return row is not None


def _locked(tx: Tx, staff_id: str, source: str, now: int) -> bool:
    """Whether ``source`` may not try ``staff_id`` now: the pair's or the address's failures, or the account's
    from everywhere when the account never signed in from ``source`` (in ``KNOWN_S``)."""
    return (
        _failures(tx, _pair(staff_id, source), now) >= PAIR_FAILURES
        or _failures(tx, f"source:{source}", now) >= SOURCE_FAILURES
        or (_failures(tx, f"staff:{staff_id}", now) >= ACCOUNT_FAILURES and not _known(tx, staff_id, source, now))
    )


def _claim(tx: Tx, staff_id: str, source: str, now: int) -> tuple[object, ...] | None | Code:
    """A try at ``staff_id``'s password, counted as a failure of the account from that address, of the address
    and of the account before the password is checked (taken back if it is right), in the transaction that
    counts the failures: sign-ins sent at once get no more tries than sent one after another. ``locked_out``
    (nothing counted), else the account's password and whether it is disabled (None: no such account)."""
    subjects = _subjects(staff_id, source)
    if tx.dialect == "postgres":
        for subject in sorted(subjects):
            tx.one(
                "SELECT pg_advisory_xact_lock(hashtextextended(CAST(? AS TEXT), CAST(? AS BIGINT)))",
                [subject, SIGN_IN_LOCK],
            )
    if _locked(tx, staff_id, source, now):
        return Code.LOCKED_OUT
    tx.many("INSERT INTO staff_signin_failures (subject, at) VALUES (?, ?)", [(s, now) for s in subjects])
    return tx.one("SELECT password, disabled FROM staff WHERE staff_id = ?", [staff_id])


def claim(tx: Tx, staff_id: str, source: str, now: int) -> Code | None:
    """A try at the account's second factor, counted as a wrong password is (``_claim``): ``locked_out``
    (nothing counted) or None. Taken back by ``take_back`` when the code is right."""
    found = _claim(tx, staff_id, source, now)
    return found if isinstance(found, Code) else None


def check(db: Db, staff_id: str, password: str, source: str, now: int) -> Staff | Code:
    """The account whose password this is, or why not: ``locked_out`` after too many failures (checked
    first, so a locked account's password is not even tried), else ``bad_credentials`` for any other
    refusal (a failure counted). The try is counted before the hash is checked (``_claim``) and taken back
    when it is right, nothing else: the failures stay and the address is not yet one the account signed in
    from until the sign-in is complete (``signed_in``: at once, or after the second factor). The hash is
    checked outside any transaction: a sign-in never holds the database's write lock while scrypt runs."""
    staff_id = staff_id[:64]
    row = db.transact(lambda tx: _claim(tx, staff_id, source, now))
    if isinstance(row, Code):
        return row
    good = check_password(password[: MAX_PASSWORD + 1], str(row[0]) if row else _dummy())
    if row is None or not good or bool(row[1]):
        return Code.BAD_CREDENTIALS  # the try claimed stays counted
    return db.transact(lambda tx: take_back(tx, staff_id, source, now))


def verify(db: Db, staff_id: str, password: str, source: str, now: int) -> Staff | Code:
    """``check``, and the sign-in complete (``signed_in``): a password that is all the caller asks for."""
    who = check(db, staff_id, password, source, now)
    if isinstance(who, Code):
        return who
    return db.transact(lambda tx: signed_in(tx, who.staff_id, source, now))


def take_back(tx: Tx, staff_id: str, source: str, now: int) -> Staff:
    """The try claimed at ``now`` taken back from the pair's, the address's and the account's counts (one row
    each: the account's other failures stay, a guesser elsewhere gets no fresh tries from its owner)."""
    row_id = "ctid" if tx.dialect == "postgres" else "rowid"
    for subject in _subjects(staff_id, source):
        tx.run(
            f"DELETE FROM staff_signin_failures WHERE {row_id} IN "
            f"(SELECT {row_id} FROM staff_signin_failures WHERE subject = ? AND at = ? LIMIT 1)",
            [subject, now],
        )
    return _held(tx, staff_id)


def signed_in(tx: Tx, staff_id: str, source: str, now: int) -> Staff:
    """A sign-in complete: the account's failures from this address are forgotten, and the address is one
    the account signed in from."""
    tx.run("DELETE FROM staff_signin_failures WHERE subject = ? OR at <= ?", [_pair(staff_id, source), now - WINDOW_S])
    tx.run("DELETE FROM staff_known_sources WHERE seen_at <= ?", [now - KNOWN_S])
    tx.run(
        "INSERT INTO staff_known_sources (staff_id, source, seen_at) VALUES (?, ?, ?) "
        "ON CONFLICT (staff_id, source) DO UPDATE SET seen_at = excluded.seen_at",
        [staff_id, source, now],
    )
    return _held(tx, staff_id)


__all__ = [
    "PASSWORD_SET",
    "Staff",
    "add",
    "check",
    "check_account",
    "check_merchant",
    "check_password",
    "claim",
    "disable",
    "drop_enrol_code",
    "failures",
    "forget_sources",
    "get",
    "hash_password",
    "in_reach",
    "known_sources",
    "listed",
    "merchant_of",
    "merchant_stores",
    "require",
    "set_password",
    "set_role",
    "signed_in",
    "take_back",
    "unlock",
    "verify",
]
