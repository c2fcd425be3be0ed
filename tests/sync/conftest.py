"""Head-office tests run on SQLite and on PostgreSQL (``hq_url`` is parametrised over both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from tests.fixtures.postgres import PgServer, fresh_sqlite_hq, hq_url, pg_server, pg_url  # noqa: F401 - fixtures


@pytest.fixture
def server(hq: HqStore) -> Iterator[ServerHandle]:
    """Head office's app on a free port of 127.0.0.1, in a thread, over the module's ``hq`` store."""
    handle = start_in_thread(hq, "127.0.0.1", 0, timeout=10)
    yield handle
    handle.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """A new head-office database for each example of a property test: a SQLite file, or a PostgreSQL
    database."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_hq_template")
        return lambda: fresh_sqlite_hq(template, tmp_path_factory.mktemp("hq") / "hq.db")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.fresh_hq_database
