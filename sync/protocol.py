"""Wire models of the store <-> head-office protocol, shared by both ends. Pure (pydantic only).

Version 1, JSON over HTTPS (docs/protocol.md has the whole table, the OpenAPI document is served at
``/v1/openapi.json``). Terminal calls carry ``Authorization: Bearer <terminal token>`` and
``X-Tillpoint-Clock: <the terminal's UTC time>``:

    POST /v1/enrol                      EnrolRequest  -> EnrolResponse   (one-time code, no token)
    POST /v1/credentials/rotate                       -> EnrolResponse   (new token; old one valid until first use)
    POST /v1/journal   (gzip body)      PushRequest   -> PushResponse
    GET  /v1/changes?since=N&limit=M                  -> ChangesPage     (members, cards, rules, docs, keys, revocations, device certificates, tombstones)
    GET  /v1/snapshot                                 -> SnapshotInfo    (bootstrap: version + row counts)
    GET  /v1/snapshot/{kind}?after=K&limit=M          -> SnapshotPage    (rows by primary key)
    POST /v1/eod                        EodReport     -> EodResult
    POST /v1/terminal/health            TillHealth    -> 204             (protocol 2: the fleet view)
    GET  /v1/flags                                    -> list[ReconItem] (what head office flagged for this terminal)

Push is idempotent: an entry is stored once per (terminal_id, seq) and once per txn_id; a retried
batch gets the same answer. ``acked_seq`` is the highest seq such that every seq from 1 to it is
stored, so the terminal can mark exactly those entries as pushed and resend the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from terminal.canonical import canonical_json as canonical_json
from terminal.canonical import canonical_text as canonical_text
from terminal.money import MAX_AMOUNT as MAX_AMOUNT

PROTOCOL_VERSION = 4
"""2 added the till's health report (``POST /v1/terminal/health``); 3 a return's ``gift_cards`` and
``voucher_kept`` (a head office of protocol 2 refuses an entry carrying them as malformed: ``entry_protocol``)."""
SUPPORTED_PROTOCOLS = frozenset({1, 2, 3, 4})
"""What head office accepts: its own version and those before, so tills can be upgraded after it."""
MAX_BATCH = 1000
MAX_SEQ = 2**53
"""The largest sequence number or version anything carries (far beyond any till's life)."""
CLOCK_HEADER = "X-Tillpoint-Clock"
SNAPSHOT_KINDS = (
    "members",
    "cards",
    "rules",
    "rule_docs",
    "coupons",
    "keys",
    "revocations",
    "device_certs",
    "vouchers",
    "gift_cards",
)


class _Model(BaseModel):
    """Every wire model: its validator is built when first used, not when this module is imported."""

    model_config = ConfigDict(defer_build=True)


class ErrorCode(StrEnum):
    """Every ``code`` an ``ErrorBody`` can carry, with its HTTP status in ``ERROR_STATUS``."""

    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    BAD_ENCODING = "bad_encoding"
    UNAUTHORIZED = "unauthorized"
    CREDENTIAL_REVOKED = "credential_revoked"
    ENROL_CODE_INVALID = "enrol_code_invalid"
    ENROL_WRONG_STORE = "enrol_wrong_store"
    WRONG_TERMINAL = "wrong_terminal"
    UNKNOWN_TERMINAL = "unknown_terminal"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SEQ_CONFLICT = "seq_conflict"
    TXN_ID_TAKEN = "txn_id_taken"
    BODY_TOO_LARGE = "body_too_large"
    PUSH_LIMITED = "push_limited"
    INVALID_REQUEST = "invalid_request"
    INTERNAL = "internal"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    HTTP_ERROR = "http_error"
    CLAIM_FORGED = "claim_forged"
    CLAIM_EXPIRED = "claim_expired"
    CLAIM_USED = "claim_used"
    CLAIM_UNKNOWN_SALE = "claim_unknown_sale"
    CONSENT_REQUIRED = "consent_required"
    # member payments: a refused online confirmation carries the till's own rejection code
    PAYMENT_CODE_REPLAYED = "payment_code_replayed"
    PAYMENT_CODE_FORGED = "payment_code_forged"
    PAYMENT_CODE_EXPIRED = "payment_code_expired"
    DEVICE_CERT_UNKNOWN = "device_cert_unknown"
    DEVICE_CERT_REVOKED = "device_cert_revoked"
    DEVICE_CERT_EXPIRED = "device_cert_expired"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    UNKNOWN_MEMBER = "unknown_member"
    BLOCKED_MEMBER = "blocked_member"
    MEMBER_SPEND_HELD = "member_spend_held"
    REPLAYED_CARD = "replayed_card"
    FORGED_CARD = "forged_card"
    CARD_CANNOT_PAY = "card_cannot_pay"
    ATTESTED_HOLD_LIMIT = "attested_hold_limit"
    # member profiles (head office's admin routes and the join page)
    BAD_BIRTHDAY = "bad_birthday"
    UNKNOWN_ATTRIBUTE = "unknown_attribute"
    BAD_ATTRIBUTE_VALUE = "bad_attribute_value"
    BAD_CONSENT = "bad_consent"
    # segments (hq/segments.py, docs/segments.md): why a definition was refused
    SEGMENT_MALFORMED = "segment_malformed"
    SEGMENT_UNKNOWN_KIND = "segment_unknown_kind"
    SEGMENT_TOO_DEEP = "segment_too_deep"
    SEGMENT_TOO_LARGE = "segment_too_large"
    SEGMENT_BAD_WINDOW = "segment_bad_window"
    SEGMENT_BAD_RANGE = "segment_bad_range"
    SEGMENT_BAD_VALUE = "segment_bad_value"
    SEGMENT_BAD_DAY = "segment_bad_day"
    CAMPAIGN_MALFORMED = "campaign_malformed"
    CAMPAIGN_ENDED = "campaign_ended"
    CAMPAIGN_QUANTITY_LOCKED = "campaign_quantity_locked"
    # flash-drop quantity pools (hq/pools.py): why creating or changing a pool was refused
    POOL_INVALID = "pool_invalid"
    POOL_BELOW_ALLOCATED = "pool_below_allocated"
    WALLET_CODE_WRONG = "wallet_code_wrong"
    WALLET_CODE_EXPIRED = "wallet_code_expired"
    WALLET_TOO_MANY_ATTEMPTS = "wallet_too_many_attempts"
    WALLET_GUESSES_LIMITED = "wallet_guesses_limited"
    WALLET_RATE_LIMITED = "wallet_rate_limited"
    WALLET_BAD_CONTACT = "wallet_bad_contact"
    WALLET_CONTACT_TAKEN = "wallet_contact_taken"
    WALLET_SIGN_IN_REQUIRED = "wallet_sign_in_required"
    WALLET_BAD_ORIGIN = "wallet_bad_origin"
    WALLET_SIGN_IN_AGAIN = "wallet_sign_in_again"
    WALLET_TOO_MANY_DEVICES = "wallet_too_many_devices"
    GIFT_UNKNOWN = "gift_unknown"
    GIFT_NOT_TRANSFERABLE = "gift_not_transferable"
    GIFT_USED_UP = "gift_used_up"
    GIFT_COUPON_USED = "gift_coupon_used"
    GIFT_EXPIRED = "gift_expired"
    GIFT_OFFERED = "gift_offered"
    GIFT_CLAIMED = "gift_claimed"
    GIFT_OWN = "gift_own"
    GIFT_TOO_MANY = "gift_too_many"
    # top-ups at the till (docs/stored-value.md): an administrator's per-till policy refused
    TOPUP_POLICY_INVALID = "topup_policy_invalid"
    CHECKIN_FORGED = "checkin_forged"
    CHECKIN_EXPIRED = "checkin_expired"
    CHECKIN_USED = "checkin_used"
    # settlement (hq/periods.py, hq/settlement.py, docs/settlement.md): why a period or statement was refused
    BAD_PERIOD = "bad_period"
    PERIOD_NOT_OVER = "period_not_over"
    PERIOD_CLOSED = "period_closed"
    EARLIER_PERIOD_OPEN = "earlier_period_open"
    UNKNOWN_MERCHANT = "unknown_merchant"
    BAD_PERIOD_LENGTH = "bad_period_length"
    PERIOD_IN_USE = "period_in_use"
    # prepaid vouchers (hq/vouchers.py, docs/stored-value.md "Vouchers"): a refused confirmation carries the
    # till's own rejection code; an administrator's issue refused
    VOUCHER_MALFORMED = "voucher_malformed"
    VOUCHER_FORGED = "voucher_forged"
    VOUCHER_EXPIRED = "voucher_expired"
    VOUCHER_NOT_SOLD = "voucher_not_sold"
    VOUCHER_USED = "voucher_used"
    VOUCHER_REFUNDED = "voucher_refunded"
    VOUCHER_OTHER_STORE = "voucher_other_store"
    VOUCHER_ISSUE_INVALID = "voucher_issue_invalid"
    # gift cards (hq/giftcards.py, docs/giftcards.md): a refused confirmation carries the till's own code
    GIFT_CARD_UNKNOWN = "gift_card_unknown"
    GIFT_CARD_BLOCKED = "gift_card_blocked"
    GIFT_CARD_CLEARED = "gift_card_cleared"
    GIFT_CARD_EXPIRED = "gift_card_expired"
    GIFT_CARD_INSUFFICIENT = "gift_card_insufficient"
    GIFT_CARD_INVALID = "gift_card_invalid"
    GIFT_CARD_HELD = "gift_card_held"
    SUN_KEYS_MISSING = "sun_keys_missing"
    # the rewards catalogue (hq/rewards.py, docs/rewards.md)
    REWARD_INVALID = "reward_invalid"
    REWARD_UNKNOWN = "reward_unknown"
    REWARD_SOLD_OUT = "reward_sold_out"
    REWARD_NOT_REFUNDABLE = "reward_not_refundable"
    INSUFFICIENT_POINTS = "insufficient_points"
    CLOSE_DAMAGED = "close_damaged"
    CLOCK_SUSPECT = "clock_suspect"
    # earning rules and coupons (hq/masterdata.py, docs/editors.md)
    DOCUMENT_INVALID = "document_invalid"
    DOCUMENT_CHANGED = "document_changed"
    REASON_REQUIRED = "reason_required"
    # an administrator's release of a hold (hq/payments.py ``release_hold``, docs/payments.md)
    NO_HOLD = "no_hold"
    HOLD_ENTRY_ARRIVED = "hold_entry_arrived"


ERROR_STATUS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.UNSUPPORTED_PROTOCOL: (400, "the request's protocol version is not one this server speaks"),
    ErrorCode.BAD_ENCODING: (400, "Content-Encoding is not gzip/identity, or the gzip body is corrupt"),
    ErrorCode.UNAUTHORIZED: (401, "missing, malformed or unknown bearer token"),
    ErrorCode.CREDENTIAL_REVOKED: (401, "this terminal's credential was revoked at head office"),
    ErrorCode.ENROL_CODE_INVALID: (401, "the enrolment code is unknown, expired or already used"),
    ErrorCode.ENROL_WRONG_STORE: (409, "the enrolment code is for another store than the till named; it stays unused"),
    ErrorCode.WRONG_TERMINAL: (403, "the body or an entry names another terminal than the token's"),
    ErrorCode.UNKNOWN_TERMINAL: (403, "the token's terminal has no registration"),
    ErrorCode.FORBIDDEN: (403, "an administrator token is needed"),
    ErrorCode.NOT_FOUND: (404, "no such path or item"),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "wrong HTTP method"),
    ErrorCode.SEQ_CONFLICT: (
        409,
        "an entry reuses a stored (terminal, seq), or a txn_id of its own terminal, with other content; nothing stored",
    ),
    ErrorCode.TXN_ID_TAKEN: (
        409,
        "an entry names a txn_id head office holds another terminal's entry under (its body names the entry's seq "
        "and txn_id and the terminal: held_by); nothing stored",
    ),
    ErrorCode.BODY_TOO_LARGE: (413, "the (decompressed) body is larger than head office accepts"),
    ErrorCode.PUSH_LIMITED: (
        429,
        "the terminal's entries stored today reached head office's daily bound: nothing was stored; send them "
        "again after Retry-After seconds",
    ),
    ErrorCode.INVALID_REQUEST: (422, "the body or a parameter does not match the schema"),
    ErrorCode.INTERNAL: (500, "a bug at head office; retry later"),
    ErrorCode.STORAGE_UNAVAILABLE: (503, "head office's database failed; retry later"),
    ErrorCode.HTTP_ERROR: (400, "any other HTTP-level refusal"),
    ErrorCode.CLAIM_FORGED: (400, "the claim code is malformed or not signed by one of the chain's tills"),
    ErrorCode.CLAIM_EXPIRED: (410, "the claim code has expired"),
    ErrorCode.CLAIM_USED: (409, "the sale of this claim code was already claimed or belongs to a member"),
    ErrorCode.CLAIM_UNKNOWN_SALE: (404, "the claim code's sale has not reached head office yet"),
    ErrorCode.CONSENT_REQUIRED: (422, "joining needs explicit consent to the current wording"),
    ErrorCode.PAYMENT_CODE_REPLAYED: (409, "the payment code was already confirmed or used"),
    ErrorCode.PAYMENT_CODE_FORGED: (409, "the payment code does not belong to that member or device"),
    ErrorCode.PAYMENT_CODE_EXPIRED: (409, "the payment code is outside its time window"),
    ErrorCode.DEVICE_CERT_UNKNOWN: (409, "no such device certificate"),
    ErrorCode.DEVICE_CERT_REVOKED: (409, "the member's device was revoked"),
    ErrorCode.DEVICE_CERT_EXPIRED: (409, "the device certificate expired"),
    ErrorCode.INSUFFICIENT_BALANCE: (409, "the member's balance does not cover the payment"),
    ErrorCode.UNKNOWN_MEMBER: (404, "no such member"),
    ErrorCode.BLOCKED_MEMBER: (409, "the member is blocked"),
    ErrorCode.MEMBER_SPEND_HELD: (409, "the member's id is contested: spending is held until staff settle it"),
    ErrorCode.REPLAYED_CARD: (409, "this secure card message (its read counter) was already used in the chain"),
    ErrorCode.FORGED_CARD: (409, "the secure card message does not verify with the chain's keys"),
    ErrorCode.CARD_CANNOT_PAY: (409, "the card is not this member's, or cannot prove itself"),
    ErrorCode.ATTESTED_HOLD_LIMIT: (
        409,
        "this till's confirmations on card reads head office cannot check, not arrived yet, would hold more than "
        "attested_stored_value_per_day",
    ),
    ErrorCode.BAD_BIRTHDAY: (422, "the birthday is not a date (YYYY-MM-DD), or is in the future"),
    ErrorCode.UNKNOWN_ATTRIBUTE: (422, "the chain does not collect a profile attribute of that name"),
    ErrorCode.BAD_ATTRIBUTE_VALUE: (422, "the value is not one the chain allows for that attribute"),
    ErrorCode.BAD_CONSENT: (422, "the consent names no known channel or no wording version"),
    ErrorCode.SEGMENT_MALFORMED: (422, "the segment definition is not the definition language (a field, a type)"),
    ErrorCode.SEGMENT_UNKNOWN_KIND: (422, "a condition's kind is not one the definition language has"),
    ErrorCode.SEGMENT_TOO_DEEP: (422, "conditions are nested deeper than a segment may be"),
    ErrorCode.SEGMENT_TOO_LARGE: (422, "the segment has more conditions than a segment may have"),
    ErrorCode.SEGMENT_BAD_WINDOW: (422, "a window of days is outside 1..3660 (birthdays: 1..366)"),
    ErrorCode.SEGMENT_BAD_RANGE: (422, "a range is empty or bounds nothing (min above max, scores outside 1..5)"),
    ErrorCode.SEGMENT_BAD_VALUE: (422, "a value is empty, too long, not printable, or there are too many"),
    ErrorCode.SEGMENT_BAD_DAY: (422, "the reference day is not a YYYY-MM-DD date"),
    ErrorCode.CAMPAIGN_MALFORMED: (
        422,
        "the campaign, its schedule, an offer or a setting is not valid (a field, a type)",
    ),
    ErrorCode.CAMPAIGN_ENDED: (409, "the campaign has ended: it cannot be changed or resumed"),
    ErrorCode.CAMPAIGN_QUANTITY_LOCKED: (
        409,
        "a flash drop that has issued coupons keeps its quantity: it may not be removed or raised, only lowered",
    ),
    ErrorCode.POOL_INVALID: (422, "a pool's id, quantity or chunk is out of bounds"),
    ErrorCode.POOL_BELOW_ALLOCATED: (409, "a pool's quantity may not go below what head office already allocated"),
    ErrorCode.WALLET_CODE_WRONG: (401, "the wallet sign-in code is not the one sent (attempts are counted)"),
    ErrorCode.WALLET_CODE_EXPIRED: (401, "no live sign-in code for that contact: expired, used, or never sent"),
    ErrorCode.WALLET_TOO_MANY_ATTEMPTS: (429, "too many wrong codes: the code is dead; ask for a new one later"),
    ErrorCode.WALLET_GUESSES_LIMITED: (
        429,
        "too many wrong codes for this contact in a day, from any address: no code works or is sent until then",
    ),
    ErrorCode.WALLET_RATE_LIMITED: (
        429,
        "too many sign-in codes asked for this contact or from here, or contacts found taken on the join page; wait",
    ),
    ErrorCode.WALLET_BAD_CONTACT: (422, "not an email address or a phone number (+ and 8 to 15 digits)"),
    ErrorCode.WALLET_CONTACT_TAKEN: (409, "that email address or phone number belongs to another member"),
    ErrorCode.WALLET_SIGN_IN_REQUIRED: (401, "no wallet session: missing, unknown, expired or signed-out cookie"),
    ErrorCode.WALLET_BAD_ORIGIN: (403, "a wallet POST must come from head office's own pages (Origin header)"),
    ErrorCode.WALLET_SIGN_IN_AGAIN: (
        401,
        "setting up paying on a phone, buying a reward or passing a coupon on needs a sign-in of the last 10 minutes",
    ),
    ErrorCode.WALLET_TOO_MANY_DEVICES: (409, "the member has as many paying phones as allowed: remove one first"),
    ErrorCode.GIFT_UNKNOWN: (404, "no such coupon of the member's, or no such gift link"),
    ErrorCode.GIFT_NOT_TRANSFERABLE: (409, "the coupon's document does not allow passing it on"),
    ErrorCode.GIFT_USED_UP: (409, "the coupon has moved as many times as its campaign allows"),
    ErrorCode.GIFT_COUPON_USED: (409, "the coupon was used at a till: it cannot be passed on"),
    ErrorCode.GIFT_EXPIRED: (410, "the coupon has ended, or the gift link's claim window has passed"),
    ErrorCode.GIFT_OFFERED: (409, "the coupon is already offered as a gift: one link at a time"),
    ErrorCode.GIFT_CLAIMED: (409, "the gift link was claimed already: it works once"),
    ErrorCode.GIFT_OWN: (409, "the giver cannot claim their own gift"),
    ErrorCode.GIFT_TOO_MANY: (429, "the member passed on as many coupons as a day allows"),
    ErrorCode.TOPUP_POLICY_INVALID: (
        422,
        "a till enabled for top-ups needs every limit above zero, each within bounds, per-day at least per-transaction",
    ),
    ErrorCode.CHECKIN_FORGED: (
        403,
        "not a check-in code, or not signed by a registered till of its store (unknown or revoked till, bad signature)",
    ),
    ErrorCode.CHECKIN_EXPIRED: (410, "the check-in code is older than the current 30-second step and the one before"),
    ErrorCode.CHECKIN_USED: (409, "the member has checked in at this store today already: one visit and one reward"),
    ErrorCode.BAD_PERIOD: (400, "a settlement period is named by its first month, YYYY-MM"),
    ErrorCode.PERIOD_NOT_OVER: (409, "the period has not ended yet: it cannot be closed"),
    ErrorCode.PERIOD_CLOSED: (409, "the period is closed already"),
    ErrorCode.EARLIER_PERIOD_OPEN: (409, "periods close in order: an earlier period is still open"),
    ErrorCode.UNKNOWN_MERCHANT: (404, "no such merchant (in that period)"),
    ErrorCode.BAD_PERIOD_LENGTH: (422, "a settlement period is 1, 2, 3, 4, 6 or 12 months"),
    ErrorCode.PERIOD_IN_USE: (409, "entries are filed in or after that period already: a new length starts later"),
    ErrorCode.VOUCHER_MALFORMED: (422, "not a whole TPV1 voucher code (damaged, truncated or padded)"),
    ErrorCode.VOUCHER_FORGED: (409, "the voucher code is not signed by head office's voucher key"),
    ErrorCode.VOUCHER_EXPIRED: (409, "the voucher has expired"),
    ErrorCode.VOUCHER_NOT_SOLD: (409, "head office holds no sale of this voucher: it is not valid yet"),
    ErrorCode.VOUCHER_USED: (409, "the voucher was redeemed already (or is being refunded)"),
    ErrorCode.VOUCHER_REFUNDED: (409, "the voucher was refunded"),
    ErrorCode.VOUCHER_OTHER_STORE: (409, "a voucher is refunded only at the store that sold it"),
    ErrorCode.VOUCHER_ISSUE_INVALID: (422, "a voucher issue needs a count, a value and an expiry within bounds"),
    ErrorCode.GIFT_CARD_UNKNOWN: (409, "head office holds no active gift card of this card"),
    ErrorCode.GIFT_CARD_BLOCKED: (409, "the gift card is blocked"),
    ErrorCode.GIFT_CARD_CLEARED: (409, "the gift card was cleared"),
    ErrorCode.GIFT_CARD_EXPIRED: (409, "the gift card's value has expired"),
    ErrorCode.GIFT_CARD_INSUFFICIENT: (409, "the gift card's balance does not cover the payment"),
    ErrorCode.GIFT_CARD_INVALID: (
        422,
        "a gift card import or change needs a card hash, an amount and terms within bounds",
    ),
    ErrorCode.GIFT_CARD_HELD: (409, "the gift card is in another member's wallet"),
    ErrorCode.SUN_KEYS_MISSING: (503, "head office holds no SUN key: it cannot check a card's message"),
    ErrorCode.REWARD_INVALID: (422, "a reward's document, or the partner codes given for it, are not valid"),
    ErrorCode.REWARD_UNKNOWN: (404, "no such reward in the catalogue, or it is not offered now"),
    ErrorCode.REWARD_SOLD_OUT: (409, "the reward's stock is all taken (or held by tills for their offline sales)"),
    ErrorCode.REWARD_NOT_REFUNDABLE: (409, "the purchase was refunded already, or what it gave was used"),
    ErrorCode.INSUFFICIENT_POINTS: (409, "the member does not hold the points the reward costs"),
    ErrorCode.CLOSE_DAMAGED: (500, "the rates a period's close froze cannot be read: restore the database"),
    ErrorCode.CLOCK_SUSPECT: (
        409,
        "head office's clock disagrees with its tills: nothing that cannot be undone is done",
    ),
    ErrorCode.DOCUMENT_INVALID: (422, "the tills would not read this rule or coupon (the fields and codes say why)"),
    ErrorCode.DOCUMENT_CHANGED: (
        412,
        "the rule or coupon was saved or retired since the version named (If-Match), or exists (If-None-Match: *)",
    ),
    ErrorCode.REASON_REQUIRED: (422, "every change of a rule or coupon says why: reason, 1 to 200 characters"),
    ErrorCode.NO_HOLD: (
        409,
        "head office holds nothing back for that transaction: no online confirmation of it, or its hold ended "
        "already (withdrawn by its till, released, its till's credential revoked)",
    ),
    ErrorCode.HOLD_ENTRY_ARRIVED: (
        409,
        "the transaction's entry arrived from the till that asked: its confirmation holds nothing any more",
    ),
}


