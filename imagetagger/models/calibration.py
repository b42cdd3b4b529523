"""The calibration set for int8 LiteRT models: real photos the project may ship.

Full-integer quantization needs sample inputs to set each tensor's int8 range. These
are scikit-image's sample photos (public domain or CC0; sources below), stored as
JPEGs in ``imagetagger/data/calibration`` so a conversion runs offline, and fed to the
converter exactly as serving prepares an image (decode, centre crop, resize), each one
also mirrored. Files are read in name order, so the conversion is deterministic given
the set. ``python -m imagetagger.models.calibration --regenerate`` rebuilds the files
from scikit-image (a test extra).
"""

from __future__ import annotations

import argparse
import importlib.resources
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagetagger.images import prepare_image

# name -> (scikit-image loader, source and licence as its documentation states them)
SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut", "NASA, Eileen Collins; public domain"),
    "brick": ("brick", "CC0Textures Bricks25; CC0"),
    "camera": ("camera", "Lav Varshney; CC0"),
    "cell": ("cell", "Monika Bucher, Paul Hungerbuehler; CC0"),
    "chelsea": ("chelsea", "Stefan van der Walt; CC0"),
    "clock": ("clock", "Stefan van der Walt; public domain"),
    "coffee": ("coffee", "Rachel Michetti; CC0"),
    "coins": ("coins", "Brooklyn Museum, Greek coins; no known copyright restrictions"),
    "grass": ("grass", "CC0Textures Grass004; CC0"),
    "gravel": ("gravel", "CC0Textures Gravel04; CC0"),
    "hubble_deep_field": ("hubble_deep_field", "NASA; public domain"),
    "immunohistochemistry": ("immunohistochemistry", "no known copyright restrictions"),
    "microaneurysms": ("microaneurysms", "Andreas Maier; CC0"),
    "retina": ("retina", "Häggström, Mikael (2014); CC0"),
    "rocket": ("rocket", "SpaceX; public domain"),
    "text": ("text", "public domain"),
}
LONGEST_SIDE = 512
JPEG_QUALITY = 92


def calibration_dir() -> Path:
    return Path(str(importlib.resources.files("imagetagger").joinpath("data", "calibration")))


def calibration_files() -> list[Path]:
    """The shipped photos, in name order."""
    return sorted(calibration_dir().glob("*.jpg"))


def calibration_inputs(size: int, crop_padding: int = 32) -> list[np.ndarray]:
    """Model inputs (S, S, 3) uint8: every photo prepared as serving does, then mirrored.

    (Adding corner crops of each photo, 160 inputs, did not raise the int8 model's
    agreement with float: measured, tests/test_int8.py.)
    """
    inputs = []
    for path in calibration_files():
        image = prepare_image(path.read_bytes(), size=size, crop_padding=crop_padding)
        inputs += [image, np.ascontiguousarray(image[:, ::-1])]
    if not inputs:
        raise FileNotFoundError(f"no calibration photos in {calibration_dir()}")
    return inputs


def regenerate(target: Path) -> list[Path]:
    """Write the set from scikit-image's sample data (RGB JPEGs, longest side <= 512)."""
    import skimage.data
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (loader, _) in sorted(SOURCES.items()):
        image = Image.fromarray(getattr(skimage.data, loader)()).convert("RGB")
        image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        path = target / f"{name}.jpg"
        path.write_bytes(buffer.getvalue())
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The int8 calibration photos.")
    parser.add_argument("--regenerate", action="store_true", help="rebuild from scikit-image")
    parser.add_argument("--target", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.regenerate:
        for path in regenerate(args.target or calibration_dir()):
            print(path)
    else:
        for path in calibration_files():
            print(path.name, SOURCES[path.stem][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
