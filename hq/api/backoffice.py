"""The back office on the web (``router``, included by ``hq.api.app.create_app``; docs/backoffice.md).

    GET  /backoffice/sign-in, POST /backoffice/sign-in     staff id + password -> a fresh session cookie
    GET  /backoffice/sign-in/code, POST ...                the second factor's code (an account with one)
    GET  /backoffice/second-factor, POST ...               one's own second factor: enrol (QR, code, recovery codes)
    POST /backoffice/sign-out                              ends the session
    GET  /backoffice/                                      what the role may open, requests waiting
    GET  /backoffice/members?q=, /backoffice/members/results?q=   search (the second: the htmx fragment)
    GET  /backoffice/members/{id}                          the member's page
    POST /backoffice/members/{id}/block|unblock, /backoffice/cards/{hash}/block|unblock   form {reason}
    POST /backoffice/members/{id}/adjust                   form {points, stored_value, reason}: a request
    POST /backoffice/members/{id}/erase                    form {reason, confirm = the member id}
    GET  /backoffice/campaigns, POST /backoffice/campaigns/launch   form {campaign_id, spec (JSON), reason}: a request
    GET  /backoffice/approvals, POST /backoffice/approvals/{id}/approve|reject   four eyes
    GET  /backoffice/audit                                 the newest audit records and whether the chain holds
    GET  /backoffice/recon..., /backoffice/fleet            reconciliation items and the fleet (at the end)
    GET  /backoffice/giftcards?q=, /backoffice/giftcards/{id}   gift cards; POST .../unblock, .../clear (a request)
    GET  /backoffice/holds                 what head office holds back for payments whose sales have not arrived;
                                           POST /backoffice/holds/{txn_id}/release (form: terminal_id, reason)
    GET  /backoffice/rewards?voucher=                      the rewards catalogue and the vouchers (read only)
    GET  /backoffice/static/{name}

Every page but sign-in needs a session (a browser without one is sent to sign in) and names the ``Action``
it performs (``ACTIONS``); the role table decides, here for the page and again in the service for the
subject (a store manager and a member of another store). Every POST must come from the back office's own
pages (``Origin``, and ``Sec-Fetch-Site`` when sent) and, once signed in, carry the session's CSRF token.
Refusals are pages with their stable code in ``#error[data-code]`` and the status of ``errors.STATUS``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hq import audit, documents
from hq.api.deps import Store
from hq.backoffice import (
    approvals,
    campaigns,
    editors,
    factors,
    giftcards,
    holds,
    i18n,
    members,
    otp,
    pages,
    recon,
    reports,
    rewards,
    sessions,
    staff,
    team,
)
from hq.backoffice import settlement as bo_settlement
from hq.backoffice.errors import STATUS, BackofficeRefused, Code
from hq.backoffice.roles import Action, Scope, allowed, may
from hq.store import HqStore
from hq.wallet import qr
from hq.web import address_bucket
from sync.protocol import ERROR_STATUS, ErrorCode

router = APIRouter()
PREFIX = "/backoffice"
COOKIE, SECURE_COOKIE = "tp_staff", "__Host-tp_staff"
LANG_COOKIE = "tp_bo_lang"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
ACTIONS: dict[tuple[str, str], tuple[Action, ...]] = {}
"""The actions each route performs, by (method, path): a role that may do none of them is refused before the
page runs (deciding a request is either kind of approval)."""
PUBLIC = {
    ("GET", "/backoffice/sign-in"),
    ("POST", "/backoffice/sign-in"),
    ("POST", "/backoffice/sign-out"),
    ("GET", "/backoffice/static/{name}"),
    ("GET", "/backoffice/"),
    ("GET", "/backoffice/password"),
    ("POST", "/backoffice/password"),
    ("GET", "/backoffice/sign-in/code"),
    ("POST", "/backoffice/sign-in/code"),
    ("GET", "/backoffice/second-factor"),
    ("POST", "/backoffice/second-factor"),
    ("POST", "/backoffice/second-factor/recovery"),
}
"""Routes open without an action: signing in and out, static files, the home page, one's own password and
second factor and its recovery codes (any signed-in role)."""


def now_s() -> int:
    return int(time.time())


# -- the request's language, session and form ------------------------------------------------------------


def language(request: Request) -> str:
    return i18n.pick(
        request.headers.get("accept-language"), request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    )


Lang = Annotated[str, Depends(language)]


def _cookie(request: Request) -> str:
    return SECURE_COOKIE if request.url.scheme == "https" else COOKIE


def token_of(request: Request) -> str | None:
    return request.cookies.get(_cookie(request)) or None


def session_of(request: Request) -> sessions.Session | None:
    token = token_of(request)
    if token is None:
        return None
    store: HqStore = request.app.state.store
    return store.db.transact(lambda tx: sessions.find(tx, token, now_s()))


def signed_in(request: Request) -> sessions.Session:
    """A full session: one awaiting its code is ``second_factor_required``, one that must enrol first
    ``enrol_required`` (a GET goes to that page instead)."""
    found = enrolling(request)
    if found.stage is sessions.Stage.ENROL:
        raise BackofficeRefused(Code.ENROL_REQUIRED, "set up a second factor first")
    return found


def enrolling(request: Request) -> sessions.Session:
    """A session past its second factor, or one that must enrol (the enrolment page's own)."""
    found = session_of(request)
    if found is None:
        raise BackofficeRefused(Code.SIGN_IN_REQUIRED, "sign in first")
    if found.stage is sessions.Stage.CODE:
        raise BackofficeRefused(Code.SECOND_FACTOR_REQUIRED, "type the code of your second factor first")
    request.state.staff_session = found
    return found


Session = Annotated[sessions.Session, Depends(signed_in)]


def same_origin(request: Request) -> None:
    origin, host = request.headers.get("origin"), request.headers.get("host")
    site = request.headers.get("sec-fetch-site")
    if not origin or not host or origin != f"{request.url.scheme}://{host}" or site not in (None, "same-origin"):
        raise BackofficeRefused(Code.BAD_ORIGIN, "a back-office form must be sent from its own page")


async def form(request: Request) -> dict[str, str]:
    """The urlencoded fields of a form POST (at most 128 KiB and ``FORM_FIELDS`` fields, else none; the last
    value of each name). Each service bounds its own fields (a reason 200 characters, a campaign spec 32 KiB)."""
    return {name: values[-1] for name, values in (await form_lists(request)).items()}


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Every value of each field of a form POST (a name repeated: ticked boxes), within the same bounds:
    128 KiB and ``FORM_FIELDS`` fields, else none."""
    body = await request.body()
    if len(body) > 128 * 1024:
        return {}
    try:
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=FORM_FIELDS)
    except ValueError:
        return {}


FORM_FIELDS = recon.PICK_MAX + 64
"""A form's fields at most: the items a page lets one tick, and the form's own."""
Form = Annotated[dict[str, str], Depends(form)]
FormLists = Annotated[dict[str, list[str]], Depends(form_lists)]


def needs(*actions: Action) -> Callable[[Request, sessions.Session, dict[str, str]], sessions.Session]:
    """A route's guard: a session whose role may do one of ``actions`` somewhere; for a POST also the Origin
    and the session's CSRF token (a form field, or the header htmx sends)."""

    def guard(request: Request, session: Session, fields: Form) -> sessions.Session:
        if request.method == "POST":
            same_origin(request)
            if not sessions.csrf_ok(session, fields.get("csrf") or request.headers.get("x-csrf-token")):
                raise BackofficeRefused(Code.BAD_CSRF, "the form's CSRF token is missing or wrong")
        if not any(may(session.staff.role, action) for action in actions):
            raise BackofficeRefused(Code.FORBIDDEN, f"{session.staff.role} may not do this")
        return session

    return guard


def route(method: str, path: str, *actions: Action) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Register a page performing one of ``actions`` (its guard runs before the page)."""
    ACTIONS[(method, PREFIX + path)] = actions
    add = router.get if method == "GET" else router.post
    return add(PREFIX + path, include_in_schema=False, dependencies=[Depends(needs(*actions))])


def page(request: Request, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: sessions.Session | None = getattr(request.state, "staff_session", None)
    me = session.staff if session else None
    defaults: dict[str, Any] = {
        "me": me,
        "bare": session is not None and session.stage is not sessions.Stage.FULL,
        "csrf": session.csrf if session else "",
        "current": name,
        "error": "",
        "error_code": "",
        "notice": "",
    }
    html = pages.render(name, lang, me.role if me else None, **(defaults | context))
    reply = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        reply.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="strict",
            path="/backoffice",
        )
    return reply


_SENT_TO = {
    Code.SIGN_IN_REQUIRED: "/sign-in",
    Code.SECOND_FACTOR_REQUIRED: "/sign-in/code",
    Code.ENROL_REQUIRED: "/second-factor",
}
"""Where a GET refused for want of a step of signing in goes instead."""


def refused_page(request: Request, exc: BackofficeRefused) -> Response:
    """A refusal as a page: signing in again for a lost session on a GET, else the code and its words."""
    if exc.code in _SENT_TO and request.method == "GET":
        return RedirectResponse(PREFIX + _SENT_TO[exc.code], status_code=303, headers={"Cache-Control": "no-store"})
    lang = language(request)
    words = i18n.words(lang)
    return page(
        request, "refused", lang, exc.status, error=words.get(exc.code.value, exc.code.value), error_code=exc.code.value
    )


def install(app: FastAPI) -> None:
    """Refusals of the back office answer as pages (more specific than the JSON handler of ``HqError``)."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BackofficeRefused)
        return refused_page(request, exc)

    app.add_exception_handler(BackofficeRefused, handler)


def storage_page(request: Request, code: ErrorCode) -> Response:
    """The database failing under a back-office page: a page saying so (503), as any refusal is."""
    lang = language(request)
    words = i18n.words(lang)
    return page(
        request, "refused", lang, ERROR_STATUS[code][0], error=words.get(code.value, code.value), error_code=code
    )


NOTICES = ("done", "asked")
"""What a page may say after a change (``?done=``): a key of its words, never text from the address."""
_REQUEST_ID = re.compile(r"AR-[0-9a-f]{16}")


def back(path: str, notice: str, request_id: str = "") -> RedirectResponse:
    """After a change: the page again, saying ``notice`` (one of ``NOTICES``)."""
    where = f"{PREFIX}{path}?done={notice}" + (f"&request={request_id}" if request_id else "")
    return RedirectResponse(where, status_code=303, headers={"Cache-Control": "no-store"})


def notice_of(request: Request, lang: str) -> str:
    key = request.query_params.get("done", "")
    if key not in NOTICES:
        return ""
    request_id = request.query_params.get("request", "")
    return i18n.words(lang)[key].format(id=request_id if _REQUEST_ID.fullmatch(request_id) else "")


# -- signing in and out ----------------------------------------------------------------------------------


def _set_cookie(reply: Response, request: Request, token: str) -> None:
    reply.set_cookie(
        _cookie(request),
        token,
        max_age=sessions.ABSOLUTE_S,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


@router.get(PREFIX + "/sign-in", include_in_schema=False)
def sign_in_form(request: Request, lang: Lang) -> Response:
    words = i18n.words(lang)
    notice = (
        words["signed_out"]
        if request.query_params.get("out")
        else words["password_changed"]
        if request.query_params.get("changed")
        else ""
    )
    return page(request, "sign_in", lang, staff_id="", notice=notice)


@router.post(PREFIX + "/sign-in", include_in_schema=False, dependencies=[Depends(same_origin)])
def sign_in(request: Request, store: Store, lang: Lang, fields: Form) -> Response:
    staff_id, password = fields.get("staff_id", "").strip()[:64], fields.get("password", "")
    source = address_bucket(request.client.host if request.client else None)
    made = sessions.sign_in(store.db, staff_id, password, source, now_s(), token_of(request))
    if isinstance(made, Code):
        words = i18n.words(lang)
        return page(
            request, "sign_in", lang, STATUS[made], staff_id=staff_id, error=words[made.value], error_code=made.value
        )
    reply = RedirectResponse(PREFIX + "/", status_code=303, headers={"Cache-Control": "no-store"})
    _set_cookie(reply, request, made)
    return reply


@router.post(PREFIX + "/sign-out", include_in_schema=False, dependencies=[Depends(same_origin)])
def sign_out(request: Request, store: Store, fields: Form) -> Response:
    """Ends the session (with its CSRF token: another site cannot sign a member of staff out)."""
    token = token_of(request)
    found = session_of(request)
    if token is not None and found is not None:
        if not sessions.csrf_ok(found, fields.get("csrf") or request.headers.get("x-csrf-token")):
            raise BackofficeRefused(Code.BAD_CSRF, "the form's CSRF token is missing or wrong")
        store.db.transact(lambda tx: sessions.end(tx, token))
    reply = RedirectResponse(PREFIX + "/sign-in?out=1", status_code=303, headers={"Cache-Control": "no-store"})
    reply.delete_cookie(
        _cookie(request), path="/", httponly=True, secure=request.url.scheme == "https", samesite="strict"
    )
    reply.headers["Clear-Site-Data"] = '"cache"'
    return reply


def _csrf(request: Request, session: sessions.Session, fields: dict[str, str]) -> None:
    same_origin(request)
    if not sessions.csrf_ok(session, fields.get("csrf") or request.headers.get("x-csrf-token")):
        raise BackofficeRefused(Code.BAD_CSRF, "the form's CSRF token is missing or wrong")


def _awaiting_code(request: Request) -> sessions.Session | None:
    found = session_of(request)
    return found if found is not None and found.stage is sessions.Stage.CODE else None


@router.get(PREFIX + "/sign-in/code", include_in_schema=False)
def code_form(request: Request, lang: Lang) -> Response:
    """The second step of signing in, for a session that passed the password (else the sign-in page)."""
    found = _awaiting_code(request)
    if found is None:
        return RedirectResponse(PREFIX + "/sign-in", status_code=303, headers={"Cache-Control": "no-store"})
    return page(request, "sign_in_code", lang, csrf=found.csrf)


@router.post(PREFIX + "/sign-in/code", include_in_schema=False)
def code_sign_in(request: Request, store: Store, lang: Lang, fields: Form) -> Response:
    """The code (or a recovery code): a full session (a fresh token) once right, counted as a sign-in."""
    token, found = token_of(request), _awaiting_code(request)
    if token is None or found is None:
        raise BackofficeRefused(Code.SIGN_IN_REQUIRED, "sign in first")
    _csrf(request, found, fields)
    source = address_bucket(request.client.host if request.client else None)
    made = sessions.pass_code(store.db, token, fields.get("code", "")[:64], source, now_s())
    if isinstance(made, Code):
        if made is Code.SIGN_IN_REQUIRED:
            raise BackofficeRefused(made, "sign in again")
        error = i18n.words(lang)[made.value]
        return page(request, "sign_in_code", lang, STATUS[made], csrf=found.csrf, error=error, error_code=made.value)
    reply = RedirectResponse(PREFIX + "/", status_code=303, headers={"Cache-Control": "no-store"})
    _set_cookie(reply, request, made)
    return reply


Enrolling = Annotated[sessions.Session, Depends(enrolling)]


def _enrol_page(
    request: Request,
    store: HqStore,
    lang: str,
    session: sessions.Session,
    sent: factors.Offer | None = None,
    **context: Any,
) -> Response:
    """One's second factor: when it was set up and the recovery codes left, or a secret to set it up with
    (``sent`` when the form sent back one head office made, else a fresh one, ``factors.offer``: kept nowhere
    yet) as a QR code, as text and in the form with when it was made and its seal, the form asking for its
    first code and the enrolment code an administrator issued."""
    who = session.staff
    state = store.db.transact(lambda tx: factors.state(tx, who.staff_id))
    if state.enrolled_at is not None:
        return page(request, "second_factor", lang, state=state, recovery=[], **context)
    shown_offer = sent or store.db.transact(lambda tx: factors.offer(tx, who.staff_id, now_s()))
    secret = shown_offer.secret
    words = i18n.words(lang)
    shown = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    code_svg = qr.svg(otp.uri(secret, who.staff_id), words["second_factor_qr"])
    return page(
        request,
        "second_factor",
        lang,
        state=state,
        recovery=[],
        offer=shown_offer,
        shown=shown,
        code_svg=code_svg,
        **context,
    )


ENROL_REFUSALS = frozenset({Code.BAD_CODE, Code.ENROL_CODE_REQUIRED, Code.ENROL_CODE_BAD})
"""Refusals of an enrolment shown on its page, the same secret still in the form (one head office made: its
seal is checked first, ``bad_secret`` a refusal of its own)."""


@router.get(PREFIX + "/second-factor", include_in_schema=False)
def second_factor_page(request: Request, store: Store, lang: Lang, session: Enrolling) -> Response:
    return _enrol_page(request, store, lang, session)


def _offer_of(fields: dict[str, str]) -> factors.Offer:
    made_at = fields.get("made_at", "")[:20]
    return factors.Offer(
        fields.get("secret", "")[:64],
        int(made_at) if made_at.isascii() and made_at.isdigit() else -1,
        fields.get("seal", "")[:64],
    )


@router.post(PREFIX + "/second-factor", include_in_schema=False)
def second_factor_confirm(request: Request, store: Store, lang: Lang, session: Enrolling, fields: Form) -> Response:
    """The form's secret kept once its code and the account's enrolment code are typed; the recovery codes
    shown this once."""
    _csrf(request, session, fields)
    sent = _offer_of(fields)
    try:
        codes = factors.confirm(
            store.db, session.staff, sent, fields.get("code", "")[:64], fields.get("enrol_code", "")[:64], now_s()
        )
    except BackofficeRefused as exc:
        if exc.code not in ENROL_REFUSALS:
            raise
        error = i18n.words(lang)[exc.code.value]
        return _enrol_page(request, store, lang, session, sent, error=error, error_code=exc.code.value)
    state = store.db.transact(lambda tx: factors.state(tx, session.staff.staff_id))
    return page(request, "second_factor", lang, state=state, recovery=codes, bare=False)


def own_change(request: Request, session: Session, fields: Form) -> sessions.Session:
    """A POST of any signed-in role about itself: from the back office's own page, with the session's CSRF token."""
    same_origin(request)
    if not sessions.csrf_ok(session, fields.get("csrf") or request.headers.get("x-csrf-token")):
        raise BackofficeRefused(Code.BAD_CSRF, "the form's CSRF token is missing or wrong")
    return session


@router.post(PREFIX + "/second-factor/recovery", include_in_schema=False, dependencies=[Depends(own_change)])
def second_factor_recovery(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
    """New recovery codes in place of the old, once a code of the account's app is typed
    (``factors.renew_recovery``): shown this once; a refusal shown on the page with its status."""
    source = address_bucket(request.client.host if request.client else None)
    made = factors.renew_recovery(store.db, session.staff, fields.get("code", "")[:64], source, now_s())
    words = i18n.words(lang)
    if isinstance(made, Code):
        return _enrol_page(
            request, store, lang, session, status=STATUS[made], error=words[made.value], error_code=made.value
        )
    state = store.db.transact(lambda tx: factors.state(tx, session.staff.staff_id))
    return page(request, "second_factor", lang, state=state, recovery=made, notice=words["recovery_renewed"])


@router.get(PREFIX + "/password", include_in_schema=False)
def own_password_form(request: Request, lang: Lang, session: Session) -> Response:
    return page(request, "password", lang)


@router.post(PREFIX + "/password", include_in_schema=False, dependencies=[Depends(own_change)])
def own_password(request: Request, store: Store, session: Session, fields: Form) -> Response:
    """The account's own password changed: every session of it ends, this one too; signing in again follows."""
    source = address_bucket(request.client.host if request.client else None)
    team.change_own_password(store, session.staff, fields, source, now_s())
    reply = RedirectResponse(PREFIX + "/sign-in?changed=1", status_code=303, headers={"Cache-Control": "no-store"})
    reply.delete_cookie(
        _cookie(request), path="/", httponly=True, secure=request.url.scheme == "https", samesite="strict"
    )
    return reply


# -- pages ---------------------------------------------------------------------------------------------------


def _visible(
    who: staff.Staff, requests: list[approvals.Request], action: Action = Action.APPROVALS_READ
) -> list[approvals.Request]:
    return [
        r
        for r in requests
        if allowed(who.role, action, Scope(who.stores, r.stores if r.stores is not None else frozenset()))
        and (r.kind not in approvals.READ or may(who.role, approvals.READ[r.kind]))
        and approvals.concerns(who, r)
    ]


@router.get(PREFIX + "/", include_in_schema=False)
def home(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    with store.db.read() as tx:
        waiting = (
            _visible(session.staff, approvals.listed(tx)) if may(session.staff.role, Action.APPROVALS_READ) else []
        )
    return page(request, "home", lang, pending=len(waiting))


def _search(request: Request, store: HqStore, session: sessions.Session) -> dict[str, Any]:
    q = request.query_params.get("q", "")[:200]
    with store.db.read() as tx:
        found = members.search(tx, session.staff, q, store.settings.card_keys.hash_uid) if q.strip() else []
    return {"q": q, "found": found}


@route("GET", "/members", Action.MEMBERS_READ)
def member_search(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return page(request, "members", lang, **_search(request, store, session))


@route("GET", "/members/results", Action.MEMBERS_READ)
def member_results(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return page(request, "results", lang, **_search(request, store, session))


@route("GET", "/members/{member_id}", Action.MEMBERS_READ)
def member_page(request: Request, store: Store, lang: Lang, session: Session, member_id: str) -> Response:
    shown = members.page(store, session.staff, member_id)
    return page(request, "member", lang, m=shown, notice=notice_of(request, lang))


def _member_path(member_id: str) -> str:
    return f"/members/{quote(member_id, safe='')}"


def _blocking(kind: str, blocked: bool) -> Callable[..., Response]:
    def change(request: Request, store: Store, lang: Lang, session: Session, fields: Form, subject: str) -> Response:
        done = members.block(store, session.staff, kind, subject, blocked, fields.get("reason", ""))
        return back(_member_path(str(done["member_id"])), "done")

    return change


for _kind, _path in (("member", "/members/{subject}"), ("card", "/cards/{subject}")):
    for _verb, _blocked in (("block", True), ("unblock", False)):
        route("POST", f"{_path}/{_verb}", Action.MEMBERS_BLOCK)(_blocking(_kind, _blocked))


def _whole(text: str) -> int:
    try:
        value = int(text.strip() or "0")
    except ValueError as exc:
        raise BackofficeRefused(Code.BAD_AMOUNT, "amounts are whole numbers") from exc
    return value


@route("POST", "/members/{member_id}/adjust", Action.MEMBERS_ADJUST)
def adjust(request: Request, store: Store, lang: Lang, session: Session, fields: Form, member_id: str) -> Response:
    points, value = _whole(fields.get("points", "")), _whole(fields.get("stored_value", ""))
    asked = members.ask_adjustment(store, session.staff, member_id, points, value, fields.get("reason", ""))
    return back(_member_path(member_id), "asked", asked.request_id)


@route("POST", "/members/{member_id}/erase", Action.MEMBERS_ERASE)
def erase(request: Request, store: Store, lang: Lang, session: Session, fields: Form, member_id: str) -> Response:
    if fields.get("confirm", "") != member_id:
        raise BackofficeRefused(Code.REASON_REQUIRED, "type the member id to confirm")
    members.erase(store, session.staff, member_id, fields.get("reason", ""))
    return page(request, "members", lang, q="", found=[], notice=i18n.words(lang)["erased"].format(id=member_id))


@route("GET", "/campaigns", Action.CAMPAIGNS_READ)
def campaigns_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    with store.db.read() as tx:
        shown = campaigns.listed(tx, session.staff)
        waiting = [r for r in approvals.listed(tx) if r.kind == approvals.CAMPAIGN]
    return page(request, "campaigns", lang, campaigns=shown, waiting=waiting, notice=notice_of(request, lang))


@route("POST", "/campaigns/launch", Action.CAMPAIGNS_LAUNCH)
def launch(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
    asked = campaigns.ask_launch(
        store, session.staff, fields.get("campaign_id", "").strip(), fields.get("spec", ""), fields.get("reason", "")
    )
    return back("/campaigns", "asked", asked.request_id)


@route("GET", "/approvals", Action.APPROVALS_READ)
def approvals_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    who = session.staff
    with store.db.read() as tx:
        pending = _visible(who, approvals.listed(tx))
        decided = [r for r in _visible(who, approvals.listed(tx, None, 100)) if r.state != approvals.PENDING]
        own = approvals.hands(tx, who)
        theirs = {r.request_id: approvals.own_hands(tx, who, r, own) for r in pending}
    rows = [
        {"decidable": _decidable(who, r, theirs[r.request_id]), **{name: getattr(r, name) for name in r.__slots__}}
        for r in pending
    ]
    return page(request, "approvals", lang, pending=rows, decided=decided, notice=notice_of(request, lang))


def _decidable(who: staff.Staff, held: approvals.Request, own: bool) -> bool:
    """Whether the page offers ``who`` to decide it (``own``: ``approvals.own_hands``; the service checks again)."""
    scope = Scope(who.stores, held.stores if held.stores is not None else frozenset())
    return not own and allowed(who.role, approvals.APPROVE[held.kind], scope) and approvals.concerns(who, held)


def _decision(approve: bool) -> Callable[..., Response]:
    def decide(request: Request, store: Store, lang: Lang, session: Session, fields: Form, request_id: str) -> Response:
        note = fields.get("note", "")
        if approve:
            store.db.transact(lambda tx: approvals.approve(tx, session.staff, request_id, note))
        else:
            store.db.transact(lambda tx: approvals.reject(tx, session.staff, request_id, note))
        return back("/approvals", "done")

    return decide


# Whether the role may decide this request's kind in its stores is the service's check.
for _verb, _approve in (("approve", True), ("reject", False)):
    route("POST", f"/approvals/{{request_id}}/{_verb}", *approvals.APPROVE.values())(_decision(_approve))


@route("GET", "/audit", Action.AUDIT_READ)
def audit_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    with store.db.read() as tx:
        records = audit.recent(tx, 200)
    return page(request, "audit", lang, records=records, verdict=audit.verify(store.db))


@router.get(PREFIX + "/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    found = pages.static_file(name)
    if found is None:
        raise BackofficeRefused(Code.NOT_FOUND, "no such file")
    content, kind = found
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    return Response(content, media_type=kind, headers=headers)


# -- reports: figures by store and day, each a table and a chart (docs/reports.md) ----------------------------

_REPORT_STORES = 50
"""At most this many ``store`` parameters are read."""


def _report(name: str) -> Callable[..., Response]:
    def show(request: Request, store: Store, lang: Lang, session: Session) -> Response:
        params = request.query_params
        stores = params.getlist("store")[:_REPORT_STORES]
        query: dict[str, Any] = {"from": params.get("from", ""), "to": params.get("to", ""), "store": stores}
        shown = reports.build(store, session.staff, name, query, datetime.now(UTC).date())
        tabled = reports.tables(shown.grid) if shown.grid else {}
        return page(request, "reports", lang, r=shown, names=reports.NAMES, money=reports.MONEY, tabled=tabled)

    return show


def _report_csv(name: str) -> Callable[..., Response]:
    def download(request: Request, store: Store, session: Session) -> Response:
        params = request.query_params
        stores = params.getlist("store")[:_REPORT_STORES]
        query: dict[str, Any] = {"from": params.get("from", ""), "to": params.get("to", ""), "store": stores}
        filename, body = reports.download(store, session.staff, name, query, datetime.now(UTC).date())
        headers = PAGE_HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)

    return download


for _name in reports.NAMES:
    _needs = Action.CAMPAIGNS_READ if _name == "campaigns" else Action.REPORTS_READ
    route("GET", f"/reports/{_name}", _needs)(_report(_name))
    if _name != "campaigns":
        route("GET", f"/reports/{_name}.csv", _needs)(_report_csv(_name))


# -- settlement: a period's statements, each as CSV and PDF (docs/settlement.md) ------------------------------


@route("GET", "/settlement", Action.SETTLEMENT_READ)
def settlement_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    asked = request.query_params.get("period", "")[:16]
    shown = bo_settlement.view(store, session.staff, asked, datetime.now(UTC).date())
    return page(request, "settlement", lang, s=shown)


@route("GET", "/settlement/{period}/{merchant_id}/statement.{fmt}", Action.SETTLEMENT_READ)
def settlement_document(store: Store, session: Session, period: str, merchant_id: str, fmt: str) -> Response:
    filename, body = bo_settlement.document(store, session.staff, period, merchant_id[:64], fmt)
    headers = PAGE_HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(body, media_type=bo_settlement.FORMATS[fmt], headers=headers)


__all__ = ["ACTIONS", "CSP", "PUBLIC", "install", "router"]


# -- reconciliation and the fleet ------------------------------------------------------------------------------
#   GET  /backoffice/recon?kind=&store=&till=&from=&to=&state=   items grouped, with counts and amounts
#   GET  /backoffice/recon/results?...                           the same groups (the htmx fragment)
#   GET  /backoffice/recon/export.csv?...                        the filtered items as CSV
#   GET  /backoffice/recon/items?...                             the filtered items (a group's), one by one
#   GET  /backoffice/recon/item?id=                              one item and its entries
#   POST /backoffice/recon/settle, /backoffice/recon/settle-group   form {item_id | till, day, kind; note}
#   POST /backoffice/recon/settle-picked                         form {pick repeated; note}: the ticked items
#   GET  /backoffice/recon/eod?store=&from=&to=                  end of day per store and business day
#   GET  /backoffice/fleet                                       every till's health, what is wrong first


_COUNT = re.compile(r"[0-9]{1,6}")


def _settled_notice(request: Request, lang: str) -> str:
    """What ``?settled=N`` says after a settle: a count of ASCII digits, else nothing (the address is typed)."""
    settled = request.query_params.get("settled", "")
    return i18n.words(lang)["settled_n"].format(n=int(settled)) if _COUNT.fullmatch(settled) else ""


def _recon_query(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "") for name in recon.FILTER_FIELDS}


def _recon_context(request: Request, store: HqStore, session: sessions.Session) -> dict[str, Any]:
    f = recon.filter_of(session.staff, _recon_query(request))
    with store.db.read() as tx:
        found = recon.listing(tx, session.staff, f)
        offered = recon.choices(tx, session.staff)
    query = recon.query_of(f)
    return {"groups": found, "f": f, "query": query, "qs": urlencode(query), "choices": offered}


@route("GET", "/recon", Action.RECON_READ)
def recon_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    shown = _recon_context(request, store, session)
    notice = _settled_notice(request, lang)
    return page(request, "recon", lang, notice=notice, **shown)


@route("GET", "/recon/results", Action.RECON_READ)
def recon_results(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return page(request, "recon_results", lang, **_recon_context(request, store, session))


@route("GET", "/recon/export.csv", Action.RECON_READ)
def recon_export(request: Request, store: Store, session: Session) -> Response:
    f = recon.filter_of(session.staff, _recon_query(request))
    with store.db.read() as tx:
        body = recon.export(tx, session.staff, f)
    headers = PAGE_HEADERS | {"Content-Disposition": 'attachment; filename="reconciliation-items.csv"'}
    return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)


@route("GET", "/recon/items", Action.RECON_READ)
def recon_items(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    """The items of the filter (a group's, from its link), the first ``ITEMS_SHOWN``."""
    f = recon.filter_of(session.staff, _recon_query(request))
    with store.db.read() as tx:
        rows = recon.rows(tx, session.staff, f)
    notice = _settled_notice(request, lang)
    query = recon.query_of(f)
    return page(request, "recon_items", lang, rows=rows, qs=urlencode(query), query=query, notice=notice)


@route("GET", "/recon/item", Action.RECON_READ)
def recon_item(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    with store.db.read() as tx:
        shown = recon.item_view(tx, session.staff, request.query_params.get("id", ""))
    notice = i18n.words(lang)["done"] if request.query_params.get("done") == "done" else ""
    return page(request, "recon_item", lang, v=shown, notice=notice)


def _item_path(item_id: str) -> str:
    return f"/recon/item?id={quote(item_id, safe='')}"


@route("POST", "/recon/settle", Action.RECON_SETTLE)
def recon_settle(request: Request, store: Store, session: Session, fields: Form) -> Response:
    item_id = fields.get("item_id", "")
    recon.settle(store, session.staff, item_id, fields.get("note", ""))
    where = f"{PREFIX}{_item_path(item_id)}&done=done"
    return RedirectResponse(where, status_code=303, headers={"Cache-Control": "no-store"})


@route("POST", "/recon/settle-group", Action.RECON_SETTLE)
def recon_settle_group(request: Request, store: Store, session: Session, fields: Form) -> Response:
    """Settles one group; back to the list with the filters it was settled from (validated again)."""
    kept = recon.query_of(recon.filter_of(session.staff, {k: fields.get(f"f_{k}", "") for k in recon.FILTER_FIELDS}))
    n = recon.settle_group(
        store,
        session.staff,
        fields.get("till", ""),
        fields.get("day", ""),
        fields.get("kind", ""),
        fields.get("note", ""),
    )
    where = f"{PREFIX}/recon?{urlencode({**kept, 'settled': str(n)})}"
    return RedirectResponse(where, status_code=303, headers={"Cache-Control": "no-store"})


@route("POST", "/recon/settle-picked", Action.RECON_SETTLE)
def recon_settle_picked(request: Request, store: Store, session: Session, fields: FormLists) -> Response:
    """Settles the ticked items (``pick`` repeated) with one note; back to the items with their filters."""
    kept = recon.query_of(
        recon.filter_of(session.staff, {k: (fields.get(f"f_{k}") or [""])[-1] for k in recon.FILTER_FIELDS})
    )
    n = recon.settle_picked(store, session.staff, fields.get("pick", []), (fields.get("note") or [""])[-1])
    where = f"{PREFIX}/recon/items?{urlencode({**kept, 'settled': str(n)})}"
    return RedirectResponse(where, status_code=303, headers={"Cache-Control": "no-store"})


@route("GET", "/recon/eod", Action.RECON_READ)
def recon_eod(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    f = recon.eod_window(recon.filter_of(session.staff, _recon_query(request)), store.moment().date())
    with store.db.read() as tx:
        days = recon.eod(tx, session.staff, f)
        offered = recon.choices(tx, session.staff)
    return page(request, "recon_eod", lang, days=days, f=f, choices=offered)


@route("GET", "/fleet", Action.FLEET_READ)
def fleet_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return page(request, "fleet", lang, tills=recon.tills(store, session.staff))


# -- rule and coupon editors (with the quote preview), staff management ---------------------------------------


def _editor(
    request: Request, kind: str, lang: str, who: staff.Staff, form: dict[str, str], status: int = 200, **more: Any
) -> HTMLResponse:
    context: dict[str, Any] = {
        "kind": kind,
        "fields": editors.FORMS[kind],
        "form": form,
        "editing": form.get("editing", ""),
        "field_errors": {},
        "editable": may(who.role, Action.RULES_EDIT),
    }
    return page(request, "editor", lang, status, **(context | more))


def _documents_page(kind: str) -> Callable[..., Response]:
    def shown(request: Request, store: Store, lang: Lang, session: Session) -> Response:
        with store.db.read() as tx:
            found = editors.listed(tx, session.staff, kind)
        notice = notice_of(request, lang)
        editable = may(session.staff.role, Action.RULES_EDIT)
        return page(request, "documents", lang, kind=kind, documents=found, notice=notice, editable=editable)

    return shown


def _edit_page(kind: str) -> Callable[..., Response]:
    def shown(request: Request, store: Store, lang: Lang, session: Session) -> Response:
        doc_id = request.query_params.get("id", "")
        form: dict[str, str] = {}
        if doc_id:
            with store.db.read() as tx:
                staff.require(session.staff, Action.RULES_READ)
                doc = editors.held(tx, kind, doc_id)
            if doc is None:
                raise BackofficeRefused(Code.NOT_FOUND, f"no {kind} {doc_id}")
            form = editors.form_of(kind, doc_id, doc)
        return _editor(request, kind, lang, session.staff, form)

    return shown


def _save(kind: str) -> Callable[..., Response]:
    def saved(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
        try:
            editors.save(store, session.staff, kind, fields)
        except documents.DocumentInvalid as exc:
            code = Code.DOCUMENT_INVALID
            words = i18n.words(lang)
            return _editor(
                request,
                kind,
                lang,
                session.staff,
                fields,
                STATUS[code],
                field_errors=exc.by_field(),
                error=words[code.value],
                error_code=code.value,
            )
        return back(f"/{kind}s", "done")

    return saved


def _preview(kind: str) -> Callable[..., Response]:
    def previewed(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
        if not fields.get("basket", "").strip():
            return page(request, "preview", lang, shown=None, empty=True)
        return page(request, "preview", lang, shown=editors.preview(store, session.staff, kind, fields), empty=False)

    return previewed


def _retire(kind: str) -> Callable[..., Response]:
    def retired(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
        editors.retire(store, session.staff, kind, fields.get("id", ""), fields.get("reason", ""))
        return back(f"/{kind}s", "done")

    return retired


for _doc_kind in editors.KINDS:
    route("GET", f"/{_doc_kind}s", Action.RULES_READ)(_documents_page(_doc_kind))
    route("GET", f"/{_doc_kind}s/edit", Action.RULES_READ)(_edit_page(_doc_kind))
    route("POST", f"/{_doc_kind}s/save", Action.RULES_EDIT)(_save(_doc_kind))
    route("POST", f"/{_doc_kind}s/preview", Action.RULES_EDIT)(_preview(_doc_kind))
    route("POST", f"/{_doc_kind}s/retire", Action.RULES_EDIT)(_retire(_doc_kind))


def _staff_page(request: Request, store: HqStore, lang: str, session: sessions.Session, **context: Any) -> Response:
    with store.db.read() as tx:
        accounts = team.listed(tx, session.staff)
        failed = {a.staff_id: staff.failures(tx, a.staff_id, now_s()) for a in accounts}
        second = {a.staff_id: factors.enrolled(tx, a.staff_id) for a in accounts}
    shown = {"issued": None} | context
    return page(request, "staff", lang, accounts=accounts, failed=failed, second=second, **shown)


@route("GET", "/staff", Action.STAFF_MANAGE)
def staff_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return _staff_page(request, store, lang, session, notice=notice_of(request, lang))


@route("POST", "/staff/{staff_id}/enrol-code", Action.STAFF_MANAGE)
def staff_enrol_code(
    request: Request, store: Store, lang: Lang, session: Session, fields: Form, staff_id: str
) -> Response:
    """An enrolment code for the account (``team.issue_enrol_code``, audited), shown in this answer only."""
    code, expires = team.issue_enrol_code(store, session.staff, staff_id, fields, now_s())
    issued = {"staff_id": staff_id, "code": code, "expires": datetime.fromtimestamp(expires, UTC)}
    return _staff_page(request, store, lang, session, issued=issued)


@route("POST", "/staff/add", Action.STAFF_MANAGE)
def staff_add(request: Request, store: Store, lang: Lang, session: Session, fields: Form) -> Response:
    team.create(store, session.staff, fields)
    return back("/staff", "done")


_STAFF_CHANGES = {
    "role": team.set_role,
    "password": team.reset_password,
    "unlock": team.unlock,
    "disable": team.disable,
    "second-factor": team.reset_second_factor,
}


def _staff_change(verb: str) -> Callable[..., Response]:
    def change(request: Request, store: Store, lang: Lang, session: Session, fields: Form, staff_id: str) -> Response:
        _STAFF_CHANGES[verb](store, session.staff, staff_id, fields)
        return back("/staff", "done")

    return change


for _staff_verb in _STAFF_CHANGES:
    route("POST", f"/staff/{{staff_id}}/{_staff_verb}", Action.STAFF_MANAGE)(_staff_change(_staff_verb))


# -- the rewards catalogue and the vouchers (docs/rewards.md, docs/stored-value.md) ------------------------------
#   GET  /backoffice/rewards?voucher=                      every reward and its stock left; vouchers by state; one found


@route("GET", "/rewards", Action.RULES_READ)
def rewards_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    shown = rewards.page(store, session.staff, request.query_params.get("voucher", "")[:80])
    return page(request, "rewards", lang, r=shown)


# -- gift cards (docs/giftcards.md) ------------------------------------------------------------------------------
#   GET  /backoffice/giftcards?q=                          find a card by its id or card hash (the newest used first)
#   GET  /backoffice/giftcards/{card_id}                   the card: state, balance, expiry, every activity
#   POST /backoffice/giftcards/{card_id}/unblock           form {reason}: usable again (its value does not move)
#   POST /backoffice/giftcards/{card_id}/clear             form {reason}: a request to clear its balance (four eyes)


def _gift_path(card_id: str) -> str:
    return f"/giftcards/{quote(card_id, safe='')}"


@route("GET", "/giftcards", Action.GIFTCARDS_READ)
def giftcards_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    q = request.query_params.get("q", "")[:80]
    with store.db.read() as tx:
        found = giftcards.search(tx, session.staff, q)
    return page(request, "giftcards", lang, q=q, found=found)


@route("GET", "/giftcards/{card_id}", Action.GIFTCARDS_READ)
def giftcard_page(request: Request, store: Store, lang: Lang, session: Session, card_id: str) -> Response:
    shown = giftcards.page(store, session.staff, card_id[:64])
    return page(request, "giftcard", lang, g=shown, notice=notice_of(request, lang))


@route("POST", "/giftcards/{card_id}/unblock", Action.GIFTCARDS_UNBLOCK)
def giftcard_unblock(
    request: Request, store: Store, lang: Lang, session: Session, fields: Form, card_id: str
) -> Response:
    giftcards.unblock(store, session.staff, card_id[:64], fields.get("reason", ""))
    return back(_gift_path(card_id), "done")


@route("POST", "/giftcards/{card_id}/clear", Action.GIFTCARDS_CLEAR)
def giftcard_clear(
    request: Request, store: Store, lang: Lang, session: Session, fields: Form, card_id: str
) -> Response:
    asked = giftcards.ask_clear(store, session.staff, card_id[:64], fields.get("reason", ""))
    return back(_gift_path(card_id), "asked", asked.request_id)


# -- holds of online payment confirmations (docs/payments.md) ---------------------------------------------------
#   GET  /backoffice/holds                                 every hold now, oldest first
#   POST /backoffice/holds/{txn_id}/release                form {terminal_id, reason}: that till's hold ends (audited)


@route("GET", "/holds", Action.HOLDS_READ)
def holds_page(request: Request, store: Store, lang: Lang, session: Session) -> Response:
    return page(request, "holds", lang, held=holds.listed(store, session.staff), notice=notice_of(request, lang))


@route("POST", "/holds/{txn_id}/release", Action.HOLDS_RELEASE)
def hold_release(request: Request, store: Store, lang: Lang, session: Session, fields: Form, txn_id: str) -> Response:
    holds.release(store, session.staff, txn_id[:64], fields.get("terminal_id", "")[:64], fields.get("reason", ""))
    return back("/holds", "done")
