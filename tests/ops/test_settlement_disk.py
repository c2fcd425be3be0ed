"""Settlement statements written to a full disk (a real one: a small tmpfs filled up): each file is written
whole or not at all, a statement there before stays as it was, and the command says ``disk_full``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hq.cli import app
from hq.store import HqStore
from tests.ops.helpers import fill

JUNE = "2026-06"


def test_a_full_disk_leaves_every_statement_file_whole_or_absent(small_disk: Path, tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "hq.db")]
    HqStore(str(tmp_path / "hq.db")).close()
    run = CliRunner().invoke
    assert run(app, ["merchant", "add", "M-A", "--name", "B", *db]).exit_code == 0
    out, one = small_disk / "out", small_disk / "one.csv"
    assert run(app, ["settlement", "statements", JUNE, "--dir", str(out), *db]).exit_code == 0
    assert run(app, ["settlement", "statement", JUNE, "M-A", "--format", "csv", "--out", str(one), *db]).exit_code == 0
    before = {p.name: p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    assert run(app, ["merchant", "add", "M-A", "--name", "Bakery " * 28, *db]).exit_code == 0  # the open one grows
    filler = fill(small_disk)

    fresh = small_disk / "fresh.pdf"
    new = run(app, ["settlement", "statement", JUNE, "M-A", "--format", "pdf", "--out", str(fresh), *db])
    assert new.exit_code == 1 and "disk_full: --out" in new.output
    assert not fresh.exists()  # no part of a statement under its name
    full = run(app, ["settlement", "statements", JUNE, "--dir", str(out), *db])
    assert full.exit_code == 1 and "disk_full: --dir" in full.output and "Traceback" not in full.output
    again = run(app, ["settlement", "statement", JUNE, "M-A", "--format", "csv", "--out", str(one), *db])
    assert again.exit_code == 1 and "disk_full: --out" in again.output
    after = {p.name: p.read_bytes() for p in small_disk.rglob("*") if p.is_file() and p != filler}
    assert after == before  # nothing truncated, no part of a new file, no temporary file left

    filler.unlink()
    assert run(app, ["settlement", "statements", JUNE, "--dir", str(out), *db]).exit_code == 0
    assert b"Bakery Bakery" in (out / f"settlement-{JUNE}-M-A.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(n for n in before if n.startswith("settlement-"))
