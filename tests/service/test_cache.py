"""The response cache on the live service: repeats answered from it, byte for byte.

Keys are unit-tested in tests/unit/test_response_cache.py (a changed byte, another model,
precision, runtime or weights never hit); here the ingress really uses it for URLs,
uploads and batch items, its answers equal the model's, and its metrics move.
"""

from __future__ import annotations

import re
import uuid

import requests

from tests import servers
from tests.photos import CHELSEA
from tests.polling import wait_until, wait_until_steady
from tests.service.helpers import Service

METRIC = "ray_imagetagger_response_cache_{}"
# The replicas report metrics every second here (the session's RAY_metrics_report_interval_ms);
# a figure read twice this far apart without a change has no report still on its way.
REPORT_PERIOD_S = 1.5


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same picture with other bytes: a JPEG comment (COM segment) after SOI."""
    payload = text.encode()
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def settled(service: Service, name: str) -> float:
    """The metric once earlier requests' figures have been reported (every 1 s here)."""
    return wait_until_steady(
        lambda: metric(service, name), period_s=REPORT_PERIOD_S, timeout_s=60, what=name
    )


def metric(service: Service, name: str) -> float:
    text = requests.get(service.metrics_url, timeout=10).text
    pattern = rf"^{METRIC.format(name)}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def wait_metric(service: Service, name: str, at_least: float, timeout_s: float = 60) -> float:
    """The metric once it reaches ``at_least``; fails when it does not within ``timeout_s``."""

    def reached() -> tuple[float] | None:
        value = metric(service, name)
        return (value,) if value >= at_least else None

    return wait_until(reached, timeout_s=timeout_s, what=f"{name} >= {at_least}")[0]


def unique_photo(service: Service) -> str:
    """A loopback URL serving chelsea.jpg's picture with bytes no other test sends."""
    path = f"/cache-{uuid.uuid4().hex}.jpg"
    service.images.add_route(path, servers.respond(with_comment(CHELSEA, path), "image/jpeg"))
    return service.image_url(path.lstrip("/"))


def test_a_repeated_url_is_answered_from_the_cache_byte_for_byte(service: Service) -> None:
    url = unique_photo(service)
    misses, hits = settled(service, "misses_total"), metric(service, "hits_total")
    first = service.predict(url, top=5)
    assert first.status_code == 200
    wait_metric(service, "misses_total", misses + 1)
    repeats = [service.predict(url, top=5) for _ in range(3)]
    assert [r.content for r in repeats] == [first.content] * 3  # byte for byte
    wait_metric(service, "hits_total", hits + 3)
    # Gauges, unlike counters, drop out of the scrape between reports when a report is
    # late (Ray 2.60 keeps a gauge for two report periods): wait for the next one.
    wait_metric(service, "entries", 1)
    wait_metric(service, "bytes", 4000)  # at least one answer of 1000 float32


def test_top_and_minconf_apply_to_a_cached_answer(service: Service) -> None:
    url = unique_photo(service)
    full = service.predict(url, top=1000).json()["predictions"]
    assert len(full) == 1000
    top3 = service.predict(url, top=3).json()["predictions"]
    assert top3 == full[:3]
    floor = full[2]["confidence"]
    confident = service.predict(url, minconf=floor).json()["predictions"]
    assert confident == [p for p in full if p["confidence"] >= floor]


def test_other_bytes_of_the_same_picture_are_not_a_hit(service: Service) -> None:
    url = unique_photo(service)
    other = unique_photo(service)  # same pixels, one more comment byte pattern
    assert service.predict(url).status_code == 200
    misses = settled(service, "misses_total")
    assert service.predict(other).status_code == 200
    wait_metric(service, "misses_total", misses + 1)


def test_uploads_and_batch_items_use_the_cache(service: Service) -> None:
    data = with_comment(CHELSEA, f"upload-{uuid.uuid4().hex}")
    first = service.post("/predictions", files={"file": ("cat.jpg", data, "image/jpeg")})
    assert first.status_code == 200
    hits = settled(service, "hits_total")
    again = service.post("/predictions", files={"file": ("cat.jpg", data, "image/jpeg")})
    assert again.content == first.content
    wait_metric(service, "hits_total", hits + 1)

    url = unique_photo(service)
    body = {"urls": [url], "top": 3}
    batch = service.post("/predictions/batch", json=body)
    assert batch.status_code == 200
    hits = settled(service, "hits_total")
    repeat = service.post("/predictions/batch", json={"urls": [url, url], "top": 3})
    results = repeat.json()["results"]
    assert results == [batch.json()["results"][0]] * 2
    wait_metric(service, "hits_total", hits + 2)
