"""The claim token format (sync/claims.py): round trip, expiry, forgery, another till's key."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import claims
from terminal.config import validate
from terminal.hotkeys import parse_keymap

TXN = str(uuid.uuid4())


def test_a_token_round_trips_and_fits_a_small_qr() -> None:
    key = Ed25519PrivateKey.generate()
    body = claims.sign(key, TXN, 1_800_000_000, 3600)
    assert len(body) == 130 and "=" not in body
    token = claims.parse(f"https://hq.example/join#TPJ1:{body}")
    assert (token.txn_id, token.issued_at, token.expires_at) == (TXN, 1_800_000_000, 1_800_003_600)
    claims.verify(token, claims.public_bytes(key), 1_800_003_600)


@pytest.mark.parametrize("case", ["expired", "other_key", "bit_flipped", "truncated", "not_base64"])
def test_bad_tokens_are_refused_with_their_reason(case: str) -> None:
    key = Ed25519PrivateKey.generate()
    body = claims.sign(key, TXN, 1_800_000_000, 3600)
    public, now = claims.public_bytes(key), 1_800_000_100
    if case == "expired":
        now = 1_800_003_601
    elif case == "other_key":
        public = claims.public_bytes(Ed25519PrivateKey.generate())
    elif case == "bit_flipped":
        raw = bytearray(claims.unb64(body))
        raw[20] ^= 1  # the txn id: the signature no longer covers it
        body = claims.b64(bytes(raw))
    elif case == "truncated":
        body = body[:-8]
    else:
        body = "***"
    with pytest.raises(claims.ClaimTokenError) as refused:
        claims.verify(claims.parse(body), public, now)
    assert refused.value.reason == ("expired" if case == "expired" else "forged")


def test_new_member_has_a_default_hotkey_that_clashes_with_none() -> None:
    config = validate({})
    assert config.hotkeys.keymap()["enrol"] == "F7"
    assert "enrol" in parse_keymap(config.hotkeys.keymap()).values()
    assert "F7" not in {config.panel.keys.get(k, "") for k in config.panel.keys}
