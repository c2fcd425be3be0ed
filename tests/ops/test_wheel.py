"""The path users take: the wheel built from pyproject.toml, installed in a fresh virtualenv, starts the
till and head office, and they serve the panel and the join page. The processes run from a directory
outside the checkout with no PYTHONPATH, and the test checks that the code they import is the wheel's.

The fresh virtualenv gets the wheel alone (``--no-deps``); its dependencies are reached through a
``.pth`` line naming the test environment's site-packages, so the run needs no network and the
source checkout is never on the path (a ``.pth`` line adds a directory, not the ``.pth`` files in it,
so the test environment's own install of the project is not seen)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal import __version__
from tests.fixtures.hq import free_port
from tests.fixtures.postgres import PgServer, pg_server  # noqa: F401 - fixture
from tests.ops.helpers import corrupt_table, fill, hq_database, hq_journal, read_only, till_config
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("wheel-src")  # a copy: building leaves build/ and egg-info beside the sources
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("terminal", "drivers", "sync", "hq", "tillpoint"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("tillpoint-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return where / "bin"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}


class Cli:
    """The installed ``tillpoint`` run in a test's directory with a clean environment: a non-zero exit fails
    the test unless ``check=False``."""

    def __init__(self, tillpoint: str, cwd: Path) -> None:
        self.tillpoint, self.cwd = tillpoint, cwd

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.tillpoint, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.cwd,
            env=clean_env(),
        )
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done


def pulled(data_dir: Path, api_port: int, alive: Callable[[], None]) -> bool:
    """True once the till's status says it measured head office's clock (its first pull round is done)."""
    alive()
    token = data_dir / "api.token"
    if not token.exists():
        return False
    try:
        status = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/status",
            headers={"Authorization": f"Bearer {token.read_text().strip()}"},
            timeout=5,
        )
    except httpx.TransportError:
        return False
    return status.status_code == 200 and status.json().get("clock_offset_s") is not None


class Pair:
    """Head office (``tillpoint hq serve --db DB *serve``) and a till daemon with a simulated reader, both from the
    wheel, on free ports, the till enrolled as T-W: each started, stopped and started again by the test, as an
    operator does. ``alive`` raises (with its log) once a process that was started has exited."""

    def __init__(self, tillpoint: str, tmp_path: Path, db: str, key: Path, serve: tuple[str, ...] = ()) -> None:
        self.tmp_path, self.key = tmp_path, key
        self.hq_port, self.api_port = free_port(), free_port()
        self.data, self.config = tmp_path / "till", tmp_path / "till.toml"
        self.commands = {
            "hq": [tillpoint, "hq", "serve", "--db", db, "--port", str(self.hq_port), *serve],
            "till": [tillpoint, "run", "--config", str(self.config)],
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def hq_url(self) -> str:
        return f"http://127.0.0.1:{self.hq_port}"

    def configure(self, token: str | None, hq_url: str | None = None, extra: str = "") -> Path:
        """Write the till's config file: head office at ``hq_url`` (default: the one started here), the till's
        credential ``token`` in the config, or (``None``) in the token file, where enrolment keeps it."""
        credential = f'token = "{token}"\n' if token is not None else ""
        self.config.write_text(f"""
