"""The sync client against scripted transports: one layer, its error mapping and its bookkeeping.
The end-to-end tests run it against a real head-office process."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import httpx
import pytest

from sync.client import HqFailed, HqRejected, HqUnreachable, SyncClient, read_token_file, write_token_file
from sync.protocol import TillHealth
from terminal.model import JournalEntry, Member
from terminal.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "t.db")
    s.apply_changes([Member("M-1", "A", "gold", 0)], [], [], cursor=0)
    for i in range(1, 4):
        s.record(
            JournalEntry("T-1", 0, f"tx{i}", "sale", {"member_id": "M-1", "points_delta": i}, "t"), points=("M-1", i)
        )
    yield s
    s.close()


def client(store: Store, handler) -> SyncClient:  # type: ignore[no-untyped-def]
    return SyncClient(
        store,
        "T-1",
        "http://hq.test",
        "tok",
        transport=httpx.MockTransport(handler),
        end_of_day=False,
        clock=lambda: 1_790_000_000.0,
    )


def test_push_marks_only_the_acknowledged_prefix(store: Store) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-encoding"] == "gzip"
        body = json.loads(gzip.decompress(request.content))
        seen.append(body)
        assert request.headers["authorization"] == "Bearer tok"
        assert request.headers["x-tillpoint-clock"] == "2026-09-21T14:13:20.000Z"
        return httpx.Response(200, json={"acked_seq": 2, "stored": 3, "duplicates": 0, "gaps": []})

    assert client(store, handler).push_once() == 2
    assert [e["seq"] for e in seen[0]["entries"]] == [1, 2, 3]
    assert [e.seq for e in store.unpushed(10)] == [3]


def test_entries_head_office_no_longer_holds_are_sent_again(store: Store) -> None:
    """Head office restored from a backup holds seq 1 only of the three it acknowledged: the push of seq 4 names
    the gap, the till still holds 2 and 3 and sends them again; seq 9, which it never made, is reported lost."""
    store.mark_pushed(3, "t")
    store.record(JournalEntry("T-1", 0, "tx4", "sale", {"member_id": "M-1", "points_delta": 4}, "t"), points=("M-1", 4))
    pushed: list[list[int]] = []
    lost: list[dict] = []
    replies = [
        {"acked_seq": 1, "stored": 1, "duplicates": 0, "gaps": [[2, 3], [9, 9]]},
        {"acked_seq": 4, "stored": 2, "duplicates": 1, "gaps": []},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/journal/lost":
            lost.append(json.loads(request.content))
            return httpx.Response(200, json={"acked_seq": 1, "max_seq": 4, "gaps": [], "lost": [[9, 9]]})
        pushed.append([e["seq"] for e in json.loads(gzip.decompress(request.content))["entries"]])
        return httpx.Response(200, json=replies[len(pushed) - 1])

    sync = client(store, handler)
    assert sync.push_once() == 0
    assert [e.seq for e in store.unpushed(10)] == [2, 3, 4]
    assert sync.push_once() == 3
    assert pushed == [[4], [2, 3, 4]]
    assert [r["ranges"] for r in lost] == [[[9, 9]]]
    assert store.pending_count() == 0 and store.state("journal_resent") == "2"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("t"),
        httpx.ReadTimeout("t"),
        httpx.WriteTimeout("t"),
        httpx.PoolTimeout("t"),
        httpx.ReadError("reset"),
        httpx.WriteError("w"),
        httpx.RemoteProtocolError("truncated"),
        httpx.LocalProtocolError("l"),
        httpx.ProxyError("p"),
        httpx.UnsupportedProtocol("u"),
        httpx.CloseError("c"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_transport_error_is_mapped(store: Store, exc: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(HqUnreachable) as info:
        client(store, handler).sync_once()
    assert info.value.__cause__ is exc
    assert store.pending_count() == 3
    assert store.state("offline_since") is not None


def test_transport_error_classes_are_all_covered() -> None:
    # A new httpx TransportError subclass must be added to the list above.
    def leaves(cls: type) -> set[type]:
        subs = cls.__subclasses__()
        return {cls} if not subs else set().union(*(leaves(s) for s in subs))

    covered = {
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
        httpx.LocalProtocolError,
        httpx.ProxyError,
        httpx.UnsupportedProtocol,
        httpx.CloseError,
    }
    assert leaves(httpx.TransportError) <= covered


def test_4xx_and_5xx(store: Store) -> None:
    c = client(store, lambda r: httpx.Response(403, json={"code": "wrong_terminal", "message": "no"}))
    with pytest.raises(HqRejected) as info:
        c.push_once()
    assert info.value.code == "wrong_terminal"
    with pytest.raises(HqFailed):
        client(store, lambda r: httpx.Response(500, text="boom")).push_once()
    with pytest.raises(HqFailed):
        client(store, lambda r: httpx.Response(200, text="{not json")).push_once()
    with pytest.raises(HqFailed):
        client(store, lambda r: httpx.Response(200, json={"acked": "x"})).push_once()
    assert store.pending_count() == 3


def test_pull_pages_until_done_and_success_clears_offline(store: Store) -> None:
    pages = {
        0: {
            "cursor": 5,
            "more": True,
            "members": [{"member_id": "M-2", "display_name": "B", "tier": "t", "points": 7, "status": "active"}],
        },
        5: {"cursor": 9, "more": False, "cards": [{"uid_hash": "h", "member_id": "M-2", "status": "blocked"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/journal":
            return httpx.Response(200, json={"acked_seq": 3, "stored": 3, "duplicates": 0})
        if request.url.path == "/v1/flags":
            return httpx.Response(200, json=[])
        if request.url.path == "/v1/health":
            return httpx.Response(200, json={"status": "ok", "protocol": 2})
        return httpx.Response(200, json=pages[int(request.url.params["since"])])

    store.set_state(offline_since="earlier")
    result = client(store, handler).sync_once()
    assert (result.pushed, result.pulled) == (3, 2)
    assert store.state("cursor") == "9" and store.card("h").status.value == "blocked"
    assert store.state("offline_since") is None and store.state("last_sync_ok")


@pytest.mark.parametrize(
    ("announced", "spoken", "reports"), [(1, 1, False), (2, 2, True), (3, 3, True), (4, 4, True), (5, 4, True)]
)
def test_the_till_speaks_the_protocol_head_office_announced(
    store: Store, announced: int, spoken: int, reports: bool
) -> None:
    """A till is upgraded before or after head office: it speaks head office's protocol when that is one
    version behind (and sends no health report, which protocol 1 lacks), its own otherwise."""
    seen: dict[str, list[dict]] = {"push": [], "health": []}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/health":
            return httpx.Response(200, json={"status": "ok", "protocol": announced})
        if path == "/v1/journal":
            seen["push"].append(json.loads(gzip.decompress(request.content)))
            return httpx.Response(200, json={"acked_seq": 3, "stored": 3, "duplicates": 0})
        if path == "/v1/terminal/health":
            seen["health"].append(json.loads(request.content))
            return httpx.Response(204)
        if path == "/v1/flags":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"cursor": 0, "more": False})

    health = TillHealth(version="9.9", protocol=spoken, started_at="2026-09-21T14:00:00Z", pending=0)
    sync = SyncClient(
        store,
        "T-1",
        "http://hq.test",
        "tok",
        transport=httpx.MockTransport(handler),
        end_of_day=False,
        clock=lambda: 1_790_000_000.0,
        health=lambda protocol: health,
    )
    sync.sync_once()
    assert [body["protocol"] for body in seen["push"]] == [spoken]
    assert [body["version"] for body in seen["health"]] == (["9.9"] if reports else [])


def test_a_refused_health_report_does_not_stop_the_round(store: Store) -> None:
    """The fleet view is a report, not the sync: head office refusing it leaves the round a success."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/health":
            return httpx.Response(200, json={"status": "ok", "protocol": 2})
        if path == "/v1/journal":
            return httpx.Response(200, json={"acked_seq": 3, "stored": 3, "duplicates": 0})
        if path == "/v1/terminal/health":
            return httpx.Response(422, json={"code": "invalid_request", "message": "no"})
        if path == "/v1/flags":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"cursor": 0, "more": False})

    health = TillHealth(version="9.9", protocol=2, started_at="2026-09-21T14:00:00Z", pending=0)
    sync = SyncClient(
        store,
        "T-1",
        "http://hq.test",
        "tok",
        transport=httpx.MockTransport(handler),
        end_of_day=False,
        clock=lambda: 1_790_000_000.0,
        health=lambda protocol: health,
    )
    assert sync.sync_once().pushed == 3
    assert store.state("last_sync_ok") and store.state("offline_since") is None


