"""Benchmark: the printer in the middle. Prints JSON.

For each receipt set, the added latency of printing through tillpoint: each receipt is printed as a POS
prints (connect, send, half-close) and timed from its first byte in to the printer's close coming back
after its last byte arrived, once straight to the recording printer (a separate process) and once
through ``drivers.printer.PrinterProxy`` (enrichment off, then on: the loyalty block with a claim QR is
made and inserted before the cut), in the same run; p50 and p99 (ms), the added p50/p99 and the
ratio. Then receipts parsed and read per second (parser + template, no I/O).

Two receipt sets: ``main`` (the sets the tests use: English cp437 42 columns, Japanese Shift_JIS,
Chinese GB18030 32 columns, 1-15 items) and ``other`` (settings never tuned on: English cp858 at 32
columns, Japanese at 48 columns with 30-60 items, Chinese at 42 columns with 1-3 items), reported side
by side.

    .venv/bin/python bench/bench_receipts.py [--receipts 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

from stats import nearest_rank

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.printer import PrinterProxy
from terminal.model import Basket, Receipt, ReceiptRef, ReceiptSold
from terminal.receipts.desk import Desk
from terminal.receipts.escpos import ReceiptParser
from terminal.receipts.templates import Template, first_reading
from tests.fixtures.printer import start_printer
from tests.fixtures.receipts import chinese, english, japanese, random_sale, templates


class Sales:
    def __init__(self) -> None:
        self.n = 0

    def receipt_sale(self, basket: Basket, ref: ReceiptRef) -> ReceiptSold:
        self.n += 1
        receipt = Receipt(f"txn-{self.n}", self.n, "sale", None, basket.total, 0, None, "")
        return ReceiptSold(receipt, None, f"https://join.example/c/TPJ1-{self.n:08d}", None)


def receipt_set(name: str, n: int) -> list[tuple[str, bytes]]:
    rng = random.Random(name)
    out = []
    for i in range(n):
        lang = ("en", "ja", "zh")[i % 3]
        if name == "main":
            sale = random_sale(rng, lang, rng.randint(1, 15))
            data = {"en": lambda s: english(s), "ja": lambda s: japanese(s), "zh": lambda s: chinese(s)}[lang](sale)
        else:
            items = {"en": rng.randint(1, 15), "ja": rng.randint(30, 60), "zh": rng.randint(1, 3)}[lang]
            sale = random_sale(rng, lang, items)
            data = {
                "en": lambda s: english(s, 32, page="cp858"),
                "ja": lambda s: japanese(s, 48),
                "zh": lambda s: chinese(s, 42),
            }[lang](sale)
        out.append((lang, data))
    return out


def print_once(port: int, data: bytes) -> float:
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return time.perf_counter() - began


def ms(values: list[float], q: float) -> float:
    return round(nearest_rank(values, q) * 1000, 3)


def latency(receipts: list[tuple[str, bytes]], tpl: dict[str, Template], printer_port: int) -> dict[str, object]:
    result: dict[str, object] = {}
    desks = {}
    for mode in ("off", "on"):
        # one proxy per language (a POS prints one language), as a till has one per POS
        desks[mode] = {
            lang: Desk([t], Sales(), lambda c, code: None, enrich=(mode == "on"), native_qr=True)
            for lang, t in tpl.items()
        }
    proxies = {
        (mode, lang): PrinterProxy(
            "tcp:127.0.0.1:0", f"tcp:127.0.0.1:{printer_port}", desk, enrich=(mode == "on"), hold=0.15
        )
        for mode, by_lang in desks.items()
        for lang, desk in by_lang.items()
    }
    for proxy in proxies.values():
        proxy.start()
    try:
        times: dict[str, list[float]] = {"direct": [], "off": [], "on": []}
        for lang, data in receipts[:10]:  # warm up
            print_once(printer_port, data)
            print_once(proxies[("off", lang)].port, data)
        for lang, data in receipts:  # interleaved: the same conditions for each path
            times["direct"].append(print_once(printer_port, data))
            times["off"].append(print_once(proxies[("off", lang)].port, data))
            times["on"].append(print_once(proxies[("on", lang)].port, data))
        direct50, direct99 = ms(times["direct"], 0.5), ms(times["direct"], 0.99)
        result["direct_ms"] = {"p50": direct50, "p99": direct99}
        for mode in ("off", "on"):
            p50, p99 = ms(times[mode], 0.5), ms(times[mode], 0.99)
            result[f"enrich_{mode}_ms"] = {
                "p50": p50,
                "p99": p99,
                "added_p50": round(p50 - direct50, 3),
                "added_p99": round(p99 - direct99, 3),
                "ratio_p50": round(p50 / direct50, 2),
                "ratio_p99": round(p99 / direct99, 2),
            }
        on = [proxies[("on", lang)].stats for lang in tpl]
        result["enriched"] = sum(s.enriched for s in on)
        result["hold_timeouts"] = sum(s.hold_timeouts for s in on)
        holds = [h for s in on for h in s.holds]
        result["hold_ms"] = {"p50": ms(holds, 0.5), "p99": ms(holds, 0.99)} if holds else None
    finally:
        for proxy in proxies.values():
            proxy.stop()
    return result


def parse_rate(receipts: list[tuple[str, bytes]], tpl: dict[str, Template]) -> dict[str, object]:
    read = 0
    began = time.perf_counter()
    for lang, data in receipts:
        t = tpl[lang]
        parser = ReceiptParser(t.encoding, t.multibyte, t.kanji_default)
        for captured in parser.feed(data):
            first_reading([t], captured)
            read += 1
    seconds = time.perf_counter() - began
    size = sum(len(d) for _, d in receipts)
    return {
        "receipts_per_s": round(read / seconds, 1),
        "mb_per_s": round(size / seconds / 1e6, 2),
        "read": read,
        "of": len(receipts),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receipts", type=int, default=200)
    args = ap.parse_args()
    tpl = templates()
    with tempfile.TemporaryDirectory() as tmp:
        printer = start_printer(Path(tmp) / "printer")
        try:
            report: dict[str, object] = {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "receipts_per_set": args.receipts,
            }
            for name in ("main", "other"):
                with contextlib.redirect_stdout(io.StringIO()):  # python-escpos says which barcode renderer
                    receipts = receipt_set(name, args.receipts)
                report[name] = {
                    "mean_bytes": round(sum(len(d) for _, d in receipts) / len(receipts)),
                    "latency": latency(receipts, tpl, printer.port),
                    "parse": parse_rate(receipts * 5, tpl),
                }
        finally:
            printer.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
