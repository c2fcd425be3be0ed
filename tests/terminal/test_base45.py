"""terminal.base45 against RFC 9285's examples."""

from __future__ import annotations

import pytest

from terminal import base45


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0"), (b"", "")],
)
def test_rfc_examples(raw: bytes, text: str) -> None:
    assert base45.encode(raw) == text
    assert base45.decode(text) == raw


@pytest.mark.parametrize("bad", ["GGW", "a", "ZZZZ", "AB#"])
def test_bad_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        base45.decode(bad)


def test_every_byte_pair_round_trips() -> None:
    raw = bytes(range(256)) + bytes(reversed(range(256))) + b"\\xff"
    assert base45.decode(base45.encode(raw)) == raw
