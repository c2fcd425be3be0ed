"""Back-office sessions: a row per signed-in browser, found by the digest of its cookie's token.

A session is made only by signing in, with a fresh random token (a token a browser brought along is
ended, never adopted: no fixation); it ends at sign-out, after ``IDLE_S`` without a request, ``ABSOLUTE_S``
after sign-in, or when its account is disabled or its password changed; an account whose role does not fit
its merchant (``roles.fits``) has no live session. Each session has its own CSRF
token, which every POST must carry (a form field or the ``X-CSRF-Token`` header htmx sends).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from hq.backoffice import staff
from hq.backoffice.errors import Code
from hq.backoffice.roles import fits
from hq.db.engine import Db, Tx

IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    staff: staff.Staff
    """The signed-in account as it acts now: its ``stores`` are those in its reach (``staff.in_reach``)."""
    csrf: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(tx: Tx, who: staff.Staff, now: int, replaced: str | None = None) -> str:
    """A new session for ``who``; returns its token (for the cookie only). ``replaced``: the token the
    browser brought, whose session (if any) ends."""
    if replaced:
        end(tx, replaced)
    token = secrets.token_urlsafe(32)
    tx.run(
        "INSERT INTO staff_sessions (token_sha256, staff_id, csrf, created_at, seen_at) VALUES (?, ?, ?, ?, ?)",
        [digest(token), who.staff_id, secrets.token_urlsafe(32), now, now],
    )
    tx.run("DELETE FROM staff_sessions WHERE created_at < ?", [now - ABSOLUTE_S])
    return token


def sign_in(db: Db, staff_id: str, password: str, source: str, now: int, brought: str | None) -> str | Code:
    """A new session's token for the account whose password this is (``brought``: the token the browser
    came with, ended), or why not (``staff.verify``)."""
    who = staff.verify(db, staff_id, password, source, now)
    if isinstance(who, Code):
        return who
    return db.transact(lambda tx: start(tx, who, now, brought))


def find(tx: Tx, token: str, now: int) -> Session | None:
    """The live session of ``token`` (its idle clock restarts), else None."""
    row = tx.one(
        "SELECT staff_id, csrf, created_at, seen_at FROM staff_sessions WHERE token_sha256 = ?", [digest(token)]
    )
    if row is None or int(row[2]) + ABSOLUTE_S <= now or int(row[3]) + IDLE_S <= now:
        return None
    who = staff.get(tx, str(row[0]))
    if who is None or who.disabled or not fits(who.role, who.merchant_id):
        return None  # a role that does not fit the account's merchant (a row edited by hand) reaches nothing
    tx.run("UPDATE staff_sessions SET seen_at = ? WHERE token_sha256 = ?", [now, digest(token)])
    return Session(staff.in_reach(tx, who), str(row[1]))


def end(tx: Tx, token: str) -> None:
    tx.run("DELETE FROM staff_sessions WHERE token_sha256 = ?", [digest(token)])


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


__all__ = ["ABSOLUTE_S", "IDLE_S", "Session", "csrf_ok", "digest", "end", "find", "sign_in", "start"]