[terminal]
id = "T-W"
data_dir = "{self.data}"
[security]
card_key_file = "{self.key}"
[reader]
devices = ["sim:"]
[hq]
url = "{hq_url or self.hq_url}"
{credential}push_interval = 0.1
pull_interval = 0.5
backoff_max = 0.2
[api]
port = {self.api_port}
{extra}""")
        return self.config

    def keep_token(self, token: str) -> None:
        """Put the till's head-office credential in its token file (``<data_dir>/hq.token``, mode 0600), as an
        operator hands a till a new credential."""
        self.data.mkdir(parents=True, exist_ok=True)
        fresh = self.data / "hq.token.new"
        fresh.write_text(token + "\n")
        fresh.chmod(0o600)
        fresh.replace(self.data / "hq.token")  # whole: the daemon never reads half a token

    def start(self, name: str) -> None:
        with (self.tmp_path / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.commands[name], cwd=self.tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self, *names: str, kill: bool = False) -> None:
        """Stop the named processes (every one when none is named): SIGTERM, or SIGKILL with ``kill``."""
        procs = [self.procs.pop(name) for name in names or tuple(self.procs) if name in self.procs]
        for proc in procs:
            if kill:
                proc.kill()
            else:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}: {(self.tmp_path / f'{name}.log').read_text()}")

    def wait_pulled(self) -> None:
        # The till's first pull done (it measures head office's clock then): polled over its API here, so the
        # test's first command is not started again and again (each start of the command costs a second of CPU).
        wait_until(lambda: pulled(self.data, self.api_port, self.alive), 90, "the till's first pull from head office")

    def wait_hq(self) -> None:
        """Head office answering its public health route."""

        def answers() -> bool:
            self.alive()
            try:
                return httpx.get(f"{self.hq_url}/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, 60, "head office answering")

    def till(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """The till's local API as the POS calls it, with the till's API token: a GET, or a POST of ``body``."""
        headers = {"Authorization": f"Bearer {(self.data / 'api.token').read_text().strip()}"}
        url = f"http://127.0.0.1:{self.api_port}{path}"
        if body is None:
            return httpx.get(url, headers=headers, timeout=10)
        return httpx.post(url, json=body, headers=headers, timeout=10)

    def status(self) -> dict[str, Any]:
        reply = self.till("/v1/status")
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = reply.json()
        return answer


@contextmanager
def hq_and_till(
    tillpoint: str, tmp_path: Path, db: str, token: str, key: Path, *serve: str
) -> Iterator[tuple[Path, Callable[[], None]]]:
    """Head office and the till (``Pair``), the till's credential ``token`` in its config, both started: yields the
    till's config file and a check that raises (with its log) once either process has exited; both are stopped
    after."""
    pair = Pair(tillpoint, tmp_path, db, key, serve)
    config = pair.configure(token)
    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        yield config, pair.alive
    finally:
        pair.stop()


def terminal_and_key(run: Cli, tmp_path: Path, db: str) -> tuple[str, Path]:
    """Till T-W of store S-001 registered at the installed head office (its token), and the chain's card-hash key."""
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    return token, key


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


def test_the_installed_till_holds_a_members_own_coupon_back_on_a_typed_number(installed: Path, tmp_path: Path) -> None:
    """A campaign's 3.00 off, issued by the installed head office's command line, reaches the installed till;
    rung on the member's number typed at the till, it is held back (``proof_needed``) and the sale goes through
    without it, and naming the coupon on the typed number is refused: it needs the member's card or phone."""
    import json
    import sqlite3

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
    import sqlite3
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


NOT_READY = ("topup_not_enabled", "no daemon", "no_api_token", "unknown_member", "clock_not_synced")
"""What the till answers a top-up before it is ready: the daemon not up, head office's policy or the member not
pulled yet, its clock not checked against head office's yet (a loaded machine's first pull comes late)."""


