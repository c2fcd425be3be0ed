"""Segments on both engines: every condition kind and their combinations give the members a pure-Python
oracle computes from the same rows, on SQLite and on PostgreSQL alike; birthdays across the year end and
on 29 February; erased, deleted and blocked members never appear; the segments table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hq import members, segments, stats
from hq.db.engine import utc_now
from hq.segments import SegmentInvalid, UnknownSegment, parse_definition
from hq.store import HqStore
from tests.fixtures.postgres import fresh_sqlite_hq
from tests.sync.segment_population import (
    AGE_BANDS,
    AS_OF,
    CATEGORIES,
    STORES,
    TIERS,
    Population,
    eligible,
    generate,
    load,
    oracle,
)

HOSTILE = "'; DROP TABLE members; --"

CONDITIONS: list[dict[str, Any]] = [
    {"kind": "rfm", "recency": [4, 5], "frequency": [3, 5]},
    {"kind": "rfm", "monetary": [5, 5], "days": 90},
    {"kind": "rfm", "recency": [1, 1]},
    {"kind": "lapsed", "days": 90},
    {"kind": "lapsed", "days": 1},
    {"kind": "visits", "days": 30, "min": 1},
    {"kind": "visits", "days": 365, "min": 3, "max": 6},
    {"kind": "visits", "days": 60, "max": 0},
    {"kind": "spend", "days": 365, "min": 20_000},
    {"kind": "spend", "days": 90, "max": 1000},
    {"kind": "spend", "days": 90, "min": 0, "max": 0},
    {"kind": "category_affinity", "category": "wine", "days": 365, "min_share": 0.3},
    {"kind": "category_affinity", "category": "coffee", "min_spend": 5000},
    {"kind": "category_affinity", "category": "toys", "days": 90, "min_share": 0.1, "min_spend": 100},
    {"kind": "category_affinity", "category": HOSTILE, "min_share": 0.01},
    {"kind": "tier", "tiers": ["gold", "silver"]},
    {"kind": "tier", "tiers": [TIERS[3]]},
    {"kind": "store", "stores": ["S1"], "days": 90},
    {"kind": "store", "stores": [STORES[3], "S2"], "days": 365},
    {"kind": "store", "stores": ["S3"], "via": "preferred"},
    {"kind": "store", "stores": [STORES[3]], "via": "preferred"},
    {"kind": "birthday_within", "days": 7},
    {"kind": "birthday_within", "days": 1},
    {"kind": "birthday_within", "days": 366},
    {"kind": "consent"},
    {"kind": "attribute", "name": "age_band", "values": ["25-34", "35-44"]},
    {"kind": "attribute", "name": HOSTILE, "values": [HOSTILE]},
    {"kind": "not", "condition": {"kind": "consent"}},
    {
        "kind": "all_of",
        "conditions": [
            {"kind": "rfm", "recency": [4, 5], "frequency": [3, 5]},
            {"kind": "consent"},
            {"kind": "not", "condition": {"kind": "tier", "tiers": ["basic"]}},
        ],
    },
    {
        "kind": "any_of",
        "conditions": [
            {"kind": "lapsed", "days": 180},
            {"kind": "all_of", "conditions": [{"kind": "birthday_within", "days": 30}, {"kind": "consent"}]},
        ],
    },
    {"kind": "not", "condition": {"kind": "any_of", "conditions": [{"kind": "visits", "days": 30, "min": 1}]}},
]


def segment(where: dict[str, Any]) -> segments.SegmentDefinition:
    return parse_definition({"where": where})


def found(store: HqStore, where: dict[str, Any], as_of: date = AS_OF) -> set[str]:
    return set(segments.member_ids(store.db, segment(where), as_of, page=37))


@pytest.fixture(scope="module")
def population() -> Population:
    return generate()


@pytest.fixture
def store(hq_url: str, population: Population) -> Iterator[HqStore]:
    hq = HqStore(hq_url)
    load(hq.db, population)
    yield hq
    hq.close()


def module_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new head-office database of the fixture's engine (``request.param``) for a module-scoped fixture."""
    if request.param == "sqlite":
        return fresh_sqlite_hq(request.getfixturevalue("sqlite_hq_template"), tmp_path_factory.mktemp("hq") / "hq.db")
    return str(request.getfixturevalue("pg_server").fresh_hq_database())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, population: Population
) -> Iterator[HqStore]:
    """The population on each engine once for the module's read-only tests (they change nothing in it)."""
    hq = HqStore(module_url(request, tmp_path_factory))
    load(hq.db, population)
    yield hq
    hq.close()


