from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from terminal.errors import Code, Rejected
from terminal.keys import load_or_create_key
from terminal.model import Card, EarnRule, JournalEntry, Member, Status
from terminal.ports import CacheDocs
from terminal.store import Store


def entry(member: str | None, delta: int, txn: str) -> JournalEntry:
    return JournalEntry("T-1", 0, txn, "sale", {"member_id": member, "points_delta": delta}, "2026-01-01T00:00:00Z")


def test_wal_and_full_sync(store: Store) -> None:
    assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    Store.open(tmp_path / "a.db").close()
    again = Store.open(tmp_path / "a.db")
    assert again.counts() == {"members": 0, "cards": 0, "rules": 0}


def test_card_uid_never_stored_in_clear(store: Store) -> None:
    dump = "\n".join(store.db.conn.iterdump())
    assert "04000001" not in dump


def test_pull_keeps_unpushed_local_points(store: Store) -> None:
    store.record(entry("M-1", 10, "t1"), points=("M-1", 10))
    assert store.member("M-1").points == 110
    # Head office has not seen t1 yet: its balance of 100 plus the pending 10.
    store.apply_changes([Member("M-1", "Aiko", "gold", 100)], [], [], cursor=8)
    assert store.member("M-1").points == 110
    store.mark_pushed(1, "now")
    store.apply_changes([Member("M-1", "Aiko", "gold", 110)], [], [], cursor=9)
    assert store.member("M-1").points == 110
    assert store.state("cursor") == "9"


def test_entries_head_office_lost_are_unsent_again_and_counted(store: Store) -> None:
    for n in range(1, 6):
        store.record(entry("M-1", n, f"t{n}"), points=("M-1", n))
    store.mark_pushed(4, "now")
    assert store.unmark_pushed([(2, 3), (5, 9)]) == 2  # seq 5 was never acknowledged; 6-9 this till never made
    assert [e.seq for e in store.unpushed(10)] == [2, 3, 5]
    assert store.unmark_pushed([(2, 3)]) == 0
    assert store.state("journal_resent") == "2"
    # Head office's balance lacks them again: a pull adds their points back, as for any unsent entry.
    store.apply_changes([Member("M-1", "Aiko", "gold", 105)], [], [], cursor=1)
    assert store.member("M-1").points == 105 + 2 + 3 + 5


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    store.record(entry("M-1", 1, "dup"), points=("M-1", 1))
    with pytest.raises(Rejected) as info:
        store.record(entry("M-1", 1, "dup"), points=("M-1", 1))  # same txn_id: unique index refuses
    assert info.value.code is Code.STORAGE_FAILED
    assert store.member("M-1").points == 101
    assert [e.seq for e in store.entries()] == [1]


def test_disk_full_is_a_clear_rejection(store: Store) -> None:
    # Cap the database at its current size: the next write fails like a full disk does.
    pages = store.db.conn.execute("PRAGMA page_count").fetchone()[0]
    store.db.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = JournalEntry("T-1", 0, "big", "sale", {"member_id": "M-1", "points_delta": 1, "pad": "x" * 200_000}, "t")
    with pytest.raises(Rejected) as info:
        store.record(big, points=("M-1", 1))
    assert info.value.code is Code.STORAGE_FULL
    assert store.member("M-1").points == 100 and store.entries() == []


def test_apply_changes_upserts(store: Store) -> None:
    store.apply_changes([], [Card("h", "M-1")], [EarnRule("base", 2, 100)], cursor=10)
    assert store.card("h").member_id == "M-1"
    assert store.earn_rule().points == 2


def test_the_held_ids_of_a_page_replace_those_the_till_held(store: Store) -> None:
    """Head office's list of held member ids is whole: a member named is held (unless blocked), one held and not
    named spends again, and a page without the list (an older head office) changes nothing."""
    store.apply_changes([], [], [], cursor=2, docs=CacheDocs(spend_held=["M-1", "M-3"]))
    assert [store.member(m).status for m in ("M-1", "M-2", "M-3")] == [Status.HELD, Status.ACTIVE, Status.BLOCKED]  # type: ignore[union-attr]
    store.apply_changes([], [], [], cursor=3, docs=CacheDocs())
    assert store.member("M-1").status is Status.HELD  # type: ignore[union-attr]
    store.apply_changes([], [], [], cursor=4, docs=CacheDocs(spend_held=["M-2"]))
    assert [store.member(m).status for m in ("M-1", "M-2")] == [Status.ACTIVE, Status.HELD]  # type: ignore[union-attr]


def test_storage_error_on_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Rejected) as info:
        Store.open(path)
    assert info.value.code is Code.STORAGE_FAILED
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_a_payload_sqlite_cannot_read_as_json_is_a_refusal_not_a_damaged_file(store: Store) -> None:
    """SQLite says "malformed JSON" of a row's payload: a refusal, and not the file damaged (the daemon stops for a
    rebuild only when SQLite's own code says the file is corrupt: a rebuild would not mend a row's JSON)."""
    told: list[str] = []
    store.on_damage = told.append
    store.record(entry("M-1", 5, "tx-1"))
    with store.db.conn:
        store.db.conn.execute("UPDATE journal SET payload = '{not json' WHERE txn_id = 'tx-1'")
    with pytest.raises(Rejected) as info:
        store.apply_changes([Member("M-1", "Aiko", "gold", 10)], [], [], cursor=1)
    assert info.value.code is Code.STORAGE_FAILED and "malformed JSON" in info.value.message
    assert store.damaged is None and told == []


def test_files_made_in_the_data_directory_are_its_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's `sudo tillpoint sync --now` before the daemon's first start made terminal.db root's 0600 file,
    and the daemon, as the service user, stopped with `storage_failed: ... unable to open database file`. A new
    database (and a card-hash key made there) is given its directory's owner."""
    given: list[tuple[int, int, int]] = []
    real_fchown = os.fchown

    def fchown(fd: int, uid: int, gid: int) -> None:
        given.append((os.fstat(fd).st_ino, uid, gid))
        real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "fchown", fchown)
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:  # as root, for real: the service user's directory keeps its files
        os.chown(data, 4242, 4242)
        os.chown(tmp_path, 4242, 4242)
    owner = (os.stat(data).st_uid, os.stat(data).st_gid)
    Store.open(data / "terminal.db").close()
    db = data / "terminal.db"
    assert (db.stat().st_ino, *owner) in given
    load_or_create_key(tmp_path / "card-hash.key")
    assert ((tmp_path / "card-hash.key").stat().st_ino, *owner) in given
    if os.geteuid() == 0:
        assert {(p.name, p.stat().st_uid) for p in data.iterdir()} == {(p.name, 4242) for p in data.iterdir()}
        assert (tmp_path / "card-hash.key").stat().st_uid == 4242
