"""The back office's HTML: Jinja2 templates and static files shipped in this package (``templates/``,
``static/``: the style sheet, the page script and htmx, vendored with its licence), rendered with
autoescaping; nothing is loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hq import web
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
_ENV = web.environment(HERE / "templates")
money = web.money


def render(name: str, lang: str, role: Role | None, **context: Any) -> str:
    """``templates/<name>.html`` in ``lang``; ``can(action)`` says what ``role`` may do (the navigation)."""

    def can(action: str) -> bool:
        return role is not None and may(role, Action(action))

    return _ENV.get_template(f"{name}.html").render(
        t=i18n.words(lang), lang=lang, languages=i18n.NAMES, can=can, **context
    )


def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type; None for a name that is not one of them."""
    return web.static_file(STATIC, name, STATIC_TYPES)


__all__ = ["money", "render", "static_file"]
