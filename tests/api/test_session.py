"""The cashier session's state machine on a real Service and SQLite store (no HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal import membercodes
from terminal import payments as pay
from terminal.checkout import Checkout
from terminal.errors import Code, Rejected
from terminal.model import EarnRule, Line, Member, utc_iso
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.session import Action, Session, State, claim_token, code_body, id_from_body
from terminal.store import Store
from tests.api.stack import COUPONS, RULES
from tests.fixtures.codes import install_member_key, member_code

NOW = 1_790_000_000.0
PHONE = Ed25519PrivateKey.generate()
PAY_KEY = Ed25519PrivateKey.generate()
CERT = pay.issue_cert(
    PAY_KEY, "K-pay", bytes.fromhex("00000000000000c1"), "M-1", pay.public_bytes(PHONE), int(NOW) - 60, 86_400, 5000
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "terminal.db")
    store.apply_changes(
        [Member("M-1", "Aiko", "gold", 1200), Member("M-2", "Ben", "basic", 0)], [], [EarnRule("base", 1, 100)], 1
    )
    store.put_docs("rule_docs", dict(RULES))
    store.put_docs("coupon_docs", dict(COUPONS))
    install_member_key(store)
    install_member_key(store, PAY_KEY, "K-pay")  # the same shape: a head-office key, here of purpose payment
    with store.db.conn:
        store.db.conn.execute(
            "UPDATE hq_keys SET body = replace(body, '\"member\"', '\"payment\"') WHERE key_id = 'K-pay'"
        )
    store.put_device_certs({CERT.cert_id.hex(): CERT.to_doc()})
    yield store
    store.close()


@pytest.fixture
def service(store: Store) -> Service:
    return Service(store, "T-1", clock=lambda: NOW)


@pytest.fixture
def trusting(store: Store) -> Service:
    """A till of a chain that trusts its POS to vouch for the member: points spend without a proof."""
    return Service(store, "T-1", clock=lambda: NOW, spend_needs_proof=False)


@pytest.fixture
def changes() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def session(service: Service, changes: list[dict[str, Any]]) -> Session:
    return Session(service, Checkout(service), join_url="https://members.example/join", on_change=changes.append)


def refused(code: Code, fn: Any, *args: Any) -> None:
    with pytest.raises(Rejected) as caught:
        fn(*args)
    assert caught.value.code is code


def test_the_whole_sale(trusting: Service, changes: list[dict[str, Any]]) -> None:
    session = Session(trusting, Checkout(trusting), join_url="https://members.example/join", on_change=changes.append)
    service = trusting
    snap = session.snapshot()
    assert snap["state"] == "idle" and snap["customer_qr"]["kind"] == "join"
    assert session.press(Action.IDENTIFY)["awaiting"] == "member"
    snap = session.identify("M-1", "card")
    assert snap["state"] == "member" and snap["awaiting"] is None and snap["member"]["via"] == "card"
    assert [o["usable"] for o in snap["offers"]] == [None]  # BIGSPEND: checked once the basket is in
    snap = session.set_total(2500)
    assert snap["quote"]["payable"] == 2500
    assert snap["offers"][0]["code"] == "coupon_min_spend"
    snap = session.apply_coupon("WELCOME")
    assert snap["state"] == "coupons" and snap["quote"]["payable"] == 2200 and snap["error"] is None
    assert {o["coupon_id"]: o["applied"] for o in snap["offers"]} == {"BIGSPEND": False, "WELCOME": True}
    snap = session.press(Action.PAY)
    assert snap["state"] == "payment" and snap["quote"]["points_redeemed"] == 1100  # max 50 %, whole 100s
    assert session.press(Action.POINTS)["quote"]["points_redeemed"] == 0
    assert session.press(Action.POINTS)["quote"]["points_redeemed"] == 1100
    assert service.store.entries() == []  # nothing recorded before the confirmation
    snap = session.press(Action.PAY)  # pay again is confirm
    assert snap["state"] == "done" and snap["receipt"]["member_id"] == "M-1"
    assert snap["customer_qr"] is None  # a member's sale: nothing to claim
    [entry] = service.store.entries()
    assert entry.payload["coupons"] == ["WELCOME"] and entry.payload["points_redeemed"] == 1100
    assert [c["seq"] for c in changes] == list(range(1, len(changes) + 1))


def test_esc_backs_out_one_step_at_a_time(session: Session) -> None:
    session.identify("M-1")
    session.set_total(1000)
    session.press(Action.COUPON)
    assert session.press(Action.CANCEL)["awaiting"] is None  # the armed coupon prompt
    assert session.snapshot()["state"] == "member"
    session.pay()
    assert session.press(Action.CANCEL)["state"] == "member"  # out of the payment step
    snap = session.press(Action.CANCEL)  # the whole sale
    assert snap["state"] == "idle" and snap["member"] is None and snap["basket"] is None


def test_refusals_keep_the_state_and_say_why(session: Session) -> None:
    refused(Code.NO_BASKET, session.pay)
    assert session.snapshot()["error"]["code"] == "no_basket"
    refused(Code.UNKNOWN_MEMBER, session.identify, "M-404")
    refused(Code.UNKNOWN_COUPON, session.apply_coupon, "NOPE")
    snap = session.snapshot()
    assert snap["state"] == "idle" and snap["coupons"] == [] and snap["error"]["code"] == "unknown_coupon"
    refused(Code.SESSION_BUSY, session.confirm)
    session.set_total(500)
    session.pay()
    refused(Code.SESSION_BUSY, session.identify, "M-1")
    refused(Code.SESSION_BUSY, session.apply_coupon, "WELCOME")
    refused(Code.SESSION_BUSY, session.set_total, 700)
    assert session.snapshot()["state"] == "payment"


def test_points_need_a_member_and_enough_of_them(session: Session) -> None:
    session.identify("M-2")  # no points
    session.set_total(1000)
    assert session.pay()["quote"]["points_redeemed"] == 0  # the default falls back to none
    refused(Code.INSUFFICIENT_POINTS, session.pay, 500)
    assert session.snapshot()["redeem"] == 0


def test_an_anonymous_sale_gets_a_claim_qr_and_a_void(session: Session, service: Service) -> None:
    session.set_total(800)
    session.pay()
    snap = session.confirm()
    receipt = snap["receipt"]
    qr = snap["customer_qr"]
    assert qr["kind"] == "claim" and qr["text"].startswith("https://members.example/join#TPJ1:")
    assert qr["svg"].startswith("<svg")
    snap = session.void()
    assert snap["voided"]["kind"] == "void" and snap["customer_qr"] is None
    refused(Code.SESSION_BUSY, session.void)
    assert [e.kind for e in service.store.entries()] == ["sale", "void"]
    assert receipt["txn_id"]


def test_points_need_the_members_proof(session: Session, service: Service) -> None:
    snap = session.scan(member_code("M-1"))  # the printed card's code: who, not a proof
    assert snap["member"]["member_id"] == "M-1" and snap["member"]["can_spend"] is False
    session.set_total(2500)
    assert session.press(Action.PAY)["quote"]["points_redeemed"] == 0  # no proof: no points by default
    assert session.press(Action.POINTS)["quote"]["points_redeemed"] == 1200  # the cashier asks anyway
    refused(Code.PROOF_NEEDED, session.confirm)
    assert service.store.entries() == []
    session.cancel()
    session.cancel()
    fresh = membercodes.device_code(PHONE, CERT.cert_id, int(NOW), 1)  # the member's phone, just now
    snap = session.scan(fresh)
    assert snap["member"]["member_id"] == "M-1" and snap["member"]["can_spend"] is True
    session.set_total(2500)
    assert session.press(Action.PAY)["quote"]["points_redeemed"] == 1200  # a proof: the default applies
    assert session.pay(500)["quote"]["points_redeemed"] == 500
    assert session.confirm()["state"] == "done"
    [entry] = service.store.entries()
    assert (entry.payload["proof"], entry.payload["code_id"]) == ("payment_code", f"{CERT.cert_id.hex()}:1")
    session.identify("M-1")
    session.scan(fresh)  # the same code again: it identifies, but was used: it stands for her no more
    session.set_total(2500)
    assert session.pay(500)["quote"]["points_redeemed"] == 500
    refused(Code.PROOF_NEEDED, session.confirm)
    assert len(service.store.entries()) == 1


def test_a_personal_coupon_needs_the_members_proof(session: Session, service: Service) -> None:
    """Aiko's own 5.00 off (``BIGSPEND``, from 100.00) is her value: on her number typed, or her printed
    card's code, the panel shows it held back for her proof and the sale goes through without it; her phone's
    code applies it, and the commit spends that code for it."""
    session.identify("M-1")
    session.set_total(12000)
    snap = session.press(Action.PAY)
    assert "BIGSPEND" not in snap["quote"]["coupons"] and snap["quote"]["payable"] == 12000
    [held] = [o for o in snap["offers"] if o["coupon_id"] == "BIGSPEND"]
    assert held["usable"] is False and held["code"] == Code.PROOF_NEEDED.value
    assert session.confirm()["state"] == "done"
    assert service.store.entries()[-1].payload["coupons"] == []
    session.cancel()
    fresh = membercodes.device_code(PHONE, CERT.cert_id, int(NOW), 1)  # her phone, just now
    session.scan(fresh)
    session.set_total(12000)
    session.press(Action.PAY)
    snap = session.pay(0)  # no points: only the coupon spends her value
    assert snap["quote"]["coupons"] == ["BIGSPEND"] and snap["quote"]["payable"] == 11500
    assert session.confirm()["state"] == "done"
    entry = service.store.entries()[-1]
    assert entry.payload["coupons"] == ["BIGSPEND"] and entry.payload["proof"] == "payment_code"


def test_a_phone_code_serves_one_sale_even_one_that_takes_nothing_of_the_members(
    session: Session, service: Service
) -> None:
    """Aiko's phone code identifies her for a coffee that takes nothing of hers (under her own coupon's
    minimum); the sale uses the code up all the same, so the cashier cannot scan it again a minute later for a
    friend's television on her number and spend her coupon on it."""
    code = membercodes.device_code(PHONE, CERT.cert_id, int(NOW), 1)
    session.scan(code)
    session.set_total(2500)
    session.press(Action.PAY)
    session.pay(0)
    assert session.confirm()["state"] == "done"
    first = service.store.entries()[-1].payload
    assert first["coupons"] == [] and first["code_id"] == f"{CERT.cert_id.hex()}:1" and first["paid_by"] == "pos"
    session.reset()
    snap = session.scan(code)  # the same code again
    assert snap["member"]["can_spend"] is False
    session.set_total(12000)
    snap = session.press(Action.PAY)
    assert snap["quote"]["coupons"] == [] and snap["quote"]["payable"] == 12000  # her coupon held back
    session.pay(0)
    assert session.confirm()["state"] == "done"  # the television earns her points, as on her number typed
    second = service.store.entries()[-1].payload
    assert second["coupons"] == [] and second["code_id"] is None and second["total"] == 12000
    assert second["stored_value"] == 0


