"""Benchmark: the back office's page times on PostgreSQL. Prints JSON, one object per figure.

A population built by bench_scale.py's generator (members, two years of journaled sales, the statistics'
daily rows), and on top of it, inside PostgreSQL, what the report pages read that the generator leaves out:
the ledger of every sale (a transaction, a lot of its points, 1 sale in 10 redeeming 50 points, 1 in 20 paying
5.00 of stored value; a third of the lots older than a year expired on their first birthday) and coupon uses
(1 sale in 20). Then a real head-office process (``tillpoint hq serve`` on that database) and a staff member
signed in over HTTP on 127.0.0.1:

    page       p50/p95 of each page, the whole request (session, role check, queries, template), warm
    floor      p50/p95 of the same SQL the page ran (recorded from the page's own reading code) sent
               straight to PostgreSQL over one connection, same database, same run; ``ratio`` = page / floor

Pages: the member search (a name's beginning, as one types it), and each report page over its period.
Two generator settings, both reported (the rule of the second, never-tuned data set): ``tuned`` (bench_scale's
seed, 31 days, every store: the setting the indexes were chosen on) and ``untuned`` (another seed, twice the
members with half the sales each, 90 days and three stores picked; written down with this benchmark and never
used to tune anything).

    .venv/bin/python bench/bench_backoffice.py                                   # 100k members, 1M sales
    .venv/bin/python bench/bench_backoffice.py --members 1000000 --sales 20000000 --runs 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_scale  # noqa: E402
import httpx  # noqa: E402

from hq import reports, rollup  # noqa: E402
from hq.backoffice import members, staff  # noqa: E402
from hq.backoffice.roles import Role  # noqa: E402
from hq.db.engine import Tx  # noqa: E402
from hq.store import HqStore  # noqa: E402
from tests.fixtures.hq import HqProcess  # noqa: E402

PASSWORD = "a long benchmark password"
REPORTS = ("sales", "members", "points", "value", "coupons")
ROLLED = {
    "sales": ("sales", "amount"),
    "members": ("active", "visits", "spend"),
    "points": ("points_issued", "points_redeemed", "points_expired", "member_points"),
    "value": ("topped_up", "paid", "member_value"),
    "coupons": ("coupons", "coupons_campaign"),
}
"""The roll-up's figures each report page reads."""
SETTINGS: dict[str, dict[str, Any]] = {
    "tuned": {"seed": 7, "members": 1.0, "sales": 1.0, "days": 31, "stores": None},
    "untuned": {"seed": 11, "members": 2.0, "sales": 1.0, "days": 90, "stores": ("S02", "S05", "S09")},
}


def _g(salt: int, seed: int) -> str:
    return bench_scale.h("substr(txn_id, 3)::bigint", salt, seed)


