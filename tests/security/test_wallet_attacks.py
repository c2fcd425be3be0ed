"""The member's wallet against a stolen phone and a squatted contact, over a real head-office server (uvicorn in a
thread on 127.0.0.1, SQLite, the file sender): a contact given on the join page by someone else, gift links
passed on from a stolen session, a blocked member's app token."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import audit, payments
from hq.api.server import ServerHandle, start_in_thread
from hq.payments import signing_key
from hq.store import HqStore
from hq.vouchers import IssueSpec
from hq.wallet import signin
from hq.wallet.senders import FileSender
from sync import claims
from sync.protocol import ClaimKeyPayload, WireEntry
from terminal import vouchers as vc
from tests.fixtures import entries
from tests.waiting import wait_until

AIKO, VICTIM = "aiko@example.com", "victim@example.com"
GIFT = {
    "coupon_id": "GIFT-A",
    "member_id": "M-A",
    "kind": "amount_off",
    "value": 2000,
    "text": "20.00 off, pass it on",
    "ends": "2099-12-31",
    "transfer": {"times": 1, "claim_hours": 48},
}


class Office:
    def __init__(self, tmp: Path) -> None:
        self.hq = HqStore(str(tmp / "hq.db"))
        self.hq.set_rule("base", 1, 100)
        self.hq.add_terminal("T1", "S1", "till-token")
        self.hq.upsert_member("M-A", "Aiko", "basic", 120)
        self.hq.upsert_member("M-T", "Thief", "basic", 0)
        self.admin = {"Authorization": f"Bearer {self.hq.add_admin('Mio')}"}
        self.outbox = tmp / "outbox"
        self.server: ServerHandle = start_in_thread(self.hq, wallet_sender=FileSender(self.outbox))
        self.url = self.server.url
        self.seq = 0
        self.key = Ed25519PrivateKey.generate()
        for member, email in (("M-A", AIKO), ("M-T", "thief@example.com")):
            put = httpx.put(f"{self.url}/v1/admin/members/{member}/contacts", json={"email": email}, headers=self.admin)
            assert put.status_code == 200, put.text

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=10, follow_redirects=False)

    def last_code(self, to: str, before: int) -> str:
        def sent() -> list[dict[str, str]]:
            return [m for p in sorted(self.outbox.glob("*.json")) if (m := json.loads(p.read_text()))["to"] == to]

        found = wait_until(lambda: (s := sent()) and len(s) > before and s, 5.0, f"a code for {to}")
        return str(found[-1]["code"])

    def sign_in(self, client: httpx.Client, email: str) -> None:
        before = len([p for p in self.outbox.glob("*.json") if json.loads(p.read_text())["to"] == email])
        asked = client.post("/wallet/sign-in/code", data={"contact": email})
        assert asked.status_code == 200, asked.text
        done = client.post("/wallet/sign-in", data={"contact": email, "code": self.last_code(email, before)})
        assert done.status_code == 303 and done.headers["location"] == "/wallet/", done.text

    def claim_token(self, total: int = 2000) -> str:
        """An anonymous sale of T1 and its receipt's claim code."""
        public = claims.public_bytes(self.key)
        txn = str(uuid.uuid4())
        made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        todo = [("sale", entries.sale(None, total))]
        if self.seq == 0:
            key_entry = ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire()
            todo.insert(0, ("claim_key", key_entry))
        wire = []
        for kind, body in todo:
            self.seq += 1
            wire.append(
                WireEntry(
                    terminal_id="T1",
                    seq=self.seq,
                    txn_id=txn if kind == "sale" else f"T1-{self.seq}",
                    kind=kind,
                    payload=body,
                    created_at=made,
                )
            )
        self.hq.ingest("T1", wire)
        return claims.sign(self.key, txn, int(time.time()), 3600)

    def close(self) -> None:
        self.server.stop()
        self.hq.close()


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    found = Office(tmp_path)
    yield found
    found.close()


def join(office: Office, client: httpx.Client, contact: str | None, name: str = "Kim") -> httpx.Response:
    terms = client.get("/v1/join/terms").json()
    body = {"token": office.claim_token(), "display_name": name, "consent_version": terms["version"]}
    if contact is not None:
        body["contact"] = contact
    return client.post("/v1/claims", json=body)


