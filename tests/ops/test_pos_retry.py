"""A POS's retry of a sale whose answer it never got (the daemon killed between the sale's COMMIT and its answer, a
dropped connection): sent again with the same ``request_id``, it is answered with the sale already recorded, the same
receipt, and never recorded twice, across a SIGKILL and a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, till_config, wait_until


def test_a_sale_sent_again_with_its_request_id_after_a_kill_is_recorded_once(tmp_path: Path, hq: HqProcess) -> None:
    token = hq.add_terminal("T-RETRY")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, hq, token, "T-RETRY"), notify)
    api = Api(till)
    body = {"member_id": "M-0001", "lines": [{"sku": "RETRY", "quantity": 2, "unit_price": 1250}], "request_id": "P1-7"}

    def sale(payload: dict[str, object]) -> dict[str, object]:
        reply = api.http.post("/v1/sales", json=payload, headers={"Authorization": f"Bearer {till.token()}"})
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    try:
        till.start()
        first = sale(body)
        till.kill()  # SIGKILL: for the till, as if it died before the POS read the answer
        till.start()
        again = sale(body)  # the POS sends the request again, as it was
        assert again == first  # the same sale, the same receipt (seq, points, balance then)
        other = sale({**body, "request_id": "P1-8"})
        assert other["seq"] == first["seq"] + 1 and other["txn_id"] != first["txn_id"]
        wait_until(lambda: api.status()["pending"] == 0, 20, "both sales pushed")
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    assert hq_journal(Path(hq.db), "T-RETRY") == [(first["seq"], first["txn_id"]), (other["seq"], other["txn_id"])]


def test_a_top_up_sent_again_with_its_request_id_after_a_kill_is_credited_once(tmp_path: Path, hq: HqProcess) -> None:
    """The POS took the member's money for a top-up and got no answer: sent again with its ``request_id``, it is
    answered with the top-up recorded, and the member's stored value is credited once, at the till and at head
    office. The same id sent as a sale is refused (``request_id_used``), never answered with the top-up's receipt."""
    token = hq.add_terminal("T-RETRYTOP")
    limits = ("--per-transaction", "10000", "--per-day", "50000", "--per-member-day", "20000")
    hq.cli("till-topups", "T-RETRYTOP", "--enable", *limits)
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, hq, token, "T-RETRYTOP"), notify)
    api = Api(till)
    body = {"member_id": "M-0002", "amount": 2500, "request_id": "P1-9"}

    def post(path: str, payload: dict[str, object]) -> httpx.Response:
        return api.http.post(path, json=payload, headers={"Authorization": f"Bearer {till.token()}"})

    try:
        till.start()
        wait_until(
            lambda: api.status()["topups"]["enabled"] and api.status()["clock_offset_s"] is not None,
            30,
            "the till's pull of its top-up policy, and its clock checked",
        )
        first = post("/v1/topups", body)
        assert first.status_code == 200, first.text
        till.kill()
        till.start()
        again = post("/v1/topups", body)
        assert again.status_code == 200 and again.json() == first.json(), again.text
        assert first.json()["stored_value"] == 2500
        sale = post("/v1/sales", {"lines": [{"sku": "X", "quantity": 1, "unit_price": 100}], "request_id": "P1-9"})
        assert sale.status_code == 409 and sale.json()["code"] == "request_id_used", sale.text
        wait_until(lambda: api.status()["pending"] == 0, 20, "the top-up pushed")
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    assert hq_journal(Path(hq.db), "T-RETRYTOP") == [(first.json()["seq"], first.json()["txn_id"])]
    conn = sqlite3.connect(f"file:{hq.db}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT stored_value FROM members WHERE member_id = 'M-0002'").fetchone()[0] == 2500
    finally:
        conn.close()


def test_a_voucher_sold_again_with_its_request_id_after_a_kill_is_sold_once(tmp_path: Path, hq: HqProcess) -> None:
    """The POS took the money for a voucher and got no answer: sent again with its ``request_id`` after the daemon
    was killed, it is answered with the voucher sold (the same code to print), and no second voucher of the till's
    stock is sold, at the till or at head office. The same id sent as a top-up is refused (``request_id_used``)."""
    token = hq.add_terminal("T-RETRYVOU")
    hq.cli("voucher", "issue", "T-RETRYVOU", "--count", "2", "--value", "1000")
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, hq, token, "T-RETRYVOU"), notify)
    api = Api(till)
    body = {"value": 1000, "request_id": "P1-11"}

    def post(path: str, payload: dict[str, object]) -> httpx.Response:
        return api.http.post(path, json=payload, headers={"Authorization": f"Bearer {till.token()}"})

    def stock() -> int:
        return sum(int(s["count"]) for s in api.status()["vouchers"]["stock"])

    try:
        till.start()
        wait_until(lambda: stock() == 2, 30, "the till's pull of its voucher stock")
        first = post("/v1/vouchers/sell", body)
        assert first.status_code == 200, first.text
        till.kill()
        till.start()
        again = post("/v1/vouchers/sell", body)
        assert again.status_code == 200 and again.json() == first.json(), again.text
        assert stock() == 1  # one voucher sold, one left
        topup = post("/v1/topups", {"member_id": "M-0002", "amount": 1000, "request_id": "P1-11"})
        assert topup.status_code == 409 and topup.json()["code"] == "request_id_used", topup.text
        wait_until(lambda: api.status()["pending"] == 0, 20, "the voucher's sale pushed")
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    assert hq_journal(Path(hq.db), "T-RETRYVOU") == [(first.json()["seq"], first.json()["txn_id"])]
