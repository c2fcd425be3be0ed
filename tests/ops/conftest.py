"""Fixtures of the operations tests."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tmpfs(tmp_path: Path, name: str, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` of its own under ``tmp_path``: a disk whose room the test knows, whatever the machine's."""
    where = tmp_path / name
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"the disk tests mount a tmpfs of their own and need root for it: {done.stderr.strip()}", pytrace=False
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, to fill up (a real full disk, not a simulated one)."""
    yield from _tmpfs(tmp_path, "disk", "4m")


@pytest.fixture
def roomy_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 GiB tmpfs of its own, nearly empty: room enough for a healthy till on a machine whose own disk is full."""
    yield from _tmpfs(tmp_path, "roomy", "1g")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the checkout, once a run: the test workers share it (the first to come builds it,
    under a lock, and the others wait for it); each module installs it in a virtualenv of its own."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "wheel-shared"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = list((shared / "out").glob("tillpoint-*.whl"))
        if not built:
            built = [_build_wheel(shared)]
    assert len(built) == 1
    return built[0]


def _build_wheel(where: Path) -> Path:
    out, src = where / "out", where / "src"  # a copy of the sources: building leaves build/ and egg-info beside them
    out.mkdir()
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("terminal", "drivers", "sync", "hq", "tillpoint"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("tillpoint-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # Without PYTHONPATH: a checkout on it that an editable install left its tillpoint.egg-info in (`bash .ci/dev
    # demo` does) is the same version to pip, which then installed nothing ("already installed"), exit status 0.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (where / "bin" / "tillpoint").is_file(), f"pip installed no tillpoint command: {done.stdout}{done.stderr}"
    return where / "bin"
