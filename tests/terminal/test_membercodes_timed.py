"""The wallet's timed member code (``TPM2:`` form 3): signed by head office's member key for one 30 s step;
a till accepts it within the payment codes' window and refuses it after (a screenshot stops working)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from terminal import b64url, base45, membercodes
from terminal import payments as pay
from terminal.errors import Code, Rejected

NOW = 1_800_000_000
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def body(text: str) -> str:
    assert text.startswith(membercodes.PREFIX)
    return text[len(membercodes.PREFIX) :]


def test_a_timed_code_round_trips_in_both_alphabets() -> None:
    for compact in (False, True):
        code = membercodes.parse(body(membercodes.issue_timed(KEY, "K1", "M-0001", NOW, compact)))
        assert isinstance(code, membercodes.TimedCode)
        assert (code.key_id, code.member_id, code.time_step) == ("K1", "M-0001", NOW // pay.STEP_SECONDS)
        assert membercodes.verify_timed(code, PUBLIC, NOW) == "M-0001"


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(0, True), (59, True), (60 + 29, True), (-30, True), (120, False), (3600, False), (-61, False)],
)
def test_the_till_accepts_a_timed_code_only_within_its_window(age: int, accepted: bool) -> None:
    code = membercodes.parse(body(membercodes.issue_timed(KEY, "K1", "M-1", NOW - NOW % 30)))
    assert isinstance(code, membercodes.TimedCode)
    at = NOW - NOW % 30 + age
    if accepted:
        assert membercodes.verify_timed(code, PUBLIC, at) == "M-1"
    else:
        with pytest.raises(Rejected) as refused:
            membercodes.verify_timed(code, PUBLIC, at)
        assert refused.value.code is Code.MEMBER_CODE_EXPIRED


def test_a_timed_code_signed_by_another_key_or_changed_is_forged() -> None:
    other = Ed25519PrivateKey.generate()
    code = membercodes.parse(body(membercodes.issue_timed(other, "K1", "M-1", NOW)))
    assert isinstance(code, membercodes.TimedCode)
    with pytest.raises(Rejected) as refused:
        membercodes.verify_timed(code, PUBLIC, NOW)
    assert refused.value.code is Code.MEMBER_CODE_FORGED
    with pytest.raises(Rejected) as unknown:
        membercodes.verify_timed(code, None, NOW)
    assert unknown.value.code is Code.MEMBER_CODE_FORGED
    raw = bytearray(b64url.decode(body(membercodes.issue_timed(KEY, "K1", "M-1", NOW))))
    raw[-66] ^= 1  # inside the member id: "M-1" becomes another member
    moved = membercodes.parse(base45.encode(bytes(raw)))
    assert isinstance(moved, membercodes.TimedCode)
    with pytest.raises(Rejected) as forged:
        membercodes.verify_timed(moved, PUBLIC, NOW)
    assert forged.value.code is Code.MEMBER_CODE_FORGED


def test_a_printed_code_is_not_a_timed_one_and_keeps_verifying() -> None:
    printed = membercodes.parse(body(membercodes.issue(KEY, "K1", "M-1", NOW - 10 * 365 * 86400)))
    assert isinstance(printed, membercodes.IssuedCode)
    assert membercodes.verify_issued(printed, PUBLIC) == "M-1"
