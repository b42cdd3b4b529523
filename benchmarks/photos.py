"""The photos every benchmark uses, the workloads made of them, and a loopback server.

Real photographs shipped with scikit-image (no download), encoded the same way on every
run, so figures from different runs and machines see the same bytes for a given Pillow
version. Four workloads:

- ``unique`` (the default of ``make bench``): 100 512x512 JPEGs (quality 90), varied
  crops and flips of the colour sample photos, each request a new URL
  ``/u/<photo>/<counter>.jpg`` whose bytes are the photo with a JPEG comment segment
  holding the counter: a unique URL and unique bytes per request (nothing a cache keyed
  by URL or bytes can answer), at the cost of one small copy per request;
- ``phone``: the same 100 crops at 3464x3464 (12 MP, quality 90, what a phone takes),
  ``/u/<photo>/<counter>.jpg`` alike (their own names, so their own URLs): the
  workload where decoding, not serving, is the cost;
- ``repeat``: one of those photos, the same URL and bytes every request (what a
  response cache answers);
- ``mixed``: the older set of twelve, from a 256x256 thumbnail up to 12-megapixel
  JPEGs and PNGs (RGB, RGBA, grayscale), cycled.

Benchmarks send traffic only to loopback: :class:`PhotoServer` serves every photo from
``127.0.0.1`` (HTTP/1.1, keep-alive) in a subprocess, so that it does not share a GIL
with the load generator.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import numpy as np
from PIL import Image, ImageOps

from imagetagger.serving.ports import kernel_free_port

LOOPBACK = "127.0.0.1"

WORKLOADS = ("unique", "phone", "repeat", "mixed")
DEFAULT_WORKLOAD = "unique"
#: Workloads whose every request has a new URL and new bytes.
UNIQUE_WORKLOADS = frozenset({"unique", "phone"})

#: Colour sample photos the ``unique`` set is cut from.
UNIQUE_SOURCES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "motorcycle-right",
    "hubble",
    "immunohistochemistry",
    "retina",
)
UNIQUE_COUNT = 100
UNIQUE_SIDE = 512
UNIQUE_PREFIX = "/u/"
PHONE_SIDE = 3464  # 3464 x 3464 = 12.0 megapixels, a phone camera's count

#: (source, width, height, format): the ``mixed`` set, in the order requests cycle it.
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
        "immunohistochemistry": data.immunohistochemistry,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "motorcycle-right": lambda: data.stereo_motorcycle()[1],
        "retina": data.retina,
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


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _square_crops(count: int) -> Iterator[tuple[str, Image.Image]]:
    """(source name, crop) ``count`` times: square crops (55-100% of the short side,
    anywhere in the picture, at the source's resolution), about half of them mirrored,
    of :data:`UNIQUE_SOURCES` in turn.

    The crops come from a seeded generator, so every run (and every set cut from them)
    gets the same ones.
    """
    rng = np.random.default_rng(20261201)
    sources = {name: source_image(name).convert("RGB") for name in UNIQUE_SOURCES}
    for index in range(count):
        name = UNIQUE_SOURCES[index % len(UNIQUE_SOURCES)]
        image = sources[name]
        short = min(image.size)
        crop = int(short * rng.uniform(0.55, 1.0))
        left = int(rng.integers(0, image.width - crop + 1))
        top = int(rng.integers(0, image.height - crop + 1))
        cut = image.crop((left, top, left + crop, top + crop))
        if rng.random() < 0.5:
            cut = ImageOps.mirror(cut)
        yield name, cut


def _square_set(
    prefix: str, count: int, side: int, resample: Image.Resampling
) -> tuple[Photo, ...]:
    """The crops of :func:`_square_crops`, resized to side x side, as JPEGs (quality 90)
    named ``<prefix><NNN>-<source>.jpg``."""
    return tuple(
        Photo(
            name=f"{prefix}{index:03d}-{name}.jpg",
            data=_jpeg(cut.resize((side, side), resample)),
            width=side,
            height=side,
            content_type="image/jpeg",
        )
        for index, (name, cut) in enumerate(_square_crops(count), start=1)
    )


@functools.cache
def build_unique_set(count: int = UNIQUE_COUNT, side: int = UNIQUE_SIDE) -> tuple[Photo, ...]:
    """``count`` side x side JPEGs of :func:`_square_crops` (Lanczos: they shrink)."""
    return _square_set("u", count, side, Image.Resampling.LANCZOS)


@functools.cache
def build_phone_set(count: int = UNIQUE_COUNT, side: int = PHONE_SIDE) -> tuple[Photo, ...]:
    """The ``unique`` set's photos as phone photos: the same crops at side x side
    (12 MP by default), quality 90, named ``p<NNN>-<source>.jpg``.

    Bicubic, not Lanczos: the crops grow 2.5-21x, where the two look alike and bicubic
    builds the set in half the time (100 photos, ~100 MB: tens of seconds, once per
    process). Upscaled, they are smoother than a camera's (about 1 MB each, where a
    phone writes 3-5 MB); decoding costs mostly per pixel, which is what they test.
    """
    return _square_set("p", count, side, Image.Resampling.BICUBIC)


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a COM segment holding ``text`` right after its SOI marker.

    Decoders skip comment segments, so the pixels are the same; the bytes (and any
    digest of them) are not. Cheap: one copy of the file (a phone photo is megabytes).
    """
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    if len(text) > 0xFFFF - 2:
        raise ValueError("a JPEG comment holds at most 65533 bytes")
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return b"".join((jpeg[:2], segment, memoryview(jpeg)[2:]))


