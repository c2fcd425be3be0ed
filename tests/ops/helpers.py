"""Running the real daemon as an operator's systemd would: a `tillpoint run` subprocess with its
config file, a NOTIFY_SOCKET the test owns (READY=1, WATCHDOG=1, STATUS=...), and the local API."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hq.store import HqStore
from terminal.config import load
from tests.fixtures import forked
from tests.fixtures.hq import EXIT_PORT_BUSY, HqProcess
from tests.ports import START_ATTEMPTS, free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket; keeps every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def lines(self, since: float = 0.0) -> list[str]:
        with self._lock:
            return [line for at, msg in self.messages if at >= since for line in msg.split("\n")]

    def count(self, line: str, since: float = 0.0) -> int:
        return sum(1 for x in self.lines(since) if x == line)

    def wait_for(self, line: str, since: float = 0.0, timeout: float = 20.0) -> None:
        wait_until(lambda: self.count(line, since) > 0, timeout, f"{line!r} on the notify socket")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)
        self.path.unlink(missing_ok=True)


def till_config(
    root: Path,
    hq: HqProcess | None,
    token: str | None,
    terminal_id: str = "T-OPS",
    *,
    hq_url: str | None = None,
    hq_timeout: float = 2.0,
    **extra: str,
) -> Path:
    """A till config file as an operator writes it: data under ``root``, the sim reader, fast sync. ``hq_url``:
    where the till reaches head office, when not straight at ``hq`` (a proxy in front of it)."""
    data = root / "till"
    hq_part = f'url = "{hq_url or hq.url}"\ntoken = "{token}"\n' if hq is not None and token else ""
    text = f"""
[terminal]
id = "{terminal_id}"
data_dir = "{data}"
[security]
card_key_file = "{hq.key_file if hq is not None else root / "card-hash.key"}"
[reader]
devices = ["sim:"]
[hq]
{hq_part}push_interval = 0.1
pull_interval = 0.5
backoff_max = 0.2
timeout = {hq_timeout}
[api]
port = {free_port()}
[log]
level = "info"
format = "json"
"""
    for section, body in extra.items():
        text += f"[{section}]\n{body}\n"
    path = root / "till.toml"
    path.write_text(text)
    return path


class PortTaken(AssertionError):
    """The daemon exited at start: its API port is another program's."""


