"""The rule and coupon editors: the lists, saving and retiring a document, and the quote preview.

A form becomes a document by ``hq.documents`` (the typed form); ``hq.masterdata`` checks it with the till's own
parser and stores it on the one path head office stores documents on, with the audit record in the same
transaction (the administrators' API stores JSON documents there too). Chain administrators and marketing
edit; every other role that reads them reads only (``roles``).

The preview prices a basket for a member twice with the tills' own pricing: under the documents head
office holds now, and with the document being edited in place of its current version (not saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hq import documents, masterdata
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.ingest import rule_documents
from hq.store import HqStore
from terminal import loyalty as ly
from terminal import pricing
from terminal.canonical import doc_digest

RULE, COUPON = masterdata.RULE, masterdata.COUPON
KINDS = masterdata.KINDS
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
LISTED = masterdata.LISTED


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise BackofficeRefused(Code.NOT_FOUND, f"no editor for {kind}")
    return kind


def listed(tx: Tx, who: Staff, kind: str) -> list[dict[str, Any]]:
    """The live documents of ``kind`` (chain-wide coupons only), by id."""
    require(who, Action.RULES_READ)
    return [
        {"id": doc_id, "kind": str(doc.get("kind", "")), "text": str(doc.get("text") or "")}
        for doc_id, doc in masterdata.listed(tx, _kind(kind))
    ]


def held(tx: Tx, kind: str, doc_id: str) -> dict[str, Any] | None:
    """The live document the editor may open, edit or retire: a member's personal coupon (a reward bought
    with points, a campaign's) is not one of them."""
    return masterdata.held(tx, _kind(kind), doc_id)


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
    return masterdata.id_column(_kind(kind))


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
    if not editing and masterdata.held(tx, kind, doc_id, personal=True) is not None:
        raise documents.DocumentInvalid([documents.FieldError(field, documents.Code.EXISTS)])
    return doc_id, doc, before


def reason_of(text: str) -> str:
    try:
        return masterdata.reason_of(text)
    except masterdata.MasterDataRefused as exc:
        raise BackofficeRefused(Code.REASON_REQUIRED, str(exc)) from exc


_REFUSED = {
    masterdata.Refusal.NOT_FOUND: Code.NOT_FOUND,
    masterdata.Refusal.CHANGED: Code.EDITED_MEANWHILE,
    masterdata.Refusal.REASON_REQUIRED: Code.REASON_REQUIRED,
}


def save(store: HqStore, who: Staff, kind: str, form: dict[str, str]) -> str:
    """Store the document the form describes (new or edited); returns its id. Nothing is written unless
    every field passes (``documents.DocumentInvalid``), a reason is given and nobody saved it since the form was
    opened (checked again inside the write)."""
    require(who, Action.RULES_EDIT)
    with store.db.read() as tx:
        doc_id, doc, before = checked(tx, kind, form)
    reason = reason_of(form.get("reason", ""))
    version = masterdata.NEW if before is None else doc_digest(before)
    try:
        masterdata.put(store, kind, doc, who.staff_id, reason, version)
    except masterdata.MasterDataRefused as exc:
        raise BackofficeRefused(_REFUSED[exc.refusal], str(exc)) from exc
    return doc_id


def retire(store: HqStore, who: Staff, kind: str, doc_id: str, reason_text: str) -> None:
    """The document is deleted: the tills get its tombstone with their next pull and stop applying it."""
    require(who, Action.RULES_EDIT)
    reason = reason_of(reason_text)
    with store.db.read() as tx:
        shown = held(tx, kind, doc_id)
    if shown is None:
        raise BackofficeRefused(Code.NOT_FOUND, f"no {kind} {doc_id}")
    try:
        masterdata.retire(store, kind, doc_id, who.staff_id, reason, doc_digest(shown))
    except masterdata.MasterDataRefused as exc:
        raise BackofficeRefused(_REFUSED[exc.refusal], str(exc)) from exc


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
    require(who, Action.RULES_EDIT)
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
