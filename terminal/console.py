"""What every `tillpoint` command prints with, the till's and head office's alike: the console, tables
that never cut an id, one JSON document for ``--json``, and the one-line refusal of a busy port."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sync.asgi import bind
from terminal.errors import PortBusy

UNBOUNDED = 10_000  # columns of output that is not a terminal: wide enough that nothing is ever cut
EXIT_PORT_BUSY = 3  # a port the daemon or the demo needs is taken by another program (nothing was started)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


def make_console(stderr: bool = False) -> Console:
    """The CLI's console: a terminal's own width on a terminal; elsewhere (a pipe, a file, a log) as wide
    as the text, so that no id is cut and no line is wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNBOUNDED, soft_wrap=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> Table:
    """A table that never cuts a value: ids stay on one line (folded, whole, only on a terminal narrower
    than one id), other columns wrap."""
    shown = Table(title=title)
    for name in columns:
        shown.add_column(name, no_wrap=_is_id(name), overflow="fold")
    for row in rows:  # cells are data (ids, names, what a till or a receipt said): shown as they are, never markup
        shown.add_row(*(Text(cell) for cell in row))
    return shown


def _is_id(column: str) -> bool:
    return column.endswith("id") or column in ("card UID", "txn", "item", "day", "seq", "seqs")


def show_json(data: Any) -> None:
    """One JSON document on stdout: what every ``--json`` prints."""
    print(json.dumps(data, indent=2))


def port_busy(exc: PortBusy, what: str, option: str) -> NoReturn:
    """One line on stderr naming the port and how to choose another; exit status ``EXIT_PORT_BUSY``."""
    make_console(stderr=True).print(
        f"[red]port_busy:[/] port {exc.port} on {exc.host} ({what}) is already in use by another "
        f"program; choose another with {escape(option)}",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_PORT_BUSY) from exc


def check_port(host: str, port: int, what: str, option: str) -> None:
    """Refuse at once a port another program listens on (before anything of ours starts)."""
    try:
        bind(host, port).close()
    except PortBusy as exc:
        port_busy(exc, what, option)
