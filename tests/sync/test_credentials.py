"""Terminal credentials: one-time enrolment codes, rotation without a lock-out, revocation, admin
tokens. Real head office on 127.0.0.1 (SQLite and PostgreSQL), real httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle
from hq.store import EnrolmentRefused, HqStore
from sync.client import HqRejected, SyncClient, enrol
from terminal.config import Config, validate
from terminal.daemon import enrol_terminal
from terminal.errors import ConfigError
from terminal.store import Store
from tests.fixtures.hq import command


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


def test_a_code_made_before_a_revocation_does_not_lift_it(hq: HqStore, server: ServerHandle) -> None:
    earlier = hq.enrol_code("T1", "S1")  # made for the till, never used: a copy of it is the thief's way back
    hq.enrol(hq.enrol_code("T1", "S1"), "T1")
    hq.revoke_terminal("T1")
    with pytest.raises(HqRejected) as refused:
        enrol(server.url, earlier, "T1")
    assert (refused.value.status, refused.value.code) == (401, "enrol_code_invalid")
    assert hq.terminal_revoked("T1") is True
    reply = enrol(server.url, hq.enrol_code("T1", "S1"), "T1")  # a code made after it: the administrator's decision
    assert hq.authenticate(reply.token) == "T1"


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


def test_a_code_of_another_store_than_the_tills_is_refused_and_stays_unused(hq: HqStore, server: ServerHandle) -> None:
    code = hq.enrol_code("T-NEW", "S-7")
    with pytest.raises(HqRejected) as wrong:
        enrol(server.url, code, "T-NEW", store_id="S-8")
    assert (wrong.value.status, wrong.value.code) == (409, "enrol_wrong_store") and "for store S-7" in str(wrong.value)
    reply = enrol(server.url, code, "T-NEW", store_id="S-7")  # the refusal left the code unused
    assert (reply.terminal_id, reply.store_id) == ("T-NEW", "S-7")


def test_a_code_of_another_store_than_the_terminal_was_enrolled_for_is_refused(
    hq: HqStore, server: ServerHandle
) -> None:
    first, second = hq.enrol_code("T-NEW", "S-7"), hq.enrol_code("T-NEW", "S-8")  # both made before either was used
    assert enrol(server.url, first, "T-NEW", store_id="S-7").store_id == "S-7"
    with pytest.raises(HqRejected) as refused:
        enrol(
            server.url, second, "T-NEW", store_id="S-8"
        )  # it would answer S-8 for a terminal head office holds in S-7
    assert (refused.value.status, refused.value.code) == (401, "enrol_code_invalid")
    assert "belongs to store S-7" in str(refused.value)
    assert hq.store_of("T-NEW") == "S-7"


def test_the_code_commands_keep_a_terminals_store_and_refuse_another_or_a_bad_lifetime(
    hq: HqStore, hq_url: str
) -> None:
    hq.add_terminal("T-9", "S-9")
    rotated = command("hq", "rotate", "T-9", "--db", hq_url)  # no --store-id: the store head office holds it in
    assert rotated.returncode == 0, rotated.stdout
    assert hq.enrol(rotated.stdout.strip().splitlines()[-1], "T-9", "S-9").store_id == "S-9"
    wrong = command("hq", "enrol-code", "T-9", "--store-id", "S-1", "--db", hq_url)
    assert wrong.returncode == 1 and wrong.stdout.startswith("wrong_store: terminal T-9 belongs to store S-9"), wrong
    moved = command("hq", "add-terminal", "T-9", "--store-id", "S-1", "--db", hq_url)
    assert moved.returncode == 1 and moved.stdout.startswith("wrong_store:"), moved.stdout
    for hours in ("0", "-5", "nan", "1e12"):  # a code dead on arrival, or one that never expires
        bad = command("hq", "enrol-code", "T-9", "--hours", hours, "--db", hq_url)
        assert bad.returncode == 1 and bad.stdout.startswith("invalid_request: --hours"), (hours, bad.stdout)
    assert command("hq", "enrol-code", "T-NEW", "--db", hq_url).returncode == 0  # a new terminal: S-001 still
    assert hq.store_of("T-9") == "S-9"


class _OlderHeadOffice(httpx.HTTPTransport):
    """The enrolment as a head office of the release before reads it: without the till's store."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/enrol":
            body = {k: v for k, v in json.loads(request.content).items() if k != "store_id"}
            request = httpx.Request(request.method, request.url, json=body)
        return super().handle_request(request)


