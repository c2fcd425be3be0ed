"""A till whose database goes back in time: its WAL lost after a power cut, its WAL's first frame damaged
(SQLite then ignores every frame after it), or an older copy of ``terminal.db`` restored. Nothing in the
file says so, so the till gives again seqs head office holds other sales at. Its next push finds out: the
sales it made since take new seqs above everything either side holds, and reach head office exactly once.
Real till and head-office processes, the files damaged on disk while the till is down."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, till_config, wait_until

SIDE = ("-wal", "-shm")


def damage(db: Path, how: str, copy: Path) -> None:
    """What went wrong while the till was down (it was killed: its sales sit in the WAL)."""
    wal = db.with_name(db.name + "-wal")
    if how == "wal_damaged":
        data = bytearray(wal.read_bytes())
        data[32 + 24 + 100] ^= 0xFF  # a byte of the first frame's page: its checksum no longer holds
        wal.write_bytes(bytes(data))
        return
    for side in SIDE:
        db.with_name(db.name + side).unlink(missing_ok=True)
    if how == "older_copy":
        shutil.copyfile(copy, db)


def renumbered(till: TillProcess) -> list[str]:
    records = [json.loads(x) for x in till.log.read_text().splitlines() if x.startswith("{")]
    return [str(r["msg"]) for r in records if "its database went back" in str(r["msg"])]


@pytest.mark.parametrize("how", ["wal_lost", "wal_damaged", "older_copy"])
def test_sales_made_after_the_database_went_back_reach_head_office_once(
    tmp_path: Path, hq: HqProcess, how: str
) -> None:
    config = till_config(tmp_path, hq, hq.add_terminal("T-BACK"), "T-BACK")
    db = tmp_path / "till" / "terminal.db"
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    journal = lambda: hq_journal(Path(hq.db), "T-BACK")  # noqa: E731
    try:
        till.start()
        if how == "older_copy":  # a backup taken after one sale
            assert api.sale(500).status_code == 200
            wait_until(lambda: len(journal()) == 1, 20, "the first sale pushed")
            assert till.stop() == 0  # a clean stop folds the WAL into the file: a whole copy
            shutil.copyfile(db, tmp_path / "backup.db")
            till.start()
        before = [api.sale(1000 + i).json()["txn_id"] for i in range(3)]
        held = len(before) + (how == "older_copy")
        wait_until(lambda: len(journal()) == held, 20, "the sales pushed")
        till.kill()  # a power cut: no checkpoint, the sales are in the WAL
        damage(db, how, tmp_path / "backup.db")

        till.start()
        after = [api.sale(700 + i).json()["txn_id"] for i in range(2)]
        wait_until(lambda: len(journal()) == held + 2, 30, "the sales made after it went back pushed")
        wait_until(lambda: api.status()["pending"] == 0, 20, "nothing left to push")
    finally:
        api.close()
        till.kill()
        notify.close()
    stored = journal()
    assert [seq for seq, _ in stored] == list(range(1, held + 3))  # no gap, no seq twice
    txns = [txn for _, txn in stored]
    assert len(set(txns)) == len(txns) and set(before + after) <= set(txns)  # every sale once
    assert [txn for _, txn in stored[-2:]] == after  # the new ones above, in their order
    assert len(renumbered(till)) == 1, till.log_tail()
