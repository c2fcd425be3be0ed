"""HqStore: idempotent journal ingest, acknowledgement and gaps, conflicts, the changes feed, demo seed.
The ``store`` fixture runs every test on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hq import audit, payments
from hq.demo import DEMO_CARDS, seed_demo
from hq.store import (
    CredentialRevoked,
    Effect,
    HqStore,
    SeqConflict,
    TxnTaken,
    UnknownTerminal,
    WrongTerminal,
    contiguous,
)
from sync.protocol import ConfirmRequest, WireEntry
from terminal.credentials import card_uid_hash
from tests.fixtures import entries

KEY = bytes(range(32))


def entry(
    seq: int,
    member: str | None = "M-1",
    delta: int = 10,
    *,
    kind: str = "sale",
    terminal: str = "T1",
    txn: str | None = None,
) -> WireEntry:
    """A sale earning ``delta`` points (on a basket the default rule gives exactly that; a negative
    ``delta`` redeems, with no proof), or a void of this terminal's first entry clawing ``|delta|`` back."""
    if kind == "void":
        payload = entries.refund(f"{terminal}-1", member, clawed=abs(delta), void=True)
    elif kind == "sale":
        earned = max(delta, 0) if member else 0
        payload = entries.sale(
            member,
            total=max(delta, 1) * 100,
            earned=earned,
            redeemed=max(-delta, 0),
            proof="pos" if delta < 0 and member else None,
        )
    else:
        payload = {"member_id": member, "points_delta": delta}
    return WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=txn or f"{terminal}-{seq}",
        kind=kind,
        payload=payload,
        created_at="2026-01-01T00:00:00.000Z",
    )


def points(store: HqStore, member_id: str = "M-1") -> int:
    member = store.member(member_id)
    assert member is not None
    return member.points


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url)
    hq.add_terminal("T1", "S1", "token-one")
    hq.add_terminal("T2", "S1", "token-two")
    hq.upsert_member("M-1", "Aiko", "gold", 100)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    yield hq
    hq.close()


# -- ingest ---------------------------------------------------------------------------------------


def test_same_batch_twice_is_stored_once_and_points_applied_once(store: HqStore) -> None:
    batch = [entry(1, delta=10), entry(2, delta=5)]
    first = store.ingest("T1", batch)
    again = store.ingest("T1", batch)
    assert (first.acked_seq, first.stored, first.duplicates) == (2, 2, 0)
    assert (again.acked_seq, again.stored, again.duplicates, again.gaps) == (2, 0, 2, [])
    assert store.journal_count("T1") == 2
    assert points(store) == 115


def test_out_of_order_batch_acks_the_contiguous_prefix_and_reports_gaps(store: HqStore) -> None:
    reply = store.ingest("T1", [entry(1), entry(2), entry(4)])
    assert (reply.acked_seq, reply.gaps) == (2, [(3, 3)])
    late = store.ingest("T1", [entry(3)])
    assert (late.acked_seq, late.gaps, late.stored) == (4, [], 1)
    assert [e.seq for e in store.entries("T1")] == [1, 2, 3, 4]


def test_several_gaps_are_reported_in_order(store: HqStore) -> None:
    reply = store.ingest("T1", [entry(2), entry(5), entry(6), entry(9)])
    assert (reply.acked_seq, reply.gaps) == (0, [(1, 1), (3, 4), (7, 8)])


def test_empty_push_reports_current_state(store: HqStore) -> None:
    store.ingest("T1", [entry(1), entry(3)])
    reply = store.ingest("T1", [])
    assert (reply.acked_seq, reply.stored, reply.duplicates, reply.gaps) == (1, 0, 0, [(2, 2)])


def test_terminals_have_independent_sequences(store: HqStore) -> None:
    store.ingest("T1", [entry(1), entry(2)])
    reply = store.ingest("T2", [entry(1, terminal="T2")])
    assert reply.acked_seq == 1
    assert (store.journal_count("T1"), store.journal_count("T2")) == (2, 1)


