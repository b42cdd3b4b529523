"""Closed-loop load against a running tagger: N requests (or a fixed time) at concurrency C.

Works against any server with the ``GET /predictions?url=&top=`` contract: the Ray Serve
app, or ``benchmarks/naive_server.py``. Each of the C workers sends one request, waits
for the answer, and sends the next; image URLs are taken round-robin. A request counts
as successful only when it answers 200 with a non-empty ``predictions`` list. The load
generator itself is :mod:`benchmarks.load`.

Usage (the service must be allowed to fetch from the image host: for loopback image
URLs its Downloader needs ``allowed_networks: ["127.0.0.1/32"]``)::

    python -m benchmarks.serve_smoke --url http://127.0.0.1:8000 \\
        --image-url http://127.0.0.1:9000/cat.jpg -n 200 -c 8
    python -m benchmarks.serve_smoke --url http://127.0.0.1:8000 --photos -n 200 -c 8
"""

from __future__ import annotations

import argparse
import asyncio
import json

from benchmarks.load import LoadResult, format_result, run_load


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
            result = load(args.image_url + server.workload("mixed"))
    else:
        result = load(args.image_url)
    print(format_result(result))
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
