"""The audit log's hash chain, on SQLite and PostgreSQL: records chain, ``tillpoint hq audit verify`` holds
on an untouched log and names the first record someone edited, removed or appended behind its back; appends
from many threads at once get consecutive numbers and one chain (on PostgreSQL, where writers run at once)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hq import audit
from hq.cli import app as hq_commands
from hq.store import HqStore


def _edit(url: str, sql: str) -> None:
    """Change the database behind head office's back, as someone with the database's password could."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]
    else:
        with sqlite3.connect(url) as conn:
            conn.execute(sql)


def _verify(url: str) -> tuple[int, dict[str, object]]:
    """``tillpoint hq audit verify --json``, run in this process (the same command line, parsed by Typer)."""
    done = CliRunner().invoke(hq_commands, ["audit", "verify", "--db", url, "--json"])
    return done.exit_code, json.loads(done.stdout)


def _three(url: str) -> list[audit.Record]:
    hq = HqStore(url)
    try:
        return [
            hq.db.transact(
                lambda tx, n=n: audit.append(tx, "mio", "block_member", f"M-{n}", "lost card", {"n": n, "名": "テスト"})
            )
            for n in range(3)
        ]
    finally:
        hq.close()


def test_records_chain_each_to_the_one_before(hq_url: str) -> None:
    made = _three(hq_url)
    assert [r.seq for r in made] == [1, 2, 3]
    assert made[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in made[1:]] == [r.hash for r in made[:-1]]
    assert made[1].hash == audit.record_hash(
        made[0].hash, 2, made[1].at, "mio", "block_member", "M-1", "lost card", {"n": 1, "名": "テスト"}
    )


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        ("UPDATE audit_log SET reason = 'nothing happened' WHERE seq = 2", 2),
        ('UPDATE audit_log SET details = \'{"n":9,"名":"テスト"}\' WHERE seq = 3', 3),
        ("UPDATE audit_log SET actor = 'someone else' WHERE seq = 1", 1),
        ("DELETE FROM audit_log WHERE seq = 2", 2),
        ("DELETE FROM audit_log WHERE seq = 3", 3),
        ("UPDATE audit_head SET seq = 2", 3),
    ],
)
def test_the_verify_command_names_the_first_record_changed_in_the_database(
    hq_url: str, change: str, broken: int
) -> None:
    _three(hq_url)
    status, found = _verify(hq_url)
    assert status == 0 and found["ok"] is True and found["records"] == 3
    _edit(hq_url, change)
    status, found = _verify(hq_url)
    assert status == 1 and found["ok"] is False and found["broken"] == broken, found


def test_a_rewritten_record_with_its_hash_made_again_still_breaks_the_next_link(tmp_path: Path) -> None:
    url = str(tmp_path / "hq.db")
    made = _three(url)
    forged = audit.record_hash(
        made[0].hash, 2, made[1].at, "mio", "block_member", "M-1", "forged", {"n": 1, "名": "テスト"}
    )
    _edit(url, f"UPDATE audit_log SET reason = 'forged', hash = '{forged}' WHERE seq = 2")
    status, found = _verify(url)
    assert status == 1 and found["broken"] == 3


def test_concurrent_appends_are_serialised_into_one_chain(pg_url: str) -> None:
    hq = HqStore(pg_url, pool_size=8)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def append_many(worker: int) -> None:
        try:
            start.wait(10)
            for n in range(10):
                hq.db.transact(lambda tx, n=n: audit.append(tx, f"w{worker}", "test", f"T-{n}", "load", {}))
        except BaseException as exc:  # noqa: BLE001 - the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=append_many, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        verdict = audit.verify(hq.db)
        assert verdict.ok and verdict.records == 80, verdict
    finally:
        hq.close()


FIELDS = ("at", "actor", "action", "target", "reason", "details")


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 6),
    pick=st.integers(0, 5),
    field=st.sampled_from(FIELDS),
    text=st.text(min_size=1, max_size=20),
)
def test_any_change_to_any_field_of_any_record_is_named(count: int, pick: int, field: str, text: str) -> None:
    """The pure check over stored rows: a change to one field of one record names that record."""
    prev, rows = audit.GENESIS, []
    for n in range(1, count + 1):
        at, details = f"2026-12-02T10:00:0{n}.000Z", {"n": n}
        digest = audit.record_hash(prev, n, at, "mio", "block_member", f"M-{n}", "why", details)
        rows.append([n, at, "mio", "block_member", f"M-{n}", "why", json.dumps(details), prev, digest])
        prev = digest
    seq = pick % count + 1
    column = 1 + FIELDS.index(field)
    changed = json.dumps({"n": text}) if field == "details" else text
    if rows[seq - 1][column] == changed:
        return
    rows[seq - 1][column] = changed
    link = audit.GENESIS
    for n, row in enumerate(rows, start=1):
        why = audit.check(link, n, tuple(row))
        if why:
            assert n == seq, (n, seq, why)
            return
        link = row[8]
    raise AssertionError(f"the change to record {seq}'s {field} went unnoticed")