class Reason(StrEnum):
    """Why head office opened a reconciliation item (docs/reconciliation.md)."""

    COUPON_OVERUSED = "coupon_overused"
    UNKNOWN_COUPON = "unknown_coupon"
    COUPON_OTHER_MEMBER = "coupon_other_member"
    """A member's personal coupon named by a sale of another member (or of none): not counted as a use."""
    POINTS_OVERSPENT = "points_overspent"
    STORED_VALUE_OVERSPENT = "stored_value_overspent"
    POINTS_CLAWBACK_SHORT = "points_clawback_short"
    """A refund or void took back points its sale earned that the member had spent since: their debt, carried, and
    no payment (never ``points_overspent``, never against a till's bound on overspending)."""
    STORED_VALUE_CLAWBACK_SHORT = "stored_value_clawback_short"
    """A till's void of a top-up the member had spent since: the same for stored value."""
    PAYMENT_CODE_REPLAYED = "payment_code_replayed"
    CARD_BLOCKED = "card_blocked"
    MEMBER_BLOCKED = "member_blocked"
    UNKNOWN_MEMBER = "unknown_member"
    UNKNOWN_CARD = "unknown_card"
    CLOCK_AHEAD = "clock_ahead"
    CLOCK_SKEW = "clock_skew"
    MALFORMED_ENTRY = "malformed_entry"
    PRICE_MISMATCH = "price_mismatch"
    DUPLICATE_ENROLMENT = "duplicate_enrolment"
    ENROLMENT_CONTESTED = "enrolment_contested"
    """An enrolment of a member id head office already holds from another terminal (or with another card):
    the id stays with the first to arrive, this one makes no member and links no card (docs/enrolment.md)."""
    MEMBER_SPEND_HELD = "member_spend_held"
    """A spend of a member whose id is contested (an open ``enrolment_contested`` item) that head office did not
    confirm online: quarantined until a person decides (docs/enrolment.md)."""
    # The trust rules (hq/policy.py): an entry that breaks one is stored and quarantined.
    KIND_NOT_ALLOWED = "kind_not_allowed"
    SIGN_NOT_ALLOWED = "sign_not_allowed"
    WRONG_STORE = "wrong_store"
    POINTS_ABOVE_RULES = "points_above_rules"
    REFUND_UNKNOWN_SALE = "refund_unknown_sale"
    REFUND_WRONG_MEMBER = "refund_wrong_member"
    REFUND_EXCEEDS_SALE = "refund_exceeds_sale"
    VOID_OTHER_TILL = "void_other_till"
    REFUND_OTHER_MERCHANT = "refund_other_merchant"
    """A refund or void at a store of another merchant than its sale's: held, no money moves between merchants."""
    PROOF_MISSING = "proof_missing"
    PROOF_INVALID = "proof_invalid"
    PROOF_UNVERIFIED = "proof_unverified"
    CARD_REPLAYED = "card_replayed"
    DEVICE_REVOKED = "device_revoked"
    JOURNAL_LOST = "journal_lost"
    TXN_ID_CONTESTED = "txn_id_contested"
    """Another terminal pushed an entry under a transaction id this terminal's entry holds (refused with
    ``txn_id_taken``): one of the two is not the till that rang it; the item is against the holder, once a txn."""
    CLOCK_BEHIND = "clock_behind"
    PAYMENT_EXCEEDS_CONFIRMED = "payment_exceeds_confirmed"
    OFFLINE_CAP_EXCEEDED = "offline_cap_exceeded"
    REFUND_KEEPS_POINTS = "refund_keeps_points"
    UNKNOWN_DOC_VERSION = "unknown_doc_version"
    # Flash-drop pools (hq/pools.py): a till redeemed beyond the allocation it was granted, or the pool's uses
    # chain-wide went beyond its quantity.
    POOL_ALLOCATION_EXCEEDED = "pool_allocation_exceeded"
    POOL_OVERUSED = "pool_overused"
    RECEIPT_SOLD_TWICE = "receipt_sold_twice"
    """A sale read from a printed receipt head office already holds a sale of (same digest), at another till
    or the same one (docs/receipts.md)."""
    # Top-ups at the till (hq/topups.py, docs/stored-value.md): the first three quarantine the entry.
    TOPUP_NOT_ENABLED = "topup_not_enabled"
    """A till head office has not enabled for top-ups (whatever the till says) credited stored value."""
    TOPUP_OVER_LIMIT = "topup_over_limit"
    """A top-up beyond the till's per-transaction, per-day or per-member-day limit."""
    TOPUP_VOID_INVALID = "topup_void_invalid"
    """A void of a top-up this till never credited, already voided, of another day, member or amount."""
    TOPUP_TAKINGS_MISMATCH = "topup_takings_mismatch"
    """End of day: what the till says it took in top-ups is not what head office credited for that day."""
    # Merchants (hq/merchants.py, docs/settlement.md): stored and applied, for an administrator to look at.
    COUPON_OTHER_MERCHANT = "coupon_other_merchant"
    """A merchant's coupon redeemed at another merchant's store: a till that knew its merchant refuses it, so
    a till that did not know it yet, or a dishonest one."""
    MERCHANT_MISMATCH = "merchant_mismatch"
    """An entry names a merchant that is not its store's as head office holds it (a store moved to another
    merchant while the till was offline, or a dishonest till); it is booked to the store's merchant."""
    # Prepaid vouchers (hq/vouchers.py, docs/stored-value.md "Vouchers"): the first three quarantine the entry.
    VOUCHER_FORGED = "voucher_forged"
    """A voucher entry whose code head office's voucher key did not sign, or whose fields are not the code's."""
    VOUCHER_NOT_ALLOCATED = "voucher_not_allocated"
    """A sale of a voucher that is not in this till's stock (another till's, sold already, or unknown)."""
    VOUCHER_REFUND_INVALID = "voucher_refund_invalid"
    """A refund of a voucher never sold, sold at another store, or already redeemed."""
    VOUCHER_NOT_SOLD = "voucher_not_sold"
    """A redemption of a voucher head office holds no sale of: quarantined."""
    VOUCHER_REDEEMED_EXPIRED = "voucher_redeemed_expired"
    """A redemption made after the voucher's expiry (by head office's corrected time, beyond the clock skew
    allowed): a till refuses it, so a dishonest till or a stolen credential; quarantined, nobody is owed it."""
    VOUCHER_REDEEMED_TWICE = "voucher_redeemed_twice"
    """A redemption (taken offline) of a voucher already redeemed or refunded: stored, the loss flagged; held once
    the till's offline payments that day take more than head office's bound beyond what they paid from."""
    VOUCHER_KEPT_BEYOND = "voucher_kept_beyond"
    """A return said the vouchers that paid its sale kept more of it (``voucher_kept``) than head office booked them
    paying, less what the sale's earlier returns kept: only what they paid is booked as kept; flagged."""
    # Gift cards (hq/giftcards.py, docs/giftcards.md): the first three quarantine the entry.
    GIFT_CARD_INVALID = "gift_card_invalid"
    """A gift card sold that is a member's card or an active or blocked gift card already; loaded or given back
    while head office holds it blocked, cleared or unknown; a payment of a card head office does not hold."""
    GIFT_REFUND_INVALID = "gift_refund_invalid"
    """Value given back onto a gift card beyond what it paid at that till in that transaction."""
    GIFT_PROOF_INVALID = "gift_proof_invalid"
    """A gift card payment whose tap does not verify, or whose SUN read counter the chain had used already."""
    GIFT_CARD_OVERSPENT = "gift_card_overspent"
    """A gift card paid (offline) beyond its balance, or while head office held it blocked: stored, flagged; held
    once the till's payments that day take more than head office's bound beyond the cards' balances."""
    GIFT_TAKINGS_MISMATCH = "gift_takings_mismatch"
    """End of day: what the till says it took for gift cards sold and loaded is not what head office put on them."""
    # The rewards catalogue (hq/rewards.py, docs/rewards.md): each quarantines the entry.
    REWARD_INVALID = "reward_invalid"
    """A sale took a reward the catalogue does not hold, or at other than its price in points."""
    REWARD_ALLOCATION_EXCEEDED = "reward_allocation_exceeded"
    """A till took a reward with a limited stock beyond the allocation head office granted it."""
    REWARD_KEPT = "reward_kept"
    """A refund or void gives back the points of a reward the member keeps (its coupon used, its partner code
    handed out): quarantined, an administrator decides."""


