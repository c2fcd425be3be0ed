"""drivers.camera: generated videos read through the real OpenCV capture path (cv2.VideoCapture on
MJPG .avi files and on an HTTP MJPEG stream from 127.0.0.1), never a mocked capture."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers import camera, open_scanner
from drivers.camera import CameraScanner, Dedupe, LatestFrame, MotionGate, crop_roi, describe, parse_source
from drivers.errors import DriverUnavailable
from terminal.config import Config
from terminal.model import QrRead
from tests.fixtures.events import Recorder
from tests.fixtures.video import Look, MjpegServer, background, blank, concat, render, still, write_video
from tests.waiting import wait_until

SIZE = (960, 540)
FPS = 30.0
WAIT = 10.0  # seconds any one expected event may take on a loaded machine


class Events(Recorder[QrRead]):
    def __init__(self) -> None:
        super().__init__("QrRead", WAIT)
        self.reads = self.items

    def read(self, timeout: float = WAIT) -> str:
        return self.next(timeout).text

    def all_reads(self) -> list[str]:
        return [read.text for read in self.drain()]


@contextmanager
def running(source: str, **options: Any) -> Iterator[tuple[CameraScanner, Events]]:
    scanner = CameraScanner(source, **options)
    events = Events()
    scanner.start(events.reads.put, events.on_reader)
    try:
        yield scanner, events
    finally:
        scanner.stop()


def wait_until_played(scanner: CameraScanner, frames: int, timeout: float = WAIT) -> None:
    """At least ``frames`` captured, and every captured frame dealt with by the decode thread:
    decoded, skipped by the motion gate, or dropped from the slot for a newer one."""
    stats = scanner.stats
    wait_until(lambda: stats.captured >= frames, timeout, f"{frames} frames captured")
    wait_until(
        lambda: stats.decoded + stats.skipped + scanner.dropped >= stats.captured,
        timeout,
        "the decode thread to finish the frames captured",
    )


@pytest.fixture
def open_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time a scanner tried to open its source (its reconnect attempts)."""
    attempts: list[str] = []
    real = camera.open_capture

    def counting(source: Any, *args: Any) -> Any:
        attempts.append(describe(source))
        return real(source, *args)

    monkeypatch.setattr(camera, "open_capture", counting)
    return attempts


# -- sources and the registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "kind", "target"),
    [
        ("0", "device", 0),
        ("/dev/video2", "device", "/dev/video2"),
        ("counter.avi", "file", "counter.avi"),
        ("rtsp://user:secret@10.0.0.5/stream1", "url", "rtsp://user:secret@10.0.0.5/stream1"),
        ("http://127.0.0.1:8080/video.mjpg", "url", "http://127.0.0.1:8080/video.mjpg"),
    ],
)
def test_sources_are_told_apart(arg: str, kind: str, target: object) -> None:
    assert parse_source(arg) == (source := parse_source(arg))
    assert (source.kind, source.target) == (kind, target)


def test_status_never_shows_stream_credentials() -> None:
    assert describe(parse_source("rtsp://user:secret@10.0.0.5/stream1")) == "rtsp://10.0.0.5/stream1"
    assert CameraScanner("rtsp://u:p@cam/s").name == "camera:rtsp://cam/s"


def test_registry_opens_every_scanner_kind_with_the_config_options() -> None:
    options = Config().scanner.driver_options()
    for spec in ("camera:/dev/video0", "camera:clip.avi", "wedge:/dev/input/event3", "serial:/dev/ttyACM0", "sim:"):
        scanner = open_scanner(spec, **options)
        assert scanner.name == spec
    with pytest.raises(DriverUnavailable, match="unknown scanner kind"):
        open_scanner("laser:/dev/x")
    with pytest.raises(DriverUnavailable, match="names no device"):
        open_scanner("camera:")
    with pytest.raises(DriverUnavailable, match="layout"):
        open_scanner("wedge:/dev/input/event3", layout="dvorak")


