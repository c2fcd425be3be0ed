"""Head office's gift cards (hq/giftcards.py), on SQLite and PostgreSQL, with real SUN messages of a virtual
NTAG 424 DNA and head office holding the chain's card keys: sold and loaded only within the till's stored-value
policy, paid on a tap that proves itself once in the chain, given back only what a card paid, blocked by a
till and unblocked by head office alone; what a stolen till credential, a cloned or replayed card message and
two offline tills can do, and what bounds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hq import audit, giftcards, ledger, merchants, reports, rollup, settlement
from hq.db.engine import Tx
from hq.db.schema import migrate
from hq.errors import Refused
from hq.ingest import Settings
from hq.policy import CardKeys
from hq.store import HqStore
from sync.protocol import (
    EodReport,
    ErrorCode,
    GiftActivatePayload,
    GiftConfirmRequest,
    ReconItem,
    SecureTap,
    WireEntry,
    day_totals,
)
from terminal import giftcards as gc
from terminal.credentials import card_uid_hash
from terminal.topups import TopupPolicy
from tests.sync.test_hq_ledger import seen
from tests.vcard import Ntag424

MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD_KEY = bytes(range(32))
DAY1 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Card:
    """A physical gift card: a virtual NTAG 424 DNA whose every read is a new SUN message."""

    def __init__(self, uid: bytes) -> None:
        self.tag = Ntag424(uid, MASTER)
        self.uid_hash = card_uid_hash(CARD_KEY, uid)
        self.card_id = gc.card_id(self.uid_hash)

    def tap(self) -> SecureTap:
        url = self.tag.ndef_url()
        return SecureTap(uid_hash=self.uid_hash, trust="sun", counter=self.tag.counter, sun=url)


class Chain:
    def __init__(self, url: str) -> None:
        self.clock = DAY1
        keys = CardKeys(MASTER, lambda uid: card_uid_hash(CARD_KEY, uid))
        self.store = HqStore(url, Settings(card_keys=keys), clock=lambda: iso(self.clock))
        self.seqs: dict[str, int] = {}
        self.sent: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        """Each till's entries as it sent them (what its end of day declares)."""
        for terminal, shop in (("T1", "S1"), ("T2", "S2"), ("T3", "S3")):
            self.store.add_terminal(terminal, shop, terminal.lower())
            self.seqs[terminal] = 0
        for terminal in ("T1", "T2"):
            self.store.put_topup_policy(terminal, TopupPolicy(True, 10_000, 20_000, 15_000, 5_000), "Mio")

    def push(self, terminal: str, kind: str, card: Card, **fields: Any) -> str:
        self.seqs[terminal] += 1
        seq = self.seqs[terminal]
        payload = {
            "card_id": card.card_id,
            "uid_hash": card.uid_hash,
            "store_id": "S" + terminal[1:],
            "local_time": self.clock.replace(tzinfo=None).isoformat(timespec="seconds"),
            **fields,
        }
        txn = f"{terminal}-{seq}"
        entry = WireEntry(
            terminal_id=terminal, seq=seq, txn_id=txn, kind=kind, payload=payload, created_at=iso(self.clock)
        )
        self.sent.setdefault(terminal, []).append((kind, payload))
        self.store.ingest(terminal, [entry], clock=iso(self.clock))
        return txn

    def sell(self, terminal: str, card: Card, amount: int) -> str:
        return self.push(terminal, "gift_activate", card, amount=amount, trust="sun")

    def pay(self, terminal: str, card: Card, amount: int, tap: SecureTap | None = None) -> str:
        tap = tap or card.tap()
        return self.push(terminal, "gift_redeem", card, amount=amount, tap=tap.model_dump(exclude_none=True))

    def card(self, card: Card) -> dict[str, Any]:
        return self.store.gift_card(card.card_id)

    def held(self, terminal: str) -> list[ReconItem]:
        return [i for i in self.store.items(terminal_id=terminal) if i.quarantined]

    def flagged(self, terminal: str) -> list[ReconItem]:
        return [i for i in self.store.items(terminal_id=terminal) if not i.quarantined]


@pytest.fixture
def chain(hq_url: str) -> Iterator[Chain]:
    made = Chain(hq_url)
    yield made
    try:
        with made.store.db.read() as tx:  # whatever a test did, every card's balance is its ledger account
            assert ledger.check(tx) == []
            assert rollup.check(tx) == []  # and the reports' gift card float is the ledger's, day by day
    finally:
        made.store.close()


