"""The wallet over a real head-office server (uvicorn in a thread on 127.0.0.1, SQLite) with the file
sender: asking for a code, signing in, a wrong, expired, reused code, too many tries (from many addresses too),
the cookie's flags, POSTs from another origin, signing out, forged and ended cookies, another member's coupons,
the pages' headers, and the member code verified by a real till (its own store, pulled keys and verifier)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet import signin
from hq.wallet.senders import FileSender
from sync.client import SyncClient
from terminal.errors import Code, Rejected
from terminal.service import Service
from terminal.store import Store
from tests.waiting import wait_until

AIKO, BEN = "aiko@example.com", "ben@example.com"


@dataclass
class Wallet:
    hq: HqStore
    server: ServerHandle
    outbox: Path
    admin: dict[str, str]
    tmp: Path
    seen: dict[str, int] = field(default_factory=dict)
    """How many codes each contact had when a test last read one."""

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=10, follow_redirects=False)

    def last_code(self, to: str) -> str:
        """The code last sent to ``to``: sent after the answer, so it may take a moment to arrive."""

        def sent() -> list[dict[str, str]]:
            return [m for p in sorted(self.outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == to]

        before = self.seen.get(to, 0)
        mine = wait_until(lambda: (found := sent()) and len(found) > before and found, 5.0, f"a code for {to}")
        self.seen[to] = len(mine)
        assert mine[-1]["code"] in mine[-1]["text"]
        return str(mine[-1]["code"])


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.upsert_member("M-A", "Aiko", "basic", 120)
    hq.upsert_member("M-B", "Ben", "basic", 50)
    hq.put_coupon({"coupon_id": "AIKO-5", "member_id": "M-A", "kind": "amount_off", "value": 500, "text": "5.00 off"})
    hq.put_coupon({"coupon_id": "BEN-9", "member_id": "M-B", "kind": "amount_off", "value": 900, "text": "BEN ONLY"})
    hq.put_coupon({"coupon_id": "EVERYONE", "kind": "percent_off", "value": 10, "text": "10% for all"})
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    outbox = tmp_path / "outbox"
    server = start_in_thread(hq, wallet_sender=FileSender(outbox))
    found = Wallet(hq, server, outbox, admin, tmp_path)
    for member, email in (("M-A", AIKO), ("M-B", BEN)):
        reply = httpx.put(f"{server.url}/v1/admin/members/{member}/contacts", json={"email": email}, headers=admin)
        assert reply.status_code == 200 and reply.json() == {"email": email}, reply.text
    yield found
    server.stop()
    hq.close()


def error_code(reply: httpx.Response) -> str:
    found = re.search(r'id="error"[^>]*data-code="([a-z_]+)"', reply.text)
    return found.group(1) if found else ""


def sign_in(wallet: Wallet, client: httpx.Client, email: str = AIKO) -> httpx.Response:
    asked = client.post("/wallet/sign-in/code", data={"contact": email})
    assert asked.status_code == 200 and 'id="code-form"' in asked.text, asked.text
    return client.post("/wallet/sign-in", data={"contact": email, "code": wallet.last_code(email)})


def test_sign_in_by_code_sets_a_strict_http_only_cookie_and_shows_the_wallet(wallet: Wallet) -> None:
    with wallet.client() as client:
        page = client.get("/wallet/")
        assert page.status_code == 303 and page.headers["location"] == "/wallet/sign-in"
        form = client.get("/wallet/sign-in")
        assert form.status_code == 200 and 'for="contact"' in form.text
        done = sign_in(wallet, client)
        assert done.status_code == 303 and done.headers["location"] == "/wallet/"
        cookie = done.headers["set-cookie"]
        assert cookie.startswith("tp_wallet=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/" in cookie and "Secure" not in cookie  # plain HTTP on loopback; HTTPS adds Secure
        home = client.get("/wallet/")
        assert home.status_code == 200 and 'id="points">120<' in home.text and "Aiko" in home.text
        assert home.headers["content-security-policy"].startswith("default-src 'none'")
        assert home.headers["cache-control"] == "no-store" and "http" not in home.headers["content-security-policy"]
        code = client.get("/wallet/member-code").json()
        assert code["code"].startswith("TPM2:") and code["svg"].startswith("<svg") and 1 <= code["renew_in"] <= 30


def test_wrong_expired_reused_and_too_many_codes_are_refused_with_their_codes(wallet: Wallet) -> None:
    with wallet.client() as client:
        client.post("/wallet/sign-in/code", data={"contact": AIKO})
        right = wallet.last_code(AIKO)
        wrong = f"{(int(right) + 1) % 10**8:08d}"
        bad = client.post("/wallet/sign-in", data={"contact": AIKO, "code": wrong})
        assert bad.status_code == 401 and error_code(bad) == "wallet_code_wrong" and "set-cookie" not in bad.headers
        assert client.post("/wallet/sign-in", data={"contact": AIKO, "code": right}).status_code == 303
        again = client.post("/wallet/sign-in", data={"contact": AIKO, "code": right})
        assert again.status_code == 401 and error_code(again) == "wallet_code_expired"

        client.post("/wallet/sign-in/code", data={"contact": BEN})
        ben = wallet.last_code(BEN)
        wallet.hq.db.transact(lambda tx: tx.run("UPDATE wallet_codes SET expires_at = ?", [int(time.time()) - 1]))
        late = client.post("/wallet/sign-in", data={"contact": BEN, "code": ben})
        assert late.status_code == 401 and error_code(late) == "wallet_code_expired"

        client.post("/wallet/sign-in/code", data={"contact": BEN})
        ben = wallet.last_code(BEN)
        wrong = f"{(int(ben) + 1) % 10**8:08d}"
        tries = [
            client.post("/wallet/sign-in", data={"contact": BEN, "code": wrong}) for _ in range(signin.MAX_ATTEMPTS)
        ]
        assert [error_code(t) for t in tries][-1] == "wallet_too_many_attempts" and tries[-1].status_code == 429
        dead = client.post("/wallet/sign-in", data={"contact": BEN, "code": ben})
        assert error_code(dead) == "wallet_code_expired"
        limited = client.post("/wallet/sign-in/code", data={"contact": BEN})
        assert limited.status_code == 200  # the second of three
        limited = client.post("/wallet/sign-in/code", data={"contact": BEN})
        assert limited.status_code == 429 and error_code(limited) == "wallet_rate_limited"
        bad_contact = client.post("/wallet/sign-in/code", data={"contact": "not an address"})
        assert bad_contact.status_code == 422 and error_code(bad_contact) == "wallet_bad_contact"
        for junk in ("&".join(f"f{n}=1" for n in range(50)), "contact=" + "a" * 5000, "\xff\xfe"):
            odd = client.post(
                "/wallet/sign-in/code", content=junk, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert odd.status_code == 422 and error_code(odd) == "wallet_bad_contact"


def test_wrong_codes_from_many_addresses_close_the_contacts_sign_in_by_code(wallet: Wallet) -> None:
    """A botnet asks for Aiko's codes and guesses each from other addresses (head office behind its reverse
    proxy on the same machine reads them from X-Forwarded-For): each code dies after its wrong tries whatever
    the address, and the contact's tenth wrong code of the day closes its sign-in by code, its right code
    refused and no new code made; Ben signs in as before."""
    with wallet.client() as client:
        answers: list[tuple[int, str]] = []
        right = ""
        for n in range(signin.MAX_MISSES // signin.MAX_ATTEMPTS):
            asked = client.post(
                "/wallet/sign-in/code", data={"contact": AIKO}, headers={"X-Forwarded-For": f"203.0.113.{n + 1}"}
            )
            assert asked.status_code == 200 and 'id="code-form"' in asked.text, asked.text
            right = wallet.last_code(AIKO)
            wrong = f"{(int(right) + 1) % 10**8:08d}"
            for m in range(signin.MAX_ATTEMPTS):
                bot = {"X-Forwarded-For": f"198.51.{n}.{m + 1}"}
                tried = client.post("/wallet/sign-in", data={"contact": AIKO, "code": wrong}, headers=bot)
                answers.append((tried.status_code, error_code(tried)))
        per_code = [(401, "wallet_code_wrong")] * (signin.MAX_ATTEMPTS - 1)
        assert answers == [*per_code, (429, "wallet_too_many_attempts"), *per_code, (429, "wallet_guesses_limited")]
        owner = client.post("/wallet/sign-in", data={"contact": AIKO, "code": right})
        assert owner.status_code == 429 and error_code(owner) == "wallet_guesses_limited"
        assert "set-cookie" not in owner.headers
        fresh = {"X-Forwarded-For": "192.0.2.44"}
        again = client.post("/wallet/sign-in/code", data={"contact": AIKO}, headers=fresh)
        assert again.status_code == 429 and error_code(again) == "wallet_guesses_limited"
        assert sign_in(wallet, client, BEN).status_code == 303


def test_an_unknown_contact_looks_the_same_and_gets_no_message(wallet: Wallet) -> None:
    with wallet.client() as client:
        known = client.post("/wallet/sign-in/code", data={"contact": AIKO})
        unknown = client.post("/wallet/sign-in/code", data={"contact": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(AIKO, "X") == unknown.text.replace("nobody@example.com", "X")
    assert all(json.loads(p.read_text())["to"] != "nobody@example.com" for p in wallet.outbox.glob("*.json"))


def test_posts_from_another_origin_or_without_one_are_refused(wallet: Wallet) -> None:
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {},
        {"Origin": wallet.url, "Sec-Fetch-Site": "cross-site"},
    ):
        with httpx.Client(base_url=wallet.url, headers=headers, timeout=10) as client:
            for path, data in (
                ("/wallet/sign-in/code", {"contact": AIKO}),
                ("/wallet/sign-in", {"contact": AIKO, "code": "12345678"}),
                ("/wallet/sign-out", {}),
            ):
                reply = client.post(path, data=data)
                assert reply.status_code == 403 and reply.json()["code"] == "wallet_bad_origin", (headers, path)
    assert not list(wallet.outbox.glob("*.json"))


def test_sign_out_ends_the_session_and_a_forged_or_old_cookie_is_refused(wallet: Wallet) -> None:
    with wallet.client() as client:
        sign_in(wallet, client)
        token = client.cookies["tp_wallet"]
        out = client.post("/wallet/sign-out")
        assert out.status_code == 303 and out.headers["location"] == "/wallet/sign-in?out=1"
        assert 'tp_wallet=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    for cookie in (token, token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 43, "x" * 400):
        with httpx.Client(base_url=wallet.url, cookies={"tp_wallet": cookie}, timeout=10) as stranger:
            assert stranger.get("/wallet/").status_code == 303
            assert stranger.get("/wallet/coupons").status_code == 303
            code = stranger.get("/wallet/member-code")
            assert code.status_code == 401 and code.json()["code"] == "wallet_sign_in_required"


def test_an_expired_session_is_refused(wallet: Wallet) -> None:
    with wallet.client() as client:
        sign_in(wallet, client)
        assert client.get("/wallet/").status_code == 200
        wallet.hq.db.transact(lambda tx: tx.run("UPDATE wallet_sessions SET expires_at = ?", [int(time.time()) - 1]))
        assert client.get("/wallet/").status_code == 303
        assert client.get("/wallet/member-code").json()["code"] == "wallet_sign_in_required"


def test_a_member_sees_only_its_own_coupons(wallet: Wallet) -> None:
    with wallet.client() as client:
        sign_in(wallet, client)
        page = client.get("/wallet/coupons")
    assert page.status_code == 200
    assert 'data-coupon="AIKO-5"' in page.text and "5.00 off" in page.text
    assert "BEN" not in page.text and "EVERYONE" not in page.text
    assert 'data-code="TPC1:' in page.text and "<svg" in page.text


def test_another_members_code_and_contact_never_sign_in_the_first(wallet: Wallet) -> None:
    with wallet.client() as client:
        client.post("/wallet/sign-in/code", data={"contact": AIKO})
        aiko = wallet.last_code(AIKO)
        crossed = client.post("/wallet/sign-in", data={"contact": BEN, "code": aiko})
        assert crossed.status_code == 401 and "set-cookie" not in crossed.headers
        assert client.post("/wallet/sign-in", data={"contact": AIKO, "code": aiko}).status_code == 303
        assert "Aiko" in client.get("/wallet/").text and "Ben" not in client.get("/wallet/").text


def test_pages_speak_the_members_language(wallet: Wallet) -> None:
    with wallet.client() as client:
        assert '<html lang="ja">' in client.get("/wallet/sign-in", headers={"Accept-Language": "ja,en;q=0.5"}).text
        assert '<html lang="zh">' in client.get("/wallet/sign-in", headers={"Accept-Language": "zh-CN"}).text
        assert '<html lang="en">' in client.get("/wallet/sign-in", headers={"Accept-Language": "fr"}).text
        chosen = client.get("/wallet/sign-in?lang=zh", headers={"Accept-Language": "ja"})
        assert '<html lang="zh">' in chosen.text
        assert '<html lang="zh">' in client.get("/wallet/sign-in", headers={"Accept-Language": "ja"}).text


def test_every_page_renders_in_every_language(wallet: Wallet) -> None:
    with wallet.client() as client:
        sign_in(wallet, client)
        for lang in ("en", "ja", "zh"):
            for path in ("/wallet/", "/wallet/activity", "/wallet/coupons", "/wallet/offline"):
                reply = client.get(f"{path}?lang={lang}")
                assert reply.status_code == 200 and f'<html lang="{lang}">' in reply.text, (path, lang)
                assert reply.text.count("<h1") == 1 and "<main" in reply.text
        client.post("/wallet/sign-out")
        for lang in ("en", "ja", "zh"):
            assert f'<html lang="{lang}">' in client.get(f"/wallet/sign-in?lang={lang}").text


def test_the_shell_manifest_and_service_worker_are_served_from_the_package(wallet: Wallet) -> None:
    manifest = httpx.get(f"{wallet.url}/wallet/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.json()["start_url"] == "/wallet/"
    assert "manifest+json" in manifest.headers["content-type"]
    worker = httpx.get(f"{wallet.url}/wallet/sw.js")
    assert worker.status_code == 200 and "javascript" in worker.headers["content-type"]
    for name in ("wallet.css", "wallet.js", "icon.svg", "icon-192.png", "icon-512.png"):
        assert httpx.get(f"{wallet.url}/wallet/static/{name}").status_code == 200, name
    for name in ("pay.js", "vendor/qrcode.js"):
        script = httpx.get(f"{wallet.url}/wallet/static/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"], name
    for name in ("..%2Fpages.py", "pages.py", ".hidden", "nothing.css", "vendor/LICENSE", "vendor/..%2Fpay.js"):
        assert httpx.get(f"{wallet.url}/wallet/static/{name}").status_code == 404, name
    assert httpx.get(f"{wallet.url}/wallet/offline").status_code == 200


def test_the_wallets_member_code_is_read_by_a_real_till_and_a_stale_one_refused(wallet: Wallet) -> None:
    with wallet.client() as client:
        sign_in(wallet, client)
        code = client.get("/wallet/member-code").json()["code"]
    token = wallet.hq.add_terminal("T-1", "S-001")
    store = Store.open(wallet.tmp / "till" / "t.db")
    sync = SyncClient(store, "T-1", wallet.url, token, timeout=5)
    sync.sync_once()  # the member key comes down with the other signed keys
    till = Service(store, "T-1")
    assert till.read_member_code(2, code[len("TPM2:") :]).member_id == "M-A"
    later = Service(store, "T-1", clock=lambda: time.time() + 180)
    with pytest.raises(Rejected) as refused:
        later.read_member_code(2, code[len("TPM2:") :])
    assert refused.value.code is Code.MEMBER_CODE_EXPIRED
    sync.close()
    store.close()


def test_sign_out_everywhere_ends_the_lost_phones_session_too(wallet: Wallet) -> None:
    with wallet.client() as lost, wallet.client() as new:
        sign_in(wallet, lost)
        client_b = sign_in(wallet, new)
        assert client_b.status_code == 303 and lost.get("/wallet/").status_code == 200
        out = new.post("/wallet/sign-out", data={"everywhere": "1"})
        assert out.status_code == 303
        assert lost.get("/wallet/").status_code == 303 and new.get("/wallet/").status_code == 303


def test_the_demo_members_can_sign_in(tmp_path: Path) -> None:
    from hq.demo import DEMO_CONTACTS, seed_demo

    hq = HqStore(str(tmp_path / "demo.db"))
    seed_demo(hq, b"k" * 32)
    seed_demo(hq, b"k" * 32)  # idempotent
    for member_id, email in DEMO_CONTACTS.items():
        assert signin.request_code(hq, email, "127.0.0.1", int(time.time())).member_id == member_id
    hq.close()


def test_the_contact_command_sets_shows_and_refuses(tmp_path: Path) -> None:
    from tests.fixtures.hq import command

    db = str(tmp_path / "cli.db")
    assert command("hq", "add-member", "M-9", "Kim", "--db", db).returncode == 0
    done = command("hq", "contact", "M-9", "--email", "Kim@Example.com", "--phone", "+81 90 1111 2222", "--db", db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"member_id": "M-9", "email": "kim@example.com", "phone": "+819011112222"}
    shown = command("hq", "contact", "M-9", "--db", db)
    assert json.loads(shown.stdout)["email"] == "kim@example.com"
    bad = command("hq", "contact", "M-9", "--email", "nope", "--db", db)
    assert bad.returncode == 1 and "wallet_bad_contact" in bad.stderr + bad.stdout
    assert command("hq", "contact", "M-404", "--db", db).returncode == 1


def test_over_https_the_cookie_is_secure_and_host_prefixed() -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from hq.api.deps import session_token, set_session_cookie

    def request(scheme: str, cookie: str = "") -> Request:
        headers = [(b"host", b"hq.example")] + ([(b"cookie", cookie.encode())] if cookie else [])
        port = 443 if scheme == "https" else 80
        scope = {"type": "http", "scheme": scheme, "method": "POST", "path": "/wallet/sign-in", "query_string": b""}
        return Request({**scope, "headers": headers, "server": ("hq.example", port)})

    reply = Response()
    set_session_cookie(reply, request("https"), "t0ken", 60)
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith("__Host-tp_wallet=t0ken;") and "Secure" in cookie and "Domain" not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert session_token(request("https", "__Host-tp_wallet=t0ken")) == "t0ken"
    assert session_token(request("https", "tp_wallet=t0ken")) is None  # a plain-HTTP cookie is not read over HTTPS
