"""Segments as data (docs/segments.md): a typed, declarative definition of a set of members, validated,
compiled to parameterised SQL for SQLite and PostgreSQL, previewed, listed, and stored.

The pure part: the definition (pydantic models, one per condition kind, a discriminated union on
``kind``), its bounds, ``parse_definition`` (every refusal a ``SegmentInvalid`` with a stable
``sync.protocol.ErrorCode``) and ``compile_segment`` (SQL text and its parameters for a dialect, as of a
reference day passed in: no clock is read inside SQL). No value of a definition ever becomes SQL text:
every name, value, day and number is a parameter.

The I/O part, through a ``Tx``: ``preview`` (the count and a sample), ``member_ids`` (every member, a
page at a time) and the ``segments`` table (``put``, ``get``, ``listed``, ``delete``).

Every segment leaves out erased members (``members.deleted = 1`` or a row in ``erasures``) and blocked
members (``members.status = 'blocked'``): an offer they could not use at the till is not made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from hq import stats
from hq.db.engine import Db, Tx, utc_now
from hq.errors import HqError, Refused
from sync.protocol import ErrorCode
from terminal.canonical import canonical_text

MAX_DEPTH = 6
"""Combinators nested at most this deep (a lone condition is depth 1)."""
MAX_CONDITIONS = 64
"""Conditions in one definition, combinators included."""
MAX_DAYS = 3660
MAX_BIRTHDAY_DAYS = 366
MAX_VALUES = 100
MAX_TEXT = 128
MAX_AMOUNT = 10**15
MAX_SAMPLE = 1000
PAGE = 10_000
SHARE_SCALE = 10_000
"""Shares are exact to 1/10,000 (basis points): compared in integers on both engines."""
SEGMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SegmentInvalid(Refused):
    """A definition (or a reference day) that is refused; ``code`` says why, stably."""


class UnknownSegment(HqError):
    pass


# -- the definition ---------------------------------------------------------------------------------


def _refuse(code: ErrorCode, message: str) -> PydanticCustomError:
    return PydanticCustomError(code.value, message)


def _days(value: int) -> int:
    if not 1 <= value <= MAX_DAYS:
        raise _refuse(ErrorCode.SEGMENT_BAD_WINDOW, f"days must be 1..{MAX_DAYS}")
    return value


def _text(value: str) -> str:
    if not 1 <= len(value) <= MAX_TEXT or not value.isprintable():
        raise _refuse(ErrorCode.SEGMENT_BAD_VALUE, f"a text value must be 1..{MAX_TEXT} printable characters")
    return value


def _values(value: list[str]) -> list[str]:
    if not 1 <= len(value) <= MAX_VALUES:
        raise _refuse(ErrorCode.SEGMENT_BAD_VALUE, f"give 1..{MAX_VALUES} values")
    return sorted(set(value))


def _amount(value: int) -> int:
    if not 0 <= value <= MAX_AMOUNT:
        raise _refuse(ErrorCode.SEGMENT_BAD_VALUE, f"an amount or count must be 0..{MAX_AMOUNT}")
    return value


def _scores(value: tuple[int, int]) -> tuple[int, int]:
    low, high = value
    if not 1 <= low <= high <= 5:
        raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "a score range is [low, high] with 1 <= low <= high <= 5")
    return value


def _share(value: float) -> float:
    scaled = value * SHARE_SCALE
    if not 0 < value <= 1 or abs(scaled - round(scaled)) > 1e-6:
        raise _refuse(ErrorCode.SEGMENT_BAD_VALUE, "a share is in (0, 1], to at most 4 decimals")
    return round(scaled) / SHARE_SCALE


Days = Annotated[StrictInt, AfterValidator(_days)]
Text = Annotated[StrictStr, AfterValidator(_text)]
Values = Annotated[list[Text], AfterValidator(_values)]
Amount = Annotated[StrictInt, AfterValidator(_amount)]
Scores = Annotated[tuple[StrictInt, StrictInt], AfterValidator(_scores)]
Share = Annotated[float, Field(strict=True), AfterValidator(_share)]


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllOf(_Condition):
    """Every condition holds."""

    kind: Literal["all_of"]
    conditions: list[Condition]

    @_model_validator(mode="after")
    def _some(self) -> AllOf:
        _not_empty(self.conditions)
        return self


class AnyOf(_Condition):
    """At least one condition holds."""

    kind: Literal["any_of"]
    conditions: list[Condition]

    @_model_validator(mode="after")
    def _some(self) -> AnyOf:
        _not_empty(self.conditions)
        return self


class Not(_Condition):
    """The condition does not hold (among the members a segment may hold at all)."""

    kind: Literal["not"]
    condition: Condition


class Rfm(_Condition):
    """Recency, frequency and monetary scores 1..5 (quintiles, 5 the best) over the members with a visit in
    the last ``days`` days; each range given must hold."""

    kind: Literal["rfm"]
    recency: Scores | None = None
    frequency: Scores | None = None
    monetary: Scores | None = None
    days: Days = 365

    @_model_validator(mode="after")
    def _bounded(self) -> Rfm:
        if self.recency is None and self.frequency is None and self.monetary is None:
            raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "rfm needs at least one of recency, frequency, monetary")
        return self


class Lapsed(_Condition):
    """No visit in the last ``days`` days, and at least one before."""

    kind: Literal["lapsed"]
    days: Days


class _Window(_Condition):
    days: Days
    min: Amount | None = None
    max: Amount | None = None

    @_model_validator(mode="after")
    def _bounded(self) -> _Window:
        if self.min is None and self.max is None:
            raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "min is above max")
        return self


class Visits(_Window):
    """Visits in the last ``days`` days between ``min`` and ``max`` (inclusive; a member with none has 0)."""

    kind: Literal["visits"]


class Spend(_Window):
    """Net spend (minor units) in the last ``days`` days between ``min`` and ``max`` (none: 0)."""

    kind: Literal["spend"]


class CategoryAffinity(_Condition):
    """In the last ``days`` days, the category's share of the member's category spend is at least
    ``min_share`` and/or its spend at least ``min_spend`` (both, when both are given)."""

    kind: Literal["category_affinity"]
    category: Text
    days: Days = 365
    min_share: Share | None = None
    min_spend: Amount | None = None

    @_model_validator(mode="after")
    def _bounded(self) -> CategoryAffinity:
        if self.min_share is None and self.min_spend is None:
            raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "category_affinity needs min_share, min_spend or both")
        return self


class Tier(_Condition):
    """The member's tier is one of ``tiers`` (its tier now)."""

    kind: Literal["tier"]
    tiers: Values


