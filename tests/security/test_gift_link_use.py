"""A member passes a coupon on as a gift link while a till that has not pulled the hold yet (offline, or
between pulls) takes the same coupon from them: the use reaches head office while the link waits. Head office
counts that use against the coupon it holds for the gift, so the friend's claim is refused
(``gift_coupon_used``) and the coupon, used, goes back to its giver: one coupon's discount is given once, not
once at the giver's till and again to the friend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.ingest import Settings
from hq.store import HqStore
from hq.wallet import gifts
from hq.wallet.gifts import GiftRefused
from sync.protocol import ErrorCode, WireEntry
from tests.fixtures.entries import sale
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

T0 = 1_800_000_000
HOUR = 3600
CREATED = "2027-01-15T08:00:00.000Z"


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url, Settings(spend_needs_proof=False))  # the sale stands: the coupon's use is the point
    store.upsert_member("M-A", "Aiko", "basic", 0)
    store.upsert_member("M-B", "Ben", "basic", 0)
    body = {"coupon_id": "GIFT-1", "member_id": "M-A", "kind": "amount_off", "value": 300, "text": "3.00 off"}
    store.put_coupon(body | {"limits": {"per_member": 1}, "ends": "2099-12-31", "transfer": {"times": 1}})
    store.add_terminal("T1", "S1", "t1")
    yield store
    store.close()


def used(hq: HqStore) -> tuple[int, int]:
    with hq.db.read() as tx:
        row = tx.one(
            "SELECT c.uses, COALESCE(u.uses, 0) FROM coupons c LEFT JOIN coupon_member_uses u "
            "ON u.coupon_id = c.coupon_id AND u.member_id = 'M-A' WHERE c.coupon_id = 'GIFT-1'"
        )
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_use_by_a_till_that_had_not_pulled_the_hold_stops_the_friends_claim(hq: HqStore) -> None:
    given = hq.db.transact(lambda tx: gifts.offer(tx, "M-A", "GIFT-1", T0))
    entry = WireEntry(
        terminal_id="T1",
        seq=1,
        txn_id="T1-1",
        kind="sale",
        payload=sale("M-A", 1200, coupons=["GIFT-1"]),
        created_at=CREATED,
    )
    hq.ingest("T1", [entry], clock=CREATED)  # Aiko's 3.00 off at a till that still held the coupon
    assert used(hq) == (1, 1)
    with pytest.raises(GiftRefused) as refused:
        hq.db.transact(lambda tx: gifts.claim(tx, given.token, "M-B", T0 + HOUR))
    assert refused.value.code is ErrorCode.GIFT_COUPON_USED
    with hq.db.read() as tx:
        assert tx.one("SELECT 1 FROM coupons WHERE member_id = 'M-B'") is None  # Ben got no second discount
        assert [r[0] for r in tx.all("SELECT reason FROM recon_items WHERE txn_id = 'T1-1'")].count(
            "unknown_coupon"
        ) == 0  # the coupon was Aiko's, held for the gift: not unknown
    assert hq.db.transact(lambda tx: gifts.expire(tx, T0 + 73 * HOUR)) == 1  # back to Aiko, used
    assert used(hq) == (1, 1)
