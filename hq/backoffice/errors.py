"""How the back office says no: ``Refused(code)`` with a stable ``Code`` (shown in the page as
``#error[data-code]``) and the HTTP status of each code.

    HqError
     └── BackofficeRefused      code: Code, status: STATUS[code]
"""

from __future__ import annotations

from enum import StrEnum

from hq.errors import HqError


class Code(StrEnum):
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED_OUT = "locked_out"
    SIGN_IN_REQUIRED = "sign_in_required"
    BAD_ORIGIN = "bad_origin"
    BAD_CSRF = "bad_csrf"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    REASON_REQUIRED = "reason_required"
    BAD_AMOUNT = "bad_amount"
    BELOW_ZERO = "below_zero"
    OWN_REQUEST = "own_request"
    ALREADY_DECIDED = "already_decided"
    BAD_STAFF = "bad_staff"
    CAMPAIGN_INVALID = "campaign_invalid"
    CAMPAIGN_EXISTS = "campaign_exists"
    # reconciliation
    BAD_FILTER = "bad_filter"
    ALREADY_SETTLED = "already_settled"
    HELD_IN_QUARANTINE = "held_in_quarantine"
    NOTE_REQUIRED = "note_required"
    BAD_PERIOD = "bad_period"
    DOCUMENT_INVALID = "document_invalid"
    LAST_ADMIN = "last_admin"
    EDITED_MEANWHILE = "edited_meanwhile"
    UNKNOWN_MERCHANT = "unknown_merchant"
    GIFT_CARD_INVALID = "gift_card_invalid"
    MERCHANT_POINTS_ONLY = "merchant_points_only"
    NO_HOLD = "no_hold"
    HOLD_ENTRY_ARRIVED = "hold_entry_arrived"
    PASSWORDS_DIFFER = "passwords_differ"
    OWN_PASSWORD_RESET = "own_password_reset"
    # the second factor (hq/backoffice/factors.py)
    BAD_CODE = "bad_code"
    CODE_USED = "code_used"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    ENROL_REQUIRED = "enrol_required"
    ALREADY_ENROLLED = "already_enrolled"
    NO_SECOND_FACTOR = "no_second_factor"
    OWN_SECOND_FACTOR = "own_second_factor"
    OWN_ENROL_CODE = "own_enrol_code"
    ENROL_CODE_REQUIRED = "enrol_code_required"
    ENROL_CODE_BAD = "enrol_code_bad"
    BAD_SECRET = "bad_secret"
    ACCOUNT_DISABLED = "account_disabled"
    APP_CODE_REQUIRED = "app_code_required"


STATUS: dict[Code, int] = {
    Code.OWN_PASSWORD_RESET: 403,
    Code.BAD_CREDENTIALS: 401,
    Code.LOCKED_OUT: 429,
    Code.SIGN_IN_REQUIRED: 401,
    Code.BAD_ORIGIN: 403,
    Code.BAD_CSRF: 403,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.REASON_REQUIRED: 422,
    Code.BAD_AMOUNT: 422,
    Code.BELOW_ZERO: 409,
    Code.OWN_REQUEST: 403,
    Code.ALREADY_DECIDED: 409,
    Code.BAD_STAFF: 422,
    Code.CAMPAIGN_INVALID: 422,
    Code.CAMPAIGN_EXISTS: 409,
    Code.BAD_FILTER: 422,
    Code.ALREADY_SETTLED: 409,
    Code.HELD_IN_QUARANTINE: 409,
    Code.NOTE_REQUIRED: 422,
    Code.BAD_PERIOD: 422,
    Code.DOCUMENT_INVALID: 422,
    Code.LAST_ADMIN: 409,
    Code.EDITED_MEANWHILE: 409,
    Code.UNKNOWN_MERCHANT: 422,
    Code.GIFT_CARD_INVALID: 409,
    Code.MERCHANT_POINTS_ONLY: 403,
    Code.NO_HOLD: 409,
    Code.HOLD_ENTRY_ARRIVED: 409,
    Code.PASSWORDS_DIFFER: 422,
    Code.BAD_CODE: 401,
    Code.CODE_USED: 401,
    Code.SECOND_FACTOR_REQUIRED: 401,
    Code.ENROL_REQUIRED: 403,
    Code.ALREADY_ENROLLED: 409,
    Code.NO_SECOND_FACTOR: 409,
    Code.OWN_SECOND_FACTOR: 403,
    Code.OWN_ENROL_CODE: 403,
    Code.ENROL_CODE_REQUIRED: 403,
    Code.ENROL_CODE_BAD: 403,
    Code.BAD_SECRET: 403,
    Code.ACCOUNT_DISABLED: 409,
    Code.APP_CODE_REQUIRED: 403,
}


class BackofficeRefused(HqError):
    def __init__(self, code: Code, message: str = "") -> None:
        super().__init__(message or code.value)
        self.code = code
        self.status = STATUS[code]


__all__ = ["STATUS", "BackofficeRefused", "Code"]
