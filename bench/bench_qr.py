"""Benchmark: QR decoding on generated, degraded camera frames; zxing-cpp and OpenCV side by side.

Prints JSON. Everything is generated on the fly from a seed (tests/fixtures/video.py; the set is
described in docs/scanning.md, "Test images") and nothing is written but temporary video files.

    .venv/bin/python bench/bench_qr.py [--frames 250] [--presentations 200] [--static-seconds 5] [--seed 1]

Figures:
  per_frame.<720p|1080p>.<decoder>   success on frames with a code, false positives on all frames,
                                     median / p95 decode ms on frames with a code, and on frames without
  presentations_1080p.<decoder>      success per presentation (one second, 30 frames, of one code moving
                                     into view), and per frame within them; strong_glare_* the presentations
                                     with a glare >= 0.6, and the same replayed with the glare frozen in the
                                     frame whatever the carrier does (a stress case, not in the main figure)
  pipeline_1080p                     capture (cv2.VideoCapture on an MJPG file, JPEG passthrough) + JPEG
                                     decode to grey + decode, frames/s on one core (sched_setaffinity,
                                     cv2.setNumThreads(1)), motion gate off; and CameraScanner's two
                                     threads on the same file played at 30 fps
  static_scene_1080p                 CPU % of a CameraScanner on a 30 fps static scene (motion gate on)
Decoders: "zxing" is drivers.decode.decode (one multi-scale pass, crop
retries), "zxing_one_pass" one full-size pass without the downscaled layers and the retries (lone-finder leads
included, but nothing is retried), "opencv" the fallback (cv2.QRCodeDetectorAruco).
The comparison with raw zxing-cpp per kind of frame, on a tuning and a measuring set, is
bench/bench_qr_sets.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drivers.decode as decoding
from drivers.camera import CameraScanner, jpeg_passthrough, open_capture, parse_source
from tests.fixtures.video import background, concat, presentation, random_look, render, still, write_video

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
NO_CODE_SHARE = 0.2
STRONG_GLARE = 0.6  # a glare this strong burns out the modules under it (reported apart)

Decoder = Callable[[np.ndarray], list[str]]


def decoders() -> dict[str, Decoder]:
    def one_pass(gray: np.ndarray) -> list[str]:
        saved, decoding.RETRIES = decoding.RETRIES, ()
        multi, decoding.MULTI_SCALE = decoding.MULTI_SCALE, False
        try:
            return decoding.decode(gray)
        finally:
            decoding.RETRIES, decoding.MULTI_SCALE = saved, multi

    return {
        "zxing": lambda g: decoding.decode(g, backend="zxing"),
        "zxing_one_pass": one_pass,
        "opencv": lambda g: decoding.decode(g, backend="opencv"),
    }


def payload(rng: np.random.Generator) -> str:
    """A member code of the length real ones have (a 48-byte signed payload, base64url): QR version 5."""
    return "TPM1:" + base64.urlsafe_b64encode(rng.bytes(48)).decode().rstrip("=")


def ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")


class Tally:
    def __init__(self) -> None:
        self.ok = self.with_code = self.false_positives = 0
        self.code_times: list[float] = []
        self.empty_times: list[float] = []

    def add(self, expected: str | None, got: list[str], seconds: float) -> None:
        (self.code_times if expected else self.empty_times).append(seconds)
        if expected:
            self.with_code += 1
            self.ok += expected in got
        self.false_positives += any(text != expected for text in got)

    def report(self) -> dict[str, Any]:
        return {
            "success_per_frame": round(self.ok / max(1, self.with_code), 4),
            "frames_with_code": self.with_code,
            "frames_without_code": len(self.empty_times),
            "false_positives": self.false_positives,
            "decode_ms_median": ms(self.code_times, 50),
            "decode_ms_p95": ms(self.code_times, 95),
            "no_code_ms_median": ms(self.empty_times, 50),
            "no_code_ms_p95": ms(self.empty_times, 95),
        }


def timed(decoder: Decoder, gray: np.ndarray) -> tuple[list[str], float]:
    started = time.perf_counter()
    got = decoder(gray)
    return got, time.perf_counter() - started


def per_frame(size: tuple[int, int], frames: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    scenes = [background(size, rng) for _ in range(4)]
    tallies = {name: Tally() for name in decoders()}
    for i in range(frames):
        text = None if rng.random() < NO_CODE_SHARE else payload(rng)
        gray = cv2.cvtColor(render(text, size, random_look(rng, size), rng, scenes[i % 4]), cv2.COLOR_BGR2GRAY)
        for name, decoder in decoders().items():
            got, seconds = timed(decoder, gray)
            tallies[name].add(text, got, seconds)
    return {name: tally.report() for name, tally in tallies.items()}


def presentations(count: int, opencv_count: int, seed: int) -> dict[str, Any]:
    size = SIZES["1080p"]
    rng = np.random.default_rng(seed + 1000)
    scenes = [background(size, rng) for _ in range(4)]
    result: dict[str, Any] = {}
    for name in decoders():
        result[name] = {
            "presented": 0,
            "read": 0,
            "frames": 0,
            "frames_read": 0,
            "strong_glare_presented": 0,
            "strong_glare_read": 0,
            "strong_glare_frozen_presented": 0,
            "strong_glare_frozen_read": 0,
        }
    for p in range(count):
        text = payload(rng)
        look = random_look(rng, size)
        frames = presentation(text, size, rng, 30, scenes[p % 4], look)
        strong = look.glare >= STRONG_GLARE
        # Stress case: the same presentation with the glare frozen in the frame whatever the carrier does.
        frozen = (
            presentation(text, size, np.random.default_rng(seed + p), 30, scenes[p % 4], look, glare_moves=False)
            if strong
            else []
        )
        for name, decoder in decoders().items():
            if name == "opencv" and p >= opencv_count:
                continue
            hits = read_count(decoder, text, frames)
            entry = result[name]
            entry["presented"] += 1
            entry["read"] += hits > 0
            entry["frames"] += len(frames)
            entry["frames_read"] += hits
            if strong:
                entry["strong_glare_presented"] += 1
                entry["strong_glare_read"] += hits > 0
                entry["strong_glare_frozen_presented"] += 1
                entry["strong_glare_frozen_read"] += read_count(decoder, text, frozen) > 0
    for entry in result.values():
        entry["success_per_presentation"] = round(entry["read"] / max(1, entry["presented"]), 4)
        entry["success_per_frame"] = round(entry["frames_read"] / max(1, entry["frames"]), 4)
        others = entry["presented"] - entry["strong_glare_presented"]
        others_read = entry["read"] - entry["strong_glare_read"]
        entry["success_per_presentation_without_strong_glare"] = round(others_read / max(1, others), 4)
    return result


def read_count(decoder: Decoder, text: str, frames: list[np.ndarray]) -> int:
    return sum(text in decoder(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)) for f in frames)


def mixed_video(path: Path, seed: int) -> Path:
    """Three seconds at 1080p: presentations of codes and empty counter, as a camera would see them."""
    size = SIZES["1080p"]
    rng = np.random.default_rng(seed + 2000)
    scene = background(size, rng)
    parts = [
        presentation(payload(rng), size, rng, 30, scene) if i % 3 else still(None, size, 1.0, seed=i) for i in range(3)
    ]
    return write_video(path, concat(*parts), 30.0)


def pipeline(video: Path, passes: int = 3) -> dict[str, Any]:
    """capture + decode as CameraScanner does it, frame after frame on one core, motion gate off;
    then the scanner's own two threads on the same file played at 30 fps."""
    scanner = CameraScanner(str(video), motion_threshold=0)
    source = parse_source(str(video))
    frames, capture_s, started = 0, 0.0, time.perf_counter()
    for _ in range(passes):
        cap = open_capture(source, None, None)
        jpeg_passthrough(cap, source)
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            capture_s += time.perf_counter() - t0
            if not ok:
                break
            scanner.process(frame, time.monotonic())
            frames += 1
        cap.release()
    elapsed = time.perf_counter() - started
    decoded_bgr = _opencv_capture_ms(video)
    live = CameraScanner(str(video), motion_threshold=0, dedupe_window=0.5)
    ran = run_scanner(live, seconds=3.0)
    return {
        "sustained_fps_capture_and_decode": round(frames / elapsed, 1),
        "ms_per_frame": round(elapsed / frames * 1000, 2),
        "capture_ms_per_frame_jpeg_passthrough": round(capture_s / frames * 1000, 3),
        "capture_ms_per_frame_decoded_by_opencv": decoded_bgr,
        "scanner_at_30fps_decoded_fps": round(ran["decoded"] / ran["seconds"], 1),
        "scanner_at_30fps_dropped": live.dropped,
        "scanner_at_30fps_cpu_percent": round(100 * ran["cpu_seconds"] / ran["seconds"], 1),
    }


