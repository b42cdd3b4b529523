"""The bulk job's steps on Arrow tables, without Ray: bytes, crops, result rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from imagetagger.bulk.stages import (
    RESULT_SCHEMA,
    STAGE_SCHEMA,
    Tagger,
    decode_batch,
    fetch_batch,
    from_binary_files,
    stage_table,
)
from imagetagger.images import prepare_image
from imagetagger.labels import LABELS
from imagetagger.models.specs import get_spec
from imagetagger.settings import DownloaderSettings
from tests import images, servers

INVALID = ("InvalidImage", "Url is not pointing to a valid image format.")
FORBIDDEN = ("ForbiddenURL", "Url resolves to an address that is not allowed.")
UNREACHABLE = ("UnreachableURL", "Url cannot be reached.")
TOO_LARGE = ("ImageTooLarge", "Image is larger than this service accepts.")
SPEC = get_spec("efficientnet_lite0")


def _rows(table: pa.Table) -> list[tuple[str, str, str, str]]:
    return [
        (row["kind"], row["source"], row["error_type"], row["error_detail"])
        for row in table.to_pylist()
    ]


def test_fetch_batch_reads_files_and_guarded_urls(tmp_path: Path) -> None:
    photo = images.jpeg_bytes(images.photo())
    (tmp_path / "cat.jpg").write_bytes(photo)
    (tmp_path / "big.jpg").write_bytes(b"\xff" * 2048)
    routes = {"/cat.jpg": servers.respond(photo, "image/jpeg")}
    with (
        servers.LoopbackServer("127.0.0.2", routes) as allowed,
        servers.LoopbackServer("127.0.0.1", routes) as forbidden,
    ):
        table = stage_table(
            ["path", "path", "path", "path", "url", "url", "url"],
            [
                str(tmp_path / "cat.jpg"),
                str(tmp_path / "gone.jpg"),
                str(tmp_path),
                str(tmp_path / "big.jpg"),
                allowed.url("/cat.jpg"),
                allowed.url("/missing.jpg"),
                forbidden.url("/cat.jpg"),
            ],
            [b""] * 7,
            [("", "")] * 7,
        )
        settings = DownloaderSettings(allowed_networks=["127.0.0.2/32"]).model_dump()
        result = fetch_batch(table, settings=settings)
        small = fetch_batch(table.slice(3, 1), settings={"max_image_bytes": 1024})
        assert forbidden.connections == 0  # no byte reached the forbidden address
    assert result.schema == STAGE_SCHEMA
    errors = [(t, d) for _, _, t, d in _rows(result)]
    assert errors == [
        ("", ""),
        ("FileNotFound", "No such file or directory"),
        ("UnreadableFile", "Is a directory"),
        ("", ""),
        ("", ""),
        UNREACHABLE,
        FORBIDDEN,
    ]
    data = result.column("data").to_pylist()
    assert data[0] == photo and data[4] == photo
    assert _rows(small)[0][2:] == TOO_LARGE


def test_decode_batch_makes_the_models_crop_or_an_error() -> None:
    photo = images.jpeg_bytes(images.photo())
    table = stage_table(
        ["path"] * 4,
        ["/a.jpg", "/notes.jpg", "/empty.png", "/gone.jpg"],
        [photo, b"just text\n", b"", b""],
        [("", ""), ("", ""), ("", ""), ("FileNotFound", "No such file or directory")],
    )
    result = decode_batch(table, size=224, crop_padding=32, max_pixels=64_000_000)
    crop = prepare_image(photo, size=224, crop_padding=32)
    assert result.column("data").to_pylist() == [crop.tobytes(), b"", b"", b""]
    assert [r[2:] for r in _rows(result)] == [
        ("", ""),
        INVALID,
        INVALID,
        ("FileNotFound", "No such file or directory"),
    ]
    assert (
        _rows(decode_batch(table.slice(0, 1), size=224, crop_padding=32, max_pixels=100))[0][2]
        == "ImageTooLarge"
    )


class _FakeClassifier:
    """Class index = the crop's first byte, so each row's label shows which crop it got."""

    spec = SPEC

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        probs = np.full((batch.shape[0], 1000), 0.5 / 999, dtype=np.float32)
        probs[np.arange(batch.shape[0]), batch[:, 0, 0, 0]] = 0.5
        return probs


def test_tagger_runs_only_good_rows_and_keeps_errors() -> None:
    def crop(value: int) -> bytes:
        return np.full((224, 224, 3), value, dtype=np.uint8).tobytes()

    table = stage_table(
        ["path", "url", "path"],
        ["/a.jpg", "http://127.0.0.2/b.jpg", "/c.jpg"],
        [crop(7), b"", crop(200)],
        [("", ""), UNREACHABLE, ("", "")],
    )
    fake = _FakeClassifier()
    config: dict[str, Any] = {"model": "efficientnet_lite0", "runtime": "litert", "top": 1}
    result = Tagger(config, classifier=fake)(table)
    assert fake.batches == [2]
    assert result.schema == RESULT_SCHEMA
    assert result.to_pylist() == [
        {
            "path": "/a.jpg",
            "url": None,
            "predictions": [{"label": LABELS[7], "confidence": 0.5}],
            "error": None,
            "general": None,  # not asked for (--labels general)
        },
        {
            "path": None,
            "url": "http://127.0.0.2/b.jpg",
            "predictions": None,
            "error": {"type": UNREACHABLE[0], "detail": UNREACHABLE[1]},
            "general": None,
        },
        {
            "path": "/c.jpg",
            "url": None,
            "predictions": [{"label": LABELS[200], "confidence": 0.5}],
            "error": None,
            "general": None,
        },
    ]


def test_tagger_adds_the_apis_general_labels_when_asked() -> None:
    from imagetagger.bulk.output import json_lines
    from imagetagger.hierarchy import general_labels

    crop = np.full((224, 224, 3), 7, dtype=np.uint8).tobytes()
    table = stage_table(["path"], ["/a.jpg"], [crop], [("", "")])
    config: dict[str, Any] = {"model": "efficientnet_lite0", "runtime": "litert"}
    fake = _FakeClassifier()
    result = Tagger({**config, "labels": "general"}, classifier=fake)(table)
    assert result.schema == RESULT_SCHEMA
    probs = fake.predict_proba(np.zeros((1, 1, 1, 1), dtype=np.uint8) + 7)[0]
    expected = [label.to_dict() for label in general_labels(probs)]
    (row,) = result.to_pylist()
    assert [g["label"] for g in row["general"]] == [g["label"] for g in expected]
    assert len(row["general"]) >= 3  # the API's default: at least 3 labels
    plain = Tagger(config, classifier=_FakeClassifier())(table)
    assert '"general"' not in json_lines(plain)  # the fine answer stays as it was


def test_from_binary_files_keeps_the_path() -> None:
    table = pa.table({"bytes": pa.array([b"abc"], pa.binary()), "path": ["/x/a.jpg"]})
    assert _rows(from_binary_files(table)) == [("path", "/x/a.jpg", "", "")]
    assert from_binary_files(table).column("data").to_pylist() == [b"abc"]


def test_fetch_batch_keeps_the_downloaders_per_host_cap() -> None:
    """The bulk job's fetcher is the service's, per-host cap included: with
    ``max_connections_per_host`` 2, eight slow URLs on one host never hold 3 at once."""
    photo = images.jpeg_bytes(images.photo())
    routes = {"/slow.jpg": servers.delayed(servers.respond(photo, "image/jpeg"), 0.3)}
    with servers.LoopbackServer("127.0.0.2", routes) as origin:
        urls = [origin.url(f"/slow.jpg?n={n}") for n in range(8)]
        table = stage_table(["url"] * 8, urls, [b""] * 8, [("", "")] * 8)
        settings = DownloaderSettings(
            allowed_networks=["127.0.0.2/32"], max_connections_per_host=2
        ).model_dump()
        result = fetch_batch(table, settings=settings)
        assert origin.peak_connections == 2
    assert [t for _, _, t, _ in _rows(result)] == [""] * 8
