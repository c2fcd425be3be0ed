"""Flash-drop pools at head office (hq/pools.py): the grant arithmetic (pure), allocations granted at pull
under the invariant "allocated <= quantity", and redemptions counted at ingest, once, given back by a void,
flagged beyond a till's allocation or the pool's quantity. The storage tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hq import campaigns, pools, segments
from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import ErrorCode, Reason, WireEntry
from tests.fixtures import entries

CREATED = "2026-03-01T10:00:00.000Z"

# -- pure: the arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "tills", "chunk"),
    [(300, 10, 7), (300, 1, 75), (10, 3, 1), (1, 50, 1), (100_000, 2, pools.MAX_DEFAULT_CHUNK), (40, 0, 10)],
)
def test_the_default_chunk_is_a_quarter_share_per_till_capped(quantity: int, tills: int, chunk: int) -> None:
    assert pools.default_chunk(quantity, tills) == chunk


@pytest.mark.parametrize(
    ("quantity", "chunk", "allocated", "allowed", "used", "more"),
    [
        (10, 4, 0, 0, 0, 4),  # a first grant: a chunk
        (10, 4, 8, 4, 2, 0),  # headroom 2 is half a chunk: not yet
        (10, 4, 8, 4, 3, 2),  # headroom 1: back up to a chunk of headroom, within what is left (2)
        (10, 4, 4, 4, 3, 3),  # headroom 1: back up to a chunk of headroom
        (10, 4, 10, 4, 4, 0),  # everything is allocated
        (10, 4, 9, 4, 4, 1),  # never beyond the quantity
        (10, 4, 4, 4, 6, 0),  # redeemed beyond its allocation: nothing more
        (10, 1, 3, 1, 1, 1),  # chunk 1: one at a time, when the last is used
        (10, 1, 3, 1, 0, 0),
    ],
)
def test_top_up(quantity: int, chunk: int, allocated: int, allowed: int, used: int, more: int) -> None:
    assert pools.top_up(quantity, chunk, allocated, allowed, used) == more


def test_a_top_up_never_takes_the_sum_past_the_quantity() -> None:
    for chunk in range(1, 12):
        for allocated in range(0, 12):
            for allowed in range(0, allocated + 1):
                for used in range(0, allowed + 3):
                    more = pools.top_up(11, chunk, allocated, allowed, used)
                    assert 0 <= more <= chunk and allocated + more <= max(11, allocated)


def test_the_pool_of_a_coupon_document() -> None:
    assert pools.pool_of('{"pool": "DROP-1"}') == "DROP-1"
    assert pools.pool_of('{"kind": "amount_off"}') is None
    assert pools.pool_of('{"pool": 7}') is None
    assert pools.pool_of("not json") is None


# -- head office's tables, on both engines ------------------------------------------------------------------


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))
    for n in range(1, 4):
        store.add_terminal(f"T{n}", "S1", f"t{n}")
    store.upsert_member("M-1", "Aiko", "gold", 0)
    store.put_coupon({"coupon_id": "FLASH", "kind": "amount_off", "value": 100, "pool": "DROP"})
    store.put_coupon({"coupon_id": "PLAIN", "kind": "amount_off", "value": 100})
    yield store
    store.close()


def sale(terminal: str, seq: int, coupons: tuple[str, ...] = ("FLASH",), kind: str = "sale", **more: Any) -> WireEntry:
    payload = (
        entries.refund(more["original_txn"], "M-1", void=True)
        if kind == "void"
        else entries.sale("M-1", coupons=coupons)
    )
    return WireEntry(
        terminal_id=terminal, seq=seq, txn_id=f"{terminal}-{seq}", kind=kind, payload=payload, created_at=CREATED
    )


def held(hq: HqStore, pool_id: str = "DROP") -> dict[str, tuple[int, int]]:
    return {a.terminal_id: (a.allowed, a.used) for a in hq.pool_state(pool_id).allocations}


def reasons(hq: HqStore) -> list[tuple[str, str | None]]:
    return sorted((i.reason, i.txn_id) for i in hq.items() if i.reason.startswith("pool_"))


def test_create_is_idempotent_and_refuses_to_go_below_what_is_allocated(hq: HqStore) -> None:
    first = hq.create_pool("DROP", 10, chunk=4)
    assert (first.quantity, first.chunk, first.allocated, first.used) == (10, 4, 0, 0)
    assert hq.create_pool("DROP", 10) == first
    hq.grant_pools("T1")
    hq.grant_pools("T2")
    with pytest.raises(pools.PoolRefused) as info:
        hq.create_pool("DROP", 7)
    assert info.value.code is ErrorCode.POOL_BELOW_ALLOCATED
    assert hq.create_pool("DROP", 8).quantity == 8  # down to what is allocated is fine
    assert hq.create_pool("DROP", 20).quantity == 20
    for bad in ({"quantity": 0}, {"quantity": 5, "chunk": 6}, {"quantity": 5, "chunk": 0}):
        with pytest.raises(pools.PoolRefused) as info:
            hq.create_pool("OTHER", **bad)
        assert info.value.code is ErrorCode.POOL_INVALID


def test_the_default_chunk_counts_the_registered_tills(hq: HqStore) -> None:
    assert hq.create_pool("BIG", 300).chunk == 300 // (4 * 3)


def test_grants_top_up_to_the_quantity_and_never_past_it(hq: HqStore) -> None:
    hq.create_pool("DROP", 10, chunk=4)
    assert [(a.pool_id, a.allowed, a.used) for a in hq.grant_pools("T1")] == [("DROP", 4, 0)]
    assert hq.grant_pools("T1")[0].allowed == 4  # headroom 4: nothing more
    hq.grant_pools("T2")
    hq.grant_pools("T3")
    assert held(hq) == {"T1": (4, 0), "T2": (4, 0), "T3": (2, 0)}
    hq.ingest("T1", [sale("T1", n) for n in range(1, 5)])
    assert hq.grant_pools("T1")[0].allowed == 4  # all allocated: nothing left to grant
    state = hq.pool_state("DROP")
    assert (state.allocated, state.used) == (10, 4)


def test_a_closed_pool_grants_nothing_and_is_no_longer_sent(hq: HqStore) -> None:
    hq.create_pool("DROP", 10, chunk=4)
    hq.grant_pools("T1")
    assert hq.close_pool("DROP") and not hq.close_pool("DROP")
    assert hq.grant_pools("T1") == [] and hq.grant_pools("T2") == []
    assert held(hq) == {"T1": (4, 0)}


def test_ingest_counts_each_redemption_once_and_a_void_gives_it_back(hq: HqStore) -> None:
    hq.create_pool("DROP", 10, chunk=2)
    hq.grant_pools("T1")
    batch = [sale("T1", 1), sale("T1", 2, coupons=("PLAIN",)), sale("T1", 3)]
    hq.ingest("T1", batch)
    hq.ingest("T1", batch)  # a replayed push
    assert held(hq) == {"T1": (2, 2)} and hq.pool_state("DROP").used == 2
    hq.ingest("T1", [sale("T1", 4, kind="void", original_txn="T1-1")])
    hq.ingest("T1", [sale("T1", 4, kind="void", original_txn="T1-1")])  # replayed too
    assert held(hq) == {"T1": (2, 1)} and hq.pool_state("DROP").used == 1
    assert reasons(hq) == []


def test_redemptions_beyond_the_allocation_are_flagged_and_earn_no_more(hq: HqStore) -> None:
    """A stolen till credential pushes more redemptions than the till was granted: each one beyond is an
    item, and the till gets no further allocation (the other tills' share stays theirs)."""
    hq.create_pool("DROP", 10, chunk=2)
    hq.grant_pools("T1")
    hq.ingest("T1", [sale("T1", n) for n in range(1, 6)])
    assert reasons(hq) == [(Reason.POOL_ALLOCATION_EXCEEDED.value, f"T1-{n}") for n in (3, 4, 5)]
    assert hq.grant_pools("T1")[0].allowed == 2
    assert held(hq) == {"T1": (2, 5)}
    hq.grant_pools("T2")
    assert held(hq)["T2"] == (2, 0)


def test_a_till_never_granted_is_flagged_for_every_redemption(hq: HqStore) -> None:
    hq.create_pool("DROP", 10, chunk=2)
    hq.ingest("T3", [sale("T3", 1)])
    assert reasons(hq) == [(Reason.POOL_ALLOCATION_EXCEEDED.value, "T3-1")]


def test_uses_chain_wide_beyond_the_quantity_are_flagged(hq: HqStore) -> None:
    hq.create_pool("DROP", 2, chunk=1)
    for t in ("T1", "T2"):
        hq.grant_pools(t)
    hq.ingest("T1", [sale("T1", 1)])
    hq.ingest("T2", [sale("T2", 1)])
    hq.ingest("T3", [sale("T3", 1)])  # never granted: beyond its allocation and beyond the quantity
    assert reasons(hq) == [
        (Reason.POOL_ALLOCATION_EXCEEDED.value, "T3-1"),
        (Reason.POOL_OVERUSED.value, "T3-1"),
    ]


def test_concurrent_grants_never_allocate_past_the_quantity(pg_url: str) -> None:
    """Many tills pull at once through several head-office stores (several processes' connection pools)
    on PostgreSQL: the pool row's lock keeps the sum of allocations at most the quantity."""
    stores = [HqStore(pg_url, Settings()) for _ in range(3)]
    tills = [f"T{n:02}" for n in range(24)]
    for t in tills:
        stores[0].add_terminal(t, "S1", f"tok-{t}")
    stores[0].create_pool("RUSH", 50, chunk=3)
    start = threading.Barrier(len(tills))
    errors: list[BaseException] = []

    def pull(n: int) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(3):
                stores[n % len(stores)].grant_pools(tills[n])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull, args=(n,)) for n in range(len(tills))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    state = stores[0].pool_state("RUSH")
    assert state.allocated == 50  # everything handed out, not one unit more
    assert all(a.allowed <= 3 for a in state.allocations)
    for store in stores:
        store.close()


