"""The baseline: the tagger as a user would first write it, one uvicorn process with FastAPI.

Each request runs start to finish in FastAPI's thread pool (a sync ``def`` endpoint):
a blocking ``requests`` download, a full decode (:func:`prepare_in_full`) and center
crop, and batch-1 inference. It
keeps the original service's shape with one fix made for fairness: the model is loaded
once at startup, not rebuilt on every request as the original 1.0.0 did. Preprocessing
and the model are the library's own, so the comparison isolates the serving design.

It has no address checks or size limits: run it on loopback only, for benchmarks::

    python benchmarks/naive_server.py --port 8001 --model efficientnet_lite2
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import requests
import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from PIL import Image

from imagetagger.errors import ImageTaggerError, InvalidImage, UnreachableURL
from imagetagger.images import center_crop_resize
from imagetagger.predictions import select_predictions

logger = logging.getLogger("naive_server")

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


def create_app(model_name: str) -> FastAPI:
    """The FastAPI app; the model loads (and warms up) when the server starts."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from imagetagger.models.tensorflow_runtime import (  # TensorFlow: only in the server
            load_tensorflow_classifier as load_classifier,
        )

        state["classifier"] = load_classifier(model_name)
        logger.info("loaded %s", model_name)
        yield
        state.clear()

    app = FastAPI(title="naive image tagger", lifespan=lifespan)

    @app.exception_handler(ImageTaggerError)
    async def domain_error(_: Any, exc: ImageTaggerError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.get("/")
    def info() -> dict[str, str]:
        return {"description": "naive image tagger (benchmark baseline)", "model": model_name}

    @app.get("/predictions")
    def predictions(
        url: str,
        top: Annotated[int | None, Query(ge=1, le=1000)] = None,
        minconf: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    ) -> dict[str, Any]:
        classifier = state["classifier"]
        try:
            response = requests.get(url, timeout=DOWNLOAD_TIMEOUT_S)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise UnreachableURL() from exc
        spec = classifier.spec
        image = prepare_in_full(response.content, spec.input_size, spec.crop_padding)
        probabilities = classifier.predict_proba(image[np.newaxis])[0]
        labels = select_predictions(probabilities, top=top, minconf=minconf)
        return {"url": url, "predictions": labels}

    return app


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
