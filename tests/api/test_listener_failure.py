"""An event listener that fails (a bug in a console's printer, a plug-in's subscriber) after a sale is recorded: a
real till daemon's local API over HTTP on 127.0.0.1. The sale's answer is its receipt, not a 500 the POS would ring
again: the failure is logged with its traceback and counted (``tillpoint_listener_errors_total{event}``), and the
listeners after it still get the event. A refusal is still the refusal (409 with its code), whatever a listener of
its ``rejected`` event does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.daemon import Daemon
from tests.api.stack import base_url, running_till

LINES = [{"sku": "TEA", "quantity": 1, "unit_price": 450, "category": "drink"}]


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Daemon]:
    with running_till(tmp_path) as daemon:
        yield daemon


def _broken(event: dict[str, Any]) -> None:
    if event["type"] in ("sale", "rejected", "session"):
        raise RuntimeError(f"a listener's bug on a {event['type']} event")


def test_a_failing_listener_never_turns_a_recorded_sale_into_an_error(
    till: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    till.subscribers[1:1] = [_broken]  # before the others: they still get every event
    till.subscribers.append(lambda event: seen.append(str(event["type"])))
    assert till.store is not None
    seq = till.store.max_seq()
    with httpx.Client(base_url=base_url(till), headers={"Authorization": f"Bearer {till.api_token}"}) as api:
        with caplog.at_level(logging.ERROR, logger="tillpoint.daemon"):
            sold = api.post("/v1/sales", json={"member_id": "M-2", "lines": LINES, "request_id": "L3-1"})
        assert sold.status_code == 200, sold.text
        assert till.store.max_seq() == seq + 1 and sold.json()["seq"] == seq + 1
        again = api.post("/v1/sales", json={"member_id": "M-2", "lines": LINES, "request_id": "L3-1"})
        assert again.status_code == 200 and again.json() == sold.json()  # recorded once
        assert "sale" in seen
        assert any("a listener's bug on a sale event" in (r.exc_text or "") for r in caplog.records)
        metrics = till.metrics.exposition()[0].decode()
        assert 'tillpoint_listener_errors_total{event="sale"} 1.0' in metrics

        # The cashier's panel: the session's own change events fail too; the sale is done, once.
        api.post("/v1/session/total", json={"amount": 900}).raise_for_status()
        api.post("/v1/session/pay", json={}).raise_for_status()
        done = api.post("/v1/session/commit", json={})
        assert done.status_code == 200 and done.json()["receipt"]["kind"] == "sale", done.text
        assert api.get("/v1/session").json()["state"] == "done"

        refused = api.post("/v1/sales", json={"member_id": "M-404", "lines": LINES})
        assert refused.status_code == 409 and refused.json()["code"] == "unknown_member", refused.text
    sales = [e.txn_id for e in till.store.entries(seq) if e.kind == "sale"]
    assert sales == [sold.json()["txn_id"], done.json()["receipt"]["txn_id"]]  # each once, the refused one not
