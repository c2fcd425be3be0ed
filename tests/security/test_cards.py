"""A secure card's message used at one till cannot pay again at another: head office keeps every read
counter used in the chain, confirms card payments online, quarantines a replay that arrives from an
offline till, and sends the high-water mark down so tills refuse stale messages themselves.

Real head-office process holding the chain's SUN and card-hash keys; the tills are the till's own code."""

from __future__ import annotations

import httpx
import pytest

from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line
from tests.fixtures import entries
from tests.security.chain import Balance, Chain, Till, today_local

LUNCH = Basket((Line("LUNCH", 1, 1200),))


def pay_by_card(till: Till, url: str) -> int:
    tap = till.tap(url)
    receipt = till.service.commit(till.service.quote("M-1", LUNCH), Payment(None, card=tap), tapped=tap)
    return receipt.total


def refused(till: Till, url: str) -> Code:
    before = len(till.store.entries())
    with pytest.raises(Rejected) as caught:
        pay_by_card(till, url)
    assert len(till.store.entries()) == before  # nothing written
    return caught.value.code


def test_a_message_used_online_at_one_till_is_refused_online_at_the_next(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, b = tills
    url = chain.card.ndef_url()
    assert pay_by_card(a, url) == 1200  # confirmed online: the counter is used chain-wide from now on
    assert refused(b, url) is Code.REPLAYED_CARD  # a clone replaying the message at another till, online
    a.client.sync_once()
    assert chain.balance().stored_value == 5000 - 1200
    # Once the other till has pulled the card's high-water mark, it refuses the message by itself, offline.
    b.client.sync_once()
    assert b.store.card_counter(chain.uid_hash) == 1
    b.offline()
    assert refused(b, url) is Code.REPLAYED_CARD
    assert pay_by_card(b, chain.card.ndef_url()) == 1200  # the real card, tapped again: a new counter
    b.client.sync_once()
    assert chain.balance() == Balance(chain.balance().points, 5000 - 2400)
    assert not [i for i in chain.items() if i.quarantined]


def test_a_message_replayed_at_two_offline_tills_is_charged_once(chain: Chain, tills: tuple[Till, Till]) -> None:
    a, b = tills
    a.offline()
    b.offline()
    url = chain.card.ndef_url()
    pay_by_card(a, url)
    pay_by_card(b, url)  # neither till can know: both approve within their offline limits
    a.client.sync_once()
    b.client.sync_once()
    assert chain.balance().stored_value == 5000 - 1200  # the member pays once
    [item] = [i for i in chain.items() if i.quarantined]
    assert (item.reason.value, item.terminal_id, item.detail["first_terminal"], item.detail["paid"]) == (
        "card_replayed",
        "T-B",
        "T-A",
        True,
    )
    assert chain.effect(item.txn_id or "") == "quarantined"
    # Both tills learn the counter is spent; B's own balance follows head office's.
    assert b.store.card_counter(chain.uid_hash) == 1
    assert b.store.stored_value("M-1") == 5000 - 1200


def test_a_forged_or_borrowed_card_proof_from_a_stolen_credential(chain: Chain) -> None:
    before = chain.balance()
    tap = {
        "uid_hash": chain.uid_hash,
        "trust": "sun",
        "counter": 77,
        "sun": "https://tillpoint.example/c?picc_data=" + "00" * 16 + "&cmac=" + "00" * 8,
    }
    chain.push(
        "T-A",
        "sale",
        entries.sale("M-1", 1000, stored_value=900, proof="card", tap=tap, store_id="S-A", local_time=today_local()),
    )
    genuine = chain.card.ndef_url()  # a real message of Aiko's card, spent on Ben's sale
    on_ben = {"uid_hash": chain.uid_hash, "trust": "sun", "counter": chain.card.counter, "sun": genuine}
    chain.push(
        "T-A",
        "sale",
        entries.sale("M-2", 1000, stored_value=900, proof="card", tap=on_ben, store_id="S-A", local_time=today_local()),
    )
    # A Lite-S "MAC" read is the till's word only: bounded per terminal and day, then held.
    mac = {"uid_hash": chain.uid_hash, "trust": "mac"}
    for _ in range(3):
        chain.push(
            "T-A",
            "sale",
            entries.sale(
                "M-1", 30_000, stored_value=20_000, proof="card", tap=mac, store_id="S-A", local_time=today_local()
            ),
        )
    held = sorted((i.reason.value, i.detail.get("problem", "")[:24]) for i in chain.items() if i.quarantined)
    assert held == [
        ("proof_invalid", "This card failed its aut"),
        ("proof_invalid", "the card is not this mem"),
        ("proof_unverified", ""),
    ]
    assert chain.balance("M-2") == Balance(500, 1000)
    assert chain.balance().stored_value == before.stored_value - 2 * 20_000  # two within the day's bound


def test_a_stolen_card_blocked_while_a_till_is_offline_costs_the_member_nothing(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    a.offline()  # the till does not learn of the block: it approves within its offline limits
    blocked = httpx.post(
        f"{chain.hq.url}/v1/admin/cards/{chain.uid_hash}/block",
        json={"reason": "card reported stolen"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert blocked.status_code == 200, blocked.text
    # The thief taps the real card: a genuine message with a new counter, paid offline after the block.
    assert pay_by_card(a, chain.card.ndef_url()) == 1200
    a.client.sync_once()
    assert chain.balance().stored_value == 5000  # the member does not pay for the thief
    [item] = [i for i in chain.items() if i.reason.value == "card_blocked"]
    assert item.quarantined and item.terminal_id == "T-A" and item.detail["uid_hash"] == chain.uid_hash
    assert chain.effect(item.txn_id or "") == "quarantined"
    # The till learns both: the card is blocked, and the member's balance is head office's.
    assert a.store.stored_value("M-1") == 5000
    assert refused(a, chain.card.ndef_url()) is Code.BLOCKED_CARD


def test_a_member_blocked_while_a_till_is_offline_pays_nothing_there_until_a_person_decides(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    a.offline()
    blocked = httpx.post(
        f"{chain.hq.url}/v1/admin/members/M-1/block",
        json={"reason": "card reported stolen"},  # the member blocked, as docs/reconciliation.md shows it
        headers=chain.admin_headers,
        timeout=10,
    )
    assert blocked.status_code == 200, blocked.text
    assert pay_by_card(a, chain.card.ndef_url()) == 1200  # the till cannot know: within its offline limits
    a.client.sync_once()
    assert chain.balance().stored_value == 5000
    [item] = [i for i in chain.items() if i.reason.value == "member_blocked"]
    assert item.quarantined and item.detail["member_id"] == "M-1"
    assert chain.effect(item.txn_id or "") == "quarantined"
