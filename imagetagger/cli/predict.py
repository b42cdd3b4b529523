"""``imagetagger predict``: tag local files in this process, no cluster.

Prints one JSON object per image in the API's response shape, so scripts can use the
same parser for both. The model runs on the chosen runtime (``litert`` by default).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from imagetagger.cli.args import (
    add_labels_option,
    add_model_options,
    add_selection_options,
    model_options,
)
from imagetagger.errors import ImageTaggerError
from imagetagger.local_files import file_error, read_image_file
from imagetagger.settings import DownloaderSettings

if TYPE_CHECKING:
    from imagetagger.models.options import Classifier

PREDICT_BATCH_SIZE = 16


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    top: int | None,
    minconf: float | None,
    out: TextIO,
    labels: str = "fine",
) -> int:
    """Print one JSON line per path, in order; return how many failed.

    ``labels="general"`` adds ``general``, the general labels the API answers for the
    same ``top`` and ``minconf`` (its defaults when they are None).

    Images run through the model in batches of ``PREDICT_BATCH_SIZE``, as the service
    batches them, and each line is flushed as soon as its batch is done.
    """
    import numpy as np

    from imagetagger.hierarchy import general_labels
    from imagetagger.images import prepare_image
    from imagetagger.predictions import select_predictions

    limits = DownloaderSettings()
    spec = classifier.spec
    failures = 0
    for chunk in _chunks(paths, PREDICT_BATCH_SIZE):
        results: list[dict[str, Any]] = []
        images = []
        for path in chunk:
            try:
                data = read_image_file(path, limits.max_image_bytes)
                images.append(
                    prepare_image(
                        data,
                        size=spec.input_size,
                        crop_padding=spec.crop_padding,
                        max_pixels=limits.max_image_pixels,
                    )
                )
                results.append({"filename": path})
            except OSError as exc:
                error_type, detail = file_error(exc)
                results.append({"filename": path, "error": {"type": error_type, "detail": detail}})
            except ImageTaggerError as exc:
                results.append({"filename": path, "error": exc.to_dict()})
        if images:
            probabilities = iter(classifier.predict_proba(np.stack(images)))
            for result in results:
                if "error" not in result:
                    probs = next(probabilities)
                    result["predictions"] = select_predictions(probs, top=top, minconf=minconf)
                    if labels == "general":
                        chosen = general_labels(probs, top=top, minconf=minconf)
                        result["general"] = [label.to_dict() for label in chosen]
        for result in results:
            failures += "error" in result
            out.write(json.dumps(result) + "\n")
        out.flush()
    return failures


def run(args: argparse.Namespace) -> int:
    from imagetagger.errors import ModelLoadError
    from imagetagger.models.runtimes import load_model

    options = model_options(
        model=args.model,
        runtime=args.runtime,
        precision=args.precision,
        weights_path=args.weights_path,
    )
    try:
        classifier = load_model(
            options.model, options.runtime_options(), weights_path=options.weights_path
        )
    except ModelLoadError as exc:
        print(f"imagetagger: cannot load {args.model}: {exc}", file=sys.stderr)
        return 1
    failures = predict_files(
        classifier,
        args.paths,
        top=args.top,
        minconf=args.minconf,
        out=sys.stdout,
        labels=args.labels,
    )
    return 1 if failures else 0


def add_parser(commands: Any) -> None:
    """Register ``predict`` on the top-level subparsers."""
    predict = commands.add_parser(
        "predict",
        help="tag local image files (one JSON line per file)",
        description="Tag local image files; prints one JSON object per file, in order. "
        "Exit status 1 when any file failed.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    add_model_options(predict, defaults_from_env=True)
    add_selection_options(predict)
    add_labels_option(predict)
    predict.set_defaults(handler=run)
