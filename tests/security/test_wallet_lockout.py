"""Whoever knows a member's contact against a real head-office process (``hq serve``, the file sender): asking
for the member's codes and typing wrong ones from many addresses (head office reads them from X-Forwarded-For,
as behind its reverse proxy) closes sign-in by code for that contact in the lane every unknown browser shares,
and guesses there stay bounded whatever the addresses and cookies; the member's own phone, which signed in
with a code before, keeps its own lane and signs in (over HTTP, and in Chromium through the pages)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.wallet import signin
from tests.api.stack import chromium, chromium_missing
from tests.fixtures.hq import HqProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

AIKO, MALLORY = "aiko@example.com", "mallory@example.com"
DEVICE_COOKIE = "tp_wallet_device"


class Office:
    def __init__(self, tmp: Path) -> None:
        self.outbox = tmp / "outbox"
        self.proc = HqProcess(tmp, extra=("--wallet-sender", f"file:{self.outbox}"))
        self.proc.cli("add-member", "M-A", "Aiko")
        self.proc.cli("contact", "M-A", "--email", AIKO)
        self.proc.cli("add-member", "M-X", "Mallory")
        self.proc.cli("contact", "M-X", "--email", MALLORY)
        self.proc.start()
        self.seen: dict[str, int] = {}

    def client(self) -> httpx.Client:
        url = self.proc.url
        return httpx.Client(base_url=url, headers={"Origin": url}, timeout=10, follow_redirects=False)

    def sent(self, to: str) -> list[str]:
        return [m["code"] for p in sorted(self.outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == to]

    def last_code(self, to: str) -> str:
        before = self.seen.get(to, 0)
        codes = wait_until(lambda: (found := self.sent(to)) and len(found) > before and found, 5.0, f"a code for {to}")
        self.seen[to] = len(codes)
        return str(codes[-1])


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    found = Office(tmp_path)
    yield found
    found.proc.kill()


def error_code(reply: httpx.Response) -> str:
    found = re.search(r'data-code="([a-z_]*)"', reply.text)
    return found.group(1) if found else ""


def ask(client: httpx.Client, contact: str, address: str = "") -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post("/wallet/sign-in/code", data={"contact": contact}, headers=headers)


def type_code(client: httpx.Client, contact: str, code: str, address: str = "") -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post("/wallet/sign-in", data={"contact": contact, "code": code}, headers=headers)


def sign_in(office: Office, client: httpx.Client, contact: str) -> None:
    assert ask(client, contact).status_code == 200
    signed = type_code(client, contact, office.last_code(contact))
    assert signed.status_code == 303, signed.text


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


def close_contact(office: Office, contact: str) -> tuple[list[tuple[int, str]], str]:
    """A botnet's attack on ``contact``: from fresh addresses, browsers with no cookie, one with a made-up device
    cookie and one with the attacker's own member's device cookie ask for codes and type wrong ones until
    nothing more is made or checked. Returns every answer to a typed code, and the attacker's own device cookie."""
    answers: list[tuple[int, str]] = []
    with office.client() as mallory:
        sign_in(office, mallory, MALLORY)  # the attacker's own membership: a device cookie of its own
        own = mallory.cookies.get(DEVICE_COOKIE) or ""
        browsers = [office.client(), office.client(), mallory]
        browsers[1].cookies.set(DEVICE_COOKIE, "made-up-device-token")
        for n in range(8):
            bot = browsers[n % len(browsers)]
            asked = ask(bot, contact, f"198.51.100.{n + 1}")
            if asked.status_code != 200:
                assert asked.status_code == 429 and error_code(asked) in (
                    "wallet_guesses_limited",
                    "wallet_rate_limited",
                )
                continue
            right = office.last_code(contact)
            for m in range(signin.MAX_ATTEMPTS):
                tried = type_code(bot, contact, wrong(right), f"203.0.113.{10 * n + m + 1}")
                answers.append((tried.status_code, error_code(tried)))
        for bot in browsers[:2]:
            bot.close()
    return answers, own


