"""The one mapping from downstream failures to contract errors, without a cluster."""

from __future__ import annotations

import pickle

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import BackPressureError

from deployments.errors import as_domain_error
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


@pytest.mark.parametrize("error", [InvalidImage(), UnreachableURL(), ForbiddenURL("why")])
def test_domain_errors_map_to_themselves(error) -> None:
    mapped = as_domain_error(error)
    assert type(mapped) is type(error)
    assert mapped.to_dict() == error.to_dict()


def test_error_wrapped_by_ray_keeps_type_and_detail() -> None:
    cause = ImageTooLarge("Image has 400000000 pixels; the limit is 64000000.")
    wrapped = RayTaskError("fetch", "traceback text", cause).as_instanceof_cause()
    mapped = as_domain_error(wrapped)
    assert type(mapped) is ImageTooLarge
    assert mapped.detail == cause.detail
    assert "traceback" not in mapped.detail


def test_errors_survive_pickling_across_processes() -> None:
    for cls in ERROR_TABLE.values():
        if cls is InvalidRequest:  # its detail is the list of issues
            issues = [{"loc": ["query", "top"], "message": "too big", "type": "less_than_equal"}]
            error = pickle.loads(pickle.dumps(cls(issues)))
            assert type(error) is cls and error.to_dict()["detail"] == issues
            continue
        error = pickle.loads(pickle.dumps(cls("custom detail")))
        assert type(error) is cls and error.detail == "custom detail"


def test_rate_limited_keeps_its_retry_after_across_processes() -> None:
    error = pickle.loads(pickle.dumps(RateLimited("slow down", retry_after_s=7)))
    assert (error.detail, error.retry_after_s) == ("slow down", 7)
    assert error.headers == {"Retry-After": "7"}
    assert Unauthorized().headers == {"WWW-Authenticate": "Bearer"}
    assert InvalidImage().headers == {}


def test_backpressure_and_dead_replicas_are_overloaded() -> None:
    assert type(as_domain_error(BackPressureError(5, 4))) is Overloaded
    dead = as_domain_error(ActorDiedError())
    assert type(dead) is Overloaded and dead.status_code == 503


def test_bugs_are_not_client_errors() -> None:
    assert as_domain_error(ValueError("bug")) is None
    assert as_domain_error(RayTaskError("f", "tb", KeyError("x")).as_instanceof_cause()) is None


def test_error_table_statuses() -> None:
    assert {name: cls.status_code for name, cls in ERROR_TABLE.items()} == {
        "InvalidImage": 400,
        "Unauthorized": 401,
        "ForbiddenURL": 403,
        "UnreachableURL": 404,
        "ImageTooLarge": 413,
        "ValidationError": 422,
        "RequestTimeout": 408,
        "RateLimited": 429,
        "InternalError": 500,
        "Overloaded": 503,
    }
    assert InvalidImage().detail == "Url is not pointing to a valid image format."
    assert UnreachableURL().detail == "Url cannot be reached."


def test_a_validation_error_echoing_a_lone_surrogate_is_still_written() -> None:
    """A JSON key "\\ud800" (valid JSON, not encodable as UTF-8) in a 422's loc."""
    from fastapi.exceptions import RequestValidationError

    from imagetagger.api.errors import error_response

    exc = RequestValidationError(
        [
            {
                "loc": ("body", "\ud800"),
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            }
        ]
    )
    response = error_response(exc)
    assert response.status_code == 422
    assert b"\\ud800" in response.body
