"""A flash drop of N = 10 coupons is never redeemed more than 10 times, even while tills are offline.

A real head-office process (SQLite and PostgreSQL) and three tills (the till's own store, service and sync
client): the tills pull their allocations, head office goes down, each till sells with the pool's coupon until
it refuses; back online the remainder is granted and the drop reaches exactly 10. A void gives a unit back;
a stolen till credential pushing more redemptions than its allocation is flagged, replays count nothing twice,
and it is granted nothing more."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.store import HqStore
from sync.client import HqUnreachable, SyncClient
from sync.protocol import WireEntry
from terminal.errors import Code, Rejected
from terminal.model import Basket, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess, tillpoint
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture

TILLS = {"T-A": "S-1", "T-B": "S-1", "T-C": "S-2"}
N, CHUNK = 10, 3
FLASH = {"coupon_id": "FLASH", "kind": "amount_off", "value": 200, "pool": "DROP", "text": "Flash drop"}
BASKET = Basket((Line("ITEM", 1, 1000),))
REFUSED = Code.COUPON_ALLOCATION_USED.value


@pytest.fixture(params=["sqlite", "postgres"])
def hq_proc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HqProcess]:
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    process = HqProcess(tmp_path / "hq", db)
    process.start()
    yield process
    process.kill()


class Till:
    def __init__(self, root: Path, terminal_id: str, url: str, token: str) -> None:
        self.terminal_id = terminal_id
        self.store = Store.open(root / terminal_id / "terminal.db")
        self.client = SyncClient(self.store, terminal_id, url, token, timeout=5)
        self.service = Service(self.store, terminal_id, store_id=TILLS[terminal_id])

    def sell(self) -> str:
        """One anonymous sale presenting the pool's coupon: its txn id, or why the coupon was refused."""
        quote = self.service.quote(None, BASKET, ["FLASH"])
        if quote.refused:
            return dict(quote.refused)["FLASH"]
        assert quote.coupons == ("FLASH",)
        return self.service.commit(quote).txn_id

    def sell_until_refused(self) -> list[str]:
        sold = []
        for _ in range(N + 1):
            result = self.sell()
            if result == REFUSED:
                return sold
            sold.append(result)
        raise AssertionError(f"{self.terminal_id} sold past the whole drop")

    def allowed(self) -> int:
        return self.store.pool_allocations().get("DROP", (0, 0))[0]

    def close(self) -> None:
        self.client.close()
        self.store.close()


def pool(hq_proc: HqProcess) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """Head office's figures: (allocated, redeemed chain-wide, (allowed, used) by till)."""
    store = HqStore(hq_proc.db)
    try:
        state = store.pool_state("DROP")
    finally:
        store.close()
    return state.allocated, state.used, {a.terminal_id: (a.allowed, a.used) for a in state.allocations}


def pool_items(hq_proc: HqProcess, everything: bool = False) -> list[tuple[str, str | None]]:
    """Head office's items about pools (``everything``: all of them)."""
    store = HqStore(hq_proc.db)
    try:
        return sorted((i.reason, i.txn_id) for i in store.items() if everything or i.reason.startswith("pool_"))
    finally:
        store.close()


