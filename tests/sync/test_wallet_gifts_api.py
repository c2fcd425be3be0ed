"""Passing a coupon on, over a real head-office server (uvicorn in a thread on 127.0.0.1, SQLite) with the
wallet's cookie sign-in: the "Pass it on" button and its link, a friend signing in from the link and
claiming it, the giver's page without it, refusals with their codes and statuses, the Origin check, and a
real till that refuses the held coupon for the giver and takes the new one for the receiver only."""

from __future__ import annotations

import re

import httpx

from sync.client import SyncClient
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store
from tests.sync.test_wallet_api import BEN, Wallet, error_code, sign_in, wallet  # noqa: F401 - fixture

BASKET = Basket((Line("BEANS", 3, 1200, "beans"),))
GIFT = {
    "coupon_id": "GIFT-A",
    "member_id": "M-A",
    "kind": "amount_off",
    "value": 200,
    "text": "2.00 off, pass it on",
    "ends": "2099-12-31",
    "transfer": {"times": 1, "claim_hours": 48},
}


def pass_on(client: httpx.Client, coupon_id: str = "GIFT-A") -> httpx.Response:
    return client.post(f"/wallet/coupons/{coupon_id}/gift")


def token_of(reply: httpx.Response) -> str:
    found = re.search(r'id="gift-link"[^>]*value="[^"]*/wallet/gift/([A-Za-z0-9_-]+)"', reply.text)
    assert found, reply.text
    return found.group(1)


def test_a_member_passes_a_coupon_on_and_a_friend_signs_in_from_the_link_and_claims_it(wallet: Wallet) -> None:  # noqa: F811 - the fixture
    wallet.hq.put_coupon(GIFT)
    with wallet.client() as aiko, wallet.client() as ben:
        sign_in(wallet, aiko)
        listed = aiko.get("/wallet/coupons")
        assert 'action="/wallet/coupons/GIFT-A/gift"' in listed.text
        assert 'action="/wallet/coupons/AIKO-5/gift"' not in listed.text  # not transferable: no button
        made = pass_on(aiko)
        assert made.status_code == 200 and 'id="gift-until"' in made.text
        token = token_of(made)
        assert f"{wallet.url}/wallet/gift/{token}" in made.text
        assert 'id="coupon-GIFT-A"' not in aiko.get("/wallet/coupons").text  # held: Aiko cannot use it
        assert 'id="gift-own"' in aiko.get(f"/wallet/gift/{token}").text

        shown = ben.get(f"/wallet/gift/{token}")  # not signed in: the terms, and the ways in
        assert shown.status_code == 200 and "2.00 off, pass it on" in shown.text and 'id="claim"' not in shown.text
        assert f'href="/wallet/sign-in?next=/wallet/gift/{token}"' in shown.text and 'href="/join"' in shown.text
        form = ben.get(f"/wallet/sign-in?next=/wallet/gift/{token}")
        assert f'name="next" value="/wallet/gift/{token}"' in form.text
        ben.post("/wallet/sign-in/code", data={"contact": BEN, "next": f"/wallet/gift/{token}"})
        back = ben.post(
            "/wallet/sign-in", data={"contact": BEN, "code": wallet.last_code(BEN), "next": f"/wallet/gift/{token}"}
        )
        assert back.status_code == 303 and back.headers["location"] == f"/wallet/gift/{token}"
        offered = ben.get(f"/wallet/gift/{token}")
        assert 'id="claim-form"' in offered.text
        claimed = ben.post(f"/wallet/gift/{token}")
        assert claimed.status_code == 303 and claimed.headers["location"] == "/wallet/coupons?claimed=1"
        mine = ben.get("/wallet/coupons?claimed=1").text
        assert 'id="notice"' in mine and "2.00 off, pass it on" in mine and 'id="coupon-gift-' in mine
        assert 'action="/wallet/coupons/gift-' not in mine  # it moved the one time it could
        again = ben.post(f"/wallet/gift/{token}")
        assert again.status_code == 409 and error_code(again) == "gift_claimed"
        assert error_code(aiko.get(f"/wallet/gift/{token}")) == "gift_claimed"
        assert "2.00 off" not in aiko.get("/wallet/coupons").text


