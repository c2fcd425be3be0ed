"""Pull: members, cards, rules, documents, keys and revocations by cursor, with tombstones; a new
terminal's bootstrap from the snapshot, resumed after an interruption. A real head office served
on 127.0.0.1 (SQLite and PostgreSQL), the real sync client and the real terminal store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hq.api.server import ServerHandle
from hq.store import HqStore
from sync.client import HqFailed, HqUnreachable, SyncClient, check_signature
from terminal.store import Store

TOKEN = "feed-terminal-token"


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url)
    store.add_terminal("T1", "S1", TOKEN)
    for n in range(1, 26):
        store.upsert_member(f"M-{n:03d}", f"Member {n}", "basic", n * 10)
        store.upsert_card(f"{n:064x}", f"M-{n:03d}", "blocked" if n == 3 else "active")
    store.set_rule("base", 1, 100)
    store.put_rule_doc({"rule_id": "double-sunday", "multiplier": 2, "days": ["sun"]})
    store.put_coupon({"coupon_id": "C-1", "member_id": "M-001", "limits": {"global": 1}, "value": 500})
    store.put_coupon({"coupon_id": "C-ALL", "limits": {"global": 1000}})
    store.create_signing_key("qr")
    store.revoke("card", "ee" * 32, "lost")
    yield store
    store.close()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "till" / "terminal.db")
    yield store
    store.close()


def client(till: Store, server: ServerHandle, transport: httpx.BaseTransport | None = None) -> SyncClient:
    return SyncClient(till, "T1", server.url, TOKEN, timeout=5, transport=transport, end_of_day=False)


def test_a_new_terminal_bootstraps_with_progress_then_follows_the_feed(
    hq: HqStore, server: ServerHandle, till: Store
) -> None:
    seen: list[tuple[str, int, int]] = []
    c = client(till, server)
    c.bootstrap(lambda kind, done, total: seen.append((kind, done, total)), page_size=7)
    assert till.counts() == {"members": 25, "cards": 25, "rules": 1}
    assert ("members", 25, 25) in seen and ("cards", 7, 25) in seen
    assert till.card(f"{3:064x}").status.value == "blocked"  # type: ignore[union-attr]
    assert till.rule_docs()["double-sunday"]["multiplier"] == 2
    assert till.coupon_docs(["C-ALL"], "M-001").keys() == {"C-1", "C-ALL"}
    assert till.revoked("card", "ee" * 32) and not till.revoked("card", "ff" * 32)
    assert till.state("cursor") == str(hq.snapshot_info().version)
    assert till.state("bootstrap_kind") is None
    # Afterwards only changes come down, deletions included.
    hq.upsert_member("M-001", "Member 1", "gold", 10)
    hq.delete("member", "M-002")
    hq.delete("coupon", "C-ALL")
    assert c.pull_once() == 1 + 2 + 1  # M-001, tombstones of M-002 and its card, C-ALL's tombstone
    assert till.member("M-001").tier == "gold"  # type: ignore[union-attr]
    assert till.member("M-002") is None and till.card(f"{2:064x}") is None
    assert "C-ALL" not in till.coupon_docs(["C-ALL"], None)
    c.close()


class _CutAfter(httpx.HTTPTransport):
    """Lets ``n`` snapshot pages through, then the network goes away."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/snapshot/"):
            if self.left == 0:
                raise httpx.ConnectError("cable pulled")
            self.left -= 1
        return super().handle_request(request)


