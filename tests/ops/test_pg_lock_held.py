"""An administrator's open transaction holds a lock head office's ingest needs (``SELECT ... FOR UPDATE`` in a
psql session left open, a long ``ALTER TABLE``). Head office's statements wait for a lock at most
``hq.db.pg.LOCK_WAIT_MS``: the locked till's push hears ``storage_unavailable`` (503) within its 5 s and gives the
connection back, so its retries never take the whole pool and every other till's push goes on; once the lock
goes, the push is stored once.

Real ``tillpoint hq serve`` on a PostgreSQL cluster of the test's own."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fixtures.hq import HqProcess
from tests.fixtures.postgres import PgServer
from tests.sync.test_hq_storage import entry

pytestmark = [pytest.mark.ops, pytest.mark.postgres]
TILL_TIMEOUT = 5.0  # a till's [hq] timeout


def test_a_lock_held_by_an_admin_bounds_the_push_and_stops_no_other_till(tmp_path: Path, pg_server: PgServer) -> None:
    hq = None
    try:
        url = pg_server.fresh_hq_database()
        hq = HqProcess(tmp_path, db=url, extra=("--campaign-interval", "0"))
        tokens = {t: hq.add_terminal(t, "S1") for t in ("T1", "T2")}
        hq.cli("add-member", "M-1", "Aiko", "--points", "100")
        hq.start()

        def push(terminal: str, seq: int) -> int | str:
            body = {"terminal_id": terminal, "entries": [entry(seq, terminal=terminal).model_dump(mode="json")]}
            try:
                answer = httpx.post(
                    f"{hq.url}/v1/journal",
                    json=body,
                    headers={"Authorization": f"Bearer {tokens[terminal]}"},
                    timeout=TILL_TIMEOUT,
                )
            except httpx.TimeoutException:
                return "timeout"
            return answer.status_code

        assert push("T1", 1) == 200
        admin = psycopg.connect(url)  # psql: BEGIN; SELECT ... FOR UPDATE; (and off to a meeting)
        admin.execute("SELECT * FROM terminals WHERE terminal_id = 'T1' FOR UPDATE")
        try:
            started = time.monotonic()
            first = push("T1", 2)
            assert first == 503 and time.monotonic() - started < TILL_TIMEOUT, (
                f"the locked till's push: {first!r} after {time.monotonic() - started:.1f} s"
            )
            with ThreadPoolExecutor(20) as pool:  # the till's retries over the next minutes
                list(pool.map(lambda _: push("T1", 2), range(20)))
            other = push("T2", 1)  # another till of the chain, whose rows nobody locked
            assert other == 200, f"another till's push while one till's row is locked: {other!r}"
        finally:
            admin.rollback()
            admin.close()
        # exactly once after the lock went: T1's seq 2 stored once
        assert push("T1", 2) == 200 and push("T2", 1) == 200
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM journal WHERE terminal_id = 'T1'").fetchone() == (2,)
    finally:
        if hq is not None:
            hq.kill()
