"""What head office's routes depend on: the store, the caller (a terminal or an administrator by its
bearer token), the terminal's clock header, and the parameters several routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Response

from hq.api.errors import ApiError
from hq.reconcile import MAX_PAGE
from hq.store import HqStore
from sync.protocol import CLOCK_HEADER, ErrorCode


def current_store(request: Request) -> HqStore:
    """The store the application was made over (``create_app(store)``)."""
    store: HqStore = request.app.state.store
    return store


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "an 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def authenticated_terminal(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The terminal id of the request's bearer token; 401 otherwise."""
    terminal_id = current_store(request).authenticate(_bearer_token(authorization))
    if terminal_id is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "unknown terminal token", {"WWW-Authenticate": "Bearer"})
    return terminal_id


def authenticated_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    name = current_store(request).authenticate_admin(_bearer_token(authorization))
    if name is None:
        raise ApiError(ErrorCode.FORBIDDEN, "an administrator token is needed for /v1/admin")
    return name


Terminal = Annotated[str, Depends(authenticated_terminal)]
Admin = Annotated[str, Depends(authenticated_admin)]
Clock = Annotated[str | None, Header(alias=CLOCK_HEADER, description="The terminal's UTC time, ISO 8601")]


Store = Annotated[HqStore, Depends(current_store)]
NEXT_CURSOR = "X-Next-Cursor"
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Subject = Annotated[str, Path(min_length=1, max_length=128)]


# -- the wallet's session cookie (set by the wallet's sign-in and by the join page) ----------------------

SESSION_COOKIE = "tp_wallet"
SECURE_SESSION_COOKIE = "__Host-tp_wallet"
"""Over HTTPS the cookie is ``Secure`` and named with the ``__Host-`` prefix (no Domain, Path=/): a
sibling host cannot set or shadow it."""


def _cookie_name(request: Request) -> str:
    return SECURE_SESSION_COOKIE if request.url.scheme == "https" else SESSION_COOKIE


def session_token(request: Request) -> str | None:
    """The wallet session token the request's cookie carries, if any."""
    return request.cookies.get(_cookie_name(request)) or None


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over HTTPS."""
    response.set_cookie(
        _cookie_name(request),
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


DEVICE_COOKIE = "tp_wallet_device"
SECURE_DEVICE_COOKIE = "__Host-tp_wallet_device"
"""The browser's device token after a sign-in by code (``hq.wallet.signin.remember_device``): kept through
sign-out, so that codes asked for and typed on it count in its own lane, not in the one strangers share."""


def device_token(request: Request) -> str:
    """The wallet device token the request's cookie carries, or ""."""
    secure = request.url.scheme == "https"
    return request.cookies.get(SECURE_DEVICE_COOKIE if secure else DEVICE_COOKIE) or ""


def set_device_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """As the session cookie: HttpOnly, SameSite=Strict, Secure and ``__Host-`` over HTTPS."""
    secure = request.url.scheme == "https"
    response.set_cookie(
        SECURE_DEVICE_COOKIE if secure else DEVICE_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=secure,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        _cookie_name(request), path="/", httponly=True, secure=request.url.scheme == "https", samesite="strict"
    )
