"""Wire models of the store <-> head-office protocol, shared by both ends. Pure (pydantic only).

Version 1, all JSON over HTTPS, every request with ``Authorization: Bearer <terminal token>``:

    POST /v1/journal            PushRequest   -> PushResponse
    GET  /v1/changes?since=N&limit=M          -> ChangesPage
    GET  /v1/health                           -> {"status": "ok", "time": ...}

Push is idempotent: an entry is stored once per (terminal_id, seq) and once per txn_id; a retried
batch gets the same answer. ``acked_seq`` is the highest seq such that every seq from 1 to it is
stored, so the terminal can mark exactly those entries as pushed and resend the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

PROTOCOL_VERSION = 1
MAX_BATCH = 1000


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


class WireMember(BaseModel):
    member_id: str
    display_name: str
    tier: str
    points: int
    status: Literal["active", "blocked"]


class WireCard(BaseModel):
    uid_hash: str
    member_id: str
    status: Literal["active", "blocked"]


class WireRule(BaseModel):
    rule_id: str
    points: int = Field(ge=0)
    per_minor: int = Field(gt=0)


class ChangesPage(BaseModel):
    cursor: int
    """Pass back as ``since`` to continue; it only moves forward."""
    more: bool
    members: list[WireMember] = Field(default_factory=list)
    cards: list[WireCard] = Field(default_factory=list)
    rules: list[WireRule] = Field(default_factory=list)


class ErrorBody(BaseModel):
    code: str
    message: str
