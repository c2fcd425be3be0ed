"""Members joining at the till: a new card enrolled by the cashier, and the receipt's signed claim code.

    enrol_on_tap(cards, armed, emit, read, refused)   a tap refused as unknown while the cashier
                                          armed "new member": enrol the card (offline too), then identify it
    ClaimSigner(store, terminal_id, key_path)   the session's ``make_claim_token``: signs a
                                          ``TPJ1:`` token for a sale with this till's claim key

The claim key is an Ed25519 key made by the till and kept in a file beside the card key (0600).
Its public half goes to head office as a journal entry of kind ``claim_key`` (once per key), so
the till signs offline and head office verifies every token once the journal arrived
(docs/enrolment.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sync import claims
from sync.protocol import ClaimKeyPayload
from terminal.errors import Code, Rejected
from terminal.identity import Identified
from terminal.keys import write_private
from terminal.model import CardRead, JournalEntry, Receipt, utc_iso
from terminal.ports import CardDesk, ClaimJournal, Clock, Emit, EnrolArm
from terminal.service import new_txn_id

log = logging.getLogger(__name__)

CLAIM_KEY_BYTES = 32
"""An Ed25519 private key, raw."""
CLAIM_TTL = claims.TTL
"""Seconds a receipt's claim code stays good (a month to get home and scan it)."""
TILL_CONSENT = "till-2026-11"
"""The version of the words the cashier reads out before enrolling a card (docs/enrolment.md)."""


def enrol_on_tap(cards: CardDesk, armed: EnrolArm | None, emit: Emit, read: CardRead, refused: Rejected) -> Identified:
    """The card of a refused tap, enrolled when the cashier armed "new member" (``armed``: the
    cashier's session); else ``refused`` again. The enrolment is an ``enrolled`` event."""
    if refused.code is not Code.UNKNOWN_CARD or armed is None or not armed.wants_enrol():
        raise refused
    made = cards.enrol(read, consent=TILL_CONSENT)
    emit({"type": "enrolled", "reader": read.reader, "member_id": made.member.member_id})
    return cards.identify(read)


def load_or_create_claim_key(path: Path) -> Ed25519PrivateKey:
    """The till's claim key at ``path``; made (mode 0600) the first time, and again when the file is damaged.

    Unlike the card-hash key (the chain's, shared with head office), this key is the till's own and head office
    already holds the public half of every key it journalled: a file left empty by a crash, cut short or not a
    file at all is set aside (``claim.key.damaged-<time>``, for staff to look at) and a new key takes its place,
    journalled on its first use. Codes printed before still verify at head office."""
    if path.exists() or path.is_symlink():
        raw = _readable_key(path)
        if raw is not None:
            return Ed25519PrivateKey.from_private_bytes(raw)
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
        path.rename(aside)
        log.warning("the claim key %s was damaged: kept aside as %s, a new claim key is made", path, aside.name)
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    return key


def _readable_key(path: Path) -> bytes | None:
    """The key's 32 bytes, or None when the file cannot give them."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return raw if len(raw) == CLAIM_KEY_BYTES else None


class ClaimSigner:
    """Signs claim tokens for this till's sales; journals its public key the first time it signs."""

    def __init__(
        self, store: ClaimJournal, terminal_id: str, key_path: Path, clock: Clock = time.time, ttl: int = CLAIM_TTL
    ) -> None:
        self.store, self.terminal_id, self.clock, self.ttl = store, terminal_id, clock, ttl
        self.key = load_or_create_claim_key(key_path)
        self.public = claims.public_bytes(self.key)
        self.key_id = claims.key_id_of(self.public).hex()
        self._last = ("", "")

    def __call__(self, receipt: Receipt) -> str:
        if self._last[0] != receipt.txn_id:  # the panel redraws often: one token per sale
            self.register()
            self._last = (receipt.txn_id, claims.sign(self.key, receipt.txn_id, int(self.clock()), self.ttl))
        return self._last[1]

    def register(self) -> None:
        """Journal the public key once (head office ignores a second copy)."""
        if self.store.state("claim_key_id") == self.key_id:
            return
        payload = ClaimKeyPayload(key_id=self.key_id, public_key=claims.b64(self.public)).wire()
        entry = JournalEntry(self.terminal_id, 0, new_txn_id(), "claim_key", payload, utc_iso(self.clock()))
        self.store.record(entry)
        self.store.set_state(claim_key_id=self.key_id)


def claim_signer(store: ClaimJournal, terminal_id: str, data_dir: Path) -> ClaimSigner:
    """This till's signer of claim codes, its key in ``claim.key`` of the data directory."""
    return ClaimSigner(store, terminal_id, data_dir / "claim.key")


__all__ = ["CLAIM_TTL", "ClaimSigner", "TILL_CONSENT", "claim_signer", "enrol_on_tap", "load_or_create_claim_key"]
