"""Domain errors a client can cause, and the one table that maps them to the contract's HTTP.

Library code raises these; the contract's routes answer any of them as
``{"error": {"type": ..., "detail": ...}}`` with the status below, and nothing else
decides that answer's status, wording or headers: the answer
(:func:`imagetagger.schemas.error_answer`) and its OpenAPI description
(:func:`imagetagger.schemas.error_responses`) are both read off these classes.

Each other protocol maps the same errors to its own wire status in its codec:
Rekognition's ``AWS_OF_ERROR`` (:mod:`imagetagger.label_apis.rekognition`) and Cloud
Vision's ``RPC_OF_ERROR`` (:mod:`imagetagger.label_apis.cloud_vision`) to their own error
names and statuses; the Hugging Face and Open Inference protocols
(:mod:`imagetagger.protocols`) keep the status, detail and headers below in their own
error shape.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


def encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (a lone surrogate a client sent in a JSON key,
    echoed in an error's detail) escaped, so the answer can always be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ImageTaggerError(Exception):
    """Base class of every client-caused error; carries its HTTP status and JSON type."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalError"
    default_detail: ClassVar[str] = "Internal error."
    #: OpenAPI header objects for the :attr:`headers` its answers carry (/docs shows them).
    header_docs: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def __reduce__(self):  # keep the detail when Ray pickles the error across processes
        return (type(self), (self.detail,))

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the answer: ``{"type": ..., "detail": ...}``."""
        return {"type": self.error_type, "detail": self.detail}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer must carry besides the JSON body (none by default)."""
        return {}


class InvalidImage(ImageTaggerError):
    status_code = 400
    error_type = "InvalidImage"
    default_detail = "Url is not pointing to a valid image format."


class ForbiddenURL(ImageTaggerError):
    status_code = 403
    error_type = "ForbiddenURL"
    default_detail = "Url resolves to an address that is not allowed."


class UnreachableURL(ImageTaggerError):
    status_code = 404
    error_type = "UnreachableURL"
    default_detail = "Url cannot be reached."


MISSING_KEY = "An API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
INVALID_KEY = "The API key is not valid."


class Unauthorized(ImageTaggerError):
    """API keys are configured and the request carries none, or one that is not valid."""

    status_code = 401
    error_type = "Unauthorized"
    default_detail = "A valid API key is required."
    header_docs: ClassVar[dict[str, dict[str, Any]]] = {
        "WWW-Authenticate": {
            "description": "The authentication scheme: `Bearer`.",
            "schema": {"type": "string"},
        }
    }

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}  # RFC 9110: a 401 names its scheme


class ImageTooLarge(ImageTaggerError):
    status_code = 413
    error_type = "ImageTooLarge"
    default_detail = "Image is larger than this service accepts."


class _RetryLater(ImageTaggerError):
    """An answer that tells the client when to try again (``Retry-After``, RFC 9110)."""

    def __init__(self, detail: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(detail)
        # Retry-After takes whole seconds; round up so a retry then is never early.
        self.retry_after_s = max(1, math.ceil(retry_after_s))

    def __reduce__(self):
        return (type(self), (self.detail, self.retry_after_s))

    @classmethod
    def _header_doc(cls, description: str) -> dict[str, dict[str, Any]]:
        return {
            "Retry-After": {
                "description": description,
                "schema": {"type": "integer", "minimum": 1},
            }
        }

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Overloaded(_RetryLater):
    """Queues are full, a deadline passed, or no replica is ready (starting, stopping).

    Every 503 carries ``Retry-After``, so a client or load balancer backs off instead
    of hammering a service that is shedding load.
    """

    status_code = 503
    error_type = "Overloaded"
    default_detail = "The service is overloaded; retry later."
    header_docs = _RetryLater._header_doc("Seconds to wait before retrying.")


class RateLimited(_RetryLater):
    """The client passed its rate limit; ``retry_after_s`` is when a request fits again."""

    status_code = 429
    error_type = "RateLimited"
    default_detail = "Too many requests; retry later."
    header_docs = _RetryLater._header_doc(
        "Seconds until this client's next request fits its limit."
    )


class InvalidRequest(ImageTaggerError):
    """The request does not fit the API (a missing or out-of-range parameter, a bad body).

    FastAPI finds these before any route runs; the answer's ``detail`` is the list of
    issues, each ``{"loc": [...], "message": ..., "type": ...}``, not a sentence.
    """

    status_code = 422
    error_type = "ValidationError"
    default_detail = "The request is not valid."
    #: The issue /docs shows as the example.
    example_issues: ClassVar[tuple[dict[str, Any], ...]] = (
        {"loc": ["query", "url"], "message": "Field required", "type": "missing"},
    )

    def __init__(self, issues: list[dict[str, Any]] | None = None) -> None:
        super().__init__(self.default_detail)
        self.issues = list(self.example_issues) if issues is None else issues

    def __reduce__(self):
        return (type(self), (self.issues,))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.error_type, "detail": self.issues}


class RequestTimeout(ImageTaggerError):
    """The request did not arrive in time (slow headers or body): answered by the proxy in
    front of the app (HAProxy's ``timeout http-request``, :mod:`imagetagger.serving.haproxy`)."""

    status_code = 408
    error_type = "RequestTimeout"
    default_detail = "The request took too long to arrive."


class InternalError(ImageTaggerError):
    """A bug: answered without its details (the replica's log has them)."""


class RouteError(ImageTaggerError):
    """No such route, or not with that method: Starlette's own 404/405 (and any other
    status it raises), answered in the contract's shape with its headers (``Allow``)."""

    TYPES: ClassVar[dict[int, str]] = {404: "NotFound", 405: "MethodNotAllowed"}

    def __init__(
        self,
        status_code: int = 404,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or ("Not Found" if status_code == 404 else "HTTP error"))
        # Per instance, unlike the other errors: the status is Starlette's.
        self.status_code = status_code  # type: ignore[misc]
        self.error_type = self.TYPES.get(status_code, "HTTPError")  # type: ignore[misc]
        self._headers = dict(headers or {})

    def __reduce__(self):
        return (type(self), (self.status_code, self.detail, self._headers))

    @property
    def headers(self) -> dict[str, str]:
        return self._headers


class ModelLoadError(RuntimeError):
    """A model's weights could not be loaded; raised at startup, never per request."""


#: Every error answer of the API by type: docs/API.md's error table is tested against it.
ERROR_TABLE: dict[str, type[ImageTaggerError]] = {
    cls.error_type: cls
    for cls in (
        InvalidImage,
        Unauthorized,
        ForbiddenURL,
        UnreachableURL,
        ImageTooLarge,
        InvalidRequest,
        RequestTimeout,
        RateLimited,
        InternalError,
        Overloaded,
    )
}
