"""Head office: the server every till syncs with, deployed on its own (``tillpoint hq serve``, the
``tillpoint-hq`` unit). It takes each terminal's journal, serves the data every terminal pulls, prices
and checks every entry again, and reconciles.

Each area is a module or a subpackage; each imports only the ones listed below it (the ``hq-layers``
import-linter contract in pyproject.toml; a new module must be given its place there):

    cli/          the `tillpoint hq ...` commands: one Typer sub-app per area, assembled in cli/__init__.py
    workers.py    `hq serve --workers N`: several processes on one PostgreSQL
    api/          the HTTP API: one APIRouter per area, included by api/app.py's create_app(); serve()
    scheduler.py  the campaign timer the server runs: every due campaign, points expiry, gift card value past its
                  expiry, every N seconds; nothing while head office's clock is in doubt
    demo.py       the demo members, cards, rules and coupons, and seed_demo()
    erasure.py    erasing a member: its data, then its payment devices
    wallet/       the member's wallet on the phone: contacts, one-time sign-in codes and their senders,
                  sessions, what the pages show, the timed member code, check-ins by a till's code,
                  templates and static files
    payments.py   member payments: stored value, top-ups, member tokens and codes, devices, confirmations
    store.py      HqStore: terminals and credentials, master data, documents, keys, feed and snapshot;
                  open_store() with the serve options
    reports.py    the back office's figures by store and day, read from the roll-up
    outcomes.py   what a campaign earned: per arm, treated against control with a 95 % interval; CSV, SVG
    campaigns.py  campaigns: a segment, offer variants, a schedule, a control group, the chain-wide cap
                  and holdout; deciding and issuing personal coupons, idempotently; check-in campaigns
    push.py       one push: the ingest stages in their order, in one transaction
    members.py    members made outside head office: enrolments, merges, claims, erasure of the data
    quarantine.py entries the trust rules hold, released or rejected by an administrator
    reconcile.py  end-of-day checks, items and their settlement, the report (table, JSON, CSV)
    fleet.py      the fleet's health as Prometheus gauges
    segments.py   segments of members as data: the definition, its SQL for both engines, preview, the table
    receipts.py   sales read from POS receipts, by digest and printed number; one receipt sold twice flagged
    settlement.py each merchant's statement per period from the ledger (CSV, PDF, byte for byte), charged at
                  its timing; the deferred revenue at a day's end
    giftholders.py gift cards members keep in the wallet: a phone's fresh SUN read used once, the holder's
                  block, staff attaching a card
    giftcards.py  gift cards: checked at ingest, head office's own changes (unblock, clear, import, expiry),
                  online payment confirmations; their value posted to the ledger
    ingest.py     the ingest stages: stored exactly once, checked, applied, every broken rule an item
    checkins.py   check-ins: a visit once per member, store and day (wallet scan or door tap), the till
                  that signed a check-in code
    stats.py      members' statistics kept at ingest (visits, spend per day, store and category), rebuilt
                  from the journal
    profiles.py   members' profiles: birthday, the attributes the chain configures, marketing consent
    pools.py      flash-drop quantity pools: each till's allocation, granted at pull, counted at ingest
    rewards.py    the rewards catalogue: rewards bought with points at a till or in the wallet (docs/rewards.md)
    ledger.py     the double-entry ledger of points, stored value and gift card value: posting rules, points
                  lots of their issuing merchants, expiry as breakage, the check that proves every balance
    periods.py    settlement periods: a month each, closed in order (audited); where a late entry is filed
    clockcheck.py whether head office's own clock agrees with its tills, before what cannot be undone
    rollup.py     the report roll-up: figures by day, store and till, added where each comes to count, checked
                  against (and rebuilt from) the statements that define it
    versions.py   the versions of the rules each sale was priced with
    businessday.py  each store's business day
    policy.py     the trust rules (pure): who may produce which kind, the proofs a spend needs
    merchants.py  the chain's merchants: their stores, what they pay and are paid per 100 points, and when
    masterdata.py earning rules and coupons saved and retired (the editors' and the admin API's one path:
                  checked by the till's parser, on the version named, audited)
    documents.py  rule and coupon documents as editors' forms (checked field by field, then by the till's
                  parser) and the preview's quote (pure)
    recompute.py  head office's own pricing of a sale, with the till's pure pricing functions
    db/           the storage engines behind one protocol (db/engine.py): SQLite, PostgreSQL; the schema
    errors.py     HqError and the storage errors every layer may see

From the till, head office imports only its pure core (``terminal.model``, ``money``, ``loyalty``,
``pricing``, ``credentials`` ...), the wire protocol (``sync.protocol``, ``sync.claims``, ``sync.checkins``), the body cap
both servers share (``sync.asgi``), how every command prints (``terminal.console``) and the card-hash
key file (``terminal.keys``): it evaluates shared rules exactly as the tills do without depending on
the till's store, daemon, API or drivers. The till never imports head office; only the ``tillpoint``
command (``tillpoint.cli``) sees both.
"""
