"""A virtual contactless card for the vsmartcard ``vpcd`` reader driver, written for the tests.

vpcd (loaded by a real pcscd) listens on a TCP port of 127.0.0.1 for each virtual reader slot (the
test session's pcscd picks the port: ``tests/fixtures/pcsc.py``); the card is the TCP client. Frames in both directions are a 2-byte big-endian length and a payload:

    vpcd -> card   1 byte   control: 0 power off, 1 power on, 2 reset, 4 "send your ATR"
    vpcd -> card   >1 byte  a command APDU; the card answers with data + SW1 SW2
    card -> vpcd   framed ATR (after control 4) or framed response APDU

Connecting is "card inserted", closing the socket is "card removed". The card records every APDU it
receives (``apdus``) so tests can assert exact bytes, and a ``handler`` lets a test script answers.

Card models to plug in as the ``handler`` (each answers the APDUs a PC/SC reader would pass on):

    Type2Tag(memory)        NTAG21x / Ultralight: PC/SC part 3 READ BINARY of 4-byte pages
    Type4Tag(message)       NFC Forum Type 4: NDEF application, CC file E1 03, NDEF file E1 04
    Ntag424(uid, master)    NTAG 424 DNA: a Type 4 tag whose NDEF URL carries a fresh SUN message
                            (AES, NXP AN12196) every time the NDEF file is selected
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable

import ndef
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

VPCD_HOST = "127.0.0.1"

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
        port: int,
        host: str = VPCD_HOST,
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


# --- card models ----------------------------------------------------------------------------------

SW_NOT_FOUND = b"\x6a\x82"  # file or application not found
SW_WRONG_P1P2 = b"\x6b\x00"  # offset outside the file
SW_FAILED = b"\x63\x00"  # PC/SC part 3: the reader's operation on the card failed
SW_NOT_ALLOWED = b"\x69\x86"  # command not allowed: no file selected
NDEF_AID = bytes.fromhex("D2760000850101")
ISO_DEP_ATR = bytes.fromhex("3B8180018080")  # ISO 14443-4 A card (ATS historical byte 80), e.g. DESFire, NTAG 424


def part3_atr(card_name: int, standard: int = 0x03) -> bytes:
    """A PC/SC part 3 storage-card ATR: SS ``standard`` (03 = ISO 14443 A part 3), NN ``card_name``
    (0001 MIFARE Classic 1K, 0003 Ultralight/NTAG21x, 003B FeliCa), then its check byte TCK."""
    body = bytes.fromhex("8F8001804F0CA000000306") + bytes([standard]) + card_name.to_bytes(2, "big") + bytes(4)
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


ULTRALIGHT_ATR = part3_atr(0x0003)


def uri_message(url: str) -> bytes:
    return b"".join(ndef.message_encoder([ndef.UriRecord(url)]))


def type2_memory(message: bytes | None, data_size: int = 144, cc: bytes | None = None) -> bytes:
    """An NTAG21x memory image: UID/lock pages 0-2, CC in page 3, the TLV area from page 4."""
    header = bytes.fromhex("04A22BC51C5D6E80D048000000") + bytes(3)  # UID, BCCs, lock bytes
    cc = cc if cc is not None else bytes([0xE1, 0x10, data_size // 8, 0x00])
    area = b""
    if message is not None:
        length = bytes([len(message)]) if len(message) < 0xFF else b"\xff" + len(message).to_bytes(2, "big")
        area = bytes([0x03]) + length + message + b"\xfe"
    return header[:12] + cc + area + bytes(data_size - len(area))


class Type2Tag:
    """NTAG21x behind a PC/SC reader: ``FF B0 00 <page> <Le>`` returns Le bytes from that page."""

    def __init__(self, memory: bytes) -> None:
        self.memory = memory

    def __call__(self, apdu: bytes) -> bytes | None:
        if len(apdu) != 5 or apdu[:3] != b"\xff\xb0\x00":
            return None
        start = apdu[3] * 4
        size = apdu[4] or 256
        if start + size > len(self.memory):
            return SW_FAILED
        return self.memory[start : start + size] + SW_OK


class Type4Tag:
    """An NFC Forum Type 4 tag (mapping 2.0): ``message`` is the NDEF message, or a function that
    makes a new one each time the NDEF file is selected."""

    def __init__(self, message: bytes | Callable[[], bytes], max_read: int = 0x3B, readable: bool = True) -> None:
        self.message = message
        self.max_read = max_read
        self.readable = readable
        self.selected: bytes | None = None
        self.app_selected = False
        self.files: dict[bytes, bytes] = {b"\xe1\x03": self.cc()}

    def cc(self) -> bytes:
        access = b"\x00" if self.readable else b"\x80"
        return (
            bytes.fromhex("000F20")
            + self.max_read.to_bytes(2, "big")
            + bytes.fromhex("00FF0406E104")
            + (0x0100).to_bytes(2, "big")
            + access
            + b"\x00"
        )

    def __call__(self, apdu: bytes) -> bytes | None:
        if apdu == bytes.fromhex("00A4040007") + NDEF_AID + b"\x00":
            self.app_selected, self.selected = True, None
            return SW_OK
        if apdu[:4] == bytes.fromhex("00A4000C") and apdu[4] == 2 and self.app_selected:
            return self.select_file(apdu[5:7])
        if apdu[:2] == b"\x00\xb0" and len(apdu) == 5:
            return self.read_binary(int.from_bytes(apdu[2:4], "big"), apdu[4] or 256)
        if apdu[:2] == b"\x00\xa4":
            return SW_NOT_FOUND
        return None

    def select_file(self, file_id: bytes) -> bytes:
        if file_id == b"\xe1\x04":
            message = self.message() if callable(self.message) else self.message
            self.files[file_id] = len(message).to_bytes(2, "big") + message
        if file_id not in self.files:
            return SW_NOT_FOUND
        self.selected = file_id
        return SW_OK

    def read_binary(self, offset: int, size: int) -> bytes:
        if self.selected is None:
            return SW_NOT_ALLOWED
        data = self.files[self.selected]
        if offset > len(data) or size > self.max_read:
            return SW_WRONG_P1P2
        return data[offset : offset + size] + SW_OK


def _aes_cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def _an10922(master: bytes, data: bytes) -> bytes:
    """AN10922 AES-128 diversification, written out again card-side (as a card issuing tool would)."""
    l_block = Cipher(algorithms.AES(master), modes.ECB()).encryptor().update(bytes(16))

    def shift(block: bytes) -> bytes:
        value = (int.from_bytes(block, "big") << 1) ^ (0x87 if block[0] & 0x80 else 0)
        return (value & (2**128 - 1)).to_bytes(16, "big")

    k1 = shift(l_block)
    message = b"\x01" + data
    key = k1 if len(message) == 32 else shift(k1)
    message = message + (b"\x80" + bytes(31 - len(message)) if len(message) < 32 else b"")
    message = message[:16] + bytes(a ^ b for a, b in zip(message[16:], key, strict=False))
    return Cipher(algorithms.AES(master), modes.CBC(bytes(16))).encryptor().update(message)[16:]


class Ntag424(Type4Tag):
    """NTAG 424 DNA with SUN: its NDEF URL holds PICCData (tag C7, UID, SDMReadCtr) encrypted under
    SDMMetaReadKey and the truncated SDM MAC under SDMFileReadKey; the counter rises per read.
    The keys are provisioned as the chain's issuing tool does: diversified from ``master``."""

    def __init__(
        self,
        uid: bytes,
        master: bytes,
        *,
        base_url: str = "https://tillpoint.example/c",
        file_read_key: bytes | None = None,
    ) -> None:
        super().__init__(self.ndef_message, max_read=0x80)
        self.uid = uid
        self.base_url = base_url
        self.meta_read_key = _an10922(master, b"tillpoint SDMMetaRead")
        self.file_read_key = file_read_key or _an10922(master, uid + b"tillpoint SDMFileRead")
        self.counter = 0

    def ndef_url(self) -> str:
        self.counter += 1
        ctr = self.counter.to_bytes(3, "little")
        picc = b"\xc7" + self.uid + ctr + os.urandom(5)
        encryptor = Cipher(algorithms.AES(self.meta_read_key), modes.CBC(bytes(16))).encryptor()
        picc_enc = encryptor.update(picc) + encryptor.finalize()
        session = _aes_cmac(self.file_read_key, bytes.fromhex("3CC300010080") + self.uid + ctr)
        mac = _aes_cmac(session, b"")[1::2]
        return f"{self.base_url}?picc_data={picc_enc.hex().upper()}&cmac={mac.hex().upper()}"

    def ndef_message(self) -> bytes:
        return uri_message(self.ndef_url())
