"""Earning-rule and coupon documents as people edit them: typed forms, checked field by field, and what a
basket would earn and pay under them. Pure: no database, no I/O (docs/editors.md).

A form (the back office's editor) is a mapping of field names to the text typed. ``rule_document`` and
``coupon_document`` turn it into the JSON document the tills read, or raise ``DocumentInvalid`` naming
every field that is wrong with a stable ``Code``. Whatever passes is then read by the till's own parser
(``terminal.loyalty.parse_program``, ``terminal.coupons.parse_coupon``): a document head office stores from
an editor is one every till applies, never one a till would ignore. Fields a form does not manage (a
coupon's ``member_id``, ``pool``, the uses head office counted) are kept from the document being edited.

``quote`` prices a basket with the same ``terminal.pricing.price`` the tills run, over head office's
documents with one of them replaced by the one being edited, so the preview and a till that has pulled the
saved document agree to the point.

    HqError
     └── DocumentInvalid      errors: tuple[FieldError, ...]   (each: field, Code)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hq.errors import HqError
from terminal import coupons as cp
from terminal import loyalty as ly
from terminal import pricing
from terminal.model import Basket, EarnRule, Line


class Code(StrEnum):
    """Why a field of an editor's form is refused (shown beside the field as ``data-code``)."""

    BAD_ID = "bad_id"
    """An id is 1-64 of letters, digits and ``. _ : -``."""
    EXISTS = "exists"
    """A new document may not take the id of a live one (edit that one instead)."""
    FIXED_ID = "fixed_id"
    """The tier ladder's document has the id ``tiers``, and only it."""
    BAD_CHOICE = "bad_choice"
    """Not one of the values offered (a kind, a mode, a target, a measure)."""
    REQUIRED = "required"
    NOT_WHOLE = "not_whole"
    """Not a whole number in the field's range."""
    BAD_PERCENT = "bad_percent"
    BAD_LIST = "bad_list"
    """A comma-separated list of 1-64 character names, at most 100."""
    BAD_WEEKDAYS = "bad_weekdays"
    BAD_HOURS = "bad_hours"
    BAD_DATE = "bad_date"
    ENDS_FIRST = "ends_first"
    """The end is not after the start."""
    TOO_LONG = "too_long"
    BAD_LEVELS = "bad_levels"
    TILL_REFUSES = "till_refuses"
    """The till's own parser does not accept the document."""
    BAD_BASKET = "bad_basket"
    UNKNOWN_MEMBER = "unknown_member"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    code: Code


class DocumentInvalid(HqError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.code.value}" for e in errors))
        self.errors = tuple(errors)

    def by_field(self) -> dict[str, str]:
        return {e.field: e.code.value for e in self.errors}


ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
NAME = re.compile(r"[^\s,][^,]{0,63}")
HOURS = re.compile(r"([0-2]?\d:[0-5]\d)\s*-\s*([0-2]?\d:[0-5]\d)")
_WHOLE = re.compile(r"[0-9]{1,12}")
"""A whole number typed in a list (a tier's threshold, a basket's quantity and price): ASCII digits, as many as
``int`` reads (``str.isdigit`` also takes ``²``, which ``int`` does not)."""
MAX_TEXT, MAX_DESCRIPTION, MAX_ITEMS, MAX_NUMBER = 200, 1000, 100, 10**9
MAX_BASKET_LINES = 50

RULE_KINDS = ("base", "tier", "campaign", "sku_bonus", "cap", "tiers")
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "base": ("points", "per_minor", "priority"),
    "tier": ("tier", "multiplier_pct"),
    "campaign": ("multiplier_pct", "skus", "categories", "priority", "mode"),
    "sku_bonus": ("points", "skus", "categories", "per_unit", "priority", "mode"),
    "cap": ("cap",),
    "tiers": ("levels", "measure", "window_days"),
}
"""The fields each kind of rule takes (besides its id, kind, text and conditions)."""
CONDITIONS = ("starts", "ends", "weekdays", "hours", "stores")
RULE_MANAGED = frozenset({"rule_id", "kind", "text", *CONDITIONS, *(f for fs in RULE_FIELDS.values() for f in fs)})
MODES, MEASURES = ("stack", "replace", "stop"), ("earned", "spend")

