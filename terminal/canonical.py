"""The one canonical JSON encoding of everything that is signed or compared byte for byte. Pure.

Keys sorted, no whitespace, UTF-8 (not ``\\u`` escapes), and only what JSON can say exactly:
NaN, Infinity and lone surrogates are refused (``ValueError``), so two parties that sign and
verify the same document always hash the same bytes. Head office's signed keys and revocations,
device certificates and stored journal payloads all go through ``canonical_json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

MAX_JSON_INT = 2**63 - 1
"""No number beyond a signed 64-bit integer is read from JSON (the databases hold nothing larger)."""
MAX_JSON_DEPTH = 64
"""No JSON nested deeper is read: nothing the APIs take nests past a dozen levels (a segment's conditions, the
deepest, about 30), and a body of a million brackets would exhaust the parser's stack (a 500, not a refusal)."""


def canonical_text(value: Any) -> str:
    """``value`` as canonical JSON text; ``ValueError`` for NaN, Infinity or a lone surrogate."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text holds a lone surrogate, which has no UTF-8 encoding") from exc
    return text


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (what is signed and verified)."""
    return canonical_text(value).encode("utf-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"the number {text[:24]}... does not fit 64 bits")
    return value


def _bounded_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_JSON_INT:
        raise ValueError(f"the number {text[:24]} is out of range")
    return value


def _whole_text(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    elif isinstance(value, dict):
        for key, item in value.items():
            _whole_text(key)
            _whole_text(item)
    elif isinstance(value, list):
        for item in value:
            _whole_text(item)


def _depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0), without recursion; stops counting past ``MAX_JSON_DEPTH``."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def strict_loads(data: bytes) -> Any:
    """JSON as the APIs accept it: UTF-8, no NaN or Infinity, no number beyond 64 bits, no lone
    surrogate in any string, nested at most ``MAX_JSON_DEPTH`` deep. ``ValueError`` says what is wrong."""
    text = data.decode("utf-8")
    too_deep = ValueError(f"it nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_bounded_float)
    except RecursionError:
        raise too_deep from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    if "\\u" in text:  # a lone surrogate can only arrive escaped
        try:
            _whole_text(value)
        except UnicodeEncodeError as exc:
            raise ValueError("a string holds a lone surrogate (not text)") from exc
    return value


def doc_digest(value: Any) -> str:
    """A rule or coupon document's version by content: the first 16 hex digits of the SHA-256 of its
    canonical JSON. A sale names the versions it was priced with; head office keeps every version it
    issued, so it prices the sale again with exactly those."""
    return text_digest(canonical_text(value))


def text_digest(text: str) -> str:
    """``doc_digest`` of a document already in canonical JSON text (``canonical_text``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def base_digest(rule_id: str, points: int, per_minor: int) -> str:
    """The base earning rule's version by content (``doc_digest`` of its three fields)."""
    return doc_digest({"per_minor": per_minor, "points": points, "rule_id": rule_id})
