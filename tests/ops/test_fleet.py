"""The fleet view, with a real head office and real tills: each till reports its version, protocol,
readers, backlog, clock, free disk, last error and uptime; `hq terminals` and `/v1/admin/terminals`
show them; `/metrics` serves them to Prometheus for administrators only; the alert rules refer only
to metrics head office serves, and `promtool` proves each alert fires when it should and not before."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from sync.protocol import PROTOCOL_VERSION
from terminal import __version__
from tests.fixtures.hq import HqProcess, tillpoint
from tests.ops.helpers import Api, NotifyListener, TillProcess, till_config, wait_until

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def admin_headers(hq: HqProcess) -> dict[str, str]:
    token = hq.cli("admin-token", "fleet-watch").strip().splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


def fleet_row(hq: HqProcess, terminal_id: str, headers: dict[str, str]) -> dict | None:
    rows = httpx.get(f"{hq.url}/v1/admin/terminals", headers=headers, timeout=10).json()
    return next((r for r in rows if r["terminal_id"] == terminal_id), None)


def test_each_till_reports_its_health_and_head_office_shows_the_fleet(tmp_path: Path, hq: HqProcess) -> None:
    hq.add_terminal("T-QUIET", "S-FLEET")  # enrolled, never started: shown, with nothing reported
    config = till_config(tmp_path, hq, hq.add_terminal("T-FLEET", "S-FLEET"), "T-FLEET")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    till.start()
    api = Api(till)
    headers = admin_headers(hq)
    try:
        assert api.sale(1500).status_code == 200
        wait_until(
            lambda: (fleet_row(hq, "T-FLEET", headers) or {}).get("version") is not None,
            20,
            "the till's health report at head office",
        )

        # pushed: head office holds it, and the till says nothing is left (a health report composed before the sale
        # was journaled said "pending 0" too)
        def pushed() -> bool:
            row = fleet_row(hq, "T-FLEET", headers) or {}
            return row.get("pending") == 0 and (row.get("acked_seq") or 0) >= 1

        wait_until(pushed, 20, "the sale pushed")
        row = fleet_row(hq, "T-FLEET", headers)
        assert row is not None
        assert row["version"] == __version__ and row["protocol"] == PROTOCOL_VERSION
        assert row["store_id"] == "S-FLEET" and row["acked_seq"] >= 1
        assert [(r["name"].startswith("sim"), r["state"]) for r in row["readers"]] == [(True, "added")], row["readers"]
        assert row["backlog_seconds"] == 0 and row["last_error"] is None and row["loop_crashes"] == 0
        assert row["free_disk_bytes"] == pytest.approx(shutil.disk_usage(till.data).free, rel=0.05)
        assert 0 <= row["uptime_seconds"] < 600 and 0 <= row["silent_seconds"] < 60
        assert abs(row["clock_offset"]) < 5

        quiet = fleet_row(hq, "T-QUIET", headers)
        assert quiet is not None and quiet["version"] is None and quiet["readers"] == []

        out = json.loads(tillpoint("hq", "terminals", "--json", "--db", hq.db).stdout)
        assert {r["terminal_id"]: r["version"] for r in out} == {"T-FLEET": __version__, "T-QUIET": None}
        table = tillpoint("hq", "terminals", "--db", hq.db)
        assert table.returncode == 0 and "T-FLEET" in table.stdout and __version__ in table.stdout

        # The metrics: administrators only (a till's credential or a browser tab gets nothing).
        assert httpx.get(f"{hq.url}/metrics", timeout=10).status_code == 401
        till_token = {"Authorization": f"Bearer {config_token(config)}"}
        assert httpx.get(f"{hq.url}/metrics", headers=till_token, timeout=10).status_code == 403
        text = httpx.get(f"{hq.url}/metrics", headers=headers, timeout=10).text
        assert re.search(r'tillpoint_hq_terminal_pending_entries\{store="S-FLEET",terminal="T-FLEET"\} 0\.0', text)
        assert re.search(r'tillpoint_hq_terminal_reader_up\{[^}]*terminal="T-FLEET"[^}]*\} 1\.0', text)
        served = set(re.findall(r"^(tillpoint_hq_\w+?)(?:\{| )", text, re.M))
        used = rule_metrics()
        assert used and used <= served, f"rules name metrics head office does not serve: {used - served}"
    finally:
        api.close()
        till.stop()
        notify.close()


def test_a_till_reports_only_itself_and_its_backlog_while_head_office_refuses_pushes(
    tmp_path: Path, hq: HqProcess
) -> None:
    """The report carries no terminal id: the credential decides whose health it is. A till whose pushes
    fail still reports, so the fleet view shows its backlog growing and the error it meets."""
    config = till_config(tmp_path, hq, hq.add_terminal("T-SELF", "S-FLEET"), "T-SELF")
    token = config_token(config)
    forged = httpx.post(
        f"{hq.url}/v1/terminal/health",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={
            "terminal_id": "T-OTHER",
            "version": "0.0.1",
            "protocol": 2,
            "started_at": "2026-01-01T00:00:00Z",
            "pending": 0,
        },
    )
    assert forged.status_code == 204
    headers = admin_headers(hq)
    assert fleet_row(hq, "T-OTHER", headers) is None
    assert (fleet_row(hq, "T-SELF", headers) or {})["version"] == "0.0.1"
    newer = httpx.post(
        f"{hq.url}/v1/terminal/health",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={"version": "9.0.0", "protocol": 99, "started_at": "2026-01-01T00:00:00Z", "pending": 0},
    )
    assert newer.status_code == 400 and newer.json()["code"] == "unsupported_protocol"
    assert "upgrade head office" in newer.json()["message"]


def test_the_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    """`promtool test rules` over series for a healthy till and one of each fault."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: the test command installs Debian's prometheus package", pytrace=False)
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES / "tillpoint.rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The unit tests name the rules file relative to themselves: run them where they are.
    done = subprocess.run(
        [promtool, "test", "rules", "tillpoint.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((RULES / "tillpoint.rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "tillpoint.rules.test.yml").read_text()))
    assert alerts <= tested, f"alerts without a unit test: {alerts - tested}"


def rule_metrics() -> set[str]:
    rules = yaml.safe_load((RULES / "tillpoint.rules.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"tillpoint_hq_\w+", expr)}


def config_token(config: Path) -> str:
    match = re.search(r'^token = "([^"]+)"', config.read_text(), re.M)
    assert match is not None
    return match.group(1)
