"""The fixed photo set every benchmark uses, and a loopback static server for it.

Real photographs shipped with scikit-image, resized (aspect-preserving crop) to sizes
from a thumbnail up to a 12-megapixel camera picture and encoded as JPEG, plus a few
PNGs (RGB, RGBA, grayscale). The set is rebuilt from the same sources on every run, so
figures from different runs and machines see the same bytes for a given Pillow version.

Benchmarks send traffic only to loopback: :class:`PhotoServer` serves the set from
``127.0.0.1`` with the standard library's HTTP server, in a subprocess so that it does
not share a GIL with the load generator.
"""

from __future__ import annotations

import functools
import io
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
from PIL import Image, ImageOps

LOOPBACK = "127.0.0.1"

#: (source, width, height, format): the photo set, in the order requests cycle through it.
PHOTO_SET: tuple[tuple[str, int, int, str], ...] = (
    ("chelsea", 256, 256, "JPEG"),
    ("astronaut", 512, 512, "JPEG"),
    ("coffee", 640, 480, "JPEG"),
    ("rocket", 1024, 768, "JPEG"),
    ("motorcycle", 1920, 1080, "JPEG"),
    ("chelsea", 2048, 1536, "JPEG"),
    ("hubble", 3000, 2000, "JPEG"),
    ("coffee", 3000, 4000, "JPEG"),
    ("astronaut", 4000, 3000, "JPEG"),
    ("astronaut", 512, 512, "PNG"),
    ("logo", 500, 500, "PNG"),  # RGBA: composited over white by the decoder
    ("camera", 512, 512, "PNG"),  # grayscale
)

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}
_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class Photo:
    """One encoded photo of the set."""

    name: str  # file name on the server, e.g. "04-rocket-1024x768.jpg"
    data: bytes
    width: int
    height: int
    content_type: str


def source_image(source: str) -> Image.Image:
    """A scikit-image sample photo (bundled with the package: no download)."""
    from skimage import data  # imported lazily: only the photo builder needs it

    loaders = {
        "astronaut": data.astronaut,
        "camera": data.camera,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "hubble": data.hubble_deep_field,
        "logo": data.logo,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "rocket": data.rocket,
    }
    try:
        array = np.asarray(loaders[source]())
    except KeyError:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(loaders)}") from None
    return Image.fromarray(array)


def encode_photo(source: str, width: int, height: int, image_format: str) -> bytes:
    """``source`` cropped to the aspect ratio of ``width`` x ``height``, resized, encoded."""
    image = ImageOps.fit(source_image(source), (width, height), Image.Resampling.LANCZOS)
    if image_format == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format=image_format)
    return buffer.getvalue()


@functools.cache
def build_photo_set() -> tuple[Photo, ...]:
    """The photos of :data:`PHOTO_SET`, encoded (a few seconds; cached per process)."""
    photos = []
    for index, (source, width, height, image_format) in enumerate(PHOTO_SET, start=1):
        extension = _EXTENSIONS[image_format]
        photos.append(
            Photo(
                name=f"{index:02d}-{source}-{width}x{height}.{extension}",
                data=encode_photo(source, width, height, image_format),
                width=width,
                height=height,
                content_type=_CONTENT_TYPES[image_format],
            )
        )
    return tuple(photos)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the usual bind-to-0 probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_until_ok(url: str, *, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``process`` has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(0.5)


class PhotoServer:
    """Serve the photo set from ``http://127.0.0.1:PORT/`` until the ``with`` block ends."""

    def __init__(self, photos: tuple[Photo, ...] | None = None, host: str = LOOPBACK) -> None:
        self.photos = photos if photos is not None else build_photo_set()
        self.host = host
        self.port = 0
        self._directory: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def urls(self) -> list[str]:
        """One URL per photo, in :data:`PHOTO_SET` order."""
        return [f"http://{self.host}:{self.port}/{photo.name}" for photo in self.photos]

    def __enter__(self) -> Self:
        self._directory = Path(tempfile.mkdtemp(prefix="imagetagger-photos-"))
        for photo in self.photos:
            (self._directory / photo.name).write_bytes(photo.data)
        self.port = free_port(self.host)
        command = [sys.executable, "-m", "http.server", "--bind", self.host]
        command += ["--directory", str(self._directory), str(self.port)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_until_ok(self.urls[0], timeout_s=30, process=self._process)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def main() -> None:
    """Print the photo set (name, size, bytes)."""
    for photo in build_photo_set():
        print(f"{photo.name:32s} {photo.width:5d}x{photo.height:<5d} {len(photo.data):>9,d} B")


if __name__ == "__main__":
    main()
