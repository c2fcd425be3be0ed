"""Head office's database restored from its last backup (its disk died; docs/reliability.md tells the operator to
restore the latest backup). The tills had pushed more since that backup and marked it acknowledged; head office no
longer holds it. The next push names the hole (``gaps``): the entries a till still holds are sent again, so head
office ends with every seq exactly once and the till's backlog drains. Real till and head-office processes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, till_config
from tests.waiting import wait_until

SIDES = ("", "-wal", "-shm")


def copy_database(source: str, target: str) -> None:
    """The database file and its WAL as they are (head office killed: nothing folded into the file)."""
    for side in SIDES:
        Path(target + side).unlink(missing_ok=True)
        if Path(source + side).exists():
            shutil.copyfile(source + side, target + side)


def drained(api: Api, journal: Callable[[], list[tuple[int, str]]], count: int) -> Callable[[], bool]:
    return lambda: len(journal()) == count and api.status()["pending"] == 0


def test_head_office_restored_from_a_backup_gets_back_every_entry_the_till_holds(tmp_path: Path, hq: HqProcess) -> None:
    config = till_config(tmp_path, hq, hq.add_terminal("T-RESTORE"), "T-RESTORE")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)

    def journal() -> list[tuple[int, str]]:
        return hq_journal(Path(hq.db), "T-RESTORE")

    backup = str(tmp_path / "hq-backup.db")
    try:
        till.start()
        sold = [api.sale(1000 + n).json()["txn_id"] for n in range(3)]
        wait_until(drained(api, journal, 3), 20, "the first sales at head office")
        hq.kill()
        copy_database(hq.db, backup)  # last night's backup
        hq.start()
        sold += [api.sale(2000 + n).json()["txn_id"] for n in range(4)]
        wait_until(drained(api, journal, 7), 20, "the day's sales acknowledged")

        hq.kill()  # head office's disk dies; the operator restores the backup
        copy_database(backup, hq.db)
        hq.start()
        assert len(journal()) == 3

        sold += [api.sale(3000 + n).json()["txn_id"] for n in range(2)]
        wait_until(drained(api, journal, 9), 30, "every sale at head office again and nothing pending at the till")
        status = api.status()
        assert status["resent"] == 4 and status["push_refused"] == []
        assert status["sync_error"] is None
    finally:
        api.close()
        till.kill()
        notify.close()
    held = journal()
    assert [seq for seq, _ in held] == list(range(1, 10))
    assert sorted(txn for _, txn in held) == sorted(sold)
    records = [json.loads(x) for x in till.log.read_text().splitlines() if x.startswith("{")]
    assert any("sending them again" in str(r["msg"]) for r in records)
