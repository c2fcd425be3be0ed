"""Signing in to the wallet: contacts, one-time codes, sessions. Every function takes ``now`` (unix
seconds) so that the rules can be tested without waiting.

    contact   an email address (lower case) or a phone number (``+`` and 8 to 15 digits); one member each
              (``member_contacts``), set on the join page or by an administrator
    code      8 random digits, sent to the contact; only ``sha256(code_id:code)`` is stored, with its expiry
              (``CODE_TTL``), its wrong attempts (``MAX_ATTEMPTS``, then it is dead) and its use (once).
              A wrong code is also counted for the contact's lane whatever the address (``wallet_code_misses``):
              ``MAX_MISSES`` in ``MISS_WINDOW`` and no code works nor is made in that lane until they have passed.
              Asking again kills the code still live for that contact in its lane: one live code a lane.
              A code is kept ``MISS_WINDOW`` (it counts for the limits), then deleted.
    lane      where a code and its wrong tries count: a browser that signed in with a code as the contact's
              member has its own (``wallet_known_devices``, the digest of its device cookie's token); every
              other browser, from any address, shares one. What is asked or typed in one lane never refuses,
              kills or counts against another: whoever knows a member's contact can close the shared lane for
              a day, never the member's own phone.
    limits    ``MAX_CODES`` codes per contact and lane in ``RATE_WINDOW`` and ``MAX_CODES_DAY`` in ``MISS_WINDOW``,
              ``MAX_CODES_FROM`` per client address in ``RATE_WINDOW`` in the shared lane (a known browser's
              lane asks only for its member's contacts: neither counted there nor refused by it);
              a contact no member has still counts and gets the same answer (nothing is sent): the
              answer never says whether a contact is known; the join page, which does say it, a few times
              an address (``MAX_TAKEN_FROM``)
    session   a random token in the member's cookie; ``wallet_sessions`` keeps its sha256, the member,
              how it began (``code`` or ``join``), its expiry (``SESSION_TTL``) and when it was ended

Refusals are ``WalletRefused(code)`` with a ``sync.protocol.ErrorCode``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from hq import audit, payments
from hq.db.engine import Tx
from hq.errors import HqError
from hq.store import HqStore
from sync.protocol import ErrorCode

CODE_DIGITS = 8
CODE_TTL = 600
MAX_ATTEMPTS = 5
RATE_WINDOW = 900
MAX_CODES = 3
MAX_CODES_FROM = 20
"""Codes one client address may have made in ``RATE_WINDOW`` in the shared lane, whatever the contacts: 80 an hour,
1,920 a day to anyone's. A known browser's codes are neither counted there nor refused by it: they go only to its
own member's contacts (an email address and a phone number), 6 a quarter hour and 20 a day a browser, 100 a day
for a member's five."""
MAX_MISSES = 10
MISS_WINDOW = 86400
"""Wrong codes typed for one contact and lane in ``MISS_WINDOW``, from any address and across its codes: the
``MAX_MISSES``-th kills the lane's live code, and until the window has passed them every code typed for the contact
in that lane is ``wallet_guesses_limited`` unchecked and none is made there. Without it a botnet asking and
guessing from many addresses had ``MAX_CODES`` x ``MAX_ATTEMPTS`` guesses a quarter hour at each member's code;
now ten a day in the shared lane (a known browser's lane is closed to whoever does not hold the browser)."""
MAX_CODES_DAY = 10
"""Codes made for one contact and lane in ``MISS_WINDOW``: what anyone who knows the contact can have sent to
it a day from browsers the member never signed in on."""
MAX_KNOWN_DEVICES = 5
"""Browsers remembered for a member (its newest sign-ins by code); an older one shares the lane of strangers."""
DEVICE_TTL = 365 * 86400
"""How long a browser that signed in with a code keeps its own lane (its device cookie lives as long)."""
SHARED = ""
"""The lane of every browser not known for the contact's member."""
MAX_TAKEN_FROM = 5
"""Contacts the join page may find another member's (``wallet_contact_taken``) for one client address in
``RATE_WINDOW``; then every join naming a contact from there is ``wallet_rate_limited``, taken or not."""
SESSION_TTL = 14 * 86400
FRESH_S = 600
"""What spends or pays for the member (buying a reward, setting up a paying phone) needs a session begun this
recently (a sign-in code or joining): a cookie alone, two weeks old on a stolen phone, does not."""
EMAIL, PHONE = "email", "phone"
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_PHONE = re.compile(r"\+[1-9][0-9]{7,14}")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