@pytest.mark.parametrize("where", CONDITIONS, ids=[f"{i}-{c['kind']}" for i, c in enumerate(CONDITIONS)])
def test_each_condition_gives_the_oracles_members(
    loaded: HqStore, population: Population, where: dict[str, Any]
) -> None:
    expected = oracle(population, where, AS_OF)
    assert found(loaded, where) == expected
    with loaded.db.read() as tx:
        shown = segments.preview(tx, segment(where), AS_OF, 5)
    assert shown["count"] == len(expected)
    assert shown["sample"] == sorted(expected)[:5]


def test_the_population_is_varied_enough(population: Population) -> None:
    # each condition above is neither empty nor everyone, or the comparisons would prove little
    sizes = [len(oracle(population, where, AS_OF)) for where in CONDITIONS]
    everyone = len(eligible(population))
    assert sum(1 for n in sizes if 0 < n < everyone) >= len(CONDITIONS) - 4, sizes
    rfm = oracle(population, CONDITIONS[0], AS_OF)
    assert 5 <= len(rfm) < everyone


def test_both_engines_give_the_same_members(tmp_path: Path, pg_url: str, population: Population) -> None:
    lite, pg = HqStore(str(tmp_path / "hq.db")), HqStore(pg_url)
    try:
        for hq in (lite, pg):
            load(hq.db, population)
        for where in CONDITIONS:
            assert found(lite, where) == found(pg, where), where
    finally:
        lite.close()
        pg.close()


def test_erased_deleted_and_blocked_members_never_appear(store: HqStore, population: Population) -> None:
    gone = set(population.members) - eligible(population)
    assert gone
    everyone = {"kind": "any_of", "conditions": [{"kind": "visits", "days": 3660, "max": 10**9}, {"kind": "consent"}]}
    before = found(store, everyone)
    assert before == eligible(population) and not before & gone
    for where in CONDITIONS:
        assert not found(store, where) & gone
    # erase a member who is in segments now: it leaves every one of them
    victim = sorted(found(store, CONDITIONS[0]) & found(store, {"kind": "consent"}))[0]
    store.db.transact(lambda tx: members.erase(tx, victim, "test", utc_now()))
    for where in [*CONDITIONS, everyone]:
        assert victim not in found(store, where), where


# -- birthdays -------------------------------------------------------------------------------------

BORN = {
    "B-LEAP": "02-29",
    "B-FEB28": "02-28",
    "B-MAR1": "03-01",
    "B-DEC31": "12-31",
    "B-JAN1": "01-01",
    "B-JAN3": "01-03",
}


@pytest.fixture
def birthdays(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url)
    with hq.db.write() as tx:
        for mid, md in BORN.items():
            tx.run(
                "INSERT INTO members (member_id, display_name, tier, points, status, version) "
                "VALUES (?, 'x', 'basic', 0, 'active', 1)",
                [mid],
            )
            tx.run(
                "INSERT INTO member_profiles (member_id, birthday, birth_md, updated_at) VALUES (?, ?, ?, ?)",
                [mid, f"1996-{md}", md, utc_now()],
            )
    yield hq
    hq.close()