def test_a_phone_code_that_runs_out_while_the_basket_is_rung_leaves_the_sale_to_finish(store: Store) -> None:
    """Aiko's phone code at the start, then two and a half minutes of ringing: the code's window has passed,
    so her own coupon waits for a fresh proof and the sale, which takes nothing of hers, goes through."""
    now = [NOW]
    service = Service(store, "T-1", clock=lambda: now[0])
    session = Session(service, Checkout(service))
    session.scan(membercodes.device_code(PHONE, CERT.cert_id, int(NOW), 1))
    assert session.snapshot()["member"]["can_spend"] is True
    now[0] = NOW + 150
    session.set_total(12000)
    snap = session.press(Action.PAY)
    assert snap["member"]["can_spend"] is False and snap["quote"]["coupons"] == []
    session.pay(0)
    assert session.confirm()["state"] == "done"
    entry = service.store.entries()[-1].payload
    assert entry["total"] == 12000 and entry["code_id"] is None  # the code only identified


def test_a_phone_code_that_ran_out_leaves_a_trusting_chains_sale_to_finish(store: Store) -> None:
    """A chain that trusts its POS: the code that identified the member ran out while the basket was rung; the
    sale takes nothing of theirs and goes through (the code only identified)."""
    now = [NOW]
    service = Service(store, "T-1", clock=lambda: now[0], spend_needs_proof=False)
    session = Session(service, Checkout(service))
    session.scan(membercodes.device_code(PHONE, CERT.cert_id, int(NOW), 1))
    now[0] = NOW + 150
    session.set_total(2500)
    session.press(Action.PAY)
    session.pay(0)
    assert session.confirm()["state"] == "done"
    assert service.store.entries()[-1].payload["code_id"] is None


