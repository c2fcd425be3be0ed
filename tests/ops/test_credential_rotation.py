"""An operator runs `tillpoint sync --now --rotate` on a till whose daemon is running (under systemd it always
is), then `tillpoint reconcile`. The command rotates the credential and saves the new token in the token file;
the next command uses it, and head office then drops the old token, which the running daemon still held. The
daemon takes the file's token up at head office's first refusal of the old one (``SyncClient.load_token``), so
its sales keep reaching head office with no restart.

Real head-office and till processes; the commands are run as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, till_config, wait_until


def test_a_rotation_from_the_command_line_does_not_lock_the_running_daemon_out(tmp_path: Path, hq: HqProcess) -> None:
    token, config, data = _till_with_token_file(tmp_path, hq, "T-ROT")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    journal = lambda: hq_journal(Path(hq.db), "T-ROT")  # noqa: E731
    try:
        till.start()
        assert api.sale(100).status_code == 200
        wait_until(lambda: len(journal()) == 1, 20, "the first sale pushed by the daemon")

        rotated = tillpoint("sync", "--now", "--rotate", "--config", str(config), cwd=tmp_path)
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert (data / "hq.token").read_text().strip() != token  # the new token is in the file
        checked = tillpoint("reconcile", "--config", str(config), cwd=tmp_path)  # uses the new token
        assert checked.returncode == 0, checked.stdout + checked.stderr

        assert api.sale(200).status_code == 200  # the cashier goes on selling
        try:
            wait_until(lambda: len(journal()) == 2, 20, "the daemon's sale made after the rotation at head office")
        except AssertionError as exc:
            status = api.status()
            raise AssertionError(
                f"{exc}; the daemon's status: pending={status['pending']} sync_error={status.get('sync_error')!r}"
            ) from None
        assert api.status()["sync_error"] is None
    finally:
        api.close()
        till.kill()
        notify.close()


def test_a_revoked_credential_is_told_apart_from_an_outage_and_a_new_one_in_the_file_brings_the_till_back(
    tmp_path: Path, hq: HqProcess
) -> None:
    """Head office revokes the till (a stolen credential, say). The till must not look merely offline: its status
    names the refusal (``credential_refused``) and its log says once, as an error, what brings it back. A new
    enrolment (``tillpoint enrol CODE`` on the till) brings it back with no restart, and the refusal is cleared."""
    token, config, data = _till_with_token_file(tmp_path, hq, "T-REV")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    journal = lambda: hq_journal(Path(hq.db), "T-REV")  # noqa: E731
    try:
        till.start()
        assert api.sale(100).status_code == 200
        wait_until(lambda: len(journal()) == 1, 20, "the first sale pushed by the daemon")
        assert api.status()["credential_refused"] is None

        hq.cli("revoke", "T-REV")
        assert api.sale(200).status_code == 200  # the cashier goes on selling; the sale waits in the journal
        wait_until(lambda: api.status()["credential_refused"] is not None, 20, "the refusal in the till's status")
        status = api.status()
        assert status["pending"] == 1 and "401" in str(status["sync_error"])
        refused = tillpoint("status", "--json", "--config", str(config), cwd=tmp_path)
        assert '"credential_refused": "' in refused.stdout, refused.stdout + refused.stderr
        wait_until(lambda: len(_sync_lines(till.log, "401")) >= 3, 30, "three refused rounds logged")
        errors = [r for r in _sync_lines(till.log, "401") if r["level"] == "error"]
        assert len(errors) == 1 and "enrol-code T-REV" in errors[0]["msg"], errors  # once, not every round

        wrong = tillpoint("enrol", "AAAA-BBBB-CCCC-DDDD", "--config", str(config), cwd=tmp_path)
        assert wrong.returncode == 1 and "enrolment failed" in wrong.stdout, wrong.stdout + wrong.stderr
        assert (data / "hq.token").read_text().strip() == token  # a refused code leaves the file as it was
        code = hq.cli("enrol-code", "T-REV", "--store-id", "S-001").strip().splitlines()[-1]
        enrolled = tillpoint("enrol", code, "--config", str(config), cwd=tmp_path)  # as the log says
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert (data / "hq.token").read_text().strip() != token
        wait_until(lambda: len(journal()) == 2, 30, "the sale made while refused, pushed with the new credential")
        wait_until(lambda: api.status()["credential_refused"] is None, 20, "the refusal cleared")
    finally:
        api.close()
        till.kill()
        notify.close()


def _sync_lines(log: Path, word: str) -> list[dict[str, Any]]:
    """The daemon's log records of its sync loop (JSON lines) that mention ``word``."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("logger") == "tillpoint.sync" and word in str(r.get("msg"))]


def _till_with_token_file(tmp_path: Path, hq: HqProcess, terminal_id: str) -> tuple[str, Path, Path]:
    """A till whose credential lives in its token file (none in the config): its token, config and data dir."""
    token = hq.add_terminal(terminal_id)
    config = till_config(tmp_path, hq, None, terminal_id)
    data = tmp_path / "till"
    data.mkdir(parents=True, exist_ok=True)
    (data / "hq.token").write_text(token + "\n")
    (data / "hq.token").chmod(0o600)
    config.write_text(config.read_text().replace("[hq]\n", f'[hq]\nurl = "{hq.url}"\n'))
    return token, config, data