class WalletRefused(HqError):
    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(message or code.value)
        self.code = code


@dataclass(frozen=True, slots=True)
class Contact:
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A code to send: ``member_id`` is None when no member has the contact (then nothing is sent)."""

    contact: Contact
    member_id: str | None
    code: str
    expires_at: int


def contact_of(text: str) -> Contact:
    """The normalised contact of what the member typed; ``WalletRefused(wallet_bad_contact)`` otherwise."""
    text = text.strip()
    if "@" in text:
        email = text.lower()
        if len(email) <= 254 and _EMAIL.fullmatch(email):
            return Contact(EMAIL, email)
    else:
        phone = _PHONE_PUNCTUATION.sub("", text)
        if _PHONE.fullmatch(phone):
            return Contact(PHONE, phone)
    raise WalletRefused(ErrorCode.WALLET_BAD_CONTACT, "Type an email address, or a phone number starting with +.")


def digest(code_id: str, code: str) -> str:
    return hashlib.sha256(f"{code_id}:{code}".encode()).hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stamp(now: int) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat()


# -- contacts -----------------------------------------------------------------------------------------


UNPROVEN, PROVEN = "join", "code"
"""``member_contacts.set_by`` of a contact given on the join page (nobody proved owning it) and of one whose code
was typed since; an administrator's is its name."""


def set_contact(tx: Tx, member_id: str, contact: Contact, by: str, now: int, *, take: bool = False) -> None:
    """Give ``member_id`` this contact (replacing the member's contact of that kind). A contact another
    member holds is refused (``wallet_contact_taken``) unless ``take`` (an administrator moves it)."""
    held = tx.one(
        f"SELECT member_id FROM member_contacts WHERE kind = ? AND contact = ?{tx.for_update}",
        [contact.kind, contact.value],
    )
    if held is not None and str(held[0]) != member_id and not take:
        raise WalletRefused(ErrorCode.WALLET_CONTACT_TAKEN, "That contact belongs to another member.")
    tx.run("DELETE FROM member_contacts WHERE member_id = ? AND kind = ?", [member_id, contact.kind])
    tx.run("DELETE FROM member_contacts WHERE kind = ? AND contact = ?", [contact.kind, contact.value])
    tx.run(
        "INSERT INTO member_contacts (kind, contact, member_id, created_at, set_by) VALUES (?, ?, ?, ?, ?)",
        [contact.kind, contact.value, member_id, _stamp(now), by],
    )


def give_contacts(tx: Tx, member_id: str, wanted: list[Contact], by: str, reason: str, now: int) -> dict[str, str]:
    """An administrator (``by``: its token's name, or ``command line``) sets the member's contacts, moving each from
    another member that held it, audited as ``wallet_contacts``: a contact decides who signs in to the member's
    wallet (and so sets up a phone that pays from its balance), so who gave it to whom is kept. The record names the
    kinds set and the members they moved from, never the contacts themselves (personal data; the log is kept for
    good). Returns the member's contacts now."""
    moved: set[str] = set()
    for contact in wanted:
        held = tx.one(
            "SELECT member_id FROM member_contacts WHERE kind = ? AND contact = ?", [contact.kind, contact.value]
        )
        if held is not None and str(held[0]) != member_id:
            moved.add(str(held[0]))
        set_contact(tx, member_id, contact, f"admin:{by}", now, take=True)
    if wanted:
        details = {"kinds": sorted({c.kind for c in wanted}), "moved_from": sorted(moved)}
        audit.append(tx, by, "wallet_contacts", member_id, reason, details)
    return contacts(tx, member_id)


