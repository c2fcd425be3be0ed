"""A stolen till credential against a real head-office process: every trick to create value is stored,
quarantined (no balance moves) and raises an item with a stable reason; an admin releases or rejects it.

Each test states what happened to every balance it touches and which item appeared."""

from __future__ import annotations

from typing import Any

import httpx

from hq.store import HqStore
from sync.protocol import ReconItem
from tests.fixtures import entries
from tests.security.chain import Balance, Chain, today_local


def only_item(chain: Chain, reason: str) -> ReconItem:
    found = [i for i in chain.items() if i.reason.value == reason]
    assert len(found) == 1, [(i.reason, i.detail) for i in chain.items()]
    return found[0]


def test_kinds_a_till_never_writes_create_nothing(chain: Chain) -> None:
    before = chain.balance()
    for kind, payload in (
        ("topup", {"member_id": "M-1", "amount": 100_000}),
        ("adjust", {"member_id": "M-1", "points_delta": 50_000, "stored_value_delta": 50_000}),
        ("payment", {"member_id": "M-1", "stored_value_delta": 70_000}),
        ("bonus", {"member_id": "M-1", "points_delta": 9_999}),
    ):
        reply = chain.push("T-A", kind, payload)
        assert reply.status_code == 200 and reply.json()["stored"] == 1  # stored: nothing lost
    assert chain.balance() == before == Balance(1000, 5000)
    items = chain.items()
    assert sorted((i.reason.value, i.detail["kind"], i.quarantined) for i in items) == [
        ("kind_not_allowed", k, True) for k in ("adjust", "bonus", "payment", "topup")
    ]
    assert {chain.effect(i.txn_id or "") for i in items} == {"quarantined"}


def test_signs_a_till_may_not_produce_are_quarantined(chain: Chain) -> None:
    before = chain.balance()
    # an enrolment that brings points with it
    enrol = {**entries.enrol("E-EVIL", store_id="S-A"), "points_delta": 5000}
    assert chain.push("T-A", "enrol", enrol).status_code == 200
    # a sale that raises stored value: the model itself refuses it (a sale never adds stored value)
    raising = {**entries.sale("M-1", 1000, store_id="S-A"), "stored_value": 0, "stored_value_delta": 4000}
    assert chain.push("T-A", "sale", raising).status_code == 200
    # a sale earning more points than the chain's rules give its basket
    greedy = entries.sale("M-1", 1000, earned=900, store_id="S-A", local_time=today_local())
    assert chain.push("T-A", "sale", greedy).status_code == 200
    assert chain.balance() == before
    reasons = chain.reasons()
    assert {("sign_not_allowed", True), ("malformed_entry", True), ("points_above_rules", True)} <= reasons
    above = only_item(chain, "points_above_rules")
    assert above.detail["terminal"] == 900 and above.detail["head_office"] < 900
    assert chain.balance("M-1") == before


def test_a_refund_of_nothing_and_beyond_its_sale(chain: Chain) -> None:
    before = chain.balance()
    ghost = entries.refund("no-such-sale", "M-1", store_id="S-A", money_back=3000, stored_value=3000, restored=800)
    assert chain.push("T-A", "refund", ghost).status_code == 200
    assert chain.balance() == before  # nothing came back from nothing
    assert only_item(chain, "refund_unknown_sale").quarantined

    # A real sale: 900 points paid, on a code from the member's phone (the proof head office checks).
    sale = entries.sale(
        "M-1",
        2000,
        redeemed=900,
        proof="payment_code",
        payment_code=(code := chain.phone.next_code()),
        code_id=_code_id(code),
        store_id="S-A",
        local_time=today_local(),
    )
    reply = chain.push("T-A", "sale", sale)
    assert reply.status_code == 200
    sale_txn = _last_txn(chain, "T-A")
    after_sale = chain.balance()
    assert after_sale.points == before.points - 900 + sale["points_earned"]
    # Refund it once in full (fine), then again: the second gives back what was already given back.
    full = entries.refund(sale_txn, "M-1", store_id="S-A", money_back=1100, restored=900)
    assert chain.push("T-A", "refund", full).status_code == 200
    assert chain.balance().points == after_sale.points + 900
    assert chain.push("T-A", "refund", full).status_code == 200
    assert chain.balance().points == after_sale.points + 900  # not twice
    beyond = only_item(chain, "refund_exceeds_sale")
    assert beyond.quarantined and beyond.detail["points_restored"] == {"returned": 1800, "sale_took": 900}
    # Another member's sale cannot be refunded to Ben.
    to_ben = entries.refund(sale_txn, "M-2", store_id="S-A", money_back=100)
    assert chain.push("T-A", "refund", to_ben).status_code == 200
    assert only_item(chain, "refund_wrong_member").quarantined
    assert chain.balance("M-2") == Balance(500, 1000)