def test_the_installed_wheel_sells_a_topup_head_office_enabled(installed: Path, tmp_path: Path) -> None:
    """Stored value sold at the till, from the wheel: head office enables the till by its command, the daemon
    pulls the policy, `tillpoint topup` sells through the daemon's API and head office credits it; a voucher
    head office signed into the till's stock is sold, used once and refused the second time."""
    import json
    import sqlite3

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    limits = ("--per-transaction", "5000", "--per-day", "10000", "--per-member-day", "5000")
    assert json.loads(run("hq", "till-topups", "T-W", "--enable", *limits, "--db", db).stdout)["enabled"]
    assert (
        len(json.loads(run("hq", "voucher", "issue", "T-W", "--value", "1500", "--db", db).stdout)["voucher_ids"]) == 1
    )
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    with hq_and_till(tillpoint, tmp_path, db, token, key, "--seed-demo-key", str(key)) as (config, alive):

        def sold() -> dict[str, object] | None:
            alive()
            done = run("topup", "2000", "--member", "M-W", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # not up yet, the policy not pulled or the clock not checked yet: nothing sold
                assert any(code in done.stdout for code in NOT_READY), done.stdout
                return None
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        receipt = wait_until(sold, 60, "a top-up once the till pulled its policy")
        assert (receipt["kind"], receipt["stored_value"]) == ("till_topup", 2000)
        over = run("topup", "5001", "--member", "M-W", "--config", str(config), check=False)
        assert over.returncode == 1 and "topup_limit_transaction" in over.stdout, over.stdout

        def credited() -> int | None:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                row = conn.execute("SELECT stored_value FROM members WHERE member_id = 'M-W'").fetchone()
            finally:
                conn.close()
            return int(row[0]) if row and row[0] else None

        assert wait_until(credited, 30, "head office's credit of the top-up") == 2000

        # A voucher of the till's stock sold (the POS took 15.00), used once, refused the second time.
        sold_voucher = json.loads(run("voucher", "sell", "--value", "1500", "--json", "--config", str(config)).stdout)
        code = str(sold_voucher["code"])
        used = json.loads(
            run("voucher", "redeem", code, "--sale-ref", "POS-1", "--json", "--config", str(config)).stdout
        )
        assert (used["kind"], used["value"], used["offline"]) == ("voucher_redeem", 1500, False)
        again = run("voucher", "redeem", code, "--config", str(config), check=False)
        assert again.returncode == 1 and "voucher_used" in again.stdout, again.stdout
    # The reports' roll-up of the installed head office holds the top-up, and its check agrees.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rolled = conn.execute("SELECT SUM(amount) FROM report_days WHERE figure = 'topped_up'").fetchone()
    finally:
        conn.close()
    assert rolled == (2000,)
    assert json.loads(run("hq", "reports", "check", "--db", db).stdout) == {"ok": True, "differences": [], "count": 0}


def test_the_installed_wheel_runs_gift_cards_from_both_ends(installed: Path, tmp_path: Path) -> None:
    """Gift cards from the wheel: head office imports a card of an earlier system and sets the terms by its
    commands; the daemon pulls the card; a tap shows its balance through `tillpoint giftcard balance`; a card
    known only by its UID (the simulated reader's) cannot pay; head office's activity shows the import; staff
    attach it to a member's wallet and the ledger's check holds its value."""
    import json

    from terminal.credentials import card_uid_hash

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    uid = "04A1B2C3D4E5F6"
    uid_hash = card_uid_hash(key.read_bytes(), bytes.fromhex(uid))
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    assert json.loads(run("hq", "giftcard", "terms", "--expiry-days", "365", "--db", db).stdout)["expiry_days"] == 365
    card = json.loads(run("hq", "giftcard", "import", uid_hash, "4200", "--by", "Mio", "--db", db).stdout)
    assert (card["state"], card["balance"]) == ("active", 4200) and card["expires_on"]
    again = run("hq", "giftcard", "import", uid_hash, "1", "--by", "Mio", "--db", db, check=False)
    assert again.returncode != 0 and "gift_card_invalid" in again.stdout + again.stderr
    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):

        def balance() -> dict[str, object] | None:
            alive()
            if run("tap", uid, "--config", str(config), check=False).returncode != 0:
                return None  # the daemon is not up yet
            done = run("giftcard", "balance", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # the card not pulled yet: the tap was no gift card
                assert "gift_card_unknown" in done.stdout, done.stdout
                return None
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        shown = wait_until(balance, 60, "the till to pull the imported card")
        assert (shown["card_id"], shown["balance"], shown["state"]) == (card["card_id"], 4200, "active")
        paid = run("giftcard", "pay", "100", "--config", str(config), check=False)
        assert paid.returncode == 1 and "card_cannot_pay" in paid.stdout, paid.stdout  # a UID proves nothing
        activity = json.loads(run("hq", "giftcard", "show", str(card["card_id"]), "--db", db).stdout)["activity"]
        assert [(a["kind"], a["amount"], a["by"]) for a in activity] == [("gift_import", 4200, "Mio")]
    # staff keep the card in a member's wallet, and the ledger holds its value (the installed commands)
    run("hq", "add-member", "M-W", "Wanda", "--db", db)
    kept = json.loads(
        run(
            "hq", "giftcard", "attach", str(card["card_id"]), "M-W", "--by", "Mio", "--reason", "desk", "--db", db
        ).stdout
    )
    assert kept["holder"] == "M-W"
    assert json.loads(run("hq", "ledger", "check", "--db", db).stdout) == {"ok": True, "failures": [], "count": 0}


def test_the_installed_wheel_settles_a_merchant_whose_timing_changed(installed: Path, tmp_path: Path) -> None:
    """Settlement from the wheel: a merchant paying at issuance moves to redemption mid-month; its till earns
    points before and after; the operator closes the month and prints the statement with the installed commands.
    The points issued before the switch are charged (their lot kept the timing it was issued under), those
    issued after are not yet (they are charged when spent), and the closed statement's bytes do not change."""
    import json
    import sqlite3

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    def merchant(timing: str) -> None:
        run("hq", "merchant", "add", "M-S", "--name", "Shop S", "--timing", timing, "--db", db)

    def held_at_hq(txn_id: str) -> str | None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT day FROM journal WHERE txn_id = ? AND effect = 'applied'", [txn_id]).fetchone()
        finally:
            conn.close()
        return str(row[0]) if row else None

    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    merchant("issuance")
    run("hq", "store", "S-001", "--merchant", "M-S", "--db", db)
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):

        def sold(amount: str) -> dict[str, Any] | None:
            alive()
            done = run("sale", amount, "--member", "M-W", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # the daemon not up, or the member not pulled yet
                assert any(code in done.stdout + done.stderr for code in NOT_READY), done.stdout + done.stderr
                return None
            answer: dict[str, Any] = json.loads(done.stdout)
            return answer

        before = wait_until(lambda: sold("3000"), 60, "a member's sale once the till is up")
        day = wait_until(lambda: held_at_hq(str(before["txn_id"])), 30, "head office holding the first sale")
        merchant("redemption")
        after = wait_until(lambda: sold("5000"), 30, "a sale after the switch")
        wait_until(lambda: held_at_hq(str(after["txn_id"])), 30, "head office holding the second sale")
    earned = (int(before["points_delta"]), int(after["points_delta"]))
    assert min(earned) > 0, earned
    period = day[:7]
    next_month = f"{int(period[:4]) + int(period[5:]) // 12}-{int(period[5:]) % 12 + 1:02d}-02"
    shut = run(
        "hq", "settlement", "close", period, "--by", "Mio", "--reason", "month end", "--today", next_month, "--db", db
    )
    assert json.loads(shut.stdout)["period"] == period, shut.stdout
    statement = json.loads(run("hq", "settlement", "statement", period, "M-S", "--db", db).stdout)
    assert (statement["state"], statement["timing"]) == ("closed", "redemption")
    assert (statement["points"]["issued"], statement["points"]["charged"]) == (sum(earned), earned[0])
    csv = tmp_path / "statement.csv"
    run("hq", "settlement", "statement", period, "M-S", "--format", "csv", "--out", str(csv), "--db", db)
    first = csv.read_bytes()
    run("hq", "settlement", "statement", period, "M-S", "--format", "csv", "--out", str(csv), "--db", db)
    assert csv.read_bytes() == first and b"charged" in first
    assert json.loads(run("hq", "ledger", "check", "--db", db).stdout)["ok"] is True


def test_the_installed_head_office_keeps_statistics_on_postgresql(
    installed: Path,
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811 - the fixture
) -> None:
    """Head office from the wheel on PostgreSQL: its migrations (m040's PostgreSQL-only storage setting, m041's
    views among them) make the schema, a till's sale reaches the member's statistics through the one-statement
    write, and the statistics rebuilt from the journal are the same."""
    import json

    import psycopg

    url, tillpoint = pg_server.fresh_schema(), str(installed / "tillpoint")
    run = Cli(tillpoint, tmp_path)
    run("hq", "add-member", "M-P", "Pia Park", "--db", url)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", url).stdout.strip().splitlines()[-1]
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)

    def shown() -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(run("hq", "stats", "show", "M-P", "--json", "--db", url).stdout)
        return answer

    with hq_and_till(tillpoint, tmp_path, url, token, key) as (config, alive):

        def sold() -> dict[str, Any] | None:
            alive()
            done = run(
                "sale", "2500", "--member", "M-P", "--category", "food", "--json", "--config", str(config), check=False
            )
            if done.returncode != 0:  # the daemon not up, or the member not pulled yet
                assert any(code in done.stdout + done.stderr for code in NOT_READY), done.stdout + done.stderr
                return None
            answer: dict[str, Any] = json.loads(done.stdout)
            return answer

        wait_until(lambda: sold(), 60, "a member's sale once the till is up")
        wait_until(lambda: shown()["visits"] == 1 or None, 30, "head office counting the sale")
    kept = shown()
    assert (kept["visits"], kept["spend"]) == (1, 2500), kept
    assert json.loads(run("hq", "stats", "rebuild", "--json", "--db", url).stdout)["member_totals"] == 1
    assert shown() == kept
    with psycopg.connect(url) as conn:
        (options,) = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'member_totals'::regclass").fetchone()
        day_rows = conn.execute("SELECT kind, item, visits, spend FROM member_day_rows ORDER BY kind").fetchall()
    assert options == ["fillfactor=80"]
    assert day_rows == [("c", "food", 0, 2500), ("s", "S-001", 1, 2500)]  # m041: one table, read through views


