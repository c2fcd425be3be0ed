"""The back office's HTML: Jinja2 templates and static files shipped in this package (``templates/``,
``static/``: the style sheet, the page script and htmx, vendored with its licence), rendered with
autoescaping; nothing is loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from hq.backoffice import i18n
from hq.backoffice.roles import Action, Role, may

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(minor: int | None) -> str:
    """Minor units as an amount with two decimals (``1250`` -> ``12.50``)."""
    if minor is None:
        return "-"
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}"


_ENV.filters["money"] = money


def render(name: str, lang: str, role: Role | None, **context: Any) -> str:
    """``templates/<name>.html`` in ``lang``; ``can(action)`` says what ``role`` may do (the navigation)."""

    def can(action: str) -> bool:
        return role is not None and may(role, Action(action))

    return _ENV.get_template(f"{name}.html").render(
        t=i18n.words(lang), lang=lang, languages=i18n.NAMES, can=can, **context
    )


def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type; None for a name that is not one of them."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path.read_bytes(), kind


__all__ = ["money", "render", "static_file"]