def test_scans_identify_apply_and_refuse(session: Session) -> None:
    refused(Code.MEMBER_CODE_UNSIGNED, session.scan, "TPM1:" + code_body("M-2"))  # anybody can make those
    forged = member_code("M-2", Ed25519PrivateKey.generate())  # signed, but not by head office's key
    refused(Code.MEMBER_CODE_FORGED, session.scan, forged)
    assert session.snapshot()["member"] is None
    assert session.scan(member_code("M-2"))["member"]["member_id"] == "M-2"
    session.set_total(1000)
    assert session.scan("TPC1:" + code_body("WELCOME"))["coupons"] == ["WELCOME"]
    refused(Code.PAYMENT_CARD_REFUSED, session.scan, "4111 1111 1111 1111")
    refused(Code.UNKNOWN_CODE, session.scan, "hello")
    refused(Code.SESSION_BUSY, session.scan, "TPP1:abc")  # a payment code before Pay
    session.press(Action.COUPON)
    assert "WELCOME" in session.scan("WELCOME")["coupons"]  # a printed id, when a coupon is asked for
    session.press(Action.IDENTIFY)
    assert session.scan("M-1")["member"]["member_id"] == "M-1"  # a member number barcode
    refused(Code.MALFORMED_CODE, session.scan, "TPM2:@@")
    refused(Code.MALFORMED_CODE, session.scan, "TPM2:AQ")


