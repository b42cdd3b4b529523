"""The HTTP app: every protocol's router over one request core, its middleware and errors.

Library code (no Ray): the ingress deployment builds it with the calls that find its
core and its access rules and wraps it with ``@serve.ingress``; tests build it over a
core wired to the library in-process. Each protocol is one router module
(:mod:`imagetagger.api.routers`) that parses its wire format, calls the core and
renders its answers and errors; the keys and rate limits of every guarded route are
checked once, before the body is read (:mod:`imagetagger.api.access`), in the shape
the route's protocol gives. Errors that leave a router unrendered (FastAPI's
validation, Starlette's 404/405, domain errors of the contract's routes) are answered
in the contract's shape by :func:`imagetagger.api.errors.error_response`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagetagger import __version__
from imagetagger.api.access import Access, AccessMiddleware
from imagetagger.api.core import RequestCore
from imagetagger.api.errors import ErrorMapper, error_response, only_domain_errors
from imagetagger.api.metrics import HttpMetrics, no_metrics
from imagetagger.api.request_log import RequestMiddleware
from imagetagger.api.routers import (
    cloud_vision,
    contract,
    hugging_face,
    open_inference,
    rekognition,
)
from imagetagger.api.tracing_middleware import TracingMiddleware
from imagetagger.api.ui import ui_router
from imagetagger.errors import ImageTaggerError

#: Each protocol's router, in the order their routes are matched, and their guards by
#: the names the route table uses.
ROUTERS = (
    contract.router,
    cloud_vision.router,
    rekognition.router,
    open_inference.router,
    hugging_face.router,
    ui_router,
)
GUARDS = {
    "contract": contract.guard,
    "cloud_vision": cloud_vision.guard,
    "rekognition": rekognition.guard,
    "open_inference": open_inference.guard,
    "hugging_face": hugging_face.guard,
}


def build_api(
    core: Callable[[], RequestCore],
    access: Callable[[], Access],
    *,
    map_error: ErrorMapper = only_domain_errors,
    platform_errors: tuple[type[BaseException], ...] = (),
    metrics: Callable[[], HttpMetrics] = no_metrics,
) -> FastAPI:
    """The app over the core that ``core()`` returns (the serving replica's).

    ``platform_errors`` are exception classes of the platform (Ray's, Serve's) that may
    reach the app; ``map_error`` turns them into the client's errors.
    """
    app = FastAPI(
        title="Image Tagger",
        version=__version__,
        description=contract.DESCRIPTION
        + " Send an image URL (or upload a file) and get its ImageNet labels with "
        "softmax confidences, best first. To try it in a browser: [the page at /ui](ui).",
        # Traces come from imagetagger.tracing (TracingMiddleware), whatever global tracer
        # provider the platform sets: FastAPI's own spans would duplicate the request span.
        telemetry={"tracing": False},
    )
    app.state.core = core
    for router in ROUTERS:
        app.include_router(router)

    async def answer_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, f"{request.method} {request.url.path}", map_error)

    for error_class in (
        RequestValidationError,
        StarletteHTTPException,
        ImageTaggerError,
        *platform_errors,
    ):
        app.add_exception_handler(error_class, answer_error)
    # Starlette runs the last added outermost: the request log sees the 401s and 429s too.
    app.add_middleware(AccessMiddleware, access=access, guards=GUARDS)
    app.add_middleware(RequestMiddleware, metrics=metrics)
    # Outermost: the request span is current while the request is logged and served.
    app.add_middleware(TracingMiddleware)
    return app


def local_api(core: RequestCore, access: Access | None = None) -> FastAPI:
    """The app over one in-process core (tests, and the official clients' checks)."""
    rules = access or Access()
    return build_api(lambda: core, lambda: rules)
