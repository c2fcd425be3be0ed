"""Damage: a corrupted cache is detected at start and rebuilt from head office without losing the
journal entries head office has not acknowledged; a full disk (a real, full tmpfs) refuses sales
with ``storage_full`` and approves nothing it could not store."""

from __future__ import annotations

import queue
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from terminal.config import Config, validate
from terminal.daemon import Daemon
from terminal.errors import Rejected
from terminal.model import Basket, Line
from terminal.store import Store
from terminal.store import store as store_mod
from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import (
    Api,
    NotifyListener,
    TillProcess,
    corrupt_table,
    fill,
    hq_journal,
    integrity,
    metric,
    till_config,
    wait_until,
)

BASKET = Basket((Line("DMG", 1, 1000),))


def config(tmp_path: Path, hq: HqProcess, token: str) -> Config:
    return validate(
        {
            "terminal": {"id": "T-DMG", "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(hq.key_file)},
            "reader": {"devices": ["sim:"]},
            "hq": {"url": hq.url, "token": token, "push_interval": 0.1, "pull_interval": 0.3, "backoff_max": 0.2},
            "api": {"enabled": False},
        }
    )


def hq_points(hq: HqProcess, member_id: str) -> int:
    conn = sqlite3.connect(f"file:{hq.db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT points FROM members WHERE member_id = ?", (member_id,)).fetchone()[0])
    finally:
        conn.close()


def test_damaged_cache_is_rebuilt_from_head_office(tmp_path: Path, hq: HqProcess) -> None:
    cfg = config(tmp_path, hq, hq.add_terminal("T-DMG"))
    first = Daemon(cfg)
    first.start()
    try:
        store = first.store
        assert store is not None
        wait_until(lambda: store.counts()["members"] >= 4, 20, "the cache to load")
        wait_until(lambda: store.counts()["cards"] >= 1, 20, "the cards to load")
        cards = store.counts()["cards"]
        pushed = [first.sell("M-0001", BASKET) for _ in range(3)]
        wait_until(lambda: store.pending_count() == 0, 10, "the first sales pushed")
        hq.kill()  # from here on, sales stay in the journal only
        unpushed = [first.sell("M-0001", BASKET) for _ in range(4)]
        assert store.pending_count() == 4
    finally:
        first.stop()
    db = cfg.db_path
    corrupt_table(db, "members")
    corrupt_table(db, "cards")
    assert store_mod.damage(db) is not None

    hq.start()
    second = Daemon(cfg)
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    second.subscribers.append(events.put)
    second.start()
    try:
        store = second.store
        assert store is not None and store.rebuilt is not None
        assert store.rebuilt.salvaged["journal"] == 7 and "members" in store.rebuilt.unreadable
        assert [e.txn_id for e in store.entries()] == [r.txn_id for r in pushed + unpushed]
        wait_until(
            lambda: store.pending_count() == 0 and store.counts()["members"] >= 4 and store.counts()["cards"] >= cards,
            20,
            "the journal pushed and the cache (members and cards) pulled again",
        )
        assert [txn for _, txn in hq_journal(hq.db, "T-DMG")] == [r.txn_id for r in pushed + unpushed]
        member = store.member("M-0001")
        earned = sum(r.points_delta for r in pushed + unpushed)
        assert member is not None and member.points == hq_points(hq, "M-0001") == 1200 + earned
        second.tap_sim(bytes.fromhex("04A1B2C3D4E501"))  # the re-pulled cards identify again
        answered = ("member", "rejected")
        wait_until(lambda: any(e["type"] in answered for e in list(events.queue)), 30, "the tap answered")
        assert [e["type"] for e in list(events.queue) if e["type"] in answered][0] == "member", list(events.queue)
        assert any(e["type"] == "store_rebuilt" for e in list(events.queue))
        assert metric(second.metrics_exposition()[0].decode(), "tillpoint_store_rebuilds_total") == 1
    finally:
        second.stop()
    assert integrity(db) == "ok"
    assert list(db.parent.glob("terminal.db.damaged-*")), "the damaged file is kept for a post-mortem"


def make_store(path: Path, sales: int) -> list[str]:
    store = Store.open(path)
    from terminal.service import Service

    service = Service(store, "T-PWR")
    txns = [service.commit(service.quote(None, BASKET)).txn_id for _ in range(sales)]
    store.close()
    return txns


