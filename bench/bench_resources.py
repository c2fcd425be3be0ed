"""Benchmark: resident memory and CPU of the running daemon, as a store PC runs it: a real
`tillpoint run` subprocess (simulated reader, local API, sync to a real head-office process).

    idle         nothing happens for --idle seconds (sync keeps polling head office)
    tap burst    --taps simulated taps sent as fast as the local API takes them, each identified and
                 ringing a sale (sale.auto_amount), until every sale is counted in /metrics
    camera 720p  a 720p 30 fps MJPEG stream with no code in view, through the camera pipeline
                 (drivers/camera.py): inside the daemon when the daemon runs [scanner] devices, else
                 the same pipeline in a process of its own (said in the output)

CPU is in percent of one core (user + system time over wall time); RSS in MiB (mean and peak of
samples every 0.2 s). Prints JSON.

    .venv/bin/python bench/bench_resources.py [--idle 10] [--taps 500] [--camera 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, metric, till_config, wait_until

MiB = 2**20
DEMO_UIDS = ("04A1B2C3D4E501", "04A1B2C3D4E502")


class Sampler(threading.Thread):
    """CPU and RSS of one process over a window."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.rss: list[int] = []
        self.stopping = threading.Event()

    def __enter__(self) -> Sampler:
        times = self.proc.cpu_times()
        self.cpu0, self.t0 = times.user + times.system, time.monotonic()
        self.start()
        return self

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            self.rss.append(self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        times = self.proc.cpu_times()
        self.cpu1, self.t1 = times.user + times.system, time.monotonic()
        self.rss.append(self.proc.memory_info().rss)
        self.stopping.set()
        self.join()

    def figures(self) -> dict[str, float]:
        wall = self.t1 - self.t0
        return {
            "seconds": round(wall, 2),
            "cpu_percent_of_one_core": round(100 * (self.cpu1 - self.cpu0) / wall, 1),
            "rss_mean_mib": round(sum(self.rss) / len(self.rss) / MiB, 1),
            "rss_peak_mib": round(max(self.rss) / MiB, 1),
        }


def write_video(path: Path, seconds: float, fps: int = 30) -> Path:
    """A 720p MJPEG video with no code in it: a slowly moving scene plus sensor-like noise."""
    import cv2

    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (1280, 720))
    base = np.tile(np.linspace(40, 200, 1280, dtype=np.uint8), (720, 1))
    for i in range(int(seconds * fps)):
        frame = np.roll(base, i * 3, axis=1).astype(np.int16)
        frame += rng.integers(-6, 7, size=frame.shape, dtype=np.int16)
        cv2.rectangle(frame, (200 + i % 400, 200), (400 + i % 400, 500), 90, -1)
        gray = np.clip(frame, 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def start_till(root: Path, hq: HqProcess, name: str, **extra: str) -> tuple[TillProcess, Api, NotifyListener]:
    root.mkdir(parents=True, exist_ok=True)
    notify = NotifyListener(root / "notify.sock")
    config = till_config(root, hq, hq.add_terminal(name), name, **extra)
    config.write_text(
        config.read_text().replace('format = "json"', 'format = "text"').replace('level = "info"', 'level = "warning"')
    )
    till = TillProcess(config, notify)
    till.start()
    api = Api(till)
    wait_until(lambda: api.status()["cache"]["members"] >= 4, 30, "the cache to load")
    return till, api, notify


def idle_and_burst(root: Path, hq: HqProcess, idle: float, taps: int) -> dict[str, Any]:
    till, api, notify = start_till(root, hq, "T-RES", sale="auto_amount = 1250")
    assert till.proc is not None
    try:
        time.sleep(2)  # let start-up settle
        with Sampler(till.proc.pid) as quiet:
            time.sleep(idle)
        sent = time.monotonic()
        with Sampler(till.proc.pid) as burst:
            with httpx.Client(base_url=till.url, timeout=10) as http:
                headers = {"Authorization": f"Bearer {till.token()}"}
                for i in range(taps):
                    http.post("/v1/sim/tap", json={"uid": DEMO_UIDS[i % 2]}, headers=headers)
            wait_until(
                lambda: metric(api.metrics(), "tillpoint_sales_total", kind="sale") == taps,
                120,
                "every tap's sale",
                0.1,
            )
        took = time.monotonic() - sent
        wait_until(lambda: api.status()["pending"] == 0, 60, "the burst pushed to head office", 0.2)
        return {
            "idle": quiet.figures(),
            "tap_burst": {**burst.figures(), "taps": taps, "taps_per_second": round(taps / took, 1)},
        }
    finally:
        api.close()
        till.stop()
        notify.close()


def camera_in_daemon(root: Path, hq: HqProcess, video: Path, seconds: float) -> dict[str, Any] | None:
    """The daemon with the camera scanner; None when this daemon does not run scanners yet."""
    till, api, notify = start_till(root, hq, "T-CAM", scanner=f'devices = ["camera:{video}"]')
    assert till.proc is not None
    try:
        try:
            wait_until(
                lambda: any(str(r.get("name", "")).startswith("camera:") for r in api.status()["readers"]),
                8,
                "the camera scanner",
            )
        except AssertionError:
            return None
        time.sleep(2)
        with Sampler(till.proc.pid) as cam:
            time.sleep(seconds)
        fps = metric(api.metrics(), "tillpoint_decode_fps", scanner=f"camera:{video}")
        return {**cam.figures(), "where": "inside the daemon", "decode_fps": fps}
    finally:
        api.close()
        till.stop()
        notify.close()


STANDALONE = textwrap.dedent("""
    import signal, sys, threading, time
    from drivers import open_scanner
    scanner = open_scanner("camera:" + sys.argv[1])
    scanner.start(lambda read: None, lambda event: None)
    began = time.monotonic()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("started", flush=True)
    done.wait(600)
    took = time.monotonic() - began
    s = scanner.stats
    scanner.stop()
    print(f"{s.captured / took:.1f} {s.decoded / took:.1f} {s.skipped / took:.1f}", flush=True)
""")


def camera_alone(video: Path, seconds: float) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STANDALONE, str(video)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(2)
    with Sampler(proc.pid) as cam:
        time.sleep(seconds)
    proc.terminate()
    captured, decoded, skipped = (float(x) for x in proc.stdout.readline().split())
    proc.wait(10)
    return {
        **cam.figures(),
        "where": "the camera pipeline in a process of its own (the daemon does not run [scanner] devices yet)",
        "frames_per_second": captured,
        "decoded_per_second": decoded,
        "skipped_by_motion_gate_per_second": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--taps", type=int, default=500)
    parser.add_argument("--camera", type=float, default=10.0, help="seconds of 720p stream (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hq = HqProcess(root / "hq-root")
        hq.start()
        try:
            result: dict[str, Any] = idle_and_burst(root / "burst", hq, args.idle, args.taps)
            if args.camera > 0:
                video = write_video(root / "no-code-720p.avi", args.camera + 15)
                result["camera_720p_no_code"] = camera_in_daemon(root / "cam", hq, video, args.camera) or camera_alone(
                    video, args.camera
                )
        finally:
            hq.kill()
    result["machine"] = {
        "cpus": psutil.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