def test_whoever_gave_someone_elses_contact_on_the_join_page_loses_the_member_when_its_owner_signs_in(
    office: Office,
) -> None:
    """Account pre-hijacking: with any receipt, an attacker joins giving the victim's email address (the join
    page cannot prove it) and keeps the join session's cookie (14 days), and an app token. The first code the
    victim types for that address makes the victim the member's owner: every earlier session and app token of
    the member ends, so nothing the victim earns there is the attacker's to see or spend."""
    with office.client() as attacker:
        joined = join(office, attacker, VICTIM, name="Victim")
        assert joined.status_code == 200, joined.text
        squatted = joined.json()["member_id"]
        assert attacker.get("/wallet/").status_code == 200  # the attacker holds a session of that member
        app_token = payments.member_token(office.hq, squatted)
        with office.client() as victim:
            office.sign_in(victim, VICTIM)  # the victim's own address, the code the victim received
            assert victim.get("/wallet/").status_code == 200
            assert attacker.get("/wallet/").status_code == 303  # the attacker's session is over
            me = httpx.get(f"{office.url}/v1/members/me", headers={"Authorization": f"Bearer {app_token}"}, timeout=10)
            assert me.status_code in (401, 403), me.text
            with office.client() as later:  # signing in again later is the owner's ordinary sign-in
                office.sign_in(later, VICTIM)
                assert victim.get("/wallet/").status_code == 200


def test_signing_out_everywhere_ends_the_gift_links_a_stolen_session_made(office: Office) -> None:
    """A thief with the stolen phone's cookie passes the member's coupons on (one POST each); the member
    signs out everywhere; the links stay live for their whole window (48 h here) and the thief's own account
    claims them afterwards. Signing out everywhere should give held gifts back (as ``take_back``)."""
    office.hq.put_coupon(GIFT)
    with office.client() as stolen, office.client() as thief:
        office.sign_in(stolen, AIKO)
        made = stolen.post("/wallet/coupons/GIFT-A/gift")
        assert made.status_code == 200, made.text
        token = made.text.split("/wallet/gift/")[1].split('"')[0]

        out = stolen.post("/wallet/sign-out", data={"everywhere": "1"})
        assert out.status_code == 303
        assert stolen.get("/wallet/").status_code == 303  # the stolen session is over

        office.sign_in(thief, "thief@example.com")
        claimed = thief.post(f"/wallet/gift/{token}")
        assert claimed.status_code != 303, (
            "a gift link the stolen session made was claimed after signing out everywhere"
        )


