"""Barcode decoding of camera frames: zxing-cpp first, OpenCV's QR detector only when zxing-cpp is missing.

One plain function is what the camera pipeline, the tests and bench/bench_qr.py all call::

    decode(gray, formats=("qr",)) -> list[str]     the texts found in a grayscale frame

How a frame is decoded (the figures behind each choice are in docs/performance.md, "QR scanning"):

1. One zxing-cpp pass over the whole frame and zxing-cpp's own pyramid of it (``MULTI_SCALE``:
   downscaled layers while the smaller side is over 500 px, so none at 480p; about a ninth of the
   pixels more at 720p and 1080p),
   restricted to the configured formats, without its rotation search (it only matters to linear
   codes, which are read in both directions anyway) and its inverted-image pass (our codes are dark
   on light). The pyramid reads large codes (10-30 px a module) that are blurred or low in contrast,
   whose edges are too soft at full size; with it, the first pass reads the QR codes raw zxing-cpp
   reads, except light-on-dark ones. ``return_errors=True`` makes zxing-cpp also report
   a code it located (finder patterns, grid) but could not decode. "qr" means QR Code Model 2 only
   (zxing-cpp's "QRCode" is the whole family: searching for Model 1 and rMQR too costs about 6 % more
   a frame and finds nothing we print).
2. A QR search also looks for Micro QR codes, never reported unless configured: to zxing a Micro QR
   code is a lone finder pattern, and a lone finder pattern is what is left of a QR code whose other
   two a glare has washed out. Such a hint is retried on a crop reaching ``HINT_REACH`` times the size
   of the Micro QR code zxing took it for, on every side.
3. Only for a located-but-failed code or a hint, at most ``MAX_RETRIES`` a frame: when its box touches the
   frame's edge, first its crop padded with white on those sides (``padded_at_edge``: a code reaching past
   the edge, whose grid zxing-cpp gives up on at the image's border, is read when error correction covers
   the modules cut off); then cheap retries on a crop around it, stopping at the first success: unsharpened (defocus), halved (a large blurry
   code), enlarged two to four times (small modules), deblurred (a stronger
   sharpening, for sigma >= 1.5 blur), binarised with a local threshold (uneven light), contrast
   stretched tile by tile (CLAHE: the faint modules at a glare's edge, low contrast). A frame with no
   code costs the first pass alone.
4. ``FrameStack`` (used by the camera): when a located code is read in no single frame, the crops
   around it in the last few frames of the presentation are aligned (phase correlation) and averaged:
   sensor noise and JPEG artefacts average out, then the retries run on the mean.

With no zxing-cpp installed, ``decode`` falls back to ``cv2.QRCodeDetectorAruco`` (QR codes only);
it decodes fewer frames at 20-40 times the cost, so the fallback is logged once as a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Names used in the configuration -> zxing-cpp's format names ("QRCode" alone would be the whole
# family: Model 1, Micro QR and rMQR too).
FORMATS: dict[str, str] = {
    "qr": "QRCodeModel2",
    "micro_qr": "MicroQRCode",
    "code128": "Code128",
    "ean13": "EAN13",
    "ean8": "EAN8",
    "upca": "UPCA",
    "datamatrix": "DataMatrix",
}
DEFAULT_FORMATS: tuple[str, ...] = ("qr",)
MAX_RETRIES = 2  # located-but-failed codes retried per frame
# A lone finder pattern (what zxing reports as a Micro QR code it cannot read) may be the one corner
# of a QR code that a glare left readable; its code lies within this many times the size of the
# Micro QR code zxing took it for (11-17 modules), on every side.
HINT_REACH = 2.5
FINDER_HINTS = True  # look for those lone finder patterns in a QR-only search
MULTI_SCALE = True  # the first pass also reads the frame downscaled (zxing-cpp's own pyramid)
EDGE_RETRY = True  # a lead touching the frame's edge is first read on its crop padded with white there
EDGE_PAD = 0.5  # ... by this share of the crop's size

Box = tuple[int, int, int, int]  # x0, y0, x1, y1
Decoder = Callable[[np.ndarray, tuple[str, ...]], list[str]]


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The formats as a tuple, or ValueError naming the unknown one and the known ones."""
    chosen = tuple(formats)
    for name in chosen:
        if name not in FORMATS:
            raise ValueError(f"unknown barcode format {name!r} (known: {', '.join(FORMATS)})")
    if not chosen:
        raise ValueError("no barcode format configured")
    return chosen


