"""Staff management on the web (chain administrators): create an account, set its role, stores and merchant
(blank: the chain's own staff), reset its password (another's: one's own is changed with the current one,
``own_password_reset``), unlock its sign-in, disable it. Each change goes through ``staff`` (the functions the ``tillpoint hq staff`` commands
use) with its audit record in the same transaction; the last enabled chain administrator can be neither
disabled nor given another role (``last_admin``). Any member of staff changes its own password
(``change_own_password``). An administrator removes another account's second factor (``reset_second_factor``,
``factors.reset``) and issues an account's enrolment code (``issue_enrol_code``); never resets its own that way
(``own_second_factor``) nor issues its own code (``own_enrol_code``): whoever holds an administrator's password
alone would otherwise remove the factor that stops them, or put their own phone on the account."""

from __future__ import annotations

from collections.abc import Callable

from hq import audit
from hq.backoffice import factors, staff
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.store import HqStore


def listed(tx: Tx, who: Staff) -> list[Staff]:
    require(who, Action.STAFF_MANAGE)
    return staff.listed(tx)


def stores_of(text: str) -> list[str]:
    """A store manager's stores typed as ``S1, S2``."""
    return sorted({part.strip() for part in text.split(",") if part.strip()})


def _reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason or len(reason) > 200:
        raise BackofficeRefused(Code.REASON_REQUIRED, "a reason of 1 to 200 characters is required")
    return reason


def _audited(
    who: Staff, action: str, reason: str, change: Callable[[Tx], Staff], forgets: str | None = None
) -> Callable[[Tx], Staff]:
    """``change`` with its audit record in its transaction; ``forgets``: the account whose addresses it
    signed in from the change forgets (``staff.forget_sources``), their count in ``details.known_sources``."""

    def run(tx: Tx) -> Staff:
        known = None if forgets is None else staff.known_sources(tx, forgets)
        done = change(tx)
        details: dict[str, object] = {
            "role": done.role.value,
            "stores": sorted(done.stores),
            "merchant": done.merchant_id,
            "disabled": done.disabled,
        }
        if known is not None:
            details["known_sources"] = known
        audit.append(tx, who.staff_id, action, done.staff_id, reason, details)
        return done

    return run


def create(store: HqStore, who: Staff, fields: dict[str, str]) -> Staff:
    require(who, Action.STAFF_MANAGE)
    account = staff.check_account(
        fields.get("staff_id", "").strip(),
        fields.get("name", ""),
        fields.get("role", ""),
        stores_of(fields.get("stores", "")),
        staff.merchant_of(fields.get("merchant")),
    )
    password, reason = fields.get("password", ""), _reason(fields.get("reason", ""))
    staff.check_new_password(password)
    return store.db.transact(_audited(who, "staff_add", reason, lambda tx: staff.add(tx, account, password)))


def set_role(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str]) -> Staff:
    require(who, Action.STAFF_MANAGE)
    role, stores, merchant, reason = (
        fields.get("role", ""),
        stores_of(fields.get("stores", "")),
        staff.merchant_of(fields.get("merchant")),
        _reason(fields.get("reason", "")),
    )
    return store.db.transact(
        _audited(who, "staff_role", reason, lambda tx: staff.set_role(tx, staff_id, role, stores, merchant))
    )


def reset_password(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str]) -> Staff:
    """Another account's password set by an administrator (audited as ``staff_passwd``); never its own
    (``own_password_reset``): that is changed on **Your password**, with the current one, so that whoever holds only an
    administrator's session (a browser left signed in) cannot make the account theirs."""
    require(who, Action.STAFF_MANAGE)
    if staff_id == who.staff_id:
        raise BackofficeRefused(
            Code.OWN_PASSWORD_RESET, "an administrator's own password is changed with the current one"
        )
    password, reason = fields.get("password", ""), _reason(fields.get("reason", ""))
    staff.check_new_password(password)
    return store.db.transact(
        _audited(who, "staff_passwd", reason, lambda tx: staff.set_password(tx, staff_id, password), staff_id)
    )


def change_own_password(store: HqStore, who: Staff, fields: dict[str, str], source: str, now: int) -> Staff:
    """``who`` sets its own password (any role): the new one twice, and the current one, checked as a sign-in is
    (``staff.verify``: a wrong one counts against the account, a locked account is ``locked_out``). Audited as
    ``staff_passwd`` by the account itself, so no one else knows it any more (``approvals.hands``); every
    session of the account ends, this one too."""
    new, again = fields.get("new_password", ""), fields.get("new_password_again", "")
    if new != again:
        raise BackofficeRefused(Code.PASSWORDS_DIFFER, "the new password and its repetition differ")
    staff.check_new_password(new)
    checked = staff.verify(store.db, who.staff_id, fields.get("current_password", ""), source, now)
    if isinstance(checked, Code):
        raise BackofficeRefused(checked, "the current password is not right")
    return store.db.transact(
        _audited(who, "staff_passwd", "own password", lambda tx: staff.set_password(tx, who.staff_id, new, own=True))
    )


def unlock(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str]) -> Staff:
    """The account may be tried again from every address (``staff.unlock``: its failed sign-ins are forgotten),
    audited as ``staff_unlock`` with how many were forgotten (``details.failures``)."""
    require(who, Action.STAFF_MANAGE)
    reason = _reason(fields.get("reason", ""))

    def run(tx: Tx) -> Staff:
        forgotten = staff.unlock(tx, staff_id)
        done = staff.get(tx, staff_id)
        assert done is not None  # staff.unlock refused an unknown account
        audit.append(tx, who.staff_id, "staff_unlock", staff_id, reason, {"failures": forgotten})
        return done

    return store.db.transact(run)


def reset_second_factor(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str]) -> Staff:
    """``staff_id``'s second factor removed (``factors.reset``: its sessions end, audited as
    ``staff_2fa_reset``), by an administrator other than its owner."""
    require(who, Action.STAFF_MANAGE)
    if staff_id == who.staff_id:
        raise BackofficeRefused(Code.OWN_SECOND_FACTOR, "an administrator's own second factor is not reset here")
    reason = _reason(fields.get("reason", ""))
    return store.db.transact(lambda tx: factors.reset(tx, who.staff_id, staff_id, reason))


def issue_enrol_code(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str], now: int) -> tuple[str, int]:
    """A one-time enrolment code for ``staff_id`` and when it expires (``factors.issue_enrol_code``, audited
    as ``staff_2fa_enrol_code`` by the administrator), to be shown this once; never for the administrator's own
    account (``own_enrol_code``): whoever holds only its password would otherwise put their own phone on it."""
    require(who, Action.STAFF_MANAGE)
    if staff_id == who.staff_id:
        raise BackofficeRefused(Code.OWN_ENROL_CODE, "an administrator's own enrolment code is issued by another")
    reason = _reason(fields.get("reason", ""))
    return store.db.transact(lambda tx: factors.issue_enrol_code(tx, who.staff_id, staff_id, reason, now))


def disable(store: HqStore, who: Staff, staff_id: str, fields: dict[str, str]) -> Staff:
    require(who, Action.STAFF_MANAGE)
    reason = _reason(fields.get("reason", ""))
    return store.db.transact(_audited(who, "staff_disable", reason, lambda tx: staff.disable(tx, staff_id), staff_id))


__all__ = [
    "change_own_password",
    "create",
    "disable",
    "issue_enrol_code",
    "listed",
    "reset_password",
    "reset_second_factor",
    "set_role",
    "stores_of",
    "unlock",
]
