"""The honest peer: the tagger in one process on the same runtime the service serves.

What a user who knows LiteRT would write (issue 15): uvicorn + FastAPI with a sync
``GET /predictions`` endpoint, which FastAPI runs in its thread pool; a blocking fetch
(``urllib``); a full decode with Pillow and the library's center crop
(:func:`prepare_in_full`: no reduced-scale decode, which is the service's design and
not what a user writes); and the library's LiteRT classifier, whose interpreters
(single-threaded by default, two of them, as ``serve_config.yaml`` asks) are taken
from a queue, one image each. It answers the service's JSON shape,
``{"url": ..., "predictions": [{"label", "confidence"}]}``.

It has no address checks or size limits: run it on loopback only, for benchmarks::

    python benchmarks/litert_server.py --port 8002 --model efficientnet_lite2 --precision int8
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks.*
from benchmarks.peer_app import DOWNLOAD_TIMEOUT_S, tagger_app
from imagetagger.errors import UnreachableURL
from imagetagger.models.options import PRECISIONS, Classifier, RuntimeOptions
from imagetagger.models.runtimes import load_model

logger = logging.getLogger("litert_server")


def fetch(url: str) -> bytes:
    """A blocking ``urllib`` download."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UnreachableURL() from exc


def create_app(model_name: str, options: RuntimeOptions) -> FastAPI:
    """The FastAPI app; the model loads (and warms up) when the server starts."""
    if options.runtime != "litert":
        raise ValueError("this peer runs the litert runtime only")

    def load() -> Classifier:
        classifier = load_model(model_name, options)
        logger.info("loaded %s on %s", model_name, options)
        return classifier

    info = {
        "description": "one-process LiteRT tagger (benchmark peer)",
        "model": model_name,
        "precision": options.precision,
    }
    return tagger_app("one-process LiteRT tagger", info, load, fetch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One-process LiteRT tagger (benchmark peer).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per interpreter (0: LiteRT's default)"
    )
    parser.add_argument("--interpreters", type=int, default=2, help="images at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    options = RuntimeOptions(
        runtime="litert",
        precision=args.precision,
        intra_op_threads=args.threads,
        interpreters=args.interpreters,
    )
    uvicorn.run(
        create_app(args.model, options),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
