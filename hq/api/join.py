"""Head office's member routes: the sign-up page a receipt's QR opens, claims, erasure.

    GET  /join                            the sign-up page (the claim code rides in the URL fragment)
    GET  /v1/join/terms                   the consent wording and its version, the marketing wording and
                                          its version, the profile attributes the chain collects
    POST /v1/claims                       claim code + name + consent (+ birthday, attributes, marketing
                                          consent) -> a new member with the sale's points
    POST /v1/admin/members/{id}/erase     admin token; erase a member (tombstones go down to every till)
    GET  /v1/admin/members/{id}/consents  admin token; what the member agreed to, when, where

``router`` is included by ``hq.api.app.create_app``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from hq import members, profiles
from hq.api.deps import Admin, Store, set_session_cookie
from hq.api.errors import ApiError, errors
from hq.db.engine import Tx
from hq.erasure import erase_member
from hq.wallet import signin
from hq.web import address_bucket
from sync.protocol import ErrorCode

router = APIRouter()


class ClaimIn(BaseModel):
    token: str = Field(min_length=10, max_length=4096)
    """The claim code: its body, ``TPJ1:<body>`` or the whole URL."""
    display_name: str = Field(min_length=1, max_length=64)
    consent_version: str = Field(min_length=1, max_length=64)
    """The version of the wording the member agreed to (``GET /v1/join/terms``)."""
    birthday: str | None = Field(None, max_length=10)
    """``YYYY-MM-DD``, optional."""
    attributes: dict[str, Annotated[str, Field(max_length=64)]] = Field(default_factory=dict, max_length=32)
    """Profile attributes the chain collects (``GET /v1/join/terms``), optional."""
    marketing_version: str | None = Field(None, max_length=64)
    """The version of the marketing wording the member ticked; absent: no marketing consent."""
    contact: str | None = Field(None, max_length=254)
    """An email address or a phone number (``+`` and digits) to sign in to the wallet later, optional."""


class ClaimOut(BaseModel):
    member_id: str
    display_name: str
    points: int
    txn_id: str


claim_errors = errors(
    ErrorCode.CLAIM_FORGED,
    ErrorCode.CLAIM_EXPIRED,
    ErrorCode.CLAIM_USED,
    ErrorCode.CLAIM_UNKNOWN_SALE,
    ErrorCode.CONSENT_REQUIRED,
    ErrorCode.BAD_BIRTHDAY,
    ErrorCode.UNKNOWN_ATTRIBUTE,
    ErrorCode.BAD_ATTRIBUTE_VALUE,
    ErrorCode.BAD_CONSENT,
    ErrorCode.WALLET_BAD_CONTACT,
    ErrorCode.WALLET_CONTACT_TAKEN,
    ErrorCode.WALLET_RATE_LIMITED,
)


@router.get("/join", include_in_schema=False)
def join_page(store: Store) -> HTMLResponse:
    return HTMLResponse(page(store.attribute_rules(for_members=True)), headers=PAGE_HEADERS)


@router.get("/v1/join/terms", tags=["members"])
def terms(store: Store) -> dict[str, Any]:
    return {
        "version": members.CONSENT_VERSION,
        "text": members.CONSENT_TEXT,
        "marketing_version": profiles.MARKETING_VERSION,
        "marketing_text": profiles.MARKETING_TEXT,
        "attributes": store.attribute_rules(for_members=True),
    }


@router.post("/v1/claims", response_model=ClaimOut, responses=claim_errors, tags=["members"])
def claim(store: Store, body: ClaimIn, request: Request, response: Response) -> ClaimOut:
    """A new member with the sale's points, signed in to the wallet at once (the session cookie)."""
    name = " ".join(body.display_name.split())
    if body.marketing_version is not None and body.marketing_version != profiles.MARKETING_VERSION:
        raise ApiError(ErrorCode.BAD_CONSENT, "Please read and tick the current marketing wording again.")
    profile = profiles.ProfileChange(
        birthday=body.birthday or None,
        attributes={k: v for k, v in body.attributes.items() if v},
        consents=((profiles.MARKETING, body.marketing_version),) if body.marketing_version else (),
    )
    try:
        contact = signin.contact_of(body.contact) if body.contact else None
    except signin.WalletRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    now = store.moment()  # head office's clock
    stamp = int(now.timestamp())
    source = address_bucket(request.client.host if request.client else None)

    def join(tx: Tx) -> tuple[dict[str, Any], str]:
        if contact is not None:  # whether a contact is taken is told a few times an address
            signin.check_probes(tx, source, stamp)
        got = members.claim(tx, body.token, name, body.consent_version, now, profile)
        if contact is not None:
            signin.set_contact(tx, str(got["member_id"]), contact, signin.UNPROVEN, stamp)
        return got, signin.open_session(tx, str(got["member_id"]), "join", stamp)

    try:
        got, token = store.db.transact(join)
    except (members.ClaimRefused, profiles.ProfileRefused) as exc:
        raise ApiError(ErrorCode(exc.code), str(exc)) from exc
    except signin.WalletRefused as exc:
        if exc.code is ErrorCode.WALLET_CONTACT_TAKEN:
            store.db.transact(lambda tx: signin.note_probe(tx, source, stamp))
        raise ApiError(exc.code, str(exc)) from exc
    set_session_cookie(response, request, token, signin.SESSION_TTL)
    return ClaimOut(**got)


@router.post(
    "/v1/admin/members/{member_id}/erase",
    tags=["members"],
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
)
def erase(store: Store, member_id: str, admin: Admin) -> dict[str, Any]:
    try:
        return {"member_id": member_id, **erase_member(store, member_id, admin)}
    except members.UnknownMember as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from exc


