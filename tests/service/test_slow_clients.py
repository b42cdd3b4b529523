"""Slow clients cannot starve fast ones: ``imagetagger serve`` behind its own HAProxy.

The protection lives in HAProxy as ``imagetagger serve`` amends Ray's config
(:mod:`imagetagger.serving.haproxy`), which the session's cluster does not run, so this test
starts an instance of its own (as ``make run`` does; see test_listening_sockets.py).

Against it: 200 connections that send a request's headers one byte a second, and 50
uploads that declare 100 KB and send the body 1 KB a second, each opened again as soon
as the service ends it, while 8 ordinary clients ask for new photos (the model's path,
nothing cached). HAProxy holds the slow ones itself, events on one thread, and never
passes them on: ``timeout http-request`` (10 s) ends headers that are not complete, and
with ``option http-buffer-request`` a body whose first 16 KB (or all of it) has not
arrived, with a 408. So the ordinary clients see the service as idle (p50 within 2x).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from imagetagger.serving.haproxy import DEFAULT_HTTP_REQUEST_TIMEOUT_S
from tests import servers
from tests.service.helpers import IMAGE_HOST
from tests.service.loadgen import (
    UNIQUE_PATH,
    SlowClients,
    UniqueURLs,
    closed_loop,
    median,
    percentile,
    prediction_url,
    sequential_latencies,
    unique_photo,
    with_comment,
)
from tests.service.test_listening_sockets import imagetagger_serve, wait_serving

CHELSEA = Path(__file__).resolve().parents[1] / "data" / "chelsea.jpg"
CONCURRENCY = 8
IDLE_S = 8.0
LOADED_S = 16.0  # past the first cut (10 s) and into the second round
SLOW_HEADERS = 200
SLOW_UPLOADS = 50
TIMEOUT_S = DEFAULT_HTTP_REQUEST_TIMEOUT_S


def test_slow_headers_and_uploads_do_not_starve_normal_clients() -> None:
    photo = CHELSEA.read_bytes()
    routes = {UNIQUE_PATH: unique_photo(photo)}
    with (
        servers.LoopbackServer(IMAGE_HOST, routes) as images,
        imagetagger_serve("--allow-network", f"{IMAGE_HOST}/32") as instance,
    ):
        wait_serving(instance)
        instance.poller.stop()  # nothing else while measuring
        urls = UniqueURLs(images)

        def predict() -> str:
            return prediction_url(instance.base_url, urls())

        sequential_latencies(predict, 5)  # warm
        idle = closed_loop(predict, concurrency=CONCURRENCY, duration_s=IDLE_S, timeout_s=60)
        with SlowClients(
            "127.0.0.1", instance.port, headers=SLOW_HEADERS, uploads=SLOW_UPLOADS
        ) as slow:
            time.sleep(1.0)
            loaded = closed_loop(
                predict, concurrency=CONCURRENCY, duration_s=LOADED_S, timeout_s=60
            )
            held = slow.open_now()
            # An ordinary upload, larger than HAProxy's 16 KB buffer, still goes through.
            upload = requests.post(
                instance.base_url + "/predictions",
                files={"file": ("cat.jpg", with_comment(photo, b"upload"), "image/jpeg")},
                timeout=60,
            )
        connections = list(slow.connections)

    idle_p50, loaded_p50 = median(idle.latencies()), median(loaded.latencies())
    first_round = [c for c in connections if c.first]
    lifetimes = sorted(c.closed - c.opened for c in first_round if c.closed is not None)
    print(
        f"\nC={CONCURRENCY}: idle p50 {idle_p50 * 1000:.0f} ms p99 "
        f"{percentile(idle.latencies(), 99) * 1000:.0f} ms ({len(idle.answers)} answers); "
        f"with {SLOW_HEADERS} slow-header and {SLOW_UPLOADS} slow-upload connections p50 "
        f"{loaded_p50 * 1000:.0f} ms p99 {percentile(loaded.latencies(), 99) * 1000:.0f} ms "
        f"({len(loaded.answers)} answers); {len(connections)} slow connections opened, "
        f"{held} open at the end; first round closed after {lifetimes[0]:.1f}-"
        f"{lifetimes[-1]:.1f} s"
    )

    assert idle.by_status() == {"200": len(idle.answers)}, idle.by_status()
    assert loaded.by_status() == {"200": len(loaded.answers)}, loaded.by_status()
    assert loaded_p50 <= 2 * idle_p50, (idle_p50, loaded_p50)
    assert upload.status_code == 200, upload.text
    assert held >= 0.9 * (SLOW_HEADERS + SLOW_UPLOADS), held  # the pressure lasted

    # Every slow connection of the first round was ended by HAProxy at the timeout.
    assert len(lifetimes) == len(first_round) == SLOW_HEADERS + SLOW_UPLOADS, len(lifetimes)
    assert lifetimes[0] >= TIMEOUT_S - 0.5 and lifetimes[-1] <= TIMEOUT_S + 3, lifetimes
    for connection in first_round:
        assert connection.answer.startswith(b"HTTP/1.1 408"), connection
        if connection.kind == "upload":  # a stream's 408: the contract's JSON
            body = connection.answer.split(b"\r\n\r\n", 1)[1]
            assert json.loads(body)["error"]["type"] == "RequestTimeout", connection
