"""What a migration leaves head office to fill in (``hq.db.schema.SEEDED``: the default profile attributes,
the versions held when the history began, ...) is filled in once, by the first store that opens the database,
with that store's clock, whether the migration was applied by it, by a process that stopped right after, or
by ``migrate`` alone; a fill-in that fails is tried again at the next open."""

from __future__ import annotations

from pathlib import Path

import pytest

from hq import profiles
from hq.db.engine import Tx
from hq.db.schema import SEEDED, migrate, open_db, seeds_pending
from hq.store import HqStore
from tests.fixtures.postgres import PgServer

WHEN = "2024-02-29T23:59:00.000Z"


def attributes(hq: HqStore) -> list[tuple[str, str]]:
    with hq.db.read() as tx:
        return [(str(r[0]), str(r[1])) for r in tx.all("SELECT name, updated_at FROM profile_attributes ORDER BY 1")]


def only_migrated(url: str) -> None:
    """What a head office stopped right after its migrations' commit leaves."""
    db = open_db(url, pool_size=1)
    try:
        migrate(db, backup=False)
        assert seeds_pending(db) == list(SEEDED)
    finally:
        db.close()


def test_a_database_only_migrated_is_filled_in_once_by_the_first_store_with_its_clock(
    pg_server: PgServer, tmp_path: Path
) -> None:
    for url in (str(tmp_path / "hq.db"), pg_server.fresh_schema()):
        only_migrated(url)
        hq = HqStore(url, clock=lambda: WHEN)
        try:
            assert seeds_pending(hq.db) == []
            seeded = attributes(hq)
            assert {name for name, _ in seeded} == {rule.name for rule in profiles.DEFAULT_RULES}
            assert {at for _, at in seeded} == {WHEN}  # the store's clock, not the migration's
            with hq.db.write() as tx:
                tx.run("DELETE FROM profile_attributes")  # the chain removes every attribute
        finally:
            hq.close()
        again = HqStore(url, clock=lambda: "2030-01-01T00:00:00.000Z")
        try:
            assert attributes(again) == []  # filled in once: what the chain removed stays removed
        finally:
            again.close()


def test_a_fill_in_that_fails_is_tried_again_at_the_next_open(hq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tx: Tx, now: str) -> None:
        tx.run(
            "INSERT INTO profile_attributes (name, label, allowed, pattern, updated_at) VALUES ('x', 'x', '[]', '', ?)",
            [now],
        )
        raise OSError("the process stops here")

    with monkeypatch.context() as patch:
        patch.setattr(profiles, "seed_rules", broken)
        with pytest.raises(OSError):
            HqStore(hq_url)
    hq = HqStore(hq_url, clock=lambda: WHEN)
    try:
        assert seeds_pending(hq.db) == []
        assert {name for name, _ in attributes(hq)} == {rule.name for rule in profiles.DEFAULT_RULES}  # no 'x'
    finally:
        hq.close()
