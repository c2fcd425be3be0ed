"""A sale gift cards paid part of is given back by several routes: the POS's money (a refund's or void's
``pos_refund``), the member's account (``stored_value_delta``) and the cards (their ``gift_refund`` of each
payment naming the sale, ``sale_ref``; a void says so in its ``gift_cards``). Head office bounds them together:
whatever comes first, what all routes give back of a sale never exceeds what it took (its payable), and the
entry that would pass it is held (``refund_exceeds_sale``, ``all_routes``), moving nothing. A refund through the
POS of the card's part, and the card's refund of the same payment, is the customer (or a stolen till
credential, or a dishonest cashier) paid twice. On SQLite and PostgreSQL, with real SUN messages."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hq import reports, settlement
from hq.api.server import start_in_thread
from hq.payments import signing_key
from hq.vouchers import IssueSpec
from sync.client import PUSH_HELD, SyncClient, held_message, wire_entry
from sync.protocol import ReconItem, VoucherConfirmRequest, WireEntry
from terminal import b64url
from terminal import vouchers as vc
from terminal.checkout import Checkout
from terminal.credentials import card_uid_hash
from terminal.errors import Code, Rejected
from terminal.model import Basket, CardRead, JournalEntry, Line, Receipt, SaleOrder, utc_iso
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.session import Action, Session
from terminal.store import Store
from tests.api.stack import base_url, running_till
from tests.fixtures import entries
from tests.fixtures.books import books_balanced
from tests.sync.test_hq_giftcards import CARD_KEY, MASTER, Card, Chain, iso


class Till:
    """Till T1 of the chain, pushing entries one at a time or several in one push, each under its own seq."""

    def __init__(self, chain: Chain, card: Card, terminal: str = "T1") -> None:
        self.chain, self.card, self.terminal = chain, card, terminal

    def entry(self, kind: str, payload: dict[str, Any], seq: int | None = None) -> WireEntry:
        if seq is None:
            self.chain.seqs[self.terminal] += 1
            seq = self.chain.seqs[self.terminal]
        else:
            self.chain.seqs[self.terminal] = max(self.chain.seqs[self.terminal], seq)
        return WireEntry(
            terminal_id=self.terminal,
            seq=seq,
            txn_id=f"{self.terminal}-{seq}",
            kind=kind,
            payload=payload,
            created_at=iso(self.chain.clock),
        )

    def push(self, *pushed: WireEntry) -> list[str]:
        self.chain.store.ingest(self.terminal, list(pushed), clock=iso(self.chain.clock))
        return [e.txn_id for e in pushed]

    def gift(self, kind: str, **fields: Any) -> dict[str, Any]:
        store = "S" + self.terminal[1:]
        local = self.chain.clock.replace(tzinfo=None).isoformat(timespec="seconds")
        return {
            "card_id": self.card.card_id,
            "uid_hash": self.card.uid_hash,
            "store_id": store,
            "local_time": local,
            **fields,
        }

    def sale(self, total: int = 1000) -> WireEntry:
        lines = [{"sku": "A", "quantity": 1, "unit_price": 600}, {"sku": "B", "quantity": 1, "unit_price": total - 600}]
        return self.entry("sale", entries.sale(None, total, store_id="S" + self.terminal[1:], lines=lines))

    def pay(self, sale_txn: str, amount: int) -> WireEntry:
        tap = self.card.tap().model_dump(exclude_none=True)
        return self.entry("gift_redeem", self.gift("gift_redeem", amount=amount, tap=tap, sale_ref=sale_txn))

    def card_refund(self, payment_txn: str, amount: int) -> WireEntry:
        return self.entry("gift_refund", self.gift("gift_refund", amount=amount, original_txn=payment_txn))

    def refund(self, sale_txn: str, money_back: int, *, gift_cards: int = 0, line: int | None = None) -> WireEntry:
        kind = "void" if line is None else "refund"
        returned = None if line is None else [(line, 1)]
        payload = entries.refund(
            sale_txn,
            None,
            store_id="S" + self.terminal[1:],
            money_back=money_back,
            gift_cards=gift_cards,
            void=line is None,
            returned=returned,
        )
        return self.entry(kind, payload)


@pytest.fixture
def chain(hq_url: str) -> Iterator[Chain]:
    made = Chain(hq_url)
    with books_balanced(made.store):
        yield made


def _till(chain: Chain, uid: str, value: int = 1000) -> Till:
    card = Card(bytes.fromhex(uid))
    chain.sell("T1", card, value)
    return Till(chain, card)


def _held(chain: Chain, txn: str) -> list[ReconItem]:
    return [i for i in chain.held("T1") if i.txn_id == txn]


def _money_back(chain: Chain, sale_txn: str) -> int:
    with chain.store.db.read() as tx:
        row = tx.one("SELECT money_back FROM sales WHERE txn_id = ?", [sale_txn])
    assert row is not None
    return int(row[0])


# -- the double refund ---------------------------------------------------------------------------------------


def test_a_sale_refunded_through_the_pos_card_part_included_does_not_give_the_card_its_payment_back(
    chain: Chain,
) -> None:
    till = _till(chain, "04A1B2C3D4EB01")
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))  # the card paid 400 of it, the POS took 600
    till.push(till.refund(sale, 1000, line=None))  # the POS pays back all 1000 in cash
    [back] = till.push(till.card_refund(paid, 400))  # and the card its 400 as well
    [item] = _held(chain, back)
    assert item.reason.value == "refund_exceeds_sale"
    assert item.detail["original_txn"] == sale and item.detail["payment_txn"] == paid
    assert item.detail["all_routes"] == {
        "returned": 1400,
        "sale_took": 1000,
        "pos_refund": 1000,
        "stored_value": 0,
        "gift_cards": 400,
    }
    assert chain.card(till.card)["balance"] == 600  # nothing went back onto the card


def test_a_card_given_its_payment_back_first_holds_a_refund_of_the_sale_that_pays_the_card_part_again(
    chain: Chain,
) -> None:
    till = _till(chain, "04A1B2C3D4EB02")
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))
    till.push(till.card_refund(paid, 400))  # the card got its 400 back
    assert chain.card(till.card)["balance"] == 1000
    [refund] = till.push(till.refund(sale, 800, line=0))  # a refund of 600's line paying back 800 through the POS
    [item] = _held(chain, refund)
    assert item.reason.value == "refund_exceeds_sale"
    assert item.detail["all_routes"] == {
        "returned": 1200,
        "sale_took": 1000,
        "pos_refund": 800,
        "stored_value": 0,
        "gift_cards": 400,
    }
    assert _money_back(chain, sale) == 0  # the refund moved nothing


def test_in_one_push_the_second_route_is_held_whichever_came_first(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB03")
    sale = till.sale(1000)
    paid = till.pay(sale.txn_id, 400)
    void = till.refund(sale.txn_id, 1000)  # a void saying the POS pays all of it back
    back = till.card_refund(paid.txn_id, 400)
    till.push(sale, paid, void, back)
    assert [i.reason.value for i in _held(chain, back.txn_id)] == ["refund_exceeds_sale"]
    assert _held(chain, void.txn_id) == []
    assert chain.card(till.card)["balance"] == 600

    other = _till(chain, "04A1B2C3D4EB04")
    sale = other.sale(1000)
    paid = other.pay(sale.txn_id, 400)
    back = other.card_refund(paid.txn_id, 400)
    void = other.refund(sale.txn_id, 1000)
    other.push(sale, paid, back, void)
    assert [i.reason.value for i in _held(chain, void.txn_id)] == ["refund_exceeds_sale"]
    assert _held(chain, back.txn_id) == []
    assert chain.card(other.card)["balance"] == 1000 and _money_back(chain, sale.txn_id) == 0


def test_a_refund_waiting_for_its_sale_is_held_when_the_card_got_its_payment_back_meanwhile(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB05")
    elsewhere = Till(chain, till.card, "T2")  # a refund may be rung at any till of the chain
    sale = till.entry("sale", entries.sale(None, 1000, lines=[{"sku": "A", "quantity": 1, "unit_price": 1000}]))
    [refund] = elsewhere.push(elsewhere.refund(sale.txn_id, 1000, line=0))  # before T1 pushed the sale
    assert [i.reason.value for i in chain.held("T2")] == ["refund_unknown_sale"]
    paid = till.pay(sale.txn_id, 400)
    till.push(sale, paid, till.card_refund(paid.txn_id, 400))
    held = [i for i in chain.held("T2") if i.state == "open"]
    assert [(i.txn_id, i.reason.value) for i in held] == [(refund, "refund_exceeds_sale")]
    assert held[0].detail["all_routes"]["returned"] == 1400
    assert _money_back(chain, sale.txn_id) == 0


def test_a_payment_stored_before_head_office_kept_its_sale_beside_it_is_read_from_its_payload(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB11")
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))
    with chain.store.db.write() as tx:  # as an earlier release stored it: no sale beside the payment
        tx.run("UPDATE journal SET original_txn = NULL WHERE txn_id = ?", [paid])
    till.push(till.refund(sale, 1000))
    [back] = till.push(till.card_refund(paid, 400))
    assert [i.reason.value for i in _held(chain, back)] == ["refund_exceeds_sale"]
    assert chain.card(till.card)["balance"] == 600


# -- what honest tills do ------------------------------------------------------------------------------------


def test_the_tills_void_of_a_sale_a_card_paid_gives_the_card_its_payment_and_the_pos_the_rest(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB06")
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))
    # the till's one void: the cards' part named in it, each card's refund in the same transaction
    void, back = till.refund(sale, 1000, gift_cards=400), till.card_refund(paid, 400)
    till.push(void, back)
    assert chain.held("T1") == []
    assert chain.card(till.card)["balance"] == 1000 and _money_back(chain, sale) == 1000


@pytest.mark.parametrize(("uid", "by_the_pos"), [("04A1B2C3D4EB07", 150), ("04A1B2C3D4EB08", 400)])
def test_a_card_refunded_by_the_pos_in_part_or_whole_then_the_void_giving_it_the_rest(
    chain: Chain, uid: str, by_the_pos: int
) -> None:
    """The POS gave the card some (150) or all (400) of its payment back (/{txn}/refund); then the sale's void,
    whose card part is 400: the card gets what is still owed it in the void's own refund (none when it had it all)."""
    till = _till(chain, uid)
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))
    till.push(till.card_refund(paid, by_the_pos))
    till.push(till.refund(sale, 1000, gift_cards=400))
    if by_the_pos < 400:
        till.push(till.card_refund(paid, 400 - by_the_pos))
    assert chain.held("T1") == []
    assert chain.card(till.card)["balance"] == 1000 and _money_back(chain, sale) == 1000


