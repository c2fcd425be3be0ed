"""An operator runs `tillpoint sync --now --rotate` on a till whose daemon is running (under systemd it always
is), then `tillpoint reconcile`. The command rotates the credential and saves the new token in the token file;
the next command uses it, and head office then drops the old token, which the running daemon still held. The
daemon takes the file's token up at head office's first refusal of the old one (``SyncClient.load_token``), so
its sales keep reaching head office with no restart.

Real head-office and till processes; the commands are run as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, till_config, wait_until


def test_a_rotation_from_the_command_line_does_not_lock_the_running_daemon_out(tmp_path: Path, hq: HqProcess) -> None:
    token = hq.add_terminal("T-ROT")
    config = till_config(tmp_path, hq, None, "T-ROT")  # no token in the config: it lives in the token file
    data = tmp_path / "till"
    data.mkdir(parents=True, exist_ok=True)
    (data / "hq.token").write_text(token + "\n")
    (data / "hq.token").chmod(0o600)
    text = config.read_text().replace("[hq]\n", f'[hq]\nurl = "{hq.url}"\n')
    config.write_text(text)
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