def sale(pair: Pair, amount: int, **more: Any) -> httpx.Response:
    """A sale of one line rung through the till's local API (``more``: the member, the payment)."""
    return pair.till("/v1/sales", {"lines": [{"sku": "W", "quantity": 1, "unit_price": amount}], **more})


def rung(pair: Pair, amount: int) -> str:
    """An anonymous sale the till records; its txn id."""
    reply = sale(pair, amount)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["txn_id"])


def hq_rows(db: str, sql: str, *params: str) -> list[tuple[Any, ...]]:
    """Rows of head office's SQLite database, read as it runs."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_the_installed_daemon_takes_up_a_credential_head_office_re_keyed(installed: Path, tmp_path: Path) -> None:
    """Head office re-keys the till (`tillpoint hq add-terminal` of a terminal it holds): the running installed
    daemon is refused with the credential it holds; the operator puts the new one in the till's token file, and
    the daemon reads the file again at the next refusal: the sale rung after the re-keying reaches head office,
    with no restart."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    pair.configure(None)  # the credential lives in the token file, where enrolment keeps it
    pair.keep_token(token)

    def held() -> list[str]:
        pair.alive()
        return [txn for _, txn in hq_journal(Path(db), "T-W")]

    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        first = rung(pair, 100)
        wait_until(lambda: held() == [first], 30, "the first sale at head office")
        rekeyed = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db)
        new = rekeyed.stdout.strip().splitlines()[-1]
        assert new != token and "re-keyed" in rekeyed.stderr, rekeyed.stderr
        second = rung(pair, 200)
        wait_until(
            lambda: pair.alive() or "401" in str(pair.status().get("sync_error")), 30, "the old credential refused"
        )
        assert held() == [first]
        pair.keep_token(new)
        wait_until(lambda: held() == [first, second], 30, "the sale rung after the re-keying at head office")
        wait_until(lambda: pair.status()["sync_error"] is None, 30, "the daemon syncing without an error")
    finally:
        pair.stop()