def test_partial_refunds_and_the_card_back_within_what_the_sale_took(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB09")
    [sale] = till.push(till.sale(1000))
    [paid] = till.push(till.pay(sale, 400))
    till.push(till.refund(sale, 400, line=1))  # line B (400) back through the POS
    till.push(till.card_refund(paid, 400))  # the card its payment
    assert chain.held("T1") == []
    [late] = till.push(till.refund(sale, 600, line=0))  # line A in cash as well: 1400 of 1000
    assert [i.reason.value for i in _held(chain, late)] == ["refund_exceeds_sale"]
    till.push(till.refund(sale, 200, line=0))  # what is left of it
    assert [i.txn_id for i in chain.held("T1")] == [late]
    assert _money_back(chain, sale) == 600


def test_a_card_payment_and_its_refund_before_the_sale_arrives_then_the_void(chain: Chain) -> None:
    till = _till(chain, "04A1B2C3D4EB10")
    sale = till.sale(1000)
    paid = till.pay(sale.txn_id, 400)
    back = till.card_refund(paid.txn_id, 400)
    till.push(paid, back)  # the sale's seq is missing from this push (a gap head office keeps)
    assert chain.held("T1") == []
    till.push(sale)
    till.push(till.refund(sale.txn_id, 1000, gift_cards=400))
    assert chain.held("T1") == []
    assert chain.card(till.card)["balance"] == 1000


def _open_till(tmp_path: Path) -> Service:
    """The till's own service on a store of its own, online a moment ago, selling gift cards within its policy."""
    store = Store.open(tmp_path / "terminal.db")
    policy = {"enabled": True, "per_transaction": 10_000, "per_day": 20_000, "per_member_day": 15_000}
    store.apply_changes([], [], [], 1, CacheDocs(topup_policy=json.dumps({**policy, "offline_total": 5000})))
    store.set_state(last_sync_ok=utc_iso(time.time()))
    return Service(store, "T1", store_id="S1", sun_master_key=MASTER, hash_uid=lambda uid: card_uid_hash(CARD_KEY, uid))


def _push_journal(chain: Chain, journal: list[JournalEntry]) -> None:
    """What the till journalled, one push an entry, as a till that syncs after each."""
    for entry in journal:
        wired = wire_entry(entry)  # as the till's sync client sends it
        chain.store.ingest(entry.terminal_id, [wired], clock=iso(chain.clock))


def _sun_read(card: Card) -> CardRead:
    return CardRead("r", "iso14443a", card.uid_hash, sun=card.tag.ndef_url(), at=time.monotonic())


@pytest.mark.parametrize("pos_gave_back", [0, 1200, 3000])
def test_what_the_tills_own_void_journals_passes_at_head_office(
    chain: Chain, tmp_path: Path, pos_gave_back: int
) -> None:
    """The till's own code: a sale of 50.00, 30.00 of it paid by a gift card at the panel, the POS giving some of the
    card's payment back onto it first (``/{txn}/refund``), then the void. What it journals, pushed to head office,
    is held nowhere and leaves the card where it was."""
    till = _open_till(tmp_path)
    try:
        card = Card(bytes.fromhex("04A1B2C3D4EB20"))
        session = Session(till, Checkout(till), gifts=till)
        till.sell_gift(_sun_read(card), 3000)
        session.set_total(5000)
        session.pay()
        session.confirm()
        session.press(Action.GIFT)
        paid = session.gift_tap(_sun_read(card))["gift"]["done"][-1]
        if pos_gave_back:
            till.refund_gift(paid["txn_id"], pos_gave_back)
        assert session.void()["error"] is None
        journal = till.store.unpushed(100)
    finally:
        till.store.close()
    _push_journal(chain, journal)
    assert chain.held("T1") == []
    assert chain.card(card)["balance"] == 3000


@pytest.mark.parametrize(
    ("pos_gave_back", "lines_first", "returns"),
    [
        (0, False, [(1500, 500)]),  # the void alone: the card its 15.00, the POS its 5.00
        (500, False, [(1000, 500)]),  # the POS gave 5.00 back onto the card, then the void: the card the rest
        (0, True, [(500, 0), (1000, 500)]),  # 5.00 of lines refunded (the card's), then the void of the rest
        (1500, True, [(0, 0), (0, 500)]),  # the card had all back from the POS: the returns give it nothing more
    ],
)
def test_each_return_of_a_sale_a_card_paid_gives_the_card_its_part_and_the_pos_the_rest(
    chain: Chain, tmp_path: Path, pos_gave_back: int, lines_first: bool, returns: list[tuple[int, int]]
) -> None:
    """The till's own code: a sale of 20.00 (lines of 5.00 and 15.00), 15.00 of it paid by a gift card, 5.00 at the
    POS. A refund of the 5.00 line and the void of the rest each give back the card's part first (what it paid and
    no return counted yet, onto the card less what the POS gave back onto it already), the POS only the rest: what
    goes back by every route is what was paid, and head office, pushed the journal, holds nothing."""
    till = _open_till(tmp_path)
    try:
        card = Card(bytes.fromhex("04A1B2C3D4EB21"))
        till.sell_gift(_sun_read(card), 3000)
        lines = (Line("A", 1, 500), Line("B", 1, 1500))
        sale = Checkout(till).sell(SaleOrder(None, Basket(lines)))
        paid = till.pay_gift(_sun_read(card), 1500, sale.txn_id)
        if pos_gave_back:
            till.refund_gift(paid.txn_id, pos_gave_back)
        done = [till.refund(sale.txn_id, {0: 1})] if lines_first else []
        done.append(till.void(sale.txn_id))
        journal = till.store.unpushed(100)
        balance = till.gift_card(_sun_read(card)).balance
    finally:
        till.store.close()
    assert [(sum(g.amount for g in r.gift_refunds), -r.total) for r in done] == returns
    back = [e.payload for e in journal if e.kind in ("refund", "void")]
    cards_part = [(500, 500), (1500, 1000)] if lines_first else [(2000, 1500)]
    assert [(b["money_back"], b["gift_cards"]) for b in back] == cards_part
    card_back = sum(e.payload["amount"] for e in journal if e.kind == "gift_refund")
    assert card_back == sum(b["gift_cards"] for b in back) == 1500  # the card's payment back, once
    assert card_back + sum(b["pos_refund"] for b in back) == 2000  # all that was paid, by every route
    assert balance == 3000
    _push_journal(chain, journal)
    assert chain.held("T1") == []
    assert chain.card(card)["balance"] == 3000 and _money_back(chain, sale.txn_id) == 2000


def test_a_line_refund_through_the_local_api_gives_the_card_its_part_and_head_office_holds_nothing(
    chain: Chain, tmp_path: Path
) -> None:
    """A real till daemon (SQLite store, service, local API over HTTP on 127.0.0.1): the POS rings a sale of 20.00, a
    gift card pays 15.00 of it (``/v1/giftcards/pay``), then refunds the 5.00 line (``POST /v1/sales/{txn}/refund``,
    as ``tillpoint refund`` does). The card gets that 5.00 back in the refund, the POS pays nothing back, and it
    cannot give the card that part again (``/v1/giftcards/{txn}/refund``); the void of the rest gives the card
    10.00 and the POS 5.00. Pushed to head office, the journal is held nowhere."""
    key = tmp_path / "card-hash.key"
    key.write_bytes(CARD_KEY)
    key.chmod(0o600)
    card = Card(bytes.fromhex("04A1B2C3D4EB22"))
    with running_till(tmp_path, terminal={"id": "T1", "store_id": "S1"}) as daemon:
        store = daemon.store
        assert store is not None
        policy = {"enabled": True, "per_transaction": 10_000, "per_day": 20_000, "per_member_day": 15_000}
        store.apply_changes([], [], [], 2, CacheDocs(topup_policy=json.dumps({**policy, "offline_total": 5000})))

        def tap() -> None:
            store.set_state(last_sync_ok=utc_iso(time.time()))  # head office answered a moment ago
            daemon.on_card(_sun_read(card))

        headers = {"Authorization": f"Bearer {daemon.api_token}"}
        with httpx.Client(base_url=base_url(daemon), headers=headers, timeout=10) as api:

            def ok(path: str, body: dict[str, Any]) -> dict[str, Any]:
                reply = api.post(path, json=body)
                assert reply.status_code == 200, reply.text
                answer: dict[str, Any] = reply.json()
                return answer

            tap()
            ok("/v1/giftcards/sell", {"amount": 3000})
            lines = [{"sku": "A", "quantity": 1, "unit_price": 500}, {"sku": "B", "quantity": 1, "unit_price": 1500}]
            sale = ok("/v1/sales", {"lines": lines})["txn_id"]
            tap()
            paid = ok("/v1/giftcards/pay", {"amount": 1500, "sale_ref": sale})["txn_id"]

            refund = ok(f"/v1/sales/{sale}/refund", {"lines": {"0": 1}})
            assert refund["total"] == 0  # nothing back at the POS: the line's 5.00 went back onto the card
            assert [(g["card_id"], g["amount"], g["balance"]) for g in refund["gift_refunds"]] == [
                (card.card_id, 500, 2000)
            ]
            again = api.post(f"/v1/giftcards/{paid}/refund", json={"amount": 1001})
            assert again.status_code == 409 and again.json()["code"] == "gift_refund_invalid", again.text

            void = ok(f"/v1/sales/{sale}/void", {})
            assert void["total"] == -500  # what the POS took, and no more
            assert [g["amount"] for g in void["gift_refunds"]] == [1000]
        journal = store.entries()
    back = [
        (e.kind, e.payload["money_back"], e.payload["gift_cards"], e.payload["pos_refund"])
        for e in journal
        if e.kind in ("refund", "void")
    ]
    assert back == [("refund", 500, 500, 0), ("void", 1500, 1000, 500)]
    _push_journal(chain, journal)
    assert chain.held("T1") == []
    assert chain.card(card)["balance"] == 3000 and _money_back(chain, sale) == 2000


# -- a sale a voucher paid part of ---------------------------------------------------------------------------


def _voucher_sold(chain: Chain, till: Service, value: int) -> str:
    """A voucher of ``value`` head office issued into the till's stock, sold by the till (its sale pushed, as a till
    online pushes it), and the till asking head office to confirm each use (``Service.confirm_voucher``)."""
    key_id, key = signing_key(chain.store, vc.PURPOSE)
    expires = int(time.time()) + 30 * 86400
    chain.store.issue_vouchers("T1", IssueSpec(1, value, expires), (key_id, key), "Mio")
    public = b64url.encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    doc = {"key_id": key_id, "alg": "ed25519", "purpose": vc.PURPOSE, "status": "active", "public_key": public}
    stock = chain.store.voucher_stock("T1").codes
    till.store.apply_changes([], [], [], 2, CacheDocs(keys=[(key_id, json.dumps(doc), "")], voucher_stock=(0, stock)))

    def confirm(request: dict[str, Any]) -> bool:
        chain.store.confirm_voucher("T1", VoucherConfirmRequest.model_validate(request))
        return True

    till.confirm_voucher = confirm
    seq = till.store.max_seq()
    code = till.sell_voucher(value, None).code
    assert code is not None
    _push_journal(chain, till.store.entries(after_seq=seq))
    return code


def _voucher_paid_sale(chain: Chain, till: Service) -> tuple[Receipt, int]:
    """A sale of 20.00 (lines of 5.00 and 15.00) a voucher of 15.00 paid 15.00 of, and the till's seq before it (its
    journal from there on holds the sale and the redemption)."""
    code = _voucher_sold(chain, till, 1500)
    seq = till.store.max_seq()
    sale = Checkout(till).sell(SaleOrder(None, Basket((Line("A", 1, 500), Line("B", 1, 1500)))))
    till.redeem_voucher(code, sale.txn_id)
    return sale, seq


def test_a_line_refund_of_a_sale_a_voucher_paid_part_of_has_the_pos_pay_back_only_what_it_collected(
    chain: Chain, tmp_path: Path
) -> None:
    """The till's own code: a sale of 20.00 (lines of 5.00 and 15.00), a voucher of 15.00 paying 15.00 of it, the
    POS collecting 5.00. Refunding the 15.00 line has the POS pay back its 5.00 and no more: the voucher's 10.00 is
    kept (the voucher stays used); the 5.00 line after has the POS pay back nothing. Head office holds nothing."""
    till = _open_till(tmp_path)
    try:
        code = _voucher_sold(chain, till, 1500)
        lines = (Line("A", 1, 500), Line("B", 1, 1500))
        sale = Checkout(till).sell(SaleOrder(None, Basket(lines)))
        seq = till.store.max_seq() - 1
        till.redeem_voucher(code, sale.txn_id)
        done = [till.refund(sale.txn_id, {1: 1}), till.refund(sale.txn_id, {0: 1})]
        with pytest.raises(Rejected) as caught:
            till.redeem_voucher(code)
        journal = till.store.entries(after_seq=seq)
    finally:
        till.store.close()
    assert caught.value.code is Code.VOUCHER_USED  # used, and it stays so
    assert [(r.total, r.voucher_kept, r.gift_refunds) for r in done] == [(-500, 1000, ()), (0, 500, ())]
    back = [(e.payload["money_back"], e.payload["pos_refund"], e.payload["voucher_kept"]) for e in journal[2:]]
    assert back == [(1500, 500, 1000), (500, 0, 500)]
    _push_journal(chain, journal)
    assert chain.held("T1") == []
    assert _money_back(chain, sale.txn_id) == 2000


def test_a_sale_a_voucher_a_card_and_the_pos_paid_refunded_twice_then_voided_gives_back_all_but_the_voucher(
    chain: Chain, tmp_path: Path
) -> None:
    """The till's own code: a sale of 50.00 (lines of 10.00, 20.00, 20.00), a voucher paying 10.00 of it, a gift card
    15.00, the POS collecting 25.00. Refunding 20.00 gives the card its 15.00 and the POS 5.00; the next 20.00 the
    POS; the void of the last 10.00 has the POS pay back nothing (it paid back its 25.00), the voucher's 10.00 kept.
    Every route together gives back what was paid less the voucher, and head office, pushed it all, holds nothing."""
    till = _open_till(tmp_path)
    try:
        code = _voucher_sold(chain, till, 1000)
        card = Card(bytes.fromhex("04A1B2C3D4EB23"))
        till.sell_gift(_sun_read(card), 3000)
        lines = (Line("A", 1, 1000), Line("B", 1, 2000), Line("C", 1, 2000))
        sale = Checkout(till).sell(SaleOrder(None, Basket(lines)))
        till.redeem_voucher(code, sale.txn_id)
        till.pay_gift(_sun_read(card), 1500, sale.txn_id)
        done = [till.refund(sale.txn_id, {1: 1}), till.refund(sale.txn_id, {2: 1}), till.void(sale.txn_id)]
        journal = till.store.entries()
        balance = till.gift_card(_sun_read(card)).balance
    finally:
        till.store.close()
    assert [(-r.total, sum(g.amount for g in r.gift_refunds), r.voucher_kept) for r in done] == [
        (500, 1500, 0),
        (2000, 0, 0),
        (0, 0, 1000),
    ]
    back = [e.payload for e in journal if e.kind in ("refund", "void")]
    assert [(b["money_back"], b.get("gift_cards", 0), b["pos_refund"], b.get("voucher_kept", 0)) for b in back] == [
        (2000, 1500, 500, 0),
        (2000, 0, 2000, 0),
        (1000, 0, 0, 1000),
    ]
    card_back = sum(e.payload["amount"] for e in journal if e.kind == "gift_refund")
    assert card_back + sum(b["pos_refund"] for b in back) == 5000 - 1000  # all that was paid but the voucher
    assert balance == 3000
    _push_journal(chain, [e for e in journal if e.kind != "voucher_sale"])  # its sale went before, as it was used
    assert chain.held("T1") == []
    assert chain.card(card)["balance"] == 3000 and _money_back(chain, sale.txn_id) == 5000


def _value_accounts(chain: Chain, *kinds: str) -> dict[tuple[str, str], int]:
    """The ledger's stored-value accounts of these kinds: (kind, owner) -> balance."""
    with chain.store.db.read() as tx:
        rows = tx.all(
            "SELECT kind, owner, SUM(amount) FROM ledger_postings WHERE unit = 'value' GROUP BY kind, owner",
        )
    return {(str(k), str(o)): int(n) for k, o, n in rows if str(k) in kinds and int(n)}


def test_the_vouchers_part_a_return_kept_is_no_longer_owed_to_the_merchant_and_the_chain_keeps_it(
    chain: Chain, tmp_path: Path
) -> None:
    """The till's own code: a voucher of 15.00 sold (cash the till's merchant took), paying 15.00 of a sale of 20.00,
    the POS collecting 5.00; the 15.00 line refunded (10.00 kept) and the sale voided (5.00 kept). Pushed to a real
    head office: the merchant is owed nothing for the voucher (the goods came back, the voucher was never paid
    out), the chain keeps its 15.00 as voucher breakage, the voucher holds nothing, and the books balance."""
    till = _open_till(tmp_path)
    try:
        sale, seq = _voucher_paid_sale(chain, till)
        done = [till.refund(sale.txn_id, {1: 1}), till.void(sale.txn_id)]
        journal = till.store.entries(after_seq=seq)
    finally:
        till.store.close()
    assert [r.voucher_kept for r in done] == [1000, 500]
    _push_journal(chain, journal)
    assert chain.held("T1") == [] and _kept_beyond(chain) == []
    kinds = ("merchant_value_accepted", "voucher_breakage", "voucher_value", "merchant_cash")
    assert _value_accounts(chain, *kinds) == {("merchant_cash", "chain"): -1500, ("voucher_breakage", ""): 1500}


def test_the_deferred_revenue_says_what_returns_kept_of_the_vouchers_apart_from_the_money_held(
    chain: Chain, tmp_path: Path
) -> None:
    """A voucher of 15.00 paying 15.00 of a sale of 20.00, the sale voided (15.00 kept): the deferred revenue holds
    nothing for the voucher (used) and says the 15.00 the chain kept (``vouchers_kept``), not as money held."""
    till = _open_till(tmp_path)
    try:
        sale, seq = _voucher_paid_sale(chain, till)
        till.void(sale.txn_id)
        journal = till.store.entries(after_seq=seq)
    finally:
        till.store.close()
    _push_journal(chain, journal)
    held = settlement.read_deferred(chain.store.db, date(2100, 1, 1)).as_dict()
    assert (held["vouchers"], held["vouchers_kept"], held["money_held"]) == (0, 1500, 0)
    # where finance reads it: the value report's chain column by the day's end, and the merchant's statement
    # (CSV and PDF print the same rows), beside its value accepted, which is net of it
    with chain.store.db.read() as tx:
        (day, period) = tx.one("SELECT day, period FROM ledger_txns WHERE kind = 'voucher_kept'") or ("", "")
        wanted = reports.Filter(date.fromisoformat(str(day)) - timedelta(days=1), date.fromisoformat(str(day)))
        assert reports.value(tx, wanted).values["vouchers_kept"][reports.CHAIN] == [0, 1500]
        stmt = settlement.statement(tx, str(period), "chain")
    assert stmt.money()["vouchers_kept"] == 1500 and ("money", "vouchers_kept", "1500") in settlement.rows(stmt)
    assert "money,vouchers_kept,1500" in settlement.to_csv(stmt).decode()
    with chain.store.db.read() as tx:  # a period no return kept anything in prints no such row
        before = settlement.statement(tx, "2000-01", "chain")
    assert "vouchers_kept" not in before.money() and "vouchers_kept" not in settlement.to_csv(before).decode()


def test_a_return_keeps_the_part_of_a_voucher_redeemed_before_head_office_kept_the_sale_it_names(
    chain: Chain, tmp_path: Path
) -> None:
    """A voucher of 15.00 paying 15.00 of a sale of 20.00, its redemption stored as a head office of the release
    before stored it (no ``original_txn``, the sale only in its payload's ``sale_ref``); the sale voided after the
    upgrade: the 15.00 kept is booked to the chain all the same, nothing flagged."""
    till = _open_till(tmp_path)
    try:
        sale, seq = _voucher_paid_sale(chain, till)
        till.void(sale.txn_id)
        journal = till.store.entries(after_seq=seq)
    finally:
        till.store.close()
    _push_journal(chain, journal[:-1])
    with chain.store.db.write() as tx:
        tx.run("UPDATE journal SET original_txn = NULL WHERE kind = 'voucher_redeem'")
    _push_journal(chain, journal[-1:])
    assert journal[-1].kind == "void" and _kept_beyond(chain) == []
    assert _value_accounts(chain, "voucher_breakage", "merchant_value_accepted") == {("voucher_breakage", ""): 1500}


def _kept_beyond(chain: Chain) -> list[tuple[str, int, int]]:
    """The ``voucher_kept_beyond`` items: (terminal, what the return said kept, what head office booked kept)."""
    items = chain.store.items(terminal_id="T1") + chain.store.items(terminal_id="T2")
    return sorted(
        (i.terminal_id, i.detail["kept"], i.detail["booked"]) for i in items if i.reason.value == "voucher_kept_beyond"
    )


def test_a_return_claiming_more_kept_by_vouchers_than_they_paid_moves_no_money(chain: Chain, tmp_path: Path) -> None:
    """A till credential's returns claiming vouchers kept what no voucher paid: a sale of 20.00 a voucher paid 15.00
    of, its 5.00 line refunded saying the vouchers kept it (the POS nothing); a sale no voucher paid voided with all
    of it kept; another till's refund of the first sale's 15.00 line claiming it kept too. Only what the voucher paid
    of its own sale at its own till is booked kept; each claim beyond is flagged ``voucher_kept_beyond``, and no
    merchant's money moves otherwise."""
    till = _open_till(tmp_path)
    try:
        sale, seq = _voucher_paid_sale(chain, till)
        till.refund(sale.txn_id, {0: 1})
        plain = Checkout(till).sell(SaleOrder(None, Basket((Line("A", 1, 800),))))
        till.void(plain.txn_id)
        journal = till.store.entries(after_seq=seq)
    finally:
        till.store.close()
    for entry in journal:
        if entry.kind in ("refund", "void"):  # what the POS paid back said kept by vouchers
            entry.payload.update(voucher_kept=entry.payload["money_back"], pos_refund=0)
    # the other till's returns come first, so they are held and applied later, on the path a first ingest takes:
    # one of the sale, applied when the sale comes; one of a sale never sent, released by an administrator
    other = Till(chain, Card(bytes.fromhex("04A1B2C3D4EB24")), "T2")
    returned = {"returned": [{"line": 1, "quantity": 1}], "total": -1500, "money_back": 1500, "voucher_kept": 1500}
    other.push(other.entry("refund", {"original_txn": sale.txn_id, "store_id": "S2", **returned}))
    nowhere = {"returned": [{"line": 0, "quantity": 1}], "total": -300, "money_back": 300, "voucher_kept": 300}
    (unknown,) = other.push(other.entry("refund", {"original_txn": "T9-never-sent", "store_id": "S2", **nowhere}))
    assert [(i.reason.value, i.state) for i in chain.held("T2")] == [("refund_unknown_sale", "open")] * 2
    _push_journal(chain, journal)
    assert chain.store.release(unknown, "admin", "the paper receipt was checked") == "none"
    assert chain.held("T1") == [] and all(i.state != "open" for i in chain.held("T2"))
    assert _kept_beyond(chain) == [("T1", 800, 0), ("T2", 300, 0), ("T2", 1500, 0)]
    kinds = ("merchant_value_accepted", "voucher_breakage", "voucher_value", "merchant_cash")
    assert _value_accounts(chain, *kinds) == {
        ("merchant_cash", "chain"): -1500,
        ("merchant_value_accepted", "chain"): 1000,
        ("voucher_breakage", ""): 500,
    }


# -- a till upgraded before its head office ------------------------------------------------------------------


class _ReleaseBefore(httpx.BaseTransport):
    """Between a till and a real head office: it answers as the release before the returns' ``gift_cards`` and
    ``voucher_kept`` (protocol 2 in ``/v1/health``; such an entry it would quarantine as malformed: any that comes is
    kept in ``carrying`` and not passed on), until ``upgraded``."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.upgraded = False
        self.carrying: list[int] = []
        self.asked = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.upgraded:
            return self.real.handle_request(request)
        if request.url.path == "/v1/health":
            self.asked += 1
            return httpx.Response(200, json={"status": "ok", "time": "", "protocol": 2, "root_key": ""})
        if request.url.path == "/v1/journal":
            body = json.loads(gzip.decompress(request.content))
            assert body["protocol"] == 2
            self.carrying += [e["seq"] for e in body["entries"] if {"gift_cards", "voucher_kept"} & set(e["payload"])]
            if self.carrying:
                return httpx.Response(422, json={"code": "invalid_request", "message": "malformed"})
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_a_till_ahead_of_its_head_office_holds_a_return_the_older_one_cannot_read_and_sends_it_after_the_upgrade(
    chain: Chain, tmp_path: Path
) -> None:
    """A till of this release syncing with a head office of the release before (protocol 2): the sale a voucher paid
    part of and its redemption go, the refund that kept the voucher's part (``voucher_kept``) and the sale after it
    stay in the till's journal, none lost, with the till's ``push_held`` saying why and what to upgrade; rounds while
    head office is old send nothing of them and ask it again; once head office is upgraded the next round sends them
    in order, and head office books the part kept, holding nothing."""
    till = _open_till(tmp_path)
    server = start_in_thread(chain.store, "127.0.0.1", 0)
    between = _ReleaseBefore()
    sync = SyncClient(till.store, "T1", server.url, "t1", transport=between, end_of_day=False)
    try:
        code = _voucher_sold(chain, till, 1500)
        till.store.mark_pushed(till.store.max_seq(), utc_iso(time.time()))
        sale = Checkout(till).sell(SaleOrder(None, Basket((Line("A", 1, 500), Line("B", 1, 1500)))))
        till.redeem_voucher(code, sale.txn_id)
        refund = till.refund(sale.txn_id, {1: 1})
        Checkout(till).sell(SaleOrder(None, Basket((Line("A", 1, 700),))))
        assert refund.voucher_kept == 1000
        assert sync.sync_once(pull=False).pushed == 2
        assert sync.sync_once(pull=False).pushed == 0
        held = json.loads(till.store.state(PUSH_HELD) or "{}")
        waiting = [(e.kind, e.txn_id) for e in till.store.unpushed(10)]
        told = held_message(till.store.state(PUSH_HELD)) or ""
        between.upgraded = True
        assert sync.sync_once(pull=False).pushed == 2
        left, after = till.store.pending_count(), till.store.state(PUSH_HELD)
    finally:
        sync.close()
        server.stop()
        till.store.close()
    assert between.carrying == [] and between.asked == 3  # its first round, then once a round while one was held
    assert waiting == [("refund", refund.txn_id), ("sale", waiting[1][1])]
    assert (held["txn_id"], held["needs"], held["speaks"]) == (refund.txn_id, 3, 2)
    assert "upgrade head office" in told and f"seq {held['seq']}" in told
    assert (left, after) == (0, None)
    assert chain.held("T1") == [] and _kept_beyond(chain) == []
    assert _value_accounts(chain, "voucher_breakage") == {("voucher_breakage", ""): 1000}
