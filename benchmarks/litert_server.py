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
import io
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from PIL import Image

from imagetagger.errors import ImageTaggerError, InvalidImage, UnreachableURL
from imagetagger.images import center_crop_resize
from imagetagger.models.options import PRECISIONS, RuntimeOptions
from imagetagger.models.runtimes import load_model
from imagetagger.predictions import select_predictions

logger = logging.getLogger("litert_server")

DOWNLOAD_TIMEOUT_S = 10.0


def prepare_in_full(data: bytes, size: int, crop_padding: int) -> np.ndarray:
    """Decode in full, as a user would (Pillow ``open`` + ``convert("RGB")``), then the
    library's center crop and resize.

    The library's ``prepare_image`` decodes a big JPEG at a reduced DCT scale
    (``Image.draft``): the service's design, not what a user's server does. On the
    512-px photos the draft never reduces (half of 512 is below the 292-px side a
    260-px crop needs), so there the two give the same pixels at the same cost (within
    the RGB copy ``convert`` makes, ~0.3 ms); on 12-MP photos this decodes 64x the
    pixels the service does.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as exc:  # not an image, truncated, ...
        raise InvalidImage() from exc
    return center_crop_resize(rgb, size, crop_padding)


def create_app(model_name: str, options: RuntimeOptions) -> FastAPI:
    """The FastAPI app; the model loads (and warms up) when the server starts."""
    if options.runtime != "litert":
        raise ValueError("this peer runs the litert runtime only")
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["classifier"] = load_model(model_name, options)
        logger.info("loaded %s on %s", model_name, options)
        yield
        state.clear()

    app = FastAPI(title="one-process LiteRT tagger", lifespan=lifespan)

    @app.exception_handler(ImageTaggerError)
    async def domain_error(_: Any, exc: ImageTaggerError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.get("/")
    def info() -> dict[str, str]:
        return {
            "description": "one-process LiteRT tagger (benchmark peer)",
            "model": model_name,
            "precision": options.precision,
        }

    @app.get("/predictions")
    def predictions(
        url: str,
        top: Annotated[int | None, Query(ge=1, le=1000)] = None,
        minconf: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    ) -> dict[str, Any]:
        classifier = state["classifier"]
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UnreachableURL() from exc
        spec = classifier.spec
        image = prepare_in_full(data, spec.input_size, spec.crop_padding)
        probabilities = classifier.predict_proba(image[np.newaxis])[0]
        labels = select_predictions(probabilities, top=top, minconf=minconf)
        return {"url": url, "predictions": labels}

    return app


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
