"""`tillpoint hq migrate` (docs/deploy.md, "Upgrades"): it applies what the database lacks, after a backup, and says
which (a table, or ``--json``); every other command but ``serve`` refuses a database lacking migrations, untouched,
with ``migration_needed`` naming the command to run; a new database is still made by any command that writes.

A database as the release before the newest migration left it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from hq.db.schema import MIGRATIONS
from tests.fixtures.hq import command, migrated_before
from tests.fixtures.postgres import PgServer, pg_bindir, pg_server  # noqa: F401 - fixture

NEWEST = MIGRATIONS[-1][0]


def release_before(url: str) -> None:
    migrated_before(url, NEWEST).close()


def refused_untouched(url: str) -> None:
    said = command("hq", "terminals", "--db", url)
    assert said.returncode == 1, said.stdout
    text = " ".join(said.stdout.split())
    assert text.startswith("migration_needed:") and NEWEST in text and "tillpoint hq migrate --db" in text, text
    said = command("hq", "add-terminal", "T-1", "--store-id", "S-1", "--db", url)  # a writing command too
    assert said.returncode == 1 and "migration_needed" in said.stdout, said.stdout


def test_sqlite_is_migrated_by_the_command_after_a_backup_and_refused_by_others_before(tmp_path: Path) -> None:
    db = str(tmp_path / "hq" / "hq.db")
    release_before(db)
    refused_untouched(db)
    assert not list((tmp_path / "hq").glob("hq.db.pre-*"))

    said = command("hq", "migrate", "--db", db)
    assert said.returncode == 0, said.stdout
    assert NEWEST in said.stdout and "applied 1 migration(s)" in " ".join(said.stdout.split()), said.stdout
    [backup] = (tmp_path / "hq").glob(f"hq.db.pre-{NEWEST}-*")
    assert str(backup) in "".join(said.stdout.split())
    again = command("hq", "migrate", "--db", db, "--json")
    assert json.loads(again.stdout) == {
        "database": db,
        "applied": [],
        "filled": [],
        "backup": None,
        "schema": NEWEST,
    }
    assert command("hq", "add-terminal", "T-1", "--store-id", "S-1", "--db", db).returncode == 0

    fresh = str(tmp_path / "new" / "hq.db")  # a new database: any writing command still makes it whole
    assert command("hq", "add-terminal", "T-1", "--store-id", "S-1", "--db", fresh).returncode == 0
    assert json.loads(command("hq", "migrate", "--db", fresh, "--json").stdout)["applied"] == []


@pytest.mark.postgres
def test_postgresql_is_migrated_from_the_command_line_and_refused_by_others_before(
    pg_server: PgServer,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    url = pg_server.fresh_hq_database()
    release_before(url)
    refused_untouched(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM hq_migrations WHERE name = %s", [NEWEST]).fetchone() is None

    env = {**os.environ, "PATH": f"{pg_bindir()}:{os.environ['PATH']}", "TILLPOINT_HQ_BACKUP_DIR": str(tmp_path)}
    said = subprocess.run(  # as an operator runs it
        [sys.executable, "-m", "tillpoint.cli", "hq", "migrate", "--db", url, "--no-backup"]
        + ["--migration-lock-wait", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert said.returncode == 0, said.stdout + said.stderr
    report = json.loads(said.stdout)
    assert (report["applied"], report["backup"], report["schema"]) == ([NEWEST], None, NEWEST)
    assert not list(tmp_path.glob("hq-pre-*"))  # --no-backup: none taken
    assert command("hq", "terminals", "--db", url).returncode == 0


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("var/hq/hq.db", "var/hq/hq.db"),
        ("postgresql://hq:s3cret@db.example:5432/hq", "postgresql://hq@db.example:5432/hq"),
        ("postgresql://hq@db1,db2/hq?password=s3cret&sslmode=require", "postgresql://hq@db1,db2/hq?sslmode=require"),
        ("postgres://db.example/hq", "postgres://db.example/hq"),
    ],
)
def test_a_command_shows_the_database_without_its_password(given: str, shown: str) -> None:
    """What `hq migrate` prints and a refusal names (``migration_needed``): never the password, in the URL's user
    part or in its query as libpq also takes it."""
    from hq.cli.common import shown_db

    assert shown_db(given) == shown
    assert "s3cret" not in shown_db(given)