def test_a_flash_drop_is_never_redeemed_more_than_its_quantity(hq_proc: HqProcess, tmp_path: Path) -> None:
    admin = HqStore(hq_proc.db)
    tokens = {t: admin.add_terminal(t, s) for t, s in TILLS.items()}
    admin.put_coupon(FLASH)
    admin.create_pool("DROP", N, chunk=CHUNK)
    admin.close()
    tills = {t: Till(tmp_path, t, hq_proc.url, tokens[t]) for t in TILLS}
    try:
        # Online: each till pulls the coupon and its first allocation, a chunk each (3 + 3 + 3 of 10).
        for till in tills.values():
            till.client.sync_once()
            assert till.allowed() == CHUNK
        assert pool(hq_proc)[0] == 3 * CHUNK

        # Offline: head office is down; each till sells until its allocation is used, then refuses.
        hq_proc.kill()
        sold = {t: till.sell_until_refused() for t, till in tills.items()}
        for till in tills.values():
            with pytest.raises(HqUnreachable):
                till.client.sync_once()
        assert {t: len(s) for t, s in sold.items()} == dict.fromkeys(TILLS, CHUNK)
        assert sum(map(len, sold.values())) <= N

        # Back online: what was sold is counted; the one unit left goes to the first till to ask for it.
        hq_proc.start()
        for till in tills.values():
            till.client.sync_once()
        allocated, redeemed, held = pool(hq_proc)
        assert (allocated, redeemed) == (N, 3 * CHUNK)
        assert held == {"T-A": (CHUNK + 1, CHUNK), "T-B": (CHUNK, CHUNK), "T-C": (CHUNK, CHUNK)}
        sold["T-A"] += tills["T-A"].sell_until_refused()
        assert len(sold["T-A"]) == CHUNK + 1
        assert tills["T-B"].sell() == REFUSED and tills["T-C"].sell() == REFUSED
        for till in tills.values():
            till.client.sync_once()
        assert pool(hq_proc)[:2] == (N, N)  # exactly N, never more
        assert all(till.sell() == REFUSED for till in tills.values())

        # A void gives its unit back to the till that redeemed it; two stale quotes cannot both take it.
        tills["T-B"].service.void(sold["T-B"][0])
        tills["T-B"].client.sync_once()
        assert pool(hq_proc)[1] == N - 1
        quotes = [tills["T-B"].service.quote(None, BASKET, ["FLASH"]) for _ in range(2)]
        assert all(q.coupons == ("FLASH",) for q in quotes)
        results: list[str] = []
        start = threading.Barrier(2)

        def commit(n: int) -> None:
            start.wait(timeout=10)
            try:
                results.append(tills["T-B"].service.commit(quotes[n]).txn_id)
            except Rejected as exc:
                results.append(exc.code.value)

        threads = [threading.Thread(target=commit, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(results) == 2 and results.count(REFUSED) == 1
        for till in tills.values():
            till.client.sync_once()
        assert pool(hq_proc)[:2] == (N, N)
        assert pool_items(hq_proc, everything=True) == []  # honest tills: nothing to reconcile, prices agree
        shown = json.loads(hq_proc.cli("pool", "show", "DROP", "--json"))  # `tillpoint hq pool show`
        assert (shown["quantity"], shown["allocated"], shown["used"]) == (N, N, N)
        assert {a["terminal_id"]: a["allowed"] for a in shown["allocations"]} == {"T-A": 4, "T-B": 3, "T-C": 3}
    finally:
        for till in tills.values():
            till.close()


def test_a_stolen_till_credential_is_flagged_and_granted_nothing_more(hq_proc: HqProcess, tmp_path: Path) -> None:
    admin = HqStore(hq_proc.db)
    tokens = {t: admin.add_terminal(t, s) for t, s in TILLS.items()}
    admin.put_coupon(FLASH)
    admin.close()
    hq_proc.cli("pool", "create", "DROP", str(N), "--chunk", str(CHUNK))  # `tillpoint hq pool create`
    till = Till(tmp_path, "T-C", hq_proc.url, tokens["T-C"])
    try:
        till.client.sync_once()
        assert till.allowed() == CHUNK

        # Whoever holds T-C's credential pushes five redemptions it was never allotted room for.
        forged = [
            WireEntry(
                terminal_id="T-C",
                seq=1000 + n,
                txn_id=str(uuid.uuid4()),
                kind="sale",
                payload=entries.sale(None, 1000, store_id="S-2", coupons=["FLASH"]),
                created_at=utc_iso(time.time()),
            ).model_dump()
            for n in range(CHUNK + 2)
        ]

        def push() -> dict[str, int]:
            reply = httpx.post(
                f"{hq_proc.url}/v1/journal",
                json={"terminal_id": "T-C", "entries": forged},
                headers={"Authorization": f"Bearer {tokens['T-C']}"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            body: dict[str, int] = reply.json()
            return body

        assert push()["stored"] == CHUNK + 2
        assert push()["duplicates"] == CHUNK + 2  # a replay counts nothing twice
        allocated, redeemed, held = pool(hq_proc)
        assert (redeemed, held["T-C"]) == (CHUNK + 2, (CHUNK, CHUNK + 2))
        beyond = {x["txn_id"] for x in forged[CHUNK:]}
        flagged = pool_items(hq_proc)
        assert {(reason, txn) for reason, txn in flagged} == {("pool_allocation_exceeded", t) for t in beyond}

        # Pulling with the credential brings no more allocation; the other tills' share is still theirs.
        till.client.sync_once()
        assert pool(hq_proc)[2]["T-C"] == (CHUNK, CHUNK + 2)
        assert till.sell() == REFUSED
        other = Till(tmp_path, "T-A", hq_proc.url, tokens["T-A"])
        try:
            other.client.sync_once()
            assert other.allowed() == CHUNK
        finally:
            other.close()
        assert pool(hq_proc)[0] == 2 * CHUNK <= N
        lowered = tillpoint("hq", "pool", "create", "DROP", str(CHUNK), "--db", hq_proc.db)
        assert lowered.returncode != 0 and "pool_below_allocated" in lowered.stderr + lowered.stdout
    finally:
        till.close()