class ItemState(StrEnum):
    OPEN = "open"
    SETTLED_AUTO = "settled_auto"
    SETTLED_MANUAL = "settled_manual"


def protocol_problem(version: int) -> str | None:
    """Why head office cannot take a request of protocol ``version``, naming who must be upgraded;
    None when it can."""
    if version in SUPPORTED_PROTOCOLS:
        return None
    if version > max(SUPPORTED_PROTOCOLS):
        return (
            f"this till speaks protocol {version}, newer than this head office "
            f"({min(SUPPORTED_PROTOCOLS)}-{max(SUPPORTED_PROTOCOLS)}): upgrade head office first"
        )
    return (
        f"this till speaks protocol {version}, older than this head office accepts "
        f"({min(SUPPORTED_PROTOCOLS)}-{max(SUPPORTED_PROTOCOLS)}): upgrade the till"
    )


RETURN_FIELDS_PROTOCOL = 3
"""The protocol from which head office reads a return's ``gift_cards`` and ``voucher_kept``."""


RECEIPT_SCOPE_PROTOCOL = 4
"""The protocol from which head office reads a sale's ``receipt_scope``."""


def entry_protocol(kind: str, payload: dict[str, Any]) -> int:
    """The lowest protocol whose head office reads this entry as a till sends it (``as_spoken``): a refund or void
    carrying ``gift_cards`` or ``voucher_kept`` needs 3 (a head office of the protocol before quarantines it as
    malformed, and leaving them out would lose what they book, so a till speaking that one holds it until head office
    is upgraded); every other entry, 1 (a sale's ``receipt_scope`` is left out for a head office before 4)."""
    if kind in ("refund", "void") and any(payload.get(name) for name in ("gift_cards", "voucher_kept")):
        return RETURN_FIELDS_PROTOCOL
    return 1


