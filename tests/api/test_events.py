"""The event stream: the hub fed from other threads, and SSE over real HTTP from the daemon."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx

from terminal.api.events import EventHub, sse
from terminal.cli import _print_event
from terminal.daemon import Daemon
from terminal.model import Member
from tests.api.stack import AIKO_UID, base_url
from tests.waiting import wait_until


def ring(events: list[dict[str, Any]]) -> Any:
    return lambda after: [e for e in events if e["id"] > after]


async def subscribe(hub: EventHub, after: int, types: tuple[str, ...] = ()) -> AsyncIterator[bytes]:
    """A stream already registered with the hub: its first chunk (": connected") is sent once the
    client is subscribed, so what is published after this returns reaches it."""
    stream = hub.stream(after, types)
    assert await asyncio.wait_for(stream.__anext__(), 5) == b": connected\n\n"
    assert hub.clients >= 1
    return stream


async def collect(stream: AsyncIterator[bytes], n: int) -> list[bytes]:
    out: list[bytes] = []
    async for chunk in stream:
        if chunk.startswith(b"id:"):
            out.append(chunk)
            if len(out) == n:
                break
    return out


def test_backlog_then_live_events_from_another_thread() -> None:
    past = [{"id": 1, "type": "member"}, {"id": 2, "type": "sale"}]
    hub = EventHub(ring(past))

    async def run() -> list[bytes]:
        task = asyncio.create_task(collect(await subscribe(hub, 0), 4))
        threading.Thread(target=lambda: [hub.publish({"id": i, "type": "session"}) for i in (2, 3, 4)]).start()
        return await asyncio.wait_for(task, 5)

    chunks = asyncio.run(run())
    # id 2 came both from the ring and live: sent once
    assert [json.loads(c.split(b"data: ")[1])["id"] for c in chunks] == [1, 2, 3, 4]
    assert hub.clients == 0


def test_live_only_and_a_type_filter() -> None:
    hub = EventHub(ring([{"id": 1, "type": "member"}]))

    async def run() -> list[bytes]:
        task = asyncio.create_task(collect(await subscribe(hub, -1, ("sale",)), 1))
        hub.publish({"id": 2, "type": "member"})
        hub.publish({"id": 3, "type": "sale"})
        return await asyncio.wait_for(task, 5)

    [chunk] = asyncio.run(run())
    assert chunk == sse({"id": 3, "type": "sale"})


def test_a_slow_client_is_cut_off_and_close_ends_every_stream() -> None:
    hub = EventHub(ring([]), queue_size=3)

    async def run() -> int:
        got = 0
        stream = hub.stream(-1)
        await stream.__anext__()  # connected
        for i in range(1, 10):  # more than the queue holds, before the client reads anything
            hub.publish({"id": i, "type": "sale"})
        # publish() hands each event to the loop with call_soon_threadsafe, in order: once this
        # marker has run, all nine offers have reached the client's queue.
        delivered = asyncio.Event()
        asyncio.get_running_loop().call_soon_threadsafe(delivered.set)
        await asyncio.wait_for(delivered.wait(), 5)
        async for _ in stream:
            got += 1
        return got

    assert asyncio.run(asyncio.wait_for(run(), 5)) <= 3  # then it resumes with Last-Event-ID

    async def closing() -> None:
        stream = hub.stream(-1)
        await stream.__anext__()
        # Closed from another thread, whenever it runs: before or while the stream waits, it ends.
        threading.Timer(0.05, hub.close).start()
        async for _ in stream:
            pass

    asyncio.run(asyncio.wait_for(closing(), 5))


def read_events(
    url: str,
    token: str,
    want: int,
    headers: dict[str, str] | None = None,
    connected: threading.Event | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """The first ``want`` events; ``connected`` is set when the daemon says this client is subscribed."""
    found: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{url}/v1/stream",
        params=params,
        timeout=5,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line == ": connected" and connected is not None:
                connected.set()
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
                if len(found) == want:
                    break
    return found


def test_sse_over_http_carries_taps_and_session_changes(till: Daemon) -> None:
    url, token = base_url(till), till.api_token
    got: list[dict[str, Any]] = []
    subscribed = threading.Event()
    reader = threading.Thread(
        target=lambda: got.extend(read_events(url, token, 2, connected=subscribed, types="member,session"))
    )
    reader.start()
    assert subscribed.wait(10), "the event stream never said the client was subscribed"
    httpx.post(
        f"{url}/v1/sim/tap", json={"uid": "04A1B2C3D4E501"}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    reader.join(10)
    assert [e["type"] for e in got] == ["member", "session"]
    assert got[1]["session"]["member"]["name"] == "Aiko Tanaka" and got[1]["session"]["member"]["via"] == "card"
    # A client that reconnects gets what it missed.
    resumed = read_events(url, token, 1, headers={"Last-Event-ID": str(got[0]["id"])}, types="session")
    assert resumed[0]["id"] == got[1]["id"]


def test_the_consoles_event_lines_take_names_and_refusals_as_text(till: Daemon, capsys: Any) -> None:
    """``tillpoint run`` in a terminal (and the demo) print each event: a member's own name or a POS's sku holding
    what looks like console markup ("[/x]") is printed as it is, and never turns a tap or a refusal into an error."""
    till.subscribers.append(_print_event)
    token = {"Authorization": f"Bearer {till.api_token}"}
    url = base_url(till)
    # a basket the till refuses past the API's own checks (its total beyond the journal's bound): a refusal event
    bad = {"lines": [{"sku": "[/x]", "quantity": 2, "unit_price": 10**12}]}
    refused = httpx.post(f"{url}/v1/sales", json=bad, headers=token, timeout=5)
    assert (refused.status_code, refused.json()["code"]) == (409, "invalid_basket"), refused.text
    # a refusal whose words hold a POS's sku (the till's own line checks, behind the API's bounds)
    _print_event({"type": "rejected", "code": "invalid_basket", "message": "Line '[/x]': quantity must be > 0."})

    assert till.store is not None
    till.store.apply_changes([Member("M-1", "[/x] Aiko", "gold", 1200)], [], [], 2)  # the name she joined with
    tapped = httpx.post(f"{url}/v1/sim/tap", json={"uid": AIKO_UID.hex()}, headers=token, timeout=5)
    assert tapped.status_code == 202, tapped.text

    def identified() -> bool:
        member = httpx.get(f"{url}/v1/session", headers=token, timeout=5).json()["member"]
        return member is not None and member["member_id"] == "M-1"

    wait_until(identified, what="the tap to identify Aiko")
    printed = capsys.readouterr().out
    assert "[/x] Aiko" in printed and "Line '[/x]'" in printed