COUPON_KINDS = tuple(k.value for k in cp.CouponKind)
TARGETS = tuple(t.value for t in cp.Target)
COUPON_FIELDS: dict[str, tuple[str, ...]] = {
    "amount_off": ("value", "target", "skus", "categories"),
    "percent_off": ("value", "target", "skus", "categories"),
    "free_item": ("skus", "categories"),
    "buy_x_get_y": ("buy", "get", "skus", "categories"),
    "bonus_points": ("value",),
    "points_multiplier": ("value",),
}
COUPON_COMMON = ("min_spend", "required_skus", "tiers", "member_only", "exclusive", "limit_global", "limit_per_member")
COUPON_MANAGED = frozenset(
    {"coupon_id", "kind", "text", "description", "limits", "single_use", *CONDITIONS, *COUPON_COMMON}
    | {f for fs in COUPON_FIELDS.values() for f in fs}
)
CHECKBOXES = frozenset({"per_unit", "member_only", "exclusive"})


class _Reader:
    """Reads typed fields of a form, collecting every error instead of stopping at the first."""

    def __init__(self, form: Mapping[str, str]) -> None:
        self.form = form
        self.errors: list[FieldError] = []

    def text(self, name: str) -> str:
        return self.form.get(name, "").strip()

    def fail(self, name: str, code: Code) -> None:
        self.errors.append(FieldError(name, code))

    def whole(self, name: str, low: int = 0, required: bool = False) -> int | None:
        typed = self.text(name)
        if not typed:
            if required:
                self.fail(name, Code.REQUIRED)
            return None
        if not re.fullmatch(r"\d{1,10}", typed) or not low <= int(typed) <= MAX_NUMBER:
            self.fail(name, Code.NOT_WHOLE)
            return None
        return int(typed)

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        typed = self.text(name) or default
        if typed is None or typed not in allowed:
            self.fail(name, Code.REQUIRED if typed is None else Code.BAD_CHOICE)
            return None
        return typed

    def names(self, name: str) -> list[str] | None:
        parts = [p.strip() for p in self.text(name).split(",") if p.strip()]
        if len(parts) > MAX_ITEMS or not all(NAME.fullmatch(p) for p in parts):
            self.fail(name, Code.BAD_LIST)
            return None
        return sorted(set(parts)) or None

    def words(self, name: str, limit: int = MAX_TEXT) -> str | None:
        typed = " ".join(self.form.get(name, "").split())
        if len(typed) > limit:
            self.fail(name, Code.TOO_LONG)
            return None
        return typed or None

    def checked(self, name: str) -> bool:
        return self.text(name) in ("on", "true", "1", "yes")

    def ident(self, name: str) -> str:
        typed = self.form.get(name, "")
        if not ID.fullmatch(typed):
            self.fail(name, Code.BAD_ID)
        return typed

    def conditions(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        starts, ends = self._moment("starts"), self._moment("ends")
        if starts and ends and datetime.fromisoformat(ends) <= datetime.fromisoformat(starts):
            self.fail("ends", Code.ENDS_FIRST)
        found.update(starts=starts, ends=ends, weekdays=self._weekdays(), hours=self._hours())
        found["stores"] = self.names("stores")
        return found

    def _moment(self, name: str) -> str | None:
        typed = self.text(name)
        if not typed:
            return None
        try:
            return datetime.fromisoformat(typed).replace(tzinfo=None).isoformat(timespec="minutes")
        except ValueError:
            self.fail(name, Code.BAD_DATE)
            return None

    def _weekdays(self) -> list[int] | None:
        parts = [p.strip() for p in self.text("weekdays").split(",") if p.strip()]
        if not all(p in "0123456" and len(p) == 1 for p in parts):
            self.fail("weekdays", Code.BAD_WEEKDAYS)
            return None
        return sorted({int(p) for p in parts}) or None

    def _hours(self) -> list[str] | None:
        typed = self.text("hours")
        if not typed:
            return None
        found = HOURS.fullmatch(typed)
        if not found or any(not _time_of_day(t) for t in found.groups()):
            self.fail("hours", Code.BAD_HOURS)
            return None
        return [_padded(found.group(1)), _padded(found.group(2))]

    def raise_if_any(self) -> None:
        if self.errors:
            raise DocumentInvalid(self.errors)


def _time_of_day(text: str) -> bool:
    hours, minutes = (int(p) for p in text.split(":"))
    return hours < 24 and minutes < 60 or (hours == 24 and minutes == 0)


def _padded(text: str) -> str:
    hours, minutes = text.split(":")
    return f"{int(hours):02d}:{minutes}"


def _kept(held: Mapping[str, Any] | None, managed: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in (held or {}).items() if k not in managed}


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# -- rules -------------------------------------------------------------------------------------------------


def rule_document(form: Mapping[str, str], held: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The rule document a form describes (``held``: the document it edits), or ``DocumentInvalid``."""
    read = _Reader(form)
    rule_id = read.ident("rule_id")
    kind = read.choice("kind", RULE_KINDS)
    if (kind == "tiers") != (rule_id == "tiers") and kind is not None:
        read.fail("rule_id", Code.FIXED_ID)
    body: dict[str, Any] = {"rule_id": rule_id, "kind": kind, "text": read.words("text")}
    fields = RULE_FIELDS.get(kind or "", ())
    if kind == "tiers":
        body |= {"levels": _levels(read), "measure": read.choice("measure", MEASURES, "earned")}
        body["window_days"] = read.whole("window_days", low=1)
    else:
        body |= read.conditions()
        body |= _rule_numbers(read, kind, fields)
    read.raise_if_any()
    document = _kept(held, RULE_MANAGED) | _compact(body)
    _till_reads_rule(rule_id, document)
    return rule_id, document


def _rule_numbers(read: _Reader, kind: str | None, fields: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "points" in fields:
        found["points"] = read.whole("points", required=True)
    if "per_minor" in fields:
        found["per_minor"] = read.whole("per_minor", low=1)
    if "priority" in fields:
        found["priority"] = read.whole("priority")
    if "multiplier_pct" in fields:
        found["multiplier_pct"] = read.whole("multiplier_pct", low=100, required=True)
    if "cap" in fields:
        found["cap"] = read.whole("cap", required=True)
    if "tier" in fields:
        found["tier"] = read.text("tier") or None
        if found["tier"] is None or not NAME.fullmatch(found["tier"]):
            read.fail("tier", Code.REQUIRED if found["tier"] is None else Code.BAD_LIST)
    if "mode" in fields:
        found["mode"] = read.choice("mode", MODES, "stack")
    if "skus" in fields:
        found |= {"skus": read.names("skus"), "categories": read.names("categories")}
    if "per_unit" in fields:
        found["per_unit"] = read.checked("per_unit")
    return found


def _levels(read: _Reader) -> list[dict[str, Any]] | None:
    """``basic:0, silver:500, gold:2000``: each tier and the threshold that reaches it."""
    levels: list[dict[str, Any]] = []
    for part in (p.strip() for p in read.text("levels").split(",") if p.strip()):
        tier, _, threshold = part.rpartition(":")
        if not NAME.fullmatch(tier.strip()) or not _WHOLE.fullmatch(threshold.strip()) or len(threshold.strip()) > 10:
            read.fail("levels", Code.BAD_LEVELS)
            return None
        levels.append({"tier": tier.strip(), "threshold": int(threshold)})
    tiers = [level["tier"] for level in levels]
    if not levels or len(set(tiers)) != len(tiers) or len(levels) > 20:
        read.fail("levels", Code.BAD_LEVELS)
        return None
    return sorted(levels, key=lambda level: int(level["threshold"]))


def _till_reads_rule(rule_id: str, document: Mapping[str, Any]) -> None:
    try:
        ly.parse_program({rule_id: document})
    except (ly.DocumentError, KeyError, TypeError, ValueError) as exc:
        raise DocumentInvalid([FieldError(_field_of(str(exc), "kind"), Code.TILL_REFUSES)]) from exc


def check_rule(rule_id: str, document: Mapping[str, Any]) -> None:
    """A whole rule document (``tillpoint hq put-rule``'s file): the tills must read it, as an editor's is
    read once its form passed (``till_refuses`` naming the field the parser names)."""
    _till_reads_rule(rule_id, document)


def check_coupon(coupon_id: str, document: Mapping[str, Any]) -> None:
    """A whole coupon document (``tillpoint hq put-coupon``'s file), read by the tills' parser."""
    _till_reads_coupon(coupon_id, document)


def _till_reads_coupon(coupon_id: str, document: Mapping[str, Any]) -> None:
    try:
        cp.parse_coupon(coupon_id, document)
    except (ly.DocumentError, KeyError, TypeError, ValueError) as exc:
        raise DocumentInvalid([FieldError(_field_of(str(exc), "kind"), Code.TILL_REFUSES)]) from exc


def _field_of(message: str, fallback: str) -> str:
    """The form field a till parser's message names (``points: expected ...``, after any ``coupon C-1: ``
    it begins with), else ``fallback``."""
    head = re.sub(r"^(coupon|rule) [^:]*: ", "", message).split(":", 1)[0].strip()
    return head if re.fullmatch(r"[a-z_]+", head) else fallback


def rule_form(rule_id: str, document: Mapping[str, Any]) -> dict[str, str]:
    """A stored rule document as the editor's form shows it."""
    shown = _form_of(document)
    shown["rule_id"] = rule_id
    levels = document.get("levels")
    if isinstance(levels, list):
        shown["levels"] = ", ".join(
            f"{level.get('tier')}:{level.get('threshold')}" for level in levels if isinstance(level, dict)
        )
    return shown


# -- coupons -----------------------------------------------------------------------------------------------


def coupon_document(form: Mapping[str, str], held: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The coupon document a form describes (``held``: the document it edits), or ``DocumentInvalid``."""
    read = _Reader(form)
    coupon_id = read.ident("coupon_id")
    kind = read.choice("kind", COUPON_KINDS)
    fields = COUPON_FIELDS.get(kind or "", ())
    body: dict[str, Any] = {"coupon_id": coupon_id, "kind": kind, "text": read.words("text")}
    body["description"] = read.words("description", MAX_DESCRIPTION)
    body |= read.conditions()
    if "value" in fields:
        body["value"] = read.whole("value", low=1, required=True)
        if kind == "percent_off" and body["value"] is not None and body["value"] > 100:
            read.fail("value", Code.BAD_PERCENT)
    if "target" in fields:
        body["target"] = read.choice("target", TARGETS, "basket")
    if "buy" in fields:
        body |= {"buy": read.whole("buy", low=1, required=True), "get": read.whole("get", low=1, required=True)}
    if "skus" in fields:
        body |= {"skus": read.names("skus"), "categories": read.names("categories")}
    body |= _coupon_terms(read)
    read.raise_if_any()
    document = _kept(held, COUPON_MANAGED) | _compact(body)
    _till_reads_coupon(coupon_id, document)
    return coupon_id, document


def _coupon_terms(read: _Reader) -> dict[str, Any]:
    limits = _compact({"global": read.whole("limit_global"), "per_member": read.whole("limit_per_member")})
    return {
        "min_spend": read.whole("min_spend"),
        "required_skus": read.names("required_skus"),
        "tiers": read.names("tiers"),
        "member_only": read.checked("member_only") or None,
        "exclusive": read.checked("exclusive") or None,
        "limits": limits or None,
    }


def coupon_form(coupon_id: str, document: Mapping[str, Any]) -> dict[str, str]:
    """A stored coupon document as the editor's form shows it."""
    shown = _form_of(document)
    shown["coupon_id"] = coupon_id
    limits = document.get("limits")
    if isinstance(limits, dict):
        shown |= {f"limit_{k}": str(v) for k, v in limits.items() if k in ("global", "per_member")}
    if document.get("single_use"):
        shown["limit_global"] = "1"
    return shown


def _form_of(document: Mapping[str, Any]) -> dict[str, str]:
    shown: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, bool):
            shown[name] = "on" if value else ""
        elif isinstance(value, list) and name == "hours" and len(value) == 2:
            shown[name] = f"{value[0]}-{value[1]}"
        elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            shown[name] = ", ".join(str(v) for v in value)
        elif isinstance(value, str | int):
            shown[name] = str(value)
    return shown


# -- the preview -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What a basket earns and pays: the quote's figures and the lines that explain them."""

    total: int
    discount: int
    payable: int
    points_earned: int
    lines: tuple[tuple[str, str, int, int], ...]
    """(source, text, points, amount) of each line the quote explains."""
    refused: tuple[tuple[str, str], ...]


def basket_of(text: str) -> Basket:
    """A basket typed one line per item: ``SKU QUANTITY UNIT_PRICE [CATEGORY]`` (the price in minor units)."""
    lines = []
    rows = [row.split() for row in text.splitlines() if row.strip()]
    if not rows or len(rows) > MAX_BASKET_LINES:
        raise DocumentInvalid([FieldError("basket", Code.BAD_BASKET)])
    for row in rows:
        if not 3 <= len(row) <= 4 or not _WHOLE.fullmatch(row[1]) or not _WHOLE.fullmatch(row[2]) or len(row[0]) > 64:
            raise DocumentInvalid([FieldError("basket", Code.BAD_BASKET)])
        quantity, price = int(row[1]), int(row[2])
        if not 1 <= quantity <= 999 or price > 10**8 or (len(row) == 4 and len(row[3]) > 64):
            raise DocumentInvalid([FieldError("basket", Code.BAD_BASKET)])
        lines.append(Line(row[0], quantity, price, row[3] if len(row) == 4 else ""))
    return Basket(tuple(lines))


def program(docs: Mapping[str, Mapping[str, Any]], base: EarnRule) -> ly.Program:
    """The program a till builds from these documents: one that does not parse is left out, as the till
    leaves it out (``terminal.service.Service.program``)."""
    kept = {}
    for rule_id, doc in docs.items():
        try:
            ly.parse_program({rule_id: doc})
        except (ly.DocumentError, KeyError, TypeError, ValueError):
            continue
        kept[rule_id] = doc
    return ly.parse_program(kept, base)


def quote(
    docs: Mapping[str, Mapping[str, Any]],
    base: EarnRule,
    basket: Basket,
    ctx: ly.SaleContext,
    member: pricing.Member | None,
    coupons: Mapping[str, Mapping[str, Any]] = {},
) -> Figures:
    """The basket priced as a till prices it under ``docs``, offered ``coupons`` (their use limits and
    pools are not counted: the preview says what the documents do, not how many uses are left)."""
    offers = [cp.offer_again(cp.parse_coupon(cid, doc)) for cid, doc in sorted(coupons.items())]
    made = pricing.price(program(docs, base), basket, ctx, member, offers)
    lines = tuple((x.source, x.text, x.points, x.amount) for x in made.explain)
    return Figures(made.total, made.discount, made.payable, made.points_earned, lines, made.refused)


__all__ = [
    "Code",
    "DocumentInvalid",
    "FieldError",
    "Figures",
    "basket_of",
    "check_coupon",
    "check_rule",
    "coupon_document",
    "coupon_form",
    "program",
    "quote",
    "rule_document",
    "rule_form",
]
