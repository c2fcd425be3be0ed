"""The till's online confirmation of spending (``Service.confirm_online``).

While the till is online, head office confirms a spend authorised by a payment code or a secure
card before the till approves it (``POST /v1/payments/confirm``, a ``sync.protocol.ConfirmRequest``):
it records the code id, or the card's read counter, under a unique constraint and checks the
member's balance, so a code or a card message replayed at another till that is online is refused
at once, not only flagged later. Errors are translated here::

    head office refuses (409/404 with a payment code)  -> terminal.errors.Rejected(that code)
    head office unreachable, failing (5xx), or an auth
    or protocol refusal it should not have given        -> False: the till applies its offline rules

A voucher's use (``voucher_confirmer``, ``POST /v1/vouchers/confirm``) is confirmed the same way: head
office records the voucher's one use (docs/stored-value.md, "Vouchers"); and a gift card payment
(``gift_confirmer``, ``POST /v1/giftcards/confirm``): head office checks the card, uses its tap's read
counter and holds the amount back from its balance (docs/giftcards.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sync.client import HqRejected, SyncClient, SyncError
from sync.protocol import ConfirmRequest, GiftConfirmRequest, VoucherConfirmRequest
from terminal.errors import Code, Rejected

log = logging.getLogger("tillpoint.sync")

CONFIRM_TIMEOUT = 3.0
"""Seconds the cashier waits for head office before the till falls back to its offline rules."""
REFUSALS = frozenset(
    {
        Code.PAYMENT_CODE_REPLAYED,
        Code.PAYMENT_CODE_FORGED,
        Code.PAYMENT_CODE_EXPIRED,
        Code.DEVICE_CERT_UNKNOWN,
        Code.DEVICE_CERT_REVOKED,
        Code.DEVICE_CERT_EXPIRED,
        Code.INSUFFICIENT_BALANCE,
        Code.UNKNOWN_MEMBER,
        Code.BLOCKED_MEMBER,
        Code.MEMBER_SPEND_HELD,
        Code.REPLAYED_CARD,
        Code.FORGED_CARD,
        Code.CARD_CANNOT_PAY,
        Code.ATTESTED_HOLD_LIMIT,
    }
)


def confirmer(client: SyncClient, timeout: float = CONFIRM_TIMEOUT) -> Callable[[dict[str, Any]], bool]:
    """A ``Service.confirm_online`` hook over the till's head-office client."""

    def body(request: dict[str, Any]) -> dict[str, Any]:
        return ConfirmRequest.model_validate(request).model_dump(mode="json", exclude_none=True)

    return _confirming(client, "/v1/payments/confirm", body, REFUSALS, "payment", timeout)


VOUCHER_REFUSALS = frozenset(
    {
        Code.VOUCHER_MALFORMED,
        Code.VOUCHER_FORGED,
        Code.VOUCHER_EXPIRED,
        Code.VOUCHER_NOT_SOLD,
        Code.VOUCHER_USED,
        Code.VOUCHER_REFUNDED,
        Code.VOUCHER_OTHER_STORE,
    }
)


def voucher_confirmer(client: SyncClient, timeout: float = CONFIRM_TIMEOUT) -> Callable[[dict[str, Any]], bool]:
    """A ``Service.confirm_voucher`` hook over the till's head-office client."""

    def body(request: dict[str, Any]) -> dict[str, Any]:
        return VoucherConfirmRequest.model_validate(request).model_dump(mode="json")

    return _confirming(client, "/v1/vouchers/confirm", body, VOUCHER_REFUSALS, "voucher", timeout)


GIFT_REFUSALS = frozenset(
    {
        Code.GIFT_CARD_UNKNOWN,
        Code.GIFT_CARD_BLOCKED,
        Code.GIFT_CARD_CLEARED,
        Code.GIFT_CARD_EXPIRED,
        Code.GIFT_CARD_INSUFFICIENT,
        Code.REPLAYED_CARD,
        Code.FORGED_CARD,
        Code.ATTESTED_HOLD_LIMIT,
    }
)


def gift_confirmer(client: SyncClient, timeout: float = CONFIRM_TIMEOUT) -> Callable[[dict[str, Any]], bool]:
    """A ``Service.confirm_gift`` hook over the till's head-office client."""

    def body(request: dict[str, Any]) -> dict[str, Any]:
        return GiftConfirmRequest.model_validate(request).model_dump(mode="json", exclude_none=True)

    return _confirming(client, "/v1/giftcards/confirm", body, GIFT_REFUSALS, "gift card", timeout)


def _confirming(
    client: SyncClient,
    path: str,
    body: Callable[[dict[str, Any]], dict[str, Any]],
    refusals: frozenset[Code],
    what: str,
    timeout: float,
) -> Callable[[dict[str, Any]], bool]:
    """One confirmation hook: True when head office confirmed, ``Rejected`` with its code when it refused for
    one of ``refusals``, False (the offline rules apply) when it did not answer or refused oddly."""

    def confirm(request: dict[str, Any]) -> bool:
        try:
            client._call("POST", path, json=body(request), timeout=timeout)
        except HqRejected as exc:
            refusal = _refusal(exc.code, refusals)
            if refusal is None:
                log.warning("%s confirmation refused oddly (%s); offline rules apply", what, exc)
                return False
            raise Rejected(refusal, f"head office refused it: {exc.message}") from exc  # the code is said once
        except SyncError as exc:
            log.info("%s confirmation failed (%s); offline rules apply", what, exc)
            return False
        return True

    return confirm


def _refusal(code: str, known: frozenset[Code] = REFUSALS) -> Code | None:
    try:
        found = Code(code)
    except ValueError:
        return None
    return found if found in known else None
