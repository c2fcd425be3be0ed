from __future__ import annotations

from pathlib import Path

import pytest

from terminal.credentials import card_uid_hash
from terminal.model import Card, EarnRule, Member, Status
from terminal.service import Service
from terminal.store import Store

KEY = b"k" * 32


def uid_hash(uid_hex: str) -> str:
    return card_uid_hash(KEY, bytes.fromhex(uid_hex))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "terminal.db")
    members = [
        Member("M-1", "Aiko", "gold", 100),
        Member("M-2", "Ben", "basic", 0),
        Member("M-3", "Dana", "basic", 5, Status.BLOCKED),
    ]
    cards = [
        Card(uid_hash("04000001"), "M-1"),
        Card(uid_hash("04000002"), "M-2", Status.BLOCKED),
        Card(uid_hash("04000003"), "M-3"),
        Card(uid_hash("04000004"), "M-404"),
    ]
    s.apply_changes(members, cards, [EarnRule("base", 1, 100)], cursor=7)
    yield s
    s.close()


@pytest.fixture
def service(store: Store) -> Service:
    return Service(store, "T-1", clock=lambda: 1_790_000_000.0)
