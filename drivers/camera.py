"""Camera QR scanner: OpenCV capture (the only module that opens a ``cv2.VideoCapture``), then
``drivers.decode.decode`` on the frames worth decoding.

    CameraScanner("/dev/video0")          a V4L2 device (also "0", a device index)
    CameraScanner("counter.avi")          a video file, played at its own frame rate (demo, tests)
    CameraScanner("rtsp://cam/stream")    an RTSP or HTTP(S) stream (an IP camera, an MJPEG server)

Two threads per scanner:

* the capture thread opens the source, reads frames as they come and keeps only the newest one
  (a slot, never a queue: when decoding falls behind, older frames are dropped and counted);
  a Motion-JPEG source (what USB cameras send at 1080p, and MJPEG files and HTTP streams) is read
  undecoded, so reading costs next to nothing and a frame is only decoded when it is looked at;
  a source that cannot be opened, a camera that stops delivering and a file that ended all become
  a ``ReaderEvent`` ("error" or "removed", once per outage) and a reopen after a backoff that doubles
  up to ``backoff_max``; nothing here ends the thread but ``stop()``;
* the decode thread takes the newest frame, crops it to the region of interest, skips it when it
  looks like the last frame decoded (the motion gate: a 1/8-scale thumbnail compared cell by cell),
  decodes it, and reports each text once per
  presentation: a text seen again within ``dedupe_window`` seconds of its last sighting is the same
  read (a code held up for ten seconds is one read; taken away and shown again later, a new one).
  After ``idle_after`` seconds without change it looks at ``idle_fps`` frames a second only, until
  something moves: an idle camera costs a few percent of one core (docs/performance.md).

Camera controls (``Controls``: exposure, focus, gain; and resolution, frame rate) are set through
OpenCV's capture properties each time the source is opened, and read back: ``control_reports`` and the
"added" event say what the camera made of each; a camera that ignores one is reported, not an error.

Decoded texts are never logged: they may be one-time payment codes (or a payment card number,
which ``terminal.scan`` refuses later).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drivers.decode import DEFAULT_FORMATS, FrameStack, check_formats
from drivers.errors import DriverUnavailable
from drivers.sinks import deliver, reader_event
from terminal.backoff import Backoff
from terminal.model import QrRead
from terminal.ports import QrSink, ReaderSink

log = logging.getLogger(__name__)

Roi = tuple[float, float, float, float]  # x, y, width, height as fractions of the frame
FrameDecoder = Callable[[np.ndarray, Sequence[str]], list[str]]
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


# -- where frames come from -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # "device" | "file" | "url"
    target: int | str


def parse_source(arg: str) -> Source:
    """``0`` or ``/dev/video0`` is a device, a URL is a stream, anything else a video file."""
    text = arg.strip()
    if not text:
        raise DriverUnavailable("camera: no source given (e.g. camera:/dev/video0, camera:0, camera:file.avi)")
    if text.isdigit():
        return Source("device", int(text))
    if text.lower().startswith(URL_SCHEMES):
        return Source("url", text)
    if text.startswith("/dev/"):
        return Source("device", text)
    return Source("file", text)


def device_node(target: int | str) -> str:
    """The V4L2 node of a camera device: ``camera:2`` is ``/dev/video2``, as OpenCV opens it."""
    return f"/dev/video{target}" if isinstance(target, int) else target


def describe(source: Source) -> str:
    """The source for status lines: a URL without its credentials (user:password@ is common in RTSP)."""
    if source.kind == "url":
        scheme, _, rest = str(source.target).partition("://")
        host = rest.rpartition("@")[2] if "@" in rest.split("/", 1)[0] else rest
        return f"{scheme}://{host}"
    return str(source.target)


def open_capture(
    source: Source, resolution: tuple[int, int] | None, fps: float | None, timeout: float = 5.0
) -> cv2.VideoCapture:
    """An opened capture; DriverUnavailable (with the reason) when OpenCV cannot open it."""
    if source.kind == "file" and not os.path.exists(str(source.target)):
        raise DriverUnavailable(f"video file not found: {source.target}")
    if source.kind == "device" and not os.path.exists(node := device_node(source.target)):
        raise DriverUnavailable(f"no such camera device: {node}")
    if source.kind == "url":
        ms = int(timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(str(source.target), cv2.CAP_FFMPEG, params)
    elif source.kind == "device":
        cap = cv2.VideoCapture(source.target, cv2.CAP_V4L2)
    else:
        cap = cv2.VideoCapture(str(source.target), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise DriverUnavailable(f"OpenCV cannot open {describe(source)}")
    if source.kind == "device":
        _configure_device(cap, resolution, fps)
    return cap


def jpeg_passthrough(cap: cv2.VideoCapture, source: Source) -> bool:
    """Ask for the compressed frames of a Motion-JPEG source instead of decoded ones.

    Reading then costs next to nothing, the motion gate looks at a 1/8-scale decode of the JPEG,
    and only frames that changed are decoded in full, straight to grey. Other codecs (H.264 over
    RTSP) are decoded by OpenCV as usual. ``as_jpeg`` recognises what comes back either way.
    """
    if fourcc(cap) != "MJPG":
        return False
    if source.kind == "device":
        return bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))  # V4L2: the driver's buffer as is
    return bool(cap.set(cv2.CAP_PROP_FORMAT, -1))  # FFmpeg: the demuxed packet, undecoded


def fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    return code.to_bytes(4, "little").decode("latin-1").strip("\0 ")


def as_jpeg(frame: np.ndarray) -> np.ndarray | None:
    """The frame as JPEG bytes when it is an undecoded JPEG (one row of bytes from FF D8), else None."""
    if frame.dtype != np.uint8 or frame.ndim > 2 or (frame.ndim == 2 and frame.shape[0] != 1):
        return None
    flat = frame.reshape(-1)
    return flat if flat.size > 4 and flat[0] == 0xFF and flat[1] == 0xD8 else None


def _configure_device(cap: cv2.VideoCapture, resolution: tuple[int, int] | None, fps: float | None) -> None:
    # UVC cameras deliver 1080p at 30 fps only as Motion-JPEG; raw YUYV tops out around 5 fps.
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
    if resolution:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, resolution[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, resolution[1])
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's own queue: keep it short, we want the newest frame


def capture_info(cap: cv2.VideoCapture) -> tuple[int, int, float]:
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return width, height, float(cap.get(cv2.CAP_PROP_FPS) or 0.0)


# -- camera controls ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Controls:
    """What to ask of a camera; None leaves the camera's own setting (``[scanner.cameras."<spec>"]``)."""

    exposure: float | str | None = None  # "auto" or a value in the driver's unit (V4L2: 100 us)
    focus: int | str | None = None  # "auto" or a focus position
    gain: float | None = None


