"""The head-office server: the journal every terminal pushes, the members, cards and rules they pull.

    storage.py   HqStore: SQLite storage behind the small HqStorage interface the API needs
    app.py       create_app(): the FastAPI application; serve() and start_in_thread() to run it
    demo.py      the demo members and cards, and seed_demo()

Imports from ``terminal`` are limited to its pure modules (credentials, money, model, loyalty), so
head office evaluates shared rules exactly as the tills do without depending on store-side code.
"""
