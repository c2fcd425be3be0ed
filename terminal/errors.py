"""Errors of the terminal, with stable rejection codes shown to the cashier.

    TerminalError
     +-- Rejected(code, message)     a request the till refuses; nothing was written
     +-- StorageError                the local database failed (disk full, corrupt, locked)
     +-- ConfigError(key, expected)  a bad configuration value; start-up stops

Codes are a ``StrEnum``: their values are part of the API and never change meaning.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    UNKNOWN_CARD = "unknown_card"
    BLOCKED_CARD = "blocked_card"
    BLOCKED_MEMBER = "blocked_member"
    UNKNOWN_MEMBER = "unknown_member"
    EMPTY_BASKET = "empty_basket"
    INVALID_BASKET = "invalid_basket"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    ALREADY_VOIDED = "already_voided"
    NOT_A_SALE = "not_a_sale"
    STORAGE_FULL = "storage_full"
    STORAGE_FAILED = "storage_failed"
    NO_MEMBER = "no_member"
    READER_UNAVAILABLE = "reader_unavailable"


MESSAGES: dict[Code, str] = {
    Code.UNKNOWN_CARD: "This card is not registered to any member.",
    Code.BLOCKED_CARD: "This card has been blocked. Ask the customer for another card.",
    Code.BLOCKED_MEMBER: "This membership is blocked.",
    Code.UNKNOWN_MEMBER: "No such member.",
    Code.EMPTY_BASKET: "The basket is empty.",
    Code.INVALID_BASKET: "The basket has an invalid line.",
    Code.UNKNOWN_TRANSACTION: "No such transaction on this till.",
    Code.ALREADY_VOIDED: "This sale has already been voided.",
    Code.NOT_A_SALE: "Only a sale can be voided.",
    Code.STORAGE_FULL: "The till's disk is full: the sale was NOT recorded.",
    Code.STORAGE_FAILED: "The till could not record this: the sale was NOT recorded.",
    Code.NO_MEMBER: "No member identified for this sale.",
    Code.READER_UNAVAILABLE: "The card reader is not available.",
}


class TerminalError(Exception):
    """Base of every error the terminal raises on purpose."""


class Rejected(TerminalError):
    """A refusal with a stable code; the state is unchanged."""

    def __init__(self, code: Code, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES.get(code, code.value)
        super().__init__(f"{code.value}: {self.message}")


class StorageError(TerminalError):
    """The local database failed; callers turn it into STORAGE_FULL / STORAGE_FAILED."""


class ConfigError(TerminalError):
    """A configuration value is wrong; names the key and what was expected."""

    def __init__(self, key: str, expected: str) -> None:
        self.key = key
        self.expected = expected
        super().__init__(f"config key {key!r}: {expected}")
