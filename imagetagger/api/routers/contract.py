"""The contract's routes: ``GET /``, ``GET``/``POST /predictions``, the batch.

Each parses its request (FastAPI validates the parameters: a 422 in the contract's
shape), hands the images to the request core and shapes the JSON; errors leave as
domain errors, which the app answers in the contract's shape. Answers are a
``JSONResponse`` of plain dicts: the bytes FastAPI would make from the response model,
without validating each answer a second time (the response models still document the
routes in /openapi.json).
"""

# No `from __future__ import annotations` here: FastAPI resolves the signatures.

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Query, Security, UploadFile
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer

from imagetagger import __version__
from imagetagger.api.access import Guard, bearer_or_api_key
from imagetagger.api.dependencies import Core
from imagetagger.api.errors import error_response
from imagetagger.errors import ImageTaggerError, ImageTooLarge
from imagetagger.hierarchy import general_labels
from imagetagger.limits import MAX_BODY_BYTES
from imagetagger.predictions import select_predictions
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

DESCRIPTION = "Image Tagger: tags images with ImageNet-1K labels."
REVISION = 2
AUTHOR = "imagetagger developers"
GITHUB_URL = "https://github.com/imagetagger/imagetagger"

# Hard ceilings on request bodies, enforced while reading (FastAPI's body limit); the
# live `max_upload_bytes` of user_config is checked on the file itself, below these.
MAX_UPLOAD_BODY_BYTES = MAX_BODY_BYTES
MAX_BATCH_BODY_BYTES = 1 * 2**20

Labels = Annotated[LabelKind, Query(description=LABELS_DESCRIPTION)]

#: Keys as the contract's clients send them; refusals in the contract's JSON shape.
guard = Guard(identify=bearer_or_api_key, refuse=error_response)

# The security schemes /docs shows. They only document: the access middleware checks
# keys before the body is read, and with auto_error=False these never answer themselves.
_KEYS_NOTE = " Required only when the operator configured API keys (off by default)."
_BEARER = HTTPBearer(
    scheme_name="BearerKey",
    description="`Authorization: Bearer KEY`." + _KEYS_NOTE,
    auto_error=False,
)
_API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyHeader",
    description="`X-API-Key: KEY`." + _KEYS_NOTE,
    auto_error=False,
)
GUARDED = [Security(_BEARER), Security(_API_KEY)]

router = APIRouter()


def labels_answer(
    probabilities: np.ndarray, top: int | None, minconf: float | None, labels: str
) -> dict[str, Any]:
    """The answer's labels: ``predictions``, and ``general`` when asked for."""
    answer: dict[str, Any] = {
        "predictions": select_predictions(probabilities, top=top, minconf=minconf)
    }
    if labels == "general":
        chosen = general_labels(probabilities, top=top, minconf=minconf)
        answer["general"] = [label.to_dict() for label in chosen]
    return answer


@router.get(INFO.path, response_model=ServiceInfo, **INFO.openapi())
async def info(core: Core) -> ServiceInfo:
    return ServiceInfo(
        description=DESCRIPTION,
        version=__version__,
        revision=REVISION,
        author=AUTHOR,
        github_url=GITHUB_URL,
        model=core.model_name,
    )


@router.get(
    PREDICT_URL.path,
    response_model=PredictionResponse,
    dependencies=GUARDED,
    **PREDICT_URL.openapi(),
)
async def predict_url(
    core: Core,
    url: Annotated[ImageURL, Query(description="http(s) URL of the image.")],
    top: Annotated[Top | None, Query()] = None,
    minconf: Annotated[MinConf | None, Query()] = None,
    labels: Labels = "fine",
) -> JSONResponse:
    probabilities = await core.classify(url)
    return JSONResponse({"url": url, **labels_answer(probabilities, top, minconf, labels)})


@router.post(
    PREDICT_UPLOAD.path,
    response_model=UploadPredictionResponse,
    dependencies=GUARDED,
    max_body_size=MAX_UPLOAD_BODY_BYTES,
    **PREDICT_UPLOAD.openapi(),
)
async def predict_upload(
    core: Core,
    file: Annotated[UploadFile, File(description="The image file.")],
    top: Annotated[Top | None, Query()] = None,
    minconf: Annotated[MinConf | None, Query()] = None,
    labels: Labels = "fine",
) -> JSONResponse:
    limit = core.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise ImageTooLarge()
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge()
    probabilities = await core.classify(data)
    answer = labels_answer(probabilities, top, minconf, labels)
    return JSONResponse({"filename": file.filename, **answer})


@router.post(
    PREDICT_BATCH.path,
    response_model=BatchResponse,
    dependencies=GUARDED,
    max_body_size=MAX_BATCH_BODY_BYTES,
    **PREDICT_BATCH.openapi(),
)
async def predict_batch(core: Core, body: BatchRequest) -> JSONResponse:
    outcomes = await core.classify_each(body.urls)
    results = []
    for url, outcome in zip(body.urls, outcomes, strict=True):
        if isinstance(outcome, ImageTaggerError):
            results.append({"url": url, "error": outcome.to_dict()})
        else:
            answer = labels_answer(outcome, body.top, body.minconf, body.labels)
            results.append({"url": url, **answer})
    return JSONResponse({"results": results})