def test_power_cut_during_a_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "terminal.db"
    txns = make_store(db, 5)
    corrupt_table(db, "members")

    def cut(path: Path, fresh: Path) -> Path:
        raise OSError("power cut")

    monkeypatch.setattr(store_mod, "_swap", cut)
    with pytest.raises(Rejected):
        Store.open(db, repair=True)
    assert (tmp_path / "terminal.db.rebuilding").exists()
    monkeypatch.undo()
    store = Store.open(db, repair=True)  # the finished copy is swapped in
    try:
        assert [e.txn_id for e in store.entries()] == txns and store_mod.damage(db) is None
    finally:
        store.close()
    assert not (tmp_path / "terminal.db.rebuilding").exists()


def test_half_written_rebuild_is_discarded(tmp_path: Path) -> None:
    db = tmp_path / "terminal.db"
    txns = make_store(db, 3)
    (tmp_path / "terminal.db.rebuilding").write_bytes(b"half a database")
    store = Store.open(db, repair=True)
    try:
        assert store.rebuilt is None and [e.txn_id for e in store.entries()] == txns
    finally:
        store.close()
    assert not (tmp_path / "terminal.db.rebuilding").exists()


def test_full_disk_refuses_sales_with_storage_full(tmp_path: Path, small_disk: Path) -> None:
    cfg = till_config(tmp_path, None, None, "T-FULL")
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "till"), str(small_disk / "till")))
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(cfg, notify)
    api = Api(till)
    acked: list[tuple[str, int]] = []
    try:
        till.start()
        assert api.sale(100).status_code == 200
        filler = fill(small_disk)
        refusal = None
        for _ in range(2000):  # until the WAL needs a page the disk does not have
            reply = api.sale(100)
            if reply.status_code == 200:
                acked.append((reply.json()["txn_id"], reply.json()["seq"]))
                continue
            refusal = reply
            break
        assert refusal is not None, "a full disk never refused a sale"
        assert refusal.status_code == 409 and refusal.json()["code"] == "storage_full", refusal.text
        assert api.sale(100).json()["code"] == "storage_full"  # and keeps refusing
        assert (metric(api.metrics(), "tillpoint_rejections_total", code="storage_full") or 0) >= 2
        filler.unlink()
        ok = api.sale(100)
        assert ok.status_code == 200, ok.text  # space is back: sales are approved again
        acked.append((ok.json()["txn_id"], ok.json()["seq"]))
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    db = small_disk / "till" / "terminal.db"
    conn = sqlite3.connect(str(db))
    journal = dict(conn.execute("SELECT txn_id, seq FROM journal").fetchall())
    conn.close()
    assert all(journal.get(txn) == seq for txn, seq in acked)
    assert sorted(journal.values()) == list(range(1, len(journal) + 1)) and integrity(db) == "ok"


def test_a_full_disk_does_not_stop_sync(tmp_path: Path, small_disk: Path, hq: HqProcess) -> None:
    token = hq.add_terminal("T-FULLSYNC")
    cfg = till_config(tmp_path, hq, token, "T-FULLSYNC")
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "till"), str(small_disk / "till")))
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(cfg, notify)
    api = Api(till)
    try:
        till.start()
        assert api.sale(100).status_code == 200
        wait_until(lambda: api.status()["pending"] == 0, 20, "the first sale pushed")
        hq.kill()  # a sale waits in the journal while the disk fills
        assert api.sale(100).status_code == 200
        filler = fill(small_disk)
        hq.start()  # head office is back, but the till cannot record what it acknowledges
        wait_until(lambda: "Rejected" in str(api.status().get("sync_error")), 20, "the sync error shown in status")
        said = str(api.status()["sync_error"])  # what it means for sync, not a sale's refusal
        assert "storage_full: the till's disk is full" in said and "sale was NOT recorded" not in said, said
        assert api.status()["sync_enabled"] and api.sale(100).json()["code"] == "storage_full"
        assert (metric(api.metrics(), "tillpoint_loop_errors_total", error="Rejected", loop="sync") or 0) >= 1
        doctor = tillpoint("doctor", "--json", "--config", str(cfg))
        assert '"daemon"' in doctor.stdout and "sync fails on this till" in doctor.stdout, doctor.stdout
        filler.unlink()  # space is back: the same daemon, without a restart, sells and syncs again
        after = api.sale(100)
        assert after.status_code == 200, after.text
        wait_until(
            lambda: api.status()["pending"] == 0 and api.status()["sync_error"] is None,
            20,
            "every sale pushed once space was back",
        )
        assert till.starts == 1
    finally:
        api.close()
        till.kill()
        notify.close()
    assert [seq for seq, _ in hq_journal(Path(hq.db), "T-FULLSYNC")] == [1, 2, 3]


