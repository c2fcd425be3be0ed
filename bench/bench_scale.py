"""Benchmark: the chain's scale on PostgreSQL. Prints JSON, one object per figure.

A population generated inside PostgreSQL (``INSERT ... SELECT ... FROM generate_series``, seeded hashes,
nothing row by row from Python): M members (tiers, 1% blocked, 0.5% erased, birthdays for 80%, marketing
consent for 66% (a tenth of it withdrawn), a preferred store for half), S journaled sales over the two
years before the reference day (each visiting member comes back every 1 to 8 weeks; 12% never came, one
visitor in six lapsed 2 to 13 months before the reference day) with the ``sales`` rows head office keeps
and the statistics tables (``member_totals``, ``member_day_rows``: read as ``member_days`` and
``member_category_days``) consistent with those sales (checked against ``hq.stats.rebuild`` when ``--check``,
the default at ``--quick``). Then:

    ingest     entries/s through ``HqStore.ingest`` with the statistics stage and without it (the stage a
               no-op), beside the floor (the same journal and sales rows COPYed in one transaction a
               batch), and with the statistics writing every daily row to ``member_day_rows`` (as before
               the recent days had a table of their own); batches interleaved, each way first in turn, so
               that the machine's load falls on all four alike. The recent days' table and the lifetime
               figures' table are folded as head office's timer folds them and filled to the chain's size
               first; each run draws members of its own
    segments   each segment of bench_segments.py's set, and a second set written for this benchmark and
               never tuned on: count and preview (count + 20) over every member, and a hand-written floor
    coupons    the floor of a campaign: 100,000 personal coupon rows as ``HqStore.put_coupon`` writes them
               (coupons, doc_versions, doc_events, one version each), in one transaction; then one till
               pulling the changes feed (``HqStore.changes``, pages of 500) with those coupons in it.
               ``campaign`` issues them through hq/campaigns.py on the reference day (the windows rolled
               to it first, as head office's timer keeps them).

    .venv/bin/python bench/bench_scale.py --quick                       # a smoke run, with the rebuild check
    .venv/bin/python bench/bench_scale.py --members 1000000 --sales 20000000 --keep DIR

``--keep DIR`` keeps the PostgreSQL cluster in DIR: a later run with the same DIR (and sizes) reuses the
generated database instead of generating it again. Without it the cluster is deleted at the end.
``--shared-buffers 4GB --wal-compression lz4``: the server settings docs/deploy.md recommends for a head
office (the default is PostgreSQL's, as the tests run it: 128MB, no WAL compression).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_segments  # noqa: E402

from hq import push, segments, stats  # noqa: E402
from hq.db.engine import Tx, utc_now  # noqa: E402
from hq.ingest import JOURNAL_COLUMNS, SALE_COLUMNS, payload_json  # noqa: E402
from hq.store import HqStore  # noqa: E402
from sync.protocol import RefundPayload, ReturnedUnits, SaleLine, SalePayload, VoidPayload, WireEntry  # noqa: E402
from terminal.canonical import base_digest, doc_digest  # noqa: E402
from terminal.loyalty import DEFAULT_BASE_RULE  # noqa: E402
from tests.fixtures.postgres import PgServer  # noqa: E402

AS_OF = bench_segments.AS_OF
HISTORY_DAYS = 730
STORES = bench_segments.STORES
CATEGORIES = bench_segments.CATEGORIES
SCHEMA = "scale"
PRICED_WITH = {"base": base_digest(DEFAULT_BASE_RULE.rule_id, DEFAULT_BASE_RULE.points, DEFAULT_BASE_RULE.per_minor)}
LOADED_TABLES = (
    "members",
    "member_profiles",
    "consents",
    "member_attributes",
    "erasures",
    "journal",
    "sales",
    "member_totals",
    "member_day_rows",
)
SERVER_SETTINGS = {  # reloadable settings for a bulk load and for reading a million members
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "maintenance_work_mem": "'1GB'",
    "work_mem": "'64MB'",
}

# A second set of segments, written with this benchmark and never used to tune the compiler or the
# indexes: what a marketer might ask, over every condition kind the first set leaves out.
SECOND_SET: dict[str, dict[str, Any]] = {
    "gold_silver_quiet_60": {
        "kind": "all_of",
        "conditions": [{"kind": "tier", "tiers": ["gold", "silver"]}, {"kind": "spend", "days": 60, "max": 0}],
    },
    "regulars_90_big_year": {
        "kind": "all_of",
        "conditions": [
            {"kind": "visits", "days": 90, "min": 6},
            {"kind": "spend", "days": 365, "min": 100_000},
        ],
    },
    "stores_3_7_or_preferred": {
        "kind": "any_of",
        "conditions": [
            {"kind": "store", "stores": ["S03", "S07"], "via": "visit", "days": 30},
            {"kind": "store", "stores": ["S03", "S07"], "via": "preferred"},
        ],
    },
    "top_spenders_not_consenting": {
        "kind": "all_of",
        "conditions": [{"kind": "rfm", "monetary": [5, 5]}, {"kind": "not", "condition": {"kind": "consent"}}],
    },
    "coffee_180_lapsed_60": {
        "kind": "all_of",
        "conditions": [
            {"kind": "category_affinity", "category": "coffee", "days": 180, "min_spend": 5_000},
            {"kind": "lapsed", "days": 60},
        ],
    },
}


def _second_floors(dialect: str) -> dict[str, tuple[str, list[Any]]]:
    del dialect
    ok = bench_segments.ELIGIBLE
    last = AS_OF.isoformat()

    def first(days: int) -> str:
        return (AS_OF - timedelta(days=days - 1)).isoformat()

    consent = (
        "EXISTS (SELECT 1 FROM consents k WHERE k.member_id = m.member_id AND k.channel = 'marketing' "
        "AND k.withdrawn_at IS NULL)"
    )
    return {
        "gold_silver_quiet_60": (
            f"SELECT COUNT(*) FROM members m WHERE {ok} AND m.tier IN ('gold', 'silver') AND COALESCE((SELECT "
            "SUM(d.spend) FROM member_days d WHERE d.member_id = m.member_id AND d.day >= ? AND d.day <= ?), 0) <= 0",
            [first(60), last],
        ),
        "regulars_90_big_year": (
            "WITH v AS (SELECT member_id FROM member_days WHERE day >= ? AND day <= ? GROUP BY member_id "
            "HAVING SUM(visits) >= 6), s AS (SELECT member_id FROM member_days WHERE day >= ? AND day <= ? "
            "GROUP BY member_id HAVING SUM(spend) >= 100000) "
            f"SELECT COUNT(*) FROM members m JOIN v USING (member_id) JOIN s USING (member_id) WHERE {ok}",
            [first(90), last, first(365), last],
        ),
        "stores_3_7_or_preferred": (
            f"SELECT COUNT(*) FROM members m WHERE {ok} AND (EXISTS (SELECT 1 FROM member_days d "
            "WHERE d.member_id = m.member_id AND d.day >= ? AND d.day <= ? AND d.visits > 0 "
            "AND d.store_id IN ('S03', 'S07')) OR EXISTS (SELECT 1 FROM member_attributes a WHERE "
            "a.member_id = m.member_id AND a.name = 'preferred_store' AND a.value IN ('S03', 'S07')))",
            [first(30), last],
        ),
        "top_spenders_not_consenting": (
            "WITH a AS (SELECT d.member_id, SUM(d.spend) AS s FROM member_days d JOIN members m "
            f"ON m.member_id = d.member_id WHERE d.day >= ? AND d.day <= ? AND {ok} GROUP BY d.member_id "
            'HAVING SUM(d.visits) > 0), r AS (SELECT member_id, NTILE(5) OVER (ORDER BY s, member_id COLLATE "C") '
            "AS mo FROM a) SELECT COUNT(*) FROM r JOIN members m ON m.member_id = r.member_id "
            f"WHERE r.mo = 5 AND NOT {consent}",
            [first(365), last],
        ),
        "coffee_180_lapsed_60": (
            "WITH c AS (SELECT member_id FROM member_category_days WHERE category = 'coffee' AND day >= ? "
            "AND day <= ? GROUP BY member_id HAVING SUM(spend) >= 5000), l AS (SELECT member_id FROM member_days "
            "WHERE visits > 0 AND day <= ? GROUP BY member_id HAVING MAX(day) < ?) "
            f"SELECT COUNT(*) FROM members m JOIN c USING (member_id) JOIN l USING (member_id) WHERE {ok}",
            [first(180), last, last, first(60)],
        ),
    }


# -- the server ---------------------------------------------------------------------------------------


class Cluster:
    """A PostgreSQL cluster of this benchmark (fsync on), in a temporary directory or kept in one."""

    def __init__(self, keep: Path | None) -> None:
        self.server = PgServer(durable=True)
        self.keep = keep
        if keep is not None:
            shutil.rmtree(self.server.root, ignore_errors=True)
            keep.mkdir(parents=True, exist_ok=True)
            self.server.root = keep
            self.server.data = keep / "data"

    @property
    def url(self) -> str:
        return f"{self.server.url}?options=-csearch_path%3D{SCHEMA}"

    def start(self, shared_buffers: str | None = None, wal_compression: str = "off") -> bool:
        """Start the cluster; True when it already held a generated database. ``shared_buffers`` (e.g.
        ``4GB``; the tests' server, and so the default here, keeps 128MB); ``wal_compression`` (PostgreSQL's
        default ``off``, or ``lz4`` as docs/deploy.md recommends), set at every start."""
        held = (self.server.data / "PG_VERSION").exists()
        if not held:
            self.server.start()  # initdb, then the tests' server
            self._pg_ctl("stop")
        if self.server.as_user:
            shutil.chown(self.server.root, self.server.as_user, self.server.as_user)
        options = [
            f"-p {self.server.port}",
            f"-k {self.server.root}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
            f"-c shared_buffers={shared_buffers or '128MB'}",
        ]
        self._pg_ctl("start", "-l", str(self.server.root / "server.log"), "-o", " ".join(options))
        for name, value in (SERVER_SETTINGS | {"wal_compression": f"'{wal_compression}'"}).items():
            self.server.execute(f"ALTER SYSTEM SET {name} = {value}")
        self.server.execute("SELECT pg_reload_conf()")
        return held and (self.server.root / "generated.json").exists()

    def _pg_ctl(self, action: str, *args: str) -> None:
        self.server._run("pg_ctl", "-D", str(self.server.data), *args, "-m", "fast", "-w", "-t", "120", action)

    def stop(self) -> None:
        if self.keep is None:
            self.server.stop()  # deletes the cluster
            return
        try:
            self._pg_ctl("stop")
        except RuntimeError:
            pass


# -- generating the population inside PostgreSQL -------------------------------------------------------


def h(expr: str, salt: int, seed: int) -> str:
    """A non-negative pseudo-random int of ``expr`` (a bigint expression), by salt and seed."""
    return f"(hashint8extended(({expr})::bigint * 64 + {salt}, {seed}) & 2147483647)::int"


def _steps(members: int, sales: int, seed: int) -> list[tuple[str, str]]:
    """(label, SQL) of the generation, in order."""
    start = (AS_OF - timedelta(days=HISTORY_DAYS - 1)).isoformat()
    stores = "(ARRAY[" + ", ".join(f"'{s}'" for s in STORES) + "])"
    cats = "(ARRAY[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "])"
    tiers = "(ARRAY['basic', 'basic', 'basic', 'silver', 'silver', 'gold'])"
    mid = "'M' || lpad(i::text, 7, '0')"
    n_stores, n_cats = len(STORES), len(CATEGORIES)

    def hs(salt: int) -> str:
        return h("i", salt, seed)

    def hg(salt: int) -> str:
        return h("g", salt, seed)

    line = [
        (
            f"{cats}[1 + CASE WHEN {hg(10 + 3 * j)} % 10 < 6 THEN fav ELSE {hg(11 + 3 * j)} % {n_cats} END]",
            f"1 + {hg(12 + 3 * j)} % 3",
            f"100 + {hg(20 + j)} % 3901",
        )
        for j in range(3)
    ]
    return [
        (
            "plan",
            # Per member: home store, favourite category, who never came (12%, and every erased member),
            # who lapsed (1 in 6 of the others), the first and last day of its visits (0 = the first day of
            # the history) and its weight: the visits its habit (every 1..8 weeks) would make.
            "CREATE UNLOGGED TABLE gen_plan AS SELECT i, "
            f"{hs(1)} % {n_stores} AS home, {hs(2)} % {n_cats} AS fav, "
            f"{hs(3)} % 200 = 0 AS erased, {hs(4)} % 100 = 0 AS blocked, "
            f"({hs(3)} % 200 = 0 OR {hs(5)} % 100 < 12) AS never, "
            f"{hs(6)} % {HISTORY_DAYS - 1} AS first_day, "
            f"CASE WHEN {hs(7)} % 6 = 0 THEN {HISTORY_DAYS - 1} - (60 + {hs(8)} % 340) ELSE {HISTORY_DAYS - 1} END "
            "AS last_day, "
            f"7 * (1 + {hs(9)} % 8) AS gap FROM generate_series(0, {members - 1}) i",
        ),
        (
            "plan_visits",
            "UPDATE gen_plan SET first_day = LEAST(first_day, last_day)",
        ),
        (
            "plan_counts",
            # Visits per visiting member, in proportion to its habit, adding up to exactly `sales`.
            "CREATE UNLOGGED TABLE gen_count AS WITH w AS (SELECT i, (last_day - first_day + 1)::float8 / gap AS w "
            "FROM gen_plan WHERE NOT never), t AS (SELECT COUNT(*) AS v, SUM(w) AS sw FROM w), "
            f"n AS (SELECT w.i, 1 + floor(({sales} - t.v) * w.w / t.sw)::bigint AS n, "
            f"row_number() OVER (ORDER BY {h('w.i', 30, seed)}, w.i) AS r FROM w, t) "
            f"SELECT n.i, n.n + CASE WHEN n.r <= {sales} - (SELECT SUM(n) FROM n) THEN 1 ELSE 0 END AS n FROM n",
        ),
        (
            "plan_offsets",
            "CREATE UNLOGGED TABLE gen_member AS SELECT p.*, c.n, "
            "COALESCE(SUM(c.n) OVER (ORDER BY p.i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base "
            "FROM gen_plan p JOIN gen_count c USING (i)",
        ),
        (
            "gen_sales",
            # Every sale: member, day (the visits spread evenly over the member's span), store (home 4 in 5),
            # till (2 a store), time of day, and up to 3 lines (favourite category 6 in 10).
            "CREATE UNLOGGED TABLE gen_sales AS SELECT x.*, q0 * p0 + CASE WHEN n > 1 THEN q1 * p1 ELSE 0 END "
            "+ CASE WHEN n > 2 THEN q2 * p2 ELSE 0 END AS total FROM (SELECT g, mid, day, store, "
            f"store || '-' || ({hg(3)} % 2 + 1) AS terminal_id, "
            f"(day + time '09:00' + make_interval(secs => {hg(4)} % 32400)) AS made, "
            f"1 + {hg(5)} % 3 AS n, "
            + ", ".join(f"{c} AS c{j}, {q} AS q{j}, {p} AS p{j}" for j, (c, q, p) in enumerate(line))
            + " FROM (SELECT m.base + k AS g, 'M' || lpad(m.i::text, 7, '0') AS mid, m.fav, "
            f"date '{start}' + m.first_day + (k * (m.last_day - m.first_day + 1) / m.n)::int AS day, "
            f"{stores}[1 + CASE WHEN {h('m.base + k', 2, seed)} % 5 = 0 "
            f"THEN {h('m.base + k', 1, seed)} % {n_stores} ELSE m.home END] AS store "
            "FROM gen_member m, generate_series(0, m.n - 1) k) s) x",
        ),
        (
            "members",
            "INSERT INTO members (member_id, display_name, tier, points, status, version, stored_value, deleted, "
            f"blocked_at) SELECT {mid}, 'Member ' || i, {tiers}[1 + {hs(11)} % 6], 0, "
            "CASE WHEN blocked THEN 'blocked' ELSE 'active' END, i + 1, 0, CASE WHEN erased THEN 1 ELSE 0 END, "
            f"CASE WHEN blocked THEN '{start}T00:00:00.000Z' END FROM gen_plan",
        ),
        (
            "erasures",
            f"INSERT INTO erasures (member_id, erased_at, erased_by) SELECT {mid}, '{start}T00:00:00.000Z', 'bench' "
            "FROM gen_plan WHERE erased",
        ),
        (
            "profiles",
            "INSERT INTO member_profiles (member_id, birthday, birth_md, updated_at) "
            f"SELECT {mid}, b::text, to_char(b, 'MM-DD'), '{start}T00:00:00.000Z' FROM (SELECT i, "
            f"date '1950-01-01' + {hs(12)} % 20000 AS b FROM gen_plan WHERE NOT erased AND {hs(13)} % 10 < 8) p",
        ),
        (
            "consents",
            "INSERT INTO consents (member_id, wording_version, channel, given_at, withdrawn_at) "
            f"SELECT {mid}, 'v1', 'marketing', '{start}T00:00:00.000Z', CASE WHEN {hs(15)} % 10 = 0 "
            f"THEN '{AS_OF.isoformat()}T00:00:00.000Z' END FROM gen_plan WHERE NOT erased AND {hs(14)} % 100 < 66",
        ),
        (
            "attributes",
            "INSERT INTO member_attributes (member_id, name, value) "
            f"SELECT {mid}, 'preferred_store', {stores}[1 + home] FROM gen_plan WHERE NOT erased AND {hs(16)} % 2 = 0",
        ),
        (
            "journal",
            "INSERT INTO journal (" + ", ".join(JOURNAL_COLUMNS) + ") "
            "SELECT terminal_id, row_number() OVER (PARTITION BY terminal_id ORDER BY made, g), 'H-' || g, 'sale', "
            '\'{"lines":[\' || line0 || line1 || line2 || \'],"local_time":"\' || to_char(made, '
            '\'YYYY-MM-DD"T"HH24:MI:SS\') || \'","member_id":"\' || mid || \'","payable":\' || total '
            "|| ',\"points_delta\":' || total / 100 || ',\"points_earned\":' || total / 100 || ',\"pos_due\":' || total "
            '|| \',"priced_with":{"base":"' + PRICED_WITH["base"] + '"},"store_id":"\' || store || '
            "'\",\"total\":' || total || '}', at, at, 'applied', mid, store, day::text, total, total / 100, 0, NULL, "
            'NULL, 0, NULL, at, NULL FROM (SELECT *, to_char(made, \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') AS at, '
            + ", ".join(
                (f"CASE WHEN n > {j} THEN " if j else "(")
                + ("',' || " if j else "")
                + f'\'{{"category":"\' || c{j} || \'","quantity":\' || q{j} || \',"sku":"K-\' || p{j} || '
                f"'\",\"unit_price\":' || p{j} || '}}'" + (" ELSE '' END" if j else ")") + f" AS line{j}"
                for j in range(3)
            )
            + " FROM gen_sales) s",
        ),
        (
            "sales",
            "INSERT INTO sales (" + ", ".join(SALE_COLUMNS) + ") "
            "SELECT 'H-' || g, terminal_id, mid, total, 0, 0, 0, 0, 0, total / 100, 0 FROM gen_sales",
        ),
        (
            "member_totals",
            "INSERT INTO member_totals (member_id, first_visit, last_visit, visits, spend, coupons_redeemed, "
            'updated_at) SELECT mid, to_char(MIN(made), \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'), '
            'to_char(MAX(made), \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'), COUNT(*), SUM(total), 0, '
            f"'{AS_OF.isoformat()}T00:00:00.000Z' FROM gen_sales GROUP BY mid",
        ),
        (
            "member_days",
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT mid, day::text, 's', store, COUNT(*), SUM(total), 0 FROM gen_sales GROUP BY mid, day, store",
        ),
        (
            "member_category_days",
            "INSERT INTO member_day_rows (member_id, day, kind, item, visits, spend, quantity) "
            "SELECT mid, day::text, 'c', c, 0, SUM(q * p), SUM(q) FROM gen_sales, LATERAL (VALUES (0, c0, q0, p0), "
            "(1, c1, q1, p1), (2, c2, q2, p2)) v(j, c, q, p) WHERE j < n GROUP BY mid, day, c",
        ),
        (
            "terminals",
            "INSERT INTO terminals (terminal_id, store_id, token_sha256, created_at, acked_seq) "
            "SELECT terminal_id, split_part(terminal_id, '-', 1), md5(terminal_id), "
            f"'{start}T00:00:00.000Z', MAX(seq) FROM journal GROUP BY terminal_id",
        ),
        ("counter", f"UPDATE counters SET value = {members} WHERE name = 'version'"),
        ("drop_staging", "DROP TABLE gen_plan, gen_count, gen_member, gen_sales"),
    ]


def _keys(tx: Tx) -> tuple[list[str], list[str]]:
    """The loaded tables' primary keys and unique constraints (ALTER TABLE ... ADD) and other indexes."""
    constraints = [
        f"ALTER TABLE {r[0]} ADD CONSTRAINT {r[1]} {r[2]}"
        for r in tx.all(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = ? AND c.contype IN ('p', 'u') "
            "AND c.conrelid::regclass::text = ANY(?)",
            [SCHEMA, list(LOADED_TABLES)],
        )
    ]
    indexes = [
        str(r[0])
        for r in tx.all(
            "SELECT i.indexdef FROM pg_indexes i WHERE i.schemaname = ? AND i.tablename = ANY(?) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            [SCHEMA, list(LOADED_TABLES)],
        )
    ]
    return constraints, indexes


