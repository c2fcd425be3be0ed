"""What the wallet's overview reads from head office (``hq.wallet.views``): points' lots by the points
policy (earned, what later sales spent, expired lots gone), the progress to the next tier over the
ladder's window, and only the member's own coupons that have not ended."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hq.campaigns import coupon_id_of
from hq.ingest import Settings
from hq.store import HqStore
from hq.wallet import views
from sync.protocol import WireEntry
from terminal.qrcodes import encode
from tests.fixtures import entries

NOW = datetime.now(UTC)


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[HqStore]:
    store = HqStore(str(tmp_path / "hq.db"), Settings(recompute=False, spend_needs_proof=False))
    store.add_terminal("T1", "S1", "token-T1")
    store.upsert_member("M-1", "Aiko", "basic", 0)
    store.upsert_member("M-2", "Ben", "basic", 0)
    store.put_rule_doc({"kind": "points_policy", "lock_days": 0, "expire_days": 30}, "points_policy")
    store.put_rule_doc(
        {
            "kind": "tiers",
            "levels": [{"tier": "basic", "threshold": 0}, {"tier": "silver", "threshold": 200}],
            "measure": "earned",
            "window_days": 365,
        },
        "tiers",
    )
    yield store
    store.close()


def push(hq: HqStore, seq: int, payload: dict[str, Any], days_ago: int) -> str:
    made = (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    txn = f"T1-{seq}"
    hq.ingest("T1", [WireEntry(terminal_id="T1", seq=seq, txn_id=txn, kind="sale", payload=payload, created_at=made)])
    return txn


def test_lots_progress_and_balance(hq: HqStore) -> None:
    push(hq, 1, entries.sale("M-1", 4000, earned=40), days_ago=45)  # expired by now: no lot shown
    first = push(hq, 2, entries.sale("M-1", 5000, earned=50), days_ago=20)
    spend = entries.sale("M-1", 3000, earned=30, redeemed=20)
    spend["lots_spent"] = [[first, 20]]
    push(hq, 3, spend, days_ago=5)
    push(hq, 4, entries.sale("M-2", 9000, earned=90), days_ago=1)  # another member's
    seen = views.overview(hq, "M-1", NOW)
    assert seen is not None and seen.display_name == "Aiko"
    assert [(lot.points, lot.remaining) for lot in seen.lots] == [(50, 30), (30, 30)]
    assert seen.lots[0].expires_on == (NOW - timedelta(days=20) + timedelta(days=30)).date().isoformat()
    progress = seen.progress
    assert (progress.tier, progress.next_tier, progress.value, progress.needed) == ("basic", "silver", 120, 80)
    assert progress.percent == 60
    assert views.overview(hq, "M-404", NOW) is None
    assert [v.points for v in views.activity(hq, "M-1")] == [10, 50, 40]


def test_only_the_members_own_live_coupons(hq: HqStore) -> None:
    hq.put_coupon({"coupon_id": "MINE", "member_id": "M-1", "kind": "amount_off", "value": 100, "min_spend": 1000})
    hq.put_coupon(
        {"coupon_id": "ENDED", "member_id": "M-1", "kind": "amount_off", "value": 100, "ends": "2020-01-01T00:00:00Z"}
    )
    hq.put_coupon({"coupon_id": "THEIRS", "member_id": "M-2", "kind": "amount_off", "value": 100})
    hq.put_coupon({"coupon_id": "ALL", "kind": "amount_off", "value": 100})
    (mine,) = views.coupons(hq, "M-1", NOW)
    assert (mine.coupon_id, mine.min_spend, mine.used) == ("MINE", 1000, False)
    assert mine.code == "TPC1:TUlORQ"  # base64url of the id: what the till's coupon scan reads back
    assert [c.coupon_id for c in views.coupons(hq, "M-2", NOW)] == ["THEIRS"]


@pytest.mark.parametrize("campaign_chars", [1, 20, 36])
def test_a_campaign_coupon_code_is_drawn_at_version_5_at_most(campaign_chars: int) -> None:
    """The wallet's coupon code (``TPC1:`` + the coupon id, base64url) stays a version-5 code for
    campaign ids up to 36 characters, so a phone shows it with large modules (docs/scanning.md)."""
    text = views.coupon_code(coupon_id_of("c" * campaign_chars, "member-0001", "2026-12-24"))
    assert encode(text).version <= 5
