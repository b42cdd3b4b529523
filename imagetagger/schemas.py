"""Pydantic models of the HTTP contract: what clients send and what they get back.

The shapes are fixed by the original Image Tagger (docs/API.md); the OpenAPI document
is generated from these models, so their examples are the ones clients see in /docs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from imagetagger.errors import ImageTaggerError, InvalidRequest

MAX_URL_LENGTH = 2048
MAX_BATCH_URLS = 64


def check_image_url(value: str) -> str:
    """Accept an absolute http(s) URL with a host, returned exactly as the client sent it.

    pydantic's ``HttpUrl`` would normalise the string (a trailing slash, punycode), but the
    contract echoes the client's own string, so the check is done here instead.
    """
    if len(value) > MAX_URL_LENGTH:
        raise PydanticCustomError(
            "url_too_long",
            "URL should have at most {max_length} characters",
            {"max_length": MAX_URL_LENGTH},
        )
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise PydanticCustomError("url_parsing", "Input should be a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise PydanticCustomError("url_scheme", "URL scheme should be 'http' or 'https'")
    if not parts.hostname or any(c.isspace() for c in value) or port == 0:
        raise PydanticCustomError("url_parsing", "Input should be a valid URL")
    return value


ImageURL = Annotated[
    str,
    AfterValidator(check_image_url),
    Field(examples=["https://example.com/cat.jpg"]),
]
Top = Annotated[int, Field(ge=1, le=1000, description="How many labels to return (1-1000).")]
MinConf = Annotated[
    float, Field(ge=0.0, le=1.0, description="Smallest confidence to return (0-1).")
]


class Prediction(BaseModel):
    label: str = Field(examples=["tiger_cat"])
    confidence: float = Field(examples=[0.41], description="Softmax probability, 0-1.")


class GeneralPrediction(BaseModel):
    label: str = Field(examples=["domestic cat"])
    id: str = Field(examples=["n02121808"], description="The WordNet 3.0 noun synset.")
    confidence: float = Field(
        examples=[0.85], description="Summed probability of the classes under it, 0-1."
    )
    parents: list[str] = Field(examples=[["cat", "feline", "carnivore", "mammal", "animal"]])
    aliases: list[str] = Field(examples=[["house cat", "Felis domesticus"]])
    categories: list[str] = Field(examples=[["Animals and Pets"]])


class PredictionResponse(BaseModel):
    url: str = Field(description="The URL exactly as sent.")
    predictions: list[Prediction]
    general: list[GeneralPrediction] | None = Field(None, description="Only with `labels=general`.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/cat.jpg",
                    "predictions": [{"label": "tiger_cat", "confidence": 0.41}],
                }
            ]
        }
    )


class UploadPredictionResponse(BaseModel):
    filename: str | None = Field(description="The uploaded file's name, as sent.")
    predictions: list[Prediction]
    general: list[GeneralPrediction] | None = Field(None, description="Only with `labels=general`.")


class ErrorDetail(BaseModel):
    type: str = Field(examples=["InvalidImage"])
    detail: str = Field(examples=["Url is not pointing to a valid image format."])


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(examples=[["query", "url"]])
    message: str = Field(examples=["Field required"])
    type: str = Field(examples=["missing"])


class ValidationErrorDetail(BaseModel):
    type: str = Field(examples=["ValidationError"])
    detail: list[ValidationIssue]


class ValidationErrorResponse(BaseModel):
    error: ValidationErrorDetail


LabelKind = Literal["fine", "general"]
LABELS_DESCRIPTION = (
    '`general` adds `general`: WordNet labels ("cat", "dog", "car") whose confidence '
    "is the summed probability of the classes under them, those with confidence >= `minconf` "
    "(default 0.5), at most `top` (default 10 when neither is given), the most specific kept "
    "when `top` cuts, best first. `fine` (default): the answer as always."
)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    urls: list[ImageURL] = Field(min_length=1, max_length=MAX_BATCH_URLS)
    top: Top | None = None
    minconf: MinConf | None = None
    labels: LabelKind = Field("fine", description=LABELS_DESCRIPTION)


class BatchItemError(BaseModel):
    url: str
    error: ErrorDetail


class BatchResponse(BaseModel):
    results: list[PredictionResponse | BatchItemError]


class ServiceInfo(BaseModel):
    description: str
    version: str
    revision: int
    author: str
    github_url: str
    model: str


def error_example(error_type: str, detail: Any) -> dict[str, Any]:
    """A body in the contract's error shape (an answer, or an OpenAPI example)."""
    return {"error": {"type": error_type, "detail": detail}}


class ErrorAnswer(NamedTuple):
    """What the service answers for an error: status, JSON body and headers."""

    status_code: int
    content: dict[str, Any]
    headers: dict[str, str]


def error_answer(error: ImageTaggerError) -> ErrorAnswer:
    """The answer for ``error``, all read off its class (status, type, headers)."""
    fields = error.to_dict()
    return ErrorAnswer(
        error.status_code, error_example(fields["type"], fields["detail"]), error.headers
    )


def error_responses(
    *errors: type[ImageTaggerError] | ImageTaggerError,
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can answer ``errors``, in that order.

    A class shows its default detail as the example; an instance its own detail (e.g.
    ``Unauthorized(INVALID_KEY)``). Each response names its body's model and the
    headers the class documents (``WWW-Authenticate``, ``Retry-After``).
    """
    docs: dict[int | str, dict[str, Any]] = {}
    for item in errors:
        error = item if isinstance(item, ImageTaggerError) else item()
        model = ValidationErrorResponse if isinstance(error, InvalidRequest) else ErrorResponse
        example = error_answer(error).content
        docs[error.status_code] = {
            "model": model,
            "content": {"application/json": {"example": example}},
        }
        if error.header_docs:
            docs[error.status_code]["headers"] = {
                name: dict(doc) for name, doc in error.header_docs.items()
            }
    return docs
