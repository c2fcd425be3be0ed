"""What a scanned text is: one of our codes (by its versioned prefix), something unknown, or a refusal.

Pure: no I/O. Every text a scanner reads (camera, keyboard wedge, serial) passes through
``classify`` before anything looks at it or writes it anywhere.

Our codes (docs/scanning.md, "Code formats", is the reference)::

    TPM2:<body>   member code          signed: printed on a member card, or made by the member's phone
                                       (TPM1, unsigned, is recognised only to be refused)
    TPC1:<body>   coupon               printed or on a phone
    TPP1:<body>   payment code         the member app's short-lived one-time payment code
    TPJ1:<body>   claim / join token   printed on a receipt: claim its points, or join
    TPV1:<body>   prepaid voucher      printed at the till that sold it, signed by head office
    https://host/path#TPJ1:<body>      the same, carried in a URL so a phone camera opens a page

The prefix is ``TP`` + a kind letter + a version number + ``:``. The body is base64url (RFC 4648
section 5, no padding) or base45 (RFC 9285); the modules that own each payload (coupons, payments,
credentials) decode and verify it; here only the envelope is checked.

Refused, whatever the prefix, and never kept, logged or echoed: a payment card number (13-19 digits
passing the Luhn check, alone or inside the text, with or without spaces or dashes, e.g. magnetic
stripe track data from a keyboard-wedge card reader), and another wallet's payment code (EMV QR,
Alipay, WeChat Pay, UnionPay). A ``Refusal`` carries only its code, never the text.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from enum import StrEnum

from stdnum import ean, luhn

from terminal.errors import MESSAGES, Code, Rejected


class Kind(StrEnum):
    MEMBER = "member"
    COUPON = "coupon"
    PAYMENT = "payment"
    CLAIM = "claim"
    VOUCHER = "voucher"
    UNKNOWN = "unknown"


LETTERS: dict[str, Kind] = {"M": Kind.MEMBER, "C": Kind.COUPON, "P": Kind.PAYMENT, "J": Kind.CLAIM, "V": Kind.VOUCHER}
PREFIX_LETTER: dict[Kind, str] = {kind: letter for letter, kind in LETTERS.items()}
VERSIONS: dict[Kind, frozenset[int]] = {kind: frozenset({1}) for kind in LETTERS.values()} | {
    Kind.MEMBER: frozenset({1, 2})
}  # 1: the old unsigned member code, recognised only to be refused by name

MAX_TEXT = 4096  # more than any QR code holds in byte mode (2,953): longer is not a scan
MAX_BODY = 2048
BASE64URL = frozenset(string.ascii_letters + string.digits + "-_")
BASE45 = frozenset(string.digits + string.ascii_uppercase + " $%*+-./:")
BODY_CHARS = BASE64URL | BASE45

_PREFIX = re.compile(r"TP([A-Z])([0-9]{1,3}):(.*)", re.DOTALL)
_URL = re.compile(r"https?://[^#\s]+#(.*)", re.DOTALL)
# 13-19 digits, single spaces or dashes allowed between them, not part of a longer digit run.
_PAN = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")
_SEPARATORS = re.compile(r"[ -]")

# Other wallets' payment codes, shown by a customer (or a merchant) and never ours to read.
_WALLET_URLS = ("https://qr.alipay.com/", "alipays://", "wxp://", "weixin://wxpay", "https://wx.tenpay.com/")
_EMV_CPM_B64 = "hQVDUFYw"  # base64 of the EMV consumer-presented QR's first bytes: 85 05 "CPV0"
_EMV_MPM = "000201"  # EMV merchant-presented QR: payload format indicator, ID 00, length 02, value 01


@dataclass(frozen=True, slots=True)
class Scan:
    """A classified read. ``body`` is kept out of ``repr`` (it may be a one-time payment code)."""

    kind: Kind
    version: int
    body: str = field(repr=False)
    in_url: bool = False

    @property
    def prefix(self) -> str:
        return f"TP{PREFIX_LETTER[self.kind]}{self.version}:" if self.kind in PREFIX_LETTER else ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A read that is refused; it holds the reason only, never the text."""

    code: Code

    @property
    def message(self) -> str:
        return MESSAGES.get(self.code, self.code.value)

    def rejected(self) -> Rejected:
        return Rejected(self.code)


SCANNER_ENDS = "\r\n\0"  # what a keyboard-wedge scanner or a reader adds around a code; never spaces (base45)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes (python-stdnum)."""
    return digits.isdigit() and luhn.is_valid(digits)


def ean13_ok(digits: str) -> bool:
    """The EAN-13 / JAN check digit (python-stdnum)."""
    return len(digits) == 13 and digits.isdigit() and ean.is_valid(digits)


