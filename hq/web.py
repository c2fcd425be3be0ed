"""What head office's web pages share (the wallet, the back office): a Jinja2 environment over a package's own
templates, autoescaped, with the ``money`` filter; its static files served by name, from its own folders
only (nothing is loaded from elsewhere); the cells of the CSV files it hands out, never a formula; and the client
address their per-address limits count."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2


def money(minor: int | None) -> str:
    """Minor units as an amount with two decimals (``1250`` -> ``12.50``; the sign kept; None -> ``-``)."""
    if minor is None:
        return "-"
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}"


def address_bucket(host: str | None) -> str:
    """The client address a per-address limit counts (pure): an IPv6 address by its /64 network (one subscriber's:
    a host there picks any of its 2^64 addresses), an IPv4-mapped one as its IPv4 address, an IPv4 address as it
    is; anything else (no client, a name) as given."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by a spreadsheet (CSV injection)."""


def safe_cell(value: Any) -> str | int:
    """A CSV cell a spreadsheet shows as text: text starting with = + - @ (or a tab or carriage return) gets a
    leading apostrophe; integers head office counted stay numbers (pure)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def environment(templates: Path) -> jinja2.Environment:
    """Templates of ``templates``, every value escaped unless marked, a missing one an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    return env


def static_file(
    static: Path, name: str, types: Mapping[str, str], folders: tuple[str, ...] = ("",)
) -> tuple[bytes, str] | None:
    """A static file's bytes and media type: ``name`` in ``static`` or one of its ``folders``, of a known
    type, not hidden; None for any other name."""
    folder, _, base = name.rpartition("/")
    path = static / name
    kind = types.get(path.suffix)
    if kind is None or folder not in folders or base.startswith(".") or not path.is_file():
        return None
    return path.read_bytes(), kind


__all__ = ["FORMULA_STARTS", "environment", "money", "safe_cell", "static_file"]
