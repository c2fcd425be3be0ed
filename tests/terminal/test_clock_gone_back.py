"""A till's clock that goes back behind a time the till recorded itself (its last successful sync, the start
of an outage) while head office is unreachable: a PC whose clock battery died boots at its firmware's date and
time sync cannot put it right without the network, or someone sets the time back by hand. Time offline and the
age of the clock check cannot be measured on such a clock, so offline spends are refused as
``till_clock_wrong`` instead of passing as "offline a moment ago"; a member's time-limited code that fails on a
clock known to be wrong names the clock, not the code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from terminal import credentials, membercodes
from terminal import giftcards as gc
from terminal import payments as pay
from terminal import topups as tp
from terminal import vouchers as vc
from terminal.config import Config
from terminal.daemon import store_status
from terminal.doctor import Verdict, check_daemon
from terminal.errors import Code, Rejected
from terminal.identity import Identified, Payment
from terminal.model import Basket, Card, Line, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.clock import Clock
from tests.terminal.test_service_payments import LIMITS, NOW, UID1, code, till  # noqa: F401 - fixture

DAY = 86_400
SMALL = Basket((Line("TEA", 1, 500),))
MEMBER_KEY = Ed25519PrivateKey.generate()


def sun_tap(store: Store, counter: int) -> Payment:
    member = store.member("M-1")
    assert member is not None
    proof = credentials.CardProof(credentials.Trust.SUN, counter)
    return Payment(None, card=Identified(member, Card(UID1, "M-1"), proof, UID1))


def lost_at_now(store: Store) -> None:
    """Head office answered last at ``NOW - 5`` and was lost at ``NOW``, both on the till's own clock."""
    store.set_state(offline_since=utc_iso(NOW), last_sync_ok=utc_iso(NOW - 5))


def refusal(service: Service, store: Store, payment: Payment) -> Code | None:
    try:
        service.commit(service.quote("M-1", SMALL), payment)
    except Rejected as exc:
        return exc.code
    return None


