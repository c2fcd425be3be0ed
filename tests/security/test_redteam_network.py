"""A network between a till and head office that replays and tampers with the changes feed (plain http, or a
TLS proxy someone controls): what it may not do to the signed part of the feed, keys and revocations. A real
head-office process; the till is the till's own store, service and sync client, its client's transport
rewriting head office's answers as the network would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import pytest

from hq.store import HqStore
from sync.client import HqFailed, SyncClient
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line
from tests.security.chain import Chain, Till

Page = dict[str, Any]


class Network(httpx.HTTPTransport):
    """Passes every request to head office and hands each changes page to ``tamper`` on its way back."""

    def __init__(self, tamper: Callable[[Page], Page]) -> None:
        super().__init__()
        self.tamper = tamper
        self.pages: list[Page] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path != "/v1/changes":
            return response
        response.read()
        page = json.loads(response.content)
        self.pages.append(json.loads(response.content))
        return httpx.Response(200, json=self.tamper(page))


@contextmanager
def office(chain: Chain) -> Iterator[HqStore]:
    """Head office's own storage, as its administration reaches it."""
    store = HqStore(chain.hq.db)
    try:
        yield store
    finally:
        store.close()


def through(chain: Chain, till: Till, network: Network) -> SyncClient:
    return SyncClient(till.store, till.terminal_id, chain.hq.url, chain.tokens[till.terminal_id], transport=network)


def revoke_phone(chain: Chain) -> str:
    cert = chain.phone.cert
    assert cert is not None
    reply = httpx.post(
        f"{chain.hq.url}/v1/admin/devices/{cert.cert_id.hex()}/revoke",
        json={"reason": "stolen"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return cert.cert_id.hex()


def tampered_pull(chain: Chain, till: Till, network: Network) -> None:
    """``till`` pulls through ``network``: a page it refuses (``HqFailed``) is as good as one that keeps what it held."""
    with suppress(HqFailed):
        through(chain, till, network).pull_once()


def thief_pays(chain: Chain, till: Till) -> None:
    """The stolen phone's code at ``till`` with no network to head office: refused while the till knows."""
    till.offline()
    quote = till.service.quote("M-1", Basket((Line("TV", 1, 1500),)))
    with pytest.raises(Rejected) as caught:
        till.service.commit(quote, Payment(None, chain.phone.next_code()))
    assert caught.value.code is Code.DEVICE_CERT_REVOKED


def test_a_forged_tombstone_does_not_take_a_stolen_phone_off_the_tills_revocation_list(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    cert = revoke_phone(chain)
    a.client.pull_once()
    assert a.store.revoked("device", cert)

    def unrevoke(page: Page) -> Page:
        page["deleted"] = [*page.get("deleted", []), {"kind": "revocation", "id": f"device:{cert}"}]
        return page

    with office(chain) as hq:
        hq.upsert_member("M-2", "Ben", "silver")  # something for the next page to carry
    network = Network(unrevoke)
    tampered_pull(chain, a, network)
    assert network.pages, "the till pulled through the network"
    assert a.store.revoked("device", cert)
    thief_pays(chain, a)


def test_another_signed_revocation_under_the_phones_id_does_not_replace_its_revocation(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    cert = revoke_phone(chain)
    a.client.pull_once()
    assert a.store.revoked("device", cert)
    held: list[Page] = []

    def swap(page: Page) -> Page:
        for row in held:  # yesterday's signed card revocation, renamed the phone's
            page["revocations"] = [*page.get("revocations", []), dict(row, revocation_id=f"device:{cert}")]
        return page

    recorder = Network(lambda page: page)
    with office(chain) as hq:
        hq.revoke("card", "dd" * 32, "lost")  # any other signed entry of the list
    through(chain, a, recorder).pull_once()
    held.extend(r for p in recorder.pages for r in p.get("revocations", []) if r["body"]["kind"] == "card")
    assert held
    with office(chain) as hq:
        hq.upsert_member("M-2", "Ben", "silver")
    tampered_pull(chain, a, Network(swap))
    assert a.store.revoked("device", cert)
    thief_pays(chain, a)


def test_a_revocation_head_office_deletes_leaves_the_till_and_a_replay_of_that_deletion_does_not(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    a, _ = tills
    cert = revoke_phone(chain)
    a.client.pull_once()
    assert a.store.revoked("device", cert)
    with office(chain) as hq:
        assert hq.delete("revocation", f"device:{cert}")  # an administrator's mistake undone
    recorder = Network(lambda page: page)
    through(chain, a, recorder).pull_once()
    assert not a.store.revoked("device", cert)
    [deletion] = [t for p in recorder.pages for t in p.get("deleted", []) if t["kind"] == "revocation"]
    # Revoked again; yesterday's deletion replayed by the network takes nothing off.
    revoke_phone(chain)
    a.client.pull_once()
    assert a.store.revoked("device", cert)
    with office(chain) as hq:
        hq.upsert_member("M-2", "Ben", "silver")

    def replay(page: Page) -> Page:
        page["deleted"] = [*page.get("deleted", []), deletion]
        return page

    tampered_pull(chain, a, Network(replay))
    assert a.store.revoked("device", cert)
    thief_pays(chain, a)
