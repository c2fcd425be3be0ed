"""The second factor of staff sign-in over HTTP against a real head-office server on 127.0.0.1, on SQLite and
PostgreSQL, with codes computed by pyotp as an authenticator app does: enrolment keeps the secret only after a
code of it; then a password alone reaches no page; a code is used once; wrong codes count in the sign-in
bounds; a recovery code signs in once; a role the policy names reaches nothing but enrolment until it enrols;
an administrator resets another's second factor, not its own, on the page and from the command line."""

from __future__ import annotations

import json
import re
import time

import httpx
import pyotp
import pytest
from typer.testing import CliRunner

from hq import audit
from hq.api import backoffice as web
from hq.api.server import ServerHandle
from hq.backoffice import factors, otp, staff
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Role, may
from hq.backoffice.staff import Staff
from hq.cli import app as hq_commands
from hq.store import HqStore
from tests.backoffice.chain import PASSWORD
from tests.backoffice.test_web import browser, code_of, csrf_of, filled, signed_in

Office = tuple[HqStore, dict[str, Staff], ServerHandle]


def issued(hq: HqStore, staff_id: str, now: int | None = None) -> str:
    """An enrolment code an administrator issues for ``staff_id`` (at ``now``, else now)."""
    at = int(time.time()) if now is None else now
    code, _ = hq.db.transact(lambda tx: factors.issue_enrol_code(tx, "admin", staff_id, "new phone", at))
    return code


def enrol_form(client: httpx.Client) -> tuple[dict[str, str], pyotp.TOTP]:
    """The hidden fields of the enrolment page's form (its CSRF token, the secret, when it was made, its seal)
    and the authenticator of the secret it shows."""
    page = client.get("/backoffice/second-factor")
    assert page.status_code == 200 and "<svg" in page.text, page.text[:500]
    found = re.search(r'id="second-factor-secret">([A-Z2-7 ]+)<', page.text)
    assert found, page.text[:1000]
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))
    assert hidden.keys() == {"csrf", "secret", "made_at", "seal"}, hidden
    return hidden, pyotp.TOTP(found.group(1).replace(" ", ""))


def send_enrol(client: httpx.Client, hidden: dict[str, str], totp: pyotp.TOTP, enrol_code: str) -> httpx.Response:
    return client.post("/backoffice/second-factor", data={**hidden, "code": totp.now(), "enrol_code": enrol_code})


