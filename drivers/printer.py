"""A printer in the middle: tillpoint offers the POS a printer and forwards every byte to the real one.

    PrinterProxy("tcp:0.0.0.0:9100", "tcp:192.168.1.50:9100", desk)      network printers (raw port 9100)
    PrinterProxy("tcp:127.0.0.1:9100", "device:/dev/usb/lp0", desk)      a USB printer (usblp)
    PrinterProxy("serial:/dev/ttyS1:19200", "serial:/dev/ttyS0:19200")    a serial printer (pyserial URLs too)
    PrinterProxy("device:/dev/g_printer0", "device:/dev/usb/lp0")          the POS's USB cable to the till PC's
                                                                          USB printer gadget, the printer on usblp

Printing never depends on tillpoint's parsing. For each POS connection three threads run:

* forward: reads the POS and writes the printer at once; the parser gets a *copy* of each chunk
  through a bounded queue (``put_nowait``: a full queue drops the copy, and that receipt's capture is
  abandoned and flagged, printing goes on);
* back: the printer's replies (``DLE EOT`` / ``GS r`` status, automatic status back) go to the POS
  as they come, so the POS sees the printer's own state (off, cover open, out of paper);
* parse: feeds the copy to the receipt parser and hands each receipt to the desk; when the POS prints nothing
  for ``receipt_gap`` seconds, the receipt in progress of a printer that has shown no cut (no cutter) ends;
  (``terminal.ports.ReceiptDesk``); a failure of the parser (a bug, on an odd receipt) costs that receipt:
  it is kept and flagged, and capture goes on from the next receipt boundary (a serial or device relay's
  connection lasts all day).

Enrichment (a loyalty block before the cut) is the one place where bytes are held: at a byte sequence
that may be a cut, the forward thread waits, at most ``hold`` seconds, for the parser to say whether it is
one and what goes before it; otherwise the original bytes go out unchanged. A printer without a cutter gets the
block as a slip of its own: before the init (ESC @) that ended the receipt, held as a cut is; when the POS went
quiet, sent by the parse thread between two of the POS's commands; at the end of the POS's connection, before the
printer's side is closed.

When the printer cannot be reached, tillpoint stops listening (``tcp:`` only): the POS's next connection
is refused, as a switched-off network printer's would be; the printer is probed with a bounded backoff and
tillpoint listens again, on the same port, as soon as it answers. When the printer stalls, tillpoint stops
reading the POS, so the POS stalls too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from terminal.backoff import Backoff
from terminal.ports import Event, ReceiptDesk, StreamParser
from terminal.receipts.escpos import INIT, Captured

if TYPE_CHECKING:  # pyserial is imported when a serial printer is opened
    import serial

log = logging.getLogger(__name__)

CUT_MARKS = (b"\x1dV", b"\x1bi", b"\x1bm")
CHUNK = 65536
HTTP_METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"CONNECT", b"TRACE")
HTTP_STARTS = tuple(m + b" " + target for m in HTTP_METHODS for target in (b"/", b"*", b"HTTP://", b"HTTPS://"))
"""How an HTTP request's first line begins (method, one space, the start of its target), in upper case; no
ESC/POS print job begins so. Only these first bytes are looked at: a request line may be longer than a read."""


def http_verdict(head: bytes) -> bool | None:
    """Whether a connection whose first bytes are ``head`` is an HTTP request (True), is not one (False), or
    cannot be told yet (None: ``head`` is the start of one, as a request split over two segments may be).
    Case and leading blank lines are ignored."""
    start = head.lstrip(b" \t\r\n").upper()
    if not start and head:
        return None
    if any(start.startswith(s) for s in HTTP_STARTS):
        return True
    return None if any(s.startswith(start) for s in HTTP_STARTS) else False


WAIT = 0.2  # seconds a serial port or device file is waited on at a time (so a relay notices it was stopped)


class Link(Protocol):
    """One side of a relay: a socket, a serial port or a printer device file."""

    def recv(self, size: int) -> bytes:
        """Bytes that arrived (blocking); b"" at the end; OSError when it failed."""
        ...

    def recv_within(self, size: int, seconds: float) -> bytes | None:
        """As ``recv``, but None when nothing arrived within ``seconds``."""
        ...

    def send(self, data: bytes) -> None: ...

    def close_write(self) -> None: ...

    def close(self) -> None: ...


class SocketLink:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def recv_within(self, size: int, seconds: float) -> bytes | None:
        ready, _, _ = select.select([self.sock], [], [], seconds)
        return self.sock.recv(size) if ready else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close with RST (what the POS sees of a printer that went away)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Channel(Protocol):
    """A byte channel read with a short wait: a serial port or a printer device file."""

    def read_some(self, size: int, wait: float = WAIT) -> bytes:
        """Up to ``size`` bytes, or b"" after ``wait`` seconds with nothing to read."""
        ...

    def write(self, data: memoryview) -> int | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class PortLink:
    """A serial port (pyserial, any of its URLs) or a printer device file (``/dev/usb/lp0``)."""

    def __init__(self, port: Channel) -> None:
        self.port = port
        self.closed = threading.Event()

    def recv(self, size: int) -> bytes:
        while not self.closed.is_set():
            data = self._read(size, WAIT)
            if data:
                return data
        return b""

    def recv_within(self, size: int, seconds: float) -> bytes | None:
        deadline = time.monotonic() + seconds
        while not self.closed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._read(size, min(left, WAIT))
            if data:
                return data
        return b""

    def _read(self, size: int, wait: float) -> bytes:
        try:
            return self.port.read_some(size, wait)
        except (OSError, TypeError):
            if self.closed.is_set():
                return b""
            raise

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self.port.write(view)
            except TypeError as exc:  # pyserial's port closed under a write (the relay was stopped)
                raise OSError(f"port closed: {exc}") from exc
            view = view[n or 0 :]
        with contextlib.suppress(OSError):
            self.port.flush()

    def close_write(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.port.close()


def open_link(spec: str, timeout: float = 5.0) -> Link:
    """``tcp:HOST:PORT``, ``device:/dev/usb/lp0``, ``serial:PORT[:BAUD]`` (PORT may be a pyserial URL)."""
    kind, _, rest = spec.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketLink(sock)
    if kind == "device":
        fd = os.open(rest, os.O_RDWR | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        return PortLink(_DeviceFile(fd))
    if kind == "serial":
        import serial

        name, _, baud = rest.rpartition(":") if rest.rsplit(":", 1)[-1].isdigit() else (rest, "", "")
        return PortLink(_SerialPort(serial.serial_for_url(name, baudrate=int(baud or 9600), timeout=WAIT)))
    raise ValueError(f"{spec!r} is not tcp:HOST:PORT, device:PATH or serial:PORT[:BAUD]")


class _DeviceFile:
    """A printer device file (usblp, a USB printer gadget) read with a short wait, like a serial port."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read_some(self, size: int, wait: float = WAIT) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], wait)
        return os.read(self.fd, size) if ready else b""

    def write(self, data: memoryview) -> int:
        return os.write(self.fd, data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.fd)


