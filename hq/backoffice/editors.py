"""The rule and coupon editors: the lists, saving and retiring a document, and the quote preview.

A document is checked by ``hq.documents`` (the typed form, then the till's own parser) and stored through
the one path head office stores documents on (``HqStore.put_rule_doc``, ``put_coupon``, ``delete``: its
version is kept and the tills pull it), with the audit record in the same transaction. Chain
administrators and marketing edit; every other role that reads them reads only (``roles``).

The preview prices a basket for a member twice with the tills' own pricing: under the documents head
office holds now, and with the document being edited in place of its current version (not saved).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hq import audit, documents
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Scope, allowed
from hq.backoffice.staff import Staff
from hq.db.engine import Tx
from hq.ingest import rule_documents
from hq.store import HqStore
from terminal import loyalty as ly
from terminal import pricing
from terminal.canonical import doc_digest

RULE, COUPON = "rule", "coupon"
KINDS = (RULE, COUPON)
_TABLE = {RULE: ("rule_docs", "rule_id", "rule_doc"), COUPON: ("coupons", "coupon_id", "coupon")}
Field = tuple[str, str, tuple[str, ...]]
"""A form field: its name, its widget (id, text, number, select, checkbox, textarea), its choices."""
_N: tuple[str, ...] = ()
_CONDITIONS: tuple[Field, ...] = (
    ("stores", "text", _N),
    ("weekdays", "text", _N),
    ("hours", "text", _N),
    ("starts", "text", _N),
    ("ends", "text", _N),
)
FORMS: dict[str, tuple[Field, ...]] = {
    RULE: (
        ("rule_id", "id", _N),
        ("kind", "select", documents.RULE_KINDS),
        ("text", "text", _N),
        ("points", "number", _N),
        ("per_minor", "number", _N),
        ("multiplier_pct", "number", _N),
        ("tier", "text", _N),
        ("cap", "number", _N),
        ("priority", "number", _N),
        ("mode", "select", documents.MODES),
        ("skus", "text", _N),
        ("categories", "text", _N),
        ("per_unit", "checkbox", _N),
        ("levels", "text", _N),
        ("measure", "select", documents.MEASURES),
        ("window_days", "number", _N),
        *_CONDITIONS,
    ),
    COUPON: (
        ("coupon_id", "id", _N),
        ("kind", "select", documents.COUPON_KINDS),
        ("text", "text", _N),
        ("description", "textarea", _N),
        ("value", "number", _N),
        ("target", "select", documents.TARGETS),
        ("skus", "text", _N),
        ("categories", "text", _N),
        ("buy", "number", _N),
        ("get", "number", _N),
        ("min_spend", "number", _N),
        ("required_skus", "text", _N),
        ("tiers", "text", _N),
        ("member_only", "checkbox", _N),
        ("exclusive", "checkbox", _N),
        ("limit_global", "number", _N),
        ("limit_per_member", "number", _N),
        *_CONDITIONS,
    ),
}
"""The editors' fields, in the order the page shows them."""
LISTED = 500
"""At most this many documents a list shows (personal coupons, one per member, are not listed)."""


def need(who: Staff, action: Action) -> None:
    """Rules and coupons are the chain's: a list scope (a store manager reads them, edits none)."""
    if not allowed(who.role, action, Scope(who.stores, None)):
        raise BackofficeRefused(Code.FORBIDDEN, f"{who.role} may not do this")


def _kind(kind: str) -> tuple[str, str, str]:
    if kind not in _TABLE:
        raise BackofficeRefused(Code.NOT_FOUND, f"no editor for {kind}")
    return _TABLE[kind]