def test_the_config_names_the_same_formats_and_layouts_as_the_drivers() -> None:
    from typing import get_args

    from drivers.decode import FORMATS
    from drivers.wedge import LAYOUTS, TERMINATOR_KEYS
    from terminal.config import BarcodeFormat, ScannerSection

    assert set(get_args(BarcodeFormat)) == set(FORMATS)
    assert set(get_args(ScannerSection.model_fields["layout"].annotation)) == set(LAYOUTS)
    terminators = ScannerSection.model_fields["terminators"].annotation
    assert set(get_args(get_args(terminators)[0])) == set(TERMINATOR_KEYS)


# -- frames through the real capture path ---------------------------------------------------------


def _presentations(texts: list[str], looks: list[Look], seconds: float = 0.5) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    scene = background(SIZE, rng)
    frames = blank(SIZE, 0.3)
    for text, look in zip(texts, looks, strict=True):
        for i in range(round(seconds * FPS)):
            shaken = replace(look, center=(0.5 + 0.003 * i, 0.5 + 0.002 * (i % 3)))
            frames.append(render(text, SIZE, shaken, rng, scene))
        frames += blank(SIZE, 0.4, seed=len(frames))
    return frames


@pytest.mark.slow
def test_degraded_codes_in_a_video_file_are_each_read_once(tmp_path: Path) -> None:
    scale = SIZE[1] / 1080
    looks = {
        "defocus": Look(module_px=12 * scale, blur_sigma=1.2, noise=3, jpeg_quality=70),
        "motion": Look(module_px=12 * scale, motion_px=4, motion_angle=60, noise=3),
        "perspective": Look(module_px=11 * scale, tilt=(25, -20), angle=40, noise=3),
        "glare": Look(module_px=12 * scale, glare=0.4, noise=3),
        "jpeg": Look(module_px=10 * scale, jpeg_quality=35, noise=5),
        "phone": Look(module_px=12 * scale, phone=True, angle=-15, tilt=(10, 12), noise=3),
    }
    texts = [f"TPM1:{name}-0123456789" for name in looks]
    video = write_video(tmp_path / "counter.avi", _presentations(texts, list(looks.values())), FPS)
    with running(str(video), dedupe_window=0.3) as (scanner, events):
        got = [events.read() for _ in texts]
        assert got == texts
        wait_until_played(scanner, 1)
    assert events.history[0].kind == "added"
    assert "960x540" in events.history[0].detail and "MJPG (JPEG passthrough)" in events.history[0].detail


def test_frames_decoded_by_opencv_take_the_same_path() -> None:
    # Sources in other codecs (H.264 over RTSP) arrive as decoded BGR frames, not JPEG bytes.
    scanner = CameraScanner("unused.avi", dedupe_window=1.0)
    frames = still("TPM1:decoded", SIZE, 0.2)
    assert scanner.process(frames[0], 0.0) == ["TPM1:decoded"]
    assert scanner.process(frames[1], 0.1) == []
    assert scanner.stats.decoded == 1 and scanner.stats.skipped == 1


@pytest.mark.slow
def test_the_same_code_held_two_seconds_is_one_read(tmp_path: Path) -> None:
    frames = concat(blank(SIZE, 0.3), still("TPC1:held-for-two-seconds", SIZE, 2.0, seed=1), blank(SIZE, 0.3))
    video = write_video(tmp_path / "held.avi", frames, FPS)
    # The window (1 s) is shorter than the hold: it counts from the last sighting, not the first.
    # motion_threshold=0 decodes every frame, so the code really is seen ~60 times.
    with running(str(video), dedupe_window=1.0, motion_threshold=0) as (scanner, events):
        assert events.read() == "TPC1:held-for-two-seconds"
        events.event("removed", "stream ended")
        scanner.stop()
    assert events.all_reads() == []
    assert scanner.stats.decoded >= 40


@pytest.mark.slow
def test_the_same_code_shown_again_later_is_a_new_read(tmp_path: Path) -> None:
    code = still("TPC1:twice", SIZE, 0.5, seed=1)
    video = write_video(tmp_path / "twice.avi", concat(code, blank(SIZE, 1.5), code, blank(SIZE, 0.3)), FPS)
    with running(str(video), dedupe_window=1.0) as (_scanner, events):
        assert [events.read(), events.read()] == ["TPC1:twice", "TPC1:twice"]


