"""Earning rules and coupons through the administrators' API (``/v1/admin/rules``, ``/v1/admin/coupons``)
against a real head-office server on 127.0.0.1, on SQLite and PostgreSQL: an administrator's program makes a
rule, a real till (its Store, SyncClient and Service) pulls it and earns by it, the rule is changed only on the
version it was read at and retired, and the till stops applying it; coupons likewise, a member's personal coupon
read by id but never listed; every bad document, version, reason and credential is refused with its stable code
and writes nothing (no document, no audit record)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import audit, documents, masterdata
from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from sync.client import SyncClient
from terminal.canonical import doc_digest
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.backoffice.chain import chain

BASKET = Basket((Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))
TRIPLE = {"kind": "campaign", "multiplier_pct": 300, "categories": ["coffee"], "text": "Triple coffee"}
TEN_OFF = {"kind": "amount_off", "value": 100, "text": "1.00 off", "limits": {"global": 50}}


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, ServerHandle, httpx.Client]]:
    with chain(hq_url) as (hq, _):
        server = start_in_thread(hq)
        token = hq.add_admin("Mio")
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        try:
            yield hq, server, client
        finally:
            client.close()
            server.stop()


@pytest.fixture
def till(office: tuple[HqStore, ServerHandle, httpx.Client], tmp_path: Path) -> Iterator[tuple[SyncClient, Service]]:
    hq, server, _ = office
    hq.add_terminal("T3", "S1", "till-3-token")
    store = Store.open(tmp_path / "till" / "t.db")
    sync = SyncClient(store, "T3", server.url, "till-3-token", timeout=10)
    try:
        yield sync, Service(store, "T3", store_id="S1")
    finally:
        sync.close()
        store.close()


def stored(hq: HqStore) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Every live rule document and coupon, and how many audit records there are."""
    with hq.db.read() as tx:
        rules = {str(k): json.loads(str(b)) for k, b in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")}
        coupons = {
            str(k): json.loads(str(b)) for k, b in tx.all("SELECT coupon_id, body FROM coupons WHERE deleted = 0")
        }
        records = len(audit.recent(tx, 10_000))
    return rules, coupons, records


def code(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, str(reply.json().get("code", ""))


def test_a_rule_made_by_a_program_reaches_the_till_changes_on_its_version_and_retires(
    office: tuple[HqStore, ServerHandle, httpx.Client], till: tuple[SyncClient, Service]
) -> None:
    hq, _, api = office
    sync, service = till
    sync.sync_once()
    assert service.quote("M-S1", BASKET).points_earned == 21  # the chain's 1 point a 1.00

    made = api.put("/v1/admin/rules/coffee-3x", params={"reason": "winter push"}, json=TRIPLE,
                   headers={"If-None-Match": "*"})  # fmt: skip
    assert made.status_code == 200, made.text
    digest = made.json()["digest"]
    assert made.headers["ETag"] == f'"{digest}"' and digest == doc_digest({**TRIPLE, "rule_id": "coffee-3x"})
    read = api.get("/v1/admin/rules/coffee-3x")
    assert read.json() == {"rule_id": "coffee-3x", "digest": digest, "document": {**TRIPLE, "rule_id": "coffee-3x"}}
    assert read.headers["ETag"] == f'"{digest}"'
    assert "coffee-3x" in [d["rule_id"] for d in api.get("/v1/admin/rules").json()]
    with hq.db.read() as tx:
        last = audit.recent(tx, 1)[0]
    assert (last.actor, last.action, last.target, last.reason) == ("Mio", "rule_put", "coffee-3x", "winter push")

    sync.sync_once()  # the till pulls the rule and earns by it
    assert service.quote("M-S1", BASKET).points_earned == 21 + 2 * 9

    again = api.put("/v1/admin/rules/coffee-3x", params={"reason": "again"}, json=TRIPLE,
                    headers={"If-None-Match": "*"})  # fmt: skip
    assert code(again) == (412, "document_changed")  # the id is taken: a create never overwrites
    double = {**TRIPLE, "multiplier_pct": 200}
    stale = api.put("/v1/admin/rules/coffee-3x", params={"reason": "double"}, json=double,
                    headers={"If-Match": '"' + "0" * 64 + '"'})  # fmt: skip
    assert code(stale) == (412, "document_changed")
    assert stored(hq)[0]["coffee-3x"]["multiplier_pct"] == 300
    changed = api.put("/v1/admin/rules/coffee-3x", params={"reason": "double"}, json=double,
                      headers={"If-Match": f'"{digest}"'})  # fmt: skip
    assert changed.status_code == 200 and changed.json()["digest"] != digest
    sync.sync_once()
    assert service.quote("M-S1", BASKET).points_earned == 21 + 9

    stale_retire = api.delete("/v1/admin/rules/coffee-3x", params={"reason": "over"}, headers={"If-Match": digest})
    assert code(stale_retire) == (412, "document_changed")  # retired only on the version it was read at
    assert "coffee-3x" in stored(hq)[0]
    retired = api.delete("/v1/admin/rules/coffee-3x", params={"reason": "over"},
                         headers={"If-Match": changed.json()["digest"]})  # fmt: skip
    assert retired.status_code == 200 and retired.json() == {"rule_id": "coffee-3x", "retired": True}
    with hq.db.read() as tx:
        last = audit.recent(tx, 1)[0]
    assert (last.actor, last.action, last.target, last.reason) == ("Mio", "rule_retire", "coffee-3x", "over")
    sync.sync_once()
    assert service.quote("M-S1", BASKET).points_earned == 21  # the till stopped applying it
    assert code(api.get("/v1/admin/rules/coffee-3x")) == (404, "not_found")
    assert code(api.delete("/v1/admin/rules/coffee-3x", params={"reason": "again"})) == (404, "not_found")


def test_coupons_are_listed_chain_wide_and_a_members_own_is_read_by_id_only(
    office: tuple[HqStore, ServerHandle, httpx.Client],
) -> None:
    hq, _, api = office
    hq.put_coupon({"coupon_id": "P-1", "member_id": "M-S1", "kind": "amount_off", "value": 50, "text": "yours"})
    made = api.put("/v1/admin/coupons/TEN", params={"reason": "spring"}, json=TEN_OFF)
    assert made.status_code == 200, made.text
    listed = api.get("/v1/admin/coupons").json()
    assert [d["coupon_id"] for d in listed] == ["TEN"]  # a member's personal coupon is not listed
    assert listed[0]["document"] == {**TEN_OFF, "coupon_id": "TEN"}
    assert api.get("/v1/admin/coupons/P-1").json()["document"]["member_id"] == "M-S1"
    assert stored(hq)[1]["TEN"] == {**TEN_OFF, "coupon_id": "TEN"}
    assert api.delete("/v1/admin/coupons/TEN", params={"reason": "ended"}).status_code == 200
    assert "TEN" not in stored(hq)[1]


@pytest.mark.parametrize(
    ("path", "params", "body", "headers", "expected"),
    [
        ("rules/r1", {"reason": "x"}, {"kind": "sorcery", "text": "?"}, {}, (422, "document_invalid")),
        ("rules/r1", {"reason": "x"}, {"kind": "campaign", "multiplier_pct": -5}, {}, (422, "document_invalid")),
        ("rules/r1", {"reason": "x"}, {**TRIPLE, "rule_id": "other"}, {}, (422, "document_invalid")),
        ("rules/bad%20id", {"reason": "x"}, TRIPLE, {}, (422, "document_invalid")),
        ("coupons/c1", {"reason": "x"}, {"kind": "amount_off", "value": "lots"}, {}, (422, "document_invalid")),
        ("rules/r1", {"reason": "x"}, {**TRIPLE, "text": "x" * 70_000}, {}, (422, "document_invalid")),  # too long
        ("rules/r1", {"reason": "x"}, {**TRIPLE, "text": "\ud800"}, {}, (422, "invalid_request")),  # no UTF-8
        ("rules/r1", {}, TRIPLE, {}, (422, "invalid_request")),  # no reason
        ("rules/r1", {"reason": "   "}, TRIPLE, {}, (422, "reason_required")),
        ("rules/r1", {"reason": "x" * 201}, TRIPLE, {}, (422, "invalid_request")),
        ("rules/r1", {"reason": "x"}, TRIPLE, {"If-None-Match": '"abc"'}, (422, "invalid_request")),
        ("rules/r1", {"reason": "x"}, TRIPLE, {"If-Match": "0" * 64}, (412, "document_changed")),  # no such rule
        ("rules/r1", {"reason": "x"}, TRIPLE, {"Authorization": "Bearer till-1-token"}, (403, "forbidden")),
        ("rules/r1", {"reason": "x"}, TRIPLE, {"Authorization": ""}, (401, "unauthorized")),
        ("widgets/r1", {"reason": "x"}, TRIPLE, {}, (404, "not_found")),
    ],
)
def test_bad_documents_versions_reasons_and_credentials_are_refused_and_write_nothing(
    office: tuple[HqStore, ServerHandle, httpx.Client],
    path: str,
    params: dict[str, str],
    body: dict[str, Any],
    headers: dict[str, str],
    expected: tuple[int, str],
) -> None:
    hq, _, api = office
    before = stored(hq)
    text = json.dumps(body)  # as JSON text: a lone surrogate stays an escape, as a program might send it
    sent = {"Content-Type": "application/json", **headers}
    reply = api.put(f"/v1/admin/{path}", params=params, content=text, headers=sent)
    assert code(reply) == expected, reply.text
    assert stored(hq) == before
    if path.startswith("rules/r1") and not headers:
        assert code(api.delete(f"/v1/admin/{path}", params={"reason": "x"})) == (404, "not_found")  # nothing made


@pytest.mark.parametrize(
    ("doc", "field", "code"),
    [
        ({**TRIPLE, "rule_id": "r1", "text": "\ud800"}, "document", documents.Code.TILL_REFUSES),
        ({**TRIPLE, "rule_id": "r1", "text": "x" * masterdata.MAX_DOCUMENT}, "document", documents.Code.TOO_LONG),
        ({**TRIPLE, "rule_id": "r2"}, "rule_id", documents.Code.BAD_ID),
    ],
)
def test_the_service_refuses_what_no_till_could_hold_before_anything_is_stored(
    doc: dict[str, Any], field: str, code: documents.Code
) -> None:
    with pytest.raises(documents.DocumentInvalid) as refused:
        masterdata.check(masterdata.RULE, "r1", doc)
    assert refused.value.by_field() == {field: code.value}