def enrol(client: httpx.Client, enrol_code: str) -> tuple[pyotp.TOTP, list[str]]:
    """The signed-in ``client`` sets up its second factor from its page with ``enrol_code``: the secret read
    as the page shows it, the first code computed from it; returns the authenticator and the recovery codes."""
    csrf, totp = enrol_form(client)
    done = send_enrol(client, csrf, totp, enrol_code)
    assert done.status_code == 200 and 'id="recovery-codes"' in done.text, done.text[:500]
    codes = re.findall(r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>", done.text)
    assert len(codes) == otp.RECOVERY_CODES
    return totp, codes


def password_only(url: str, staff_id: str) -> tuple[httpx.Client, str]:
    """A client past the password alone, and the CSRF token of the page asking for the code."""
    client = browser(url)
    reply = client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": PASSWORD})
    assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/", reply.text[:500]
    sent = client.get("/backoffice/")
    assert sent.status_code == 303 and sent.headers["location"] == "/backoffice/sign-in/code"
    return client, csrf_of(client.get("/backoffice/sign-in/code").text)


def later(totp: pyotp.TOTP) -> str:
    """The code of the next step (accepted: one step either side), not the one enrolment used."""
    return totp.at(time.time() + otp.STEP_S)


def reaches_no_page(client: httpx.Client, role: Role, sent_to: str, code: str) -> None:
    """Every page the role may open sends ``client`` to ``sent_to``; every change it may make is refused."""
    for method, path in sorted(web.ACTIONS):
        if not any(may(role, action) for action in web.ACTIONS[(method, path)]):
            continue
        reply = client.request(method, filled(path), data={"reason": "r"})
        if method == "GET":
            assert reply.status_code == 303 and reply.headers["location"] == sent_to, (path, reply.status_code)
        else:
            assert reply.status_code in (401, 403) and code_of(reply) == code, (path, reply.status_code)
    home = client.get("/backoffice/")
    assert home.status_code == 303 and home.headers["location"] == sent_to


def test_after_enrolling_a_stolen_password_alone_reaches_no_page(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "finance")
    totp, _ = enrol(owner, issued(hq, "finance"))
    with hq.db.read() as tx:
        assert factors.enrolled(tx, "finance")
        stored = tx.one("SELECT secret FROM staff_totp WHERE staff_id = 'finance'")
        assert stored is not None and str(stored[0]) == totp.secret
        assert [r.action for r in audit.recent(tx, 5)][:1] == ["staff_2fa_enrol"]

    thief, _ = password_only(server.url, "finance")
    reaches_no_page(thief, Role.FINANCE, "/backoffice/sign-in/code", "second_factor_required")
    assert thief.get("/backoffice/second-factor").headers["location"] == "/backoffice/sign-in/code"

    client, csrf = password_only(server.url, "finance")
    reply = client.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": later(totp)})
    assert reply.status_code == 303 and reply.headers["location"] == "/backoffice/"
    assert client.get("/backoffice/").status_code == 200
    assert client.get("/backoffice/settlement").status_code == 200


def test_a_code_is_used_once_and_a_replayed_one_is_refused(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "admin")
    totp, _ = enrol(owner, issued(hq, "admin"))
    code = later(totp)
    first, csrf = password_only(server.url, "admin")
    assert first.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": code}).status_code == 303
    replayed, csrf = password_only(server.url, "admin")
    reply = replayed.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": code})
    assert reply.status_code == 401 and code_of(reply) == "code_used"
    older = replayed.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": totp.now()})
    assert older.status_code == 401 and code_of(older) == "code_used"  # the step enrolment used
    assert replayed.get("/backoffice/").headers["location"] == "/backoffice/sign-in/code"
    assert first.get("/backoffice/").status_code == 200


def test_guessing_codes_hits_the_sign_in_bounds(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "admin")
    totp, _ = enrol(owner, issued(hq, "admin"))
    right = later(totp)
    wrong = [f"{(int(right) + n) % 10**6:06d}" for n in range(1, 40)]
    wrong = [w for w in wrong if w not in (totp.now(), right, totp.at(time.time() - otp.STEP_S))]
    guesser, csrf = password_only(server.url, "admin")
    for guess in wrong[: staff.PAIR_FAILURES]:
        reply = guesser.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": guess})
        assert reply.status_code == 401 and code_of(reply) == "bad_code", guess
    reply = guesser.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": right})
    assert reply.status_code == 429 and code_of(reply) == "locked_out"  # the right code is not even tried
    again = browser(server.url).post("/backoffice/sign-in", data={"staff_id": "admin", "password": PASSWORD})
    assert again.status_code == 429 and code_of(again) == "locked_out"
    with hq.db.read() as tx:
        assert staff.failures(tx, "admin", int(time.time())) == staff.PAIR_FAILURES


def test_a_recovery_code_signs_in_once(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "finance")
    _, codes = enrol(owner, issued(hq, "finance"))
    with hq.db.read() as tx:
        kept = [str(r[0]) for r in tx.all("SELECT code_hash FROM staff_recovery_codes WHERE staff_id = 'finance'")]
    assert len(kept) == otp.RECOVERY_CODES and all(h.startswith("scrypt$") for h in kept)
    assert not any(c.replace("-", "") in h for c in codes for h in kept)
    client, csrf = password_only(server.url, "finance")
    assert client.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": codes[3].upper()}).status_code == 303
    assert client.get("/backoffice/").status_code == 200
    again, csrf = password_only(server.url, "finance")
    reply = again.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": codes[3]})
    assert reply.status_code == 401 and code_of(reply) == "bad_code"
    with hq.db.read() as tx:
        assert factors.state(tx, "finance").recovery_left == otp.RECOVERY_CODES - 1


def test_under_the_policy_a_finance_account_without_a_second_factor_reaches_only_enrolment(office: Office) -> None:
    hq, _, server = office
    already, _ = signed_in(server.url, "finance")  # a session from before the policy
    hq.db.transact(lambda tx: factors.set_policy(tx, "admin", factors.MONEY_ROLES, "money moves"))
    client = browser(server.url)
    reply = client.post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD})
    assert reply.status_code == 303
    for session in (client, already):
        reaches_no_page(session, Role.FINANCE, "/backoffice/second-factor", "enrol_required")
    signed_in(server.url, "market")[0].get("/backoffice/campaigns").raise_for_status()  # marketing is not named
    enrol(client, issued(hq, "finance"))
    assert client.get("/backoffice/settlement").status_code == 200
    assert client.get("/backoffice/holds").status_code == 200


