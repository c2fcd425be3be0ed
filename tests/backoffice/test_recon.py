"""The reconciliation and fleet pages over HTTP against a real head-office server on 127.0.0.1, on SQLite and
PostgreSQL. Items are raised by ingest from pushed entries, as tills push them: the groups count and sum
them, the filters narrow them, the CSV export is the SQL's rows, formula-safe; a store manager neither sees
nor settles another store's items or tills (page and direct POST); the auditor never settles; a POST
without the session's CSRF token or from another origin changes nothing; settling (one item, a group, and
through the admin API) is in the audit log; the fleet page lists what is wrong first."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from hq import audit, fleet
from hq.api.server import ServerHandle
from hq.backoffice.staff import Staff
from hq.store import HqStore
from hq.web import safe_cell
from sync.protocol import DeviceHealth, EodReport, KindTotals, TillHealth, WireEntry
from tests.backoffice.test_web import browser, code_of, signed_in, tokenless
from tests.fixtures import entries

Office = tuple[HqStore, dict[str, Staff], ServerHandle]
STORE_OF = {"T1": "S1", "T2": "S2"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def push(hq: HqStore, terminal: str, body: dict[str, Any], txn: str | None = None) -> str:
    """One entry pushed as the till pushes it; its transaction id."""
    seq = len(hq.entries(terminal)) + 1
    txn_id = txn or f"{terminal}-{seq}-txn"
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    entry = WireEntry(terminal_id=terminal, seq=seq, txn_id=txn_id, kind="sale", payload=body, created_at=made)
    assert hq.ingest(terminal, [entry]).acked_seq == seq
    return txn_id


def flagged(hq: HqStore, terminal: str, total: int, txn: str | None = None) -> str:
    """A sale of a member head office does not know: an open ``unknown_member`` item (and nothing else); its
    id."""
    store_id = STORE_OF.get(terminal) or hq.store_of(terminal) or ""
    txn_id = push(hq, terminal, entries.sale("M-GHOST", total, store_id=store_id, earned=total // 100), txn)
    (found,) = [i for i in hq.items() if i.txn_id == txn_id]
    assert found.reason == "unknown_member" and not found.quarantined
    return found.item_id


def held(hq: HqStore) -> str:
    """A sale of T1 naming store S2: quarantined (``wrong_store``); its item id."""
    txn = push(hq, "T1", entries.sale("M-S1", 700, store_id="S2", earned=7))
    found = [i for i in hq.items() if i.txn_id == txn and i.reason == "wrong_store"]
    assert found and found[0].quarantined
    return found[0].item_id


def state_of(hq: HqStore, item_id: str) -> str:
    return next(i.state.value for i in hq.items() if i.item_id == item_id)


def audited(hq: HqStore, action: str) -> list[audit.Record]:
    with hq.db.read() as tx:
        return [r for r in audit.recent(tx, 1000) if r.action == action]


def groups_of(html: str) -> list[tuple[str, str, str, str, int, str]]:
    """(reason, till, day, state, count, amount) of each group row of a page."""
    rows = re.findall(
        r'<tr data-reason="([^"]+)" data-till="([^"]+)" data-day="([^"]+)" data-state="([^"]+)">.*?'
        r'class="count">(\d+)</td>\s*<td class="amount">([^<]+)</td>',
        html,
        re.S,
    )
    return [(r, t, d, s, int(n), a) for r, t, d, s, n, a in rows]


def test_groups_count_and_sum_their_items_and_the_filters_narrow_them(office: Office) -> None:
    hq, _, server = office
    flagged(hq, "T1", 1200)
    flagged(hq, "T1", 800)
    flagged(hq, "T2", 500)
    held(hq)
    admin, _ = signed_in(server.url, "admin")
    page = admin.get("/backoffice/recon")
    assert page.status_code == 200 and 'data-page="recon"' in page.text
    shown = {(r, t, s, n, a) for r, t, _, s, n, a in groups_of(page.text)}
    assert shown == {
        ("unknown_member", "T1", "open", 2, "20.00"),
        ("unknown_member", "T2", "open", 1, "5.00"),
        ("wrong_store", "T1", "open", 1, "7.00"),
    }
    fragment = admin.get("/backoffice/recon/results", params={"kind": "unknown_member", "store": "S1"})
    assert "<html" not in fragment.text  # the htmx fragment alone
    assert [(t, n) for _, t, _, _, n, _ in groups_of(fragment.text)] == [("T1", 2)]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert groups_of(admin.get("/backoffice/recon/results", params={"to": "2000-01-01"}).text) == []
    assert len(groups_of(admin.get("/backoffice/recon/results", params={"from": today, "to": today}).text)) == 3
    assert groups_of(admin.get("/backoffice/recon/results", params={"state": "settled_manual"}).text) == []
    items = admin.get("/backoffice/recon/items", params={"kind": "unknown_member", "till": "T1"})
    assert len(re.findall(r'<tr data-id="', items.text)) == 2
    for bad in (
        {"kind": "nonsense"},
        {"state": "closed"},
        {"from": "yesterday"},
        {"from": "2026-02-02", "to": "2026-01-01"},
    ):
        reply = admin.get("/backoffice/recon", params=bad)
        assert (reply.status_code, code_of(reply)) == (422, "bad_filter"), bad


def test_the_csv_export_is_the_sql_rows_and_no_cell_is_a_formula(office: Office) -> None:
    hq, _, server = office
    hq.add_terminal("=cmd|' /C calc'!A0", "S1", "formula-till-token")
    flagged(hq, "=cmd|' /C calc'!A0", 900, "+SUM(A1;A9)")  # a till id never holds a colon
    flagged(hq, "T1", 1200, "@coupon")
    flagged(hq, "T2", 300, "-2+3")
    flagged(hq, "T2", 400, 'a,"b"\nc')
    admin, _ = signed_in(server.url, "admin")
    reply = admin.get("/backoffice/recon/export.csv", params={"state": "any"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    with hq.db.read() as tx:
        sql = tx.all(
            "SELECT i.item_id, i.terminal_id, i.store_id, i.reason, i.state, i.day, j.total, j.points, i.txn_id "
            "FROM recon_items i LEFT JOIN journal j ON j.txn_id = i.txn_id ORDER BY i.item_id"
        )
    assert len(rows) == len(sql) == 4

    def plain(cell: str) -> str:
        return cell[1:] if cell.startswith("'") else cell

    exported = sorted(
        (plain(r["item_id"]), plain(r["terminal_id"]), r["store_id"], r["reason"], r["state"], r["day"])
        + (int(r["total"]), int(r["points"]), plain(r["txn_id"]))
        for r in rows
    )
    assert exported == sorted(tuple(str(v) if i < 6 else v for i, v in enumerate(row)) for row in sql)
    for row in rows:
        for column in ("item_id", "terminal_id", "txn_id", "detail", "note", "settled_by"):
            assert not row[column].startswith(("=", "+", "-", "@")), (column, row[column])
    formula = next(r for r in rows if "calc" in r["terminal_id"])
    assert (formula["terminal_id"], formula["txn_id"]) == ("'=cmd|' /C calc'!A0", "'+SUM(A1;A9)")
    assert {r["txn_id"][:2] for r in rows} == {"'+", "'@", "'-", "a,"}
    assert 'a,"b"\nc' in {r["txn_id"] for r in rows}  # quoted by the CSV library, read back whole
    only = list(csv.DictReader(io.StringIO(admin.get("/backoffice/recon/export.csv", params={"till": "T2"}).text)))
    assert [r["terminal_id"] for r in only] == ["T2", "T2"]


def test_a_store_manager_neither_sees_nor_settles_another_stores_items_or_tills(office: Office) -> None:
    hq, _, server = office
    mine, theirs = flagged(hq, "T1", 1000), flagged(hq, "T2", 1000)
    hq.put_health("T1", TillHealth(version="1", protocol=2, started_at="2026-01-01T00:00:00Z", pending=0), None)
    hq.put_health("T2", TillHealth(version="1", protocol=2, started_at="2026-01-01T00:00:00Z", pending=0), None)
    manager, csrf = signed_in(server.url, "manager")
    listed = manager.get("/backoffice/recon", params={"state": "any"})
    assert {t for _, t, _, _, _, _ in groups_of(listed.text)} == {"T1"}
    assert "T2" not in tokenless(listed.text)  # nor in the filter's choices
    assert manager.get("/backoffice/recon/item", params={"id": mine}).status_code == 200
    for path, params in (
        ("/backoffice/recon/item", {"id": theirs}),
        ("/backoffice/recon", {"store": "S2"}),
        ("/backoffice/recon/results", {"till": "T2"}),
        ("/backoffice/recon/items", {"till": "T2"}),
        ("/backoffice/recon/export.csv", {"till": "T2"}),
        ("/backoffice/recon/eod", {"store": "S2"}),
    ):
        reply = manager.get(path, params=params)
        assert (reply.status_code, code_of(reply)) == (403, "forbidden"), path
        assert theirs not in reply.text
    exported = list(csv.DictReader(io.StringIO(manager.get("/backoffice/recon/export.csv").text)))
    assert {r["store_id"] for r in exported} == {"S1"}
    fleet_page = manager.get("/backoffice/fleet").text
    assert 'data-till="T1"' in fleet_page and 'data-till="T2"' not in fleet_page

    reply = manager.post("/backoffice/recon/settle", data={"csrf": csrf, "item_id": theirs, "note": "mine now"})
    assert (reply.status_code, code_of(reply)) == (403, "forbidden")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    group = {"csrf": csrf, "till": "T2", "day": day, "kind": "unknown_member", "note": "all of them"}
    reply = manager.post("/backoffice/recon/settle-group", data=group)
    assert (reply.status_code, code_of(reply)) == (403, "forbidden")
    assert state_of(hq, theirs) == "open" and audited(hq, "settle_item") == []
    assert audited(hq, "settle_item_group") == []

    reply = manager.post("/backoffice/recon/settle", data={"csrf": csrf, "item_id": mine, "note": "paid in cash"})
    assert reply.status_code == 303 and state_of(hq, mine) == "settled_manual"


def test_the_auditor_reads_every_page_and_never_settles(office: Office) -> None:
    hq, _, server = office
    item = flagged(hq, "T2", 1000)
    auditor, csrf = signed_in(server.url, "auditor")
    for path in ("/backoffice/recon", "/backoffice/recon/eod", "/backoffice/fleet", "/backoffice/recon/export.csv"):
        assert auditor.get(path).status_code == 200, path
    page = auditor.get("/backoffice/recon/item", params={"id": item})
    assert page.status_code == 200 and 'id="settle"' not in page.text
    assert 'class="inline settle-group"' not in auditor.get("/backoffice/recon").text
    reply = auditor.post("/backoffice/recon/settle", data={"csrf": csrf, "item_id": item, "note": "looks fine"})
    assert (reply.status_code, code_of(reply)) == (403, "forbidden")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    group = {"csrf": csrf, "till": "T2", "day": day, "kind": "unknown_member", "note": "fine"}
    assert code_of(auditor.post("/backoffice/recon/settle-group", data=group)) == "forbidden"
    assert state_of(hq, item) == "open" and audited(hq, "settle_item") == []
    marketing, _ = signed_in(server.url, "market")
    assert code_of(marketing.get("/backoffice/recon")) == "forbidden"
    assert code_of(marketing.get("/backoffice/fleet")) == "forbidden"


def test_settling_needs_the_pages_csrf_token_and_origin_and_is_audited(office: Office) -> None:
    hq, _, server = office
    item = flagged(hq, "T1", 1000)
    finance, csrf = signed_in(server.url, "finance")
    for data, headers, code in (
        ({"item_id": item, "note": "n"}, {}, "bad_csrf"),
        ({"item_id": item, "note": "n", "csrf": "not-the-token"}, {}, "bad_csrf"),
        ({"item_id": item, "note": "n", "csrf": csrf}, {"Origin": "http://evil.example"}, "bad_origin"),
        ({"item_id": item, "note": "n", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}, "bad_origin"),
    ):
        reply = finance.post("/backoffice/recon/settle", data=data, headers=headers)
        assert (reply.status_code, code_of(reply)) == (403, code), (data, headers)
    other, other_csrf = signed_in(server.url, "admin")  # another session's token is not this one's
    reply = finance.post("/backoffice/recon/settle", data={"item_id": item, "note": "n", "csrf": other_csrf})
    assert code_of(reply) == "bad_csrf" and other is not finance
    assert state_of(hq, item) == "open" and audited(hq, "settle_item") == []

    note = "refunded the customer at the desk"
    reply = finance.post("/backoffice/recon/settle", data={"item_id": item, "note": note, "csrf": csrf})
    assert reply.status_code == 303 and reply.headers["location"].endswith("&done=done")
    settled = next(i for i in hq.items() if i.item_id == item)
    assert (settled.state.value, settled.settled_by, settled.note) == ("settled_manual", "finance", note)
    (record,) = audited(hq, "settle_item")
    assert (record.actor, record.target, record.reason) == ("finance", item, note)
    assert record.details["terminal_id"] == "T1" and record.details["reason"] == "unknown_member"
    assert audit.verify(hq.db).ok
    page = finance.get(reply.headers["location"])
    assert 'data-state="settled_manual"' in page.text and 'id="notice"' in page.text
    assert item not in finance.get("/backoffice/recon/items").text  # no longer among the open ones


def test_what_cannot_be_settled_is_refused_with_its_code_and_nothing_changes(office: Office) -> None:
    hq, _, server = office
    item, quarantined = flagged(hq, "T1", 1000), held(hq)
    admin, csrf = signed_in(server.url, "admin")
    settle = {"csrf": csrf, "item_id": item}
    for data, status, code in (
        (settle | {"note": "   "}, 422, "note_required"),
        (settle | {"note": "x" * 201}, 422, "note_required"),
        (settle | {"item_id": "no-such-item", "note": "n"}, 404, "not_found"),
        (settle | {"item_id": quarantined, "note": "n"}, 409, "held_in_quarantine"),
    ):
        reply = admin.post("/backoffice/recon/settle", data=data)
        assert (reply.status_code, code_of(reply)) == (status, code), data
    assert state_of(hq, item) == state_of(hq, quarantined) == "open"
    page = admin.get("/backoffice/recon/item", params={"id": quarantined})
    assert 'id="held"' in page.text and 'id="settle"' not in page.text
    assert admin.post("/backoffice/recon/settle", data=settle | {"note": "first"}).status_code == 303
    again = admin.post("/backoffice/recon/settle", data=settle | {"note": "second"})
    assert (again.status_code, code_of(again)) == (409, "already_settled")
    assert next(i for i in hq.items() if i.item_id == item).note == "first"
    assert len(audited(hq, "settle_item")) == 1
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for group, code in (
        ({"till": "T1", "day": "today", "kind": "unknown_member"}, "bad_filter"),
        ({"till": "T1", "day": day, "kind": "no_such_kind"}, "bad_filter"),
        ({"till": "T9", "day": day, "kind": "unknown_member"}, "not_found"),
    ):
        reply = admin.post("/backoffice/recon/settle-group", data=group | {"csrf": csrf, "note": "n"})
        assert code_of(reply) == code, group


def test_a_group_settles_its_open_items_at_once_audited_and_held_ones_stay(office: Office) -> None:
    hq, _, server = office
    first, second, elsewhere = flagged(hq, "T1", 100), flagged(hq, "T1", 200), flagged(hq, "T2", 1)
    quarantined = held(hq)
    finance, csrf = signed_in(server.url, "finance")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    group = {"till": "T1", "day": day, "kind": "unknown_member", "note": "coupon printed in error", "csrf": csrf}
    reply = finance.post("/backoffice/recon/settle-group", data=group | {"f_store": "S1", "f_state": "open"})
    assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/recon?store=S1&state=open&settled=2"
    assert [state_of(hq, i) for i in (first, second, elsewhere)] == ["settled_manual", "settled_manual", "open"]
    (record,) = audited(hq, "settle_item_group")
    assert record.actor == "finance" and record.details["settled"] == 2 and record.reason == "coupon printed in error"
    wrong_store = {"till": "T1", "day": day, "kind": "wrong_store", "note": "n", "csrf": csrf}
    assert finance.post("/backoffice/recon/settle-group", data=wrong_store).status_code == 303
    assert state_of(hq, quarantined) == "open"  # released or rejected one by one
    assert len(audited(hq, "settle_item_group")) == 1  # nothing settled, nothing recorded
    assert "2 items settled." in finance.get(reply.headers["location"]).text
    for path in ("/backoffice/recon", "/backoffice/recon/items"):  # a count edited in the address says nothing
        for edited in ("²", "9" * 5000):
            shown = finance.get(path, params={"settled": edited})
            assert shown.status_code == 200 and "items settled" not in shown.text, (path, edited[:3])


def test_ticked_items_settle_together_with_one_note_all_or_none(office: Office) -> None:
    hq, _, server = office
    first, second, elsewhere = flagged(hq, "T1", 100), flagged(hq, "T1", 200), flagged(hq, "T2", 300)
    quarantined = held(hq)
    finance, csrf = signed_in(server.url, "finance")

    def pick(client: Any, token: str, *ids: str, note: str = "checked with the store", **extra: str) -> Any:
        body = [("csrf", token), ("note", note), *(("pick", i) for i in ids), *extra.items()]
        return client.post("/backoffice/recon/settle-picked", content=urlencode(body), headers=FORM)

    # one pick naming an item held in quarantine settles nothing
    refused = pick(finance, csrf, first, quarantined)
    assert refused.status_code == 409 and code_of(refused) == "held_in_quarantine"
    assert [state_of(hq, i) for i in (first, quarantined)] == ["open", "open"]
    # a store manager's pick with another store's item: forbidden, nothing settled
    manager, token = signed_in(server.url, "manager")
    assert code_of(pick(manager, token, second, elsewhere)) == "forbidden"
    assert state_of(hq, second) == "open"
    # no pick, no note, too many: refused with their codes
    assert code_of(pick(finance, csrf)) == "bad_filter"
    assert code_of(pick(finance, csrf, first, note=" ")) == "note_required"
    assert code_of(pick(finance, csrf, *(f"R-{n}" for n in range(501)))) == "bad_filter"
    assert len(audited(hq, "settle_item")) == 0
    # two items of two tills, with the filters they were picked under
    done = pick(finance, csrf, first, elsewhere, f_state="open", f_kind="unknown_member")
    assert done.status_code == 303
    assert done.headers["location"] == "/backoffice/recon/items?kind=unknown_member&state=open&settled=2"
    assert [state_of(hq, i) for i in (first, second, elsewhere)] == ["settled_manual", "open", "settled_manual"]
    records = audited(hq, "settle_item")
    assert sorted(r.target for r in records) == sorted([first, elsewhere])
    assert {(r.actor, r.reason) for r in records} == {("finance", "checked with the store")}
    assert "2 items settled." in finance.get(done.headers["location"]).text
    # the same pick again (a replayed form): already settled, nothing more
    assert code_of(pick(finance, csrf, first, elsewhere)) == "already_settled"
    assert len(audited(hq, "settle_item")) == 2
    # without the page's token nothing at all
    assert pick(finance, "forged", second).status_code == 403 and state_of(hq, second) == "open"
    # an item head office settled itself since the page was read (its member arrived) is not settled again
    hq.upsert_member("M-GHOST", "Late Ghost", "basic", 0)
    assert state_of(hq, second) == "settled_auto"
    assert code_of(pick(finance, csrf, second)) == "already_settled" and state_of(hq, second) == "settled_auto"


def test_settling_through_the_admin_api_takes_the_same_audited_path(office: Office) -> None:
    hq, _, server = office
    item = flagged(hq, "T1", 1000)
    token = hq.add_admin("ops-mio")
    reply = httpx.post(
        f"{server.url}/v1/admin/items/{item}/settle",
        json={"note": "checked by phone"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        trust_env=False,
    )
    assert reply.status_code == 200, reply.text
    (record,) = audited(hq, "settle_item")
    assert (record.actor, record.target, record.reason) == ("ops-mio", item, "checked by phone")


def test_end_of_day_per_store_and_day(office: Office) -> None:
    hq, _, server = office
    day = time.strftime("%Y-%m-%d", time.gmtime())
    sale = KindTotals(count=1, total=2500, points=25, stored_value=0)
    assert hq.eod(EodReport(terminal_id="T1", day=day, first_seq=1, last_seq=1, totals={"sale": sale})).status == (
        "complete"
    )
    assert hq.eod(EodReport(terminal_id="T2", day=day, first_seq=1, last_seq=3, totals={})).status == "incomplete"
    admin, _ = signed_in(server.url, "admin")
    page = admin.get("/backoffice/recon/eod", params={"from": day, "to": day}).text
    assert f'<tr data-store="S1" data-day="{day}" data-status="complete">' in page
    assert f'<tr data-store="S2" data-day="{day}" data-status="incomplete">' in page
    assert page.index('data-store="S1"') < page.index('data-store="S2"')  # by store within a day
    assert 'data-till="T2" data-status="incomplete">T2: incomplete; Missing entries 2-3' in page
    long_ago = (dt.date.today() - dt.timedelta(days=20)).isoformat()
    hq.eod(EodReport(terminal_id="T1", day=long_ago, first_seq=1, last_seq=1, totals={}))
    assert f'data-day="{long_ago}"' not in admin.get("/backoffice/recon/eod").text  # the last 14 days
    assert f'data-day="{long_ago}"' in admin.get("/backoffice/recon/eod", params={"from": long_ago}).text
    manager, _ = signed_in(server.url, "manager")
    mine = manager.get("/backoffice/recon/eod").text
    assert 'data-store="S1"' in mine and 'data-store="S2"' not in mine


def health(**changes: Any) -> TillHealth:
    base: dict[str, Any] = {"version": "1.4.0", "protocol": 2, "started_at": "2026-01-01T00:00:00Z", "pending": 0}
    return TillHealth.model_validate(base | changes)


def test_the_fleet_lists_what_is_wrong_first(office: Office) -> None:
    hq, _, server = office
    for terminal in ("T3-ok", "T4-reader", "T5-silent", "T6-revoked", "T7-clock"):
        hq.add_terminal(terminal, "S1", f"{terminal}-token")
    readers = [DeviceHealth(name="ACR122U", state="connected")]
    hq.put_health("T3-ok", health(readers=readers), None)
    hq.put_health("T4-reader", health(readers=[DeviceHealth(name="ACR122U", state="removed")]), None)
    hq.put_health("T7-clock", health(readers=readers), None)
    hq.put_health("T1", health(readers=readers, pending=3, last_error="head office unreachable"), None)
    for terminal in ("T1", "T3-ok", "T4-reader", "T6-revoked"):
        hq.touch(terminal)  # heard from just now (a push or a pull)
    hq.touch("T7-clock", 400.0)
    hq.revoke_terminal("T6-revoked")
    admin, _ = signed_in(server.url, "admin")
    page = admin.get("/backoffice/fleet").text
    order = re.findall(r'<tr data-till="([^"]+)" data-problems="([^"]*)">', page)
    assert order == [
        ("T5-silent", "offline never_reported"),  # never heard of
        ("T4-reader", "reader_missing"),
        ("T2", "never_reported"),  # it pushed its sale, never its health
        ("T7-clock", "clock_wrong"),
        ("T1", "last_error"),
        ("T6-revoked", "revoked"),
        ("T3-ok", ""),
    ], order
    assert page.index("head office unreachable") > page.index('data-till="T7-clock"')
    t1 = page[page.index('data-till="T1"') :]
    assert "Acknowledged #1, held #1" in t1[: t1.index("</tr>")]  # the sale the chain pushed for it


def test_problems_are_the_alert_rules_limits() -> None:
    row = {"terminal_id": "T", "silent_seconds": 10.0, "reported_at": "x", "readers": [], "clock_offset": 0.0}
    assert fleet.problems(row) == []
    cases = {
        "offline": {"silent_seconds": fleet.SILENT_S + 1},
        "backlog_old": {"backlog_seconds": fleet.BACKLOG_S + 1},
        "clock_wrong": {"clock_offset": -fleet.CLOCK_S - 1},
        "disk_low": {"free_disk_bytes": fleet.LOW_DISK_BYTES - 1},
        "loop_crashed": {"loop_crashes": 1},
        "reader_missing": {"readers": [{"name": "r", "state": "removed"}]},
        "never_reported": {"reported_at": None},
        "revoked": {"revoked": True, "silent_seconds": None, "reported_at": None},
    }
    for code, change in cases.items():
        assert [p.code for p in fleet.problems(row | change)] == [code], code
    at_limits = row | {"silent_seconds": fleet.SILENT_S, "clock_offset": fleet.CLOCK_S, "free_disk_bytes": 500_000_000}
    assert fleet.problems(at_limits) == []
    assert set(fleet.PROBLEMS) == set(cases) | {"last_error"}


def test_every_page_refuses_a_browser_without_a_session(office: Office) -> None:
    _, _, server = office
    client = browser(server.url)
    for path in (
        "/backoffice/recon",
        "/backoffice/recon/export.csv",
        "/backoffice/recon/item?id=x",
        "/backoffice/fleet",
    ):
        reply = client.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/sign-in", path
    reply = client.post("/backoffice/recon/settle", data={"item_id": "x", "note": "n"})
    assert (reply.status_code, code_of(reply)) == (401, "sign_in_required")


def test_a_replayed_or_oversized_settle_changes_nothing_more(office: Office) -> None:
    hq, _, server = office
    first, second = flagged(hq, "T1", 100), flagged(hq, "T1", 200)
    finance, csrf = signed_in(server.url, "finance")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    group = {"till": "T1", "day": day, "kind": "unknown_member", "note": "written off", "csrf": csrf}
    assert finance.post("/backoffice/recon/settle-group", data=group).headers["location"].endswith("settled=2")
    replayed = finance.post("/backoffice/recon/settle-group", data=group)
    assert replayed.status_code == 303 and replayed.headers["location"].endswith("settled=0")
    assert len(audited(hq, "settle_item_group")) == 1
    assert {i.settled_at for i in hq.items() if i.item_id in (first, second)} != {None}
    third = flagged(hq, "T1", 300)
    huge = {"item_id": third, "note": "n" * (200 * 1024), "csrf": csrf}  # beyond the form's cap: read as empty
    reply = finance.post("/backoffice/recon/settle", data=huge)
    assert (reply.status_code, code_of(reply)) == (403, "bad_csrf")
    garbled = finance.post(
        "/backoffice/recon/settle",
        content=b"item_id=" + third.encode() + b"&note=%FF%FE&csrf=" + csrf.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert garbled.status_code == 303  # undecodable bytes are replaced, the note is still one
    assert state_of(hq, third) == "settled_manual"


def test_a_settle_whose_audit_record_cannot_be_written_settles_nothing(office: Office) -> None:
    hq, _, server = office
    item = flagged(hq, "T1", 100)
    finance, csrf = signed_in(server.url, "finance")
    with hq.db.write() as tx:  # the audit log's head row damaged: no record can be appended
        head = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        tx.run("DELETE FROM audit_head WHERE id = 1")
    try:
        reply = finance.post("/backoffice/recon/settle", data={"item_id": item, "note": "n", "csrf": csrf})
        assert reply.status_code == 500
        assert state_of(hq, item) == "open"  # the settle and its record are one transaction
    finally:
        assert head is not None
        with hq.db.write() as tx:
            tx.run("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", [head[0], head[1]])
    finance, csrf = signed_in(server.url, "finance")  # the server closed the connection that failed
    assert (
        finance.post("/backoffice/recon/settle", data={"item_id": item, "note": "n", "csrf": csrf}).status_code == 303
    )
    assert audit.verify(hq.db).ok


def test_the_report_csv_is_formula_safe_too() -> None:
    from hq import reconcile

    row = dict.fromkeys(reconcile.REPORT_COLUMNS, 0) | {"terminal_id": "=1+1", "open_reasons": {}, "eod": "-x"}
    (parsed,) = csv.DictReader(io.StringIO(reconcile.report_csv([row])))
    assert (parsed["terminal_id"], parsed["eod"], parsed["total"]) == ("'=1+1", "'-x", "0")
    assert safe_cell(-5) == -5 and safe_cell("@SUM") == "'@SUM" and safe_cell(None) == ""


def test_the_filter_is_what_the_query_says_limited_to_a_managers_stores(office: Office) -> None:
    from hq.backoffice import recon
    from hq.reconcile import ItemFilter, where_of

    _, made, _ = office
    manager, finance = made["manager"], made["finance"]
    f = recon.filter_of(manager, {"kind": "unknown_member", "till": "T1", "from": "2026-01-01", "to": "2026-01-31"})
    assert f == ItemFilter("unknown_member", None, "T1", "2026-01-01", "2026-01-31", "open", frozenset({"S1"}))
    assert recon.query_of(f) == {
        "kind": "unknown_member",
        "till": "T1",
        "from": "2026-01-01",
        "to": "2026-01-31",
        "state": "open",
    }
    assert recon.filter_of(finance, {"state": "any"}).state is None and recon.filter_of(finance, {}).stores is None
    assert where_of(ItemFilter(stores=frozenset())) == ("1 = 1 AND 1 = 0", [])  # no stores: nothing
    today = dt.date(2026, 3, 20)
    assert recon.eod_window(ItemFilter(), today).day_from == "2026-03-07"  # 14 days, today included
    assert recon.eod_window(ItemFilter(day_to="2026-01-01"), today) == ItemFilter(day_to="2026-01-01")
