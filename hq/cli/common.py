"""What every `tillpoint hq ...` command shares: the ``--db`` option, the store of one command, the way a
refusal ends a command, and the rows it prints."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer
from rich.markup import escape

from hq.errors import BackupFailed, KeyFileInvalid, MigrationBlocked, MigrationNeeded, NewerSchema
from terminal.console import make_console, table

if TYPE_CHECKING:
    from hq.store import HqStore

console = make_console()

_SETTINGS = re.compile(
    r"\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|target_session_attrs|connect_timeout|"
    r"application_name|options)\s*=",
    re.IGNORECASE,
)


def _database(value: str) -> str:
    """``--db``: a SQLite file, or PostgreSQL as a URL. libpq's ``key=value`` settings (``host=a,b dbname=hq``) would
    be taken for the name of a SQLite file, and a new, empty head office made under it: refused, saying how to
    write them as a URL."""
    if _SETTINGS.match(value):
        raise typer.BadParameter(
            "PostgreSQL is named by a URL, not by key=value settings: "
            "postgresql://USER@HOST[:PORT][,HOST2[:PORT]...]/DBNAME[?target_session_attrs=read-write&...] "
            "(anything else is taken for a SQLite file)"
        )
    return value


DbOpt = Annotated[
    str, typer.Option("--db", help="Head-office database: a SQLite file or postgresql://...", callback=_database)
]
ByOpt = Annotated[str, typer.Option("--by", help="Who makes the change (the audit log names them).")]
AuditReasonOpt = Annotated[str, typer.Option("--reason", help="Why (the audit log keeps it).")]
DEFAULT_DB = "var/hq/hq.db"


@contextmanager
def hq_store(
    db: str,
    *,
    create: bool = True,
    upgrade: bool = False,
    backup: bool = True,
    migration_lock_wait: float | None = None,
) -> Iterator[HqStore]:
    """The store for one command, closed however the command ends (a database this release cannot open,
    or whose upgrade backup failed, is said in one line; a failing one, by the ``hq`` group).

    A SQLite file that is not there is ``storage_missing`` for a command that only reads (``create=False``:
    a list, a check, a report would answer "nothing", "all clear" of a database made empty on the spot,
    and leave it behind); a command that writes makes it, and says so on stderr (a mistyped ``--db``, or a
    command run outside the directory head office runs in, is seen at once).

    A database lacking migrations of this release is refused, untouched (``migration_needed``): only
    ``tillpoint hq migrate`` (``upgrade``) and ``hq serve`` migrate one, so that no command run with a new release
    (a listing, a report) starts an upgrade, its backup and its long copies as a side effect."""
    from hq.db.schema import MIGRATION_LOCK_WAIT_S
    from hq.store import open_store

    sqlite = not db.startswith(("postgresql://", "postgres://"))
    made = sqlite and not Path(db).exists()
    if made and not create:
        fail(
            f"storage_missing: no head-office database at {Path(db).absolute()}: give --db the database head "
            "office runs on (the service's is /var/lib/tillpoint-hq/hq.db); nothing was made"
        )
    try:
        store = open_store(
            db,
            upgrade=upgrade,
            backup=backup,
            migration_lock_wait=MIGRATION_LOCK_WAIT_S if migration_lock_wait is None else migration_lock_wait,
        )
    except MigrationNeeded as exc:
        fail(
            f"{exc.code}: {exc}: run `tillpoint hq migrate --db {shown_db(db)}` first (it takes a backup, "
            "docs/deploy.md), then this command again; nothing was changed"
        )
    except NewerSchema as exc:
        fail(f"cannot open head office's database: {exc}")
    except (MigrationBlocked, BackupFailed) as exc:
        fail(f"{exc.code}: cannot open head office's database: {exc}")
    if made:
        typer.echo(f"made a new, empty head-office database at {Path(db).absolute()}", err=True)
    try:
        store.follow_chain_timezone()  # stores without a calendar of their own: the zone head office serves with
        yield store
    finally:
        store.close()


def shown_db(db: str) -> str:
    """The database as a command may show it: a PostgreSQL URL without its password, whether in its user part
    (``user:secret@host``) or its query (``?password=secret``, as libpq takes it too)."""
    if not db.startswith(("postgresql://", "postgres://")):
        return db
    parts = urlsplit(db)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':')[0]}@{hosts}" if at else hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def fail(message: object) -> NoReturn:
    """A refused command: the reason in red, exit status 1."""
    console.print(f"[red]{escape(str(message))}[/]")
    raise typer.Exit(1)


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_whole(path: Path, data: bytes) -> None:
    """Write the file ``path`` whole or not at all: the bytes go to a new hidden file beside it, synced to disk,
    then renamed over it (and the directory synced). A kill or a full disk mid-write leaves the file that was
    there, if any, as it was, and no part of a new one under its name. ``OSError`` when it cannot be written."""
    part = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode a plain write gives, by umask
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_problem(exc: OSError) -> str:
    """The stable code of a file a command could not write: ``disk_full`` (no space or quota left), else
    ``cannot_write`` (no such directory, a file in the way, no permission ...)."""
    return "disk_full" if exc.errno in DISK_FULL else "cannot_write"


StoreOpt = Annotated[
    str | None,
    typer.Option(help="The terminal's store: by default the one head office holds it in (S-001 for a new terminal)."),
]


def terminal_store(store: HqStore, terminal_id: str, store_id: str | None) -> str:
    """The store a command names for ``terminal_id``: the one head office holds it in when none is given (S-001 for a
    new terminal); another than that fails with ``wrong_store`` (a terminal belongs to one store)."""
    held = store.store_of(terminal_id)
    if held is not None and store_id is not None and store_id != held:
        fail(
            f"wrong_store: terminal {terminal_id} belongs to store {held}, not {store_id}: every entry of its till "
            "would name a store it is not of; a till moving store is enrolled again under a new terminal id; "
            "nothing was changed"
        )
    return store_id or held or "S-001"


def card_hash(uid: str, card_key_file: Path) -> str:
    """The keyed hash of the card with hex UID ``uid`` under the chain's card-hash key in ``card_key_file``; fails
    with ``key_file_invalid`` for a key file that cannot be read or holds no key, ``invalid_card`` for a bad UID."""
    from hq.store import read_key_file
    from terminal.credentials import card_uid_hash, parse_uid
    from terminal.keys import check_card_key

    try:
        key = read_key_file(card_key_file, "--card-key-file", check_card_key)
    except KeyFileInvalid as exc:
        fail(f"{exc.code}: {exc}")
    assert key is not None
    try:
        return card_uid_hash(key, parse_uid(uid))
    except ValueError as exc:
        fail(f"invalid_card: {exc}")


def as_day(text: str, *, not_after_today: bool = False) -> date:
    """An ``--as-of`` day (``YYYY-MM-DD``); exits with ``bad_day`` otherwise, or for a day after today (UTC)
    when asked (a change that cannot be undone)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        fail(f"bad_day: --as-of is a day, YYYY-MM-DD: {text!r}")
    if not_after_today and day > datetime.now(UTC).date():
        fail(f"bad_day: --as-of {text} is after today")
    return day


def read_json(file: Path) -> Any:
    """A JSON file a command was given; a file that cannot be read or is not JSON fails the command."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read {file}: {exc}")


def print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    console.print(table(columns, ([_cell(row.get(c)) for c in columns] for row in rows)))


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return "-" if value is None else str(value)


def more(cursor: str | None) -> None:
    """Say that there is more, and how to read it (on stderr: stdout stays the page itself)."""
    if cursor is not None:
        typer.echo(f"more: run again with --after {cursor}", err=True)
