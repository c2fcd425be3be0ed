"""Databases and the member-app simulator's state are created readable by their owner only, whatever
the umask; an admin's "create or update" changes only what it is given."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hq.store import HqStore
from sync.memberapp import MemberApp
from terminal.model import Member
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import tillpoint


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o000)  # the most careless umask: everything would be world-writable
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_databases_are_created_0600_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    till = Store.open(tmp_path / "till" / "terminal.db")
    till.apply_changes([Member("M-1", "Aiko", "gold", 10)], [], [], cursor=0)  # the WAL and -shm exist now
    hq = HqStore(str(tmp_path / "hq" / "hq.db"))
    hq.add_terminal("T-1", "S-1")
    try:
        files = [tmp_path / "till" / f"terminal.db{s}" for s in ("", "-wal", "-shm")]
        files += [tmp_path / "hq" / f"hq.db{s}" for s in ("", "-wal", "-shm")]
        assert {f.name: mode(f) for f in files if f.exists()} == {f.name: 0o600 for f in files}
    finally:
        till.close()
        hq.close()


def test_the_member_apps_state_is_0600(tmp_path: Path, open_umask: None) -> None:
    app = MemberApp("M-1", tmp_path / "phone")
    app.key()
    app.state["token"] = "secret"
    app._save()
    assert mode(tmp_path / "phone" / "device.key") == 0o600
    assert mode(tmp_path / "phone" / "state.json") == 0o600
    assert mode(tmp_path / "phone") == 0o700


def test_add_member_on_an_existing_member_changes_only_what_it_is_given(tmp_path: Path) -> None:
    db = str(tmp_path / "hq.db")
    hq = HqStore(db)
    hq.add_terminal("T-1", "S-1")
    hq.upsert_member("M-1", "Aiko", "gold", 1200, stored_value=3000)
    from sync.protocol import WireEntry

    hq.ingest(
        "T-1",
        [
            WireEntry(
                terminal_id="T-1",
                seq=1,
                txn_id="t1",
                kind="sale",
                payload=entries.sale("M-1", 5000, earned=50, store_id="S-1"),
                created_at="2026-03-01T10:00:00Z",
            )
        ],
    )
    hq.close()
    done = tillpoint("hq", "add-member", "M-1", "Aiko Tanaka", "--db", db)  # "create or update": a new name
    assert done.returncode == 0, done.stderr
    hq = HqStore(db)
    member = hq.member("M-1")
    assert member is not None
    assert (member.display_name, member.tier, member.points, member.stored_value) == ("Aiko Tanaka", "gold", 1250, 3000)
    hq.upsert_member("M-1", tier="platinum")  # only the tier
    after = hq.member("M-1")
    assert after is not None and (after.display_name, after.tier, after.points) == ("Aiko Tanaka", "platinum", 1250)
    hq.upsert_member("M-NEW", "Newcomer")
    new = hq.member("M-NEW")
    assert new is not None and (new.tier, new.points, new.stored_value, new.status) == ("basic", 0, 0, "active")
    hq.close()
