"""What the two one-process peers share: their endpoint shape and their full decode.

``litert_server.py`` (the headline peer) and ``naive_server.py`` (the old baseline)
differ only in how they fetch and which classifier they load; both answer the
service's JSON shape with a sync FastAPI endpoint (run in FastAPI's thread pool), as
a user's one-process server would.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from PIL import Image

from imagetagger.errors import ImageTaggerError, InvalidImage
from imagetagger.images import center_crop_resize
from imagetagger.models.options import Classifier
from imagetagger.predictions import select_predictions

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


def tagger_app(
    title: str,
    info: dict[str, str],
    load: Callable[[], Classifier],
    fetch: Callable[[str], bytes],
) -> FastAPI:
    """``GET /`` (``info``) and ``GET /predictions`` on the classifier ``load`` returns
    when the server starts; ``fetch`` downloads (raising UnreachableURL)."""
    state: dict[str, Classifier] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["classifier"] = load()
        yield
        state.clear()

    app = FastAPI(title=title, lifespan=lifespan)

    @app.exception_handler(ImageTaggerError)
    async def domain_error(_: Any, exc: ImageTaggerError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.get("/")
    def service_info() -> dict[str, str]:
        return info

    @app.get("/predictions")
    def predictions(
        url: str,
        top: Annotated[int | None, Query(ge=1, le=1000)] = None,
        minconf: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    ) -> dict[str, Any]:
        classifier = state["classifier"]
        spec = classifier.spec
        image = prepare_in_full(fetch(url), spec.input_size, spec.crop_padding)
        probabilities = classifier.predict_proba(image[np.newaxis])[0]
        labels = select_predictions(probabilities, top=top, minconf=minconf)
        return {"url": url, "predictions": labels}

    return app
