"""Members joining: enrolment at the till, claim tokens, head office accepting enrolments. Prints JSON.

.venv/bin/python bench/bench_enrol.py --enrols 300 --tokens 2000 --batches 20

till_enrol      Service.enrol: one durable commit (member, card, journal row)
token_sign      sync.claims.sign (Ed25519) / token_verify: parse + verify at head office
hq_ingest       one push of ``--batch`` enrol entries into head office (SQLite), half of them a card
                another till enrolled first (merged), per batch and per entry
claim           POST-less: members.claim in one transaction (verify, credit, link the sale)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stats import nearest_rank, timed

from hq import members
from hq.store import HqStore
from sync import claims
from sync.protocol import SaleLine, SalePayload, WireEntry
from terminal.model import CardRead
from terminal.service import Service
from terminal.store import Store


def figures(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(nearest_rank(samples, 0.99) * 1000, 3),
    }


def bench_till(root: Path, n: int) -> dict[str, float]:
    store = Store.open(root / "till.db")
    service = Service(store, "T-BENCH")
    result = figures(timed(lambda i: service.enrol(CardRead("bench", "iso14443a", f"{i:064x}")), n))
    store.close()
    return result


def bench_tokens(n: int) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    public, txns = claims.public_bytes(key), [str(uuid.uuid4()) for _ in range(n)]
    made: list[str] = []
    sign = timed(lambda i: made.append(claims.sign(key, txns[i], 1_800_000_000, 3600)), n)
    verify = timed(lambda i: claims.verify(claims.parse(made[i]), public, 1_800_000_001), n)
    return {"token_sign": figures(sign), "token_verify": figures(verify), "token_chars": len(made[0])}


def entry(terminal: str, seq: int, kind: str, payload: dict[str, Any], created: str) -> WireEntry:
    return WireEntry(
        terminal_id=terminal, seq=seq, txn_id=str(uuid.uuid4()), kind=kind, payload=payload, created_at=created
    )


def bench_hq(root: Path, batches: int, size: int) -> dict[str, Any]:
    store = HqStore(str(root / "hq.db"))
    store.add_terminal("T-A", "S-1", "a" * 32)
    store.add_terminal("T-B", "S-1", "b" * 32)
    samples = []
    for b in range(batches):
        first = [
            entry(
                "T-A",
                b * size + i + 1,
                "enrol",
                {
                    "member_id": f"E-A{b}-{i}",
                    "uid_hash": f"{b:08x}{i:056x}",
                    "consent": "till-2026-11",
                    "store_id": "S-1",
                },
                "2026-11-20T09:00:00Z",
            )
            for i in range(size)
        ]
        store.ingest("T-A", first)
        second = [
            entry(
                "T-B",
                b * size + i + 1,
                "enrol",
                {
                    "member_id": f"E-B{b}-{i}",
                    "uid_hash": f"{b:08x}{i:056x}" if i % 2 else f"{b:08x}{i:055x}f",
                    "consent": "till-2026-11",
                    "store_id": "S-1",
                },
                "2026-11-20T09:05:00Z",
            )
            for i in range(size)
        ]
        start = time.perf_counter()
        store.ingest("T-B", second)
        samples.append(time.perf_counter() - start)
    per_batch = figures(samples)
    key = Ed25519PrivateKey.generate()
    public = claims.public_bytes(key)
    store.ingest(
        "T-A",
        [
            entry(
                "T-A",
                batches * size + 1,
                "claim_key",
                {"key_id": claims.key_id_of(public).hex(), "public_key": claims.b64(public)},
                "2026-11-20T09:00:00Z",
            )
        ],
    )
    anonymous = SalePayload(
        store_id="S-1",
        total=1000,
        payable=1000,
        pos_due=1000,
        local_time="2026-11-20T10:00:00",
        lines=[SaleLine(sku="SKU-1", quantity=1, unit_price=1000)],
    ).wire()
    sales = [entry("T-A", batches * size + 2 + i, "sale", anonymous, "2026-11-20T10:00:00Z") for i in range(200)]
    store.ingest("T-A", sales)
    tokens = [claims.sign(key, s.txn_id, int(time.time()), 3600) for s in sales]
    now = datetime.now(UTC)
    claimed = timed(
        lambda i: store.db.transact(lambda tx: members.claim(tx, tokens[i], "Bench", members.CONSENT_VERSION, now)),
        len(tokens),
    )
    assert store.quarantined() == [], "every benchmark entry must be one head office applies"
    store.close()
    return {
        "hq_ingest_batch": {**per_batch, "entries": size, "merged": size // 2},
        "hq_ingest_per_entry_ms": round(per_batch["median_ms"] / size, 3),
        "claim": figures(claimed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enrols", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = {
            "till_enrol": bench_till(root, args.enrols),
            **bench_tokens(args.tokens),
            **bench_hq(root, args.batches, args.batch),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
