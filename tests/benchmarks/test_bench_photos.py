"""The benchmark workloads' photos: unique bytes per request that still decode alike."""

from __future__ import annotations

import hashlib
import http.client
import io
import itertools
import statistics
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from benchmarks import photos as photos_module
from benchmarks.photos import (
    PHONE_SIDE,
    UNIQUE_SIDE,
    Photo,
    PhotoServer,
    UniqueURLs,
    build_phone_set,
    build_photo_set,
    build_unique_set,
    parse_unique_path,
    photos_for,
    unique_body,
    unique_path,
    with_comment,
)
from imagetagger.images import prepare_image


@pytest.fixture(scope="module")
def unique_set() -> tuple[Photo, ...]:
    return build_unique_set()


@pytest.fixture(scope="module")
def small_phone_set() -> tuple[Photo, ...]:
    """The phone set's 100 photos at 64 px: the same crops, names and encoding, fast."""
    return build_phone_set.__wrapped__(side=64)


@pytest.fixture(scope="module")
def phone_photo() -> Photo:
    """The first phone photo at its real size (3464x3464, 12 MP)."""
    return build_phone_set.__wrapped__(count=1)[0]


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


def test_unique_set_is_100_distinct_512px_jpegs(unique_set: tuple[Photo, ...]) -> None:
    assert len(unique_set) == 100
    assert len({hashlib.sha256(p.data).digest() for p in unique_set}) == 100
    assert len({p.name for p in unique_set}) == 100
    for photo in unique_set[:10]:
        with Image.open(io.BytesIO(photo.data)) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (UNIQUE_SIDE,) * 2, "RGB")


def test_unique_set_is_rebuilt_byte_for_byte() -> None:
    rebuilt = build_unique_set.__wrapped__(count=4)
    assert [p.data for p in rebuilt] == [p.data for p in build_unique_set()[:4]]


def test_counter_copies_are_valid_distinct_and_decode_to_the_same_pixels(
    unique_set: tuple[Photo, ...],
) -> None:
    original = unique_set[0].data
    copies = [unique_body(original, counter) for counter in (0, 1, 2, 10**9)]
    assert len({hashlib.sha256(c).digest() for c in [original, *copies]}) == 5
    expected = _pixels(original)
    for copy in copies:
        assert copy[:2] == b"\xff\xd8" and copy.endswith(original[-2:])
        np.testing.assert_array_equal(_pixels(copy), expected)
    # What the service and the peers do with the bytes: the same model input.
    np.testing.assert_array_equal(
        prepare_image(copies[-1], size=260, crop_padding=32),
        prepare_image(original, size=260, crop_padding=32),
    )


def test_comment_segment_layout() -> None:
    jpeg = b"\xff\xd8\xff\xe0rest"
    assert with_comment(jpeg, b"abc") == b"\xff\xd8\xff\xfe\x00\x05abc\xff\xe0rest"


@pytest.mark.parametrize(
    ("data", "text"), [(b"\x89PNG\r\n", b"x"), (b"\xff\xd8rest", b"x" * 65534)]
)
def test_comment_refuses_non_jpeg_and_oversized_text(data: bytes, text: bytes) -> None:
    with pytest.raises(ValueError):
        with_comment(data, text)


def test_unique_path_round_trip() -> None:
    path = unique_path("u017-coffee.jpg", 4242)
    assert path == "/u/u017-coffee/4242.jpg"
    assert parse_unique_path(path) == ("u017-coffee", 4242)


@pytest.mark.parametrize(
    "path",
    ["/u017-coffee.jpg", "/u//1.jpg", "/u/a/b/1.jpg", "/u/a/x.jpg", "/u/a/1.png", "/u/a/-1.jpg"],
)
def test_other_paths_are_not_unique_paths(path: str) -> None:
    assert parse_unique_path(path) is None


def test_unique_urls_never_repeat_and_cycle_the_photos(unique_set: tuple[Photo, ...]) -> None:
    urls = UniqueURLs("http://127.0.0.1:1", unique_set[:3])
    first = list(itertools.islice(urls, 6))
    later = list(itertools.islice(urls, 6))  # a later load run shares the counter
    assert len(set(first + later)) == 12
    stems = [parse_unique_path(u.removeprefix("http://127.0.0.1:1"))[0] for u in first]
    assert stems == [p.name.removesuffix(".jpg") for p in unique_set[:3]] * 2