def test_an_admin_resets_anothers_second_factor_not_its_own(office: Office, hq_url: str) -> None:
    hq, _, server = office
    totp, _ = enrol(signed_in(server.url, "finance")[0], issued(hq, "finance"))
    admin, _ = signed_in(server.url, "admin")
    enrol(admin, issued(hq, "admin"))
    client, csrf = password_only(server.url, "admin")
    assert (
        client.post(
            "/backoffice/sign-in/code", data={"csrf": csrf, "code": later(pyotp.TOTP(_secret(hq, "admin")))}
        ).status_code
        == 303
    )
    page = client.get("/backoffice/staff")
    csrf = csrf_of(page.text)
    assert 'action="/backoffice/staff/admin/second-factor"' not in page.text
    own = client.post("/backoffice/staff/admin/second-factor", data={"csrf": csrf, "reason": "lost phone"})
    assert own.status_code == 403 and code_of(own) == "own_second_factor"
    done = client.post("/backoffice/staff/finance/second-factor", data={"csrf": csrf, "reason": "lost phone"})
    assert done.status_code == 303
    with hq.db.read() as tx:
        assert not factors.enrolled(tx, "finance") and factors.enrolled(tx, "admin")
        record = audit.recent(tx, 1)[0]
    assert (record.actor, record.action, record.target, record.reason) == (
        "admin",
        "staff_2fa_reset",
        "finance",
        "lost phone",
    )
    assert signed_in(server.url, "finance")[0].get("/backoffice/").status_code == 200  # password alone again

    status, out = _cli(hq_url, "staff", "reset-2fa", "admin", "--reason", "left the company's phone")
    assert status == 0 and json.loads(out) == {"staff_id": "admin", "second_factor": "reset"}
    assert _cli(hq_url, "staff", "reset-2fa", "admin")[0] == 1  # none left
    assert client.get("/backoffice/").status_code == 303  # its sessions ended
    status, out = _cli(hq_url, "staff", "require-2fa")
    assert status == 0 and json.loads(out) == {"roles": sorted(r.value for r in factors.MONEY_ROLES)}
    with hq.db.read() as tx:
        assert factors.policy(tx) == factors.MONEY_ROLES
        assert [(r.actor, r.action) for r in audit.recent(tx, 2)] == [
            ("command line", "staff_2fa_policy"),
            ("command line", "staff_2fa_reset"),
        ]
    assert _cli(hq_url, "staff", "require-2fa", "owner")[0] == 1
    del totp


def test_a_stolen_password_cannot_enrol_a_phone_nor_see_the_owners_secret(office: Office) -> None:
    hq, _, server = office
    hq.db.transact(lambda tx: factors.set_policy(tx, "admin", factors.MONEY_ROLES, "money moves"))
    owner = browser(server.url)
    assert owner.post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD}).status_code == 303
    owner_csrf, owner_totp = enrol_form(owner)
    thief = browser(server.url)
    assert thief.post("/backoffice/sign-in", data={"staff_id": "finance", "password": PASSWORD}).status_code == 303
    csrf, totp = enrol_form(thief)
    assert totp.secret != owner_totp.secret  # a secret shown to one session only
    code = issued(hq, "finance")  # handed to the owner
    for typed, refusal in (("", "enrol_code_required"), (otp.new_enrol_code(), "enrol_code_bad")):
        reply = send_enrol(thief, csrf, totp, typed)
        assert reply.status_code == 200 and f'data-code="{refusal}"' in reply.text, refusal
        assert totp.secret in reply.text  # the same secret still in the form
    with hq.db.read() as tx:
        assert not factors.enrolled(tx, "finance")
        assert tx.one("SELECT 1 FROM staff_totp WHERE staff_id = 'finance'") is None
    reaches_no_page(thief, Role.FINANCE, "/backoffice/second-factor", "enrol_required")

    wrong = owner.post("/backoffice/second-factor", data={**owner_csrf, "code": "not a code", "enrol_code": code})
    assert 'data-code="bad_code"' in wrong.text  # the enrolment code is kept for a right try
    assert send_enrol(owner, owner_csrf, owner_totp, code.upper()).status_code == 200
    assert _secret(hq, "finance") == owner_totp.secret
    assert owner.get("/backoffice/settlement").status_code == 200
    again = send_enrol(thief, csrf, totp, code)
    assert again.status_code == 409 and code_of(again) == "already_enrolled"


