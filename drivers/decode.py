"""Barcode decoding of camera frames: zxing-cpp first, OpenCV's QR detector only when zxing-cpp is missing.

One plain function is what the camera pipeline, the tests and bench/bench_qr.py all call::

    decode(gray, formats=("qr",)) -> list[str]     the texts found in a grayscale frame

How a frame is decoded (the figures behind each choice are in docs/performance.md, "QR scanning"):

1. One zxing-cpp pass over the whole frame, restricted to the configured formats, without its
   rotation search (it only matters to linear codes, which are read in both directions anyway), its
   inverted-image pass and its downscaled passes: those cost about a third more on every frame and,
   on our test sets, found nothing the retries below do not. ``return_errors=True`` makes zxing-cpp
   also report a code it located (finder patterns, grid) but could not decode. "qr" means QR Code
   Model 2 only (zxing-cpp's "QRCode" is the whole family: searching for Model 1 and rMQR too costs
   about 6 % more a frame and finds nothing we print).
2. A QR search also looks for Micro QR codes, never reported unless configured: to zxing a Micro QR
   code is a lone finder pattern, and a lone finder pattern is what is left of a QR code whose other
   two a glare has washed out. Such a hint is retried on a crop reaching ``HINT_REACH`` times the size
   of the Micro QR code zxing took it for, on every side.
3. Only for a located-but-failed code or a hint, at most ``MAX_RETRIES`` a frame: cheap retries on a
   crop around it, stopping at the first success: unsharpened (defocus), halved (a large blurry
   code, what zxing's downscaling would do), doubled (small modules), binarised with a local
   threshold (uneven light), contrast stretched tile by tile (CLAHE: the faint modules at a glare's
   edge). A frame with no code costs one pass and nothing more.

With no zxing-cpp installed, ``decode`` falls back to ``cv2.QRCodeDetectorAruco`` (QR codes only);
it decodes fewer frames at 20-40 times the cost, so the fallback is logged once as a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
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
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    name = backend or default_backend()
    return BACKENDS[name](np.ascontiguousarray(gray), tuple(formats))


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


def _read(zx: ModuleType, image: np.ndarray, formats: Any, errors: bool) -> list[Any]:
    return list(
        zx.read_barcodes(
            image,
            formats=formats,
            try_rotate=False,
            try_invert=False,
            try_downscale=False,
            text_mode=zx.TextMode.Plain,
            return_errors=errors,
        )
    )


def decode_zxing(gray: np.ndarray, formats: tuple[str, ...]) -> list[str]:
    zx = _zxing()
    if zx is None:
        raise ModuleNotFoundError("zxing-cpp is not installed (pip install zxing-cpp)")
    search, hint = _zxing_formats(zx, formats)
    texts: list[str] = []
    read: list[Box] = []
    failed: list[Box] = []
    for result in _read(zx, gray, search, errors=True):
        if result.format == hint:
            if not result.valid:  # a lone finder pattern: look around it for the QR code it belongs to
                failed.append(_box(result.position, gray.shape, margin=HINT_REACH))
        elif result.valid:
            texts.append(result.text)
            read.append(_box(result.position, gray.shape))
        else:
            failed.append(_box(result.position, gray.shape))
    for box in _distinct(failed, read)[:MAX_RETRIES]:
        texts.extend(_retry(zx, gray, box, search, hint))
    return list(dict.fromkeys(texts))


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


def doubled(image: np.ndarray) -> np.ndarray | None:
    if max(image.shape[:2]) > RETRY_MAX_SIDE // 2:
        return None
    return unsharp(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))


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
RETRIES: tuple[Retry, ...] = (unsharp, halved, doubled, local_threshold, local_contrast)
RETRY_MAX_SIDE = 640  # a bigger crop (a code filling the frame) is shrunk first: retries stay ~1 ms each


def crop_for_retry(gray: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = gray[y0:y1, x0:x1]
    side = max(crop.shape[:2], default=0)
    if side > RETRY_MAX_SIDE:
        crop = cv2.resize(crop, None, fx=RETRY_MAX_SIDE / side, fy=RETRY_MAX_SIDE / side, interpolation=cv2.INTER_AREA)
    return crop


def _retry(zx: ModuleType, gray: np.ndarray, box: Box, formats: Any, hint: Any) -> list[str]:
    crop = crop_for_retry(gray, box)
    if crop.size == 0:
        return []
    for step in RETRIES:
        image = step(crop)
        if image is None:
            continue
        found = [r.text for r in _read(zx, image, formats, errors=False) if r.valid and r.format != hint]
        if found:
            return found
    return []


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
