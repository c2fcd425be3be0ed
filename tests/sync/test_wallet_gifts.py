"""Passing a coupon on, the rules alone (``hq.wallet.gifts`` over a real head-office database, on SQLite
and PostgreSQL), with the clock passed in: an offer holds the coupon (a tombstone down the feed, which a
till pulling it drops), a claim
by another member gives it a new coupon (the same terms, one move less), a link works once, within its
window, never for the giver; refusals carry their codes; a gift not claimed goes back to the giver (lazily
and from the campaign timer); concurrent claims: one wins; erasure removes the member's gifts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hq.erasure import erase_member
from hq.scheduler import CampaignTimer
from hq.store import HqStore
from hq.wallet import gifts, views
from hq.wallet.gifts import GiftRefused
from sync.client import _page_docs, _page_models
from sync.protocol import ErrorCode, Tombstone
from terminal.coupons import parse_coupon
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

T0 = 1_800_000_000
HOUR = 3600


def coupon(coupon_id: str, member_id: str, **extra: Any) -> dict[str, Any]:
    body = {"coupon_id": coupon_id, "member_id": member_id, "kind": "amount_off", "value": 300, "text": "3.00 off"}
    return body | {"limits": {"per_member": 1}, "ends": "2099-12-31"} | extra


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url)
    for member_id, name in (("M-A", "Aiko"), ("M-B", "Ben"), ("M-C", "Chie")):
        store.upsert_member(member_id, name, "basic", 0)
    store.put_coupon(coupon("GIFT-1", "M-A", transfer={"times": 2, "claim_hours": 24}))
    store.put_coupon(coupon("PLAIN", "M-A"))
    store.put_coupon(coupon("OLD", "M-A", ends="2020-01-01", transfer={"times": 1}))
    store.put_coupon(coupon("SPENT", "M-A", transfer={"times": 1}))
    store.db.transact(lambda tx: tx.run("UPDATE coupons SET uses = 1 WHERE coupon_id = 'SPENT'"))
    yield store
    store.close()


def offer(hq: HqStore, member_id: str, coupon_id: str, now: int = T0) -> gifts.Offer:
    result: gifts.Offer = hq.db.transact(lambda tx: gifts.offer(tx, member_id, coupon_id, now))
    return result


def claim(hq: HqStore, token: str, member_id: str, now: int = T0 + HOUR) -> str:
    result: str = hq.db.transact(lambda tx: gifts.claim(tx, token, member_id, now))
    return result


def refused(call: Callable[[], object]) -> ErrorCode:
    with pytest.raises(GiftRefused) as info:
        call()
    return info.value.code


def wallet_ids(hq: HqStore, member_id: str) -> set[str]:
    return {c.coupon_id for c in views.coupons(hq, member_id, datetime.fromtimestamp(T0, UTC))}


def test_tills_ignore_the_transfer_terms() -> None:
    parsed = parse_coupon("GIFT-1", coupon("GIFT-1", "M-A", transfer={"times": 2, "claim_hours": 24}))
    assert parsed.coupon_id == "GIFT-1"
    assert gifts.transfer_of({"transfer": {"times": 2}}) == gifts.Transfer(2, gifts.DEFAULT_CLAIM_HOURS)
    for bad in (None, {}, {"times": "2"}, {"times": True}, {"times": -1}, {"times": 1, "claim_hours": 0}):
        assert gifts.transfer_of({"transfer": bad}) is None, bad


def test_a_campaign_template_may_carry_the_transfer_terms_onto_each_coupon_it_issues() -> None:
    from datetime import date

    from hq import campaigns

    template = {"kind": "amount_off", "value": 100, "transfer": {"times": 1, "claim_hours": 12}}
    spec = campaigns.parse_spec(
        {
            "name": "Bring a friend",
            "segment": "everyone",
            "variants": [{"variant": "gift", "coupon": template}],
            "schedule": {"kind": "daily", "at": "09:00"},
            "timezone": "Asia/Tokyo",
        }
    )
    body = campaigns.coupon_body("c1", spec, spec.variants[0], "M-A", "cmp-c1-x", date(2026, 3, 1))
    assert gifts.transfer_of(body) == gifts.Transfer(1, 12) and body["member_id"] == "M-A"


def test_an_offer_holds_the_coupon_and_a_claim_moves_it_to_a_new_coupon(hq: HqStore) -> None:
    cursor = hq.changes(0, 5000).cursor
    given = offer(hq, "M-A", "GIFT-1")
    assert given.expires_at == T0 + 24 * HOUR and len(given.token) >= 40
    with hq.db.read() as tx:
        assert given.token not in repr(tx.all("SELECT * FROM gifts"))  # only its digest is kept
    page = hq.changes(cursor, 5000)
    assert Tombstone(kind="coupon", id="GIFT-1") in page.deleted and not page.coupons
    assert "GIFT-1" not in wallet_ids(hq, "M-A")

    new_id = claim(hq, given.token, "M-B")
    assert new_id == gifts.gift_coupon_id("GIFT-1", 1)
    moved = hq.changes(page.cursor, 5000)
    assert [c.coupon_id for c in moved.coupons] == [new_id] and not moved.deleted
    body = moved.coupons[0].body
    assert moved.coupons[0].member_id == "M-B" and body["member_id"] == "M-B" and body["coupon_id"] == new_id
    assert body["transfer"] == {"times": 1, "claim_hours": 24, "moved": 1}
    assert {k: v for k, v in body.items() if k not in ("coupon_id", "member_id", "transfer")} == {
        k: v for k, v in coupon("GIFT-1", "M-A").items() if k not in ("coupon_id", "member_id")
    }
    assert new_id in wallet_ids(hq, "M-B") and new_id not in wallet_ids(hq, "M-A")
    assert "GIFT-1" not in wallet_ids(hq, "M-A") | wallet_ids(hq, "M-B")
    with hq.db.read() as tx:  # the new coupon's version is kept for pricing its sales again
        assert tx.one("SELECT 1 FROM doc_versions WHERE kind = 'coupon' AND doc_id = ?", [new_id]) is not None


def pull(till: Store, hq: HqStore) -> None:
    """What a till's pull applies: every page of the changes feed after its cursor."""
    while True:
        page = hq.changes(int(till.state("cursor") or 0), 5000)
        till.apply_changes(*_page_models(page), cursor=page.cursor, docs=_page_docs(page))
        if not page.more:
            return


