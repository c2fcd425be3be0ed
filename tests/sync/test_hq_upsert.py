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
            (PAIRS, [("x", "y", 5), ("x", "z", 6)], "a, b, n"),
        )
        assert sorted(tuple(r) for r in held) == [("x", "y", 5), ("x", "z", 6)]
        again = upsert_together(tx, [], (PAIRS, [("x", "y", -2)], "a, b, n"))
        assert [tuple(r) for r in again] == [("x", "y", 3)]  # the row as it stands after the statement
    assert table(db, "t_sums") == [("a", 11), ("b", 2), ("c", 3)]
    assert table(db, "t_pairs") == [("x", "y", 3), ("x", "z", 6)]


def test_nothing_to_add_writes_nothing_and_gives_nothing_back(db: Db) -> None:
    with db.write() as tx:
        assert upsert_together(tx, [(SUMS, []), (PAIRS, [])], (PAIRS, [], "a")) == []
        assert upsert_together(tx, [(SUMS, [("a", 1)])], (PAIRS, [], "a")) == []  # the parts still go
    assert table(db, "t_sums") == [("a", 1)] and table(db, "t_pairs") == []


def test_a_failing_part_adds_nothing_of_the_others(db: Db) -> None:
    """One statement on PostgreSQL, one transaction on both: a row breaking a table's constraint leaves every
    table as it was."""
    with pytest.raises(IntegrityFailed), db.write() as tx:
        upsert_together(tx, [(SUMS, [("a", 1)])], (PAIRS, [("x", "y", None)], "a"))  # n is NOT NULL
    assert table(db, "t_sums") == [] and table(db, "t_pairs") == []


def test_many_rows_go_in_one_call(db: Db) -> None:
    """More rows than one SQLite statement carries (a thousand): every one is added."""
    rows = [(f"k{n:05d}", n) for n in range(2_500)]
    with db.write() as tx:
        upsert_together(tx, [(SUMS, rows)], (PAIRS, [("p", "q", 1)], "n"))
        upsert(tx, SUMS, rows)
    assert table(db, "t_sums") == [(k, 2 * n) for k, n in rows]