def test_a_blocked_members_app_token_registers_no_paying_device(office: Office) -> None:
    """Blocking a member stops its wallet sessions (docs/wallet.md) but not its member-app tokens:
    ``hq.payments.member_of_token`` never looks at the member's status, so a blocked member's app still
    registers new paying keys and reads ``/v1/members/me`` (a fresh member code)."""
    token = payments.member_token(office.hq, "M-A")
    office.hq.set_blocked("member", "M-A", True, "Mio", "fraud under investigation")
    with office.client() as session:
        assert session.get("/wallet/").status_code == 303  # no wallet session works while blocked, as documented
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    reply = httpx.post(
        f"{office.url}/v1/devices", json={"device_key": key}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert reply.status_code in (401, 403), f"a blocked member's app token registered a paying device: {reply.text}"


def test_signing_out_everywhere_leaves_a_stolen_session_no_moment_to_register_a_phone(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thief's session registers a paying phone at the moment the member's phones are being revoked: the
    sessions end before the phones are revoked, so that registration is refused and no phone stays live."""
    from hq.wallet import devices

    def key() -> str:
        return Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()

    with office.client() as stolen:
        office.sign_in(stolen, AIKO)
        assert stolen.post("/wallet/devices", json={"device_key": key()}).status_code == 200
        tried: list[int] = []
        revoke = payments.revoke_device

        def thief_first(store: HqStore, cert_id: str, reason: str = "") -> str:
            if not tried:  # the thief's request lands while the revocations run
                tried.append(stolen.post("/wallet/devices", json={"device_key": key()}).status_code)
            return revoke(store, cert_id, reason)

        monkeypatch.setattr(payments, "revoke_device", thief_first)
        assert devices.sign_out_everywhere(office.hq, "M-A", int(time.time())) == (1, 1)
    assert tried == [401], tried
    assert [d for d in payments.devices(office.hq, "M-A") if not d["revoked"]] == []


def test_a_stolen_claim_key_cannot_claim_a_sale_past_its_window(tmp_path: Path) -> None:
    """Whoever copied a till's claim key signs codes that expire when they like: head office bounds a claim by its
    own record of the sale instead: 30 days (and a day) from when it received the sale.
    The receipt's own code works within that window; a code of the thief's, signed to last ten years, is
    ``claim_expired`` after it, and the sale's points stay unclaimed."""
    now = [time.time()]
    hq = HqStore(str(tmp_path / "hq.db"), clock=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now[0])))
    hq.add_terminal("T1", "S1", "till-token")
    server = start_in_thread(hq)
    try:
        key = Ed25519PrivateKey.generate()
        public = claims.public_bytes(key)
        claim_key = ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire()
        made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now[0]))
        sales = [str(uuid.uuid4()) for _ in range(2)]
        wire = [WireEntry(terminal_id="T1", seq=1, txn_id="T1-1", kind="claim_key", payload=claim_key, created_at=made)]
        for n, txn in enumerate(sales, start=2):
            sale = entries.sale(None, 5000)
            wire.append(WireEntry(terminal_id="T1", seq=n, txn_id=txn, kind="sale", payload=sale, created_at=made))
        hq.ingest("T1", wire)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            version = client.get("/v1/join/terms").json()["version"]

            def claim(token: str) -> httpx.Response:
                return client.post(
                    "/v1/claims", json={"token": token, "display_name": "Kim", "consent_version": version}
                )

            now[0] += 29 * 86400  # the receipt's own code, within its 30 days
            assert claim(claims.sign(key, sales[0], int(now[0]) - 29 * 86400, claims.TTL)).status_code == 200
            now[0] += 3 * 86400
            late = claim(claims.sign(key, sales[1], int(now[0]), 10 * 365 * 86400))
        assert late.status_code == 410 and late.json()["code"] == "claim_expired", late.text
        with hq.db.read() as tx:
            assert tx.one("SELECT member_id FROM journal WHERE txn_id = ?", [sales[1]]) == (None,)
    finally:
        server.stop()
        hq.close()


def test_setting_phones_up_and_removing_them_in_a_loop_stops_at_the_days_bound(office: Office) -> None:
    """A member's fresh session sets a phone up and removes it, again and again: each certificate and each removal's
    revocation goes down to every till. Head office issues a member at most ``MAX_ISSUED_PER_DAY`` certificates in 24
    hours, removed ones included, so a loop cannot fill the tills' databases."""
    with office.client() as client:
        office.sign_in(client, AIKO)
        answers = []
        for n in range(payments.MAX_ISSUED_PER_DAY + 3):
            made = client.post("/wallet/devices", json={"device_key": f"{n + 1:064x}"})
            answers.append(made.status_code)
            if made.status_code == 200:
                assert client.post(f"/wallet/devices/{made.json()['cert_id']}/remove").status_code == 200
            else:
                assert made.json()["code"] == "wallet_too_many_devices", made.text
    assert answers == [200] * payments.MAX_ISSUED_PER_DAY + [409] * 3
    assert office.hq.snapshot_info().counts["device_certs"] == payments.MAX_ISSUED_PER_DAY