def unique_path(photo_name: str, counter: int) -> str:
    """The path of request ``counter`` for one photo (``unique`` and ``phone``)."""
    return f"{UNIQUE_PREFIX}{Path(photo_name).stem}/{counter}.jpg"


def parse_unique_path(path: str) -> tuple[str, int] | None:
    """(photo stem, counter) of a ``unique`` path, or None for any other path."""
    if not path.startswith(UNIQUE_PREFIX):
        return None
    stem, _, last = path[len(UNIQUE_PREFIX) :].partition("/")
    counter = last.removesuffix(".jpg")
    if not stem or "/" in last or not last.endswith(".jpg") or not counter.isdigit():
        return None
    return stem, int(counter)


def unique_body(jpeg: bytes, counter: int) -> bytes:
    """What the server answers for request ``counter`` of a ``unique`` photo."""
    return with_comment(jpeg, f"imagetagger-bench request {counter}".encode())


@functools.cache
def build_photo_set() -> tuple[Photo, ...]:
    """The ``mixed`` photos of :data:`PHOTO_SET`, encoded (a few seconds; cached)."""
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


def workload_photos(workload: str) -> tuple[Photo, ...]:
    """The photos a workload's requests carry (``phone``: built on first use)."""
    if workload == "mixed":
        return build_photo_set()
    if workload == "phone":
        return build_phone_set()
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {WORKLOADS}")
    unique = build_unique_set()
    return unique[:1] if workload == "repeat" else unique


def photos_for(workloads: Iterable[str]) -> tuple[Photo, ...]:
    """Every photo of ``workloads``, once each (what a :class:`PhotoServer` for them
    serves)."""
    photos: dict[str, Photo] = {}
    for workload in workloads:
        photos.update((photo.name, photo) for photo in workload_photos(workload))
    return tuple(photos.values())


free_port = kernel_free_port  # the photo server binds it at once


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