class Store(_Condition):
    """``via: visit``: a visit to one of ``stores`` in the last ``days`` days; ``via: preferred``: the
    member's ``preferred_store`` attribute is one of them."""

    kind: Literal["store"]
    stores: Values
    via: Literal["visit", "preferred"] = "visit"
    days: Days | None = None

    @_model_validator(mode="after")
    def _window(self) -> Store:
        if (self.via == "visit") != (self.days is not None):
            raise _refuse(ErrorCode.SEGMENT_BAD_WINDOW, "a store visit needs days; a preferred store takes none")
        return self


class BirthdayWithin(_Condition):
    """The member's birthday falls on one of the ``days`` days starting with the reference day."""

    kind: Literal["birthday_within"]
    days: StrictInt

    @_model_validator(mode="after")
    def _window(self) -> BirthdayWithin:
        if not 1 <= self.days <= MAX_BIRTHDAY_DAYS:
            raise _refuse(ErrorCode.SEGMENT_BAD_WINDOW, f"birthday_within days must be 1..{MAX_BIRTHDAY_DAYS}")
        return self


class Consent(_Condition):
    """The member's consent to ``channel`` is given and not withdrawn (now)."""

    kind: Literal["consent"]
    channel: Literal["marketing"] = "marketing"


class Attribute(_Condition):
    """The member's attribute ``name`` is one of ``values`` (now)."""

    kind: Literal["attribute"]
    name: Text
    values: Values


