"""ImageTagger: the HTTP ingress (FastAPI under Ray Serve).

It validates requests, hands each image to the Downloader, passes the model-ready crop
it gets back on to the ModelDeployment (unless the response cache already holds that
model's answer for those bytes) and shapes the JSON. Every error leaves through one of
the exception handlers at the bottom, in the contract's error shape.

Concurrent requests share calls: their URLs go to the Downloader in one streamed call
that answers each image when it is ready (:mod:`imagetagger.grouping`, so a slow origin
delays only its own request), and their crops go to the model in one call
(``@serve.batch`` with no wait). A lone request goes at once; under load one call
carries many images (the calls, not the work, are what grouping saves on CPU).
"""

# No `from __future__ import annotations` here: FastAPI must resolve the route
# signatures of the Serve-wrapped class at import time.

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.access import Access, AccessMiddleware
from deployments.auth import INVALID_KEY, ApiKeys
from deployments.errors import as_domain_error
from deployments.metrics import ingress_metrics
from deployments.middleware import RequestMiddleware, json_error
from deployments.ratelimit import RateLimiter
from deployments.ui import ui_router
from imagetagger import __version__
from imagetagger.errors import (
    ForbiddenURL,
    ImageTaggerError,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    Overloaded,
    RateLimited,
    Unauthorized,
    UnreachableURL,
)
from imagetagger.grouping import StreamedGroups
from imagetagger.images import PreparedImage
from imagetagger.predictions import select_predictions
from imagetagger.response_cache import ResponseCache
from imagetagger.schemas import (
    BatchRequest,
    BatchResponse,
    ImageURL,
    MinConf,
    PredictionResponse,
    ServiceInfo,
    Top,
    UploadPredictionResponse,
    error_responses,
)
from imagetagger.settings import IngressSettings

logger = logging.getLogger("ray.serve")

DESCRIPTION = "Image Tagger: tags images with ImageNet-1K labels."
REVISION = 2
AUTHOR = "imagetagger developers"
GITHUB_URL = "https://github.com/imagetagger/imagetagger"


# What each route can answer besides 200, read off the error classes (status, example
# body, documented headers): the OpenAPI document and the answers share one table.
URL_ERRORS = (
    InvalidImage,
    Unauthorized(INVALID_KEY),
    ForbiddenURL,
    UnreachableURL,
    ImageTooLarge,
    InvalidRequest,
    RateLimited,
    Overloaded,
)
UPLOAD_ERRORS = (
    InvalidImage,
    Unauthorized(INVALID_KEY),
    ImageTooLarge,
    InvalidRequest,
    RateLimited,
    Overloaded,
)
BATCH_ERRORS = (Unauthorized(INVALID_KEY), ImageTooLarge, InvalidRequest, RateLimited, Overloaded)

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

# Hard ceilings on request bodies, enforced while reading (FastAPI's body limit); the
# live `max_upload_bytes` of user_config is checked on the file itself, below these.
MAX_UPLOAD_BODY_BYTES = 64 * 2**20
MAX_BATCH_BODY_BYTES = 1 * 2**20
BATCH_DEADLINE_GRACE_S = 1.0
# Grouped calls: at most GROUP_SIZE images per call, GROUPS_IN_FLIGHT calls at once;
# what arrives meanwhile forms the next group. A download group gives up its slot after
# DOWNLOAD_SLOT_HOLD_S even when slow origins keep it streaming (a 512-px photo is
# fetched and cropped in ~5 ms; under full load a group takes ~100 ms).
GROUP_SIZE = 16
GROUPS_IN_FLIGHT = 4
DOWNLOAD_SLOT_HOLD_S = 0.25
INFERENCE_SLOT_HOLD_S = 1.0  # inference takes about the same short time for every image

app = FastAPI(
    title="Image Tagger",
    version=__version__,
    description=DESCRIPTION
    + " Send an image URL (or upload a file) and get its ImageNet labels with "
    "softmax confidences, best first. To try it in a browser: [the page at /ui](ui).",
)
app.include_router(ui_router)  # GET /ui: a page for people, outside the API's schema