def _snapshot(store: HqStore) -> tuple[object, ...]:
    return store.entries("T1"), store.entries("T2"), points(store, "M-1"), points(store, "M-2")


@pytest.mark.parametrize(
    "intruder",
    [
        entry(2, txn="other-txn"),  # same (terminal, seq), different txn_id
        entry(7, txn="T1-1"),  # same txn_id under another seq
        entry(1, terminal="T2", txn="T1-1"),  # same txn_id under another terminal
    ],
    ids=["seq-reused", "txn-reused", "txn-reused-by-other-terminal"],
)
def test_conflicting_entry_rejects_the_whole_batch_and_changes_nothing(store: HqStore, intruder: WireEntry) -> None:
    store.ingest("T1", [entry(1), entry(2)])
    before = _snapshot(store)
    batch = [entry(3, member="M-2", delta=40, terminal=intruder.terminal_id), intruder]
    refusal = TxnTaken if intruder.terminal_id != "T1" else SeqConflict  # another terminal's txn id: txn_id_taken
    with pytest.raises(refusal) as caught:
        store.ingest(intruder.terminal_id, batch)
    assert caught.value.seq == intruder.seq
    assert _snapshot(store) == before
    assert store.ingest("T1", []).acked_seq == 2


def test_conflict_inside_one_batch_is_rejected(store: HqStore) -> None:
    with pytest.raises(SeqConflict):
        store.ingest("T1", [entry(1), entry(1, txn="again")])
    assert store.journal_count("T1") == 0
    assert points(store) == 100


def test_entry_of_another_terminal_is_refused(store: HqStore) -> None:
    with pytest.raises(WrongTerminal):
        store.ingest("T1", [entry(1), entry(1, terminal="T2")])
    assert store.journal_count("T1") == store.journal_count("T2") == 0


def test_unregistered_terminal_cannot_push(store: HqStore) -> None:
    with pytest.raises(UnknownTerminal):
        store.ingest("T9", [entry(1, terminal="T9")])


def test_void_takes_the_points_back(store: HqStore) -> None:
    store.ingest("T1", [entry(1, delta=25), entry(2, delta=-25, kind="void")])
    assert points(store) == 100
    assert store.effects("T1") == {1: Effect.APPLIED, 2: Effect.APPLIED}


def test_facts_that_cannot_be_applied_are_stored_with_their_effect(store: HqStore) -> None:
    odd = [
        entry(1, member="M-404", delta=50),
        entry(2, kind="coupon_redeemed"),
        WireEntry(
            terminal_id="T1",
            seq=3,
            txn_id="T1-3",
            kind="sale",
            payload={"member_id": "M-1", "points_delta": True},
            created_at="2026-01-01T00:00:00Z",
        ),
        entry(4, member=None, delta=0),
    ]
    reply = store.ingest("T1", odd)
    assert (reply.stored, reply.acked_seq) == (4, 4)
    assert points(store) == 100
    assert store.member("M-404") is None
    assert store.effects("T1") == {1: Effect.UNKNOWN_MEMBER, 2: Effect.QUARANTINED, 3: Effect.MALFORMED, 4: Effect.NONE}
    assert store.entries("T1")[1].payload == odd[1].payload


def enrolment(seq: int, member_id: str, card: str, *, terminal: str) -> WireEntry:
    return WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=f"{terminal}-{seq}",
        kind="enrol",
        payload=entries.enrol(member_id, card),
        created_at="2026-01-01T00:00:00.000Z",
    )


