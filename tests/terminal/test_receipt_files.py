"""Kept receipts on disk (terminal/receiptfiles.py): retention by age and by total size, pruned at start,
once a day (a fake clock) and when the cap is passed; what a directory that cannot be written is called."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from terminal.receiptfiles import DAY, Keeper, Retention, problem_code, prune
from terminal.receipts.escpos import parse

NOW = 1_800_000_000.0


def put(directory: Path, name: str, size: int, age_days: float, unread: bool = False) -> Path:
    where = directory / "unread" if unread else directory
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.bin"
    path.write_bytes(b"x" * size)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    if unread:
        code = where / f"{name}.code"
        code.write_text("receipt_unread\n", encoding="utf-8")
        os.utime(code, (stamp, stamp))
    return path


def names(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def test_receipts_older_than_the_days_go_with_their_code_files_and_nothing_else(tmp_path: Path) -> None:
    put(tmp_path, "old-read", 100, 31)
    put(tmp_path, "old-unread", 100, 45, unread=True)
    put(tmp_path, "young-read", 100, 29)
    put(tmp_path, "young-unread", 100, 1, unread=True)
    (tmp_path / "notes.txt").write_text("not a receipt", encoding="utf-8")
    done = prune(tmp_path, Retention(days=30, max_bytes=0), NOW)
    assert names(tmp_path) == {
        "young-read.bin",
        "unread/young-unread.bin",
        "unread/young-unread.code",
        "notes.txt",
    }
    assert (done.removed, done.kept) == (2, 2)
    assert done.removed_bytes == 100 + 100 + len("receipt_unread\n")


def test_past_the_size_cap_the_oldest_go_first(tmp_path: Path) -> None:
    for i in range(10):
        put(tmp_path, f"r{i}", 1000, age_days=10 - i, unread=i % 2 == 0)  # r0 oldest
    sizes = {f"r{i}": 1000 + (len("receipt_unread\n") if i % 2 == 0 else 0) for i in range(10)}
    done = prune(tmp_path, Retention(days=0, max_bytes=4500), NOW)
    left = sorted(p.stem for p in tmp_path.rglob("*.bin"))
    assert left == ["r6", "r7", "r8", "r9"]
    assert done.kept_bytes == sum(sizes[x] for x in left) <= 4500
    assert not list((tmp_path / "unread").glob("r0.*"))  # the code file went with its receipt


def test_no_limits_keep_everything_and_a_missing_directory_is_nothing_to_prune(tmp_path: Path) -> None:
    put(tmp_path, "ancient", 10_000, 3650)
    assert prune(tmp_path, Retention(days=0, max_bytes=0), NOW).removed == 0
    assert prune(tmp_path / "nowhere", Retention(), NOW).kept == 0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_the_keeper_prunes_at_start_then_once_a_day(tmp_path: Path) -> None:
    clock = Clock()
    put(tmp_path, "a", 10, 40)
    put(tmp_path, "b", 10, 20)
    events: list[dict[str, object]] = []
    keeper = Keeper(tmp_path, Retention(days=30, max_bytes=0), clock=clock, emit=events.append)
    keeper.start(every=3600)
    try:
        assert sorted(p.stem for p in tmp_path.rglob("*.bin")) == ["b"]  # at start
        assert [e["state"] for e in events] == ["kept"] and names(tmp_path) == {"b.bin"}  # checked, nothing left
        clock.now += 9.9 * DAY  # b is 29.9 days old: kept
        assert keeper.tick() is not None and (tmp_path / "b.bin").exists()
        clock.now += 0.5 * DAY  # b is 30.4 days old, but no day has passed since the last pruning
        assert keeper.tick() is None and (tmp_path / "b.bin").exists()
        clock.now += 0.5 * DAY
        done = keeper.tick()
        assert done is not None and done.removed == 1 and not (tmp_path / "b.bin").exists()
    finally:
        keeper.stop()


def receipt(n: int) -> bytes:
    return f"receipt {n}\n".encode() * 50 + b"\x1dV\x00"


def test_the_keeper_keeps_read_and_unread_receipts_and_prunes_as_soon_as_the_cap_is_passed(tmp_path: Path) -> None:
    keeper = Keeper(tmp_path, Retention(days=30, max_bytes=3000))  # the real clock: files get real times
    keeper.prune()
    for n in range(10):
        time.sleep(0.02)  # each receipt written later than the one before (file times are coarse)
        (captured,) = parse(receipt(n))
        assert keeper.keep(captured, "receipt_unread" if n % 3 == 0 else None)
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total <= 3000 + len(receipt(9)) + 20  # at most one receipt over, until the next keep prunes
    assert (tmp_path / "unread").is_dir() and list((tmp_path / "unread").glob("*.code"))
    (newest,) = parse(receipt(9))  # unread (9 % 3 == 0): kept under unread/ with its code
    assert (tmp_path / "unread" / f"{newest.digest}.bin").read_bytes() == receipt(9)
    assert (tmp_path / "unread" / f"{newest.digest}.code").read_text(encoding="utf-8") == "receipt_unread\n"
    (oldest,) = parse(receipt(0))
    assert not (tmp_path / "unread" / f"{oldest.digest}.bin").exists()


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.EROFS, "receipts_dir_read_only"),
        (errno.EACCES, "receipts_dir_read_only"),
        (errno.ENOSPC, "receipts_dir_full"),
        (errno.EDQUOT, "receipts_dir_full"),
        (errno.EIO, "receipts_dir_failed"),
    ],
)
def test_a_directory_that_cannot_be_written_has_a_stable_code(number: int, code: str) -> None:
    assert problem_code(OSError(number, os.strerror(number))) == code


def test_a_receipts_path_that_is_a_file_is_a_failure_said_once_and_then_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "receipts"
    blocked.write_text("a file where the directory should be", encoding="utf-8")
    events: list[dict[str, object]] = []
    keeper = Keeper(blocked, emit=events.append)
    with caplog.at_level("DEBUG", logger="tillpoint.receipts"):
        assert not keeper.keep(parse(receipt(1))[0], None)
        assert not keeper.keep(parse(receipt(2))[0], None)
    assert keeper.failures == 2 and keeper.failing == "receipts_dir_failed"
    assert [e["state"] for e in events] == ["keep_failed"]
    assert sum("receipts_dir_failed: cannot keep" in r.getMessage() for r in caplog.records) == 1
    blocked.unlink()
    assert keeper.keep(parse(receipt(3))[0], None)
    assert keeper.failing is None and [e["state"] for e in events] == ["keep_failed", "kept"]
