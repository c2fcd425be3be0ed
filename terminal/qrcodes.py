"""The QR codes the system makes: the receipt's claim/join code, coupon codes, member codes.

    claim_code(token, base_url=None) -> "TPJ1:..." or "https://.../join#TPJ1:..."
    coupon_code(body), member_code(body) -> "TPC1:...", "TPM2:..."
    png(text) -> bytes        for a receipt printer or a web page
    svg(text) -> str          for print layouts and the cashier panel
    terminal_text(text) -> str  for a terminal (two module rows per line, Unicode half blocks)

The ``qrcode`` library does the encoding (mode selection, Reed-Solomon, masking); this module
chooses the settings and draws the modules, so that our codes stay easy for a camera to read:

* ``qr_text``: a signed member code (``TPM2:``) or payment code (``TPP1:``) is drawn with its body in
  base45 (the same bytes, so the same signature; every reader accepts both forms): the whole text is
  then in QR alphanumeric mode, about a fifth smaller than base64url in byte mode;
* ``level="auto"`` (the default): the strongest error correction that keeps the code at version 5
  (37 modules) or below (``MAX_VERSION``); a text too long for version 5 even at level L gets L,
  the smallest code it can have. Member, payment and device codes are version 5 at L; claim codes
  and short coupons get M or Q;
* the quiet zone is the four modules the standard asks for.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import qrcode
import qrcode.constants
from qrcode.image.pil import PilImage

from terminal import b64url, base45
from terminal.scan import Kind, envelope, in_url

ErrorLevel = Literal["L", "M", "Q", "H"]
Level = ErrorLevel | Literal["auto"]
MAX_VERSION = 5  # 37 modules: read at 1080p from 4.5 px a module (docs/scanning.md, "Sizes")
COMPACTED_PREFIXES = ("TPM2:", "TPP1:")  # bodies of fixed meaning whose readers take base64url or base45
_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
QUIET_ZONE = 4


@dataclass(frozen=True, slots=True)
class Symbol:
    """An encoded QR code: its version (size class) and its modules, quiet zone included (True = dark)."""

    text: str
    version: int
    modules: tuple[tuple[bool, ...], ...]

    @property
    def size(self) -> int:
        return len(self.modules)


def encode(text: str, level: Level = "auto", border: int = QUIET_ZONE) -> Symbol:
    """The smallest QR code holding ``text`` at error-correction ``level`` ("auto": ``choose_level``)."""
    code = _code(text, level, border)
    rows = tuple(tuple(bool(m) for m in row) for row in code.get_matrix())
    return Symbol(text, int(code.version), rows)


def version_of(text: str, level: ErrorLevel) -> int:
    code = qrcode.QRCode(error_correction=_LEVELS[level])
    code.add_data(text)
    code.make(fit=True)
    return int(code.version)


def choose_level(text: str) -> ErrorLevel:
    """The strongest error correction keeping ``text`` at version ``MAX_VERSION`` or below; else L."""
    for level in ("H", "Q", "M"):
        if version_of(text, level) <= MAX_VERSION:
            return level
    return "L"


def qr_text(text: str) -> str:
    """The text to put in the QR code: a member or payment code with a base64url body gets the same
    bytes in base45 (alphanumeric mode); anything else is left as it is."""
    prefix = text[:5]
    if prefix not in COMPACTED_PREFIXES or not set(text[5:]) <= _BASE64URL:
        return text
    try:
        raw = b64url.decode(text[5:])
    except ValueError:
        return text
    return prefix + base45.encode(raw)


_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _code(text: str, level: Level, border: int, box_size: int = 10) -> qrcode.QRCode:  # type: ignore[type-arg]
    chosen: ErrorLevel = choose_level(text) if level == "auto" else level
    code = qrcode.QRCode(error_correction=_LEVELS[chosen], border=border, box_size=box_size)
    code.add_data(text)
    code.make(fit=True)
    return code


# -- our codes ------------------------------------------------------------------------------------


def claim_code(token: str, base_url: str | None = None) -> str:
    """The receipt's code: claim this sale's points, or join. With ``base_url`` a phone camera opens that page."""
    code = envelope(Kind.CLAIM, token)
    return in_url(base_url, code) if base_url else code


def coupon_code(body: str) -> str:
    return envelope(Kind.COUPON, body)


def member_code(body: str) -> str:
    """A signed member code's text (``TPM2:``; ``terminal.membercodes`` makes and checks the body)."""
    return envelope(Kind.MEMBER, body, 2)


# -- drawings -------------------------------------------------------------------------------------


def png(text: str, scale: int = 8, level: Level = "auto", border: int = QUIET_ZONE, compact: bool = True) -> bytes:
    """A black-on-white PNG, ``scale`` pixels per module (8 suits a 203 dpi receipt printer: 1 mm modules)."""
    if scale < 1:
        raise ValueError("scale must be at least 1 pixel per module")
    code = _code(qr_text(text) if compact else text, level, border, scale)
    out = io.BytesIO()
    code.make_image(image_factory=PilImage, fill_color="black", back_color="white").save(out, kind="PNG")
    return out.getvalue()


def svg(text: str, scale: float = 4.0, level: Level = "auto", border: int = QUIET_ZONE, compact: bool = True) -> str:
    """A standalone SVG, one path of horizontal runs; ``scale`` is the module size in CSS pixels."""
    symbol = encode(qr_text(text) if compact else text, level, border)
    n = symbol.size
    runs = []
    for y, row in enumerate(symbol.modules):
        x = 0
        while x < n:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < n and row[x]:
                x += 1
            runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    side = f"{n * scale:g}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" viewBox="0 0 {n} {n}" '
        f'shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>\n'
    )


_HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584", (True, True): "\u2588"}


def terminal_text(
    text: str, level: Level = "L", border: int = 2, dark_background: bool = True, compact: bool = True
) -> str:
    """The code as lines of half blocks, two module rows per line.

    On a dark terminal the *light* modules are drawn, so the code still reads dark-on-light.
    """
    symbol = encode(qr_text(text) if compact else text, level, border)
    rows = [tuple(m != dark_background for m in row) for row in symbol.modules]
    if len(rows) % 2:
        rows.append(tuple(dark_background for _ in rows[0]))  # one more row of quiet zone
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        lines.append("".join(_HALF_BLOCKS[(a, b)] for a, b in zip(top, bottom, strict=True)))
    return "\n".join(lines) + "\n"
