"""An ESC/POS print stream as commands and text. Pure: no I/O.

``Tokenizer`` splits bytes into commands by their lengths only (cheap, incremental, bounded memory:
image data is skipped as it passes, never buffered). ``ReceiptParser`` builds on it: text lines with
their layout (alignment, bold, size), decoded in the code page in force (``ESC t``; Kanji mode ``FS &``
with Shift_JIS/CP932 or GB18030), and a cut (``GS V``, ``ESC i``, ``ESC m``) ends one receipt. On a stream
that has shown no cut (a printer without a cutter), the printer's init (``ESC @``) after printed text ends one
too, and so does ``idle`` (the stream went quiet: the relay's ``[printer] receipt_gap``). A receipt of more than
``MAX_LINES`` lines comes out at once, ``too_large``, and the rest of it is skipped: memory stays bounded.

A failure of the parser itself (a bug, on some odd receipt) costs that receipt, never the rest of the stream:
the parser skips to the next boundary, and the receipt comes out there with its bytes and ``failure`` set (its
lines unread), counted in ``ReceiptParser.failures``.

No maintained library parses ESC/POS (the libraries generate it), so the command table is here,
from the ESC/POS command reference; a command it does not know costs two bytes and a flag, never the
rest of the stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

MAX_RAW = 1 << 20
"""The raw bytes kept with a receipt (those its digest covers)."""
MAX_LINE = 4096
"""Text bytes kept for one line; the rest of a line without LF is dropped (and flagged)."""
MAX_LINES = 10_000
"""Printed lines held for one receipt (a sale holds 500 lines); beyond, or beyond ``MAX_RAW`` characters of
text, the receipt comes out ``too_large`` (kept unread, its lines freed) and the rest of it is skipped."""
INIT = b"\x1b@"
"""ESC @, the printer's init: on a stream that has shown no cut, it ends the receipt in progress."""

# ESC t n: single-byte character tables (ESC/POS numbering), as Python codecs.
CODE_PAGES: dict[int, str] = {
    0: "cp437",
    1: "shift_jis",  # Katakana: the half-width kana of JIS X 0201
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
    255: "latin-1",
}
MULTIBYTE = {"cp932", "shift_jis", "gb18030", "gbk", "big5", "euc_kr", "cp949"}


class Kind(StrEnum):
    TEXT = "text"
    COMMAND = "command"
    LINE = "line"  # LF, or a feed that ends the line (ESC d, ESC J, FF)
    CUT = "cut"
    STATUS = "status"  # a real-time command or status request (DLE EOT, DLE ENQ, GS r, GS I, ESC v): prints nothing
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    data: bytes
    """The command's bytes (without skipped image data), or the text's bytes."""
    offset: int
    """Where it starts in the stream."""
    end: int
    """Where it ends in the stream (exclusive)."""


# Fixed lengths (including the prefix byte) of commands by their second byte.
_ESC_FIXED = {
    0x40: 2, 0x21: 3, 0x45: 3, 0x2D: 3, 0x47: 3, 0x4D: 3, 0x61: 3, 0x74: 3, 0x52: 3, 0x64: 3, 0x4A: 3,
    0x32: 2, 0x33: 3, 0x20: 3, 0x7B: 3, 0x56: 3, 0x72: 3, 0x70: 5, 0x24: 4, 0x5C: 4, 0x69: 2, 0x6D: 2,
    0x25: 3, 0x3F: 3, 0x54: 3, 0x4C: 2, 0x53: 2, 0x57: 10, 0x3C: 2, 0x55: 3, 0x6B: 3, 0x65: 3, 0x66: 4,
    0x4B: 2, 0x63: 4, 0x3D: 3, 0x49: 3, 0x6E: 2, 0x71: 2,
}  # fmt: skip
_GS_FIXED = {
    0x21: 3, 0x42: 3, 0x48: 3, 0x68: 3, 0x77: 3, 0x66: 3, 0x2F: 3, 0x4C: 4, 0x57: 4, 0x61: 3, 0x72: 3,
    0x49: 3, 0x62: 3, 0x50: 4, 0x5C: 4, 0x24: 4, 0x54: 3, 0x3A: 2, 0x5E: 5, 0x7C: 3, 0x45: 3, 0x63: 2,
}  # fmt: skip
_FS_FIXED = {0x26: 2, 0x2E: 2, 0x43: 3, 0x21: 3, 0x2D: 3, 0x53: 4, 0x57: 3, 0x70: 4, 0x32: 76, 0x3F: 4}
_CUT_ESC = {0x69, 0x6D}
_GS_STATUS = {0x72, 0x49, 0x61, 0x6A}
UNPRINTED = (b"\x1bp",)
"""Commands that print nothing and change nothing printed, beside the status requests (``Kind.STATUS``): the
cash drawer's kick (ESC p), which a sale sends and its reprint does not."""
_CONTROL = re.compile(rb"[\x00-\x1f]")
_ALIGN = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}


