"""The wallet's HTML: Jinja2 templates and static files shipped in this package (``templates/``,
``static/``), rendered with autoescaping; nothing is loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hq import web
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
_ENV = web.environment(HERE / "templates")
money = web.money


def render(name: str, lang: str, **context: Any) -> str:
    """``templates/<name>.html`` in ``lang`` (``t``: its words; ``lang``, ``languages``: the switch)."""
    return _ENV.get_template(f"{name}.html").render(t=i18n.words(lang), lang=lang, languages=i18n.NAMES, **context)


def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type (``name`` in ``static/`` or ``static/vendor/``); None for a name
    that is not one of them."""
    return web.static_file(STATIC, name, STATIC_TYPES, ("", "vendor"))


__all__ = ["money", "render", "static_file"]
