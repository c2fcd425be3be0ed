"""The crash harness: continuous sales through the local API of a real daemon, SIGKILLed at random
moments and restarted, against a real head-office process. Used by tests/ops/test_crash.py (a short
run) and bench/bench_crash.py (the long one).

What it proves, after the last restart has drained the journal to head office:
  * no acknowledged sale is lost: every 200 answer's txn_id is in the till's journal with the seq it
    was given, and at head office;
  * none is duplicated at head office: one row per txn_id and per seq;
  * no seq gap: the till's journal and head office both hold exactly 1..N;
  * ``PRAGMA integrity_check`` is ok on the till's database (and head office's).
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_journal, integrity, till_config, wait_until

TERMINAL = "T-CRASH"


@dataclass
class CrashReport:
    kills: int = 0
    seconds: float = 0.0
    attempted: int = 0
    acknowledged: int = 0
    refused: int = 0  # answered with a rejection (e.g. unknown_member before the first pull)
    unanswered: int = 0  # connection refused/reset: the daemon was down or died mid-request
    journal_entries: int = 0
    hq_entries: int = 0
    committed_unacknowledged: int = 0  # in the journal, but the client never got its answer
    lost: list[str] = field(default_factory=list)
    wrong_seq: list[str] = field(default_factory=list)
    hq_duplicates: int = 0
    local_gaps: list[int] = field(default_factory=list)
    hq_gaps: list[int] = field(default_factory=list)
    local_integrity: str = ""
    hq_integrity: str = ""
    ready_p50_s: float = 0.0
    ready_max_s: float = 0.0
    final_stop_exit: int | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.wrong_seq
            and not self.hq_duplicates
            and not self.local_gaps
            and not self.hq_gaps
            and self.local_integrity == "ok"
            and self.hq_integrity == "ok"
            and self.journal_entries == self.hq_entries
            and self.final_stop_exit == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Seller(threading.Thread):
    """Rings sales one after another, as a busy POS would, and keeps every acknowledgement."""

    def __init__(self, till: TillProcess, seed: int) -> None:
        super().__init__(name="seller", daemon=True)
        self.till = till
        self.rng = random.Random(seed)
        self.acked: dict[str, int] = {}
        self.attempted = self.refused = self.unanswered = 0
        self.stopping = threading.Event()
        self.http = httpx.Client(base_url=till.url, timeout=3.0)

    def run(self) -> None:
        token = self.till.token()
        while not self.stopping.is_set():
            member = self.rng.choice([None, "M-0001", "M-0002"])
            body = {
                "member_id": member,
                "use_identified": False,
                "lines": [{"sku": "CRASH", "quantity": 1, "unit_price": self.rng.randint(100, 5000)}],
            }
            self.attempted += 1
            try:
                reply = self.http.post("/v1/sales", json=body, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError:
                self.unanswered += 1
                time.sleep(0.005)  # pacing: the till is down (being killed); the next sale tries again
                continue
            if reply.status_code == 200:
                receipt = reply.json()
                self.acked[receipt["txn_id"]] = int(receipt["seq"])
            else:
                self.refused += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
        self.http.close()


def _journal(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return [(int(s), str(t)) for s, t in conn.execute("SELECT seq, txn_id FROM journal ORDER BY seq").fetchall()]
    finally:
        conn.close()


def _gaps(seqs: list[int]) -> list[int]:
    present = set(seqs)
    return [s for s in range(1, max(present, default=0) + 1) if s not in present][:20]


def run_crash(
    root: Path, kills: int, seed: int = 1, budget_s: float | None = None, gap: tuple[float, float] = (0.05, 0.6)
) -> CrashReport:
    """Kill the daemon ``kills`` times (fewer if ``budget_s`` runs out) while it sells; then check."""
    rng = random.Random(seed)
    report = CrashReport()
    began = time.monotonic()
    hq = HqProcess(root)
    notify = NotifyListener(root / "notify.sock")
    hq.start()
    try:
        till = TillProcess(till_config(root, hq, hq.add_terminal(TERMINAL), TERMINAL), notify)
        ready = [till.start()]
        seller = Seller(till, seed)
        seller.start()
        try:
            for _ in range(kills):
                if budget_s is not None and time.monotonic() - began > budget_s:
                    break
                time.sleep(rng.uniform(*gap))  # a random moment to kill at: the subject of the test
                till.kill()
                report.kills += 1
                ready.append(till.start())
            time.sleep(rng.uniform(*gap))  # sales after the last restart, for the same random span
        finally:
            seller.stop()
        _drain(till)
        report.final_stop_exit = till.stop()
        _check(report, till, hq, seller)
        report.ready_p50_s = round(statistics.median(ready), 3)
        report.ready_max_s = round(max(ready), 3)
    finally:
        hq.kill()
        notify.close()
    report.seconds = round(time.monotonic() - began, 1)
    return report


def _drain(till: TillProcess) -> None:
    api = Api(till)
    try:
        wait_until(lambda: api.status()["pending"] == 0, 60, "the journal to drain to head office", 0.2)
    finally:
        api.close()


def _check(report: CrashReport, till: TillProcess, hq: HqProcess, seller: Seller) -> None:
    db = till.data / "terminal.db"
    local = _journal(db)
    remote = hq_journal(hq.db, TERMINAL)
    local_seq = {txn: seq for seq, txn in local}
    remote_txns = [txn for _, txn in remote]
    report.attempted, report.acknowledged = seller.attempted, len(seller.acked)
    report.refused, report.unanswered = seller.refused, seller.unanswered
    report.journal_entries, report.hq_entries = len(local), len(remote)
    report.committed_unacknowledged = len(set(local_seq) - set(seller.acked))
    report.lost = sorted(set(seller.acked) - set(local_seq) | set(seller.acked) - set(remote_txns))[:20]
    report.wrong_seq = [t for t, s in seller.acked.items() if t in local_seq and local_seq[t] != s][:20]
    report.hq_duplicates = len(remote_txns) - len(set(remote_txns)) + len(remote) - len({s for s, _ in remote})
    report.local_gaps = _gaps([s for s, _ in local])
    report.hq_gaps = _gaps([s for s, _ in remote])
    if set(remote_txns) != set(local_seq):
        report.lost += sorted(set(local_seq) ^ set(remote_txns))[:20]
    report.local_integrity = integrity(db)
    report.hq_integrity = integrity(hq.db)
