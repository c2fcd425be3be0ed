"""`tillpoint doctor`: plain-words verdicts and a Nagios-style exit code, against real parts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal import doctor as doctor_mod
from terminal.config import load
from terminal.doctor import Verdict, check_database, check_disk, clock_check, run_checks
from terminal.keys import key_check
from terminal.model import utc_iso
from terminal.store import Store
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import ROOT, corrupt_table, fill, till_config
from tests.ports import free_port


def doctor(config: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    done = subprocess.run(
        [sys.executable, "-m", "tillpoint.cli", "doctor", "--config", str(config), "--json", "--timeout", "2", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def verdicts(checks: list[dict[str, str]]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in checks}


def words(checks: list[dict[str, str]], name: str) -> str:
    return next(c["words"] for c in checks if c["name"] == name)


def test_a_token_kept_where_enrolment_writes_it_is_checked_with_head_office(tmp_path: Path, hq: HqProcess) -> None:
    """As installed: the till's credential in ``<data_dir>/hq.token`` (install.sh, enrolment, rotation), none in
    the config. Doctor reads it where the daemon does, and checks it with head office."""
    config = till_config(tmp_path, hq, None, "T-DOC")
    config.write_text(config.read_text().replace("[hq]\n", f'[hq]\nurl = "{hq.url}"\n'))
    data = load(config).data_dir
    data.mkdir(parents=True, exist_ok=True)
    (data / "hq.token").write_text(hq.add_terminal("T-DOC") + "\n")
    (data / "hq.token").chmod(0o600)  # as install.sh and enrolment leave it
    _, checks = doctor(config)
    v = verdicts(checks)
    assert v["hq token"] == "ok" and str(data / "hq.token") in words(checks, "hq token")
    assert v["hq login"] == "ok"
    (data / "hq.token").write_text("wrong\n")
    code, checks = doctor(config)
    assert code == 2 and verdicts(checks)["hq login"] == "fail" and "hq rotate" in words(checks, "hq login")


def test_healthy_till_then_broken_head_office_and_database(roomy_disk: Path, hq: HqProcess) -> None:
    config = till_config(roomy_disk, hq, hq.add_terminal("T-DOC"), "T-DOC")  # its disk's room, not the machine's
    db = load(config).db_path
    Store.open(db).close()
    code, checks = doctor(config)
    v = verdicts(checks)
    assert v["config"] == v["card key"] == v["hq token"] == v["database"] == v["disk"] == "ok"
    assert v["head office"] == v["clock"] == v["hq login"] == "ok"
    assert v["reader sim:"] == "warn" and v["daemon"] == "warn"  # simulated reader; no daemon running
    assert code == 1

    config.write_text(config.read_text().replace('token = "', 'token = "wrong-'))
    code, checks = doctor(config)
    assert (
        code == 2
        and verdicts(checks)["hq login"] == "fail"
        and "refuses this terminal's token" in words(checks, "hq login")
    )

    hq.kill()
    corrupt_table(db, "members")
    code, checks = doctor(config)
    assert (
        code == 2 and verdicts(checks)["head office"] == "fail" and "cannot be reached" in words(checks, "head office")
    )
    assert verdicts(checks)["database"] == "fail" and "damaged" in words(checks, "database")


def test_bad_config_is_a_failure_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "till.toml"
    config.write_text("[hq]\npush_interval = -1\n")
    code, checks = doctor(config)
    assert code == 2 and len(checks) == 1 and "hq.push_interval" in checks[0]["words"]


def test_a_card_key_or_token_file_every_user_reads_is_a_warning(tmp_path: Path) -> None:
    """The card-hash key and the head-office credential (a bearer token: whoever reads it acts as the till) copied
    in with the umask's 0644: doctor warned about the key only."""
    config = till_config(tmp_path, None, None, "T-MODE")  # the token's head office said (config_incomplete else)
    config.write_text(config.read_text().replace("[hq]\n", '[hq]\nurl = "http://127.0.0.1:9"\n'))
    data, key = tmp_path / "till", tmp_path / "card-hash.key"
    data.mkdir()
    key.write_bytes(bytes(range(32)))
    (data / "hq.token").write_text("terminal-token\n")
    for path in (key, data / "hq.token"):
        path.chmod(0o600)
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert by_name["card key"].verdict is Verdict.OK and by_name["hq token"].verdict is Verdict.OK
    for path in (key, data / "hq.token"):
        path.chmod(0o644)
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert by_name["card key"].verdict is Verdict.WARN and "every user" in by_name["card key"].words
    assert by_name["hq token"].verdict is Verdict.WARN and "every user" in by_name["hq token"].words