def test_a_till_refuses_to_enrol_for_another_store_than_its_own(
    hq: HqStore, server: ServerHandle, tmp_path: Path
) -> None:
    """The till names its store when it enrols: a code of another store is ``enrol_wrong_store``, nothing kept. A head
    office that does not read the store redeems the code: the till keeps the credential, notes head office's store and
    refuses; its next start with that config is ``store_mismatch``, and the corrected config starts."""
    from terminal.config import check_held, held_by
    from terminal.errors import SetupCode

    def till(store_id: str, code: str = "") -> Config:
        section = {"url": server.url, "enrol_code": code} if code else {"url": server.url}
        return validate({"terminal": {"id": "T-NEW", "store_id": store_id, "data_dir": str(tmp_path)}, "hq": section})

    store = Store.open(tmp_path / "terminal.db")
    try:
        cfg = till("S-8", hq.enrol_code("T-NEW", "S-7"))
        with pytest.raises(ConfigError) as refused:
            enrol_terminal(cfg, store, True)
        assert (refused.value.code, refused.value.key) == (SetupCode.ENROL_WRONG_STORE, "terminal.store_id")
        assert str(refused.value).startswith("enrol_wrong_store: config key 'terminal.store_id'")
        assert not cfg.hq_token_path.exists() and store.state("hq_store_id") is None

        with pytest.raises(ConfigError) as kept:
            enrol_terminal(cfg, store, True, _OlderHeadOffice())
        assert kept.value.code is SetupCode.ENROL_WRONG_STORE and "S-7, the store head office enrolled" in str(
            kept.value
        )
        assert hq.authenticate(cfg.hq_token_path.read_text().strip()) == "T-NEW"
        assert store.state("hq_store_id") == "S-7"
        with pytest.raises(ConfigError) as mismatch:
            check_held(till("S-8"), held_by(till("S-8"), store.state))
        assert mismatch.value.code is SetupCode.STORE_MISMATCH
        check_held(till("S-7"), held_by(till("S-7"), store.state))  # the corrected config
    finally:
        store.close()


def test_a_code_does_not_move_a_till_to_another_head_office(hq: HqStore, server: ServerHandle, tmp_path: Path) -> None:
    """A till pinned to one head office's root key, handed a code of a head office with another (a hostile one on
    its network, or the wrong server): the code is not taken up, the token file and the pinned key stay; the same
    code at the till's own head office is redeemed."""
    from sync.client import HqFailed

    cfg = validate(
        {"terminal": {"id": "T-PIN", "store_id": "S-7", "data_dir": str(tmp_path)}, "hq": {"url": server.url}}
    )
    store = Store.open(tmp_path / "terminal.db")
    try:
        store.set_state(hq_root_key="another head office's key")
        cfg.hq_token_path.write_text("the old token\n")
        code = hq.enrol_code("T-PIN", "S-7")
        with pytest.raises(HqFailed, match="not the one this till pinned"):
            enrol_terminal(cfg, store, True, code=code)
        assert cfg.hq_token_path.read_text() == "the old token\n"
        assert store.state("hq_root_key") == "another head office's key"

        store.set_state(hq_root_key=hq.root_public_key())  # the till's own head office
        token = enrol_terminal(cfg, store, True, code=hq.enrol_code("T-PIN", "S-7"))
        assert hq.authenticate(token) == "T-PIN" and cfg.hq_token_path.read_text().strip() == token
    finally:
        store.close()
