"""Amazon Rekognition ``DetectLabels`` (JSON 1.1 protocol), general labels only.

What boto3 sends: ``POST /`` with ``X-Amz-Target: RekognitionService.DetectLabels``,
``Content-Type: application/x-amz-json-1.1``, a SigV4 ``Authorization`` header (see
:mod:`imagetagger.label_apis.sigv4`) and
``{"Image": {"Bytes": "<base64>"}, "MaxLabels": 5, "MinConfidence": 50}``. The answer is
``{"Labels": [{"Name", "Confidence" (percent), "Parents": [{"Name"}], "Aliases": [{"Name"}],
"Categories": [{"Name"}], "Instances": []}], "LabelModelVersion": ...}``. Errors are AWS's
``{"__type": ..., "message": ...}``; the names are those botocore's Rekognition model
declares for DetectLabels, so boto3 raises ``client.exceptions.<Name>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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
from imagetagger.hierarchy import DEFAULT_MINCONF, MIN_LABELS, GeneralLabel, hierarchy
from imagetagger.label_apis.common import decode_base64, display_name, encodable

TARGET = "RekognitionService.DetectLabels"
CONTENT_TYPE = "application/x-amz-json-1.1"  # of the requests and the answers
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Image.Bytes, decoded: Rekognition's limit (ImageBlob)
#: Percent, when MinConfidence is not sent: the general labels' floor, so every route
#: answers the same labels (Rekognition's own 55 is for its own scores), and at least
#: MIN_LABELS labels even under it. A MinConfidence sent is a strict floor.
DEFAULT_MIN_CONFIDENCE = DEFAULT_MINCONF * 100

#: (``__type``, HTTP status, message) for each domain error. A client's rate limit is
#: its throughput limit; an overloaded service is "temporarily unable to process the
#: request" (ThrottlingException, a 500 in AWS's docs); boto3 retries both by itself.
AWS_OF_ERROR: dict[type[ImageTaggerError], tuple[str, int, str]] = {
    InvalidImage: ("InvalidImageFormatException", 400, "Request has invalid image format"),
    ImageTooLarge: ("ImageTooLargeException", 400, "Image size is too large."),
    InvalidRequest: ("InvalidParameterException", 400, "Request has invalid parameters"),
    RateLimited: (
        "ProvisionedThroughputExceededException",
        400,
        "Provisioned rate exceeded; slow down.",
    ),
    Overloaded: (
        "ThrottlingException",
        500,
        "The service is temporarily unable to process the request; try again.",
    ),
    Unauthorized: (
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    ),
    # No URLs in DetectLabels (Image.Bytes only), so these two never happen; mapped anyway.
    UnreachableURL: ("InvalidParameterException", 400, "The image cannot be reached."),
    ForbiddenURL: ("InvalidParameterException", 400, "The image address is not allowed."),
    InternalError: ("InternalServerError", 500, "Internal server error."),
    RequestTimeout: ("InvalidParameterException", 400, "The request took too long to arrive."),
}


class AwsError(Exception):
    """An answer in AWS's JSON error shape: ``{"__type": name, "message": text}``."""

    def __init__(
        self, error_type: str, message: str, http_status: int = 400, headers: dict | None = None
    ) -> None:
        message = encodable(message)
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.http_status = http_status
        self.headers = {"x-amzn-ErrorType": error_type, **(headers or {})}

    def body(self) -> dict[str, str]:
        return {"__type": self.error_type, "message": self.message}


def aws_error(error: ImageTaggerError) -> AwsError:
    """The AWS error for a domain error (an unknown one is AWS's InternalServerError)."""
    name, status, message = AWS_OF_ERROR.get(
        type(error), ("InternalServerError", 500, "Internal server error.")
    )
    return AwsError(name, message, status, error.headers)