def test_the_key_files_and_templates_the_config_names_are_read_as_the_start_reads_them(tmp_path: Path) -> None:
    """A SUN key file cut short and a receipt template that does not parse stop the daemon's start (a configuration
    error naming the key and the file): doctor fails each in the same words, and passes the files that are good."""
    from tests.fixtures.receipts import EN

    sun, felica = tmp_path / "sun.key", tmp_path / "felica.key"
    sun.write_bytes(bytes(8))  # cut short
    felica.write_text("00112233445566778899aabbccddeeff\n")
    (tmp_path / "en.toml").write_text(EN, encoding="utf-8")
    (tmp_path / "cut.toml").write_text(EN[: len(EN) // 3], encoding="utf-8")
    templates = f'templates = ["{tmp_path / "en.toml"}", "{tmp_path / "cut.toml"}"]'
    config = till_config(
        tmp_path,
        None,
        None,
        "T-FILES",
        printer=f'listen = "tcp:127.0.0.1:{free_port()}"\ntarget = "tcp:127.0.0.1:{free_port()}"',
        receipts=templates,
    )
    keys = f'devices = ["sim:"]\nsun_key_file = "{sun}"\nfelica_key_file = "{felica}"'
    config.write_text(config.read_text().replace('devices = ["sim:"]', keys))
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    cut = by_name["sun key"]
    assert cut.verdict is Verdict.FAIL and cut.words.startswith("config key 'reader.sun_key_file': "), cut
    assert str(sun) in cut.words and "the daemon will not start" in cut.words, cut
    assert by_name["felica key"].verdict is Verdict.OK and str(felica) in by_name["felica key"].words
    assert by_name["template en.toml"].verdict is Verdict.OK
    bad = by_name["template cut.toml"]
    assert bad.verdict is Verdict.FAIL and bad.words.startswith("config key 'receipts.templates': "), bad
    assert str(tmp_path / "cut.toml") in bad.words, bad


def test_pcscd_missing_and_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pcscd: Any) -> None:
    config = till_config(tmp_path, None, None, "T-PCSC")
    config.write_text(config.read_text().replace('devices = ["sim:"]', f'devices = ["pcsc:{pcscd.reader}"]'))
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert by_name["pcscd"].verdict is Verdict.OK
    assert by_name[f"reader pcsc:{pcscd.reader}"].verdict is Verdict.OK
    assert pcscd.reader in by_name[f"reader pcsc:{pcscd.reader}"].words
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "no-pcscd.comm"))
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert by_name["pcscd"].verdict is Verdict.FAIL and "not running" in by_name["pcscd"].words


def test_a_door_reader_is_checked_like_the_tills_own(tmp_path: Path) -> None:
    config = till_config(tmp_path, None, None, "T-DOOR", door='devices = ["sim:door"]')
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert by_name["reader sim:"].verdict is Verdict.WARN
    door = by_name["door reader sim:door"]
    assert door.verdict is Verdict.WARN and "simulated" in door.words


@pytest.mark.parametrize("skew, verdict", [(1.0, Verdict.OK), (60.0, Verdict.WARN), (-400.0, Verdict.FAIL)])
def test_clock_skew(skew: float, verdict: Verdict) -> None:
    now = time.time()
    assert clock_check(utc_iso(now + skew), now).verdict is verdict


def test_full_disk_is_a_failure(tmp_path: Path, small_disk: Path) -> None:
    config = till_config(tmp_path, None, None, "T-DISK")
    config.write_text(config.read_text().replace(str(tmp_path / "till"), str(small_disk / "till")))
    fill(small_disk)
    result = check_disk(load(config))
    assert result.verdict is Verdict.FAIL and "storage_full" in result.words


def test_entries_head_office_asked_for_again_or_refused_are_shown(tmp_path: Path) -> None:
    cfg = load(till_config(tmp_path, None, None, "T-SEEN"))
    store = Store.open(cfg.db_path)
    store.set_state(journal_resent="4")
    store.close()
    result = check_database(cfg)
    assert result.verdict is Verdict.OK and "4 entries sent again after head office lost them" in result.words
    store = Store.open(cfg.db_path)
    store.set_state(push_refused=json.dumps([{"seq": 3, "txn_id": "tx3", "code": "body_too_large"}]))
    store.close()
    result = check_database(cfg)
    assert result.verdict is Verdict.WARN and "body_too_large" in result.words and "tx3" in result.words