def test_the_installed_till_withdraws_a_confirmation_whose_answer_was_lost(installed: Path, tmp_path: Path) -> None:
    """A member pays 30.00 of their 50.00 stored value with their phone's code at the installed till; head office
    confirms it and holds the amount back, but the network loses its answer; the till's offline rules (20.00 a
    payment here) refuse the sale, so its entry never comes. The installed daemon withdraws the confirmation with
    its next sync: head office stops holding the 30.00, and the member pays the whole 50.00 at the till."""
    from sync.memberapp import MemberApp
    from tests.security.test_lost_confirmation import DroppingNetwork

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    run("hq", "topup", "M-W", "5000", "--db", db)
    member_token = run("hq", "member-token", "M-W", "--db", db).stdout.strip().splitlines()[-1]
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    network = DroppingNetwork(("127.0.0.1", pair.hq_port), limit=1)  # loses the first confirmation's answer
    pair.configure(token, hq_url=network.url, extra="[payments]\nper_transaction = 2000\n")
    phone = MemberApp("M-W", tmp_path / "phone")

    def confirmations() -> list[tuple[int, int]]:
        """(amount, withdrawn) of each of the member's confirmations head office holds."""
        pair.alive()
        found = hq_rows(db, "SELECT amount, withdrawn_at IS NOT NULL FROM payment_confirms WHERE member_id = 'M-W'")
        return sorted((int(amount), int(withdrawn)) for amount, withdrawn in found)

    def paid(amount: int) -> httpx.Response | None:
        pair.alive()
        reply = sale(pair, amount, member_id="M-W", stored_value=amount, payment_code=phone.next_code())
        if reply.status_code == 409 and reply.json()["code"] in ("unknown_member", "device_cert_unknown"):
            return None  # the member or the phone's certificate not pulled yet: head office was not asked
        return reply

    network.start()
    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_hq()
        phone.register(pair.hq_url, member_token)  # the till pulls the phone's certificate with a later round
        pair.wait_pulled()
        lost = wait_until(lambda: paid(3000), 30, "the till to take the member's phone code")
        assert lost.status_code == 409 and lost.json()["code"] == "offline_limit_transaction", lost.text
        assert network.dropped == 1  # head office confirmed it: its answer was lost on the way
        wait_until(lambda: confirmations() == [(3000, 1)], 30, "the till's withdrawal of the unused confirmation")
        whole = paid(5000)
        assert whole is not None and whole.status_code == 200, whole.text if whole is not None else None
        wait_until(
            lambda: hq_rows(db, "SELECT stored_value FROM members WHERE member_id = 'M-W'") == [(0,)],
            30,
            "the whole balance's sale at head office",
        )
        assert confirmations() == [(3000, 1), (5000, 0)]
    finally:
        pair.stop()
        network.stop()