def test_a_member_id_enrolled_again_by_another_till_is_an_open_item_naming_both(store: HqStore) -> None:
    """A stolen credential pushes first, with its own card, the id of a member another till enrolled offline:
    the id stays with the first to arrive, the other enrolment makes no member and links no card, and staff
    see an open item naming both terminals and both cards."""
    thief, honest = "a" * 64, "b" * 64
    store.ingest("T2", [enrolment(1, "E-0193", thief, terminal="T2")])
    store.ingest("T1", [enrolment(1, "E-0193", honest, terminal="T1"), entry(2, member="E-0193", delta=30)])
    store.ingest("T1", [enrolment(1, "E-0193", honest, terminal="T1")])  # a retry opens nothing more
    contested = [i for i in store.items() if i.reason.value == "enrolment_contested"]
    assert len(contested) == 1
    item = contested[0]
    assert (item.terminal_id, item.txn_id, item.state.value, item.quarantined) == ("T1", "T1-1", "open", False)
    assert item.detail == {
        "member_id": "E-0193",
        "held_by": "T2",
        "held_txn": "T2-1",
        "held_card": thief,
        "terminal": "T1",
        "uid_hash": honest,
        "spend_held": True,
    }
    with store.db.read() as tx:
        cards = tx.all("SELECT uid_hash, member_id FROM cards WHERE uid_hash IN (?, ?)", [thief, honest])
    assert [tuple(c) for c in cards] == [(thief, "E-0193")]
    assert points(store, "E-0193") == 30  # the honest member's sale is kept on the id, for staff to move
    # The same till enrolling the same card again (a second entry) says nothing new; another card from it does.
    store.ingest("T2", [enrolment(2, "E-0193", thief, terminal="T2"), enrolment(3, "E-0193", "c" * 64, terminal="T2")])
    assert sorted(i.txn_id for i in store.items() if i.reason.value == "enrolment_contested") == ["T1-1", "T2-3"]


def spend(seq: int, member_id: str, card: str, *, terminal: str = "T1") -> WireEntry:
    """A sale paying 100 points with a tap of the member's Lite-S card (a proof head office takes on the till's
    word, within its daily bound)."""
    tap = {"uid_hash": card, "trust": "mac"}
    payload = entries.sale(member_id, 1000, redeemed=100, proof="card", tap=tap)
    return WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=f"{terminal}-{seq}",
        kind="sale",
        payload=payload,
        created_at="2026-01-01T00:00:00.000Z",
    )


def test_a_contested_member_id_earns_and_its_spending_is_held_until_the_item_is_settled(store: HqStore) -> None:
    """While its id is contested the member earns, and a spend head office did not confirm is quarantined
    ``member_spend_held`` (whichever card, whichever till); the tills read the hold in the changes feed, and
    settling the item (the last open one naming the id) lifts it."""
    store.ingest("T1", [enrolment(1, "E-0194", "a" * 64, terminal="T1"), entry(2, member="E-0194", delta=300)])
    since = store.changes(0, 10_000).cursor
    store.ingest(
        "T2", [enrolment(1, "E-0194", "b" * 64, terminal="T2"), enrolment(2, "E-0194", "c" * 64, terminal="T2")]
    )
    fed = [m for m in store.changes(since, 10_000).members if m.member_id == "E-0194"]
    assert [m.spend_held for m in fed] == [True]
    assert store.changes(10**9, 1).spend_held == ["E-0194"]  # every held id, on every page: a bootstrapped till's
    store.ingest("T1", [spend(3, "E-0194", "a" * 64), entry(4, member="E-0194", delta=40)])
    assert store.effects("T1")[3] is Effect.QUARANTINED and store.effects("T1")[4] is Effect.APPLIED
    (held,) = [i for i in store.items() if i.reason.value == "member_spend_held"]
    assert (held.txn_id, held.quarantined, held.detail["member_id"]) == ("T1-3", True, "E-0194")
    assert points(store, "E-0194") == 340
    ask = {"member_id": "E-0194", "amount": 0, "txn_id": "T1-9", "card": {"uid_hash": "a" * 64, "trust": "mac"}}
    with pytest.raises(payments.PaymentRefused) as online:  # a till online is refused at once
        payments.confirm(store, "T1", ConfirmRequest.model_validate(ask))
    assert online.value.code == "member_spend_held"
    first, second = sorted((i for i in store.items() if i.reason.value == "enrolment_contested"), key=lambda i: i.seq)
    store.settle(first.item_id, "Ana", "one of two")
    assert store.member("E-0194").spend_held  # type: ignore[union-attr]
    since = store.changes(0, 10_000).cursor
    store.settle(second.item_id, "Ana", "T2's cards blocked")
    fed = [m for m in store.changes(since, 10_000).members if m.member_id == "E-0194"]
    assert [m.spend_held for m in fed] == [False] and store.changes(10**9, 1).spend_held == []
    store.ingest("T1", [spend(5, "E-0194", "a" * 64)])
    assert store.effects("T1")[5] is Effect.APPLIED and points(store, "E-0194") == 240


