"""Benchmark: drivers.decode against raw zxing-cpp (its default options), on the tuning set and on the
measuring set, per resolution and per kind of frame, measured in the same run on one core.

Prints JSON.

    .venv/bin/python bench/bench_qr_sets.py [--frames 300] [--presentations 60] [--seed 1]

Figures, for each set (``tuning``: bench/qr_sets.py; ``measuring``: bench/qr_measure_set.py, never
used to tune) and each of 480p, 720p, 1080p:
  per_frame.<set>.<res>.<category>   {ours, zxing, known_corners, n}: share of frames with a code read by
                                     each; known_corners is the ceiling, not a decoder: zxing-cpp told where
                                     the code was drawn (tests.fixtures.video.read_at_known_corners)
  per_frame.<set>.<res>.ours_of_known_corners  of the frames the ceiling reads, the share ours reads
  per_frame.<set>.<res>.false_positives, .no_code_ms_median, .code_ms_median, .time_ratio (ours / zxing),
                                     the same in CPU time (.no_code_cpu_ms_median, ...: the machine may be shared),
                                     .cpu_ms_p95 and .cpu_ms_max over all frames (the retries' worst cases)
  categories code_in_view / code_partly_outside: whether the whole code lies inside the frame
  presentations_1080p.<set>          one second (30 frames) of a code held up: read in any frame,
                                     ours with FrameStack (several frames combined), zxing frame by frame,
                                     and the ceiling (known_corners: any frame read when told where the code is)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import qr_measure_set as measuring
from bench import qr_sets as tuning
from drivers.decode import FrameStack, decode
from tests.fixtures.video import Look, Size, background, presented, read_at_known_corners, render

SIZES: dict[str, Size] = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
NO_CODE_SHARE = 0.2
Frame = tuple[str | None, Look, np.ndarray]


def raw_zxing(gray: np.ndarray) -> list[str]:
    """zxing-cpp with its default options (downscaling, rotation, inverted pass), searching for QR codes."""
    return [r.text for r in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode) if r.valid]


def tuning_frames(size: Size, count: int, seed: int) -> list[Frame]:
    rng = np.random.default_rng(seed)
    scenes = [background(size, rng) for _ in range(4)]
    out: list[Frame] = []
    for i in range(count):
        look = tuning.tuning_look(rng, size)
        text = None if rng.random() < NO_CODE_SHARE else tuning.tuning_payload(rng)
        if text is not None:
            look = tuning.fit(look, text, size)
        out.append((text, look, render(text, size, look, rng, scenes[i % 4])))
    return out


def timed(fn: Callable[[np.ndarray], list[str]], gray: np.ndarray) -> tuple[list[str], float, float]:
    """What ``fn`` read, its wall time and its CPU time (this thread's: what a loaded machine's other
    work does not add to; both in s)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    got = fn(gray)
    return got, time.perf_counter() - t0, time.thread_time() - c0


def ms(values: list[float], q: float = 50) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")