def test_a_flag_with_a_reason_this_till_does_not_know_leaves_the_round_a_success(store: Store) -> None:
    """Head office is upgraded first: a reason added after this till's release (``receipt_sold_twice`` was
    one) is left out of the till's cached flags; the round, and the till's online state, are not affected."""
    known = {
        "item_id": "tx1:points_overspent",
        "store_id": "S1",
        "terminal_id": "T-1",
        "day": "2026-09-21",
        "seq": 1,
        "txn_id": "tx1",
        "reason": "points_overspent",
        "detail": {},
        "state": "open",
        "created_at": "2026-09-21T14:00:00Z",
    }
    newer = known | {"item_id": "tx2:a_reason_of_a_later_release", "reason": "a_reason_of_a_later_release"}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/health":
            return httpx.Response(200, json={"status": "ok", "protocol": 2})
        if path == "/v1/journal":
            return httpx.Response(200, json={"acked_seq": 3, "stored": 3, "duplicates": 0})
        if path == "/v1/flags":
            return httpx.Response(200, json=[newer, known])
        return httpx.Response(200, json={"cursor": 0, "more": False})

    sync = client(store, handler)
    assert sync.sync_once().pushed == 3
    assert store.state("last_sync_ok") and store.state("offline_since") is None
    assert [i["item_id"] for i in json.loads(store.state("hq_flags") or "[]")] == ["tx1:points_overspent"]


