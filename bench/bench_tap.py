"""Tap-to-event on the virtual PC/SC stack, the driver's own cost above the APDU round trips, and
the cost of verifying an NTAG 424 DNA SUN message. Prints JSON.

    .venv/bin/python bench/bench_tap.py --taps 40 --reads 300 --verifies 2000

Needs pcscd and vsmartcard-vpcd (as the tests do); takes the tests' pcscd lock, stops any other
pcscd and starts its own, like the test session fixture.

    tap_to_event    card inserted (vpcd connection) -> CardRead delivered by the running PcscReader;
                    includes pcscd's own polling of vpcd, which dominates
    driver          read_card() on a connected card: total, the APDU round trips inside it, and the
                    driver's overhead (total - round trips), per card kind
    sun_verify      terminal.credentials.verify_read on a SUN read (AES decrypt, 2 CMACs, hash)
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smartcard import scard
from stats import nearest_rank

from drivers.pcsc import PcscReader, _call, _transmit, read_card
from terminal.credentials import card_uid_hash, verify_read
from terminal.model import CardRead
from tests.fixtures.pcsc import Pcscd, start_private
from tests.vcard import (
    ISO_DEP_ATR,
    STORAGE_ATR,
    ULTRALIGHT_ATR,
    Ntag424,
    Type2Tag,
    VirtualCard,
    type2_memory,
    uri_message,
)

KEY = b"tillpoint-bench-card-hash-key-01"
MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
UID = bytes.fromhex("04A22B1C5D6E80")


def hash_uid(uid: bytes) -> str:
    return card_uid_hash(KEY, uid)


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(nearest_rank(ms, 0.99), 3), "n": len(ms)}


def cards(port: int) -> dict[str, Callable[[], VirtualCard]]:
    url = "https://tillpoint.example/m/4711"
    return {
        "uid_only": lambda: VirtualCard(UID, STORAGE_ATR, port=port),
        "ntag21x_url": lambda: VirtualCard(
            UID, ULTRALIGHT_ATR, handler=Type2Tag(type2_memory(uri_message(url))), port=port
        ),
        "ntag424_sun": lambda: VirtualCard(UID, ISO_DEP_ATR, handler=Ntag424(UID, MASTER), port=port),
    }


def wait_absent(pcscd: Pcscd) -> None:
    if not pcscd.wait_card(present=False, timeout=5.0):
        raise RuntimeError("pcscd never saw the card leave")


def tap_to_event(pcscd: Pcscd, make: Callable[[], VirtualCard], taps: int) -> dict[str, float]:
    reads: queue.Queue[CardRead] = queue.Queue()
    reader = PcscReader(pcscd.reader, hash_uid, poll_interval=0.25)
    reader.start(reads.put, lambda event: None)
    times = []
    try:
        time.sleep(0.5)
        for _ in range(taps):
            card = make()
            began = time.perf_counter()
            card.insert()
            reads.get(timeout=5)
            times.append((time.perf_counter() - began) * 1000)
            card.remove()
            wait_absent(pcscd)
    finally:
        reader.stop()
    return summary(times)


def driver_cost(pcscd: Pcscd, make: Callable[[], VirtualCard], atr: bytes, reads: int) -> dict[str, Any]:
    card = make()
    card.insert()
    if not pcscd.wait_card(present=True, timeout=5.0):
        raise RuntimeError("pcscd never saw the card")
    (hcontext,) = _call("SCardEstablishContext", scard.SCardEstablishContext, scard.SCARD_SCOPE_USER)
    totals, trips, apdus = [], [], 0
    try:
        hcard, protocol = _call(
            "SCardConnect",
            scard.SCardConnect,
            hcontext,
            pcscd.reader,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        for _ in range(reads):
            spent = [0.0]
            count = [0]

            def transmit(apdu: bytes, spent: list[float] = spent, count: list[int] = count) -> bytes:
                began = time.perf_counter()
                response = _transmit(hcard, protocol, apdu)
                spent[0] += time.perf_counter() - began
                count[0] += 1
                return response

            began = time.perf_counter()
            read_card(transmit, atr)
            totals.append((time.perf_counter() - began) * 1000)
            trips.append(spent[0] * 1000)
            apdus = count[0]
        scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(hcontext)
        card.remove()
        wait_absent(pcscd)
    overhead = [t - r for t, r in zip(totals, trips, strict=True)]
    return {
        "apdus_per_read": apdus,
        "read": summary(totals),
        "apdu_round_trips": summary(trips),
        "driver_overhead": summary(overhead),
    }


def sun_verify(count: int) -> dict[str, float]:
    tag = Ntag424(UID, MASTER)
    reads = [CardRead("bench", "iso14443a", hash_uid(UID), b"", None, tag.ndef_url()) for _ in range(count)]
    times = []
    for read in reads:
        began = time.perf_counter()
        verify_read(read, MASTER, hash_uid)
        times.append((time.perf_counter() - began) * 1000)
    return summary(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taps", type=int, default=40)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--verifies", type=int, default=2000)
    args = parser.parse_args()
    result: dict[str, Any] = {"sun_verify": sun_verify(args.verifies)}
    pcscd = start_private(Path(tempfile.mkdtemp(prefix="bench-tap-")))
    try:
        atrs = {"uid_only": STORAGE_ATR, "ntag21x_url": ULTRALIGHT_ATR, "ntag424_sun": ISO_DEP_ATR}
        made = cards(pcscd.card_port)
        result["driver"] = {name: driver_cost(pcscd, make, atrs[name], args.reads) for name, make in made.items()}
        result["tap_to_event"] = {name: tap_to_event(pcscd, make, args.taps) for name, make in made.items()}
    finally:
        pcscd.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