def as_spoken(kind: str, payload: dict[str, Any], spoken: int) -> dict[str, Any]:
    """``payload`` as a head office speaking ``spoken`` reads it: a sale's ``receipt_scope`` is left out below 4 (such
    a head office quarantined it as malformed; it compares a receipt's sales by digest alone, as it always did, and
    books the sale the same). The till's journal keeps the entry whole."""
    if kind == "sale" and spoken < RECEIPT_SCOPE_PROTOCOL and "receipt_scope" in payload:
        return {k: v for k, v in payload.items() if k != "receipt_scope"}
    return payload


def spoken_protocol(hq_protocol: int) -> int:
    """The protocol a till speaks to a head office that announced ``hq_protocol`` in ``/v1/health``:
    its own, or head office's when head office's is older (what that protocol cannot carry is left out or held:
    ``as_spoken``, ``entry_protocol``)."""
    return min(PROTOCOL_VERSION, max(hq_protocol, 1))


# -- push ---------------------------------------------------------------------------------------


class WireEntry(_Model):
    terminal_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=1, le=MAX_SEQ)
    txn_id: str = Field(min_length=1, max_length=128, pattern=r"^[^:]+$")
    """The till's id of the entry (a UUIDv7); never with a ``:``, which head office's own ledger ids carry
    (``adjust:...``, ``expire:...``, ``<txn>:restored``): a till's entry can never pass for one of them."""
    kind: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    """The kind's typed payload (``PAYLOADS``); kept as it came, and read with that model."""
    created_at: str = Field(min_length=1, max_length=64)
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    """The merchant the till knew its store belonged to when it wrote the entry (``ChangesPage.merchant_id``);
    None: an older till, or one that had not pulled it yet. Head office books the entry to its store's merchant
    as head office holds it, and flags an entry that names another (``merchant_mismatch``)."""


class PushRequest(_Model):
    protocol: int = Field(default=PROTOCOL_VERSION, ge=0, le=1000)
    terminal_id: str = Field(min_length=1, max_length=128)
    entries: list[WireEntry] = Field(max_length=MAX_BATCH)


class PushResponse(_Model):
    acked_seq: int
    stored: int
    duplicates: int
    gaps: list[tuple[int, int]] = Field(default_factory=list)
    """Missing seq ranges (first, last), inclusive, below the highest seq head office holds."""
    flagged: int = 0
    """Reconciliation items this batch opened (the entries are stored all the same)."""


class DeviceHealth(_Model):
    """One reader or scanner as the till last saw it."""

    name: str = Field(min_length=1, max_length=200)
    state: str = Field(min_length=1, max_length=32)
    """The last reader event: ``connected``, ``disconnected``, ``error``..."""


class TillHealth(_Model):
    """``POST /v1/terminal/health`` (protocol 2): what the fleet view shows of a till, sent each pull round."""

    version: str = Field(min_length=1, max_length=32)
    protocol: int = Field(ge=1, le=1000)
    started_at: str = Field(min_length=1, max_length=64)
    readers: list[DeviceHealth] = Field(default_factory=list, max_length=64)
    pending: int = Field(ge=0, le=MAX_SEQ)
    oldest_pending_at: str | None = Field(default=None, max_length=64)
    free_disk_bytes: int | None = Field(default=None, ge=0, le=2**63)
    last_error: str | None = Field(default=None, max_length=300)
    loop_crashes: int = Field(default=0, ge=0, le=MAX_SEQ)


class JournalState(_Model):
    """``GET /v1/journal/state``: where head office holds this terminal's journal."""

    acked_seq: int
    """Every seq up to this one is held (or was reported lost)."""
    max_seq: int
    """The highest seq held: a till rebuilt from a damaged file numbers its next entries above it."""
    gaps: list[tuple[int, int]] = Field(default_factory=list)
    lost: list[tuple[int, int]] = Field(default_factory=list)
    """Ranges the till reported it can never send (they count as held for ``acked_seq``)."""


class LostReport(_Model):
    """``POST /v1/journal/lost``: seq ranges the till no longer holds and head office never received."""

    ranges: list[tuple[Annotated[int, Field(ge=1, le=MAX_SEQ)], Annotated[int, Field(ge=1, le=MAX_SEQ)]]] = Field(
        min_length=1, max_length=100
    )
    reason: str = Field(min_length=1, max_length=300)

    @model_validator(mode="after")
    def _ordered(self) -> LostReport:
        if any(first > last for first, last in self.ranges):
            raise ValueError("a range's first seq is after its last")
        return self


# -- pull ---------------------------------------------------------------------------------------


class WireMember(_Model):
    member_id: str
    display_name: str
    tier: str
    points: int
    status: Literal["active", "blocked"]
    stored_value: int = 0
    spend_held: bool = False
    """The member's id is contested (docs/enrolment.md): tills refuse its spending (``member_spend_held``) and
    let it earn, until staff settle the item. In the changes feed only, not in the snapshot's columns."""


class WireCard(_Model):
    uid_hash: str
    member_id: str
    status: Literal["active", "blocked"]
    counter: int | None = None
    """The highest SUN read counter head office saw used anywhere in the chain: tills refuse a
    message at or below it."""


class WireRule(_Model):
    rule_id: str
    points: int = Field(ge=0)
    per_minor: int = Field(gt=0)


class WireRuleDoc(_Model):
    """An earning rule authored at head office; ``body`` is opaque here (terminal/loyalty.py reads it)."""

    rule_id: str
    body: dict[str, Any]


