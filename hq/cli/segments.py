"""`tillpoint hq segment ...`: segments as data (docs/segments.md): store a definition, show, list,
delete, and preview who is in one on a day."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hq.cli.common import DEFAULT_DB, DbOpt, console, fail, hq_store, print_rows, read_json
from terminal.console import JsonOpt

app = typer.Typer(name="segment", help="Segments of members as data: put, show, list, delete, preview.")


@app.command("put")
def put(
    segment_id: str,
    file: Annotated[Path, typer.Argument(help='The definition: {"where": {...}, "description": "..."}.')],
    name: Annotated[str | None, typer.Option(help="A name people read (default: the id).")] = None,
    by: Annotated[str, typer.Option(help="Who stores it.")] = "head office",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Check a definition and store it under ID (replacing what was there). Prints JSON."""
    from hq.segments import SegmentInvalid, save

    data = read_json(file)
    with hq_store(db) as store:
        try:
            done = save(store.db, segment_id, name or segment_id, data, by)
        except SegmentInvalid as exc:
            fail(exc)
    print(json.dumps(done))


@app.command("show")
def show(segment_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A stored segment and its definition. Prints JSON."""
    from hq.segments import UnknownSegment
    from hq.segments import show as shown

    with hq_store(db, create=False) as store:
        try:
            print(json.dumps(shown(store.db, segment_id), indent=2))
        except UnknownSegment as exc:
            fail(exc)


@app.command("list")
def listed(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Every stored segment."""
    from hq.segments import all_segments

    with hq_store(db, create=False) as store:
        rows = all_segments(store.db)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows, ["segment_id", "name", "version", "updated_at", "created_by"])


@app.command("delete")
def delete(segment_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Delete a stored segment. Prints JSON."""
    from hq.segments import UnknownSegment, remove

    with hq_store(db) as store:
        try:
            remove(store.db, segment_id)
        except UnknownSegment as exc:
            fail(exc)
    print(json.dumps({"segment_id": segment_id, "deleted": True}))


@app.command("preview")
def preview(
    segment_id: str,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The reference day YYYY-MM-DD (default: today, UTC).")
    ] = None,
    sample: Annotated[int, typer.Option(min=0, max=1000, help="How many member ids to show.")] = 20,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """How many members a stored segment holds on a day, and the first of them by member id."""
    from hq.segments import SegmentInvalid, UnknownSegment, preview_saved

    with hq_store(db, create=False) as store:
        try:
            found = preview_saved(store.db, segment_id, as_of, sample)
        except (SegmentInvalid, UnknownSegment) as exc:
            fail(exc)
    if as_json:
        print(json.dumps(found))
        return
    console.print(f"{segment_id} on {found['as_of']}: [bold]{found['count']}[/] members")
    for member_id in found["sample"]:
        console.print(f"  {member_id}", highlight=False, markup=False)