def test_passing_a_coupon_on_and_taking_it_back_in_a_loop_stops_at_the_days_bound(office: Office) -> None:
    """Each gift link and each taking back is kept at head office (the gift, the coupon's versions): a member's
    session looping over the two would fill its database. A member makes at most ``MAX_OFFERS_PER_DAY`` links in
    24 hours (``gift_too_many``); the coupon stays the member's, to use or pass on tomorrow."""
    from hq.wallet import gifts

    office.hq.put_coupon(GIFT)
    with office.client() as aiko:
        office.sign_in(aiko, AIKO)
        for _ in range(gifts.MAX_OFFERS_PER_DAY):
            assert aiko.post("/wallet/coupons/GIFT-A/gift").status_code == 200
            assert aiko.post("/wallet/coupons/GIFT-A/take-back").status_code == 303
        refused = aiko.post("/wallet/coupons/GIFT-A/gift")
        assert refused.status_code == 429 and 'data-code="gift_too_many"' in refused.text, refused.text
        assert "GIFT-A" in aiko.get("/wallet/coupons").text  # still hers
    with office.hq.db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM gifts") == (gifts.MAX_OFFERS_PER_DAY,)


def test_a_host_asking_for_codes_from_every_address_of_its_ipv6_network_counts_as_one_address(
    office: Office,
) -> None:
    """Code guessing across members: each code dies after 5 wrong tries, so trying many members' contacts needs
    many codes, and head office gives one client address 20 in 15 minutes. An IPv6 host picks any address of its
    /64 network (2^64 of them): counted one by one, the limit would be no limit. (Head office behind a reverse
    proxy on the same machine takes the client's address from X-Forwarded-For, as here.)"""
    with office.client() as guesser:
        asked = [
            guesser.post(
                "/wallet/sign-in/code",
                data={"contact": f"someone{n}@example.com"},
                headers={"X-Forwarded-For": f"2001:db8:1:2::{n + 1:x}"},
            ).status_code
            for n in range(21)
        ]
        assert asked[:20] == [200] * 20 and asked[20] == 429
        elsewhere = guesser.post(  # another subscriber's network is another address
            "/wallet/sign-in/code",
            data={"contact": "other@example.com"},
            headers={"X-Forwarded-For": "2001:db8:1:3::1"},
        )
        assert elsewhere.status_code == 200
        mapped = [  # an IPv4 client seen through an IPv6 socket is its IPv4 address
            guesser.post(
                "/wallet/sign-in/code",
                data={"contact": f"mapped{n}@example.com"},
                headers={"X-Forwarded-For": "::ffff:192.0.2.7" if n % 2 else "192.0.2.7"},
            ).status_code
            for n in range(21)
        ]
        assert mapped[:20] == [200] * 20 and mapped[20] == 429


def test_a_session_cookie_alone_does_not_spend_the_members_points_on_rewards(office: Office) -> None:
    """A stolen phone, or a shared computer where the member did not sign out: the wallet's cookie lives 14 days.
    Buying a reward spends the member's points, and a partner's code shown in the wallet is anyone's who reads it,
    so, as setting up paying, it needs a sign-in of the last 10 minutes (the member's email or phone)."""
    office.hq.put_reward({"reward_id": "CINEMA", "reward": "partner_code", "points": 60, "title": "Cinema ticket"})
    office.hq.add_reward_codes("CINEMA", ["CIN-7QX2"])
    an_hour_ago = int(time.time()) - 3600
    token = office.hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", an_hour_ago))
    with office.client() as thief:
        thief.cookies.set("tp_wallet", token)
        assert thief.get("/wallet/rewards").status_code == 200  # the session is live: it reads the page
        bought = thief.post("/wallet/rewards/CINEMA/buy", data={"purchase": "w-" + "t" * 20})
        assert bought.status_code == 401 and 'data-code="wallet_sign_in_again"' in bought.text
        assert "CIN-7QX2" not in thief.get("/wallet/rewards").text
        again = thief.get("/wallet/sign-in?again=1&next=/wallet/rewards")  # the page's link: the sign-in form
        assert again.status_code == 200 and 'name="next" value="/wallet/rewards"' in again.text
    member = office.hq.member("M-A")
    assert member is not None and member.points == 120 and office.hq.reward_purchases("M-A") == []
    assert 'href="/wallet/sign-in?again=1&amp;next=/wallet/rewards"' in bought.text
    with office.client() as aiko:  # the member, signed in just now
        office.sign_in(aiko, AIKO)
        assert aiko.post("/wallet/rewards/CINEMA/buy", data={"purchase": "w-" + "a" * 20}).status_code == 303
        assert "CIN-7QX2" in aiko.get("/wallet/rewards").text


