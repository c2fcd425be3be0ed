"""terminal.store.counters.bump_counter on a real SQLite file migrated by the terminal's own schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.errors import Code, Rejected
from terminal.model import Card, Member
from terminal.store import Store
from terminal.store.counters import bump_counter, last_counter

CARD = "a" * 64
OTHER = "b" * 64


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "terminal.db"
    Store.open(path).close()  # applies every migration, m301_card_counters included
    return path


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(db_path)
    yield connection
    connection.close()


def _committed(db_path: Path, uid_hash: str) -> int | None:
    with sqlite3.connect(db_path) as fresh:
        return last_counter(fresh, uid_hash)


def test_the_first_counter_of_a_card_is_accepted(conn: sqlite3.Connection, db_path: Path) -> None:
    with conn:
        bump_counter(conn, CARD, 7)
    assert _committed(db_path, CARD) == 7


def test_a_higher_counter_is_accepted_and_stored(conn: sqlite3.Connection, db_path: Path) -> None:
    with conn:
        bump_counter(conn, CARD, 7)
    with conn:
        bump_counter(conn, CARD, 8)
    with conn:
        bump_counter(conn, CARD, 100)  # reads elsewhere (a phone) make gaps: fine
    assert _committed(db_path, CARD) == 100


@pytest.mark.parametrize("replayed", [7, 6, 0])
def test_an_equal_or_lower_counter_is_a_replay(conn: sqlite3.Connection, db_path: Path, replayed: int) -> None:
    with conn:
        bump_counter(conn, CARD, 7)
    with pytest.raises(Rejected) as caught:
        bump_counter(conn, CARD, replayed)
    assert caught.value.code is Code.REPLAYED_CARD
    assert f"read counter {replayed}, last seen 7" in caught.value.message
    conn.rollback()
    assert _committed(db_path, CARD) == 7


def test_cards_have_their_own_counters(conn: sqlite3.Connection, db_path: Path) -> None:
    with conn:
        bump_counter(conn, CARD, 50)
        bump_counter(conn, OTHER, 1)
    assert (_committed(db_path, CARD), _committed(db_path, OTHER)) == (50, 1)


def test_a_payment_head_office_confirmed_is_checked_against_the_tills_own_uses(
    conn: sqlite3.Connection, db_path: Path
) -> None:
    """Confirming, head office made the read's counter the card's, and the pull brought it down before the sale is
    recorded: the confirmed payment is taken at that counter; the till's own use of it, confirmed or not, never."""
    with conn:
        bump_counter(conn, CARD, 7)
    pull(db_path, CARD, 9)  # head office's high-water mark after it confirmed the payment of read 9
    with pytest.raises(Rejected):
        bump_counter(conn, CARD, 9)  # not confirmed: at or below what the chain used
    conn.rollback()
    with conn:
        bump_counter(conn, CARD, 9, confirmed=True)
    assert _committed(db_path, CARD) == 9
    for replayed in (9, 8):
        with pytest.raises(Rejected):
            bump_counter(conn, CARD, replayed, confirmed=True)
        conn.rollback()
    pull(db_path, CARD, 12)
    with conn:
        bump_counter(conn, CARD, 10, confirmed=True)  # head office confirmed read 10 before it confirmed 12
    assert _committed(db_path, CARD) == 12  # the chain's mark stays


def pull(db_path: Path, uid_hash: str, counter: int) -> None:
    store = Store.open(db_path)
    try:
        store.apply_changes([Member("M-1", "Aiko", "basic", 0)], [Card(uid_hash, "M-1", counter=counter)], [], 1)
    finally:
        store.close()


def test_it_does_not_commit_the_callers_transaction(conn: sqlite3.Connection, db_path: Path) -> None:
    bump_counter(conn, CARD, 9)
    assert conn.in_transaction
    assert _committed(db_path, CARD) is None  # another connection sees nothing yet
    conn.rollback()  # the sale failed: the counter did not move, the customer can tap again
    assert _committed(db_path, CARD) is None
    with conn:
        bump_counter(conn, CARD, 9)
    assert _committed(db_path, CARD) == 9


def test_it_rises_together_with_the_sale_in_one_transaction(db_path: Path) -> None:
    store = Store.open(db_path)
    try:
        with store.db.atomic():
            bump_counter(store.db.conn, CARD, 3)
            store.db.conn.execute("INSERT INTO sync_state (key, value) VALUES ('probe', 'sale')")
        with pytest.raises(Rejected), store.db.atomic():
            store.db.conn.execute("INSERT INTO sync_state (key, value) VALUES ('probe2', 'sale')")
            bump_counter(store.db.conn, CARD, 3)  # replay: the whole transaction rolls back
    finally:
        store.close()
    with sqlite3.connect(db_path) as fresh:
        assert fresh.execute("SELECT key FROM sync_state WHERE key LIKE 'probe%'").fetchall() == [("probe",)]
    assert _committed(db_path, CARD) == 3


def test_the_migration_made_the_table(db_path: Path) -> None:
    with sqlite3.connect(db_path) as fresh:
        columns = [row[1] for row in fresh.execute("PRAGMA table_info(card_counters)")]
        pk = [row[1] for row in fresh.execute("PRAGMA table_info(card_counters)") if row[5]]
    assert columns == ["uid_hash", "counter", "updated_at", "used"] and pk == ["uid_hash"]