def gift_float(tx: Tx) -> int:
    """The value report's gift card float at the end of tomorrow (the chain's column), read as the back office
    reads it."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    found = reports.value(tx, reports.Filter(tomorrow - timedelta(days=3), tomorrow))
    return found.values["gift_float"][reports.CHAIN][-1]


def test_gift_card_value_is_in_the_ledger_the_seller_took_the_cash_the_accepter_is_owed_a_clear_is_breakage(
    chain: Chain,
) -> None:
    with chain.store.db.write() as tx:
        merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S2", "M-B", "UTC")
    card = Card(bytes.fromhex("04A1B2C3D4E5F9"))
    chain.sell("T1", card, 6000)  # the chain's store S1
    paid = chain.pay("T2", card, 2500)  # Books' store S2
    chain.push("T2", "gift_refund", card, amount=500, original_txn=paid)
    with chain.store.db.read() as tx:
        assert ledger.balances_of(tx, card.card_id) == {ledger.Kind.GIFT_VALUE: 4000}
        assert ledger.positions(tx, "M-B")["value_accepted"] == 2000  # the chain owes Books what it took
        assert ledger.positions(tx, "chain")["cash_taken"] == 6000
        # and the month's settlement statements have them: what Books accepted, what the chain's tills took
        figures = settlement.read_figures(tx, "2026-12")
        assert (figures["M-B"].value_accepted, figures["chain"].cash_taken) == (2000, 6000)
        assert ledger.check(tx) == []
        assert gift_float(tx) == 4000  # the value report's gift cards at the day's end
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    with chain.store.db.read() as tx:
        assert gift_float(tx) == 0
        assert ledger.balances_of(tx, card.card_id) == {}
        assert ledger.balances_of(tx, "")[ledger.Kind.GIFT_BREAKAGE] == 4000
        assert ledger.check(tx) == []
    with chain.store.db.write() as tx:  # a card whose balance moved outside the ledger is named by the check
        tx.run("UPDATE gift_cards SET balance = balance + 1 WHERE card_id = ?", [card.card_id])
        [failure] = ledger.check(tx)
        tx.run("UPDATE gift_cards SET balance = balance - 1 WHERE card_id = ?", [card.card_id])
        assert (failure.code, failure.subject, failure.expected, failure.found) == (
            ledger.Code.GIFT_VALUE,
            card.card_id,
            0,
            1,
        )


def test_a_card_sold_at_one_till_is_loaded_paid_given_back_and_blocked_and_every_till_learns_it(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5F6"))
    chain.sell("T1", card, 5000)
    chain.push("T1", "gift_load", card, amount=2000)
    paid = chain.pay("T2", card, 3000)  # another store's till
    chain.push("T2", "gift_refund", card, amount=1000, original_txn=paid)
    shown = chain.card(card)
    assert (shown["state"], shown["balance"]) == ("active", 5000)
    assert [(a["kind"], a["amount"], a["balance_after"]) for a in shown["activity"]] == [
        ("gift_activate", 5000, 5000),
        ("gift_load", 2000, 7000),
        ("gift_redeem", -3000, 4000),
        ("gift_refund", 1000, 5000),
    ]
    assert chain.held("T1") == [] and chain.held("T2") == []
    page = chain.store.changes(0, 1000)
    [fed] = [c for c in page.gift_cards if c.card_id == card.card_id]
    assert fed.body == {
        **gc.GiftCard(card.card_id, card.uid_hash, gc.State.ACTIVE, 5000).to_doc(),
        "last_used_on": "2026-12-01",
        "counter": 1,  # the SUN read counter it paid with: every till refuses that message and older ones
    }
    chain.push("T2", "gift_block", card, reason="reported lost")
    assert chain.card(card)["state"] == "blocked"
    later = chain.store.changes(page.cursor, 1000)
    assert [(c.card_id, c.body["state"]) for c in later.gift_cards] == [(card.card_id, "blocked")]
    chain.store.unblock_gift_card(card.card_id, "Mio", "found by the customer")
    assert chain.card(card)["state"] == "active"
    assert chain.card(card)["activity"][-1]["kind"] == "gift_unblock"


def test_selling_and_loading_share_the_tills_stored_value_policy(chain: Chain) -> None:
    first, second = Card(bytes.fromhex("04000000000001")), Card(bytes.fromhex("04000000000002"))
    over_one = chain.sell("T1", first, 10_001)  # per_transaction 10,000
    chain.sell("T1", first, 10_000)
    chain.push("T1", "gift_load", first, amount=6000)  # 16,000 on one card in a day: per_member_day 15,000
    chain.sell("T1", second, 9000)  # 19,000 that day
    chain.store.upsert_member("M-1", "Aiko", "basic", 0)
    topup = {"member_id": "M-1", "store_id": "S1", "amount": 2000, "stored_value_delta": 2000}
    chain.seqs["T1"] += 1
    chain.store.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=chain.seqs["T1"],
                txn_id="T1-topup",
                kind="till_topup",
                payload={**topup, "local_time": "2026-12-01T10:00:00"},
                created_at=iso(chain.clock),
            )
        ],
    )  # a top-up shares the day's 20,000 with gift cards: 21,000
    assert chain.card(first)["balance"] == 10_000 and chain.card(second)["balance"] == 9000
    codes = {(i.txn_id, i.detail["code"]) for i in chain.held("T1")}
    assert codes == {
        (over_one, "topup_limit_transaction"),
        ("T1-3", "topup_limit_member_day"),
        ("T1-topup", "topup_limit_day"),
    }
    # The till's end of day declares what it took for the cards; head office loaded less (two entries held).
    declared = day_totals(chain.sent["T1"])  # the top-up is not among them: its own check is elsewhere
    result = chain.store.eod(EodReport(terminal_id="T1", day="2026-12-01", first_seq=1, last_seq=4, totals=declared))
    assert "gift cards sold and loaded: terminal 35001, head office 19000" in result.mismatches
    [takings] = [i for i in chain.store.items(terminal_id="T1") if i.reason.value == "gift_takings_mismatch"]
    assert takings.detail["not_loaded"] == [over_one, "T1-3"]
    disabled = Card(bytes.fromhex("04000000000003"))
    sold = chain.sell("T3", disabled, 100)  # a till head office never enabled makes no value
    assert [(i.txn_id, i.detail["code"]) for i in chain.held("T3")] == [(sold, "topup_not_enabled")]
    with pytest.raises(Refused):
        chain.store.gift_card(disabled.card_id)


def test_a_stolen_till_credential_cannot_make_or_drain_value(chain: Chain) -> None:
    """What a holder of T2's credential can send, bypassing the till's own checks."""
    victim = Card(bytes.fromhex("04A1B2C3D4E5F7"))
    chain.sell("T1", victim, 8000)
    member = Card(bytes.fromhex("04A1B2C3D4E5F8"))
    chain.store.upsert_member("M-1", "Aiko", "basic", 0)
    chain.store.upsert_card(member.uid_hash, "M-1")
    as_member = chain.sell("T2", member, 100)  # a member's card sold as a gift card
    again = chain.sell("T2", victim, 5000)  # an active card "sold" again: a new balance
    forged = victim.tap().model_copy(update={"counter": 99})  # a SUN message edited
    drained = chain.pay("T2", victim, 8000, tap=forged)
    uid_only = chain.push(
        "T2", "gift_redeem", victim, amount=8000, tap={"uid_hash": victim.uid_hash, "trust": "mac"}
    )  # a MAC read head office cannot check again: attested by the till (see docs/giftcards.md)
    too_much_back = chain.push("T2", "gift_refund", victim, amount=500, original_txn=uid_only)
    chain.push("T2", "gift_refund", victim, amount=9000, original_txn=uid_only)
    made_up = chain.push("T2", "gift_import", victim, amount=100_000, source="x")  # head office's own kind
    held = {(i.txn_id, i.reason.value) for i in chain.held("T2")}
    assert {
        (as_member, "gift_card_invalid"),
        (again, "gift_card_invalid"),
        (drained, "gift_proof_invalid"),
        (made_up, "kind_not_allowed"),
    } <= held
    assert (too_much_back, "gift_refund_invalid") not in held  # 500 of the 8,000 it paid may go back
    assert ("T2-6", "gift_refund_invalid") in held  # 9,000 of 8,000 may not
    shown = chain.card(victim)
    assert shown["balance"] == 8000 - 8000 + 500
    assert [a["kind"] for a in shown["activity"]] == ["gift_activate", "gift_redeem", "gift_refund"]


def fed_counter(chain: Chain, card: Card) -> int | None:
    """The read counter every till learns for the card with its next pull."""
    [fed] = [c for c in chain.store.changes(0, 1000).gift_cards if c.card_id == card.card_id]
    counter = fed.body.get("counter")
    return None if counter is None else int(counter)


def test_a_sale_raises_a_cards_read_counter_only_with_a_sun_message_that_verifies(chain: Chain) -> None:
    """A stolen till credential cannot put a card out of every till's reach by selling it at a made-up read
    counter: head office holding the card keys takes a sale's counter only from its SUN message."""
    genuine = Card(bytes.fromhex("04C1C2C3C4C5C1"))
    sold_tap = genuine.tap()
    chain.push("T1", "gift_activate", genuine, amount=3000, trust="sun", counter=sold_tap.counter, sun=sold_tap.sun)
    assert fed_counter(chain, genuine) == sold_tap.counter  # an earlier read of it is refused from now on
    assert chain.flagged("T1") == []
    old_read = Card(bytes.fromhex("04C1C2C3C4C5C2")).tap()  # genuine, of an earlier read than claimed below
    other = Card(bytes.fromhex("04C1C2C3C4C5C3")).tap()  # another card's genuine message
    made_up: list[dict[str, Any]] = [
        {"trust": "sun", "counter": 0xFFFFFF},  # no message at all
        {"trust": "mac", "counter": 0xFFFFFF},  # a Lite-S read does not count
        {"trust": "sun", "counter": 0xFFFFFF, "sun": old_read.sun},  # a real message, another counter
        {"trust": "sun", "counter": other.counter, "sun": other.sun},  # another card's message
    ]
    for n, fields in enumerate(made_up):
        bricked = Card(bytes.fromhex(f"04D1D2D3D4D5{n:02X}"))
        sold = chain.push("T2", "gift_activate", bricked, amount=2000, **fields)
        assert fed_counter(chain, bricked) is None, fields  # no till refuses the card's next genuine tap
        assert chain.card(bricked)["balance"] == 2000  # the sale stands (the buyer paid) ...
        assert (sold, "gift_proof_invalid") in {(i.txn_id, i.reason.value) for i in chain.flagged("T2")}  # flagged
        chain.pay("T1", bricked, 500)  # the card pays at another till with its next genuine read
        assert chain.card(bricked)["balance"] == 1500
    assert chain.held("T1") == [] and chain.held("T2") == []
    # a SUN message without its counter is refused as a payload: nothing to check it against
    with pytest.raises(ValueError, match="SUN message"):
        GiftActivatePayload(**{**_activation(genuine), "trust": "mac", "counter": None, "sun": old_read.sun})


