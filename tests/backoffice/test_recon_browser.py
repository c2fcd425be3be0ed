"""The reconciliation and fleet pages in Debian's Chromium against a real head-office server on 127.0.0.1,
on SQLite and PostgreSQL, fed by two real tills (their own Store and SyncClient): both sell offline to one
member with one single-use coupon, sync, and the items head office raises are settled by finance in the
browser with a note, recorded in the audit log and gone from the open list. A store manager neither opens
nor settles another store's item (the page and a direct POST with its own session's token); the auditor
reads without a form to settle; markup in a till id, an item's detail, a reader's name, an error and a note
is shown as text and never runs; the pages work at 1280 x 800 and a tablet's width, in three languages."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

from hq import audit
from hq.api.server import ServerHandle
from hq.backoffice.staff import Staff
from hq.store import HqStore
from sync.client import SyncClient
from sync.protocol import DeviceHealth, TillHealth, WireEntry
from terminal.credentials import CardProof, Trust
from terminal.identity import Identified
from terminal.model import Basket, Card, Line
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import chromium
from tests.backoffice.test_browser import (
    DESKTOP,
    MADE_OF_MARKUP,
    MARKUP,
    TABLET,
    open_page,
    sign_in,
    well_formed,
)
from tests.fixtures import entries

CARD = "ab" * 32
COUPON = {"coupon_id": "C-ONCE", "member_id": "M-OFF", "limits": {"global": 1}, "kind": "amount_off", "value": 300}
TILLS = {"T-A": "S1", "T-B": "S2"}  # the store manager of the chain is S1's


def offline_sale(till: Store, terminal_id: str, store_id: str, n: int) -> None:
    """The member taps a secure card and pays 800 points and the single-use coupon; the till's own service
    records it while head office is out of reach."""
    at = dt.datetime.now().astimezone().timestamp() + n
    service = Service(till, terminal_id, clock=lambda: at, store_id=store_id)
    member = till.member("M-OFF")
    assert member is not None
    tap = Identified(member, Card(CARD, "M-OFF"), CardProof(Trust.SUN, 10 + n), CARD)
    quote = service.quote("M-OFF", Basket((Line("ITEM", 1, 2400),)), ["C-ONCE"], 800)
    service.commit(quote, tapped=tap)


def two_offline_tills(hq: HqStore, url: str, tmp_path: Path) -> dict[str, str]:
    """Two real tills pull, go offline, each sell with the same coupon and points, then sync, A first.
    Returns the tills' tokens."""
    tokens = {t: hq.add_terminal(t, s) for t, s in TILLS.items()}
    hq.upsert_member("M-OFF", "Offline Olga", "gold", 1000)
    hq.upsert_card(CARD, "M-OFF")
    hq.put_coupon(COUPON)
    tills = {}
    for n, (terminal_id, store_id) in enumerate(TILLS.items()):
        till = Store.open(tmp_path / terminal_id / "terminal.db")
        client = SyncClient(till, terminal_id, url, tokens[terminal_id])
        for _ in range(100):  # rules, the member, the card and the coupon; then the network goes
            if not client.pull_once():
                break
        client.close()
        offline_sale(till, terminal_id, store_id, n)  # approved at both: each saw 1000 points, an unused coupon
        tills[terminal_id] = till
    for terminal_id, till in tills.items():
        client = SyncClient(till, terminal_id, url, tokens[terminal_id])
        client.sync_once()
        client.close()
        assert till.pending_count() == 0
        till.close()
    return tokens


def harmless(page: Any, where: str, *expected: str) -> None:
    found = page.evaluate(MADE_OF_MARKUP)
    assert (found["scripts"], found["images"], found["svgs"]) == (0, 0, 0), where
    for text in expected:
        assert text in found["text"], (where, text)