def test_a_session_cookie_alone_does_not_pass_the_members_coupons_on(office: Office) -> None:
    """A personal coupon worth money off is spent at a till only on the member's proof (a card tap, a code from
    the member's paying phone): a thief holding only the wallet's cookie cannot use it there. Passing it on to the
    thief's own account would turn it into the thief's coupon, so, like spending points, it needs a sign-in of
    the last 10 minutes."""
    office.hq.put_coupon(GIFT)
    an_hour_ago = int(time.time()) - 3600
    token = office.hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", an_hour_ago))
    with office.client() as thief:
        thief.cookies.set("tp_wallet", token)
        assert "GIFT-A" in thief.get("/wallet/coupons").text  # the session is live: it reads the coupons
        made = thief.post("/wallet/coupons/GIFT-A/gift")
        assert made.status_code == 401 and 'data-code="wallet_sign_in_again"' in made.text
        assert "/wallet/gift/" not in made.text
        assert 'href="/wallet/sign-in?again=1&amp;next=/wallet/coupons"' in made.text
        assert "GIFT-A" in thief.get("/wallet/coupons").text  # still the member's, not held for a link
    with office.client() as aiko:  # the member, signed in just now
        office.sign_in(aiko, AIKO)
        made = aiko.post("/wallet/coupons/GIFT-A/gift")
        assert made.status_code == 200 and "/wallet/gift/" in made.text


def test_a_session_cookie_alone_does_not_show_the_codes_that_pay_with_the_members_vouchers(office: Office) -> None:
    """A voucher's code pays whoever shows it at a till, like the member's money: a thief holding only the wallet's
    cookie (a stolen phone, two weeks at most) sees which vouchers the member has, never their codes; the page links
    to a sign-in of the member's email or phone, which leads back to the coupons and shows them."""
    spec = IssueSpec(1, 3000, int(time.time()) + 86400)
    office.hq.issue_vouchers("T1", spec, signing_key(office.hq, vc.PURPOSE), "Mio")
    (code,) = office.hq.voucher_stock("T1").codes
    office.seq += 1
    made = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    sold = entries.voucher_sale(code, member_id="M-A")
    office.hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1", seq=office.seq, txn_id="T1-V", kind="voucher_sale", payload=sold, created_at=made
            )
        ],
    )
    voucher_id = vc.parse(code).voucher_id
    an_hour_ago = int(time.time()) - 3600
    token = office.hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", an_hour_ago))
    with office.client() as thief:
        thief.cookies.set("tp_wallet", token)
        page = thief.get("/wallet/coupons")
        assert page.status_code == 200 and f'id="voucher-{voucher_id}"' in page.text  # it reads what there is
        assert code not in page.text and "<svg" not in page.text.split(f'id="voucher-{voucher_id}"')[1]
        assert 'href="/wallet/sign-in?again=1&amp;next=/wallet/coupons"' in page.text
        again = thief.get("/wallet/sign-in?again=1&next=/wallet/coupons")
        assert again.status_code == 200 and 'name="next" value="/wallet/coupons"' in again.text
    with office.client() as aiko:  # the member, signed in again just now, back on the coupons page
        before = len([p for p in office.outbox.glob("*.json") if json.loads(p.read_text())["to"] == AIKO])
        assert aiko.post("/wallet/sign-in/code", data={"contact": AIKO}).status_code == 200
        back = aiko.post(
            "/wallet/sign-in",
            data={"contact": AIKO, "code": office.last_code(AIKO, before), "next": "/wallet/coupons"},
        )
        assert back.status_code == 303 and back.headers["location"] == "/wallet/coupons"
        shown = aiko.get("/wallet/coupons").text.split(f'id="voucher-{voucher_id}"')[1]
        assert "<svg" in shown and "voucher-sign-in" not in shown.split("</li>")[0]


