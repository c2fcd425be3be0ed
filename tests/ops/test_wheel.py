"""The path users take: the wheel built from pyproject.toml, installed in a fresh virtualenv, starts the
till and head office, and they serve the panel and the join page. The processes run from a directory
outside the checkout with no PYTHONPATH, and the test checks that the code they import is the wheel's.

The fresh virtualenv gets the wheel alone (``--no-deps``); its dependencies are reached through a
``.pth`` line naming the test environment's site-packages, so the run needs no network and the
source checkout is never on the path (a ``.pth`` line adds a directory, not the ``.pth`` files in it,
so the test environment's own install of the project is not seen)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import zipfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from terminal import __version__
from tests.fixtures.hq import EXIT_PORT_BUSY, free_port
from tests.fixtures.postgres import PgServer, pg_server  # noqa: F401 - fixture
from tests.ops.helpers import corrupt_table, fill, hq_database, read_only, till_config
from tests.ops.wheel import (
    ROOT,
    Cli,
    Pair,
    clean_env,
    hq_and_till,
    terminal_and_key,
)
from tests.ports import START_ATTEMPTS
from tests.waiting import wait_until


def test_the_wheel_carries_every_file_the_code_serves(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    served = (
        ROOT / "terminal" / "api" / "panel",
        ROOT / "hq" / "wallet" / "templates",
        ROOT / "hq" / "wallet" / "static",
        ROOT / "hq" / "backoffice" / "templates",
        ROOT / "hq" / "backoffice" / "static",
    )
    shipped = {p.relative_to(ROOT).as_posix() for folder in served for p in folder.rglob("*") if p.is_file()}
    assert shipped and shipped <= names, shipped - names
    assert "hq/wallet/templates/overview.html" in shipped and "hq/wallet/static/sw.js" in shipped
    assert {
        "hq/wallet/static/pay.js",
        "hq/wallet/static/vendor/qrcode.js",
        "hq/wallet/static/vendor/LICENSE",
    } <= shipped
    assert {"hq/backoffice/templates/member.html", "hq/backoffice/static/htmx.min.js"} <= shipped
    assert "hq/backoffice/static/htmx.LICENSE.txt" in shipped  # the vendored library's licence travels with it
    assert f"tillpoint-{__version__}.dist-info/METADATA" in names  # the one version number
    assert {"hq/__init__.py", "hq/cli/__init__.py", "tillpoint/cli.py"} <= names  # head office and the command


def test_the_installed_wheel_runs_the_till_and_head_office(installed: Path, tmp_path: Path) -> None:
    tillpoint = str(installed / "tillpoint")
    where = subprocess.run(
        [str(installed / "python"), "-c", "import terminal, sync; print(terminal.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert where.stdout.strip().startswith(str(installed.parent)), where.stdout  # the wheel's code, not the checkout's

    hq_port, api_port = free_port(), free_port()
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))  # the chain's card key, given to both before either starts
    key.chmod(0o600)
    config = tmp_path / "till.toml"
    config.write_text(f"""
