"""The local API's defences: Host and Origin allowlists (DNS rebinding, cross-site requests), JSON-only
bodies (no form or text/plain request a web page could send without a preflight), a token for every
state change and for member data, pairing, no wildcard CORS, and the panel's page headers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from terminal.daemon import Daemon
from tests.api.stack import AIKO_UID, base_url, pairing_code, running_till

PUBLIC = {
    ("GET", "/v1/status"),
    ("GET", "/v1/panel/config"),
    ("GET", "/v1/checkin/code"),  # the rotating check-in code: no personal data (docs/checkin.md)
    ("POST", "/v1/pair"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
GOOD_BODY = {"lines": [{"sku": "A", "quantity": 1, "unit_price": 100}]}


def operations(client: httpx.Client) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return sorted((method.upper(), path) for path, item in spec["paths"].items() for method in item)


def concrete(path: str) -> str:
    return path.replace("{txn_id}", "01900000-0000-7000-8000-000000000000").replace("{device_id}", "abc")


@pytest.mark.slow
def test_every_operation_but_the_public_ones_needs_a_token(client: httpx.Client) -> None:
    guarded = [op for op in operations(client) if op not in PUBLIC]
    assert len(guarded) >= 20  # session, pairing, stream, sales, quote, events ...
    for method, path in guarded:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            reply = httpx.request(
                method, f"{client.base_url}{concrete(path)}", json=GOOD_BODY, headers=headers, timeout=5
            )
            assert reply.status_code == 403, (method, path, headers, reply.text)
            assert reply.json()["code"] == "unauthorized"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8732", "127.0.0.1.evil.example", "", "10.0.0.5"])
def test_a_foreign_host_is_refused(client: httpx.Client, host: str) -> None:
    for method, path in [("GET", "/v1/status"), ("POST", "/v1/session/action"), ("GET", "/panel/")]:
        reply = client.request(method, path, json={"action": "identify"}, headers={"Host": host})
        assert reply.status_code == 403 and reply.json()["code"] == "bad_host", (method, path)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "https://127.0.0.1.evil.example", "null", "https://127.0.0.1:8732", "file://"]
)
def test_a_foreign_origin_is_refused(client: httpx.Client, origin: str) -> None:
    reply = client.post("/v1/session/action", json={"action": "identify"}, headers={"Origin": origin})
    assert reply.status_code == 403 and reply.json()["code"] == "bad_origin"
    assert client.get("/v1/session").json()["awaiting"] is None  # nothing happened


@pytest.mark.parametrize(
    "content_type,body",
    [
        ("application/x-www-form-urlencoded", "action=identify"),
        (
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="action"\r\n\r\nidentify\r\n--x--',
        ),
        ("text/plain", '{"action": "identify"}'),
        ("", '{"action": "identify"}'),
    ],
)
def test_only_json_bodies_are_accepted(client: httpx.Client, content_type: str, body: str) -> None:
    reply = client.post("/v1/session/action", content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 403 and reply.json()["code"] == "bad_content_type"
    assert client.get("/v1/session").json()["awaiting"] is None


def test_a_same_origin_request_with_a_token_works(client: httpx.Client, till: Daemon) -> None:
    reply = client.post("/v1/session/action", json={"action": "identify"}, headers={"Origin": base_url(till)})
    assert reply.status_code == 200 and reply.json()["awaiting"] == "member"


def test_pairing_gives_a_device_its_own_token_and_revoking_it_locks_it_out(till: Daemon) -> None:
    url = base_url(till)
    wrong = httpx.post(f"{url}/v1/pair", json={"code": "not-it", "name": "pos"}, timeout=5)
    assert wrong.status_code == 409 and wrong.json()["code"] == "pairing_refused"
    code = pairing_code(till)
    paired = httpx.post(f"{url}/v1/pair", json={"code": code, "name": "POS lane 2"}, timeout=5).json()
    again = httpx.post(f"{url}/v1/pair", json={"code": code, "name": "thief"}, timeout=5)
    assert again.status_code == 409  # a code works once
    mine = {"Authorization": f"Bearer {paired['token']}"}
    assert httpx.get(f"{url}/v1/session", headers=mine, timeout=5).status_code == 200
    devices = httpx.get(f"{url}/v1/pair/devices", headers=mine, timeout=5).json()
    assert [d["name"] for d in devices] == ["POS lane 2"] and "token" not in devices[0]
    assert paired["token"] not in (till.config.data_dir / "paired.json").read_text()
    revoke = httpx.post(f"{url}/v1/pair/devices/{paired['device_id']}/revoke", json={}, headers=mine, timeout=5)
    assert revoke.status_code == 200
    assert httpx.get(f"{url}/v1/session", headers=mine, timeout=5).status_code == 403


def test_a_code_cannot_be_guessed_by_trying(till: Daemon) -> None:
    url = base_url(till)
    code = pairing_code(till)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(till.pairing.attempts):
        assert httpx.post(f"{url}/v1/pair", json={"code": wrong}, timeout=5).status_code == 409
    assert httpx.post(f"{url}/v1/pair", json={"code": code}, timeout=5).status_code == 409  # dropped


def test_the_panel_page_forbids_framing_and_foreign_scripts(client: httpx.Client) -> None:
    page = client.get("/panel/")
    assert page.status_code == 200 and "<title>tillpoint</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/panel/panel.js").headers["content-type"].startswith("text/javascript")
    assert "access-control-allow-origin" not in page.headers


def test_no_cors_unless_an_exact_origin_is_configured(tmp_path: Path, client: httpx.Client) -> None:
    preflight = {"Origin": "https://pos.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/session/action", headers=preflight).headers
    with running_till(tmp_path / "cors", api={"port": 0, "allowed_origins": ["https://pos.example"]}) as daemon:
        url, token = base_url(daemon), {"Authorization": f"Bearer {daemon.api_token}"}
        reply = httpx.options(
            f"{url}/v1/session/action",
            headers={**preflight, "Access-Control-Request-Headers": "authorization,content-type"},
            timeout=5,
        )
        assert reply.headers["access-control-allow-origin"] == "https://pos.example"
        done = httpx.post(
            f"{url}/v1/session/action",
            json={"action": "identify"},
            headers={**token, "Origin": "https://pos.example"},
            timeout=5,
        )
        assert done.status_code == 200 and done.headers["access-control-allow-origin"] == "https://pos.example"
        other = httpx.post(
            f"{url}/v1/session/action",
            json={"action": "identify"},
            headers={**token, "Origin": "https://other.example"},
            timeout=5,
        )
        assert other.status_code == 403


def test_the_config_refuses_a_wildcard_origin_and_a_public_listener() -> None:
    from terminal.config import validate
    from terminal.errors import ConfigError

    for bad in ({"allowed_origins": ["*"]}, {"allowed_origins": ["https://*.example"]}, {"host": "0.0.0.0"}):
        with pytest.raises(ConfigError):
            validate({"api": bad})


def test_the_api_also_listens_on_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    with running_till(tmp_path, api={"host": "", "unix_socket": str(sock)}) as daemon:
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://localhost", timeout=5) as c:
            assert c.get("/v1/status").json()["terminal_id"] == "T-PANEL"
            reply = c.post(
                "/v1/session/action",
                json={"action": "identify"},
                headers={"Authorization": f"Bearer {daemon.api_token}"},
            )
            assert reply.status_code == 200
            assert c.get("/v1/status", headers={"Host": "evil.example"}).status_code == 403


def test_the_commands_on_this_pc_reach_an_api_listening_on_its_unix_socket_only(tmp_path: Path) -> None:
    """`[api] host = ""` (docs/configuration.md: the Unix socket only): `tillpoint checkin-code`, `tap` and doctor's
    daemon check reach the daemon through the socket, not through an address it never listens on."""
    from typer.testing import CliRunner

    from terminal.config import load
    from terminal.doctor import Verdict, check_daemon
    from tillpoint.cli import app

    sock = tmp_path / "api.sock"
    config = tmp_path / "tillpoint.toml"
    config.write_text(
        f'[terminal]\nid = "T-PANEL"\ndata_dir = "{tmp_path / "till"}"\n[api]\nhost = ""\nunix_socket = "{sock}"\n',
        encoding="utf-8",
    )
    with running_till(tmp_path, api={"host": "", "unix_socket": str(sock)}):
        shown = CliRunner().invoke(app, ["checkin-code", "--json", "--config", str(config)])
        assert shown.exit_code == 0, shown.output
        assert len(json.loads(shown.output)["code"]) == 103  # docs/checkin.md
        tapped = CliRunner().invoke(app, ["tap", AIKO_UID.hex(), "--config", str(config)])
        assert tapped.exit_code == 0, tapped.output
        check = check_daemon(load(config), 2.0)
        assert check.verdict is Verdict.OK and str(sock) in check.words, check


def test_a_body_that_fails_its_schema_gets_the_stable_code_and_names_the_field(client: httpx.Client) -> None:
    """A POS that sends a line without its price, or a quantity as text: 422 ``invalid_request`` naming the
    field, as for a body that is not JSON at all (never the framework's own shape)."""
    for body in (
        {"lines": [{"sku": "TEA", "quantity": 1}]},
        {"lines": [{"sku": "TEA", "quantity": "two", "unit_price": 300}]},
    ):
        reply = client.post("/v1/sales", json=body)
        assert reply.status_code == 422, reply.text
        answer = reply.json()
        assert answer["code"] == "invalid_request" and "lines.0." in answer["message"], answer
    assert client.post("/v1/sales", content=b"{", headers={"Content-Type": "application/json"}).json()["code"] == (
        "invalid_request"
    )


def test_a_wrong_path_a_wrong_method_and_a_bug_answer_in_the_apis_shape(client: httpx.Client, till: Daemon) -> None:
    """What the POS gets when it calls a route that is not there, with the wrong method, or hits a bug in the
    daemon: ``{"code", "message"}`` with a stable code, as every refusal (never the framework's ``detail``)."""
    txn = "01900000-0000-7000-8000-000000000000"
    for method, path, status, code in (
        ("POST", "/v1/sessions/total", 404, "not_found"),
        ("POST", f"/v1/sales/{txn}%2Fvoid/refund", 404, "not_found"),  # a txn id holding a slash
        ("GET", "/panel/no-such-file.js", 404, "not_found"),
        ("GET", "/v1/sales", 405, "method_not_allowed"),
    ):
        reply = client.request(method, path, json={"lines": {"0": 1}})
        assert (reply.status_code, reply.json()["code"]) == (status, code), (method, path, reply.text)
        assert reply.json()["message"]

    def broken() -> dict[str, object]:
        raise RuntimeError("a bug")

    till.status = broken  # type: ignore[method-assign]
    reply = client.get("/v1/status")
    assert (reply.status_code, reply.json()["code"]) == (500, "internal"), reply.text
    assert "a bug" not in reply.text  # what went wrong is in the daemon's log, not in the answer


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/v1/sales", {"lines": [{"sku": "TEA", "quantity": True, "unit_price": 300}]}, "quantity"),
        ("/v1/sales", {"lines": [{"sku": "TEA", "quantity": "2", "unit_price": 300}]}, "quantity"),
        ("/v1/sales", {"lines": [{"sku": "TEA", "quantity": 1, "unit_price": "300"}]}, "unit_price"),
        ("/v1/sales", {"lines": [{"sku": "TEA", "quantity": 1.0, "unit_price": 300}]}, "quantity"),
        ("/v1/sales", {"lines": [{"sku": 7, "quantity": 1, "unit_price": 300}]}, "sku"),
        (
            "/v1/sales",
            {"member_id": "M-1", "lines": [{"sku": "TEA", "quantity": 1, "unit_price": 300}], "redeem": "-1"},
            "redeem",
        ),
        (
            "/v1/sales",
            {"lines": [{"sku": "TEA", "quantity": 1, "unit_price": 300}], "use_identified": "false"},
            "use_identified",
        ),
        ("/v1/topups", {"member_id": "M-1", "amount": True}, "amount"),
        ("/v1/session/total", {"amount": "2500"}, "amount"),
        ("/v1/session/pay", {"redeem": False}, "redeem"),
        ("/v1/giftcards/sell", {"amount": 50.0}, "amount"),
        ("/v1/vouchers/sell", {"value": "2500"}, "value"),
        ("/v1/sales/01900000-0000-7000-8000-000000000000/refund", {"lines": {"0": True}}, "lines.0:"),
        ("/v1/sales/01900000-0000-7000-8000-000000000000/refund", {"lines": {"0": "1"}}, "lines.0:"),
    ],
)
def test_a_number_or_flag_sent_as_another_type_is_refused_not_read_as_one(
    client: httpx.Client, till: Daemon, path: str, body: dict[str, object], field: str
) -> None:
    """``true`` is not one unit, ``"2500"`` not an amount, ``1.0`` not a quantity: a POS sending one has a bug
    the till names (422 ``invalid_request`` and the field), never a sale, a top-up or a refund of what it guessed."""
    seq = till.store.max_seq() if till.store is not None else 0
    reply = client.post(path, json=body)
    assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request"), reply.text
    assert field in reply.json()["message"]
    assert till.store is not None and till.store.max_seq() == seq  # nothing recorded