def test_a_stolen_administrators_password_cannot_issue_its_own_enrolment_code(office: Office) -> None:
    """No policy requires a second factor, so an administrator's password alone reaches the staff page: its owner's
    account has none yet, and the thief would issue it an enrolment code there and put their own phone on it (the
    owner then kept out by the thief's codes). The staff page offers no code for one's own account and refuses it
    posted directly (``own_enrol_code``), nothing kept or audited; another administrator issues it."""
    hq, _, server = office
    thief, csrf = signed_in(server.url, "admin")
    page = thief.get("/backoffice/staff").text
    assert 'action="/backoffice/staff/admin/enrol-code"' not in page
    assert 'action="/backoffice/staff/finance/enrol-code"' in page
    with hq.db.read() as tx:
        audited = len(audit.recent(tx, 1000))
    own = thief.post("/backoffice/staff/admin/enrol-code", data={"csrf": csrf, "reason": "new phone"})
    assert own.status_code == 403 and code_of(own) == "own_enrol_code" and 'id="enrol-code"' not in own.text
    with hq.db.read() as tx:
        assert tx.one("SELECT 1 FROM staff_enrol_codes WHERE staff_id = 'admin'") is None
        assert len(audit.recent(tx, 1000)) == audited
    other, other_csrf = signed_in(server.url, "admin2")
    given = other.post("/backoffice/staff/admin/enrol-code", data={"csrf": other_csrf, "reason": "new phone"})
    assert given.status_code == 200 and 'id="enrol-code"' in given.text


def test_an_enrolment_code_is_audited_hashed_used_once_and_expires(office: Office, hq_url: str) -> None:
    hq, _, server = office
    status, out = _cli(hq_url, "staff", "enrol-2fa-code", "finance", "--reason", "new phone")
    assert status == 0, out
    shown = json.loads(out)
    code, now = shown["enrol_code"], int(time.time())
    assert shown["staff_id"] == "finance" and now < shown["expires_at"] <= now + factors.ENROL_CODE_S
    with hq.db.read() as tx:
        record = audit.recent(tx, 1)[0]
        kept = tx.one("SELECT code_hash FROM staff_enrol_codes WHERE staff_id = 'finance'")
    assert (record.actor, record.action, record.target, record.reason) == (
        "command line",
        "staff_2fa_enrol_code",
        "finance",
        "new phone",
    )
    assert kept is not None and otp.recovery_typed(code) not in str(kept[0]) and code not in str(kept[0])
    assert _cli(hq_url, "staff", "enrol-2fa-code", "nobody")[0] == 1

    client, _ = signed_in(server.url, "finance")
    expired = issued(hq, "market", now - factors.ENROL_CODE_S - 1)
    market, _ = signed_in(server.url, "market")
    csrf, totp = enrol_form(market)
    assert 'data-code="enrol_code_bad"' in send_enrol(market, csrf, totp, expired).text
    enrol(client, code)
    assert _cli(hq_url, "staff", "enrol-2fa-code", "finance")[0] == 1  # enrolled: reset it first
    hq.db.transact(lambda tx: factors.reset(tx, "admin", "finance", "lost phone"))

    client, _ = signed_in(server.url, "finance")
    csrf, totp = enrol_form(client)
    assert 'data-code="enrol_code_bad"' in send_enrol(client, csrf, totp, code).text  # used once
    first, second = issued(hq, "finance"), issued(hq, "finance")
    assert 'data-code="enrol_code_bad"' in send_enrol(client, csrf, totp, first).text  # replaced
    enrol(client, second)
    with hq.db.read() as tx:
        assert factors.enrolled(tx, "finance") and not factors.enrolled(tx, "market")
        assert tx.one("SELECT 1 FROM staff_enrol_codes WHERE staff_id = 'finance'") is None


