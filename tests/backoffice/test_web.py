"""The back office over HTTP against a real head-office server on 127.0.0.1, on SQLite and PostgreSQL:
every page needs a session and names its action; each role reaches exactly the pages its table allows; a
store manager neither sees nor changes another store's members; sign-in gives a fresh session (a planted
cookie is never adopted) with a strict cookie; every POST needs the page's Origin and the session's CSRF
token; failed sign-ins close the account to an address, and to new addresses past an account-wide bound; sign-out, idle and absolute expiry and a disabled account end it."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from hq import audit, segments
from hq.api import backoffice as web
from hq.api.server import ServerHandle
from hq.backoffice import members as bo_members
from hq.backoffice import sessions, staff
from hq.backoffice.roles import Role, may
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.backoffice.chain import MERCHANT_STAFF, PASSWORD, STAFF, chain, with_merchants
from tests.fixtures.hq import HqProcess, make_tls

PATH_VALUES = {"member_id": "M-S1", "subject": "M-S1", "request_id": "AR-0000000000000000"}


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Origin": url}, follow_redirects=False, timeout=30, trust_env=False)


def signed_in(url: str, staff_id: str) -> tuple[httpx.Client, str]:
    """A client signed in as ``staff_id`` and its session's CSRF token (read from a page, as a form has it)."""
    client = browser(url)
    reply = client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": PASSWORD})
    assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/", reply.text[:500]
    return client, csrf_of(client.get("/backoffice/").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def tokenless(html: str) -> str:
    """A page without its random tokens (a CSRF token may hold any two letters)."""
    return re.sub(r"[A-Za-z0-9_-]{32,}", "", html)


def code_of(reply: httpx.Response) -> str | None:
    found = re.search(r'id="error"[^>]*data-code="([^"]+)"', reply.text)
    return found.group(1) if found else None


def filled(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


def backoffice_routes() -> set[tuple[str, str]]:
    found = set()
    for route in web.router.routes:
        assert isinstance(route, APIRoute)
        for method in route.methods:
            found.add((method, route.path))
    return found


def test_every_page_names_its_action_or_is_one_of_the_few_public_ones() -> None:
    routes = backoffice_routes()
    assert routes == set(web.ACTIONS) | web.PUBLIC
    assert not set(web.ACTIONS) & web.PUBLIC


def test_without_a_session_every_page_sends_to_sign_in_and_every_change_is_refused(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    _, _, server = office
    client = browser(server.url)
    for method, path in sorted(web.ACTIONS):
        reply = client.request(method, filled(path), data={"reason": "r", "csrf": "x"})
        if method == "GET":
            assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/sign-in", path
        else:
            assert reply.status_code == 401 and code_of(reply) == "sign_in_required", path
    assert client.get("/backoffice/").status_code == 303


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_the_pages_its_table_allows(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], role: Role
) -> None:
    hq, made, server = office
    accounts = {s: r for s, (_, r, _) in STAFF.items()}
    if role in (Role.MERCHANT_ADMIN, Role.MERCHANT_FINANCE):
        with_merchants(hq)
        accounts = {s: r for s, (_, r, _, _) in MERCHANT_STAFF.items()}
    staff_id = next(s for s, r in accounts.items() if r == role.value)
    client, csrf = signed_in(server.url, staff_id)
    for (method, path), actions in sorted(web.ACTIONS.items()):
        if path.endswith("/erase"):
            continue  # it would erase the member the other pages read; its refusal is below
        reply = client.request(
            method, filled(path), data={"csrf": csrf, "reason": "because", "note": "n", "points": "1"}
        )
        allowed = any(may(role, a) for a in actions)
        if allowed:
            assert code_of(reply) != "forbidden" and reply.status_code != 403, (role, method, path, reply.text[:300])
        else:
            assert reply.status_code == 403 and code_of(reply) == "forbidden", (role, method, path)
    erased = client.post("/backoffice/members/M-S2/erase", data={"csrf": csrf, "reason": "asked", "confirm": "M-S2"})
    if role is Role.CHAIN_ADMIN:
        assert erased.status_code == 200 and made  # the chain administrator erases
    else:
        assert erased.status_code == 403 and code_of(erased) == "forbidden"


def test_a_store_manager_sees_and_changes_only_its_stores_members(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, made, server = office
    client, csrf = signed_in(server.url, "manager")
    found = (
        client.get("/backoffice/members", params={"q": "M-S"}).text
        + client.get("/backoffice/members/results", params={"q": "bo"}).text
    )
    assert "M-S2" not in found
    assert "M-S1" in client.get("/backoffice/members/results", params={"q": "aiko"}).text
    assert client.get("/backoffice/members/M-S1").status_code == 200
    other = client.get("/backoffice/members/M-S2")
    assert other.status_code == 403 and code_of(other) == "forbidden" and "Bo Ni" not in other.text
    for path, data in (
        ("/backoffice/members/M-S2/adjust", {"points": "100", "stored_value": "0", "reason": "a favour"}),
        ("/backoffice/members/M-S2/block", {"reason": "why not"}),
        ("/backoffice/cards/" + "b" * 64 + "/block", {"reason": "why not"}),
    ):
        reply = client.post(path, data={**data, "csrf": csrf})
        assert reply.status_code == 403 and code_of(reply) == "forbidden", path
    assert hq.member("M-S2") is not None and hq.member("M-S2").status == "active"  # type: ignore[union-attr]
    others = bo_members.ask_adjustment(hq, made["admin"], "M-S2", 10, 0, "another store's request")
    listed = client.get("/backoffice/approvals").text
    assert others.request_id not in listed and "another store" not in listed
    decided = client.post(f"/backoffice/approvals/{others.request_id}/approve", data={"csrf": csrf})
    assert decided.status_code == 403 and code_of(decided) == "forbidden"
    blocked = client.post("/backoffice/cards/" + "a" * 64 + "/block", data={"csrf": csrf, "reason": "card lost"})
    assert blocked.status_code == 303
    with hq.db.read() as tx:
        assert tx.one("SELECT status FROM cards WHERE uid_hash = ?", ["a" * 64]) == ("blocked",)
        assert tx.one("SELECT COUNT(*) FROM approvals WHERE subject = 'M-S1'") == (0,)


def test_every_change_needs_the_pages_origin_and_the_sessions_csrf_token(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "admin")
    _, other_csrf = signed_in(server.url, "admin2")
    form = {"reason": "card lost"}
    for sent, code in (({}, "bad_csrf"), ({"csrf": "guess"}, "bad_csrf"), ({"csrf": other_csrf}, "bad_csrf")):
        reply = client.post("/backoffice/members/M-S1/block", data={**form, **sent})
        assert reply.status_code == 403 and code_of(reply) == code
    for origin in ("https://evil.example", "null", ""):
        reply = client.post("/backoffice/members/M-S1/block", data={**form, "csrf": csrf}, headers={"Origin": origin})
        assert reply.status_code == 403 and code_of(reply) == "bad_origin"
    cross = client.post(
        "/backoffice/members/M-S1/block", data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403 and code_of(cross) == "bad_origin"
    assert hq.member("M-S1").status == "active"  # type: ignore[union-attr]
    header = client.post("/backoffice/members/M-S1/block", data=form, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 303 and hq.member("M-S1").status == "blocked"  # type: ignore[union-attr]
    signin_elsewhere = browser(server.url).post(
        "/backoffice/sign-in",
        data={"staff_id": "admin", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert signin_elsewhere.status_code == 403 and code_of(signin_elsewhere) == "bad_origin"


def test_sign_in_makes_a_fresh_session_and_never_adopts_one_a_browser_brought(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    _, _, server = office
    attacker, _ = signed_in(server.url, "auditor")
    planted = attacker.cookies["tp_staff"]
    victim = with_cookie(server.url, planted)
    reply = victim.post("/backoffice/sign-in", data={"staff_id": "admin", "password": PASSWORD})
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    fresh = given(reply)
    assert fresh != planted and len(fresh) >= 40
    assert 'data-role="chain_admin"' in with_cookie(server.url, fresh).get("/backoffice/").text
    assert with_cookie(server.url, planted).get("/backoffice/").status_code == 303  # the planted session ended
    invented = with_cookie(server.url, "chosen-by-the-attacker")
    assert given(invented.post("/backoffice/sign-in", data={"staff_id": "admin", "password": PASSWORD})) not in (
        "chosen-by-the-attacker",
        planted,
        fresh,
    )


def given(reply: httpx.Response) -> str:
    """The session token a sign-in's Set-Cookie gives."""
    found = re.search(r"tp_staff=([^;]+)", reply.headers.get("set-cookie", ""))
    assert found, reply.headers
    return found.group(1)


def with_cookie(url: str, token: str) -> httpx.Client:
    """A browser that holds ``token`` as its session cookie."""
    client = browser(url)
    client.headers["Cookie"] = f"tp_staff={token}"
    return client


def test_the_cookie_is_secure_and_host_only_over_https(tmp_path: Path) -> None:
    """A head-office process serving TLS (``hq serve --tls-cert --tls-key``) with a CA of the test's own."""
    ca, cert, key = make_tls(tmp_path)
    process = HqProcess(tmp_path, tls=(cert, key))
    with chain(process.db):
        pass
    process.start()
    try:
        with httpx.Client(
            base_url=process.url, verify=ssl.create_default_context(cafile=str(ca)), trust_env=False, timeout=30
        ) as client:
            reply = client.post(
                "/backoffice/sign-in",
                data={"staff_id": "admin", "password": PASSWORD},
                headers={"Origin": process.url},
            )
            language = client.get("/backoffice/sign-in", params={"lang": "ja"})
        cookie = reply.headers["set-cookie"]
        assert reply.status_code == 303 and cookie.startswith("__Host-tp_staff=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
        kept = language.headers["set-cookie"]  # the language chosen: over HTTPS only, as the session
        assert kept.startswith("tp_bo_lang=ja") and "Secure" in kept and "HttpOnly" in kept, kept
    finally:
        process.kill()


def test_failed_sign_ins_close_the_account_to_that_address_only(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """Five wrong passwords for an account from one address close it to that address for a while (its right
    password is not tried there); its owner still signs in from their own address, and so does every other
    account from the guesser's."""
    hq, _, server = office
    client = browser(server.url)
    guesser = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(staff.PAIR_FAILURES):
        wrong = client.post(
            "/backoffice/sign-in", data={"staff_id": "finance", "password": "not it at all"}, headers=guesser
        )
        assert wrong.status_code == 401 and code_of(wrong) == "bad_credentials"
    locked = client.post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD}, headers=guesser)
    assert locked.status_code == 429 and code_of(locked) == "locked_out" and "tp_staff" not in client.cookies
    owner = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD})
    assert owner.status_code == 303
    other = {"staff_id": "admin", "password": PASSWORD}
    assert browser(server.url).post("/backoffice/sign-in", data=other, headers=guesser).status_code == 303
    unknown = client.post("/backoffice/sign-in", data={"staff_id": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and code_of(unknown) == "bad_credentials"
    hq.db.transact(lambda tx: staff.set_password(tx, "finance", PASSWORD))  # an administrator resets it
    again = client.post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD}, headers=guesser)
    assert again.status_code == 303


def test_a_guesser_spread_over_many_addresses_closes_the_account_to_new_addresses_until_an_admin_unlocks_it(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """Wrong passwords for one account from many addresses, each under its own bound, add up: past
    ``ACCOUNT_FAILURES`` in the window an address the account never signed in from is ``locked_out``, the
    address its owner signed in from is not. An administrator unlocks it on the staff page (audited, with how
    many failures were forgotten). Without an unlock the bound lifts once the window has passed the failures."""
    hq, _, server = office
    right = {"staff_id": "finance", "password": PASSWORD}
    assert browser(server.url).post("/backoffice/sign-in", data=right).status_code == 303  # the owner's address
    for n in range(staff.ACCOUNT_FAILURES):
        wrong = browser(server.url).post(
            "/backoffice/sign-in",
            data={"staff_id": "finance", "password": f"guess {n}"},
            headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
        )
        assert wrong.status_code == 401 and code_of(wrong) == "bad_credentials"
    elsewhere = {"X-Forwarded-For": "192.0.2.1"}
    locked = browser(server.url).post("/backoffice/sign-in", data=right, headers=elsewhere)
    assert locked.status_code == 429 and code_of(locked) == "locked_out"
    assert browser(server.url).post("/backoffice/sign-in", data=right).status_code == 303

    admin, csrf = signed_in(server.url, "admin")
    shown = admin.get("/backoffice/staff").text
    counted = rf'data-id="finance".*?class="failed-sign-ins">{staff.ACCOUNT_FAILURES}<'
    assert re.search(counted, shown, re.S), shown[:2000]
    refused = admin.post("/backoffice/staff/finance/unlock", data={"csrf": csrf, "reason": ""})
    assert code_of(refused) == "reason_required"
    done = admin.post("/backoffice/staff/finance/unlock", data={"csrf": csrf, "reason": "guessed from a botnet"})
    assert done.status_code == 303
    with hq.db.read() as tx:
        record = tx.one(
            "SELECT actor, target, reason, details FROM audit_log WHERE action = 'staff_unlock' ORDER BY seq DESC"
        )
    assert record is not None and record[:3] == ("admin", "finance", "guessed from a botnet")
    assert json.loads(str(record[3])) == {"failures": staff.ACCOUNT_FAILURES}
    assert browser(server.url).post("/backoffice/sign-in", data=right, headers=elsewhere).status_code == 303

    later = int(time.time()) + 10 * staff.WINDOW_S  # the server's own failures are long out of the window
    for n in range(staff.ACCOUNT_FAILURES):
        assert staff.verify(hq.db, "finance", "wrong", f"198.51.100.{n + 1}", later) == "bad_credentials"
    assert staff.verify(hq.db, "finance", PASSWORD, "192.0.2.2", later) == "locked_out"
    assert staff.verify(hq.db, "finance", PASSWORD, "192.0.2.2", later + staff.WINDOW_S - 1) == "locked_out"
    passed = staff.verify(hq.db, "finance", PASSWORD, "192.0.2.2", later + staff.WINDOW_S)
    assert isinstance(passed, Staff) and passed.staff_id == "finance"

    # an administrator's reset forgets the addresses the account signed in from (audited with their count):
    # whoever held the old password may have signed in from any of them
    reset = {"csrf": csrf, "password": PASSWORD, "reason": "password leaked"}
    assert admin.post("/backoffice/staff/finance/password", data=reset).status_code == 303
    with hq.db.read() as tx:
        record = tx.one("SELECT details FROM audit_log WHERE action = 'staff_passwd' ORDER BY seq DESC")
        assert staff.known_sources(tx, "finance") == 0
    assert record is not None and json.loads(str(record[0]))["known_sources"] == 3  # 127.0.0.1, 192.0.2.1, .2
    again = later + 10 * staff.WINDOW_S
    for n in range(staff.ACCOUNT_FAILURES):
        assert staff.verify(hq.db, "finance", "wrong", f"198.51.100.{n + 1}", again) == "bad_credentials"
    assert staff.verify(hq.db, "finance", PASSWORD, "192.0.2.2", again) == "locked_out"


def test_wrong_passwords_sent_at_once_get_no_more_tries_than_one_after_another(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """Twenty guesses posted together (each its own connection, released at one moment) are at most the five
    an account allows from one address in its window: the rest are ``locked_out`` without their password tried, and so is the
    right one after them. Then a right password from the same address still signs another account in, and
    counts as no failure of that address."""
    hq, _, server = office
    guesses = 20
    start = threading.Barrier(guesses)

    def guess(n: int) -> str | None:
        with browser(server.url) as client:
            start.wait()
            return code_of(client.post("/backoffice/sign-in", data={"staff_id": "finance", "password": f"guess {n}"}))

    with ThreadPoolExecutor(guesses) as pool:
        codes = list(pool.map(guess, range(guesses)))
    assert codes.count("bad_credentials") == staff.PAIR_FAILURES, codes
    assert codes.count("locked_out") == guesses - staff.PAIR_FAILURES, codes
    locked = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD})
    assert locked.status_code == 429 and code_of(locked) == "locked_out"
    assert (
        browser(server.url).post("/backoffice/sign-in", data={"staff_id": "admin", "password": PASSWORD}).status_code
        == 303
    )
    with hq.db.read() as tx:
        counted = tx.all("SELECT subject, COUNT(*) FROM staff_signin_failures GROUP BY subject ORDER BY subject")
    assert [(str(s), int(n)) for s, n in counted] == [
        ("pair:finance@127.0.0.1", staff.PAIR_FAILURES),
        ("source:127.0.0.1", staff.PAIR_FAILURES),
        ("staff:finance", staff.PAIR_FAILURES),
    ]


def test_sign_out_a_disabled_account_and_idle_or_old_sessions_end(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    client, csrf = signed_in(server.url, "finance")
    token = client.cookies["tp_staff"]
    assert client.post("/backoffice/sign-out", data={"csrf": csrf}).status_code == 303
    assert with_cookie(server.url, token).get("/backoffice/").status_code == 303

    client, _ = signed_in(server.url, "auditor")
    admin, csrf = signed_in(server.url, "admin")
    with hq.db.read() as tx:
        assert staff.known_sources(tx, "auditor") == 1
    assert admin.post("/backoffice/staff/auditor/disable", data={"csrf": csrf, "reason": "left"}).status_code == 303
    with hq.db.read() as tx:  # enabled again one day, it is tried from addresses it signs in from then
        assert staff.known_sources(tx, "auditor") == 0
        record = tx.one("SELECT details FROM audit_log WHERE action = 'staff_disable' ORDER BY seq DESC")
    assert record is not None and json.loads(str(record[0]))["known_sources"] == 1
    assert client.get("/backoffice/").status_code == 303
    disabled = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "auditor", "password": PASSWORD})
    assert disabled.status_code == 401

    who = staff.Staff("market", "Mia", Role.MARKETING, frozenset())
    started = 1_000_000
    token = hq.db.transact(lambda tx: sessions.start(tx, who, started))
    found: list[Any] = []
    for at in (started + sessions.IDLE_S - 1, started + 2 * sessions.IDLE_S - 2):
        found.append(hq.db.transact(lambda tx, at=at: sessions.find(tx, token, at)))
    assert all(s is not None for s in found)  # each request restarts the idle clock
    assert hq.db.transact(lambda tx: sessions.find(tx, token, started + 3 * sessions.IDLE_S)) is None
    token = hq.db.transact(lambda tx: sessions.start(tx, who, started))
    at = started
    while at + sessions.IDLE_S // 2 < started + sessions.ABSOLUTE_S:
        at += sessions.IDLE_S // 2
        assert hq.db.transact(lambda tx, at=at: sessions.find(tx, token, at)) is not None
    assert hq.db.transact(lambda tx: sessions.find(tx, token, started + sessions.ABSOLUTE_S)) is None


def test_a_campaign_launch_asked_on_the_page_starts_when_someone_else_approves_it(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    hq, _, server = office
    segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 1000000}}, "test")
    spec = {
        "name": "Spring <b>push</b>",
        "segment": "everyone",
        "variants": [{"variant": "yen100", "coupon": {"kind": "amount_off", "value": 100}}],
        "schedule": {"kind": "daily", "at": "09:00"},
    }
    market, csrf = signed_in(server.url, "market")
    bad = market.post(
        "/backoffice/campaigns/launch", data={"csrf": csrf, "campaign_id": "spring", "spec": "{not json", "reason": "r"}
    )
    assert bad.status_code == 422 and code_of(bad) == "campaign_invalid"
    asked = market.post(
        "/backoffice/campaigns/launch",
        data={"csrf": csrf, "campaign_id": "spring", "spec": json.dumps(spec), "reason": "spring push"},
    )
    assert asked.status_code == 303 and "request=AR-" in asked.headers["location"]
    listing = market.get("/backoffice/campaigns")
    assert "spring push" in listing.text and 'data-id="spring"' not in listing.text
    request_id = re.search(r"AR-[0-9a-f]{16}", asked.headers["location"]).group(0)  # type: ignore[union-attr]
    own = market.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": csrf})
    assert own.status_code == 403 and code_of(own) == "own_request"
    admin, admin_csrf = signed_in(server.url, "admin")
    assert "Spring &lt;b&gt;push&lt;/b&gt;" in admin.get("/backoffice/approvals").text
    assert admin.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": admin_csrf}).status_code == 303
    listing = market.get("/backoffice/campaigns")
    assert 'data-id="spring"' in listing.text and "Spring &lt;b&gt;push&lt;/b&gt;" in listing.text
    assert 'class="not-served"' not in listing.text
    with hq.db.read() as tx:
        assert tx.one("SELECT state, created_by FROM campaigns WHERE campaign_id = 'spring'") == ("active", "market")

    # one an earlier release stored that today's rules refuse is shown as not served, with why
    uncapped = {**spec, "schedule": {"kind": "checkin"}, "variants": [{"variant": "p", "points": 50}]}
    hq.db.transact(
        lambda tx: tx.run(
            "INSERT INTO campaigns (campaign_id, name, spec, state, created_by, created_at, updated_at, version) "
            "VALUES ('door', 'Door', ?, 'active', 'test', 'then', 'then', 1)",
            [json.dumps(uncapped)],
        )
    )
    row = re.search(r'<tr data-id="door">.*?</tr>', market.get("/backoffice/campaigns").text, re.S)
    assert row is not None and 'class="not-served"' in row.group(0) and "max_per_store_day" in row.group(0)


def test_a_member_of_staff_changes_its_own_password_so_the_one_who_set_it_knows_it_no_more(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """The administrator resets finance's password on the staff page, so its request is finance's own hands
    (``own_request``). Finance changes its password on its own page (the current one, the new one twice, from
    its page with its CSRF token); refusals change nothing; then every session of finance has ended, only the
    new password signs in, and finance approves the administrator's request."""
    hq, _, server = office
    given, mine = "the one admin gave", "only finance knows this"
    admin, admin_csrf = signed_in(server.url, "admin")
    reset = {"csrf": admin_csrf, "password": given, "reason": "forgot it"}
    assert admin.post("/backoffice/staff/finance/password", data=reset).status_code == 303
    asked = {"csrf": admin_csrf, "points": "0", "stored_value": "300", "reason": "refund by hand"}
    assert admin.post("/backoffice/members/M-S1/adjust", data=asked).status_code == 303
    with hq.db.read() as tx:
        (row,) = tx.all("SELECT request_id FROM approvals WHERE state = 'pending'")
    request_id = str(row[0])

    def finance_with(password: str) -> httpx.Response:
        return browser(server.url).post("/backoffice/sign-in", data={"staff_id": "finance", "password": password})

    finance = browser(server.url)
    assert finance.post("/backoffice/sign-in", data={"staff_id": "finance", "password": given}).status_code == 303
    form = finance.get("/backoffice/password")
    assert form.status_code == 200 and 'id="own-password-form"' in form.text
    csrf = csrf_of(form.text)
    own = finance.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": csrf})
    assert own.status_code == 403 and code_of(own) == "own_request"
    change = {"csrf": csrf, "current_password": given, "new_password": mine, "new_password_again": mine}
    for sent, code in (
        ({**change, "csrf": "forged"}, "bad_csrf"),
        ({**change, "new_password_again": mine + "!"}, "passwords_differ"),
        ({**change, "new_password": "short", "new_password_again": "short"}, "bad_staff"),
        ({**change, "current_password": "not the one"}, "bad_credentials"),
    ):
        refused = finance.post("/backoffice/password", data=sent)
        assert code_of(refused) == code and refused.status_code in (401, 403, 422), (code, refused.status_code)
    foreign = finance.post("/backoffice/password", data=change, headers={"Origin": "http://127.0.0.1:9"})
    assert code_of(foreign) == "bad_origin"
    assert finance.get("/backoffice/").status_code == 200  # nothing changed: still signed in

    done = finance.post("/backoffice/password", data=change)
    assert done.status_code == 303 and done.headers["location"] == "/backoffice/sign-in?changed=1"
    assert finance.get("/backoffice/").status_code == 303  # every session of it ended
    assert code_of(finance_with(given)) == "bad_credentials"
    client, csrf = browser(server.url), ""
    assert client.post("/backoffice/sign-in", data={"staff_id": "finance", "password": mine}).status_code == 303
    csrf = csrf_of(client.get("/backoffice/").text)
    assert client.post(f"/backoffice/approvals/{request_id}/approve", data={"csrf": csrf}).status_code == 303
    with hq.db.read() as tx:
        assert audit.last_actor(tx, "finance", staff.PASSWORD_SET) == "finance"
        assert tx.one("SELECT state, decided_by FROM approvals WHERE request_id = ?", [request_id]) == (
            "approved",
            "finance",
        )


def test_an_administrators_session_alone_does_not_set_its_own_password_on_the_staff_page(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """A browser left signed in as an administrator: whoever sits at it holds the session, not the password. Its own
    password is changed on Your password, with the current one; the staff page offers no reset of one's own and
    refuses it posted directly (``own_password_reset``), nothing changed or audited, and the owner still signs in with
    theirs. Another administrator resets it there as before."""
    hq, _, server = office
    admin, csrf = signed_in(server.url, "admin")
    page = admin.get("/backoffice/staff")
    assert 'action="/backoffice/staff/admin/password"' not in page.text
    assert 'action="/backoffice/staff/finance/password"' in page.text
    records = audit.verify(hq.db).records
    taken = {"csrf": csrf, "password": "the one at the desk chose", "reason": "mine now"}
    own = admin.post("/backoffice/staff/admin/password", data=taken)
    assert own.status_code == 403 and code_of(own) == "own_password_reset"
    assert audit.verify(hq.db).records == records
    thief = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "admin", "password": taken["password"]})
    assert code_of(thief) == "bad_credentials"
    assert admin.get("/backoffice/").status_code == 200  # nothing ended: the owner's session and password stand
    owner = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "admin", "password": PASSWORD})
    assert owner.status_code == 303
    other, other_csrf = signed_in(server.url, "admin2")
    reset = {"csrf": other_csrf, "password": "admin2 set this one", "reason": "forgot it"}
    assert other.post("/backoffice/staff/admin/password", data=reset).status_code == 303
    again = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "admin", "password": reset["password"]})
    assert again.status_code == 303


def test_password_guesses_from_every_address_of_an_ipv6_network_lock_that_network(
    office: tuple[HqStore, dict[str, Staff], ServerHandle],
) -> None:
    """Fifty wrong passwords from one address lock it; an IPv6 host picks any address of its /64 network, so the
    network is the address counted. (Head office behind a reverse proxy on the same machine: X-Forwarded-For.)"""
    _, _, server = office
    client = browser(server.url)
    for n in range(staff.SOURCE_FAILURES):
        guess = {"staff_id": f"guess{n}", "password": "not it at all"}
        wrong = client.post("/backoffice/sign-in", data=guess, headers={"X-Forwarded-For": f"2001:db8:7::{n + 1:x}"})
        assert wrong.status_code == 401 and code_of(wrong) == "bad_credentials"
    right = {"staff_id": "admin", "password": PASSWORD}
    locked = client.post("/backoffice/sign-in", data=right, headers={"X-Forwarded-For": "2001:db8:7::ffff"})
    assert locked.status_code == 429 and code_of(locked) == "locked_out"
    other = browser(server.url).post("/backoffice/sign-in", data=right, headers={"X-Forwarded-For": "2001:db8:8::1"})
    assert other.status_code == 303
