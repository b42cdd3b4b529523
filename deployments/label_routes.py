"""The commercial label APIs' wire formats: Cloud Vision ``images:annotate`` and
Rekognition ``DetectLabels``, so their official clients work pointed at this service.

Methods of :class:`LabelApiRoutes`, which the ingress deployment inherits. The images
take the same path as ``/predictions`` (the Downloader with its SSRF guard and limits,
the response cache, the model, the metrics); only the request and answer shapes are
the APIs' own (:mod:`imagetagger.label_apis`). These routes check API keys and rate
limits themselves, in their API's error shape, before the body is read.
"""

# No `from __future__ import annotations` here: FastAPI must resolve the route
# signatures of the Serve-wrapped class at import time.

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.api import app
from deployments.errors import to_domain_error
from imagetagger.errors import ImageTooLarge
from imagetagger.label_apis import cloud_vision, rekognition, sigv4
from imagetagger.routes import CLOUD_VISION, REKOGNITION

AWS_JSON = "application/x-amz-json-1.1"
# Bodies are read up to these, then refused (the APIs' own limits are below them:
# 16 images of base64 for Cloud Vision; Rekognition's 5 MB image, as base64).
MAX_VISION_BODY_BYTES = 64 * 2**20
MAX_REKOGNITION_BODY_BYTES = 8 * 2**20
ITEM_DEADLINE_GRACE_S = 1.0


class LabelApiRoutes:
    """Cloud Vision and Rekognition on the ingress's request path (``_load_url``,
    ``_load_bytes``, ``_probabilities_of``, ``_admit``, ``_with_deadline``, ``access``)."""

    @app.post(CLOUD_VISION.path, **CLOUD_VISION.openapi())
    async def cloud_vision_annotate(self, request: Request) -> JSONResponse:
        try:
            client = cloud_vision.authenticate(
                self.access.keys,
                request.headers.getlist("x-goog-api-key"),
                request.query_params.getlist("key"),
            )
            self.access.limit(client, request.client.host if request.client else "-")
            body = await _read_body(request, MAX_VISION_BODY_BYTES)
            jobs = cloud_vision.parse_request(body, max_image_bytes=self._settings.max_upload_bytes)
            answers = await self._admit(
                lambda: asyncio.gather(*(self._vision_job(job) for job in jobs)),
                cost=max(1, len(jobs)),
                grace_s=ITEM_DEADLINE_GRACE_S,
            )
        except cloud_vision.VisionError as error:
            return JSONResponse(error.body(), error.http_status, error.headers)
        except Exception as exc:
            error = cloud_vision.http_error(to_domain_error(exc, "images:annotate"))
            return JSONResponse(error.body(), error.http_status, error.headers)
        return JSONResponse(cloud_vision.annotate_response(answers))

    async def _vision_job(self, job: cloud_vision.LabelJob | dict[str, Any]) -> dict[str, Any]:
        """One request's AnnotateImageResponse, or its google.rpc.Status."""
        if isinstance(job, dict):  # refused while parsing
            return job
        load = self._load_bytes(job.content) if job.content is not None else self._load_url(job.uri)
        try:
            probabilities = await self._with_deadline(self._probabilities_of(load))
        except Exception as exc:
            return cloud_vision.rpc_status(to_domain_error(exc, "images:annotate"))
        return cloud_vision.image_labels(probabilities, job.max_results)

    @app.post(REKOGNITION.path, **REKOGNITION.openapi())
    async def rekognition_detect_labels(self, request: Request) -> JSONResponse:
        target = request.headers.get("x-amz-target")
        if target is None:  # not an AWS client: POST / is otherwise not a route
            raise StarletteHTTPException(405, "Method Not Allowed", {"Allow": "GET"})
        try:
            client = sigv4.authenticate(
                self.access.keys,
                request.headers.getlist("authorization"),
                request.headers.getlist("x-amz-date"),
            )
            self.access.limit(client, request.client.host if request.client else "-")
            body = await _read_body(request, MAX_REKOGNITION_BODY_BYTES)
            parsed = rekognition.parse_request(
                body, target, max_image_bytes=self._settings.max_upload_bytes
            )
            probabilities = await self._admit(
                lambda: self._probabilities_of(self._load_bytes(parsed.image))
            )
        except rekognition.AwsError as error:
            return JSONResponse(error.body(), error.http_status, error.headers, AWS_JSON)
        except Exception as exc:
            error = rekognition.aws_error(to_domain_error(exc, "DetectLabels"))
            return JSONResponse(error.body(), error.http_status, error.headers, AWS_JSON)
        answer = rekognition.detect_labels_response(probabilities, parsed, self._label_model)
        return JSONResponse(answer, media_type=AWS_JSON)

    @property
    def _label_model(self) -> str:
        """``LabelModelVersion``: the served model and the hierarchy's source."""
        return f"imagetagger-{self._model_name}-wordnet3.0"


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read up to ``limit`` bytes (whatever Content-Length says), else 413."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