@pytest.mark.parametrize(
    ("as_of", "days", "expected"),
    [
        ("2026-12-30", 3, {"B-DEC31", "B-JAN1"}),  # across the year end
        ("2026-12-31", 1, {"B-DEC31"}),
        ("2026-12-31", 4, {"B-DEC31", "B-JAN1", "B-JAN3"}),
        ("2027-01-01", 1, {"B-JAN1"}),
        ("2027-02-28", 1, {"B-FEB28", "B-LEAP"}),  # no 29 Feb in 2027: the leap member's day is 28 Feb
        ("2027-02-27", 2, {"B-FEB28", "B-LEAP"}),
        ("2027-03-01", 1, {"B-MAR1"}),
        ("2028-02-28", 1, {"B-FEB28"}),  # 2028 has a 29 Feb: the leap member's own day
        ("2028-02-29", 1, {"B-LEAP"}),
        ("2028-02-28", 3, {"B-FEB28", "B-LEAP", "B-MAR1"}),
        ("2100-02-28", 1, {"B-FEB28", "B-LEAP"}),  # 2100 is not a leap year
        ("2026-03-02", 366, set(BORN)),
    ],
)
def test_birthday_windows(birthdays: HqStore, as_of: str, days: int, expected: set[str]) -> None:
    assert found(birthdays, {"kind": "birthday_within", "days": days}, date.fromisoformat(as_of)) == expected


# -- random definitions against the oracle (SQLite) -------------------------------------------------


def _leaves(days: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, Any]]:
    score = st.tuples(st.integers(1, 5), st.integers(1, 5)).map(lambda t: sorted(t))
    bound = st.one_of(st.none(), st.integers(0, 30_000))

    def window_sum(kind: str, top: int) -> st.SearchStrategy[dict[str, Any]]:
        low, high = st.one_of(st.none(), st.integers(0, top)), st.one_of(st.none(), st.integers(0, top))
        return st.builds(
            lambda d, lo, hi: (
                {"kind": kind, "days": d, **({"min": lo} if lo is not None else {}), "max": hi}
                if hi is not None and (lo is None or lo <= hi)
                else {"kind": kind, "days": d, "min": lo if lo is not None else 0}
            ),
            days,
            low,
            high,
        )

    return st.one_of(
        st.builds(
            lambda r, f, m, d: {"kind": "rfm", "recency": r, "frequency": f, "monetary": m, "days": d},
            score,
            score,
            st.one_of(st.none(), score),
            days,
        ),
        st.builds(lambda d: {"kind": "lapsed", "days": d}, days),
        window_sum("visits", 8),
        window_sum("spend", 40_000),
        st.builds(
            lambda c, d, s, m: (
                {"kind": "category_affinity", "category": c, "days": d, "min_share": s, "min_spend": m}
                if s or m is not None
                else {"kind": "category_affinity", "category": c, "days": d, "min_share": 0.5}
            ),
            st.sampled_from(CATEGORIES),
            days,
            st.sampled_from([None, 0.05, 0.25, 0.5, 1.0]),
            bound,
        ),
        st.builds(lambda t: {"kind": "tier", "tiers": t}, st.lists(st.sampled_from(TIERS), min_size=1, max_size=3)),
        st.builds(
            lambda s, d: {"kind": "store", "stores": s, "days": d},
            st.lists(st.sampled_from(STORES), min_size=1, max_size=2),
            days,
        ),
        st.builds(
            lambda s: {"kind": "store", "stores": s, "via": "preferred"}, st.lists(st.sampled_from(STORES), min_size=1)
        ),
        st.builds(lambda d: {"kind": "birthday_within", "days": d}, st.integers(1, 366)),
        st.just({"kind": "consent"}),
        st.builds(
            lambda v: {"kind": "attribute", "name": "age_band", "values": v},
            st.lists(st.sampled_from(AGE_BANDS), min_size=1, max_size=3),
        ),
    )


def _definitions(days: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        _leaves(days),
        lambda inner: st.one_of(
            st.builds(lambda c: {"kind": "all_of", "conditions": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"kind": "any_of", "conditions": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"kind": "not", "condition": c}, inner),
        ),
        max_leaves=8,
    )