def listed(tx: Tx, who: Staff, kind: str) -> list[dict[str, Any]]:
    """The live documents of ``kind`` (chain-wide coupons only), by id."""
    need(who, Action.RULES_READ)
    table, key, _ = _kind(kind)
    personal = " AND member_id IS NULL" if kind == COUPON else ""
    rows = tx.all(f"SELECT {key}, body FROM {table} WHERE deleted = 0{personal} ORDER BY {key} LIMIT {LISTED}")
    shown = []
    for doc_id, body in rows:
        doc = json.loads(str(body))
        shown.append({"id": str(doc_id), "kind": str(doc.get("kind", "")), "text": str(doc.get("text") or "")})
    return shown


def held(tx: Tx, kind: str, doc_id: str, *, taken: bool = False) -> dict[str, Any] | None:
    """The live document the editor may open, edit or retire: a member's personal coupon (a reward bought
    with points, a campaign's) is not one of them; ``taken``: any live document of that id, personal ones too
    (an id a new document may not take)."""
    table, key, _ = _kind(kind)
    personal = " AND member_id IS NULL" if kind == COUPON and not taken else ""
    row = tx.one(f"SELECT body FROM {table} WHERE {key} = ? AND deleted = 0{personal}", [doc_id])
    loaded = json.loads(str(row[0])) if row else None
    return loaded if isinstance(loaded, dict) else None


def form_of(kind: str, doc_id: str, doc: dict[str, Any]) -> dict[str, str]:
    """The editor's form of a stored document, with the version it shows (``digest``: a save of a form
    opened before someone else saved is refused)."""
    shown = documents.rule_form(doc_id, doc) if kind == RULE else documents.coupon_form(doc_id, doc)
    return shown | {"editing": doc_id, "digest": doc_digest(doc)}


