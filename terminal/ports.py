"""The protocols the core needs from the outside world; drivers, stores and clients implement them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from terminal.model import Card, CardRead, EarnRule, JournalEntry, Member, QrRead, ReaderEvent

CardSink = Callable[[CardRead], None]
ReaderSink = Callable[[ReaderEvent], None]
QrSink = Callable[[QrRead], object]  # what it returns is for the caller who held the code up (sim)
UidHasher = Callable[[bytes], str]


class CardReader(Protocol):
    """A source of taps. ``start`` returns at once; events arrive on the sinks from the reader's thread."""

    name: str

    def start(self, on_card: CardSink, on_reader: ReaderSink) -> None: ...

    def stop(self) -> None: ...

    def readers(self) -> list[str]:
        """Names of the readers present right now."""
        ...


class QrScanner(Protocol):
    name: str

    def start(self, on_qr: QrSink, on_reader: ReaderSink) -> None: ...

    def stop(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


@dataclass(frozen=True, slots=True)
class CacheDocs:
    """Head-office documents of one pulled page, bodies as JSON text (their shape belongs to
    loyalty, coupons and credentials; the sync layer stores them as they come)."""

    rule_docs: list[tuple[str, str]] = field(default_factory=list)
    """(rule_id, body)"""
    coupons: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    """(coupon_id, member_id, body, uses counted by head office)"""
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    """(key_id, body, signature by head office's root key)"""
    revocations: list[tuple[str, str, str]] = field(default_factory=list)
    """(revocation_id "kind:subject", body, signature)"""
    device_certs: list[tuple[str, str]] = field(default_factory=list)
    """(cert_id hex, body): member devices' certificates, signed by head office's payment key"""
    deleted: list[tuple[str, str]] = field(default_factory=list)
    """(kind, id) tombstones: member, card, rule, rule_doc, coupon, key, revocation"""


class SyncStore(Protocol):
    """What the sync client needs from the local store: the journal and the cache's write side."""

    def unpushed(self, limit: int) -> list[JournalEntry]: ...

    def entries(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]: ...

    def mark_pushed(self, up_to_seq: int, at: str) -> int: ...

    recovering: bool
    """Rebuilt from a damaged file: nothing is recorded until ``finish_recovery``."""

    def held_seqs(self, first: int, last: int) -> set[int]: ...

    def max_seq(self) -> int: ...

    def finish_recovery(self, floor: int) -> None: ...

    def apply_changes(
        self,
        members: list[Member],
        cards: list[Card],
        rules: list[EarnRule],
        cursor: int,
        docs: CacheDocs | None = None,
    ) -> None: ...

    def bootstrap_rows(self, kind: str, rows: list[list[Any]], position: dict[str, str]) -> None:
        """Store one snapshot page (rows in ``sync.protocol.SNAPSHOT_COLUMNS`` order) and where the
        bootstrap got to, in one transaction."""
        ...

    def finish_bootstrap(self, version: int) -> None: ...

    def record_eod(self, day: str, first_seq: int, last_seq: int, totals: str, status: str, detail: str) -> None: ...

    def eod_first_seq(self, day: str) -> int | None: ...

    def state(self, key: str) -> str | None: ...

    def set_state(self, **values: str | None) -> None: ...