definitions = _definitions(st.integers(1, 400))
rolled_definitions = _definitions(st.one_of(st.sampled_from(stats.ROLLED), st.integers(1, 400)))


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory, population: Population) -> Iterator[HqStore]:
    hq = HqStore(str(tmp_path_factory.mktemp("segments") / "hq.db"))
    load(hq.db, population)
    yield hq
    hq.close()


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(where=definitions, days_back=st.integers(0, 400))
def test_random_definitions_match_the_oracle(
    lite: HqStore, population: Population, where: dict[str, Any], days_back: int
) -> None:
    as_of = date.fromordinal(AS_OF.toordinal() - days_back)
    try:
        definition = segment(where)
    except SegmentInvalid:
        return  # deeper or larger than allowed: refused, tested elsewhere
    with lite.db.read() as tx:
        compiled = segments.compile_segment(definition, as_of, tx.dialect)
        got = {str(r[0]) for r in tx.all(compiled.sql, compiled.params)}
    assert got == oracle(population, definition.model_dump(mode="json")["where"], as_of)


# -- the segments table ----------------------------------------------------------------------------


def test_segments_are_stored_as_canonical_definitions(store: HqStore) -> None:
    where = {"kind": "tier", "tiers": ["silver", "gold", "gold"]}
    first = store.db.transact(lambda tx: segments.put(tx, "vip", "VIP", segment(where), "Mio", utc_now()))
    assert first["version"] == 1 and first["definition"]["where"]["tiers"] == ["gold", "silver"]
    again = store.db.transact(lambda tx: segments.put(tx, "vip", "VIP", segment(where), "Mio", utc_now()))
    assert again["version"] == 1  # the same definition changes nothing
    changed = store.db.transact(
        lambda tx: segments.put(tx, "vip", "VIP", segment({"kind": "tier", "tiers": ["gold"]}), "Mio", utc_now())
    )
    assert changed["version"] == 2 and changed["created_by"] == "Mio"
    with store.db.read() as tx:
        assert [s["segment_id"] for s in segments.listed(tx)] == ["vip"]
        assert segments.definition_of(tx, "vip") == segment({"kind": "tier", "tiers": ["gold"]})
    store.db.transact(lambda tx: segments.delete(tx, "vip"))
    with pytest.raises(UnknownSegment), store.db.read() as tx:
        segments.get(tx, "vip")


# -- the rolled windows ------------------------------------------------------------------------------


def roll(store: HqStore, day: date) -> int:
    return stats.roll_windows(store.db, day)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rolled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, population: Population
) -> Iterator[HqStore]:
    """The population with its windows rolled to the reference day, on each engine once for the module's
    read-only tests."""
    hq = HqStore(module_url(request, tmp_path_factory))
    load(hq.db, population)
    roll(hq, AS_OF)
    yield hq
    hq.close()


@pytest.mark.parametrize("where", CONDITIONS, ids=[f"{i}-{c['kind']}" for i, c in enumerate(CONDITIONS)])
def test_each_condition_gives_the_oracles_members_through_the_rolled_windows(
    rolled: HqStore, population: Population, where: dict[str, Any]
) -> None:
    expected = oracle(population, where, AS_OF)
    assert found(rolled, where) == expected
    with rolled.db.read() as tx:
        shown = segments.preview(tx, segment(where), AS_OF, 5)
    assert shown["count"] == len(expected) and shown["sample"] == sorted(expected)[:5]


def test_a_rolled_window_is_read_only_on_the_day_it_is_rolled_to(store: HqStore) -> None:
    definition = segment(
        {
            "kind": "all_of",
            "conditions": [
                {"kind": "visits", "days": 30, "min": 1},
                {"kind": "category_affinity", "category": "wine", "days": 365, "min_share": 0.3},
                {"kind": "rfm", "recency": [4, 5], "days": 90},
                {"kind": "spend", "days": 45, "min": 1},  # not a rolled length: the daily rows
            ],
        }
    )

    def sql(as_of: date) -> str:
        with store.db.read() as tx:
            return segments.compiled_in(tx, definition, as_of).sql

    assert "member_totals" not in sql(AS_OF)  # not rolled yet: every window from the daily rows
    roll(store, AS_OF)
    rolled_sql = sql(AS_OF)
    for column in ("t.visits_30", "c.spend_365", "t.category_spend_365", "t.visits_90"):
        assert column in rolled_sql
    assert "member_days d WHERE d.day >= ?" in rolled_sql  # the 45 days
    assert "member_totals" not in sql(date.fromordinal(AS_OF.toordinal() - 1))  # another day


