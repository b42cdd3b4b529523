"""Overload is shed, not queued without end: 512 clients against ``imagetagger serve``.

An instance of its own, as ``make run`` starts it (the shedding's first stage is in
HAProxy as ``imagetagger serve`` amends it, which the session's cluster does not run),
with serve_config.yaml's own limits, on the real model (efficientnet_lite2 on
LiteRT, ~50 ms an image on these 2 cores, two at a time: capacity ~30 images/s, reached
at a concurrency of ~8). 512 closed-loop clients, each asking for a new URL (nothing
the response cache can answer) the moment its last answer came, for 20 s.

What sheds the load: HAProxy sends each ingress replica at most 300 requests at once
(``maxconn``, :mod:`imagetagger.serving.haproxy`) and answers one that waited 1 s in its queue
with the JSON 503; behind it, the ingress's admission (``_admit``): one replica works on at most
``user_config.max_in_flight`` (256) images; a request beyond that gets, at once, the
JSON 503 ``Overloaded`` with ``Retry-After: 1``. Serve's queue is kept out of it:
``max_ongoing_requests`` (320) is above ``max_in_flight``, so every request reaches the
app (which answers at once) instead of waiting in the replica's queue
(``max_queued_requests``, 2048: past it Serve answers a 503 itself). HAProxy does not
queue either (``maxconn 4096``, no server ``maxconn``).

The bound on an admitted request: it waits behind at most ``max_in_flight`` others, so
~256 / 30 per s ≈ 9 s at this machine's capacity, and never more than the ingress's
deadline ``request_timeout_s`` (30 s), past which it is answered 503 instead. So every
answer comes within ``request_timeout_s`` plus the time to reach the app; memory is
bounded by the same 256 images in flight (their downloads and crops) plus 512
connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagetagger.serving.haproxy import QUEUE_TIMEOUT_S
from tests import servers
from tests.polling import wait_until
from tests.service.helpers import IMAGE_HOST, test_serve_config
from tests.service.loadgen import (
    UNIQUE_PATH,
    UniqueURLs,
    closed_loop,
    median,
    percentile,
    prediction_url,
    pss_bytes,
    sequential_latencies,
    unique_photo,
)
from tests.service.test_listening_sockets import Instance, imagetagger_serve, wait_serving

CHELSEA = Path(__file__).resolve().parents[1] / "data" / "chelsea.jpg"
FLOOD = 512
FLOOD_S = 15.0


def ingress_limits() -> dict[str, float]:
    """The session app's ImageTagger user_config (serve_config.yaml's)."""
    (app,) = test_serve_config(0, [])["applications"]
    (ingress,) = [d for d in app["deployments"] if d["name"] == "ImageTagger"]
    return {**ingress["user_config"], "max_ongoing_requests": ingress["max_ongoing_requests"]}


LIMITS = ingress_limits()
REQUEST_TIMEOUT_S = float(LIMITS["request_timeout_s"])
# A client waits this long for any answer; none may need it.
CLIENT_TIMEOUT_S = REQUEST_TIMEOUT_S + 15
MiB = 2**20
# Growth of the whole service's PSS (every process of the instance) allowed at
# the first flood's peak, and what a second flood may add to it: the first one's
# growth is kept by the processes (freed memory stays with Python's and malloc's
# heaps), a second must not add as much again. Measured: docs/SECURITY.md, *Overload*.
PEAK_GROWTH_BYTES = 700 * MiB
SECOND_FLOOD_GROWTH_BYTES = 150 * MiB
# Full speed again: five requests in a row at most twice the idle median (plus 0.1 s of
# slack for a shared machine), within this long after the flood.
RECOVERY_WAIT_S = 15.0


@pytest.fixture(scope="module")
def unique_images() -> Iterator[servers.LoopbackServer]:
    routes = {UNIQUE_PATH: unique_photo(CHELSEA.read_bytes())}
    with servers.LoopbackServer(IMAGE_HOST, routes) as images:
        yield images


@pytest.fixture(scope="module")
def service(unique_images: servers.LoopbackServer) -> Iterator[Instance]:
    with imagetagger_serve("--allow-network", f"{IMAGE_HOST}/32") as instance:
        wait_serving(instance)
        instance.poller.stop()
        yield instance


class PeakPss:
    """The largest PSS of the session's process tree, sampled every 0.5 s while running."""

    def __init__(self, tree: Callable[[], list[int]]) -> None:
        self.tree = tree
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, pss_bytes(self.tree()))


