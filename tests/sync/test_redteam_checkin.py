"""A check-in campaign's store-day cap against a till that dates its door taps on earlier days."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hq import campaigns
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.sync.test_checkin import STORE, TillKey, checkin_campaign, count


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    yield store
    store.close()


def test_door_taps_dated_on_earlier_days_mint_no_more_than_the_store_days_cap(hq: HqStore) -> None:
    checkin_campaign(hq, max_per_store_day=3)
    members = [f"M-{n:02d}" for n in range(10)]
    for member in members:
        hq.upsert_member(member, member, "basic", 0)
    stolen = TillKey(hq, "T-1")
    now = datetime.now(UTC)
    wire = []
    for n, member in enumerate(members):
        stolen.seq += 1
        made = now - timedelta(days=n // 3)  # three taps a day, on today and the days before
        wire.append(
            WireEntry(
                terminal_id="T-1",
                seq=stolen.seq,
                txn_id=str(uuid.uuid4()),
                kind="checkin",
                payload={"member_id": member, "store_id": STORE, "reader": "door"},
                created_at=made.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            )
        )
    hq.ingest("T-1", wire)
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    rewards = count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id IS NOT NULL AND deleted = 0")
    assert rewards <= 3, f"one push of a stolen till credential minted {rewards} rewards at once; the cap is 3 a day"
