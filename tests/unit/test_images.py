"""Decoding and preprocessing of untrusted image bytes (imagetagger.images)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from imagetagger.errors import ImageTooLarge, InvalidImage
from imagetagger.images import (
    ALLOWED_FORMATS,
    center_crop_resize,
    crop_side,
    decode_image,
    prepare_image,
)
from tests import images as corpus

PHOTO = corpus.photo()
PHOTO_HEIGHT, PHOTO_WIDTH = PHOTO.shape[:2]
VARIANTS = corpus.photo_mode_variants()
GRAY_MODES = ("1.", "L.", "L-", "LA-", "I;16", "I.", "F.")
HIGH_DEPTH = ("I;16.png", "I;16.tiff", "I;16B.tiff", "I.pgm", "I.tiff", "F.tiff")
INVALID_DETAIL = "Url is not pointing to a valid image format."


def block_means(array: np.ndarray, block: int = 10) -> np.ndarray:
    """Means over ``block`` x ``block`` tiles: compares dithered or lossy images fairly."""
    height = array.shape[0] // block * block
    width = array.shape[1] // block * block
    tiles = array[:height, :width].astype(np.float64)
    return tiles.reshape(height // block, block, width // block, block, -1).mean(axis=(1, 3))


def as_array(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


# --- every mode -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(name for name in VARIANTS if not name.endswith(".ico")))
def test_every_mode_decodes_to_the_photo_in_rgb(name: str) -> None:
    decoded = as_array(decode_image(VARIANTS[name]))
    assert decoded.shape == PHOTO.shape
    assert decoded.dtype == np.uint8

    opaque = slice(60, None) if "transparent" in name else slice(None)
    if name.startswith(GRAY_MODES):
        assert (decoded[..., 0] == decoded[..., 1]).all()
        assert (decoded[..., 1] == decoded[..., 2]).all()
        expected = corpus.gray(PHOTO)[..., None]
        got = decoded[:, opaque, :1]
    else:
        expected = PHOTO
        got = decoded[:, opaque]
    error = np.abs(block_means(got) - block_means(expected[:, opaque])).mean()
    assert error < 3.0, f"{name}: mean tile error {error:.2f}"


@pytest.mark.parametrize("name", sorted(name for name in VARIANTS if "transparent" in name))
def test_transparent_pixels_are_composited_on_white(name: str) -> None:
    decoded = as_array(decode_image(VARIANTS[name]))
    band = decoded[:, :60].astype(int)
    assert band.min() >= 250, f"{name}: transparent band is not white (min {band.min()})"


@pytest.mark.parametrize("name", HIGH_DEPTH)
def test_high_bit_depth_is_scaled_not_clipped(name: str) -> None:
    decoded = as_array(decode_image(VARIANTS[name]))
    expected = corpus.gray(PHOTO).astype(int)
    assert np.abs(decoded[..., 0].astype(int) - expected).max() <= 1
    assert decoded.max() == expected.max() < 255  # the photo has no pure white


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # floats in 0..1
        ("F", [0.0, 100.0, 255.0], [0, 100, 255]),  # floats in 0..255
        ("F", [-5.0, float("nan"), float("inf"), 1.0], [0, 0, 0, 255]),  # NaN, inf, < 0
        ("I", [0, 200, 255], [0, 200, 255]),  # 32-bit holding 8-bit data
        ("I", [0, 32768, 65535], [0, 128, 255]),  # 32-bit holding 16-bit data
        ("I", [0, 600_000, 1_000_000], [0, 153, 255]),  # wider: scaled by its maximum
        ("I;16", [0, 255, 65535], [0, 1, 255]),  # 16-bit is always 16-bit
    ],
)
def test_high_depth_ranges(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = {"F": np.float32, "I": np.int32, "I;16": np.uint16}[mode]
    image = Image.fromarray(np.array([values], dtype=dtype))
    assert image.mode == mode
    decoded = as_array(decode_image(corpus.encode(image, "TIFF")))
    assert decoded[0, :, 0].tolist() == expected


def test_ico_decodes_its_largest_icon() -> None:
    decoded = as_array(decode_image(VARIANTS["RGB.ico"]))
    assert decoded.shape == (256, 256, 3)


def test_in_memory_modes_without_a_file_format_convert_in_crop() -> None:
    image = Image.fromarray(PHOTO).convert("YCbCr")
    out = center_crop_resize(image, 64, 0)
    expected = center_crop_resize(Image.fromarray(PHOTO), 64, 0)
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - expected).mean() < 2


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_yields_its_first_frame(fmt: str) -> None:
    data = corpus.animated(fmt, ((255, 0, 0), (0, 0, 255), (0, 255, 0)))
    decoded = as_array(decode_image(data)).astype(int)
    assert decoded.shape == (48, 64, 3)
    assert np.abs(decoded - [255, 0, 0]).max() <= 8


def test_valid_png_with_trailing_html_still_decodes() -> None:
    assert as_array(decode_image(corpus.png_then_html())).shape == PHOTO.shape


# --- EXIF orientation ---------------------------------------------------------------------


def quadrant_colors(image: np.ndarray) -> dict[str, tuple[int, ...]]:
    """The color at the center of each quadrant."""
    height, width = image.shape[:2]
    points = {
        "top_left": (height // 4, width // 4),
        "top_right": (height // 4, 3 * width // 4),
        "bottom_left": (3 * height // 4, width // 4),
        "bottom_right": (3 * height // 4, 3 * width // 4),
    }
    return {name: tuple(int(c) for c in image[y, x]) for name, (y, x) in points.items()}


def assert_upright_quadrants(image: np.ndarray) -> None:
    for name, color in quadrant_colors(image).items():
        expected = corpus.QUADRANT_COLORS[name]
        assert max(abs(a - b) for a, b in zip(color, expected, strict=True)) <= 12, name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = corpus.quadrant_image(160, 96)
    data = corpus.exif_oriented_jpeg(upright, orientation)
    stored_height = 160 if orientation >= 5 else 96
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size[1] == stored_height  # the file really is stored rotated
    decoded = as_array(decode_image(data))
    assert decoded.shape == (96, 160, 3)
    assert_upright_quadrants(decoded)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_with_draft_decoding(orientation: int) -> None:
    upright = corpus.quadrant_image(4000, 3000)
    data = corpus.exif_oriented_jpeg(upright, orientation, quality=80)
    decoded = as_array(decode_image(data, target_size=260))
    assert decoded.shape == (375, 500, 3)  # decoded at 1/8 scale, then turned upright
    assert_upright_quadrants(decoded)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_out_of_range_orientation_leaves_pixels_as_stored(orientation: int) -> None:
    upright = corpus.quadrant_image(160, 96)
    exif = Image.Exif()
    exif[corpus.EXIF_ORIENTATION_TAG] = orientation
    data = corpus.jpeg_bytes(upright, quality=95, exif=exif.tobytes())
    decoded = as_array(decode_image(data))
    assert decoded.shape == (96, 160, 3)
    assert_upright_quadrants(decoded)


# --- rejected input -------------------------------------------------------------------------


NOT_IMAGES = {
    "zero_bytes": b"",
    "one_byte": b"\xff",
    "html": corpus.HTML,
    "svg": corpus.SVG,
    "pdf_looking": corpus.PDF_LOOKING,
    "eps_looking": corpus.EPS_LOOKING,
    "psd_looking": corpus.PSD_LOOKING,
    "json": corpus.JSON,
    "random_1k": corpus.random_bytes(1024, seed=1),
    "random_64k": corpus.random_bytes(65536, seed=2),
    "html_then_png": corpus.html_then_png(),
    "gif_script_polyglot": corpus.gif_script_polyglot(),
    "png_signature_only": b"\x89PNG\r\n\x1a\n",
    "jpeg_soi_only": b"\xff\xd8\xff",
    **{f"format_{name}": data for name, data in corpus.formats_outside_allowlist().items()},
}


@pytest.mark.parametrize("name", sorted(NOT_IMAGES))
def test_not_an_allowed_image_is_invalid(name: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(NOT_IMAGES[name])
    assert caught.value.detail == INVALID_DETAIL
    assert caught.value.status_code == 400


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("keep", [0.5, 0.9])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_truncated_image_is_invalid(name: str, keep: float) -> None:
    with pytest.raises(InvalidImage):
        decode_image(corpus.truncated(VARIANTS[name], keep))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_missing_only_its_end_marker_is_invalid() -> None:
    data = VARIANTS["RGB.jpeg"]
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(InvalidImage):
        decode_image(data[:-2])


def test_allowlist_excludes_risky_plugins() -> None:
    assert {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"} <= set(ALLOWED_FORMATS)
    assert not {"EPS", "PDF", "PSD", "FITS", "JPEG2000", "DDS", "ICNS", "MIC"} & set(
        ALLOWED_FORMATS
    )


# --- size limits ------------------------------------------------------------------------------


def test_png_bomb_is_rejected_fast_and_without_decoding() -> None:
    bomb = corpus.png_bomb(20000, 20000)
    assert len(bomb) < 100_000  # 400 megapixels in under 100 kB
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(bomb)
    assert time.perf_counter() - started < 0.5
    assert caught.value.status_code == 413


def test_png_bomb_does_not_allocate_its_pixels() -> None:
    """Measured in a fresh process: decoding would need 400 MB, rejection needs nothing."""
    script = (
        "import resource, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "import images\n"
        "from imagetagger.images import decode_image\n"
        "from imagetagger.errors import ImageTooLarge\n"
        "bomb = images.png_bomb(20000, 20000)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    decode_image(bomb)\n"
        "except ImageTooLarge:\n"
        "    pass\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    grown_mib = int(done.stdout.strip())
    assert grown_mib < 20


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("width", "height"),
    [
        (9000, 8000),  # 72 MP: above the service limit, below Pillow's warning
        (10000, 10000),  # 100 MP: Pillow warns
        (65535, 65535),  # 4.3 GP: Pillow raises
    ],
)
def test_header_size_is_checked_before_decoding(width: int, height: int) -> None:
    # Only the header is large: were the pixels decoded, the file would be truncated.
    for data in (
        corpus.jpeg_with_header_size(width, height),
        corpus.gif_with_header_size(width, height),
        corpus.png_bomb(width, height, complete=False),
    ):
        with pytest.raises(ImageTooLarge):
            decode_image(data)


def test_pillow_bomb_error_is_too_large_whatever_max_pixels_says() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(corpus.jpeg_with_header_size(65535, 65535), max_pixels=10**10)


def test_pillow_bomb_warning_made_an_error_is_too_large() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLarge) as caught:
            decode_image(corpus.jpeg_with_header_size(10000, 10000), max_pixels=10**9)
    assert isinstance(caught.value.__cause__, Image.DecompressionBombWarning)


def test_concurrent_decoding_in_threads() -> None:
    """The service decodes in worker threads: results stay right, no global state leaks."""
    filters = list(warnings.filters)
    inputs = [VARIANTS["RGB.png"], corpus.png_bomb(), corpus.HTML, VARIANTS["CMYK.jpeg"]] * 16

    def outcome(data: bytes) -> str:
        try:
            return str(decode_image(data, max_pixels=1_000_000).size)
        except (ImageTooLarge, InvalidImage) as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(outcome, inputs))
    assert results == ["(451, 300)", "ImageTooLarge", "InvalidImage", "(451, 300)"] * 16
    assert warnings.filters == filters


def test_max_pixels_boundary_is_inclusive() -> None:
    data = VARIANTS["RGB.png"]
    pixels = PHOTO_WIDTH * PHOTO_HEIGHT
    assert as_array(decode_image(data, max_pixels=pixels)).shape == PHOTO.shape
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=pixels - 1)
    assert f"{PHOTO_WIDTH}x{PHOTO_HEIGHT}" in caught.value.detail


def test_max_pixels_applies_to_prepare_image() -> None:
    with pytest.raises(ImageTooLarge):
        prepare_image(VARIANTS["RGB.jpeg"], size=64, max_pixels=1000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_global_state_is_left_alone() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    filters = list(warnings.filters)
    for data in (corpus.png_bomb(), corpus.jpeg_with_header_size(10000, 10000), PHOTO.tobytes()):
        with pytest.raises((ImageTooLarge, InvalidImage)):
            decode_image(data)
    decode_image(VARIANTS["RGB.jpeg"])
    assert pillow_limit == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- draft decoding of large JPEGs -------------------------------------------------------------


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    data = corpus.large_jpeg(4000, 3000)
    assert decode_image(data).size == (4000, 3000)
    assert decode_image(data, target_size=260).size == (500, 375)  # DCT scale 1/8


@pytest.mark.parametrize(
    ("width", "height", "target", "expected"),
    [
        (584, 584, 260, (292, 292)),  # half size still holds 260 + 32
        (583, 583, 260, (583, 583)),  # half would be too small: full size
        (1200, 900, 224, (600, 450)),  # a quarter would leave 225 < 256: half
        (2048, 1024, 224, (512, 256)),  # a quarter leaves exactly 256
        (640, 480, 600, (640, 480)),  # target above the image: no reduction
    ],
)
def test_draft_keeps_enough_pixels_for_the_crop(
    width: int, height: int, target: int, expected: tuple[int, int]
) -> None:
    data = corpus.jpeg_bytes(np.zeros((height, width, 3), np.uint8), quality=50)
    decoded = decode_image(data, target_size=target)
    assert decoded.size == expected
    assert min(decoded.size) >= min(target + 32, width, height)


def test_draft_output_matches_full_decode_and_is_faster() -> None:
    data = corpus.large_jpeg(4000, 3000)

    def full() -> np.ndarray:
        return center_crop_resize(decode_image(data), 260)

    def draft() -> np.ndarray:
        return prepare_image(data, size=260)

    assert np.abs(draft().astype(int) - full()).mean() < 4.0
    full_s = min(timed(full) for _ in range(3))
    draft_s = min(timed(draft) for _ in range(3))
    assert draft_s < full_s / 2, f"draft {draft_s * 1000:.1f} ms, full {full_s * 1000:.1f} ms"


def test_mpo_takes_its_first_picture_at_reduced_scale() -> None:
    first = np.asarray(Image.open(io.BytesIO(corpus.large_jpeg(4000, 3000))))
    data = corpus.mpo([first, np.zeros_like(first)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    decoded = as_array(decode_image(data, target_size=260))
    assert decoded.shape == (375, 500, 3)
    assert decoded.mean() > 60  # the cat, not the black second picture


def test_draft_is_only_applied_to_jpeg() -> None:
    data = corpus.png_bytes(np.zeros((1200, 1600, 3), np.uint8))
    assert decode_image(data, target_size=224).size == (1600, 1200)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


# --- center crop and resize ------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 224, 260, 300])
@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (256, 256), (1, 1), (3, 2000)])
def test_center_crop_resize_shape_and_layout(size: int, shape: tuple[int, int]) -> None:
    image = Image.fromarray(np.full((*shape, 3), 77, np.uint8))
    out = center_crop_resize(image, size)
    assert out.shape == (size, size, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert (out == 77).all()


def test_crop_side_is_the_evaluation_crop() -> None:
    assert crop_side(451, 300, 224, 32) == 224 * 300 // 256 == 262
    assert crop_side(300, 451, 224, 32) == 262 and crop_side(256, 256, 100, 0) == 256
    assert crop_side(1, 1, 224, 32) == 1
    for bad in ((0, 10, 224, 32), (10, 10, 0, 32), (10, 10, 224, -1)):
        with pytest.raises(ValueError):
            crop_side(*bad)


@pytest.mark.parametrize(("width", "height"), [(300, 200), (200, 300), (451, 300), (256, 256)])
@pytest.mark.parametrize(("size", "padding"), [(100, 0), (224, 32), (260, 32)])
def test_center_crop_takes_the_central_square(
    width: int, height: int, size: int, padding: int
) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    side = crop_side(width, height, size, padding)
    left, top = (width - side + 1) // 2, (height - side + 1) // 2
    expected = np.asarray(
        image.crop((left, top, left + side, top + side)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
    )
    out = center_crop_resize(image, size, padding)
    # Interior pixels agree; Pillow's box resize may read a pixel past the box at the rim.
    assert np.abs(out[3:-3, 3:-3].astype(int) - expected[3:-3, 3:-3]).max() <= 2


def test_center_crop_never_squashes() -> None:
    # Red | blue square | green; the crop of a 300x200 image at padding 0 is the blue square.
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :50] = (255, 0, 0)
    image[:, 50:250] = (0, 0, 255)
    image[:, 250:] = (0, 255, 0)
    out = center_crop_resize(Image.fromarray(image), 100, 0).astype(int)
    assert (out[:, 2:-2] == (0, 0, 255)).all()


def test_center_crop_resize_rejects_bad_sizes() -> None:
    image = Image.fromarray(PHOTO)
    with pytest.raises(ValueError):
        center_crop_resize(image, 0)
    with pytest.raises(ValueError):
        center_crop_resize(image, 224, -1)


# --- prepare_image ---------------------------------------------------------------------------


def test_prepare_image_is_decode_then_crop() -> None:
    data = VARIANTS["RGB.png"]
    out = prepare_image(data, size=224)
    assert out.shape == (224, 224, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, center_crop_resize(decode_image(data), 224))


def test_prepare_image_of_a_small_photo_is_an_upscaled_center() -> None:
    tiny = corpus.png_bytes(PHOTO[::10, ::10])  # 30 x 46
    out = prepare_image(tiny, size=260)
    assert out.shape == (260, 260, 3)


@pytest.mark.parametrize(
    ("name", "shape"), [("chelsea.jpg", (300, 451)), ("coffee.jpg", (400, 600))]
)
def test_shipped_photos_decode(name: str, shape: tuple[int, int]) -> None:
    decoded = as_array(decode_image((corpus.DATA_DIR / name).read_bytes()))
    assert decoded.shape == (*shape, 3)


def test_library_imports_no_ray_or_tensorflow() -> None:
    script = (
        "import sys, json, imagetagger.images, imagetagger.predictions, imagetagger.labels\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ray', 'tensorflow', 'keras', 'torch'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


# --- property tests ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_random_bytes_only_raise_domain_errors(data: bytes) -> None:
    try:
        out = prepare_image(data, size=32)
    except (InvalidImage, ImageTooLarge):
        return
    assert out.shape == (32, 32, 3)


SEEDS = {name: VARIANTS[name] for name in ("RGB.jpeg", "RGB.png", "P.gif", "RGB.webp", "RGB.tiff")}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 1 << 20),
)
def test_corrupted_images_only_raise_domain_errors(
    name: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(SEEDS[name])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        out = prepare_image(bytes(data), size=32)
    except (InvalidImage, ImageTooLarge):
        return
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8
