"""The head-office HTTP API, served by a real uvicorn on 127.0.0.1 and called with real httpx,
over SQLite and over PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.demo import seed_demo
from hq.ingest import Settings
from hq.store import HqStore, StorageFailed
from sync.protocol import SUPPORTED_PROTOCOLS, ChangesPage, PushResponse, WireEntry
from tests.fixtures import entries

KEY = bytes(range(32))
T1_TOKEN, T2_TOKEN = "t1-secret-token", "t2-secret-token"


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url, Settings(recompute=False))  # the protocol here; pricing is tests/sync/test_hq_conflicts.py's
    seed_demo(hq, KEY)
    hq.add_terminal("T1", "S-001", T1_TOKEN)
    hq.add_terminal("T2", "S-002", T2_TOKEN)
    yield hq
    hq.close()


@pytest.fixture
def server(store: HqStore) -> Iterator[ServerHandle]:
    handle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    yield handle
    handle.stop()
    assert not handle.thread.is_alive()


@pytest.fixture
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may route these calls off 127.0.0.1.
    with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sale(seq: int, member: str | None = "M-0001", delta: int = 12, terminal: str = "T1") -> dict[str, Any]:
    store_id = {"T1": "S-001"}.get(terminal, "S-002")
    return WireEntry(
        terminal_id=terminal,
        seq=seq,
        txn_id=f"{terminal}-{seq}",
        kind="sale",
        payload=entries.sale(member, delta * 100, earned=delta, store_id=store_id),
        created_at="2026-01-01T09:00:00.000Z",
    ).model_dump()


def push(
    http: httpx.Client, entries: list[dict[str, Any]], token: str = T1_TOKEN, terminal: str = "T1"
) -> httpx.Response:
    return http.post(
        "/v1/journal", json={"protocol": 1, "terminal_id": terminal, "entries": entries}, headers=auth(token)
    )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    assert set(body) == {"code", "message"}


def test_server_binds_the_requested_loopback_port(server: ServerHandle) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    srv, thread, port, _host = server
    assert (srv, thread, port) == (server.server, server.thread, server.port)


def test_health_needs_no_token(http: httpx.Client) -> None:
    response = http.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["time"].endswith("Z")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": T1_TOKEN},
        {"Authorization": "Basic dDE6eA=="},
        {"Authorization": "Bearer"},
        auth("not-a-token"),
    ],
    ids=["missing", "no-scheme", "basic", "empty", "unknown"],
)
def test_requests_without_a_valid_token_get_401(http: httpx.Client, headers: dict[str, str]) -> None:
    for response in (
        http.post("/v1/journal", json={"terminal_id": "T1", "entries": [sale(1)]}, headers=headers),
        http.get("/v1/changes", headers=headers),
    ):
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_revoked_terminal_is_refused(http: httpx.Client, store: HqStore) -> None:
    store.revoke_terminal("T1")
    assert_error(push(http, [sale(1)]), 401, "credential_revoked")
    assert_error(http.get("/v1/changes", headers=auth(T1_TOKEN)), 401, "credential_revoked")
    assert store.journal_count("T1") == 0


def test_a_terminal_may_not_push_for_another(http: httpx.Client, store: HqStore) -> None:
    assert_error(push(http, [sale(1, terminal="T2")], token=T1_TOKEN, terminal="T2"), 403, "wrong_terminal")
    assert_error(push(http, [sale(1), sale(2, terminal="T2")]), 403, "wrong_terminal")
    assert_error(push(http, [sale(1, terminal="T2")], token=T1_TOKEN, terminal="T1"), 403, "wrong_terminal")
    assert store.journal_count("T1") == store.journal_count("T2") == 0
    assert store.member("M-0001").points == 1200  # type: ignore[union-attr]


def test_push_then_changes_roundtrip(http: httpx.Client) -> None:
    start = ChangesPage.model_validate(http.get("/v1/changes", params={"since": 0}, headers=auth(T2_TOKEN)).json())
    assert len(start.members) == 4 and len(start.cards) == 4 and not start.more
    response = push(http, [sale(1, delta=12), sale(2, member="M-0002", delta=3)])
    assert response.status_code == 200, response.text
    assert PushResponse.model_validate(response.json()) == PushResponse(acked_seq=2, stored=2, duplicates=0)
    page = ChangesPage.model_validate(
        http.get("/v1/changes", params={"since": start.cursor}, headers=auth(T2_TOKEN)).json()
    )
    assert {(m.member_id, m.points) for m in page.members} == {("M-0001", 1212), ("M-0002", 303)}
    assert page.cursor > start.cursor and not page.more
    empty = http.get("/v1/changes", params={"since": page.cursor}, headers=auth(T2_TOKEN)).json()
    assert empty == {
        "cursor": page.cursor,
        "more": False,
        "members": [],
        "cards": [],
        "rules": [],
        "rule_docs": [],
        "coupons": [],
        "keys": [],
        "revocations": [],
        "device_certs": [],
        "vouchers": [],
        "gift_cards": [],
        "deleted": [],
        "allocations": [],  # this terminal's flash-drop allocations: on every page, none held here
        "topup_policy": {  # this terminal's top-up policy, on every page: head office never enabled it
            "enabled": False,
            "per_transaction": 0,
            "per_day": 0,
            "per_member_day": 0,
            "offline_total": 0,
            "timezone": "UTC",
            "day_starts": "00:00",
        },
        "merchant_id": "chain",  # the merchant of this terminal's store, on every page: none set, the chain's
        "voucher_stock": {"offline_total": 0, "codes": []},  # this terminal's voucher stock: none issued to it
        "gift_terms": {"expiry_days": 0, "dormant_days": 0},  # the chain's gift card terms: none set
        "spend_held": [],  # every member id whose spending is held, on every page: none contested
    }


def test_a_retried_batch_gets_the_same_answer_and_applies_once(http: httpx.Client, store: HqStore) -> None:
    batch = [sale(1), sale(2), sale(4)]
    first, again = push(http, batch).json(), push(http, batch).json()
    assert first == {"acked_seq": 2, "stored": 3, "duplicates": 0, "gaps": [[3, 3]], "flagged": 0}
    assert again == {"acked_seq": 2, "stored": 0, "duplicates": 3, "gaps": [[3, 3]], "flagged": 0}
    assert store.member("M-0001").points == 1200 + 36  # type: ignore[union-attr]
    assert push(http, [sale(3)]).json() == {"acked_seq": 4, "stored": 1, "duplicates": 0, "gaps": [], "flagged": 0}


def test_a_conflicting_entry_gets_409_and_nothing_is_stored(http: httpx.Client, store: HqStore) -> None:
    push(http, [sale(1)])
    clash = dict(sale(1), txn_id="different-txn")
    assert_error(push(http, [sale(2), clash]), 409, "seq_conflict")
    assert store.journal_count("T1") == 1
    assert store.member("M-0001").points == 1212  # type: ignore[union-attr]


def test_schema_errors_are_422_error_bodies(http: httpx.Client) -> None:
    bad_seq = dict(sale(1), seq=0)
    assert_error(push(http, [bad_seq]), 422, "invalid_request")
    assert_error(http.post("/v1/journal", content=b"{not json", headers=auth(T1_TOKEN)), 422, "invalid_request")
    assert_error(http.get("/v1/changes", params={"since": -1}, headers=auth(T1_TOKEN)), 422, "invalid_request")


def test_unsupported_protocol_and_unknown_paths(http: httpx.Client) -> None:
    newer = max(SUPPORTED_PROTOCOLS) + 1
    response = http.post(
        "/v1/journal", json={"protocol": newer, "terminal_id": "T1", "entries": []}, headers=auth(T1_TOKEN)
    )
    assert_error(response, 400, "unsupported_protocol")
    assert "upgrade head office first" in response.json()["message"]
    older = http.post("/v1/journal", json={"protocol": 0, "terminal_id": "T1", "entries": []}, headers=auth(T1_TOKEN))
    assert_error(older, 400, "unsupported_protocol")
    assert "upgrade the till" in older.json()["message"]
    for spoken in sorted(SUPPORTED_PROTOCOLS):  # this release's protocol and the one before
        ok = http.post(
            "/v1/journal", json={"protocol": spoken, "terminal_id": "T1", "entries": []}, headers=auth(T1_TOKEN)
        )
        assert ok.status_code == 200, ok.text
    assert_error(http.get("/v1/nothing-here"), 404, "not_found")
    assert_error(http.delete("/v1/journal", headers=auth(T1_TOKEN)), 405, "method_not_allowed")


def test_changes_limit_is_capped_not_refused(http: httpx.Client) -> None:
    response = http.get("/v1/changes", params={"since": 0, "limit": 10**9}, headers=auth(T1_TOKEN))
    assert response.status_code == 200
    assert len(response.json()["members"]) == 4
    small = http.get("/v1/changes", params={"since": 0, "limit": 3}, headers=auth(T1_TOKEN)).json()
    assert small["more"] is True and len(small["members"]) + len(small["cards"]) + len(small["rules"]) == 3


class _BrokenStore(HqStore):
    """Authenticates everyone as T1, then fails like a database that lost its disk."""

    def authenticate(self, token: str) -> str | None:
        return "T1"

    def ingest(self, terminal_id: str, entries: list[WireEntry], clock: str | None = None) -> PushResponse:
        raise StorageFailed("disk I/O error")

    def changes(self, since: int, limit: int = 500) -> ChangesPage:
        raise RuntimeError("bug")


def test_storage_failures_are_503_and_bugs_500(tmp_path: Path) -> None:
    handle = start_in_thread(_BrokenStore(str(tmp_path / "broken.db")), "127.0.0.1", 0, timeout=10)
    try:
        with httpx.Client(base_url=handle.url, timeout=5, trust_env=False) as http:
            assert_error(push(http, [sale(1)]), 503, "storage_unavailable")
            assert_error(http.get("/v1/changes", headers=auth("x")), 500, "internal")
    finally:
        handle.stop()


def test_start_in_thread_reports_a_port_it_cannot_bind(store: HqStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="failed to start"):
            start_in_thread(store, "127.0.0.1", taken.getsockname()[1], timeout=10)


def test_each_head_office_app_serves_the_routes_built_once_at_import(tmp_path: Path) -> None:
    """Two apps (two head offices in one process, as the demo and the tests make) share their areas' route
    objects: FastAPI's per-app copy of an included router rebuilds every parameter's validator for each app."""
    from fastapi.routing import APIRoute

    from hq.api.app import ROUTERS, create_app

    first, second = HqStore(str(tmp_path / "one.db")), HqStore(str(tmp_path / "two.db"))
    try:
        built = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
        apps = [create_app(first), create_app(second)]
        for app, store in zip(apps, (first, second), strict=True):
            served = [route for route in app.routes if isinstance(route, APIRoute)]
            assert len(served) == len(built) > 100
            assert all(a is b for a, b in zip(served, built, strict=True))  # the very objects, not copies
            assert app.state.store is store  # each app its own store: the routes read it from the request
    finally:
        first.close()
        second.close()


def test_head_office_builds_its_openapi_document_without_a_warning(tmp_path: Path) -> None:
    """Every route's schema built as a head-office process builds it (its OpenAPI document, each request body):
    no warning reaches the operator's log, the protocol's deferred models' ``body`` alias included."""
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from hq.api.app import create_app\n"
        "from hq.store import HqStore\n"
        "app = create_app(HqStore(sys.argv[1], backup=False))\n"
        "paths = TestClient(app).get(app.openapi_url).json()['paths']\n"
        "print(json.dumps(sorted(paths)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script, str(tmp_path / "hq.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "/v1/journal" in done.stdout
    warned = [line for line in done.stderr.splitlines() if "Warning" in line and "alias" in line]
    assert not warned, warned
