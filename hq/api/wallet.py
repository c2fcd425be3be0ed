"""The member's wallet on the phone (``router``, included by ``hq.api.app.create_app``; docs/wallet.md).

    GET  /wallet/                  overview: tier and progress, points and their lots, balance, member code
    GET  /wallet/activity          recent sales, refunds, voids, check-ins and adjustments
    GET  /wallet/coupons           the member's own coupons: terms, validity, the code to show at the till
    GET  /wallet/member-code       JSON: the member code signed for this time step, as text and SVG
    POST /wallet/coupons/{id}/gift passes a transferable coupon on: the coupon is held, the page shows the link
    GET  /wallet/gift/{token}      a gift link: the coupon's terms, "Claim it" (or the ways to sign in or join)
    POST /wallet/gift/{token}      claims it for the signed-in member (a new coupon of theirs), then its coupons
    POST /wallet/coupons/{id}/take-back   the giver ends a gift nobody claimed: the coupon is theirs again
    GET  /wallet/checkin           check in: the camera reader and a field for the code (``?c=``: the till's
                                   link, a phone's camera app opens it: the store and "Check in")
    POST /wallet/checkin           form {c}: the visit, once per store and day, and its reward (docs/checkin.md)
    GET  /wallet/sign-in           asks for an email address or a phone number
    POST /wallet/sign-in/code      form {contact}: sends a one-time code through the wallet's sender
    POST /wallet/sign-in           form {contact, code}: a session cookie and the browser's device cookie (its own
                                   lane for later codes, kept through sign-out), then the overview
    POST /wallet/sign-out          ends the session, clears the cookie and the browser's storage (``everywhere=1``:
                                   every session of the member and every paying phone, a lost phone's too;
                                   ``device``: the paying phone this browser held is revoked)
    GET  /wallet/pay               the pay page: a shell with no personal data (the service worker keeps it);
                                   its script holds the device key and makes payment codes offline
    GET  /wallet/devices           JSON: the member's paying phones (device certificates, revoked or not)
    POST /wallet/devices           JSON {device_key}: registers the browser's Ed25519 key (a recent sign-in)
                                   -> the device certificate, as ``POST /v1/devices`` answers it
    POST /wallet/devices/{cert_id}/remove   revokes one of the member's phones -> {revocation_id}
    GET  /wallet/offline, /wallet/manifest.webmanifest, /wallet/sw.js, /wallet/static/{name},
         /wallet/static/vendor/{name}
    GET  /wallet/giftcard          the page a gift card's SUN URL opens (docs/giftcards.md): its balance, and
                                   "Keep it in my wallet"; nothing is used
    POST /wallet/giftcards/attach  form {tap}: that read used once, the card kept in the member's wallet
    GET  /wallet/giftcards         the member's gift cards: balance, expiry, last activities
    POST /wallet/giftcards/{id}/block | /detach   the card reported lost (every till refuses it once it pulls),
                                   or out of the wallet
    GET/PUT /v1/admin/members/{id}/contacts   admin token; the member's email address and phone number

Pages answer HTML in the member's language (``?lang=`` sets it) with a strict Content-Security-Policy;
a page that needs a session sends a browser without one to the sign-in page. Every POST must come from
head office's own pages (its ``Origin``; the cookie is SameSite=Strict as well), else 403
``wallet_bad_origin``. Refusals keep their stable code in the page (``#error[data-code]``) and the
HTTP status of ``sync.protocol.ERROR_STATUS``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from hq import giftholders, vouchers
from hq.api.deps import (
    Admin,
    Store,
    clear_session_cookie,
    device_token,
    session_token,
    set_device_cookie,
    set_session_cookie,
)
from hq.api.errors import ApiError, errors
from hq.db.engine import Tx
from hq.errors import Refused
from hq.rewards import RewardRefused
from hq.store import HqStore
from hq.wallet import checkin, devices, gifts, i18n, pages, qr, signin, views
from hq.wallet.senders import Message, Sender, SendFailed
from hq.web import address_bucket
from sync.protocol import ERROR_STATUS, ErrorCode
from terminal import payments as pay

log = logging.getLogger("tillpoint.hq")
router = APIRouter()
LANG_COOKIE = "tp_lang"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "manifest-src 'self'; worker-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on the pages' own form
    # POSTs, and the Origin check needs the real one; other sites still get no referrer at all.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


# -- what every page needs ------------------------------------------------------------------------


def now_s() -> int:
    return int(time.time())


def language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return i18n.pick(request.headers.get("accept-language"), chosen)


Lang = Annotated[str, Depends(language)]


def member_of(request: Request) -> str | None:
    """The member of the request's session cookie, or None."""
    token = session_token(request)
    return None if token is None else signin.session_member(request.app.state.store, token, now_s())


