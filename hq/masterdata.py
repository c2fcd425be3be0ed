"""Earning rules and coupons as head office keeps them for the tills: read, list, store and retire.

The back office's editors (forms) and the administrators' API (JSON documents) change them here, and only
here: a document is checked by the tills' own parser (``hq.documents``), stored on the one path head office
stores documents on (``HqStore.put_rule_doc``, ``put_coupon``, ``delete``: its version is kept and the tills pull
it), and recorded in the audit log in the same transaction: who, what, why. A change names the version it was
made on (``NEW``, a document's digest, or ``ANY``), so two people editing one document never overwrite each
other unseen.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from hq import audit, documents
from hq.db.engine import Tx
from hq.errors import HqError
from hq.store import HqStore
from terminal.canonical import canonical_json, doc_digest

RULE, COUPON = "rule", "coupon"
KINDS = (RULE, COUPON)
_TABLE = {RULE: ("rule_docs", "rule_id", "rule_doc"), COUPON: ("coupons", "coupon_id", "coupon")}
"""A kind's table, id column and tombstone kind."""
LISTED = 500
"""At most this many documents a list holds (personal coupons, one per member, are not listed)."""
NEW = "new"
"""The version of a change that makes a document: refused if the id is taken."""
ANY = "*"
"""The version of a change made whatever the document holds now (an administrator's own file)."""
MAX_REASON = 200
MAX_DOCUMENT = 64 * 1024
"""Bytes of a document's canonical JSON: every till holds every chain-wide document and pulls each change."""


class Refusal(StrEnum):
    NOT_FOUND = "not_found"
    """No such kind, or no live document of that id."""
    CHANGED = "document_changed"
    """The document was saved or retired since the version the change was made on."""
    REASON_REQUIRED = "reason_required"
    """Every change says why, in 1 to 200 characters."""


class MasterDataRefused(HqError):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


def id_column(kind: str) -> str:
    return _table(kind)[1]


def _table(kind: str) -> tuple[str, str, str]:
    if kind not in _TABLE:
        raise MasterDataRefused(Refusal.NOT_FOUND, f"no documents of kind {kind!r}")
    return _TABLE[kind]


def listed(tx: Tx, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The live documents of ``kind`` (chain-wide coupons only), by id: (id, document)."""
    table, key, _ = _table(kind)
    personal = " AND member_id IS NULL" if kind == COUPON else ""
    rows = tx.all(f"SELECT {key}, body FROM {table} WHERE deleted = 0{personal} ORDER BY {key} LIMIT {LISTED}")
    found = [(str(doc_id), json.loads(str(body))) for doc_id, body in rows]
    return [(doc_id, doc) for doc_id, doc in found if isinstance(doc, dict)]


def held(tx: Tx, kind: str, doc_id: str, *, personal: bool = False) -> dict[str, Any] | None:
    """The live document of that id; a member's personal coupon (a reward bought with points, a campaign's)
    only with ``personal``."""
    table, key, _ = _table(kind)
    chain_wide = " AND member_id IS NULL" if kind == COUPON and not personal else ""
    row = tx.one(f"SELECT body FROM {table} WHERE {key} = ? AND deleted = 0{chain_wide}", [doc_id])
    loaded = json.loads(str(row[0])) if row else None
    return loaded if isinstance(loaded, dict) else None


def reason_of(text: str) -> str:
    reason = " ".join(text.split())
    if not reason or len(reason) > MAX_REASON:
        raise MasterDataRefused(Refusal.REASON_REQUIRED, f"a reason of 1 to {MAX_REASON} characters is required")
    return reason


def check(kind: str, doc_id: str, doc: dict[str, Any]) -> None:
    """``documents.DocumentInvalid`` unless the tills would read ``doc`` as ``doc_id``."""
    key = id_column(kind)
    if doc.get(key) != doc_id or documents.ID.fullmatch(doc_id) is None:
        raise documents.DocumentInvalid([documents.FieldError(key, documents.Code.BAD_ID)])
    try:
        size = len(canonical_json(doc))
    except ValueError:  # a lone surrogate, NaN: no till could read or sign it
        raise documents.DocumentInvalid([documents.FieldError("document", documents.Code.TILL_REFUSES)]) from None
    if size > MAX_DOCUMENT:
        raise documents.DocumentInvalid([documents.FieldError("document", documents.Code.TOO_LONG)])
    if kind == RULE:
        documents.check_rule(doc_id, doc)
    else:
        documents.check_coupon(doc_id, doc)


def _on_version(tx: Tx, kind: str, doc_id: str, version: str) -> dict[str, Any] | None:
    """What the document holds now, if ``version`` is what the change was made on; refused otherwise."""
    now = held(tx, kind, doc_id, personal=True)
    if version == NEW and now is not None:
        raise documents.DocumentInvalid([documents.FieldError(id_column(kind), documents.Code.EXISTS)])
    if version not in (NEW, ANY) and (now is None or doc_digest(now) != version):
        raise MasterDataRefused(Refusal.CHANGED, f"{kind} {doc_id} was saved or retired since version {version}")
    return now


def put(store: HqStore, kind: str, doc: dict[str, Any], who: str, reason: str, version: str = ANY) -> str:
    """Store ``doc`` (its id in it) made on ``version``; returns its digest. Nothing is written unless the tills
    would read it, a reason is given and the version holds (checked inside the write)."""
    key = id_column(kind)
    doc_id = str(doc.get(key, ""))
    check(kind, doc_id, doc)
    why = reason_of(reason)

    def record(tx: Tx) -> None:
        before = _on_version(tx, kind, doc_id, version)
        audit.append(tx, who, f"{kind}_put", doc_id, why, {"document": doc, "created": before is None})

    if kind == RULE:
        store.put_rule_doc(doc, doc_id, also=record)
    else:
        store.put_coupon(doc, doc_id, also=record)
    return doc_digest(doc)


def retire(store: HqStore, kind: str, doc_id: str, who: str, reason: str, version: str = ANY) -> None:
    """The document is deleted: the tills get its tombstone with their next pull and stop applying it."""
    table, key, tombstone = _table(kind)
    why = reason_of(reason)

    def record(tx: Tx) -> None:  # runs once the row is marked deleted: its body is the version retired
        row = tx.one(f"SELECT body FROM {table} WHERE {key} = ?", [doc_id])
        if version != ANY and (row is None or doc_digest(json.loads(str(row[0]))) != version):
            raise MasterDataRefused(Refusal.CHANGED, f"{kind} {doc_id} was saved since version {version}")
        audit.append(tx, who, f"{kind}_retire", doc_id, why)

    if not store.delete(tombstone, doc_id, also=record):
        raise MasterDataRefused(Refusal.NOT_FOUND, f"no live {kind} {doc_id}")


__all__ = [
    "ANY",
    "COUPON",
    "KINDS",
    "LISTED",
    "NEW",
    "RULE",
    "MasterDataRefused",
    "Refusal",
    "check",
    "held",
    "id_column",
    "listed",
    "put",
    "reason_of",
    "retire",
]
