"""Adding rows to tables of sums, on either engine: one table in one statement, or several together (one
statement on PostgreSQL). The statistics and the report roll-up use it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hq.db.engine import Tx

UPSERT_ROWS = 1000
"""SQLite: rows a multi-row ``VALUES`` carries (its bound parameters stay within SQLite's limit)."""


@dataclass(frozen=True, slots=True)
class Upsert:
    """Adding rows to a table: its columns, their PostgreSQL types, and how a held row adds up."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    on_conflict: str


def _unnest(spec: Upsert, rows: Sequence[Sequence[Any]]) -> tuple[str, list[list[Any]]]:
    """PostgreSQL: ``spec``'s insert of ``rows`` sent as one array a column (a plan of a few nodes whatever the
    number of rows), and its parameters."""
    arrays = ", ".join(f"?::{t}[]" for t in spec.types)
    sql = f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) SELECT * FROM unnest({arrays}) {spec.on_conflict}"
    return sql, [list(column) for column in zip(*rows, strict=True)]


def _values(spec: Upsert, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
    """SQLite: ``spec``'s insert of ``rows`` as multi-row ``VALUES``, a statement per thousand rows."""
    one = "(" + ", ".join("?" * len(spec.columns)) + ")"
    for start in range(0, len(rows), UPSERT_ROWS):
        chunk = rows[start : start + UPSERT_ROWS]
        yield (
            f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) VALUES {', '.join([one] * len(chunk))} "
            f"{spec.on_conflict}",
            [v for row in chunk for v in row],
        )


def upsert(tx: Tx, spec: Upsert, rows: Sequence[Sequence[Any]]) -> None:
    """Add ``rows`` (distinct keys, in key order) to the table in one statement. PostgreSQL: the rows go as
    one array a column (``INSERT ... SELECT * FROM unnest(...)``: one round trip, a plan of a few nodes
    whatever the number of rows); SQLite: a multi-row ``VALUES`` per thousand rows."""
    upsert_together(tx, [(spec, rows)])


def upsert_returning(tx: Tx, spec: Upsert, rows: Sequence[Sequence[Any]], returning: str) -> list[tuple[Any, ...]]:
    """``upsert``, giving back the ``returning`` columns of each row as it stands after the statement."""
    return upsert_together(tx, [], ([(spec, rows)], returning))


Part = tuple[Upsert, Sequence[Sequence[Any]]]


def upsert_together(
    tx: Tx, parts: Sequence[Part], returning: tuple[Sequence[Part], str] | None = None
) -> list[tuple[Any, ...]]:
    """Several upserts, each into its own table, and the rows of ``returning``'s parts as they stand after it
    (its columns, which each of those tables has: one table's rows, or one kind of row split over tables).
    PostgreSQL: one statement, one round trip (each part a data-modifying ``WITH``; a push's statistics are
    four tables); SQLite: one after the other (no round trip to save). Parts without rows are left out."""
    todo = [(spec, rows) for spec, rows in parts if rows]
    back = [(spec, rows) for spec, rows in (returning[0] if returning else ()) if rows]
    if not todo and not back:
        return []
    if tx.dialect != "postgres":
        return _one_after_another(tx, todo, back, f" RETURNING {returning[1]}" if returning else "")
    first = [_unnest(spec, rows) for spec, rows in todo]
    if not back:  # the last part is the statement, the others its data-modifying WITHs
        *first, (sql, values) = first
        statement, tail_params = sql, values
    else:  # each returning part a WITH too, their rows given back together
        columns = returning[1] if returning else ""
        returned = [_unnest(spec, rows) for spec, rows in back]
        first += [(f"{sql} RETURNING {columns}", values) for sql, values in returned]
        statement = " UNION ALL ".join(f"SELECT {columns} FROM u{len(todo) + n}" for n in range(len(back)))
        tail_params = []
    ctes = ", ".join(f"u{n} AS ({sql})" for n, (sql, _) in enumerate(first))
    params = [v for _, values in first for v in values] + tail_params
    statement = (f"WITH {ctes} " if ctes else "") + statement
    if back:
        return tx.all(statement, params)
    tx.run(statement, params)
    return []


def _one_after_another(tx: Tx, todo: Sequence[Part], back: Sequence[Part], tail: str) -> list[tuple[Any, ...]]:
    """SQLite: each part's statements in turn; the parts of ``back`` give back ``tail``'s columns."""
    for spec, rows in todo:
        for sql, params in _values(spec, rows):
            tx.run(sql, params)
    out: list[tuple[Any, ...]] = []
    for spec, rows in back:
        for sql, params in _values(spec, rows):
            out += tx.all(sql + tail, params)
    return out
