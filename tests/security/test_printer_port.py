"""A curious browser tab, or anything on the shop's network, posting to the printer's port: the printer in
the middle takes the bytes on its port as the POS's print job, and a web page can POST to
http://127.0.0.1:9100 without a preflight (``fetch`` with ``mode: "no-cors"``, ``text/plain``). Its body is
a receipt the till would ring as a sale for the member at the till. A connection that begins with an HTTP
request line is refused: nothing captured, nothing rung, nothing printed; print jobs go on as before. A
real head-office process, the till's own code, a printer process on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.printer import PrinterProxy
from hq.store import HqStore
from terminal.checkout import Checkout
from terminal.receipts.desk import Desk
from terminal.session import Session
from tests.fixtures.printer import RecordingPrinter, start_printer
from tests.fixtures.receipts import Item, Sale, english, templates
from tests.security.chain import Chain, Till
from tests.waiting import wait_until

BODY = (
    b"Whisky                    1 x  900.00    900.00\n"
    b"TOTAL                                    900.00\n"
    b"Receipt # WEB-1\n\x1dV\x00"
)


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[RecordingPrinter]:
    started = start_printer(tmp_path / "printer")
    yield started
    started.stop()


def send(port: int, *parts: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in parts:
            conn.sendall(part)
        conn.shutdown(socket.SHUT_WR)
        for _ in range(1000):  # bounded: until the proxy closes its side
            if not conn.recv(4096):
                break


def test_a_web_pages_post_to_the_printer_port_rings_nothing(
    chain: Chain, tills: tuple[Till, Till], printer: RecordingPrinter
) -> None:
    a, _ = tills
    cashier = Session(a.service, Checkout(a.service))
    cashier.identify("M-2", "typed")  # the member at the till now
    events: list[dict[str, object]] = []
    desk = Desk([templates()["en"]], cashier, lambda *_: None, pos_id="POS-1")
    proxy = PrinterProxy("tcp:127.0.0.1:0", f"tcp:127.0.0.1:{printer.port}", desk, emit=events.append)
    proxy.start()
    try:
        # what Chromium sends for fetch("http://127.0.0.1:9100/", {method: "POST", mode: "no-cors", body})
        request = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n"
            b"Content-Type: text/plain;charset=UTF-8\r\nOrigin: https://evil.example\r\n\r\n" + BODY
        )
        before = len(a.store.entries())
        send(proxy.port, request)
        wait_until(lambda: proxy.stats.refused_http == 1, what="the request refused")
        assert {"type": "printer", "state": "refused_http", "detail": "an HTTP request, not a print job"} in events
        honest = english(Sale((Item("Gum", "2001", 1, 500),), number="0001"))  # the POS's next receipt
        send(proxy.port, honest)
        wait_until(lambda: len(a.store.entries()) == before + 1, what="the POS's receipt rung")
        printed = printer.wait_for(len(honest))
    finally:
        proxy.stop()
    sale = a.store.entries()[-1].payload
    assert sale["receipt_number"] == "0001" and sale["total"] == 500  # nothing of the web page's
    assert b"WEB-1" not in printed and b"evil.example" not in printed


def request(target: bytes, method: bytes = b"POST", lead: bytes = b"", body: bytes = BODY) -> bytes:
    return (
        lead
        + method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nContent-Type: text/plain;charset=UTF-8\r\nOrigin: https://evil.example\r\n\r\n"
        + body
    )


REQUESTS = {
    # fetch("http://127.0.0.1:9100/" + "a".repeat(70000), ...): the request line is longer than one read, and
    # the body begins with a cut, so a whole "receipt" would follow the damaged one
    "a_url_longer_than_a_read": (request(b"/" + b"a" * 70_000, body=b"\x1dV\x00" + BODY),),
    "lower_case": (request(b"/", b"post"),),
    "after_a_blank_line": (request(b"/", lead=b"\r\n"),),
    "split_over_two_segments": (b"PO", request(b"/")[2:]),
    "absolute_target": (request(b"http://127.0.0.1:9100/", b"PUT"),),
}


def test_no_shape_of_http_request_is_rung(chain: Chain, tills: tuple[Till, Till], printer: RecordingPrinter) -> None:
    a, _ = tills
    cashier = Session(a.service, Checkout(a.service))
    cashier.identify("M-2", "typed")
    desk = Desk([templates()["en"]], cashier, lambda *_: None, pos_id="POS-1")
    proxy = PrinterProxy("tcp:127.0.0.1:0", f"tcp:127.0.0.1:{printer.port}", desk)
    proxy.start()
    try:
        before = len(a.store.entries())
        for n, case in enumerate(REQUESTS, 1):
            send(proxy.port, *REQUESTS[case])
            wait_until(lambda n=n: proxy.stats.refused_http == n, what=f"the request refused: {case}")
        honest = english(Sale((Item("Gum", "2001", 1, 500),), number="0001"))
        send(proxy.port, honest)
        wait_until(lambda: len(a.store.entries()) == before + 1, what="the POS's receipt rung")
    finally:
        proxy.stop()
    assert a.store.entries()[-1].payload["receipt_number"] == "0001"


def test_a_print_job_is_never_taken_for_a_request() -> None:
    """What the first bytes say: a print job (ESC @, text, a status query) at once; a request's start waits."""
    from drivers.printer import http_verdict

    for job in (b"\x1b@Acme", b"\x10\x04\x01", b"GET 10% OFF TODAY\n", b"Post office\n", b"Total 5.00\n"):
        assert http_verdict(job) is False, job
    for start in (b"G", b"POS", b"\r\n", b"post ", b"PUT http"):
        assert http_verdict(start) is None, start
    for request_line in (b"GET / HTTP/1.1", b"options * HTTP/1.1", b"\r\nPOST /x", b"PUT https://x/ HTTP/1.1"):
        assert http_verdict(request_line) is True, request_line


