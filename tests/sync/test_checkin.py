"""Check-ins through a real head office on SQLite and PostgreSQL (hq/checkins.py, hq/wallet/checkin.py, the
``checkin`` campaigns of hq/campaigns.py): a member checks in by a till's code once per store and day and gets
the check-in campaign's coupon once; forged (unknown key, revoked till, another store, a changed byte),
expired and reused codes are refused with their codes; concurrent check-ins of one member give one visit and
one reward; door taps from the journal are visits once a day, rewarded once; a stolen till credential mints no
more than its store's daily cap, and nothing that is not a coupon."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import campaigns, members, segments, stats
from hq.db.engine import utc_now
from hq.store import HqStore
from hq.wallet import checkin
from sync import checkins as codes
from sync import claims
from sync.protocol import ClaimKeyPayload, ErrorCode, WireEntry
from tests.fixtures import entries

STORE = "S-CHK"
EVERYONE = {"kind": "visits", "days": 3660, "max": 10**9}
REWARD = {"kind": "bonus_points", "value": 50, "text": "+50 points for visiting"}


class TillKey:
    """A till registered at head office whose claim key (journalled, as a real till does) signs codes."""

    def __init__(self, hq: HqStore, terminal_id: str, store_id: str = STORE) -> None:
        self.hq, self.terminal_id, self.store_id, self.seq = hq, terminal_id, store_id, 0
        self.token = hq.add_terminal(terminal_id, store_id)
        self.key = Ed25519PrivateKey.generate()
        public = claims.public_bytes(self.key)
        self.push(
            "claim_key", ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire()
        )

    def code(self, step: int | None = None, *, store_id: str | None = None) -> str:
        step = codes.step_of(time.time()) if step is None else step
        return codes.sign(self.key, self.terminal_id, store_id or self.store_id, step)

    def push(self, kind: str, payload: dict[str, Any]) -> str:
        self.seq += 1
        txn = str(uuid.uuid4())
        entry = WireEntry(
            terminal_id=self.terminal_id, seq=self.seq, txn_id=txn, kind=kind, payload=payload, created_at=utc_now()
        )
        self.hq.ingest(self.terminal_id, [entry])
        return txn

    def door_tap(self, member_id: str, store_id: str | None = None) -> str:
        return self.push("checkin", {"member_id": member_id, "store_id": store_id or self.store_id, "reader": "door"})


def checkin_campaign(hq: HqStore, campaign_id: str = "visit", **schedule: Any) -> None:
    segments.save(hq.db, "everyone", "everyone", {"where": EVERYONE}, "test")
    spec = {
        "name": "Thanks for visiting",
        "segment": "everyone",
        "variants": [{"variant": "bonus", "coupon": REWARD}],
        "schedule": {"kind": "checkin", **schedule},
        "control_share": 0,
        "require_consent": False,
    }
    campaigns.save(hq.db, campaign_id, spec, "test")
    campaigns.change_state(hq.db, campaign_id, "active")


def check_in(hq: HqStore, member_id: str, text: str, now: float | None = None) -> checkin.CheckedIn:
    at = time.time() if now is None else now
    return hq.db.transact(lambda tx: checkin.check_in(tx, hq.settings, member_id, text, at))


def refusal(hq: HqStore, member_id: str, text: str, now: float | None = None) -> ErrorCode:
    with pytest.raises(checkin.CheckinRefused) as refused:
        check_in(hq, member_id, text, now)
    return refused.value.code


def count(hq: HqStore, sql: str, *params: Any) -> int:
    with hq.db.read() as tx:
        row = tx.one(sql, list(params))
    return int(row[0]) if row else 0


def visits(hq: HqStore, member_id: str) -> tuple[int, int]:
    with hq.db.read() as tx:
        life = stats.lifetime(tx, member_id) or stats.Lifetime()
    return (life.visits, life.spend)


def points(hq: HqStore, member_id: str) -> int:
    member = hq.member(member_id)
    assert member is not None
    return member.points


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    for member in ("M-A", "M-B", "M-C"):
        store.upsert_member(member, member, "basic", 0)
    yield store
    store.close()


def test_a_member_checks_in_once_a_store_and_day_and_gets_the_reward_once(hq: HqStore) -> None:
    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    code = till.code()
    done = check_in(hq, "M-A", codes.link("https://hq.example", code))  # the link the QR carries
    assert done.store_id == STORE and [r.text for r in done.rewards] == ["+50 points for visiting"]
    assert visits(hq, "M-A") == (1, 0)  # a visit, no spend
    assert refusal(hq, "M-A", code) is ErrorCode.CHECKIN_USED  # the same code again
    assert refusal(hq, "M-A", till.code()) is ErrorCode.CHECKIN_USED  # the next step's code, same day
    other = TillKey(hq, "T-2")  # another till of the same store: still the same store and day
    assert refusal(hq, "M-A", other.code()) is ErrorCode.CHECKIN_USED
    assert check_in(hq, "M-B", code).rewards  # another member scanning the same code is fine
    elsewhere = TillKey(hq, "T-3", "S-OTHER")
    # Another store, the same day: a visit there; no second coupon, because of the chain-wide offer cap
    # (campaign settings: one offer a member a day by default), which bounds check-in rewards too.
    assert check_in(hq, "M-A", elsewhere.code()).rewards == []
    assert visits(hq, "M-A") == (2, 0)
    campaigns.save_settings(hq.db, {"offer_cap": {"max": 0}})
    third = TillKey(hq, "T-4", "S-THIRD")
    assert check_in(hq, "M-A", third.code()).rewards  # with no cap: one a store and day
    assert count(hq, "SELECT COUNT(*) FROM checkins WHERE member_id = ?", "M-A") == 3
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id = ? AND deleted = 0", "M-A") == 2
    assert points(hq, "M-A") == 0  # the reward is a coupon: its points come with a sale, under the rules


def test_a_campaign_for_some_stores_rewards_only_there(hq: HqStore) -> None:
    checkin_campaign(hq, stores=["S-ELSE"])
    assert check_in(hq, "M-A", TillKey(hq, "T-1").code()).rewards == []
    assert check_in(hq, "M-A", TillKey(hq, "T-9", "S-ELSE").code()).rewards


def test_forged_expired_and_reused_codes_are_refused_with_stable_codes(hq: HqStore) -> None:
    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    now = time.time()
    step = codes.step_of(now)
    stranger = codes.sign(Ed25519PrivateKey.generate(), "T-1", STORE, step)  # a key head office never saw
    assert refusal(hq, "M-A", stranger, now) is ErrorCode.CHECKIN_FORGED
    assert refusal(hq, "M-A", till.code(step, store_id="S-ELSE"), now) is ErrorCode.CHECKIN_FORGED
    tampered = bytearray(codes.parse(till.code(step)).head + codes.parse(till.code(step)).sig)
    tampered[-1] ^= 1
    assert refusal(hq, "M-A", claims.b64(bytes(tampered)), now) is ErrorCode.CHECKIN_FORGED
    assert refusal(hq, "M-A", "not a code", now) is ErrorCode.CHECKIN_FORGED
    assert refusal(hq, "M-A", till.code(step - 2), now) is ErrorCode.CHECKIN_EXPIRED
    assert refusal(hq, "M-A", till.code(step + 1), now) is ErrorCode.CHECKIN_EXPIRED
    assert check_in(hq, "M-A", till.code(step - 1), now).rewards  # the step before is still good
    assert refusal(hq, "M-A", till.code(step), now) is ErrorCode.CHECKIN_USED
    hq.revoke_terminal("T-1")
    assert refusal(hq, "M-B", till.code(step), now) is ErrorCode.CHECKIN_FORGED  # a revoked till signs nothing
    assert count(hq, "SELECT COUNT(*) FROM checkins") == 1
    assert count(hq, "SELECT COUNT(*) FROM campaign_members") == 1


def test_a_replaced_claim_key_signs_no_more_check_ins_and_its_receipts_still_claim(hq: HqStore) -> None:
    """A till's claim key replaced (docs/enrolment.md: delete ``claim.key``; a damaged file is replaced by
    itself) because a copy of it may be about: once head office holds the new key, a door code of the old one is
    forged (codes live 30 s, nobody needs them), while the receipts the old key signed stay claimable."""
    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    sale = till.push("sale", entries.sale(None, 1500, store_id=STORE))
    receipt = claims.sign(till.key, sale, int(time.time()), claims.TTL)
    old = till.key
    now = time.time()
    step = codes.step_of(now)
    assert check_in(hq, "M-A", till.code(step), now).rewards  # the first key signs while it is the till's
    till.key = Ed25519PrivateKey.generate()
    public = claims.public_bytes(till.key)
    till.push("claim_key", ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire())
    assert refusal(hq, "M-B", codes.sign(old, "T-1", STORE, step), now) is ErrorCode.CHECKIN_FORGED
    assert check_in(hq, "M-B", till.code(step), now).rewards  # the new key signs
    till.push(
        "claim_key",
        ClaimKeyPayload(
            key_id=claims.key_id_of(claims.public_bytes(old)).hex(), public_key=claims.b64(claims.public_bytes(old))
        ).wire(),
    )
    assert refusal(hq, "M-C", codes.sign(old, "T-1", STORE, step), now) is ErrorCode.CHECKIN_FORGED  # not again
    claimed = hq.db.transact(lambda tx: members.claim(tx, receipt, "Rin", members.CONSENT_VERSION, datetime.now(UTC)))
    assert claimed["txn_id"] == sale
    assert count(hq, "SELECT COUNT(*) FROM checkins") == 2


def test_concurrent_check_ins_of_one_member_give_one_visit_and_one_reward(hq: HqStore) -> None:
    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    code = till.code()
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def one() -> None:
        start.wait()
        try:
            check_in(hq, "M-A", code)
            outcomes.append("ok")
        except checkin.CheckinRefused as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["checkin_used"] * 5 + ["ok"]
    assert visits(hq, "M-A") == (1, 0)
    assert count(hq, "SELECT COUNT(*) FROM campaign_members WHERE member_id = ?", "M-A") == 1
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id = ?", "M-A") == 1


def test_door_taps_are_visits_once_a_day_and_their_reward_is_decided_once(hq: HqStore) -> None:
    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    till.door_tap("M-A")
    till.door_tap("M-A")  # tapped again the same day: stored, no second visit
    assert visits(hq, "M-A") == (1, 0)
    assert count(hq, "SELECT COUNT(*) FROM checkins WHERE rewarded_at IS NULL") == 1  # decided after the push
    now = campaigns.parse_now(None)
    assert campaigns.reward_pending(hq.db, now) == 1
    assert campaigns.reward_pending(hq.db, now) == 0  # decided once, whoever comes first
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id = ?", "M-A") == 1
    assert refusal(hq, "M-A", till.code()) is ErrorCode.CHECKIN_USED  # the wallet finds the door's visit
    held = till.door_tap("M-B", store_id="S-ELSE")  # a door tap naming another store than its till's
    with hq.db.read() as tx:
        effect = tx.one("SELECT effect FROM journal WHERE txn_id = ?", [held])
    assert effect is not None and effect[0] == "quarantined"
    assert visits(hq, "M-B") == (0, 0)
    till.door_tap("M-NOBODY")  # a member head office does not know: no visit, an item
    assert count(hq, "SELECT COUNT(*) FROM checkins") == 1


def test_a_stolen_till_credential_mints_no_more_than_its_store_days_cap(hq: HqStore) -> None:
    """A thief with a till's token and claim key can name any member at the door and sign any code, but only for
    the till's own store: each member gets one coupon a store and day, the campaign's cap bounds the store's day,
    and no entry the thief can send creates points or stored value."""
    checkin_campaign(hq, max_per_store_day=3)
    members = [f"M-{n:02d}" for n in range(10)]
    for member in members:
        hq.upsert_member(member, member, "basic", 0)
    stolen = TillKey(hq, "T-1")
    for member in members:
        stolen.door_tap(member)
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    for late in ("M-LATE-1", "M-LATE-2"):  # the wallet path counts in the same cap
        hq.upsert_member(late, late, "basic", 0)
        assert check_in(hq, late, stolen.code()).rewards == []
    assert count(hq, "SELECT COUNT(*) FROM coupons WHERE member_id IS NOT NULL AND deleted = 0") == 3
    assert count(hq, "SELECT COUNT(*) FROM checkins") == 12  # every visit counts; rewards are capped
    assert sum(points(hq, m) for m in members) == 0
    forged = stolen.push("checkin", {"member_id": "M-00", "store_id": STORE, "reader": "door", "points": 500})
    with hq.db.read() as tx:
        row = tx.one("SELECT effect, points, stored_value FROM journal WHERE txn_id = ?", [forged])
    assert row is not None and (row[0], int(row[1]), int(row[2])) == ("malformed", 0, 0)


def test_erasing_a_member_takes_its_check_ins_and_keeps_its_door_taps_anonymised(hq: HqStore) -> None:
    from hq.erasure import erase_member

    checkin_campaign(hq)
    till = TillKey(hq, "T-1")
    tap = till.door_tap("M-A")
    campaigns.reward_pending(hq.db, campaigns.parse_now(None))
    assert check_in(hq, "M-B", till.code()).rewards
    erase_member(hq, "M-A", "admin")
    assert count(hq, "SELECT COUNT(*) FROM checkins WHERE member_id = ?", "M-A") == 0
    for table in ("member_totals", stats.RECENT_TOTALS):
        assert count(hq, f"SELECT COUNT(*) FROM {table} WHERE member_id = ?", "M-A") == 0
    assert count(hq, "SELECT COUNT(*) FROM campaign_members WHERE member_id = ?", "M-A") == 0
    with hq.db.read() as tx:
        row = tx.one("SELECT member_id, payload FROM journal WHERE txn_id = ?", [tap])
    assert row is not None and row[0] is None and '"member_id":null' in str(row[1])
    assert count(hq, "SELECT COUNT(*) FROM checkins") == 1  # M-B's stays
    with hq.db.read() as tx:
        kept = stats.snapshot(tx)
    hq.rebuild_stats()
    with hq.db.read() as tx:
        assert stats.snapshot(tx) == kept  # what erasure left is what the journal and the check-ins give


def test_a_campaign_whose_segment_was_deleted_rewards_nobody_and_the_visit_still_counts(hq: HqStore) -> None:
    checkin_campaign(hq)
    hq.db.transact(lambda tx: segments.delete(tx, "everyone"))
    done = check_in(hq, "M-A", TillKey(hq, "T-1").code())
    assert done.rewards == [] and visits(hq, "M-A") == (1, 0)
