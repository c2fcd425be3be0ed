"""A merchant's own back-office staff (its admin asks, its finance approves: four eyes, both of one
merchant) against the chain's money. The points they grant are their merchant's lot, which it pays for
as for points its stores give, so cashing them out at their own till earns the merchant nothing; they
never move a member's stored value (the chain holds that money); they take back no more points than
their own merchant gave the member. A real head-office process (SQLite); merchants M-A (store S-A, till
T-A) and M-B (S-B, T-B); the merchant's own till, which names any member on a sale, brings any member
into its staff's reach."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq import merchants, payments
from hq.backoffice import staff
from hq.db.engine import Tx
from hq.store import HqStore
from terminal import payments as pay
from tests.backoffice.chain import PASSWORD
from tests.backoffice.test_web import code_of, signed_in
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess
from tests.security.chain import STORES, Chain, started, today_local


@pytest.fixture
def merchant_chain(tmp_path: Path) -> Iterator[Chain]:
    hq = HqProcess(tmp_path)
    store = HqStore(hq.db)
    try:
        tokens = {t: store.add_terminal(t, s) for t, s in STORES.items()}
        admin = store.add_admin("Mio")
        store.set_rule("base", 1, 100)
        store.upsert_member("M-1", "Aiko", "basic", 0)  # the staff's accomplice, with a phone
        store.upsert_member("M-2", "Ben", "basic", 0)  # shops at M-B only, with money of his own
        payments.topup(store, "M-2", 40_000, "Mio")
        member_token = payments.member_token(store, "M-1")

        def setup(tx: Tx) -> None:
            merchants.add(tx, "M-A", "Alpha Ltd", 100, 100)
            merchants.add(tx, "M-B", "Beta Ltd", 100, 100)
            merchants.assign_store(tx, "S-A", "M-A", "UTC")
            merchants.assign_store(tx, "S-B", "M-B", "UTC")
            for staff_id, role in (("a-admin", "merchant_admin"), ("a-fin", "merchant_finance")):
                staff.add(tx, staff.check_account(staff_id, staff_id, role, [], "M-A"), PASSWORD)

        store.db.transact(setup)
    finally:
        store.close()
    yield from started(hq, admin, tokens, member_token, tmp_path)


def push(chain: Chain, terminal: str, kind: str, payload: dict[str, Any]) -> str:
    txn = str(uuid.uuid4())
    reply = chain.push(terminal, kind, payload, txn_id=txn)
    assert reply.status_code == 200, reply.text
    return txn


def ask(url: str, member: str, points: int, value: int) -> httpx.Response:
    asker, csrf = signed_in(url, "a-admin")
    form = {"csrf": csrf, "points": str(points), "stored_value": str(value), "reason": "goodwill correction"}
    return asker.post(f"/backoffice/members/{member}/adjust", data=form)


def approve(url: str, asked: httpx.Response) -> httpx.Response:
    assert asked.status_code == 303, asked.text[:500]
    request_id = re.search(r"AR-[0-9a-f]+", asked.headers["location"])
    assert request_id, asked.headers["location"]
    approver, csrf = signed_in(url, "a-fin")
    return approver.post(f"/backoffice/approvals/{request_id.group(0)}/approve", data={"csrf": csrf, "note": "ok"})


def statement(chain: Chain, merchant: str) -> dict[str, Any]:
    period = time.strftime("%Y-%m", time.gmtime())
    reply = httpx.get(
        f"{chain.hq.url}/v1/admin/settlement/{period}/{merchant}", headers=chain.admin_headers, timeout=10
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_merchant_staff_never_move_a_members_stored_value(merchant_chain: Chain) -> None:
    chain = merchant_chain
    url = chain.hq.url
    push(chain, "T-A", "sale", entries.sale("M-2", 100, store_id="S-A", earned=1, local_time=today_local()))
    push(chain, "T-A", "sale", entries.sale("M-1", 100, store_id="S-A", earned=1, local_time=today_local()))
    for member, value in (("M-2", -40_000), ("M-1", 40_000)):  # take Ben's money, give it to the accomplice
        refused = ask(url, member, 0, value)
        assert refused.status_code == 403 and code_of(refused) == "merchant_points_only", refused.text[:300]
    assert chain.balance("M-2").stored_value == 40_000 and chain.balance("M-1").stored_value == 0
    store = HqStore(chain.hq.db)
    try:
        with store.db.read() as tx:
            assert tx.one("SELECT COUNT(*) FROM approvals") == (0,)  # nothing waits for an approver
    finally:
        store.close()


def test_points_merchant_staff_grant_are_their_merchants_and_cash_out_for_nothing(merchant_chain: Chain) -> None:
    chain = merchant_chain
    url = chain.hq.url
    push(chain, "T-A", "sale", entries.sale("M-1", 100, store_id="S-A", earned=1, local_time=today_local()))
    assert approve(url, ask(url, "M-1", 50_000, 0)).status_code == 303
    assert chain.balance("M-1").points == 50_001
    code = chain.phone.next_code()  # the accomplice spends them at the merchant's own till, with her phone
    sale = entries.sale(
        "M-1",
        60_000,
        redeemed=50_000,
        proof="payment_code",
        payment_code=code,
        code_id=pay.parse_code(code).code_id,
        store_id="S-A",
        local_time=today_local(),
    )
    txn = push(chain, "T-A", "sale", sale)
    assert chain.effect(txn) == "applied", chain.reasons()
    points = statement(chain, "M-A")["points"]
    assert points["issued"] >= 50_000 and points["accepted"] == 50_000, points
    assert statement(chain, "M-A")["money"]["net"] <= 0  # the chain pays the merchant nothing for them


def test_merchant_staff_take_back_only_what_their_merchant_gave(merchant_chain: Chain) -> None:
    chain = merchant_chain
    url = chain.hq.url
    push(chain, "T-B", "sale", entries.sale("M-2", 30_000, store_id="S-B", earned=300, local_time=today_local()))
    push(chain, "T-A", "sale", entries.sale("M-2", 1_000, store_id="S-A", earned=10, local_time=today_local()))
    assert chain.balance("M-2").points == 310
    refused = approve(url, ask(url, "M-2", -300, 0))  # M-B's points are not M-A's to take
    assert refused.status_code == 403 and code_of(refused) == "merchant_points_only", refused.text[:300]
    assert chain.balance("M-2").points == 310
    assert approve(url, ask(url, "M-2", -10, 0)).status_code == 303  # its own ten are
    assert chain.balance("M-2").points == 300


def recent_sales(page: str) -> list[list[str]]:
    """The member page's recent sales, each row's cells after its time (times may hold any digits)."""
    table = re.search(r'<table id="recent">(.*?)</table>', page, re.S)
    assert table is not None, page
    body = table.group(1).split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row)[1:] for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_a_merchants_staff_read_only_their_own_stores_sales_of_a_member(merchant_chain: Chain) -> None:
    """The merchant's till names Ben on a 1.00 sale, so Ben is in its staff's reach; his page shows them
    their own sale and store, never what he bought from the other merchant."""
    chain = merchant_chain
    push(chain, "T-B", "sale", entries.sale("M-2", 4321, store_id="S-B", earned=43, local_time=today_local()))
    client, _csrf = signed_in(chain.hq.url, "a-admin")
    assert client.get("/backoffice/members/M-2").status_code == 403
    push(chain, "T-A", "sale", entries.sale("M-2", 100, store_id="S-A", earned=1, local_time=today_local()))
    page = client.get("/backoffice/members/M-2")
    assert page.status_code == 200
    rows = recent_sales(page.text)
    assert rows == [["sale", "S-A", "1.00", "1"]], rows
    assert "S-B" not in page.text


def test_a_merchants_take_back_comes_out_of_its_own_lots_only(merchant_chain: Chain) -> None:
    """Ben holds 300 points of M-B's and 10 of M-A's. M-A may take back its 10, once: from its own lot, never
    from M-B's (a repeated small claw would otherwise drain the other merchant's points)."""
    chain = merchant_chain
    url = chain.hq.url
    push(chain, "T-B", "sale", entries.sale("M-2", 30_000, store_id="S-B", earned=300, local_time=today_local()))
    push(chain, "T-A", "sale", entries.sale("M-2", 1_000, store_id="S-A", earned=10, local_time=today_local()))
    assert approve(url, ask(url, "M-2", -10, 0)).status_code == 303
    again = approve(url, ask(url, "M-2", -10, 0))
    assert again.status_code == 403 and code_of(again) == "merchant_points_only", again.text[:300]
    store = HqStore(chain.hq.db)
    try:
        with store.db.read() as tx:
            left = dict(
                tx.all("SELECT merchant_id, SUM(remaining) FROM ledger_lots WHERE member_id = 'M-2' GROUP BY 1")
            )
    finally:
        store.close()
    assert left == {"M-A": 0, "M-B": 300} and chain.balance("M-2").points == 300
