"""Campaigns (administrator token; docs/campaigns.md): store, read, list, change state, run what is due,
and report what one earned (JSON, CSV or an SVG chart); the programme against the holdout; settings.

    PUT    /v1/admin/campaigns/{id}                 the campaign JSON -> the stored campaign (its version)
    GET    /v1/admin/campaigns/{id}                 one campaign, with its runs
    GET    /v1/admin/campaigns                      every campaign
    POST   /v1/admin/campaigns/{id}/state           {state: active|paused|ended}
    POST   /v1/admin/campaigns/run                  {now?}: every campaign due -> what each run did
    GET    /v1/admin/campaigns/{id}/report          ?as_of=&format=json|csv|svg
    GET    /v1/admin/programme                      ?as_of=: each holdout period against everyone else
    GET|PUT /v1/admin/campaign-settings             the offer cap, the holdout, category margins
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from hq import campaigns, outcomes, segments
from hq.api.deps import Admin, Store
from hq.api.errors import ApiError, errors
from sync.protocol import ErrorCode

router = APIRouter()
T = TypeVar("T")

CAMPAIGN_CODES = (ErrorCode.CAMPAIGN_MALFORMED, ErrorCode.CAMPAIGN_ENDED)
CampaignId = Annotated[str, Path(min_length=1, max_length=64, pattern=campaigns.CAMPAIGN_ID.pattern)]
Day = Annotated[
    str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="The reference day (default: today, UTC)")
]

read_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)
write_errors = errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, *CAMPAIGN_CODES)


class StateChange(BaseModel):
    state: Literal["active", "paused", "ended"]


class RunRequest(BaseModel):
    now: str | None = Field(
        default=None,
        description="Run as at this ISO time with an offset (default: now, refused as clock_suspect while head "
        "office's clock disagrees with its tills)",
    )


@router.get("/v1/admin/campaigns", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def list_campaigns(store: Store, admin: Admin) -> list[dict[str, Any]]:
    return campaigns.all_campaigns(store.db)


@router.post("/v1/admin/campaigns/run", responses={**write_errors, **errors(ErrorCode.CLOCK_SUSPECT)})
def run_due(store: Store, body: Annotated[RunRequest, Body()], admin: Admin) -> list[dict[str, Any]]:
    """Run every active campaign whose schedule is due (idempotent: a rerun issues nothing twice)."""
    return _campaign(lambda: campaigns.run_due(store.db, campaigns.run_now(store.db, body.now)))


@router.put("/v1/admin/campaigns/{campaign_id}", responses=write_errors)
def put_campaign(
    store: Store, campaign_id: CampaignId, body: Annotated[dict[str, Any], Body()], admin: Admin
) -> dict[str, Any]:
    """Check a campaign and store it; a changed spec applies to the runs after it."""
    return _campaign(lambda: campaigns.save(store.db, campaign_id, body, admin))


@router.get("/v1/admin/campaigns/{campaign_id}", responses=read_errors)
def get_campaign(store: Store, campaign_id: CampaignId, admin: Admin) -> dict[str, Any]:
    return _campaign(lambda: campaigns.show(store.db, campaign_id))


@router.post("/v1/admin/campaigns/{campaign_id}/state", responses=write_errors)
def change_state(
    store: Store, campaign_id: CampaignId, body: Annotated[StateChange, Body()], admin: Admin
) -> dict[str, Any]:
    return _campaign(lambda: campaigns.change_state(store.db, campaign_id, body.state))


@router.get("/v1/admin/campaigns/{campaign_id}/report", responses=read_errors, response_model=None)
def campaign_report(
    store: Store,
    campaign_id: CampaignId,
    admin: Admin,
    as_of: Day = None,
    format: Annotated[Literal["json", "csv", "svg"], Query()] = "json",
) -> dict[str, Any] | Response:
    """Per arm: targeted, issued, delivered, redeemed; per variant: the difference from control per member."""
    found = _campaign(lambda: outcomes.campaign_report(store.db, campaign_id, segments.reference_day(as_of)))
    if format == "csv":
        return PlainTextResponse(outcomes.as_csv(found), media_type="text/csv")
    if format == "svg":
        return Response(outcomes.as_svg(found), media_type="image/svg+xml")
    return found


@router.get("/v1/admin/programme", responses=read_errors)
def programme(store: Store, admin: Admin, as_of: Day = None) -> list[dict[str, Any]]:
    """Each holdout period: everyone else against the holdout, per member."""
    return _campaign(lambda: outcomes.programme_report(store.db, segments.reference_day(as_of)))


@router.get("/v1/admin/campaign-settings", responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN))
def get_settings(store: Store, admin: Admin) -> dict[str, Any]:
    return campaigns.settings_of(store.db).model_dump()


@router.put("/v1/admin/campaign-settings", responses=write_errors)
def put_settings(store: Store, body: Annotated[dict[str, Any], Body()], admin: Admin) -> dict[str, Any]:
    return _campaign(lambda: campaigns.save_settings(store.db, body).model_dump())


def _campaign(call: Callable[[], T]) -> T:
    try:
        return call()
    except (campaigns.UnknownCampaign, segments.UnknownSegment) as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except campaigns.CampaignInvalid as exc:
        raise ApiError(exc.code, str(exc)) from exc
    except segments.SegmentInvalid as exc:
        raise ApiError(exc.code, str(exc)) from exc
