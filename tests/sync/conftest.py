"""Head-office tests run on SQLite and on PostgreSQL (``hq_url`` is parametrised over both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures


@pytest.fixture
def server(hq: HqStore) -> Iterator[ServerHandle]:
    """Head office's app on a free port of 127.0.0.1, in a thread, over the module's ``hq`` store."""
    handle = start_in_thread(hq, "127.0.0.1", 0, timeout=10)
    yield handle
    handle.stop()