def test_a_contested_id_that_was_merged_away_holds_the_member_it_was_merged_into(store: HqStore) -> None:
    """The same card enrolled at two tills is merged into the first to arrive; an id merged away that is then
    enrolled again (contested) holds the member its value and its spends went to, until the item is settled."""
    store.ingest("T1", [enrolment(1, "E-0300", "d" * 64, terminal="T1"), entry(2, member="E-0300", delta=300)])
    store.ingest("T2", [enrolment(1, "E-0301", "d" * 64, terminal="T2")])  # merged into E-0300
    store.ingest("T2", [enrolment(2, "E-0301", "e" * 64, terminal="T2")])  # the merged-away id, another card
    assert store.member("E-0300").spend_held  # type: ignore[union-attr]
    assert store.changes(10**9, 1).spend_held == ["E-0300"]
    store.ingest("T1", [spend(3, "E-0301", "d" * 64), spend(4, "E-0300", "d" * 64)])
    assert store.effects("T1")[3] is store.effects("T1")[4] is Effect.QUARANTINED and points(store, "E-0300") == 300
    (contested,) = [i for i in store.items() if i.reason.value == "enrolment_contested"]
    assert contested.detail["member_id"] == "E-0301"
    store.settle(contested.item_id, "Ana", "T2's card blocked")
    assert not store.member("E-0300").spend_held  # type: ignore[union-attr]
    store.ingest("T1", [spend(5, "E-0300", "d" * 64)])
    assert store.effects("T1")[5] is Effect.APPLIED and points(store, "E-0300") == 200


def test_one_terminal_s_contests_hold_at_most_three_members_at_a_time(store: HqStore) -> None:
    """A stolen credential enrolling every id it learnt again would freeze every member's spending: one terminal's
    open contests hold at most ``HOLDS_PER_TERMINAL`` ids; a contest beyond is an open item holding nothing, and
    once staff settle one that held, the terminal's next contest holds again."""
    ids = [f"E-04{n:02d}" for n in range(1, 6)]
    store.ingest("T1", [enrolment(n, m, f"{n:02x}" * 32, terminal="T1") for n, m in enumerate(ids, 1)])
    store.ingest("T2", [enrolment(n, m, "9a" * 32, terminal="T2") for n, m in enumerate(ids[:4], 1)])
    assert [store.member(m).spend_held for m in ids] == [True, True, True, False, False]  # type: ignore[union-attr]
    assert store.changes(10**9, 1).spend_held == ids[:3]
    items = sorted((i for i in store.items() if i.reason.value == "enrolment_contested"), key=lambda i: i.seq)
    assert [(i.state.value, i.detail["spend_held"]) for i in items] == [("open", True)] * 3 + [("open", False)]
    store.ingest("T1", [entry(6, member=ids[3], delta=300), spend(7, ids[3], "04" * 32)])
    assert store.effects("T1")[7] is Effect.APPLIED  # the id over the bound spends
    store.settle(items[3].item_id, "Ana", "nothing held")
    store.settle(items[0].item_id, "Ana", "T2 revoked, its card blocked")
    assert not store.member(ids[0]).spend_held  # type: ignore[union-attr]
    store.ingest("T2", [enrolment(5, ids[4], "9a" * 32, terminal="T2")])
    assert store.member(ids[4]).spend_held  # type: ignore[union-attr]


def held(store: HqStore, member_id: str) -> bool:
    member = store.member(member_id)
    assert member is not None
    return member.spend_held


