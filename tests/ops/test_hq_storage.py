"""Head office's SQLite database damaged, on a full disk, or on a file system gone read-only: each command and
``hq serve`` says so in one line that starts with a stable code (``storage_damaged``, ``storage_full``,
``storage_read_only``), exits 1 without a traceback, changes nothing, and works again once the cause is gone.
Real processes, a real tmpfs, a file damaged as a bad sector would."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from hq.db.schema import MIGRATIONS
from tests.fixtures.hq import command, migrated_before, tillpoint
from tests.ops.helpers import corrupt_table, fill, hq_database, integrity, read_only
from tests.ports import free_port


def said(done: subprocess.CompletedProcess[str], code: str) -> str:
    """The command failed with ``code`` first, in one line, and no traceback; returns what it said."""
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, text
    assert "Traceback" not in text, text
    assert text.startswith(code), text
    return text


def terminals(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT terminal_id FROM terminals ORDER BY terminal_id")]
    finally:
        conn.close()


def test_a_damaged_database_is_refused_by_every_command_and_by_serve(tmp_path: Path) -> None:
    db = tmp_path / "hq.db"
    hq_database(db)
    corrupt_table(db, "journal")  # a table these commands never read: only a check of the whole file finds it
    said(tillpoint("hq", "stats", "roll", "--to", "2026-03-01", "--db", str(db)), "storage_damaged")
    said(tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db)), "storage_damaged")
    served = said(tillpoint("hq", "serve", "--db", str(db), "--port", str(free_port())), "storage_damaged")
    assert "restore the latest backup" in served


def test_a_full_disk_is_said_as_storage_full_and_nothing_changes(tmp_path: Path, small_disk: Path) -> None:
    db = small_disk / "hq.db"
    hq_database(db, members=50)
    filler = fill(small_disk)
    said(tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db)), "storage_full")
    filler.unlink()
    assert terminals(db) == ["T-1"]
    done = tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert terminals(db) == ["T-1", "T-2"]


def applied(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return len(conn.execute("SELECT name FROM hq_migrations").fetchall())
    finally:
        conn.close()


def test_a_backup_the_disk_has_no_room_for_leaves_no_file_and_migrates_nothing(small_disk: Path) -> None:
    """The backup before a migration, on a disk with room for the migration's first writes but not for a copy:
    ``backup_failed``, nothing migrated, and no file beside the database that looks like a backup (it held an
    empty or cut copy). Once there is room, the next start backs up and migrates."""
    db = small_disk / "hq.db"
    migrated_before(str(db), MIGRATIONS[-1][0]).close()
    filler = fill(small_disk)
    filler.write_bytes(b"\0" * (filler.stat().st_size - 256 * 1024))  # room for a few pages, not for a copy
    said(tillpoint("hq", "migrate", "--db", str(db)), "backup_failed")
    assert sorted(p.name for p in small_disk.iterdir() if p.name.startswith("hq.db.pre-")) == []
    assert applied(db) == len(MIGRATIONS) - 1 and integrity(db) == "ok"
    filler.unlink()
    done = tillpoint("hq", "migrate", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert applied(db) == len(MIGRATIONS) and len(list(small_disk.glob("hq.db.pre-*"))) == 1


def test_a_read_only_file_system_is_said_as_storage_read_only(tmp_path: Path, small_disk: Path) -> None:
    db = small_disk / "hq.db"
    hq_database(db, members=50)
    with read_only(small_disk):
        said(tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db)), "storage_read_only")
        said(tillpoint("hq", "serve", "--db", str(db), "--port", str(free_port())), "storage_read_only")
        fresh = small_disk / "branch" / "hq.db"  # a new database on it: its directory cannot be made
        said(tillpoint("hq", "add-terminal", "T-1", "--store-id", "S-1", "--db", str(fresh)), "storage_read_only")
    done = tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert terminals(db) == ["T-1", "T-2"]


def test_postgresql_failures_are_named_by_their_sqlstate() -> None:
    from psycopg import errors as pg_errors

    from hq.db.pg import storage_problem

    assert storage_problem(pg_errors.DiskFull("no space left on device")) == "storage_full"
    assert storage_problem(pg_errors.ReadOnlySqlTransaction("a standby")) == "storage_read_only"
    assert storage_problem(pg_errors.DataCorrupted("invalid page")) == "storage_damaged"
    assert storage_problem(pg_errors.IndexCorrupted("index corrupted")) == "storage_damaged"
    assert storage_problem(pg_errors.UndefinedTable("no such table")) == "storage_failed"


def test_a_tills_database_given_as_head_offices_is_refused_untouched(tmp_path: Path) -> None:
    """``--db`` pointed at a till's ``terminal.db``: ``storage_failed`` naming it as not head office's, and
    nothing of head office's is added to the till's file."""
    from terminal.store import Store

    till = tmp_path / "terminal.db"
    Store.open(till).close()
    before = sqlite3.connect(till).execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    text = said(tillpoint("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(till)), "storage_failed")
    assert "not a head-office database" in text, text
    assert sqlite3.connect(till).execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == before


def test_postgresql_down_is_a_503_within_a_tills_timeout_and_a_page_in_the_back_office(tmp_path: Path) -> None:
    """PostgreSQL stops under a running head office (a cluster of this test's own, stopped as a crash would):
    a till's push hears ``storage_unavailable`` (503) within its own 5 s timeout, so it retries later rather
    than time out; the back office and the wallet answer with their own pages, not the API's JSON."""
    import httpx

    from hq.api.deps import SESSION_COOKIE
    from hq.api.server import start_in_thread
    from hq.store import HqStore
    from tests.fixtures.postgres import PgServer

    server = PgServer().start()
    try:
        hq = HqStore(server.fresh_schema())
        token = hq.add_terminal("T-1", "S-1")
        handle = start_in_thread(hq)
        try:
            server._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "-t", "30", "stop")
            push = httpx.post(
                f"{handle.url}/v1/journal",
                json={"terminal_id": "T-1", "entries": []},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,  # what a till allows by default ([hq] timeout)
            )
            assert (push.status_code, push.json()["code"]) == (503, "storage_unavailable"), push.text
            browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's navigation sends
            page = httpx.post(
                f"{handle.url}/backoffice/sign-in",
                data={"staff_id": "mio", "password": "a long staff password"},
                headers={"Origin": handle.url, **browser},
                timeout=5,
            )
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html"), page.text[:300]
            assert 'data-code="storage_unavailable"' in page.text
            cookies = {SESSION_COOKIE: "a-session"}
            wallet = httpx.get(f"{handle.url}/wallet/", cookies=cookies, headers=browser, timeout=5)
            assert wallet.status_code == 503 and wallet.headers["content-type"].startswith("text/html"), wallet.text
            assert 'data-code="storage_unavailable"' in wallet.text and "Head office cannot be reached" in wallet.text
            script = httpx.get(f"{handle.url}/wallet/devices", cookies=cookies, timeout=5)  # the pay page's fetch
            assert (script.status_code, script.json()["code"]) == (503, "storage_unavailable")
            join = httpx.get(f"{handle.url}/join", headers=browser, timeout=5)  # a receipt's QR opened on a phone
            assert join.status_code == 503 and join.headers["content-type"].startswith("text/html"), join.text
            assert 'data-code="storage_unavailable"' in join.text
        finally:
            handle.stop()
            hq.close()
    finally:
        server.stop()


