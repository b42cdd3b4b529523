"""ImageTagger: the ingress deployment, owning one request core and the HTTP app over it.

The app and every protocol's router are library code (:mod:`imagetagger.api.app`); the
request core (:mod:`imagetagger.api.core`) admits requests, gives them deadlines,
groups them and caches answers. This deployment hands the core its calls, the
Downloader's and the ModelDeployment's Serve handles (:class:`ServeBackend`), Ray's
errors mapped to the client's (:func:`deployments.errors.as_domain_error`) and Ray's
metric objects, and applies ``user_config`` live.

The crop comes back to the ingress and goes on to the model as a plain argument:
measured on 2 cores (benchmarks/README.md), that costs less CPU than handing the model
the Downloader's response to resolve, and a client's error skips the model call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import numpy as np
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from deployments.errors import as_domain_error
from deployments.metrics import ingress_metrics
from imagetagger import tracing
from imagetagger.api.access import Access, limiter_for
from imagetagger.api.app import build_api
from imagetagger.api.auth import ApiKeys
from imagetagger.api.core import Carriers, Loaded, RequestCore
from imagetagger.hierarchy import hierarchy
from imagetagger.settings import IngressSettings
from imagetagger.tracing import Carrier

logger = logging.getLogger("ray.serve")


class ServeBackend:
    """The core's calls as Serve handle calls (each a DeploymentResponse or a stream)."""

    def __init__(self, downloader: DeploymentHandle, model: DeploymentHandle) -> None:
        self._downloader = downloader
        self._streamed_loads = downloader.options(stream=True)
        self._model = model

    # Trace contexts travel as plain arguments, and only when tracing is on.
    def load_urls(
        self, urls: list[str], contexts: Carriers = None
    ) -> AsyncIterator[tuple[int, Loaded]]:
        if contexts is None:
            return self._streamed_loads.load_group.remote(urls)
        return self._streamed_loads.load_group.remote(urls, contexts)

    def load_bytes(self, data: bytes, context: Carrier | None = None) -> Awaitable[Loaded]:
        if context is None:
            return self._downloader.load.remote(data)
        return self._downloader.load.remote(data, context)

    def infer(
        self, pixels: np.ndarray, contexts: Carriers = None
    ) -> Awaitable[tuple[str, np.ndarray]]:
        if contexts is None:
            return self._model.infer_many.remote(pixels)
        return self._model.infer_many.remote(pixels, contexts)

    def model_identity(self) -> Awaitable[str]:
        return self._model.model_identity.remote()


def _replica() -> ImageTagger:
    """The serving replica (the ingress instance Serve routes this process's requests to)."""
    return serve.get_replica_context().servable_object


def _core() -> RequestCore:
    return _replica().core


def _access() -> Access:
    return _replica().access


app = build_api(
    _core,
    _access,
    map_error=as_domain_error,
    platform_errors=(RayError, RayServeException),
    metrics=ingress_metrics,
)


@serve.deployment(name="ImageTagger")
@serve.ingress(app)
class ImageTagger:
    def __init__(
        self, downloader: DeploymentHandle, model: DeploymentHandle, model_name: str
    ) -> None:
        tracing.configure("ImageTagger")  # on when OTEL_EXPORTER_OTLP_*ENDPOINT is set
        hierarchy()  # loaded (~0.1 s) at start, not by the first request for general labels
        self.core = RequestCore(
            ServeBackend(downloader, model),
            model_name,
            metrics=ingress_metrics(),
            map_error=as_domain_error,
        )
        # Keys come from the replica's environment (hashes only), read once at start;
        # a missing or bad key file fails the replica rather than serving without keys.
        self.access = Access(keys=ApiKeys.from_environ())
        keys = self.access.keys
        logger.info("API keys: %s", f"on, {len(keys)} configured" if keys else "off")

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = IngressSettings.model_validate(user_config or {})
        limiter = limiter_for(settings, self.access.limiter)
        if limiter is not self.access.limiter:
            logger.info(
                "rate limit: %s",
                f"{limiter.rate_per_s}/s, burst {limiter.burst}, per client" if limiter else "off",
            )
        self.core.reconfigure(settings)
        self.access.limiter = limiter
