"""Pairing codes and paired devices (terminal/api/pairing.py), with a clock the test moves."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from terminal.api import pairing as pairing_module
from terminal.api.pairing import Pairing
from terminal.errors import Code, Rejected
from tests.fixtures.clock import Clock


def refused(pairing: Pairing, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        pairing.redeem(code, "x")
    assert caught.value.code is Code.PAIRING_REFUSED


def test_a_code_is_six_digits_used_once(tmp_path: Path) -> None:
    pairing = Pairing(tmp_path / "paired.json")
    code = pairing.new_code()
    assert len(code.code) == 6 and code.code.isdigit() and code.expires_in == 120
    device, token = pairing.redeem(code.code, "POS lane 1")
    assert pairing.check(token) == device.device_id and len(token) >= 40
    refused(pairing, code.code)


def test_a_code_expires(tmp_path: Path) -> None:
    clock = Clock()
    pairing = Pairing(None, ttl=60, clock=clock)
    code = pairing.new_code().code
    clock.now += 61
    refused(pairing, code)


def test_wrong_tries_drop_the_code(tmp_path: Path) -> None:
    pairing = Pairing(None, attempts=3)
    code = pairing.new_code().code
    wrong = "x" + code[1:]
    for _ in range(3):
        refused(pairing, wrong)
    refused(pairing, code)
    fresh = pairing.new_code().code  # asking again starts over
    assert pairing.redeem(fresh, "pos")[0].name == "pos"


def scripted_codes(monkeypatch: pytest.MonkeyPatch, *draws: int) -> None:
    """The codes ``new_code`` draws, in order (the tokens stay random)."""
    numbers = iter(draws)
    fake = SimpleNamespace(
        randbelow=lambda _n: next(numbers), token_urlsafe=secrets.token_urlsafe, token_hex=secrets.token_hex
    )
    monkeypatch.setattr(pairing_module, "secrets", fake)


def test_a_new_code_replaces_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_codes(monkeypatch, 123456, 654321)  # two different codes, never by luck
    pairing = Pairing(None)
    old = pairing.new_code().code
    new = pairing.new_code().code
    assert (old, new) == ("123456", "654321")
    refused(pairing, old)
    assert pairing.redeem(new, "pos")
    refused(pairing, new)  # used once


def test_a_new_code_that_happens_to_equal_the_old_one_is_still_one_use(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_codes(monkeypatch, 42, 42)  # the 1-in-a-million draw, on purpose
    pairing = Pairing(None)
    old = pairing.new_code().code
    new = pairing.new_code().code
    assert old == new == "000042"  # zero-padded to six digits
    assert pairing.redeem(new, "pos")
    refused(pairing, old)


def test_no_code_no_pairing() -> None:
    refused(Pairing(None), "000000")


def test_devices_survive_a_restart_and_the_file_holds_no_token(tmp_path: Path) -> None:
    path = tmp_path / "paired.json"
    first = Pairing(path)
    device, token = first.redeem(first.new_code().code, "panel")
    assert token not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Pairing(path)
    assert again.check(token) == device.device_id
    assert again.devices() == [device.public()]
    assert again.revoke(device.device_id) and not again.revoke(device.device_id)
    assert Pairing(path).check(token) is None
    assert again.check("") is None and again.check(token + "x") is None