def is_card_number(digits: str) -> bool:
    """13-19 digits that pass Luhn and are not an EAN-13 / JAN barcode (see ``looks_like_card_number``):
    the one test for a payment card number, in scanning and in the logs alike."""
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and not ean13_ok(digits)


def looks_like_card_number(text: str) -> bool:
    """Whether ``text`` holds 13-19 Luhn-valid digits (spaces or dashes between them allowed).

    A run of exactly 13 digits that is also a valid EAN-13 / JAN barcode is taken for a product or
    legacy coupon barcode: 13-digit card numbers (old Visa) are no longer issued, while about one
    barcode in ten passes Luhn by chance and would otherwise be refused."""
    for match in _PAN.finditer(text):
        digits = _SEPARATORS.sub("", match.group())
        if is_card_number(digits):
            return True
    return False


def looks_like_wallet_code(text: str) -> bool:
    """EMV QR (consumer- or merchant-presented), Alipay, WeChat Pay or UnionPay payment codes."""
    if text.startswith(_WALLET_URLS) or text.startswith(_EMV_CPM_B64):
        return True
    if text.startswith(_EMV_MPM) and len(text) >= 20:
        return True
    digits = _SEPARATORS.sub("", text)
    if not digits.isdigit() or not 16 <= len(digits) <= 24:
        return False
    head = int(digits[:2])
    # WeChat Pay: 18 digits from 10-15; Alipay: 16-24 digits from 25-30; UnionPay QR: 19 digits from 62.
    return (len(digits) == 18 and 10 <= head <= 15) or 25 <= head <= 30 or (len(digits) == 19 and head == 62)


def _refusal(text: str) -> Refusal | None:
    if len(text) > MAX_TEXT:
        return Refusal(Code.MALFORMED_CODE)
    if looks_like_card_number(text):  # first: a UnionPay card and a UnionPay QR code look alike
        return Refusal(Code.PAYMENT_CARD_REFUSED)
    if looks_like_wallet_code(text):
        return Refusal(Code.FOREIGN_PAYMENT_CODE)
    return None


def _envelope(text: str, in_url: bool) -> Scan | Refusal | None:
    match = _PREFIX.fullmatch(text)
    if match is None:
        return None
    letter, version, body = match.group(1), int(match.group(2)), match.group(3)
    kind = LETTERS.get(letter)
    if kind is None or version not in VERSIONS[kind]:  # a kind or version from a newer system
        return Refusal(Code.UNSUPPORTED_CODE_VERSION)
    if not body or len(body) > MAX_BODY or not set(body) <= BODY_CHARS:
        return Refusal(Code.MALFORMED_CODE)
    return Scan(kind, version, body, in_url)


def classify(text: str) -> Scan | Refusal:
    """What ``text`` is; payment card numbers and other wallets' codes come back as a ``Refusal``."""
    text = text.strip(SCANNER_ENDS)
    refused = _refusal(text)
    if refused is not None:
        return refused
    found = _envelope(text, in_url=False)
    if found is None and (url := _URL.fullmatch(text)) is not None:
        found = _envelope(url.group(1), in_url=True)
    return found if found is not None else Scan(Kind.UNKNOWN, 0, text)


def expect(text: str, *kinds: Kind) -> Scan:
    """The scan, when it is one of ``kinds``; otherwise ``Rejected`` with the refusal's code or UNKNOWN_CODE."""
    found = classify(text)
    if isinstance(found, Refusal):
        raise found.rejected()
    if found.kind not in kinds:
        wanted = " or ".join(k.value for k in kinds)
        what = "not one of ours" if found.kind is Kind.UNKNOWN else f"a {found.kind.value} code"
        raise Rejected(Code.UNKNOWN_CODE, f"This code is {what}; expected a {wanted} code.")
    return found


def envelope(kind: Kind, body: str, version: int = 1) -> str:
    """The text of one of our codes (the inverse of ``classify``); ValueError for a bad body."""
    if kind not in PREFIX_LETTER:
        raise ValueError(f"{kind.value} codes have no prefix")
    text = f"TP{PREFIX_LETTER[kind]}{version}:{body}"
    found = _envelope(text, in_url=False)
    if not isinstance(found, Scan):
        raise ValueError(f"not a valid {kind.value} code body (base64url or base45, 1-{MAX_BODY} characters)")
    return text


def in_url(base_url: str, code: str) -> str:
    """``code`` carried as the fragment of ``base_url``: a phone camera opens the page, the till reads the code.

    The fragment never reaches a web server's logs; the page's script reads it.
    """
    if not base_url.startswith(("https://", "http://")) or "#" in base_url:
        raise ValueError("base_url must be an http(s) URL without a fragment")
    return f"{base_url}#{code}"
