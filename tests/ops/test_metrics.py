"""Prometheus /metrics of a running daemon: taps, sales, rejections by code, reader status, pending
journal entries, offline age and sync lag; and the separate metrics-only listener."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx

from terminal.metrics import Metrics, SyncFigures
from tests.fixtures.clock import Clock
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, metric, till_config, wait_until
from tests.ports import START_ATTEMPTS, free_port


def test_events_become_counters() -> None:
    clock = Clock(datetime(2026, 1, 1, 2, 0, tzinfo=UTC).timestamp())  # two hours after the oldest entry
    m = Metrics("T-1", clock=clock)
    for event in (
        {"type": "member", "reader": "r1", "member_id": "M-1"},
        {"type": "rejected", "reader": "r1", "code": "unknown_card"},
        {"type": "rejected", "code": "storage_full"},
        {"type": "sale", "txn_id": "x", "seq": 1},
        {"type": "qr", "scanner": "camera:/dev/video0"},
        {"type": "reader", "reader": "r1", "kind": "removed"},
    ):
        m.observe(event)
    m.watch_store(lambda: SyncFigures(3, "2026-01-01T00:00:00.000Z", None, None, resent=4, refused=1))
    camera = SimpleNamespace(name="camera:/dev/video0", stats=SimpleNamespace(decoded=0))
    m.watch_scanners(lambda: [camera, SimpleNamespace(name="wedge:kbd")], clock=clock)
    m.exposition()
    camera.stats.decoded = 30
    clock.now += 0.5
    text = m.exposition()[0].decode()
    assert 20 < (metric(text, "tillpoint_decode_fps", scanner="camera:/dev/video0") or 0) < 61
    assert metric(text, "tillpoint_decode_fps", scanner="camera:/dev/video0") == 60.0  # 30 frames in 0.5 s
    assert metric(text, "tillpoint_decoded_frames_total", scanner="camera:/dev/video0") == 30
    assert metric(text, "tillpoint_decode_fps", scanner="wedge:kbd") is None  # keeps no decode stats
    assert metric(text, "tillpoint_taps_total", reader="r1") == 2
    assert metric(text, "tillpoint_rejections_total", code="unknown_card") == 1
    assert metric(text, "tillpoint_rejections_total", code="storage_full") == 1
    assert metric(text, "tillpoint_sales_total", kind="sale") == 1
    assert metric(text, "tillpoint_scans_total", scanner="camera:/dev/video0") == 1
    assert metric(text, "tillpoint_reader_up", reader="r1") == 0
    assert metric(text, "tillpoint_journal_pending") == 3
    assert metric(text, "tillpoint_journal_resent_total") == 4
    assert metric(text, "tillpoint_journal_refused") == 1
    assert (metric(text, "tillpoint_sync_lag_seconds") or 0) > 3600
    assert metric(text, "tillpoint_sync_lag_seconds") == 7200.5  # two hours, then the 0.5 s above


def test_the_printer_and_the_kept_receipts_are_gauges_following_their_events() -> None:
    m = Metrics("T-1")
    text = m.exposition()[0].decode()  # a till without a printer in the middle has neither
    assert metric(text, "tillpoint_printer_reachable") is None and metric(text, "tillpoint_receipts_kept_ok") is None
    seen: list[tuple[float | None, float | None]] = []
    for event in (
        {"type": "printer", "state": "reachable", "detail": ""},
        {"type": "receipts", "state": "kept", "code": None},
        {"type": "printer", "state": "unreachable", "detail": "refused"},
        {"type": "receipts", "state": "keep_failed", "code": "receipts_dir_full"},
        {"type": "printer", "state": "reachable", "detail": ""},
        {"type": "receipts", "state": "kept", "code": None},
    ):
        m.observe(event)
        text = m.exposition()[0].decode()
        seen.append((metric(text, "tillpoint_printer_reachable"), metric(text, "tillpoint_receipts_kept_ok")))
    assert seen == [(1, None), (1, 1), (0, 1), (0, 0), (1, 0), (1, 1)]


def test_metrics_of_a_running_daemon(tmp_path: Path, hq: HqProcess) -> None:
    token = hq.add_terminal("T-MET")
    notify = NotifyListener(tmp_path / "notify.sock")
    for attempt in range(1, START_ATTEMPTS + 1):
        # The metrics listener's port is named in the config: picked free, and picked again if
        # another program took it before the daemon bound it (the daemon then stops at start).
        listen = free_port()
        config = till_config(
            tmp_path, hq, token, "T-MET", metrics=f'listen = "127.0.0.1:{listen}"', sale="auto_amount = 500"
        )
        till = TillProcess(config, notify)
        try:
            till.start()
            break
        except AssertionError as exc:
            if "Address already in use" not in str(exc) or attempt == START_ATTEMPTS:
                notify.close()
                raise
    api = Api(till)
    try:
        wait_until(lambda: api.status()["cache"]["members"] >= 4, 20, "the cache to load")
        for uid in ("04A1B2C3D4E501", "04A1B2C3D4E502", "04A1B2C3D4E503", "04FFFFFFFFFF01"):
            api.tap(uid)
        assert api.sale(1000).status_code == 200
        wait_until(lambda: metric(api.metrics(), "tillpoint_sales_total", kind="sale") == 3, 10, "3 sales counted")
        wait_until(lambda: metric(api.metrics(), "tillpoint_journal_pending") == 0, 10, "the journal pushed")
        text = api.metrics()
        assert metric(text, "tillpoint_taps_total", reader="sim:") == 4
        assert metric(text, "tillpoint_rejections_total", code="blocked_card") == 1
        assert metric(text, "tillpoint_rejections_total", code="unknown_card") == 1
        assert metric(text, "tillpoint_reader_up", reader="sim:") == 1
        assert metric(text, "tillpoint_offline_seconds") == 0 and metric(text, "tillpoint_watchdog_healthy") == 1
        assert metric(text, "tillpoint_sync_lag_seconds") == 0
        # The metrics-only listener serves the same registry (for a remote Prometheus).
        remote = httpx.get(f"http://127.0.0.1:{listen}/metrics", timeout=5).text
        assert metric(remote, "tillpoint_sales_total", kind="sale") == 3

        hq.kill()  # head office goes away: sales wait in the journal, offline age and lag grow
        assert api.sale(250).status_code == 200
        wait_until(lambda: (metric(api.metrics(), "tillpoint_offline_seconds") or 0) > 0.3, 10, "offline age")
        # The sale came after head office went, so its lag trails the offline age: wait for it too.
        wait_until(lambda: (metric(api.metrics(), "tillpoint_sync_lag_seconds") or 0) > 0.3, 10, "sync lag")
        assert metric(api.metrics(), "tillpoint_journal_pending") == 1
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
