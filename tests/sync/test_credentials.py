"""Terminal credentials: one-time enrolment codes, rotation without a lock-out, revocation, admin
tokens. Real head office on 127.0.0.1 (SQLite and PostgreSQL), real httpx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle
from hq.store import EnrolmentRefused, HqStore
from sync.client import HqRejected, SyncClient, enrol
from terminal.store import Store


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    yield store
    store.close()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "terminal.db")
    yield store
    store.close()


def test_an_enrolment_code_works_once_and_only_for_its_terminal(hq: HqStore, server: ServerHandle) -> None:
    code = hq.enrol_code("T-NEW", "S-7")
    assert len(code) == 19 and code.count("-") == 3
    with pytest.raises(HqRejected) as wrong:
        enrol(server.url, code, "T-OTHER")
    assert (wrong.value.status, wrong.value.code) == (401, "enrol_code_invalid")
    assert "made for another terminal, not T-OTHER" in str(wrong.value)  # the operator is told which to fix
    reply = enrol(server.url, code.lower().replace("-", " "), "T-NEW")  # typed by a person: case and spaces
    assert (reply.terminal_id, reply.store_id) == ("T-NEW", "S-7") and reply.root_key == hq.root_public_key()
    assert hq.authenticate(reply.token) == "T-NEW"
    with pytest.raises(HqRejected, match="enrol_code_invalid"):
        enrol(server.url, code, "T-NEW")


def test_an_expired_code_is_refused(hq: HqStore) -> None:
    code = hq.enrol_code("T-NEW", "S-7", hours=-1)
    with pytest.raises(EnrolmentRefused):
        hq.enrol(code)


def test_rotation_keeps_the_old_token_until_the_new_one_is_used(hq: HqStore, server: ServerHandle, till: Store) -> None:
    old = hq.add_terminal("T1", "S1")
    saved: list[str] = []
    client = SyncClient(till, "T1", server.url, old, save_token=saved.append, end_of_day=False)
    fresh = hq.rotate("T1")  # as if a rotation reply had been lost: the old token still works
    assert hq.authenticate(old) == "T1" and fresh != old
    client.rotate_credential()
    assert saved and saved[-1] != old
    assert hq.authenticate(old) == "T1"  # not used yet: still good
    client.sync_once()  # the first use of the new token retires the old one
    assert hq.authenticate(old) is None and hq.authenticate(saved[-1]) == "T1"
    assert hq.authenticate(fresh) is None
    client.close()


def test_a_revoked_terminal_gets_credential_revoked_and_a_new_code_lets_it_back(
    hq: HqStore, server: ServerHandle, till: Store
) -> None:
    token = hq.add_terminal("T1", "S1")
    hq.revoke_terminal("T1")
    with pytest.raises(HqRejected) as refused:
        SyncClient(till, "T1", server.url, token, end_of_day=False).sync_once()
    assert (refused.value.status, refused.value.code) == (401, "credential_revoked")
    assert till.state("offline_since") is not None
    reply = enrol(server.url, hq.enrol_code("T1", "S1"))
    assert hq.authenticate(reply.token) == "T1"
    with pytest.raises(ValueError, match="belongs to store S1"):
        hq.enrol_code("T1", "S2")


def test_admin_routes_need_an_admin_token(hq: HqStore, server: ServerHandle) -> None:
    terminal = hq.add_terminal("T1", "S1")
    admin = hq.add_admin("Mio")
    for token, status, code in ((terminal, 403, "forbidden"), ("nonsense", 403, "forbidden")):
        response = httpx.get(f"{server.url}/v1/admin/terminals", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert httpx.get(f"{server.url}/v1/admin/terminals").status_code == 401
    listed = httpx.get(f"{server.url}/v1/admin/terminals", headers={"Authorization": f"Bearer {admin}"}).json()
    assert [t["terminal_id"] for t in listed] == ["T1"]
    # An admin token is not a terminal credential.
    response = httpx.get(f"{server.url}/v1/changes", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 401