@dataclass(slots=True)
class Tokenizer:
    """Incremental: ``feed`` bytes as they come, tokens come out once complete. Image data is skipped
    without being held, so memory stays bounded whatever the stream."""

    _buf: bytearray = field(default_factory=bytearray)
    _pos: int = 0  # stream offset of _buf[0]
    _skip: int = 0  # image data still to pass
    _skip_start: int = 0
    unknown: int = 0

    def feed(self, data: bytes) -> Iterator[Token]:
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            self._pos += n
            data = data[n:]
        self._buf += data
        yield from self._drain()

    def flush(self) -> Iterator[Token]:
        """The end of the stream: what is left is text, or a truncated command (unknown)."""
        if self._buf:
            kind = Kind.TEXT if self._buf[0] >= 0x20 else Kind.UNKNOWN
            token = Token(kind, bytes(self._buf), self._pos, self._pos + len(self._buf))
            self._pos += len(self._buf)
            self._buf.clear()
            yield token

    def _drain(self) -> Iterator[Token]:
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n and not self._skip:
            b = buf[i]
            if b >= 0x20:
                m = _CONTROL.search(buf, i + 1)
                j = m.start() if m else n
                yield Token(Kind.TEXT, bytes(buf[i:j]), self._pos + i, self._pos + j)
                i = j
                continue
            size, kind, skip = _command(buf, i)
            if size == 0:  # incomplete: wait for more bytes
                break
            if kind is Kind.UNKNOWN:
                self.unknown += 1
            end = i + size
            if skip:
                # the image data beyond what the buffer holds passes without being held
                have = min(skip, n - end)
                self._skip = skip - have
                yield Token(kind, bytes(buf[i:end]), self._pos + i, self._pos + end + skip)
                i = end + have
            else:
                yield Token(kind, bytes(buf[i:end]), self._pos + i, self._pos + end)
                i = end
        del buf[:i]
        self._pos += i
        if self._skip and buf:  # cannot happen: a skip consumes the buffer's tail
            buf.clear()


def _command(buf: bytearray, i: int) -> tuple[int, Kind, int]:
    """(length of the command at ``buf[i]`` (0: not all there yet), its kind, image bytes that follow)."""
    b = buf[i]
    n = len(buf) - i
    if b in (LF, FF):
        return 1, Kind.LINE, 0
    if b not in (ESC, GS, FS, DLE):
        return 1, Kind.COMMAND, 0  # CR, HT and other single control bytes
    if n < 2:
        return 0, Kind.COMMAND, 0
    c = buf[i + 1]
    if b == DLE:
        if c in (0x04, 0x05):
            return (3, Kind.STATUS, 0) if n >= 3 else (0, Kind.STATUS, 0)
        if c == 0x14:
            return (5, Kind.STATUS, 0) if n >= 5 else (0, Kind.STATUS, 0)
        return 1, Kind.COMMAND, 0
    if b == ESC:
        return _esc(buf, i, c, n)
    if b == GS:
        return _gs(buf, i, c, n)
    return _fs(buf, i, c, n)


def _fixed(size: int, n: int, kind: Kind = Kind.COMMAND) -> tuple[int, Kind, int]:
    return (size, kind, 0) if n >= size else (0, kind, 0)