def test_segments_during_a_build_read_the_daily_rows_and_give_the_oracles_members(
    store: HqStore, population: Population
) -> None:
    """A build of the windows as of the reference day is under way, some 80 members built (the
    others' windows still as of 20 days before): no day is rolled, so every condition reads the daily rows
    and gives the oracle's members; once the build ends, through the windows, the same."""
    roll(store, date.fromordinal(AS_OF.toordinal() - 20))
    store.db.transact(lambda tx: stats.roll(tx, AS_OF))  # 20 days: a build, begun
    assert store.db.transact(lambda tx: stats.build_chunk(tx, 80)) == "more"
    with store.db.read() as tx:
        held = stats.windows_state(tx)
    assert (held.day, held.building) == (None, AS_OF) and "M-0050" < str(held.built_to) < "M-0200"
    for where in CONDITIONS:
        assert found(store, where) == oracle(population, where, AS_OF), where
        with store.db.read() as tx:
            assert "member_totals" not in segments.compiled_in(tx, segment(where), AS_OF).sql
    assert roll(store, AS_OF) == 1
    for where in CONDITIONS:
        assert found(store, where) == oracle(population, where, AS_OF), where


@pytest.fixture(scope="module")
def rolled_lite(tmp_path_factory: pytest.TempPathFactory, population: Population) -> Iterator[HqStore]:
    hq = HqStore(str(tmp_path_factory.mktemp("rolled") / "hq.db"))
    load(hq.db, population)
    roll(hq, AS_OF)
    yield hq
    hq.close()


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(where=rolled_definitions)
def test_random_definitions_through_the_rolled_windows_match_the_oracle(
    rolled_lite: HqStore, population: Population, where: dict[str, Any]
) -> None:
    try:
        definition = segment(where)
    except SegmentInvalid:
        return
    with rolled_lite.db.read() as tx:
        compiled = segments.compiled_in(tx, definition, AS_OF)
        got = {str(r[0]) for r in tx.all(compiled.sql, compiled.params)}
    assert got == oracle(population, definition.model_dump(mode="json")["where"], AS_OF)


def test_a_segment_read_in_parallel_workers_gives_the_same_members(pg_url: str, population: Population) -> None:
    """PostgreSQL reads a whole segment with parallel workers made cheap to its planner (``prepare``): at a
    million members it sorts RFM's quintiles in two workers and merges them. Here, with workers free and
    every table big enough for them, each condition still gives the oracle's members, RFM's plan with
    workers in it; and a whole read is prepared with the cheaper workers, a check of one member without."""
    hq = HqStore(pg_url)
    try:
        load(hq.db, population)
        roll(hq, AS_OF)
        for where in CONDITIONS:
            with hq.db.read() as tx:
                compiled = segments.compiled_in(tx, segment(where), AS_OF)
                segments.prepare(tx)
                for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
                    tx.run(f"SET LOCAL {setting} = 0")
                got = {str(r[0]) for r in tx.all(compiled.sql, compiled.params)}
                plan = "\n".join(str(r[0]) for r in tx.all("EXPLAIN " + compiled.sql, compiled.params))
            assert got == oracle(population, where, AS_OF), where
            if where is CONDITIONS[0]:  # RFM's quintiles
                assert "Workers Planned" in plan, plan
        for whole, expected in ((True, ("100", "0.01")), (False, ("1000", "0.1"))):
            with hq.db.read() as tx:
                segments.prepare(tx, whole=whole)
                shown = tx.one("SELECT current_setting('parallel_setup_cost'), current_setting('parallel_tuple_cost')")
            assert shown == expected, whole
    finally:
        hq.close()
