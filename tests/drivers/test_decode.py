"""drivers.decode: the one decode(gray) function, on generated camera-like frames."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
import zxingcpp

import drivers.decode as decoding
from drivers.decode import check_formats, decode
from tests.fixtures.video import Look, code_corners, in_view, qr_modules, read_at_known_corners, reflection, render

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


# A strong glare beside the centre of a code on a phone screen washes out one or two of its finder
# patterns: zxing sees a lone finder (it calls it a Micro QR code) and no QR code. Found by search with
# these exact seeds; looking around the lone finder, with the contrast stretched, must rescue them.
GLARE_FRAMES = [
    (
        seed,
        Look(module_px=7, angle=angle, phone=True, glare=glare, glare_at=at, glare_size=0.5, noise=2, jpeg_quality=80),
    )
    for seed, angle, glare, at in [
        (23, 89.0, 0.67, (0.597, 0.598)),
        (35, 159.64, 0.66, (0.471, 0.569)),
        (139, -127.04, 0.73, (0.427, 0.61)),
        (145, -50.7, 0.69, (0.421, 0.532)),
        (151, -40.25, 0.75, (0.414, 0.524)),
        (181, 39.35, 0.67, (0.567, 0.41)),
    ]
]


def test_a_lone_finder_pattern_leads_to_the_glared_code(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [render(TEXT, SIZE, look, np.random.default_rng(seed)) for seed, look in GLARE_FRAMES]
    with_hints = sum(decode(f) == [TEXT] for f in frames)
    monkeypatch.setattr(decoding, "FINDER_HINTS", False)
    without = sum(decode(f) == [TEXT] for f in frames)
    assert with_hints >= 5 and without <= 1, (without, with_hints)


def test_the_test_sets_glare_moves_by_the_mirror_law() -> None:
    size = (1920, 1080)
    assert reflection((0.4, 0.6), np.zeros(2), size) == (0.4, 0.6)  # sliding alone: it stays put
    x, y = reflection((0.4, 0.6), np.array([0.0, 1.0]), size)  # a 1 degree turn about the vertical axis
    assert y == 0.6 and (x - 0.4) * 1920 == pytest.approx(1920 * math.tan(math.radians(2)))  # ~67 px
    x, y = reflection((0.4, 0.6), np.array([-0.5, 0.0]), size)
    assert x == 0.4 and (y - 0.6) * 1080 == pytest.approx(-1920 * math.tan(math.radians(1)))


def test_the_test_sets_know_where_the_code_lies() -> None:
    """``code_corners`` is where zxing finds the code's corners; ``in_view`` says when a corner is cut off."""
    look = Look(module_px=7, center=(0.45, 0.55), angle=30, tilt=(15, -10))
    modules = qr_modules(TEXT).shape[0]
    frame = render(TEXT, SIZE, look, np.random.default_rng(3))
    (found,) = zxingcpp.read_barcodes(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), formats=zxingcpp.BarcodeFormat.QRCode)
    p = found.position
    seen = np.array([[c.x, c.y] for c in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)], float)
    drawn = code_corners(look, modules, SIZE)
    assert min(np.abs(np.roll(drawn, k, axis=0) - seen).max() for k in range(4)) < 2 * look.module_px
    assert in_view(look, modules, SIZE)
    assert not in_view(replace(look, center=(0.97, 0.55)), modules, SIZE)
    assert not in_view(replace(look, module_px=25), modules, SIZE)


def test_the_benchmarks_ceiling_reads_only_where_the_code_was_drawn() -> None:
    """``read_at_known_corners`` (the benchmark's ceiling) rectifies from the drawn corners: it reads a
    turned, tilted code there, not when told a place that cuts it off or misses it, and not once the
    camera blurred it away."""
    look = Look(module_px=5, center=(0.45, 0.55), angle=30, tilt=(15, -10), noise=3, jpeg_quality=60)
    grey = cv2.cvtColor(render(TEXT, SIZE, look, np.random.default_rng(3)), cv2.COLOR_BGR2GRAY)
    assert read_at_known_corners(grey, TEXT, look)
    assert not read_at_known_corners(grey, TEXT, replace(look, center=(0.45 + 8 * 5 / SIZE[0], 0.55)))
    assert not read_at_known_corners(grey, TEXT, replace(look, center=(0.2, 0.3)))
    soft = replace(look, blur_sigma=6.0)
    blurred = cv2.cvtColor(render(TEXT, SIZE, soft, np.random.default_rng(3)), cv2.COLOR_BGR2GRAY)
    assert not read_at_known_corners(blurred, TEXT, soft)


