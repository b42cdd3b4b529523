"""Request ids, the per-request log line and the custom metrics, on the live service."""

from __future__ import annotations

import re
import time

import requests

from tests.service.helpers import Service

CUSTOM_METRICS = (
    "ray_imagetagger_http_requests_total",
    "ray_imagetagger_images_total",
    "ray_imagetagger_download_seconds_bucket",
    "ray_imagetagger_download_bytes_bucket",
    "ray_imagetagger_preprocess_seconds_bucket",
    "ray_imagetagger_batch_size_bucket",
    "ray_imagetagger_inference_seconds_bucket",
)


def scrape(service: Service) -> dict[str, float]:
    """Sum of every sample of each metric family (tags ignored) on the node."""
    totals: dict[str, float] = {}
    text = requests.get(service.metrics_url, timeout=10).text
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$", line)
        if match and match.group(3) != "NaN":
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(3))
    return totals


def outcome_count(service: Service, outcome: str) -> float:
    text = requests.get(service.metrics_url, timeout=10).text
    pattern = rf'^ray_imagetagger_images_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def test_request_id_is_returned_and_accepted(service: Service) -> None:
    generated = service.get("/").headers.get("x-request-id")
    assert generated
    sent = service.get("/", headers={"X-Request-ID": "trace-me-42"})
    assert sent.headers["x-request-id"] == "trace-me-42"


def test_custom_metrics_move(service: Service) -> None:
    before_ok = outcome_count(service, "ok")
    before_invalid = outcome_count(service, "InvalidImage")
    assert service.predict(service.image_url("chelsea.jpg")).status_code == 200
    assert service.predict(service.image_url("text.txt")).status_code == 400

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        totals = scrape(service)
        moved = (
            all(totals.get(name, 0) > 0 for name in CUSTOM_METRICS)
            and outcome_count(service, "ok") >= before_ok + 1
            and outcome_count(service, "InvalidImage") >= before_invalid + 1
        )
        if moved:
            return
        time.sleep(1)
    missing = [name for name in CUSTOM_METRICS if scrape(service).get(name, 0) <= 0]
    raise AssertionError(f"metrics did not move within 60 s; missing or zero: {missing}")
