"""The image corpus the test suite feeds the service: made in memory, returned as bytes.

Photos come from scikit-image's bundled data (``skimage.data.chelsea()`` is a tabby
cat). Everything else is encoded here with Pillow or written byte by byte: every
Pillow mode, EXIF orientations, animations, hostile and malformed inputs, and
decompression bombs that cost little to build.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

#: Real photos on disk (CC0, from scikit-image; see data/README.md).
DATA_DIR = Path(__file__).parent / "data"

EXIF_ORIENTATION_TAG = 0x0112

#: Colors of the four quadrants of :func:`quadrant_image`, as seen upright.
QUADRANT_COLORS: dict[str, tuple[int, int, int]] = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 0),
}

HTML = b"<!DOCTYPE html>\n<html><head><title>Not an image</title></head><body>hi</body></html>\n"
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
)
PDF_LOOKING = (
    b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)
EPS_LOOKING = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n"
)
PSD_LOOKING = (
    b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10\x00\x08\x00\x03"
)
JSON = b'{"error": "this is JSON, not a picture"}'


# --- photos and encoders -------------------------------------------------------------


def photo() -> np.ndarray:
    """The tabby cat photo, ``(300, 451, 3)`` uint8 RGB."""
    return skimage.data.chelsea()


def coffee() -> np.ndarray:
    """A cup of coffee, ``(400, 600, 3)`` uint8 RGB."""
    return skimage.data.coffee()


def encode(image: Image.Image | np.ndarray, fmt: str, **params: object) -> bytes:
    """Encode with Pillow; ``params`` go to ``Image.save``."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray, quality: int = 90, **params: object) -> bytes:
    return encode(array, "JPEG", quality=quality, **params)


def png_bytes(array: np.ndarray, **params: object) -> bytes:
    return encode(array, "PNG", **params)


def gray(array: np.ndarray) -> np.ndarray:
    """Pillow's ITU-R 601-2 luma of an RGB array, uint8."""
    return np.asarray(Image.fromarray(array).convert("L"))


@functools.cache
def large_jpeg(width: int = 4000, height: int = 3000, quality: int = 90) -> bytes:
    """A camera-sized JPEG of the cat (upscaled, so it still looks like a cat)."""
    image = Image.fromarray(photo()).resize((width, height), Image.Resampling.BILINEAR)
    return jpeg_bytes(np.asarray(image), quality=quality)


# --- every mode -------------------------------------------------------------------------


def transparent_band(array: np.ndarray, width: int = 60) -> np.ndarray:
    """RGBA copy of ``array`` whose leftmost ``width`` columns are transparent black."""
    rgba = np.dstack([array, np.full(array.shape[:2], 255, np.uint8)])
    rgba[:, :width] = 0  # black and fully transparent
    return rgba