class _PhotoHandler(BaseHTTPRequestHandler):
    """``GET /<name>``: a photo as stored; ``GET /u/<stem>/<counter>.jpg``: a unique copy
    (the ``unique`` and ``phone`` sets alike: their stems differ)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do
    # Headers and body leave in one write with Nagle off: as two writes on a kept-alive
    # connection, the body waited for the client's delayed ACK (40 ms per request).
    disable_nagle_algorithm = True
    files: ClassVar[dict[str, bytes]] = {}
    stems: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        unique = parse_unique_path(path)
        if unique is not None:
            stem, counter = unique
            data = self.stems.get(stem)
            body = None if data is None else unique_body(data, counter)
        else:
            body = self.files.get(path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        content_type = "image/png" if path.endswith(".png") else "image/jpeg"
        head = (
            f"{self.protocol_version} 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("ascii") + body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would cost the server more than the request


def serve_directory(directory: Path, host: str, port: int) -> None:
    """Serve every file of ``directory`` (and its ``unique`` copies) until killed."""
    files = {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}
    _PhotoHandler.files = files
    _PhotoHandler.stems = {Path(name).stem: data for name, data in files.items()}
    server = ThreadingHTTPServer((host, port), _PhotoHandler)
    server.daemon_threads = True
    server.serve_forever()


class UniqueURLs(Iterator[str]):
    """An endless iterator of unique URLs: photos in turn, one counter for all.

    One instance per workload serves a whole bench run, so no URL (and no body) comes
    twice, across load levels and servers alike. Safe to share between threads.
    """

    def __init__(self, base_url: str, photos: Sequence[Photo]) -> None:
        self._base_url = base_url
        self._photos = tuple(photos)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def __next__(self) -> str:
        with self._lock:
            counter = next(self._counter)
        photo = self._photos[counter % len(self._photos)]
        return self._base_url + unique_path(photo.name, counter)


class PhotoServer:
    """Serve photos from ``http://127.0.0.1:PORT/`` until the ``with`` block ends.

    By default the ``mixed`` set and the ``unique`` set, so that every workload but
    ``phone`` (a hundred megabytes, built on demand) can run against one server; for
    others, ``PhotoServer(photos_for(workloads))``.
    """

    def __init__(self, photos: tuple[Photo, ...] | None = None, host: str = LOOPBACK) -> None:
        self.photos = photos if photos is not None else build_photo_set() + build_unique_set()
        self.host = host
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._directory: Path | None = None
        self._unique: dict[str, UniqueURLs] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """One URL per photo, in the order given."""
        return [f"{self.base_url}/{photo.name}" for photo in self.photos]

    def workload(self, name: str) -> list[str] | UniqueURLs:
        """The image URLs of workload ``name`` (a list to cycle, or its unique iterator,
        the same one on every call)."""
        chosen = workload_photos(name)
        names = {photo.name for photo in self.photos}
        if any(photo.name not in names for photo in chosen):
            raise ValueError(f"this server does not serve the {name} set")
        if name not in UNIQUE_WORKLOADS:
            return [f"{self.base_url}/{photo.name}" for photo in chosen]
        if name not in self._unique:
            self._unique[name] = UniqueURLs(self.base_url, chosen)
        return self._unique[name]

    def __enter__(self) -> Self:
        self._directory = Path(tempfile.mkdtemp(prefix="imagetagger-photos-"))
        for photo in self.photos:
            (self._directory / photo.name).write_bytes(photo.data)
        self.port = free_port(self.host)
        command = [sys.executable, "-m", "benchmarks.photos", "serve"]
        command += ["--directory", str(self._directory), "--host", self.host]
        command += ["--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_ok(self.urls[0], timeout_s=30, process=self.process)
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
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def main(argv: list[str] | None = None) -> None:
    """List the photo sets (name, size, bytes), or ``serve`` a directory of photos."""
    parser = argparse.ArgumentParser(description="The benchmarks' photos.")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve a directory (PhotoServer's subprocess)")
    serve.add_argument("--directory", type=Path, required=True)
    serve.add_argument("--host", default=LOOPBACK)
    serve.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve_directory(args.directory, args.host, args.port)
        return
    for label in ("mixed", "unique", "phone"):
        photos = workload_photos(label)
        print(f"{label}: {len(photos)} photos, {sum(len(p.data) for p in photos):,d} B")
        for photo in photos:
            print(
                f"  {photo.name:32s} {photo.width:5d}x{photo.height:<5d} {len(photo.data):>9,d} B"
            )


if __name__ == "__main__":
    main()