class _SerialPort:
    """A pyserial port: one byte (waiting up to its timeout), then whatever else has arrived."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port

    def read_some(self, size: int, wait: float = WAIT) -> bytes:
        if self.port.timeout != wait:  # only while a split cut is held: a shorter wait
            self.port.timeout = wait
        data = bytes(self.port.read(1) or b"")
        waiting: int = self.port.in_waiting  # type: ignore[attr-defined]  # every port class of pyserial has it; the stub puts it on each subclass
        if data and waiting:
            data += self.port.read(min(waiting, size - 1))
        return data

    def write(self, data: memoryview) -> int | None:
        return self.port.write(data)

    def flush(self) -> None:
        self.port.flush()

    def close(self) -> None:
        self.port.close()


@dataclass
class Stats:
    """What the proxy did, for status and metrics."""

    connections: int = 0
    bytes_forwarded: int = 0
    receipts: int = 0
    abandoned: int = 0
    """Receipts whose capture was abandoned (the copy's queue overflowed, or the parser failed)."""
    parser_failures: int = 0
    """Receipts the parser failed on (a bug): each kept and flagged, capture goes on from the next receipt."""
    receipt_failures: int = 0
    """Receipts whose handling (keeping, reading, selling) raised: that receipt only; capture goes on."""
    enriched: int = 0
    hold_timeouts: int = 0
    printer_unreachable: int = 0
    """Times the printer could not be reached (a POS connection, or a probe while it was off)."""
    listening: bool = False
    """``tcp:``: whether the POS can connect now (false while the printer is unreachable)."""
    holds: list[float] = field(default_factory=list)
    """Seconds each hold at a cut lasted (the last 1000)."""
    refused_http: int = 0
    """Connections that began with an HTTP request line (a web page posting to the port): neither captured nor
    printed."""


class _Copy:
    """The parser's side of one connection: what it has seen, and the blocks it made for cuts."""

    def __init__(self, size: int) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=size)
        self.cond = threading.Condition()
        self.parsed = 0  # stream offset the parser has read up to (``StreamParser.position``)
        self.blocks: dict[int, bytes] = {}  # cut offset -> bytes to print before it
        self.cuts: set[int] = set()  # cut offsets the parser has seen (with a block or not)
        self.scanned = 0  # stream offset the parser has split into commands (its receipts perhaps not handled yet)
        self.ends: set[int] = set()  # where the receipts it found there end (cut or init), not handled yet
        self.dead = False
        self.lost = False  # a chunk was dropped and the parser not told yet
        self.cut_seen = False  # the printer cuts: its receipts end at cuts alone (not at an init)
        self.final = threading.Event()  # the parser read the stream's end
        self.final_block: bytes | None = None  # the block of the receipt the stream's end ended (no cutter)

    def put(self, data: bytes) -> bool:
        try:
            self.q.put_nowait(data)
            return True
        except queue.Full:
            return False

    def wait_cut(self, offset: int, deadline: float) -> bytes | None:
        """The block for a cut at ``offset``; None: not a cut, no block, or the deadline passed."""
        with self.cond:
            while True:
                if offset in self.blocks:
                    return self.blocks.pop(offset)
                if self.dead or offset in self.cuts or self.parsed > offset:
                    return None  # the parser read past it: not a cut (or a cut with nothing to add)
                if self.scanned > offset and offset not in self.ends:
                    return None  # split into commands past it, and no receipt ends there (an init starting one)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.cond.wait(left)


