"""A till whose clock went wrong while it runs (an hour back, a day ahead): the door's rotating check-in codes are
signed for head office's time step, as the till last measured its clock against head office's, so members can
still check in (head office takes only its own step and the one before). The
receipts' rows are pruned by the earlier of the till's clock and head office's as measured: an offset saying head
office is a year ahead deletes no young row."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sync import checkins
from terminal.config import validate
from terminal.daemon import Daemon
from terminal.keys import load_or_create_key
from terminal.model import utc_iso


def till(tmp_path: Path) -> Daemon:
    """A till daemon in ``tmp_path`` with the simulated reader and no local API (not yet started)."""
    key_file = tmp_path / "card-hash.key"
    load_or_create_key(key_file)
    cfg = validate(
        {
            "terminal": {"id": "T-CLOCK", "store_id": "S-001", "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(key_file)},
            "reader": {"devices": ["sim:"]},
            "api": {"enabled": False},
        }
    )
    return Daemon(cfg)


@pytest.mark.parametrize("off", [-3600.0, 86400.0], ids=["an-hour-back", "a-day-ahead"])
def test_check_in_codes_follow_head_offices_clock_when_the_tills_is_off(tmp_path: Path, off: float) -> None:
    daemon = till(tmp_path)
    daemon.start()
    try:
        assert daemon.store is not None and daemon.checkin is not None
        # This PC's clock is the till's; head office's reads ``off`` seconds less (as the last sync measured it).
        daemon.store.set_state(hq_clock_offset=str(off))
        shown = daemon.checkin.current()
        public = daemon.checkin.signer.public
        hq_now = time.time() - off
        checkins.verify(checkins.parse(shown.code), public, "T-CLOCK", "S-001", hq_now)  # head office takes it
        assert shown.step == checkins.step_of(hq_now) and 1 <= shown.renew_in <= checkins.STEP_SECONDS
    finally:
        daemon.stop()


def test_an_offset_saying_head_office_is_a_year_ahead_prunes_no_young_receipt_rows(tmp_path: Path) -> None:
    """The last sync measured head office's clock a year ahead of this (right) till's: a wrong or forged ``Date``,
    or an offset measured before the till's clock was put right. The daemon's pruning keeps the row of a receipt
    printed an hour ago (it stops that receipt's reprint earning): a row goes only when both clocks find it old."""
    daemon = till(tmp_path)
    daemon.start()
    try:
        assert daemon.store is not None and daemon.receipt_rows is not None
        daemon.store.set_state(hq_clock_offset=str(-365 * 86400.0))
        printed = utc_iso(time.time() - 3600)
        daemon.store.db.conn.execute(
            "INSERT INTO receipt_digests (digest, txn_id, created_at, printed_at) VALUES (?, ?, ?, ?)",
            ("a" * 64, "T-CLOCK-1", printed, printed),
        )
        assert daemon.receipt_rows.prune() == 0
        assert daemon.store.db.conn.execute("SELECT count(*) FROM receipt_digests").fetchone()[0] == 1
    finally:
        daemon.stop()