@pytest.mark.slow
def test_a_static_scene_is_not_decoded_again(tmp_path: Path) -> None:
    video = write_video(tmp_path / "idle.avi", concat(blank(SIZE, 1.5), still("TPM1:x", SIZE, 1.0)), FPS)
    with running(str(video)) as (scanner, events):
        assert events.read() == "TPM1:x"
        wait_until_played(scanner, 75)
    stats = scanner.stats
    assert stats.decoded + stats.skipped + scanner.dropped >= 70
    assert stats.decoded <= 6, stats  # the first frame, the code arriving, and little else
    assert stats.skipped >= 25, stats
    # Unchanged for idle_after (1 s): idle_fps (10) frames a second are looked at, the rest dropped.
    assert scanner.dropped >= 3, (stats, scanner.dropped)


def test_region_of_interest(tmp_path: Path) -> None:
    frames = still("TPM1:left-side", SIZE, 0.6, look=Look(module_px=10 * SIZE[1] / 1080, center=(0.25, 0.5)))
    video = write_video(tmp_path / "left.avi", frames, FPS)
    with running(str(video), roi=(0.5, 0.0, 0.5, 1.0), realtime=False) as (scanner, events):
        events.event("removed", "stream ended")
        assert events.all_reads() == []
    with running(str(video), roi=(0.0, 0.0, 0.5, 1.0), realtime=False) as (scanner, events):
        assert events.read() == "TPM1:left-side"
    assert crop_roi(np.zeros((100, 200)), (0.5, 0.25, 0.5, 0.5)).shape == (50, 100)


# -- sources that fail, end and come back ---------------------------------------------------------


@pytest.mark.slow
def test_a_file_that_ends_and_reappears(tmp_path: Path) -> None:
    path = tmp_path / "feed.avi"
    write_video(path, concat(still("TPM1:first", SIZE, 0.4), blank(SIZE, 0.2)), FPS)
    with running(str(path), backoff_first=0.1, backoff_max=0.3) as (_scanner, events):
        assert events.read() == "TPM1:first"
        events.event("removed", "stream ended")
        path.unlink()
        events.event("error", "video file not found")
        staged = write_video(tmp_path / "staged.avi", concat(still("TPM1:second", SIZE, 0.4), blank(SIZE, 0.2)), FPS)
        os.replace(staged, path)
        events.event("added")
        assert events.read() == "TPM1:second"


def test_a_stream_that_dies_midway_and_comes_back() -> None:
    server = MjpegServer(still("TPP1:BEFORE-OUTAGE", SIZE, 0.5), fps=FPS)
    server.start()
    try:
        with running(server.url, backoff_first=0.1, backoff_max=0.3, timeout=2.0) as (_scanner, events):
            events.event("added", "url")
            assert events.read() == "TPP1:BEFORE-OUTAGE"
            server.stop()
            events.event("removed", "camera lost")
            events.event("error", "cannot open")  # reconnecting while the camera is away: one event
            server.start(still("TPP1:AFTER-OUTAGE", SIZE, 0.5, seed=2))
            events.event("added", "url")
            assert events.read() == "TPP1:AFTER-OUTAGE"
    finally:
        server.stop()


def test_a_missing_camera_is_a_status_not_a_crash(open_attempts: list[str]) -> None:
    with running("/dev/video-missing", backoff_first=0.1, backoff_max=0.2) as (scanner, events):
        events.event("error", "no such camera device")
        wait_until(lambda: len(open_attempts) >= 4, WAIT, "a few reconnect attempts")
    assert [e.kind for e in events.history] == ["error"]  # one event per outage, not one per retry
    assert scanner.stats.opened == 0


def test_a_source_that_opens_but_gives_no_frame_is_one_error_never_added(
    tmp_path: Path, open_attempts: list[str]
) -> None:
    import cv2

    empty = tmp_path / "empty.avi"  # OpenCV opens it; it holds no frame (as a camera another program holds)
    cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 360)).release()
    with running(str(empty), backoff_first=0.05, backoff_max=0.1) as (scanner, events):
        events.event("error", "the file holds no frame")
        wait_until(lambda: len(open_attempts) >= 4, WAIT, "a few reopen attempts")
    # not 'added' then 'removed' at every attempt: it never worked, and it is said once
    assert [(e.kind, e.detail) for e in events.history] == [("error", "the file holds no frame")]
    assert scanner.stats.opened >= 4 and scanner.stats.captured == 0


