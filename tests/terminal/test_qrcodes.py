"""terminal.qrcodes: every drawing of a code is read back by the same decoder the camera uses."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from drivers.decode import decode
from terminal import b64url, base45, membercodes
from terminal import payments as pay
from terminal.qrcodes import (
    choose_level,
    claim_code,
    coupon_code,
    encode,
    member_code,
    png,
    qr_text,
    svg,
    terminal_text,
    version_of,
)
from terminal.scan import Kind, Scan, classify

TOKEN = "r-2026-11-23-T001-000042"


def test_png_reads_back() -> None:
    data = png(member_code("AbCdEf0123456789-_"), scale=6)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    symbol = encode(qr_text(member_code("AbCdEf0123456789-_")))
    assert image.shape == (symbol.size * 6, symbol.size * 6)
    assert decode(image) == [qr_text("TPM2:AbCdEf0123456789-_")]
    assert b64url.decode("AbCdEf0123456789-_") == base45.decode(decode(image)[0][5:])


def _rasterise_svg(document: str, scale: int = 6) -> np.ndarray:
    root = ET.fromstring(document)
    n = int(root.attrib["viewBox"].split()[2])
    image = np.full((n * scale, n * scale), 255, np.uint8)
    path = root.find("{http://www.w3.org/2000/svg}path")
    assert path is not None
    for x, y, run in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", path.attrib["d"]):
        x0, y0 = int(x) * scale, int(y) * scale
        image[y0 : y0 + scale, x0 : x0 + int(run) * scale] = 0
    return image


def test_svg_reads_back() -> None:
    text = coupon_code("CPN-2026-WINTER-0042")
    document = svg(text, scale=3)
    root = ET.fromstring(document)
    size = encode(text).size
    assert root.attrib["width"] == str(size * 3)
    assert decode(_rasterise_svg(document)) == [text]


def _rasterise_terminal(lines: str, scale: int = 6) -> np.ndarray:
    """Half blocks back to modules, as a person's phone sees a (dark) terminal."""
    top = {" ": 0, "\u2580": 1, "\u2584": 0, "\u2588": 1}
    bottom = {" ": 0, "\u2580": 0, "\u2584": 1, "\u2588": 1}
    rows = []
    for line in lines.rstrip("\n").split("\n"):
        rows.append([top[c] for c in line])
        rows.append([bottom[c] for c in line])
    drawn = np.array(rows, np.uint8)  # 1 = a block drawn (light on a dark terminal)
    image = np.where(drawn == 1, 255, 0).astype(np.uint8)
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def test_terminal_text_reads_back() -> None:
    text = claim_code(TOKEN)
    lines = terminal_text(text)
    symbol = encode(text, "L", border=2)
    assert len(lines.splitlines()) == (symbol.size + 1) // 2
    image = _rasterise_terminal(lines)
    assert (image[: symbol.size * 6] < 128).tolist() == np.repeat(
        np.repeat(np.array(symbol.modules), 6, 0), 6, 1
    ).tolist()
    assert decode(image) == [text]
    # On a light terminal the dark modules are drawn instead.
    assert decode(255 - _rasterise_terminal(terminal_text(text, dark_background=False))) == [text]


def test_receipt_claim_code_opens_a_page_on_a_phone_and_reads_at_the_till() -> None:
    text = claim_code(TOKEN, base_url="https://m.example.com/r")
    assert text == f"https://m.example.com/r#TPJ1:{TOKEN}"
    assert classify(text) == Scan(Kind.CLAIM, 1, TOKEN, in_url=True)
    assert decode(cv2.imdecode(np.frombuffer(png(text), np.uint8), cv2.IMREAD_GRAYSCALE)) == [text]


def test_codes_we_make_classify_as_what_they_are() -> None:
    assert classify(member_code("m1")) == Scan(Kind.MEMBER, 2, "m1")
    assert classify(coupon_code("c1")) == Scan(Kind.COUPON, 1, "c1")
    assert classify(claim_code("j1")) == Scan(Kind.CLAIM, 1, "j1")


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        member_code("no! exclamation marks")
    with pytest.raises(ValueError):
        claim_code(TOKEN, base_url="javascript:alert(1)")
    with pytest.raises(ValueError):
        png("x", scale=0)


