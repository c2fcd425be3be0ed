"""Property: no sequence of entries signed with a till's credential raises the chain's stored value or
points above what administrators and the earning rules granted. Whatever kinds, signs, refunds,
proofs and stores a stolen credential makes up, head office stores them all and creates nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hq.recompute import program_of, recompute
from hq.store import Effect, HqStore
from sync.protocol import PayloadError, SalePayload, WireEntry, parse_payload
from terminal.errors import Rejected
from terminal.loyalty import DEFAULT_BASE_RULE
from tests.fixtures import entries

START = {"M-1": (1000, 5000), "M-2": (500, 1000), "E-1": (200, 3000)}
MEMBERS = st.sampled_from(["M-1", "M-2", "E-1", "M-404", None])
STORE = st.sampled_from(["S1", "S1", "S1", "S2"])
TIERS = st.sampled_from([None, "basic", "gold"])
# When the till says it made the entry: now, long ago, far ahead (head office holds its own time).
CREATED = st.sampled_from(["now", "2026-03-01T10:00:00.000Z", "1970-01-01T00:00:00.000Z", "2099-12-31T23:00:00.000Z"])
RULES = {
    "tiers": {"kind": "tiers", "levels": [{"tier": "basic", "threshold": 0}, {"tier": "gold", "threshold": 10**9}]},
    "gold": {"kind": "tier", "tier": "gold", "multiplier_pct": 500},
}


@st.composite
def a_sale(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    total = draw(st.integers(1, 5000))
    redeemed = draw(st.integers(0, total))
    stored = draw(st.integers(0, total - redeemed))
    proof = draw(st.sampled_from([None, "pos", "payment_code", "card"]))
    extra: dict[str, Any] = {}
    if proof == "payment_code":  # made up: no device head office certified signed it
        extra = {"payment_code": "TPP1:" + "A" * 104, "code_id": f"{uuid.uuid4().hex[:16]}:{draw(st.integers(1, 9))}"}
    if proof == "card":  # a tap the till says it saw: a SUN counter (head office holds no keys here) or a Lite-S MAC
        sun = draw(st.booleans())
        extra = {
            "tap": {
                "uid_hash": "ab" * 32,
                "trust": "sun" if sun else "mac",
                "counter": draw(st.integers(0, 20)) if sun else None,
            }
        }
    payload = entries.sale(
        draw(MEMBERS),
        total,
        earned=draw(st.integers(0, 300)),
        redeemed=redeemed,
        stored_value=stored,
        store_id=draw(STORE),
        proof=proof,
        tier=draw(TIERS),
        **extra,
    )
    return "sale", payload


@st.composite
def a_refund(draw: st.DrawFn, txns: list[str]) -> tuple[str, dict[str, Any]]:
    money = draw(st.integers(0, 5000))
    original = draw(st.sampled_from(txns)) if txns and draw(st.booleans()) else "made-up"
    return draw(st.sampled_from(["refund", "void"])), entries.refund(
        original,
        draw(MEMBERS),
        store_id=draw(STORE),
        money_back=money,
        stored_value=draw(st.integers(0, money)),
        restored=draw(st.integers(0, 2000)),
        clawed=draw(st.integers(0, 50)),
        void=False,
    )


def a_forgery(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(["topup", "adjust", "payment", "enrol", "bonus", "till_topup", "topup_void"]))
    value = draw(st.integers(-(10**6), 10**6))
    if kind in ("till_topup", "topup_void"):  # stored value sold at a till head office never enabled for it
        amount = abs(value) + 1
        return kind, {
            "member_id": draw(MEMBERS) or "M-1",
            "store_id": draw(STORE),
            "amount": amount,
            "stored_value_delta": amount if kind == "till_topup" else -amount,
            "local_time": "2026-03-01T11:00:00",
            **({"original_txn": "made-up"} if kind == "topup_void" else {}),
        }
    if kind == "enrol":  # a new member, taking over a card (M-1's or E-1's) if it can, bringing points if it can
        card = draw(st.sampled_from([None, "ab" * 32, "cd" * 32]))
        return kind, {
            **entries.enrol(f"E-{uuid.uuid4().hex[:8]}", card, store_id="S1"),
            "points_delta": value,
            "tier": draw(st.sampled_from(["", "gold"])),
        }
    return kind, {
        "member_id": draw(MEMBERS),
        "amount": abs(value) + 1,
        "points_delta": value,
        "stored_value_delta": value,
    }


@st.composite
def schedules(draw: st.DrawFn) -> list[list[tuple[str, str, dict[str, Any], str]]]:
    made: list[tuple[str, str, dict[str, Any], str]] = []
    for _ in range(draw(st.integers(1, 16))):
        pick = draw(st.integers(0, 9))
        txn = str(uuid.uuid4())
        if pick < 4:
            kind, payload = draw(a_sale())
        elif pick < 7:
            kind, payload = draw(a_refund([t for t, k, _, _ in made if k == "sale"]))
            if kind == "void":
                payload = {**payload, "voided_txn_id": payload["original_txn"]}
        else:
            kind, payload = a_forgery(draw)
        made.append((txn, kind, payload, draw(CREATED)))
    cuts = sorted(draw(st.lists(st.integers(0, len(made)), max_size=3)))
    bounds = [0, *cuts, len(made)]
    return [made[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def granted_by_rules(store: HqStore) -> dict[str, int]:
    """What the earning rules give the sales head office applied, per member (in the member's tier as head
    office holds it: every member here stays basic)."""
    found: dict[str, int] = {}
    effects = store.effects("T1")
    for entry in store.entries("T1"):
        if entry.kind != "sale" or effects[entry.seq] is not Effect.APPLIED:
            continue
        try:
            sale = parse_payload("sale", entry.payload)
        except PayloadError:
            continue
        assert isinstance(sale, SalePayload) and sale.member_id
        try:
            earned = recompute(
                sale.model_copy(update={"tier": "basic"}), program_of(RULES, DEFAULT_BASE_RULE), {}
            ).points_earned
        except Rejected:  # a sale the rules cannot price grants nothing
            earned = 0
        found[sale.member_id] = found.get(sale.member_id, 0) + earned
    return found


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(schedules())
def test_no_sequence_of_till_entries_creates_value(batches: list[list[tuple[str, str, dict[str, Any], str]]]) -> None:
    store = HqStore(":memory:")
    store.add_terminal("T1", "S1", "stolen")
    store.add_terminal("T0", "S1", "honest")
    for rule_id, body in RULES.items():
        store.put_rule_doc({**body, "rule_id": rule_id})
    store.ingest(
        "T0",
        [
            WireEntry(
                terminal_id="T0",
                seq=1,
                txn_id="enrol-e1",
                kind="enrol",
                payload=entries.enrol("E-1", "cd" * 32),
                created_at="2026-03-01T09:00:00.000Z",
            )
        ],
    )  # a member a till enrolled, with a card
    for member_id, (points, value) in START.items():
        store.upsert_member(member_id, member_id, "basic", points, stored_value=value)
    store.upsert_card("ab" * 32, "M-1")
    store.note_pull("T1")
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    seq = 0
    for batch in batches:
        wire = []
        for txn, kind, payload, created in batch:
            seq += 1
            wire.append(
                WireEntry(
                    terminal_id="T1",
                    seq=seq,
                    txn_id=txn,
                    kind=kind,
                    payload=payload,
                    created_at=now if created == "now" else created,
                )
            )
        assert store.ingest("T1", wire).stored == len(wire)  # every fact is stored, nothing lost
    earned = granted_by_rules(store)
    [(all_points, all_value)] = store._read("SELECT SUM(points), SUM(stored_value) FROM members WHERE deleted = 0")
    assert all_value <= sum(v for _, v in START.values()), "the chain's stored value rose"
    assert all_points <= sum(p for p, _ in START.values()) + sum(earned.values()), "the chain's points rose"
    for member_id, (points, value) in START.items():
        member = store.member(member_id)
        assert member is not None
        assert member.stored_value <= value, "stored value rose above what administrators granted"
        assert member.points <= points + earned.get(member_id, 0), "points rose above what the rules granted"
    assert store.member("M-404") is None
    assert store.member("E-1") is not None  # no enrolment takes its card over
    assert store.journal_count("T1") == seq
    store.close()