def test_entries_held_for_a_head_office_of_a_newer_protocol_are_shown(tmp_path: Path) -> None:
    """A till upgraded before its head office holds a return head office's protocol cannot carry: doctor says from
    which seq, and that head office is to be upgraded."""
    cfg = load(till_config(tmp_path, None, None, "T-HELD"))
    store = Store.open(cfg.db_path)
    held = {"seq": 7, "txn_id": "tx7", "kind": "void", "needs": 3, "speaks": 2, "since": "2026-12-01T10:00:00Z"}
    store.set_state(push_held=json.dumps(held))
    store.close()
    result = check_database(cfg)
    assert result.verdict is Verdict.WARN
    assert "from seq 7 on (void tx7 first)" in result.words and "upgrade head office" in result.words


def test_a_camera_is_reported_with_what_it_made_of_each_control(tmp_path: Path) -> None:
    from terminal.config import CameraSettings
    from terminal.doctor import check_camera
    from tests.fixtures.video import still, write_video

    # A video file through OpenCV's FFmpeg capture: a source with no exposure, focus or gain.
    video = write_video(tmp_path / "camera.avi", still("TPM1:doctor", (640, 360), 0.3), 30.0)
    plain = check_camera(str(video))
    assert plain.verdict is Verdict.OK and "gives 640x360 frames; no control configured" in plain.words
    assert "reports fps 30" in plain.words
    settings = CameraSettings(exposure=80, focus=30)
    told = check_camera(str(video), settings=settings)
    assert told.verdict is Verdict.WARN
    assert "exposure 80 ignored" in told.words and "focus 30 ignored" in told.words
    missing = check_camera(str(tmp_path / "gone.avi"), settings=settings)
    assert missing.verdict is Verdict.FAIL and "not found" in missing.words


def test_a_camera_index_with_no_device_or_a_file_with_no_frame_says_what_to_look_at(tmp_path: Path) -> None:
    import cv2

    from terminal.doctor import check_camera

    index = next(n for n in range(40, 100) if not Path(f"/dev/video{n}").exists())
    absent = check_camera(str(index))
    assert absent.verdict is Verdict.FAIL
    assert f"no such device /dev/video{index}: is the camera plugged in?" in absent.words
    empty = tmp_path / "empty.avi"  # a file OpenCV opens, with no frame in it
    cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 360)).release()
    nothing = check_camera(str(empty))
    assert nothing.verdict is Verdict.FAIL and "holds no video frame" in nothing.words


def test_an_ip_cameras_credentials_never_appear_in_doctors_lines() -> None:
    from terminal.doctor import check_camera

    port = free_port()  # nothing listens there: the camera cannot be opened
    found = check_camera(f"rtsp://till:s3cret@127.0.0.1:{port}/stream", timeout=20)
    assert found.verdict is Verdict.FAIL
    assert "s3cret" not in found.name + found.words and found.name == f"camera rtsp://127.0.0.1:{port}/stream"


