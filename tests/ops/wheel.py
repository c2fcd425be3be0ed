"""The installed wheel's harness (tests/ops/test_wheel.py, tests/ops/test_wheel_chain.py): the wheel built from
pyproject.toml once a run, installed in a fresh virtualenv for each module; the installed commands run as a store
PC and a head-office server run them, from a directory outside the checkout with no PYTHONPATH."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.hq import EXIT_PORT_BUSY
from tests.fixtures.postgres import PgServer, pg_server  # noqa: F401 - fixture
from tests.ports import START_ATTEMPTS, free_port, serves
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


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
    operator does. ``alive`` raises (with its log) once a process that was started has exited.

    A process's first start waits until it listens on its port; one that finds its port taken by another program
    since the pick is started again on a fresh one (the till's config written anew), START_ATTEMPTS times at most.
    Later starts keep the port: the other side knows it."""

    def __init__(self, tillpoint: str, tmp_path: Path, db: str, key: Path, serve: tuple[str, ...] = ()) -> None:
        self.tmp_path, self.key = tmp_path, key
        self.hq_port, self.api_port = free_port(), free_port()
        self.data, self.config = tmp_path / "till", tmp_path / "till.toml"
        self.commands = {
            "hq": [tillpoint, "hq", "serve", "--db", db, "--port", str(self.hq_port), *serve],
            "till": [tillpoint, "run", "--config", str(self.config)],
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: set[str] = set()
        self.written: tuple[str | None, str | None, str] | None = None  # configure's arguments, for a moved port

    @property
    def hq_url(self) -> str:
        return f"http://127.0.0.1:{self.hq_port}"

    def configure(self, token: str | None, hq_url: str | None = None, extra: str = "") -> Path:
        """Write the till's config file: head office at ``hq_url`` (default: the one started here), the till's
        credential ``token`` in the config, or (``None``) in the token file, where enrolment keeps it."""
        self.written = (token, hq_url, extra)
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
        """Start ``name`` and wait until it listens on its port; a first start moves off a port another program
        took, a restart keeps its port (the till and its POS know it)."""
        if name in self.started:
            if not self._listens(name):
                raise AssertionError(f"{name} found its port taken at its restart")
            return
        for _ in range(START_ATTEMPTS):
            if self._listens(name):
                self.started.add(name)
                return
            self._move(name)
        raise AssertionError(f"{name} found its port taken {START_ATTEMPTS} times in a row")

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        with (self.tmp_path / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.commands[name], cwd=self.tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT
            )
        return self.procs[name]

    def _listens(self, name: str) -> bool:
        """Start ``name``: True once it listens on its port, False when it exited because the port was taken."""
        proc, port = self._spawn(name), self.hq_port if name == "hq" else self.api_port

        def settled() -> bool:
            return proc.poll() is not None or serves(proc.pid, port)

        wait_until(settled, 60, f"{name} listening on port {port}")
        if proc.poll() is None:
            return True
        if proc.returncode != EXIT_PORT_BUSY:
            self.alive()  # raises, with the log
        self.procs.pop(name)
        return False

    def _move(self, name: str) -> None:
        if name == "hq":
            self.hq_port = free_port()
            hq = self.commands["hq"]
            hq[hq.index("--port") + 1] = str(self.hq_port)
        else:
            self.api_port = free_port()
        if self.written is not None:
            self.configure(*self.written)

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


NOT_READY = ("topup_not_enabled", "no daemon", "no_api_token", "unknown_member", "clock_not_synced")
"""What the till answers a top-up before it is ready: the daemon not up, head office's policy or the member not
pulled yet, its clock not checked against head office's yet (a loaded machine's first pull comes late)."""


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
