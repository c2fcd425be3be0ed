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
    GET  /v1/flags                                    -> list[ReconItem] (what head office flagged for this terminal)

Push is idempotent: an entry is stored once per (terminal_id, seq) and once per txn_id; a retried
batch gets the same answer. ``acked_seq`` is the highest seq such that every seq from 1 to it is
stored, so the terminal can mark exactly those entries as pushed and resend the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS = frozenset({1})
MAX_BATCH = 1000
CLOCK_HEADER = "X-Tillpoint-Clock"
SNAPSHOT_KINDS = ("members", "cards", "rules", "rule_docs", "coupons", "keys", "revocations", "device_certs")


class ErrorCode(StrEnum):
    """Every ``code`` an ``ErrorBody`` can carry, with its HTTP status in ``ERROR_STATUS``."""

    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    BAD_ENCODING = "bad_encoding"
    UNAUTHORIZED = "unauthorized"
    CREDENTIAL_REVOKED = "credential_revoked"
    ENROL_CODE_INVALID = "enrol_code_invalid"
    WRONG_TERMINAL = "wrong_terminal"
    UNKNOWN_TERMINAL = "unknown_terminal"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SEQ_CONFLICT = "seq_conflict"
    BODY_TOO_LARGE = "body_too_large"
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


ERROR_STATUS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.UNSUPPORTED_PROTOCOL: (400, "the request's protocol version is not one this server speaks"),
    ErrorCode.BAD_ENCODING: (400, "Content-Encoding is not gzip/identity, or the gzip body is corrupt"),
    ErrorCode.UNAUTHORIZED: (401, "missing, malformed or unknown bearer token"),
    ErrorCode.CREDENTIAL_REVOKED: (401, "this terminal's credential was revoked at head office"),
    ErrorCode.ENROL_CODE_INVALID: (401, "the enrolment code is unknown, expired or already used"),
    ErrorCode.WRONG_TERMINAL: (403, "the body or an entry names another terminal than the token's"),
    ErrorCode.UNKNOWN_TERMINAL: (403, "the token's terminal has no registration"),
    ErrorCode.FORBIDDEN: (403, "an administrator token is needed"),
    ErrorCode.NOT_FOUND: (404, "no such path or item"),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "wrong HTTP method"),
    ErrorCode.SEQ_CONFLICT: (409, "an entry reuses a stored (terminal, seq) or txn_id with other content; nothing stored"),
    ErrorCode.BODY_TOO_LARGE: (413, "the (decompressed) body is larger than head office accepts"),
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
}


class Reason(StrEnum):
    """Why head office opened a reconciliation item (docs/reconciliation.md)."""

    COUPON_OVERUSED = "coupon_overused"
    UNKNOWN_COUPON = "unknown_coupon"
    POINTS_OVERSPENT = "points_overspent"
    STORED_VALUE_OVERSPENT = "stored_value_overspent"
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


class ItemState(StrEnum):
    OPEN = "open"
    SETTLED_AUTO = "settled_auto"
    SETTLED_MANUAL = "settled_manual"


# -- push ---------------------------------------------------------------------------------------


class WireEntry(BaseModel):
    terminal_id: str
    seq: int = Field(ge=1)
    txn_id: str
    kind: str
    payload: dict[str, Any]
    created_at: str


class PushRequest(BaseModel):
    protocol: int = PROTOCOL_VERSION
    terminal_id: str
    entries: list[WireEntry] = Field(max_length=MAX_BATCH)


class PushResponse(BaseModel):
    acked_seq: int
    stored: int
    duplicates: int
    gaps: list[tuple[int, int]] = Field(default_factory=list)
    """Missing seq ranges (first, last), inclusive, below the highest seq head office holds."""
    flagged: int = 0
    """Reconciliation items this batch opened (the entries are stored all the same)."""


# -- pull ---------------------------------------------------------------------------------------


class WireMember(BaseModel):
    member_id: str
    display_name: str
    tier: str
    points: int
    status: Literal["active", "blocked"]
    stored_value: int = 0


class WireCard(BaseModel):
    uid_hash: str
    member_id: str
    status: Literal["active", "blocked"]


class WireRule(BaseModel):
    rule_id: str
    points: int = Field(ge=0)
    per_minor: int = Field(gt=0)


class WireRuleDoc(BaseModel):
    """An earning rule authored at head office; ``body`` is opaque here (terminal/loyalty.py reads it)."""

    rule_id: str
    body: dict[str, Any]


