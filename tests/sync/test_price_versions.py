"""A sale names the versions of the documents it was priced with, and head office prices it again with
exactly those: a till that had not pulled the newest rules raises no ``price_mismatch``; the same versions
disagreeing (a till's bug or a lie) still do; versions head office never issued are flagged and priced
with the current rules, which bound the points. A real till's service makes the sales; head office runs
on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hq import versions
from hq.ingest import Settings
from hq.store import Effect, HqStore
from sync.protocol import Reason, WireEntry
from terminal.canonical import doc_digest
from terminal.model import Basket, EarnRule, Line, Member
from terminal.service import Service
from terminal.store import Store

BASE = EarnRule("base", 1, 100)
COFFEE_V1 = {"kind": "campaign", "multiplier_pct": 200, "categories": ["coffee"]}
COFFEE_V2 = {"kind": "campaign", "multiplier_pct": 300, "categories": ["coffee"]}
P10 = {"kind": "percent_off", "value": 10}
LATTES = Basket((Line("LATTE", 4, 450, "coffee"),))


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(spend_needs_proof=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "basic", 0)
    store.set_rule("base", BASE.points, BASE.per_minor)
    store.put_rule_doc(dict(COFFEE_V1), "coffee")
    store.put_coupon(dict(P10), "P10")
    yield store
    store.close()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Store]:
    """A till that pulled version 1 of the coffee campaign and the coupon."""
    store = Store.open(tmp_path / "t.db")
    store.apply_changes([Member("M-1", "Aiko", "basic", 0)], [], [BASE], 1)
    store.put_docs("rule_docs", {"coffee": dict(COFFEE_V1)})
    store.put_docs("coupon_docs", {"P10": dict(P10)})
    yield store
    store.close()


def sell(till: Store, coupons: tuple[str, ...] = ()) -> dict[str, Any]:
    service = Service(till, "T1", store_id="S1", spend_needs_proof=False)
    service.commit(service.quote("M-1", LATTES, list(coupons)))
    return dict(till.entries()[-1].payload)


def push(hq: HqStore, seq: int, payload: dict[str, Any]) -> str:
    txn = f"T1-{seq}"
    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=seq,
                txn_id=txn,
                kind="sale",
                payload=payload,
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
        ],
    )
    return txn


def reasons(hq: HqStore, txn: str) -> list[str]:
    return sorted(i.reason.value for i in hq.items() if i.txn_id == txn)


def test_a_sale_names_every_document_version_it_was_priced_with(till: Store) -> None:
    payload = sell(till, ("P10",))
    assert payload["priced_with"] == {
        "base": doc_digest({"per_minor": 100, "points": 1, "rule_id": "base"}),
        "rule:coffee": doc_digest(COFFEE_V1),
        "coupon:P10": doc_digest(P10),
    }


def test_a_till_that_had_not_pulled_the_new_rules_raises_no_mismatch(hq: HqStore, till: Store) -> None:
    hq.put_rule_doc(dict(COFFEE_V2), "coffee")  # head office changed the campaign; the till is offline
    payload = sell(till, ("P10",))
    txn = push(hq, 1, payload)
    assert reasons(hq, txn) == [] and hq.effects("T1") == {1: Effect.APPLIED}
    assert hq.member("M-1").points == payload["points_earned"]  # type: ignore[union-attr]


def test_the_same_versions_disagreeing_still_raise_a_mismatch(hq: HqStore, till: Store) -> None:
    payload = sell(till)
    lowered = {**payload, "points_earned": payload["points_earned"] - 5, "points_delta": payload["points_delta"] - 5}
    txn = push(hq, 1, lowered)  # fewer points than the rules give: a till's bug, booked as reported
    assert reasons(hq, txn) == ["price_mismatch"]
    raised = {**payload, "points_earned": payload["points_earned"] + 50, "points_delta": payload["points_delta"] + 50}
    txn = push(hq, 2, raised)  # more than the named rules give: held
    assert reasons(hq, txn) == ["points_above_rules"] and hq.effects("T1")[2] is Effect.QUARANTINED


def test_versions_head_office_never_issued_are_flagged_and_bounded_by_the_current_rules(
    hq: HqStore, till: Store
) -> None:
    generous = {"kind": "campaign", "multiplier_pct": 1000, "categories": ["coffee"]}
    till.put_docs("rule_docs", {"coffee": generous})  # a till's database edited by hand
    txn = push(hq, 1, sell(till))
    assert reasons(hq, txn) == ["points_above_rules", "unknown_doc_version"]
    item = next(i for i in hq.items() if i.reason == Reason.UNKNOWN_DOC_VERSION)
    assert item.detail["versions"] == ["rule:coffee"]
    assert hq.member("M-1").points == 0  # type: ignore[union-attr]


def test_a_sale_naming_no_versions_is_priced_with_the_current_rules(hq: HqStore, till: Store) -> None:
    hq.put_rule_doc(dict(COFFEE_V2), "coffee")
    payload = {**sell(till), "priced_with": None}  # as a till from before versions were named
    txn = push(hq, 1, payload)
    item = next(i for i in hq.items() if i.txn_id == txn)
    assert item.reason == Reason.PRICE_MISMATCH and item.detail["versions"] == "current"


def test_a_version_held_before_the_history_began_is_still_known(hq: HqStore, till: Store, hq_url: str) -> None:
    with hq.db.write() as tx:  # as a head office that stored its documents before it kept versions
        tx.run("DELETE FROM doc_versions")
        tx.run("DELETE FROM hq_migrations WHERE name = 'm006_signal'")
        for statement in (
            "DROP TABLE doc_versions",
            "DROP TABLE doc_events",
            "DROP TABLE stores",
            "DROP TABLE status_changes",
            "DROP INDEX idx_items_group",
            "DROP INDEX idx_items_cursor",
            "ALTER TABLE journal DROP COLUMN made_at",
        ):
            tx.run(statement)
    hq.close()
    again = HqStore(hq_url, Settings(spend_needs_proof=False))  # the migration keeps the versions held now
    try:
        with again.db.write() as tx:  # the stores table m006 made again, as the later migration m022 left it
            tx.run("ALTER TABLE stores ADD COLUMN merchant_id TEXT NOT NULL DEFAULT 'chain'")
        again.put_rule_doc(dict(COFFEE_V2), "coffee")
        txn = push(again, 1, sell(till))
        assert reasons(again, txn) == []
    finally:
        again.close()


# -- a dishonest till choosing its rules ------------------------------------------------------------


def test_a_till_cannot_price_with_last_months_generous_campaign(hq: HqStore, till: Store) -> None:
    generous = {"kind": "campaign", "multiplier_pct": 1000, "categories": ["coffee"]}
    hq.put_rule_doc(generous, "coffee")  # last month's launch week ...
    hq.put_rule_doc(dict(COFFEE_V1), "coffee")  # ... then back to normal
    with hq.db.write() as tx:  # (as head office's history holds it: both a month ago)
        tx.run("UPDATE doc_events SET at = ? WHERE doc_id = 'coffee'", ["2026-10-01T00:00:00.000Z"])
        tx.run(
            "UPDATE doc_events SET at = ? WHERE doc_id = 'coffee' AND digest = ?",
            ["2026-10-08T00:00:00.000Z", doc_digest(COFFEE_V1)],
        )
    till.put_docs("rule_docs", {"coffee": generous})  # a stolen credential's till names the old version
    txn = push(hq, 1, sell(till))
    assert reasons(hq, txn) == ["points_above_rules", "unknown_doc_version"]
    assert next(i for i in hq.items() if i.reason == Reason.UNKNOWN_DOC_VERSION).detail["versions"] == ["rule:coffee"]
    assert hq.member("M-1").points == 0  # type: ignore[union-attr]


def test_a_till_cannot_leave_out_a_cap_that_was_in_force(hq: HqStore, till: Store) -> None:
    cap = {"kind": "cap", "cap": 10}
    hq.put_rule_doc(cap, "cap")
    with hq.db.write() as tx:
        tx.run("UPDATE doc_events SET at = ?", ["2026-10-01T00:00:00.000Z"])  # in force for weeks
    txn = push(hq, 1, sell(till))  # the till names only the coffee campaign: 72 points, not 10
    assert reasons(hq, txn) == ["points_above_rules", "unknown_doc_version"]
    assert next(i for i in hq.items() if i.reason == Reason.UNKNOWN_DOC_VERSION).detail["versions"] == [
        "rule:cap left out"
    ]


def test_a_rule_added_while_the_till_was_offline_may_be_missing_from_its_sales(hq: HqStore, till: Store) -> None:
    hq.put_rule_doc({"kind": "sku_bonus", "points": 25, "skus": ["LATTE"]}, "latte-bonus")  # added just now
    txn = push(hq, 1, sell(till))  # the till had not pulled it: priced with what it held, no item
    assert reasons(hq, txn) == []


def test_the_versions_current_in_a_window_are_read_from_head_offices_history() -> None:
    line = [
        ("2026-10-01T00:00:00.000Z", "a" * 16),
        ("2026-10-08T00:00:00.000Z", "b" * 16),
        ("2026-10-09T00:00:00.000Z", versions.DELETED),
    ]
    assert versions.current_at(line, "2026-09-30T00:00:00.000Z") is None
    assert versions.current_at(line, "2026-10-05T00:00:00.000Z") == "a" * 16
    assert versions.current_at(line, "2026-10-10T00:00:00.000Z") is None  # deleted
    assert versions.current_during(line, "2026-10-07T00:00:00.000Z", "2026-10-08T12:00:00.000Z") == {"a" * 16, "b" * 16}
    named = {"base": "c" * 16, "rule:x": "a" * 16}
    problems = versions.implausible(
        named, {"rule:x": line}, "2026-10-08T12:00:00.000Z", "2026-10-09T12:00:00.000Z", "c" * 16
    )
    assert problems == ["rule:x"]  # superseded before the window began
    assert versions.implausible(
        {"base": "c" * 16},
        {"rule:y": [(versions.SINCE_EVER, "d" * 16)]},
        "2026-10-08T00:00:00.000Z",
        "2026-10-09T00:00:00.000Z",
        "c" * 16,
    ) == ["rule:y left out"]
