"""``imagetagger tag`` end to end on a local Ray: a directory and a manifest of URLs.

The rows must be exactly what ``imagetagger predict`` says for the same files (the
same decode, crop, model and top-5), one per input, with the API's errors for the
bad ones; JSONL and Parquet must read back to the same rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data

from imagetagger import cli
from tests import images, servers

MODEL = "efficientnet_lite0"
TEST_PHOTOS = Path(__file__).resolve().parents[1] / "data"
INVALID = {"type": "InvalidImage", "detail": "Url is not pointing to a valid image format."}
FORMATS = (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif"),
           ("TIFF", "tif"))  # fmt: skip
PHOTOS = (skimage.data.chelsea, skimage.data.coffee, skimage.data.astronaut, skimage.data.rocket)

pytestmark = pytest.mark.usefixtures("local_ray")


def _photo_variant(index: int) -> np.ndarray:
    """A distinct small picture: a crop of one of the photos, 48-143 px on a side."""
    photo = PHOTOS[index % len(PHOTOS)]()
    rng = np.random.default_rng(index)
    height, width = photo.shape[:2]
    h, w = rng.integers(height // 3, height), rng.integers(width // 3, width)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    crop = photo[top : top + h, left : left + w]
    step = max(1, min(h, w) // int(rng.integers(48, 144)))
    return np.ascontiguousarray(crop[::step, ::step])


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 images in 6 formats (some two folders down), 3 broken ones, a README."""
    root = tmp_path_factory.mktemp("collection")
    for index in range(200):
        fmt, ext = FORMATS[index % len(FORMATS)]
        folder = root / ext / ("deep" if index % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{index:03d}.{ext}").write_bytes(images.encode(_photo_variant(index), fmt))
    (root / "truncated.jpg").write_bytes(images.truncated(images.jpeg_bytes(images.photo())))
    (root / "notes.jpg").write_text("these are my notes, not a picture\n")
    (root / "empty.png").write_bytes(b"")
    (root / "README.txt").write_text("photos from the trip\n")
    return root


@dataclass
class Run:
    status: int
    stdout: str
    out: Path


def tag(out: Path, *args: str) -> Run:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main(["tag", *args, "--out", str(out), "--model", MODEL, "--top", "5"])
    return Run(status, stdout.getvalue(), out)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows as JSONL has them (absent keys, not nulls), from either format."""
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        return [{k: v for k, v in row.items() if v is not None} for row in rows]
    return [json.loads(line) for line in path.read_text().splitlines()]


def predicted(paths: list[str]) -> dict[str, dict[str, Any]]:
    """What ``imagetagger predict --top 5`` prints for each path, keyed by path."""
    from imagetagger.models.runtimes import RuntimeOptions, load_model

    classifier = load_model(MODEL, RuntimeOptions(runtime="litert"))
    out = io.StringIO()
    cli.predict_files(classifier, paths, top=5, minconf=None, out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return {line.pop("filename"): line for line in lines}


@pytest.fixture(scope="module")
def directory_run(collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return tag(tmp_path_factory.mktemp("out") / "tags.parquet", str(collection))


def test_directory_gives_one_row_per_image_file(collection: Path, directory_run: Run) -> None:
    assert directory_run.status == 0
    rows = read_rows(directory_run.out)
    image_files = sorted(str(p) for p in collection.rglob("*") if p.is_file())
    image_files.remove(str(collection / "README.txt"))
    assert len(rows) == 203
    assert sorted(row["path"] for row in rows) == image_files
    errors = {Path(row["path"]).name: row["error"] for row in rows if "error" in row}
    assert errors == {"truncated.jpg": INVALID, "notes.jpg": INVALID, "empty.png": INVALID}
    assert all(len(row["predictions"]) == 5 for row in rows if "error" not in row)
    assert re.fullmatch(
        r"imagetagger tag: 203 rows: 200 images, 3 errors \(InvalidImage 3\), "
        r"1 skipped \(not an image 1\); \d+\.\d s, \d+\.\d images/s -> .*tags\.parquet\n",
        directory_run.stdout,
    )


def test_directory_rows_equal_imagetagger_predict(directory_run: Run) -> None:
    rows = {row.pop("path"): row for row in read_rows(directory_run.out)}
    assert rows == predicted(sorted(rows))


@pytest.fixture(scope="module")
def url_server(collection: Path) -> Any:
    cat = (collection / "jpg" / "deep" / "img000.jpg").read_bytes()
    routes = {
        "/cat.jpg": servers.respond(cat, "image/jpeg"),
        "/coffee.png": servers.respond(
            (collection / "png" / "img001.png").read_bytes(), "image/png"
        ),
        "/notes.jpg": servers.respond(b"not an image", "image/jpeg"),
    }
    with (
        servers.LoopbackServer("127.0.0.2", routes) as allowed,
        servers.LoopbackServer("127.0.0.1", routes) as forbidden,
    ):
        yield allowed, forbidden


@pytest.fixture(scope="module")
def manifest(collection: Path, url_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    allowed, forbidden = url_server
    path = tmp_path_factory.mktemp("manifest") / "list.txt"
    lines = [
        allowed.url("/cat.jpg"),
        allowed.url("/coffee.png"),
        allowed.url("/notes.jpg"),
        allowed.url("/missing.jpg"),  # 404
        forbidden.url("/cat.jpg"),  # loopback outside --allow-network
        str(collection / "gif" / "img004.gif"),
        str(collection / "gone.jpg"),
    ]
    path.write_text("# a manifest\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_manifest_of_urls_and_paths(
    collection: Path, manifest: Path, url_server: Any, tmp_path: Path, suffix: str
) -> None:
    allowed, forbidden = url_server
    run = tag(tmp_path / f"tags{suffix}", str(manifest), "--allow-network", "127.0.0.2/32")
    assert run.status == 0
    rows = {row.get("url") or row.get("path"): row for row in read_rows(run.out)}
    expected = predicted(
        [
            str(collection / "jpg" / "deep" / "img000.jpg"),
            str(collection / "png" / "img001.png"),
            str(collection / "gif" / "img004.gif"),
        ]
    )
    cat, coffee, gif = expected.values()
    gif_path = str(collection / "gif" / "img004.gif")
    gone = str(collection / "gone.jpg")
    assert rows == {
        allowed.url("/cat.jpg"): {"url": allowed.url("/cat.jpg"), **cat},
        allowed.url("/coffee.png"): {"url": allowed.url("/coffee.png"), **coffee},
        allowed.url("/notes.jpg"): {"url": allowed.url("/notes.jpg"), "error": INVALID},
        allowed.url("/missing.jpg"): {
            "url": allowed.url("/missing.jpg"),
            "error": {"type": "UnreachableURL", "detail": "Url cannot be reached."},
        },
        forbidden.url("/cat.jpg"): {
            "url": forbidden.url("/cat.jpg"),
            "error": {
                "type": "ForbiddenURL",
                "detail": "Url resolves to an address that is not allowed.",
            },
        },
        gif_path: {"path": gif_path, **gif},
        gone: {
            "path": gone,
            "error": {"type": "FileNotFound", "detail": "No such file or directory"},
        },
    }
    assert forbidden.connections == 0
    assert (
        "7 rows: 3 images, 4 errors (FileNotFound 1, ForbiddenURL 1, InvalidImage 1, "
        "UnreachableURL 1), 0 skipped;" in run.stdout
    )


def test_a_model_that_cannot_load_exits_1_and_writes_nothing(
    collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.pth"
    out = tmp_path / "tags.jsonl"
    run = tag(out, str(collection / "gif"), "--weights-path", str(missing))
    assert run.status == 1
    assert "rows:" not in run.stdout  # no summary (Ray itself may print the actor's error)
    assert (
        f"imagetagger tag: cannot load {MODEL}: model '{MODEL}': weights file '{missing}' "
        "is unreadable" in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def _predict_lines(*argv: str) -> dict[str, dict[str, Any]]:
    """What ``imagetagger predict ARGV`` prints, keyed by file name."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["predict", *argv]) == 0
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    return {line.pop("filename"): line for line in lines}


def test_tag_precision_int8_matches_predict_precision_int8(tmp_path: Path) -> None:
    """``--precision`` reaches the bulk job's model: its rows are exactly what
    ``imagetagger predict --precision int8`` says for the test photos (and not float's)."""
    photos = [str(TEST_PHOTOS / "chelsea.jpg"), str(TEST_PHOTOS / "coffee.jpg")]
    run = tag(tmp_path / "int8.jsonl", *photos, "--precision", "int8")
    assert run.status == 0
    rows = {row.pop("path"): row for row in read_rows(run.out)}
    common = ("--model", MODEL, "--top", "5")
    assert rows == _predict_lines(*photos, *common, "--precision", "int8")
    assert rows != _predict_lines(*photos, *common)  # float32's confidences differ
