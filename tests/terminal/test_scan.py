"""terminal.scan: every read classified by its versioned prefix; card numbers and wallet codes refused."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from terminal.errors import Code, Rejected
from terminal.scan import (
    Kind,
    Refusal,
    Scan,
    classify,
    ean13_ok,
    envelope,
    expect,
    in_url,
    looks_like_card_number,
    luhn_ok,
)


def with_check_digit(payload: str) -> str:
    """``payload`` + the Luhn check digit, computed the textbook way (independent of luhn_ok)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return payload + str((10 - total % 10) % 10)


VISA = "4111111111111111"
PAN_19 = with_check_digit("622126000000000000")  # a 19-digit UnionPay card number

CLASSIFIED = [
    ("TPM1:AbC-_0123456789xyz", Kind.MEMBER, "AbC-_0123456789xyz"),
    ("TPC1:Zx9_-Zx9_-", Kind.COUPON, "Zx9_-Zx9_-"),
    ("TPP1:6BFOXN*TS0BI$ZD8UH:./+%", Kind.PAYMENT, "6BFOXN*TS0BI$ZD8UH:./+%"),  # base45
    ("TPJ1:r-2026-11-23-T001-42", Kind.CLAIM, "r-2026-11-23-T001-42"),
    ("TPV1:AQlLLWFiY2RlZmdo", Kind.VOUCHER, "AQlLLWFiY2RlZmdo"),
    ("TPM1:abc\r\n", Kind.MEMBER, "abc"),  # a wedge or serial terminator left on
]


@pytest.mark.parametrize(("text", "kind", "body"), CLASSIFIED)
def test_our_codes_by_prefix(text: str, kind: Kind, body: str) -> None:
    found = classify(text)
    assert found == Scan(kind, 1, body)
    assert found.prefix == text[:5]


def test_codes_carried_in_a_url() -> None:
    found = classify("https://m.example.com/join#TPJ1:tok-42")
    assert found == Scan(Kind.CLAIM, 1, "tok-42", in_url=True)
    assert classify("https://example.com/menu") == Scan(Kind.UNKNOWN, 0, "https://example.com/menu")
    assert isinstance(classify("https://x.example/#TPM9:abc"), Refusal)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("TPM3:abc", Code.UNSUPPORTED_CODE_VERSION),
        ("TPX1:abc", Code.UNSUPPORTED_CODE_VERSION),
        ("TPM1:", Code.MALFORMED_CODE),
        ("TPM1:has\ttab", Code.MALFORMED_CODE),
        ("TPM1:caf\u00e9", Code.MALFORMED_CODE),
        ("TPM1:" + "a" * 2049, Code.MALFORMED_CODE),
        ("x" * 4097, Code.MALFORMED_CODE),
    ],
)
def test_broken_or_newer_envelopes_are_refused(text: str, code: Code) -> None:
    assert classify(text) == Refusal(code)


@pytest.mark.parametrize("text", ["tpm1:abc", "4006381333931", "hello", "TPM:abc", "12345", ""])
def test_anything_else_is_unknown(text: str) -> None:
    assert classify(text) == Scan(Kind.UNKNOWN, 0, text)


CARD_NUMBERS = [
    VISA,
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5555555555554444",
    "378282246310005",  # Amex, 15 digits
    "4222222222222",  # 13 digits
    PAN_19,
    ";4111111111111111=25121010000000000000?",  # track 2 from a keyboard-wedge card reader
    "%B4111111111111111^DOE/JOHN^2512101000000000000?",  # track 1
    "TPM1:4111111111111111",  # inside our own envelope: still never kept
    "card: 4111 1111 1111 1111 exp 12/25",
]


@pytest.mark.parametrize("text", CARD_NUMBERS)
def test_payment_card_numbers_are_refused(text: str) -> None:
    found = classify(text)
    assert found == Refusal(Code.PAYMENT_CARD_REFUSED)


WALLET_CODES = [
    "134567890123456789",  # WeChat Pay: 18 digits from 10-15
    "281234567890123456",  # Alipay: 16-24 digits from 25-30
    "28 1234 5678 9012 3456",
    "6212345678901234567",  # UnionPay QR payment code
    "hQVDUFYwMWEaTwigAAAAVVVVVVcTQ7ZaEtQI",  # EMV consumer-presented QR (base64 BER-TLV)
    "00020101021229300012D15600000000051002658240052045812",  # EMV merchant-presented QR
    "https://qr.alipay.com/fkx12345abcdef",
    "wxp://f2f0abcdefghijklmnop",
]