def mode_variants(array: np.ndarray) -> dict[str, bytes]:
    """``array`` (RGB) saved in every Pillow mode a client can send, keyed ``mode.format``.

    Keys containing ``transparent`` have their leftmost 60 columns fully transparent
    (and black underneath where the format stores a color there).
    16-bit, 32-bit and float variants hold the luma scaled to their full range.
    """
    rgb = Image.fromarray(array)
    luma = gray(array)
    band = Image.fromarray(transparent_band(array))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    palette_transparent = palette.copy()
    # Index 255 is black and marked transparent: it must show white, never black.
    colors = palette_transparent.getpalette() or []
    palette_transparent.putpalette(colors[: 255 * 3] + [0] * (768 - len(colors[: 255 * 3])))
    palette_transparent.paste(255, (0, 0, 60, array.shape[0]))
    luma16 = luma.astype(np.uint16) * 257
    return {
        "1.png": encode(rgb.convert("1"), "PNG"),
        "1.pbm": encode(rgb.convert("1"), "PPM"),
        "L.jpeg": encode(rgb.convert("L"), "JPEG", quality=95),
        "L.png": encode(rgb.convert("L"), "PNG"),
        "L.pgm": encode(rgb.convert("L"), "PPM"),
        "L-transparent.png": encode(_gray_with_key(luma), "PNG", transparency=1),
        "LA-transparent.png": encode(band.convert("LA"), "PNG"),
        "LA-transparent.tiff": encode(band.convert("LA"), "TIFF"),
        "P.png": encode(palette, "PNG"),
        "P.gif": encode(palette, "GIF"),
        "P.bmp": encode(palette, "BMP"),
        "P-transparent.png": encode(palette_transparent, "PNG", transparency=255),
        "P-transparent.gif": encode(palette_transparent, "GIF", transparency=255),
        "RGB.jpeg": jpeg_bytes(array, quality=95),
        "RGB-progressive.jpeg": jpeg_bytes(array, quality=95, progressive=True),
        "RGB.png": encode(rgb, "PNG"),
        "RGB.webp": encode(rgb, "WEBP", lossless=True),
        "RGB.avif": encode(rgb, "AVIF", quality=95),
        "RGB.bmp": encode(rgb, "BMP"),
        "RGB.tiff": encode(rgb, "TIFF", compression="tiff_deflate"),
        "RGB-jpeg.tiff": encode(rgb, "TIFF", compression="jpeg"),
        "RGB.ppm": encode(rgb, "PPM"),
        "RGB.tga": encode(rgb, "TGA"),
        "RGB.ico": encode(rgb.resize((256, 256)), "ICO", sizes=[(256, 256)]),
        "RGBA-transparent.png": encode(band, "PNG"),
        "RGBA-transparent.webp": encode(band, "WEBP", lossless=True),
        "RGBA-transparent.tiff": encode(band, "TIFF"),
        "RGBA-transparent.tga": encode(band, "TGA"),
        "CMYK.jpeg": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "CMYK.tiff": encode(rgb.convert("CMYK"), "TIFF"),
        "LAB.tiff": encode(rgb.convert("LAB"), "TIFF"),
        "I;16.png": encode(Image.fromarray(luma16), "PNG"),
        "I;16.tiff": encode(Image.fromarray(luma16), "TIFF"),
        "I;16B.tiff": encode(Image.frombytes("I;16B", rgb.size, luma16.astype(">u2")), "TIFF"),
        "I.pgm": encode(Image.fromarray(luma16), "PPM"),  # 16-bit PGM opens as mode I
        "I.tiff": encode(Image.fromarray(luma16.astype(np.int32)), "TIFF"),
        "F.tiff": encode(Image.fromarray(luma.astype(np.float32) / 255), "TIFF"),
    }


@functools.cache
def photo_mode_variants() -> dict[str, bytes]:
    """:func:`mode_variants` of :func:`photo`, built once per test session."""
    return mode_variants(photo())


def _gray_with_key(luma: np.ndarray) -> Image.Image:
    """Grayscale image whose value 1 is the tRNS colour key: the left band becomes it."""
    keyed = np.where(luma == 1, 2, luma).astype(np.uint8)
    keyed[:, :60] = 1
    return Image.fromarray(keyed)


# --- orientation ------------------------------------------------------------------------


def quadrant_image(width: int = 160, height: int = 96) -> np.ndarray:
    """A non-square RGB image with one flat color per quadrant (see QUADRANT_COLORS)."""
    image = np.zeros((height, width, 3), np.uint8)
    half_h, half_w = height // 2, width // 2
    image[:half_h, :half_w] = QUADRANT_COLORS["top_left"]
    image[:half_h, half_w:] = QUADRANT_COLORS["top_right"]
    image[half_h:, :half_w] = QUADRANT_COLORS["bottom_left"]
    image[half_h:, half_w:] = QUADRANT_COLORS["bottom_right"]
    return image


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that EXIF ``orientation`` displays ``upright``.

    Written from the EXIF 2.3 definition of the tag (where the stored 0th row and 0th
    column appear when displayed), independently of Pillow's transpose table.
    """
    stored = {
        1: lambda a: a,
        2: np.fliplr,  # 0th row top, 0th column right
        3: lambda a: np.rot90(a, 2),  # 0th row bottom, 0th column right
        4: np.flipud,  # 0th row bottom, 0th column left
        5: lambda a: np.transpose(a, (1, 0, 2)),  # 0th row left, 0th column top
        6: lambda a: np.rot90(a, 1),  # 0th row right, 0th column top
        7: lambda a: np.fliplr(np.rot90(a, 1)),  # 0th row right, 0th column bottom
        8: lambda a: np.rot90(a, -1),  # 0th row left, 0th column bottom
    }[orientation](upright)
    return np.ascontiguousarray(stored)


def exif_oriented_jpeg(upright: np.ndarray, orientation: int, quality: int = 95) -> bytes:
    """A JPEG that displays as ``upright`` once its EXIF ``orientation`` is applied."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    stored = stored_for_orientation(upright, orientation)
    return jpeg_bytes(stored, quality=quality, exif=exif.tobytes())