def test_more_error_correction_makes_a_bigger_code() -> None:
    text = coupon_code("A" * 60)
    assert encode(text, "H").version > encode(text, "L").version


# -- sizes: our codes stay at version 5 or below ------------------------------------------------------


def _our_codes() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return {
        "member issued": membercodes.issue(key, "member-2026-11", "M-0001234567", 1_790_000_000),
        "member device": membercodes.device_code(key, bytes(range(8)), 1_790_000_000, 41),
        "payment": pay.make_code(key, bytes(range(8)), 1_790_000_000, 42),
    }


@pytest.mark.parametrize("name", ["member issued", "member device", "payment"])
def test_signed_codes_are_drawn_at_version_5_and_read_back_to_the_same_code(name: str) -> None:
    text = _our_codes()[name]
    assert version_of(text, "L") >= 6  # in base64url they would not fit version 5 even at level L
    drawn = qr_text(text)
    assert drawn != text and set(drawn) <= set(base45.ALPHABET)
    assert encode(drawn).version <= 5 and choose_level(drawn) == "L"
    image = cv2.imdecode(np.frombuffer(png(text, scale=4), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decode(image) == [drawn]
    if text.startswith(pay.PREFIX):
        assert pay.parse_code(drawn) == pay.parse_code(text)
    else:
        assert membercodes.parse(drawn[5:]) == membercodes.parse(text[5:])


def test_the_level_is_the_strongest_that_keeps_version_5() -> None:
    short = claim_code(TOKEN)
    assert choose_level(short) == "H" and encode(short).version <= 5
    assert choose_level("TPC1:" + "A" * 60) in ("Q", "M")
    long_coupon = "TPC1:" + "Ab" * 120
    assert choose_level(long_coupon) == "L" and encode(long_coupon).version > 5  # too long for 5: smallest it can be


def test_other_texts_are_drawn_as_they_are() -> None:
    assert qr_text(claim_code(TOKEN)) == claim_code(TOKEN)
    assert qr_text(coupon_code("Zx9_-")) == coupon_code("Zx9_-")
    assert qr_text("TPP1:NOT$B64") == "TPP1:NOT$B64"


def test_compact_codes_are_made_directly_too() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    compact = pay.make_code(key, bytes(range(8)), 1_790_000_000, 42, compact=True)
    assert compact == qr_text(_our_codes()["payment"])
    issued = membercodes.issue(key, "member-2026-11", "M-0001234567", 1_790_000_000, compact=True)
    assert issued == qr_text(_our_codes()["member issued"])
    assert classify(issued).kind is Kind.MEMBER and classify(compact).kind is Kind.PAYMENT


def test_a_body_in_neither_form_is_refused() -> None:
    from terminal.errors import Code, Rejected

    for body in ("A" * 122, "A" * 108, "a$" * 61, "%" * 121):
        with pytest.raises(Rejected) as caught:
            pay.parse_code("TPP1:" + body)
        assert caught.value.code is Code.PAYMENT_CODE_MALFORMED
    for body in ("A" * 140, "a$" * 70):
        with pytest.raises(Rejected) as caught:
            membercodes.parse(body)
        assert caught.value.code is Code.MALFORMED_CODE


def test_a_compact_payment_code_that_begins_with_a_space_reads_back() -> None:
    """A space is a base45 digit. The first three of a compact payment code's body stand for its version
    and the first byte of the phone's certificate id, so one phone in 45 makes only codes that begin with a
    space; a reader that trimmed spaces refused every one of them as malformed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    spaced = [
        (cert_id, text)
        for first in range(256)
        if (
            text := pay.make_code(key, (cert_id := bytes([first, 7, 1, 8, 2, 8, 1, 8])), 1_790_000_000, 9, compact=True)
        )[len(pay.PREFIX)]
        == " "
    ]
    assert spaced  # (1 * 256 + first) % 45 == 36 for some first byte
    for cert_id, text in spaced:
        scanned = classify(text + "\r\n")
        assert isinstance(scanned, Scan) and scanned.kind is Kind.PAYMENT
        assert pay.parse_code(text + "\r\n") == pay.parse_code(pay.make_code(key, cert_id, 1_790_000_000, 9))
