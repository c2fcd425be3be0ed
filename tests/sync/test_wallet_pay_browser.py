"""Payment codes made in Debian's Chromium (WebCrypto Ed25519, the key in IndexedDB) against a real head-office
server on 127.0.0.1: the page's code is the member-app simulator's byte for byte for the same key, counter and
time; a phone is set up through the wallet's session and its codes pay at a real till (its own store, pulled
certificates, the pure verifier), and are refused when reused, another member's, forged, stale, or made by a
phone removed in the wallet or by head office; a page of another origin cannot set up a phone."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from hq import payments
from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet import signin
from hq.wallet.senders import FileSender
from sync.client import SyncClient
from sync.confirm import confirmer
from terminal import b64url, membercodes
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line
from terminal.qrcodes import qr_text
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import chromium, chromium_missing
from tests.sync.test_wallet_browser import check_page
from tests.waiting import wait_until

PHONE = {"width": 360, "height": 740}
MAKE = """async ([pkcs8, certId, now, counter]) => {
  const key = await crypto.subtle.importKey("pkcs8", new Uint8Array(pkcs8), {name: "Ed25519"}, false, ["sign"]);
  return TillpointPay.makeCode(key, certId, now, counter);
}"""
DEVICE = """async () => {
  const d = await TillpointPay.load();
  if (!d) return null;
  let exported = "exported";
  try { await crypto.subtle.exportKey("pkcs8", d.privateKey); } catch (e) { exported = e.name; }
  return {cert: d.cert, counter: d.counter, extractable: d.privateKey.extractable, exported: exported,
          alg: d.privateKey.algorithm.name};
}"""


@pytest.fixture
def head_office(tmp_path: Path) -> Iterator[tuple[HqStore, ServerHandle]]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.set_rule("base", 1, 100)
    hq.add_terminal("T1", "S1", "till-token")
    hq.add_terminal("T2", "S1", "till-token-2")
    for member, name in (("M-A", "Aiko"), ("M-B", "Ben")):
        hq.upsert_member(member, name, "basic", 0)
        payments.topup(hq, member, 5000, "Mio")
    server = start_in_thread(hq, wallet_sender=FileSender(tmp_path / "outbox"))
    yield hq, server
    server.stop()
    hq.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    with chromium() as found:
        yield found


def signed_in(browser: Any, hq: HqStore, server: ServerHandle, member: str, started: int | None = None) -> Any:
    """A phone-sized page with a live wallet session of ``member`` (begun at ``started``)."""
    at = int(time.time()) if started is None else started
    token = hq.db.transact(lambda tx: signin.open_session(tx, member, "code", at))
    context = browser.new_context(viewport=PHONE, locale="en-GB")
    context.add_cookies([{"name": "tp_wallet", "value": token, "url": server.url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def set_up_phone(page: Any, server: ServerHandle) -> dict[str, Any]:
    page.goto(f"{server.url}/wallet/pay")
    page.wait_for_selector("#pay[data-state=setup]")
    page.click("#pay-setup-button")
    # the browser makes its key and head office signs it: seconds on a loaded machine
    page.wait_for_selector("#pay[data-state=ready]", timeout=60_000)
    device: dict[str, Any] = page.evaluate(DEVICE)
    return device


def shown_code(page: Any, after: str = "", prefix: str = "TPP1:") -> str:
    """The code on the page (a new one, when ``after`` was shown before; of the kind ``prefix`` names)."""
    page.wait_for_function(
        """([before, prefix]) => {
          const c = document.getElementById('pay-code').dataset.code;
          return c && c !== before && c.startsWith(prefix);
        }""",
        arg=[after, prefix],
    )
    return str(page.get_attribute("#pay-code", "data-code"))


class Tills:
    """Tills that pulled head office (the member, the payment key, the certificates) and, while online, ask
    head office to confirm each spend before approving it, as the daemon wires it; closed after the test."""

    def __init__(self, root: Path, server: ServerHandle) -> None:
        self.root, self.server = root, server
        self.open: list[tuple[Store, SyncClient]] = []

    def __call__(self, terminal: str = "T1", token: str = "till-token") -> Service:
        store = Store.open(self.root / terminal / "t.db")
        client = SyncClient(store, terminal, self.server.url, token, timeout=5)
        self.open.append((store, client))
        client.sync_once()
        service = Service(store, terminal)
        service.confirm_online = confirmer(client)
        return service

    def close(self) -> None:
        for store, client in self.open:
            client.close()
            store.close()


@pytest.fixture
def till(head_office: tuple[HqStore, ServerHandle], tmp_path: Path) -> Iterator[Tills]:
    found = Tills(tmp_path / "tills", head_office[1])
    yield found
    found.close()


def pull(service: Service, server: ServerHandle, token: str = "till-token") -> None:
    client = SyncClient(service.store, service.terminal_id, server.url, token, timeout=5)
    client.sync_once()
    client.close()


def spend(service: Service, member: str, code: str, amount: int = 300) -> int:
    quote = service.quote(member, Basket((Line("TEA", 1, amount),)))
    return service.commit(quote, Payment(amount, code)).total


def refusal(service: Service, member: str, code: str) -> Code:
    with pytest.raises(Rejected) as info:
        spend(service, member, code)
    return info.value.code


def test_a_code_made_in_chromium_is_the_simulators_byte_for_byte(
    head_office: tuple[HqStore, ServerHandle], browser: Any
) -> None:
    _, server = head_office
    page = browser.new_page()
    page.goto(f"{server.url}/wallet/pay")
    page.wait_for_selector("#pay[data-state=setup]")
    key = Ed25519PrivateKey.generate()
    pkcs8 = list(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()))
    cert_id = bytes.fromhex("0123456789abcdef")
    issuer = Ed25519PrivateKey.generate()
    cert = pay.issue_cert(issuer, "k1", cert_id, "M-A", pay.public_bytes(key), 1_700_000_000, 10**8, 10_000)
    for now, counter in ((1_800_000_000, 1), (1_800_000_029, 2), (int(time.time()), 4_294_967_295)):
        made = page.evaluate(MAKE, [pkcs8, cert_id.hex(), now, counter])
        assert made == pay.make_code(key, cert_id, now, counter)  # Ed25519 signs deterministically
        code = pay.parse_code(made)
        assert (code.cert_id, code.time_step, code.counter) == (cert_id, now // pay.STEP_SECONDS, counter)
        pay.verify_code(code, cert, now)  # the till's pure verifier
        assert len(made) == len(pay.PREFIX) + 108 and "=" not in made  # 81 bytes in base64url, as documented
        assert page.evaluate("(code) => TillpointPay.qrText(code)", made) == qr_text(made)  # the QR's text
        member = page.evaluate(MAKE.replace("makeCode", "makeMemberCode"), [pkcs8, cert_id.hex(), now, counter])
        assert member == membercodes.device_code(key, cert_id, now, counter)  # the fresh member code, form 2
        assert page.evaluate("(code) => TillpointPay.qrText(code)", member) == qr_text(member)
    # The same bytes with one bit of the signature changed: the verifier refuses the browser's code too.
    made = page.evaluate(MAKE, [pkcs8, cert_id.hex(), 1_800_000_000, 9])
    raw = bytearray(b64url.decode(made[len(pay.PREFIX) :]))
    raw[-1] ^= 1
    with pytest.raises(Rejected) as info:
        pay.verify_code(pay.parse_code(pay.PREFIX + b64url.encode(bytes(raw))), cert, 1_800_000_000)
    assert info.value.code is Code.PAYMENT_CODE_FORGED


def test_a_phone_set_up_in_the_wallet_pays_once_and_the_forged_stale_and_foreign_are_refused(
    head_office: tuple[HqStore, ServerHandle], browser: Any, till: Tills
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    device = set_up_phone(page, server)
    assert device["alg"] == "Ed25519" and device["extractable"] is False and device["exported"] == "InvalidAccessError"
    assert device["cert"]["member_id"] == "M-A" and device["counter"] >= 1
    held = payments.devices(hq, "M-A")
    assert [(d["cert_id"], d["device_key"], d["revoked"]) for d in held] == [
        (device["cert"]["cert_id"], device["cert"]["device_key"], False)
    ]
    first = shown_code(page)
    # Every code shown has a counter above the last (the page also renews the code at each 30 s step, so a
    # step's end during the test may have made one more in between).
    assert pay.parse_code(first).counter >= 1
    assert page.locator("#pay-code[role=img][aria-label]").count() == 1
    assert page.evaluate("() => document.querySelector('#pay-code svg').viewBox.baseVal.width") == 37 + 8  # version 5
    # The list of phones comes from head office after the code is drawn (and once before, while the page
    # opened): wait for the list that names this phone, then count.
    page.wait_for_function(
        "() => document.querySelector('#pay-device-list')?.textContent.includes('(this phone)')", timeout=15_000
    )
    assert page.locator("#pay-device-list li").count() == 1 and "(this phone)" in page.inner_text("#pay-device-list")

    one, two = till(), till("T2", "till-token-2")
    assert spend(one, "M-A", first) == 300
    assert refusal(one, "M-A", first) is Code.PAYMENT_CODE_REPLAYED  # the same till
    assert refusal(two, "M-A", first) is Code.PAYMENT_CODE_REPLAYED  # another till: head office confirms once
    two.confirm_online = None

    page.click("#pay-new")
    second = shown_code(page, first)
    assert pay.parse_code(second).counter > pay.parse_code(first).counter
    assert refusal(two, "M-B", second) is Code.PAYMENT_CODE_FORGED  # made for another member
    raw = bytearray(b64url.decode(second[len(pay.PREFIX) :]))
    raw[-5] ^= 0x40
    assert refusal(two, "M-A", pay.PREFIX + b64url.encode(bytes(raw))) is Code.PAYMENT_CODE_FORGED
    stale = Service(two.store, "T2", clock=lambda: time.time() + 120)
    assert refusal(stale, "M-A", second) is Code.PAYMENT_CODE_EXPIRED
    assert spend(two, "M-A", second) == 300

    # The member code the phone makes itself: the till knows the member from it, offline, and once only.
    page.click("#pay-switch")
    member_code = shown_code(page, second, "TPM2:")
    assert member_code.startswith("TPM2:") and page.inner_text("#pay-title-code") == "Your member code"
    read = two.read_member_code(2, member_code[5:])
    assert read.member_id == "M-A" and read.proof is not None
    assert pay.parse_code(read.proof).counter > pay.parse_code(second).counter
    assert two.read_member_code(2, qr_text(member_code)[5:]).member_id == "M-A"  # what the QR carries
    page.click("#pay-switch")
    assert pay.parse_code(shown_code(page, member_code)).counter > pay.parse_code(read.proof).counter


def test_removing_the_phone_in_the_wallet_stops_its_codes_once_the_till_pulled(
    head_office: tuple[HqStore, ServerHandle], browser: Any, till: Tills
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    device = set_up_phone(page, server)
    kept = shown_code(page)
    service = till()
    page.click("#pay-remove")
    page.wait_for_selector("#pay[data-state=setup]")
    # A renewal that finds the key gone reaches "setup" a moment before the removal shows its notice: wait for it.
    page.wait_for_selector("#pay-removed:not([hidden])")
    assert page.is_visible("#pay-removed") and page.evaluate(DEVICE) is None  # the key is gone from the browser
    assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [True]
    pull(service, server)
    assert service.store.revoked("device", device["cert"]["cert_id"])
    service.confirm_online = None  # offline: the till's own revocation list refuses it
    assert refusal(service, "M-A", kept) is Code.DEVICE_CERT_REVOKED


def test_a_phone_removed_by_head_office_is_refused_and_the_page_forgets_its_key(
    head_office: tuple[HqStore, ServerHandle], browser: Any, till: Tills
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    device = set_up_phone(page, server)
    kept = shown_code(page)
    service = till()
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    cert_id = device["cert"]["cert_id"]
    reply = httpx.post(f"{server.url}/v1/admin/devices/{cert_id}/revoke", json={"reason": "lost"}, headers=admin)
    assert reply.status_code == 200, reply.text
    pull(service, server)
    service.confirm_online = None
    assert refusal(service, "M-A", kept) is Code.DEVICE_CERT_REVOKED
    page.reload()  # online, the page learns the phone was removed and drops the key
    page.wait_for_selector("#pay[data-state=setup]")
    page.wait_for_selector("#pay-removed:not([hidden])")
    assert page.evaluate(DEVICE) is None


def test_setting_up_needs_a_recent_sign_in_and_another_origin_cannot_set_up_a_phone(
    head_office: tuple[HqStore, ServerHandle], browser: Any
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A", started=int(time.time()) - 3600)
    page.goto(f"{server.url}/wallet/pay")
    page.wait_for_selector("#pay[data-state=setup]")
    page.click("#pay-setup-button")
    page.wait_for_selector("#error[data-code=wallet_sign_in_again]")
    assert page.is_visible("#pay-sign-in a[href='/wallet/sign-in?again=1&next=/wallet/pay']")
    assert payments.devices(hq, "M-A") == [] and page.evaluate(DEVICE) is None
    page.click("#pay-sign-in a")  # the sign-in form, though the old session is live (it leads back here)
    page.wait_for_selector("#contact-form input[name=next][value='/wallet/pay']", state="attached")

    # A page of another origin on the same host (so the SameSite cookie goes with it): the Origin check refuses.
    fresh = signed_in(browser, hq, server, "M-A")
    with other_origin() as evil:
        fresh.goto(evil)
        answers = fresh.evaluate(
            """async (target) => {
              const key = "ab".repeat(32);
              const out = [];
              for (const init of [
                {method: "POST", mode: "no-cors", credentials: "include", body: JSON.stringify({device_key: key}),
                 headers: {"Content-Type": "text/plain"}},
                {method: "POST", mode: "cors", credentials: "include", body: JSON.stringify({device_key: key}),
                 headers: {"Content-Type": "application/json"}},
              ]) {
                try { const r = await fetch(target + "/wallet/devices", init); out.push(r.type + ":" + r.status); }
                catch (e) { out.push("blocked"); }
              }
              return out;
            }""",
            server.url,
        )
    assert answers == ["opaque:0", "blocked"]
    assert payments.devices(hq, "M-A") == []
    # The same request with the cookie but the wrong Origin, as a script outside a browser would send it.
    token = hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", int(time.time())))
    for origin in ("http://127.0.0.1:1", "null"):
        reply = httpx.post(
            f"{server.url}/wallet/devices",
            json={"device_key": "ab" * 32},
            headers={"Origin": origin},
            cookies={"tp_wallet": token},
        )
        assert reply.status_code == 403 and reply.json()["code"] == "wallet_bad_origin"
    assert payments.devices(hq, "M-A") == []


class _Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>elsewhere</title><p>another site"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class other_origin:
    def __enter__(self) -> str:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("lang", "title"), [("en", "Pay with this phone"), ("ja", "このスマホで支払う"), ("zh", "用本机付款")]
)
def test_the_pay_page_speaks_the_members_language_at_360_px_and_works_by_keyboard(
    head_office: tuple[HqStore, ServerHandle], browser: Any, lang: str, title: str
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    errors: list[str] = []  # a script error or a CSP violation (the vendored encoder under script-src 'self')
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.url}/wallet/pay?lang={lang}")
    page.wait_for_selector("#pay[data-state=setup]")
    assert page.inner_text("h1") == title and page.get_attribute("html", "lang") == lang
    assert page.get_attribute("nav a[href='/wallet/pay']", "aria-current") == "page"
    check_page(page)
    page.focus("#pay-setup-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#pay[data-state=ready]")
    page.wait_for_selector("#pay-device-list li")
    check_page(page)
    page.keyboard.press("Tab")  # from "New code" to "Show my member code", then "Remove this phone"
    assert page.evaluate("() => document.activeElement.id") == "pay-switch"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "pay-remove"
    page.keyboard.press("Enter")
    page.wait_for_selector("#pay[data-state=setup]")
    assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [True]
    assert errors == []


def test_signing_out_removes_the_phone_and_its_key_so_the_next_member_on_it_starts_afresh(
    head_office: tuple[HqStore, ServerHandle], browser: Any
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    device = set_up_phone(page, server)
    page.wait_for_selector("#sign-out + input[name=device]", state="attached")
    page.click("#sign-out")
    page.wait_for_selector("body[data-page=sign-in]")
    page.wait_for_function("() => typeof TillpointPay !== 'undefined'")  # its deferred script, under any load
    assert [(d["cert_id"], d["revoked"]) for d in payments.devices(hq, "M-A")] == [(device["cert"]["cert_id"], True)]
    assert page.evaluate(DEVICE) is None  # the answer cleared the browser's storage: the key is gone


def test_a_list_of_phones_asked_before_the_setup_does_not_drop_the_new_key(
    head_office: tuple[HqStore, ServerHandle], browser: Any
) -> None:
    """On a slow network the page's list of the member's phones (asked as it opens) can come back after the
    member tapped "Set up": it does not hold the new key yet, and applied late it made the page forget the key
    it had just made. The late answer is dropped; the phone stays set up and shows its code."""
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    held: list[tuple[Any, Any]] = []  # the first list, answered by head office now and given to the page later

    def hold_first(route: Any) -> None:
        if held or route.request.method != "GET":
            route.continue_()
            return
        held.append((route, route.fetch()))

    page.route("**/wallet/devices", hold_first)
    page.goto(f"{server.url}/wallet/pay")
    page.wait_for_selector("#pay[data-state=setup]")

    def asked() -> bool:
        page.evaluate("0")  # the route's handler runs while Playwright is called (the sync API's one thread)
        return bool(held)

    wait_until(asked, 30, "the page asking for its list of phones")
    page.click("#pay-setup-button")
    page.wait_for_selector("#pay[data-state=ready]", timeout=60_000)
    route, answer = held[0]
    assert answer.json()["devices"] == []  # asked before the setup: no phone yet
    route.fulfill(response=answer)
    page.wait_for_selector("#pay-device-list li")  # the setup's own list, drawn after the stale one came
    page.wait_for_function("() => document.querySelectorAll('#pay-device-list li').length === 1")
    assert page.get_attribute("#pay", "data-state") == "ready" and page.is_hidden("#pay-removed")
    assert page.evaluate(DEVICE) is not None  # the key is kept
    assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [False]


def test_a_phone_whose_certificate_ended_asks_to_be_set_up_again(
    head_office: tuple[HqStore, ServerHandle], browser: Any
) -> None:
    hq, server = head_office
    page = signed_in(browser, hq, server, "M-A")
    set_up_phone(page, server)
    page.evaluate(
        """async () => {
          const d = await TillpointPay.load();
          d.cert.expires_at = Math.floor(Date.now() / 1000) - 1;
          await new Promise((ok, fail) => {
            const asked = indexedDB.open("tillpoint-pay", 1);
            asked.onsuccess = () => {
              const tx = asked.result.transaction("device", "readwrite");
              tx.objectStore("device").put(d, "this");
              tx.oncomplete = () => { asked.result.close(); ok(); };
              tx.onerror = () => fail(tx.error);
            };
          });
        }"""
    )
    page.evaluate("() => document.getElementById('pay-new').click()")  # or the step's renewal, whichever is first
    page.wait_for_selector("#pay[data-state=setup]")
    assert page.evaluate(DEVICE) is None and page.get_attribute("#pay-code", "data-code") == ""