def test_an_enrolment_code_issued_before_a_disable_or_a_password_reset_is_refused_after(office: Office) -> None:
    hq, _, server = office
    admin, csrf = signed_in(server.url, "admin")
    before_disable, before_reset = issued(hq, "finance"), issued(hq, "market")
    off = admin.post("/backoffice/staff/finance/disable", data={"csrf": csrf, "reason": "left"})
    assert off.status_code == 303
    new = "another long password"
    reset = admin.post("/backoffice/staff/market/password", data={"csrf": csrf, "password": new, "reason": "lost"})
    assert reset.status_code == 303
    hq.db.transact(lambda tx: tx.run("UPDATE staff SET disabled = 0 WHERE staff_id = 'finance'"))  # back on

    finance, _ = signed_in(server.url, "finance")
    market = browser(server.url)
    assert market.post("/backoffice/sign-in", data={"staff_id": "market", "password": new}).status_code == 303
    for client, code in ((finance, before_disable), (market, before_reset)):
        csrf, totp = enrol_form(client)
        assert 'data-code="enrol_code_bad"' in send_enrol(client, csrf, totp, code).text
    with hq.db.read() as tx:
        assert not factors.enrolled(tx, "finance") and not factors.enrolled(tx, "market")
    enrol(market, issued(hq, "market"))  # a code issued after the reset sets one up


def test_no_enrolment_code_is_issued_to_a_disabled_account(office: Office, hq_url: str) -> None:
    """A code issued while the account is off would set up a second factor once it is back on (by whoever then
    holds it): the service, the staff page and the command refuse it (``account_disabled``), nothing kept."""
    hq, _, server = office
    admin, csrf = signed_in(server.url, "admin")
    assert admin.post("/backoffice/staff/finance/disable", data={"csrf": csrf, "reason": "left"}).status_code == 303
    with hq.db.read() as tx:
        audited = len(audit.recent(tx, 1000))
    try:
        issued(hq, "finance")
    except BackofficeRefused as exc:
        assert exc.code is Code.ACCOUNT_DISABLED and exc.status == 409
    else:
        raise AssertionError("an enrolment code was issued to a disabled account")
    reply = admin.post("/backoffice/staff/finance/enrol-code", data={"csrf": csrf, "reason": "new phone"})
    assert reply.status_code == 409 and code_of(reply) == "account_disabled", reply.text[:500]
    assert 'id="enrol-code"' not in reply.text
    status, out = _cli(hq_url, "staff", "enrol-2fa-code", "finance", "--reason", "new phone")
    assert status == 1 and "disabled" in out, out
    with hq.db.read() as tx:
        assert tx.one("SELECT 1 FROM staff_enrol_codes WHERE staff_id = 'finance'") is None
        assert len(audit.recent(tx, 1000)) == audited  # nothing audited as issued

    hq.db.transact(lambda tx: tx.run("UPDATE staff SET disabled = 0 WHERE staff_id = 'finance'"))  # back on
    finance, _ = signed_in(server.url, "finance")
    enrol(finance, issued(hq, "finance"))  # a code issued once it is back on sets one up


