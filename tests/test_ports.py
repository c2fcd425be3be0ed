"""tests/ports.py and the head-office start that uses it: a taken port is retried, a foreign server
on our port is not mistaken for ours, a closed port stays closed."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from tests.fixtures.hq import HqProcess
from tests.ports import BLOCKS, LOWEST, _ephemeral_low, _worker_index, closed_port, free_port, listening, serves


def test_a_closed_port_refuses_and_cannot_be_taken() -> None:
    port = closed_port()
    with socket.socket() as client:
        assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        with pytest.raises(OSError) as caught:
            other.bind(("127.0.0.1", port))
    assert caught.value.errno == errno.EADDRINUSE


def test_listening_knows_whose_socket_it_is() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = int(server.getsockname()[1])
        assert not listening(os.getpid(), port) and not serves(os.getpid(), port)  # bound, not yet listening
        server.listen()
        assert listening(os.getpid(), port) and serves(os.getpid(), port)
        assert not listening(1, port) and not serves(1, port)  # init does not hold it
    assert not listening(os.getpid(), port) and not serves(os.getpid(), port)


@pytest.mark.slow
def test_head_office_moves_off_a_port_taken_before_it_started(tmp_path: Path) -> None:
    hq = HqProcess(tmp_path)
    with socket.socket() as squatter:  # another run's server, on the port picked for us
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        hq.port = taken
        hq.start()
        try:
            assert hq.port != taken
            assert hq.proc is not None and listening(hq.proc.pid, hq.port)
        finally:
            hq.kill()


def test_free_port_is_free_now() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_ports_are_this_workers_below_the_kernels_own_and_not_picked_again_soon() -> None:
    """Outgoing connections take their local port from the ephemeral range, and another worker picks in its own
    block: neither can take a port between its pick here and its server's start."""
    size = (_ephemeral_low() - LOWEST) // BLOCKS
    first = LOWEST + (_worker_index() % BLOCKS) * size
    picks = [free_port() for _ in range(50)]
    assert all(first <= port < first + size < _ephemeral_low() for port in picks), picks
    assert len(set(picks)) == 50


@pytest.mark.slow
def test_a_till_moves_off_an_api_port_taken_before_it_started(tmp_path: Path) -> None:
    from tests.ops.helpers import Api, NotifyListener, TillProcess, till_config

    config = till_config(tmp_path, None, None)
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    api = Api(till)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", till.port))  # taken between the pick and the start
        squatter.listen()
        taken = till.port
        try:
            till.start()
            assert till.port != taken and f"port = {till.port}" in config.read_text()
            assert api.status()["terminal_id"] == "T-OPS"  # the API client follows the move
        finally:
            till.kill()
            api.close()
            notify.close()


@pytest.mark.slow
def test_postgres_moves_off_a_port_taken_before_it_started() -> None:
    from tests.fixtures.postgres import PgServer

    try:
        server = PgServer()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        taken = server.port
        try:
            server.start()
            assert server.port != taken
            server.execute("SELECT 1")
        finally:
            server.stop()


def test_a_killed_runs_memory_cluster_is_swept_and_a_live_or_new_one_kept(tmp_path: Path) -> None:
    """Clusters in memory left by a killed run go; one whose server runs, or one being made, stays."""
    from tests.fixtures.postgres import _sweep_stale

    dead, live, new = (tmp_path / f"tillpoint-pg-{n}" for n in ("dead", "live", "new"))
    for root, pid in ((dead, 2**22 + 1), (live, os.getpid()), (new, 2**22 + 1)):
        (root / "data").mkdir(parents=True)
        (root / "data" / "postmaster.pid").write_text(f"{pid}\n/data\n")
    for root in (dead, live):
        os.utime(root, (0, 0))  # made long ago
    _sweep_stale(tmp_path)
    assert not dead.exists() and live.exists() and new.exists()
