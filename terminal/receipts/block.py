"""The loyalty block printed before a receipt's cut, in the receipt's own code page and width. Pure.

The block sets only what it changes (alignment, bold) and puts them back as a POS expects after a
line (left, not bold); it never sends ``ESC @``, which would reset the POS's own settings. Its text is text only:
a control character in it (a member's name is whatever they typed) prints as ``?``, never as a command. A QR code is
sent with the printer's QR commands (``GS ( k``: model 2, module size, error level M, store, print) or,
for a printer without them, as a raster image (``GS v 0``) drawn by ``qrcode``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import qrcode

ESC, GS = b"\x1b", b"\x1d"
LEFT, CENTER = ESC + b"a\x00", ESC + b"a\x01"
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "member": "Member",
        "earned": "Points earned",
        "balance": "Points balance",
        "offer": "Next offer",
        "scan": "Scan to collect your points",
    },
    "ja": {
        "member": "会員",
        "earned": "今回獲得ポイント",
        "balance": "ポイント残高",
        "offer": "次回のおすすめ",
        "scan": "QRコードを読み取ってポイントを受け取る",
    },
    "zh": {
        "member": "会员",
        "earned": "本次积分",
        "balance": "积分余额",
        "offer": "下次优惠",
        "scan": "扫码领取积分",
    },
}
"""The block's words in the receipt's language (the template's ``language``; English otherwise)."""


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What the block says; ``claim_url``: an anonymous sale's signed claim, printed as a QR code."""

    title: str = "Loyalty"
    member: str | None = None
    points_earned: int = 0
    balance: int | None = None
    tier: str | None = None
    """Tier progress, e.g. "Gold: 120 points to Platinum"."""
    offer: str | None = None
    claim_url: str | None = None
    language: str = "en"


def text_width(text: str) -> int:
    """Printed columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` printed columns."""
    out, used = [], 0
    for c in text:
        w = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        if used + w > width:
            break
        out.append(c)
        used += w
    return "".join(out)


def printable(text: str) -> str:
    """``text`` with each control character (ESC, GS, DLE, BEL, NUL, a newline ...) as ``?``: a line of the block
    carries words others wrote (a member's name from the join page, a campaign's offer) into the printer's own
    byte stream, where they would be its commands (ESC p opens the cash drawer, GS V cuts)."""
    return "".join("?" if unicodedata.category(c) == "Cc" else c for c in text)


def _line(text: str, width: int, encoding: str) -> bytes:
    return fit(printable(text), width).encode(encoding, errors="replace") + b"\n"


def block_lines(info: BlockInfo) -> list[str]:
    words = LABELS.get(info.language, LABELS["en"])
    lines = [info.title]
    if info.member:
        lines.append(f"{words['member']}: {info.member}")
    if info.member or info.points_earned:
        lines.append(f"{words['earned']}: {info.points_earned}")
    if info.balance is not None:
        lines.append(f"{words['balance']}: {info.balance}")
    if info.tier:
        lines.append(info.tier)
    if info.offer:
        lines.append(f"{words['offer']}: {info.offer}")
    if info.claim_url:
        lines.append(words["scan"])
    return lines


def render(info: BlockInfo, width: int, encoding: str, native_qr: bool = True) -> bytes:
    """The block's bytes: a rule, its lines centred, the QR code, and the alignment put back."""
    out = bytearray(LEFT + _line("-" * width, width, encoding) + CENTER)
    for i, text in enumerate(block_lines(info)):
        if i == 0:
            out += BOLD_ON + _line(text, width, encoding) + BOLD_OFF
        else:
            out += _line(text, width, encoding)
    if info.claim_url:
        out += qr_native(info.claim_url) if native_qr else qr_raster(info.claim_url)
    out += LEFT + _line("-" * width, width, encoding)
    return bytes(out)


def qr_native(data: str, module: int = 6) -> bytes:
    """``GS ( k``: select model 2, module size, error correction M, store ``data``, print."""
    payload = data.encode("utf-8")

    def fn(body: bytes) -> bytes:
        return GS + b"(k" + len(body).to_bytes(2, "little") + body

    return fn(b"1A2\x00") + fn(b"1C" + bytes([module])) + fn(b"1E1") + fn(b"1P0" + payload) + fn(b"1Q0") + b"\n"


def qr_matrix(data: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(data)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def qr_raster(data: str, scale: int = 6) -> bytes:
    """``GS v 0``: the QR code as a raster image, ``scale`` dots a module, 1 bit a dot, MSB first."""
    matrix = qr_matrix(data)
    dots = len(matrix) * scale
    row_bytes = (dots + 7) // 8
    image = bytearray()
    for row in matrix:
        bits = bytearray(row_bytes)
        for x, dark in enumerate(row):
            if dark:
                for d in range(x * scale, x * scale + scale):
                    bits[d >> 3] |= 0x80 >> (d & 7)
        image += bytes(bits) * scale
    head = GS + b"v0\x00" + row_bytes.to_bytes(2, "little") + dots.to_bytes(2, "little")
    return head + bytes(image) + b"\n"
