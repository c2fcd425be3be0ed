"""End of day, the reconciliation report (table/JSON/CSV, HTTP), OpenAPI and compressed bodies.
A real head office on 127.0.0.1 (SQLite and PostgreSQL), the real sync client and terminal store."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle
from hq.ingest import Settings
from hq.store import HqStore
from sync.client import SyncClient
from sync.protocol import ERROR_STATUS, PROTOCOL_VERSION, EodReport, ErrorCode, KindTotals
from terminal.model import JournalEntry, Member
from terminal.store import Store
from tests.fixtures import entries

TOKEN = "eod-terminal-token"
YESTERDAY = dt.datetime.now().astimezone() - dt.timedelta(days=1)


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(spend_needs_proof=False, recompute=False))  # overspends on the POS's word
    store.add_terminal("T1", "S1", TOKEN)
    store.upsert_member("M-1", "Aiko", "gold", 100)
    yield store
    store.close()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "terminal.db")
    store.apply_changes([Member("M-1", "Aiko", "gold", 100)], [], [], cursor=0)
    yield store
    store.close()


def ring(till: Store, n: int, when: dt.datetime, total: int = 1000, points: int = 10) -> None:
    for i in range(n):
        created = (when + dt.timedelta(seconds=i)).astimezone(dt.UTC).isoformat(timespec="milliseconds")
        till.record(
            JournalEntry("T1", 0, f"tx-{when.date()}-{i}", "sale", entries.sale("M-1", total, earned=points), created),
            points=("M-1", points),
        )


def test_a_finished_day_is_reported_once_acknowledged_and_found_complete(
    hq: HqStore, server: ServerHandle, till: Store
) -> None:
    ring(till, 5, YESTERDAY)
    ring(till, 2, dt.datetime.now().astimezone())
    client = SyncClient(till, "T1", server.url, TOKEN)
    client.sync_once()
    [day] = till.eod_reports()
    assert (day["day"], day["first_seq"], day["last_seq"], day["status"]) == (
        YESTERDAY.date().isoformat(),
        1,
        5,
        "complete",
    )
    assert client.report_eod() == []  # reported once; today is not finished
    today = client.report_eod(until=dt.date.today() + dt.timedelta(days=1))
    assert [(r.day, r.status) for r in today] == [(dt.date.today().isoformat(), "complete")]
    # The report groups head office's entries by the chain's time zone (UTC here), the end of day
    # by the till's business day; on a UTC machine they are the same days.
    rows = hq.report(terminal_id="T1")
    assert sum(r["entries"] for r in rows) == 7 and sum(r["total"] for r in rows) == 7000
    assert sum(r["points"] for r in rows) == 70
    if dt.datetime.now().astimezone().utcoffset() == dt.timedelta(0):
        assert [(r["day"], r["entries"], r["eod"]) for r in rows] == [
            (YESTERDAY.date().isoformat(), 5, "complete"),
            (dt.date.today().isoformat(), 2, "complete"),
        ]


def test_head_office_names_what_is_missing_and_completes_the_day_when_it_arrives(hq: HqStore) -> None:
    from sync.protocol import WireEntry

    def entry(seq: int) -> WireEntry:
        return WireEntry(
            terminal_id="T1",
            seq=seq,
            txn_id=f"x{seq}",
            kind="sale",
            payload=entries.sale("M-1", 100, earned=1),
            created_at="2026-02-01T10:00:00Z",
        )

    hq.ingest("T1", [entry(1), entry(2), entry(5)])
    report = EodReport(
        terminal_id="T1",
        day="2026-02-01",
        first_seq=1,
        last_seq=5,
        totals={"sale": KindTotals(count=5, total=500, points=5)},
    )
    result = hq.eod(report)
    assert (result.status, result.missing) == ("incomplete", [(3, 4)])
    assert result.mismatches == [
        "sale count: terminal 5, head office 3",
        "sale total: terminal 500, head office 300",
        "sale points: terminal 5, head office 3",
    ]
    assert hq.report()[0]["eod"] == "incomplete: missing 3-4"
    hq.ingest("T1", [entry(3), entry(4)])
    assert hq.report()[0]["eod"] == "complete"


def test_a_figure_that_differs_is_named(hq: HqStore) -> None:
    from sync.protocol import WireEntry

    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=1,
                txn_id="x1",
                kind="sale",
                payload=entries.sale(None, 100),
                created_at="2026-02-01T10:00:00Z",
            )
        ],
    )
    result = hq.eod(
        EodReport(
            terminal_id="T1", day="2026-02-01", first_seq=1, last_seq=1, totals={"sale": KindTotals(count=1, total=150)}
        )
    )
    assert (result.status, result.missing, result.mismatches) == (
        "incomplete",
        [],
        ["sale total: terminal 150, head office 100"],
    )


def test_the_report_over_http_as_json_and_csv_and_settling_by_hand(hq: HqStore, server: ServerHandle) -> None:
    from sync.protocol import WireEntry

    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=1,
                txn_id="x1",
                kind="sale",
                payload=entries.sale("M-1", 1400, redeemed=500),
                created_at="2026-02-01T10:00:00Z",
            )
        ],
    )
    admin = {"Authorization": f"Bearer {hq.add_admin('Mio')}"}
    rows = httpx.get(f"{server.url}/v1/admin/reconciliation", params={"store_id": "S1"}, headers=admin).json()
    assert [(r["terminal_id"], r["day"], r["open_items"], r["open_reasons"]) for r in rows] == [
        ("T1", "2026-02-01", 1, {"points_overspent": 1})
    ]
    text = httpx.get(f"{server.url}/v1/admin/reconciliation", params={"format": "csv"}, headers=admin)
    assert text.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(text.text)))
    assert parsed[0]["open_reasons"] == "points_overspent=1" and parsed[0]["total"] == "1400"
    [item] = httpx.get(f"{server.url}/v1/admin/items", params={"state": "open"}, headers=admin).json()
    settled = httpx.post(
        f"{server.url}/v1/admin/items/{item['item_id']}/settle",
        json={"note": "goodwill, approved by area manager"},
        headers=admin,
    ).json()
    assert (settled["state"], settled["settled_by"]) == ("settled_manual", "Mio")
    assert hq.report()[0]["settled_items"] == 1
    missing = httpx.post(f"{server.url}/v1/admin/items/nope/settle", json={"note": "x"}, headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    # The till sees what head office flagged about it.
    flags = httpx.get(f"{server.url}/v1/flags", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [(f["reason"], f["state"]) for f in flags] == [("points_overspent", "settled_manual")]


def test_openapi_is_served_with_every_route_and_error_code(server: ServerHandle) -> None:
    spec = httpx.get(f"{server.url}/v1/openapi.json", timeout=60).json()  # built on first request: slow when loaded
    assert spec["info"]["version"] == f"protocol {PROTOCOL_VERSION}"
    for path in (
        "/v1/journal",
        "/v1/terminal/health",
        "/metrics",
        "/v1/changes",
        "/v1/snapshot",
        "/v1/snapshot/{kind}",
        "/v1/enrol",
        "/v1/credentials/rotate",
        "/v1/eod",
        "/v1/flags",
        "/v1/admin/reconciliation",
    ):
        assert path in spec["paths"], path
    push = spec["paths"]["/v1/journal"]["post"]["responses"]
    assert "seq_conflict" in push["409"]["description"] and "wrong_terminal" in push["403"]["description"]
    documented = json.dumps(spec)
    assert all(code.value in documented for code in ErrorCode)
    assert {status for status, _ in ERROR_STATUS.values()} >= {400, 401, 403, 409, 413, 422, 503}


def test_compressed_pushes_and_broken_compression(hq: HqStore, server: ServerHandle) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = json.dumps(
        {
            "terminal_id": "T1",
            "entries": [
                {
                    "terminal_id": "T1",
                    "seq": 1,
                    "txn_id": "g1",
                    "kind": "sale",
                    "payload": entries.sale(None),
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    packed = gzip.compress(body.encode())
    assert httpx.post(f"{server.url}/v1/journal", content=packed, headers=headers).json()["acked_seq"] == 1
    for content, code, status in (
        (b"not gzip", "bad_encoding", 400),
        (packed[:-9], "bad_encoding", 400),
        (gzip.compress(b" " * (33 * 1024 * 1024)), "body_too_large", 413),
    ):
        response = httpx.post(f"{server.url}/v1/journal", content=content, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code)
    odd = httpx.post(f"{server.url}/v1/journal", content=body, headers=dict(headers, **{"Content-Encoding": "br"}))
    assert (odd.status_code, odd.json()["code"]) == (400, "bad_encoding")
    assert hq.journal_count("T1") == 1