class WireCoupon(BaseModel):
    """A coupon document; ``member_id`` is the body's for personal coupons. ``uses`` is head office's count."""

    coupon_id: str
    member_id: str | None = None
    body: dict[str, Any]
    uses: int = 0


class WireKey(BaseModel):
    """A public key tills verify QR payloads and payment codes with, signed by head office's root key."""

    key_id: str
    body: dict[str, Any]
    """{"key_id", "alg": "ed25519", "public_key" (base64url), "purpose", "status", "created_at"}"""
    sig: str
    """base64url Ed25519 signature of ``canonical_json(body)`` by the root key."""


class WireRevocation(BaseModel):
    """One entry of the revocation list (a card, a credential, a key, a payment device...), signed."""

    revocation_id: str
    body: dict[str, Any]
    """{"kind", "subject", "reason", "revoked_at"}; revocation_id is "kind:subject"."""
    sig: str


class WireDeviceCert(BaseModel):
    """A member device's certificate (``terminal.payments.DeviceCert.to_doc()``), signed by head office's payment key."""

    cert_id: str
    member_id: str
    body: dict[str, Any]


class Tombstone(BaseModel):
    kind: Literal["member", "card", "rule", "rule_doc", "coupon", "key", "revocation", "device_cert"]
    id: str


class ChangesPage(BaseModel):
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
    deleted: list[Tombstone] = Field(default_factory=list)

    def size(self) -> int:
        return sum(len(getattr(self, name)) for name in (*SNAPSHOT_KINDS, "deleted"))


class SnapshotInfo(BaseModel):
    version: int
    """Continue with ``GET /v1/changes?since=version`` once every kind is loaded."""
    counts: dict[str, int]


class SnapshotPage(BaseModel):
    """Rows of one kind ordered by primary key, as compact arrays in ``columns`` order."""

    kind: str
    columns: list[str]
    rows: list[list[Any]]
    next: str | None
    """Pass as ``after`` for the next page; null when this kind is done."""


SNAPSHOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id", "display_name", "tier", "points", "status", "stored_value"),
    "cards": ("uid_hash", "member_id", "status"),
    "rules": ("rule_id", "points", "per_minor"),
    "rule_docs": ("rule_id", "body"),
    "coupons": ("coupon_id", "member_id", "body", "uses"),
    "keys": ("key_id", "body", "sig"),
    "revocations": ("revocation_id", "body", "sig"),
    "device_certs": ("cert_id", "member_id", "body"),
}
"""Body columns travel as JSON text inside the row, so a page is parsed once, not per document."""


# -- terminals ----------------------------------------------------------------------------------


class EnrolRequest(BaseModel):
    code: str = Field(min_length=4, max_length=64)
    terminal_id: str | None = None
    """If given, must match the terminal the code was issued for."""


class EnrolResponse(BaseModel):
    terminal_id: str
    store_id: str
    token: str
    root_key: str
    """base64url Ed25519 public key that signs keys and revocations; pin it."""


# -- end of day and reconciliation ---------------------------------------------------------------


class KindTotals(BaseModel):
    count: int = 0
    total: int = 0
    points: int = 0
    stored_value: int = 0


class EodReport(BaseModel):
    terminal_id: str
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=0)
    totals: dict[str, KindTotals]


class EodResult(BaseModel):
    terminal_id: str
    day: str
    status: Literal["complete", "incomplete"]
    missing: list[tuple[int, int]] = Field(default_factory=list)
    """Seq ranges of the day head office does not hold yet."""
    mismatches: list[str] = Field(default_factory=list)
    """Human-readable differences between the till's totals and head office's."""


class ReconItem(BaseModel):
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


class ErrorBody(BaseModel):
    code: str
    message: str


# -- shared pure helpers -------------------------------------------------------------------------


def _int(value: Any) -> int:
    # bool is an int subclass; True must not become one point.
    return value if type(value) is int else 0


def day_totals(entries: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, KindTotals]:
    """Counts and sums per kind of (kind, payload) pairs: both ends compute end-of-day totals with this."""
    totals: dict[str, KindTotals] = {}
    for kind, payload in entries:
        t = totals.setdefault(kind, KindTotals())
        t.count += 1
        t.total += _int(payload.get("total"))
        t.points += _int(payload.get("points_delta"))
        t.stored_value += _int(payload.get("stored_value_delta"))
    return totals
