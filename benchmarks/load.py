"""The closed-loop load generator every benchmark uses (aiohttp, one process).

C workers each send ``GET /predictions?url=&top=``, wait for the answer and send the
next. Image URLs come from a list (cycled from its start on every run) or from an
iterator shared between runs (the ``unique`` workload: a new URL every request, never
repeated within a bench run). A request counts as successful only when it answers 200
with a non-empty ``predictions`` list.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: Where each request's image URL comes from.
ImageURLs = Sequence[str] | Iterator[str]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolated linearly like numpy; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LoadResult:
    """What one load run saw: latencies of successful requests and every outcome."""

    concurrency: int
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "503", "timeout", ...

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def errors(self) -> int:
        return sum(self.outcomes.values()) - self.ok

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000.0

    def summary(self) -> dict[str, Any]:
        """Plain numbers for tables and JSON."""
        return {
            "concurrency": self.concurrency,
            "requests": sum(self.outcomes.values()),
            "ok": self.ok,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "req_per_s": round(self.requests_per_s, 3),
            "p50_ms": round(self.latency_ms(50), 1),
            "p95_ms": round(self.latency_ms(95), 1),
            "p99_ms": round(self.latency_ms(99), 1),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def prediction_url(base_url: str, image_url: str, top: int) -> str:
    query = urllib.parse.urlencode({"url": image_url, "top": top})
    return f"{base_url.rstrip('/')}/predictions?{query}"


async def _one_request(session: aiohttp.ClientSession, url: str) -> str:
    """Send one request; return its outcome key ("200" only for a well-formed answer)."""
    try:
        async with session.get(url) as response:
            body = await response.read()
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return type(exc).__name__
    if response.status != 200:
        return str(response.status)
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        return "200-bad-body"
    return "200" if isinstance(predictions, list) and predictions else "200-bad-body"


def _url_source(images: ImageURLs) -> Iterator[str]:
    if isinstance(images, Sequence):
        if not images:
            raise ValueError("need at least one image URL")
        return itertools.cycle(images)
    return images


async def run_load(
    base_url: str,
    images: ImageURLs,
    *,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    max_seconds: float = 600.0,
    top: int = 5,
    timeout_s: float = 60.0,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight until ``requests`` were sent or time is up.

    Stops starting new requests after ``requests`` requests, after ``duration_s``, or
    after ``max_seconds`` (a hard bound for count-based runs), whichever comes first;
    requests already in flight finish (each bounded by ``timeout_s``). Throughput is
    successful requests over the time until the last answer.
    """
    if concurrency < 1:
        raise ValueError("need concurrency >= 1")
    if requests is None and duration_s is None:
        raise ValueError("give requests, duration_s or both")
    source = _url_source(images)
    result = LoadResult(concurrency=concurrency)
    sent_count = itertools.count()
    stop_at = time.perf_counter() + min(duration_s or math.inf, max_seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            if requests is not None and next(sent_count) >= requests:
                return
            target = prediction_url(base_url, next(source), top)
            sent = time.perf_counter()
            outcome = await _one_request(session, target)
            result.outcomes[outcome] += 1
            if outcome == "200":
                result.latencies_s.append(time.perf_counter() - sent)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


def format_result(result: LoadResult) -> str:
    s = result.summary()
    return (
        f"c={s['concurrency']}: {s['req_per_s']:.2f} req/s, {s['ok']} ok, {s['errors']} errors "
        f"in {s['elapsed_s']:.1f}s; p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, "
        f"p99 {s['p99_ms']:.0f} ms; outcomes {s['outcomes']}"
    )
