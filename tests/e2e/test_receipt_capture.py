"""The printer in the middle in a real till: `tillpoint run` with [printer] and [receipts] between a POS
(this test, over a socket) and a recording printer (a process). A printed receipt becomes an anonymous
sale in the journal with its digest, number and POS, and the printer gets the loyalty block with the
signed claim QR before the cut; printing the same receipt again (the printer's status asked between its lines, or
its reprint with a COPY header and another time) prints it unchanged and sells nothing."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.hq import tillpoint
from tests.fixtures.printer import RecordingPrinter, start_printer, stored_qr
from tests.fixtures.receipts import EN, Item, Sale, english
from tests.ops.helpers import Api, NotifyListener, TillProcess, metric, till_config
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture()
def printer(tmp_path: Path) -> Iterator[RecordingPrinter]:
    p = start_printer(tmp_path / "printer")
    yield p
    p.stop()


def pos_print(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass


def journal_sales(db: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT payload FROM journal WHERE kind = 'sale' ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]
    finally:
        conn.close()


def test_a_printed_receipt_is_a_sale_and_gets_its_claim_qr(tmp_path: Path, printer: RecordingPrinter) -> None:
    template = tmp_path / "acme-en.toml"
    template.write_text(EN, encoding="utf-8")
    config = till_config(
        tmp_path,
        None,
        None,
        terminal_id="T-RECEIPTS",
        printer=f'listen = "tcp:127.0.0.1:0"\ntarget = "tcp:127.0.0.1:{printer.port}"\npos_id = "POS-3"\nhold = 1.0',
        receipts=f'templates = ["{template}"]\nattach = true\nenrich = true',
    )
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(config, notify)
    old = till.data / "receipts" / "unread" / ("0" * 64 + ".bin")  # kept 40 days ago: past keep_days (30)
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an old receipt\n")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    till.start()
    api = Api(till)
    try:
        status = api.status()
        port = int(status["printer"]["port"])
        assert status["printer"]["listening"] is True
        assert not old.exists()  # pruned when the till started
        assert status["receipts_kept"]["problem"] is None and status["receipts_kept"]["last_prune"]
        shown = tillpoint("status", "--json", "--config", str(config), cwd=tmp_path)  # as the docs say
        assert shown.returncode == 0, shown.stdout + shown.stderr
        said = json.loads(shown.stdout)
        assert said["printer"]["port"] == port and said["printer"]["listening"] is True
        assert said["receipts_kept"]["problem"] is None and said["readers"] == status["readers"]
        sale = Sale((Item("Apples", "1001", 2, 150), Item("Cheddar", "1002", 1, 420)), number="778899")
        receipt = english(sale)
        pos_print(port, receipt)
        got = printer.wait_for(len(receipt) + 50)
        cut = receipt.rindex(b"\x1dV")
        assert got.startswith(receipt[:cut]) and got.endswith(receipt[cut:])
        (claim,) = stored_qr(got)
        assert "TPJ1" in claim or claim.startswith("http")
        sales = journal_sales(till.data / "terminal.db")
        assert len(sales) == 1
        assert sales[0]["receipt_digest"] == hashlib.sha256(receipt).hexdigest()
        assert sales[0]["receipt_number"] == "778899" and sales[0]["pos_id"] == "POS-3"
        assert sales[0]["member_id"] is None and sales[0]["total"] == 720
        assert [(x["sku"], x["quantity"], x["unit_price"]) for x in sales[0]["lines"]] == [  # type: ignore[attr-defined]
            ("1001", 2, 150),
            ("1002", 1, 420),
        ]
        # The same receipt again (a reprint, or a cashier trying to sell it twice): printed as it is,
        # no second sale.
        before = len(got)
        pos_print(port, receipt)
        again = printer.wait_for(before + len(receipt))
        assert again[before:] == receipt
        assert len(journal_sales(till.data / "terminal.db")) == 1
        # again, the POS asking the printer's status between its lines: the same receipt, the same digest
        polled = receipt.replace(b"12 High Street\n", b"12 High Street\n\x10\x04\x01\x1dr\x01")
        before = len(again)
        pos_print(port, polled)
        again = printer.wait_for(before + len(polled))
        assert again[before:] == polled
        # its reprint at the POS: a COPY header, another print time, the same number: no sale either
        copy = english(Sale(sale.items, number="778899", time="2026-12-02 11:45"))
        copy = copy.replace(b"ACME STORES\n", b"ACME STORES\n*** COPY ***\n")
        before = len(again)
        pos_print(port, copy)
        again = printer.wait_for(before + len(copy))
        assert again[before:] == copy
        assert len(journal_sales(till.data / "terminal.db")) == 1
        wait_until(lambda: any(True for _ in (till.data / "receipts").glob("*.bin")), what="the receipt kept")
        # a receipt no template reads is kept and flagged, and prints unchanged
        before = len(again)
        pos_print(port, b"\x1b@Hello\nno total here\n\x1dV\x00")
        assert printer.wait_for(before + 25)[before:] == b"\x1b@Hello\nno total here\n\x1dV\x00"
        wait_until(lambda: list((till.data / "receipts" / "unread").glob("*.code")), what="the unread receipt flagged")
        code = next((till.data / "receipts" / "unread").glob("*.code")).read_text().strip()
        assert code == "receipt_unread"
        counted = api.metrics()
        assert metric(counted, "tillpoint_receipts_total", code="", state="sold") == 1
        assert metric(counted, "tillpoint_receipts_total", code="receipt_already_used", state="refused") == 2
        assert metric(counted, "tillpoint_receipts_total", code="receipt_reprint", state="refused") == 1
        assert "refused receipt_reprint: already sold, printed again" in till.log.read_text(encoding="utf-8")
        assert metric(counted, "tillpoint_receipts_total", code="receipt_unread", state="unread") == 1
        assert metric(counted, "tillpoint_printer_reachable") == 1
        assert metric(counted, "tillpoint_receipts_kept_ok") == 1
    finally:
        api.close()
        assert till.stop() == 0
        notify.close()