class Relay:
    """One POS connection relayed to the printer."""

    def __init__(
        self,
        pos: Link,
        printer: Link,
        desk: ReceiptDesk | None,
        stats: Stats,
        *,
        enrich: bool = False,
        hold: float = 0.15,
        queue_chunks: int = 256,
        receipt_gap: float = 0.0,
        emit: Callable[[Event], object] | None = None,
    ) -> None:
        self.pos, self.printer, self.desk, self.stats = pos, printer, desk, stats
        self.enrich = enrich and desk is not None
        self.hold = hold
        self.receipt_gap = receipt_gap
        self.emit = emit
        self.copy: _Copy | None = _Copy(queue_chunks) if desk is not None else None
        self.done = threading.Event()
        self._behind = 0  # after a hold timed out: no hold until the parser got this far
        self._sending = threading.Lock()  # the printer's side: the POS's bytes, and a slip between them
        self._sent = 0  # stream offset of the POS's next byte to go to the printer

    def run(self) -> None:
        back = threading.Thread(target=self._back, name="printer-back", daemon=True)
        back.start()
        if self.copy is not None:
            threading.Thread(target=self._parse, name="printer-parse", daemon=True).start()
        try:
            self._forward()
        finally:
            if self.copy is not None:
                self._put_end()
                self._final_slip(self.copy)
            self.printer.close_write()
            back.join(5.0)
            self.printer.close()
            self.pos.close()
            self.done.set()

    # -- forward: POS -> printer, never waiting on the parser except at a cut when enriching ------------

    def _forward(self) -> None:
        sent = 0  # stream offset of the next byte to go to the printer
        held = b""  # enriching: the start of a cut command split across two reads
        first = True
        while True:
            try:
                data = self._recv(held)
                if first:
                    data, http = self._first(data or b"")
                    if http:
                        self._refuse_http()
                        return
            except OSError:
                return
            first = False
            if data is None:  # nothing more came within the hold: the held byte goes out alone
                try:
                    self._send(held)
                except OSError:
                    return
                sent, held = sent + len(held), b""
                continue
            if not data:
                if held:
                    with contextlib.suppress(OSError):
                        self._send(held)
                return
            copy = self.copy
            if copy is not None and not copy.dead and not copy.put(data):
                # the parser fell behind: this receipt's capture is abandoned (flagged damaged), and no
                # more holds on this connection (the copy's offsets no longer match the stream's)
                copy.lost = True
                self.enrich = False
            chunk, held = held + data, b""
            try:
                if self.enrich and copy is not None and not copy.dead:
                    chunk, held = split_partial_cut(chunk)
                    self._forward_enriched(chunk, sent)
                else:
                    self._send(chunk)
            except OSError:
                return  # the printer went away: the back thread closes the POS
            self.stats.bytes_forwarded += len(data)
            sent += len(chunk)

    def _first(self, head: bytes) -> tuple[bytes, bool]:
        """The connection's first bytes, read on while they may still begin an HTTP request (a few bytes at most,
        each wait bounded by ``hold``: a print job's first byte tells at once), and whether they do."""
        for _ in range(64):  # bounded: an HTTP start is decided within its first few dozen bytes
            verdict = http_verdict(head)
            if verdict is not None:
                return head, verdict
            more = self.pos.recv_within(CHUNK, self.hold)
            if not more:  # nothing more came in time, or the connection ended: not a request that can be told
                return head, False
            head += more
        return head, False

    def _refuse_http(self) -> None:
        """A web page in a browser on this PC (or anything on the network) posting to the printer's port: its
        request would otherwise be read as a receipt and rung as a sale."""
        self.stats.refused_http += 1
        log.warning("an HTTP request reached the printer port: refused, neither captured nor printed")
        if self.emit is not None:
            self.emit({"type": "printer", "state": "refused_http", "detail": "an HTTP request, not a print job"})

    def _recv(self, held: bytes) -> bytes | None:
        """The POS's next bytes; None when a byte is held and nothing came within ``hold``."""
        if not held:
            return self.pos.recv(CHUNK)
        return self.pos.recv_within(CHUNK, self.hold)

    def _send(self, data: bytes, block: bool = False) -> None:
        """Bytes to the printer: the POS's (counted in the stream's offsets), or a block of tillpoint's."""
        with self._sending:
            self.printer.send(data)
            if not block:
                self._sent += len(data)

    def _forward_enriched(self, data: bytes, base: int) -> None:
        assert self.copy is not None
        start = 0
        # a printer without a cutter: a receipt may end at the init (ESC @) that starts the next
        for at in _cut_marks(data, init=not self.copy.cut_seen):
            if self.copy.parsed < self._behind:
                continue  # a hold timed out and the parser has not caught up since: no more waiting
            self._send(data[start:at])
            start = at
            began = time.monotonic()
            try:
                block = self.copy.wait_cut(base + at, began + self.hold)
            except TimeoutError:
                self.stats.hold_timeouts += 1
                self._behind = base + len(data)
                block = None
            self._held(time.monotonic() - began)
            if block:
                self._send(block, block=True)
                self.stats.enriched += 1
        self._send(data[start:])

    def _held(self, seconds: float) -> None:
        holds = self.stats.holds
        holds.append(seconds)
        if len(holds) > 1000:
            del holds[:100]

    def _put_end(self) -> None:
        assert self.copy is not None
        try:
            self.copy.q.put(None, timeout=self.hold)
        except queue.Full:
            self.copy.dead = True

    # -- back: printer -> POS (status replies, ASB) -----------------------------------------------------

    def _back(self) -> None:
        while True:
            try:
                data = self.printer.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            try:
                self.pos.send(data)
            except OSError:
                break
        if not self.done.is_set() and isinstance(self.pos, SocketLink):
            # the printer closed or failed: the POS sees it go away, as it would without tillpoint
            self.pos.close_write()

    # -- parse: the copy -> receipts -> the desk ----------------------------------------------------------

    def _parse(self) -> None:
        copy, desk = self.copy, self.desk
        assert copy is not None and desk is not None
        try:
            parser = desk.parser()
            fed = 0  # stream offset of the next chunk
            failing = False  # a failure the parser could not contain, and no receipt boundary since
            printed = 0  # the parser's ``printed`` when text last came
            quiet_at: float | None = None  # when the receipt in progress ends for want of text (receipt_gap)
            while True:
                try:
                    chunk = copy.q.get(timeout=None if quiet_at is None else max(0.0, quiet_at - time.monotonic()))
                except queue.Empty:  # the POS printed nothing for receipt_gap: a printer without a cutter
                    quiet_at = None
                    seen = parser.failures
                    last = parser.idle()
                    self._failures(parser, seen)
                    if last is not None:
                        failing = False
                        self._slip(self._receipt(desk, last), parser)
                    continue
                if copy.lost:
                    copy.lost = False
                    parser.gap()
                    self.stats.abandoned += 1
                seen = parser.failures
                if chunk is None:
                    between = parser.at_boundary  # the stream did not end inside a command
                    last = parser.close()
                    self._failures(parser, seen)
                    if last is not None and (last.lines or last.size):
                        block = self._receipt(desk, last)
                        if block and not last.cut and between:
                            copy.final_block = block  # a printer without a cutter: printed once the POS is done
                    copy.final.set()
                    return
                try:
                    got = parser.feed(chunk)
                except Exception:
                    # not contained by the parser: a new one takes the stream over after this chunk, and skips to
                    # the next receipt boundary; the chunk's bytes are kept with the failed receipt
                    if not failing:
                        log.exception("receipt capture failed; skipping to the next receipt, printing goes on")
                        self.stats.parser_failures += 1
                        self.stats.abandoned += 1
                    failing = True
                    fed += len(chunk)
                    parser = desk.parser()
                    parser.resume(fed, chunk, traceback.format_exc())
                    got = []
                else:
                    fed += len(chunk)
                    self._failures(parser, seen)
                    failing = failing and not got
                    with copy.cond:  # the forward thread need not wait for these receipts' handling elsewhere
                        copy.ends.update(r.cut_offset for r in got if r.cut or r.init)
                        copy.scanned = parser.position
                        copy.cond.notify_all()
                if self.receipt_gap > 0 and parser.printed != printed:
                    printed, quiet_at = parser.printed, time.monotonic() + self.receipt_gap
                for receipt in got:
                    self._receipt(desk, receipt)
                with copy.cond:
                    copy.parsed = parser.position
                    copy.cond.notify_all()
        except Exception:
            log.exception("receipt capture failed; printing goes on without it")
            self.stats.parser_failures += 1
            self.stats.abandoned += 1
            with copy.cond:
                copy.dead = True
                copy.cond.notify_all()
            copy.final.set()
            while True:  # drain, so the forward thread's copies never block
                try:
                    if copy.q.get(timeout=1.0) is None:
                        return
                except queue.Empty:
                    if self.done.is_set():
                        return

    def _failures(self, parser: StreamParser, seen: int) -> None:
        """Failures the parser contained since it had ``seen``: each costs one receipt (kept, flagged
        ``receipt_parse_failed``), logged once with its traceback; capture goes on at the next receipt."""
        new = parser.failures - seen
        if new > 0:
            log.error(
                "receipt capture failed on a receipt; skipping to the next one, printing goes on\n%s", parser.failure
            )
            self.stats.parser_failures += new
            self.stats.abandoned += new

    def _slip(self, block: bytes | None, parser: StreamParser) -> None:
        """The loyalty block of a receipt that ended when the POS went quiet (a printer without a cutter), printed now
        as a slip of its own: only between two of the POS's commands, every byte sent to the printer read (the POS
        printing again at this moment keeps it; a slip is never printed inside a command or an image)."""
        if not block or not self.enrich or self.copy is None or self.copy.dead:
            return
        if not self._sending.acquire(timeout=self.hold):
            return
        try:
            if self._sent != parser.position or not parser.at_boundary or not self.copy.q.empty():
                return
            self.printer.send(block)
            self.stats.enriched += 1
        except OSError:
            return  # the printer went away: the relay's threads see it
        finally:
            self._sending.release()

    def _final_slip(self, copy: _Copy) -> None:
        """The POS closed its connection: the block of a receipt the end of the stream ended (a printer without a
        cutter, a POS that connects for each receipt) goes out before the printer's side is closed, waited for at
        most ``hold`` seconds."""
        if not self.enrich or copy.dead:
            return
        if not copy.final.wait(self.hold):
            self.stats.hold_timeouts += 1
            return
        if copy.final_block:
            with contextlib.suppress(OSError):
                self._send(copy.final_block, block=True)
                self.stats.enriched += 1

    def _receipt(self, desk: ReceiptDesk, receipt: Captured) -> bytes | None:
        assert self.copy is not None
        self.stats.receipts += 1
        try:
            block = desk.captured(receipt)
        except Exception:  # a bug behind the desk costs this receipt, not the capture of the rest of the stream
            log.exception("receipt %s could not be handled; printing and capture go on", receipt.digest[:12])
            self.stats.receipt_failures += 1
            block = None
        with self.copy.cond:
            self.copy.cut_seen = self.copy.cut_seen or receipt.cut
            if receipt.cut or receipt.init:  # the forward thread holds at the cut (or the init) for its block
                self.copy.ends.discard(receipt.cut_offset)
                self.copy.cuts.add(receipt.cut_offset)
                if block:
                    self.copy.blocks[receipt.cut_offset] = block
            self.copy.cond.notify_all()
        return block


