"""Head office's hot reads on PostgreSQL take the index a chain's data calls for, also where the planner's
statistics are out of date: a push must not read rows in proportion to the whole chain."""

from __future__ import annotations

from hq.ingest import LATE_SQL, WAITING_SQL
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.fixtures import entries

CREATED = "2026-03-01T10:00:00.000Z"


def _entry(seq: int, kind: str, payload: dict[str, object]) -> WireEntry:
    return WireEntry(terminal_id="T1", seq=seq, txn_id=f"T1-{seq}", kind=kind, payload=payload, created_at=CREATED)


def _plan(hq: HqStore, sql: str, params: list[object]) -> str:
    with hq.db.read() as tx:
        return "\n".join(str(r[0]) for r in tx.all("EXPLAIN " + sql, params))


def test_a_push_looks_for_refunds_waiting_for_its_sales_by_sale_not_among_every_held_entry(pg_url: str) -> None:
    """Entries held in quarantine grew from none to a thousand since the journal was last analysed (a chain's
    statistics are refreshed after a tenth of the table changes): the planner thinks them few. Asked for the held
    refunds naming a push's sales, it read them through the effect index, every held entry of the chain at every
    push (at 1,000,000 members, 32,000 held entries made a push of 20 wait 90 ms). The read now goes by sale."""
    hq = HqStore(pg_url)
    try:
        with hq.db.write() as tx:
            tx.run("ALTER TABLE journal SET (autovacuum_enabled = false)")  # the statistics stay as analysed
        hq.add_terminal("T1", "S1", "token-T1")
        seq = 0
        for _ in range(4):
            batch = [_entry(seq := seq + 1, "sale", entries.sale(None, 100)) for _ in range(500)]
            hq.ingest("T1", batch)
        with hq.db.write() as tx:
            tx.run("ANALYZE journal")
        for _ in range(2):  # refunds of sales head office has not seen: held until their sale comes
            batch = [
                _entry(seq := seq + 1, "refund", entries.refund(f"UNSEEN-{seq}", None, money_back=100))
                for _ in range(500)
            ]
            hq.ingest("T1", batch)
        with hq.db.read() as tx:
            held = tx.one("SELECT COUNT(*) FROM journal WHERE effect = 'quarantined'")
            assert held is not None and int(held[0]) == 1000
            cond, params = tx.in_list("original_txn", [f"T1-{n}" for n in range(1, 21)])
        before = _plan(hq, WAITING_SQL.format(cond=f"{cond} AND effect = ?"), [*params, "quarantined"])
        assert "idx_journal_effect" in before  # the trap is set: with the effect in the query, its index
        now = _plan(hq, WAITING_SQL.format(cond=cond), params)
        assert "idx_journal_original_txn" in now and "idx_journal_effect" not in now
    finally:
        hq.close()


def test_a_member_registered_late_reads_its_own_waiting_entries_not_every_members(pg_url: str) -> None:
    """Sales of members head office did not know yet (tills enrolling offline) grew to a thousand since the
    journal was analysed: when one of those members is registered, its waiting entries are read by member,
    not through the effect index among every member's."""
    hq = HqStore(pg_url)
    try:
        with hq.db.write() as tx:
            tx.run("ALTER TABLE journal SET (autovacuum_enabled = false)")
        hq.add_terminal("T1", "S1", "token-T1")
        for n in range(200):
            hq.upsert_member(f"M-{n}", f"M-{n}", "basic", 0)
        seq = 0
        for _ in range(4):
            batch = [_entry(seq := seq + 1, "sale", entries.sale(f"M-{seq % 200}", 100)) for _ in range(500)]
            hq.ingest("T1", batch)
        with hq.db.write() as tx:
            tx.run("ANALYZE journal")
        for _ in range(2):  # sales of members head office does not know yet: waiting for them
            batch = [_entry(seq := seq + 1, "sale", entries.sale(f"U-{seq % 500}", 100)) for _ in range(500)]
            hq.ingest("T1", batch)
        with hq.db.read() as tx:
            waiting = tx.one("SELECT COUNT(*) FROM journal WHERE effect = 'unknown_member'")
            assert waiting is not None and int(waiting[0]) == 1000
        before = _plan(hq, LATE_SQL + " AND effect = ?", ["U-7", "unknown_member"])
        assert "idx_journal_effect" in before  # the trap is set: with the effect in the query, its index
        now = _plan(hq, LATE_SQL, ["U-7"])
        assert "idx_journal_member_id" in now and "idx_journal_effect" not in now
        hq.upsert_member("U-7", "late", "basic", 0)  # and the late member's two sales now count
        with hq.db.read() as tx:
            assert tx.all("SELECT effect FROM journal WHERE member_id = 'U-7'") == [("applied",), ("applied",)]
    finally:
        hq.close()
