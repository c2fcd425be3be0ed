"""What a till's credential could still do with what head office cannot check again, and the bound on
each: its clock, attested card reads, codes that bind no amount, enrolments, refunds that keep points,
tier and time claims. Each one a reproduction of an attack that once worked, now held or bounded.
Head office in-process on SQLite (these are ingest rules; tests/security/test_*.py run the processes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import payments
from hq.ingest import Effect, Settings
from hq.store import HqStore
from sync.protocol import ConfirmRequest, WireEntry
from terminal import payments as pay
from tests.fixtures import entries

CARD = "ab" * 32
NOW = datetime.now(UTC)


class Hq:
    def __init__(self, store: HqStore) -> None:
        self.store = store
        self.seq = 0

    def push(
        self, kind: str, payload: dict[str, Any], created: datetime | str | None = None, txn: str | None = None
    ) -> str:
        self.seq += 1
        txn = txn or f"T1-{self.seq}"
        created = created or datetime.now(UTC)  # made now (a device registered a moment ago is current)
        at = created if isinstance(created, str) else created.isoformat(timespec="milliseconds")
        self.store.ingest(
            "T1", [WireEntry(terminal_id="T1", seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=at)]
        )
        return txn

    def held(self, txn: str) -> list[str]:
        return sorted(i.reason.value for i in self.store.items() if i.txn_id == txn and i.quarantined)

    def balance(self, member_id: str = "M-1") -> tuple[int, int]:
        member = self.store.member(member_id)
        assert member is not None
        return member.points, member.stored_value


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[Hq]:
    store = HqStore(str(tmp_path / "hq.db"), Settings(attested_stored_value_per_day=5000))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "basic", 1000, stored_value=20_000)
    store.upsert_member("M-2", "Ben", "basic", 0)
    store.upsert_card(CARD, "M-1")
    yield Hq(store)
    store.close()


def today() -> str:
    return datetime.now().isoformat(timespec="seconds")


def test_attested_card_reads_are_bounded_per_day_head_office_receives_them(hq: Hq) -> None:
    mac = {"uid_hash": CARD, "trust": "mac"}
    for days_ago in range(5):  # the till's clock spreads them over five days: head office counts its own day
        hq.push(
            "sale",
            entries.sale("M-1", 2000, stored_value=2000, proof="card", tap=mac, local_time=today()),
            created=NOW - timedelta(days=days_ago),
        )
    assert hq.balance() == (1000, 20_000 - 2 * 2000)  # two fit the day's 5,000; three are held
    assert sum("proof_unverified" in hq.held(f"T1-{n}") for n in range(1, 6)) == 3


def test_a_card_seen_proving_itself_with_sun_cannot_be_claimed_as_a_mac_read(tmp_path: Path) -> None:
    from hq.policy import CardKeys
    from terminal.credentials import card_uid_hash
    from tests.vcard import Ntag424

    master, key, uid = bytes(range(16)), bytes(range(32)), bytes.fromhex("04A1B2C3D4E5F6")
    store = HqStore(str(tmp_path / "keys.db"), Settings(card_keys=CardKeys(master, lambda u: card_uid_hash(key, u))))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "basic", 0, stored_value=10_000)
    uid_hash = card_uid_hash(key, uid)
    store.upsert_card(uid_hash, "M-1")
    hq, tag = Hq(store), Ntag424(uid, master)
    sun = {"uid_hash": uid_hash, "trust": "sun", "sun": tag.ndef_url(), "counter": tag.counter}
    hq.push("sale", entries.sale("M-1", 1000, stored_value=1000, proof="card", tap=sun, local_time=today()))
    forged = hq.push(
        "sale",
        entries.sale(
            "M-1", 1000, stored_value=1000, proof="card", local_time=today(), tap={"uid_hash": uid_hash, "trust": "mac"}
        ),
    )
    assert hq.held(forged) == ["proof_invalid"] and hq.balance() == (0, 9000)
    store.close()


def test_a_code_pays_at_most_what_head_office_confirmed_or_the_devices_offline_cap(hq: Hq) -> None:
    phone, issuer = Ed25519PrivateKey.generate(), payments.payment_key(hq.store)
    cert = payments.register_device(hq.store, "M-1", pay.public_bytes(phone).hex(), offline_cap=3000)
    now = int(time.time())

    def code(n: int) -> str:
        return pay.make_code(phone, cert.cert_id, now, n)

    confirmed = code(1)
    payments.confirm(
        hq.store,
        "T1",
        ConfirmRequest(
            member_id="M-1", amount=500, txn_id="T1-1", code=confirmed, code_id=pay.parse_code(confirmed).code_id
        ),
    )
    inflated = hq.push(
        "sale",
        entries.sale(
            "M-1",
            9000,
            stored_value=9000,
            proof="payment_code",
            payment_code=confirmed,
            code_id=pay.parse_code(confirmed).code_id,
            local_time=today(),
        ),
        txn="T1-1",
    )
    assert hq.held(inflated) == ["payment_exceeds_confirmed"] and hq.balance()[1] == 20_000
    offline = [
        hq.push(
            "sale",
            entries.sale(
                "M-1",
                2000,
                stored_value=2000,
                proof="payment_code",
                payment_code=c,
                code_id=pay.parse_code(c).code_id,
                local_time=today(),
            ),
        )
        for c in (code(2), code(3))
    ]
    assert hq.held(offline[0]) == [] and hq.held(offline[1]) == ["offline_cap_exceeded"]  # 4,000 > the cap 3,000
    assert hq.balance()[1] == 20_000 - 2000
    del issuer


def test_a_device_revoked_before_the_tills_last_pull_cannot_be_backdated(hq: Hq) -> None:
    phone = Ed25519PrivateKey.generate()
    cert = payments.register_device(hq.store, "M-1", pay.public_bytes(phone).hex())
    payments.revoke_device(hq.store, cert.cert_id.hex(), "stolen")
    hq.store.note_pull("T1")  # the till pulled after the revocation: everything it made before was pushed then
    earlier = NOW - timedelta(minutes=30)
    text = pay.make_code(phone, cert.cert_id, int(earlier.timestamp()), 7)
    backdated = hq.push(
        "sale",
        entries.sale(
            "M-1",
            1000,
            stored_value=1000,
            proof="payment_code",
            payment_code=text,
            code_id=pay.parse_code(text).code_id,
            local_time=today(),
        ),
        created=earlier,
    )
    assert "device_revoked" in hq.held(backdated) or "proof_invalid" in hq.held(backdated)
    assert "clock_behind" in {i.reason.value for i in hq.store.items() if i.txn_id == backdated}
    assert hq.balance()[1] == 20_000


def test_an_enrolment_cannot_take_over_a_card_by_its_clock(hq: Hq) -> None:
    victim = "E-VICTIM"
    hq.push("enrol", entries.enrol(victim, "cd" * 32))
    hq.store.upsert_member(victim, stored_value=40_000)
    hq.push("enrol", entries.enrol("E-EVIL", "cd" * 32), created="1970-01-01T00:00:00Z")
    assert hq.balance(victim) == (0, 40_000)  # the holder keeps the card and its money
    assert hq.store.member("E-EVIL") is None  # merged into the holder


def test_a_void_or_refund_keeps_no_points_the_rules_take_back(hq: Hq) -> None:
    sale = hq.push(
        "sale",
        entries.sale(
            "M-1", 5000, earned=50, local_time=today(), lines=[{"sku": "A", "quantity": 5, "unit_price": 1000}]
        ),
    )
    kept = hq.push("void", entries.refund(sale, money_back=5000, clawed=0, void=True))
    assert hq.held(kept) == ["refund_keeps_points"]
    partial = entries.refund(sale, money_back=2000, clawed=0)
    partial["returned"] = [{"line": 0, "quantity": 2}]
    held = hq.push("refund", partial)
    assert hq.held(held) == ["refund_keeps_points"]
    fair = dict(partial, points_clawed=20, points_delta=-20)
    assert hq.held(hq.push("refund", fair)) == []
    assert hq.balance()[0] == 1000 + 50 - 20


def test_tier_and_time_claims_do_not_raise_points(hq: Hq) -> None:
    hq.store.put_rule_doc(
        {
            "rule_id": "tiers",
            "kind": "tiers",
            "levels": [{"tier": "basic", "threshold": 0}, {"tier": "gold", "threshold": 10**9}],
        }
    )
    hq.store.put_rule_doc({"rule_id": "gold", "kind": "tier", "tier": "gold", "multiplier_pct": 500})
    hq.store.put_rule_doc({"rule_id": "old", "kind": "campaign", "multiplier_pct": 1000, "ends": "2025-12-01"})
    as_gold = hq.push("sale", entries.sale("M-1", 10_000, earned=500, tier="gold", local_time=today()))
    assert hq.held(as_gold) == ["points_above_rules"]
    long_ago = hq.push("sale", entries.sale("M-1", 10_000, earned=1000, local_time="2025-11-28T10:00:00"))
    assert hq.held(long_ago) == ["points_above_rules"]
    hq.push("enrol", {**entries.enrol("E-NEW"), "tier": "gold"})
    new = hq.store.member("E-NEW")
    assert new is not None and new.tier == "basic"


def test_the_pos_word_never_spends_money(tmp_path: Path) -> None:
    store = HqStore(str(tmp_path / "pos.db"), Settings(spend_needs_proof=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "basic", 100, stored_value=30_000)
    hq = Hq(store)
    money = hq.push("sale", entries.sale("M-1", 1000, stored_value=1000, proof="pos", local_time=today()))
    assert hq.held(money) == ["proof_missing"] and hq.balance() == (100, 30_000)
    ghost = hq.push(
        "sale",
        entries.sale(
            "E-LATER",
            50_000,
            stored_value=50_000,
            proof="card",
            local_time=today(),
            tap={"uid_hash": CARD, "trust": "mac"},
        ),
    )
    hq.push("enrol", entries.enrol("E-LATER"))
    hq.push("refund", entries.refund(ghost, "E-LATER", money_back=50_000, stored_value=50_000))
    assert store.member("E-LATER").stored_value <= 0  # type: ignore[union-attr]
    store.close()


def test_a_refund_before_its_sale_in_one_batch_is_applied_when_the_sale_is(hq: Hq) -> None:
    refund = WireEntry(
        terminal_id="T1",
        seq=1,
        txn_id="R",
        kind="refund",
        created_at=NOW.isoformat(),
        payload=entries.refund("S", money_back=700, restored=300),
    )
    sale = WireEntry(
        terminal_id="T1",
        seq=2,
        txn_id="S",
        kind="sale",
        created_at=NOW.isoformat(),
        payload=entries.sale(
            "M-1", 1000, redeemed=300, proof="card", local_time=today(), tap={"uid_hash": CARD, "trust": "mac"}
        ),
    )
    hq.store.ingest("T1", [refund, sale])
    assert hq.store.effects("T1") == {1: Effect.APPLIED, 2: Effect.APPLIED}
    assert hq.balance()[0] >= 1000


def test_times_at_the_calendars_edge_are_a_refusal_not_a_crash(hq: Hq) -> None:
    for created in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        hq.push("sale", entries.sale(None, 100), created=created)
    assert hq.store.journal_count("T1") == 2
