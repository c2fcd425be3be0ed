"""Back-office tests run against a real head office on SQLite and on PostgreSQL (``hq_url``)."""

from __future__ import annotations

from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
