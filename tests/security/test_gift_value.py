"""Property: whatever gift card entries a stolen till credential makes up (kinds, cards, amounts, taps, refunds of
any payment, head office's own kinds), the gift card value head office holds never exceeds what that till's
stored-value policy lets it sell in the day, and a till head office never enabled makes none at all."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hq import ledger
from hq.errors import HqError, Refused
from hq.store import HqStore
from sync.protocol import WireEntry
from terminal import giftcards as gc
from terminal.topups import TopupPolicy

NOW = "2026-12-01T10:00:00.000Z"
CARDS = [f"{n:02x}" * 32 for n in range(1, 5)]
KINDS = ["gift_activate", "gift_load", "gift_redeem", "gift_refund", "gift_block", "gift_import", "gift_clear"]


@st.composite
def an_entry(draw: st.DrawFn, n: int) -> dict[str, Any]:
    uid_hash = draw(st.sampled_from(CARDS))
    kind = draw(st.sampled_from(KINDS))
    payload: dict[str, Any] = {
        "card_id": gc.card_id(uid_hash),
        "uid_hash": uid_hash,
        "store_id": "S1",
        "local_time": "2026-12-01T10:00:00",
        "amount": draw(st.integers(1, 20_000)),
    }
    if kind == "gift_activate":
        payload["trust"] = draw(st.sampled_from(["sun", "mac"]))
    if kind == "gift_redeem":
        sun = draw(st.booleans())
        payload["tap"] = {"uid_hash": uid_hash, "trust": "sun" if sun else "mac"} | (
            {"counter": draw(st.integers(0, 5))} if sun else {}
        )
    if kind == "gift_refund":
        payload["original_txn"] = f"T1-{draw(st.integers(1, max(1, n)))}"
    if kind == "gift_block":
        payload.pop("amount")
    return {"kind": kind, "payload": payload}


def sequences() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.integers(1, 14).flatmap(lambda size: st.tuples(*(an_entry(i + 1) for i in range(size))).map(list))


def books_hold(store: HqStore) -> None:
    """Every gift card's balance is its ledger account, and every ledger transaction balances."""
    with store.db.read() as tx:
        assert ledger.check(tx) == []
        booked = {o: n for (k, o), n in ledger.read_books(tx).accounts.items() if k is ledger.Kind.GIFT_VALUE}
    assert {c: n for c, n in booked.items() if n} == {
        str(card["card_id"]): int(card["balance"]) for card in store.gift_cards() if int(card["balance"])
    }


def held_value(store: HqStore) -> int:
    return sum(max(0, int(card["balance"])) for card in store.gift_cards())


@settings(max_examples=40, deadline=None)
@given(entries=sequences(), enabled=st.booleans(), split=st.integers(1, 14))
def test_a_stolen_till_credential_makes_no_more_gift_value_than_its_policy(
    entries: list[dict[str, Any]], enabled: bool, split: int
) -> None:
    with tempfile.TemporaryDirectory() as where:
        store = HqStore(str(Path(where) / "hq.db"), clock=lambda: NOW)
        try:
            store.add_terminal("T1", "S1", "t1")
            policy = TopupPolicy(True, 10_000, 12_000, 9000, 3000)
            if enabled:
                store.put_topup_policy("T1", policy, "Mio")
            wire = [
                WireEntry(terminal_id="T1", seq=i, txn_id=f"T1-{i}", created_at=NOW, **e)
                for i, e in enumerate(entries, start=1)
            ]
            for batch in (wire[:split], wire[split:]):  # two pushes: earlier entries count from the journal
                if batch:
                    store.ingest("T1", batch, clock=NOW)
            store.ingest("T1", wire, clock=NOW)  # the network replays everything: nothing twice
            bound = policy.per_day + policy.offline_total if enabled else 0
            assert held_value(store) <= bound
            kinds = {a["kind"] for card in store.gift_cards() for a in store.gift_card(card["card_id"])["activity"]}
            assert not kinds & {"gift_import", "gift_clear"}  # head office's own: never from a till
            books_hold(store)
            # an administrator releases whatever was held, then clears every card: the books still hold
            for item in store.items():
                if item.quarantined and item.txn_id:
                    try:
                        store.release(item.txn_id, "Mio", "checked with the store")
                    except (HqError, ValueError):
                        pass  # a release refused (a card never sold, a malformed entry) leaves it held
            books_hold(store)
            for card in store.gift_cards():
                try:
                    store.clear_gift_card(str(card["card_id"]), "Mio", "retired")
                except Refused:
                    pass  # nothing on it
            books_hold(store)
            assert [card["balance"] for card in store.gift_cards() if card["balance"]] == []  # all breakage now
        finally:
            store.close()
