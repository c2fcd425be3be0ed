"""Rows read out of a damaged SQLite file page by page, where SQLite itself can no longer reach them.

SQLite finds a row from the table's root page down; a truncated file, one overwritten interior page or a
lost schema page hides every row below it, though the leaf pages holding them are intact. This reads the
file format directly (https://www.sqlite.org/fileformat2.html): every table b-tree leaf page of the main
file, with the pages the WAL committed laid over it, is parsed on its own, and every cell that decodes is a
row. A page or a cell that does not parse is skipped; nothing here writes.

The sqlite3 shell's ``.recover`` does the same, but needs the ``sqlite_dbpage`` virtual table, which
Debian's SQLite is built without; hence this reader. The rebuild uses it for the journal only (the rows
this till alone holds); it prefers whatever SQL can still read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"SQLite format 3\x00"
TABLE_LEAF = 0x0D
WAL_MAGIC = (0x377F0682, 0x377F0683)
_MAX_OVERFLOW = 10_000  # pages in one overflow chain: beyond this the chain loops or is garbage


@dataclass(frozen=True, slots=True)
class Cell:
    """One row found on a table leaf page: where, its rowid, and its column values in schema order."""

    page: int
    rowid: int
    values: tuple[Any, ...]


class Bad(Exception):
    """A page or cell that does not decode: skipped."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """SQLite's varint at ``pos``: (value, position after it); 1 to 9 bytes, big-endian 7-bit groups."""
    value = 0
    for i in range(9):
        if pos + i >= len(buf):
            raise Bad("varint runs off the page")
        byte = buf[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise Bad("unreachable")


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _value(serial: int, body: bytes, pos: int) -> tuple[Any, int]:
    if serial == 0:
        return None, pos
    if serial in _INT_SIZES:
        size = _INT_SIZES[serial]
        if pos + size > len(body):
            raise Bad("integer runs off the record")
        return int.from_bytes(body[pos : pos + size], "big", signed=True), pos + size
    if serial == 7:
        if pos + 8 > len(body):
            raise Bad("float runs off the record")
        return struct.unpack(">d", body[pos : pos + 8])[0], pos + 8
    if serial in (8, 9):
        return serial - 8, pos
    if serial < 12:
        raise Bad(f"reserved serial type {serial}")
    size = (serial - 12) // 2
    if pos + size > len(body):
        raise Bad("text or blob runs off the record")
    raw = body[pos : pos + size]
    if serial % 2 == 0:
        return bytes(raw), pos + size
    try:
        return raw.decode("utf-8"), pos + size
    except UnicodeDecodeError as exc:
        raise Bad("text is not UTF-8") from exc


def record(payload: bytes) -> tuple[Any, ...]:
    """The column values of a record (its header of serial types, then the values)."""
    header_size, pos = varint(payload, 0)
    if header_size > len(payload) or header_size < pos:
        raise Bad("record header size is impossible")
    serials = []
    while pos < header_size:
        serial, pos = varint(payload, pos)
        serials.append(serial)
    values, at = [], header_size
    for serial in serials:
        value, at = _value(serial, payload, at)
        values.append(value)
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Image:
    """The pages of a database as they were last committed: the main file with the WAL laid over it."""

    pages: dict[int, bytes]
    page_size: int
    usable: int

    def page(self, number: int) -> bytes:
        found = self.pages.get(number)
        if found is None:
            raise Bad(f"page {number} is not in the file")
        return found


def _header(data: bytes) -> tuple[int, int]:
    """(page size, reserved bytes per page) from the file header; 4096 and 0 when it is unreadable."""
    if len(data) < 100 or data[:16] != MAGIC:
        return 4096, 0
    size = struct.unpack(">H", data[16:18])[0]
    size = 65536 if size == 1 else size
    if size < 512 or size > 65536 or size & (size - 1):
        return 4096, 0
    return size, data[20]


def _wal_checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _wal_pages(path: Path, page_size: int) -> dict[int, bytes]:
    """The pages the WAL committed (each at its latest committed version); frames after the last commit,
    or after the first frame whose salt or checksum is wrong, do not count."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if len(data) < 32:
        return {}
    magic, _, wal_page, _, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:32])
    if magic not in WAL_MAGIC or wal_page != page_size:
        return {}
    big = magic == WAL_MAGIC[1]
    s0, s1 = _wal_checksum(data[:24], 0, 0, big)
    if (s0, s1) != (c0, c1):
        return {}
    committed: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    at = 32
    while at + 24 + page_size <= len(data):
        number, commit, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", data[at : at + 24])
        page = data[at + 24 : at + 24 + page_size]
        s0, s1 = _wal_checksum(data[at : at + 8] + page, s0, s1, big)
        if (f_salt1, f_salt2) != (salt1, salt2) or (s0, s1) != (f0, f1):
            break
        pending[number] = page
        if commit:
            committed.update(pending)
            pending = {}
        at += 24 + page_size
    return committed


def image(path: Path) -> Image:
    """The database at ``path`` as its last commit left it, as far as its bytes go."""
    data = path.read_bytes()
    page_size, reserved = _header(data)
    pages = {n + 1: data[n * page_size : (n + 1) * page_size] for n in range(len(data) // page_size)}
    pages.update(_wal_pages(path.with_name(path.name + "-wal"), page_size))
    return Image(pages, page_size, page_size - reserved)


def _payload(img: Image, page: bytes, pos: int, size: int) -> bytes:
    """A cell's whole payload: its local part on the page, then its overflow chain."""
    usable = img.usable
    most = usable - 35
    if size <= most:
        local = size
    else:
        least = ((usable - 12) * 32 // 255) - 23
        local = least + ((size - least) % (usable - 4))
        local = local if local <= most else least
    if pos + local > len(page):
        raise Bad("cell runs off the page")
    if local == size:
        return page[pos : pos + local]
    return _chain(img, page, pos, local, size)


def leaf_cells(img: Image, number: int) -> Iterator[Cell]:
    """The rows on table leaf page ``number`` (nothing for any other kind of page)."""
    page = img.page(number)
    start = 100 if number == 1 else 0
    if len(page) < start + 8 or page[start] != TABLE_LEAF:
        return
    count = int.from_bytes(page[start + 3 : start + 5], "big")
    pointers = start + 8
    if pointers + 2 * count > len(page):
        return
    for i in range(count):
        at = int.from_bytes(page[pointers + 2 * i : pointers + 2 * i + 2], "big")
        try:
            size, pos = varint(page, at)
            rowid, pos = varint(page, pos)
            yield Cell(number, rowid, record(_payload(img, page, pos, size)))
        except Bad:
            continue


def scan(path: Path) -> Iterator[Cell]:
    """Every row on every table leaf page of the database at ``path`` (tables told apart by the caller)."""
    img = image(path)
    for number in sorted(img.pages):
        try:
            yield from leaf_cells(img, number)
        except Bad:
            continue


# -- an index's entries: what rows a table had, even when their own pages are gone ------------------

INDEX_LEAF, INDEX_INTERIOR = 0x0A, 0x02


def schema(img: Image) -> list[tuple[Any, ...]]:
    """The rows of ``sqlite_master`` that still decode: (type, name, tbl_name, rootpage, sql)."""
    rows: list[tuple[Any, ...]] = []
    for number in sorted(img.pages):
        try:
            for cell in leaf_cells(img, number):
                v = cell.values
                if len(v) == 5 and v[0] in ("table", "index") and isinstance(v[1], str) and isinstance(v[3], int):
                    rows.append(v)
        except Bad:
            continue
    return rows


def _index_payload(img: Image, page: bytes, pos: int, size: int) -> bytes:
    usable = img.usable
    most = ((usable - 12) * 64 // 255) - 23
    if size <= most:
        if pos + size > len(page):
            raise Bad("cell runs off the page")
        return page[pos : pos + size]
    least = ((usable - 12) * 32 // 255) - 23
    local = least + ((size - least) % (usable - 4))
    local = local if local <= most else least
    return _chain(img, page, pos, local, size)


def _chain(img: Image, page: bytes, pos: int, local: int, size: int) -> bytes:
    if pos + local + 4 > len(page):
        raise Bad("overflow pointer runs off the page")
    parts, got = [page[pos : pos + local]], local
    following = int.from_bytes(page[pos + local : pos + local + 4], "big")
    for _ in range(_MAX_OVERFLOW):
        if got >= size or following == 0:
            break
        chunk = img.page(following)
        following = int.from_bytes(chunk[:4], "big")
        take = min(size - got, img.usable - 4)
        parts.append(chunk[4 : 4 + take])
        got += take
    if got != size:
        raise Bad("overflow chain ends early")
    return b"".join(parts)


def index_entries(img: Image, root: int) -> list[tuple[Any, ...]]:
    """Every entry of the index b-tree at ``root`` that can be reached (an entry ends with its rowid)."""
    found: list[tuple[Any, ...]] = []
    todo, seen = [root], set[int]()
    while todo and len(seen) < len(img.pages) + 1:
        number = todo.pop()
        if number in seen:
            continue
        seen.add(number)
        try:
            page = img.page(number)
        except Bad:
            continue
        start = 100 if number == 1 else 0
        kind = page[start] if len(page) > start else 0
        if kind not in (INDEX_LEAF, INDEX_INTERIOR):
            continue
        interior = kind == INDEX_INTERIOR
        count = int.from_bytes(page[start + 3 : start + 5], "big")
        pointers = start + (12 if interior else 8)
        if interior:
            todo.append(int.from_bytes(page[start + 8 : start + 12], "big"))
        for i in range(count):
            at = int.from_bytes(page[pointers + 2 * i : pointers + 2 * i + 2], "big")
            try:
                if interior:
                    todo.append(int.from_bytes(page[at : at + 4], "big"))
                    at += 4
                size, pos = varint(page, at)
                found.append(record(_index_payload(img, page, pos, size)))
            except (Bad, IndexError):
                continue
    return found
