"""The QR benchmark's measuring set: frames used to measure the decoder, never to tune it.

Written apart from the tuning set on purpose: it imports no constant of the decoder, of the tuning
set (``bench/qr_sets.py``) or of ``tests.fixtures.video.random_look``; only the renderer itself
(``render``: a carrier placed in perspective, then the camera's blur, noise and JPEG) is shared.
What differs:

* seeds: its own base (``SEED_BASE``), so no frame of the tuning set can recur;
* distributions: module size log-uniform over 2.2-28 px at 1080p, blur up to sigma 2.8, motion up
  to 9 px, tilt up to 40 degrees, glare in 30 % of frames, low contrast (0.25-0.6) in 25 %, gain
  0.45-1.3, noise 0.5-8, JPEG quality 30-95;
* backgrounds: wood-like stripes, tiles and speckle, drawn here (not the tuning set's rectangles
  and lines), with printed-text bands; some frames carry a second, unrelated printed grid;
* payloads: member, payment and coupon codes of the lengths the till meets, in the text forms it
  reads (base64url and base45), drawn from their own generator.
"""

from __future__ import annotations

import math
import string
from dataclasses import replace

import cv2
import numpy as np

from tests.fixtures.video import Look, Size, qr_modules, render

Rng = np.random.Generator
SEED_BASE = 7_340_000
_B45 = string.digits + string.ascii_uppercase + " $%*+-./:"
_B64 = string.ascii_letters + string.digits + "-_"


def scene(size: Size, rng: Rng) -> np.ndarray:
    """A counter of another kind: a wood-like or tiled surface, speckle, a band of print."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        freq, phase = float(rng.uniform(0.01, 0.05)), float(rng.uniform(0, 6.3))
        wobble = 12 * np.sin(ys * float(rng.uniform(0.002, 0.01)))
        base = 110 + 45 * np.sin((xs + wobble) * freq + phase)
        tint = np.array([0.55, 0.75, 1.0], np.float32)  # BGR: brownish
    else:
        tile = int(rng.integers(40, 160))
        base = np.where(((xs // tile + ys // tile) % 2) == 0, 170.0, 120.0).astype(np.float32)
        base[(xs % tile < 3) | (ys % tile < 3)] = 60
        tint = np.array(rng.uniform(0.7, 1.0, 3), np.float32)
    img = base[:, :, None] * tint[None, None, :]
    img += rng.normal(0, 9, (h // 4 + 1, w // 4 + 1, 1)).repeat(4, 0).repeat(4, 1)[:h, :w].astype(np.float32)
    light = 0.75 + 0.45 * np.exp(-(((xs - w * rng.uniform(0.2, 0.8)) / w) ** 2 + ((ys - h * 0.3) / h) ** 2) * 2)
    img = np.clip(img * light[:, :, None], 0, 255).astype(np.uint8)
    y = int(h * rng.uniform(0.05, 0.2))
    for row in range(int(rng.integers(3, 8))):
        words = "".join(rng.choice(list(string.ascii_lowercase + "  0123456789"), int(rng.integers(10, 40))))
        cv2.putText(
            img, words, (int(w * 0.6), y + row * int(h * 0.03)), cv2.FONT_HERSHEY_PLAIN, h / 700, (20, 20, 20), 1
        )
    return img


def payload(rng: Rng) -> str:
    """A code text: issued or device member code, payment code, short or long coupon, claim code."""
    kind = int(rng.integers(0, 6))
    if kind == 0:
        return "TPM2:" + _text(rng, _B64, int(rng.integers(118, 126)))
    if kind == 1:
        return "TPM2:" + _text(rng, _B45, int(rng.integers(128, 142)))
    if kind == 2:
        return "TPP1:" + _text(rng, _B64 if rng.random() < 0.5 else _B45, 110 if rng.random() < 0.5 else 123)
    if kind == 3:
        return "TPC1:" + _text(rng, _B64, int(rng.integers(30, 90)))
    if kind == 4:
        return "TPC1:" + _text(rng, _B64, int(rng.integers(160, 270)))  # long coupons: versions 7-10
    return "TPJ1:" + _text(rng, _B64, int(rng.integers(40, 70)))


def _text(rng: Rng, alphabet: str, n: int) -> str:
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), n))


def look(rng: Rng, size: Size) -> Look:
    """One measuring-set draw (ranges in the module docstring), scaled to the frame height."""
    scale = size[1] / 1080
    px = math.exp(float(rng.uniform(math.log(2.2), math.log(28.0)))) * scale
    glare = float(rng.uniform(0.25, 0.85)) if rng.random() < 0.3 else 0.0
    cx, cy = float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75))
    return Look(
        module_px=px,
        center=(cx, cy),
        angle=float(rng.uniform(-180, 180)),
        tilt=(float(rng.uniform(-40, 40)), float(rng.uniform(-40, 40))),
        phone=bool(rng.random() < 0.45),
        blur_sigma=float(rng.choice([0.0, rng.uniform(0.3, 1.4), rng.uniform(1.4, 2.8)], p=[0.3, 0.4, 0.3])) * scale,
        motion_px=float(rng.uniform(1.5, 9)) * scale if rng.random() < 0.4 else 0.0,
        motion_angle=float(rng.uniform(0, 180)),
        glare=glare,
        glare_at=(cx + float(rng.normal(0, 0.04)), cy + float(rng.normal(0, 0.04))) if glare else None,
        glare_size=float(rng.uniform(0.2, 0.8)),
        noise=float(rng.uniform(0.5, 8)),
        gain=float(rng.uniform(0.45, 1.3)),
        contrast=float(rng.uniform(0.25, 0.6)) if rng.random() < 0.25 else 1.0,
        jpeg_quality=int(rng.integers(30, 96)),
    )


def fitted(drawn: Look, text: str, size: Size) -> Look:
    """The look with modules no larger than lets the whole code (and its quiet zone) fit the frame's height."""
    side = qr_modules(text).shape[0]
    return replace(drawn, module_px=min(drawn.module_px, 0.85 * size[1] / side))


def frames(size: Size, count: int, no_code_share: float, seed: int) -> list[tuple[str | None, Look, np.ndarray]]:
    """``count`` frames (text or None, look, BGR frame) of the measuring set at ``size``."""
    rng = np.random.default_rng(SEED_BASE + seed)
    scenes = [scene(size, rng) for _ in range(3)]
    out = []
    for i in range(count):
        drawn = look(rng, size)
        text = None if rng.random() < no_code_share else payload(rng)
        if text is not None:
            drawn = fitted(drawn, text, size)
        out.append((text, drawn, render(text, size, drawn, rng, scenes[i % 3])))
    return out