def test_spending_needs_a_proof_head_office_accepts(chain: Chain) -> None:
    before = chain.balance()
    no_proof = entries.sale("M-1", 1000, redeemed=500, proof=None, store_id="S-A", local_time=today_local())
    no_proof["proof"] = None
    chain.push("T-A", "sale", no_proof)
    on_the_pos_word = entries.sale("M-1", 1000, redeemed=500, proof="pos", store_id="S-A", local_time=today_local())
    chain.push("T-A", "sale", on_the_pos_word)
    assert chain.balance() == before
    assert [i.reason.value for i in chain.items() if i.quarantined] == ["proof_missing", "proof_missing"]
    # A code made by a key head office never certified, and the member's own code on Ben's sale.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from terminal import payments as pay

    cert = chain.phone.cert
    assert cert is not None
    forged = pay.make_code(Ed25519PrivateKey.generate(), cert.cert_id, int(__import__("time").time()), 99)
    chain.push(
        "T-A",
        "sale",
        entries.sale(
            "M-1",
            1000,
            stored_value=800,
            proof="payment_code",
            payment_code=forged,
            code_id=_code_id(forged),
            store_id="S-A",
            local_time=today_local(),
        ),
    )
    aikos = chain.phone.next_code()
    chain.push(
        "T-A",
        "sale",
        entries.sale(
            "M-2",
            1000,
            stored_value=800,
            proof="payment_code",
            payment_code=aikos,
            code_id=_code_id(aikos),
            store_id="S-A",
            local_time=today_local(),
        ),
    )
    invalid = [i for i in chain.items() if i.reason.value == "proof_invalid"]
    assert [(i.detail["code"], i.quarantined) for i in invalid] == [
        ("payment_code_forged", True),
        ("payment_code_forged", True),
    ]
    assert chain.balance() == before and chain.balance("M-2") == Balance(500, 1000)


