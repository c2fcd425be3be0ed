"""Time-based one-time codes (TOTP, RFC 6238) for the second factor of staff sign-in, and recovery codes. No
I/O: ``pyotp`` computes the codes (HMAC-SHA1, 6 digits, 30 s steps, what every authenticator app reads from
an ``otpauth://`` QR code); head office keeps the secret and the last step it accepted (``factors``).

A code is accepted for its own step or the one before or after (``WINDOW``: a phone's clock a little off, a
code typed as it turned), and only for a step after the last accepted one: each code is used at most once,
and a code older than one already used is refused too (``CODE_USED``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

import pyotp

STEP_S = 30
DIGITS = 6
WINDOW = 1
"""Steps accepted either side of the current one."""
ISSUER = "tillpoint"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
"""Recovery codes' letters: no 0/o, 1/l/i to misread. Twelve of them: about 59 bits each."""
RECOVERY_LEN = 12


class Refusal(StrEnum):
    BAD_CODE = "bad_code"
    CODE_USED = "code_used"


def new_secret() -> str:
    """A fresh secret: 32 base32 characters (160 random bits, RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def uri(secret: str, staff_id: str) -> str:
    """The ``otpauth://totp/...`` text an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=staff_id, issuer_name=ISSUER)


def step_of(now: int) -> int:
    return now // STEP_S


def is_totp(text: str) -> bool:
    """Whether what was typed has the shape of a TOTP code (six digits, spaces aside); else a recovery code."""
    typed = "".join(text.split())
    return len(typed) == DIGITS and typed.isascii() and typed.isdigit()


def matching_step(secret: str, code: str, now: int, last_step: int) -> int | Refusal:
    """The step ``code`` is the code of (within ``WINDOW`` of ``now``), if after ``last_step``; ``code_used`` for
    one of an accepted step or before it, ``bad_code`` for any other."""
    typed = "".join(code.split())
    if not is_totp(typed):
        return Refusal.BAD_CODE
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = step_of(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), typed):
            return step if step > last_step else Refusal.CODE_USED
    return Refusal.BAD_CODE


def new_recovery_codes() -> list[str]:
    """``RECOVERY_CODES`` fresh codes, shown as ``abcd-efgh-jkmn``."""
    made = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LEN)) for _ in range(RECOVERY_CODES)]
    return [f"{c[:4]}-{c[4:8]}-{c[8:]}" for c in made]


def new_enrol_code() -> str:
    """A fresh enrolment code an administrator hands to an account's owner, shown as ``abcd-efgh-jkmn`` (the
    recovery codes' letters: about 59 bits)."""
    made = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LEN))
    return f"{made[:4]}-{made[4:8]}-{made[8:]}"


def enrol_digest(text: str) -> str:
    """An enrolment code as kept: the SHA-256 of it as typed (``recovery_typed``); one code of 59 random bits
    that lives ``factors.ENROL_CODE_S`` needs no slow hash."""
    return hashlib.sha256(recovery_typed(text).encode()).hexdigest()


def is_secret(text: str) -> bool:
    """Whether ``text`` has the shape of a secret ``new_secret`` makes (32 base32 characters)."""
    return len(text) == 32 and all(ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for ch in text)


def recovery_typed(text: str) -> str:
    """A recovery code as typed, the way it is hashed: lower case, without spaces and dashes."""
    return "".join(ch for ch in text.lower() if ch not in " -\t")[:64]


__all__ = [
    "DIGITS",
    "RECOVERY_CODES",
    "STEP_S",
    "WINDOW",
    "Refusal",
    "enrol_digest",
    "is_secret",
    "is_totp",
    "matching_step",
    "new_enrol_code",
    "new_recovery_codes",
    "new_secret",
    "recovery_typed",
    "step_of",
    "uri",
]
