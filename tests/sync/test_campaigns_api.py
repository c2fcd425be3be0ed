"""Campaigns over head office's API (a real uvicorn and httpx) and its commands (a real process): only an
administrator may store, run or read; a bad campaign answers its own code; a report comes as JSON, CSV
and SVG with the same figures."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import campaigns, segments, stats
from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from tests.fixtures.hq import command
from tests.sync.segment_population import generate, load

TERMINAL_TOKEN = "terminal-secret-token"
CAMPAIGN: dict[str, Any] = {
    "name": "Welcome back",
    "segment": "everyone",
    "variants": [
        {"variant": "yen100", "coupon": {"kind": "amount_off", "value": 100}},
        {"variant": "bonus", "weight": 2, "coupon": {"kind": "bonus_points", "value": 50}},
    ],
    "schedule": {"kind": "daily", "at": "09:00"},
    "timezone": "Asia/Tokyo",
    "control_share": 0.25,
}
EVERYONE = {"where": {"kind": "visits", "days": 3660, "max": 1000000000}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HqStore]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.add_terminal("T1", "S1", TERMINAL_TOKEN)
    load(hq.db, generate())
    segments.save(hq.db, "everyone", "everyone", EVERYONE, "test")
    yield hq
    hq.close()


@pytest.fixture
def http(store: HqStore) -> Iterator[httpx.Client]:
    handle: ServerHandle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    with httpx.Client(base_url=handle.url, timeout=30, trust_env=False) as client:
        yield client
    handle.stop()


def test_an_administrator_stores_runs_and_reads_a_campaign(store: HqStore, http: httpx.Client) -> None:
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    put = http.put("/v1/admin/campaigns/welcome", json=CAMPAIGN, headers=admin)
    assert put.status_code == 200 and put.json()["state"] == "active" and put.json()["created_by"] == "Mio"
    early = http.post("/v1/admin/campaigns/run", json={"now": "2026-03-01T23:00:00Z"}, headers=admin)
    assert early.json() == []  # 08:00 in Tokyo: not yet
    ran = http.post("/v1/admin/campaigns/run", json={"now": "2026-03-02T00:30:00Z"}, headers=admin)
    (run,) = ran.json()
    assert run["run_key"] == "2026-03-02" and sum(run["issued"].values()) > 0
    again = http.post("/v1/admin/campaigns/run", json={"now": "2026-03-02T01:30:00Z"}, headers=admin)
    assert again.json() == []  # that day's run is done
    shown = http.get("/v1/admin/campaigns/welcome", headers=admin).json()
    assert [r["run_key"] for r in shown["runs"]] == ["2026-03-02"]
    report = http.get("/v1/admin/campaigns/welcome/report", params={"as_of": "2026-03-05"}, headers=admin).json()
    arms = {a["arm"]: a for a in report["arms"]}
    assert set(arms) == {"yen100", "bonus", "control"}
    assert arms["yen100"]["issued"] + arms["bonus"]["issued"] == sum(run["issued"].values())
    as_csv = http.get(
        "/v1/admin/campaigns/welcome/report", params={"as_of": "2026-03-05", "format": "csv"}, headers=admin
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text.split("\n\n")[0])))
    assert {r["arm"]: int(r["targeted"]) for r in rows} == {a: arms[a]["targeted"] for a in arms}
    svg = http.get("/v1/admin/campaigns/welcome/report", params={"as_of": "2026-03-05", "format": "svg"}, headers=admin)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.text).tag.endswith("svg")
    paused = http.post("/v1/admin/campaigns/welcome/state", json={"state": "ended"}, headers=admin)
    assert paused.json()["state"] == "ended"
    refused = http.put("/v1/admin/campaigns/welcome", json=CAMPAIGN, headers=admin)
    assert (refused.status_code, refused.json()["code"]) == (409, "campaign_ended")
    settings = http.put("/v1/admin/campaign-settings", json={"offer_cap": {"max": 2, "days": 7}}, headers=admin)
    assert settings.json()["offer_cap"] == {"max": 2, "days": 7}
    assert http.get("/v1/admin/programme", headers=admin).json() == []  # no holdout drawn


def test_bad_campaigns_answer_their_codes(store: HqStore, http: httpx.Client) -> None:
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    bad = http.put("/v1/admin/campaigns/x", json={**CAMPAIGN, "timezone": "Nowhere/Else"}, headers=admin)
    assert (bad.status_code, bad.json()["code"]) == (422, "campaign_malformed")
    assert "timezone" in bad.json()["message"]
    missing = http.put("/v1/admin/campaigns/x", json={**CAMPAIGN, "segment": "nobody"}, headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    unknown = http.get("/v1/admin/campaigns/nope/report", headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    hostile = http.put("/v1/admin/campaigns/x';drop", json=CAMPAIGN, headers=admin)
    assert hostile.status_code in (404, 422)
    bad_settings = http.put("/v1/admin/campaign-settings", json={"holdout": {"share": 2}}, headers=admin)
    assert (bad_settings.status_code, bad_settings.json()["code"]) == (422, "campaign_malformed")
    with store.db.read() as tx:
        assert tx.all("SELECT * FROM campaigns") == []


def test_a_till_or_a_stranger_cannot_touch_campaigns(store: HqStore, http: httpx.Client) -> None:
    for headers in ({"Authorization": f"Bearer {TERMINAL_TOKEN}"}, {"Authorization": "Bearer nobody"}):
        for reply in (
            http.put("/v1/admin/campaigns/x", json=CAMPAIGN, headers=headers),
            http.post("/v1/admin/campaigns/run", json={}, headers=headers),
            http.get("/v1/admin/campaigns", headers=headers),
            http.get("/v1/admin/campaigns/x/report", headers=headers),
            http.put("/v1/admin/campaign-settings", json={}, headers=headers),
            http.get("/v1/admin/programme", headers=headers),
        ):
            assert (reply.status_code, reply.json()["code"]) == (403, "forbidden"), reply.text
    assert http.get("/v1/admin/campaigns").status_code == 401
    with store.db.read() as tx:
        assert tx.all("SELECT * FROM campaigns") == [] and tx.all("SELECT * FROM campaign_members") == []


@pytest.mark.slow
def test_the_campaign_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "hq.db")
    hq = HqStore(db)
    load(hq.db, generate())
    hq.close()
    (tmp_path / "everyone.json").write_text(json.dumps(EVERYONE))
    (tmp_path / "welcome.json").write_text(json.dumps(CAMPAIGN))
    (tmp_path / "bad.json").write_text(json.dumps({**CAMPAIGN, "control_share": 0.9}))
    (tmp_path / "settings.json").write_text(json.dumps({"holdout": {"share": 0.1, "days": 30}}))

    def run(*args: str) -> tuple[int, str]:
        done = command("hq", *args, "--db", db)
        return done.returncode, done.stdout + done.stderr

    assert run("segment", "put", "everyone", str(tmp_path / "everyone.json"))[0] == 0
    code, out = run("campaign", "put", "welcome", str(tmp_path / "welcome.json"))
    assert code == 0 and json.loads(out)["version"] == 1, out
    code, out = run("campaign", "put", "bad", str(tmp_path / "bad.json"))
    assert code == 1 and "campaign_malformed" in out
    assert run("campaign", "settings", str(tmp_path / "settings.json"))[0] == 0
    code, out = run("campaign", "run", "--now", "2026-03-02T00:30:00Z")
    (done,) = json.loads(out)
    assert code == 0 and done["held_out"] > 0 and sum(done["issued"].values()) > 0
    code, out = run("campaign", "run", "--now", "2026-03-02T00:30:00")
    assert code == 1 and "offset" in out
    svg = tmp_path / "welcome.svg"
    code, out = run("campaign", "report", "welcome", "--as-of", "2026-03-05", "--format", "csv", "--svg", str(svg))
    assert code == 0 and out.startswith("campaign_id,as_of,arm,")
    assert ET.fromstring(svg.read_text()).tag.endswith("svg")
    code, out = run("campaign", "report", "welcome", "--as-of", "2026-03-05", "--json")
    assert {a["arm"] for a in json.loads(out)["arms"]} == {"yen100", "bonus", "control"}
    code, out = run("campaign", "report", "welcome", "--as-of", "2026-03-05")
    assert code == 0 and "yen100" in out and "difference" in out
    code, out = run("campaign", "programme", "--as-of", "2026-03-05", "--json")
    assert code == 0 and json.loads(out)[0]["share"] == 0.1
    assert run("campaign", "pause", "welcome")[0] == 0
    assert "paused" in run("campaign", "list")[1]
    old = {
        "name": "Door",
        "segment": "everyone",
        "schedule": {"kind": "checkin"},
        "variants": [{"variant": "p", "points": 5}],
    }
    hq = HqStore(db)  # as an earlier release stored it: today's rules refuse it
    hq.db.transact(
        lambda tx: tx.run(
            "INSERT INTO campaigns (campaign_id, name, spec, state, created_by, created_at, updated_at, version) "
            "VALUES ('door', 'Door', ?, 'active', 'test', 'then', 'then', 1)",
            [json.dumps(old)],
        )
    )
    hq.close()
    listed = json.loads(run("campaign", "list", "--json")[1])
    assert [(c["campaign_id"], c["served"]) for c in listed] == [("door", False), ("welcome", True)]
    assert "no: campaign_malformed" in " ".join(run("campaign", "list")[1].split())
    shown = json.loads(run("campaign", "show", "door")[1])
    assert shown["served"] is False and "max_per_store_day" in shown["not_served"]["reason"]


def test_the_timer_runs_what_is_due_and_one_failing_campaign_stops_no_other(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hq import campaigns
    from hq.scheduler import CampaignTimer

    hq = HqStore(str(tmp_path / "hq.db"))
    try:
        load(hq.db, generate())
        segments.save(hq.db, "everyone", "everyone", EVERYONE, "test")
        segments.save(hq.db, "doomed", "doomed", EVERYONE, "test")
        campaigns.save(hq.db, "a-doomed", {**CAMPAIGN, "segment": "doomed"}, "test")
        campaigns.save(hq.db, "b-fine", CAMPAIGN, "test")
        timer = CampaignTimer(hq.db, 3600, lambda: datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
        assert [r["campaign_id"] for r in timer.tick()] == ["a-doomed", "b-fine"] and timer.failures == 0
        segments.remove(hq.db, "doomed")  # its campaign's runs fail from now on
        timer.now = lambda: datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
        failed, fine = timer.tick()
        assert "no segment" in failed["error"] and timer.failures == 1
        assert fine["campaign_id"] == "b-fine" and fine["run_key"] == "2026-03-02"
        with hq.db.read() as tx:  # each tick rolls the members' windows to the day
            assert stats.windows_day(tx) == date(2026, 3, 2)
    finally:
        hq.close()


@pytest.mark.slow
def test_a_served_head_office_runs_due_campaigns_by_itself(tmp_path: Path) -> None:
    from hq import campaigns
    from tests.fixtures.hq import HqProcess
    from tests.waiting import wait_until

    proc = HqProcess(tmp_path, extra=("--campaign-interval", "0.2"))
    hq = HqStore(proc.db)
    try:
        load(hq.db, generate())
        segments.save(hq.db, "everyone", "everyone", EVERYONE, "test")
        campaigns.save(hq.db, "drop", {**CAMPAIGN, "schedule": {"kind": "once", "at": "2026-01-01T00:00"}}, "test")
        proc.start()

        def issued() -> int:
            with hq.db.read() as tx:
                row = tx.one("SELECT COUNT(*) FROM campaign_members WHERE campaign_id = 'drop'")
            return int(row[0]) if row else 0

        assert wait_until(issued, 60, "the server's timer to run the campaign") > 0
        with hq.db.read() as tx:
            assert tx.one("SELECT finished_at FROM campaign_runs WHERE campaign_id = 'drop'") is not None
    finally:
        proc.kill()
        hq.close()


def test_the_report_command_refuses_a_format_it_does_not_write(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq import campaigns
    from hq.cli import app

    hq = HqStore(str(tmp_path / "hq.db"))
    try:
        segments.save(hq.db, "everyone", "everyone", EVERYONE, "test")
        campaigns.save(hq.db, "welcome", CAMPAIGN, "test")
    finally:
        hq.close()
    report = ["campaign", "report", "welcome", "--as-of", "2026-03-05", "--db", str(tmp_path / "hq.db")]
    done = CliRunner().invoke(app, [*report, "--format", "xml"])  # a table under another name, once
    assert done.exit_code == 2 and "xml" in done.output and "yen100" not in done.output, done.output
    done = CliRunner().invoke(app, [*report, "--format", "csv"])
    assert done.exit_code == 0 and done.output.startswith("campaign_id,as_of,arm,"), done.output


@pytest.mark.parametrize(
    "args",
    [
        ["put-coupon"],
        ["put-rule"],
        ["segment", "put", "everyone"],
        ["campaign", "put", "welcome"],
        ["campaign", "settings"],
    ],
)
def test_every_command_given_a_file_says_it_cannot_read_it(tmp_path: Path, args: list[str]) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    (tmp_path / "broken.json").write_text('{"not": json')
    for file in (tmp_path / "missing.json", tmp_path / "broken.json"):
        done = CliRunner().invoke(app, [*args, str(file), "--db", str(tmp_path / "hq.db")])
        assert done.exit_code == 1 and f"cannot read {file}" in done.output.replace("\n", ""), done.output


def test_a_run_on_head_offices_clock_waits_while_the_tills_disagree_with_it(hq_url: str) -> None:
    """A deployment that runs ``campaign run`` from its own timer (the server's off) is held by the same check
    as the server's timer: while head office's clock disagrees with its tills (set back after it ran ahead, or
    no till heard for days), a run on that clock is refused ``clock_suspect`` and issues nothing, by the command
    and by the API; naming the time (``--now``) is the operator's own decision."""
    from datetime import UTC, datetime, timedelta

    hq = HqStore(hq_url)
    try:
        hq.add_terminal("T1", "S1", TERMINAL_TOKEN)
        load(hq.db, generate())
        segments.save(hq.db, "everyone", "everyone", EVERYONE, "test")
        campaigns.save(
            hq.db, "daily", {**CAMPAIGN, "timezone": "UTC", "schedule": {"kind": "daily", "at": "00:00"}}, "t"
        )
        ahead = datetime.now(UTC) + timedelta(days=2)  # the till's last contact, stamped by a clock since set back
        with hq.db.write() as tx:
            tx.run(
                "UPDATE terminals SET last_seen = ?, clock_offset = 0 WHERE terminal_id = 'T1'",
                [ahead.isoformat().replace("+00:00", "Z")],
            )
        done = command("hq", "campaign", "run", "--db", hq_url)
        assert done.returncode == 1 and "clock_suspect" in done.stdout + done.stderr, done.stdout + done.stderr
        done = command("hq", "campaign", "run", "daily", "--db", hq_url)
        assert done.returncode == 1 and "clock_suspect" in done.stdout + done.stderr, done.stdout + done.stderr
        handle: ServerHandle = start_in_thread(hq, "127.0.0.1", 0, timeout=10)
        try:
            admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
            with httpx.Client(base_url=handle.url, timeout=30, trust_env=False) as http:
                reply = http.post("/v1/admin/campaigns/run", json={}, headers=admin)
        finally:
            handle.stop()
        assert (reply.status_code, reply.json()["code"]) == (409, "clock_suspect"), reply.text
        with hq.db.read() as tx:
            assert tx.all("SELECT * FROM campaign_runs") == [] and tx.all("SELECT * FROM campaign_members") == []
        done = command("hq", "campaign", "run", "--now", "2026-03-02T00:30:00Z", "--db", hq_url)
        assert done.returncode == 0 and json.loads(done.stdout)[0]["run_key"] == "2026-03-02", done.stdout
    finally:
        hq.close()