[terminal]
id = "T-WHEEL"
data_dir = "{tmp_path / "till"}"
[security]
card_key_file = "{tmp_path / "card-hash.key"}"
[reader]
devices = ["sim:"]
[api]
port = {api_port}
""")
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("hq", "till")}
    try:
        procs.append(
            subprocess.Popen(
                [
                    tillpoint,
                    "hq",
                    "serve",
                    "--db",
                    str(tmp_path / "hq.db"),
                    "--port",
                    str(hq_port),
                    "--seed-demo-key",
                    str(tmp_path / "card-hash.key"),
                ],
                cwd=tmp_path,
                env=clean_env(),
                stdout=logs["hq"],
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [tillpoint, "run", "--config", str(config)],
                cwd=tmp_path,
                env=clean_env(),
                stdout=logs["till"],
                stderr=subprocess.STDOUT,
            )
        )

        def answers(url: str) -> httpx.Response | None:
            for proc, name in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode}: {(tmp_path / f'{name}.log').read_text()}")
            try:
                reply = httpx.get(url, timeout=2)
            except httpx.TransportError:
                return None
            return reply if reply.status_code == 200 else None

        join = wait_until(lambda: answers(f"http://127.0.0.1:{hq_port}/join"), 60, "head office's join page")
        assert '<form id="join">' in join.text
        started = (tmp_path / "hq.log").read_text()  # where it serves, and that its database was made just now
        assert f"head office on http://127.0.0.1:{hq_port}, database {tmp_path / 'hq.db'} (new and empty" in started
        sign_in = httpx.get(f"http://127.0.0.1:{hq_port}/backoffice/sign-in", timeout=5)  # the back office's template
        assert sign_in.status_code == 200 and 'id="sign-in"' in sign_in.text
        htmx = httpx.get(f"http://127.0.0.1:{hq_port}/backoffice/static/htmx.min.js", timeout=5)
        assert htmx.status_code == 200 and "htmx" in htmx.text[:200]
        panel = wait_until(lambda: answers(f"http://127.0.0.1:{api_port}/panel/"), 60, "the till's panel")
        assert 'id="' in panel.text and "panel.js" in panel.text
        script = httpx.get(f"http://127.0.0.1:{api_port}/panel/panel.js", timeout=5)
        assert script.status_code == 200 and len(script.text) > 1000
        version = subprocess.run(
            [tillpoint, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=clean_env(),
            check=False,
        )
        assert version.returncode == 0 and __version__ in version.stdout
    finally:
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()


def test_the_check_can_fail(installed: Path, tmp_path: Path) -> None:
    """Without its panel files the installed package cannot serve the panel: the check above would see it."""
    purelib = installed.parent / "lib"
    panels = list(purelib.glob("python3*/site-packages/terminal/api/panel"))
    assert len(panels) == 1 and (panels[0] / "index.html").is_file()
    hidden = panels[0].with_name("panel.hidden")
    panels[0].rename(hidden)
    try:
        done = subprocess.run(
            [str(installed / "python"), "-c", "from terminal.api.cashier import panel_files; panel_files()"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=clean_env(),
            check=False,
        )
        assert done.returncode != 0 and "panel" in done.stderr
    finally:
        hidden.rename(panels[0])


def test_the_installed_wheel_brings_the_zone_data_its_store_calendars_need(installed: Path, tmp_path: Path) -> None:
    """A store's business day is read in its time zone (``zoneinfo``); a store PC or a container without the
    system's zone database gets it from the ``tzdata`` package, which the wheel asks for itself (it came before
    only through another library's dependencies)."""
    code = (
        "import importlib.metadata as m, zoneinfo, datetime as d\n"
        "print(sorted(r.split('>')[0] for r in m.requires('tillpoint') or []))\n"
        "print(d.datetime(2026, 3, 1, 16, tzinfo=d.UTC).astimezone(zoneinfo.ZoneInfo('Asia/Tokyo')).date())"
    )
    env = {**clean_env(), "PYTHONTZPATH": ""}  # no system zone database: zoneinfo falls back to tzdata
    done = subprocess.run(
        [str(installed / "python"), "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    required, day = done.stdout.splitlines()
    assert "'tzdata'" in required and day == "2026-03-02"


def test_the_installed_head_office_names_a_damaged_or_full_database(
    installed: Path, tmp_path: Path, small_disk: Path
) -> None:
    """The installed `tillpoint hq` on a damaged file, one emptied to 0 bytes and on a full disk: one line, its
    stable code first (the emptied file left as it is, not taken for a new database)."""
    cli = Cli(str(installed / "tillpoint"), tmp_path)
    damaged, emptied, full = tmp_path / "hq.db", tmp_path / "emptied.db", small_disk / "hq.db"
    for db in (damaged, full):
        hq_database(db, members=50)
    corrupt_table(damaged, "journal")
    emptied.write_bytes(b"")
    filler = fill(small_disk)
    try:
        for db, code in ((damaged, "storage_damaged"), (emptied, "storage_damaged"), (full, "storage_full")):
            done = cli("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(db), check=False)
            text = (done.stdout + done.stderr).strip()
            assert done.returncode == 1 and text.startswith(code) and "Traceback" not in text, text
    finally:
        filler.unlink()
    assert emptied.stat().st_size == 0
    cli("hq", "add-terminal", "T-2", "--store-id", "S-1", "--db", str(full))  # room again: it works


def test_the_installed_head_office_migrates_an_older_database_on_command(installed: Path, tmp_path: Path) -> None:
    """An upgrade with the installed wheel: a database the release before the newest migration left is refused,
    untouched, by a command (``migration_needed``, naming ``tillpoint hq migrate``); the installed ``hq migrate``
    backs it up and applies what it lacks; then the command works (``hq holds``: nothing held back)."""
    from hq.db.schema import MIGRATIONS
    from tests.fixtures.hq import migrated_before

    newest = MIGRATIONS[-1][0]
    cli = Cli(str(installed / "tillpoint"), tmp_path)
    db = tmp_path / "hq" / "hq.db"
    migrated_before(str(db), newest).close()
    done = cli("hq", "holds", "--db", str(db), check=False)
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and text.startswith("migration_needed:") and "tillpoint hq migrate" in text, text
    done = cli("hq", "migrate", "--db", str(db), "--json")
    said = json.loads(done.stdout)
    assert said["applied"] == [newest] and said["schema"] == newest, said
    assert Path(said["backup"]).is_file() and Path(said["backup"]).parent == db.parent, said
    assert json.loads(cli("hq", "holds", "--db", str(db)).stdout) == []


def test_the_installed_till_says_a_read_only_disk_and_a_config_not_in_utf8_in_one_line(
    installed: Path, tmp_path: Path, small_disk: Path
) -> None:
    """The installed `tillpoint run` with its data on a file system gone read-only, with a config an editor
    saved as Latin-1, emptied, or naming head office over plain http on the network: one line each with a
    stable code, no traceback, and no till started on the defaults."""
    cli = Cli(str(installed / "tillpoint"), tmp_path)
    config = till_config(tmp_path, None, None, "T-W")
    config.write_text(config.read_text().replace(str(tmp_path / "till"), str(small_disk / "till")))
    with read_only(small_disk):
        done = cli("run", "--config", str(config), check=False)
        text = (done.stdout + done.stderr).strip()
        assert done.returncode == 1 and "Traceback" not in text, text
        assert "cannot start: storage_failed" in text and "Read-only file system" in text, text
    kept = config.read_text()
    config.write_bytes((kept + '[receipts]\ntitle = "Fidélité"\n').encode("latin-1"))
    done = cli("run", "--config", str(config), check=False)
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in text and "UTF-8" in text, text
    config.write_bytes(b"")  # a save cut by a power cut: the defaults would be another till on a new database
    done = cli("run", "--config", str(config), check=False)
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in text and "is empty" in text, text
    assert not list(tmp_path.glob("**/terminal.db")), "a till was started on the defaults"
    config.write_text(kept.replace("[hq]\n", '[hq]\nurl = "http://192.0.2.10:8731"\n'))  # plain http, on the network
    done = cli("run", "--config", str(config), check=False)
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "hq.url" in text and "allow_plain_http" in text, text


def test_the_installed_wheel_runs_a_campaign_from_the_command_line(installed: Path, tmp_path: Path) -> None:
    """Head office's operator path: a segment, a campaign, a run and its report, all from the wheel."""
    import json

    db = str(tmp_path / "hq.db")
    (tmp_path / "everyone.json").write_text(json.dumps({"where": {"kind": "tier", "tiers": ["basic"]}}))
    (tmp_path / "welcome.json").write_text(
        json.dumps(
            {
                "name": "Welcome",
                "segment": "everyone",
                "variants": [{"variant": "a", "coupon": {"kind": "amount_off", "value": 100}}],
                "schedule": {"kind": "once", "at": "2026-03-01T09:00"},
                "control_share": 0.5,
                "require_consent": False,
            }
        )
    )

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(installed / "tillpoint"), "hq", *args, "--db", db],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    for n in range(6):
        run("add-member", f"M-{n:03d}", "--tier", "basic")
    run("segment", "put", "everyone", str(tmp_path / "everyone.json"))
    run("campaign", "put", "welcome", str(tmp_path / "welcome.json"))
    (done,) = json.loads(run("campaign", "run", "--now", "2026-03-01T10:00:00Z"))
    assert done["targeted"] == 6 and done["control"] + sum(done["issued"].values()) == 6
    assert json.loads(run("campaign", "run", "--now", "2026-03-02T10:00:00Z")) == []  # once is once
    # the run rolled the members' windows to its day; the operator rolls them on
    assert json.loads(run("stats", "roll", "--to", "2026-03-01", "--json")) == {"days": 0, "as_of": "2026-03-01"}
    assert json.loads(run("stats", "roll", "--to", "2026-03-05", "--json")) == {"days": 4, "as_of": "2026-03-05"}
    report = run("campaign", "report", "welcome", "--as-of", "2026-03-05", "--format", "csv")
    arms = {line.split(",")[2]: line.split(",")[3] for line in report.split("\n\n")[0].splitlines()[1:]}
    assert report.startswith("campaign_id,as_of,arm,") and sum(int(n) for n in arms.values()) == 6


def test_the_installed_head_office_keeps_a_staff_only_attribute_off_its_join_page(
    installed: Path, tmp_path: Path
) -> None:
    """An operator marks the chain's win-back list staff-only with the installed command: the installed head
    office's join page and its terms offer the members' own attributes and not that one; staff still set it."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    run("hq", "attribute", "winback", "--label", "Win-back list", "--allowed", "yes", "--staff-only", "--db", db)
    run("hq", "attribute", "shoe_size", "--label", "Shoe size", "--allowed", "41,42", "--db", db)
    run("hq", "add-member", "M-1", "Aiko", "--db", db)
    pair = Pair(tillpoint, tmp_path, db, tmp_path / "card-hash.key")
    try:
        pair.start("hq")
        pair.wait_hq()
        join = httpx.get(f"{pair.hq_url}/join", timeout=10).text
        assert 'data-name="shoe_size"' in join and 'data-name="winback"' not in join
        terms = httpx.get(f"{pair.hq_url}/v1/join/terms", timeout=10).json()
        offered = {a["name"] for a in terms["attributes"]}
        assert "shoe_size" in offered and "winback" not in offered, offered
    finally:
        pair.stop()
    staff = json.loads(run("hq", "profile", "M-1", "--attr", "winback=yes", "--db", db).stdout)
    assert staff["attributes"] == {"winback": "yes"}


def test_the_installed_till_holds_a_members_own_coupon_back_on_a_typed_number(installed: Path, tmp_path: Path) -> None:
    """A campaign's 3.00 off, issued by the installed head office's command line, reaches the installed till;
    rung on the member's number typed at the till, it is held back (``proof_needed``) and the sale goes through
    without it, and naming the coupon on the typed number is refused: it needs the member's card or phone."""
    import json

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    (tmp_path / "everyone.json").write_text(json.dumps({"where": {"kind": "tier", "tiers": ["basic"]}}))
    now = datetime.now(UTC)
    (tmp_path / "gift.json").write_text(
        json.dumps(
            {
                "name": "Gift",
                "segment": "everyone",
                "variants": [{"variant": "a", "coupon": {"kind": "amount_off", "value": 300}}],
                "schedule": {"kind": "once", "at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")},
                "timezone": "UTC",
                "control_share": 0.0,
                "require_consent": False,
            }
        )
    )
    run("hq", "segment", "put", "everyone", str(tmp_path / "everyone.json"), "--db", db)
    run("hq", "campaign", "put", "gift", str(tmp_path / "gift.json"), "--db", db)
    (done,) = json.loads(run("hq", "campaign", "run", "--now", now.isoformat(), "--db", db).stdout)
    assert done["issued"] == {"a": 1}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        (coupon,) = conn.execute("SELECT coupon_id FROM campaign_members WHERE member_id = 'M-W'").fetchone()
    finally:
        conn.close()
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):

        def held_back() -> dict[str, object] | None:
            alive()
            done = run("sale", "1000", "--member", "M-W", "--quote", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # the daemon not up yet, or the member not pulled yet
                assert any(w in done.stdout for w in ("no daemon", "no_api_token", "unknown_member")), done.stdout
                return None
            quote: dict[str, object] = json.loads(done.stdout)
            return quote if [coupon, "proof_needed"] in quote["refused"] else None  # type: ignore[operator]

        quote = wait_until(held_back, 60, "the till to pull the member's coupon")
        assert quote["coupons"] == [] and quote["payable"] == 1000
        named = run("sale", "1000", "--member", "M-W", "--coupon", coupon, "--config", str(config), check=False)
        assert named.returncode == 1 and "proof_needed" in named.stdout, named.stdout
        sold = json.loads(run("sale", "1000", "--member", "M-W", "--json", "--config", str(config)).stdout)
        assert sold["total"] == 1000 and sold["breakdown"]["discounts"] == []


def test_the_installed_chain_books_a_return_of_a_claimed_receipt_to_its_claimer(
    installed: Path, tmp_path: Path
) -> None:
    """An anonymous sale at the installed till; its receipt's claim code claimed at the installed head office;
    then the drink brought back at the till, which never knew of the claim: the claimer keeps only the points of
    what stayed bought."""
    import tomllib

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)

    def member_points(member_id: str) -> int:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT points FROM members WHERE member_id = ?", [member_id]).fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else -1

    def held(txn_id: str) -> bool:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT 1 FROM journal WHERE txn_id = ?", [txn_id]).fetchone() is not None
        finally:
            conn.close()

    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):
        settings = tomllib.loads(config.read_text())
        api_token = (tmp_path / "till" / "api.token").read_text().strip()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{settings['api']['port']}",
            headers={"Authorization": f"Bearer {api_token}"},
            timeout=10,
        ) as till:

            def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
                reply = till.post(path, json=body or {})
                assert reply.status_code == 200, reply.text
                answer: dict[str, Any] = reply.json()
                return answer

            lines = [
                {"sku": "SOUP", "quantity": 1, "unit_price": 5000, "category": "food"},
                {"sku": "TEA", "quantity": 1, "unit_price": 3000, "category": "drink"},
            ]
            post("/v1/session/basket", {"lines": lines})
            post("/v1/session/pay", {"redeem": 0})
            done = post("/v1/session/commit")
            txn_id, code = done["receipt"]["txn_id"], done["customer_qr"]["text"]
            assert done["customer_qr"]["kind"] == "claim" and code.startswith("TPJ1:")
            wait_until(lambda: alive() or held(txn_id), 60, "the anonymous sale at head office")
            claimed = httpx.post(
                f"{settings['hq']['url']}/v1/claims",
                json={"token": code.split(":", 1)[1], "display_name": "Kim", "consent_version": "join-2026-11"},
                timeout=10,
            )
            assert claimed.status_code == 200, claimed.text
            member, earned = str(claimed.json()["member_id"]), int(claimed.json()["points"])
            assert earned == 80 and member_points(member) == 80
            post(f"/v1/sales/{txn_id}/refund", {"lines": {"1": 1}})  # the tea back: its 30 points go
            wait_until(lambda: alive() or member_points(member) == 50, 60, "the claimer's points after the return")


