"""The tagging routes of the contract: ``GET /``, ``GET``/``POST /predictions``, the batch.

Methods of :class:`TaggingRoutes`, which the ingress deployment inherits: each parses
its request, hands the images to the ingress's request path (:mod:`deployments.ingress`)
and shapes the JSON. They answer with a ``JSONResponse`` of plain dicts: the bytes
FastAPI would make from the response model, without validating each answer a second
time on its way out (the response models still document the routes in /openapi.json).
"""

# No `from __future__ import annotations` here: FastAPI must resolve the route
# signatures of the Serve-wrapped class at import time.

import asyncio
from typing import Annotated, Any

from fastapi import File, Query, UploadFile
from fastapi.responses import JSONResponse

from deployments.api import DESCRIPTION, GUARDED, app
from deployments.errors import to_domain_error
from imagetagger import __version__
from imagetagger.errors import ImageTooLarge
from imagetagger.routes import INFO, PREDICT_BATCH, PREDICT_UPLOAD, PREDICT_URL
from imagetagger.schemas import (
    LABELS_DESCRIPTION,
    BatchRequest,
    BatchResponse,
    ImageURL,
    LabelKind,
    MinConf,
    PredictionResponse,
    ServiceInfo,
    Top,
    UploadPredictionResponse,
)

REVISION = 2
AUTHOR = "imagetagger developers"
GITHUB_URL = "https://github.com/imagetagger/imagetagger"

# Hard ceilings on request bodies, enforced while reading (FastAPI's body limit); the
# live `max_upload_bytes` of user_config is checked on the file itself, below these.
MAX_UPLOAD_BODY_BYTES = 64 * 2**20
MAX_BATCH_BODY_BYTES = 1 * 2**20
BATCH_DEADLINE_GRACE_S = 1.0

Labels = Annotated[LabelKind, Query(description=LABELS_DESCRIPTION)]


class TaggingRoutes:
    """The contract's routes. ``_model_name``, ``_settings`` and the request path
    (``_load_url``, ``_load_bytes``, ``_answer``, ``_admit``, ``_with_deadline``) are the
    ingress deployment's (:class:`deployments.ingress.ImageTagger`)."""

    @app.get(INFO.path, response_model=ServiceInfo, **INFO.openapi())
    async def info(self) -> ServiceInfo:
        return ServiceInfo(
            description=DESCRIPTION,
            version=__version__,
            revision=REVISION,
            author=AUTHOR,
            github_url=GITHUB_URL,
            model=self._model_name,
        )

    @app.get(
        PREDICT_URL.path,
        response_model=PredictionResponse,
        dependencies=GUARDED,
        **PREDICT_URL.openapi(),
    )
    async def predict_url(
        self,
        url: Annotated[ImageURL, Query(description="http(s) URL of the image.")],
        top: Annotated[Top | None, Query()] = None,
        minconf: Annotated[MinConf | None, Query()] = None,
        labels: Labels = "fine",
    ) -> JSONResponse:
        answer = await self._admit(lambda: self._answer(self._load_url(url), top, minconf, labels))
        return JSONResponse({"url": url, **answer})

    @app.post(
        PREDICT_UPLOAD.path,
        response_model=UploadPredictionResponse,
        dependencies=GUARDED,
        max_body_size=MAX_UPLOAD_BODY_BYTES,
        **PREDICT_UPLOAD.openapi(),
    )
    async def predict_upload(
        self,
        file: Annotated[UploadFile, File(description="The image file.")],
        top: Annotated[Top | None, Query()] = None,
        minconf: Annotated[MinConf | None, Query()] = None,
        labels: Labels = "fine",
    ) -> JSONResponse:
        data = await self._read_upload(file)
        answer = await self._admit(
            lambda: self._answer(self._load_bytes(data), top, minconf, labels)
        )
        return JSONResponse({"filename": file.filename, **answer})

    @app.post(
        PREDICT_BATCH.path,
        response_model=BatchResponse,
        dependencies=GUARDED,
        max_body_size=MAX_BATCH_BODY_BYTES,
        **PREDICT_BATCH.openapi(),
    )
    async def predict_batch(self, body: BatchRequest) -> JSONResponse:
        async def one(url: str) -> dict[str, Any]:
            try:
                answer = await self._with_deadline(
                    self._answer(self._load_url(url), body.top, body.minconf, body.labels)
                )
            except Exception as exc:
                return {"url": url, "error": to_domain_error(exc).to_dict()}
            return {"url": url, **answer}

        # Each item has its own deadline; the whole request gets a little longer, so
        # a hung URL fails only its own item.
        results = await self._admit(
            lambda: asyncio.gather(*(one(u) for u in body.urls)),
            cost=len(body.urls),
            grace_s=BATCH_DEADLINE_GRACE_S,
        )
        return JSONResponse({"results": results})

    async def _read_upload(self, file: UploadFile) -> bytes:
        """The upload's bytes, at most ``max_upload_bytes`` of them read (else 413)."""
        limit = self._settings.max_upload_bytes
        if file.size is not None and file.size > limit:
            raise ImageTooLarge()
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ImageTooLarge()
        return data