def test_a_camera_index_with_no_device_node_names_the_node() -> None:
    from drivers.camera import open_capture, parse_source
    from drivers.errors import DriverUnavailable

    index = next(n for n in range(40, 100) if not Path(f"/dev/video{n}").exists())
    with pytest.raises(DriverUnavailable, match=f"no such camera device: /dev/video{index}$"):
        open_capture(parse_source(str(index)), None, None)


def test_stop_is_prompt() -> None:
    with running("/dev/video-missing", backoff_first=5, backoff_max=5) as (scanner, events):
        events.event("error")
        started = time.monotonic()
        scanner.stop()
    assert time.monotonic() - started < 1.0


# -- newest frame only ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_slow_decoder_drops_old_frames_instead_of_queueing_them(tmp_path: Path) -> None:
    video = write_video(tmp_path / "busy.avi", blank(SIZE, 2.0), FPS)

    def slow(gray: np.ndarray, formats: object) -> list[str]:
        time.sleep(0.1)  # three frame periods: the slow decoder is what this test is about
        return []

    with running(str(video), decoder=slow, motion_threshold=0) as (scanner, events):
        events.event("removed", "stream ended")
    stats = scanner.stats
    assert stats.captured >= 60
    assert stats.decoded < stats.captured / 2
    assert scanner.dropped >= stats.captured - stats.decoded - 2


def test_latest_frame_slot_keeps_one_frame() -> None:
    slot = LatestFrame()
    for value in (1, 2, 3):
        slot.put(np.full((2, 2), value, np.uint8))
    frame = slot.take(timeout=0.1)
    assert frame is not None and frame[0, 0] == 3
    assert slot.dropped == 2
    assert slot.take(timeout=0.01) is None


def test_motion_gate_ignores_sensor_noise_and_sees_a_code() -> None:
    gate = MotionGate(threshold=0.5)
    quiet = blank(SIZE, 0.2, seed=4)
    assert gate.changed(quiet[0])
    assert not any(gate.changed(f) for f in quiet[1:])
    with_code = still("TPM1:hello", SIZE, 0.1, look=Look(module_px=4, noise=2))[0]
    assert gate.changed(with_code)
    assert MotionGate(threshold=0).changed(quiet[1])


def test_dedupe_counts_the_window_from_the_last_sighting() -> None:
    d = Dedupe(window=1.0)
    assert d.new(["A"], 0.0) == ["A"]
    assert d.new(["A"], 0.9) == []
    assert d.new(["A", "B"], 1.8) == ["B"]  # A was seen 0.9 s ago
    d.still(2.5)  # an unchanged frame: A and B are still in view
    assert d.new([], 3.0) == []
    assert d.new(["A"], 3.4) == []
    assert d.new(["B"], 4.6) == ["B"]


def test_progress_for_the_watchdog_moves_while_the_camera_is_missing() -> None:
    with running("/dev/video-missing", backoff_first=0.1, backoff_max=0.2) as (scanner, events):
        events.event("error")
        before = scanner.last_progress
        wait_until(lambda: scanner.last_progress > before, WAIT, "the capture loop to go round")
        assert scanner.last_progress > before


# -- camera controls --------------------------------------------------------------------------------


class _Camera:
    """A capture that keeps what it is told (a UVC camera with every control), or ignores ``deaf`` ones."""

    def __init__(self, deaf: tuple[int, ...] = ()) -> None:
        self.deaf = deaf
        self.props: dict[int, float] = {}

    def set(self, prop: int, value: float) -> bool:
        if prop in self.deaf:
            return False
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)


