"""Salvage page by page: a terminal.db cut short or with a page overwritten keeps every journal row whose
page survived, names by seq the rows it could not read, never reuses a seq, and every approved sale
reaches head office exactly once or is reported lost there, by seq. Real till and head-office processes,
a real file cut on disk; and a property over random cut points against SQLite's own page map."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.model import JournalEntry, Member
from terminal.store import Store
from terminal.store import store as store_mod
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, integrity, till_config, wait_until


def leaf_pages(db: Path) -> tuple[int, dict[int, set[int]]]:
    """SQLite's own map (``dbstat``) of the journal: page size, and the pages each row's cell lives on."""
    conn = sqlite3.connect(str(db))
    try:
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        leaves = conn.execute(
            "SELECT pageno, ncell, path FROM dbstat WHERE name = 'journal' AND pagetype = 'leaf' ORDER BY path"
        ).fetchall()
        overflow = conn.execute(
            "SELECT pageno, path FROM dbstat WHERE name = 'journal' AND pagetype = 'overflow'"
        ).fetchall()
        rowids = [int(r[0]) for r in conn.execute("SELECT seq FROM journal ORDER BY seq")]
    finally:
        conn.close()
    where: dict[int, set[int]] = {}
    at = 0
    for page, count, path in leaves:
        for n, rowid in enumerate(rowids[at : at + count]):
            chain = {int(p) for p, opath in overflow if opath.startswith(f"{path}{n:03x}+")}
            where[rowid] = {int(page), *chain}
        at += count
    return size, where


def journal_db(path: Path, rows: int, big_every: int = 0) -> None:
    store = Store.open(path)
    store.apply_changes([Member("M-1", "A", "basic", 0)], [], [], cursor=1)
    for n in range(rows):
        lines = None
        if big_every and n % big_every == 0:  # a long receipt: the row spills onto overflow pages
            lines = [{"sku": f"SKU-{i:03d}", "quantity": 1, "unit_price": 10, "category": "c" * 40} for i in range(90)]
        payload = entries.sale("M-1", 900 if lines else 1000, lines=lines, store_id="S-1")
        store.record(JournalEntry("T-1", 0, f"tx-{n:05d}", "sale", payload, "2026-03-01T10:00:00Z"))
    store.close()  # the last close folds the WAL into the file


@pytest.fixture(scope="module")
def journal_600(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[int, set[int]]]:
    """A till's directory whose journal holds 600 sales (every 25th on overflow pages), with SQLite's page map:
    written once (600 durable commits), copied for each cut."""
    db = tmp_path_factory.mktemp("journal-600") / "terminal.db"
    journal_db(db, 600, big_every=25)
    return (db.parent, *leaf_pages(db))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.05, 0.999), overwrite=st.one_of(st.none(), st.floats(0.0, 0.99)))
def test_salvage_keeps_every_row_whose_pages_survived(
    tmp_path_factory: pytest.TempPathFactory,
    journal_600: tuple[Path, int, dict[int, set[int]]],
    cut: float,
    overwrite: float | None,
) -> None:
    original, size, where = journal_600
    db = shutil.copytree(original, tmp_path_factory.mktemp("salvage") / "till") / "terminal.db"
    length = db.stat().st_size
    keep = int(length * cut)
    spoiled: set[int] = set()
    with db.open("r+b") as handle:
        handle.truncate(keep)
        if overwrite is not None and keep > size:
            page = int((keep // size) * overwrite) + 1  # a page inside what is left: overwritten with noise
            handle.seek((page - 1) * size)
            handle.write(os.urandom(size))
            spoiled.add(page)
    surviving = set(range(1, keep // size + 1)) - spoiled
    expected = {rowid for rowid, pages in where.items() if pages <= surviving}
    store = Store.open(db, repair=True)
    try:
        held = {e.seq for e in store.entries(limit=10_000)}
        assert expected <= held, sorted(expected - held)[:10]
        assert held <= set(where)  # nothing made up
        if store.rebuilt is not None:
            named = {s for a, b in store.rebuilt.journal_lost for s in range(a, b + 1)}
            assert not named & held
        assert store.recovering == (store.rebuilt is not None)
    finally:
        store.close()
    assert list(db.parent.glob("terminal.db.damaged-*")) or store.rebuilt is None  # the damaged file stays


DAMAGE = [("cut", 1), ("cut", 3), ("overwrite", 2)]


@pytest.mark.parametrize(("how", "pages"), DAMAGE, ids=[f"{how}-{n}" for how, n in DAMAGE])
def test_a_rebuilt_till_numbers_above_everything_and_reports_what_it_lost(
    tmp_path: Path, hq: HqProcess, how: str, pages: int
) -> None:
    token = hq.add_terminal("T-CUT")
    config = till_config(tmp_path, hq, token, "T-CUT")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    approved: list[tuple[str, int]] = []
    try:
        till.start()
        for _ in range(40):
            reply = api.sale(1000)
            approved.append((reply.json()["txn_id"], reply.json()["seq"]))
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-CUT")) == 40, 20, "the first sales at head office")
        hq.kill()  # from here on, sales stay on the till only
        for _ in range(60):
            reply = api.sale(1000)
            approved.append((reply.json()["txn_id"], reply.json()["seq"]))
        till.kill()  # a power cut...
        db = till.data / "terminal.db"
        wal = till.data / "terminal.db-wal"
        checkpoint = sqlite3.connect(str(db))  # (the next open folds the WAL in, as SQLite does)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        assert not wal.exists() or wal.stat().st_size == 0
        size = db.stat().st_size
        with db.open("r+b") as handle:  # ... and the file loses its last pages, or pages in its middle
            if how == "cut":
                handle.truncate(size - pages * 4096)
            else:
                handle.seek((size // 4096 // 2) * 4096)
                handle.write(random.Random(pages).randbytes(pages * 4096))
        assert store_mod.damage(db) is not None
        hq.start()
        till.start()
        wait_until(lambda: api.status()["pending"] == 0, 30, "the salvaged journal pushed")
        after = api.sale(1000)  # selling again, above every seq either side saw
        assert after.status_code == 200, after.text
        approved.append((after.json()["txn_id"], after.json()["seq"]))
        wait_until(lambda: api.status()["pending"] == 0, 30, "the new sale pushed")
    finally:
        api.close()
        till.kill()
        notify.close()
    held = {txn: seq for seq, txn in hq_journal(Path(hq.db), "T-CUT")}
    conn = sqlite3.connect(f"file:{hq.db}?mode=ro", uri=True)
    lost_ranges = conn.execute("SELECT first_seq, last_seq FROM journal_lost WHERE terminal_id = 'T-CUT'").fetchall()
    items = conn.execute("SELECT reason, state FROM recon_items WHERE terminal_id = 'T-CUT'").fetchall()
    conn.close()
    lost = {s for a, b in lost_ranges for s in range(a, b + 1)}
    for txn, seq in approved:  # every approved sale: at head office once, under its seq, or reported lost
        assert held.get(txn) == seq or seq in lost, (txn, seq)
    assert len(held) == len(set(held.values()))
    assert approved[-1][1] > max(seq for _, seq in approved[:-1])  # no seq given twice
    assert bool(lost) == (("journal_lost", "open") in items)
    if (how, pages) == ("cut", 3):
        assert lost, "three pages cut from the file's end held unpushed rows: they are reported, not silently gone"
    assert integrity(till.data / "terminal.db") == "ok"