def _document(kind: str, form: dict[str, str], before: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    if kind == RULE:
        return documents.rule_document(form, before)
    return documents.coupon_document(form, before)


def _id_field(kind: str) -> str:
    return _kind(kind)[1]


def checked(tx: Tx, kind: str, form: dict[str, str]) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """The document a form saves, and the one it replaces: a new one may not take a live id; an edit keeps
    its id and the fields the form does not manage."""
    editing = form.get("editing", "")
    before = held(tx, kind, editing) if editing else None
    if editing and before is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no {kind} {editing}")
    if before is not None and form.get("digest", "") != doc_digest(before):
        raise BackofficeRefused(Code.EDITED_MEANWHILE, f"{kind} {editing} was saved since the form was opened")
    doc_id, doc = _document(kind, form, before)
    field = _id_field(kind)
    if editing and doc_id != editing:
        raise documents.DocumentInvalid([documents.FieldError(field, documents.Code.BAD_ID)])
    if not editing and held(tx, kind, doc_id, taken=True) is not None:
        raise documents.DocumentInvalid([documents.FieldError(field, documents.Code.EXISTS)])
    return doc_id, doc, before


def reason_of(text: str) -> str:
    reason = " ".join(text.split())
    if not reason or len(reason) > 200:
        raise BackofficeRefused(Code.REASON_REQUIRED, "a reason of 1 to 200 characters is required")
    return reason


def save(store: HqStore, who: Staff, kind: str, form: dict[str, str]) -> str:
    """Store the document the form describes (new or edited); returns its id. Nothing is written unless
    every field passes (``documents.DocumentInvalid``) and a reason is given."""
    need(who, Action.RULES_EDIT)
    with store.db.read() as tx:
        doc_id, doc, before = checked(tx, kind, form)
    reason = reason_of(form.get("reason", ""))
    details = {"document": doc, "created": before is None}

    def record(tx: Tx) -> None:
        _unchanged_since(tx, kind, doc_id, before)  # again, inside the write (after the row's lock)
        audit.append(tx, who.staff_id, f"{kind}_put", doc_id, reason, details)

    if kind == RULE:
        store.put_rule_doc(doc, doc_id, also=record)
    else:
        store.put_coupon(doc, doc_id, also=record)
    return doc_id


def _unchanged_since(tx: Tx, kind: str, doc_id: str, before: dict[str, Any] | None) -> None:
    now = held(tx, kind, doc_id, taken=before is None)
    if before is None and now is not None:
        raise documents.DocumentInvalid([documents.FieldError(_id_field(kind), documents.Code.EXISTS)])
    if before is not None and (now is None or doc_digest(now) != doc_digest(before)):
        raise BackofficeRefused(Code.EDITED_MEANWHILE, f"{kind} {doc_id} was saved or retired meanwhile")


def retire(store: HqStore, who: Staff, kind: str, doc_id: str, reason_text: str) -> None:
    """The document is deleted: the tills get its tombstone with their next pull and stop applying it."""
    need(who, Action.RULES_EDIT)
    _, _, tombstone = _kind(kind)
    reason = reason_of(reason_text)
    with store.db.read() as tx:
        if held(tx, kind, doc_id) is None:
            raise BackofficeRefused(Code.NOT_FOUND, f"no {kind} {doc_id}")

    def record(tx: Tx) -> None:
        audit.append(tx, who.staff_id, f"{kind}_retire", doc_id, reason)

    if not store.delete(tombstone, doc_id, also=record):
        raise BackofficeRefused(Code.NOT_FOUND, f"no {kind} {doc_id}")


# -- the preview -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    current: documents.Figures | None
    """The basket under the documents held now (None: the basket or member could not be read)."""
    edited: documents.Figures | None
    """With the document being edited in place (None: it does not pass its checks)."""
    errors: dict[str, str]
    """What stopped either side: the form's fields and their codes."""


def _member(tx: Tx, member_id: str) -> pricing.Member | None:
    if not member_id:
        return None
    row = tx.one("SELECT tier, points FROM members WHERE member_id = ? AND deleted = 0", [member_id])
    if row is None:
        raise documents.DocumentInvalid([documents.FieldError("member", documents.Code.UNKNOWN_MEMBER)])
    return pricing.Member(member_id, str(row[0]), max(0, int(row[1])))


def _local_now(tx: Tx, store_id: str) -> datetime:
    """The store's wall-clock time, as its tills see it: in its time zone when head office has its calendar
    (``hq.businessday``), else head office's own."""
    row = tx.one("SELECT timezone FROM stores WHERE store_id = ?", [store_id]) if store_id else None
    if row is None:
        return datetime.now()
    return datetime.now(ZoneInfo(str(row[0]))).replace(tzinfo=None)


def preview(store: HqStore, who: Staff, kind: str, form: dict[str, str], at: datetime | None = None) -> Preview:
    """What the basket of ``form`` earns and pays for its member now and with the edited document."""
    need(who, Action.RULES_EDIT)
    _kind(kind)
    with store.db.read() as tx:
        try:
            basket = documents.basket_of(form.get("basket", ""))
            member = _member(tx, form.get("member", "").strip())
        except documents.DocumentInvalid as exc:
            return Preview(None, None, exc.by_field())
        docs, base = rule_documents(tx)
        editing = form.get("editing", "")
        before = held(tx, kind, editing) if editing else None
        try:
            edited: tuple[str, dict[str, Any]] | None = _document(kind, form, before)
            errors: dict[str, str] = {}
        except documents.DocumentInvalid as exc:
            edited, errors = None, exc.by_field()
        store_id = form.get("store", "").strip()[:64]
        moment = at or _local_now(tx, store_id)
    ctx = ly.SaleContext(
        moment,
        store_id,
        member.member_id if member else None,
        member.tier if member else None,
    )
    if kind == RULE:
        then = documents.quote(docs, base, basket, ctx, member)
        after = documents.quote(docs | {edited[0]: edited[1]}, base, basket, ctx, member) if edited else None
    else:
        offered = {editing: before} if before is not None else {}
        then = documents.quote(docs, base, basket, ctx, member, offered)
        after = documents.quote(docs, base, basket, ctx, member, {edited[0]: edited[1]}) if edited else None
    return Preview(then, after, errors)


__all__ = ["COUPON", "FORMS", "KINDS", "RULE", "Preview", "form_of", "held", "listed", "preview", "retire", "save"]
