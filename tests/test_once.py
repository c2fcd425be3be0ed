"""What the tests' processes make once (``tests.fixtures.once``) is what they would have made each time."""

from __future__ import annotations

import sqlite3
import ssl
from pathlib import Path

import httpx
import pytest
import typer
import typer.testing
from typer.testing import CliRunner

from tests.fixtures.once import context_of as _context
from tillpoint.cli import app


def test_clients_share_one_verifying_context_and_any_other_verify_is_made_as_asked() -> None:
    with httpx.Client() as one, httpx.Client() as two, httpx.Client(verify=False) as lax:
        shared = _context(one)
        assert _context(two) is shared
        assert shared.verify_mode is ssl.CERT_REQUIRED and shared.check_hostname
        assert shared.cert_store_stats()["x509_ca"] > 0  # the public CAs are in it
        assert _context(lax) is not shared and _context(lax).verify_mode is ssl.CERT_NONE


def test_the_test_runner_builds_an_app_once_and_runs_it_each_time() -> None:
    first = CliRunner().invoke(app, ["--help"])
    second = CliRunner().invoke(app, ["hq", "--help"])
    assert first.exit_code == 0 and "tap" in first.stdout
    assert second.exit_code == 0 and "serve" in second.stdout
    assert typer.testing._get_command(app) is typer.testing._get_command(app)
    assert typer.main.get_command(app) is not typer.main.get_command(app)  # the product's own builder is untouched


def _dump(path: Path, migrations: str = "hq_migrations") -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows (and the schema), but when each migration was applied."""
    conn = sqlite3.connect(path)
    try:
        tables = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        held = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
        held[migrations] = sorted(conn.execute(f'SELECT name FROM "{migrations}"').fetchall())
        held["schema"] = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=repr)
    finally:
        conn.close()
    return held


def test_a_new_head_office_database_from_the_template_is_the_one_made_from_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the template, filled in by ``HqStore`` on its clock, holds what migrating from nothing on the same
    clock makes: the schema, every migration, and the data the migrations left to head office."""
    from hq import store
    from hq.db import schema

    def clock() -> str:
        return "2026-02-28T23:59:00.000Z"

    copied = store.HqStore(str(tmp_path / "copied.db"), clock=clock)
    copied.close()
    assert store.open_db is not schema.open_db  # the copy came through the tests' template
    monkeypatch.setattr(store, "open_db", schema.open_db)
    made = store.HqStore(str(tmp_path / "made.db"), clock=clock)
    made.close()
    assert made.migrated.applied == [name for name, _ in schema.MIGRATIONS] and copied.migrated.applied == []
    assert copied.migrated.filled == made.migrated.filled == list(schema.SEEDED)
    assert _dump(tmp_path / "copied.db") == _dump(tmp_path / "made.db")
    assert (tmp_path / "copied.db").stat().st_mode & 0o777 == 0o600


def test_a_new_till_database_from_the_template_is_the_one_made_from_nothing(tmp_path: Path) -> None:
    """A till's database copied from the template holds what its migrations make on a file that is there (an empty
    one, which the template is never copied over), and is its owner's only, as the till makes it."""
    from terminal.store import store

    assert store.Store.open.__func__.__module__ == "tests.conftest"  # type: ignore[attr-defined]
    store.Store.open(tmp_path / "copied.db").close()
    sqlite3.connect(tmp_path / "made.db").close()
    store.Store.open(tmp_path / "made.db").close()
    made = _dump(tmp_path / "made.db", "_sqlite_migrations")
    assert _dump(tmp_path / "copied.db", "_sqlite_migrations") == made and len(made["_sqlite_migrations"]) >= 18
    assert (tmp_path / "copied.db").stat().st_mode & 0o777 == 0o600


def test_a_database_in_memory_is_no_copy_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hq.store import HqStore
    from terminal.store.store import Store

    monkeypatch.chdir(tmp_path)
    hq = HqStore(":memory:")
    assert hq.migrated.applied  # migrated from nothing
    hq.close()
    Store.open(":memory:").close()
    assert list(tmp_path.iterdir()) == []