def check_probes(tx: Tx, source: str, now: int) -> None:
    """``WalletRefused(wallet_rate_limited)`` when the join page found ``MAX_TAKEN_FROM`` contacts taken for
    ``source`` in the window: it answers no more whether a contact is a member's from there."""
    (found,) = tx.one(
        "SELECT COUNT(*) FROM contact_probes WHERE source = ? AND created_at > ?", [source, now - RATE_WINDOW]
    ) or (0,)
    if int(found) >= MAX_TAKEN_FROM:
        raise WalletRefused(ErrorCode.WALLET_RATE_LIMITED, "Too many tries: join without the contact, or wait a while.")


def note_probe(tx: Tx, source: str, now: int) -> None:
    """The join page found a contact taken for ``source`` (rows past the window go: they count for nothing)."""
    tx.run("DELETE FROM contact_probes WHERE created_at <= ?", [now - RATE_WINDOW])
    tx.run("INSERT INTO contact_probes (source, created_at) VALUES (?, ?)", [source, now])


def contacts(tx: Tx, member_id: str) -> dict[str, str]:
    rows = tx.all("SELECT kind, contact FROM member_contacts WHERE member_id = ? ORDER BY kind", [member_id])
    return {str(kind): str(value) for kind, value in rows}


def _member_of(tx: Tx, contact: Contact) -> str | None:
    row = tx.one(
        "SELECT c.member_id FROM member_contacts c JOIN members m ON m.member_id = c.member_id "
        "WHERE c.kind = ? AND c.contact = ? AND m.deleted = 0 AND m.status = 'active'",
        [contact.kind, contact.value],
    )
    return None if row is None else str(row[0])


# -- one-time codes -----------------------------------------------------------------------------------


def request_code(store: HqStore, text: str, source: str, now: int, device: str = "") -> IssuedCode:
    """A new code for the contact in ``text``, asked from ``source`` (the client's address) by the browser whose
    device cookie holds ``device`` (its lane). Refused with ``wallet_bad_contact``, ``wallet_rate_limited`` or
    ``wallet_guesses_limited``; the caller sends it when ``member_id`` is set."""
    contact = contact_of(text)
    key = f"{contact.kind}:{contact.value}"

    def issue(tx: Tx) -> IssuedCode:
        member_id = _member_of(tx, contact)
        lane = _lane(tx, member_id, device, now)
        # codes past the day count for no limit and have expired: none is kept, nor the contact and address it names
        tx.run("DELETE FROM wallet_codes WHERE created_at <= ?", [now - MISS_WINDOW])
        if _asked(tx, key, lane, now) or _address_spent(tx, source, lane, now):
            raise WalletRefused(ErrorCode.WALLET_RATE_LIMITED, _MESSAGES[ErrorCode.WALLET_RATE_LIMITED])
        tx.run("DELETE FROM wallet_code_misses WHERE at <= ?", [now - MISS_WINDOW])
        if _misses(tx, key, lane, now) >= MAX_MISSES:  # no code made: none sent that could not work
            raise WalletRefused(ErrorCode.WALLET_GUESSES_LIMITED, _MESSAGES[ErrorCode.WALLET_GUESSES_LIMITED])
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        code_id = secrets.token_hex(16)
        tx.run(
            "UPDATE wallet_codes SET used_at = ? WHERE contact = ? AND lane = ? AND used_at IS NULL", [now, key, lane]
        )
        tx.run(
            "INSERT INTO wallet_codes (code_id, contact, lane, member_id, code_sha256, source, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [code_id, key, lane, member_id, digest(code_id, code), source, now, now + CODE_TTL],
        )
        return IssuedCode(contact, member_id, code, now + CODE_TTL)

    return store.db.transact(issue)


def _asked(tx: Tx, key: str, lane: str, now: int) -> bool:
    """Whether the contact ``key`` had its codes in ``lane``: ``MAX_CODES`` in ``RATE_WINDOW`` or ``MAX_CODES_DAY``
    in ``MISS_WINDOW``."""
    (recent, today) = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN created_at > ? THEN 1 ELSE 0 END), 0), COUNT(*) FROM wallet_codes "
        "WHERE contact = ? AND lane = ? AND created_at > ?",
        [now - RATE_WINDOW, key, lane, now - MISS_WINDOW],
    ) or (0, 0)
    return int(recent) >= MAX_CODES or int(today) >= MAX_CODES_DAY


