from __future__ import annotations

import os
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.once import keep_once

keep_once()

if TYPE_CHECKING:
    from hq.db.engine import Db

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.hq", "tests.fixtures.postgres"]


@pytest.fixture(autouse=True, scope="session")
def _upgrade_backups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Head office's PostgreSQL backups before a migration go to a directory of the run, never the checkout
    (head-office processes the tests start inherit it)."""
    where = tmp_path_factory.mktemp("hq-backups")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TILLPOINT_HQ_BACKUP_DIR", str(where))
        yield where


STAFF_SCRYPT_N = 2**8
"""scrypt's cost for staff passwords hashed in the tests' own processes: a sixty-fourth of head office's, so the
thousands of hashes and checks of the accounts the back-office tests make and sign in with (3 ms each at 2**10,
0.7 ms at 2**8, 72 ms at head office's own) do not spend minutes of CPU. The hash
and its check are head office's own code; processes the tests start, and ``real_password_cost``, use the real
cost."""


@pytest.fixture(autouse=True, scope="session")
def _cheap_staff_passwords() -> Iterator[int]:
    """Yields head office's own cost."""
    from hq.backoffice import staff

    real = staff.SCRYPT_N
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(staff, "SCRYPT_N", STAFF_SCRYPT_N)
        yield real


@pytest.fixture
def real_password_cost(_cheap_staff_passwords: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Head office's own scrypt cost for the test's staff passwords (returned)."""
    from hq.backoffice import staff

    monkeypatch.setattr(staff, "SCRYPT_N", _cheap_staff_passwords)
    return _cheap_staff_passwords


@pytest.fixture(autouse=True, scope="session")
def _new_hq_databases_from_a_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A head-office SQLite database opened where no file is yet, in the tests' own processes, starts as a copy of
    one ``migrate`` made from nothing once a session, with the data its migrations leave to head office
    (``hq.db.schema.SEEDED``) still to fill: ``HqStore`` fills it in on its own clock, as for a new database. The
    suite opens about a thousand new head-office databases (a sampling profile's estimate), and making each from
    nothing took a tenth of a second of CPU. Processes the tests start (head offices, commands, the installed wheel) make theirs from
    nothing; so do the tests of migrating, which open files that are there. Yields the template."""
    from hq import store
    from hq.db.schema import migrate, open_db

    template = tmp_path_factory.mktemp("hq-new") / "hq.db"
    made = open_db(str(template), pool_size=1)
    try:
        migrate(made, backup=False)  # no seeder: what the migrations leave to fill stays pending in the copies
    finally:
        made.close()
    real = store.open_db

    def from_template(url: str, *, pool_size: int = 16) -> Db:
        if not url.startswith(("postgresql://", "postgres://")) and url != ":memory:":
            _copy_new(template, Path(url.removeprefix("sqlite:///")), _make_private)
        return real(url, pool_size=pool_size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "open_db", from_template)
        yield template


@pytest.fixture(autouse=True, scope="session")
def _new_till_databases_from_a_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same for a till's database (``Store.open`` where no file is yet): a copy of one its migrations made
    once a session (a twentieth of a second each, for about a thousand). Yields the template."""
    from terminal.store.store import Store, create_private

    template = tmp_path_factory.mktemp("till-new") / "terminal.db"
    Store.open(template).close()
    real = Store.open.__func__  # type: ignore[attr-defined]

    def from_template(cls: type[Store], path: str | Path, *, repair: bool = False) -> Store:
        if str(path) != ":memory:":  # the till's own making of the file (its owner's only, its directory owner's)
            _copy_new(template, Path(path), create_private)
        opened: Store = real(cls, path, repair=repair)
        return opened

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "open", classmethod(from_template))
        yield template


def _make_private(path: Path) -> None:
    """A new file readable by its owner only, as head office's SQLite store makes its database."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _copy_new(template: Path, path: Path, make: Callable[[Path], None]) -> None:
    """``template`` copied into a file ``make`` made at ``path`` (as the store makes it), where no file is and it
    can be made. Where it cannot (no such directory, a full or read-only disk), nothing is left there and the
    store's own open meets what it would have met."""
    if path.exists() or not path.parent.is_dir():
        return
    try:
        make(path)
    except OSError:
        return
    try:
        with path.open("r+b") as out, template.open("rb") as source:
            shutil.copyfileobj(source, out)
    except OSError:
        path.unlink(missing_ok=True)


TESTS = Path(__file__).resolve().parent
SLOW = ("pcsc", "e2e", "browser", "postgres", "ops", "slow")
"""Markers given by what a test uses; ``-m "not (pcsc or e2e or browser or postgres or ops or slow)"`` is
the fast loop (README: the pure core and the unit tests, under a minute)."""
HQ_PROCESSES = {"hq", "module_hq", "hq_proc", "chain", "tills"}  # fixtures that start a head-office process


ENGINES = ("sqlite", "postgres")
BOTH_ENGINES = "TILLPOINT_TEST_ENGINES"
"""Set to ``both`` to run every browser and end-to-end scenario on both head-office engines."""


LONGEST_FIRST = (
    "ops/test_wheel_chain.py",
    "ops/test_deb.py",
    "ops/test_wheel.py",
    "security/test_http.py",
    "ops/test_start_guards.py",
    "e2e/test_cli_commands.py",
    "sync/test_chain_sim.py",
    "e2e/test_vouchers.py",
    "ops/test_hq_storage.py",
    "api/test_schema.py",
    "e2e/test_sync_cli.py",
    "backoffice/test_browser.py",
    "e2e/test_reconcile_signal.py",
    "drivers/test_decode_kinds.py",
    "security/test_coupon_uses.py",
    "ops/test_pg_migration.py",
    "backoffice/test_web.py",
    "sync/test_hq_ledger.py",
    "api/test_security.py",
    "ops/test_salvage.py",
    "e2e/test_checkin_live.py",
    "ops/test_crash.py",
)
"""The modules that keep one worker busy longest (``--durations=300``, summed by module), in that order. A module
runs on one worker (``--dist loadscope``); the workers take modules in the order collected (``.ci/dev`` passes
``--no-loadscope-reorder``), so these go first and the short ones fill in at the end. Left to xdist's order (by
the number of tests a module has), the package and wheel modules, a few tests of a minute or more each, were
queued last, where a long module can only end the run late."""


def _longest_first(items: list[pytest.Item]) -> None:
    """``LONGEST_FIRST`` first, then the other modules by their number of tests, most first (what xdist's own
    reorder does); each module's tests together and in their order."""
    module = [item.nodeid.split("::", 1)[0].removeprefix("tests/") for item in items]
    counts = Counter(module)
    first = {name: i for i, name in reversed(list(enumerate(module)))}
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    order = sorted(
        range(len(items)),
        key=lambda i: (
            rank.get(module[i], len(rank)),
            -counts[module[i]] if module[i] not in rank else 0,
            first[module[i]],
            i,
        ),
    )
    items[:] = [items[i] for i in order]


@cache
def _drives_a_browser(path: Path) -> bool:
    return "chromium()" in path.read_text(encoding="utf-8")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The Chromium the tests share (``tests.api.stack.chromium``) ends with the last module of a run of modules
    that drive one: Playwright's sync API holds an event loop on the thread while it runs, which a later module's
    ``asyncio.run`` would meet. Consecutive browser modules keep it (a launch costs a second or two of CPU)."""
    if nextitem is not None and (nextitem.path == item.path or _drives_a_browser(nextitem.path)):
        return
    from tests.api import stack

    stack.stop_chromium()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs (``-m`` selects by them)."""
    for item in items:
        path = Path(str(item.fspath))
        area = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else ""
        if area in ("e2e", "ops"):
            item.add_marker(area)
        used = set(getattr(item, "fixturenames", ()))
        if used & HQ_PROCESSES:
            item.add_marker("slow")
        if used & {"pg_server", "pg_url", "hq_url"}:
            item.add_marker("postgres")
        if used & {"pcscd", "virtual_card"} or item.get_closest_marker("pcsc"):
            item.add_marker("pcsc")
        if _drives_a_browser(path):
            item.add_marker("browser")
    _one_engine_per_scenario(config, items)
    _longest_first(items)


def _engine_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    engines = [v for v in callspec.params.values() if v in ENGINES] if callspec is not None else []
    return engines[0] if len(engines) == 1 else None


def _one_engine_per_scenario(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A browser or end-to-end scenario runs on one head-office engine, the same one on every run, picked from
    its name so each module's scenarios share out between SQLite and PostgreSQL; the store, API and parity tests
    underneath them run on both. ``TILLPOINT_TEST_ENGINES=both`` runs every scenario on both."""
    if os.environ.get(BOTH_ENGINES, "") == "both":
        return
    dropped: list[pytest.Item] = []
    kept: list[pytest.Item] = []
    for item in items:
        engine = _engine_of(item)
        if engine is not None and (item.get_closest_marker("browser") or item.get_closest_marker("e2e")):
            scenario = item.nodeid.replace(engine, "")
            if engine != ENGINES[zlib.crc32(scenario.encode()) % len(ENGINES)]:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
