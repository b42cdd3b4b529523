"""Decode untrusted image bytes into RGB and prepare the model's square input.

Every byte string a client sends ends here, so decoding is defensive: only an allowlist
of raster formats is tried, the pixel count is checked from the header before any
pixel is decoded, truncated data is an error, and any other decoder failure becomes
``InvalidImage``. Large JPEGs are decoded at a reduced DCT scale, which is both faster
and lighter than decoding at full size and resizing afterwards.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imagetagger.errors import ImageTooLarge, InvalidImage

#: Formats Pillow may open. Plugins that shell out (EPS runs Ghostscript), parse
#: container formats (PSD, FITS, FPX, MIC, DDS, ...) or rarely see real photos stay out.
ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG",  # also opens MPO, the multi-picture JPEG many phones write
    "PNG",  # also APNG
    "GIF",
    "WEBP",
    "AVIF",
    "BMP",
    "DIB",
    "TIFF",
    "ICO",
    "PPM",  # PBM, PGM, PPM, PNM, PFM
    "TGA",
)

DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_CROP_PADDING = 32

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    crop_padding: int = DEFAULT_CROP_PADDING,
) -> Image.Image:
    """Decode ``data`` into an upright RGB image.

    ``target_size`` (with ``crop_padding``) is the square side that
    :func:`center_crop_resize` will cut later; when given, JPEGs are decoded at the
    smallest DCT scale whose center crop still has at least that many pixels.

    Raises ``ImageTooLarge`` when the header announces more than ``max_pixels`` pixels
    (nothing is decoded then), and ``InvalidImage`` for anything that is not a
    complete image in one of ``ALLOWED_FORMATS``.

    The pixel limit is checked here rather than by turning Pillow's
    ``DecompressionBombWarning`` into an error with ``warnings.catch_warnings``: that
    context manager swaps process-wide state and is not thread-safe, and decoding runs
    in worker threads. Pillow's ``DecompressionBombError`` (above twice
    ``Image.MAX_IMAGE_PIXELS``) and the warning, where a caller made warnings errors,
    are still reported as ``ImageTooLarge``.
    """
    if not data:
        raise InvalidImage()
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        _check_pixels(image, max_pixels)
        if target_size is not None and image.format in _JPEG_FORMATS:
            side = target_size + crop_padding  # short side whose crop keeps target_size
            image.draft("RGB", (side, side))
        image.load()  # the first frame of an animation; raises on truncated data
        _check_pixels(image, max_pixels)  # some plugins (ICO) settle their size on load
        _apply_exif_orientation(image)
        return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge() from exc
    except (ImageTooLarge, MemoryError):
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImage() from exc
    except Exception as exc:  # any failure of a decoder on untrusted bytes is the client's
        raise InvalidImage() from exc


def crop_side(width: int, height: int, size: int, crop_padding: int = DEFAULT_CROP_PADDING) -> int:
    """Side of the central square cut before resizing to ``size``: ``size / (size +
    crop_padding)`` of the short side (the EfficientNet evaluation crop), at least 1."""
    if size < 1 or crop_padding < 0:
        raise ValueError(f"size must be >= 1 and crop_padding >= 0, got {size}, {crop_padding}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return max(1, size * min(width, height) // (size + crop_padding))


def center_crop_resize(
    image: Image.Image, size: int, crop_padding: int = DEFAULT_CROP_PADDING
) -> np.ndarray:
    """Cut the central square and resize it (bicubic) to ``size`` x ``size``.

    The square's side is :func:`crop_side` (the EfficientNet evaluation crop); the
    aspect ratio is never distorted. Returns a
    C-contiguous ``uint8`` array of shape ``(size, size, 3)``.
    """
    width, height = image.size
    side = crop_side(width, height, size, crop_padding)
    if image.mode != "RGB":
        image = image.convert("RGB")
    left = (width - side + 1) // 2
    top = (height - side + 1) // 2
    resized = image.resize(
        (size, size),
        Image.Resampling.BICUBIC,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,  # box-reduce big images first; indistinguishable from full bicubic
    )
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


@dataclass(frozen=True)
class PreparedImage:
    """A model-ready image and the digest of the bytes it was made from."""

    digest: bytes  # SHA-256 of the image's bytes: the response cache's key
    pixels: np.ndarray  # (S, S, 3) uint8


def prepare_image(
    data: bytes,
    *,
    size: int,
    crop_padding: int = DEFAULT_CROP_PADDING,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Bytes to the model's ``(size, size, 3)`` uint8 input: decode, then center crop."""
    image = decode_image(data, max_pixels=max_pixels, target_size=size, crop_padding=crop_padding)
    return center_crop_resize(image, size, crop_padding)


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"Image is {width}x{height} pixels; this service accepts at most {max_pixels}."
        )


def _apply_exif_orientation(image: Image.Image) -> None:
    """Turn the image upright; a photo whose EXIF block is corrupt is still a photo."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # malformed EXIF: keep the pixels as stored
        return


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, high bit depths scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _HIGH_DEPTH_MODES:
        gray = _scale_to_uint8(np.asarray(image), sixteen_bit=mode.startswith("I;16"))
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _scale_to_uint8(array: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Map a single-channel 16-bit, 32-bit integer or float image onto 0..255.

    16-bit modes use their full 0..65535 range. For 32-bit integers and floats the bit
    depth is unknown, so the source range is the smallest natural one holding the data:
    0..1 (floats only), 0..255, 0..65535, else the data's own maximum. Tones are kept
    instead of saturating to white as a plain clip to 8 bits would.
    """
    if array.dtype.kind == "f":
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(array.max(initial=0))
    if sixteen_bit:
        full_scale = 65535.0
    elif array.dtype.kind == "f" and peak <= 1.0:
        full_scale = 1.0
    elif peak <= 255:
        full_scale = 255.0
    elif peak <= 65535:
        full_scale = 65535.0
    else:
        full_scale = peak
    scaled = array.astype(np.float32) * np.float32(255.0 / full_scale)
    return np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled).astype(np.uint8)
