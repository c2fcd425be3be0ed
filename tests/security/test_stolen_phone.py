"""A stolen phone running the member app: it holds the member-app token and its paying key. Signing the
member out everywhere (the member in the wallet, or an administrator told of the theft) must leave the
thief nothing: the phone's key is revoked, and its token can neither register a new paying key nor read
the member. Whatever path registers them, a member holds at most ``MAX_DEVICES`` live paying devices,
each with its own offline allowance. A real head-office process (SQLite), the member app as tills meet it."""

from __future__ import annotations

import json
import time
import uuid

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import payments
from terminal import payments as pay
from tests.security.chain import Chain


def stolen_token(chain: Chain) -> str:
    """The member-app token as the phone keeps it (what a thief holding the phone can read)."""
    return str(json.loads((chain.root / "phone" / "state.json").read_text())["token"])


def register(chain: Chain, token: str) -> tuple[httpx.Response, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    reply = httpx.post(
        f"{chain.hq.url}/v1/devices",
        json={"device_key": pay.public_bytes(key).hex()},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return reply, key


def confirm(chain: Chain, key: Ed25519PrivateKey, cert_id: bytes, amount: int, counter: int = 1) -> httpx.Response:
    code = pay.make_code(key, cert_id, int(time.time()), counter)
    return httpx.post(
        f"{chain.hq.url}/v1/payments/confirm",
        json={
            "member_id": "M-1",
            "amount": amount,
            "txn_id": str(uuid.uuid4()),
            "code": code,
            "code_id": pay.parse_code(code).code_id,
        },
        headers={"Authorization": f"Bearer {chain.tokens['T-A']}"},
        timeout=10,
    )


def test_signing_out_everywhere_leaves_a_stolen_app_nothing_to_pay_with(chain: Chain) -> None:
    token = stolen_token(chain)
    before, key = register(chain, token)  # the app works until the member reports the theft
    assert before.status_code == 200, before.text
    assert confirm(chain, key, bytes.fromhex(before.json()["cert_id"]), 100).status_code == 200

    done = httpx.post(
        f"{chain.hq.url}/v1/admin/members/M-1/sign-out",
        json={"reason": "phone stolen"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert done.status_code == 200, done.text

    refused = confirm(chain, key, bytes.fromhex(before.json()["cert_id"]), 100, counter=2)
    assert refused.status_code != 200 and refused.json()["code"] == "device_cert_revoked", refused.text
    after, thief_key = register(chain, token)  # a fresh key with the same token
    assert (after.status_code, after.json()["code"]) == (401, "unauthorized"), after.text
    me = httpx.get(f"{chain.hq.url}/v1/members/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 401
    # the member's app gets a new token from head office and pays again
    fresh = chain.hq.cli("member-token", "M-1").strip()
    again, new_key = register(chain, fresh)
    assert again.status_code == 200, again.text
    assert confirm(chain, new_key, bytes.fromhex(again.json()["cert_id"]), 100).status_code == 200


def test_a_member_app_token_registers_no_more_than_the_wallets_limit(chain: Chain) -> None:
    token = stolen_token(chain)  # the fixture's phone holds one live device already
    statuses = [register(chain, token)[0] for _ in range(payments.MAX_DEVICES + 2)]  # bounded
    assert [r.status_code for r in statuses] == [200] * (payments.MAX_DEVICES - 1) + [409] * 3
    assert {r.json()["code"] for r in statuses[payments.MAX_DEVICES - 1 :]} == {"wallet_too_many_devices"}
    me = httpx.get(f"{chain.hq.url}/v1/members/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert sum(not d["revoked"] for d in me.json()["devices"]) == payments.MAX_DEVICES
    # an administrator's registration for the member is held to the same limit
    key = Ed25519PrivateKey.generate()
    by_admin = httpx.post(
        f"{chain.hq.url}/v1/devices",
        json={"device_key": pay.public_bytes(key).hex(), "member_id": "M-1"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert (by_admin.status_code, by_admin.json()["code"]) == (409, "wallet_too_many_devices")