@dataclass(frozen=True, slots=True)
class ControlReport:
    """One property asked for: what was asked, what the camera reports afterwards, whether it took it."""

    name: str
    asked: float
    reported: float
    applied: bool

    def __str__(self) -> str:
        if self.applied:
            return f"{self.name} {self.reported:g}"
        return f"{self.name} {self.asked:g} ignored (reports {self.reported:g})"


# V4L2's auto-exposure menu as OpenCV passes it: 1 manual, 3 aperture priority (automatic).
AUTO_EXPOSURE_MANUAL, AUTO_EXPOSURE_AUTO = 1.0, 3.0


def control_requests(controls: Controls) -> list[tuple[str, int, float]]:
    """The capture properties to set, in order (an automatic mode off before its manual value): pure."""
    asks: list[tuple[str, int, float]] = []
    if controls.exposure == "auto":
        asks.append(("auto_exposure", cv2.CAP_PROP_AUTO_EXPOSURE, AUTO_EXPOSURE_AUTO))
    elif controls.exposure is not None:
        asks.append(("auto_exposure", cv2.CAP_PROP_AUTO_EXPOSURE, AUTO_EXPOSURE_MANUAL))
        asks.append(("exposure", cv2.CAP_PROP_EXPOSURE, float(controls.exposure)))
    if controls.focus == "auto":
        asks.append(("autofocus", cv2.CAP_PROP_AUTOFOCUS, 1.0))
    elif controls.focus is not None:
        asks.append(("autofocus", cv2.CAP_PROP_AUTOFOCUS, 0.0))
        asks.append(("focus", cv2.CAP_PROP_FOCUS, float(controls.focus)))
    if controls.gain is not None:
        asks.append(("gain", cv2.CAP_PROP_GAIN, float(controls.gain)))
    return asks