def contested(store: HqStore, terminal_id: str) -> list[tuple[str, str, bool]]:
    """The terminal's ``enrolment_contested`` items: (member, state, whether it holds)."""
    found = [i for i in store.items(terminal_id=terminal_id) if i.reason.value == "enrolment_contested"]
    return [(i.detail["member_id"], i.state.value, i.detail["spend_held"]) for i in sorted(found, key=lambda i: i.seq)]


def test_a_revoked_terminal_s_contests_hold_nothing_and_another_s_still_hold(store: HqStore) -> None:
    """Revoking the stolen credential lets the members only its contests held spend again (its items stay open,
    holding nothing, and the revocation is audited). A member another terminal's open contest also holds stays
    held until that one is revoked or settled too; so does an id the revoked terminal enrolled first: its card is
    the one linked to it, and the honest till's contest holds it until staff block that card."""
    store.add_terminal("T3", "S1")
    only, shared, first = "E-0510", "E-0511", "E-0512"
    store.ingest("T1", [enrolment(1, only, "a" * 64, terminal="T1"), enrolment(2, shared, "b" * 64, terminal="T1")])
    store.ingest("T1", [entry(3, member=only, delta=300), entry(4, member=shared, delta=300)])
    store.ingest("T2", [enrolment(n, m, "9a" * 32, terminal="T2") for n, m in enumerate((only, shared, first), 1)])
    store.ingest("T3", [enrolment(1, shared, "9b" * 32, terminal="T3")])
    store.ingest("T1", [enrolment(5, first, "c" * 64, terminal="T1")])
    assert [held(store, m) for m in (only, shared, first)] == [True, True, True]
    since = store.changes(0, 10_000).cursor

    assert store.revoke_terminal("T2", "Ana") is True

    assert [held(store, m) for m in (only, shared, first)] == [False, True, True]
    fed = [m for m in store.changes(since, 10_000).members if m.member_id in (only, shared, first)]
    assert [(m.member_id, m.spend_held) for m in fed] == [(only, False)]  # the tills learn it with their next pull
    assert store.changes(10**9, 1).spend_held == [shared, first]
    assert contested(store, "T2") == [(only, "open", False), (shared, "open", False)]
    assert contested(store, "T3") == [(shared, "open", True)]
    assert contested(store, "T1") == [(first, "open", True)]
    with store.db.read() as tx:
        (record,) = audit.recent(tx, 1)
    assert (record.actor, record.action, record.target) == ("Ana", "end_spend_holds", "T2")
    assert record.reason == "terminal revoked"
    assert (record.details["released"], record.details["still_held"]) == ([only], [shared])
    store.ingest("T1", [spend(6, only, "a" * 64), spend(7, shared, "b" * 64)])
    assert (store.effects("T1")[6], store.effects("T1")[7]) == (Effect.APPLIED, Effect.QUARANTINED)
    assert store.revoke_terminal("T3", "Ana") is True
    assert not held(store, shared) and held(store, first)


def test_a_re_enrolled_terminal_does_not_restore_its_holds_by_pushing_its_old_entries_again(store: HqStore) -> None:
    """Head office stores an entry once: the stolen credential's contests pushed again after a new enrolment of
    its terminal are duplicates (nothing applied again), and the same enrolment under another seq is a conflict;
    neither holds the member again."""
    store.ingest("T1", [enrolment(1, "E-0530", "a" * 64, terminal="T1"), entry(2, member="E-0530", delta=300)])
    stolen = [enrolment(1, "E-0530", "9a" * 32, terminal="T2")]
    store.ingest("T2", stolen)
    assert store.revoke_terminal("T2", "Ana") is True
    assert not held(store, "E-0530")
    token = store.enrol(store.enrol_code("T2", "S1"), "T2").token
    assert store.authenticate(token) == "T2"

    again = store.ingest("T2", stolen)

    assert (again.stored, again.duplicates) == (0, 1)
    moved = stolen[0].model_copy(update={"seq": 2})
    with pytest.raises(SeqConflict):
        store.ingest("T2", [moved])
    assert not held(store, "E-0530") and store.changes(10**9, 1).spend_held == []
    assert contested(store, "T2") == [("E-0530", "open", False)]
    store.ingest("T1", [spend(3, "E-0530", "a" * 64)])
    assert store.effects("T1")[3] is Effect.APPLIED