def split_partial_cut(chunk: bytes) -> tuple[bytes, bytes]:
    """``chunk`` less a cut command it ends in the middle of (ESC or GS alone, GS V, GS V m that needs its
    n), and that part: it goes out with the next read, or alone after the hold."""
    for k in (3, 2, 1):
        tail = chunk[-k:]
        if len(tail) < k:
            continue
        if k == 1 and tail[0] in (0x1B, 0x1D):
            return chunk[:-1], tail
        if k == 2 and tail == b"\x1dV":
            return chunk[:-2], tail
        if k == 3 and tail[:2] == b"\x1dV" and tail[2] not in (0, 1, 48, 49):
            return chunk[:-3], tail
    return chunk, b""


def _cut_marks(data: bytes, init: bool = False) -> list[int]:
    found: list[int] = []
    for mark in CUT_MARKS + ((INIT,) if init else ()):
        at = data.find(mark)
        while at >= 0:
            found.append(at)
            at = data.find(mark, at + 1)
    return sorted(found)


class PrinterProxy:
    """Listens where the POS prints (``tcp:HOST:PORT``) and relays each connection to ``printer``.
    ``start`` returns once it listens; ``port`` is the port it got (for ``tcp:HOST:0``).

    While the printer cannot be reached it does not listen: the POS's connections are refused, as a
    switched-off printer's are. It probes the printer (connects and closes; ``probe_first`` seconds after
    the failure, doubling up to ``probe_cap``) and listens again on the same port once it answers."""

    def __init__(
        self,
        listen: str,
        printer: str,
        desk: ReceiptDesk | None = None,
        *,
        enrich: bool = False,
        hold: float = 0.15,
        queue_chunks: int = 256,
        receipt_gap: float = 0.0,
        connect_timeout: float = 5.0,
        probe_first: float = 0.5,
        probe_cap: float = 10.0,
        emit: Callable[[Event], object] | None = None,
    ) -> None:
        self.listen, self.printer, self.desk = listen, printer, desk
        self.enrich, self.hold, self.queue_chunks = enrich, hold, queue_chunks
        self.receipt_gap = receipt_gap
        self.connect_timeout = connect_timeout
        self.backoff = Backoff(probe_first, probe_cap)
        self.emit = emit
        self.stats = Stats()
        self.host = ""
        self.port = 0
        self._server: socket.socket | None = None
        self._lock = threading.Lock()  # the listening socket: opened and closed by the accept and relay threads
        self._down = threading.Event()  # the printer did not answer: stop listening until a probe reaches it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: Relay | None = None
        self._said = ""  # the printer's state last said in an event

    def start(self) -> None:
        kind, _, rest = self.listen.partition(":")
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            self.host, self.port = host, int(port)
            self._open_server()
            self._thread = threading.Thread(target=self._accept, name="printer-proxy", daemon=True)
        elif kind in ("serial", "device"):
            self._thread = threading.Thread(target=self._serial, name="printer-proxy", daemon=True)
        else:
            raise ValueError(f"{self.listen!r} is not tcp:HOST:PORT, serial:PORT[:BAUD] or device:PATH")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._current is not None:  # a serial relay runs until stopped
            self._current.pos.close()
            self._current.printer.close()
        self._close_server()
        if self._thread is not None:
            self._thread.join(5.0)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _open_server(self) -> None:
        server = socket.create_server((self.host, self.port), reuse_port=False)
        server.settimeout(WAIT)  # so the accept loop notices a printer gone and a stop
        with self._lock:
            self._server = server
            self.port = server.getsockname()[1]
            self.stats.listening = True

    def _close_server(self) -> None:
        """Stop listening: connections not accepted yet are reset, new ones refused. The socket is closed before
        ``listening`` says so: a POS connecting once it reads false is refused, never accepted and then reset."""
        with self._lock:
            server = self._server
            if server is not None:
                with contextlib.suppress(OSError):
                    server.shutdown(socket.SHUT_RDWR)
                server.close()
            self._server = None
            self.stats.listening = False

    def _relay(self, pos: Link, printer: Link) -> Relay:
        return Relay(
            pos,
            printer,
            self.desk,
            self.stats,
            enrich=self.enrich,
            hold=self.hold,
            queue_chunks=self.queue_chunks,
            receipt_gap=self.receipt_gap,
            emit=self.emit,
        )

    def _accept(self) -> None:
        try:  # a printer already off when tillpoint starts: refuse from the first connection on
            open_link(self.printer, self.connect_timeout).close()
        except (OSError, ValueError) as exc:
            self._unreachable(exc)
        else:
            self._event("reachable", "")
        while not self._stop.is_set():
            if self._down.is_set():
                self._await_printer()
                continue
            server = self._server
            if server is None:
                self._stop.wait(WAIT)
                continue
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                continue  # closed: stopped, or the printer went away
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(SocketLink(conn),), name="printer-relay", daemon=True).start()

    def _await_printer(self) -> None:
        """Not listening: probe the printer after a backoff; listen again once it answers."""
        self._close_server()
        if self._stop.wait(self.backoff.next()):
            return
        try:
            open_link(self.printer, self.connect_timeout).close()
        except (OSError, ValueError) as exc:
            self.stats.printer_unreachable += 1
            log.debug("printer %s still unreachable: %s", self.printer, exc)
            return
        try:
            self._open_server()
        except OSError as exc:  # the port was taken meanwhile: try again after the next delay
            log.warning("cannot listen on %s again: %s", self.listen, exc)
            return
        self.backoff.reset()
        self._down.clear()
        log.info("printer %s answers again; listening on %s", self.printer, self.listen)
        self._event("reachable", "")

    def _serve(self, pos: SocketLink) -> None:
        self.stats.connections += 1
        try:
            printer = open_link(self.printer, self.connect_timeout)
        except (OSError, ValueError) as exc:
            self._unreachable(exc)
            pos.reset()
            return
        self._relay(pos, printer).run()

    def _unreachable(self, exc: Exception) -> None:
        self.stats.printer_unreachable += 1
        if self.listen.startswith("tcp:"):
            self._close_server()  # refuse the POS's next connections, as the printer does
            self._down.set()
        log.warning("printer %s unreachable: %s", self.printer, exc)
        self._event("unreachable", str(exc))

    def _event(self, state: str, detail: str) -> None:
        """An event ``printer`` when its state (reachable or not) is first known or changes."""
        if state == self._said:
            return
        self._said = state
        if self.emit is not None:
            self.emit({"type": "printer", "state": state, "detail": detail})

    def _serial(self) -> None:
        while not self._stop.is_set():
            try:
                pos = open_link(self.listen)
            except (OSError, ValueError) as exc:
                log.warning("printer relay %s: %s", self.listen, exc)
                self._stop.wait(self.backoff.next())
                continue
            try:
                printer = open_link(self.printer, self.connect_timeout)
            except (OSError, ValueError) as exc:
                pos.close()
                self._unreachable(exc)
                self._stop.wait(self.backoff.next())
                continue
            self.backoff.reset()
            self._event("reachable", "")
            self._current = self._relay(pos, printer)
            self._current.run()


__all__ = ["Link", "PortLink", "PrinterProxy", "Relay", "SocketLink", "Stats", "open_link"]