Member = Annotated[str | None, Depends(member_of)]


def session_of(request: Request) -> tuple[str, int] | None:
    """(member, when the session began) of the request's live session, or None."""
    return signin.live_session(request.app.state.store, session_token(request) or "", now_s())


Session = Annotated[tuple[str, int] | None, Depends(session_of)]


def same_origin(request: Request) -> None:
    """A POST from head office's own pages: its Origin is this server's (browsers send it on every POST)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    site = request.headers.get("sec-fetch-site")
    if not origin or not host or origin != f"{request.url.scheme}://{host}" or site not in (None, "same-origin"):
        raise ApiError(ErrorCode.WALLET_BAD_ORIGIN, "a wallet form must be sent from the wallet's own page")


async def form(request: Request) -> dict[str, str]:
    """The urlencoded fields of a form POST (at most 4 KiB and 10 fields, else none; the last value of each
    name, 300 characters at most)."""
    body = await request.body()
    if len(body) > 4096:
        return {}
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=10)
    except ValueError:
        return {}
    return {name: values[-1][:300] for name, values in fields.items()}


Form = Annotated[dict[str, str], Depends(form)]


def page(request: Request, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    defaults: dict[str, Any] = {"signed_in": False, "current": name}
    reply = HTMLResponse(pages.render(name, lang, **(defaults | context)), status_code=status, headers=PAGE_HEADERS)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        reply.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="strict", path="/wallet")
    return reply


def refusal(lang: str, code: ErrorCode | None) -> dict[str, str]:
    """A page's refusal: the code's words in the page's language and the stable code (``#error[data-code]``);
    none when ``code`` is None."""
    return {"error": i18n.words(lang).get(code.value, code.value), "error_code": code.value} if code else {}


def to_sign_in() -> RedirectResponse:
    return RedirectResponse("/wallet/sign-in", status_code=303, headers={"Cache-Control": "no-store"})


_NEXT = re.compile(
    r"/wallet/gift/[A-Za-z0-9_-]{1,100}|/wallet/checkin(\?c=[A-Za-z0-9_-]{1,200})?|/wallet/(rewards|pay|coupons)"
)


def next_page(value: str | None) -> str:
    """Where signing in leads: back to a gift link, the check-in page, the rewards, pay or coupons page (signed
    in again to spend), else the overview (never another site)."""
    return value if value and _NEXT.fullmatch(value) else ""


def sign_in_page(
    request: Request,
    lang: str,
    *,
    step: str = "contact",
    contact: str = "",
    code: ErrorCode | None = None,
    notice: str = "",
    after: str = "",
) -> HTMLResponse:
    words = i18n.words(lang)
    return page(
        request,
        "sign_in",
        lang,
        ERROR_STATUS[code][0] if code else 200,
        step=step,
        contact=contact,
        after=after,
        error=words.get(code.value, code.value) if code else "",
        error_code=code.value if code else "",
        notice=notice,
    )


# -- signing in and out -------------------------------------------------------------------------------


@router.get("/wallet/sign-in", include_in_schema=False)
def sign_in_form(request: Request, lang: Lang, member: Member) -> Response:
    after = next_page(request.query_params.get("next"))
    if member is not None and request.query_params.get("again") != "1":  # again: a fresh sign-in to spend
        return RedirectResponse(after or "/wallet/", status_code=303)
    notice = i18n.words(lang)["signed_out"] if request.query_params.get("out") else ""
    return sign_in_page(request, lang, notice=notice, after=after)


@router.post("/wallet/sign-in/code", include_in_schema=False, dependencies=[Depends(same_origin)])
def request_code(request: Request, store: Store, lang: Lang, fields: Form) -> Response:
    contact = fields.get("contact", "")
    after = next_page(fields.get("next"))
    source = address_bucket(request.client.host if request.client else None)
    try:
        issued = signin.request_code(store, contact, source, now_s(), device_token(request))
    except signin.WalletRefused as exc:
        return sign_in_page(request, lang, contact=contact, code=exc.code, after=after)
    reply = sign_in_page(request, lang, step="code", contact=issued.contact.value, after=after)
    if issued.member_id is not None:  # sent after the answer: a known contact answers as fast as an unknown one
        reply.background = BackgroundTask(_send, request.app.state.wallet_sender, _message(issued))
    return reply


def _send(sender: Sender, message: Message) -> None:
    try:
        sender.send(message)
    except SendFailed as exc:
        log.warning("wallet sign-in code not sent: %s", exc)


def _message(issued: signin.IssuedCode) -> Message:
    minutes = signin.CODE_TTL // 60
    text = (
        f"Your wallet sign-in code is {issued.code}. It works once, for {minutes} minutes. "
        "If you did not ask for it, ignore this message: nobody can sign in without it."
    )
    return Message(issued.contact.kind, issued.contact.value, "Your wallet sign-in code", text, issued.code)


_ASK_AGAIN = (ErrorCode.WALLET_BAD_CONTACT, ErrorCode.WALLET_TOO_MANY_ATTEMPTS, ErrorCode.WALLET_GUESSES_LIMITED)
"""Sign-in refusals after which no code typed for that contact can work: the form asks for a contact again."""


@router.post("/wallet/sign-in", include_in_schema=False, dependencies=[Depends(same_origin)])
def sign_in(request: Request, store: Store, lang: Lang, fields: Form) -> Response:
    contact = fields.get("contact", "")
    after = next_page(fields.get("next"))
    try:
        member, token = signin.sign_in(store, contact, fields.get("code", ""), now_s(), device_token(request))
    except signin.WalletRefused as exc:
        step = "contact" if exc.code in _ASK_AGAIN else "code"
        return sign_in_page(request, lang, step=step, contact=contact, code=exc.code, after=after)
    reply = RedirectResponse(after or "/wallet/", status_code=303, headers={"Cache-Control": "no-store"})
    set_session_cookie(reply, request, token, signin.SESSION_TTL)
    device = signin.remember_device(store, member, device_token(request), now_s())
    set_device_cookie(reply, request, device, signin.DEVICE_TTL)
    return reply


@router.post("/wallet/sign-out", include_in_schema=False, dependencies=[Depends(same_origin)])
def sign_out(request: Request, store: Store, member: Member, fields: Form) -> Response:
    """Ends this session; with ``everywhere=1``, every session of the member (a lost phone)."""
    token = session_token(request)
    if member is not None and fields.get("device"):
        _forget_phone(store, member, fields["device"])
    if member is not None and fields.get("everywhere") == "1":
        devices.sign_out_everywhere(store, member, now_s())
    elif token is not None:
        signin.end_session(store, token, now_s())
    reply = RedirectResponse("/wallet/sign-in?out=1", status_code=303, headers={"Cache-Control": "no-store"})
    clear_session_cookie(reply, request)
    reply.headers["Clear-Site-Data"] = '"cache", "storage"'
    return reply


def _forget_phone(store: HqStore, member: str, cert_id: str) -> None:
    """The browser signing out held a paying phone's key: it is revoked (the answer clears the key too)."""
    try:
        devices.remove(store, member, cert_id)
    except signin.WalletRefused:
        log.info("sign-out named no paying phone of the member's")


