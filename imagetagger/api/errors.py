"""The one place where anything a request raised becomes the contract's answer.

:func:`error_response` is called once per failed request of the contract's routes, by
every exception handler of the app and by the request log for bugs: FastAPI's
validation errors, Starlette's 404/405/413 and unreadable bodies, domain errors (raised
here or in a downstream replica) and bugs. Errors of the platform the app runs on
(Ray's, Serve's) are mapped by the :data:`ErrorMapper` the app is built with. The
status, ``type``, ``detail`` and headers are all read off :mod:`imagetagger.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagetagger.errors import (
    ImageTaggerError,
    ImageTooLarge,
    InternalError,
    InvalidRequest,
    RouteError,
    encodable,
)
from imagetagger.schemas import error_answer

logger = logging.getLogger("ray.serve")

#: A platform error (a dead replica, backpressure) as the client's error; None: a bug.
ErrorMapper = Callable[[BaseException], ImageTaggerError | None]


def only_domain_errors(exc: BaseException) -> ImageTaggerError | None:
    """The mapper outside a platform: only domain errors are the client's."""
    return exc if isinstance(exc, ImageTaggerError) else None


def error_response(
    exc: BaseException, where: str = "", map_error: ErrorMapper = only_domain_errors
) -> JSONResponse:
    """The contract's JSON answer for ``exc``; a bug is logged (``where``) and answered 500."""
    status_code, content, headers = error_answer(to_domain_error(exc, where, map_error))
    return JSONResponse(status_code=status_code, content=content, headers=headers)


def to_domain_error(
    exc: BaseException, where: str = "", map_error: ErrorMapper = only_domain_errors
) -> ImageTaggerError:
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
    error = map_error(exc)
    if error is None:
        logger.error("Unexpected error%s: %r", f" on {where}" if where else "", exc)
        return InternalError()
    return error
