"""Adding rows to tables of sums (hq/db/upsert.py), on both engines: one table, several together (one statement
on PostgreSQL), and the rows of the last as they stand after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.db.engine import Db
from hq.db.schema import open_db
from hq.db.upsert import Upsert, upsert, upsert_together
from hq.errors import IntegrityFailed

SUMS = Upsert(
    "t_sums",
    ("k", "n"),
    ("text", "bigint"),
    "ON CONFLICT (k) DO UPDATE SET n = t_sums.n + excluded.n",
)
PAIRS = Upsert(
    "t_pairs",
    ("a", "b", "n"),
    ("text", "text", "bigint"),
    "ON CONFLICT (a, b) DO UPDATE SET n = t_pairs.n + excluded.n",
)


@pytest.fixture
def db(hq_url: str) -> Iterator[Db]:
    opened = open_db(hq_url)
    with opened.write() as tx:
        tx.run("CREATE TABLE t_sums (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        tx.run("CREATE TABLE t_pairs (a TEXT NOT NULL, b TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (a, b))")
    yield opened
    opened.close()


def table(db: Db, name: str) -> list[tuple[object, ...]]:
    with db.read() as tx:
        return [tuple(r) for r in tx.all(f"SELECT * FROM {name} ORDER BY 1, 2")]


def test_rows_add_up_and_the_last_table_gives_its_rows_back(db: Db) -> None:
    with db.write() as tx:
        upsert(tx, SUMS, [("a", 1), ("b", 2)])
        held = upsert_together(
            tx,
            [(SUMS, [("a", 10), ("c", 3)]), (PAIRS, [])],  # a part without rows is left out
            ([(PAIRS, [("x", "y", 5), ("x", "z", 6)])], "a, b, n"),
        )
        assert sorted(tuple(r) for r in held) == [("x", "y", 5), ("x", "z", 6)]
        again = upsert_together(tx, [], ([(PAIRS, [("x", "y", -2)])], "a, b, n"))
        assert [tuple(r) for r in again] == [("x", "y", 3)]  # the row as it stands after the statement
    assert table(db, "t_sums") == [("a", 11), ("b", 2), ("c", 3)]
    assert table(db, "t_pairs") == [("x", "y", 3), ("x", "z", 6)]


def test_nothing_to_add_writes_nothing_and_gives_nothing_back(db: Db) -> None:
    with db.write() as tx:
        assert upsert_together(tx, [(SUMS, []), (PAIRS, [])], ([(PAIRS, [])], "a")) == []
        assert upsert_together(tx, [(SUMS, [("a", 1)])], ([(PAIRS, [])], "a")) == []  # the parts still go
    assert table(db, "t_sums") == [("a", 1)] and table(db, "t_pairs") == []


def test_a_failing_part_adds_nothing_of_the_others(db: Db) -> None:
    """One statement on PostgreSQL, one transaction on both: a row breaking a table's constraint leaves every
    table as it was."""
    with pytest.raises(IntegrityFailed), db.write() as tx:
        upsert_together(tx, [(SUMS, [("a", 1)])], ([(PAIRS, [("x", "y", None)])], "a"))  # n is NOT NULL
    assert table(db, "t_sums") == [] and table(db, "t_pairs") == []


def test_many_rows_go_in_one_call(db: Db) -> None:
    """More rows than one SQLite statement carries (a thousand): every one is added."""
    rows = [(f"k{n:05d}", n) for n in range(2_500)]
    with db.write() as tx:
        upsert_together(tx, [(SUMS, rows)], ([(PAIRS, [("p", "q", 1)])], "n"))
        upsert(tx, SUMS, rows)
    assert table(db, "t_sums") == [(k, 2 * n) for k, n in rows]


def test_rows_of_one_kind_split_over_two_tables_come_back_together(db: Db) -> None:
    """The returning parts may be several tables with the same columns (a day's rows kept apart from older
    ones): every row of each comes back, as it stands after the statement, and the other parts are written."""
    with db.write() as tx:
        tx.run("CREATE TABLE t_pairs_too (a TEXT NOT NULL, b TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (a, b))")
        too = Upsert("t_pairs_too", PAIRS.columns, PAIRS.types, PAIRS.on_conflict.replace("t_pairs.", "t_pairs_too."))
        upsert(tx, too, [("y", "y", 1)])
        held = upsert_together(
            tx, [(SUMS, [("a", 1)])], ([(PAIRS, [("x", "x", 2)]), (too, [("y", "y", 3), ("z", "z", 4)])], "a, n")
        )
        assert sorted(tuple(r) for r in held) == [("x", 2), ("y", 4), ("z", 4)]
    assert table(db, "t_sums") == [("a", 1)] and table(db, "t_pairs") == [("x", "x", 2)]
    assert table(db, "t_pairs_too") == [("y", "y", 4), ("z", "z", 4)]


def test_every_kind_of_value_arrives_as_it_was_sent(db: Db) -> None:
    """PostgreSQL sends a column's values as one array, in binary: texts with the characters an array's text
    form quotes (braces, commas, quotes, backslashes, spaces, NULL as a word), other scripts, the empty text,
    and the widest integers come back unchanged, with NULLs where there were none to send."""
    keys = ["", "{a,b}", 'say "hi"', "back\\slash", " lead", "NULL", "ジャム", "x" * 3000]
    values = [0, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1, 7, 8]
    with db.write() as tx:
        upsert(tx, SUMS, sorted(zip(keys, values, strict=True)))
        held = upsert_together(
            tx, [], ([(PAIRS, [(k, "", v) for k, v in sorted(zip(keys, values, strict=True))])], "a, n")
        )
    assert sorted(tuple(r) for r in held) == sorted(zip(keys, values, strict=True))
    assert sorted(table(db, "t_sums")) == sorted(zip(keys, values, strict=True))
    with pytest.raises(IntegrityFailed), db.write() as tx:
        upsert(tx, SUMS, [("n", None)])  # a NULL is sent as one, not as the text 'None'


def test_a_placeholder_with_a_cast_goes_in_binary_the_others_as_text() -> None:
    """On PostgreSQL a ``?`` with an explicit cast (a bulk statement's arrays) is sent in binary: no text to
    quote and parse for each of a big array's elements; the others as text, whose type the server infers."""
    from hq.db.pg import _pg_sql

    got = _pg_sql("SELECT * FROM unnest(?::text[], ?::bigint[]) WHERE x = ? AND y = ANY(?)")
    assert got == "SELECT * FROM unnest(%b::text[], %b::bigint[]) WHERE x = %s AND y = ANY(%s)"
