"""Head office's vouchers (hq/vouchers.py) on SQLite and PostgreSQL, in process, with head office's clock in the
test's hands: tills racing to confirm one voucher (one wins), expiry by head office's clock, a refund only at the
selling store and only before use, a retry answered the same, the states in the changes feed and the snapshot,
and an erased member named by no voucher."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hq.erasure import erase_member
from hq.errors import Refused
from hq.ingest import Settings
from hq.payments import signing_key
from hq.store import HqStore
from hq.vouchers import IssueSpec, of_member
from sync.protocol import ErrorCode, VoucherConfirmRequest, WireEntry
from terminal import vouchers as vc
from tests.fixtures import entries
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
TILLS = [f"T{n}" for n in range(1, 9)]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Chain:
    def __init__(self, url: str) -> None:
        self.clock = NOW
        self.store = HqStore(url, Settings(), clock=lambda: iso(self.clock))
        for n, terminal in enumerate(TILLS):
            self.store.add_terminal(terminal, "S1" if n < 2 else f"S{n}", terminal.lower())
        self.store.upsert_member("M-1", "Aiko", "basic", 0)
        self.seq = 0

    def issue(self, count: int, days: int = 30) -> list[str]:
        spec = IssueSpec(count, 2500, int((self.clock + timedelta(days=days)).timestamp()))
        self.store.issue_vouchers("T1", spec, signing_key(self.store, vc.PURPOSE), "Mio")
        return self.store.voucher_stock("T1").codes

    def sell(self, code: str, member_id: str | None = None) -> str:
        self.seq += 1
        payload = entries.voucher_sale(code, local_time="2026-12-02T10:00:00", member_id=member_id)
        txn = f"T1-{self.seq}"
        entry = WireEntry(
            terminal_id="T1", seq=self.seq, txn_id=txn, kind="voucher_sale", payload=payload, created_at=iso(self.clock)
        )
        self.store.ingest("T1", [entry], clock=iso(self.clock))
        return txn

    def confirm(self, terminal: str, code: str, action: str = "redeem", txn: str = "X-1") -> dict[str, Any]:
        return self.store.confirm_voucher(terminal, VoucherConfirmRequest(action=action, txn_id=txn, code=code))

    def refused(self, terminal: str, code: str, action: str = "redeem", txn: str = "X-9") -> ErrorCode:
        with pytest.raises(Refused) as exc:
            self.confirm(terminal, code, action, txn)
        return exc.value.code


@pytest.fixture
def chain(hq_url: str) -> Any:  # noqa: F811 - the fixture
    made = Chain(hq_url)
    yield made
    made.store.close()


def test_tills_racing_to_confirm_one_voucher_one_wins(chain: Chain) -> None:
    (code,) = chain.issue(1)
    assert chain.refused("T3", code) is ErrorCode.VOUCHER_NOT_SOLD  # not sold yet: valid nowhere
    chain.sell(code)
    results: dict[str, str] = {}
    start = threading.Barrier(len(TILLS))

    def race(terminal: str) -> None:
        start.wait()
        try:
            chain.confirm(terminal, code, txn=f"{terminal}-race")
            results[terminal] = "confirmed"
        except Refused as exc:
            results[terminal] = exc.code.value

    threads = [threading.Thread(target=race, args=(t,)) for t in TILLS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == ["confirmed"] + ["voucher_used"] * (len(TILLS) - 1), results
    (winner,) = [t for t, r in results.items() if r == "confirmed"]
    assert chain.confirm(winner, code, txn=f"{winner}-race")["repeat"] is True  # a retry, the same answer
    assert chain.store.voucher(vc.parse(code).voucher_id)["use"]["terminal_id"] == winner


def test_expiry_is_head_offices_clock_and_a_refund_only_at_the_selling_store_before_use(chain: Chain) -> None:
    first, second, third = chain.issue(3, days=1)
    for code in (first, second, third):
        chain.sell(code)
    assert chain.refused("T5", first, "refund") is ErrorCode.VOUCHER_OTHER_STORE
    assert chain.confirm("T2", first, "refund", "R-1")["confirmed"]  # another till of the selling store
    assert chain.refused("T5", first) is ErrorCode.VOUCHER_REFUNDED
    chain.confirm("T5", second)
    assert chain.refused("T1", second, "refund") is ErrorCode.VOUCHER_USED
    chain.clock = NOW + timedelta(days=2)
    assert chain.refused("T5", third) is ErrorCode.VOUCHER_EXPIRED
    forged = vc.issue(signing_key(chain.store, "payment")[1], "K-x", b"\x01" * 8, vc.Kind.AMOUNT, 100, 2**31)
    assert chain.refused("T5", forged) is ErrorCode.VOUCHER_FORGED
    assert chain.refused("T5", first[:-3]) is ErrorCode.VOUCHER_MALFORMED


def test_states_go_down_the_feed_and_the_snapshot_never_the_codes(chain: Chain) -> None:
    start = chain.store.changes(0).cursor
    sold, kept = chain.issue(2)
    assert chain.store.changes(start).vouchers == []  # stock is no till's business but its own
    chain.sell(sold, member_id="M-1")
    chain.confirm("T4", sold)
    page = chain.store.changes(start)
    (state,) = page.vouchers
    assert state.body["state"] == "redeemed" and state.body["store_id"] == "S1"
    assert sold not in page.model_dump_json() and kept not in page.model_dump_json()
    snapshot = chain.store.snapshot_page("vouchers")
    assert [row[0] for row in snapshot.rows] == [vc.parse(sold).voucher_id]
    assert chain.store.voucher_stock("T1").codes == [kept] and chain.store.voucher_stock("T2").codes == []


def test_an_erased_member_is_named_by_no_voucher(chain: Chain) -> None:
    (code,) = chain.issue(1)
    txn = chain.sell(code, member_id="M-1")
    with chain.store.db.read() as tx:
        assert [v["code"] for v in of_member(tx, "M-1", int(NOW.timestamp()))] == [code]
    assert erase_member(chain.store, "M-1", "privacy desk")["vouchers_unnamed"] == 1
    with chain.store.db.read() as tx:
        assert of_member(tx, "M-1", int(NOW.timestamp())) == []
    (entry,) = [e for e in chain.store.entries("T1") if e.txn_id == txn]
    assert entry.payload["member_id"] is None
    assert chain.confirm("T3", code)["confirmed"]  # the voucher still pays whoever holds it


def test_an_issue_out_of_bounds_is_refused(chain: Chain) -> None:
    key = signing_key(chain.store, vc.PURPOSE)
    for spec in (IssueSpec(0, 100, 2**31), IssueSpec(1, 0, 2**31), IssueSpec(1, 100, 1)):
        with pytest.raises(Refused) as exc:
            chain.store.issue_vouchers("T1", spec, key, "Mio")
        assert exc.value.code is ErrorCode.VOUCHER_ISSUE_INVALID
    with pytest.raises(Refused) as missing:
        chain.store.issue_vouchers("T-none", IssueSpec(1, 100, 2**31), key, "Mio")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_a_till_that_stopped_before_its_commit_asks_again_and_the_voucher_is_not_lost(chain: Chain) -> None:
    (code,) = chain.issue(1)
    chain.sell(code)
    chain.confirm("T3", code, txn="T3-lost")  # confirmed, then the till's disk failed: nothing journalled
    assert chain.refused("T4", code) is ErrorCode.VOUCHER_USED  # another till, as ever
    assert chain.confirm("T3", code, txn="T3-again")["asked_again"] is True
    parsed = vc.parse(code)
    payload = {
        "voucher_id": parsed.voucher_id,
        "code": code,
        "kind": "amount",
        "value": parsed.value,
        "store_id": "S2",  # T3's store
        "local_time": "2026-12-02T10:00:00",
        "confirmed": True,
    }
    entry = WireEntry(
        terminal_id="T3", seq=1, txn_id="T3-again", kind="voucher_redeem", payload=payload, created_at=iso(NOW)
    )
    chain.store.ingest("T3", [entry], clock=iso(NOW))
    assert chain.store.items(terminal_id="T3") == []
    # Now head office holds the entry: the same till asking once more is a second use.
    assert chain.refused("T3", code, txn="T3-third") is ErrorCode.VOUCHER_USED
    shown = chain.store.voucher(parsed.voucher_id)
    assert (shown["state"], shown["use"]["txn_id"]) == ("redeemed", "T3-again")
