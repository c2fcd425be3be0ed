"""A till's voucher redemptions while head office is unreachable (terminal/service.py, terminal/store/vouchers.py),
with a real till Store and Service and no head office: whatever vouchers are scanned, in whatever order and
however often, the till accepts each voucher once, only those it saw sold, and never more than its offline total
in all; what it refuses leaves its journal as it was."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal import b64url
from terminal import vouchers as vc
from terminal.errors import Code, Rejected
from terminal.model import utc_iso
from terminal.ports import CacheDocs
from terminal.service import Service
from terminal.store import Store

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = b64url.encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
EXPIRES = int(time.time()) + 86400


def offline_till(path: Path, total: int, sold: list[str]) -> tuple[Store, Service]:
    store = Store.open(path)
    key = {"key_id": "K-v", "alg": "ed25519", "purpose": vc.PURPOSE, "status": "active", "public_key": PUBLIC}
    states = [(vc.parse(c).voucher_id, json.dumps({**vc.parse(c).to_doc(), "state": "active"})) for c in sold]
    store.apply_changes(
        [], [], [], 1, CacheDocs(keys=[("K-v", json.dumps(key), "")], vouchers=states, voucher_stock=(total, []))
    )
    now = time.time()
    store.set_state(last_sync_ok=utc_iso(now - 120), offline_since=utc_iso(now - 60))
    return store, Service(store, "T-1", store_id="S-1")


def voucher(value: int) -> str:
    return vc.issue(KEY, "K-v", secrets.token_bytes(8), vc.Kind.AMOUNT, value, EXPIRES)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
    scans=st.lists(st.integers(0, 9), min_size=1, max_size=20),
    total=st.integers(0, 12_000),
)
def test_offline_a_till_takes_each_voucher_once_and_no_more_than_its_total(
    tmp_path_factory: pytest.TempPathFactory, values: list[int], scans: list[int], total: int
) -> None:
    sold = [voucher(v) for v in values]
    unseen = voucher(100)  # sold somewhere, never pulled here
    store, service = offline_till(tmp_path_factory.mktemp("till") / "terminal.db", total, sold)
    accepted: dict[str, int] = {}
    try:
        for pick in scans:
            code = sold[pick % len(sold)] if pick < 9 else unseen
            seq = store.max_seq()
            try:
                used = service.redeem_voucher(code)
            except Rejected as exc:
                assert store.max_seq() == seq  # refused: nothing journalled
                v = vc.parse(code)
                if code == unseen:
                    assert exc.code is Code.VOUCHER_NOT_ACTIVE
                elif v.voucher_id in accepted:
                    assert exc.code is Code.VOUCHER_USED
                else:
                    assert exc.code is Code.VOUCHER_LIMIT_OFFLINE
                    assert sum(accepted.values()) + v.value > total
                continue
            assert used.offline and used.voucher_id not in accepted
            accepted[used.voucher_id] = used.value
        assert sum(accepted.values()) <= total
        assert store.voucher_offline() == (sum(accepted.values()), total)
    finally:
        store.close()


def test_a_voucher_refunded_here_is_refused_as_refunded_whatever_a_pull_in_flight_brought(tmp_path: Path) -> None:
    """The refund's own record decides: a pull that left before head office heard of the refund brings the
    voucher's older state ("active") after it, and the till still says refunded, not merely used."""
    code = voucher(1500)
    store, service = offline_till(tmp_path / "terminal.db", 0, [code])
    try:
        store.set_state(last_sync_ok=utc_iso(time.time()), offline_since=None)
        service.confirm_voucher = lambda request: True  # head office answers: the refund is the voucher's one use
        back = service.refund_voucher(code)
        assert back.value == 1500 and not back.offline
        older = json.dumps({**vc.parse(code).to_doc(), "state": "active"})
        store.apply_changes([], [], [], 2, CacheDocs(vouchers=[(vc.parse(code).voucher_id, older)]))
        seq = store.max_seq()
        with pytest.raises(Rejected) as again:
            service.redeem_voucher(code)
        assert again.value.code is Code.VOUCHER_REFUNDED and store.max_seq() == seq
    finally:
        store.close()