def test_controls_are_asked_in_order_manual_mode_before_its_value() -> None:
    import cv2

    asks = camera.control_requests(camera.Controls(exposure=80, focus=30, gain=4))
    assert [(n, p) for n, p, _ in asks] == [
        ("auto_exposure", cv2.CAP_PROP_AUTO_EXPOSURE),
        ("exposure", cv2.CAP_PROP_EXPOSURE),
        ("autofocus", cv2.CAP_PROP_AUTOFOCUS),
        ("focus", cv2.CAP_PROP_FOCUS),
        ("gain", cv2.CAP_PROP_GAIN),
    ]
    assert [v for _, _, v in asks] == [camera.AUTO_EXPOSURE_MANUAL, 80.0, 0.0, 30.0, 4.0]
    auto = camera.control_requests(camera.Controls(exposure="auto", focus="auto"))
    assert [(n, v) for n, _, v in auto] == [("auto_exposure", camera.AUTO_EXPOSURE_AUTO), ("autofocus", 1.0)]
    assert camera.control_requests(camera.Controls()) == []


def test_a_camera_that_takes_the_controls_reports_them_applied() -> None:
    import cv2

    cam = _Camera()
    reports = camera.apply_controls(cam, camera.Controls(exposure=80, focus=30))  # type: ignore[arg-type]
    assert all(r.applied for r in reports)
    assert cam.props[cv2.CAP_PROP_EXPOSURE] == 80 and cam.props[cv2.CAP_PROP_FOCUS] == 30
    deaf = camera.apply_controls(_Camera(deaf=(cv2.CAP_PROP_FOCUS,)), camera.Controls(focus=30))  # type: ignore[arg-type]
    assert [(r.name, r.applied) for r in deaf] == [("autofocus", True), ("focus", False)]
    assert str(deaf[1]) == "focus 30 ignored (reports 0)"


def test_a_video_source_that_ignores_the_controls_is_reported_not_a_crash(tmp_path: Path) -> None:
    # OpenCV's FFmpeg capture of a file has no exposure, focus or gain: like a camera without them.
    video = write_video(tmp_path / "controls.avi", still("TPM1:controls", SIZE, 0.5), FPS)
    controls = camera.Controls(exposure=80, focus=30, gain=4)
    with running(str(video), controls=controls, resolution=(1280, 720), fps=15.0) as (scanner, events):
        assert events.read() == "TPM1:controls"
    reports = {r.name: r for r in scanner.control_reports}
    assert set(reports) == {"width", "height", "fps", "auto_exposure", "exposure", "autofocus", "focus", "gain"}
    assert not reports["exposure"].applied and not reports["focus"].applied
    assert reports["width"].reported == SIZE[0] and not reports["width"].applied
    assert reports["fps"].reported == FPS
    added = events.history[0]
    assert (
        added.kind == "added"
        and "exposure 80 ignored" in added.detail
        and "width 1280 ignored (reports 960)" in added.detail
    )


def test_each_camera_gets_its_own_settings_from_the_config() -> None:
    from terminal.config import validate

    cfg = validate(
        {
            "scanner": {
                "devices": ["camera:/dev/video0", "camera:/dev/video2"],
                "resolution": [1280, 720],
                "cameras": {
                    "camera:/dev/video2": {"resolution": [1920, 1080], "fps": 30, "exposure": 60, "focus": "auto"}
                },
            }
        }
    )
    first = open_scanner("camera:/dev/video0", **cfg.scanner.driver_options())
    second = open_scanner("camera:/dev/video2", **cfg.scanner.driver_options())
    assert isinstance(first, CameraScanner) and isinstance(second, CameraScanner)
    assert first.resolution == (1280, 720) and first.controls == camera.Controls()
    assert second.resolution == (1920, 1080) and second.fps == 30
    assert second.controls == camera.Controls(exposure=60, focus="auto")


@pytest.mark.parametrize(
    ("cameras", "key"),
    [
        ({"/dev/video0": {}}, "scanner.cameras"),
        ({"camera:/dev/video0": {"exposure": -5}}, "scanner.cameras.camera:/dev/video0.exposure"),
        ({"camera:/dev/video0": {"focus": "manual"}}, "scanner.cameras.camera:/dev/video0.focus"),
        ({"camera:/dev/video0": {"zoom": 2}}, "scanner.cameras.camera:/dev/video0.zoom"),
    ],
)
def test_bad_camera_settings_are_refused_naming_the_key(cameras: dict[str, Any], key: str) -> None:
    from terminal.config import validate
    from terminal.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        validate({"scanner": {"cameras": cameras}})
    assert caught.value.key.startswith(key)