def test_a_code_cut_by_the_frames_edge_is_read_on_a_padded_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A code reaching past the frame's right edge (its quiet zone and a column of modules cut off): zxing-cpp
    locates it but gives up on a grid that runs off the image; on the crop padded with white there, error
    correction covers what is missing. Raw zxing-cpp and the decoder without the padded crop read nothing."""
    look = Look(module_px=8, center=(0.90, 0.5), noise=2, jpeg_quality=80)
    frame = render(TEXT, SIZE, look, np.random.default_rng(1))
    assert not in_view(look, qr_modules(TEXT).shape[0], SIZE)
    assert decode(frame) == [TEXT]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert TEXT not in [r.text for r in zxingcpp.read_barcodes(grey, formats=zxingcpp.BarcodeFormat.QRCode)]
    monkeypatch.setattr(decoding, "EDGE_RETRY", False)
    assert decode(frame) == []


def test_micro_qr_is_read_only_when_configured() -> None:
    micro = zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode("TPM1:42", zxingcpp.BarcodeFormat.MicroQRCode), scale=6
    )
    image = np.pad(np.asarray(micro), 40, constant_values=255)
    assert decode(image) == []  # searched for as a hint only, never reported
    assert decode(image, ("micro_qr",)) == ["TPM1:42"]
    assert decode(image, ("qr", "micro_qr")) == ["TPM1:42"]


def test_formats_restrict_what_is_read() -> None:
    barcode = zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode("COUPON-2026-0042", zxingcpp.BarcodeFormat.Code128), scale=3
    )
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


# -- the stages added for the kinds of frame raw zxing-cpp reads worst ------------------------------
# Each list was found by search with these exact seeds: frames that this one stage reads and the rest
# of the decoder does not; removing the stage must lose them.


def _frames(cases: list[tuple[int, Look]], size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    return [render(TEXT, size, look, np.random.default_rng(seed)) for seed, look in cases]


# Large modules (12-24 px) under a strong blur and low contrast at 1080p: the full-size pass locates
# nothing, the downscaled layers of the first pass read them.
LARGE_SOFT = [
    (93, Look(module_px=23.826, angle=-5.216, blur_sigma=3.630, contrast=0.411, noise=3, jpeg_quality=80)),
    (108, Look(module_px=22.272, angle=-11.949, blur_sigma=3.897, contrast=0.291, noise=3, jpeg_quality=80)),
    (110, Look(module_px=23.166, angle=0.178, blur_sigma=3.537, contrast=0.499, noise=3, jpeg_quality=80)),
    (126, Look(module_px=12.074, angle=38.324, blur_sigma=4.825, contrast=0.273, noise=3, jpeg_quality=80)),
]


def test_large_soft_codes_are_read_by_the_multi_scale_first_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames(LARGE_SOFT, (1920, 1080))
    assert sum(decode(f) == [TEXT] for f in frames) >= 3
    monkeypatch.setattr(decoding, "MULTI_SCALE", False)
    assert sum(decode(f) == [TEXT] for f in frames) == 0


# Strong defocus (sigma 2.5-3.2) on 4-6 px modules: only the deblurring retry reads them.
STRONG_BLUR = [
    (44, Look(module_px=4.368, angle=-19.351, blur_sigma=2.487, noise=2, jpeg_quality=85)),
    (56, Look(module_px=6.178, angle=-38.648, blur_sigma=3.177, noise=2, jpeg_quality=85)),
    (81, Look(module_px=5.302, angle=-23.070, blur_sigma=3.094, noise=2, jpeg_quality=85)),
    (187, Look(module_px=4.763, angle=-11.992, blur_sigma=2.606, noise=2, jpeg_quality=85)),
]


def test_a_strong_blur_is_read_by_the_deblurring_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames(STRONG_BLUR)
    assert sum(decode(f) == [TEXT] for f in frames) >= 3
    monkeypatch.setattr(decoding, "RETRIES", tuple(r for r in decoding.RETRIES if r is not decoding.deblurred))
    assert sum(decode(f) == [TEXT] for f in frames) <= 1


def test_modules_of_1_6_px_are_read_by_enlarging_the_located_code(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = render(
        TEXT,
        SIZE,
        Look(module_px=1.607, angle=35.34, blur_sigma=0.546, noise=2, jpeg_quality=85),
        np.random.default_rng(126),
    )
    assert decode(frame) == [TEXT]
    monkeypatch.setattr(decoding, "RETRIES", tuple(r for r in decoding.RETRIES if r is not decoding.enlarged))
    assert decode(frame) == []


def test_enlarging_leaves_large_crops_alone() -> None:
    assert decoding.enlarged(np.zeros((100, 100), np.uint8)).shape == (400, 400)
    assert decoding.enlarged(np.zeros((300, 300), np.uint8)).shape == (960, 960)
    assert decoding.enlarged(np.zeros((500, 500), np.uint8)) is None


def _faint_presentation() -> list[np.ndarray]:
    """Two consecutive frames of a faint, noisy code moving a few pixels (contrast 0.062, noise 14.1):
    zxing locates it in each but reads neither."""
    base = Look(module_px=6.84, angle=-37.7, contrast=0.062, noise=14.1, jpeg_quality=90)
    return [
        render(TEXT, SIZE, replace(base, center=(0.5 + 0.004 * i, 0.5 - 0.003 * i)), np.random.default_rng(278 + i))
        for i in (2, 3)
    ]


def test_consecutive_frames_combined_read_what_no_single_frame_reads() -> None:
    frames = _faint_presentation()
    assert [decode(f) for f in frames] == [[], []]
    assert all(decoding.decode_detail(f).leads for f in frames)
    stack = decoding.FrameStack()
    assert [stack.decode(f) for f in frames] == [[], [TEXT]]
    assert stack.combined_reads == 1 and stack.frames == []
    alone = decoding.FrameStack(depth=1)
    assert [alone.decode(f) for f in frames] == [[], []]


def test_a_frame_with_nothing_located_empties_the_stack() -> None:
    first, second = _faint_presentation()
    stack = decoding.FrameStack()
    assert stack.decode(first) == [] and len(stack.frames) == 1
    assert stack.decode(np.full(first.shape[:2], 128, np.uint8)) == []
    assert stack.frames == []
    assert stack.decode(second) == []  # alone again: nothing to combine it with


def test_aligned_mean_undoes_a_shift() -> None:
    rng = np.random.default_rng(4)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 2)
    shifted = np.roll(image, (3, -2), axis=(0, 1))
    mean = decoding.aligned_mean([shifted, image])
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(mean[inner].astype(int) - image[inner]).mean() < 2
    naive = ((shifted.astype(int) + image) // 2)[inner]
    assert np.abs(naive - image[inner]).mean() > 4
