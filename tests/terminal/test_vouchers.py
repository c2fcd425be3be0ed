"""The voucher code and the till's voucher rules (terminal/vouchers.py): pure, no database.

A code verifies only with head office's voucher key named in it; any truncation, padding or flipped bit is
refused with a stable code (never accepted with other figures); the offline rules bound what a till takes
while head office is unreachable."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal import b64url
from terminal import payments as pay
from terminal import vouchers as vc
from terminal.errors import Code, Rejected

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {"K-v1": KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
EXPIRES = 2_000_000_000
ONLINE = pay.OfflineState(None, 60, 0, 0)
OFFLINE = pay.OfflineState(600, 600, 0, 0)


def code(kind: vc.Kind = vc.Kind.AMOUNT, value: int = 2500, sku: str = "", key: Ed25519PrivateKey = KEY) -> str:
    return vc.issue(key, "K-v1", bytes.fromhex("0011223344556677"), kind, value, EXPIRES, sku)


def refused(text: str, now: int | None = None) -> Code:
    with pytest.raises(Rejected) as exc:
        vc.read(text, KEYS, now)
    return exc.value.code


def test_a_code_reads_back_what_head_office_signed() -> None:
    amount = vc.read(code(), KEYS, EXPIRES - 1)
    assert (amount.voucher_id, amount.kind, amount.value, amount.sku) == ("0011223344556677", vc.Kind.AMOUNT, 2500, "")
    product = vc.read(code(vc.Kind.PRODUCT, 450, "COFFEE-1"), KEYS)
    assert (product.kind, product.sku, vc.discount(product, 300), vc.discount(product, 900)) == (
        vc.Kind.PRODUCT,
        "COFFEE-1",
        300,
        450,
    )
    assert refused(code(), EXPIRES) is Code.VOUCHER_EXPIRED
    with pytest.raises(ValueError):
        code(vc.Kind.PRODUCT, 450)  # a product voucher names its sku
    with pytest.raises(ValueError):
        code(value=0)


def test_only_head_offices_voucher_key_makes_a_voucher() -> None:
    assert refused(code(key=Ed25519PrivateKey.generate())) is Code.VOUCHER_FORGED  # same key id, another key
    other = vc.issue(KEY, "K-payment", secrets.token_bytes(8), vc.Kind.AMOUNT, 2500, EXPIRES)
    assert refused(other) is Code.VOUCHER_FORGED  # a key the till does not hold as a voucher key


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_code_is_refused_never_read_as_another(data: st.DataObject) -> None:
    text = code(vc.Kind.PRODUCT, 450, "COFFEE-1")
    raw = bytearray(b64url.decode(text[len(vc.PREFIX) :]))
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate":
        damaged = vc.PREFIX + b64url.encode(bytes(raw[: data.draw(st.integers(0, len(raw) - 1))]))
    elif how == "flip":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
        damaged = vc.PREFIX + b64url.encode(bytes(raw))
    else:
        damaged = vc.PREFIX + b64url.encode(bytes(raw) + data.draw(st.binary(min_size=1, max_size=8)))
    assert refused(damaged) in (Code.VOUCHER_MALFORMED, Code.VOUCHER_FORGED)


@pytest.mark.parametrize("text", ["", "TPV1:", "TPV1:***", "TPV2:AAAA", "TPP1:AAAA", "TPV1:" + "A" * 500])
def test_not_a_code_is_malformed(text: str) -> None:
    assert refused(text) is Code.VOUCHER_MALFORMED


def test_what_the_till_already_knows_refuses_a_used_voucher() -> None:
    assert vc.held_refusal(vc.State.ACTIVE, used_here=False) is None
    assert vc.held_refusal(None, used_here=False) is None  # unknown here: head office decides
    assert vc.held_refusal(vc.State.ACTIVE, used_here=True) is Code.VOUCHER_USED
    assert vc.held_refusal(vc.State.REDEEMED, used_here=False) is Code.VOUCHER_USED
    assert vc.held_refusal(vc.State.REFUNDED, used_here=False) is Code.VOUCHER_REFUNDED
    assert vc.held_refusal(vc.State.REFUNDED, used_here=True) is Code.VOUCHER_REFUNDED  # refunded at this till
    assert vc.state_of({"state": "active"}) is vc.State.ACTIVE and vc.state_of({"state": "x"}) is None


def test_offline_a_till_redeems_only_what_it_saw_sold_within_its_total() -> None:
    limits = pay.RiskLimits()
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 0, 3000, OFFLINE, limits) is None
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 2500, 3000, OFFLINE, limits) is Code.VOUCHER_LIMIT_OFFLINE
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 0, 0, OFFLINE, limits) is Code.VOUCHER_LIMIT_OFFLINE
    assert vc.offline_refusal(2500, None, 0, 3000, OFFLINE, limits) is Code.VOUCHER_NOT_ACTIVE
    assert vc.offline_refusal(2500, vc.State.STOCK, 0, 3000, OFFLINE, limits) is Code.VOUCHER_NOT_ACTIVE
    too_long = pay.OfflineState(limits.max_offline_s + 1, 600, 0, 0)
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 0, 3000, too_long, limits) is Code.OFFLINE_TOO_LONG
    never_synced = pay.OfflineState(600, None, 0, 0)
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 0, 3000, never_synced, limits) is Code.CLOCK_NOT_SYNCED
    wrong_clock = pay.OfflineState(600, 600, 0, 0, clock_offset_s=limits.max_clock_offset_s + 1)
    assert vc.offline_refusal(2500, vc.State.ACTIVE, 0, 3000, wrong_clock, limits) is Code.TILL_CLOCK_WRONG
    assert ONLINE.offline_for_s is None


def test_the_sell_command_never_loses_a_sold_vouchers_code_to_a_png_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tillpoint voucher sell --png FILE`: a directory that is not there sells nothing; a file that cannot be
    written once the voucher is sold still prints its code (the only copy), and says the PNG failed (exit 1)."""
    from typer.testing import CliRunner

    from terminal import cli

    sales: list[dict[str, object]] = []
    text = code()

    def api(
        cfg: object, method: str, path: str, body: dict[str, object] | None = None, request_id: str | None = None
    ) -> dict[str, object]:
        sales.append({**(body or {}), "request_id": request_id})
        return {
            "txn_id": "t-1",
            "seq": 1,
            "kind": "voucher_sale",
            "voucher_id": "v1",
            "voucher_kind": "amount",
            "value": 2500,
            "sku": "",
            "expires_at": 2_000_000_000,
            "offline": False,
            "code": text,
        }

    monkeypatch.setattr(cli, "_api", api)
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    nowhere = run(cli.app, ["voucher", "sell", "--value", "2500", "--png", str(tmp_path / "no-dir" / "v.png")])
    assert nowhere.exit_code == 1 and "nothing was sold" in nowhere.output and sales == []
    (tmp_path / "taken").mkdir()  # a directory where the file should go: the write fails after the sale
    sold = run(cli.app, ["voucher", "sell", "--value", "2500", "--png", str(tmp_path / "taken")])
    assert len(sales) == 1 and sold.exit_code == 1 and sales[0]["request_id"], sales  # a retry is answered once
    assert text in sold.stdout and "cannot be written" in sold.output and "Traceback" not in sold.output
