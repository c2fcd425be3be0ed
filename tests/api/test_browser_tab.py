"""A curious browser tab on the checkout PC, in Debian's Chromium: a page of another origin (another port on this
machine, or a name that resolves to it, as DNS rebinding makes one) cannot drive the till's local API, guess a
pairing code, or read what the API answers. The browser's own rules (a JSON body or a token header needs a CORS
preflight the API never grants) and the API's Host, Origin and Content-Type checks each stop it."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminal.daemon import Daemon
from tests.api.stack import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    base_url,
    chromium,
    chromium_missing,
    pairing_code,
    playwright,
    running_till,
)

GUESSES = 6  # one more than a pairing code's tries: had one reached the till, the code would be gone

ATTACK = """<!doctype html><html><body><iframe name="sink"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink"><input name='{"code":"000000","x":"' value='"}'></form>
<script>
async function attack(till, guesses) {
  const json = {"Content-Type": "application/json"};
  const tries = {
    action_cors: () => fetch(till + "/v1/session/action", {method: "POST", headers: json, body: '{"action": "identify"}'}),
    action_no_cors: () => fetch(till + "/v1/session/action",
      {method: "POST", mode: "no-cors", headers: json, body: '{"action": "identify"}'}),
    read_status: () => fetch(till + "/v1/status").then((r) => r.text()),
    read_session: () => fetch(till + "/v1/session").then((r) => r.text()),
    read_config: () => fetch(till + "/v1/panel/config").then((r) => r.text()),
  };
  for (let i = 0; i < guesses; i++) {
    const body = JSON.stringify({code: String(i).padStart(6, "0")});
    tries["pair_cors_" + i] = () => fetch(till + "/v1/pair", {method: "POST", headers: json, body});
    tries["pair_no_cors_" + i] = () => fetch(till + "/v1/pair", {method: "POST", mode: "no-cors", headers: json, body});
  }
  const out = {};
  for (const [name, run] of Object.entries(tries)) {
    try { const r = await run(); out[name] = typeof r === "string" ? "read: " + r : r.type; }
    catch (e) { out[name] = "refused by the browser"; }
  }
  const sink = document.querySelector("iframe");
  const loaded = new Promise((done) => sink.addEventListener("load", done, {once: true}));
  const form = document.getElementById("form");
  form.action = till + "/v1/pair";
  form.submit();
  await loaded;
  return out;
}
</script></body></html>"""


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Daemon]:
    problem = chromium_missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    with running_till(tmp_path) as daemon:
        yield daemon


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[int]:
    """Another web server on this machine (127.0.0.1, its own port) serving the attacker's page; its port."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(ATTACK, encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        thread.join(5)


def test_a_page_of_another_port_cannot_drive_the_till_guess_a_code_or_read_it(till: Daemon, attacker: int) -> None:
    code = pairing_code(till)  # a manager just asked for one: the page tries to guess it
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{attacker}/index.html")
        done = page.evaluate("([till, n]) => attack(till, n)", [base_url(till), GUESSES])

    assert not [name for name, what in done.items() if what.startswith("read")], done
    token = {"Authorization": f"Bearer {till.api_token}"}
    assert httpx.get(f"{base_url(till)}/v1/session", headers=token, timeout=5).json()["awaiting"] is None
    paired = httpx.post(f"{base_url(till)}/v1/pair", json={"code": code, "name": "POS"}, timeout=5)
    assert paired.status_code == 200, paired.text  # no guess reached the till: the code still works


def test_a_name_rebound_to_this_machine_is_refused_whatever_it_asks(till: Daemon) -> None:
    """DNS rebinding: a name the attacker controls answers with 127.0.0.1, so its page becomes same-origin with
    the till's port; the till refuses every request whose Host is not its own."""
    port = till.api_server.port
    browser = playwright().chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_FLAGS, "--host-resolver-rules=MAP rebind.example 127.0.0.1"],
    )
    try:
        page = browser.new_page()
        for path in ("/panel/", "/v1/status", "/v1/panel/config", "/openapi.json"):
            answer = page.goto(f"http://rebind.example:{port}{path}")
            assert answer is not None and answer.status == 403, path
            assert '"bad_host"' in page.content(), path
    finally:
        browser.close()


def test_a_page_opening_the_panel_with_guessed_codes_spends_no_try_of_the_code_out(till: Daemon) -> None:
    """Any page can open ``/panel/#pair=NNNNNN`` (a kiosk starts paired that way). In a browser whose panel is
    paired, such a link pairs nothing and tries nothing: five of them would otherwise drop the code a manager just
    asked for, and the panel it opens stays the paired panel it was (it had stopped, neither paired nor pairing)."""
    with chromium() as browser:
        context = browser.new_context()
        panel = paired_page_in(context, till)
        code = pairing_code(till)  # the manager pairs a second device meanwhile
        for guess in range(GUESSES):
            opened = context.new_page()
            opened.set_default_timeout(10_000)
            opened.goto(f"{base_url(till)}/panel/#pair={guess:06d}")
            opened.wait_for_selector("body[data-stream='open']")  # the paired panel, streaming
            assert opened.evaluate("location.hash") == ""
            opened.close()
        panel.close()
        # The code still works: a kiosk not paired yet starts paired with it, as the link says.
        kiosk = browser.new_context().new_page()
        kiosk.set_default_timeout(10_000)
        kiosk.goto(f"{base_url(till)}/panel/#pair={code}")
        kiosk.wait_for_selector("body[data-state='idle'][data-stream='open']")
    assert len(till.pairing.devices()) == 2


def paired_page_in(context: Any, daemon: Daemon) -> Any:
    """A panel page of ``context`` paired by keyboard (the code typed, Enter): its token is the context's."""
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{base_url(daemon)}/panel/")
    page.wait_for_selector("#pair-code:focus")
    page.keyboard.type(pairing_code(daemon))
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-state='idle'][data-stream='open']")
    return page
