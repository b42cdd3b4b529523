"""The HTTP surface read off the error classes: answers and OpenAPI responses.

The ingress declares each route's errors as error classes; ``error_responses`` turns
them into the OpenAPI document, so the examples there are the answers' own bodies.
"""

from __future__ import annotations

import pickle
from typing import Any

from fastapi import FastAPI

from imagetagger import routes
from imagetagger.api.access import Access
from imagetagger.api.app import build_api
from imagetagger.api.auth import INVALID_KEY
from imagetagger.errors import (
    ERROR_TABLE,
    InvalidImage,
    InvalidRequest,
    RateLimited,
    Unauthorized,
)
from imagetagger.schemas import ErrorResponse, error_answer, error_example, error_responses

# Route -> (the errors the ingress declares for it, the statuses they must document).
ROUTES: dict[tuple[str, str], tuple[tuple[Any, ...], list[int]]] = {
    ("/predictions", "get"): (routes.PREDICT_URL.errors, [400, 401, 403, 404, 413, 422, 429, 503]),
    ("/predictions", "post"): (routes.PREDICT_UPLOAD.errors, [400, 401, 413, 422, 429, 503]),
    ("/predictions/batch", "post"): (routes.PREDICT_BATCH.errors, [401, 413, 422, 429, 503]),
}


def _openapi_responses(responses: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """What FastAPI writes into the OpenAPI document for ``responses`` on one route."""
    app = FastAPI(title="t", version="1")

    @app.get("/r", responses=responses)
    async def route(url: str) -> dict[str, str]:
        return {}

    return app.openapi()["paths"]["/r"]["get"]["responses"]


def test_every_route_documents_its_errors_from_the_error_classes() -> None:
    document = build_api(core=lambda: None, access=Access).openapi()
    for (path, method), (errors, statuses) in ROUTES.items():
        declared = document["paths"][path][method]["responses"]
        assert sorted(int(code) for code in declared if code != "200") == statuses
        expected = _openapi_responses(error_responses(*errors))
        for code in map(str, statuses):
            assert declared[code] == expected[code], (path, method, code)
            example = declared[code]["content"]["application/json"]["example"]
            assert set(example) == {"error"}


def test_the_401_example_is_the_answer_to_a_bad_key() -> None:
    docs = error_responses(*routes.PREDICT_URL.errors)
    assert docs[401]["content"]["application/json"]["example"] == error_example(
        "Unauthorized", INVALID_KEY
    )
    assert "WWW-Authenticate" in docs[401]["headers"]


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