def test_a_flash_drop_campaign_creates_its_pool(hq: HqStore) -> None:
    """A campaign with a quantity issues coupons naming the pool ``campaign:<id>``: storing it creates that
    pool, so tills are granted allocations of it; its quantity cannot go below what tills hold."""
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**9}}, "test")
    spec = {
        "name": "Flash",
        "segment": "everyone",
        "variants": [{"variant": "v", "coupon": {"kind": "amount_off", "value": 100}}],
        "schedule": {"kind": "daily", "at": "09:00"},
        "quantity": 9,
        "require_consent": False,
        "control_share": 0,
    }
    campaigns.save(hq.db, "FLASH-1", spec, "test")
    state = hq.pool_state(campaigns.POOL_PREFIX + "FLASH-1")
    assert (state.quantity, state.allocated) == (9, 0)
    assert state.chunk == 1  # the default: 9 // (4 x 3 tills), at least 1
    assert [a.pool_id for a in hq.grant_pools("T1")] == ["campaign:FLASH-1"]
    hq.grant_pools("T2")
    with pytest.raises(campaigns.CampaignInvalid) as info:
        campaigns.save(hq.db, "FLASH-1", {**spec, "quantity": 1}, "test")
    assert info.value.code is ErrorCode.POOL_BELOW_ALLOCATED
    campaigns.save(hq.db, "FLASH-1", {**spec, "quantity": 12}, "test")  # raised before its first coupon

    # once it has issued, its bound stays: removing the quantity (coupons issued after would carry no pool)
    # or raising it is refused and changes nothing; lowering it down to what tills hold is taken
    ran = campaigns.run_one(hq.db, "FLASH-1", datetime(2026, 3, 1, 10, tzinfo=UTC))
    assert ran is not None and sum(ran["issued"].values()) == 1
    for changed in ({k: v for k, v in spec.items() if k != "quantity"}, {**spec, "quantity": 13}):
        with pytest.raises(campaigns.CampaignInvalid) as info:
            campaigns.save(hq.db, "FLASH-1", changed, "test")
        assert info.value.code is ErrorCode.CAMPAIGN_QUANTITY_LOCKED
        assert campaigns.show(hq.db, "FLASH-1")["spec"]["quantity"] == 12
    lowered = campaigns.save(hq.db, "FLASH-1", {**spec, "quantity": 2, "name": "Flash, fewer"}, "test")
    assert lowered["spec"]["quantity"] == 2 and hq.pool_state(campaigns.POOL_PREFIX + "FLASH-1").quantity == 2
