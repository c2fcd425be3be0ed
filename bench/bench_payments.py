"""Benchmark: member payments by one-time payment code.

Prints JSON with p50/p99 (ms) of
  verify       one code checked as a till does (parse, certificate signature + expiry, code signature + window)
  pay_local    one payment end to end through the service and a real on-disk store (quote + commit, the code
               recorded in the same transaction), no head office asked
  pay_online   the same with head office confirming each payment first (a real head-office server in a
               thread over SQLite, HTTP on loopback)

    .venv/bin/python bench/bench_payments.py [--codes 2000] [--payments 500] [--online 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stats import nearest_rank, timed

from hq import payments as hq_payments
from hq.api.server import start_in_thread
from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from terminal import payments as pay
from terminal.identity import Payment
from terminal.model import Basket, Line
from terminal.service import Service
from terminal.store import Store

BASKET = Basket((Line("LUNCH", 1, 10),))
WIDE = pay.RiskLimits(per_transaction=0, per_member_day=0, terminal_total=0)


def figures(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(nearest_rank(samples, 0.5) * 1000, 4),
        "p99_ms": round(nearest_rank(samples, 0.99) * 1000, 4),
    }


def bench_verify(codes: int) -> dict[str, float]:
    hq_key, phone = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = int(time.time())
    cert = pay.issue_cert(hq_key, "K-1", b"\x00" * 7 + b"\x01", "M-1", pay.public_bytes(phone), now - 60, 86400, 10_000)
    issuers = {"K-1": pay.public_bytes(hq_key)}
    texts = [pay.make_code(phone, cert.cert_id, now, i + 1) for i in range(codes)]

    def verify(i: int) -> None:
        code = pay.parse_code(texts[i])
        pay.check_cert(cert, issuers, now, False)
        pay.verify_code(code, cert, now)

    return figures(timed(verify, codes))


def chain(tmp: Path) -> tuple[HqStore, str, Store, Ed25519PrivateKey, pay.DeviceCert]:
    hq = HqStore(str(tmp / "hq.db"))
    hq.set_rule("base", 1, 100)
    hq.upsert_member("M-1", "Bench", "basic", 0)
    hq_payments.topup(hq, "M-1", 10_000_000, "bench")
    token = hq.add_terminal("T-1", "S-001")
    phone = Ed25519PrivateKey.generate()
    cert = hq_payments.register_device(hq, "M-1", pay.public_bytes(phone).hex())
    till = Store.open(tmp / "till.db")
    return hq, token, till, phone, cert


def bench_pay(payments: int, online: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        hq, token, till, phone, cert = chain(Path(tmp))
        terminal_id = "T-1"
        server = start_in_thread(hq)
        client = SyncClient(till, terminal_id, server.url, token)
        client.sync_once()
        service = Service(till, terminal_id, limits=WIDE)
        counter = iter(range(1, 10**9))

        def one(_: int) -> None:
            code = pay.make_code(phone, cert.cert_id, int(time.time()), next(counter))
            service.commit(service.quote("M-1", BASKET), Payment(10, code))

        local = timed(one, payments)
        service.confirm_online = confirmer(client)
        remote = timed(one, online)
        client.close()
        till.close()
        server.stop()
        hq.close()
    return {"pay_local": figures(local), "pay_online": figures(remote)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=2000)
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--online", type=int, default=200)
    args = parser.parse_args()
    result: dict[str, object] = {"verify": bench_verify(args.codes), **bench_pay(args.payments, args.online)}
    result["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