def test_a_till_drops_the_held_coupon_and_takes_the_moved_one_for_its_receiver_only(
    hq: HqStore, tmp_path: Path
) -> None:
    till = Store.open(tmp_path / "till.db")
    service, basket = Service(till, "T-1"), Basket((Line("BEANS", 3, 1200, "beans"),))
    try:
        pull(till, hq)
        assert "GIFT-1" in service.quote("M-A", basket, coupons=["GIFT-1"]).coupons
        given = offer(hq, "M-A", "GIFT-1")
        pull(till, hq)
        assert ("GIFT-1", "unknown_coupon") in service.quote("M-A", basket, coupons=["GIFT-1"]).refused
        new_id = claim(hq, given.token, "M-B")
        pull(till, hq)
        assert new_id in service.quote("M-B", basket, coupons=[new_id]).coupons
        assert (new_id, "coupon_not_this_member") in service.quote("M-A", basket, coupons=[new_id]).refused
    finally:
        till.close()


def test_a_link_works_once_never_for_the_giver_and_only_within_its_window(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    assert refused(lambda: claim(hq, given.token, "M-A")) is ErrorCode.GIFT_OWN
    assert refused(lambda: claim(hq, given.token, "M-B", T0 + 24 * HOUR)) is ErrorCode.GIFT_EXPIRED
    assert refused(lambda: claim(hq, "not-a-token", "M-B")) is ErrorCode.GIFT_UNKNOWN
    claim(hq, given.token, "M-B")
    assert refused(lambda: claim(hq, given.token, "M-C")) is ErrorCode.GIFT_CLAIMED
    assert refused(lambda: claim(hq, given.token, "M-B")) is ErrorCode.GIFT_CLAIMED


def test_a_use_that_arrives_while_offered_stops_the_claim(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    hq.db.transact(lambda tx: tx.run("UPDATE coupons SET uses = 1 WHERE coupon_id = 'GIFT-1'"))  # an offline till
    assert refused(lambda: claim(hq, given.token, "M-B")) is ErrorCode.GIFT_COUPON_USED
    assert hq.db.transact(lambda tx: gifts.expire(tx, T0 + 24 * HOUR)) == 1  # it goes back, used


def test_offers_are_refused_with_their_codes(hq: HqStore) -> None:
    assert refused(lambda: offer(hq, "M-A", "PLAIN")) is ErrorCode.GIFT_NOT_TRANSFERABLE
    assert refused(lambda: offer(hq, "M-A", "OLD")) is ErrorCode.GIFT_EXPIRED
    assert refused(lambda: offer(hq, "M-A", "SPENT")) is ErrorCode.GIFT_COUPON_USED
    assert refused(lambda: offer(hq, "M-B", "GIFT-1")) is ErrorCode.GIFT_UNKNOWN  # not Ben's
    assert refused(lambda: offer(hq, "M-A", "NOPE")) is ErrorCode.GIFT_UNKNOWN
    offer(hq, "M-A", "GIFT-1")
    assert refused(lambda: offer(hq, "M-A", "GIFT-1")) is ErrorCode.GIFT_OFFERED


def test_a_coupon_moves_as_often_as_its_campaign_allows_then_is_refused(hq: HqStore) -> None:
    to_ben = claim(hq, offer(hq, "M-A", "GIFT-1").token, "M-B")
    to_chie = claim(hq, offer(hq, "M-B", to_ben).token, "M-C")
    assert to_chie == gifts.gift_coupon_id(to_ben, 2)
    assert refused(lambda: offer(hq, "M-C", to_chie)) is ErrorCode.GIFT_USED_UP
    assert wallet_ids(hq, "M-C") == {to_chie} and to_ben not in wallet_ids(hq, "M-B")


def test_a_gift_not_claimed_goes_back_to_the_giver(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    cursor = hq.changes(0, 5000).cursor
    assert hq.db.transact(lambda tx: gifts.expire(tx, T0 + 23 * HOUR)) == 0
    assert hq.db.transact(lambda tx: gifts.expire(tx, T0 + 24 * HOUR)) == 1
    back = hq.changes(cursor, 5000)
    assert [(c.coupon_id, c.member_id) for c in back.coupons] == [("GIFT-1", "M-A")]
    assert back.coupons[0].body == coupon("GIFT-1", "M-A", transfer={"times": 2, "claim_hours": 24})
    assert "GIFT-1" in wallet_ids(hq, "M-A")
    assert refused(lambda: claim(hq, given.token, "M-B", T0 + 25 * HOUR)) is ErrorCode.GIFT_EXPIRED
    again = offer(hq, "M-A", "GIFT-1", T0 + 25 * HOUR)  # it can be offered again
    assert again.token != given.token


def test_the_giver_takes_a_gift_back_before_anyone_claims_it(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    with hq.db.read() as tx:
        assert [w.coupon_id for w in gifts.offered_by(tx, "M-A")] == ["GIFT-1"] and not gifts.offered_by(tx, "M-B")
    assert refused(lambda: hq.db.transact(lambda tx: gifts.take_back(tx, "M-B", "GIFT-1", T0))) is (
        ErrorCode.GIFT_UNKNOWN
    )
    cursor = hq.changes(0, 5000).cursor
    hq.db.transact(lambda tx: gifts.take_back(tx, "M-A", "GIFT-1", T0 + HOUR))
    assert [c.coupon_id for c in hq.changes(cursor, 5000).coupons] == ["GIFT-1"]
    assert "GIFT-1" in wallet_ids(hq, "M-A")
    assert refused(lambda: claim(hq, given.token, "M-B")) is ErrorCode.GIFT_EXPIRED
    assert refused(lambda: hq.db.transact(lambda tx: gifts.take_back(tx, "M-A", "GIFT-1", T0))) is (
        ErrorCode.GIFT_UNKNOWN
    )


def test_the_campaign_timer_gives_back_gifts_past_their_window(hq: HqStore) -> None:
    offer(hq, "M-A", "GIFT-1")
    CampaignTimer(hq.db, now=lambda: datetime.fromtimestamp(T0 + 23 * HOUR, UTC)).tick()
    assert "GIFT-1" not in wallet_ids(hq, "M-A")
    CampaignTimer(hq.db, now=lambda: datetime.fromtimestamp(T0 + 25 * HOUR, UTC)).tick()
    assert "GIFT-1" in wallet_ids(hq, "M-A")


def test_concurrent_claims_of_one_link_one_wins(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    hq.upsert_member("M-D", "Dai", "basic", 0)
    outcomes: list[str] = []
    start = threading.Barrier(3)

    def race(member_id: str) -> None:
        start.wait()
        try:
            outcomes.append(claim(hq, given.token, member_id))
        except GiftRefused as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=race, args=(m,)) for m in ("M-B", "M-C", "M-D")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == sorted([gifts.gift_coupon_id("GIFT-1", 1), "gift_claimed", "gift_claimed"])
    with hq.db.read() as tx:
        assert len(tx.all("SELECT coupon_id FROM coupons WHERE member_id IN ('M-B', 'M-C', 'M-D')")) == 1


def test_erasing_the_giver_kills_its_pending_gift(hq: HqStore) -> None:
    given = offer(hq, "M-A", "GIFT-1")
    erase_member(hq, "M-A", "privacy desk")
    with hq.db.read() as tx:
        assert tx.all("SELECT * FROM gifts") == []
    assert refused(lambda: claim(hq, given.token, "M-B")) is ErrorCode.GIFT_UNKNOWN
    assert hq.db.transact(lambda tx: gifts.expire(tx, T0 + 48 * HOUR)) == 0  # nothing goes back to it
    with hq.db.read() as tx:
        assert tx.one("SELECT deleted, body FROM coupons WHERE coupon_id = 'GIFT-1'") == (1, "{}")


def test_erasing_the_receiver_erases_its_coupon_and_the_gifts_naming_it(hq: HqStore) -> None:
    new_id = claim(hq, offer(hq, "M-A", "GIFT-1").token, "M-B")
    erase_member(hq, "M-B", "privacy desk")
    with hq.db.read() as tx:
        assert tx.all("SELECT * FROM gifts") == []
        assert tx.one("SELECT deleted FROM coupons WHERE coupon_id = ?", [new_id]) == (1,)
    assert refused(lambda: offer(hq, "M-B", new_id)) is ErrorCode.GIFT_UNKNOWN
