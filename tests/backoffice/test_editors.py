"""The rule and coupon editors and staff management over HTTP against a real head-office server on 127.0.0.1,
on SQLite and PostgreSQL: marketing saves a rule and a real till (its Store, SyncClient and Service) pulls it
and earns exactly what the preview said; read-only roles and other roles are refused on the page and by a
direct POST, and nothing changes; a POST without the page's Origin or CSRF token changes nothing; every kind
of bad input gets its stable code per field and stores nothing; markup in every field comes back escaped; a
replayed create makes nothing twice; a retired document stops applying at the till after its pull; chain
administrators manage staff, and the last one stays."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import audit
from hq.api.backoffice import FORM_FIELDS
from hq.api.server import ServerHandle
from hq.backoffice import editors, staff
from hq.backoffice.errors import BackofficeRefused
from hq.backoffice.staff import Staff
from hq.store import HqStore
from sync.client import SyncClient
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.backoffice.chain import PASSWORD
from tests.backoffice.test_web import browser, code_of, csrf_of, signed_in

BASKET = "LATTE 2 450 coffee\nBEANS 1 1200 beans"
TILL_BASKET = Basket((Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))
COFFEE_TRIPLE = {
    "rule_id": "coffee-3x",
    "kind": "campaign",
    "multiplier_pct": "300",
    "categories": "coffee",
    "text": "Triple coffee",
    "reason": "winter push",
}
MARKUP = ('<script>alert("s")</script>', '"><img src=x onerror=alert("i")>', "'><svg onload=alert('v')>")


def editor_csrf(client: httpx.Client, kind: str = "rule") -> str:
    return csrf_of(client.get(f"/backoffice/{kind}s/edit").text)


def rule_docs(hq: HqStore) -> dict[str, Any]:
    with hq.db.read() as tx:
        return {str(r[0]): json.loads(r[1]) for r in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")}


def coupon_docs(hq: HqStore) -> dict[str, Any]:
    with hq.db.read() as tx:
        return {str(r[0]): json.loads(r[1]) for r in tx.all("SELECT coupon_id, body FROM coupons WHERE deleted = 0")}


def audit_count(hq: HqStore) -> int:
    with hq.db.read() as tx:
        return len(audit.recent(tx, 10_000))


def digest_of(html: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]+)"', html)
    assert found, html[:300]
    return found.group(1)


def figures(html: str, side: str) -> dict[str, int]:
    found = re.findall(rf'data-figure="(\w+)">.*?class="{side}" data-value="(-?\d+)"', html, re.S)
    return {name: int(value) for name, value in found}


def till(hq: HqStore, tmp_path: Path, server: ServerHandle) -> tuple[Store, SyncClient, Service]:
    """A new till of store S1 (its own journal from seq 1): its Store, SyncClient and Service."""
    hq.add_terminal("T3", "S1", "till-3-token")
    store = Store.open(tmp_path / "till" / "t.db")
    return store, SyncClient(store, "T3", server.url, "till-3-token", timeout=10), Service(store, "T3", store_id="S1")


def test_marketing_saves_a_rule_and_the_till_earns_what_the_preview_said(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], tmp_path: Path
) -> None:
    hq, _, server = office
    store, sync, service = till(hq, tmp_path, server)
    try:
        sync.sync_once()
        before = service.quote("M-S1", TILL_BASKET).points_earned
        client, _ = signed_in(server.url, "market")
        csrf = editor_csrf(client)
        preview = client.post(
            "/backoffice/rules/preview",
            data=COFFEE_TRIPLE | {"csrf": csrf, "basket": BASKET, "member": "M-S1", "store": "S1"},
        )
        assert preview.status_code == 200, preview.text[:300]
        now, edited = figures(preview.text, "current"), figures(preview.text, "edited")
        assert now["points_earned"] == before == 21  # 1 pt a 1.00 on 21.00
        assert edited["points_earned"] == 21 + 2 * 9  # the coffee's 9 base points tripled
        assert rule_docs(hq).get("coffee-3x") is None  # a preview stores nothing

        saved = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf})
        assert saved.status_code == 303 and saved.headers["location"] == "/backoffice/rules?done=done"
        assert rule_docs(hq)["coffee-3x"] == {
            "rule_id": "coffee-3x",
            "kind": "campaign",
            "multiplier_pct": 300,
            "categories": ["coffee"],
            "text": "Triple coffee",
            "mode": "stack",
        }
        with hq.db.read() as tx:
            last = audit.recent(tx, 1)[0]
        assert (last.actor, last.action, last.target, last.reason) == ("market", "rule_put", "coffee-3x", "winter push")

        sync.sync_once()  # the till pulls the saved rule
        quote = service.quote("M-S1", TILL_BASKET)
        assert (quote.points_earned, quote.payable) == (edited["points_earned"], edited["payable"])
        points_before = hq.member("M-S1").points  # type: ignore[union-attr]
        receipt = service.commit(quote)
        assert receipt.points_delta == edited["points_earned"]
        assert sync.sync_once().pushed == 1
        assert hq.member("M-S1").points == points_before + edited["points_earned"]  # type: ignore[union-attr]
        assert hq.quarantined() == []  # head office priced the sale the same way
    finally:
        sync.close()
        store.close()


def test_a_coupon_is_previewed_saved_edited_and_retired_and_the_till_follows(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], tmp_path: Path
) -> None:
    hq, _, server = office
    store, sync, service = till(hq, tmp_path, server)
    coupon = {"coupon_id": "TEN-OFF", "kind": "percent_off", "value": "10", "text": "Ten off", "reason": "promo"}
    try:
        client, _ = signed_in(server.url, "admin")
        csrf = editor_csrf(client, "coupon")
        shown = client.post(
            "/backoffice/coupons/preview", data=coupon | {"csrf": csrf, "basket": BASKET, "member": "M-S1"}
        )
        edited = figures(shown.text, "edited")
        assert figures(shown.text, "current")["discount"] == 0 and edited["discount"] == 210
        assert client.post("/backoffice/coupons/save", data=coupon | {"csrf": csrf}).status_code == 303
        sync.sync_once()
        quote = service.quote("M-S1", TILL_BASKET, ["TEN-OFF"])
        assert (quote.discount, quote.payable, quote.points_earned) == (
            edited["discount"],
            edited["payable"],
            edited["points_earned"],
        )

        # An edit keeps what the form does not manage (head office's count of uses, a pool).
        hq.put_coupon(coupon_docs(hq)["TEN-OFF"] | {"used": 3, "pool": "P-1"}, "TEN-OFF")
        page = client.get("/backoffice/coupons/edit?id=TEN-OFF")
        assert 'name="value" value="10"' in page.text and 'name="editing" value="TEN-OFF"' in page.text
        changed = coupon | {"value": "20", "editing": "TEN-OFF", "digest": digest_of(page.text), "csrf": csrf}
        changed["reason"] = "better"
        assert client.post("/backoffice/coupons/save", data=changed).status_code == 303
        held = coupon_docs(hq)["TEN-OFF"]
        assert (held["value"], held["used"], held["pool"]) == (20, 3, "P-1")

        retired = client.post("/backoffice/coupons/retire", data={"csrf": csrf, "id": "TEN-OFF", "reason": "ended"})
        assert retired.status_code == 303 and "TEN-OFF" not in coupon_docs(hq)
        sync.sync_once()
        after = service.quote("M-S1", TILL_BASKET, ["TEN-OFF"])
        assert after.discount == 0 and ("TEN-OFF", "unknown_coupon") in after.refused
        with hq.db.read() as tx:
            actions = [(r.action, r.target) for r in audit.recent(tx, 3)]
        assert actions == [("coupon_retire", "TEN-OFF"), ("coupon_put", "TEN-OFF"), ("coupon_put", "TEN-OFF")]
    finally:
        sync.close()
        store.close()


@pytest.mark.parametrize("staff_id", ["manager", "auditor", "finance"])
def test_read_only_roles_see_the_documents_and_change_nothing_even_by_a_direct_post(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], staff_id: str
) -> None:
    hq, _, server = office
    hq.put_rule_doc({"rule_id": "cap-1", "kind": "cap", "cap": 500})
    client, csrf = signed_in(server.url, staff_id)
    listed = client.get("/backoffice/rules")
    assert listed.status_code == 200 and "cap-1" in listed.text and 'id="read-only"' in listed.text
    assert "/backoffice/rules/retire" not in listed.text and 'id="new-document"' not in listed.text
    shown = client.get("/backoffice/rules/edit?id=cap-1")
    assert shown.status_code == 200 and '<fieldset class="card" disabled>' in shown.text
    assert 'id="save"' not in shown.text and "hx-post" not in shown.text
    before, records = rule_docs(hq), audit_count(hq)
    for path, data in (
        ("/backoffice/rules/save", COFFEE_TRIPLE),
        ("/backoffice/rules/save", {"rule_id": "cap-1", "kind": "cap", "cap": "1", "editing": "cap-1", "reason": "r"}),
        ("/backoffice/rules/retire", {"id": "cap-1", "reason": "r"}),
        ("/backoffice/rules/preview", COFFEE_TRIPLE | {"basket": BASKET}),
        ("/backoffice/coupons/save", {"coupon_id": "C", "kind": "free_item", "reason": "r"}),
        ("/backoffice/staff/add", {"staff_id": "x", "name": "X", "role": "chain_admin", "password": PASSWORD}),
    ):
        reply = client.post(path, data=data | {"csrf": csrf})
        assert reply.status_code == 403 and code_of(reply) == "forbidden", (staff_id, path)
    assert client.get("/backoffice/staff").status_code == 403
    assert rule_docs(hq) == before and audit_count(hq) == records


def test_a_post_without_the_pages_origin_or_csrf_token_changes_nothing(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "market")
    records = audit_count(hq)
    no_token = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE)
    wrong_token = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf[:-2] + "xx"})
    other_site = client.post(
        "/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf}, headers={"Origin": "http://evil.example"}
    )
    cross_site = client.post(
        "/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert [code_of(r) for r in (no_token, wrong_token, other_site, cross_site)] == [
        "bad_csrf",
        "bad_csrf",
        "bad_origin",
        "bad_origin",
    ]
    # Another staff member's token (a stolen page of theirs) is not this session's.
    admin, admin_csrf = signed_in(server.url, "admin")
    assert code_of(client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": admin_csrf})) == "bad_csrf"
    # A request replayed after its session ended is refused.
    client.post("/backoffice/sign-out", data={"csrf": csrf})
    replayed = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf})
    assert replayed.status_code == 401 and code_of(replayed) == "sign_in_required"
    assert "coffee-3x" not in rule_docs(hq) and audit_count(hq) == records
    admin.close()


BAD_RULES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"rule_id": ""}, {"rule_id": "bad_id"}),
    ({"rule_id": "has space"}, {"rule_id": "bad_id"}),
    ({"rule_id": "x" * 65}, {"rule_id": "bad_id"}),
    ({"kind": "bogus"}, {"kind": "bad_choice"}),
    ({"kind": ""}, {"kind": "required"}),
    ({"multiplier_pct": "abc"}, {"multiplier_pct": "not_whole"}),
    ({"multiplier_pct": "-5"}, {"multiplier_pct": "not_whole"}),
    ({"multiplier_pct": "50"}, {"multiplier_pct": "not_whole"}),
    ({"multiplier_pct": "1.5"}, {"multiplier_pct": "not_whole"}),
    ({"multiplier_pct": "99999999999"}, {"multiplier_pct": "not_whole"}),
    ({"multiplier_pct": ""}, {"multiplier_pct": "required"}),
    ({"mode": "sometimes"}, {"mode": "bad_choice"}),
    ({"weekdays": "7"}, {"weekdays": "bad_weekdays"}),
    ({"weekdays": "mon"}, {"weekdays": "bad_weekdays"}),
    ({"hours": "25:00-26:00"}, {"hours": "bad_hours"}),
    ({"hours": "morning"}, {"hours": "bad_hours"}),
    ({"starts": "yesterday"}, {"starts": "bad_date"}),
    ({"starts": "2026-12-24", "ends": "2026-12-01"}, {"ends": "ends_first"}),
    ({"categories": ",".join(f"c{i}" for i in range(101))}, {"categories": "bad_list"}),
    ({"text": "t" * 201}, {"text": "too_long"}),
    ({"rule_id": "tiers"}, {"rule_id": "fixed_id"}),
    ({"kind": "tiers", "levels": "gold"}, {"rule_id": "fixed_id", "levels": "bad_levels"}),
    ({"kind": "tiers", "levels": "basic:0, gold:²"}, {"rule_id": "fixed_id", "levels": "bad_levels"}),
    ({"kind": "tier", "tier": "", "multiplier_pct": "150"}, {"tier": "required"}),
    (
        {"multiplier_pct": "abc", "weekdays": "9", "hours": "x"},
        {"multiplier_pct": "not_whole", "weekdays": "bad_weekdays", "hours": "bad_hours"},
    ),
]
BAD_COUPONS: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"coupon_id": "<b>"}, {"coupon_id": "bad_id"}),
    ({"kind": "free_money"}, {"kind": "bad_choice"}),
    ({"value": "0"}, {"value": "not_whole"}),
    ({"value": "101"}, {"value": "bad_percent"}),
    ({"value": ""}, {"value": "required"}),
    ({"target": "everyone"}, {"target": "bad_choice"}),
    ({"kind": "buy_x_get_y", "buy": "2", "get": "zero"}, {"get": "not_whole"}),
    ({"limit_global": "-1"}, {"limit_global": "not_whole"}),
    ({"description": "d" * 1001}, {"description": "too_long"}),
    ({"ends": "2026-13-40"}, {"ends": "bad_date"}),
]


@pytest.mark.parametrize("kind", ["rule", "coupon"])
def test_bad_input_gets_its_stable_code_beside_each_field_and_stores_nothing(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], kind: str
) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "market")
    csrf = editor_csrf(client, kind)
    good = (
        COFFEE_TRIPLE if kind == "rule" else {"coupon_id": "C-1", "kind": "percent_off", "value": "10", "reason": "r"}
    )
    cases = BAD_RULES if kind == "rule" else BAD_COUPONS
    before, records = (rule_docs(hq), coupon_docs(hq)), audit_count(hq)
    for change, expected in cases:
        reply = client.post(f"/backoffice/{kind}s/save", data=good | change | {"csrf": csrf})
        assert reply.status_code == 422 and code_of(reply) == "document_invalid", (change, reply.text[:300])
        found = dict(re.findall(r'class="field has-error" data-field="(\w+)">.*?data-code="(\w+)"', reply.text, re.S))
        assert found == expected, change
        for name in expected:  # the field keeps what was typed, escaped
            assert f'aria-describedby="e-{name}"' in reply.text
    no_reason = client.post(f"/backoffice/{kind}s/save", data=good | {"csrf": csrf, "reason": "  "})
    assert no_reason.status_code == 422 and code_of(no_reason) == "reason_required"
    empty = client.post(f"/backoffice/{kind}s/save", data={"csrf": csrf})
    assert empty.status_code == 422 and code_of(empty) == "document_invalid"
    unknown = client.post(f"/backoffice/{kind}s/save", data=good | {"csrf": csrf, "editing": "no-such"})
    assert unknown.status_code == 404 and code_of(unknown) == "not_found"
    assert (rule_docs(hq), coupon_docs(hq)) == before and audit_count(hq) == records


def test_the_preview_says_what_is_wrong_and_never_writes(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "market")
    csrf = editor_csrf(client)
    records = audit_count(hq)
    for basket, member, code in (
        ("LATTE two 450", "", "bad_basket"),
        ("LATTE 0 450", "", "bad_basket"),
        ("LATTE ² 450", "", "bad_basket"),  # a digit to str.isdigit, not to int
        ("LATTE 1 " + "9" * 5000, "", "bad_basket"),  # more digits than int reads
        ("\n".join(["A 1 1"] * 51), "", "bad_basket"),
        (BASKET, "M-NOBODY", "unknown_member"),
    ):
        reply = client.post(
            "/backoffice/rules/preview", data=COFFEE_TRIPLE | {"csrf": csrf, "basket": basket, "member": member}
        )
        assert reply.status_code == 200 and f'data-code="{code}"' in reply.text and "preview-figures" not in reply.text
    broken = client.post(
        "/backoffice/rules/preview",
        data=COFFEE_TRIPLE | {"csrf": csrf, "basket": BASKET, "member": "M-S1", "multiplier_pct": "x"},
    )
    assert 'data-code="not_whole"' in broken.text and figures(broken.text, "current")["points_earned"] == 21
    assert 'class="edited" data-value=""' in broken.text
    empty = client.post("/backoffice/rules/preview", data=COFFEE_TRIPLE | {"csrf": csrf, "basket": " "})
    assert 'id="preview-empty"' in empty.text
    assert audit_count(hq) == records and "coffee-3x" not in rule_docs(hq)


def test_markup_in_every_field_comes_back_escaped(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "market")
    csrf = editor_csrf(client, "coupon")
    for n, markup in enumerate(MARKUP):
        coupon = {
            "coupon_id": f"X-{n}",
            "kind": "amount_off",
            "value": "100",
            "text": markup,
            "description": markup,
            "skus": markup.replace(",", ""),
            "reason": markup,
            "csrf": csrf,
        }
        assert client.post("/backoffice/coupons/save", data=coupon).status_code == 303
        assert coupon_docs(hq)[f"X-{n}"]["text"] == markup  # kept as typed, shown escaped
        for html in (client.get("/backoffice/coupons").text, client.get(f"/backoffice/coupons/edit?id=X-{n}").text):
            assert markup not in html and "<script>alert" not in html and "<img src=x" not in html
        refused = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"rule_id": markup, "csrf": csrf})
        assert code_of(refused) == "document_invalid" and markup not in refused.text
        assert 'data-field="rule_id"' in refused.text
        shown = client.post(
            "/backoffice/coupons/preview",
            data=coupon | {"coupon_id": f"X-{n}", "basket": f"{markup} 1 100", "member": markup},
        )
        assert markup not in shown.text
    with hq.db.read() as tx:
        assert audit.recent(tx, 1)[0].reason == MARKUP[-1]


def test_a_replayed_create_makes_nothing_twice(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "market")
    csrf = editor_csrf(client)
    first = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf})
    again = client.post("/backoffice/rules/save", data=COFFEE_TRIPLE | {"csrf": csrf, "multiplier_pct": "900"})
    assert first.status_code == 303 and again.status_code == 422
    assert 'data-field="rule_id"' in again.text and 'data-code="exists"' in again.text
    assert rule_docs(hq)["coffee-3x"]["multiplier_pct"] == 300
    digest = digest_of(client.get("/backoffice/rules/edit?id=coffee-3x").text)
    renamed = client.post(
        "/backoffice/rules/save",
        data=COFFEE_TRIPLE | {"csrf": csrf, "editing": "coffee-3x", "digest": digest, "rule_id": "other"},
    )
    assert renamed.status_code == 422 and "other" not in rule_docs(hq)


def test_a_form_opened_before_someone_else_saved_is_refused_and_changes_nothing(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    hq.put_rule_doc({"rule_id": "cap-1", "kind": "cap", "cap": 500})
    mia, mia_csrf = signed_in(server.url, "market")
    ada, ada_csrf = signed_in(server.url, "admin")
    mine = digest_of(mia.get("/backoffice/rules/edit?id=cap-1").text)
    theirs = digest_of(ada.get("/backoffice/rules/edit?id=cap-1").text)
    edit = {"rule_id": "cap-1", "kind": "cap", "editing": "cap-1", "reason": "r"}
    assert (
        ada.post("/backoffice/rules/save", data=edit | {"cap": "800", "digest": theirs, "csrf": ada_csrf}).status_code
        == 303
    )
    late = mia.post("/backoffice/rules/save", data=edit | {"cap": "100", "digest": mine, "csrf": mia_csrf})
    assert late.status_code == 409 and code_of(late) == "edited_meanwhile"
    forged = mia.post("/backoffice/rules/save", data=edit | {"cap": "100", "csrf": mia_csrf})
    assert forged.status_code == 409 and code_of(forged) == "edited_meanwhile"
    assert rule_docs(hq)["cap-1"]["cap"] == 800
    ada.close()


def test_tier_settings_are_edited_like_any_rule(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "admin")
    csrf = editor_csrf(client)
    ladder = {"rule_id": "tiers", "kind": "tiers", "levels": "gold:2000, basic:0, silver:500", "window_days": "180"}
    assert (
        client.post("/backoffice/rules/save", data=ladder | {"csrf": csrf, "reason": "new ladder"}).status_code == 303
    )
    assert rule_docs(hq)["tiers"] == {
        "rule_id": "tiers",
        "kind": "tiers",
        "levels": [
            {"tier": "basic", "threshold": 0},
            {"tier": "silver", "threshold": 500},
            {"tier": "gold", "threshold": 2000},
        ],
        "measure": "earned",
        "window_days": 180,
    }
    shown = client.get("/backoffice/rules/edit?id=tiers").text
    assert 'value="basic:0, silver:500, gold:2000"' in shown
    gold = {"rule_id": "gold-x", "kind": "tier", "tier": "gold", "multiplier_pct": "150", "reason": "gold earns more"}
    assert client.post("/backoffice/rules/save", data=gold | {"csrf": csrf}).status_code == 303
    assert rule_docs(hq)["gold-x"]["multiplier_pct"] == 150


# -- staff management -----------------------------------------------------------------------------------------


def sign_in_status(url: str, staff_id: str, password: str) -> int:
    with browser(url) as client:
        return client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": password}).status_code


def test_a_chain_admin_manages_staff_and_every_change_is_audited(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "admin")
    page = client.get("/backoffice/staff")
    assert page.status_code == 200 and 'data-id="market"' in page.text
    new = {
        "staff_id": "kai",
        "name": "Kai <b>K</b>",
        "role": "store_manager",
        "stores": "S2, S1",
        "password": "kai's long password",
    }
    assert client.post("/backoffice/staff/add", data=new | {"csrf": csrf, "reason": "hired"}).status_code == 303
    with hq.db.read() as tx:
        assert staff.get(tx, "kai") == Staff("kai", "Kai <b>K</b>", staff.Role.STORE_MANAGER, frozenset({"S1", "S2"}))
    assert "Kai <b>K</b>" not in client.get("/backoffice/staff").text
    kai, kai_csrf = signed_in_as(server.url, "kai", "kai's long password")

    role = {"role": "marketing", "stores": "", "reason": "moved to head office", "csrf": csrf}
    assert client.post("/backoffice/staff/kai/role", data=role).status_code == 303
    assert kai.get("/backoffice/").status_code == 303  # its session ended with the change
    password = {"password": "a brand new password", "reason": "forgotten", "csrf": csrf}
    assert client.post("/backoffice/staff/kai/password", data=password).status_code == 303
    assert sign_in_status(server.url, "kai", "kai's long password") == 401
    assert sign_in_status(server.url, "kai", "a brand new password") == 303
    assert client.post("/backoffice/staff/kai/disable", data={"reason": "left", "csrf": csrf}).status_code == 303
    assert sign_in_status(server.url, "kai", "a brand new password") == 401
    with hq.db.read() as tx:
        assert staff.get(tx, "kai") == Staff("kai", "Kai <b>K</b>", staff.Role.MARKETING, frozenset(), True)
        records = [(r.actor, r.action, r.target, r.reason) for r in audit.recent(tx, 4)]
    assert records == [
        ("admin", "staff_disable", "kai", "left"),
        ("admin", "staff_passwd", "kai", "forgotten"),
        ("admin", "staff_role", "kai", "moved to head office"),
        ("admin", "staff_add", "kai", "hired"),
    ]
    kai.close()
    del kai_csrf


def signed_in_as(url: str, staff_id: str, password: str) -> tuple[httpx.Client, str]:
    client = browser(url)
    reply = client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": password})
    assert reply.status_code == 303, reply.text[:300]
    return client, csrf_of(client.get("/backoffice/").text)


def test_bad_staff_input_gets_its_code_and_the_last_admin_stays(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "admin")
    good = {"staff_id": "kai", "name": "Kai", "role": "finance", "stores": "", "password": "x" * 12, "reason": "r"}
    for change, code in (
        ({"staff_id": "Bad Id"}, "bad_staff"),
        ({"name": ""}, "bad_staff"),
        ({"role": "owner"}, "bad_staff"),
        ({"stores": "S1"}, "bad_staff"),  # only a store manager has stores
        ({"role": "store_manager"}, "bad_staff"),  # and a store manager has some
        ({"password": "short"}, "bad_staff"),
        ({"staff_id": "market"}, "bad_staff"),  # exists already
        ({"reason": ""}, "reason_required"),
    ):
        reply = client.post("/backoffice/staff/add", data=good | change | {"csrf": csrf})
        assert code_of(reply) == code, change
    with hq.db.read() as tx:
        accounts = staff.listed(tx)
    assert "kai" not in {a.staff_id for a in accounts}

    # Two chain administrators: one may go; the last one can neither leave nor become something else.
    assert client.post("/backoffice/staff/admin2/disable", data={"reason": "left", "csrf": csrf}).status_code == 303
    for path, data in (
        ("/backoffice/staff/admin/disable", {"reason": "me"}),
        ("/backoffice/staff/admin/role", {"role": "auditor", "reason": "me"}),
    ):
        reply = client.post(path, data=data | {"csrf": csrf})
        assert reply.status_code == 409 and code_of(reply) == "last_admin", path
    missing = client.post("/backoffice/staff/nobody/disable", data={"reason": "r", "csrf": csrf})
    assert missing.status_code == 404 and code_of(missing) == "not_found"
    with hq.db.read() as tx:
        me = staff.get(tx, "admin")
    assert me is not None and me.role is staff.Role.CHAIN_ADMIN and not me.disabled
    assert client.get("/backoffice/staff").status_code == 200  # still signed in, still an administrator


def test_the_editors_service_checks_roles_itself(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    """Below the routes: the service refuses a role that may not edit, whoever calls it."""
    hq, made, _ = office
    with pytest.raises(BackofficeRefused) as refused:
        editors.save(hq, made["auditor"], editors.RULE, COFFEE_TRIPLE)
    assert refused.value.code.value == "forbidden" and "coffee-3x" not in rule_docs(hq)


def test_a_truncated_or_oversized_form_changes_nothing(office: tuple[HqStore, dict[str, Staff], ServerHandle]) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "market")
    csrf = editor_csrf(client)
    records = audit_count(hq)
    form = "&".join(f"{k}={v}" for k, v in ({"csrf": csrf} | COFFEE_TRIPLE).items())
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    cut = form[: form.index("kind=") + len("kind=camp")]  # the body ends inside a value
    truncated = client.post("/backoffice/rules/save", content=cut, headers=headers)
    assert truncated.status_code == 422 and 'data-field="kind"' in truncated.text
    too_many = client.post(
        "/backoffice/rules/save", content=form + "".join(f"&x{i}=1" for i in range(FORM_FIELDS)), headers=headers
    )
    too_big = client.post("/backoffice/rules/save", content=form + "&text=" + "t" * 200_000, headers=headers)
    assert code_of(too_many) == code_of(too_big) == "bad_csrf"  # an unreadable form carries no token
    garbled = client.post("/backoffice/rules/save", content=form.replace("coffee", "%ZZ%FF"), headers=headers)
    found = dict(re.findall(r'class="field has-error" data-field="(\w+)">.*?data-code="(\w+)"', garbled.text, re.S))
    assert garbled.status_code == 422 and found == {"rule_id": "bad_id"}  # bad escapes read as text, refused
    assert rule_docs(hq) == {} and audit_count(hq) == records
