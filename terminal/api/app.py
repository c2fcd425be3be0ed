"""The local API: status, events, sales and voids, top-ups, vouchers, gift cards, and a simulated tap for the demo.

Security: the API listens on loopback only, because anything on the shop's network could otherwise
ring sales; Host and Origin are checked against an allowlist so a web page the cashier opens cannot
reach the till through DNS rebinding or a cross-site request; every state change needs the bearer
token from the daemon's token file (a local program must be given it); only JSON bodies are accepted,
so a plain HTML form can never post one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import Field, Strict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync.asgi import BodyGuard, validation_message
from sync.protocol import EntryKind, ErrorCode
from terminal.api.cashier import Body, cashier_router, panel_files
from terminal.api.events import EventHub
from terminal.api.pairing import Pairing
from terminal.credentials import parse_uid
from terminal.errors import Code, Rejected
from terminal.model import Basket, Line, SaleOrder, request_key
from terminal.ports import Cashier, Ledger, PosTill

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
MAX_BODY = 1024 * 1024  # a basket of 500 lines is ~50 KB; nothing the till takes is larger
HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


REQUEST_ID = r"^[^\x00-\x1f\x7f]+$"
"""A POS's request_id: 1 to 64 characters, none a control character."""


def _key(request_id: str | None, route: str, body: Body) -> str | None:
    """The POS's ``request_id`` with the digest of the request it came with (``route``, the body but the id), as
    the till keeps it (``request_key``): sent again with another request, it is refused ``request_id_reused``."""
    if request_id is None:
        return None
    asked = {"route": route, "body": body.model_dump(mode="json", exclude={"request_id"})}
    text = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return request_key(request_id, hashlib.sha256(text.encode("ascii")).hexdigest()[:32])


class LineIn(Body):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: int = Field(ge=0, le=10**12)
    category: str = Field(default="", max_length=64)


class SaleIn(Body):
    member_id: str | None = Field(default=None, max_length=128)
    """The member the cashier named; none (and no ``use_identified``) rings an anonymous sale."""
    use_identified: bool = False
    """Ring it on the member of the last card tap (refused with ``no_member`` when no card was tapped;
    ``member_mismatch`` when ``member_id`` names someone else). Never implied."""
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    """At least one line, unless the sale only buys rewards."""
    coupons: list[Annotated[str, Field(max_length=512)]] = Field(default_factory=list, max_length=50)
    """Coupon ids presented; the member's personal coupons are offered by themselves."""
    redeem: int = Field(default=0, ge=-1)
    """Points to pay with; -1 = as many as the rules allow."""
    stored_value: int | None = Field(default=0, ge=0)
    """Stored value to pay with (minor units); null = as much as the balance covers after points."""
    payment_code: str | None = Field(default=None, max_length=512)
    """A one-time payment code (QR text "TPP1:...") authorising the stored-value part."""
    pay_by_card: bool = False
    """Authorise with the card of the last tap (it must be able to pay: SUN or Lite-S MAC)."""
    rewards: list[Annotated[str, Field(min_length=1, max_length=48)]] = Field(default_factory=list, max_length=20)
    """Rewards of the catalogue the member buys with points (docs/rewards.md): the member's proof is needed,
    as for any spend; each is a line of its own at price 0."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this sale (``POST /v1/sales``): a sale recorded under it is answered again, the same
    receipt, and never recorded twice, so a request that got no answer can be sent again as it was."""

    @model_validator(mode="after")
    def _buys_something(self) -> SaleIn:
        if not self.lines and not self.rewards:
            raise ValueError("a sale has at least one line or one reward")
        return self


class TopupIn(Body):
    member_id: str | None = Field(default=None, max_length=128)
    """The member whose stored value the money goes to; or ``use_identified`` (the last card tap)."""
    use_identified: bool = False
    amount: int = Field(gt=0, le=10**12)
    """What the POS took, in minor units."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this top-up: one recorded under it is answered again, never credited twice."""


class VoucherSellIn(Body):
    value: int | None = Field(default=None, gt=0, le=10**12)
    """An amount voucher of this face value (minor units); or ``sku``."""
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    """A product voucher of this sku."""
    member_id: str | None = Field(default=None, min_length=1, max_length=128)
    """The member whose wallet shows the voucher (optional)."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this sale of a voucher: one sold under it is answered again, never a second voucher."""


class VoucherCodeIn(Body):
    code: str = Field(min_length=1, max_length=400)
    """The voucher's ``TPV1:`` text, as scanned or typed."""
    sale_ref: str = Field(default="", max_length=128)
    """The POS's own reference of the sale the voucher pays (redemption only)."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this redemption or refund: one recorded under it is answered again (not
    ``voucher_used``), nothing done twice."""


