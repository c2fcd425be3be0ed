"""PostgreSQL restarted under a running head office (a crash and its recovery, a minor upgrade): the connections
its pool held all died with it. The first request after the restart fails (``storage_unavailable``, the till
sends it again); the pool then checks the rest and replaces the dead ones, so the next requests are taken,
instead of one failing for each connection the pool held. Nothing acknowledged is lost (a durable cluster)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from hq.api.server import start_in_thread
from hq.store import HqStore
from tests.fixtures.postgres import PgServer
from tests.sync.test_hq_storage import entry


def test_pushes_are_taken_again_once_postgresql_is_back() -> None:
    server = PgServer(durable=True).start()
    try:
        hq = HqStore(server.fresh_hq_database())
        token = hq.add_terminal("T1", "S1")
        hq.upsert_member("M-1", "Aiko", "gold", 100)
        handle = start_in_thread(hq)
        try:

            def push(seq: int) -> int:
                body = {"terminal_id": "T1", "entries": [entry(seq, delta=10).model_dump(mode="json")]}
                answer = httpx.post(  # a bound, not a speed: eight pushes at once wait on one durable cluster's fsyncs
                    f"{handle.url}/v1/journal", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
                )
                return answer.status_code

            with ThreadPoolExecutor(8) as pool:  # a busy hour: several connections in the pool
                assert set(pool.map(push, range(1, 17))) == {200}
            assert hq.db.pool.get_stats()["pool_size"] > 2  # type: ignore[attr-defined]
            server._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "-t", "30", "stop")
            server._start_on_port()  # PostgreSQL is back
            answers = [push(seq) for seq in range(17, 21)]
            assert answers[0] in (200, 503) and answers[1:] == [200, 200, 200], answers
            member = hq.member("M-1")
            assert member is not None and member.points == 100 + 10 * (16 + answers.count(200))
        finally:
            handle.stop()
            hq.close()
    finally:
        server.stop()
