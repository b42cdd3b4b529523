"""Cloud Vision v1 ``images:annotate`` (LABEL_DETECTION), for its official client.

Parses Google's request (:mod:`imagetagger.label_apis.cloud_vision`), sends each image
through the request core (a URL through the Downloader, base64 content as bytes) and
answers each in Google's shape: labels, or that request's ``google.rpc.Status``. A
failure of the whole call, keys and rate limits included, is Google's error JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from imagetagger.api.access import Guard
from imagetagger.api.auth import ApiKeys
from imagetagger.api.dependencies import Core, read_body
from imagetagger.api.errors import to_domain_error
from imagetagger.errors import ImageTaggerError
from imagetagger.label_apis import cloud_vision
from imagetagger.limits import MAX_BODY_BYTES
from imagetagger.routes import CLOUD_VISION

# Bodies are read up to this, then refused (16 images of base64 are below it).
MAX_VISION_BODY_BYTES = MAX_BODY_BYTES

router = APIRouter()


def _identify(keys: ApiKeys, request: HTTPConnection) -> str | None:
    return cloud_vision.authenticate(
        keys, request.headers.getlist("x-goog-api-key"), request.query_params.getlist("key")
    )


def _refuse(exc: Exception) -> JSONResponse:
    if isinstance(exc, cloud_vision.VisionError):
        error = exc
    else:
        error = cloud_vision.http_error(to_domain_error(exc, "images:annotate"))
    return JSONResponse(error.body(), error.http_status, error.headers)


guard = Guard(identify=_identify, refuse=_refuse)


@router.post(CLOUD_VISION.path, **CLOUD_VISION.openapi())
async def cloud_vision_annotate(request: Request, core: Core) -> JSONResponse:
    try:
        body = await read_body(request, MAX_VISION_BODY_BYTES)
        jobs = cloud_vision.parse_request(body, max_image_bytes=core.settings.max_upload_bytes)
        images = [
            job.content if job.content is not None else job.uri
            for job in jobs
            if isinstance(job, cloud_vision.LabelJob)
        ]
        outcomes = iter(await core.classify_each(images))
    except cloud_vision.VisionError as error:
        return _refuse(error)
    except Exception as exc:
        return _refuse(core.domain_error(exc))
    answers = [
        job if isinstance(job, dict) else _answer(next(outcomes), job.max_results) for job in jobs
    ]
    return JSONResponse(cloud_vision.annotate_response(answers))


def _answer(outcome: np.ndarray | ImageTaggerError, max_results: int) -> dict[str, Any]:
    """One request's AnnotateImageResponse, or its google.rpc.Status."""
    if isinstance(outcome, ImageTaggerError):
        return cloud_vision.rpc_status(outcome)
    return cloud_vision.image_labels(outcome, max_results)