def test_a_receipts_discount_is_not_earned_on(chain: Chain, tills: tuple[Till, Till]) -> None:
    """A cashier's POS takes 95.00 off a 100.00 bottle: the member earns on the 5.00 paid, as on any 5.00
    receipt, not on the 100.00 before the discount (at the till and at head office)."""
    from terminal.receipts.escpos import parse

    a, _ = tills
    template = templates()["en"]
    cashier = Session(a.service, Checkout(a.service))
    desk = Desk([template], cashier, lambda *_: None, pos_id="POS-1")

    def rung(sale: Sale) -> dict[str, object]:
        cashier.identify("M-2", "typed")
        (captured,) = parse(english(sale), template.encoding, template.multibyte, template.kanji_default)
        desk.captured(captured)
        return dict(a.store.entries()[-1].payload)

    plain = rung(Sale((Item("Gum", "2001", 1, 500),), number="0001"))
    discounted = rung(Sale((Item("Whisky", "3001", 1, 10000),), number="0002", discount=9500))
    assert discounted["total"] == 500 and discounted["payable"] == 500
    assert discounted["points_earned"] == plain["points_earned"] > 0
    a.client.sync_once()
    assert not [i for i in chain.items() if i.quarantined]  # head office prices it the same


DRAWER_KICK = "\x1bp0\x19\x19"  # ESC p: pulse the cash drawer's pin (0x19 x 2 ms on and off)


def test_a_members_name_prints_as_text_never_as_printer_commands(
    chain: Chain, tills: tuple[Till, Till], printer: RecordingPrinter
) -> None:
    """A member names themselves on the join page (any text, 64 characters); every till prints that name in the
    loyalty block of the receipts of their sales, into the printer's own byte stream. Control characters in it
    would be the printer's commands (ESC p opens the cash drawer at a card payment; others change the printer's
    settings for good): they print as '?'."""
    admin = HqStore(chain.hq.db)
    try:
        admin.upsert_member("M-2", f"Ben{DRAWER_KICK}\x1dV\x00\x07")  # as the join page keeps what was typed
    finally:
        admin.close()
    a, _ = tills
    a.client.sync_once()
    member = a.store.member("M-2")
    assert member is not None and DRAWER_KICK in member.display_name
    cashier = Session(a.service, Checkout(a.service))
    cashier.identify("M-2", "typed")
    desk = Desk([templates()["en"]], cashier, lambda *_: None, pos_id="POS-1", enrich=True)
    proxy = PrinterProxy("tcp:127.0.0.1:0", f"tcp:127.0.0.1:{printer.port}", desk, enrich=True)
    proxy.start()
    try:
        send(proxy.port, english(Sale((Item("Gum", "2001", 1, 500),), number="0001")))
        printed = wait_until(lambda: got if b"Ben" in (got := printer.received()) else None, what="the block printed")
    finally:
        proxy.stop()
    line = printed[printed.index(b"Ben") :].split(b"\n")[0]
    assert line == b"Ben?p0???V??" and b"\x1bp" not in printed and b"\x07" not in printed