def apply_controls(cap: cv2.VideoCapture, controls: Controls) -> list[ControlReport]:
    """Set each control and read it back. A camera (or a file, or a stream) that does not take a
    property is reported as ignoring it, never an error: many UVC cameras lack focus or gain."""
    reports = []
    for name, prop, value in control_requests(controls):
        try:
            took = bool(cap.set(prop, value))
            reported = float(cap.get(prop))
        except cv2.error:
            took, reported = False, float("nan")
        reports.append(ControlReport(name, value, reported, took and abs(reported - value) <= max(0.5, 0.01 * value)))
    return reports


def capture_report(cap: cv2.VideoCapture, asked: tuple[int, int] | None, fps: float | None) -> list[ControlReport]:
    """Resolution and frame rate asked for against what the capture reports."""
    width, height, got_fps = capture_info(cap)
    reports = []
    if asked:
        reports.append(ControlReport("width", asked[0], width, width == asked[0]))
        reports.append(ControlReport("height", asked[1], height, height == asked[1]))
    if fps:
        reports.append(ControlReport("fps", fps, got_fps, abs(got_fps - fps) < 0.5))
    return reports


# -- what happens to a frame ----------------------------------------------------------------------


def crop_roi(frame: np.ndarray, roi: Roi | None) -> np.ndarray:
    """The region of interest of a frame (a view, no copy); the whole frame when ``roi`` is None."""
    if roi is None:
        return frame
    h, w = frame.shape[:2]
    x, y, rw, rh = roi
    x0, y0 = int(x * w), int(y * h)
    return frame[y0 : max(y0 + 1, int((y + rh) * h)), x0 : max(x0 + 1, int((x + rw) * w))]


def thumbnail(frame: np.ndarray, scaled: bool = False) -> np.ndarray:
    """A small grey picture of the frame for the motion gate: every 8th pixel, then averaged 4x4.

    ``scaled``: the frame is already 1/8 scale (a JPEG decoded with IMREAD_REDUCED_GRAYSCALE_8).
    """
    sparse = frame if scaled else frame[::8, ::8]
    if sparse.ndim == 3:
        sparse = cv2.cvtColor(np.ascontiguousarray(sparse), cv2.COLOR_BGR2GRAY)
    h, w = sparse.shape[:2]
    return cv2.resize(sparse, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)


class MotionGate:
    """Says whether a frame differs from the last one decoded.

    ``threshold`` is the percentage of thumbnail cells that must have changed by more than
    ``cell_delta`` grey levels. Each cell averages 16 sampled pixels, so sensor noise does not move
    it; a code coming into view, or moving, changes the cells it covers. Comparing against the last
    *decoded* frame (not the previous one) means slow drift adds up and is decoded in the end.
    A threshold of 0 decodes every frame.
    """

    def __init__(self, threshold: float = 0.5, cell_delta: int = 10) -> None:
        self.threshold = threshold
        self.cell_delta = cell_delta
        self.reference: np.ndarray | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def changed(self, frame: np.ndarray) -> bool:
        return not self.enabled or self.changed_thumbnail(thumbnail(frame))

    def changed_thumbnail(self, thumb: np.ndarray) -> bool:
        ref = self.reference
        if ref is None or ref.shape != thumb.shape:
            self.reference = thumb
            return True
        moved = np.count_nonzero(cv2.absdiff(thumb, ref) > self.cell_delta)
        if moved * 100 > self.threshold * thumb.size:
            self.reference = thumb
            return True
        return False

    def reset(self) -> None:
        self.reference = None


class Dedupe:
    """One read per presentation: a text is new unless it was seen within ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.last_seen: dict[str, float] = {}
        self.current: list[str] = []  # texts of the last frame decoded

    def new(self, texts: Sequence[str], now: float) -> list[str]:
        self._forget(now)
        fresh = [t for t in texts if t not in self.last_seen]
        for text in texts:
            self.last_seen[text] = now
        self.current = list(texts)
        return fresh

    def still(self, now: float) -> None:
        """The frame did not change: what was in view is still in view."""
        for text in self.current:
            self.last_seen[text] = now

    def _forget(self, now: float) -> None:
        for text in [t for t, at in self.last_seen.items() if now - at > self.window]:
            del self.last_seen[text]


# -- the newest frame -----------------------------------------------------------------------------


class LatestFrame:
    """A one-frame slot between the capture and decode threads: a put replaces what was not taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self.dropped = 0

    def put(self, frame: np.ndarray) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def take(self, timeout: float) -> np.ndarray | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def clear(self) -> None:
        with self._cond:
            self._frame = None


