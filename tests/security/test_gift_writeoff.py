"""A gift card payment that took the card below zero (a till that had not pulled the card's clear, or two
offline tills paying the same balance) is the chain's loss; once head office writes that loss off (a clear of
the card below zero, or the card sold again), a refund of that payment gives back only the part the card's
value covered: the rest was never value, and the write-off took it off the books already."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.books import books_balanced
from tests.sync.test_hq_giftcards import Card, Chain


@pytest.fixture
def chain(hq_url: str) -> Iterator[Chain]:
    made = Chain(hq_url)
    with books_balanced(made.store):
        yield made


def test_a_refund_of_an_overspent_payment_written_off_since_makes_no_value(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4EA01"))
    chain.sell("T1", card, 300)
    chain.store.clear_gift_card(card.card_id, "Mio", "retired: refunded in cash at the desk")
    paid = chain.pay("T2", card, 200)  # offline, before T2 pulled the clear: the goods went, the card -200
    assert chain.card(card)["balance"] == -200
    chain.store.clear_gift_card(card.card_id, "Mio", "written off")  # the chain takes the loss
    held = chain.push("T2", "gift_refund", card, amount=200, original_txn=paid)  # the goods come back
    shown = chain.card(card)
    assert (shown["state"], shown["balance"]) == ("cleared", 0)  # no value out of nothing
    [item] = [i for i in chain.held("T2") if i.txn_id == held]
    assert item.reason.value == "gift_refund_invalid" and item.detail["written_off"] == 200


def test_a_card_sold_again_does_not_take_a_refund_of_the_loss_written_off_when_it_was(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4EA02"))
    chain.sell("T1", card, 1000)
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    paid = chain.pay("T2", card, 700)  # offline after the clear: the card -700
    chain.sell("T1", card, 500)  # sold again: the -700 written off first, the buyer's card holds 500
    held = chain.push("T2", "gift_refund", card, amount=700, original_txn=paid)
    assert chain.card(card)["balance"] == 500
    assert held in {i.txn_id for i in chain.held("T2")}


def test_a_partly_covered_payment_gives_back_what_the_card_held_after_a_write_off(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4EA03"))
    chain.sell("T1", card, 300)
    paid = chain.pay("T2", card, 1000)  # 300 the card held, 700 beyond it (flagged)
    assert chain.card(card)["balance"] == -700
    chain.store.clear_gift_card(card.card_id, "Mio", "written off")
    assert chain.push("T2", "gift_refund", card, amount=1000, original_txn=paid) in {i.txn_id for i in chain.held("T2")}
    chain.push("T2", "gift_refund", card, amount=300, original_txn=paid)  # what the card's value paid
    shown = chain.card(card)
    assert (shown["state"], shown["balance"]) == ("active", 300)


def test_a_refund_of_an_overspent_payment_not_written_off_brings_the_card_back_to_where_it_was(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4EA04"))
    chain.sell("T1", card, 300)
    first = chain.pay("T1", card, 300)
    late = chain.pay("T2", card, 300)  # two offline tills paying the same balance: -300
    chain.push("T2", "gift_refund", card, amount=300, original_txn=late)
    chain.push("T1", "gift_refund", card, amount=100, original_txn=first)
    assert chain.card(card)["balance"] == 100
    assert chain.held("T1") == [] and chain.held("T2") == []
