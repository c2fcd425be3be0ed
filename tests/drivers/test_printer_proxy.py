"""drivers.printer: the printer in the middle, over real sockets, between a POS (this test) and a
recording printer (a separate process that stores what it receives and answers status queries).

What it proves: the printer gets exactly the POS's bytes when enrichment is off, and the loyalty block
with a decodable QR when it is on; the receipts read back as they were generated; a parser that
crashes or stalls, a full copy queue, garbage, a 50 MB stream and truncated streams never stop
printing; status queries are answered by the printer itself; a printer that disconnects, is down or
stalls looks to the POS as it would without tillpoint."""

from __future__ import annotations

import errno
import hashlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.printer import PrinterProxy
from terminal.model import Basket, Line, Member, Receipt, ReceiptRef, ReceiptSold
from terminal.receipts.desk import SLIP_FEED, Desk
from terminal.receipts.escpos import Captured, ReceiptParser, parse
from terminal.receipts.templates import net_of
from tests.fixtures.printer import RecordingPrinter, decode_rasters, start_printer, stored_qr
from tests.fixtures.receipts import Item, Sale, make, make_two_lines, random_sale, templates, two_line_templates
from tests.waiting import wait_until

T = templates()
CLAIM = "https://join.example/c/TPJ1-abcdef0123456789"


class FakeSales:
    """The session's side: records each receipt's basket and answers as a sale would."""

    def __init__(self, member: Member | None = None) -> None:
        self.member = member
        self.sold: list[tuple[Basket, ReceiptRef]] = []

    def receipt_sale(self, basket: Basket, ref: ReceiptRef) -> ReceiptSold:
        self.sold.append((basket, ref))
        points = basket.total // 100 if self.member else 0
        receipt = Receipt(f"txn-{len(self.sold)}", len(self.sold), "sale", None, basket.total, points, 500, "")
        return ReceiptSold(receipt, self.member, None if self.member else CLAIM, "Tea half price")


class Kept:
    def __init__(self) -> None:
        self.receipts: list[tuple[Captured, str | None]] = []

    def __call__(self, receipt: Captured, code: str | None) -> None:
        self.receipts.append((receipt, code))


@pytest.fixture()
def printer(tmp_path: Path) -> Iterator[RecordingPrinter]:
    p = start_printer(tmp_path / "printer")
    yield p
    p.stop()


def proxy_to(port: int, desk: Desk | None, **options: object) -> PrinterProxy:
    proxy = PrinterProxy("tcp:127.0.0.1:0", f"tcp:127.0.0.1:{port}", desk, **options)  # type: ignore[arg-type]
    proxy.start()
    return proxy