def _address_spent(tx: Tx, source: str, lane: str, now: int) -> bool:
    """Whether ``source`` had its ``MAX_CODES_FROM`` codes in ``RATE_WINDOW`` in the shared lane. Only that lane
    counts and is refused: a known browser asks only for its own member's contacts, bounded by its lane's
    per-contact limits, so whoever shares the member's address (a café's wifi, an office) and spends it on other
    contacts does not keep the member's phone out."""
    if lane != SHARED:
        return False
    (found,) = tx.one(
        "SELECT COUNT(*) FROM wallet_codes WHERE source = ? AND lane = ? AND created_at > ?",
        [source, SHARED, now - RATE_WINDOW],
    ) or (0,)
    return int(found) >= MAX_CODES_FROM


def _lane(tx: Tx, member_id: str | None, device: str, now: int) -> str:
    """The lane of a browser holding ``device`` for a contact of ``member_id``: the device's digest when that
    browser signed in with a code as this member in ``DEVICE_TTL`` (and was not forgotten since), else ``SHARED``."""
    if member_id is None or not device or len(device) > 128:
        return SHARED
    known = token_digest(device)
    row = tx.one(
        "SELECT 1 FROM wallet_known_devices WHERE device_sha256 = ? AND member_id = ? AND created_at > ?",
        [known, member_id, now - DEVICE_TTL],
    )
    return SHARED if row is None else known


def remember_device(store: HqStore, member_id: str, device: str, now: int) -> str:
    """After a sign-in by code: the device token of the browser from now on (``device``, its cookie's, when it is
    already known for the member; else a new one). A known browser's ``DEVICE_TTL`` starts again, so a phone the
    member signs in on keeps its lane however long ago it first did. The member keeps its ``MAX_KNOWN_DEVICES``
    most recently signed in."""

    def remember(tx: Tx) -> str:
        if device and _lane(tx, member_id, device, now) != SHARED:  # known: its year starts again
            tx.run(
                "UPDATE wallet_known_devices SET created_at = ? WHERE device_sha256 = ?", [now, token_digest(device)]
            )
            return device
        token = secrets.token_urlsafe(32)
        made = token_digest(token)
        others = tx.all(
            "SELECT device_sha256 FROM wallet_known_devices WHERE member_id = ? ORDER BY created_at DESC",
            [member_id],
        )
        # The new browser is kept first: others signed in on within the same second never push it out.
        where, params = tx.in_list("device_sha256", [str(row[0]) for row in others[MAX_KNOWN_DEVICES - 1 :]])
        tx.run(f"DELETE FROM wallet_known_devices WHERE {where}", params)
        tx.run(
            "INSERT INTO wallet_known_devices (device_sha256, member_id, created_at) VALUES (?, ?, ?)",
            [made, member_id, now],
        )
        return token

    return store.db.transact(remember)


