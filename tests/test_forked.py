"""The tests' forked commands (``tests.fixtures.forked``) behave as the command started afresh does: its output,
exit status, environment, working directory and signals."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import forked
from tests.ports import free_port


def fresh(*argv: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tillpoint.cli", *argv], capture_output=True, cwd=cwd, timeout=60, check=False
    )


def test_a_forked_command_says_and_exits_as_the_command_started_afresh(tmp_path: Path) -> None:
    (tmp_path / "here.toml").write_text("[terminal]\nid = 42\n")  # relative to the working directory, wrong type
    argv = ("doctor", "--config", "here.toml", "--json")
    child = forked.start(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = child.communicate(timeout=60)
    started = fresh(*argv, cwd=tmp_path)
    assert child.returncode == started.returncode == 2, (out, err)
    assert out == started.stdout and b"terminal.id" in out, (out, started.stdout)
    assert child.pid != os.getpid() and child.poll() == 2


def test_a_forked_command_gets_the_environment_and_streams_it_is_given(tmp_path: Path) -> None:
    config = tmp_path / "from-env.toml"  # named only by the environment (TILLPOINT_CONFIG)
    config.write_text("")
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        child = forked.start(
            ["doctor", "--json"], env={**os.environ, "TILLPOINT_CONFIG": str(config)}, cwd=tmp_path, stdout=out
        )
        assert child.wait(timeout=60) == 2
    assert str(config) in log.read_text() and "empty" in log.read_text(), log.read_text()


def test_a_forked_server_ends_by_the_signal_sent_to_it(tmp_path: Path) -> None:
    child = forked.start(
        ["hq", "serve", "--db", str(tmp_path / "hq.db"), "--port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    assert b"head office on" in child.stderr.readline()  # it serves
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.2)
    # Asked where it is (what a test shows of a command it found hung), it writes each thread's stack and runs on.
    child.send_signal(forked.DUMP_STACKS)
    said, deadline = b"", time.monotonic() + 30
    while b"most recent call first" not in said or b'File "' not in said:
        ready, _, _ = select.select([child.stderr.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no stacks within 30 s: {said.decode(errors='replace')}"
        chunk = os.read(child.stderr.fileno(), 65536)
        assert chunk, said.decode(errors="replace")
        said += chunk
    assert child.poll() is None
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