def test_a_right_clock_pays_offline_until_the_time_offline_runs_out(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    service, store, clock = till
    lost_at_now(store)
    clock.now = NOW + 600
    assert refusal(service, store, sun_tap(store, 41)) is None
    clock.now = NOW + 2 * DAY
    assert refusal(service, store, sun_tap(store, 42)) is Code.OFFLINE_TOO_LONG


def test_a_clock_set_back_behind_the_tills_own_last_sale_refuses_offline_spends(
    till: tuple[Service, Store, Clock],  # noqa: F811
) -> None:
    """Set back to a time after the outage began but before the sale it rang last: the journal says so."""
    service, store, clock = till
    lost_at_now(store)
    clock.now = NOW + 3600
    assert refusal(service, store, sun_tap(store, 51)) is None  # a sale an hour into the outage
    clock.now = NOW + 600  # fifty minutes back: still after the outage began
    assert refusal(service, store, sun_tap(store, 52)) is Code.TILL_CLOCK_WRONG
    assert service.clock_back() == 3000 and len(store.entries()) == 1


@pytest.mark.parametrize("back", [3600 * 3, 30 * DAY], ids=["3-hours", "30-days"])
def test_a_clock_gone_back_behind_the_last_sync_refuses_offline_spends(
    till: tuple[Service, Store, Clock],  # noqa: F811
    back: int,
) -> None:
    service, store, clock = till
    lost_at_now(store)
    clock.now = NOW - back
    assert refusal(service, store, sun_tap(store, 43)) is Code.TILL_CLOCK_WRONG
    assert store.entries() == [] and store.stored_value("M-1") == 10000
    state = service.offline_state("M-1", datetime.fromtimestamp(clock.now, UTC))
    assert state.clock_back_s == back  # measured from the outage's start, the latest time the till saw


def test_a_clock_gone_back_after_days_offline_is_refused_not_given_a_fresh_outage(
    till: tuple[Service, Store, Clock],  # noqa: F811
) -> None:
    """Set back to just after the last sync once the day offline ran out: the time offline would read as a
    few minutes, but the clock reads before the outage began."""
    service, store, clock = till
    lost_at_now(store)
    clock.now = NOW + 2 * DAY
    assert refusal(service, store, sun_tap(store, 44)) is Code.OFFLINE_TOO_LONG
    clock.now = NOW - 3600
    assert refusal(service, store, sun_tap(store, 45)) is Code.TILL_CLOCK_WRONG


def test_a_clock_stepped_back_within_the_allowed_offset_still_pays_offline(
    till: tuple[Service, Store, Clock],  # noqa: F811
) -> None:
    """Time sync putting a till's clock a little slower is not a wrong clock: within ``max_clock_offset``."""
    service, store, clock = till
    lost_at_now(store)
    clock.now = NOW - LIMITS.max_clock_offset_s + 10
    assert refusal(service, store, sun_tap(store, 46)) is None


def test_a_payment_code_on_a_clock_gone_back_names_the_clock(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    """The phone's code is of the right time; the till reads three hours earlier: the cashier is told to set
    the clock, not that the member's code expired."""
    service, store, clock = till
    lost_at_now(store)
    text = code(clock, 50)
    clock.now = NOW - 3 * 3600
    assert refusal(service, store, Payment(None, text)) is Code.TILL_CLOCK_WRONG


def test_every_offline_rule_refuses_a_clock_gone_back() -> None:
    """Payments, top-ups, vouchers and gift cards share the time rules (``payments.clock_refusal``)."""
    limits = pay.RiskLimits()
    back = pay.OfflineState(0, -3 * 3600, 0, 0, 0.0, clock_back_s=3 * 3600)
    assert pay.offline_refusal(100, back, limits, None) is Code.TILL_CLOCK_WRONG
    policy = tp.TopupPolicy(True, 5000, 50000, 20000, 10000)
    assert tp.refusal(100, policy, tp.Tally(), back, limits) is Code.TILL_CLOCK_WRONG
    assert vc.offline_refusal(100, vc.State.ACTIVE, 0, 3000, back, limits) is Code.TILL_CLOCK_WRONG
    card = gc.GiftCard("G-1", "ab" * 32, gc.State.ACTIVE, 5000)
    assert gc.offline_refusal(card, 100, gc.OfflineTally(), back, limits, gc.Terms(), "2026-01-05") is (
        Code.TILL_CLOCK_WRONG
    )


@pytest.mark.parametrize(
    ("now", "seen", "back"),
    [(1000.0, (900.0, 950.0), 0), (1000.0, (1200.0, 1100.0), 200), (1000.0, (None, 1030.5), 30), (5.0, (), 0)],
)
def test_clock_back_is_measured_from_the_latest_time_seen(
    now: float, seen: tuple[float | None, ...], back: int
) -> None:
    assert pay.clock_back(now, *seen) == back


def test_status_and_doctor_show_a_clock_gone_back(
    till: tuple[Service, Store, Clock],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, store, _ = till
    store.set_state(offline_since=utc_iso(datetime.now(UTC).timestamp() + 2 * 3600), last_sync_ok=None)
    status = store_status(store)
    assert 2 * 3600 - 60 < status["clock_back_s"] <= 2 * 3600
    monkeypatch.setattr("terminal.doctor.local_client", lambda socket: _Daemon(status))
    cfg = Config.model_validate({"terminal": {"id": "T-1", "data_dir": str(tmp_path)}})
    check = check_daemon(cfg, 1.0)
    assert check.verdict is Verdict.FAIL and "till_clock_wrong" in check.words


def test_a_wallet_member_code_on_a_slow_clock_names_the_clock(till: tuple[Service, Store, Clock]) -> None:  # noqa: F811
    """Head office measured the till five minutes behind at its last sync: a wallet's timed member code made
    a moment ago is refused as ``till_clock_wrong``, not ``member_code_expired``, as payment codes are."""
    service, store, clock = till
    _member_key(store)
    text = membercodes.issue_timed(MEMBER_KEY, "mem-1", "M-1", int(NOW))
    body = text[len(membercodes.PREFIX) :]
    assert service.read_member_code(2, body).member_id == "M-1"
    store.set_state(hq_clock_offset="-600")
    clock.now = NOW - 600
    with pytest.raises(Rejected) as refused:
        service.read_member_code(2, body)
    assert refused.value.code is Code.TILL_CLOCK_WRONG
    store.set_state(hq_clock_offset="0")  # the clock is right: an old code is simply expired
    clock.now = NOW + 600
    with pytest.raises(Rejected) as expired:
        service.read_member_code(2, body)
    assert expired.value.code is Code.MEMBER_CODE_EXPIRED


def _member_key(store: Store) -> None:
    public = MEMBER_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    body = {"alg": "ed25519", "purpose": "member", "status": "active", "public_key": public.hex()}
    with store.db.conn:
        store.db.conn.execute("INSERT INTO hq_keys (key_id, body, sig) VALUES (?,?,?)", ("mem-1", json.dumps(body), ""))
    assert "mem-1" in store.member_keys()


class _Answer:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def json(self) -> dict[str, Any]:
        return self.doc


class _Daemon:
    """The local API's client, answering ``status`` with ``doc``."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def __enter__(self) -> _Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get(self, url: str, timeout: float) -> _Answer:
        return _Answer(self.doc)
