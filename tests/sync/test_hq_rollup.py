"""The report roll-up (hq/rollup.py): what ingest, releases, late members, refunds, expiry and administrators
add to ``report_days`` must equal the statements that define it over the journal and the ledger, on SQLite
and PostgreSQL; the migration fills it; the command finds a damaged table and rebuilds it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hq import ledger, members, rollup, stats
from hq.db.schema import migrate
from hq.erasure import erase_member
from hq.store import HqStore, Settings
from sync import claims
from sync.protocol import WireEntry
from tests.fixtures import entries
from tests.sync.test_hq_stats import BASKET, Till, scenario


def differences(hq: HqStore) -> list[rollup.Difference]:
    with hq.db.read() as tx:
        return rollup.check(tx)


def figures(hq: HqStore, figure: str, store: str = "S1") -> int:
    with hq.db.read() as tx:
        return sum(n for _d, s, f, n in rollup.read(tx, "2000-01-01", "2100-01-01", [figure], [store]) if f == figure)


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(clock_skew=10**9, spend_needs_proof=False, recompute=False))
    yield store
    store.close()


def test_the_roll_up_after_every_kind_of_entry_equals_its_statements(hq: HqStore) -> None:
    """Sales with coupons, refunds and voids (one in the batch of its sale), a quarantined sale released,
    a member's sale waiting for its enrolment, a merge and an erasure."""
    scenario(hq)
    assert differences(hq) == []
    assert figures(hq, "sales") == 6 and figures(hq, "sales", "S2") == 3  # the released sale counts at S1
    assert figures(hq, "coupons") == 1 and figures(hq, "coupons", "S2") == 0  # the voided sale's use given back


def test_a_quarantined_sale_counts_once_released_and_a_refund_gives_its_coupon_back(hq: HqStore) -> None:
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    hq.put_coupon({"coupon_id": "C1", "kind": "amount_off", "amount": 100}, "C1")
    till = Till(hq, "T1")
    held = till.push("sale", entries.sale("M-1", 800, store_id="S9", coupons=["C1"]), day=2)
    assert (figures(hq, "sales"), figures(hq, "amount"), figures(hq, "coupons")) == (0, 0, 0)
    hq.release(held, "admin", "the store moved")
    assert (figures(hq, "sales"), figures(hq, "amount"), figures(hq, "coupons")) == (1, 800, 1)
    till.push("refund", entries.refund(held, "M-1", money_back=800, coupons_restored=("C1",), returned=[(0, 1)]), 3)
    assert (figures(hq, "sales"), figures(hq, "coupons")) == (1, 0)
    assert differences(hq) == []


def test_an_unknown_members_entries_count_when_it_is_registered(hq: HqStore) -> None:
    """Stored before head office knew the member, they count in the sales at once (the sale happened) and in
    the points when the member is registered and the ledger posts them."""
    till = Till(hq, "T1")
    till.push("sale", entries.sale("M-7", 1200, earned=12), day=2)
    assert figures(hq, "sales") == 0 and figures(hq, "points_issued") == 0  # unknown_member: does not count yet
    hq.upsert_member("M-7", "Gen", "basic", 0)
    assert figures(hq, "sales") == 1 and figures(hq, "points_issued") == 12
    assert differences(hq) == []


def test_expiry_adjustments_and_erasure_reach_the_chains_balances(hq: HqStore) -> None:
    hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "expire_days": 30})
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    hq.upsert_member("M-2", "Ben", "basic", 0)
    till = Till(hq, "T1")
    till.push("sale", entries.sale("M-1", 1000, earned=40, lines=BASKET), day=1)
    till.push("sale", entries.sale("M-2", 500, earned=25), day=2)
    hq.upsert_member("M-1", "Aiko", "basic", 45)  # an administrator's +5: a lot of head office's, earned today
    with hq.db.write() as tx:
        expired = ledger.expire(tx, datetime(2026, 3, 1, tzinfo=UTC))
    assert sum(e.points for e in expired) == 65
    till.push("sale", entries.sale("M-2", 500, earned=8), day=3)
    erase_member(hq, "M-2", "admin")  # its 8 points are forfeited: breakage, not expiry
    assert figures(hq, "points_expired") == 65 and figures(hq, "points_issued") == 73
    assert figures(hq, "points_issued", rollup.HEAD_OFFICE) == 5
    with hq.db.read() as tx:
        moves = rollup.balance_moves(tx, "member_points", "2100-01-01")
        held = int(tx.one("SELECT COALESCE(SUM(points), 0) FROM members WHERE deleted = 0")[0])  # type: ignore[index]
    assert sum(moves.values()) == held == 5
    assert differences(hq) == []


# -- random sequences on both engines -----------------------------------------------------------------------

