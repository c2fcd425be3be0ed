"""Payment codes, device certificates, split tender and offline limits (pure)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from terminal import payments as pay
from terminal.errors import Code, Rejected

NOW = 1_795_000_000
HQ_KEY = Ed25519PrivateKey.generate()
DEVICE = Ed25519PrivateKey.generate()
CERT = pay.issue_cert(
    HQ_KEY, "hq-1", bytes.fromhex("0102030405060708"), "M-1", pay.public_bytes(DEVICE), NOW - 3600, 30 * 86400, 5000
)
ISSUERS = {"hq-1": pay.public_bytes(HQ_KEY)}


def code_at(now: int, counter: int = 1, device: Ed25519PrivateKey = DEVICE) -> str:
    return pay.make_code(device, CERT.cert_id, now, counter)


def verify(text: str, now: int = NOW, cert: pay.DeviceCert = CERT, revoked: bool = False) -> pay.PaymentCode:
    code = pay.parse_code(text)
    pay.check_cert(cert, ISSUERS, now, revoked)
    pay.verify_code(code, cert, now)
    return code


def test_a_fresh_code_verifies_and_is_compact() -> None:
    text = code_at(NOW, counter=7)
    code = verify(text)
    assert code.code_id == "0102030405060708:7"
    assert len(text) <= 120  # fits a small QR (version 6 at level M)


@pytest.mark.parametrize(
    ("age", "ok"), [(0, True), (59, True), (60, True), (-31, True), (100, False), (120, False), (-60, False)]
)
def test_time_window_is_60s_plus_one_step(age: int, ok: bool) -> None:
    text = code_at(NOW - age)
    if ok:
        verify(text)
    else:
        with pytest.raises(Rejected) as info:
            verify(text)
        assert info.value.code is Code.PAYMENT_CODE_EXPIRED


def _tamper(text: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text[5:] + "=="))
    raw[index] ^= 0x01
    return "TPP1:" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: _tamper(code_at(NOW), 16), Code.PAYMENT_CODE_FORGED),  # counter changed
        (lambda: _tamper(code_at(NOW), 40), Code.PAYMENT_CODE_FORGED),  # signature changed
        (lambda: code_at(NOW, device=Ed25519PrivateKey.generate()), Code.PAYMENT_CODE_FORGED),
        (lambda: "TPP1:!!!", Code.PAYMENT_CODE_MALFORMED),
        (lambda: "TPP1:" + "A" * 20, Code.PAYMENT_CODE_MALFORMED),
        (lambda: "hello", Code.PAYMENT_CODE_MALFORMED),
        (lambda: _tamper(code_at(NOW), 0), Code.PAYMENT_CODE_MALFORMED),  # version 0
    ],
)
def test_bad_codes(make: object, code: Code) -> None:
    with pytest.raises(Rejected) as info:
        verify(make())  # type: ignore[operator]
    assert info.value.code is code


def test_certificate_checks() -> None:
    text = code_at(NOW)
    with pytest.raises(Rejected) as info:
        verify(text, revoked=True)
    assert info.value.code is Code.DEVICE_CERT_REVOKED
    with pytest.raises(Rejected) as info:
        verify(code_at(NOW + 31 * 86400), now=NOW + 31 * 86400)
    assert info.value.code is Code.DEVICE_CERT_EXPIRED
    forged = pay.issue_cert(Ed25519PrivateKey.generate(), "hq-1", CERT.cert_id, "M-1", CERT.device_key, NOW, 99, 10**9)
    with pytest.raises(Rejected) as info:
        verify(text, cert=forged)
    assert info.value.code is Code.PAYMENT_CODE_FORGED
    stranger = pay.issue_cert(HQ_KEY, "hq-9", CERT.cert_id, "M-1", CERT.device_key, NOW, 99, 1)
    with pytest.raises(Rejected) as info:
        verify(text, cert=stranger)
    assert info.value.code is Code.DEVICE_CERT_UNKNOWN
    assert pay.cert_from_doc(CERT.to_doc()) == CERT
    # a certificate issued seconds after the till's clock says now (a phone registered just now, a till a little
    # slow) is good within a code's drift, and not before
    fresh = pay.issue_cert(HQ_KEY, "hq-1", CERT.cert_id, "M-1", CERT.device_key, NOW + 20, 30 * 86400, 5000)
    verify(code_at(NOW), now=NOW, cert=fresh)
    early = pay.issue_cert(HQ_KEY, "hq-1", CERT.cert_id, "M-1", CERT.device_key, NOW + 31, 30 * 86400, 5000)
    with pytest.raises(Rejected) as info:
        verify(code_at(NOW), now=NOW, cert=early)
    assert info.value.code is Code.DEVICE_CERT_EXPIRED


LIMITS = pay.RiskLimits(
    per_transaction=3000, per_member_day=5000, terminal_total=8000, max_offline_s=3600, max_clock_age_s=86400
)


@pytest.mark.parametrize(
    ("amount", "state", "cap", "code"),
    [
        (99999, pay.OfflineState(None, None, 0, 0), None, None),  # online: head office decides
        (1000, pay.OfflineState(60, 60, 0, 0), None, None),
        (1000, pay.OfflineState(3601, 60, 0, 0), None, Code.OFFLINE_TOO_LONG),
        (1000, pay.OfflineState(60, None, 0, 0), None, Code.CLOCK_NOT_SYNCED),
        (1000, pay.OfflineState(60, 86401, 0, 0), None, Code.CLOCK_NOT_SYNCED),
        (3001, pay.OfflineState(60, 60, 0, 0), None, Code.OFFLINE_LIMIT_TRANSACTION),
        (2000, pay.OfflineState(60, 60, 3500, 0), None, Code.OFFLINE_LIMIT_MEMBER_DAY),
        (2000, pay.OfflineState(60, 60, 0, 0), 1500, Code.OFFLINE_LIMIT_MEMBER_DAY),  # the device's own cap
        (2000, pay.OfflineState(60, 60, 0, 7000), None, Code.OFFLINE_LIMIT_TERMINAL),
    ],
)
def test_offline_limits(amount: int, state: pay.OfflineState, cap: int | None, code: Code | None) -> None:
    assert pay.offline_refusal(amount, state, LIMITS, cap) == code


@given(
    st.integers(0, 10**7), st.integers(0, 10**7), st.integers(-1000, 10**7), st.one_of(st.none(), st.integers(0, 10**7))
)
def test_split_tender_adds_up(due: int, points_value: int, balance: int, want: int | None) -> None:
    try:
        tender = pay.split(due, points_value // 100 * 100, points_value, balance, want)
    except Rejected as exc:
        assert exc.code in {Code.INVALID_TENDER, Code.INSUFFICIENT_BALANCE}
        return
    assert tender.points_value + tender.stored_value + tender.rest == due
    assert min(tender.stored_value, tender.rest) >= 0 and tender.stored_value <= max(0, balance)
