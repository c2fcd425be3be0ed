"""A virtual contactless card for the vsmartcard ``vpcd`` reader driver, written for the tests.

vpcd (loaded by a real pcscd) listens on TCP 127.0.0.1:35963 for the first virtual reader; the card
is the TCP client. Frames in both directions are a 2-byte big-endian length and a payload:

    vpcd -> card   1 byte   control: 0 power off, 1 power on, 2 reset, 4 "send your ATR"
    vpcd -> card   >1 byte  a command APDU; the card answers with data + SW1 SW2
    card -> vpcd   framed ATR (after control 4) or framed response APDU

Connecting is "card inserted", closing the socket is "card removed". The card records every APDU it
receives (``apdus``) so tests can assert exact bytes, and a ``handler`` lets a test script answers.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # vpcd's first reader, "Virtual PCD 00 00" (CHANNELID 0x8C7B in reader.conf.d)

# PC/SC part 3 ATR of a contactless storage card (ISO 14443 A part 3, MIFARE Classic 1K): pcscd
# and the PC/SC pseudo-APDU "FF CA 00 00 00" then treat the virtual card like a tag on a real PCD.
STORAGE_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
GET_UID = bytes.fromhex("FFCA000000")
SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"

CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4

# Returns the response APDU, or None to fall back to the card's default answer.
ApduHandler = Callable[[bytes], bytes | None]


class VirtualCard:
    """One card; ``insert()`` connects to vpcd and serves it from a thread, ``remove()`` closes."""

    def __init__(
        self,
        uid: bytes = bytes.fromhex("04A22B1C5D6E80"),
        atr: bytes = STORAGE_ATR,
        *,
        handler: ApduHandler | None = None,
        pull_on: bytes | None = None,
        host: str = VPCD_HOST,
        port: int = VPCD_PORT,
    ) -> None:
        self.uid = uid
        self.atr = atr
        self.handler = handler
        # An APDU starting with these bytes makes the card leave the field without answering:
        # the socket closes while pcscd waits for the response, as when a card is pulled mid-read.
        self.pull_on = pull_on
        self.address = (host, port)
        self.apdus: list[bytes] = []
        self.controls: list[int] = []
        self.pulled = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(self, timeout: float = 5.0) -> None:
        """Put the card on the reader: connect to vpcd and serve it until removed."""
        if self._sock is not None:
            raise RuntimeError("card is already inserted")
        sock = socket.create_connection(self.address, timeout=timeout)
        # vpcd writes length and payload separately; without NODELAY/QUICKACK the delayed-ACK dance
        # costs ~44 ms per APDU instead of ~0.2 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)  # reads block until vpcd speaks or the socket is closed by remove()
        self.pulled.clear()
        with self._lock:
            self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="vcard", daemon=True)
        self._thread.start()

    def remove(self, timeout: float = 5.0) -> None:
        """Take the card off the reader (idempotent)."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            _close(sock)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for_apdu(self, count: int = 1, timeout: float = 5.0) -> bool:
        """True once at least ``count`` APDUs arrived; bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.apdus) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def answer(self, apdu: bytes) -> bytes:
        """The response to one command APDU: the test's handler first, then the defaults."""
        if self.handler is not None:
            scripted = self.handler(apdu)
            if scripted is not None:
                return scripted
        if apdu == GET_UID:
            return self.uid + SW_OK
        return SW_INS_NOT_SUPPORTED

    def _serve(self, sock: socket.socket) -> None:
        try:
            while (payload := _recv_frame(sock)) is not None:
                reply = self._on_frame(payload)
                if reply is None and self.pulled.is_set():
                    break
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError:
            pass  # remove() closed the socket under us, or vpcd went away (pcscd stopped)
        finally:
            self._forget(sock)

    def _on_frame(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            self.controls.append(payload[0])
            return self.atr if payload[0] == CTRL_ATR else None
        self.apdus.append(payload)
        if self.pull_on is not None and payload.startswith(self.pull_on):
            self.pulled.set()
            return None
        return self.answer(payload)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
        _close(sock)


def _recv_frame(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    (length,) = struct.unpack(">H", header)
    return _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        # Linux turns quick-ack off again after a while; re-arm it before each read.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the serving thread blocked in recv
    except OSError:
        pass
    sock.close()
