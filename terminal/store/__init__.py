"""The local SQLite store: cache of members/cards/rules, the durable journal, sync state."""

from terminal.store.store import RESENT, Store

__all__ = ["RESENT", "Store"]
