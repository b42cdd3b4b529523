"""Google Cloud Vision v1 ``POST /v1/images:annotate``, LABEL_DETECTION only.

What the official client sends (``google-cloud-vision`` REST transport):
``POST /v1/images:annotate?$alt=json;enum-encoding=int`` with
``{"requests": [{"image": {"content": "<base64>"}, "features": [{"type": 4, "maxResults": 5}]}]}``;
the feature type may also be its enum name (``"LABEL_DETECTION"``), field names lowerCamel
or snake_case, as protobuf's JSON mapping allows. Up to 16 requests per call (Google's
limit). Each request is answered on its own: ``{"labelAnnotations": [...]}`` (at least 3
labels unless maxResults is smaller), or ``{"error": <google.rpc.Status>}``, so one bad image
fails only itself. A body that does not parse is one 400 in Google's error shape
``{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``.

Flow for the ingress: :func:`authenticate`, :func:`parse_request` (a :class:`LabelJob`
or a per-request status each), tag each job, :func:`label_annotations` /
:func:`rpc_status` per job, :func:`annotate_response`; a whole-call failure is
:func:`http_error` -> :class:`VisionError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from imagetagger.errors import (
    ForbiddenURL,
    ImageTaggerError,
    ImageTooLarge,
    InternalError,
    InvalidImage,
    InvalidRequest,
    Overloaded,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    UnreachableURL,
)
from imagetagger.hierarchy import DEFAULT_MINCONF, GeneralLabel, general_labels
from imagetagger.label_apis.common import KeyMatcher, display_name, encodable
from imagetagger.label_apis.vision_messages import (
    FEATURE_NAMES,
    FEATURE_TYPES,
    AnnotateImageRequest,
    BatchAnnotateImagesRequest,
)
from imagetagger.schemas import check_image_url

DEFAULT_MAX_RESULTS = 10  # maxResults unset or 0, as Google
#: The score floor (the general labels' default): Google's own answers stop near 0.5
#: too. A photo with fewer than 3 labels over it still gets its best 3, as Google's do.
MIN_SCORE = DEFAULT_MINCONF

#: google.rpc.Code: name -> number, and the HTTP status each maps to (google/rpc/code.proto).
RPC_CODES: dict[str, tuple[int, int]] = {
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
}

LABEL_DETECTION = FEATURE_TYPES["LABEL_DETECTION"]

#: How each domain error reads inside one response's ``error`` (a google.rpc.Status).
#: Unreachable and forbidden URIs keep the meaning of our own 404 and 403; a too-large
#: image is an argument this service refuses, so INVALID_ARGUMENT, as a bad image.
RPC_OF_ERROR: dict[type[ImageTaggerError], tuple[str, str]] = {
    InvalidImage: ("INVALID_ARGUMENT", "Bad image data."),
    ImageTooLarge: ("INVALID_ARGUMENT", "Image is larger than this service accepts."),
    UnreachableURL: ("NOT_FOUND", "The image URI cannot be reached."),
    ForbiddenURL: (
        "PERMISSION_DENIED",
        "The image URI resolves to an address that is not allowed.",
    ),
    Overloaded: ("UNAVAILABLE", "The service is overloaded; retry later."),
    RateLimited: ("RESOURCE_EXHAUSTED", "Too many requests; retry later."),
    InvalidRequest: ("INVALID_ARGUMENT", "The request is not valid."),
    InternalError: ("INTERNAL", "Internal error."),
    RequestTimeout: ("DEADLINE_EXCEEDED", "The request took too long to arrive."),
}

MISSING_KEY = "The request is missing a valid API key."
INVALID_KEY = "API key not valid. Please pass a valid API key."


class VisionError(Exception):
    """A whole-call failure, answered as Google's ``{"error": {code, message, status}}``."""

    def __init__(self, status: str, message: str, headers: dict[str, str] | None = None) -> None:
        message = encodable(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = RPC_CODES[status][1]
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


@dataclass(frozen=True)
class LabelJob:
    """One image to tag: its bytes, or an http(s) URI to fetch through the Downloader."""

    content: bytes | None
    uri: str | None
    max_results: int


def parse_request(
    body: bytes | str, *, max_image_bytes: int | None = None
) -> list[LabelJob | dict[str, Any]]:
    """Each request of a call: a :class:`LabelJob`, or the google.rpc.Status it fails with.

    Raises :class:`VisionError` (400 INVALID_ARGUMENT) when the body does not parse:
    not JSON, an unknown field, bad base64, an unknown feature name, 0 or over 16 requests.
    """
    try:
        batch = BatchAnnotateImagesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise VisionError("INVALID_ARGUMENT", _describe(exc)) from None
    return [_job(request, max_image_bytes) for request in batch.requests]


def _describe(exc: ValidationError) -> str:
    issues = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            issues.append(f"Unknown name {where!r}")
        elif error["type"] == "json_invalid":
            issues.append("the body is not JSON")
        else:
            issues.append(f"Invalid value at {where!r}: {error['msg']}")
    return "Invalid JSON payload received. " + "; ".join(issues) + "."


def _job(request: AnnotateImageRequest, max_image_bytes: int | None) -> LabelJob | dict[str, Any]:
    if not request.features:
        return _status("INVALID_ARGUMENT", "No feature is specified.")
    unsupported = [f.type for f in request.features if f.type != LABEL_DETECTION]
    if unsupported:
        name = FEATURE_NAMES.get(unsupported[0])
        if name is None:
            return _status("INVALID_ARGUMENT", f"Unknown feature type {unsupported[0]}.")
        return _status("UNIMPLEMENTED", f"{name} is not supported here; only LABEL_DETECTION.")
    limits = [f.max_results for f in request.features]
    max_results = max(limits) if max(limits) > 0 else DEFAULT_MAX_RESULTS
    image = request.image
    if image is not None and image.content:
        if max_image_bytes is not None and len(image.content) > max_image_bytes:
            return rpc_status(ImageTooLarge())
        return LabelJob(image.content, None, max_results)
    source = image.source if image is not None else None
    if source is None or not (source.image_uri or source.gcs_image_uri):
        return _status("INVALID_ARGUMENT", "No image is specified: set image.content or source.")
    uri = source.image_uri or source.gcs_image_uri or ""
    if uri.lower().startswith("gs://"):
        return _status(
            "INVALID_ARGUMENT", "gs:// URIs are not supported here; send an http(s) URI."
        )
    try:
        check_image_url(uri)
    except PydanticCustomError as exc:
        return _status("INVALID_ARGUMENT", f"Invalid image URI: {exc.message()}.")
    return LabelJob(None, uri, max_results)


def _status(name: str, message: str) -> dict[str, Any]:
    return {"code": RPC_CODES[name][0], "message": message}


def rpc_status(error: ImageTaggerError) -> dict[str, Any]:
    """The google.rpc.Status of one request that failed with ``error``."""
    name, message = RPC_OF_ERROR.get(type(error), ("INTERNAL", "Internal error."))
    return _status(name, message)


def http_error(error: ImageTaggerError) -> VisionError:
    """The whole call's error answer for ``error`` (rate limit, overload, a body cap...)."""
    if isinstance(error, Unauthorized):
        return VisionError("PERMISSION_DENIED", INVALID_KEY)
    name, message = RPC_OF_ERROR.get(type(error), ("INTERNAL", "Internal error."))
    return VisionError(name, message, error.headers)


def authenticate(
    keys: KeyMatcher | None, header_values: Sequence[str], query_values: Sequence[str]
) -> str | None:
    """The caller's client id, from every ``x-goog-api-key`` header and ``key`` parameter.

    None when keys are off. Raises :class:`VisionError` 403 PERMISSION_DENIED when no key
    is sent (as Google does), and for a wrong key or repeated keys that differ (Google
    answers 400 API_KEY_INVALID there; a 403 keeps 400 for bodies). Never a 401: the
    official client's session takes a 401 as "refresh the credentials" and fails on that
    instead of reporting the answer.
    """
    if keys is None:
        return None
    presented = {value.strip() for value in (*header_values, *query_values)}
    if not presented:
        raise VisionError("PERMISSION_DENIED", MISSING_KEY)
    ids = {keys.client_id(key) for key in presented}
    if None in ids or len(ids) != 1:
        raise VisionError("PERMISSION_DENIED", INVALID_KEY)
    (client,) = ids
    return client


def label_annotations(labels: Sequence[GeneralLabel]) -> list[dict[str, Any]]:
    """Cloud Vision's EntityAnnotations for general labels, in their order.

    ``mid`` is the WordNet 3.0 synset id ("n02121620") of a shown node, stable across
    releases; ``topicality`` equals ``score`` (there is one image-level confidence).
    """
    return [
        {
            "mid": label.id,
            "description": display_name(label.name),
            "score": label.confidence,
            "topicality": label.confidence,
        }
        for label in labels
    ]


def image_labels(
    probabilities: np.ndarray, max_results: int, *, min_score: float | None = None
) -> dict[str, Any]:
    """One request's AnnotateImageResponse: at most ``max_results`` general labels.

    Cloud Vision has no score parameter: by default (``min_score`` None) the labels
    scoring ``MIN_SCORE`` or more, and at least 3, in the general labels' order (the
    specific label first, then its groups). A ``min_score`` is a strict floor.
    """
    labels = general_labels(probabilities, top=max_results, minconf=min_score)
    return {"labelAnnotations": label_annotations(labels)} if labels else {}


def annotate_response(responses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The call's answer: one AnnotateImageResponse per request, in request order.

    Each item is :func:`image_labels`' answer or a status from :func:`rpc_status`
    (or from :func:`parse_request`); a status goes into that response's ``error``.
    """
    return {"responses": [item if "code" not in item else {"error": item} for item in responses]}
