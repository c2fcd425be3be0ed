"""Errors of the terminal, with stable rejection codes shown to the cashier.

    TerminalError
     +-- Rejected(code, message)     a request the till refuses; nothing was written
     +-- StorageError                the local database failed (disk full, corrupt, locked)
     +-- ConfigError(key, expected)  a bad configuration value; start-up stops (``SetupCode``: wrong for
                                     what the till holds)

Codes are a ``StrEnum``: their values are part of the API and never change meaning.
"""

from __future__ import annotations

import errno
from enum import StrEnum


class Code(StrEnum):
    UNKNOWN_CARD = "unknown_card"
    BLOCKED_CARD = "blocked_card"
    BLOCKED_MEMBER = "blocked_member"
    MEMBER_SPEND_HELD = "member_spend_held"
    UNKNOWN_MEMBER = "unknown_member"
    EMPTY_BASKET = "empty_basket"
    INVALID_BASKET = "invalid_basket"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    ALREADY_VOIDED = "already_voided"
    SALE_CHANGED = "sale_changed"
    NOT_A_SALE = "not_a_sale"
    STORAGE_FULL = "storage_full"
    STORAGE_FAILED = "storage_failed"
    STORAGE_NEWER = "storage_newer"
    NO_MEMBER = "no_member"
    READER_UNAVAILABLE = "reader_unavailable"
    UNKNOWN_COUPON = "unknown_coupon"
    COUPON_NOT_YET_VALID = "coupon_not_yet_valid"
    COUPON_EXPIRED = "coupon_expired"
    COUPON_WRONG_DAY = "coupon_wrong_day"
    COUPON_WRONG_TIME = "coupon_wrong_time"
    COUPON_WRONG_STORE = "coupon_wrong_store"
    COUPON_OTHER_MERCHANT = "coupon_other_merchant"
    COUPON_MEMBERS_ONLY = "coupon_members_only"
    COUPON_NOT_THIS_MEMBER = "coupon_not_this_member"
    COUPON_WRONG_TIER = "coupon_wrong_tier"
    COUPON_USED_UP = "coupon_used_up"
    COUPON_ALREADY_USED = "coupon_already_used"
    COUPON_ALLOCATION_USED = "coupon_allocation_used"
    COUPON_MIN_SPEND = "coupon_min_spend"
    COUPON_REQUIRED_ITEMS = "coupon_required_items"
    COUPON_NOT_APPLICABLE = "coupon_not_applicable"
    COUPON_NOT_COMBINABLE = "coupon_not_combinable"
    POINTS_NOT_WHOLE_UNITS = "points_not_whole_units"
    POINTS_BELOW_MINIMUM = "points_below_minimum"
    POINTS_ABOVE_MAXIMUM = "points_above_maximum"
    INSUFFICIENT_POINTS = "insufficient_points"
    REWARD_UNKNOWN = "reward_unknown"
    REWARD_ALLOCATION_USED = "reward_allocation_used"
    REWARD_NOT_RETURNABLE = "reward_not_returnable"
    POINTS_EXCEED_SALE = "points_exceed_sale"
    INVALID_REFUND = "invalid_refund"
    NOTHING_TO_REFUND = "nothing_to_refund"
    PAYMENT_CODE_MALFORMED = "payment_code_malformed"
    PAYMENT_CODE_FORGED = "payment_code_forged"
    PAYMENT_CODE_EXPIRED = "payment_code_expired"
    PAYMENT_CODE_REPLAYED = "payment_code_replayed"
    DEVICE_CERT_UNKNOWN = "device_cert_unknown"
    DEVICE_CERT_EXPIRED = "device_cert_expired"
    DEVICE_CERT_REVOKED = "device_cert_revoked"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INVALID_TENDER = "invalid_tender"
    OFFLINE_LIMIT_TRANSACTION = "offline_limit_transaction"
    OFFLINE_LIMIT_MEMBER_DAY = "offline_limit_member_day"
    OFFLINE_LIMIT_TERMINAL = "offline_limit_terminal"
    OFFLINE_TOO_LONG = "offline_too_long"
    CLOCK_NOT_SYNCED = "clock_not_synced"
    CARD_ALREADY_ENROLLED = "card_already_enrolled"
    REPLAYED_CARD = "replayed_card"
    FORGED_CARD = "forged_card"
    CARD_CANNOT_PAY = "card_cannot_pay"
    ATTESTED_HOLD_LIMIT = "attested_hold_limit"
    PROOF_NEEDED = "proof_needed"
    TILL_RECOVERING = "till_recovering"
    TILL_CLOCK_WRONG = "till_clock_wrong"
    MEMBER_CODE_UNSIGNED = "member_code_unsigned"
    MEMBER_CODE_FORGED = "member_code_forged"
    MEMBER_CODE_EXPIRED = "member_code_expired"
    PAYMENT_CARD_REFUSED = "payment_card_refused"
    FOREIGN_PAYMENT_CODE = "foreign_payment_code"
    MALFORMED_CODE = "malformed_code"
    UNKNOWN_CODE = "unknown_code"
    UNSUPPORTED_CODE_VERSION = "unsupported_code_version"
    SCANNER_UNAVAILABLE = "scanner_unavailable"
    SESSION_BUSY = "session_busy"
    NO_BASKET = "no_basket"
    PAIRING_REFUSED = "pairing_refused"
    MEMBER_MISMATCH = "member_mismatch"
    TEMPLATE_INVALID = "template_invalid"
    RECEIPT_UNREAD = "receipt_unread"
    RECEIPT_TOTAL_MISMATCH = "receipt_total_mismatch"
    RECEIPT_DAMAGED = "receipt_damaged"
    RECEIPT_ALREADY_USED = "receipt_already_used"
    RECEIPT_REPRINT = "receipt_reprint"
    RECEIPT_PARSE_FAILED = "receipt_parse_failed"
    RECEIPT_TOO_LARGE = "receipt_too_large"
    RECEIPT_TOO_OLD = "receipt_too_old"
    REQUEST_IN_FLIGHT = "request_in_flight"
    REQUEST_ID_USED = "request_id_used"
    REQUEST_ID_REUSED = "request_id_reused"
    TOPUP_NOT_ENABLED = "topup_not_enabled"
    TOPUP_BAD_AMOUNT = "topup_bad_amount"
    TOPUP_LIMIT_TRANSACTION = "topup_limit_transaction"
    TOPUP_LIMIT_DAY = "topup_limit_day"
    TOPUP_LIMIT_MEMBER_DAY = "topup_limit_member_day"
    TOPUP_LIMIT_OFFLINE = "topup_limit_offline"
    NOT_A_TOPUP = "not_a_topup"
    TOPUP_VOID_OTHER_DAY = "topup_void_other_day"
    TOPUP_VOID_SPENT = "topup_void_spent"
    # prepaid vouchers (terminal/vouchers.py, docs/stored-value.md "Vouchers")
    VOUCHER_MALFORMED = "voucher_malformed"
    VOUCHER_FORGED = "voucher_forged"
    VOUCHER_EXPIRED = "voucher_expired"
    VOUCHER_OUT_OF_STOCK = "voucher_out_of_stock"
    VOUCHER_NOT_SOLD = "voucher_not_sold"
    VOUCHER_NOT_ACTIVE = "voucher_not_active"
    VOUCHER_USED = "voucher_used"
    VOUCHER_REFUNDED = "voucher_refunded"
    VOUCHER_LIMIT_OFFLINE = "voucher_limit_offline"
    VOUCHER_OTHER_STORE = "voucher_other_store"
    VOUCHER_REFUND_OFFLINE = "voucher_refund_offline"
    VOUCHER_BAD_REQUEST = "voucher_bad_request"
    GIFT_CARD_NOT_SECURE = "gift_card_not_secure"
    GIFT_CARD_MEMBER_CARD = "gift_card_member_card"
    GIFT_CARD_ACTIVE = "gift_card_active"
    GIFT_CARD_UNKNOWN = "gift_card_unknown"
    GIFT_CARD_BLOCKED = "gift_card_blocked"
    GIFT_CARD_CLEARED = "gift_card_cleared"
    GIFT_CARD_EXPIRED = "gift_card_expired"
    GIFT_CARD_DORMANT = "gift_card_dormant"
    GIFT_CARD_INSUFFICIENT = "gift_card_insufficient"
    GIFT_CARD_BAD_AMOUNT = "gift_card_bad_amount"
    GIFT_CARD_LIMIT_OFFLINE = "gift_card_limit_offline"
    GIFT_REFUND_INVALID = "gift_refund_invalid"
    GIFT_CARD_NOT_TAPPED = "gift_card_not_tapped"