def test_finance_settles_an_item_two_offline_tills_raised_and_the_audit_log_has_it(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], tmp_path: Path
) -> None:
    hq, _, server = office
    two_offline_tills(hq, server.url, tmp_path)
    raised = {(i.reason.value, i.terminal_id, i.store_id, i.state.value) for i in hq.items() if i.terminal_id in TILLS}
    assert raised == {("coupon_overused", "T-B", "S2", "open"), ("points_overspent", "T-B", "S2", "open")}
    item = next(i for i in hq.items() if i.reason == "coupon_overused")
    note = 'customer paid 3.00 back <img src=x onerror=alert("n")>'
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.click('header nav a[href="/backoffice/recon"]')
        page.wait_for_selector("body[data-page=recon]")
        well_formed(page, DESKTOP["width"])
        group = "#groups tr[data-reason=coupon_overused][data-till=T-B]"
        assert page.inner_text(f"{group} .count") == "1"
        assert page.locator("#groups tr").count() >= 2
        page.wait_for_load_state("load")  # htmx has bound the form
        page.select_option("#f-kind", "coupon_overused")  # the groups update in place (htmx)
        page.locator("#groups tr[data-reason=points_overspent]").wait_for(state="detached")
        assert page.locator("#groups tbody tr").count() == 1
        assert "kind=coupon_overused" in (page.get_attribute("#export", "href") or "")
        page.click(f"{group} a.group-items")
        page.wait_for_selector("body[data-page=recon-items]")
        page.click(f"#items tr[data-id='{item.item_id}'] a")
        page.wait_for_selector("body[data-page=recon-item]")
        assert page.inner_text("#item-id") == item.item_id
        shown = page.inner_text("#entries")
        assert "T-A" in shown and "T-B" in shown  # both tills' sales of the one coupon
        well_formed(page, DESKTOP["width"])
        page.fill("#settle-note", note)
        page.click("#settle-submit")
        page.wait_for_selector("#notice")
        assert page.get_attribute("#item-state", "data-state") == "settled_manual"
        assert note in page.inner_text("#item-note") and page.locator("#settle").count() == 0
        harmless(page, "settled item", note)

        page.goto(f"{server.url}/backoffice/recon")
        page.wait_for_selector("#groups tr[data-reason=points_overspent]")
        assert page.locator("#groups tr[data-reason=coupon_overused]").count() == 0  # it left the open list
        page.goto(f"{server.url}/backoffice/audit")
        assert "settle_item" in page.inner_text("#records") and note in page.inner_text("#records")
        assert page.get_attribute("#chain", "data-ok") == "1"
        harmless(page, "audit", note)
        watch.clean()
        page.context.close()

    settled = next(i for i in hq.items() if i.item_id == item.item_id)
    assert (settled.state.value, settled.settled_by, settled.note) == ("settled_manual", "finance", note)
    with hq.db.read() as tx:
        (record,) = [r for r in audit.recent(tx, 100) if r.action == "settle_item"]
    assert (record.actor, record.target, record.reason) == ("finance", item.item_id, note)
    assert [i.item_id for i in hq.items(state="open") if i.terminal_id in TILLS] == [
        i.item_id for i in hq.items() if i.reason == "points_overspent"
    ]


def test_a_store_manager_and_the_auditor_cannot_settle_in_the_browser(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], tmp_path: Path
) -> None:
    hq, _, server = office
    two_offline_tills(hq, server.url, tmp_path)
    item = next(i for i in hq.items() if i.reason == "coupon_overused")  # T-B's, store S2
    with chromium() as browser:
        page, watch = open_page(browser, TABLET)
        sign_in(page, server.url, "manager")  # store S1 only
        page.click('header nav a[href="/backoffice/recon"]')
        page.wait_for_selector("body[data-page=recon]")
        assert "T-B" not in page.inner_text("main")
        well_formed(page, TABLET["width"])
        page.goto(f"{server.url}/backoffice/recon/item?id={item.item_id}")
        assert page.get_attribute("#error", "data-code") == "forbidden"
        assert "T-B" not in page.inner_text("main")
        page.goto(f"{server.url}/backoffice/fleet")
        assert page.locator("#tills tr[data-till=T-A]").count() == 1
        assert page.locator("#tills tr[data-till=T-B]").count() == 0
        well_formed(page, TABLET["width"])
        csrf = page.get_attribute("form[action='/backoffice/sign-out'] input[name=csrf]", "value")
        for path, form in (
            ("/backoffice/recon/settle", {"item_id": item.item_id}),
            ("/backoffice/recon/settle-group", {"till": "T-B", "day": item.day, "kind": "coupon_overused"}),
        ):
            reply = page.request.post(
                f"{server.url}{path}", form={**form, "note": "mine", "csrf": csrf or ""}, headers={"Origin": server.url}
            )
            assert reply.status == 403 and 'data-code="forbidden"' in reply.text(), path
        watch.clean()
        page.context.close()

        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "auditor")
        page.goto(f"{server.url}/backoffice/recon/item?id={item.item_id}")
        page.wait_for_selector("body[data-page=recon-item]")
        assert page.locator("#settle").count() == 0
        page.goto(f"{server.url}/backoffice/recon")
        assert page.locator("form.settle-group").count() == 0
        csrf = page.get_attribute("form[action='/backoffice/sign-out'] input[name=csrf]", "value")
        reply = page.request.post(
            f"{server.url}/backoffice/recon/settle",
            form={"item_id": item.item_id, "note": "fine", "csrf": csrf or ""},
            headers={"Origin": server.url},
        )
        assert reply.status == 403
        watch.clean()
    assert next(i for i in hq.items() if i.item_id == item.item_id).state.value == "open"


