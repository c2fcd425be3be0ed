"""Segments as data (administrator token; docs/segments.md): store, read, list and delete definitions,
and preview a stored or an unsaved one on a reference day (a count and a sample of member ids).

    PUT    /v1/admin/segments/{id}           {name, definition} -> the stored segment (its version)
    GET    /v1/admin/segments/{id}, DELETE    one segment
    GET    /v1/admin/segments                every segment
    POST   /v1/admin/segments/{id}/preview   {as_of?, sample?} -> {as_of, count, sample}
    POST   /v1/admin/segments/preview        {definition, as_of?, sample?}: a definition not stored
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field

from hq import segments
from hq.api.deps import Admin, Store
from hq.api.errors import ApiError, errors
from sync.protocol import ErrorCode

router = APIRouter()
T = TypeVar("T")

SEGMENT_CODES = tuple(code for code in ErrorCode if code.value.startswith("segment_"))
SegmentId = Annotated[str, Path(min_length=1, max_length=64, pattern=segments.SEGMENT_ID.pattern)]
Day = Annotated[
    str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="The reference day (default: today, UTC)")
]
Sample = Annotated[int, Field(ge=0, le=segments.MAX_SAMPLE, description="How many member ids to return")]
Definition = Annotated[
    dict[str, Any],
    Field(description='The definition: {"where": <condition>, "description": "..."} (docs/segments.md)'),
]


class SegmentPut(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    definition: Definition


class PreviewRequest(BaseModel):
    as_of: Day = None
    sample: Sample = 20


class DefinitionPreview(PreviewRequest):
    definition: Definition


read_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)
write_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, *SEGMENT_CODES)
preview_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, *SEGMENT_CODES)


@router.get("/v1/admin/segments", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def list_segments(store: Store, admin: Admin) -> list[dict[str, Any]]:
    """Every stored segment, by id."""
    return segments.all_segments(store.db)


@router.post("/v1/admin/segments/preview", responses=write_errors)
def preview_definition(store: Store, body: Annotated[DefinitionPreview, Body()], admin: Admin) -> dict[str, Any]:
    """How many members an unsaved definition holds on a day, and the first of them by member id."""
    return _segment(lambda: segments.preview_definition(store.db, body.definition, body.as_of, body.sample))


@router.put("/v1/admin/segments/{segment_id}", responses=write_errors)
def put_segment(
    store: Store, segment_id: SegmentId, body: Annotated[SegmentPut, Body()], admin: Admin
) -> dict[str, Any]:
    """Check a definition and store it (replacing what was there; its version counts changes)."""
    return _segment(lambda: segments.save(store.db, segment_id, body.name, body.definition, admin))


@router.get("/v1/admin/segments/{segment_id}", responses=read_errors)
def get_segment(store: Store, segment_id: SegmentId, admin: Admin) -> dict[str, Any]:
    return _segment(lambda: segments.show(store.db, segment_id))


@router.delete("/v1/admin/segments/{segment_id}", responses=read_errors)
def delete_segment(store: Store, segment_id: SegmentId, admin: Admin) -> dict[str, Any]:
    _segment(lambda: segments.remove(store.db, segment_id))
    return {"segment_id": segment_id, "deleted": True}


@router.post("/v1/admin/segments/{segment_id}/preview", responses=preview_errors)
def preview_segment(
    store: Store, segment_id: SegmentId, body: Annotated[PreviewRequest, Body()], admin: Admin
) -> dict[str, Any]:
    """How many members a stored segment holds on a day, and the first of them by member id."""
    return _segment(lambda: segments.preview_saved(store.db, segment_id, body.as_of, body.sample))


def _segment(call: Callable[[], T]) -> T:
    try:
        return call()
    except segments.UnknownSegment as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except segments.SegmentInvalid as exc:
        raise ApiError(exc.code, str(exc)) from exc