def _domain_error_or_raise(exc: Exception) -> ImageTaggerError:
    error = as_domain_error(exc)
    if error is None:
        raise exc
    return error


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    issues = [
        {"loc": list(error["loc"]), "message": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return json_error(422, "ValidationError", issues)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == ImageTooLarge.status_code:  # FastAPI's request body limit
        return json_error(413, ImageTooLarge.error_type, ImageTooLarge.default_detail)
    if exc.status_code == 400:  # a body Starlette cannot parse (bad JSON bytes, multipart)
        issue = {"loc": ["body"], "message": str(exc.detail), "type": "body_parsing"}
        return json_error(422, "ValidationError", [issue])
    error_type = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    response = json_error(exc.status_code, error_type, exc.detail)
    response.headers.update(exc.headers or {})
    return response


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Client-caused and capacity errors, raised here or in a downstream replica."""
    error = as_domain_error(exc)
    if error is not None:
        response = json_error(error.status_code, error.error_type, error.detail)
        response.headers.update(error.headers)
        return response
    logger.error("Unexpected error on %s %s: %r", request.method, request.url.path, exc)
    return json_error(500, "InternalError", "Internal error.")


for _error_class in (ImageTaggerError, RayError, RayServeException):
    app.add_exception_handler(_error_class, _domain_error)


def _limiter_for(settings: IngressSettings, current: RateLimiter | None) -> RateLimiter | None:
    """The limiter ``settings`` ask for: the current one (buckets kept) if unchanged."""
    if settings.rate_limit_per_s == 0:
        return None
    wanted = (settings.rate_limit_per_s, settings.rate_limit_burst)
    if current is not None and (current.rate_per_s, current.burst) == wanted:
        return current
    return RateLimiter(*wanted)


def _replica_access() -> Access:
    """The serving replica's Access (the ingress instance Serve routes requests to)."""
    return serve.get_replica_context().servable_object.access


# Starlette runs the last added outermost: RequestMiddleware logs the 401s and 429s too.
app.add_middleware(AccessMiddleware, access=_replica_access)
app.add_middleware(RequestMiddleware)


# The routes answer with a JSONResponse of plain dicts: the bytes FastAPI would make
# from the response model, without validating the answer a second time on its way out
# (the response models still document the routes in /openapi.json).

# Serve pickles the ingress class (and the FastAPI app with it) when the class is
# decorated, so every handler, middleware and helper the class uses is defined above it.


@serve.deployment(name="ImageTagger")
@serve.ingress(app)
class ImageTagger:
    def __init__(
        self, downloader: DeploymentHandle, model: DeploymentHandle, model_name: str
    ) -> None:
        self._downloader = downloader
        streamed_loads = downloader.options(stream=True)
        self._downloads: StreamedGroups[str, PreparedImage | ImageTaggerError] = StreamedGroups(
            lambda urls: streamed_loads.load_group.remote(urls),
            max_group=GROUP_SIZE,
            max_groups=GROUPS_IN_FLIGHT,
            hold_s=DOWNLOAD_SLOT_HOLD_S,
        )
        self._model = model
        self._inferences: StreamedGroups[np.ndarray, tuple[str, np.ndarray]] = StreamedGroups(
            self._infer_group,
            max_group=GROUP_SIZE,
            max_groups=GROUPS_IN_FLIGHT,
            hold_s=INFERENCE_SLOT_HOLD_S,
        )
        self._model_name = model_name
        self._settings = IngressSettings()
        self._in_flight = 0
        self._cache = ResponseCache(self._settings.response_cache_bytes)
        self._model_identity: str | None = None  # known after the model's first answer
        # Keys come from the replica's environment (hashes only), read once at start;
        # a missing or bad key file fails the replica rather than serving without keys.
        self.access = Access(keys=ApiKeys.from_environ())
        keys = self.access.keys
        logger.info("API keys: %s", f"on, {len(keys)} configured" if keys else "off")

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = IngressSettings.model_validate(user_config or {})
        limiter = _limiter_for(settings, self.access.limiter)
        if limiter is not self.access.limiter:
            logger.info(
                "rate limit: %s",
                f"{limiter.rate_per_s}/s, burst {limiter.burst}, per client" if limiter else "off",
            )
        self._settings = settings
        self.access.limiter = limiter
        self._cache.resize(settings.response_cache_bytes)

    @app.get("/", response_model=ServiceInfo, summary="Service information")
    async def info(self) -> ServiceInfo:
        return ServiceInfo(
            description=DESCRIPTION,
            version=__version__,
            revision=REVISION,
            author=AUTHOR,
            github_url=GITHUB_URL,
            model=self._model_name,
        )

    @app.get(
        "/predictions",
        response_model=PredictionResponse,
        summary="Tag the image at a URL",
        responses=error_responses(*URL_ERRORS),
        dependencies=GUARDED,
    )
    async def predict_url(
        self,
        url: Annotated[ImageURL, Query(description="http(s) URL of the image.")],
        top: Annotated[Top | None, Query()] = None,
        minconf: Annotated[MinConf | None, Query()] = None,
    ) -> JSONResponse:
        predictions = await self._admit(lambda: self._predict_url(url, top, minconf))
        return JSONResponse({"url": url, "predictions": predictions})

    @app.post(
        "/predictions",
        response_model=UploadPredictionResponse,
        summary="Tag an uploaded image",
        responses=error_responses(*UPLOAD_ERRORS),
        dependencies=GUARDED,
        max_body_size=MAX_UPLOAD_BODY_BYTES,
    )
    async def predict_upload(
        self,
        file: Annotated[UploadFile, File(description="The image file.")],
        top: Annotated[Top | None, Query()] = None,
        minconf: Annotated[MinConf | None, Query()] = None,
    ) -> JSONResponse:
        data = await self._read_upload(file)
        predictions = await self._admit(lambda: self._predict_bytes(data, top, minconf))
        return JSONResponse({"filename": file.filename, "predictions": predictions})

    @app.post(
        "/predictions/batch",
        response_model=BatchResponse,
        summary="Tag up to 64 image URLs at once",
        responses=error_responses(*BATCH_ERRORS),
        dependencies=GUARDED,
        max_body_size=MAX_BATCH_BODY_BYTES,
    )
    async def predict_batch(self, body: BatchRequest) -> JSONResponse:
        async def one(url: str) -> dict[str, Any]:
            try:
                predictions = await self._with_deadline(
                    self._predict_url(url, body.top, body.minconf)
                )
            except Exception as exc:
                error = _domain_error_or_raise(exc)
                return {"url": url, "error": error.to_dict()}
            return {"url": url, "predictions": predictions}

        # Each item has its own deadline; the whole request gets a little longer, so
        # a hung URL fails only its own item.
        results = await self._admit(
            lambda: asyncio.gather(*(one(u) for u in body.urls)),
            cost=len(body.urls),
            grace_s=BATCH_DEADLINE_GRACE_S,
        )
        return JSONResponse({"results": results})

    async def _predict_url(
        self, url: str, top: int | None, minconf: float | None
    ) -> list[dict[str, Any]]:
        return await self._tag(self._downloads.submit(url), top, minconf)

    async def _predict_bytes(
        self, data: bytes, top: int | None, minconf: float | None
    ) -> list[dict[str, Any]]:
        return await self._tag(self._downloader.load.remote(data), top, minconf)

    async def _infer_group(
        self, images: list[np.ndarray]
    ) -> AsyncIterator[tuple[int, tuple[str, np.ndarray]]]:
        """One model call for a group: each image's probabilities, with the model's identity."""
        identity, probabilities = await self._model.infer_many.remote(np.stack(images))
        self._model_identity = identity
        for index, row in enumerate(probabilities):
            yield index, (identity, row)

    async def _probabilities(self, image: PreparedImage) -> np.ndarray:
        """The model's answer for ``image``: from the cache when it holds one."""
        metrics = ingress_metrics()
        if self._cache.max_bytes:
            # Before the model's first answer its identity (the key) is unknown: a miss.
            identity = self._model_identity
            cached = None if identity is None else self._cache.get(identity, image.digest)
            if cached is not None:
                metrics.cache_hits.inc()
                return cached
            metrics.cache_misses.inc()
        identity, probabilities = await self._inferences.submit(image.pixels)
        if self._cache.max_bytes:
            self._cache.put(identity, image.digest, probabilities)
            stats = self._cache.stats()
            metrics.cache_entries.set(stats.entries)
            metrics.cache_bytes.set(stats.bytes)
        return probabilities

    async def _tag(
        self,
        load: Awaitable[PreparedImage | ImageTaggerError],
        top: int | None,
        minconf: float | None,
    ) -> list[dict[str, Any]]:
        """Labels for the Downloader's image; counts the outcome of every image.

        The crop comes back here and goes on to the model as a plain argument: measured
        on 2 cores (benchmarks/README.md), that costs less CPU than handing the model
        the Downloader's response to resolve, and a client's error skips the model call.
        """
        outcome = "InternalError"
        try:
            image = await load
            if isinstance(image, ImageTaggerError):  # client errors come back as values
                raise image
            probabilities = await self._probabilities(image)
            outcome = "ok"
            return select_predictions(probabilities, top=top, minconf=minconf)
        except Exception as exc:
            error = as_domain_error(exc)
            if error is None:
                raise
            outcome = error.error_type
            # Raise the domain error itself: Serve installs its own FastAPI handlers for
            # BackPressureError and friends, which would answer in plain text.
            raise error from exc
        finally:
            ingress_metrics().images.inc(tags={"outcome": outcome})

    async def _admit(
        self, work: Callable[[], Awaitable[Any]], cost: int = 1, grace_s: float = 0.0
    ) -> Any:
        """Run ``work`` unless this replica is already at ``max_in_flight`` images (503)."""
        if self._in_flight + cost > self._settings.max_in_flight:
            ingress_metrics().images.inc(cost, tags={"outcome": Overloaded.error_type})
            raise Overloaded()
        self._in_flight += cost
        try:
            return await self._with_deadline(work(), grace_s)
        finally:
            self._in_flight -= cost

    async def _with_deadline(self, work: Awaitable[Any], grace_s: float = 0.0) -> Any:
        try:
            async with asyncio.timeout(self._settings.request_timeout_s + grace_s):
                return await work
        except TimeoutError:
            raise Overloaded("The request took too long; retry later.") from None
        except ImageTaggerError:
            raise
        except Exception as exc:
            # Every route passes here: turn Ray/Serve failures into domain errors before
            # Serve's own FastAPI handlers (plain text) can answer them.
            error = as_domain_error(exc)
            if error is None:
                raise
            raise error from exc

    async def _read_upload(self, file: UploadFile) -> bytes:
        limit = self._settings.max_upload_bytes
        if file.size is not None and file.size > limit:
            raise ImageTooLarge()
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ImageTooLarge()
        return data
