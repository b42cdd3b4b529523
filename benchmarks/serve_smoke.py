"""Closed-loop load against a running tagger: N requests (or a fixed time) at concurrency C.

Works against any server with the ``GET /predictions?url=&top=`` contract: the Ray Serve
app, or ``benchmarks/naive_server.py``. Each of the C workers sends one request, waits
for the answer, and sends the next; image URLs are taken round-robin. A request counts
as successful only when it answers 200 with a non-empty ``predictions`` list.

Usage (the service must be allowed to fetch from the image host: for loopback image
URLs its Downloader needs ``allowed_networks: ["127.0.0.1/32"]``)::

    python -m benchmarks.serve_smoke --url http://127.0.0.1:8000 \\
        --image-url http://127.0.0.1:9000/cat.jpg -n 200 -c 8
    python -m benchmarks.serve_smoke --url http://127.0.0.1:8000 --photos -n 200 -c 8
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp


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


async def run_load(
    base_url: str,
    image_urls: Sequence[str],
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
    if concurrency < 1 or not image_urls:
        raise ValueError("need concurrency >= 1 and at least one image URL")
    if requests is None and duration_s is None:
        raise ValueError("give requests, duration_s or both")
    targets = [prediction_url(base_url, image, top) for image in image_urls]
    result = LoadResult(concurrency=concurrency)
    counter = itertools.count()
    stop_at = time.perf_counter() + min(duration_s or math.inf, max_seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            index = next(counter)
            if requests is not None and index >= requests:
                return
            sent = time.perf_counter()
            outcome = await _one_request(session, targets[index % len(targets)])
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the tagger")
    parser.add_argument("--image-url", action="append", default=[], help="repeatable")
    parser.add_argument(
        "--photos", action="store_true", help="serve the fixed photo set on 127.0.0.1 and use it"
    )
    parser.add_argument("-n", "--requests", type=int, default=100)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="hard time bound")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    args = parser.parse_args(argv)
    if not args.image_url and not args.photos:
        parser.error("give --image-url (repeatable) or --photos")

    def load(image_urls: list[str]) -> LoadResult:
        return asyncio.run(
            run_load(
                args.url,
                image_urls,
                concurrency=args.concurrency,
                requests=args.requests,
                max_seconds=args.max_seconds,
                top=args.top,
                timeout_s=args.timeout,
            )
        )

    if args.photos:
        from benchmarks.photos import PhotoServer

        with PhotoServer() as server:
            result = load(args.image_url + server.urls)
    else:
        result = load(args.image_url)
    print(format_result(result))
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
