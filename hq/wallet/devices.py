"""Paying with the wallet: the browser's own device key, registered and removed through the member's session.

The wallet's pay page (``/wallet/pay``) makes an Ed25519 key with WebCrypto (the private half cannot be
read out of the browser) and registers its public half here; head office issues the same device
certificate the member-app simulator gets (``hq.payments.register_device``, the one path), and the page
makes one-time payment codes with it that tills verify offline (``terminal.payments``).

    register   a session begun less than ``FRESH_S`` ago (a sign-in code or joining, not a two-week old
               cookie: a thief holding only the cookie cannot make a paying device), at most
               ``MAX_DEVICES`` live devices a member
    remove     the member's own device onto the revocation list (``hq.payments.revoke_device``); signing
               out in the browser that holds it does it too, and signing out everywhere removes them all
    listed     the member's devices, live first

Refusals are ``signin.WalletRefused`` with a ``sync.protocol.ErrorCode``.
"""

from __future__ import annotations

from typing import Any

from hq import audit, payments
from hq.db.engine import Tx
from hq.store import HqStore
from hq.wallet import gifts, signin
from hq.wallet.signin import WalletRefused
from sync.protocol import ErrorCode
from terminal import payments as pay

FRESH_S = signin.FRESH_S
MAX_DEVICES = payments.MAX_DEVICES
REMOVED = "removed by the member in the wallet"


def listed(store: HqStore, member_id: str) -> list[dict[str, Any]]:
    """The member's device certificates (``revoked`` set on each), live ones first, newest first."""
    found = payments.devices(store, member_id)
    return sorted(found, key=lambda d: (bool(d["revoked"]), -int(d["issued_at"])))


def register(store: HqStore, member_id: str, session_started: int, device_key_hex: str, now: int) -> pay.DeviceCert:
    """A device certificate for the browser's key, or ``WalletRefused``."""
    signin.require_fresh(session_started, now, "Sign in again to set up paying on this phone.")
    try:
        return payments.register_device(store, member_id, device_key_hex, now=now)
    except payments.PaymentRefused as exc:
        if exc.code == ErrorCode.WALLET_TOO_MANY_DEVICES.value:
            raise WalletRefused(ErrorCode.WALLET_TOO_MANY_DEVICES, "Remove a phone you no longer use first.") from exc
        raise
    except ValueError as exc:
        raise WalletRefused(ErrorCode.INVALID_REQUEST, str(exc)) from exc


def remove_all(store: HqStore, member_id: str) -> int:
    """Revoke every live device of the member ("sign out on every device": a lost phone pays no more)."""
    return payments.revoke_devices(store, member_id, REMOVED)


def sign_out_everywhere(
    store: HqStore, member_id: str, now: int, *, by: str | None = None, reason: str = ""
) -> tuple[int, int]:
    """A lost or stolen phone: every paying phone of the member is revoked, every wallet session ends, every
    member-app token is deleted (a stolen app could otherwise register a new paying key) and every gift link
    nobody claimed yet ends, its coupon the member's again (a thief may have passed the coupons on); the
    member's own "sign out on every device", or an administrator's (``by``, with ``reason``: audited).
    Returns (sessions ended, phones revoked); doing it again ends and revokes nothing more. The sessions and
    tokens end first: a session still live while the phones are revoked could register one more."""

    def end(tx: Tx) -> tuple[int, int, int]:
        ended = signin.end_all_sessions(tx, member_id, now)
        tokens = payments.forget_tokens(tx, member_id)
        links = gifts.take_back_all(tx, member_id, now)  # links passed on from a stolen session die too
        return ended, tokens, links

    ended, tokens, links = store.db.transact(end)
    phones = remove_all(store, member_id)
    if by is not None:
        done = {"sessions": ended, "phones": phones, "app_tokens": tokens, "gift_links": links}
        store.db.transact(lambda tx: audit.append(tx, by, "wallet_sign_out", member_id, reason, done))
    return ended, phones


def remove(store: HqStore, member_id: str, cert_id_hex: str) -> str:
    """Revoke one of the member's own devices; another member's, or none, is ``device_cert_unknown``."""
    if not any(d["cert_id"] == cert_id_hex for d in payments.devices(store, member_id)):
        raise WalletRefused(ErrorCode.DEVICE_CERT_UNKNOWN, "No such phone of yours.")
    return payments.revoke_device(store, cert_id_hex, REMOVED)


__all__ = ["FRESH_S", "MAX_DEVICES", "listed", "register", "remove", "remove_all", "sign_out_everywhere"]
