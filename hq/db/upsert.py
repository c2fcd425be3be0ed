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
    return upsert_together(tx, [], (spec, rows, returning))


Part = tuple[Upsert, Sequence[Sequence[Any]]]


def upsert_together(
    tx: Tx, parts: Sequence[Part], last: tuple[Upsert, Sequence[Sequence[Any]], str] | None = None
) -> list[tuple[Any, ...]]:
    """Several upserts, each into its own table, and ``last``'s rows as they stand after it (its ``returning``
    columns). PostgreSQL: one statement, one round trip (each part a data-modifying ``WITH``; a push's
    statistics are four tables); SQLite: one after the other (no round trip to save). Parts without rows
    are left out."""
    todo = [(spec, rows) for spec, rows in parts if rows]
    tail = ""
    if last is not None and last[1]:
        todo.append((last[0], last[1]))
        tail = f" RETURNING {last[2]}"
    if not todo:
        return []
    if tx.dialect != "postgres":
        return _one_after_another(tx, todo, tail)
    ctes, params = [], []
    for n, (spec, rows) in enumerate(todo[:-1]):
        sql, values = _unnest(spec, rows)
        ctes.append(f"u{n} AS ({sql})")
        params += values
    sql, values = _unnest(*todo[-1])
    statement = (f"WITH {', '.join(ctes)} " if ctes else "") + sql + tail
    if tail:
        return tx.all(statement, params + values)
    tx.run(statement, params + values)
    return []


def _one_after_another(tx: Tx, todo: Sequence[Part], tail: str) -> list[tuple[Any, ...]]:
    """SQLite: each part's statements in turn; the last part's rows give back ``tail``'s columns."""
    out: list[tuple[Any, ...]] = []
    for n, (spec, rows) in enumerate(todo):
        for sql, params in _values(spec, rows):
            if tail and n == len(todo) - 1:
                out += tx.all(sql + tail, params)
            else:
                tx.run(sql, params)
    return out
