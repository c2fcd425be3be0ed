"""The README's demo, driven through the CLI as a person would: demo running, a simulated tap from a
second shell, then `tillpoint status` showing the sale synced to the embedded head office."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.hq import tillpoint


def test_demo_tap_and_status(tmp_path: Path) -> None:
    config = tmp_path / "till.toml"
    # Port 0 for both servers: each binds a free port itself, so two runs never race for one; the
    # till writes its API URL where `tillpoint tap` and `tillpoint status` look for it.
    config.write_text(f'[terminal]\ndata_dir = "{tmp_path / "var" / "tillpoint"}"\n[api]\nport = 0\n')
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tillpoint.cli",
                "demo",
                "--config",
                str(config),
                "--reader",
                "sim:",
                "--hq-port",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
    try:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine starts two servers here
        while "sync ok" not in log.read_text() and time.monotonic() < deadline:  # running, and its cards pulled
            assert demo.poll() is None, log.read_text()
            time.sleep(0.1)
        for uid in ("04A1B2C3D4E501", "04A1B2C3D4E503"):
            done = tillpoint("tap", uid, "--config", str(config))
            assert done.returncode == 0, done.stdout + done.stderr
        status: dict = {}
        while time.monotonic() < deadline:
            done = tillpoint("status", "--json", "--config", str(config))
            status = json.loads(done.stdout)
            if status["last_sync_ok"] and status["pending"] == 0 and "blocked_card" in log.read_text():
                break
            time.sleep(0.2)
        text = log.read_text()
        assert "Aiko Tanaka" in text and "blocked_card" in text, text
        assert status["pending"] == 0 and status["readers"] == [{"name": "sim:", "state": "added"}]
        scanned = tillpoint("scan", "TPC1:Q09GRkVFMTA", "--config", str(config))  # COFFEE10, as the wallet shows it
        assert scanned.returncode == 0 and "coupon COFFEE10 added" in scanned.stdout, scanned.stdout + scanned.stderr
        bad = tillpoint("tap", "not-hex", "--config", str(config))
        assert bad.returncode == 2 and "bad_uid" in bad.stdout  # a usage error: the daemon refused it as input
    finally:
        demo.terminate()
        demo.wait(timeout=10)
    assert demo.returncode == 0, log.read_text()