def ledger_steps(seed: int) -> list[tuple[str, str]]:
    """(label, SQL): the ledger and coupon uses of the generated sales, as ingest would have posted them."""
    redeem, pay, coupon, expire = _g(41, seed), _g(42, seed), _g(43, seed), _g(44, seed)
    until = (bench_scale.AS_OF - timedelta(days=365)).isoformat()
    return [
        (
            "stage",
            "CREATE UNLOGGED TABLE gen_ledger AS SELECT txn_id, member_id, day, created_at, points AS e, "
            f"CASE WHEN {redeem} % 10 = 0 AND points >= 50 THEN 50 ELSE 0 END AS r, "
            f"CASE WHEN {pay} % 20 = 0 THEN 500 ELSE 0 END AS v, "
            f"{coupon} % 20 = 0 AS coupon, {coupon} % 40 AS c, "
            f"day <= '{until}' AND {expire} % 3 = 0 AS expires FROM journal WHERE kind = 'sale'",
        ),
        (
            "ledger_txns",
            "INSERT INTO ledger_txns (ledger_txn_id, kind, member_id, merchant_id, day, period, at) "
            "SELECT txn_id, 'sale', member_id, 'chain', day, substr(day, 1, 7), created_at FROM gen_ledger "
            "UNION ALL SELECT 'expire:' || txn_id, 'expire', member_id, 'chain', "
            "to_char(day::date + 365, 'YYYY-MM-DD'), to_char(day::date + 365, 'YYYY-MM'), "
            "to_char(day::date + 365, 'YYYY-MM-DD') || 'T00:00:00.000Z' FROM gen_ledger WHERE expires",
        ),
        (
            "ledger_lots",
            "INSERT INTO ledger_lots (lot_id, member_id, merchant_id, points, remaining, earned_at, earned_day, "
            "expires_at) SELECT txn_id, member_id, 'chain', e, CASE WHEN expires THEN 0 ELSE e - r END, created_at, "
            "day, to_char(day::date + 365, 'YYYY-MM-DD') || 'T00:00:00.000Z' FROM gen_ledger WHERE e > 0",
        ),
        (
            "ledger_postings",
            "INSERT INTO ledger_postings (ledger_txn_id, n, kind, owner, unit, amount) "
            "SELECT txn_id, 0, 'member_points', member_id, 'points', e - r FROM gen_ledger WHERE e <> r "
            "UNION ALL SELECT txn_id, 1, 'merchant_issued', 'chain', 'points', r - e FROM gen_ledger WHERE e <> r "
            "UNION ALL SELECT txn_id, 2, 'merchant_accepted', 'chain', 'points', r FROM gen_ledger WHERE r > 0 "
            "UNION ALL SELECT txn_id, 3, 'chain_points', '', 'points', -r FROM gen_ledger WHERE r > 0 "
            "UNION ALL SELECT txn_id, 4, 'member_value', member_id, 'value', -v FROM gen_ledger WHERE v > 0 "
            "UNION ALL SELECT txn_id, 5, 'merchant_value_accepted', 'chain', 'value', v FROM gen_ledger WHERE v > 0 "
            "UNION ALL SELECT 'expire:' || txn_id, 0, 'member_points', member_id, 'points', r - e FROM gen_ledger "
            "WHERE expires AND e > r UNION ALL SELECT 'expire:' || txn_id, 1, 'merchant_issued', 'chain', 'points', "
            "e - r FROM gen_ledger WHERE expires AND e > r UNION ALL SELECT 'expire:' || txn_id, 2, "
            "'merchant_breakage', 'chain', 'points', e - r FROM gen_ledger WHERE expires AND e > r "
            "UNION ALL SELECT 'expire:' || txn_id, 3, 'chain_points', '', 'points', r - e FROM gen_ledger "
            "WHERE expires AND e > r",
        ),
        (
            "ledger_lot_uses",
            "INSERT INTO ledger_lot_uses (ledger_txn_id, purpose, lot_id, merchant_id, points, against) "
            "SELECT 'expire:' || txn_id, 'expire', txn_id, 'chain', e - r, NULL FROM gen_ledger "
            "WHERE expires AND e > r",
        ),
        (
            "stored_value_paid",
            "UPDATE journal j SET stored_value = -g.v FROM gen_ledger g WHERE g.v > 0 AND j.txn_id = g.txn_id",
        ),
        (
            "coupon_uses",
            "INSERT INTO coupon_uses (txn_id, coupon_id, member_id, released) "
            "SELECT txn_id, 'C-' || c, member_id, 0 FROM gen_ledger WHERE coupon",
        ),
        (
            "balances",
            "UPDATE members m SET points = b.p, stored_value = b.v + 10000 FROM (SELECT member_id, "
            "SUM(e - r) - SUM(CASE WHEN expires THEN e - r ELSE 0 END) AS p, -SUM(v) AS v FROM gen_ledger "
            "GROUP BY member_id) b WHERE m.member_id = b.member_id",
        ),
        ("drop_stage", "DROP TABLE gen_ledger"),
        ("analyze", "ANALYZE"),
    ]


def build(cluster: bench_scale.Cluster, members: int, sales: int, seed: int) -> dict[str, Any]:
    """bench_scale's population, then the ledger and coupon uses; the timings of each step."""
    generated = bench_scale.generate(cluster, members, sales, seed)
    import psycopg

    timings: dict[str, float] = {}
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        for label, sql in ledger_steps(seed):
            t0 = time.perf_counter()
            conn.execute(sql)  # type: ignore[arg-type]
            timings[label] = round(time.perf_counter() - t0, 1)
            print(json.dumps({"step": label, "seconds": timings[label]}), file=sys.stderr, flush=True)
        rows = {
            t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("ledger_txns", "ledger_postings", "ledger_lots", "coupon_uses")
        }
    return generated | {"ledger_steps_s": timings, "ledger_rows": rows}