def test_a_secret_the_client_chose_or_an_old_pages_is_refused(office: Office) -> None:
    hq, _, server = office
    client, _ = signed_in(server.url, "finance")
    code = issued(hq, "finance")
    hidden, totp = enrol_form(client)
    chosen = pyotp.TOTP("A" * 32)
    aged = hq.db.transact(lambda tx: factors.offer(tx, "finance", int(time.time()) - factors.OFFER_S - 5))
    sent_back = [
        ({**hidden, "secret": chosen.secret}, chosen),  # a secret of its own under the page's seal
        ({**hidden, "secret": chosen.secret, "seal": ""}, chosen),
        ({**hidden, "made_at": str(int(hidden["made_at"]) + 60)}, totp),  # the page's, made younger
        ({**hidden, "seal": enrol_form(signed_in(server.url, "market")[0])[0]["seal"]}, totp),  # another's seal
        ({**hidden, "secret": aged.secret, "made_at": str(aged.made_at), "seal": aged.seal}, pyotp.TOTP(aged.secret)),
        ({**hidden, "seal": "\u00e9" * 64}, totp),  # not ASCII: no TypeError from compare_digest
        ({**hidden, "made_at": "\u00b2"}, totp),  # a digit to str.isdigit, not to int()
    ]
    for sent, authenticator in sent_back:
        reply = send_enrol(client, sent, authenticator, code)
        assert reply.status_code == 403 and code_of(reply) == "bad_secret", sent
    with hq.db.read() as tx:
        assert not factors.enrolled(tx, "finance")
    done = send_enrol(client, hidden, totp, code)  # the page's own, and the enrolment code not used up
    assert done.status_code == 200 and 'id="recovery-codes"' in done.text
    assert _secret(hq, "finance") == totp.secret


def test_an_admin_issues_an_enrolment_code_on_the_staff_page_shown_once_and_audited(office: Office) -> None:
    hq, _, server = office
    admin, csrf = signed_in(server.url, "admin")
    assert 'action="/backoffice/staff/finance/enrol-code"' in admin.get("/backoffice/staff").text
    reply = admin.post("/backoffice/staff/finance/enrol-code", data={"csrf": csrf, "reason": "new phone"})
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    found = re.search(r'id="enrol-code">([^<]+)<', reply.text)
    assert found, reply.text[:1000]
    code = found.group(1)
    with hq.db.read() as tx:
        record = audit.recent(tx, 1)[0]
    assert (record.actor, record.action, record.target, record.reason) == (
        "admin",
        "staff_2fa_enrol_code",
        "finance",
        "new phone",
    )
    assert code not in admin.get("/backoffice/staff").text  # shown once
    for data, refusal in (({"reason": "r"}, "bad_csrf"), ({"csrf": csrf}, "reason_required")):
        refused = admin.post("/backoffice/staff/market/enrol-code", data=data)
        assert refused.status_code in (403, 422) and code_of(refused) == refusal
    finance, finance_csrf = signed_in(server.url, "finance")
    own = finance.post("/backoffice/staff/finance/enrol-code", data={"csrf": finance_csrf, "reason": "mine"})
    assert own.status_code == 403 and code_of(own) == "forbidden"
    with hq.db.read() as tx:
        assert [r.action for r in audit.recent(tx, 1)] == ["staff_2fa_enrol_code"]
    enrol(finance, code)
    assert 'action="/backoffice/staff/finance/enrol-code"' not in admin.get("/backoffice/staff").text


RECOVERY_FORM = "/backoffice/second-factor/recovery"


def _recovery_hashes(hq: HqStore, staff_id: str) -> list[str]:
    with hq.db.read() as tx:
        return [str(r[0]) for r in tx.all("SELECT code_hash FROM staff_recovery_codes WHERE staff_id = ?", [staff_id])]


def _signs_in_with(url: str, staff_id: str, code: str) -> httpx.Response:
    client, csrf = password_only(url, staff_id)
    return client.post("/backoffice/sign-in/code", data={"csrf": csrf, "code": code})