def generate(cluster: Cluster, members: int, sales: int, seed: int) -> dict[str, Any]:
    """Create the schema with HqStore's migrations, then the population, without indexes (built after)."""
    cluster.server.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    HqStore(cluster.url, backup=False).close()
    import psycopg

    timings: dict[str, float] = {}
    started = time.perf_counter()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("SET work_mem = '1GB'")
        store_tx = _RawTx(conn)
        constraints, indexes = _keys(store_tx)
        for sql in constraints:
            table, name = sql.split()[2], sql.split()[5]
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")  # type: ignore[arg-type]
        for sql in indexes:
            conn.execute(f"DROP INDEX {_index_name(sql)}")  # type: ignore[arg-type]
        for label, sql in _steps(members, sales, seed):
            t0 = time.perf_counter()
            conn.execute(sql)  # type: ignore[arg-type]
            timings[label] = round(time.perf_counter() - t0, 1)
            print(json.dumps({"step": label, "seconds": timings[label]}), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for sql in [*constraints, *indexes]:
            conn.execute(sql)  # type: ignore[arg-type]
        timings["indexes"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = round(time.perf_counter() - t0, 1)
        counts = {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in LOADED_TABLES}  # type: ignore
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "figure": "generate",
        "members": members,
        "sales": sales,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "steps_s": timings,
        "rows": counts,
        "database_gb": round(int(size[0]) / 2**30, 2) if size else None,
    }


class _RawTx:
    """Just enough of a ``Tx`` over an autocommit connection to read the catalogue."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql.replace("?", "%s"), tuple(params)).fetchall())


def _index_name(indexdef: str) -> str:
    return indexdef.split(" ON ")[0].split()[-1]


def check_rebuild(store: HqStore) -> dict[str, Any]:
    """The generated statistics equal what ``stats.rebuild`` computes from the generated journal."""
    t0 = time.perf_counter()
    with store.db.write() as tx:  # rolled back when they differ
        generated = stats.snapshot(tx)
        stats.rebuild(tx)
        rebuilt = stats.snapshot(tx)
        _raise_if_differ(generated, rebuilt)
    return {
        "figure": "rebuild_check",
        "equal": True,
        "seconds": round(time.perf_counter() - t0, 1),
        **{t: len(rows) for t, rows in generated.items()},
    }


def _raise_if_differ(generated: dict[str, list[tuple[Any, ...]]], rebuilt: dict[str, list[tuple[Any, ...]]]) -> None:
    same = {t: generated[t] == rebuilt[t] for t in stats.STATS_TABLES}
    if not all(same.values()):
        for t in stats.STATS_TABLES:
            diff = sorted(set(generated[t]) ^ set(rebuilt[t]))[:5]
            print(json.dumps({"table": t, "differs": [list(map(str, d)) for d in diff]}), file=sys.stderr)
        raise AssertionError(f"generated statistics differ from a rebuild: {same}")


# -- ingest: with statistics, without, and the floor ---------------------------------------------------


def _sale(member: str, n: int, store_id: str, now: datetime, width: int = 2) -> dict[str, Any]:
    lines = [
        SaleLine(sku=f"K-{n % 97}", category=CATEGORIES[n % 12], quantity=1 + n % 3, unit_price=300 + n % 1100),
        SaleLine(sku=f"K-{n % 89}", category=CATEGORIES[(n + 5) % 12], quantity=1, unit_price=500),
    ][:width] + [
        SaleLine(sku=f"K-{n % 83 + k}", category=CATEGORIES[(n + 3 * k) % 12], quantity=1, unit_price=200 + 40 * k)
        for k in range(2, width)
    ]
    total = sum(x.quantity * x.unit_price for x in lines)
    earned = total // 100
    return SalePayload(
        member_id=member,
        store_id=store_id,
        tier="basic",
        total=total,
        payable=total,
        pos_due=total,
        points_earned=earned,
        points_delta=earned,
        local_time=now.strftime("%Y-%m-%dT%H:%M:%S"),
        lines=lines,
        priced_with=PRICED_WITH,
    ).wire()


def _reversal(original: WireEntry, store_id: str, void: bool, line: int = 1) -> dict[str, Any]:
    """A void of ``original``, or a refund of one unit of its ``line`` (1: the first journal's fixed 5.00)."""
    p = original.payload
    price = int(p["lines"][line]["unit_price"]) if line != 1 else 500
    back, clawed = (int(p["payable"]), int(p["points_earned"])) if void else (price, price // 100)
    fields: dict[str, Any] = {
        "member_id": p["member_id"],
        "store_id": store_id,
        "original_txn": original.txn_id,
        "total": -back,
        "money_back": back,
        "pos_refund": back,
        "points_clawed": clawed,
        "points_delta": -clawed,
    }
    if void:
        return VoidPayload(**fields, voided_txn_id=original.txn_id).wire()
    return RefundPayload(**fields, returned=[ReturnedUnits(line=line, quantity=1)]).wire()


JOURNALS = ("first", "second")
"""The shapes of the pushes' journals: ``first``, the one the statistics were tuned on; ``second``, written
afterwards with other settings and never tuned on (``--journal second``)."""


def terminal_journal(
    terminal_id: str, store_id: str, entries: int, members: int, rnd: random.Random, shape: str = "first"
) -> list[WireEntry]:
    """A till's entries. ``first``: sales of two lines by members with a history, made now, one in ten a
    refund of a line of its previous sale, one in fifty a void of it. ``second``: baskets of 1 to 6 lines, a
    fifth of the sales by 5,000 regulars (who come back the same day: their daily rows are added to, not
    made), one in twenty made yesterday and one in fifty ten days ago (a till's backlog: the older one's rows
    go to the big table), one in seven a refund (one in four of those a void) of any of the last twenty sales."""
    now = datetime.now(UTC)
    out: list[WireEntry] = []
    sales: list[WireEntry] = []
    for n in range(entries):
        when, width, member = now, 2, rnd.randrange(members)
        if shape == "second":
            width = rnd.randint(1, 6)
            member = rnd.randrange(5_000) * (members // 5_000) if rnd.random() < 0.2 else member
            late = rnd.random()
            when = now - timedelta(days=10 if late < 0.02 else 1 if late < 0.07 else 0)
        kind, payload = "sale", _sale(f"M{member:07d}", rnd.randrange(10**6), store_id, when, width)
        if shape == "first" and n % 10 == 9 and out and out[-1].kind == "sale":
            kind = "void" if n % 50 == 49 else "refund"
            payload = _reversal(out[-1], store_id, kind == "void")
        elif shape == "second" and sales and rnd.random() < 1 / 7:
            kind = "void" if rnd.random() < 0.25 else "refund"
            original = rnd.choice(sales[-20:])
            payload = _reversal(original, store_id, kind == "void", rnd.randrange(len(original.payload["lines"])))
        entry = WireEntry(
            terminal_id=terminal_id,
            seq=n + 1,
            txn_id=f"{terminal_id}-{n + 1}",
            kind=kind,
            payload=payload,
            created_at=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        out.append(entry)
        if kind == "sale":
            sales.append(entry)
    return out


def _floor_rows(entries: list[WireEntry]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The journal and sales rows ingest writes for these entries, as plain tuples."""
    now, day = utc_now(), datetime.now(UTC).date().isoformat()
    journal, sales = [], []
    for e in entries:
        p = e.payload
        journal.append(
            (
                e.terminal_id,
                e.seq,
                e.txn_id,
                e.kind,
                payload_json(p),
                e.created_at,
                now,
                "applied",
                p["member_id"],
                p["store_id"],
                day,
                p["total"],
                p["points_delta"],
                0,
                p.get("original_txn"),
                None,
                0,
                None,
                e.created_at,
                None,
            )
        )
        if e.kind == "sale":
            sales.append((e.txn_id, e.terminal_id, p["member_id"], p["payable"], 0, 0, 0, 0, 0, p["points_earned"], 0))
    return journal, sales


@contextmanager
def stats_off() -> Iterator[None]:
    kept = push.count_stats
    push.count_stats = lambda tx, batch: None  # type: ignore[assignment]
    try:
        yield
    finally:
        push.count_stats = kept  # type: ignore[assignment]


@contextmanager
def one_table() -> Iterator[None]:
    """The statistics with every daily row written to ``member_day_rows``, as before the recent days had a
    table of their own (``m060_recent_day_rows``): the stage as it is, but told no day is recent."""
    kept = stats.held_deltas

    def held(tx: Tx) -> stats.Deltas:
        deltas = kept(tx)
        deltas.recent_from = None
        return deltas

    stats.held_deltas = held  # type: ignore[assignment]
    try:
        yield
    finally:
        stats.held_deltas = kept  # type: ignore[assignment]


@contextmanager
def stage_timed(total: list[float]) -> Iterator[None]:
    """Add the time spent in the statistics stage (``stats.apply``, every call ingest makes) to total[0]."""
    kept = stats.apply

    def timed(*args: Any, **kwargs: Any) -> int:
        t0 = time.perf_counter()
        try:
            return kept(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - t0

    stats.apply = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        stats.apply = kept  # type: ignore[assignment]


def _recent_days_as_the_chains(store: HqStore, today: date, sales: int) -> int:
    """The recent days' table as large as this chain's keeps it: the daily rows of ``RECENT_DAYS`` + 1 days of the
    generated history whose sales are nearest the average day's (its last days are thin: each member's visits
    are spread by whole weeks), copied as the days up to today (once: rows already there stay). Their journal
    is not made (a kept database is never checked against a rebuild); pushes then add to a table of its size
    in production, not to one holding only the benchmark's own. Returns the rows it holds."""
    with store.db.write() as tx:
        typical = [
            str(r[0])
            for r in tx.all(
                "SELECT day FROM member_day_rows WHERE kind = 's' AND day > ? AND day <= ? GROUP BY day "
                "ORDER BY ABS(COUNT(*) - ?), day LIMIT ?",
                [
                    (AS_OF - timedelta(days=60)).isoformat(),
                    AS_OF.isoformat(),
                    sales // HISTORY_DAYS,
                    stats.RECENT_DAYS + 1,
                ],
            )
        ]
        for back, was in enumerate(typical):
            tx.run(  # each member's rows of the day, found through its stores' rows (the index by day)
                f"INSERT INTO {stats.RECENT_TABLE} ({', '.join(stats.DAY_ROW_COLUMNS)}) SELECT r.member_id, ?, "
                "r.kind, r.item, r.visits, r.spend, r.quantity FROM (SELECT DISTINCT member_id FROM member_day_rows "
                "WHERE kind = 's' AND day = ?) m JOIN member_day_rows r ON r.member_id = m.member_id AND r.day = ? "
                "ON CONFLICT DO NOTHING",
                [(today - timedelta(days=back)).isoformat(), was, was],
            )
        return int(tx.one(f"SELECT COUNT(*) FROM {stats.RECENT_TABLE}")[0])


def _recent_totals_as_the_chains(store: HqStore, today: date) -> int:
    """The lifetime figures' small table (``stats.RECENT_TOTALS``) as large as this chain's is at the end of a day,
    before the timer's fold: a row for each member with a visit today in the recent days' table (which
    ``_recent_days_as_the_chains`` filled). Their figures are nothing (the history's sales are in
    ``member_totals`` already), so every member reads as before; pushes add to a table of its size. Returns its
    rows."""
    with store.db.write() as tx:
        tx.run(
            f"INSERT INTO {stats.RECENT_TOTALS} (member_id) SELECT DISTINCT member_id FROM {stats.RECENT_TABLE} "
            "WHERE kind = 's' AND day = ? ON CONFLICT DO NOTHING",
            [today.isoformat()],
        )
        return int(tx.one(f"SELECT COUNT(*) FROM {stats.RECENT_TOTALS}")[0])


def bench_ingest(
    store: HqStore, members: int, sales: int, entries: int, batch: int, run: str, seed: int, shape: str = "first"
) -> dict[str, Any]:
    """Four tills in four stores, one per way, pushing the same shape of journal in interleaved batches,
    from a checkpoint: the first change of a page after one writes the whole page to the WAL, so a pass that
    followed another would find pages the first one already paid for (and each pass would measure a
    different state). A chain's head office, at its tens of thousands of sales a day, changes most pages
    for the first time since the last checkpoint: this is the state it works in."""
    rnd = random.Random(f"{seed}-{batch}-{run}")  # members of its own each run: a kept database saw the last run's
    today = datetime.now(UTC).date()  # the pushes' sales are today's: the recent days' table as the timer keeps it
    stats.fold_recent_days(store.db, today)
    recent_rows = _recent_days_as_the_chains(store, today, sales)
    recent_totals = _recent_totals_as_the_chains(store, today)
    with store.db.write() as tx:
        tx.run("CHECKPOINT")
    ways = ("floor", "without_stats", "with_stats", "with_stats_one_table")
    tills = {w: f"B{run}{batch}{w[0]}{w[-1]}-{n}" for n, w in enumerate(ways)}
    for n, w in enumerate(ways):
        store.add_terminal(tills[w], STORES[n])
    journals = {w: terminal_journal(tills[w], STORES[n], entries, members, rnd, shape) for n, w in enumerate(ways)}
    took = dict.fromkeys(ways, 0.0)
    wal = dict.fromkeys(ways, 0)
    stage, stage_one_table = [0.0], [0.0]
    for n, at in enumerate(range(0, entries, batch)):
        # Each way first, second and third in turn: a push evicts (writes) the pages the push before it left
        # dirty in PostgreSQL's buffers, so a way always after the same one would pay for that one's writes.
        for w in ways[n % len(ways) :] + ways[: n % len(ways)]:
            chunk = journals[w][at : at + batch]
            lsn = _wal_lsn(store)
            t0 = time.perf_counter()
            if w == "floor":
                rows, sales = _floor_rows(chunk)
                with store.db.write() as tx:
                    tx.insert_rows("journal", JOURNAL_COLUMNS, rows)
                    tx.insert_rows("sales", SALE_COLUMNS, sales)
            elif w == "without_stats":
                with stats_off():
                    store.ingest(tills[w], chunk)
            elif w == "with_stats":
                with stage_timed(stage):
                    store.ingest(tills[w], chunk)
            else:
                with one_table(), stage_timed(stage_one_table):
                    store.ingest(tills[w], chunk)
            took[w] += time.perf_counter() - t0
            wal[w] += _wal_since(store, lsn)
    rates = {f"{w}_entries_per_s": round(entries / took[w]) for w in ways}
    # What the timer's next fold costs: today's rows (these pushes' among them) moved into the big table, timed
    # and rolled back, so a later run on the kept database finds today still in the recent table.
    fold_s, folded = _timed_undone(store, lambda tx: stats.fold_recent(tx, today + timedelta(days=1)))
    return {
        "figure": "ingest",
        "journal": shape,
        "entries": entries,
        "batch": batch,
        **rates,
        "with_over_without": round(took["with_stats"] / took["without_stats"], 3),
        "stage_s": round(stage[0], 2),
        "stage_share_of_with": round(stage[0] / took["with_stats"], 3),
        "one_table_over_without": round(took["with_stats_one_table"] / took["without_stats"], 3),
        "one_table_stage_s": round(stage_one_table[0], 2),
        "without_over_floor": round(took["without_stats"] / took["floor"], 2),
        "recent_rows_before": recent_rows,
        "recent_totals_before": recent_totals,
        "fold_rows": folded,
        "fold_s": round(fold_s, 2),
        **{f"{w}_wal_bytes_per_entry": round(wal[w] / entries) for w in ways},
    }


def _wal_lsn(store: HqStore) -> str:
    """The server's WAL position: what a way's pushes wrote to the WAL (their full page images among it) is
    the difference, a figure the machine's load does not change."""
    with store.db.read() as tx:
        return str(tx.one("SELECT pg_current_wal_lsn()::text")[0])


def _wal_since(store: HqStore, lsn: str) -> int:
    with store.db.read() as tx:
        return int(tx.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ?::pg_lsn)", [lsn])[0])


# -- segments --------------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bench_segment_set(
    store: HqStore, label: str, defs: dict[str, dict[str, Any]], floors: dict[str, tuple[str, list[Any]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {"figure": "segments", "set": label, "as_of": AS_OF.isoformat()}
    for name, where in defs.items():
        definition = segments.parse_definition({"where": where})

        def read(fn: Callable[[Tx], Any]) -> Any:
            with store.db.read() as tx:
                return fn(tx)

        def daily(tx: Tx, d: segments.SegmentDefinition = definition) -> int:
            compiled = segments.compile_segment(d, AS_OF, tx.dialect, None)  # as if no window were rolled
            segments.prepare(tx)
            return int(tx.one(f"SELECT COUNT(*) FROM ({compiled.sql}) q", compiled.params)[0])

        with store.db.read() as tx:
            rolled = stats.windows_day(tx) == AS_OF
        count_s, n = _timed(lambda d=definition: read(lambda tx: segments.count(tx, d, AS_OF)))
        preview_s, shown = _timed(lambda d=definition: read(lambda tx: segments.preview(tx, d, AS_OF, 20)))
        daily_s, k = _timed(lambda: read(daily))
        sql, params = floors[name]
        floor_s, m = _timed(lambda sql=sql, params=params: read(lambda tx: int(tx.one(sql, params)[0])))
        if not n == m == k == shown["count"]:
            raise AssertionError(f"{name}: count {n}, preview {shown['count']}, daily rows {k}, hand-written {m}")
        out[name] = {
            "members": n,
            "windows_rolled": rolled,
            "count_s": round(count_s, 2),
            "preview_s": round(preview_s, 2),
            "daily_rows_s": round(daily_s, 2),
            "floor_s": round(floor_s, 2),
            "ratio": round(count_s / floor_s, 2) if floor_s else None,
        }
    return out


# -- the members' rolled windows ---------------------------------------------------------------------------


class _Undone(Exception):
    """Raised inside a transaction to roll it back after timing it."""


def _timed_undone(store: HqStore, fn: Callable[[Tx], Any]) -> tuple[float, Any]:
    """``fn`` in a write transaction, timed, then rolled back: the database is left as it was."""
    took, result = 0.0, None
    try:
        with store.db.write() as tx:
            took, result = _timed(lambda: fn(tx))
            raise _Undone
    except _Undone:
        pass
    return took, result


def bench_windows(store: HqStore) -> dict[str, Any]:
    """Building every member's rolled windows from the daily rows as of the reference day (the first time, a
    rebuild, a roll over more than two weeks; a chunk of members a transaction, ``stats.roll_windows``;
    skipped when a kept database has them), then rolling them one
    day on (what head office's timer does once a day; rolled back, so they stay as of the reference day),
    beside the floor: one hand-written aggregate of a year of the same daily rows."""
    with store.db.read() as tx:
        held = stats.windows_day(tx)
    build_s = None
    if held != AS_OF:
        build_s, _ = _timed(lambda: stats.roll_windows(store.db, AS_OF, back=True))
    roll_s, moved = _timed_undone(store, lambda tx: stats.roll(tx, AS_OF + timedelta(days=1)))
    if moved != 1:
        raise AssertionError(f"rolled {moved} days")
    first = (AS_OF - timedelta(days=364)).isoformat()
    with store.db.read() as tx:
        floor_s, _ = _timed(
            lambda: tx.all(
                "SELECT COUNT(*) FROM (SELECT member_id, SUM(visits), SUM(spend) FROM member_days "
                "WHERE day >= ? AND day <= ? GROUP BY member_id) x",
                [first, AS_OF.isoformat()],
            )
        )
        rows = tx.one("SELECT COUNT(*) FROM member_category_windows")
    return {
        "figure": "windows",
        "as_of": AS_OF.isoformat(),
        "build_s": None if build_s is None else round(build_s, 2),
        "roll_one_day_s": round(roll_s, 2),
        "floor_one_year_aggregate_s": round(floor_s, 2),
        "category_window_rows": int(rows[0]) if rows else 0,
    }


# -- coupons: the campaign's floor, and a till pulling its share -------------------------------------------


def campaign_hook(store: HqStore) -> dict[str, Any]:
    """A campaign through ``hq/campaigns.py`` on the whole population, run on the reference day: the gold members
    (a sixth of them) with a 40 % control group, about 100,000 personal coupons at 1,000,000 members; then a till
    that was up to date pulls the changes feed (pages of 500) until it has them all."""
    from hq import campaigns

    with store.db.read() as tx:
        held = stats.windows_day(tx)
    # Head office's timer keeps the windows rolled to each business day; on a database whose windows are not as of
    # the reference day (``--only coupons`` on a new one), they are made so first, and that is not the campaign's.
    windows_s = None if held == AS_OF else _timed(lambda: stats.roll_windows(store.db, AS_OF, back=True))[0]

    segments.save(store.db, "scale-gold", "gold", {"where": {"kind": "tier", "tiers": ["gold"]}}, "bench")
    spec = {
        "name": "Gold week",
        "segment": "scale-gold",
        "variants": [{"variant": "a", "coupon": {"kind": "amount_off", "value": 500, "min_spend": 3000}}],
        "schedule": {"kind": "once", "at": f"{AS_OF.isoformat()}T09:00"},
        "control_share": 0.4,
        "require_consent": False,
    }
    campaign_id = f"scale-{int(time.time())}"
    campaigns.save(store.db, campaign_id, spec, "bench")
    with store.db.read() as tx:
        since_row = tx.one("SELECT value FROM counters WHERE name = 'version'")
    since = int(since_row[0]) if since_row else 0
    started = time.perf_counter()
    done = campaigns.run_one(store.db, campaign_id, datetime.combine(AS_OF, dtime(10), tzinfo=UTC))
    issue_s = time.perf_counter() - started
    assert done is not None
    issued = sum(done["issued"].values())
    started, cursor, pulled = time.perf_counter(), since, 0
    while True:
        page = store.changes(cursor, 500)
        pulled += len(page.coupons)
        cursor = page.cursor
        if not page.more:
            break
    pull_s = time.perf_counter() - started
    return {
        "figure": "campaign",
        "measured": True,
        "windows_made_first_s": None if windows_s is None else round(windows_s, 2),
        "targeted": done["targeted"],
        "issued": issued,
        "issue_s": round(issue_s, 2),
        "coupons_per_s": round(issued / issue_s) if issue_s else None,
        "pull_s": round(pull_s, 2),
        "pulled": pulled,
        "pulled_per_s": round(pulled / pull_s) if pull_s else None,
    }


def bench_coupon_floor(store: HqStore, count: int, run: str) -> dict[str, Any]:
    """``count`` personal coupons written as ``put_coupon`` writes them, in bulk in one transaction; then a
    till that was up to date pulls the changes feed (pages of 500) until it has them all."""
    with store.db.read() as tx:
        picked = [
            str(r[0])
            for r in tx.all("SELECT member_id FROM members WHERE deleted = 0 ORDER BY version LIMIT ?", [count])
        ]
        since_row = tx.one("SELECT value FROM counters WHERE name = 'version'")
    since = int(since_row[0]) if since_row else 0
    now = utc_now()
    bodies = [
        {"coupon_id": f"C-{run}-{n:06d}", "member_id": m, "limits": {"global": 1, "per_member": 1}, "value": 500}
        for n, m in enumerate(picked)
    ]

    def issue(tx: Tx) -> None:
        row = tx.one("UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value", [len(bodies)])
        assert row is not None
        first = int(row[0]) - len(bodies) + 1
        texts = [payload_json(b) for b in bodies]
        tx.insert_rows(
            "coupons",
            ("coupon_id", "member_id", "body", "uses", "version", "deleted"),
            [
                (b["coupon_id"], b["member_id"], t, 0, first + n, 0)
                for n, (b, t) in enumerate(zip(bodies, texts, strict=True))
            ],
        )
        digests = [doc_digest(b) for b in bodies]
        tx.insert_rows(
            "doc_versions",
            ("kind", "doc_id", "digest", "body", "first_seen"),
            [("coupon", b["coupon_id"], d, t, now) for b, d, t in zip(bodies, digests, texts, strict=True)],
        )
        tx.insert_rows(
            "doc_events",
            ("kind", "doc_id", "digest", "at"),
            [("coupon", b["coupon_id"], d, now) for b, d in zip(bodies, digests, strict=True)],
        )

    issue_s, _ = _timed(lambda: store.db.transact(issue))
    pulled, pages, cursor = 0, 0, since
    t0 = time.perf_counter()
    while True:
        page = store.changes(cursor, 500)
        pulled += len(page.coupons)
        pages += 1
        cursor = page.cursor
        if not page.more:
            break
    pull_s = time.perf_counter() - t0
    if pulled != len(bodies):
        raise AssertionError(f"the till pulled {pulled} coupons of {len(bodies)}")
    with store.db.write() as tx:  # a kept database stays as generated
        tx.run("DELETE FROM coupons WHERE coupon_id LIKE ?", [f"C-{run}-%"])
        tx.run("DELETE FROM doc_versions WHERE kind = 'coupon' AND doc_id LIKE ?", [f"C-{run}-%"])
        tx.run("DELETE FROM doc_events WHERE kind = 'coupon' AND doc_id LIKE ?", [f"C-{run}-%"])
    return {
        "figure": "coupons_floor",
        "coupons": len(bodies),
        "issue_s": round(issue_s, 2),
        "issue_rows_per_s": round(len(bodies) / issue_s),
        "pull_s": round(pull_s, 2),
        "pull_pages": pages,
        "pull_rows_per_s": round(pulled / pull_s),
    }


# -- the run ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": round(load or 0, 1)}


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row | {"machine": machine()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 members, 400,000 sales, smaller figures")
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the PostgreSQL cluster in this directory")
    parser.add_argument("--entries", type=int, help="entries per way of ingest and batch size (5,000; quick: 1,000)")
    parser.add_argument("--batches", default="20,500", help="batch sizes of the ingest figure")
    parser.add_argument("--coupons", type=int, default=100_000)
    parser.add_argument("--journal", choices=JOURNALS, default="first", help="the shape of the pushes' journals")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--only", default="windows,ingest,segments,coupons")
    parser.add_argument("--shared-buffers", help="PostgreSQL shared_buffers (default: 128MB, as the tests)")
    parser.add_argument(
        "--wal-compression", choices=("off", "lz4"), default="off", help="PostgreSQL wal_compression (default: off)"
    )
    args = parser.parse_args()
    if args.quick:
        args.members, args.sales, args.coupons = 20_000, 400_000, 10_000
    args.entries = args.entries or (1_000 if args.quick else 5_000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the PostgreSQL server is stopped too
    cluster = Cluster(args.keep)
    run = datetime.now(UTC).strftime("%H%M%S")
    try:
        held = cluster.start(args.shared_buffers, args.wal_compression)
        marker = cluster.server.root / "generated.json"
        if held:
            generated = json.loads(marker.read_text())
            if (generated["members"], generated["sales"], generated["seed"]) != (args.members, args.sales, args.seed):
                raise SystemExit(f"{args.keep} holds another population: {generated}")
            emit(generated | {"reused": True})
        else:
            generated = generate(cluster, args.members, args.sales, args.seed)
            marker.write_text(json.dumps(generated))
            emit(generated)
        store = HqStore(cluster.url, backup=False)
        try:
            if args.check if args.check is not None else args.quick and not held:  # a kept one holds ingested entries
                emit(check_rebuild(store))
            only = args.only.split(",")
            if "windows" in only:  # first: the pushes below keep them, as head office does
                emit(bench_windows(store))
            if "ingest" in only:
                for size in (int(b) for b in args.batches.split(",")):
                    server = {"shared_buffers": args.shared_buffers or "128MB", "wal_compression": args.wal_compression}
                    emit(
                        bench_ingest(store, args.members, args.sales, args.entries, size, run, args.seed, args.journal)
                        | server
                    )
            if "segments" in only:
                emit(
                    bench_segment_set(
                        store, "bench_segments", bench_segments.SEGMENTS, bench_segments._floors("postgres")
                    )
                )
                emit(bench_segment_set(store, "second_untuned", SECOND_SET, _second_floors("postgres")))
            if "coupons" in only:
                emit(campaign_hook(store))
                emit(bench_coupon_floor(store, args.coupons, run))
        finally:
            store.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