def test_the_installed_till_takes_up_the_chains_card_key_once_head_office_vouches_for_it(
    installed: Path, tmp_path: Path
) -> None:
    """The installer started the till before copying the chain's card-hash key in: the installed daemon made a key
    of its own, so the demo member's card identifies nobody. Another key copied in is refused at the next start;
    the chain's key is taken up, because the installed head office hashes cards with it, and the card then
    identifies its member, with no pip, checkout or PYTHONPATH on the way."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, chain_key = terminal_and_key(run, tmp_path, db)
    own = tmp_path / "till-card.key"  # not there at the first start: the daemon makes it
    pair = Pair(tillpoint, tmp_path, db, own, ("--seed-demo-key", str(chain_key)))
    config = pair.configure(token)

    def tapped() -> str | None:
        pair.alive()
        assert pair.till("/v1/session/new", {}).status_code == 200
        assert pair.till("/v1/sim/tap", {"uid": "04A1B2C3D4E501"}).status_code == 202  # Aiko's demo card
        member = pair.till("/v1/session").json()["member"]
        return None if member is None else str(member["member_id"])

    def cards() -> int:
        pair.alive()
        return int(pair.status()["cache"]["cards"])

    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        wait_until(lambda: cards() >= 4, 60, "the demo cards pulled")
        assert tapped() is None  # hashed with the till's own key
        pair.stop("till")
        assert own.read_bytes() != chain_key.read_bytes()

        own.write_bytes(os.urandom(32))  # a third key: refused in one line, nothing started
        refused = run("run", "--config", str(config), check=False)
        said = refused.stdout + refused.stderr
        assert refused.returncode == 1 and "nor is it head office's card-hash key" in said, said
        assert "Traceback" not in said, said

        own.write_bytes(chain_key.read_bytes())  # the chain's key, head office vouching for it
        pair.start("till")
        pair.wait_pulled()
        assert "replaces the one this till was started with" in (tmp_path / "till.log").read_text()
        assert wait_until(tapped, 30, "Aiko identified by her card") == "M-0001"
    finally:
        pair.stop()


def _up_or_ended(demo: subprocess.Popen[bytes], log: Path) -> bool:
    return "running" in log.read_text() or demo.poll() is not None


def test_the_installed_demo_without_the_pcsc_extra_uses_its_simulated_reader(installed: Path, tmp_path: Path) -> None:
    """``pip install tillpoint`` without the pcsc extra (pyscard), as ``bash .ci/dev demo`` installs it on a machine
    without the PC/SC packages: the demo's ``auto:`` reader is the simulated one (it stopped with pyscard's
    ImportError), and a ``pcsc:`` reader is refused in the log, naming the extra, while the till runs on."""
    purelib = next((installed.parent / "lib").glob("python3*/site-packages"))
    blocker = purelib / "zz-no-pyscard.pth"  # pyscard is in the test environment the virtualenv reaches
    blocker.write_text("import sys; sys.modules['smartcard'] = None\n")
    config = tmp_path / "till.toml"
    log_path = tmp_path / "demo.log"
    tillpoint = Cli(str(installed / "tillpoint"), tmp_path)
    try:
        done = subprocess.run(
            [str(installed / "python"), "-c", "import smartcard"], capture_output=True, timeout=60, env=clean_env()
        )
        assert done.returncode != 0  # the virtualenv has no pyscard now
        for _ in range(START_ATTEMPTS):
            api_port = free_port()
            config.write_text(f'[terminal]\ndata_dir = "{tmp_path / "var" / "tillpoint"}"\n[api]\nport = {api_port}\n')
            with log_path.open("wb") as log:
                demo = subprocess.Popen(
                    [str(installed / "tillpoint"), "demo", "--config", str(config), "--hq-port", "0"],
                    cwd=tmp_path,
                    env={**clean_env(), "COLUMNS": "200"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            wait_until(partial(_up_or_ended, demo, log_path), 60, "the demo running")
            if demo.poll() != EXIT_PORT_BUSY:
                break
        try:
            assert demo.poll() is None, log_path.read_text()
            assert "reader sim: added" in log_path.read_text()
            wait_until(lambda: "sync ok" in log_path.read_text(), 60, "the till's first pull")
            tillpoint("tap", "04A1B2C3D4E501", "--config", str(config))
            wait_until(lambda: "sale #1 " in log_path.read_text(), 60, "the demo's sale")
        finally:
            demo.terminate()
            demo.wait(timeout=20)
        assert demo.returncode == 0 and "Traceback" not in log_path.read_text(), log_path.read_text()

        pcsc = tmp_path / "pcsc.toml"
        pcsc.write_text(f'[terminal]\ndata_dir = "{tmp_path / "pcsc"}"\n[reader]\ndevices = ["pcsc:"]\n')
        checked = tillpoint("doctor", "--config", str(pcsc), "--json", check=False)
        readers = [c for c in json.loads(checked.stdout) if c["name"] == "reader pcsc:"]
        assert len(readers) == 1, checked.stdout + checked.stderr
        assert readers[0]["verdict"] == "fail" and "tillpoint[pcsc]" in readers[0]["words"], readers
    finally:
        blocker.unlink()
