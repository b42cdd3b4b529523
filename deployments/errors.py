"""The one place where anything a request raised becomes the contract's answer.

:func:`error_response` is called once per failed request, by every exception handler
of the app and by the outermost middleware for bugs: FastAPI's validation errors,
Starlette's 404/405/413 and unreadable bodies, our domain errors (raised here or in a
downstream replica), Ray's and Serve's failures (a dead replica, backpressure) and
bugs. The status, ``type``, ``detail`` and headers are all read off
:mod:`imagetagger.errors` (``ERROR_TABLE``).

Errors cross Ray process boundaries wrapped in ``RayTaskError`` (a subclass that also
inherits the original class); backpressure and dead replicas arrive as Serve/Ray
exceptions: :func:`as_domain_error` maps them.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    RayServeException,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagetagger.errors import (
    ImageTaggerError,
    ImageTooLarge,
    InternalError,
    InvalidRequest,
    Overloaded,
    RouteError,
    encodable,
)
from imagetagger.schemas import error_answer

logger = logging.getLogger("ray.serve")


def error_response(exc: BaseException, where: str = "") -> JSONResponse:
    """The contract's JSON answer for ``exc``; a bug is logged (``where``) and answered 500."""
    status_code, content, headers = error_answer(to_domain_error(exc, where))
    return JSONResponse(status_code=status_code, content=content, headers=headers)


def to_domain_error(exc: BaseException, where: str = "") -> ImageTaggerError:
    """What ``exc`` means for the client: a domain error, never None."""
    if isinstance(exc, RequestValidationError):
        return InvalidRequest(
            [
                {
                    "loc": [encodable(x) if isinstance(x, str) else x for x in error["loc"]],
                    "message": encodable(error["msg"]),
                    "type": error["type"],
                }
                for error in exc.errors()
            ]
        )
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == ImageTooLarge.status_code:  # FastAPI's request body limit
            return ImageTooLarge()
        if exc.status_code == 400:  # a body Starlette cannot parse (bad JSON, multipart)
            issue = {"loc": ["body"], "message": str(exc.detail), "type": "body_parsing"}
            return InvalidRequest([issue])
        return RouteError(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    error = as_domain_error(exc)
    if error is None:
        logger.error("Unexpected error%s: %r", f" on {where}" if where else "", exc)
        return InternalError()
    return error


def as_domain_error(exc: BaseException) -> ImageTaggerError | None:
    """The client-facing error for ``exc``, or None when it is a bug (answered as 500)."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        exc = exc.cause
    if type(exc) is RayServeException and exc.__cause__ is not None:
        # The router wraps a dead upstream replica's ActorDiedError in a bare
        # RayServeException ("... failed because an upstream actor died").
        exc = exc.__cause__
    if isinstance(exc, ImageTaggerError):
        return exc
    if isinstance(exc, BackPressureError):
        return Overloaded()
    if isinstance(
        exc, ActorDiedError | ActorUnavailableError | RayActorError | DeploymentUnavailableError
    ):
        return Overloaded("A replica is restarting; retry later.")
    return None
