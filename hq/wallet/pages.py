"""The wallet's HTML: Jinja2 templates and static files shipped in this package (``templates/``,
``static/``), rendered with autoescaping; nothing is loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from hq.wallet import i18n

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(minor: int) -> str:
    """Minor units as an amount with two decimals (``1250`` -> ``12.50``; negative balances keep the sign)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}"


_ENV.filters["money"] = money


def render(name: str, lang: str, **context: Any) -> str:
    """``templates/<name>.html`` in ``lang`` (``t``: its words; ``lang``, ``languages``: the switch)."""
    return _ENV.get_template(f"{name}.html").render(t=i18n.words(lang), lang=lang, languages=i18n.NAMES, **context)


def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type (``name`` in ``static/`` or ``static/vendor/``); None for a name
    that is not one of them."""
    folder, _, base = name.rpartition("/")
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or folder not in ("", "vendor") or base.startswith(".") or not path.is_file():
        return None
    return path.read_bytes(), kind


__all__ = ["money", "render", "static_file"]
