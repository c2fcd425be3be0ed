"""Upgrades keep data. Databases written by release 0.1.0 (`tests/fixtures/upgrade/0.1.0`, made by that
release's own code with `make.py`) are started by this release as a store PC and a head-office server
start them: head office and the till migrate at start after a backup, every balance and journal row
is kept, the till's unpushed sales then reach head office exactly once. A database a newer release
migrated is refused untouched, with a clear message; on PostgreSQL the backup is a pg_dump archive."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from sqlite_utils import Database

from hq.db.schema import MIGRATIONS, open_db, run_statement
from hq.errors import NewerSchema, StorageFailed
from hq.store import HqStore
from terminal.errors import Code, Rejected
from terminal.store import Store
from terminal.store.schema import known_names, migrations
from tests.fixtures.hq import HqProcess, tillpoint
from tests.fixtures.postgres import PgServer, pg_bindir, pg_server  # noqa: F401 - fixture
from tests.ops.helpers import Api, NotifyListener, TillProcess, fill, till_config, wait_until

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade" / "0.1.0"
CARD_KEY = bytes(range(32))  # what make.py hashed the demo cards with


def rows(path: Path, sql: str) -> list[list[object]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return [list(r) for r in conn.execute(sql)]


def digest(path: Path) -> str:
    """The database's whole content (schema and rows), whatever its WAL holds or a checkpoint moved."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A copy of the release's files laid out as on a store PC that is also its head office."""
    (tmp_path / "hq").mkdir()
    (tmp_path / "till").mkdir()
    shutil.copy(RELEASE / "hq.db", tmp_path / "hq" / "hq.db")
    shutil.copy(RELEASE / "terminal.db", tmp_path / "till" / "terminal.db")
    key = tmp_path / "card-hash.key"
    key.write_bytes(CARD_KEY)
    key.chmod(0o600)
    return tmp_path


def test_the_release_upgrades_in_place_and_keeps_every_row(release: Path) -> None:
    expected = json.loads((RELEASE / "expected.json").read_text())
    hq_db = release / "hq" / "hq.db"
    hq = HqProcess(release, str(hq_db))
    hq.start()  # `tillpoint hq serve` migrates the release's file at start
    notify = NotifyListener(release / "notify.sock")
    till: TillProcess | None = None
    try:
        backups = list((release / "hq").glob("hq.db.pre-*"))
        assert len(backups) == 1  # the file as the release left it, before any migration
        assert "m006_signal" not in {r[0] for r in rows(backups[0], "SELECT name FROM hq_migrations")}
        assert (
            rows(
                backups[0],
                "SELECT terminal_id, seq, txn_id, kind, payload, created_at FROM journal ORDER BY terminal_id, seq",
            )
            == expected["hq"]["journal"]
        )
        assert "m007_fleet" in {r[0] for r in rows(hq_db, "SELECT name FROM hq_migrations")}
        assert (
            rows(hq_db, "SELECT member_id, points, stored_value, tier, status FROM members ORDER BY member_id")
            == expected["hq"]["members"]
        )
        assert (
            rows(
                hq_db,
                "SELECT terminal_id, seq, txn_id, kind, payload, created_at FROM journal ORDER BY terminal_id, seq",
            )
            == expected["hq"]["journal"]
        )

        token = hq.add_terminal("T-UP", "S-UP")  # a new credential for the till (the release's was shown once)
        till_db = release / "till" / "terminal.db"
        had = {r[0] for r in rows(till_db, "SELECT name FROM _sqlite_migrations")}
        till = TillProcess(till_config(release, hq, token, "T-UP"), notify)
        till.start()  # `tillpoint run` migrates terminal.db at start (after a copy, when it has anything to do)
        till_backups = list((release / "till").glob("terminal.db.pre-*"))
        assert len(till_backups) == (0 if had == known_names() else 1)
        for copy in till_backups:
            assert (
                rows(
                    copy,
                    "SELECT seq, txn_id, terminal_id, kind, payload, created_at, pushed_at FROM journal ORDER BY seq",
                )
                == expected["till"]["journal"]
            )

        api = Api(till)
        try:
            wait_until(lambda: api.status()["pending"] == 0, 30, "the release's unpushed sales at head office")
        finally:
            api.close()
        till.stop()
        kept = rows(till_db, "SELECT seq, txn_id, terminal_id, kind, payload, created_at FROM journal ORDER BY seq")
        assert kept == [r[:6] for r in expected["till"]["journal"]]  # every row, unchanged
        at_hq = rows(
            hq_db,
            "SELECT seq, txn_id, terminal_id, kind, payload, created_at FROM journal "
            "WHERE terminal_id = 'T-UP' ORDER BY seq",
        )
        assert [r[:4] + [json.loads(str(r[4]))] + r[5:] for r in at_hq] == [
            r[:4] + [json.loads(str(r[4]))] + r[5:] for r in kept
        ]  # the unpushed ones arrived, each once
        # Balances: head office now holds what the till held (its cache counted the unpushed sales).
        till_view = {r[0]: r[1] for r in expected["till"]["members"]}
        hq_points = dict(rows(hq_db, "SELECT member_id, points FROM members"))
        assert {m: hq_points[m] for m in till_view} == till_view
        assert dict(rows(till_db, "SELECT member_id, points FROM members")) == till_view
    finally:
        if till is not None:
            till.kill()
        notify.close()
        hq.kill()


def test_the_till_copies_its_database_before_a_migration(tmp_path: Path) -> None:
    """A terminal.db one migration behind (as the release before the newest schema change left it):
    opening it copies it first, then migrates; only the newest copies are kept."""
    path = tmp_path / "terminal.db"
    names = [m.name for m in migrations._migrations]
    for round_ in range(3):
        path.unlink(missing_ok=True)
        with closing(sqlite3.connect(path)) as conn:
            db = Database(conn)
            migrations.apply(db, stop_before=names[-1])
            conn.execute(
                "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) "
                "VALUES (?, ?, 'T-1', 'sale', '{}', '2026-01-01T00:00:00.000Z')",
                (1, f"tx-{round_}"),
            )
            conn.commit()
        store = Store.open(path, repair=True)
        store.close()
        copies = sorted(tmp_path.glob(f"terminal.db.pre-{names[-1]}-*"))
        assert copies and rows(copies[-1], "SELECT txn_id FROM journal") == [[f"tx-{round_}"]]
        assert names[-1] in {r[0] for r in rows(path, "SELECT name FROM _sqlite_migrations")}
        assert rows(path, "SELECT txn_id FROM journal") == [[f"tx-{round_}"]]
    assert len(list(tmp_path.glob("terminal.db.pre-*"))) == 2  # the two newest, each one whole file


def test_a_database_from_a_newer_release_is_refused_untouched(release: Path) -> None:
    till_db, hq_db = release / "till" / "terminal.db", release / "hq" / "hq.db"
    with sqlite3.connect(till_db) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('tillpoint.terminal', 'm999_from_the_future', '2027-01-01')"
        )
    with sqlite3.connect(hq_db) as conn:
        conn.execute("INSERT INTO hq_migrations (name, applied_at) VALUES ('m999_from_the_future', '2027-01-01')")
    before = digest(till_db), digest(hq_db)

    with pytest.raises(Rejected) as refused:
        Store.open(till_db, repair=True)
    assert refused.value.code is Code.STORAGE_NEWER and "m999_from_the_future" in str(refused.value)
    with pytest.raises(NewerSchema):
        HqStore(str(hq_db))
    served = tillpoint("hq", "serve", "--db", str(hq_db), "--port", "1")
    assert served.returncode == 1 and "upgraded by a newer tillpoint" in served.stdout
    assert "Traceback" not in served.stderr
    config = till_config(release, None, None, "T-UP")
    started = tillpoint("run", "--config", str(config))
    said = started.stdout + started.stderr
    assert started.returncode == 1 and "newer tillpoint" in said, said
    assert "Traceback" not in started.stderr
    assert (digest(till_db), digest(hq_db)) == before  # nothing written
    assert not list(release.rglob("*.pre-*"))  # and no backup taken of what is not migrated


def test_postgres_is_dumped_before_it_is_migrated(
    pg_server: PgServer,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = pg_server.fresh_schema()
    db = open_db(url)  # the schema as the release before the newest migration left it
    try:
        with db.write() as tx:
            tx.run("CREATE TABLE hq_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for name, statements in MIGRATIONS[:-1]:
            with db.write() as tx:
                for statement in statements:
                    run_statement(tx, statement)
                tx.run("INSERT INTO hq_migrations (name, applied_at) VALUES (?, '2026-01-01')", [name])
        with db.write() as tx:
            tx.run(
                "INSERT INTO terminals (terminal_id, store_id, token_sha256, created_at, revoked, acked_seq) "
                "VALUES ('T-PG', 'S-PG', 'x', '2026-01-01', 0, 7)"
            )
    finally:
        db.close()
    monkeypatch.setenv("TILLPOINT_HQ_BACKUP_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", f"{pg_bindir()}:{os.environ['PATH']}")
    store = HqStore(url)
    try:
        assert [t["acked_seq"] for t in store.terminals() if t["terminal_id"] == "T-PG"] == [7]
    finally:
        store.close()
    dumps = list(tmp_path.glob(f"hq-pre-{MIGRATIONS[-1][0]}-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(
        [str(pg_bindir() / "pg_restore"), "--list", str(dumps[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listing.returncode == 0 and "TABLE DATA" in listing.stdout and "terminals" in listing.stdout
    again = HqStore(url)  # nothing pending: no second dump
    again.close()
    assert len(list(tmp_path.glob("hq-pre-*.dump"))) == 1


def test_a_full_disk_stops_the_upgrade_before_it_starts(small_disk: Path) -> None:
    """The copy an upgrade takes first does not fit: the till refuses with storage_full, leaves no half copy
    and migrates nothing (the file stays as the release left it, usable by it)."""
    path = small_disk / "terminal.db"
    names = [m.name for m in migrations._migrations]
    with closing(sqlite3.connect(path)) as conn:
        migrations.apply(Database(conn), stop_before=names[-1])
        conn.execute(
            "INSERT INTO journal (seq, txn_id, terminal_id, kind, payload, created_at) "
            "VALUES (1, 'tx-full', 'T-1', 'sale', '{}', '2026-01-01T00:00:00.000Z')"
        )
        conn.commit()
    before = digest(path)
    fill(small_disk)
    with pytest.raises(Rejected) as refused:
        Store.open(path, repair=True)
    assert refused.value.code is Code.STORAGE_FULL
    assert not list(small_disk.glob("terminal.db.pre-*"))
    (small_disk / "filler").unlink()
    assert digest(path) == before
    assert names[-1] not in {r[0] for r in rows(path, "SELECT name FROM _sqlite_migrations")}


def test_member_totals_keeps_room_for_a_sale_to_update_its_row_in_place(
    pg_server: PgServer,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """m040_totals_room on a head office that held statistics: member_totals is written again with room on
    each page, so adding a sale to a member's row is a heap-only update (no index entry, one page). SQLite's
    head office takes the same migration and is left as it was."""
    from tests.fixtures.hq import migrated_before

    rows = [(f"M-{n:04d}", n) for n in range(2_000)]
    for url in (pg_server.fresh_schema(), str(tmp_path / "hq.db")):
        db = migrated_before(url, "m040_totals_room")
        try:
            with db.write() as tx:
                tx.many("INSERT INTO member_totals (member_id, visits, spend, updated_at) VALUES (?, 1, ?, 'x')", rows)
        finally:
            db.close()
        store = HqStore(url, backup=False)
        try:
            with store.db.write() as tx:
                tx.run("UPDATE member_totals SET visits = visits + 1 WHERE member_id IN ('M-0000', 'M-1000', 'M-1999')")
                if tx.dialect == "postgres":
                    (options,) = tx.one("SELECT reloptions FROM pg_class WHERE oid = 'member_totals'::regclass") or ()
                    (hot,) = tx.one("SELECT pg_stat_get_xact_tuples_hot_updated('member_totals'::regclass)") or ()
                    assert (options, hot) == (["fillfactor=80"], 3)
                assert tx.one("SELECT COUNT(*), SUM(visits), SUM(spend) FROM member_totals") == (
                    2_000,
                    2_003,
                    sum(n for _, n in rows),
                )
        finally:
            store.close()


def test_the_daily_rows_move_into_one_table_and_read_as_before(
    pg_server: PgServer,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """m041_day_rows on a head office that held daily statistics: every store's and category's row of a day
    moves into member_day_rows, member_days and member_category_days read the same rows as before (views),
    and a sale's statistics are written to the one table, on both engines."""
    from hq import stats
    from tests.fixtures.hq import migrated_before

    days = [(f"M-{n:03d}", f"2026-02-{1 + n % 28:02d}", f"S{n % 3}", 1, 100 + n) for n in range(300)]
    cats = [(m, d, c, spend // 2, 1) for m, d, _, _, spend in days for c in ("food", "wine")]
    for url in (pg_server.fresh_schema(), str(tmp_path / "hq.db")):
        db = migrated_before(url, "m041_day_rows")
        try:
            with db.write() as tx:
                tx.many(
                    "INSERT INTO member_days (member_id, day, store_id, visits, spend) VALUES (?, ?, ?, ?, ?)", days
                )
                tx.many(
                    "INSERT INTO member_category_days (member_id, day, category, spend, quantity) "
                    "VALUES (?, ?, ?, ?, ?)",
                    cats,
                )
        finally:
            db.close()
        store = HqStore(url, backup=False)
        try:
            with store.db.write() as tx:
                assert sorted(tx.all("SELECT * FROM member_days")) == sorted(days)
                assert sorted(tx.all("SELECT * FROM member_category_days")) == sorted(cats)
                assert tx.one("SELECT COUNT(*) FROM member_day_rows") == (900,)
                deltas = stats.Deltas()
                deltas.days[("M-000", "2026-02-01", "S0")] = [1, 50]
                deltas.categories[("M-000", "2026-02-01", "food")] = [50, 2]
                stats.write(tx, deltas)
                assert tx.all("SELECT visits, spend FROM member_days WHERE member_id = 'M-000'") == [(2, 150)]
                assert tx.all(
                    "SELECT spend, quantity FROM member_category_days WHERE member_id = 'M-000' AND category = 'food'"
                ) == [(100, 3)]
            refused = pytest.raises(StorageFailed, match="is a view|not automatically updatable")
            with refused, store.db.write() as tx:  # a view of two tables: read-only on both engines
                tx.run("INSERT INTO member_days VALUES ('M-9', '2026-02-01', 'S0', 1, 1)")
        finally:
            store.close()


def test_a_disk_that_fills_during_the_daily_rows_copy_leaves_them_where_they_were(small_disk: Path) -> None:
    """m041_day_rows copies every daily row in its one transaction. The disk fills up half-way: the migration
    fails as a storage error, the database is still at m040 with every row in the two old tables, and once
    there is room again the next start moves them all."""
    from hq.db.schema import migrate
    from tests.fixtures.hq import migrated_before
    from tests.ops.helpers import fill

    url = str(small_disk / "hq.db")
    days = [(f"M-{n:05d}", f"2026-02-{1 + n % 28:02d}", f"S{n % 3}", 1, 100 + n) for n in range(1_500)]
    cats = [(m, d, c, spend // 2, 1) for m, d, _, _, spend in days for c in ("food", "wine")]
    db = migrated_before(url, "m041_day_rows")
    try:
        with db.write() as tx:
            tx.many("INSERT INTO member_days (member_id, day, store_id, visits, spend) VALUES (?, ?, ?, ?, ?)", days)
            tx.many(
                "INSERT INTO member_category_days (member_id, day, category, spend, quantity) VALUES (?, ?, ?, ?, ?)",
                cats,
            )
        filler = fill(small_disk)
        os.truncate(filler, filler.stat().st_size - 64 * 1024)  # room to open and read, not to copy
        with pytest.raises(StorageFailed, match="full"):
            migrate(db, backup=False)
        with db.read() as tx:
            assert "m041_day_rows" not in {r[0] for r in tx.all("SELECT name FROM hq_migrations")}
            assert sorted(tx.all("SELECT * FROM member_days")) == sorted(days)
            assert sorted(tx.all("SELECT * FROM member_category_days")) == sorted(cats)
        filler.unlink()
        assert migrate(db, backup=False)[0] == "m041_day_rows"  # and those after it
        with db.read() as tx:
            assert sorted(tx.all("SELECT * FROM member_days")) == sorted(days)
            assert sorted(tx.all("SELECT * FROM member_category_days")) == sorted(cats)
            assert tx.one("SELECT COUNT(*) FROM member_day_rows") == (len(days) + len(cats),)
    finally:
        db.close()
