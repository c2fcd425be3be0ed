"""Benchmark: a card tap -> the cashier panel shows the member, and a member QR shown to the camera
-> the panel shows the member, on the virtual stack: real pcscd + vpcd with a virtual card, OpenCV
reading a generated video, the daemon, SSE, and Debian's Chromium (Playwright) drawing the panel.

The panel's time is taken in the browser: a MutationObserver notes when the member's name appears
in the DOM (performance.timeOrigin + performance.now(), the same wall clock as Python's time.time()).
Start times: just before the virtual card connects to vpcd (the "tap"), just before the camera
scanner opens the video whose first frame holds the code (the code "held up").

Prints JSON: p50/p99/max in ms of each, with the split at the daemon's event (reader/decoder part,
then session + SSE + panel part). It runs a private pcscd, like the PC/SC tests (tests/fixtures/pcsc.py).

    .venv/bin/python bench/bench_panel.py [--taps 30] [--scans 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stats import nearest_rank

from drivers import open_scanner
from terminal.credentials import card_uid_hash
from terminal.keys import load_or_create_key
from terminal.model import Card
from terminal.session import code_body
from tests.api.stack import AIKO_UID, chromium, paired_page, running_till
from tests.fixtures import pcsc
from tests.fixtures.video import blank, concat, still, write_video
from tests.vcard import VirtualCard

BEN_UID = bytes.fromhex("04A1B2C3D4E502")
WHO = {"M-1": "Aiko Tanaka", "M-2": "Ben Okafor"}
OBSERVER = """() => {
  window.__seen = [];
  const node = document.getElementById('member-name');
  new MutationObserver(() => window.__seen.push([performance.timeOrigin + performance.now(), node.textContent]))
    .observe(node, {childList: true, characterData: true, subtree: true});
}"""


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(nearest_rank(values, 0.5), 1),
        "p99": round(nearest_rank(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def shown_at(page: Any, name: str, after: float, timeout: float = 10.0) -> float:
    """Wall-clock seconds when the panel's member name became ``name`` (after ``after``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for at_ms, text in page.evaluate("() => window.__seen"):
            if text == name and at_ms / 1000 >= after:
                return float(at_ms) / 1000
        time.sleep(0.005)
    raise RuntimeError(f"the panel did not show {name!r} within {timeout} s")


def member_event_at(daemon: Any, member_id: str, after: float) -> float:
    for event in reversed(daemon.events_after(0)):
        if event["type"] == "member" and event["member_id"] == member_id:
            at = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
            if at >= after - 0.002:
                return at
    return float("nan")


def scan_event_at(daemon: Any, after: float) -> float:
    for event in reversed(daemon.events_after(0)):
        if event["type"] == "scan":
            at = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
            if at >= after - 0.002:
                return at
    return float("nan")


def taps(daemon: Any, page: Any, reader: pcsc.Pcscd, n: int) -> dict[str, Any]:
    total, stack, panel = [], [], []
    cards = [(AIKO_UID, "M-1"), (BEN_UID, "M-2")]
    for i in range(n):
        uid, member_id = cards[i % 2]
        card = VirtualCard(uid, port=reader.card_port)
        t0 = time.time()
        card.insert()
        t1 = shown_at(page, WHO[member_id], t0)
        event = member_event_at(daemon, member_id, t0)
        total.append((t1 - t0) * 1000)
        stack.append((event - t0) * 1000)
        panel.append((t1 - event) * 1000)
        card.remove()
        reader.wait_card(present=False, timeout=5)
    return {
        "tap_to_panel_ms": summary(total),
        "tap_to_member_event_ms": summary(stack),
        "member_event_to_panel_ms": summary(panel),
    }


def scans(daemon: Any, page: Any, root: Path, n: int) -> dict[str, Any]:
    videos = {
        m: write_video(
            root / f"{m}.avi", concat(still("TPM1:" + code_body(m), (1280, 720), 1.0, seed=7), blank((1280, 720), 0.3))
        )
        for m in WHO
    }
    total, camera, panel = [], [], []
    for i in range(n):
        member_id = ["M-1", "M-2"][i % 2]
        scanner = open_scanner(f"camera:{videos[member_id]}")
        t0 = time.time()
        scanner.start(daemon.on_qr, daemon.on_reader)
        try:
            t1 = shown_at(page, WHO[member_id], t0)
        finally:
            scanner.stop()
        event = scan_event_at(daemon, t0)
        total.append((t1 - t0) * 1000)
        camera.append((event - t0) * 1000)
        panel.append((t1 - event) * 1000)
    return {
        "scan_to_panel_ms": summary(total),
        "scan_to_scan_event_ms": summary(camera),
        "scan_event_to_panel_ms": summary(panel),
        "video": "1280x720 MJPG, code in the first frame",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taps", type=int, default=30)
    parser.add_argument("--scans", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-panel-"))
    reader = pcsc.start_private(root / "pcscd")
    try:
        with running_till(root, f"pcsc:{reader.reader}") as daemon, chromium() as browser:
            key = load_or_create_key(daemon.config.card_key_path)
            assert daemon.store is not None
            daemon.store.apply_changes([], [Card(card_uid_hash(key, BEN_UID), "M-2")], [], 2)
            page = paired_page(browser, daemon)
            page.evaluate(OBSERVER)
            result: dict[str, Any] = {"bench": "panel", "python": platform.python_version(), "cpus": 2}
            result |= taps(daemon, page, reader, args.taps)
            result |= scans(daemon, page, root, args.scans)
            result["chromium"] = browser.version
    finally:
        reader.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
