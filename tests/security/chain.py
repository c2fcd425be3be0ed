"""A chain to attack: a real head-office process holding the chain's card keys, its admin, two stores
with a till each, members with points, stored value and a secure card, and a member's phone.

The tills are the till's own code (store, service, sync client, online confirmation) talking HTTP to
head office; the attacker is whoever holds a till's credential and pushes what it likes."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import payments
from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from sync.memberapp import MemberApp
from sync.protocol import ReconItem, WireEntry
from terminal import payments as pay
from terminal.credentials import card_uid_hash
from terminal.identity import Identified
from terminal.model import CardRead, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.hq import HqProcess
from tests.vcard import Ntag424

SUN_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
AIKO_UID = bytes.fromhex("04A1B2C3D4E511")
WIDE = pay.RiskLimits(per_transaction=0, per_member_day=0, terminal_total=0)
STORES = {"T-A": "S-A", "T-B": "S-B"}


@dataclass
class Balance:
    points: int
    stored_value: int


@dataclass
class Chain:
    hq: HqProcess
    admin: str
    tokens: dict[str, str]
    phone: MemberApp
    card: Ntag424
    root: Path
    seqs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORES, 0))

    @property
    def uid_hash(self) -> str:
        return card_uid_hash(self.hq.key, AIKO_UID)

    def balance(self, member_id: str = "M-1") -> Balance:
        store = HqStore(self.hq.db)
        try:
            found = store.member(member_id)
        finally:
            store.close()
        assert found is not None
        return Balance(found.points, found.stored_value)

    def items(self, **params: str) -> list[ReconItem]:
        reply = httpx.get(f"{self.hq.url}/v1/admin/items", params=params, timeout=10, headers=self.admin_headers)
        assert reply.status_code == 200, reply.text
        return [ReconItem.model_validate(i) for i in reply.json()]

    def reasons(self) -> set[tuple[str, bool]]:
        return {(i.reason.value, i.quarantined) for i in self.items()}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def push(
        self,
        terminal_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        token: str | None = None,
        txn_id: str | None = None,
    ) -> httpx.Response:
        """What a stolen till credential sends: any kind, any payload, as the next entry of that till."""
        self.seqs[terminal_id] += 1
        entry = WireEntry(
            terminal_id=terminal_id,
            seq=self.seqs[terminal_id],
            txn_id=txn_id or str(uuid.uuid4()),
            kind=kind,
            payload=payload,
            created_at=utc_iso(time.time()),
        )
        return httpx.post(
            f"{self.hq.url}/v1/journal",
            json={"terminal_id": terminal_id, "entries": [entry.model_dump()]},
            headers={"Authorization": f"Bearer {token or self.tokens[terminal_id]}"},
            timeout=10,
        )

    def effect(self, txn_id: str) -> str:
        store = HqStore(self.hq.db)
        try:
            with store.db.read() as tx:
                row = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [txn_id])
        finally:
            store.close()
        return str(row[0]) if row else "absent"


@dataclass
class Till:
    terminal_id: str
    store: Store
    client: SyncClient
    service: Service

    def tap(self, url: str) -> Identified:
        """The member's secure card on this till's reader, carrying ``url`` (its SUN message)."""
        assert self.service.hash_uid is not None
        read = CardRead("pcsc:test", "iso14443a", self.service.hash_uid(AIKO_UID), sun=url, at=time.monotonic())
        return self.service.identify(read)

    def offline(self) -> None:
        self.store.set_state(offline_since=utc_iso(time.time() - 5))
        self.service.confirm_online = None

    def close(self) -> None:
        self.client.close()
        self.store.close()


def open_till(chain: Chain, terminal_id: str, limits: pay.RiskLimits = WIDE) -> Till:
    store = Store.open(chain.root / terminal_id / "terminal.db")
    client = SyncClient(store, terminal_id, chain.hq.url, chain.tokens[terminal_id], timeout=5)
    client.sync_once()
    service = Service(
        store,
        terminal_id,
        store_id=STORES[terminal_id],
        limits=limits,
        sun_master_key=SUN_MASTER,
        hash_uid=lambda uid: card_uid_hash(chain.hq.key, uid),
    )
    service.confirm_online = confirmer(client)
    return Till(terminal_id, store, client, service)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    (tmp_path / "sun.key").write_bytes(SUN_MASTER)
    hq = HqProcess(tmp_path, extra=("--sun-key-file", str(tmp_path / "sun.key")))
    admin_store = HqStore(hq.db)  # head office's administration, before its server starts
    try:
        tokens = {t: admin_store.add_terminal(t, s) for t, s in STORES.items()}
        admin = admin_store.add_admin("Mio")
        admin_store.upsert_member("M-1", "Aiko", "gold", 1000)
        admin_store.upsert_member("M-2", "Ben", "basic", 500)
        admin_store.upsert_card(card_uid_hash(hq.key, AIKO_UID), "M-1")
        payments.topup(admin_store, "M-1", 5000, "Mio")
        payments.topup(admin_store, "M-2", 1000, "Mio")
        member_token = payments.member_token(admin_store, "M-1")
    finally:
        admin_store.close()
    yield from started(hq, admin, tokens, member_token, tmp_path)


def started(hq: HqProcess, admin: str, tokens: dict[str, str], member_token: str, root: Path) -> Iterator[Chain]:
    """Head office's server started on the database set up, Aiko's phone registered with it: the chain, until
    the fixture ends (then head office is killed)."""
    hq.start()
    phone = MemberApp("M-1", root / "phone")
    phone.register(hq.url, member_token)
    try:
        yield Chain(hq, admin, tokens, phone, Ntag424(AIKO_UID, SUN_MASTER), root)
    finally:
        hq.kill()


@pytest.fixture
def tills(chain: Chain) -> Iterator[tuple[Till, Till]]:
    pair = (open_till(chain, "T-A"), open_till(chain, "T-B"))
    yield pair
    for till in pair:
        till.close()


def today_local() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