def test_concurrent_retries_of_one_batch_apply_once(store: HqStore) -> None:
    batch = [entry(seq, delta=1) for seq in range(1, 21)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: store.ingest("T1", batch), range(16)))
    assert sum(r.stored for r in replies) == 20
    assert {r.acked_seq for r in replies} == {20}
    assert points(store) == 120


def test_journal_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "hq.db")
    first = HqStore(path)
    first.add_terminal("T1", "S1", "tok")
    first.upsert_member("M-1", "Aiko", "gold", 0)
    first.ingest("T1", [entry(1), entry(3)])
    first.close()
    reopened = HqStore(path)
    assert reopened.ingest("T1", [entry(2)]).acked_seq == 3
    assert points(reopened) == 30
    reopened.close()


def test_postgresql_without_its_driver_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head office installed without the ``postgres`` extra, given a PostgreSQL URL: the command says what to
    install, in one line, rather than ending in a traceback."""
    import sys

    from typer.testing import CliRunner

    from hq.cli import app

    monkeypatch.setitem(sys.modules, "psycopg", None)  # not installed: importing it raises ImportError
    monkeypatch.delitem(sys.modules, "hq.db.pg", raising=False)
    done = CliRunner().invoke(app, ["add-member", "M-1", "--db", "postgresql://hq@127.0.0.1:1/hq"])
    assert done.exit_code == 1 and not isinstance(done.exception, ImportError), done.output
    said = " ".join(done.output.split())
    assert said.startswith("storage_failed:") and "tillpoint[postgres]" in said, said


# -- acknowledgement arithmetic -------------------------------------------------------------------


def test_contiguous_examples() -> None:
    assert contiguous(0, []) == (0, [])
    assert contiguous(0, [1, 2, 4]) == (2, [(3, 3)])
    assert contiguous(5, [6, 7]) == (7, [])
    assert contiguous(5, [8]) == (5, [(6, 7)])


@given(st.sets(st.integers(1, 60)))
def test_contiguous_matches_brute_force(seqs: set[int]) -> None:
    acked, gaps = contiguous(0, sorted(seqs))
    expected_acked = next(n for n in range(0, 62) if n + 1 not in seqs)
    missing = [n for n in range(1, max(seqs, default=0)) if n not in seqs]
    assert acked == expected_acked
    assert [n for first, last in gaps for n in range(first, last + 1)] == missing


# -- terminals ------------------------------------------------------------------------------------


def test_tokens_authenticate_and_only_their_digest_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "hq.db"
    hq = HqStore(str(path))
    token = hq.add_terminal("T1", "S1")
    assert len(token) >= 32
    assert hq.authenticate(token) == "T1"
    assert hq.authenticate(token + "x") is None
    hq.close()
    raw = sqlite3.connect(path).execute("SELECT token_sha256 FROM terminals").fetchone()[0]
    assert token not in raw and len(raw) == 64


def test_rekeying_replaces_the_token_and_revocation_sticks(store: HqStore) -> None:
    new = store.add_terminal("T1", "S1")
    assert store.authenticate("token-one") is None
    assert store.authenticate(new) == "T1"
    assert store.revoke_terminal("T1") is True
    with pytest.raises(CredentialRevoked):
        store.authenticate(new)
    with pytest.raises(CredentialRevoked):
        store.authenticate(store.add_terminal("T1", "S1"))
    assert store.revoke_terminal("nope") is False


def test_a_push_that_reaches_its_transaction_after_the_revocation_stores_nothing(store: HqStore) -> None:
    """A push's token was read a moment before the revocation committed (a stolen credential's push in flight):
    once the push holds the terminal's row it sees the revocation and stores nothing, holds nothing, earns nothing."""
    store.add_terminal("T1", "S1")
    store.ingest("T1", [entry(1, member="M-1", delta=100)])
    before = store.member("M-1")
    assert store.revoke_terminal("T1") is True
    with pytest.raises(CredentialRevoked):
        store.ingest("T1", [entry(2, member="M-1", delta=500), enrolment(3, "E-0999", "d" * 64, terminal="T1")])
    with store.db.read() as tx:
        seqs = [int(r[0]) for r in tx.all("SELECT seq FROM journal WHERE terminal_id = 'T1' ORDER BY seq")]
    assert seqs == [1] and store.member("M-1") == before and store.member("E-0999") is None