class WireCoupon(_Model):
    """A coupon document; ``member_id`` is the body's for personal coupons. ``uses`` is head office's count."""

    coupon_id: str
    member_id: str | None = None
    body: dict[str, Any]
    uses: int = 0


class WireKey(_Model):
    """A public key tills verify QR payloads and payment codes with, signed by head office's root key."""

    key_id: str
    body: dict[str, Any]
    """{"key_id", "alg": "ed25519", "public_key" (base64url), "purpose", "status", "created_at"}"""
    sig: str
    """base64url Ed25519 signature of ``canonical_json(body)`` by the root key."""


class WireRevocation(_Model):
    """One entry of the revocation list (a card, a credential, a key, a payment device...), signed."""

    revocation_id: str
    body: dict[str, Any]
    """{"kind", "subject", "reason", "revoked_at"}; revocation_id is "kind:subject"."""
    sig: str


class WireDeviceCert(_Model):
    """A member device's certificate (``terminal.payments.DeviceCert.to_doc()``), signed by head office's payment key."""

    cert_id: str
    member_id: str
    body: dict[str, Any]


class WireAllocation(_Model):
    """This till's allocation of an open flash-drop pool (hq/pools.py): it may redeem coupons of the pool
    ``allowed`` times in all; ``used`` is head office's count of its redemptions (net of give-backs)."""

    pool_id: str
    allowed: int = Field(ge=0)
    used: int = Field(default=0, ge=0)


class TopupLimits(_Model):
    """Whether a till may sell stored value (top-ups), and its limits in minor units (hq/topups.py).
    Every limit of an enabled till is above zero; ``offline_total`` 0 means no top-ups while offline."""

    enabled: bool = False
    per_transaction: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    per_day: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    """All top-ups of this till in one business day."""
    per_member_day: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    """One member's top-ups at this till in one business day."""
    offline_total: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    """Top-ups taken while head office is unreachable and not acknowledged yet."""


class WireTopupPolicy(TopupLimits):
    """A till's top-up limits with its store's business day (``tillpoint hq store``), so that the till counts
    its day's top-ups by the day head office files them under."""

    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    day_starts: str = Field(default="00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class WireVoucher(_Model):
    """A sold voucher's state, chain-wide (hq/vouchers.py): a till redeems offline only a voucher it holds as
    ``active``; ``redeemed`` and ``refunded`` ones it refuses."""

    voucher_id: str
    body: dict[str, Any]
    """{"voucher_id", "state", "kind", "value", "sku", "store_id", "expires_at"}"""


class WireGiftCard(_Model):
    """A gift card as head office holds it, chain-wide (hq/giftcards.py, docs/giftcards.md): every till knows
    every card's state and balance, for a balance check and an offline payment."""

    card_id: str
    body: dict[str, Any]
    """``terminal.giftcards.GiftCard.to_doc``: {"card_id", "uid_hash", "state", "balance", "expires_on",
    "last_used_on"}"""


class WireGiftTerms(_Model):
    """The chain's gift card terms (``terminal.giftcards.Terms``)."""

    expiry_days: int = Field(default=0, ge=0, le=36_500)
    dormant_days: int = Field(default=0, ge=0, le=36_500)


class WireVoucherStock(_Model):
    """This till's stock of vouchers to sell (their signed codes, issued by head office and not yet sold) and
    its offline total of voucher redemptions (minor units; 0: none offline)."""

    offline_total: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    codes: list[Annotated[str, Field(min_length=5, max_length=400)]] = Field(default_factory=list, max_length=10_000)


SIGNED_TOMBSTONES = ("key", "revocation")
"""The kinds whose rows head office signs with its root key: their tombstones are signed too, so a network cannot
take a key or a revocation off a till, and carry the time of the deletion, so a replayed one cannot take off a
revocation made again since."""


class Tombstone(_Model):
    kind: Literal[
        "member", "card", "rule", "rule_doc", "coupon", "key", "revocation", "device_cert", "voucher", "gift_card"
    ]
    id: str
    body: dict[str, Any] | None = None
    """A key's or a revocation's (``SIGNED_TOMBSTONES``): ``tombstone_body`` of its deletion; none for the others."""
    sig: str | None = None
    """base64url Ed25519 signature of ``canonical_json(body)`` by the root key, as a key's or a revocation's."""


def tombstone_body(kind: str, item_id: str, deleted_at: str) -> dict[str, Any]:
    """What head office signs when it deletes a key or a revocation. It has neither a key's ``public_key`` nor a
    revocation's ``kind`` and ``subject``, so it can pass for neither."""
    return {"tombstone": kind, "id": item_id, "deleted_at": deleted_at}


def signed_id_matches(kind: str, item_id: str, body: dict[str, Any]) -> bool:
    """Whether a signed row of the feed is filed under the id its signed body names: a key under its
    ``key_id``, a revocation under ``kind:subject``, a tombstone under its ``id`` (and of its kind). A network
    renaming a signed row (another device's revocation under this device's id) is caught here."""
    if kind == "keys":
        return body.get("key_id") == item_id
    if kind == "revocations":
        return "tombstone" not in body and f"{body.get('kind')}:{body.get('subject')}" == item_id
    return body.get("tombstone") == kind and body.get("id") == item_id and isinstance(body.get("deleted_at"), str)


class ChangesPage(_Model):
    cursor: int
    """Pass back as ``since`` to continue; it only moves forward."""
    more: bool
    members: list[WireMember] = Field(default_factory=list)
    cards: list[WireCard] = Field(default_factory=list)
    rules: list[WireRule] = Field(default_factory=list)
    rule_docs: list[WireRuleDoc] = Field(default_factory=list)
    coupons: list[WireCoupon] = Field(default_factory=list)
    keys: list[WireKey] = Field(default_factory=list)
    revocations: list[WireRevocation] = Field(default_factory=list)
    device_certs: list[WireDeviceCert] = Field(default_factory=list)
    vouchers: list[WireVoucher] = Field(default_factory=list)
    gift_cards: list[WireGiftCard] = Field(default_factory=list)
    deleted: list[Tombstone] = Field(default_factory=list)
    allocations: list[WireAllocation] | None = None
    """This terminal's allocations of every open pool, whole, on every page (the rest of the feed is
    chain-wide); a pool not listed is not held. None: head office sends none (the till keeps what it holds)."""
    topup_policy: WireTopupPolicy | None = None
    """This terminal's top-up policy, whole, on every page (None: an older head office; the till then sells
    no top-ups)."""
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    """The merchant this terminal's store belongs to, on every page (None: an older head office; the till
    keeps what it holds). The till refuses another merchant's coupons (``coupon_other_merchant``)."""
    voucher_stock: WireVoucherStock | None = None
    """This terminal's unsold voucher stock, whole, on every page (None: the till keeps what it holds)."""
    gift_terms: WireGiftTerms | None = None
    """The chain's gift card terms, on every page (None: an older head office; the till keeps what it holds)."""
    spend_held: list[str] | None = None
    """Every member id whose spending head office holds (its id contested: docs/enrolment.md), whole, on every
    page, as of the page's own read: a till marks these held and lets any other it holds as held spend again. A
    till that bootstrapped from the snapshot (whose columns carry no hold) learns them on its first page. None: an
    older head office (the till keeps what it holds); an older till ignores the field."""

    def size(self) -> int:
        return sum(len(getattr(self, name)) for name in (*SNAPSHOT_KINDS, "deleted"))


class SnapshotInfo(_Model):
    version: int
    """Continue with ``GET /v1/changes?since=version`` once every kind is loaded."""
    counts: dict[str, int]


class SnapshotPage(_Model):
    """Rows of one kind ordered by primary key, as compact arrays in ``columns`` order."""

    kind: str
    columns: list[str]
    rows: list[list[Any]]
    next: str | None
    """Pass as ``after`` for the next page; null when this kind is done."""


SNAPSHOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id", "display_name", "tier", "points", "status", "stored_value"),
    "cards": ("uid_hash", "member_id", "status", "counter"),
    "rules": ("rule_id", "points", "per_minor"),
    "rule_docs": ("rule_id", "body"),
    "coupons": ("coupon_id", "member_id", "body", "uses"),
    "keys": ("key_id", "body", "sig"),
    "revocations": ("revocation_id", "body", "sig"),
    "device_certs": ("cert_id", "member_id", "body"),
    "vouchers": ("voucher_id", "body"),
    "gift_cards": ("card_id", "body"),
}
"""Body columns travel as JSON text inside the row, so a page is parsed once, not per document."""


# -- terminals ----------------------------------------------------------------------------------


class EnrolRequest(_Model):
    code: str = Field(min_length=4, max_length=64)
    terminal_id: str | None = None
    """If given, must match the terminal the code was issued for."""
    store_id: str | None = Field(default=None, max_length=64)
    """If given, must match the store the code was issued for (else 409 ``enrol_wrong_store``, the code unused)."""


class EnrolResponse(_Model):
    terminal_id: str
    store_id: str
    token: str
    root_key: str
    """base64url Ed25519 public key that signs keys and revocations; pin it."""


class TerminalInfo(_Model):
    """``GET /v1/terminal``: this terminal as head office holds it, for the till to check its own set-up."""

    terminal_id: str
    store_id: str
    """The store head office registered the terminal for: every entry must name it (else ``wrong_store``)."""
    card_key_check: str | None = None
    """``terminal.keys.key_check`` of the card-hash key head office was started with: a keyed hash of a constant,
    which tells two keys apart and gives neither away; null when head office holds no card-hash key."""


# -- end of day and reconciliation ---------------------------------------------------------------


class KindTotals(_Model):
    count: int = Field(default=0, ge=0, le=MAX_SEQ)
    total: int = Field(default=0, ge=-MAX_SEQ * MAX_AMOUNT, le=MAX_SEQ * MAX_AMOUNT)
    points: int = Field(default=0, ge=-MAX_SEQ * MAX_AMOUNT, le=MAX_SEQ * MAX_AMOUNT)
    stored_value: int = Field(default=0, ge=-MAX_SEQ * MAX_AMOUNT, le=MAX_SEQ * MAX_AMOUNT)


