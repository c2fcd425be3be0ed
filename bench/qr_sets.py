"""The QR benchmark's two sets of frames, and the categories every figure is split by.

* the **tuning set** (``tuning_frame``): ``tests.fixtures.video.random_look`` widened to every kind
  of frame the issue names (large and very small modules, strong blur, low contrast, long coupon
  codes); the decoder's constants were chosen on it;
* the **measuring set** lives in ``bench/qr_measure_set.py``, written apart: its own seeds,
  distributions, backgrounds and payloads; it is used to measure only.

``categories(look, version)`` names the kinds of frame a figure is split by; the same function
labels both sets (it reads what a frame *is*, not how it was drawn).
"""

from __future__ import annotations

import base64
from dataclasses import replace

import numpy as np

from tests.fixtures.video import Look, Size, in_view, qr_modules, random_look

Rng = np.random.Generator

CATEGORY_NAMES = (
    "all",
    "modules_under_3px",
    "modules_3_to_5px",
    "modules_5_to_10px",
    "modules_10px_and_up",
    "version_5_or_less",
    "version_6",
    "version_7_to_10",
    "blur_sigma_1.5_and_up",
    "motion_blur",
    "glare",
    "low_contrast",
    "phone_screen",
    "paper",
    "tilt_25_and_up",
    "large_and_soft",
    "code_in_view",
    "code_partly_outside",
)


def version_of(text: str) -> int:
    """The QR version the test renderer gives ``text`` (level M, as the renderer draws it)."""
    return (qr_modules(text, border=0).shape[0] - 17) // 4


def categories(look: Look, version: int, whole: bool | None = None) -> list[str]:
    """The kinds of frame a code drawn with ``look`` at QR ``version`` belongs to; ``whole``: whether
    the whole code lies inside the frame (``in_frame``), when known. A code reaching past the frame's
    edge cannot be read by any decoder, so the sets' figures are also given for the codes in view."""
    px = look.module_px
    soft = look.blur_sigma >= 1.5 or look.contrast < 0.6 or look.gain < 0.55
    found = ["all"]
    found.append(
        "modules_under_3px"
        if px < 3
        else "modules_3_to_5px"
        if px < 5
        else "modules_5_to_10px"
        if px < 10
        else "modules_10px_and_up"
    )
    found.append("version_5_or_less" if version <= 5 else "version_6" if version == 6 else "version_7_to_10")
    if look.blur_sigma >= 1.5:
        found.append("blur_sigma_1.5_and_up")
    if look.motion_px >= 1.5:
        found.append("motion_blur")
    if look.glare > 0:
        found.append("glare")
    if look.contrast < 0.6 or look.gain < 0.55:
        found.append("low_contrast")
    found.append("phone_screen" if look.phone else "paper")
    if max(abs(look.tilt[0]), abs(look.tilt[1])) >= 25:
        found.append("tilt_25_and_up")
    if px >= 10 and soft:
        found.append("large_and_soft")
    if whole is not None:
        found.append("code_in_view" if whole else "code_partly_outside")
    return found


def in_frame(look: Look, text: str, size: Size) -> bool:
    return in_view(look, qr_modules(text).shape[0], size)


# -- the tuning set --------------------------------------------------------------------------------


def tuning_payload(rng: Rng) -> str:
    """Member (48-byte body), payment (82 bytes) or long coupon (120-200 bytes) codes, base64url."""
    kind = rng.random()
    if kind < 0.4:
        return "TPM2:" + _b64(rng.bytes(48))
    if kind < 0.7:
        return "TPP1:" + _b64(rng.bytes(82))
    return "TPC1:" + _b64(rng.bytes(int(rng.integers(120, 200))))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tuning_look(rng: Rng, size: Size) -> Look:
    """random_look, then one frame in three pushed to an extreme: large soft, tiny, strong blur, faint."""
    look = random_look(rng, size)
    scale = size[1] / 1080
    extreme = rng.random()
    if extreme < 0.08:
        look = replace(look, module_px=float(rng.uniform(10, 30)) * scale, blur_sigma=float(rng.uniform(1.5, 4)))
    elif extreme < 0.16:
        look = replace(look, module_px=float(rng.uniform(2.0, 4.5)) * scale)
    elif extreme < 0.24:
        look = replace(look, blur_sigma=float(rng.uniform(1.5, 2.6)) * scale)
    elif extreme < 0.32:
        look = replace(look, contrast=float(rng.uniform(0.3, 0.6)))
    return look


def fit(look: Look, text: str, size: Size) -> Look:
    """The look with modules small enough for the whole code to fit in 90 % of the frame's height."""
    side = qr_modules(text).shape[0]
    return replace(look, module_px=min(look.module_px, 0.9 * size[1] / side))
