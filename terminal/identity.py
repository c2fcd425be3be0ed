"""Who is at the till and how they pay: a member identified by a card tap, and the payment they chose.

Pure data of the core, shared by the service, the one sale path and the parts that only see them through
``terminal.ports``.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal import credentials
from terminal.model import Card, Member


@dataclass(frozen=True, slots=True)
class Identified:
    """A member identified by a card: the card, how far the read can be trusted, and when it was read."""

    member: Member
    card: Card
    proof: credentials.CardProof = credentials.CardProof(credentials.Trust.UID_ONLY)
    uid_hash: str = ""
    at: float = 0.0  # when the card was read: one physical tap (a replayed message is another read)
    sun: str | None = None  # the SUN message as read, journalled so head office can check it again
    replayed: bool = False  # a secure message whose counter the chain already used: it only identifies


@dataclass(frozen=True, slots=True)
class Payment:
    """How the member pays their part: stored value (None = as much as the balance covers, after
    points), authorised by a one-time code from the member's device (a payment code, or a fresh
    member code) or by a card that can prove itself."""

    stored_value: int | None = 0
    code: str | None = None
    card: Identified | None = None
