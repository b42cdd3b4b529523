"""The ingress's FastAPI app: its middleware, its error handlers and the /docs schemes.

The routes are the methods of the deployment's classes (``deployments.routes``,
``deployments.label_routes``), added to this ``app`` with the route table's options
(:mod:`imagetagger.routes`). Every error leaves through :func:`_answer_error`, in the
contract's shape (:func:`deployments.errors.error_response`).

Serve pickles the ingress class (and this app with it), so everything the app uses is
defined at module level.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.access import Access, AccessMiddleware
from deployments.errors import error_response
from deployments.middleware import RequestMiddleware
from deployments.ui import ui_router
from imagetagger import __version__
from imagetagger.errors import ImageTaggerError

DESCRIPTION = "Image Tagger: tags images with ImageNet-1K labels."

app = FastAPI(
    title="Image Tagger",
    version=__version__,
    description=DESCRIPTION
    + " Send an image URL (or upload a file) and get its ImageNet labels with "
    "softmax confidences, best first. To try it in a browser: [the page at /ui](ui).",
)
app.include_router(ui_router)  # GET /ui: a page for people, outside the API's schema


async def _answer_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, where=f"{request.method} {request.url.path}")


for _error_class in (
    RequestValidationError,
    StarletteHTTPException,
    ImageTaggerError,
    RayError,
    RayServeException,
):
    app.add_exception_handler(_error_class, _answer_error)


def _replica_access() -> Access:
    """The serving replica's Access (the ingress instance Serve routes requests to)."""
    return serve.get_replica_context().servable_object.access


# Starlette runs the last added outermost: RequestMiddleware logs the 401s and 429s too.
app.add_middleware(AccessMiddleware, access=_replica_access)
app.add_middleware(RequestMiddleware)

# The security schemes /docs shows. They only document: AccessMiddleware checks keys
# before the body is read, and with auto_error=False these never answer on their own.
_KEYS_NOTE = " Required only when the operator configured API keys (off by default)."
_BEARER = HTTPBearer(
    scheme_name="BearerKey",
    description="`Authorization: Bearer KEY`." + _KEYS_NOTE,
    auto_error=False,
)
_API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyHeader",
    description="`X-API-Key: KEY`." + _KEYS_NOTE,
    auto_error=False,
)
GUARDED = [Security(_BEARER), Security(_API_KEY)]
