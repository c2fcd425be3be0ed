"""The operator's commands against a real head-office process: enrol a till with a code, `tillpoint sync
--now` (bootstrap with its progress bar), `tillpoint reconcile`, and head office's report and settling."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hq.demo import DEMO_COUPONS, DEMO_RULES
from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import WireEntry
from terminal.model import utc_iso
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess, tillpoint


def test_enrol_sync_now_reconcile_report_and_settle(hq: HqProcess, tmp_path: Path) -> None:
    code = hq.cli("enrol-code", "T-CLI", "--store-id", "S-004").strip()
    config = tmp_path / "till.toml"
    config.write_text(
        f'[terminal]\nid = "T-CLI"\nstore_id = "S-004"\ndata_dir = "{tmp_path / "till"}"\n'
        f'[hq]\nurl = "{hq.url}"\nenrol_code = "{code}"\n',
        encoding="utf-8",
    )
    done = tillpoint("sync", "--now", "--config", str(config))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "members" in done.stdout and "4/4" in done.stdout  # the bootstrap's progress bar: 4 demo members
    # 4 members, 4 cards, the base rule, and the demo's rule documents and coupons
    assert f"pulled {9 + len(DEMO_RULES) + len(DEMO_COUPONS)}" in done.stdout, done.stdout
    assert (tmp_path / "till" / "hq.token").exists()
    again = tillpoint("sync", "--now", "--config", str(config))  # the code is spent; the saved token is used
    assert again.returncode == 0 and "pulled 0" in again.stdout, again.stdout + again.stderr

    made = utc_iso(time.time())  # the till's clock is right
    admin = HqStore(hq.db, Settings(spend_needs_proof=False, recompute=False))  # an overspend on the POS's word
    admin.ingest(
        "T-CLI",
        [
            WireEntry(
                terminal_id="T-CLI",
                seq=1,
                txn_id="cli-1",
                kind="sale",
                payload=entries.sale("M-0002", 600, redeemed=500, store_id="S-004"),
                created_at=made,
            )
        ],
    )
    admin.close()
    shown = tillpoint("reconcile", "--config", str(config))
    assert shown.returncode == 0 and "points_overspent" in shown.stdout, shown.stdout + shown.stderr

    items = json.loads(hq.cli("items", "--state", "open", "--json"))
    assert [(i["terminal_id"], i["reason"]) for i in items] == [("T-CLI", "points_overspent")]
    settled = hq.cli("settle", items[0]["item_id"], "--by", "Mio", "--note", "member topped up at the desk")
    assert "settled_manual by Mio" in settled
    report = json.loads(hq.cli("report", "--format", "json", "--store-id", "S-004"))
    assert [(r["terminal_id"], r["day"], r["entries"], r["settled_items"]) for r in report] == [
        ("T-CLI", made[:10], 1, 1)
    ]
    refused = tillpoint("hq", "settle", "nope", "--by", "Mio", "--note", "x", "--db", hq.db)
    assert refused.returncode == 1 and "no reconciliation item" in refused.stdout


def test_a_head_office_database_that_is_not_there_is_never_made_by_a_command_that_reads(tmp_path: Path) -> None:
    """A mistyped ``--db`` or a command run outside head office's directory: a command that only reads says
    ``storage_missing`` and makes nothing (no empty database answering "all clear"); one that writes makes the
    database and says so."""
    missing = tmp_path / "srv" / "hq.db"
    for args in (("audit", "verify"), ("ledger", "check"), ("terminals", "--json"), ("quarantine", "--json")):
        done = tillpoint("hq", *args, "--db", str(missing))
        said = (done.stdout + done.stderr).strip()
        assert done.returncode == 1 and said.startswith("storage_missing"), (args, said)
        assert "Traceback" not in said and not missing.parent.exists(), args
    made = tillpoint("hq", "add-terminal", "T-1", "--store-id", "S-1", "--db", str(missing))
    assert made.returncode == 0 and f"made a new, empty head-office database at {missing}" in made.stderr
    again = tillpoint("hq", "terminals", "--json", "--db", str(missing))
    assert again.returncode == 0 and "made a new" not in again.stderr
    assert [t["terminal_id"] for t in json.loads(again.stdout)] == ["T-1"]


def test_postgresql_named_by_key_value_settings_is_refused_never_taken_for_a_sqlite_file(tmp_path: Path) -> None:
    """docs/deploy.md: a failover names both servers in one URL (``postgresql://USER@a,b/hq?target_session_attrs=
    read-write``); libpq's ``host=a,b ...`` settings are refused with the URL to write, never taken for the name of a
    SQLite file (a new, empty head office served, or "needs PostgreSQL" said of a PostgreSQL database)."""
    settings = "host=db-a,db-b dbname=hq target_session_attrs=read-write"
    for args in (("serve", "--workers", "2", "--port", "1"), ("terminals", "--json"), ("add-terminal", "T-1")):
        done = tillpoint("hq", *args, "--db", settings, cwd=tmp_path)
        said = done.stdout + done.stderr
        assert done.returncode == 2 and "postgresql://USER@HOST" in said, (args, said)
        assert "Traceback" not in said, args
    assert list(tmp_path.iterdir()) == []


def test_head_office_commands_refuse_what_is_not_there(tmp_path: Path) -> None:
    db = str(tmp_path / "hq.db")
    HqStore(db).close()  # head office's database, empty

    def hq_cli(*args: str) -> tuple[int, str]:
        done = tillpoint("hq", *args, "--db", db)
        return done.returncode, done.stdout + done.stderr

    assert hq_cli("erase", "M-NOPE") == (1, "no member M-NOPE\n")
    assert hq_cli("revoke", "T-NOPE") == (1, "no terminal T-NOPE\n")
    assert hq_cli("delete", "coupon", "C-NOPE") == (1, "no live coupon C-NOPE\n")
    status, out = hq_cli("settle", "I-NOPE", "--by", "Mio", "--note", "x")
    assert status == 1 and "I-NOPE" in out, out
    status, out = hq_cli("topup", "M-NOPE", "500")
    assert status == 1 and "M-NOPE" in out, out
    status, first = hq_cli("enrol-code", "T-NEW")
    assert status == 0 and first.strip(), first
    status, second = hq_cli("rotate", "T-NEW")  # a fresh code: the first one is no longer the one to use
    assert status == 0 and second.strip() and second != first, second
    assert hq_cli("revoke", "T-NEW") == (1, "no terminal T-NEW\n")  # a code alone is not a terminal yet
