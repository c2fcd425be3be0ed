"""The local API: status, events, sales and voids, and a simulated tap for the demo.

Security (DESIGN.md section 5): loopback only; Host and Origin checked against an allowlist so a
web page cannot reach the till through DNS rebinding or a cross-site request; every state change
needs the bearer token from the daemon's token file; only JSON bodies are accepted.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from terminal.credentials import parse_uid
from terminal.errors import Rejected
from terminal.model import Basket, Line

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


class LineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: int = Field(ge=0, le=10**12)
    category: str = ""


class SaleIn(BaseModel):
    member_id: str | None = None
    use_identified: bool = True
    """With no member_id, the member of the last tap (if any) earns the points."""
    lines: list[LineIn] = Field(min_length=1, max_length=500)


class Unauthorized(Exception):
    """A state change without the API token."""


class TapIn(BaseModel):
    uid: str


def _host_allowed(value: str | None) -> bool:
    if not value:
        return False
    host = value.rsplit(":", 1)[0] if not value.endswith("]") else value
    return host in LOOPBACK_HOSTS


def _origin_allowed(origin: str | None) -> bool:
    if origin is None:
        return True
    scheme, _, rest = origin.partition("://")
    return scheme == "http" and _host_allowed(rest)


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def create_app(daemon: Any) -> FastAPI:
    app = FastAPI(title="tillpoint local API", version="1")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if not _host_allowed(request.headers.get("host")):
            return _refuse(403, "bad_host", "Host not allowed.")
        if not _origin_allowed(request.headers.get("origin")):
            return _refuse(403, "bad_origin", "Origin not allowed.")
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return _refuse(403, "bad_content_type", "Only application/json bodies are accepted.")
        return await call_next(request)

    @app.exception_handler(Rejected)
    async def rejected(_: Request, exc: Rejected) -> JSONResponse:
        return _refuse(409, exc.code.value, exc.message)

    def token(authorization: str = Header(default="")) -> None:
        given = authorization.removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given, daemon.api_token):
            raise Unauthorized()

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        return _refuse(403, "unauthorized", "A valid API token is required for this action.")

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return dict(daemon.status())

    @app.get("/v1/events")
    def events(after: int = 0) -> list[dict[str, Any]]:
        return list(daemon.events_after(after))

    @app.post("/v1/sales", dependencies=[Depends(token)])
    def sale(body: SaleIn) -> dict[str, Any]:
        member_id = body.member_id
        if member_id is None and body.use_identified and daemon.identified is not None:
            member_id = daemon.identified.member.member_id
        basket = Basket(tuple(Line(x.sku, x.quantity, x.unit_price, x.category) for x in body.lines))
        receipt = daemon.sell(member_id, basket)
        return asdict(receipt)

    @app.post("/v1/sales/{txn_id}/void", dependencies=[Depends(token)])
    def void(txn_id: str) -> dict[str, Any]:
        return asdict(daemon.service.void(txn_id))

    @app.post("/v1/sim/tap", dependencies=[Depends(token)], status_code=202)
    def tap(body: TapIn) -> dict[str, str]:
        try:
            uid = parse_uid(body.uid)
        except ValueError as exc:
            return _refuse(422, "bad_uid", str(exc))  # type: ignore[return-value]
        daemon.tap_sim(uid)
        return {"status": "tapped"}

    return app
