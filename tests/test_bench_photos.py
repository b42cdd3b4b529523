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

from benchmarks.photos import (
    UNIQUE_SIDE,
    Photo,
    PhotoServer,
    UniqueURLs,
    build_unique_set,
    parse_unique_path,
    unique_body,
    unique_path,
    with_comment,
)
from imagetagger.images import prepare_image


@pytest.fixture(scope="module")
def unique_set() -> tuple[Photo, ...]:
    return build_unique_set()


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
