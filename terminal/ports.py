"""The protocols the core needs from the outside world; drivers, stores and clients implement them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from terminal.model import Card, CardRead, EarnRule, JournalEntry, Member, QrRead, ReaderEvent

CardSink = Callable[[CardRead], None]
ReaderSink = Callable[[ReaderEvent], None]
QrSink = Callable[[QrRead], None]
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


class SyncStore(Protocol):
    """What the sync client needs from the local store: the journal and the cache's write side."""

    def unpushed(self, limit: int) -> list[JournalEntry]: ...

    def mark_pushed(self, up_to_seq: int, at: str) -> int: ...

    def apply_changes(self, members: list[Member], cards: list[Card], rules: list[EarnRule], cursor: int) -> None: ...

    def state(self, key: str) -> str | None: ...

    def set_state(self, **values: str | None) -> None: ...