class VoidIn(Body):
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this void: one recorded under it is answered again, the same receipt (another id on a
    voided sale or top-up is ``already_voided``)."""


class RefundIn(Body):
    lines: dict[Annotated[int, Strict(False)], int] = Field(min_length=1)
    """Line index (0-based, as in the sale) -> units returned. The index is an object key, so text ("0")."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this refund: one recorded under it is answered again, the same receipt, never refunded
    twice."""


class Unauthorized(Exception):
    """A state change without the API token."""


class BadRequest(Exception):
    """A request whose body passed its schema but not a closer look: 422 with a code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class GiftAmountIn(Body):
    amount: int = Field(gt=0, le=10**12)
    """Minor units: what the POS took (a sale, a load), what the card pays, or what goes back on it."""
    sale_ref: str = Field(default="", max_length=128)
    """The POS's own reference of the sale the card pays (a payment only)."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this payment or refund onto the card: one recorded under it is answered again, never
    paid or given back twice."""


class GiftSellIn(Body):
    amount: int = Field(gt=0, le=10**12)
    """Minor units: what the POS took for the card's sale or load."""
    request_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=REQUEST_ID)
    """The POS's own id of this sale or load of a card: one recorded under it is answered again, never twice."""


class GiftBlockIn(Body):
    reason: str = Field(default="", max_length=200)


class TapIn(Body):
    uid: str


class ScanIn(Body):
    text: str = Field(min_length=1, max_length=4096)


def _split_host(value: str) -> str | None:
    """The host of a Host header (``host``, ``host:port``, ``[v6]`` or ``[v6]:port``); None when what
    follows the host is anything but a numeric port."""
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host += "]"
    else:
        host, _, rest = value.partition(":")
        rest = ":" + rest if _ else ""
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return host


def _host_allowed(value: str | None, extra: frozenset[str] = frozenset()) -> bool:
    host = _split_host(value) if value else None
    return host is not None and (host in LOOPBACK_HOSTS or host in extra)