MESSAGES: dict[Code, str] = {
    Code.UNKNOWN_CARD: "This card is not registered to any member.",
    Code.BLOCKED_CARD: "This card has been blocked. Ask the customer for another card.",
    Code.BLOCKED_MEMBER: "This membership is blocked.",
    Code.MEMBER_SPEND_HELD: (
        "This member's points and balance are held while head office checks the membership: the sale can earn, "
        "not spend."
    ),
    Code.UNKNOWN_MEMBER: "No such member.",
    Code.EMPTY_BASKET: "The basket is empty.",
    Code.INVALID_BASKET: "The basket has an invalid line.",
    Code.UNKNOWN_TRANSACTION: "No such transaction on this till.",
    Code.ALREADY_VOIDED: "This sale has already been voided.",
    Code.SALE_CHANGED: "Another return of this sale was rung at the same moment: look the sale up again.",
    Code.NOT_A_SALE: "Only a sale can be voided.",
    Code.STORAGE_FULL: "The till's disk is full: the sale was NOT recorded.",
    Code.STORAGE_FAILED: "The till could not record this: the sale was NOT recorded.",
    Code.STORAGE_NEWER: "The till's database comes from a newer tillpoint: run that release or restore its backup.",
    Code.NO_MEMBER: "No member identified for this sale.",
    Code.READER_UNAVAILABLE: "The card reader is not available.",
    Code.UNKNOWN_COUPON: "No such coupon.",
    Code.COUPON_NOT_YET_VALID: "This coupon is not valid yet.",
    Code.COUPON_EXPIRED: "This coupon has expired.",
    Code.COUPON_WRONG_DAY: "This coupon is not valid today.",
    Code.COUPON_WRONG_TIME: "This coupon is not valid at this time of day.",
    Code.COUPON_WRONG_STORE: "This coupon is not valid in this store.",
    Code.COUPON_OTHER_MERCHANT: "This coupon belongs to another merchant of the chain.",
    Code.COUPON_MEMBERS_ONLY: "This coupon is for members: identify the member first.",
    Code.COUPON_NOT_THIS_MEMBER: "This coupon belongs to another member.",
    Code.COUPON_WRONG_TIER: "This coupon is not for this member's tier.",
    Code.COUPON_USED_UP: "This coupon has been used as often as it may be.",
    Code.COUPON_ALREADY_USED: "This member has already used this coupon.",
    Code.COUPON_ALLOCATION_USED: "This till has redeemed all the units of this offer head office allotted it.",
    Code.COUPON_MIN_SPEND: "The basket does not reach this coupon's minimum spend.",
    Code.COUPON_REQUIRED_ITEMS: "The basket lacks the items this coupon needs.",
    Code.COUPON_NOT_APPLICABLE: "Nothing in the basket is eligible for this coupon.",
    Code.COUPON_NOT_COMBINABLE: "This coupon cannot be combined with the better coupon applied.",
    Code.POINTS_NOT_WHOLE_UNITS: "Points are paid in whole redemption units.",
    Code.POINTS_BELOW_MINIMUM: "Fewer points than the minimum that can be paid.",
    Code.POINTS_ABOVE_MAXIMUM: "More points than may be paid in one sale.",
    Code.INSUFFICIENT_POINTS: "The member does not have enough spendable points.",
    Code.REWARD_UNKNOWN: "This till does not offer that reward (not in the catalogue head office sent, or withdrawn).",
    Code.REWARD_ALLOCATION_USED: "This till has sold all the units of this reward head office allotted it.",
    Code.REWARD_NOT_RETURNABLE: (
        "The member keeps this reward (a coupon or a partner's code): refund the other lines; only head office"
        " can give its points back."
    ),
    Code.POINTS_EXCEED_SALE: "Points may not pay that much of this sale.",
    Code.INVALID_REFUND: "The refund does not match the sale's lines.",
    Code.NOTHING_TO_REFUND: "Everything of this sale has already been refunded.",
    Code.PAYMENT_CODE_MALFORMED: "This is not a valid payment code.",
    Code.PAYMENT_CODE_FORGED: "This payment code's signature is wrong: do not accept it.",
    Code.PAYMENT_CODE_EXPIRED: "This payment code has expired: ask for a fresh one.",
    Code.PAYMENT_CODE_REPLAYED: "This payment code was already used: ask for a fresh one.",
    Code.DEVICE_CERT_UNKNOWN: "The member's device is not registered on this till yet.",
    Code.DEVICE_CERT_EXPIRED: "The member's device registration has expired.",
    Code.DEVICE_CERT_REVOKED: "The member's device has been revoked.",
    Code.INSUFFICIENT_BALANCE: "The member's stored-value balance is too low.",
    Code.INVALID_TENDER: "The payment parts do not add up to what is due.",
    Code.OFFLINE_LIMIT_TRANSACTION: "Too large to pay from the member's account while offline.",
    Code.OFFLINE_LIMIT_MEMBER_DAY: "The member's offline spending limit for today is reached.",
    Code.OFFLINE_LIMIT_TERMINAL: "This till's offline payment limit is reached until it syncs.",
    Code.OFFLINE_TOO_LONG: "The till has been offline too long to take account payments.",
    Code.CLOCK_NOT_SYNCED: "The till's clock has not been checked recently: no offline payments.",
    Code.CARD_ALREADY_ENROLLED: "This card already belongs to a member.",
    Code.REPLAYED_CARD: "This card's secure message was already used: tap the card again.",
    Code.FORGED_CARD: "This card failed its authenticity check: do not accept it.",
    Code.CARD_CANNOT_PAY: "This card can identify the member and earn points, not pay: use a secure card or code.",
    Code.ATTESTED_HOLD_LIMIT: "Head office holds as much as it allows this till on card reads it cannot check: pay "
    "by the member's code, or once this till's sales have reached head office.",
    Code.TILL_RECOVERING: "This till's database was damaged and rebuilt: it records sales again once it has "
    "reached head office, which says where its journal stands. Nothing was recorded.",
    Code.TILL_CLOCK_WRONG: "This till's clock is wrong (head office's time differs): set the time on this PC, "
    "then try again.",
    Code.PROOF_NEEDED: "Spending points, balance or the member's own coupons needs the member's proof: a tap of "
    "their secure card, or the code their app shows. Knowing the member number is not enough.",
    Code.MEMBER_CODE_UNSIGNED: "This member code is of an old, unsigned kind: ask the member to show the code in "
    "their app, or type the member number.",
    Code.MEMBER_CODE_FORGED: "This member code's signature is wrong: do not accept it.",
    Code.MEMBER_CODE_EXPIRED: "This member code is too old (a screenshot?): ask the member to show the live code "
    "in their wallet.",
    Code.PAYMENT_CARD_REFUSED: "That was a bank card number: the till does not take card numbers. Nothing was kept.",
    Code.FOREIGN_PAYMENT_CODE: "That is another wallet's payment code (EMV, Alipay, WeChat Pay): not taken here. Nothing was kept.",
    Code.MALFORMED_CODE: "This code is damaged or incomplete: scan it again.",
    Code.UNKNOWN_CODE: "This code is not one of ours.",
    Code.UNSUPPORTED_CODE_VERSION: "This code is newer than this till understands: the till needs an update.",
    Code.SCANNER_UNAVAILABLE: "The code scanner is not available.",
    Code.SESSION_BUSY: "That cannot be done at this step of the sale.",
    Code.NO_BASKET: "No total yet: the POS has not sent the basket, or type the total first.",
    Code.PAIRING_REFUSED: "That pairing code is wrong or has expired: ask for a new code on the till.",
    Code.MEMBER_MISMATCH: "The member named is not the member of the last tap: name one or the other.",
    Code.TEMPLATE_INVALID: "This receipt template is not valid.",
    Code.RECEIPT_UNREAD: "No receipt template read this receipt (no items or no total): it is kept and flagged.",
    Code.RECEIPT_TOTAL_MISMATCH: "The receipt's items less its discounts do not come to its total: it is kept and flagged.",
    Code.RECEIPT_DAMAGED: "Part of this receipt's print stream was lost: it is kept and flagged.",
    Code.RECEIPT_ALREADY_USED: "This receipt is already attached to a sale.",
    Code.RECEIPT_REPRINT: "A receipt of this number was already sold at this store: a reprint (a copy) earns nothing.",
    Code.RECEIPT_PARSE_FAILED: "tillpoint failed to parse this receipt's print stream (a bug): it is kept and flagged.",
    Code.RECEIPT_TOO_LARGE: "This receipt has more lines than one receipt may hold: its first bytes are kept and flagged.",
    Code.RECEIPT_TOO_OLD: "This receipt was printed longer ago than a receipt may earn (a reprint of an old sale).",
    Code.REQUEST_IN_FLIGHT: "A sale with this request_id was recorded at the same moment: ask again for its receipt.",
    Code.REQUEST_ID_USED: "This request_id already names another kind of request: give each request an id of its own.",
    Code.REQUEST_ID_REUSED: "This request_id already names another request: send a request again as it was, "
    "and give each new request an id of its own.",
    Code.TOPUP_NOT_ENABLED: "Head office has not enabled this till to sell top-ups.",
    Code.TOPUP_BAD_AMOUNT: "A top-up is an amount above zero.",
    Code.TOPUP_LIMIT_TRANSACTION: "Too large for one top-up at this till.",
    Code.TOPUP_LIMIT_DAY: "This till's top-up limit for today is reached.",
    Code.TOPUP_LIMIT_MEMBER_DAY: "This member's top-up limit at this till for today is reached.",
    Code.TOPUP_LIMIT_OFFLINE: "This till's offline top-up limit is reached until it syncs.",
    Code.NOT_A_TOPUP: "No top-up of that number on this till.",
    Code.TOPUP_VOID_OTHER_DAY: "A top-up can be voided only on the business day it was sold.",
    Code.TOPUP_VOID_SPENT: "The member has already spent part of this top-up: it cannot be voided.",
    Code.VOUCHER_MALFORMED: "This voucher code is damaged or incomplete: scan it again or type it whole.",
    Code.VOUCHER_FORGED: "This voucher was not issued by head office.",
    Code.VOUCHER_EXPIRED: "This voucher has expired.",
    Code.VOUCHER_OUT_OF_STOCK: "This till holds no voucher of that kind to sell: head office issues its stock.",
    Code.VOUCHER_NOT_SOLD: "This voucher was never sold: it is not valid yet.",
    Code.VOUCHER_NOT_ACTIVE: (
        "Head office is unreachable and this till has not seen this voucher sold yet: try again once the till is online."
    ),
    Code.VOUCHER_USED: "This voucher has already been used.",
    Code.VOUCHER_REFUNDED: "This voucher was refunded: it is no longer valid.",
    Code.VOUCHER_LIMIT_OFFLINE: "This till's offline voucher limit is reached until it syncs.",
    Code.VOUCHER_OTHER_STORE: "A voucher is refunded only at the store that sold it.",
    Code.VOUCHER_REFUND_OFFLINE: "A voucher is refunded only while head office is reachable.",
    Code.VOUCHER_BAD_REQUEST: "Name a value or a product (sku) for the voucher.",
    Code.GIFT_CARD_NOT_SECURE: "Only a secure card (NTAG 424 DNA or FeliCa Lite-S) can be a gift card.",
    Code.GIFT_CARD_MEMBER_CARD: "This card is a member's card: it cannot be sold as a gift card.",
    Code.GIFT_CARD_ACTIVE: "This gift card is already active: load it instead.",
    Code.GIFT_CARD_UNKNOWN: "This card is not an active gift card.",
    Code.GIFT_CARD_BLOCKED: "This gift card is blocked.",
    Code.GIFT_CARD_CLEARED: "This gift card was cleared: it holds no value until it is sold again.",
    Code.GIFT_CARD_EXPIRED: "This gift card has expired.",
    Code.GIFT_CARD_DORMANT: "This gift card was unused for a long time: it pays only while head office answers.",
    Code.GIFT_CARD_INSUFFICIENT: "The gift card's balance does not cover this amount.",
    Code.GIFT_CARD_BAD_AMOUNT: "Give an amount above zero in minor units.",
    Code.GIFT_CARD_LIMIT_OFFLINE: "This till's offline limit for gift cards is reached until it syncs.",
    Code.GIFT_REFUND_INVALID: "Only what a gift card paid at this till, less earlier refunds, goes back on it.",
    Code.GIFT_CARD_NOT_TAPPED: "Tap the gift card on the reader first.",
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


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""The errno values of a write that found no room: a full disk, a quota, a file at its size limit."""


def storage_refusal(exc: OSError, doing: str) -> Rejected:
    """A file of the till's data directory that could not be written, as a refusal with a stable code
    (``storage_full`` for a full disk or quota, else ``storage_failed``) naming what was being done and why
    (a read-only file system, a file owned by another user)."""
    full = exc.errno in DISK_FULL
    why = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return Rejected(Code.STORAGE_FULL if full else Code.STORAGE_FAILED, f"could not {doing}: {why}{where}")


class SetupCode(StrEnum):
    """Why a till is set up wrong for what it holds: ``tillpoint run`` refuses to start and ``tillpoint doctor``
    fails with these (docs/install.md, "A till set up wrong"). Values never change meaning."""

    CONFIG_INCOMPLETE = "config_incomplete"
    """A key the file leaves out would take a default that contradicts the till's own data (a file cut short)."""
    STORE_MISMATCH = "store_mismatch"
    """``terminal.store_id`` is not the store head office registered this terminal for."""
    ENROL_WRONG_STORE = "enrol_wrong_store"
    """The enrolment code is for another store than ``terminal.store_id``."""
    CARD_KEY_MISMATCH = "card_key_mismatch"
    """The till's card-hash key is not the one head office hashes cards with."""


class ConfigError(TerminalError):
    """A configuration value is wrong; names the key and what was expected, and a ``SetupCode`` when the value
    is wrong for what the till holds rather than in itself (then read as ``code: config key ...``)."""

    def __init__(self, key: str, expected: str, code: SetupCode | None = None) -> None:
        self.key = key
        self.expected = expected
        self.code = code
        said = f"config key {key!r}: {expected}"
        super().__init__(f"{code.value}: {said}" if code else said)


class ConfigFileError(ConfigError):
    """A file the config names (a receipt template, a key file, a CA bundle, the head-office token file) is missing,
    cannot be read or does not hold what it should. No restart mends it: ``tillpoint run`` exits 2, as for a config
    that does not validate, and the unit is not started again every 2 s (``RestartPreventExitStatus=2``)."""


class ApiUrlInvalid(TerminalError):
    """The daemon's note of where its local API listens (``api.url`` in the till's data directory) is not an address
    (cut short by a crash, edited by hand): the commands cannot reach the daemon through it, and send nothing."""

    code = "api_url_invalid"

    def __init__(self, path: object, why: str) -> None:
        self.path = path
        super().__init__(
            f"{path} does not hold the local API's address ({why}): restart the daemon (it writes the file at "
            "start), or delete the file to use the config's [api] address"
        )


class PortBusy(TerminalError):
    """A TCP port another process already listens on: nothing of ours was started on it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(f"{host}:{port} is already in use by another program")
