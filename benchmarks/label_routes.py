"""Each tagging route's throughput against ``GET /predictions``, in one service run.

The same 100 512-px photos of the ``unique`` workload (a new URL and new bytes every
request) through ``GET /predictions?url=`` (the reference), an upload, Cloud Vision's
``images:annotate`` with base64 ``content`` and with ``source.imageUri``, and
Rekognition's ``DetectLabels`` (base64 ``Image.Bytes``), the Open Inference Protocol's
``infer`` (the image as binary tensor data, and as base64 in JSON) and Hugging Face's
image-classification (the raw body, as ``InferenceClient`` sends it), each closed-loop
at the same concurrency after a warm-up. What base64, the JSON body or a protocol's
framing cost shows as the ratio of a route that sends bytes to the upload, which sends
the same bytes raw (multipart)::

    python -m benchmarks.label_routes --concurrency 32 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.launch import run_service
from benchmarks.load import percentile, prediction_url
from benchmarks.photos import PhotoServer, build_unique_set, unique_body, unique_path
from imagetagger.protocols import open_inference as oip

ROOT = Path(__file__).resolve().parent.parent
AWS_TARGET = "RekognitionService.DetectLabels"

#: A request: (method, path and query, headers, body), from the request's counter.
Request = tuple[str, str, dict[str, str], bytes | aiohttp.FormData | None]


def route_requests(photos_url: str, model: str) -> dict[str, Callable[[int], Request]]:
    """Each measured route's request for the ``counter``-th photo (unique bytes and URL);
    ``model``: the served model's name, as ``GET /`` reports it."""
    photos = build_unique_set()

    def photo(counter: int) -> tuple[str, bytes]:
        chosen = photos[counter % len(photos)]
        url = photos_url + unique_path(chosen.name, counter)
        return url, unique_body(chosen.data, counter)

    def predictions_url(counter: int) -> Request:
        url, _ = photo(counter)
        return "GET", prediction_url("", url, 5), {}, None

    def upload(counter: int) -> Request:
        _, data = photo(counter)
        form = aiohttp.FormData()
        form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
        return "POST", "/predictions?top=5", {}, form

    def vision(image: dict[str, Any]) -> bytes:
        request = {"image": image, "features": [{"type": "LABEL_DETECTION", "maxResults": 5}]}
        return json.dumps({"requests": [request]}).encode()

    json_headers = {"Content-Type": "application/json"}

    def vision_content(counter: int) -> Request:
        _, data = photo(counter)
        body = vision({"content": base64.b64encode(data).decode()})
        return "POST", "/v1/images:annotate", json_headers, body

    def vision_uri(counter: int) -> Request:
        url, _ = photo(counter)
        return "POST", "/v1/images:annotate", json_headers, vision({"source": {"imageUri": url}})

    def rekognition(counter: int) -> Request:
        _, data = photo(counter)
        body = json.dumps({"Image": {"Bytes": base64.b64encode(data).decode()}, "MaxLabels": 5})
        headers = {"X-Amz-Target": AWS_TARGET, "Content-Type": "application/x-amz-json-1.1"}
        return "POST", "/", headers, body.encode()

    infer_path = f"/v2/models/{model}/infer"
    top5 = [{"name": oip.OUTPUT_NAME, "parameters": {"classification": 5}}]

    def oip_binary(counter: int) -> Request:
        _, data = photo(counter)
        raw = oip.serialize_bytes([data])
        tensor = {"name": oip.INPUT_NAME, "datatype": "BYTES", "shape": [1]}
        tensor["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps({"inputs": [tensor], "outputs": top5}).encode()
        return "POST", infer_path, {oip.HEADER_LENGTH: str(len(header))}, header + raw

    def oip_json(counter: int) -> Request:
        _, data = photo(counter)
        tensor = {"name": oip.INPUT_NAME, "datatype": "BYTES", "shape": [1]}
        tensor["data"] = [base64.b64encode(data).decode()]
        body = json.dumps({"inputs": [tensor], "outputs": top5}).encode()
        return "POST", infer_path, json_headers, body

    def hugging_face(counter: int) -> Request:
        _, data = photo(counter)
        return "POST", f"/models/{model}", {"Content-Type": "image/jpeg"}, data

    return {
        "GET /predictions?url=": predictions_url,
        "POST /predictions (upload)": upload,
        "images:annotate content (base64)": vision_content,
        "images:annotate imageUri": vision_uri,
        "DetectLabels Image.Bytes (base64)": rekognition,
        "OIP infer, binary tensor data": oip_binary,
        "OIP infer, base64 in JSON": oip_json,
        "HF image-classification, raw body": hugging_face,
    }


async def served_model(base_url: str) -> str:
    """The served model's name (``GET /``), which the protocols' paths carry."""
    async with aiohttp.ClientSession() as session, session.get(base_url + "/") as response:
        response.raise_for_status()
        return (await response.json())["model"]


async def closed_loop(
    base_url: str,
    make: Callable[[int], Request],
    counters: itertools.count,
    *,
    concurrency: int,
    duration_s: float,
) -> dict[str, Any]:
    """``concurrency`` workers for ``duration_s``; req/s and p50 of the 200 answers."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + duration_s
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < stop_at:
            method, target, headers, body = make(next(counters))
            sent = time.perf_counter()
            try:
                async with session.request(
                    method, base_url + target, headers=headers, data=body
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                failures += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "req_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "errors": failures,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per route")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each route")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    args = parser.parse_args(argv)
    counters = itertools.count()
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-label-bench-") as workdir,
        PhotoServer() as photos,
        run_service(args.config, Path(workdir)) as server,
    ):
        results = {}
        model = asyncio.run(served_model(server.base_url))
        for name, make in route_requests(photos.base_url, model).items():
            for seconds in (args.warmup, args.duration):  # the first run warms up
                result = asyncio.run(
                    closed_loop(
                        server.base_url,
                        make,
                        counters,
                        concurrency=args.concurrency,
                        duration_s=seconds,
                    )
                )
            results[name] = result
            print(
                f"{name}: {result['req_s']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, "
                f"{result['errors']} errors",
                flush=True,
            )
    reference = results["GET /predictions?url="]["req_s"]
    upload = results["POST /predictions (upload)"]["req_s"]
    print(
        f"\n| route (c={args.concurrency}) | req/s | p50 ms | errors | / GET /predictions "
        "| / upload |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        print(
            f"| {name} | {result['req_s']:.1f} | {result['p50_ms']:.1f} | {result['errors']} "
            f"| {result['req_s'] / reference:.2f} | {result['req_s'] / upload:.2f} |"
        )


if __name__ == "__main__":
    main()
