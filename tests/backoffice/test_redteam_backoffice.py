"""The back office against hostile input: a refusal with its stable code, never a server error."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from hq.api.server import ServerHandle
from hq.backoffice.staff import Staff
from hq.store import HqStore
from tests.backoffice.chain import PASSWORD


def signed_in(url: str, staff_id: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, headers={"Origin": url}, follow_redirects=False, timeout=30, trust_env=False)
    reply = client.post("/backoffice/sign-in", data={"staff_id": staff_id, "password": PASSWORD})
    assert reply.status_code == 303, reply.text[:300]
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/backoffice/").text)
    assert found
    return client, found.group(1)


SPEC = {
    "name": "Welcome back",
    "segment": "everyone",
    "schedule": {"kind": "daily", "at": "09:00"},
}


@pytest.mark.parametrize(
    "template",
    [
        '{"kind": "amount_off", "value": 100, "text": "\\ud800"}',
        '{"kind": "amount_off", "value": 100, "note": NaN}',
    ],
)
def test_a_launch_with_a_hostile_spec_is_refused_with_its_code(
    office: tuple[HqStore, dict[str, Staff], ServerHandle], template: str
) -> None:
    _, _, server = office
    client, csrf = signed_in(server.url, "market")
    head = json.dumps(SPEC)[:-1]
    text = head + ', "variants": [{"variant": "a", "coupon": ' + template + "}]}"
    reply = client.post(
        "/backoffice/campaigns/launch",
        data={"campaign_id": "welcome", "spec": text, "reason": "spring", "csrf": csrf},
    )
    client.close()
    assert reply.status_code < 500, reply.status_code
    assert 'data-code="campaign_invalid"' in reply.text
