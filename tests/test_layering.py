"""The pure core imports no driver, network, SQLite or camera library; layers point inwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = [
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
    "receipts/escpos",
    "receipts/templates",
    "receipts/block",
    "receipts/desk",
]
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
# Outer layers may use only these parts of terminal/ (DESIGN.md section 1).
TERMINAL_PUBLIC = {
    "terminal",
    "terminal.model",
    "terminal.ports",
    "terminal.errors",
    "terminal.credentials",
    "terminal.money",
    "terminal.loyalty",
    "terminal.coupons",
    "terminal.pricing",
    "terminal.payments",
    "terminal.scan",
    "terminal.canonical",
    "terminal.membercodes",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def pure_modules() -> list[Path]:
    return [ROOT / "terminal" / f"{name}.py" for name in PURE if (ROOT / "terminal" / f"{name}.py").exists()]


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: p.name)
def test_pure_core_imports_no_io(path: Path) -> None:
    bad = {name for name in imports(path) if name.split(".")[0] in IO_LIBS}
    assert not bad, f"{path.name} is pure core but imports {sorted(bad)}"


def outer_modules() -> list[Path]:
    found = [p for d in ("drivers", "sync", "terminal/api") for p in (ROOT / d).rglob("*.py")]
    return [p for p in found if "__pycache__" not in p.parts]


@pytest.mark.parametrize("path", outer_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_outer_layers_use_only_the_public_core(path: Path) -> None:
    own = ".".join(path.relative_to(ROOT).parts[:2]) if path.parts[-3:-1] == ("terminal", "api") else "-"
    crossing = {
        n for n in imports(path) if n.startswith("terminal") and n not in TERMINAL_PUBLIC and not n.startswith(own)
    }
    assert not crossing, f"{path.relative_to(ROOT)} reaches into {sorted(crossing)}"


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    # The checker itself must be able to fail.
    bad = tmp_path / "bad.py"
    bad.write_text("import smartcard\nfrom httpx import Client\nfrom terminal.store import Store\n")
    assert {"smartcard", "httpx", "terminal.store"} <= imports(bad)


def test_there_is_a_pure_core() -> None:
    assert len(pure_modules()) >= 6
