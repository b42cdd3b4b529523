"""The request core: the one path every protocol's images take to the model.

Every router (the contract's routes, Cloud Vision, Rekognition, the Open Inference
Protocol, Hugging Face) parses its wire format, then calls :meth:`RequestCore.classify`
or :meth:`RequestCore.classify_each` and renders what comes back in its own shape. The
core owns what they share: admission (``max_in_flight``), deadlines, grouping, the
response cache and the metrics of every outcome.

It imports no Ray: it is handed the Downloader's and the model's calls (a
:class:`Backend`). The ingress deployment wires it to Serve handles; tests wire it to
the library in-process (the real decoder, the real model) or to fakes.

Concurrent requests share calls: their URLs go to the Downloader in one streamed call
that answers each image when it is ready (:mod:`imagetagger.grouping`, so a slow origin
delays only its own request), and their crops go to the model in one call. A lone
request goes at once; under load one call carries many images.

With tracing on (:mod:`imagetagger.tracing`), each image's download, response cache
lookup and model call is a span of its request's trace, and each image travels with
its request's W3C context (a carrier), so the Downloader's and the model's spans join
the trace of every request in a shared call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np

from imagetagger import tracing
from imagetagger.api.errors import ErrorMapper, only_domain_errors
from imagetagger.api.metrics import CoreMetrics, NullMetrics
from imagetagger.errors import ImageTaggerError, InternalError, Overloaded
from imagetagger.grouping import StreamedGroups
from imagetagger.images import PreparedImage
from imagetagger.response_cache import ResponseCache
from imagetagger.settings import IngressSettings

logger = logging.getLogger("ray.serve")

T = TypeVar("T")
#: An image as a client sent it: a URL (``str``) or the encoded bytes.
ImageRef = str | bytes
Loaded = PreparedImage | ImageTaggerError  # the Downloader answers client errors as values
Carriers = list[tracing.Carrier | None] | None  # each image's trace context; None when off

# Grouped calls: at most GROUP_SIZE images per call, GROUPS_IN_FLIGHT calls at once;
# what arrives meanwhile forms the next group. A download group gives up its slot after
# DOWNLOAD_SLOT_HOLD_S even when slow origins keep it streaming (a 512-px photo is
# fetched and cropped in ~5 ms; under full load a group takes ~100 ms).
GROUP_SIZE = 16
GROUPS_IN_FLIGHT = 4
DOWNLOAD_SLOT_HOLD_S = 0.25
INFERENCE_SLOT_HOLD_S = 1.0  # inference takes about the same short time for every image
#: A request of several images gets this much longer than one image's deadline, so a
#: hung image fails only its own item.
MANY_DEADLINE_GRACE_S = 1.0
READY_PROBE_S = 2.0


class Backend(Protocol):
    """The calls the core is handed: the Downloader's and the model's."""

    def load_urls(
        self, urls: list[str], contexts: Carriers = None
    ) -> AsyncIterator[tuple[int, Loaded]]:
        """Fetch, decode and crop ``urls``: ``(index, image or client error)``, any order.
        ``contexts``: each URL's trace context when tracing is on."""
        ...

    def load_bytes(self, data: bytes, context: tracing.Carrier | None = None) -> Awaitable[Loaded]:
        """Decode and crop one uploaded image."""
        ...

    def infer(
        self, pixels: np.ndarray, contexts: Carriers = None
    ) -> Awaitable[tuple[str, np.ndarray]]:
        """The model's identity and the (N, 1000) probabilities of N crops."""
        ...

    def model_identity(self) -> Awaitable[str]:
        """The model's identity, once a model replica answers (readiness)."""
        ...