def test_a_stranger_closing_a_contact_keeps_the_member_out_of_no_phone_it_signed_in_on(office: Office) -> None:
    """Aiko signed in on her phone once and signed out. She asks for a code on it; then a botnet closes her
    contact: its codes and wrong ones stop at the bound, a new browser of hers is refused, but her phone signs
    in with the code it asked for before the attack, and with a new one asked after it, from an address someone
    else spent on other contacts."""
    with office.client() as phone, office.client() as new_browser:
        sign_in(office, phone, AIKO)
        assert phone.post("/wallet/sign-out").status_code == 303
        assert ask(phone, AIKO).status_code == 200
        before = office.last_code(AIKO)

        answers, _ = close_contact(office, AIKO)
        per_code = [(401, "wallet_code_wrong")] * (signin.MAX_ATTEMPTS - 1)
        assert answers == [*per_code, (429, "wallet_too_many_attempts"), *per_code, (429, "wallet_guesses_limited")]
        refused = ask(new_browser, AIKO, "192.0.2.7")
        assert refused.status_code == 429 and error_code(refused) in ("wallet_guesses_limited", "wallet_rate_limited")

        signed = type_code(phone, AIKO, before)
        assert signed.status_code == 303 and signed.headers["location"] == "/wallet/", signed.text
        assert phone.get("/wallet/").status_code == 200
        assert phone.post("/wallet/sign-out").status_code == 303
        cafe = "192.0.2.50"  # someone sharing her address spends it on other contacts: her phone still asks there
        for n in range(signin.MAX_CODES_FROM):
            assert ask(new_browser, f"someone{n}@example.com", cafe).status_code == 200
        assert ask(new_browser, "someone-else@example.com", cafe).status_code == 429
        assert ask(phone, AIKO, cafe).status_code == 200
        assert type_code(phone, AIKO, office.last_code(AIKO)).status_code == 303


def test_a_botnet_gets_a_bounded_number_of_guesses_and_of_messages_whatever_its_cookies(office: Office) -> None:
    """Guesses from many addresses, with no cookie, a made-up device cookie and a member's own device cookie
    for another contact: all count in the one shared lane, ``MAX_MISSES`` checked, then not even the right code
    is; the contact got no more codes than the quarter hour allows."""
    answers, own = close_contact(office, AIKO)
    assert own  # the attacker signed in as its own member: its device cookie opens no lane for Aiko's contact
    assert (
        len([a for a in answers if a[1] in ("wallet_code_wrong", "wallet_too_many_attempts")]) + 1 == signin.MAX_MISSES
    )
    assert answers[-1] == (429, "wallet_guesses_limited")
    assert len(office.sent(AIKO)) <= signin.MAX_CODES
    right = office.sent(AIKO)[-1]
    with office.client() as bot:
        late = type_code(bot, AIKO, right, "192.0.2.99")
    assert late.status_code == 429 and error_code(late) == "wallet_guesses_limited"


@pytest.mark.browser
def test_the_member_signs_in_through_the_pages_on_her_phone_while_her_contact_is_closed(office: Office) -> None:
    """In Chromium: Aiko signed in on her phone before; a botnet closes her contact; on the phone the sign-in page
    asks for the code and lands on the overview, while a new browser's page says why it is refused (and that a
    phone she signed in on before still can). Nothing is loaded from anywhere but head office."""
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    url = office.proc.url
    requested: list[str] = []
    with chromium() as browser:
        phone = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-GB")
        phone.on("request", lambda r: requested.append(r.url))
        page = phone.new_page()
        page.set_default_timeout(10_000)

        def page_sign_in() -> None:
            page.goto(f"{url}/wallet/sign-in")
            page.fill("#contact", AIKO)
            page.click("#contact-form button")
            page.wait_for_selector("#code-form")
            page.fill("#code", office.last_code(AIKO))
            page.click("#code-form button")
            page.wait_for_selector("body[data-page=overview]")

        page_sign_in()
        page.click("#sign-out")
        page.wait_for_selector("#contact-form")
        close_contact(office, AIKO)

        other = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-GB")
        stranger = other.new_page()
        stranger.set_default_timeout(10_000)
        stranger.goto(f"{url}/wallet/sign-in")
        stranger.fill("#contact", AIKO)
        stranger.click("#contact-form button")
        error = stranger.wait_for_selector("#error[data-code]")
        assert error.get_attribute("data-code") in ("wallet_guesses_limited", "wallet_rate_limited")
        assert "signed in on before" in error.inner_text()
        other.close()

        page_sign_in()
        assert page.locator("body[data-page=overview]").count() == 1
        phone.close()
    assert requested and all(r.startswith(url) for r in requested), requested