def sign_in(store: HqStore, text: str, code: str, now: int, device: str = "") -> tuple[str, str]:
    """(member id, session token) for the live code of the contact in ``text`` in the lane of the browser
    holding ``device``. The code is used once; a wrong one counts for the code and for the contact's lane
    (``wallet_code_wrong``), whatever the address it came from; the ``MAX_ATTEMPTS``-th wrong one kills the code
    (``wallet_too_many_attempts``), the lane's ``MAX_MISSES``-th in ``MISS_WINDOW`` too, and from then every code
    typed for the contact in that lane is refused unchecked until the window has passed them
    (``wallet_guesses_limited``); no live code is ``wallet_code_expired``. The code's row is locked while its try is counted: tries sent at once get no
    more than sent one after another."""
    contact = contact_of(text)
    key = f"{contact.kind}:{contact.value}"
    typed = "".join(code.split())

    def check(tx: Tx) -> tuple[ErrorCode | None, str, str]:
        lane = _lane(tx, _member_of(tx, contact), device, now)
        row = tx.one(
            "SELECT code_id, member_id, code_sha256, attempts FROM wallet_codes WHERE contact = ? AND lane = ? "
            f"AND used_at IS NULL AND expires_at > ? ORDER BY created_at DESC LIMIT 1{tx.for_update}",
            [key, lane, now],
        )
        misses = _misses(tx, key, lane, now)
        if misses >= MAX_MISSES:
            if row is not None:
                tx.run("UPDATE wallet_codes SET used_at = ? WHERE code_id = ?", [now, str(row[0])])
            return ErrorCode.WALLET_GUESSES_LIMITED, "", ""
        if row is None:
            return ErrorCode.WALLET_CODE_EXPIRED, "", ""
        code_id, member_id, held, attempts = str(row[0]), row[1], str(row[2]), int(row[3])
        right = hmac.compare_digest(digest(code_id, typed), held)
        if right and member_id is not None and _member_of(tx, contact) == member_id:
            tx.run("UPDATE wallet_codes SET used_at = ? WHERE code_id = ?", [now, code_id])
            if _first_proof(tx, contact, now):
                first.append(str(member_id))
            return None, str(member_id), open_session(tx, str(member_id), "code", now)
        attempts += 1
        tx.run("INSERT INTO wallet_code_misses (contact, lane, at) VALUES (?, ?, ?)", [key, lane, now])
        limited, dead = misses + 1 >= MAX_MISSES, attempts >= MAX_ATTEMPTS
        tx.run(
            "UPDATE wallet_codes SET attempts = ?, used_at = ? WHERE code_id = ?",
            [attempts, now if dead or limited else None, code_id],
        )
        if limited:
            return ErrorCode.WALLET_GUESSES_LIMITED, "", ""
        return (ErrorCode.WALLET_TOO_MANY_ATTEMPTS if dead else ErrorCode.WALLET_CODE_WRONG), "", ""

    first: list[str] = []
    refused, member_id, token = store.db.transact(check)
    if refused is not None:
        raise WalletRefused(refused, _MESSAGES[refused])
    for proven in first:  # whoever gave this contact without owning it loses the phones it set up to pay
        payments.revoke_devices(store, proven, "contact proven")
    return member_id, token


def _misses(tx: Tx, key: str, lane: str, now: int) -> int:
    """Wrong codes typed for the contact ``key`` in ``lane`` in the window now, from any address."""
    (found,) = tx.one(
        "SELECT COUNT(*) FROM wallet_code_misses WHERE contact = ? AND lane = ? AND at > ?",
        [key, lane, now - MISS_WINDOW],
    ) or (0,)
    return int(found)


def _first_proof(tx: Tx, contact: Contact, now: int) -> bool:
    """The contact's first code typed since it was given on the join page, where nobody proved owning it: its
    owner is the member from now on, so every earlier session and member-app token of the member ends (else
    whoever typed someone else's address when joining would keep a session of the member its owner uses)."""
    row = tx.one(
        "SELECT member_id, set_by FROM member_contacts WHERE kind = ? AND contact = ?", [contact.kind, contact.value]
    )
    if row is None or str(row[1]) != UNPROVEN:
        return False
    member_id = str(row[0])
    end_all_sessions(tx, member_id, now)
    payments.forget_tokens(tx, member_id)
    tx.run(
        "UPDATE member_contacts SET set_by = ? WHERE kind = ? AND contact = ?", [PROVEN, contact.kind, contact.value]
    )
    return True


_MESSAGES = {
    ErrorCode.WALLET_CODE_EXPIRED: "That code has expired or was used: ask for a new one.",
    ErrorCode.WALLET_CODE_WRONG: "That is not the code we sent: check it and try again.",
    ErrorCode.WALLET_TOO_MANY_ATTEMPTS: "Too many wrong codes: ask for a new one in a few minutes.",
    ErrorCode.WALLET_GUESSES_LIMITED: "Too many wrong codes for this contact today: try again tomorrow, or on a "
    "phone you signed in on before.",
    ErrorCode.WALLET_RATE_LIMITED: "Too many codes asked for: wait a while, or use a phone you signed in on before.",
}


# -- sessions -----------------------------------------------------------------------------------------


