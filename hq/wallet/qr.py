"""QR codes for the wallet's pages, drawn as inline SVG (no image request, nothing from elsewhere).

The ``qrcode`` library encodes; as the till's own codes do (``terminal/qrcodes.py``, which head office
may not import), a signed member code's body is written in base45 so the whole text is in the QR
alphanumeric mode (the same bytes, the same signature: tills read both), the error correction is the
strongest that keeps a code at version 5 or below, and the quiet zone is four modules.
"""

from __future__ import annotations

import qrcode
import qrcode.constants

from terminal import b64url, base45

MAX_VERSION = 5
QUIET_ZONE = 4
_LEVELS = (
    qrcode.constants.ERROR_CORRECT_H,
    qrcode.constants.ERROR_CORRECT_Q,
    qrcode.constants.ERROR_CORRECT_M,
    qrcode.constants.ERROR_CORRECT_L,
)
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def compact(text: str) -> str:
    """A ``TPM2:`` text with a base64url body as the same bytes in base45; anything else as it is."""
    if not text.startswith("TPM2:") or not set(text[5:]) <= _BASE64URL:
        return text
    try:
        return "TPM2:" + base45.encode(b64url.decode(text[5:]))
    except ValueError:
        return text


def _matrix(text: str) -> list[list[bool]]:
    for level in _LEVELS:
        code = qrcode.QRCode(error_correction=level, border=QUIET_ZONE)
        code.add_data(text)
        code.make(fit=True)
        if int(code.version) <= MAX_VERSION or level == _LEVELS[-1]:
            return [[bool(m) for m in row] for row in code.get_matrix()]
    raise AssertionError("unreachable")


def svg(text: str, label: str) -> str:
    """An accessible inline SVG of ``text`` (``role="img"`` with ``label``), one path of module runs."""
    rows = _matrix(compact(text))
    size = len(rows)
    runs = []
    for y, row in enumerate(rows):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    safe = label.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" role="img" aria-label="{safe}" '
        f'shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )


__all__ = ["compact", "svg"]
