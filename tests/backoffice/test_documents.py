"""The editors' pure core (``hq.documents``): every form that passes makes a document the tills read, and the
editor shows it back as a form that makes the same document again (Hypothesis); the preview's quote is the
till's; and, against a real database on SQLite and PostgreSQL, a change whose audit record cannot be written
stores nothing, and two chain administrators disabling each other at once leave one of them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hq import documents
from hq.backoffice import editors, staff
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.staff import Staff
from hq.store import HqStore
from terminal import coupons as cp
from terminal import loyalty as ly
from terminal import pricing
from terminal.model import Basket, EarnRule, Line
from tests.backoffice.chain import chain
from tests.fixtures.hq import command

NAMES = st.lists(st.sampled_from(["coffee", "tea", "beans", "LATTE", "S1", "S2"]), max_size=3)
WHOLE = st.integers(min_value=0, max_value=10**6)
BASE = EarnRule("base", 1, 100)


def _csv(items: list[str]) -> str:
    return ", ".join(items)


rule_forms = st.fixed_dictionaries(
    {
        "rule_id": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True).filter(lambda s: s != "tiers"),
        "kind": st.sampled_from(["base", "tier", "campaign", "sku_bonus", "cap"]),
        "text": st.text(max_size=30),
        "points": WHOLE.map(str),
        "per_minor": st.integers(1, 10_000).map(str),
        "multiplier_pct": st.integers(100, 1000).map(str),
        "tier": st.sampled_from(["basic", "silver", "gold"]),
        "cap": WHOLE.map(str),
        "priority": WHOLE.map(str),
        "mode": st.sampled_from(["", "stack", "replace", "stop"]),
        "skus": NAMES.map(_csv),
        "categories": NAMES.map(_csv),
        "per_unit": st.sampled_from(["", "on"]),
        "stores": NAMES.map(_csv),
        "weekdays": st.lists(st.integers(0, 6), max_size=3).map(lambda d: ",".join(map(str, d))),
        "hours": st.sampled_from(["", "07:00-11:00", "22:00-02:00"]),
        "starts": st.sampled_from(["", "2026-01-01", "2026-06-01T09:30"]),
    }
)
coupon_forms = st.fixed_dictionaries(
    {
        "coupon_id": st.from_regex(r"[A-Z][A-Z0-9-]{0,10}", fullmatch=True),
        "kind": st.sampled_from([k.value for k in cp.CouponKind]),
        "text": st.text(max_size=30),
        "description": st.text(max_size=60),
        "value": st.integers(1, 100).map(str),
        "target": st.sampled_from(["", "basket", "items", "cheapest"]),
        "buy": st.integers(1, 5).map(str),
        "get": st.integers(1, 3).map(str),
        "skus": NAMES.map(_csv),
        "categories": NAMES.map(_csv),
        "min_spend": st.sampled_from(["", "0", "500"]),
        "member_only": st.sampled_from(["", "on"]),
        "exclusive": st.sampled_from(["", "on"]),
        "limit_global": st.sampled_from(["", "1", "100"]),
        "limit_per_member": st.sampled_from(["", "1"]),
        "ends": st.sampled_from(["", "2027-01-01"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(rule_forms)
def test_a_rule_form_that_passes_is_read_by_the_till_and_comes_back_the_same(form: dict[str, str]) -> None:
    try:
        rule_id, doc = documents.rule_document(form)
    except documents.DocumentInvalid as exc:
        assert exc.errors and all(isinstance(e.code, documents.Code) for e in exc.errors)
        return
    ly.parse_program({rule_id: doc})  # the till reads it
    again = documents.rule_document(documents.rule_form(rule_id, doc), doc)
    assert again == (rule_id, doc)


@settings(max_examples=300, deadline=None)
@given(coupon_forms)
def test_a_coupon_form_that_passes_is_read_by_the_till_and_comes_back_the_same(form: dict[str, str]) -> None:
    try:
        coupon_id, doc = documents.coupon_document(form)
    except documents.DocumentInvalid as exc:
        assert exc.errors and all(isinstance(e.code, documents.Code) for e in exc.errors)
        return
    cp.parse_coupon(coupon_id, doc)
    again = documents.coupon_document(documents.coupon_form(coupon_id, doc), doc)
    assert again == (coupon_id, doc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(documents.RULE_MANAGED)), st.text(max_size=20), max_size=12))
def test_any_typed_rule_form_is_a_document_or_named_errors_never_a_crash(form: dict[str, str]) -> None:
    try:
        rule_id, doc = documents.rule_document(form)
    except documents.DocumentInvalid as exc:
        assert exc.errors
    else:
        ly.parse_program({rule_id: doc})


def test_the_preview_quote_is_the_tills_quote() -> None:
    docs = {"coffee": {"kind": "campaign", "multiplier_pct": 200, "categories": ["coffee"]}}
    basket = Basket((Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")))
    ctx = ly.SaleContext(datetime(2026, 12, 2, 10, 0), "S1", "M-1", "basic")
    member = pricing.Member("M-1", "basic", 0)
    coupon = {"kind": "percent_off", "value": 10}
    shown = documents.quote(docs, BASE, basket, ctx, member, {"TEN": coupon})
    till = pricing.price(
        ly.parse_program(docs, BASE), basket, ctx, member, [cp.offer_again(cp.parse_coupon("TEN", coupon))]
    )
    assert (shown.total, shown.discount, shown.payable, shown.points_earned) == (
        till.total,
        till.discount,
        till.payable,
        till.points_earned,
    )
    assert (shown.discount, shown.points_earned) == (210, 18 + 8)
    # A stored document a till would ignore is left out here too, not an error for the whole program.
    broken = documents.quote(docs | {"bad": {"kind": "nonsense"}}, BASE, basket, ctx, member)
    assert broken.points_earned == documents.quote(docs, BASE, basket, ctx, member).points_earned


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("A 1 100", True),
        ("A 1 100 cat\nB 2 0", True),
        ("", False),
        ("A 1", False),
        ("A x 100", False),
        ("A 1 -1", False),
        ("A 1000 1", False),
        ("A 1 1 c extra", False),
    ],
)
def test_a_basket_is_read_or_refused_with_its_code(text: str, ok: bool) -> None:
    if ok:
        assert documents.basket_of(text).lines
    else:
        with pytest.raises(documents.DocumentInvalid) as refused:
            documents.basket_of(text)
        assert refused.value.by_field() == {"basket": "bad_basket"}


@pytest.fixture
def office(hq_url: str) -> Iterator[tuple[HqStore, dict[str, Staff]]]:
    with chain(hq_url) as made:
        yield made


def test_a_change_whose_audit_record_cannot_be_written_stores_nothing(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    """The document and its audit record are one transaction: with the audit log's head row gone (a damaged
    database), the save fails and no document, version or tombstone reaches the tills."""
    hq, made = office
    form = {"rule_id": "cap-9", "kind": "cap", "cap": "100", "reason": "r"}
    version = hq.changes(0).cursor
    hq.db.transact(lambda tx: tx.run("DELETE FROM audit_head"))
    with pytest.raises(AssertionError):
        editors.save(hq, made["market"], editors.RULE, form)
    assert hq.changes(0).cursor == version
    with hq.db.read() as tx:
        assert tx.one("SELECT 1 FROM rule_docs WHERE rule_id = 'cap-9'") is None


def test_two_administrators_disabling_each_other_at_once_leave_one(office: tuple[HqStore, dict[str, Staff]]) -> None:
    hq, _ = office
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def disable(target: str) -> None:
        start.wait()
        try:
            hq.db.transact(lambda tx: staff.disable(tx, target))
            outcomes[target] = "disabled"
        except BackofficeRefused as exc:
            outcomes[target] = exc.code.value

    threads = [threading.Thread(target=disable, args=(t,)) for t in ("admin", "admin2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["disabled", Code.LAST_ADMIN.value], outcomes
    with hq.db.read() as tx:
        left = [s.staff_id for s in staff.listed(tx) if s.role is staff.Role.CHAIN_ADMIN and not s.disabled]
    assert len(left) == 1


def test_the_preview_runs_at_the_stores_wall_clock_when_head_office_knows_its_time_zone(
    office: tuple[HqStore, dict[str, Staff]],
) -> None:
    """A rule of Tokyo's morning hours applies in the preview when it is morning in Tokyo, whatever head
    office's own clock says: the hours are chosen around Tokyo's time now."""
    hq, made = office
    hq.set_store("S-TYO", "Asia/Tokyo")
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    start, end = (tokyo - timedelta(hours=1)).strftime("%H:00"), (tokyo + timedelta(hours=2)).strftime("%H:00")
    form = {"rule_id": "tyo", "kind": "sku_bonus", "points": "7", "skus": "A", "hours": f"{start}-{end}"}
    shown = editors.preview(
        hq, made["market"], editors.RULE, form | {"basket": "A 1 100", "member": "M-S1", "store": "S-TYO"}
    )
    assert shown.edited is not None and shown.current is not None
    assert shown.edited.points_earned == shown.current.points_earned + 7
    outside = f"{(tokyo + timedelta(hours=3)).strftime('%H:00')}-{(tokyo + timedelta(hours=4)).strftime('%H:00')}"
    later = editors.preview(
        hq,
        made["market"],
        editors.RULE,
        form | {"hours": outside, "basket": "A 1 100", "member": "M-S1", "store": "S-TYO"},
    )
    assert later.edited is not None and later.current is not None
    assert later.edited.points_earned == later.current.points_earned


def test_the_command_line_refuses_a_document_the_tills_would_ignore(tmp_path: Path) -> None:
    db = str(tmp_path / "hq.db")
    for kind, doc, field in (
        ("put-rule", {"rule_id": "r1", "kind": "campaign", "multiplier_pct": -1}, "multiplier_pct"),
        ("put-rule", {"rule_id": "r2", "kind": "nonsense"}, "kind"),
        ("put-coupon", {"coupon_id": "C1", "kind": "percent_off", "value": 120}, "kind"),
        ("put-coupon", {"coupon_id": "C2", "kind": "amount_off", "value": "ten"}, "value"),
    ):
        path = tmp_path / "doc.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        done = command("hq", kind, str(path), "--db", db)
        assert done.returncode == 1 and f"{field}: till_refuses" in done.stdout + done.stderr, (doc, done.stdout)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"rule_id": "r3", "kind": "cap", "cap": 10}), encoding="utf-8")
    assert command("hq", "put-rule", str(good), "--db", db).returncode == 0
    hq = HqStore(db)
    try:
        with hq.db.read() as tx:
            assert [r[0] for r in tx.all("SELECT rule_id FROM rule_docs")] == ["r3"]
            assert tx.all("SELECT coupon_id FROM coupons") == []
    finally:
        hq.close()