# -- the pages ------------------------------------------------------------------------------------------


def _code_view(store: HqStore, member_id: str, lang: str) -> dict[str, Any]:
    now = now_s()
    code = views.member_code(store, member_id, now)
    step_end = (now // pay.STEP_SECONDS + 1) * pay.STEP_SECONDS
    return {
        "code": code,
        "svg": qr.svg(code, i18n.words(lang)["member_code_qr"]),
        "step": now // pay.STEP_SECONDS,
        "renew_in": max(1, step_end - now),
    }


@router.get("/wallet/", include_in_schema=False)
def overview(request: Request, store: Store, lang: Lang, member: Member) -> Response:
    if member is None:
        return to_sign_in()
    seen = views.overview(store, member, datetime.now(UTC))
    if seen is None:
        return to_sign_in()
    code = _code_view(store, member, lang)
    return page(
        request,
        "overview",
        lang,
        signed_in=True,
        o=seen,
        code=code["code"],
        code_svg=code["svg"],
        renew_in=code["renew_in"],
    )


@router.get("/wallet/activity", include_in_schema=False)
def activity(request: Request, store: Store, lang: Lang, member: Member) -> Response:
    if member is None:
        return to_sign_in()
    return page(request, "activity", lang, signed_in=True, visits=views.activity(store, member))


@router.get("/wallet/coupons", include_in_schema=False)
def coupons(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    if session is None:
        return to_sign_in()
    member, started = session
    label = i18n.words(lang)["coupon_qr"]
    shown = [
        {**_fields(c), "svg": qr.svg(c.code, label.format(name=c.text))}
        for c in views.coupons(store, member, datetime.now(UTC))
    ]
    notice = i18n.words(lang)["gift_claimed_ok"] if request.query_params.get("claimed") else ""
    _expire(store)
    with store.db.read() as tx:
        waiting = [
            {"coupon_id": w.coupon_id, "until": _until(w.expires_at), **_terms(w.body)}
            for w in gifts.offered_by(tx, member)
        ]
    return page(
        request,
        "coupons",
        lang,
        signed_in=True,
        coupons=shown,
        notice=notice,
        waiting=waiting,
        vouchers=_vouchers(store, member, lang, fresh=signin.is_fresh(started, now_s())),
    )


def _vouchers(store: HqStore, member_id: str, lang: str, *, fresh: bool) -> list[dict[str, Any]]:
    """The member's active vouchers (docs/stored-value.md, "Vouchers"), each with its QR to show at a till when
    the session began less than ``signin.FRESH_S`` ago: a voucher's code pays whoever shows it, so a two-week old
    cookie alone (a stolen phone) reads what the vouchers are, not the codes that spend them."""
    label = i18n.words(lang)["voucher_qr"]
    with store.db.read() as tx:
        held = vouchers.of_member(tx, member_id, int(time.time()))
    return [
        {
            **{name: value for name, value in v.items() if name != "code"},
            "expires": datetime.fromtimestamp(int(v["expires_at"]), UTC).date().isoformat(),
            "svg": qr.svg(str(v["code"]), label.format(name=v["voucher_id"])) if fresh else "",
        }
        for v in held
    ]


def _fields(coupon: views.CouponView) -> dict[str, Any]:
    return {name: getattr(coupon, name) for name in coupon.__slots__}


# -- passing a coupon on ----------------------------------------------------------------------------------


def _terms(body: dict[str, Any]) -> dict[str, Any]:
    text, ends, spend = body.get("text"), body.get("ends"), body.get("min_spend")
    return {
        "text": text if isinstance(text, str) and text else str(body.get("coupon_id", "")),
        "ends": ends if isinstance(ends, str) else None,
        "min_spend": spend if isinstance(spend, int) and not isinstance(spend, bool) else None,
    }


def _until(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def gift_page(
    request: Request, lang: str, *, member: str | None, status: int = 200, code: ErrorCode | None = None, **context: Any
) -> HTMLResponse:
    defaults: dict[str, Any] = {"coupon": None, "until": "", "link": "", "mode": "", "token": ""}
    status = ERROR_STATUS[code][0] if code else status
    error = refusal(lang, code)
    return page(
        request, "gift", lang, status, signed_in=member is not None, **(defaults | {"error": ""} | error | context)
    )


def _expire(store: HqStore) -> None:
    """Gifts past their window go back to their givers before one is read (the timer does it too)."""
    store.db.transact(lambda tx: gifts.expire(tx, now_s()))


@router.post("/wallet/coupons/{coupon_id}/gift", include_in_schema=False, dependencies=[Depends(same_origin)])
def pass_on(request: Request, store: Store, lang: Lang, session: Session, coupon_id: str) -> Response:
    """A gift link for the member's coupon, with a sign-in of the last 10 minutes: a personal coupon worth money
    off is spent at a till only on the member's proof, and passed on it is another member's to spend."""
    if session is None:
        return to_sign_in()
    member, started = session
    now = now_s()
    try:
        signin.require_fresh(started, now, "Sign in again to pass a coupon on.")
        made = store.db.transact(lambda tx: gifts.offer(tx, member, coupon_id, now))
        with store.db.read() as tx:
            held = gifts.read(tx, made.token)
    except signin.WalletRefused as exc:
        words = i18n.words(lang)
        return gift_page(request, lang, member=member, code=exc.code, error=words["gift_sign_in_again"])
    except gifts.GiftRefused as exc:
        return gift_page(request, lang, member=member, code=exc.code)
    link = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}/wallet/gift/{made.token}"
    return gift_page(request, lang, member=member, coupon=_terms(held.body), until=_until(made.expires_at), link=link)


@router.post("/wallet/coupons/{coupon_id}/take-back", include_in_schema=False, dependencies=[Depends(same_origin)])
def take_back(request: Request, store: Store, lang: Lang, member: Member, coupon_id: str) -> Response:
    if member is None:
        return to_sign_in()
    now = now_s()
    try:
        store.db.transact(lambda tx: gifts.take_back(tx, member, coupon_id, now))
    except gifts.GiftRefused as exc:
        return gift_page(request, lang, member=member, code=exc.code)
    return RedirectResponse("/wallet/coupons", status_code=303, headers={"Cache-Control": "no-store"})


def _token(token: str) -> str:
    if not _NEXT.fullmatch(f"/wallet/gift/{token}"):
        raise gifts.GiftRefused(ErrorCode.GIFT_UNKNOWN, "no such gift link")
    return token


@router.get("/wallet/gift/{token}", include_in_schema=False)
def gift(request: Request, store: Store, lang: Lang, member: Member, token: str) -> Response:
    _expire(store)
    try:
        with store.db.read() as tx:
            held = gifts.read(tx, _token(token))
    except gifts.GiftRefused as exc:
        return gift_page(request, lang, member=member, code=exc.code)
    shown: dict[str, Any] = {"coupon": _terms(held.body), "token": token}
    if held.state == gifts.CLAIMED:
        return gift_page(request, lang, member=member, code=ErrorCode.GIFT_CLAIMED, **shown)
    if held.state != gifts.OFFERED:
        return gift_page(request, lang, member=member, code=ErrorCode.GIFT_EXPIRED, **shown)
    mode = "sign_in" if member is None else "own" if member == held.giver else "claim"
    return gift_page(request, lang, member=member, until=_until(held.expires_at), mode=mode, **shown)


@router.post("/wallet/gift/{token}", include_in_schema=False, dependencies=[Depends(same_origin)])
def claim_gift(request: Request, store: Store, lang: Lang, member: Member, token: str) -> Response:
    if member is None:
        return gift_page(
            request, lang, member=None, code=ErrorCode.WALLET_SIGN_IN_REQUIRED, mode="sign_in", token=token
        )
    _expire(store)
    now = now_s()
    try:
        store.db.transact(lambda tx: gifts.claim(tx, _token(token), member, now))
    except gifts.GiftRefused as exc:
        return gift_page(request, lang, member=member, code=exc.code)
    return RedirectResponse("/wallet/coupons?claimed=1", status_code=303, headers={"Cache-Control": "no-store"})


# -- checking in ----------------------------------------------------------------------------------------

CHECKIN_HEADERS = {"Permissions-Policy": "camera=(self), microphone=(), geolocation=()"}
"""The check-in page may use the camera (its own script reads the till's QR); every other page may not."""
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")


def checkin_page(
    request: Request, lang: str, *, member: str | None, code: ErrorCode | None = None, **context: Any
) -> HTMLResponse:
    error = refusal(lang, code)
    defaults: dict[str, Any] = {
        "mode": "scan",
        "error": "",
        "store_id": "",
        "rewards": [],
        "checkin_code": "",
        "after": "",
    }
    status = ERROR_STATUS[code][0] if code else 200
    reply = page(request, "checkin", lang, status, signed_in=member is not None, **(defaults | error | context))
    reply.headers.update(CHECKIN_HEADERS)
    return reply


@router.get("/wallet/checkin", include_in_schema=False)
def checkin_form(request: Request, store: Store, lang: Lang, member: Member) -> Response:
    """With ``?c=`` (the link a till's QR carries): the store and "Check in"; nothing is recorded by a GET."""
    code = request.query_params.get("c", "")
    code = code if _CODE.fullmatch(code) else ""
    if member is None:
        after = f"/wallet/checkin?c={code}" if code else "/wallet/checkin"
        return checkin_page(request, lang, member=None, mode="sign_in", after=after)
    if not code:
        return checkin_page(request, lang, member=member)
    try:
        with store.db.read() as tx:
            till = checkin.till_of_code(tx, code, time.time())
    except checkin.CheckinRefused as exc:
        return checkin_page(request, lang, member=member, code=exc.code)
    return checkin_page(request, lang, member=member, mode="confirm", checkin_code=code, store_id=till.store_id)


@router.post("/wallet/checkin", include_in_schema=False, dependencies=[Depends(same_origin)])
def check_in(request: Request, store: Store, lang: Lang, member: Member, fields: Form) -> Response:
    if member is None:
        return checkin_page(
            request, lang, member=None, code=ErrorCode.WALLET_SIGN_IN_REQUIRED, mode="sign_in", after="/wallet/checkin"
        )
    text, now = fields.get("c", ""), time.time()
    try:
        done = store.db.transact(lambda tx: checkin.check_in(tx, store.settings, member, text, now))
    except checkin.CheckinRefused as exc:
        return checkin_page(request, lang, member=member, code=exc.code)
    return checkin_page(request, lang, member=member, mode="done", store_id=done.store_id, rewards=done.rewards)


@router.get("/wallet/member-code", include_in_schema=False)
def member_code(store: Store, lang: Lang, member: Member) -> JSONResponse:
    if member is None:
        raise ApiError(ErrorCode.WALLET_SIGN_IN_REQUIRED, "sign in to the wallet first")
    return JSONResponse(_code_view(store, member, lang), headers={"Cache-Control": "no-store"})


# -- paying with this phone ----------------------------------------------------------------------------


@router.get("/wallet/pay", include_in_schema=False)
def pay_page(request: Request, lang: Lang, member: Member) -> Response:
    """The same shell for everyone (the device key and its certificate live in the browser), so the service
    worker may keep it for when there is no network."""
    return page(request, "pay", lang, signed_in=member is not None)


class DeviceIn(BaseModel):
    device_key: str = Field(pattern="^[0-9a-f]{64}$", description="raw Ed25519 public key, hex")


def _session(request: Request, store: HqStore) -> tuple[str, int]:
    """(member, when the session began) of the request's live session, else ``wallet_sign_in_required``."""
    found = signin.live_session(store, session_token(request) or "", now_s())
    if found is None:
        raise ApiError(ErrorCode.WALLET_SIGN_IN_REQUIRED, "sign in to the wallet first")
    return found


def _json(reply: dict[str, Any]) -> JSONResponse:
    return JSONResponse(reply, headers={"Cache-Control": "no-store"})


@router.get("/wallet/devices", include_in_schema=False)
def list_devices(request: Request, store: Store) -> JSONResponse:
    member, _ = _session(request, store)
    shown = ("cert_id", "issued_at", "expires_at", "revoked")
    found = [{name: d[name] for name in shown} for d in devices.listed(store, member)]
    return _json({"member_id": member, "devices": found})


@router.post("/wallet/devices", include_in_schema=False, dependencies=[Depends(same_origin)])
def add_device(request: Request, store: Store, body: DeviceIn) -> JSONResponse:
    member, started = _session(request, store)
    try:
        cert = devices.register(store, member, started, body.device_key, now_s())
    except signin.WalletRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    return _json(cert.to_doc())


@router.post("/wallet/devices/{cert_id}/remove", include_in_schema=False, dependencies=[Depends(same_origin)])
def remove_device(request: Request, store: Store, cert_id: str) -> JSONResponse:
    member, _ = _session(request, store)
    try:
        return _json({"revocation_id": devices.remove(store, member, cert_id)})
    except signin.WalletRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc


def storage_page(request: Request, code: ErrorCode) -> Response:
    """The database failing under a wallet page: the page the wallet shows when head office cannot be reached
    (503, ``#error[data-code]`` naming the code), never the API's JSON in a member's browser."""
    lang = language(request)
    reply = page(request, "offline", lang, ERROR_STATUS[code][0], **refusal(lang, code))
    reply.headers["Cache-Control"] = "no-store"
    return reply


@router.get("/wallet/offline", include_in_schema=False)
def offline(request: Request, lang: Lang) -> Response:
    reply = page(request, "offline", lang)
    reply.headers["Cache-Control"] = "no-cache"
    return reply


@router.get("/wallet/manifest.webmanifest", include_in_schema=False)
def manifest() -> Response:
    return _static("manifest.webmanifest")


@router.get("/wallet/sw.js", include_in_schema=False)
def service_worker() -> Response:
    reply = _static("sw.js")
    reply.headers["Cache-Control"] = "no-cache"
    return reply


@router.get("/wallet/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    return _static(name)


@router.get("/wallet/static/vendor/{name}", include_in_schema=False)
def vendored(name: str) -> Response:
    """Third-party code the wallet ships as its own copy (docs/wallet.md, "Vendored code")."""
    return _static(f"vendor/{name}")


def _static(name: str) -> Response:
    found = pages.static_file(name)
    if found is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no such file")
    content, kind = found
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    return Response(content, media_type=kind, headers=headers)


# -- administration -------------------------------------------------------------------------------------


class ContactsIn(BaseModel):
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=32)
    reason: str = Field("", max_length=200)
    """Why (kept in the audit record of the change)."""


contact_errors = errors(
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.UNKNOWN_MEMBER,
    ErrorCode.WALLET_BAD_CONTACT,
)


@router.put("/v1/admin/members/{member_id}/contacts", tags=["wallet"], responses=contact_errors)
def put_contacts(store: Store, member_id: str, body: ContactsIn, admin: Admin) -> dict[str, str]:
    """Set the member's email address and/or phone number (taken from another member if it had it); audited as
    ``wallet_contacts``."""
    if store.member(member_id) is None:
        raise ApiError(ErrorCode.UNKNOWN_MEMBER, f"no member {member_id}")
    try:
        wanted = [signin.contact_of(text) for text in (body.email, body.phone) if text]
    except signin.WalletRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    now, reason = now_s(), " ".join(body.reason.split())
    result: dict[str, str] = store.db.transact(
        lambda tx: signin.give_contacts(tx, member_id, wanted, admin, reason, now)
    )
    return result


class SignOutIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200, pattern=r"\S")


@router.post("/v1/admin/members/{member_id}/sign-out", tags=["wallet"], responses=contact_errors)
def sign_out_member(store: Store, member_id: str, body: SignOutIn, admin: Admin) -> dict[str, Any]:
    """A member's lost or stolen phone, reported to staff: every wallet session of the member ends and every paying
    phone is revoked (the tills refuse its codes once they pull), without blocking the member; audited."""
    if store.member(member_id) is None:
        raise ApiError(ErrorCode.UNKNOWN_MEMBER, f"no member {member_id}")
    ended, phones = devices.sign_out_everywhere(
        store, member_id, now_s(), by=admin, reason=" ".join(body.reason.split())
    )
    return {"member_id": member_id, "sessions_ended": ended, "phones_revoked": phones}


@router.get("/v1/admin/members/{member_id}/contacts", tags=["wallet"], responses=contact_errors)
def get_contacts(store: Store, member_id: str, admin: Admin) -> dict[str, str]:
    with store.db.read() as tx:
        return signin.contacts(tx, member_id)


# -- the rewards catalogue (docs/rewards.md) ------------------------------------------------------------------

_PURCHASE = re.compile(r"w-[A-Za-z0-9_-]{16,64}")


def rewards_page(
    request: Request,
    store: HqStore,
    lang: str,
    session: tuple[str, int],
    *,
    code: ErrorCode | None = None,
    bought: str = "",
) -> HTMLResponse:
    """The catalogue with what the member can afford, and the member's purchases: their partner codes with a
    session begun less than ``signin.FRESH_S`` ago only (a partner's code is anyone's who reads it: a two-week old
    cookie alone, a stolen phone, reads which rewards the member has, not their codes)."""
    member, started = session
    fresh = signin.is_fresh(started, now_s())
    words = i18n.words(lang)
    held = store.member(member)
    points = held.points if held is not None else 0
    catalogue = store.reward_catalogue(active_only=True)
    offered = [
        {"reward": o.reward, "left": o.left, "affordable": o.reward.points <= points, "sold_out": o.left == 0}
        for o in catalogue
    ]
    titles = {o.reward.reward_id: o.reward.title for o in catalogue}
    mine = [
        {
            **p.as_dict(),
            "title": titles.get(p.reward_id, p.reward_id),
            "code": p.code if fresh else None,
            "code_hidden": not fresh and bool(p.code),
        }
        for p in store.reward_purchases(member)
    ]
    error = refusal(lang, code)
    if code is ErrorCode.WALLET_SIGN_IN_AGAIN:
        error["error"] = words["reward_sign_in_again"]
    return page(
        request,
        "rewards",
        lang,
        ERROR_STATUS[code][0] if code else 200,
        signed_in=True,
        points=points,
        offered=offered,
        mine=mine,
        purchase=f"w-{secrets.token_urlsafe(18)}",
        notice=words["reward_bought"] if bought and any(p["purchase_id"] == bought for p in mine) else "",
        **({"error": ""} | error),
    )


@router.get("/wallet/rewards", include_in_schema=False)
def rewards(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    if session is None:
        return to_sign_in()
    return rewards_page(request, store, lang, session, bought=request.query_params.get("bought", "")[:100])


@router.post("/wallet/rewards/{reward_id}/buy", include_in_schema=False, dependencies=[Depends(same_origin)])
def buy_reward(request: Request, store: Store, lang: Lang, session: Session, reward_id: str, fields: Form) -> Response:
    """Buy one unit with points, with a sign-in of the last 10 minutes (it spends the member's points: a
    two-week old cookie alone does not); the form's ``purchase`` id makes a second submit of the same form a
    no-op."""
    if session is None:
        return to_sign_in()
    member, started = session
    purchase_id = fields.get("purchase", "")
    if not _PURCHASE.fullmatch(purchase_id):
        return rewards_page(request, store, lang, session, code=ErrorCode.INVALID_REQUEST)
    try:
        signin.require_fresh(started, now_s(), "Sign in again to spend your points.")
        made = store.buy_reward(member, reward_id[:48], purchase_id)
    except signin.WalletRefused as exc:
        return rewards_page(request, store, lang, session, code=exc.code)
    except RewardRefused as exc:
        return rewards_page(request, store, lang, session, code=exc.code)
    return RedirectResponse(
        f"/wallet/rewards?bought={made.purchase_id}", status_code=303, headers={"Cache-Control": "no-store"}
    )


# -- gift cards in the wallet (docs/giftcards.md, "In the member's wallet") ---------------------------------

_TAP = re.compile(r"[A-Za-z0-9=&_.%-]{1,300}")
_CARD = re.compile(r"G-[0-9a-f]{16}")


def giftcard_page(
    request: Request, lang: str, *, member: str | None, code: ErrorCode | None = None, **context: Any
) -> HTMLResponse:
    error = refusal(lang, code)
    defaults: dict[str, Any] = {"card": None, "mode": "", "tap": "", "error": ""}
    status = ERROR_STATUS[code][0] if code else 200
    return page(request, "giftcard", lang, status, signed_in=member is not None, **(defaults | error | context))


@router.get("/wallet/giftcard", include_in_schema=False)
def tapped_giftcard(request: Request, store: Store, lang: Lang, member: Member) -> Response:
    """The page a gift card's SUN URL opens: its balance, and "Keep it in my wallet"; nothing is used."""
    tap = request.url.query
    if not _TAP.fullmatch(tap):
        return giftcard_page(request, lang, member=member, code=ErrorCode.FORGED_CARD)
    try:
        with store.db.read() as tx:
            seen = giftholders.read_tap(tx, store.settings.card_keys, f"?{tap}")
    except Refused as exc:
        return giftcard_page(request, lang, member=member, code=exc.code)
    mode = "sign_in" if member is None else "mine" if seen.holder == member else "held" if seen.holder else "attach"
    return giftcard_page(request, lang, member=member, card=seen.card, mode=mode, tap=tap)


@router.post("/wallet/giftcards/attach", include_in_schema=False, dependencies=[Depends(same_origin)])
def attach_giftcard(request: Request, store: Store, lang: Lang, member: Member, fields: Form) -> Response:
    if member is None:
        return giftcard_page(request, lang, member=None, code=ErrorCode.WALLET_SIGN_IN_REQUIRED, mode="sign_in")
    tap = fields.get("tap", "")
    if not _TAP.fullmatch(tap):
        return giftcard_page(request, lang, member=member, code=ErrorCode.FORGED_CARD)
    keys, now = store.settings.card_keys, store.now()
    try:
        store.db.transact(lambda tx: giftholders.attach(tx, keys, f"?{tap}", member, now))
    except Refused as exc:
        return giftcard_page(request, lang, member=member, code=exc.code)
    return RedirectResponse("/wallet/giftcards", status_code=303, headers={"Cache-Control": "no-store"})


def giftcards_page(request: Request, store: HqStore, lang: str, member: str, code: ErrorCode | None = None) -> Response:
    with store.db.read() as tx:
        held = giftholders.held_by(tx, member)
    error = {"error": ""} | refusal(lang, code)
    status = ERROR_STATUS[code][0] if code else 200
    return page(request, "giftcards", lang, status, signed_in=True, held=held, **error)


@router.get("/wallet/giftcards", include_in_schema=False)
def my_giftcards(request: Request, store: Store, lang: Lang, member: Member) -> Response:
    if member is None:
        return to_sign_in()
    return giftcards_page(request, store, lang, member)


@router.post("/wallet/giftcards/{card_id}/{action}", include_in_schema=False, dependencies=[Depends(same_origin)])
def change_giftcard(request: Request, store: Store, lang: Lang, member: Member, card_id: str, action: str) -> Response:
    """``block`` (lost or stolen: every till refuses it once it pulls) or ``detach`` (out of the wallet)."""
    if member is None:
        return to_sign_in()
    if not _CARD.fullmatch(card_id) or action not in ("block", "detach"):
        return giftcards_page(request, store, lang, member, ErrorCode.NOT_FOUND)
    now = store.now()

    def change(tx: Tx) -> None:
        if action == "block":
            giftholders.block(tx, card_id, member, now)
        else:
            giftholders.detach(tx, card_id, member)

    try:
        store.db.transact(change)
    except Refused as exc:
        return giftcards_page(request, store, lang, member, exc.code)
    return RedirectResponse("/wallet/giftcards", status_code=303, headers={"Cache-Control": "no-store"})


__all__ = ["CSP", "router"]
