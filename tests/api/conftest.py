from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from terminal.daemon import Daemon
from tests.api.stack import base_url, running_till


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Daemon]:
    """A till daemon on 127.0.0.1 (simulated reader, head office unreachable) with demo data."""
    with running_till(tmp_path) as daemon:
        yield daemon


@pytest.fixture
def client(till: Daemon) -> Iterator[httpx.Client]:
    """A client that sends the till's own token (what the CLI uses)."""
    with httpx.Client(base_url=base_url(till), headers={"Authorization": f"Bearer {till.api_token}"}, timeout=10) as c:
        yield c