class EodReport(_Model):
    terminal_id: str
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    first_seq: int = Field(ge=1, le=MAX_SEQ)
    last_seq: int = Field(ge=0, le=MAX_SEQ)
    totals: dict[str, KindTotals]


class EodResult(_Model):
    terminal_id: str
    day: str
    status: Literal["complete", "incomplete"]
    missing: list[tuple[int, int]] = Field(default_factory=list)
    """Seq ranges of the day head office does not hold yet."""
    mismatches: list[str] = Field(default_factory=list)
    """Human-readable differences between the till's totals and head office's."""


class ReconItem(_Model):
    item_id: str
    store_id: str
    terminal_id: str
    day: str
    seq: int | None
    txn_id: str | None
    reason: Reason
    detail: dict[str, Any]
    state: ItemState
    created_at: str
    settled_at: str | None = None
    settled_by: str | None = None
    note: str | None = None
    quarantined: bool = False
    """The entry changed no balance; an admin releases it (applied then) or rejects it."""


class ItemGroup(_Model):
    """Items of one cause, one terminal, one business day and one state: what a person reads first."""

    store_id: str
    terminal_id: str
    day: str
    reason: Reason
    state: ItemState
    count: int
    quarantined: int
    """How many of them hold their entry in quarantine (released or rejected one by one)."""
    first_at: str
    last_at: str


class GroupPage(_Model):
    groups: list[ItemGroup]
    next_cursor: str | None = None
    """Pass as ``after`` for the next page; None: this was the last."""


class ErrorBody(_Model):
    code: str
    message: str
    seq: int | None = None
    """``txn_id_taken``: the seq of the entry head office refused (the entries before it in the batch were not the
    cause); absent otherwise."""
    txn_id: str | None = None
    """``txn_id_taken``: that entry's transaction id."""
    held_by: str | None = None
    """``txn_id_taken``: the terminal whose entry head office holds under that transaction id."""


# -- journal entries: one typed payload per kind ----------------------------------------------------
#
# The till writes each entry with these models and head office reads each entry with the same ones:
# no payload is read by guessing at keys. A payload that is not its kind's model is stored as it came
# (nothing lost) and quarantined at head office as ``malformed_entry``.


Amount = Annotated[int, Strict(), Field(ge=0, le=MAX_AMOUNT)]
Delta = Annotated[int, Strict(), Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
Ident = Annotated[str, Strict(), Field(min_length=1, max_length=128)]
Text = Annotated[str, Strict(), Field(max_length=200)]
UidHash = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
Flag = Annotated[bool, Strict()]
Digest = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{16}$")]
"""A document's version by content (``terminal.canonical.doc_digest``)."""
PricedKey = Annotated[str, Strict(), Field(pattern=r"^(base|rule:.{1,128}|coupon:.{1,128})$")]
Units = Annotated[int, Strict(), Field(ge=1, le=10_000)]


class EntryKind(StrEnum):
    SALE = "sale"
    REFUND = "refund"
    VOID = "void"
    ENROL = "enrol"
    CLAIM_KEY = "claim_key"
    TOPUP = "topup"
    """Head office's own: stored value an administrator added (``hq.payments.topup``)."""
    TILL_TOPUP = "till_topup"
    """Stored value sold at a till enabled for it: the POS took the money (docs/stored-value.md)."""
    TOPUP_VOID = "topup_void"
    """A till's void of its own top-up, the same business day, while the balance still holds it."""
    CHECKIN = "checkin"
    """A member's card tapped on the till's door reader: a visit (docs/checkin.md)."""
    ADJUST = "adjust"
    """Head office's own: points or stored value put right by hand, with a reason, once a second person
    approved it (``hq.adjustments``)."""
    VOUCHER_SALE = "voucher_sale"
    """A voucher of this till's stock sold: the POS took its value (docs/stored-value.md, "Vouchers")."""
    VOUCHER_REDEEM = "voucher_redeem"
    """A voucher used to pay (amount) or for its product; once, chain-wide."""
    VOUCHER_REFUND = "voucher_refund"
    """A voucher refunded before use at the store that sold it: the POS paid its value back."""
    GIFT_ACTIVATE = "gift_activate"
    """A gift card sold: a secure card, tied to no member, loaded with what the POS took (docs/giftcards.md)."""
    GIFT_LOAD = "gift_load"
    """More value loaded onto an active gift card: the POS took it."""
    GIFT_REDEEM = "gift_redeem"
    """A gift card paid: its secure tap, the amount taken off its balance."""
    GIFT_REFUND = "gift_refund"
    """What a gift card paid at this till, given back onto the card (a sale refunded)."""
    GIFT_BLOCK = "gift_block"
    """A gift card blocked at the till (reported lost or stolen): no value moves."""
    GIFT_UNBLOCK = "gift_unblock"
    """Head office's own: a blocked gift card made usable again."""
    GIFT_CLEAR = "gift_clear"
    """Head office's own: a gift card's balance taken to zero (expired, or retired), with a reason."""
    GIFT_IMPORT = "gift_import"
    """Head office's own: a gift card of an earlier system, with the balance that system held."""


@dataclass(frozen=True, slots=True)
class Values:
    """What an entry does to balances and to the day's totals, whatever its kind."""

    member_id: str | None = None
    points: int = 0
    stored_value: int = 0
    total: int = 0


class Payload(_Model):
    """Base of the entry payloads: unknown fields are refused, numbers are never coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict that travels in ``WireEntry.payload`` and is journalled."""
        return self.model_dump(mode="json")

    def values(self) -> Values:
        return Values()


class SaleLine(Payload):
    sku: Annotated[str, Strict(), Field(min_length=1, max_length=64)]
    category: Annotated[str, Strict(), Field(max_length=64)] = ""
    quantity: Units
    unit_price: Amount


class Explained(Payload):
    source: Text
    kind: Text
    points: Delta
    amount: Delta


class SecureTap(Payload):
    """A secure card's tap that served this sale: what head office needs to check it again."""

    uid_hash: UidHash
    trust: Literal["sun", "mac"]
    """``sun``: an NTAG 424 DNA SUN message (AES MAC and a read counter); ``mac``: a FeliCa Lite-S
    authenticated and read with a MAC over the till's own challenge (head office cannot check it again)."""
    counter: Annotated[int, Strict(), Field(ge=0, le=0xFFFFFF)] | None = None
    sun: Annotated[str, Strict(), Field(min_length=1, max_length=1024)] | None = None
    """The NDEF URL as read (its picc_data and cmac): head office verifies it when it holds the keys
    (a SUN tap without it is then refused as a proof)."""

    @model_validator(mode="after")
    def _sun_has_counter(self) -> SecureTap:
        if (self.trust == "sun") != (self.counter is not None):
            raise ValueError("a SUN tap carries its read counter, a MAC read none")
        return self


class Proof(StrEnum):
    """What authorised a sale to spend the member's points or stored value."""

    CARD = "card"
    """The secure tap in ``tap`` (SUN or Lite-S MAC)."""
    PAYMENT_CODE = "payment_code"
    """A one-time code signed by the member's device (``payment_code``: TPP1, or a fresh member code)."""
    POS = "pos"
    """Nothing: the deployment trusts its POS to vouch for the member (``payments.spend_needs_proof`` off)."""


class RewardTaken(Payload):
    """A reward of the catalogue bought with points in a sale (docs/rewards.md)."""

    reward_id: Ident
    points: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]