def decode(gray: np.ndarray, formats: Sequence[str] = DEFAULT_FORMATS, *, backend: str | None = None) -> list[str]:
    """Texts of the codes in ``gray`` (2-D uint8; a BGR frame is converted), each once, in frame order."""
    name = backend or default_backend()
    return BACKENDS[name](_grey(gray), tuple(formats))


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(image)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one frame gave: the texts read, and the boxes of codes located but not read (leads)."""

    texts: list[str]
    leads: list[Box] = field(default_factory=list)


def default_backend() -> str:
    return "zxing" if _zxing() is not None else "opencv"


# -- zxing-cpp ------------------------------------------------------------------------------------

_ZXING: list[ModuleType | None] = []
_FORMAT_CACHE: dict[tuple[bool, tuple[str, ...]], tuple[Any, Any]] = {}


def _zxing() -> ModuleType | None:
    if not _ZXING:
        try:
            import zxingcpp
        except ImportError:
            log.warning("zxing-cpp is not installed: QR decoding falls back to OpenCV (slower, fewer reads)")
            _ZXING.append(None)
        else:
            _ZXING.append(zxingcpp)
    return _ZXING[0]


def _zxing_formats(zx: ModuleType, formats: tuple[str, ...]) -> tuple[Any, Any]:
    """(what to search for, the format that is only a hint or None): a QR search also looks for lone
    finder patterns, which zxing reports as Micro QR codes, when Micro QR itself is not wanted."""
    hints = FINDER_HINTS and "qr" in formats and "micro_qr" not in formats
    found = _FORMAT_CACHE.get((hints, formats))
    if found is None:
        names = [FORMATS[f] for f in check_formats(formats)]
        search = names + [FORMATS["micro_qr"]] if hints else names
        found = (zx.barcode_formats_from_str(",".join(search)), zx.BarcodeFormat.MicroQRCode if hints else None)
        _FORMAT_CACHE[(hints, formats)] = found
    return found


def _read(zx: ModuleType, image: np.ndarray, formats: Any, errors: bool, downscale: bool = False) -> list[Any]:
    return list(
        zx.read_barcodes(
            image,
            formats=formats,
            try_rotate=False,
            try_invert=False,
            try_downscale=downscale,
            text_mode=zx.TextMode.Plain,
            return_errors=errors,
        )
    )


def decode_zxing(gray: np.ndarray, formats: tuple[str, ...]) -> list[str]:
    return decode_detail(gray, formats).texts


def decode_detail(gray: np.ndarray, formats: Sequence[str] = DEFAULT_FORMATS) -> Decoded:
    """``decode`` with zxing-cpp, also giving the leads it could not read (for ``FrameStack``)."""
    zx = _zxing()
    if zx is None:
        raise ModuleNotFoundError("zxing-cpp is not installed (pip install zxing-cpp)")
    gray = _grey(gray)
    search, hint = _zxing_formats(zx, tuple(formats))
    texts, read, failed = _pass(zx, gray, search, hint, MULTI_SCALE)
    leads = _distinct(failed, read)[:MAX_RETRIES]
    missed: list[Box] = []
    for box in leads:
        found = _at_edge(zx, gray, box, search, hint) or _retry(zx, crop_for_retry(gray, box), search, hint)
        texts.extend(found)
        if not found:
            missed.append(box)
    return Decoded(list(dict.fromkeys(texts)), missed)


def padded_at_edge(gray: np.ndarray, box: Box) -> np.ndarray | None:
    """The crop of a lead that touches the frame's edge, padded with white on those sides by ``EDGE_PAD`` of its
    size; None for a lead inside the frame. A code reaching past the edge has lost the modules there: zxing-cpp
    gives up on a grid that runs off the image, but reads it on the padded crop when error correction covers
    what is missing."""
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = box
    sides = (y0 <= 0, y1 >= h, x0 <= 0, x1 >= w)  # top, bottom, left, right
    if not any(sides):
        return None
    crop = crop_for_retry(gray, box)
    if crop.size == 0:
        return None
    pad = int(max(crop.shape[:2]) * EDGE_PAD)
    top, bottom, left, right = (pad if side else 0 for side in sides)
    return cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=255)


def _at_edge(zx: ModuleType, gray: np.ndarray, box: Box, formats: Any, hint: Any) -> list[str]:
    image = padded_at_edge(gray, box) if EDGE_RETRY else None
    if image is None:
        return []
    return [r.text for r in _read(zx, image, formats, errors=False, downscale=True) if r.valid and r.format != hint]


def _pass(
    zx: ModuleType, image: np.ndarray, search: Any, hint: Any, multi_scale: bool
) -> tuple[list[str], list[Box], list[Box]]:
    """One zxing-cpp pass: (texts read, their boxes, boxes located but not read), in frame pixels."""
    texts: list[str] = []
    read: list[Box] = []
    failed: list[Box] = []
    for result in _read(zx, image, search, errors=True, downscale=multi_scale):
        if result.format == hint:
            if not result.valid:  # a lone finder pattern: look around it for the QR code it belongs to
                failed.append(_box(result.position, image.shape, margin=HINT_REACH))
        elif result.valid:
            texts.append(result.text)
            read.append(_box(result.position, image.shape))
        else:
            failed.append(_box(result.position, image.shape))
    return texts, read, failed


def _distinct(boxes: list[Box], read: list[Box]) -> list[Box]:
    """The boxes to retry: not centred on a code already read, nor on a box already kept (one code
    found twice, or a code and its own finder patterns)."""
    kept: list[Box] = []
    for box in boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not any(k[0] <= cx <= k[2] and k[1] <= cy <= k[3] for k in read + kept):
            kept.append(box)
    return kept


def _box(position: Any, shape: tuple[int, ...], margin: float = 0.2) -> Box:
    """The bounding box of a located code, widened by ``margin`` of its size, inside the frame."""
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    xs, ys = [p.x for p in corners], [p.y for p in corners]
    pad = margin * max(max(xs) - min(xs), max(ys) - min(ys), 8)
    h, w = shape[:2]
    return (
        max(0, int(min(xs) - pad)),
        max(0, int(min(ys) - pad)),
        min(w, int(max(xs) + pad) + 1),
        min(h, int(max(ys) + pad) + 1),
    )


def unsharp(image: np.ndarray) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (0, 0), 1.5)
    return cv2.addWeighted(image, 2.0, blurred, -1.0, 0)


def halved(image: np.ndarray) -> np.ndarray | None:
    if min(image.shape[:2]) < 160:
        return None
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def enlarged(image: np.ndarray) -> np.ndarray | None:
    """Small modules: the crop enlarged two to four times (cubic; the smaller the crop, the more),
    then sharpened, so a module of 1.5-3 px becomes 6 px or more; skipped on crops that are large
    already (a large crop has large modules)."""
    side = max(image.shape[:2])
    factor = min(4.0, RETRY_MAX_SIDE * 1.5 / max(1, side))
    if factor < 2.0:
        return None
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return unsharp(big)


def deblurred(image: np.ndarray) -> np.ndarray:
    """A strong blur (sigma 1.5 and more): a wide, strong unsharp mask, then a median to tame the noise
    it brings up."""
    smooth = cv2.medianBlur(image, 3)
    blurred = cv2.GaussianBlur(smooth, (0, 0), 2.5)
    return cv2.addWeighted(smooth, 3.0, blurred, -2.0, 0)


def local_threshold(image: np.ndarray) -> np.ndarray:
    block = max(11, (min(image.shape[:2]) // 8) | 1)
    return cv2.adaptiveThreshold(image, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, 3)


_CLAHE = threading.local()


def local_contrast(image: np.ndarray) -> np.ndarray:
    """Contrast stretched tile by tile (CLAHE): brings back the faint modules at a glare's edge."""
    clahe = getattr(_CLAHE, "clahe", None)
    if clahe is None:
        clahe = _CLAHE.clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
    return clahe.apply(image)


