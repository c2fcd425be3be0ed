"""End to end: prepaid vouchers (docs/stored-value.md, "Vouchers"), against a real head-office process on
SQLite and on PostgreSQL, with real tills (Store, SyncClient, Service, and the confirmation hook the daemon
wires).

Head office signs vouchers into one till's stock; that till sells one (the POS took its value) and another
store's till redeems it, once: a second till is refused at once while head office answers, and offline the
second redemption to arrive is flagged, each offline till bounded by its offline total. A voucher refunded
before use is refused everywhere; a refund after use is refused. A stolen till credential cannot make value:
a code it made itself, one signed by another purpose's key, one of another till's stock, or one sold already
are quarantined and never become valid anywhere. A damaged code is refused with a stable code, and nothing is
written."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq.payments import signing_key
from hq.store import HqStore, open_store
from sync.client import HqUnreachable, SyncClient
from sync.confirm import voucher_confirmer
from sync.protocol import EntryKind, ReconItem
from terminal import vouchers as vc
from terminal.errors import Code, Rejected
from terminal.model import VoucherReceipt, utc_iso
from terminal.service import Service, new_txn_id
from terminal.store import Store
from tests.fixtures.hq import HqProcess
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
START_S = 120.0
"""How long head office may take to answer after it is started: bounded, generous for a loaded machine."""


@pytest.fixture(params=["sqlite", "postgres"])
def hq_proc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HqProcess]:
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    process = HqProcess(tmp_path / "hq", db)
    process.start(START_S)
    yield process
    process.kill()


class Till:
    def __init__(self, root: Path, hq_proc: HqProcess, terminal_id: str, store_id: str) -> None:
        self.terminal_id, self.store_id = terminal_id, store_id
        self.token = hq_proc.add_terminal(terminal_id, store_id)
        self.url = hq_proc.url
        self.store = Store.open(root / terminal_id / "terminal.db")
        self.client = SyncClient(self.store, terminal_id, hq_proc.url, self.token, timeout=5)
        self.service = Service(self.store, terminal_id, store_id=store_id)
        self.service.confirm_voucher = voucher_confirmer(self.client, 3.0)  # as the daemon wires it

    def refused(self, action: str, *args: Any) -> str:
        seq = self.store.max_seq()
        with pytest.raises(Rejected) as refused:
            getattr(self.service, action)(*args)
        assert self.store.max_seq() == seq  # refused: nothing journalled
        return refused.value.code.value

    def push_raw(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """What a holder of this till's credential can send, bypassing the till's own checks."""
        body = {"protocol": 2, "terminal_id": self.terminal_id, "entries": entries}
        answer = httpx.post(
            f"{self.url}/v1/journal", json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def confirm_raw(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(f"{self.url}/v1/vouchers/confirm", json=body, headers=headers, timeout=10)

    def offline(self) -> None:
        with pytest.raises(HqUnreachable):
            self.client.sync_once()

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def tills(tmp_path: Path, hq_proc: HqProcess) -> Iterator[dict[str, Till]]:
    made = {
        "A": Till(tmp_path / "tills", hq_proc, "T-A", "S-001"),
        "A2": Till(tmp_path / "tills", hq_proc, "T-A2", "S-001"),
        "B": Till(tmp_path / "tills", hq_proc, "T-B", "S-002"),
        "C": Till(tmp_path / "tills", hq_proc, "T-C", "S-003"),
    }
    yield made
    for till in made.values():
        till.close()


def hq_view(hq_proc: HqProcess) -> HqStore:
    return open_store(hq_proc.db)


def items(hq_proc: HqProcess, terminal_id: str) -> list[ReconItem]:
    store = hq_view(hq_proc)
    try:
        return store.items(terminal_id=terminal_id)
    finally:
        store.close()


def issue(hq_proc: HqProcess, terminal_id: str, count: int, value: int, sku: str = "") -> list[str]:
    extra = ("--sku", sku) if sku else ()
    shown = json.loads(
        hq_proc.cli("voucher", "issue", terminal_id, "--count", str(count), "--value", str(value), *extra)
    )
    made: list[str] = shown["voucher_ids"]
    return made


def voucher(hq_proc: HqProcess, voucher_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(hq_proc.cli("voucher", "show", voucher_id))
    return shown


def sold(till: Till, value: int = 2500) -> VoucherReceipt:
    """A voucher sold at ``till`` and pushed (the POS took its value)."""
    receipt = till.service.sell_voucher(value, None)
    assert receipt.code is not None and receipt.code.startswith(vc.PREFIX) and receipt.value == value
    till.client.sync_once()
    return receipt


def wire(till: Till, kind: EntryKind, code: str, seq: int, **extra: Any) -> dict[str, Any]:
    parsed = vc.parse(code)
    payload = {
        "voucher_id": parsed.voucher_id,
        "code": code,
        "kind": parsed.kind.value,
        "value": parsed.value,
        "sku": parsed.sku,
        "store_id": till.store_id,
        "local_time": "2026-12-02T10:00:00",
        **extra,
    }
    return {
        "terminal_id": till.terminal_id,
        "seq": seq,
        "txn_id": new_txn_id(),
        "kind": kind.value,
        "payload": payload,
        "created_at": utc_iso(time.time()),
    }


def test_a_voucher_sold_at_one_store_is_redeemed_at_another_once(hq_proc: HqProcess, tills: dict[str, Till]) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    issued = issue(hq_proc, "T-A", 2, 2500)
    (sku_voucher,) = issue(hq_proc, "T-A", 1, 450, sku="COFFEE-1")
    a.client.sync_once()  # the stock comes down with the pull
    assert sorted(row["count"] for row in a.store.voucher_stock()) == [1, 2]
    assert b.refused("sell_voucher", 2500, None) == Code.VOUCHER_OUT_OF_STOCK.value  # B holds no stock
    assert a.refused("sell_voucher", 1000, None) == Code.VOUCHER_OUT_OF_STOCK.value  # none of that value

    receipt = sold(a)
    assert receipt.voucher_id in issued and voucher(hq_proc, receipt.voucher_id)["state"] == "active"
    b.client.sync_once()
    c.client.sync_once()
    assert (c.store.voucher_state(receipt.voucher_id) or {})["state"] == "active"
    redeemed = b.service.redeem_voucher(receipt.code or "", sale_ref="POS-77")
    assert (redeemed.voucher_kind, redeemed.value, redeemed.offline, redeemed.code) == ("amount", 2500, False, None)
    # A second till, online, is refused at once: head office holds the voucher's one use.
    assert c.refused("redeem_voucher", receipt.code) == Code.VOUCHER_USED.value
    assert b.refused("redeem_voucher", receipt.code) == Code.VOUCHER_USED.value
    b.client.sync_once()
    shown = voucher(hq_proc, receipt.voucher_id)
    assert shown["state"] == "redeemed" and shown["use"]["txn_id"] == redeemed.txn_id
    assert shown["sold_store"] == "S-001" and shown["use"]["terminal_id"] == "T-B"
    c.client.sync_once()
    assert (c.store.voucher_state(receipt.voucher_id) or {})["state"] == "redeemed"  # every till learns of it

    product = a.service.sell_voucher(None, "COFFEE-1")
    assert (product.voucher_id, product.voucher_kind, product.sku) == (sku_voucher, "product", "COFFEE-1")
    a.client.sync_once()
    used = c.service.redeem_voucher(product.code or "")
    assert (used.voucher_kind, used.sku, used.value) == ("product", "COFFEE-1", 450)
    c.client.sync_once()
    for till in (a, b, c):
        assert [i for i in items(hq_proc, till.terminal_id) if i.reason.value.startswith("voucher")] == []
    # The sale counts in the selling till's takings: the entry's total is what the POS took.
    kinds = [(e.kind, e.payload.get("amount")) for e in a.store.entries(0)]
    assert kinds == [("voucher_sale", 2500), ("voucher_sale", 450)]
    report = json.loads(hq_proc.cli("report", "--terminal-id", "T-A", "--json"))
    assert [row["vouchers"] for row in report] == [2950]


def test_a_voucher_sold_online_is_redeemed_at_a_till_that_never_pulled_it_once(
    hq_proc: HqProcess, tills: dict[str, Till]
) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    a.service.push_now = lambda: a.client.push_now(3.0)  # as the daemon wires it
    issue(hq_proc, "T-A", 2, 2500)
    for till in (a, b, c):
        till.client.sync_once()
    receipt = a.service.sell_voucher(2500, None)  # no round of A's sync loop, none of B's or C's since
    assert not receipt.offline and b.store.voucher_state(receipt.voucher_id) is None
    redeemed = b.service.redeem_voucher(receipt.code or "", sale_ref="POS-1")
    assert (redeemed.value, redeemed.offline) == (2500, False)
    # Head office is the authority: the use at another till, and the same scan again, are refused at once.
    assert c.refused("redeem_voucher", receipt.code) == Code.VOUCHER_USED.value
    assert b.refused("redeem_voucher", receipt.code) == Code.VOUCHER_USED.value
    forged = vc.issue(
        Ed25519PrivateKey.generate(),
        vc.parse(receipt.code or "").key_id,
        secrets.token_bytes(8),
        vc.Kind.AMOUNT,
        2500,
        int(time.time()) + 86400,
    )
    assert c.refused("redeem_voucher", forged) == Code.VOUCHER_FORGED.value
    for till in (a, b, c):
        till.client.sync_once()
    shown = voucher(hq_proc, receipt.voucher_id)
    assert shown["state"] == "redeemed" and shown["use"]["terminal_id"] == "T-B"
    for till in (a, b, c):
        assert [i for i in items(hq_proc, till.terminal_id) if i.reason.value.startswith("voucher")] == []
    # A sale head office has not received (its till could not push it) is not valid anywhere else yet, and a till
    # that cannot reach head office says to try again once online.
    a.service.push_now = None
    late = a.service.sell_voucher(2500, None)
    assert c.refused("redeem_voucher", late.code) == Code.VOUCHER_NOT_SOLD.value
    hq_proc.kill()
    c.offline()
    assert c.refused("redeem_voucher", late.code) == Code.VOUCHER_NOT_ACTIVE.value
    # Head office back, A's sale pushed: C, still counting itself offline (no round since), asks all the same.
    hq_proc.start(START_S)
    a.client.sync_once()
    assert c.store.state("offline_since") and c.service.redeem_voucher(late.code or "").offline is False
    assert b.refused("redeem_voucher", late.code) == Code.VOUCHER_USED.value


def test_offline_a_voucher_redeemed_twice_is_flagged_and_each_till_is_bounded(
    hq_proc: HqProcess, tills: dict[str, Till]
) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    issue(hq_proc, "T-A", 3, 2500)
    for terminal_id in ("T-B", "T-C"):
        hq_proc.cli("voucher", "offline-total", terminal_id, "3000")
    a.client.sync_once()
    first, second = sold(a), sold(a)
    b.client.sync_once()
    c.client.sync_once()
    late = sold(a)  # sold after B and C last pulled: they have not seen it activated

    hq_proc.kill()
    b.offline()
    c.offline()
    on_b = b.service.redeem_voucher(first.code or "")
    on_c = c.service.redeem_voucher(first.code or "")  # the double spend an offline chain cannot see
    assert on_b.offline and on_c.offline
    assert c.refused("redeem_voucher", second.code) == Code.VOUCHER_LIMIT_OFFLINE.value  # 2500 + 2500 > 3000
    assert b.refused("redeem_voucher", late.code) == Code.VOUCHER_NOT_ACTIVE.value
    assert b.refused("redeem_voucher", first.code) == Code.VOUCHER_USED.value

    hq_proc.start(START_S)
    b.client.sync_once()
    c.client.sync_once()
    assert [i for i in items(hq_proc, "T-B") if i.reason.value.startswith("voucher")] == []
    (flagged,) = [i for i in items(hq_proc, "T-C") if i.reason.value == "voucher_redeemed_twice"]
    assert flagged.txn_id == on_c.txn_id and not flagged.quarantined
    assert flagged.detail["first_txn"] == on_b.txn_id and flagged.detail["value"] == 2500
    # Online again: the offline total is free, and the voucher used offline is refused everywhere.
    assert c.service.redeem_voucher(second.code or "").offline is False
    assert a.refused("redeem_voucher", first.code) == Code.VOUCHER_USED.value
    # The network replays C's journal: nothing stored twice, no second item.
    journal = [
        {
            "terminal_id": e.terminal_id,
            "seq": e.seq,
            "txn_id": e.txn_id,
            "kind": e.kind,
            "payload": e.payload,
            "created_at": e.created_at,
        }
        for e in c.store.entries(0)
    ]
    c.client.sync_once()
    assert c.push_raw(journal)["duplicates"] == len(journal)
    assert len([i for i in items(hq_proc, "T-C") if i.reason.value == "voucher_redeemed_twice"]) == 1


def test_a_voucher_refunded_before_use_is_refused_everywhere_and_one_used_is_not_refunded(
    hq_proc: HqProcess, tills: dict[str, Till]
) -> None:
    a, a2, b, c = tills["A"], tills["A2"], tills["B"], tills["C"]
    issue(hq_proc, "T-A", 2, 2500)
    a.client.sync_once()
    a2.client.sync_once()
    c.client.sync_once()  # C holds the voucher key, not yet the sales
    refunded, used = sold(a), sold(a)
    b.client.sync_once()
    assert b.refused("refund_voucher", refunded.code) == Code.VOUCHER_OTHER_STORE.value  # B knows where it was sold
    assert c.refused("refund_voucher", refunded.code) == Code.VOUCHER_OTHER_STORE.value  # head office says so
    back = a2.service.refund_voucher(refunded.code or "")  # another till of the selling store
    assert back.kind == "voucher_refund" and back.value == 2500
    a2.client.sync_once()
    assert voucher(hq_proc, refunded.voucher_id)["state"] == "refunded"
    assert c.refused("redeem_voucher", refunded.code) == Code.VOUCHER_REFUNDED.value  # online: head office
    b.client.sync_once()
    hq_proc.kill()
    b.offline()
    assert b.refused("redeem_voucher", refunded.code) == Code.VOUCHER_REFUNDED.value  # offline: what it pulled
    assert a.refused("refund_voucher", used.code) == Code.VOUCHER_REFUND_OFFLINE.value
    hq_proc.start(START_S)
    b.client.sync_once()

    b.service.redeem_voucher(used.code or "")
    b.client.sync_once()
    a.client.sync_once()
    assert a.refused("refund_voucher", used.code) == Code.VOUCHER_USED.value
    for till in (a, a2, b, c):
        assert [i for i in items(hq_proc, till.terminal_id) if i.reason.value.startswith("voucher")] == []
    totals = [(e.kind, e.payload.get("amount")) for e in a2.store.entries(0)]
    assert totals == [("voucher_refund", 2500)]
    takings = {
        t: sum(r["vouchers"] for r in json.loads(hq_proc.cli("report", "--terminal-id", t, "--json")))
        for t in ("T-A", "T-A2")
    }
    assert takings == {"T-A": 5000, "T-A2": -2500}  # the selling store took 5000 and paid 2500 back


def test_a_stolen_till_credential_cannot_make_a_voucher(hq_proc: HqProcess, tills: dict[str, Till]) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    issue(hq_proc, "T-A", 1, 2500)
    (of_b,) = issue(hq_proc, "T-B", 1, 9000)
    a.client.sync_once()
    b.client.sync_once()
    mine = sold(a)
    b_code = next(code for code in _stock_codes(b))
    store = hq_view(hq_proc)
    try:
        payment_key_id, payment_key = signing_key(store, "payment")  # a real head-office key of another purpose
    finally:
        store.close()
    forger = vc.issue(
        Ed25519PrivateKey.generate(),
        "K-forged",
        secrets.token_bytes(8),
        vc.Kind.AMOUNT,
        50_000,
        int(time.time()) + 86400,
    )
    other_purpose = vc.issue(
        payment_key, payment_key_id, secrets.token_bytes(8), vc.Kind.AMOUNT, 50_000, int(time.time()) + 86400
    )
    seq = a.store.max_seq()
    answer = a.push_raw(
        [
            wire(a, EntryKind.VOUCHER_SALE, forger, seq + 1, amount=50_000),
            wire(a, EntryKind.VOUCHER_SALE, other_purpose, seq + 2, amount=50_000),
            wire(a, EntryKind.VOUCHER_SALE, b_code, seq + 3, amount=9000),  # another till's stock
            wire(a, EntryKind.VOUCHER_SALE, mine.code or "", seq + 4, amount=2500),  # sold already
            wire(a, EntryKind.VOUCHER_REDEEM, b_code, seq + 5),  # never sold
        ]
    )
    assert answer["stored"] == 5
    held = sorted((i.seq or 0, i.reason.value) for i in items(hq_proc, "T-A") if i.quarantined)
    assert held == [
        (seq + 1, "voucher_forged"),
        (seq + 2, "voucher_forged"),
        (seq + 3, "voucher_not_allocated"),
        (seq + 4, "voucher_not_allocated"),
        (seq + 5, "voucher_not_sold"),
    ]
    assert voucher(hq_proc, of_b)["state"] == "stock"  # still B's to sell, valid nowhere
    report = json.loads(hq_proc.cli("report", "--terminal-id", "T-A", "--json"))
    assert [row["vouchers"] for row in report] == [2500]  # only the one sale of its own stock counts
    # None of them pays anywhere: refused by every till, online or not.
    c.client.sync_once()
    assert c.refused("redeem_voucher", forger) == Code.VOUCHER_FORGED.value
    assert c.refused("redeem_voucher", other_purpose) == Code.VOUCHER_FORGED.value
    assert c.refused("redeem_voucher", b_code) == Code.VOUCHER_NOT_SOLD.value
    forged_confirm = c.confirm_raw({"action": "redeem", "txn_id": new_txn_id(), "code": other_purpose})
    assert forged_confirm.status_code == 409 and forged_confirm.json()["code"] == "voucher_forged"
    hq_proc.kill()
    c.offline()
    assert c.refused("redeem_voucher", b_code) == Code.VOUCHER_NOT_ACTIVE.value


def test_a_damaged_voucher_code_is_refused_with_a_stable_code_and_nothing_is_lost(
    hq_proc: HqProcess, tills: dict[str, Till]
) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    issue(hq_proc, "T-A", 1, 2500)
    a.client.sync_once()
    code = sold(a).code or ""
    b.client.sync_once()
    body = code[len(vc.PREFIX) :]
    raw = bytearray(vc.b64url.decode(body))
    raw[-70] ^= 0x01  # one bit of the value flipped: the signature no longer holds
    damaged = {
        code[:-9]: Code.VOUCHER_MALFORMED,  # truncated
        code + "AA": Code.VOUCHER_MALFORMED,  # padded
        "TPV1:" + body[:10] + "*" + body[11:]: Code.VOUCHER_MALFORMED,  # a misread character
        "TPV1:": Code.VOUCHER_MALFORMED,
        "TPV1:" + vc.b64url.encode(bytes(raw)): Code.VOUCHER_FORGED,
    }
    for text, expected in damaged.items():
        assert b.refused("redeem_voucher", text) == expected.value, text
    truncated = b.confirm_raw({"action": "redeem", "txn_id": new_txn_id(), "code": code[:-9]})
    assert truncated.status_code == 422 and truncated.json()["code"] == "voucher_malformed"
    # A till's damaged entry is held as it came, and the voucher is still good.
    entry = wire(c, EntryKind.VOUCHER_REDEEM, code, c.store.max_seq() + 1)
    entry["payload"]["value"] = "2500"  # not a number: not its kind's model
    assert c.push_raw([entry])["stored"] == 1
    assert [i.reason.value for i in items(hq_proc, "T-C") if i.quarantined] == ["malformed_entry"]
    assert b.service.redeem_voucher(code).value == 2500


def _stock_codes(till: Till) -> list[str]:
    return [str(row[0]) for row in till.store.db.conn.execute("SELECT code FROM voucher_stock WHERE sold_txn IS NULL")]


def test_a_till_whose_disk_fails_after_head_office_confirmed_redeems_the_voucher_when_scanned_again(
    hq_proc: HqProcess, tills: dict[str, Till], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = tills["A"], tills["B"], tills["C"]
    issue(hq_proc, "T-A", 1, 2500)
    a.client.sync_once()
    receipt = sold(a)
    b.client.sync_once()
    c.client.sync_once()

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        raise Rejected(Code.STORAGE_FULL)

    with monkeypatch.context() as patched:
        patched.setattr(b.store, "record", full_disk)  # head office confirms, then the till cannot write
        assert b.refused("redeem_voucher", receipt.code) == Code.STORAGE_FULL.value
    assert voucher(hq_proc, receipt.voucher_id)["state"] == "redeemed"  # confirmed: held for that till
    assert c.refused("redeem_voucher", receipt.code) == Code.VOUCHER_USED.value  # and no other
    used = b.service.redeem_voucher(receipt.code or "")  # the cashier scans it again: not lost
    assert used.offline is False
    b.client.sync_once()
    shown = voucher(hq_proc, receipt.voucher_id)
    assert shown["use"]["txn_id"] == used.txn_id and shown["use"]["terminal_id"] == "T-B"
    assert [i for i in items(hq_proc, "T-B") if i.reason.value.startswith("voucher")] == []
