"""The local SQLite store: cache of members/cards/rules, the durable journal, sync state."""

from terminal.store.store import Store

__all__ = ["Store"]
