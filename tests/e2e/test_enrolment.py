"""Members join at the till, against a real head-office process: a new card enrolled with "new member"
and a tap, its sale earning points; two tills enrolling one card offline (merged); the receipt's
claim QR decoded from its PNG and filled in on head office's sign-up page in Chromium; claims used
twice, expired or forged refused; an erased member gone from the till's cache."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from drivers.decode import decode
from hq import audit
from hq.store import HqStore
from sync.client import SyncClient
from terminal.enrolment import ClaimSigner
from terminal.errors import Code, Rejected
from terminal.model import Basket, CardRead, Line, Status, utc_iso
from terminal.pricing import REDEEM_MAX
from terminal.service import Service
from terminal.store import Store
from tests.api.stack import base_url, chromium, chromium_missing, running_till
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess
from tests.waiting import wait_until

NEW_UID = bytes.fromhex("04C0FFEE123456")
CARD = "cd" * 32
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def hq(module_hq: HqProcess) -> HqProcess:
    return module_hq


def till(root: Path, terminal_id: str, hq: HqProcess, token: str, at: float = T0) -> tuple[Store, Service, SyncClient]:
    store = Store.open(root / terminal_id / "terminal.db")
    client = SyncClient(store, terminal_id, hq.url, token)
    client.sync_once()  # the rules and the members come down while online
    return store, Service(store, terminal_id, clock=lambda: at), client


def tap(uid_hash: str) -> CardRead:
    return CardRead("sim:", "iso14443a", uid_hash)


def sell(service: Service, member_id: str | None, amount: int = 2000) -> Any:
    return service.commit(service.quote(member_id, Basket((Line("SKU-1", 1, amount, "food"),))))


def test_same_card_enrolled_at_two_offline_tills_is_merged_into_the_first_to_arrive(
    hq: HqProcess, tmp_path: Path
) -> None:
    tokens = {t: hq.add_terminal(t) for t in ("T-EA", "T-EB")}
    a_store, a, a_sync = till(tmp_path, "T-EA", hq, tokens["T-EA"], T0)
    b_store, b, b_sync = till(tmp_path, "T-EB", hq, tokens["T-EB"], T0 + 60)
    # Offline: each till makes its own member for the same new card, and sells to it.
    first = a.enrol(tap(CARD), "Aki", consent="till-2026-11").member.member_id
    second = b.enrol(tap(CARD), "Aki S.", consent="till-2026-11").member.member_id
    earned_a, earned_b = sell(a, first).points_delta, sell(b, second, 3000).points_delta
    assert first.startswith("E-") and second.startswith("E-") and first != second and earned_a > 0 and earned_b > 0
    # Back online, the later enrolment reaches head office first and keeps the card: head office's order of
    # arrival decides, never a till's clock (which a till's credential could set back to take a member over).
    b_sync.sync_once()
    a_sync.sync_once()
    admin = HqStore(hq.db)
    try:
        kept = admin.member(second)
        assert kept is not None and kept.points == earned_a + earned_b
        assert admin.member(first) is None
        items = [i for i in admin.items() if i.reason == "duplicate_enrolment" and i.detail["uid_hash"] == CARD]
        assert len(items) == 1 and items[0].state == "settled_auto"
        assert (items[0].detail["kept"], items[0].detail["merged"]) == (second, first)
        sales = [e for e in admin.entries("T-EA") if e.kind == "sale"]
        assert sales and sales[0].payload["member_id"] == first  # the fact as the till told it
    finally:
        admin.close()
    # Both tills learn the card's owner by pull; the merged-away member is a tombstone.
    for store, service, client in ((a_store, a, a_sync), (b_store, b, b_sync)):
        client.sync_once()
        assert service.identify(tap(CARD)).member.member_id == second
        assert store.member(first) is None
        client.close()
        store.close()


def test_enrolled_offline_then_synced(hq: HqProcess, tmp_path: Path) -> None:
    token = hq.add_terminal("T-OFF")
    store = Store.open(tmp_path / "T-OFF" / "terminal.db")
    service = Service(store, "T-OFF")  # never synced: head office unknown so far
    member = service.enrol(tap("ef" * 32), "Offline Oda", consent="till-2026-11").member.member_id
    earned = sell(service, member).points_delta
    client = SyncClient(store, "T-OFF", hq.url, token)
    client.sync_once()
    client.close()
    store.close()
    admin = HqStore(hq.db)
    try:
        held = admin.member(member)
        assert held is not None and held.display_name == "Offline Oda"
        with admin.db.read() as tx:
            card = tx.one("SELECT member_id FROM cards WHERE uid_hash = ?", ["ef" * 32])
            consent = tx.one("SELECT wording_version, channel FROM consents WHERE member_id = ?", [member])
        assert card == (member,) and consent == ("till-2026-11", "till")
        assert not [i for i in admin.items() if i.terminal_id == "T-OFF" and i.state == "open"]
    finally:
        admin.close()
    assert earned >= 0


def test_a_contested_member_id_earns_and_does_not_spend_until_staff_settle_it(hq: HqProcess, tmp_path: Path) -> None:
    """A stolen credential pushes the id another till enrolled with a card of its own: head office holds the id's
    spending (points and stored value) until staff settle the contest; both cards earn meanwhile, the honest
    till learns the hold with its pull and refuses spending (offline too), until the settlement reaches it."""
    tokens = {t: hq.add_terminal(t) for t in ("T-EH", "T-ET", "T-EN")}
    store = Store.open(tmp_path / "T-EH" / "terminal.db")
    client = SyncClient(store, "T-EH", hq.url, tokens["T-EH"])
    client.sync_once()
    honest = Service(store, "T-EH", spend_needs_proof=False)  # points on the POS's word: only the hold refuses
    member = honest.enrol(tap("e1" * 32), "Held Hana", consent="till-2026-11").member.member_id
    assert sell(honest, member, 200_000).points_delta > 0
    client.sync_once()

    thief = {"terminal_id": "T-ET", "seq": 1, "txn_id": "T-ET-1", "kind": "enrol", "created_at": utc_iso(time.time())}
    body = {"protocol": 2, "terminal_id": "T-ET", "entries": [{**thief, "payload": entries.enrol(member, "e2" * 32)}]}
    headers = {"Authorization": f"Bearer {tokens['T-ET']}"}
    assert httpx.post(f"{hq.url}/v1/journal", json=body, headers=headers, timeout=10).status_code == 200
    client.sync_once()
    assert store.member(member).status is Status.HELD  # type: ignore[union-attr]

    def redeeming() -> Any:
        return honest.commit(honest.quote(member, Basket((Line("SKU-1", 1, 2000, "food"),)), redeem=REDEEM_MAX))

    with pytest.raises(Rejected) as refused:
        redeeming()
    assert refused.value.code is Code.MEMBER_SPEND_HELD
    # A till set up while the hold is on learns it from its first changes page (the snapshot carries none), and
    # refuses the spend offline.
    new_store, _, new_client = till(tmp_path, "T-EN", hq, tokens["T-EN"])
    new_client.close()
    new_till = Service(new_store, "T-EN", spend_needs_proof=False)
    assert new_store.member(member).status is Status.HELD  # type: ignore[union-attr]
    with pytest.raises(Rejected) as refused:
        new_till.commit(new_till.quote(member, Basket((Line("SKU-1", 1, 2000, "food"),)), redeem=REDEEM_MAX))
    assert refused.value.code is Code.MEMBER_SPEND_HELD
    assert sell(honest, member).points_delta > 0  # earning goes on
    admin = HqStore(hq.db)
    try:
        items = {i.reason.value: i for i in admin.items(terminal_id="T-ET")}
        contested = items["enrolment_contested"]
        assert contested.state.value == "open" and contested.detail["member_id"] == member
    finally:
        admin.close()
    hq.cli("settle", contested.item_id, "--by", "Ana", "--note", "T-ET's card blocked; the id is T-EH's")
    client.sync_once()
    assert store.member(member).status is Status.ACTIVE  # type: ignore[union-attr]
    assert redeeming().points_delta < 0
    client.close()
    store.close()
    new_store.close()


def test_revoking_the_stolen_credential_lets_the_member_it_held_spend_again(hq: HqProcess, tmp_path: Path) -> None:
    """A stolen credential's contested enrolment holds a member's spending; ``hq revoke`` of its terminal ends the
    hold (audited, the item left open for staff), and another till that refused the member's spend lets it once it
    has pulled."""
    tokens = {t: hq.add_terminal(t) for t in ("T-RH", "T-RT", "T-R2")}
    store, honest, client = till(tmp_path, "T-RH", hq, tokens["T-RH"])
    member = honest.enrol(tap("f1" * 32), "Freed Fumi", consent="till-2026-11").member.member_id
    assert sell(honest, member, 200_000).points_delta > 0
    client.sync_once()
    thief = {"terminal_id": "T-RT", "seq": 1, "txn_id": "T-RT-1", "kind": "enrol", "created_at": utc_iso(time.time())}
    body = {"protocol": 2, "terminal_id": "T-RT", "entries": [{**thief, "payload": entries.enrol(member, "f2" * 32)}]}
    headers = {"Authorization": f"Bearer {tokens['T-RT']}"}
    assert httpx.post(f"{hq.url}/v1/journal", json=body, headers=headers, timeout=10).status_code == 200
    other_store, _, other_client = till(tmp_path, "T-R2", hq, tokens["T-R2"])
    other = Service(other_store, "T-R2", spend_needs_proof=False)  # points on the POS's word: only the hold refuses

    def redeeming() -> Any:
        return other.commit(other.quote(member, Basket((Line("SKU-1", 1, 2000, "food"),)), redeem=REDEEM_MAX))

    with pytest.raises(Rejected) as refused:
        redeeming()
    assert refused.value.code is Code.MEMBER_SPEND_HELD

    assert hq.cli("revoke", "T-RT", "--by", "Ana").strip() == "revoked T-RT"

    assert httpx.post(f"{hq.url}/v1/journal", json=body, headers=headers, timeout=10).status_code == 401
    other_client.sync_once()
    assert other_store.member(member).status is Status.ACTIVE  # type: ignore[union-attr]
    assert redeeming().points_delta < 0
    admin = HqStore(hq.db)
    try:
        (item,) = [i for i in admin.items(terminal_id="T-RT") if i.reason.value == "enrolment_contested"]
        assert (item.state.value, item.detail["member_id"], item.detail["spend_held"]) == ("open", member, False)
        with admin.db.read() as tx:
            (record,) = [r for r in audit.recent(tx) if r.target == "T-RT"]
        assert (record.actor, record.action, record.target, record.reason) == (
            "Ana",
            "end_spend_holds",
            "T-RT",
            "terminal revoked",
        )
        assert record.details["released"] == [member]
    finally:
        admin.close()
    for c, s in ((client, store), (other_client, other_store)):
        c.close()
        s.close()


def claim(hq: HqProcess, token: str, name: str = "Kim", version: str = "join-2026-11") -> httpx.Response:
    return httpx.post(
        f"{hq.url}/v1/claims", json={"token": token, "display_name": name, "consent_version": version}, timeout=10
    )


def test_claims_once_and_refuses_expired_forged_and_early(hq: HqProcess, tmp_path: Path) -> None:
    token = hq.add_terminal("T-CL")
    store = Store.open(tmp_path / "T-CL" / "terminal.db")
    client = SyncClient(store, "T-CL", hq.url, token)
    client.sync_once()
    service = Service(store, "T-CL")
    signer = ClaimSigner(store, "T-CL", tmp_path / "claim.key")
    old = ClaimSigner(store, "T-CL", tmp_path / "claim.key", clock=lambda: time.time() - 40 * 86400)
    sale, stale = sell(service, None, 4000), sell(service, None, 1000)
    good, expired = signer(sale), old(stale)
    early = claim(hq, good)
    assert early.status_code == 404 and early.json()["code"] == "claim_unknown_sale"
    client.sync_once()
    assert claim(hq, good, version="v0").json()["code"] == "consent_required"
    first = claim(hq, f"TPJ1:{good}")
    assert first.status_code == 200, first.text
    assert first.json()["points"] > 0 == sale.points_delta  # priced at head office as a member's sale
    again = claim(hq, good)
    assert again.status_code == 409 and again.json()["code"] == "claim_used"
    late = claim(hq, expired)
    assert late.status_code == 410 and late.json()["code"] == "claim_expired"
    raw = bytearray(good.encode())
    raw[-5] = ord("A") if raw[-5] != ord("A") else ord("B")
    forged = claim(hq, raw.decode())
    assert forged.status_code == 400 and forged.json()["code"] == "claim_forged"
    assert claim(hq, "TPJ1:" + "A" * 124).json()["code"] == "claim_forged"  # not a token at all
    admin = HqStore(hq.db)
    try:
        held = admin.member(first.json()["member_id"])
        assert held is not None and held.points == first.json()["points"]
    finally:
        admin.close()
    client.close()
    store.close()


def api(daemon: Any, method: str, path: str, **body: Any) -> httpx.Response:
    reply = httpx.request(
        method,
        f"{base_url(daemon)}{path}",
        json=body if method == "POST" else None,
        headers={"Authorization": f"Bearer {daemon.api_token}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return reply


def test_new_member_at_the_till_claim_qr_in_chromium_and_erasure(hq: HqProcess, tmp_path: Path) -> None:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing)
    token = hq.add_terminal("T-JOIN")
    sections: dict[str, Any] = {
        "terminal": {"id": "T-JOIN"},
        "panel": {"join_url": f"{hq.url}/join"},
        "hq": {"url": hq.url, "token": token, "pull_interval": 0.3, "push_interval": 0.2},
    }
    with running_till(tmp_path, **sections) as daemon:
        # "New member", then the customer's new card: a member on the spot, and this sale earns.
        api(daemon, "POST", "/v1/session/total", amount=2500)
        assert api(daemon, "POST", "/v1/enrol/arm").json()["awaiting"] == "enrol"
        daemon.tap_sim(NEW_UID)
        snap = wait_until(lambda: (s := daemon.session.snapshot())["member"] and s, 20.0, "the enrolled member")
        member_id = snap["member"]["member_id"]
        assert member_id.startswith("E-") and snap["member"]["via"] == "card" and snap["quote"]["points_earned"] > 0
        new_card = daemon.last_tap.get()  # the tap stands for the member until this sale is committed
        assert new_card is not None and new_card.member.member_id == member_id
        api(daemon, "POST", "/v1/session/pay")
        receipt = api(daemon, "POST", "/v1/session/commit").json()["receipt"]
        assert receipt["member_id"] == member_id
        admin = HqStore(hq.db)
        wait_until(
            lambda: (m := admin.member(member_id)) and m.points >= receipt["points_delta"], 20.0, "the member at HQ"
        )

        # An anonymous sale: the receipt's QR, decoded from its PNG, opens head office's sign-up page.
        api(daemon, "POST", "/v1/session/new")
        api(daemon, "POST", "/v1/session/total", amount=1800)
        api(daemon, "POST", "/v1/session/pay")
        anonymous = api(daemon, "POST", "/v1/session/commit").json()["receipt"]
        png = api(daemon, "GET", "/v1/session/claim.png").content
        gray = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        (url,) = decode(gray)
        assert url.startswith(f"{hq.url}/join#TPJ1:")
        wait_until(
            lambda: any(e.txn_id == anonymous["txn_id"] for e in admin.entries("T-JOIN")), 20.0, "the sale at HQ"
        )
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 390, "height": 760}, bypass_csp=True)  # a phone
            page.set_default_timeout(10_000)
            page.goto(url)
            page.fill("#name", "Rin Phone")
            page.fill("#birthday", "1994-07-21")
            page.select_option("#attr-age_band", "30-39")
            page.check("#consent")
            page.check("#marketing")
            page.click("#submit")
            page.wait_for_selector("#result.ok")
            joined = page.get_attribute("#result", "data-member-id")
            assert "points were added" in page.inner_text("#result")
            page = browser.new_page(viewport={"width": 390, "height": 760})  # the same code again: refused
            page.set_default_timeout(10_000)
            page.goto(url)
            page.fill("#name", "Rin Again")
            page.check("#consent")
            page.click("#submit")
            page.wait_for_selector("#result.bad")
            assert "already been claimed" in page.inner_text("#result")
        held = admin.member(str(joined))
        assert held is not None and held.display_name == "Rin Phone" and held.points > 0 == anonymous["points_delta"]
        profile = admin.profile(str(joined))
        assert profile["birthday"] == "1994-07-21" and profile["attributes"] == {"age_band": "30-39"}
        assert profile["marketing"] and admin.member_stats(str(joined)).visits == 1

        # Erasure at head office reaches the till: the card no longer identifies anyone.
        assert '"sales_anonymised"' in hq.cli("erase", member_id, "--by", "privacy desk")
        wait_until(lambda: daemon.store.member(member_id) is None, 20.0, "the tombstone at the till")
        with pytest.raises(Rejected) as refused:
            daemon.service.identify(tap(new_card.uid_hash))
        assert refused.value.code is Code.UNKNOWN_CARD
        mine = [e for e in admin.entries("T-JOIN") if e.txn_id == receipt["txn_id"]]
        assert mine[0].payload["member_id"] is None and mine[0].payload["total"] == 2500
        assert admin.member(member_id) is None
        gone = httpx.post(
            f"{hq.url}/v1/admin/members/{member_id}-x/erase",
            timeout=5,
            headers={"Authorization": f"Bearer {admin.add_admin('dpo')}"},
        )
        assert gone.status_code == 404
        admin.close()
