"""Signing in to the wallet, the rules alone (``hq.wallet.signin`` over a real head-office database, on
SQLite and PostgreSQL), with the clock passed in: a code is stored only as a digest, lives 10 minutes,
works once, dies after 5 wrong tries, is one of at most 3 an hour-quarter per contact, and a contact gets
10 wrong tries a day whatever the address; a code for member
A never signs in B; sessions expire, end at sign-out and at erasure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from hq.erasure import erase_member
from hq.store import HqStore
from hq.wallet import signin
from hq.wallet.signin import WalletRefused
from sync.protocol import ErrorCode
from tests.fixtures.postgres import hq_url, pg_server, pg_url  # noqa: F401 - fixtures

T0 = 1_800_000_000
AIKO, BEN = "aiko@example.com", "+819012345678"


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:  # noqa: F811 - the fixture
    store = HqStore(hq_url)
    store.upsert_member("M-A", "Aiko", "basic", 0)
    store.upsert_member("M-B", "Ben", "basic", 0)
    store.db.transact(lambda tx: signin.set_contact(tx, "M-A", signin.contact_of(" Aiko@Example.COM "), "test", T0))
    store.db.transact(lambda tx: signin.set_contact(tx, "M-B", signin.contact_of("+81 90-1234-5678"), "test", T0))
    yield store
    store.close()


def refused(call: object) -> ErrorCode:
    assert callable(call)
    with pytest.raises(WalletRefused) as info:
        call()
    return info.value.code


def test_contacts_are_normalised_and_bad_ones_refused() -> None:
    assert signin.contact_of(" Aiko@Example.COM ") == signin.Contact("email", "aiko@example.com")
    assert signin.contact_of("+81 (90) 1234-5678") == signin.Contact("phone", "+819012345678")
    for bad in ("", "aiko", "aiko@", "@example.com", "09012345678", "+0123456789", "+12", "a b@example.com"):
        assert refused(lambda bad=bad: signin.contact_of(bad)) is ErrorCode.WALLET_BAD_CONTACT, bad


def test_a_code_signs_in_once_and_only_its_digest_is_stored(hq: HqStore) -> None:
    issued = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    assert issued.member_id == "M-A" and len(issued.code) == signin.CODE_DIGITS and issued.code.isdigit()
    with hq.db.read() as tx:
        rows = tx.all("SELECT code_id, code_sha256 FROM wallet_codes")
        dump = repr(tx.all("SELECT * FROM wallet_codes"))
    assert issued.code not in dump
    assert rows[0][1] == hashlib.sha256(f"{rows[0][0]}:{issued.code}".encode()).hexdigest()
    member, token = signin.sign_in(hq, "AIKO@example.com", issued.code, T0 + 5)
    assert member == "M-A" and signin.session_member(hq, token, T0 + 6) == "M-A"
    with hq.db.read() as tx:
        assert token not in repr(tx.all("SELECT * FROM wallet_sessions"))
    assert refused(lambda: signin.sign_in(hq, AIKO, issued.code, T0 + 7)) is ErrorCode.WALLET_CODE_EXPIRED


def test_an_expired_code_is_refused(hq: HqStore) -> None:
    issued = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    late = T0 + signin.CODE_TTL
    assert refused(lambda: signin.sign_in(hq, AIKO, issued.code, late)) is ErrorCode.WALLET_CODE_EXPIRED


def test_five_wrong_codes_kill_the_code(hq: HqStore) -> None:
    issued = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    wrong = f"{(int(issued.code) + 1) % 10**signin.CODE_DIGITS:0{signin.CODE_DIGITS}d}"
    codes = [refused(lambda: signin.sign_in(hq, AIKO, wrong, T0 + 1)) for _ in range(signin.MAX_ATTEMPTS)]
    assert codes == [ErrorCode.WALLET_CODE_WRONG] * (signin.MAX_ATTEMPTS - 1) + [ErrorCode.WALLET_TOO_MANY_ATTEMPTS]
    assert refused(lambda: signin.sign_in(hq, AIKO, issued.code, T0 + 2)) is ErrorCode.WALLET_CODE_EXPIRED


def test_a_contacts_wrong_codes_from_any_address_are_bounded_a_day_across_its_codes(hq: HqStore) -> None:
    """Codes asked for from different addresses, each guessed wrong: the contact's ``MAX_MISSES``-th wrong code
    kills the live one, then its right code is refused unchecked and no new code is made, from any address,
    until the day has passed the misses. An unknown contact gets the same answers; another contact none of it."""
    answers = {}
    for contact in (AIKO, "nobody@example.com"):
        seen, last = [], None
        for n in range(signin.MAX_MISSES // signin.MAX_ATTEMPTS):
            last = signin.request_code(hq, contact, f"10.1.{n}.1", T0 + n)
            wrong = f"{(int(last.code) + 1) % 10**signin.CODE_DIGITS:0{signin.CODE_DIGITS}d}"
            seen += [
                refused(lambda c=contact, w=wrong: signin.sign_in(hq, c, w, T0 + 10))
                for _ in range(signin.MAX_ATTEMPTS)
            ]
        assert last is not None
        seen.append(refused(lambda c=contact, k=last.code: signin.sign_in(hq, c, k, T0 + 11)))
        seen.append(refused(lambda c=contact: signin.request_code(hq, c, "10.2.0.1", T0 + signin.RATE_WINDOW + 20)))
        answers[contact] = seen
    per_code = [ErrorCode.WALLET_CODE_WRONG] * (signin.MAX_ATTEMPTS - 1)
    assert (
        answers[AIKO]
        == answers["nobody@example.com"]
        == [
            *per_code,
            ErrorCode.WALLET_TOO_MANY_ATTEMPTS,
            *per_code,
            ErrorCode.WALLET_GUESSES_LIMITED,
            ErrorCode.WALLET_GUESSES_LIMITED,  # the right code
            ErrorCode.WALLET_GUESSES_LIMITED,  # a new code, asked from elsewhere
        ]
    )
    ben = signin.request_code(hq, BEN, "10.1.0.1", T0 + 30)
    assert signin.sign_in(hq, BEN, ben.code, T0 + 31)[0] == "M-B"
    late = T0 + 10 + signin.MISS_WINDOW  # the misses have left the window
    aiko = signin.request_code(hq, AIKO, "10.3.0.1", late)
    assert signin.sign_in(hq, AIKO, aiko.code, late + 1)[0] == "M-A"


def test_asking_again_kills_the_earlier_code_and_requests_are_limited(hq: HqStore) -> None:
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    second = signin.request_code(hq, AIKO, "10.0.0.2", T0 + 1)
    if first.code != second.code:
        assert refused(lambda: signin.sign_in(hq, AIKO, first.code, T0 + 2)) is ErrorCode.WALLET_CODE_WRONG
    signin.request_code(hq, AIKO, "10.0.0.3", T0 + 2)
    assert refused(lambda: signin.request_code(hq, AIKO, "10.0.0.4", T0 + 3)) is ErrorCode.WALLET_RATE_LIMITED
    assert signin.request_code(hq, AIKO, "10.0.0.4", T0 + signin.RATE_WINDOW + 1).member_id == "M-A"


def test_one_address_may_ask_for_a_bounded_number_of_codes(hq: HqStore) -> None:
    for n in range(signin.MAX_CODES_FROM):
        signin.request_code(hq, f"someone{n}@example.com", "10.9.9.9", T0 + n)
    more = lambda: signin.request_code(hq, AIKO, "10.9.9.9", T0 + 100)  # noqa: E731
    assert refused(more) is ErrorCode.WALLET_RATE_LIMITED


def test_an_unknown_contact_gets_the_same_answer_and_nothing_to_send(hq: HqStore) -> None:
    issued = signin.request_code(hq, "nobody@example.com", "10.0.0.1", T0)
    assert issued.member_id is None
    assert refused(lambda: signin.sign_in(hq, "nobody@example.com", issued.code, T0 + 1)) is ErrorCode.WALLET_CODE_WRONG


def test_a_code_for_member_a_cannot_sign_in_b(hq: HqStore) -> None:
    code_a = signin.request_code(hq, AIKO, "10.0.0.1", T0).code
    assert refused(lambda: signin.sign_in(hq, BEN, code_a, T0 + 1)) is ErrorCode.WALLET_CODE_EXPIRED
    code_b = signin.request_code(hq, BEN, "10.0.0.1", T0 + 2).code
    if code_a != code_b:
        assert refused(lambda: signin.sign_in(hq, BEN, code_a, T0 + 3)) is ErrorCode.WALLET_CODE_WRONG
    assert signin.sign_in(hq, BEN, code_b, T0 + 4)[0] == "M-B"
    assert signin.sign_in(hq, AIKO, code_a, T0 + 5)[0] == "M-A"


def test_a_contact_belongs_to_one_member(hq: HqStore) -> None:
    take = lambda: hq.db.transact(lambda tx: signin.set_contact(tx, "M-B", signin.contact_of(AIKO), "join", T0))  # noqa: E731
    assert refused(take) is ErrorCode.WALLET_CONTACT_TAKEN
    hq.db.transact(lambda tx: signin.set_contact(tx, "M-B", signin.contact_of(AIKO), "admin:x", T0, take=True))
    with hq.db.read() as tx:
        assert signin.contacts(tx, "M-B") == {"email": AIKO, "phone": BEN}
        assert signin.contacts(tx, "M-A") == {}


def test_a_code_asked_before_its_contact_moved_signs_in_nobody(hq: HqStore) -> None:
    issued = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    hq.db.transact(lambda tx: signin.set_contact(tx, "M-B", signin.contact_of(AIKO), "admin:x", T0, take=True))
    assert refused(lambda: signin.sign_in(hq, AIKO, issued.code, T0 + 1)) is ErrorCode.WALLET_CODE_WRONG


def test_sessions_expire_end_at_sign_out_and_at_erasure(hq: HqStore) -> None:
    token = hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "code", T0))
    assert signin.session_member(hq, token, T0 + signin.SESSION_TTL - 1) == "M-A"
    assert signin.session_member(hq, token, T0 + signin.SESSION_TTL) is None
    assert signin.session_member(hq, token + "x", T0) is None and signin.session_member(hq, "", T0) is None
    assert signin.end_session(hq, token, T0 + 1) and signin.session_member(hq, token, T0 + 2) is None
    assert not signin.end_session(hq, token, T0 + 3)
    other = hq.db.transact(lambda tx: signin.open_session(tx, "M-A", "join", T0))
    erase_member(hq, "M-A", "privacy desk")
    assert signin.session_member(hq, other, T0 + 1) is None
    with hq.db.read() as tx:
        assert signin.contacts(tx, "M-A") == {}
    assert signin.request_code(hq, AIKO, "10.0.0.1", T0 + 10).member_id is None


def test_erasure_and_time_leave_no_code_naming_a_contact(hq: HqStore) -> None:
    """A code names its contact, the member and the asking address: erasing the member removes its codes (those
    asked for the contact before any member held it too) and its contacts' wrong codes, and a code past the day
    it counts for is not kept at all."""
    signin.request_code(hq, "carol@example.com", "10.0.0.3", T0)  # nobody's yet
    hq.upsert_member("M-C", "Carol", "basic", 0)
    hq.db.transact(lambda tx: signin.set_contact(tx, "M-C", signin.contact_of("carol@example.com"), "test", T0))
    signin.request_code(hq, "carol@example.com", "10.0.0.3", T0 + 1)
    refused(lambda: signin.sign_in(hq, "carol@example.com", "not it", T0 + 1))  # a miss names the contact too
    signin.request_code(hq, AIKO, "10.0.0.1", T0 + 2)
    erase_member(hq, "M-C", "privacy desk")
    with hq.db.read() as tx:
        assert "carol" not in repr(tx.all("SELECT * FROM wallet_codes")).lower()
        assert tx.all("SELECT contact FROM wallet_codes") == [("email:" + AIKO,)]
        assert tx.all("SELECT * FROM wallet_code_misses") == []
    signin.request_code(hq, BEN, "10.0.0.2", T0 + 2 + signin.MISS_WINDOW)
    with hq.db.read() as tx:
        assert tx.all("SELECT contact, source FROM wallet_codes") == [("phone:" + BEN, "10.0.0.2")]


def wrong_for(code: str) -> str:
    return f"{(int(code) + 1) % 10**signin.CODE_DIGITS:0{signin.CODE_DIGITS}d}"


def close_shared_lane(hq: HqStore, contact: str, at: int) -> None:
    """A stranger's day against ``contact``: codes asked from many addresses, each guessed wrong, until no code is
    made or checked for it in the shared lane."""
    for n in range(signin.MAX_CODES):
        try:
            issued = signin.request_code(hq, contact, f"10.7.{n}.1", at + n)
        except WalletRefused as exc:
            assert exc.code in (ErrorCode.WALLET_GUESSES_LIMITED, ErrorCode.WALLET_RATE_LIMITED)
            break
        for _ in range(signin.MAX_ATTEMPTS):
            refused(lambda i=issued, t=at + n: signin.sign_in(hq, contact, wrong_for(i.code), t))
    assert refused(lambda: signin.request_code(hq, contact, "10.8.0.1", at + 20)) in (
        ErrorCode.WALLET_GUESSES_LIMITED,
        ErrorCode.WALLET_RATE_LIMITED,
    )


def test_a_stranger_closing_the_contact_leaves_the_members_own_browser_its_lane(hq: HqStore) -> None:
    """Aiko signed in once on her phone (its device token); a stranger then asks for her codes and guesses them
    until the shared lane is closed: her phone still asks for a code, and the code it asked for before the attack
    still works. A browser she never signed in on, a made-up device token and Ben's own device are the stranger's
    lane; signing out everywhere makes her phone a stranger too."""
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    member, _ = signin.sign_in(hq, AIKO, first.code, T0 + 1)
    phone = signin.remember_device(hq, member, "", T0 + 1)
    assert signin.remember_device(hq, member, phone, T0 + 2) == phone  # known: kept
    ben = signin.request_code(hq, BEN, "10.0.0.2", T0)
    bens = signin.remember_device(hq, signin.sign_in(hq, BEN, ben.code, T0 + 1)[0], "", T0 + 1)
    before = signin.request_code(hq, AIKO, "10.0.0.1", T0 + 100, phone)
    close_shared_lane(hq, AIKO, T0 + 200)
    for device in ("", "made-up", bens):
        assert refused(lambda d=device: signin.request_code(hq, AIKO, "10.9.0.1", T0 + 300, d)) in (
            ErrorCode.WALLET_GUESSES_LIMITED,
            ErrorCode.WALLET_RATE_LIMITED,
        )
        assert refused(lambda d=device: signin.sign_in(hq, AIKO, before.code, T0 + 300, d)) in (
            ErrorCode.WALLET_GUESSES_LIMITED,
            ErrorCode.WALLET_CODE_EXPIRED,
        )
    assert signin.sign_in(hq, AIKO, before.code, T0 + 301, phone)[0] == "M-A"
    again = signin.request_code(hq, AIKO, "10.0.0.1", T0 + 302, phone)
    assert signin.sign_in(hq, AIKO, again.code, T0 + 303, phone)[0] == "M-A"
    hq.db.transact(lambda tx: signin.end_all_sessions(tx, "M-A", T0 + 304))
    assert refused(lambda: signin.request_code(hq, AIKO, "10.0.0.1", T0 + 305, phone)) in (
        ErrorCode.WALLET_GUESSES_LIMITED,
        ErrorCode.WALLET_RATE_LIMITED,
    )


def test_a_stranger_asking_all_day_has_a_bounded_number_of_codes_sent(hq: HqStore) -> None:
    """A stranger asks for Aiko's codes from new addresses as fast as the quarter hour allows, a whole day long,
    and never guesses: at most ``MAX_CODES_DAY`` codes are made (and sent) for her contact that day."""
    made = 0
    for n in range(signin.MISS_WINDOW // signin.RATE_WINDOW):
        for m in range(signin.MAX_CODES):
            try:
                signin.request_code(hq, AIKO, f"10.{n % 250}.{m}.1", T0 + n * (signin.RATE_WINDOW + 1) + m)
                made += 1
            except WalletRefused as exc:
                assert exc.code is ErrorCode.WALLET_RATE_LIMITED
    assert made == signin.MAX_CODES_DAY


def test_a_thief_with_the_members_phone_gets_the_same_bound_in_its_lane(hq: HqStore) -> None:
    """The phone's lane is the member's, not a way around the bound: a thief holding it gets ``MAX_MISSES``
    wrong codes a day there too, then its right code is refused unchecked."""
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    phone = signin.remember_device(hq, signin.sign_in(hq, AIKO, first.code, T0 + 1)[0], "", T0 + 1)
    seen: list[ErrorCode] = []
    last = None
    for n in range(signin.MAX_MISSES // signin.MAX_ATTEMPTS):
        last = signin.request_code(hq, AIKO, "10.0.0.9", T0 + 10 + n, phone)
        seen += [
            refused(lambda i=last: signin.sign_in(hq, AIKO, wrong_for(i.code), T0 + 20, phone))
            for _ in range(signin.MAX_ATTEMPTS)
        ]
    assert last is not None
    assert seen.count(ErrorCode.WALLET_GUESSES_LIMITED) == 1 and seen[-1] is ErrorCode.WALLET_GUESSES_LIMITED
    assert refused(lambda: signin.sign_in(hq, AIKO, last.code, T0 + 21, phone)) is ErrorCode.WALLET_GUESSES_LIMITED


def test_a_phone_the_member_keeps_signing_in_on_keeps_its_lane_past_a_year(hq: HqStore) -> None:
    """Known browsers age from their last sign-in by code, not their first: Aiko's phone, signed in on again after
    300 days, is still her own lane at 400 days, and stays among her five most recent when she signs in on others."""
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    member, _ = signin.sign_in(hq, AIKO, first.code, T0 + 1)
    phone = signin.remember_device(hq, member, "", T0 + 1)
    again = T0 + 300 * 86400
    assert signin.remember_device(hq, member, phone, again) == phone
    for n in range(signin.MAX_KNOWN_DEVICES - 1):
        signin.remember_device(hq, member, "", T0 + 2 + n)  # older than the phone's last sign-in
    late = T0 + 400 * 86400
    close_shared_lane(hq, AIKO, late)
    assert signin.request_code(hq, AIKO, "10.0.0.1", late + 100, phone).code  # still her own lane


def test_an_address_spent_on_other_contacts_still_lets_the_members_phone_ask(hq: HqStore) -> None:
    """Someone sharing Aiko's address (a café's wifi) asks for codes for many contacts until the address's
    ``MAX_CODES_FROM`` is spent: the codes her phone asked for there before count nothing against it, and her phone
    still gets one there after; that someone, with no cookie, a made-up one or Ben's, is refused for her contact
    and for any other, but Ben's phone there still gets Ben's."""
    cafe = "10.5.5.5"
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    phone = signin.remember_device(hq, signin.sign_in(hq, AIKO, first.code, T0 + 1)[0], "", T0 + 1)
    ben = signin.request_code(hq, BEN, "10.0.0.2", T0)
    bens = signin.remember_device(hq, signin.sign_in(hq, BEN, ben.code, T0 + 1)[0], "", T0 + 1)
    for n in range(signin.MAX_CODES - 1):
        signin.request_code(hq, AIKO, cafe, T0 + 10 + n, phone)
    for n in range(signin.MAX_CODES_FROM):
        signin.request_code(hq, f"someone{n}@example.com", cafe, T0 + 20 + n)
    for device in ("", "made-up", bens):
        for contact in (AIKO, "someone-else@example.com"):
            asked = lambda d=device, c=contact: signin.request_code(hq, c, cafe, T0 + 100, d)  # noqa: E731
            assert refused(asked) is ErrorCode.WALLET_RATE_LIMITED, (device, contact)
    mine = signin.request_code(hq, AIKO, cafe, T0 + 101, phone)
    assert signin.sign_in(hq, AIKO, mine.code, T0 + 102, phone)[0] == "M-A"
    assert signin.request_code(hq, BEN, cafe, T0 + 103, bens).member_id == "M-B"


def test_a_browser_signed_in_on_in_the_same_second_as_five_others_keeps_its_lane(hq: HqStore) -> None:
    """Six sign-ins by code within one second: the newest browser is kept (the oldest other goes), whatever order
    the database gives rows of the same time."""
    first = signin.request_code(hq, AIKO, "10.0.0.1", T0)
    member, _ = signin.sign_in(hq, AIKO, first.code, T0 + 1)
    for _ in range(signin.MAX_KNOWN_DEVICES):
        signin.remember_device(hq, member, "", T0 + 1)
    newest = signin.remember_device(hq, member, "", T0 + 1)
    with hq.db.read() as tx:
        count = tx.one("SELECT COUNT(*) FROM wallet_known_devices WHERE member_id = ?", [member])
        kept = tx.one("SELECT 1 FROM wallet_known_devices WHERE device_sha256 = ?", [signin.token_digest(newest)])
    assert count is not None and int(count[0]) == signin.MAX_KNOWN_DEVICES and kept is not None
