"""Head office's HTTP API (see ``sync.protocol`` and docs/protocol.md): ``create_app`` includes each area's
router (``hq.api.terminals``, ``journal``, ``admin``, ``segments``, ``payments``, ``join``,
``wallet``); ``hq.api.server``
runs it.

    GET  /v1/health                   no auth
    GET  /v1/openapi.json             no auth: the machine-readable protocol, error codes included
    POST /v1/enrol                    one-time code (+ the till's store) -> the terminal's own credential
    GET  /v1/terminal                 terminal token; its store and the card-hash key's check, as head office holds them
    POST /v1/credentials/rotate       terminal token -> a new token (the old one works until the new one is used)
    POST /v1/journal                  terminal token; body may be gzip (Content-Encoding: gzip)
    GET  /v1/changes                  terminal token; ?since=N&limit=M (limit capped at 5000)
    GET  /v1/snapshot, /v1/snapshot/{kind}   terminal token; bootstrap of a new terminal
    POST /v1/eod                      terminal token; end-of-day totals -> complete / what is missing
    GET  /v1/flags                    terminal token; the reconciliation items of this terminal
    GET  /v1/journal/state            terminal token; acked and highest seq held, gaps, ranges reported lost
    POST /v1/journal/lost             terminal token; seq ranges the till can never send (a damaged journal)
    POST /v1/terminal/health          terminal token (protocol 2); version, readers, backlog, disk, last error
    GET  /v1/admin/terminals          admin token; the fleet: journal position, health report, ages
    GET  /metrics                     admin token; the fleet as Prometheus gauges (deploy/prometheus/)
    GET  /v1/admin/reconciliation     admin token; report by store, terminal, day (?format=json|csv)
    GET  /v1/admin/items              admin token; reconciliation items, a page at a time (X-Next-Cursor, ?after=)
    GET  /v1/admin/item-groups        admin token; items by cause, terminal, business day, state, with counts
    GET  /v1/admin/items/summary      admin token; open / settled per cause
    POST /v1/admin/items/{id}/settle  admin token; settle by hand (who = the admin, why = note)
    POST /v1/admin/item-groups/settle admin token; settle a whole group by hand
    GET  /v1/admin/receipts           admin token; sales read from a POS's receipt (?digest=, ?number=, ?store_id=)
    GET  /v1/admin/stores, PUT /v1/admin/stores/{id}   admin token; each store's time zone and day cut-off
    POST /v1/admin/members/{id}/block, /unblock, /v1/admin/cards/{hash}/block, /unblock   admin token
    GET  /v1/admin/quarantine         admin token; entries held in quarantine (no balance changed)
    POST /v1/admin/quarantine/{txn}/release, /reject   admin token; apply it now, or never
    PUT/GET/DELETE /v1/admin/segments/{id}, GET /v1/admin/segments, POST /v1/admin/segments/{id}/preview,
    POST /v1/admin/segments/preview   admin token; segments of members as data (``hq.api.segments``)
    /v1/admin/campaigns..., /v1/admin/programme, /v1/admin/campaign-settings   admin token; campaigns,
                                      their reports and the chain-wide settings (``hq.api.campaigns``)
    /v1/admin/rewards..., /v1/admin/rewards/purchases...   admin token; the rewards catalogue (``hq.api.rewards``)
    POST /v1/payments/confirm, /v1/payments/withdraw, /v1/devices, GET /v1/members/me, POST /v1/admin/topups,
    POST /v1/admin/devices/{cert_id}/revoke   member payments (``hq.api.payments``)
    GET  /join, /v1/join/terms, POST /v1/claims, /v1/admin/members/{id}/erase, GET .../consents
                                      sign-up, claims, erasure, consents (``hq.api.join``)
    GET  /v1/admin/settlement/{period}[/{merchant}?format=json|csv|pdf], GET /v1/admin/settlement/periods,
    POST /v1/admin/settlement/periods/{period}/close   admin token; statements and closed periods
                                      (``hq.api.settlement``)
    /wallet/..., GET/PUT /v1/admin/members/{id}/contacts   the member's wallet: sign-in by one-time code,
                                      session cookie, pages, member code (``hq.api.wallet``)
    /backoffice/...                   the staff back office: sign-in, members, approvals, audit log
                                      (``hq.api.backoffice``, docs/backoffice.md)

Every error is an ``ErrorBody`` whose code is one of ``sync.protocol.ErrorCode``.
Storage calls are synchronous, so endpoints are plain ``def`` and run in the threadpool.
"""

