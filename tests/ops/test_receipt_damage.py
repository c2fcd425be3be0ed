"""Damage to the kept receipts: a read-only or a full receipts directory (a real tmpfs, mounted read-only or
filled up) never stops printing: the printer gets every byte of the POS, the receipt is still read and its
sale recorded, and the failure is a logged event with a stable code, said once, and said again when receipts
are kept again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.printer import PrinterProxy
from terminal.receiptfiles import Keeper
from terminal.receipts.desk import Desk
from tests.drivers.test_printer_proxy import FakeSales, pos_print
from tests.fixtures.printer import RecordingPrinter, start_printer
from tests.fixtures.receipts import Item, Sale, make, templates
from tests.waiting import wait_until


def mount(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        pytest.fail(f"these tests mount a small tmpfs and need root for it: {done.stderr.strip()}", pytrace=False)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    mount(where, "ro,size=1m,mode=0755")
    yield where
    subprocess.run(["umount", "--lazy", str(where)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[RecordingPrinter]:
    p = start_printer(tmp_path / "printer")
    yield p
    p.stop()


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


def print_through(printer: RecordingPrinter, keeper: Keeper, count: int) -> tuple[bytes, FakeSales]:
    sales = FakeSales()
    desk = Desk([templates()["en"]], sales, keeper, pos_id="POS-1")
    proxy = PrinterProxy("tcp:127.0.0.1:0", f"tcp:127.0.0.1:{printer.port}", desk)
    proxy.start()
    stream = b"".join(make("en", Sale((Item("Apples", "1001", n, 150),), number=f"00{n}")) for n in range(1, count + 1))
    try:
        before = len(printer.received())
        pos_print(proxy.port, stream)
        printer.wait_for(before + len(stream))
        wait_until(lambda: len(sales.sold) == count, what="every receipt's sale")
    finally:
        proxy.stop()
    assert printer.received()[before:] == stream  # every byte printed, unchanged
    return stream, sales


def test_a_read_only_receipts_directory_never_stops_printing(
    read_only_dir: Path, printer: RecordingPrinter, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, object]] = []
    keeper = Keeper(read_only_dir / "receipts", emit=events.append)
    with caplog.at_level("INFO", logger="tillpoint.receipts"):
        keeper.start()  # said when the till starts, before any receipt
        assert [(e["state"], e["code"]) for e in events] == [("keep_failed", "receipts_dir_read_only")]
        try:
            print_through(printer, keeper, 3)
        finally:
            keeper.stop()
    assert keeper.failures == 3 and keeper.failing == "receipts_dir_read_only"
    assert [(e["state"], e["code"]) for e in events] == [("keep_failed", "receipts_dir_read_only")]
    said = [r for r in caplog.records if "receipts_dir_read_only" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "ERROR"
    assert not any(read_only_dir.rglob("*.bin"))


def test_a_full_receipts_directory_never_stops_printing_and_keeping_resumes_once_there_is_room(
    small_disk: Path, printer: RecordingPrinter, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, object]] = []
    (small_disk / "receipts").mkdir()
    keeper = Keeper(small_disk / "receipts", emit=events.append)
    fill(small_disk)
    with caplog.at_level("INFO", logger="tillpoint.receipts"):
        print_through(printer, keeper, 3)
        assert keeper.failures == 3 and keeper.failing == "receipts_dir_full"
        (small_disk / "filler").unlink()
        _, sales = print_through(printer, keeper, 1)
    assert keeper.failing is None and keeper.failures == 3
    assert [(e["state"], e["code"]) for e in events] == [("keep_failed", "receipts_dir_full"), ("kept", None)]
    assert sum("receipts_dir_full" in r.getMessage() for r in caplog.records) == 2  # failed, then kept again
    (kept,) = list((small_disk / "receipts").glob("*.bin"))
    assert kept.stem == sales.sold[0][1].digest
