"""The segments' administration routes over a real uvicorn and httpx: only an administrator may store or
preview, a bad definition answers its own code, and a preview matches the oracle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle, start_in_thread
from hq.store import HqStore
from tests.sync.segment_population import AS_OF, generate, load, oracle

TERMINAL_TOKEN = "terminal-secret-token"
WHERE = {
    "kind": "all_of",
    "conditions": [{"kind": "rfm", "recency": [4, 5], "frequency": [3, 5]}, {"kind": "consent"}],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HqStore]:
    hq = HqStore(str(tmp_path / "hq.db"))
    hq.add_terminal("T1", "S1", TERMINAL_TOKEN)
    load(hq.db, generate())
    yield hq
    hq.close()


@pytest.fixture
def http(store: HqStore) -> Iterator[httpx.Client]:
    handle: ServerHandle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    with httpx.Client(base_url=handle.url, timeout=10, trust_env=False) as client:
        yield client
    handle.stop()


def test_admin_stores_previews_and_deletes_a_segment(store: HqStore, http: httpx.Client) -> None:
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    put = http.put(
        "/v1/admin/segments/likely", json={"name": "Likely next month", "definition": {"where": WHERE}}, headers=admin
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and put.json()["created_by"] == "Mio"
    expected = sorted(oracle(generate(), WHERE, AS_OF))
    shown = http.post(
        "/v1/admin/segments/likely/preview", json={"as_of": AS_OF.isoformat(), "sample": 3}, headers=admin
    )
    assert shown.json() == {
        "segment_id": "likely",
        "as_of": "2026-03-01",
        "count": len(expected),
        "sample": expected[:3],
    }
    unsaved = http.post(
        "/v1/admin/segments/preview", json={"definition": {"where": WHERE}, "as_of": "2026-03-01"}, headers=admin
    )
    assert unsaved.json()["count"] == len(expected)
    assert [s["segment_id"] for s in http.get("/v1/admin/segments", headers=admin).json()] == ["likely"]
    assert http.get("/v1/admin/segments/likely", headers=admin).json()["definition"]["where"]["kind"] == "all_of"
    assert http.delete("/v1/admin/segments/likely", headers=admin).status_code == 200
    gone = http.get("/v1/admin/segments/likely", headers=admin)
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    missing = http.post("/v1/admin/segments/likely/preview", json={}, headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("definition", "code"),
    [
        ({"where": {"kind": "sql"}}, "segment_unknown_kind"),
        ({"where": {"kind": "lapsed", "days": 99999}}, "segment_bad_window"),
        ({"where": {"kind": "rfm", "recency": [5, 1]}}, "segment_bad_range"),
        ({"where": {"kind": "tier", "tiers": []}}, "segment_bad_value"),
        ({"what": 1}, "segment_malformed"),
    ],
)
def test_a_bad_definition_answers_its_code(store: HqStore, http: httpx.Client, definition: object, code: str) -> None:
    admin = {"Authorization": f"Bearer {store.add_admin('Mio')}"}
    for reply in (
        http.put("/v1/admin/segments/bad", json={"name": "bad", "definition": definition}, headers=admin),
        http.post("/v1/admin/segments/preview", json={"definition": definition}, headers=admin),
    ):
        assert (reply.status_code, reply.json()["code"]) == (422, code), reply.text
    day = http.post(
        "/v1/admin/segments/preview", json={"definition": {"where": WHERE}, "as_of": "2026-02-30"}, headers=admin
    )
    assert (day.status_code, day.json()["code"]) == (422, "segment_bad_day")


def test_only_an_administrator_may_put_or_preview(store: HqStore, http: httpx.Client) -> None:
    body = {"name": "x", "definition": {"where": WHERE}}
    for headers in ({"Authorization": f"Bearer {TERMINAL_TOKEN}"}, {"Authorization": "Bearer nobody"}):
        for reply in (
            http.put("/v1/admin/segments/x", json=body, headers=headers),
            http.post("/v1/admin/segments/preview", json={"definition": {"where": WHERE}}, headers=headers),
            http.post("/v1/admin/segments/x/preview", json={}, headers=headers),
            http.get("/v1/admin/segments", headers=headers),
            http.delete("/v1/admin/segments/x", headers=headers),
        ):
            assert (reply.status_code, reply.json()["code"]) == (403, "forbidden"), reply.text
    bare = http.put("/v1/admin/segments/x", json=body)
    assert (bare.status_code, bare.json()["code"]) == (401, "unauthorized")
    with store.db.read() as tx:
        assert tx.all("SELECT * FROM segments") == []


def test_the_segment_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    db = str(tmp_path / "hq.db")
    hq = HqStore(db)
    load(hq.db, generate())
    hq.close()
    (tmp_path / "likely.json").write_text(json.dumps({"where": WHERE, "description": "likely next month"}))
    (tmp_path / "bad.json").write_text(json.dumps({"where": {"kind": "lapsed", "days": 0}}))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        done = runner.invoke(app, ["segment", *args, "--db", db])
        return done.exit_code, done.output

    code, out = run("put", "likely", str(tmp_path / "likely.json"), "--name", "Likely next month", "--by", "Mio")
    assert code == 0 and json.loads(out)["version"] == 1, out
    code, out = run("put", "bad", str(tmp_path / "bad.json"))
    assert code == 1 and "segment_bad_window" in out
    code, out = run("preview", "likely", "--as-of", "2026-03-01", "--sample", "2", "--json")
    expected = sorted(oracle(generate(), WHERE, AS_OF))
    assert json.loads(out) == {
        "segment_id": "likely",
        "as_of": "2026-03-01",
        "count": len(expected),
        "sample": expected[:2],
    }
    assert run("show", "likely")[1].count("likely next month") == 1
    assert "likely" in run("list")[1]
    assert run("delete", "likely")[0] == 0 and run("show", "likely")[0] == 1