def test_the_cashier_sees_what_a_scanned_voucher_took_off_the_sale_done(tmp_path: Path) -> None:
    """A voucher scanned after a sale pays part of what the POS still collects (and names that sale); a product
    voucher whose product is not in the basket, or one scanned before any sale, is left to the POS, and the panel
    says so. A sale vouchers paid is voided at the till, the POS paying back only what it collected: the vouchers'
    part is kept, and they stay used."""
    from terminal.checkout import Checkout
    from terminal.model import Line
    from terminal.session import Action, Session

    ten, big = voucher(1000), voucher(9000)
    coffee = vc.issue(KEY, "K-v", secrets.token_bytes(8), vc.Kind.PRODUCT, 450, EXPIRES, "COFFEE-1")
    early = voucher(700)
    second_coffee = vc.issue(KEY, "K-v", secrets.token_bytes(8), vc.Kind.PRODUCT, 450, EXPIRES, "COFFEE-1")
    store, service = offline_till(tmp_path / "terminal.db", 20_000, [ten, big, coffee, early, second_coffee])
    try:
        session = Session(service, Checkout(service), gifts=service)
        report = session.scan_report(early)  # no sale done: the POS takes it off what it rings
        assert (report["result"], report["voucher"]["off"]) == ("voucher_redeemed", 0)
        session.set_total(3000)
        session.pay()
        sale = session.confirm()["receipt"]
        assert session.snapshot()["left"] == 3000
        report = session.scan_report(ten)
        assert report["voucher"]["off"] == 1000 and session.snapshot()["left"] == 2000
        report = session.scan_report(coffee)  # no COFFEE-1 in a typed total: the POS takes it off
        assert report["voucher"]["off"] == 0 and session.snapshot()["left"] == 2000
        session.press(Action.GIFT)  # armed for a gift card: a voucher paying the rest disarms it
        report = session.scan_report(big)  # 90.00 against 20.00 left: it takes 20.00, no change given
        snap = session.snapshot()
        assert report["voucher"]["off"] == 2000 and (snap["left"], snap["awaiting"]) == (0, None)
        assert [(v["voucher_kind"], v["value"], v["off"]) for v in snap["vouchers"]] == [
            ("amount", 700, 0),
            ("amount", 1000, 1000),
            ("product", 450, 0),
            ("amount", 9000, 2000),
        ]
        used = [e.payload for e in store.entries() if e.kind == "voucher_redeem"]
        assert [p["sale_ref"] for p in used] == ["", sale["txn_id"], sale["txn_id"], sale["txn_id"]]
        # The void goes through: the POS collected nothing for this sale (the vouchers paid all of it), so it pays
        # nothing back; the vouchers' 30.00 is kept, and they stay used.
        voided = session.void()["voided"]
        assert (voided["total"], voided["voucher_kept"]) == (0, 3000)
        (entry,) = [e.payload for e in store.entries() if e.kind == "void"]
        assert (entry["money_back"], entry["voucher_kept"], entry["pos_refund"]) == (3000, 3000, 0)
        assert store.sale(sale["txn_id"])["voided_by"] == voided["txn_id"]  # type: ignore[index]
        for used_up in (ten, big):
            with pytest.raises(Rejected) as caught:
                service.redeem_voucher(used_up)
            assert caught.value.code is Code.VOUCHER_USED
        seq = store.max_seq()
        with pytest.raises(Rejected) as caught:
            service.void(sale["txn_id"])  # the POS's void (POST /v1/sales/{txn}/void, tillpoint void): done already
        assert caught.value.code is Code.ALREADY_VOIDED and store.max_seq() == seq

        # A basket from the POS with two coffees at 3.00: the product voucher takes one off (3.00, under its 4.50).
        session.set_basket([Line("COFFEE-1", 2, 300, "drinks"), Line("CAKE", 1, 500, "food")])
        session.pay()
        session.confirm()
        assert session.scan_report(second_coffee)["voucher"]["off"] == 300 and session.snapshot()["left"] == 800
    finally:
        store.close()
