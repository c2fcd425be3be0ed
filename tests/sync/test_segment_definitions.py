"""The segment definition language, pure: each bad shape is refused with its stable code, the canonical
form, and compilation into parameterised SQL only (no value of a definition ever becomes SQL text)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from hq import segments
from hq.segments import MAX_CONDITIONS, MAX_DEPTH, SegmentInvalid, compile_segment, parse_definition, parse_json
from sync.protocol import ERROR_STATUS, ErrorCode

HOSTILE = "'; DROP TABLE members; --"


def nested(depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"kind": "consent"}
    for _ in range(depth - 1):
        where = {"kind": "not", "condition": where}
    return where


BAD: list[tuple[str, Any, ErrorCode]] = [
    ("not an object", [], ErrorCode.SEGMENT_MALFORMED),
    ("no where", {}, ErrorCode.SEGMENT_MALFORMED),
    ("unknown field", {"where": {"kind": "consent"}, "extra": 1}, ErrorCode.SEGMENT_MALFORMED),
    ("unknown field in a condition", {"where": {"kind": "lapsed", "days": 3, "x": 1}}, ErrorCode.SEGMENT_MALFORMED),
    ("no kind", {"where": {"days": 3}}, ErrorCode.SEGMENT_MALFORMED),
    ("unknown kind", {"where": {"kind": "sql", "text": "1=1"}}, ErrorCode.SEGMENT_UNKNOWN_KIND),
    ("days as text", {"where": {"kind": "lapsed", "days": "30"}}, ErrorCode.SEGMENT_MALFORMED),
    ("days as bool", {"where": {"kind": "lapsed", "days": True}}, ErrorCode.SEGMENT_MALFORMED),
    ("days zero", {"where": {"kind": "lapsed", "days": 0}}, ErrorCode.SEGMENT_BAD_WINDOW),
    ("days beyond 3660", {"where": {"kind": "visits", "days": 3661, "min": 1}}, ErrorCode.SEGMENT_BAD_WINDOW),
    ("birthday beyond a year", {"where": {"kind": "birthday_within", "days": 367}}, ErrorCode.SEGMENT_BAD_WINDOW),
    ("store visit without days", {"where": {"kind": "store", "stores": ["S1"]}}, ErrorCode.SEGMENT_BAD_WINDOW),
    (
        "preferred store with days",
        {"where": {"kind": "store", "stores": ["S1"], "via": "preferred", "days": 3}},
        ErrorCode.SEGMENT_BAD_WINDOW,
    ),
    ("min above max", {"where": {"kind": "spend", "days": 30, "min": 10, "max": 5}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("no bound", {"where": {"kind": "visits", "days": 30}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("score 0", {"where": {"kind": "rfm", "recency": [0, 5]}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("score 6", {"where": {"kind": "rfm", "frequency": [4, 6]}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("scores reversed", {"where": {"kind": "rfm", "monetary": [5, 4]}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("rfm with no score", {"where": {"kind": "rfm"}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("empty all_of", {"where": {"kind": "all_of", "conditions": []}}, ErrorCode.SEGMENT_BAD_RANGE),
    ("affinity without bound", {"where": {"kind": "category_affinity", "category": "x"}}, ErrorCode.SEGMENT_BAD_RANGE),
    (
        "share above 1",
        {"where": {"kind": "category_affinity", "category": "x", "min_share": 1.5}},
        ErrorCode.SEGMENT_BAD_VALUE,
    ),
    (
        "share too fine",
        {"where": {"kind": "category_affinity", "category": "x", "min_share": 0.123456}},
        ErrorCode.SEGMENT_BAD_VALUE,
    ),
    (
        "share as text",
        {"where": {"kind": "category_affinity", "category": "x", "min_share": "0.5"}},
        ErrorCode.SEGMENT_MALFORMED,
    ),
    ("negative amount", {"where": {"kind": "spend", "days": 30, "min": -1}}, ErrorCode.SEGMENT_BAD_VALUE),
    ("huge amount", {"where": {"kind": "spend", "days": 30, "min": 10**16}}, ErrorCode.SEGMENT_BAD_VALUE),
    ("no tiers", {"where": {"kind": "tier", "tiers": []}}, ErrorCode.SEGMENT_BAD_VALUE),
    (
        "too many values",
        {"where": {"kind": "tier", "tiers": [str(n) for n in range(101)]}},
        ErrorCode.SEGMENT_BAD_VALUE,
    ),
    ("empty text", {"where": {"kind": "attribute", "name": "", "values": ["a"]}}, ErrorCode.SEGMENT_BAD_VALUE),
    (
        "control character",
        {"where": {"kind": "attribute", "name": "a\x00", "values": ["a"]}},
        ErrorCode.SEGMENT_BAD_VALUE,
    ),
    ("long text", {"where": {"kind": "tier", "tiers": ["x" * 129]}}, ErrorCode.SEGMENT_BAD_VALUE),
    ("other consent channel", {"where": {"kind": "consent", "channel": "sms"}}, ErrorCode.SEGMENT_MALFORMED),
    ("too deep", {"where": nested(MAX_DEPTH + 1)}, ErrorCode.SEGMENT_TOO_DEEP),
    ("hostile depth", {"where": nested(5000)}, ErrorCode.SEGMENT_TOO_DEEP),
    (
        "too many conditions",
        {"where": {"kind": "any_of", "conditions": [{"kind": "consent"}] * MAX_CONDITIONS}},
        ErrorCode.SEGMENT_TOO_LARGE,
    ),
]


@pytest.mark.parametrize(("what", "data", "code"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_shape_has_its_code(what: str, data: Any, code: ErrorCode) -> None:
    with pytest.raises(SegmentInvalid) as refused:
        parse_definition(data)
    assert refused.value.code is code, str(refused.value)
    assert ERROR_STATUS[code][0] == 422


def test_the_bounds_themselves_are_accepted() -> None:
    parse_definition({"where": nested(MAX_DEPTH)})
    parse_definition({"where": {"kind": "any_of", "conditions": [{"kind": "consent"}] * (MAX_CONDITIONS - 1)}})
    parse_definition({"where": {"kind": "visits", "days": 3660, "min": 0, "max": 0}})
    parse_definition({"where": {"kind": "birthday_within", "days": 366}})


def test_json_text_and_days() -> None:
    with pytest.raises(SegmentInvalid) as refused:
        parse_json("{not json")
    assert refused.value.code is ErrorCode.SEGMENT_MALFORMED
    for bad in ("2026-02-30", "26-01-01", "yesterday", "2026-1-1"):
        with pytest.raises(SegmentInvalid) as day:
            segments.parse_day(bad)
        assert day.value.code is ErrorCode.SEGMENT_BAD_DAY
    assert segments.parse_day("2028-02-29") == date(2028, 2, 29)


def test_canonical_form_is_stable() -> None:
    one = parse_definition({"where": {"kind": "tier", "tiers": ["b", "a", "a"]}})
    two = parse_json('{"description": "", "where": {"tiers": ["a", "b"], "kind": "tier"}}')
    assert segments.canonical(one) == segments.canonical(two)
    assert parse_json(segments.canonical(one)) == one


def test_birthday_days_keep_29_february_on_28_february_in_other_years() -> None:
    assert segments.birthday_days(date(2027, 2, 28), 1) == ["02-28", "02-29"]
    assert segments.birthday_days(date(2028, 2, 28), 1) == ["02-28"]
    assert segments.birthday_days(date(2028, 2, 28), 2) == ["02-28", "02-29"]
    assert segments.birthday_days(date(2026, 12, 31), 2) == ["01-01", "12-31"]


def _every_kind(text: str) -> dict[str, Any]:
    return {
        "where": {
            "kind": "any_of",
            "conditions": [
                {"kind": "tier", "tiers": [text]},
                {"kind": "attribute", "name": text, "values": [text, text + "2"]},
                {"kind": "store", "stores": [text], "days": 30},
                {"kind": "store", "stores": [text], "via": "preferred"},
                {"kind": "category_affinity", "category": text, "min_share": 0.5, "min_spend": 7},
                {"kind": "not", "condition": {"kind": "rfm", "recency": [2, 3]}},
                {"kind": "all_of", "conditions": [{"kind": "lapsed", "days": 9}, {"kind": "consent"}]},
                {"kind": "visits", "days": 10, "max": 3},
                {"kind": "spend", "days": 10, "min": 3},
                {"kind": "birthday_within", "days": 3},
            ],
        }
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize("text", [HOSTILE, "x'); DELETE FROM segments; --", 'a"b', "?", "%s", "%(x)s", "\\'"])
def test_no_value_of_a_definition_becomes_sql_text(dialect: str, text: str) -> None:
    compiled = compile_segment(parse_definition(_every_kind(text)), date(2026, 3, 1), dialect)
    assert text == "?" or text not in compiled.sql
    assert "DROP" not in compiled.sql and "DELETE" not in compiled.sql
    assert "'" not in compiled.sql  # no literal at all: even the fixed ones are parameters
    assert "%" not in compiled.sql  # PostgreSQL's driver would read it as a placeholder
    assert compiled.sql.count("?") == len(compiled.params)
    assert compiled.params.count(text) >= 5
    # the same definition always compiles to the same statement: the SQL depends on the shape only
    other = compile_segment(parse_definition(_every_kind("plain")), date(2026, 3, 1), dialect)
    assert other.sql == compiled.sql


def test_sql_differs_between_engines_only_in_collation() -> None:
    definition = parse_definition(json.loads('{"where": {"kind": "rfm", "recency": [5, 5]}}'))
    lite, pg = (compile_segment(definition, date(2026, 3, 1), d) for d in ("sqlite", "postgres"))
    assert lite.params == pg.params
    assert pg.sql.replace(' COLLATE "C"', "") == lite.sql
    with pytest.raises(ValueError):
        compile_segment(definition, date(2026, 3, 1), "mysql")
