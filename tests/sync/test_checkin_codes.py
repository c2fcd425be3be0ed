"""Check-in codes (sync/checkins.py), pure: what a till signs, what head office accepts (the current step and
the one before), and every way a code is refused: another key, another till or store, a changed byte, a
step too old or from the future, text that is not a code."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import checkins
from sync.claims import public_bytes
from terminal import b64url

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = 1_780_000_015.0  # 15 s into a step
STEP = checkins.step_of(NOW)


def reason(text: str, *, key: Ed25519PrivateKey = KEY, till: str = "T1", store: str = "S1", now: float = NOW) -> str:
    try:
        checkins.verify(checkins.parse(text), public_bytes(key), till, store, now)
    except checkins.CheckinCodeError as exc:
        return exc.reason
    return "ok"


def test_a_code_is_short_url_safe_and_checks_for_its_till_store_and_step() -> None:
    code = checkins.sign(KEY, "T1", "S1", STEP)
    assert len(code) == 103 and all(c.isalnum() or c in "-_" for c in code)
    assert reason(code) == "ok"
    assert reason(f"TPK1:{code}") == "ok"
    link = checkins.link("https://hq.example/", code)
    assert link == f"https://hq.example/wallet/checkin?c={code}"
    assert reason(link) == "ok" and checkins.parse(link).step == STEP


def test_the_links_qr_is_the_size_docs_checkin_md_says() -> None:
    """Version 7 at level L (45 modules) for an origin of up to 33 characters, version 8 beyond (up to about 70):
    what the door display shows (``terminal.checkin``: the link, not compacted) and the docs tell a chain."""
    from terminal import qrcodes

    code = checkins.sign(KEY, "T-0001", "S-001", STEP)
    for origin, version in (("https://hq.example.com", 7), ("https://" + "h" * 25, 7), ("https://" + "h" * 26, 8)):
        link = checkins.link(origin, code)
        assert qrcodes.encode(link).version == version, (len(origin), link)
    assert qrcodes.encode(checkins.link("https://" + "h" * 62, code)).version == 8


def test_the_current_step_and_the_one_before_are_accepted_nothing_else() -> None:
    assert reason(checkins.sign(KEY, "T1", "S1", STEP - 1)) == "ok"
    assert reason(checkins.sign(KEY, "T1", "S1", STEP - 2)) == "expired"
    assert reason(checkins.sign(KEY, "T1", "S1", STEP + 1)) == "expired"  # from a till's clock ahead of ours
    code = checkins.sign(KEY, "T1", "S1", STEP)
    end_of_life = (STEP + 2) * checkins.STEP_SECONDS
    assert reason(code, now=end_of_life - 1) == "ok" and reason(code, now=end_of_life) == "expired"


def test_a_code_of_another_key_till_or_store_or_with_a_changed_byte_is_forged() -> None:
    code = checkins.sign(KEY, "T1", "S1", STEP)
    assert reason(code, key=Ed25519PrivateKey.generate()) == "forged"
    assert reason(code, till="T2") == "forged"  # the terminal and the store are signed, not sent
    assert reason(code, store="S2") == "forged"
    raw = bytearray(b64url.decode(code))
    for at in (8, 12, 20, len(raw) - 1):  # the key id's last byte, the step, the signature
        changed = bytearray(raw)
        changed[at] ^= 0x01
        assert reason(b64url.encode(bytes(changed))) == "forged", at


@pytest.mark.parametrize(
    "text", ["", "hello", "TPK1:", "https://hq.example/wallet/checkin", "https://hq.example/?c=%%%", "A" * 103]
)
def test_text_that_is_not_a_code_is_forged(text: str) -> None:
    assert reason(text) == "forged"