class SalePayload(Payload):
    member_id: Ident | None = None
    store_id: Ident
    total: Amount
    """The basket before discounts."""
    discount: Amount = 0
    payable: Amount
    """What the member paid after coupons and points: ``stored_value`` + ``pos_due``."""
    points_earned: Amount = 0
    points_redeemed: Amount = 0
    points_delta: Delta = 0
    coupons: list[Ident] = Field(default_factory=list, max_length=50)
    lines: list[SaleLine] = Field(min_length=1, max_length=500)
    line_discounts: list[Amount] = Field(default_factory=list, max_length=500)
    explain: list[Explained] = Field(default_factory=list, max_length=500)
    tier: Text | None = None
    tier_after: Text | None = None
    lots_spent: list[tuple[Ident, Amount]] = Field(default_factory=list, max_length=1000)
    local_time: Annotated[str, Strict(), Field(min_length=10, max_length=40)]
    """The store's wall-clock time of the sale (what time-of-day rules and coupons saw)."""
    uid_hash: UidHash | None = None
    """The card that identified the member, if a card did (UID-only cards too)."""
    stored_value: Amount = 0
    stored_value_delta: Delta = 0
    pos_due: Amount = 0
    code_id: Text | None = None
    paid_by: Text = "pos"
    offline: Flag = False
    tap: SecureTap | None = None
    payment_code: Annotated[str, Strict(), Field(min_length=1, max_length=512)] | None = None
    proof: Proof | None = None
    priced_with: Annotated[dict[PricedKey, Digest], Field(max_length=500)] | None = None
    """The versions of the documents the till priced the sale with: ``base`` (the base earning rule),
    ``rule:ID`` for each rule document it held, ``coupon:ID`` for each coupon used. Head office prices
    the sale again with exactly these (docs/reconciliation.md)."""
    receipt_digest: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """The POS's printed receipt the basket was read from: sha256 of its raw print bytes (docs/receipts.md).
    Optional: tills before receipt capture send none."""
    receipt_number: Text | None = None
    """The receipt number the POS printed on it."""
    pos_id: Text | None = None
    """Which POS printed it (the till's name for its printer port: not what keys the receipt's number)."""
    receipt_scope: Literal["store", "day"] | None = None
    """How long ``receipt_number`` stays unique (the template's ``number_scope``): ``store`` (never twice in the
    store) or ``day`` (that day, in the store's time zone). Head office flags a second sale of the same number
    (``receipt_sold_twice``). None without a number; needs protocol 4 (left out for a head office before it,
    ``as_spoken``). None too from a till before it (its sales are compared by digest alone)."""
    rewards: list[RewardTaken] = Field(default_factory=list, max_length=20)
    """Rewards of the catalogue bought in this sale, one unit each (docs/rewards.md)."""
    reward_points: Amount = 0
    """The part of ``points_redeemed`` that paid for ``rewards`` (the rest paid money)."""

    @model_validator(mode="after")
    def _adds_up(self) -> SalePayload:
        if self.reward_points != sum(r.points for r in self.rewards) or self.reward_points > self.points_redeemed:
            raise ValueError("reward_points is not the sum of the rewards' points, or exceeds points_redeemed")
        if len({r.reward_id for r in self.rewards}) != len(self.rewards):
            raise ValueError("a reward appears twice in one sale")
        if sum(x.quantity * x.unit_price for x in self.lines) != self.total:
            raise ValueError("total is not the sum of the lines")
        if self.points_delta != self.points_earned - self.points_redeemed:
            raise ValueError("points_delta is not points_earned - points_redeemed")
        if self.stored_value_delta != -self.stored_value:
            raise ValueError("stored_value_delta is not -stored_value")
        if self.stored_value + self.pos_due != self.payable or self.payable + self.discount > self.total:
            raise ValueError("payable is not stored_value + pos_due, or exceeds the total less the discount")
        if (self.proof is Proof.CARD and self.tap is None) or (
            self.proof is Proof.PAYMENT_CODE and not self.payment_code
        ):
            raise ValueError(f"proof {self.proof} without what it names")
        if self.payment_code is not None and self.code_id is None:
            raise ValueError("a payment code without its code_id")
        _check_time(self.local_time)
        return self

    @property
    def spends(self) -> bool:
        """Whether this sale takes points or stored value from the member (needs a proof)."""
        return self.points_redeemed > 0 or self.stored_value > 0

    def wire(self) -> dict[str, Any]:
        """A sale without rewards travels as it did before the catalogue (an older head office reads it); every sale
        names its ``receipt_scope`` (null without a receipt number: one shape whoever rang it), which the sync client
        leaves out for a head office before protocol 4 (``as_spoken``)."""
        left_out = set() if self.rewards else {"rewards", "reward_points"}
        return self.model_dump(mode="json", exclude=left_out or None)

    def values(self) -> Values:
        return Values(self.member_id, self.points_delta, self.stored_value_delta, self.total)


class ReturnedUnits(Payload):
    line: Annotated[int, Strict(), Field(ge=0, le=499)]
    quantity: Units


class RefundPayload(Payload):
    member_id: Ident | None = None
    store_id: Ident
    original_txn: Ident
    returned: list[ReturnedUnits] = Field(default_factory=list, max_length=500)
    total: Delta
    """``-money_back``."""
    money_back: Amount
    points_clawed: Amount = 0
    points_restored: Amount = 0
    points_delta: Delta = 0
    coupons_restored: list[Ident] = Field(default_factory=list, max_length=50)
    stored_value_delta: Amount = 0
    """Stored value put back on the member's account (the rest goes back through the POS)."""
    gift_cards: Amount = 0
    """The gift cards' part (a void of a sale they paid): each card gets what it paid, by its own ``gift_refund``
    entries (one the POS made before, the void's for the rest); not through the POS."""
    voucher_kept: Amount = 0
    """The vouchers' part (a sale a voucher paid part of): beyond what the POS collected for the sale, never paid
    out (a used voucher stays used)."""
    pos_refund: Amount = 0
    """What the POS pays back: ``money_back`` less the account's, the gift cards' and the vouchers' parts."""

    @model_validator(mode="after")
    def _adds_up(self) -> RefundPayload:
        if self.total != -self.money_back:
            raise ValueError("total is not -money_back")
        if self.points_delta != self.points_restored - self.points_clawed:
            raise ValueError("points_delta is not points_restored - points_clawed")
        if self.money_back != self.stored_value_delta + self.gift_cards + self.voucher_kept + self.pos_refund:
            raise ValueError("money_back is not stored_value_delta + gift_cards + voucher_kept + pos_refund")
        return self

    def wire(self) -> dict[str, Any]:
        """A return no gift card nor voucher paid travels as it did before (an older head office reads it)."""
        left_out = {name for name in ("gift_cards", "voucher_kept") if not getattr(self, name)}
        return self.model_dump(mode="json", exclude=left_out or None)

    def values(self) -> Values:
        return Values(self.member_id, self.points_delta, self.stored_value_delta, self.total)


class VoidPayload(RefundPayload):
    voided_txn_id: Ident

    @model_validator(mode="after")
    def _names_its_sale(self) -> VoidPayload:
        if self.voided_txn_id != self.original_txn:
            raise ValueError("voided_txn_id is not original_txn")
        return self


TillMemberId = Annotated[str, Strict(), Field(min_length=3, max_length=128, pattern=r"^E-")]
"""The id of a member a till made (``E-`` and a UUIDv7, ``Service.enrol``): an enrolment naming any other id (one of
head office's own numbering, given later) is not an enrolment a till makes."""


class EnrolPayload(Payload):
    member_id: TillMemberId | None
    """None only once the member was erased."""
    uid_hash: UidHash | None = None
    display_name: Text = ""
    tier: Text = ""
    store_id: Ident
    consent: Text | None = None
    points_delta: Delta = 0

    def values(self) -> Values:
        return Values(self.member_id, self.points_delta)


class ClaimKeyPayload(Payload):
    key_id: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{16,64}$")]
    public_key: Annotated[str, Strict(), Field(min_length=1, max_length=200)]
    alg: Literal["ed25519"] = "ed25519"


class TopupPayload(Payload):
    member_id: Ident
    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    note: Text = ""

    def values(self) -> Values:
        return Values(self.member_id, 0, self.amount)


class TillTopupPayload(Payload):
    """A top-up sold at the till: the POS took ``amount`` and the member's stored value rises by it."""

    member_id: Ident
    store_id: Ident
    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    stored_value_delta: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    """= ``amount`` (the till's pending balance reads this field of every entry)."""
    local_time: Annotated[str, Strict(), Field(min_length=10, max_length=40)]
    offline: Flag = False

    @model_validator(mode="after")
    def _adds_up(self) -> TillTopupPayload:
        if self.stored_value_delta != self.amount:
            raise ValueError("stored_value_delta is not amount")
        _check_time(self.local_time)
        return self

    def values(self) -> Values:
        return Values(self.member_id, 0, self.amount, self.amount)


class TopupVoidPayload(Payload):
    """The void of a top-up of this till: the whole amount goes back through the POS."""

    member_id: Ident
    store_id: Ident
    original_txn: Ident
    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    stored_value_delta: Annotated[int, Strict(), Field(ge=-MAX_AMOUNT, lt=0)]
    """= ``-amount``."""
    local_time: Annotated[str, Strict(), Field(min_length=10, max_length=40)]

    @model_validator(mode="after")
    def _adds_up(self) -> TopupVoidPayload:
        if self.stored_value_delta != -self.amount:
            raise ValueError("stored_value_delta is not -amount")
        _check_time(self.local_time)
        return self

    def values(self) -> Values:
        return Values(self.member_id, 0, -self.amount, -self.amount)


Hex16 = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{16}$")]
VoucherCode = Annotated[str, Strict(), Field(min_length=5, max_length=400)]
VoucherKind = Literal["amount", "product"]


class VoucherPayload(Payload):
    """What every voucher entry names: the voucher (its code, which head office verifies again, and the
    fields the code states), the store, and the till's time."""

    voucher_id: Hex16
    code: VoucherCode
    kind: VoucherKind
    value: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    sku: Annotated[str, Strict(), Field(max_length=64)] = ""
    store_id: Ident
    local_time: Annotated[str, Strict(), Field(min_length=10, max_length=40)]
    offline: Flag = False

    @model_validator(mode="after")
    def _timed(self) -> VoucherPayload:
        _check_time(self.local_time)
        return self


class VoucherSalePayload(VoucherPayload):
    """A voucher sold: the POS took ``amount`` (its value); sent to ``member_id``'s wallet when one is named."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    member_id: Ident | None = None

    @model_validator(mode="after")
    def _adds_up(self) -> VoucherSalePayload:
        if self.amount != self.value:
            raise ValueError("amount is not the voucher's value")
        return self

    def values(self) -> Values:
        return Values(None, 0, 0, self.amount)


class VoucherRedeemPayload(VoucherPayload):
    """A voucher used: an amount voucher paid ``value`` of the sale ``sale_ref`` the POS rang, a product
    voucher took ``value`` at most off one unit of its sku."""

    sale_ref: Annotated[str, Strict(), Field(max_length=128)] = ""
    confirmed: Flag = False
    """Head office confirmed it online before the till approved it."""


class VoucherRefundPayload(VoucherPayload):
    """A voucher refunded before use: the POS paid ``amount`` (its value) back."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]

    @model_validator(mode="after")
    def _adds_up(self) -> VoucherRefundPayload:
        if self.amount != self.value:
            raise ValueError("amount is not the voucher's value")
        return self

    def values(self) -> Values:
        return Values(None, 0, 0, -self.amount)


GiftCardId = Annotated[str, Strict(), Field(pattern=r"^G-[0-9a-f]{16}$")]
"""A gift card's id: ``G-`` and the first 16 hex digits of its card's keyed hash (``terminal.giftcards.card_id``)."""


class GiftPayload(Payload):
    """What every gift card entry of a till names: the card (its id and keyed hash), the store, the till's
    time. Gift card value is the card's own, never a member's: ``values`` moves no member's balance."""

    card_id: GiftCardId
    uid_hash: UidHash
    store_id: Ident
    local_time: Annotated[str, Strict(), Field(min_length=10, max_length=40)]
    offline: Flag = False

    @model_validator(mode="after")
    def _same_card(self) -> GiftPayload:
        _check_time(self.local_time)
        if self.card_id != "G-" + self.uid_hash[:16]:
            raise ValueError("card_id is not the card's")
        return self