@dataclass
class Stats:
    opened: int = 0
    captured: int = 0
    decoded: int = 0
    skipped: int = 0  # unchanged frames the motion gate did not decode
    reads: int = 0
    decode_seconds: float = 0.0


# -- the scanner ----------------------------------------------------------------------------------


class CameraScanner:
    """A ``terminal.ports.QrScanner`` over one OpenCV capture source."""

    def __init__(
        self,
        source: str,
        *,
        name: str | None = None,
        resolution: tuple[int, int] | None = None,
        fps: float | None = None,
        formats: Sequence[str] = DEFAULT_FORMATS,
        dedupe_window: float = 1.5,
        roi: Roi | None = None,
        motion_threshold: float = 0.5,
        realtime: bool | None = None,
        decoder: FrameDecoder | None = None,
        controls: Controls | None = None,
        backoff_first: float = 0.5,
        backoff_max: float = 10.0,
        timeout: float = 5.0,
        idle_after: float = 1.0,
        idle_fps: float = 10.0,
    ) -> None:
        self.source = parse_source(source)
        self.name = name or f"camera:{describe(self.source)}"
        self.resolution = resolution
        self.fps = fps
        self.formats = check_formats(formats)
        self.roi = roi
        # A file is played at its own frame rate, like a camera, unless told otherwise (benchmarks).
        self.realtime = self.source.kind == "file" if realtime is None else realtime
        # The default decoder combines consecutive frames of a presentation when none reads alone.
        self.decoder: FrameDecoder = FrameStack() if decoder is None else decoder
        self.controls = controls or Controls()
        self.control_reports: list[ControlReport] = []  # what the camera made of resolution, fps and controls
        self.timeout = timeout
        self.idle_after = idle_after
        self.idle_fps = idle_fps
        self._unchanged_since: float | None = None
        self._progress = {"capture": time.monotonic(), "decode": time.monotonic()}
        self.stats = Stats()
        self._dedupe = Dedupe(dedupe_window)
        self._gate = MotionGate(motion_threshold)
        self._slot = LatestFrame()
        self._backoff = Backoff(backoff_first, backoff_max)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_qr: QrSink | None = None
        self._on_reader: ReaderSink | None = None
        self._last_problem: str | None = None

    # -- QrScanner --------------------------------------------------------------------------------

    def start(self, on_qr: QrSink, on_reader: ReaderSink) -> None:
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError(f"{self.name} is already started")
        self._on_qr, self._on_reader = on_qr, on_reader
        self._stop = threading.Event()
        self._progress = {"capture": time.monotonic(), "decode": time.monotonic()}
        self._threads = [
            threading.Thread(target=self._capture_loop, args=(self._stop,), name=f"{self.name} capture", daemon=True),
            threading.Thread(target=self._decode_loop, args=(self._stop,), name=f"{self.name} decode", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            # A stream read can block up to ``timeout``; the threads are daemons, so a stuck one
            # never holds the process.
            thread.join(timeout=self.timeout + 1.0)
        self._threads = []

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    @property
    def last_progress(self) -> float:
        """When (time.monotonic) the slower of the two threads last went round its loop; a watchdog
        reads it. Both wake at least every ``backoff_max`` (10 s) or ``timeout`` (5 s) seconds."""
        return min(self._progress.values())

    # -- capture thread ---------------------------------------------------------------------------

    def _capture_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._progress["capture"] = time.monotonic()
            try:
                cap = open_capture(self.source, self.resolution, self.fps, self.timeout)
            except DriverUnavailable as exc:
                self._problem("error", str(exc))
            except Exception as exc:  # an OpenCV surprise must not end the scanner
                log.exception("opening %s failed", self.name)
                self._problem("error", f"cannot open: {exc!r}")
            else:
                self._stream(cap, stopping)
            stopping.wait(self._backoff.next())

    def _stream(self, cap: cv2.VideoCapture, stopping: threading.Event) -> None:
        try:
            width, height, fps = capture_info(cap)
            codec = fourcc(cap) or "?"
            passthrough = jpeg_passthrough(cap, self.source)
            self.control_reports = capture_report(cap, self.resolution, self.fps) + apply_controls(cap, self.controls)
            self.stats.opened += 1
            self._gate.reset()
            self._unchanged_since = None
            how = "JPEG passthrough" if passthrough else "decoded by OpenCV"
            controls = "; ".join(str(r) for r in self.control_reports)
            added = f"{self.source.kind} {width}x{height} @ {fps:g} fps, {codec} ({how})" + (
                f"; {controls}" if controls else ""
            )
            detail, framed = self._pump(cap, stopping, fps, added)
        except cv2.error as exc:
            detail, framed = f"camera lost: {exc}", True
        finally:
            cap.release()
        if not stopping.is_set():
            # gave frames, then stopped: removed; never gave one: an error, once per outage (not per retry)
            self._problem("removed" if framed else "error", detail)

    def _pump(self, cap: cv2.VideoCapture, stopping: threading.Event, fps: float, added: str) -> tuple[str, bool]:
        """Read frames into the slot until the source stops giving them; returns why it stopped and whether
        a frame came. The camera is ``added`` at its first frame: one that opens but gives none is an error."""
        period = 1.0 / fps if self.realtime and fps > 0 else 0.0
        due = time.monotonic()
        announced = False
        while not stopping.is_set():
            ok, frame = cap.read()
            if not ok or frame is None:
                if not announced:
                    return (
                        "the file holds no frame" if self.source.kind == "file" else "opens but gives no frame"
                    ), False
                return ("stream ended" if self.source.kind == "file" else "camera lost: no frame"), True
            if not announced:
                announced = True
                self._last_problem = None
                self._emit_reader("added", added)
            self.stats.captured += 1
            self._progress["capture"] = time.monotonic()
            self._backoff.reset()
            self._slot.put(frame)
            if period:
                due += period
                stopping.wait(max(0.0, due - time.monotonic()))
        return "stopped", announced

    # -- decode thread ----------------------------------------------------------------------------

    def _decode_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._progress["decode"] = time.monotonic()
            frame = self._slot.take(timeout=0.2)
            if frame is None:
                continue
            try:
                self.process(frame, time.monotonic())
            except Exception:  # a decoder bug costs one frame, not the scanner
                log.exception("decoding a frame from %s failed", self.name)
            if self.idle(time.monotonic()):
                # Nothing moved for a while: look at idle_fps frames a second; a code coming into
                # view is seen at most 1/idle_fps later, and then every frame is looked at again.
                stopping.wait(1.0 / self.idle_fps)

    def process(self, frame: np.ndarray, now: float) -> list[str]:
        """One frame (decoded, or JPEG bytes) through ROI, motion gate, decoder and dedupe;
        returns (and reports) the new texts."""
        gray = self._changed_grey(frame)
        if gray is None:
            self.stats.skipped += 1
            self._dedupe.still(now)
            if self._unchanged_since is None:
                self._unchanged_since = now
            return []
        self._unchanged_since = None
        started = time.perf_counter()
        texts = self.decoder(gray, self.formats)
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.decoded += 1
        fresh = self._dedupe.new(texts, now)
        for text in fresh:
            self.stats.reads += 1
            self._emit_qr(QrRead(self.name, text, time.time()))
        return fresh

    def _changed_grey(self, frame: np.ndarray) -> np.ndarray | None:
        """The region of interest in grey when the motion gate lets the frame through, else None."""
        jpeg = as_jpeg(frame)
        if jpeg is None:
            region = crop_roi(frame, self.roi)
            if not self._gate.changed(region):
                return None
            return cv2.cvtColor(region, cv2.COLOR_BGR2GRAY) if region.ndim == 3 else region
        if self._gate.enabled:
            small = cv2.imdecode(jpeg, cv2.IMREAD_REDUCED_GRAYSCALE_8)
            if small is None or not self._gate.changed_thumbnail(thumbnail(crop_roi(small, self.roi), scaled=True)):
                return None
        gray = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)
        return None if gray is None else crop_roi(gray, self.roi)

    def idle(self, now: float) -> bool:
        """Whether the scene has not changed for ``idle_after`` seconds (then frames are looked at less often)."""
        return self._unchanged_since is not None and now - self._unchanged_since >= self.idle_after

    # -- events -----------------------------------------------------------------------------------

    def _problem(self, kind: str, detail: str) -> None:
        if detail != self._last_problem:  # one event per outage, not one per retry
            self._last_problem = detail
            self._emit_reader(kind, detail)

    def _emit_qr(self, read: QrRead) -> None:
        deliver(self._on_qr, read, "QR")

    def _emit_reader(self, kind: str, detail: str) -> None:
        reader_event(self._on_reader, self.name, kind, detail)