def _esc(buf: bytearray, i: int, c: int, n: int) -> tuple[int, Kind, int]:
    if c in _CUT_ESC:
        return 2, Kind.CUT, 0
    if c == 0x76:  # ESC v: transmit the paper sensor's status
        return 2, Kind.STATUS, 0
    if c == 0x75:  # ESC u n: transmit a peripheral's status
        return _fixed(3, n, Kind.STATUS)
    if c in (0x64, 0x4A):
        return _fixed(3, n, Kind.LINE)
    if c == 0x2A:  # ESC * m nL nH d1...dk: bit image
        if n < 5:
            return 0, Kind.COMMAND, 0
        m, cols = buf[i + 2], buf[i + 3] | buf[i + 4] << 8
        return 5, Kind.COMMAND, cols * (3 if m in (32, 33) else 1)
    if c == 0x44:  # ESC D n1 ... NUL: tab positions
        end = buf.find(0, i + 2, i + 2 + 33)
        if end < 0:
            return (0, Kind.COMMAND, 0) if n < 35 else (2, Kind.UNKNOWN, 0)
        return end - i + 1, Kind.COMMAND, 0
    if c == 0x26:  # ESC & y c1 c2 [x d1...d(y*x)]...: user-defined characters
        if n < 5:
            return 0, Kind.COMMAND, 0
        y, c1, c2 = buf[i + 2], buf[i + 3], buf[i + 4]
        j = i + 5
        for _ in range(max(0, c2 - c1 + 1)):
            if j >= len(buf):
                return 0, Kind.COMMAND, 0
            j += 1 + y * buf[j]
        return (j - i, Kind.COMMAND, 0) if j <= len(buf) else (0, Kind.COMMAND, 0)
    if c in _ESC_FIXED:
        return _fixed(_ESC_FIXED[c], n)
    return 2, Kind.UNKNOWN, 0


def _gs(buf: bytearray, i: int, c: int, n: int) -> tuple[int, Kind, int]:
    if c == 0x56:  # GS V m [n]
        if n < 3:
            return 0, Kind.CUT, 0
        return _fixed(3 if buf[i + 2] in (0, 1, 48, 49) else 4, n, Kind.CUT)
    if c in _GS_STATUS:  # GS r n, GS I n, GS a n, GS j n: status (and printer id) requests, status sent back
        return _fixed(3, n, Kind.STATUS)
    if c == 0x28:  # GS ( X pL pH data: QR codes, graphics, settings
        if n < 5:
            return 0, Kind.COMMAND, 0
        size = 5 + (buf[i + 3] | buf[i + 4] << 8)
        return _fixed(size, n, Kind.STATUS if buf[i + 2] == 0x48 else Kind.COMMAND)  # GS ( H: a response request
    if c == 0x76:  # GS v 0 m xL xH yL yH data: raster image
        if n < 8:
            return 0, Kind.COMMAND, 0
        x, y = buf[i + 4] | buf[i + 5] << 8, buf[i + 6] | buf[i + 7] << 8
        return 8, Kind.COMMAND, x * y
    if c == 0x2A:  # GS * x y data: downloaded bit image
        if n < 4:
            return 0, Kind.COMMAND, 0
        return 4, Kind.COMMAND, buf[i + 2] * buf[i + 3] * 8
    if c == 0x38:  # GS 8 L p1 p2 p3 p4 ...: large graphics data
        if n < 7:
            return 0, Kind.COMMAND, 0
        size = int.from_bytes(buf[i + 3 : i + 7], "little")
        return 7, Kind.COMMAND, size
    if c == 0x6B:  # GS k m ...: bar code
        if n < 3:
            return 0, Kind.COMMAND, 0
        m = buf[i + 2]
        if m <= 6:
            end = buf.find(0, i + 3, i + 3 + 256)
            if end < 0:
                return (0, Kind.COMMAND, 0) if n < 259 else (3, Kind.UNKNOWN, 0)
            return end - i + 1, Kind.COMMAND, 0
        if n < 4:
            return 0, Kind.COMMAND, 0
        return _fixed(4 + buf[i + 3], n)
    if c in _GS_FIXED:
        return _fixed(_GS_FIXED[c], n)
    return 2, Kind.UNKNOWN, 0


def _fs(buf: bytearray, i: int, c: int, n: int) -> tuple[int, Kind, int]:
    if c == 0x28:  # FS ( X pL pH data
        if n < 5:
            return 0, Kind.COMMAND, 0
        return _fixed(5 + (buf[i + 3] | buf[i + 4] << 8), n)
    if c in _FS_FIXED:
        return _fixed(_FS_FIXED[c], n)
    return 2, Kind.UNKNOWN, 0


# -- text lines and receipts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrintedLine:
    text: str
    align: str = "left"  # left | center | right
    bold: bool = False
    size: tuple[int, int] = (1, 1)  # width and height multipliers