@router.get(
    "/v1/admin/members/{member_id}/consents",
    tags=["members"],
    responses=errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN),
)
def consents(store: Store, member_id: str, admin: Admin) -> list[dict[str, str]]:
    with store.db.read() as tx:
        return members.consents(tx, member_id)


def page(rules: list[dict[str, Any]] | None = None) -> str:
    """The sign-up page, rendered here with the chain's profile attributes (nothing loaded from elsewhere)."""
    return (
        _PAGE.replace("{{TEXT}}", html.escape(members.CONSENT_TEXT))
        .replace("{{VERSION}}", html.escape(members.CONSENT_VERSION))
        .replace("{{MARKETING_TEXT}}", html.escape(profiles.MARKETING_TEXT))
        .replace("{{MARKETING_VERSION}}", html.escape(profiles.MARKETING_VERSION))
        .replace("{{ATTRIBUTES}}", "".join(_attribute_field(r) for r in rules or []))
    )


def _attribute_field(rule: dict[str, Any]) -> str:
    """One optional attribute: a choice of its allowed values, or a text field with its pattern."""
    name, label = html.escape(str(rule["name"])), html.escape(str(rule["label"]))
    head = f'<label for="attr-{name}">{label} (optional)</label>'
    if rule["allowed"]:
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in rule["allowed"])
        return f'{head}<select id="attr-{name}" class="attr" data-name="{name}"><option value=""></option>{options}</select>'
    pattern = html.escape(str(rule["pattern"] or ""))
    return (
        f'{head}<input id="attr-{name}" class="attr" data-name="{name}" type="text" maxlength="64" pattern="{pattern}">'
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Join and collect your points</title>
<style>
body{font:17px/1.45 system-ui,sans-serif;margin:0;padding:1rem;max-width:28rem;margin-inline:auto;color:#111}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .3rem}
input[type=text],input[type=date],select{width:100%;box-sizing:border-box;font-size:1.1rem;padding:.6rem;border:1px solid #888;border-radius:6px}
.consent{display:flex;gap:.6rem;align-items:flex-start;background:#f4f4f4;padding:.7rem;border-radius:6px}
.consent input{width:1.4rem;height:1.4rem;flex:none}
button{width:100%;font-size:1.15rem;padding:.8rem;margin-top:1rem;border:0;border-radius:6px;background:#0a5;color:#fff}
button:disabled{background:#999}#result{margin-top:1rem;padding:.8rem;border-radius:6px}
.ok{background:#e3f6e8}.bad{background:#fde8e8}
</style></head><body>
<h1>Join and collect your points</h1>
<p id="intro">Your name and one tick: the points of this receipt go to your new membership.</p>
<form id="join">
<label for="name">Your name</label>
<input id="name" name="name" type="text" autocomplete="name" maxlength="64" required>
<label for="birthday">Your birthday (optional: a treat on the day)</label>
<input id="birthday" name="birthday" type="date" autocomplete="bday">
{{ATTRIBUTES}}
<label for="contact">Email or phone (optional: to sign in to your wallet later)</label>
<input id="contact" name="contact" type="text" autocomplete="email" maxlength="254">
<div class="consent"><input id="consent" type="checkbox" required>
<label for="consent" id="consent-text">{{TEXT}}</label></div>
<input id="version" type="hidden" value="{{VERSION}}">
<div class="consent"><input id="marketing" type="checkbox">
<label for="marketing" id="marketing-text">{{MARKETING_TEXT}} (optional)</label></div>
<input id="marketing-version" type="hidden" value="{{MARKETING_VERSION}}">
<button id="submit" type="submit">Join and collect my points</button>
</form>
<div id="result" role="status" hidden></div>
<p id="wallet" hidden><a id="wallet-link" href="/wallet/">Open your wallet: points, coupons and your member code</a></p>
<script>
const token = decodeURIComponent(location.hash.slice(1));
const form = document.getElementById("join"), result = document.getElementById("result");
function show(text, ok) { result.hidden = false; result.className = ok ? "ok" : "bad"; result.textContent = text; }
if (!token.startsWith("TPJ1:")) { form.hidden = true; show("Scan the QR code on your receipt to join.", false); }
function claimBody() {
  const body = {token, display_name: document.getElementById("name").value,
                consent_version: document.getElementById("version").value, attributes: {}};
  const birthday = document.getElementById("birthday").value;
  if (birthday) body.birthday = birthday;
  for (const field of document.querySelectorAll(".attr")) if (field.value) body.attributes[field.dataset.name] = field.value;
  if (document.getElementById("marketing").checked) body.marketing_version = document.getElementById("marketing-version").value;
  const contact = document.getElementById("contact").value.trim();
  if (contact) body.contact = contact;
  return body;
}
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const reply = await fetch("/v1/claims", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(claimBody())});
    const body = await reply.json();
    if (reply.ok) {
      form.hidden = true;
      show(`Welcome, ${body.display_name}! Your member number is ${body.member_id}; ${body.points} points were added.`, true);
      result.dataset.memberId = body.member_id;
      document.getElementById("wallet").hidden = false;
    } else { show(body.message || "Something went wrong; please try again.", false); result.dataset.code = body.code || ""; }
  } catch (e) { show("No connection: please try again.", false); }
  button.disabled = false;
});
</script></body></html>
"""


def _digest(tag: str) -> str:
    """The CSP source of the page's one inline ``tag`` element: its sha256 (the page shares its origin with the
    back office, so nothing else inline may run or style it)."""
    body = re.search(rf"<{tag}>(.*?)</{tag}>", _PAGE, re.S)
    assert body is not None, tag
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode() + "'"


PAGE_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src {_digest('style')}; script-src {_digest('script')}; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

__all__ = ["ClaimIn", "ClaimOut", "page", "router"]