def test_a_storage_failure_of_any_kind_is_storage_unavailable_to_the_api() -> None:
    """A deadlock still failing after its retries is a storage failure too, not an internal error."""
    from hq.api.errors import code_of
    from hq.errors import HqError, RetryableFailed, StorageFailed
    from sync.protocol import ErrorCode

    assert code_of(RetryableFailed("deadlock detected, five times")) is ErrorCode.STORAGE_UNAVAILABLE
    assert code_of(StorageFailed("disk full", "storage_full")) is ErrorCode.STORAGE_UNAVAILABLE
    assert code_of(HqError("something else")) is ErrorCode.INTERNAL


def emptied(tmp_path: Path) -> Path:
    """A head office's file cut to nothing (a restore or copy cut short, ``> hq.db``) after it held a chain."""
    db = tmp_path / "hq.db"
    hq_database(db, members=50)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    db.write_bytes(b"")
    return db


def test_a_command_on_an_emptied_database_says_so_and_makes_nothing_in_its_place(tmp_path: Path) -> None:
    """SQLite takes an empty file for a new database: ``ledger check`` answered "all clear" of an empty chain
    and left a new database where the chain's was."""
    db = emptied(tmp_path)
    for args in (("ledger", "check"), ("add-member", "M-NEW", "New")):
        done = command("hq", *args, "--db", str(db))  # in this process: the command's own code and output
        said = (done.stdout + done.stderr).strip()
        assert done.returncode == 1 and "storage_damaged" in said and "empty file" in said, said
        assert "Traceback" not in said
    assert db.stat().st_size == 0


def test_serve_refuses_an_emptied_database(tmp_path: Path) -> None:
    """Head office serving an empty chain in place of its own: every till refused as unknown."""
    db = emptied(tmp_path)
    served = tillpoint("hq", "serve", "--db", str(db), "--port", str(free_port()))  # a serving one: timed out
    said = served.stdout + served.stderr
    assert served.returncode == 1 and "empty file" in said and "Traceback" not in said, said
    assert db.stat().st_size == 0


def test_serve_refuses_key_files_it_cannot_use(tmp_path: Path) -> None:
    """A card key file cut short, emptied, of the wrong form or missing: head office does not start (it would hash
    cards with a short key and fail the first card payment, or verify no SUN card at all), in one line."""
    db = str(tmp_path / "hq.db")
    (tmp_path / "short.key").write_bytes(b"0123456789")
    (tmp_path / "empty.key").write_bytes(b"")
    (tmp_path / "sun.key").write_text("not a key\n")
    for run, option, name, problem in (
        (tillpoint, "--sun-key-file", "sun.key", "16 raw bytes or 32 hex digits"),  # as an operator starts it
        (command, "--sun-key-file", "none.key", "cannot be read"),  # the others in this process: the same code
        (command, "--card-key-file", "short.key", "shorter than 16 bytes"),
        (command, "--card-key-file", "empty.key", "shorter than 16 bytes"),
        (command, "--seed-demo-key", "short.key", "shorter than 16 bytes"),
    ):
        served = said(
            run("hq", "serve", "--db", db, "--port", str(free_port()), option, str(tmp_path / name)),
            "key_file_invalid",
        )
        assert option in served and problem in served, served
    assert (tmp_path / "empty.key").read_bytes() == b""  # nothing made in its place