def invalid_parameter(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


@dataclass(frozen=True)
class DetectLabelsRequest:
    image: bytes
    max_labels: int | None  # None: every label over min_confidence
    min_confidence: float | None  # percent; None: not sent (DEFAULT_MIN_CONFIDENCE, >= 3)


def parse_request(
    body: bytes | str, target: str | None, *, max_image_bytes: int = MAX_IMAGE_BYTES
) -> DetectLabelsRequest:
    """Check the ``X-Amz-Target`` and the body; raises :class:`AwsError` when they do not fit.

    ``max_image_bytes`` may only lower Rekognition's 5 MB.
    """
    if target != TARGET:
        raise AwsError("UnknownOperationException", f"Operation {target!r} is not supported")
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AwsError("SerializationException", "The request body is not JSON.") from None
    if not isinstance(request, dict):
        raise AwsError("SerializationException", "The request body is not a JSON object.")
    unknown = set(request) - {"Image", "MaxLabels", "MinConfidence", "Features", "Settings"}
    if unknown:
        raise invalid_parameter(f"Unknown parameter(s): {', '.join(sorted(unknown))}")
    features = request.get("Features")
    if features is not None and (
        not isinstance(features, list) or any(f != "GENERAL_LABELS" for f in features)
    ):
        raise invalid_parameter("Only the GENERAL_LABELS feature is supported here.")
    if request.get("Settings") is not None:
        raise invalid_parameter("Settings (label filters, image properties) are not supported.")
    return DetectLabelsRequest(
        image=_image(request.get("Image"), min(max_image_bytes, MAX_IMAGE_BYTES)),
        max_labels=_max_labels(request.get("MaxLabels")),
        min_confidence=_min_confidence(request.get("MinConfidence")),
    )


def _image(image: Any, max_bytes: int) -> bytes:
    if not isinstance(image, dict) or not image:
        raise invalid_parameter("Image is required: send Image.Bytes.")
    if "S3Object" in image:
        raise invalid_parameter(
            "Image.S3Object is not supported by this service: send the image as Image.Bytes."
        )
    if set(image) != {"Bytes"} or not isinstance(image["Bytes"], str):
        raise invalid_parameter("Image must hold only Bytes, a base64 string.")
    # Check the size on the base64 text first: no need to decode 60 MB to refuse it.
    if len(image["Bytes"]) > 4 * math.ceil(max_bytes / 3) + 4:
        raise aws_error(ImageTooLarge())
    try:
        data = decode_base64(image["Bytes"])
    except ValueError:
        raise AwsError("SerializationException", "Image.Bytes is not valid base64.") from None
    if not data:
        raise invalid_parameter("Image.Bytes is empty.")
    if len(data) > max_bytes:
        raise aws_error(ImageTooLarge())
    return data


def _max_labels(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_parameter("MaxLabels must be an integer >= 0.")
    return value


def _min_confidence(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise invalid_parameter("MinConfidence must be a number from 0 to 100.")
    return float(value)


def labels(
    probabilities: np.ndarray, max_labels: int | None, min_confidence: float | None
) -> list[GeneralLabel]:
    """The general labels with ``Confidence`` (percent) >= ``min_confidence``, at most
    ``max_labels`` of them, in the general labels' order (the specific label first).

    ``min_confidence`` None (not sent): ``DEFAULT_MIN_CONFIDENCE``, and at least
    ``MIN_LABELS`` labels (or ``max_labels``) even under it, so no photo goes unlabelled.
    A sent floor runs on the percentages as answered, so no answered Confidence is below
    MinConfidence by a rounding.
    """
    if max_labels == 0:
        return []
    tree = hierarchy()
    scores = tree.scores(probabilities)
    if min_confidence is None:
        at_least = min(MIN_LABELS, max_labels or MIN_LABELS)
        chosen = tree.pick(scores, cap=max_labels, floor=DEFAULT_MINCONF, at_least=at_least)
        return [tree.label(int(i), scores[i]) for i in chosen]
    floor = max(0.0, min_confidence / 100 - 1e-9)
    every = tree.pick(scores, cap=None, floor=floor, at_least=0)
    kept = [int(i) for i in every if scores[i] * 100 >= min_confidence][:max_labels]
    return [tree.label(i, scores[i]) for i in kept]


def label_entry(label: GeneralLabel) -> dict[str, Any]:
    """One ``Labels`` item. ``Instances`` is always empty: the model does not localise.

    ``Parents`` are the shown groups above the label, nearest first ("Bird", "Animal"),
    as Rekognition lists its own; ``Aliases`` the WordNet synonyms.
    """
    return {
        "Name": display_name(label.name),
        "Confidence": label.confidence * 100,
        "Instances": [],
        "Parents": [{"Name": display_name(name)} for name in label.parents],
        "Aliases": [{"Name": display_name(name)} for name in label.aliases],
        "Categories": [{"Name": name} for name in label.categories],
    }


def detect_labels_response(
    probabilities: np.ndarray, request: DetectLabelsRequest, model_version: str
) -> dict[str, Any]:
    """The whole DetectLabels answer for one image's 1000 probabilities."""
    chosen = labels(probabilities, request.max_labels, request.min_confidence)
    return {
        "Labels": [label_entry(label) for label in chosen],
        "LabelModelVersion": model_version,
    }