def test_server_answers_unique_copies_and_plain_files(unique_set: tuple[Photo, ...]) -> None:
    photos = unique_set[:2]
    with PhotoServer(photos) as server:

        def get(path: str) -> bytes:
            with urllib.request.urlopen(server.base_url + path, timeout=10) as response:
                assert response.headers["Content-Type"] == "image/jpeg"
                return response.read()

        assert get("/" + photos[1].name) == photos[1].data
        assert get(unique_path(photos[0].name, 7)) == unique_body(photos[0].data, 7)
        assert get(unique_path(photos[0].name, 8)) != get(unique_path(photos[0].name, 7))
        for missing in ("/nothing.jpg", unique_path("u999-nothing.jpg", 1)):
            with pytest.raises(urllib.error.HTTPError) as error:
                get(missing)
            assert error.value.code == 404
        with pytest.raises(ValueError, match="does not serve"):
            server.workload("mixed")


def test_kept_alive_connections_get_answers_without_a_delayed_ack_stall(
    unique_set: tuple[Photo, ...],
) -> None:
    """Headers and body in two writes made every kept-alive answer wait ~40 ms for the
    client's delayed ACK: the service (aiohttp, pooled connections) paid it, the peers
    (a new connection per request) did not."""
    photos = unique_set[:1]
    with PhotoServer(photos) as server:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            times = []
            for counter in range(12):
                started = time.perf_counter()
                connection.request("GET", unique_path(photos[0].name, counter))
                response = connection.getresponse()
                assert response.read() == unique_body(photos[0].data, counter)
                assert not response.will_close  # one connection for all twelve
                times.append(time.perf_counter() - started)
        finally:
            connection.close()
    assert statistics.median(times[2:]) < 0.025, times


def test_phone_set_is_100_distinct_photos_with_names_of_their_own(
    small_phone_set: tuple[Photo, ...], unique_set: tuple[Photo, ...]
) -> None:
    assert len(small_phone_set) == 100
    assert len({hashlib.sha256(p.data).digest() for p in small_phone_set}) == 100
    assert [p.name for p in small_phone_set] == ["p" + p.name.removeprefix("u") for p in unique_set]
    stems = {parse_unique_path(unique_path(p.name, 1))[0] for p in small_phone_set + unique_set}
    assert len(stems) == 200  # a phone URL never names a 512-px photo


def test_phone_photos_are_the_unique_set_s_crops(unique_set: tuple[Photo, ...]) -> None:
    """Resized alike, the two sets' photos show the same picture."""
    small_phone = build_phone_set.__wrapped__(count=9, side=UNIQUE_SIDE)
    for phone, web in zip(small_phone, unique_set, strict=False):
        difference = np.abs(_pixels(phone.data).astype(int) - _pixels(web.data).astype(int))
        assert difference.mean() < 4, phone.name  # bicubic vs Lanczos, two JPEG passes


def test_phone_photo_is_a_12_megapixel_quality_90_jpeg(phone_photo: Photo) -> None:
    assert round(PHONE_SIDE**2 / 1e6, 1) == 12.0  # 11,999,296 pixels
    assert (phone_photo.width, phone_photo.height) == (PHONE_SIDE, PHONE_SIDE)
    with Image.open(io.BytesIO(phone_photo.data)) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (PHONE_SIDE,) * 2, "RGB")
        tables = image.quantization
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", quality=90)
    with Image.open(buffer) as reference:
        assert tables == reference.quantization


def test_phone_set_is_rebuilt_byte_for_byte() -> None:
    first = build_phone_set.__wrapped__(count=3, side=96)
    assert [p.data for p in build_phone_set.__wrapped__(count=3, side=96)] == [
        p.data for p in first
    ]


def test_server_answers_phone_copies_and_its_workload(
    small_phone_set: tuple[Photo, ...],
    phone_photo: Photo,
    unique_set: tuple[Photo, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phone = (phone_photo, *small_phone_set[1:3])
    monkeypatch.setattr(photos_module, "build_phone_set", lambda: phone)
    with PhotoServer((*phone, *unique_set[:1])) as server:

        def get(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.read()

        urls = server.workload("phone")
        assert server.workload("phone") is urls  # one counter for the whole run
        bodies = [get(next(urls)) for _ in range(4)]
        assert bodies[0] == unique_body(phone_photo.data, 0)  # 12 MP, in full
        assert bodies[3] == unique_body(phone_photo.data, 3)  # the photos in turn
        assert len({hashlib.sha256(b).digest() for b in bodies}) == 4
        np.testing.assert_array_equal(
            prepare_image(bodies[1], size=260, crop_padding=32),
            prepare_image(phone[1].data, size=260, crop_padding=32),
        )
        web = get(server.base_url + unique_path(unique_set[0].name, 0))
        assert web == unique_body(unique_set[0].data, 0)


def test_photos_for_serves_each_photo_once(unique_set: tuple[Photo, ...]) -> None:
    assert photos_for(["unique", "repeat", "unique"]) == unique_set
    assert photos_for(["mixed", "unique"]) == build_photo_set() + unique_set
    with pytest.raises(ValueError, match="unknown workload"):
        photos_for(["nope"])
