"""How general labels read to a Cloud Vision or Rekognition user, on eye-labelled photos.

For each photo of ``tests/data/photos`` (listed with its right ImageNet class(es) in
``labels.tsv``) the model's probabilities are computed in this process (LiteRT,
efficientnet_lite2, float32; no Ray), then labelled as each API answers a client that
sends its default parameters: Cloud Vision ``LABEL_DETECTION`` without ``maxResults``,
Rekognition ``DetectLabels`` with only ``Image``, and ``/predictions?labels=general``
with neither ``top`` nor ``minconf``. It prints, per API:

- photos with fewer than 3 labels, and with none;
- labels outside the display vocabulary (``--vocabulary``, default the shipped one);
- of the photos whose right fine class the model gives >= 0.5 as its top-1, how many
  have that class among the first 5 labels.

    python benchmarks/general_labels.py [--show chelsea.jpg,macaw.jpg]

To measure the code of another commit, run this file with that checkout first on
``PYTHONPATH`` and ``--photos``/``--vocabulary`` pointing here (docs/API.md did so).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent.parent
PHOTOS = HERE / "tests" / "data" / "photos"
VOCABULARY = HERE / "imagetagger" / "data" / "label_hierarchy.json"
CONFIDENT = 0.5
FIRST = 5


def probabilities(photos: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The model's 1000 probabilities for each photo, as the service computes them."""
    from imagetagger.images import prepare_image
    from imagetagger.models.litert import load_litert_classifier

    model = load_litert_classifier("efficientnet_lite2", precision="float32", pool_size=1)
    spec = model.spec
    found = {}
    for name in names:
        image = prepare_image(
            (photos / name).read_bytes(),
            size=spec.input_size,
            crop_padding=spec.crop_padding,
            max_pixels=100_000_000,
        )
        found[name] = np.asarray(model.predict_proba(image[None])[0], dtype=np.float64)
    return found


def answers(probs: np.ndarray) -> dict[str, list[str]]:
    """Each API's label names for one photo, in answer order, with default parameters."""
    from imagetagger import hierarchy
    from imagetagger.label_apis import cloud_vision, rekognition
    from imagetagger.label_apis.common import display_name

    vision = cloud_vision.image_labels(probs, cloud_vision.DEFAULT_MAX_RESULTS)
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"photo").decode()}})
    request = rekognition.parse_request(body, rekognition.TARGET)
    aws = rekognition.detect_labels_response(probs, request, "benchmark")
    if hasattr(hierarchy, "DEFAULT_TOP"):  # the library owns the defaults
        general = hierarchy.general_labels(probs)
    else:  # before: the ingress applied top=10, minconf=0.5 when neither was sent
        general = hierarchy.general_labels(probs, top=10, minconf=0.5)
    return {
        "Cloud Vision": [a["description"] for a in vision.get("labelAnnotations", [])],
        "Rekognition": [label["Name"] for label in aws["Labels"]],
        "labels=general": [display_name(label.name) for label in general],
    }


def class_label(wnid: str) -> str:
    """How the running library names a fine class in an answer ("Egyptian cat")."""
    from imagetagger.hierarchy import hierarchy
    from imagetagger.label_apis.common import display_name

    tree = hierarchy()
    return display_name(tree.label(tree.ids.index(wnid), 0.0).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--vocabulary", type=Path, default=VOCABULARY)
    parser.add_argument("--show", default="", help="comma-separated photos to print in full")
    args = parser.parse_args(argv)

    from imagetagger.label_apis.common import display_name
    from imagetagger.labels import LABELS, WNIDS

    with (args.photos / "labels.tsv").open(encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines, delimiter="\t"))
    nodes = json.loads(args.vocabulary.read_text("utf-8"))["nodes"]
    vocabulary = {display_name(node["name"]) for node in nodes.values()}
    probs = probabilities(args.photos, [row["file"] for row in rows])

    stats: dict[str, dict[str, Any]] = {}
    for row in rows:
        p = probs[row["file"]]
        top1 = int(np.argmax(p))
        right = {LABELS.index(name) for name in row["right"].split("|") if name}
        confident = top1 in right and p[top1] >= CONFIDENT
        for api, names in answers(p).items():
            s = stats.setdefault(api, {"under3": 0, "none": 0, "outside": [], "hit": 0, "of": 0})
            s["under3"] += len(names) < 3
            s["none"] += not names
            s["outside"] += [n for n in names if n not in vocabulary]
            if confident:
                s["of"] += 1
                s["hit"] += class_label(WNIDS[top1]) in names[:FIRST]
            if row["file"] in args.show.split(","):
                print(f"{row['file']} {api}: {', '.join(names)}")
    print(f"{len(rows)} photos; model top-1 right and >= {CONFIDENT}: {stats['Rekognition']['of']}")
    print(
        "| API (default parameters) | < 3 labels | no label | labels outside the vocabulary "
        f"| right class in the first {FIRST} |"
    )
    print("|---|---|---|---|---|")
    for api, s in stats.items():
        outside = sorted(set(s["outside"]))
        shown = ", ".join(outside[:8]) + (", ..." if len(outside) > 8 else "")
        print(
            f"| {api} | {s['under3']} | {s['none']} | {len(s['outside'])} ({shown}) "
            f"| {s['hit']} of {s['of']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
