"""The API's routes in one table: the FastAPI decorators, the key guard and the docs read it.

Each route names its method, path, summary, whether API keys and rate limits guard it in
the contract's shape (``imagetagger.api.access``: the label-API routes check keys in their own
wire format instead), and the errors it can answer, from which /openapi.json's error
responses are made. ``tests/repo/test_routes.py`` checks docs/API.md against this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagetagger.errors import (
    INVALID_KEY,
    ForbiddenURL,
    ImageTaggerError,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    Overloaded,
    RateLimited,
    Unauthorized,
    UnreachableURL,
)
from imagetagger.schemas import MAX_BATCH_URLS, error_responses


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    #: The protocol whose key and rate-limit check guards it (``imagetagger.api.access``),
    #: None when unguarded.
    guard: str | None = None
    errors: tuple[type[ImageTaggerError] | ImageTaggerError, ...] = ()

    @property
    def guarded(self) -> bool:
        return self.guard is not None

    def openapi(self) -> dict[str, Any]:
        """The decorator's keyword arguments that document this route."""
        options: dict[str, Any] = {"summary": self.summary}
        if self.errors:
            options["responses"] = error_responses(*self.errors)
        return options


_BAD_KEY = Unauthorized(INVALID_KEY)  # the 401 example /docs shows

INFO = Route("GET", "/", "Service information")
PREDICT_URL = Route(
    "GET",
    "/predictions",
    "Tag the image at a URL",
    guard="contract",
    errors=(
        InvalidImage,
        _BAD_KEY,
        ForbiddenURL,
        UnreachableURL,
        ImageTooLarge,
        InvalidRequest,
        RateLimited,
        Overloaded,
    ),
)
PREDICT_UPLOAD = Route(
    "POST",
    "/predictions",
    "Tag an uploaded image",
    guard="contract",
    errors=(InvalidImage, _BAD_KEY, ImageTooLarge, InvalidRequest, RateLimited, Overloaded),
)
PREDICT_BATCH = Route(
    "POST",
    "/predictions/batch",
    f"Tag up to {MAX_BATCH_URLS} image URLs at once",
    guard="contract",
    errors=(_BAD_KEY, ImageTooLarge, InvalidRequest, RateLimited, Overloaded),
)
CLOUD_VISION = Route(
    "POST",
    "/v1/images:annotate",
    "Cloud Vision v1 images:annotate (LABEL_DETECTION)",
    guard="cloud_vision",
)
REKOGNITION = Route(
    "POST",
    "/",
    "Rekognition DetectLabels (X-Amz-Target: RekognitionService.DetectLabels)",
    guard="rekognition",
)
OIP_LIVE = Route("GET", "/v2/health/live", "Open Inference Protocol: server live")
OIP_READY = Route("GET", "/v2/health/ready", "Open Inference Protocol: server ready")
OIP_SERVER = Route("GET", "/v2", "Open Inference Protocol: server metadata")
OIP_MODEL = Route("GET", "/v2/models/{model}", "Open Inference Protocol: model metadata")
OIP_MODEL_READY = Route("GET", "/v2/models/{model}/ready", "Open Inference Protocol: model ready")
OIP_INFER = Route(
    "POST",
    "/v2/models/{model}/infer",
    "Open Inference Protocol: inference (BYTES images in, FP32 probabilities out)",
    guard="open_inference",
)
OIP_MODEL_VERSION = Route(
    "GET",
    "/v2/models/{model}/versions/{version}",
    "Open Inference Protocol: model metadata, one version",
)
OIP_MODEL_VERSION_READY = Route(
    "GET",
    "/v2/models/{model}/versions/{version}/ready",
    "Open Inference Protocol: model version ready",
)
OIP_INFER_VERSION = Route(
    "POST",
    "/v2/models/{model}/versions/{version}/infer",
    "Open Inference Protocol: inference on one model version",
    guard="open_inference",
)
HF_CLASSIFY = Route(
    "POST",
    "/models/{model}",
    "Hugging Face image-classification (InferenceClient)",
    guard="hugging_face",
)
UI = Route("GET", "/ui", "A page to try the service in a browser")

ROUTES: tuple[Route, ...] = (
    INFO,
    PREDICT_URL,
    PREDICT_UPLOAD,
    PREDICT_BATCH,
    CLOUD_VISION,
    REKOGNITION,
    OIP_LIVE,
    OIP_READY,
    OIP_SERVER,
    OIP_MODEL,
    OIP_MODEL_READY,
    OIP_INFER,
    OIP_MODEL_VERSION,
    OIP_MODEL_VERSION_READY,
    OIP_INFER_VERSION,
    HF_CLASSIFY,
    UI,
)
