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

# The ingress's routes, as its tuples and as error classes (same order).
ROUTES: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    "GET /predictions": (
        (
            ingress.INVALID_IMAGE,
            ingress.UNAUTHORIZED,
            ingress.FORBIDDEN,
            ingress.UNREACHABLE,
            ingress.TOO_LARGE,
            ingress.VALIDATION,
            ingress.RATE_LIMITED,
            ingress.OVERLOADED,
        ),
        (
            InvalidImage,
            Unauthorized(INVALID_KEY),
            ForbiddenURL,
            UnreachableURL,
            ImageTooLarge,
            InvalidRequest,
            RateLimited,
            Overloaded,
        ),
    ),
    "POST /predictions": (
        (
            ingress.INVALID_IMAGE,
            ingress.UNAUTHORIZED,
            ingress.TOO_LARGE,
            ingress.VALIDATION,
            ingress.RATE_LIMITED,
            ingress.OVERLOADED,
        ),
        (
            InvalidImage,
            Unauthorized(INVALID_KEY),
            ImageTooLarge,
            InvalidRequest,
            RateLimited,
            Overloaded,
        ),
    ),
    "POST /predictions/batch": (
        (
            ingress.UNAUTHORIZED,
            ingress.TOO_LARGE,
            ingress.VALIDATION,
            ingress.RATE_LIMITED,
            ingress.OVERLOADED,
        ),
        (Unauthorized(INVALID_KEY), ImageTooLarge, InvalidRequest, RateLimited, Overloaded),
    ),
}


def _openapi(responses: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    app = FastAPI(title="t", version="1")

    @app.get("/r", responses=responses)
    async def route(url: str) -> dict[str, str]:
        return {}

    return app.openapi()


def test_error_responses_is_a_drop_in_for_the_ingress_tuples() -> None:
    for route, (tuples, errors) in ROUTES.items():
        assert error_responses(*errors) == ingress._responses(*tuples), route
        assert list(error_responses(*errors)) == list(ingress._responses(*tuples)), route


def test_error_responses_give_the_same_openapi_document() -> None:
    for route, (tuples, errors) in ROUTES.items():
        assert _openapi(error_responses(*errors)) == _openapi(ingress._responses(*tuples)), route


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
