"""A till refuses to start wrong rather than run wrong: a second daemon on the same data directory, and
a card-hash key file deleted or swapped (which would silently turn every known card into an unknown one).
Real `tillpoint run` processes; `tillpoint doctor` says the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, read_only, till_config, wait_until


def test_one_daemon_per_data_directory(tmp_path: Path, hq: HqProcess) -> None:
    config = till_config(tmp_path, hq, hq.add_terminal("T-LOCK"), "T-LOCK")
    notify = NotifyListener(tmp_path / "notify.sock")
    first = TillProcess(config, notify)
    api = Api(first)
    try:
        first.start()
        assert api.sale(100).status_code == 200
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-LOCK")) == 1, 20, "the first daemon's sale pushed")
        second = subprocess.run(
            [sys.executable, "-m", "tillpoint.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert second.returncode == 1 and "locked by the daemon with pid" in second.stdout, second.stdout
        assert api.sale(100).status_code == 200  # the first one never noticed
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-LOCK")) == 2, 20, "the second sale pushed")
        assert [seq for seq, _ in hq_journal(Path(hq.db), "T-LOCK")] == [1, 2]  # nothing from a second daemon
    finally:
        api.close()
        first.kill()
        notify.close()


def test_a_lost_or_swapped_card_key_stops_the_start(tmp_path: Path, hq: HqProcess) -> None:
    config = till_config(tmp_path, hq, hq.add_terminal("T-KEY"), "T-KEY")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    try:
        till.start()
        wait_until(lambda: api.status()["cache"]["cards"] >= 4, 20, "the demo cards pulled")
        assert api.tap("04A1B2C3D4E501").status_code == 202
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
    key = hq.key_file
    original = key.read_bytes()
    key.unlink()
    refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1 and "card-hash key" in refused.stdout and "missing" in refused.stdout
    assert not key.exists(), "no new key was made in its place"
    doctor = tillpoint("doctor", "--config", str(config), cwd=tmp_path)
    assert "card key" in doctor.stdout and "restore it from backup" in doctor.stdout, doctor.stdout
    key.write_bytes(bytes(reversed(original)))  # the wrong file put back
    swapped = tillpoint("run", "--config", str(config), cwd=tmp_path)
    assert swapped.returncode == 1 and "not the key this till's cards were hashed with" in swapped.stdout
    key.write_bytes(original)
    try:
        till.start()  # the right key: it starts and the cards identify again
        assert Api(till).status()["cache"]["cards"] >= 4
    finally:
        till.kill()
        notify.close()


def test_a_read_only_data_directory_is_said_in_one_line(tmp_path: Path, small_disk: Path) -> None:
    """The till's file system comes back read-only (an fsck, ``errors=remount-ro``): the daemon says so in
    one line with a stable code instead of a traceback, doctor says the files cannot be written (not that
    they are damaged), and the till starts again once the file system is writable."""
    config = till_config(tmp_path, None, None, "T-RO")
    config.write_text(config.read_text().replace(str(tmp_path / "till"), str(small_disk / "till")))
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    try:
        till.start()
        assert Api(till).sale(100).status_code == 200
        assert till.stop() == 0
        with read_only(small_disk):
            refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
            said = (refused.stdout + refused.stderr).strip()
            assert refused.returncode == 1 and "Traceback" not in said, said
            assert "cannot start: storage_failed" in said and "Read-only file system" in said, said
            doctor = tillpoint("doctor", "--config", str(config), cwd=tmp_path)
            assert "cannot be written (the file system is read-only)" in doctor.stdout, doctor.stdout
            assert "damaged" not in doctor.stdout and doctor.returncode == 2, doctor.stdout
        till.start()
        assert Api(till).status()["pending"] >= 1  # the sale made before is still there
    finally:
        till.kill()
        notify.close()


def test_a_config_file_not_in_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    """An editor saved the config as Latin-1: ``run`` and ``doctor`` say which file and why (exit 2)."""
    config = till_config(tmp_path, None, None, "T-ENC")
    config.write_bytes((config.read_text() + '[receipts]\ntitle = "Fidélité"\n').encode("latin-1"))
    for command in ("run", "doctor"):
        done = tillpoint(command, "--config", str(config), cwd=tmp_path)
        said = done.stdout + done.stderr
        assert done.returncode == 2 and "Traceback" not in said, said
        assert "UTF-8" in said, said