def test_an_entry_naming_another_store_is_held_and_an_admin_decides(chain: Chain) -> None:
    before = chain.balance()
    elsewhere = entries.sale("M-1", 1000, earned=10, store_id="S-B", local_time=today_local())
    chain.push("T-A", "sale", elsewhere)  # T-A belongs to S-A
    item = only_item(chain, "wrong_store")
    assert item.quarantined and item.detail == {"entry_store": "S-B", "terminal_store": "S-A"}
    assert all(i.reason.value in ("wrong_store", "price_mismatch") for i in chain.items())
    assert chain.balance() == before
    settle = httpx.post(
        f"{chain.hq.url}/v1/admin/items/{item.item_id}/settle",
        json={"note": "fine"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert settle.status_code == 422  # a held entry is released or rejected, not settled around
    held = httpx.get(f"{chain.hq.url}/v1/admin/quarantine", headers=chain.admin_headers, timeout=10).json()
    assert [h["txn_id"] for h in held] == [item.txn_id] and held[0]["reasons"] == ["wrong_store"]
    # A terminal's token is not an admin's.
    as_till = httpx.post(
        f"{chain.hq.url}/v1/admin/quarantine/{item.txn_id}/release",
        json={"note": "mine"},
        headers={"Authorization": f"Bearer {chain.tokens['T-A']}"},
        timeout=10,
    )
    assert as_till.status_code in (401, 403)
    released = httpx.post(
        f"{chain.hq.url}/v1/admin/quarantine/{item.txn_id}/release",
        json={"note": "the till was moved to S-B; checked with the store"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert released.status_code == 200 and released.json()["effect"] == "applied"
    assert chain.balance() == Balance(before.points + 10, before.stored_value)
    [settled] = [i for i in chain.items() if i.quarantined]
    assert (settled.state.value, settled.settled_by) == ("settled_manual", "Mio")
    again = httpx.post(
        f"{chain.hq.url}/v1/admin/quarantine/{item.txn_id}/reject",
        json={"note": "no"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert again.status_code == 404  # decided once


def test_a_rejected_entry_never_applies(chain: Chain) -> None:
    before = chain.balance()
    chain.push("T-A", "topup", {"member_id": "M-1", "amount": 100_000})
    [item] = chain.items()
    chain.hq.cli("reject", item.txn_id or "", "--by", "Mio", "--note", "a till never tops up")
    assert chain.effect(item.txn_id or "") == "rejected"
    assert chain.balance() == before
    assert chain.items()[0].state.value == "settled_manual"


def _code_id(code: str) -> str:
    from terminal import payments as pay

    return pay.parse_code(code).code_id


def _last_txn(chain: Chain, terminal_id: str) -> str:
    from hq.store import HqStore

    store = HqStore(chain.hq.db)
    try:
        return store.entries(terminal_id)[-1].txn_id
    finally:
        store.close()


def _topup(member_id: str, amount: int, store_id: str = "S-A") -> dict[str, Any]:
    return {
        "member_id": member_id,
        "store_id": store_id,
        "amount": amount,
        "stored_value_delta": amount,
        "local_time": today_local(),
    }


def test_topups_only_where_enabled_within_the_tills_limits_and_voids_only_of_its_own(chain: Chain) -> None:
    m1, m2 = chain.balance("M-1"), chain.balance("M-2")
    # Not enabled: stored, quarantined, nothing credited.
    assert chain.push("T-A", "till_topup", _topup("M-1", 100_000)).status_code == 200
    assert only_item(chain, "topup_not_enabled").quarantined and chain.balance("M-1") == m1
    # The till's credential cannot enable itself; an administrator can, and only with real limits.
    policy = {"enabled": True, "per_transaction": 5000, "per_day": 12000, "per_member_day": 8000, "offline_total": 0}
    url = f"{chain.hq.url}/v1/admin/terminals/T-A/topups"
    stolen = {"Authorization": f"Bearer {chain.tokens['T-A']}"}
    assert httpx.put(url, json=policy, headers=stolen, timeout=10).status_code == 403
    unlimited = {**policy, "per_day": 0}
    refused = httpx.put(url, json=unlimited, headers=chain.admin_headers, timeout=10)
    assert refused.status_code == 422 and refused.json()["code"] == "topup_policy_invalid"
    shown = httpx.put(url, json=policy, headers=chain.admin_headers, timeout=10).json()
    assert shown == {**policy, "timezone": "UTC", "day_starts": "00:00"}  # with its store's business day
    mistyped = httpx.get(url.replace("T-A", "T-NOBODY"), headers=chain.admin_headers, timeout=10)
    assert mistyped.status_code == 404 and mistyped.json()["code"] == "not_found", mistyped.text  # not "disabled"
    # Within the limits: credited, naming the till and its business day. Beyond: quarantined.
    for member_id, amount in (("M-1", 5000), ("M-1", 5000), ("M-2", 5000), ("M-2", 5000), ("M-1", 5001)):
        assert chain.push("T-A", "till_topup", _topup(member_id, amount)).status_code == 200
    assert chain.balance("M-1").stored_value == m1.stored_value + 5000
    assert chain.balance("M-2").stored_value == m2.stored_value + 5000
    over = sorted(i.detail["code"] for i in chain.items() if i.reason.value == "topup_over_limit")
    assert over == ["topup_limit_day", "topup_limit_member_day", "topup_limit_transaction"]
    # Another till voids T-A's top-up: it undoes nothing of its own.
    credited = next(i for i in _topups(chain) if i[1] == "applied" and i[2] == "M-1")
    void = {**_topup("M-1", 5000, "S-B"), "original_txn": credited[0], "stored_value_delta": -5000}
    assert chain.push("T-B", "topup_void", void).status_code == 200
    bad = only_item(chain, "topup_void_invalid")
    assert bad.quarantined and bad.detail["problem"] == "no credited top-up of this till by that number"
    assert chain.balance("M-1").stored_value == m1.stored_value + 5000
    # An administrator's release of the first, held top-up credits it after all.
    held = only_item(chain, "topup_not_enabled").txn_id
    reply = httpx.post(
        f"{chain.hq.url}/v1/admin/quarantine/{held}/release", json={"note": "cash counted"}, headers=chain.admin_headers
    )
    assert reply.status_code == 200, reply.text
    assert chain.balance("M-1").stored_value == m1.stored_value + 105_000


def _topups(chain: Chain) -> list[tuple[str, str, str]]:
    """(txn, effect, member) of the top-ups head office holds, in the order they came."""
    store = HqStore(chain.hq.db)
    try:
        with store.db.read() as tx:
            rows = tx.all(
                "SELECT txn_id, effect, member_id FROM journal WHERE kind = 'till_topup' ORDER BY received_at, seq"
            )
    finally:
        store.close()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_door_check_ins_from_a_stolen_credential_create_no_value(chain: Chain) -> None:
    """A ``checkin`` entry is a visit: with values smuggled in it is malformed, for another store it is held;
    the ones that count change no balance (a check-in campaign's reward would be a personal coupon)."""
    before = chain.balance()
    door = {"member_id": "M-1", "store_id": "S-A", "reader": "door"}
    for _ in range(3):  # tapped again and again: stored, one visit
        assert chain.push("T-A", "checkin", door).status_code == 200
    assert chain.push("T-A", "checkin", {**door, "points_delta": 5000}).status_code == 200
    assert chain.push("T-A", "checkin", {**door, "store_id": "S-B"}).status_code == 200
    assert chain.balance() == before
    assert {("malformed_entry", True), ("wrong_store", True)} <= chain.reasons()
    hq = HqStore(chain.hq.db)
    try:
        with hq.db.read() as tx:
            visits = tx.all("SELECT member_id, store_id FROM checkins")
            effects = sorted(str(r[0]) for r in tx.all("SELECT effect FROM journal WHERE kind = 'checkin'"))
    finally:
        hq.close()
    assert [tuple(v) for v in visits] == [("M-1", "S-A")]
    assert effects == ["malformed", "none", "none", "none", "quarantined"]


def test_an_enrolment_cannot_take_up_a_member_id_head_office_gives_later(chain: Chain) -> None:
    """A till makes its members' ids itself (``E-`` and a UUIDv7); a credential naming another id (the next of the
    chain's own numbering) with a card of its own would hold that member's card once head office made the member."""
    squatted = "f0" * 32
    enrol = {**entries.enrol("E-ANY", squatted, store_id="S-A", name="anyone"), "member_id": "M-0100"}
    reply = chain.push("T-A", "enrol", enrol)
    assert reply.status_code == 200 and reply.json()["stored"] == 1  # stored: nothing lost
    item = only_item(chain, "malformed_entry")
    assert item.quarantined and chain.effect(item.txn_id or "") == "malformed"  # it can only be rejected
    store = HqStore(chain.hq.db)
    try:
        assert store.member("M-0100") is None
        store.upsert_member("M-0100", "Alice", "basic", 0)  # head office's own member, made later
        with store.db.read() as tx:
            assert tx.one("SELECT member_id FROM cards WHERE uid_hash = ?", [squatted]) is None
    finally:
        store.close()


def test_a_gift_cards_balance_check_does_not_say_which_member_keeps_the_card(chain: Chain) -> None:
    """A till may ask head office a gift card's state and balance; which member keeps the card in the wallet is
    personal data no till needs. The feed lists every card id, so a credential that read the holder could map
    the chain's gift cards to its members."""
    admin = HqStore(chain.hq.db)
    try:
        card = admin.import_gift_card("cd" * 32, 5000, "Mio", "old system")
        admin.attach_gift_card(card.card_id, "M-1", "Mio", "seen at the counter")
        assert admin.gift_card(card.card_id)["holder"] == "M-1"  # head office's own view keeps it
    finally:
        admin.close()
    reply = httpx.get(
        f"{chain.hq.url}/v1/giftcards/{card.card_id}",
        headers={"Authorization": f"Bearer {chain.tokens['T-A']}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    shown = reply.json()
    assert shown["balance"] == 5000 and shown["card_id"] == card.card_id
    assert "M-1" not in reply.text and "holder" not in shown and "activity" not in shown


def _tapped(chain: Chain) -> dict[str, Any]:
    """A fresh read of Aiko's card, as the thief holding it taps it on a reader of their own."""
    url = chain.card.ndef_url()
    return {"uid_hash": chain.uid_hash, "trust": "sun", "counter": chain.card.counter, "sun": url}


def test_a_members_card_tapped_at_a_stolen_till_credential_makes_its_merchant_owed_no_more_than_the_bound(
    chain: Chain,
) -> None:
    """The thief holds Aiko's card (5,000 of stored value, 1,000 points) and merchant A's till credential: every
    payment proves itself with a fresh SUN read, as an offline till's would. What they take beyond the balances
    is applied up to head office's bounds a day (the negative balance carried, as two honest offline tills
    leave it), the rest held for a person, and merchant A's statement is owed no more."""
    from hq import merchants

    store = HqStore(chain.hq.db)
    try:
        with store.db.write() as tx:
            merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
            merchants.assign_store(tx, "S-A", "M-A", "UTC")
        cap, points_cap = store.settings.overspent_per_day, store.settings.overspent_points_per_day
    finally:
        store.close()

    def pay(value: int = 0, points: int = 0) -> str:
        sale = entries.sale(
            "M-1",
            value + points,
            stored_value=value,
            redeemed=points,
            proof="card",
            tap=_tapped(chain),
            store_id="S-A",
            local_time=today_local(),
        )
        reply = chain.push("T-A", "sale", sale)
        assert reply.status_code == 200 and reply.json()["stored"] == 1, reply.text
        return _last_txn(chain, "T-A")

    within = pay(value=5000 + cap)
    beyond = pay(value=1_000_000_000)
    within_points = pay(points=1000 + points_cap)
    beyond_points = pay(points=1_000_000_000)
    assert chain.balance() == Balance(-points_cap, -cap)
    found = {(i.txn_id, i.reason.value, i.quarantined) for i in chain.items()}
    assert {
        (within, "stored_value_overspent", False),
        (beyond, "stored_value_overspent", True),
        (within_points, "points_overspent", False),
        (beyond_points, "points_overspent", True),
    } <= found
    assert (chain.effect(beyond), chain.effect(beyond_points)) == ("quarantined", "quarantined")
    month = today_local()[:7]
    reply = httpx.get(f"{chain.hq.url}/v1/admin/settlement/{month}/M-A", headers=chain.admin_headers, timeout=10)
    assert reply.status_code == 200, reply.text
    statement = reply.json()
    assert (statement["money"]["value_accepted"], statement["points"]["accepted"]) == (5000 + cap, 1000 + points_cap)


def test_a_refund_at_another_merchants_store_is_held_and_moves_no_money_between_merchants(chain: Chain) -> None:
    """Merchant B rings a sale Aiko pays with her card (stored value and points) and the holder of merchant A's
    till credential refunds it at A: Aiko would have her value back, B keep what it was owed for the sale and A
    owe it all. The refund, in either order of arrival, is held ``refund_other_merchant`` and nothing moves."""
    from hq import merchants

    store = HqStore(chain.hq.db)
    try:
        with store.db.write() as tx:
            merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
            merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
            merchants.assign_store(tx, "S-A", "M-A", "UTC")
            merchants.assign_store(tx, "S-B", "M-B", "UTC")
    finally:
        store.close()

    def sold(txn_id: str) -> None:
        sale = entries.sale(
            "M-1",
            1000,
            stored_value=800,
            redeemed=200,
            proof="card",
            tap=_tapped(chain),
            store_id="S-B",
            local_time=today_local(),
        )
        assert chain.push("T-B", "sale", sale, txn_id=txn_id).json()["stored"] == 1

    def refunded(txn_id: str) -> str:
        back = entries.refund(txn_id, store_id="S-A", money_back=800, stored_value=800, restored=200, returned=[(0, 1)])
        assert chain.push("T-A", "refund", back).json()["stored"] == 1
        return _last_txn(chain, "T-A")

    sold("SALE-B-1")
    paid = chain.balance()
    first = refunded("SALE-B-1")
    later = refunded("SALE-B-2")  # before its sale: held for the sale, then for its merchant once the sale is here
    sold("SALE-B-2")
    assert chain.balance() == Balance(paid.points - 200, paid.stored_value - 800)
    held = {(i.txn_id, i.reason.value) for i in chain.items() if i.quarantined and i.state.value == "open"}
    assert {(first, "refund_other_merchant"), (later, "refund_other_merchant")} <= held
    assert (chain.effect(first), chain.effect(later)) == ("quarantined", "quarantined")
    month = today_local()[:7]
    for merchant, owed in (("M-A", 0), ("M-B", 1600)):
        reply = httpx.get(
            f"{chain.hq.url}/v1/admin/settlement/{month}/{merchant}", headers=chain.admin_headers, timeout=10
        )
        assert reply.json()["money"]["value_accepted"] == owed, (merchant, reply.text)