# --- animations -------------------------------------------------------------------------


def animated(fmt: str, colors: tuple[tuple[int, int, int], ...], size=(64, 48)) -> bytes:
    """An animation (GIF, PNG for APNG, or WEBP) with one flat color per frame."""
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def mpo(frames: list[np.ndarray], quality: int = 85) -> bytes:
    """A multi-picture JPEG (what phones write for portrait or 3D shots)."""
    images = [Image.fromarray(frame) for frame in frames]
    return encode(images[0], "MPO", save_all=True, append_images=images[1:], quality=quality)


# --- malformed and hostile input --------------------------------------------------------


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of ``data``: a download cut short."""
    return data[: int(len(data) * keep)]


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def png_then_html() -> bytes:
    """A valid PNG with an HTML page appended: still a PNG (decoders stop at IEND)."""
    return png_bytes(photo()) + HTML


def html_then_png() -> bytes:
    """An HTML page that embeds PNG bytes after its markup: not an image."""
    return HTML + png_bytes(photo()[:32, :32])


def gif_script_polyglot() -> bytes:
    """The classic GIF/JavaScript polyglot: ``GIF89a/*`` header, script in the comment."""
    return b"GIF89a/*\x00\x00\x00\x00\x00\x00\x00\x00*/=1;alert(document.domain);//"


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


@functools.cache
def png_bomb(width: int = 20000, height: int = 20000, *, complete: bool = True) -> bytes:
    """A valid all-black 1-bit PNG of ``width`` x ``height``, tens of kilobytes on disk.

    Decoded by Pillow it would take ``width * height`` bytes (400 MB at 20000x20000).
    ``complete=False`` writes only the first row of pixel data: same header, few bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    full_blocks, rest = divmod(height if complete else 1, 1000)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(full_blocks)]
    parts.append(compressor.compress(row * rest))
    parts.append(compressor.flush())
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_header_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header claims ``width`` x ``height`` (at most 65535 each)."""
    data = bytearray(jpeg_bytes(photo()[:64, :64], quality=80))
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise AssertionError("baseline JPEG without SOF0 marker")
    # marker(2) length(2) precision(1) then height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_header_size(width: int, height: int) -> bytes:
    """A small GIF whose logical screen and first frame claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (8, 8), 0), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    descriptor = data.find(b"\x2c")  # image descriptor: left, top, width, height
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def formats_outside_allowlist() -> dict[str, bytes]:
    """Real files in formats Pillow can read but the service refuses to open."""
    small = Image.fromarray(photo()[:64, :64])
    return {
        "JPEG2000": encode(small, "JPEG2000"),
        "PCX": encode(small, "PCX"),
        "SGI": encode(small, "SGI"),
        "QOI": encode(small, "QOI"),
        "DDS": encode(small.convert("RGBA"), "DDS"),
        "ICNS": encode(small.resize((128, 128)), "ICNS"),
        "IM": encode(small, "IM"),
        "SPIDER": encode(small.convert("F"), "SPIDER"),
        "XBM": encode(small.convert("1"), "XBM"),
        "MSP": encode(small.convert("1"), "MSP"),
        "EPS": encode(small, "EPS"),
        "PDF": encode(small, "PDF"),
    }
