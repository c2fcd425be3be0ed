"""Identify is not authorise: a member id or a printed member code earns, never spends; a forged or
unsigned code is refused; a fresh code from the member's phone is a proof, once; a payment made offline
by a device revoked before it is quarantined when it arrives. A real head-office process; the tills
are the till's own code with a cashier session."""

from __future__ import annotations

import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal import membercodes
from terminal.checkout import Checkout
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line
from terminal.session import Session, code_body
from tests.security.chain import Balance, Chain, Till


def session(till: Till) -> Session:
    return Session(till.service, Checkout(till.service))


def refused(code: Code, fn: object, *args: object) -> None:
    with pytest.raises(Rejected) as caught:
        fn(*args)  # type: ignore[operator]
    assert caught.value.code is code


def test_a_printed_member_code_identifies_and_earns_but_never_spends(chain: Chain, tills: tuple[Till, Till]) -> None:
    a, _ = tills
    printed = chain.hq.cli("member-code", "M-1").strip()  # head office signs it; the till pulled the key
    cashier = session(a)
    snap = cashier.scan(printed)
    assert snap["member"]["member_id"] == "M-1" and snap["member"]["can_spend"] is False
    cashier.set_total(2000)
    assert cashier.pay()["quote"]["points_redeemed"] == 0
    cashier.pay(-1)
    refused(Code.PROOF_NEEDED, cashier.confirm)
    cashier.pay(0)
    assert cashier.confirm()["state"] == "done"  # it earns
    a.client.sync_once()
    assert chain.balance().points > 1000 and chain.balance().stored_value == 5000
    # Typed or made up: an unsigned code, a code signed by someone else's key.
    refused(Code.MEMBER_CODE_UNSIGNED, cashier.scan, "TPM1:" + code_body("M-1"))
    forged = membercodes.issue(Ed25519PrivateKey.generate(), printed and "K-fake", "M-1", int(time.time()))
    refused(Code.MEMBER_CODE_FORGED, cashier.scan, forged)


def test_a_fresh_code_from_the_phone_is_a_proof_once(chain: Chain, tills: tuple[Till, Till]) -> None:
    a, b = tills
    before = chain.balance()
    fresh = chain.phone.fresh_member_code()
    cashier = session(a)
    assert cashier.scan(fresh)["member"]["can_spend"] is True
    cashier.set_total(2000)
    assert cashier.pay(500)["quote"]["points_redeemed"] == 500
    assert cashier.confirm()["state"] == "done"  # confirmed online: the code is used chain-wide
    # Shown again at the other till (a photo of the phone): it identifies, it does not pay.
    other = session(b)
    other.scan(fresh)
    other.set_total(2000)
    other.pay(500)
    refused(Code.PAYMENT_CODE_REPLAYED, other.confirm)
    a.client.sync_once()
    b.client.sync_once()
    [sale] = a.store.entries()
    assert chain.balance().points == before.points - 500 + sale.payload["points_earned"]
    assert not [i for i in chain.items() if i.quarantined]


def test_a_payment_by_a_device_revoked_before_it_is_quarantined(chain: Chain, tills: tuple[Till, Till]) -> None:
    a, _ = tills
    cert = chain.phone.cert
    assert cert is not None
    a.offline()  # the till lost its network before head office revoked the phone
    revoked = httpx.post(
        f"{chain.hq.url}/v1/admin/devices/{cert.cert_id.hex()}/revoke",
        json={"reason": "stolen"},
        headers=chain.admin_headers,
        timeout=10,
    )
    assert revoked.status_code == 200
    code = chain.phone.next_code()  # the thief's
    quote = a.service.quote("M-1", Basket((Line("TV", 1, 1500),)))
    a.service.commit(quote, Payment(None, code))  # the till cannot know, and its offline limits allow it
    assert a.store.stored_value("M-1") == 5000 - 1500
    a.client.sync_once()
    assert chain.balance() == Balance(1000, 5000)  # the member does not pay for the thief
    [item] = [i for i in chain.items() if i.quarantined]
    assert (item.reason.value, item.detail["cert_id"]) == ("device_revoked", cert.cert_id.hex())
    assert a.store.stored_value("M-1") == 5000  # head office's balance came down
    # The till now knows: the next code of that phone is refused at once.
    assert a.store.revoked("device", cert.cert_id.hex())
    refused(Code.DEVICE_CERT_REVOKED, a.service.commit, quote, Payment(None, chain.phone.next_code()))


