"""The head-office server: the journal every terminal pushes, the data every terminal pulls, reconciliation.

    db.py         one small database interface over SQLite (default) and PostgreSQL; the schema migrations
    pg.py         the PostgreSQL side of it (psycopg 3, a connection pool)
    storage.py    HqStore: terminals and credentials, master data, documents, keys, feed and snapshot
    ingest.py     a push: stored exactly once, applied, and every broken rule flagged as an item
    reconcile.py  end-of-day checks, items and their settlement, the report (table, JSON, CSV)
    app.py        create_app(): the FastAPI application (OpenAPI at /v1/openapi.json); serve(), start_in_thread()
    cli.py        the `tillpoint hq ...` administration commands
    demo.py       the demo members and cards, and seed_demo()

Imports from ``terminal`` are limited to its pure modules (credentials, money, model, loyalty), so
head office evaluates shared rules exactly as the tills do without depending on store-side code.
"""