def test_an_interrupted_bootstrap_resumes_where_it_stopped(hq: HqStore, server: ServerHandle, till: Store) -> None:
    with pytest.raises(HqUnreachable):
        client(till, server, _CutAfter(4)).bootstrap(page_size=10)  # members: 3 pages; cards: 1
    assert (till.state("bootstrap_kind"), till.state("bootstrap_after")) == ("cards", f"{10:064x}")
    assert till.counts()["members"] == 25 and till.counts()["cards"] == 10
    asked: list[str] = []

    def log_after(request: httpx.Request) -> None:
        if request.url.path.startswith("/v1/snapshot/"):
            asked.append(request.url.params.get("after", ""))

    resumed = SyncClient(till, "T1", server.url, TOKEN, end_of_day=False)
    resumed.http.event_hooks["request"] = [log_after]
    resumed.sync_once()
    assert asked[0] == f"{10:064x}"  # it did not start again from the first card
    assert till.counts() == {"members": 25, "cards": 25, "rules": 1}
    assert till.state("cursor") is not None


def test_pull_pages_resume_from_the_stored_cursor(hq: HqStore, server: ServerHandle, till: Store) -> None:
    till.apply_changes([], [], [], cursor=0)  # a terminal that follows the feed from the start
    c = client(till, server)
    assert c.pull_once(limit=9) == 25 + 25 + 1 + 1 + 2 + 1 + 1
    cursor = int(till.state("cursor") or 0)
    assert cursor == hq.changes(0, 5000).cursor
    assert c.pull_once(limit=9) == 0 and int(till.state("cursor") or 0) == cursor


def test_keys_and_revocations_are_signed_by_the_root_key(hq: HqStore, server: ServerHandle, till: Store) -> None:
    page = hq.changes(0, 5000)
    root = hq.root_public_key()
    [key] = page.keys
    assert key.body["alg"] == "ed25519" and key.body["purpose"] == "qr"
    assert check_signature(root, key.body, key.sig)
    assert not check_signature(root, dict(key.body, purpose="payment_code"), key.sig)
    assert all(check_signature(root, r.body, r.sig) for r in page.revocations)
    c = client(till, server)
    c.bootstrap()
    assert till.signing_key(key.key_id)["public_key"] == key.body["public_key"]  # type: ignore[index]
    assert till.state("hq_root_key") == root  # pinned on first use


def test_a_forged_key_is_refused_and_nothing_of_its_page_is_applied(
    hq: HqStore, server: ServerHandle, till: Store
) -> None:
    till.apply_changes([], [], [], cursor=0)
    till.set_state(hq_root_key=hq.root_public_key())

    class Forger(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.url.path != "/v1/changes":
                return response
            response.read()
            body = json.loads(response.content)
            for key in body["keys"]:
                key["body"]["public_key"] = "A" * 43
            return httpx.Response(200, json=body)

    with pytest.raises(HqFailed, match="signature"):
        client(till, server, Forger()).pull_once(limit=5000)
    assert till.state("cursor") == "0" and till.counts()["members"] == 0


def test_a_pulled_balance_keeps_this_tills_unpushed_sales(hq: HqStore, server: ServerHandle, till: Store) -> None:
    from terminal.model import JournalEntry

    client(till, server).bootstrap()
    till.record(
        JournalEntry("T1", 0, "tx-1", "sale", {"member_id": "M-005", "points_delta": 7}, "2026-01-01T00:00:00Z"),
        points=("M-005", 7),
    )
    hq.upsert_member("M-005", "Member 5", "silver", 50)
    client(till, server).pull_once()
    assert till.member("M-005").points == 57  # type: ignore[union-attr]


def test_snapshot_pages_by_key_and_the_unknown_kind(hq: HqStore, server: ServerHandle) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    info = httpx.get(f"{server.url}/v1/snapshot", headers=headers).json()
    assert info["counts"]["members"] == 25 and info["counts"]["keys"] == 1
    page = httpx.get(
        f"{server.url}/v1/snapshot/members", params={"limit": 10, "after": "M-010"}, headers=headers
    ).json()
    assert page["columns"][:2] == ["member_id", "display_name"]
    assert [r[0] for r in page["rows"]] == [f"M-{n:03d}" for n in range(11, 21)] and page["next"] == "M-020"
    missing = httpx.get(f"{server.url}/v1/snapshot/nothing", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
