"""Hugging Face's ``image-classification`` at ``POST /models/{model}``, for InferenceClient.

The Inference API's layout, so ``InferenceClient(model="http://host:8000/models/
efficientnet_lite2").image_classification(image)`` works unmodified. The wire format
is :mod:`imagetagger.protocols.hugging_face`; here the route parses, calls the request
core and answers, errors included, as ``{"error": "..."}`` with the status (the
client raises its ``HfHubHTTPError``). ``Authorization: Bearer KEY`` (the client's
``token``) is the API key where keys are on.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imagetagger.api.access import Guard, bearer_or_api_key
from imagetagger.api.dependencies import Core, read_body
from imagetagger.api.errors import to_domain_error
from imagetagger.protocols import hugging_face as hf
from imagetagger.protocols.json_error import JsonError
from imagetagger.routes import HF_CLASSIFY

router = APIRouter()


def error_response(exc: Exception) -> JSONResponse:
    """``exc`` as the Inference API answers it: ``{"error": message}``, status, headers."""
    if not isinstance(exc, JsonError):
        exc = JsonError.of(to_domain_error(exc, "HF image-classification"))
    return JSONResponse(exc.body(), exc.status, exc.headers)


guard = Guard(identify=bearer_or_api_key, refuse=error_response)


@router.post(HF_CLASSIFY.path, **HF_CLASSIFY.openapi())
async def hf_image_classification(model: str, request: Request, core: Core) -> JSONResponse:
    try:
        if model != core.model_name:
            raise hf.unknown_model(model)
        limit = core.settings.max_upload_bytes
        body = await read_body(request, hf.max_body_bytes(limit))
        parsed = hf.parse_request(body, max_image_bytes=limit)
        probabilities = await core.classify(parsed.image)
    except JsonError as error:
        return error_response(error)
    except Exception as exc:
        return error_response(JsonError.of(core.domain_error(exc)))
    return JSONResponse(hf.render(probabilities, parsed.top_k, parsed.function_to_apply))