def test_releasing_a_held_sale_takes_no_read_counter_it_cannot_check(chain: Chain) -> None:
    """A stolen credential's sale beyond the till's policy is held; an administrator who releases it (the money
    was taken) releases the value, never the made-up read counter."""
    card = Card(bytes.fromhex("04E1E2E3E4E5E6"))
    held = chain.push("T2", "gift_activate", card, amount=10_001, trust="sun", counter=0xFFFFFF)
    assert [i.txn_id for i in chain.held("T2")] == [held]  # per_transaction 10,000
    chain.store.release(held, "Mio", "the customer paid; checked the POS")
    assert chain.card(card)["balance"] == 10_001
    assert fed_counter(chain, card) is None
    chain.pay("T1", card, 500)  # its next genuine read pays
    assert chain.held("T1") == [] and chain.card(card)["balance"] == 9501


def _activation(card: Card) -> dict[str, Any]:
    return {
        "card_id": card.card_id,
        "uid_hash": card.uid_hash,
        "store_id": "S1",
        "local_time": "2026-12-01T10:00:00",
        "amount": 100,
        "trust": "sun",
    }


def test_without_the_card_keys_a_sales_counter_is_the_tills_word() -> None:
    card = Card(bytes.fromhex("04C1C2C3C4C5C4"))
    claimed = GiftActivatePayload(**{**_activation(card), "counter": 7})
    assert giftcards.sold_counter(claimed, CardKeys()) == (claimed, None)  # as a payment's tap is then
    keys = CardKeys(MASTER, lambda uid: card_uid_hash(CARD_KEY, uid))
    taken, problem = giftcards.sold_counter(claimed, keys)
    assert taken.counter is None and problem is not None and "not taken" in problem


