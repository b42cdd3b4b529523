"""ImageTagger: the HTTP ingress deployment and the request path every route shares.

The routes are inherited (:mod:`deployments.routes` for the contract's,
:mod:`deployments.label_routes` for Cloud Vision's and Rekognition's); this class holds
what they call: it hands each image to the Downloader, passes the model-ready crop it
gets back on to the ModelDeployment (unless the response cache already holds that
model's answer for those bytes), admits requests up to ``max_in_flight`` and gives each
a deadline.

Concurrent requests share calls: their URLs go to the Downloader in one streamed call
that answers each image when it is ready (:mod:`imagetagger.grouping`, so a slow origin
delays only its own request), and their crops go to the model in one call. A lone
request goes at once; under load one call carries many images (the calls, not the
work, are what grouping saves on CPU). The crop comes back here and goes on to the
model as a plain argument: measured on 2 cores (benchmarks/README.md), that costs less
CPU than handing the model the Downloader's response to resolve, and a client's error
skips the model call.
"""

# No `from __future__ import annotations` here: FastAPI must resolve the route
# signatures of the Serve-wrapped class at import time.

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.access import Access
from deployments.api import app
from deployments.auth import ApiKeys
from deployments.errors import as_domain_error
from deployments.label_routes import LabelApiRoutes
from deployments.metrics import ingress_metrics
from deployments.ratelimit import RateLimiter
from deployments.routes import TaggingRoutes
from imagetagger.errors import ImageTaggerError, Overloaded
from imagetagger.grouping import StreamedGroups
from imagetagger.hierarchy import general_labels, hierarchy
from imagetagger.images import PreparedImage
from imagetagger.predictions import select_predictions
from imagetagger.response_cache import ResponseCache
from imagetagger.settings import IngressSettings

logger = logging.getLogger("ray.serve")

Loaded = Awaitable[PreparedImage | ImageTaggerError]  # a Downloader answer on its way

# Grouped calls: at most GROUP_SIZE images per call, GROUPS_IN_FLIGHT calls at once;
# what arrives meanwhile forms the next group. A download group gives up its slot after
# DOWNLOAD_SLOT_HOLD_S even when slow origins keep it streaming (a 512-px photo is
# fetched and cropped in ~5 ms; under full load a group takes ~100 ms).
GROUP_SIZE = 16
GROUPS_IN_FLIGHT = 4
DOWNLOAD_SLOT_HOLD_S = 0.25
INFERENCE_SLOT_HOLD_S = 1.0  # inference takes about the same short time for every image
# General labels' defaults (Cloud Vision's): minconf 0.5 unless given, and top 10 when
# neither is; a top that cuts keeps the most specific (Hierarchy.select), since the
# broadest nodes ("animal") always have the highest confidence.
GENERAL_DEFAULT_TOP = 10
GENERAL_DEFAULT_MINCONF = 0.5


def _limiter_for(settings: IngressSettings, current: RateLimiter | None) -> RateLimiter | None:
    """The limiter ``settings`` ask for: the current one (buckets kept) if unchanged."""
    if settings.rate_limit_per_s == 0:
        return None
    wanted = (settings.rate_limit_per_s, settings.rate_limit_burst)
    if current is not None and (current.rate_per_s, current.burst) == wanted:
        return current
    return RateLimiter(*wanted)


@serve.deployment(name="ImageTagger")
@serve.ingress(app)
class ImageTagger(TaggingRoutes, LabelApiRoutes):
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
        hierarchy()  # loaded (~0.1 s) at start, not by the first request for general labels
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

    def _load_url(self, url: str) -> Loaded:
        return self._downloads.submit(url)

    def _load_bytes(self, data: bytes) -> Loaded:
        # One call per upload: 16 uploads in one message could pass gRPC's message limit.
        return self._downloader.load.remote(data)

    async def _answer(
        self, load: Loaded, top: int | None, minconf: float | None, labels: str = "fine"
    ) -> dict[str, Any]:
        """The answer's labels: ``predictions``, and ``general`` when asked for."""
        probabilities = await self._probabilities_of(load)
        answer: dict[str, Any] = {
            "predictions": select_predictions(probabilities, top=top, minconf=minconf)
        }
        if labels == "general":
            if top is None and minconf is None:
                top = GENERAL_DEFAULT_TOP
            if minconf is None:
                minconf = GENERAL_DEFAULT_MINCONF
            chosen = general_labels(probabilities, top=top, minconf=minconf)
            answer["general"] = [label.to_dict() for label in chosen]
        return answer

    async def _probabilities_of(self, load: Loaded) -> np.ndarray:
        """The model's 1000 probabilities for the Downloader's image; counts every outcome."""
        outcome = "InternalError"
        try:
            image = await load
            if isinstance(image, ImageTaggerError):  # client errors come back as values
                raise image
            probabilities = await self._probabilities(image)
            outcome = "ok"
            return probabilities
        except Exception as exc:
            error = as_domain_error(exc)
            if error is None:
                raise
            outcome = error.error_type
            if error is exc:
                raise
            # Raise the domain error itself: Serve installs its own FastAPI handlers for
            # BackPressureError and friends, which would answer in plain text.
            raise error from exc
        finally:
            ingress_metrics().images.inc(tags={"outcome": outcome})

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

    async def _infer_group(
        self, images: list[np.ndarray]
    ) -> AsyncIterator[tuple[int, tuple[str, np.ndarray]]]:
        """One model call for a group: each image's probabilities, with the model's identity."""
        identity, probabilities = await self._model.infer_many.remote(np.stack(images))
        self._model_identity = identity
        for index, row in enumerate(probabilities):
            yield index, (identity, row)

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
