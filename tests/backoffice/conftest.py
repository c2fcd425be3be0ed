"""Back-office tests run against a real head office on SQLite and on PostgreSQL (``hq_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.backoffice.chain import chain
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

Office = tuple[HqStore, dict[str, Staff], ServerHandle]


@pytest.fixture
def office(hq_url: str) -> Iterator[Office]:  # noqa: F811 - hq_url is the fixture imported above
    """A chain's head office (``tests.backoffice.chain``) served from a thread: the store, its staff, the server."""
    with chain(hq_url) as (hq, made):
        server = start_in_thread(hq)
        try:
            yield hq, made, server
        finally:
            server.stop()