def test_a_replayed_or_cloned_card_message_pays_once_in_the_chain(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5F9"))
    chain.sell("T1", card, 6000)
    tap = card.tap()
    chain.pay("T1", card, 1000, tap=tap)
    replayed = chain.pay("T2", card, 1000, tap=tap)  # the same message, recorded, played at another till
    assert [(i.txn_id, i.reason.value, i.detail["code"]) for i in chain.held("T2")] == [
        (replayed, "gift_proof_invalid", "replayed_card")
    ]
    assert chain.card(card)["balance"] == 5000
    request = GiftConfirmRequest(card_id=card.card_id, amount=100, txn_id="T2-online", tap=tap)
    with pytest.raises(Refused) as refused:
        chain.store.confirm_gift("T2", request)
    assert refused.value.code is ErrorCode.REPLAYED_CARD
    skimmed = card.tap()  # read off the card in a crowd, never used at a till
    chain.pay("T1", card, 1000)  # the customer pays again with a later message
    late = GiftConfirmRequest(card_id=card.card_id, amount=100, txn_id="T2-skim", tap=skimmed)
    with pytest.raises(Refused) as refused:
        chain.store.confirm_gift("T2", late)
    assert refused.value.code is ErrorCode.REPLAYED_CARD  # online, a card's counter must rise
    assert chain.store.changes(0, 1000).gift_cards[-1].body["counter"] == skimmed.counter + 1  # tills learn it


def test_online_head_office_holds_back_what_it_confirmed_until_the_entry_arrives(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5FA"))
    chain.sell("T1", card, 5000)
    first = GiftConfirmRequest(card_id=card.card_id, amount=4000, txn_id="T2-9", tap=card.tap())
    assert chain.store.confirm_gift("T2", first)["balance"] == 5000
    assert chain.store.confirm_gift("T2", first)["repeat"] is True  # a retry
    second = GiftConfirmRequest(card_id=card.card_id, amount=1500, txn_id="T1-9", tap=card.tap())
    with pytest.raises(Refused) as refused:
        chain.store.confirm_gift("T1", second)
    assert refused.value.code is ErrorCode.GIFT_CARD_INSUFFICIENT
    chain.seqs["T2"] = 8
    chain.pay("T2", card, 4000, tap=first.tap)  # its entry: confirmed, so its counter is its own
    assert chain.held("T2") == [] and chain.card(card)["balance"] == 1000
    unknown = Card(bytes.fromhex("04A1B2C3D4E5FB"))
    with pytest.raises(Refused) as refused:
        chain.store.confirm_gift(
            "T1", GiftConfirmRequest(card_id=unknown.card_id, amount=1, txn_id="x", tap=unknown.tap())
        )
    assert refused.value.code is ErrorCode.GIFT_CARD_UNKNOWN


def test_two_offline_tills_paying_beyond_the_balance_are_flagged_and_the_card_goes_negative(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5FC"))
    chain.sell("T1", card, 3000)
    chain.pay("T1", card, 2500)
    late = chain.pay("T2", card, 2500)  # approved offline on the balance T2 last pulled
    assert chain.card(card)["balance"] == -2000
    [item] = chain.flagged("T2")
    assert (item.txn_id, item.reason.value, item.detail["balance_after"]) == (late, "gift_card_overspent", -2000)
    assert chain.held("T2") == []  # the customer was served: stored and applied, the loss named


def test_a_stolen_till_credential_paying_far_beyond_a_cards_balance_makes_no_money_for_its_merchant(
    chain: Chain,
) -> None:
    """A card worth 1.00 tapped again and again at a till of merchant A whose credential was stolen: each
    payment proves itself (a fresh SUN read), so it is stored; what its payments take beyond the cards' balances
    is applied up to head office's bound a day, the rest held for a person, and A's statement is owed no more."""
    with chain.store.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
        merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S1", "M-B", "UTC")
        merchants.assign_store(tx, "S2", "M-A", "UTC")
    cap = chain.store.settings.overspent_per_day
    card = Card(bytes.fromhex("04A1B2C3D4E5E1"))
    chain.sell("T1", card, 100)
    within = chain.pay("T2", card, 100 + cap)  # offline, beyond the balance by the day's bound: the customer served
    beyond = [chain.pay("T2", card, 1_000_000_000) for _ in range(3)]
    assert [(i.txn_id, i.reason.value) for i in chain.flagged("T2")] == [(within, "gift_card_overspent")]
    held = chain.held("T2")
    assert [(i.txn_id, i.reason.value) for i in held] == [(t, "gift_card_overspent") for t in beyond]
    assert (held[0].detail["overspent_today"], held[0].detail["overspent_per_day"]) == (cap + 1_000_000_000, cap)
    assert chain.card(card)["balance"] == -cap
    with chain.store.db.read() as tx:
        assert settlement.read_figures(tx, "2026-12")["M-A"].value_accepted == 100 + cap
    chain.store.release(beyond[0], "Mio", "the till was honest: checked with the cash-up")  # a person decides
    assert chain.card(card)["balance"] == -cap - 1_000_000_000
    chain.clock += timedelta(days=1)  # head office's next day: another payment beyond the balance is applied
    chain.pay("T2", card, 10)
    assert chain.card(card)["balance"] == -cap - 1_000_000_010


def test_a_card_blocked_before_an_offline_payment_keeps_its_value_until_a_person_decides(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5FB"))
    chain.sell("T1", card, 3000)
    before = chain.pay("T2", card, 500)  # paid before the block: applied, wherever it arrives from
    chain.clock += timedelta(minutes=1)
    chain.push("T1", "gift_block", card, reason="reported lost")  # the holder asks the shop to block it
    chain.clock += timedelta(minutes=1)
    late = chain.pay("T2", card, 2000)  # a till that had not pulled the block, after it: whoever holds the card
    assert chain.card(card)["balance"] == 2500  # the holder's value stays on the card
    [item] = chain.held("T2")
    assert (item.txn_id, item.reason.value, item.detail["code"]) == (late, "gift_card_invalid", "gift_card_blocked")
    assert before not in {i.txn_id for i in chain.held("T2")}
    chain.store.release(late, "Mio", "the holder's own payment after all")
    assert chain.card(card)["balance"] == 500  # released by a person: applied as it came


def test_head_office_clears_imports_and_sets_terms_and_a_quarantined_sale_is_released(chain: Chain) -> None:
    chain.store.put_gift_terms(gc.Terms(expiry_days=365, dormant_days=90), "Mio")
    card = Card(bytes.fromhex("04A1B2C3D4E5FD"))
    sold = chain.sell("T1", card, 10_001)  # over the till's per_transaction: held
    assert chain.held("T1")[0].txn_id == sold
    chain.store.release(sold, "Mio", "the POS took 100.01: checked with the cash-up")
    shown = chain.card(card)
    assert (shown["balance"], shown["expires_on"]) == (10_001, "2027-12-01")
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    assert (chain.card(card)["state"], chain.card(card)["balance"]) == ("cleared", 0)
    chain.sell("T2", card, 1000)  # a cleared card may be sold again
    assert chain.card(card)["balance"] == 1000
    old = Card(bytes.fromhex("04A1B2C3D4E5FE"))
    chain.store.import_gift_card(old.uid_hash, 4200, "Mio", "legacy 7788")
    assert chain.card(old)["activity"][0]["kind"] == "gift_import"
    with pytest.raises(Refused):
        chain.store.import_gift_card(old.uid_hash, 1, "Mio", "again")
    chain.clock = DAY1 + timedelta(days=800)  # past the imported value's expiry
    request = GiftConfirmRequest(card_id=old.card_id, amount=100, txn_id="T1-late", tap=old.tap())
    with pytest.raises(Refused) as refused:
        chain.store.confirm_gift("T1", request)
    assert refused.value.code is ErrorCode.GIFT_CARD_EXPIRED
    with chain.store.db.read() as tx:
        done = [(r.actor, r.action, r.target) for r in audit.recent(tx)]
    assert {("Mio", "gift_terms", "gift_cards"), ("Mio", "gift_clear", card.card_id)} <= set(done)
    assert ("Mio", "gift_import", old.card_id) in done


def test_value_past_its_expiry_is_cleared_once_a_day_after_and_a_load_keeps_a_card(chain: Chain) -> None:
    """Terms of 30 days: a card sold on 1 December expires after 31 December; head office's timer clears it
    on 2 January, not before (a till west of head office may still be on its last day); a card loaded later
    keeps its value; a blocked card's expired value is cleared too, and it stays blocked (a lost card is
    never sold again by expiring); a second run clears nothing more."""
    from hq import giftcards as hq_giftcards
    from hq.scheduler import CampaignTimer

    chain.store.put_gift_terms(gc.Terms(expiry_days=30, dormant_days=0), "Mio")
    old, kept, lost = (Card(bytes.fromhex(f"04A1B2C3D4E6{n:02X}")) for n in range(3))
    for card in (old, kept, lost):
        chain.sell("T1", card, 2000)
    chain.push("T1", "gift_block", lost, reason="reported lost")
    chain.clock = DAY1 + timedelta(days=20)
    chain.push("T1", "gift_load", kept, amount=500)  # its value lives 30 days from today
    assert chain.card(old)["expires_on"] == "2026-12-31" and chain.card(kept)["expires_on"] == "2027-01-20"

    def tick(day: datetime) -> None:
        seen(chain.store, "T1", day, 0.0)  # the till heard at that time: head office's clock is right
        CampaignTimer(chain.store.db, now=lambda: day).tick()

    tick(datetime(2027, 1, 1, 23, 59, tzinfo=UTC))  # a day after the last: still the grace day
    assert chain.card(old)["balance"] == 2000
    tick(datetime(2027, 1, 2, 0, 1, tzinfo=UTC))
    for card, state in ((old, "cleared"), (lost, "blocked")):
        shown = chain.card(card)
        assert (shown["state"], shown["balance"]) == (state, 0)
        last = shown["activity"][-1]
        assert (last["kind"], last["amount"], last["by"]) == ("gift_clear", -2000, "head office")
        assert last["note"] == "expired after 2026-12-31"
    assert (chain.card(kept)["state"], chain.card(kept)["balance"]) == ("active", 2500)
    with chain.store.db.write() as tx:
        assert hq_giftcards.expire(tx, datetime(2027, 1, 3).date(), "2027-01-03T00:00:00.000Z") == []
    with chain.store.db.read() as tx:
        cleared = [(r.actor, r.action, r.target) for r in audit.recent(tx) if r.action == "gift_clear"]
    assert sorted(cleared) == sorted(("head office", "gift_clear", c.card_id) for c in (old, lost))


def test_the_expiry_command_clears_and_refuses_a_bad_day_or_one_after_today(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    db = str(tmp_path / "hq.db")
    chain = Chain(db)
    chain.clock = datetime(2026, 9, 1, 10, tzinfo=UTC)  # days gone by: the command clears nothing after today
    chain.store.put_gift_terms(gc.Terms(expiry_days=30, dormant_days=0), "Mio")
    card = Card(bytes.fromhex("04A1B2C3D4E7AA"))
    chain.sell("T1", card, 1500)  # valid through 1 October
    chain.store.close()
    run = CliRunner().invoke
    bad = run(app, ["giftcard", "expire", "--as-of", "2027-13-01", "--db", db])
    assert bad.exit_code == 1 and "bad_day" in bad.output
    ahead = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    future = run(app, ["giftcard", "expire", "--as-of", ahead, "--db", db])
    assert future.exit_code == 1 and "after today" in future.output  # clearing cannot be undone
    early = run(app, ["giftcard", "expire", "--as-of", "2026-10-02", "--db", db])
    assert early.exit_code == 0 and json.loads(early.output)["cleared"] == []
    done = run(app, ["giftcard", "expire", "--as-of", "2026-10-03", "--db", db])
    assert done.exit_code == 0
    assert [(c["card_id"], c["balance"]) for c in json.loads(done.output)["cleared"]] == [(card.card_id, 0)]


def test_the_import_command_takes_the_card_by_its_uid_and_the_chain_key(tmp_path: Any) -> None:
    """An operator holds the card's UID, not its keyed hash: with --card-key-file the command hashes the UID as
    `hq add-card` does, so the card the tills hash is the one imported; a hash is still taken as it is."""
    import os

    from typer.testing import CliRunner

    from hq.cli import app

    db, key = str(tmp_path / "hq.db"), tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    uid = "04A1B2C3D4E9AA"
    run = CliRunner().invoke
    done = run(app, ["giftcard", "import", uid, "4200", "--by", "Mio", "--card-key-file", str(key), "--db", db])
    assert done.exit_code == 0, done.output
    card = json.loads(done.stdout)
    assert (card["card_id"], card["balance"]) == (gc.card_id(card_uid_hash(key.read_bytes(), bytes.fromhex(uid))), 4200)
    other = card_uid_hash(key.read_bytes(), bytes.fromhex("04A1B2C3D4E9AB"))
    by_hash = run(app, ["giftcard", "import", other, "100", "--by", "Mio", "--db", db])
    assert by_hash.exit_code == 0 and json.loads(by_hash.stdout)["card_id"] == gc.card_id(other)
    bad = run(app, ["giftcard", "import", "zz", "1", "--by", "Mio", "--card-key-file", str(key), "--db", db])
    assert bad.exit_code == 1 and "invalid_card" in bad.output
    missing = run(app, ["giftcard", "import", uid, "1", "--by", "Mio", "--card-key-file", str(tmp_path / "no.key")])
    assert missing.exit_code == 1 and "cannot be read" in missing.output
    (tmp_path / "short.key").write_bytes(key.read_bytes()[:8])
    short = run(app, ["giftcard", "import", uid, "1", "--by", "Mio", "--card-key-file", str(tmp_path / "short.key")])
    assert short.exit_code == 1 and short.output.startswith("key_file_invalid: --card-key-file"), short.output


def test_a_refund_onto_a_card_cleared_since_is_value_again_and_a_clear_waits_for_a_payment_on_its_way(
    chain: Chain,
) -> None:
    """A payment made while the card held value, refunded after the card was cleared: the card is active again
    with the refund and a fresh expiry (the value is the customer's, not stuck on a cleared card). A clear
    asked for is refused once the card changed, or while a payment head office confirmed is on its way."""
    from hq import giftcards as hq_giftcards

    card = Card(bytes.fromhex("04A1B2C3D4E8AA"))
    chain.sell("T1", card, 3000)
    paid = chain.pay("T1", card, 1000)
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    chain.push("T1", "gift_refund", card, amount=1000, original_txn=paid)
    shown = chain.card(card)
    assert (shown["state"], shown["balance"], shown["expires_on"]) == ("active", 1000, None)  # no expiry terms
    with chain.store.db.read() as tx:
        asked = hq_giftcards.last_activity(tx, card.card_id)
        hq_giftcards.clearable(tx, card.card_id, asked)  # nothing happened since: clearable
    chain.store.confirm_gift("T2", GiftConfirmRequest(card_id=card.card_id, amount=400, txn_id="T2-x", tap=card.tap()))
    with chain.store.db.read() as tx, pytest.raises(Refused, match="on its way"):
        hq_giftcards.clearable(tx, card.card_id, asked)
    chain.push("T1", "gift_load", card, amount=500)
    with chain.store.db.read() as tx, pytest.raises(Refused, match="changed since"):
        hq_giftcards.clearable(tx, card.card_id, asked)


def test_the_migration_opens_every_card_held_before_the_ledger_kept_gift_value(hq_url: str) -> None:
    first = Chain(hq_url)
    cards = [Card(bytes.fromhex(f"04A1B2C3D4E6{n:02X}")) for n in range(3)]
    try:
        first.sell("T1", cards[0], 3000)
        first.sell("T1", cards[1], 1000)
        first.pay("T2", cards[1], 1000)  # nothing left on it: nothing to open
        first.sell("T1", cards[2], 2000)
        first.pay("T2", cards[2], 2500)  # overspent offline: it opens below zero
        with first.store.db.write() as tx:  # as a head office before the migration held them: no gift postings
            gift = [
                str(r[0])
                for r in tx.all("SELECT DISTINCT ledger_txn_id FROM ledger_postings WHERE kind = 'gift_value'")
            ]
            where, params = tx.in_list("ledger_txn_id", gift)
            tx.run(f"DELETE FROM ledger_postings WHERE {where}", params)
            tx.run(f"DELETE FROM ledger_txns WHERE {where}", params)
            tx.run("DELETE FROM hq_migrations WHERE name = 'm036_gift_ledger'")
            assert {f.subject for f in ledger.check(tx)} == {cards[0].card_id, cards[2].card_id}
    finally:
        first.store.close()
    again = Chain(hq_url)  # opening it migrates
    try:
        with again.store.db.read() as tx:
            assert ledger.check(tx) == []
            booked = {c.card_id: ledger.balances_of(tx, c.card_id).get(ledger.Kind.GIFT_VALUE, 0) for c in cards}
        assert booked == {cards[0].card_id: 3000, cards[1].card_id: 0, cards[2].card_id: -500}
    finally:
        again.store.close()


def test_a_cleared_card_sold_again_holds_what_the_buyer_paid_and_the_ledger_follows(chain: Chain) -> None:
    """A till that had not pulled the clear took a payment offline (the cleared card went below zero); the card
    is sold again: what was left is written off first (head office's own clear), the buyer's card holds what
    the buyer paid, and the ledger holds every step."""
    card = Card(bytes.fromhex("04A1B2C3D4E701"))
    chain.sell("T1", card, 1000)
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    chain.pay("T2", card, 700)  # offline, before T2 pulled the clear: applied, flagged
    assert (chain.card(card)["state"], chain.card(card)["balance"]) == ("cleared", -700)
    chain.sell("T1", card, 500)
    shown = chain.card(card)
    assert (shown["state"], shown["balance"]) == ("active", 500)
    assert [(a["kind"], a["amount"], a["balance_after"], a["by"]) for a in shown["activity"][-2:]] == [
        ("gift_clear", 700, 0, "head office"),
        ("gift_activate", 500, 500, None),
    ]
    with chain.store.db.read() as tx:
        assert ledger.check(tx) == []
        assert ledger.balances_of(tx, card.card_id) == {ledger.Kind.GIFT_VALUE: 500}


def test_a_load_released_onto_a_cleared_card_is_value_again_and_a_cleared_card_below_zero_can_be_cleared(
    chain: Chain,
) -> None:
    card, other = Card(bytes.fromhex("04A1B2C3D4E702")), Card(bytes.fromhex("04A1B2C3D4E703"))
    chain.sell("T1", card, 1000)
    chain.store.clear_gift_card(card.card_id, "Mio", "retired")
    held = chain.push("T2", "gift_load", card, amount=400)  # a till that had not pulled the clear
    assert held in {i.txn_id for i in chain.held("T2")}
    chain.store.release(held, "Mio", "the customer paid 4.00 at the till")
    shown = chain.card(card)
    assert (shown["state"], shown["balance"]) == ("active", 400)  # the customer's 4.00 is usable, not stuck
    chain.store.clear_gift_card(card.card_id, "Mio", "refunded in cash at the desk")
    assert chain.card(card)["balance"] == 0
    chain.sell("T1", other, 300)
    chain.store.clear_gift_card(other.card_id, "Mio", "retired")
    chain.pay("T2", other, 200)  # offline after the clear: below zero
    chain.store.clear_gift_card(other.card_id, "Mio", "written off")  # a cleared card below zero: written off
    assert (chain.card(other)["state"], chain.card(other)["balance"]) == ("cleared", 0)
    with pytest.raises(Refused):
        chain.store.clear_gift_card(other.card_id, "Mio", "again")  # nothing left to clear


def test_the_migration_gives_a_database_of_gift_cards_before_the_float_its_days(chain: Chain) -> None:
    card = Card(bytes.fromhex("04A1B2C3D4E5A7"))
    chain.sell("T1", card, 3000)
    chain.pay("T1", card, 1200)
    with chain.store.db.write() as tx:  # as the release before the gift card float left it
        tx.run("DELETE FROM report_days WHERE figure = 'gift_value'")
        tx.run("DELETE FROM hq_migrations WHERE name = 'm037_gift_float'")
        assert {d.key[3] for d in rollup.check(tx)} == {"gift_value"}
        assert gift_float(tx) == 0
    assert migrate(chain.store.db) == ["m037_gift_float"]
    with chain.store.db.read() as tx:
        assert rollup.check(tx) == []
        assert gift_float(tx) == 1800
    assert migrate(chain.store.db) == []  # once