@dataclass(frozen=True, slots=True)
class Captured:
    """One receipt as printed: its lines, its raw bytes' digest, and what the stream ended with."""

    lines: tuple[PrintedLine, ...]
    digest: str
    """sha256 of what the receipt prints, hex: its bytes less the status requests, real-time commands and drawer
    kicks among them (``prints``), so the same receipt printed again has the same digest however the POS polled."""
    size: int
    """Every byte of the receipt in the stream, those left out of the digest too."""
    raw: bytes
    """The first ``MAX_RAW`` bytes the digest covers (what ``tillpoint receipt try`` reads again)."""
    cut: bool
    """Ended by a cut (False: the stream ended first)."""
    cut_offset: int
    """Stream offset of the cut command (of the init that ended it, or of the end): where a loyalty block goes."""
    encoding: str
    """The code page in force at the cut: a block added there is written in it."""
    kanji: bool
    unknown: int = 0
    """Commands the parser did not know (skipped)."""
    damaged: bool = False
    """Lost bytes: a gap in the copy, a line cut short."""
    failure: str | None = None
    """The parser failed on this receipt (a bug; the traceback): its bytes are here, its lines were not read."""
    too_large: bool = False
    """More lines than ``MAX_LINES`` (or text than ``MAX_RAW``): these are its first bytes, its lines were freed."""
    init: bool = False
    """Ended by the printer's init (ESC @) of a printer without a cutter: ``cut_offset`` is where the init starts (a
    loyalty block goes before it, as before a cut)."""

    @property
    def text(self) -> str:
        return "\n".join(x.text for x in self.lines)


@dataclass(slots=True)
class _State:
    align: str = "left"
    bold: bool = False
    size: tuple[int, int] = (1, 1)
    table: int = 0
    kanji: bool = False