def test_an_unused_tap_stands_for_its_member_only_a_while(chain: Chain, tills: tuple[Till, Till]) -> None:
    """Aiko taps her secure card, buys nothing, and leaves. Hours later the cashier types her number: her tap
    is no proof any more (``LastTap``, as the daemon wires it); a fresh tap is."""
    from terminal.checkout import LastTap
    from terminal.model import SaleOrder

    a, _ = tills
    now = [0.0]
    last = LastTap(clock=lambda: now[0])
    checkout = Checkout(a.service, last.get)
    whisky = Basket((Line("WHISKY", 1, 9000),))
    before = chain.balance()

    last.set(a.tap(chain.card.ndef_url()))  # 10:00, then nothing bought
    now[0] += 7 * 3600  # 17:00
    refused(Code.PROOF_NEEDED, checkout.sell, SaleOrder("M-1", whisky, redeem=-1, stored_value=None))
    a.client.sync_once()
    assert chain.balance() == before  # nothing of hers was spent
    last.set(a.tap(chain.card.ndef_url()))  # she is at the till and taps: now her points pay
    paid = checkout.sell(SaleOrder("M-1", whisky, redeem=-1, stored_value=None))
    assert paid.breakdown is not None and paid.breakdown.points_redeemed > 0


def test_a_reward_bought_with_points_is_applied_only_when_its_code_is_presented(
    chain: Chain, tills: tuple[Till, Till]
) -> None:
    """Aiko bought a free latte with 300 points in the wallet: a personal coupon. Her typed number alone is no
    proof, so the till does not apply it; her wallet's coupon code, scanned, is."""
    from hq.store import HqStore
    from terminal.model import SaleOrder

    a, _ = tills
    admin = HqStore(chain.hq.db)
    try:
        admin.put_reward(
            {"reward_id": "LATTE", "reward": "item", "sku": "LATTE-M", "points": 300, "title": "A latte"}, by="Mio"
        )
        coupon_id = admin.buy_reward("M-1", "LATTE", "p-1").coupon_id
    finally:
        admin.close()
    assert coupon_id is not None
    a.client.sync_once()
    latte = Basket((Line("LATTE-M", 1, 450, "coffee"),))
    checkout = Checkout(a.service)

    typed = a.service.quote("M-1", latte)  # the cashier typed her number
    assert coupon_id not in typed.coupons and typed.payable == 450
    presented = a.service.quote("M-1", latte, (coupon_id,))  # the code from her wallet, scanned
    assert presented.coupons == (coupon_id,) and presented.payable == 0
    receipt = checkout.sell(SaleOrder("M-1", latte))
    assert receipt.total == 450
    # its id presented by a cashier (a till's purchase has an id the till could derive): no proof, no coupon
    refused(Code.PROOF_NEEDED, checkout.sell, SaleOrder("M-1", latte, (coupon_id,), stored_value=0))
    a.client.sync_once()
    store = HqStore(chain.hq.db)
    try:
        with store.db.read() as tx:
            assert tx.one("SELECT uses FROM coupons WHERE coupon_id = ?", [coupon_id]) == (0,)
    finally:
        store.close()
    tapped = a.tap(chain.card.ndef_url())  # Aiko at the till, her card tapped: the coupon is hers to use
    done = Checkout(a.service, lambda: tapped).sell(SaleOrder("M-1", latte, (coupon_id,), stored_value=0))
    assert done.total == 0
