"""Checking in from the wallet over a real head-office server (uvicorn in a thread on 127.0.0.1, SQLite) with
the cookie sign-in: the till's link opened signed out leads through sign-in back to it; signed in, the link
shows the store and "Check in", and nothing is recorded until the member presses it; the POST records the
visit and shows the reward; a second check-in, a forged and an expired code are refused with their codes and
statuses; a POST from another site or without a session is refused; only this page may use the camera."""

from __future__ import annotations

import re
import time

import httpx

from hq.wallet import i18n
from sync import checkins as codes
from tests.sync.test_checkin import TillKey, checkin_campaign, count
from tests.sync.test_wallet_api import AIKO, BEN, Wallet, error_code, sign_in, wallet  # noqa: F401 - fixture


def check_in(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/wallet/checkin", data={"c": text})


def test_the_tills_link_leads_a_member_through_sign_in_to_check_in_and_its_reward(wallet: Wallet) -> None:  # noqa: F811 - the fixture
    checkin_campaign(wallet.hq)
    till = TillKey(wallet.hq, "T-1")
    code = till.code()
    link = codes.link(wallet.url, code)
    with wallet.client() as aiko:
        first = aiko.get(link)  # opened by the phone's camera app, not signed in
        assert first.status_code == 200 and 'id="checkin-form"' not in first.text
        assert f'href="/wallet/sign-in?next=/wallet/checkin%3Fc%3D{code}"' in first.text
        form = aiko.get(f"/wallet/sign-in?next=/wallet/checkin?c={code}")
        assert f'name="next" value="/wallet/checkin?c={code}"' in form.text
        aiko.post("/wallet/sign-in/code", data={"contact": AIKO, "next": f"/wallet/checkin?c={code}"})
        back = aiko.post(
            "/wallet/sign-in",
            data={"contact": AIKO, "code": wallet.last_code(AIKO), "next": f"/wallet/checkin?c={code}"},
        )
        assert back.status_code == 303 and back.headers["location"] == f"/wallet/checkin?c={code}"
        # A browser that keeps the SameSite=Strict cookie from a link another app opened shows "Sign in": one tap
        # on it, already signed in, leads straight back to the check-in.
        again_in = aiko.get(f"/wallet/sign-in?next=/wallet/checkin?c={code}")
        assert again_in.status_code == 303 and again_in.headers["location"] == f"/wallet/checkin?c={code}"
        shown = aiko.get(back.headers["location"])
        assert shown.status_code == 200 and 'data-store="S-CHK"' in shown.text and 'id="checkin-submit"' in shown.text
        assert count(wallet.hq, "SELECT COUNT(*) FROM checkins") == 0  # a GET records nothing
        done = check_in(aiko, code)
        assert done.status_code == 200 and 'id="checked-in"' in done.text, done.text
        assert "+50 points for visiting" in done.text and 'data-coupon="cmp-visit-' in done.text
        assert "+50 points for visiting" in aiko.get("/wallet/coupons").text
        visits = aiko.get("/wallet/activity").text  # the visit is in the member's activity
        assert re.search(r"<td>Check in</td><td>-</td><td>-</td>", visits) and "S-CHK" in visits
        again = check_in(aiko, till.code())
        assert again.status_code == 409 and error_code(again) == "checkin_used"
    with wallet.client() as ben:  # another member scanning the same code: fine
        sign_in(wallet, ben, BEN)
        assert check_in(ben, link).status_code == 200  # the whole link pasted works too
    assert count(wallet.hq, "SELECT COUNT(*) FROM checkins") == 2


def test_forged_expired_and_foreign_check_ins_are_refused_with_their_codes(wallet: Wallet) -> None:  # noqa: F811 - the fixture
    till = TillKey(wallet.hq, "T-1")
    step = codes.step_of(time.time())
    with wallet.client() as aiko, wallet.client() as stranger:
        sign_in(wallet, aiko)
        forged = check_in(aiko, till.code(step, store_id="S-ELSE"))
        assert forged.status_code == 403 and error_code(forged) == "checkin_forged"
        junk = check_in(aiko, "TPK1:hello")
        assert junk.status_code == 403 and error_code(junk) == "checkin_forged"
        old = check_in(aiko, till.code(step - 2))
        assert old.status_code == 410 and error_code(old) == "checkin_expired"
        preview = aiko.get(f"/wallet/checkin?c={till.code(step - 2)}")  # the link's page says it at once
        assert preview.status_code == 410 and error_code(preview) == "checkin_expired"
        foreign = aiko.post("/wallet/checkin", data={"c": till.code()}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "wallet_bad_origin" in foreign.text
        cross = aiko.post("/wallet/checkin", data={"c": till.code()}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        anonymous = check_in(stranger, till.code())
        assert anonymous.status_code == 401 and error_code(anonymous) == "wallet_sign_in_required"
        assert count(wallet.hq, "SELECT COUNT(*) FROM checkins") == 0
        page = aiko.get("/wallet/checkin")
        assert 'id="checkin-code"' in page.text and 'for="checkin-code"' in page.text
        assert page.headers["permissions-policy"].startswith("camera=(self)")
        assert "camera=()" in aiko.get("/wallet/").headers["permissions-policy"]  # no other page may
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        for lang in ("en", "ja", "zh"):
            shown = aiko.get(f"/wallet/checkin?lang={lang}")
            assert shown.status_code == 200 and f'<html lang="{lang}">' in shown.text
            assert shown.text.count("<h1") == 1 and i18n.words(lang)["checkin_paste"] in shown.text
        assert re.search(r'href="/wallet/checkin" aria-current="page"', page.text)


def test_a_points_reward_shows_on_the_check_in_page_and_in_the_activity(wallet: Wallet) -> None:  # noqa: F811 - the fixture
    from hq import campaigns, segments

    segments.save(wallet.hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 3660, "max": 10**9}}, "t")
    spec = {
        "name": "Points for visiting",
        "segment": "everyone",
        "variants": [{"variant": "pts", "points": 1200}],
        "schedule": {"kind": "checkin", "max_per_store_day": 100},
        "control_share": 0,
        "require_consent": False,
    }
    campaigns.save(wallet.hq.db, "visit-pts", spec, "test")
    till = TillKey(wallet.hq, "T-1")
    with wallet.client() as aiko:
        sign_in(wallet, aiko, AIKO)
        member = "M-A"
        before = wallet.hq.member(member)
        assert before is not None
        done = check_in(aiko, till.code())
        assert done.status_code == 200 and 'data-points="1200"' in done.text and "+1,200 Points" in done.text
        after = wallet.hq.member(member)
        assert after is not None and after.points == before.points + 1200
        visits = aiko.get("/wallet/activity").text
        assert re.search(r"<td>Bonus points</td><td>-</td><td>\+1,200</td>", visits), visits