Retry = Callable[[np.ndarray], "np.ndarray | None"]


def _as_is(image: np.ndarray) -> np.ndarray:
    return image


RETRIES: tuple[Retry, ...] = (unsharp, halved, enlarged, deblurred, local_threshold, local_contrast)
RETRY_MAX_SIDE = 640  # a bigger crop (a code filling the frame) is shrunk first: retries stay ~1 ms each


def crop_for_retry(gray: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = gray[y0:y1, x0:x1]
    side = max(crop.shape[:2], default=0)
    if side > RETRY_MAX_SIDE:
        crop = cv2.resize(crop, None, fx=RETRY_MAX_SIDE / side, fy=RETRY_MAX_SIDE / side, interpolation=cv2.INTER_AREA)
    return crop


def _retry(
    zx: ModuleType, crop: np.ndarray, formats: Any, hint: Any, steps: Sequence[Retry] | None = None
) -> list[str]:
    if crop.size == 0:
        return []
    for step in RETRIES if steps is None else steps:
        image = step(crop)
        if image is None:
            continue
        found = [r.text for r in _read(zx, image, formats, errors=False) if r.valid and r.format != hint]
        if found:
            return found
    return []


# -- several frames of one presentation -----------------------------------------------------------

STACK_DEPTH = 4  # frames of one presentation averaged when none reads alone


def aligned_mean(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The crops (same size, the newest last) shifted onto the newest by phase correlation and averaged."""
    ref = crops[-1].astype(np.float32)
    window = cv2.createHanningWindow((ref.shape[1], ref.shape[0]), cv2.CV_32F)
    total = ref.copy()
    for crop in crops[:-1]:
        moving = crop.astype(np.float32)
        # phaseCorrelate may apply the window to its inputs in place: it gets copies
        (dx, dy), _response = cv2.phaseCorrelate(ref.copy(), moving.copy(), window)
        shift = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
        total += cv2.warpAffine(moving, shift, (ref.shape[1], ref.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    return np.clip(total / len(crops), 0, 255).astype(np.uint8)


class FrameStack:
    """Decodes the frames of one camera in turn; when a located code is read in none of them, the
    crops around it in the last ``depth`` frames are aligned and averaged and the retries run on that.

    A frame where nothing was located, or where something was read, empties the stack: the frames
    combined are always consecutive frames of one presentation.
    """

    def __init__(self, depth: int = STACK_DEPTH) -> None:
        self.depth = depth
        self.frames: list[np.ndarray] = []
        self.combined_reads = 0  # reads only the combination gave (metrics, tests)

    def decode(self, gray: np.ndarray, formats: Sequence[str] = DEFAULT_FORMATS) -> list[str]:
        zx = _zxing()
        if zx is None:
            return decode(gray, formats)
        gray = _grey(gray)
        result = decode_detail(gray, formats)
        if result.texts or not result.leads or self.depth < 2:
            self.frames.clear()
            return result.texts
        if self.frames and self.frames[-1].shape != gray.shape:
            self.frames.clear()
        self.frames = [*self.frames[-(self.depth - 1) :], gray]
        if len(self.frames) < 2:
            return []
        search, hint = _zxing_formats(zx, tuple(formats))
        for box in result.leads:
            x0, y0, x1, y1 = box
            mean = aligned_mean([f[y0:y1, x0:x1] for f in self.frames])
            crop = crop_for_retry(mean, (0, 0, mean.shape[1], mean.shape[0]))
            found = _retry(zx, crop, search, hint, (_as_is, *RETRIES))
            if found:
                self.combined_reads += 1
                self.frames.clear()
                return list(dict.fromkeys(found))
        return []

    def __call__(self, gray: np.ndarray, formats: Sequence[str] = DEFAULT_FORMATS) -> list[str]:
        return self.decode(gray, formats)


# -- OpenCV fallback ------------------------------------------------------------------------------

_CV_LOCAL = threading.local()  # one detector per thread: two cameras must not share one


def decode_opencv(gray: np.ndarray, formats: tuple[str, ...]) -> list[str]:
    """QR codes only, with OpenCV's ArUco-based detector (the better of OpenCV's two on camera frames)."""
    if "qr" not in check_formats(formats):
        return []
    detector = getattr(_CV_LOCAL, "detector", None)
    if detector is None:
        detector = _CV_LOCAL.detector = cv2.QRCodeDetectorAruco()
    ok, texts, _points, _straight = detector.detectAndDecodeMulti(gray)
    if not ok:
        return []
    return list(dict.fromkeys(t for t in texts if t))


BACKENDS: dict[str, Decoder] = {"zxing": decode_zxing, "opencv": decode_opencv}
