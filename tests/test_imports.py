"""The layers of the code are import-linter contracts (pyproject ``[tool.importlinter]``): the till's pure core
imports no I/O, outer layers use only the public core, the till and head office stay apart, and head office's
modules are layered without cycles. These tests run the contracts, check that they still say what they must,
and that a crossing breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("terminal", "drivers", "sync", "hq", "tillpoint")
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"

# What the contracts must keep saying (each of these was an assertion before the contracts existed).
PURE = {
    "model",
    "money",
    "errors",
    "ports",
    "loyalty",
    "coupons",
    "pricing",
    "payments",
    "credentials",
    "scan",
    "canonical",
    "membercodes",
    "backoff",
    "identity",
    "receipts",
    "base45",
    "topups",
    "vouchers",
    "rewards",
    "giftcards",
}
IO_LIBS = {
    "smartcard",
    "nfc",
    "cv2",
    "zxingcpp",
    "httpx",
    "sqlite3",
    "sqlite_utils",
    "fastapi",
    "uvicorn",
    "drivers",
    "sync",
    "serial",
    "evdev",
    "requests",
    "socket",
    "psycopg",
}
# Outer layers may use only these parts of terminal/: its pure core (and the package itself, for the version).
TERMINAL_PUBLIC = {f"terminal.{name}" for name in PURE | {"b64url", "ownership"}} | {"terminal"}
"""The pure core, and the two helpers the sync client shares with the till: base64url and the owner of files it makes."""


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=where, capture_output=True, text=True, timeout=120, check=False
    )


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["include_external_packages"] is True  # else the I/O libraries are not in the graph at all
    return {c["id"]: c for c in config["contracts"]}


def test_every_contract_holds() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_pure_core_contract_names_the_core_and_the_io() -> None:
    pure = contracts()["pure-core"]
    assert {f"terminal.{name}" for name in PURE} <= set(pure["source_modules"])
    assert set(pure["forbidden_modules"]) >= IO_LIBS
    assert not pure.get("allow_indirect_imports")  # nor through another module


def test_there_is_a_pure_core() -> None:
    sources = contracts()["pure-core"]["source_modules"]
    assert len([m for m in sources if (ROOT / (m.replace(".", "/") + ".py")).exists()]) >= 6


def test_outer_layers_may_use_only_the_public_core() -> None:
    public = contracts()["public-core"]
    assert {"drivers", "sync", "terminal.api"} <= set(public["source_modules"])
    outer = {f"terminal.{p.stem}" for p in (ROOT / "terminal").glob("*.py") if p.stem != "__init__"}
    outer |= {f"terminal.{p.name}" for p in (ROOT / "terminal").iterdir() if (p / "__init__.py").exists()}
    # every module of terminal/ outside the public core is forbidden (terminal.api to all but itself)
    assert outer - TERMINAL_PUBLIC - {"terminal.api"} <= set(public["forbidden_modules"])


def test_the_till_and_head_office_stay_apart() -> None:
    found = contracts()
    assert set(found["till-apart"]["forbidden_modules"]) >= {"hq", "tillpoint"}
    assert set(found["till-apart"]["source_modules"]) >= {"terminal", "drivers", "sync"}
    hq = found["hq-apart"]
    assert set(hq["forbidden_modules"]) >= {"drivers", "tillpoint", "terminal.store", "terminal.daemon", "terminal.api"}


def test_every_module_of_head_office_has_its_layer() -> None:
    layers = contracts()["hq-layers"]
    named = {part.strip() for layer in layers["layers"] for part in layer.split("|")}
    present = {p.stem for p in (ROOT / "hq").glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in (ROOT / "hq").iterdir() if (p / "__init__.py").exists()}
    assert present == named
    assert layers["exhaustive"] is True


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
    return where


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("terminal/money.py", "import sqlite3", "pure-core"),
        ("terminal/loyalty.py", "from httpx import Client", "pure-core"),
        ("terminal/scan.py", "import smartcard", "pure-core"),
        ("sync/client.py", "from terminal.store import Store", "public-core"),
        ("drivers/sim.py", "from hq.store import HqStore", "till-apart"),
        ("terminal/daemon.py", "import tillpoint.cli", "till-apart"),
        ("hq/ingest.py", "from terminal.daemon import Daemon", "hq-apart"),
        ("hq/ingest.py", "from hq.members import accept", "hq-layers"),
        ("hq/db/engine.py", "from hq.db.sqlite import SqliteDb", "hq-db-layers"),
        ("hq/api/deps.py", "from hq.api.admin import router", "hq-api-layers"),
        ("hq/audit.py", "from hq.store import HqStore", "hq-layers"),
        ("hq/backoffice/staff.py", "from hq.backoffice.members import search", "hq-backoffice-layers"),
        ("hq/backoffice/roles.py", "import sqlite3", "hq-backoffice-pure"),
    ],
)
def test_a_crossing_breaks_its_contract(copy: Path, module: str, line: str, contract: str) -> None:
    # The checker itself must be able to fail, inside a function as much as at the top of a module.
    path = copy / module
    original = path.read_text(encoding="utf-8")
    try:
        path.write_text(original + f"\n\ndef _crossing() -> None:\n    {line}  # noqa\n", encoding="utf-8")
        done = lint(copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert done.returncode != 0, done.stdout
    name = contracts()[contract]["name"]
    broken = " ".join(done.stdout.split())
    assert f"{name} BROKEN" in broken, done.stdout


HQ_LOADED = "import sys, tillpoint.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'hq'))"


def test_a_till_command_starts_without_head_office_and_hq_is_there_when_asked() -> None:
    """``tillpoint`` loads head office's command group only for ``hq`` (and ``--help``, which lists it)."""
    from typer.testing import CliRunner

    from tillpoint.cli import app

    done = subprocess.run([sys.executable, "-c", HQ_LOADED], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    listed = CliRunner().invoke(app, ["--help"])
    assert listed.exit_code == 0 and " hq " in listed.stdout and " status " in listed.stdout, listed.stdout
    group = CliRunner().invoke(app, ["hq", "--help"])
    assert group.exit_code == 0 and " hq [OPTIONS] COMMAND" in group.stdout and " serve " in group.stdout, group.stdout
    assert "--install-completion" not in group.stdout  # a group of the command, not a program of its own


BUILT_AREAS = """
import sys
from tillpoint.cli import app
from hq import cli
try:
    app(sys.argv[1:], prog_name="tillpoint")
except SystemExit as done:
    assert not done.code, done.code
print(cli._built.cache_info().currsize, len(cli.AREAS))
"""


def test_an_hq_command_builds_its_own_areas_commands_and_help_builds_all(tmp_path: Path) -> None:
    """The names ``hq.cli`` routes by are the names typer gives each area's commands, none in two areas; a command
    line builds the one area that has its command; ``--help`` lists every command in ``AREAS`` order."""
    import typer
    from typer.core import TyperGroup
    from typer.testing import CliRunner

    from hq import cli
    from tillpoint.cli import app

    whole = typer.Typer()  # the areas as one eager typer app, as typer itself builds them
    for area in cli.AREAS:
        whole.add_typer(area.app)
    built = typer.main.get_command(whole)
    assert isinstance(built, TyperGroup)
    every = [name for area in cli.AREAS for name in cli.area_names(area.app)]
    assert every == list(built.commands)
    assert len(every) == len(set(every)) >= 50, [n for n in every if every.count(n) > 1]
    ran = subprocess.run(
        [sys.executable, "-c", BUILT_AREAS, "hq", "add-member", "M-1", "Ann", "--db", str(tmp_path / "hq.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0 and ran.stdout.split()[-2:] == ["1", str(len(cli.AREAS))], ran.stdout + ran.stderr
    assert CliRunner().invoke(app, ["hq", "ledger", "--help"]).exit_code == 0  # an area asked for first
    listed = CliRunner().invoke(app, ["hq", "--help"])
    assert listed.exit_code == 0, listed.stdout
    shown = [line.split()[1] for line in listed.stdout.splitlines() if line.startswith("│ ") and line[2] not in "- "]
    assert shown == every, shown
    typo = CliRunner().invoke(app, ["hq", "add-membr"])
    assert typo.exit_code == 2 and "Did you mean 'add-member'" in typo.output, typo.output
