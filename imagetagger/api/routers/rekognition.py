"""Rekognition ``DetectLabels`` (``POST /`` with ``X-Amz-Target``), for boto3.

Parses AWS's JSON request (:mod:`imagetagger.label_apis.rekognition`), sends the image
through the request core and answers AWS's ``Labels``, or AWS's error JSON (keys are
SigV4 access key ids: :mod:`imagetagger.label_apis.sigv4`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from imagetagger.api.access import Guard
from imagetagger.api.auth import ApiKeys
from imagetagger.api.dependencies import Core, read_body
from imagetagger.api.errors import to_domain_error
from imagetagger.label_apis import rekognition, sigv4
from imagetagger.routes import REKOGNITION

# Bodies are read up to this, then refused (Rekognition's 5 MB image, as base64).
MAX_REKOGNITION_BODY_BYTES = 8 * 2**20

router = APIRouter()


def _identify(keys: ApiKeys, request: HTTPConnection) -> str | None:
    if "x-amz-target" not in request.headers:
        return None  # not an AWS client: the route answers 405
    return sigv4.authenticate(
        keys, request.headers.getlist("authorization"), request.headers.getlist("x-amz-date")
    )


def _refuse(exc: Exception) -> JSONResponse:
    if isinstance(exc, rekognition.AwsError):
        error = exc
    else:
        error = rekognition.aws_error(to_domain_error(exc, "DetectLabels"))
    return JSONResponse(error.body(), error.http_status, error.headers, rekognition.CONTENT_TYPE)


guard = Guard(identify=_identify, refuse=_refuse)


@router.post(REKOGNITION.path, **REKOGNITION.openapi())
async def rekognition_detect_labels(request: Request, core: Core) -> JSONResponse:
    target = request.headers.get("x-amz-target")
    if target is None:  # not an AWS client: POST / is otherwise not a route
        raise StarletteHTTPException(405, "Method Not Allowed", {"Allow": "GET"})
    try:
        body = await read_body(request, MAX_REKOGNITION_BODY_BYTES)
        parsed = rekognition.parse_request(
            body, target, max_image_bytes=core.settings.max_upload_bytes
        )
        probabilities = await core.classify(parsed.image)
    except rekognition.AwsError as error:
        return _refuse(error)
    except Exception as exc:
        return _refuse(core.domain_error(exc))
    label_model = f"imagetagger-{core.model_name}-wordnet3.0"  # the model and the hierarchy
    answer = rekognition.detect_labels_response(probabilities, parsed, label_model)
    return JSONResponse(answer, media_type=rekognition.CONTENT_TYPE)
