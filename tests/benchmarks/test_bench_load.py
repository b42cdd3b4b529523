"""The closed-loop load generator, against a small loopback server."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from benchmarks.load import ImageURLs, LoadResult, percentile, run_load

SEEN = web.AppKey("seen", list)


async def _predictions(request: web.Request) -> web.Response:
    """Answers by the image URL's name: predictions, an empty list, or a 503."""
    url = request.query["url"]
    request.app[SEEN].append(url)
    if "busy" in url:
        return web.json_response({"error": {"type": "Overloaded"}}, status=503)
    labels = [] if "empty" in url else [{"label": "cat", "confidence": 0.9}]
    return web.Response(text=json.dumps({"url": url, "predictions": labels}))


def with_tagger(body: Callable[[str, list[str]], Awaitable[Any]]) -> Any:
    """Run ``body(base_url, seen_image_urls)`` against the server, in a fresh loop."""

    async def run() -> Any:
        app = web.Application()
        app[SEEN] = []
        app.router.add_get("/predictions", _predictions)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await body(f"http://127.0.0.1:{port}", app[SEEN])
        finally:
            await runner.cleanup()

    return asyncio.run(run())


def _load(images: ImageURLs, **kwargs: Any) -> Callable[[str, list[str]], Awaitable[LoadResult]]:
    async def body(base: str, _: list[str]) -> LoadResult:
        return await run_load(base, images, **kwargs)

    return body


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0


def test_only_answers_with_predictions_count() -> None:
    images = ["http://i/ok.jpg", "http://i/empty.jpg", "http://i/busy.jpg"]

    async def body(base: str, seen: list[str]) -> tuple[LoadResult, list[str]]:
        return await run_load(base, images, concurrency=3, requests=9), list(seen)

    result, seen = with_tagger(body)
    assert dict(result.outcomes) == {"200": 3, "200-bad-body": 3, "503": 3}
    assert result.ok == 3 and result.errors == 6 and len(result.latencies_s) == 3
    assert sorted(seen) == sorted(images * 3)


def test_a_shared_iterator_continues_across_runs_and_lists_restart() -> None:
    unique = (f"http://i/{n}.jpg" for n in itertools.count())

    async def body(base: str, seen: list[str]) -> tuple[list[str], list[str]]:
        await run_load(base, unique, concurrency=2, requests=4)
        await run_load(base, unique, concurrency=1, requests=3)
        first = list(seen)
        seen.clear()
        await run_load(base, ["http://i/a.jpg", "http://i/b.jpg"], concurrency=1, requests=3)
        return first, list(seen)

    first, cycled = with_tagger(body)
    assert sorted(first) == sorted(f"http://i/{n}.jpg" for n in range(7))
    assert cycled == ["http://i/a.jpg", "http://i/b.jpg", "http://i/a.jpg"]


def test_duration_bounds_a_run() -> None:
    started = time.monotonic()
    result = with_tagger(_load(["http://i/ok.jpg"], concurrency=2, duration_s=0.3))
    assert result.ok > 0 and result.errors == 0 and result.requests_per_s > 0
    assert time.monotonic() - started < 10