MEMBERS = ["M-1", "M-2", None, "M-7"]  # M-7 is registered by a step, if one comes
step = st.one_of(
    st.tuples(
        st.just("sale"),
        st.sampled_from(MEMBERS),
        st.integers(1, 4),  # day
        st.booleans(),  # with coupon C1
        st.sampled_from([0, 0, 50, 120]),  # points redeemed
        st.sampled_from([0, 0, 200]),  # stored value paid
        st.sampled_from(["S1", "S1", "S1", "S9"]),  # S9: quarantined, the till is S1's
    ),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(0, 100), st.booleans()),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("register")),
    st.tuples(st.just("expire"), st.integers(1, 90)),
    st.tuples(st.just("adjust"), st.sampled_from(["M-1", "M-2"]), st.integers(-30, 30)),
    st.tuples(st.just("push")),
)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, min_size=4, max_size=18))
def test_random_sequences_keep_the_roll_up_its_statements_give(
    fresh_url: Callable[[], str], steps: list[tuple[Any, ...]]
) -> None:
    hq = HqStore(fresh_url(), Settings(clock_skew=10**9, spend_needs_proof=False, recompute=False))
    try:
        hq.put_rule_doc({"rule_id": "policy", "kind": "points_policy", "expire_days": 30})
        hq.put_coupon({"coupon_id": "C1", "kind": "amount_off", "amount": 100}, "C1")
        for m in ("M-1", "M-2"):
            hq.upsert_member(m, m, "basic", 300, stored_value=1000)
        till = Till(hq, "T1")
        sales: list[tuple[str, str | None, dict[str, Any]]] = []
        held: list[str] = []
        pending = []
        for s in steps:
            if s[0] == "sale":
                _, member, day, coupon, redeem, pay, store_id = s
                payload = entries.sale(
                    member,
                    1000,
                    store_id=store_id,
                    earned=10 if member else 0,
                    redeemed=redeem if member else 0,
                    stored_value=pay if member else 0,
                    coupons=["C1"] if coupon else [],
                )
                e = till.entry("sale", payload, day)
                sales.append((e.txn_id, member, payload))
                if store_id == "S9":
                    held.append(e.txn_id)
                pending.append(e)
            elif s[0] in ("refund", "void") and sales:
                txn, member, sale = sales[s[1] % len(sales)]
                share = 100 if s[0] == "void" else s[2]
                refund = entries.refund(
                    txn,
                    member,
                    money_back=(sale["total"] - sale["points_redeemed"]) * share // 100,
                    stored_value=sale["stored_value"] * share // 100,
                    restored=sale["points_redeemed"] * share // 100,
                    clawed=sale["points_earned"] * share // 100,
                    coupons_restored=tuple(sale["coupons"]) if s[0] == "refund" and s[3] else (),
                    void=s[0] == "void",
                )
                pending.append(till.entry(s[0], refund, 4))
            if s[0] in ("push", "release", "register") and pending:  # what is released or registered is held
                hq.ingest("T1", pending)
                pending = []
            if s[0] == "release" and held:
                txn = held.pop(s[1] % len(held))
                with hq.db.read() as tx:
                    quarantined = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [txn])
                if quarantined is not None and quarantined[0] == "quarantined":
                    hq.release(txn, "admin", "checked")
            elif s[0] == "register" and hq.member("M-7") is None:
                hq.upsert_member("M-7", "Gen", "basic", 0)
            elif s[0] == "expire":
                with hq.db.write() as tx:
                    ledger.expire(tx, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=s[1]))
            elif s[0] == "adjust" and hq.member(s[1]) is not None:
                member = hq.member(s[1])
                assert member is not None
                hq.upsert_member(s[1], s[1], "basic", max(0, member.points + s[2]))
            assert differences(hq) == [], s
        if pending:
            hq.ingest("T1", pending)
        assert differences(hq) == []
    finally:
        hq.close()


# -- the migration, the command ------------------------------------------------------------------------------


def test_the_migration_fills_the_roll_up_from_what_head_office_held(hq_url: str) -> None:
    """A head office of the release before: its trade is in the roll-up the migration made, as ingest would
    have kept it."""
    hq = scenario(HqStore(hq_url))
    with hq.db.read() as tx:
        kept = rollup.held(tx)
    assert kept
    with hq.db.write() as tx:
        tx.run("DROP TABLE report_days")
        tx.run("DELETE FROM hq_migrations WHERE name = 'm032_report_days'")
    assert migrate(hq.db, backup=False) == ["m032_report_days"]
    with hq.db.read() as tx:
        assert rollup.held(tx) == kept
    assert differences(hq) == []
    hq.close()


def test_the_command_finds_a_damaged_roll_up_and_rebuilds_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    url = str(tmp_path / "hq.db")
    scenario(HqStore(url)).close()
    db = ["--db", url]
    run = CliRunner().invoke
    ok = run(app, ["reports", "check", *db])
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
    hq = HqStore(url)
    with hq.db.write() as tx:
        tx.run("UPDATE report_days SET amount = amount + 1 WHERE figure = 'amount' AND store_id = 'S2'")
        tx.run("DELETE FROM report_days WHERE figure = 'coupons'")
    hq.close()
    damaged = run(app, ["reports", "check", *db])
    assert damaged.exit_code == 1
    assert "rollup_differs: coupons of S1 on 2026-01-01 (held 0, rebuilt 1)" in damaged.output
    assert {d["figure"] for d in json.loads(damaged.output.splitlines()[0])["differences"]} == {"amount", "coupons"}
    rebuilt = run(app, ["reports", "rebuild", *db])
    assert rebuilt.exit_code == 0 and json.loads(rebuilt.output)["rows"] > 0
    assert run(app, ["reports", "check", *db]).exit_code == 0