def _origin_allowed(origin: str | None, extra_origins: frozenset[str] = frozenset()) -> bool:
    if origin is None:
        return True
    scheme, _, rest = origin.partition("://")
    return (scheme == "http" and _host_allowed(rest)) or origin in extra_origins


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def create_app(
    till: PosTill,
    ledger: Ledger,
    cashier: Cashier,
    pairing: Pairing,
    *,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    metrics_enabled: bool = False,
) -> FastAPI:
    """The local API of ``till`` (the daemon): sales and quotes on ``ledger`` (the service) and through
    the till's one sale path, the cashier's session, devices paired with ``pairing``. ``allowed_hosts``
    and ``allowed_origins`` beyond loopback (``[api]``); ``metrics_enabled``: serve GET /metrics."""
    # No /docs or /redoc: their pages load scripts from a CDN, on the origin where the panel keeps its token.
    app = FastAPI(title="tillpoint local API", version="1", docs_url=None, redoc_url=None)
    extra_hosts = frozenset(allowed_hosts)
    extra_origins = frozenset(allowed_origins)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if not _host_allowed(request.headers.get("host"), extra_hosts):
            return _refuse(403, "bad_host", "Host not allowed.")
        if not _origin_allowed(request.headers.get("origin"), extra_origins):
            return _refuse(403, "bad_origin", "Origin not allowed.")
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return _refuse(403, "bad_content_type", "Only application/json bodies are accepted.")
        return await call_next(request)

    @app.exception_handler(Rejected)
    async def rejected(_: Request, exc: Rejected) -> JSONResponse:
        return _refuse(409, exc.code.value, exc.message)

    def token(authorization: str = Header(default="")) -> None:
        given = authorization.removeprefix("Bearer ").strip()
        if not given:
            raise Unauthorized()
        # The till's own token, or a device's paired with a code (terminal/api/pairing.py). Bytes:
        # compare_digest refuses str with characters beyond ASCII (a 500 instead of a 403).
        if not hmac.compare_digest(given.encode(), till.api_token.encode()) and pairing.check(given) is None:
            raise Unauthorized()

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return _refuse(422, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A body or query that fails its schema: 422 ``invalid_request``, the field and why (a stable code)."""
        return _refuse(422, "invalid_request", validation_message(exc))

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        return _refuse(403, "unauthorized", "A valid API token is required for this action.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """A path that is not there, a method its route does not take: the API's shape, with head office's codes."""
        code = HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR).value
        body = {"code": code, "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def internal(_: Request, __: Exception) -> JSONResponse:
        """A bug: the traceback goes to the daemon's log (the server logs it after this answer), not to the caller."""
        return _refuse(500, ErrorCode.INTERNAL.value, "The till hit an internal error (see its log).")

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return dict(till.status())

    if metrics_enabled:

        @app.get("/metrics")
        def metrics() -> Response:
            """Prometheus text format; no personal data, so no token (loopback and Host checks apply)."""
            body, content_type = till.metrics_exposition()
            return Response(body, media_type=content_type)

    @app.get("/v1/events", dependencies=[Depends(token)])
    def events(after: int = 0) -> list[dict[str, Any]]:
        return list(till.events_after(after))

    def _sale_args(body: SaleIn) -> tuple[str | None, Basket]:
        member_id = till.member_for_sale(body.member_id, body.use_identified)
        return member_id, Basket(tuple(Line(x.sku, x.quantity, x.unit_price, x.category) for x in body.lines))

    def _order(body: SaleIn) -> SaleOrder:
        member_id, basket = _sale_args(body)
        return SaleOrder(
            member_id,
            basket,
            tuple(body.coupons),
            body.redeem,
            stored_value=body.stored_value,
            code=body.payment_code,
            pay_by_card=body.pay_by_card,
            rewards=tuple(body.rewards),
            request_id=_key(body.request_id, "sale", body),
        )

    @app.post("/v1/quote", dependencies=[Depends(token)])
    def quote(body: SaleIn) -> dict[str, Any]:
        """Price a basket without recording anything: coupons chosen and refused, points, explanation."""
        q = till.pos_quote(_order(body))
        return {**asdict(q), "payable": q.payable}

    @app.post("/v1/sales", dependencies=[Depends(token)])
    def sale(body: SaleIn) -> dict[str, Any]:
        """Record a sale; a ``request_id`` already recorded is answered with that sale's receipt (before anything
        of the body is read again: the tap it named may be gone since)."""
        key = _key(body.request_id, "sale", body)
        done = ledger.recorded(key) if key is not None else None
        return asdict(done if done is not None else till.pos_sale(_order(body)))

    @app.post("/v1/sales/{txn_id}/refund", dependencies=[Depends(token)])
    def refund(txn_id: str, body: RefundIn) -> dict[str, Any]:
        return asdict(ledger.refund(txn_id, body.lines, _key(body.request_id, f"refund {txn_id}", body)))

    @app.post("/v1/sales/{txn_id}/void", dependencies=[Depends(token)])
    def void(txn_id: str, body: VoidIn | None = None) -> dict[str, Any]:
        return asdict(ledger.void(txn_id, _key(body.request_id, f"void {txn_id}", body) if body is not None else None))

    @app.post("/v1/topups", dependencies=[Depends(token)])
    def topup(body: TopupIn) -> dict[str, Any]:
        """Credit a top-up the POS took the money for (docs/stored-value.md); 409 with the refusal's code. A
        ``request_id`` already recorded is answered with that top-up's receipt, crediting nothing."""
        key = _key(body.request_id, "topup", body)
        done = ledger.recorded(key, EntryKind.TILL_TOPUP.value) if key is not None else None
        if done is not None:
            return asdict(done)
        member_id = till.member_for_sale(body.member_id, body.use_identified)
        if member_id is None:
            raise Rejected(Code.NO_MEMBER, "Name the member (member_id) or use the member of the last tap.")
        return asdict(ledger.topup(member_id, body.amount, key))

    @app.post("/v1/topups/{txn_id}/void", dependencies=[Depends(token)])
    def void_topup(txn_id: str, body: VoidIn | None = None) -> dict[str, Any]:
        """Void a top-up of this till, the same business day, while the balance still holds it; a ``request_id``
        already recorded is answered with that void's receipt."""
        key = _key(body.request_id, f"void-topup {txn_id}", body) if body is not None else None
        return asdict(ledger.void_topup(txn_id, key))

    @app.post("/v1/vouchers/sell", dependencies=[Depends(token)])
    def sell_voucher(body: VoucherSellIn) -> dict[str, Any]:
        """Sell a voucher of this till's stock (the POS took its value): its signed code, to print as a QR
        (docs/stored-value.md, "Vouchers"); 409 with the refusal's code."""
        key = _key(body.request_id, "voucher sell", body)
        done = ledger.answered(key, EntryKind.VOUCHER_SALE.value) if key is not None else None
        return done if done is not None else asdict(ledger.sell_voucher(body.value, body.sku, body.member_id, key))

    @app.post("/v1/vouchers/redeem", dependencies=[Depends(token)])
    def redeem_voucher(body: VoucherCodeIn) -> dict[str, Any]:
        """Use a voucher once: what the POS takes off the sale (``value``, or one unit of ``sku``)."""
        key = _key(body.request_id, "voucher redeem", body)
        done = ledger.answered(key, EntryKind.VOUCHER_REDEEM.value) if key is not None else None
        return done if done is not None else asdict(ledger.redeem_voucher(body.code, body.sale_ref, key))

    @app.post("/v1/vouchers/refund", dependencies=[Depends(token)])
    def refund_voucher(body: VoucherCodeIn) -> dict[str, Any]:
        """Refund an unused voucher at the store that sold it, while head office answers."""
        key = _key(body.request_id, "voucher refund", body)
        done = ledger.answered(key, EntryKind.VOUCHER_REFUND.value) if key is not None else None
        return done if done is not None else asdict(ledger.refund_voucher(body.code, key))

    # Gift cards (docs/giftcards.md): each action takes the card the cashier tapped last (within a minute).
    @app.get("/v1/giftcards/balance", dependencies=[Depends(token)])
    def gift_balance() -> dict[str, Any]:
        """The tapped gift card's state and balance as this till knows it."""
        card = ledger.gift_card(till.gift_tap())
        return {k: v for k, v in card.to_doc().items() if k != "uid_hash"}

    @app.post("/v1/giftcards/sell", dependencies=[Depends(token)])
    def sell_gift(body: GiftSellIn) -> dict[str, Any]:
        """Sell the tapped card as a gift card with ``amount`` on it (the POS took it); 409 with the code. A
        ``request_id`` already recorded is answered as it was (before the tap is looked for: it may be gone since)."""
        key = _key(body.request_id, "giftcard sell", body)
        done = ledger.answered(key, EntryKind.GIFT_ACTIVATE.value) if key is not None else None
        return done if done is not None else asdict(ledger.sell_gift(till.gift_tap(), body.amount, key))

    @app.post("/v1/giftcards/load", dependencies=[Depends(token)])
    def load_gift(body: GiftSellIn) -> dict[str, Any]:
        """Load the tapped gift card with ``amount`` (the POS took it); ``request_id`` as for a sale of a card."""
        key = _key(body.request_id, "giftcard load", body)
        done = ledger.answered(key, EntryKind.GIFT_LOAD.value) if key is not None else None
        return done if done is not None else asdict(ledger.load_gift(till.gift_tap(), body.amount, key))

    @app.post("/v1/giftcards/pay", dependencies=[Depends(token)])
    def pay_gift(body: GiftAmountIn) -> dict[str, Any]:
        """The tapped gift card pays ``amount`` of the POS's sale ``sale_ref`` (one tap, one payment)."""
        key = _key(body.request_id, "giftcard pay", body)
        done = ledger.answered(key, EntryKind.GIFT_REDEEM.value) if key is not None else None
        if done is not None:  # before the tap is looked for: it may be gone since
            return done
        return asdict(ledger.pay_gift(till.gift_tap(), body.amount, body.sale_ref, key))

    @app.post("/v1/giftcards/{txn_id}/refund", dependencies=[Depends(token)])
    def refund_gift(txn_id: str, body: GiftAmountIn) -> dict[str, Any]:
        """Give back onto the card what it paid in ``txn_id`` (or part of it): the POS refunded that sale."""
        key = _key(body.request_id, f"giftcard refund {txn_id}", body)
        done = ledger.answered(key, EntryKind.GIFT_REFUND.value) if key is not None else None
        return done if done is not None else asdict(ledger.refund_gift(txn_id, body.amount, key))

    @app.post("/v1/giftcards/block", dependencies=[Depends(token)])
    def block_gift(body: GiftBlockIn) -> dict[str, Any]:
        """Block the tapped gift card (lost or stolen); head office alone unblocks it."""
        return asdict(ledger.block_gift(till.gift_tap(), body.reason))

    @app.post("/v1/sim/tap", dependencies=[Depends(token)], status_code=202)
    def tap(body: TapIn) -> dict[str, str]:
        try:
            uid = parse_uid(body.uid)
        except ValueError as exc:
            raise BadRequest("bad_uid", str(exc)) from exc
        till.tap_sim(uid)
        return {"status": "tapped"}

    @app.post("/v1/sim/scan", dependencies=[Depends(token)], status_code=202)
    def scan(body: ScanIn) -> dict[str, Any]:
        """What the code was (its kind, never its text) and what the till did with it (terminal/session.py)."""
        return {"status": "scanned", **till.scan_sim(body.text)}

    # The cashier workflow: session, pairing, event stream (SSE) and the panel (docs/api.md).
    hub = EventHub(till.events_after)
    till.subscribers.insert(0, hub.publish)  # first: an event reaches clients before what it causes
    app.state.on_stop = [hub.close]
    app.include_router(cashier_router(till, cashier, pairing, token, hub))
    app.mount("/panel", panel_files(), name="panel")
    app.add_middleware(BodyGuard, max_size=MAX_BODY)  # outermost but CORS: every body capped before it is read
    if extra_origins:  # explicit origins only, never a wildcard
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(extra_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    return app