def test_a_terminal_cannot_change_store_or_reuse_a_token(store: HqStore) -> None:
    with pytest.raises(ValueError, match="belongs to store S1"):
        store.add_terminal("T1", "S2")
    with pytest.raises(ValueError, match="token"):
        store.add_terminal("T3", "S1", "token-one")
    assert store.authenticate("token-one") == "T1"


# -- master data and the changes feed -------------------------------------------------------------


def test_master_data_is_validated(store: HqStore) -> None:
    with pytest.raises(ValueError):
        store.upsert_member("M-3", "X", "basic", 0, status="gone")
    with pytest.raises(ValueError):
        store.upsert_card("ab" * 32, "M-404")
    with pytest.raises(ValueError):
        store.set_rule("base", 1, 0)


def _walk(store: HqStore, since: int, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    for _ in range(100):
        page = store.changes(since, limit)
        assert len(page.members) + len(page.cards) + len(page.rules) <= limit
        assert page.cursor >= since
        seen += [m.member_id for m in page.members] + [c.uid_hash for c in page.cards]
        seen += [r.rule_id for r in page.rules]
        since = page.cursor
        if not page.more:
            return seen, since
    raise AssertionError("changes feed did not end")


def test_changes_paging_walks_every_row_exactly_once_and_resumes(store: HqStore) -> None:
    for n in range(3, 8):
        store.upsert_member(f"M-{n}", f"Member {n}", "basic")
        store.upsert_card(f"{n:064x}", f"M-{n}")
    store.set_rule("base", 1, 100)
    everything, cursor = _walk(store, 0, 500)
    assert len(everything) == len(set(everything)) == 2 + 5 + 5 + 1
    paged = _walk(store, 0, 2)[0]
    assert len(paged) == len(everything) and set(paged) == set(everything)
    first = store.changes(0, 5)
    head = [m.member_id for m in first.members] + [c.uid_hash for c in first.cards]
    rest, resumed_cursor = _walk(store, first.cursor, 3)
    assert len(head) + len(rest) == len(everything) and set(head) | set(rest) == set(everything)
    assert resumed_cursor == cursor
    assert _walk(store, cursor, 2) == ([], cursor)


def test_changes_limit_counts_rows_across_kinds(store: HqStore) -> None:
    store.upsert_card("ab" * 32, "M-1")
    store.set_rule("base", 1, 100)
    page = store.changes(0, 3)
    assert (len(page.members), len(page.cards), len(page.rules), page.more) == (2, 1, 0, True)
    with pytest.raises(ValueError):
        store.changes(0, 0)


def test_ingested_points_come_down_the_feed(store: HqStore) -> None:
    cursor = store.changes(0, 500).cursor
    store.ingest("T1", [entry(1, member="M-2", delta=7)])
    page = store.changes(cursor, 500)
    assert [(m.member_id, m.points) for m in page.members] == [("M-2", 7)]
    assert page.cursor > cursor


def test_an_unchanged_upsert_does_not_reappear_in_the_feed(store: HqStore) -> None:
    cursor = store.changes(0, 500).cursor
    store.upsert_member("M-1", "Aiko", "gold", 100)
    assert store.changes(cursor, 500).cursor == cursor
    store.upsert_member("M-1", "Aiko", "platinum", 100)
    assert [m.tier for m in store.changes(cursor, 500).members] == ["platinum"]


# -- demo seed ------------------------------------------------------------------------------------


def test_seed_demo_is_idempotent_and_keeps_earned_points(tmp_path: Path) -> None:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.add_terminal("T1", "S1", "tok")
    seed_demo(hq, KEY)
    first = hq.changes(0, 500)
    assert (len(first.members), len(first.cards), [r.rule_id for r in first.rules]) == (4, 4, ["base"])
    hq.ingest("T1", [entry(1, member="M-0001", delta=12)])
    cursor = hq.changes(0, 500).cursor
    seed_demo(hq, KEY)
    assert hq.changes(cursor, 500).cursor == cursor
    assert points(hq, "M-0001") == 1212
    hq.close()


def test_seed_demo_cards_hash_their_uids_and_carry_their_statuses(tmp_path: Path) -> None:
    hq = HqStore(str(tmp_path / "hq.db"))
    seed_demo(hq, KEY)
    page = hq.changes(0, 500)
    cards = {c.uid_hash: c for c in page.cards}
    members = {m.member_id: m for m in page.members}
    for demo in DEMO_CARDS:
        card = cards[card_uid_hash(KEY, bytes.fromhex(demo.uid))]
        assert (card.member_id, card.status) == (demo.member_id, demo.card_status)
        assert (members[demo.member_id].status, members[demo.member_id].points) == (demo.member_status, demo.points)
    assert cards[card_uid_hash(KEY, bytes.fromhex("04A1B2C3D4E503"))].status == "blocked"
    assert members["M-0004"].status == "blocked"
    assert (page.rules[0].points, page.rules[0].per_minor) == (1, 100)
    hq.close()


# -- property: any order, any retries, same result ------------------------------------------------

_ENTRY = st.tuples(
    st.sampled_from(["T1", "T2"]),
    st.sampled_from(["sale", "void", "note"]),
    st.sampled_from(["M-1", "M-2", "M-404", None]),
    st.integers(-50, 50),
)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[list[WireEntry]], list[int]]:
    """Entries of two terminals split into batches, and an order that sends each batch at least once."""
    specs = draw(st.lists(_ENTRY, min_size=1, max_size=14))
    next_seq = {"T1": 0, "T2": 0}
    entries = []
    for terminal, kind, member, delta in specs:
        next_seq[terminal] += 1
        entries.append(entry(next_seq[terminal], member, delta, kind=kind, terminal=terminal))
    count = draw(st.integers(1, 5))
    owner = draw(st.lists(st.integers(0, count - 1), min_size=len(entries), max_size=len(entries)))
    batches = [[e for e, b in zip(entries, owner, strict=False) if b == i] for i in range(count)]
    batches = [b for b in batches if b]
    resent = draw(st.lists(st.integers(0, len(batches) - 1), max_size=6))
    order = draw(st.permutations(list(range(len(batches))) + resent))
    return batches, order