def test_flood_of_512_is_shed_with_json_503s_bounded_and_recovers(
    service: Instance, unique_images: servers.LoopbackServer
) -> None:
    assert LIMITS["max_ongoing_requests"] > LIMITS["max_in_flight"]  # the app answers
    urls = UniqueURLs(unique_images)

    def predict() -> str:
        return prediction_url(service.base_url, urls())

    sequential_latencies(predict, 3)  # warm
    idle_s = median(sequential_latencies(predict, 5))
    before = pss_bytes(service.tree())

    started = time.monotonic()
    with PeakPss(service.tree) as peak:
        flood = closed_loop(
            predict, concurrency=FLOOD, duration_s=FLOOD_S, timeout_s=CLIENT_TIMEOUT_S
        )
    took = time.monotonic() - started
    after = pss_bytes(service.tree())
    with PeakPss(service.tree) as second_peak:
        second = closed_loop(
            predict, concurrency=FLOOD, duration_s=FLOOD_S, timeout_s=CLIENT_TIMEOUT_S
        )
    after_second = pss_bytes(service.tree())
    flood.answers.extend(second.answers)
    flood_ended = time.monotonic()
    recovered_after_s = wait_until(
        lambda: (
            median(sequential_latencies(predict, 5)) <= 2 * idle_s + 0.1
            and time.monotonic() - flood_ended
        ),
        timeout_s=RECOVERY_WAIT_S,
        what="full speed again after the flood",
        interval_s=0.2,
    )
    recovered_s = median(sequential_latencies(predict, 5))

    statuses = flood.by_status()
    ok = flood.latencies(200)
    rejected = flood.latencies(503)
    slowest = max(a.elapsed_s for a in flood.answers)
    print(
        f"\ntwo floods, c={FLOOD} for {FLOOD_S:.0f} s each (the first all answered {took:.1f} s "
        f"after its start): {dict(statuses)}; 200s {len(ok) / FLOOD_S / 2:.1f}/s, "
        f"p50 {median(ok):.2f} s, "
        f"p99 {percentile(ok, 99):.2f} s, max {max(ok, default=0):.2f} s; 503s p50 "
        f"{median(rejected) * 1000:.0f} ms, p99 {percentile(rejected, 99) * 1000:.0f} ms; "
        f"slowest answer {slowest:.2f} s\nPSS {before / MiB:.0f} MiB before, peak "
        f"{peak.peak / MiB:.0f}, after {after / MiB:.0f}; second flood: peak "
        f"{second_peak.peak / MiB:.0f}, after {after_second / MiB:.0f} MiB; "
        f"idle latency {idle_s * 1000:.0f} ms, "
        f"full speed again {recovered_after_s:.1f} s after the flood ({recovered_s * 1000:.0f} ms)"
    )

    # Every request answered within its timeout: a 200, or the contract's 503.
    assert set(statuses) <= {"200", "503"}, statuses
    for answer in flood.answers:
        if answer.status == 503:
            assert answer.content_type == "application/json", answer
            assert answer.error_type == "Overloaded", answer
            assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
    assert statuses["503"] > 0 and statuses["200"] > 0, statuses
    # Shed means at once; admitted means answered within the deadline.
    # (HAProxy's refusals come after its 1 s queue timeout.)
    assert median(rejected) < QUEUE_TIMEOUT_S + 1, median(rejected)
    # The bound the mechanism gives: HAProxy's queue, then the ingress's deadline.
    assert percentile(ok, 99) < QUEUE_TIMEOUT_S + REQUEST_TIMEOUT_S + 2, percentile(ok, 99)
    assert slowest < REQUEST_TIMEOUT_S + 5, slowest
    # Bounded memory; full speed again a few seconds after.
    assert peak.peak - before < PEAK_GROWTH_BYTES, (before, peak.peak)
    assert max(second_peak.peak, after_second) - after < SECOND_FLOOD_GROWTH_BYTES, (
        after,
        second_peak.peak,
        after_second,
    )
    assert recovered_after_s < RECOVERY_WAIT_S  # wait_until failed the test otherwise
