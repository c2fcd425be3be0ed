"""The members pages' reading, on SQLite and PostgreSQL: a member is found by id, by the beginning of its
name in any case (through ``idx_members_name``), by email or phone, by its card's hash or, when head office
holds the card-hash key, by the card's UID; a store manager finds only its stores' members; the member's page
holds its stores, visits, points lots with their expiry and recent sales; blocking is audited with the change."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hq import audit
from hq.backoffice import members as bo
from hq.backoffice.staff import Staff
from hq.policy import CardKeys
from hq.store import HqStore
from hq.wallet import signin
from terminal.credentials import card_uid_hash
from tests.backoffice.chain import chain

KEY = bytes(range(32))
UID = "04a1b2c3d4e501"


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff]]]:
    with chain(hq_url) as (hq, made):
        hq.upsert_card(card_uid_hash(KEY, bytes.fromhex(UID)), "M-S2")
        hq.db.transact(lambda tx: signin.set_contact(tx, "M-S1", signin.contact_of("aiko@example.com"), "test", 1))
        hq.db.transact(lambda tx: signin.set_contact(tx, "M-S2", signin.contact_of("+81 90 1234 5678"), "test", 1))
        yield hq, made


def found(hq: HqStore, who: Staff, query: str, keys: CardKeys | None = None) -> list[str]:
    with hq.db.read() as tx:
        return [f.member_id for f in bo.search(tx, who, query, keys.hash_uid if keys else None)]


def test_a_member_is_found_by_each_of_its_keys(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    admin = staff["admin"]
    hashing = CardKeys(None, lambda uid: card_uid_hash(KEY, uid))
    assert found(hq, admin, "M-S1") == ["M-S1"]
    assert found(hq, admin, "aIk") == ["M-S1"] and found(hq, admin, "BO N") == ["M-S2"]
    assert found(hq, admin, "AIKO@example.com") == ["M-S1"] and found(hq, admin, "+81-90-1234-5678") == ["M-S2"]
    assert found(hq, admin, "a" * 64) == ["M-S1"] and found(hq, admin, "B" * 64) == ["M-S2"]
    assert found(hq, admin, UID.upper(), hashing) == ["M-S2"] and found(hq, admin, UID) == []
    assert found(hq, admin, "nobody") == [] and found(hq, admin, "Ishi") == []  # a name's beginning only
    manager = staff["manager"]
    assert found(hq, manager, "M-S2") == [] and found(hq, manager, "+81 90 1234 5678") == []
    assert found(hq, manager, "a" * 64) == ["M-S1"]


def test_the_name_search_reads_its_index(tmp_path: Path) -> None:
    with chain(str(tmp_path / "hq.db")) as (hq, staff):
        for n in range(300):
            hq.upsert_member(f"M-{n:04d}", f"Member {n}", "basic", 0)
        assert found(hq, staff["admin"], "member 12") == ["M-0012"] + [f"M-{n:04d}" for n in range(120, 130)]
    with sqlite3.connect(tmp_path / "hq.db") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT member_id FROM members WHERE lower(display_name) >= ? "
            "AND lower(display_name) < ? AND deleted = 0",
            ["a", "b"],
        ).fetchall()
    assert "idx_members_name" in str(plan), plan


def test_the_member_page_holds_stores_visits_lots_and_sales(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    shown = bo.page(hq, staff["finance"], "M-S1")
    assert shown.stores == frozenset({"S1"}) and shown.found.name == "Aiko Ishi"
    assert shown.totals["visits"] == 1 and shown.totals["spend"] == 2500
    assert shown.overview is not None and [(lot.points, lot.remaining) for lot in shown.overview.lots] == [(25, 25)]
    assert [(v.kind, v.store_id, v.total) for v in shown.visits] == [("sale", "S1", 2500)]
    assert shown.cards == [{"uid_hash": "a" * 64, "status": "active"}]


def test_blocking_is_audited_in_the_same_change(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, staff = office
    done = bo.block(hq, staff["manager"], "member", "M-S1", True, "  card  shared   with a friend ")
    assert done["status"] == "blocked" and hq.member("M-S1").status == "blocked"  # type: ignore[union-attr]
    with hq.db.read() as tx:
        (record,) = audit.recent(tx)
    assert (record.actor, record.action, record.target, record.reason) == (
        "manager",
        "block_member",
        "M-S1",
        "card shared with a friend",
    )
    bo.block(hq, staff["admin"], "card", "b" * 64, True, "lost")
    with hq.db.read() as tx:
        assert tx.one("SELECT status FROM cards WHERE uid_hash = ?", ["b" * 64]) == ("blocked",)
        assert audit.recent(tx)[0].details == {"member_id": "M-S2"}
