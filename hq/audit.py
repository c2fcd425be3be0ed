"""The audit log: who changed what by hand, when, on what and why, in an append-only table where each record
is chained to the one before it by a hash. Every change made in the back office writes one, and so do the
changes an administrator makes through the admin API or the `hq` commands that go through one path for
all: blocking and unblocking (``hq.store.set_blocked``), top-ups (``hq.payments.topup``), erasures
(``hq.erasure.erase_member``) and stored campaigns (``hq.campaigns.put``).

    hash(n) = sha256( prev_hash(n) as hex + "\\n" + canonical JSON of {seq, at, actor, action, target,
                      reason, details} )            prev_hash(1) = 64 zeros

A record is written in the transaction of the change it describes, after the one-row ``audit_head`` is
locked (``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised already), so concurrent changes get
consecutive numbers and each chains to the one committed before it. ``verify`` walks the chain from the
start and names the first record whose content, number or link does not hold, and checks that the head
names the last record (records removed from the end). Whoever keeps the head hash ``verify`` prints can
later prove that nothing before it changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hq.db.engine import Db, Tx, utc_now
from terminal.canonical import canonical_json

GENESIS = "0" * 64
PAGE = 1000


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    at: str
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    records: int
    head: str
    broken: int | None = None
    """The number of the first record that does not hold (None when the chain holds)."""
    why: str = ""


def record_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, target: str, reason: str, details: Any
) -> str:
    """The hash of a record over its canonical bytes and the hash before it (pure)."""
    body = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "details": details,
    }
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(body)).hexdigest()


def append(tx: Tx, actor: str, action: str, target: str, reason: str, details: dict[str, Any] | None = None) -> Record:
    """Add a record in ``tx`` (the transaction of the change it describes)."""
    head = tx.one(f"SELECT seq, hash FROM audit_head WHERE id = 1{tx.for_update}")
    assert head is not None, "the audit head row is made by the migration"
    seq, prev = int(head[0]) + 1, str(head[1])
    at, shown = utc_now(), details or {}
    digest = record_hash(prev, seq, at, actor, action, target, reason, shown)
    tx.run(
        "INSERT INTO audit_log (seq, at, actor, action, target, reason, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, at, actor, action, target, reason, canonical_json(shown).decode(), prev, digest],
    )
    tx.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [seq, digest])
    return Record(seq, at, actor, action, target, reason, shown, prev, digest)


_COLUMNS = "seq, at, actor, action, target, reason, details, prev_hash, hash"


def _record(row: tuple[Any, ...]) -> Record:
    return Record(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        str(row[4]),
        str(row[5]),
        json.loads(str(row[6])),
        str(row[7]),
        str(row[8]),
    )


def recent(tx: Tx, limit: int = 100, before: int | None = None) -> list[Record]:
    """The newest records first (``before``: older than that number)."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        [before if before is not None else 2**62, limit],
    )
    return [_record(r) for r in rows]


def last_actor(tx: Tx, target: str, actions: tuple[str, ...]) -> str | None:
    """Who made the newest record of one of ``actions`` on ``target`` (None: no such record)."""
    kinds, params = tx.in_list("action", actions)
    row = tx.one(
        f"SELECT actor FROM audit_log WHERE target = ? AND {kinds} ORDER BY seq DESC LIMIT 1", [target, *params]
    )
    return None if row is None else str(row[0])


def _pages(db: Db, after: int = 0) -> Iterator[list[tuple[Any, ...]]]:
    """The records after number ``after``, a page at a time (each page its own read)."""
    while True:
        with db.read() as tx:
            rows = tx.all(f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", [after, PAGE])
        if not rows:
            return
        yield rows
        after = int(rows[-1][0])


def check(prev: str, expected_seq: int, row: tuple[Any, ...]) -> str:
    """Why a stored row does not hold after ``prev`` (empty when it does; pure)."""
    seq, at, actor, action, target, reason, details, prev_hash, digest = row
    if int(seq) != expected_seq:
        return f"record {expected_seq} is missing (found {seq})"
    if prev_hash != prev:
        return "its link to the record before does not match"
    try:
        shown = json.loads(str(details))
    except ValueError:
        return "its details are not JSON"
    if record_hash(prev, int(seq), str(at), str(actor), str(action), str(target), str(reason), shown) != digest:
        return "its content does not match its hash"
    return ""


def verify(db: Db) -> Verdict:
    """Walk the whole chain; the first record that breaks it, if any. A head read after the walk that names
    records beyond it (appended meanwhile: an append writes its record and the head in one transaction) has
    them walked too; only a walk that finds nothing more compares its end with the head."""
    prev, count = GENESIS, 0
    while True:
        walked = count
        for rows in _pages(db, count):
            for row in rows:
                why = check(prev, count + 1, row)
                if why:
                    return Verdict(False, count, prev, count + 1, why)
                prev, count = str(row[8]), count + 1
        with db.read() as tx:
            head = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        if head is None:
            return Verdict(False, count, prev, 1, "the head is missing")
        if int(head[0]) <= count or count == walked:
            return _against_head(count, prev, int(head[0]), str(head[1]))


def _against_head(count: int, prev: str, head_seq: int, head_hash: str) -> Verdict:
    """The log's end against the head: records missing from the end, records the head does not know of
    (appended behind its back), or a last record replaced."""
    if head_seq != count:
        return Verdict(
            False, count, prev, min(head_seq, count) + 1, f"the head names record {head_seq}, the log ends at {count}"
        )
    if head_hash != prev:
        return Verdict(False, count, prev, count, "the last record is not the one the head names")
    return Verdict(True, count, prev)


__all__ = ["GENESIS", "Record", "Verdict", "append", "check", "last_actor", "record_hash", "recent", "verify"]
