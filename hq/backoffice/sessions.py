"""Back-office sessions: a row per signed-in browser, found by the digest of its cookie's token.

A session is made only by signing in, with a fresh random token (a token a browser brought along is
ended, never adopted: no fixation); it ends at sign-out, after ``IDLE_S`` without a request, ``ABSOLUTE_S``
after sign-in, or when its account is disabled or its password changed; an account whose role does not fit
its merchant (``roles.fits``) has no live session. Each session has its own CSRF
token, which every POST must carry (a form field or the ``X-CSRF-Token`` header htmx sends).

A session has a ``stage`` (``Stage``): an account with a second factor (``factors``) gets one of stage
``code`` after its password, which reaches only the page asking for the code, for ``CODE_S``; the right code
ends it and starts a full one (a fresh token). A full session of an account whose role must have a second
factor and has none is of stage ``enrol`` (read at each request, so a policy set or a factor reset applies at
once): it reaches only the enrolment page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from hq.backoffice import factors, staff
from hq.backoffice.errors import Code
from hq.backoffice.roles import fits
from hq.db.engine import Db, Tx

IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
CODE_S = 5 * 60
"""How long a session that passed the password waits for the second factor's code."""


class Stage(StrEnum):
    FULL = "full"
    CODE = "code"
    """The password was right; the second factor's code is awaited."""
    ENROL = "enrol"
    """The role must have a second factor and the account has none: enrol first."""


@dataclass(frozen=True, slots=True)
class Session:
    staff: staff.Staff
    """The signed-in account as it acts now: its ``stores`` are those in its reach (``staff.in_reach``)."""
    csrf: str
    stage: Stage = Stage.FULL


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(tx: Tx, who: staff.Staff, now: int, replaced: str | None = None, *, code: bool = False) -> str:
    """A new session for ``who``; returns its token (for the cookie only). ``replaced``: the token the
    browser brought, whose session (if any) ends. ``code``: one awaiting the second factor's code."""
    if replaced:
        end(tx, replaced)
    token = secrets.token_urlsafe(32)
    tx.run(
        "INSERT INTO staff_sessions (token_sha256, staff_id, csrf, created_at, seen_at, stage) VALUES (?, ?, ?, ?, ?, ?)",
        [digest(token), who.staff_id, secrets.token_urlsafe(32), now, now, Stage.CODE.value if code else None],
    )
    tx.run("DELETE FROM staff_sessions WHERE created_at < ?", [now - ABSOLUTE_S])
    return token


def sign_in(db: Db, staff_id: str, password: str, source: str, now: int, brought: str | None) -> str | Code:
    """A new session's token for the account whose password this is (``brought``: the token the browser
    came with, ended), or why not (``staff.check``): of stage ``code`` for an account with a second factor
    (the sign-in completes with the code, ``pass_code``), else complete now (``staff.signed_in``)."""
    who = staff.check(db, staff_id, password, source, now)
    if isinstance(who, Code):
        return who

    def begin(tx: Tx) -> str:
        if factors.enrolled(tx, who.staff_id):
            return start(tx, who, now, brought, code=True)
        staff.signed_in(tx, who.staff_id, source, now)
        return start(tx, who, now, brought)

    return db.transact(begin)


def pass_code(db: Db, token: str, code: str, source: str, now: int) -> str | Code:
    """A full session's token (the one awaiting the code ends) once ``code`` is right (``factors.check_code``),
    or why not: ``sign_in_required`` without a session awaiting a code (or one older than ``CODE_S``)."""
    found = db.transact(lambda tx: find(tx, token, now))
    if found is None or found.stage is not Stage.CODE:
        return Code.SIGN_IN_REQUIRED
    who = factors.check_code(db, found.staff.staff_id, code, source, now)
    if isinstance(who, Code):
        return who
    return db.transact(lambda tx: start(tx, who, now, token))


def find(tx: Tx, token: str, now: int) -> Session | None:
    """The live session of ``token`` (its idle clock restarts) with its stage, else None."""
    row = tx.one(
        "SELECT staff_id, csrf, created_at, seen_at, stage FROM staff_sessions WHERE token_sha256 = ?",
        [digest(token)],
    )
    if row is None or int(row[2]) + ABSOLUTE_S <= now or int(row[3]) + IDLE_S <= now:
        return None
    if row[4] == Stage.CODE.value and int(row[2]) + CODE_S <= now:
        return None
    who = staff.get(tx, str(row[0]))
    if who is None or who.disabled or not fits(who.role, who.merchant_id):
        return None  # a role that does not fit the account's merchant (a row edited by hand) reaches nothing
    tx.run("UPDATE staff_sessions SET seen_at = ? WHERE token_sha256 = ?", [now, digest(token)])
    stage = Stage.CODE if row[4] == Stage.CODE.value else Stage.ENROL if factors.must_enrol(tx, who) else Stage.FULL
    return Session(staff.in_reach(tx, who), str(row[1]), stage)


def end(tx: Tx, token: str) -> None:
    tx.run("DELETE FROM staff_sessions WHERE token_sha256 = ?", [digest(token)])


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


__all__ = [
    "ABSOLUTE_S",
    "CODE_S",
    "IDLE_S",
    "Session",
    "Stage",
    "csrf_ok",
    "digest",
    "end",
    "find",
    "pass_code",
    "sign_in",
    "start",
]