Condition = Annotated[
    AllOf
    | AnyOf
    | Not
    | Rfm
    | Lapsed
    | Visits
    | Spend
    | CategoryAffinity
    | Tier
    | Store
    | BirthdayWithin
    | Consent
    | Attribute,
    Field(discriminator="kind"),
]


class SegmentDefinition(BaseModel):
    """A segment: the members eligible for offers for whom ``where`` holds on the reference day."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    where: Condition
    description: Annotated[StrictStr, Field(max_length=1000)] = ""


for _model in (AllOf, AnyOf, Not, SegmentDefinition):
    _model.model_rebuild()


def _not_empty(conditions: list[Any]) -> None:
    if not conditions:
        raise _refuse(ErrorCode.SEGMENT_BAD_RANGE, "a combinator needs at least one condition")


def _children(condition: Any) -> list[Any]:
    if isinstance(condition, AllOf | AnyOf):
        return list(condition.conditions)
    if isinstance(condition, Not):
        return [condition.condition]
    return []


def shape(condition: Any) -> tuple[int, int]:
    """(depth, number of conditions) of a parsed condition tree."""
    children = [shape(child) for child in _children(condition)]
    return 1 + max((d for d, _ in children), default=0), 1 + sum(n for _, n in children)


def _raw_depth(data: Any) -> int:
    """How deep JSON nests, without recursion (a hostile body cannot exhaust the stack)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > 4 * MAX_DEPTH + 8:
            break
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((item, depth + 1) for item in items)
    return deepest


_PYDANTIC_KINDS = {"union_tag_invalid": ErrorCode.SEGMENT_UNKNOWN_KIND}


def parse_definition(data: Any) -> SegmentDefinition:
    """A definition from parsed JSON, checked against every bound; ``SegmentInvalid`` otherwise."""
    if _raw_depth(data) > 4 * MAX_DEPTH + 4:
        raise SegmentInvalid(ErrorCode.SEGMENT_TOO_DEEP, f"conditions nest at most {MAX_DEPTH} deep")
    try:
        definition = SegmentDefinition.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        kind = str(first["type"])
        codes = {c.value: c for c in ErrorCode if c.value.startswith("segment_")}
        code = codes.get(kind) or _PYDANTIC_KINDS.get(kind, ErrorCode.SEGMENT_MALFORMED)
        where = ".".join(str(p) for p in first.get("loc", ())) or "definition"
        raise SegmentInvalid(code, f"{where}: {first.get('msg', 'invalid')}"[:500]) from None
    depth, count = shape(definition.where)
    if depth > MAX_DEPTH:
        raise SegmentInvalid(ErrorCode.SEGMENT_TOO_DEEP, f"conditions nest {depth} deep; at most {MAX_DEPTH}")
    if count > MAX_CONDITIONS:
        raise SegmentInvalid(ErrorCode.SEGMENT_TOO_LARGE, f"{count} conditions; at most {MAX_CONDITIONS}")
    return definition


def parse_json(text: str | bytes) -> SegmentDefinition:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SegmentInvalid(ErrorCode.SEGMENT_MALFORMED, f"not JSON: {exc}"[:300]) from None
    return parse_definition(data)


def canonical(definition: SegmentDefinition) -> str:
    """The definition as canonical JSON (sorted keys, no defaults left implicit): what is stored."""
    return canonical_text(definition.model_dump(mode="json"))


