"""Gift cards in a member's wallet (hq/giftholders.py, docs/giftcards.md "In the member's wallet"), on SQLite and
PostgreSQL, with a virtual NTAG 424 DNA whose every read is a new SUN URL: a fresh read keeps the card in one
member's wallet and is used once in the office (a URL out of a browser's history, a read older than a till's
payment, another member's replay: refused); a forged or unknown card, a card in another wallet, blocked or
cleared is refused with its code; the holder blocks a lost card and the tills learn it; a card sold again
leaves the old wallet; erasure lets the member's cards go, their value untouched; staff attach and detach by
command, audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hq import audit, giftholders
from hq.erasure import erase_member
from hq.errors import Refused
from hq.policy import CardKeys
from sync.protocol import ErrorCode
from tests.sync.test_hq_giftcards import Card, Chain, chain  # noqa: F401 - fixture
from tillpoint.cli import app

NOW = "2026-12-01T10:00:00Z"


def attach(office: Chain, url: str, member: str) -> str:
    keys = office.store.settings.card_keys
    return office.store.db.transact(lambda tx: giftholders.attach(tx, keys, url, member, NOW)).card_id


def refused(code: ErrorCode, call: object) -> None:
    with pytest.raises(Refused) as caught:
        assert callable(call)
        call()
    assert caught.value.code is code, caught.value


def held(office: Chain, member: str) -> list[tuple[str, int, str]]:
    with office.store.db.read() as tx:
        return [(h.card.card_id, h.card.balance, h.card.state.value) for h in giftholders.held_by(tx, member)]


@pytest.fixture
def members(chain: Chain) -> Chain:  # noqa: F811
    for member, name in (("M-A", "Aiko"), ("M-B", "Ben")):
        chain.store.upsert_member(member, name, "basic", 0)
    return chain


def test_a_fresh_phone_read_keeps_the_card_once_and_an_old_or_replayed_url_does_nothing(members: Chain) -> None:
    office, card = members, Card(bytes.fromhex("04A1B2C3D4E501"))
    office.sell("T1", card, 5000)
    url = card.tag.ndef_url()
    with office.store.db.read() as tx:
        seen = giftholders.read_tap(tx, office.store.settings.card_keys, url)
    assert (seen.card.card_id, seen.card.balance, seen.holder) == (card.card_id, 5000, None)
    page = office.store.changes(0, 1000)
    assert attach(office, url, "M-A") == card.card_id
    assert held(office, "M-A") == [(card.card_id, 5000, "active")]
    assert office.card(card)["holder"] == "M-A"
    # the read is used: the same URL again (a browser's history, a replay) keeps nothing for anyone
    refused(ErrorCode.REPLAYED_CARD, lambda: attach(office, url, "M-B"))
    refused(ErrorCode.REPLAYED_CARD, lambda: attach(office, url, "M-A"))
    # and every till learns that read is spent: the card's counter went down the changes feed
    [fed] = [c for c in office.store.changes(page.cursor, 1000).gift_cards if c.card_id == card.card_id]
    assert fed.body["counter"] == card.tag.counter
    # a read older than a payment a till journaled is stale too
    older = card.tag.ndef_url()
    office.pay("T2", card, 1000)
    refused(ErrorCode.REPLAYED_CARD, lambda: attach(office, older, "M-B"))
    # the holder's fresh tap says it is theirs already, and uses nothing
    again = card.tag.ndef_url()
    assert attach(office, again, "M-A") == card.card_id
    assert held(office, "M-A") == [(card.card_id, 4000, "active")]


def test_forged_unknown_held_blocked_and_cleared_cards_are_refused_with_their_codes(members: Chain) -> None:
    office = members
    card, other, never_sold = (Card(bytes.fromhex(h)) for h in ("04A1B2C3D4E502", "04A1B2C3D4E503", "04A1B2C3D4E504"))
    office.sell("T1", card, 3000)
    office.sell("T1", other, 2000)
    attach(office, card.tag.ndef_url(), "M-A")
    refused(ErrorCode.GIFT_CARD_HELD, lambda: attach(office, card.tag.ndef_url(), "M-B"))
    forged = card.tag.ndef_url()
    forged = forged[:-1] + ("0" if forged[-1] != "0" else "1")  # one digit of the MAC changed
    refused(ErrorCode.FORGED_CARD, lambda: attach(office, forged, "M-B"))
    refused(ErrorCode.FORGED_CARD, lambda: attach(office, "https://tillpoint.example/c?x=1", "M-B"))
    refused(ErrorCode.GIFT_CARD_UNKNOWN, lambda: attach(office, never_sold.tag.ndef_url(), "M-B"))
    with office.store.db.read() as tx:
        refused(ErrorCode.SUN_KEYS_MISSING, lambda: giftholders.read_tap(tx, CardKeys(), other.tag.ndef_url()))
    office.push("T1", "gift_block", other, reason="reported lost at the till")
    refused(ErrorCode.GIFT_CARD_BLOCKED, lambda: attach(office, other.tag.ndef_url(), "M-B"))
    office.store.unblock_gift_card(other.card_id, "Mio", "found")
    office.store.clear_gift_card(other.card_id, "Mio", "retired")
    refused(ErrorCode.GIFT_CARD_CLEARED, lambda: attach(office, other.tag.ndef_url(), "M-B"))
    assert held(office, "M-B") == []
    # nothing refused used a read: the blocked card's refusal left its next read good
    with office.store.db.read() as tx:
        assert giftholders.read_tap(tx, office.store.settings.card_keys, other.tag.ndef_url()).holder is None


def test_the_holder_blocks_a_lost_card_every_till_learns_it_and_nobody_else_can(members: Chain) -> None:
    office, card = members, Card(bytes.fromhex("04A1B2C3D4E505"))
    office.sell("T1", card, 4000)
    attach(office, card.tag.ndef_url(), "M-A")
    page = office.store.changes(0, 1000)
    db = office.store.db
    refused(
        ErrorCode.GIFT_CARD_UNKNOWN, lambda: db.transact(lambda tx: giftholders.block(tx, card.card_id, "M-B", NOW))
    )
    db.transact(lambda tx: giftholders.block(tx, card.card_id, "M-A", NOW))
    shown = office.card(card)
    assert shown["state"] == "blocked" and shown["balance"] == 4000
    assert (shown["activity"][-1]["kind"], shown["activity"][-1]["by"]) == ("gift_block", "member M-A")
    [fed] = [c for c in office.store.changes(page.cursor, 1000).gift_cards if c.card_id == card.card_id]
    assert fed.body["state"] == "blocked"
    # blocked twice is refused; the member cannot unblock (only head office does)
    refused(
        ErrorCode.GIFT_CARD_INVALID, lambda: db.transact(lambda tx: giftholders.block(tx, card.card_id, "M-A", NOW))
    )
    assert held(office, "M-A") == [(card.card_id, 4000, "blocked")]
    db.transact(lambda tx: giftholders.detach(tx, card.card_id, "M-A"))
    assert held(office, "M-A") == [] and office.card(card)["holder"] is None
    refused(ErrorCode.GIFT_CARD_UNKNOWN, lambda: db.transact(lambda tx: giftholders.detach(tx, card.card_id, "M-A")))


def test_a_card_sold_again_leaves_the_old_wallet_and_erasure_lets_the_members_cards_go(members: Chain) -> None:
    office = members
    card, second = Card(bytes.fromhex("04A1B2C3D4E506")), Card(bytes.fromhex("04A1B2C3D4E507"))
    office.sell("T1", card, 1000)
    office.sell("T1", second, 2500)
    attach(office, card.tag.ndef_url(), "M-A")
    attach(office, second.tag.ndef_url(), "M-A")
    office.store.clear_gift_card(card.card_id, "Mio", "retired")
    office.sell("T2", card, 700)  # sold again to someone else
    assert held(office, "M-A") == [(second.card_id, 2500, "active")]
    attach(office, card.tag.ndef_url(), "M-B")
    done = erase_member(office.store, "M-A", "privacy desk")
    assert done["gift_cards_let_go"] == 1
    assert held(office, "M-A") == [] and office.card(second)["holder"] is None
    assert office.card(second)["balance"] == 2500  # a bearer card: its value is whoever holds it
    assert held(office, "M-B") == [(card.card_id, 700, "active")]


def test_staff_attach_and_detach_by_command_audited_and_refused_without_a_reason(tmp_path: Path) -> None:
    office = Chain(str(tmp_path / "hq.db"))
    try:
        office.store.upsert_member("M-A", "Aiko", "basic", 0)
        card = Card(bytes.fromhex("04A1B2C3D4E508"))
        office.sell("T1", card, 1200)
    finally:
        office.store.close()
    runner, db = CliRunner(), ["--db", str(tmp_path / "hq.db")]
    base = ["hq", "giftcard"]
    done = runner.invoke(app, [*base, "attach", card.card_id, "M-A", "--by", "Mio", "--reason", "FeliCa at desk", *db])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["holder"] == "M-A"
    again = runner.invoke(app, [*base, "attach", card.card_id, "M-B", "--by", "Mio", "--reason", "x", *db])
    assert again.exit_code != 0 and "no member M-B" in again.output
    bare = runner.invoke(app, [*base, "detach", card.card_id, "--by", "Mio", "--reason", " ", *db])
    assert bare.exit_code != 0 and "gift_card_invalid" in bare.output
    gone = runner.invoke(app, [*base, "detach", card.card_id, "--by", "Mio", "--reason", "asked by the member", *db])
    assert gone.exit_code == 0 and json.loads(gone.output) == {"card_id": card.card_id, "detached_from": "M-A"}
    office = Chain(str(tmp_path / "hq.db"))
    try:
        with office.store.db.read() as tx:
            actions = [(r.actor, r.action, r.target, r.details) for r in audit.recent(tx)]
        assert ("Mio", "gift_attach", card.card_id, {"member_id": "M-A"}) in actions
        assert ("Mio", "gift_detach", card.card_id, {"member_id": "M-A"}) in actions
        assert audit.verify(office.store.db).ok
    finally:
        office.store.close()


def sold_with_a_tap(office: Chain, terminal: str, card: Card, amount: int) -> None:
    """A till sells the card on a tap of it: the sale names that read's counter, as the till's sale does."""
    url = card.tag.ndef_url()  # the till reads the card
    office.push(terminal, "gift_activate", card, amount=amount, trust="sun", counter=card.tag.counter, sun=url)


def test_a_read_from_before_the_card_was_sold_or_sold_again_keeps_nothing(members: Chain) -> None:
    """A rack's card read by a phone before it is sold, and a holder's last read before the card was cleared and
    sold to someone else: the sale names its own read (the till's tap), so every earlier read is spent."""
    office, card = members, Card(bytes.fromhex("04A1B2C3D4E509"))
    on_the_rack = card.tag.ndef_url()  # read (not kept) by a passer-by before the sale
    sold_with_a_tap(office, "T1", card, 3000)
    refused(ErrorCode.REPLAYED_CARD, lambda: attach(office, on_the_rack, "M-B"))
    attach(office, card.tag.ndef_url(), "M-A")
    kept_in_history = card.tag.ndef_url()  # Aiko's phone reads it once more; the page uses nothing
    office.store.clear_gift_card(card.card_id, "Mio", "retired")
    sold_with_a_tap(office, "T2", card, 2000)
    assert held(office, "M-A") == []
    refused(ErrorCode.REPLAYED_CARD, lambda: attach(office, kept_in_history, "M-A"))  # not Ben's card in her wallet
    attach(office, card.tag.ndef_url(), "M-B")  # the buyer's own fresh read keeps it
    assert held(office, "M-B") == [(card.card_id, 2000, "active")]
