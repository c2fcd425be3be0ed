"""Head office's storage engines.

engine.py   the ``Db`` / ``Tx`` protocol the rest of head office writes against
sqlite.py   SQLite (the default)
pg.py       PostgreSQL (psycopg 3, a connection pool; the ``postgres`` extra)
schema.py   the schema migrations, and ``open_db(url)``
"""
