"""Downloader deployment: fetch a URL (or take uploaded bytes) and make the model's input.

It returns the small model-ready uint8 crop, not the raw bytes, so what travels on to
the ModelDeployment is at most S x S x 3 bytes. Decoding runs in a worker thread so
the replica's event loop keeps serving other downloads meanwhile.

A client-caused failure (bad URL, not an image, too large) is *returned* as an
:class:`ImageTaggerError` value rather than raised: it is an expected outcome, not a
replica fault, and raising would make Serve log a traceback for every bad URL. The
value comes back to the ingress, which answers it without calling the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from ray import serve

from deployments.metrics import downloader_metrics
from imagetagger.download.fetch import FetchLimits, fetcher_from_settings
from imagetagger.download.netguard import AddressPolicy
from imagetagger.errors import ImageTaggerError
from imagetagger.images import prepare_image
from imagetagger.models.specs import get_spec
from imagetagger.settings import DownloaderSettings

logger = logging.getLogger("ray.serve")


def _host(url: str) -> str:
    """The URL's host, for logs: never the full URL (it may carry credentials or tokens)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


@serve.deployment(name="Downloader")
class Downloader:
    def __init__(self, model_name: str) -> None:
        self._spec = get_spec(model_name)
        self._settings = DownloaderSettings()
        self._fetcher = fetcher_from_settings(self._settings)
        self._metrics = downloader_metrics()
        self._apply(self._settings)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config`` live (Serve calls this at start and on config change)."""
        self._apply(DownloaderSettings.model_validate(user_config or {}))

    def _apply(self, settings: DownloaderSettings) -> None:
        self._settings = settings
        self._fetcher.configure(
            AddressPolicy(settings.allowed_networks),
            FetchLimits(
                max_bytes=settings.max_image_bytes,
                timeout_s=settings.timeout_s,
                max_connections_per_host=settings.max_connections_per_host,
            ),
        )

    async def fetch(self, url: str) -> np.ndarray | ImageTaggerError:
        """Download ``url`` and return the model-ready crop (or the client's error)."""
        started = time.perf_counter()
        try:
            data = await self._fetcher.fetch(url)
        except ImageTaggerError as error:
            logger.info("download failed: %s (%s)", error.error_type, _host(url))
            return error
        self._metrics.download_seconds.observe(time.perf_counter() - started)
        self._metrics.download_bytes.observe(len(data))
        return await self.prepare(data)

    async def prepare(self, data: bytes) -> np.ndarray | ImageTaggerError:
        """Decode and crop image bytes in a worker thread (or return the client's error)."""
        started = time.perf_counter()
        try:
            image = await asyncio.to_thread(
                prepare_image,
                data,
                size=self._spec.input_size,
                crop_padding=self._spec.crop_padding,
                max_pixels=self._settings.max_image_pixels,
            )
        except ImageTaggerError as error:
            return error
        self._metrics.preprocess_seconds.observe(time.perf_counter() - started)
        return image

    async def check_health(self) -> None:
        """The fetcher's session must be usable; a closed one means the replica is broken."""
        if self._fetcher.closed:
            raise RuntimeError("the HTTP client session is closed")

    async def __del__(self) -> None:
        await self._fetcher.close()
