"""TCP ports for the servers the tests start, without two test runs racing for one.

Picking a free port and closing the socket (``free_port``) leaves a gap in which another program
can take it. So:

- a server that can bind port 0 itself and say which port it got is started that way (the till's
  daemon writes its API URL; in-process servers read their socket back);
- a server started with a port number (head office through the CLI, a till in a subprocess) is
  started with ``free_port()`` and started again on a fresh pick when it reports the port busy,
  a bounded number of times, and is only trusted once ``listening(pid, port)`` says the socket is
  its own (not another run's server that took the port first);
- ports are picked below the kernel's ephemeral range (where it takes the local port of every outgoing
  connection, and where ``bind(0)`` picks), in a block of their own for each xdist worker, walked in turn:
  a client's connection or another worker's pick cannot take a port between its pick and its server's start;
- a port that must refuse connections (a head office that is down) is ``closed_port()``: bound,
  never listened on, and held until the test process ends, so nobody else can take it.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

START_ATTEMPTS = 5
"""How many fresh ports a server start may try before the test fails."""

_held: list[socket.socket] = []


LOWEST = 10000
"""The lowest port picked: above the well-known and common registered servers' ports."""

BLOCKS = 16
"""The picking range is cut into this many blocks, one for each xdist worker (gw16 shares gw0's)."""


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral range starts (Linux's default is 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def _candidates() -> Iterator[int]:
    """This worker's block of ports below the ephemeral range, from a random place in it, round and round (another
    run on the machine starts elsewhere in it); empty when the ephemeral range leaves no room below it."""
    size = (_ephemeral_low() - LOWEST) // BLOCKS
    if size < 16:
        return iter(())
    first = LOWEST + (_worker_index() % BLOCKS) * size
    start = random.randrange(size)
    return itertools.cycle([first + (start + step) % size for step in range(size)])


_picks = _candidates()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))  # without SO_REUSEADDR: a port with a connection in TIME_WAIT is passed
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free a moment ago, out of the kernel's ephemeral range and other workers' blocks; pair it with a retry
    on "port busy" (see the module's doc): another program on the machine may still take it."""
    for port in itertools.islice(_picks, 2000):
        if _bindable(port):
            return port
    with socket.socket() as sock:  # no room below the ephemeral range (or all of it taken): the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port on 127.0.0.1 where a connection is refused at once, for as long as this process runs.

    The socket is bound but never listens: the kernel refuses connections to it, and no other
    program can bind the port meanwhile (we do not set SO_REUSEADDR)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _held.append(sock)
    return int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    local_port = f":{port:04X} "  # how the tables write a local address's port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:  # thousands of closed connections during a test run: only this port's are split
            if local_port not in line:
                continue
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _family(pid: int) -> set[int]:
    """``pid`` and its children (head office's worker processes)."""
    found = {pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.add(int(stat.parent.name))
    return found


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` (or a child of it) holds the socket listening on ``port``."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    for member in _family(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


def serves(pid: int, port: int) -> bool:
    """Whether ``pid`` (or a child of it) listens on ``port`` on 127.0.0.1: a connection is tried first, and only
    when something answers are the kernel's socket tables read for whose it is (``listening``). A run leaves
    thousands of closed connections in those tables; read at every poll of a start, they cost a worker a second
    of CPU or more for each server it waited for."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return False
    return listening(pid, port)
