"""A till whose clock went wrong while it runs (an hour back, a day ahead): the door's rotating check-in codes are
signed for head office's time step, as the till last measured its clock against head office's, so members can
still check in (head office takes only its own step and the one before)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sync import checkins
from terminal.config import validate
from terminal.daemon import Daemon
from terminal.keys import load_or_create_key


@pytest.mark.parametrize("off", [-3600.0, 86400.0], ids=["an-hour-back", "a-day-ahead"])
def test_check_in_codes_follow_head_offices_clock_when_the_tills_is_off(tmp_path: Path, off: float) -> None:
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
    daemon = Daemon(cfg)
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
