"""A till refuses to start wrong rather than run wrong: a second daemon on the same data directory, a
card-hash key file deleted or swapped (which would silently turn every known card into an unknown one), an
enrolment into another store than its own, and a config file cut short (its lost keys defaulting).
Real `tillpoint run` processes; `tillpoint doctor` says the same."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from terminal.config import Config, load
from terminal.doctor import Verdict, check_config
from tests.fixtures import forked
from tests.fixtures.hq import HqProcess, free_port, tillpoint
from tests.ops.helpers import (
    ROOT,
    Api,
    NotifyListener,
    TillProcess,
    hq_journal,
    read_only,
    till_config,
    wait_until,
)


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


def test_a_file_the_config_names_that_cannot_be_read_is_a_configuration_error(tmp_path: Path) -> None:
    """A receipt template, a card master key, the head-office token file or the CA bundle the config names that is
    missing, not a file or not what it should hold: `tillpoint run` says which key and file in one line and exits
    2, a configuration error the unit does not restart every 2 s (RestartPreventExitStatus=2), never 1."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "garbled.toml").write_text("[[[ not a template")
    (files / "short.key").write_bytes(b"12345")
    (files / "folder").mkdir()
    (files / "not-a-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    printer = 'listen = "tcp:127.0.0.1:0"\ntarget = "tcp:127.0.0.1:9"'
    for key, path, section, line in (
        ("receipts.templates", files / "gone.toml", "receipts", "templates = [{}]"),
        ("receipts.templates", files / "garbled.toml", "receipts", "templates = [{}]"),
        ("reader.sun_key_file", files / "gone.key", "reader", "sun_key_file = {}"),
        ("reader.sun_key_file", files / "short.key", "reader", "sun_key_file = {}"),
        ("reader.felica_key_file", files / "folder", "reader", "felica_key_file = {}"),
        ("hq.token_file", files / "folder", "hq", 'url = "http://127.0.0.1:9"\ntoken_file = {}'),
        ("hq.ca_file", files / "not-a-ca.pem", "hq", "ca_file = {}"),
    ):
        config = till_config(tmp_path, None, None, "T-FILES", printer=printer)
        text = config.read_text().replace(f"[{section}]\n", f"[{section}]\n{line.format(json.dumps(str(path)))}\n")
        config.write_text(
            text if f"[{section}]" in text else f"{text}[{section}]\n{line.format(json.dumps(str(path)))}\n"
        )
        if path.name == "gone.toml":  # as an operator starts it
            started = tillpoint("run", "--config", str(config), cwd=tmp_path)
            returncode, said = started.returncode, started.stdout + started.stderr
        else:  # the same command, forked from a process that imported it once
            child = forked.start(
                ["run", "--config", str(config)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            out, err = child.communicate(timeout=60)
            returncode, said = child.returncode, (out + err).decode()
        assert returncode == 2 and "Traceback" not in said, (key, path, said)
        assert f"configuration error: config key '{key}'" in said and str(path) in said, (key, path, said)


def till_keyed(tmp_path: Path, hq: HqProcess, terminal_id: str, key: Path) -> tuple[Path, NotifyListener, TillProcess]:
    """A till enrolled at ``hq`` whose config names ``key`` as its card-hash key file (not there: the daemon makes
    one at its first start): (its config, the notify socket, the till, not started)."""
    config = till_config(tmp_path, hq, hq.add_terminal(terminal_id), terminal_id)
    config.write_text(config.read_text().replace(str(hq.key_file), str(key)))
    notify = NotifyListener(tmp_path / "notify.sock")
    return config, notify, TillProcess(config, notify)


def test_a_card_key_file_cut_short_or_unreadable_is_said_in_one_line(tmp_path: Path, hq: HqProcess) -> None:
    """The key file lost its tail (a crash while it was copied in, a damaged disk) or cannot be read: the daemon
    refuses in one line naming the file, never with a traceback, as a configuration error (exit 2: no restart
    mends it), and starts again once the file is put right."""
    key = tmp_path / "card.key"
    key.write_bytes(hq.key)
    config, notify, till = till_keyed(tmp_path, hq, "T-KEYCUT", key)
    try:
        till.start()
        assert till.stop() == 0
        key.write_bytes(hq.key[:8])
        cut = tillpoint("run", "--config", str(config), cwd=tmp_path)
        said = cut.stdout + cut.stderr
        assert cut.returncode == 2 and "Traceback" not in said and "security.card_key_file" in said, said
        assert "shorter than 16 bytes" in said and hq.key[:8].hex() not in said, said
        key.unlink()
        key.mkdir()  # not a file at all
        unreadable = tillpoint("run", "--config", str(config), cwd=tmp_path)
        said = unreadable.stdout + unreadable.stderr
        assert unreadable.returncode == 2 and "Traceback" not in said and str(key) in said, said
        assert "configuration error: config key 'security.card_key_file'" in said, said
        key.rmdir()
        key.write_bytes(hq.key)
        till.start()
    finally:
        till.kill()
        notify.close()


def hq_claim_keys(hq: HqProcess, terminal_id: str) -> list[str]:
    with closing(sqlite3.connect(hq.db)) as db:
        rows = db.execute("SELECT key_id FROM claim_keys WHERE terminal_id = ? ORDER BY created_at", [terminal_id])
        return [str(r[0]) for r in rows]


def test_a_damaged_claim_key_is_set_aside_and_replaced(tmp_path: Path, hq: HqProcess) -> None:
    """The till's claim key (it signs receipts' claim codes and the door's check-in codes) is the till's own,
    and head office holds its public half: a file left empty by a crash, cut short, or not a file at all does
    not stop the till. It is kept aside for staff, a new key is made and journalled, and head office takes codes
    of both (receipts printed before still claim). The three damages in turn, on one till."""
    config = till_config(tmp_path, hq, hq.add_terminal("T-CLAIM"), "T-CLAIM")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    key = tmp_path / "till" / "claim.key"
    try:
        till.start()
        first = tillpoint("checkin-code", "--json", "--config", str(config), cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        wait_until(lambda: len(hq_claim_keys(hq, "T-CLAIM")) == 1, 20, "the first claim key at head office")
        codes = {json.loads(first.stdout)["code"]}
        for done, damage in enumerate(["empty", "cut", "not_a_file"], start=1):
            assert till.stop() == 0
            original = key.read_bytes()
            if damage == "not_a_file":
                key.unlink()
                key.mkdir()
            else:
                key.write_bytes(b"" if damage == "empty" else original[:11])
            till.start()
            again = tillpoint("checkin-code", "--json", "--config", str(config), cwd=tmp_path)
            assert again.returncode == 0, (damage, again.stdout + again.stderr)
            code = json.loads(again.stdout)["code"]
            assert code not in codes, damage
            codes.add(code)
            wait_until(lambda n=done: len(hq_claim_keys(hq, "T-CLAIM")) == n + 1, 20, f"the new claim key ({damage})")
            assert key.is_file() and len(key.read_bytes()) == 32 and key.stat().st_mode & 0o077 == 0, damage
            aside = sorted(p.name for p in key.parent.glob("claim.key.damaged*"))
            assert len(aside) == done, (damage, aside)
            assert "claim key" in till.log_tail(200) and all(name in till.log_tail(400) for name in aside), damage
    finally:
        till.kill()
        notify.close()


def tapped_member(api: Api, uid: str) -> str | None:
    """The member the cashier's session shows after a tap of ``uid`` (None: the card identified nobody)."""
    api.http.post("/v1/session/new", headers={"Authorization": f"Bearer {api.till.token()}"})
    assert api.tap(uid).status_code == 202
    session = api.http.get("/v1/session", headers={"Authorization": f"Bearer {api.till.token()}"}).json()
    return None if session["member"] is None else str(session["member"]["member_id"])


def test_a_till_first_started_without_the_chains_key_takes_it_up_once_head_office_vouches_for_it(
    tmp_path: Path, hq: HqProcess
) -> None:
    """The installer forgot the chain's card-hash key: at its first start the daemon made a key of its own and
    noted it, and no card identifies anyone (doctor says card_key_mismatch). The chain's key, installed afterwards,
    is taken up at the next start because head office hashes cards with the same key (``GET /v1/terminal``, which
    gives a check of the key, never the key). A third key is still refused, and so is the chain's key while head
    office cannot vouch for it: only the chain's key replaces the one the till noted."""
    own = tmp_path / "till-card.key"  # not there: the daemon makes one
    config, notify, till = till_keyed(tmp_path, hq, "T-NEWKEY", own)
    api = Api(till)
    try:
        till.start()
        wait_until(lambda: api.status()["cache"]["cards"] >= 4, 20, "the demo cards pulled")
        assert tapped_member(api, "04A1B2C3D4E501") is None  # Aiko's card, hashed with the wrong key
        assert till.stop() == 0
        assert own.read_bytes() != hq.key

        own.write_bytes(bytes(reversed(hq.key)))  # a third key: refused, head office up
        refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
        assert refused.returncode == 1 and "nor is it head office's card-hash key" in refused.stdout, refused.stdout
        own.write_bytes(hq.key)  # the chain's key, while head office is down: refused, saying why
        hq.kill()
        refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
        assert refused.returncode == 1 and "could not be asked" in refused.stdout, refused.stdout
        hq.start()

        till.start()  # the chain's key, head office vouching: taken up, and Aiko's card identifies her
        assert "replaces the one this till was started with" in till.log_tail()
        assert wait_until(lambda: tapped_member(api, "04A1B2C3D4E501"), 20, "Aiko identified") == "M-0001"
        assert till.stop() == 0
        hq.kill()
        till.start()  # noted: the next start needs head office no more
        assert tapped_member(api, "04A1B2C3D4E501") == "M-0001"
    finally:
        api.close()
        till.kill()
        notify.close()


def test_a_till_that_enrolled_cards_with_its_own_key_keeps_it(tmp_path: Path, hq: HqProcess) -> None:
    """A till started without the chain's key that has since enrolled a card on the spot hashed that card with
    the key it made (and head office has it so): the chain's key, vouched for by head office, would make that
    member's card identify nobody, silently. It is refused, saying why; the till's own key still starts it."""
    own = tmp_path / "till-card.key"
    config, notify, till = till_keyed(tmp_path, hq, "T-OWNCARDS", own)
    api = Api(till)
    try:
        till.start()
        armed = api.http.post("/v1/enrol/arm", json={}, headers={"Authorization": f"Bearer {api.till.token()}"})
        assert armed.json()["awaiting"] == "enrol", armed.text
        assert api.tap("04F0F1F2F3F4F5").status_code == 202
        member = wait_until(
            lambda: api.http.get("/v1/session", headers={"Authorization": f"Bearer {api.till.token()}"}).json()[
                "member"
            ],
            20,
            "the member enrolled on the spot",
        )
        assert str(member["member_id"]).startswith("E-")
        assert till.stop() == 0
        made = own.read_bytes()

        own.write_bytes(hq.key)  # the chain's key, head office up and vouching for it
        refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
        assert refused.returncode == 1 and "enrolled" in refused.stdout, refused.stdout
        own.write_bytes(made)  # the key the till's cards were hashed with: it starts, the card still identifies
        till.start()
        assert tapped_member(api, "04F0F1F2F3F4F5") == member["member_id"]
    finally:
        api.close()
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


def test_a_local_api_token_file_left_empty_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The till was killed (a power cut) as its first start made ``api.token``: the file was there, empty. Every
    later start took "" for the token, answered READY=1 and refused every request of the POS as ``unauthorized``,
    with nothing in its log. A file holding no token is made again, said in the log, and the POS's sale with the
    new token is approved; and the token is written whole before it is put in place, so a kill cannot leave one."""
    config = till_config(tmp_path, None, None, "T-TOKEN")
    data = tmp_path / "till"
    data.mkdir()
    (data / "api.token").write_text("\n")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    try:
        till.start()
        assert len(till.token()) >= 32
        reply = api.sale(100)
        assert reply.status_code == 200, reply.text
        assert "held no token" in till.log.read_text(), till.log_tail()
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()

    from terminal import keys

    def killed(_: int) -> None:
        raise KeyboardInterrupt  # the process dies before the secret reached the disk

    monkeypatch.setattr(keys.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        keys.load_or_create_token(tmp_path / "fresh" / "api.token")
    assert not (tmp_path / "fresh" / "api.token").exists() and not list((tmp_path / "fresh").iterdir())


def test_a_config_file_not_in_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    """An editor saved the config as Latin-1: ``run`` and ``doctor`` say which file and why (exit 2)."""
    config = till_config(tmp_path, None, None, "T-ENC")
    config.write_bytes((config.read_text() + '[receipts]\ntitle = "Fidélité"\n').encode("latin-1"))
    for command in ("run", "doctor"):
        done = tillpoint(command, "--config", str(config), cwd=tmp_path)
        said = done.stdout + done.stderr
        assert done.returncode == 2 and "Traceback" not in said, said
        assert "UTF-8" in said, said


def test_an_enrolment_code_of_another_store_stops_the_start(tmp_path: Path, hq: HqProcess) -> None:
    """A till configured for store S-1 given a code head office issued for store S-2 would journal every sale for a
    store its terminal is not of, and head office would quarantine them all (``wrong_store``): the daemon refuses to
    start (``enrol_wrong_store``) and the code stays valid; corrected, the till enrols, and a later config naming
    another store is ``store_mismatch`` for the daemon and for doctor."""
    code = hq.cli("enrol-code", "T-ENR", "--store-id", "S-2").strip()
    config = till_config(tmp_path, hq, "unused", "T-ENR")
    written = config.read_text().replace('token = "unused"', f'enrol_code = "{code}"')
    config.write_text(written.replace('id = "T-ENR"\n', 'id = "T-ENR"\nstore_id = "S-1"\n'))
    refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "cannot start: enrol_wrong_store: config key 'terminal.store_id'" in said, said
    assert "for store S-2" in said and not (tmp_path / "till" / "hq.token").exists()

    config.write_text(config.read_text().replace('store_id = "S-1"', 'store_id = "S-2"'))
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    try:
        till.start()  # the same code, still unused
        assert api.sale(100).status_code == 200
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-ENR")) == 1, 20, "the sale pushed")
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()

    config.write_text(config.read_text().replace('store_id = "S-2"', 'store_id = "S-3"'))
    refused = tillpoint("run", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1 and "cannot start: store_mismatch: config key 'terminal.store_id'" in refused.stdout
    doctor = tillpoint("doctor", "--config", str(config), "--json", cwd=tmp_path)
    (check,) = json.loads(doctor.stdout)
    assert doctor.returncode == 2 and (check["name"], check["code"]) == ("config", "store_mismatch"), check


SHIPPED = ROOT / "systemd" / "tillpoint.toml"


def installed_till(tmp_path: Path, hq: HqProcess) -> tuple[Path, dict[str, str]]:
    """A till set up as docs/install.md says: systemd/install.sh (into a root of its own) with the chain's card key and
    the terminal's token, then the config edited (terminal.id, terminal.store_id, hq.url; the test's own port, and the
    root's paths). Returns the config and the environment systemd gives the shipped unit (StateDirectory=)."""
    root, token = tmp_path / "root", tmp_path / "T-CUT.token"
    (root / "etc").mkdir(parents=True)
    token.write_text(hq.add_terminal("T-CUT", "S-CUT") + "\n")
    done = subprocess.run(
        ["bash", str(ROOT / "systemd/install.sh"), "--root", str(root), "--no-venv"]
        + ["--card-key", str(hq.key_file), "--hq-token", str(token)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = root / "etc/tillpoint/tillpoint.toml"
    text = config.read_text().replace('"/var/lib/tillpoint', f'"{root}/var/lib/tillpoint')
    for shipped, edited in (
        ('id = "T-001"', 'id = "T-CUT"'),
        ('store_id = "S-001"', 'store_id = "S-CUT"'),
        ('url = "https://hq.example.invalid"', f'url = "{hq.url}"'),
        ("port = 8732", f"port = {free_port()}"),
    ):
        assert shipped in text, shipped
        text = text.replace(shipped, edited)
    config.write_text(text)
    state = root / "var/lib/tillpoint"
    return config, {"STATE_DIRECTORY": f"{state}:{state / 'data'}"}


MATTERS = ("terminal.id", "terminal.store_id", "terminal.data_dir", "hq.url")
"""The keys whose defaults change what a till records or where it sends it (the card key's path follows data_dir)."""


def left_to_defaults(full: dict[str, Any], cut: dict[str, Any]) -> list[str]:
    """The keys of the full file that the cut one leaves out, where the file's value is not the default (the API
    port, which the test moved off the shipped one for its own till, is judged by the shipped file)."""
    shipped, default = tomllib.loads(SHIPPED.read_text()), Config().model_dump()
    return [
        f"{section}.{key}"
        for section, values in full.items()
        for key, value in values.items()
        if key not in cut.get(section, {})
        and (shipped[section][key] if (section, key) == ("api", "port") else value) != default[section][key]
    ]


def test_a_config_cut_at_any_line_refuses_to_start_or_runs_as_written(
    tmp_path: Path, hq: HqProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config of an installed till cut short at each line boundary (a full disk, a copy interrupted) still parses;
    its lost keys take their defaults. The till either refuses, ``config_incomplete`` naming the first key whose
    default contradicts what it holds (its database, its token), in the daemon and in doctor, or runs on exactly what
    the whole file says: never as terminal T-001 of store S-001, never alone on head office's default address. Cut in
    the middle of a line giving a number, it is refused too, naming that key."""
    config, env = installed_till(tmp_path, hq)
    monkeypatch.setenv("STATE_DIRECTORY", env["STATE_DIRECTORY"])  # how doctor, run by the unit's user, sees it
    whole = config.read_text()
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify, env=env)
    try:
        till.start()
        assert Api(till).sale(100).status_code == 200
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-CUT")) == 1, 20, "the first sale pushed")
        config.write_text(whole[: whole.index("[hq]")])  # cut under the running daemon: a reload refuses it
        sent = time.monotonic()
        till.signal(signal.SIGHUP)
        refusal = "STATUS=config reload refused: config_incomplete: config key 'hq.url'"
        wait_until(lambda: any(x.startswith(refusal) for x in notify.lines(sent)), 20, "the reload refused")
        config.write_text(whole)
        assert till.stop() == 0
    finally:
        till.kill()
    full, wanted = tomllib.loads(whole), load(config)
    lines = whole.splitlines(keepends=True)
    cuts: dict[str, str] = {}  # one cut per document it parses as
    for end in range(len(lines) + 1):
        text = "".join(lines[:end])
        cuts.setdefault(json.dumps(tomllib.loads(text), sort_keys=True), text)
    refused, ran = [], []
    try:
        for text in cuts.values():
            config.write_text(text)
            cut = tomllib.loads(text)
            lost = [key for key in left_to_defaults(full, cut) if key in MATTERS]
            checked = check_config(config)[1]
            if not cut:  # no key at all (cut before the first section): refused as an empty file, whatever it holds
                started = tillpoint("run", "--config", str(config), cwd=tmp_path)
                said = started.stdout + started.stderr
                assert started.returncode == 2 and "config_incomplete: config key '--config'" in said, (text, said)
                assert "is empty" in said and (checked.verdict, checked.code) == (Verdict.FAIL, "config_incomplete")
                continue
            if lost:  # doctor's word, and the daemon's once a key, with the first key the till can tell is wrong
                expected = next(k for k in ("terminal.id", "terminal.store_id", "hq.url") if k in lost)
                assert (checked.verdict, checked.code) == (Verdict.FAIL, "config_incomplete"), (text, checked)
                assert f"config key '{expected}'" in checked.words, (text, checked)
                if expected not in refused:  # the daemon reads the file as doctor does: started once a key
                    started = tillpoint("run", "--config", str(config), cwd=tmp_path)
                    said = started.stdout + started.stderr
                    assert started.returncode == 1, (text, said)
                    assert f"cannot start: config_incomplete: config key '{expected}'" in said, (text, said)
                refused.append(expected)
                continue
            assert checked.verdict is Verdict.OK, (text, checked)
            running = load(config)
            assert (running.terminal, running.data_dir, running.card_key_path) == (
                wanted.terminal,
                wanted.data_dir,
                wanted.card_key_path,
            )
            assert running.hq == wanted.hq and running.hq_token_path == wanted.hq_token_path
            ran.append(text)
        assert set(refused) == {"terminal.id", "terminal.store_id", "hq.url"} and ran, (refused, len(ran))
        for text in (ran[-1], next(t for t in ran if "port = " in t)):  # whole, and the shortest with its API port
            config.write_text(text)
            till.start()
            assert Api(till).sale(100).status_code == 200
            assert till.stop() == 0
        wait_until(lambda: len(hq_journal(Path(hq.db), "T-CUT")) == 3, 20, "the sales of the cut files pushed")
        config.write_text(cuts[min(cuts, key=len)])  # the empty file: doctor says so, by its CLI
        doctor = tillpoint("doctor", "--config", str(config), "--json", cwd=tmp_path)
        (check,) = json.loads(doctor.stdout)
        assert doctor.returncode == 2 and check["code"] == "config_incomplete", check
        port = whole.index("\nport = ") + len("\nport = ")
        config.write_text(whole[: port + 2])  # cut in the middle of the API port's line: it parses, on 2 digits
        started = tillpoint("run", "--config", str(config), cwd=tmp_path)
        said = started.stdout + started.stderr
        assert started.returncode == 2 and "config_incomplete: config key 'api.port'" in said, said
        doctor = tillpoint("doctor", "--config", str(config), "--json", cwd=tmp_path)
        assert doctor.returncode == 2 and "api.port" in doctor.stdout, doctor.stdout
    finally:
        config.write_text(whole)
        till.kill()
        notify.close()
