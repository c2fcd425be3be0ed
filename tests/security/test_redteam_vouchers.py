"""Red team: prepaid vouchers against a stolen till credential (docs/stored-value.md, "Vouchers").

Head office in process (SQLite, then PostgreSQL), its clock in the test's hands. Each test here
failed before the hole it names was closed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hq import audit
from hq.ingest import Settings
from hq.payments import signing_key
from hq.store import HqStore
from hq.vouchers import IssueSpec
from sync.protocol import VoucherConfirmRequest, WireEntry
from terminal import vouchers as vc
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
STAMP = NOW.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Till:
    def __init__(self, hq: HqStore, terminal_id: str = "T1", store_id: str = "S1") -> None:
        self.hq, self.terminal_id, self.store_id, self.seq = hq, terminal_id, store_id, 0

    def push(self, kind: str, code: str, txn: str, at: str = STAMP, **more: Any) -> str:
        """The till's entry, made at ``at`` by its clock (which agrees with head office's)."""
        self.seq += 1
        parsed = vc.parse(code)
        payload: dict[str, Any] = {
            "voucher_id": parsed.voucher_id,
            "code": code,
            "kind": parsed.kind.value,
            "value": parsed.value,
            "sku": parsed.sku,
            "store_id": self.store_id,
            "local_time": "2026-12-02T10:00:00",
            **more,
        }
        entry = WireEntry(
            terminal_id=self.terminal_id, seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=at
        )
        self.hq.ingest(self.terminal_id, [entry], clock=at)
        return txn

    def effect(self, txn: str) -> str:
        with self.hq.db.read() as tx:
            row = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [txn])
        return str(row[0]) if row else "absent"


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url, Settings(), clock=lambda: STAMP)
    store.add_terminal("T1", "S1", "t1")
    yield store
    store.close()


def test_redteam_a_confirmed_redemption_cannot_be_journaled_as_a_cash_refund(hq: HqStore) -> None:
    spec = IssueSpec(1, 2500, int((NOW + timedelta(days=30)).timestamp()))
    hq.issue_vouchers("T1", spec, signing_key(hq, vc.PURPOSE), "Mio")
    code = hq.voucher_stock("T1").codes[0]
    till = Till(hq)
    till.push("voucher_sale", code, "SOLD-1", amount=2500)
    # the till asks head office to confirm a redemption: the customer leaves with 25.00 of goods
    answer = hq.confirm_voucher("T1", VoucherConfirmRequest(action="redeem", txn_id="USE-1", code=code))
    assert answer["confirmed"] is True
    # ... and the till journals that very transaction as a refund of the voucher: 25.00 out of the drawer
    refund = till.push("voucher_refund", code, "USE-1", amount=2500)
    state = hq.voucher(vc.parse(code).voucher_id)
    assert state["state"] == "redeemed" and till.effect(refund) == "quarantined", (state["state"], state["use"])


def test_redteam_issuing_vouchers_and_setting_the_offline_total_are_audited(hq: HqStore) -> None:
    spec = IssueSpec(10, 50000, int((NOW + timedelta(days=30)).timestamp()))
    hq.issue_vouchers("T1", spec, signing_key(hq, vc.PURPOSE), "Mio")
    hq.put_voucher_offline_total("T1", 500000, "Mio")
    with hq.db.read() as tx:
        records = audit.recent(tx, 100)
    about = [(r.actor, r.action, r.target) for r in records if "voucher" in r.action]
    assert len(about) >= 2 and all(actor == "Mio" for actor, _, _ in about), about


def test_redteam_one_voucher_redeemed_again_and_again_makes_its_merchant_owed_no_more_than_the_bound(
    hq: HqStore,
) -> None:
    """A voucher of 25.00 sold at merchant B's store, redeemed over and over by a stolen credential of a till of
    merchant A (each a till's offline redemption head office never confirmed): the second and later uses are the
    chain's loss, applied up to head office's bound a day on what the till's payments take beyond what they pay
    from, the rest held, and A's statement is owed no more."""
    from hq import merchants, settlement

    with hq.db.write() as tx:
        merchants.add(tx, "M-A", "Bakery", cost_per_100=100, reimburse_per_100=100)
        merchants.add(tx, "M-B", "Books", cost_per_100=100, reimburse_per_100=100)
        merchants.assign_store(tx, "S1", "M-B", "UTC")
        merchants.assign_store(tx, "S2", "M-A", "UTC")
    hq.add_terminal("T2", "S2", "t2")
    spec = IssueSpec(1, 2500, int((NOW + timedelta(days=30)).timestamp()))
    hq.issue_vouchers("T1", spec, signing_key(hq, vc.PURPOSE), "Mio")
    code = hq.voucher_stock("T1").codes[0]
    Till(hq).push("voucher_sale", code, "SOLD-1", amount=2500)
    thief = Till(hq, "T2", "S2")
    allowed = hq.settings.overspent_per_day // 2500
    used = [thief.push("voucher_redeem", code, f"USE-{n}") for n in range(allowed + 4)]
    effects = [thief.effect(t) for t in used]
    assert effects == ["none"] * (1 + allowed) + ["quarantined"] * 3, effects
    held = [i for i in hq.items(terminal_id="T2") if i.quarantined]
    assert {(i.reason.value, i.detail["overspent_per_day"]) for i in held} == {
        ("voucher_redeemed_twice", hq.settings.overspent_per_day)
    }
    with hq.db.read() as tx:
        owed = settlement.read_figures(tx, "2026-12")["M-A"].value_accepted
    assert owed == 2500 * (1 + allowed)
