"""Downloader deployment: fetch URLs (or take uploaded bytes) and make the model's inputs.

The ingress hands it the URLs of concurrent requests in one streamed call
(:meth:`load_group`: each answer leaves as soon as it is ready, so a slow origin holds
up no other image) and each upload in a call of its own (:meth:`load`: 16 uploads in
one message could pass gRPC's message limit). Each answer is the small model-ready
uint8 crop (at most S x S x 3 bytes, not the raw bytes) with the SHA-256 of the image's
bytes, the response cache's key. Decoding runs in worker threads so the replica's event
loop keeps serving other downloads meanwhile.

A client-caused failure (bad URL, not an image, too large) is *returned* as an
:class:`ImageTaggerError` value rather than raised: it is an expected outcome, not a
replica fault, and raising would make Serve log a traceback for every bad URL. The
value comes back to the ingress, which answers it without calling the model.

With tracing on, each image's work is a ``Downloader.load`` span in its own request's
trace (the carrier the ingress passes with it), with ``fetch`` (host, bytes, the SSRF
guard's verdict), ``decode`` (format, sizes, JPEG draft scale) and ``crop`` inside.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from ray import serve

from deployments.metrics import downloader_metrics
from imagetagger import tracing
from imagetagger.download.fetch import fetcher_config, fetcher_from_settings
from imagetagger.errors import ForbiddenURL, ImageTaggerError, InternalError
from imagetagger.images import PreparedImage, center_crop_resize, decode_image
from imagetagger.models.specs import get_spec
from imagetagger.response_cache import image_digest
from imagetagger.settings import DownloaderSettings

ImageSource = str | bytes  # a URL to fetch, or an upload's bytes

logger = logging.getLogger("ray.serve")


def _host(url: str) -> str:
    """The URL's host, for logs: never the full URL (it may carry credentials or tokens)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _fetch_attributes(
    url: str, error: ImageTaggerError | None, size: int | None = None
) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "server.address": _host(url),
        # netguard refuses private, loopback and link-local addresses (ForbiddenURL)
        "imagetagger.ssrf_guard": "denied" if isinstance(error, ForbiddenURL) else "allowed",
    }
    if size is not None:
        attributes["imagetagger.fetch.bytes"] = size
    return attributes


def _decode_attributes(data: bytes, decoded: tuple[int, int]) -> dict[str, str | int | float]:
    """The format and sizes of a decoded image (header read again: only when recording)."""
    with Image.open(io.BytesIO(data)) as header:  # reads the header only
        image_format, (width, height) = header.format or "?", header.size
    longest = max(decoded)
    return {
        "image.format": image_format,
        "image.bytes": len(data),
        "image.width": width,
        "image.height": height,
        "image.decoded_width": decoded[0],
        "image.decoded_height": decoded[1],
        # JPEG DCT scaling: 1 decodes every pixel, 8 one in 8 per side
        "image.draft_scale": round(max(width, height) / longest, 2) if longest else 1.0,
    }


@serve.deployment(name="Downloader")
class Downloader:
    def __init__(self, model_name: str) -> None:
        self._spec = get_spec(model_name)
        self._settings = DownloaderSettings()
        self._fetcher = fetcher_from_settings(self._settings)
        self._metrics = downloader_metrics()
        tracing.configure("Downloader")  # on when OTEL_EXPORTER_OTLP_*ENDPOINT is set

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config`` live (Serve calls this at start and on config change)."""
        self._apply(DownloaderSettings.model_validate(user_config or {}))

    def _apply(self, settings: DownloaderSettings) -> None:
        self._settings = settings
        self._fetcher.configure(*fetcher_config(settings))

    async def load(
        self, source: ImageSource, context: tracing.Carrier | None = None
    ) -> PreparedImage | ImageTaggerError:
        """The source's model-ready image, or the client's error (``context``: the
        request's trace context, when tracing is on)."""
        with tracing.span("Downloader.load", context) as span:
            data = await self._download(source)
            result = data if isinstance(data, ImageTaggerError) else await self._prepare(data)
            if isinstance(result, ImageTaggerError):
                tracing.record_error(span, result)
            return result

    async def load_group(
        self, urls: list[str], contexts: list[tracing.Carrier | None] | None = None
    ) -> AsyncIterator[tuple[int, PreparedImage | ImageTaggerError]]:
        """Each URL's :meth:`load` answer, streamed as ``(index, answer)`` when it is ready.

        One call for a group of concurrent requests (:mod:`imagetagger.grouping`): a
        slow origin delays only its own answer. A bug on one URL answers that URL with
        an internal error rather than ending the stream of the others.
        """
        loads = [
            asyncio.ensure_future(self._load_indexed(i, url, contexts[i] if contexts else None))
            for i, url in enumerate(urls)
        ]
        try:
            for next_done in asyncio.as_completed(loads):
                yield await next_done
        finally:
            for load in loads:
                load.cancel()

    async def _load_indexed(
        self, index: int, url: str, context: tracing.Carrier | None
    ) -> tuple[int, PreparedImage | ImageTaggerError]:
        try:
            return index, await self.load(url, context)
        except Exception:
            logger.exception("unexpected error loading an image (%s)", _host(url))
            return index, InternalError()

    async def _download(self, source: ImageSource) -> bytes | ImageTaggerError:
        """The image's bytes (an upload's as they are), or the client's error."""
        if isinstance(source, bytes):
            return source
        started = time.perf_counter()
        with tracing.span("fetch") as span:
            try:
                data = await self._fetcher.fetch(source)
            except ImageTaggerError as error:
                logger.info("download failed: %s (%s)", error.error_type, _host(source))
                if span is not None:
                    span.set_attributes(_fetch_attributes(source, error))
                    tracing.record_error(span, error)
                return error
            if span is not None:
                span.set_attributes(_fetch_attributes(source, None, len(data)))
        self._metrics.download_seconds.observe(time.perf_counter() - started)
        self._metrics.download_bytes.observe(len(data))
        return data

    async def _prepare(self, data: bytes) -> PreparedImage | ImageTaggerError:
        """Decode and crop image bytes in a worker thread (or return the client's error)."""
        started = time.perf_counter()
        try:
            prepared = await asyncio.to_thread(self._prepare_now, data)
        except ImageTaggerError as error:
            return error
        self._metrics.preprocess_seconds.observe(time.perf_counter() - started)
        return prepared

    def _prepare_now(self, data: bytes) -> PreparedImage:
        """:func:`imagetagger.images.prepare_image`, with a span for each step."""
        size, padding = self._spec.input_size, self._spec.crop_padding
        with tracing.span("decode") as span:
            image = decode_image(
                data,
                max_pixels=self._settings.max_image_pixels,
                target_size=size,
                crop_padding=padding,
            )
            if span is not None:
                span.set_attributes(_decode_attributes(data, image.size))
        with tracing.span("crop", attributes={"imagetagger.crop.size": size}):
            pixels = center_crop_resize(image, size, padding)
        return PreparedImage(digest=image_digest(data), pixels=pixels)

    async def check_health(self) -> None:
        """The fetcher's session must be usable; a closed one means the replica is broken."""
        if self._fetcher.closed:
            raise RuntimeError("the HTTP client session is closed")

    async def __del__(self) -> None:
        await self._fetcher.close()
