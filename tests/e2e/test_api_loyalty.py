"""The loyalty engine through the daemon's real local API: quote, sale with coupons and points, refund.

Head office is unreachable on purpose (a closed port): everything here works offline from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.config import validate
from terminal.daemon import Daemon
from terminal.model import EarnRule, Member
from tests.ports import closed_port

RULES = {
    "redemption": {"kind": "redemption", "unit_points": 100, "unit_value": 100, "min_points": 100, "max_pct": 50},
    "coffee": {"kind": "campaign", "multiplier_pct": 200, "categories": ["coffee"], "text": "double on coffee"},
}
COUPONS = {
    "WELCOME": {"kind": "amount_off", "value": 300, "single_use": True, "text": "3.00 welcome"},
    "LATE": {"kind": "amount_off", "value": 100, "ends": "2020-01-01"},
}
LINES = [
    {"sku": "LATTE", "quantity": 2, "unit_price": 450, "category": "coffee"},
    {"sku": "BEANS", "quantity": 1, "unit_price": 1200, "category": "beans"},
]


@pytest.fixture(params=[False], ids=["pos-trusted"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[httpx.Client, Daemon]]:
    """A till whose POS vouches for the member (``spend_needs_proof`` off): points spend on its word.
    Parametrised with True, the default: spending needs the member's proof."""
    cfg = validate(
        {
            "terminal": {"id": "T-API", "data_dir": str(tmp_path / "till")},
            "reader": {"devices": ["sim:"]},
            "hq": {"url": f"http://127.0.0.1:{closed_port()}", "token": "x", "push_interval": 5, "backoff_max": 5},
            "api": {"port": 0},
            "payments": {"spend_needs_proof": request.param},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert daemon.store is not None
        daemon.store.apply_changes([Member("M-1", "Aiko", "basic", 1000)], [], [EarnRule("base", 1, 100)], 1)
        daemon.store.put_docs("rule_docs", dict(RULES))
        daemon.store.put_docs("coupon_docs", dict(COUPONS))
        url = f"http://127.0.0.1:{daemon.api_server.port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {daemon.api_token}"}, timeout=10) as client:
            yield client, daemon
    finally:
        daemon.stop()


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body)


def test_quote_sale_and_refund_over_the_api(api: tuple[httpx.Client, Daemon]) -> None:
    client, daemon = api
    body = {"member_id": "M-1", "lines": LINES, "coupons": ["WELCOME", "LATE", "NOPE"], "redeem": -1}
    quote = post(client, "/v1/quote", body).json()
    assert quote["coupons"] == ["WELCOME"]
    assert sorted(map(tuple, quote["refused"])) == [("LATE", "coupon_expired"), ("NOPE", "unknown_coupon")]
    assert quote["discount"] == 300 and quote["points_redeemed"] == 900 and quote["payable"] == 900
    assert {x["source"]: x["text"] for x in quote["explain"]}["coffee"] == "double on coffee"
    assert daemon.store is not None and daemon.store.entries() == []  # a quote writes nothing

    sale = post(client, "/v1/sales", body)
    assert sale.status_code == 200, sale.text
    receipt = sale.json()
    assert receipt["points_balance"] == 1000 - 900 + quote["points_earned"]

    again = post(client, "/v1/sales", {"member_id": "M-1", "lines": LINES, "coupons": ["WELCOME"]}).json()
    assert again["total"] == 2100  # paid in full: the single-use coupon was not applied a second time

    refund = post(client, f"/v1/sales/{receipt['txn_id']}/refund", {"lines": {"0": 2}})
    assert refund.status_code == 200, refund.text
    too_much = post(client, f"/v1/sales/{receipt['txn_id']}/refund", {"lines": {"0": 1}})
    assert too_much.status_code == 409 and too_much.json()["code"] == "invalid_refund"
    kinds = [e.kind for e in daemon.store.entries()]
    assert kinds == ["sale", "sale", "refund"]


@pytest.mark.parametrize("api", [True], ids=["default"], indirect=True)
def test_a_member_id_earns_but_never_spends(api: tuple[httpx.Client, Daemon]) -> None:
    client, daemon = api
    refused = post(client, "/v1/sales", {"member_id": "M-1", "lines": LINES, "redeem": -1})
    assert (refused.status_code, refused.json()["code"]) == (409, "proof_needed")
    paid = post(client, "/v1/sales", {"member_id": "M-1", "lines": LINES, "stored_value": 100})
    assert (paid.status_code, paid.json()["code"]) == (409, "proof_needed")
    assert daemon.store is not None and daemon.store.entries() == []  # nothing written
    earned = post(client, "/v1/sales", {"member_id": "M-1", "lines": LINES})
    assert earned.status_code == 200 and earned.json()["points_delta"] > 0
    assert daemon.store.member("M-1").points == 1000 + earned.json()["points_delta"]  # type: ignore[union-attr]


def test_points_refusal_is_a_409_with_its_code(api: tuple[httpx.Client, Daemon]) -> None:
    client, _ = api
    response = post(client, "/v1/quote", {"member_id": "M-1", "lines": LINES, "redeem": 150})
    assert response.status_code == 409
    assert response.json()["code"] == "points_not_whole_units"


def test_refund_needs_the_token(api: tuple[httpx.Client, Daemon]) -> None:
    client, _ = api
    response = httpx.post(f"{client.base_url}/v1/sales/x/refund", json={"lines": {"0": 1}})
    assert response.status_code == 403