class ReceiptParser:
    """Feed it a printer's stream as it comes; receipts come out at each cut.

    ``encoding``: the single-byte code page the printer starts in (its default, set up per template);
    ``multibyte``: the Kanji-mode encoding (``cp932`` or ``gb18030``), used when the POS turns Kanji mode
    on (``FS &``) or when it is the printer's default (``kanji_default``, as Chinese printers are)."""

    def __init__(self, encoding: str = "cp437", multibyte: str = "cp932", kanji_default: bool = False) -> None:
        self.encoding = encoding
        self.multibyte = multibyte
        self.kanji_default = kanji_default
        self.tokens = Tokenizer()
        self._fed = 0
        self._carry = b""  # the bytes of a command not all here yet (read with the rest of it)
        self._reset_receipt(0)
        self.state = self._initial()
        self.failures = 0
        """Receipts the parser failed on (each skipped to its boundary, and kept)."""
        self.failure = ""
        """The last failure's traceback."""
        self.printed = 0
        """Text and line feeds read so far (a POS that only asks the printer's status prints nothing)."""
        self._cut_seen = False  # the printer cuts: its receipts end at its cuts alone

    def _initial(self) -> _State:
        return _State(kanji=self.kanji_default)

    def _reset_receipt(self, offset: int) -> None:
        self._lines: list[PrintedLine] = []
        self._text: list[tuple[bytes, str]] = []
        self._text_len = 0
        self._line_state: _State | None = None
        self._hash = hashlib.sha256()
        self._raw = bytearray()
        self._size = 0
        self._unknown = self.tokens.unknown
        self._damaged = False
        self._failed: str | None = None  # the parser failed on this receipt: skipping to its boundary
        self._dropping = False  # the rest of a receipt that came out too large: skipped to its boundary
        self._text_total = 0  # characters of text in its lines

    def feed(self, data: bytes) -> list[Captured]:
        buf = self._carry + data  # the start of a command the last chunk ended inside, and this chunk
        base = self._fed - len(self._carry)  # the stream offset of buf[0]
        self._carry = b""
        self._fed += len(data)
        done: list[Captured] = []
        taken = 0  # bytes of buf read into a receipt (or passed over: they print nothing)

        def upto(offset: int) -> int:
            return min(max(offset - base, 0), len(buf))

        def absorb(offset: int) -> None:
            nonlocal taken
            if upto(offset) > taken:
                self._absorb(buf[taken : upto(offset)])
                taken = upto(offset)

        def end(token: Token, cut: bool, too_large: bool = False, init: bool = False) -> None:
            absorb(token.end)
            at = token.offset if cut or init else token.end
            got = self._finish(at, cut=cut, end=token.end, too_large=too_large, init=init)
            if got is not None:
                done.append(got)

        try:
            for token in self.tokens.feed(data):
                if token.data == INIT and not self._cut_seen and self._in_progress():
                    end(token, cut=False, init=True)  # a printer without a cutter: its init starts the next receipt
                if not prints(token):  # a status request (the POS asks between prints): not the receipt's
                    absorb(token.offset)
                    self._size += upto(token.end) - taken
                    taken = upto(token.end)
                self._guarded(token)
                if token.kind is Kind.CUT:
                    self._cut_seen = True
                    end(token, cut=True)
                elif len(self._lines) > MAX_LINES or self._text_total > MAX_RAW:
                    end(token, cut=False, too_large=True)
        except Exception:  # noqa: BLE001 - a bug: the tokenizer (or a receipt's end) is taken over after this chunk
            self._fail()
            self.tokens = Tokenizer(_pos=self._fed, unknown=self.tokens.unknown)
            absorb(self._fed)
            return done
        # a command not all here yet waits for its rest: a status request is told only once whole
        absorb(self.tokens._pos)
        self._carry = buf[taken:]
        return done

    def _in_progress(self) -> bool:
        """Whether a receipt has printed something since the last boundary (or failed, or is being skipped)."""
        return bool(self._lines or self._text or self._failed is not None or self._dropping)

    def idle(self) -> Captured | None:
        """The stream went quiet (no text for the relay's ``receipt_gap``): on a stream that has shown no cut (a
        printer without a cutter), the receipt in progress ends here and comes out, not cut; None when the
        printer cuts or nothing was printed since the last boundary."""
        if self._cut_seen or not self._in_progress():
            return None
        if self._failed is None and not self._dropping:
            try:
                self._end_line()
            except Exception:  # noqa: BLE001 - a bug: its traceback goes with the failed receipt
                self._fail()
        return self._finish(self._fed, cut=False, end=self._fed)

    def _guarded(self, token: Token) -> None:
        """``token`` read into the receipt; a failure (a bug) costs this receipt, which is skipped to its end."""
        if token.kind is Kind.TEXT or token.kind is Kind.LINE:
            self.printed += 1
        if self._failed is not None or self._dropping:
            if token.kind is Kind.COMMAND and len(token.data) > 1:
                # the printer's state goes on across receipts (a code page set once a day); this receipt
                # already failed (its failure is recorded) or came out too large
                with contextlib.suppress(Exception):
                    self._command(token.data)
            return
        try:
            self._token(token)
        except Exception:  # noqa: BLE001 - a bug: its traceback goes with the failed receipt
            self._fail()

    def _fail(self) -> None:
        """The parser failed on the receipt in progress: its lines are dropped and the rest of it skipped; its
        bytes are still kept, and it comes out at its boundary with ``failure`` set."""
        if self._failed is None:
            self.failures += 1
        self.failure = self._failed = traceback.format_exc()
        self._lines, self._text, self._text_len, self._line_state = [], [], 0, None

    def resume(self, at: int, failed: bytes, failure: str) -> None:
        """Take a stream over at offset ``at`` from a parser that failed in a way it could not contain:
        ``failed``, the bytes it failed on, begin a receipt that is skipped to its boundary and comes out there
        with ``failure`` set. Not counted in ``failures`` (the caller counted it)."""
        self._fed = at
        self._carry = b""
        self.tokens = Tokenizer(_pos=at)
        self._reset_receipt(at)
        self._absorb(failed)
        self._failed = failure

    def _absorb(self, data: bytes) -> None:
        if self._dropping:  # the rest of a receipt that came out too large
            return
        self._hash.update(data)
        self._size += len(data)
        if len(self._raw) < MAX_RAW:
            self._raw += data[: MAX_RAW - len(self._raw)]

    @property
    def at_boundary(self) -> bool:
        """Whether the stream read so far ends between commands: no command, and no image's data, waits for its
        rest (bytes of the relay's own may go to the printer here without landing inside one of the POS's)."""
        return not self._carry and not self.tokens._buf and not self.tokens._skip

    @property
    def position(self) -> int:
        """Stream offset up to which every byte has been read as a command or text (a command that has
        not all arrived yet starts here)."""
        return self.tokens._pos

    def gap(self) -> None:
        """Bytes of the stream were lost (the copy overflowed): the receipt in progress is damaged."""
        self._damaged = True

    def close(self) -> Captured | None:
        """The end of the stream: a receipt in progress (text without a cut) comes out, not cut."""
        for token in self.tokens.flush():
            self._guarded(token)
        self._absorb(self._carry)
        self._carry = b""
        if self._dropping:
            return None
        if self._failed is None:
            try:
                self._end_line()
            except Exception:  # noqa: BLE001 - a bug: its traceback goes with the failed receipt
                self._fail()
        if not self._lines and not self._size:
            return None
        return self._finish(self._fed, cut=False, end=self._fed)

    def _token(self, t: Token) -> None:
        if t.kind is Kind.TEXT:
            if self._line_state is None:
                self._line_state = _State(self.state.align, self.state.bold, self.state.size)
            if self._text_len < MAX_LINE:
                self._text.append((t.data[: MAX_LINE - self._text_len], self._codec()))
                self._text_len += len(t.data)
            else:
                self._damaged = True
        elif t.kind is Kind.LINE:
            self._end_line(blank=True)
        elif t.kind is Kind.CUT:
            self._end_line()
        else:
            self._command(t.data)

    def _codec(self) -> str:
        if self.state.kanji:
            return self.multibyte
        return CODE_PAGES.get(self.state.table, self.encoding) if self.state.table else self.encoding

    def _command(self, d: bytes) -> None:
        s = self.state
        if len(d) < 2:
            if d == b"\t":
                self._token(Token(Kind.TEXT, b"    ", 0, 0))
            return
        a, c, arg = d[0], d[1], d[2] if len(d) > 2 else 0
        if a == ESC:
            if c == 0x40:
                self.state = self._initial()
            elif c == 0x61:
                s.align = _ALIGN.get(arg, "left")
            elif c == 0x45 or c == 0x47:
                s.bold = bool(arg & 1)
            elif c == 0x21:
                s.bold = bool(arg & 0x08)
                s.size = (2 if arg & 0x20 else 1, 2 if arg & 0x10 else 1)
            elif c == 0x74:
                s.table = arg
        elif a == GS and c == 0x21:
            s.size = ((arg >> 4) + 1, (arg & 0x0F) + 1)
        elif a == FS:
            if c == 0x26:
                s.kanji = True
            elif c == 0x2E:
                s.kanji = False
            elif c == 0x43 and arg in (1, 49):  # FS C n: Kanji code system Shift_JIS
                self.multibyte = "cp932"

    def _end_line(self, blank: bool = False) -> None:
        if not self._text:
            if blank and self._lines:
                self._lines.append(PrintedLine(""))
            return
        text = "".join(data.decode(codec, errors="replace") for data, codec in _merge(self._text))
        st = self._line_state or self.state
        self._lines.append(PrintedLine(text.rstrip(), st.align, st.bold, st.size))
        self._text_total += len(text)
        self._text = []
        self._text_len = 0
        self._line_state = None

    def _finish(
        self, cut_offset: int, cut: bool, end: int, too_large: bool = False, init: bool = False
    ) -> Captured | None:
        """The receipt in progress, ended at stream offset ``end``; None when it is the rest of one that came out
        too large (skipped). A receipt ``too_large`` comes out with its lines freed, and its rest is skipped."""
        if self._dropping:
            self._reset_receipt(end)
            return None
        if too_large:
            self._lines, self._text, self._text_len = [], [], 0
        while self._lines and not self._lines[-1].text:
            self._lines.pop()
        got = Captured(
            tuple(self._lines),
            self._hash.hexdigest(),
            self._size,
            bytes(self._raw),
            cut,
            cut_offset,
            self._codec(),
            self.state.kanji,
            self.tokens.unknown - self._unknown,
            self._damaged,
            self._failed,
            too_large,
            init,
        )
        self._reset_receipt(end)
        self._dropping = too_large
        return got


