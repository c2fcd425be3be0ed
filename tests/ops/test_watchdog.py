"""Type=notify and the watchdog, observed on a datagram socket the test owns (as systemd would):
READY=1 after start-up, WATCHDOG=1 only while the supervised loops make progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.config import validate
from terminal.daemon import Daemon
from terminal.metrics import Watchdog, watchdog_interval
from tests.fixtures.clock import Clock
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import NotifyListener, wait_until


def test_watchdog_pings_only_while_every_loop_progresses() -> None:
    sent: list[str] = []
    clock = Clock(100.0)
    progress = {"sync": 100.0, "reader": 100.0}
    dog = Watchdog(sent.append, 0.5, clock=clock)
    dog.watch("sync", lambda: progress["sync"], limit=10)
    dog.watch("reader", lambda: progress["reader"], limit=30)
    assert dog.check() and sent == ["WATCHDOG=1"]
    clock.now = 125.0
    progress["reader"] = 124.0
    assert not dog.check()  # sync silent for 25 s > 10 s
    assert sent[-1].startswith("STATUS=stalled: sync (25 s)") and "WATCHDOG=1" not in sent[1:]
    assert not dog.check() and len(sent) == 2  # said once per stall, not once per round
    progress["sync"] = 125.0
    assert dog.check() and sent[-2:] == ["STATUS=running", "WATCHDOG=1"]


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # another process's


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # WatchdogSec=0.3 s: a ping every 0.15 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def pings_between(listener: NotifyListener, start: float, end: float) -> int:
    with listener._lock:
        return sum(msg.split("\n").count("WATCHDOG=1") for at, msg in listener.messages if start <= at < end)


def test_a_stopped_loop_stops_the_pings(tmp_path: Path, hq: HqProcess, notify: NotifyListener) -> None:
    cfg = validate(
        {
            "terminal": {"id": "T-DOG", "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(hq.key_file)},
            "reader": {"devices": ["sim:"]},
            "hq": {
                "url": hq.url,
                "token": hq.add_terminal("T-DOG"),
                "push_interval": 0.1,
                "pull_interval": 0.5,
                "backoff_max": 0.2,
                "timeout": 0.25,
            },
            "api": {"enabled": False},
        }
    )
    # The sync loop's limit: 2 * (backoff_max + push_interval) + 4 * timeout = 1.6 s.
    daemon = Daemon(cfg)
    began = time.monotonic()
    daemon.start()
    try:
        notify.wait_for("READY=1", began)
        wait_until(lambda: pings_between(notify, began, time.monotonic()) >= 4, 10, "four watchdog pings")
        assert pings_between(notify, began, time.monotonic()) >= 4

        # A hung database: the sync loop blocks on the store and stops making progress.
        assert daemon.store is not None
        with daemon.store._lock:
            hung = time.monotonic()
            wait_until(lambda: any(x.startswith("STATUS=stalled: sync") for x in notify.lines(hung)), 5, "the stall")
            quiet = time.monotonic()
            time.sleep(1.0)  # the window in which no ping may come: the absence is what is tested
            assert pings_between(notify, quiet, time.monotonic()) == 0, "pinged while the sync loop was hung"
        # The database answers again: progress, and the pings come back.
        back = time.monotonic()
        notify.wait_for("STATUS=running", back, timeout=5)
        wait_until(lambda: pings_between(notify, back, time.monotonic()) >= 2, 5, "pings again")

        # Stopping the loop for good (a thread that died) stops the pings for good.
        assert daemon.sync is not None
        daemon.sync.stop()
        stopped = time.monotonic()
        wait_until(lambda: any(x.startswith("STATUS=stalled: sync") for x in notify.lines(stopped)), 5, "stall")
        quiet = time.monotonic()
        time.sleep(1.0)  # the window in which no ping may come: the absence is what is tested
        assert pings_between(notify, quiet, time.monotonic()) == 0
    finally:
        daemon.stop()
    assert "STOPPING=1" in notify.lines(began)