def pos_print(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Print ``data`` as a POS does (connect, send, half-close) and return what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while chunk := s.recv(4096):
            back += chunk
        return back


def desk_for(language: str, sales: FakeSales | None, kept: Kept, **options: object) -> Desk:
    return Desk([T[language]], sales, kept, pos_id="POS-7", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
def test_unchanged_bytes_reach_the_printer_and_the_receipts_read_as_generated(
    printer: RecordingPrinter, language: str
) -> None:
    rng = random.Random(f"proxy-{language}")
    sales_made = [random_sale(rng, language, rng.randint(1, 12)) for _ in range(3)]
    stream = b"".join(make(language, s) for s in sales_made)
    sales, kept = FakeSales(), Kept()
    proxy = proxy_to(printer.port, desk_for(language, sales, kept))
    try:
        pos_print(proxy.port, stream)
        assert printer.wait_for(len(stream)) == stream
        wait_until(lambda: len(sales.sold) == 3, what="three sales")
    finally:
        proxy.stop()
    for (basket, ref), sale in zip(sales.sold, sales_made, strict=True):
        items = Basket(tuple(Line(x.name if language == "ja" else x.sku, x.quantity, x.unit_price) for x in sale.items))
        assert basket == net_of(items, sale.discount)  # what the customer paid for: the items less the discounts
        assert basket.total == sale.total
        assert ref.number == sale.number and ref.pos_id == "POS-7"
    assert [ref.digest for _, ref in sales.sold] == [hashlib.sha256(make(language, s)).hexdigest() for s in sales_made]
    assert all(code is None for _, code in kept.receipts)


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
def test_receipts_printing_each_item_over_two_lines_are_read_through_the_relay(
    printer: RecordingPrinter, language: str
) -> None:
    rng = random.Random(f"two-lines-{language}")
    sales_made = [random_sale(rng, language, rng.randint(1, 8)) for _ in range(3)]
    stream = b"".join(make_two_lines(language, s) for s in sales_made)
    sales = FakeSales()
    proxy = proxy_to(printer.port, Desk([two_line_templates()[language]], sales, Kept(), pos_id="POS-7"))
    try:
        pos_print(proxy.port, stream)
        assert printer.wait_for(len(stream)) == stream
        wait_until(lambda: len(sales.sold) == 3, what="three sales")
    finally:
        proxy.stop()
    for (basket, ref), sale in zip(sales.sold, sales_made, strict=True):
        items = Basket(tuple(Line(x.name if language == "ja" else x.sku, x.quantity, x.unit_price) for x in sale.items))
        assert basket == net_of(items, sale.discount) and basket.total == sale.total
        assert ref.number == sale.number


@pytest.mark.parametrize("native_qr", [True, False])
def test_enrichment_prints_the_loyalty_block_and_a_claim_qr_before_the_cut(
    printer: RecordingPrinter, native_qr: bool
) -> None:
    sale = Sale((Item("Apples", "1001", 2, 150), Item("Cheddar", "1002", 1, 420)))
    stream = make("en", sale)
    sales = FakeSales()
    proxy = proxy_to(printer.port, desk_for("en", sales, Kept(), enrich=True, native_qr=native_qr), enrich=True)
    try:
        pos_print(proxy.port, stream)
        got = printer.wait_for(len(stream) + 50)
    finally:
        proxy.stop()
    cut = stream.rindex(b"\x1dV")
    assert got.startswith(stream[:cut]) and got.endswith(stream[cut:])
    block = got[cut : len(got) - len(stream) + cut]
    assert b"Scan to collect your points" in block and b"Next offer: Tea half price" in block
    if native_qr:
        assert stored_qr(block) == [CLAIM]
    else:
        assert b"\x1d(k" not in block
        assert decode_rasters(block) == [CLAIM]
    assert proxy.stats.enriched == 1


@pytest.mark.parametrize(
    ("language", "codec", "name", "member_line", "earned_line"),
    [
        ("ja", "cp932", "ラーメン", "会員: 山田 花子", "今回獲得ポイント: 16"),
        ("zh", "gb18030", "苹果", "会员: 山田 花子", "本次积分: 16"),
    ],
)
def test_a_members_block_is_in_the_receipts_language_and_code_page(
    printer: RecordingPrinter, language: str, codec: str, name: str, member_line: str, earned_line: str
) -> None:
    sale = Sale((Item(name, "1", 2, 800),))
    stream = make(language, sale)
    member = Member("M-1", "山田 花子", "gold", 1200)
    proxy = proxy_to(printer.port, desk_for(language, FakeSales(member), Kept(), enrich=True), enrich=True)
    try:
        pos_print(proxy.port, stream)
        got = printer.wait_for(len(stream) + 50)
    finally:
        proxy.stop()
    assert member_line.encode(codec) in got and earned_line.encode(codec) in got
    assert b"Tier: gold" in got
    (printed,) = parse(got, "cp437", codec, kanji_default=(language == "zh"))
    assert member_line in printed.text  # decodes back in the printer's own mode


class Crashing(ReceiptParser):
    def feed(self, data: bytes) -> list[Captured]:
        raise RuntimeError("parser bug")


class Stalling(ReceiptParser):
    release = threading.Event()

    def feed(self, data: bytes) -> list[Captured]:
        self.release.wait(30)
        return super().feed(data)


class FaultyDesk(Desk):
    def __init__(self, parser: type[ReceiptParser], *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.parser_type = parser

    def parser(self) -> ReceiptParser:
        return self.parser_type()


@pytest.mark.parametrize("enrich", [False, True])
def test_a_parser_crash_mid_receipt_still_prints_the_receipt(printer: RecordingPrinter, enrich: bool) -> None:
    stream = make("en", Sale((Item("Apples", "1001", 2, 150),)))
    desk = FaultyDesk(Crashing, [T["en"]], FakeSales(), Kept(), enrich=enrich)
    proxy = proxy_to(printer.port, desk, enrich=enrich, hold=5.0)
    try:
        began = time.monotonic()
        pos_print(proxy.port, stream)
        assert printer.wait_for(len(stream)) == stream
        assert time.monotonic() - began < 4.0  # the crash ended the hold, not its deadline
        wait_until(lambda: proxy.stats.parser_failures == 1, what="the failure counted")
    finally:
        proxy.stop()


class FailingOnce(FakeSales):
    """A sale path with a bug that raises on the first receipt only."""

    def receipt_sale(self, basket: Basket, ref: ReceiptRef) -> ReceiptSold:
        if not getattr(self, "failed", False):
            self.failed = True
            raise RuntimeError("a bug behind the desk")
        return super().receipt_sale(basket, ref)


def test_a_receipt_that_fails_to_sell_costs_that_receipt_not_the_rest_of_the_stream(
    printer: RecordingPrinter,
) -> None:
    # One connection carrying two receipts, as a serial or device relay carries every receipt of the day.
    first = make("en", Sale((Item("Apples", "1001", 2, 150),), number="0001"))
    second = make("en", Sale((Item("Cheddar", "1002", 1, 420),), number="0002"))
    sales = FailingOnce()
    proxy = proxy_to(printer.port, Desk([T["en"]], sales, Kept()))
    try:
        pos_print(proxy.port, first + second)
        assert printer.wait_for(len(first + second)) == first + second
        wait_until(lambda: len(sales.sold) == 1, what="the second receipt sold")
    finally:
        proxy.stop()
    assert sales.sold[0][1].number == "0002"
    assert proxy.stats.receipt_failures == 1 and proxy.stats.parser_failures == 0


class FailsOnBoom(ReceiptParser):
    """A parser with a bug that raises on one odd line of one receipt."""

    def _end_line(self, blank: bool = False) -> None:
        if b"BOOM" in b"".join(data for data, _ in self._text):
            raise ValueError("a bug in reading a line")
        super()._end_line(blank)


@pytest.mark.parametrize("enrich", [False, True])
def test_a_parser_failure_on_one_receipt_costs_that_receipt_not_the_rest_of_the_stream(
    printer: RecordingPrinter, enrich: bool
) -> None:
    # One connection carrying three receipts, as a serial or device relay carries every receipt of the day; the
    # parser fails on the second. It is kept (all its bytes) and flagged; the first and third are sold.
    first = make("en", Sale((Item("Apples", "1001", 2, 150),), number="0001"))
    odd = make("en", Sale((Item("BOOM", "1002", 1, 420),), number="0002"))
    third = make("en", Sale((Item("Cheddar", "1003", 1, 420),), number="0003"))
    sales, kept, events = FakeSales(), Kept(), []
    desk = FaultyDesk(FailsOnBoom, [T["en"]], sales, kept, enrich=enrich, emit=events.append)
    proxy = proxy_to(printer.port, desk, enrich=enrich, hold=5.0)
    try:
        began = time.monotonic()
        pos_print(proxy.port, first + odd + third)
        got = printer.wait_for(len(first + odd + third) + (100 if enrich else 0))
        wait_until(lambda: len(sales.sold) == 2, what="the first and third receipts sold")
    finally:
        proxy.stop()
    assert time.monotonic() - began < 4.0  # no hold waited for its deadline
    assert [ref.number for _, ref in sales.sold] == ["0001", "0003"]
    if enrich:  # the odd receipt printed unchanged, between the two that got their block
        assert odd in got and proxy.stats.enriched == 2 and proxy.stats.hold_timeouts == 0
    else:
        assert got == first + odd + third
    assert [(c.raw, code) for c, code in kept.receipts if code] == [(odd, "receipt_parse_failed")]
    assert [e["code"] for e in events if e["state"] == "unread"] == ["receipt_parse_failed"]
    assert proxy.stats.parser_failures == 1 and proxy.stats.receipt_failures == 0


def test_a_parser_stall_mid_receipt_still_prints_the_receipt_after_the_hold(printer: RecordingPrinter) -> None:
    stream = make("en", Sale((Item("Apples", "1001", 2, 150),)))
    Stalling.release.clear()
    desk = FaultyDesk(Stalling, [T["en"]], FakeSales(), Kept(), enrich=True)
    proxy = proxy_to(printer.port, desk, enrich=True, hold=0.2)
    try:
        pos_print(proxy.port, stream)
        assert printer.wait_for(len(stream)) == stream
        assert proxy.stats.hold_timeouts >= 1
        assert sum(proxy.stats.holds) < 1.0  # one deadline, not one per cut-like byte pair
    finally:
        Stalling.release.set()
        proxy.stop()


def test_a_full_copy_queue_abandons_capture_and_printing_goes_on(printer: RecordingPrinter) -> None:
    Stalling.release.clear()
    desk = FaultyDesk(Stalling, [T["en"]], FakeSales(), Kept())
    proxy = proxy_to(printer.port, desk, queue_chunks=2)
    stream = make("en", Sale((Item("Apples", "1001", 2, 150),))) * 2000
    try:
        pos_print(proxy.port, stream)
        got = printer.wait_for(len(stream))
        assert hashlib.sha256(got).digest() == hashlib.sha256(stream).digest()
        Stalling.release.set()
        wait_until(lambda: proxy.stats.abandoned >= 1, what="the capture abandoned and counted")
    finally:
        Stalling.release.set()
        proxy.stop()


def test_garbage_a_50_mb_stream_and_truncated_streams_never_stop_printing(printer: RecordingPrinter) -> None:
    rng = random.Random(7)
    kept = Kept()
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), kept, enrich=True), enrich=True, hold=0.1)
    total = 0
    try:
        garbage = rng.randbytes(2_000_000)
        huge = (b"\x1dv0\x00\x64\x00\xff\xff" + rng.randbytes(100 * 0xFFFF)) * 7 + rng.randbytes(5_000_000)
        assert len(huge) > 50_000_000
        receipt = make("en", Sale((Item("Apples", "1001", 2, 150),)))
        for data in (garbage, huge, receipt[: len(receipt) // 2], b"\x1b", b"\x1d(k\xff\xff"):
            pos_print(proxy.port, data, timeout=120)
            total += len(data)
            got = printer.wait_for(total, timeout=120)
            assert hashlib.sha256(got[total - len(data) :]).digest() == hashlib.sha256(data).digest()
        # and then a good receipt is read and enriched as ever
        pos_print(proxy.port, receipt)
        got = printer.wait_for(total + len(receipt) + 50)
        cut = receipt.rindex(b"\x1dV")
        assert got[total:].startswith(receipt[:cut]) and got.endswith(receipt[cut:])
    finally:
        proxy.stop()
    assert proxy.stats.parser_failures == 0 and proxy.stats.enriched == 1
    assert [code for c, code in kept.receipts if c.cut and c.lines][-1] is None


def status_exchange(port: int, query: bytes, want: int, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(query)
        back = b""
        deadline = time.monotonic() + timeout
        while len(back) < want and time.monotonic() < deadline:
            back += s.recv(64)
        return back


@pytest.mark.parametrize("paper_out", [False, True])
def test_status_queries_are_answered_by_the_printer_itself(tmp_path: Path, paper_out: bool) -> None:
    printer = start_printer(tmp_path / "p", *(["--paper-out"] if paper_out else []))
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), Kept()))
    query = b"\x10\x04\x01\x10\x04\x04\x1dr\x01\x1da\xff"
    try:
        direct = status_exchange(printer.port, query, 7)
        relayed = status_exchange(proxy.port, query, 7)
    finally:
        proxy.stop()
        printer.stop()
    assert len(direct) == 7 and relayed == direct
    assert (relayed[1] == 0x7E) is paper_out


