"""Both HTTP APIs against hostile input: every body is capped before it is read (plain and gzip alike),
numbers and text JSON cannot carry answer 4xx, the till checks Host strictly and serves nothing that
loads code from elsewhere on its origin; head office serves its OpenAPI document and passes
schemathesis with no 5xx. Real head-office process; a real till daemon."""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from terminal.daemon import Daemon
from tests.api.stack import base_url, running_till
from tests.fixtures.hq import HqProcess

HOSTILE = [
    ("NaN", '{"x": NaN}'),
    ("Infinity", '{"x": -Infinity}'),
    ("a number beyond 64 bits", '{"x": 100000000000000000000}'),
    ("a float beyond range", '{"x": 1e400}'),
    ("a lone surrogate", '{"x": "\\ud800"}'),
    ("not UTF-8", b'{"x": "\xff\xfe"}'),
    ("nested past the parser's stack", "[" * 100_000 + "]" * 100_000),
    ("nested past what any field holds", '{"x": ' + "[" * 65 + "]" * 65 + "}"),
]


def raw_post(port: int, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, float]:
    """Send headers (and ``body``) on a bare socket; the status line head office answers, and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body)
        reply = sock.recv(4096)
    return int(reply.split()[1]), time.monotonic() - started


@pytest.fixture
def hq(module_hq: HqProcess) -> HqProcess:
    return module_hq


@pytest.fixture(scope="module")
def till(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_till(tmp_path_factory.mktemp("till")) as daemon:
        yield daemon


def test_head_office_refuses_a_huge_body_before_reading_it(hq: HqProcess) -> None:
    # 100 MB announced, a few bytes sent: the answer comes at once, nothing is read or buffered.
    status, took = raw_post(
        hq.port, "/v1/claims", {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}, b"{"
    )
    assert status == 413 and took < 5
    # No length announced (chunked): refused once the cap is crossed, plain and gzip alike.
    chunk = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield chunk

    plain = httpx.post(
        f"{hq.url}/v1/claims", content=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert (plain.status_code, plain.json()["code"]) == (413, "body_too_large")
    bomb = gzip.compress(b" " * (40 * 1024 * 1024))  # 40 KB that inflate to 40 MB
    packed = httpx.post(
        f"{hq.url}/v1/claims",
        content=bomb,
        timeout=30,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert (packed.status_code, packed.json()["code"]) == (413, "body_too_large")
    assert httpx.get(f"{hq.url}/v1/health", timeout=5).status_code == 200


@pytest.mark.parametrize("what,body", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_head_office_answers_bad_numbers_and_bad_text_with_422(hq: HqProcess, what: str, body: str | bytes) -> None:
    data = body if isinstance(body, bytes) else body.encode()
    for path in ("/v1/claims", "/v1/journal", "/v1/admin/topups"):
        reply = httpx.post(f"{hq.url}{path}", content=data, headers={"Content-Type": "application/json"}, timeout=10)
        assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request"), (path, what, reply.text)


def test_huge_amounts_in_valid_json_are_refused_not_overflowed(hq: HqProcess) -> None:
    admin = {"Authorization": f"Bearer {hq.cli('admin-token', 'Mio').strip()}"}
    reply = httpx.post(
        f"{hq.url}/v1/admin/topups", json={"member_id": "M-0001", "amount": 9 * 10**18}, headers=admin, timeout=10
    )
    assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request")
    since = httpx.get(f"{hq.url}/v1/changes", params={"since": 10**19}, headers=admin, timeout=10)
    assert since.status_code in (401, 403, 422)


def test_the_till_caps_and_checks_bodies_too(till: Daemon) -> None:
    url, token = base_url(till), {"Authorization": f"Bearer {till.api_token}", "Content-Type": "application/json"}
    status, took = raw_post(till.api_server.port, "/v1/sales", {**token, "Content-Length": str(50 * 1024 * 1024)})
    assert status == 413 and took < 5
    for what, body in HOSTILE:
        data = body if isinstance(body, bytes) else body.encode()
        reply = httpx.post(f"{url}/v1/sales", content=data, headers=token, timeout=10)
        assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request"), what
    line = {"sku": "X\ud800", "quantity": 1, "unit_price": 100}
    text = json.dumps({"lines": [line]})  # json.dumps escapes the lone surrogate
    assert httpx.post(f"{url}/v1/quote", content=text, headers=token, timeout=10).status_code == 422
    huge = httpx.post(
        f"{url}/v1/quote",
        json={"lines": [{"sku": "X", "quantity": 10_000, "unit_price": 10**12}]},
        headers=token,
        timeout=10,
    )
    assert huge.status_code in (409, 422) and huge.json()["code"] in ("invalid_basket", "invalid_request")


def test_json_in_any_spelling_is_checked_and_an_odd_token_is_a_403(till: Daemon, hq: HqProcess) -> None:
    for url, path in ((base_url(till), "/v1/sales"), (hq.url, "/v1/claims")):
        for media in ("Application/JSON", "application/merge-patch+json", "application/json; charset=utf-8"):
            reply = httpx.post(f"{url}{path}", content=b'{"x": NaN}', headers={"Content-Type": media}, timeout=10)
            assert reply.status_code in (403, 422), (url, media, reply.text)
            assert reply.status_code != 403 or reply.json()["code"] == "bad_content_type"
    odd = httpx.get(f"{base_url(till)}/v1/events", headers={"Authorization": b"Bearer caf\xe9"}, timeout=5)
    assert (odd.status_code, odd.json()["code"]) == (403, "unauthorized")


@pytest.mark.parametrize(
    "host,allowed",
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8732", True),
        ("localhost", True),
        ("[::1]:8732", True),
        ("127.0.0.1:evil", False),
        ("127.0.0.1:80:80", False),
        ("127.0.0.1:", False),
        ("evil.example", False),
        ("evil.example:127.0.0.1", False),
        ("localhost:99999999", False),
        ("[::1]junk", False),
    ],
)
def test_the_till_accepts_only_a_known_host_and_a_numeric_port(till: Daemon, host: str, allowed: bool) -> None:
    reply = httpx.get(f"{base_url(till)}/v1/status", headers={"Host": host}, timeout=5)
    assert (reply.status_code == 200) is allowed, reply.text
    if not allowed:
        assert reply.json()["code"] == "bad_host"


def test_nothing_on_the_tills_origin_loads_code_from_elsewhere(till: Daemon) -> None:
    url = base_url(till)
    for path in ("/docs", "/redoc"):
        assert httpx.get(f"{url}{path}", timeout=5).status_code == 404
    assert httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200  # a document, no code
    page = httpx.get(f"{url}/panel/", timeout=5).text
    for name in ("index.html", "panel.js", "i18n.js", "panel.css"):
        text = page if name == "index.html" else httpx.get(f"{url}/panel/{name}", timeout=5).text
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), name
        assert not re.search(r"""import\s[^;]*from\s*["'](https?:)?//""", text), name


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(op: Any, headers: dict[str, str], examples: int) -> int:
    calls = 0

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal calls
        response = case.call(headers=headers, timeout=10)
        calls += 1
        assert response.status_code < 500, f"{response.status_code} for {case.as_curl_command()}: {response.text}"

    run()
    return calls


@pytest.mark.parametrize("who", ["admin", "terminal", "nobody"])
def test_head_office_passes_schemathesis_with_no_server_error(hq: HqProcess, who: str) -> None:
    tokens = {
        "admin": hq.cli("admin-token", f"fuzz-{time.monotonic_ns()}").strip(),
        "terminal": hq.add_terminal(f"T-FUZZ-{time.monotonic_ns()}"),
        "nobody": "",
    }
    headers = {"Authorization": f"Bearer {tokens[who]}"} if tokens[who] else {}
    ops = _operations(hq.url)
    assert len(ops) >= 20
    calls = sum(_fuzz(op, headers, 12 if who != "nobody" else 4) for op in ops)
    assert calls >= len(ops) * 3
    assert httpx.get(f"{hq.url}/v1/health", timeout=5).status_code == 200  # still alive