def test_changes_made_outside_the_back_office_are_in_the_chain_too(hq_url: str) -> None:
    """The admin API's and the commands' paths for blocks, top-ups, erasures and campaigns record as well."""
    from hq import campaigns, payments, segments
    from hq.erasure import erase_member
    from tests.backoffice.chain import chain

    with chain(hq_url) as (hq, _):
        hq.set_blocked("member", "M-S1", True, "api-admin", "fraud suspected")
        payments.topup(hq, "M-S2", 500, "till desk", "cash at the desk", "TU-1")
        payments.topup(hq, "M-S2", 500, "till desk", "cash at the desk", "TU-1")  # a retry: no second record
        segments.save(hq.db, "everyone", "everyone", {"where": {"kind": "visits", "days": 30, "max": 9}}, "t")
        spec = campaigns.parse_spec(
            {
                "name": "N",
                "segment": "everyone",
                "variants": [{"variant": "a", "coupon": {"kind": "amount_off", "value": 1}}],
                "schedule": {"kind": "daily", "at": "09:00"},
            }
        )
        for _ in range(2):  # the same spec again changes nothing, and records nothing
            hq.db.transact(lambda tx: campaigns.put(tx, "c1", spec, "mio", "2026-12-02T00:00:00Z"))
        erase_member(hq, "M-S1", "privacy desk", "the member asked")
        with hq.db.read() as tx:
            found = [(r.actor, r.action, r.target, r.reason) for r in reversed(audit.recent(tx))]
        assert found == [
            ("api-admin", "block_member", "M-S1", "fraud suspected"),
            ("till desk", "topup", "M-S2", "cash at the desk"),
            ("mio", "put_campaign", "c1", ""),
            ("privacy desk", "erase_member", "M-S1", "the member asked"),
        ]
        assert audit.verify(hq.db).ok


def test_a_record_appended_while_the_chain_is_walked_is_no_break(hq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staff change things while someone opens the audit page: a record appended (with the head, in its own
    transaction) after the walk read the last page and before it read the head is walked too, and the chain
    holds; records removed from the end are still named."""
    _three(hq_url)
    hq = HqStore(hq_url)
    walk = audit._pages
    appended: list[audit.Record] = []

    def pages_then_one_more(*args: object) -> object:
        yield from walk(*args)  # type: ignore[arg-type]
        if not appended:  # a change made just as the walk ended
            appended.append(hq.db.transact(lambda tx: audit.append(tx, "ken", "block_member", "M-9", "lost card")))

    try:
        monkeypatch.setattr(audit, "_pages", pages_then_one_more)
        verdict = audit.verify(hq.db)
        assert verdict.ok and verdict.records == 4 and verdict.head == appended[0].hash, verdict
        monkeypatch.undo()
        hq.db.transact(lambda tx: tx.run("DELETE FROM audit_log WHERE seq = 4"))
        gone = audit.verify(hq.db)
        assert not gone.ok and gone.records == 3 and "the head names record 4" in gone.why, gone
    finally:
        hq.close()


def test_the_last_actor_of_a_target_is_read_by_its_index(hq_url: str) -> None:
    """The approvals page reads who last set an account's password by ``target``, on each view and decision:
    through ``idx_audit_log_target``, not a walk of the whole log."""
    hq = HqStore(hq_url)
    try:
        for n in range(200):
            hq.db.transact(lambda tx, n=n: audit.append(tx, "mio", "set_password", f"S-{n % 20}", "reset", {}))
        with hq.db.read() as tx:
            assert audit.last_actor(tx, "S-7", ("set_password", "add_staff")) == "mio"
            kinds, params = tx.in_list("action", ("set_password", "add_staff"))
            query = f"SELECT actor FROM audit_log WHERE target = ? AND {kinds} ORDER BY seq DESC LIMIT 1"
            if hq_url.startswith("postgresql://"):
                tx.run("SET LOCAL enable_seqscan = off")  # a table this small would be read whole anyway
                plan = [str(r[0]) for r in tx.all("EXPLAIN " + query, ["S-7", *params])]
            else:
                plan = [str(r[-1]) for r in tx.all("EXPLAIN QUERY PLAN " + query, ["S-7", *params])]
        assert any("idx_audit_log_target" in line for line in plan), plan
    finally:
        hq.close()
