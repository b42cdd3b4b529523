"""The Open Inference Protocol (KServe V2) over REST, for ``tritonclient[http]`` and KServe.

Health, server and model metadata, and ``infer`` for the served model (its name as
``GET /`` reports it). The wire format is :mod:`imagetagger.protocols.open_inference`;
here each route parses, calls the request core, and answers, every error included, as
``{"error": "..."}`` with its status (400 a bad tensor or image, 404 an unknown model,
the contract's statuses and headers for keys, limits and overload).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from imagetagger import __version__
from imagetagger.api.access import Guard, bearer_or_api_key
from imagetagger.api.core import RequestCore
from imagetagger.api.dependencies import Core, read_body
from imagetagger.api.errors import to_domain_error
from imagetagger.errors import ImageTaggerError, ImageTooLarge, InvalidImage
from imagetagger.limits import MAX_BODY_BYTES
from imagetagger.protocols import open_inference as oip
from imagetagger.protocols import open_inference_requests as oip_requests
from imagetagger.protocols.json_error import JsonError
from imagetagger.routes import (
    OIP_INFER,
    OIP_INFER_VERSION,
    OIP_LIVE,
    OIP_MODEL,
    OIP_MODEL_READY,
    OIP_MODEL_VERSION,
    OIP_MODEL_VERSION_READY,
    OIP_READY,
    OIP_SERVER,
)

#: Bodies are read (and decompressed) up to this, then refused with 413: 64 images
#: of a few hundred KiB each, as base64 JSON or binary.
MAX_OIP_BODY_BYTES = MAX_BODY_BYTES

router = APIRouter()


def error_response(exc: Exception) -> JSONResponse:
    """``exc`` as the protocol answers it: ``{"error": message}``, status and headers."""
    if not isinstance(exc, JsonError):
        exc = JsonError.of(to_domain_error(exc, "OIP infer"))
    return JSONResponse(exc.body(), exc.status, exc.headers)


guard = Guard(identify=bearer_or_api_key, refuse=error_response)


@router.get(OIP_LIVE.path, **OIP_LIVE.openapi())
async def oip_live() -> Response:
    return Response(status_code=200)


@router.get(OIP_READY.path, **OIP_READY.openapi())
async def oip_ready(core: Core) -> Response:
    return Response(status_code=200 if await core.ready() else 503)


@router.get(OIP_SERVER.path, **OIP_SERVER.openapi())
async def oip_server_metadata() -> JSONResponse:
    return JSONResponse(oip.server_metadata(__version__))


@router.get(OIP_MODEL.path, **OIP_MODEL.openapi())
async def oip_model_metadata(model: str, core: Core) -> JSONResponse:
    if model != core.model_name:
        return error_response(oip.unknown_model(model))
    return JSONResponse(oip.model_metadata(model))


@router.get(OIP_MODEL_READY.path, **OIP_MODEL_READY.openapi())
async def oip_model_ready(model: str, core: Core) -> Response:
    if model != core.model_name:
        return error_response(oip.unknown_model(model))
    return Response(status_code=200 if await core.ready() else 503)


@router.post(OIP_INFER.path, **OIP_INFER.openapi())
async def oip_infer(model: str, request: Request, core: Core) -> Response:
    try:
        if model != core.model_name:
            raise oip.unknown_model(model)
        body = oip_requests.decode_content(
            await read_body(request, MAX_OIP_BODY_BYTES),
            request.headers.get("content-encoding"),
            MAX_OIP_BODY_BYTES,
        )
        parsed = oip_requests.parse_infer_request(
            body,
            request.headers.get(oip.HEADER_LENGTH),
            model=model,
            max_image_bytes=core.settings.max_upload_bytes,
        )
        probabilities = await _classify(core, parsed.images)
        content, headers = oip.render_infer_response(model, parsed, probabilities)
    except JsonError as error:
        return error_response(error)
    except Exception as exc:
        return error_response(JsonError.of(core.domain_error(exc)))
    return Response(content, headers=headers)


# The served model has one version, MODEL_VERSION; the versioned paths answer for it
# (tritonclient calls them when given a ``model_version``) and 404 any other.


@router.get(OIP_MODEL_VERSION.path, **OIP_MODEL_VERSION.openapi())
async def oip_model_version_metadata(model: str, version: str, core: Core) -> Response:
    if version != oip.MODEL_VERSION:
        return error_response(oip.unknown_model(model, version))
    return await oip_model_metadata(model, core)


@router.get(OIP_MODEL_VERSION_READY.path, **OIP_MODEL_VERSION_READY.openapi())
async def oip_model_version_ready(model: str, version: str, core: Core) -> Response:
    if version != oip.MODEL_VERSION:
        return error_response(oip.unknown_model(model, version))
    return await oip_model_ready(model, core)


@router.post(OIP_INFER_VERSION.path, **OIP_INFER_VERSION.openapi())
async def oip_infer_version(model: str, version: str, request: Request, core: Core) -> Response:
    if version != oip.MODEL_VERSION:
        return error_response(oip.unknown_model(model, version))
    return await oip_infer(model, request, core)


async def _classify(core: RequestCore, images: list[bytes]) -> np.ndarray:
    """The (N, 1000) probabilities. The protocol has no per-item error: the first image
    that fails fails the request, named by its index when the image itself is at fault."""
    if len(images) == 1:
        try:
            return (await core.classify(images[0]))[np.newaxis]
        except ImageTaggerError as error:
            raise _image_error(0, error) from None
    outcomes = await core.classify_each(images)
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, ImageTaggerError):
            raise _image_error(index, outcome)
    return np.stack(outcomes)  # type: ignore[arg-type]  # no errors left


def _image_error(index: int, error: ImageTaggerError) -> JsonError:
    about_the_image = isinstance(error, (InvalidImage, ImageTooLarge))
    return JsonError.of(error, f"image {index}: " if about_the_image else "")
