"""Earning rules and coupons for administrators' programs (administrator token; docs/editors.md): thin over
``hq.masterdata``, the path the back office's editors save on too.

GET    /v1/admin/{rules|coupons}          the live documents (chain-wide coupons only), by id:
                                          {rule_id | coupon_id, digest, document}
GET    /v1/admin/{rules|coupons}/{id}     one, with its digest also as the ETag (a personal coupon too)
PUT    /v1/admin/{rules|coupons}/{id}     the JSON document; ?reason= why; If-Match: the digest it was made on, or
                                          If-None-Match: * to make a new one only; neither: whatever is held
DELETE /v1/admin/{rules|coupons}/{id}     retire it; ?reason=; If-Match as above

A document the tills would not read is refused (``document_invalid``, naming each field and its code, as the
editors show them) and nothing is written; so is a change without a reason, or made on a version no longer
held (``document_changed``). Every change is in the audit log, with the administrator's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header, Path, Query, Response

from hq import documents, masterdata
from hq.api.deps import Admin, Store
from hq.api.errors import ApiError, errors
from sync.protocol import ErrorCode
from terminal.canonical import doc_digest

router = APIRouter()
T = TypeVar("T")

DocId = Annotated[str, Path(min_length=1, max_length=64)]
Reason = Annotated[str, Query(min_length=1, max_length=masterdata.MAX_REASON)]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=80)]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=8)]
read_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)
write_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.NOT_FOUND,
    ErrorCode.DOCUMENT_INVALID,
    ErrorCode.DOCUMENT_CHANGED,
    ErrorCode.REASON_REQUIRED,
)
_CODES = {
    masterdata.Refusal.NOT_FOUND: ErrorCode.NOT_FOUND,
    masterdata.Refusal.CHANGED: ErrorCode.DOCUMENT_CHANGED,
    masterdata.Refusal.REASON_REQUIRED: ErrorCode.REASON_REQUIRED,
}
_PLURAL = {masterdata.RULE: "rules", masterdata.COUPON: "coupons"}


def _shown(kind: str, doc_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {masterdata.id_column(kind): doc_id, "digest": doc_digest(doc), "document": doc}


def _version(if_match: str | None, if_none_match: str | None) -> str:
    """The version a change names: ``If-None-Match: *`` a new document, ``If-Match`` a digest (quotes of an
    entity tag taken off), neither whatever is held."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise ApiError(ErrorCode.INVALID_REQUEST, "If-None-Match takes only *")
        return masterdata.NEW
    if if_match is None or if_match.strip() == "*":
        return masterdata.ANY
    return if_match.strip().strip('"')


def _call(call: Callable[[], T]) -> T:
    try:
        return call()
    except documents.DocumentInvalid as exc:
        if any(e.code is documents.Code.EXISTS for e in exc.errors):
            raise ApiError(ErrorCode.DOCUMENT_CHANGED, f"a live document holds this id: {exc}") from exc
        raise ApiError(ErrorCode.DOCUMENT_INVALID, str(exc)) from exc
    except masterdata.MasterDataRefused as exc:
        raise ApiError(_CODES[exc.refusal], str(exc)) from exc


def _routes(kind: str) -> None:
    plural, key = _PLURAL[kind], masterdata.id_column(kind)

    def list_documents(store: Store, admin: Admin) -> list[dict[str, Any]]:
        with store.db.read() as tx:
            return [_shown(kind, doc_id, doc) for doc_id, doc in masterdata.listed(tx, kind)]

    def get_document(store: Store, admin: Admin, doc_id: DocId, response: Response) -> dict[str, Any]:
        with store.db.read() as tx:
            doc = masterdata.held(tx, kind, doc_id, personal=True)
        if doc is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no live {kind} {doc_id}")
        shown = _shown(kind, doc_id, doc)
        response.headers["ETag"] = f'"{shown["digest"]}"'
        return shown

    def put_document(
        store: Store,
        admin: Admin,
        doc_id: DocId,
        reason: Reason,
        body: Annotated[dict[str, Any], Body()],
        response: Response,
        if_match: IfMatch = None,
        if_none_match: IfNoneMatch = None,
    ) -> dict[str, Any]:
        if key in body and body[key] != doc_id:
            raise ApiError(ErrorCode.DOCUMENT_INVALID, f"{key}: {documents.Code.BAD_ID.value} (not the path's id)")
        doc = {**body, key: doc_id}
        version = _version(if_match, if_none_match)
        digest = _call(lambda: masterdata.put(store, kind, doc, admin, reason, version))
        response.headers["ETag"] = f'"{digest}"'
        return {key: doc_id, "digest": digest}

    def delete_document(
        store: Store, admin: Admin, doc_id: DocId, reason: Reason, if_match: IfMatch = None
    ) -> dict[str, Any]:
        version = _version(if_match, None)
        _call(lambda: masterdata.retire(store, kind, doc_id, admin, reason, version))
        return {key: doc_id, "retired": True}

    one = f"/v1/admin/{plural}/{{doc_id}}"
    router.add_api_route(
        f"/v1/admin/{plural}", list_documents, methods=["GET"], responses=read_errors, name=f"list_{plural}"
    )
    router.add_api_route(one, get_document, methods=["GET"], responses=read_errors, name=f"get_{kind}")
    router.add_api_route(one, put_document, methods=["PUT"], responses=write_errors, name=f"put_{kind}")
    router.add_api_route(one, delete_document, methods=["DELETE"], responses=write_errors, name=f"retire_{kind}")


for _kind in masterdata.KINDS:
    _routes(_kind)