# -- the floor: the SQL a page ran, sent straight to PostgreSQL ---------------------------------------------


class Recorder:
    """A ``Tx`` that hands every statement to the real one and keeps it (SQL and parameters)."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.dialect = tx.dialect
        self.for_update = tx.for_update
        self.statements: list[tuple[str, list[Any]]] = []

    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.statements.append((sql, list(params)))
        return self.tx.all(sql, params)

    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        self.statements.append((sql, list(params)))
        return self.tx.one(sql, params)

    def run(self, sql: str, params: Any = ()) -> int:
        self.statements.append((sql, list(params)))
        return self.tx.run(sql, params)

    def in_list(self, column: str, values: Any) -> tuple[str, list[Any]]:
        return self.tx.in_list(column, values)


def recorded(store: HqStore, read: Callable[[Any], Any]) -> list[tuple[str, list[Any]]]:
    with store.db.read() as tx:
        rec = Recorder(tx)
        read(rec)
    return rec.statements


def floor_times(url: str, statements: list[tuple[str, list[Any]]], runs: int) -> list[float]:
    """Milliseconds of running ``statements`` one after another (fetching every row), ``runs`` times."""
    import psycopg

    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(runs + 2):
            t0 = time.perf_counter()
            for sql, params in statements:
                done = conn.execute(sql.replace("?", "%s").replace("SET LOCAL", "SET"), params)  # type: ignore[arg-type]
                if done.description is not None:
                    done.fetchall()
            if i >= 2:  # two warm-up rounds, as the page gets
                out.append((time.perf_counter() - t0) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def page_times(client: httpx.Client, path: str, runs: int) -> list[float]:
    out = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        reply = client.get(path)
        elapsed = (time.perf_counter() - t0) * 1000
        if reply.status_code != 200:
            raise RuntimeError(f"{path}: {reply.status_code} {reply.text[:300]}")
        if i >= 2:
            out.append(elapsed)
    return out


def unrolled(figures: tuple[str, ...], first: str, last: str) -> list[tuple[str, list[Any]]]:
    """The statements that define ``figures`` (``rollup.REBUILD``), over the period only: what a page would
    read without the roll-up (a lower bound: a balance would need every day before the period too)."""
    return [
        (
            f"SELECT * FROM ({rollup.REBUILD[f]}) x (day, store_id, terminal_id, figure, amount) "
            "WHERE day >= ? AND day <= ?",
            [first, last],
        )
        for f in figures
    ]


def rebuild_time(url: str) -> dict[str, Any]:
    """Open the database with this release (a database of an earlier one is migrated: its roll-up filled),
    then time writing the roll-up afresh from the journal and the ledger."""
    t0 = time.perf_counter()
    store = HqStore(url, backup=False)
    opened = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        rows = store.db.transact(rollup.rebuild)
        took = time.perf_counter() - t0
    finally:
        store.close()
    return {
        "figure": "rollup_rebuild",
        "open_and_migrate_s": round(opened, 1),
        "rebuild_s": round(took, 1),
        "rows": rows,
    }


def figure(setting: str, page: str, path: str, pages: list[float], floors: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "figure": "page",
        "setting": setting,
        "page": page,
        "path": path,
        "runs": len(pages),
        "page_p50_ms": p(pages, 0.5),
        "page_p95_ms": p(pages, 0.95),
        "floor_p50_ms": p(floors, 0.5),
        "floor_p95_ms": p(floors, 0.95),
        "ratio_p95": round(p(pages, 0.95) / max(p(floors, 0.95), 0.1), 1),
        "under_300ms": p(pages, 0.95) <= 300,
        "mean_ms": round(statistics.fmean(pages), 1),
        **extra,
    }


@contextmanager
def served(url: str) -> Iterator[HqProcess]:
    with tempfile.TemporaryDirectory() as root:
        # No timer: the generated lots past their expiry (the chain is generated up to its reference day, the
        # server's clock is today's) would make the first expiry run one long transaction beside the timings.
        process = HqProcess(Path(root), db=url, extra=("--campaign-interval", "0"))
        process.start(timeout=120)
        proc = process.proc
        try:
            yield process
        except Exception:
            process.kill()
            if proc is not None and proc.stderr is not None:
                print(proc.stderr.read().decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            process.kill()


def bench_setting(
    setting: str, cluster: bench_scale.Cluster, runs: int, without_runs: int | None = None
) -> Iterator[dict[str, Any]]:
    """Each page's figures; ``without_runs``: how often the statements without the roll-up are timed (None: as
    often as the pages; 0: not at all, they take seconds each at the chain's size)."""
    spec = SETTINGS[setting]
    store = HqStore(cluster.url, backup=False)
    try:
        account = staff.check_account("bench", "Bench", Role.CHAIN_ADMIN.value, [])
        with store.db.read() as tx:
            admin = staff.get(tx, "bench")
        if admin is None:
            admin = store.db.transact(lambda tx: staff.add(tx, account, PASSWORD))
        last = bench_scale.AS_OF
        first = last - timedelta(days=spec["days"] - 1)
        stores = frozenset(spec["stores"]) if spec["stores"] else None
        wanted = reports.Filter(first, last, stores)
        query = f"from={first}&to={last}" + "".join(f"&store={s}" for s in sorted(stores or ()))
        term = "member 12"
        floors = {"member_search": recorded(store, lambda tx: members.search(tx, admin, term))}
        for name in REPORTS:
            floors[name] = recorded(store, lambda tx, n=name: reports.read(tx, n, wanted))
    finally:
        store.close()
    with served(cluster.url) as hq, httpx.Client(base_url=hq.url, timeout=120, trust_env=False) as client:
        client.headers["Origin"] = hq.url
        signed = client.post("/backoffice/sign-in", data={"staff_id": "bench", "password": PASSWORD})
        assert signed.status_code == 303, signed.text[:300]
        paths = {"member_search": f"/backoffice/members/results?q={term.replace(' ', '+')}"}
        paths |= {name: f"/backoffice/reports/{name}?{query}" for name in REPORTS}
        for name, path in paths.items():
            pages = page_times(client, path, runs)
            floor = floor_times(cluster.url, floors[name], runs)
            extra: dict[str, Any] = {"statements": len(floors[name]), "period_days": spec["days"]}
            slow_runs = runs if without_runs is None else without_runs
            if name in ROLLED and slow_runs:
                sql = unrolled(ROLLED[name], first.isoformat(), last.isoformat())
                without = floor_times(cluster.url, sql, slow_runs)
                extra |= {"without_rollup_p50_ms": p(without, 0.5), "without_rollup_p95_ms": p(without, 0.95)}
            yield figure(setting, name, path, pages, floor, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page (after two warm-ups)")
    parser.add_argument("--settings", default="tuned,untuned")
    parser.add_argument(
        "--without-runs", type=int, help="timed runs of the statements without the roll-up (default --runs; 0: none)"
    )
    parser.add_argument("--shared-buffers", help="PostgreSQL shared_buffers (default 128MB, as the tests)")
    parser.add_argument(
        "--keep", type=Path, help="keep (or reuse) each setting's PostgreSQL cluster under this directory"
    )
    args = parser.parse_args()
    for setting in args.settings.split(","):
        spec = SETTINGS[setting]
        n_members, n_sales = int(args.members * spec["members"]), int(args.sales * spec["sales"])
        cluster = bench_scale.Cluster(args.keep / setting if args.keep else None)
        try:
            cluster.start(args.shared_buffers)
            marker = cluster.server.root / "built.json"
            sizes = {"members": n_members, "sales": n_sales, "seed": spec["seed"]}
            if marker.exists() and json.loads(marker.read_text()) == sizes:
                bench_scale.emit({"setting": setting, "figure": "generate", "reused": True} | sizes)
            else:
                bench_scale.emit({"setting": setting} | build(cluster, n_members, n_sales, spec["seed"]))
                marker.write_text(json.dumps(sizes))
            bench_scale.emit({"setting": setting} | rebuild_time(cluster.url))
            for row in bench_setting(setting, cluster, args.runs, args.without_runs):
                bench_scale.emit(row)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
