"""The HTTP surface read off the error classes: answers and OpenAPI responses.

``error_responses`` must be a drop-in for the ingress's hand-written ``_responses``
tuples: the same dict for each route, and the same OpenAPI document from FastAPI.
"""

from __future__ import annotations

import pickle
from typing import Any

from fastapi import FastAPI

from deployments import ingress
from deployments.auth import INVALID_KEY
from imagetagger.errors import (
    ERROR_TABLE,
    ForbiddenURL,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    Overloaded,
    RateLimited,
    Unauthorized,
    UnreachableURL,
)
from imagetagger.schemas import ErrorResponse, error_answer, error_example, error_responses

# Each ingress tuple beside the error class (or instance) that stands for it.
INVALID_IMAGE = (ingress.INVALID_IMAGE, InvalidImage)
UNAUTHORIZED = (ingress.UNAUTHORIZED, Unauthorized(INVALID_KEY))
FORBIDDEN = (ingress.FORBIDDEN, ForbiddenURL)
UNREACHABLE = (ingress.UNREACHABLE, UnreachableURL)
TOO_LARGE = (ingress.TOO_LARGE, ImageTooLarge)
VALIDATION = (ingress.VALIDATION, InvalidRequest)
RATE_LIMITED = (ingress.RATE_LIMITED, RateLimited)
OVERLOADED = (ingress.OVERLOADED, Overloaded)

# The ingress's routes and what each declares, in its order.
ROUTES: dict[str, list[tuple[Any, Any]]] = {
    "GET /predictions": [
        INVALID_IMAGE,
        UNAUTHORIZED,
        FORBIDDEN,
        UNREACHABLE,
        TOO_LARGE,
        VALIDATION,
        RATE_LIMITED,
        OVERLOADED,
    ],
    "POST /predictions": [
        INVALID_IMAGE,
        UNAUTHORIZED,
        TOO_LARGE,
        VALIDATION,
        RATE_LIMITED,
        OVERLOADED,
    ],
    "POST /predictions/batch": [UNAUTHORIZED, TOO_LARGE, VALIDATION, RATE_LIMITED, OVERLOADED],
}


def _both(route: str) -> tuple[dict[int | str, Any], dict[int | str, Any]]:
    """(error_responses of the classes, the ingress's _responses of its tuples)."""
    tuples, errors = zip(*ROUTES[route], strict=True)
    return error_responses(*errors), ingress._responses(*tuples)


def _openapi(responses: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    app = FastAPI(title="t", version="1")

    @app.get("/r", responses=responses)
    async def route(url: str) -> dict[str, str]:
        return {}

    return app.openapi()


def test_error_responses_is_a_drop_in_for_the_ingress_tuples() -> None:
    for route in ROUTES:
        derived, handwritten = _both(route)
        assert derived == handwritten, route
        assert list(derived) == list(handwritten), route  # same statuses, same order


def test_error_responses_give_the_same_openapi_document() -> None:
    for route in ROUTES:
        derived, handwritten = _both(route)
        assert _openapi(derived) == _openapi(handwritten), route


def test_a_class_shows_its_default_detail_and_documents_its_headers() -> None:
    docs = error_responses(InvalidImage, RateLimited)
    assert docs[400] == {
        "model": ErrorResponse,
        "content": {
            "application/json": {
                "example": error_example("InvalidImage", InvalidImage.default_detail)
            }
        },
    }
    assert docs[429]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert "headers" not in docs[400]


def test_error_answer_reads_status_body_and_headers_off_the_error() -> None:
    assert error_answer(RateLimited(retry_after_s=2.5)) == (
        429,
        {"error": {"type": "RateLimited", "detail": "Too many requests; retry later."}},
        {"Retry-After": "3"},
    )
    assert error_answer(Unauthorized(INVALID_KEY)).headers == {"WWW-Authenticate": "Bearer"}
    issues = [{"loc": ["query", "top"], "message": "bad", "type": "x"}]
    assert error_answer(InvalidRequest(issues)) == (
        422,
        {"error": {"type": "ValidationError", "detail": issues}},
        {},
    )
    for cls in ERROR_TABLE.values():
        status_code, content, _ = error_answer(cls("why"))
        assert (status_code, content) == (cls.status_code, error_example(cls.error_type, "why"))


def test_invalid_request_keeps_its_issues_across_processes() -> None:
    issues = [{"loc": ["body"], "message": "bad", "type": "body_parsing"}]
    assert pickle.loads(pickle.dumps(InvalidRequest(issues))).issues == issues