from __future__ import annotations

import os
import warnings

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from hq.api import (
    admin,
    backoffice,
    campaigns,
    giftcards,
    join,
    journal,
    masterdata,
    payments,
    rewards,
    segments,
    settlement,
    terminals,
    vouchers,
    wallet,
)
from hq.api.errors import StoragePage, install_error_handlers
from hq.store import HqStore
from hq.wallet.senders import Sender, sender_from_spec
from sync.asgi import BodyGuard
from sync.protocol import PROTOCOL_VERSION, ErrorCode

MAX_BODY = 32 * 1024 * 1024

# pydantic 2.12 and later warn, when head office first builds its OpenAPI document or a route's request body, that
# FastAPI's body field carries an alias ``body`` "with no effect": a false positive for the protocol's models, which
# defer building their schemas (sync.protocol, for start-up time). The bodies validate as before (each route's
# tests); without this an operator saw a warning about code that is not theirs in head office's log.
warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body'", category=UserWarning)
ROUTERS = (
    terminals.router,
    journal.router,
    admin.router,
    masterdata.router,
    segments.router,
    campaigns.router,
    rewards.router,
    payments.router,
    vouchers.router,
    giftcards.router,
    join.router,
    wallet.router,
    backoffice.router,
    settlement.router,
)
"""Each area's routes, in the order they are matched (and listed in OpenAPI)."""


WALLET_SENDER_ENV = "TILLPOINT_WALLET_SENDER"
"""How the wallet's sign-in codes are sent when ``create_app`` is given no sender (``hq.wallet.senders.
sender_from_spec``: ``console`` by default, ``file:DIR``, ``smtp://...``); ``hq serve --wallet-sender`` sets it."""


def create_app(store: HqStore, wallet_sender: Sender | None = None) -> FastAPI:
    """The head-office API over ``store``: every area's router, the error handlers, the body cap;
    ``wallet_sender`` sends the wallet's sign-in codes (default: ``$TILLPOINT_WALLET_SENDER``, else the console)."""
    app = FastAPI(
        title="tillpoint head office",
        version=f"protocol {PROTOCOL_VERSION}",
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
        description="Store <-> head office sync protocol. Error bodies are "
        "{code, message}; codes: " + ", ".join(c.value for c in ErrorCode),
    )
    app.state.store = store
    app.state.wallet_sender = wallet_sender or sender_from_spec(os.environ.get(WALLET_SENDER_ENV) or "console")
    app.state.root_key = store.root_public_key()  # public: a terminal with a bare token pins it on first use
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=1)  # fast; JSON still shrinks ~5x
    app.add_middleware(BodyGuard, max_size=MAX_BODY, gzip=True)  # every body capped before it is read
    pages: dict[str, StoragePage] = {
        backoffice.PREFIX: backoffice.storage_page,
        "/wallet": wallet.storage_page,
        "/join": wallet.storage_page,
    }
    install_error_handlers(app, pages)  # a member opening a receipt's QR sees the wallet's page, not JSON
    backoffice.install(app)
    # The areas' own routes, not app.include_router(): an included router is a wrapper whose routes FastAPI
    # builds again for each app (every parameter's validator, about 0.2 s of CPU per app), while these were
    # built once, when their module was imported. The areas' routers carry their prefixes and dependencies.
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    return app
