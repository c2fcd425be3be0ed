"""A check-in campaign's store-day cap and days against a till that dates its door taps on other days."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hq import campaigns, segments
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.sync.test_checkin import EVERYONE, STORE, TillKey, checkin_campaign, count, points


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


def test_door_taps_dated_inside_a_campaigns_days_reward_only_while_head_office_runs_it(hq: HqStore) -> None:
    """A points check-in campaign that ended ten days ago by head office's clock (left active), and one that
    starts in ten days: a stolen till dating its door taps inside their days credits nothing; the tap of an
    offline till on the last day of one that ended yesterday, pushed today, is still rewarded."""
    segments.save(hq.db, "everyone", "everyone", {"where": EVERYONE}, "test")
    today = datetime.now(UTC).date()
    dated = {"spring": (-30, -10, -15), "summer": (10, 40, 20), "late": (-5, -1, -1)}  # starts, ends, the tap
    for n, (campaign_id, (starts, ends, _)) in enumerate(dated.items()):
        spec = {
            "name": campaign_id,
            "segment": "everyone",
            "variants": [{"variant": "pts", "points": 300}],
            "schedule": {"kind": "checkin", "stores": [STORE], "max_per_store_day": 3},
            "starts": (today + timedelta(days=starts)).isoformat(),
            "ends": (today + timedelta(days=ends)).isoformat(),
            "control_share": 0,
            "require_consent": False,
        }
        campaigns.save(hq.db, campaign_id, spec, "test")
        hq.upsert_member(f"M-{n}", f"M-{n}", "basic", 0)
    stolen = TillKey(hq, "T-1")
    wire = []
    for n, (_, _, tap) in enumerate(dated.values()):
        stolen.seq += 1
        made = datetime.now(UTC) + timedelta(days=tap)
        wire.append(
            WireEntry(
                terminal_id="T-1",
                seq=stolen.seq,
                txn_id=str(uuid.uuid4()),
                kind="checkin",
                payload={"member_id": f"M-{n}", "store_id": STORE, "reader": "door"},
                created_at=made.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            )
        )
    hq.ingest("T-1", wire)
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    assert (points(hq, "M-0"), points(hq, "M-1"), points(hq, "M-2")) == (0, 0, 300)
    with hq.db.read() as tx:
        assert [tuple(r) for r in tx.all("SELECT campaign_id, member_id FROM campaign_members")] == [("late", "M-2")]
