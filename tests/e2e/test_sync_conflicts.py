"""Two tills offline: both use the same single-use coupon and together overspend one member's points.
When they come back, a real head-office process (SQLite and PostgreSQL) stores both sales and
finds both conflicts; the report (HTTP JSON/CSV, `tillpoint hq report`) and the till's own
`tillpoint reconcile` show them; each till's end of day checks complete."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.store import HqStore
from sync.client import SyncClient
from terminal.credentials import CardProof, Trust
from terminal.identity import Identified
from terminal.model import Basket, Card, Line
from terminal.service import Service
from terminal.store import Store
from tests.fixtures.hq import HqProcess, tillpoint
from tests.fixtures.postgres import pg_server  # noqa: F401 - fixture


@pytest.fixture(params=["sqlite", "postgres"])
def hq_proc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HqProcess]:
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_server").fresh_hq_database()
    process = HqProcess(tmp_path / "hq", db)
    process.start()
    yield process
    process.kill()


CARD = "ab" * 32  # the member's secure card (its keyed hash)
COUPON = {"coupon_id": "C-SINGLE", "member_id": "M-OFF", "limits": {"global": 1}, "kind": "amount_off", "value": 300}


def offline_sale(till: Store, terminal_id: str, store_id: str, n: int) -> int:
    """The member taps their secure card (a fresh read counter at each till) and pays 800 points and the
    coupon: the till's own service records it. Returns the points the sale earned."""
    at = dt.datetime.now().astimezone().timestamp() + n  # after the pull: the till's clock is right
    service = Service(till, terminal_id, clock=lambda: at, store_id=store_id)
    member = till.member("M-OFF")
    assert member is not None
    tap = Identified(member, Card(CARD, "M-OFF"), CardProof(Trust.SUN, 10 + n), CARD)
    quote = service.quote("M-OFF", Basket((Line("ITEM", 1, 2400),)), ["C-SINGLE"], 800)
    service.commit(quote, tapped=tap)
    return quote.points_earned


def test_two_offline_tills_one_coupon_one_balance_both_conflicts_found(hq_proc: HqProcess, tmp_path: Path) -> None:
    admin = HqStore(hq_proc.db)
    tokens = {"T-A": admin.add_terminal("T-A", "S-001"), "T-B": admin.add_terminal("T-B", "S-002")}
    admin.upsert_member("M-OFF", "Offline Olga", "gold", 1000)
    admin.upsert_card(CARD, "M-OFF")
    admin.put_coupon(COUPON)
    admin_token = admin.add_admin("Mio")
    admin.close()

    tills = {}
    for n, (terminal_id, store_id) in enumerate((("T-A", "S-001"), ("T-B", "S-002"))):
        till = Store.open(tmp_path / terminal_id / "terminal.db")
        first = SyncClient(till, terminal_id, hq_proc.url, tokens[terminal_id])
        for _ in range(100):  # the chain's rules, the member, the card and the coupon; then the network goes
            if not first.pull_once():
                break
        first.close()
        earned = offline_sale(till, terminal_id, store_id, n)  # both approved: each saw 1000 points, an unused coupon
        assert till.member("M-OFF").points == 200 + earned  # type: ignore[union-attr]
        tills[terminal_id] = till
    for terminal_id, till in tills.items():  # back online, A first
        client = SyncClient(till, terminal_id, hq_proc.url, tokens[terminal_id])
        client.sync_once()
        client.report_eod(until=dt.date.today() + dt.timedelta(days=2))  # `tillpoint reconcile --eod`: today too
        client.close()
        assert till.pending_count() == 0 and till.eod_reports()[0]["status"] == "complete"

    headers = {"Authorization": f"Bearer {admin_token}"}
    items = httpx.get(f"{hq_proc.url}/v1/admin/items", headers=headers, timeout=10).json()
    found = {(i["reason"], i["terminal_id"], i["store_id"], i["state"]) for i in items}
    assert found == {("coupon_overused", "T-B", "S-002", "open"), ("points_overspent", "T-B", "S-002", "open")}
    overspent = next(i for i in items if i["reason"] == "points_overspent")
    after = 1000 - 2 * 800 + 2 * earned
    assert (overspent["detail"]["balance_after"], overspent["detail"]["short"]) == (after, -after)
    assert tills["T-B"].member("M-OFF").points == after  # type: ignore[union-attr]  # head office's truth came down

    rows = httpx.get(f"{hq_proc.url}/v1/admin/reconciliation", headers=headers, timeout=10).json()
    assert {(r["store_id"], r["terminal_id"], r["open_items"], r["eod"]) for r in rows} == {
        ("S-001", "T-A", 0, "complete"),
        ("S-002", "T-B", 2, "complete"),
    }
    printed = hq_proc.cli("report", "--format", "csv")
    by_terminal = {r["terminal_id"]: r for r in csv.DictReader(io.StringIO(printed))}
    assert by_terminal["T-B"]["open_reasons"] == "coupon_overused=1 points_overspent=1"

    # The till that broke the rules sees what head office flagged, from its own command line.
    config = tmp_path / "till-b.toml"
    config.write_text(
        f'[terminal]\nid = "T-B"\nstore_id = "S-002"\ndata_dir = "{tmp_path / "T-B"}"\n'
        f'[hq]\nurl = "{hq_proc.url}"\ntoken = "{tokens["T-B"]}"\n',
        encoding="utf-8",
    )
    for till in tills.values():
        till.close()
    done = tillpoint("reconcile", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["pending"] == 0 and shown["head_office"] == "reachable"
    assert sorted(f["reason"] for f in shown["flags"]) == ["coupon_overused", "points_overspent"]
    assert shown["end_of_day"][0]["status"] == "complete"
