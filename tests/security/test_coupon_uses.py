"""A campaign's coupons against a real head-office process and real tills: a personal coupon is used once in
the whole chain, not once at each till, and a refund gives back only the coupon uses head office's own pricing
gives back. A stolen till credential pushing a refund that returns nothing cannot hand a coupon's use, or a
flash drop's unit, back to be spent again."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from hq.store import HqStore
from terminal.checkout import Checkout
from terminal.errors import Code, Rejected
from terminal.model import Basket, Line, SaleOrder
from terminal.service import secure_tap
from tests.fixtures import entries
from tests.security.chain import Chain, Till

BASKET = Basket((Line("COFFEE", 1, 1000, "coffee"),))
EVERYONE = {"where": {"kind": "visits", "days": 3660, "max": 1_000_000_000}}


def admin(chain: Chain, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{chain.hq.url}{path}", json=body, headers=chain.admin_headers, timeout=30)


def run_campaign(chain: Chain, campaign_id: str, coupon: dict[str, Any], **extra: Any) -> None:
    """A daily campaign of ``coupon`` to every member, no control group, run now."""
    assert admin(chain, "PUT", "/v1/admin/segments/everyone", {"name": "everyone", "definition": EVERYONE}).is_success
    spec = {
        "name": campaign_id,
        "segment": "everyone",
        "variants": [{"variant": "a", "coupon": coupon}],
        "schedule": {"kind": "daily", "at": "00:00"},
        "timezone": "UTC",
        "control_share": 0.0,
        "require_consent": False,
        **extra,
    }
    assert admin(chain, "PUT", f"/v1/admin/campaigns/{campaign_id}", spec).is_success
    ran = admin(chain, "POST", "/v1/admin/campaigns/run", {"now": dt.datetime.now(dt.UTC).isoformat()})
    assert ran.is_success, ran.text


def rows(chain: Chain, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    store = HqStore(chain.hq.db)
    try:
        with store.db.read() as tx:
            return [tuple(r) for r in tx.all(sql, params)]
    finally:
        store.close()


def coupon_of(chain: Chain, campaign_id: str, member_id: str) -> str:
    found = rows(
        chain,
        "SELECT coupon_id FROM campaign_members WHERE campaign_id = ? AND member_id = ?",
        [campaign_id, member_id],
    )
    assert len(found) == 1 and found[0][0], found
    return str(found[0][0])


def stolen_credential(chain: Chain, terminal_id: str = "T-X", store_id: str = "S-B") -> str:
    """A till of the chain whose credential someone else holds (no honest till pushes under it)."""
    store = HqStore(chain.hq.db)
    try:
        chain.tokens[terminal_id] = store.add_terminal(terminal_id, store_id)
    finally:
        store.close()
    chain.seqs[terminal_id] = 0
    return terminal_id


def sell_with(till: Till, coupon: str) -> str:
    quote = till.service.quote("M-1", BASKET, [coupon])
    assert coupon in quote.coupons, quote.refused
    return till.service.commit(quote).txn_id


def refused_at(till: Till, coupon: str) -> str | None:
    """Why ``till`` refuses the coupon for M-1 now (None: it takes it)."""
    quote = till.service.quote("M-1", BASKET, [coupon])
    return dict(quote.refused).get(coupon)


def uses(chain: Chain, coupon: str) -> tuple[int, int]:
    """Head office's count of the coupon's uses: in all, and by M-1."""
    total = rows(chain, "SELECT uses FROM coupons WHERE coupon_id = ?", [coupon])
    mine = rows(chain, "SELECT uses FROM coupon_member_uses WHERE coupon_id = ? AND member_id = 'M-1'", [coupon])
    return int(total[0][0]), int(mine[0][0]) if mine else 0


def used_at_till_a(chain: Chain, tills: tuple[Till, Till]) -> tuple[str, str]:
    """M-1's personal coupon from a daily campaign (500 bonus points), pulled by both tills, used at the first
    and pushed: the coupon and the sale."""
    run_campaign(chain, "once", {"kind": "bonus_points", "value": 500})
    coupon = coupon_of(chain, "once", "M-1")
    for till in tills:
        till.client.sync_once()
    sale = sell_with(tills[0], coupon)
    tills[0].client.sync_once()
    return coupon, sale


def test_a_personal_coupon_used_at_one_till_is_refused_at_another_once_head_office_has_it(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    till_a, till_b = tills
    coupon, _ = used_at_till_a(chain, tills)
    assert uses(chain, coupon) == (1, 1)
    assert refused_at(till_a, coupon) == "coupon_already_used"

    till_b.client.sync_once()  # pulls head office's count of the coupon's uses
    assert refused_at(till_b, coupon) == "coupon_already_used"
    assert uses(chain, coupon) == (1, 1)


def test_a_refund_that_returns_nothing_gives_no_coupon_back(chain: Chain, tills: tuple[Till, Till]) -> None:
    _, till_b = tills
    coupon, sale = used_at_till_a(chain, tills)
    points = chain.balance().points

    thief = stolen_credential(chain)
    empty = entries.refund(sale, "M-1", store_id="S-B", money_back=0, coupons_restored=(coupon,))
    assert chain.push(thief, "refund", empty).status_code == 200

    assert uses(chain, coupon) == (1, 1)  # the use stands
    held = [i for i in chain.items() if i.reason.value == "refund_exceeds_sale"]
    assert len(held) == 1 and held[0].quarantined
    assert held[0].detail["coupons_restored"]["returned"] == [coupon]
    assert chain.balance().points == points
    till_b.client.sync_once()
    assert refused_at(till_b, coupon) == "coupon_already_used"


def test_a_whole_refund_at_the_till_still_gives_the_coupon_back(chain: Chain, tills: tuple[Till, Till]) -> None:
    till_a, till_b = tills
    coupon, sale = used_at_till_a(chain, tills)
    till_a.service.refund(sale, {0: 1})
    till_a.client.sync_once()

    assert uses(chain, coupon) == (0, 0)
    assert not [i for i in chain.items() if i.quarantined]
    till_b.client.sync_once()
    assert refused_at(till_b, coupon) is None  # the member has the offer again, at any till


def test_empty_refunds_from_a_stolen_credential_do_not_stretch_a_flash_drop(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    till_a, _ = tills
    run_campaign(chain, "flash", {"kind": "bonus_points", "value": 300}, quantity=4)
    coupon = coupon_of(chain, "flash", "M-1")
    pool = "campaign:flash"
    till_a.client.sync_once()  # its allocation of the drop
    sale = sell_with(till_a, coupon)
    till_a.client.sync_once()
    assert rows(chain, "SELECT used FROM pools WHERE pool_id = ?", [pool]) == [(1,)]

    thief = stolen_credential(chain)
    for _ in range(3):
        empty = entries.refund(sale, "M-1", store_id="S-B", money_back=0, coupons_restored=(coupon,))
        assert chain.push(thief, "refund", empty).status_code == 200

    assert rows(chain, "SELECT used FROM pools WHERE pool_id = ?", [pool]) == [(1,)]
    assert rows(chain, "SELECT used FROM pool_allocations WHERE pool_id = ? AND terminal_id = 'T-A'", [pool]) == [(1,)]
    assert uses(chain, coupon) == (1, 1)
    assert [i.reason.value for i in chain.items() if i.quarantined] == ["refund_exceeds_sale"] * 3
    till_a.client.sync_once()
    assert refused_at(till_a, coupon) == "coupon_already_used"


def test_a_refund_of_units_the_sale_never_had_gives_no_coupon_back(chain: Chain, tills: tuple[Till, Till]) -> None:
    coupon, sale = used_at_till_a(chain, tills)
    thief = stolen_credential(chain)
    for returned in ([(0, 5)], [(7, 1)]):  # more units than bought; a line the sale does not have
        bad = entries.refund(sale, "M-1", store_id="S-B", coupons_restored=(coupon,), returned=returned)
        assert chain.push(thief, "refund", bad).status_code == 200
    held = [i for i in chain.items() if i.reason.value == "refund_exceeds_sale"]
    assert [sorted(i.detail["units"]) for i in held] == [["0"], ["7"]] and all(i.quarantined for i in held)
    assert uses(chain, coupon) == (1, 1)


def test_a_partial_refund_pushed_with_its_sale_gives_back_a_coupon_the_rest_no_longer_earns(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    till_a, _ = tills
    run_campaign(chain, "spend", {"kind": "amount_off", "value": 100, "min_spend": 1500})
    coupon = coupon_of(chain, "spend", "M-1")
    till_a.client.sync_once()
    two = Basket((Line("COFFEE", 2, 1000, "coffee"),))
    quote = till_a.service.quote("M-1", two, [coupon])
    assert coupon in quote.coupons, quote.refused
    sale = till_a.service.commit(quote, tapped=till_a.tap(chain.card.ndef_url())).txn_id  # her coupon: her tap
    till_a.service.refund(sale, {0: 1})  # 1,000 left: under the coupon's minimum, so its use comes back
    till_a.client.sync_once()  # the sale and its refund reach head office in one push

    assert uses(chain, coupon) == (0, 0)
    assert not [i for i in chain.items() if i.quarantined]


def pushed(chain: Chain, terminal_id: str, kind: str, payload: dict[str, Any]) -> str:
    """``Chain.push``, and the txn id it sent."""
    assert chain.push(terminal_id, kind, payload).status_code == 200
    found = rows(
        chain, "SELECT txn_id FROM journal WHERE terminal_id = ? AND seq = ?", [terminal_id, chain.seqs[terminal_id]]
    )
    return str(found[0][0])


def test_a_refund_of_a_sale_with_a_far_off_time_and_an_offset_is_priced_all_the_same(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    till_a, _ = tills
    run_campaign(chain, "once", {"kind": "bonus_points", "value": 500})
    coupon = coupon_of(chain, "once", "M-1")
    till_a.client.sync_once()
    two = Basket((Line("COFFEE", 2, 1000, "coffee"),))
    honest = till_a.service.quote("M-1", two, [coupon])  # what the rules give this basket
    thief = stolen_credential(chain)
    days_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(microsecond=0).isoformat()  # "+00:00"
    lines = [{"sku": "COFFEE", "quantity": 2, "unit_price": 1000, "category": "coffee"}]
    made = entries.sale("M-1", 2000, store_id="S-B", earned=honest.points_earned, coupons=(coupon,), lines=lines)
    sale = pushed(chain, thief, "sale", {**made, "local_time": days_ago})
    assert chain.effect(sale) == "applied"
    for restored in ((), (coupon,)):  # a unit each, all the money, no point taken back
        back = entries.refund(
            sale, "M-1", store_id="S-B", money_back=1000, coupons_restored=restored, returned=[(0, 1)]
        )
        assert chain.effect(pushed(chain, thief, "refund", back)) == "quarantined"
    assert {i.reason.value for i in chain.items() if i.quarantined} == {"refund_keeps_points"}
    assert uses(chain, coupon) == (1, 1)


def test_a_till_voids_only_its_own_sales(chain: Chain, tills: tuple[Till, Till]) -> None:
    till_a, till_b = tills
    run_campaign(chain, "off", {"kind": "amount_off", "value": 500}, quantity=4)  # a flash drop of 500 off
    coupon = coupon_of(chain, "off", "M-1")
    for till in tills:
        till.client.sync_once()
    quote = till_a.service.quote("M-1", BASKET, [coupon])
    assert coupon in quote.coupons and quote.discount == 500, quote.refused
    sale = till_a.service.commit(quote, tapped=till_a.tap(chain.card.ndef_url())).txn_id  # her coupon: her tap
    till_a.client.sync_once()
    pool = rows(chain, "SELECT used FROM pools WHERE pool_id = 'campaign:off'", [])

    thief = stolen_credential(chain)  # another store's till: nothing paid back, only the sale's points clawed
    void = entries.refund(sale, "M-1", store_id="S-B", clawed=quote.points_earned, void=True)
    voided = pushed(chain, thief, "void", void)

    assert chain.effect(voided) == "quarantined"
    [held] = [i for i in chain.items() if i.txn_id == voided]
    assert held.reason.value == "void_other_till" and held.detail["sale_till"] == "T-A"
    assert uses(chain, coupon) == (1, 1)
    assert rows(chain, "SELECT used FROM pools WHERE pool_id = 'campaign:off'", []) == pool
    till_b.client.sync_once()
    assert refused_at(till_b, coupon) == "coupon_already_used"
    till_a.service.void(sale)  # the till that sold it may
    till_a.client.sync_once()
    assert uses(chain, coupon) == (0, 0)


# -- a personal coupon worth money off is the member's value: it needs their proof, as points do ---------


def test_a_typed_member_number_does_not_spend_the_members_personal_coupon(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """A dishonest cashier types Aiko's number while ringing a friend's basket: her 5.00-off coupon is not
    applied by itself, nor when its id is typed in too; her card tap at the till applies it."""
    till_a, _ = tills
    run_campaign(chain, "gift", {"kind": "amount_off", "value": 500})
    coupon = coupon_of(chain, "gift", "M-1")
    till_a.client.sync_once()
    typed = Checkout(till_a.service)  # no card tapped at this till

    quote = typed.quote(SaleOrder("M-1", BASKET))
    assert coupon not in quote.coupons and quote.payable == 1000
    assert dict(quote.refused)[coupon] == Code.PROOF_NEEDED.value  # the cashier is told why
    assert typed.sell(SaleOrder("M-1", BASKET)).total == 1000  # the sale goes through without it
    with pytest.raises(Rejected) as info:
        typed.sell(SaleOrder("M-1", BASKET, (coupon,)))  # its id typed in (a till can derive campaign ids)
    assert info.value.code is Code.PROOF_NEEDED
    till_a.client.sync_once()
    assert uses(chain, coupon) == (0, 0)  # still hers

    tapped = till_a.tap(chain.card.ndef_url())  # Aiko at the till: her card tapped
    receipt = Checkout(till_a.service, lambda: tapped).sell(SaleOrder("M-1", BASKET))
    assert receipt.total == 500
    till_a.client.sync_once()
    assert uses(chain, coupon) == (1, 1)
    assert not [i for i in chain.items() if i.quarantined]


def test_a_personal_points_coupon_still_comes_with_the_members_number(chain: Chain, tills: tuple[Till, Till]) -> None:
    """A personal bonus pays into the member's own account, so knowing the member uses it, as knowing them
    earns points: it needs no proof."""
    till_a, _ = tills
    run_campaign(chain, "bonus", {"kind": "bonus_points", "value": 300})
    coupon = coupon_of(chain, "bonus", "M-1")
    till_a.client.sync_once()
    receipt = Checkout(till_a.service).sell(SaleOrder("M-1", BASKET))
    assert receipt.points_delta >= 300
    till_a.client.sync_once()
    assert uses(chain, coupon) == (1, 1)
    assert not [i for i in chain.items() if i.quarantined]


def test_a_stolen_credential_spending_a_personal_coupon_without_proof_is_held(chain: Chain) -> None:
    """A till credential pushing a sale that used Aiko's 5.00-off coupon with no proof (as an older till
    would, or one that skips the check): head office holds it as ``proof_missing``, naming the coupon."""
    run_campaign(chain, "gift", {"kind": "amount_off", "value": 500})
    coupon = coupon_of(chain, "gift", "M-1")
    thief = stolen_credential(chain)
    sold = pushed(chain, thief, "sale", entries.sale("M-1", 1000, store_id="S-B", coupons=[coupon]))
    assert chain.effect(sold) == "quarantined"
    [held] = [i for i in chain.items() if i.txn_id == sold and i.reason.value == "proof_missing"]
    assert held.quarantined and held.detail["personal_coupons"] == [coupon]


def test_a_rejected_sale_held_for_its_proof_gives_the_members_coupon_back(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """A stolen credential naming Aiko's 5.00 off without her proof: the sale is held and the coupon counted
    used meanwhile (the till gave a discount); staff reject the sale, and her coupon is hers again, at head
    office and at her till."""
    till_a, _ = tills
    run_campaign(chain, "gift", {"kind": "amount_off", "value": 500}, quantity=5)  # a flash drop: its unit too
    coupon = coupon_of(chain, "gift", "M-1")
    pool = rows(chain, "SELECT used FROM pools WHERE pool_id = 'campaign:gift'", [])
    assert pool == [(0,)]
    thief = stolen_credential(chain)
    sold = pushed(chain, thief, "sale", entries.sale("M-1", 1000, store_id="S-B", coupons=[coupon]))
    assert chain.effect(sold) == "quarantined" and uses(chain, coupon) == (1, 1)
    rejected = admin(chain, "POST", f"/v1/admin/quarantine/{sold}/reject", {"note": "no proof: not Aiko"})
    assert rejected.status_code == 200 and rejected.json()["effect"] == "rejected", rejected.text
    assert uses(chain, coupon) == (0, 0)
    assert rows(chain, "SELECT used FROM pools WHERE pool_id = 'campaign:gift'", []) == pool
    till_a.client.sync_once()
    assert refused_at(till_a, coupon) is None
    tapped = till_a.tap(chain.card.ndef_url())  # Aiko herself, her card tapped
    assert Checkout(till_a.service, lambda: tapped).sell(SaleOrder("M-1", BASKET)).total == 500


def test_an_older_tills_sale_with_the_members_own_secure_tap_is_not_held(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """A mixed fleet (head office upgraded first, as docs/deploy.md says): a till of the earlier release applied
    Aiko's coupon on her genuine SUN tap and journalled the tap, but named no ``proof`` (it named one only for
    points or stored value). Head office takes the tap as the proof, checks it and uses its counter."""
    till_a, _ = tills
    run_campaign(chain, "gift", {"kind": "amount_off", "value": 500})
    coupon = coupon_of(chain, "gift", "M-1")
    tapped = secure_tap(till_a.tap(chain.card.ndef_url()))  # Aiko's card, a fresh SUN message
    assert tapped is not None
    old_till = stolen_credential(chain, "T-OLD", "S-B")  # stands for a till of the earlier release
    till_a.client.sync_once()
    priced = till_a.service.quote("M-1", BASKET, [coupon], proven=True)  # as the old till priced it
    assert coupon in priced.coupons and priced.payable == 500
    lines = [{"sku": "COFFEE", "quantity": 1, "unit_price": 1000, "category": "coffee"}]
    made = entries.sale(
        "M-1",
        1000,
        store_id="S-B",
        coupons=[coupon],
        tap=tapped.wire(),
        uid_hash=tapped.uid_hash,
        earned=priced.points_earned,
        lines=lines,
    )
    made.update(discount=500, payable=500, pos_due=500)
    assert made.get("proof") is None
    sold = pushed(chain, old_till, "sale", made)
    reasons = [i.reason.value for i in chain.items() if i.txn_id == sold and i.quarantined]
    assert reasons == [] and chain.effect(sold) == "applied", reasons
    again = pushed(chain, old_till, "sale", made)  # the same tap again: its counter was used
    held = [i.reason.value for i in chain.items() if i.txn_id == again and i.quarantined]
    assert held == ["card_replayed"] and chain.effect(again) == "quarantined"
    assert uses(chain, coupon) == (2, 2)  # counted while held
    rejected = admin(chain, "POST", f"/v1/admin/quarantine/{again}/reject", {"note": "a tap used before"})
    assert rejected.status_code == 200, rejected.text
    assert uses(chain, coupon) == (1, 1)  # a replayed proof stands for nobody: the coupon's use goes back


def test_a_stolen_credential_cannot_use_up_another_members_personal_coupon(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """A till credential names Aiko's personal bonus coupon on an anonymous sale and on Ben's: an honest till
    refuses both (``coupon_not_this_member``). Head office flags each and counts no use: the coupon stays
    hers, her till still takes it, and her own use is the one counted."""
    till_a, _ = tills
    run_campaign(chain, "bonus", {"kind": "bonus_points", "value": 300})
    coupon = coupon_of(chain, "bonus", "M-1")
    thief = stolen_credential(chain)
    anonymous = pushed(chain, thief, "sale", entries.sale(None, 1000, store_id="S-B", coupons=[coupon]))
    bens = pushed(chain, thief, "sale", entries.sale("M-2", 1000, store_id="S-B", coupons=[coupon]))
    assert uses(chain, coupon) == (0, 0)
    flagged = {i.txn_id: i for i in chain.items() if i.reason.value == "coupon_other_member"}
    assert set(flagged) == {anonymous, bens}
    assert flagged[bens].detail["coupon_member"] == "M-1" and flagged[bens].detail["sale_member"] == "M-2"
    assert not any(i.quarantined for i in flagged.values())

    till_a.client.sync_once()
    assert refused_at(till_a, coupon) is None
    sell_with(till_a, coupon)
    till_a.client.sync_once()
    assert uses(chain, coupon) == (1, 1)


def test_a_coupons_use_pushed_before_the_next_pull_still_counts_at_its_till(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """A push round hands the use to head office; till the pull brings head office's count back (``pull_interval``
    later) it still counts at the till, so a single-use coupon cannot be rung again in between. Once pulled, the
    till's acknowledged uses count once, in head office's number, not again beside it."""
    till_a, _ = tills
    for coupon_id, limit in (("ONCE", 1), ("TWICE", 2)):
        body = {"kind": "amount_off", "value": 100, "text": "1.00 off", "limits": {"global": limit}}
        made = admin(chain, "PUT", f"/v1/admin/coupons/{coupon_id}?reason=spring", body)
        assert made.is_success, made.text
    till_a.client.sync_once()
    sell_with(till_a, "ONCE")
    sell_with(till_a, "TWICE")
    till_a.client.sync_once(pull=False)  # pushed, not pulled yet
    assert till_a.store.pending_count() == 0
    assert refused_at(till_a, "ONCE") == "coupon_used_up"

    till_a.client.sync_once()
    assert uses(chain, "ONCE")[0] == uses(chain, "TWICE")[0] == 1
    assert refused_at(till_a, "ONCE") == "coupon_used_up"
    assert refused_at(till_a, "TWICE") is None  # one use of two: counted once