def per_frame(frames: list[Frame]) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    fp = {"ours": 0, "zxing": 0}
    times: dict[str, dict[str, list[float]]] = {n: {"code": [], "empty": []} for n in fp}
    cpu: dict[str, dict[str, list[float]]] = {n: {"code": [], "empty": []} for n in fp}
    both = {"known_corners": 0, "ours": 0}  # frames the ceiling reads, and of those the ones ours reads
    for text, look, bgr in frames:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        got = {}
        for name, fn in (("ours", decode), ("zxing", raw_zxing)):
            got[name], seconds, cpu_seconds = timed(fn, gray)
            times[name]["code" if text else "empty"].append(seconds)
            cpu[name]["code" if text else "empty"].append(cpu_seconds)
            fp[name] += any(t != text for t in got[name])
        if text is None:
            continue
        size = (gray.shape[1], gray.shape[0])
        ceiling = read_at_known_corners(gray, text, look)
        both["known_corners"] += ceiling
        both["ours"] += ceiling and text in got["ours"]
        for cat in tuning.categories(look, tuning.version_of(text), tuning.in_frame(look, text, size)):
            entry = counts.setdefault(cat, {"n": 0, "ours": 0, "zxing": 0, "known_corners": 0})
            entry["n"] += 1
            entry["ours"] += text in got["ours"]
            entry["zxing"] += text in got["zxing"]
            entry["known_corners"] += ceiling
    out: dict[str, Any] = {
        cat: {"n": c["n"]} | {k: round(c[k] / c["n"], 3) for k in ("ours", "zxing", "known_corners")}
        for cat in tuning.CATEGORY_NAMES
        if (c := counts.get(cat))
    }
    out["ours_of_known_corners"] = round(both["ours"] / max(1, both["known_corners"]), 3)
    all_ours = times["ours"]["code"] + times["ours"]["empty"]
    all_zx = times["zxing"]["code"] + times["zxing"]["empty"]
    out["false_positives"] = fp
    out["frames_without_code"] = len(times["ours"]["empty"])
    out["no_code_ms_median"] = {n: ms(times[n]["empty"]) for n in fp}
    out["code_ms_median"] = {n: ms(times[n]["code"]) for n in fp}
    out["time_ratio_ours_to_zxing"] = round(sum(all_ours) / max(1e-9, sum(all_zx)), 2)
    out["no_code_cpu_ms_median"] = {n: ms(cpu[n]["empty"]) for n in fp}
    out["code_cpu_ms_median"] = {n: ms(cpu[n]["code"]) for n in fp}
    out["cpu_ms_p95"] = {n: ms(cpu[n]["code"] + cpu[n]["empty"], 95) for n in fp}
    out["cpu_ms_max"] = {n: ms(cpu[n]["code"] + cpu[n]["empty"], 100) for n in fp}
    cpu_ours, cpu_zx = (sum(cpu[n]["code"]) + sum(cpu[n]["empty"]) for n in ("ours", "zxing"))
    out["cpu_time_ratio_ours_to_zxing"] = round(cpu_ours / max(1e-9, cpu_zx), 2)
    return out


def presentations(which: str, count: int, seed: int) -> dict[str, Any]:
    size = SIZES["1080p"]
    if which == "tuning":
        rng = np.random.default_rng(seed + 1000)
        scenes = [background(size, rng) for _ in range(3)]
    else:
        rng = np.random.default_rng(measuring.SEED_BASE + seed + 1000)
        scenes = [measuring.scene(size, rng) for _ in range(3)]
    read = {"ours": 0, "ours_single_frames": 0, "zxing": 0, "known_corners": 0}
    frames_read = {"ours": 0, "zxing": 0}
    total = 0
    for p in range(count):
        if which == "tuning":
            text = tuning.tuning_payload(rng)
            look = tuning.fit(tuning.tuning_look(rng, size), text, size)
        else:
            text = measuring.payload(rng)
            look = measuring.fitted(measuring.look(rng, size), text, size)
        shown = presented(text, size, rng, 30, scenes[p % 3], look)
        clip = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for _look, f in shown]
        stack = FrameStack()
        ours = [text in stack.decode(g) for g in clip]
        single = [text in decode(g) for g in clip]
        zx = [text in raw_zxing(g) for g in clip]
        read["ours"] += any(ours)
        read["ours_single_frames"] += any(single)
        read["zxing"] += any(zx)
        read["known_corners"] += any(
            read_at_known_corners(g, text, at) for g, (at, _f) in zip(clip, shown, strict=True)
        )
        frames_read["ours"] += sum(ours)
        frames_read["zxing"] += sum(zx)
        total += len(clip)
    return {
        "presented": count,
        "per_presentation": {k: round(v / max(1, count), 3) for k, v in read.items()},
        "per_frame": {k: round(v / max(1, total), 3) for k, v in frames_read.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per set and resolution")
    parser.add_argument("--presentations", type=int, default=60, help="per set, at 1080p")
    parser.add_argument("--sets", default="tuning,measuring")
    parser.add_argument("--sizes", default="480p,720p,1080p")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    out: dict[str, Any] = {
        "set": {"frames": args.frames, "no_code_share": NO_CODE_SHARE, "seed": args.seed, "cores_used": 1},
        "versions": {"opencv": cv2.__version__, "zxing_cpp": _version("zxing-cpp")},
        "per_frame": {},
        "presentations_1080p": {},
    }
    for which in args.sets.split(","):
        out["per_frame"][which] = {}
        for label in args.sizes.split(","):
            size = SIZES[label]
            frames = (
                tuning_frames(size, args.frames, args.seed)
                if which == "tuning"
                else measuring.frames(size, args.frames, NO_CODE_SHARE, args.seed)
            )
            out["per_frame"][which][label] = per_frame(frames)
            print(f"{which} {label}: done", file=sys.stderr)
        if args.presentations:
            out["presentations_1080p"][which] = presentations(which, args.presentations, args.seed)
    print(json.dumps(out, indent=1))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