def prints(token: Token) -> bool:
    """Whether ``token`` is part of what a receipt prints: not a status request or real-time command (``DLE EOT``,
    ``DLE ENQ``, ``DLE DC4``, ``GS r``, ``GS I``, ``GS a``, ``ESC v`` ...) nor the cash drawer's kick, which a POS
    sends or not as it likes (polling the printer between prints, opening the drawer for the sale and not for its
    reprint). A receipt's digest covers the rest."""
    return token.kind is not Kind.STATUS and not token.data.startswith(UNPRINTED)


def _merge(parts: list[tuple[bytes, str]]) -> Iterator[tuple[bytes, str]]:
    """Adjacent runs in one codec joined (a multibyte character may span two reads)."""
    data, codec = b"", ""
    for chunk, c in parts:
        if c == codec:
            data += chunk
            continue
        if data:
            yield data, codec
        data, codec = chunk, c
    if data:
        yield data, codec


def parse(
    stream: bytes, encoding: str = "cp437", multibyte: str = "cp932", kanji_default: bool = False
) -> list[Captured]:
    """Every receipt of a whole stream (the last one uncut if the stream ends without a cut)."""
    p = ReceiptParser(encoding, multibyte, kanji_default)
    got = p.feed(stream)
    last = p.close()
    return [*got, last] if last is not None and (last.lines or last.size) else got