class RequestCore:
    """Admission, deadlines, grouping, the response cache and metrics over a backend."""

    def __init__(
        self,
        backend: Backend,
        model_name: str,
        settings: IngressSettings | None = None,
        metrics: CoreMetrics | None = None,
        map_error: ErrorMapper = only_domain_errors,
    ) -> None:
        self.model_name = model_name
        self._backend = backend
        self._metrics = metrics or NullMetrics()
        self._map_error = map_error
        self._settings = settings or IngressSettings()
        self._cache = ResponseCache(self._settings.response_cache_bytes)
        self._in_flight = 0
        self._model_identity: str | None = None  # known after the model's first answer
        self._downloads: StreamedGroups[tuple[str, tracing.Carrier | None], Loaded] = (
            StreamedGroups(
                self._load_group,
                max_group=GROUP_SIZE,
                max_groups=GROUPS_IN_FLIGHT,
                hold_s=DOWNLOAD_SLOT_HOLD_S,
            )
        )
        self._inferences: StreamedGroups[
            tuple[np.ndarray, tracing.Carrier | None], tuple[str, np.ndarray]
        ] = StreamedGroups(
            self._infer_group,
            max_group=GROUP_SIZE,
            max_groups=GROUPS_IN_FLIGHT,
            hold_s=INFERENCE_SLOT_HOLD_S,
        )

    @property
    def settings(self) -> IngressSettings:
        return self._settings

    def reconfigure(self, settings: IngressSettings) -> None:
        """Apply new ``user_config`` live (the cache keeps what still fits)."""
        self._settings = settings
        self._cache.resize(settings.response_cache_bytes)

    async def classify(self, image: ImageRef) -> np.ndarray:
        """One image's 1000 probabilities: admitted, within the deadline, or its error."""
        return await self.admit(lambda: self._probabilities_of(image))

    async def classify_each(
        self, images: Sequence[ImageRef]
    ) -> list[np.ndarray | ImageTaggerError]:
        """Each image's probabilities or its own error, in order; one bad image fails
        only its own item. The request is admitted (or refused, 503) as a whole."""

        async def one(image: ImageRef) -> np.ndarray | ImageTaggerError:
            try:
                return await self._with_deadline(self._probabilities_of(image))
            except Exception as exc:
                return self.domain_error(exc)

        if not images:
            return []
        return await self.admit(
            lambda: asyncio.gather(*(one(image) for image in images)),
            cost=len(images),
            grace_s=MANY_DEADLINE_GRACE_S,
        )

    async def ready(self) -> bool:
        """Whether the model answers (the Open Inference Protocol's readiness)."""
        if self._model_identity is not None:
            return True
        try:
            async with asyncio.timeout(READY_PROBE_S):
                self._model_identity = await self._backend.model_identity()
        except Exception:
            return False
        return True

    async def admit(
        self, work: Callable[[], Awaitable[T]], cost: int = 1, grace_s: float = 0.0
    ) -> T:
        """Run ``work`` unless this replica is already at ``max_in_flight`` images (503)."""
        if self._in_flight + cost > self._settings.max_in_flight:
            self._metrics.images.inc(cost, tags={"outcome": Overloaded.error_type})
            raise Overloaded()
        self._in_flight += cost
        try:
            return await self._with_deadline(work(), grace_s)
        finally:
            self._in_flight -= cost

    def domain_error(self, exc: BaseException) -> ImageTaggerError:
        """What ``exc`` means for the client; a bug is logged and becomes InternalError."""
        error = self._map_error(exc)
        if error is None:
            logger.error("Unexpected error: %r", exc)
            return InternalError()
        return error

    async def _with_deadline(self, work: Awaitable[T], grace_s: float = 0.0) -> T:
        try:
            async with asyncio.timeout(self._settings.request_timeout_s + grace_s):
                return await work
        except TimeoutError:
            raise Overloaded("The request took too long; retry later.") from None
        except ImageTaggerError:
            raise
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            raise error from exc

    def _load(self, image: ImageRef) -> Awaitable[Loaded]:
        if isinstance(image, str):
            return self._downloads.submit((image, tracing.carrier()))
        # One call per upload: 16 uploads in one message could pass gRPC's message limit.
        return self._backend.load_bytes(image, tracing.carrier())

    def _load_group(
        self, items: list[tuple[str, tracing.Carrier | None]]
    ) -> AsyncIterator[tuple[int, Loaded]]:
        urls = [url for url, _ in items]
        return self._backend.load_urls(urls, [c for _, c in items] if tracing.enabled() else None)

    async def _probabilities_of(self, image: ImageRef) -> np.ndarray:
        """The model's 1000 probabilities for one image; counts every outcome."""
        outcome = "InternalError"
        try:
            with tracing.span("download" if isinstance(image, str) else "upload"):
                loaded = await self._load(image)
                if isinstance(loaded, ImageTaggerError):  # client errors come back as values
                    raise loaded  # and set the span's status on the way out
            probabilities = await self._cached_probabilities(loaded)
            outcome = "ok"
            return probabilities
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            outcome = error.error_type
            if error is exc:
                raise
            # Raise the domain error itself, so every router renders it in its shape.
            raise error from exc
        finally:
            self._metrics.images.inc(tags={"outcome": outcome})

    async def _cached_probabilities(self, image: PreparedImage) -> np.ndarray:
        """The model's answer for ``image``: from the cache when it holds one."""
        if self._cache.max_bytes:
            # Before the model's first answer its identity (the key) is unknown: a miss.
            identity = self._model_identity
            with tracing.span("response_cache") as span:
                cached = None if identity is None else self._cache.get(identity, image.digest)
                if span is not None:
                    span.set_attribute("imagetagger.cache.hit", cached is not None)
            if cached is not None:
                self._metrics.cache_hits.inc()
                return cached
            self._metrics.cache_misses.inc()
        with tracing.span("model"):
            identity, probabilities = await self._inferences.submit(
                (image.pixels, tracing.carrier())
            )
        if self._cache.max_bytes:
            self._cache.put(identity, image.digest, probabilities)
            stats = self._cache.stats()
            self._metrics.cache_entries.set(stats.entries)
            self._metrics.cache_bytes.set(stats.bytes)
        return probabilities

    async def _infer_group(
        self, items: list[tuple[np.ndarray, tracing.Carrier | None]]
    ) -> AsyncIterator[tuple[int, tuple[str, np.ndarray]]]:
        """One model call for a group: each image's probabilities, with the model's identity."""
        pixels = np.stack([image for image, _ in items])
        contexts = [context for _, context in items] if tracing.enabled() else None
        identity, probabilities = await self._backend.infer(pixels, contexts)
        self._model_identity = identity
        for index, row in enumerate(probabilities):
            yield index, (identity, row)
