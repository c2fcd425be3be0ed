from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.hq"]


@pytest.fixture(autouse=True, scope="session")
def _upgrade_backups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Head office's PostgreSQL backups before a migration go to a directory of the run, never the checkout
    (head-office processes the tests start inherit it)."""
    where = tmp_path_factory.mktemp("hq-backups")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TILLPOINT_HQ_BACKUP_DIR", str(where))
        yield where