def test_new_recovery_codes_take_a_code_of_the_app_and_replace_every_old_one(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "finance")
    totp, old = enrol(owner, issued(hq, "finance"))
    assert _signs_in_with(server.url, "finance", old[0]).status_code == 303  # one used: nine left
    page = owner.get("/backoffice/second-factor")
    assert 'id="renew-form"' in page.text and 'data-left="9"' in page.text, page.text[:1000]
    csrf = csrf_of(page.text)
    before = _recovery_hashes(hq, "finance")

    # a thief holding the session (or the password and a recovery code) but not the phone makes no new set
    typed_recovery = owner.post(RECOVERY_FORM, data={"csrf": csrf, "code": old[1]})
    assert typed_recovery.status_code == 403 and code_of(typed_recovery) == "app_code_required"
    no_token = owner.post(RECOVERY_FORM, data={"code": later(totp)})
    assert no_token.status_code == 403 and code_of(no_token) == "bad_csrf"
    assert _recovery_hashes(hq, "finance") == before

    code = later(totp)
    done = owner.post(RECOVERY_FORM, data={"csrf": csrf, "code": code})
    assert done.status_code == 200 and 'id="notice"' in done.text, done.text[:1000]
    new = re.findall(r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>", done.text)
    assert len(new) == otp.RECOVERY_CODES and not set(new) & set(old)
    with hq.db.read() as tx:
        assert factors.state(tx, "finance").recovery_left == otp.RECOVERY_CODES
        entry = audit.recent(tx, 1)[0]
        assert (entry.action, entry.actor, entry.target) == ("staff_2fa_recovery_renew", "finance", "finance")
    assert entry.details == {"recovery": otp.RECOVERY_CODES, "replaced_unused": 9}
    assert not any(c.replace("-", "") in h for c in new for h in _recovery_hashes(hq, "finance"))

    replayed = owner.post(RECOVERY_FORM, data={"csrf": csrf, "code": code})  # the step is taken
    assert replayed.status_code == 401 and code_of(replayed) == "code_used"
    assert 'id="recovery-codes"' not in replayed.text  # the codes were shown once
    unused_old = _signs_in_with(server.url, "finance", old[2])
    assert unused_old.status_code == 401 and code_of(unused_old) == "bad_code"
    assert _signs_in_with(server.url, "finance", new[0]).status_code == 303


def test_guessing_codes_for_new_recovery_codes_hits_the_sign_in_bounds(office: Office) -> None:
    hq, _, server = office
    owner, _ = signed_in(server.url, "admin")
    totp, _ = enrol(owner, issued(hq, "admin"))
    csrf = csrf_of(owner.get("/backoffice/second-factor").text)
    before = _recovery_hashes(hq, "admin")
    right = later(totp)
    wrong = [f"{(int(right) + n) % 10**6:06d}" for n in range(1, 40)]
    wrong = [w for w in wrong if w not in (totp.now(), right, totp.at(time.time() - otp.STEP_S))]
    for guess in wrong[: staff.PAIR_FAILURES]:
        reply = owner.post(RECOVERY_FORM, data={"csrf": csrf, "code": guess})
        assert reply.status_code == 401 and code_of(reply) == "bad_code", guess
    reply = owner.post(RECOVERY_FORM, data={"csrf": csrf, "code": right})
    assert reply.status_code == 429 and code_of(reply) == "locked_out"  # the right code is not even tried
    assert _recovery_hashes(hq, "admin") == before
    with hq.db.read() as tx:
        assert staff.failures(tx, "admin", int(time.time())) == staff.PAIR_FAILURES


def test_new_recovery_codes_that_cannot_be_kept_leave_the_old_ones_and_use_up_the_code(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage between checking the code and keeping the new codes (a full disk as they are written): the old codes
    stay whole and sign in, nothing is audited, and the code typed is used (its step was taken first)."""
    hq, team, server = office
    owner, _ = signed_in(server.url, "finance")
    totp, old = enrol(owner, issued(hq, "finance"))
    before = _recovery_hashes(hq, "finance")
    code = later(totp)

    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(factors.audit, "append", disk_full)  # the last write of the transaction keeping them
    with pytest.raises(OSError):
        factors.renew_recovery(hq.db, team["finance"], code, "test", int(time.time()))
    monkeypatch.undo()
    assert _recovery_hashes(hq, "finance") == before
    with hq.db.read() as tx:
        assert audit.recent(tx, 1)[0].action == "staff_2fa_enrol"
    assert factors.renew_recovery(hq.db, team["finance"], code, "test", int(time.time())) == Code.CODE_USED
    assert _signs_in_with(server.url, "finance", old[0]).status_code == 303


def _secret(hq: HqStore, staff_id: str) -> str:
    with hq.db.read() as tx:
        row = tx.one("SELECT secret FROM staff_totp WHERE staff_id = ?", [staff_id])
    assert row is not None
    return str(row[0])


def _cli(url: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(hq_commands, [*args, "--db", url])
    return done.exit_code, done.output
