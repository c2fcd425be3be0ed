"""Red team: the back office's reconciliation pages against another store's manager (docs/backoffice.md).

Head office in process (SQLite, then PostgreSQL) with the back-office tests' small chain: a store manager of S1,
tills T1 (S1) and T2 (S2). Each test here failed before the hole it
names was closed."""

from __future__ import annotations

import time

from hq.api.server import start_in_thread
from hq.backoffice import recon
from sync.protocol import WireEntry
from tests.backoffice.chain import chain
from tests.backoffice.test_web import signed_in
from tests.fixtures import entries
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures


def test_redteam_a_store_manager_never_reads_another_stores_entries_through_an_item_of_its_own(
    hq_url: str,  # noqa: F811 - the fixture
) -> None:
    with chain(hq_url) as (hq, staff):
        other = "T2-1-M-S2"  # S2's sale: its member and its total are S2's
        # S1's till (a dishonest cashier, or a stolen credential) refunds S2's sale for more than it took:
        # an item of S1, quarantined, whose detail names S2's transaction
        made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        seq = len(hq.entries("T1")) + 1
        body = entries.refund(other, "M-S2", store_id="S1", money_back=1, restored=50)
        entry = WireEntry(terminal_id="T1", seq=seq, txn_id="T1-probe", kind="refund", payload=body, created_at=made)
        hq.ingest("T1", [entry])
        (item,) = [i for i in hq.items() if i.txn_id == "T1-probe" and i.detail.get("original_txn") == other]
        assert item.store_id == "S1"
        manager = staff["manager"]
        with hq.db.read() as tx:
            shown = recon.item_view(tx, manager, item.item_id)  # S1's manager may open S1's item ...
        seen = {(e["txn_id"], e["store_id"], e["member_id"]) for e in shown.entries}
        # ... and is shown nothing of S2's journal
        assert all(store_id in manager.stores for _, store_id, _ in seen), seen


def test_redteam_the_coupon_editor_never_opens_or_retires_a_members_personal_coupon(
    hq_url: str,  # noqa: F811 - the fixture
) -> None:
    with chain(hq_url) as (hq, _):
        # a reward bought with points: a personal single-use coupon of S2's member
        body = {"kind": "percent_off", "value": 10, "member_id": "M-S2", "single_use": True, "text": "10% off"}
        hq.put_coupon(body, "R-T2-9:TENOFF")
        server = start_in_thread(hq)
        try:
            manager, _ = signed_in(server.url, "manager")  # S1's manager
            opened = manager.get("/backoffice/coupons/edit", params={"id": "R-T2-9:TENOFF"})
            marketing, csrf = signed_in(server.url, "market")
            retired = marketing.post(
                "/backoffice/coupons/retire", data={"id": "R-T2-9:TENOFF", "reason": "tidy up", "csrf": csrf}
            )
        finally:
            server.stop()
        with hq.db.read() as tx:
            deleted = tx.one("SELECT deleted FROM coupons WHERE coupon_id = ?", ["R-T2-9:TENOFF"])
        assert opened.status_code == 404 and "M-S2" not in opened.text, opened.status_code
        assert retired.status_code == 404 and deleted == (0,), (retired.status_code, deleted)
