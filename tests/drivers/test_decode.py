"""drivers.decode: the one decode(gray) function, on generated camera-like frames."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp

import drivers.decode as decoding
from drivers.decode import check_formats, decode
from tests.fixtures.video import Look, render

TEXT = "TPC1:" + "Zx9_-" * 9
SIZE = (1280, 720)

# One degradation at a time, each strong enough to matter and each a thing a till camera sees.
CASES = {
    "clean": Look(module_px=7),
    "defocus": Look(module_px=7, blur_sigma=1.6),
    "motion blur": Look(module_px=8, motion_px=5, motion_angle=30),
    "perspective": Look(module_px=7, tilt=(28, -25), angle=33),
    "glare": Look(module_px=8, glare=0.45),
    "jpeg artefacts": Look(module_px=6, jpeg_quality=30, noise=5),
    "phone screen": Look(module_px=7, phone=True, angle=-12, tilt=(10, 15)),
    "dim": Look(module_px=7, gain=0.45, noise=4),
    "small modules": Look(module_px=3.6, blur_sigma=0.8),
    "upside down": Look(module_px=7, angle=180),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decodes_degraded_frames(name: str) -> None:
    for seed in range(2):
        frame = render(TEXT, SIZE, CASES[name], np.random.default_rng(seed))
        assert decode(frame) == [TEXT], f"{name}, seed {seed}"


def test_a_frame_without_a_code_decodes_to_nothing() -> None:
    rng = np.random.default_rng(5)
    for _ in range(6):  # half of them carry a decoy: a module grid without finder patterns
        frame = render(None, SIZE, Look(noise=3, jpeg_quality=70), rng)
        assert decode(frame) == []


def test_takes_grey_and_colour_frames_alike() -> None:
    frame = render(TEXT, SIZE, CASES["clean"], np.random.default_rng(0))
    grey = frame.mean(axis=2).astype(np.uint8)
    assert decode(grey) == decode(frame) == [TEXT]


def test_two_codes_in_one_frame_are_both_read() -> None:
    rng = np.random.default_rng(1)
    left = render("TPM1:left", SIZE, Look(module_px=7, center=(0.25, 0.5)), rng)
    right = render("TPM1:right", SIZE, Look(module_px=7, center=(0.75, 0.5)), rng)
    both = np.concatenate([left[:, :640], right[:, 640:]], axis=1)
    assert sorted(decode(both)) == ["TPM1:left", "TPM1:right"]


# Frames where the first pass locates the code but cannot read it (defocus on 3.5-4.7 px modules):
# found by search with these exact seeds; the retries on the crop must rescue them.
RETRY_FRAMES = [
    (2, Look(module_px=3.523, angle=25.14, blur_sigma=1.618, noise=3, jpeg_quality=80)),
    (13, Look(module_px=4.730, angle=24.88, blur_sigma=2.397, noise=3, jpeg_quality=80)),
    (15, Look(module_px=4.385, angle=-12.45, blur_sigma=2.342, noise=3, jpeg_quality=80)),
    (20, Look(module_px=3.560, angle=-30.26, blur_sigma=1.846, noise=3, jpeg_quality=80)),
]


def test_retries_on_the_crop_rescue_located_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [render(TEXT, SIZE, look, np.random.default_rng(seed)) for seed, look in RETRY_FRAMES]
    with_retries = sum(decode(f) == [TEXT] for f in frames)
    monkeypatch.setattr(decoding, "RETRIES", ())
    one_pass = sum(decode(f) == [TEXT] for f in frames)
    assert with_retries >= 3 and one_pass < with_retries, (one_pass, with_retries)


def test_formats_restrict_what_is_read() -> None:
    barcode = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("COUPON-2026-0042", zxingcpp.BarcodeFormat.Code128),
                                             scale=3)
    image = np.pad(np.asarray(barcode), 40, constant_values=255)
    assert decode(image) == []  # QR only by default
    assert decode(image, ("qr", "code128")) == ["COUPON-2026-0042"]


def test_unknown_format_names_are_refused() -> None:
    with pytest.raises(ValueError, match="pdf417"):
        check_formats(["qr", "pdf417"])
    with pytest.raises(ValueError):
        check_formats([])


def test_opencv_fallback_reads_qr_codes() -> None:
    frame = render(TEXT, SIZE, Look(module_px=8, angle=10), np.random.default_rng(0))
    assert decode(frame, backend="opencv") == [TEXT]
    assert decode(frame, ("code128",), backend="opencv") == []


def test_fallback_is_chosen_when_zxing_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "_ZXING", [None])
    assert decoding.default_backend() == "opencv"
    frame = render(TEXT, SIZE, Look(module_px=8), np.random.default_rng(0))
    assert decode(frame) == [TEXT]
    with pytest.raises(ModuleNotFoundError, match="zxing-cpp"):
        decode(frame, backend="zxing")
