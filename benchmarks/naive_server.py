"""The baseline: the tagger as a user would first write it, one uvicorn process with FastAPI.

Each request runs start to finish in FastAPI's thread pool (a sync ``def`` endpoint):
a blocking ``requests`` download, a full decode (``benchmarks.peer_app.prepare_in_full``) and center
crop, and batch-1 inference. It
keeps the original service's shape with one fix made for fairness: the model is loaded
once at startup, not rebuilt on every request as the original 1.0.0 did. Preprocessing
and the model are the library's own, so the comparison isolates the serving design.

It has no address checks or size limits: run it on loopback only, for benchmarks::

    python benchmarks/naive_server.py --port 8001 --model efficientnet_lite2
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import requests
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks.*
from benchmarks.peer_app import DOWNLOAD_TIMEOUT_S, tagger_app
from imagetagger.errors import UnreachableURL
from imagetagger.models.options import Classifier

logger = logging.getLogger("naive_server")


def fetch(url: str) -> bytes:
    """A blocking ``requests`` download."""
    try:
        response = requests.get(url, timeout=DOWNLOAD_TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise UnreachableURL() from exc
    return response.content


def create_app(model_name: str) -> FastAPI:
    """The FastAPI app; the model loads (and warms up) when the server starts."""

    def load() -> Classifier:
        from imagetagger.models.tensorflow_runtime import (  # TensorFlow: only in the server
            load_tensorflow_classifier,
        )

        classifier = load_tensorflow_classifier(model_name)
        logger.info("loaded %s", model_name)
        return classifier

    info = {"description": "naive image tagger (benchmark baseline)", "model": model_name}
    return tagger_app("naive image tagger", info, load, fetch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Naive one-process tagger (benchmark baseline).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="efficientnet_lite2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(
        create_app(args.model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
