"""The request core's calls answered in-process: the library's fetcher, decoder and a model.

What the Downloader and ModelDeployment replicas do, without Ray: tests serve the whole
HTTP surface through it (the real decoder with the real model, or a fake model), and the
official clients' tests point at an app built on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np

from imagetagger import tracing
from imagetagger.download.fetch import fetcher_from_settings
from imagetagger.errors import ImageTaggerError
from imagetagger.images import PreparedImage, prepare_image
from imagetagger.models.specs import get_spec
from imagetagger.response_cache import image_digest
from imagetagger.settings import DownloaderSettings

#: A model: (N, S, S, 3) uint8 crops in, (N, 1000) probabilities out.
PredictProba = Callable[[np.ndarray], np.ndarray]


class LocalBackend:
    """Fetch, decode and crop as the Downloader does; infer with ``predict_proba``."""

    def __init__(
        self,
        model_name: str,
        predict_proba: PredictProba,
        identity: str,
        settings: DownloaderSettings | None = None,
    ) -> None:
        self._spec = get_spec(model_name)
        self._settings = settings or DownloaderSettings()
        self._fetcher = fetcher_from_settings(self._settings)
        self._predict_proba = predict_proba
        self._identity = identity

    async def load_urls(
        self, urls: list[str], contexts: list[tracing.Carrier | None] | None = None
    ) -> AsyncIterator[tuple[int, PreparedImage | ImageTaggerError]]:
        async def load(index: int, url: str) -> tuple[int, PreparedImage | ImageTaggerError]:
            with tracing.span("local.load", contexts[index] if contexts else None) as span:
                try:
                    data = await self._fetcher.fetch(url)
                except ImageTaggerError as error:
                    tracing.record_error(span, error)
                    return index, error
                return index, await self.load_bytes(data)

        for done in asyncio.as_completed([load(i, url) for i, url in enumerate(urls)]):
            yield await done

    async def load_bytes(
        self, data: bytes, context: tracing.Carrier | None = None
    ) -> PreparedImage | ImageTaggerError:
        try:
            pixels = await asyncio.to_thread(
                prepare_image,
                data,
                size=self._spec.input_size,
                crop_padding=self._spec.crop_padding,
                max_pixels=self._settings.max_image_pixels,
            )
        except ImageTaggerError as error:
            return error
        return PreparedImage(digest=image_digest(data), pixels=pixels)

    async def infer(
        self, pixels: np.ndarray, contexts: list[tracing.Carrier | None] | None = None
    ) -> tuple[str, np.ndarray]:
        first = contexts[0] if contexts else None
        with tracing.span("local.infer", first, links=contexts or ()):
            return self._identity, await asyncio.to_thread(self._predict_proba, pixels)

    async def model_identity(self) -> str:
        return self._identity

    async def close(self) -> None:
        await self._fetcher.close()