def test_a_session_cookie_alone_does_not_show_the_partner_codes_the_member_bought(office: Office) -> None:
    """A partner's code is anyone's who reads it: a reward the member bought with points is shown to a thief holding
    only the wallet's cookie without its code, and a sign-in of the member's email or phone shows it again."""
    office.hq.put_reward({"reward_id": "CINEMA", "reward": "partner_code", "points": 60, "title": "Cinema ticket"})
    office.hq.add_reward_codes("CINEMA", ["CIN-7QX2"])
    bought = office.hq.buy_reward("M-A", "CINEMA", "w-" + "m" * 20)
    assert bought.code == "CIN-7QX2"
    an_hour_ago = int(time.time()) - 3600
    token = office.hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", an_hour_ago))
    with office.client() as thief:
        thief.cookies.set("tp_wallet", token)
        page = thief.get("/wallet/rewards")
        assert page.status_code == 200 and f'id="purchase-{bought.purchase_id}"' in page.text
        assert "CIN-7QX2" not in page.text
        assert 'href="/wallet/sign-in?again=1&amp;next=/wallet/rewards"' in page.text
        assert "CIN-7QX2" not in thief.get(f"/wallet/rewards?bought={bought.purchase_id}").text
    with office.client() as aiko:  # the member, signed in just now
        office.sign_in(aiko, AIKO)
        assert "CIN-7QX2" in aiko.get("/wallet/rewards").text


def test_an_administrator_moving_a_members_contact_is_in_the_audit_log(office: Office) -> None:
    """A contact decides who signs in to a member's wallet, and a wallet signed in lately sets up a phone that pays
    from the member's balance: an administrator giving Aiko's address to another member (their own, say) hands
    them Aiko's wallet sign-ins. The change is audited (who, which member, from which member; never the address
    itself), and the chain still holds."""
    with office.hq.db.read() as tx:
        before = len(audit.recent(tx, 1000))
    moved = httpx.put(
        f"{office.url}/v1/admin/members/M-T/contacts",
        json={"email": AIKO, "reason": "asked at the desk"},
        headers=office.admin,
    )
    assert moved.status_code == 200 and moved.json() == {"email": AIKO}, moved.text
    with office.hq.db.read() as tx:
        records = audit.recent(tx, 1000)
    assert len(records) == before + 1
    record = records[0]
    assert (record.actor, record.action, record.target, record.reason) == (
        "Mio",
        "wallet_contacts",
        "M-T",
        "asked at the desk",
    )
    assert record.details == {"kinds": ["email"], "moved_from": ["M-A"]} and AIKO not in json.dumps(record.details)
    assert audit.verify(office.hq.db).ok


def test_the_join_page_answers_which_contacts_are_members_a_few_times_an_address(office: Office) -> None:
    """The join page says when another member holds the contact (``wallet_contact_taken``) and keeps the receipt
    unused, so one receipt tried every contact of a list; a stolen till credential makes receipts without end (its
    own claim key, anonymous sales). From one address (an IPv6 host: its /64) a few such answers a quarter hour,
    then every join naming a contact is refused alike (``wallet_rate_limited``), taken or not."""
    with office.client() as prober:

        def probe(contact: str, n: int) -> httpx.Response:
            prober.headers["X-Forwarded-For"] = f"2001:db8:5::{n + 1:x}"
            return join(office, prober, contact)

        taken = [probe(AIKO, n) for n in range(signin.MAX_TAKEN_FROM)]
        assert [(r.status_code, r.json()["code"]) for r in taken] == [(409, "wallet_contact_taken")] * len(taken)
        for n, contact in enumerate((AIKO, "nobody@example.com"), start=len(taken)):
            limited = probe(contact, n)
            assert (limited.status_code, limited.json()["code"]) == (429, "wallet_rate_limited"), contact
        prober.headers["X-Forwarded-For"] = "2001:db8:5::99"
        assert join(office, prober, None).status_code == 200  # joining without a contact is not a probe
        prober.headers["X-Forwarded-For"] = "2001:db8:6::1"  # another network
        elsewhere = join(office, prober, AIKO)
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (409, "wallet_contact_taken")
    with office.hq.db.read() as tx:
        assert tx.one("SELECT member_id FROM member_contacts WHERE contact = ?", [AIKO]) == ("M-A",)