def test_a_card_key_or_store_other_than_head_offices_is_a_failure_with_its_code(tmp_path: Path, hq: HqProcess) -> None:
    """A till installed with another card-hash key than head office's hashes every card differently and identifies
    nobody; one configured for another store than head office registered has every sale quarantined. Doctor compares
    both with what head office says of this terminal (``GET /v1/terminal``: its store and the key's check, never the
    key), and says "not checked" when head office cannot be asked."""
    token = hq.add_terminal("T-KEYS")
    config = till_config(tmp_path, hq, token, "T-KEYS")
    code, checks = doctor(config)
    assert verdicts(checks)["hq card key"] == verdicts(checks)["hq store"] == "ok", checks
    said = httpx.get(f"{hq.url}/v1/terminal", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert said == {"terminal_id": "T-KEYS", "store_id": "S-001", "card_key_check": key_check(hq.key)}
    assert httpx.get(f"{hq.url}/v1/terminal", timeout=10).status_code == 401

    other = tmp_path / "other.key"
    other.write_bytes(bytes(reversed(hq.key)))
    other.chmod(0o600)
    config.write_text(config.read_text().replace(str(hq.key_file), str(other)))
    code, checks = doctor(config)
    card = next(c for c in checks if c["name"] == "hq card key")
    assert code == 2 and card["verdict"] == "fail" and card["code"] == "card_key_mismatch", card
    assert "not the card-hash key head office hashes cards with" in card["words"]
    assert verdicts(checks)["card key"] == "ok"  # on its own the file looks fine: only head office can tell
    assert hq.key.hex() not in json.dumps(checks) and other.read_bytes().hex() not in json.dumps(checks)
    other.unlink()  # no key yet: the daemon would make one of its own
    code, checks = doctor(config)
    card = next(c for c in checks if c["name"] == "hq card key")
    assert card["verdict"] == "fail" and card["code"] == "card_key_mismatch" and "does not exist" in card["words"]

    config = till_config(tmp_path, hq, hq.add_terminal("T-AWAY", "S-009"), "T-AWAY")
    code, checks = doctor(config)
    store = next(c for c in checks if c["name"] == "hq store")
    assert code == 2 and store["verdict"] == "fail" and store["code"] == "store_mismatch", store
    assert "store S-009" in store["words"] and "terminal.store_id is S-001" in store["words"]
    assert verdicts(checks)["hq card key"] == "ok"

    hq.kill()
    code, checks = doctor(config)
    assert verdicts(checks)["hq card key"] == verdicts(checks)["hq store"] == "skip"
    assert words(checks, "hq card key") == "not checked: head office cannot be reached"
    assert doctor_mod.card_key_check(hq.key_file, None).verdict is Verdict.SKIP  # head office without the key


def test_an_nfcpy_door_reader_is_opened_and_its_hint_names_nfcpys_own_fix(tmp_path: Path) -> None:
    from tests.fixtures.nfc import free_udp_port

    software = f"nfcpy:udp:127.0.0.1:{free_udp_port()}"
    door = f'devices = ["nfcpy:usb:054c:06c3", "{software}"]'
    config = till_config(tmp_path, None, None, "T-NFC", door=door)
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    assert "pcscd" not in by_name  # no reader of pcscd's configured
    # No RC-S380 on this machine: nfcpy's own words (lsusb), never pcscd's journal.
    absent = by_name["door reader nfcpy:usb:054c:06c3"]
    assert absent.verdict is Verdict.WARN
    assert "pcscd" not in absent.words and "no reader found there" in absent.words and "lsusb" in absent.words
    # nfcpy's software reader opens (nothing need answer on it).
    assert by_name[f"door reader {software}"].verdict is Verdict.OK


def test_the_printer_in_the_middle_is_checked_end_to_end_and_its_templates_read(tmp_path: Path) -> None:
    from tests.fixtures.printer import start_printer
    from tests.fixtures.receipts import EN

    (tmp_path / "en.toml").write_text(EN, encoding="utf-8")
    (tmp_path / "saved.bin").write_bytes(b"\x1b@not a template\n")  # a print stream named where a template goes
    templates = f'templates = ["{tmp_path / "en.toml"}", "{tmp_path / "saved.bin"}"]\nattach = true'
    printer = start_printer(tmp_path / "printer")
    listen = f"tcp:127.0.0.1:{free_port()}"
    try:
        config = till_config(
            tmp_path,
            None,
            None,
            "T-PRN",
            printer=f'listen = "{listen}"\ntarget = "tcp:127.0.0.1:{printer.port}"',
            receipts=templates,
        )
        by_name = {c.name: c for c in run_checks(config, timeout=2)}
        assert by_name["printer"].verdict is Verdict.OK and "answers" in by_name["printer"].words
        assert by_name["printer listen"].verdict is Verdict.OK
        assert by_name["template en.toml"].verdict is Verdict.OK
        wrong = by_name["template saved.bin"]  # the daemon would refuse to start on it
        assert wrong.verdict is Verdict.FAIL and "template_invalid" in wrong.words
    finally:
        printer.stop()
    off = {c.name: c for c in run_checks(config, timeout=2)}["printer"]  # switched off
    assert off.verdict is Verdict.FAIL and "does not answer" in off.words and "switched on" in off.words
    config.write_text(config.read_text().replace(f"tcp:127.0.0.1:{printer.port}", "device:/dev/usb/lp-missing"))
    gone = {c.name: c for c in run_checks(config, timeout=2)}["printer"]
    assert gone.verdict is Verdict.FAIL and "no such device /dev/usb/lp-missing" in gone.words


def test_a_scanner_of_an_unknown_kind_or_with_no_device_is_a_failure(tmp_path: Path) -> None:
    config = till_config(
        tmp_path, None, None, "T-SCAN", scanner='devices = ["cam:0", "wedge:/dev/input/by-id/gone-event-kbd", "sim:"]'
    )
    by_name = {c.name: c for c in run_checks(config, timeout=1)}
    unknown = by_name["scanner cam:0"]  # the daemon would only say so in a reader event
    assert (
        unknown.verdict is Verdict.FAIL and "unknown scanner kind 'cam'" in unknown.words and "camera" in unknown.words
    )
    gone = by_name["scanner wedge:/dev/input/by-id/gone-event-kbd"]
    assert gone.verdict is Verdict.FAIL and "is the scanner plugged in?" in gone.words
    assert by_name["scanner sim:"].verdict is Verdict.WARN
