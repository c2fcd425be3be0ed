"""The wallet's paying phones over a real head-office server (uvicorn in a thread on 127.0.0.1, SQLite):
setting one up needs a live, recent session and the wallet's own Origin, issues the certificate
``POST /v1/devices`` issues (the same function, the same feed), at most ``MAX_DEVICES`` live a member;
removing one revokes only the member's own; an administrator told of a stolen phone ends every session of the
member and revokes its phones without blocking it, audited, and a till's token or a missing reason changes
nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import audit, payments
from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from hq.wallet import devices, signin
from terminal import payments as pay
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[HqStore, ServerHandle]]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.upsert_member("M-A", "Aiko", "basic", 0)
    hq.upsert_member("M-B", "Ben", "basic", 0)
    handle = start_in_thread(hq)
    yield hq, handle
    handle.stop()
    hq.close()


def session(hq: HqStore, url: str, member: str, age: int = 0) -> httpx.Client:
    token = hq.db.transact(lambda tx: signin.open_session(tx, member, "code", int(time.time()) - age))
    return httpx.Client(base_url=url, headers={"Origin": url}, cookies={"tp_wallet": token}, timeout=10)


def new_key() -> str:
    return pay.public_bytes(Ed25519PrivateKey.generate()).hex()


def test_a_phone_gets_the_certificate_the_member_app_gets_and_reaches_the_feed(
    server: tuple[HqStore, ServerHandle],
) -> None:
    hq, handle = server
    key = new_key()
    with session(hq, handle.url, "M-A") as wallet:
        reply = wallet.post("/wallet/devices", json={"device_key": key})
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-control"] == "no-store"
        cert = pay.cert_from_doc(reply.json())
        assert cert.member_id == "M-A" and cert.device_key.hex() == key
        assert cert.offline_cap == payments.OFFLINE_CAP and cert.expires_at - cert.issued_at == payments.CERT_LIFETIME_S
        key_id, issuer = payments.payment_key(hq)
        pay.check_cert(cert, {key_id: pay.public_bytes(issuer)}, int(time.time()), revoked=False)
        listed = wallet.get("/wallet/devices").json()
        assert listed == {
            "member_id": "M-A",
            "devices": [
                {
                    "cert_id": cert.cert_id.hex(),
                    "issued_at": cert.issued_at,
                    "expires_at": cert.expires_at,
                    "revoked": False,
                }
            ],
        }
    with hq.db.read() as tx:
        assert tx.one("SELECT member_id, version FROM device_certs WHERE cert_id = ?", [cert.cert_id.hex()])[1] > 0  # type: ignore[index]


def test_setting_up_is_refused_without_a_recent_session_a_good_key_or_the_wallets_origin(
    server: tuple[HqStore, ServerHandle],
) -> None:
    hq, handle = server
    with httpx.Client(base_url=handle.url, headers={"Origin": handle.url}, timeout=10) as nobody:
        reply = nobody.post("/wallet/devices", json={"device_key": new_key()})
        assert (reply.status_code, reply.json()["code"]) == (401, "wallet_sign_in_required")
        assert nobody.get("/wallet/devices").json()["code"] == "wallet_sign_in_required"
    with session(hq, handle.url, "M-A", age=devices.FRESH_S + 5) as old:
        reply = old.post("/wallet/devices", json={"device_key": new_key()})
        assert (reply.status_code, reply.json()["code"]) == (401, "wallet_sign_in_again")
        assert old.get("/wallet/devices").status_code == 200  # the list needs only a live session
    with session(hq, handle.url, "M-A") as wallet:
        for bad in ("ab" * 31, "AB" * 32, "zz" * 32):
            reply = wallet.post("/wallet/devices", json={"device_key": bad})
            assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request"), bad
        for origin in ("http://127.0.0.1:1", "null", f"{handle.url}.evil.example"):
            reply = wallet.post("/wallet/devices", json={"device_key": new_key()}, headers={"Origin": origin})
            assert (reply.status_code, reply.json()["code"]) == (403, "wallet_bad_origin"), origin
        reply = wallet.post("/wallet/devices", json={"device_key": new_key()}, headers={"Sec-Fetch-Site": "same-site"})
        assert reply.status_code == 403
    assert payments.devices(hq, "M-A") == []


def test_at_most_max_devices_live_and_only_the_members_own_are_removed(server: tuple[HqStore, ServerHandle]) -> None:
    hq, handle = server
    with session(hq, handle.url, "M-A") as aiko, session(hq, handle.url, "M-B") as ben:
        made = [aiko.post("/wallet/devices", json={"device_key": new_key()}).json() for _ in range(devices.MAX_DEVICES)]
        reply = aiko.post("/wallet/devices", json={"device_key": new_key()})
        assert (reply.status_code, reply.json()["code"]) == (409, "wallet_too_many_devices")
        first = made[0]["cert_id"]
        reply = ben.post(f"/wallet/devices/{first}/remove")
        assert (reply.status_code, reply.json()["code"]) == (409, "device_cert_unknown")
        assert not any(d["revoked"] for d in payments.devices(hq, "M-A"))
        assert aiko.post(f"/wallet/devices/{first}/remove", headers={"Origin": "http://127.0.0.1:1"}).status_code == 403
        reply = aiko.post(f"/wallet/devices/{first}/remove")
        assert reply.status_code == 200 and reply.json() == {"revocation_id": f"device:{first}"}
        shown = aiko.get("/wallet/devices").json()["devices"]
        assert [d["revoked"] for d in shown] == [False] * (devices.MAX_DEVICES - 1) + [True]  # live ones first
        assert aiko.post("/wallet/devices", json={"device_key": new_key()}).status_code == 200  # room again
    revoked = {d["cert_id"]: d["revoked"] for d in payments.devices(hq, "M-A")}
    assert revoked[first] is True and sum(revoked.values()) == 1


def test_signing_out_everywhere_removes_every_paying_phone_of_the_member(server: tuple[HqStore, ServerHandle]) -> None:
    hq, handle = server
    with session(hq, handle.url, "M-A") as aiko, session(hq, handle.url, "M-B") as ben:
        for _ in range(2):
            assert aiko.post("/wallet/devices", json={"device_key": new_key()}).status_code == 200
        assert ben.post("/wallet/devices", json={"device_key": new_key()}).status_code == 200
        reply = aiko.post("/wallet/sign-out", data={"everywhere": "1"})
        assert reply.status_code == 303 and reply.headers["clear-site-data"] == '"cache", "storage"'
    assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [True, True]
    assert [d["revoked"] for d in payments.devices(hq, "M-B")] == [False]  # another member's are untouched


def test_an_administrator_signs_a_member_out_everywhere_without_blocking_it(
    server: tuple[HqStore, ServerHandle],
) -> None:
    hq, handle = server
    token = hq.add_admin("Mio")
    admin = httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    hq.add_terminal("T1", "S1", "till-1-token")
    with (
        session(hq, handle.url, "M-A") as aiko,
        session(hq, handle.url, "M-A") as thief,
        session(hq, handle.url, "M-B") as ben,
        admin,
    ):
        for phone in (aiko, thief, ben):
            assert phone.post("/wallet/devices", json={"device_key": new_key()}).status_code == 200
        path = "/v1/admin/members/M-A/sign-out"
        for body, headers, refused in (
            ({}, {}, (422, "invalid_request")),  # no reason
            ({"reason": "   "}, {}, (422, "invalid_request")),
            ({"reason": "x" * 201}, {}, (422, "invalid_request")),
            ({"reason": "stolen"}, {"Authorization": "Bearer till-1-token"}, (403, "forbidden")),  # a till's token
        ):
            reply = admin.post(path, json=body, headers=headers)
            assert (reply.status_code, reply.json()["code"]) == refused, body
        reply = admin.post("/v1/admin/members/M-NONE/sign-out", json={"reason": "stolen"})
        assert (reply.status_code, reply.json()["code"]) == (404, "unknown_member")
        assert thief.get("/wallet/devices").status_code == 200  # nothing refused changed anything
        assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [False, False]

        done = admin.post(path, json={"reason": "phone stolen, reported at the desk"})
        assert done.status_code == 200, done.text
        assert done.json() == {"member_id": "M-A", "sessions_ended": 2, "phones_revoked": 2}
        for ended in (aiko, thief):
            assert ended.get("/wallet/devices").status_code == 401  # every session of the member ended
        assert ben.get("/wallet/devices").status_code == 200  # another member's is untouched
        again = admin.post(path, json={"reason": "again"})
        assert again.json() == {"member_id": "M-A", "sessions_ended": 0, "phones_revoked": 0}
    assert [d["revoked"] for d in payments.devices(hq, "M-A")] == [True, True]  # the tills refuse their codes
    assert [d["revoked"] for d in payments.devices(hq, "M-B")] == [False]
    assert hq.member("M-A") is not None and hq.member("M-A").status == "active"  # type: ignore[union-attr]
    with hq.db.read() as tx:
        records = [(r.actor, r.action, r.target, r.reason) for r in audit.recent(tx, 2)]
    assert ("Mio", "wallet_sign_out", "M-A", "phone stolen, reported at the desk") in records


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    found = HqStore(hq_url)
    found.upsert_member("M-A", "Aiko", "basic", 0)
    found.upsert_member("M-B", "Ben", "basic", 0)
    yield found
    found.close()


def test_the_rules_on_both_engines(store: HqStore) -> None:
    now = int(time.time())
    token = store.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", now - 60))
    assert signin.live_session(store, token, now) == ("M-A", now - 60)
    too_old = now - devices.FRESH_S - 1
    with pytest.raises(signin.WalletRefused) as info:
        devices.register(store, "M-A", too_old, new_key(), now)
    assert info.value.code.value == "wallet_sign_in_again"
    made = [devices.register(store, "M-A", now - 60, new_key(), now) for _ in range(devices.MAX_DEVICES)]
    with pytest.raises(signin.WalletRefused) as info:
        devices.register(store, "M-A", now - 60, new_key(), now)
    assert info.value.code.value == "wallet_too_many_devices"
    with pytest.raises(signin.WalletRefused) as info:
        devices.remove(store, "M-B", made[0].cert_id.hex())
    assert info.value.code.value == "device_cert_unknown"
    assert devices.remove(store, "M-A", made[0].cert_id.hex()) == f"device:{made[0].cert_id.hex()}"
    assert [d["revoked"] for d in devices.listed(store, "M-A")] == [False] * (devices.MAX_DEVICES - 1) + [True]
    assert devices.remove_all(store, "M-A") == devices.MAX_DEVICES - 1
    assert all(d["revoked"] for d in devices.listed(store, "M-A"))