def open_session(tx: Tx, member_id: str, via: str, now: int) -> str:
    """A new session for the member (``via``: "code" or "join"); returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    tx.run(
        "INSERT INTO wallet_sessions (token_sha256, member_id, via, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        [token_digest(token), member_id, via, now, now + SESSION_TTL],
    )
    return token


def live_session(store: HqStore, token: str, now: int) -> tuple[str, int] | None:
    """(member, when it began) of a live session's token: not expired, not ended, the member still active."""
    if not token or len(token) > 128:
        return None
    with store.db.read() as tx:
        row = tx.one(
            "SELECT s.member_id, s.created_at FROM wallet_sessions s JOIN members m ON m.member_id = s.member_id "
            "WHERE s.token_sha256 = ? AND s.ended_at IS NULL AND s.expires_at > ? AND m.deleted = 0 "
            "AND m.status = 'active'",
            [token_digest(token), now],
        )
    return None if row is None else (str(row[0]), int(row[1]))


def is_fresh(started: int, now: int) -> bool:
    """Whether a session that began at ``started`` did so at most ``FRESH_S`` ago: what pays or hands over a code
    that pays needs it, a two-week old cookie alone (a stolen phone) does not have it."""
    return now - started <= FRESH_S


def require_fresh(started: int, now: int, message: str) -> None:
    """``WalletRefused(wallet_sign_in_again)`` unless the session began at most ``FRESH_S`` ago (``is_fresh``)."""
    if not is_fresh(started, now):
        raise WalletRefused(ErrorCode.WALLET_SIGN_IN_AGAIN, message)


def session_member(store: HqStore, token: str, now: int) -> str | None:
    """The member of a live session's token."""
    found = live_session(store, token, now)
    return None if found is None else found[0]


def end_session(store: HqStore, token: str, now: int) -> bool:
    """Sign out: the session's token works no more. False when it was not a live session."""
    changed = store.db.transact(
        lambda tx: tx.run(
            "UPDATE wallet_sessions SET ended_at = ? WHERE token_sha256 = ? AND ended_at IS NULL",
            [now, token_digest(token)],
        )
    )
    return changed == 1


def end_all_sessions(tx: Tx, member_id: str, now: int) -> int:
    """Sign out everywhere: every live session of the member ends and no browser is known for it any more (a
    lost phone shares the lane of strangers); returns how many sessions ended."""
    tx.run("DELETE FROM wallet_known_devices WHERE member_id = ?", [member_id])
    return tx.run("UPDATE wallet_sessions SET ended_at = ? WHERE member_id = ? AND ended_at IS NULL", [now, member_id])


def forget(tx: Tx, member_id: str, now: int) -> None:
    """After an erasure: the member's contacts go, its sessions end, its codes and the wrong codes typed for its
    contacts go (each names a contact of the member's: those asked for while no member held it too)."""
    held = [f"{kind}:{value}" for kind, value in contacts(tx, member_id).items()]
    where, params = tx.in_list("contact", held)
    tx.run(f"DELETE FROM wallet_codes WHERE member_id = ? OR {where}", [member_id, *params])
    tx.run(f"DELETE FROM wallet_code_misses WHERE {where}", params)
    tx.run("DELETE FROM member_contacts WHERE member_id = ?", [member_id])
    tx.run("DELETE FROM wallet_known_devices WHERE member_id = ?", [member_id])
    tx.run("UPDATE wallet_sessions SET ended_at = ? WHERE member_id = ? AND ended_at IS NULL", [now, member_id])


__all__ = [
    "CODE_TTL",
    "MAX_ATTEMPTS",
    "MAX_CODES_DAY",
    "MAX_MISSES",
    "MISS_WINDOW",
    "SESSION_TTL",
    "Contact",
    "IssuedCode",
    "WalletRefused",
    "contact_of",
    "contacts",
    "end_all_sessions",
    "end_session",
    "forget",
    "give_contacts",
    "is_fresh",
    "live_session",
    "open_session",
    "remember_device",
    "request_code",
    "require_fresh",
    "session_member",
    "set_contact",
    "sign_in",
]
