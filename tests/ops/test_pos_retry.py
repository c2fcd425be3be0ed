"""A POS's retry of a sale whose answer it never got (the daemon killed between the sale's COMMIT and its answer, a
dropped connection): sent again with the same ``request_id``, it is answered with the sale already recorded, the same
receipt, and never recorded twice, across a SIGKILL and a restart."""

from __future__ import annotations

from pathlib import Path

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
