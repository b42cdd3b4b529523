"""The same general labels on the CLI, and how they read on real photos (issue 30).

The service's routes and the bulk job have their own tests; this file checks
``imagetagger predict --labels general`` and measures the labelled photos of
``tests/data/photos`` as ``benchmarks/general_labels.py`` does, holding the issue's bar.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from imagetagger.cli.predict import predict_files
from imagetagger.hierarchy import general_labels, hierarchy
from imagetagger.label_apis import cloud_vision, rekognition
from imagetagger.label_apis.common import display_name
from imagetagger.labels import LABELS, NUM_CLASSES
from tests.paths import TEST_DATA
from tests.photos import CHELSEA_PATH

PHOTOS = TEST_DATA / "photos"


def _fake_classifier(probs: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(
        spec=SimpleNamespace(input_size=32, crop_padding=0),
        predict_proba=lambda batch: np.tile(probs, (batch.shape[0], 1)),
    )


def _chelsea() -> np.ndarray:
    probs = np.full(NUM_CLASSES, 0.149 / (NUM_CLASSES - 3))
    for label, value in (("Egyptian_cat", 0.614), ("tiger_cat", 0.142), ("tabby", 0.095)):
        probs[LABELS.index(label)] = value
    return probs


@pytest.mark.parametrize(("top", "minconf"), [(None, None), (3, None), (None, 0.1)])
def test_predict_labels_general_answers_as_the_api(top: int | None, minconf: float | None) -> None:
    probs = _chelsea()
    out = io.StringIO()
    failures = predict_files(
        _fake_classifier(probs), [str(CHELSEA_PATH)], top=top, minconf=minconf, out=out,
        labels="general",
    )  # fmt: skip
    assert failures == 0
    (line,) = out.getvalue().splitlines()
    answer = json.loads(line)
    expected = [label.to_dict() for label in general_labels(probs, top=top, minconf=minconf)]
    assert answer["general"] == json.loads(json.dumps(expected))
    assert answer["predictions"]


def test_predict_without_labels_general_answers_as_before() -> None:
    out = io.StringIO()
    predict_files(
        _fake_classifier(_chelsea()), [str(CHELSEA_PATH)], top=None, minconf=None, out=out
    )
    assert set(json.loads(out.getvalue())) == {"filename", "predictions"}


def _rows() -> list[dict[str, str]]:
    with (PHOTOS / "labels.tsv").open(encoding="utf-8") as lines:
        return list(csv.DictReader(lines, delimiter="\t"))


def test_every_labelled_photo_is_there_with_known_classes() -> None:
    rows = _rows()
    assert len(rows) >= 50
    for row in rows:
        assert (PHOTOS / row["file"]).is_file(), row["file"]
        assert all(name in LABELS for name in row["right"].split("|") if name), row
    readme = (PHOTOS.parent / "README.md").read_text("utf-8")
    assert all(row["file"] in readme for row in rows)  # each with its source and licence


def test_labelled_photos_read_as_a_label_api_user_expects(lite2_litert_classifier) -> None:
    """Issue 30's bar with each API's default parameters, on photos of open licence."""
    from imagetagger.images import prepare_image

    spec = lite2_litert_classifier.spec
    tree = hierarchy()
    vocabulary = {display_name(tree.label(i, 0.0).name) for i in range(len(tree))}
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"x").decode()}})
    request = rekognition.parse_request(body, rekognition.TARGET)
    confident = hits = 0
    for row in _rows():
        image = prepare_image(
            (PHOTOS / row["file"]).read_bytes(),
            size=spec.input_size,
            crop_padding=spec.crop_padding,
            max_pixels=100_000_000,
        )
        probs = lite2_litert_classifier.predict_proba(image[None])[0]
        vision = [
            a["description"]
            for a in cloud_vision.image_labels(probs, cloud_vision.DEFAULT_MAX_RESULTS)[
                "labelAnnotations"
            ]
        ]
        aws = [x["Name"] for x in rekognition.detect_labels_response(probs, request, "t")["Labels"]]
        assert len(vision) >= 3 and len(aws) >= 1, row["file"]
        assert set(vision) <= vocabulary and set(aws) <= vocabulary, row["file"]
        top1 = int(np.argmax(probs))
        if LABELS[top1] in row["right"].split("|") and probs[top1] >= 0.5:
            confident += 1
            name = display_name(LABELS[top1].replace("_", " "))
            hits += name in vision[:5] and name in aws[:5]
    assert confident >= 15
    assert hits >= 0.9 * confident