def test_the_installed_till_resends_what_a_restored_head_office_lost(installed: Path, tmp_path: Path) -> None:
    """Head office restored from its last backup (its disk died): the installed till had pushed four sales since
    and marked them acknowledged. Its next push learns of the hole, the till sends them again, and head office
    ends with every seq exactly once and the till with nothing pending."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    pair.configure(token)
    backup = tmp_path / "hq-backup.db"

    def drained(count: int) -> bool:
        pair.alive()
        return len(hq_journal(Path(db), "T-W")) == count and pair.status()["pending"] == 0

    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        sold = [rung(pair, 1000 + n) for n in range(3)]
        wait_until(lambda: drained(3), 30, "the first sales at head office")
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)  # last night's backup, taken live
        target = sqlite3.connect(backup)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        sold += [rung(pair, 2000 + n) for n in range(4)]
        wait_until(lambda: drained(7), 30, "the day's sales acknowledged")

        pair.stop("hq", kill=True)  # head office's disk dies; the operator restores the backup
        for side in ("-wal", "-shm"):
            Path(db + side).unlink(missing_ok=True)
        shutil.copyfile(backup, db)
        pair.start("hq")
        assert len(hq_journal(Path(db), "T-W")) == 3

        sold += [rung(pair, 3000 + n) for n in range(2)]
        wait_until(lambda: drained(9), 30, "every sale at head office again and nothing pending at the till")
        status = pair.status()
        assert (status["resent"], status["push_refused"], status["sync_error"]) == (4, [], None)
    finally:
        pair.stop()
    held = hq_journal(Path(db), "T-W")
    assert [seq for seq, _ in held] == list(range(1, 10))
    assert sorted(txn for _, txn in held) == sorted(sold)
