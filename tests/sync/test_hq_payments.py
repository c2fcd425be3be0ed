"""Member payments between a real head-office server (in a thread, SQLite), the member-app simulator and
real tills (SQLite store, service, sync client): top-up by pull, device certificates by pull, online
confirmation (replays and overspends refused by head office), revocation by pull, bad codes, head
office unreachable, offline overspend at two tills recovered by the next top-up."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from hq import payments
from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from sync.memberapp import MemberApp, MemberAppError
from sync.protocol import ConfirmRequest
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures
from tests.ports import closed_port

WIDE = pay.RiskLimits(per_transaction=0, per_member_day=0, terminal_total=0)


@dataclass
class Chain:
    hq: HqStore
    server: ServerHandle
    admin: dict[str, str]
    tokens: dict[str, str]
    app: MemberApp
    tmp: Path

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.server.url}{path}", headers=self.admin, timeout=10, **kwargs)  # type: ignore[arg-type]

    def topup(self, amount: int, member_id: str = "M-1") -> dict[str, object]:
        reply = self.api("POST", "/v1/admin/topups", json={"member_id": member_id, "amount": amount})
        assert reply.status_code == 200, reply.text
        found: dict[str, object] = reply.json()
        return found


@dataclass
class Till:
    store: Store
    client: SyncClient
    service: Service

    def pay(self, amount: int, code: str) -> int:
        quote = self.service.quote("M-1", Basket((Line("LUNCH", 1, amount),)))
        return self.service.commit(quote, Payment(None, code)).total

    def refused(self, amount: int, code: str) -> Code:
        with pytest.raises(Rejected) as info:
            self.pay(amount, code)
        return info.value.code


@pytest.fixture
def chain(tmp_path: Path, hq_url: str) -> Iterator[Chain]:  # noqa: F811 - the fixture
    hq = HqStore(hq_url)
    hq.set_rule("base", 1, 100)
    hq.upsert_member("M-1", "Aiko", "gold", 0)
    tokens = {t: hq.add_terminal(t, "S-001") for t in ("T-1", "T-2")}
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    server = start_in_thread(hq)
    app = MemberApp("M-1", tmp_path / "phone")
    app.register(server.url, payments.member_token(hq, "M-1"))
    yield Chain(hq, server, admin, tokens, app, tmp_path)
    server.stop()
    hq.close()


def open_till(chain: Chain, terminal_id: str, limits: pay.RiskLimits = WIDE, url: str | None = None) -> Till:
    store = Store.open(chain.tmp / terminal_id / "t.db")
    client = SyncClient(store, terminal_id, url or chain.server.url, chain.tokens[terminal_id], timeout=2)
    if url is None:
        client.sync_once()
    service = Service(store, terminal_id, limits=limits)
    service.confirm_online = confirmer(client)
    return Till(store, client, service)


@pytest.fixture
def tills(chain: Chain) -> Iterator[tuple[Till, Till]]:
    chain.topup(10_000)
    pair = (open_till(chain, "T-1"), open_till(chain, "T-2"))
    yield pair
    for till in pair:
        till.client.close()
        till.store.close()


def go_offline(till: Till) -> None:
    till.store.set_state(offline_since=utc_iso(time.time() - 5))


# -- top-up and certificates by pull --------------------------------------------------------------


def test_topup_and_device_certificate_reach_the_till_by_pull(chain: Chain) -> None:
    till = open_till(chain, "T-1")
    assert till.store.stored_value("M-1") == 0
    done = chain.topup(4200)
    assert (done["balance"], done["recovered"]) == (4200, 0)
    assert till.store.stored_value("M-1") == 0  # nothing moves until the till pulls
    till.client.sync_once()
    assert till.store.stored_value("M-1") == 4200
    cert = chain.app.cert
    assert cert is not None and till.store.device_cert(cert.cert_id.hex()) == cert.to_doc()
    key_id, _ = payments.payment_key(chain.hq)
    assert set(till.store.payment_keys()) == {key_id}  # head office's base64url key, read by the till
    assert payments.topups(chain.hq, "M-1")[0]["amount"] == 4200
    assert chain.app.account()["stored_value"] == 4200
    till.client.close()
    till.store.close()


def test_a_new_till_bootstraps_device_certificates_from_the_snapshot(chain: Chain) -> None:
    till = open_till(chain, "T-2")  # its first sync is a bootstrap
    cert = chain.app.cert
    assert cert is not None and till.store.device_cert(cert.cert_id.hex()) is not None
    assert chain.hq.snapshot_info().counts["device_certs"] == 1
    till.client.close()
    till.store.close()


def test_topups_are_idempotent_and_validated(chain: Chain) -> None:
    first = chain.api("POST", "/v1/admin/topups", json={"member_id": "M-1", "amount": 500, "topup_id": "TU-1"})
    again = chain.api("POST", "/v1/admin/topups", json={"member_id": "M-1", "amount": 500, "topup_id": "TU-1"})
    assert first.json()["balance"] == again.json()["balance"] == 500
    assert chain.hq.member("M-1").stored_value == 500  # type: ignore[union-attr]
    assert (
        chain.api("POST", "/v1/admin/topups", json={"member_id": "M-9", "amount": 5}).json()["code"] == "unknown_member"
    )
    assert chain.api("POST", "/v1/admin/topups", json={"member_id": "M-1", "amount": -5}).status_code == 422
    member = {"Authorization": f"Bearer {chain.app.state['token']}"}
    refused = httpx.post(f"{chain.server.url}/v1/admin/topups", json={"member_id": "M-1", "amount": 5}, headers=member)
    assert refused.status_code == 403  # a member app token is not an administrator's


def test_device_registration_needs_a_member_or_admin_token(chain: Chain) -> None:
    key = pay.public_bytes(Ed25519PrivateKey.generate()).hex()
    anon = httpx.post(f"{chain.server.url}/v1/devices", json={"device_key": key})
    assert (anon.status_code, anon.json()["code"]) == (401, "unauthorized")
    member = {"Authorization": f"Bearer {chain.app.state['token']}"}
    other = httpx.post(f"{chain.server.url}/v1/devices", json={"device_key": key, "member_id": "M-2"}, headers=member)
    assert other.status_code == 403
    by_admin = chain.api("POST", "/v1/devices", json={"device_key": key, "member_id": "M-1", "offline_cap": 700})
    assert by_admin.status_code == 200 and by_admin.json()["offline_cap"] == 700
    with pytest.raises(MemberAppError):
        MemberApp("M-1", chain.tmp / "thief").register(chain.server.url, "not-a-token")


# -- online confirmation --------------------------------------------------------------------------


def test_online_payment_is_confirmed_and_a_replay_elsewhere_is_refused_by_head_office(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    one, two = tills
    code = chain.app.next_code()
    assert one.pay(3000, code) == 3000
    assert one.store.stored_value("M-1") == 7000
    code_id = pay.parse_code(code).code_id
    with chain.hq.db.read() as tx:
        assert tx.all("SELECT terminal_id, amount FROM payment_confirms WHERE code_id = ?", [code_id]) == [
            ("T-1", 3000)
        ]
    assert one.refused(1000, code) is Code.PAYMENT_CODE_REPLAYED  # this till's own record
    # The other till never saw the code: only head office can refuse it, and it does, before approval.
    before = len(two.store.entries())
    assert two.refused(1000, code) is Code.PAYMENT_CODE_REPLAYED
    assert len(two.store.entries()) == before
    one.client.sync_once()
    assert chain.hq.journal_count("T-1") == 1 and chain.hq.member("M-1").stored_value == 7000  # type: ignore[union-attr]
    assert not [i for i in chain.hq.items() if i.reason == "payment_code_replayed"]


def test_head_office_holds_confirmed_payments_not_yet_pushed(chain: Chain, tills: tuple[Till, Till]) -> None:
    one, two = tills
    one.pay(8000, chain.app.next_code())  # confirmed, not pushed yet
    assert two.store.stored_value("M-1") == 10_000  # the other till still sees the whole balance ...
    assert two.refused(5000, chain.app.next_code()) is Code.INSUFFICIENT_BALANCE  # ... head office does not
    assert two.pay(2000, chain.app.next_code()) == 2000


def test_revocation_arrives_by_pull_and_head_office_refuses_the_device_meanwhile(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    one, two = tills
    cert = chain.app.cert
    assert cert is not None
    reply = chain.api("POST", f"/v1/admin/devices/{cert.cert_id.hex()}/revoke", json={"reason": "phone lost"})
    assert reply.json()["revocation_id"] == f"device:{cert.cert_id.hex()}"
    assert two.refused(1000, chain.app.next_code()) is Code.DEVICE_CERT_REVOKED  # not pulled yet: head office says so
    one.client.sync_once()
    assert one.store.revoked("device", cert.cert_id.hex())
    go_offline(one)
    assert one.refused(1000, chain.app.next_code()) is Code.DEVICE_CERT_REVOKED  # the till alone, offline
    assert chain.api("POST", "/v1/admin/devices/00ff/revoke", json={}).json()["code"] == "device_cert_unknown"


def tampered(code: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(code[5:] + "=="))
    raw[-1] ^= 0x01
    return "TPP1:" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_expired_tampered_and_forged_codes_are_refused(chain: Chain, tills: tuple[Till, Till], online: bool) -> None:
    till = tills[0]
    if not online:
        go_offline(till)
    cert = chain.app.cert
    assert cert is not None
    assert till.refused(100, chain.app.next_code(now=time.time() - 300)) is Code.PAYMENT_CODE_EXPIRED
    assert till.refused(100, tampered(chain.app.next_code())) is Code.PAYMENT_CODE_FORGED
    stranger = pay.make_code(Ed25519PrivateKey.generate(), cert.cert_id, int(time.time()), 999)
    assert till.refused(100, stranger) is Code.PAYMENT_CODE_FORGED
    unknown = pay.make_code(Ed25519PrivateKey.generate(), b"\x00" * 8, int(time.time()), 1)
    assert till.refused(100, unknown) is Code.DEVICE_CERT_UNKNOWN
    # A certificate head office never signed, slipped into the till's cache: its codes are forged.
    phone = Ed25519PrivateKey.generate()
    fake = pay.issue_cert(
        Ed25519PrivateKey.generate(),
        cert.issuer,
        b"\x01" * 8,
        "M-1",
        pay.public_bytes(phone),
        int(time.time()) - 10,
        3600,
        10_000,
    )
    till.store.put_device_certs({fake.cert_id.hex(): fake.to_doc()})
    assert till.refused(100, pay.make_code(phone, fake.cert_id, int(time.time()), 1)) is Code.PAYMENT_CODE_FORGED
    assert till.store.stored_value("M-1") == 10_000 and till.store.entries() == []


def test_head_office_checks_the_code_itself(chain: Chain) -> None:
    cert = chain.app.cert
    assert cert is not None
    code = chain.app.next_code()
    parsed = pay.parse_code(code)
    ask = {"code_id": parsed.code_id, "member_id": "M-1", "amount": 0, "txn_id": "x-1", "code": tampered(code)}

    def confirm(**changes: object) -> dict[str, object]:
        return payments.confirm(chain.hq, "T-1", ConfirmRequest.model_validate({**ask, **changes}))

    with pytest.raises(payments.PaymentRefused) as info:
        confirm()
    assert info.value.code == "payment_code_forged"
    with pytest.raises(payments.PaymentRefused) as info:
        confirm(member_id="M-2", code=code)
    assert info.value.code == "payment_code_forged"
    with pytest.raises(ValidationError):  # a code id alone proves nothing: the code itself is checked
        confirm(code=None)
    ok = confirm(code=code)
    assert ok["confirmed"] and confirm(code=code)["repeat"]  # a retry


def test_head_office_unreachable_falls_back_to_the_offline_rules(chain: Chain) -> None:
    chain.topup(10_000)
    dead = f"http://127.0.0.1:{closed_port()}"  # refused at once, and nobody can take it
    limits = pay.RiskLimits(per_transaction=2500, per_member_day=4000, terminal_total=6000)
    till = open_till(chain, "T-1", limits)
    till.client.close()
    till.client = SyncClient(till.store, "T-1", dead, chain.tokens["T-1"], timeout=1)
    till.service.confirm_online = confirmer(till.client, timeout=1)
    assert till.service.offline_state("M-1", till.service.now()).offline_for_s is None  # the till thinks it is online
    assert till.refused(3000, chain.app.next_code()) is Code.OFFLINE_LIMIT_TRANSACTION
    assert till.pay(2000, chain.app.next_code()) == 2000
    assert till.store.entries()[-1].payload["offline"] is True
    till.client.close()
    till.store.close()


# -- offline overspend, flagged and recovered -------------------------------------------------------


def test_two_offline_tills_overspend_flagged_and_recovered_by_the_next_topup(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    one, two = tills
    for till in tills:
        go_offline(till)
        assert till.pay(6000, chain.app.next_code()) == 6000  # each alone saw 10,000
    for till in tills:
        till.client.sync_once()
    assert chain.hq.member("M-1").stored_value == -2000  # type: ignore[union-attr]
    items = [i for i in chain.hq.items() if i.reason == "stored_value_overspent"]
    assert [(i.terminal_id, i.state.value, i.detail["short"]) for i in items] == [("T-2", "open", 2000)]
    assert two.store.stored_value("M-1") == -2000  # the negative balance is carried
    done = chain.topup(5000)
    assert (done["balance"], done["recovered"], done["settled_items"]) == (3000, 2000, [items[0].item_id])
    settled = [i for i in chain.hq.items() if i.reason == "stored_value_overspent"][0]
    assert settled.state.value == "settled_auto" and "top-up" in (settled.note or "")
    one.client.sync_once()
    assert one.store.stored_value("M-1") == 3000


def test_payment_routes_are_in_the_openapi_document(chain: Chain) -> None:
    spec = httpx.get(f"{chain.server.url}/v1/openapi.json").json()
    for path in ("/v1/devices", "/v1/members/me", "/v1/payments/confirm", "/v1/admin/topups"):
        assert path in spec["paths"], path
    assert "payment_code_replayed" in json.dumps(spec["paths"]["/v1/payments/confirm"])


def test_erasing_a_member_revokes_their_devices_and_tokens(chain: Chain) -> None:
    from hq.erasure import erase_member

    cert = chain.app.cert
    assert cert is not None
    token = payments.member_token(chain.hq, "M-1")
    done = erase_member(chain.hq, "M-1", "data protection request")
    assert done["devices_revoked"] == 1
    assert [d["revoked"] for d in payments.devices(chain.hq, "M-1")] == [True]
    again = httpx.post(
        f"{chain.server.url}/v1/devices",
        json={"public_key": "00" * 32},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert again.status_code in (401, 403, 404, 409), again.text  # the old app token registers nothing more