def test_a_journal_page_damaged_while_the_daemon_runs_stops_it_and_its_restart_rebuilds(
    tmp_path: Path, hq: HqProcess
) -> None:
    """A bad sector under the journal while the daemon runs: every sale would be refused, and only a start rebuilds
    the file. The daemon refuses the sale in hand (``storage_failed``), stops with exit status 1 (systemd starts it
    again), and the restart rebuilds the file: every approved sale reaches head office once and the till sells."""
    token = hq.add_terminal("T-DMGRUN")
    cfg = till_config(tmp_path, hq, token, "T-DMGRUN")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(cfg, notify)
    api = Api(till)
    acked: list[tuple[int, str]] = []
    try:
        till.start()
        for n in range(60):  # the journal's table spans several pages: its root page is not the rows' own
            if n == 30:
                wait_until(lambda: api.status()["pending"] == 0, 20, "the first sales pushed")
                hq.kill()  # the rest wait in the journal, unsent, when its page is damaged
            reply = api.sale(100 + n)
            assert reply.status_code == 200, reply.text
            acked.append((reply.json()["seq"], reply.json()["txn_id"]))
        corrupt_table(till.data / "terminal.db", "journal")
        refused = api.sale(100)
        assert refused.status_code == 409 and refused.json()["code"] == "storage_failed", refused.text
        assert "damaged" in refused.json()["message"]
        assert till.proc is not None
        wait_until(lambda: till.proc is not None and till.proc.poll() is not None, 20, "the daemon to stop by itself")
        assert till.proc.returncode == 1, till.log_tail()
        said = [line for line in till.log.read_text().splitlines() if '"level": "error"' in line and "damaged" in line]
        assert len(said) == 1 and "storage_failed" in said[0] and "the next start rebuilds it" in said[0], said
        hq.start()
        till.start()  # as systemd's Restart=on-failure does
        assert list(till.data.glob("terminal.db.damaged-*")), "the damaged file is kept aside"
        after = api.sale(100)
        assert after.status_code == 200, after.text
        acked.append((after.json()["seq"], after.json()["txn_id"]))
        wait_until(lambda: api.status()["pending"] == 0, 30, "every sale pushed after the rebuild")
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    held = hq_journal(Path(hq.db), "T-DMGRUN")
    assert sorted(acked) == held and len({txn for _, txn in held}) == len(held)


def test_a_full_disk_at_start_is_said_as_a_full_disk_and_a_rebuild_leaves_no_copy_behind(small_disk: Path) -> None:
    """A till restarted while its disk is full: a clean stop removed the WAL and shared-memory files, SQLite could
    not make them again and said "disk I/O error", and the start failed ``storage_failed: The till could not record
    this``, not as the full disk it is. A damaged file found with room to open it but none for the copy a rebuild
    makes was ``storage_failed`` too, and left the copy it had begun on the disk. Both are ``storage_full`` now,
    the begun copy is removed, and the start once there is room rebuilds the file with every sale."""
    db = small_disk / "terminal.db"
    txns = make_store(db, 40)
    filler = fill(small_disk)
    with pytest.raises(Rejected) as refused:
        Store.open(db, repair=True)
    assert refused.value.code.value == "storage_full" and str(db) in refused.value.message, refused.value
    filler.unlink()
    corrupt_table(db, "members")
    filler = fill(small_disk)
    with filler.open("r+b") as room:  # room to open the damaged file, none for its copy
        room.truncate(filler.stat().st_size - (96 << 10))
    with pytest.raises(Rejected) as refused:
        Store.open(db, repair=True)
    assert refused.value.code.value == "storage_full", refused.value
    assert "could not be rebuilt" in refused.value.message, refused.value.message
    assert not list(small_disk.glob("terminal.db.rebuilding*")) and not list(small_disk.glob("terminal.db.damaged-*"))
    filler.unlink()
    store = Store.open(db, repair=True)
    try:
        assert store.rebuilt is not None and [e.txn_id for e in store.entries()] == txns
    finally:
        store.close()