class GiftActivatePayload(GiftPayload):
    """A gift card sold with ``amount`` on it: the POS took it (it counts in the till's takings)."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    trust: Literal["sun", "mac"]
    counter: Annotated[int, Strict(), Field(ge=0, le=0xFFFFFF)] | None = None
    """The SUN read counter of the tap that sold it: head office takes no earlier read of the card from then on
    (a read a phone kept from before the sale keeps nothing in a wallet)."""
    sun: Annotated[str, Strict(), Field(min_length=1, max_length=1024)] | None = None
    """The NDEF URL that tap read (its SUN message). Head office holding the card keys takes ``counter`` only
    from a message of this card and read that verifies: a counter alone is a till's word, and a stolen till
    credential could otherwise raise a card's counter out of reach and no till would take the card again."""

    @model_validator(mode="after")
    def _sun_read(self) -> GiftActivatePayload:
        if self.sun is not None and (self.trust != "sun" or self.counter is None):
            raise ValueError("a SUN message comes with a SUN tap's read counter")
        return self

    def values(self) -> Values:
        return Values(None, 0, 0, self.amount)


class GiftLoadPayload(GiftPayload):
    """``amount`` loaded onto an active gift card: the POS took it."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]

    def values(self) -> Values:
        return Values(None, 0, 0, self.amount)


class GiftRedeemPayload(GiftPayload):
    """The card paid ``amount`` of the sale ``sale_ref`` the POS rang (several cards may pay one sale)."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    tap: SecureTap
    sale_ref: Annotated[str, Strict(), Field(max_length=128)] = ""
    confirmed: Flag = False
    """Head office confirmed it online before the till approved it."""

    @model_validator(mode="after")
    def _tap_of_card(self) -> GiftRedeemPayload:
        if self.tap.uid_hash != self.uid_hash:
            raise ValueError("the tap is of another card")
        return self


class GiftRefundPayload(GiftPayload):
    """``amount`` of what the card paid in ``original_txn`` (a ``gift_redeem`` of this till) goes back on it."""

    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    original_txn: Ident


class GiftBlockPayload(GiftPayload):
    """The card blocked at the till: every till refuses it once it learns it; head office alone unblocks."""

    reason: Text = ""


class GiftAdminPayload(Payload):
    """Head office's own change of a gift card (``gift_unblock``; ``gift_clear`` with the balance it took):
    who asked and why are in the audit log."""

    card_id: GiftCardId
    reason: Text = ""
    amount: Amount = 0
    """``gift_clear``: the balance taken to zero."""


class GiftImportPayload(Payload):
    """Head office's own: a card of an earlier system brought in with the balance that system held."""

    card_id: GiftCardId
    uid_hash: UidHash
    amount: Amount
    source: Text = ""
    """The earlier system's reference for the card."""

    @model_validator(mode="after")
    def _same_card(self) -> GiftImportPayload:
        if self.card_id != "G-" + self.uid_hash[:16]:
            raise ValueError("card_id is not the card's")
        return self


class CheckinPayload(Payload):
    """A member checked in at the door reader: a visit, no value (head office grants a check-in campaign's
    reward, once per member, store and day)."""

    member_id: Ident | None
    """None only once the member was erased."""
    store_id: Ident
    uid_hash: UidHash | None = None
    reader: Text = ""

    def values(self) -> Values:
        return Values(self.member_id)


class AdjustPayload(Payload):
    member_id: Ident
    points: Delta = 0
    stored_value: Delta = 0
    reason: Annotated[str, Strict(), Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _moves_something(self) -> AdjustPayload:
        if self.points == 0 and self.stored_value == 0:
            raise ValueError("an adjustment moves points or stored value")
        return self

    def values(self) -> Values:
        return Values(self.member_id, self.points, self.stored_value)


AnyPayload = (
    SalePayload
    | RefundPayload
    | VoidPayload
    | EnrolPayload
    | ClaimKeyPayload
    | TopupPayload
    | TillTopupPayload
    | TopupVoidPayload
    | CheckinPayload
    | AdjustPayload
    | VoucherSalePayload
    | VoucherRedeemPayload
    | VoucherRefundPayload
    | GiftActivatePayload
    | GiftLoadPayload
    | GiftRedeemPayload
    | GiftRefundPayload
    | GiftBlockPayload
    | GiftAdminPayload
    | GiftImportPayload
)
PAYLOADS: dict[EntryKind, type[AnyPayload]] = {
    EntryKind.SALE: SalePayload,
    EntryKind.REFUND: RefundPayload,
    EntryKind.VOID: VoidPayload,
    EntryKind.ENROL: EnrolPayload,
    EntryKind.CLAIM_KEY: ClaimKeyPayload,
    EntryKind.TOPUP: TopupPayload,
    EntryKind.TILL_TOPUP: TillTopupPayload,
    EntryKind.TOPUP_VOID: TopupVoidPayload,
    EntryKind.CHECKIN: CheckinPayload,
    EntryKind.ADJUST: AdjustPayload,
    EntryKind.VOUCHER_SALE: VoucherSalePayload,
    EntryKind.VOUCHER_REDEEM: VoucherRedeemPayload,
    EntryKind.VOUCHER_REFUND: VoucherRefundPayload,
    EntryKind.GIFT_ACTIVATE: GiftActivatePayload,
    EntryKind.GIFT_LOAD: GiftLoadPayload,
    EntryKind.GIFT_REDEEM: GiftRedeemPayload,
    EntryKind.GIFT_REFUND: GiftRefundPayload,
    EntryKind.GIFT_BLOCK: GiftBlockPayload,
    EntryKind.GIFT_UNBLOCK: GiftAdminPayload,
    EntryKind.GIFT_CLEAR: GiftAdminPayload,
    EntryKind.GIFT_IMPORT: GiftImportPayload,
}


class PayloadError(ValueError):
    """A payload that is not its kind's model (``unknown`` when the kind itself is not one of ours)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


def _check_time(text: str) -> None:
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{where}: {err.get('msg', 'invalid')}"[:300]


def parse_payload(kind: str, payload: dict[str, Any]) -> AnyPayload:
    """The typed payload of an entry of ``kind``; ``PayloadError`` says what is wrong."""
    try:
        model = PAYLOADS[EntryKind(kind)]
    except ValueError as exc:
        raise PayloadError(f"unknown entry kind {kind!r}", unknown=True) from exc
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from exc


# -- online confirmation of a payment ------------------------------------------------------------


class ConfirmRequest(_Model):
    """``POST /v1/payments/confirm``: a till about to approve a spend asks head office first, naming the
    device code (``code_id`` and the code itself, whose signature head office checks) or the secure card
    tap that authorises it. The code, or the card's read counter, is then used, chain-wide."""

    model_config = ConfigDict(extra="forbid")

    member_id: Ident
    amount: Amount
    """Stored value to take (0: points only)."""
    txn_id: Ident
    code_id: Annotated[str, Strict(), Field(min_length=3, max_length=64)] | None = None
    code: Annotated[str, Strict(), Field(min_length=1, max_length=512)] | None = None
    card: SecureTap | None = None

    @model_validator(mode="after")
    def _one_proof(self) -> ConfirmRequest:
        if (self.card is None) == (self.code is None) or (self.code is None) != (self.code_id is None):
            raise ValueError("name either a code (code_id and code) or a card")
        return self

    @property
    def use_id(self) -> str:
        """What makes this confirmation single-use: the code id, or the card and its read counter."""
        if self.code_id is not None:
            return self.code_id
        assert self.card is not None
        return card_use_id(self.card, self.txn_id)


def card_use_id(tap: SecureTap, txn_id: str) -> str:
    """What a card tap's online confirmation is recorded under (``payment_confirms.code_id``): the card and its
    read counter, or, for a read without one (a Lite-S MAC read), the transaction it was asked for."""
    return f"card:{tap.uid_hash}:{tap.counter if tap.counter is not None else txn_id}"


class VoucherConfirmRequest(_Model):
    """``POST /v1/vouchers/confirm``: a till about to approve a voucher's redemption (or, at the store that
    sold it, its refund) asks head office first; head office records the voucher's one use under a unique
    constraint, so a second till is refused at once."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["redeem", "refund"]
    txn_id: Ident
    code: VoucherCode


class GiftConfirmRequest(_Model):
    """``POST /v1/giftcards/confirm``: a till about to let a gift card pay asks head office first; head office
    checks the card, its tap (a SUN read counter is used once in the chain) and its balance less what other
    tills were confirmed and have not journaled yet, and records this payment."""

    model_config = ConfigDict(extra="forbid")

    card_id: GiftCardId
    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_AMOUNT)]
    txn_id: Ident
    tap: SecureTap


MAX_WITHDRAWALS = 100


class WithdrawRequest(_Model):
    """``POST /v1/payments/withdraw``: a till withdraws confirmations it asked for and did not use (the answer
    was lost and its offline rules refused, or the sale failed after head office confirmed it), so head office
    stops holding their amounts back. Only the caller's own confirmations whose entries head office does not
    hold are withdrawn; the same request again changes nothing."""

    model_config = ConfigDict(extra="forbid")

    txn_ids: list[Ident] = Field(min_length=1, max_length=MAX_WITHDRAWALS)


# -- shared pure helpers -------------------------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime (no zone: UTC); None when it is not one."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day_totals(entries: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, KindTotals]:
    """Counts and sums per kind of (kind, payload) pairs: both ends compute end-of-day totals with this.
    An entry that is not its kind's model counts, with nothing to add."""
    totals: dict[str, KindTotals] = {}
    for kind, payload in entries:
        t = totals.setdefault(kind, KindTotals())
        t.count += 1
        try:
            values = parse_payload(kind, payload).values()
        except PayloadError:
            continue
        t.total += values.total
        t.points += values.points
        t.stored_value += values.stored_value
    return totals