def test_refusals_carry_their_codes_and_every_post_needs_the_wallets_origin(wallet: Wallet) -> None:  # noqa: F811 - the fixture
    wallet.hq.put_coupon(GIFT)
    with wallet.client() as aiko, wallet.client() as stranger:
        sign_in(wallet, aiko)
        foreign = aiko.post("/wallet/coupons/GIFT-A/gift", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "wallet_bad_origin" in foreign.text
        plain = pass_on(aiko, "AIKO-5")
        assert plain.status_code == 409 and error_code(plain) == "gift_not_transferable"
        others = pass_on(aiko, "BEN-9")
        assert others.status_code == 404 and error_code(others) == "gift_unknown"
        token = token_of(pass_on(aiko))
        twice = pass_on(aiko)
        assert twice.status_code == 409 and error_code(twice) == "gift_offered"
        own = aiko.post(f"/wallet/gift/{token}")
        assert own.status_code == 409 and error_code(own) == "gift_own"
        unknown = aiko.get("/wallet/gift/no-such-token")
        assert unknown.status_code == 404 and error_code(unknown) == "gift_unknown"
        anonymous = stranger.post(f"/wallet/gift/{token}")
        assert anonymous.status_code == 401 and error_code(anonymous) == "wallet_sign_in_required"
        assert pass_on(stranger).status_code == 303  # not signed in: to the sign-in page
        forged = stranger.post(f"/wallet/gift/{token}", headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403
        for lang in ("en", "ja", "zh"):
            page = aiko.get(f"/wallet/gift/{token}?lang={lang}")
            assert page.status_code == 200 and f'<html lang="{lang}">' in page.text and page.text.count("<h1") == 1
            listed = aiko.get(f"/wallet/coupons?lang={lang}")
            assert listed.status_code == 200 and 'id="waiting-GIFT-A"' in listed.text
        foreign_back = aiko.post("/wallet/coupons/GIFT-A/take-back", headers={"Origin": "https://evil.example"})
        assert foreign_back.status_code == 403
        taken = aiko.post("/wallet/coupons/GIFT-A/take-back")
        assert taken.status_code == 303 and taken.headers["location"] == "/wallet/coupons"
        listed = aiko.get("/wallet/coupons").text
        assert 'id="coupon-GIFT-A"' in listed and 'id="waiting-GIFT-A"' not in listed
        dead = aiko.get(f"/wallet/gift/{token}")
        assert dead.status_code == 410 and error_code(dead) == "gift_expired"
        again = aiko.post("/wallet/coupons/GIFT-A/take-back")
        assert again.status_code == 404 and error_code(again) == "gift_unknown"


def test_a_real_till_refuses_the_held_coupon_to_the_giver_and_takes_the_new_one_from_the_receiver_only(
    wallet: Wallet,  # noqa: F811 - the fixture
) -> None:
    wallet.hq.put_coupon(GIFT)
    token = wallet.hq.add_terminal("T-1", "S-001")
    store = Store.open(wallet.tmp / "till" / "t.db")
    sync = SyncClient(store, "T-1", wallet.url, token, timeout=5)
    till = Service(store, "T-1")
    try:
        sync.sync_once()
        assert "GIFT-A" in till.quote("M-A", BASKET, coupons=["GIFT-A"]).coupons
        with wallet.client() as aiko, wallet.client() as ben:
            sign_in(wallet, aiko)
            link = token_of(pass_on(aiko))
            sync.sync_once()
            held = till.quote("M-A", BASKET, coupons=["GIFT-A"])
            assert "GIFT-A" not in held.coupons and ("GIFT-A", "unknown_coupon") in held.refused
            sign_in(wallet, ben, BEN)
            assert ben.post(f"/wallet/gift/{link}").status_code == 303
        sync.sync_once()
        new_id = next(c for c in store.coupon_texts([], "M-B") if c != "BEN-9")
        assert new_id.startswith("gift-")
        assert new_id in till.quote("M-B", BASKET, coupons=[new_id]).coupons
        refused = till.quote("M-A", BASKET, coupons=[new_id])
        assert new_id not in refused.coupons and (new_id, "coupon_not_this_member") in refused.refused
        assert ("GIFT-A", "unknown_coupon") in till.quote("M-A", BASKET, coupons=["GIFT-A"]).refused
    finally:
        sync.close()
        store.close()
