"""Head-office tests run on SQLite and on PostgreSQL (``hq_url`` is parametrised over both)."""

from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