def _fresh() -> HqStore:
    hq = HqStore(":memory:")
    hq.add_terminal("T1", "S1", "t1")
    hq.add_terminal("T2", "S1", "t2")
    hq.upsert_member("M-1", "Aiko", "gold", 100)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    return hq


def _push(hq: HqStore, batch: list[WireEntry]) -> int:
    # A batch holds entries of both terminals; each terminal pushes its own part.
    stored = 0
    for terminal in ("T1", "T2"):
        stored += hq.ingest(terminal, [e for e in batch if e.terminal_id == terminal]).stored
    return stored


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(schedules())
def test_any_permutation_and_duplication_of_batches_gives_the_in_order_result(
    schedule: tuple[list[list[WireEntry]], list[int]],
) -> None:
    batches, order = schedule
    reference, shuffled = _fresh(), _fresh()
    for batch in batches:
        _push(reference, batch)
    stored = sum(_push(shuffled, batches[i]) for i in order)
    assert stored == sum(len(b) for b in batches)
    assert _snapshot(shuffled) == _snapshot(reference)
    for terminal in ("T1", "T2"):
        reply = shuffled.ingest(terminal, [])
        assert (reply.acked_seq, reply.gaps) == (reference.journal_count(terminal), [])
    reference.close()
    shuffled.close()
