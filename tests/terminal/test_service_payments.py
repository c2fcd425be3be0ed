"""Stored-value payments through the service and a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal import credentials
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Identified, Payment
from terminal.model import Basket, Card, EarnRule, Line, Member, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.clock import Clock

NOW = 1_795_000_000.0
HQ_KEY = Ed25519PrivateKey.generate()
PHONE = Ed25519PrivateKey.generate()
CERT = pay.issue_cert(
    HQ_KEY, "pay-1", bytes.fromhex("00000000000000a1"), "M-1", pay.public_bytes(PHONE), int(NOW) - 60, 86_400 * 30, 3000
)
BASKET = Basket((Line("LUNCH", 1, 2000),))
UID1 = "a1" * 32  # the card's keyed hash
LIMITS = pay.RiskLimits(
    per_transaction=2500, per_member_day=4000, terminal_total=6000, max_offline_s=3600, max_clock_age_s=7200
)


@pytest.fixture
def till(tmp_path: Path) -> tuple[Service, Store, Clock]:
    store = Store.open(tmp_path / "t.db")
    store.apply_changes(
        [Member("M-1", "Aiko", "gold", 1000), Member("M-2", "Ben", "basic", 0)],
        [Card(UID1, "M-1")],
        [EarnRule("base", 1, 100)],
        1,
    )
    with store.db.conn:
        store.db.conn.execute("UPDATE members SET stored_value = 10000, hq_stored_value = 10000")
        body = {
            "alg": "ed25519",
            "purpose": "payment",
            "status": "active",
            "public_key": pay.public_bytes(HQ_KEY).hex(),
        }
        store.db.conn.execute("INSERT INTO hq_keys (key_id, body, sig) VALUES (?,?,?)", ("pay-1", json.dumps(body), ""))
    store.put_device_certs({CERT.cert_id.hex(): CERT.to_doc()})
    clock = Clock(NOW)
    store.set_state(last_sync_ok=utc_iso(NOW - 5))  # head office reachable
    return Service(store, "T-1", clock=clock, limits=LIMITS), store, clock


def code(clock: Clock, counter: int, key: Ed25519PrivateKey = PHONE) -> str:
    return pay.make_code(key, CERT.cert_id, int(clock.now), counter)


def test_pay_by_code_and_replay(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    text = code(clock, 1)
    receipt = service.commit(service.quote("M-1", BASKET), Payment(None, text))
    assert store.stored_value("M-1") == 8000
    entry = store.entries()[-1].payload
    assert (entry["stored_value"], entry["pos_due"], entry["paid_by"]) == (2000, 0, "payment_code")
    assert receipt.total == 2000
    before = len(store.entries())
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(None, text))
    assert info.value.code is Code.PAYMENT_CODE_REPLAYED
    assert len(store.entries()) == before and store.stored_value("M-1") == 8000


def test_split_tender_points_account_and_pos(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    store.put_docs(
        "rule_docs",
        {
            "redemption": {
                "kind": "redemption",
                "unit_points": 100,
                "unit_value": 100,
                "min_points": 100,
                "max_pct": 100,
            }
        },
    )
    quote = service.quote("M-1", BASKET, redeem=500)
    service.commit(quote, Payment(1000, code(clock, 2)))
    p = store.entries()[-1].payload
    assert p["points_redeemed"] == 500 and p["stored_value"] == 1000 and p["pos_due"] == 500
    assert p["discount"] + 500 + p["stored_value"] + p["pos_due"] == p["total"]


@pytest.mark.parametrize(
    ("make", "code_"),
    [
        (lambda c: code(c, 3, Ed25519PrivateKey.generate()), Code.PAYMENT_CODE_FORGED),
        (lambda c: pay.make_code(PHONE, CERT.cert_id, int(c.now) - 300, 4), Code.PAYMENT_CODE_EXPIRED),
        (lambda c: "TPP1:garbage", Code.PAYMENT_CODE_MALFORMED),
        (lambda c: pay.make_code(PHONE, bytes(8), int(c.now), 5), Code.DEVICE_CERT_UNKNOWN),
    ],
)
def test_bad_codes_write_nothing(till: tuple[Service, Store, Clock], make: object, code_: Code) -> None:
    service, store, clock = till
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(None, make(clock)))  # type: ignore[operator]
    assert info.value.code is code_
    assert store.entries() == [] and store.stored_value("M-1") == 10000


def test_revoked_device_and_other_member(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-2", BASKET), Payment(None, code(clock, 6)))
    assert info.value.code is Code.PAYMENT_CODE_FORGED  # M-1's phone cannot pay for M-2
    with store.db.conn:
        store.db.conn.execute(
            "INSERT INTO hq_revocations (revocation_id, kind, subject, body, sig) VALUES (?,?,?,?,?)",
            ("device:a1", "device", CERT.cert_id.hex(), "{}", ""),
        )
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(None, code(clock, 7)))
    assert info.value.code is Code.DEVICE_CERT_REVOKED


def test_cards_pay_only_when_they_prove_themselves(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    member = store.member("M-1")
    assert member is not None
    card = Card(UID1, "M-1")
    uid_only = Identified(member, card, credentials.CardProof(credentials.Trust.UID_ONLY), UID1)
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(None, card=uid_only))
    assert info.value.code is Code.CARD_CANNOT_PAY
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(500))  # no proof at all
    assert info.value.code is Code.PROOF_NEEDED
    sun = Identified(member, card, credentials.CardProof(credentials.Trust.SUN, 41), UID1)
    service.commit(service.quote("M-1", BASKET), Payment(None, card=sun))
    assert store.stored_value("M-1") == 8000
    replayed = Identified(member, card, credentials.CardProof(credentials.Trust.SUN, 41), UID1, at=1.0)
    with pytest.raises(Rejected) as info:  # the same SUN message read again: the counter did not rise
        service.commit(service.quote("M-1", BASKET), Payment(None, card=replayed))
    assert info.value.code is Code.REPLAYED_CARD


def test_a_card_payment_head_office_confirmed_is_taken_when_the_pull_brought_its_read_counter_first(
    till: tuple[Service, Store, Clock],
) -> None:
    """Confirming a card's payment, head office makes the tap's read counter the card's, and the till's pull (on
    its own thread) may bring it down before the till records the sale it was told to take: the sale is taken,
    never refused as a replay of itself; the same message again is refused."""
    service, store, _ = till
    member = store.member("M-1")
    assert member is not None

    def confirmed_then_pulled(request: dict[str, Any]) -> bool:
        store.apply_changes([], [Card(UID1, "M-1", counter=request["card"]["counter"])], [], 2)
        return True

    service.confirm_online = confirmed_then_pulled
    sun = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.SUN, 41), UID1)
    service.commit(service.quote("M-1", BASKET), Payment(None, card=sun))
    assert store.stored_value("M-1") == 8000 and store.entries()[-1].payload["offline"] is False
    assert store.card_counter(UID1) == 41
    replayed = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.SUN, 41), UID1, at=1.0)
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", BASKET), Payment(None, card=replayed))
    assert info.value.code is Code.REPLAYED_CARD
    assert len(store.entries()) == 1


def test_offline_limits(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    store.set_state(offline_since=utc_iso(NOW - 600), last_sync_ok=utc_iso(NOW - 700))
    small = Basket((Line("TEA", 1, 1600),))
    service.commit(service.quote("M-1", small), Payment(None, code(clock, 10)))  # 1600 offline: fine
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", small), Payment(None, code(clock, 11)))  # device cap 3000/day
    assert info.value.code is Code.OFFLINE_LIMIT_MEMBER_DAY
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", Basket((Line("TV", 1, 2600),))), Payment(None, code(clock, 12)))
    assert info.value.code is Code.OFFLINE_LIMIT_TRANSACTION
    clock.now += 3600
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-1", small), Payment(None, code(clock, 13)))
    assert info.value.code is Code.OFFLINE_TOO_LONG


def test_refund_goes_back_to_the_account(till: tuple[Service, Store, Clock]) -> None:
    service, store, clock = till
    sale = service.commit(service.quote("M-1", BASKET), Payment(1500, code(clock, 20)))
    assert store.stored_value("M-1") == 8500
    service.void(sale.txn_id)
    assert store.stored_value("M-1") == 10000
    assert store.entries()[-1].payload["pos_refund"] == 500


def test_a_secure_tap_is_used_once_even_just_to_earn(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    member = store.member("M-1")
    assert member is not None
    sun = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.SUN, 7), UID1)
    service.commit(service.quote("M-1", BASKET), Payment(card=sun))
    replayed = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.SUN, 7), UID1, at=2.0)
    with pytest.raises(Rejected) as info:  # a new read carrying the old message: a replay
        service.commit(service.quote("M-1", BASKET), Payment(card=replayed))
    assert info.value.code is Code.REPLAYED_CARD
    assert len(store.entries()) == 1


def test_one_secure_tap_serves_one_sale_then_only_identifies(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    member = store.member("M-1")
    assert member is not None
    tap = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.SUN, 9), UID1)
    service.commit(service.quote("M-1", BASKET), tapped=tap)  # the tap's counter is stored with this sale
    second = service.commit(service.quote("M-1", BASKET), tapped=tap)  # same tap, next sale: still earns
    assert second.points_delta > 0 and len(store.entries()) == 2
    with pytest.raises(Rejected) as info:  # but it cannot pay any more: tap again
        service.commit(service.quote("M-1", BASKET), Payment(None, card=tap), tapped=tap)
    assert info.value.code is Code.CARD_CANNOT_PAY


def test_a_lite_s_read_pays_for_one_sale_only(till: tuple[Service, Store, Clock]) -> None:
    service, store, _ = till
    member = store.member("M-1")
    assert member is not None
    mac = Identified(member, Card(UID1, "M-1"), credentials.CardProof(credentials.Trust.MAC), UID1, at=5.0)
    service.commit(service.quote("M-1", BASKET), Payment(None, card=mac), tapped=mac)
    with pytest.raises(Rejected) as info:  # the same read again (no counter to tell): it only identifies now
        service.commit(service.quote("M-1", BASKET), Payment(None, card=mac), tapped=mac)
    assert info.value.code is Code.CARD_CANNOT_PAY
    assert store.stored_value("M-1") == 8000