def test_a_duplicate_sent_again_marks_no_later_entry_head_office_holds_another_of(store: Store) -> None:
    """The till's database went back with seq 1 not yet marked (its WAL lost after a checkpoint), and it rang seqs 2
    and 3 again: head office holds other entries there. The push of seq 1 alone (a duplicate) is answered with head
    office's watermark, 3; the till marks only what it sent, so its new 2 and 3 take new seqs and are sent."""
    pushed: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/journal/state":
            return httpx.Response(200, json={"acked_seq": 3, "max_seq": 3})
        seqs = [e["seq"] for e in json.loads(gzip.decompress(request.content))["entries"]]
        pushed.append(seqs)
        if seqs == [1]:
            return httpx.Response(200, json={"acked_seq": 3, "stored": 0, "duplicates": 1})
        if seqs[0] <= 3:
            return httpx.Response(409, json={"code": "seq_conflict", "message": "head office holds other entries"})
        return httpx.Response(200, json={"acked_seq": seqs[-1], "stored": len(seqs), "duplicates": 0})

    assert client(store, handler).push_once() == 2
    assert pushed == [[1, 2, 3], [1], [2], [4, 5]]
    assert [(e.seq, e.txn_id) for e in store.entries()] == [(1, "tx1"), (4, "tx2"), (5, "tx3")]
    assert store.pending_count() == 0


def test_a_token_file_replaced_keeps_its_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sudo tillpoint sync --now --rotate` (or `enrol`) wrote the new credential as root's 0600 file: the daemon, as
    its own user, could not read it once head office retired the old token, nor start again. The new file is given
    the owner of the one it replaces, else of the directory (the service's data directory)."""
    given: list[tuple[int, int, int]] = []
    real_fchown = os.fchown

    def fchown(fd: int, uid: int, gid: int) -> None:
        given.append((os.fstat(fd).st_ino, uid, gid))
        real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "fchown", fchown)
    data = tmp_path / "data"
    data.mkdir()
    token = data / "hq.token"
    write_token_file(token, "first")
    here = os.stat(data)
    assert given == [(token.stat().st_ino, here.st_uid, here.st_gid)]  # none yet: the directory's owner
    old = token.stat()
    write_token_file(token, "second")
    assert given[1] == (token.stat().st_ino, old.st_uid, old.st_gid) and read_token_file(token) == "second"
    assert token.stat().st_mode & 0o777 == 0o600
    if os.geteuid() == 0:  # as root, for real: the file stays the service user's
        os.chown(token, 4242, 4242)
        write_token_file(token, "third")
        assert (token.stat().st_uid, token.stat().st_gid) == (4242, 4242)
