"""Merchant staff against a real head-office server on 127.0.0.1, on SQLite and PostgreSQL: a merchant's
finance sees only its stores' reconciliation items, tills, report figures and members, and is refused (page,
edited address and direct POST) for another merchant's store; a store moved between merchants changes the
reach on the next request; a merchant's staff cannot reach staff management (so cannot give themselves the
chain's reach or another merchant); a chain administrator sets an account's merchant on the staff page and
on the command line, audited, with bad combinations refused by stable codes; the page in Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from hq import audit, merchants
from hq.api.server import ServerHandle, start_in_thread
from hq.backoffice import staff
from hq.backoffice.roles import Role
from hq.backoffice.staff import Staff
from hq.cli import app as hq_commands
from hq.store import HqStore
from sync.protocol import TillHealth
from tests.api.stack import chromium, chromium_missing
from tests.backoffice.chain import PASSWORD, chain, with_merchants
from tests.backoffice.test_browser import DESKTOP, TABLET, open_page, sign_in
from tests.backoffice.test_recon import audited, flagged, groups_of, state_of
from tests.backoffice.test_web import code_of, signed_in, tokenless

Office = tuple[HqStore, dict[str, Staff], ServerHandle]
READ = "() => JSON.parse(document.getElementById('report-data').textContent)"
NEW_PASSWORD = "another long password"


@pytest.fixture
def office(hq_url: str) -> Iterator[Office]:
    with chain(hq_url) as (hq, made):
        made.update(with_merchants(hq))
        for till in ("T1", "T2"):
            hq.put_health(till, TillHealth(version="1", protocol=2, started_at="2026-01-01T00:00:00Z", pending=0), None)
        server = start_in_thread(hq)
        try:
            yield hq, made, server
        finally:
            server.stop()


def refused(reply: object) -> bool:
    return getattr(reply, "status_code", 0) == 403 and code_of(reply) == "forbidden"  # type: ignore[arg-type]


def move(hq: HqStore, store_id: str, merchant_id: str) -> None:
    hq.db.transact(lambda tx: merchants.assign_store(tx, store_id, merchant_id, "UTC"))


def test_a_merchants_finance_sees_and_settles_only_its_stores(office: Office) -> None:
    hq, made, server = office
    mine, theirs = flagged(hq, "T1", 1000), flagged(hq, "T2", 1000)
    client, csrf = signed_in(server.url, "north-finance")

    listed = client.get("/backoffice/recon", params={"state": "any"})
    assert listed.status_code == 200
    assert {t for _, t, _, _, _, _ in groups_of(listed.text)} == {"T1"} and "T2" not in tokenless(listed.text)
    assert client.get("/backoffice/recon/item", params={"id": mine}).status_code == 200
    for path, params in (
        ("/backoffice/recon/item", {"id": theirs}),
        ("/backoffice/recon", {"store": "S2"}),
        ("/backoffice/recon/items", {"till": "T2"}),
        ("/backoffice/recon/export.csv", {"till": "T2"}),
        ("/backoffice/recon/eod", {"store": "S2"}),
        ("/backoffice/reports/sales", {"store": "S2"}),
        ("/backoffice/reports/members", {"store": ["S1", "S2"]}),
        ("/backoffice/members/M-S2", {}),
    ):
        reply = client.get(path, params=params)
        assert refused(reply), path
        assert theirs not in reply.text and "Bo Ni" not in reply.text
    exported = list(csv.DictReader(io.StringIO(client.get("/backoffice/recon/export.csv").text)))
    assert {r["store_id"] for r in exported} == {"S1"}
    fleet = client.get("/backoffice/fleet").text
    assert 'data-till="T1"' in fleet and 'data-till="T2"' not in fleet
    assert "M-S1" in client.get("/backoffice/members/results", params={"q": "aiko"}).text
    assert "M-S2" not in client.get("/backoffice/members/results", params={"q": "bo"}).text
    assert client.get("/backoffice/members/M-S1").status_code == 200

    # direct POSTs for the other merchant's store change nothing
    reply = client.post("/backoffice/recon/settle", data={"csrf": csrf, "item_id": theirs, "note": "mine now"})
    assert refused(reply) and state_of(hq, theirs) == "open"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    group = {"csrf": csrf, "till": "T2", "day": day, "kind": "unknown_member", "note": "all of them"}
    assert refused(client.post("/backoffice/recon/settle-group", data=group))
    asked = {"csrf": csrf, "points": "100", "stored_value": "0", "reason": "a favour"}
    assert refused(client.post("/backoffice/members/M-S2/adjust", data=asked))
    with hq.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM approvals WHERE subject = 'M-S2'") == (0,)
    assert audited(hq, "settle_item") == [] and audited(hq, "settle_item_group") == []

    # nothing chain-wide by nature: the audit log, staff, campaigns, rule edits, erasure
    for path in ("/backoffice/audit", "/backoffice/staff", "/backoffice/campaigns", "/backoffice/reports/campaigns"):
        assert refused(client.get(path)), path
    assert refused(client.post("/backoffice/members/M-S1/erase", data={"csrf": csrf, "reason": "x", "confirm": "M-S1"}))

    # and in its own store it works
    reply = client.post("/backoffice/recon/settle", data={"csrf": csrf, "item_id": mine, "note": "paid in cash"})
    assert reply.status_code == 303 and state_of(hq, mine) == "settled_manual"
    assert [r.actor for r in audited(hq, "settle_item")] == ["north-finance"]

    # the other merchant's finance sees the mirror image
    south, _ = signed_in(server.url, "south-finance")
    assert {t for _, t, _, _, _, _ in groups_of(south.get("/backoffice/recon", params={"state": "any"}).text)} == {"T2"}
    assert refused(south.get("/backoffice/recon/item", params={"id": mine}))
    assert made["south-finance"].merchant_id == "south"


def test_a_merchant_store_manager_reaches_only_the_stores_its_merchant_holds(office: Office) -> None:
    hq, _, server = office
    flagged(hq, "T1", 1000)
    theirs = flagged(hq, "T2", 1000)
    client, _ = signed_in(server.url, "north-manager")  # given S1 and S2; north holds S1 only
    assert {t for _, t, _, _, _, _ in groups_of(client.get("/backoffice/recon", params={"state": "any"}).text)} == {
        "T1"
    }
    assert refused(client.get("/backoffice/recon/item", params={"id": theirs}))
    assert refused(client.get("/backoffice/members/M-S2"))


def test_a_store_moved_between_merchants_changes_the_reach_at_once(office: Office) -> None:
    hq, _, server = office
    theirs = flagged(hq, "T2", 1000)
    north, north_csrf = signed_in(server.url, "north-finance")
    south, _ = signed_in(server.url, "south-finance")
    assert refused(north.get("/backoffice/recon/item", params={"id": theirs}))
    assert south.get("/backoffice/members/M-S2").status_code == 200

    move(hq, "S2", "north")  # the same sessions, the next request
    assert north.get("/backoffice/recon/item", params={"id": theirs}).status_code == 200
    assert "M-S2" in north.get("/backoffice/members/results", params={"q": "bo"}).text
    sales = north.get("/backoffice/reports/sales", params={"store": "S2"})
    assert sales.status_code == 200
    assert refused(south.get("/backoffice/members/M-S2"))
    assert refused(south.get("/backoffice/recon/item", params={"id": theirs}))
    assert "M-S2" not in south.get("/backoffice/members/results", params={"q": "bo"}).text
    assert 'data-till="T2"' not in south.get("/backoffice/fleet").text
    assert groups_of(south.get("/backoffice/recon", params={"state": "any"}).text) == []  # south holds no store
    emptied = south.get("/backoffice/reports/sales")
    assert emptied.status_code == 200 and '"stores": []' in emptied.text.replace('"stores":[]', '"stores": []')

    move(hq, "S2", "south")  # and back: north loses it, mid-session too
    reply = north.post("/backoffice/recon/settle", data={"csrf": north_csrf, "item_id": theirs, "note": "quick"})
    assert refused(reply) and state_of(hq, theirs) == "open"
    assert south.get("/backoffice/members/M-S2").status_code == 200


def test_a_merchants_staff_cannot_give_themselves_the_chains_reach_or_another_merchant(office: Office) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "north-admin")
    with hq.db.read() as tx:
        before = staff.listed(tx)
    for path, data in (
        ("/backoffice/staff/north-admin/role", {"role": "chain_admin", "merchant": "", "reason": "promotion"}),
        ("/backoffice/staff/north-admin/role", {"role": "merchant_admin", "merchant": "south", "reason": "move"}),
        ("/backoffice/staff/south-finance/password", {"password": NEW_PASSWORD, "reason": "take over"}),
        ("/backoffice/staff/north-finance/disable", {"reason": "tidy"}),
        (
            "/backoffice/staff/add",
            {
                "staff_id": "mole",
                "name": "Mole",
                "role": "chain_admin",
                "merchant": "",
                "password": NEW_PASSWORD,
                "reason": "help",
            },
        ),
    ):
        assert refused(client.post(path, data={**data, "csrf": csrf})), path
    assert refused(client.get("/backoffice/staff"))
    with hq.db.read() as tx:
        assert staff.listed(tx) == before
        assert [r for r in audit.recent(tx, 1000) if r.action.startswith("staff_")] == []
    # a row edited by hand to a chain role under a merchant has no session at all, never the chain's reach
    hq.db.transact(lambda tx: tx.run("UPDATE staff SET role = 'chain_admin' WHERE staff_id = 'north-admin'"))
    for path in ("/backoffice/staff", "/backoffice/audit", "/backoffice/members/M-S1"):
        reply = client.get(path)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/backoffice/sign-in"), path
    assert code_of(client.post("/backoffice/staff/add", data={"csrf": csrf, "staff_id": "x"})) == "sign_in_required"


def test_a_chain_administrator_sets_the_merchant_on_the_staff_page_audited(office: Office) -> None:
    hq, _, server = office
    admin, csrf = signed_in(server.url, "admin")
    made = {
        "staff_id": "nia",
        "name": "Nia North",
        "role": "merchant_finance",
        "merchant": "north",
        "password": PASSWORD,
        "reason": "new hire",
    }
    for wrong, code in (
        ({"merchant": "nowhere"}, "unknown_merchant"),
        ({"merchant": "chain"}, "unknown_merchant"),
        ({"role": "finance"}, "bad_staff"),  # a chain role under a merchant
        ({"role": "auditor"}, "bad_staff"),
        ({"merchant": "", "role": "merchant_admin"}, "bad_staff"),  # a merchant role without one
    ):
        reply = admin.post("/backoffice/staff/add", data={**made, **wrong, "csrf": csrf})
        assert code_of(reply) == code, wrong
    with hq.db.read() as tx:
        assert staff.get(tx, "nia") is None
    assert admin.post("/backoffice/staff/add", data={**made, "csrf": csrf}).status_code == 303
    with hq.db.read() as tx:
        assert staff.get(tx, "nia") == Staff(
            "nia", "Nia North", Role.MERCHANT_FINANCE, frozenset(), merchant_id="north"
        )
    page = admin.get("/backoffice/staff").text
    assert re.search(r'data-id="nia"[^>]*data-merchant="north"', page)

    nia, _ = signed_in(server.url, "nia")
    assert nia.get("/backoffice/members/M-S1").status_code == 200 and refused(nia.get("/backoffice/members/M-S2"))
    change = {"role": "merchant_admin", "merchant": "south", "reason": "moved to the south", "csrf": csrf}
    assert admin.post("/backoffice/staff/nia/role", data=change).status_code == 303
    assert nia.get("/backoffice/members/M-S1").status_code in (303, 401)  # its session ended
    nia, _ = signed_in(server.url, "nia")
    assert refused(nia.get("/backoffice/members/M-S1")) and nia.get("/backoffice/members/M-S2").status_code == 200
    to_chain = {"role": "finance", "merchant": "", "reason": "joined head office", "csrf": csrf}
    assert admin.post("/backoffice/staff/nia/role", data=to_chain).status_code == 303
    with hq.db.read() as tx:
        held = staff.get(tx, "nia")
        assert held is not None and held.merchant_id is None and held.role is Role.FINANCE
        records = [(r.action, r.details.get("merchant")) for r in reversed(audit.recent(tx, 100)) if r.target == "nia"]
    assert records == [("staff_add", "north"), ("staff_role", "south"), ("staff_role", None)]


def test_the_command_line_adds_a_merchants_staff(hq_url: str) -> None:
    def run(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(hq_commands, [*args, "--db", hq_url], input=NEW_PASSWORD + "\n")
        return done.exit_code, done.output

    hq = HqStore(hq_url)
    try:
        hq.db.transact(lambda tx: merchants.add(tx, "north", "North Ltd"))
        base = ["staff", "add", "--password-stdin", "--name", "Ola"]
        status, out = run(*base, "ola", "--role", "merchant_admin", "--merchant", "north")
        assert status == 0 and json.loads(out)["merchant"] == "north", out
        for args in (
            ["x1", "--role", "merchant_admin"],  # a merchant role for the chain's own staff
            ["x2", "--role", "chain_admin", "--merchant", "north"],
            ["x3", "--role", "merchant_finance", "--merchant", "south"],  # no such merchant
            ["x4", "--role", "merchant_finance", "--merchant", "chain"],
        ):
            assert run(*base, *args)[0] == 1, args
        with hq.db.read() as tx:
            assert [(s.staff_id, s.merchant_id) for s in staff.listed(tx)] == [("ola", "north")]
            (record,) = audit.recent(tx, 10)
        assert record.action == "staff_add" and record.details["merchant"] == "north"
        status, out = run("staff", "list", "--json")
        assert status == 0 and json.loads(out)[0]["merchant"] == "north"
    finally:
        hq.close()


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_in_chromium_a_merchants_finance_reads_its_stores_figures_and_an_admin_sets_a_merchant(
    office: Office,
) -> None:
    hq, _, server = office
    flagged(hq, "T1", 1000)
    flagged(hq, "T2", 1000)
    with chromium() as browser:
        for viewport in (DESKTOP, TABLET):
            page, watch = open_page(browser, viewport)
            sign_in(page, server.url, "north-finance")
            assert page.locator("header nav a[href='/backoffice/staff']").count() == 0
            assert page.locator("header nav a[href='/backoffice/audit']").count() == 0
            page.goto(f"{server.url}/backoffice/reports/sales")
            assert page.evaluate(READ)["stores"] == ["S1"]
            reply = page.goto(f"{server.url}/backoffice/reports/sales?store=S2")
            assert reply is not None and reply.status == 403
            assert page.get_attribute("#error", "data-code") == "forbidden"
            page.goto(f"{server.url}/backoffice/recon?state=any")
            assert page.locator("tr[data-till='T1']").count() >= 1
            assert page.locator("tr[data-till='T2']").count() == 0
            watch.clean()
            page.context.close()

        page, watch = open_page(browser, DESKTOP, locale="ja-JP")
        sign_in(page, server.url, "admin")
        page.goto(f"{server.url}/backoffice/staff")
        page.fill("#add-id", "mika")
        page.fill("#add-name", "Mika <b>North</b>")
        page.select_option("#add-role", "merchant_admin")
        page.fill("#add-merchant", "north")
        page.fill("#add-password", NEW_PASSWORD)
        page.fill("#add-reason", "new hire")
        page.click("#add-submit")
        page.wait_for_selector("#accounts tr[data-id='mika'][data-merchant='north']")
        assert "Mika <b>North</b>" in page.inner_text("#accounts")  # text, never markup
        assert "加盟店" in page.inner_text("#accounts thead")
        watch.clean()
        page.context.close()
    with hq.db.read() as tx:
        held = staff.get(tx, "mika")
    assert held is not None and held.merchant_id == "north" and held.role is Role.MERCHANT_ADMIN
    assert PASSWORD != NEW_PASSWORD


def test_accounts_made_before_merchant_staff_stay_the_chains_own_after_the_migration(hq_url: str) -> None:
    """A head office upgraded with staff already in it: every account keeps its role and reach, with no
    merchant, and signs in as before."""
    from hq.db.schema import migrate
    from tests.fixtures.hq import migrated_before

    db = migrated_before(hq_url, "m029_merchant_staff")
    try:
        with db.write() as tx:
            tx.run(
                "INSERT INTO staff (staff_id, name, password, role, stores, disabled, created_at, updated_at) "
                "VALUES ('old', 'Old Hand', ?, 'store_manager', '[\"S1\"]', 0, '2026-01-01', '2026-01-01')",
                [staff.hash_password(PASSWORD)],
            )
        assert "m029_merchant_staff" in migrate(db, backup=False)
        with db.read() as tx:
            held = staff.get(tx, "old")
            assert held is not None and held == Staff("old", "Old Hand", Role.STORE_MANAGER, frozenset({"S1"}))
            assert staff.in_reach(tx, held).stores == frozenset({"S1"})
        assert staff.verify(db, "old", PASSWORD, "test", 1) == held
    finally:
        db.close()


def test_four_eyes_inside_a_merchant_and_never_across(office: Office) -> None:
    """North's admin asks for an adjustment of its store's member; south's finance neither sees nor decides it
    (list and direct POST); north's finance approves it and the points move once."""
    hq, made, server = office
    admin, admin_csrf = signed_in(server.url, "north-admin")
    asked = {"csrf": admin_csrf, "points": "50", "stored_value": "0", "reason": "goodwill for a late order"}
    reply = admin.post("/backoffice/members/M-S1/adjust", data=asked)
    assert reply.status_code == 303
    with hq.db.read() as tx:
        (row,) = tx.all("SELECT request_id FROM approvals WHERE subject = 'M-S1' AND state = 'pending'")
    request_id = str(row[0])
    before = hq.member("M-S1")
    assert before is not None

    south, south_csrf = signed_in(server.url, "south-finance")
    assert request_id not in south.get("/backoffice/approvals").text
    assert refused(south.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": south_csrf}))
    own = admin.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": admin_csrf})
    assert own.status_code == 403 and code_of(own) == "own_request"  # four eyes: never its own
    north, north_csrf = signed_in(server.url, "north-finance")
    assert request_id in north.get("/backoffice/approvals").text
    assert north.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": north_csrf}).status_code == 303
    after = hq.member("M-S1")
    assert after is not None and after.points == before.points + 50
    with hq.db.read() as tx:
        assert tx.one("SELECT state, decided_by FROM approvals WHERE request_id = ?", [request_id]) == (
            "approved",
            "north-finance",
        )
    assert made["north-admin"].merchant_id == "north"


def test_a_member_of_two_merchants_is_adjusted_with_four_eyes_of_the_merchant_that_asked(office: Office) -> None:
    """M-S1 shops at north's S1 and at south's S2, so both merchants' staff reach it. North's request (points
    north pays for) is neither listed to nor decided by south's finance, and a chain finance's request (the
    chain's stored value) by neither merchant's finance; each is decided by a person of its own side."""
    from tests.backoffice.chain import sale

    hq, _, server = office
    sale(hq, "T2", "M-S1", 1200)  # now a member of south's store too
    north_admin, north_admin_csrf = signed_in(server.url, "north-admin")
    asked = {"csrf": north_admin_csrf, "points": "40", "stored_value": "0", "reason": "north goodwill"}
    assert north_admin.post("/backoffice/members/M-S1/adjust", data=asked).status_code == 303
    chain_finance, chain_csrf = signed_in(server.url, "finance")
    asked = {"csrf": chain_csrf, "points": "0", "stored_value": "700", "reason": "chain refund by hand"}
    assert chain_finance.post("/backoffice/members/M-S1/adjust", data=asked).status_code == 303
    with hq.db.read() as tx:
        ids = {str(r[1]): str(r[0]) for r in tx.all("SELECT request_id, requested_by FROM approvals")}
    north_request, chain_request = ids["north-admin"], ids["finance"]
    before = hq.member("M-S1")
    assert before is not None

    south, south_csrf = signed_in(server.url, "south-finance")
    listed = south.get("/backoffice/approvals").text
    assert north_request not in listed and chain_request not in listed
    for request_id in (north_request, chain_request):
        assert refused(south.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": south_csrf}))
        assert refused(south.post(f"/backoffice/approvals/{request_id}/reject", data={"csrf": south_csrf, "note": "n"}))
    north, north_csrf = signed_in(server.url, "north-finance")
    listed = north.get("/backoffice/approvals").text
    assert north_request in listed and chain_request not in listed
    assert refused(north.post(f"/backoffice/approvals/{chain_request}/approve", data={"csrf": north_csrf}))
    assert north.post(f"/backoffice/approvals/{north_request}/approve", data={"csrf": north_csrf}).status_code == 303
    admin, admin_csrf = signed_in(server.url, "admin")
    assert admin.post(f"/backoffice/approvals/{chain_request}/approve", data={"csrf": admin_csrf}).status_code == 303
    after = hq.member("M-S1")
    assert after is not None
    assert (after.points, after.stored_value) == (before.points + 40, before.stored_value + 700)
    with hq.db.read() as tx:
        decided = {str(r[0]): str(r[1]) for r in tx.all("SELECT request_id, decided_by FROM approvals")}
    assert decided == {north_request: "north-finance", chain_request: "admin"}


def test_a_merchants_staff_read_on_a_members_page_only_their_own_merchants_adjustments(office: Office) -> None:
    """M-S1 shops at north's S1 and south's S2. On its page north's finance reads north's adjustment, asked and
    made, never south's nor the chain's (their reasons, sizes and who asked); the chain's administrator all."""
    from tests.backoffice.chain import sale

    hq, _, server = office
    sale(hq, "T2", "M-S1", 1200)
    for staff_id, why in (
        ("north-admin", "north goodwill"),
        ("south-finance", "south goodwill"),
        ("finance", "chain fix"),
    ):
        client, csrf = signed_in(server.url, staff_id)
        asked = {"csrf": csrf, "points": "30", "stored_value": "0", "reason": why}
        assert client.post("/backoffice/members/M-S1/adjust", data=asked).status_code == 303
    north, north_csrf = signed_in(server.url, "north-finance")
    pending = north.get("/backoffice/members/M-S1").text
    assert "north goodwill" in pending and "south goodwill" not in pending and "chain fix" not in pending
    with hq.db.read() as tx:
        ids = {str(r[1]): str(r[0]) for r in tx.all("SELECT request_id, requested_by FROM approvals")}
    assert (
        north.post(f"/backoffice/approvals/{ids['north-admin']}/approve", data={"csrf": north_csrf}).status_code == 303
    )
    admin, admin_csrf = signed_in(server.url, "admin")
    for staff_id in ("south-finance", "finance"):
        assert (
            admin.post(f"/backoffice/approvals/{ids[staff_id]}/approve", data={"csrf": admin_csrf}).status_code == 303
        )
    made = north.get("/backoffice/members/M-S1").text
    assert "north goodwill" in made and "south goodwill" not in made and "chain fix" not in made
    assert "south-finance" not in made
    everything = admin.get("/backoffice/members/M-S1").text
    assert all(why in everything for why in ("north goodwill", "south goodwill", "chain fix"))


def test_a_merchants_staff_unblock_only_what_their_own_merchant_blocked(office: Office) -> None:
    """The chain's administrator blocks M-S1 (north's store's member): north's admin cannot unblock it
    (``forbidden``, still blocked, nothing audited). North's admin blocks M-S1's card and unblocks it again;
    it blocks the card once more and the chain's administrator unblocks it."""
    hq, _, server = office
    card = "a" * 64
    admin, admin_csrf = signed_in(server.url, "admin")
    north, north_csrf = signed_in(server.url, "north-admin")
    why = {"reason": "card reported stolen"}
    assert admin.post("/backoffice/members/M-S1/block", data=why | {"csrf": admin_csrf}).status_code == 303
    records = len(audited(hq, "unblock_member"))
    refusal = north.post("/backoffice/members/M-S1/unblock", data={"csrf": north_csrf, "reason": "customer asked"})
    assert refused(refusal)
    assert hq.member("M-S1").status == "blocked" and len(audited(hq, "unblock_member")) == records  # type: ignore[union-attr]

    def card_status() -> str:
        with hq.db.read() as tx:
            row = tx.one("SELECT status FROM cards WHERE uid_hash = ?", [card])
        assert row is not None
        return str(row[0])

    for who, csrf in ((north, north_csrf), (north, north_csrf), (north, north_csrf), (admin, admin_csrf)):
        verb = "unblock" if card_status() == "blocked" else "block"
        assert who.post(f"/backoffice/cards/{card}/{verb}", data=why | {"csrf": csrf}).status_code == 303, verb
    assert card_status() == "active"
    assert [r.actor for r in audited(hq, "unblock_card")] == ["admin", "north-admin"]  # newest first