def test_a_rebuild_of_the_statistics_writes_their_figures_again(hq: HqStore) -> None:
    """Daily rows lost (a table restored from an old backup, say) and rebuilt from the journal: the members
    figures follow the rebuild, not what was added before."""
    scenario(hq)
    with hq.db.read() as tx:
        kept = rollup.read(tx, "2026-01-01", "2026-01-31", list(rollup.MEMBER_FIGURES), None)
    with hq.db.write() as tx:
        tx.run("DELETE FROM member_day_rows WHERE kind = 's' AND item = 'S2'")
    assert {d.key[3] for d in differences(hq)} == {"active", "visits", "spend"}
    hq.db.transact(stats.rebuild)
    assert differences(hq) == []
    with hq.db.read() as tx:
        assert rollup.read(tx, "2026-01-01", "2026-01-31", list(rollup.MEMBER_FIGURES), None) == kept


# -- what the review of the roll-up found ------------------------------------------------------------------


def test_a_sale_held_by_the_trust_rules_is_never_claimed_into_the_figures(hq: HqStore) -> None:
    """An anonymous sale quarantined (a wrong store) and then rejected: its receipt's claim is refused
    (``claim_used``), so it neither pays points to the claimer nor counts in the reports."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = claims.public_bytes(key)
    till = Till(hq, "T1")
    till.push("claim_key", {"key_id": claims.key_id_of(public).hex(), "public_key": claims.b64(public)})
    held, rejected = str(uuid.uuid4()), str(uuid.uuid4())
    for txn in (held, rejected):
        till.seq += 1
        body = entries.sale(None, 2000, store_id="S9")
        hq.ingest(
            "T1",
            [
                WireEntry(
                    terminal_id="T1",
                    seq=till.seq,
                    txn_id=txn,
                    kind="sale",
                    payload=body,
                    created_at="2026-01-02T10:00:00.000Z",
                )
            ],
        )
    hq.reject(rejected, "admin", "not a sale of ours")
    for txn in (held, rejected):
        token = "TPJ1:" + claims.sign(key, txn, int(datetime.now(UTC).timestamp()), 3600)
        with pytest.raises(members.ClaimRefused) as refused:
            hq.db.transact(lambda tx, t=token: members.claim(tx, t, "Gen", members.CONSENT_VERSION, datetime.now(UTC)))
        assert refused.value.code == "claim_used"
    assert figures(hq, "sales") == 0 and differences(hq) == []


def test_a_till_entry_cannot_take_an_id_of_head_offices_own(hq: HqStore) -> None:
    """Head office's ledger ids carry a ``:`` (``erase:M-2``, ``<txn>:restored``); a till's id never does, so
    an entry named like one is refused before anything is stored, and the figures stay their statements'."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        WireEntry(terminal_id="T1", seq=1, txn_id="erase:M-2", kind="sale", payload={}, created_at="x")
    Till(hq, "T1").push("sale", entries.sale(None, 500))
    assert differences(hq) == []


def test_an_erased_members_campaign_coupon_leaves_the_campaign_figure_and_stays_a_coupon(hq: HqStore) -> None:
    from hq import campaigns, segments

    hq.upsert_member("M-1", "Aiko", "basic", 0)
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**9}}, "test")
    spec = campaigns.parse_spec(
        {
            "name": "Welcome back",
            "segment": "everyone",
            "variants": [{"variant": "v", "coupon": {"kind": "amount_off", "value": 100}}],
            "schedule": {"kind": "daily", "at": "09:00"},
            "timezone": "UTC",
            "control_share": 0,
            "require_consent": False,
        }
    )
    hq.db.transact(lambda tx: campaigns.put(tx, "C-ONE", spec, "admin", "2026-01-01T00:00:00.000Z"))
    assert campaigns.run_one(hq.db, "C-ONE", datetime(2026, 1, 1, 10, tzinfo=UTC)) is not None
    with hq.db.read() as tx:
        coupon = tx.one("SELECT coupon_id FROM campaign_members WHERE member_id = 'M-1'")
    assert coupon is not None and coupon[0]
    Till(hq, "T1").push("sale", entries.sale("M-1", 1000, coupons=[str(coupon[0])], proof="pos"), day=2)
    assert (figures(hq, "coupons"), figures(hq, "coupons_campaign")) == (1, 1)
    erase_member(hq, "M-1", "admin")
    assert (figures(hq, "coupons"), figures(hq, "coupons_campaign")) == (1, 0)
    assert differences(hq) == []
