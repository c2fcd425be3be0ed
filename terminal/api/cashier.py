"""Routes of the cashier workflow: the session, pairing, the event stream and the panel's files.

Included by ``terminal.api.app.create_app``; the guard middleware there (Host, Origin, JSON-only
bodies) runs first. Everything that reads member data or changes state needs a token: the daemon's
own (its token file, for the CLI) or a paired device's. The session is the daemon's (``Cashier``
in terminal/ports.py); this module only translates HTTP to its methods and back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from terminal.api.events import EventHub
from terminal.api.pairing import Pairing
from terminal.model import Line
from terminal.ports import Cashier, PosTill

PANEL_DIR = Path(__file__).with_name("panel")
PANEL_HEADERS = {
    # The panel loads only its own files and talks only to this origin; no other site may frame it.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

ActionName = Literal[
    "identify", "coupon", "pay", "cancel", "confirm", "total", "points", "new", "enrol", "topup", "gift"
]


class Body(BaseModel):
    """A request body of the local API, read strictly: ``true`` is not 1, ``"2500"`` not an amount and ``1.0`` not
    a quantity; a POS sending one has a bug, named with the field (422 ``invalid_request``), not guessed at."""

    model_config = ConfigDict(strict=True)


class LineIn(Body):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: int = Field(ge=0, le=10**12)
    category: str = Field(default="", max_length=64)


class BasketIn(Body):
    lines: list[LineIn] = Field(min_length=1, max_length=500)


class TotalIn(Body):
    amount: int = Field(gt=0, le=10**12)
    """The total typed in by the cashier, in minor units."""


class IdentifyIn(Body):
    member_id: str | None = Field(default=None, min_length=1, max_length=64)
    code: str | None = Field(default=None, min_length=1, max_length=4096)
    """A member code as scanned (``TPM2:...``, signed), or a member number printed on a card."""


class CouponIn(Body):
    code: str = Field(min_length=1, max_length=4096)
    """A coupon code as scanned (``TPC1:...``) or a coupon id as printed."""


class CouponOut(Body):
    coupon_id: str = Field(min_length=1, max_length=256)


class RewardIn(Body):
    reward_id: str = Field(min_length=1, max_length=48)


class PayIn(Body):
    redeem: int | None = Field(default=None, ge=-1, le=10**12)
    """Points to pay with (-1: as many as allowed; none: the till's default)."""


class ActionIn(Body):
    action: ActionName


class ScanIn(Body):
    text: str = Field(min_length=1, max_length=4096)


class PairIn(Body):
    code: str = Field(min_length=1, max_length=16)
    name: str = Field(default="device", max_length=64)


class FocusIn(Body):
    focused: bool


def cashier_router(
    till: PosTill, cashier: Cashier, pairing: Pairing, token: Callable[..., None], hub: EventHub
) -> APIRouter:
    """``token``: the dependency that checks a request's API token (terminal/api/app.py)."""
    router = APIRouter()
    secured = [Depends(token)]

    def session() -> Cashier:
        return cashier

    # -- the session ----------------------------------------------------------------------------

    @router.get("/v1/session", dependencies=secured, tags=["session"])
    def session_state() -> dict[str, Any]:
        """The cashier session now: state, member, basket, coupons, quote, receipt, customer QR."""
        return dict(session().snapshot())

    @router.post("/v1/session/identify", dependencies=secured, tags=["session"])
    def identify(body: IdentifyIn) -> dict[str, Any]:
        """Identify by member id, or by a member code; with neither, arm the till for a tap or scan."""
        if body.code:
            return dict(
                session().scan(body.code) if body.code.startswith("TP") else session().identify(body.code, "code")
            )
        if body.member_id:
            return dict(session().identify(body.member_id, "typed"))
        return dict(session().press("identify"))

    @router.post("/v1/session/basket", dependencies=secured, tags=["session"])
    def basket(body: BasketIn) -> dict[str, Any]:
        """The POS's basket (replaces the previous one); priced at once."""
        lines = [Line(x.sku, x.quantity, x.unit_price, x.category) for x in body.lines]
        return dict(session().set_basket(lines, "pos"))

    @router.post("/v1/session/total", dependencies=secured, tags=["session"])
    def total(body: TotalIn) -> dict[str, Any]:
        """Cashier-only mode: the total typed in, as a one-line basket."""
        return dict(session().set_total(body.amount))

    @router.post("/v1/session/coupons", dependencies=secured, tags=["session"])
    def apply_coupon(body: CouponIn) -> dict[str, Any]:
        return dict(session().apply_coupon(body.code))

    @router.post("/v1/session/coupons/remove", dependencies=secured, tags=["session"])
    def remove_coupon(body: CouponOut) -> dict[str, Any]:
        return dict(session().remove_coupon(body.coupon_id))

    @router.post("/v1/session/rewards", dependencies=secured, tags=["session"])
    def add_reward(body: RewardIn) -> dict[str, Any]:
        """The identified member buys a reward of the catalogue with points (docs/rewards.md)."""
        return dict(session().add_reward(body.reward_id))

    @router.post("/v1/session/rewards/remove", dependencies=secured, tags=["session"])
    def remove_reward(body: RewardIn) -> dict[str, Any]:
        return dict(session().remove_reward(body.reward_id))

    @router.post("/v1/session/pay", dependencies=secured, tags=["session"])
    def pay(body: PayIn) -> dict[str, Any]:
        """To the payment step: points paid and what the POS still collects; nothing recorded yet."""
        return dict(session().pay(body.redeem))

    @router.post("/v1/session/commit", dependencies=secured, tags=["session"])
    def commit() -> dict[str, Any]:
        """Record the sale; the receipt exists only once it is durable."""
        return dict(session().confirm())

    @router.post("/v1/session/void", dependencies=secured, tags=["session"])
    def void_last() -> dict[str, Any]:
        return dict(session().void())

    @router.post("/v1/session/cancel", dependencies=secured, tags=["session"])
    def cancel() -> dict[str, Any]:
        """Esc: drop what was armed, else leave the payment step, else start over."""
        return dict(session().cancel())

    @router.post("/v1/session/new", dependencies=secured, tags=["session"])
    def new() -> dict[str, Any]:
        return dict(session().reset())

    @router.post("/v1/enrol/arm", dependencies=secured, tags=["session"])
    def enrol_arm() -> dict[str, Any]:
        """New member: the next tap of a card the till does not know enrols it (offline too), and the
        sale in progress earns its points."""
        return dict(session().press("enrol"))

    @router.get(
        "/v1/session/claim.png",
        dependencies=secured,
        tags=["session"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "no claim code now"}},
    )
    def claim_png() -> Response:
        """The receipt's claim QR (PNG, 1 mm modules at 203 dpi) of the anonymous sale just done."""
        png = session().claim_png()
        if png is None:
            return JSONResponse({"code": "no_claim_code", "message": "No anonymous sale is done."}, status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.post("/v1/session/action", dependencies=secured, tags=["session"])
    def action(body: ActionIn) -> dict[str, Any]:
        """A key: what the hotkeys and the panel's shortcuts send."""
        return dict(session().press(body.action))

    @router.post("/v1/session/scan", dependencies=secured, tags=["session"])
    def scan(body: ScanIn) -> dict[str, Any]:
        """A code typed or read into the panel (a keyboard-wedge scanner typing into its field)."""
        return dict(session().scan(body.text))

    # -- pairing ---------------------------------------------------------------------------------

    @router.post("/v1/pair/code", dependencies=secured, tags=["pairing"])
    def pair_code() -> dict[str, Any]:
        """A new pairing code to show on the till (the previous one stops working)."""
        code = pairing.new_code()
        return {"code": code.code, "expires_in": code.expires_in}

    @router.post("/v1/pair", tags=["pairing"])
    def pair(body: PairIn) -> dict[str, Any]:
        """Trade the code shown on the till for this device's token (shown once)."""
        device, secret = pairing.redeem(body.code, body.name)
        till.emit({"type": "paired", "device_id": device.device_id, "name": device.name})
        return {**device.public(), "token": secret}

    @router.get("/v1/pair/devices", dependencies=secured, tags=["pairing"])
    def devices() -> list[dict[str, str]]:
        return list(pairing.devices())

    @router.post("/v1/pair/devices/{device_id}/revoke", dependencies=secured, tags=["pairing"])
    def revoke(device_id: str) -> Response:
        if not pairing.revoke(device_id):
            return JSONResponse({"code": "unknown_device", "message": "No such paired device."}, status_code=404)
        return JSONResponse({"revoked": device_id})

    # -- the event stream -------------------------------------------------------------------------

    @router.get(
        "/v1/stream",
        dependencies=secured,
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        after: int = Query(default=-1, ge=-1),
        types: str = Query(default="", max_length=500),
        last_event_id: str = Header(default="", max_length=20),
    ) -> Response:
        """Server-Sent Events: reader, scanner, member, sale, sync and session events. ``after``: replay
        the recent events after that id first (-1: live only); ``Last-Event-ID`` does the same on a
        reconnect. ``types``: comma-separated event types to keep (default: all)."""
        if hub.full():
            return JSONResponse({"code": "too_many_streams", "message": "Too many event streams."}, status_code=503)
        start = int(last_event_id) if last_event_id.isdigit() else after
        wanted = [t for t in types.split(",") if t]
        return StreamingResponse(
            hub.stream(start, wanted),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- the panel --------------------------------------------------------------------------------

    @router.get("/v1/panel/config", tags=["panel"])
    def panel_config() -> dict[str, Any]:
        """Keys, language and currency of the panel (no personal data: no token)."""
        return dict(till.panel_config())

    @router.get("/v1/checkin/code", tags=["panel"])
    def checkin_code() -> JSONResponse:
        """The till's check-in code for the current 30 s step: the link its QR carries, the QR as SVG and when
        the next one comes (no personal data: no token; a door display shows it, docs/checkin.md)."""
        return JSONResponse(dict(till.checkin_code()), headers={"Cache-Control": "no-store"})

    @router.post("/v1/panel/focus", dependencies=secured, tags=["panel"])
    def panel_focus(body: FocusIn) -> dict[str, bool]:
        """The panel has (or lost) the keyboard: global hotkeys stay silent while it has."""
        till.panel_focus(body.focused)
        return {"focused": body.focused}

    @router.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/panel/")

    return router


class PanelFiles(StaticFiles):
    """The panel's static files, with the security headers of a page that drives a till."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PANEL_HEADERS)
        return response


def panel_files() -> PanelFiles:
    return PanelFiles(directory=PANEL_DIR, html=True)


__all__ = ["PANEL_DIR", "Body", "cashier_router", "panel_files"]