def parse_day(text: str) -> date:
    """A reference day ``YYYY-MM-DD``; ``SegmentInvalid(segment_bad_day)`` otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise SegmentInvalid(ErrorCode.SEGMENT_BAD_DAY, f"{text[:40]!r} is not YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise SegmentInvalid(ErrorCode.SEGMENT_BAD_DAY, str(exc)) from None


# -- days -------------------------------------------------------------------------------------------


def window(as_of: date, days: int) -> tuple[str, str]:
    """The first and last business day of the ``days`` days ending with ``as_of`` (both included)."""
    return (as_of - timedelta(days=days - 1)).isoformat(), as_of.isoformat()


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday_days(as_of: date, days: int) -> list[str]:
    """The ``MM-DD`` birthdays that fall on one of the ``days`` days from ``as_of``: a member born on
    29 February has its birthday on 28 February in a year without a 29 February."""
    found: set[str] = set()
    for offset in range(days):
        day = as_of + timedelta(days=offset)
        found.add(day.strftime("%m-%d"))
        if day.month == 2 and day.day == 28 and not _leap(day.year):
            found.add("02-29")
    return sorted(found)


# -- the compiler -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    """SQL with ``?`` placeholders (the engines translate them) and its parameters, in order."""

    sql: str
    params: tuple[Any, ...]


Part = tuple[str, list[Any]]


def _marks(values: list[Any]) -> str:
    return ", ".join("?" for _ in values)


def eligible(alias: str) -> Part:
    """Members a segment may hold at all: not erased, not deleted, not blocked."""
    return (
        f"{alias}.deleted = 0 AND {alias}.status <> ? AND NOT EXISTS "
        f"(SELECT 1 FROM erasures x WHERE x.member_id = {alias}.member_id)",
        ["blocked"],
    )


def _in(sql: str, params: list[Any]) -> Part:
    return f"m.member_id IN ({sql})", params


def _sum_between(column: str, low: int | None, high: int | None) -> Part:
    parts, params = [], []
    if low is not None:
        parts.append(f"SUM({column}) >= ?")
        params.append(low)
    if high is not None:
        parts.append(f"SUM({column}) <= ?")
        params.append(high)
    return " AND ".join(parts), params


@dataclass(frozen=True, slots=True)
class Scope:
    """What a segment is compiled for: its reference day, the engine, and whether the rolled windows
    (``hq.stats.ROLLED``, ``member_totals`` and ``member_category_windows``) are as of that very day, so
    a window of one of those lengths reads one row a member instead of a row a visit day."""

    as_of: date
    dialect: str
    rolled: bool = False

    def window(self, days: int) -> bool:
        return self.rolled and days in stats.ROLLED


def _between(column: str, low: int | None, high: int | None) -> Part:
    parts, params = [], []
    if low is not None:
        parts.append(f"{column} >= ?")
        params.append(low)
    if high is not None:
        parts.append(f"{column} <= ?")
        params.append(high)
    return " AND ".join(parts), params


def _window_sum(cond: Visits | Spend, scope: Scope) -> Part:
    first, last = window(scope.as_of, cond.days)
    zero_holds = (cond.min is None or cond.min <= 0) and (cond.max is None or cond.max >= 0)
    params: list[Any] = []
    if scope.window(cond.days):
        held, hparams = _between(f"t.{cond.kind}_{cond.days}", cond.min, cond.max)
        inner = "SELECT t.member_id FROM member_totals t WHERE "
    else:
        held, hparams = _sum_between(f"d.{cond.kind}", cond.min, cond.max)
        inner = "SELECT d.member_id FROM member_days d WHERE d.day >= ? AND d.day <= ? GROUP BY d.member_id HAVING "
        params += [first, last]
    if zero_holds:  # members with no row (0) are in: leave out those whose sum fails
        return f"m.member_id NOT IN ({inner}NOT ({held}))", [*params, *hparams]
    return _in(inner + held, [*params, *hparams])


def _lapsed(cond: Lapsed, scope: Scope) -> Part:
    first, last = window(scope.as_of, cond.days)
    if scope.rolled:  # the last visit day up to the rolled day is kept, whatever the window
        return _in("SELECT t.member_id FROM member_totals t WHERE t.last_day < ?", [first])
    return _in(
        "SELECT d.member_id FROM member_days d WHERE d.visits > 0 AND d.day <= ? GROUP BY d.member_id "
        "HAVING MAX(d.day) < ?",
        [last, first],
    )


def _category(cond: CategoryAffinity, scope: Scope) -> Part:
    first, last = window(scope.as_of, cond.days)
    if scope.window(cond.days) and (cond.min_share is not None or (cond.min_spend or 0) > 0):
        return _rolled_category(cond)
    mine = "SUM(CASE WHEN c.category = ? THEN c.spend ELSE 0 END)"
    having: list[str] = []
    params: list[Any] = [first, last]
    if cond.min_share is not None:
        having.append(f"SUM(c.spend) > 0 AND {mine} * {SHARE_SCALE} >= ? * SUM(c.spend)")
        params += [cond.category, round(cond.min_share * SHARE_SCALE)]
    if cond.min_spend is not None:
        having.append(f"{mine} >= ?")
        params += [cond.category, cond.min_spend]
    return _in(
        "SELECT c.member_id FROM member_category_days c WHERE c.day >= ? AND c.day <= ? "
        f"GROUP BY c.member_id HAVING {' AND '.join(having)}",
        params,
    )


def _rolled_category(cond: CategoryAffinity) -> Part:
    """The category's rolled row beside the member's spend of every category in the same window: one row a
    member who bought it. Only when the condition needs some spend in the category (a share, or a minimum
    above 0): a member with none has no row (``min_spend: 0`` alone reads the daily rows)."""
    mine, whole = f"c.spend_{cond.days}", f"t.category_spend_{cond.days}"
    held: list[str] = []
    params: list[Any] = [cond.category]
    if cond.min_share is not None:
        held.append(f"{whole} > 0 AND {mine} * {SHARE_SCALE} >= ? * {whole}")
        params.append(round(cond.min_share * SHARE_SCALE))
    if cond.min_spend is not None:
        held.append(f"{mine} >= ?")
        params.append(cond.min_spend)
    return _in(
        "SELECT c.member_id FROM member_category_windows c JOIN member_totals t ON t.member_id = c.member_id "
        f"WHERE c.category = ? AND {' AND '.join(held)}",
        params,
    )


def _store(cond: Store, scope: Scope) -> Part:
    stores = list(cond.stores)
    if cond.via == "preferred":
        return _in(
            f"SELECT a.member_id FROM member_attributes a WHERE a.name = ? AND a.value IN ({_marks(stores)})",
            ["preferred_store", *stores],
        )
    first, last = window(scope.as_of, cond.days or 1)
    return _in(
        "SELECT d.member_id FROM member_days d WHERE d.day >= ? AND d.day <= ? AND d.visits > 0 "
        f"AND d.store_id IN ({_marks(stores)})",
        [first, last, *stores],
    )


def _birthday(days: list[str]) -> Part:
    return _in(f"SELECT p.member_id FROM member_profiles p WHERE p.birth_md IN ({_marks(days)})", days)


_RFM_ORDER = {"r": "a.last_day", "f": "a.visits", "mo": "a.spend"}


def _rfm_base(cond: Rfm, scope: Scope) -> Part:
    """Each member with a visit in the window: the last visit day in it, the visits and the spend."""
    if scope.window(cond.days):  # a visit in the window: the last visit day up to the rolled day is in it
        days = cond.days
        return (
            f"SELECT t.member_id, t.last_day, t.visits_{days} AS visits, t.spend_{days} AS spend "
            f"FROM member_totals t WHERE t.visits_{days} > 0",
            [],
        )
    first, last = window(scope.as_of, cond.days)
    # Each member's days are summed first, then the eligible ones kept: the join sees one row a member, not
    # one a day (a year of a million members is about ten million day rows).
    return (
        "SELECT d.member_id, MAX(CASE WHEN d.visits > 0 THEN d.day END) AS last_day, "
        "SUM(d.visits) AS visits, SUM(d.spend) AS spend FROM member_days d "
        "WHERE d.day >= ? AND d.day <= ? GROUP BY d.member_id HAVING SUM(d.visits) > 0",
        [first, last],
    )


def _rfm(cond: Rfm, scope: Scope) -> Part:
    """Only the scores the condition names are computed (each is a sort of every scored member)."""
    by_id = 'a.member_id COLLATE "C"' if scope.dialect == "postgres" else "a.member_id"
    base, params = _rfm_base(cond, scope)
    ok, ok_params = eligible("e")
    params = [*params, *ok_params]  # the members scored, then who is eligible, then the scores
    tiles: list[str] = []
    scores: list[str] = []
    for column, scored in (("r", cond.recency), ("f", cond.frequency), ("mo", cond.monetary)):
        if scored is not None:
            tiles.append(f"NTILE(5) OVER (ORDER BY {_RFM_ORDER[column]}, {by_id}) AS {column}")
            scores.append(f"s.{column} BETWEEN ? AND ?")
            params += list(scored)
    return _in(
        f"SELECT s.member_id FROM (SELECT a.member_id, {', '.join(tiles)} FROM ({base}) a "
        f"JOIN members e ON e.member_id = a.member_id WHERE {ok}) s WHERE {' AND '.join(scores)}",
        params,
    )


def _predicate(cond: Any, scope: Scope) -> Part:
    if isinstance(cond, AllOf | AnyOf):
        parts = [_predicate(child, scope) for child in cond.conditions]
        joiner = " AND " if isinstance(cond, AllOf) else " OR "
        return "(" + joiner.join(f"({sql})" for sql, _ in parts) + ")", [p for _, ps in parts for p in ps]
    if isinstance(cond, Not):
        sql, params = _predicate(cond.condition, scope)
        return f"NOT ({sql})", params
    return _SIMPLE[type(cond)](cond, scope)


_SIMPLE: dict[type[Any], Callable[[Any, Scope], Part]] = {
    Rfm: _rfm,
    Lapsed: _lapsed,
    Visits: _window_sum,
    Spend: _window_sum,
    CategoryAffinity: _category,
    Store: _store,
    Tier: lambda c, _: (f"m.tier IN ({_marks(c.tiers)})", list(c.tiers)),
    BirthdayWithin: lambda c, scope: _birthday(birthday_days(scope.as_of, c.days)),
    Consent: lambda c, _: _in(
        "SELECT k.member_id FROM consents k WHERE k.channel = ? AND k.withdrawn_at IS NULL", [c.channel]
    ),
    Attribute: lambda c, _: _in(
        f"SELECT a.member_id FROM member_attributes a WHERE a.name = ? AND a.value IN ({_marks(c.values)})",
        [c.name, *c.values],
    ),
}


def compile_segment(definition: SegmentDefinition, as_of: date, dialect: str, rolled: date | None = None) -> Compiled:
    """``SELECT m.member_id FROM members m WHERE ...``: the segment's members on ``as_of``. ``rolled``: the
    day the rolled windows are as of (``hq.stats.windows_day``, read in the transaction that runs the
    query); when it is ``as_of``, windows of their lengths read them (the same members either way)."""
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"no SQL dialect {dialect!r}")
    ok, ok_params = eligible("m")
    sql, params = _predicate(definition.where, Scope(as_of, dialect, rolled == as_of))
    return Compiled(f"SELECT m.member_id FROM members m WHERE {ok} AND ({sql})", (*ok_params, *params))


def compiled_in(tx: Tx, definition: SegmentDefinition, as_of: date, *, hold: bool = False) -> Compiled:
    """The segment compiled for the transaction that runs it (its rolled windows when they are as of
    ``as_of``). ``hold``: a write transaction keeps the windows' day until it ends (a read transaction
    reads one snapshot)."""
    return compile_segment(definition, as_of, tx.dialect, stats.windows_day(tx, hold=hold))


# -- reading a segment's members ---------------------------------------------------------------------


def prepare(tx: Tx, *, whole: bool = True) -> None:
    """Settings for the transaction that reads a segment (PostgreSQL). ``whole``: the segment is read for
    every member (a count, a preview, a campaign's run), not checked for one: nested loops are turned off.
    The planner cannot estimate what a filter on a window function (RFM's quintiles) keeps (it expects a
    few rows of 262,000 at a million members) and probes members and consents one by one; hash joins read
    each table once (the RFM segment at a million members: 3.7 s instead of 5.5 to 9.9 s). Parallel workers
    are made cheaper to the planner (their start and each row they hand over): it then sorts the members for
    RFM's quintiles in two workers and merges them, where its defaults sort them in one (the RFM segment at a
    million members on two cores: 3.8 to 4.5 s instead of 5.5 to 7.5 s; docs/performance.md)."""
    if tx.dialect == "postgres":  # IN (subquery) under OR / NOT is a hashed subplan only if it fits
        tx.run("SET LOCAL work_mem = '256MB'")
        if whole:
            tx.run("SET LOCAL enable_nestloop = off")
            tx.run("SET LOCAL parallel_setup_cost = 100")
            tx.run("SET LOCAL parallel_tuple_cost = 0.01")


def count(tx: Tx, definition: SegmentDefinition, as_of: date) -> int:
    compiled = compiled_in(tx, definition, as_of)
    prepare(tx)
    row = tx.one(f"SELECT COUNT(*) FROM ({compiled.sql}) q", compiled.params)
    return int(row[0]) if row else 0


def _whole(compiled: Compiled, dialect: str) -> str:
    """``WITH q AS (the segment)``: on PostgreSQL a materialised CTE, planned for every member. Left to see
    ``ORDER BY member_id LIMIT n`` above it, the planner walks the statistics in member order through
    their primary keys (a merge join that stops early), though a count needs every member: at a million
    members, minutes instead of the seconds of hashing them."""
    fence = " MATERIALIZED" if dialect == "postgres" else ""
    return f"WITH q AS{fence} ({compiled.sql}) "


def sample(tx: Tx, definition: SegmentDefinition, as_of: date, size: int) -> list[str]:
    """The first ``size`` members by member id (deterministic: the same day gives the same sample)."""
    compiled = compiled_in(tx, definition, as_of)
    prepare(tx)
    rows = tx.all(
        f"{_whole(compiled, tx.dialect)}SELECT q.member_id FROM q ORDER BY q.member_id LIMIT ?",
        [*compiled.params, min(max(size, 0), MAX_SAMPLE)],
    )
    return [str(r[0]) for r in rows]


def preview(tx: Tx, definition: SegmentDefinition, as_of: date, size: int = 20) -> dict[str, Any]:
    """The count and the first ``size`` members by member id, in one pass over the segment."""
    if size <= 0:
        return {"as_of": as_of.isoformat(), "count": count(tx, definition, as_of), "sample": []}
    compiled = compiled_in(tx, definition, as_of)
    prepare(tx)
    rows = tx.all(
        f"{_whole(compiled, tx.dialect)}SELECT q.member_id, COUNT(*) OVER () FROM q ORDER BY q.member_id LIMIT ?",
        [*compiled.params, min(size, MAX_SAMPLE)],
    )
    return {
        "as_of": as_of.isoformat(),
        "count": int(rows[0][1]) if rows else 0,
        "sample": [str(r[0]) for r in rows],
    }


def member_ids(db: Db, definition: SegmentDefinition, as_of: date, page: int = PAGE) -> Iterator[str]:
    """Every member of the segment, in member id order, a page (one read transaction) at a time."""
    after: str | None = None
    while True:
        with db.read() as tx:
            compiled = compiled_in(tx, definition, as_of)
            prepare(tx)
            more = "" if after is None else " AND m.member_id > ?"
            params = [*compiled.params, *([] if after is None else [after]), page]
            rows = tx.all(f"{compiled.sql}{more} ORDER BY m.member_id LIMIT ?", params)
        for row in rows:
            yield str(row[0])
        if len(rows) < page:
            return
        after = str(rows[-1][0])


# -- the segments table ------------------------------------------------------------------------------


def check_id(segment_id: str) -> str:
    if not SEGMENT_ID.fullmatch(segment_id):
        raise SegmentInvalid(
            ErrorCode.SEGMENT_BAD_VALUE, "a segment id is 1..64 of A-Z a-z 0-9 . _ - (first: A-Z a-z 0-9)"
        )
    return segment_id


def _check_name(name: str) -> str:
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise SegmentInvalid(ErrorCode.SEGMENT_BAD_VALUE, "a segment name is 1..200 printable characters")
    return name


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("segment_id", "name", "definition", "created_by", "created_at", "updated_at", "version")
    found = dict(zip(keys, row, strict=True))
    found["definition"] = json.loads(str(found["definition"]))
    found["version"] = int(found["version"])
    return found


_COLUMNS = "segment_id, name, definition, created_by, created_at, updated_at, version"


def put(tx: Tx, segment_id: str, name: str, definition: SegmentDefinition, by: str, now: str) -> dict[str, Any]:
    """Store (or replace) a segment; its version counts the changes (the same definition again changes nothing)."""
    check_id(segment_id)
    _check_name(name)
    text = canonical(definition)
    held = tx.one(f"SELECT name, definition, version FROM segments WHERE segment_id = ?{tx.for_update}", [segment_id])
    if held is None:
        tx.run(
            f"INSERT INTO segments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1)", [segment_id, name, text, by, now, now]
        )
    elif (held[0], held[1]) != (name, text):
        tx.run(
            "UPDATE segments SET name = ?, definition = ?, updated_at = ?, version = version + 1 WHERE segment_id = ?",
            [name, text, now, segment_id],
        )
    return get(tx, segment_id)


def get(tx: Tx, segment_id: str) -> dict[str, Any]:
    row = tx.one(f"SELECT {_COLUMNS} FROM segments WHERE segment_id = ?", [segment_id])
    if row is None:
        raise UnknownSegment(f"no segment {segment_id[:64]!r}")
    return _row(row)


def definition_of(tx: Tx, segment_id: str) -> SegmentDefinition:
    return parse_definition(get(tx, segment_id)["definition"])


def listed(tx: Tx) -> list[dict[str, Any]]:
    return [_row(r) for r in tx.all(f"SELECT {_COLUMNS} FROM segments ORDER BY segment_id")]


def delete(tx: Tx, segment_id: str) -> None:
    if tx.run("DELETE FROM segments WHERE segment_id = ?", [segment_id]) == 0:
        raise UnknownSegment(f"no segment {segment_id[:64]!r}")


# -- the services the commands and the routes call ----------------------------------------------------


def reference_day(as_of: str | None) -> date:
    """The day a segment is evaluated on: ``as_of`` (YYYY-MM-DD), or today in UTC."""
    return parse_day(as_of) if as_of is not None else datetime.now(UTC).date()


def save(db: Db, segment_id: str, name: str, data: Any, by: str) -> dict[str, Any]:
    """Check and store a definition (parsed JSON); ``SegmentInvalid`` says why it is refused."""
    definition = parse_definition(data)
    check_id(segment_id)
    return db.transact(lambda tx: put(tx, segment_id, name, definition, by, utc_now()))


def show(db: Db, segment_id: str) -> dict[str, Any]:
    with db.read() as tx:
        return get(tx, segment_id)


def remove(db: Db, segment_id: str) -> None:
    db.transact(lambda tx: delete(tx, segment_id))


def all_segments(db: Db) -> list[dict[str, Any]]:
    with db.read() as tx:
        return listed(tx)


def preview_saved(db: Db, segment_id: str, as_of: str | None, size: int) -> dict[str, Any]:
    """A stored segment's count and sample on ``as_of`` (default: today)."""
    day = reference_day(as_of)
    with db.read() as tx:
        return {"segment_id": segment_id, **preview(tx, definition_of(tx, segment_id), day, size)}


def preview_definition(db: Db, data: Any, as_of: str | None, size: int) -> dict[str, Any]:
    """The count and sample of a definition not stored (yet)."""
    definition, day = parse_definition(data), reference_day(as_of)
    with db.read() as tx:
        return preview(tx, definition, day, size)


__all__ = [
    "MAX_CONDITIONS",
    "MAX_DAYS",
    "MAX_DEPTH",
    "Compiled",
    "SegmentDefinition",
    "SegmentInvalid",
    "UnknownSegment",
    "birthday_days",
    "canonical",
    "compile_segment",
    "count",
    "delete",
    "get",
    "listed",
    "member_ids",
    "parse_definition",
    "parse_json",
    "prepare",
    "preview",
    "put",
    "sample",
]