class TillProcess:
    """`tillpoint run --config FILE` in a process of its own (forked from one that imported the project once:
    ``tests.fixtures.forked``), with the test's notify socket."""

    def __init__(
        self, config: Path, notify: NotifyListener, watchdog_usec: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.notify = notify
        self.watchdog_usec = watchdog_usec
        self.env = env or {}
        """More environment for the daemon (``STATE_DIRECTORY``, as systemd sets it)."""
        self.proc: forked.Process | None = None
        self.log = config.parent / "till.log"
        self.starts = 0
        cfg = load(config)
        self.port = cfg.api.port
        self.data = cfg.data_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> float:
        """Start; return the seconds until READY=1 reached the notify socket.

        The API port was picked free when the config was written; if another program took it
        meanwhile, the daemon exits "port busy" at once, and a first start moves the config to a
        fresh port and starts again (START_ATTEMPTS times at most). READY=1 comes after the daemon
        bound its port, so a till that is ready holds its own port. Restarts keep the port."""
        for _ in range(START_ATTEMPTS - 1 if self.starts == 0 and wait_ready else 0):
            try:
                return self._start(wait_ready, timeout)
            except PortTaken:
                self.move_port()
        return self._start(wait_ready, timeout)

    def move_port(self) -> None:
        text = self.config.read_text()
        moved, found = re.subn(r"(\[api\]\nport = )\d+", lambda m: f"{m.group(1)}{free_port()}", text)
        if not found:
            raise AssertionError(f"the API port was taken, and {self.config} has no [api] port to move")
        self.config.write_text(moved)
        self.port = load(self.config).api.port

    def _start(self, wait_ready: bool, timeout: float) -> float:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONPATH": str(ROOT), **self.env}
        env.pop("WATCHDOG_USEC", None)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        began = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = forked.start(
                ["run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.config.parent,
            )
        self.starts += 1
        if wait_ready:
            deadline = time.monotonic() + timeout
            while self.notify.count("READY=1", began) == 0:
                if self.proc.poll() is not None:
                    if self.proc.returncode == EXIT_PORT_BUSY:
                        raise PortTaken(self.log_tail())
                    raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no READY=1 within {timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.01)
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as systemctl stop does; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = self.stacks()
            self.kill()
            raise AssertionError(
                f"daemon did not stop within {timeout:.0f} s of SIGTERM:\n{self.log_tail()}\n{stacks}"
            ) from None

    def stacks(self, timeout: float = 5.0) -> str:
        """Where each of a hung daemon's threads is (a forked daemon dumps them to its log on ``forked.DUMP_STACKS``;
        one started afresh has no such handler and is not asked)."""
        if self.proc is None or self.proc.poll() is not None or not isinstance(self.proc, forked.ForkedProcess):
            return "(no stacks: the daemon was not forked or has ended)"
        before = self.log.stat().st_size if self.log.exists() else 0
        self.proc.send_signal(forked.DUMP_STACKS)
        deadline, said = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.log.read_bytes()[before:].decode(errors="replace") if self.log.exists() else ""
            if "most recent call first" in now and now == said:  # dumped, and nothing more written since
                return "the daemon's threads:\n" + said
            said = now
        return f"(the daemon did not finish dumping its stacks)\n{said}"

    def token(self) -> str:
        return (self.data / "api.token").read_text().strip()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Api:
    """The till's local API, as the POS uses it."""

    def __init__(self, till: TillProcess, timeout: float = 5.0) -> None:
        self.till = till
        self._http = httpx.Client(base_url=till.url, timeout=timeout)

    @property
    def http(self) -> httpx.Client:
        """The client, pointed at the till's port (a first start may have moved it)."""
        if str(self._http.base_url).rstrip("/") != self.till.url:
            self._http.base_url = httpx.URL(self.till.url)
        return self._http

    def sale(
        self, amount: int, member_id: str | None = None, *, stored_value: int = 0, payment_code: str | None = None
    ) -> httpx.Response:
        """A sale of one line; ``stored_value`` of it paid from the member's account with ``payment_code``."""
        body = {
            "member_id": member_id,
            "use_identified": False,
            "lines": [{"sku": "OPS", "quantity": 1, "unit_price": amount}],
            "stored_value": stored_value,
            "payment_code": payment_code,
        }
        return self.http.post("/v1/sales", json=body, headers={"Authorization": f"Bearer {self.till.token()}"})

    def tap(self, uid: str) -> httpx.Response:
        return self.http.post(
            "/v1/sim/tap", json={"uid": uid}, headers={"Authorization": f"Bearer {self.till.token()}"}
        )

    def status(self) -> dict[str, Any]:
        return dict(self.http.get("/v1/status").json())

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def close(self) -> None:
        self.http.close()


def hq_journal(hq_db: Path, terminal_id: str) -> list[tuple[int, str]]:
    """(seq, txn_id) of every entry head office stored for the terminal, read from its database."""
    conn = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT seq, txn_id FROM journal WHERE terminal_id = ? ORDER BY seq", (terminal_id,))
        return [(int(seq), str(txn)) for seq, txn in rows.fetchall()]
    finally:
        conn.close()


def hq_confirms(hq_db: Path | str, terminal_id: str) -> dict[str, tuple[int, str | None]]:
    """Head office's online confirmations of the terminal's payments: txn_id -> (amount, when withdrawn). An
    amount not withdrawn is held back from the member's balance until the sale's entry arrives."""
    conn = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT txn_id, amount, withdrawn_at FROM payment_confirms WHERE terminal_id = ?", (terminal_id,)
        ).fetchall()
        return {str(txn): (int(amount), withdrawn) for txn, amount, withdrawn in rows}
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text, or None."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == want:
            return float(value)
    return None


def fill(where: Path) -> Path:
    """Fill the file system holding ``where`` to its last byte; returns the filler file."""
    filler = where / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def corrupt_table(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage, as a bad sector or a torn write would."""
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with db.open("r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\xa5" * size)


def hq_database(db: Path, members: int = 400) -> None:
    """A head office holding ``members`` members and a till, its WAL checkpointed into the file."""
    store = HqStore(str(db))
    try:
        with store.db.write() as tx:
            tx.insert_rows(
                "members",
                ("member_id", "display_name", "tier", "points", "status", "version"),
                [(f"M-{n:05d}", f"Member {n}", "basic", n, "active", n + 1) for n in range(members)],
            )
        store.add_terminal("T-1", "S-1")
    finally:
        store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@contextmanager
def read_only(disk: Path) -> Iterator[None]:
    """The file system mounted at ``disk`` (a test's own tmpfs) remounted read-only, then read-write again."""
    _remount(disk, "ro")
    try:
        yield
    finally:
        _remount(disk, "rw")


def _remount(disk: Path, mode: str) -> None:
    done = subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