def test_markup_in_a_till_id_a_detail_a_reader_and_a_note_is_text_in_every_language(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    tills = []
    for n, text in enumerate(MARKUP):
        till = f"T{n}{text}"
        hq.add_terminal(till, "S1", f"markup-till-{n}")
        body = entries.sale("M-S1", 1000, store_id="S1", earned=10, coupons=[f"C {text}"])
        made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        hq.ingest(
            till, [WireEntry(terminal_id=till, seq=1, txn_id=f"x{n}", kind="sale", payload=body, created_at=made)]
        )
        health = TillHealth(
            version="1.0",
            protocol=2,
            started_at="2026-01-01T00:00:00Z",
            pending=1,
            readers=[DeviceHealth(name=f"reader {text}", state="removed")],
            last_error=f"error {text}",
        )
        hq.put_health(till, health, None)
        tills.append(till)
    with chromium() as browser:
        for lang, word in (("en-GB", "Reconciliation"), ("ja-JP", "照合"), ("zh-CN", "对账")):
            page, watch = open_page(browser, DESKTOP, lang)
            sign_in(page, server.url, "admin")
            assert word in page.inner_text("header nav")
            page.goto(f"{server.url}/backoffice/recon")
            page.wait_for_selector("#groups")
            harmless(page, "groups", *tills)
            well_formed(page, DESKTOP["width"])
            page.goto(f"{server.url}/backoffice/fleet")
            harmless(page, "fleet", *tills, *(f"reader {t}" for t in MARKUP), *(f"error {t}" for t in MARKUP))
            well_formed(page, DESKTOP["width"])
            page.goto(f"{server.url}/backoffice/recon/eod")
            harmless(page, "eod")
            watch.clean()
            page.context.close()

        page, watch = open_page(browser, TABLET)
        sign_in(page, server.url, "finance")
        for n, text in enumerate(MARKUP):
            page.goto(f"{server.url}/backoffice/recon")
            page.locator("#groups tr[data-reason=unknown_coupon]").filter(has_text=tills[n]).locator(
                "a.group-items"
            ).click()
            page.wait_for_selector("body[data-page=recon-items]")
            harmless(page, "items", tills[n])
            page.click("#items tbody tr a")
            page.wait_for_selector("body[data-page=recon-item]")
            harmless(page, "item", tills[n], f"C {text}")
            well_formed(page, TABLET["width"])
            page.fill("#settle-note", f"note {text}")
            page.click("#settle-submit")
            page.wait_for_selector("#notice")
            harmless(page, "settled", f"note {text}")
        page.goto(f"{server.url}/backoffice/audit")
        harmless(page, "audit", *(f"note {t}" for t in MARKUP))
        exported = page.request.get(f"{server.url}/backoffice/recon/export.csv?state=settled_manual")
        rows = list(csv.DictReader(io.StringIO(exported.text())))
        assert sorted(r["note"] for r in rows) == sorted(f"note {t}" for t in MARKUP)
        watch.clean()


def test_finance_ticks_items_of_two_tills_and_settles_them_with_one_note_the_auditor_has_no_boxes(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    from tests.backoffice.test_recon import flagged, state_of

    hq, _, server = office
    hq.add_terminal("T1", "S1")
    hq.add_terminal("T2", "S2")
    picked, left, other = flagged(hq, "T1", 100), flagged(hq, "T1", 200), flagged(hq, "T2", 300)
    with chromium() as browser:
        page, watch = open_page(browser, DESKTOP)
        sign_in(page, server.url, "finance")
        page.goto(f"{server.url}/backoffice/recon/items?kind=unknown_member&state=open")
        assert page.locator("#items input[name=pick]").count() == 3
        well_formed(page, DESKTOP["width"])
        page.check(f"#items tr[data-id='{picked}'] input[name=pick]")
        page.check(f"#items tr[data-id='{other}'] input[name=pick]")
        page.fill("#pick-note", MARKUP[0])  # a note is text
        page.click("#settle-picked")
        page.wait_for_selector("#notice")
        assert "2 items settled." in page.inner_text("#notice")
        assert [state_of(hq, i) for i in (picked, left, other)] == ["settled_manual", "open", "settled_manual"]
        assert page.locator("#items tbody tr").count() == 1  # the filter kept: open items only
        made = page.evaluate(MADE_OF_MARKUP)
        assert (made["scripts"], made["images"], made["svgs"]) == (0, 0, 0)
        watch.clean()
        page.context.close()
        page, watch = open_page(browser, TABLET, "zh-CN")
        sign_in(page, server.url, "auditor")
        page.goto(f"{server.url}/backoffice/recon/items?kind=unknown_member&lang=zh")
        assert page.locator("#items tbody tr").count() == 1  # the open one
        assert page.locator("#items input[name=pick]").count() == 0 and page.locator("#pick-form").count() == 0
        well_formed(page, TABLET["width"])
        watch.clean()
        page.context.close()
    with hq.db.read() as tx:
        notes = {r.target: r.reason for r in audit.recent(tx, 100) if r.action == "settle_item"}
    assert notes == {picked: MARKUP[0], other: MARKUP[0]}