def _opencv_capture_ms(video: Path) -> float:
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames, started = 0, time.perf_counter()
    while cap.read()[0]:
        frames += 1
    cap.release()
    return round((time.perf_counter() - started) / max(1, frames) * 1000, 2)


def run_scanner(scanner: CameraScanner, seconds: float) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    scanner.start(lambda read: None, lambda event: None)
    time.sleep(seconds)
    scanner.stop()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "captured": scanner.stats.captured,
        "decoded": scanner.stats.decoded,
        "skipped": scanner.stats.skipped,
    }


def static_scene(path: Path, seconds: float) -> dict[str, Any]:
    video = write_video(path, still(None, SIZES["1080p"], 2.0, seed=7), 30.0)  # replayed in a loop
    ran = run_scanner(CameraScanner(str(video), backoff_first=0.0, backoff_max=0.0), seconds)
    gated = CameraScanner(str(video))
    jpegs = [
        cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1] for f in still(None, SIZES["1080p"], 0.2, seed=8)
    ]
    gated.process(jpegs[0], 0.0)
    t0 = time.perf_counter()
    for jpeg in jpegs[1:] * 5:
        gated.process(jpeg, 0.0)
    gate_ms = (time.perf_counter() - t0) / (len(jpegs[1:]) * 5) * 1000
    return {
        "cpu_percent_of_one_core": round(100 * ran["cpu_seconds"] / ran["seconds"], 1),
        "frames_captured": ran["captured"],
        "frames_decoded": ran["decoded"],
        "frames_skipped_by_motion_gate": ran["skipped"],
        "motion_gate_ms_per_unchanged_jpeg_frame": round(gate_ms, 3),
        "skipped_frames_not_decoded": gated.stats.skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="frames per resolution (20%% without a code)")
    parser.add_argument("--presentations", type=int, default=200, help="fewer cannot tell 98 %% from 99 %%")
    parser.add_argument("--opencv-presentations", type=int, default=10, help="OpenCV is slow: fewer")
    parser.add_argument("--static-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, for every figure
    cv2.setNumThreads(1)
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "zxing_cpp": _zxing_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores_used": 1,
        },
        "set": {"frames_per_resolution": args.frames, "no_code_share": NO_CODE_SHARE, "seed": args.seed},
    }
    out["per_frame"] = {label: per_frame(size, args.frames, args.seed) for label, size in SIZES.items()}
    out["presentations_1080p"] = presentations(args.presentations, args.opencv_presentations, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out["pipeline_1080p"] = pipeline(mixed_video(Path(tmp) / "mixed.avi", args.seed))
        out["static_scene_1080p"] = static_scene(Path(tmp) / "static.avi", args.static_seconds)
    print(json.dumps(out, indent=2))


def _zxing_version() -> str:
    try:
        from importlib.metadata import version

        return version("zxing-cpp")
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