@pytest.mark.parametrize("text", WALLET_CODES)
def test_other_wallets_payment_codes_are_refused(text: str) -> None:
    assert classify(text) == Refusal(Code.FOREIGN_PAYMENT_CODE)


@pytest.mark.parametrize(
    "text", ["4111111111111112", "411111111111", "91234567890123456789012", "4111 1111  1111 1111"]
)
def test_near_misses_are_not_card_numbers(text: str) -> None:
    # Luhn fails; 12 digits; a 23-digit run is no card number; a double space breaks the number.
    assert not looks_like_card_number(text)


def test_a_refusal_holds_no_trace_of_the_text() -> None:
    assert [f.name for f in dataclasses.fields(Refusal)] == ["code"]
    refusal = classify(VISA)
    assert VISA not in repr(refusal) and "4111" not in refusal.message
    assert "secret" not in repr(classify("TPP1:secret"))  # a payment code body stays out of logs too


def test_expect() -> None:
    assert expect("TPC1:abc", Kind.COUPON) == Scan(Kind.COUPON, 1, "abc")
    with pytest.raises(Rejected) as refused:
        expect(VISA, Kind.COUPON)
    assert refused.value.code is Code.PAYMENT_CARD_REFUSED and VISA not in str(refused.value)
    with pytest.raises(Rejected) as wrong:
        expect("TPM1:abc", Kind.COUPON, Kind.PAYMENT)
    assert wrong.value.code is Code.UNKNOWN_CODE and "member" in wrong.value.message
    with pytest.raises(Rejected) as unknown:
        expect("hello", Kind.MEMBER)
    assert unknown.value.code is Code.UNKNOWN_CODE


def test_envelope_and_url() -> None:
    assert envelope(Kind.PAYMENT, "ABC") == "TPP1:ABC"
    with pytest.raises(ValueError):
        envelope(Kind.MEMBER, "not base64url!")
    with pytest.raises(ValueError):
        envelope(Kind.UNKNOWN, "abc")
    assert in_url("https://m.example.com/j", "TPJ1:x") == "https://m.example.com/j#TPJ1:x"
    with pytest.raises(ValueError):
        in_url("ftp://x", "TPJ1:x")


BASE64URL = string.ascii_letters + string.digits + "-_"


@given(
    st.sampled_from([Kind.MEMBER, Kind.COUPON, Kind.PAYMENT, Kind.CLAIM]),
    st.text(alphabet=BASE64URL, min_size=1, max_size=300).filter(lambda b: not looks_like_card_number(b)),
)
def test_every_envelope_classifies_back(kind: Kind, body: str) -> None:
    assert classify(envelope(kind, body)) == Scan(kind, 1, body)


@given(
    st.integers(min_value=12, max_value=18).flatmap(lambda n: st.text(alphabet=string.digits, min_size=n, max_size=n)),
    st.lists(st.sampled_from(["", " ", "-"]), min_size=19, max_size=19),
    st.sampled_from(["", "PAN ", "TPM1:", "%B"]),
)
def test_every_luhn_valid_number_is_refused(payload: str, gaps: list[str], before: str) -> None:
    number = with_check_digit(payload)
    assert luhn_ok(number)
    assume(not ean13_ok(number))  # 13 digits that are also a valid EAN-13 barcode: see the next test
    spaced = "".join(d + gap for d, gap in zip(number, gaps, strict=False)).rstrip(" -")
    found = classify(before + spaced)
    assert isinstance(found, Refusal)
    assert found.code in (Code.PAYMENT_CARD_REFUSED, Code.FOREIGN_PAYMENT_CODE)


def test_ean13_barcodes_that_pass_luhn_are_not_taken_for_cards() -> None:
    from terminal.scan import looks_like_card_number

    # 4901234567894 is a valid JAN (EAN-13) code and passes Luhn by chance
    barcode = next(
        f"49{n:010d}" + str(c)
        for n in range(10_000)
        for c in range(10)
        if ean13_ok(f"49{n:010d}{c}") and luhn_ok(f"49{n:010d}{c}")
    )
    assert not looks_like_card_number(barcode)
    assert looks_like_card_number("4111 1111 1111 1111")  # 16-digit test Visa still refused