def test_a_new_identification_after_done_starts_the_next_sale(session: Session) -> None:
    session.identify("M-1")
    session.set_total(1000)
    session.pay(0)
    session.confirm()
    snap = session.identify("M-2", "card")
    assert snap["state"] == "member" and snap["basket"] is None and snap["receipt"] is None


def test_the_pos_basket_replaces_the_total(session: Session) -> None:
    session.identify("M-2")
    session.set_total(100)
    snap = session.set_basket([Line("LATTE", 2, 450, "coffee"), Line("BEANS", 1, 1200, "beans")])
    assert snap["basket"]["source"] == "pos" and snap["quote"]["total"] == 2100
    assert any(x["source"] == "coffee" for x in snap["quote"]["explain"])
    refused(Code.INVALID_BASKET, session.set_basket, [Line("X", 0, 1)])
    assert session.snapshot()["quote"]["total"] == 2100  # the refused basket left the old one


def test_hotkeys_are_silent_while_a_panel_has_the_keyboard(session: Session) -> None:
    session.panel_focus(True)
    session.hotkey("identify")
    assert session.snapshot()["awaiting"] is None
    session.panel_focus(False)
    session.hotkey("identify")
    assert session.snapshot()["awaiting"] == "member"
    session.hotkey("pay")  # refused (no basket): shown, not raised
    assert session.snapshot()["error"]["code"] == "no_basket"


def test_code_bodies_round_trip() -> None:
    assert id_from_body(code_body("M-0001/é")) == "M-0001/é"
    assert len(claim_token(type("R", (), {"txn_id": "01900000-0000-7000-8000-000000000000"})())) == 22  # type: ignore[arg-type]
    assert State("payment") is State.PAYMENT


def test_a_topup_from_the_session_and_its_void(session: Session, service: Service, store: Store) -> None:
    """Identify, type the amount, press top-up: the member's stored value rises; a void takes it back."""
    store.set_state(last_sync_ok=utc_iso(NOW), offline_since=None)  # online: the offline rules do not apply
    session.identify("M-1")
    session.set_total(3000)
    refused(Code.TOPUP_NOT_ENABLED, session.press, Action.TOPUP)  # head office has not enabled this till
    assert session.snapshot()["error"]["code"] == "topup_not_enabled" and service.store.entries() == []
    policy = {"enabled": True, "per_transaction": 5000, "per_day": 8000, "per_member_day": 5000, "offline_total": 0}
    store.apply_changes([], [], [], 2, CacheDocs(topup_policy=json.dumps(policy)))
    snap = session.press(Action.TOPUP)
    assert snap["state"] == "done" and snap["receipt"]["kind"] == "till_topup"
    assert (snap["receipt"]["total"], snap["receipt"]["stored_value"]) == (3000, 3000)
    refused(Code.SESSION_BUSY, session.press, Action.TOPUP)  # one top-up per session: a new one starts over
    snap = session.void()
    assert snap["voided"]["kind"] == "topup_void" and snap["voided"]["stored_value"] == 0
    assert [e.kind for e in service.store.entries()] == ["till_topup", "topup_void"]
    session.reset()
    session.identify("M-1")
    session.set_total(5001)
    refused(Code.TOPUP_LIMIT_TRANSACTION, session.press, Action.TOPUP)
    assert store.stored_value("M-1") == 0


def test_a_topup_is_the_amount_typed_never_the_pos_basket(session: Session, service: Service, store: Store) -> None:
    """F3 with the POS's basket of goods in (not a total typed with F8) credits nothing: the POS took that money for
    the goods, and a slip of the key (or a cashier's choice) would put it on the member's account as well."""
    store.set_state(last_sync_ok=utc_iso(NOW), offline_since=None)
    policy = {"enabled": True, "per_transaction": 5000, "per_day": 8000, "per_member_day": 5000, "offline_total": 0}
    store.apply_changes([], [], [], 2, CacheDocs(topup_policy=json.dumps(policy)))
    session.identify("M-1")
    session.set_basket([Line("LATTE", 2, 450, "coffee")])
    refused(Code.SESSION_BUSY, session.press, Action.TOPUP)
    assert store.stored_value("M-1") == 0 and service.store.entries() == []
    assert session.snapshot()["state"] == "member"  # the sale goes on: pay it as usual
