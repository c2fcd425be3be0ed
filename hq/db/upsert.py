"""Adding rows to a table of sums in one statement, on either engine (the statistics and the report roll-up)."""

from __future__ import annotations

from collections.abc import Sequence
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


def upsert(tx: Tx, spec: Upsert, rows: Sequence[Sequence[Any]]) -> None:
    """Add ``rows`` (distinct keys, in key order) to the table in one statement. PostgreSQL: the rows go as
    one array a column (``INSERT ... SELECT * FROM unnest(...)``: one round trip, a plan of a few nodes
    whatever the number of rows); SQLite: a multi-row ``VALUES`` per thousand rows."""
    if not rows:
        return
    head = f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) "
    if tx.dialect == "postgres":
        arrays = ", ".join(f"?::{t}[]" for t in spec.types)
        columns = [list(column) for column in zip(*rows, strict=True)]
        tx.run(f"{head}SELECT * FROM unnest({arrays}) {spec.on_conflict}", columns)
        return
    for start in range(0, len(rows), UPSERT_ROWS):
        chunk = rows[start : start + UPSERT_ROWS]
        one = "(" + ", ".join("?" * len(spec.columns)) + ")"
        tx.run(f"{head}VALUES {', '.join([one] * len(chunk))} {spec.on_conflict}", [v for row in chunk for v in row])


def upsert_returning(tx: Tx, spec: Upsert, rows: Sequence[Sequence[Any]], returning: str) -> list[tuple[Any, ...]]:
    """``upsert``, giving back the ``returning`` columns of each row as it stands after the statement."""
    if not rows:
        return []
    head = f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) "
    if tx.dialect == "postgres":
        arrays = ", ".join(f"?::{t}[]" for t in spec.types)
        columns = [list(column) for column in zip(*rows, strict=True)]
        return tx.all(f"{head}SELECT * FROM unnest({arrays}) {spec.on_conflict} RETURNING {returning}", columns)
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), UPSERT_ROWS):
        chunk = rows[start : start + UPSERT_ROWS]
        one = "(" + ", ".join("?" * len(spec.columns)) + ")"
        values = [v for row in chunk for v in row]
        out += tx.all(f"{head}VALUES {', '.join([one] * len(chunk))} {spec.on_conflict} RETURNING {returning}", values)
    return out