def pos_outcome(port: int, data: bytes, timeout: float) -> str:
    """What a POS sees printing ``data``: "refused", "reset", "closed" (EOF), "stalled" or "printed"."""
    result: list[str] = []

    def run() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout + 5) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                result.append("closed" if s.recv(1) == b"" else "printed")
        except ConnectionRefusedError:
            result.append("refused")
        except (ConnectionResetError, BrokenPipeError):
            result.append("reset")
        except TimeoutError:
            result.append("stalled")
        except OSError as exc:  # the peer reset the connection before our own end was shut: ENOTCONN
            if exc.errno != errno.ENOTCONN:
                raise
            result.append("reset")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else "stalled"


def test_a_printer_that_disconnects_mid_receipt_looks_the_same_through_tillpoint(tmp_path: Path) -> None:
    printer = start_printer(tmp_path / "p", "--drop-after", "300")
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), Kept()))
    data = make("en", Sale((Item("Apples", "1001", 2, 150),))) * 500
    try:
        direct = pos_outcome(printer.port, data, 10)
        relayed = pos_outcome(proxy.port, data, 10)
    finally:
        proxy.stop()
        printer.stop()
    assert direct in ("reset", "closed") and relayed in ("reset", "closed")


def test_a_printer_that_is_down_refuses_the_pos_as_it_would_without_tillpoint(tmp_path: Path) -> None:
    """The printer is off when tillpoint starts: tillpoint does not listen, so the POS's connection is
    refused exactly as the printer's own would be (not accepted and then reset)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        proxy = proxy_to(dead, desk_for("en", FakeSales(), Kept()), probe_first=0.2, probe_cap=0.5)
        try:
            assert pos_outcome(dead, b"hello\n", 5) == "refused"
            wait_until(lambda: not proxy.listening, timeout=5, what="the relay stopped listening")
            assert pos_outcome(proxy.port, b"hello\n", 5) == "refused"
            assert proxy.stats.printer_unreachable >= 1 and not proxy.stats.listening
            time.sleep(1.0)  # probes go on with a bounded backoff, and each is counted
            assert pos_outcome(proxy.port, b"hello\n", 5) == "refused"
            assert 2 <= proxy.stats.printer_unreachable <= 8
        finally:
            proxy.stop()


def test_a_printer_switched_off_and_on_again_is_followed_by_the_relay(tmp_path: Path) -> None:
    """Printing, then the printer goes off: the connection in flight fails as it would, the next ones are
    refused; the printer comes back on its port: the relay listens again on its own port within the probe's
    backoff, and a receipt prints whole."""
    printer = start_printer(tmp_path / "p1")
    events: list[dict[str, object]] = []
    proxy = proxy_to(printer.port, None, probe_first=0.1, probe_cap=0.4, emit=events.append)
    port, receipt = proxy.port, make("en", Sale((Item("Apples", "1001", 2, 150),)))
    try:
        assert pos_outcome(port, receipt, 10) == "closed"
        assert printer.wait_for(len(receipt)) == receipt
        printer.stop()
        assert pos_outcome(port, receipt, 5) in ("reset", "closed")  # accepted before anyone knew
        wait_until(lambda: not proxy.listening, timeout=5, what="the relay stopped listening")
        assert pos_outcome(port, receipt, 5) == "refused"
        printer = start_printer(tmp_path / "p2", "--port", str(printer.port))
        back = time.monotonic()
        wait_until(lambda: proxy.listening, timeout=5, what="the relay listening again")
        assert time.monotonic() - back < 2.0  # at most the backoff's cap (0.4 s), plus a probe
        assert proxy.port == port
        assert pos_outcome(port, receipt, 10) == "closed"
        assert printer.wait_for(len(receipt)) == receipt
    finally:
        proxy.stop()
        printer.stop()
    states = [e["state"] for e in events if e["type"] == "printer"]
    assert states == ["reachable", "unreachable", "reachable"]  # each change said once


def test_a_printer_that_stalls_stalls_the_pos_as_it_would_without_tillpoint(tmp_path: Path) -> None:
    printer = start_printer(tmp_path / "p", "--stall")
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), Kept()))
    data = b"x" * 64_000_000
    try:
        assert pos_outcome(printer.port, data, 3) == "stalled"
        assert pos_outcome(proxy.port, data, 3) == "stalled"
    finally:
        proxy.stop()
        printer.stop()


def read_for(fd: int, size: int, timeout: float = 10.0) -> bytes:
    import os
    import select

    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            got += os.read(fd, 65536)
    return got


@pytest.mark.parametrize(("pos_kind", "printer_kind"), [("serial", "serial"), ("device", "device")])
def test_a_serial_pos_and_a_serial_printer(tmp_path: Path, pos_kind: str, printer_kind: str) -> None:
    """The POS prints to a serial port (or a device file, as a USB printer gadget is) and the printer is
    on another (a serial port, or a device file as usblp's is); pseudo-terminals stand in for the cables:
    the bytes reach the printer unchanged, the receipt is read, status comes back."""
    import os
    import tty

    pos_master, pos_slave = os.openpty()
    printer_master, printer_slave = os.openpty()
    for fd in (pos_master, printer_master):
        tty.setraw(fd)
    sales = FakeSales()
    suffix = {"serial": ":19200", "device": ""}
    proxy = PrinterProxy(
        f"{pos_kind}:{os.ttyname(pos_slave)}{suffix[pos_kind]}",
        f"{printer_kind}:{os.ttyname(printer_slave)}{suffix[printer_kind]}",
        desk_for("en", sales, Kept()),
    )
    proxy.start()
    try:
        sale = Sale((Item("Apples", "1001", 2, 150),))
        receipt = make("en", sale)
        wait_until(lambda: proxy._current is not None, what="the serial relay open")
        os.write(pos_master, b"\x10\x04\x01")
        assert read_for(printer_master, 3) == b"\x10\x04\x01"
        os.write(printer_master, b"\x16")  # the printer's status reply
        assert read_for(pos_master, 1) == b"\x16"
        os.write(pos_master, receipt)
        assert read_for(printer_master, len(receipt)) == receipt
        wait_until(lambda: len(sales.sold) == 1, what="the serial receipt's sale")
        assert sales.sold[0][0].total == 300
    finally:
        proxy.stop()
        for fd in (pos_master, pos_slave, printer_master, printer_slave):
            os.close(fd)


def test_a_receipt_sent_in_small_pieces_prints_whole_with_at_most_one_block(printer: RecordingPrinter) -> None:
    """Pieces of any size (a cut may arrive split across two reads): the printer gets the POS's bytes in
    order, with the block, if any, only right before the cut."""
    stream = make("en", Sale((Item("Apples", "1001", 2, 150),)))
    cut = stream.rindex(b"\x1dV")
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), Kept(), enrich=True), enrich=True)
    total = 0
    try:
        for size in (1, 2, 3, 7, 64):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(0, len(stream), size):
                    s.sendall(stream[i : i + size])
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            wait_until(
                lambda start=total: (
                    len(printer.received()) >= start + len(stream) and printer.received().endswith(stream[cut:])
                ),
                what="the receipt printed",
            )
            got = printer.received()[total:]
            total += len(got)
            assert got.startswith(stream[:cut]) and got.endswith(stream[cut:])
            block = got[cut : len(got) - (len(stream) - cut)]
            # a cut split across two reads is still found: its first byte waits (at most the hold) for the next
            assert block.startswith(b"\x1ba\x00-") and stored_qr(block) == [CLAIM]
    finally:
        proxy.stop()
    assert proxy.stats.enriched == 5 and proxy.stats.hold_timeouts == 0


def test_a_last_escape_byte_is_not_held_past_the_hold(printer: RecordingPrinter) -> None:
    """A POS that sends an ESC and waits: the byte reaches the printer within the hold."""
    proxy = proxy_to(printer.port, desk_for("en", FakeSales(), Kept(), enrich=True), enrich=True, hold=0.1)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
            s.sendall(b"hello\n\x1b")
            printer.wait_for(7, timeout=5)
            s.sendall(b"@")
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
        assert printer.wait_for(8) == b"hello\n\x1b@"
    finally:
        proxy.stop()


def pty_relay(pos_kind: str, printer_kind: str, desk: Desk, **options: object) -> tuple[PrinterProxy, list[int]]:
    """A relay between two pseudo-terminal pairs (the POS's cable and the printer's): the masters are the
    POS's and the printer's ends, returned with the slaves (to close)."""
    import os
    import tty

    pos_master, pos_slave = os.openpty()
    printer_master, printer_slave = os.openpty()
    for fd in (pos_master, printer_master):
        tty.setraw(fd)
    suffix = {"serial": ":19200", "device": ""}
    proxy = PrinterProxy(
        f"{pos_kind}:{os.ttyname(pos_slave)}{suffix[pos_kind]}",
        f"{printer_kind}:{os.ttyname(printer_slave)}{suffix[printer_kind]}",
        desk,
        **options,  # type: ignore[arg-type]
    )
    proxy.start()
    wait_until(lambda: proxy._current is not None, what="the relay open")
    return proxy, [pos_master, printer_master, pos_slave, printer_slave]


@pytest.mark.parametrize("kind", ["serial", "device"])
@pytest.mark.parametrize("split", [1, 2])  # GS | V m, and GS V | m
def test_a_cut_split_across_two_reads_on_a_serial_or_device_relay_is_held_for_its_rest(kind: str, split: int) -> None:
    """The POS's cable delivers the cut command in two pieces: the first waits (at most the hold) for the
    rest, so the loyalty block still goes in right before the cut and no hold times out."""
    import os

    stream = make("en", Sale((Item("Apples", "1001", 2, 150),)))
    cut = stream.rindex(b"\x1dV")
    proxy, fds = pty_relay(kind, kind, desk_for("en", FakeSales(), Kept(), enrich=True), enrich=True, hold=1.0)
    pos, printer = fds[0], fds[1]
    try:
        os.write(pos, stream[: cut + split])
        time.sleep(0.1)  # the relay reads the first piece alone
        os.write(pos, stream[cut + split :])
        got = read_for(printer, len(stream) + 50)
        got += read_for(printer, 1 << 20, timeout=0.5)
    finally:
        proxy.stop()
        for fd in fds:
            os.close(fd)
    assert got.startswith(stream[:cut]) and got.endswith(stream[cut:])
    block = got[cut : len(got) - (len(stream) - cut)]
    assert block.startswith(b"\x1ba\x00-") and stored_qr(block) == [CLAIM]
    assert proxy.stats.enriched == 1 and proxy.stats.hold_timeouts == 0


@pytest.mark.parametrize("kind", ["serial", "device"])
def test_a_held_escape_byte_on_a_serial_or_device_relay_goes_out_within_the_hold(kind: str) -> None:
    """A POS that sends an ESC and waits: the byte reaches the printer after at most the hold."""
    import os

    proxy, fds = pty_relay(kind, kind, desk_for("en", FakeSales(), Kept(), enrich=True), enrich=True, hold=0.3)
    pos, printer = fds[0], fds[1]
    try:
        began = time.monotonic()
        os.write(pos, b"hello\n\x1b")
        assert read_for(printer, 7, timeout=5) == b"hello\n\x1b"
        waited = time.monotonic() - began
        os.write(pos, b"@")
        assert read_for(printer, 1, timeout=5) == b"@"
    finally:
        proxy.stop()
        for fd in fds:
            os.close(fd)
    assert 0.25 <= waited < 1.5  # held for the hold (0.3 s), not until the next byte


def uncut(sale: Sale) -> bytes:
    """A receipt as a POS prints it to a printer without a cutter: no cut at its end."""
    stream = make("en", sale)
    return stream[: stream.rindex(b"\x1dV")]


@pytest.mark.parametrize("kind", ["serial", "device"])
def test_a_printer_without_a_cutter_on_a_serial_or_device_relay_has_each_receipt_read(kind: str) -> None:
    """No cut all day: a receipt ends when the POS has printed nothing for ``receipt_gap`` (status queries
    print nothing), or at the init (ESC @) that starts the next one; each is read and sold, printed unchanged."""
    import os

    first = uncut(Sale((Item("Apples", "1001", 2, 150),), number="0001"))
    second = b"\x1b@" + uncut(Sale((Item("Cheddar", "1002", 1, 420),), number="0002"))
    third = b"\x1b@" + uncut(Sale((Item("Tea", "1003", 3, 100),), number="0003"))
    sales, kept = FakeSales(), Kept()
    proxy, fds = pty_relay(kind, kind, desk_for("en", sales, kept), receipt_gap=0.3)
    pos, printer = fds[0], fds[1]
    try:
        os.write(pos, first)
        assert read_for(printer, len(first)) == first
        # the POS goes on asking the printer's status; the receipt ends all the same
        wait_until(
            lambda: os.write(pos, b"\x10\x04\x01") and read_for(printer, 3) and len(sales.sold) == 1,
            what="the first receipt ended by the quiet spell",
        )
        os.write(pos, second + third)
        assert read_for(printer, len(second + third)) == second + third
        wait_until(lambda: len(sales.sold) == 3, what="the second (ended by the third's init) and the third")
    finally:
        proxy.stop()
        for fd in fds:
            os.close(fd)
    assert [ref.number for _, ref in sales.sold] == ["0001", "0002", "0003"]
    # the receipt's bytes: what it printed, up to the quiet spell; the status queries asked are not the receipt's
    (kept_first,) = [c for c, _ in kept.receipts if c.digest == sales.sold[0][1].digest]
    assert kept_first.raw == first and kept_first.digest == hashlib.sha256(first).hexdigest()
    assert kept_first.size > len(first)  # the status queries were in its part of the stream all the same
    # the second's: up to and including the init that ended it (not any status query left from the wait)
    (kept_second,) = [c for c, _ in kept.receipts if c.digest == sales.sold[1][1].digest]
    assert kept_second.raw == second + b"\x1b@"
    assert proxy.stats.parser_failures == 0


def read_until(fd: int, done: Callable[[bytes], bool], what: str, timeout: float = 15.0) -> bytes:
    """What the printer's end reads until ``done`` says it holds what is expected."""
    got = b""

    def more() -> bool:
        nonlocal got
        got += read_for(fd, 1 << 20, timeout=0.1)
        return done(got)

    wait_until(more, timeout, what)
    return got


def slip(block: bytes) -> None:
    """A loyalty block printed as a slip of its own: the claim QR, then fed out to be torn off."""
    assert b"Scan to collect your points" in block and stored_qr(block) == [CLAIM]
    assert block.startswith(b"\x1ba\x00-") and block.endswith(SLIP_FEED)


@pytest.mark.parametrize("kind", ["serial", "device"])
def test_a_printer_without_a_cutter_prints_each_receipts_block_as_a_slip_when_the_receipt_ends(kind: str) -> None:
    """No cut all day: the block of a receipt the quiet spell ends goes out then, after it; the block of one the next
    receipt's init ends goes out before that init. Each is fed out to be torn off; the POS's bytes are unchanged."""
    import os

    first = uncut(Sale((Item("Apples", "1001", 2, 150),), number="0001"))
    second = b"\x1b@" + uncut(Sale((Item("Cheddar", "1002", 1, 420),), number="0002"))
    third = b"\x1b@" + uncut(Sale((Item("Tea", "1003", 3, 100),), number="0003"))
    sales = FakeSales()
    desk = desk_for("en", sales, Kept(), enrich=True)
    proxy, fds = pty_relay(kind, kind, desk, enrich=True, hold=2.0, receipt_gap=0.3)
    pos, printer = fds[0], fds[1]
    try:
        os.write(pos, first)
        got = read_until(printer, lambda b: b.endswith(SLIP_FEED), "the first receipt and its slip")
        os.write(pos, second + third)
        rest = read_until(printer, lambda b: b.count(SLIP_FEED) == 2 and b.endswith(SLIP_FEED), "two slips")
    finally:
        proxy.stop()
        for fd in fds:
            os.close(fd)
    assert got.startswith(first)
    slip(got[len(first) :])
    assert rest.startswith(second)
    at = rest.index(third, len(second))
    slip(rest[len(second) : at])  # before the init that ended the second
    slip(rest[at + len(third) :])  # after the third, once the POS went quiet
    assert [ref.number for _, ref in sales.sold] == ["0001", "0002", "0003"]
    assert proxy.stats.enriched == 3 and proxy.stats.hold_timeouts == 0


def test_a_receipt_without_a_cut_on_a_connection_of_its_own_gets_its_slip_before_the_printer_is_let_go(
    printer: RecordingPrinter,
) -> None:
    """A POS that connects for each receipt to a printer without a cutter: the receipt ends with the connection,
    and its block goes out on it, after the receipt, before tillpoint closes the printer's side."""
    receipt = uncut(Sale((Item("Apples", "1001", 2, 150),), number="0001"))
    sales = FakeSales()
    proxy = proxy_to(printer.port, desk_for("en", sales, Kept(), enrich=True), enrich=True, hold=2.0)
    try:
        pos_print(proxy.port, receipt)
        wait_until(lambda: printer.received().endswith(SLIP_FEED), what="the slip at the printer")
        got = printer.received()
    finally:
        proxy.stop()
    assert got.startswith(receipt)
    slip(got[len(receipt) :])
    assert len(sales.sold) == 1 and proxy.stats.enriched == 1
